#include "operators/decode_validate.h"

#include <algorithm>
#include <cstring>

#include "formats/avro_decoder.h"
#include "formats/flatbuffers_decoder.h"
#include "formats/json_decoder.h"
#include "kafka/schema_registry.h"
#include "operators/field_access.h"
#include "schemas/nexmark_generated.h"
#include "schemas/transaction_generated.h"

namespace kappa {

Result<std::unique_ptr<RecordDecoder>> MakeRecordDecoder(const DecodeSpec& spec) {
  if (!spec.schema) return Status::InvalidArgument("a declared format needs its declared fields");
  switch (spec.format) {
    case RecordFormat::kJson: {
      auto decoder = JsonDecoder::Create(*spec.schema);
      if (!decoder.ok()) return decoder.status();
      return std::unique_ptr<RecordDecoder>(std::move(*decoder));
    }
    case RecordFormat::kFlatBuffers: {
      if (spec.schema_file.empty()) {
        return Status::InvalidArgument("format flatbuffers needs `source.schema`: the .fbs (or .bfbs) file");
      }
      auto decoder = FlatBuffersDecoder::Create(*spec.schema, spec.schema_file, spec.root_type);
      if (!decoder.ok()) return decoder.status();
      return std::unique_ptr<RecordDecoder>(std::move(*decoder));
    }
    case RecordFormat::kAvro: {
      if (spec.schema_registry_url.empty()) {
        return Status::InvalidArgument(
            "format avro needs `source.schema_registry`: the URL of the Schema Registry holding the writer schemas");
      }
      auto options = SchemaRegistryOptions::FromProperties({{"schema.registry.url", spec.schema_registry_url}});
      if (!options.ok()) return options.status();
      auto client = SchemaRegistryClient::Create(*options);
      if (!client.ok()) return client.status();
      std::shared_ptr<SchemaRegistryClient> registry(std::move(*client));
      auto decoder = AvroDecoder::Create(*spec.schema, registry.get());
      if (!decoder.ok()) return decoder.status();
      // The decoder borrows the client: keep it alive beside it.
      struct Owning final : RecordDecoder {
        std::shared_ptr<SchemaRegistryClient> registry;
        std::unique_ptr<AvroDecoder> decoder;
        void BeginBatch() override { decoder->BeginBatch(); }
        bool Decode(const RawRecord& r, FieldValue* out, DecodeError* e) override { return decoder->Decode(r, out, e); }
        const Status& last_fatal() const override { return decoder->last_fatal(); }
      };
      auto owning = std::make_unique<Owning>();
      owning->registry = std::move(registry);
      owning->decoder = std::move(*decoder);
      return std::unique_ptr<RecordDecoder>(std::move(owning));
    }
    default:
      return Status::InvalidArgument("format " + std::string(RecordFormatName(spec.format)) +
                                     " has no declared fields");
  }
}

DecodeValidate::DecodeValidate(DecodeSpec spec) : spec_(std::move(spec)) {
  if (!IsDeclaredFormat(spec_.format)) return;
  auto decoder = MakeRecordDecoder(spec_);
  if (decoder.ok()) {
    decoder_ = std::move(*decoder);
  } else {
    decoder_status_ = decoder.status();
  }
}

DecodeValidate::~DecodeValidate() = default;

DlqReason DecodeValidate::Classify(const uint8_t* data, size_t size, std::string* message) {
  // Re-verify the buffer with the library's checks, but leniently: the root
  // table and every field that is present must be well-formed; only then is
  // an absent required field the reason. Anything else is undecodable.
  auto undecodable = [&] {
    *message = "not a valid Transaction FlatBuffer (" + std::to_string(size) +
               " bytes: garbage, truncated or another schema)";
    return DlqReason::kUndecodable;
  };
  if (data == nullptr || size < 2 * sizeof(flatbuffers::uoffset_t) ||
      !flatbuffers::BufferHasIdentifier(data, schema::TransactionIdentifier())) {
    return undecodable();
  }
  flatbuffers::Verifier verifier(data, size);
  const flatbuffers::uoffset_t root = verifier.VerifyOffset(0);
  if (root == 0) return undecodable();
  // schema::Transaction hides its Table base; the verifying calls are on Table.
  const auto* t = reinterpret_cast<const flatbuffers::Table*>(data + root);
  using T = schema::Transaction;
  auto string_ok = [&](flatbuffers::voffset_t field) {
    return t->VerifyOffset(verifier, field) &&
           verifier.VerifyString(t->GetPointer<const flatbuffers::String*>(field));
  };
  const bool present_fields_ok =
      t->VerifyTableStart(verifier) && string_ok(T::VT_TXN_ID) && string_ok(T::VT_USER_ID) &&
      t->VerifyField<int8_t>(verifier, T::VT_STATUS, 1) &&
      t->VerifyField<int64_t>(verifier, T::VT_AMOUNT_CENTS, 8) && string_ok(T::VT_CURRENCY) &&
      t->VerifyField<int64_t>(verifier, T::VT_EVENT_TIME_MS, 8) && verifier.EndTable();
  if (!present_fields_ok) return undecodable();
  const std::pair<flatbuffers::voffset_t, const char*> required[] = {
      {T::VT_TXN_ID, "txn_id"}, {T::VT_USER_ID, "user_id"}, {T::VT_CURRENCY, "currency"}};
  for (const auto& [field, name] : required) {
    if (t->GetOptionalFieldOffset(field) == 0) {
      *message = std::string("required field ") + name + " is missing";
      return DlqReason::kMissingField;
    }
  }
  return undecodable();
}

bool DecodeValidate::CheckValues(const schema::Transaction* t, std::string* message) const {
  const int64_t amount = t->amount_cents();
  if (amount < spec_.min_amount_cents || amount > spec_.max_amount_cents) {
    *message = "amount_cents " + std::to_string(amount) + " is outside [" +
               std::to_string(spec_.min_amount_cents) + ", " + std::to_string(spec_.max_amount_cents) + "]";
    return false;
  }
  if (t->event_time_ms() < spec_.min_event_time_ms) {
    *message = "event_time_ms " + std::to_string(t->event_time_ms()) + " is below the minimum " +
               std::to_string(spec_.min_event_time_ms);
    return false;
  }
  const std::string_view currency(t->currency()->c_str(), t->currency()->size());
  if (currency.empty()) {
    *message = "currency is empty";
    return false;
  }
  if (!spec_.allowed_currencies.empty() &&
      std::find(spec_.allowed_currencies.begin(), spec_.allowed_currencies.end(), currency) ==
          spec_.allowed_currencies.end()) {
    *message = "currency `" + std::string(currency) + "` is not in the allowed list";
    return false;
  }
  // The verifier does not check enum ranges.
  const auto status = static_cast<int>(t->status());
  if (status < static_cast<int>(schema::TxnStatus::MIN) ||
      status > static_cast<int>(schema::TxnStatus::MAX)) {
    *message = "status " + std::to_string(status) + " is not approved (0), cancelled (1) or refunded (2)";
    return false;
  }
  return true;
}

bool DecodeValidate::DecodeNexmark(InputRecord& rec, DlqReason* reason, std::string* message) const {
  // The identifier by a 4-byte compare (the library's check is a strncmp
  // call per record), then the full verification.
  flatbuffers::Verifier verifier(rec.payload, rec.size);
  if (rec.size < 2 * sizeof(flatbuffers::uoffset_t) ||
      std::memcmp(rec.payload + sizeof(flatbuffers::uoffset_t), schema::NexmarkEventIdentifier(),
                  flatbuffers::kFileIdentifierLength) != 0 ||
      !verifier.VerifyBuffer<schema::NexmarkEvent>(nullptr)) {
    *reason = DlqReason::kUndecodable;
    *message = "not a valid NexmarkEvent FlatBuffer (" + std::to_string(rec.size) +
               " bytes: garbage, truncated or another schema)";
    return false;
  }
  const schema::NexmarkEvent* e = schema::GetNexmarkEvent(rec.payload);
  const auto type = e->body_type();
  *reason = DlqReason::kInvalidValue;
  int64_t date_time = 0;
  switch (type) {
    case schema::NexmarkBody::NONE:
      *reason = DlqReason::kMissingField;
      *message = "required field body is missing (no person, auction or bid)";
      return false;
    case schema::NexmarkBody::Bid: {
      const schema::Bid* b = e->body_as_Bid();
      if (b->price() < 0) {
        *message = "bid price " + std::to_string(b->price()) + " is negative";
        return false;
      }
      date_time = b->date_time();
      rec.value = b->price();
      break;
    }
    case schema::NexmarkBody::Auction: {
      const schema::Auction* a = e->body_as_Auction();
      if (a->initial_bid() < 0 || a->reserve() < 0) {
        *message = "auction initial_bid " + std::to_string(a->initial_bid()) + " or reserve " +
                   std::to_string(a->reserve()) + " is negative";
        return false;
      }
      date_time = a->date_time();
      rec.value = 0;
      break;
    }
    case schema::NexmarkBody::Person:
      date_time = e->body_as_Person()->date_time();
      rec.value = 0;
      break;
    default:  // the verifier accepts unknown union types (forward compatibility)
      *message = "event type " + std::to_string(static_cast<int>(type)) +
                 " is not person (1), auction (2) or bid (3)";
      return false;
  }
  if (date_time < spec_.min_event_time_ms) {
    *message = "date_time " + std::to_string(date_time) + " is below the minimum " +
               std::to_string(spec_.min_event_time_ms);
    return false;
  }
  rec.nexmark = e->body();
  rec.nexmark_type = static_cast<uint8_t>(type);
  rec.event_time_ms = date_time;
  return true;
}

void DecodeValidate::Process(RecordBatch& batch, TaskContext& ctx) {
  if (spec_.format == RecordFormat::kNexmark) {
    ProcessNexmark(batch, ctx);
    return;
  }
  if (IsDeclaredFormat(spec_.format)) {
    ProcessDeclared(batch, ctx);
    return;
  }
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    if (rec.payload == nullptr) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kUndecodable, "empty payload (tombstone)");
      ++ctx.counters->dlq;
      continue;
    }
    flatbuffers::Verifier verifier(rec.payload, rec.size);
    if (!schema::VerifyTransactionBuffer(verifier)) {
      const DlqReason reason = Classify(rec.payload, rec.size, &message_);
      ctx.out->EmitDlq(batch.partition, rec, reason, message_);
      ++ctx.counters->dlq;
      continue;
    }
    const schema::Transaction* t = schema::GetTransaction(rec.payload);
    if (!CheckValues(t, &message_)) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kInvalidValue, message_);
      ++ctx.counters->dlq;
      continue;
    }
    rec.txn = t;
    rec.event_time_ms = t->event_time_ms();
    rec.value = t->amount_cents();
    if (ctx.max_event_time_ms == kNoTime || rec.event_time_ms > ctx.max_event_time_ms) {
      ctx.max_event_time_ms = rec.event_time_ms;
    }
    rec.watermark_ms = ctx.watermark_ms();
    batch.selection[kept++] = idx;
  }
  batch.selection.resize(kept);
}

