#include "kafka/kafka_client.h"

#include "base/stop_token.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <initializer_list>
#include <map>
#include <mutex>
#include <memory>
#include <string_view>
#include <thread>

#include "kafka/kafka_status.h"

namespace kappa {
namespace {

std::atomic<int> g_teardowns{0};

// Counts a thread waiting for librdkafka's teardown (KafkaTeardownInProgress).
struct TeardownWait {
  TeardownWait() { g_teardowns.fetch_add(1, std::memory_order_relaxed); }
  ~TeardownWait() { g_teardowns.fetch_sub(1, std::memory_order_relaxed); }
  TeardownWait(const TeardownWait&) = delete;
  TeardownWait& operator=(const TeardownWait&) = delete;
};

// LastSecurityFailure's records, by client name (rd_kafka_name: unique in
// the process, unlike a handle's address, which a later client may reuse).
struct SecurityRecord {
  SecurityFailure failure;
};
std::mutex g_security_mutex;
std::map<std::string, SecurityRecord>& SecurityRecords() {
  static auto* records = new std::map<std::string, SecurityRecord>;  // outlives every client
  return *records;
}

bool Has(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

// The client's bootstrap.servers, for messages.
std::string BootstrapServers(rd_kafka_t* rk) {
  char servers[512] = "(unknown)";
  size_t size = sizeof(servers);
  rd_kafka_conf_get(rd_kafka_conf(rk), "bootstrap.servers", servers, &size);
  return servers;
}

// What a line of librdkafka's log names: a SASL login, a TLS handshake, or
// a security.protocol that does not match the listener.
SecurityFailure::Kind FailureKindOf(std::string_view line) {
  // librdkafka's guess after a plaintext connection closed early ("Disconnected:
  // verify that security.protocol is correctly configured, broker might
  // require SASL authentication"): a SASL listener does that, and so does a
  // broker that is shutting down or just went away. No login failed.
  if (Has(line, "might require SASL")) return SecurityFailure::Kind::kProtocol;
  if (Has(line, "SASL") || Has(line, "Authentication failed") || Has(line, "authentication failed")) {
    return SecurityFailure::Kind::kAuthentication;
  }
  if (Has(line, "SSL handshake") || Has(line, "certificate") || Has(line, "SSL:")) return SecurityFailure::Kind::kTls;
  if (Has(line, "security.protocol")) return SecurityFailure::Kind::kProtocol;
  return SecurityFailure::Kind::kNone;
}

// The advice for a failure of a kind, by what else its line says: the first
// row of the kind whose `says` (any of them, or none given) the line holds.
struct FailureAdvice {
  SecurityFailure::Kind kind;
  std::initializer_list<std::string_view> says;
  const char* advice;
};
const FailureAdvice kFailureAdvice[] = {
    {SecurityFailure::Kind::kAuthentication, {"not supported by broker"},
     "check security.protocol: this listener takes no SASL login (PLAINTEXT or SSL), or --brokers names the wrong "
     "port"},
    {SecurityFailure::Kind::kAuthentication, {},
     "check the SASL settings: sasl.mechanisms (one the broker enables), sasl.username and sasl.password, and that "
     "security.protocol (SASL_PLAINTEXT or SASL_SSL) matches the broker's listener"},
    {SecurityFailure::Kind::kTls, {"PLAINTEXT"},
     "check security.protocol: this listener does not speak TLS (PLAINTEXT or SASL_PLAINTEXT), or --brokers names "
     "the wrong port"},
    {SecurityFailure::Kind::kTls, {"verify", "ssl.ca.location"},
     "check ssl.ca.location: it must name the CA that signed the broker's certificate (and the certificate must be "
     "for the host in --brokers)"},
    {SecurityFailure::Kind::kTls, {},
     "check the TLS settings: security.protocol (SSL or SASL_SSL only for a TLS listener), ssl.ca.location and any "
     "client certificate"},
    {SecurityFailure::Kind::kProtocol, {"might require SASL"},
     "check security.protocol: a SASL listener needs SASL_PLAINTEXT or SASL_SSL and a login (or the broker went "
     "away while connecting)"},
    {SecurityFailure::Kind::kProtocol, {},
     "check security.protocol: it must match the broker's listener (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL); a "
     "TLS listener needs SSL or SASL_SSL"},
};

// The security failure a line of librdkafka's log reports, if any. Its
// broker failures read "<broker>: <reason> (after Nms in state S)".
SecurityFailure ClassifyFailure(std::string_view line) {
  SecurityFailure f;
  f.kind = FailureKindOf(line);
  if (f.kind == SecurityFailure::Kind::kNone) return f;
  for (const FailureAdvice& row : kFailureAdvice) {
    if (row.kind != f.kind) continue;
    bool says = row.says.size() == 0;
    for (std::string_view what : row.says) says = says || Has(line, what);
    if (says) {
      f.advice = row.advice;
      break;
    }
  }
  // librdkafka before 2.6.1 sends a SCRAM proof over a nonce it built
  // wrong, which Apache Kafka 4.x rejects as invalid credentials (librdkafka
  // #4895); Debian bookworm's is 2.0.2. The right password then reads as
  // the wrong one: say so.
  if (f.kind == SecurityFailure::Kind::kAuthentication && Has(line, "SCRAM") && rd_kafka_version() < 0x020601ff) {
    f.advice += std::string("; if they are right and the broker is Apache Kafka 4.0 or newer: this kappa's librdkafka (") +
                rd_kafka_version_str() +
                ") cannot log in to it with SCRAM (fixed in librdkafka 2.6.1): use sasl.mechanisms=PLAIN over "
                "SASL_SSL, or a kappa built with librdkafka 2.6.1 or newer";
  }
  // Without the thread's and broker's names in front ("[thrd:ssl://h:p/bootstrap]:
  // ssl://h:p/bootstrap: ") and the "(after Nms in state S)" behind.
  std::string_view reason = line;
  for (int i = 0; i < 2; ++i) {
    const size_t colon = reason.find(": ");
    if (colon == std::string_view::npos || reason.substr(0, colon).find(' ') != std::string_view::npos) break;
    reason.remove_prefix(colon + 2);
  }
  if (const size_t after = reason.rfind(" (after "); after != std::string_view::npos) reason = reason.substr(0, after);
  f.reason = std::string(reason.substr(0, 400));
  return f;
}

}  // namespace

void NoteKafkaLog(const rd_kafka_s* rk, int level, const char* facility, const char* message) {
  // Broker failures are logged as "FAIL": at LOG_ERR (3), but a disconnect
  // right after connecting (plaintext against a TLS listener: "Disconnected
  // while requesting ApiVersion ...") at LOG_INFO (6). Debug lines never.
  if (!rk || !message || level > 6) return;
  if (level > 3 && (!facility || std::string_view(facility) != "FAIL")) return;
  SecurityFailure f = ClassifyFailure(message);
  if (f.kind == SecurityFailure::Kind::kNone) return;
  std::lock_guard<std::mutex> lock(g_security_mutex);
  SecurityRecord& record = SecurityRecords()[rd_kafka_name(rk)];
  // "Disconnected while requesting ApiVersion" follows some handshake
  // failures: the more specific reason stays.
  if (f.kind == SecurityFailure::Kind::kProtocol && record.failure.kind != SecurityFailure::Kind::kNone) return;
  record.failure = std::move(f);
}

void ForgetKafkaClient(const rd_kafka_s* rk) {
  if (!rk) return;
  std::lock_guard<std::mutex> lock(g_security_mutex);
  SecurityRecords().erase(rd_kafka_name(rk));
}

SecurityFailure LastSecurityFailure(const rd_kafka_s* rk) {
  if (!rk) return {};
  std::lock_guard<std::mutex> lock(g_security_mutex);
  auto it = SecurityRecords().find(rd_kafka_name(rk));
  return it == SecurityRecords().end() ? SecurityFailure{} : it->second.failure;
}

bool KafkaTeardownInProgress() { return g_teardowns.load(std::memory_order_relaxed) > 0; }

void KafkaHandleDeleter::operator()(rd_kafka_s* rk) const {
  if (!rk) return;
  TeardownWait waiting;
  const std::string name = rd_kafka_name(rk);
  rd_kafka_destroy(rk);
  std::lock_guard<std::mutex> lock(g_security_mutex);
  SecurityRecords().erase(name);
}

std::string BrokersOf(const KafkaConfig& config) {
  return config.brokers.empty() ? std::string("(no --brokers given)") : config.brokers;
}

std::string MessageErrorText(const rd_kafka_message_t* m) {
  if (!m || !m->err) return std::string();
  if (!m->payload || m->len == 0) return rd_kafka_err2str(m->err);
  std::string text(static_cast<const char*>(m->payload), std::min<size_t>(m->len, 512));
  while (!text.empty() && text.back() == '\0') text.pop_back();
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return text;
}

Status RequireBootstrap(const KafkaConfig& config) {
  if (!config.brokers.empty()) return Status::OK();
  for (const auto& [k, v] : config.properties) {
    if ((k == "bootstrap.servers" || k == "metadata.broker.list") && !v.empty()) return Status::OK();
  }
  return Status::InvalidArgument("no Kafka address: pass --brokers HOST:PORT (start one with `kappa broker`)");
}

Result<KafkaHandle> CreateClient(ClientKind kind, const KafkaConfig& config,
                                 const std::vector<std::pair<std::string, std::string>>& defaults,
                                 void (*error_cb)(rd_kafka_s*, int, const char*, void*), void* opaque,
                                 const std::function<void(rd_kafka_conf_s*)>& configure) {
  KAPPA_RETURN_IF_ERROR(RequireBootstrap(config));
  auto conf = config.Build(defaults);
  if (!conf.ok()) return conf.status();
  if (error_cb) rd_kafka_conf_set_error_cb(*conf, error_cb);
  if (opaque) rd_kafka_conf_set_opaque(*conf, opaque);
  if (configure) configure(*conf);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(kind == ClientKind::kProducer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER,
                                *conf, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(*conf);
    return Status::InvalidArgument(std::string("cannot create Kafka client: ") + errstr);
  }
  return KafkaHandle(rk);
}

std::string ClientErrorNotes::Describe(const std::string& client, int code, const char* reason) {
  const auto err = static_cast<rd_kafka_resp_err_t>(code);
  const std::string why = std::string(reason ? reason : rd_kafka_err2str(err)) + " (" + rd_kafka_err2name(err) + ")";
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
      return "Kafka broker unreachable (" + client + "): " + why + FileLimitNote() + "; retrying";
    default:
      return "Kafka error (" + client + "): " + why + "; retrying";
  }
}

void ClientErrorNotes::OnError(int err, const char* reason) {
  if (!warn_ || err == RD_KAFKA_RESP_ERR__FATAL) return;
  std::string text = Describe(client_, err, reason);  // copied now: `reason` dies with the call
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto [it, first] = last_ms_.emplace(err, now);
    if (!first && now - it->second < interval_ms_) {
      ++suppressed_;
      return;
    }
    if (suppressed_ > 0) text += " (" + std::to_string(suppressed_) + " similar errors since the last warning)";
    it->second = now;
    suppressed_ = 0;
  }
  warn_(text);
}

