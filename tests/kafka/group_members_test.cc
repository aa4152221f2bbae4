// kafka/group_members.h: who in a consumer group owns which partitions, as
// the group coordinator says (DescribeConsumerGroups). The standbys of a
// scaled-out version place themselves by it, so it must name each member by
// the id the member knows itself by (rd_kafka_memberid) and list exactly
// the partitions the group gave it.
#include "kafka/group_members.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>

#include <gtest/gtest.h>

#include "kafka/partition_consumer.h"
#include "tests/support/test_support.h"

namespace kappa {
namespace {

using kappa::testing::BrokerTest;

class GroupMembersTest : public BrokerTest {
 protected:
  std::unique_ptr<PartitionConsumer> Member() {
    PartitionConsumerOptions o;
    o.group = "members";
    o.group_member = true;
    o.session_timeout_ms = 6000;
    o.close_timeout_ms = 5000;
    auto c = PartitionConsumer::Create(Config(), std::move(o));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }
  static Status FromStart(RebalanceEvent event, const std::vector<int32_t>&, std::vector<int64_t>* offsets) {
    if (event != RebalanceEvent::kAssign) return Status::OK();  // offsets: only given on kAssign
    for (int64_t& o : *offsets) o = 0;
    return Status::OK();
  }
  static std::string MemberId(PartitionConsumer& c) {
    char* id = rd_kafka_memberid(c.handle());
    std::string out = id ? id : "";
    if (id) rd_kafka_mem_free(c.handle(), id);
    return out;
  }
  static std::vector<int32_t> Assigned(PartitionConsumer& c) {
    std::vector<int32_t> out(c.assigned().begin(), c.assigned().end());
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(GroupMembersTest, EachMemberIsListedWithThePartitionsTheGroupGaveIt) {
  CreateTopic("t", 4);
  auto a = Member();
  auto b = Member();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Subscribe("t", FromStart).ok());
  ASSERT_TRUE(b->Subscribe("t", FromStart).ok());
  MessageBatch batch;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(45);
  // Both polled until the group settled: 4 partitions, each member some.
  for (;;) {
    for (PartitionConsumer* c : {a.get(), b.get()}) {
      Status polled = c->Poll(10, 50, &batch);
      ASSERT_TRUE(polled.ok()) << polled.ToString();
      batch.Clear();
    }
    if (!a->assigned().empty() && !b->assigned().empty() && a->assigned().size() + b->assigned().size() == 4) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the group did not settle";
  }
  auto got = DescribeGroupAssignments(a->handle(), "members", "t", 10000);
  if (!real_broker() && got.status().code() == Status::Code::kFailedPrecondition) {
    GTEST_SKIP() << "the embedded broker (librdkafka 2.0.2's mock) has no DescribeConsumerGroups: "
                 << got.status().message();
  }
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 2u);
  ASSERT_EQ(got->count(MemberId(*a)), 1u) << "member " << MemberId(*a) << " is not listed";
  ASSERT_EQ(got->count(MemberId(*b)), 1u) << "member " << MemberId(*b) << " is not listed";
  EXPECT_EQ(got->at(MemberId(*a)), Assigned(*a));
  EXPECT_EQ(got->at(MemberId(*b)), Assigned(*b));

  // A group nobody joined: no members, not an error.
  auto none = DescribeGroupAssignments(a->handle(), "nobody-here", "t", 10000);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace kappa
