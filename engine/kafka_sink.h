// KafkaSink: where a job's records leave it. Implements the operators'
// OutputCollector over one idempotent librdkafka producer (acks=all):
// results to the version's output topic with lineage headers, failures to the
// DLQ topic as FlatBuffers DlqRecords, late records (original bytes) to the
// late topic. Transient errors are retried by the producer with backoff; a
// record that still fails, or a fatal producer error, makes Flush() return an
// error so the job stops before checkpointing past it. Outputs can be
// suppressed (rebuilding state without re-emitting). One thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "engine/base/status.h"
#include "engine/job_spec.h"
#include "engine/kafka_client.h"
#include "operators/operator.h"

struct rd_kafka_headers_s;

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace kappa {

class KafkaSink final : public OutputCollector {
 public:
  ~KafkaSink() override;
  static Result<std::unique_ptr<KafkaSink>> Create(const KafkaConfig& config, const JobSpec& spec);

  void Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) override;
  void EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message) override;
  void EmitLate(int32_t partition, const InputRecord& record) override;

  // Waits until every record produced so far is acknowledged (the
  // at-least-once barrier before a checkpoint). Error if any delivery failed.
  Status Flush(int timeout_ms);
  // First delivery or fatal error seen, if any (checked on the hot path).
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  Status failure() const;
  void set_suppressed(bool suppressed) { suppressed_ = suppressed; }
  void Poll() const;
  int64_t produced() const { return produced_; }
  rd_kafka_s* handle() const { return producer_.get(); }

  // Delivery-report hook (internal).
  void OnDelivery(int err, const std::string& message);

 private:
  KafkaSink() = default;
  void Produce(const std::string& topic, std::string_view key, const void* value, size_t size,
               rd_kafka_headers_s* headers);

  KafkaHandle producer_;
  const JobSpec* spec_ = nullptr;
  std::string output_topic_;
  std::string version_text_;
  std::unique_ptr<flatbuffers::FlatBufferBuilder> dlq_builder_;
  std::atomic<bool> failed_{false};
  mutable std::string failure_;
  bool suppressed_ = false;
  int64_t produced_ = 0;
};

}  // namespace kappa
