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

std::string AuthorizationHint(int code, const std::string& topic) {
  const std::string on_topic = topic.empty() ? std::string("the topic") : "topic " + topic;
  switch (static_cast<rd_kafka_resp_err_t>(code)) {
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
      // An idempotent producer asks for a producer id: IdempotentWrite on the
      // cluster before Kafka 3.0, Write on any topic since (KIP-679).
      return "the principal needs IdempotentWrite on the cluster (Kafka before 3.0) or Write on " + on_topic +
             " (ACLs: kafka-acls.sh --add --allow-principal User:NAME --operation Write --topic " +
             (topic.empty() ? std::string("TOPIC") : topic) + ")";
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
      // A topic that does not exist yet is made by the broker's auto-create
      // on the first write, which needs Create: refused for Write alone,
      // the error named only the Write the principal had (a bug bash).
      return "the principal needs Write and Describe on " + on_topic +
             ", and Create while it does not exist (or make it beforehand) (ACLs)";
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      return "the principal needs Write and Describe on the transactional id (ACLs)";
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
      return "the principal needs Read on the consumer group (ACLs)";
    default:
      return std::string();
  }
}

Status ReadRefused(int err, const std::string& what, const std::string& cause, const std::string& topic,
                   const std::string& group) {
  switch (static_cast<rd_kafka_resp_err_t>(err)) {
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
      return Status::PermissionDenied(what + ": not authorized to read it (" + cause +
                                      "): the principal needs Read and Describe on topic " + topic + " (ACLs)");
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
      return Status::PermissionDenied(what + ": not authorized to use consumer group " + group + " (" + cause +
                                      "): the principal needs Read on group " + group + " (ACLs)");
    default:
      return Status::OK();
  }
}

Status StatusFromKafkaFatal(rd_kafka_t* rk, int code, const std::string& what, const std::string& topic) {
  const auto err = static_cast<rd_kafka_resp_err_t>(code);
  if (err != RD_KAFKA_RESP_ERR__FATAL && err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return StatusFromKafka(code, what, AuthorizationHint(code, topic));
  }
  char text[512] = "";
  const rd_kafka_resp_err_t cause = rk ? rd_kafka_fatal_error(rk, text, sizeof(text)) : RD_KAFKA_RESP_ERR_NO_ERROR;
  if (cause == RD_KAFKA_RESP_ERR_NO_ERROR) return StatusFromKafka(code, what);
  std::string message = what + ": " + rd_kafka_err2name(cause) + ": " + text + " (fatal)";
  if (const std::string hint = AuthorizationHint(cause, topic); !hint.empty()) message += "; " + hint;
  return WithCode(cause, std::move(message));  // a fenced producer stays Aborted
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
