#include "kafka/kafka_producer.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "kafka/kafka_status.h"
#include "kafka/partition_list.h"

namespace kappa {

// Records per epoch, produced and settled (acknowledged or failed), in a
// ring of slots: epoch e counts in slot e % kSlots, cumulatively (a slot is
// reused only once its earlier epoch is settled, so equal totals mean the
// epoch is settled). A record carries its slot as its librdkafka opaque.
struct KafkaProducer::Epochs {
  static constexpr int64_t kSlots = 64;
  std::atomic<int64_t> produced[kSlots] = {};
  std::atomic<int64_t> settled[kSlots] = {};
  std::atomic<int64_t> open{1};  // the epoch records are produced into
  std::mutex mu;                 // held by a waiter; guards the two below
  KafkaProducer* producer = nullptr;  // null once the producer is destroyed
  int64_t confirmed = 0;              // every epoch up to it is settled

  bool Settled(int64_t epoch) const {
    const int64_t slot = epoch % kSlots;
    return settled[slot].load(std::memory_order_acquire) == produced[slot].load(std::memory_order_acquire);
  }
};

// A record copied to be produced later: held while a transaction commits
// (CommitTransactionLater) or kept by ProduceLater. Its key, value and
// headers (each name and value after a 32-bit size) are in one buffer.
struct KafkaProducer::Copy {
  std::string topic;
  int32_t partition = kAnyPartition;
  int64_t timestamp_ms = 0;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint32_t header_count = 0;
  bool key_null = false;
  bool value_null = false;
  std::string bytes;

  Copy(const std::string& t, int32_t p, std::string_view key, std::string_view value,
       std::span<const KafkaHeader> headers, int64_t ts)
      : topic(t), partition(p), timestamp_ms(ts), key_size(static_cast<uint32_t>(key.size())),
        value_size(static_cast<uint32_t>(value.size())), header_count(static_cast<uint32_t>(headers.size())),
        key_null(key.data() == nullptr), value_null(value.data() == nullptr) {
    size_t size = key.size() + value.size();
    for (const KafkaHeader& h : headers) size += 2 * sizeof(uint32_t) + h.name.size() + h.value.size();
    bytes.reserve(size);
    bytes.append(key.data() ? key.data() : "", key.size()).append(value.data() ? value.data() : "", value.size());
    for (const KafkaHeader& h : headers) {
      for (std::string_view part : {h.name, h.value}) {
        const auto n = static_cast<uint32_t>(part.size());
        bytes.append(reinterpret_cast<const char*>(&n), sizeof(n)).append(part.data() ? part.data() : "", n);
      }
    }
  }
  std::string_view key() const { return key_null ? std::string_view() : std::string_view(bytes.data(), key_size); }
  std::string_view value() const {
    return value_null ? std::string_view() : std::string_view(bytes.data() + key_size, value_size);
  }
  // The headers, as views of `bytes`, into *out.
  void Headers(std::vector<KafkaHeader>* out) const {
    out->clear();
    const char* p = bytes.data() + key_size + value_size;
    auto next = [&p] {
      uint32_t n;
      std::memcpy(&n, p, sizeof(n));
      const std::string_view part(p + sizeof(n), n);
      p += sizeof(n) + n;
      return part;
    };
    for (uint32_t i = 0; i < header_count; ++i) {
      const std::string_view name = next();
      out->push_back({name, next()});
    }
  }
};

// The records held while a transaction commits, in the order they came.
struct KafkaProducer::Hold {
  // Past this, Produce waits for the commit rather than hold more.
  size_t max_bytes = size_t{256} << 20;
  std::mutex mu;  // guards the rest but `holding`; held by EndHold while it produces
  std::condition_variable cv;
  std::atomic<bool> holding{false};  // written under mu
  std::vector<Copy> records;
  size_t bytes = 0;
};

// ProduceLater's records, in the order they came.
struct KafkaProducer::Later {
  std::mutex mu;  // guards the rest but `count`; held while they are produced
  std::vector<Copy> records;
  size_t bytes = 0;
  std::atomic<size_t> count{0};  // records.size(), read without the lock
};

ProducerOptions BulkProducerOptions() {
  ProducerOptions options;
  options.idempotent = true;
  options.acks = "all";
  options.batch_num_messages = 10000;
  options.queue_buffering_max_messages = 1000000;
  return options;
}

Result<KafkaHandle> CreateProducer(const KafkaConfig& config, const ProducerOptions& options) {
  KAPPA_RETURN_IF_ERROR(RequireBootstrap(config));
  std::vector<std::pair<std::string, std::string>> defaults = {
      {"enable.idempotence", options.idempotent ? "true" : "false"},
      {"acks", options.acks},
      {"linger.ms", std::to_string(options.linger_ms)},
      {"message.timeout.ms", std::to_string(options.message_timeout_ms)},
  };
  if (options.batch_num_messages > 0) {
    defaults.emplace_back("batch.num.messages", std::to_string(options.batch_num_messages));
  }
  if (options.queue_buffering_max_messages > 0) {
    defaults.emplace_back("queue.buffering.max.messages", std::to_string(options.queue_buffering_max_messages));
  }
  if (options.retry_backoff_ms > 0) defaults.emplace_back("retry.backoff.ms", std::to_string(options.retry_backoff_ms));
  if (!options.transactional_id.empty()) {
    defaults.emplace_back("transactional.id", options.transactional_id);
    defaults.emplace_back("transaction.timeout.ms", std::to_string(options.transaction_timeout_ms));
  }
  auto conf = config.Build(defaults);
  if (!conf.ok()) return conf.status();
  if (options.on_delivery) rd_kafka_conf_set_dr_msg_cb(*conf, options.on_delivery);
  if (options.on_error) rd_kafka_conf_set_error_cb(*conf, options.on_error);
  if (options.opaque) rd_kafka_conf_set_opaque(*conf, options.opaque);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(*conf);
    return Status::InvalidArgument(std::string("cannot create Kafka producer: ") + errstr);
  }
  return KafkaHandle(rk);
}

