// kappa dlq stats|show|replay: triage of a dead-letter topic and
// re-injection of its records into their source topic after a fix.
#include <flatbuffers/flatbuffers.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "base/clock.h"
#include "base/config_node.h"
#include "base/host.h"
#include "base/test_hooks.h"
#include "cli/command.h"
#include "cli/record_format.h"
#include "engine/reinjected.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_producer.h"
#include "kafka/topic_reader.h"
#include "replay/registry.h"
#include "schemas/dlq_record_generated.h"

namespace po = boost::program_options;

namespace kappa::cli {
namespace {

constexpr int64_t kHourMs = 3600LL * 1000;
constexpr int64_t kDayMs = 24 * kHourMs;
// Records re-injected between two flushes (and marker writes) by default:
// the most a crash between a flush and its marker write can inject twice.
constexpr int64_t kReplayBatch = 5000;

// One DLQ record, decoded from an aligned copy of its bytes.
struct DlqEntry {
  int32_t dlq_partition = 0;
  int64_t dlq_offset = 0;
  int64_t prev_offset = -1;  // of the record read before it in its partition; -1: none
  std::string bytes;  // aligned copy: FlatBuffers reads in place
  const schema::DlqRecord* record = nullptr;

  int32_t retry_count() const { return std::max(1, record->retry_count()); }
  int64_t first_failure_ms() const {
    return record->first_failure_at_ms() > 0 ? record->first_failure_at_ms() : record->failed_at_ms();
  }
  int64_t last_failure_ms() const {
    return record->last_failure_at_ms() > 0 ? record->last_failure_at_ms() : record->failed_at_ms();
  }
  std::string error_type() const { return schema::EnumNameDlqErrorType(record->error_type()); }
  std::string source() const {
    return (record->source_topic() ? record->source_topic()->str() : std::string("?")) + "[" +
           std::to_string(record->source_partition()) + "]@" + std::to_string(record->source_offset());
  }
  std::string where(const std::string& topic) const {
    return topic + "[" + std::to_string(dlq_partition) + "]@" + std::to_string(dlq_offset);
  }
  // The failed source record: versions sharing a DLQ each dead-letter it.
  std::tuple<std::string, int32_t, int64_t> source_key() const {
    return {record->source_topic() ? record->source_topic()->str() : std::string(), record->source_partition(),
            record->source_offset()};
  }
  bool twin = false;  // replay: its source record is re-injected through another DLQ record
  std::pair<std::string, int32_t> job_version() const {
    return {record->job() ? record->job()->str() : std::string(), record->version()};
  }
};

// Reads every record of the DLQ topic; *undecodable counts those that are
// not DlqRecords (another producer's records in the topic). *log_starts:
// each partition's first offset still in the topic (above 0: dead letters
// deleted before this read, by retention or a delete-records).
Status ReadDlq(const KafkaConfig& config, const std::string& topic, const std::function<void(DlqEntry&)>& on_entry,
               int64_t* undecodable, std::vector<int64_t>* log_starts) {
  *undecodable = 0;
  std::map<int32_t, int64_t> last;
  auto summary = ReadTopic(config, topic, [&](const ConsumedRecord& r) {
    DlqEntry e;
    e.dlq_partition = r.partition;
    e.dlq_offset = r.offset;
    auto it = last.find(r.partition);
    e.prev_offset = it == last.end() ? -1 : it->second;
    last[r.partition] = r.offset;
    e.bytes.assign(r.value.data(), r.value.size());
    flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size());
    if (!schema::VerifyDlqRecordBuffer(v)) {
      ++*undecodable;
      return;
    }
    e.record = schema::GetDlqRecord(e.bytes.data());
    on_entry(e);
  });
  if (!summary.ok()) {
    if (summary.status().code() == Status::Code::kNotFound) {
      return Status::NotFound("DLQ topic " + topic + " does not exist: check the name (the spec's `dlq.topic`; "
                              "records that failed more than dlq.max_retries times are in <topic>.parked)");
    }
    return summary.status();
  }
  *log_starts = summary->log_start_offsets;
  return Status::OK();
}

// The dead letters deleted from the DLQ before a read ("partition 2 offsets
// 0-4413, ..."), "" when none. A deletion is the DLQ topic's retention (it
// deletes dead letters nobody triaged: nothing else in Kafka says so).
std::string DeletedWarning(const std::string& topic, const std::vector<int64_t>& log_starts) {
  int64_t n = 0;
  std::string where;
  for (size_t p = 0; p < log_starts.size(); ++p) {
    if (log_starts[p] <= 0) continue;
    n += log_starts[p];
    where += (where.empty() ? "" : ", ") + std::string("partition ") + std::to_string(p) + " offsets 0-" +
             std::to_string(log_starts[p] - 1);
  }
  if (n == 0) return std::string();
  return std::to_string(n) + " dead letters of " + topic + " were deleted before this read (" + where +
         ": the topic's retention, or a delete-records) and are not counted, shown or re-injectable here; keep "
         "a DLQ longer than its triage takes (kafka-configs.sh --alter --entity-type topics --entity-name " + topic +
         " --add-config retention.ms=-1)";
}

Result<schema::DlqErrorType> ParseErrorType(const std::string& text) {
  for (int i = static_cast<int>(schema::DlqErrorType::MIN); i <= static_cast<int>(schema::DlqErrorType::MAX); ++i) {
    const auto t = static_cast<schema::DlqErrorType>(i);
    std::string name = schema::EnumNameDlqErrorType(t);
    std::string a = name, b = text;
    std::transform(a.begin(), a.end(), a.begin(), ::tolower);
    std::transform(b.begin(), b.end(), b.begin(), ::tolower);
    if (a == b) return t;
  }
  std::string names;
  for (const char* const* n = schema::EnumNamesDlqErrorType(); *n; ++n) names += std::string(names.empty() ? "" : ", ") + *n;
  return Status::InvalidArgument("--error-type " + text + ": not an error type; one of " + names);
}

// --since: ms since the epoch, or a duration back from now (30m, 2h, 7d).
Result<int64_t> ParseSince(const std::string& text) {
  int64_t ms = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (!text.empty() && r.ec == std::errc() && r.ptr == text.data() + text.size() && ms >= 0) return ms;
  auto d = ParseDurationMs(text);
  if (!d.ok()) {
    return Status::InvalidArgument("--since " + text +
                                   ": give a time in ms since the epoch or a duration back from now (30m, 2h, 7d)");
  }
  return WallClockMs() - *d;
}

std::string Age(int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 60000) return std::to_string(ms / 1000) + "s";
  if (ms < kHourMs) return std::to_string(ms / 60000) + "m";
  if (ms < kDayMs) return std::to_string(ms / kHourMs) + "h" + std::to_string(ms % kHourMs / 60000) + "m";
  return std::to_string(ms / kDayMs) + "d" + std::to_string(ms % kDayMs / kHourMs) + "h";
}

