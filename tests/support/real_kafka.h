// Real Apache Kafka for the tests (scripts/kafka.sh: KRaft, jars from Maven
// Central, free loopback ports). A RealKafka owns a cluster in a directory of
// its own and stops it when destroyed; the suite-wide broker of the CTest
// fixture `realkafka` is reached through SharedRealKafkaBootstrap().
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/status.h"
#include "kafka/kafka_config.h"

namespace kappa::testing {

class RealKafka {
 public:
  // Starts `brokers` (1 or 3) nodes in dir (wiped first). Each node is a
  // combined broker+controller; with 3, topics default to replication 3 and
  // min.insync.replicas 2.
  static Result<std::unique_ptr<RealKafka>> Start(const std::string& dir, int brokers = 1);
  ~RealKafka();  // stops every node it started
  RealKafka(const RealKafka&) = delete;
  RealKafka& operator=(const RealKafka&) = delete;

  const std::string& bootstrap() const { return bootstrap_; }
  const std::string& dir() const { return dir_; }
  int brokers() const { return brokers_; }
  // The pid of node `id` (1-based), or -1 if it is not running.
  pid_t NodePid(int id) const;
  // Node `id` goes down and stays down: StopNode is a clean shutdown
  // (SIGTERM), KillNode a crash (SIGKILL). Both return once the process is gone.
  Status StopNode(int id);
  Status KillNode(int id);
  // Starts node `id` again with its ports, config and data, and returns once
  // the cluster's metadata, asked through that node, lists every node.
  Status StartNode(int id);

 private:
  RealKafka() = default;
  std::string dir_;
  std::string bootstrap_;
  int brokers_ = 1;
};

// The bootstrap address of the suite's shared broker (KAPPA_REALKAFKA_DIR/
// bootstrap, written by `scripts/kafka.sh start`), or "" when none runs.
std::string SharedRealKafkaBootstrap(const std::string& realkafka_dir);

// Creates a topic through the admin API (CreateTopics) and waits until every
// partition has a leader. replication 0 means the broker's default.
Status CreateTopicAdmin(const KafkaConfig& config, const std::string& name, int partitions, int replication = 0,
                        const std::map<std::string, std::string>& topic_configs = {});

// Grows `topic` to `partitions` partitions through the admin API
// (CreatePartitions) and waits until every one has a leader.
Status AddPartitionsAdmin(const KafkaConfig& config, const std::string& topic, int partitions);

// Deletes `topic` through the admin API (DeleteTopics) and returns once the
// controller has accepted it (brokers may still list it for a moment).
Status DeleteTopicAdmin(const KafkaConfig& config, const std::string& topic);

// Deletes `topic` and creates it again empty with `partitions` (replication
// 1), retrying the creation for up to 30 s while the deletion completes.
Status RecreateTopicAdmin(const KafkaConfig& config, const std::string& topic, int partitions);

// Moves the log start offset of topic[partition] to `offset` through the admin
// API (DeleteRecords): what retention does to a real topic, on demand.
Status DeleteRecordsBefore(const KafkaConfig& config, const std::string& topic, int32_t partition, int64_t offset);

// Grants `principal` ("User:alice") `operation` on a resource through the
// admin API (CreateAcls), on a broker with authorization (`scripts/kafka.sh
// start --secure`). resource_type: "topic", "group" or "cluster"
// (librdkafka 2.0.2 names no transactional id resource); operation: "read", "write", "describe", "all",
// "idempotent_write", "create"; name "*" with prefixed=false is every
// resource of the type, prefixed=true makes `name` a prefix.
// deny=true adds a DENY binding instead, which overrides any ALLOW: a grant
// taken back while a process runs.
Status AllowAcl(const KafkaConfig& config, const std::string& principal, const std::string& resource_type,
                const std::string& name, const std::string& operation, bool prefixed = false, bool deny = false);

// The leader (node id, 1-based) of each partition of topic as the cluster's
// metadata says now; -1 for a partition without one.
Result<std::vector<int32_t>> PartitionLeaders(const KafkaConfig& config, const std::string& topic);

// Every record of a topic as an isolation.level=read_committed consumer sees
// it, read up to the high watermark as of the call (a partition is done when
// the consumer reports its end at or past that mark; with a transaction left
// open it stops at the last stable offset and never gets there: an error).
struct CommittedContents {
  std::map<std::string, std::string> values;  // key -> last value
  std::map<std::string, int> copies;          // key -> how often it appeared
  int64_t total = 0;
  bool all_copies_identical = true;
};
Result<CommittedContents> ReadCommitted(const KafkaConfig& config, const std::string& topic,
                                        int timeout_ms = 30000);

// What a suite of a broker started once for it (by a CTest fixture, or by
// hand with scripts/kafka.sh) shares: its address, read from `dir`, and a
// suffix that makes each test's topics and groups its own, so tests share
// the broker in parallel and a re-run meets none of an earlier run's.
template <typename Base>
class RealKafkaSuiteTest : public Base {
 protected:
  // Reads `dir`/bootstrap; false (the test should skip) when none runs.
  bool Attach(const std::string& dir) {
    bootstrap_ = SharedRealKafkaBootstrap(dir);
    std::random_device rd;
    id_ = std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000);
    return !bootstrap_.empty();
  }
  KafkaConfig Config() const {
    KafkaConfig config;
    config.brokers = bootstrap_;
    return config;
  }
  std::string Unique(const std::string& prefix) const { return prefix + "-" + id_; }

