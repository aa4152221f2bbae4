// Micro benchmarks of each operator and of the archive, per record.
// Operators: the chain decode -> X for each operator X, on batches of 4096
// generated transactions (8-byte aligned, as tasks hand them out); an
// operator's own cost is its chain's time minus the decode-only chain's.
// Archive: appending records (LZ4 + XXH3 blocks) and reading them back.
// Part of kappa_micro_bench.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "workload/transaction_generator.h"
#include "operators/operator.h"
#include "archive/archive.h"

namespace kappa {
namespace {

struct Aligned {
  std::vector<std::vector<uint64_t>> buffers;
  std::vector<uint32_t> sizes;
  std::vector<std::string> keys;
};

Aligned MakePayloads(size_t n) {
  GeneratorOptions o;
  o.count = n;
  o.users = 10000;
  o.seed = 7;
  o.events_per_second = 1000;
  o.duplicate_fraction = 0.02;
  o.out_of_order_fraction = 0.05;
  o.max_delay_ms = 60000;
  TransactionGenerator gen(o);
  GeneratedRecord r;
  Aligned out;
  while (gen.Next(&r)) {
    std::vector<uint64_t> b(r.value.size() / 8 + 1);
    std::memcpy(b.data(), r.value.data(), r.value.size());
    out.buffers.push_back(std::move(b));
    out.sizes.push_back(static_cast<uint32_t>(r.value.size()));
    out.keys.push_back(r.key);
  }
  return out;
}

class CountingOutput : public OutputCollector {
 public:
  void Emit(std::string_view, const uint8_t*, size_t, const OutputLineage&) override { ++emitted; }
  void EmitDlq(int32_t, const InputRecord&, DlqReason, std::string_view) override {}
  void EmitLate(int32_t, const InputRecord&) override {}
  int64_t emitted = 0;
};

enum Chain { kDecode, kDedup, kFilter, kMap, kWindowTumbling, kWindowSliding, kEmit };
const char* kChainNames[] = {"decode", "decode+dedup", "decode+filter", "decode+map", "decode+window(1h tumbling)",
                             "decode+window(1h sliding by 10m)", "decode+emit"};

void BM_OperatorChain(benchmark::State& state) {
  const auto which = static_cast<Chain>(state.range(0));
  state.SetLabel(kChainNames[which]);
  static const Aligned payloads = MakePayloads(1 << 18);
  StateRegistry registry;
  std::vector<std::unique_ptr<Operator>> chain;
  chain.push_back(MakeDecodeValidate(DecodeSpec{}));
  Result<std::unique_ptr<Operator>> op = std::unique_ptr<Operator>();
  switch (which) {
    case kDecode: break;
    case kDedup: op = MakeOperator(DedupSpec{Field::kTxnId, 3600 * 1000}, "dedup", registry); break;
    case kFilter: op = MakeOperator(FilterSpec{{*ParsePredicate("status != cancelled")}}, "", registry); break;
    case kMap: op = MakeOperator(MapSpec{Field::kAmountCents, 908, 1000}, "", registry); break;
    case kWindowTumbling:
    case kWindowSliding: {
      WindowSpec w;
      w.kind = which == kWindowSliding ? WindowSpec::Kind::kSliding : WindowSpec::Kind::kTumbling;
      w.size_ms = 3600 * 1000;
      w.slide_ms = which == kWindowSliding ? 600 * 1000 : w.size_ms;
      w.aggregates = {Aggregate::kCount, Aggregate::kSum};
      op = MakeOperator(w, "window", registry);
      break;
    }
    case kEmit: op = MakeOperator(EmitSpec{Field::kTxnId}, "", registry); break;
  }
  if (!op.ok()) {
    state.SkipWithError(op.status().ToString().c_str());
    return;
  }
  if (*op) chain.push_back(std::move(*op));
  RecordCounters counters;
  CountingOutput out;
  TaskContext ctx;
  ctx.counters = &counters;
  ctx.out = &out;
  RecordBatch batch;
  size_t next = 0;
  int64_t offset = 0;
  for (auto _ : state) {
    batch.Reset(0);
    for (int i = 0; i < 4096; ++i, next = (next + 1) % payloads.buffers.size()) {
      InputRecord& r = batch.records.emplace_back();
      r.payload = reinterpret_cast<const uint8_t*>(payloads.buffers[next].data());
      r.size = payloads.sizes[next];
      r.offset = offset++;
    }
    batch.SelectAll();
    for (auto& o : chain) o->Process(batch, ctx);
    for (auto& o : chain) o->OnBatchEnd(ctx);
  }
  state.SetItemsProcessed(state.iterations() * 4096);
  state.counters["outputs"] = static_cast<double>(out.emitted);
}
BENCHMARK(BM_OperatorChain)->DenseRange(kDecode, kEmit)->MinTime(0.5);

std::filesystem::path BenchDir(const char* name) {
  auto dir = std::filesystem::temp_directory_path() / (std::string("kappa-bench-") + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

void BM_ArchiveWrite(benchmark::State& state) {
  static const Aligned payloads = MakePayloads(1 << 16);
  const auto dir = BenchDir("archive-write");
  auto writer = ArchiveWriter::Open(dir.string(), "t", 0);
  if (!writer.ok()) {
    state.SkipWithError(writer.status().ToString().c_str());
    return;
  }
  ArchiveRecord r;
  int64_t offset = 0, bytes = 0;
  size_t next = 0;
  for (auto _ : state) {
    r.offset = offset++;
    r.timestamp_ms = offset;
    r.key = payloads.keys[next];
    r.value = std::string_view(reinterpret_cast<const char*>(payloads.buffers[next].data()), payloads.sizes[next]);
    bytes += static_cast<int64_t>(r.key.size() + r.value.size());
    if (!(*writer)->Append(r).ok()) state.SkipWithError("append failed");
    next = (next + 1) % payloads.sizes.size();
  }
  if (!(*writer)->Flush().ok()) state.SkipWithError("flush failed");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
  writer->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_ArchiveWrite)->MinTime(1.0);

void BM_ArchiveRead(benchmark::State& state) {
  static const Aligned payloads = MakePayloads(1 << 16);
  const auto dir = BenchDir("archive-read");
  constexpr int64_t kRecords = 2000000;
  {
    auto writer = ArchiveWriter::Open(dir.string(), "t", 0);
    ArchiveRecord r;
    for (int64_t i = 0; i < kRecords; ++i) {
      const size_t k = static_cast<size_t>(i) % payloads.sizes.size();
      r.offset = i;
      r.key = payloads.keys[k];
      r.value = std::string_view(reinterpret_cast<const char*>(payloads.buffers[k].data()), payloads.sizes[k]);
      (void)(*writer)->Append(r);
    }
    (void)(*writer)->Flush();
  }
  int64_t records = 0, bytes = 0;
  std::vector<ArchiveRecord> block;
  for (auto _ : state) {
    auto reader = ArchiveReader::Open(dir.string(), "t", 0);
    for (;;) {
      if (!(*reader)->NextBlock(&block).ok()) state.SkipWithError("read failed");
      if (block.empty()) break;
      for (const auto& r : block) bytes += static_cast<int64_t>(r.value.size() + r.key.size());
      records += static_cast<int64_t>(block.size());
    }
  }
  state.SetItemsProcessed(records);
  state.SetBytesProcessed(bytes);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_ArchiveRead)->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace
}  // namespace kappa