int Stats(int argc, char** argv) {
  po::options_description desc("options");
  std::string topic;
  desc.add_options()("help,h", "show this help")("topic", po::value<std::string>(&topic)->required(), "DLQ topic");
  AddKafkaOptions(desc);
  po::positional_options_description pos;
  pos.add("topic", 1);
  const std::string usage =
      "usage: kappa dlq stats TOPIC --brokers HOST:PORT\n\n"
      "Reads the DLQ topic TOPIC to its current end and prints how many records it holds by error type,\n"
      "by pipeline version, by source partition and by age (since the record FIRST failed, re-injections\n"
      "included: <1h, 1h-1d, 1d-7d, >7d), and the oldest record with its coordinates and age.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "dlq stats", usage, desc, &pos, vm); rc >= 0) return rc;
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("dlq stats", st);
  const int64_t now = WallClockMs();
  std::map<std::string, int64_t> by_type;
  std::map<std::pair<std::string, int32_t>, int64_t> by_version;  // (job, version)
  std::map<std::pair<std::string, int32_t>, int64_t> by_source;  // (topic, partition): numeric order
  std::map<int32_t, int64_t> by_retry;
  int64_t ages[4] = {0, 0, 0, 0};
  int64_t future = 0;  // first failed after now: the failing host's clock ahead of this one's
  int64_t total = 0, undecodable = 0;
  // Source records: one bad record is dead-lettered again by every version
  // sharing the DLQ, and by the same version after a restart (at least once).
  std::set<std::tuple<std::string, int32_t, int64_t>> sources;
  std::vector<int64_t> log_starts;
  std::optional<std::string> oldest_line;
  int64_t oldest_ms = 0;
  std::pair<int32_t, int64_t> oldest_at{0, 0};
  Status st = ReadDlq(
      config, topic,
      [&](DlqEntry& e) {
        ++total;
        sources.insert(e.source_key());
        ++by_type[e.error_type()];
        ++by_version[{e.record->job() ? e.record->job()->str() : std::string(), e.record->version()}];
        ++by_source[{e.record->source_topic() ? e.record->source_topic()->str() : std::string("?"),
                     e.record->source_partition()}];
        ++by_retry[e.retry_count()];
        const int64_t first = e.first_failure_ms();
        const int64_t age = now - first;
        if (age < 0) {
          ++future;  // counted as "<1h" before (a bug bash): a clock skew to look into
        } else {
          ages[age < kHourMs ? 0 : age < kDayMs ? 1 : age < 7 * kDayMs ? 2 : 3]++;
        }
        // Ties go to the first in DLQ order (partition, offset): the
        // record named changed from run to run (a bug bash).
        const std::pair<int32_t, int64_t> at{e.dlq_partition, e.dlq_offset};
        if (!oldest_line || first < oldest_ms || (first == oldest_ms && at < oldest_at)) {
          oldest_ms = first;
          oldest_at = at;
          oldest_line = e.source() + " (at " + e.where(topic) + "), first failed " + Age(age) + " ago (" +
                        std::to_string(first) + " ms), " + e.error_type() + ", retry_count " +
                        std::to_string(e.retry_count()) + ", job " +
                        (e.record->job() ? e.record->job()->str() : std::string("?")) + " version " +
                        std::to_string(e.record->version());
        }
      },
      &undecodable, &log_starts);
  if (!st.ok()) return Fail("dlq stats", st);
  std::printf("kappa dlq stats: %s: %lld records\n", topic.c_str(), static_cast<long long>(total));
  if (static_cast<int64_t>(sources.size()) < total) {
    // A crash's duplicates (a bug bash: 52769 records against the job's
    // 47749 dead letters, nothing said why).
    std::printf("  %lld distinct source records: the other %lld are a source record dead-lettered again (by "
                "another version sharing the DLQ, or by the same one after a restart); `dlq replay` re-injects "
                "each source record once\n",
                static_cast<long long>(sources.size()), static_cast<long long>(total) - static_cast<long long>(sources.size()));
  }
  if (const std::string deleted = DeletedWarning(topic, log_starts); !deleted.empty()) {
    // Retention's deletions read as a smaller DLQ (a bug bash: 35583
    // records of a job's 39997 dead letters, without a word).
    std::printf("  WARNING %s\n", deleted.c_str());
  }
  if (undecodable) {
    std::printf("  %lld records that are not DLQ records (ignored)\n", static_cast<long long>(undecodable));
  }
  std::printf("by error type:\n");
  for (const auto& [k, n] : by_type) std::printf("  %s: %lld\n", k.c_str(), static_cast<long long>(n));
  // A DLQ that several jobs share counts each job's versions apart (their
  // v1s are different logic): "<job> v<N>", and "v<N>" for one job's DLQ.
  const bool one_job = by_version.empty() || by_version.begin()->first.first == by_version.rbegin()->first.first;
  std::printf("by version:\n");
  for (const auto& [k, n] : by_version) {
    const std::string job = one_job ? "" : (k.first.empty() ? "?" : k.first) + " ";
    std::printf("  %sv%d: %lld\n", job.c_str(), k.second, static_cast<long long>(n));
  }
  std::printf("by source partition:\n");
  for (const auto& [k, n] : by_source) {
    std::printf("  %s[%d]: %lld\n", k.first.c_str(), k.second, static_cast<long long>(n));
  }
  std::printf("by retry count:\n");
  for (const auto& [k, n] : by_retry) std::printf("  %d: %lld\n", k, static_cast<long long>(n));
  std::printf("by age since first failure:\n  <1h: %lld\n  1h-1d: %lld\n  1d-7d: %lld\n  >7d: %lld\n",
              static_cast<long long>(ages[0]), static_cast<long long>(ages[1]), static_cast<long long>(ages[2]),
              static_cast<long long>(ages[3]));
  if (future > 0) {
    std::printf("  in the future: %lld (their first failure time is after this host's clock: a clock skew between "
                "the hosts that ran the job and this one)\n",
                static_cast<long long>(future));
  }
  std::printf("oldest: %s\n", oldest_line ? oldest_line->c_str() : "none");
  return 0;
}

