// HybridSource: each partition is read from the log archive up to its
// archived end, then from Kafka at exactly that offset (DESIGN: the log
// archive). A task whose start lies in the archive is served by the
// ArchiveSource (in parallel rounds); the others, and every task once the
// archive is exhausted, by the KafkaSource. The start rule and the gap rule
// see both stores: history below Kafka's log start is fine while the archive
// holds it. One thread.
#pragma once

#include <string>
#include <vector>

#include "engine/archive_source.h"
#include "engine/kafka_source.h"

namespace kappa {

class HybridSource final : public Source {
 public:
  HybridSource(ArchiveSource& archive, KafkaSource& kafka, HistoryGapRule& gap_rule, const JobSpec& spec)
      : archive_(archive), kafka_(kafka), gap_rule_(gap_rule), spec_(spec) {}

  Result<int32_t> Partitions() override { return kafka_.Partitions(); }
  Status Open(const std::vector<Task*>& tasks, const std::vector<bool>& restored) override;
  Status Read(int64_t budget, int64_t* records) override;
  bool exhausted() const override { return false; }
  int64_t LogEnd(size_t i) const override;
  int64_t UnreachableSinceMs() const override { return kafka_.UnreachableSinceMs(); }
  std::string UnreachableReason() const override { return kafka_.UnreachableReason(); }
  int64_t EndAtOpen(size_t i) const override;
  // Kafka's, once task i reads from Kafka (before the switch the consumer
  // has no position for it).
  int64_t ReadPast(size_t i) const override { return kafka_.ReadPast(i); }
  int64_t archive_records() const override { return archive_.archive_records(); }
  std::string Describe() const override;

  // Scale-out (the runner positions each partition as the group assigns it;
  // it reads the archive and Kafka itself). AttachGroup: one task per
  // partition. PositionAssigned: task t, just taken, starts in the archive
  // when that holds its next offset (then served from it, up to the end the
  // archive has now), else in Kafka. SwitchToKafka: its archive part is
  // done; Kafka takes over at exactly its next offset (the gap rule applies).
  Status AttachGroup(const std::vector<Task*>& tasks);
  void SetTask(size_t i, Task* task) { tasks_[i] = task; }
  Status PositionAssigned(Task& t, bool restored);
  Status SwitchToKafka(size_t i);

 private:
  Status Position(Task& task, size_t i, bool restored, const Watermarks& marks);

  ArchiveSource& archive_;
  KafkaSource& kafka_;
  HistoryGapRule& gap_rule_;
  const JobSpec& spec_;
  std::vector<Task*> tasks_;
  std::vector<bool> after_archive_;
  bool switched_ = false;
};

}  // namespace kappa
