// The expression language of filters and maps: what expressions mean over a
// record (precedence, types, absent fields, division by zero), that every
// rejection names the problem and its column, that every predicate the
// original filter syntax (ParsePredicate) accepts keeps its meaning, and
// that the canonical text ignores layout but not meaning.
#include "operators/expression.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <limits>
#include <random>
#include <regex>

#include "operators/operator_spec.h"

namespace kappa::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kSlots = 40;

// A record as the record view will present one: a value per slot, each
// possibly absent.
struct TestRecord {
  std::array<bool, kSlots> present{};
  std::array<int64_t, kSlots> ints{};
  std::array<double, kSlots> doubles{};
  std::array<std::string, kSlots> strs{};
  std::array<bool, kSlots> bools{};

  bool Present(int slot) const { return present[slot]; }
  int64_t Int(int slot) const { return ints[slot]; }
  double Double(int slot) const { return doubles[slot]; }
  std::string_view Str(int slot) const { return strs[slot]; }
  bool Bool(int slot) const { return bools[slot]; }

  TestRecord& SetInt(int slot, int64_t v) {
    present[slot] = true;
    ints[slot] = v;
    return *this;
  }
  TestRecord& SetDouble(int slot, double v) {
    present[slot] = true;
    doubles[slot] = v;
    return *this;
  }
  TestRecord& SetStr(int slot, std::string v) {
    present[slot] = true;
    strs[slot] = std::move(v);
    return *this;
  }
  TestRecord& SetBool(int slot, bool v) {
    present[slot] = true;
    bools[slot] = v;
    return *this;
  }
};

const std::vector<ExprField>& Fields() {
  static const std::vector<ExprField> fields = {
      {"amount", 0, ValueType::kInt64},   {"fee", 1, ValueType::kDouble},
      {"currency", 2, ValueType::kString}, {"is_fraud", 3, ValueType::kBool},
      {"ts", 4, ValueType::kTimestamp},   {"count", 5, ValueType::kInt64},
      {"ratio", 6, ValueType::kDouble},   {"status", 7, ValueType::kString},
      {"opt", 8, ValueType::kInt64},      {"name", 9, ValueType::kString},
      {"flag", 10, ValueType::kBool},     {"payload.amount", 11, ValueType::kInt64},
      {"opt_flag", 12, ValueType::kBool}, {"opt_name", 13, ValueType::kString},
      {"zero", 14, ValueType::kInt64},
  };
  return fields;
}

// amount 250, fee 1.5, currency EUR, is_fraud false, ts 1700000000000,
// count 3, ratio 0.25, status approved, opt absent, name "New York",
// flag true, payload.amount 7, opt_flag/opt_name absent, zero 0.
TestRecord Sample() {
  TestRecord r;
  r.SetInt(0, 250).SetDouble(1, 1.5).SetStr(2, "EUR").SetBool(3, false).SetInt(4, 1700000000000);
  r.SetInt(5, 3).SetDouble(6, 0.25).SetStr(7, "approved").SetStr(9, "New York").SetBool(10, true);
  r.SetInt(11, 7).SetInt(14, 0);
  return r;
}

Result<CompiledExpr> C(std::string_view text) {
  return Compile(text, ResolverFor(Fields()), FieldNames(Fields()));
}
Result<CompiledExpr> N(std::string_view text) {
  return CompileNumeric(text, ResolverFor(Fields()), FieldNames(Fields()));
}

bool Eval(std::string_view text, const TestRecord& r = Sample()) {
  auto e = C(text);
  EXPECT_TRUE(e.ok()) << text << ": " << e.status().ToString();
  return e.ok() && e->Matches(r);
}

