// Expressions over a record's declared fields: the boolean predicates of a
// `filter` ("amount > 100 and (currency in (EUR, USD) or not is_fraud)") and
// the numeric values a `map` computes ("amount_cents / 100 + fee").
//
// Fields are resolved by name at compile time to a slot and a type (a
// FieldResolver; the record view of the declared schema supplies it), so
// evaluation reads fields through an accessor by slot and never by name.
//
// Grammar, loosest binding first:
//   or      := and (('or' | '||') and)*
//   and     := not (('and' | '&&') not)*
//   not     := ('not' | '!') not | compare
//   compare := sum [OP sum | ['not'] 'in' '(' value (',' value)* ')']
//              OP one of == != < <= > >=
//   sum     := product (('+' | '-') product)*
//   product := unary (('*' | '/' | '%') unary)*
//   unary   := '-' unary | primary
//   primary := field | integer | decimal | "text" | 'text' | true | false | '(' or ')'
// Keywords are lowercase or uppercase (and, AND). Field names are letters,
// digits, `_` and `.` (payload.amount); a field cannot be named like a keyword.
//
// Meaning:
//  - Compile-time types: string, int64 (timestamps are int64 epoch ms), double
//    and bool. Comparing a string with a number, arithmetic on strings or
//    bools, `not` of a number, ordering bools are compile errors that name the
//    sides and the column.
//  - On the right of a comparison whose left side is a string field, a bare
//    value is text, as in the original filter syntax: `status != cancelled`,
//    `user_id == user-7`, `city == New York`. It runs to the end, to a `)`
//    closing an open parenthesis, or to a following `and`/`or`/`&&`/`||`
//    (its first word is always text: `state == OR`); a value holding those
//    words must be quoted. Quoted text cannot contain its own quote character
//    (use the other quote) nor be followed by more text (`'a' b`: the
//    original syntax read the text `'a' b`, this is an error); a quote that
//    is never closed is part of the bare text. In `in (...)` lists bare
//    words are text too. Bare text of several words with a comparison in a
//    later word (`currency != EUR amount > 100`: a missing `and`) or with
//    parentheses that do not pair up (`status != cancelled)`) is an error
//    naming it (the original syntax read it as text, and filtered nothing);
//    quoted, it is text.
//  - A quoted literal compared with an int64 field is read as an integer when
//    it is one (`amount_cents >= "100"`, as the original syntax accepted).
//  - Arithmetic on two int64s is int64 (wrapping on overflow; `/` truncates
//    toward zero, `%` has the sign of the dividend, as in C); with a double
//    on either side it is double. int64 compares with double as double.
//  - Absent values (SQL-like): a field that is not present in the record is
//    absent, and so is any arithmetic over it and any division or remainder
//    by zero (int or double). A comparison or `in` with an absent side is
//    false (so are `!=` and `not in`); an absent bool field is false where a
//    condition is expected. `not` of a false comparison is true. A map value
//    that is absent is reported as such (the caller marks the record invalid).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "formats/record_view.h"  // ValueType, ValueTypeName: the declared fields' types

