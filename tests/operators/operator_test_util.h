// Test helpers for the operator tests: build Transaction payloads (valid, or
// missing fields via the raw table API), run a chain over records exactly the
// way a Task does (decode first, Process then OnBatchEnd per batch, `in`
// counted by the runner), collect what it emits, and emulate the state
// backend's checkpoint/restore (erasures then dirty puts, ClearDirty, Load).
#pragma once

#include <flatbuffers/flatbuffers.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/builtin_decoders.h"
#include "operators/operator.h"
#include "schemas/transaction_generated.h"
#include "schemas/window_aggregate_generated.h"
#include "tests/state/state_test_access.h"

namespace kappa::testing {

constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kT0 = 1767225600000;  // 2026-01-01T00:00Z, an hour boundary

inline std::string Bytes(const flatbuffers::FlatBufferBuilder& fbb) {
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

// A valid Transaction payload.
inline std::string Txn(const std::string& txn_id, const std::string& user, int64_t event_time_ms,
                       int64_t amount = 100, schema::TxnStatus status = schema::TxnStatus::Approved,
                       const std::string& currency = "EUR") {
  flatbuffers::FlatBufferBuilder fbb;
  auto root = schema::CreateTransactionDirect(fbb, txn_id.c_str(), user.c_str(), status, amount,
                                              currency.c_str(), event_time_ms);
  schema::FinishTransactionBuffer(fbb, root);
  return Bytes(fbb);
}

// A Transaction built field by field; nullptr strings are left out, which the
// generated builder would refuse for required fields. `status` is raw so an
// out-of-range enum value can be written.
inline std::string RawTxn(const char* txn_id, const char* user_id, const char* currency, int64_t amount,
                          int64_t event_time_ms, int8_t status = 0, bool with_identifier = true) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<flatbuffers::String> id, user, cur;
  if (txn_id) id = fbb.CreateString(txn_id);
  if (user_id) user = fbb.CreateString(user_id);
  if (currency) cur = fbb.CreateString(currency);
  const auto start = fbb.StartTable();
  fbb.AddElement<int64_t>(schema::Transaction::VT_EVENT_TIME_MS, event_time_ms, 0);
  fbb.AddElement<int64_t>(schema::Transaction::VT_AMOUNT_CENTS, amount, 0);
  if (currency) fbb.AddOffset(schema::Transaction::VT_CURRENCY, cur);
  if (user_id) fbb.AddOffset(schema::Transaction::VT_USER_ID, user);
  if (txn_id) fbb.AddOffset(schema::Transaction::VT_TXN_ID, id);
  fbb.AddElement<int8_t>(schema::Transaction::VT_STATUS, status, 0);
  const flatbuffers::Offset<schema::Transaction> root(fbb.EndTable(start));
  if (with_identifier) {
    fbb.Finish(root, schema::TransactionIdentifier());
  } else {
    fbb.Finish(root);
  }
  return Bytes(fbb);
}

struct Emitted {
  std::string key;
  std::string value;
  OutputLineage lineage;
  const uint8_t* value_pointer = nullptr;  // to check zero copy
  bool operator==(const Emitted& o) const {
    return key == o.key && value == o.value && lineage.partition == o.lineage.partition &&
           lineage.first_offset == o.lineage.first_offset && lineage.last_offset == o.lineage.last_offset;
  }
};

inline void PrintTo(const Emitted& e, std::ostream* os) {
  *os << "{" << e.key << ", " << e.value.size() << " bytes, p" << e.lineage.partition << " ["
      << e.lineage.first_offset << ", " << e.lineage.last_offset << "]}";
}

class CollectingOutput : public OutputCollector {
 public:
  struct Dead {
    int32_t partition;
    int64_t offset;
    DlqReason reason;
    std::string message;
    bool operator==(const Dead& o) const {
      return partition == o.partition && offset == o.offset && reason == o.reason && message == o.message;
    }
  };

  void Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) override {
    emitted.push_back(
        {std::string(key), std::string(reinterpret_cast<const char*>(value), size), lineage, value});
  }
  void EmitDlq(int32_t partition, const InputRecord& r, DlqReason reason, std::string_view message) override {
    dlq.push_back({partition, r.offset, reason, std::string(message)});
  }
  void EmitLate(int32_t, const InputRecord& r) override { late.push_back(r.offset); }

  std::vector<std::string> EmittedKeys() const {
    std::vector<std::string> keys;
    for (const auto& e : emitted) keys.push_back(e.key);
    return keys;
  }