TEST(ExpressionTest, PredicatesOverASampleRecord) {
  const struct {
    const char* text;
    bool expected;
  } cases[] = {
      {"amount > 100", true},
      {"amount>=250", true},
      {"amount < 250", false},
      {"amount != 250", false},
      {"amount == 250.0", true},
      {"fee > 1", true},
      {"fee == 1.5", true},
      {"fee * 100 == 150", true},
      {"currency == EUR", true},
      {"currency == 'EUR'", true},
      {"currency == \"EUR\"", true},
      {"currency != EUR", false},
      {"currency < USD", true},
      {"\"EUR\" == currency", true},
      {"name == New York", true},
      {"name == 'New York'", true},
      {"name == New", false},
      {"name == 'New", false},
      {"name == 'New York > 1'", false},  // quoted, an operator is text
      {"name == New (York)", false},
      {"currency == 'EUR", false},  // an unclosed quote is text, as the original syntax read it
      {"is_fraud", false},
      {"not is_fraud", true},
      {"!is_fraud", true},
      {"flag", true},
      {"flag and amount > 100", true},
      {"is_fraud or amount > 100", true},
      {"is_fraud || amount > 1000", false},
      {"flag && !is_fraud", true},
      {"is_fraud == false", true},
      {"flag != is_fraud", true},
      {"(amount > 100) == flag", true},
      {"amount in (1, 250, 3)", true},
      {"amount in (1, 2, 3)", false},
      {"amount not in (1, 2, 3)", true},
      {"amount in (250.0)", true},
      {"amount in (-1, 250)", true},
      {"fee in (1, 1.5)", true},
      {"currency in (EUR, USD)", true},
      {"currency in ('USD', \"GBP\")", false},
      {"currency not in (USD, GBP)", true},
      {"currency NOT IN (EUR)", false},
      {"amount > 100 AND currency == EUR", true},
      {"ts >= 1700000000000", true},
      {"ts - 1700000000000 == 0", true},
      {"ts / 1000 == 1700000000", true},
      {"payload.amount == 7", true},
      {"amount + count * 2 == 256", true},
      {"(amount + count) * 2 == 506", true},
      {"amount % 7 == 5", true},
      {"-amount == -250", true},
      {"- amount < 0", true},
      {"amount / count == 83", true},
      {"amount / 4.0 == 62.5", true},
      {"ratio * 4 == 1", true},
      {"amount > -1", true},
      {"amount > 1e2", true},
      {"true", true},
      {"false or not false", true},
      {"(currency == EUR)", true},
      {"(currency == EUR) and (status == approved)", true},
      {"((amount > 1) and (currency == USD or status == approved))", true},
      {"status == approved and currency == EUR or amount < 0", true},
      {"status == approved && currency == USD || amount < 0", false},
  };
  const TestRecord r = Sample();
  for (const auto& c : cases) EXPECT_EQ(Eval(c.text, r), c.expected) << c.text;
}

TEST(ExpressionTest, PrecedenceOfArithmeticAndLogic) {
  const struct {
    const char* text;
    int64_t expected;
  } ints[] = {
      {"1 + 2 * 3", 7},  {"(1 + 2) * 3", 9}, {"10 - 2 - 3", 5}, {"2 * 3 % 4", 2},  {"24 / 4 / 2", 3},
      {"-2 * 3", -6},    {"-(2 + 3)", -5},   {"- -4", 4},       {"7 / 2", 3},      {"-7 / 2", -3},
      {"-7 % 3", -1},    {"7 % -3", 1},      {"2 - -3", 5},     {"1 - 2 + 3", 2},
      {"amount - count * 10", 220},
  };
  for (const auto& c : ints) {
    auto e = N(c.text);
    ASSERT_TRUE(e.ok()) << c.text << ": " << e.status().ToString();
    EXPECT_EQ(e->type(), ValueType::kInt64) << c.text;
    const ExprValue v = e->Evaluate(Sample());
    EXPECT_TRUE(v.present);
    EXPECT_FALSE(v.is_double);
    EXPECT_EQ(v.i, c.expected) << c.text;
  }
  // A double anywhere makes the operation double; int64 stays int64.
  auto half = N("7.0 / 2");
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(half->type(), ValueType::kDouble);
  EXPECT_DOUBLE_EQ(half->Evaluate(Sample()).d, 3.5);
  auto mixed = N("amount / 100 + fee");  // (250 / 100 = 2) + 1.5
  ASSERT_TRUE(mixed.ok());
  EXPECT_DOUBLE_EQ(mixed->Evaluate(Sample()).d, 3.5);
  auto mixed2 = N("amount / (100 + fee - fee)");  // 250 / 100.0
  ASSERT_TRUE(mixed2.ok());
  EXPECT_DOUBLE_EQ(mixed2->Evaluate(Sample()).d, 2.5);
  EXPECT_DOUBLE_EQ(N("fee % 1")->Evaluate(Sample()).d, 0.5);

  // not binds looser than comparison, and tighter than and/or; and tighter than or.
  EXPECT_TRUE(Eval("not amount > 1000"));
  EXPECT_TRUE(Eval("true or false and false"));   // true or (false and false)
  EXPECT_FALSE(Eval("(true or false) and false"));
  EXPECT_FALSE(Eval("not false and false"));      // (not false) and false
  EXPECT_TRUE(Eval("not (false and false)"));
  EXPECT_TRUE(Eval("not not true"));
  EXPECT_TRUE(Eval("amount + 1 > 250 and amount - 1 < 250"));
}

TEST(ExpressionTest, SmallestInt64AndWrappingOverflow) {
  auto min = N("-9223372036854775808");
  ASSERT_TRUE(min.ok()) << min.status().ToString();
  EXPECT_EQ(min->Evaluate(Sample()).i, INT64_MIN);
  EXPECT_EQ(N("9223372036854775807 + 1")->Evaluate(Sample()).i, INT64_MIN);
  EXPECT_EQ(N("-9223372036854775808 / -1")->Evaluate(Sample()).i, INT64_MIN);
  EXPECT_EQ(N("-9223372036854775808 % -1")->Evaluate(Sample()).i, 0);
}

