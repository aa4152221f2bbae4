// State micro benchmarks: KeyedState lookups and upserts (against the
// std::unordered_map it replaced, same keys and access order), raw RocksDB
// get/put for scale, and the checkpoint of N dirty keys split into the
// processing stall (BeginCommit) and the time until it is durable.
#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <unordered_map>

#include "state/state_backend.h"

namespace kappa {
namespace {

struct Acc {  // the size of WindowAggregate::Accumulator
  int64_t v[7];
};

// "<user>|<8-byte window start>" keys, as the hourly window builds them (17 bytes).
std::vector<std::string> WindowKeys(size_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  char user[16];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(user, sizeof(user), "u%07zu", i % 1000003);
    std::string k(user);
    k.push_back('|');
    const uint64_t start = (i / 1000003 + 490000) * 3600000ull;
    for (int b = 7; b >= 0; --b) k.push_back(static_cast<char>(start >> (8 * b)));
    keys.push_back(std::move(k));
  }
  return keys;
}

// A random sequence of `count` of the keys, laid out back to back so that
// reading the next key is a sequential read, not a cache miss of the harness.
// Every window key has 17 bytes.
constexpr size_t kKeyBytes = 17;
std::string Sequence(const std::vector<std::string>& keys, size_t count) {
  std::mt19937 rng(42);
  std::string seq;
  seq.reserve(count * kKeyBytes);
  for (size_t i = 0; i < count; ++i) seq.append(keys[rng() % keys.size()]);
  return seq;
}
std::string_view At(const std::string& seq, size_t i) { return std::string_view(seq).substr(i * kKeyBytes, kKeyBytes); }

// The table KeyedState used to be.
struct LegacyEntry {
  Acc value;
  bool dirty;
};
using LegacyMap = std::unordered_map<std::string, LegacyEntry, StringHash, std::equal_to<>>;

// Upsert of existing keys (the steady state of a window or dedup table),
// random order, table of range(0) keys.
void BM_KeyedStateUpsert(benchmark::State& state) {
  const auto keys = WindowKeys(state.range(0));
  const auto seq = Sequence(keys, 1 << 20);
  const size_t n = seq.size() / kKeyBytes;
  KeyedState<Acc> table("t");
  for (const auto& k : keys) table.Upsert(k, Acc{});
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) ++table.Upsert(At(seq, i), Acc{}).v[0];
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_KeyedStateUpsert)->Arg(10000)->Arg(1000000);

void BM_LegacyMapUpsert(benchmark::State& state) {
  const auto keys = WindowKeys(state.range(0));
  const auto seq = Sequence(keys, 1 << 20);
  const size_t n = seq.size() / kKeyBytes;
  LegacyMap map;
  for (const auto& k : keys) map.emplace(k, LegacyEntry{});
  size_t dirty = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) {
      std::string_view key = At(seq, i);
      auto it = map.find(key);
      if (it == map.end()) it = map.emplace(std::string(key), LegacyEntry{}).first;
      if (!it->second.dirty) {
        it->second.dirty = true;
        ++dirty;
      }
      ++it->second.value.v[0];
    }
  }
  benchmark::DoNotOptimize(dirty);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_LegacyMapUpsert)->Arg(10000)->Arg(1000000);

void BM_KeyedStateFind(benchmark::State& state) {
  const auto keys = WindowKeys(state.range(0));
  const auto seq = Sequence(keys, 1 << 20);
  const size_t n = seq.size() / kKeyBytes;
  KeyedState<Acc> table("t");
  for (const auto& k : keys) table.Upsert(k, Acc{});
  int64_t sum = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) sum += table.Find(At(seq, i))->v[0];
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_KeyedStateFind)->Arg(10000)->Arg(1000000);

void BM_LegacyMapFind(benchmark::State& state) {
  const auto keys = WindowKeys(state.range(0));
  const auto seq = Sequence(keys, 1 << 20);
  const size_t n = seq.size() / kKeyBytes;
  LegacyMap map;
  for (const auto& k : keys) map.emplace(k, LegacyEntry{});
  int64_t sum = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) sum += map.find(At(seq, i))->second.value.v[0];
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_LegacyMapFind)->Arg(10000)->Arg(1000000);