void DecodeValidate::ProcessNexmark(RecordBatch& batch, TaskContext& ctx) {
  size_t kept = 0;
  DlqReason reason = DlqReason::kUndecodable;
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    if (rec.payload == nullptr) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kUndecodable, "empty payload (tombstone)");
      ++ctx.counters->dlq;
      continue;
    }
    if (!DecodeNexmark(rec, &reason, &message_)) {
      ctx.out->EmitDlq(batch.partition, rec, reason, message_);
      ++ctx.counters->dlq;
      continue;
    }
    if (ctx.max_event_time_ms == kNoTime || rec.event_time_ms > ctx.max_event_time_ms) {
      ctx.max_event_time_ms = rec.event_time_ms;
    }
    rec.watermark_ms = ctx.watermark_ms();
    batch.selection[kept++] = idx;
  }
  batch.selection.resize(kept);
}

void DecodeValidate::ProcessDeclared(RecordBatch& batch, TaskContext& ctx) {
  const size_t width = static_cast<size_t>(spec_.schema->size());
  // Sized once per batch: records keep pointers into it until the batch ends.
  slots_.resize(batch.records.size() * width);
  if (decoder_) decoder_->BeginBatch();
  DecodeError error;
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    if (rec.payload == nullptr) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kUndecodable, "empty payload (tombstone)");
      ++ctx.counters->dlq;
      continue;
    }
    if (!decoder_) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kUndecodable, decoder_status_.ToString());
      ++ctx.counters->dlq;
      continue;
    }
    FieldValue* values = slots_.data() + static_cast<size_t>(idx) * width;
    RawRecord raw;
    raw.payload = rec.payload;
    raw.size = rec.size;
    raw.key = rec.key;
    raw.key_size = rec.key_size;
    raw.timestamp_ms = rec.timestamp_ms;
    if (!decoder_->Decode(raw, values, &error)) {
      if (!decoder_->last_fatal().ok()) {
        // Not the record's fault: stop the task here; nothing of this
        // batch is committed (Task::Process), the job stops and resumes.
        ctx.fatal = decoder_->last_fatal();
        batch.selection.clear();
        return;
      }
      const DlqReason reason = error.kind == DecodeError::Kind::kUndecodable   ? DlqReason::kUndecodable
                               : error.kind == DecodeError::Kind::kMissingField ? DlqReason::kMissingField
                                                                                : DlqReason::kInvalidValue;
      message_ = error.path.empty() ? error.message : error.path + ": " + error.message;
      ctx.out->EmitDlq(batch.partition, rec, reason, message_);
      ++ctx.counters->dlq;
      continue;
    }
    const int64_t event_time = values[spec_.event_time_slot].i;
    if (event_time < spec_.min_event_time_ms) {
      message_ = spec_.schema->field(spec_.event_time_slot).path + ": event time " + std::to_string(event_time) +
                 " is below the minimum " + std::to_string(spec_.min_event_time_ms);
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kInvalidValue, message_);
      ++ctx.counters->dlq;
      continue;
    }
    rec.fields = values;
    rec.event_time_ms = event_time;
    rec.value = spec_.value_slot >= 0 && values[spec_.value_slot].present ? values[spec_.value_slot].i : 0;
    if (ctx.max_event_time_ms == kNoTime || rec.event_time_ms > ctx.max_event_time_ms) {
      ctx.max_event_time_ms = rec.event_time_ms;
    }
    rec.watermark_ms = ctx.watermark_ms();
    batch.selection[kept++] = idx;
  }
  batch.selection.resize(kept);
}

}  // namespace kappa