Result<std::unique_ptr<KafkaProducer>> KafkaProducer::Create(const KafkaConfig& config, ProducerOptions options) {
  std::unique_ptr<KafkaProducer> p(new KafkaProducer());
  p->epochs_ = std::make_shared<Epochs>();
  p->epochs_->producer = p.get();
  p->hold_ = std::make_shared<Hold>();
  p->later_ = std::make_unique<Later>();
  options.on_delivery = &KafkaProducer::OnDeliveryReport;
  options.on_error = &KafkaProducer::OnClientError;
  options.opaque = p.get();
  if (options.on_warning) p->error_notes_ = std::make_unique<ClientErrorNotes>(options.client, options.on_warning);
  auto handle = CreateProducer(config, options);
  if (!handle.ok()) return handle.status();
  p->producer_ = std::move(*handle);
  p->transactional_ = !options.transactional_id.empty();
  rd_kafka_t* rk = p->producer_.get();
  {
    char value[64];
    size_t size = sizeof(value);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", value, &size) == RD_KAFKA_CONF_OK) {
      p->max_message_bytes_ = static_cast<size_t>(std::strtoull(value, nullptr, 10));
    }
    size = sizeof(value);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "transaction.timeout.ms", value, &size) == RD_KAFKA_CONF_OK) {
      p->transaction_timeout_ms_ = static_cast<int>(std::strtol(value, nullptr, 10));
    }
  }
  if (p->transactional_) {
    if (rd_kafka_error_t* e = rd_kafka_init_transactions(rk, 30000)) {
      Status st = StatusFromKafkaError(e, "cannot initialise Kafka transactions (" + options.transactional_id + ")");
      // The broker's transaction.max.timeout.ms (15 min by default) below
      // the producer's: the error named neither (a bug bash).
      if (rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT) {
        st = Status::FailedPrecondition(
            st.message() + ": the broker refuses a transaction timeout of " +
            std::to_string(p->transaction_timeout_ms_) +
            " ms (transaction.timeout.ms), more than its transaction.max.timeout.ms allows; raise the broker's "
            "setting, or lower kappa's with -X transaction.timeout.ms=<ms> (longer than the checkpoint interval)");
      }
      rd_kafka_error_destroy(e);
      return st;
    }
    if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk)) {
      Status st = StatusFromKafkaError(e, "cannot begin a Kafka transaction");
      rd_kafka_error_destroy(e);
      return st;
    }
    p->MarkTransactionBegun();
  }
  return p;
}

