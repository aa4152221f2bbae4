// TransactionGenerator: the deterministic fintech workload behind kappa gen.
// It yields FlatBuffers Transaction records keyed by user_id, with
// Zipf-skewed user activity, out-of-order event times, duplicate sends of the
// same txn_id (a retrying producer) and malformed payloads (garbage bytes,
// truncated buffers, missing required fields). Same options and seed, same
// records, byte for byte, on every machine: all randomness comes from
// kappa::Random. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "base/random.h"

namespace kappa {

struct GeneratorOptions {
  uint64_t count = 100000;            // records in total (valid + duplicate + malformed)
  uint64_t users = 1000;
  uint64_t seed = 1;
  double events_per_second = 100.0;   // of event time
  double out_of_order_fraction = 0.0; // of new transactions: event time moved back
  int64_t max_delay_ms = 60000;       // how far back an out-of-order event goes
  double duplicate_fraction = 0.0;    // of all records: a resend of a recent txn
  double malformed_fraction = 0.0;    // of all records
  double zipf_exponent = 1.1;
  int64_t start_time_ms = 1767225600000;  // 2026-01-01T00:00:00Z
};

enum class RecordKind { kValid, kDuplicate, kGarbage, kTruncated, kMissingField };
const char* RecordKindName(RecordKind kind);

struct GeneratedRecord {
  RecordKind kind = RecordKind::kValid;
  bool out_of_order = false;  // a valid record whose event time was moved back
  std::string key;            // user_id (also for malformed records)
  std::string value;          // the payload bytes
  // The transaction's fields (valid and duplicate records only).
  std::string txn_id;
  std::string user_id;
  int8_t status = 0;  // kappa::schema::TxnStatus
  int64_t amount_cents = 0;
  std::string currency;
  int64_t event_time_ms = 0;
};

// The Kafka timestamp `kappa gen` gives a record, on a broker and in a
// record file alike: its event time; a malformed record, which has none,
// --start-time-ms. (On a broker malformed records took the producer's
// clock, so one seed wrote other timestamps there than in a record file.)
inline int64_t GeneratedTimestampMs(const GeneratedRecord& record, int64_t start_time_ms) {
  return record.kind == RecordKind::kValid || record.kind == RecordKind::kDuplicate ? record.event_time_ms
                                                                                  : start_time_ms;
}

struct GeneratorStats {
  uint64_t total = 0, valid = 0, out_of_order = 0, duplicates = 0;
  uint64_t garbage = 0, truncated = 0, missing_field = 0;
  uint64_t malformed() const { return garbage + truncated + missing_field; }
};

class TransactionGenerator {
 public:
  explicit TransactionGenerator(const GeneratorOptions& options);
  // Fills *out with the next record; false once `count` records were made.
  bool Next(GeneratedRecord* out);
  const GeneratorStats& stats() const { return stats_; }
  const GeneratorOptions& options() const { return options_; }

 private:
  void MakeValid(GeneratedRecord* out);
  void MakeMalformed(GeneratedRecord* out);
  std::string UserId(uint64_t rank) const;

  GeneratorOptions options_;
  Random random_;
  ZipfSampler zipf_;
  GeneratorStats stats_;
  uint64_t next_txn_ = 0;
  std::deque<GeneratedRecord> recent_;  // candidates for duplicate sends
};

}  // namespace kappa
