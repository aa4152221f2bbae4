// The one way kappa makes a Kafka producer. CreateProducer turns a
// KafkaConfig plus ProducerOptions (idempotence, acks, linger, batching,
// timeouts, transactional id, callbacks) into a librdkafka handle, so every
// producer sets its properties in one place; the user's -X properties still
// win. KafkaProducer is the transport on top of it: produce with headers,
// delivery-report failure tracking, Flush(timeout) that returns the first
// failure (naming the topic), fatal-error handling and, for a transactional
// producer, one transaction per epoch that also carries a consumer group's
// offsets. It knows plain values only (topic, partition, key, value,
// headers), nothing of jobs or operators.
//
// Thread-safety: Produce may be called from one thread at a time (callers
// serialize); failed()/failure() from any thread; delivery reports arrive on
// the thread that calls Poll/Flush.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/stop_token.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_config.h"

struct rd_kafka_message_s;
struct rd_kafka_topic_s;
struct rd_kafka_consumer_group_metadata_s;

namespace kappa {

class PartitionList;

struct ProducerOptions {
  bool idempotent = true;            // enable.idempotence
  std::string acks = "all";          // acks
  int linger_ms = 5;                 // linger.ms
  int batch_num_messages = 0;        // batch.num.messages; 0: librdkafka's default
  int queue_buffering_max_messages = 0;  // 0: librdkafka's default
  int retry_backoff_ms = 0;          // retry.backoff.ms; 0: librdkafka's default
  int message_timeout_ms = 120000;   // message.timeout.ms: give up on a record after this
  // Non-empty: a transactional producer with this transactional.id (a second
  // live producer with the same id fences the first). The transaction must
  // outlive message.timeout.ms.
  std::string transactional_id;
  int transaction_timeout_ms = 150000;
  // librdkafka callbacks, both given `opaque`. Only for CreateProducer;
  // KafkaProducer installs its own.
  void (*on_delivery)(rd_kafka_s*, const rd_kafka_message_s*, void*) = nullptr;
  void (*on_error)(rd_kafka_s*, int, const char*, void*) = nullptr;
  void* opaque = nullptr;
  // KafkaProducer only: one-line warnings about non-fatal client errors (a
  // broker unreachable, all brokers down), at most one per kind every 10 s,
  // named after `client` (e.g. "sink producer"). Called on the thread that
  // polls or flushes. Null: ignored.
  std::function<void(const std::string&)> on_warning;
  std::string client = "producer";
};

// The settings of every producer that writes many records it must not lose
// (a job's sink, the generators): idempotent, acks=all, batches of 10,000,
// a deep local queue. Callers tune linger and timeouts on top.
ProducerOptions BulkProducerOptions();

// A producer handle; InvalidArgument for a missing bootstrap address or a bad
// property. Transactions are not initialised (KafkaProducer::Create does).
Result<KafkaHandle> CreateProducer(const KafkaConfig& config, const ProducerOptions& options);

// One record header; both views must stay valid for the Produce call only.
struct KafkaHeader {
  std::string_view name;
  std::string_view value;
};

class KafkaProducer {
 public:
  // Creates the producer; a transactional one also initialises transactions
  // and opens the first transaction.
  static Result<std::unique_ptr<KafkaProducer>> Create(const KafkaConfig& config, ProducerOptions options);
  ~KafkaProducer();
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  static constexpr int32_t kAnyPartition = -1;  // RD_KAFKA_PARTITION_UA: the partitioner picks

  // Queues one record (key, value and headers are copied). Waits while the
  // local queue is full. An error (also recorded as the failure) only if
  // librdkafka refuses the record outright; delivery failures surface in
  // failed()/Flush(). timestamp_ms 0: librdkafka stamps the current time.
  // While a CommitTransactionLater commit is under way the record is held
  // (copied) for the next transaction instead; past 256 MiB held, Produce
  // waits for the commit (back-pressure, as with a full local queue).
  Status Produce(const std::string& topic, int32_t partition, std::string_view key, std::string_view value,
                 std::span<const KafkaHeader> headers = {}, int64_t timestamp_ms = 0);