// An int64 against a double compares exactly, not through a double that
// rounds above 2^53 (a bug bash: `amt > 9007199254740992.5` dropped
// 9007199254740993, `amt < 9223372036854775808.0` dropped 2^63 - 1; the
// second is the form an int64 literal's error message recommends).
TEST(ExpressionTest, AnInt64AndADoubleCompareExactly) {
  TestRecord r = Sample();
  r.SetInt(0, 9007199254740993);  // amount: 2^53 + 1
  EXPECT_TRUE(Eval("amount > 9007199254740992.5", r));
  EXPECT_TRUE(Eval("9007199254740992.5 < amount", r));
  EXPECT_FALSE(Eval("amount == 9007199254740992.0", r));
  EXPECT_TRUE(Eval("amount != 9007199254740992.0", r));
  EXPECT_FALSE(Eval("amount < 9007199254740993.0", r)) << "2^53 + 1 as a double is 2^53";
  r.SetInt(0, INT64_MAX);
  EXPECT_TRUE(Eval("amount < 9223372036854775808.0", r));
  EXPECT_TRUE(Eval("amount <= 9223372036854775808.0", r));
  EXPECT_FALSE(Eval("amount >= 9223372036854775808.0", r));
  EXPECT_TRUE(Eval("amount > 9.2e18", r));
  r.SetInt(0, INT64_MIN);
  EXPECT_TRUE(Eval("amount == -9223372036854775808.0", r));
  EXPECT_TRUE(Eval("amount > -1e300", r));
  // Fractions either side, negative numbers, and a double field against an int.
  r.SetInt(0, -3);
  EXPECT_TRUE(Eval("amount < -2.5", r));
  EXPECT_FALSE(Eval("amount < -3.5", r));
  EXPECT_TRUE(Eval("amount == -3.0", r));
  EXPECT_TRUE(Eval("fee > 1", r));
  EXPECT_TRUE(Eval("fee < amount + 5", r));
  // NaN is unordered: every comparison false but !=.
  r.SetDouble(1, std::numeric_limits<double>::quiet_NaN());
  EXPECT_FALSE(Eval("fee < 1", r));
  EXPECT_FALSE(Eval("fee >= 1", r));
  EXPECT_FALSE(Eval("fee == amount", r));
  EXPECT_TRUE(Eval("fee != amount", r));
}

TEST(ExpressionTest, AbsentFieldsMakeComparisonsFalse) {
  const TestRecord r = Sample();  // opt, opt_flag, opt_name absent
  for (const char* text : {"opt == 1", "opt != 1", "opt < 1", "opt >= 1", "opt + 1 > 0", "opt * 0 == 0",
                           "opt in (1, 2)", "opt not in (1, 2)", "opt_name == x", "opt_name != x",
                           "opt_name in (a)", "opt_name not in (a)", "opt_flag", "opt_flag == false",
                           "opt_flag != true", "opt == opt"}) {
    EXPECT_FALSE(Eval(text, r)) << text;
  }
  // `not` of a false comparison is true (the comparison is false, not unknown).
  EXPECT_TRUE(Eval("not opt == 1", r));
  EXPECT_TRUE(Eval("not opt_flag", r));
  EXPECT_TRUE(Eval("opt == 1 or amount == 250", r));
  // A map over an absent field is absent: the caller marks the record invalid.
  auto e = N("opt + amount");
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->Evaluate(r).present);
  TestRecord with = r;
  with.SetInt(8, 5);
  EXPECT_TRUE(e->Evaluate(with).present);
  EXPECT_EQ(e->Evaluate(with).i, 255);
  EXPECT_TRUE(Eval("opt == 5", with));
}

TEST(ExpressionTest, DivisionByZeroIsAbsent) {
  const TestRecord r = Sample();  // zero is 0
  for (const char* text : {"amount / zero", "amount % zero", "fee / zero", "fee % (zero * 1.0)", "1 / zero",
                           "1.0 / (zero * 1.0)", "(amount / zero) * 0", "amount / (1 - 1)"}) {
    auto e = N(text);
    ASSERT_TRUE(e.ok()) << text << ": " << e.status().ToString();
    EXPECT_FALSE(e->Evaluate(r).present) << text;
  }
  // A predicate over it is false either way round.
  EXPECT_FALSE(Eval("amount / zero == 0", r));
  EXPECT_FALSE(Eval("amount / zero != 0", r));
  EXPECT_TRUE(Eval("not amount / zero > 0", r));
  EXPECT_TRUE(Eval("zero == 0 or amount / zero > 1", r));
  EXPECT_EQ(N("amount / count")->Evaluate(r).i, 83);
}

