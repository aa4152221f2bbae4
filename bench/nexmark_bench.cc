// kappa_nexmark_bench: Nexmark q0, q1, q2, q5, q7 (bench/nexmark/*.yaml)
// through the real task path (Task::Create, Append, Process: decode and
// verification, the operator chain, state, emit), without Kafka. N generated
// events are split over P partitions by key hash as Kafka would. By default
// they are read from the log archive (archive/archive.h, topic `nexmark`
// under --archive, written first if it does not hold exactly these events):
// each partition's blocks are read, LZ4-decompressed and handed to the task
// without a copy (Task::AppendBorrowed), in batches of at most
// ArchiveSource::kBatchRecords, as a replay does. And (--source both, the default) from memory, aligned and borrowed
// the same way, in --batch batches: the chain alone. Each query runs every partition's task in
// turn on this one thread, so events / thread CPU seconds is events/s per
// core. Outputs go to a collector that only counts them. Writes
// bench/results/nexmark.{md,json} (a partial run only with --results).
//
//   kappa_nexmark_bench [--events N] [--partitions P] [--seed S] [--rate R]
//                       [--source archive|memory|both] [--archive DIR] [--batch B]
//                       [--queries q1,q5] [--repeat K] [--results DIR] [--specs DIR]
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/hash.h"
#include "engine/job_spec.h"
#include "workload/nexmark_generator.h"
#include "engine/archive_source.h"
#include "engine/task.h"
#include "archive/archive.h"

namespace kappa {
namespace {

struct Query {
  const char* name;
  const char* what;
  double target;  // events/s per core the issue asks for; 0: none
};
constexpr Query kQueries[] = {
    {"q0", "pass-through: every event, unchanged", 0},
    {"q1", "currency conversion: every bid, price * 908 / 1000, as a Row", 10e6},
    {"q2", "selection: bids with auction % 123 == 0", 0},
    {"q5", "hot items: auctions with the most bids, sliding 10 s / 2 s, top 1", 1e6},
    {"q7", "highest bid: max price and its auction/bidder, tumbling 10 s", 0},
};

// One partition's records, back to back in one buffer with each value 8-byte
// aligned (as in an archive block), so the input is not a million small
// allocations and the task can borrow the payloads.
struct Partition {
  std::string bytes;
  struct Rec {
    uint64_t value_at;
    uint32_t value_size;
    uint32_t key_size;
    uint64_t key_at;
    int64_t timestamp_ms;
  };
  std::vector<Rec> records;
};

class CountingCollector final : public OutputCollector {
 public:
  void Emit(std::string_view key, const uint8_t*, size_t size, const OutputLineage&) override {
    ++outputs;
    bytes += key.size() + size;
  }
  void EmitDlq(int32_t, const InputRecord&, DlqReason, std::string_view) override { ++dlq; }
  void EmitLate(int32_t, const InputRecord&) override { ++late; }
  uint64_t outputs = 0, bytes = 0, dlq = 0, late = 0;
};

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Result {
  const Query* query;
  bool in_memory = false;
  std::string source;  // "archive" (LZ4), "archive, none" (uncompressed) or "memory"
  uint64_t events = 0, outputs = 0, output_bytes = 0, dlq = 0, late = 0;
  double cpu_seconds = 0, wall_seconds = 0;
  double per_core() const { return cpu_seconds > 0 ? static_cast<double>(events) / cpu_seconds : 0; }
};

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

// The 1-minute load average: on a shared machine, other processes' load
// slows this thread's CPU time too (caches, memory bandwidth, SMT siblings).
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one.empty() ? "unknown" : one;
}

std::string Millions(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f M", v / 1e6);
  return buf;
}

// Writes the events to <root>/nexmark unless it already holds exactly them
// (a parameters file beside it says which events it holds).
Status EnsureArchive(const std::string& root, const NexmarkOptions& options, int partitions,
                     ArchiveCompression compression, bool* built) {
  const std::string params = root + "/nexmark.params";
  char want[200];
  std::snprintf(want, sizeof(want), "events=%llu seed=%llu rate=%.3f partitions=%d compression=%s\n",
                static_cast<unsigned long long>(options.count), static_cast<unsigned long long>(options.seed),
                options.events_per_second, partitions,
                // "lz4" named LZ4's fast compressor before LZ4HC became the default
                compression == ArchiveCompression::kLz4 ? "lz4hc3" : ArchiveCompressionName(compression));
  {
    std::ifstream in(params);
    std::stringstream have;
    have << in.rdbuf();
    auto ranges = ArchiveRanges(root, "nexmark");
    int64_t records = 0;
    if (ranges.ok()) {
      for (const auto& r : *ranges) records += r.records;
    }
    if (have.str() == want && ranges.ok() && static_cast<int>(ranges->size()) == partitions &&
        records == static_cast<int64_t>(options.count)) {
      *built = false;
      return Status::OK();
    }
  }
  *built = true;
  std::error_code ec;
  std::filesystem::remove_all(root + "/nexmark", ec);
  std::filesystem::remove(params, ec);
  std::filesystem::create_directories(root, ec);
  std::vector<std::unique_ptr<ArchiveWriter>> writers;
  for (int p = 0; p < partitions; ++p) {
    auto w = ArchiveWriter::Open(root, "nexmark", p, ArchiveWriter::kDefaultBlockBytes,
                                 ArchiveWriter::kDefaultSegmentBytes, {}, compression);
    if (!w.ok()) return w.status();
    writers.push_back(std::move(*w));
  }
  NexmarkGenerator gen(options);
  NexmarkRecord r;
  while (gen.Next(&r)) {
    ArchiveWriter& w = *writers[PartitionForKey(r.key, partitions)];
    ArchiveRecord rec;
    rec.offset = w.end_offset();
    rec.timestamp_ms = r.event_time_ms;
    rec.key = r.key;
    rec.value = r.value;
    KAPPA_RETURN_IF_ERROR(w.Append(rec));
  }
  for (auto& w : writers) KAPPA_RETURN_IF_ERROR(w->Flush());
  std::ofstream(params) << want;
  return Status::OK();
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "kappa_nexmark_bench: %s\nusage: kappa_nexmark_bench [--events N] [--partitions P] [--seed S] "
               "[--rate R] [--source archive|memory|both] [--compression lz4|none|both] [--archive DIR] [--batch B] "
               "[--queries q0,q1,q2,q5,q7] [--repeat K] [--results DIR] [--specs DIR]\n"
               "  --compression: the archive's blocks, LZ4 (LZ4HC level 3, as `kappa archive` writes by default) or stored as they\n"
               "  are (`--compression none`); both (the default) runs the archive source over each. An uncompressed\n"
               "  archive is kept in DIR-none.\n"
               "  --results: where nexmark.{md,json} go (bench/results); a partial run (--queries, --source or\n"
               "  --compression) writes them only when --results is given.\n",
               why);
  return 2;
}

