// KafkaConfig: librdkafka properties for one client, built from the CLI's
// --brokers and -X key=value flags. Every command passes these through, so a
// real cluster with SASL/TLS works without code changes. Plain value type.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

struct rd_kafka_conf_s;

namespace kappa {

struct KafkaConfig {
  std::string brokers;                                     // bootstrap.servers
  std::vector<std::pair<std::string, std::string>> properties;  // -X pass-through

  // Parses "key=value" (as kcat's -X); InvalidArgument if there is no '='.
  // A value "@env:VAR" is the environment variable VAR, "@file:PATH" the
  // contents of PATH (one trailing newline dropped), so secrets need not be
  // on the command line; InvalidArgument if VAR is unset or PATH unreadable.
  Status AddProperty(const std::string& key_equals_value);
  // kcat's -F: one key=value per line (whitespace around both trimmed),
  // blank lines and lines starting with '#' skipped, values as in
  // AddProperty. Errors name the file and line, never the line's text.
  Status AddPropertiesFromFile(const std::string& path);
  // The value a property is built with: its last one among `properties`
  // (-X after -F, a later -X after an earlier one), or null if unset.
  const std::string* Property(std::string_view name) const;
  // A new rd_kafka_conf_t with bootstrap.servers, `defaults` and then the
  // user's -X properties (which win). InvalidArgument names a bad property;
  // the value is shown only for a known, non-secret property (a name with
  // "password", "secret" or "key" in it is secret, and an unknown name may
  // be a misspelled secret).
  Result<rd_kafka_conf_s*> Build(
      const std::vector<std::pair<std::string, std::string>>& defaults) const;
};

// Kafka's rule for a topic name: only [a-zA-Z0-9._-], 1 to 249 characters,
// not "." or "..". InvalidArgument saying which part is broken (the caller
// prefixes where the name came from).
inline constexpr size_t kMaxTopicNameLength = 249;
Status CheckTopicName(std::string_view name);
// The topic of `existing` whose name differs from `name` only in '.'
// against '_' (Kafka refuses to create a topic that collides so with
// another: their metric names would be one); "" if none.
std::string CollidingTopic(const std::string& name, const std::vector<std::string>& existing);

// Whether a property's value must never be printed: its name contains
// "password", "secret" or "key" (any case).
bool IsSecretProperty(std::string_view name);

}  // namespace kappa