TEST(ExpressionTest, DivisionByTheConstantZeroIsRefused) {
  // Absent for every record: a filter over it kept nothing, silently.
  for (const char* text : {"count % 0", "amount / 0", "1 / 0", "1.0 / 0.0", "fee % 0.0", "amount / -0", "amount / (0)"}) {
    auto e = N(text);
    ASSERT_FALSE(e.ok()) << text;
    EXPECT_NE(e.status().message().find("by the constant"), std::string::npos) << e.status().ToString();
  }
  auto c = C("count % 0 == 0");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("absent for every record"), std::string::npos) << c.status().ToString();
  EXPECT_TRUE(N("amount / 1").ok());
  EXPECT_TRUE(N("amount * 0").ok());
}

TEST(ExpressionTest, AndOrShortCircuitReadsNoMoreFields) {
  struct Counting : TestRecord {
    mutable int reads = 0;
    bool Present(int slot) const {
      ++reads;
      return TestRecord::Present(slot);
    }
  };
  Counting r;
  static_cast<TestRecord&>(r) = Sample();
  auto e = C("is_fraud and amount > 1 and currency == EUR");
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->Matches(r));
  EXPECT_EQ(r.reads, 1);
  r.reads = 0;
  auto o = C("flag or amount > 1");
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->Matches(r));
  EXPECT_EQ(r.reads, 1);
}

TEST(ExpressionTest, SlotsAndTypesAreReported) {
  auto e = C("amount > 1 and (currency == EUR or amount < ts)");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->type(), ValueType::kBool);
  EXPECT_EQ(e->slots(), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(N("fee + 1")->type(), ValueType::kDouble);
  EXPECT_EQ(N("ts + 1")->type(), ValueType::kInt64);
}

TEST(ExpressionTest, EveryErrorNamesTheProblemAndItsColumn) {
  const struct {
    bool numeric;
    const char* text;
    int column;
    const char* says;
  } cases[] = {
      {false, "a >= ", 1, "unknown field `a` (fields: amount, fee, currency"},
      {false, "amount >= ", 11, "expected a value"},
      {false, "", 1, "expected a value"},
      {false, "amount >= )", 11, "expected a value, found `)`"},
      {false, "amount > 1 and", 15, "expected a value"},
      {false, "amout > 1", 1, "unknown field `amout`"},
      {false, "amount > 1 and colour == red", 16, "unknown field `colour`"},
      {false, "amount > currency", 8, "cannot compare `amount` (int64) with `currency` (a string)"},
      {false, "5 == currency", 3, "cannot compare `5` (int64) with `currency` (a string)"},
      {false, "amount > \"x\"", 8, "cannot compare `amount` (int64) with `\"x\"` (a string)"},
      {false, "ts == 'yesterday'", 4, "cannot compare `ts` (timestamp) with `'yesterday'` (a string)"},
      {false, "is_fraud == 1", 10, "cannot compare `is_fraud` (a bool) with `1` (int64)"},
      {false, "not amount", 1, "`not` needs a condition, but `amount` is int64"},
      {false, "!fee", 1, "`!` needs a condition, but `fee` is double"},
      {false, "amount and flag", 8, "`and` joins conditions, but `amount` is int64"},
      {false, "flag or name", 6, "`or` joins conditions, but `name` is a string"},
      {false, "currency + 1 > 0", 10, "`+` needs numbers, but `currency` is a string"},
      {false, "-flag", 1, "`-` needs a number, but `flag` is a bool"},
      {false, "amount + 1", 1,
       "expected a condition, but `amount + 1` is int64 (compare it, e.g. `amount + 1 > 0`)"},
      {false, "currency", 1, "expected a condition, but `currency` is a string"},
      {true, "amount > 1", 1, "expected a number, but `amount > 1` is a condition"},
      {true, "name", 1, "expected a number, but `name` is a string"},
      {false, "(amount > 1", 12, "expected `)` to close the `(` at column 1, found the end"},
      {false, "amount > 1)", 11, "`)` without a matching `(`"},
      {false, "amount > 1 flag", 12, "unexpected `flag` after a complete expression"},
      {false, "1 < amount < 3", 12, "comparisons do not chain; join them with `and`"},
      {false, "amount = 1", 8, "`=` is not an operator (compare with `==`)"},
      {false, "flag & flag", 6, "`&` is not an operator (use `&&` or `and`)"},
      {false, "amount ~ 1", 8, "unexpected character `~`"},
      {false, "amount == 'New York", 11, "text starting here has no closing '"},
      {false, "currency in (\"EUR)", 14, "text starting here has no closing \""},
      {false, "amount > 12abc", 10, "`12abc` is not a number"},
      {false, "amount > 99999999999999999999", 10, "does not fit in an int64"},
      {false, "flag < is_fraud", 6, "`<` does not order conditions (use == or !=)"},
      {false, "amount in 1, 2", 11, "expected `(` after `in`"},
      {false, "amount in (1, x)", 15, "expected a number in the `in` list, found `x`"},
      {false, "amount in (1, 'x')", 15, "cannot compare `amount` (int64) with `'x'` (a string)"},
      {false, "amount in (1 2)", 14, "expected `,` or `)` in the `in` list, found `2`"},
      {false, "currency in ()", 14, "expected a value, found `)`"},
      {false, "flag in (true)", 6, "`in` lists numbers or text, but `flag` is a bool"},
      {false, "amount > 1 and and", 16, "expected a value, found `and`"},
      // A missing `and` made the rest one text literal: the filter kept
      // everything, in silence (a bug bash).
      {false, "currency != EUR amount > 100", 13,
       "`EUR amount > 100` is read as one piece of text, but it holds `>`: a missing `and` or `or`"},
      {false, "currency != EUR amount>=100", 13, "but it holds `amount>=100`"},
      {false, "name == New York)", 9, "`New York)` is read as text, but its parentheses do not pair up"},
      {false, "name != (New York", 9, "its parentheses do not pair up"},
  };
  for (const auto& c : cases) {
    auto e = c.numeric ? N(c.text) : C(c.text);
    ASSERT_FALSE(e.ok()) << c.text;
    EXPECT_EQ(e.status().code(), Status::Code::kInvalidArgument);
    const std::string prefix = std::string(c.numeric ? "map" : "filter") + " `" + c.text + "` at column " +
                               std::to_string(c.column) + ": ";
    EXPECT_THAT(e.status().message(), HasSubstr(prefix)) << c.text;
    EXPECT_THAT(e.status().message(), HasSubstr(c.says)) << c.text;
  }
}

