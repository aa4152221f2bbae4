// DecodeValidate: the first operator of every chain. Verifies each payload as
// a FlatBuffers Transaction ("KTX1", zero copy), checks field values, and
// sends every failure to the DLQ with its reason: Undecodable (garbage,
// truncated, wrong schema), MissingField (a well-formed Transaction lacking a
// required field), InvalidValue (decoded, but a value is out of range). For
// valid records it advances the task's max event time and stamps each record
// with the watermark right after it, so later operators never depend on
// batching. Counts dlq; `in` is counted by the runtime. One task, one thread.
// With `format: nexmark` (DecodeSpec::format) it verifies NexmarkEvents
// ("KNX1") instead, with the same DLQ reasons, and takes event time from the
// event's date_time. With a declared format (`source.format: json`) its
// RecordDecoder (formats/) fills one FieldValue per declared field into a
// per-batch arena that every record's `fields` points into; a record that
// does not parse, lacks a required field or has one of the wrong type goes to
// the DLQ with the field's path (wrong type: InvalidValue). The built-in
// formats are decoded the same way (formats/builtin_decoders.h: Transaction
// into its six fixed slots, Nexmark into the slots the job reads), so every
// operator after this one reads InputRecord::fields and names no schema.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "formats/builtin_decoders.h"
#include "operators/operator_interface.h"
#include "operators/operator_spec.h"

namespace kappa {

// The decoder of a declared format (spec.format json ...), built from its
// declared fields; an error if they do not make one.
Result<std::unique_ptr<RecordDecoder>> MakeRecordDecoder(const DecodeSpec& spec);

class DecodeValidate final : public Operator {
 public:
  explicit DecodeValidate(DecodeSpec spec);
  ~DecodeValidate() override;
  std::string_view name() const override { return "decode"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

  // Why a payload that failed verification is bad, and a message for the DLQ
  // (exposed for tests). MissingField only when everything present in the
  // buffer is well-formed and a required field is absent.
  static DlqReason Classify(const uint8_t* data, size_t size, std::string* message);

 private:
  // format transaction or nexmark: one of the built-in decoders.
  // Record i's view is slots_ + i * stride; the decoder writes its slots
  // [first, last] only (stride = last - first + 1), so views are dense.
  template <typename Decoder>
  void ProcessBuiltin(const Decoder& decoder, size_t stride, size_t last, RecordBatch& batch, TaskContext& ctx);
  void ProcessDeclared(RecordBatch& batch, TaskContext& ctx);

  DecodeSpec spec_;
  std::string message_;  // reused: only failures build a message
  // A declared format's decoder, or why it could not be built.
  std::unique_ptr<RecordDecoder> decoder_;
  Status decoder_status_;
  std::unique_ptr<TransactionDecoder> transaction_;  // format transaction
  std::unique_ptr<NexmarkDecoder> nexmark_;          // format nexmark
  std::vector<FieldValue> slots_;  // records x slots, per batch
};

}  // namespace kappa
