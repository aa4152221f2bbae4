// The expression compiler: a hand-written scanner and recursive-descent parser
// build a typed tree (types checked as it is built, so errors point at the
// operator or operand at fault), which is then emitted as postfix code with
// the int64 -> double conversions made explicit.
#include "operators/expression.h"

#include <cctype>
#include <charconv>
#include <map>

namespace kappa {

FieldResolver ResolverFor(std::vector<ExprField> fields) {
  return [fields = std::move(fields)](std::string_view name) -> std::optional<std::pair<int, ValueType>> {
    for (const ExprField& f : fields) {
      if (f.name == name) return std::make_pair(f.slot, f.type);
    }
    return std::nullopt;
  };
}

std::vector<std::string> FieldNames(const std::vector<ExprField>& fields) {
  std::vector<std::string> names;
  for (const ExprField& f : fields) names.push_back(f.name);
  return names;
}

std::string Canonical(const CompiledExpr& expr) { return expr.canonical_; }

namespace expr_internal {
namespace {

// Parser nesting (parentheses, `not`, unary minus) beyond this is rejected,
// so a hostile spec cannot overflow the compiler's stack.
constexpr int kMaxNesting = 100;

enum class K { kField, kInt, kDouble, kStr, kBool, kNeg, kArith, kCmp, kIn, kNot, kAnd, kOr };

struct Node {
  K k;
  ValueType type;   // kString, kInt64, kDouble or kBool (timestamps are kInt64)
  ValueType shown;  // as declared, for messages (timestamp)
  int begin = 0, end = 0;  // source span
  int l = -1, r = -1;
  int64_t i = 0;
  double d = 0;
  std::string s;  // field name or text
  int slot = 0;
  char op = 0;  // arithmetic: + - * / %
  Cmp cmp = Cmp::kEq;
  bool negate = false;       // `not in`
  std::vector<int> items;    // `in`: literal nodes
};

struct Token {
  enum Kind { kEnd, kIdent, kInt, kDouble, kString, kLParen, kRParen, kComma, kOp, kBad } kind = kEnd;
  int begin = 0, end = 0;
  std::string_view text;  // as written (a string token: its contents)
  std::string bad;        // kBad: what is wrong
};

bool IsIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }
bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

bool IsKeyword(std::string_view word, std::string_view lower) {
  if (word.size() != lower.size()) return false;
  bool all_lower = true, all_upper = true;
  for (size_t i = 0; i < word.size(); ++i) {
    all_lower = all_lower && word[i] == lower[i];
    all_upper = all_upper && word[i] == static_cast<char>(std::toupper(static_cast<unsigned char>(lower[i])));
  }
  return all_lower || all_upper;
}
bool IsAnyKeyword(std::string_view w) {
  for (std::string_view k : {"and", "or", "not", "in", "true", "false"}) {
    if (IsKeyword(w, k)) return true;
  }
  return false;
}

std::string FormatDouble(double d) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // stays a double when read back
  return s;
}

std::string Quote(std::string_view s) {
  const char q = s.find('"') == std::string_view::npos ? '"' : '\'';
  std::string out(1, q);
  out.append(s).push_back(q);
  return out;
}

}  // namespace

class Compiler {
 public:
  Compiler(std::string_view what, std::string_view text, const FieldResolver& resolve,
           const std::vector<std::string>& known)
      : what_(what), text_(text), resolve_(resolve), known_(known) {}

  Result<CompiledExpr> Run(bool numeric) {
    const int root = ParseOr();
    if (root >= 0) {
      const Token t = Peek();
      if (t.kind != Token::kEnd) {
        if (t.kind == Token::kBad) {
          Fail(t.begin, t.bad);
        } else if (t.kind == Token::kOp && IsCmpOp(t.text) && nodes_[root].k == K::kCmp) {
          Fail(t.begin, "comparisons do not chain; join them with `and`");
        } else if (t.kind == Token::kRParen) {
          Fail(t.begin, "`)` without a matching `(`");
        } else {
          Fail(t.begin, "unexpected " + Describe(t) +
                            " after a complete expression (join conditions with `and` or `or`)");
        }
      }
    }
    if (!error_.ok()) return error_;
    const Node& n = nodes_[root];
    if (!numeric && n.type != ValueType::kBool) {
      Fail(n.begin, "expected a condition, but " + Show(root) + " is " + TypeWord(root) +
                        (IsNumber(root) ? " (compare it, e.g. `" + Src(root) + " > 0`)" : ""));
      return error_;
    }
    if (numeric && !IsNumber(root)) {
      Fail(n.begin, "expected a number, but " + Show(root) + " is " + TypeWord(root));
      return error_;
    }
    CompiledExpr e;
    e.type_ = n.type;
    e.text_ = std::string(text_);
    Emit(root, e);
    if (!error_.ok()) return error_;
    for (const Node& x : nodes_) {
      if (x.k == K::kField) e.slots_.push_back(x.slot);
    }
    std::sort(e.slots_.begin(), e.slots_.end());
    e.slots_.erase(std::unique(e.slots_.begin(), e.slots_.end()), e.slots_.end());
    e.canonical_ = CanonicalOf(root);
    return e;
  }

