#include "formats/field_paths.h"

namespace kappa {

FieldPaths BuildFieldPaths(const RecordSchema& schema) {
  FieldPaths paths;
  for (int slot = 0; slot < schema.size(); ++slot) {
    const std::string& path = schema.field(slot).path;
    if (path == "kafka.key") {
      paths.kafka_key_slots.push_back(slot);
      continue;
    }
    if (path == "kafka.timestamp") {
      paths.kafka_ts_slots.push_back(slot);
      continue;
    }
    FieldPathNode* node = &paths.root;
    if (node->first_slot < 0) node->first_slot = slot;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      FieldPathNode* child = nullptr;
      for (FieldPathNode& c : node->children) {
        if (c.key == key) child = &c;
      }
      if (child == nullptr) {
        node->children.push_back(FieldPathNode{key, path.substr(0, dot), -1, slot, {}});
        child = &node->children.back();
      }
      node = child;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    node->slot = slot;
  }
  return paths;
}

}  // namespace kappa