int Show(int argc, char** argv) {
  po::options_description desc("options");
  std::string topic;
  std::string error_type;
  int64_t limit = 20;
  desc.add_options()("help,h", "show this help")("topic", po::value<std::string>(&topic)->required(), "DLQ topic")(
      "error-type", po::value<std::string>(&error_type), "only records of this error type (e.g. InvalidValue)")(
      "limit", po::value<int64_t>(&limit)->default_value(20), "print at most this many records (0: all)");
  AddKafkaOptions(desc);
  po::positional_options_description pos;
  pos.add("topic", 1);
  const std::string usage =
      "usage: kappa dlq show TOPIC --brokers HOST:PORT [--error-type T] [--limit N]\n\n"
      "Prints the DLQ records of TOPIC (in partition and offset order), one JSON line each: where it is\n"
      "in the DLQ, the original coordinates (source topic[partition]@offset), key, error type and\n"
      "message, retry count, first and last failure time, job, version and spec hash.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "dlq show", usage, desc, &pos, vm); rc >= 0) return rc;
  if (limit < 0) return Fail("dlq show", Status::InvalidArgument("--limit must not be negative (0: all)"));
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("dlq show", st);
  std::optional<schema::DlqErrorType> type;
  if (!error_type.empty()) {
    auto t = ParseErrorType(error_type);
    if (!t.ok()) return Fail("dlq show", t.status());
    type = *t;
  }
  int64_t shown = 0, matched = 0, undecodable = 0;
  std::vector<int64_t> log_starts;
  // Printed in partition and offset order, as the help says: the topic is
  // read with its partitions interleaved, and --limit 5 showed partition
  // 15's records or partition 0's from run to run (a bug bash). With a
  // limit only the first `limit` are kept (a max-heap on the position).
  using Line = std::pair<std::pair<int32_t, int64_t>, std::string>;
  std::vector<Line> lines;
  auto later = [](const Line& a, const Line& b) { return a.first < b.first; };
  Status st = ReadDlq(
      config, topic,
      [&](DlqEntry& e) {
        if (type && e.record->error_type() != *type) return;
        ++matched;
        const std::pair<int32_t, int64_t> at{e.dlq_partition, e.dlq_offset};
        if (limit > 0 && static_cast<int64_t>(lines.size()) >= limit && !(at < lines.front().first)) return;
        // A null key (absent) prints as null, an empty one as "".
        const std::string key =
            e.record->key() ? "\"" + JsonEscape(std::string(reinterpret_cast<const char*>(e.record->key()->data()),
                                                            e.record->key()->size())) +
                                  "\""
                            : std::string("null");
        std::string line = "{\"dlq\":\"" + JsonEscape(e.where(topic)) + "\",\"source\":\"" + JsonEscape(e.source()) +
                           "\",\"key\":" + key + ",\"record\":" +
                           FormatRecordJson(reinterpret_cast<const uint8_t*>(e.bytes.data()), e.bytes.size()) +
                           "}\n";
        lines.emplace_back(at, std::move(line));
        if (limit > 0) {
          std::push_heap(lines.begin(), lines.end(), later);
          if (static_cast<int64_t>(lines.size()) > limit) {
            std::pop_heap(lines.begin(), lines.end(), later);
            lines.pop_back();
          }
        }
      },
      &undecodable, &log_starts);
  if (!st.ok()) return Fail("dlq show", st);
  std::sort(lines.begin(), lines.end(), later);
  for (const Line& l : lines) std::fputs(l.second.c_str(), stdout);
  shown = static_cast<int64_t>(lines.size());
  if (const std::string deleted = DeletedWarning(topic, log_starts); !deleted.empty()) {
    std::fprintf(stderr, "kappa dlq show: WARNING %s\n", deleted.c_str());
  }
  // Records that are not dead letters (the wrong topic given: the source)
  // were passed over without a word, "0 matching records" (a bug bash);
  // `dlq stats` counts them.
  const std::string skipped =
      undecodable > 0 ? "; " + std::to_string(undecodable) + " records that are not DLQ records (ignored: is " + topic +
                            " a DLQ topic?)"
                      : std::string();
  std::fprintf(stderr, "kappa dlq show: %s: %lld matching records, %lld shown%s%s\n", topic.c_str(),
               static_cast<long long>(matched), static_cast<long long>(shown),
               limit > 0 && matched > shown ? " (raise --limit, 0 for all)" : "", skipped.c_str());
  return 0;
}

// The DLQ offsets already re-injected from one DLQ partition: sorted,
// disjoint, inclusive ranges, stored as "a-b,c-d" under
// "dlq-replayed/<dlq topic>/<partition>" in the control topic.
using Ranges = std::vector<std::pair<int64_t, int64_t>>;

Ranges ParseRanges(const std::string& text) {
  Ranges out;
  size_t i = 0;
  while (i < text.size()) {
    size_t comma = text.find(',', i);
    if (comma == std::string::npos) comma = text.size();
    const std::string part = text.substr(i, comma - i);
    const size_t dash = part.find('-');
    if (dash != std::string::npos) {
      int64_t a = 0, b = 0;
      std::from_chars(part.data(), part.data() + dash, a);
      std::from_chars(part.data() + dash + 1, part.data() + part.size(), b);
      if (a <= b) out.emplace_back(a, b);
    }
    i = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string FormatRanges(const Ranges& ranges) {
  std::string out;
  for (const auto& [a, b] : ranges) out += (out.empty() ? "" : ",") + std::to_string(a) + "-" + std::to_string(b);
  return out;
}

bool Covered(const Ranges& ranges, int64_t offset) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), std::make_pair(offset, INT64_MAX));
  if (it == ranges.begin()) return false;
  --it;
  return offset >= it->first && offset <= it->second;
}

// How many offsets below `end` the ranges cover.
int64_t CoveredCount(const Ranges& ranges, int64_t end) {
  int64_t n = 0;
  for (const auto& [a, b] : ranges) {
    if (a < end) n += std::min(b, end - 1) - a + 1;
  }
  return n;
}

// Adds [a, b] to ranges, merging what overlaps or touches.
void AddRange(Ranges& ranges, int64_t a, int64_t b) {
  ranges.emplace_back(a, b);
  std::sort(ranges.begin(), ranges.end());
  Ranges merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  ranges = std::move(merged);
}

std::string MarkerKey(const std::string& topic, int32_t partition) {
  return "dlq-replayed/" + topic + "/" + std::to_string(partition);
}

// Written before each batch is produced, cleared after the last: the
// target topic and its log end offsets then ("<to>\n<o0>,<o1>,..."). A run
// killed between a batch's flush and its markers left that batch to be
// injected again by the rerun (a bug bash: 1,000 and 3,000 records, each
// then counted twice); the rerun reads the target from these offsets and
// marks the DLQ records whose copies it finds there (header kappa.dlq).
std::string InflightKey(const std::string& topic) { return "dlq-inflight/" + topic; }

