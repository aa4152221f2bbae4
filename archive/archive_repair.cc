#include "archive/archive_repair.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "base/test_hooks.h"
#include "kafka/partition_consumer.h"
#include "archive/archive_range.h"
#include "archive/segment_file.h"

namespace kappa {

using namespace segment_file;

namespace {

std::string Range(const std::string& topic, int32_t p, int64_t from, int64_t to_exclusive) {
  return topic + "[" + std::to_string(p) + "] offsets " + std::to_string(from) + ".." + std::to_string(to_exclusive - 1);
}

}  // namespace

Result<std::optional<PartitionDamage>> FindDamage(const std::string& root, const std::string& topic,
                                                  int32_t partition) {
  KAPPA_RETURN_IF_ERROR(ValidateTopic(topic));
  const std::string dir = PartitionDir(root, topic, partition);
  auto chain = ReadChainStart(dir);
  if (!chain.ok()) return chain.status();
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  // The first segments deleted: every segment goes aside and the partition
  // is fetched again from CHAIN's offset (the writer appends only at the end).
  if (*chain >= 0 && !segments->empty() && segments->front() > *chain) {
    PartitionDamage d;
    d.topic = topic;
    d.partition = partition;
    d.what = ChainStartProblem(dir, *segments, *chain);
    d.segment = dir + "/" + SegmentName(segments->front());
    d.byte = 0;
    d.from = *chain;
    d.damaged_end = segments->front();
    for (size_t j = 1; j < segments->size(); ++j) d.later_segments.push_back(dir + "/" + SegmentName((*segments)[j]));
    return std::optional<PartitionDamage>(std::move(d));
  }
  int64_t end = -1;  // after the last good block so far
  int64_t prev_end = -1;  // ChainedEnd of the segment before
  for (size_t i = 0; i < segments->size(); ++i) {
    const bool last = i + 1 == segments->size();
    const std::string path = dir + "/" + SegmentName((*segments)[i]);
    auto scan = ScanSegment(path, /*verify_payloads=*/true);
    if (!scan.ok()) return scan.status();
    // A segment out of place (a hole before it, an overlap, offsets below
    // its name): the damage starts where the segment before it ends, and
    // this one and every later one go aside (nothing of the one before is
    // cut); everything from that end on is fetched again.
    if (const std::string problem = SegmentOrderProblem(dir, (*segments)[i], scan->first_offset, prev_end, *chain);
        !problem.empty()) {
      PartitionDamage d;
      d.topic = topic;
      d.partition = partition;
      d.what = problem;
      if (i == 0) {
        // The first segment itself is not this partition's: all of it goes aside.
        d.segment = path;
        d.byte = 0;
        d.from = (*segments)[0];
        for (size_t j = 1; j < segments->size(); ++j) d.later_segments.push_back(dir + "/" + SegmentName((*segments)[j]));
      } else {
        d.segment = dir + "/" + SegmentName((*segments)[i - 1]);
        struct stat st{};
        if (::stat(d.segment.c_str(), &st) != 0) return Status::IOError(Errno("stat " + d.segment));
        d.byte = st.st_size;
        d.from = prev_end;
        for (size_t j = i; j < segments->size(); ++j) d.later_segments.push_back(dir + "/" + SegmentName((*segments)[j]));
      }
      d.damaged_end = std::max(d.from, (*segments)[i]);  // the hole, if that is what it is
      return std::optional<PartitionDamage>(std::move(d));
    }
    prev_end = ChainedEnd((*segments)[i], scan->first_offset, scan->last_offset);
    const int64_t end_before = end;
    if (scan->records > 0) end = scan->last_offset + 1;
    if (!scan->damaged && !(scan->torn_tail && !last)) continue;
    PartitionDamage d;
    d.topic = topic;
    d.partition = partition;
    d.segment = path;
    d.byte = scan->valid_bytes;
    d.what = DamageMessage(path, *scan);
    if (scan->records > 0) {
      d.from = scan->last_offset + 1;
    } else {
      d.from = end_before >= 0 ? end_before : (*segments)[i];  // a segment is named after its first offset
    }
    if (scan->damaged_last >= 0) {
      d.damaged_end = scan->damaged_last + 1;
    } else if (!last) {
      d.damaged_end = (*segments)[i + 1];
    }
    for (size_t j = i + 1; j < segments->size(); ++j) d.later_segments.push_back(dir + "/" + SegmentName((*segments)[j]));
    return std::optional<PartitionDamage>(std::move(d));
  }
  return std::optional<PartitionDamage>();
}

Status MoveDamagedTailAside(const PartitionDamage& d, std::vector<std::string>* moved) {
  // In an order that a crash between any two steps leaves recoverable: the
  // damaged segment is cut last, so until then it still reads as damaged
  // and a repair run again finds it and starts over. Cut first, a crash
  // before the later segments were moved left a partition that looked
  // whole: the damaged block's records, and those after it up to the next
  // segment, silently gone and never refetched.
  KAPPA_KILL_SWITCH(kill_switch);
  const std::string dir = d.segment.substr(0, d.segment.rfind('/'));
  struct stat st{};
  if (::stat(d.segment.c_str(), &st) != 0) return Status::IOError(Errno("stat " + d.segment));
  if (st.st_size > d.byte && d.byte > 0) {  // nothing to copy when the damage starts after the segment (a hole after it)
    const std::string aside = AsideName(d.segment, ".damaged");
    KAPPA_RETURN_IF_ERROR(CopyTail(d.segment, d.byte, aside, "damaged tail", "--repair"));
    moved->push_back(aside);
    KAPPA_RETURN_IF_ERROR(SyncDir(dir));
  }
  KAPPA_KILL_POINT(kill_switch, "repair-copied-aside");
  for (const auto& later : d.later_segments) {
    const std::string name = AsideName(later, ".damaged");
    if (::rename(later.c_str(), name.c_str()) != 0) return Status::IOError(Errno("rename " + later));
    moved->push_back(name);
    KAPPA_RETURN_IF_ERROR(SyncDir(dir));
    KAPPA_KILL_POINT(kill_switch, "repair-moved-later");
  }
  if (d.byte == 0) {
    // All of it goes: renamed aside whole, not copied and cut to an empty
    // file whose name would still claim where the partition begins.
    const std::string name = AsideName(d.segment, ".damaged");
    if (::rename(d.segment.c_str(), name.c_str()) != 0) return Status::IOError(Errno("rename " + d.segment));
    moved->push_back(name);
    KAPPA_RETURN_IF_ERROR(SyncDir(dir));
    KAPPA_KILL_POINT(kill_switch, "repair-cut");
    return Status::OK();
  }
  if (::truncate(d.segment.c_str(), d.byte) != 0) return Status::IOError(Errno("truncate " + d.segment));
  int fd = ::open(d.segment.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(Errno("open " + d.segment));
  const int rc = ::fdatasync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError(Errno("fdatasync " + d.segment));
  KAPPA_KILL_POINT(kill_switch, "repair-cut");
  return Status::OK();
}

namespace {

constexpr int64_t kUnknown = INT64_MAX;

// Where the archive of a partition ends, from its block headers alone (a
// damaged payload's block included: what Kafka deleted past it is lost
// whether or not that block is): -1 if it holds nothing (no segment), and
// kUnknown if a damaged header in the newest segment hides it.
Result<int64_t> ArchivedEnd(const std::string& root, const std::string& topic, int32_t partition) {
  const std::string dir = PartitionDir(root, topic, partition);
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  if (segments->empty()) return int64_t{-1};
  const int64_t name = segments->back();
  auto scan = ScanSegment(dir + "/" + SegmentName(name), /*verify_payloads=*/false);
  if (!scan.ok()) return scan.status();
  if (scan->damaged) return kUnknown;
  return ChainedEnd(name, scan->first_offset, scan->last_offset);
}

std::string Partition(const std::string& topic, int32_t p) { return topic + "[" + std::to_string(p) + "]"; }

// "topic[p] offsets a..b are lost: retention deleted them ...", for a hole.
std::string HoleLost(const ArchiveHole& h) {
  return Range(h.topic, h.partition, h.from, h.log_start) + " are lost: the archive ends at " +
         std::to_string(h.from) + " and Kafka's log of that partition now starts at " + std::to_string(h.log_start) +
         " (retention deleted them before they were archived)";
}

struct Checked {
  std::string topic;
  int32_t partition = 0;
  std::optional<PartitionDamage> damage;
  int64_t end = -1;  // ArchivedEnd
};

}  // namespace

Result<RepairSummary> RepairArchive(const KafkaConfig& config, const ArchiverOptions& options, StopToken stop) {
  if (options.root.empty()) return Status::InvalidArgument("no archive directory given (--archive DIR)");
  if (options.topics.empty()) return Status::InvalidArgument("no topic to repair (--topic NAME)");
  RepairSummary summary;
  std::vector<Checked> checked;
  for (const auto& topic : options.topics) {
    auto partitions = ArchivedPartitions(options.root, topic);
    if (!partitions.ok()) return partitions.status();
    if (partitions->empty()) {
      return Status::NotFound("nothing archived for topic " + topic + " in " + options.root);
    }
    for (int32_t p : *partitions) {
      Checked c;
      c.topic = topic;
      c.partition = p;
      auto found = FindDamage(options.root, topic, p);
      if (!found.ok()) return found.status();
      c.damage = std::move(*found);
      auto end = ArchivedEnd(options.root, topic, p);
      if (!end.ok()) return end.status();
      c.end = *end;
      checked.push_back(std::move(c));
    }
  }

  // Where Kafka's logs start: whether each damaged range can be refetched,
  // and which partitions Kafka has deleted past the archive's end (a hole:
  // the archiver holds them back; no repair brings those offsets back).
  PartitionConsumerOptions consumer_options;
  consumer_options.group = "kappa-archive";
  auto consumer = PartitionConsumer::Create(config, consumer_options);
  if (!consumer.ok()) return consumer.status();
  std::string lost;
  std::vector<ArchiveHole> holes;
  std::vector<const PartitionDamage*> damaged;
  auto add_lost = [&lost](const std::string& what) { lost += (lost.empty() ? "" : "; ") + what; };
  for (const auto& topic : options.topics) {
    bool topic_damaged = false;
    for (const auto& c : checked) topic_damaged |= c.topic == topic && c.damage.has_value();
    auto count = (*consumer)->PartitionCount(topic);
    if (!count.ok()) {
      // A topic gone from Kafka: nothing to refetch, and no log start to compare.
      if (!topic_damaged && count.status().code() == Status::Code::kNotFound) continue;
      return count.status();
    }
    auto marks = (*consumer)->AllWatermarks(topic, *count);
    if (!marks.ok()) return marks.status();
    for (const auto& c : checked) {
      if (c.topic != topic) continue;
      if (c.partition >= *count) {
        if (!c.damage) continue;
        const PartitionDamage& d = *c.damage;
        add_lost(Range(d.topic, d.partition, d.from, d.damaged_end) + " are lost: " + d.what +
                 ", and Kafka's topic has no partition " + std::to_string(d.partition));
        continue;
      }
      const Watermarks& w = (*marks)[c.partition];
      // The hole past the archive's end, if Kafka's log starts after it.
      const bool hole = c.end >= 0 && c.end != kUnknown && w.low > c.end;
      if (!c.damage) {
        if (hole) holes.push_back({c.topic, c.partition, c.end, w.low});
        continue;
      }
      const PartitionDamage& d = *c.damage;
      if (w.low > d.from) {
        // The damaged block's offsets Kafka no longer holds, and apart from
        // them the hole past the archive's end: the records between are
        // intact in the archive.
        const bool apart = hole && d.damaged_end != INT64_MAX && d.damaged_end < w.low && c.end >= d.damaged_end;
        std::string what = Range(d.topic, d.partition, d.from, std::min(w.low, apart ? d.damaged_end : INT64_MAX)) +
                           " are lost: " + d.what + ", and Kafka's log of that partition now starts at " +
                           std::to_string(w.low);
        if (apart) {
          what += "; and " + HoleLost({c.topic, c.partition, c.end, w.low});
        }
        add_lost(what);
      } else if (w.high < d.from) {
        add_lost(d.what + ", and Kafka's log of " + Partition(d.topic, d.partition) + " ends at " +
                 std::to_string(w.high) + ", before the archive's " + std::to_string(d.from) +
                 " (the topic was recreated?)");
      } else {
        damaged.push_back(&d);
      }
    }
  }
  consumer->reset();
  for (const auto& topic : options.topics) {
    size_t partitions = 0, bad = 0, holed = 0;
    for (const auto& c : checked) {
      if (c.topic != topic) continue;
      ++partitions;
      if (c.damage) ++bad;
    }
    for (const auto& h : holes) holed += h.topic == topic ? 1 : 0;
    summary.lines.push_back(topic + ": every block of " + std::to_string(partitions) + " partition(s) verified; " +
                            (bad == 0 ? std::string("no damage") : std::to_string(bad) + " damaged") +
                            (holed == 0 ? std::string()
                                        : "; " + std::to_string(holed) + " with a hole past the archive's end"));
  }
  if (!lost.empty()) {
    for (const auto& h : holes) add_lost(HoleLost(h));
    return Status::DataLoss(lost + ". Nothing was changed: the blocks around the damage are intact, but the archive "
                                   "cannot be read or extended across it");
  }
  if (!holes.empty()) {
    summary.whole = Status::DataLoss("the archive is not whole, and --repair cannot refetch what Kafka deleted: " +
                                     ArchiveHoleText(holes));
  }
  if (damaged.empty()) return summary;

  std::vector<std::string> topics;
  std::vector<std::string> aside;  // per damaged partition: what was moved aside
  ArchiverOptions refetch = options;
  for (const PartitionDamage* d : damaged) {
    PartitionLock lock;
    KAPPA_RETURN_IF_ERROR(lock.Lock(d->segment.substr(0, d->segment.rfind('/')), "--repair"));
    // Looked at again under the lock: an archiver may have run meanwhile.
    auto again = FindDamage(options.root, d->topic, d->partition);
    if (!again.ok()) return again.status();
    if (!*again || (*again)->segment != d->segment || (*again)->byte != d->byte) {
      return Status::Aborted("the archive of " + Partition(d->topic, d->partition) +
                             " changed during --repair; run it again");
    }
    std::vector<std::string> moved;
    if (Status st = MoveDamagedTailAside(*d, &moved); !st.ok()) {
      return st.WithContext(Partition(d->topic, d->partition) + ": moving the damaged tail aside: ");
    }
    std::string line = Partition(d->topic, d->partition) + ": " + d->what + "; moved aside to";
    for (const auto& m : moved) line += " " + m;
    aside.push_back(std::move(line));
    if (std::find(topics.begin(), topics.end(), d->topic) == topics.end()) topics.push_back(d->topic);
    refetch.only_partitions.emplace_back(d->topic, d->partition);
    ++summary.damaged;
  }
  refetch.topics = topics;
  refetch.stop_at_end = true;
  auto archived = RunArchiver(config, refetch, stop);
  if (!archived.ok()) {
    std::string what;
    for (const auto& line : aside) what += (what.empty() ? "" : "; ") + line;
    return archived.status().WithContext(what + "; refetching from Kafka: ");
  }
  summary.refetched = archived->records;
  // What each partition got back.
  for (size_t i = 0; i < damaged.size(); ++i) {
    const PartitionDamage& d = *damaged[i];
    auto end = ArchivedEnd(options.root, d.topic, d.partition);
    if (!end.ok()) return end.status();
    std::string line = aside[i] + "; ";
    if (*end > d.from && *end != kUnknown) {
      line += "refetched " + Range(d.topic, d.partition, d.from, *end) + " from Kafka";
    } else {
      line += "nothing to refetch (Kafka's log ends at offset " + std::to_string(d.from) + ")";
    }
    summary.lines.push_back(std::move(line));
  }
  return summary;
}

Status WithRepairAdvice(const Status& st, const std::string& root, const std::string& topic) {
  if (st.code() != Status::Code::kCorruption || st.message().find("kappa archive") != std::string::npos) return st;
  return Status::Corruption(st.message() + "; `kappa archive -a " + root + " -t " + topic +
                            " -b BROKERS --repair` moves the damage aside and fetches its records again from Kafka "
                            "while Kafka still holds them");
}

}  // namespace kappa
