#include "formats/record_view.h"

#include <cctype>

namespace kappa {

std::optional<std::string> EnumLiteralMismatch(const FieldDecl& field, std::string_view enum_name,
                                               const std::vector<std::string_view>& symbols, bool every_literal) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  if (field.ordered_by_text) {
    // `level >= Mid` over {Low, Mid, High} dropped High ("High" < "Mid"), and
    // nothing said so (a bug bash).
    return "field `" + field.name + "` reads enum " + std::string(enum_name) +
           " by its symbols, and a filter orders it (<, <=, >, >=) against text: symbols would compare "
           "alphabetically, not by their values; compare with == / != / in, or declare the field int64 (the "
           "enum's value) to order it";
  }
  for (const std::string& literal : field.literals) {
    std::string_view other_case;
    bool exact = false;
    for (std::string_view symbol : symbols) {
      if (symbol == literal) exact = true;
      else if (lower(symbol) == lower(literal)) other_case = symbol;
    }
    if (exact || (other_case.empty() && !every_literal)) continue;
    std::string list;
    for (size_t i = 0; i < symbols.size() && i < 12; ++i) list += (i ? ", " : "") + std::string(symbols[i]);
    if (symbols.size() > 12) list += ", ...";
    std::string text = "field `" + field.name + "` reads enum " + std::string(enum_name) + " by its symbols (" +
                       list + "), and a filter compares it with `" + literal + "`, which is none of them: ";
    text += other_case.empty() ? "that comparison never holds; name one of the symbols"
                               : "symbols compare as written, case included; write `" + std::string(other_case) +
                                     "`";
    return text;
  }
  return std::nullopt;
}

std::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kString: return "string";
    case ValueType::kInt64: return "int64";
    case ValueType::kDouble: return "double";
    case ValueType::kBool: return "bool";
    case ValueType::kTimestamp: return "timestamp";
  }
  return "?";
}

namespace {

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
// (Howard Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool Digits(std::string_view s, size_t at, size_t n, int* out) {
  if (at + n > s.size()) return false;
  int v = 0;
  for (size_t k = at; k < at + n; ++k) {
    if (!std::isdigit(static_cast<unsigned char>(s[k]))) return false;
    v = v * 10 + (s[k] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::optional<int64_t> ParseIso8601Millis(std::string_view s) {
  int year, month, day, hour, minute, second;
  if (!Digits(s, 0, 4, &year) || s.size() < 19 || s[4] != '-' || !Digits(s, 5, 2, &month) || s[7] != '-' ||
      !Digits(s, 8, 2, &day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !Digits(s, 11, 2, &hour) ||
      s[13] != ':' || !Digits(s, 14, 2, &minute) || s[16] != ':' || !Digits(s, 17, 2, &second)) {
    return std::nullopt;
  }
  static constexpr int kMonthDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kMonthDays[month - 1] || hour > 23 || minute > 59 ||
      second > 60) {
    return std::nullopt;
  }
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && day == 29 && !leap) return std::nullopt;
  size_t i = 19;
  int64_t millis = 0;
  if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
    ++i;
    size_t digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (digits < 3) millis = millis * 10 + (s[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0) return std::nullopt;
    for (size_t k = digits; k < 3; ++k) millis *= 10;
  }
  int64_t offset_minutes = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    const int sign = s[i] == '-' ? -1 : 1;
    int oh, om;
    if (!Digits(s, i + 1, 2, &oh)) return std::nullopt;
    size_t at = i + 3;
    if (at < s.size() && s[at] == ':') ++at;
    if (!Digits(s, at, 2, &om) || oh > 23 || om > 59) return std::nullopt;
    offset_minutes = sign * (oh * 60 + om);
    i = at + 2;
  } else {
    return std::nullopt;  // a time without a zone is ambiguous: refused
  }
  if (i != s.size()) return std::nullopt;
  const int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  if (second == 60) {
    // A leap second exists only at 23:59:60 UTC, read as 23:59:59 (as
    // Java's Instant.parse reads it). Anywhere else :60 is not a time: it
    // was taken as the next minute's :00, moving its record into the next
    // window without a word (a bug bash).
    const int64_t utc_minute = ((hour * 60 + minute - offset_minutes) % 1440 + 1440) % 1440;
    if (utc_minute != 23 * 60 + 59) return std::nullopt;
    secs -= 1;
  }
  return secs * 1000 + millis;
}

std::string_view Iso8601Expectation(std::string_view text) {
  if (ParseIso8601Millis(std::string(text) + "Z")) {
    return "an ISO-8601 timestamp with its zone (Z or an offset such as +01:00; a local time is ambiguous)";
  }
  return "an ISO-8601 timestamp";
}

}  // namespace kappa
