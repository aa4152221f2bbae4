#include "kafka/kafka_status.h"

#include <librdkafka/rdkafka.h>

#include <utility>

namespace kappa {

namespace {

Status WithCode(rd_kafka_resp_err_t err, std::string message) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
      return Status::DataLoss(message);
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__CONFLICT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
      return Status::InvalidArgument(message);
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
      return Status::Aborted(message);
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return Status::NotFound(message);
    case RD_KAFKA_RESP_ERR__FATAL:
      return Status::Unavailable(message);
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return Status::PermissionDenied(message);
    default:
      return IsTransientKafkaError(err) ? Status::Unavailable(message) : Status::IOError(message);
  }
}

}  // namespace

Status StatusFromKafka(int code, const std::string& what, const std::string& hint) {
  const auto err = static_cast<rd_kafka_resp_err_t>(code);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::OK();
  std::string message = what + ": " + rd_kafka_err2name(err) + ": " + rd_kafka_err2str(err);
  if (!hint.empty()) message += "; " + hint;
  return WithCode(err, std::move(message));
}

Status StatusFromKafkaError(const rd_kafka_error_t* error, const std::string& what, const std::string& hint) {
  if (!error) return Status::OK();
  const rd_kafka_resp_err_t err = rd_kafka_error_code(error);
  std::string message = what + ": " + rd_kafka_error_name(error) + ": " + rd_kafka_error_string(error);
  if (!hint.empty()) message += "; " + hint;
  // A fatal error is carried as its underlying code; say so, it ends the client.
  if (rd_kafka_error_is_fatal(error)) message += " (fatal)";
  return WithCode(err == RD_KAFKA_RESP_ERR_NO_ERROR ? RD_KAFKA_RESP_ERR__FAIL : err, std::move(message));
}

bool IsTransientKafkaError(int code) {
  switch (static_cast<rd_kafka_resp_err_t>(code)) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED:
      return true;
    default:
      return false;
  }
}

}  // namespace kappa