std::string FileLimitNote() {
  // The connection needs a socket like any file: with none left, librdkafka
  // reports only that the broker is not reachable (a bug bash: `ulimit -n
  // 16` read as a broker down).
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    ::close(fd);
    return "";
  }
  return FileLimitHint(errno);
}

namespace {

// Whether `rk` may ask for one topic's metadata without the broker creating
// it: a consumer's allow.auto.create.topics is false unless set, a
// producer's true.
bool AsksWithoutCreating(rd_kafka_t* rk) {
  char value[16] = "";
  size_t size = sizeof(value);
  if (rd_kafka_conf_get(rd_kafka_conf(rk), "allow.auto.create.topics", value, &size) != RD_KAFKA_CONF_OK) {
    return false;
  }
  return std::string_view(value) == "false";
}

// The broker's answer for `topic` alone (Kafka leaves a topic the principal
// may not describe out of an all-topics answer, but answers
// TOPIC_AUTHORIZATION_FAILED for it alone), asked so that it never creates
// the topic: on `rk` if it may (AsksWithoutCreating), otherwise on a
// short-lived consumer with rk's settings (brokers, security) and
// allow.auto.create.topics=false. NO_ERROR if it exists after all.
rd_kafka_resp_err_t TopicAloneError(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  // The embedded broker (librdkafka's mock cluster) has no authorization,
  // and creates a topic asked for alone whatever the request says.
  if (IsEmbeddedBroker(rk).value_or(false)) return RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;  // id known from the all-topics answer
  rd_kafka_t* ask = rk;
  rd_kafka_t* own = nullptr;
  if (!AsksWithoutCreating(rk)) {
    rd_kafka_conf_t* conf = rd_kafka_conf_dup(rd_kafka_conf(rk));
    char err[256];
    // Nothing of rk's own callbacks: they serve rk's objects.
    rd_kafka_conf_set_error_cb(conf, nullptr);
    rd_kafka_conf_set_opaque(conf, nullptr);
    if (rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    own = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (own == nullptr) {
      rd_kafka_conf_destroy(conf);
      return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    ask = own;
  }
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(ask, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rkt ? rd_kafka_metadata(ask, 0, rkt, &md, timeout_ms) : RD_KAFKA_RESP_ERR__INVALID_ARG;
  if (!err) {
    err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    rd_kafka_metadata_destroy(md);
  }
  if (rkt) rd_kafka_topic_destroy(rkt);
  if (own) rd_kafka_destroy(own);
  return err;
}

// TopicPartitionCount; with ask_alone false, a topic missing from the
// all-topics answer is NotFound without asking for it alone (which may take
// a client of its own): for a wait on a topic just created.
Result<int32_t> PartitionCountOf(rd_kafka_s* rk, const std::string& topic, int timeout_ms, bool ask_alone) {
  const rd_kafka_metadata_t* md = nullptr;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(std::max(0, timeout_ms));
  auto left_ms = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };
  // all_topics=1 so that asking never auto-creates the topic. librdkafka
  // answers _TRANSPORT when no broker became usable within the time given,
  // before it sends anything: asked in slices while that lasts, a failed
  // authentication or TLS handshake ends the wait (librdkafka retries those
  // for ever, to the same end). Once a broker is up, the request has all the
  // time left.
  constexpr int kSliceMs = 500;
  constexpr int kSecurityGraceMs = 1500;  // another bootstrap broker may still connect
  rd_kafka_resp_err_t err;
  SecurityFailure security;
  for (;;) {
    const int left = left_ms();
    const auto asked = std::chrono::steady_clock::now();
    err = rd_kafka_metadata(rk, 1, nullptr, &md, std::min(left, kSliceMs));
    if (err != RD_KAFKA_RESP_ERR__TRANSPORT || left <= kSliceMs) break;
    // Ctrl-C on a mistyped --brokers waited out the whole timeout (a bug bash).
    if (ProcessStopToken().stop_requested()) {
      return Status::Unavailable("stopped while waiting for Kafka at " + BootstrapServers(rk) +
                                 " to answer (nothing was read or written)");
    }
    if (std::chrono::steady_clock::now() - asked < std::chrono::milliseconds(kSliceMs / 2)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // never a busy loop
    }
    security = LastSecurityFailure(rk);
    const bool final = security.kind == SecurityFailure::Kind::kAuthentication ||
                       security.kind == SecurityFailure::Kind::kTls;
    if (final && std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(kSecurityGraceMs)) break;
  }
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT && left_ms() > 0) {
    // A broker was up and the request sent, unanswered within a slice: ask
    // again with the rest of the time.
    err = rd_kafka_metadata(rk, 1, nullptr, &md, left_ms());
  }
  if (err) {
    const std::string servers = BootstrapServers(rk);
    security = LastSecurityFailure(rk);
    if (security.kind != SecurityFailure::Kind::kNone &&
        (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
         err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL)) {
      const char* what = security.kind == SecurityFailure::Kind::kAuthentication ? "authentication with Kafka at "
                         : security.kind == SecurityFailure::Kind::kTls          ? "the TLS handshake with Kafka at "
                                                                                  : "connecting to Kafka at ";
      const int code = security.kind == SecurityFailure::Kind::kAuthentication ? RD_KAFKA_RESP_ERR__AUTHENTICATION
                       : security.kind == SecurityFailure::Kind::kTls          ? RD_KAFKA_RESP_ERR__SSL
                                                                                : err;
      // Unavailable as before (exit 1), whatever the code says.
      return Status::Unavailable(std::string(what) + servers + " failed: " + security.reason + " (" +
                                 rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(code)) + "); " + security.advice);
    }
    const std::string files = FileLimitNote();
    return StatusFromKafka(err,
                           "cannot reach Kafka at " + std::string(servers) + " within " +
                               std::to_string(timeout_ms / 1000) + " s" + files,
                           files.empty() ? "is the broker running and --brokers right?"
                                         : "raise the open-files limit first");
  }
  // Connected: what failed before (a broker restarted with new settings) is past.
  ForgetKafkaClient(rk);
  int32_t count = -1;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic == md->topics[i].topic) {
      if (md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) count = md->topics[i].partition_cnt;
      break;
    }
  }
  rd_kafka_metadata_destroy(md);
  if (count < 0 && ask_alone &&
      TopicAloneError(rk, topic, timeout_ms) == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
    // Not "create it first": it may well exist, and creating it is not
    // what this principal lacks.
    return Status::PermissionDenied("topic '" + topic +
                                    "': not authorized (TOPIC_AUTHORIZATION_FAILED): the broker does not let "
                                    "this principal describe it (it may exist); grant it the ACLs it needs (Describe "
                                    "and Read to read it, Describe and Write to write it) or use other credentials "
                                    "(-X sasl.username=...)");
  }
  if (count < 0) {
    return Status::NotFound("topic '" + topic +
                            "' does not exist: create it first (embedded broker: `kappa broker "
                            "--topic " + topic + ":PARTITIONS`)");
  }
  return count;
}

}  // namespace