KafkaProducer::~KafkaProducer() {
  if (epochs_) {
    // A waiter still holding a CloseEpoch wait learns the producer is gone.
    std::lock_guard<std::mutex> lock(epochs_->mu);
    epochs_->producer = nullptr;
  }
  rd_kafka_t* rk = producer_.get();
  for (Topic* t = topics_.exchange(nullptr); t != nullptr;) {
    rd_kafka_topic_destroy(t->handle);
    delete std::exchange(t, t->next);
  }
  if (!rk) return;
  // Whatever is still unacknowledged was either flushed before (a clean end)
  // or is abandoned (a failure, a stop): drop it rather than let
  // rd_kafka_destroy wait for requests to a broker that may be gone.
  if (rd_kafka_outq_len(rk) > 0) rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  // Destroyed here, while the members its callbacks touch are alive.
  producer_.reset();
}

size_t KafkaProducer::RecordSize(size_t key_size, size_t value_size, std::span<const KafkaHeader> headers) {
  // librdkafka's RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD (length, attributes,
  // timestamp and offset deltas, key/value lengths, header count: 36 bytes),
  // and per header two length varints (at most 5 bytes each).
  size_t size = 36 + key_size + value_size;
  for (const KafkaHeader& h : headers) size += 10 + h.name.size() + h.value.size();
  return size;
}

void KafkaProducer::OnDeliveryReport(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  // Settled either way: a failed record only once its failure is recorded,
  // so that a waiter that sees its epoch settled sees the failure too.
  const auto slot = reinterpret_cast<intptr_t>(msg->_private);
  if (!msg->err) {
    self->epochs_->settled[slot].fetch_add(1, std::memory_order_release);
    if (self->unreachable_since_ms_.load(std::memory_order_relaxed) != 0) {
      self->unreachable_since_ms_.store(0, std::memory_order_relaxed);
    }
    return;
  }
  struct SettleOnExit {
    std::atomic<int64_t>& count;
    ~SettleOnExit() { count.fetch_add(1, std::memory_order_release); }
  } settle{self->epochs_->settled[slot]};
  // Records of an aborted transaction are purged from the queue (a
  // scaled-out version aborts an epoch the group fenced, and goes on):
  // dropped on purpose, never a failed delivery of a committed record.
  if (self->transactional_ &&
      (msg->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || msg->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)) {
    return;
  }
  self->failed_count_.fetch_add(1, std::memory_order_relaxed);
  if (self->failed()) return;  // only the first failure is described
  const char* topic = msg->rkt ? rd_kafka_topic_name(msg->rkt) : "?";
  Status failure =
      StatusFromKafka(msg->err, std::string("delivery to ") + topic + "[" + std::to_string(msg->partition) + "] failed",
                      AuthorizationHint(msg->err, topic));
  if (msg->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
    // Named alone, a DLQ partition read as the fault (a bug bash of a lost
    // broker): what timing out means.
    failure = Status::Unavailable(failure.message() +
                                  " (no broker acknowledged it within message.timeout.ms: the brokers were out of "
                                  "reach, or this partition's leader was, that long)");
  }
  self->RecordFailure(std::move(failure));
}

void KafkaProducer::OnClientError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  // Only fatal errors stop the producer; transport errors are retried by
  // librdkafka, and said (a broker lost must not go unnoticed).
  if (err != RD_KAFKA_RESP_ERR__FATAL) {
    auto* self = static_cast<KafkaProducer*>(opaque);
    int64_t reachable = 0;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      self->unreachable_since_ms_.compare_exchange_strong(reachable, WallClockMs(), std::memory_order_relaxed);
    }
    if (self->error_notes_) self->error_notes_->OnError(err, reason);
    return;
  }
  // The cause (rd_kafka_fatal_error) and, for an authorization failure,
  // which ACL is missing.
  static_cast<KafkaProducer*>(opaque)->RecordFailure(StatusFromKafkaFatal(rk, err, "fatal producer error"));
}

void KafkaProducer::RecordFailure(Status status) {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  if (failure_.ok()) failure_ = std::move(status);
  failed_.store(true, std::memory_order_relaxed);
}

Status KafkaProducer::failure() const {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  return failure_;
}