  std::string bootstrap_;
  std::string id_;
};

#ifdef KAPPA_REALKAFKA_DIR
// A test of the suite's shared broker (the CTest fixture `realkafka`, or
// `scripts/kafka.sh start --dir KAPPA_REALKAFKA_DIR` by hand), skipped when
// none runs. Base: ::testing::Test or ::testing::TestWithParam<...>.
template <typename Base = ::testing::Test>
class SharedRealKafkaTest : public RealKafkaSuiteTest<Base> {
 protected:
  void SetUp() override {
    if (!this->Attach(KAPPA_REALKAFKA_DIR)) {
      GTEST_SKIP() << "no real broker: ctest starts one (fixture realkafka), or run scripts/kafka.sh start --dir "
                   << KAPPA_REALKAFKA_DIR;
    }
  }
};
#endif  // KAPPA_REALKAFKA_DIR

#ifdef KAPPA_REALKAFKA_SECURE_DIR
// A test of the suite's secured broker (the CTest fixture `realkafka_secure`:
// `scripts/kafka.sh start --secure --dir KAPPA_REALKAFKA_SECURE_DIR`),
// skipped when none runs. Config() is its PLAINTEXT listener, whose
// ANONYMOUS principal is a super user (setup, ACLs, reading results back);
// As(user) are the kappa options of a SASL/PLAIN login as admin (a super
// user), alice, bob or carol (only what Allow grants them).
template <typename Base = ::testing::Test>
class SecureRealKafkaTest : public RealKafkaSuiteTest<Base> {
 protected:
  void SetUp() override {
    std::string path = KAPPA_REALKAFKA_SECURE_DIR;  // appended: GCC 12's false -Warray-bounds (see real_kafka.cc)
    path += "/sasl_bootstrap";
    std::ifstream in(path);
    std::getline(in, sasl_bootstrap_);
    if (!this->Attach(KAPPA_REALKAFKA_SECURE_DIR) || sasl_bootstrap_.empty()) {
      GTEST_SKIP() << "no secured broker: ctest starts one (fixture realkafka_secure), or run scripts/kafka.sh "
                      "start --secure --dir "
                   << KAPPA_REALKAFKA_SECURE_DIR;
    }
  }

  // The password of `user` on the secured broker.
  static std::string Password(const std::string& user) { return user + "-secret"; }
  // kappa's options to reach the SASL listener as `user`.
  std::vector<std::string> As(const std::string& user) const {
    return {"-b", sasl_bootstrap_, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
            "-X", "sasl.username=" + user, "-X", "sasl.password=" + Password(user)};
  }
  // Grants `user` `operation` on a resource (AllowAcl). Grants stay for the
  // broker's life: a test that must meet none of another's uses its own
  // user (alice, bob, carol).
  void Allow(const std::string& user, const std::string& resource_type, const std::string& name,
             const std::string& operation, bool prefixed = false) {
    Status st = AllowAcl(this->Config(), "User:" + user, resource_type, name, operation, prefixed);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  void AllowAlice(const std::string& resource_type, const std::string& name, const std::string& operation,
                  bool prefixed = false) {
    Allow("alice", resource_type, name, operation, prefixed);
  }
  // Takes `operation` on a resource away from `user` (a DENY binding).
  void Deny(const std::string& user, const std::string& resource_type, const std::string& name,
            const std::string& operation) {
    Status st = AllowAcl(this->Config(), "User:" + user, resource_type, name, operation, false, /*deny=*/true);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  std::string sasl_bootstrap_;
};
#endif  // KAPPA_REALKAFKA_SECURE_DIR

}  // namespace kappa::testing
