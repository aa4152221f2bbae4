// What a user whose Kafka rights fall short is told, on the suite's secured
// broker (CTest fixture `realkafka_secure`: authorization on, bob has
// only what this test grants him; alice gets grants from other suites):
//   - `kappa deploy` as bob, who may read the control topic but write
//     nothing: the registry's producer id is refused, a fatal producer
//     error. The message gives that cause
//     and the missing ACL (IdempotentWrite on the cluster or Write on the
//     topic), not "_FATAL: Local: Fatal error" (a bug bash);
//   - a wrong password: the SASL authentication error and what to check,
//     within seconds, not "cannot reach Kafka ... is the broker running"
//     after 10 s. Neither shows the password;
//   - a SCRAM login with the right password, which librdkafka before
//     2.6.1 cannot make to Kafka 4.x (Debian's is 2.0.2): the message says
//     so and what to use instead, not only "check the password".
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class SecureErrorsTest : public SecureRealKafkaTest<> {
 protected:
  std::vector<std::string> AsBob(std::vector<std::string> args, const std::string& control) const {
    args.insert(args.end(), {"--control-topic", control});
    const std::vector<std::string> as = As("bob");
    args.insert(args.end(), as.begin(), as.end());
    return args;
  }
};

TEST_F(SecureErrorsTest, DeployWithoutAclsNamesTheAuthorizationFailureAndTheMissingAcl) {
  const std::string control = Unique("sec-control");
  const std::string input = Unique("sec-in");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 1, 1).ok());
  // The control topic exists (an administrator made it, compacted) and
  // bob may see and read it, but write nothing anywhere: the registry's
  // idempotent producer is refused its producer id, whatever a topic
  // that cannot be described would say.
  ASSERT_TRUE(CreateTopicAdmin(Config(), control, 2, 1, {{"cleanup.policy", "compact"}}).ok());
  ASSERT_NO_FATAL_FAILURE(Allow("bob", "topic", control, "describe"));
  ASSERT_NO_FATAL_FAILURE(Allow("bob", "topic", control, "read"));
  // And the source: deploy checks it before it registers anything.
  ASSERT_NO_FATAL_FAILURE(Allow("bob", "topic", input, "describe"));
  ASSERT_NO_FATAL_FAILURE(Allow("bob", "topic", input, "read"));
  ScratchDir dir("sec-deploy");
  SpecOptions o = JobOptions(Unique("sec-job"), input, dir / "state");
  const std::string spec = WriteSpec(dir, "v1.yaml", o);
  std::string out, err;
  const auto began = std::chrono::steady_clock::now();
  EXPECT_EQ(RunKappa(AsBob({"deploy", spec, "--stop-at-end", "--status-interval-ms", "0"}, control), &out, &err,
                     "sec-deploy"),
            1)
      << out << err;
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(60)) << err;
  EXPECT_TRUE(Contains(err, "cannot write to the control topic " + control)) << err;
  EXPECT_TRUE(Contains(err, "CLUSTER_AUTHORIZATION_FAILED")) << err;
  EXPECT_TRUE(Contains(err, "IdempotentWrite on the cluster")) << "the missing ACL is named: " << err;
  EXPECT_TRUE(Contains(err, "Write on topic " + control)) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;
  EXPECT_FALSE(Contains(err, "Local: Fatal error")) << err;
  EXPECT_FALSE(Contains(out + err, Password("bob"))) << out << err;
}

TEST_F(SecureErrorsTest, AWrongPasswordIsAnAuthenticationErrorWithinSeconds) {
  const std::string input = Unique("sec-pw");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 1, 1).ok());
  const std::string wrong = "WrongPassXYZ-4711";
  std::string out, err;
  const auto began = std::chrono::steady_clock::now();
  EXPECT_EQ(RunKappa({"consume", "-t", input, "-b", sasl_bootstrap_, "-X", "security.protocol=SASL_PLAINTEXT", "-X",
                      "sasl.mechanisms=PLAIN", "-X", "sasl.username=alice", "-X", "sasl.password=" + wrong},
                     &out, &err),
            1)
      << err;
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(8)) << "waited for the 10 s timeout";
  EXPECT_TRUE(Contains(err, "authentication with Kafka at " + sasl_bootstrap_ + " failed")) << err;
  EXPECT_TRUE(Contains(err, "SASL authentication error")) << err;
  EXPECT_TRUE(Contains(err, "sasl.username and sasl.password")) << err;
  EXPECT_FALSE(Contains(err, "is the broker running")) << err;
  EXPECT_FALSE(Contains(out + err, wrong)) << out << err;
}

TEST_F(SecureErrorsTest, AScramLoginThatThisLibrdkafkaCannotMakeSaysSo) {
  const std::string input = Unique("sec-scram");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 1, 1).ok());
  ASSERT_NO_FATAL_FAILURE(Allow("carol", "topic", input, "all"));
  ASSERT_NO_FATAL_FAILURE(Allow("carol", "group", "kappa-reader", "all"));
  for (const char* mechanism : {"SCRAM-SHA-256", "SCRAM-SHA-512"}) {
    std::string out, err;
    std::string mechanism_option = "sasl.mechanisms=";
    mechanism_option += mechanism;
    std::string password_option = "sasl.password=";
    password_option += Password("carol");
    const int rc = RunKappa({"consume", "-t", input, "-b", sasl_bootstrap_, "-X", "security.protocol=SASL_PLAINTEXT",
                             "-X", mechanism_option, "-X", "sasl.username=carol", "-X", password_option},
                            &out, &err);
    if (rd_kafka_version() >= 0x020601ff) {
      EXPECT_EQ(rc, 0) << mechanism << ": " << err;  // a librdkafka that logs in
      continue;
    }
    EXPECT_EQ(rc, 1) << mechanism << ": " << out << err;
    EXPECT_TRUE(Contains(err, std::string("invalid credentials with SASL mechanism ") + mechanism)) << err;
    EXPECT_TRUE(Contains(err, "cannot log in to it with SCRAM (fixed in librdkafka 2.6.1)")) << err;
    EXPECT_TRUE(Contains(err, std::string("librdkafka (") + rd_kafka_version_str() + ")")) << err;
    EXPECT_TRUE(Contains(err, "sasl.mechanisms=PLAIN over SASL_SSL")) << err;
    EXPECT_FALSE(Contains(out + err, Password("carol"))) << out << err;
  }
  // A PLAIN login with a wrong password is not told about SCRAM.
  std::string out, err;
  EXPECT_EQ(RunKappa({"consume", "-t", input, "-b", sasl_bootstrap_, "-X", "security.protocol=SASL_PLAINTEXT", "-X",
                      "sasl.mechanisms=PLAIN", "-X", "sasl.username=carol", "-X", "sasl.password=nope"},
                     &out, &err),
            1);
  EXPECT_FALSE(Contains(err, "SCRAM")) << err;
}

}  // namespace
}  // namespace kappa::testing