// Insert range(0) fresh keys, then erase them all (a window table's life).
void BM_KeyedStateInsertErase(benchmark::State& state) {
  const auto keys = WindowKeys(state.range(0));
  for (auto _ : state) {
    KeyedState<Acc> table("t");
    for (const auto& k : keys) table.Upsert(k, Acc{});
    for (const auto& k : keys) table.Erase(k);
    benchmark::DoNotOptimize(table.size());
  }
  state.SetItemsProcessed(state.iterations() * keys.size());
}
BENCHMARK(BM_KeyedStateInsertErase)->Arg(1000000)->Unit(benchmark::kMillisecond);

void BM_LegacyMapInsertErase(benchmark::State& state) {
  const auto keys = WindowKeys(state.range(0));
  for (auto _ : state) {
    LegacyMap map;
    std::vector<std::string> erased;
    for (const auto& k : keys) map.emplace(k, LegacyEntry{});
    for (const auto& k : keys) {
      auto it = map.find(std::string_view(k));
      erased.push_back(it->first);
      map.erase(it);
    }
    benchmark::DoNotOptimize(map.size());
  }
  state.SetItemsProcessed(state.iterations() * keys.size());
}
BENCHMARK(BM_LegacyMapInsertErase)->Arg(1000000)->Unit(benchmark::kMillisecond);

// A replay's dedup table: a stream of new 16-byte txn ids, one per record,
// event time rising by `step` ms per record, expired by the TTL rule once
// per TTL of event time (as Dedup::OnBatchEnd does): range(0) records per
// TTL, so the table holds one to two TTLs of keys. Per record: the upsert
// and the record's share of the purge (the scan and the index erasures).
// 22,500 per TTL is one task of replay_throughput's 20 M replay (16
// partitions, 100 events/s of event time: its table fits a core's L2);
// 300,000 a single hot partition (beyond the caches).
void BM_DedupStream(benchmark::State& state) {
  struct Entry {
    int64_t first_seen_ms;
  };
  const int64_t per_ttl = state.range(0);
  const int64_t ttl_ms = 3'600'000;
  const int64_t step = ttl_ms / per_ttl;
  KeyedState<Entry> table("dedup");
  int64_t t = 0;
  int64_t last_purge = 0;
  uint64_t id = 0;
  double purge_s = 0;
  char key[16];
  auto record = [&] {
    ++id;
    std::memcpy(key, &id, 8);
    const uint64_t mixed = id * 0x9E3779B97F4A7C15ull;
    std::memcpy(key + 8, &mixed, 8);
    bool inserted;
    table.Upsert(std::string_view(key, 16), Entry{t}, &inserted);
    t += step;
    if (t - last_purge >= ttl_ms) {
      last_purge = t;
      const auto began = std::chrono::steady_clock::now();
      table.ExpireIf([&](std::string_view, const Entry& e) { return t > e.first_seen_ms + ttl_ms; });
      purge_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    }
  };
  for (int64_t i = 0; i < 3 * per_ttl; ++i) record();  // warm: the steady state's size
  purge_s = 0;
  constexpr int64_t kBatch = 1 << 20;
  for (auto _ : state) {
    for (int64_t i = 0; i < kBatch; ++i) record();
  }
  state.counters["table"] = static_cast<double>(table.size());
  state.counters["purge_ns_per_record"] = purge_s * 1e9 / static_cast<double>(state.iterations() * kBatch);
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_DedupStream)->Arg(22500)->Arg(300000)->Unit(benchmark::kMillisecond)->MinTime(3.0);

