#include "kafka/partition_consumer.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/stop_token.h"
#include "kafka/kafka_status.h"

namespace kappa {

void MessageBatch::Clear() {
  for (size_t i = 0; i < count_; ++i) rd_kafka_message_destroy(messages_[i]);
  count_ = 0;
}

Result<std::unique_ptr<PartitionConsumer>> PartitionConsumer::Create(const KafkaConfig& config,
                                                                     PartitionConsumerOptions options) {
  std::unique_ptr<PartitionConsumer> c(new PartitionConsumer());
  if (options.on_transient) {
    c->error_notes_ = std::make_unique<ClientErrorNotes>("source consumer", options.on_transient);
  }
  std::vector<std::pair<std::string, std::string>> defaults = {{"group.id", options.group},
                                {"enable.auto.commit", "false"},
                                {"enable.auto.offset.store", "false"},
                                // Never jump silently: a missing offset is an error we report.
                                {"auto.offset.reset", "error"},
                                {"enable.partition.eof", "false"},
                                {"queued.min.messages", std::to_string(options.queued_min_messages)},
                                {"queued.max.messages.kbytes", std::to_string(options.queued_max_kbytes)},
                                {"fetch.wait.max.ms", std::to_string(options.fetch_wait_max_ms)}};
  std::function<void(rd_kafka_conf_t*)> configure;
  if (options.group_member) {
    defaults.emplace_back("partition.assignment.strategy", "cooperative-sticky");
    defaults.emplace_back("session.timeout.ms", std::to_string(options.session_timeout_ms));
    defaults.emplace_back("heartbeat.interval.ms", std::to_string(std::max(100, options.session_timeout_ms / 5)));
    configure = [](rd_kafka_conf_t* conf) {
      rd_kafka_conf_set_rebalance_cb(conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                              rd_kafka_topic_partition_list_t* partitions, void* opaque) {
        PartitionConsumer::OnRebalance(rk, err, partitions, opaque);
      });
    };
  }
  if (options.read_uncommitted) {
    // After the user's properties, as configure runs: an isolation.level
    // among them must not turn this back.
    configure = [then = std::move(configure)](rd_kafka_conf_t* conf) {
      if (then) then(conf);
      char errstr[256];
      rd_kafka_conf_set(conf, "isolation.level", "read_uncommitted", errstr, sizeof(errstr));
    };
  }
  auto consumer = CreateClient(ClientKind::kConsumer, config, defaults, &PartitionConsumer::OnClientError, c.get(),
                               configure);
  if (!consumer.ok()) return consumer.status();
  c->options_ = std::move(options);
  c->consumer_ = std::move(*consumer);
  c->queue_ = rd_kafka_queue_get_consumer(c->consumer_.get());
  return c;
}

PartitionConsumer::~PartitionConsumer() {
  if (queue_) rd_kafka_queue_destroy(queue_);
  // librdkafka before 2.3.0 (Debian's is 2.0.2) asserts in rd_kafka_destroy
  // for a cooperative-sticky member that joined its group but never got an
  // assignment: its assignor state is still null (librdkafka issue #4312,
  // fixed in 2.3.0). A scaled-out instance stopped during a rebalance died
  // with SIGABRT. Such a member is closed (it leaves the group) and not
  // destroyed: what it holds goes with the process.
  const bool never_assigned = !topic_.empty() && !joined_ && rd_kafka_version() < 0x020300ff;
  if (!CloseConsumer(consumer_, options_.close_timeout_ms, /*destroy=*/!never_assigned) && options_.on_transient) {
    options_.on_transient("the Kafka consumer's teardown (librdkafka's rd_kafka_destroy) did not finish within " +
                          std::to_string(kConsumerDestroyTimeoutMs / 1000) +
                          " s: not waiting for it; the process's exit ends it (librdkafka " +
                          std::string(rd_kafka_version_str()) +
                          " can wait there forever once a topic it read was deleted; nothing of the job is lost)");
  }
}