namespace kappa {

// The slot and type of a declared field, or nullopt when no field has the name.
using FieldResolver = std::function<std::optional<std::pair<int, ValueType>>(std::string_view name)>;

// A declared field, for the resolver over a fixed list.
struct ExprField {
  std::string name;
  int slot = 0;
  ValueType type = ValueType::kInt64;
};
FieldResolver ResolverFor(std::vector<ExprField> fields);
std::vector<std::string> FieldNames(const std::vector<ExprField>& fields);

// The value of a numeric expression for one record.
struct ExprValue {
  bool present = false;    // false: a field was absent or a division was by zero
  bool is_double = false;  // the expression's type (CompiledExpr::type()) is double
  int64_t i = 0;           // when !is_double
  double d = 0;            // when is_double
  double AsDouble() const { return is_double ? d : static_cast<double>(i); }
};

namespace expr_internal {
enum class Op : uint8_t {
  kLoadInt, kLoadDouble, kLoadStr, kLoadBool,   // a: slot
  kConstInt, kConstDouble, kConstStr,           // a: index into ints_/doubles_/strings_
  kConstBool,                                   // a: 0 or 1
  kIntToDouble,                                 // the top of the stack
  kNegI, kNegD,
  kAddI, kSubI, kMulI, kDivI, kModI,
  kAddD, kSubD, kMulD, kDivD, kModD,
  kCmpI, kCmpD, kCmpS, kCmpB,                   // cmp: Cmp
  kCmpID, kCmpDI,                               // int64 with double (DI: double with int64), exactly
  kInI, kInD, kInS,                             // a: first, b: count (sorted); negate: `not in`
  kNot,
  kJumpIfFalseElsePop, kJumpIfTrueElsePop,      // a: target pc (`and`, `or`: short circuit)
};
enum class Cmp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };
struct Instr {
  Op op;
  Cmp cmp = Cmp::kEq;
  bool negate = false;
  int32_t a = 0;
  int32_t b = 0;
};
struct Cell {
  union {
    int64_t i;
    double d;
    bool b;
  };
  std::string_view s;
  bool present;
};
// Expressions nesting deeper than this are rejected at compile time.
constexpr int kMaxStack = 48;

// An int64 against a double, exactly: -1, 0 or 1 as i is below, equal to
// or above d; 2 if d is NaN. Not through (double)i, which rounds above 2^53
// (a bug bash: `amt > 9007199254740992.5` dropped 9007199254740993, and
// `amt < 9223372036854775808.0` dropped 2^63 - 1).
inline int CompareIntDouble(int64_t i, double d) {
  if (d != d) return 2;
  if (d >= 9223372036854775808.0) return -1;
  if (d < -9223372036854775808.0) return 1;
  const double f = std::floor(d);  // in [-2^63, 2^63): fits an int64
  const auto fi = static_cast<int64_t>(f);
  if (i != fi) return i < fi ? -1 : 1;
  return f == d ? 0 : -1;
}
// Whether a three-way result (2: unordered, as NaN is) satisfies cmp.
inline bool Satisfies(int r, Cmp cmp) {
  if (r == 2) return cmp == Cmp::kNe;
  switch (cmp) {
    case Cmp::kEq: return r == 0;
    case Cmp::kNe: return r != 0;
    case Cmp::kLt: return r < 0;
    case Cmp::kLe: return r <= 0;
    case Cmp::kGt: return r > 0;
    case Cmp::kGe: return r >= 0;
  }
  return false;
}

template <typename T>
inline bool Compare(const T& x, Cmp cmp, const T& y) {
  switch (cmp) {
    case Cmp::kEq: return x == y;
    case Cmp::kNe: return x != y;
    case Cmp::kLt: return x < y;
    case Cmp::kLe: return x <= y;
    case Cmp::kGt: return x > y;
    case Cmp::kGe: return x >= y;
  }
  return false;
}
inline bool Truth(const Cell& c) { return c.present && c.b; }
class Compiler;
}  // namespace expr_internal

// A compiled expression: flat postfix code over a fixed stack; evaluating it
// allocates nothing. Immutable and safe to share between threads.
class CompiledExpr {
 public:
  // kBool for Compile; kInt64 or kDouble for CompileNumeric.
  ValueType type() const { return type_; }
  const std::string& text() const { return text_; }
  // The slots of the fields the expression reads, sorted, without repeats.
  const std::vector<int>& slots() const { return slots_; }
  // Each text a string field is compared with (`==`, `<`, ... or `in`), for
  // the checks against an enum's symbols (EnumLiteralMismatch); `ordered`
  // for `<`, `<=`, `>`, `>=`.
  struct TextComparison {
    int slot = 0;
    std::string text;
    bool ordered = false;
  };
  const std::vector<TextComparison>& text_comparisons() const { return text_comparisons_; }

  // Accessor: bool Present(int slot), int64_t Int(int slot) (int64 and
  // timestamp fields), double Double(int slot), std::string_view Str(int
  // slot), bool Bool(int slot). Values are read only when Present.
  template <typename Accessor>
  bool Matches(Accessor&& a) const {
    expr_internal::Cell stack[expr_internal::kMaxStack];
    const int top = Run(a, stack);
    return expr_internal::Truth(stack[top]);
  }
  template <typename Accessor>
  ExprValue Evaluate(Accessor&& a) const {
    expr_internal::Cell stack[expr_internal::kMaxStack];
    const int top = Run(a, stack);
    ExprValue v;
    v.present = stack[top].present;
    v.is_double = type_ == ValueType::kDouble;
    if (v.present) {
      if (v.is_double) {
        v.d = stack[top].d;
      } else {
        v.i = stack[top].i;
      }
    }
    return v;
  }

