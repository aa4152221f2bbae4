// KafkaConfig: librdkafka properties for one client, built from the CLI's
// --brokers and -X key=value flags. Every command passes these through, so a
// real cluster with SASL/TLS works without code changes. Plain value type.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

struct rd_kafka_conf_s;

namespace kappa {

struct KafkaConfig {
  std::string brokers;                                     // bootstrap.servers
  std::vector<std::pair<std::string, std::string>> properties;  // -X pass-through

  // Parses "key=value" (as kcat's -X); InvalidArgument if there is no '='.
  Status AddProperty(const std::string& key_equals_value);
  // A new rd_kafka_conf_t with bootstrap.servers, `defaults` and then the
  // user's -X properties (which win). InvalidArgument names a bad property.
  Result<rd_kafka_conf_s*> Build(
      const std::vector<std::pair<std::string, std::string>>& defaults) const;
};

}  // namespace kappa
