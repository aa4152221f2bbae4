#include "replay/registry.h"

#include <flatbuffers/flatbuffers.h>
#include <librdkafka/rdkafka.h>

#include <chrono>

#include "kafka/kafka_producer.h"
#include "kafka/kafka_status.h"
#include "kafka/topic_reader.h"
#include "schemas/control_generated.h"

namespace kappa {
namespace {

std::string JobKey(const std::string& job) { return "job/" + job; }
std::string ProgressKey(const std::string& job, int32_t version) {
  return "progress/" + job + "/v" + std::to_string(version);
}
std::string Str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

std::string EncodeJob(const JobRecord& r) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<schema::VersionEntry>> versions;
  for (const auto& v : r.versions) {
    versions.push_back(schema::CreateVersionEntryDirect(
        fbb, v.version, v.spec_hash.c_str(), static_cast<schema::VersionState>(v.state), v.source_topic.c_str(),
        v.output_topic.c_str(), v.group.c_str(), v.state_dir.c_str(), v.registered_at_ms, v.retired_at_ms,
        v.max_changed_share));
  }
  auto root = schema::CreateJobRegistryDirect(fbb, r.job.c_str(), &versions, r.serving, &r.previous_serving,
                                              r.updated_at_ms);
  fbb.Finish(root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::optional<JobRecord> DecodeJob(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<schema::JobRegistry>(nullptr)) return std::nullopt;
  const auto* j = flatbuffers::GetRoot<schema::JobRegistry>(bytes.data());
  JobRecord r;
  r.job = Str(j->job());
  r.serving = j->serving_version();
  r.updated_at_ms = j->updated_at_ms();
  if (j->previous_serving()) r.previous_serving.assign(j->previous_serving()->begin(), j->previous_serving()->end());
  if (j->versions()) {
    for (const auto* e : *j->versions()) {
      VersionInfo info;
      info.version = e->version();
      info.spec_hash = Str(e->spec_hash());
      info.state = static_cast<VersionState>(e->state());
      info.source_topic = Str(e->source_topic());
      info.output_topic = Str(e->output_topic());
      info.group = Str(e->group());
      info.state_dir = Str(e->state_dir());
      info.registered_at_ms = e->registered_at_ms();
      info.retired_at_ms = e->retired_at_ms();
      info.max_changed_share = e->max_changed_share();
      r.versions.push_back(info);
    }
  }
  return r;
}

std::string EncodeProgress(const ProgressRecord& r) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<schema::PartitionPosition>> parts;
  for (const auto& p : r.snapshot.partitions) {
    parts.push_back(schema::CreatePartitionPosition(fbb, p.partition, p.position, p.log_end, p.watermark_ms, p.start_offset));
  }
  const auto& c = r.snapshot.counters;
  auto root = schema::CreateVersionProgressDirect(fbb, r.job.c_str(), r.version, r.snapshot.epoch,
                                                  r.snapshot.checkpoint_ms, r.snapshot.records_per_second, c.in,
                                                  c.outputs, c.dlq, c.late, &parts, r.caught_up_since_ms, r.stopped);
  fbb.Finish(root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::optional<ProgressRecord> DecodeProgress(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<schema::VersionProgress>(nullptr)) return std::nullopt;
  const auto* p = flatbuffers::GetRoot<schema::VersionProgress>(bytes.data());
  ProgressRecord r;
  r.job = Str(p->job());
  r.version = p->version();
  r.snapshot.epoch = p->epoch();
  r.snapshot.checkpoint_ms = p->checkpoint_ms();
  r.snapshot.records_per_second = p->records_per_second();
  r.snapshot.counters.in = p->records_in();
  r.snapshot.counters.outputs = p->outputs();
  r.snapshot.counters.dlq = p->dlq();
  r.snapshot.counters.late = p->late();
  if (p->partitions()) {
    for (const auto* pp : *p->partitions()) {
      // Field by field: a positional initializer silently shifted fields
      // when PartitionProgress gained one.
      PartitionProgress part;
      part.partition = pp->partition();
      part.position = pp->position();
      part.log_end = pp->log_end();
      part.watermark_ms = pp->watermark_ms();
      part.start_offset = pp->start_offset();
      r.snapshot.partitions.push_back(part);
    }
  }
  r.caught_up_since_ms = p->caught_up_since_ms();
  r.stopped = p->stopped();
  return r;
}

}  // namespace

const char* VersionStateName(VersionState state) {
  switch (state) {
    case VersionState::kLive: return "live";
    case VersionState::kReplaying: return "replaying";
    case VersionState::kCaughtUp: return "caught-up";
    case VersionState::kRetired: return "retired";
  }
  return "?";
}

VersionInfo* JobRecord::Find(int32_t version) {
  for (auto& v : versions) {
    if (v.version == version) return &v;
  }
  return nullptr;
}
const VersionInfo* JobRecord::Find(int32_t version) const { return const_cast<JobRecord*>(this)->Find(version); }

Registry::Registry(KafkaConfig config, std::string control_topic)
    : config_(std::move(config)), topic_(std::move(control_topic)) {}
Registry::~Registry() = default;

Status Registry::Refresh() {
  std::map<std::string, std::string> latest;
  auto summary = ReadTopic(config_, topic_, [&](const ConsumedRecord& r) {
    latest[std::string(r.key)] = std::string(r.value);
  });
  if (!summary.ok()) {
    if (summary.status().code() == Status::Code::kNotFound) {
      latest_.clear();
      return Status::OK();  // no deployment has been registered yet
    }
    return summary.status();
  }
  latest_ = std::move(latest);
  return Status::OK();
}

std::vector<std::string> Registry::Jobs() const {
  std::vector<std::string> jobs;
  for (const auto& [k, v] : latest_) {
    if (k.rfind("job/", 0) == 0) jobs.push_back(k.substr(4));
  }
  return jobs;
}

std::optional<JobRecord> Registry::Job(const std::string& job) const {
  auto it = latest_.find(JobKey(job));
  if (it == latest_.end()) return std::nullopt;
  return DecodeJob(it->second);
}

std::optional<ProgressRecord> Registry::Progress(const std::string& job, int32_t version) const {
  auto it = latest_.find(ProgressKey(job, version));
  if (it == latest_.end()) return std::nullopt;
  return DecodeProgress(it->second);
}

Status Registry::PutJob(JobRecord record) {
  record.updated_at_ms = WallClockMs();
  return Put(JobKey(record.job), EncodeJob(record));
}

Status Registry::PutProgress(const ProgressRecord& record) {
  return Put(ProgressKey(record.job, record.version), EncodeProgress(record));
}

namespace {
// The delivery result of one registry write, through its per-message opaque.
void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  if (msg->err) *static_cast<rd_kafka_resp_err_t*>(msg->_private) = msg->err;
}
}  // namespace

Status Registry::Put(const std::string& key, const std::string& value) {
  if (!producer_) {
    ProducerOptions options;
    options.linger_ms = 0;  // one write at a time, each waited for
    options.message_timeout_ms = 30000;
    options.on_delivery = OnDelivery;
    auto producer = CreateProducer(config_, options);
    if (!producer.ok()) return producer.status();
    producer_ = std::move(*producer);
  }
  rd_kafka_resp_err_t delivery = RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      producer_.get(), RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
      RD_KAFKA_V_OPAQUE(&delivery), RD_KAFKA_V_END);
  if (err) return StatusFromKafka(err, "cannot write to the control topic " + topic_);
  rd_kafka_flush(producer_.get(), 35000);
  if (rd_kafka_outq_len(producer_.get()) > 0) {
    return Status::Unavailable("the control topic " + topic_ + " did not acknowledge a registry write within 35 s");
  }
  if (delivery) return StatusFromKafka(delivery, "registry write to " + topic_ + " failed");
  latest_[key] = value;
  return Status::OK();
}

}  // namespace kappa
