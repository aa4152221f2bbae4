#include "cli/record_format.h"

#include <algorithm>

#include <flatbuffers/flatbuffers.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "base/hash.h"
#include "schemas/dlq_record_generated.h"
#include "schemas/nexmark_generated.h"
#include "schemas/row_generated.h"
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
      if (w->argmax() == nullptr) return buf;
      std::string out(buf, std::strlen(buf) - 1);  // without the closing brace
      out += ",\"argmax\":[";
      for (flatbuffers::uoffset_t i = 0; i < w->argmax()->size(); ++i) {
        out += (i ? "," : "") + std::to_string(w->argmax()->Get(i));
      }
      return out + "]}";
    }
  }
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyDlqRecordBuffer(v)) {
      auto* d = schema::GetDlqRecord(data);
      const int n = std::snprintf(buf, sizeof(buf),
                    "{\"type\":\"dlq\",\"source\":\"%s[%d]@%lld\",\"error_type\":\"%s\",\"error\":\"%s\","
                    "\"payload_bytes\":%u,\"job\":\"%s\",\"version\":%d,\"spec_hash\":\"%s\","
                    "\"retry_count\":%d,\"first_failure_at_ms\":%lld,\"last_failure_at_ms\":%lld}",
                    Str(d->source_topic()).c_str(), d->source_partition(),
                    static_cast<long long>(d->source_offset()), schema::EnumNameDlqErrorType(d->error_type()),
                    Str(d->error_message()).c_str(), d->payload() ? d->payload()->size() : 0u,
                    Str(d->job()).c_str(), d->version(), Str(d->spec_hash()).c_str(),
                    std::max(1, d->retry_count()),
                    static_cast<long long>(d->first_failure_at_ms() ? d->first_failure_at_ms() : d->failed_at_ms()),
                    static_cast<long long>(d->last_failure_at_ms() ? d->last_failure_at_ms() : d->failed_at_ms()));
      if (!d->truncated() || n <= 0 || static_cast<size_t>(n) >= sizeof(buf)) return buf;
      // Cut to fit the sink's record size limit: what the whole was.
      std::string out(buf, std::strlen(buf) - 1);  // without the closing brace
      out += ",\"truncated\":true,\"original_size\":" + std::to_string(d->original_size()) +
             ",\"original_key_size\":" + std::to_string(d->original_key_size()) + ",\"payload_xxh3\":\"" +
             HashToHex(d->payload_xxh3()) + "\"}";
      return out;
    }
  }
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyNexmarkEventBuffer(v)) {
      const auto* e = schema::GetNexmarkEvent(data);
      auto num = [](const char* name, int64_t value) {
        return std::string(",\"") + name + "\":" + std::to_string(value);
      };
      auto str = [](const char* name, const flatbuffers::String* value) {
        return std::string(",\"") + name + "\":\"" + Str(value) + "\"";
      };
      if (const auto* b = e->body_as_Bid()) {
        return "{\"type\":\"bid\"" + num("auction", b->auction()) + num("bidder", b->bidder()) +
               num("price", b->price()) + str("channel", b->channel()) + str("url", b->url()) +
               num("date_time", b->date_time()) + str("extra", b->extra()) + "}";
      }
      if (const auto* a = e->body_as_Auction()) {
        return "{\"type\":\"auction\"" + num("id", a->id()) + str("item_name", a->item_name()) +
               str("description", a->description()) + num("initial_bid", a->initial_bid()) +
               num("reserve", a->reserve()) + num("date_time", a->date_time()) + num("expires", a->expires()) +
               num("seller", a->seller()) + num("category", a->category()) + str("extra", a->extra()) + "}";
      }
      if (const auto* p = e->body_as_Person()) {
        return "{\"type\":\"person\"" + num("id", p->id()) + str("name", p->name()) +
               str("email_address", p->email_address()) + str("credit_card", p->credit_card()) +
               str("city", p->city()) + str("state", p->state()) + num("date_time", p->date_time()) +
               str("extra", p->extra()) + "}";
      }
      return "{\"type\":\"nexmark\",\"body_type\":" + std::to_string(static_cast<int>(e->body_type())) + "}";
    }
  }
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyRowBuffer(v)) {
      std::string out = "{\"type\":\"row\",\"values\":[";
      const auto* values = schema::GetRow(data)->values();
      for (flatbuffers::uoffset_t i = 0; values && i < values->size(); ++i) {
        out += (i ? "," : "") + std::to_string(values->Get(i));
      }
      return out + "]}";
    }
  }
  // Text that looks like a JSON object (feature rows, JSON inputs): as it is.
  if (size >= 2 && data[0] == '{' && data[size - 1] == '}') {
    bool text = true;
    for (size_t i = 0; i < size && text; ++i) text = data[i] >= 0x20 || data[i] == '\t';
    if (text) return std::string(reinterpret_cast<const char*>(data), size);
  }
  std::snprintf(buf, sizeof(buf), "{\"type\":\"undecodable\",\"bytes\":%zu}", size);
  return buf;
}

}  // namespace kappa
