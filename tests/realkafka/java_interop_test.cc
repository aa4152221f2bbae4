// kappa among Java Kafka clients, on the suite's real broker (CTest fixture
// `realkafka`), with the broker's own jars (the classpath of the running
// broker, so exactly the Kafka version under test):
//   - an exactly-once job's outputs, after a kill -9 left an aborted
//     transaction in the log, read by Kafka's console consumer with
//     --isolation-level read_committed: exactly the records librdkafka's
//     read_committed reader sees (a read_uncommitted console consumer sees
//     more, so the comparison can tell);
//   - topics written by the Java producer with each compression codec (gzip,
//     snappy, lz4, zstd) and record headers, including a null-valued one
//     (tests/realkafka/java/Copy.java, run as a single-file source program):
//     kappa decodes them, shows the headers, and a job over each copy gives
//     exactly the outputs of the job over the original topic.
// Each test uses its own topics, job names and groups.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/clock.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

// Single-quotes s for /bin/sh.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct ShellResult {
  int rc = -1;
  std::string out;
  std::string err;
};

// Runs a command line under `timeout`, stdout and stderr captured apart.
ShellResult Shell(const std::string& command, const ScratchDir& dir, const std::string& name, int timeout_s) {
  const std::string err_path = dir / (name + ".stderr");
  std::string out = RunShell("timeout -k 5 " + std::to_string(timeout_s) + " " + command + " 2>" + Quote(err_path) +
                             "; echo \"@rc=$?\"");
  ShellResult r;
  const size_t at = out.rfind("@rc=");
  if (at != std::string::npos) {
    r.rc = std::atoi(out.c_str() + at + 4);
    out.resize(at);
  }
  r.out = std::move(out);
  r.err = ReadFile(err_path);
  return r;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

class JavaInteropTest : public SharedRealKafkaTest<> {
 protected:
  void SetUp() override {
    SharedRealKafkaTest::SetUp();
    if (this->IsSkipped()) return;
    classpath_ = BrokerClasspath();
    ASSERT_FALSE(classpath_.empty()) << "cannot find the running broker's classpath (-cp) in /proc/<pid>/cmdline of "
                                     << KAPPA_REALKAFKA_DIR << "/node1/pid";
  }

  // The -cp of the broker scripts/kafka.sh started: its Kafka's jars
  // (clients, tools and the compression codecs).
  static std::string BrokerClasspath() {
    std::ifstream pid_file(std::string(KAPPA_REALKAFKA_DIR) + "/node1/pid");
    std::string pid;
    std::getline(pid_file, pid);
    if (pid.empty()) return "";
    const std::string cmdline = ReadFile("/proc/" + pid + "/cmdline");
    std::vector<std::string> args;
    for (size_t start = 0; start < cmdline.size();) {
      size_t end = cmdline.find('\0', start);
      if (end == std::string::npos) end = cmdline.size();
      args.push_back(cmdline.substr(start, end - start));
      start = end + 1;
    }
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == "-cp" || args[i] == "-classpath") return args[i + 1];
    }
    return "";
  }

  // A Java command line on the broker's classpath; its log (log4j2 writes
  // to stdout by default, where the console tools print records) goes to
  // stderr.
  std::string Java(const std::string& main_and_args, const ScratchDir& dir) const {
    const std::string log_config = dir / "log4j2.properties";
    std::ofstream(log_config) << "status = warn\nappender.err.type = Console\nappender.err.name = err\n"
                                 "appender.err.target = SYSTEM_ERR\nappender.err.layout.type = PatternLayout\n"
                                 "appender.err.layout.pattern = %p %m (%c)%n\nrootLogger.level = WARN\n"
                                 "rootLogger.appenderRef.err.ref = err\n";
    return "java -Xmx256m -Dlog4j2.configurationFile=" + Quote(log_config) + " -cp " + Quote(classpath_) + " " +
           main_and_args;
  }
  std::vector<std::string> Run(const std::string& spec, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"run", spec, "-b", bootstrap_, "--stop-at-end", "--status-interval-ms", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Kafka's console consumer over the whole topic: one line per record,
  // "<headers>\t<key>" (values are FlatBuffers: not printed).
  ShellResult ConsoleConsume(const std::string& topic, const std::string& isolation, const ScratchDir& dir) const {
    return Shell(Java("org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server " + bootstrap_ +
                      " --topic " + Quote(topic) + " --from-beginning --isolation-level " + isolation +
                      " --timeout-ms 8000 --group " + Quote(Unique("rk-console-" + isolation)) +
                      " --property print.key=true --property print.value=false"
                      " --property print.headers=true --property key.separator=@KEY@",
                      dir),
                 dir, "console-" + isolation, 90);
  }

  std::string classpath_;
};

