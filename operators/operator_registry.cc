#include "operators/operator_registry.h"

#include <array>
#include <utility>

#include "operators/decode_validate.h"

namespace kappa {
namespace {

// The type-erased entry of kind K: each function unwraps the spec (the
// caller guarantees the kind) and calls K's static member.
template <typename K>
OperatorKind EntryOf() {
  using S = typename K::Spec;
  OperatorKind e{};
  e.name = K::kKind;
  e.terminal = K::kTerminal;
  e.parse = [](const ConfigNode& body) -> Result<OperatorSpec> {
    auto spec = K::Parse(body);
    if (!spec.ok()) return spec.status();
    if (Status valid = K::Validate(*spec); !valid.ok()) return body.Error(valid.message());
    return OperatorSpec(std::move(*spec));
  };
  e.validate = [](const OperatorSpec& spec) { return K::Validate(std::get<S>(spec)); };
  e.append_canonical = [](const OperatorSpec& spec, std::string& out) {
    K::AppendCanonical(std::get<S>(spec), out);
  };
  e.append_fields = [](const OperatorSpec& spec, std::vector<Field>& out) {
    K::AppendFields(std::get<S>(spec), out);
  };
  e.append_state_tables = [](const OperatorSpec& spec, const std::string& state_name,
                             std::vector<std::string>& out) {
    K::AppendStateTables(std::get<S>(spec), state_name, out);
  };
  e.create = [](const OperatorSpec& spec, const std::string& state_name,
                StateRegistry& registry) -> Result<std::unique_ptr<Operator>> {
    const S& s = std::get<S>(spec);
    KAPPA_RETURN_IF_ERROR(K::Validate(s));
    return K::Create(s, state_name, registry);
  };
  return e;
}

template <typename... Kinds>
std::array<OperatorKind, sizeof...(Kinds)> EntriesOf(OperatorKindList<Kinds...>*) {
  return {EntryOf<Kinds>()...};
}

const auto& Entries() {
  static const auto entries = EntriesOf(static_cast<BuiltinOperatorKinds*>(nullptr));
  return entries;
}

}  // namespace

std::span<const OperatorKind> OperatorKinds() { return Entries(); }

const OperatorKind& KindOf(const OperatorSpec& spec) { return Entries()[spec.index()]; }

const OperatorKind* FindOperatorKind(std::string_view name) {
  for (const OperatorKind& k : Entries()) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string OperatorKindNames(bool terminal_only) {
  std::vector<std::string_view> names;
  for (const OperatorKind& k : Entries()) {
    if (!terminal_only || k.terminal) names.push_back(k.name);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.append(i + 1 == names.size() ? " or " : ", ");
    out.append(terminal_only ? "`" : "").append(names[i]).append(terminal_only ? "`" : "");
  }
  return out;
}

Result<OperatorSpec> ParseOperatorSpec(const ConfigNode& entry) {
  if (!entry.IsMap() || entry.size() != 1) {
    return entry.Error("each operator is a one-key mapping: " + OperatorKindNames());
  }
  const auto& [key, body] = entry.entries().front();
  const OperatorKind* kind = FindOperatorKind(key.scalar());
  if (kind == nullptr) {
    return entry.Error("unknown operator `" + key.scalar() + "` (expected " + OperatorKindNames() + ")");
  }
  return kind->parse(body);
}

Result<std::unique_ptr<Operator>> MakeOperator(const OperatorSpec& spec, const std::string& state_name,
                                               StateRegistry& registry) {
  return KindOf(spec).create(spec, state_name, registry);
}

std::unique_ptr<Operator> MakeDecodeValidate(const DecodeSpec& spec) {
  return std::make_unique<DecodeValidate>(spec);
}

std::unique_ptr<Operator> MakeDecodeValidate(const DecodeSpec& spec, const std::vector<OperatorSpec>& ops) {
  DecodeSpec decode = spec;
  decode.read_fields.clear();
  for (const OperatorSpec& op : ops) KindOf(op).append_fields(op, decode.read_fields);
  return std::make_unique<DecodeValidate>(std::move(decode));
}

}  // namespace kappa
