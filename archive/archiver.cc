#include "archive/archiver.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <utility>

#include "archive/segment_file.h"
#include "kafka/kafka_client.h"
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
  int64_t log_start = 0;     // Kafka's log start when it was opened
  bool held = false;         // retention passed it while it was followed: no longer read (see Hole)
};

// A partition whose records retention deleted before they were archived
// (offsets from..log_start-1): it is held back, never written again (the
// archive must not get a hole), while the others go on.
using Hole = ArchiveHole;

std::string HoleList(const std::vector<Hole>& holes) {
  std::string list;
  for (size_t i = 0; i < holes.size() && i < 16; ++i) {
    list += (i ? ", " : "") + Range(holes[i].topic, holes[i].partition, holes[i].from, holes[i].log_start);
  }
  if (holes.size() > 16) list += " and " + std::to_string(holes.size() - 16) + " more partitions";
  return list;
}

constexpr const char* kHoleAdvice =
    "archive into a new directory now to keep history from Kafka's log start on, and keep the old archive for what "
    "it holds";

}  // namespace

// Why the held partitions are not archived and what to do, for the notes
// while the archiver runs and for the status it ends with.
std::string ArchiveHoleText(const std::vector<ArchiveHole>& holes) {
  const bool one = holes.size() == 1;
  return HoleList(holes) + ": Kafka's log of " + (one ? "that partition" : "those partitions") +
         " now starts after them (retention deleted those records before they were archived; the first now starts "
         "at " + std::to_string(holes.front().log_start) + "). The archive would have a hole, so nothing more is "
         "written for " + (one ? "that partition" : "those partitions") +
         ", and retention goes on deleting what is not archived there: " + kHoleAdvice;
}