TEST_F(JavaInteropTest, ConsoleConsumerReadCommittedSeesExactlyTheCommittedOutputsOfAnExactlyOnceJob) {
  KAPPA_REQUIRE_TEST_HOOKS();
  const std::string topic = Unique("rk-java-eos-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), topic, 2).ok());
  // 4 s of event time per record: every 200 ms epoch at 3000 records/s
  // closes an hourly window, so the killed epoch has outputs.
  GeneratorOptions gen = SmallWorkload(31, 12000, 200, 0.25);
  gen.start_time_ms = WallClockMs() - 15 * 3600 * 1000;
  gen.duplicate_fraction = 0.02;
  gen.malformed_fraction = 0.01;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, gen));
  ScratchDir dir("rk-java-eos");

  SpecOptions eos;
  eos.job = Unique("rk-java-eos");
  eos.source = topic;
  eos.sink = Unique("rk-java-eos-out");
  eos.state_dir = dir / "state";
  eos.delivery = "exactly_once";
  eos.checkpoint_interval = "200ms";
  const std::string spec = WriteSpec(dir, "eos.yaml", eos);
  {
    // kill -9 at the 300th output (of ~2200), once the open transaction's
    // outputs so far are in the broker's log: the rerun aborts them. (A
    // kill at a checkpoint's start found none there when the epoch's
    // outputs had not left the producer yet.) The rate limit spreads the
    // input over ~20 epochs, so earlier transactions are committed by then.
    setenv("KAPPA_TEST_KILL_AT", "mid-transaction:300", 1);
    ChildProcess child(Run(spec, {"--max-rate", "3000"}), "rk-java-eos-killed");
    const int rc = child.WaitFor(60000);
    unsetenv("KAPPA_TEST_KILL_AT");
    ASSERT_EQ(rc, 128 + SIGKILL) << child.Stderr();
  }
  std::string err;
  ASSERT_EQ(RunKappa(Run(spec), nullptr, &err, "rk-java-eos"), 0) << err;
  const std::string output = eos.sink + ".v1";

  auto want = ReadCommitted(Config(), output);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  ASSERT_GT(want->total, 50) << "too few outputs to compare";

  const ShellResult committed = ConsoleConsume(output, "read_committed", dir);
  // It ends by timing out after the last record (exit 0 in Kafka 4.1).
  ASSERT_EQ(committed.rc, 0) << committed.err;
  std::map<std::string, int> got_copies;
  int64_t got_total = 0;
  for (const std::string& line : Lines(committed.out)) {
    const size_t sep = line.find("@KEY@");
    ASSERT_NE(sep, std::string::npos) << "not a record line: " << line << "\n" << committed.err;
    const std::string headers = line.substr(0, sep);
    // Lineage headers, as kappa wrote them, through the Java deserializer.
    EXPECT_NE(headers.find("kappa.job:" + eos.job), std::string::npos) << line;
    EXPECT_NE(headers.find("kappa.offsets:"), std::string::npos) << line;
    ++got_copies[line.substr(sep + 5)];
    ++got_total;
  }
  EXPECT_NE(committed.err.find("Processed a total of " + std::to_string(got_total) + " messages"), std::string::npos)
      << committed.err;
  EXPECT_EQ(got_total, want->total);
  EXPECT_EQ(got_copies, want->copies) << "the console consumer and librdkafka disagree on the committed records";
  for (const auto& [key, copies] : got_copies) EXPECT_EQ(copies, 1) << key << " seen " << copies << " times";

  // The log holds the aborted transaction too: read_uncommitted shows it, so
  // the read_committed comparison above could have failed.
  const ShellResult all = ConsoleConsume(output, "read_uncommitted", dir);
  ASSERT_EQ(all.rc, 0) << all.err;
  EXPECT_GT(static_cast<int64_t>(Lines(all.out).size()), want->total)
      << "no aborted outputs in the log: the kill came before the killed run produced any";
}

