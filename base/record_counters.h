// Counters for every path an input record can take through a task. They are
// checkpointed with the task's offset, so after any crash the identity
//   in == out + deduped + filtered + late + dlq
// holds exactly for the records the checkpoint covers.
#pragma once

#include <cstdint>

namespace kappa {

struct RecordCounters {
  int64_t in = 0;        // records read from the source
  int64_t out = 0;       // records that reached the end of the chain (aggregated or emitted)
  int64_t deduped = 0;   // dropped as a repeat of an earlier record
  int64_t filtered = 0;  // dropped by a filter predicate
  int64_t late = 0;      // sent to the late-record topic
  int64_t dlq = 0;       // sent to the dead-letter topic
  int64_t outputs = 0;   // rows written to the sink (window results, pass-through rows)

  void Add(const RecordCounters& o) {
    in += o.in; out += o.out; deduped += o.deduped; filtered += o.filtered;
    late += o.late; dlq += o.dlq; outputs += o.outputs;
  }
  bool Balanced() const { return in == out + deduped + filtered + late + dlq; }
  // A repartitioned job's counters: this (the first stage's: read and
  // dropped before the repartition) with the second stage's (what it
  // dropped, aggregated and wrote); the second stage's input is the first's
  // `out`, not counted again.
  RecordCounters WithSecondStage(const RecordCounters& second) const {
    RecordCounters c = *this;
    c.out = second.out;
    c.outputs = second.outputs;
    c.deduped += second.deduped;
    c.filtered += second.filtered;
    c.late += second.late;
    c.dlq += second.dlq;
    return c;
  }
};

}  // namespace kappa
