// The one FlatBuffers encoding of a task's checkpoint (schemas/checkpoint.fbs,
// TaskCheckpoint), shared by the state backend's meta records and the
// changelog's markers (engine/changelog.h).
#pragma once

#include <flatbuffers/flatbuffers.h>

#include "schemas/checkpoint_generated.h"
#include "state/state_backend.h"

namespace kappa {

inline flatbuffers::Offset<schema::TaskCheckpoint> BuildTaskCheckpoint(flatbuffers::FlatBufferBuilder& fbb,
                                                                       const TaskCheckpointData& t, int64_t epoch) {
  return schema::CreateTaskCheckpoint(fbb, t.partition, t.next_offset, t.max_event_time_ms, epoch, t.counters.in,
                                      t.counters.out, t.counters.deduped, t.counters.filtered, t.counters.late,
                                      t.counters.dlq, t.counters.outputs, t.start_offset, t.last_offset,
                                      t.last_fingerprint);
}

inline TaskCheckpointData TaskCheckpointFrom(const schema::TaskCheckpoint& t) {
  TaskCheckpointData d;
  d.partition = t.partition();
  d.next_offset = t.next_offset();
  d.max_event_time_ms = t.max_event_time_ms();
  d.counters.in = t.records_in();
  d.counters.out = t.records_out();
  d.counters.deduped = t.deduped();
  d.counters.filtered = t.filtered();
  d.counters.late = t.late();
  d.counters.dlq = t.dlq();
  d.counters.outputs = t.outputs();
  d.start_offset = t.start_offset();
  d.last_offset = t.last_offset();
  d.last_fingerprint = t.last_fingerprint();
  return d;
}

}  // namespace kappa