int Replay(int argc, char** argv) {
  po::options_description desc("options");
  std::string topic, to, error_type, since_text, control_topic;
  desc.add_options()("help,h", "show this help")("topic", po::value<std::string>(&topic)->required(), "DLQ topic")(
      "to", po::value<std::string>(&to)->required(), "the source topic to re-inject into")(
      "error-type", po::value<std::string>(&error_type), "only records of this error type (e.g. InvalidValue)")(
      "since", po::value<std::string>(&since_text),
      "only records whose last failure is at or after this time: ms since the epoch, or a duration back "
      "from now (30m, 2h, 7d)")("control-topic", po::value<std::string>(&control_topic)->default_value("kappa.control"),
                                "where the re-injection markers are kept")(
      "dry-run", "print what would be re-injected, inject nothing")(
      "any-source", "also re-inject records whose source topic was another than --to (a DLQ shared by jobs on "
                    "several topics; by default those are left and counted)")(
      "force", "accepted for older scripts: re-injected copies no longer need it (a version that accepted the "
               "original skips its copy)")(
      "batch-records", po::value<int64_t>()->default_value(kReplayBatch),
      "records per flush and marker write (a rerun after a crash finds a flushed batch's copies in the target "
      "and marks them)");
  AddKafkaOptions(desc);
  po::positional_options_description pos;
  pos.add("topic", 1);
  const std::string usage =
      "usage: kappa dlq replay TOPIC --to SOURCE_TOPIC --brokers HOST:PORT [--error-type T] [--since TIME]\n\n"
      "Re-injects the DLQ records of TOPIC (those matching the filters) into SOURCE_TOPIC after a fix:\n"
      "the ORIGINAL key and payload bytes, into the partition they came from when SOURCE_TOPIC has it\n"
      "(else the partitioner picks), with headers kappa.retry_count (how often it failed so far) and\n"
      "kappa.first_failure_at_ms, so that a record failing again comes back to the DLQ with retry_count + 1\n"
      "and its first failure time; past the spec's dlq.max_retries (default 3) it goes to <dlq>.parked.\n"
      "Headers kappa.dlq_source (the original's topic[partition]@offset) and kappa.dlq_rejected_by (the\n"
      "versions that dead-lettered it) let every version reading SOURCE_TOPIC that read the original and\n"
      "did not dead-letter it (one replayed from offset zero after a fix, say) skip the copy as a repeat\n"
      "(counted deduped); the versions that dead-lettered it, and those begun after it, process it.\n"
      "Truncated DLQ records (too large to keep whole) are refused and named on stderr at every run (their\n"
      "bytes are not in the DLQ, re-produce them from their origin); they do not change the exit status.\n"
      "Records whose source topic is another than SOURCE_TOPIC (a DLQ shared by jobs) are left and counted\n"
      "on stderr, unless --any-source.\n"
      "SinkRejected records (output rows the PostgreSQL sink refused) are not source records: they are left\n"
      "where they are and counted on stderr.\n"
      "The log archive keeps these headers: a replay of history from it treats the copies as one from Kafka\n"
      "does.\n\n"
      "Idempotent: the DLQ offsets re-injected are recorded per DLQ partition in the compacted control topic\n"
      "(key dlq-replayed/<TOPIC>/<partition>, written after the producer's flush acknowledged them), and\n"
      "offsets recorded there are never re-injected again, so running it twice injects nothing the second\n"
      "time; records filtered out stay available to a later run. Failure window: records are flushed and\n"
      "marked in batches (--batch-records, 5000); a crash between a batch's flush and its marker write re-injects at most\n"
      "that batch on the next run (a stop, Ctrl-C or SIGTERM, ends it between two batches, exit 1, and a\n"
      "rerun injects the rest). One replay of a DLQ at a time: a second one while another runs is refused\n"
      "(a lease in the control topic, lock/dlq-replay/<TOPIC>; one killed on another host holds it 30 s). Exit 1\n"
      "if a read or write failed (rerun once fixed: what was marked is not injected again).";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "dlq replay", usage, desc, &pos, vm); rc >= 0) return rc;
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("dlq replay", st);
  const bool dry_run = vm.count("dry-run") > 0;
  const int64_t batch_records = vm["batch-records"].as<int64_t>();
  if (batch_records < 1) {
    return Fail("dlq replay", Status::InvalidArgument("--batch-records must be at least 1, got " +
                                                      std::to_string(batch_records)));
  }
  // "dlq-replay-after-flush" / "dlq-replay-after-mark": the n-th batch was
  // acknowledged, before / after its markers were written (test builds).
  KAPPA_KILL_SWITCH(kill_switch);
  std::optional<schema::DlqErrorType> type;
  if (!error_type.empty()) {
    auto t = ParseErrorType(error_type);
    if (!t.ok()) return Fail("dlq replay", t.status());
    type = *t;
  }
  int64_t since = 0;
  if (!since_text.empty()) {
    auto s = ParseSince(since_text);
    if (!s.ok()) return Fail("dlq replay", s.status());
    since = *s;
  }

  Registry registry(config, control_topic);
  if (Status st = registry.Refresh(); !st.ok()) {
    return Fail("dlq replay", Status::Unavailable("cannot read the control topic " + control_topic +
                                                  " (where re-injections are recorded): " + st.message()));
  }
  // A target that is no source topic: the DLQ itself, its .parked, or a
  // topic a version writes (its output, DLQ or late records). Accepted, it
  // put raw source bytes among DLQ records or output rows (a bug bash).
  {
    std::string why;
    if (to == topic) why = "is the DLQ topic itself";
    else if (to == topic + ".parked") why = "is the DLQ's parked topic";
    // A topic some version reads is a source, whatever else writes it
    // (jobs whose DLQs are each other's sources).
    bool a_source = false;
    std::string written;  // what a version writes into `to`, if one does
    for (const std::string& job : registry.Jobs()) {
      const auto record = registry.Job(job);
      if (!record) continue;
      for (const VersionInfo& v : record->versions) {
        a_source |= v.source_topic == to;
        if (!written.empty()) continue;
        const std::string who = " of " + job + " v" + std::to_string(v.version);
        if (to == v.output_topic) written = "is the output topic" + who;
        else if (to == v.dlq_topic || (!v.dlq_topic.empty() && to == v.dlq_topic + ".parked")) written = "is the DLQ topic" + who;
        else if (to == v.late_topic) written = "is the late-records topic" + who;
      }
    }
    if (why.empty() && !a_source) why = written;
    if (!why.empty()) {
      return Fail("dlq replay", Status::InvalidArgument("--to " + to + " " + why +
                                                        ": --to names the source topic the records were read from "
                                                        "(the DLQ records' source, as `kappa dlq stats` lists it)"));
    }
  }
  // One replay of a DLQ at a time: two at once each re-injected every
  // record, both exiting 0 (a bug bash). A dry run writes nothing.
  std::unique_ptr<RegistryLease> lease;
  struct ReleaseAtExit {
    std::unique_ptr<RegistryLease>& lease;
    ~ReleaseAtExit() {
      if (lease) (void)lease->Release();
    }
  } release_at_exit{lease};
  if (!dry_run) {
    auto acquired = RegistryLease::Acquire(registry, "dlq-replay/" + topic,
                                           "kappa dlq replay on " + HostName() + ", pid " + std::to_string(getpid()));
    if (!acquired.ok()) {
      const bool held = acquired.status().code() == Status::Code::kFailedPrecondition;
      return Fail("dlq replay", held ? Status::FailedPrecondition(
                                           "another replay of " + topic + " is running: " +
                                           acquired.status().message() + "; two at once would each re-inject "
                                           "every record: wait for it, then run this again")
                                     : Status::Unavailable("cannot take the replay's lease in " + control_topic +
                                                           ": " + acquired.status().message()));
    }
    lease = std::move(*acquired);
  }
  std::map<int32_t, Ranges> done;  // per DLQ partition
  auto ranges_of = [&](int32_t p) -> Ranges& {
    auto it = done.find(p);
    if (it != done.end()) return it->second;
    auto value = registry.Value(MarkerKey(topic, p));
    return done[p] = value ? ParseRanges(*value) : Ranges{};
  };

  // A batch an earlier run produced and did not mark: its copies are
  // found in the target and marked, not injected again.
  // Per original ("<topic>[p]@o"), the versions such a copy was for, as
  // its header names them (RejectingVersion): their DLQ records of it are
  // marked too (a rerun made a second copy from the other version's, a bug
  // bash).
  std::map<std::string, std::set<std::string>> copied_for;
  std::map<int32_t, bool> marked_late;  // DLQ partitions whose markers that adds to
  if (auto inflight = registry.Value(InflightKey(topic)); inflight && !inflight->empty()) {
    const size_t nl = inflight->find('\n');
    const std::string target = inflight->substr(0, nl);
    std::vector<int64_t> from;
    if (nl != std::string::npos) {
      const std::string list = inflight->substr(nl + 1);
      for (size_t at = 0; at < list.size();) {
        size_t comma = list.find(',', at);
        if (comma == std::string::npos) comma = list.size();
        from.push_back(std::strtoll(list.substr(at, comma - at).c_str(), nullptr, 10));
        at = comma + 1;
      }
    }
    std::map<int32_t, bool> touched;
    int64_t found = 0;
    const std::string prefix = topic + "[";
    auto read = ReadTopic(config, target, [&](const ConsumedRecord& r) {
      const std::string where = r.Header(kDlqRecordHeader);  // "<dlq>[p]@o"
      if (where.rfind(prefix, 0) != 0) return;
      const size_t close = where.find("]@", prefix.size());
      if (close == std::string::npos) return;
      const int32_t p = std::atoi(where.substr(prefix.size(), close - prefix.size()).c_str());
      const int64_t o = std::strtoll(where.c_str() + close + 2, nullptr, 10);
      AddRange(ranges_of(p), o, o);
      touched[p] = true;
      ++found;
      // The other versions' DLQ records of the same original, which the
      // copy was for too: marked when the DLQ is read below.
      const std::string rejected_by = r.Header(kDlqRejectedByHeader);
      std::set<std::string>& versions = copied_for[r.Header(kDlqSourceHeader)];
      for (size_t at = 0; at < rejected_by.size();) {
        size_t comma = rejected_by.find(',', at);
        if (comma == std::string::npos) comma = rejected_by.size();
        versions.insert(rejected_by.substr(at, comma - at));
        at = comma + 1;
      }
    }, 15000, from.empty() ? nullptr : &from, -1, 0);
    if (!read.ok()) {
      return Fail("dlq replay", Status::Unavailable("an earlier replay of " + topic + " was stopped between "
                                                    "re-injecting a batch into " + target + " and marking it, and "
                                                    "reading " + target + " for that batch's copies failed: " +
                                                    read.status().message() + "; rerun once it can be read"));
    }
    std::fprintf(stderr,
                 "kappa dlq replay: an earlier run was stopped between re-injecting a batch into %s and marking "
                 "it: %lld of its records are in %s already%s\n",
                 target.c_str(), static_cast<long long>(found), target.c_str(),
                 dry_run ? " (a run would mark them)" : ": marked, not injected again");
    if (!dry_run) {
      for (const auto& [p, _] : touched) {
        if (Status ws = registry.PutValue(MarkerKey(topic, p), FormatRanges(ranges_of(p))); !ws.ok()) {
          return Fail("dlq replay", Status::Unavailable("marking the copies found in " + target + " in " +
                                                        control_topic + " failed: " + ws.message() + "; rerun"));
        }
      }
      if (Status ws = registry.PutValue(InflightKey(topic), ""); !ws.ok()) return Fail("dlq replay", ws);
    }
  }

  // What to inject, in DLQ order.
  std::vector<DlqEntry> selected;
  std::vector<std::string> refused;
  int64_t skipped_done = 0, filtered = 0, undecodable = 0, sink_rows = 0;
  std::map<std::string, int64_t> other_sources;  // records of other source topics, left where they are
  const bool any_source = vm.count("any-source") > 0;
  std::string first_sink_row;
  // Per source record, the versions (job, version) an earlier run served:
  // those of its DLQ records marked then. A re-injected copy lists the
  // versions it is for (kappa.dlq_rejected_by); the others skip it where
  // they read the original (engine/reinjected.h).
  using SourceKey = std::tuple<std::string, int32_t, int64_t>;
  using JobVersion = std::pair<std::string, int32_t>;
  std::map<SourceKey, std::set<JobVersion>> served;
  std::vector<int64_t> log_starts;
  // The lease is renewed while a large DLQ is read too.
  auto renewed = std::chrono::steady_clock::now();
  Status renewal;
  Status st = ReadDlq(
      config, topic,
      [&](DlqEntry& e) {
        if (lease && renewal.ok() && std::chrono::steady_clock::now() - renewed > std::chrono::seconds(5)) {
          renewal = lease->Renew();
          renewed = std::chrono::steady_clock::now();
        }
        if (!copied_for.empty() && !Covered(ranges_of(e.dlq_partition), e.dlq_offset)) {
          if (auto it = copied_for.find(e.source());
              it != copied_for.end() && it->second.count(RejectingVersion(e.job_version().first, e.job_version().second))) {
            AddRange(ranges_of(e.dlq_partition), e.dlq_offset, e.dlq_offset);
            marked_late[e.dlq_partition] = true;
          }
        }
        if (Covered(ranges_of(e.dlq_partition), e.dlq_offset)) {
          ++skipped_done;
          served[e.source_key()].insert(e.job_version());
          return;
        }
        if ((type && e.record->error_type() != *type) || e.last_failure_ms() < since) {
          ++filtered;
          return;
        }
        if (e.record->error_type() == schema::DlqErrorType::SinkRejected) {
          // An output row PostgreSQL refused: its payload is the row's text,
          // not a source record (a bug bash: re-injected, it came back as
          // an Undecodable record of the source, and the row never reached
          // the table).
          ++sink_rows;
          if (first_sink_row.empty()) first_sink_row = e.where(topic);
          return;
        }
        if (const std::string source = e.record->source_topic() ? e.record->source_topic()->str() : "";
            !any_source && !source.empty() && source != to) {
          // Another job's source (a DLQ shared by jobs): re-injected into
          // `to`, it was input of the wrong job (a bug bash).
          ++other_sources[source];
          return;
        }
        if (e.record->truncated()) {
          // Which was cut: the payload, the key, or both (a bug bash: a
          // 1.2 MB key was reported as "original size 8 bytes").
          const auto* d = e.record;
          const bool payload_cut = d->payload() == nullptr || d->original_size() > d->payload()->size();
          const bool key_cut = d->original_key_size() > 0 && (d->key() == nullptr ||
                                                              d->original_key_size() > d->key()->size());
          std::string what;
          if (payload_cut || !key_cut) what = "payload of " + std::to_string(d->original_size()) + " bytes";
          if (key_cut) {
            what += (what.empty() ? "" : " and ") + std::string("key of ") + std::to_string(d->original_key_size()) +
                    " bytes";
          }
          refused.push_back(e.where(topic) + " (source " + e.source() + ", its " + what + " cut)");
          return;
        }
        selected.push_back(std::move(e));
      },
      &undecodable, &log_starts);
  if (!st.ok()) return Fail("dlq replay", st);
  if (!renewal.ok()) return Fail("dlq replay", renewal);
  if (!dry_run) {
    for (const auto& [p, _] : marked_late) {
      if (Status ws = registry.PutValue(MarkerKey(topic, p), FormatRanges(ranges_of(p))); !ws.ok()) {
        return Fail("dlq replay", Status::Unavailable("marking the DLQ records an earlier run's copies were for in " +
                                                      control_topic + " failed: " + ws.message() + "; rerun"));
      }
    }
  }
  if (undecodable > 0) {
    // "0 records would be re-injected" and nothing else, given the wrong topic (a bug bash).
    std::fprintf(stderr, "kappa dlq replay: %lld records of %s are not DLQ records (ignored: is %s a DLQ topic?)\n",
                 static_cast<long long>(undecodable), topic.c_str(), topic.c_str());
  }
  if (const std::string deleted = DeletedWarning(topic, log_starts); !deleted.empty()) {
    // Of the deleted offsets, those an earlier replay had re-injected are
    // not lost: its markers say which.
    int64_t never = 0;
    for (size_t p = 0; p < log_starts.size(); ++p) {
      if (log_starts[p] > 0) never += log_starts[p] - CoveredCount(ranges_of(static_cast<int32_t>(p)), log_starts[p]);
    }
    std::fprintf(stderr, "kappa dlq replay: WARNING %s; %lld of them had not been re-injected by an earlier replay\n",
                 deleted.c_str(), static_cast<long long>(never));
  }
  // Versions that share a DLQ (a replaying version beside the live one)
  // each dead-letter the same bad source record: one re-injection serves
  // them all, as both read the source topic. Each copy was re-injected
  // (a bug bash: 96 bad records came back as 192, then 384). The others are
  // marked done with it.
  // A version that dead-letters the record later (a replay behind the live
  // version, after the copy was made) is not among those the copy is for:
  // its dead letter makes another copy, for it alone (with one copy for
  // all it skipped it: a bug bash).
  int64_t twins = 0;
  int64_t own_twins = 0;  // of them, a version's own dead letter again (at least once, after a restart)
  std::map<SourceKey, std::set<JobVersion>> rejected_by;  // the versions this run's copy of each record is for
  for (const DlqEntry& e : selected) {
    if (!served[e.source_key()].count(e.job_version())) rejected_by[e.source_key()].insert(e.job_version());
  }
  std::set<SourceKey> injecting;
  std::map<SourceKey, std::set<JobVersion>> seen_from = served;
  // Per original, the DLQ records marked with its copy: in the batch that
  // makes the copy, wherever they stand in the DLQ. Marked only in their own
  // later batch, a run stopped in between left them, and the rerun made a
  // second copy from them (a bug bash: 1,821 of 111,689 records twice).
  std::map<SourceKey, std::vector<size_t>> twins_of;
  for (size_t i = 0; i < selected.size(); ++i) {
    DlqEntry& e = selected[i];
    e.twin = rejected_by[e.source_key()].empty() || !injecting.insert(e.source_key()).second;
    if (e.twin && !rejected_by[e.source_key()].empty()) twins_of[e.source_key()].push_back(i);
    twins += e.twin;
    const bool again = !seen_from[e.source_key()].insert(e.job_version()).second;
    own_twins += e.twin && again;
  }
  // A re-injected record is input to every version reading the topic: one
  // that accepted the original counted it again (a bug bash: after a
  // schema change v2 rejected 50 records v1, serving, had counted; the
  // replay made v1's window 150 instead of 100), and so did a fixed version
  // replayed from offset zero (a bug bash: 3,491 of 3,525 counted twice).
  // The copy names its original and the versions that dead-lettered it:
  // the others skip it where they read the original (engine/reinjected.h).
  // Said here for the versions running now.
  std::map<std::pair<std::string, int32_t>, int64_t> accepted_by;
  std::map<std::string, std::optional<JobRecord>> jobs;  // registry records, looked up once per job
  auto job_record = [&](const std::string& job) -> const std::optional<JobRecord>& {
    auto it = jobs.find(job);
    return it != jobs.end() ? it->second : jobs.emplace(job, registry.Job(job)).first->second;
  };
  std::vector<std::pair<std::string, int32_t>> readers;
  for (const std::string& job : registry.Jobs()) {
    const auto& record = job_record(job);
    if (!record) continue;
    for (const VersionInfo& v : record->versions) {
      if (v.state != VersionState::kRetired && v.source_topic == to) readers.emplace_back(job, v.version);
    }
  }
  for (const DlqEntry& e : selected) {
    if (e.twin) continue;
    const auto& rejecting = rejected_by[e.source_key()];
    for (const auto& reader : readers) {
      if (!rejecting.count(reader)) ++accepted_by[reader];
    }
  }
  if (!accepted_by.empty()) {
    std::string who;
    for (const auto& [jv, n] : accepted_by) {
      if (!who.empty()) who += ", ";
      const auto& record = job_record(jv.first);
      who += jv.first + " v" + std::to_string(jv.second) + (record && record->serving == jv.second ? " (serving)" : "") +
             ": " + std::to_string(n);
    }
    std::fprintf(stderr,
                 "kappa dlq replay: versions reading %s that did not dead-letter some of these records (%s of "
                 "them) skip their copies where they read the original, and process those of records they had "
                 "not read (begun after them)\n",
                 to.c_str(), who.c_str());
  }

  if (!other_sources.empty()) {
    std::string which;
    int64_t n = 0;
    for (const auto& [source, count] : other_sources) {
      which += (which.empty() ? "" : ", ") + source + ": " + std::to_string(count);
      n += count;
    }
    std::fprintf(stderr,
                 "kappa dlq replay: left %lld records that came from other source topics (%s): they are not "
                 "records of %s; replay them with --to their topic, or pass --any-source to put them into %s\n",
                 static_cast<long long>(n), which.c_str(), to.c_str(), to.c_str());
  }
  for (const auto& r : refused) {
    std::fprintf(stderr,
                 "kappa dlq replay: refused %s: truncated in the DLQ, its original bytes are gone; re-produce it "
                 "from its origin (payload_xxh3 in `kappa dlq show` identifies it)\n",
                 r.c_str());
  }
  if (sink_rows > 0) {
    std::fprintf(stderr,
                 "kappa dlq replay: left %lld SinkRejected records (the first: %s): they are output rows the "
                 "PostgreSQL sink refused, not source records, and re-injecting them would feed the job its own "
                 "output; fix what refused them (the table's constraint, a column's type) and write them to the "
                 "table yourself (`kappa dlq show` prints each row and the database's message)\n",
                 static_cast<long long>(sink_rows), first_sink_row.c_str());
  }
  // ", N more DLQ records of the same source records ..." when there are.
  // A version's own dead letters written twice (at least once, across a
  // restart) were called "another version's" (a bug bash).
  auto twins_text = [&] {
    if (twins == 0) return std::string();
    const int64_t others = twins - own_twins;
    const std::string whose =
        own_twins == 0 ? "another version's"
        : others == 0  ? "the same version's, dead-lettered again after a restart"
                       : std::to_string(others) + " another version's, " + std::to_string(own_twins) +
                            " the same version's, dead-lettered again after a restart";
    return ", " + std::to_string(twins) + " more DLQ records of the same source records (" + whose +
           ") marked with them";
  };
  // The target must be there, a dry run's too (it was said only by a real
  // run: a bug bash).
  std::unique_ptr<KafkaProducer> producer;
  int32_t partitions = 0;
  if (!selected.empty()) {
    ProducerOptions options = BulkProducerOptions();
    options.client = "dlq replay producer";
    options.message_timeout_ms = 60000;
    auto created = KafkaProducer::Create(config, std::move(options));
    if (!created.ok()) return Fail("dlq replay", created.status());
    producer = std::move(*created);
    auto count = TopicPartitionCount(producer->handle(), to, 15000);
    if (!count.ok()) {
      return Fail("dlq replay", Status::NotFound("the target topic " + to + " is not there (" +
                                                 count.status().message() +
                                                 "): --to names the job's source topic, which must exist"));
    }
    partitions = *count;
  }
  if (dry_run || selected.empty()) {
    for (const auto& e : selected) {
      if (e.twin) continue;
      std::printf("would re-inject %s -> %s[%d] (retry_count %d, %s)\n", e.where(topic).c_str(), to.c_str(),
                  e.record->source_partition(), e.retry_count(), e.error_type().c_str());
    }
    std::printf("kappa dlq replay: %s -> %s: %lld records %s%s, %lld already re-injected before, %lld filtered "
                "out, %zu refused (truncated)\n",
                topic.c_str(), to.c_str(), static_cast<long long>(selected.size()) - twins,
                dry_run ? "would be re-injected" : "re-injected", twins_text().c_str(),
                static_cast<long long>(skipped_done), static_cast<long long>(filtered), refused.size());
    return 0;
  }


  size_t injected = 0;
  size_t begin = 0;
  // A stop (Ctrl-C, SIGTERM) ends the replay between batches, each
  // re-injected and marked: killed by the signal mid-batch, a rerun
  // injected that batch again (a bug bash: 200 duplicates from one Ctrl-C).
  StopToken stop = InstallStopSignals();
  size_t to_inject = 0;
  for (const DlqEntry& e : selected) to_inject += !e.twin;
  while (begin < selected.size()) {
    if (std::chrono::steady_clock::now() - renewed > std::chrono::seconds(5)) {
      if (Status rs = lease->Renew(); !rs.ok()) return Fail("dlq replay", rs);
      renewed = std::chrono::steady_clock::now();
    }
    if (stop.stop_requested()) {
      if (Status ws = registry.PutValue(InflightKey(topic), ""); !ws.ok()) return Fail("dlq replay", ws);
      std::printf("kappa dlq replay: %s -> %s: stopped as asked after %zu of %zu records re-injected and marked; "
                  "the other %zu were not touched: rerun to re-inject them\n",
                  topic.c_str(), to.c_str(), injected, to_inject, to_inject - injected);
      return 1;
    }
    const size_t end = std::min(selected.size(), begin + static_cast<size_t>(batch_records));
    {
      // Where the target ends before this batch (InflightKey).
      auto marks = QueryTopicWatermarks(producer->handle(), to, 15000);
      if (!marks.ok()) return Fail("dlq replay", marks.status());
      std::string value = to + "\n";
      for (size_t p = 0; p < marks->size(); ++p) value += (p ? "," : "") + std::to_string((*marks)[p].high);
      if (Status ws = registry.PutValue(InflightKey(topic), value); !ws.ok()) {
        return Fail("dlq replay", Status::Unavailable("writing to " + control_topic + " failed: " + ws.message() +
                                                      "; nothing of this batch was injected: rerun"));
      }
    }
    for (size_t i = begin; i < end; ++i) {
      const DlqEntry& e = selected[i];
      if (e.twin) continue;
      const auto* d = e.record;
      const std::string retries = std::to_string(e.retry_count());
      const std::string first = std::to_string(e.first_failure_ms());
      const std::string from = e.where(topic);
      std::string rejecting;
      for (const auto& [job, version] : rejected_by[e.source_key()]) {
        rejecting += (rejecting.empty() ? "" : ",") + RejectingVersion(job, version);
      }
      const std::string source = e.source();
      // An earlier run re-injected this original for other versions: a
      // version begun after the original has processed that copy.
      const bool copied_before = served.count(e.source_key()) > 0 && !served[e.source_key()].empty();
      const KafkaHeader headers[] = {{kRetryCountHeader, retries},
                                     {kFirstFailureHeader, first},
                                     {kDlqRecordHeader, from},
                                     {kDlqSourceHeader, source},
                                     {kDlqRejectedByHeader, rejecting},
                                     {kDlqCopiedBeforeHeader, "1"}};
      const size_t header_count = copied_before ? 6 : 5;
      const int32_t partition =
          d->source_partition() >= 0 && d->source_partition() < partitions ? d->source_partition()
                                                                             : KafkaProducer::kAnyPartition;
      const std::string_view key = d->key() ? std::string_view(reinterpret_cast<const char*>(d->key()->data()),
                                                               d->key()->size())
                                            : std::string_view();
      const std::string_view payload =
          d->payload() ? std::string_view(reinterpret_cast<const char*>(d->payload()->data()), d->payload()->size())
                       : std::string_view();
      // With its original Kafka timestamp: a job whose event time is
      // kafka.timestamp counted a re-injected record at the time of the
      // replay, in the current window, and moved the partition's watermark
      // to now (a bug bash). 0 (not known): the broker stamps it.
      const int64_t timestamp_ms = std::max<int64_t>(0, d->source_timestamp_ms());
      if (Status ps = producer->Produce(to, partition, key, payload,
                                        std::span<const KafkaHeader>(headers, header_count), timestamp_ms);
          !ps.ok()) {
        return Fail("dlq replay", Status::Unavailable(ps.message() + "; nothing of this batch is marked: rerun"));
      }
    }
    if (Status fs = producer->Flush(60000); !fs.ok()) {
      return Fail("dlq replay",
                  Status::Unavailable("re-injecting into " + to + " failed after " + std::to_string(injected) +
                                      " records were re-injected and marked: " + fs.message() +
                                      (fs.code() == Status::Code::kPermissionDenied
                                           ? "; rerun once the ACLs are granted"
                                           : "; rerun once the broker is back") +
                                      " (some records of the failed batch may already be in " + to +
                                      " and would be injected again)"));
    }
    KAPPA_KILL_POINT(kill_switch, "dlq-replay-after-flush");
    // Acknowledged: record them as done, per DLQ partition, as ranges of
    // records that follow each other in what was read (so offsets without a
    // record, e.g. transaction markers, do not split a range); a record read
    // but not selected (filtered, refused) does.
    std::map<int32_t, std::pair<int64_t, int64_t>> open;  // partition -> range being built
    std::map<int32_t, bool> touched;
    for (size_t i = begin; i < end; ++i) {
      const DlqEntry& e = selected[i];
      if (!e.twin) {
        if (auto twins = twins_of.find(e.source_key()); twins != twins_of.end()) {
          for (size_t j : twins->second) {
            AddRange(ranges_of(selected[j].dlq_partition), selected[j].dlq_offset, selected[j].dlq_offset);
            touched[selected[j].dlq_partition] = true;
          }
        }
      }
      touched[e.dlq_partition] = true;
      auto it = open.find(e.dlq_partition);
      if (it != open.end() && e.prev_offset == it->second.second) {
        it->second.second = e.dlq_offset;
        continue;
      }
      if (it != open.end()) AddRange(ranges_of(e.dlq_partition), it->second.first, it->second.second);
      open[e.dlq_partition] = {e.dlq_offset, e.dlq_offset};
    }
    for (const auto& [p, r] : open) AddRange(ranges_of(p), r.first, r.second);
    for (const auto& [p, _] : touched) {
      if (Status ws = registry.PutValue(MarkerKey(topic, p), FormatRanges(ranges_of(p))); !ws.ok()) {
        return Fail("dlq replay",
                    Status::Unavailable("records were re-injected into " + to + " but marking them in " +
                                        control_topic + " failed: " + ws.message() +
                                        "; a rerun would inject this batch (up to " + std::to_string(batch_records) +
                                        " records) again"));
      }
    }
    KAPPA_KILL_POINT(kill_switch, "dlq-replay-after-mark");
    for (size_t i = begin; i < end; ++i) injected += !selected[i].twin;
    begin = end;
  }
  if (Status ws = registry.PutValue(InflightKey(topic), ""); !ws.ok()) return Fail("dlq replay", ws);
  std::printf("kappa dlq replay: %s -> %s: %zu records re-injected%s, %lld already re-injected before, %lld "
              "filtered out, %zu refused (truncated)\n",
              topic.c_str(), to.c_str(), injected, twins_text().c_str(), static_cast<long long>(skipped_done),
              static_cast<long long>(filtered), refused.size());
  return 0;
}

}  // namespace

int DlqCommand(int argc, char** argv) {
  const std::string usage =
      "usage: kappa dlq stats|show|replay TOPIC ... (kappa dlq <subcommand> --help)\n\n"
      "  stats    counts of a DLQ topic by error type, version, source partition and age; the oldest record\n"
      "  show     the DLQ records decoded, with their original coordinates, error and retry count\n"
      "  replay   re-inject the original records into their source topic after a fix (idempotent)";
  if (argc < 2) {
    std::cerr << "kappa dlq: which subcommand? stats, show or replay (see `kappa dlq --help`)" << std::endl;
    return 2;
  }
  const std::string sub = argv[1];
  if (sub == "stats") return Stats(argc - 1, argv + 1);
  if (sub == "show") return Show(argc - 1, argv + 1);
  if (sub == "replay") return Replay(argc - 1, argv + 1);
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::cout << usage << std::endl;
    return 0;
  }
  std::cerr << "kappa dlq: unknown subcommand " << sub << ": stats, show or replay (see `kappa dlq --help`)"
            << std::endl;
  return 2;
}

}  // namespace kappa::cli
