// Test helpers for operators: build Transaction payloads, run a chain over
// records the way a Task does, and collect what it emits.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <memory>
#include <string>
#include <vector>

#include "operators/operator.h"
#include "schemas/transaction_generated.h"
#include "schemas/window_aggregate_generated.h"

namespace kappa::testing {

inline std::string Txn(const std::string& txn_id, const std::string& user, int64_t event_time_ms,
                       int64_t amount = 100, schema::TxnStatus status = schema::TxnStatus::Approved,
                       const std::string& currency = "EUR") {
  flatbuffers::FlatBufferBuilder fbb;
  auto root = schema::CreateTransactionDirect(fbb, txn_id.c_str(), user.c_str(), status, amount, currency.c_str(),
                                              event_time_ms);
  schema::FinishTransactionBuffer(fbb, root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

struct Emitted {
  std::string key;
  std::string value;
  OutputLineage lineage;
};

class CollectingOutput : public OutputCollector {
 public:
  void Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) override {
    emitted.push_back({std::string(key), std::string(reinterpret_cast<const char*>(value), size), lineage});
  }
  void EmitDlq(int32_t, const InputRecord& r, DlqReason reason, std::string_view message) override {
    dlq.push_back({r.offset, reason, std::string(message)});
  }
  void EmitLate(int32_t, const InputRecord& r) override { late.push_back(r.offset); }

  struct Dead {
    int64_t offset;
    DlqReason reason;
    std::string message;
  };
  std::vector<Emitted> emitted;
  std::vector<Dead> dlq;
  std::vector<int64_t> late;
};

// A chain (decode first) over one partition, fed like the runtime feeds it.
class Chain {
 public:
  Chain(const std::vector<OperatorSpec>& specs, int64_t lateness_ms, StateRegistry* registry = nullptr)
      : registry_(registry ? registry : &own_registry_) {
    ops_.push_back(MakeDecodeValidate(DecodeSpec{}));
    for (size_t i = 0; i < specs.size(); ++i) {
      auto op = MakeOperator(specs[i], "op" + std::to_string(i + 1), *registry_);
      if (!op.ok()) throw std::runtime_error(op.status().ToString());
      ops_.push_back(std::move(*op));
    }
    ctx_.partition = 0;
    ctx_.allowed_lateness_ms = lateness_ms;
    ctx_.counters = &counters;
    ctx_.out = &out;
  }
  // Feeds payloads (offsets continue from the last call) in batches of batch_size.
  void Feed(const std::vector<std::string>& payloads, size_t batch_size = 1000) {
    for (size_t i = 0; i < payloads.size(); i += batch_size) {
      RecordBatch batch;
      batch.partition = 0;
      for (size_t j = i; j < std::min(payloads.size(), i + batch_size); ++j) {
        InputRecord r;
        r.payload = reinterpret_cast<const uint8_t*>(payloads[j].data());
        r.size = static_cast<uint32_t>(payloads[j].size());
        r.offset = next_offset_++;
        batch.records.push_back(r);
      }
      counters.in += static_cast<int64_t>(batch.records.size());
      batch.SelectAll();
      for (auto& op : ops_) op->Process(batch, ctx_);
      for (auto& op : ops_) op->OnBatchEnd(ctx_);
    }
  }
  int64_t watermark() const { return ctx_.watermark_ms(); }
  int64_t max_event_time() const { return ctx_.max_event_time_ms; }
  void set_max_event_time(int64_t t) { ctx_.max_event_time_ms = t; }
  void set_next_offset(int64_t o) { next_offset_ = o; }
  StateRegistry& registry() { return *registry_; }

  RecordCounters counters;
  CollectingOutput out;

 private:
  StateRegistry own_registry_;
  StateRegistry* registry_;
  std::vector<std::unique_ptr<Operator>> ops_;
  TaskContext ctx_;
  int64_t next_offset_ = 0;
};

inline const schema::WindowAggregate* AsWindow(const Emitted& e) {
  return flatbuffers::GetRoot<schema::WindowAggregate>(e.value.data());
}

}  // namespace kappa::testing
