#include "engine/kafka_sink.h"

#include <flatbuffers/flatbuffers.h>

#include <array>
#include <chrono>
#include <cstdio>

#include "kafka/partition_list.h"
#include "schemas/dlq_record_generated.h"

namespace kappa {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr const char* kCheckpointIntact = "the job stopped with its last checkpoint intact, restart it to resume";

}  // namespace

std::string EosOffsetTag(const JobSpec& spec) { return "kappa eos " + spec.spec_hash; }

KafkaSink::~KafkaSink() = default;

Result<std::unique_ptr<KafkaSink>> KafkaSink::Create(const KafkaConfig& config, const JobSpec& spec) {
  std::unique_ptr<KafkaSink> sink(new KafkaSink());
  sink->spec_ = &spec;
  sink->output_topic_ = spec.OutputTopic();
  sink->version_text_ = std::to_string(spec.version);
  sink->dlq_builder_ = std::make_unique<flatbuffers::FlatBufferBuilder>(1024);
  ProducerOptions options = BulkProducerOptions();
  options.linger_ms = 5;
  options.retry_backoff_ms = 200;
  options.message_timeout_ms = 120000;
  if (spec.delivery == DeliveryMode::kExactlyOnce) {
    // One transactional id per job version: a second live instance of the
    // same version fences the first on a real cluster. The transaction must
    // outlive message.timeout.ms (120 s above).
    options.transactional_id = "kappa." + spec.ConsumerGroup();
    options.transaction_timeout_ms = 150000;
  }
  auto producer = KafkaProducer::Create(config, std::move(options));
  if (!producer.ok()) return producer.status();
  sink->producer_ = std::move(*producer);
  // Connect and learn the sink topics' leaders now, not when the first
  // checkpoint waits for acks (measured: the first flush took ~600 ms on the
  // embedded broker without this).
  sink->producer_->WarmUp({sink->output_topic_, spec.dlq_topic, spec.late_topic});
  return sink;
}

Status KafkaSink::failure() const {
  Status cause = producer_->failure();
  if (cause.ok()) return cause;
  return Status::Unavailable("sink delivery failed after retries: " + cause.message() + "; " + kCheckpointIntact);
}

void KafkaSink::SetPartitions(int32_t partitions) {
  if (partitions > static_cast<int32_t>(suppressed_.size())) suppressed_.resize(partitions, 0);
  if (partitions > static_cast<int32_t>(history_gap_.size())) history_gap_.resize(partitions);
}

void KafkaSink::SetSuppressed(int32_t partition, bool suppressed) {
  if (partition < 0) return;
  SetPartitions(partition + 1);
  suppressed_[partition] = suppressed ? 1 : 0;
}

void KafkaSink::SetHistoryGap(int32_t partition, std::string gap) {
  if (partition < 0) return;
  SetPartitions(partition + 1);
  history_gap_[partition] = std::move(gap);
}

void KafkaSink::Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) {
  if (Suppressed(lineage.partition)) return;
  std::unique_lock<std::mutex> lock(emit_mutex_, std::defer_lock);
  if (concurrent_) lock.lock();
  char partition_buf[16];
  char offsets_buf[48];
  const int pn = std::snprintf(partition_buf, sizeof(partition_buf), "%d", lineage.partition);
  const int on = std::snprintf(offsets_buf, sizeof(offsets_buf), "%lld-%lld",
                               static_cast<long long>(lineage.first_offset), static_cast<long long>(lineage.last_offset));
  std::array<KafkaHeader, 7> h = {{
      {"kappa.job", spec_->job},
      {"kappa.version", version_text_},
      {"kappa.spec_hash", spec_->spec_hash},
      {"kappa.input", spec_->source_topic},
      {"kappa.partition", std::string_view(partition_buf, pn)},
      {"kappa.offsets", std::string_view(offsets_buf, on)},
      {},
  }};
  size_t count = 6;
  if (lineage.partition >= 0 && static_cast<size_t>(lineage.partition) < history_gap_.size() &&
      !history_gap_[lineage.partition].empty()) {
    h[count++] = {"kappa.history_gap", history_gap_[lineage.partition]};
  }
  // A refused record is recorded as the producer's failure (failed()).
  (void)producer_->Produce(output_topic_, KafkaProducer::kAnyPartition, key,
                           std::string_view(reinterpret_cast<const char*>(value), size),
                           std::span<const KafkaHeader>(h.data(), count));
}

