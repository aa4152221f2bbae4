#include "archive/archiver.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <utility>

#include "kafka/partition_consumer.h"
#include "kafka/partition_list.h"

namespace kappa {
namespace {

using SteadyTime = std::chrono::steady_clock;

std::string Range(const std::string& topic, int32_t p, int64_t from, int64_t to_exclusive) {
  return topic + "[" + std::to_string(p) + "] offsets " + std::to_string(from) + ".." + std::to_string(to_exclusive - 1);
}

struct Followed {
  std::string topic;
  int32_t partition = 0;
  std::unique_ptr<ArchiveWriter> writer;
  int64_t start = 0;         // the archive's end when the archiver started
  int64_t end_at_start = 0;  // log end offset when the archiver started (stop_at_end)
  int64_t position = 0;      // the consumer's next offset (passes transaction markers too)
  int64_t high = 0;          // latest known log end
};

// Everything the loop needs to know about the followed partitions.
class FollowedSet {
 public:
  Followed& Add(Followed f) {
    index_[{f.topic, f.partition}] = all_.size();
    all_.push_back(std::move(f));
    return all_.back();
  }
  std::vector<Followed>& all() { return all_; }
  Followed* Find(const char* topic, int32_t partition) {
    // Quick lookup for the common case of one topic whose partitions were added in order.
    if (static_cast<size_t>(partition) < all_.size() && all_[partition].partition == partition &&
        all_[partition].topic == topic) {
      return &all_[partition];
    }
    auto it = index_.find({topic, partition});
    return it == index_.end() ? nullptr : &all_[it->second];
  }
  bool AtEnd() const {
    for (const auto& f : all_) {
      if (f.position < f.end_at_start) return false;
    }
    return true;
  }
  int64_t Backlog() const {
    int64_t backlog = 0;
    for (const auto& f : all_) backlog += std::max<int64_t>(0, f.end_at_start - f.position);
    return backlog;
  }
  // Every writer, even after one fails (a full disk): what the others
  // hold is made durable all the same. The first error.
  Status FlushAll() {
    Status first;
    for (auto& f : all_) {
      Status st = f.writer->Flush();
      if (first.ok() && !st.ok()) first = std::move(st);
    }
    return first;
  }
  ProgressSnapshot Snapshot(int64_t records) const {
    ProgressSnapshot s;
    s.checkpoint_ms = WallClockMs();
    s.counters.in = records;
    for (const auto& f : all_) {
      PartitionProgress p;
      p.partition = f.partition;
      p.topic = f.topic;
      p.start_offset = f.start;
      p.position = f.position;
      p.log_end = std::max(f.high, f.position);
      s.partitions.push_back(p);
    }
    return s;
  }

 private:
  std::vector<Followed> all_;
  std::map<std::pair<std::string, int32_t>, size_t> index_;
};

void ToRecord(rd_kafka_message_t* m, ArchiveRecord* record) {
  record->offset = m->offset;
  record->timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
  record->key_null = m->key == nullptr;
  record->key = std::string_view(static_cast<const char*>(m->key), m->key ? m->key_len : 0);
  record->value_null = m->payload == nullptr;
  record->value = std::string_view(static_cast<const char*>(m->payload), m->payload ? m->len : 0);
  record->headers.clear();
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t h = 0; rd_kafka_header_get_all(headers, h, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++h) {
      record->headers.push_back(
          {name, std::string_view(static_cast<const char*>(value), value ? size : 0), value == nullptr});
    }
  }
}

// Opens a writer per partition of every topic, refusing to start where the
// archive and Kafka's log do not meet, and lists where to assign each.
Status OpenPartitions(PartitionConsumer& consumer, const ArchiverOptions& options, FollowedSet* followed,
                      PartitionList* assignment) {
  // Every partition whose records retention deleted before they were
  // archived, named at once: the first alone was named, and while the
  // archiver stood still the others went on losing records (a bug bash).
  std::vector<std::string> gaps;
  int64_t first_low = 0;
  for (const auto& topic : options.topics) {
    auto partitions = consumer.PartitionCount(topic);
    if (!partitions.ok()) return partitions.status();
    auto marks = consumer.AllWatermarks(topic, *partitions);
    if (!marks.ok()) return marks.status();
    KAPPA_RETURN_IF_ERROR(RecordPartitionCount(options.root, topic, *partitions));
    for (int32_t p = 0; p < *partitions; ++p) {
      auto writer = ArchiveWriter::Open(options.root, topic, p, options.block_bytes,
                                        ArchiveWriter::kDefaultSegmentBytes, options.on_note, options.compression);
      if (!writer.ok()) return writer.status();
      const Watermarks& w = (*marks)[p];
      const int64_t end = (*writer)->end_offset();
      if (end < w.low) {
        if (gaps.empty()) first_low = w.low;
        gaps.push_back(Range(topic, p, end, w.low));
        continue;
      }
      if (end > w.high) {
        return Status::FailedPrecondition(
            "the archive of " + topic + "[" + std::to_string(p) + "] ends at offset " + std::to_string(end) +
            " but Kafka's log ends at " + std::to_string(w.high) +
            ": the topic was recreated or this archive belongs to another cluster; use another archive directory");
      }
      Followed f;
      f.topic = topic;
      f.partition = p;
      f.writer = std::move(*writer);
      f.start = end;
      f.end_at_start = w.high;
      f.position = end;
      f.high = w.high;
      followed->Add(std::move(f));
      assignment->Add(topic, p, end);
    }
  }
  if (!gaps.empty()) {
    std::string list;
    for (size_t i = 0; i < gaps.size() && i < 16; ++i) list += (i ? ", " : "") + gaps[i];
    if (gaps.size() > 16) list += " and " + std::to_string(gaps.size() - 16) + " more partitions";
    return Status::DataLoss(
        "cannot archive " + list + ": Kafka's log of " + (gaps.size() == 1 ? "that partition" : "those partitions") +
        " now starts after them (retention deleted those records before they were archived; the first now starts "
        "at " + std::to_string(first_low) + "). The archive would have a hole, so nothing is written, for any "
        "partition, and retention goes on deleting what is not archived: archive into a new directory now to keep "
        "history from Kafka's log start on, and keep the old archive for what it holds");
  }
  return Status::OK();
}

// The consumer's position passes transaction markers that never arrive as
// messages; stop_at_end relies on it.
void UpdatePositions(const PartitionConsumer& consumer, FollowedSet& followed) {
  PartitionList positions(static_cast<int>(followed.all().size()));
  for (const auto& f : followed.all()) positions.Add(f.topic, f.partition);
  if (!consumer.Positions(&positions).ok()) return;
  for (int i = 0; i < positions.size(); ++i) {
    const rd_kafka_topic_partition_t& e = positions[i];
    Followed* f = followed.Find(e.topic, e.partition);
    if (f && e.offset >= 0) f->position = std::max(f->position, e.offset);
  }
}

}  // namespace