Result<int32_t> TopicPartitionCount(rd_kafka_s* rk, const std::string& topic, int timeout_ms) {
  return PartitionCountOf(rk, topic, timeout_ms, /*ask_alone=*/true);
}

std::vector<std::string> TopicNames(rd_kafka_s* rk, int timeout_ms) {
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 1, nullptr, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  std::vector<std::string> names;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) names.emplace_back(md->topics[i].topic);
  }
  rd_kafka_metadata_destroy(md);
  return names;
}

int64_t TopicCheckIntervalMs() {
  static const int64_t ms = [] {
    const char* env = std::getenv("KAPPA_TOPIC_CHECK_MS");
    return env ? std::max<int64_t>(100, std::atoll(env)) : int64_t{30000};
  }();
  return ms;
}

std::optional<bool> IsEmbeddedBroker(rd_kafka_s* rk, int timeout_ms) {
  char* cluster = rd_kafka_clusterid(rk, timeout_ms);
  if (cluster == nullptr) return std::nullopt;
  const bool mock = std::strncmp(cluster, "mockCluster", 11) == 0;
  rd_kafka_mem_free(rk, cluster);
  return mock;
}

Result<Watermarks> QueryWatermarks(rd_kafka_s* rk, const std::string& topic, int32_t partition,
                                   int timeout_ms) {
  Watermarks w;
  // A leader that moved, or a topic just created whose leaders the client
  // has not learnt yet, answers NOT_LEADER_FOR_PARTITION or
  // LEADER_NOT_AVAILABLE, which librdkafka hands back as is: asked again
  // within the time given, once the client's metadata is fresh. A scaled-out
  // job's first start stopped on its new changelog topic that way, 4 times
  // in 16 (a bug bash).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  rd_kafka_resp_err_t err;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &w.low, &w.high,
                                           static_cast<int>(std::max<int64_t>(100, left.count())));
    const bool leader_moving = err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                               err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    if (!leader_moving || std::chrono::steady_clock::now() + std::chrono::milliseconds(100) >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // An unknown partition of a topic the principal may not describe is no
  // missing one: promote said "not found: ... Unknown partition" for a
  // source it lacked Describe on (a bug bash).
  if ((err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) &&
      TopicAloneError(rk, topic, 5000) == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
    return Status::PermissionDenied("cannot read offsets of " + topic + "[" + std::to_string(partition) +
                                    "]: not authorized (TOPIC_AUTHORIZATION_FAILED): the principal needs Describe "
                                    "on topic " + topic + " (ACLs)");
  }
  KAPPA_RETURN_IF_ERROR(
      StatusFromKafka(err, "cannot read offsets of " + topic + "[" + std::to_string(partition) + "]"));
  return w;
}

