// In-process fixtures for the runtime pieces (sources, checkpoint
// coordinator): a job spec over a topic on the test's embedded broker, real
// Tasks with a real KafkaSink, the topic's records copied into a log archive.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "engine/job_spec.h"
#include "engine/kafka_sink.h"
#include "engine/task.h"
#include "kafka/topic_reader.h"
#include "tests/support/test_support.h"
#include "workload/event_producer.h"

namespace kappa::testing {

class EngineTest : public BrokerTest {
 protected:
  // A spec reading `topic` with dedup + hourly windows, state under `state_dir`.
  JobSpec Spec(const std::string& topic, const std::string& state_dir, const std::string& extra_source = "",
               const std::string& start = "earliest") {
    const std::string yaml = "job: engine-test\nversion: 1\nsource:\n  topic: " + topic + "\n  start: " + start +
                             "\n" + extra_source +
                             "operators:\n  - dedup: {field: txn_id, ttl: 1h}\n"
                             "  - window: {type: tumbling, size: 1h, key: user_id, aggregates: [count, sum]}\n"
                             "allowed_lateness: 10m\nsink: {topic: engine-test-out}\n"
                             "dlq: {topic: engine-test.dlq}\nlate: {topic: engine-test.late}\n"
                             "checkpoint: {interval: 1h, dir: " + state_dir + "}\n";
    auto spec = ParseJobSpec(yaml, "test spec");
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return spec.ok() ? *spec : JobSpec{};
  }

  // `count` generated transactions on `topic` (created with `partitions`).
  void Produce(const std::string& topic, int partitions, uint64_t count) {
    CreateTopic(topic, partitions);
    GeneratorOptions gen;
    gen.count = count;
    gen.users = 200;
    auto produced = ProduceEvents(Config(), topic, gen);
    ASSERT_TRUE(produced.ok()) << produced.status().ToString();
  }

  // Copies offsets [0, below[p]) of every partition of `topic` into an archive.
  void ArchiveHead(const std::string& root, const std::string& topic, const std::vector<int64_t>& below,
                   size_t block_bytes = ArchiveWriter::kDefaultBlockBytes) {
    std::map<int32_t, std::unique_ptr<ArchiveWriter>> writers;
    auto read = ReadTopic(Config(), topic, [&](const ConsumedRecord& r) {
      if (r.offset >= below[r.partition]) return;
      auto& w = writers[r.partition];
      if (!w) {
        auto opened = ArchiveWriter::Open(root, topic, r.partition, block_bytes);
        ASSERT_TRUE(opened.ok()) << opened.status().ToString();
        w = std::move(*opened);
      }
      ArchiveRecord a;
      a.offset = r.offset;
      a.timestamp_ms = r.timestamp_ms;
      a.key = r.key;
      a.value = r.value;
      ASSERT_TRUE(w->Append(a).ok());
    });
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    for (auto& [p, w] : writers) ASSERT_TRUE(w->Flush().ok());
  }

  // Real tasks for partitions 0..n-1, emitting into a real sink.
  void MakeTasks(const JobSpec& spec, int partitions) {
    auto sink = KafkaSink::Create(Config(), spec);
    ASSERT_TRUE(sink.ok()) << sink.status().ToString();
    sink_ = std::move(*sink);
    sink_->SetPartitions(partitions);
    for (int32_t p = 0; p < partitions; ++p) {
      auto task = Task::Create(p, spec, sink_.get());
      ASSERT_TRUE(task.ok()) << task.status().ToString();
      tasks_.push_back(task->get());
      owned_.push_back(std::move(*task));
    }
  }

  std::unique_ptr<KafkaSink> sink_;
  std::vector<std::unique_ptr<Task>> owned_;
  std::vector<Task*> tasks_;
};

}  // namespace kappa::testing
