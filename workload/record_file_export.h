// `kappa gen --to-archive`: writes a workload to a record file
// (archive/record_file.h) instead of a topic, as the producer would have
// placed it: each record in partition PartitionForKey(key, partitions), at
// offsets 0, 1, ... per partition, with its event time as the timestamp.
// Both generators go through the same writer. Blocking.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "workload/event_producer.h"
#include "workload/nexmark_generator.h"
#include "workload/transaction_generator.h"

namespace kappa {

// The transaction workload (malformed records carry the start time as
// their timestamp), its values in `encoding`'s format. Fills `stats`,
// `encoding`, `partitions`, `bytes` (key + value) and `seconds`; `progress`
// is called every million records.
Result<ProduceSummary> WriteEventsToFile(const std::string& path, const GeneratorOptions& options,
                                         int32_t partitions, const ProgressFn& progress = {},
                                         const EncodingOptions& encoding = {});

// The Nexmark workload (timestamps are the events' date_time). Fills
// `nexmark` instead of `stats`.
Result<ProduceSummary> WriteNexmarkToFile(const std::string& path, const NexmarkOptions& options,
                                          int32_t partitions, const ProgressFn& progress = {});

}  // namespace kappa
