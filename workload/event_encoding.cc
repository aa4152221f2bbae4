#include "workload/event_encoding.h"

#include <avro.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/hash.h"
#include "schemas/examples/payment_generated.h"
#include "schemas/nexmark_generated.h"
#include "workload/payment_avsc.h"

namespace kappa {
namespace {

constexpr const char* kCountries[] = {"DE", "FR", "GB", "US", "NL", "ES", "IT", "PL", "SE", "JP", "BR", "IN"};
constexpr uint64_t kMerchants = 5000;

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, res.ptr);
}

Status AvroError(const char* what) {
  return Status::FailedPrecondition(std::string("avro: ") + what + ": " + avro_strerror());
}

}  // namespace

const char* EventFormatName(EventFormat format) {
  switch (format) {
    case EventFormat::kTransaction: return "transaction";
    case EventFormat::kJson: return "json";
    case EventFormat::kAvro: return "avro";
    case EventFormat::kFlatBuffers: return "flatbuffers";
  }
  return "?";
}

Result<EventFormat> ParseEventFormat(std::string_view name) {
  for (EventFormat f : {EventFormat::kTransaction, EventFormat::kJson, EventFormat::kAvro, EventFormat::kFlatBuffers}) {
    if (name == EventFormatName(f)) return f;
  }
  return Status::InvalidArgument("unknown format `" + std::string(name) +
                                 "`: use transaction (kappa's own), json, avro or flatbuffers");
}

const char* MalformedClassName(MalformedClass c) {
  switch (c) {
    case MalformedClass::kNone: return "valid";
    case MalformedClass::kGarbage: return "garbage";
    case MalformedClass::kInvalidJson: return "invalid_json";
    case MalformedClass::kTruncated: return "truncated";
    case MalformedClass::kMissingField: return "missing_field";
    case MalformedClass::kWrongType: return "wrong_type";
    case MalformedClass::kBadMagic: return "bad_magic";
    case MalformedClass::kTruncatedHeader: return "truncated_header";
  }
  return "?";
}

const char* CountryOf(std::string_view user_id) {
  return kCountries[Fnv1a64(user_id) % (sizeof(kCountries) / sizeof(kCountries[0]))];
}

size_t MerchantOf(std::string_view txn_id, char* buf) {
  uint64_t n = Fnv1a64(txn_id, 0x6d65726368616e74ULL) % kMerchants;
  buf[0] = 'm';
  buf[1] = '-';
  for (int i = 6; i >= 2; --i, n /= 10) buf[i] = static_cast<char>('0' + n % 10);
  buf[7] = 0;
  return 7;
}

const char* StatusName(int8_t status) {
  switch (status) {
    case 0: return "approved";
    case 1: return "cancelled";
    case 2: return "refunded";
  }
  return "unknown";
}

void EncodeJson(const GeneratedRecord& txn, std::string* out) {
  char merchant[8];
  const size_t merchant_len = MerchantOf(txn.txn_id, merchant);
  char iso[32];
  const size_t iso_len = IsoTime(txn.event_time_ms, iso);
  out->clear();
  out->append("{\"txn_id\":\"").append(txn.txn_id);
  out->append("\",\"user\":{\"id\":\"").append(txn.user_id);
  out->append("\",\"country\":\"").append(CountryOf(txn.user_id));
  out->append("\"},\"status\":\"").append(StatusName(txn.status));
  out->append("\",\"amount\":{\"cents\":");
  AppendInt(out, txn.amount_cents);
  out->append(",\"currency\":\"").append(txn.currency);
  out->append("\"},\"event_time\":\"").append(iso, iso_len);
  out->append("\",\"event_time_ms\":");
  AppendInt(out, txn.event_time_ms);
  out->append(",\"merchant\":\"").append(merchant, merchant_len);
  out->append("\"}");
}

void EncodePayment(const GeneratedRecord& txn, flatbuffers::FlatBufferBuilder* fbb, std::string* out) {
  namespace ap = acme::payments;
  char merchant[8];
  const size_t merchant_len = MerchantOf(txn.txn_id, merchant);
  fbb->Clear();
  auto ref = fbb->CreateString(txn.txn_id);
  auto payer = ap::CreatePayer(*fbb, fbb->CreateString(txn.user_id), fbb->CreateString(CountryOf(txn.user_id)));
  auto amount = ap::CreateMoney(*fbb, txn.amount_cents, fbb->CreateString(txn.currency));
  auto merchant_off = fbb->CreateString(merchant, merchant_len);
  auto root = ap::CreatePayment(*fbb, ref, payer, static_cast<ap::PaymentState>(txn.status), amount,
                                txn.event_time_ms * 1000, merchant_off);
  ap::FinishPaymentBuffer(*fbb, root);
  out->assign(reinterpret_cast<const char*>(fbb->GetBufferPointer()), fbb->GetSize());
}

