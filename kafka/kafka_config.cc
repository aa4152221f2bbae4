#include "kafka/kafka_config.h"

#include "kafka/kafka_client.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

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
  NoteKafkaLog(rk, level, facility, message);  // a failed authentication or TLS handshake, for the error message
  if (level <= KafkaLogLevel()) std::fprintf(stderr, "kappa: librdkafka %s %s: %s\n", rd_kafka_name(rk), facility, message);
}

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// Resolves "@env:VAR" and "@file:PATH"; other values are returned as given.
Result<std::string> ResolveValue(const std::string& key, const std::string& value) {
  if (value.rfind("@env:", 0) == 0) {
    const std::string var = value.substr(5);
    const char* v = var.empty() ? nullptr : std::getenv(var.c_str());
    if (v == nullptr) {
      return Status::InvalidArgument("Kafka property " + key + "=@env:" + var + ": environment variable " +
                                     (var.empty() ? "name is empty" : var + " is not set"));
    }
    return std::string(v);
  }
  if (value.rfind("@file:", 0) == 0) {
    const std::string path = value.substr(6);
    // An ifstream opens a directory and reads nothing: an empty secret, no
    // error (a bug bash).
    std::error_code ec;
    if (!path.empty() && std::filesystem::is_directory(path, ec)) {
      return Status::InvalidArgument("Kafka property " + key + "=@file:" + path + ": " + path +
                                     " is a directory, not a file");
    }
    std::ifstream in(path, std::ios::binary);
    if (path.empty() || !in) {
      return Status::InvalidArgument("Kafka property " + key + "=@file:" + path + ": cannot read " +
                                     (path.empty() ? "an empty path" : path));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (!text.empty() && text.back() == '\r') text.pop_back();
    return text;
  }
  return value;
}

}  // namespace

bool IsSecretProperty(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find("password") != std::string::npos || lower.find("secret") != std::string::npos ||
         lower.find("key") != std::string::npos;
}

Status CheckTopicName(std::string_view name) {
  const std::string rule = " (a Kafka topic name is 1 to 249 of [a-zA-Z0-9._-], and not '.' or '..')";
  std::string shown(name.substr(0, 64));
  if (name.size() > shown.size()) shown += "... (" + std::to_string(name.size()) + " characters)";
  if (name.empty()) return Status::InvalidArgument("topic name is empty" + rule);
  if (name.size() > kMaxTopicNameLength) {
    return Status::InvalidArgument("topic name '" + shown + "' is longer than 249 characters" + rule);
  }
  if (name == "." || name == "..") return Status::InvalidArgument("topic name '" + shown + "' is not allowed" + rule);
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (ok) continue;
    char what[16];
    if (c > ' ' && c < 127) std::snprintf(what, sizeof(what), "'%c'", c);
    else if (c == ' ') std::snprintf(what, sizeof(what), "a space");
    else std::snprintf(what, sizeof(what), "byte 0x%02x", static_cast<unsigned char>(c));
    return Status::InvalidArgument("topic name '" + shown + "' has " + what + ", which Kafka refuses" + rule);
  }
  return Status::OK();
}

std::string CollidingTopic(const std::string& name, const std::vector<std::string>& existing) {
  auto folded = [](std::string text) {
    std::replace(text.begin(), text.end(), '.', '_');
    return text;
  };
  const std::string want = folded(name);
  for (const std::string& topic : existing) {
    if (topic != name && folded(topic) == want) return topic;
  }
  return "";
}

// Properties kappa sets itself, per job version, that a -X or -F must not
// replace: with its own group.id a version no longer reads as <job>.v<N>
// (two jobs given one value split the source's partitions between them,
// each reading about half, a bug bash), with its own transactional.id every
// process of a job fences the others. Empty if `key` is the user's to set.
static std::string ReservedProperty(const std::string& key) {
  if (key == "group.id") {
    return "group.id is kappa's to set: each job version reads as the consumer group <job>.v<N> (its scaled-out "
           "instances share it), so that no two versions or jobs split a source's partitions between them; "
           "remove it (kappa consume and dlq need none)";
  }
  if (key == "transactional.id") {
    return "transactional.id is kappa's to set: each job version and instance has its own, so that a restarted "
           "process fences only its own predecessor; remove it";
  }
  return "";
}