  // Keeps a copy of the record (any partition, stamped when it is produced)
  // and produces it at the next Poll or barrier (Flush, CloseEpoch,
  // CommitTransaction, CommitTransactionLater: into the epoch or
  // transaction they close), or once kLaterBatch records or kLaterBatchBytes
  // wait; in the order they came. For sparse records beside a stream (a
  // job's DLQ and late records): each one produced at once found its
  // partition's queue empty and woke librdkafka's broker thread for itself
  // (a write() and a cross-core wake-up). A refusal is recorded as the
  // failure (failed()). Any thread.
  void ProduceLater(const std::string& topic, std::string_view key, std::string_view value,
                    std::span<const KafkaHeader> headers = {});
  static constexpr size_t kLaterBatch = 512;
  static constexpr size_t kLaterBatchBytes = size_t{4} << 20;

  // Waits until every queued record is acknowledged. The first failure if
  // any delivery failed (or a fatal error happened); Unavailable if records
  // are still unacknowledged after timeout_ms, or kStopBoundMs after a stop
  // was requested (SetStopToken): a stopping process does not wait for a
  // broker that may never answer.
  Status Flush(int timeout_ms);
  // Epochs: every record Produce accepts belongs to the open epoch, so that a
  // checkpoint can wait for the acknowledgements of the records before it
  // while later records are produced (at-least-once without stalling).
  // CloseEpoch closes the open epoch (records produced from now on belong
  // to the next) and returns what waits until every record of it and of the
  // epochs before is settled: OK once all are acknowledged, the producer's
  // failure if any delivery failed, Unavailable after timeout_ms (or
  // kStopBoundMs after a stop) or once the producer is destroyed. The wait
  // serves delivery reports itself and may run on another thread, also
  // after the producer is gone. Its argument (if not null) is set to whether
  // the error is the producer's recorded failure (failure()) rather than the
  // wait giving up. Call CloseEpoch from one thread while no other thread
  // produces.
  using EpochWait = std::function<Status(bool* producer_failed)>;
  EpochWait CloseEpoch(int timeout_ms);
  // After `stop` is requested, Flush and CommitTransaction give up within
  // kStopBoundMs, and the destructor drops what is still unacknowledged.
  void SetStopToken(StopToken stop) { stop_ = stop; }
  static constexpr int kStopBoundMs = 4000;
  // Produces ProduceLater's records, then serves delivery reports; waits at
  // most timeout_ms. Returns at once if an epoch's wait (CloseEpoch) is
  // serving them on another thread.
  void Poll(int timeout_ms = 0);
  // Records queued and not yet acknowledged.
  int InFlight() const;