// ---- Nexmark as JSON ----

namespace {

// A JSON string of s (quotes, backslashes and control characters escaped).
void AppendJsonString(std::string* out, const flatbuffers::String* s) {
  out->push_back('"');
  if (s != nullptr) {
    for (char c : s->string_view()) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out->push_back('\\');
        out->push_back(c);
      } else if (u < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\u%04x", u);
        out->append(buf);
      } else {
        out->push_back(c);
      }
    }
  }
  out->push_back('"');
}

// ,"<name>":<n>
void Field(std::string* out, const char* name, int64_t v) {
  out->append(",\"").append(name).append("\":");
  AppendInt(out, v);
}
void Field(std::string* out, const char* name, const flatbuffers::String* s) {
  out->append(",\"").append(name).append("\":");
  AppendJsonString(out, s);
}
// ,"<iso_name>":"<ISO-8601>","<ms_name>":<ms>
void TimeFields(std::string* out, const char* iso_name, const char* ms_name, int64_t ms) {
  char iso[32];
  const size_t len = IsoTime(ms, iso);
  out->append(",\"").append(iso_name).append("\":\"").append(iso, len).append("\"");
  Field(out, ms_name, ms);
}

}  // namespace

Status EncodeNexmarkJson(std::string_view flatbuffer, std::string* out) {
  namespace s = schema;
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(flatbuffer.data()), flatbuffer.size());
  if (!s::VerifyNexmarkEventBuffer(verifier)) {
    return Status::InvalidArgument("not a FlatBuffers NexmarkEvent (schemas/nexmark.fbs): cannot write it as JSON");
  }
  const s::NexmarkEvent* event = s::GetNexmarkEvent(flatbuffer.data());
  out->clear();
  if (const s::Bid* b = event->body_as_Bid()) {
    out->append("{\"type\":\"bid\"");
    Field(out, "auction", b->auction());
    Field(out, "bidder", b->bidder());
    Field(out, "price", b->price());
    Field(out, "channel", b->channel());
    Field(out, "url", b->url());
    TimeFields(out, "dateTime", "date_time_ms", b->date_time());
    Field(out, "extra", b->extra());
  } else if (const s::Person* p = event->body_as_Person()) {
    out->append("{\"type\":\"person\"");
    Field(out, "id", p->id());
    Field(out, "name", p->name());
    Field(out, "emailAddress", p->email_address());
    Field(out, "creditCard", p->credit_card());
    Field(out, "city", p->city());
    Field(out, "state", p->state());
    TimeFields(out, "dateTime", "date_time_ms", p->date_time());
    Field(out, "extra", p->extra());
  } else if (const s::Auction* a = event->body_as_Auction()) {
    out->append("{\"type\":\"auction\"");
    Field(out, "id", a->id());
    Field(out, "itemName", a->item_name());
    Field(out, "description", a->description());
    Field(out, "initialBid", a->initial_bid());
    Field(out, "reserve", a->reserve());
    TimeFields(out, "dateTime", "date_time_ms", a->date_time());
    TimeFields(out, "expires", "expires_ms", a->expires());
    Field(out, "seller", a->seller());
    Field(out, "category", a->category());
    Field(out, "extra", a->extra());
  } else {
    return Status::InvalidArgument("a NexmarkEvent without a body: nothing to write as JSON");
  }
  out->push_back('}');
  return Status::OK();
}

// ---- Avro ----

struct AvroPaymentEncoder::Impl {
  avro_schema_t schema = nullptr;
  avro_value_iface_t* iface = nullptr;
  avro_value_t value{};
  bool has_value = false;
  avro_writer_t writer = nullptr;
  std::vector<char> buffer = std::vector<char>(1024);
  // Field indexes, resolved by name once.
  size_t txn_id = 0, user = 0, user_id = 0, user_country = 0, status = 0, amount = 0, cents = 0, currency = 0,
         event_time = 0, merchant = 0;

  ~Impl() {
    if (writer) avro_writer_free(writer);
    if (has_value) avro_value_decref(&value);
    if (iface) avro_value_iface_decref(iface);
    if (schema) avro_schema_decref(schema);
  }
};

