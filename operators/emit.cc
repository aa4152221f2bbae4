#include "operators/emit.h"

#include "operators/field_access.h"

namespace kappa {

void Emit::Process(RecordBatch& batch, TaskContext& ctx) {
  char scratch[kFieldTextScratchBytes];
  for (uint32_t idx : batch.selection) {
    const InputRecord& rec = batch.records[idx];
    ctx.out->Emit(FieldText(rec.txn, spec_.key_field, scratch), rec.payload, rec.size,
                  OutputLineage{batch.partition, rec.offset, rec.offset});
    ++ctx.counters->out;
    ++ctx.counters->outputs;
  }
}

}  // namespace kappa