Result<std::vector<Watermarks>> QueryAllWatermarks(rd_kafka_s* rk, const std::string& topic,
                                                   int32_t partitions, int timeout_ms) {
  std::vector<Watermarks> out;
  out.reserve(partitions);
  for (int32_t p = 0; p < partitions; ++p) {
    auto w = QueryWatermarks(rk, topic, p, timeout_ms);
    if (!w.ok()) return w.status();
    out.push_back(*w);
  }
  return out;
}

Result<std::vector<Watermarks>> QueryTopicWatermarks(rd_kafka_s* rk, const std::string& topic, int timeout_ms) {
  auto partitions = TopicPartitionCount(rk, topic, timeout_ms);
  if (!partitions.ok()) return partitions.status();
  return QueryAllWatermarks(rk, topic, *partitions, timeout_ms);
}

Result<KafkaHandle> CreateReadUncommittedClient(const KafkaConfig& config) {
  // Set after the user's properties: an isolation.level among them must not
  // turn this back into the last stable offset.
  return CreateClient(ClientKind::kConsumer, config, {}, nullptr, nullptr, [](rd_kafka_conf_t* conf) {
    char errstr[256];
    rd_kafka_conf_set(conf, "isolation.level", "read_uncommitted", errstr, sizeof(errstr));
  });
}