void PartitionConsumer::OnClientError(rd_kafka_t*, int err, const char* reason, void* opaque) {
  auto* self = static_cast<PartitionConsumer*>(opaque);
  // Served by rd_kafka_poll inside Poll, on the polling thread. One broker of
  // several going away is _TRANSPORT alone: the others still serve.
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && self->unreachable_since_ms_ == 0) {
    self->unreachable_since_ms_ = WallClockMs();
  }
  if (self->error_notes_) self->error_notes_->OnError(err, reason);
}

void PartitionConsumer::ProbeBroker() {
  const int64_t now = SteadyClock::Instance().NowMs();
  if (now - last_probe_ms_ < 1000) return;
  last_probe_ms_ = now;
  // Locally known topics only (all_topics=0): a small request any broker
  // answers; it fails within the timeout while none is up (then it costs
  // the polling thread 200 ms a second, while it can only drain the queue).
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(consumer_.get(), 0, nullptr, &md, 200) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_metadata_destroy(md);
    unreachable_since_ms_ = 0;
    ForgetKafkaClient(consumer_.get());  // what failed before is past
  }
}

std::string PartitionConsumer::UnreachableReason() const {
  if (unreachable_since_ms_ == 0) return {};
  const SecurityFailure f = LastSecurityFailure(consumer_.get());
  switch (f.kind) {
    case SecurityFailure::Kind::kAuthentication:
      return "authentication with Kafka fails: " + f.reason;
    case SecurityFailure::Kind::kTls:
      return "the TLS handshake with Kafka fails: " + f.reason;
    case SecurityFailure::Kind::kProtocol:  // a guess, which a broker that went away also gives
    case SecurityFailure::Kind::kNone:
      break;
  }
  return {};
}

Result<int32_t> PartitionConsumer::PartitionCount(const std::string& topic) const {
  return TopicPartitionCount(consumer_.get(), topic, options_.metadata_timeout_ms);
}

Result<std::vector<Watermarks>> PartitionConsumer::AllWatermarks(const std::string& topic, int32_t partitions) const {
  return QueryAllWatermarks(consumer_.get(), topic, partitions, options_.metadata_timeout_ms);
}

Result<std::vector<Watermarks>> PartitionConsumer::TopicWatermarks(const std::string& topic) const {
  return QueryTopicWatermarks(consumer_.get(), topic, options_.metadata_timeout_ms);
}

Result<Watermarks> PartitionConsumer::PartitionWatermarks(const std::string& topic, int32_t partition) const {
  return QueryWatermarks(consumer_.get(), topic, partition, options_.metadata_timeout_ms);
}

int64_t PartitionConsumer::CachedLogEnd(const std::string& topic, int32_t partition) const {
  int64_t low = 0, high = 0;
  if (rd_kafka_get_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low, &high)) return 0;
  return std::max<int64_t>(0, high);
}

Result<int64_t> PartitionConsumer::OffsetForTime(const std::string& topic, int32_t partition,
                                                 int64_t timestamp_ms) const {
  PartitionList query(1);
  query.Add(topic, partition, timestamp_ms);
  const rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(consumer_.get(), query.get(), options_.metadata_timeout_ms);
  if (err) {
    return StatusFromKafka(err, "cannot look up the offset of time " + std::to_string(timestamp_ms) + " in " +
                                    topic + "[" + std::to_string(partition) + "]");
  }
  if (query[0].err) {
    return StatusFromKafka(query[0].err, "cannot look up the offset of time " + std::to_string(timestamp_ms) +
                                             " in " + topic + "[" + std::to_string(partition) + "]");
  }
  return query[0].offset < 0 ? int64_t{-1} : query[0].offset;
}

Status PartitionConsumer::Assign(const PartitionList& assignment) {
  return StatusFromKafka(rd_kafka_assign(consumer_.get(), assignment.get()), "cannot assign partitions");
}

