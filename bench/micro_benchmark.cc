// Micro benchmarks of the hot path, with Google Benchmark: FlatBuffers
// verify+access, the user-spend operator chain per batch, and checkpoint
// commits of N dirty keys to RocksDB. Run: build/bench/kappa_micro_bench.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "formats/avro_decoder.h"
#include "formats/json_decoder.h"
#include "formats/flatbuffers_decoder.h"
#include "workload/event_encoding.h"
#include "workload/transaction_generator.h"
#include "operators/operator.h"
#include "schemas/transaction_generated.h"
#include "state/state_backend.h"

namespace kappa {
namespace {

std::vector<std::string> Payloads(size_t n, double events_per_second = 1000) {
  GeneratorOptions o;
  o.count = n;
  o.users = 10000;
  o.seed = 1;
  o.events_per_second = events_per_second;
  o.duplicate_fraction = 0.02;
  o.out_of_order_fraction = 0.05;
  o.max_delay_ms = 60000;
  TransactionGenerator gen(o);
  GeneratedRecord r;
  std::vector<std::string> out;
  while (gen.Next(&r)) out.push_back(r.value);
  return out;
}

class NullOutput : public OutputCollector {
 public:
  void Emit(std::string_view, const uint8_t*, size_t, const OutputLineage&) override { ++emitted; }
  void EmitDlq(int32_t, const InputRecord&, DlqReason, std::string_view) override {}
  void EmitLate(int32_t, const InputRecord&) override {}
  int64_t emitted = 0;
};

void BM_DecodeVerify(benchmark::State& state) {
  const auto payloads = Payloads(4096);
  int64_t sum = 0;
  for (auto _ : state) {
    for (const auto& p : payloads) {
      flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(p.data()), p.size());
      if (schema::VerifyTransactionBuffer(v)) sum += schema::GetTransaction(p.data())->amount_cents();
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * payloads.size());
}
BENCHMARK(BM_DecodeVerify);

// The same Transaction records, all six fields read: the generated verifier
// and accessors vs the user-schema path (schemas/transaction.fbs compiled at
// load, reflection verify, paths resolved to vtable slots). Issue 12 wants
// the second within 10% of the first. Payloads are 8-byte aligned copies.
std::vector<std::vector<uint64_t>> AlignedPayloads() {
  std::vector<std::vector<uint64_t>> out;
  for (const auto& p : Payloads(4096)) {
    out.emplace_back(p.size() / 8 + 1);
    std::memcpy(out.back().data(), p.data(), p.size());
  }
  return out;
}
void BM_FlatBuffersGeneratedDecode(benchmark::State& state) {
  const auto payloads = AlignedPayloads();
  int64_t sum = 0;
  for (auto _ : state) {
    for (const auto& w : payloads) {
      const auto* p = reinterpret_cast<const uint8_t*>(w.data());
      flatbuffers::Verifier v(p, w.size() * 8);
      if (!schema::VerifyTransactionBuffer(v)) continue;
      const auto* t = schema::GetTransaction(p);
      sum += t->txn_id()->size() + t->user_id()->size() + static_cast<int>(t->status()) + t->amount_cents() +
             t->currency()->size() + t->event_time_ms();
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * payloads.size());
}
BENCHMARK(BM_FlatBuffersGeneratedDecode);
void BM_FlatBuffersReflectionDecode(benchmark::State& state) {
  const auto payloads = AlignedPayloads();
  RecordSchema rs;
  auto add = [&](const char* name, ValueType type) {
    FieldDecl f;
    f.name = name;
    f.type = type;
    (void)rs.Add(f);
  };
  for (const char* f : {"txn_id", "user_id", "status", "currency"}) add(f, ValueType::kString);
  add("amount_cents", ValueType::kInt64);
  add("event_time_ms", ValueType::kTimestamp);
  auto d = FlatBuffersDecoder::Create(rs, KAPPA_SCHEMAS_DIR "/transaction.fbs");
  if (!d.ok()) return state.SkipWithError(d.status().ToString().c_str());
  FieldValue out[6];
  DecodeError err;
  int64_t sum = 0, failed = 0;
  for (auto _ : state) {
    for (const auto& w : payloads) {
      if (!(*d)->Decode({reinterpret_cast<const uint8_t*>(w.data()), uint32_t(w.size() * 8)}, out, &err)) {
        ++failed;
        continue;
      }
      sum += out[0].len + out[1].len + out[2].len + out[3].len + out[4].i + out[5].i;
    }
  }
  benchmark::DoNotOptimize(sum);
  state.counters["failed"] = static_cast<double>(failed);
  state.SetItemsProcessed(state.iterations() * payloads.size());
}
BENCHMARK(BM_FlatBuffersReflectionDecode);

// decode -> dedup(txn_id, 1h) -> filter(status != cancelled) -> hourly window,
// fed in batches of 4096 as the runtime feeds it.
void BM_UserSpendChain(benchmark::State& state) {
  // 240 batches of 4096 distinct records (no wrap-around, which dedup would
  // swallow), spanning ~5.5 hours of event time so windows do close.
  const auto payloads = Payloads(240 * 4096, 50);
  StateRegistry registry;
  std::vector<std::unique_ptr<Operator>> chain;
  chain.push_back(MakeDecodeValidate(DecodeSpec{}));
  DedupSpec dedup;
  dedup.ttl_ms = 3600 * 1000;
  chain.push_back(std::move(*MakeOperator(dedup, "dedup", registry)));
  chain.push_back(std::move(*MakeOperator(FilterSpec{{*ParsePredicate("status != cancelled")}}, "", registry)));
  WindowSpec w;
  w.size_ms = w.slide_ms = 3600 * 1000;
  w.aggregates = {Aggregate::kCount, Aggregate::kSum};
  chain.push_back(std::move(*MakeOperator(w, "window", registry)));
  RecordCounters counters;
  NullOutput out;
  TaskContext ctx;
  ctx.counters = &counters;
  ctx.out = &out;
  RecordBatch batch;
  size_t next = 0;
  int64_t offset = 0;
  for (auto _ : state) {
    batch.Reset(0);
    for (int i = 0; i < 4096; ++i, next = (next + 1) % payloads.size()) {
      InputRecord& r = batch.records.emplace_back();
      r.payload = reinterpret_cast<const uint8_t*>(payloads[next].data());
      r.size = static_cast<uint32_t>(payloads[next].size());
      r.offset = offset++;
    }
    batch.SelectAll();
    for (auto& op : chain) op->Process(batch, ctx);
    for (auto& op : chain) op->OnBatchEnd(ctx);
  }
  state.SetItemsProcessed(state.iterations() * 4096);
  state.counters["windows_emitted"] = static_cast<double>(out.emitted);
}
BENCHMARK(BM_UserSpendChain)->Iterations(240);

// decode -> rolling 7-day window per user (count, sum, max, count_distinct
// over 100 merchants): one JSON row per record. 10 k users, 2 M in-order
// events over 30 days (~470 k live events, ~47 per user), in batches of 4096.
void BM_RollingWindow(benchmark::State& state) {
  constexpr int64_t kEvents = 2'000'000;
  constexpr int64_t kDay = 24 * 3600 * 1000LL;
  constexpr int64_t kT0 = 1767225600000;
  std::vector<std::string> payloads;
  payloads.reserve(kEvents);
  uint64_t x = 88172645463325252ULL;  // xorshift: no <random> dependence on the library
  auto next_random = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int64_t i = 0; i < kEvents; ++i) {
    flatbuffers::FlatBufferBuilder fbb(128);
    const std::string id = "t" + std::to_string(i);
    const std::string user = "u" + std::to_string(next_random() % 10000);
    const std::string merchant = "m" + std::to_string(next_random() % 100);
    auto root = schema::CreateTransactionDirect(fbb, id.c_str(), user.c_str(), schema::TxnStatus::Approved,
                                                static_cast<int64_t>(next_random() % 100000), merchant.c_str(),
                                                kT0 + i * (30 * kDay / kEvents));
    schema::FinishTransactionBuffer(fbb, root);
    payloads.emplace_back(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  }
  StateRegistry registry;
  std::vector<std::unique_ptr<Operator>> chain;
  chain.push_back(MakeDecodeValidate(DecodeSpec{}));
  WindowSpec w;
  w.kind = WindowSpec::Kind::kRolling;
  w.size_ms = w.slide_ms = 7 * kDay;
  w.aggregates.clear();
  w.features = {{"txn_count_7d", FeatureKind::kCount, Field::kValue},
                {"spend_7d", FeatureKind::kSum, Field::kAmountCents},
                {"max_7d", FeatureKind::kMax, Field::kAmountCents},
                {"merchants_7d", FeatureKind::kCountDistinct, Field::kCurrency}};
  w.features.resize(static_cast<size_t>(state.range(0)));  // the first n (Arg 4: all)
  chain.push_back(std::move(*MakeOperator(w, "rolling", registry)));
  RecordCounters counters;
  NullOutput out;
  TaskContext ctx;
  ctx.counters = &counters;
  ctx.out = &out;
  RecordBatch batch;
  size_t next = 0;
  int64_t offset = 0;
  for (auto _ : state) {
    batch.Reset(0);
    for (int i = 0; i < 4096 && next < payloads.size(); ++i, ++next) {
      InputRecord& r = batch.records.emplace_back();
      r.payload = reinterpret_cast<const uint8_t*>(payloads[next].data());
      r.size = static_cast<uint32_t>(payloads[next].size());
      r.offset = offset++;
    }
    batch.SelectAll();
    for (auto& op : chain) op->Process(batch, ctx);
    for (auto& op : chain) op->OnBatchEnd(ctx);
  }
  state.SetItemsProcessed(offset);
  state.counters["rows"] = static_cast<double>(out.emitted);
}
BENCHMARK(BM_RollingWindow)->Arg(4)->Arg(3)->Arg(1)->Iterations(2'000'000 / 4096)->Unit(benchmark::kMillisecond);

struct Acc {
  int64_t a, b, c, d;
};

void BM_CheckpointCommit(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / ("kappa-bench-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto backend = StateBackend::Open(dir.string(), {"window"});
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  (void)(*backend)->CheckIdentity({"bench", 1, "0000000000000000"});
  const int64_t keys = state.range(0);
  StateRegistry registry;
  auto* table = registry.Register<Acc>("window");
  TaskCheckpointData task;
  std::string key;
  int64_t epoch = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (int64_t i = 0; i < keys; ++i) {
      key.assign("user-").append(std::to_string(i));
      table->Upsert(key, Acc{i, i, i, i}).a += 1;
    }
    state.ResumeTiming();
    auto stats = (*backend)->Commit(++epoch, {{&task, &registry}});
    if (!stats.ok()) state.SkipWithError(stats.status().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * keys);
  backend->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_CheckpointCommit)->Arg(10000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMillisecond)->Iterations(3);

// JSON input (issue 12): ~180-byte documents, 6 declared fields of 10, two
// of them nested; items/s is records decoded per second on one core.
void BM_JsonDecode(benchmark::State& state) {
  RecordSchema schema;
  for (FieldDecl f : {FieldDecl{"txn_id", ValueType::kString, ""}, FieldDecl{"user_id", ValueType::kString, "user.id"},
                      FieldDecl{"cents", ValueType::kInt64, "amount.cents"}, FieldDecl{"status", ValueType::kString, ""},
                      FieldDecl{"merchant", ValueType::kString, ""}, FieldDecl{"ts", ValueType::kTimestamp, ""}}) {
    (void)schema.Add(f);
  }
  auto decoder = std::move(*JsonDecoder::Create(schema));
  std::vector<std::string> docs;
  for (int i = 0; i < 4096; ++i) {
    docs.push_back(R"({"txn_id":"t-)" + std::to_string(1000000 + i) + R"(","user":{"id":"user-)" +
                   std::to_string(i % 10000) + R"(","tier":"gold"},"amount":{"cents":)" + std::to_string(i * 37 % 100000) +
                   R"(,"currency":"EUR"},"merchant":"m-)" + std::to_string(i % 500) +
                   R"(","status":"approved","country":"NL","channel":"web","ts":)" + std::to_string(1767225600000 + i) + "}");
  }
  std::vector<FieldValue> out(6);
  DecodeError error;
  int64_t sum = 0, bytes = 0;
  for (auto _ : state) {
    decoder->BeginBatch();
    for (const auto& d : docs) {
      RawRecord r{reinterpret_cast<const uint8_t*>(d.data()), static_cast<uint32_t>(d.size())};
      if (decoder->Decode(r, out.data(), &error)) sum += out[2].i;
      bytes += static_cast<int64_t>(d.size());
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * docs.size());
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_JsonDecode);

// Avro input (issue 12): the generated workload in payment.avsc (~50-byte
// Confluent-framed records), 6 declared fields of 8, through the read plan
// built from the writer schema text (no registry); items/s per core.
void BM_AvroDecode(benchmark::State& state) {
  RecordSchema schema;
  for (FieldDecl f : {FieldDecl{"txn_id", ValueType::kString, ""}, FieldDecl{"user_id", ValueType::kString, "user.id"},
                      FieldDecl{"cents", ValueType::kInt64, "amount.cents"}, FieldDecl{"status", ValueType::kString, ""},
                      FieldDecl{"merchant", ValueType::kString, ""}, FieldDecl{"ts", ValueType::kTimestamp, "event_time"}}) {
    (void)schema.Add(f);
  }
  auto decoder = std::move(*AvroDecoder::CreateWithWriterSchemas(schema, {{1, AvroPaymentEncoder::SchemaJson()}}));
  auto encoder = std::move(*AvroPaymentEncoder::Create(1));
  GeneratorOptions options;
  options.count = 4096;
  options.users = 10000;
  TransactionGenerator gen(options);
  std::vector<std::string> records;
  GeneratedRecord txn;
  while (gen.Next(&txn)) {
    records.emplace_back();
    (void)encoder->Encode(txn, &records.back());
  }
  std::vector<FieldValue> out(6);
  DecodeError error;
  int64_t sum = 0, bytes = 0;
  for (auto _ : state) {
    decoder->BeginBatch();
    for (const auto& d : records) {
      RawRecord r{reinterpret_cast<const uint8_t*>(d.data()), static_cast<uint32_t>(d.size())};
      if (decoder->Decode(r, out.data(), &error)) sum += out[2].i;
      bytes += static_cast<int64_t>(d.size());
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * records.size());
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_AvroDecode);

}  // namespace
}  // namespace kappa

BENCHMARK_MAIN();