Status KafkaProducer::Produce(const std::string& topic, int32_t partition, std::string_view key,
                              std::string_view value, std::span<const KafkaHeader> headers, int64_t timestamp_ms) {
  if (hold_->holding.load(std::memory_order_acquire)) {
    std::unique_lock<std::mutex> lock(hold_->mu);
    hold_->cv.wait(lock, [&] {
      return !hold_->holding.load(std::memory_order_relaxed) || hold_->bytes < hold_->max_bytes;
    });
    if (hold_->holding.load(std::memory_order_relaxed)) {
      hold_->records.emplace_back(topic, partition, key, value, headers, timestamp_ms);
      hold_->bytes += 64 + topic.size() + key.size() + value.size() + RecordSize(0, 0, headers);
      return Status::OK();
    }
    // The commit ended the hold meanwhile (its held records are in): in turn.
  }
  return ProduceNow(topic, partition, key, value, headers, timestamp_ms);
}

void KafkaProducer::ProduceLater(const std::string& topic, std::string_view key, std::string_view value,
                                 std::span<const KafkaHeader> headers) {
  std::lock_guard<std::mutex> lock(later_->mu);
  const Copy& c = later_->records.emplace_back(topic, kAnyPartition, key, value, headers, 0);
  later_->bytes += c.bytes.size();
  later_->count.store(later_->records.size(), std::memory_order_relaxed);
  if (later_->records.size() >= kLaterBatch || later_->bytes >= kLaterBatchBytes) SendLaterLocked();
}

void KafkaProducer::SendLater() {
  if (later_->count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> lock(later_->mu);
  SendLaterLocked();
}

void KafkaProducer::SendLaterLocked() {
  std::vector<KafkaHeader> headers;
  for (const Copy& c : later_->records) {
    c.Headers(&headers);
    // Through Produce: held like any record while a transaction commits. A
    // refusal is recorded as the producer's failure (failed()).
    (void)Produce(c.topic, c.partition, c.key(), c.value(), headers, c.timestamp_ms);
  }
  later_->records.clear();
  later_->bytes = 0;
  later_->count.store(0, std::memory_order_relaxed);
}

rd_kafka_topic_s* KafkaProducer::TopicHandle(const std::string& topic) {
  auto find = [&](Topic* head) -> rd_kafka_topic_t* {
    for (Topic* t = head; t != nullptr; t = t->next) {
      if (t->name == topic) return t->handle;
    }
    return nullptr;
  };
  if (rd_kafka_topic_t* known = find(topics_.load(std::memory_order_acquire))) return known;
  std::lock_guard<std::mutex> lock(topics_mutex_);
  Topic* head = topics_.load(std::memory_order_acquire);
  if (rd_kafka_topic_t* known = find(head)) return known;  // made meanwhile by another thread
  rd_kafka_topic_t* handle = rd_kafka_topic_new(producer_.get(), topic.c_str(), nullptr);
  if (handle == nullptr) return nullptr;
  topics_.store(new Topic{topic, handle, head}, std::memory_order_release);
  return handle;
}

Status KafkaProducer::ProduceNow(const std::string& topic, int32_t partition, std::string_view key,
                                 std::string_view value, std::span<const KafkaHeader> headers,
                                 int64_t timestamp_ms) {
  rd_kafka_headers_t* h = nullptr;
  if (!headers.empty()) {
    h = rd_kafka_headers_new(headers.size());
    for (const KafkaHeader& header : headers) {
      rd_kafka_header_add(h, header.name.data(), static_cast<ssize_t>(header.name.size()), header.value.data(),
                          static_cast<ssize_t>(header.value.size()));
    }
  }
  rd_kafka_t* rk = producer_.get();
  void* payload = const_cast<char*>(value.data());
  // Counted into its epoch before librdkafka can report it settled.
  const int64_t slot = epochs_->open.load(std::memory_order_relaxed) % Epochs::kSlots;
  void* tag = reinterpret_cast<void*>(static_cast<intptr_t>(slot));
  epochs_->produced[slot].fetch_add(1, std::memory_order_release);
  rd_kafka_topic_t* rkt = TopicHandle(topic);
  for (;;) {
    // On success librdkafka owns the headers. A name librdkafka refused
    // fails as producing by that name would.
    const rd_kafka_resp_err_t err =
        rkt == nullptr ? RD_KAFKA_RESP_ERR__INVALID_ARG
        : h ? rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(payload, value.size()), RD_KAFKA_V_TIMESTAMP(timestamp_ms),
                                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END)
            : rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(payload, value.size()), RD_KAFKA_V_TIMESTAMP(timestamp_ms),
                                RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 20);  // back-pressure: serve delivery reports until there is room
      continue;
    }
    if (h) rd_kafka_headers_destroy(h);
    epochs_->produced[slot].fetch_sub(1, std::memory_order_release);  // refused: never in flight
    if (err == RD_KAFKA_RESP_ERR__STATE && transactional_) {
      // The transaction failed before (a record the broker refused made it
      // abortable) and librdkafka refuses the next ones with _STATE; the
      // cause comes in that record's delivery report, served here first (up
      // to 1 s), so that the job's failure names it, not "Erroneous state"
      // (a loaded CI run reported the refused output that way).
      for (int i = 0; i < 10 && !failed(); ++i) rd_kafka_poll(rk, 100);
    }
    const std::string what =
        err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
            ? "cannot produce a record of " + std::to_string(RecordSize(key.size(), value.size(), headers)) +
                  " bytes to " + topic + ": more than the producer's message.max.bytes (" +
                  std::to_string(max_message_bytes_) + "; raise it with -X message.max.bytes=N if the topic allows)"
            : "cannot produce to " + topic;
    // _FATAL: its cause, not "Local: Fatal error"; an authorization failure with the ACLs to grant.
    Status st = StatusFromKafkaFatal(rk, err, what, topic);
    RecordFailure(st);
    return st;
  }
  produced_.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
}

