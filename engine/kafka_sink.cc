#include "engine/kafka_sink.h"

#include <flatbuffers/flatbuffers.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <mutex>

#include "schemas/dlq_record_generated.h"

namespace kappa {
namespace {

std::mutex g_failure_mutex;

void DeliveryCallback(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  if (msg->err) {
    static_cast<KafkaSink*>(opaque)->OnDelivery(msg->err, rd_kafka_message_errstr(msg));
  }
}

void ErrorCallback(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  // Only fatal errors stop the job; transport errors are retried by librdkafka.
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_fatal_error(rk, buf, sizeof(buf));
    static_cast<KafkaSink*>(opaque)->OnDelivery(err, std::string("fatal producer error: ") + buf);
  } else {
    (void)reason;
  }
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

KafkaSink::~KafkaSink() = default;

Result<std::unique_ptr<KafkaSink>> KafkaSink::Create(const KafkaConfig& config, const JobSpec& spec) {
  std::unique_ptr<KafkaSink> sink(new KafkaSink());
  sink->spec_ = &spec;
  sink->output_topic_ = spec.OutputTopic();
  sink->version_text_ = std::to_string(spec.version);
  sink->dlq_builder_ = std::make_unique<flatbuffers::FlatBufferBuilder>(1024);
  KAPPA_RETURN_IF_ERROR(RequireBootstrap(config));
  auto conf = config.Build({{"enable.idempotence", "true"},
                            {"acks", "all"},
                            {"linger.ms", "5"},
                            {"batch.num.messages", "10000"},
                            {"queue.buffering.max.messages", "1000000"},
                            {"retry.backoff.ms", "200"},
                            {"message.timeout.ms", "120000"}});
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_dr_msg_cb(*conf, DeliveryCallback);
  rd_kafka_conf_set_error_cb(*conf, ErrorCallback);
  rd_kafka_conf_set_opaque(*conf, sink.get());
  char errstr[512];
  if (spec.delivery == DeliveryMode::kExactlyOnce) {
    // One transactional id per job version: a second live instance of the
    // same version fences the first on a real cluster.
    const std::string txn_id = "kappa." + spec.ConsumerGroup();
    // The transaction must outlive message.timeout.ms (120 s above).
    if (rd_kafka_conf_set(*conf, "transactional.id", txn_id.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(*conf, "transaction.timeout.ms", "150000", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(*conf);
      return Status::InvalidArgument(std::string("transactional.id: ") + errstr);
    }
    sink->transactional_ = true;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(*conf);
    return Status::InvalidArgument(std::string("cannot create Kafka producer: ") + errstr);
  }
  sink->producer_.reset(rk);
  if (sink->transactional_) {
    if (rd_kafka_error_t* e = rd_kafka_init_transactions(rk, 30000)) {
      Status st = Status::Unavailable(std::string("cannot initialise Kafka transactions: ") + rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      return st;
    }
    if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk)) {
      Status st = Status::Unavailable(std::string("cannot begin a Kafka transaction: ") + rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      return st;
    }
  }
  // Connect and learn the sink topics' leaders now, not when the first
  // checkpoint waits for acks (measured: the first flush took ~600 ms on the
  // embedded broker without this). Failures here are not errors: the
  // producer retries, and a real failure surfaces at the first flush.
  for (const std::string& t : {sink->output_topic_, spec.dlq_topic, spec.late_topic}) {
    if (t.empty()) continue;
    rd_kafka_topic_t* handle = rd_kafka_topic_new(rk, t.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, handle, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(handle);
  }
  return sink;
}

void KafkaSink::OnDelivery(int err, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_failure_mutex);
  if (!failed_.exchange(true)) {
    failure_ = message + " (" + rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)) + ")";
  }
}

Status KafkaSink::failure() const {
  std::lock_guard<std::mutex> lock(g_failure_mutex);
  return Status::Unavailable("sink delivery failed after retries: " + failure_ +
                             "; the job stopped with its last checkpoint intact, restart it to resume");
}

void KafkaSink::Poll() const { rd_kafka_poll(producer_.get(), 0); }

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

void KafkaSink::Produce(int32_t partition, const std::string& topic, std::string_view key, const void* value,
                        size_t size, rd_kafka_headers_t* headers) {
  if (partition >= 0 && static_cast<size_t>(partition) < suppressed_.size() && suppressed_[partition]) {
    rd_kafka_headers_destroy(headers);
    return;
  }
  for (;;) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(const_cast<void*>(value), size),
        RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer_.get(), 20);  // back-pressure from the broker
      continue;
    }
    rd_kafka_headers_destroy(headers);
    OnDelivery(err, "cannot produce to " + topic + ": " + rd_kafka_err2str(err));
    return;
  }
  ++produced_;
}

