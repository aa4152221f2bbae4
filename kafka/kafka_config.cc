#include "kafka/kafka_config.h"

#include <librdkafka/rdkafka.h>

#include <cstdio>
#include <cstdlib>

namespace kappa {
namespace {

// librdkafka logs every failed connection attempt; kappa reports failures as
// one Status line instead. KAPPA_KAFKA_LOG=<syslog level> (e.g. 7 with
// -X debug=all) shows librdkafka's own log when diagnosing a cluster.
int KafkaLogLevel() {
  static const int level = [] {
    const char* env = std::getenv("KAPPA_KAFKA_LOG");
    return env ? std::atoi(env) : 2;
  }();
  return level;
}

void LogToStderr(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  if (level <= KafkaLogLevel()) std::fprintf(stderr, "kappa: librdkafka %s %s: %s\n", rd_kafka_name(rk), facility, message);
}

}  // namespace

Status KafkaConfig::AddProperty(const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return Status::InvalidArgument("-X expects key=value, got '" + kv + "'");
  }
  properties.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  return Status::OK();
}

Result<rd_kafka_conf_s*> KafkaConfig::Build(
    const std::vector<std::pair<std::string, std::string>>& defaults) const {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, LogToStderr);
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) -> Status {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      return Status::InvalidArgument("Kafka property " + k + "=" + v + ": " + err);
    }
    return Status::OK();
  };
  Status st;
  if (!brokers.empty()) st = set("bootstrap.servers", brokers);
  for (const auto& [k, v] : defaults) {
    if (st.ok()) st = set(k, v);
  }
  for (const auto& [k, v] : properties) {
    if (st.ok()) st = set(k, v);
  }
  if (!st.ok()) {
    rd_kafka_conf_destroy(conf);
    return st;
  }
  return conf;
}

}  // namespace kappa