Status KafkaConfig::AddProperty(const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    // "sasl.password:SECRET" (':' typed for '=') must not echo the secret.
    if (IsSecretProperty(kv)) {
      return Status::InvalidArgument("-X expects key=value, got an argument without '=' that names a secret "
                                     "(not shown)");
    }
    return Status::InvalidArgument("-X expects key=value, got '" + kv + "'");
  }
  const std::string key = kv.substr(0, eq);
  if (const std::string why = ReservedProperty(key); !why.empty()) return Status::InvalidArgument("-X " + why);
  auto value = ResolveValue(key, kv.substr(eq + 1));
  if (!value.ok()) return value.status();
  properties.emplace_back(key, std::move(*value));
  return Status::OK();
}

Status KafkaConfig::AddPropertiesFromFile(const std::string& path) {
  // An ifstream opens a directory, and reads nothing from it: no properties, no error.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument("-F " + path + ": is a directory, not a properties file");
  }
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("-F " + path + ": cannot read the properties file");
  std::string raw;
  int line = 0;
  while (std::getline(in, raw)) {
    ++line;
    // A UTF-8 byte order mark (editors on Windows write one) was read as
    // part of the first key: "no such librdkafka property client.id", the
    // mark invisible (a bug bash).
    if (line == 1 && raw.rfind("\xEF\xBB\xBF", 0) == 0) raw.erase(0, 3);
    const std::string text = Trim(raw);
    if (text.empty() || text.front() == '#') continue;
    const size_t eq = text.find('=');
    const std::string key = eq == std::string::npos ? std::string() : Trim(text.substr(0, eq));
    if (key.empty()) {
      return Status::InvalidArgument(path + ":" + std::to_string(line) +
                                     ": expected key=value (one librdkafka property per line, # for comments)");
    }
    if (const std::string why = ReservedProperty(key); !why.empty()) {
      return Status::InvalidArgument(path + ":" + std::to_string(line) + ": " + why);
    }
    auto value = ResolveValue(key, Trim(text.substr(eq + 1)));
    if (!value.ok()) {
      return Status::InvalidArgument(path + ":" + std::to_string(line) + ": " + value.status().message());
    }
    properties.emplace_back(key, std::move(*value));
  }
  return Status::OK();
}

const std::string* KafkaConfig::Property(std::string_view name) const {
  for (auto it = properties.rbegin(); it != properties.rend(); ++it) {
    if (it->first == name) return &it->second;
  }
  return nullptr;
}

Result<rd_kafka_conf_s*> KafkaConfig::Build(
    const std::vector<std::pair<std::string, std::string>>& defaults) const {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, LogToStderr);
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) -> Status {
    const rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err));
    if (res != RD_KAFKA_CONF_OK) {
      // An unknown name may be a misspelled secret (sasl.pasword=...): show
      // the name only. A secret's value never appears, so neither does
      // librdkafka's text (it quotes the value).
      if (res == RD_KAFKA_CONF_UNKNOWN) {
        return Status::InvalidArgument("Kafka property " + k +
                                       ": no such librdkafka property (check the spelling; see librdkafka's "
                                       "CONFIGURATION.md)");
      }
      if (IsSecretProperty(k)) return Status::InvalidArgument("Kafka property " + k + "=***: invalid value");
      return Status::InvalidArgument("Kafka property " + k + "=" + v + ": " + err);
    }
    return Status::OK();
  };
  Status st;
  if (!brokers.empty()) st = set("bootstrap.servers", brokers);
  // Requests go out without Nagle's delay, as the Java client sends them (it
  // sets TCP_NODELAY on every connection): with Nagle a small request behind
  // an unacknowledged one waits for the broker's delayed ACK, up to 40 ms,
  // in a checkpoint's flush or commit. -X socket.nagle.disable=false undoes it.
  if (st.ok()) st = set("socket.nagle.disable", "true");
  for (const auto& [k, v] : defaults) {
    if (st.ok()) st = set(k, v);
  }
  // The last value of a property wins, and only it is set: a bad value in
  // the -F file failed the run though -X set that property again, where
  // the README says -X wins (a bug bash).
  for (const auto& [k, v] : properties) {
    if (st.ok() && Property(k) == &v) st = set(k, v);
  }
  if (!st.ok()) {
    rd_kafka_conf_destroy(conf);
    return st;
  }
  return conf;
}

}  // namespace kappa