Status PartitionConsumer::Subscribe(const std::string& topic, RebalanceHandler handler) {
  if (!options_.group_member) {
    return Status::FailedPrecondition("PartitionConsumer::Subscribe on a consumer made for Assign (group_member unset)");
  }
  topic_ = topic;
  rebalance_ = std::move(handler);
  PartitionList topics(1);
  topics.Add(topic, RD_KAFKA_PARTITION_UA);
  return StatusFromKafka(rd_kafka_subscribe(consumer_.get(), topics.get()),
                         "cannot join consumer group " + options_.group + " for " + topic);
}

// rd_kafka_seek_partitions waits for every partition's broker thread to
// take its new position; librdkafka before 2.1.0 (Debian's is 2.0.2) waited
// timeout_ms microseconds for each (librdkafka #4230), so a 10 s wait gave
// up after 10 ms on a busy machine.
static int SeekTimeoutArgument(int timeout_ms) {
  return rd_kafka_version() < 0x02010000 ? timeout_ms * 1000 : timeout_ms;
}

Status PartitionConsumer::Seek(const PartitionList& positions) {
  if (positions.size() == 0) return Status::OK();
  constexpr int kSeekTimeoutMs = 10000;
  rd_kafka_error_t* e = rd_kafka_seek_partitions(consumer_.get(), positions.get(), SeekTimeoutArgument(kSeekTimeoutMs));
  if (e == nullptr) {
    for (int i = 0; i < positions.size(); ++i) {
      if (positions.error(i)) {
        return StatusFromKafka(static_cast<rd_kafka_resp_err_t>(positions.error(i)),
                               "cannot move the read position of partition " + std::to_string(positions.partition(i)));
      }
    }
    return Status::OK();
  }
  Status st = StatusFromKafkaError(e, "cannot move the read positions");
  rd_kafka_error_destroy(e);
  return st;
}

void PartitionConsumer::OnRebalance(rd_kafka_t*, int err, rd_kafka_topic_partition_list_t* partitions,
                                    void* opaque) {
  auto* self = static_cast<PartitionConsumer*>(opaque);
  Status st = self->HandleRebalance(err, partitions);
  if (!st.ok() && self->rebalance_error_.ok()) self->rebalance_error_ = std::move(st);
}

