// Helpers for the end-to-end stories: produce the transaction workload,
// write a job spec, read a job's output topic back into a map, parse the
// metrics file kappa run writes.
#pragma once

#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kafka/kafka_client.h"
#include "kafka/topic_reader.h"
#include "schemas/window_aggregate_generated.h"
#include "tests/support/test_support.h"
#include "workload/event_producer.h"

namespace kappa::testing {

// The stories' workload: `count` transactions by `users` users (Zipf 0.8),
// `events_per_second` of event time (low rates span hours, so hourly windows
// close), no disorder, duplicates or malformed records unless the story
// sets them on the result.
inline GeneratorOptions SmallWorkload(uint64_t seed, uint64_t count, uint64_t users = 300,
                                      double events_per_second = 1) {
  GeneratorOptions gen;
  gen.count = count;
  gen.users = users;
  gen.zipf_exponent = 0.8;
  gen.seed = seed;
  gen.events_per_second = events_per_second;
  return gen;
}

// The crash stories' workload: SmallWorkload with 5% of records out of
// order by up to 20 min (some beyond a 10 min lateness: late), 2% duplicate
// sends and 1% malformed records.
inline GeneratorOptions DisorderlyWorkload(uint64_t seed, uint64_t count, uint64_t users, double events_per_second) {
  GeneratorOptions gen = SmallWorkload(seed, count, users, events_per_second);
  gen.out_of_order_fraction = 0.05;
  gen.max_delay_ms = 20 * 60 * 1000;
  gen.duplicate_fraction = 0.02;
  gen.malformed_fraction = 0.01;
  return gen;
}

// Produces gen to topic and waits for every ack (a fatal failure otherwise;
// wrap in ASSERT_NO_FATAL_FAILURE to stop the test there).
inline void ProduceWorkload(const KafkaConfig& config, const std::string& topic, const GeneratorOptions& gen,
                            ProduceSummary* summary = nullptr) {
  auto produced = ProduceEvents(config, topic, gen);
  ASSERT_TRUE(produced.ok()) << "producing the workload to " << topic << ": " << produced.status().ToString();
  if (summary) *summary = *produced;
}

struct SpecOptions {
  std::string job = "user-spend";
  int version = 1;
  std::string source = "transactions";
  std::string sink = "user-spend-hourly";
  std::string filter = "status != cancelled";
  std::string lateness = "10m";
  std::string checkpoint_interval = "1s";
  std::string state_dir;
  bool allow_truncated = false;
  std::string delivery = "at_least_once";
};

// The user-spend job `job` reading `source` into `<job>-out`, its state in
// `state_dir` (the other options as the defaults above).
inline SpecOptions JobOptions(const std::string& job, const std::string& source, const std::string& state_dir) {
  SpecOptions o;
  o.job = job;
  o.source = source;
  o.sink = job + "-out";
  o.state_dir = state_dir;
  return o;
}

inline std::string WriteSpec(const ScratchDir& dir, const std::string& name, const SpecOptions& o) {
  const std::string path = dir / name;
  std::ofstream out(path);
  out << "job: " << o.job << "\nversion: " << o.version << "\nsource:\n  topic: " << o.source
      << "\n  start: earliest\n";
  if (o.allow_truncated) out << "  allow_truncated_history: true\n";
  out << "operators:\n  - dedup: {field: txn_id, ttl: 1h}\n";
  if (!o.filter.empty()) out << "  - filter: [\"" << o.filter << "\"]\n";
  out << "  - window: {type: tumbling, size: 1h, key: user_id, aggregates: [count, sum, min, max, avg]}\n"
      << "allowed_lateness: " << o.lateness << "\nsink: {topic: " << o.sink << "}\ndlq: {topic: " << o.job
      << ".dlq}\nlate: {topic: " << o.job << ".late}\ncheckpoint: {interval: " << o.checkpoint_interval
      << ", dir: " << o.state_dir << "}\ndelivery: " << o.delivery << "\n";
  return path;
}

constexpr const char* kJsonSource = R"(  format: json
  fields:
    txn_id: string
    user_id: {type: string, path: user.id}
    status: string
    amount_cents: {type: int64, path: amount.cents}
    currency: {type: string, path: amount.currency}
    event_time: {type: timestamp, path: event_time, encoding: iso8601}
  event_time: event_time
  value: amount_cents
)";