  std::vector<Emitted> emitted;
  std::vector<Dead> dlq;
  std::vector<int64_t> late;
};

// What StateBackend::Commit / Restore do with a registry, in memory: per
// table name, apply erasures, then dirty puts, then ClearDirty.
class FakeStateStore {
 public:
  void Commit(StateRegistry& registry) {
    for (const auto& table : StateRegistryTestAccess::Tables(registry)) {
      auto& stored = tables_[table->name()];
      table->ForEachErased([&](std::string_view k) { stored.erase(std::string(k)); });
      table->ForEachDirty(
          [&](std::string_view k, std::string_view v) { stored[std::string(k)] = std::string(v); });
      table->ClearDirty();
    }
  }
  void Restore(StateRegistry& registry) const {
    for (const auto& table : StateRegistryTestAccess::Tables(registry)) {
      auto it = tables_.find(table->name());
      if (it == tables_.end()) continue;
      for (const auto& [k, v] : it->second) ASSERT_TRUE(table->Load(k, v).ok()) << table->name();
    }
  }
  const std::map<std::string, std::string>& table(const std::string& name) { return tables_[name]; }

 private:
  std::map<std::string, std::map<std::string, std::string>> tables_;
};

// Everything a checkpoint holds for one task.
struct Checkpoint {
  FakeStateStore state;
  int64_t max_event_time_ms = kNoTime;
  int64_t next_offset = 0;
  RecordCounters counters;
};

// A chain (decode first) over one partition, fed like the runtime feeds it
// (the decode step fills the fields the operators read, as in a Task).
// Operator i (1-based) has state name "op<i>".
class Chain {
 public:
  explicit Chain(const std::vector<OperatorSpec>& specs, int64_t lateness_ms = 0,
                 const DecodeSpec& decode = DecodeSpec{}, int32_t partition = 0)
      : partition_(partition) {
    ops_.push_back(MakeDecodeValidate(decode, specs));
    for (size_t i = 0; i < specs.size(); ++i) {
      auto op = MakeOperator(specs[i], "op" + std::to_string(i + 1), registry_);
      if (!op.ok()) throw std::runtime_error(op.status().ToString());
      ops_.push_back(std::move(*op));
    }
    ctx_.partition = partition;
    ctx_.allowed_lateness_ms = lateness_ms;
    ctx_.counters = &counters;
    ctx_.out = &out;
  }

  // Feeds payloads (offsets continue from the last call) in batches of batch_size.
  void Feed(const std::vector<std::string>& payloads, size_t batch_size = 1000) {
    std::vector<size_t> sizes;
    for (size_t i = 0; i < payloads.size(); i += batch_size)
      sizes.push_back(std::min(batch_size, payloads.size() - i));
    FeedBatches(payloads, sizes);
  }
  // Feeds payloads in batches of the given sizes (their sum must cover payloads).
  void FeedBatches(const std::vector<std::string>& payloads, const std::vector<size_t>& sizes) {
    size_t next = 0;
    for (size_t n : sizes) {
      batch_.Reset(partition_);
      for (size_t j = next; j < std::min(payloads.size(), next + n); ++j) {
        InputRecord r;
        r.payload = reinterpret_cast<const uint8_t*>(payloads[j].data());
        r.size = static_cast<uint32_t>(payloads[j].size());
        r.offset = next_offset_++;
        batch_.records.push_back(r);
      }
      next += n;
      counters.in += static_cast<int64_t>(batch_.records.size());  // the runtime counts `in`
      batch_.SelectAll();
      for (auto& op : ops_) op->Process(batch_, ctx_);
      for (auto& op : ops_) op->OnBatchEnd(ctx_);
    }
  }

  // A checkpoint after the last batch, as the runtime takes it.
  void CommitTo(Checkpoint* cp) {
    cp->state.Commit(registry_);
    cp->max_event_time_ms = ctx_.max_event_time_ms;
    cp->next_offset = next_offset_;
    cp->counters = counters;
  }
  // Fresh operators over restored state, as after a restart.
  static std::unique_ptr<Chain> Restore(const std::vector<OperatorSpec>& specs, int64_t lateness_ms,
                                        const Checkpoint& cp) {
    auto chain = std::make_unique<Chain>(specs, lateness_ms);
    cp.state.Restore(chain->registry_);
    chain->ctx_.max_event_time_ms = cp.max_event_time_ms;
    chain->next_offset_ = cp.next_offset;
    chain->counters = cp.counters;
    return chain;
  }