void KafkaSink::EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message) {
  if (Suppressed(partition)) return;
  std::unique_lock<std::mutex> lock(emit_mutex_, std::defer_lock);
  if (concurrent_) lock.lock();
  auto& fbb = *dlq_builder_;
  fbb.Clear();
  schema::DlqErrorType type = reason == DlqReason::kUndecodable    ? schema::DlqErrorType::Undecodable
                              : reason == DlqReason::kMissingField ? schema::DlqErrorType::MissingField
                                                                   : schema::DlqErrorType::InvalidValue;
  auto topic = fbb.CreateString(spec_->source_topic);
  auto key = fbb.CreateVector(record.key, record.key_size);
  auto payload = fbb.CreateVector(record.payload, record.size);
  auto msg = fbb.CreateString(message.data(), message.size());
  auto job = fbb.CreateString(spec_->job);
  auto hash = fbb.CreateString(spec_->spec_hash);
  auto root = schema::CreateDlqRecord(fbb, topic, partition, record.offset, record.timestamp_ms, key, payload,
                                      type, msg, job, spec_->version, hash, NowMs());
  schema::FinishDlqRecordBuffer(fbb, root);
  const std::array<KafkaHeader, 2> h = {{{"kappa.job", spec_->job}, {"kappa.version", version_text_}}};
  (void)producer_->Produce(spec_->dlq_topic, KafkaProducer::kAnyPartition,
                           std::string_view(reinterpret_cast<const char*>(record.key), record.key_size),
                           std::string_view(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()), h);
}

void KafkaSink::EmitLate(int32_t partition, const InputRecord& record) {
  if (Suppressed(partition)) return;
  std::unique_lock<std::mutex> lock(emit_mutex_, std::defer_lock);
  if (concurrent_) lock.lock();
  char partition_buf[16];
  char offset_buf[24];
  char watermark_buf[24];
  const int pn = std::snprintf(partition_buf, sizeof(partition_buf), "%d", partition);
  const int on = std::snprintf(offset_buf, sizeof(offset_buf), "%lld", static_cast<long long>(record.offset));
  const int wn =
      std::snprintf(watermark_buf, sizeof(watermark_buf), "%lld", static_cast<long long>(record.watermark_ms));
  const std::array<KafkaHeader, 5> h = {{
      {"kappa.job", spec_->job},
      {"kappa.version", version_text_},
      {"kappa.partition", std::string_view(partition_buf, pn)},
      {"kappa.offset", std::string_view(offset_buf, on)},
      {"kappa.watermark_ms", std::string_view(watermark_buf, wn)},
  }};
  (void)producer_->Produce(spec_->late_topic, KafkaProducer::kAnyPartition,
                           std::string_view(reinterpret_cast<const char*>(record.key), record.key_size),
                           std::string_view(reinterpret_cast<const char*>(record.payload), record.size), h);
}

Status KafkaSink::Flush(int timeout_ms) {
  Status st = producer_->Flush(timeout_ms);
  if (st.ok()) return st;
  if (failed()) return failure();
  return Status::Unavailable("sink: " + st.message());
}

Status KafkaSink::CommitEpoch(rd_kafka_s* consumer, const std::string& topic,
                              const std::vector<std::pair<int32_t, int64_t>>& offsets) {
  if (failed()) return failure();
  // Tagged, so recovery trusts only offsets this spec committed transactionally.
  const std::string tag = EosOffsetTag(*spec_);
  PartitionList list(static_cast<int>(offsets.size()));
  for (const auto& [p, o] : offsets) list.Add(topic, p, o, tag);
  Status st = producer_->CommitTransaction(consumer, list, 150000);
  if (st.ok()) return st;
  if (failed()) return failure();
  return Status::Unavailable(st.message() + "; " + kCheckpointIntact);
}

}  // namespace kappa
