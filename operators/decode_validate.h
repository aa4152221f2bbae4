// DecodeValidate: the first operator of every chain. Verifies each payload as
// a FlatBuffers Transaction (zero copy), checks field values, and sends every
// failure to the DLQ with its reason: Undecodable (garbage, truncated),
// MissingField (a required field absent), InvalidValue. For valid records it
// advances the task's max event time and stamps each record with the
// watermark right after it, so later operators never depend on batching.
#pragma once

#include "operators/operator.h"

namespace kappa {

class DecodeValidate final : public Operator {
 public:
  explicit DecodeValidate(DecodeSpec spec) : spec_(std::move(spec)) {}
  std::string_view name() const override { return "decode"; }
  void Process(RecordBatch& batch, TaskContext& ctx) override;

 private:
  // Why a payload failed verification, and a message for the DLQ.
  DlqReason Classify(const uint8_t* data, size_t size, std::string* message) const;
  bool CheckValues(const schema::Transaction* t, std::string* message) const;

  DecodeSpec spec_;
  std::string message_;
};

}  // namespace kappa