// The user-spend spec of the stories with a declared source block inserted
// after `start:` (kJsonSource: the JSON `kappa gen --format json` writes).
inline std::string WriteDeclaredSpec(const ScratchDir& dir, const SpecOptions& o, const std::string& source_block,
                              const std::string& name = "json.yaml") {
  std::string text = ReadFile(WriteSpec(dir, "builtin-shape.yaml", o));
  const std::string anchor = "  start: earliest\n";
  const size_t at = text.find(anchor);
  EXPECT_NE(at, std::string::npos) << text;
  text.insert(at + anchor.size(), source_block);
  const std::string path = dir / name;
  std::ofstream(path) << text;
  return path;
}
// A job `name` over a JSON source the story produces itself: it reads
// <name>-in from the start, declares `fields` (a YAML flow mapping) with the
// timestamp field `t` as its event time, runs `operators` (YAML list
// items, one per line), writes <name>-out.v1, <name>.dlq and <name>.late,
// state in dir/<name>-state. Returns the spec's path.
inline std::string WriteJsonJobSpec(const ScratchDir& dir, const std::string& name, const std::string& fields,
                                    const std::string& operators) {
  const std::string path = dir / (name + ".yaml");
  std::ofstream(path) << "job: " << name << "\nversion: 1\nsource:\n  topic: " << name
                      << "-in\n  start: earliest\n  format: json\n  fields: " << fields
                      << "\n  event_time: t\noperators:\n"
                      << operators << "sink: {topic: " << name << "-out}\ndlq: {topic: " << name
                      << ".dlq}\nlate: {topic: " << name << ".late}\ncheckpoint: {interval: 1s, dir: "
                      << (dir / (name + "-state")) << "}\n";
  return path;
}
// The reference of the format stories: the built-in user-spend spec over
// `transactions`, run to the end of its input into builtin-out.v1, state in
// dir/builtin.
inline void RunBuiltinReference(const ScratchDir& dir, const std::string& bootstrap) {
  SpecOptions builtin;
  builtin.sink = "builtin-out";
  builtin.state_dir = dir / "builtin";
  std::string err;
  ASSERT_EQ(RunKappa({"run", WriteSpec(dir, "builtin.yaml", builtin), "-b", bootstrap, "--stop-at-end",
                      "--status-interval-ms", "0"},
                     nullptr, &err),
            0)
      << err;
}

struct OutputRow {
  std::string value;  // raw bytes
  std::map<std::string, std::string> headers;
  int32_t partition = 0;
};

// Every record of `topic`, by key; `copies` counts how often each key appeared.
struct TopicContents {
  std::map<std::string, OutputRow> rows;
  std::map<std::string, int> copies;
  int64_t total = 0;
  bool all_copies_identical = true;
};

// Waits (up to timeout_s) until a `kappa run` started with a positive
// --status-interval-ms prints a status line with a non-zero input count
// ("in N"): it has read something. A fixed sleep is not always enough for
// a job starting on a loaded machine. False if it exits or times out first.
inline bool WaitUntilReading(ChildProcess& job, int timeout_s) {
  const std::regex reading(", in [1-9]");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (!std::regex_search(job.Stderr(), reading)) {
    if (std::chrono::steady_clock::now() > deadline || job.WaitFor(50) != -1) return false;
  }
  return true;
}

// Every committed record of `topic`, read once no transaction is open on it
// any more (up to 60 s: a killed producer's transaction stays open until the
// broker aborts it; after that, what a read_committed reader sees then).
inline TopicContents ReadOutputs(const KafkaConfig& config, const std::string& topic) {
  TopicContents out;
  auto st = ReadTopic(config, topic, [&](const ConsumedRecord& r) {
    std::string key(r.key);
    ++out.total;
    auto it = out.rows.find(key);
    if (it != out.rows.end() && it->second.value != r.value) out.all_copies_identical = false;
    OutputRow row;
    row.value = std::string(r.value);
    for (const auto& [k, v] : r.headers) row.headers[k] = v;
    row.partition = r.partition;
    out.rows[key] = std::move(row);
    ++out.copies[key];
  }, 15000, nullptr, -1, /*settle_ms=*/60000);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  return out;
}

// The outputs of `got_topic` are those of `want_topic` (a reference run of
// the same job: the built-in decoder, an uninterrupted run): the same keys
// with the same values, as many of them, and nothing else; `also` checks
// more of each pair of rows (their headers, say).
inline void ExpectTopicsEqual(
    const KafkaConfig& config, const std::string& want_topic, const std::string& got_topic,
    const std::function<void(const std::string& key, const OutputRow& want, const OutputRow& got)>& also = {}) {
  const TopicContents want = ReadOutputs(config, want_topic);
  const TopicContents got = ReadOutputs(config, got_topic);
  ASSERT_GT(want.rows.size(), 100u);
  EXPECT_EQ(got.total, want.total);
  ASSERT_EQ(got.rows.size(), want.rows.size());
  for (const auto& [key, row] : want.rows) {
    auto it = got.rows.find(key);
    ASSERT_NE(it, got.rows.end()) << key;
    EXPECT_EQ(it->second.value, row.value) << key << " (" << got_topic << " against " << want_topic << ")";
    if (also) also(key, row, it->second);
  }
}

inline const schema::WindowAggregate* AsWindow(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!schema::VerifyWindowAggregateBuffer(v)) return nullptr;
  return schema::GetWindowAggregate(bytes.data());
}

// Reads an integer field of the metrics JSON kappa run writes.
inline int64_t MetricsField(const std::string& metrics_json, const std::string& field) {
  std::smatch m;
  std::regex re("\"" + field + "\": (-?[0-9]+)");
  if (!std::regex_search(metrics_json, m, re)) {
    ADD_FAILURE() << "no " << field << " in metrics: " << metrics_json;
    return -1;
  }
  return std::stoll(m[1]);
}

inline void ExpectLogStartsAtZero(const KafkaConfig& config, const std::string& topic) {
  auto consumer = CreateClient(ClientKind::kConsumer, config, {{"group.id", "probe"}});
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  auto n = TopicPartitionCount(consumer->get(), topic, 10000);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  auto marks = QueryAllWatermarks(consumer->get(), topic, *n, 10000);
  ASSERT_TRUE(marks.ok()) << marks.status().ToString();
  for (int32_t p = 0; p < *n; ++p) {
    ASSERT_EQ((*marks)[p].low, 0) << topic << "[" << p << "] lost history to the embedded broker's 5 MiB "
                                  << "retention: the test must use more partitions or fewer records";
  }
}

}  // namespace kappa::testing