const char* AvroPaymentEncoder::SchemaJson() { return kPaymentAvsc; }

AvroPaymentEncoder::~AvroPaymentEncoder() = default;

Result<std::unique_ptr<AvroPaymentEncoder>> AvroPaymentEncoder::Create(int32_t schema_id) {
  if (schema_id < 0) return Status::InvalidArgument("an Avro schema id is between 0 and 2147483647");
  std::unique_ptr<AvroPaymentEncoder> enc(new AvroPaymentEncoder());
  enc->schema_id_ = schema_id;
  enc->impl_ = std::make_unique<Impl>();
  Impl& m = *enc->impl_;
  if (avro_schema_from_json_length(kPaymentAvsc, std::strlen(kPaymentAvsc), &m.schema) != 0) {
    return AvroError("schemas/examples/payment.avsc does not parse");
  }
  m.iface = avro_generic_class_from_schema(m.schema);
  if (m.iface == nullptr) return AvroError("no generic class for payment.avsc");
  if (avro_generic_value_new(m.iface, &m.value) != 0) return AvroError("avro_generic_value_new");
  m.has_value = true;
  auto index = [](avro_schema_t record, const char* name, size_t* out) {
    const int i = avro_schema_record_field_get_index(record, name);
    if (i < 0) return Status::FailedPrecondition(std::string("payment.avsc has no field `") + name + "`");
    *out = static_cast<size_t>(i);
    return Status::OK();
  };
  KAPPA_RETURN_IF_ERROR(index(m.schema, "txn_id", &m.txn_id));
  KAPPA_RETURN_IF_ERROR(index(m.schema, "user", &m.user));
  KAPPA_RETURN_IF_ERROR(index(m.schema, "status", &m.status));
  KAPPA_RETURN_IF_ERROR(index(m.schema, "amount", &m.amount));
  KAPPA_RETURN_IF_ERROR(index(m.schema, "event_time", &m.event_time));
  KAPPA_RETURN_IF_ERROR(index(m.schema, "merchant", &m.merchant));
  avro_schema_t user = avro_schema_record_field_get_by_index(m.schema, static_cast<int>(m.user));
  avro_schema_t amount = avro_schema_record_field_get_by_index(m.schema, static_cast<int>(m.amount));
  KAPPA_RETURN_IF_ERROR(index(user, "id", &m.user_id));
  KAPPA_RETURN_IF_ERROR(index(user, "country", &m.user_country));
  KAPPA_RETURN_IF_ERROR(index(amount, "cents", &m.cents));
  KAPPA_RETURN_IF_ERROR(index(amount, "currency", &m.currency));
  m.writer = avro_writer_memory(m.buffer.data(), static_cast<int64_t>(m.buffer.size()));
  if (m.writer == nullptr) return AvroError("avro_writer_memory");
  return enc;
}

Status AvroPaymentEncoder::Encode(const GeneratedRecord& txn, std::string* out) {
  Impl& m = *impl_;
  char merchant[8];
  const size_t merchant_len = MerchantOf(txn.txn_id, merchant);
  const char* country = CountryOf(txn.user_id);
  avro_value_t field, inner;
  // Avro C string sizes count the terminating NUL.
  auto set_string = [](avro_value_t* v, const char* s, size_t len) {
    return avro_value_set_string_len(v, s, len + 1);
  };
  int rc = 0;
  rc |= avro_value_get_by_index(&m.value, m.txn_id, &field, nullptr);
  rc |= set_string(&field, txn.txn_id.c_str(), txn.txn_id.size());
  rc |= avro_value_get_by_index(&m.value, m.user, &field, nullptr);
  rc |= avro_value_get_by_index(&field, m.user_id, &inner, nullptr);
  rc |= set_string(&inner, txn.user_id.c_str(), txn.user_id.size());
  rc |= avro_value_get_by_index(&field, m.user_country, &inner, nullptr);
  rc |= set_string(&inner, country, std::strlen(country));
  rc |= avro_value_get_by_index(&m.value, m.status, &field, nullptr);
  rc |= avro_value_set_enum(&field, txn.status);
  rc |= avro_value_get_by_index(&m.value, m.amount, &field, nullptr);
  rc |= avro_value_get_by_index(&field, m.cents, &inner, nullptr);
  rc |= avro_value_set_long(&inner, txn.amount_cents);
  rc |= avro_value_get_by_index(&field, m.currency, &inner, nullptr);
  rc |= set_string(&inner, txn.currency.c_str(), txn.currency.size());
  rc |= avro_value_get_by_index(&m.value, m.event_time, &field, nullptr);
  rc |= avro_value_set_long(&field, txn.event_time_ms);
  rc |= avro_value_get_by_index(&m.value, m.merchant, &field, nullptr);
  rc |= set_string(&field, merchant, merchant_len);
  if (rc != 0) return AvroError("setting the fields of a Payment");
  for (;;) {
    avro_writer_memory_set_dest(m.writer, m.buffer.data(), static_cast<int64_t>(m.buffer.size()));
    if (avro_value_write(m.writer, &m.value) == 0) break;
    if (m.buffer.size() >= (1u << 20)) return AvroError("writing a Payment");
    m.buffer.resize(m.buffer.size() * 2);  // a record larger than the buffer: rare, grow once
  }
  const size_t len = static_cast<size_t>(avro_writer_tell(m.writer));
  out->resize(5 + len);
  char* p = out->data();
  p[0] = 0;  // Confluent wire format: magic byte, schema id big-endian, body
  const uint32_t id = static_cast<uint32_t>(schema_id_);
  p[1] = static_cast<char>(id >> 24);
  p[2] = static_cast<char>(id >> 16);
  p[3] = static_cast<char>(id >> 8);
  p[4] = static_cast<char>(id);
  std::memcpy(p + 5, m.buffer.data(), len);
  return Status::OK();
}

