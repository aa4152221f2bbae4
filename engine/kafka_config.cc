#include "engine/kafka_config.h"

#include <librdkafka/rdkafka.h>

namespace kappa {

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
