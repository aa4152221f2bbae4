// The declared fields of a record schema as a tree of their dotted paths,
// which the decoders of nested formats (JSON, Avro) walk beside a record's
// objects: one node per path segment, a leaf holding its slot. The
// kafka.key and kafka.timestamp paths name the record's Kafka key and
// timestamp, not a field of its value: their slots are kept apart.
#pragma once

#include <string>
#include <vector>

#include "formats/record_view.h"

namespace kappa {

struct FieldPathNode {
  std::string key;      // this segment: "address"
  std::string prefix;   // the path up to and including key: "user.address"
  int slot = -1;        // a declared field's slot (a leaf), or -1
  int first_slot = -1;  // the first declared field at or under this node (for error messages)
  std::vector<FieldPathNode> children;
};

struct FieldPaths {
  FieldPathNode root;
  std::vector<int> kafka_key_slots;
  std::vector<int> kafka_ts_slots;

  // Sets the kafka.key slots to the record's key (left absent when the key
  // is null) and the kafka.timestamp slots to its timestamp.
  void FillKafkaFields(const RawRecord& r, FieldValue* out) const {
    for (int slot : kafka_key_slots) {
      if (r.key == nullptr) continue;
      out[slot].str = reinterpret_cast<const char*>(r.key);
      out[slot].len = r.key_size;
      out[slot].present = true;
    }
    for (int slot : kafka_ts_slots) {
      out[slot].i = r.timestamp_ms;
      out[slot].present = true;
    }
  }
};

// The tree of `schema`'s paths. The schema has passed ValidateRecordSchema:
// no declared field is on or under another's path.
FieldPaths BuildFieldPaths(const RecordSchema& schema);

}  // namespace kappa