// ---- EventEncoder ----

EventEncoder::EventEncoder(const EncodingOptions& options, const GeneratorOptions& generator)
    : options_(options), generator_(generator), random_(generator.seed ^ 0x9e3779b97f4a7c15ULL) {}

EventEncoder::~EventEncoder() = default;

Result<std::unique_ptr<EventEncoder>> EventEncoder::Create(const EncodingOptions& options,
                                                           const GeneratorOptions& generator) {
  std::unique_ptr<EventEncoder> enc(new EventEncoder(options, generator));
  if (options.format == EventFormat::kAvro) {
    auto avro = AvroPaymentEncoder::Create(options.schema_id);
    if (!avro.ok()) return avro.status();
    enc->avro_ = std::move(*avro);
  }
  return enc;
}

Status EventEncoder::Encode(const GeneratedRecord& record, const std::string** value) {
  const bool valid = record.kind == RecordKind::kValid || record.kind == RecordKind::kDuplicate;
  if (options_.format == EventFormat::kTransaction) {
    switch (record.kind) {
      case RecordKind::kGarbage: last_ = MalformedClass::kGarbage; break;
      case RecordKind::kTruncated: last_ = MalformedClass::kTruncated; break;
      case RecordKind::kMissingField: last_ = MalformedClass::kMissingField; break;
      default: last_ = MalformedClass::kNone; break;
    }
    ++stats_.count[static_cast<int>(last_)];
    *value = &record.value;
    return Status::OK();
  }
  *value = &buffer_;
  if (!valid) {
    EncodeMalformed(record);
    ++stats_.count[static_cast<int>(last_)];
    return Status::OK();
  }
  last_ = MalformedClass::kNone;
  ++stats_.count[0];
  switch (options_.format) {
    case EventFormat::kJson: EncodeJson(record, &buffer_); break;
    case EventFormat::kFlatBuffers: EncodePayment(record, &fbb_, &buffer_); break;
    case EventFormat::kAvro: return avro_->Encode(record, &buffer_);
    case EventFormat::kTransaction: break;
  }
  return Status::OK();
}

// Keeps a strict prefix of buffer_, at least min_keep bytes long.
void EventEncoder::CutShort(size_t min_keep) {
  if (buffer_.size() <= min_keep + 1) {
    buffer_.resize(min_keep);
    return;
  }
  buffer_.resize(min_keep + random_.Uniform(buffer_.size() - min_keep));
}

