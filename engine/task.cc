#include "engine/task.h"

#include <algorithm>
#include <cstring>

#include "engine/record_fingerprint.h"

namespace kappa {
namespace {
// The column family of the i-th operator (0-based) of a chain: "op2_window".
std::string StateName(size_t i, const OperatorSpec& op) {
  return "op" + std::to_string(i + 1) + "_" + std::string(KindOf(op).name);
}
}  // namespace

Result<std::unique_ptr<Task>> Task::Create(int32_t partition, const JobSpec& spec, OutputCollector* out) {
  std::unique_ptr<Task> task(new Task());
  task->partition_ = partition;
  if (spec.stage_upstreams > 0) {
    // A downstream stage of a repartitioned job: the envelope comes off
    // before decode (operators/repartition.h).
    task->chain_.push_back(std::make_unique<RepartitionReceive>(spec.stage_upstreams, task->registry_));
    task->context_.watermark_from_upstreams = true;
  }
  // Expired entries (a dedup's keys) cost no delete where the store is the
  // state's only copy and a restore gives back the checkpoint's watermark:
  // not under scale_out (its changelog topic is compacted and needs the
  // deletes) and not downstream of a repartition (its watermark comes from
  // the upstream tasks).
  if (!spec.scale_out.enabled && spec.stage_upstreams == 0) task->registry_.ForgetExpiredEntries();
  // The decode step fills the record view with the fields the operators read.
  task->chain_.push_back(MakeDecodeValidate(spec.decode, spec.operators));
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    const std::string state_name = StateName(i, spec.operators[i]);
    auto op = MakeOperator(spec.operators[i], state_name, task->registry_);
    if (!op.ok()) return op.status();
    task->chain_.push_back(std::move(*op));
  }
  task->context_.partition = partition;
  task->context_.allowed_lateness_ms = spec.allowed_lateness_ms;
  task->context_.out = out;
  task->context_.counters = &task->checkpoint_.counters;
  task->checkpoint_.partition = partition;
  task->checkpoint_.max_event_time_ms = kNoTime;
  return task;
}

Result<std::vector<std::string>> Task::StateTableNames(const JobSpec& spec) {
  std::vector<std::string> names;
  if (spec.stage_upstreams > 0) names.push_back(RepartitionReceive::kStateTable);
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    const OperatorKind& kind = KindOf(spec.operators[i]);
    KAPPA_RETURN_IF_ERROR(kind.validate(spec.operators[i]));
    kind.append_state_tables(spec.operators[i], StateName(i, spec.operators[i]), names);
  }
  return names;
}

void Task::Append(const void* payload, uint32_t size, const void* key, uint32_t key_size, int64_t offset,
                  int64_t timestamp_ms) {
  const size_t words = (size + 7) / 8;
  if (arena_.size() < arena_words_ + words) arena_.resize(std::max(arena_.size() * 2, arena_words_ + words + 1024));
  if (size) std::memcpy(arena_.data() + arena_words_, payload, size);
  // The arena may still move while the batch fills: keep the word index
  // here and turn it into a pointer in Process(). A null value (a tombstone)
  // stays null, apart from an empty one: kNullPayload.
  Push(reinterpret_cast<const uint8_t*>(payload == nullptr ? kNullPayload : arena_words_), size, key, key_size,
       offset, timestamp_ms);
  arena_words_ += words;
}

void Task::AppendBorrowed(const void* payload, uint32_t size, const void* key, uint32_t key_size, int64_t offset,
                          int64_t timestamp_ms) {
  borrowed_ = true;
  Push(static_cast<const uint8_t*>(payload), size, key, key_size, offset, timestamp_ms);
}

void Task::Process() {
  if (batch_.records.empty()) return;
  if (!borrowed_) {
    const auto* base = reinterpret_cast<const uint8_t*>(arena_.data());
    for (auto& r : batch_.records) {
      const size_t word = reinterpret_cast<size_t>(r.payload);
      r.payload = word == kNullPayload ? nullptr : base + 8 * word;
    }
  }
  borrowed_ = false;
  batch_.partition = partition_;
  checkpoint_.counters.in += static_cast<int64_t>(batch_.records.size());
  batch_.SelectAll();
  if (!repeats_.empty()) {
    // Re-injected copies of records this version processed: out of the
    // selection before the chain sees them.
    size_t kept = 0, r = 0;
    for (uint32_t i : batch_.selection) {
      if (r < repeats_.size() && repeats_[r] == i) {
        ++r;
        continue;
      }
      batch_.selection[kept++] = i;
    }
    batch_.selection.resize(kept);
    checkpoint_.counters.deduped += static_cast<int64_t>(repeats_.size());
    repeats_.clear();
  }
  // Read before the chain: after a repartition, RepartitionReceive gives
  // the records their input offsets, which are not this task's position.
  const InputRecord& last = batch_.records.back();
  const int64_t next_offset = last.offset + 1;
  // Once per batch: which record the checkpoint follows, for a restore to
  // tell this log from a topic recreated under the same name.
  const uint64_t fingerprint = RecordFingerprint(last.key, last.key_size, last.payload, last.size, last.timestamp_ms);
  for (auto& op : chain_) op->Process(batch_, context_);
  if (!context_.fatal.ok()) {
    // Nothing of this batch counts as processed: the job stops here.
    checkpoint_.counters.in -= static_cast<int64_t>(batch_.records.size());
    batch_.records.clear();
    batch_.selection.clear();
    arena_words_ = 0;
    return;
  }
  for (auto& op : chain_) op->OnBatchEnd(context_);
  checkpoint_.next_offset = next_offset;
  checkpoint_.last_offset = next_offset - 1;
  checkpoint_.last_fingerprint = fingerprint;
  checkpoint_.max_event_time_ms = context_.max_event_time_ms;
  batch_.records.clear();
  batch_.selection.clear();
  arena_words_ = 0;
}

void Task::EndOfInput() {
  Process();
  context_.max_event_time_ms = kEndOfInputTime;
  checkpoint_.max_event_time_ms = kEndOfInputTime;
  for (auto& op : chain_) op->OnBatchEnd(context_);
}

int64_t Task::expiry_watermark_ms() const {
  const int64_t max = checkpoint_.max_event_time_ms;
  if (!registry_.forgets_expired_entries() || max == kNoTime) return kNoTime;
  if (max == kEndOfInputTime) return kEndOfInputTime;
  return max - context_.allowed_lateness_ms;  // TaskContext::watermark_ms after Restore(checkpoint())
}

void Task::Restore(const TaskCheckpointData& data) {
  checkpoint_ = data;
  context_.max_event_time_ms = data.max_event_time_ms;
}

void Task::StartAt(int64_t offset) {
  checkpoint_.next_offset = offset;
  checkpoint_.start_offset = offset;
}

}  // namespace kappa
