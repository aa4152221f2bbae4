#include "operators/decode_validate.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "formats/avro_decoder.h"
#include "formats/flatbuffers_decoder.h"
#include "formats/json_decoder.h"
#include "kafka/schema_registry.h"
#include "operators/field_access.h"

namespace kappa {

namespace {

// One registry client per registry URL in the process, shared by the
// decoders of every task that reads from it: each task made its own, and a
// topic of P partitions asked the registry for every writer schema P times
// at a start or a replay (a bug bash; the client is thread-safe and its
// cache is what makes a schema "fetched once per id").
Result<std::shared_ptr<SchemaRegistryClient>> SharedRegistryClient(const std::string& url) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<SchemaRegistryClient>> clients;
  std::lock_guard<std::mutex> lock(mu);
  if (auto client = clients[url].lock()) return client;
  auto options = SchemaRegistryOptions::FromProperties({{"schema.registry.url", url}});
  if (!options.ok()) return options.status();
  options->setting = "source.schema_registry";
  auto created = SchemaRegistryClient::Create(*options);
  if (!created.ok()) return created.status();
  std::shared_ptr<SchemaRegistryClient> client(std::move(*created));
  clients[url] = client;
  return client;
}

}  // namespace

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
      auto client = SharedRegistryClient(spec.schema_registry_url);
      if (!client.ok()) return client.status();
      std::shared_ptr<SchemaRegistryClient> registry = std::move(*client);
      if (spec.on_registry_wait) registry->SetWaitNote(spec.on_registry_wait);
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

namespace {

DlqReason ReasonOf(BuiltinVerdict verdict) {
  return verdict == BuiltinVerdict::kUndecodable    ? DlqReason::kUndecodable
         : verdict == BuiltinVerdict::kMissingField ? DlqReason::kMissingField
                                                    : DlqReason::kInvalidValue;
}

}  // namespace

DecodeValidate::DecodeValidate(DecodeSpec spec) : spec_(std::move(spec)) {
  if (spec_.format == RecordFormat::kTransaction) {
    TransactionChecks checks;
    checks.min_amount_cents = spec_.min_amount_cents;
    checks.max_amount_cents = spec_.max_amount_cents;
    checks.min_event_time_ms = spec_.min_event_time_ms;
    checks.allowed_currencies = spec_.allowed_currencies;
    transaction_ = std::make_unique<TransactionDecoder>(std::move(checks));
    return;
  }
  if (spec_.format == RecordFormat::kNexmark) {
    // The built-in Fields are their slots (operators/field_access.h).
    std::vector<int> slots;
    for (Field f : spec_.read_fields) {
      if (IsBuiltinSlotField(f)) slots.push_back(static_cast<int>(f));
    }
    // Nothing read but offset/value/partition: fill only the type, not
    // "every field" (which an empty list means).
    if (slots.empty() && !spec_.read_fields.empty()) slots.push_back(kSlotType);
    nexmark_ = std::make_unique<NexmarkDecoder>(spec_.min_event_time_ms, slots);
    return;
  }
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
  return ReasonOf(TransactionDecoder::Classify(data, size, message));
}

void DecodeValidate::Process(RecordBatch& batch, TaskContext& ctx) {
  if (transaction_) {
    ProcessBuiltin(*transaction_, kTransactionSlotCount, kTransactionSlotCount - 1, batch, ctx);
  } else if (nexmark_) {
    const int first = nexmark_->first_slot(), last = nexmark_->last_slot();
    ProcessBuiltin(*nexmark_, static_cast<size_t>(last - first + 1), static_cast<size_t>(last), batch, ctx);
  } else {
    ProcessDeclared(batch, ctx);
  }
}

template <typename Decoder>
void DecodeValidate::ProcessBuiltin(const Decoder& decoder, size_t stride, size_t last, RecordBatch& batch,
                                    TaskContext& ctx) {
  // Sized once per batch: records keep pointers into it until the batch ends.
  // The last record's view reaches slot `last`.
  const size_t needed = batch.records.size() * stride + (last + 1 - stride);
  if (slots_.size() < needed) slots_.resize(needed);
  BuiltinRecordTimes times;
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    if (rec.payload == nullptr) {
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kUndecodable, "empty payload (tombstone)");
      ++ctx.counters->dlq;
      continue;
    }
    FieldValue* values = slots_.data() + static_cast<size_t>(idx) * stride;
    const BuiltinVerdict verdict = decoder.Decode(rec.payload, rec.size, values, &times, &message_);
    if (verdict != BuiltinVerdict::kOk) [[unlikely]] {
      ctx.out->EmitDlq(batch.partition, rec, ReasonOf(verdict), message_);
      ++ctx.counters->dlq;
      continue;
    }
    rec.fields = values;
    rec.event_time_ms = times.event_time_ms;
    rec.value = times.value;
    if (ctx.max_event_time_ms == kNoTime || rec.event_time_ms > ctx.max_event_time_ms) {
      ctx.max_event_time_ms = rec.event_time_ms;
    }
    if (!ctx.watermark_from_upstreams) rec.watermark_ms = ctx.watermark_ms();
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
    if (event_time < spec_.min_event_time_ms || event_time > kMaxEventTimeMs) {
      message_ = spec_.schema->field(spec_.event_time_slot).path + ": event time " + std::to_string(event_time) +
                 (event_time > kMaxEventTimeMs ? std::string(" is after the year 9999")
                                               : " is below the minimum " + std::to_string(spec_.min_event_time_ms));
      ctx.out->EmitDlq(batch.partition, rec, DlqReason::kInvalidValue, message_);
      ++ctx.counters->dlq;
      continue;
    }
    rec.fields = values;
    rec.event_time_ms = event_time;
    rec.value_absent = spec_.value_slot >= 0 && !values[spec_.value_slot].present;
    rec.value = rec.value_absent || spec_.value_slot < 0 ? 0 : values[spec_.value_slot].i;
    if (ctx.max_event_time_ms == kNoTime || rec.event_time_ms > ctx.max_event_time_ms) {
      ctx.max_event_time_ms = rec.event_time_ms;
    }
    if (!ctx.watermark_from_upstreams) rec.watermark_ms = ctx.watermark_ms();
    batch.selection[kept++] = idx;
  }
  batch.selection.resize(kept);
}

}  // namespace kappa