void KafkaSink::Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) {
  std::unique_lock<std::mutex> lock(emit_mutex_, std::defer_lock);
  if (concurrent_) lock.lock();
  rd_kafka_headers_t* h = rd_kafka_headers_new(7);
  rd_kafka_header_add(h, "kappa.job", -1, spec_->job.data(), spec_->job.size());
  rd_kafka_header_add(h, "kappa.version", -1, version_text_.data(), version_text_.size());
  rd_kafka_header_add(h, "kappa.spec_hash", -1, spec_->spec_hash.data(), spec_->spec_hash.size());
  rd_kafka_header_add(h, "kappa.input", -1, spec_->source_topic.data(), spec_->source_topic.size());
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), "%d", lineage.partition);
  rd_kafka_header_add(h, "kappa.partition", -1, buf, n);
  n = std::snprintf(buf, sizeof(buf), "%lld-%lld", static_cast<long long>(lineage.first_offset),
                    static_cast<long long>(lineage.last_offset));
  rd_kafka_header_add(h, "kappa.offsets", -1, buf, n);
  if (lineage.partition >= 0 && static_cast<size_t>(lineage.partition) < history_gap_.size() &&
      !history_gap_[lineage.partition].empty()) {
    const std::string& gap = history_gap_[lineage.partition];
    rd_kafka_header_add(h, "kappa.history_gap", -1, gap.data(), gap.size());
  }
  Produce(lineage.partition, output_topic_, key, value, size, h);
}

void KafkaSink::EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message) {
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
  rd_kafka_headers_t* h = rd_kafka_headers_new(2);
  rd_kafka_header_add(h, "kappa.job", -1, spec_->job.data(), spec_->job.size());
  rd_kafka_header_add(h, "kappa.version", -1, version_text_.data(), version_text_.size());
  Produce(partition, spec_->dlq_topic, std::string_view(reinterpret_cast<const char*>(record.key), record.key_size),
          fbb.GetBufferPointer(), fbb.GetSize(), h);
}

void KafkaSink::EmitLate(int32_t partition, const InputRecord& record) {
  std::unique_lock<std::mutex> lock(emit_mutex_, std::defer_lock);
  if (concurrent_) lock.lock();
  rd_kafka_headers_t* h = rd_kafka_headers_new(5);
  rd_kafka_header_add(h, "kappa.job", -1, spec_->job.data(), spec_->job.size());
  rd_kafka_header_add(h, "kappa.version", -1, version_text_.data(), version_text_.size());
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), "%d", partition);
  rd_kafka_header_add(h, "kappa.partition", -1, buf, n);
  n = std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(record.offset));
  rd_kafka_header_add(h, "kappa.offset", -1, buf, n);
  n = std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(record.watermark_ms));
  rd_kafka_header_add(h, "kappa.watermark_ms", -1, buf, n);
  Produce(partition, spec_->late_topic, std::string_view(reinterpret_cast<const char*>(record.key), record.key_size),
          record.payload, record.size, h);
}

Status KafkaSink::Flush(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (rd_kafka_outq_len(producer_.get()) > 0) {
    if (failed()) return failure();
    rd_kafka_flush(producer_.get(), 100);
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable("sink: " + std::to_string(rd_kafka_outq_len(producer_.get())) +
                                 " records not acknowledged within " + std::to_string(timeout_ms / 1000) +
                                 " s; is the broker reachable?");
    }
  }
  if (failed()) return failure();
  return Status::OK();
}

}  // namespace kappa

namespace kappa {

std::string EosOffsetTag(const JobSpec& spec) { return "kappa eos " + spec.spec_hash; }

Status KafkaSink::CommitEpoch(rd_kafka_s* consumer, const std::string& topic,
                              const std::vector<std::pair<int32_t, int64_t>>& offsets) {
  if (failed()) return failure();
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
  const std::string tag = EosOffsetTag(*spec_);
  for (const auto& [p, o] : offsets) {
    rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
    tp->offset = o;
    // Tagged, so recovery trusts only offsets this spec committed transactionally.
    tp->metadata = const_cast<char*>(tag.c_str());
    tp->metadata_size = tag.size();
  }
  rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer);
  rd_kafka_error_t* error = rd_kafka_send_offsets_to_transaction(producer_.get(), list, group, 60000);
  rd_kafka_consumer_group_metadata_destroy(group);
  for (int i = 0; i < list->cnt; ++i) {
    list->elems[i].metadata = nullptr;  // not ours to free
    list->elems[i].metadata_size = 0;
  }
  rd_kafka_topic_partition_list_destroy(list);
  // commit_transaction flushes every produced record first.
  if (!error) error = rd_kafka_commit_transaction(producer_.get(), 150000);
  if (error) {
    Status st = Status::Unavailable(std::string("Kafka transaction failed: ") + rd_kafka_error_string(error) +
                                    "; the job stopped with its last checkpoint intact, restart it to resume");
    if (rd_kafka_error_txn_requires_abort(error)) {
      rd_kafka_error_t* abort_error = rd_kafka_abort_transaction(producer_.get(), 30000);
      if (abort_error) rd_kafka_error_destroy(abort_error);
    }
    rd_kafka_error_destroy(error);
    return st;
  }
  if (failed()) return failure();
  if (rd_kafka_error_t* e = rd_kafka_begin_transaction(producer_.get())) {
    Status st = Status::Unavailable(std::string("cannot begin a Kafka transaction: ") + rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return st;
  }
  return Status::OK();
}

}  // namespace kappa