namespace {

std::string HoleText(const std::vector<Hole>& holes) { return ArchiveHoleText(holes); }

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
  // Holds back a followed partition that retention passed (once).
  void Hold(Followed& f, int64_t log_start) {
    if (f.held) return;
    f.held = true;
    holes_.push_back({f.topic, f.partition, std::max(f.writer->end_offset(), f.start), log_start});
  }
  // Where to read each partition still followed: its position.
  PartitionList Assignment() const {
    PartitionList list(static_cast<int>(all_.size()));
    for (const auto& f : all_) {
      if (!f.held) list.Add(f.topic, f.partition, f.position);
    }
    return list;
  }
  void AddHole(Hole hole) { holes_.push_back(std::move(hole)); }
  // Partitions of each topic as far as the archiver knows (followed or not).
  std::map<std::string, int32_t>& partition_counts() { return counts_; }
  const std::vector<Hole>& holes() const { return holes_; }
  bool AllHeld() const {
    for (const auto& f : all_) {
      if (!f.held) return false;
    }
    return true;
  }
  bool AtEnd() const {
    for (const auto& f : all_) {
      if (!f.held && f.position < f.end_at_start) return false;
    }
    return true;
  }
  int64_t Backlog() const {
    int64_t backlog = 0;
    for (const auto& f : all_) {
      if (!f.held) backlog += std::max<int64_t>(0, f.end_at_start - f.position);
    }
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
    for (const auto& h : holes_) s.held_back.push_back(Range(h.topic, h.partition, h.from, h.log_start));
    for (const auto& f : all_) {
      if (f.held) continue;
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
  std::vector<Hole> holes_;
  std::map<std::pair<std::string, int32_t>, size_t> index_;
  std::map<std::string, int32_t> counts_;
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

// Opens a writer per partition of every topic and lists where to assign
// each. A partition whose records retention deleted before they were
// archived is held back (followed->holes()), every one of them: the
// archiver once stopped for all partitions at the first, and while it stood
// still retention went on deleting the healthy ones' records too. Refuses to
// start where an archive ends after Kafka's log (another topic).
// Why an archive's end disagrees with Kafka's log, and what to do (a
// segment copied over from another partition was blamed on the topic).
std::string NotThisLog(const std::string& root, const std::string& topic, int32_t p) {
  return ": the topic was recreated, this archive belongs to another cluster, or a segment file in " +
         segment_file::PartitionDir(root, topic, p) +
         " came from another partition or archive (put this partition's own back); otherwise use another archive "
         "directory";
}

Status OpenPartitions(PartitionConsumer& consumer, const ArchiverOptions& options, FollowedSet* followed,
                      PartitionList* assignment) {
  for (const auto& topic : options.topics) {
    auto partitions = consumer.PartitionCount(topic);
    if (!partitions.ok()) return partitions.status();
    auto marks = consumer.AllWatermarks(topic, *partitions);
    if (!marks.ok()) return marks.status();
    // What the archive knew of the topic when it last ran: a partition
    // beyond it was added to the topic since.
    // A directory beyond Kafka's partitions: a replay from the archive
    // refuses it, and the archiver went on without a word (a bug bash).
    auto present = ArchivedPartitions(options.root, topic);
    if (!present.ok() && present.status().code() != Status::Code::kNotFound) return present.status();
    if (present.ok()) {
      KAPPA_RETURN_IF_ERROR(CheckNoStrayPartition(
          options.root, topic, *present, *partitions, "has " + std::to_string(*partitions) + " partitions",
          ", or use another archive directory if the topic was recreated"));
    }
    auto known = ArchivedPartitionCount(options.root, topic);
    const int32_t archived_count = known.ok() ? *known : -1;
    KAPPA_RETURN_IF_ERROR(RecordPartitionCount(options.root, topic, *partitions));
    followed->partition_counts()[topic] = *partitions;
    for (int32_t p = 0; p < *partitions; ++p) {
      if (!options.only_partitions.empty() &&
          std::find(options.only_partitions.begin(), options.only_partitions.end(), std::make_pair(topic, p)) ==
              options.only_partitions.end()) {
        continue;
      }
      auto writer = ArchiveWriter::Open(options.root, topic, p, options.block_bytes,
                                        ArchiveWriter::kDefaultSegmentBytes, options.on_note, options.compression);
      if (!writer.ok()) return writer.status();
      const Watermarks& w = (*marks)[p];
      int64_t end = (*writer)->end_offset();
      if (end < w.low && (*writer)->fresh()) {
        // Nothing archived yet (a new archive directory, as the hole's
        // advice says, or a new partition): the archive starts where Kafka's
        // log does, and a replay finds the records before it in neither
        // (history_gap). It was held back as a hole, for good.
        const bool added_since = archived_count > 0 && p >= archived_count;
        if (options.on_note && added_since) {
          // Its records were written after this archive began: they are
          // missing from it, not older than it.
          options.on_note(NoteLevel::kWarning,
                          topic + "[" + std::to_string(p) + "]: Kafka's log starts at offset " + std::to_string(w.low) +
                              "; the partition was added to the topic after this archive last ran (it knew " +
                              std::to_string(archived_count) + " partitions), and retention deleted its records 0.." +
                              std::to_string(w.low - 1) + " before they were archived; its archive starts there");
        } else if (options.on_note) {
          options.on_note(NoteLevel::kInfo, topic + "[" + std::to_string(p) + "]: Kafka's log starts at offset " +
                                                std::to_string(w.low) + " (records before it were deleted before "
                                                "this archive began); its archive starts there");
        }
        end = w.low;
      }
      // Where this archive begins reading: the first segment is named after
      // it, so offsets before the first record (an aborted transaction,
      // compacted records) are not a hole to a replay.
      if ((*writer)->fresh()) (*writer)->BeginAt(end);
      if (end < w.low) {
        followed->AddHole({topic, p, end, w.low});
        continue;
      }
      if (end > w.high) {
        return Status::FailedPrecondition(
            "the archive of " + topic + "[" + std::to_string(p) + "] ends at offset " + std::to_string(end) +
            " but Kafka's log ends at " + std::to_string(w.high) + NotThisLog(options.root, topic, p));
      }
      Followed f;
      f.topic = topic;
      f.partition = p;
      f.writer = std::move(*writer);
      f.start = end;
      f.end_at_start = w.high;
      f.position = end;
      f.high = w.high;
      f.log_start = w.low;
      followed->Add(std::move(f));
      assignment->Add(topic, p, end);
    }
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

// Whether Kafka still holds the history the archive continues: for every
// followed partition with records archived, the record at the archive's
// last offset is read from Kafka and compared with the archived one (key,
// value, timestamp). A topic deleted and recreated (or another cluster's
// topic of the same name) that has grown past the archive's end would
// otherwise be appended after the old topic's records. Where the check
// cannot be made (retention or compaction removed that offset, or it is not
// readable, as an aborted record) the archiver goes on as before.
// FailedPrecondition naming the first partition that differs.
Status CheckSameHistory(const KafkaConfig& config, const ArchiverOptions& options, FollowedSet& followed) {
  std::vector<RecordAtOffset> kafka;     // what to read from Kafka
  std::vector<RecordAtOffset> archived;  // the archived record at each, in the same shape
  for (const auto& f : followed.all()) {
    if (f.writer->first_offset() < 0 || f.start <= 0) continue;  // nothing archived
    const int64_t last = f.start - 1;
    if (last < f.log_start) continue;  // retention removed it: no check possible
    auto reader = ArchiveReader::Open(options.root, f.topic, f.partition);
    if (!reader.ok()) return reader.status();
    KAPPA_RETURN_IF_ERROR((*reader)->Seek(last));
    ArchiveRecord record;
    auto got = (*reader)->Next(&record);
    if (!got.ok()) return got.status();
    if (!*got || record.offset != last) continue;  // not where the writer says: nothing to compare
    RecordAtOffset a;
    a.topic = f.topic;
    a.partition = f.partition;
    a.offset = last;
    kafka.push_back(a);
    a.found = RecordAtOffset::Found::kRecord;
    a.key_null = record.key_null;
    a.value_null = record.value_null;
    a.key.assign(record.key);
    a.value.assign(record.value);
    a.timestamp_ms = record.timestamp_ms;
    archived.push_back(std::move(a));
  }
  if (kafka.empty()) return Status::OK();
  std::string poll_error;  // a failed poll leaves the rest unread: named below
  KAPPA_RETURN_IF_ERROR(ReadRecordsAt(config, "kappa-archive", &kafka, 30000, &poll_error));
  // For a topic's cleanup.policy, asked only where an offset holds no record.
  KafkaHandle admin;
  if (std::any_of(kafka.begin(), kafka.end(), [](const RecordAtOffset& k) {
        return k.found == RecordAtOffset::Found::kNone && !k.deleted;
      })) {
    auto made = CreateClient(ClientKind::kProducer, config, {});
    if (!made.ok()) return made.status();
    admin = std::move(*made);
  }
  for (size_t i = 0; i < kafka.size(); ++i) {
    const RecordAtOffset& k = kafka[i];
    const RecordAtOffset& a = archived[i];
    if (k.found == RecordAtOffset::Found::kUnread) {
      if (options.on_note) {
        options.on_note(NoteLevel::kWarning, "could not read " + a.topic + "[" + std::to_string(a.partition) +
                                                 "] offset " + std::to_string(a.offset) +
                                                 " from Kafka to check that it is the archived record; archiving "
                                                 "without that check");
      }
      continue;
    }
    if (k.found == RecordAtOffset::Found::kNone) {
      // Retention's deletion, or compaction, leave nothing to compare. But
      // the archived record was a committed one, which stays readable in
      // the same log: where a topic that is not compacted holds no record
      // at that offset now (a transaction marker or an aborted record of
      // a new log), the topic was recreated. It was taken for "nothing to
      // compare", and the new log's records were archived after the old
      // one's (a bug bash).
      if (k.deleted) continue;
      auto policy = TopicConfigValue(admin.get(), a.topic, "cleanup.policy", 10000);
      if (!policy.ok() || policy->find("compact") != std::string::npos) continue;  // unknown, or compacted
      return Status::FailedPrecondition(
          "the archive of " + a.topic + "[" + std::to_string(a.partition) + "] ends with offset " +
          std::to_string(a.offset) + ", a committed record, but Kafka holds no record at that offset now (a "
          "transaction marker or an aborted record stands there) in a topic that is not compacted (cleanup.policy=" +
          *policy + ")" + NotThisLog(options.root, a.topic, a.partition));
    }
    std::string differs;
    if (k.key_null != a.key_null || k.key != a.key) differs = "key";
    else if (k.value_null != a.value_null || k.value != a.value) differs = "value";
    else if (k.timestamp_ms != a.timestamp_ms) differs = "timestamp";
    if (differs.empty()) continue;
    return Status::FailedPrecondition(
        "the archive of " + a.topic + "[" + std::to_string(a.partition) + "] ends with offset " +
        std::to_string(a.offset) + ", but Kafka's record at that offset has another " + differs +
        " than the archived one" + NotThisLog(options.root, a.topic, a.partition));
  }
  return Status::OK();
}

// Partitions added to a followed topic while the archiver runs: each is
// opened and followed from its beginning (offset 0, or where its archive
// ends), said once. *added: whether any was (the caller assigns again).
Status FollowNewPartitions(PartitionConsumer& consumer, const ArchiverOptions& options, FollowedSet& followed,
                           bool* added) {
  *added = false;
  if (!options.only_partitions.empty()) return Status::OK();  // --repair: the damaged partitions only
  for (const auto& topic : options.topics) {
    // A short wait: this runs on the archiver's thread (a broker away is said elsewhere).
    auto count = TopicPartitionCount(consumer.handle(), topic, 500);
    int32_t& known = followed.partition_counts()[topic];
    if (!count.ok() || *count <= known) continue;
    KAPPA_RETURN_IF_ERROR(RecordPartitionCount(options.root, topic, *count));
    const int32_t was = known;
    for (int32_t p = was; p < *count; ++p) {
      if (followed.Find(topic.c_str(), p)) continue;
      auto writer = ArchiveWriter::Open(options.root, topic, p, options.block_bytes,
                                        ArchiveWriter::kDefaultSegmentBytes, options.on_note, options.compression);
      if (!writer.ok()) return writer.status();
      auto marks = QueryWatermarks(consumer.handle(), topic, p, 500);
      Followed f;
      f.topic = topic;
      f.partition = p;
      if ((*writer)->fresh()) (*writer)->BeginAt((*writer)->end_offset());
      f.start = (*writer)->end_offset();
      f.position = f.start;
      f.high = marks.ok() ? marks->high : 0;
      f.end_at_start = std::max(f.high, f.start);
      f.writer = std::move(*writer);
      followed.Add(std::move(f));
    }
    known = *count;
    *added = true;
    if (options.on_note) {
      const std::string range = *count - was == 1 ? "partition " + std::to_string(was)
                                                  : "partitions " + std::to_string(was) + ".." +
                                                        std::to_string(*count - 1);
      options.on_note(NoteLevel::kInfo, "the topic " + topic + " now has " + std::to_string(*count) +
                                            " partitions (it had " + std::to_string(was) + "): archiving its new " +
                                            range + " too, from their beginning");
    }
  }
  return Status::OK();
}

}  // namespace

Result<ArchiverSummary> RunArchiver(const KafkaConfig& config, const ArchiverOptions& options, StopToken stop) {
  if (options.root.empty()) return Status::InvalidArgument("no archive directory given (--archive DIR)");
  if (options.topics.empty()) return Status::InvalidArgument("no topic to archive (--topic NAME)");
  PartitionConsumerOptions consumer_options;
  consumer_options.group = "kappa-archive";
  consumer_options.fetch_wait_max_ms = 50;
  consumer_options.queued_min_messages = 100000;
  consumer_options.hold_deleted = true;  // one partition retention passed is held back, not the archiver
  consumer_options.on_transient = [&options](const std::string& what) {
    if (options.on_note) options.on_note(NoteLevel::kWarning, what);
  };
  auto consumer = PartitionConsumer::Create(config, consumer_options);
  if (!consumer.ok()) return consumer.status();

  FollowedSet followed;
  {
    PartitionList assignment(16);
    KAPPA_RETURN_IF_ERROR(OpenPartitions(**consumer, options, &followed, &assignment));
    KAPPA_RETURN_IF_ERROR(CheckSameHistory(config, options, followed));
    // Nothing it could archive: said at once, as before there were partitions to go on with.
    if (followed.all().empty() && !followed.holes().empty()) {
      return Status::DataLoss("cannot archive " + HoleText(followed.holes()));
    }
    KAPPA_RETURN_IF_ERROR((*consumer)->Assign(assignment));
  }
  // Said loudly at start and again with every status: the archiver goes on
  // with the healthy partitions, and a long run must not bury it.
  auto note_holes = [&options, &followed] {
    if (options.on_note && !followed.holes().empty()) {
      options.on_note(NoteLevel::kError, "not archiving " + HoleText(followed.holes()) +
                                             " (the other partitions are archived; the archiver ends with an error)");
    }
  };
  if (options.on_note) {
    options.on_note(NoteLevel::kInfo, "following " + std::to_string(followed.all().size()) + " partition(s) of " +
                                          std::to_string(options.topics.size()) + " topic(s) into " + options.root +
                                          ", up to " + std::to_string(followed.Backlog()) +
                                          " record(s) behind");  // offsets: compaction and markers leave fewer
  }
  note_holes();

  ArchiverSummary summary;
  ProgressReporter reporter(options.status_interval_ms, options.on_status);
  reporter.Start(0);
  auto last_flush = SteadyTime::now();
  auto last_growth_check = SteadyTime::now();
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
      if (!f || f->held) continue;
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
    // Partitions retention passed while followed (after what the batch held
    // of them): held back from now on, the others go on.
    bool restarted = false;
    for (const DeletedRange& d : (*consumer)->TakeDeleted()) {
      Followed* f = followed.Find(d.topic.c_str(), d.partition);
      if (!f || f->held) continue;
      if (f->writer->fresh()) {
        // Nothing archived yet (it began at Kafka's log start, and retention
        // passed that start again before a record came): there is nothing
        // to keep continuous with, so it starts again where the log starts
        // now, as it did at first. It was held back as a hole, for good.
        if (options.on_note) {
          options.on_note(NoteLevel::kInfo, f->topic + "[" + std::to_string(f->partition) +
                                                "]: Kafka's log now starts at offset " + std::to_string(d.log_start) +
                                                " (retention deleted records " + std::to_string(f->position) + ".." +
                                                std::to_string(d.log_start - 1) +
                                                " before this archive got any of them); its archive starts there");
        }
        f->start = std::max(f->start, d.log_start);
        f->position = std::max(f->position, d.log_start);
        f->writer->BeginAt(f->start);  // what retention deleted is no part of it
        restarted = true;
        continue;
      }
      followed.Hold(*f, d.log_start);
      if (options.on_note) {
        options.on_note(NoteLevel::kError, d.message + "; the archive would have a hole, so " + d.topic + "[" +
                                               std::to_string(d.partition) +
                                               "] is no longer archived (the other partitions are): " + kHoleAdvice);
      }
    }
    if (restarted) {
      // librdkafka stopped fetching it (a seek is refused in that state):
      // assigned again, every partition still read at its position.
      result = (*consumer)->Assign(followed.Assignment());
      if (!result.ok()) break;
    }
    if (followed.AllHeld()) break;  // nothing left to archive
    if (SteadyTime::now() - last_growth_check >= std::chrono::milliseconds(TopicCheckIntervalMs())) {
      last_growth_check = SteadyTime::now();
      bool added = false;
      result = FollowNewPartitions(**consumer, options, followed, &added);
      if (!result.ok()) break;
      if (added) {
        UpdatePositions(**consumer, followed);
        result = (*consumer)->Assign(followed.Assignment());
        if (!result.ok()) break;
      }
    }

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
      snapshot.source_unreachable_reason = (*consumer)->UnreachableReason();
      reporter.Report(std::move(snapshot), summary.records);
      note_holes();
    }
  }
  // What was appended before a failure is good data: make it durable.
  Status flushed = followed.FlushAll();
  consumer->reset();
  summary.seconds = reporter.SecondsSinceStart();
  reporter.ReportFinal(followed.Snapshot(summary.records), summary.records);
  if (!result.ok()) return result;
  if (!flushed.ok()) return flushed;
  // What the healthy partitions archived is durable; the held ones end the
  // run with an error (`kappa archive` exits non-zero).
  if (!followed.holes().empty()) {
    return Status::DataLoss((followed.AllHeld() ? "cannot archive " : "archived the other partitions, but not ") +
                            HoleText(followed.holes()));
  }
  return summary;
}

}  // namespace kappa
