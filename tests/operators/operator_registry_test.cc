// The operator registry: every kind is in the table with its entry, an
// unknown kind is an error naming the known ones, and what each entry says
// about a spec (state tables, fields) is what its operator does.
#include "operators/operator_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "operator_test_util.h"

namespace kappa::testing {
namespace {

using ::testing::ElementsAre;

// `- <kind>: <body>` at line 3 of spec.yaml, as the loader would build it.
ConfigNode Entry(const std::string& kind, ConfigNode body) {
  auto origin = std::make_shared<const std::string>("spec.yaml");
  ConfigNode entry(ConfigNode::Kind::kMap, origin, "operators[0]", 3);
  ConfigNode key(ConfigNode::Kind::kScalar, origin, "operators[0]", 3);
  key.set_scalar(kind);
  entry.AddEntry(std::move(key), std::move(body));
  return entry;
}

ConfigNode EmptyMap() {
  return ConfigNode(ConfigNode::Kind::kMap, std::make_shared<const std::string>("spec.yaml"), "operators[0].x", 3);
}

TEST(OperatorRegistryTest, EveryKindIsRegisteredInVariantOrder) {
  std::vector<std::string_view> names;
  for (const OperatorKind& k : OperatorKinds()) names.push_back(k.name);
  EXPECT_THAT(names, ElementsAre("dedup", "filter", "map", "window", "emit", "repartition"));
  EXPECT_EQ(OperatorKinds().size(), std::variant_size_v<OperatorSpec>);
  for (const OperatorKind& k : OperatorKinds()) {
    EXPECT_EQ(FindOperatorKind(k.name), &k);
    EXPECT_NE(k.parse, nullptr);
    EXPECT_NE(k.validate, nullptr);
    EXPECT_NE(k.create, nullptr);
    EXPECT_NE(k.append_canonical, nullptr);
    EXPECT_NE(k.append_fields, nullptr);
    EXPECT_NE(k.append_state_tables, nullptr);
  }
  EXPECT_EQ(&KindOf(OperatorSpec(DedupBy(kHour))), FindOperatorKind("dedup"));
  EXPECT_EQ(&KindOf(OperatorSpec(EmitSpec{})), FindOperatorKind("emit"));
  EXPECT_FALSE(FindOperatorKind("dedup")->terminal);
  EXPECT_TRUE(FindOperatorKind("window")->terminal);
  EXPECT_TRUE(FindOperatorKind("emit")->terminal);
  EXPECT_FALSE(FindOperatorKind("repartition")->terminal);
  EXPECT_EQ(OperatorKindNames(), "dedup, filter, map, window, emit or repartition");
  EXPECT_EQ(OperatorKindNames(/*terminal_only=*/true), "`window` or `emit`");
}

TEST(OperatorRegistryTest, AnUnknownKindIsAnErrorNamingTheKnownKinds) {
  EXPECT_EQ(FindOperatorKind("frobnicate"), nullptr);
  auto spec = ParseOperatorSpec(Entry("frobnicate", EmptyMap()));
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(spec.status().message(),
            "spec.yaml:3: unknown operator `frobnicate` (expected dedup, filter, map, window, emit or repartition)");
}

TEST(OperatorRegistryTest, ParsesThroughTheKindAndValidatesOnce) {
  auto emit = ParseOperatorSpec(Entry("emit", EmptyMap()));
  ASSERT_TRUE(emit.ok()) << emit.status().ToString();
  EXPECT_TRUE(std::holds_alternative<EmitSpec>(*emit));
  // A dedup without a ttl fails in its parser; a window of size 0 in its
  // Validate, reported at the entry's line.
  auto dedup = ParseOperatorSpec(Entry("dedup", EmptyMap()));
  ASSERT_FALSE(dedup.ok());
  EXPECT_EQ(dedup.status().message(), "spec.yaml:3: needs `ttl:` (a duration like 1h)");
  ConfigNode body = EmptyMap();
  ConfigNode key(ConfigNode::Kind::kScalar, std::make_shared<const std::string>("spec.yaml"), "", 3);
  key.set_scalar("size");
  ConfigNode zero(ConfigNode::Kind::kScalar, std::make_shared<const std::string>("spec.yaml"), "size", 3);
  zero.set_scalar("0s");
  body.AddEntry(std::move(key), std::move(zero));
  auto window = ParseOperatorSpec(Entry("window", std::move(body)));
  ASSERT_FALSE(window.ok());
  EXPECT_EQ(window.status().message(), "spec.yaml:3: window size must be positive, got 0 ms");
}

TEST(OperatorRegistryTest, EachEntryNamesTheStateTablesCreateRegistersAndTheFieldsItReads) {
  WindowSpec argmax = Tumbling(kHour, Field::kAmountCents);
  argmax.argmax = {Field::kEventTime};
  const OperatorSpec specs[] = {DedupBy(kHour, Field::kUserId),
                                FilterSpec{{*ParsePredicate("status != cancelled")}},
                                MapSpec{Field::kEventTime, 1, 1000},
                                Tumbling(),
                                argmax,
                                EmitSpec{Field::kOffset, {Field::kValue}}};
  const std::vector<std::vector<Field>> fields = {{Field::kUserId},
                                                  {Field::kStatus},
                                                  {Field::kEventTime},
                                                  {Field::kUserId},
                                                  {Field::kAmountCents, Field::kEventTime},
                                                  {Field::kOffset, Field::kValue}};
  for (size_t i = 0; i < std::size(specs); ++i) {
    const OperatorKind& kind = KindOf(specs[i]);
    const std::string state_name = "op" + std::to_string(i + 1);
    std::vector<std::string> declared;
    kind.append_state_tables(specs[i], state_name, declared);
    StateRegistry registry;
    auto op = kind.create(specs[i], state_name, registry);
    ASSERT_TRUE(op.ok()) << kind.name << ": " << op.status().ToString();
    EXPECT_EQ(registry.table_names(), declared) << kind.name;
    EXPECT_EQ((*op)->name(), kind.name);
    std::vector<Field> used;
    kind.append_fields(specs[i], used);
    EXPECT_EQ(used, fields[i]) << kind.name;
  }
}

}  // namespace
}  // namespace kappa::testing