Result<std::vector<OpenPartition>> OpenPartitions(rd_kafka_s* uncommitted, const std::string& topic,
                                                  const std::vector<Watermarks>& stable, int timeout_ms) {
  const auto n = static_cast<int32_t>(stable.size());
  auto ends = QueryAllWatermarks(uncommitted, topic, n, timeout_ms);
  if (!ends.ok()) return ends.status().WithContext("reading the log ends of " + topic + ": ");
  std::vector<OpenPartition> open;
  for (int32_t p = 0; p < n; ++p) {
    if (stable[p].high < (*ends)[p].high) open.push_back(OpenPartition{p, stable[p].high, (*ends)[p].high});
  }
  return open;
}

Result<OpenPartition> FirstOpenPartition(rd_kafka_s* uncommitted, const std::string& topic,
                                         const std::vector<Watermarks>& stable, int timeout_ms) {
  auto open = OpenPartitions(uncommitted, topic, stable, timeout_ms);
  if (!open.ok()) return open.status();
  return open->empty() ? OpenPartition{} : open->front();
}

bool CloseConsumer(KafkaHandle& consumer, int timeout_ms, bool destroy, int destroy_timeout_ms) {
  rd_kafka_t* rk = consumer.get();
  if (!rk) return true;
  TeardownWait waiting;
  bool closed = false;
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  if (rd_kafka_error_t* e = rd_kafka_consumer_close_queue(rk, q)) {
    rd_kafka_error_destroy(e);
  } else {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!(closed = rd_kafka_consumer_closed(rk)) && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 100);
      if (ev == nullptr) continue;
      // A group member's close revokes its partitions through this queue:
      // unless they are let go here, the close never completes.
      if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
        rd_kafka_topic_partition_list_t* parts = rd_kafka_event_topic_partition_list(ev);
        const bool assign = rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        rd_kafka_error_t* e = nullptr;
        if (std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE") {
          e = assign ? rd_kafka_incremental_assign(rk, parts) : rd_kafka_incremental_unassign(rk, parts);
        } else {
          (void)rd_kafka_assign(rk, assign ? parts : nullptr);
        }
        if (e) rd_kafka_error_destroy(e);
      }
      rd_kafka_event_destroy(ev);
    }
  }
  rd_kafka_queue_destroy(q);
  consumer.release();
  if (!destroy) return true;
  // librdkafka 2.0.2 (Debian's) keeps a reference to a partition of a topic
  // deleted while it was assigned, so one of its broker threads never exits
  // and rd_kafka_destroy, which joins them, never returns: a bounded `kappa
  // run` whose input topic was deleted hung for good after its final
  // checkpoint, without printing how it ended (a bug bash). The destroy
  // runs on a thread of its own; once the bound passes it is left to run
  // (or hang) until the process exits, which takes its threads with it.
  const int flags = closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> destroyed = done->get_future();
  std::thread([rk, flags, done, name = std::string(rd_kafka_name(rk))] {
    rd_kafka_destroy_flags(rk, flags);
    {
      std::lock_guard<std::mutex> lock(g_security_mutex);
      SecurityRecords().erase(name);
    }
    done->set_value();
  }).detach();
  return destroyed.wait_for(std::chrono::milliseconds(std::max(0, destroy_timeout_ms))) == std::future_status::ready;
}

}  // namespace kappa