TEST(ExpressionTest, DeepNestingIsRejectedNotACrash) {
  std::string deep(5000, '(');
  deep += "flag" + std::string(5000, ')');
  auto e = C(deep);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("nests too deeply"));
  std::string right = "amount";
  for (int i = 0; i < 60; ++i) right = "1 + (" + right + ")";
  auto r = N(right);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nests too deeply"));
  std::string left = "amount";
  for (int i = 0; i < 1000; ++i) left += " + 1";  // left-deep: two cells of stack
  auto l = N(left);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->Evaluate(Sample()).i, 1250);
}

TEST(ExpressionTest, CanonicalTextIgnoresLayoutNotMeaning) {
  auto canon = [](std::string_view text) {
    auto e = C(text);
    EXPECT_TRUE(e.ok()) << text << ": " << e.status().ToString();
    return e.ok() ? Canonical(*e) : std::string("<error>");
  };
  const std::vector<std::vector<const char*>> same = {
      {"amount>1 and count<2", "amount > 1  and  count < 2", " amount >1 AND count< 2 ",
       "amount > 1 && count < 2",
       "(amount > 1) and (count < 2)", "((amount > 1) and ((count < 2)))"},
      {"status != cancelled", "status != 'cancelled'", "status != \"cancelled\"", "status!=cancelled"},
      {"amount == 007", "amount == 7", "amount == '7'"},
      {"fee > 1.50", "fee > 1.5", "fee > 15e-1"},
      {"amount in (3, 1, 2, 1)", "amount in (1,2,3)"},
      {"currency in (USD, 'EUR')", "currency in (\"EUR\", USD)"},
      {"not flag", "!flag", "NOT flag"},
  };
  for (size_t g = 0; g < same.size(); ++g) {
    for (const char* text : same[g]) {
      EXPECT_EQ(canon(text), canon(same[g][0])) << text << " vs " << same[g][0];
    }
  }
  EXPECT_EQ(canon("amount>1 and count<2"), "((amount > 1) and (count < 2))");
  EXPECT_EQ(canon("status != cancelled"), "(status != \"cancelled\")");
  EXPECT_EQ(canon("name == 'say \"hi\"'"), "(name == 'say \"hi\"')");
  EXPECT_EQ(canon("amount in (3, 1, 2.5)"), "(amount in (1.0, 2.5, 3.0))");
  EXPECT_EQ(canon("-amount * 2 > -3"), "(((-amount) * 2) > -3)");
  // Different meanings, different text.
  const std::vector<std::pair<const char*, const char*>> differ = {
      {"amount > 1", "amount >= 1"},
      {"amount + count * 2 > 0", "(amount + count) * 2 > 0"},
      {"flag or is_fraud and flag", "(flag or is_fraud) and flag"},
      {"currency == EUR", "currency == eur"},
      {"amount in (1, 2)", "amount not in (1, 2)"},
      {"name == 'a b'", "name == 'a  b'"},
  };
  for (const auto& [a, b] : differ) EXPECT_NE(canon(a), canon(b)) << a << " vs " << b;
  auto n1 = N("amount/100 + fee");
  auto n2 = N("  amount / 100+fee ");
  ASSERT_TRUE(n1.ok() && n2.ok());
  EXPECT_EQ(Canonical(*n1), Canonical(*n2));
  EXPECT_EQ(Canonical(*n1), "((amount / 100) + fee)");
}

