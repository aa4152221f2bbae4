// Rolling per-event windows (`window: {type: rolling, size: 7d, key: user_id,
// features: {...}}`): for EVERY accepted input record one row, the features
// over the records of its key whose event time is in (t - size, t], t being
// that record's event time: the point-in-time feature (e.g. the 7-day
// transaction count as of each labelled event).
//
// Semantics (README.md, "Rolling windows"):
// - A record is accepted iff t >= its watermark (InputRecord::watermark_ms,
//   max event time so far minus the allowed lateness), as a window accepts a
//   record at exactly the watermark; otherwise it goes to EmitLate and counts
//   `late`.
// - The row of record r aggregates the records of r's key already accepted by
//   this task at or before r (offset order, r included) with event time in
//   (t_r - size, t_r]. An out-of-order record gets the features of what
//   arrived before it in its range, and counts in the rows of later records
//   whose range covers it; rows already emitted are never revised. So rows are
//   a function of the partition's records in offset order: deterministic under
//   replay and restore.
// - Feature semantics are the window's (operators/features.h): first / last
//   are the values of the record with the smallest / largest (event time,
//   offset); int64 sums wrap; double sums add in (event time, offset) order;
//   count_distinct is exact.
// - Row columns: key, event_time, then the features in spec order; output key
//   "<key>|<partition>|<offset>", lineage {partition, offset, offset}. Counts
//   `out` and `outputs` per row.
//
// State: the durable truth is each key's live events in blocks: KeyedState
// entries keyed "<key><block sequence number 8B BE>", each holding up to
// kRollingBlockEvents events (time, offset, one int64 cell per distinct
// input field of the features (a double's bits) and its count_distinct
// values of at most 8 bytes (numbers, short text)) in arrival order, with a
// mask of the slots still live. A record appends to its key's last block (a
// new block every kRollingBlockEvents records); an evicted event's slot is
// marked, and a block is erased when none of its events is live. So a
// record costs an update of an entry its key's previous record touched, not
// an insert and an erase in a table of every live event. The blocks are a
// multiset of each key's live events: a restore sorts them. A longer
// count_distinct value is an entry of a second table
// "<state_name>_distinct" keyed "<offset 8B BE><feature 1B><value>" (an
// offset names one event of the task), erased when its event is evicted.
// In memory (rebuilt from the tables on the first Process / OnBatchEnd after
// a restore): per key a deque of its events in (time, offset) order and
// running totals (count, wrapping int sums, per count_distinct feature a
// map of the task's interned values (one node per distinct value of
// the task, not per key) -> count: the first few inline, then a flat map) and per min / max feature its candidates: the
// events whose value beats every later event's (a monotonic queue, in
// (time, offset) order; a function of the events, so a restore rebuilds it
// exactly). A record's row is the totals minus the two small slivers outside
// its range (events at or before t - size at the front, after t at the back;
// both bounded by the allowed lateness), so a record costs O(sliver), not
// O(range); min / max of an in-order record (no event after t: the range is
// a suffix) is the first candidate in the range, O(1) amortised; of an
// out-of-order record a scan of its range. Double sums / avg sum the range in
// deque order, so a restored run's bytes equal an uninterrupted run's.
//
// Eviction: an event with time <= watermark - size is in no future range
// (every future accepted record has t >= watermark); a key's such events are
// dropped on its next record, and every key's in OnBatchEnd once the
// watermark moved by size / 16 since the last sweep, so state holds about
// the events of the last size + allowed lateness. One task, one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "operators/operator_interface.h"
#include "operators/window_aggregate.h"

namespace kappa {

// Events per state entry (block) of a rolling window.
inline constexpr uint32_t kRollingBlockEvents = 8;

// `spec.kind` must be kRolling and spec must have passed
// WindowAggregate::Validate. Registers `state_name` and, with count_distinct,
// `state_name + "_distinct"`.
std::unique_ptr<Operator> MakeRollingWindow(const WindowSpec& spec, const std::string& state_name,
                                            StateRegistry& registry);

}  // namespace kappa
