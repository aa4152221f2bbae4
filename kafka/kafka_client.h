// Thin RAII and lookup helpers over librdkafka's C API, shared by the
// commands: create a producer/consumer from a KafkaConfig, read a topic's
// partition count and watermarks with a deadline, and turn every failure into
// one Status line that names the broker and the topic. Handles are
// thread-safe as librdkafka's are.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "kafka/kafka_config.h"

struct rd_kafka_s;
struct rd_kafka_conf_s;
struct rd_kafka_message_s;

namespace kappa {

struct KafkaHandleDeleter {
  void operator()(rd_kafka_s* rk) const;
};
using KafkaHandle = std::unique_ptr<rd_kafka_s, KafkaHandleDeleter>;

enum class ClientKind { kProducer, kConsumer };

// InvalidArgument unless --brokers or -X bootstrap.servers gives an address.
Status RequireBootstrap(const KafkaConfig& config);

// Creates a client. `defaults` are applied before the user's -X properties.
// `error_cb` (with `opaque`), if given, receives librdkafka's client errors
// (a broker unreachable, all brokers down...), served by rd_kafka_poll.
Result<KafkaHandle> CreateClient(ClientKind kind, const KafkaConfig& config,
                                 const std::vector<std::pair<std::string, std::string>>& defaults,
                                 void (*error_cb)(rd_kafka_s*, int, const char*, void*) = nullptr,
                                 void* opaque = nullptr,
                                 const std::function<void(rd_kafka_conf_s*)>& configure = nullptr);

// Turns librdkafka's non-fatal client errors (its error callback: a broker
// refusing connections, all brokers down, a name that does not resolve)
// into one-line warnings for a human: the first of each kind at once, then
// at most one per `interval_ms` (librdkafka repeats them at every reconnect
// attempt). Thread-safe; `warn` is called with no lock of the caller held.
class ClientErrorNotes {
 public:
  ClientErrorNotes(std::string client, std::function<void(const std::string&)> warn, int interval_ms = 10000)
      : client_(std::move(client)), warn_(std::move(warn)), interval_ms_(interval_ms) {}
  // `reason` is librdkafka's text, valid during the call only.
  void OnError(int err, const char* reason);
  // A warning's text, e.g. "Kafka broker unreachable (sink producer): ...".
  static std::string Describe(const std::string& client, int err, const char* reason);

