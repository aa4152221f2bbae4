// PartitionConsumer: reads topic partitions that the caller assigns at exact
// offsets (no group rebalancing, no auto-commit, never an automatic offset
// reset), in offset order per partition. The one consume loop of kappa: the
// job's Kafka source and the archiver both read through it, so a Kafka error
// is classified in one place: an offset out of range (retention deleted
// records the reader still needed) is DataLoss, a fatal error or a vanished
// topic stops with Unavailable, anything else is transient, reported through
// `on_transient` and retried by librdkafka. One thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_config.h"
#include "kafka/partition_list.h"

struct rd_kafka_message_s;
struct rd_kafka_queue_s;
struct rd_kafka_topic_partition_list_s;

namespace kappa {

// Group membership (Subscribe): what the group gives this consumer and takes
// away. `partitions` of the subscribed topic; on kAssign the handler fills
// *offsets (one per partition, the offset to read from) before the consumer
// starts reading them; on kRevoke the consumer stops reading them once the
// handler returns (cooperative revoke: the handler checkpoints them first;
// `offsets` is null then, as on kLost);
// kLost: the group already gave them to another member (this one missed its
// session): nothing may be committed for them any more. An error from the
// handler ends the next Poll with it.
enum class RebalanceEvent { kAssign, kRevoke, kLost };
using RebalanceHandler =
    std::function<Status(RebalanceEvent event, const std::vector<int32_t>& partitions, std::vector<int64_t>* offsets)>;

struct PartitionConsumerOptions {
  std::string group;          // group.id (assign mode: commits only; Subscribe: the group joined)
  // Subscribe only: how soon the group gives a silent member's partitions to
  // the others (session.timeout.ms).
  int session_timeout_ms = 10000;
  // Made for Subscribe (group membership, cooperative-sticky); otherwise Assign.
  bool group_member = false;
  int fetch_wait_max_ms = 20;
  // Keep fetching while a replay drains the local queue: at librdkafka 2.0's
  // defaults it stops fetching when the queue is full and looks again only
  // up to a second later (measured: 3x slower replays).
  int queued_min_messages = 1000000;
  int queued_max_kbytes = 262144;
  int metadata_timeout_ms = 10000;
  // Called with a one-line description of each transient error (the consumer
  // keeps going), including librdkafka's client errors (a broker that is
  // unreachable, all brokers down), those at most once per kind every
  // 10 s. Called on the thread that calls Poll. Null: ignored.
  std::function<void(const std::string&)> on_transient;
  // A partition whose log start passed the reader's position (retention
  // deleted records it had not read yet) no longer ends Poll with DataLoss:
  // Poll goes on with the other partitions and TakeDeleted() lists it
  // (librdkafka stops fetching it). For a reader that can hold one
  // partition back and carry on with the rest (the archiver).
  bool hold_deleted = false;
  // Records of open and aborted transactions too (isolation.level
  // read_uncommitted): a read that must not wait behind a transaction left
  // open by a killed writer until the broker or its successor aborts it.
  bool read_uncommitted = false;
  // How long the destructor waits for librdkafka's consumer close before
  // destroying the handle without it (a broker that is gone never answers).
  int close_timeout_ms = 2000;
};

// Records of a partition deleted before the reader got them (see
// PartitionConsumerOptions::hold_deleted): from the reader's position to
// log_start-1.
struct DeletedRange {
  std::string topic;
  int32_t partition = 0;
  int64_t log_start = 0;  // where the log starts now
  std::string message;    // the DataLoss text Poll would have returned
};

// Messages taken by one Poll(); owned until the next Poll() or destruction.
class MessageBatch {
 public:
  MessageBatch() = default;
  ~MessageBatch() { Clear(); }
  MessageBatch(const MessageBatch&) = delete;
  MessageBatch& operator=(const MessageBatch&) = delete;
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  rd_kafka_message_s* operator[](size_t i) const { return messages_[i]; }
  void Clear();

 private:
  friend class PartitionConsumer;
  std::vector<rd_kafka_message_s*> messages_;
  size_t count_ = 0;
};

class PartitionConsumer {
 public:
  static Result<std::unique_ptr<PartitionConsumer>> Create(const KafkaConfig& config,
                                                           PartitionConsumerOptions options);
  // Closes the consumer, waiting at most close_timeout_ms for a broker that
  // is gone and kConsumerDestroyTimeoutMs for librdkafka's destroy (past
  // that, says so through on_transient and leaves it to the process's exit).
  ~PartitionConsumer();

  // Partition count of a topic (NotFound if it does not exist) and every
  // partition's log start/end offsets.
  Result<int32_t> PartitionCount(const std::string& topic) const;
  Result<std::vector<Watermarks>> AllWatermarks(const std::string& topic, int32_t partitions) const;
  // Both: every partition's watermarks, the count asked first (NotFound: no such topic).
  Result<std::vector<Watermarks>> TopicWatermarks(const std::string& topic) const;
  Result<Watermarks> PartitionWatermarks(const std::string& topic, int32_t partition) const;
  // The latest log end this consumer has seen for topic[partition], from its
  // cached fetch state (no request); 0 if unknown.
  int64_t CachedLogEnd(const std::string& topic, int32_t partition) const;
  // Since when (wall clock ms) every broker has been unreachable as far as
  // this consumer knows: librdkafka reported all brokers down, and no
  // request has been answered since. 0: reachable. While it is set, the log
  // ends above are the last ones seen, so a lag computed from them is a
  // lower bound, not a measurement. Poll clears it once a broker answers
  // again (it asks, at most once a second, while the flag is set).
  int64_t UnreachableSinceMs() const { return unreachable_since_ms_; }
  // Why, when librdkafka's log named it (a refused SASL login, a failed TLS
  // handshake: credentials revoked or a listener changed under a running
  // job): "authentication with Kafka fails: <librdkafka's reason>"; empty
  // while reachable, for a broker that is just away, and for librdkafka's
  // guesses about security.protocol (a broker going away gives those too).
  std::string UnreachableReason() const;
  // The first offset whose timestamp is >= timestamp_ms, or -1 if none yet.
  Result<int64_t> OffsetForTime(const std::string& topic, int32_t partition, int64_t timestamp_ms) const;