// Cooperative protocol: every callback is incremental. The handler runs
// first (restore, or checkpoint), then librdkafka is told; a failing
// handler still leaves librdkafka's assignment consistent (a failed assign
// is not taken, a revoke always is) and the error ends the next Poll.
Status PartitionConsumer::HandleRebalance(int err, rd_kafka_topic_partition_list_t* partitions) {
  rd_kafka_t* rk = consumer_.get();
  std::vector<int32_t> ids;
  for (int i = 0; i < partitions->cnt; ++i) {
    if (topic_ == partitions->elems[i].topic) ids.push_back(partitions->elems[i].partition);
  }
  std::sort(ids.begin(), ids.end());
  joined_ = true;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    std::vector<int64_t> offsets(ids.size(), RD_KAFKA_OFFSET_INVALID);
    Status st = rebalance_ && !ids.empty() ? rebalance_(RebalanceEvent::kAssign, ids, &offsets) : Status::OK();
    PartitionList start(static_cast<int>(ids.size()));
    if (st.ok()) {
      for (size_t i = 0; i < ids.size(); ++i) start.Add(topic_, ids[i], offsets[i]);
    }
    // An empty incremental assign still completes the rebalance.
    rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, start.get());
    if (e != nullptr) {
      Status failed = Status::Unavailable(std::string("cannot take the partitions group ") + options_.group +
                                          " assigned: " + rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      return failed;
    }
    if (st.ok()) {
      assigned_.insert(assigned_.end(), ids.begin(), ids.end());
      std::sort(assigned_.begin(), assigned_.end());
    }
    if (fetching_paused_ && start.size() > 0) {
      const rd_kafka_resp_err_t paused = rd_kafka_pause_partitions(rk, start.get());
      if (paused != RD_KAFKA_RESP_ERR_NO_ERROR && st.ok()) {
        st = StatusFromKafka(paused, "cannot pause the partitions group " + options_.group + " assigned");
      }
    }
    return st;
  }
  const bool lost = rd_kafka_assignment_lost(rk) != 0;
  Status st = rebalance_ && !ids.empty()
                  ? rebalance_(lost ? RebalanceEvent::kLost : RebalanceEvent::kRevoke, ids, nullptr)
                  : Status::OK();
  rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, partitions);
  if (e != nullptr) {
    if (st.ok()) st = Status::Unavailable(std::string("cannot give back partitions to group ") + options_.group + ": " +
                                          rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  std::erase_if(assigned_, [&](int32_t p) { return std::binary_search(ids.begin(), ids.end(), p); });
  return st;
}

Status PartitionConsumer::PauseFetching(bool pause) {
  if (pause == fetching_paused_) return Status::OK();
  rd_kafka_topic_partition_list_t* assignment = nullptr;
  KAPPA_RETURN_IF_ERROR(StatusFromKafka(rd_kafka_assignment(consumer_.get(), &assignment),
                                        "cannot read the consumer's assignment"));
  const rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(consumer_.get(), assignment)
                                        : rd_kafka_resume_partitions(consumer_.get(), assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  KAPPA_RETURN_IF_ERROR(StatusFromKafka(err, pause ? "cannot pause fetching" : "cannot resume fetching"));
  fetching_paused_ = pause;
  return Status::OK();
}

Status PartitionConsumer::Classify(rd_kafka_message_t* m, DeletedRange* deleted) {
  const std::string where = std::string(m->rkt ? rd_kafka_topic_name(m->rkt) : "?") + "[" +
                            std::to_string(m->partition) + "]";
  switch (m->err) {
    case RD_KAFKA_RESP_ERR__PARTITION_EOF:
      return Status::OK();
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET: {
      // Which side of the log it fell off says what happened (only here, on
      // the way to stopping: the question takes a round trip).
      int64_t low = -1, high = -1;
      const bool known = m->rkt != nullptr && m->offset >= 0 &&
                         rd_kafka_query_watermark_offsets(consumer_.get(), rd_kafka_topic_name(m->rkt), m->partition,
                                                          &low, &high, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR;
      if (known && m->offset < low) {
        Status loss = Status::DataLoss(where + ": records " + std::to_string(m->offset) + ".." +
                                       std::to_string(low - 1) +
                                       " were deleted (retention) while the reader was behind: the log now starts at " +
                                       std::to_string(low) + "; records would be skipped, so reading stops");
        if (deleted) {
          deleted->topic = rd_kafka_topic_name(m->rkt);
          deleted->partition = m->partition;
          deleted->log_start = low;
          deleted->message = loss.message();
        }
        return loss;
      }
      if (known && m->offset > high) {
        return Status::DataLoss(where + ": the reader is at offset " + std::to_string(m->offset) +
                                " but the log now ends at " + std::to_string(high) +
                                ": the topic was recreated or truncated; records would be skipped or read twice, so "
                                "reading stops");
      }
      return Status::DataLoss(where + ": the offset to read is out of range (" + MessageErrorText(m) +
                              (known ? "; the log holds " + std::to_string(low) + ".." + std::to_string(high) : "") +
                              "): records would be skipped, so reading stops");
    }
    case RD_KAFKA_RESP_ERR__FATAL: {
      // "Local: Fatal error" alone says nothing: the cause is rd_kafka_fatal_error's.
      Status fatal = StatusFromKafkaFatal(consumer_.get(), m->err, "source " + where);
      return Status::Unavailable(fatal.ok() ? "source " + where + ": " + MessageErrorText(m) : fatal.message());
    }
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return Status::Unavailable("source " + where + ": " + MessageErrorText(m));
    // A principal that lost Read on the source (or its group) went on
    // "running" at 0 rec/s under at-least-once, called transient, its lag
    // within the catch-up lag as far as status and promote knew (a bug
    // bash on a secured Kafka): it stops, naming what to grant.
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED: {
      const Status refused =
          ReadRefused(m->err, "source " + where, MessageErrorText(m),
                      m->rkt ? std::string(rd_kafka_topic_name(m->rkt)) : std::string("?"), options_.group);
      return Status::PermissionDenied(refused.message() +
                                      "; grant it, then start the job again: it resumes from its last checkpoint");
    }
    default:
      if (options_.on_transient) {
        options_.on_transient("transient consumer error on " + where + " (retrying): " + MessageErrorText(m));
      }
      return Status::OK();
  }
}

Status PartitionConsumer::Poll(int max, int wait_ms, MessageBatch* batch) {
  batch->Clear();
  // Client errors (a broker gone) arrive on the main queue, not with messages.
  rd_kafka_poll(consumer_.get(), 0);
  if (batch->messages_.size() < static_cast<size_t>(max)) batch->messages_.resize(max);
  rd_kafka_message_t** out = batch->messages_.data();
  // consume_batch_queue with a timeout waits for a FULL batch, which costs up
  // to the timeout per batch; take what is there, and block only for the first.
  // One message at a time in a group: librdkafka before 2.1.0 (Debian's is
  // 2.0.2) let the batch call move a partition's application offset past
  // messages it then dropped at a rebalance's barrier, and fetching resumed
  // after them (librdkafka #4208; "Known issues" of 2.0.0). A scaled-out
  // exactly-once job lost 307 records of a partition it kept while it was
  // given another (a bug bash on a real Kafka).
  auto take_ready = [&](rd_kafka_message_t** into, int room) -> ssize_t {
    if (!options_.group_member) return rd_kafka_consume_batch_queue(queue_, 0, into, room);
    ssize_t taken = 0;
    while (taken < room) {
      rd_kafka_message_t* m = rd_kafka_consume_queue(queue_, 0);
      if (m == nullptr) break;
      into[taken++] = m;
    }
    return taken;
  };
  ssize_t n = take_ready(out, max);
  if (n == 0 && wait_ms > 0) {
    if (rd_kafka_message_t* first = rd_kafka_consume_queue(queue_, wait_ms)) {
      out[0] = first;
      const ssize_t more = max > 1 ? take_ready(out + 1, max - 1) : 0;
      n = 1 + std::max<ssize_t>(0, more);
    }
  }
  if (n < 0) return StatusFromKafka(rd_kafka_last_error(), "consume failed");
  // Messages prove nothing (they may have been queued before the brokers
  // went): only an answered request clears the flag. Asked whether or not
  // messages come, or a catch-up after the outage would read "lag unknown"
  // until it ran dry.
  if (unreachable_since_ms_ != 0) ProbeBroker();
  if (!rebalance_error_.ok()) {
    for (ssize_t i = 0; i < n; ++i) rd_kafka_message_destroy(out[i]);
    batch->count_ = 0;
    return std::exchange(rebalance_error_, Status::OK());
  }
  // Error messages leave the batch here; the rest keep their order.
  Status result;
  size_t kept = 0;
  for (ssize_t i = 0; i < n; ++i) {
    rd_kafka_message_t* m = out[i];
    if (!m->err) {
      out[kept++] = m;
      continue;
    }
    // With hold_deleted every error is classified: a partition deleted past
    // the reader is reported once, and one left out would stall unseen.
    if (result.ok() || options_.hold_deleted) {
      DeletedRange deleted;
      Status st = Classify(m, options_.hold_deleted ? &deleted : nullptr);
      if (!deleted.topic.empty()) {
        deleted_.push_back(std::move(deleted));
      } else if (result.ok()) {
        result = std::move(st);
      }
    }
    rd_kafka_message_destroy(m);
  }
  batch->count_ = kept;
  return result;
}

Status PartitionConsumer::Positions(PartitionList* partitions) const {
  return StatusFromKafka(rd_kafka_position(consumer_.get(), partitions->get()), "cannot read the consumer's positions");
}

Status PartitionConsumer::Committed(PartitionList* partitions, int timeout_ms) const {
  // A coordinator that is not there yet (a fresh broker making and loading
  // __consumer_offsets, or one that just moved) answers NOT_COORDINATOR or
  // COORDINATOR_LOAD_IN_PROGRESS, and librdkafka 2.0 hands that back at
  // once: asked again until the timeout.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const int left = static_cast<int>(std::max<int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
    const rd_kafka_resp_err_t err = rd_kafka_committed(consumer_.get(), partitions->get(), left);
    const bool coordinator_moving = err == RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
                                    err == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
                                    err == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
    if (!coordinator_moving || std::chrono::steady_clock::now() >= deadline) {
      return StatusFromKafka(err, "cannot read the committed offsets of group " + options_.group);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

void PartitionConsumer::CommitAsync(const PartitionList& offsets) {
  if (offsets.size() > 0) rd_kafka_commit(consumer_.get(), offsets.get(), 1);
}

Status ReadRecordsAt(const KafkaConfig& config, const std::string& group, std::vector<RecordAtOffset>* asks,
                     int wait_ms, std::string* poll_error, bool read_uncommitted) {
  if (asks->empty()) return Status::OK();
  PartitionConsumerOptions options;
  options.group = group;
  options.read_uncommitted = read_uncommitted;
  options.fetch_wait_max_ms = 50;
  options.queued_min_messages = 1;
  options.queued_max_kbytes = 1024;
  options.hold_deleted = true;  // retention ran past a record: nothing to compare, not an error
  auto consumer = PartitionConsumer::Create(config, std::move(options));
  if (!consumer.ok()) return consumer.status();
  std::map<std::pair<std::string, int32_t>, size_t> index;
  PartitionList assignment(static_cast<int>(asks->size()));
  for (size_t i = 0; i < asks->size(); ++i) {
    const RecordAtOffset& a = (*asks)[i];
    index[{a.topic, a.partition}] = i;
    assignment.Add(a.topic, a.partition, a.offset);
  }
  KAPPA_RETURN_IF_ERROR((*consumer)->Assign(assignment));
  size_t left = asks->size();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  MessageBatch batch;
  // A process asked to stop does not wait out the check (a stop during a
  // restart's check waited ~8 s, a bug bash); the rest stay kUnread.
  while (left > 0 && std::chrono::steady_clock::now() < deadline && !ProcessStopToken().stop_requested()) {
    const size_t left_before = left;
    if (Status polled = (*consumer)->Poll(1000, 100, &batch); !polled.ok()) {
      if (poll_error) *poll_error = polled.message();
      break;
    }
    for (size_t k = 0; k < batch.size(); ++k) {
      const rd_kafka_message_t* m = batch[k];
      auto it = index.find({rd_kafka_topic_name(m->rkt), m->partition});
      if (it == index.end()) continue;
      RecordAtOffset& a = (*asks)[it->second];
      if (a.found != RecordAtOffset::Found::kUnread || m->offset < a.offset) continue;
      --left;
      if (m->offset != a.offset) {
        a.found = RecordAtOffset::Found::kNone;
        continue;
      }
      a.found = RecordAtOffset::Found::kRecord;
      a.key_null = m->key == nullptr;
      a.value_null = m->payload == nullptr;
      if (m->key) a.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) a.value.assign(static_cast<const char*>(m->payload), m->len);
      a.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
      AppendMessageHeaders(m, &a.headers);
    }
    batch.Clear();
    for (const DeletedRange& d : (*consumer)->TakeDeleted()) {
      auto it = index.find({d.topic, d.partition});
      if (it == index.end() || (*asks)[it->second].found != RecordAtOffset::Found::kUnread) continue;
      (*asks)[it->second].found = RecordAtOffset::Found::kNone;
      (*asks)[it->second].deleted = true;
      --left;
    }
    if (left > 0 && left < left_before) {
      // Only the partitions still unread stay assigned: the answered ones'
      // later records filled the local queue and starved the others (a
      // restart of 32 partitions found the last ones unread after 10 s).
      PartitionList rest(static_cast<int>(left));
      for (const RecordAtOffset& a : *asks) {
        if (a.found == RecordAtOffset::Found::kUnread) rest.Add(a.topic, a.partition, a.offset);
      }
      KAPPA_RETURN_IF_ERROR((*consumer)->Assign(rest));
    }
  }
  return Status::OK();
}

}  // namespace kappa