 private:
  // ---- errors ----
  int Fail(int pos, const std::string& why) {
    if (error_.ok()) {
      error_ = Status::InvalidArgument(std::string(what_) + " `" + std::string(text_) + "` at column " +
                                       std::to_string(pos + 1) + ": " + why);
    }
    return -1;
  }
  std::string Src(int n) const {
    return std::string(text_.substr(nodes_[n].begin, nodes_[n].end - nodes_[n].begin));
  }
  std::string Show(int n) const { return "`" + Src(n) + "`"; }
  std::string TypeWord(int n) const {
    const Node& x = nodes_[n];
    if (x.type == ValueType::kBool) return x.k == K::kField ? "a bool" : "a condition";
    if (x.type == ValueType::kString) return "a string";
    return std::string(ValueTypeName(x.shown));
  }
  static std::string Describe(const Token& t) {
    if (t.kind == Token::kEnd) return "the end";
    if (t.kind == Token::kString) return "\"" + std::string(t.text) + "\"";
    return "`" + std::string(t.text) + "`";
  }
  bool IsNumber(int n) const {
    return nodes_[n].type == ValueType::kInt64 || nodes_[n].type == ValueType::kDouble;
  }
  static bool IsCmpOp(std::string_view op) {
    return op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=";
  }

  // ---- scanner ----
  int SkipSpace(int p) const {
    while (p < static_cast<int>(text_.size()) && IsSpace(text_[p])) ++p;
    return p;
  }
  Token Lex(int p) const {
    Token t;
    p = SkipSpace(p);
    t.begin = p;
    const int n = static_cast<int>(text_.size());
    auto done = [&](Token::Kind kind, int end) {
      t.kind = kind;
      t.end = end;
      t.text = text_.substr(t.begin, end - t.begin);
      return t;
    };
    if (p >= n) return done(Token::kEnd, p);
    const char c = text_[p];
    if (IsIdentStart(c)) {
      int e = p;
      while (e < n && IsIdentChar(text_[e])) ++e;
      return done(Token::kIdent, e);
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      int e = p;
      bool is_double = false;
      while (e < n && std::isdigit(static_cast<unsigned char>(text_[e]))) ++e;
      if (e + 1 < n && text_[e] == '.' && std::isdigit(static_cast<unsigned char>(text_[e + 1]))) {
        is_double = true;
        e += 1;
        while (e < n && std::isdigit(static_cast<unsigned char>(text_[e]))) ++e;
      }
      if (e < n && (text_[e] == 'e' || text_[e] == 'E')) {
        int x = e + 1;
        if (x < n && (text_[x] == '+' || text_[x] == '-')) ++x;
        if (x < n && std::isdigit(static_cast<unsigned char>(text_[x]))) {
          is_double = true;
          e = x;
          while (e < n && std::isdigit(static_cast<unsigned char>(text_[e]))) ++e;
        }
      }
      if (e < n && (IsIdentChar(text_[e]))) {
        while (e < n && IsIdentChar(text_[e])) ++e;
        done(Token::kBad, e);
        t.bad = "`" + std::string(t.text) + "` is not a number";
        return t;
      }
      return done(is_double ? Token::kDouble : Token::kInt, e);
    }
    if (c == '"' || c == '\'') {
      const size_t close = text_.find(c, p + 1);
      if (close == std::string_view::npos) {
        done(Token::kBad, n);
        t.bad = "text starting here has no closing " + std::string(1, c);
        return t;
      }
      done(Token::kString, static_cast<int>(close) + 1);
      t.text = text_.substr(p + 1, close - p - 1);
      return t;
    }
    if (c == '(') return done(Token::kLParen, p + 1);
    if (c == ')') return done(Token::kRParen, p + 1);
    if (c == ',') return done(Token::kComma, p + 1);
    const char d = p + 1 < n ? text_[p + 1] : '\0';
    for (std::string_view two : {"==", "!=", "<=", ">=", "&&", "||"}) {
      if (c == two[0] && d == two[1]) return done(Token::kOp, p + 2);
    }
    if (std::string_view("<>+-*/%!").find(c) != std::string_view::npos) return done(Token::kOp, p + 1);
    done(Token::kBad, p + 1);
    if (c == '=') {
      t.bad = "`=` is not an operator (compare with `==`)";
    } else if (c == '&' || c == '|') {
      t.bad = std::string("`") + c + "` is not an operator (use `" + c + c + "` or `" +
              (c == '&' ? "and" : "or") + "`)";
    } else {
      t.bad = "unexpected character `" + std::string(1, c) + "`";
    }
    return t;
  }
  Token Peek() const { return Lex(pos_); }
  void Advance(const Token& t) { pos_ = t.end; }
  bool PeekKeyword(std::string_view kw) const {
    const Token t = Peek();
    return t.kind == Token::kIdent && IsKeyword(t.text, kw);
  }
  bool PeekOp(std::string_view op) const {
    const Token t = Peek();
    return t.kind == Token::kOp && t.text == op;
  }
  // Where an operand was expected: say what is there instead.
  int ExpectedValue(const Token& t) {
    if (t.kind == Token::kBad) return Fail(t.begin, t.bad);
    if (t.kind == Token::kEnd) return Fail(t.begin, "expected a value");
    return Fail(t.begin, "expected a value, found " + Describe(t));
  }