// Raw RocksDB point reads and (unsynced) writes of the same keys and value
// size, for scale: why state is a write-back cache and not read through.
struct ScratchDb {
  std::filesystem::path dir;
  std::unique_ptr<rocksdb::DB> db;
  explicit ScratchDb(const char* name) {
    dir = std::filesystem::temp_directory_path() / (std::string(name) + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    if (rocksdb::DB::Open(o, dir.string(), &raw).ok()) db.reset(raw);
  }
  ~ScratchDb() {
    db.reset();
    std::filesystem::remove_all(dir);
  }
};

void BM_RocksDbPut(benchmark::State& state) {
  ScratchDb s("kappa-bench-put");
  if (!s.db) return state.SkipWithError("cannot open RocksDB");
  const auto keys = WindowKeys(state.range(0));
  const auto seq = Sequence(keys, 1 << 16);
  const size_t n = seq.size() / kKeyBytes;
  Acc acc{};
  const rocksdb::Slice value(reinterpret_cast<const char*>(&acc), sizeof(acc));
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) s.db->Put(rocksdb::WriteOptions(), rocksdb::Slice(At(seq, i).data(), kKeyBytes), value);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_RocksDbPut)->Arg(1000000);

void BM_RocksDbGet(benchmark::State& state) {
  ScratchDb s("kappa-bench-get");
  if (!s.db) return state.SkipWithError("cannot open RocksDB");
  const auto keys = WindowKeys(state.range(0));
  const auto seq = Sequence(keys, 1 << 16);
  const size_t n = seq.size() / kKeyBytes;
  Acc acc{};
  const rocksdb::Slice value(reinterpret_cast<const char*>(&acc), sizeof(acc));
  rocksdb::WriteBatch batch;
  for (const auto& k : keys) batch.Put(k, value);
  s.db->Write(rocksdb::WriteOptions(), &batch);
  s.db->Flush(rocksdb::FlushOptions());
  std::string out;
  size_t found = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) found += s.db->Get(rocksdb::ReadOptions(), rocksdb::Slice(At(seq, i).data(), kKeyBytes), &out).ok();
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_RocksDbGet)->Arg(1000000);

// A checkpoint of range(0) dirty keys out of a table of the same size:
// stall_ms is the BeginCommit the processing thread waits for, durable_ms
// the time until WaitForCommits returns (the synced WriteBatch). The timed
// region is the stall.
void BM_CheckpointStall(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / ("kappa-bench-stall-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto backend = StateBackend::Open(dir.string(), {"window"});
  if (!backend.ok()) return state.SkipWithError(backend.status().ToString().c_str());
  (void)(*backend)->CheckIdentity({"bench", 1, "0000000000000000"});
  const auto keys = WindowKeys(state.range(0));
  StateRegistry registry;
  auto* table = registry.Register<Acc>("window");
  TaskCheckpointData task;
  int64_t epoch = 0;
  double stall_ms = 0, durable_ms = 0, max_stall_ms = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (const auto& k : keys) ++table->Upsert(k, Acc{}).v[0];
    state.ResumeTiming();
    const auto start = std::chrono::steady_clock::now();
    auto begun = (*backend)->BeginCommit(++epoch, {{&task, &registry}});
    const auto captured = std::chrono::steady_clock::now();
    state.PauseTiming();
    auto done = (*backend)->WaitForCommits();
    const auto durable = std::chrono::steady_clock::now();
    if (!begun.ok() || !done.ok()) {
      state.SkipWithError("checkpoint failed");
      break;
    }
    const double stall = std::chrono::duration<double, std::milli>(captured - start).count();
    stall_ms += stall;
    max_stall_ms = std::max(max_stall_ms, stall);
    durable_ms += std::chrono::duration<double, std::milli>(durable - start).count();
    state.ResumeTiming();
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["stall_ms"] = stall_ms / n;
  state.counters["max_stall_ms"] = max_stall_ms;
  state.counters["durable_ms"] = durable_ms / n;
  state.SetItemsProcessed(state.iterations() * keys.size());
  backend->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_CheckpointStall)
    ->Arg(10000)
    ->Arg(100000)
    ->Arg(1000000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(4);

}  // namespace
}  // namespace kappa
