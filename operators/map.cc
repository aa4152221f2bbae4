#include "operators/map.h"

#include "operators/field_access.h"

namespace kappa {

void Map::Process(RecordBatch& batch, TaskContext& /*ctx*/) {
  for (uint32_t idx : batch.selection) {
    InputRecord& rec = batch.records[idx];
    rec.value = NumericField(rec.txn, spec_.value_field) * spec_.multiply / spec_.divide;
  }
}

}  // namespace kappa