Result<ArchiverSummary> RunArchiver(const KafkaConfig& config, const ArchiverOptions& options, StopToken stop) {
  if (options.root.empty()) return Status::InvalidArgument("no archive directory given (--archive DIR)");
  if (options.topics.empty()) return Status::InvalidArgument("no topic to archive (--topic NAME)");
  PartitionConsumerOptions consumer_options;
  consumer_options.group = "kappa-archive";
  consumer_options.fetch_wait_max_ms = 50;
  consumer_options.queued_min_messages = 100000;
  consumer_options.on_transient = [&options](const std::string& what) {
    if (options.on_note) options.on_note(NoteLevel::kWarning, what);
  };
  auto consumer = PartitionConsumer::Create(config, consumer_options);
  if (!consumer.ok()) return consumer.status();

  FollowedSet followed;
  {
    PartitionList assignment(16);
    KAPPA_RETURN_IF_ERROR(OpenPartitions(**consumer, options, &followed, &assignment));
    KAPPA_RETURN_IF_ERROR((*consumer)->Assign(assignment));
  }
  if (options.on_note) {
    options.on_note(NoteLevel::kInfo, "following " + std::to_string(followed.all().size()) + " partition(s) of " +
                                          std::to_string(options.topics.size()) + " topic(s) into " + options.root +
                                          ", " + std::to_string(followed.Backlog()) + " record(s) behind");
  }

  ArchiverSummary summary;
  ProgressReporter reporter(options.status_interval_ms, options.on_status);
  reporter.Start(0);
  auto last_flush = SteadyTime::now();
  MessageBatch batch;
  ArchiveRecord record;
  Status result;
  while (!stop.stop_requested()) {
    if (options.stop_at_end && followed.AtEnd()) break;
    result = (*consumer)->Poll(10000, 100, &batch);
    if (!result.ok()) {
      if (result.code() == Status::Code::kDataLoss) {
        result = Status::DataLoss(result.message() + "; the archive would have a hole, so the archiver stops");
      }
      break;
    }
    for (size_t i = 0; i < batch.size() && result.ok(); ++i) {
      rd_kafka_message_t* m = batch[i];
      Followed* f = followed.Find(rd_kafka_topic_name(m->rkt), m->partition);
      if (!f) continue;
      if (m->offset < f->writer->end_offset()) continue;  // re-delivered after a reassignment
      ToRecord(m, &record);
      result = f->writer->Append(record);
      f->position = m->offset + 1;
      ++summary.records;
      summary.bytes += static_cast<int64_t>(record.key.size() + record.value.size());
    }
    const bool empty = batch.empty();
    batch.Clear();
    if (!result.ok()) break;

    const bool flush_due = SteadyTime::now() - last_flush >= std::chrono::milliseconds(options.flush_interval_ms);
    const bool status_due = reporter.Due();
    if (flush_due || status_due || (options.stop_at_end && empty)) UpdatePositions(**consumer, followed);
    if (flush_due) {
      result = followed.FlushAll();
      if (!result.ok()) break;
      last_flush = SteadyTime::now();
    }
    if (status_due) {
      for (auto& f : followed.all()) f.high = std::max(f.high, (*consumer)->CachedLogEnd(f.topic, f.partition));
      ProgressSnapshot snapshot = followed.Snapshot(summary.records);
      snapshot.source_unreachable_since_ms = (*consumer)->UnreachableSinceMs();
      reporter.Report(std::move(snapshot), summary.records);
    }
  }
  // What was appended before a failure is good data: make it durable.
  Status flushed = followed.FlushAll();
  consumer->reset();
  summary.seconds = reporter.SecondsSinceStart();
  reporter.ReportFinal(followed.Snapshot(summary.records), summary.records);
  if (!result.ok()) return result;
  if (!flushed.ok()) return flushed;
  return summary;
}

}  // namespace kappa
