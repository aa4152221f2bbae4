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
  if (config.brokers.empty()) {
    return Status::InvalidArgument("no Kafka address: pass --brokers HOST:PORT (start one with `kappa broker`)");
  }
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
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(*conf);
    return Status::InvalidArgument(std::string("cannot create Kafka producer: ") + errstr);
  }
  sink->producer_.reset(rk);
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

void KafkaSink::Produce(const std::string& topic, std::string_view key, const void* value, size_t size,
                        rd_kafka_headers_t* headers) {
  if (suppressed_) {
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
  rd_kafka_headers_t* h = rd_kafka_headers_new(6);
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
  Produce(output_topic_, key, value, size, h);
}

void KafkaSink::EmitDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message) {
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
  Produce(spec_->dlq_topic, std::string_view(reinterpret_cast<const char*>(record.key), record.key_size),
          fbb.GetBufferPointer(), fbb.GetSize(), h);
}

void KafkaSink::EmitLate(int32_t partition, const InputRecord& record) {
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
  Produce(spec_->late_topic, std::string_view(reinterpret_cast<const char*>(record.key), record.key_size),
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