  int Add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size()) - 1;
  }
  int Leaf(K k, ValueType type, const Token& t) {
    Node n;
    n.k = k;
    n.type = n.shown = type;
    n.begin = t.begin;
    n.end = t.end;  // a string token's span includes its quotes
    return Add(std::move(n));
  }
  int Binary(K k, ValueType type, int l, int r) {
    Node n;
    n.k = k;
    n.type = n.shown = type;
    n.l = l;
    n.r = r;
    n.begin = nodes_[l].begin;
    n.end = nodes_[r].end;
    return Add(std::move(n));
  }

  // ---- grammar ----
  int ParseOr() {
    int l = ParseAnd();
    while (l >= 0 && (PeekKeyword("or") || PeekOp("||"))) {
      const Token op = Peek();
      Advance(op);
      const int r = ParseAnd();
      if (r < 0) return -1;
      if (!CheckLogic(l, r, op)) return -1;
      l = Binary(K::kOr, ValueType::kBool, l, r);
    }
    return l;
  }
  int ParseAnd() {
    int l = ParseNot();
    while (l >= 0 && (PeekKeyword("and") || PeekOp("&&"))) {
      const Token op = Peek();
      Advance(op);
      const int r = ParseNot();
      if (r < 0) return -1;
      if (!CheckLogic(l, r, op)) return -1;
      l = Binary(K::kAnd, ValueType::kBool, l, r);
    }
    return l;
  }
  bool CheckLogic(int l, int r, const Token& op) {
    for (int side : {l, r}) {
      if (nodes_[side].type != ValueType::kBool) {
        Fail(op.begin, "`" + std::string(op.text) + "` joins conditions, but " + Show(side) + " is " +
                           TypeWord(side));
        return false;
      }
    }
    return true;
  }
  int ParseNot() {
    if (PeekKeyword("not") || PeekOp("!")) {
      const Token op = Peek();
      Advance(op);
      if (++depth_ > kMaxNesting) return Fail(op.begin, "expression nests too deeply");
      const int x = ParseNot();
      --depth_;
      if (x < 0) return -1;
      if (nodes_[x].type != ValueType::kBool) {
        return Fail(op.begin, "`" + std::string(op.text) + "` needs a condition, but " + Show(x) + " is " +
                                  TypeWord(x));
      }
      Node n;
      n.k = K::kNot;
      n.type = n.shown = ValueType::kBool;
      n.l = x;
      n.begin = op.begin;
      n.end = nodes_[x].end;
      return Add(std::move(n));
    }
    return ParseCompare();
  }

  int ParseCompare() {
    const int l = ParseSum();
    if (l < 0) return -1;
    Token t = Peek();
    if (t.kind == Token::kOp && IsCmpOp(t.text)) {
      Advance(t);
      const bool text_mode = nodes_[l].type == ValueType::kString && nodes_[l].k != K::kStr;
      const int r = text_mode ? ParseTextValue() : ParseSum();
      if (r < 0) return -1;
      static const std::map<std::string_view, Cmp> kOps = {{"==", Cmp::kEq}, {"!=", Cmp::kNe},
                                                          {"<", Cmp::kLt},  {"<=", Cmp::kLe},
                                                          {">", Cmp::kGt},  {">=", Cmp::kGe}};
      const Cmp cmp = kOps.at(t.text);
      if (!UnifyCompare(l, r, t, cmp)) return -1;
      const int n = Binary(K::kCmp, ValueType::kBool, l, r);
      nodes_[n].cmp = cmp;
      return n;
    }
    bool negate = false;
    Token first = t;
    if (t.kind == Token::kIdent && IsKeyword(t.text, "not")) {
      const Token next = Lex(t.end);
      // `a > 1 not b`: the caller reports the stray `not`.
      if (!(next.kind == Token::kIdent && IsKeyword(next.text, "in"))) return l;
      negate = true;
      t = next;
    }
    if (t.kind == Token::kIdent && IsKeyword(t.text, "in")) {
      Advance(t);
      return ParseInList(l, first, negate);
    }
    return l;
  }

  // `x in (a, b)`: literals only; bare words are text.
  int ParseInList(int l, const Token& op, bool negate) {
    const Token open = Peek();
    if (open.kind != Token::kLParen) {
      return Fail(open.begin, "expected `(` after `in`, as in `x in (1, 2)`, found " + Describe(open));
    }
    Advance(open);
    Node n;
    n.k = K::kIn;
    n.type = n.shown = ValueType::kBool;
    n.l = l;
    n.negate = negate;
    n.begin = nodes_[l].begin;
    const ValueType lt = nodes_[l].type;
    if (lt == ValueType::kBool) {
      return Fail(op.begin, "`in` lists numbers or text, but " + Show(l) + " is " + TypeWord(l));
    }
    for (;;) {
      int item;
      if (lt == ValueType::kString) {
        item = ParseTextValue(/*in_list=*/true);
      } else {
        item = ParseNumberLiteral();
      }
      if (item < 0) return -1;
      if (lt != ValueType::kString && !CoerceToNumber(item)) {
        return Fail(nodes_[item].begin,
                    "cannot compare " + Show(l) + " (" + TypeWord(l) + ") with " + Show(item) +
                        " (a string)");
      }
      n.items.push_back(item);
      const Token sep = Peek();
      Advance(sep);
      if (sep.kind == Token::kComma) continue;
      if (sep.kind == Token::kRParen) {
        n.end = sep.end;
        break;
      }
      if (sep.kind == Token::kBad) return Fail(sep.begin, sep.bad);
      return Fail(sep.begin, "expected `,` or `)` in the `in` list, found " + Describe(sep));
    }
    return Add(std::move(n));
  }

  // A number literal in an `in` list (a sign allowed), or a quoted literal.
  int ParseNumberLiteral() {
    Token t = Peek();
    bool minus = false;
    int begin = t.begin;
    if (t.kind == Token::kOp && t.text == "-") {
      minus = true;
      Advance(t);
      t = Peek();
    }
    if (t.kind == Token::kInt || t.kind == Token::kDouble) {
      Advance(t);
      const int n = NumberLeaf(t, minus);
      if (n >= 0) nodes_[n].begin = begin;
      return n;
    }
    if (t.kind == Token::kString && !minus) {
      Advance(t);
      const int n = Leaf(K::kStr, ValueType::kString, t);
      nodes_[n].s = std::string(t.text);
      return n;
    }
    if (t.kind == Token::kBad) return Fail(t.begin, t.bad);
    if (t.kind == Token::kEnd) return Fail(t.begin, "expected a value");
    return Fail(t.begin, "expected a number in the `in` list, found " + Describe(t));
  }

  // The right side of a comparison with a string field, or an item of its
  // `in` list: quoted text, or bare text as the original filter syntax read it.
  int ParseTextValue(bool in_list = false) {
    const int n = static_cast<int>(text_.size());
    const int start = SkipSpace(pos_);
    // An opening quote without a closing one is part of bare text, as the
    // original syntax read it (`name == 'x` is the text 'x).
    if (start < n && (text_[start] == '"' || text_[start] == '\'') &&
        (in_list || text_.find(text_[start], start + 1) != std::string_view::npos)) {
      const Token t = Lex(start);
      if (t.kind == Token::kBad) return Fail(t.begin, t.bad);
      Advance(t);
      const int x = Leaf(K::kStr, ValueType::kString, t);
      nodes_[x].s = std::string(t.text);
      return x;
    }
    int p = start;
    int local = 0;
    while (p < n) {
      const char c = text_[p];
      if (in_list && (c == ',' || c == ')' || IsSpace(c))) break;
      if (c == '(') ++local;
      if (c == ')') {
        if (local > 0) {
          --local;
        } else if (depth_parens_ > 0) {
          break;
        }
      }
      if ((c == '&' || c == '|') && p + 1 < n && text_[p + 1] == c) break;
      if (IsSpace(c)) {
        const Token w = Lex(p);
        if (w.kind == Token::kIdent && (IsKeyword(w.text, "and") || IsKeyword(w.text, "or"))) break;
        if (w.kind == Token::kOp && (w.text == "&&" || w.text == "||")) break;
      }
      ++p;
    }
    int end = p;
    while (end > start && IsSpace(text_[end - 1])) --end;
    if (end == start) {
      const Token t = Lex(start);
      return ExpectedValue(t);
    }
    // Bare text of several words that holds a comparison is a missing
    // `and`: `currency != EUR amount_cents > 100000` compared currency with
    // that whole text and filtered nothing, in silence (a bug bash); so was
    // a stray parenthesis (`status != cancelled)`). Quoted, it is text.
    if (!in_list) {
      const std::string_view bare = text_.substr(start, end - start);
      int open = 0;
      bool unbalanced = false;
      for (char c : bare) {
        if (c == '(') ++open;
        if (c == ')' && --open < 0) unbalanced = true;
      }
      if (unbalanced || open != 0) {
        return Fail(start, "`" + std::string(bare) +
                               "` is read as text, but its parentheses do not pair up; quote the text ('...') if "
                               "it is meant so");
      }
      size_t word = bare.find_first_of(" \t");
      while (word != std::string_view::npos) {
        const size_t begin = bare.find_first_not_of(" \t", word);
        if (begin == std::string_view::npos) break;
        const size_t stop = std::min(bare.find_first_of(" \t", begin), bare.size());
        const std::string_view w = bare.substr(begin, stop - begin);
        if (w.find_first_of("=<>") != std::string_view::npos || w.substr(0, 2) == "!=") {
          return Fail(start, "`" + std::string(bare) + "` is read as one piece of text, but it holds `" +
                                 std::string(w) +
                                 "`: a missing `and` or `or` between two conditions? Quote the text ('...') if it "
                                 "is meant so");
        }
        word = stop;
      }
    }
    pos_ = end;
    Node x;
    x.k = K::kStr;
    x.type = x.shown = ValueType::kString;
    x.begin = start;
    x.end = end;
    x.s = std::string(text_.substr(start, end - start));
    return Add(std::move(x));
  }

  int NumberLeaf(const Token& t, bool minus) {
    std::string digits = minus ? "-" : "";
    digits.append(t.text);
    if (t.kind == Token::kInt) {
      int64_t v = 0;
      auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v);
      if (r.ec != std::errc() || r.ptr != digits.data() + digits.size()) {
        return Fail(t.begin, "`" + digits + "` does not fit in an int64 (write it as a decimal, e.g. `" +
                                 digits + ".0`)");
      }
      const int n = Leaf(K::kInt, ValueType::kInt64, t);
      nodes_[n].i = v;
      return n;
    }
    double v = 0;
    auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (r.ec != std::errc() || !std::isfinite(v)) return Fail(t.begin, "`" + digits + "` is out of range");
    const int n = Leaf(K::kDouble, ValueType::kDouble, t);
    nodes_[n].d = v;
    return n;
  }

  // A quoted literal standing for a number (`amount_cents >= "100"`, which the
  // original syntax accepted): rewritten in place as the number.
  bool CoerceToNumber(int item) {
    Node& x = nodes_[item];
    if (x.k != K::kStr) return x.type == ValueType::kInt64 || x.type == ValueType::kDouble;
    int64_t v = 0;
    auto r = std::from_chars(x.s.data(), x.s.data() + x.s.size(), v);
    if (r.ec == std::errc() && r.ptr == x.s.data() + x.s.size() && !x.s.empty()) {
      x.k = K::kInt;
      x.type = x.shown = ValueType::kInt64;
      x.i = v;
      return true;
    }
    double d = 0;
    auto rd = std::from_chars(x.s.data(), x.s.data() + x.s.size(), d);
    if (rd.ec == std::errc() && rd.ptr == x.s.data() + x.s.size() && !x.s.empty() && std::isfinite(d)) {
      x.k = K::kDouble;
      x.type = x.shown = ValueType::kDouble;
      x.d = d;
      return true;
    }
    return false;
  }

  bool UnifyCompare(int l, int r, const Token& op, Cmp cmp) {
    const ValueType lt = nodes_[l].type, rt = nodes_[r].type;
    const bool ln = IsNumber(l), rn = IsNumber(r);
    auto mismatch = [&] {
      Fail(op.begin,
           "cannot compare " + Show(l) + " (" + TypeWord(l) + ") with " + Show(r) + " (" + TypeWord(r) + ")");
      return false;
    };
    if (ln && rn) return true;
    if (lt == ValueType::kString && rt == ValueType::kString) return true;
    if (lt == ValueType::kBool && rt == ValueType::kBool) {
      if (cmp == Cmp::kEq || cmp == Cmp::kNe) return true;
      Fail(op.begin, "`" + std::string(op.text) + "` does not order conditions (use == or !=)");
      return false;
    }
    if (ln && nodes_[r].k == K::kStr) return CoerceToNumber(r) || mismatch();
    if (rn && nodes_[l].k == K::kStr) return CoerceToNumber(l) || mismatch();
    return mismatch();
  }

  int ParseSum() {
    int l = ParseProduct();
    while (l >= 0 && (PeekOp("+") || PeekOp("-"))) {
      const Token op = Peek();
      Advance(op);
      const int r = ParseProduct();
      if (r < 0) return -1;
      l = Arith(l, r, op);
    }
    return l;
  }
  int ParseProduct() {
    int l = ParseUnary();
    while (l >= 0 && (PeekOp("*") || PeekOp("/") || PeekOp("%"))) {
      const Token op = Peek();
      Advance(op);
      const int r = ParseUnary();
      if (r < 0) return -1;
      l = Arith(l, r, op);
    }
    return l;
  }
  int Arith(int l, int r, const Token& op) {
    for (int side : {l, r}) {
      if (!IsNumber(side)) {
        return Fail(op.begin, "`" + std::string(op.text) + "` needs numbers, but " + Show(side) + " is " +
                                  TypeWord(side));
      }
    }
    // A division by a field that is 0 is absent for that record; by the
    // constant 0 it is absent for every record: a filter over it kept
    // nothing and a map dead-lettered everything, accepted without a word
    // (a bug bash: `auction % 0 == 0`).
    const Node& divisor = nodes_[r];
    if ((op.text == "/" || op.text == "%") &&
        ((divisor.k == K::kInt && divisor.i == 0) || (divisor.k == K::kDouble && divisor.d == 0.0))) {
      return Fail(op.begin, "`" + std::string(op.text) + "` by the constant " + Show(r) +
                                ": a division by zero is absent, so it would be absent for every record");
    }
    const bool dbl = nodes_[l].type == ValueType::kDouble || nodes_[r].type == ValueType::kDouble;
    const int n = Binary(K::kArith, dbl ? ValueType::kDouble : ValueType::kInt64, l, r);
    nodes_[n].op = op.text[0];
    return n;
  }
  int ParseUnary() {
    const Token t = Peek();
    if (t.kind == Token::kOp && t.text == "-") {
      Advance(t);
      const Token next = Peek();
      if ((next.kind == Token::kInt || next.kind == Token::kDouble) && next.begin == t.end) {
        // `-5` is one literal (so the smallest int64 can be written).
        Advance(next);
        const int n = NumberLeaf(next, true);
        if (n >= 0) nodes_[n].begin = t.begin;
        return n;
      }
      if (++depth_ > kMaxNesting) return Fail(t.begin, "expression nests too deeply");
      const int x = ParseUnary();
      --depth_;
      if (x < 0) return -1;
      if (!IsNumber(x)) return Fail(t.begin, "`-` needs a number, but " + Show(x) + " is " + TypeWord(x));
      Node n;
      n.k = K::kNeg;
      n.type = n.shown = nodes_[x].type;
      n.l = x;
      n.begin = t.begin;
      n.end = nodes_[x].end;
      return Add(std::move(n));
    }
    return ParsePrimary();
  }
  int ParsePrimary() {
    const Token t = Peek();
    switch (t.kind) {
      case Token::kInt:
      case Token::kDouble:
        Advance(t);
        return NumberLeaf(t, false);
      case Token::kString: {
        Advance(t);
        const int n = Leaf(K::kStr, ValueType::kString, t);
        nodes_[n].s = std::string(t.text);
        return n;
      }
      case Token::kLParen: {
        Advance(t);
        if (++depth_ > kMaxNesting) return Fail(t.begin, "expression nests too deeply");
        ++depth_parens_;
        const int x = ParseOr();
        --depth_parens_;
        --depth_;
        if (x < 0) return -1;
        const Token close = Peek();
        if (close.kind != Token::kRParen) {
          if (close.kind == Token::kBad) return Fail(close.begin, close.bad);
          return Fail(close.begin, "expected `)` to close the `(` at column " + std::to_string(t.begin + 1) +
                                       ", found " + Describe(close));
        }
        Advance(close);
        // The parentheses belong to the span, so messages quote `(a + b)`.
        nodes_[x].begin = t.begin;
        nodes_[x].end = close.end;
        return x;
      }
      case Token::kIdent: {
        if (IsKeyword(t.text, "true") || IsKeyword(t.text, "false")) {
          Advance(t);
          const int n = Leaf(K::kBool, ValueType::kBool, t);
          nodes_[n].i = IsKeyword(t.text, "true") ? 1 : 0;
          return n;
        }
        if (IsAnyKeyword(t.text)) return ExpectedValue(t);
        auto field = resolve_ ? resolve_(t.text) : std::nullopt;
        if (!field) {
          std::string why = "unknown field `" + std::string(t.text) + "`";
          if (!known_.empty()) {
            why += " (fields: ";
            for (size_t i = 0; i < known_.size(); ++i) why += (i ? ", " : "") + known_[i];
            why += ")";
          }
          return Fail(t.begin, why);
        }
        Advance(t);
        Node n;
        n.k = K::kField;
        n.shown = field->second;
        n.type = field->second == ValueType::kTimestamp ? ValueType::kInt64 : field->second;
        n.slot = field->first;
        n.s = std::string(t.text);
        n.begin = t.begin;
        n.end = t.end;
        return Add(std::move(n));
      }
      default:
        return ExpectedValue(t);
    }
  }

  // ---- code ----
  void Push(CompiledExpr& e, Instr in, int delta) {
    e.code_.push_back(in);
    sp_ += delta;
    if (sp_ > kMaxStack) Fail(0, "expression nests too deeply");
  }
  void EmitAs(int n, ValueType want, CompiledExpr& e) {
    const Node& x = nodes_[n];
    if (want == ValueType::kDouble && x.type == ValueType::kInt64) {
      if (x.k == K::kInt) {
        e.doubles_.push_back(static_cast<double>(x.i));
        Push(e, {Op::kConstDouble, Cmp::kEq, false, static_cast<int32_t>(e.doubles_.size() - 1)}, 1);
        return;
      }
      Emit(n, e);
      Push(e, {Op::kIntToDouble}, 0);
      return;
    }
    Emit(n, e);
  }
  void Emit(int n, CompiledExpr& e) {
    const Node& x = nodes_[n];
    auto idx = [](size_t size) { return static_cast<int32_t>(size - 1); };
    switch (x.k) {
      case K::kField: {
        Op op = Op::kLoadInt;
        if (x.type == ValueType::kDouble) op = Op::kLoadDouble;
        if (x.type == ValueType::kString) op = Op::kLoadStr;
        if (x.type == ValueType::kBool) op = Op::kLoadBool;
        Push(e, {op, Cmp::kEq, false, x.slot}, 1);
        return;
      }
      case K::kInt:
        e.ints_.push_back(x.i);
        Push(e, {Op::kConstInt, Cmp::kEq, false, idx(e.ints_.size())}, 1);
        return;
      case K::kDouble:
        e.doubles_.push_back(x.d);
        Push(e, {Op::kConstDouble, Cmp::kEq, false, idx(e.doubles_.size())}, 1);
        return;
      case K::kStr:
        e.strings_.push_back(x.s);
        Push(e, {Op::kConstStr, Cmp::kEq, false, idx(e.strings_.size())}, 1);
        return;
      case K::kBool:
        Push(e, {Op::kConstBool, Cmp::kEq, false, static_cast<int32_t>(x.i)}, 1);
        return;
      case K::kNeg:
        EmitAs(x.l, x.type, e);
        Push(e, {x.type == ValueType::kDouble ? Op::kNegD : Op::kNegI}, 0);
        return;
      case K::kArith: {
        EmitAs(x.l, x.type, e);
        EmitAs(x.r, x.type, e);
        const bool d = x.type == ValueType::kDouble;
        Op op = d ? Op::kAddD : Op::kAddI;
        if (x.op == '-') op = d ? Op::kSubD : Op::kSubI;
        if (x.op == '*') op = d ? Op::kMulD : Op::kMulI;
        if (x.op == '/') op = d ? Op::kDivD : Op::kDivI;
        if (x.op == '%') op = d ? Op::kModD : Op::kModI;
        Push(e, {op}, -1);
        return;
      }
      case K::kCmp: {
        const ValueType ct = CompareType(x.l, x.r);
        const ValueType lt = nodes_[x.l].type, rt = nodes_[x.r].type;
        if (ct == ValueType::kDouble && (lt == ValueType::kInt64) != (rt == ValueType::kInt64)) {
          // An int64 with a double: compared exactly, each as it is.
          Emit(x.l, e);
          Emit(x.r, e);
          Push(e, {lt == ValueType::kInt64 ? Op::kCmpID : Op::kCmpDI, x.cmp}, -1);
          return;
        }
        EmitAs(x.l, ct, e);
        EmitAs(x.r, ct, e);
        Op op = Op::kCmpI;
        if (ct == ValueType::kDouble) op = Op::kCmpD;
        if (ct == ValueType::kString) {
          op = Op::kCmpS;
          const Node& l = nodes_[x.l];
          const Node& r = nodes_[x.r];
          const bool ordered = x.cmp != Cmp::kEq && x.cmp != Cmp::kNe;
          if (l.k == K::kField && r.k == K::kStr) e.text_comparisons_.push_back({l.slot, r.s, ordered});
          if (r.k == K::kField && l.k == K::kStr) e.text_comparisons_.push_back({r.slot, l.s, ordered});
        }
        if (ct == ValueType::kBool) op = Op::kCmpB;
        Push(e, {op, x.cmp}, -1);
        return;
      }
      case K::kIn: {
        const ValueType lt = InType(n);
        EmitAs(x.l, lt, e);
        Instr in{Op::kInI, Cmp::kEq, x.negate};
        if (lt == ValueType::kString) {
          in.op = Op::kInS;
          if (nodes_[x.l].k == K::kField) {
            for (int item : x.items) e.text_comparisons_.push_back({nodes_[x.l].slot, nodes_[item].s, false});
          }
          in.a = static_cast<int32_t>(e.strings_.size());
          for (int item : x.items) e.strings_.push_back(nodes_[item].s);
          std::sort(e.strings_.begin() + in.a, e.strings_.end());
          e.strings_.erase(std::unique(e.strings_.begin() + in.a, e.strings_.end()), e.strings_.end());
          in.b = static_cast<int32_t>(e.strings_.size()) - in.a;
        } else if (lt == ValueType::kDouble) {
          in.op = Op::kInD;
          in.a = static_cast<int32_t>(e.doubles_.size());
          for (int item : x.items) {
            const Node& it = nodes_[item];
            e.doubles_.push_back(it.type == ValueType::kDouble ? it.d : static_cast<double>(it.i));
          }
          std::sort(e.doubles_.begin() + in.a, e.doubles_.end());
          e.doubles_.erase(std::unique(e.doubles_.begin() + in.a, e.doubles_.end()), e.doubles_.end());
          in.b = static_cast<int32_t>(e.doubles_.size()) - in.a;
        } else {
          in.a = static_cast<int32_t>(e.ints_.size());
          for (int item : x.items) e.ints_.push_back(nodes_[item].i);
          std::sort(e.ints_.begin() + in.a, e.ints_.end());
          e.ints_.erase(std::unique(e.ints_.begin() + in.a, e.ints_.end()), e.ints_.end());
          in.b = static_cast<int32_t>(e.ints_.size()) - in.a;
        }
        Push(e, in, 0);
        return;
      }
      case K::kNot:
        Emit(x.l, e);
        Push(e, {Op::kNot}, 0);
        return;
      case K::kAnd:
      case K::kOr: {
        Emit(x.l, e);
        const size_t jump = e.code_.size();
        Push(e, {x.k == K::kAnd ? Op::kJumpIfFalseElsePop : Op::kJumpIfTrueElsePop}, -1);
        Emit(x.r, e);
        e.code_[jump].a = static_cast<int32_t>(e.code_.size());
        return;
      }
    }
  }
  ValueType CompareType(int l, int r) const {
    const ValueType lt = nodes_[l].type, rt = nodes_[r].type;
    if (lt == ValueType::kDouble || rt == ValueType::kDouble) return ValueType::kDouble;
    return lt;
  }
  ValueType InType(int n) const {
    const Node& x = nodes_[n];
    ValueType t = nodes_[x.l].type;
    for (int item : x.items) {
      if (nodes_[item].type == ValueType::kDouble) t = ValueType::kDouble;
    }
    return t;
  }

  // ---- canonical text ----
  std::string CanonicalOf(int n) const {
    const Node& x = nodes_[n];
    static constexpr const char* kCmpText[] = {"==", "!=", "<", "<=", ">", ">="};
    switch (x.k) {
      case K::kField: return x.s;
      case K::kInt: return std::to_string(x.i);
      case K::kDouble: return FormatDouble(x.d);
      case K::kStr: return Quote(x.s);
      case K::kBool: return x.i ? "true" : "false";
      case K::kNeg: return "(-" + CanonicalOf(x.l) + ")";
      case K::kArith: return "(" + CanonicalOf(x.l) + " " + x.op + " " + CanonicalOf(x.r) + ")";
      case K::kCmp:
        return "(" + CanonicalOf(x.l) + " " + kCmpText[static_cast<int>(x.cmp)] + " " + CanonicalOf(x.r) +
               ")";
      case K::kIn: {
        // The list as compiled: sorted, without repeats.
        const ValueType lt = InType(n);
        std::vector<std::string> items;
        if (lt == ValueType::kString) {
          for (int item : x.items) items.push_back(nodes_[item].s);
          std::sort(items.begin(), items.end());
          items.erase(std::unique(items.begin(), items.end()), items.end());
          for (auto& s : items) s = Quote(s);
        } else if (lt == ValueType::kDouble) {
          std::vector<double> v;
          for (int item : x.items) {
            const Node& it = nodes_[item];
            v.push_back(it.type == ValueType::kDouble ? it.d : static_cast<double>(it.i));
          }
          std::sort(v.begin(), v.end());
          v.erase(std::unique(v.begin(), v.end()), v.end());
          for (double d : v) items.push_back(FormatDouble(d));
        } else {
          std::vector<int64_t> v;
          for (int item : x.items) v.push_back(nodes_[item].i);
          std::sort(v.begin(), v.end());
          v.erase(std::unique(v.begin(), v.end()), v.end());
          for (int64_t i : v) items.push_back(std::to_string(i));
        }
        std::string out = "(" + CanonicalOf(x.l) + (x.negate ? " not in (" : " in (");
        for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
        return out + "))";
      }
      case K::kNot: return "(not " + CanonicalOf(x.l) + ")";
      case K::kAnd: return "(" + CanonicalOf(x.l) + " and " + CanonicalOf(x.r) + ")";
      case K::kOr: return "(" + CanonicalOf(x.l) + " or " + CanonicalOf(x.r) + ")";
    }
    return "?";
  }

  std::string_view what_;
  std::string_view text_;
  const FieldResolver& resolve_;
  const std::vector<std::string>& known_;
  std::vector<Node> nodes_;
  Status error_;
  int pos_ = 0;
  int depth_ = 0;
  int depth_parens_ = 0;
  int sp_ = 0;
};

}  // namespace expr_internal

Result<CompiledExpr> Compile(std::string_view text, const FieldResolver& resolve,
                             const std::vector<std::string>& known_fields) {
  return expr_internal::Compiler("filter", text, resolve, known_fields).Run(/*numeric=*/false);
}

Result<CompiledExpr> CompileNumeric(std::string_view text, const FieldResolver& resolve,
                                    const std::vector<std::string>& known_fields) {
  return expr_internal::Compiler("map", text, resolve, known_fields).Run(/*numeric=*/true);
}

}  // namespace kappa