  // Starts reading each listed partition at its offset (replaces any earlier
  // assignment).
  Status Assign(const PartitionList& assignment);
  // Joins the consumer group `group` for `topic` (cooperative-sticky
  // assignment: a rebalance moves only the partitions that must move) and
  // reads what the group assigns, through `handler`, which runs inside Poll
  // on the polling thread. Instead of Assign, never both.
  Status Subscribe(const std::string& topic, RebalanceHandler handler);
  // Moves the listed partitions' read positions (they stay assigned).
  Status Seek(const PartitionList& positions);
  // A group member (Subscribe): stops fetching every assigned partition,
  // and those the group assigns later, until PauseFetching(false); Poll
  // then returns no records but still serves the group's rebalances, so
  // that a member paused for longer than max.poll.interval.ms stays in the
  // group and a dead member's partitions still move to it. librdkafka drops
  // what it had fetched, and a partition assigned but not yet read resumes
  // where its fetch had got to, past what was dropped: the caller seeks
  // each partition to its own position after resuming.
  Status PauseFetching(bool pause);
  bool fetching_paused() const { return fetching_paused_; }
  // Partitions the group assigned to this consumer (Subscribe), sorted.
  const std::vector<int32_t>& assigned() const { return assigned_; }
  // Whether the group has assigned this member anything yet (even nothing).
  bool joined() const { return joined_; }
  // Takes up to `max` messages that are already fetched without waiting;
  // when there are none, waits up to wait_ms for the first. Error messages
  // never reach `batch`: they either end the poll with a Status or are
  // reported as transient.
  Status Poll(int max, int wait_ms, MessageBatch* batch);
  // With hold_deleted: the partitions Poll found deleted past the reader's
  // position since the last call (each once).
  std::vector<DeletedRange> TakeDeleted() { return std::exchange(deleted_, {}); }
  // Fills each listed partition's offset with the consumer's position (the
  // next offset it will return; it passes transaction markers that never
  // arrive as messages).
  Status Positions(PartitionList* partitions) const;
  // The group's committed offsets (with their metadata) for the listed partitions.
  Status Committed(PartitionList* partitions, int timeout_ms) const;
  // Commits offsets to the group without waiting (informational commits: a
  // synchronous commit to a coordinator that is gone could block the close).
  void CommitAsync(const PartitionList& offsets);

  rd_kafka_s* handle() const { return consumer_.get(); }

 private:
  PartitionConsumer() = default;
  // *deleted (if given) is filled when the error is records deleted past the
  // reader's position (its topic is set then).
  Status Classify(rd_kafka_message_s* message, DeletedRange* deleted = nullptr);
  static void OnClientError(rd_kafka_s* rk, int err, const char* reason, void* opaque);
  static void OnRebalance(rd_kafka_s* rk, int err, rd_kafka_topic_partition_list_s* partitions, void* opaque);
  Status HandleRebalance(int err, rd_kafka_topic_partition_list_s* partitions);
  // While unreachable: a short metadata request, at most once a second.
  void ProbeBroker();

  PartitionConsumerOptions options_;
  KafkaHandle consumer_;
  rd_kafka_queue_s* queue_ = nullptr;
  std::unique_ptr<ClientErrorNotes> error_notes_;
  std::string topic_;              // Subscribe
  RebalanceHandler rebalance_;     // Subscribe
  std::vector<int32_t> assigned_;  // Subscribe
  bool joined_ = false;
  bool fetching_paused_ = false;   // PauseFetching
  Status rebalance_error_;         // returned by the next Poll
  std::vector<DeletedRange> deleted_;  // hold_deleted: for TakeDeleted
  int64_t unreachable_since_ms_ = 0;  // see UnreachableSinceMs; set and cleared on the polling thread
  int64_t last_probe_ms_ = 0;         // steady clock
};

// One record ReadRecordsAt asks for, and what Kafka holds there.
struct RecordAtOffset {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  // kRecord: the record at `offset` (below). kNone: nothing stands there to
  // compare (retention deleted it, or the first record read is at a higher
  // offset: compaction, an aborted transaction, a marker). kUnread: not read
  // within the wait.
  enum class Found { kUnread, kRecord, kNone } found = Found::kUnread;
  bool deleted = false;  // kNone because retention deleted the offset (else: no record stands there)
  std::string key, value;
  bool key_null = false, value_null = false;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value; in the record's order
};
// Reads the record at each asked offset (a restore's or the archiver's
// check that Kafka still holds the log it continues) with one short-lived
// read_committed consumer of `group`, for at most wait_ms. An error creating
// or assigning the consumer is returned; a failed poll ends the wait, the
// rest staying kUnread, with its text in *poll_error.
Status ReadRecordsAt(const KafkaConfig& config, const std::string& group, std::vector<RecordAtOffset>* asks,
                     int wait_ms, std::string* poll_error, bool read_uncommitted = false);

}  // namespace kappa