namespace kappa {

void AppendMessageHeaders(const rd_kafka_message_s* message, std::vector<std::pair<std::string, std::string>>* out,
                          std::vector<bool>* nulls) {
  rd_kafka_headers_t* headers = nullptr;
  // const_cast: librdkafka parses (and caches) the headers on first access.
  if (rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(message), &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return;
  }
  const char* name;
  const void* value;
  size_t size;
  for (size_t h = 0; !rd_kafka_header_get_all(headers, h, &name, &value, &size); ++h) {
    out->emplace_back(name, value ? std::string(static_cast<const char*>(value), size) : std::string());
    if (nulls) nulls->push_back(value == nullptr);
  }
}

Result<std::string> TopicConfigValue(rd_kafka_s* rk, const std::string& topic, const std::string& name,
                                     int timeout_ms) {
  // Waited for: a fresh client knows no cluster id yet, and the embedded
  // broker never answers DescribeConfigs (the whole timeout, then
  // Unavailable: every kappa deploy on it took 15 s longer).
  if (IsEmbeddedBroker(rk, timeout_ms).value_or(false)) {
    return Status::Unavailable("the embedded broker has no DescribeConfigs");
  }
  char errstr[512];
  rd_kafka_ConfigResource_t* resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
  rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof errstr);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_DescribeConfigs(rk, &resource, 1, options, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, timeout_ms + 5000);
  Result<std::string> value = Status::Unavailable("no answer to DescribeConfigs for " + topic + " within " +
                                                  std::to_string(timeout_ms / 1000) + " s");
  if (event && rd_kafka_event_error(event)) {
    value = StatusFromKafka(rd_kafka_event_error(event), "cannot describe topic " + topic);
  } else if (event) {
    size_t n = 0;
    const rd_kafka_ConfigResource_t** resources =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event), &n);
    if (n != 1) {
      value = Status::Unavailable("DescribeConfigs for " + topic + " answered " + std::to_string(n) + " resources");
    } else if (rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(resources[0])) {
      value = StatusFromKafka(err, "cannot describe topic " + topic);
    } else {
      value = Status::NotFound("topic " + topic + " has no config " + name);
      size_t count = 0;
      const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(resources[0], &count);
      for (size_t k = 0; k < count; ++k) {
        const char* entry = rd_kafka_ConfigEntry_name(entries[k]);
        if (entry == nullptr || name != entry) continue;
        const char* text = rd_kafka_ConfigEntry_value(entries[k]);
        value = std::string(text ? text : "");
        break;
      }
    }
  }
  if (event) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_ConfigResource_destroy(resource);
  return value;
}