int Main(int argc, char** argv) {
  uint64_t events = 10000000, seed = 1;
  int partitions = 8, batch = 4096, repeat = 1;
  double rate = 10000;
  std::string queries = "q0,q1,q2,q5,q7";
  std::string results_dir = std::string(KAPPA_SOURCE_DIR) + "/bench/results";
  bool results_given = false;
  std::string specs_dir = std::string(KAPPA_SOURCE_DIR) + "/bench/nexmark";
  std::string archive_dir = std::string(KAPPA_BINARY_DIR) + "/nexmark-archive";
  std::string source = "both";
  std::string compression = "both";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") return Usage("help") == 2 ? 0 : 0;
    if (i + 1 >= argc) return Usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--events") events = std::strtoull(v, nullptr, 10);
    else if (a == "--partitions") partitions = std::atoi(v);
    else if (a == "--batch") batch = std::atoi(v);
    else if (a == "--seed") seed = std::strtoull(v, nullptr, 10);
    else if (a == "--rate") rate = std::atof(v);
    else if (a == "--queries") queries = v;
    else if (a == "--repeat") repeat = std::atoi(v);
    else if (a == "--results") results_dir = v, results_given = true;
    else if (a == "--specs") specs_dir = v;
    else if (a == "--archive") archive_dir = v;
    else if (a == "--source") source = v;
    else if (a == "--compression") compression = v;
    else return Usage(("unknown option " + a).c_str());
  }
  if (events == 0 || partitions < 1 || batch < 1 || repeat < 1 || rate <= 0) return Usage("bad value");
  if (source != "archive" && source != "memory" && source != "both") return Usage("--source is archive, memory or both");
  if (compression != "lz4" && compression != "none" && compression != "both") {
    return Usage("--compression is lz4, none or both");
  }
  const bool use_archive = source != "memory", use_memory = source != "archive";
  // The archive source over each compression asked for: (label, root, compression).
  struct ArchiveSource {
    std::string label, root;
    ArchiveCompression compression;
    uint64_t bytes = 0;
  };
  std::vector<ArchiveSource> archives;
  if (use_archive && compression != "none") archives.push_back({"archive", archive_dir, ArchiveCompression::kLz4});
  if (use_archive && compression != "lz4") {
    archives.push_back({"archive, none", archive_dir + "-none", ArchiveCompression::kNone});
  }

  NexmarkOptions options;
  options.count = events;
  options.seed = seed;
  options.events_per_second = rate;
  // The mix is a function of the event number.
  NexmarkStats stats;
  for (uint64_t n = 0; n < events; ++n) {
    switch (NexmarkGenerator::TypeOf(n)) {
      case NexmarkEventType::kPerson: ++stats.persons; break;
      case NexmarkEventType::kAuction: ++stats.auctions; break;
      case NexmarkEventType::kBid: ++stats.bids; break;
    }
  }
  stats.total = events;
  uint64_t memory_bytes = 0;
  for (ArchiveSource& a : archives) {
    bool built = false;
    const auto start = std::chrono::steady_clock::now();
    if (Status st = EnsureArchive(a.root, options, partitions, a.compression, &built); !st.ok()) {
      std::fprintf(stderr, "archive %s: %s\n", a.root.c_str(), st.ToString().c_str());
      return 1;
    }
    auto ranges = ArchiveRanges(a.root, "nexmark");
    if (ranges.ok()) {
      for (const auto& range : *ranges) a.bytes += static_cast<uint64_t>(range.stored_bytes);
    }
    std::fprintf(stderr, "%s the archive %s/nexmark (%s, %.0f MB) in %.1f s\n", built ? "wrote" : "reusing",
                 a.root.c_str(), ArchiveCompressionName(a.compression), a.bytes / 1e6,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  // One untimed pass over each archive, so that every query reads it from
  // the page cache (the first one would otherwise pay the disk reads of an
  // archive another benchmark pushed out).
  for (const ArchiveSource& a : archives) {
    std::vector<ArchiveRecord> warm;
    for (int32_t p = 0; p < partitions; ++p) {
      auto reader = ArchiveReader::Open(a.root, "nexmark", p);
      if (!reader.ok()) {
        std::fprintf(stderr, "%s\n", reader.status().ToString().c_str());
        return 1;
      }
      do {
        if (Status st = (*reader)->NextBlock(&warm); !st.ok()) {
          std::fprintf(stderr, "%s\n", st.ToString().c_str());
          return 1;
        }
      } while (!warm.empty());
    }
  }
  // In memory: one buffer per partition, offsets from 0, as Kafka would.
  std::vector<Partition> parts(use_memory ? partitions : 0);
  if (use_memory) {
    for (auto& p : parts) {
      p.bytes.reserve(events / partitions * 280);
      p.records.reserve(events / partitions + 1024);
    }
    const auto start = std::chrono::steady_clock::now();
    NexmarkGenerator gen(options);
    NexmarkRecord r;
    while (gen.Next(&r)) {
      Partition& p = parts[PartitionForKey(r.key, partitions)];
      Partition::Rec rec{};
      p.bytes.resize((p.bytes.size() + 7) & ~size_t{7});  // values 8-byte aligned, as in an archive block
      rec.value_at = p.bytes.size();
      rec.value_size = static_cast<uint32_t>(r.value.size());
      p.bytes.append(r.value);
      rec.key_at = p.bytes.size();
      rec.key_size = static_cast<uint32_t>(r.key.size());
      p.bytes.append(r.key);
      rec.timestamp_ms = r.event_time_ms;
      p.records.push_back(rec);
    }
    memory_bytes = gen.stats().bytes;
    std::fprintf(stderr, "generated %llu events in memory (%.0f MB) in %.1f s\n",
                 static_cast<unsigned long long>(events), memory_bytes / 1e6,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  std::vector<Result> results;
  std::vector<ArchiveRecord> block;
  // Each archive source, then memory.
  for (size_t si = 0; si < archives.size() + (use_memory ? 1 : 0); ++si) {
    const bool in_memory = si == archives.size();
    const ArchiveSource* from = in_memory ? nullptr : &archives[si];
    const std::string source_label = in_memory ? "memory" : from->label;
    for (const Query& q : kQueries) {
      if (("," + queries + ",").find(std::string(",") + q.name + ",") == std::string::npos) continue;
      auto spec = LoadJobSpec(specs_dir + "/" + q.name + ".yaml");
      if (!spec.ok()) {
        std::fprintf(stderr, "%s\n", spec.status().ToString().c_str());
        return 1;
      }
      Result best;
      for (int k = 0; k < repeat; ++k) {
        Result res;
        res.query = &q;
        res.in_memory = in_memory;
        res.source = source_label;
        CountingCollector out;
        const double cpu0 = ThreadCpuSeconds();
        const auto wall0 = std::chrono::steady_clock::now();
        for (int32_t p = 0; p < partitions; ++p) {
          auto task = Task::Create(p, *spec, &out);
          if (!task.ok()) {
            std::fprintf(stderr, "%s\n", task.status().ToString().c_str());
            return 1;
          }
          if (in_memory) {
            const Partition& part = parts[p];
            const char* base = part.bytes.data();
            int64_t offset = 0;
            int in_batch = 0;
            for (const Partition::Rec& rec : part.records) {
              (*task)->AppendBorrowed(base + rec.value_at, rec.value_size, base + rec.key_at, rec.key_size,
                                      offset++, rec.timestamp_ms);
              if (++in_batch == batch) {
                (*task)->Process();
                in_batch = 0;
              }
            }
            (*task)->Process();
          } else {
            // As a replay reads the archive (engine/archive_source.cc): block
            // by block, payloads borrowed from the reader's aligned block
            // buffer, in batches of at most kBatchRecords.
            auto reader = ArchiveReader::Open(from->root, "nexmark", p);
            if (!reader.ok()) {
              std::fprintf(stderr, "%s\n", reader.status().ToString().c_str());
              return 1;
            }
            for (;;) {
              if (Status st = (*reader)->NextBlock(&block); !st.ok()) {
                std::fprintf(stderr, "%s\n", st.ToString().c_str());
                return 1;
              }
              if (block.empty()) break;
              size_t in_block_batch = 0;
              for (const ArchiveRecord& rec : block) {
                (*task)->AppendBorrowed(rec.value.data(), static_cast<uint32_t>(rec.value.size()),
                                        rec.key.data(), static_cast<uint32_t>(rec.key.size()), rec.offset,
                                        rec.timestamp_ms);
                if (++in_block_batch == kappa::ArchiveSource::kBatchRecords) {
                  (*task)->Process();
                  in_block_batch = 0;
                }
              }
              (*task)->Process();
            }
          }
          res.events += static_cast<uint64_t>((*task)->counters().in);
        }
        res.cpu_seconds = ThreadCpuSeconds() - cpu0;
        res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
        res.outputs = out.outputs;
        res.output_bytes = out.bytes;
        res.dlq = out.dlq;
        res.late = out.late;
        if (k == 0 || res.cpu_seconds < best.cpu_seconds) best = res;
      }
      std::fprintf(stderr, "%s from %s: %s events/s per core (%llu events, %llu outputs, %.2f s CPU)\n", q.name,
                   source_label.c_str(), Millions(best.per_core()).c_str(),
                   static_cast<unsigned long long>(best.events), static_cast<unsigned long long>(best.outputs),
                   best.cpu_seconds);
      results.push_back(best);
    }
  }

  // The report.
  uint64_t lz4_bytes = 0, none_bytes = 0;
  for (const ArchiveSource& a : archives) (a.compression == ArchiveCompression::kNone ? none_bytes : lz4_bytes) = a.bytes;
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const std::string cpu = CpuModel();
  const std::string load = LoadAverage();
  char date[32];
  const time_t now = time(nullptr);
  strftime(date, sizeof(date), "%Y-%m-%d", gmtime(&now));
  std::ostringstream md;
  md << "# Nexmark in kappa, " << date << "\n\n"
     << "Machine: " << cores << " cores (nproc), " << cpu << ", load average " << load
     << " at the end of the run (shared with other builds). One thread; events/s per core = input events / "
     << "thread CPU time, best of " << repeat << ".\n\n"
     << "Command: `build/bench/kappa_nexmark_bench --events " << events << " --partitions " << partitions
     << " --seed " << seed << " --rate " << rate << " --source " << source << " --compression " << compression
     << " --batch " << batch
     << " --repeat " << repeat << "`\n\n"
     << "Input: " << stats.total << " events (" << stats.persons << " persons, " << stats.auctions
     << " auctions, " << stats.bids << " bids), split over " << partitions << " partitions by key hash. "
     << "Every query runs decode (FlatBuffers verification), its chain (bench/nexmark/*.yaml), state and emit "
     << "through Task; outputs are counted and dropped.\n\n"
     << "- archive: read from the log archive (" << (lz4_bytes / 1000000)
     << " MB of LZ4 blocks, page cache warm): each partition's blocks are read, decompressed and handed to "
     << "its task without a copy (Task::AppendBorrowed), one Process per block, as a replay does.\n"
     << "- archive, none: the same from an archive written with `--compression none` (" << (none_bytes / 1000000)
     << " MB of blocks stored as they are): each block is read straight into the buffer its records are "
     << "handed out from, no decompression.\n"
     << "- memory: the same events from memory (" << memory_bytes / 1000000
     << " MB of FlatBuffers, 8-byte aligned like an archive block), handed to the task without a copy in "
     << batch << "-record batches: the chain alone, without the archive's read and decompression.\n\n"
     << "| query | source | what | events | outputs | CPU s | events/s per core | target |\n"
     << "|---|---|---|---:|---:|---:|---:|---|\n";
  std::ostringstream json;
  json << "{\n  \"date\": \"" << date << "\",\n  \"machine\": {\"nproc\": " << cores << ", \"cpu\": \"" << cpu
       << "\", \"load_average\": " << load << "},\n  \"repeat\": " << repeat << ",\n  \"events\": " << stats.total
       << ",\n  \"persons\": " << stats.persons << ",\n  \"auctions\": " << stats.auctions
       << ",\n  \"bids\": " << stats.bids << ",\n  \"partitions\": " << partitions << ",\n  \"batch\": " << batch
       << ",\n  \"seed\": " << seed << ",\n  \"rate\": " << rate << ",\n  \"archive_bytes\": " << lz4_bytes << ",\n  \"archive_none_bytes\": " << none_bytes
       << ",\n  \"memory_bytes\": " << memory_bytes << ",\n  \"results\": [";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& res = results[i];
    std::string target = "-";
    if (res.query->target > 0) {
      target = ">= " + Millions(res.query->target) + (res.per_core() >= res.query->target ? " met" : " NOT met");
    }
    char cpu_s[32];
    std::snprintf(cpu_s, sizeof(cpu_s), "%.2f", res.cpu_seconds);
    const char* src = res.source.c_str();
    md << "| " << res.query->name << " | " << src << " | " << res.query->what << " | " << res.events << " | "
       << res.outputs << " | " << cpu_s << " | " << Millions(res.per_core()) << " | " << target << " |\n";
    json << (i ? "," : "") << "\n    {\"query\": \"" << res.query->name << "\", \"source\": \"" << src
         << "\", \"events\": " << res.events << ", \"outputs\": " << res.outputs
         << ", \"output_bytes\": " << res.output_bytes << ", \"dlq\": " << res.dlq << ", \"late\": " << res.late
         << ", \"cpu_seconds\": " << res.cpu_seconds << ", \"wall_seconds\": " << res.wall_seconds
         << ", \"events_per_second_per_core\": " << static_cast<uint64_t>(res.per_core())
         << ", \"target\": " << static_cast<uint64_t>(res.query->target) << "}";
  }
  json << "\n  ]\n}\n";
  std::fputs(md.str().c_str(), stdout);
  // A partial run (some queries, one source or one compression) would
  // replace the committed table with a part of it: written only when asked.
  const bool full = queries == "q0,q1,q2,q5,q7" && source == "both" && compression == "both";
  if (!full && !results_given) {
    std::fprintf(stderr, "a partial run (--queries, --source or --compression): results not written; "
                         "give --results DIR to write them\n");
    return 0;
  }
  std::ofstream(results_dir + "/nexmark.md") << md.str();
  std::ofstream(results_dir + "/nexmark.json") << json.str();
  std::fprintf(stderr, "wrote %s/nexmark.{md,json}\n", results_dir.c_str());
  return 0;
}

}  // namespace
}  // namespace kappa

int main(int argc, char** argv) { return kappa::Main(argc, argv); }