// ---- the original filter syntax keeps its meaning ----

// The fields ParsePredicate knows, resolved as the built-in record view will
// declare them: numeric fields int64, the rest text, slot = the Field's number.
FieldResolver LegacyResolver() {
  return [](std::string_view name) -> std::optional<std::pair<int, ValueType>> {
    auto f = ParseField(name);
    if (!f.ok() || IsKeyOnlyField(*f)) return std::nullopt;
    return std::make_pair(static_cast<int>(*f), IsNumericField(*f) ? ValueType::kInt64 : ValueType::kString);
  };
}

// Predicate semantics as operators/filter.cc evaluates them.
bool LegacyMatches(const Predicate& p, const TestRecord& r) {
  const int slot = static_cast<int>(p.field);
  auto cmp = [&](auto a, auto b) {
    switch (p.op) {
      case Predicate::Op::kEq: return a == b;
      case Predicate::Op::kNe: return a != b;
      case Predicate::Op::kLt: return a < b;
      case Predicate::Op::kLe: return a <= b;
      case Predicate::Op::kGt: return a > b;
      case Predicate::Op::kGe: return a >= b;
    }
    return false;
  };
  if (IsNumericField(p.field)) {
    const int64_t v = r.ints[slot];
    return cmp(p.modulus > 0 ? v % p.modulus : v, p.number);
  }
  return cmp(std::string_view(r.strs[slot]), std::string_view(p.text));
}

TEST(ExpressionTest, EveryPredicateTheOriginalSyntaxAcceptsMeansTheSame) {
  std::vector<std::string> names;
  for (int f = 0; f < kSlots; ++f) {
    auto name = FieldName(static_cast<Field>(f));
    if (name == "?") break;
    if (name != "partition") names.emplace_back(name);
  }
  ASSERT_GT(names.size(), 25u);
  const std::vector<std::string> ops = {"==", "!=", "<", "<=", ">", ">="};
  const std::vector<std::string> numbers = {"100",   "-5",     "0",
                                            "007",   "'100'",  "\"42\"",
                                            "9223372036854775807"};
  const std::vector<std::string> texts = {"approved", "cancelled", "refunded", "EUR", "'EUR'", "\"user-7\"",
                                          "user-7",   "New York",  "a@b.com",  "OR",  "bid",   "x,y",
                                          "a (b)",    "'it\"s'",  "status",   "in",  "not",   "-3",
                                          "person",   "1.5",       "\"a b\"",  "true"};
  const std::vector<std::string> text_pool = {"approved", "cancelled", "refunded", "EUR", "USD", "user-7",
                                              "New York", "a@b.com",   "OR",       "bid", "x,y", "a (b)",
                                              "",         "status",    "in",       "-3",  "a b", "auction"};
  std::mt19937_64 rng(12);
  std::vector<TestRecord> records(64);
  for (TestRecord& r : records) {
    for (int s = 0; s < kSlots; ++s) {
      r.SetInt(s, static_cast<int64_t>(rng() % 300) - 20);
      r.SetStr(s, text_pool[rng() % text_pool.size()]);
    }
    r.SetStr(static_cast<int>(Field::kType), std::vector<std::string>{"person", "auction", "bid"}[rng() % 3]);
  }
  std::vector<std::string> texts_to_try;
  for (const std::string& f : names) {
    const bool numeric = IsNumericField(*ParseField(f));
    for (const std::string& op : ops) {
      for (const std::string& v : numeric ? numbers : texts) {
        texts_to_try.push_back(f + " " + op + " " + v);
        texts_to_try.push_back("  " + f + op + v + "  ");
        texts_to_try.push_back(f + "  " + op + "\t" + v + " ");
        if (numeric) {
          texts_to_try.push_back(f + " % 7 " + op + " " + v);
          texts_to_try.push_back(f + "%123" + op + v);
        }
      }
    }
  }
  int accepted = 0;
  for (const std::string& text : texts_to_try) {
    auto legacy = ParsePredicate(text);
    if (!legacy.ok()) continue;
    ++accepted;
    auto e = Compile(text, LegacyResolver());
    ASSERT_TRUE(e.ok()) << text << ": " << e.status().ToString();
    for (const TestRecord& r : records) {
      ASSERT_EQ(e->Matches(r), LegacyMatches(*legacy, r)) << text;
    }
  }
  EXPECT_GT(accepted, 2000);
}

