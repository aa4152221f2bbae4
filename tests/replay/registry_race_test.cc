// Registry changes are linearizable (issue 10 item 8): concurrent writers of
// one job, each with its own Registry (as separate `kappa` processes would
// be), never lose an update. A write based on a stale view is rejected by
// the log order and its writer learns so; N versions registered at once are
// all there afterwards; of two concurrent promotions either one is refused or
// both happen in sequence (the second promotes over the first, which stays on
// the rollback stack) -- never a success that vanishes.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "replay/deployment.h"
#include "replay/promotion.h"
#include "replay/registry.h"
#include "tests/replay/replay_test_util.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

// Releases every waiting thread at once, so their reads of the registry
// overlap their writes.
class StartLine {
 public:
  explicit StartLine(int n) : left_(n) {}
  void Arrive() {
    std::unique_lock<std::mutex> lock(mu_);
    if (--left_ == 0) {
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return left_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
};

void RunTogether(int n, const std::function<void(int)>& body) {
  StartLine line(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      line.Arrive();
      body(i);
    });
  }
  for (auto& t : threads) t.join();
}

class RegistryRaceTest : public BrokerTest {
 protected:
  void SetUp() override {
    BrokerTest::SetUp();
    CreateTopic("kappa.control", 1);
    CreateTopic("transactions", 2);
  }
  JobSpec Spec(const std::string& job, int32_t version, const ScratchDir& dir) {
    JobSpec spec;
    spec.job = job;
    spec.version = version;
    spec.source_topic = "transactions";
    spec.sink_topic = job + "-out";
    spec.state_dir = dir / (job + ".v" + std::to_string(version));
    spec.spec_hash = "hash" + std::to_string(version);
    return spec;
  }
};

TEST_F(RegistryRaceTest, AWriteBasedOnAStaleViewIsRejectedAndEveryReaderAgrees) {
  Registry a(Config()), b(Config());
  JobRecord job = OneVersionJob("spend");
  ASSERT_TRUE(a.PutJob(job).ok());
  ASSERT_TRUE(a.Refresh().ok());
  ASSERT_TRUE(b.Refresh().ok());
  JobRecord from_a = *a.Job("spend");
  JobRecord from_b = *b.Job("spend");  // the same state, read by another process

  from_a.versions.push_back(Version(2, VersionState::kReplaying));
  ASSERT_TRUE(a.PutJob(from_a).ok());
  from_b.versions.push_back(Version(3, VersionState::kReplaying));
  Status lost = b.PutJob(from_b);  // based on what a has since replaced
  EXPECT_EQ(lost.code(), Status::Code::kFailedPrecondition) << lost.ToString();
  EXPECT_NE(lost.message().find("changed concurrently"), std::string::npos) << lost.ToString();
  // The loser's view is the log's, not its own rejected write.
  ASSERT_TRUE(b.Job("spend").has_value());
  EXPECT_NE(b.Job("spend")->Find(2), nullptr);
  EXPECT_EQ(b.Job("spend")->Find(3), nullptr);

  Registry reader(Config());
  ASSERT_TRUE(reader.Refresh().ok());
  auto seen = reader.Job("spend");
  ASSERT_TRUE(seen.has_value());
  EXPECT_NE(seen->Find(2), nullptr) << "the write that won is kept";
  EXPECT_EQ(seen->Find(3), nullptr) << "the stale write is ignored by every reader";

  // Re-read, modify, write: the loser's retry wins.
  JobRecord retry = *b.Job("spend");
  retry.versions.push_back(Version(3, VersionState::kReplaying));
  ASSERT_TRUE(b.PutJob(retry).ok());
  ASSERT_TRUE(reader.Refresh().ok());
  EXPECT_EQ(reader.Job("spend")->versions.size(), 3u);
}

TEST_F(RegistryRaceTest, VersionsRegisteredAtOnceAreAllKept) {
  constexpr int kWriters = 4;
  constexpr int kRounds = 6;
  ScratchDir dir("register-race");
  for (int round = 0; round < kRounds; ++round) {
    const std::string job = "job" + std::to_string(round);
    std::vector<Status> results(kWriters);
    RunTogether(kWriters, [&](int i) {
      Registry registry(Config());
      auto r = RegisterVersion(registry, Spec(job, i + 1, dir), true);
      results[i] = r.status();
    });
    for (int i = 0; i < kWriters; ++i) ASSERT_TRUE(results[i].ok()) << "v" << i + 1 << ": " << results[i].ToString();
    Registry reader(Config());
    ASSERT_TRUE(reader.Refresh().ok());
    auto record = reader.Job(job);
    ASSERT_TRUE(record.has_value());
    for (int i = 0; i < kWriters; ++i) {
      EXPECT_NE(record->Find(i + 1), nullptr) << "round " << round << ": version " << i + 1
                                              << " was reported registered but is not in the registry";
    }
  }
}

TEST_F(RegistryRaceTest, ConcurrentPromotionsNeverLoseASuccess) {
  // The source is at its end for every version: both candidates have caught up.
  ProduceRaw(Config(), "transactions", {{"a", "1"}, {"b", "2"}});
  for (int v = 1; v <= 3; ++v) ProduceRaw(Config(), "out.v" + std::to_string(v), {{"k", "same"}});
  constexpr int kRounds = 6;
  int both = 0;
  for (int round = 0; round < kRounds; ++round) {
    const std::string job = "spend" + std::to_string(round);
    {
      Registry setup(Config());
      JobRecord record;
      record.job = job;
      record.versions = {Version(1, VersionState::kLive), Version(2, VersionState::kCaughtUp),
                         Version(3, VersionState::kCaughtUp)};
      record.serving = 1;
      ASSERT_TRUE(setup.PutJob(record).ok());
      ASSERT_TRUE(setup.PutProgress(Progress(job, 2, {{0, 2}, {1, 0}})).ok());
      ASSERT_TRUE(setup.PutProgress(Progress(job, 3, {{0, 2}, {1, 0}})).ok());
    }
    std::vector<Status> results(2);
    std::vector<std::string> reports(2);
    RunTogether(2, [&](int i) {
      Registry registry(Config());
      PromoteOptions options;
      options.max_lag = 0;
      results[i] = Promote(registry, Config(), job, 2 + i, options, &reports[i]);
    });
    Registry reader(Config());
    ASSERT_TRUE(reader.Refresh().ok());
    const JobRecord after = *reader.Job(job);
    const bool ok2 = results[0].ok(), ok3 = results[1].ok();
    ASSERT_TRUE(ok2 || ok3) << results[0].ToString() << " / " << results[1].ToString();
    if (ok2 && ok3) {
      // In sequence: one serves, the other was promoted first and is on the stack.
      ++both;
      ASSERT_TRUE(after.serving == 2 || after.serving == 3) << after.serving;
      const int32_t first = after.serving == 2 ? 3 : 2;
      EXPECT_EQ(after.previous_serving, (std::vector<int32_t>{1, first}))
          << "round " << round << ": both promotions reported success but v" << first << "'s vanished; "
          << reports[0] << " / " << reports[1];
    } else {
      const int32_t winner = ok2 ? 2 : 3;
      const Status& refused = ok2 ? results[1] : results[0];
      EXPECT_EQ(after.serving, winner);
      EXPECT_EQ(after.previous_serving, (std::vector<int32_t>{1}));
      EXPECT_EQ(refused.code(), Status::Code::kFailedPrecondition) << refused.ToString();
    }
  }
  RecordProperty("both_succeeded_in_sequence", both);
}

}  // namespace
}  // namespace kappa::testing