 private:
  friend class expr_internal::Compiler;
  friend std::string Canonical(const CompiledExpr& expr);

  template <typename Accessor>
  int Run(Accessor& acc, expr_internal::Cell* st) const;

  ValueType type_ = ValueType::kBool;
  std::string text_;
  std::string canonical_;
  std::vector<int> slots_;
  std::vector<expr_internal::Instr> code_;
  std::vector<int64_t> ints_;
  std::vector<double> doubles_;
  std::vector<std::string> strings_;
  std::vector<TextComparison> text_comparisons_;
};

// A boolean predicate (a filter). Errors read
//   filter `a >= ` at column 6: expected a value
// `known_fields` is listed in the message for an unknown field.
Result<CompiledExpr> Compile(std::string_view text, const FieldResolver& resolve,
                             const std::vector<std::string>& known_fields = {});
// A numeric value (int64 or double; a map). Errors start with "map `...`".
Result<CompiledExpr> CompileNumeric(std::string_view text, const FieldResolver& resolve,
                                    const std::vector<std::string>& known_fields = {});

// A stable normal form for spec hashing: every operation parenthesized,
// keywords lowercase (`&&` is `and`), text double-quoted, numbers as values
// (`007` is 7, `1.50` is 1.5). Insensitive to whitespace, quoting of text and
// redundant parentheses.
std::string Canonical(const CompiledExpr& expr);