// Random strings from the pieces predicates are made of: every one the
// original syntax accepts means the same, except the documented cases (see
// operators/expression.h): a bare value holding the words and/or or `&&`/`||`,
// quoted text holding its own quote, and quoted text followed by more text.
TEST(ExpressionTest, RandomPredicatesTheOriginalSyntaxAcceptsMeanTheSame) {
  const std::vector<std::string> pieces = {
      "amount_cents", "currency", "status", "type", "auction", "state", "user_id", "price",  // fields first
      "==", "!=", "<", "<=", ">", ">=", "=", "!", " ", " ", "  ", "\t", "%", "0", "7", "123", "-", "-5",
      "'", "\"", "EUR", "and", "or", "OR", "(", ")", ",", "x y", "&", "|", "in", "not", ".", "1.5",
      "approved"};
  auto exception = [](const std::string& text, const Predicate& p) {
    if (IsNumericField(p.field)) return false;
    const std::string& v = p.text;
    static const std::regex kWord(R"(\s(and|or|AND|OR)(?![A-Za-z0-9_.]))");
    if (std::regex_search(v, kWord)) return true;
    if (v.find("&&") != std::string::npos || v.find("||") != std::string::npos) return true;
    // Quoted text holding a quote, or a value that only the legacy trimming
    // unquotes (`'a' 'b'`).
    const size_t op_end = text.find_first_not_of("=!<> \t", text.find_first_of("=!<>"));
    if (op_end != std::string::npos && (text[op_end] == '\'' || text[op_end] == '"')) {
      const size_t close = text.find(text[op_end], op_end + 1);
      if (close != std::string::npos && (v.find(text[op_end]) != std::string::npos ||
                                         text.find_first_not_of(" \t", close + 1) != std::string::npos)) {
        return true;
      }
    }
    return false;
  };
  std::mt19937_64 rng(7);
  std::vector<TestRecord> records(16);
  const std::vector<std::string> vals = {"EUR", "x y", "approved", "OR", "bid", "", "(", "7", "-5", "a'b"};
  for (TestRecord& r : records) {
    for (int s = 0; s < kSlots; ++s) {
      r.SetInt(s, static_cast<int64_t>(rng() % 300) - 20);
      r.SetStr(s, vals[rng() % vals.size()]);
    }
  }
  int accepted = 0, excepted = 0, refused = 0;
  for (int round = 0; round < 200000; ++round) {
    std::string text = pieces[rng() % 8];  // a field first, or nothing parses
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) text += pieces[rng() % pieces.size()];
    auto legacy = ParsePredicate(text);
    if (!legacy.ok()) continue;
    if (exception(text, *legacy)) {
      ++excepted;
      continue;
    }
    auto e = Compile(text, LegacyResolver());
    // Refused on purpose (operators/expression.h): bare text holding a
    // comparison in a later word, or unpaired parentheses, read as text by
    // the original syntax, is a likely missing `and`.
    if (!e.ok() && (e.status().message().find("is read as one piece of text, but it holds") != std::string::npos ||
                    e.status().message().find("its parentheses do not pair up") != std::string::npos)) {
      const std::string& v = legacy->text;
      const bool words_with_op = std::regex_search(v, std::regex(R"([ \t]\S*[=<>])"));
      const bool parens = std::count(v.begin(), v.end(), '(') != std::count(v.begin(), v.end(), ')') ||
                          v.find(')') < v.find('(');
      EXPECT_TRUE(words_with_op || parens) << "[" << text << "]: " << e.status().message();
      ++refused;
      continue;
    }
    ++accepted;
    ASSERT_TRUE(e.ok()) << "[" << text << "]: " << e.status().ToString();
    for (const TestRecord& r : records) {
      ASSERT_EQ(e->Matches(r), LegacyMatches(*legacy, r)) << "[" << text << "]";
    }
  }
  // The pieces make many multi-word values with operators ("x y", "=="),
  // now refused: fewer are left to compare than before.
  EXPECT_GT(accepted, 500);
  EXPECT_GT(refused, 0);
  EXPECT_LT(excepted, accepted / 10);
}

// ---- arithmetic against C++ ----