  int64_t watermark() const { return ctx_.watermark_ms(); }
  StateRegistry& registry() { return registry_; }
  const StateTable& table(size_t op_index) const { return *StateRegistryTestAccess::Tables(registry_).at(op_index); }
  // The records that survived the whole chain in the last batch.
  const RecordBatch& last_batch() const { return batch_; }

  RecordCounters counters;
  CollectingOutput out;

 private:
  int32_t partition_;
  StateRegistry registry_;
  std::vector<std::unique_ptr<Operator>> ops_;
  TaskContext ctx_;
  RecordBatch batch_;
  int64_t next_offset_ = 0;
};

// Transactions decoded into the record view as DecodeValidate does
// (formats/builtin_decoders.h), but without its value checks (any amount,
// time and currency), for driving operators directly. `payload` must
// outlive it; not copyable (the record points into it).
struct DecodedTxn {
  explicit DecodedTxn(const std::string& payload) {
    record.payload = reinterpret_cast<const uint8_t*>(payload.data());
    record.size = static_cast<uint32_t>(payload.size());
    Decode(record, slots.data());
  }
  DecodedTxn(const DecodedTxn&) = delete;
  DecodedTxn& operator=(const DecodedTxn&) = delete;

  // Fills `slots` (kTransactionSlotCount) and r's fields, event time and value.
  static void Decode(InputRecord& r, FieldValue* slots) {
    TransactionChecks any;
    any.min_amount_cents = INT64_MIN;
    any.min_event_time_ms = INT64_MIN;
    BuiltinRecordTimes times;
    std::string message;
    const BuiltinVerdict verdict = TransactionDecoder(any).Decode(r.payload, r.size, slots, &times, &message);
    if (verdict != BuiltinVerdict::kOk) ADD_FAILURE() << "not a valid Transaction: " << message;
    r.fields = slots;
    r.event_time_ms = times.event_time_ms;
    r.value = times.value;
  }

  std::array<FieldValue, kTransactionSlotCount> slots{};
  InputRecord record;
};

// A batch of already decoded records, for driving one operator directly.
// Each record's watermark is the running max event time (lateness 0), as
// DecodeValidate would set it. `payloads` must outlive it; not copyable.
struct DecodedBatch {
  explicit DecodedBatch(const std::vector<std::string>& payloads, int32_t partition = 0) {
    batch.partition = partition;
    slots.resize(payloads.size() * kTransactionSlotCount);
    int64_t max_time = kNoTime;
    for (size_t i = 0; i < payloads.size(); ++i) {
      InputRecord r;
      r.payload = reinterpret_cast<const uint8_t*>(payloads[i].data());
      r.size = static_cast<uint32_t>(payloads[i].size());
      r.offset = static_cast<int64_t>(i);
      DecodedTxn::Decode(r, slots.data() + i * kTransactionSlotCount);
      max_time = std::max(max_time, r.event_time_ms);
      r.watermark_ms = max_time;
      batch.records.push_back(r);
    }
    batch.SelectAll();
  }
  DecodedBatch(const DecodedBatch&) = delete;
  DecodedBatch& operator=(const DecodedBatch&) = delete;

  std::vector<FieldValue> slots;
  RecordBatch batch;
};

inline const schema::WindowAggregate* AsWindow(const Emitted& e) {
  return flatbuffers::GetRoot<schema::WindowAggregate>(e.value.data());
}

inline std::string Name(char prefix, uint64_t n) {
  return std::string(1, prefix) + std::to_string(n);
}

inline WindowSpec Tumbling(int64_t size_ms = kHour, Field key = Field::kUserId) {
  WindowSpec w;
  w.kind = WindowSpec::Kind::kTumbling;
  w.size_ms = size_ms;
  w.slide_ms = size_ms;
  w.key_field = key;
  w.aggregates = {Aggregate::kCount, Aggregate::kSum, Aggregate::kMin, Aggregate::kMax, Aggregate::kAvg};
  return w;
}

inline WindowSpec Sliding(int64_t size_ms, int64_t slide_ms, Field key = Field::kUserId) {
  WindowSpec w = Tumbling(size_ms, key);
  w.kind = WindowSpec::Kind::kSliding;
  w.slide_ms = slide_ms;
  return w;
}

inline DedupSpec DedupBy(int64_t ttl_ms, Field field = Field::kTxnId) {
  DedupSpec d;
  d.field = field;
  d.ttl_ms = ttl_ms;
  return d;
}

}  // namespace kappa::testing
