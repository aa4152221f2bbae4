// One translation of librdkafka error codes into kappa's Status, so every
// layer names a Kafka failure the same way: what was being done, the code's
// name and librdkafka's human string.
#pragma once

#include <string>

#include "base/status.h"

struct rd_kafka_error_s;
struct rd_kafka_s;

namespace kappa {

// OK for RD_KAFKA_RESP_ERR_NO_ERROR (0). Otherwise a Status whose code
// follows the kind of error (Unavailable for transport, timeouts and
// coordinator moves; NotFound for unknown topics or partitions; DataLoss for
// an offset out of range; InvalidArgument for bad configuration; Aborted for
// fencing; IOError otherwise) and whose message is
// "<what>: <ERR_NAME>: <err2str>", followed by "; <hint>" if a hint is given
// (what the user can do about it). `err` is an rd_kafka_resp_err_t.
Status StatusFromKafka(int err, const std::string& what, const std::string& hint = std::string());

// The same for an rd_kafka_error_t (transactions, admin calls): the code
// maps as above, the message carries rd_kafka_error_string() (often more
// specific than err2str). OK for nullptr. Does not destroy `error`.
Status StatusFromKafkaError(const rd_kafka_error_s* error, const std::string& what,
                            const std::string& hint = std::string());

// For a call on `rk` that failed with `err`: when err is _FATAL (or 0 with
// a fatal error raised on rk, e.g. from the error callback), librdkafka's
// "Local: Fatal error" says nothing, so the message carries the fatal
// error's own code and text (rd_kafka_fatal_error): "<what>: <CAUSE_NAME>:
// <cause text> (fatal)", with what to do for an authorization failure
// (AuthorizationHint, naming `topic` if given); its Status code is the cause's (a fenced producer
// is Aborted). OK for err 0 without a fatal error. Any other err:
// StatusFromKafka(err, what) with the same authorization hint (a write
// refused for a topic not made yet named only the Write the principal had).
Status StatusFromKafkaFatal(rd_kafka_s* rk, int err, const std::string& what, const std::string& topic = std::string());

// What the principal needs when Kafka refused it `err` (the *_AUTHORIZATION_FAILED
// codes): "" for any other code. `topic` names the topic, if known.
std::string AuthorizationHint(int err, const std::string& topic = std::string());

// A read refused for authorization, as PermissionDenied naming the ACL:
// TOPIC_AUTHORIZATION_FAILED is "<what>: not authorized to read it
// (<cause>): the principal needs Read and Describe on topic <topic>
// (ACLs)", GROUP_AUTHORIZATION_FAILED "<what>: not authorized to use
// consumer group <group> (<cause>): the principal needs Read on group
// <group> (ACLs)". OK for any other err (the caller says what it is).
Status ReadRefused(int err, const std::string& what, const std::string& cause, const std::string& topic,
                   const std::string& group);

// True for errors librdkafka retries by itself or that pass (a broker
// restarting, a leader moving): worth a warning and another try, not a stop.
bool IsTransientKafkaError(int err);

}  // namespace kappa
