// The operator registry: one entry per operator kind, as DuckDB's function
// registries. Everything the runtime and the job spec loader do with an
// operator goes through its entry: the kind name (as written in the spec),
// parsing its section of the spec, validation, the canonical text the spec
// hash covers, the record fields it reads, the state tables it registers,
// and building it for a task.
//
// Adding an operator: write operators/<kind>.{h,cc} holding its spec struct
// and its class, whose static members are the entry (see Dedup: Spec, kKind,
// kTerminal, Parse, Validate, AppendCanonical, AppendFields,
// AppendStateTables, Create), then add the class to OperatorKindList below.
// The variant index of a spec is its kind's place in that list, so append
// there: the canonical text names kinds, not indices, but keeping the order
// keeps every test's expectations in order too. Thread-safe (immutable).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/config_node.h"
#include "base/status.h"
#include "operators/dedup.h"
#include "operators/emit.h"
#include "operators/filter.h"
#include "operators/map.h"
#include "operators/operator_interface.h"
#include "operators/operator_spec.h"
#include "operators/repartition.h"
#include "operators/window_aggregate.h"

namespace kappa {

template <typename... Kinds>
struct OperatorKindList {
  using Spec = std::variant<typename Kinds::Spec...>;
};

// THE TABLE: one line per operator kind.
using BuiltinOperatorKinds = OperatorKindList<
    Dedup,
    Filter,
    Map,
    WindowAggregate,
    Emit,
    Repartition>;

// One operator of a chain, as parsed from the spec: the kind's plain struct.
using OperatorSpec = BuiltinOperatorKinds::Spec;

// One kind's entry, type-erased over OperatorSpec. The functions take a spec
// of this kind only (KindOf(spec) is this entry).
struct OperatorKind {
  std::string_view name;  // as written in the spec: `- dedup: {...}`
  bool terminal;          // ends a chain (window, emit)
  // The section's body to a spec; Validate already applied, its message
  // reported at the body's line.
  Result<OperatorSpec> (*parse)(const ConfigNode& body);
  Status (*validate)(const OperatorSpec& spec);
  // Appends this operator's part of the canonical text the spec hash is
  // computed over ("dedup(txn_id,3600000)").
  void (*append_canonical)(const OperatorSpec& spec, std::string& out);
  // The record fields it reads (each must exist in the job's format).
  void (*append_fields)(const OperatorSpec& spec, std::vector<Field>& out);
  // The state tables Create registers for `state_name`, in order.
  void (*append_state_tables)(const OperatorSpec& spec, const std::string& state_name,
                              std::vector<std::string>& out);
  // Validates, then builds the operator, registering its tables.
  Result<std::unique_ptr<Operator>> (*create)(const OperatorSpec& spec, const std::string& state_name,
                                              StateRegistry& registry);
};

// Every registered kind, in OperatorSpec's variant order.
std::span<const OperatorKind> OperatorKinds();
// The entry of `spec`'s kind.
const OperatorKind& KindOf(const OperatorSpec& spec);
// The kind named `name`, or nullptr.
const OperatorKind* FindOperatorKind(std::string_view name);
// "dedup, filter, map, window or emit" (the terminal kinds only: "window or
// emit"), for messages.
std::string OperatorKindNames(bool terminal_only = false);

// Parses one chain entry, a one-key mapping `kind: body`. Errors name the
// line, and for an unknown kind every known one.
Result<OperatorSpec> ParseOperatorSpec(const ConfigNode& entry);

// Builds one operator for one task. `state_name` is the unique column family
// name for its state (e.g. "op1_dedup"); stateless operators ignore it.
// Validates the spec first, so a bad one is a Status, never a half-built
// chain.
Result<std::unique_ptr<Operator>> MakeOperator(const OperatorSpec& spec, const std::string& state_name,
                                               StateRegistry& registry);
// The first operator of every chain. Updates ctx.max_event_time_ms and each
// record's watermark_ms; sends failures to ctx.out->EmitDlq.
std::unique_ptr<Operator> MakeDecodeValidate(const DecodeSpec& spec);
// The decode step of the chain `ops`: spec with read_fields set to every
// field the operators read (their AppendFields), so a record's view holds
// those (a Nexmark record fills only them).
std::unique_ptr<Operator> MakeDecodeValidate(const DecodeSpec& spec, const std::vector<OperatorSpec>& ops);

}  // namespace kappa