  bool transactional() const { return transactional_; }
  // Transactional only: sends `offsets` (with their metadata) to the group of
  // `consumer` inside the open transaction, commits it (which flushes every
  // record first) and opens the next one. On error the transaction is
  // aborted where librdkafka allows it, so nothing of this epoch is visible.
  // After an abortable failure the next transaction is begun, so the
  // producer can go on (last_commit_error() says what failed). A failed
  // delivery is returned as the error (failure()), not the transaction
  // step it made fail.
  Status CommitTransaction(rd_kafka_s* consumer, const PartitionList& offsets, int timeout_ms = 150000);
  // The rd_kafka_resp_err_t of the last failed CommitTransaction (0: it
  // succeeded), and whether that transaction was aborted and a new one begun.
  int last_commit_error() const { return last_commit_error_; }
  bool last_commit_aborted() const { return last_commit_aborted_; }
  // How many times librdkafka's commit_transaction was called (tests: a
  // slow commit is waited for, never resumed).
  int commit_calls() const { return commit_calls_; }
  // Transactional, without stalling the caller on the commit (exactly-once
  // checkpoints of a job outside a consumer group's rebalances): closes the
  // open transaction to new records, which Produce holds in memory from
  // now on, and returns what commits it as CommitTransaction does, with
  // `offsets` sent to the group of `consumer` (its metadata taken now), then
  // begins the next transaction and produces the held records into it, in
  // the order they came, before any record produced after them. The commit
  // may run on another thread (the state backend's writer, before it
  // writes the checkpoint); its first argument (if not null) is set to
  // whether another producer with the same transactional.id fenced this
  // one, its second to whether the error is the producer's recorded failure
  // (failure(): a failed delivery, which wins over the error of the
  // transaction step it made fail, a refused record, a fatal error). If the
  // commit fails, or the returned function is dropped without running, the
  // held records are dropped and the failure is recorded (failed()): the
  // caller stops with its last checkpoint. Waits first until the previous
  // such commit has handed its held records over: one at a time. Call from
  // one thread while no other thread produces.
  using CommitWait = std::function<Status(bool* fenced, bool* producer_failed)>;
  CommitWait CommitTransactionLater(rd_kafka_s* consumer, PartitionList offsets, int timeout_ms = 150000);
  // Whether this producer's fatal error says another producer with its
  // transactional.id fenced it.
  bool fenced() const;
  // How long the open transaction has been open (since its
  // begin_transaction), and the transaction.timeout.ms this producer runs
  // with: a transaction open longer is aborted by the broker, which then
  // fences the producer as a second one would.
  int64_t transaction_open_ms() const;
  int transaction_timeout_ms() const { return transaction_timeout_ms_; }
  // Records held by an open CommitTransactionLater (tests).
  size_t held() const;
  // Waits until no commit holds records back (they are then in the open
  // transaction): for the crash tests' "mid-transaction" kill point.
  void WaitUntilNotHolding() const;
  // The same within timeout_ms: whether no commit holds records now.
  bool WaitUntilNotHoldingFor(int timeout_ms) const;
  // The bytes held past which Produce waits for the commit (default 256 MiB).
  void SetHoldLimitForTesting(size_t bytes);

  // message.max.bytes: the largest record this producer accepts. A record
  // over it is refused by Produce (MSG_SIZE_TOO_LARGE) and fails the producer.
  size_t max_message_bytes() const { return max_message_bytes_; }
  // An upper bound of the size librdkafka counts against message.max.bytes
  // for one record (key, value, headers and the record's framing).
  static size_t RecordSize(size_t key_size, size_t value_size, std::span<const KafkaHeader> headers);

  // Fetches the metadata (leaders) of `topics` now rather than at the first
  // flush; asking for a topic lets a broker that creates topics on first
  // use create it. Returns those the broker still says do not exist
  // (UNKNOWN_TOPIC_OR_PART) creation_wait_ms after the first request: it
  // does not create topics. Other failures (no broker answers) are not
  // reported: they surface at the first flush.
  std::vector<std::string> WarmUp(const std::vector<std::string>& topics, int timeout_ms = 5000,
                                  int creation_wait_ms = 10000) const;

  // First delivery, produce or fatal error seen, if any (cheap: hot path).
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  // That failure, e.g. "delivery to out[3] failed: ERR_MSG_SIZE_TOO_LARGE: ...";
  // OK if none.
  Status failure() const;
  // Records whose delivery failed.
  uint64_t failed_count() const { return failed_count_.load(std::memory_order_relaxed); }
  // Since when (wall clock ms) librdkafka has said all brokers are down for
  // this producer, with no delivery acknowledged since; 0: reachable. Seen
  // from any thread: a job whose checkpoint waits for this producer's acks
  // polls no consumer, so the consumer's own flag may never be raised.
  int64_t UnreachableSinceMs() const { return unreachable_since_ms_.load(std::memory_order_relaxed); }
  // Records accepted by Produce.
  int64_t produced() const { return produced_.load(std::memory_order_relaxed); }
  rd_kafka_s* handle() const { return producer_.get(); }