Result<TopicCreation> CreateTopicIfMissing(rd_kafka_t* rk, const std::string& topic, int32_t partitions,
                                           const std::map<std::string, std::string>& configs, int timeout_ms,
                                           std::string* reason) {
  auto count = TopicPartitionCount(rk, topic, timeout_ms);  // never auto-creates it
  if (count.ok()) return TopicCreation::kExisted;
  if (count.status().code() != Status::Code::kNotFound) return count.status();
  // The embedded broker (librdkafka's mock cluster, cluster id
  // "mockCluster...") has no CreateTopics: the request would wait for a
  // controller until it times out. Its topics are created on first use.
  if (IsEmbeddedBroker(rk).value_or(false)) {  // id known from the metadata answer above
    if (reason) *reason = "the embedded broker has no CreateTopics";
    return TopicCreation::kRefused;
  }
  char errstr[512];
  rd_kafka_NewTopic_t* request = rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, errstr, sizeof errstr);
  if (!request) return Status::InvalidArgument("cannot create topic " + topic + ": " + errstr);
  for (const auto& [name, value] : configs) {
    if (rd_kafka_resp_err_t err = rd_kafka_NewTopic_set_config(request, name.c_str(), value.c_str())) {
      rd_kafka_NewTopic_destroy(request);
      return StatusFromKafka(err, "cannot create topic " + topic + " with " + name + "=" + value);
    }
  }
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof errstr);
  rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, errstr, sizeof errstr);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &request, 1, options, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, timeout_ms + 5000);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
  std::string text = "no answer within " + std::to_string(timeout_ms / 1000) + " s";
  if (event && rd_kafka_event_error(event)) {
    err = rd_kafka_event_error(event);
    text = rd_kafka_event_error_string(event);
  } else if (event) {
    size_t n = 0;
    const rd_kafka_topic_result_t** results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &n);
    err = n == 1 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR__BAD_MSG;
    const char* s = n == 1 ? rd_kafka_topic_result_error_string(results[0]) : nullptr;
    text = s ? s : rd_kafka_err2str(err);
  }
  if (event) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_NewTopic_destroy(request);
  switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: {
      // The controller has it; the broker this client asks for metadata
      // may learn of it a moment later (several instances creating one
      // changelog at once met exactly that): wait until it answers too,
      // without a client of its own per look (the topic is there).
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
      while (PartitionCountOf(rk, topic, timeout_ms, /*ask_alone=*/false).status().code() ==
                 Status::Code::kNotFound &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      return err == RD_KAFKA_RESP_ERR_NO_ERROR ? TopicCreation::kCreated : TopicCreation::kExisted;
    }
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
      if (reason) *reason = std::string(rd_kafka_err2name(err)) + ": " + text;
      return TopicCreation::kRefused;
    default:
      return StatusFromKafka(err, "cannot create topic " + topic + " (" + text + ")");
  }
}

}  // namespace kappa
