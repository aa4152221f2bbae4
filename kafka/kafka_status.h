// One translation of librdkafka error codes into kappa's Status, so every
// layer names a Kafka failure the same way: what was being done, the code's
// name and librdkafka's human string.
#pragma once

#include <string>

#include "base/status.h"

struct rd_kafka_error_s;

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

// True for errors librdkafka retries by itself or that pass (a broker
// restarting, a leader moving): worth a warning and another try, not a stop.
bool IsTransientKafkaError(int err);

}  // namespace kappa