 private:
  std::string client_;
  std::function<void(const std::string&)> warn_;
  int interval_ms_;
  std::mutex mutex_;
  std::map<int, int64_t> last_ms_;  // by error code: when it was last reported
  int64_t suppressed_ = 0;
};

// Why a client could not set up a connection, when the reason lies in its
// security settings rather than in the address: SASL authentication failed
// (a wrong password, a mechanism the broker does not enable), the TLS
// handshake failed (a CA that does not verify the broker, TLS against a
// plaintext listener), or security.protocol does not match the listener
// (plaintext against a TLS one). librdkafka reports these only to its error
// callback, which rd_kafka_poll serves (nobody polls while a metadata
// request waits), and to its log (level 3, "FAIL", below KAPPA_KAFKA_LOG's
// default): every client made by KafkaConfig::Build logs through kappa,
// which keeps the last such reason per client here.
struct SecurityFailure {
  enum class Kind { kNone, kAuthentication, kTls, kProtocol };
  Kind kind = Kind::kNone;
  std::string reason;  // librdkafka's text, e.g. "SASL authentication error: ..."
  std::string advice;  // which settings to check
};
SecurityFailure LastSecurityFailure(const rd_kafka_s* rk);
// Called with each line librdkafka logs (kafka_config.cc's log callback),
// from any thread: records a security failure of `rk`.
void NoteKafkaLog(const rd_kafka_s* rk, int level, const char* facility, const char* message);
// Forgets what was recorded for `rk`, once it is destroyed.
void ForgetKafkaClient(const rd_kafka_s* rk);

// Partition count of `topic`. NotFound if the topic does not exist (without
// creating it), Unavailable if no broker answers within timeout_ms. When
// the client cannot connect for a security reason (LastSecurityFailure) the
// message says so and what to check instead of --brokers; a failed SASL
// authentication or TLS handshake (which librdkafka's retries will not
// mend) ends the wait early, within a few seconds.
Result<int32_t> TopicPartitionCount(rd_kafka_s* rk, const std::string& topic, int timeout_ms);
// The names of the cluster's topics (without creating any); empty if they
// cannot be listed within timeout_ms.
std::vector<std::string> TopicNames(rd_kafka_s* rk, int timeout_ms);
// How often a long-running reader (a job, the archiver) asks whether its
// topics have grown: KAPPA_TOPIC_CHECK_MS (at least 100), 30 s by default.
int64_t TopicCheckIntervalMs();
// Whether `rk` talks to the embedded broker (librdkafka's mock cluster,
// cluster id "mockCluster..."), which lacks some admin requests; nullopt
// until the client has the cluster id (from any metadata answer), waited
// for up to timeout_ms.
std::optional<bool> IsEmbeddedBroker(rd_kafka_s* rk, int timeout_ms = 0);
// " (this process cannot open another file: ... ulimit -n N; raise it)" when
// a socket cannot be opened for want of file descriptors, else "": what a
// broker that cannot be reached may really mean.
std::string FileLimitNote();

struct Watermarks {
  int64_t low = 0;   // log start offset
  int64_t high = 0;  // log end offset (next offset to be written)
};
Result<Watermarks> QueryWatermarks(rd_kafka_s* rk, const std::string& topic, int32_t partition,
                                   int timeout_ms);
Result<std::vector<Watermarks>> QueryAllWatermarks(rd_kafka_s* rk, const std::string& topic,
                                                   int32_t partitions, int timeout_ms);
// Every partition's watermarks of `topic`, its partition count asked first
// (NotFound if the topic does not exist; never creates it).
Result<std::vector<Watermarks>> QueryTopicWatermarks(rd_kafka_s* rk, const std::string& topic, int timeout_ms);
// The queries above answer with the client's isolation level: for a
// read_committed client (librdkafka's default) `high` is the last stable
// offset, which stops before the first record of a transaction still open
// (and, for a moment after its producer committed, before a committed one
// whose markers the broker has not written yet). Asked through this
// client, `high` is the log end itself: a consumer that reads
// read_uncommitted whatever the user's properties say.
Result<KafkaHandle> CreateReadUncommittedClient(const KafkaConfig& config);

// A partition whose last stable offset is short of its log end: a
// transaction is open on it, or its producer has committed and the broker
// has not yet written the commit markers (Kafka answers the commit first).
struct OpenPartition {
  int32_t partition = -1;  // -1: every partition has settled
  int64_t last_stable = 0;
  int64_t log_end = 0;
};
// Compares `stable` (one entry per partition of `topic`, as a
// read_committed client reads them) with the log ends read through
// `uncommitted` (CreateReadUncommittedClient) and returns every partition
// that has not settled, in partition order; FirstOpenPartition the first
// (partition -1 when none).
Result<std::vector<OpenPartition>> OpenPartitions(rd_kafka_s* uncommitted, const std::string& topic,
                                                  const std::vector<Watermarks>& stable, int timeout_ms);
Result<OpenPartition> FirstOpenPartition(rd_kafka_s* uncommitted, const std::string& topic,
                                         const std::vector<Watermarks>& stable, int timeout_ms);

std::string BrokersOf(const KafkaConfig& config);

// Appends a message's headers (name, value; in the record's order, a null
// value as empty) to *out, and to *nulls (if given) whether each value was
// null.
void AppendMessageHeaders(const rd_kafka_message_s* message, std::vector<std::pair<std::string, std::string>>* out,
                          std::vector<bool>* nulls = nullptr);

// A topic config's value as the broker describes it (DescribeConfigs):
// "compact,delete" for cleanup.policy. NotFound when the broker lists no
// such config, Unavailable when it cannot answer (the embedded broker has
// no DescribeConfigs), an error otherwise.
Result<std::string> TopicConfigValue(rd_kafka_s* rk, const std::string& topic, const std::string& name,
                                     int timeout_ms);

// Creates `topic` with the admin API (CreateTopics: `partitions`, the
// broker's default replication, `configs` as topic configs) unless it
// exists. kRefused: this client may not create topics there (authorization
// or a create policy) or the broker has no CreateTopics (the embedded
// broker); *reason then says which. Other failures are errors.
enum class TopicCreation { kCreated, kExisted, kRefused };
Result<TopicCreation> CreateTopicIfMissing(rd_kafka_s* rk, const std::string& topic, int32_t partitions,
                                           const std::map<std::string, std::string>& configs, int timeout_ms,
                                           std::string* reason);

// The text of an error message's error: its payload, taken with its length
// (never read as a NUL-terminated string: a delivery report's payload is the
// record itself), with unprintable bytes as '?'; librdkafka's text for the
// code if there is none. Empty if the message is not an error.
std::string MessageErrorText(const rd_kafka_message_s* message);

// Closes a consumer, waiting at most timeout_ms for librdkafka's close (which
// can wait forever for a broker that is gone, e.g. for an in-flight offset
// commit); after that the handle is destroyed without a consumer close.
// `destroy` false: closed (a group member leaves its group) but not
// destroyed, its memory and threads left to the process's exit (see
// PartitionConsumer's destructor for when). The destroy itself is waited
// for at most destroy_timeout_ms: librdkafka 2.0.2 can wait in it forever
// (see kafka_client.cc); past that it goes on, on a thread of its own, and is
// left to the process's exit, and CloseConsumer returns false. Leaves
// `consumer` empty.
constexpr int kConsumerDestroyTimeoutMs = 5000;
bool CloseConsumer(KafkaHandle& consumer, int timeout_ms, bool destroy = true,
                   int destroy_timeout_ms = kConsumerDestroyTimeoutMs);

// Whether a thread of this process is waiting right now for librdkafka to
// tear a client down (rd_kafka_destroy, or a consumer's close): the stop
// watchdog (cli/command.cc) names that, not a broker, as what it waited for.
bool KafkaTeardownInProgress();

}  // namespace kappa
