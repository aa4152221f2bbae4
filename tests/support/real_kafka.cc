#include "tests/support/real_kafka.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "kafka/kafka_client.h"
#include "kafka/partition_list.h"
#include "tests/support/test_support.h"

namespace kappa::testing {

namespace {

// Appended rather than built with operator+: GCC 12 warns -Warray-bounds
// on a literal added to a temporary string (a libstdc++ false positive).
std::string KafkaScript() {
  std::string script = KAPPA_SOURCE_DIR;
  script += "/scripts/kafka.sh";
  return script;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

bool TopicReady(rd_kafka_t* rk, const std::string& name, int partitions) {
  rd_kafka_topic_t* topic = rd_kafka_topic_new(rk, name.c_str(), nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  bool ready = false;
  if (rd_kafka_metadata(rk, 0, topic, &metadata, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
        metadata->topics[0].partition_cnt == partitions) {
      ready = true;
      for (int p = 0; p < partitions; ++p) ready = ready && metadata->topics[0].partitions[p].leader >= 0;
    }
    rd_kafka_metadata_destroy(metadata);
  }
  rd_kafka_topic_destroy(topic);
  return ready;
}

}  // namespace

Result<std::unique_ptr<RealKafka>> RealKafka::Start(const std::string& dir, int brokers) {
  std::filesystem::create_directories(dir);
  const std::string cmd = "timeout 600 " + Quote(KafkaScript()) + " start --brokers " + std::to_string(brokers) +
                          " --dir " + Quote(dir) + " --owner " + std::to_string(::getpid()) + " --test 2>" + Quote(dir + "/start.err");
  const std::string out = RunShell(cmd);
  std::unique_ptr<RealKafka> kafka(new RealKafka());
  kafka->dir_ = dir;
  kafka->brokers_ = brokers;
  std::ifstream in(dir + "/bootstrap");
  std::getline(in, kafka->bootstrap_);
  if (kafka->bootstrap_.empty()) {
    return Status::Unavailable("scripts/kafka.sh start --dir " + dir + " failed: " + out +
                               ReadFile(dir + "/start.err"));
  }
  return kafka;
}

// The test's data goes with it: no clean shutdown to wait for.
RealKafka::~RealKafka() {
  RunShell("timeout 120 " + Quote(KafkaScript()) + " stop --signal KILL --dir " + Quote(dir_) + " 2>&1");
}

namespace {

Status RunNodeCommand(const std::string& dir, const std::string& args) {
  const std::string err = dir + "/node-command.err";
  const std::string out = RunShell("timeout 120 " + Quote(KafkaScript()) + " " + args + " --dir " + Quote(dir) +
                                   " 2>" + Quote(err) + "; echo rc=$?");
  if (out.find("rc=0") == std::string::npos) {
    return Status::Unavailable("scripts/kafka.sh " + args + " --dir " + dir + " failed: " + out + ReadFile(err));
  }
  return Status::OK();
}

}  // namespace

Status RealKafka::StopNode(int id) {
  return RunNodeCommand(dir_, "stop-node --node " + std::to_string(id) + " --signal TERM");
}

Status RealKafka::KillNode(int id) {
  return RunNodeCommand(dir_, "stop-node --node " + std::to_string(id) + " --signal KILL");
}

Status RealKafka::StartNode(int id) { return RunNodeCommand(dir_, "start-node --node " + std::to_string(id)); }

pid_t RealKafka::NodePid(int id) const {
  std::ifstream in(dir_ + "/node" + std::to_string(id) + "/pid");
  pid_t pid = -1;
  if (!(in >> pid)) return -1;
  return ::kill(pid, 0) == 0 ? pid : -1;
}

std::string SharedRealKafkaBootstrap(const std::string& realkafka_dir) {
  std::ifstream in(realkafka_dir + "/bootstrap");
  std::string bootstrap;
  std::getline(in, bootstrap);
  return bootstrap;
}

// The error of a one-topic admin request (`request`: its name) answered on
// `queue`, "" if none: no answer within 30 s, the request's own error, or
// the topic's; topics_of(event, &n) lists the answer's topic results.
template <typename TopicsOf>
std::string OneTopicAdminError(rd_kafka_queue_t* queue, const std::string& request, TopicsOf topics_of) {
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  if (!event) return "no answer to " + request + " within 30 s";
  std::string error;
  if (rd_kafka_event_error(event)) {
    error = rd_kafka_event_error_string(event);
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** results = topics_of(event, &n);
    if (n != 1) {
      error = request + " answered for " + std::to_string(n) + " topics";
    } else if (rd_kafka_topic_result_error(results[0])) {
      error = rd_kafka_topic_result_error_string(results[0]);
    }
  }
  rd_kafka_event_destroy(event);
  return error;
}

Status CreateTopicAdmin(const KafkaConfig& config, const std::string& name, int partitions, int replication,
                        const std::map<std::string, std::string>& topic_configs) {
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  rd_kafka_t* rk = client->get();
  char err[512];
  rd_kafka_NewTopic_t* topic =
      rd_kafka_NewTopic_new(name.c_str(), partitions, replication > 0 ? replication : -1, err, sizeof err);
  if (!topic) return Status::InvalidArgument(std::string("topic ") + name + ": " + err);
  for (const auto& [k, v] : topic_configs) rd_kafka_NewTopic_set_config(topic, k.c_str(), v.c_str());
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(options, 20000, err, sizeof err);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &topic, 1, options, queue);
  const std::string error = OneTopicAdminError(queue, "CreateTopics", [](rd_kafka_event_t* e, size_t* n) {
    return rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(e), n);
  });
  rd_kafka_queue_destroy(queue);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_NewTopic_destroy(topic);
  if (!error.empty()) return Status::Unavailable("creating topic " + name + ": " + error);
  // The controller has it; wait until the broker's metadata shows every
  // partition with a leader (a producer asking earlier is told it does not exist).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!TopicReady(rk, name, partitions)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable(name + " has no leaders 30 s after its creation");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::OK();
}

Status AddPartitionsAdmin(const KafkaConfig& config, const std::string& topic, int partitions) {
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  rd_kafka_t* rk = client->get();
  char err[512];
  rd_kafka_NewPartitions_t* grow = rd_kafka_NewPartitions_new(topic.c_str(), static_cast<size_t>(partitions), err,
                                                              sizeof err);
  if (!grow) return Status::InvalidArgument(topic + ": " + err);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_CreatePartitions(rk, &grow, 1, nullptr, queue);
  const std::string error = OneTopicAdminError(queue, "CreatePartitions", [](rd_kafka_event_t* e, size_t* n) {
    return rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(e), n);
  });
  rd_kafka_queue_destroy(queue);
  rd_kafka_NewPartitions_destroy(grow);
  if (!error.empty()) return Status::Unavailable("growing " + topic + ": " + error);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!TopicReady(rk, topic, partitions)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable(topic + "'s new partitions have no leaders after 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::OK();
}

Status RecreateTopicAdmin(const KafkaConfig& config, const std::string& topic, int partitions) {
  KAPPA_RETURN_IF_ERROR(DeleteTopicAdmin(config, topic));
  Status created;
  for (int i = 0; i < 60; ++i) {
    created = CreateTopicAdmin(config, topic, partitions, 1);
    if (created.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return created;
}

Status DeleteTopicAdmin(const KafkaConfig& config, const std::string& topic) {
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  rd_kafka_t* rk = client->get();
  rd_kafka_DeleteTopic_t* doomed = rd_kafka_DeleteTopic_new(topic.c_str());
  char err[512];
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(options, 20000, err, sizeof err);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_DeleteTopics(rk, &doomed, 1, options, queue);
  const std::string error = OneTopicAdminError(queue, "DeleteTopics", [](rd_kafka_event_t* e, size_t* n) {
    return rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(e), n);
  });
  rd_kafka_queue_destroy(queue);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_DeleteTopic_destroy(doomed);
  if (!error.empty()) return Status::Unavailable("deleting topic " + topic + ": " + error);
  return Status::OK();
}

Status AllowAcl(const KafkaConfig& config, const std::string& principal, const std::string& resource_type,
                const std::string& name, const std::string& operation, bool prefixed, bool deny) {
  const std::map<std::string, rd_kafka_ResourceType_t> types = {{"topic", RD_KAFKA_RESOURCE_TOPIC},
                                                                 {"group", RD_KAFKA_RESOURCE_GROUP},
                                                                 {"cluster", RD_KAFKA_RESOURCE_BROKER}};
  const std::map<std::string, rd_kafka_AclOperation_t> operations = {
      {"read", RD_KAFKA_ACL_OPERATION_READ},         {"write", RD_KAFKA_ACL_OPERATION_WRITE},
      {"describe", RD_KAFKA_ACL_OPERATION_DESCRIBE}, {"all", RD_KAFKA_ACL_OPERATION_ALL},
      {"create", RD_KAFKA_ACL_OPERATION_CREATE},     {"idempotent_write", RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE}};
  auto type = types.find(resource_type);
  auto op = operations.find(operation);
  if (type == types.end() || op == operations.end()) {
    return Status::InvalidArgument("AllowAcl: unknown resource type or operation");
  }
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  rd_kafka_t* rk = client->get();
  char err[512];
  // The cluster resource is named "kafka-cluster".
  const std::string resource = resource_type == "cluster" ? "kafka-cluster" : name;
  rd_kafka_AclBinding_t* binding = rd_kafka_AclBinding_new(
      type->second, resource.c_str(),
      prefixed ? RD_KAFKA_RESOURCE_PATTERN_PREFIXED : RD_KAFKA_RESOURCE_PATTERN_LITERAL, principal.c_str(), "*",
      op->second, deny ? RD_KAFKA_ACL_PERMISSION_TYPE_DENY : RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, err, sizeof err);
  if (!binding) return Status::InvalidArgument(std::string("AllowAcl: ") + err);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_CreateAcls(rk, &binding, 1, nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  std::string error;
  if (!event) {
    error = "no answer to CreateAcls within 30 s";
  } else if (rd_kafka_event_error(event)) {
    error = rd_kafka_event_error_string(event);
  } else {
    size_t n = 0;
    const rd_kafka_acl_result_t** results =
        rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(event), &n);
    if (n != 1) {
      error = "CreateAcls answered for " + std::to_string(n) + " bindings";
    } else if (const rd_kafka_error_t* e = rd_kafka_acl_result_error(results[0])) {
      error = rd_kafka_error_string(e);
    }
  }
  if (event) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_AclBinding_destroy(binding);
  if (!error.empty()) return Status::Unavailable("granting " + principal + " " + operation + " on " + resource_type +
                                                 " " + resource + ": " + error);
  // The authorizer of a combined node applies ACLs from the metadata log,
  // which the broker side reads a moment later.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return Status::OK();
}

Status DeleteRecordsBefore(const KafkaConfig& config, const std::string& topic, int32_t partition, int64_t offset) {
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  rd_kafka_t* rk = client->get();
  PartitionList offsets(1);
  offsets.Add(topic, partition, offset);
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(offsets.get());
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_DeleteRecords(rk, &del, 1, nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  std::string error;
  if (!event) {
    error = "no answer to DeleteRecords within 30 s";
  } else if (rd_kafka_event_error(event)) {
    error = rd_kafka_event_error_string(event);
  } else {
    const rd_kafka_topic_partition_list_t* result =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(event));
    if (!result || result->cnt != 1) {
      error = "DeleteRecords answered for no partition";
    } else if (result->elems[0].err) {
      error = rd_kafka_err2str(result->elems[0].err);
    } else if (result->elems[0].offset != offset) {
      error = "the log start moved to " + std::to_string(result->elems[0].offset);
    }
  }
  if (event) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_DeleteRecords_destroy(del);
  if (!error.empty()) {
    return Status::Unavailable("deleting " + topic + "[" + std::to_string(partition) + "] before offset " +
                               std::to_string(offset) + ": " + error);
  }
  return Status::OK();
}

Result<std::vector<int32_t>> PartitionLeaders(const KafkaConfig& config, const std::string& topic) {
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  rd_kafka_t* rk = client->get();
  rd_kafka_topic_t* handle = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, handle, &metadata, 10000);
  rd_kafka_topic_destroy(handle);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Unavailable("metadata of " + topic + ": " + rd_kafka_err2str(err));
  }
  std::vector<int32_t> leaders;
  std::string error;
  if (metadata->topic_cnt != 1 || metadata->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = "no metadata for topic " + topic;
  } else {
    leaders.assign(metadata->topics[0].partition_cnt, -1);
    for (int i = 0; i < metadata->topics[0].partition_cnt; ++i) {
      const auto& p = metadata->topics[0].partitions[i];
      if (p.id >= 0 && p.id < static_cast<int32_t>(leaders.size())) leaders[p.id] = p.leader;
    }
  }
  rd_kafka_metadata_destroy(metadata);
  if (!error.empty()) return Status::Unavailable(error);
  return leaders;
}