struct Gen {
  std::mt19937_64& rng;
  const TestRecord& r;
  // Returns the text; sets the expected value (absent on a zero divisor).
  std::string Make(int depth, bool& is_double, bool& present, int64_t& i, double& d) {
    auto space = [&] { return std::string(rng() % 3, ' '); };
    if (depth == 0 || rng() % 4 == 0) {
      present = true;
      switch (rng() % 6) {
        case 0: is_double = false; i = r.ints[0]; return "amount";
        case 1: is_double = false; i = r.ints[5]; return "count";
        case 2: is_double = true; d = r.doubles[1]; return "fee";
        case 3: is_double = true; d = r.doubles[6]; return "ratio";
        case 4: {
          is_double = false;
          i = static_cast<int64_t>(rng() % 2001) - 1000;
          return i < 0 ? "(" + std::to_string(i) + ")" : std::to_string(i);
        }
        default: {
          is_double = true;
          d = static_cast<double>(static_cast<int64_t>(rng() % 2001) - 1000) / 8;
          std::string s = FormatNumber(d);
          return d < 0 ? "(" + s + ")" : s;
        }
      }
    }
    bool ld, lp, rd, rp;
    int64_t li = 0, ri = 0;
    double lf = 0, rf = 0;
    const std::string l = Make(depth - 1, ld, lp, li, lf);
    const std::string rt = Make(depth - 1, rd, rp, ri, rf);
    const char op = "+-*/%"[rng() % 5];
    is_double = ld || rd;
    present = lp && rp;
    if (is_double) {
      const double a = ld ? lf : static_cast<double>(li), b = rd ? rf : static_cast<double>(ri);
      switch (op) {
        case '+': d = a + b; break;
        case '-': d = a - b; break;
        case '*': d = a * b; break;
        case '/': if (b == 0) present = false; else d = a / b; break;
        default: if (b == 0) present = false; else d = std::fmod(a, b); break;
      }
    } else {
      const uint64_t a = static_cast<uint64_t>(li), b = static_cast<uint64_t>(ri);
      switch (op) {
        case '+': i = static_cast<int64_t>(a + b); break;
        case '-': i = static_cast<int64_t>(a - b); break;
        case '*': i = static_cast<int64_t>(a * b); break;
        case '/':
          if (ri == 0) present = false;
          else i = ri == -1 ? static_cast<int64_t>(0 - a) : li / ri;
          break;
        default:
          if (ri == 0) present = false;
          else i = ri == -1 ? 0 : li % ri;
          break;
      }
    }
    // A constant 0 divisor is refused (DivisionByTheConstantZeroIsRefused);
    // a sum that is 0 keeps the division-by-zero case.
    const bool constant_zero = rt == "0" || rt == FormatNumber(0.0);
    const std::string divisor = (op == '/' || op == '%') && constant_zero ? "(" + rt + " + 0)" : rt;
    return "(" + space() + l + space() + op + space() + divisor + space() + ")";
  }
  static std::string FormatNumber(double d) {
    std::string s = std::to_string(d);  // multiples of 1/8 print exactly
    return s;
  }
};

TEST(ExpressionTest, RandomArithmeticAgreesWithCpp) {
  std::mt19937_64 rng(42);
  int checked = 0, absent = 0;
  for (int round = 0; round < 3000; ++round) {
    TestRecord r = Sample();
    r.SetInt(0, static_cast<int64_t>(rng() % 20001) - 10000);
    r.SetInt(5, static_cast<int64_t>(rng() % 7) - 3);  // often 0 or -1: the division edge cases
    r.SetDouble(1, static_cast<double>(static_cast<int64_t>(rng() % 401) - 200) / 4);
    r.SetDouble(6, rng() % 3 == 0 ? 0.0 : 0.125 * static_cast<double>(rng() % 17));
    Gen gen{rng, r};
    bool is_double, present;
    int64_t i = 0;
    double d = 0;
    const std::string text = gen.Make(1 + static_cast<int>(rng() % 5), is_double, present, i, d);
    auto e = N(text);
    ASSERT_TRUE(e.ok()) << text << ": " << e.status().ToString();
    ASSERT_EQ(e->type(), is_double ? ValueType::kDouble : ValueType::kInt64) << text;
    const ExprValue v = e->Evaluate(r);
    ASSERT_EQ(v.present, present) << text;
    if (!present) {
      ++absent;
      continue;
    }
    ++checked;
    if (is_double) {
      if (std::isnan(d)) {
        EXPECT_TRUE(std::isnan(v.d)) << text;
      } else {
        EXPECT_EQ(v.d, d) << text;  // the same IEEE operations in the same order
      }
    } else {
      EXPECT_EQ(v.i, i) << text;
    }
    // The same value compared in a predicate.
    if (!is_double) {
      auto p = C(text + " == " + std::to_string(i));
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      EXPECT_TRUE(p->Matches(r)) << text;
    }
  }
  EXPECT_GT(checked, 1000);
  EXPECT_GT(absent, 50);
}

}  // namespace
}  // namespace kappa::testing