bool KafkaProducer::PastDeadline(std::chrono::steady_clock::time_point deadline,
                                 std::chrono::steady_clock::time_point* stop_deadline) const {
  const auto now = std::chrono::steady_clock::now();
  if (stop_.stop_requested() && *stop_deadline == std::chrono::steady_clock::time_point::max()) {
    *stop_deadline = std::min(now, stop_.requested_at()) + std::chrono::milliseconds(kStopBoundMs);
  }
  return now > deadline || now > *stop_deadline;
}

Status KafkaProducer::DrainQueue(std::chrono::steady_clock::time_point deadline,
                                 std::chrono::steady_clock::time_point* stop_deadline, int timeout_ms,
                                 bool stop_at_failure) {
  rd_kafka_t* rk = producer_.get();
  while (rd_kafka_outq_len(rk) > 0) {
    if (stop_at_failure && failed()) return failure();
    rd_kafka_flush(rk, 100);
    if (PastDeadline(deadline, stop_deadline)) {
      if (stop_at_failure && failed()) return failure();
      const int left = rd_kafka_outq_len(rk);
      if (left == 0) break;
      if (stop_.stop_requested()) {
        return Status::Unavailable(std::to_string(left) + " records not acknowledged " +
                                   std::to_string(kStopBoundMs / 1000) +
                                   " s after the stop request (is the broker reachable?); not waiting longer");
      }
      return Status::Unavailable(std::to_string(left) + " records not acknowledged within " +
                                 std::to_string(timeout_ms / 1000) + " s; is the broker reachable?");
    }
  }
  return Status::OK();
}

Status KafkaProducer::Flush(int timeout_ms) {
  SendLater();
  std::lock_guard<std::mutex> polling(poll_mutex_);
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  KAPPA_RETURN_IF_ERROR(DrainQueue(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms),
                                   &stop_deadline, timeout_ms, /*stop_at_failure=*/true));
  // rd_kafka_flush serves the last delivery reports only if the queue had
  // any; serve any left so that a failure is seen here.
  rd_kafka_poll(producer_.get(), 0);
  if (failed()) return failure();
  return Status::OK();
}

KafkaProducer::EpochWait KafkaProducer::CloseEpoch(int timeout_ms) {
  SendLater();  // into the epoch this closes
  const int64_t closed = epochs_->open.load(std::memory_order_relaxed);
  // The next epoch's slot last counted epoch closed + 1 - kSlots: settle it
  // before counting anew (with a checkpoint queue of two, never in practice).
  if (!epochs_->Settled(closed + 1)) (void)Flush(timeout_ms);
  epochs_->open.store(closed + 1, std::memory_order_relaxed);
  return [epochs = epochs_, closed, timeout_ms](bool* producer_failed) {
    bool failed = false;
    Status st = WaitForEpoch(epochs, closed, timeout_ms, &failed);
    if (producer_failed) *producer_failed = failed;
    return st;
  };
}

