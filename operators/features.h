// Named features: what a window computes and how its rows are written.
//
// A window names its outputs (`features: {spend_1h: sum(amount), n: count}`)
// instead of filling the fixed kappa.schema.WindowAggregate. Each feature is
// an aggregate over one field of the record view (formats/record_view.h), so
// it works for every format: count, sum, min, max, avg, first, last (the
// value of the record with the smallest / largest (event time, offset)) and
// exact count_distinct. int64, timestamp and bool fields aggregate in int64
// (sums wrap), double fields in double; avg is always a double.
//
// Rows are written by a RowEncoder in one of three formats, chosen in the
// sink (`sink: {topic: t, format: json | avro | flatbuffers}`, JSON by
// default): a JSON object, Avro binary in the Confluent wire format (the
// schema AvroRowSchema gives, registered with the Schema Registry under
// "<output topic>-value" when the job starts), or a FlatBuffers table whose
// schema FlatBuffersRowSchema prints (`kappa schema`). The columns are the
// window's leading columns (key, window_start, window_end; a rolling window:
// key, event_time) followed by the features in the order the spec names them.
// Not thread-safe: one per operator, one task, one thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/config_node.h"
#include "base/status.h"
#include "operators/operator_spec.h"

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace kappa {

// A feature's accumulator cell is an int64: an int64 value, or a double's
// bits. Sums of int64 wrap on overflow rather than being undefined.
inline int64_t DoubleBits(double d) {
  int64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
inline double BitsDouble(int64_t b) {
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}
// A double as min, max and count_distinct keep it: -0.0 as 0.0 (they
// compare equal; the rolling window's order keeps one of them, so a
// tumbling window's min of -0.0 was -0.0 and a rolling window's 0.0, and of
// {0.0, -0.0} whichever came first), every NaN as one quiet NaN (x86's
// 0.0/0.0 has its sign bit set: count_distinct counted it apart from
// Java's and Python's NaN, though all print alike; PostgreSQL's
// count(DISTINCT) and Java's Double.equals take every NaN as one value).
inline int64_t CanonicalDoubleBits(double d) {
  if (d == 0.0) return DoubleBits(0.0);
  if (d != d) return DoubleBits(std::numeric_limits<double>::quiet_NaN());
  return DoubleBits(d);
}
// The order of min and max over doubles: NaN above every number (as
// PostgreSQL and Java's Double.compare order it), so a window holding NaN
// has max NaN and min its smallest number, in tumbling and rolling windows
// alike.
inline bool DoubleBefore(double a, double b) { return a != a ? false : (b != b || a < b); }
inline int64_t WrappingAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
inline int64_t WrappingSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}

enum class FeatureKind : uint8_t { kCount, kSum, kMin, kMax, kAvg, kFirst, kLast, kCountDistinct };

struct FeatureSpec {
  std::string name;  // the output column
  FeatureKind kind = FeatureKind::kCount;
  Field field = Field::kValue;  // the aggregated field (count: unused)
};

// At most this many features per window: their accumulators are one
// fixed-size state value per (key, window).
constexpr size_t kMaxFeatures = 16;

// Parses the `features` mapping: `name: count`, `name: sum(field)`, ... in
// the order written. Errors name the line and what is allowed.
Result<std::vector<FeatureSpec>> ParseFeatures(const ConfigNode& node);
// Unique names (letters, digits, _ , not starting with a digit), none a
// leading column, at most kMaxFeatures, numeric fields for every kind but
// count and count_distinct.
Status ValidateFeatures(const std::vector<FeatureSpec>& features);
// ",features=name:kind:field/..." (nothing for no features).
void AppendCanonicalFeatures(std::string& out, const std::vector<FeatureSpec>& features);
std::string_view FeatureKindName(FeatureKind kind);
// Whether the feature aggregates a declared double field (in double).
bool FeatureInputIsDouble(const FeatureSpec& f);
// The dead letter's message for a record that lacks the optional declared
// field feature `f` reads (the tumbling, sliding and rolling windows').
std::string MissingFeatureMessage(const FeatureSpec& f);
// The column type: int64 for count, count_distinct and aggregates of int64
// fields; double for avg and aggregates of doubles; a timestamp stays a
// timestamp for min, max, first and last.
ValueType FeatureOutputType(const FeatureSpec& f);
// The leading columns are not features: these names are taken.
bool IsLeadingColumnName(std::string_view name);

// kPostgres: one line of PostgreSQL's COPY text format (tab-separated,
// escaped, timestamps as ISO-8601 UTC, bools t/f, no newline); chosen by
// `sink.postgres`, never by `sink.format`.
enum class RowFormat : uint8_t { kJson, kAvro, kFlatBuffers, kPostgres };
Result<RowFormat> ParseRowFormat(std::string_view name);
std::string_view RowFormatName(RowFormat format);

struct RowColumn {
  std::string name;
  ValueType type = ValueType::kInt64;  // kString, kInt64, kDouble, kTimestamp or kBool
};

// The columns of a feature row: `leading` then one per feature.
std::vector<RowColumn> FeatureRowColumns(std::vector<RowColumn> leading, const std::vector<FeatureSpec>& features);
// The Avro record schema (JSON) of rows with these columns; timestamps are
// longs with logicalType timestamp-millis.
std::string AvroRowSchema(std::string_view record_name, const std::vector<RowColumn>& columns);
// The FlatBuffers schema (.fbs text) of rows with these columns: one table,
// fields in column order (field i has id i), root_type that table.
std::string FlatBuffersRowSchema(std::string_view table_name, const std::vector<RowColumn>& columns);

// A double as the JSON rows write it: whole numbers keep their point
// ("9.0"), -0.0 its sign, NaN and the infinities are null (JSON has none),
// beyond int64 in exponent form. `kappa get` of a PostgreSQL sink writes
// its double columns with it too.
void AppendJsonDouble(std::string* out, double v);
// A JSON string literal of s, quotes included.
void AppendJsonString(std::string& out, std::string_view s);

// Writes rows of fixed columns: Begin, then one Str/Int/Double per column in
// column order, then Finish. The bytes stay valid until the next Begin.
class RowEncoder {
 public:
  // avro_schema_id: the registered id of AvroRowSchema(columns) (Avro only).
  RowEncoder(RowFormat format, std::vector<RowColumn> columns, int32_t avro_schema_id = 0);
  ~RowEncoder();
  RowEncoder(const RowEncoder&) = delete;
  RowEncoder& operator=(const RowEncoder&) = delete;

  void Begin();
  void Str(std::string_view v);
  void Int(int64_t v);
  void Double(double v);
  std::span<const uint8_t> Finish();

  const std::vector<RowColumn>& columns() const { return columns_; }

 private:
  void JsonName();

  RowFormat format_;
  std::vector<RowColumn> columns_;
  int32_t avro_schema_id_;
  size_t next_ = 0;  // the column the next value fills
  std::string out_;  // JSON and Avro rows
  // FlatBuffers: the values wait here until Finish builds the table (strings
  // must precede the table in a FlatBuffer).
  struct Pending {
    int64_t i = 0;
    double d = 0;
    std::string_view s;
  };
  std::vector<Pending> pending_;
  std::unique_ptr<flatbuffers::FlatBufferBuilder> fbb_;
};

}  // namespace kappa