template <typename Accessor>
int CompiledExpr::Run(Accessor& acc, expr_internal::Cell* st) const {
  using expr_internal::Op;
  int sp = -1;  // index of the top cell
  const size_t n = code_.size();
  for (size_t pc = 0; pc < n; ++pc) {
    const expr_internal::Instr& in = code_[pc];
    switch (in.op) {
      case Op::kLoadInt: {
        auto& c = st[++sp];
        c.present = acc.Present(in.a);
        if (c.present) c.i = acc.Int(in.a);
        break;
      }
      case Op::kLoadDouble: {
        auto& c = st[++sp];
        c.present = acc.Present(in.a);
        if (c.present) c.d = acc.Double(in.a);
        break;
      }
      case Op::kLoadStr: {
        auto& c = st[++sp];
        c.present = acc.Present(in.a);
        if (c.present) c.s = acc.Str(in.a);
        break;
      }
      case Op::kLoadBool: {
        auto& c = st[++sp];
        c.present = acc.Present(in.a);
        if (c.present) c.b = acc.Bool(in.a);
        break;
      }
      case Op::kConstInt:
        st[++sp].i = ints_[in.a];
        st[sp].present = true;
        break;
      case Op::kConstDouble:
        st[++sp].d = doubles_[in.a];
        st[sp].present = true;
        break;
      case Op::kConstStr:
        st[++sp].s = strings_[in.a];
        st[sp].present = true;
        break;
      case Op::kConstBool:
        st[++sp].b = in.a != 0;
        st[sp].present = true;
        break;
      case Op::kIntToDouble:
        st[sp].d = static_cast<double>(st[sp].i);
        break;
      case Op::kNegI:
        st[sp].i = static_cast<int64_t>(0 - static_cast<uint64_t>(st[sp].i));
        break;
      case Op::kNegD:
        st[sp].d = -st[sp].d;
        break;
      case Op::kAddI:
      case Op::kSubI:
      case Op::kMulI:
      case Op::kDivI:
      case Op::kModI: {
        auto& x = st[sp - 1];
        const auto& y = st[sp--];
        x.present = x.present && y.present;
        if (!x.present) break;
        const uint64_t ux = static_cast<uint64_t>(x.i), uy = static_cast<uint64_t>(y.i);
        switch (in.op) {
          case Op::kAddI: x.i = static_cast<int64_t>(ux + uy); break;
          case Op::kSubI: x.i = static_cast<int64_t>(ux - uy); break;
          case Op::kMulI: x.i = static_cast<int64_t>(ux * uy); break;
          default:
            if (y.i == 0) {
              x.present = false;
            } else if (y.i == -1) {  // INT64_MIN / -1 overflows: wrap like the others
              x.i = in.op == Op::kDivI ? static_cast<int64_t>(0 - ux) : 0;
            } else {
              x.i = in.op == Op::kDivI ? x.i / y.i : x.i % y.i;
            }
        }
        break;
      }
      case Op::kAddD:
      case Op::kSubD:
      case Op::kMulD:
      case Op::kDivD:
      case Op::kModD: {
        auto& x = st[sp - 1];
        const auto& y = st[sp--];
        x.present = x.present && y.present;
        if (!x.present) break;
        switch (in.op) {
          case Op::kAddD: x.d += y.d; break;
          case Op::kSubD: x.d -= y.d; break;
          case Op::kMulD: x.d *= y.d; break;
          default:
            if (y.d == 0) {
              x.present = false;
            } else {
              x.d = in.op == Op::kDivD ? x.d / y.d : std::fmod(x.d, y.d);
            }
        }
        break;
      }
      case Op::kCmpI: {
        auto& x = st[sp - 1];
        const auto& y = st[sp--];
        x.b = x.present && y.present && expr_internal::Compare(x.i, in.cmp, y.i);
        x.present = true;
        break;
      }
      case Op::kCmpD: {
        auto& x = st[sp - 1];
        const auto& y = st[sp--];
        x.b = x.present && y.present && expr_internal::Compare(x.d, in.cmp, y.d);
        x.present = true;
        break;
      }
      case Op::kCmpID:
      case Op::kCmpDI: {
        auto& x = st[sp - 1];
        const auto& y = st[sp--];
        int r = in.op == Op::kCmpID ? expr_internal::CompareIntDouble(x.i, y.d)
                                    : expr_internal::CompareIntDouble(y.i, x.d);
        if (in.op == Op::kCmpDI && r != 2) r = -r;
        x.b = x.present && y.present && expr_internal::Satisfies(r, in.cmp);
        x.present = true;
        break;
      }
      case Op::kCmpS: {
        auto& x = st[sp - 1];
        const auto& y = st[sp--];
        x.b = x.present && y.present && expr_internal::Compare(x.s, in.cmp, y.s);
        x.present = true;
        break;
      }
      case Op::kCmpB: {
        auto& x = st[sp - 1];
        const auto& y = st[sp--];
        x.b = x.present && y.present && expr_internal::Compare(x.b, in.cmp, y.b);
        x.present = true;
        break;
      }
      case Op::kInI: {
        auto& x = st[sp];
        if (x.present) {
          const auto first = ints_.begin() + in.a;
          x.b = std::binary_search(first, first + in.b, x.i) != in.negate;
        } else {
          x.b = false;
        }
        x.present = true;
        break;
      }
      case Op::kInD: {
        auto& x = st[sp];
        if (x.present && x.d == x.d) {  // NaN is in no list and not in none
          const auto first = doubles_.begin() + in.a;
          x.b = std::binary_search(first, first + in.b, x.d) != in.negate;
        } else {
          x.b = false;
        }
        x.present = true;
        break;
      }
      case Op::kInS: {
        auto& x = st[sp];
        if (x.present) {
          const auto first = strings_.begin() + in.a;
          const std::string_view key = x.s;
          auto it = std::lower_bound(first, first + in.b, key, [](const std::string& e, std::string_view k) {
            return std::string_view(e) < k;
          });
          x.b = (it != first + in.b && std::string_view(*it) == key) != in.negate;
        } else {
          x.b = false;
        }
        x.present = true;
        break;
      }
      case Op::kNot:
        st[sp].b = !expr_internal::Truth(st[sp]);
        st[sp].present = true;
        break;
      case Op::kJumpIfFalseElsePop:
        if (!expr_internal::Truth(st[sp])) {
          st[sp].b = false;
          st[sp].present = true;
          pc = static_cast<size_t>(in.a) - 1;
        } else {
          --sp;
        }
        break;
      case Op::kJumpIfTrueElsePop:
        if (expr_internal::Truth(st[sp])) {
          pc = static_cast<size_t>(in.a) - 1;
        } else {
          --sp;
        }
        break;
    }
  }
  return sp;
}

}  // namespace kappa
