#include "engine/kafka_sink.h"

#include <flatbuffers/flatbuffers.h>
#include <librdkafka/rdkafka.h>
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "base/hash.h"
#include "kafka/partition_list.h"
#include "schemas/dlq_record_generated.h"

namespace kappa {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

schema::DlqErrorType DlqTypeOf(DlqReason reason) {
  switch (reason) {
    case DlqReason::kUndecodable: return schema::DlqErrorType::Undecodable;
    case DlqReason::kMissingField: return schema::DlqErrorType::MissingField;
    case DlqReason::kInvalidValue: return schema::DlqErrorType::InvalidValue;
    case DlqReason::kSinkRejected: return schema::DlqErrorType::SinkRejected;
  }
  return schema::DlqErrorType::Unknown;
}

constexpr const char* kCheckpointIntact = "the job stopped with its last checkpoint intact, restart it to resume";

// A transaction's offsets refused because the broker no longer knows the
// input topic they are of (deleted while the job read it): "restart it to
// resume" would meet the same on every restart. The refusal is the
// transaction's error or, once recorded as the producer's failure, what
// every later step of the sink says, so it is recognised by its message
// ("... Failed to commit offsets to transaction on broker B: topic[p](...)",
// which names the topic; `input_topic` when the caller knows it).
std::optional<Status> DeletedInputTopic(const std::string& message, std::string input_topic = {}) {
  constexpr std::string_view kOffsets = "commit offsets to transaction on broker ";
  const size_t at = message.find(kOffsets);
  if (message.find("UNKNOWN_TOPIC_OR_PART") == std::string::npos ||
      (at == std::string::npos && (input_topic.empty() || message.find(input_topic + "[") == std::string::npos))) {
    return std::nullopt;
  }
  if (input_topic.empty()) {
    // (librdkafka cuts its message short: a long topic name may be cut.)
    const size_t from = message.find(": ", at + kOffsets.size());
    const size_t to = from == std::string::npos ? from : message.find('[', from + 2);
    if (to != std::string::npos) input_topic = message.substr(from + 2, to - from - 2);
  }
  return Status::Unavailable(
      message + "; the input topic " + (input_topic.empty() ? std::string("of the job") : input_topic) +
      " does not exist any more (deleted while the job read it?), so the transaction's offsets could not be "
      "committed. The job stopped with its last checkpoint intact, but a restart meets the same until the "
      "topic exists again with its history: if it was recreated, or its history is gone, replay the history "
      "from a log archive (--archive DIR) or start a new version over the new topic");
}
}  // namespace

std::string_view WithoutRestartAdvice(std::string_view message) {
  const std::string advice = std::string("; ") + kCheckpointIntact;
  if (message.size() >= advice.size() && message.substr(message.size() - advice.size()) == advice) {
    message.remove_suffix(advice.size());
  }
  return message;
}

