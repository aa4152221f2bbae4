// End-to-end latency of a live version (produce -> output), alone and beside
// a concurrent replay at full speed or with --max-rate. A measurement, never a
// test assertion. Runs the real `kappa` binary against an embedded broker:
//   build/bench/kappa_latency_bench build/kappa [history] [live_rate] [seconds]
// The job is a pass-through (decode, emit keyed by txn_id), so latency is the
// engine's own: consume, decode, produce, plus the sink's linger. Inputs carry
// their wall-clock produce time as Kafka timestamp; outputs get theirs from
// the sink producer; latency = output timestamp - input timestamp.
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "base/hash.h"
#include "kafka/embedded_broker.h"
#include "workload/event_producer.h"
#include "kafka/kafka_client.h"
#include "kafka/topic_reader.h"
#include "workload/transaction_generator.h"
#include "schemas/transaction_generated.h"

namespace kappa {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::fflush(stdout);  // or the child inherits (and prints) unflushed output
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    FILE* o = std::freopen("/dev/null", "w", stdout);
    (void)o;
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

void StopAndWait(pid_t pid) {
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
}

std::string WriteSpec(const std::string& dir, const std::string& job, int version) {
  const std::string path = dir + "/" + job + ".v" + std::to_string(version) + ".yaml";
  std::ofstream(path) << "job: " << job << "\nversion: " << version << "\nsource: {topic: " << job
                      << "}\noperators:\n  - emit: {key: txn_id}\nsink: {topic: " << job << "-out}\ndlq: {topic: "
                      << job << ".dlq}\nlate: {topic: " << job << ".late}\ncheckpoint: {interval: 1s, dir: " << dir
                      << "/" << job << ".v" << version << "}\n";
  return path;
}

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};

Percentiles Measure(std::vector<int64_t> v) {
  Percentiles p;
  p.n = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  p.p50 = v[v.size() / 2];
  p.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  p.max = v.back();
  return p;
}

// One scenario: history in the topic, v1 live, optionally v2 replaying from
// zero during the measured phase; returns v1's latency over the live phase.
Percentiles Scenario(const std::string& kappa, const std::string& brokers, EmbeddedBroker& broker,
                     const std::string& job, uint64_t history, double live_rate, int seconds,
                     const std::vector<std::string>& replay_args) {
  const std::string dir = "/tmp/kappa-latency/" + job;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  broker.CreateTopic({job, 8});
  KafkaConfig config;
  config.brokers = brokers;
  GeneratorOptions history_options;
  history_options.count = history;
  history_options.users = 5000;
  history_options.zipf_exponent = 0.8;
  history_options.seed = 1;
  if (!ProduceEvents(config, job, history_options).ok()) return {};

  pid_t live = Spawn({kappa, "deploy", WriteSpec(dir, job, 1), "-b", brokers, "--control-topic", job + ".control",
                      "--status-interval-ms", "0"},
                     dir + "/v1.log");
  // Let v1 catch up with the history before measuring.
  for (int i = 0; i < 600; ++i) {
    std::ifstream m(dir + "/" + job + ".v1/metrics.json");
    std::string text((std::istreambuf_iterator<char>(m)), {});
    if (text.find("\"records_in\": " + std::to_string(history) + ",") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  pid_t replay = -1;
  if (!replay_args.empty()) {
    std::vector<std::string> args = {kappa, "replay", WriteSpec(dir, job, 2), "-b", brokers, "--control-topic",
                                     job + ".control", "--status-interval-ms", "0"};
    args.insert(args.end(), replay_args.begin(), replay_args.end());
    replay = Spawn(args, dir + "/v2.log");
  }

  // The live phase: paced records stamped with their wall-clock produce time.
  auto producer = CreateClient(ClientKind::kProducer, config, {{"linger.ms", "0"}, {"enable.idempotence", "true"}});
  GeneratorOptions live_options = history_options;
  live_options.seed = 2;
  live_options.count = static_cast<uint64_t>(live_rate * seconds);
  TransactionGenerator gen(live_options);
  GeneratedRecord r;
  std::map<std::string, int64_t> sent_at;
  const auto start = std::chrono::steady_clock::now();
  uint64_t i = 0;
  while (gen.Next(&r)) {
    const auto due = start + std::chrono::microseconds(static_cast<int64_t>(i++ * 1e6 / live_rate));
    std::this_thread::sleep_until(due);
    const int64_t now = NowMs();
    // Fresh txn ids, so the live records are told apart from history.
    const std::string key = "live-" + std::to_string(i);
    if (r.kind != RecordKind::kValid) continue;
    r.txn_id = key;
    flatbuffers::FlatBufferBuilder fbb(128);
    auto root = schema::CreateTransactionDirect(fbb, key.c_str(), r.user_id.c_str(),
                                                static_cast<schema::TxnStatus>(r.status), r.amount_cents,
                                                r.currency.c_str(), r.event_time_ms);
    schema::FinishTransactionBuffer(fbb, root);
    rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(job.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                      RD_KAFKA_V_PARTITION(PartitionForKey(r.key, 8)), RD_KAFKA_V_KEY(r.key.data(), r.key.size()),
                      RD_KAFKA_V_VALUE(fbb.GetBufferPointer(), fbb.GetSize()), RD_KAFKA_V_TIMESTAMP(now),
                      RD_KAFKA_V_END);
    rd_kafka_poll(producer->get(), 0);
    sent_at[key] = now;
  }
  rd_kafka_flush(producer->get(), 30000);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // let the last records through
  StopAndWait(live);
  if (replay > 0) StopAndWait(replay);

  std::vector<int64_t> latencies;
  auto st = ReadTopic(config, job + "-out.v1", [&](const ConsumedRecord& c) {
    auto it = sent_at.find(std::string(c.key));
    if (it != sent_at.end()) latencies.push_back(c.timestamp_ms - it->second);
  });
  if (!st.ok()) std::fprintf(stderr, "%s: %s\n", job.c_str(), st.status().ToString().c_str());
  return Measure(latencies);
}

}  // namespace
}  // namespace kappa

int main(int argc, char** argv) {
  using namespace kappa;
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::printf("usage: kappa_latency_bench PATH/TO/kappa [history=150000] [live_rate=2000] [seconds=10]\n");
    return argc < 2 ? 2 : 0;
  }
  const std::string kappa = argv[1];
  const uint64_t history = argc > 2 ? std::stoull(argv[2]) : 150000;
  const double rate = argc > 3 ? std::stod(argv[3]) : 2000;
  const int seconds = argc > 4 ? std::stoi(argv[4]) : 10;
  auto broker = EmbeddedBroker::Start({});
  if (!broker.ok()) return 1;
  const std::string b = (*broker)->bootstrap();
  struct Case {
    const char* name;
    std::vector<std::string> replay;
  };
  const Case cases[] = {{"live alone", {}},
                        {"beside a full-speed replay", {"--max-rate", "0"}},
                        {"beside a replay with --max-rate 20000", {"--max-rate", "20000"}}};
  std::printf("live version latency, produce -> output, %.0f records/s for %d s, %llu records of history, "
              "embedded broker, %u cores\n",
              rate, seconds, static_cast<unsigned long long>(history), std::thread::hardware_concurrency());
  std::printf("| scenario | records | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
  int n = 0;
  for (const auto& c : cases) {
    const Percentiles p = Scenario(kappa, b, **broker, "lat" + std::to_string(n++), history, rate, seconds, c.replay);
    std::printf("| %s | %zu | %.0f | %.0f | %.0f |\n", c.name, p.n, p.p50, p.p99, p.max);
    std::fflush(stdout);
  }
  return 0;
}
