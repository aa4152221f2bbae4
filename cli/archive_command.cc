// kappa archive: follows topics into the log archive, imports record files,
// lists and dumps what an archive holds.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "cli/metrics_endpoint.h"
#include "cli/progress_printer.h"
#include "cli/record_format.h"
#include "archive/archive.h"
#include "archive/archive_repair.h"
#include "archive/archive_upgrade.h"
#include "archive/archiver.h"
#include "archive/segment_file.h"

namespace po = boost::program_options;

namespace kappa::cli {
namespace {

std::string Hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// --upgrade: an older kappa's archive (block format 1) rewritten in place.
int Upgrade(const std::string& root, const std::vector<std::string>& topics) {
  UpgradeSummary summary;
  const Status st = UpgradeArchive(root, topics, NotePrinter("kappa archive"), &summary);
  if (st.ok() && summary.upgraded == 0) {
    std::printf("kappa archive: %s is already in today's format (%d segments): nothing to upgrade\n", root.c_str(),
                summary.current);
    return 0;
  }
  if (summary.upgraded > 0 || !st.ok()) {
    std::printf("kappa archive: upgraded %d segments of %s (%lld records) to block format 2; %d were already in it",
                summary.upgraded, root.c_str(), static_cast<long long>(summary.records), summary.current);
    if (summary.torn > 0) std::printf("; %d torn tails kept aside as .torn (see above)", summary.torn);
    if (summary.damaged_blocks > 0) {
      std::printf("; %d damaged blocks carried over: run --repair (see above)", summary.damaged_blocks);
    }
    std::printf("\n");
  }
  if (!st.ok()) return Fail("archive", st);
  return 0;
}

int List(const std::string& root, const std::vector<std::string>& topics) {
  if (topics.empty()) std::printf("nothing archived in %s\n", root.c_str());
  const NoteCallback note = NotePrinter("kappa archive");
  int rc = 0;
  for (const auto& topic : topics) {
    auto ranges = ArchiveRanges(root, topic);
    if (!ranges.ok()) return Fail("archive", ranges.status());
    if (ranges->empty()) {
      std::printf("%s: nothing archived in %s\n", topic.c_str(), root.c_str());
      continue;
    }
    int64_t records = 0, bytes = 0;
    for (const auto& r : *ranges) {
      // A cut segment listed as a shorter whole one (a bug bash).
      if (!r.torn_tail.empty()) note(NoteLevel::kWarning, r.torn_tail);
      if (r.records == 0) {
        std::printf("%s[%d]: empty\n", topic.c_str(), r.partition);
        continue;
      }
      std::printf("%s[%d]: offsets %lld..%lld, %lld records, %.1f MB stored\n", topic.c_str(), r.partition,
                  static_cast<long long>(r.first_offset), static_cast<long long>(r.end_offset - 1),
                  static_cast<long long>(r.records), r.stored_bytes / 1e6);
      records += r.records;
      bytes += r.stored_bytes;
    }
    std::printf("%s: %zu partitions, %lld records, %.1f MB stored\n", topic.c_str(), ranges->size(),
                static_cast<long long>(records), bytes / 1e6);
    // A stray directory was listed as a partition, and a missing one left
    // out, where a replay refuses both (a bug bash): listed, then said.
    if (auto checked = CheckArchivedPartitions(root, topic); !checked.ok()) {
      std::fflush(stdout);
      rc = Fail("archive", checked.status());
    }
  }
  return rc;
}

// One JSON line per record; keys, values and header values in hex (they are
// binary), null as JSON null.
int Dump(const std::string& root, const std::string& topic, int partition, int64_t from, bool decode) {
  auto partitions = ArchivedPartitions(root, topic);
  if (!partitions.ok()) return Fail("archive", partitions.status());
  if (partitions->empty()) return Fail("archive", Status::NotFound("nothing archived for topic " + topic + " in " + root));
  if (partition >= 0 && std::find(partitions->begin(), partitions->end(), partition) == partitions->end()) {
    return Fail("archive", Status::NotFound("no partition " + std::to_string(partition) + " of " + topic +
                                                " is archived in " + root + " (it holds " +
                                                std::to_string(partitions->size()) + ": " +
                                                std::to_string(partitions->front()) + ".." +
                                                std::to_string(partitions->back()) + ")"));
  }
  for (int32_t p : *partitions) {
    if (partition >= 0 && p != partition) continue;
    auto reader = ArchiveReader::Open(root, topic, p);
    if (!reader.ok()) return Fail("archive", WithRepairAdvice(reader.status(), root, topic));
    if (Status st = (*reader)->Seek(from); !st.ok()) return Fail("archive", WithRepairAdvice(st, root, topic));
    ArchiveRecord r;
    for (;;) {
      auto more = (*reader)->Next(&r);
      if (!more.ok()) return Fail("archive", WithRepairAdvice(more.status(), root, topic));
      if (!*more) break;
      std::string line = "{\"partition\":" + std::to_string(p) + ",\"offset\":" + std::to_string(r.offset) +
                         ",\"timestamp_ms\":" + std::to_string(r.timestamp_ms) + ",\"key\":" +
                         (r.key_null ? "null" : "\"" + Hex(r.key) + "\"") + ",\"value\":" +
                         (r.value_null ? "null" : "\"" + Hex(r.value) + "\"") + ",\"headers\":[";
      for (size_t i = 0; i < r.headers.size(); ++i) {
        line += (i ? ",[\"" : "[\"") + JsonEscape(std::string(r.headers[i].name)) + "\"," +
                (r.headers[i].value_null ? "null" : "\"" + Hex(r.headers[i].value) + "\"") + "]";
      }
      line += "]";
      if (decode && !r.value_null) {
        line += ",\"decoded\":" + FormatRecordJson(reinterpret_cast<const uint8_t*>(r.value.data()), r.value.size());
      }
      line += "}\n";
      std::fwrite(line.data(), 1, line.size(), stdout);
    }
    // Where the dump stopped at a cut segment, it says so (it ended there
    // without a word: a bug bash).
    auto range = (*reader)->Range();
    if (range.ok() && !range->torn_tail.empty()) {
      std::fflush(stdout);
      NotePrinter("kappa archive")(NoteLevel::kWarning, range->torn_tail);
    }
  }
  return 0;
}

}  // namespace

int ArchiveCommand(int argc, char** argv) {
  po::options_description desc("options");
  ArchiverOptions options;
  std::string import_file;
  int partition = -1;
  int64_t from = 0;
  int block_kb = static_cast<int>(options.block_bytes / 1024);
  std::string compression = "lz4";
  desc.add_options()
      ("help,h", "show this help")
      ("archive,a", po::value<std::string>(&options.root)->required(), "archive directory (created if missing)")
      ("topic,t", po::value<std::vector<std::string>>(&options.topics), "topic to archive, import into, list or dump (repeatable)")
      ("stop-at-end", "follow: stop once every partition reaches the log end offset it had at start")
      ("flush-interval-ms", po::value<int>(&options.flush_interval_ms)->default_value(options.flush_interval_ms), "follow: fdatasync at least this often")
      ("block-kb", po::value<int>(&block_kb)->default_value(block_kb), "size of a block before compression, in KiB")
      ("compression", po::value<std::string>(&compression)->default_value(compression), "follow, --import and --repair: how new blocks are stored: lz4 (LZ4HC level 3: 4-6x less disk, ~250 MB/s a core to write, the fastest to replay), lz4-fast (LZ4's fast compressor: ~1 GB/s to write, less compressed, slower to replay) or none (a replay reads them without decompressing, at the cost of the disk); blocks already archived keep theirs")
      ("status-interval-ms", po::value<int>(&options.status_interval_ms)->default_value(options.status_interval_ms), "follow: print progress this often (0: never)")
      ("import", po::value<std::string>(&import_file), "load a record file (e.g. from `kappa gen --to-archive`) into --topic instead of following Kafka")
      ("list", "print each archived partition's offset range, record count and size")
      ("upgrade", "rewrite the segments an older kappa wrote (block format 1) in today's format, keeping every record: needed once before this kappa reads such an archive; stop its archivers first")
      ("repair", "verify every block of --topic; refetch from Kafka what follows the first damaged block of each partition (the damaged tail is kept as <segment>.damaged), or say which offsets are lost")
      ("dump", "print every archived record of --topic as a JSON line (bytes in hex)")
      ("decode", "with --dump: also decode kappa FlatBuffers payloads")
      ("partition,p", po::value<int>(&partition)->default_value(-1), "with --dump: only this partition")
      ("from", po::value<int64_t>(&from)->default_value(0), "with --dump: start at this offset");
  AddMetricsOptions(desc);
  AddKafkaOptions(desc);
  const std::string usage =
      "usage: kappa archive --archive DIR --topic TOPIC... --brokers HOST:PORT [--stop-at-end]\n"
      "       kappa archive --archive DIR --topic TOPIC --import FILE\n"
      "       kappa archive --archive DIR --list [--topic TOPIC]\n"
      "       kappa archive --archive DIR --topic TOPIC --dump [--partition P] [--from OFFSET]\n"
      "       kappa archive --archive DIR --topic TOPIC... --brokers HOST:PORT --repair\n"
      "       kappa archive --archive DIR [--topic TOPIC...] --upgrade\n\n"
      "Keeps Kafka history beyond retention: appends every record of every partition (exact\n"
      "offset, timestamp, key, value, headers) to DIR/<topic>/<partition>/ as checksummed\n"
      "blocks, LZ4-compressed (LZ4HC) unless --compression says otherwise. Resumable after any crash (the\n"
      "archive is its own progress record). Never leaves a hole: a partition whose records\n"
      "Kafka deleted before they were archived is held back (named in ERROR notes), the\n"
      "others are archived, and it exits non-zero naming it. Jobs replay from it with\n"
      "`source: {archive: DIR}` or `--archive DIR`.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "archive", usage, desc, nullptr, vm); rc >= 0) return rc;
  if (block_kb < 1 || block_kb > 16384) return Fail("archive", Status::InvalidArgument("--block-kb must be between 1 and 16384"));
  if (options.flush_interval_ms < 1) return Fail("archive", Status::InvalidArgument("--flush-interval-ms must be at least 1"));
  if (options.status_interval_ms < 0) {
    return Fail("archive", Status::InvalidArgument("--status-interval-ms must not be negative (0: never)"));
  }
  if (partition < -1 || (!vm["partition"].defaulted() && partition < 0)) {
    return Fail("archive", Status::InvalidArgument("--partition must not be negative"));
  }
  if (from < 0) return Fail("archive", Status::InvalidArgument("--from must not be negative"));
  options.block_bytes = static_cast<size_t>(block_kb) * 1024;
  auto parsed_compression = ParseArchiveCompression(compression);
  if (!parsed_compression.ok()) return Fail("archive", parsed_compression.status());
  options.compression = *parsed_compression;
  const int modes = (vm.count("import") ? 1 : 0) + (vm.count("list") ? 1 : 0) + (vm.count("dump") ? 1 : 0) +
                    (vm.count("repair") ? 1 : 0) + (vm.count("upgrade") ? 1 : 0);
  if (modes > 1) {
    return Fail("archive",
                Status::InvalidArgument("--import, --list, --dump, --repair and --upgrade exclude each other"));
  }
  for (const auto& topic : options.topics) {
    if (Status st = segment_file::ValidateTopic(topic); !st.ok()) return Fail("archive", st);
  }
  // A topic given twice is one topic: two writers of one partition refused
  // each other ("being written by another process"), and --repair aborted
  // half done.
  std::vector<std::string> topics;
  for (auto& topic : options.topics) {
    if (std::find(topics.begin(), topics.end(), topic) == topics.end()) topics.push_back(std::move(topic));
  }
  options.topics = std::move(topics);
  if (vm.count("list") || vm.count("dump") || vm.count("repair") || vm.count("upgrade")) {
    // These read an existing archive: a directory that is not there is a
    // mistake on the command line, not an empty archive.
    auto topics = ArchivedTopics(options.root);
    if (!topics.ok()) {
      const Status& st = topics.status();
      const bool usage = st.code() == Status::Code::kNotFound || st.code() == Status::Code::kFailedPrecondition;
      return Fail("archive", usage ? Status::InvalidArgument(st.message()) : st);
    }
    if (vm.count("list")) return List(options.root, options.topics.empty() ? *topics : options.topics);
    if (vm.count("upgrade")) return Upgrade(options.root, options.topics);
  }
  if (options.topics.empty()) return Fail("archive", Status::InvalidArgument("--topic is required"));
  if (vm.count("dump")) {
    if (options.topics.size() != 1) return Fail("archive", Status::InvalidArgument("--dump takes one --topic"));
    return Dump(options.root, options.topics[0], partition, from, vm.count("decode") > 0);
  }
  if (vm.count("import")) {
    if (options.topics.size() != 1) return Fail("archive", Status::InvalidArgument("--import takes one --topic"));
    auto summary = ImportRecordFile(import_file, options.root, options.topics[0], NotePrinter("kappa archive"),
                                    options.compression);
    if (!summary.ok()) return Fail("archive", summary.status());
    std::printf("kappa archive: imported %lld records into %s/%s (%d partitions); %lld already archived were skipped\n",
                static_cast<long long>(summary->records), options.root.c_str(), options.topics[0].c_str(),
                summary->partitions, static_cast<long long>(summary->skipped));
    return 0;
  }
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("archive", st);
  if (vm.count("repair")) {
    options.on_status = StatusPrinter("kappa archive", /*with_epoch=*/false);
    options.on_note = NotePrinter("kappa archive");
    StopToken stop = InstallStopSignals();
    auto repaired = RepairArchive(config, options, stop);
    if (!repaired.ok()) return Fail("archive", repaired.status());
    for (const auto& line : repaired->lines) std::printf("kappa archive: %s\n", line.c_str());
    if (repaired->damaged > 0) {
      std::printf("kappa archive: repaired %d partition(s); refetched %lld records from Kafka\n", repaired->damaged,
                  static_cast<long long>(repaired->refetched));
    }
    if (!repaired->whole.ok()) return Fail("archive", repaired->whole);
    return 0;
  }
  options.stop_at_end = vm.count("stop-at-end") > 0;
  options.on_status = StatusPrinter("kappa archive", /*with_epoch=*/false);
  JobEndpoint endpoint;
  if (Status st = StartArchiveEndpoint(vm, options.root, &endpoint); !st.ok()) return Fail("archive", st);
  if (endpoint.metrics) {
    // /metrics is refreshed every second; the status line keeps its interval.
    auto print = std::move(options.on_status);
    const int print_ms = options.status_interval_ms;
    auto last_print = std::make_shared<Stopwatch>();
    JobMetrics* metrics = endpoint.metrics.get();
    options.on_status = [print, print_ms, last_print, metrics](const ProgressSnapshot& s, bool final) {
      JobMetricsSample sample;
      sample.now_ms = WallClockMs();
      sample.progress = s;
      metrics->Publish(std::move(sample));
      if (print && print_ms > 0 && (final || last_print->Millis() >= print_ms)) {
        last_print->Reset();
        print(s, final);
      }
    };
    options.status_interval_ms = 1000;
  }
  options.on_note = NotePrinter("kappa archive");
  StopToken stop = InstallStopSignals();
  auto summary = RunArchiver(config, options, stop);
  if (!summary.ok()) return Fail("archive", summary.status());
  std::printf("kappa archive: archived %lld records (%.1f MB) in %.1f s into %s\n",
              static_cast<long long>(summary->records), summary->bytes / 1e6, summary->seconds, options.root.c_str());
  return 0;
}

}  // namespace kappa::cli