Result<CommittedContents> ReadCommitted(const KafkaConfig& config, const std::string& topic, int timeout_ms) {
  CommittedContents out;
  std::random_device rd;
  auto consumer = CreateClient(ClientKind::kConsumer, config,
                               {{"group.id", "read-committed-" + std::to_string(rd())},
                                {"enable.auto.commit", "false"},
                                {"isolation.level", "read_committed"},
                                {"enable.partition.eof", "true"},
                                {"auto.offset.reset", "earliest"}});
  if (!consumer.ok()) return consumer.status();
  rd_kafka_t* rk = consumer->get();
  auto n = TopicPartitionCount(rk, topic, 10000);
  if (!n.ok()) return n.status();
  auto marks = QueryAllWatermarks(rk, topic, *n, 10000);
  if (!marks.ok()) return marks.status();
  PartitionList assignment(*n);
  for (int32_t p = 0; p < *n; ++p) assignment.Add(topic, p, RD_KAFKA_OFFSET_BEGINNING);
  if (rd_kafka_assign(rk, assignment.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Unavailable("assigning " + topic);
  }
  std::set<int32_t> done;
  std::string error;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (static_cast<int32_t>(done.size()) < *n && std::chrono::steady_clock::now() < deadline && error.empty()) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 200);
    if (!msg) continue;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (msg->offset >= (*marks)[msg->partition].high) done.insert(msg->partition);
    } else if (msg->err) {
      error = "reading " + topic + ": " + rd_kafka_message_errstr(msg);
    } else {
      std::string key(static_cast<const char*>(msg->key), msg->key_len);
      std::string value(static_cast<const char*>(msg->payload), msg->len);
      auto it = out.values.find(key);
      if (it != out.values.end() && it->second != value) out.all_copies_identical = false;
      out.values[key] = std::move(value);
      ++out.copies[key];
      ++out.total;
    }
    rd_kafka_message_destroy(msg);
  }
  rd_kafka_consumer_close(rk);
  if (!error.empty()) return Status::Unavailable(error);
  if (static_cast<int32_t>(done.size()) < *n) {
    return Status::Unavailable("read_committed did not reach the end of " + topic + " in " +
                               std::to_string(timeout_ms / 1000) + " s (a transaction left open?)");
  }
  return out;
}

}  // namespace kappa::testing
