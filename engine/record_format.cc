#include "engine/record_format.h"

#include <flatbuffers/flatbuffers.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "schemas/dlq_record_generated.h"
#include "schemas/transaction_generated.h"
#include "schemas/window_aggregate_generated.h"

namespace kappa {

std::string JsonEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 2);
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

namespace {
std::string Str(const flatbuffers::String* s) { return s ? JsonEscape(s->str()) : std::string(); }
}  // namespace

std::string FormatRecordJson(const uint8_t* data, size_t size) {
  // FlatBuffers reads scalars in place: Kafka buffers are not aligned, so
  // decode from an aligned copy (this path is for people, not throughput).
  std::vector<uint64_t> aligned((size + 7) / 8 + 1);
  if (size) std::memcpy(aligned.data(), data, size);
  data = reinterpret_cast<const uint8_t*>(aligned.data());
  char buf[1024];
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyTransactionBuffer(v)) {
      auto* t = schema::GetTransaction(data);
      std::snprintf(buf, sizeof(buf),
                    "{\"type\":\"transaction\",\"txn_id\":\"%s\",\"user_id\":\"%s\",\"status\":\"%s\","
                    "\"amount_cents\":%lld,\"currency\":\"%s\",\"event_time_ms\":%lld}",
                    Str(t->txn_id()).c_str(), Str(t->user_id()).c_str(),
                    schema::EnumNameTxnStatus(t->status()), static_cast<long long>(t->amount_cents()),
                    Str(t->currency()).c_str(), static_cast<long long>(t->event_time_ms()));
      return buf;
    }
  }
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyWindowAggregateBuffer(v)) {
      auto* w = schema::GetWindowAggregate(data);
      std::snprintf(buf, sizeof(buf),
                    "{\"type\":\"window\",\"key\":\"%s\",\"window_start_ms\":%lld,\"window_end_ms\":%lld,"
                    "\"count\":%lld,\"sum\":%lld,\"min\":%lld,\"max\":%lld,\"avg\":%.6f,"
                    "\"first_offset\":%lld,\"last_offset\":%lld}",
                    Str(w->key()).c_str(), static_cast<long long>(w->window_start_ms()),
                    static_cast<long long>(w->window_end_ms()), static_cast<long long>(w->count()),
                    static_cast<long long>(w->sum()), static_cast<long long>(w->min()),
                    static_cast<long long>(w->max()), w->avg(), static_cast<long long>(w->first_offset()),
                    static_cast<long long>(w->last_offset()));
      return buf;
    }
  }
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyDlqRecordBuffer(v)) {
      auto* d = schema::GetDlqRecord(data);
      std::snprintf(buf, sizeof(buf),
                    "{\"type\":\"dlq\",\"source\":\"%s[%d]@%lld\",\"error_type\":\"%s\",\"error\":\"%s\","
                    "\"payload_bytes\":%u,\"job\":\"%s\",\"version\":%d,\"spec_hash\":\"%s\"}",
                    Str(d->source_topic()).c_str(), d->source_partition(),
                    static_cast<long long>(d->source_offset()), schema::EnumNameDlqErrorType(d->error_type()),
                    Str(d->error_message()).c_str(), d->payload() ? d->payload()->size() : 0u,
                    Str(d->job()).c_str(), d->version(), Str(d->spec_hash()).c_str());
      return buf;
    }
  }
  std::snprintf(buf, sizeof(buf), "{\"type\":\"undecodable\",\"bytes\":%zu}", size);
  return buf;
}

}  // namespace kappa