void EventEncoder::EncodeMalformed(const GeneratedRecord& record) {
  // A made-up transaction of the record's user that the broken bytes derive from.
  char txn[32];
  std::snprintf(txn, sizeof(txn), "tbad%08llu", static_cast<unsigned long long>(malformed_seq_++));
  scratch_.kind = RecordKind::kValid;
  scratch_.txn_id = txn;
  scratch_.user_id = record.key;
  scratch_.status = 0;
  scratch_.amount_cents = 100 + static_cast<int64_t>(random_.Uniform(200000));
  scratch_.currency = "USD";
  scratch_.event_time_ms = generator_.start_time_ms;
  switch (options_.format) {
    case EventFormat::kJson: {
      EncodeJson(scratch_, &buffer_);
      if (record.kind == RecordKind::kGarbage) {
        last_ = MalformedClass::kInvalidJson;
        const size_t p = buffer_.find(",\"status\":\"");
        if (random_.Bernoulli(0.5)) {
          buffer_.erase(p, 1);  // no comma between two members
        } else {  // an unquoted word as a value: "status":approved
          buffer_.erase(buffer_.find('"', p + 11), 1);
          buffer_.erase(p + 10, 1);
        }
      } else if (record.kind == RecordKind::kTruncated) {
        last_ = MalformedClass::kTruncated;
        CutShort(1);
      } else if (random_.Bernoulli(0.5)) {
        last_ = MalformedClass::kMissingField;
        if (random_.Bernoulli(0.5)) {  // user without "id"
          const size_t p = buffer_.find("\"id\":\"");
          buffer_.erase(p, buffer_.find("\",", p) + 2 - p);
        } else {  // amount without "cents"
          const size_t p = buffer_.find("\"cents\":");
          buffer_.erase(p, buffer_.find(',', p) + 1 - p);
        }
      } else {
        last_ = MalformedClass::kWrongType;  // "cents":"1234"
        const size_t p = buffer_.find("\"cents\":") + 8;
        buffer_.insert(buffer_.find(',', p), 1, '"');
        buffer_.insert(p, 1, '"');
      }
      return;
    }
    case EventFormat::kAvro: {
      if (Status st = avro_->Encode(scratch_, &buffer_); !st.ok()) buffer_.assign("\x01");
      if (record.kind == RecordKind::kGarbage) {
        last_ = MalformedClass::kBadMagic;
        buffer_[0] = static_cast<char>(1 + random_.Uniform(255));
      } else if (record.kind == RecordKind::kTruncated) {
        last_ = MalformedClass::kTruncated;
        CutShort(5);
      } else {
        last_ = MalformedClass::kTruncatedHeader;
        buffer_.resize(1 + random_.Uniform(4));
      }
      return;
    }
    case EventFormat::kFlatBuffers: {
      namespace ap = acme::payments;
      if (record.kind == RecordKind::kGarbage) {
        last_ = MalformedClass::kGarbage;
        buffer_.resize(8 + random_.Uniform(120));
        for (auto& c : buffer_) c = static_cast<char>(random_.Next() & 0xff);
        buffer_[4] = 'X';  // never the ACP1 file identifier
      } else if (record.kind == RecordKind::kTruncated) {
        last_ = MalformedClass::kTruncated;
        EncodePayment(scratch_, &fbb_, &buffer_);
        CutShort(1);
        // Cutting only trailing padding could leave a verifiable buffer; cut more.
        while (buffer_.size() > 1) {
          flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(buffer_.data()), buffer_.size());
          if (!ap::VerifyPaymentBuffer(v)) break;
          buffer_.resize(buffer_.size() / 2);
        }
      } else {
        // Structurally valid but without a required table, built with the raw
        // table API because the generated builder refuses to finish it.
        last_ = MalformedClass::kMissingField;
        const bool no_payer = random_.Bernoulli(0.5);
        fbb_.Clear();
        auto ref = fbb_.CreateString(scratch_.txn_id);
        auto payer = ap::CreatePayer(fbb_, fbb_.CreateString(scratch_.user_id));
        auto amount = ap::CreateMoney(fbb_, scratch_.amount_cents, fbb_.CreateString(scratch_.currency));
        auto start = fbb_.StartTable();
        fbb_.AddElement<int64_t>(ap::Payment::VT_CREATED_AT_US, scratch_.event_time_ms * 1000, 0);
        if (no_payer) {
          fbb_.AddOffset(ap::Payment::VT_AMOUNT, amount);
        } else {
          fbb_.AddOffset(ap::Payment::VT_PAYER, payer);
        }
        fbb_.AddOffset(ap::Payment::VT_PAYMENT_REF, ref);
        auto table = flatbuffers::Offset<ap::Payment>(fbb_.EndTable(start));
        fbb_.Finish(table, ap::PaymentIdentifier());
        buffer_.assign(reinterpret_cast<const char*>(fbb_.GetBufferPointer()), fbb_.GetSize());
      }
      return;
    }
    case EventFormat::kTransaction: return;
  }
}

}  // namespace kappa
