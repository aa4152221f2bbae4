// The job spec loader: what a user writes, what they get back when it is
// wrong, and which edits count as a logic change (a new spec hash).
#include "engine/job_spec.h"

#include <gtest/gtest.h>

namespace kappa {
namespace {

const char kSpec[] = R"(
job: user-spend
version: 2
source: {topic: transactions, start: earliest}
operators:
  - dedup: {field: txn_id, ttl: 1h}
  - filter: ["status != cancelled", "amount_cents >= 100"]
  - map: {value: amount_cents, multiply: 1, divide: 100}
  - window: {type: sliding, size: 1h, slide: 15m, key: user_id, aggregates: [count, sum]}
allowed_lateness: 5m
sink: {topic: out}
dlq: {topic: out.dlq}
late: {topic: out.late}
checkpoint: {interval: 3s, dir: /tmp/x}
)";

TEST(JobSpecTest, ParsesEveryPart) {
  auto spec = ParseJobSpec(kSpec);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->job, "user-spend");
  EXPECT_EQ(spec->version, 2);
  EXPECT_EQ(spec->source_topic, "transactions");
  EXPECT_EQ(spec->start, StartPosition::kEarliest);
  ASSERT_EQ(spec->operators.size(), 4u);
  EXPECT_EQ(std::get<DedupSpec>(spec->operators[0]).ttl_ms, 3600000);
  EXPECT_EQ(std::get<FilterSpec>(spec->operators[1]).all_of.size(), 2u);
  EXPECT_EQ(std::get<MapSpec>(spec->operators[2]).divide, 100);
  const auto& w = std::get<WindowSpec>(spec->operators[3]);
  EXPECT_EQ(w.kind, WindowSpec::Kind::kSliding);
  EXPECT_EQ(w.size_ms, 3600000);
  EXPECT_EQ(w.slide_ms, 900000);
  EXPECT_EQ(spec->allowed_lateness_ms, 300000);
  EXPECT_EQ(spec->checkpoint_interval_ms, 3000);
  EXPECT_EQ(spec->state_dir, "/tmp/x");
  EXPECT_EQ(spec->OutputTopic(), "out.v2");
  EXPECT_EQ(spec->ConsumerGroup(), "user-spend.v2");
  EXPECT_EQ(spec->spec_hash.size(), 16u);
}

TEST(JobSpecTest, HashIgnoresFormattingAndOperationalKnobsButNotLogic) {
  auto base = ParseJobSpec(kSpec);
  ASSERT_TRUE(base.ok());
  std::string reformatted = std::string("# a comment\n") + kSpec;
  std::string tuned = kSpec;
  tuned.replace(tuned.find("interval: 3s, dir: /tmp/x"), 25, "interval: 9s, dir: /tmp/y");
  std::string logic = kSpec;
  logic.replace(logic.find("status != cancelled"), 19, "status == cancelled");
  std::string lateness = kSpec;
  lateness.replace(lateness.find("allowed_lateness: 5m"), 20, "allowed_lateness: 6m");
  EXPECT_EQ(ParseJobSpec(reformatted)->spec_hash, base->spec_hash);
  EXPECT_EQ(ParseJobSpec(tuned)->spec_hash, base->spec_hash);
  EXPECT_NE(ParseJobSpec(logic)->spec_hash, base->spec_hash);
  EXPECT_NE(ParseJobSpec(lateness)->spec_hash, base->spec_hash);
}

TEST(JobSpecTest, ArchiveAndParallelismAreOperationalNotLogic) {
  auto base = ParseJobSpec(kSpec);
  ASSERT_TRUE(base.ok());
  EXPECT_TRUE(base->archive_dir.empty());
  EXPECT_EQ(base->parallelism, 1);
  std::string hybrid = kSpec;
  hybrid.replace(hybrid.find("start: earliest}"), 16, "start: earliest, archive: /data/archive}");
  hybrid += "parallelism: 4\n";
  auto spec = ParseJobSpec(hybrid);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->archive_dir, "/data/archive");
  EXPECT_EQ(spec->parallelism, 4);
  // Where history is read from and how many threads replay it change no
  // output: the same version may switch between them.
  EXPECT_EQ(spec->spec_hash, base->spec_hash);
  auto bad = ParseJobSpec(std::string(kSpec) + "parallelism: 0\n", "job.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("parallelism"), std::string::npos) << bad.status().message();
}

TEST(JobSpecTest, ErrorsNameTheFileLineAndProblem) {
  struct Case {
    std::string yaml;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"job: j\nversion: 1\n", "needs `source:`"},
      {"job: j\nsource: {topic: t}\n", "version"},
      {"job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - frobnicate: {}\n", "unknown operator `frobnicate`"},
      {"job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - dedup: {field: txn_id}\n", "ttl"},
      {"job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - window: {size: 1x}\n", "unknown unit"},
      {"job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - filter: [\"status ~ x\"]\n", "status ~ x"},
      {"job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - dedup: {ttl: 1h}\n", "must end with"},
      {"job: j\nversion: 1\nsource: {topic: t, strat: earliest}\n", "unknown key `strat`"},
      {"job: [unclosed\n", "invalid YAML"},
  };
  for (const auto& c : cases) {
    auto spec = ParseJobSpec(c.yaml, "job.yaml");
    ASSERT_FALSE(spec.ok()) << c.yaml;
    EXPECT_NE(spec.status().message().find(c.expect), std::string::npos)
        << "for:\n" << c.yaml << "got: " << spec.status().message();
    EXPECT_EQ(spec.status().message().rfind("job.yaml", 0), 0u) << spec.status().message();
  }
}

TEST(JobSpecTest, Durations) {
  EXPECT_EQ(*ParseDurationMs("250ms"), 250);
  EXPECT_EQ(*ParseDurationMs("5s"), 5000);
  EXPECT_EQ(*ParseDurationMs("10m"), 600000);
  EXPECT_EQ(*ParseDurationMs("2h"), 7200000);
  EXPECT_EQ(*ParseDurationMs("1d"), 86400000);
  EXPECT_EQ(*ParseDurationMs("42"), 42);
  EXPECT_FALSE(ParseDurationMs("h").ok());
  EXPECT_FALSE(ParseDurationMs("5 s").ok());
}

}  // namespace
}  // namespace kappa
