// An independent, deliberately naive model of the user-spend job semantics
// (dedup by txn_id with an event-time TTL, drop cancelled, keyed tumbling
// window with allowed lateness), written from the README's rules rather than
// from the operators' code. Tests compare kappa's outputs with it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/hash.h"
#include "workload/transaction_generator.h"
#include "schemas/transaction_generated.h"

namespace kappa::testing {

struct ExpectedWindow {
  int64_t count = 0, sum = 0, min = INT64_MAX, max = INT64_MIN;
  int64_t first_offset = INT64_MAX, last_offset = -1;
};

struct ModelResult {
  std::map<std::string, ExpectedWindow> windows;  // "<user>|<window_end>" -> aggregate
  int64_t in = 0, out = 0, deduped = 0, filtered = 0, late = 0, dlq = 0;
};

struct ModelSpec {
  int64_t dedup_ttl_ms = 3600 * 1000;
  bool drop_cancelled = true;
  int64_t window_ms = 3600 * 1000;
  int64_t lateness_ms = 0;
  bool end_of_input = false;  // the run ends with the final watermark: every window is emitted
};

// Runs the model over the records of several generator runs produced one
// after the other to the same topic, partitioned as kappa gen does.
inline ModelResult RunModel(const std::vector<GeneratorOptions>& batches, int32_t partitions, const ModelSpec& spec) {
  std::vector<std::vector<GeneratedRecord>> by_partition(partitions);
  for (const auto& options : batches) {
    TransactionGenerator gen(options);
    GeneratedRecord r;
    while (gen.Next(&r)) by_partition[PartitionForKey(r.key, partitions)].push_back(r);
  }

  ModelResult result;
  for (int32_t p = 0; p < partitions; ++p) {
    int64_t max_time = INT64_MIN;
    std::map<std::string, int64_t> seen;  // txn_id -> first seen event time
    std::map<std::string, ExpectedWindow> open;
    const auto& records = by_partition[p];
    for (int64_t offset = 0; offset < static_cast<int64_t>(records.size()); ++offset) {
      const auto& rec = records[offset];
      ++result.in;
      if (rec.kind != RecordKind::kValid && rec.kind != RecordKind::kDuplicate) {
        ++result.dlq;
        continue;
      }
      max_time = std::max(max_time, rec.event_time_ms);
      const int64_t watermark = max_time - spec.lateness_ms;
      auto it = seen.find(rec.txn_id);
      if (it != seen.end() && watermark <= it->second + spec.dedup_ttl_ms) {
        ++result.deduped;
        continue;
      }
      seen[rec.txn_id] = rec.event_time_ms;
      if (spec.drop_cancelled && rec.status == static_cast<int8_t>(schema::TxnStatus::Cancelled)) {
        ++result.filtered;
        continue;
      }
      const int64_t start = rec.event_time_ms - (((rec.event_time_ms % spec.window_ms) + spec.window_ms) % spec.window_ms);
      const int64_t end = start + spec.window_ms;
      if (end <= watermark) {
        ++result.late;
        continue;
      }
      ++result.out;
      auto& w = open[rec.user_id + "|" + std::to_string(end)];
      ++w.count;
      w.sum += rec.amount_cents;
      w.min = std::min(w.min, rec.amount_cents);
      w.max = std::max(w.max, rec.amount_cents);
      w.first_offset = std::min(w.first_offset, offset);
      w.last_offset = std::max(w.last_offset, offset);
    }
    // Emitted: the windows whose end the final watermark has reached.
    const int64_t final_watermark = max_time == INT64_MIN ? INT64_MIN : max_time - spec.lateness_ms;
    for (auto& [key, w] : open) {
      const int64_t end = std::stoll(key.substr(key.rfind('|') + 1));
      if (spec.end_of_input || end <= final_watermark) result.windows[key] = w;
    }
  }
  return result;
}

inline ModelResult RunModel(const GeneratorOptions& options, int32_t partitions, const ModelSpec& spec) {
  return RunModel(std::vector<GeneratorOptions>{options}, partitions, spec);
}

}  // namespace kappa::testing
