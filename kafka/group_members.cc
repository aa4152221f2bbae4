#include "kafka/group_members.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "kafka/kafka_client.h"
#include "kafka/kafka_status.h"

namespace kappa {

GroupAssignmentQuery::GroupAssignmentQuery(rd_kafka_s* rk, std::string group, std::string topic)
    : rk_(rk), group_(std::move(group)), topic_(std::move(topic)), queue_(rd_kafka_queue_new(rk)) {}

GroupAssignmentQuery::~GroupAssignmentQuery() {
  if (queue_ == nullptr) return;
  // An answer still on its way is dropped with the queue.
  while (rd_kafka_event_t* ev = rd_kafka_queue_poll(queue_, 0)) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(queue_);
}

void GroupAssignmentQuery::Send(int timeout_ms) {
  if (pending_) return;
  // The embedded broker (librdkafka 2.0.2's mock cluster, cluster id
  // "mockCluster...") has no DescribeConsumerGroups, and librdkafka 2.0.2
  // deadlocks in rd_kafka_destroy after asking it anyway: it is not asked.
  const std::optional<bool> embedded = IsEmbeddedBroker(rk_);  // known once any metadata came back
  if (!embedded) return;                                         // not yet: the caller asks again later
  mock_ = *embedded;
  pending_ = true;
  if (mock_) return;
  char errstr[256];
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk_, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
  rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof errstr);
  const char* groups[] = {group_.c_str()};
  rd_kafka_DescribeConsumerGroups(rk_, groups, 1, options, queue_);
  rd_kafka_AdminOptions_destroy(options);
}

std::optional<Result<GroupAssignments>> GroupAssignmentQuery::TryGet() {
  if (!pending_) return std::nullopt;
  if (mock_) {
    pending_ = false;
    return Result<GroupAssignments>(Status::FailedPrecondition(
        "cannot describe consumer group " + group_ +
        ": the embedded broker does not support DescribeConsumerGroups; standbys need a real Kafka"));
  }
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue_, 0);
  if (ev == nullptr) return std::nullopt;
  pending_ = false;
  const std::string what = "cannot describe consumer group " + group_;
  auto fail = [&](int err, const std::string& text) -> Result<GroupAssignments> {
    rd_kafka_event_destroy(ev);
    if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE || err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION ||
        err == RD_KAFKA_RESP_ERR_INVALID_REQUEST) {
      return Status::FailedPrecondition(what + ": the broker does not support DescribeConsumerGroups (" + text +
                                        "); standbys need Kafka 2.x or later");
    }
    return Status::Unavailable(what + ": " + text);
  };
  if (rd_kafka_event_error(ev)) return fail(rd_kafka_event_error(ev), rd_kafka_event_error_string(ev));
  const rd_kafka_DescribeConsumerGroups_result_t* result = rd_kafka_event_DescribeConsumerGroups_result(ev);
  size_t n = 0;
  const rd_kafka_ConsumerGroupDescription_t** groups =
      result ? rd_kafka_DescribeConsumerGroups_result_groups(result, &n) : nullptr;
  if (n != 1) return fail(RD_KAFKA_RESP_ERR__BAD_MSG, "the answer holds " + std::to_string(n) + " groups");
  if (const rd_kafka_error_t* error = rd_kafka_ConsumerGroupDescription_error(groups[0])) {
    return fail(rd_kafka_error_code(error), rd_kafka_error_string(error));
  }
  GroupAssignments out;
  const size_t members = rd_kafka_ConsumerGroupDescription_member_count(groups[0]);
  for (size_t i = 0; i < members; ++i) {
    const rd_kafka_MemberDescription_t* m = rd_kafka_ConsumerGroupDescription_member(groups[0], i);
    std::vector<int32_t>& ps = out[rd_kafka_MemberDescription_consumer_id(m)];
    const rd_kafka_MemberAssignment_t* a = rd_kafka_MemberDescription_assignment(m);
    const rd_kafka_topic_partition_list_t* list = a ? rd_kafka_MemberAssignment_partitions(a) : nullptr;
    for (int j = 0; list && j < list->cnt; ++j) {
      if (topic_ == list->elems[j].topic) ps.push_back(list->elems[j].partition);
    }
    std::sort(ps.begin(), ps.end());
  }
  rd_kafka_event_destroy(ev);
  return Result<GroupAssignments>(std::move(out));
}

Result<GroupAssignments> DescribeGroupAssignments(rd_kafka_s* rk, const std::string& group, const std::string& topic,
                                                  int timeout_ms) {
  GroupAssignmentQuery query(rk, group, topic);
  char* cluster = rd_kafka_clusterid(rk, timeout_ms);  // Send needs it known
  if (cluster) rd_kafka_mem_free(rk, cluster);
  query.Send(timeout_ms);
  if (!query.pending()) return Status::Unavailable("cannot describe consumer group " + group + ": no broker answers");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms + 2000);
  for (;;) {
    if (auto got = query.TryGet()) return std::move(*got);
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable("cannot describe consumer group " + group + ": no answer within " +
                                 std::to_string(timeout_ms / 1000) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace kappa