namespace {

// A transaction's commit that failed.
Status CommitFailed(const std::string& message, const std::string& input_topic) {
  if (auto deleted = DeletedInputTopic(message, input_topic)) return *deleted;
  return Status::Unavailable(message + "; " + kCheckpointIntact);
}

// The errors of the two barriers, from the producer's message: a delivery
// failed, or outputs are still unacknowledged (the flush gave up).
Status DeliveryFailed(const std::string& cause) {
  // An output too large for the producer is made again, the same size, by
  // every restart from the checkpoint: "restart it to resume" would loop.
  if (cause.find("MSG_SIZE_TOO_LARGE") != std::string::npos) {
    return Status::Unavailable("sink delivery failed: " + cause +
                               "; the job stopped with its last checkpoint intact, but a restart makes the same "
                               "output again: raise -X message.max.bytes=N (and the output topic's "
                               "max.message.bytes), or change the job so that its rows are smaller (a shorter key, "
                               "fewer features), then restart it");
  }
  if (auto deleted = DeletedInputTopic(cause)) return *deleted;
  return Status::Unavailable("sink delivery failed: " + cause + "; " + kCheckpointIntact);
}
// The error for sink topics that do not exist on a broker that does not
// create topics on first use (auto.create.topics.enable=false).
std::string MissingTopics(const std::vector<std::string>& topics, const std::string& brokers) {
  std::string names;
  for (size_t i = 0; i < topics.size(); ++i) {
    names += (i == 0 ? "" : i + 1 == topics.size() ? " and " : ", ") + topics[i];
  }
  const bool one = topics.size() == 1;
  return std::string(one ? "topic " : "topics ") + names + (one ? " does" : " do") +
         " not exist and the broker does not create topics (auto.create.topics.enable=false): create " +
         (one ? "it" : "them") + " (kafka-topics.sh --bootstrap-server " + brokers + " --create --topic " +
         (one ? topics[0] : "NAME") + (one ? "" : " for each") +
         ", with the partitions and replication you want) or let the broker create topics, then start the job "
         "again";
}
Status Unacknowledged(const std::string& cause) {
  return Status::Unavailable("sink: " + cause + "; no checkpoint was taken past those outputs; " +
                             kCheckpointIntact);
}

// Room kept below message.max.bytes for what an estimate may miss.
constexpr size_t kSizeMargin = 256;
// A key over this is cut too when its record must be truncated (the DLQ
// record carries the key twice: as the Kafka key and inside).
constexpr size_t kMaxKeptKey = 16384;
constexpr size_t kMaxKeptMessage = 4096;

uint64_t Xxh3(const uint8_t* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace

std::string EosOffsetTag(const JobSpec& spec) { return "kappa eos " + spec.spec_hash; }
std::string EosFinalOffsetTag(const JobSpec& spec) { return EosOffsetTag(spec) + " final"; }

KafkaSink::~KafkaSink() = default;

Result<std::unique_ptr<KafkaSink>> KafkaSink::Create(const KafkaConfig& config, const JobSpec& spec,
                                                     NoteCallback on_note) {
  std::unique_ptr<KafkaSink> sink(new KafkaSink());
  sink->spec_ = &spec;
  sink->output_topic_ = spec.OutputTopic();
  sink->version_text_ = std::to_string(spec.version);
  sink->parked_topic_ = spec.ParkedTopic();
  sink->dlq_builder_ = std::make_unique<flatbuffers::FlatBufferBuilder>(1024);
  ProducerOptions options = BulkProducerOptions();
  options.linger_ms = 5;
  options.retry_backoff_ms = 200;
  options.message_timeout_ms = 120000;
  options.client = "sink producer";
  if (on_note) {
    options.on_warning = [on_note = std::move(on_note)](const std::string& text) {
      on_note(NoteLevel::kWarning, text);
    };
  }
  // With a PostgreSQL sink the rows' exactly-once is the database's
  // transaction (PostgresSink); this producer only carries DLQ and late
  // records, at least once.
  if (spec.delivery == DeliveryMode::kExactlyOnce && !spec.postgres()) {
    // One transactional id per job version: a second live instance of the
    // same version fences the first on a real cluster. The transaction must
    // outlive message.timeout.ms (120 s above).
    options.transactional_id = "kappa." + spec.ConsumerGroup();
    // Instances of a scaled-out version each have their own transactions;
    // the group's generation fences a zombie (KIP-447), the stable
    // instance name lets a restarted instance abort its own open one.
    if (spec.scale_out.enabled) {
      options.transactional_id += "." + spec.scale_out.instance;
      // A killed instance's open transaction holds back every read_committed
      // reader of the outputs and the changelog (the next owner's restore
      // too) until the broker aborts it: 15 s, not 150. A broker away for
      // longer than the message timeout then stops the job (restartable).
      options.message_timeout_ms = 12000;
    }
    sink->transactional_id_ = options.transactional_id;
    // A transaction is open from one checkpoint to the next, and the broker
    // aborts one open longer than transaction.timeout.ms, then fences the
    // producer: with a checkpoint interval at or over the timeout (30 s
    // under scale_out's 15) every checkpoint failed as if another process
    // had taken over (a bug bash). Unless set, the timeout is at least
    // twice the interval, up to the broker's default ceiling
    // (transaction.max.timeout.ms, 15 min); one set is held against the
    // interval.
    const int base_timeout_ms = spec.scale_out.enabled ? 15000 : 150000;
    options.transaction_timeout_ms =
        static_cast<int>(std::max<int64_t>(base_timeout_ms, std::min<int64_t>(900000, 2 * spec.checkpoint_interval_ms)));
    if (const std::string* set = config.Property("transaction.timeout.ms")) {
      char* end = nullptr;
      const long long ms = std::strtoll(set->c_str(), &end, 10);
      if (end != set->c_str() && *end == '\0' && ms > 0 && ms <= spec.checkpoint_interval_ms) {
        return Status::InvalidArgument(
            "transaction.timeout.ms " + *set + " is not longer than the checkpoint interval (" +
            std::to_string(spec.checkpoint_interval_ms) +
            " ms): the broker would abort each checkpoint's transaction before the checkpoint commits it; set "
            "-X transaction.timeout.ms to at least twice `checkpoint.interval`, or shorten the interval");
      }
      // librdkafka wants message.timeout.ms <= transaction.timeout.ms:
      // kappa's own 120 s made a lower timeout fail on a setting the user
      // never set (the same bug bash).
      if (ms > 0 && ms < options.message_timeout_ms && config.Property("message.timeout.ms") == nullptr) {
        options.message_timeout_ms = static_cast<int>(ms);
      }
    }
  }
  auto producer = KafkaProducer::Create(config, std::move(options));
  if (!producer.ok()) return producer.status();
  sink->producer_ = std::move(*producer);
  // Connect and learn the sink topics' leaders now, not when the first
  // checkpoint waits for acks (measured: the first flush took ~600 ms on the
  // embedded broker without this).
  const std::vector<std::string> missing =
      spec.postgres() ? sink->producer_->WarmUp({spec.dlq_topic, spec.late_topic})
                      : sink->producer_->WarmUp({sink->output_topic_, spec.dlq_topic, spec.late_topic});
  // A topic the broker will not create fails every delivery to it, but only
  // once the message timeout has passed, at the end of a bounded run, and
  // again after every restart (a bug bash): say so before reading anything.
  if (!missing.empty()) {
    // Not created because another topic's name differs only in '.' and '_'
    // (a bug bash: that was reported as a broker that creates no topics).
    const std::vector<std::string> existing = TopicNames(sink->producer_->handle(), 5000);
    for (const std::string& topic : missing) {
      const std::string other = CollidingTopic(topic, existing);
      if (other.empty()) continue;
      return Status::FailedPrecondition(
          "topic " + topic + " cannot be created: it collides with the existing topic " + other +
          " (Kafka takes '.' and '_' in topic names as one, for its metrics); name the job's topics so that they "
          "differ from " + other + " in more than '.' against '_'");
    }
    return Status::NotFound(MissingTopics(missing, BrokersOf(config)));
  }
  return sink;
}

Status KafkaSink::ProduceState(const std::string& topic, int32_t partition, std::string_view key,
                               std::string_view value) {
  Status st = producer_->Produce(topic, partition, key, value);
  // Fenced while writing state (the changelog): the same message as at a
  // transactional step, not the produce error (CI: a second process of
  // the same instance fenced the first during a changelog write, which then
  // said only "cannot produce to <changelog>: _FENCED").
  if (!st.ok() && Fenced()) return FencedError();
  return st;
}

KafkaSink::AbortedCommit KafkaSink::LastCommitAborted() const {
  if (!producer_->last_commit_aborted() || producer_->failed()) return AbortedCommit::kNone;
  switch (producer_->last_commit_error()) {
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
      return AbortedCommit::kRebalance;
    case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:
      return AbortedCommit::kSequenceGap;
    default:
      return AbortedCommit::kNone;
  }
}

bool KafkaSink::Fenced() const { return !transactional_id_.empty() && producer_->fenced(); }

// The broker aborts a transaction open past transaction.timeout.ms and
// fences its producer as a second process would: after a broker outage
// that long, the job said another process had taken over and must not be
// restarted (a bug bash). There was none; a restart resumes. The records
// waiting meanwhile may time out first (message.timeout.ms follows a lower
// transaction timeout down), which is the same cause said the same way.
// `who` is "<job> v<version>".
static std::optional<Status> TimedOutTransaction(const std::string& who, const std::string& transactional_id,
                                                 int64_t open_ms, int64_t timeout_ms) {
  if (transactional_id.empty() || timeout_ms <= 0 || open_ms < timeout_ms) return std::nullopt;
  return Status::Aborted(
      who + ": its Kafka transaction (transactional.id " + transactional_id + ") had been open " +
      std::to_string(open_ms / 1000) + " s, longer than transaction.timeout.ms (" + std::to_string(timeout_ms / 1000) +
      " s), past which Kafka lets no one commit it: it is aborted and this producer fenced (the broker was out "
      "of reach that long, or a checkpoint took that long; else another process of this version took over). "
      "Nothing committed is "
      "lost: unless another process of this version runs, restart it and it resumes from its last checkpoint");
}

std::optional<Status> KafkaSink::TransactionTimedOut() const {
  if (transactional_id_.empty()) return std::nullopt;
  return TimedOutTransaction(spec_->job + " v" + version_text_, transactional_id_, producer_->transaction_open_ms(),
                             producer_->transaction_timeout_ms());
}

Status KafkaSink::FencedError() const {
  if (auto timed_out = TransactionTimedOut()) return *timed_out;
  // Not "restart it": a restart would fence the other process in turn.
  if (spec_->scale_out.enabled) {
    // Each instance of a scaled-out version has transactions of its own
    // (the group fences a zombie by its generation): only another process
    // with the same instance name takes them over.
    return Status::Aborted(
        spec_->job + " v" + version_text_ + ": another process started as the same instance " +
        spec_->scale_out.instance + " took over its Kafka transactions (transactional.id " + transactional_id_ +
        ") and fenced this one, which stops: its open transaction is aborted and the other process carries on "
        "from the last committed one. Each process of a scaled-out version needs a name of its own: give every "
        "one a different --instance (or leave it out: the default is the host name and a hash of the state "
        "directory), and do not restart this one as instance " + spec_->scale_out.instance + " while the other runs");
  }
  return Status::Aborted(spec_->job + " v" + version_text_ +
                         ": another process of this job version took over its Kafka transactions (transactional.id " +
                         transactional_id_ +
                         ") and fenced this one, which stops: its open transaction is aborted and the other process "
                         "carries on from the last committed one. Only one process of a job version may run; do not "
                         "restart this one while the other runs. The transactional id comes from the job name and "
                         "version alone: if the other process runs another spec (its own logic or output topic), "
                         "give one of the two another `job:` name or `version:`");
}

Status KafkaSink::failure() const {
  Status cause = producer_->failure();
  if (cause.ok()) return cause;
  if (Fenced()) return FencedError();
  if (auto timed_out = TransactionTimedOut()) return *timed_out;
  return DeliveryFailed(cause.message());
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

// Without the emit lock: librdkafka's producer is thread-safe, and what else
// this reads (the suppressed partitions, the history gaps) only changes
// between rounds, on the main thread. Two workers emitting at once no longer
// wait for each other's header allocations.
void KafkaSink::Emit(std::string_view key, const uint8_t* value, size_t size, const OutputLineage& lineage) {
  if (OutputsSuppressed(lineage.partition)) return;
  // After a repartition the offsets are the job's input topic's, in
  // lineage.origin_partition (-1: possibly several).
  const bool origin = !spec_->origin_topic.empty();
  // std::to_chars, not snprintf: this runs once per output row.
  char partition_buf[16];
  char offsets_buf[48];
  const int pn = static_cast<int>(std::to_chars(partition_buf, partition_buf + sizeof(partition_buf),
                                                origin ? lineage.origin_partition : lineage.partition).ptr -
                                  partition_buf);
  char* o = std::to_chars(offsets_buf, offsets_buf + 20, lineage.first_offset).ptr;
  *o++ = '-';
  o = std::to_chars(o, offsets_buf + sizeof(offsets_buf), lineage.last_offset).ptr;
  const int on = static_cast<int>(o - offsets_buf);
  std::array<KafkaHeader, 7> h = {{
      {"kappa.job", spec_->job},
      {"kappa.version", version_text_},
      {"kappa.spec_hash", spec_->spec_hash},
      {"kappa.input", spec_->InputTopic(origin)},
      {"kappa.partition", std::string_view(partition_buf, pn)},
      {"kappa.offsets", std::string_view(offsets_buf, on)},
      {},
  }};
  size_t count = 6;
  if (lineage.partition >= 0 && static_cast<size_t>(lineage.partition) < history_gap_.size() &&
      !history_gap_[lineage.partition].empty()) {
    h[count++] = {"kappa.history_gap", history_gap_[lineage.partition]};
  }
  // A refused record (one over message.max.bytes too, named with its size)
  // is recorded as the producer's failure (failed()): the job stops there.
  (void)producer_->Produce(output_topic_, KafkaProducer::kAnyPartition, key,
                           std::string_view(reinterpret_cast<const char*>(value), size),
                           std::span<const KafkaHeader>(h.data(), count));
  if (!KAPPA_KILL_ARMED(kill_switch_, "mid-transaction")) return;
  std::unique_lock<std::mutex> lock(emit_mutex_, std::defer_lock);  // the kill switch's countdown
  if (concurrent_) lock.lock();
  if (KAPPA_KILL_REACHED(kill_switch_, "mid-transaction") && transactional()) {
    // The crash tests mean "with this transaction's outputs so far in the
    // broker's log, uncommitted": send them before dying (once a commit
    // under way has put the held ones into the open transaction).
    producer_->WaitUntilNotHolding();
    (void)producer_->Flush(30000);
    KAPPA_KILL_NOW("mid-transaction");
  }
}

void KafkaSink::EmitRepartitioned(int32_t to_partition, std::string_view key, const uint8_t* value, size_t size,
                                  int32_t from_partition) {
  if (Suppressed(from_partition)) return;
  (void)producer_->Produce(output_topic_, to_partition, key,
                           std::string_view(reinterpret_cast<const char*>(value), size), {});
}

void KafkaSink::BuildDlq(int32_t partition, const InputRecord& record, DlqReason reason, std::string_view message,
                         size_t key_keep, size_t payload_keep, uint64_t payload_xxh3) {
  auto& fbb = *dlq_builder_;
  fbb.Clear();
  const schema::DlqErrorType type = DlqTypeOf(reason);
  const bool truncated = key_keep < record.key_size || payload_keep < record.size;
  if (truncated && message.size() > kMaxKeptMessage) message = message.substr(0, kMaxKeptMessage);
  // After a repartition: where the record is in the job's input, not in
  // the repartition topic (a record read there with no valid envelope has
  // no other place, and keeps that one).
  const bool origin = record.origin_partition >= 0;
  if (origin) partition = record.origin_partition;
  auto topic = fbb.CreateString(spec_->InputTopic(origin));
  // A null Kafka key (no key pointer) stays null: an absent vector, which
  // `kappa dlq replay` re-injects as a null key. An empty vector made it an
  // empty key, which a job reading `kafka.key` then took as present.
  const flatbuffers::Offset<flatbuffers::Vector<uint8_t>> key =
      record.key == nullptr ? 0 : fbb.CreateVector(record.key, std::min<size_t>(key_keep, record.key_size));
  // A null value (a tombstone) likewise stays absent.
  const flatbuffers::Offset<flatbuffers::Vector<uint8_t>> payload =
      record.payload == nullptr ? 0 : fbb.CreateVector(record.payload, std::min<size_t>(payload_keep, record.size));
  auto msg = fbb.CreateString(message.data(), message.size());
  auto job = fbb.CreateString(spec_->job);
  auto hash = fbb.CreateString(spec_->spec_hash);
  const int64_t now = NowMs();
  const int32_t retry_count = record.retry_count + 1;
  const int64_t first_failure = record.retry_count > 0 && record.first_failure_at_ms > 0 ? record.first_failure_at_ms
                                                                                         : now;
  auto root = schema::CreateDlqRecord(fbb, topic, partition, record.offset, record.timestamp_ms, key, payload,
                                      type, msg, job, spec_->version, hash, now, truncated, record.size,
                                      payload_xxh3, record.key_size, retry_count, first_failure, now);
  schema::FinishDlqRecordBuffer(fbb, root);
}

std::vector<std::pair<std::string, int64_t>> KafkaSink::DlqByType() const {
  std::vector<std::pair<std::string, int64_t>> out;
  for (size_t i = 1; i < dlq_by_type_.size(); ++i) {
    out.emplace_back(schema::EnumNameDlqErrorType(static_cast<schema::DlqErrorType>(i)), dlq_by_type_[i].load());
  }
  return out;
}

// A dead letter whose payload is itself a DLQ record (KDLQ) came from a
// dead-letter topic read as a source: jobs whose DLQs feed each other's
// sources passed one bad record back and forth for ever, retry_count
// always 1, growing at each hop (a bug bash). Each hop counts as a retry of
// the record inside, so dlq.max_retries parks it.
static InputRecord CountingHops(const InputRecord& record) {
  InputRecord r = record;
  if (record.payload == nullptr || record.size < 8 ||
      !flatbuffers::BufferHasIdentifier(record.payload, schema::DlqRecordIdentifier())) {
    return r;
  }
  flatbuffers::Verifier verifier(record.payload, record.size);
  if (!schema::VerifyDlqRecordBuffer(verifier)) return r;
  const schema::DlqRecord* inner = schema::GetDlqRecord(record.payload);
  if (inner->retry_count() > r.retry_count) {
    r.retry_count = inner->retry_count();
    r.first_failure_at_ms = inner->first_failure_at_ms();
  }
  return r;
}

void KafkaSink::EmitDlq(int32_t partition, const InputRecord& in, DlqReason reason, std::string_view message) {
  if (Suppressed(partition)) return;
  const InputRecord record = CountingHops(in);
  std::unique_lock<std::mutex> lock(emit_mutex_, std::defer_lock);
  if (concurrent_) lock.lock();
  const std::array<KafkaHeader, 2> h = {{{"kappa.job", spec_->job}, {"kappa.version", version_text_}}};
  const uint64_t checksum = Xxh3(record.payload, record.size);
  const size_t limit = producer_->max_message_bytes();
  size_t key_keep = record.key_size;
  BuildDlq(partition, record, reason, message, key_keep, record.size, checksum);
  auto& fbb = *dlq_builder_;
  if (KafkaProducer::RecordSize(key_keep, fbb.GetSize(), h) + kSizeMargin > limit) {
    // Too large to dead-letter whole (a poison pill otherwise: every restart
    // would stop at it): keep the metadata and the payload's first bytes.
    key_keep = std::min<size_t>(record.key_size, kMaxKeptKey);
    BuildDlq(partition, record, reason, message, key_keep, 0, checksum);
    const size_t fixed = KafkaProducer::RecordSize(key_keep, fbb.GetSize(), h) + kSizeMargin;
    size_t payload_keep = limit > fixed ? std::min<size_t>(limit - fixed, record.size) : 0;
    for (;;) {
      BuildDlq(partition, record, reason, message, key_keep, payload_keep, checksum);
      const size_t size = KafkaProducer::RecordSize(key_keep, fbb.GetSize(), h) + kSizeMargin;
      if (size <= limit || payload_keep == 0) break;
      payload_keep -= std::min(payload_keep, size - limit);  // FlatBuffers padding: shrink by the excess
    }
  }
  dlq_by_type_[static_cast<size_t>(DlqTypeOf(reason))].fetch_add(1, std::memory_order_relaxed);
  // Failed more often than dlq.max_retries (re-injections included): parked,
  // out of the DLQ that `kappa dlq replay` keeps re-injecting.
  const std::string& topic = record.retry_count + 1 > spec_->dlq_max_retries ? parked_topic_ : spec_->dlq_topic;
  // Sparse beside the outputs: produced in groups (ProduceLater says why).
  producer_->ProduceLater(topic, std::string_view(reinterpret_cast<const char*>(record.key), key_keep),
                          std::string_view(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()),
                          h);
}

void KafkaSink::EmitLate(int32_t partition, const InputRecord& record) {
  if (Suppressed(partition)) return;
  char partition_buf[16];
  char offset_buf[24];
  char watermark_buf[24];
  char timestamp_buf[24];
  const bool origin = record.origin_partition >= 0;  // after a repartition: where it is in the input
  const int pn = std::snprintf(partition_buf, sizeof(partition_buf), "%d", origin ? record.origin_partition : partition);
  const int on = std::snprintf(offset_buf, sizeof(offset_buf), "%lld", static_cast<long long>(record.offset));
  const int wn =
      std::snprintf(watermark_buf, sizeof(watermark_buf), "%lld", static_cast<long long>(record.watermark_ms));
  const int tn =
      std::snprintf(timestamp_buf, sizeof(timestamp_buf), "%lld", static_cast<long long>(record.timestamp_ms));
  // The late record is stamped when it was routed (a replay of old history
  // would otherwise hand the late topic's time retention records years
  // old); the input's own topic and Kafka timestamp travel as headers (a
  // bug bash: with `event_time: kafka.timestamp` the late record's event
  // time was lost).
  std::array<KafkaHeader, 11> h = {{  // seven, and four more for a truncated record
      {"kappa.job", spec_->job},
      {"kappa.version", version_text_},
      {"kappa.input", spec_->InputTopic(origin)},
      {"kappa.partition", std::string_view(partition_buf, pn)},
      {"kappa.offset", std::string_view(offset_buf, on)},
      {"kappa.timestamp_ms", std::string_view(timestamp_buf, tn)},
      {"kappa.watermark_ms", std::string_view(watermark_buf, wn)},
  }};
  size_t count = 7;
  size_t key_keep = record.key_size;
  size_t payload_keep = record.size;
  char size_buf[24];
  char key_size_buf[24];
  std::string checksum;
  const size_t limit = producer_->max_message_bytes();
  if (KafkaProducer::RecordSize(key_keep, payload_keep, std::span<const KafkaHeader>(h.data(), count)) +
          kSizeMargin > limit) {
    // The original bytes do not fit the sink's limit: the first ones that
    // do, marked truncated, with the original sizes and a checksum.
    const int sn = std::snprintf(size_buf, sizeof(size_buf), "%u", record.size);
    const int kn = std::snprintf(key_size_buf, sizeof(key_size_buf), "%u", record.key_size);
    checksum = HashToHex(Xxh3(record.payload, record.size));
    h[count++] = {"kappa.truncated", "true"};
    h[count++] = {"kappa.original_size", std::string_view(size_buf, sn)};
    h[count++] = {"kappa.original_key_size", std::string_view(key_size_buf, kn)};
    h[count++] = {"kappa.payload_xxh3", checksum};
    key_keep = std::min<size_t>(key_keep, kMaxKeptKey);
    const size_t fixed =
        KafkaProducer::RecordSize(key_keep, 0, std::span<const KafkaHeader>(h.data(), count)) + kSizeMargin;
    payload_keep = limit > fixed ? std::min<size_t>(limit - fixed, record.size) : 0;
  }
  producer_->ProduceLater(spec_->late_topic, std::string_view(reinterpret_cast<const char*>(record.key), key_keep),
                          std::string_view(reinterpret_cast<const char*>(record.payload), payload_keep),
                          std::span<const KafkaHeader>(h.data(), count));
}

int64_t KafkaSink::UnreachableSinceMs() const { return producer_->UnreachableSinceMs(); }

Status KafkaSink::Flush(int timeout_ms) {
  Status st = producer_->Flush(timeout_ms);
  if (st.ok()) return st;
  if (failed()) return failure();
  return Unacknowledged(st.message());
}

std::function<Status()> KafkaSink::CloseOutputs(int timeout_ms) {
  // The messages Flush and failure() give (at-least-once: never fenced).
  return [wait = producer_->CloseEpoch(timeout_ms)] {
    bool failed = false;
    Status st = wait(&failed);
    if (st.ok()) return st;
    return failed ? DeliveryFailed(st.message()) : Unacknowledged(st.message());
  };
}

Status KafkaSink::CommitEpoch(rd_kafka_s* consumer, const std::string& topic,
                              const std::vector<std::pair<int32_t, int64_t>>& offsets) {
  if (failed()) return failure();
  Status st = producer_->CommitTransaction(consumer, TaggedOffsets(topic, offsets), 150000);
  if (st.ok()) return st;
  if (Fenced()) return FencedError();
  if (failed()) return failure();
  return CommitFailed(st.message(), topic);
}

PartitionList KafkaSink::TaggedOffsets(const std::string& topic,
                                       const std::vector<std::pair<int32_t, int64_t>>& offsets) const {
  // Tagged, so recovery trusts only offsets this spec committed transactionally.
  const std::string tag = final_watermark_ ? EosFinalOffsetTag(*spec_) : EosOffsetTag(*spec_);
  PartitionList list(static_cast<int>(offsets.size()));
  for (const auto& [p, o] : offsets) list.Add(topic, p, o, tag);
  return list;
}

std::function<Status()> KafkaSink::CommitEpochLater(rd_kafka_s* consumer, const std::string& topic,
                                                    const std::vector<std::pair<int32_t, int64_t>>& offsets) {
  if (failed()) return nullptr;  // CommitEpoch then says so at once
  // The messages CommitEpoch gives, built now: the sink may be gone when it
  // runs. All but the timed-out transaction's, which depends on how long
  // the transaction being committed has been open when the commit fails
  // (built then, the fencing of a transaction that timed out while this
  // commit waited read as another process's, a CI run).
  const auto began = std::chrono::steady_clock::now() - std::chrono::milliseconds(producer_->transaction_open_ms());
  return [commit = producer_->CommitTransactionLater(consumer, TaggedOffsets(topic, offsets), 150000),
          fenced_error = FencedError(), topic, began, who = spec_->job + " v" + version_text_,
          transactional_id = transactional_id_, timeout_ms = producer_->transaction_timeout_ms()] {
    bool fenced = false;
    bool producer_failed = false;
    Status st = commit(&fenced, &producer_failed);
    if (st.ok()) return st;
    const int64_t open_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
    if (fenced || producer_failed) {
      if (auto timed_out = TimedOutTransaction(who, transactional_id, open_ms, timeout_ms)) return *timed_out;
    }
    if (fenced) return fenced_error;
    // A failed delivery (its topic and cause), said as failure() says it:
    // with the advice for a fault a restart would meet again.
    if (producer_failed) return DeliveryFailed(st.message());
    return CommitFailed(st.message(), topic);
  };
}

}  // namespace kappa
