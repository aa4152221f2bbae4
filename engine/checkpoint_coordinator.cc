#include "engine/checkpoint_coordinator.h"

#include <algorithm>

#include "engine/task.h"
#include "kafka/partition_consumer.h"
#include "kafka/partition_list.h"
#include "state/state_backend.h"

namespace kappa {
namespace {
constexpr int kFlushTimeoutMs = 150000;
}  // namespace

CheckpointCoordinator::CheckpointCoordinator(std::vector<Task*> tasks, StateBackend& backend,
                                             OutputBarrier& barrier, PartitionConsumer* group, std::string topic,
                                             const CommittedGaps& gaps, int64_t interval_ms, const Clock& clock)
    : tasks_(std::move(tasks)), backend_(backend), barrier_(barrier), group_(group), topic_(std::move(topic)),
      gaps_(gaps), interval_ms_(interval_ms), clock_(clock), epoch_(backend.last_epoch()), last_ms_(clock.NowMs()) {}

std::vector<Task*> CheckpointCoordinator::ActiveTasks() const {
  std::vector<Task*> active;
  active.reserve(tasks_.size());
  for (Task* t : tasks_) {
    if (!owned_ || (*owned_)[static_cast<size_t>(t->partition())]) active.push_back(t);
  }
  return active;
}

void CheckpointCoordinator::PrepareCapture() {
  if (prepared_) return;
  const int64_t elapsed = clock_.NowMs() - last_ms_;
  if (elapsed <= 0 || elapsed * 2 < interval_ms_) return;
  prepared_ = true;
  std::vector<StateBackend::TaskSnapshot> snapshots;
  for (Task* t : ActiveTasks()) snapshots.push_back({&t->checkpoint(), &t->registry(), t->expiry_watermark_ms()});
  // The rest of the interval at the rate so far, and a quarter more.
  backend_.PrepareCapture(snapshots, 1.25 * static_cast<double>(interval_ms_) / static_cast<double>(elapsed));
}

Status CheckpointCoordinator::Checkpoint() {
  prepared_ = false;
  const int64_t began = clock_.NowMs();
  Status st = CheckpointNow();
  const double ms = static_cast<double>(clock_.NowMs() - began);
  stats_.max_ms = std::max(stats_.max_ms, ms);
  stats_.last_ms = ms;
  stats_.total_ms += ms;
  last_ms_ = clock_.NowMs();
  return st;
}

// Step 1: nothing moves the offsets past an input whose outputs are not
// safely in the sink.
Status CheckpointCoordinator::SinkBarrier(const std::vector<Task*>& tasks, std::function<Status()>* acked) {
  // Timed either way: the flush of an at-least-once sink, or the whole
  // transaction commit (flush, offsets, commit) of an exactly-once one.
  const int64_t began = clock_.NowMs();
  Status st;
  if (barrier_.transactional()) {
    std::vector<std::pair<int32_t, int64_t>> offsets;
    offsets.reserve(tasks.size());
    for (const Task* t : tasks) {
      offsets.emplace_back(t->partition(), gaps_.CommitOffset(static_cast<size_t>(t->partition()), t->next_offset()));
    }
    *acked = barrier_.CommitEpochLater(epoch_ + 1, offsets);
    if (!*acked) st = barrier_.CommitEpoch(epoch_ + 1, offsets);
  } else {
    *acked = barrier_.CloseOutputs(kFlushTimeoutMs);
    if (!*acked) st = barrier_.Flush(kFlushTimeoutMs);
  }
  stats_.flush_total_ms += static_cast<double>(clock_.NowMs() - began);
  return st;
}

Status CheckpointCoordinator::CheckpointNow() {
  // A checkpoint that failed to write is the cause to report, not the room
  // the next one would need (a bug bash: a full disk inside the first
  // checkpoint's write read as "needs twice the last checkpoint").
  KAPPA_RETURN_IF_ERROR(backend_.WriteError());
  // Room in the writer's queue, waited for here rather than inside
  // BeginCommit, whose wait said nothing: with the broker gone the status
  // line and metrics stopped for the whole outage (a bug bash).
  const double awaited_ms = AwaitWriter(/*idle=*/false);
  // Step 0: room for this checkpoint, before anything is committed anywhere.
  KAPPA_RETURN_IF_ERROR(CheckHeadroom(backend_.dir(), static_cast<int64_t>(backend_.last_checkpoint_bytes()),
                                      headroom_, free_space_));
  const std::vector<Task*> active = ActiveTasks();
  if (before_barrier_) KAPPA_RETURN_IF_ERROR(before_barrier_(active, epoch_ + 1));
  KAPPA_KILL_POINT(kill_switch_, "before-flush");
  std::function<Status()> acked;  // set: the writer waits for the outputs' acks (or commits them)
  KAPPA_RETURN_IF_ERROR(SinkBarrier(active, &acked));
  if (acked && KAPPA_KILL_REACHED(kill_switch_, "after-flush")) {
    // "After the flush" still means: the outputs are safe in the sink and
    // the state is not yet written. Here that moment is on the writer.
    acked = [wait = std::move(acked)] {
      Status st = wait();
      if (st.ok()) KAPPA_KILL_NOW("after-flush");
      return st;
    };
  } else {
    KAPPA_KILL_POINT(kill_switch_, "after-flush");
  }
  // Step 2. The stall is only the capture; the backend's writer makes it
  // durable in the background, in epoch order.
  std::vector<StateBackend::TaskSnapshot> snapshots;
  snapshots.reserve(active.size());
  for (Task* t : active) snapshots.push_back({&t->checkpoint(), &t->registry(), t->expiry_watermark_ms()});
  auto captured = backend_.BeginCommit(epoch_ + 1, snapshots, std::move(acked));
  if (!captured.ok()) return captured.status();
  stats_.writer_wait_total_ms += awaited_ms + captured->wait_ms;
  stats_.writer_wait_max_ms = std::max(stats_.writer_wait_max_ms, awaited_ms + captured->wait_ms);
  stats_.capture_max_ms = std::max(stats_.capture_max_ms, captured->capture_ms);
  ++epoch_;
  ++stats_.epochs;
  if (KAPPA_KILL_ARMED(kill_switch_, "after-commit")) {
    // The crash tests mean "after the checkpoint is durable".
    auto durable = backend_.WaitForCommits();
    if (!durable.ok()) return durable.status();
  }
  KAPPA_KILL_POINT(kill_switch_, "after-commit");
  // Step 3, once this checkpoint is durable (CommitDurableOffsets, called
  // as the job goes on): not here for the previous one, which may have been
  // durable for a whole interval. Since the state's writer waits for the
  // sink's acks, a checkpoint is begun also while the broker is gone, and
  // an informational commit sent then stays in flight: the consumer's
  // close at a stop would wait for it.
  if (barrier_.transactional() || !group_) return Status::OK();
  pending_group_epoch_ = epoch_;
  pending_group_offsets_.clear();
  for (const Task* t : active) pending_group_offsets_.emplace_back(t->partition(), t->next_offset());
  return Status::OK();
}

void CheckpointCoordinator::CommitDurableOffsets() {
  if (!barrier_.transactional() && group_) CommitGroupOffsets();
}

void CheckpointCoordinator::CommitGroupOffsets() {
  if (pending_group_offsets_.empty() || backend_.last_epoch() < pending_group_epoch_) return;
  PartitionList offsets(static_cast<int>(pending_group_offsets_.size()));
  for (const auto& [partition, offset] : pending_group_offsets_) offsets.Add(topic_, partition, offset);
  group_->CommitAsync(offsets);
  pending_group_offsets_.clear();
}

double CheckpointCoordinator::AwaitWriter(bool idle) {
  if (!while_waiting_) return 0;
  const int64_t began = clock_.NowMs();
  // Exactly-once commits one transaction at a time: room in the writer's
  // queue is not enough, the commit before must have ended too.
  while (idle ? !backend_.WaitIdleFor(200) : !backend_.WaitForRoom(200) || !barrier_.AwaitCommitRoom(200)) {
    while_waiting_();
  }
  return static_cast<double>(clock_.NowMs() - began);
}

Status CheckpointCoordinator::Finish() {
  KAPPA_RETURN_IF_ERROR(Checkpoint());
  const int64_t began = clock_.NowMs();
  AwaitWriter(/*idle=*/true);
  auto durable = backend_.WaitForCommits();
  stats_.final_durable_ms = static_cast<double>(clock_.NowMs() - began);
  if (!durable.ok()) return durable.status();
  if (!barrier_.transactional() && group_) CommitGroupOffsets();
  return Status::OK();
}

}  // namespace kappa