Status KafkaProducer::WaitForEpoch(const std::shared_ptr<Epochs>& epochs, int64_t epoch, int timeout_ms,
                                   bool* producer_failed) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  std::lock_guard<std::mutex> lock(epochs->mu);
  for (;;) {
    KafkaProducer* p = epochs->producer;
    if (p == nullptr) {
      return Status::Unavailable("the producer was closed before the records of epoch " + std::to_string(epoch) +
                                 " were acknowledged");
    }
    auto failure = [&] {
      *producer_failed = true;
      return p->failure();
    };
    if (p->failed()) return failure();
    while (epochs->confirmed < epoch && epochs->Settled(epochs->confirmed + 1)) ++epochs->confirmed;
    if (epochs->confirmed >= epoch) {
      // A failure reported just before the last settle is seen here.
      if (p->failed()) return failure();
      return Status::OK();
    }
    if (p->PastDeadline(deadline, &stop_deadline)) {
      const int64_t slot = (epochs->confirmed + 1) % Epochs::kSlots;
      const int64_t left = epochs->produced[slot].load() - epochs->settled[slot].load();
      return Status::Unavailable(std::to_string(left) + " records not acknowledged " +
                                 (p->stop_.stop_requested()
                                      ? std::to_string(kStopBoundMs / 1000) + " s after the stop request"
                                      : "within " + std::to_string(timeout_ms / 1000) + " s") +
                                 "; is the broker reachable?");
    }
    // Serves delivery reports unless the job's thread is at it (Poll): the
    // callbacks of one producer never run on two polling threads at once.
    std::unique_lock<std::mutex> polling(p->poll_mutex_, std::try_to_lock);
    if (polling.owns_lock()) {
      rd_kafka_poll(p->producer_.get(), 10);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

void KafkaProducer::Poll(int timeout_ms) {
  SendLater();
  // Not behind an epoch's waiter (it serves the same callbacks, up to 10 ms
  // a poll): the job's thread must not wait for it between reads.
  std::unique_lock<std::mutex> polling(poll_mutex_, std::try_to_lock);
  if (!polling.owns_lock()) return;
  rd_kafka_poll(producer_.get(), timeout_ms);
}

int KafkaProducer::InFlight() const { return rd_kafka_outq_len(producer_.get()); }

Status KafkaProducer::CommitTransaction(rd_kafka_s* consumer, const PartitionList& offsets, int timeout_ms) {
  if (!transactional_) return Status::FailedPrecondition("CommitTransaction on a producer without transactional.id");
  SendLater();  // into this transaction
  if (offsets.size() == 0) return CommitOpenTransaction(nullptr, offsets, timeout_ms);
  rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer);
  Status st = CommitOpenTransaction(group, offsets, timeout_ms);
  rd_kafka_consumer_group_metadata_destroy(group);
  return st;
}

namespace {
int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void KafkaProducer::MarkTransactionBegun() {
  transaction_began_ms_.store(std::max<int64_t>(1, SteadyMs()), std::memory_order_relaxed);
}

int64_t KafkaProducer::transaction_open_ms() const {
  const int64_t began = transaction_began_ms_.load(std::memory_order_relaxed);
  return began == 0 ? 0 : SteadyMs() - began;
}

bool KafkaProducer::fenced() const {
  if (!transactional_) return false;
  char text[256];
  const rd_kafka_resp_err_t err = rd_kafka_fatal_error(producer_.get(), text, sizeof(text));
  return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
         err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

void KafkaProducer::SetHoldLimitForTesting(size_t bytes) {
  std::lock_guard<std::mutex> lock(hold_->mu);
  hold_->max_bytes = bytes;
}

void KafkaProducer::WaitUntilNotHolding() const {
  std::unique_lock<std::mutex> lock(hold_->mu);
  hold_->cv.wait(lock, [&] { return !hold_->holding.load(std::memory_order_relaxed); });
}

bool KafkaProducer::WaitUntilNotHoldingFor(int timeout_ms) const {
  std::unique_lock<std::mutex> lock(hold_->mu);
  return hold_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                            [&] { return !hold_->holding.load(std::memory_order_relaxed); });
}

size_t KafkaProducer::held() const {
  std::lock_guard<std::mutex> lock(hold_->mu);
  return hold_->records.size();
}

Status KafkaProducer::EndHold(Hold& hold, KafkaProducer* producer, bool produce) {
  std::lock_guard<std::mutex> lock(hold.mu);
  Status st;
  if (produce && producer) {
    std::vector<KafkaHeader> headers;
    for (const Copy& r : hold.records) {
      r.Headers(&headers);
      st = producer->ProduceNow(r.topic, r.partition, r.key(), r.value(), headers, r.timestamp_ms);
      if (!st.ok()) break;  // recorded as the producer's failure: the job stops
    }
  }
  if (hold.records.capacity() > 4096) {
    std::vector<Copy>().swap(hold.records);
  } else {
    hold.records.clear();
  }
  hold.bytes = 0;
  hold.holding.store(false, std::memory_order_release);
  hold.cv.notify_all();
  return st;
}

KafkaProducer::CommitWait KafkaProducer::CommitTransactionLater(rd_kafka_s* consumer, PartitionList offsets,
                                                                int timeout_ms) {
  if (!transactional_) {
    return [](bool*, bool*) {
      return Status::FailedPrecondition("CommitTransactionLater on a producer without transactional.id");
    };
  }
  SendLater();  // into this transaction
  {
    // One commit at a time: the previous one's held records go in first.
    std::unique_lock<std::mutex> lock(hold_->mu);
    hold_->cv.wait(lock, [&] { return !hold_->holding.load(std::memory_order_relaxed); });
    hold_->holding.store(true, std::memory_order_release);
  }
  std::shared_ptr<rd_kafka_consumer_group_metadata_t> group(
      offsets.size() > 0 ? rd_kafka_consumer_group_metadata(consumer) : nullptr,
      [](rd_kafka_consumer_group_metadata_t* g) {
        if (g) rd_kafka_consumer_group_metadata_destroy(g);
      });
  // Ends the hold, dropping what it holds, if the commit never runs (the
  // state's writer already failed): producers never wait for it forever.
  struct Pending {
    std::shared_ptr<Epochs> epochs;
    std::shared_ptr<Hold> hold;
    bool ran = false;
    ~Pending() {
      if (ran) return;
      {
        std::lock_guard<std::mutex> lock(epochs->mu);
        if (epochs->producer) {
          epochs->producer->RecordFailure(
              Status::Aborted("a transaction was left uncommitted: its checkpoint was not taken"));
        }
      }
      (void)EndHold(*hold, nullptr, false);
    }
  };
  auto pending = std::make_shared<Pending>();
  pending->epochs = epochs_;
  pending->hold = hold_;
  auto list = std::make_shared<PartitionList>(std::move(offsets));
  return [pending, group, list, timeout_ms](bool* fenced, bool* producer_failed) -> Status {
    pending->ran = true;
    std::lock_guard<std::mutex> lock(pending->epochs->mu);
    KafkaProducer* p = pending->epochs->producer;
    if (p == nullptr) {
      (void)EndHold(*pending->hold, nullptr, false);
      return Status::Unavailable("the producer was closed before its transaction was committed");
    }
    Status st = p->failed() ? p->failure() : p->CommitOpenTransaction(group.get(), *list, timeout_ms);
    // A delivery that failed meanwhile (its report served on another
    // thread) says more than the transaction step that failed after it.
    if (!st.ok() && p->failed()) st = p->failure();
    if (producer_failed) *producer_failed = !st.ok() && p->failed();
    if (st.ok()) {
      st = EndHold(*pending->hold, p, true);
    } else {
      p->RecordFailure(st);
      (void)EndHold(*pending->hold, p, false);
    }
    if (fenced) *fenced = p->fenced();
    return st;
  };
}

Status KafkaProducer::CommitOpenTransaction(const rd_kafka_consumer_group_metadata_s* group,
                                            const PartitionList& offsets, int timeout_ms) {
  if (failed()) return failure();
  rd_kafka_t* rk = producer_.get();
  // Each call waits in slices of at most a second and is retried while its
  // error is retriable (a timeout is), so that a stop request is seen.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  auto in_slices = [&](auto call) -> rd_kafka_error_t* {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::min(deadline, stop_deadline) - std::chrono::steady_clock::now())
                            .count();
      rd_kafka_error_t* e = call(static_cast<int>(std::clamp<int64_t>(left, 1, 1000)));
      if (!e || !rd_kafka_error_is_retriable(e) || PastDeadline(deadline, &stop_deadline)) return e;
      rd_kafka_error_destroy(e);
    }
  };
  rd_kafka_error_t* error = nullptr;
  if (offsets.size() > 0) {
    error = in_slices([&](int ms) { return rd_kafka_send_offsets_to_transaction(rk, offsets.get(), group, ms); });
  }
  last_commit_error_ = 0;
  last_commit_aborted_ = false;
  // commit_transaction is never called twice for one transaction: when a
  // call times out while its EndTxn is pending and is called again to
  // resume, librdkafka (2.0.2 and later) can hand each step of the resumed
  // call the result of the step before, so begin_transaction returned
  // before the new transaction was open and the next record was refused
  // (_STATE) in CI. The records are flushed here first, in slices that see
  // a stop; commit_transaction, left with the EndTxn round trip, gets what
  // remains of the deadline (or of the stop bound) in one call (a stop
  // arriving during that round trip waits for it).
  if (!error) {
    // A failed delivery is not waited out here: commit_transaction
    // reports it, and the transaction is aborted below.
    Status drained = DrainQueue(deadline, &stop_deadline, timeout_ms, /*stop_at_failure=*/false);
    if (!drained.ok()) {
      last_commit_error_ = RD_KAFKA_RESP_ERR__TIMED_OUT;
      return Status::Unavailable("Kafka transaction not committed: " + drained.message());
    }
    (void)PastDeadline(deadline, &stop_deadline);  // a stop already requested bounds this call too
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::min(deadline, stop_deadline) - std::chrono::steady_clock::now())
                          .count();
    ++commit_calls_;
    error = rd_kafka_commit_transaction(rk, static_cast<int>(std::clamp<int64_t>(left, 1000, INT32_MAX)));
  }
  if (error) {
    Status st = StatusFromKafkaError(error, "Kafka transaction failed");
    last_commit_error_ = rd_kafka_error_code(error);
    if (rd_kafka_error_txn_requires_abort(error)) {
      const int abort_ms = stop_.stop_requested() ? 1000 : 30000;
      if (rd_kafka_error_t* abort_error = rd_kafka_abort_transaction(rk, abort_ms)) {
        rd_kafka_error_destroy(abort_error);
      } else if (rd_kafka_error_t* begin_error = rd_kafka_begin_transaction(rk)) {
        rd_kafka_error_destroy(begin_error);
      } else {
        MarkTransactionBegun();
        last_commit_aborted_ = true;  // nothing of the epoch is visible; the next one is open
      }
    }
    rd_kafka_error_destroy(error);
    // A failed delivery puts the transaction in an abortable state, and the
    // step after it fails for that: send_offsets with _STATE, commit with
    // _INCONSISTENT ("N message(s) failed delivery"), naming neither the
    // topic nor the cause (a bug bash: an output over the topic's
    // max.message.bytes, a topic the broker would not create). The first
    // failed delivery is that: its report, queued by now (the abort waited
    // for every record), is served here unless another thread serves
    // reports right now, and it wins over the transaction's error.
    {
      std::unique_lock<std::mutex> polling(poll_mutex_, std::try_to_lock);
      if (polling.owns_lock()) rd_kafka_poll(rk, 0);
    }
    if (failed()) return failure();
    return st;
  }
  if (failed()) return failure();
  if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk)) {
    Status st = StatusFromKafkaError(e, "cannot begin a Kafka transaction");
    rd_kafka_error_destroy(e);
    return st;
  }
  MarkTransactionBegun();
  return Status::OK();
}

std::vector<std::string> KafkaProducer::WarmUp(const std::vector<std::string>& topics, int timeout_ms,
                                              int creation_wait_ms) const {
  rd_kafka_t* rk = producer_.get();
  std::vector<std::string> missing;
  // A KRaft broker that creates topics on first use answers the request
  // that makes it create one with UNKNOWN_TOPIC_OR_PART too (Kafka 4.1):
  // only a topic still unknown after a while is one it will not create.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(creation_wait_ms);
  for (const std::string& t : topics) {
    if (t.empty()) continue;
    rd_kafka_topic_t* topic = rd_kafka_topic_new(rk, t.c_str(), nullptr);
    for (;;) {
      const rd_kafka_metadata_t* md = nullptr;
      bool unknown = false;
      if (rd_kafka_metadata(rk, 0, topic, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < md->topic_cnt; ++i) {
          if (t == md->topics[i].topic) unknown = md->topics[i].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        }
        rd_kafka_metadata_destroy(md);
      }
      if (!unknown) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        missing.push_back(t);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    rd_kafka_topic_destroy(topic);
  }
  return missing;
}

}  // namespace kappa
