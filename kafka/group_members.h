// Which member of a consumer group owns which partitions of a topic, from
// the group coordinator (DescribeConsumerGroups, the admin API
// kafka-consumer-groups.sh --describe --members --verbose uses). The standbys
// of a scaled-out version (engine/standby.h) place themselves with it.
//
// Asynchronous so that the caller's thread never waits on the coordinator:
// Send() starts a query, TryGet() returns its answer once it is there.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

struct rd_kafka_s;
struct rd_kafka_queue_s;

namespace kappa {

// Member id -> the partitions of the topic assigned to it (sorted; members
// with none are listed with none).
using GroupAssignments = std::map<std::string, std::vector<int32_t>>;

class GroupAssignmentQuery {
 public:
  // `rk`: any client handle (a consumer's will do); it must outlive this.
  GroupAssignmentQuery(rd_kafka_s* rk, std::string group, std::string topic);
  ~GroupAssignmentQuery();
  GroupAssignmentQuery(const GroupAssignmentQuery&) = delete;
  GroupAssignmentQuery& operator=(const GroupAssignmentQuery&) = delete;

  // Starts a query unless one is under way (or the client knows no
  // cluster yet: then pending() stays false, ask again later).
  void Send(int timeout_ms);
  bool pending() const { return pending_; }
  // nullopt while the answer is not there (or none was sent). An error:
  // Unavailable (no answer, the coordinator moving), FailedPrecondition
  // when the broker does not support DescribeConsumerGroups (the embedded
  // broker: never asked, see Send).
  std::optional<Result<GroupAssignments>> TryGet();

 private:
  rd_kafka_s* rk_;
  std::string group_;
  std::string topic_;
  rd_kafka_queue_s* queue_ = nullptr;
  bool pending_ = false;
  bool mock_ = false;
};

// The same, waiting up to timeout_ms for the answer.
Result<GroupAssignments> DescribeGroupAssignments(rd_kafka_s* rk, const std::string& group, const std::string& topic,
                                                  int timeout_ms);

}  // namespace kappa