TEST_F(JavaInteropTest, TopicsWrittenByTheJavaProducerWithEachCodecAndHeadersGiveTheSameOutputs) {
  constexpr int kPartitions = 3;
  const std::vector<std::string> codecs = {"gzip", "snappy", "lz4", "zstd"};
  const std::string source = Unique("rk-java-src");
  ASSERT_TRUE(CreateTopicAdmin(Config(), source, kPartitions).ok());
  GeneratorOptions gen = SmallWorkload(32, 9000, 200, 0.3);  // 8 hours of event time: windows close
  gen.start_time_ms = WallClockMs() - 10 * 3600 * 1000;
  gen.duplicate_fraction = 0.02;
  gen.malformed_fraction = 0.01;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), source, gen));
  ScratchDir dir("rk-java-codec");

  std::string copy_args;
  std::map<std::string, std::string> copy_of;  // codec -> topic
  for (const std::string& codec : codecs) {
    copy_of[codec] = Unique("rk-java-" + codec);
    const Status st = CreateTopicAdmin(Config(), copy_of[codec], kPartitions);
    ASSERT_TRUE(st.ok()) << st.ToString();
    copy_args += " " + codec + "=" + copy_of[codec];
  }
  const ShellResult copied =
      Shell(Java(Quote(std::string(KAPPA_SOURCE_DIR) + "/tests/realkafka/java/Copy.java") + " " + bootstrap_ + " " +
                 source + copy_args,
                 dir),
            dir, "copy", 120);
  ASSERT_EQ(copied.rc, 0) << copied.out << copied.err;
  for (const std::string& codec : codecs) {
    EXPECT_NE(copied.out.find("copied 9000 records to " + copy_of[codec]), std::string::npos) << copied.out;
  }

  // The broker stored what the Java producer compressed (topic
  // compression.type is `producer`): each copy's batches carry its codec.
  std::string files;
  for (const std::string& codec : codecs) {
    files += (files.empty() ? "" : ",") + std::string(KAPPA_REALKAFKA_DIR) + "/node1/data/" + copy_of[codec] +
             "-0/00000000000000000000.log";
  }
  const ShellResult dumped = Shell(Java("kafka.tools.DumpLogSegments --files " + Quote(files), dir), dir, "dump", 60);
  ASSERT_EQ(dumped.rc, 0) << dumped.err;
  for (const std::string& codec : codecs) {
    const size_t at = dumped.out.find(copy_of[codec] + "-0/");
    ASSERT_NE(at, std::string::npos) << dumped.out.substr(0, 2000);
    const size_t next = dumped.out.find("Dumping ", at);
    const std::string part = dumped.out.substr(at, next == std::string::npos ? std::string::npos : next - at);
    EXPECT_NE(part.find("compresscodec: " + codec), std::string::npos) << part.substr(0, 1000);
    EXPECT_EQ(part.find("compresscodec: none"), std::string::npos) << part.substr(0, 1000);
  }

  // kappa reads every copied record with its headers, the null one included
  // (printed as "" once, the same as an empty value: a bug bash).
  for (const std::string& codec : codecs) {
    std::string out, err;
    ASSERT_EQ(RunKappa({"consume", "-b", bootstrap_, "-t", copy_of[codec], "--print"}, &out, &err, "rk-java-consume"),
              0)
        << err;
    const auto lines = Lines(out);
    ASSERT_EQ(lines.size(), 9000u) << err;
    int with_headers = 0;
    for (const std::string& line : lines) {
      with_headers += line.find("\"headers\":{\"java.codec\":\"" + codec + "\",\"java.origin\":\"") !=
                          std::string::npos &&
                      line.find("\"java.null\":null}") != std::string::npos;
    }
    EXPECT_EQ(with_headers, 9000) << codec << ": " << lines[0];
  }

  // The same job over the original and over each copy: the same outputs.
  auto job = [&](const std::string& name, const std::string& topic) -> std::pair<TopicContents, std::string> {
    SpecOptions spec;
    spec.job = Unique("rk-java-" + name);
    spec.source = topic;
    spec.sink = Unique("rk-java-" + name + "-out");
    spec.state_dir = dir / (name + "-state");
    std::string err;
    EXPECT_EQ(RunKappa(Run(WriteSpec(dir, name + ".yaml", spec)), nullptr, &err, "rk-java-" + name), 0) << err;
    return {ReadOutputs(Config(), spec.sink + ".v1"), ReadFile(dir / (name + "-state/metrics.json"))};
  };
  const auto [want, want_metrics] = job("original", source);
  ASSERT_GT(want.rows.size(), 100u);
  for (const std::string& codec : codecs) {
    SCOPED_TRACE(codec);
    const auto [got, metrics] = job(codec, copy_of[codec]);
    EXPECT_EQ(got.total, want.total);
    ASSERT_EQ(got.rows.size(), want.rows.size());
    for (const auto& [key, row] : want.rows) {
      ASSERT_TRUE(got.rows.count(key)) << key << " is missing";
      EXPECT_EQ(got.rows.at(key).value, row.value) << key;
      EXPECT_EQ(got.rows.at(key).partition, row.partition) << key;
    }
    for (const char* field : {"records_in", "outputs", "deduped", "filtered", "dlq", "late"}) {
      EXPECT_EQ(MetricsField(metrics, field), MetricsField(want_metrics, field)) << field;
    }
  }
}

}  // namespace
}  // namespace kappa::testing
