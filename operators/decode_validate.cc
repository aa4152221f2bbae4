#include "operators/decode_validate.h"

#include <algorithm>

#include "operators/field_access.h"
#include "schemas/transaction_generated.h"

namespace kappa {

DlqReason DecodeValidate::Classify(const uint8_t* data, size_t size, std::string* message) const {
  // A buffer with our identifier and an intact root table whose vtable lacks
  // a required field is "missing field"; anything else is undecodable.
  if (size >= 8 && flatbuffers::BufferHasIdentifier(data, schema::TransactionIdentifier())) {
    const uint32_t table = flatbuffers::ReadScalar<uint32_t>(data);
    if (table + 4 <= size) {
      const int64_t vtable = static_cast<int64_t>(table) - flatbuffers::ReadScalar<int32_t>(data + table);
      if (vtable >= 0 && vtable + 4 <= static_cast<int64_t>(size)) {
        const uint16_t vsize = flatbuffers::ReadScalar<uint16_t>(data + vtable);
        if (vsize >= 4 && vtable + vsize <= static_cast<int64_t>(size)) {
          const std::pair<uint16_t, const char*> required[] = {{schema::Transaction::VT_TXN_ID, "txn_id"},
                                                                {schema::Transaction::VT_USER_ID, "user_id"},
                                                                {schema::Transaction::VT_CURRENCY, "currency"}};
          for (const auto& [vt, field] : required) {
            if (vt >= vsize || flatbuffers::ReadScalar<uint16_t>(data + vtable + vt) == 0) {
              *message = std::string("required field ") + field + " is missing";
              return DlqReason::kMissingField;
            }
          }
        }
      }
    }
  }
  *message = "not a valid Transaction FlatBuffer (" + std::to_string(size) +
             " bytes: garbage, truncated or wrong schema)";
  return DlqReason::kUndecodable;
}

bool DecodeValidate::CheckValues(const schema::Transaction* t, std::string* message) const {
  const int64_t amount = t->amount_cents();
  if (amount < spec_.min_amount_cents || amount > spec_.max_amount_cents) {
    *message = "amount_cents " + std::to_string(amount) + " outside [" + std::to_string(spec_.min_amount_cents) +
               ", " + std::to_string(spec_.max_amount_cents) + "]";
    return false;
  }
  if (t->event_time_ms() < spec_.min_event_time_ms) {
    *message = "event_time_ms " + std::to_string(t->event_time_ms()) + " is before " +
               std::to_string(spec_.min_event_time_ms);
    return false;
  }
  const auto status = static_cast<int>(t->status());
  if (status < static_cast<int>(schema::TxnStatus::MIN) || status > static_cast<int>(schema::TxnStatus::MAX)) {
    *message = "status " + std::to_string(status) + " is not approved, cancelled or refunded";
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
    *message = "currency " + std::string(currency) + " is not allowed";
    return false;
  }
  return true;
}

void DecodeValidate::Process(RecordBatch& batch, TaskContext& ctx) {
  size_t kept = 0;
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    flatbuffers::Verifier verifier(rec.payload, rec.size);
    if (rec.payload == nullptr || !schema::VerifyTransactionBuffer(verifier)) {
      const DlqReason reason = rec.payload ? Classify(rec.payload, rec.size, &message_) : DlqReason::kUndecodable;
      if (!rec.payload) message_ = "empty payload";
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

}  // namespace kappa
