#include "operators/emit.h"

#include <flatbuffers/flatbuffers.h>

#include "operators/field_access.h"
#include "schemas/row_generated.h"

namespace kappa {

Result<EmitSpec> Emit::Parse(const ConfigNode& body) {
  EmitSpec spec;
  if (body.IsNull()) return spec;  // `- emit:`
  KAPPA_RETURN_IF_ERROR(body.CheckKeys({"key", "row"}, "emit"));
  auto key = FieldAt(body, "key", Field::kTxnId);
  if (!key.ok()) return key.status();
  spec.key_field = *key;
  auto row = FieldsAt(body, "row", "numeric fields");
  if (!row.ok()) return row.status();
  spec.row = *row;
  return spec;
}

void Emit::AppendCanonical(const EmitSpec& spec, std::string& out) {
  out.append("emit(").append(FieldName(spec.key_field));
  AppendCanonicalFields(out, "row", spec.row);
  out.append(")");
}

void Emit::AppendFields(const EmitSpec& spec, std::vector<Field>& out) {
  out.push_back(spec.key_field);
  out.insert(out.end(), spec.row.begin(), spec.row.end());
}

void Emit::AppendStateTables(const EmitSpec&, const std::string&, std::vector<std::string>&) {}

std::unique_ptr<Operator> Emit::Create(const EmitSpec& spec, const std::string&, StateRegistry&) {
  return std::make_unique<Emit>(spec);
}

Status Emit::Validate(const EmitSpec& spec) {
  for (Field f : spec.row) {
    if (!IsNumericField(f)) {
      return Status::InvalidArgument("emit `row` takes numeric fields, not `" + std::string(FieldName(f)) + "`");
    }
  }
  return Status::OK();
}

Emit::Emit(const EmitSpec& spec) : spec_(spec) {
  if (spec_.row.empty()) return;
  flatbuffers::FlatBufferBuilder fbb(64);
  const std::vector<int64_t> zeros(spec_.row.size(), 0);
  auto values = fbb.CreateVector(zeros);
  schema::FinishRowBuffer(fbb, schema::CreateRow(fbb, values));
  row_.assign(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  const auto* v = schema::GetRow(row_.data())->values();
  values_at_ = static_cast<size_t>(reinterpret_cast<const uint8_t*>(v->data()) - row_.data());
}

void Emit::Process(RecordBatch& batch, TaskContext& ctx) {
  char scratch[kFieldTextScratchBytes];
  char offset_key_text[2 * kFieldTextScratchBytes];
  const bool offset_key = spec_.key_field == Field::kOffset;
  // "<partition>|" once per batch; each record adds its offset.
  char* const offset_at = std::to_chars(offset_key_text, offset_key_text + 11, batch.partition).ptr + 1;
  offset_at[-1] = '|';
  std::string_view key;
  // Loop invariants in locals: the collector call could alias `this`, which
  // would make the compiler reload them per record.
  const Field key_field = spec_.key_field;
  const Field* const row_fields = spec_.row.data();
  const size_t row_count = spec_.row.size();
  const uint8_t* const row = row_.data();
  const size_t row_size = row_.size();
  uint8_t* const values = row_.data() + values_at_;
  OutputCollector* const out = ctx.out;
  const int32_t partition = batch.partition;
  const InputRecord* const records = batch.records.data();
  // A row's field declared optional and absent in a record: the row has no
  // null, and a 0 in its place would be taken for a value (a bug bash), so
  // the record is a dead letter, as for a window feature over it.
  bool row_declared = false;
  for (size_t i = 0; i < row_count; ++i) row_declared |= IsDeclaredField(row_fields[i]);
  int64_t dead = 0;
  for (uint32_t idx : batch.selection) {
    const InputRecord& rec = records[idx];
    if (row_declared) [[unlikely]] {
      const Field* absent = nullptr;
      for (size_t i = 0; i < row_count && absent == nullptr; ++i) {
        if (DeclaredAbsent(rec, row_fields[i])) absent = &row_fields[i];
      }
      if (absent != nullptr) {
        out->EmitDlq(partition, rec, DlqReason::kMissingField,
                     "emit row field `" + std::string(FieldName(*absent)) +
                         "` is absent in this record (declared optional): a row has no null, and a 0 would read "
                         "as a value");
        ++dead;
        continue;
      }
    }
    if (offset_key) {
      // "<partition>|<offset>": names exactly one input record (after a
      // repartition, its input partition and offset: the same in any rerun).
      char* at = offset_at;
      if (rec.origin_partition >= 0) [[unlikely]] {
        at = std::to_chars(offset_key_text, offset_key_text + 11, rec.origin_partition).ptr + 1;
        at[-1] = '|';
      }
      char* const p = std::to_chars(at, offset_key_text + sizeof(offset_key_text), rec.offset).ptr;
      key = std::string_view(offset_key_text, static_cast<size_t>(p - offset_key_text));
    } else if (key_field == Field::kPartition) {
      key = std::string_view(scratch, static_cast<size_t>(
                                          std::to_chars(scratch, scratch + sizeof(scratch), partition).ptr - scratch));
    } else {
      key = FieldText(rec, key_field, scratch);
    }
    const OutputLineage lineage{partition, rec.offset, rec.offset, rec.origin_partition};
    if (row_count == 0) {
      out->Emit(key, rec.payload, rec.size, lineage);
    } else {
      for (size_t i = 0; i < row_count; ++i) {
        flatbuffers::WriteScalar<int64_t>(values + 8 * i, NumericField(rec, row_fields[i]));
      }
      out->Emit(key, row, row_size, lineage);
    }
  }
  // Counted once per batch: the collector call could alias the counters,
  // which would force two memory increments per record.
  const auto n = static_cast<int64_t>(batch.selection.size()) - dead;
  ctx.counters->out += n;
  ctx.counters->outputs += n;
  ctx.counters->dlq += dead;
}

}  // namespace kappa
