// Stories on a real Apache Kafka (scripts/kafka.sh, started for the suite by
// the CTest fixture `realkafka`): what librdkafka's mock cluster cannot show.
//   - `start: <timestamp>` resolves through ListOffsets by time
//     (offsetsForTimes), which the mock does not implement;
// (Exactly-once on the real broker: exactly_once_real_test.cc.)
// Each test uses its own topics, job names and groups, so they may share the
// broker and run in parallel.
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "kafka/kafka_client.h"
#include "kafka/partition_list.h"
#include "kafka/topic_reader.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"
#include "workload/event_producer.h"

namespace kappa::testing {
namespace {

class RealBrokerTest : public SharedRealKafkaTest<> {
 protected:
  // Creates the topic with the admin API (CreateTopics), replication 1.
  void CreateTopic(const std::string& name, int partitions) {
    const Status st = CreateTopicAdmin(Config(), name, partitions, 1);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  std::vector<std::string> Run(const std::string& spec, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"run", spec, "-b", bootstrap_, "--stop-at-end", "--status-interval-ms", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

struct PartitionMetrics {
  int64_t next_offset = -1;
  int64_t start_offset = -1;
  int64_t records_in = -1;
};

std::map<int32_t, PartitionMetrics> PartitionsOf(const std::string& metrics_json) {
  std::map<int32_t, PartitionMetrics> out;
  static const std::regex re(
      R"(\{"partition": ([0-9]+), "next_offset": (-?[0-9]+), "start_offset": (-?[0-9]+), [^}]*"records_in": ([0-9]+))");
  for (auto it = std::sregex_iterator(metrics_json.begin(), metrics_json.end(), re); it != std::sregex_iterator();
       ++it) {
    out[std::stoi((*it)[1])] = {std::stoll((*it)[2]), std::stoll((*it)[3]), std::stoll((*it)[4])};
  }
  return out;
}

// `kappa gen` stamps each record with its event time: one the broker
// refuses (more than an hour ahead) was a bare INVALID_TIMESTAMP.
TEST_F(RealBrokerTest, GenSaysATimestampTheBrokerRefusesIsTheEventTime) {
  const std::string topic = Unique("rk-gen-future");
  ASSERT_NO_FATAL_FAILURE(CreateTopic(topic, 1));
  std::string out, err;
  EXPECT_EQ(RunKappa({"gen", "-t", topic, "-n", "10", "-b", bootstrap_, "--start-time-ms",
                      std::to_string(WallClockMs() + 2 * 3600 * 1000)},
                     &out, &err),
            1)
      << out << err;
  EXPECT_NE(err.find("INVALID_TIMESTAMP"), std::string::npos) << err;
  EXPECT_NE(err.find("each record's Kafka timestamp is its event time (--start-time-ms on)"), std::string::npos)
      << err;
  EXPECT_NE(err.find("message.timestamp.after.max.ms"), std::string::npos) << err;
}

TEST_F(RealBrokerTest, StartAtATimestampResolvesThroughOffsetsForTimes) {
  constexpr int kPartitions = 3;
  const std::string topic = Unique("rk-start-in");
  ASSERT_NO_FATAL_FAILURE(CreateTopic(topic, kPartitions));
  GeneratorOptions gen = SmallWorkload(7, 6000);  // 1 event/s, in order: timestamps rise in every partition
  gen.start_time_ms = WallClockMs() - 3 * 3600 * 1000;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), topic, gen));

  // What the broker stores: each partition's (offset, timestamp).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> stored(kPartitions);
  auto read = ReadTopic(Config(), topic, [&](const ConsumedRecord& r) {
    stored[r.partition].push_back({r.offset, r.timestamp_ms});
  });
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  // Mid-stream, and between two seconds, so no record has exactly this time.
  const int64_t start = gen.start_time_ms + 3000 * 1000 + 500;
  std::vector<int64_t> want(kPartitions), end(kPartitions);
  int64_t want_records = 0;
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_FALSE(stored[p].empty()) << "partition " << p << " got no records";
    end[p] = stored[p].back().first + 1;
    want[p] = end[p];
    for (const auto& [offset, ts] : stored[p]) {
      if (ts >= start) {
        want[p] = offset;
        break;
      }
    }
    ASSERT_GT(want[p], 0) << "partition " << p << ": the start must fall inside the data";
    ASSERT_LT(want[p], end[p]) << "partition " << p << ": the start must fall inside the data";
    want_records += end[p] - want[p];
  }

  ScratchDir dir("rk-start");
  SpecOptions spec;
  spec.job = Unique("rk-start");
  spec.source = topic;
  spec.sink = Unique("rk-start-out");
  spec.state_dir = dir / "state";
  const std::string path = WriteSpec(dir, "job.yaml", spec);
  std::string text = ReadFile(path);
  const size_t at = text.find("start: earliest");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, std::string("start: earliest").size(), "start: " + std::to_string(start));
  std::ofstream(path) << text;

  std::string err;
  ASSERT_EQ(RunKappa(Run(path), nullptr, &err, "rk-start"), 0) << err;
  const std::string metrics = ReadFile(dir / "state/metrics.json");
  const auto partitions = PartitionsOf(metrics);
  ASSERT_EQ(partitions.size(), static_cast<size_t>(kPartitions)) << metrics;
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_TRUE(partitions.count(p)) << metrics;
    EXPECT_EQ(partitions.at(p).start_offset, want[p]) << "partition " << p << ": not the first offset at or after "
                                                      << start << "\n" << metrics;
    EXPECT_EQ(partitions.at(p).next_offset, end[p]) << "partition " << p << "\n" << metrics;
    EXPECT_EQ(partitions.at(p).records_in, end[p] - want[p]) << "partition " << p << "\n" << metrics;
  }
  EXPECT_EQ(MetricsField(metrics, "records_in"), want_records);
}

}  // namespace
}  // namespace kappa::testing
