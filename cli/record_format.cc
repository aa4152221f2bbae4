#include "cli/record_format.h"

#include <algorithm>

#include <flatbuffers/flatbuffers.h>
#include <simdjson.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "base/hash.h"
#include "base/utf8.h"
#include "operators/features.h"
#include "schemas/dlq_record_generated.h"
#include "schemas/nexmark_generated.h"
#include "schemas/row_generated.h"
#include "schemas/transaction_generated.h"
#include "schemas/window_aggregate_generated.h"

namespace kappa {

std::string JsonEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 2);
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else if (const size_t n = c >= 0x80 ? Utf8SequenceAt(text, i) : 0; n > 0) {
      out.append(text, i, n);  // a UTF-8 character: as it is
      i += n - 1;
    } else {
      // A control character, or a byte that is not part of UTF-8: \u00XX.
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    }
  }
  return out;
}

namespace {
std::string Str(const flatbuffers::String* s) { return s ? JsonEscape(s->str()) : std::string(); }
std::string Num(const char* name, long long value) { return std::string(",\"") + name + "\":" + std::to_string(value); }
std::string Text(const char* name, const std::string& escaped) {
  return std::string(",\"") + name + "\":\"" + escaped + "\"";
}
}  // namespace

std::string FormatRecordJson(const uint8_t* data, size_t size) {
  // FlatBuffers reads scalars in place: Kafka buffers are not aligned, so
  // decode from an aligned copy (this path is for people, not throughput).
  std::vector<uint64_t> aligned((size + 7) / 8 + 1);
  if (size) std::memcpy(aligned.data(), data, size);
  data = reinterpret_cast<const uint8_t*>(aligned.data());
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyTransactionBuffer(v)) {
      auto* t = schema::GetTransaction(data);
      return "{\"type\":\"transaction\"" + Text("txn_id", Str(t->txn_id())) + Text("user_id", Str(t->user_id())) +
             Text("status", schema::EnumNameTxnStatus(t->status())) + Num("amount_cents", t->amount_cents()) +
             Text("currency", Str(t->currency())) + Num("event_time_ms", t->event_time_ms()) + "}";
    }
  }
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyWindowAggregateBuffer(v)) {
      auto* w = schema::GetWindowAggregate(data);
      // The stored double exactly, as feature rows write theirs: "%.6f"
      // showed 48116.645193 for 48116.64519326065, and an average below
      // 5e-7 as 0.000000 (a bug bash).
      std::string avg;
      AppendJsonDouble(&avg, w->avg());
      std::string out = "{\"type\":\"window\"" + Text("key", Str(w->key())) +
                        Num("window_start_ms", w->window_start_ms()) + Num("window_end_ms", w->window_end_ms()) +
                        Num("count", w->count()) + Num("sum", w->sum()) + Num("min", w->min()) +
                        Num("max", w->max()) + ",\"avg\":" + avg + Num("first_offset", w->first_offset()) +
                        Num("last_offset", w->last_offset());
      if (w->argmax() == nullptr) return out + "}";
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
      std::string out =
          "{\"type\":\"dlq\"" +
          Text("source", Str(d->source_topic()) + "[" + std::to_string(d->source_partition()) + "]@" +
                             std::to_string(d->source_offset())) +
          Num("source_timestamp_ms", d->source_timestamp_ms()) + Text("error_type", schema::EnumNameDlqErrorType(d->error_type())) + Text("error", Str(d->error_message())) +
          Num("payload_bytes", d->payload() ? d->payload()->size() : 0u) + Text("job", Str(d->job())) +
          Num("version", d->version()) + Text("spec_hash", Str(d->spec_hash())) +
          Num("retry_count", std::max(1, d->retry_count())) +
          Num("first_failure_at_ms", d->first_failure_at_ms() ? d->first_failure_at_ms() : d->failed_at_ms()) +
          Num("last_failure_at_ms", d->last_failure_at_ms() ? d->last_failure_at_ms() : d->failed_at_ms());
      if (d->truncated()) {
        // Cut to fit the sink's record size limit: what the whole was.
        out += ",\"truncated\":true" + Num("original_size", d->original_size()) +
               Num("original_key_size", d->original_key_size()) + Text("payload_xxh3", HashToHex(d->payload_xxh3()));
      }
      out += "}";
      return out;
    }
  }
  {
    flatbuffers::Verifier v(data, size);
    if (schema::VerifyNexmarkEventBuffer(v)) {
      const auto* e = schema::GetNexmarkEvent(data);
      if (const auto* b = e->body_as_Bid()) {
        return "{\"type\":\"bid\"" + Num("auction", b->auction()) + Num("bidder", b->bidder()) +
               Num("price", b->price()) + Text("channel", Str(b->channel())) + Text("url", Str(b->url())) +
               Num("date_time", b->date_time()) + Text("extra", Str(b->extra())) + "}";
      }
      if (const auto* a = e->body_as_Auction()) {
        return "{\"type\":\"auction\"" + Num("id", a->id()) + Text("item_name", Str(a->item_name())) +
               Text("description", Str(a->description())) + Num("initial_bid", a->initial_bid()) +
               Num("reserve", a->reserve()) + Num("date_time", a->date_time()) + Num("expires", a->expires()) +
               Num("seller", a->seller()) + Num("category", a->category()) + Text("extra", Str(a->extra())) + "}";
      }
      if (const auto* p = e->body_as_Person()) {
        return "{\"type\":\"person\"" + Num("id", p->id()) + Text("name", Str(p->name())) +
               Text("email_address", Str(p->email_address())) + Text("credit_card", Str(p->credit_card())) +
               Text("city", Str(p->city())) + Text("state", Str(p->state())) + Num("date_time", p->date_time()) +
               Text("extra", Str(p->extra())) + "}";
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
  // A JSON document on one line (feature rows, JSON inputs): as it is, once
  // a parser accepts it. A malformed one (a DLQ's usual payload) used to be
  // pasted in too, which made the whole line invalid JSON.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  bool one_line = size > 0;
  for (size_t i = 0; i < size && one_line; ++i) one_line = data[i] >= 0x20 || data[i] == '\t';
  if (one_line) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (!parser.parse(simdjson::padded_string(text)).get(doc)) return std::string(text);
  }
  // Anything else (Avro, other binary formats, malformed text), shown rather
  // than only counted: UTF-8 as it is, other bytes as \u00XX.
  return "{\"type\":\"raw\",\"bytes\":" + std::to_string(size) + ",\"text\":\"" + JsonEscape(std::string(text)) +
         "\"}";
}

}  // namespace kappa