 private:
  KafkaProducer() = default;
  static void OnDeliveryReport(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque);
  static void OnClientError(rd_kafka_s* rk, int err, const char* reason, void* opaque);
  void RecordFailure(Status status);
  // The deadline of a blocking call of timeout_ms begun now: earlier once a
  // stop is requested.
  bool PastDeadline(std::chrono::steady_clock::time_point deadline,
                    std::chrono::steady_clock::time_point* stop_deadline) const;

  // Serves delivery reports until librdkafka's queue is empty, in 100 ms
  // slices. Unavailable (how many records are left) once `deadline` passes
  // or kStopBoundMs after a stop request; with stop_at_failure, the
  // producer's failure as soon as a delivery fails. Flush and the
  // transaction's commit share it.
  Status DrainQueue(std::chrono::steady_clock::time_point deadline,
                    std::chrono::steady_clock::time_point* stop_deadline, int timeout_ms, bool stop_at_failure);
  // The body of CommitTransaction, with the group's metadata given.
  // `group` may be null when `offsets` is empty.
  Status CommitOpenTransaction(const rd_kafka_consumer_group_metadata_s* group, const PartitionList& offsets,
                               int timeout_ms);
  // Hands `value` etc. to librdkafka now (Produce past the hold check).
  Status ProduceNow(const std::string& topic, int32_t partition, std::string_view key, std::string_view value,
                    std::span<const KafkaHeader> headers, int64_t timestamp_ms);
  struct Copy;
  struct Hold;
  struct Later;
  // Produces ProduceLater's records now; SendLaterLocked does it with
  // later_->mu already held.
  void SendLater();
  void SendLaterLocked();
  // Ends the hold: produces the held records (produce) or drops them, and
  // wakes producers waiting for it. Holds hold_->mu while it produces.
  static Status EndHold(Hold& hold, KafkaProducer* producer, bool produce);

  struct Epochs;
  // Waits for epochs up to `epoch` (CloseEpoch's waiter).
  static Status WaitForEpoch(const std::shared_ptr<Epochs>& epochs, int64_t epoch, int timeout_ms,
                             bool* producer_failed);

  // librdkafka's handle of `topic`, made at its first record and kept:
  // rd_kafka_producev given a topic's name looks it up under the client's
  // write lock, which its broker threads take for reading all the time
  // (1.6% of an archive replay's worker in pthread_rwlock_*). Null if
  // librdkafka refuses the name (ProduceNow then fails with its error).
  // Lock-free once made: a list that only grows, read by workers producing
  // at once.
  rd_kafka_topic_s* TopicHandle(const std::string& topic);
  struct Topic {
    std::string name;
    rd_kafka_topic_s* handle;
    Topic* next;
  };
  std::atomic<Topic*> topics_{nullptr};
  std::mutex topics_mutex_;  // making a handle

  KafkaHandle producer_;
  std::shared_ptr<Epochs> epochs_;  // shared with the waiters CloseEpoch hands out
  std::shared_ptr<Hold> hold_;      // shared with the commits CommitTransactionLater hands out
  std::unique_ptr<Later> later_;   // ProduceLater's records
  std::unique_ptr<ClientErrorNotes> error_notes_;
  StopToken stop_;
  size_t max_message_bytes_ = 1000000;
  bool transactional_ = false;
  int last_commit_error_ = 0;
  bool last_commit_aborted_ = false;
  int commit_calls_ = 0;
  int transaction_timeout_ms_ = 0;
  std::atomic<int64_t> transaction_began_ms_{0};  // steady clock; 0: none open
  void MarkTransactionBegun();
  std::atomic<int64_t> produced_{0};  // Produce is called from several workers at once
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> failed_count_{0};
  std::atomic<int64_t> unreachable_since_ms_{0};  // see UnreachableSinceMs
  mutable std::mutex failure_mutex_;
  mutable std::mutex poll_mutex_;  // Poll and an epoch's waiter take turns serving callbacks
  Status failure_;
};

}  // namespace kappa
