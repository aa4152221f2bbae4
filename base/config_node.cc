#include "base/config_node.h"

#include <cctype>
#include <charconv>
#include <cstdlib>

namespace kappa {
namespace {

std::string_view KindName(ConfigNode::Kind kind) {
  switch (kind) {
    case ConfigNode::Kind::kNull: return "empty";
    case ConfigNode::Kind::kScalar: return "a scalar";
    case ConfigNode::Kind::kList: return "a list";
    case ConfigNode::Kind::kMap: return "a mapping";
  }
  return "?";
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string ConfigNode::ChildPath(const std::string& parent, std::string_view key) {
  std::string path = parent;
  if (!path.empty()) path.push_back('.');
  path.append(key);
  return path;
}

std::string ConfigNode::ItemPath(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

const ConfigNode* ConfigNode::Find(std::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k.scalar_ == key) return &v;
  }
  return nullptr;
}

Status ConfigNode::Error(std::string_view what) const {
  std::string where = *origin_;
  if (line_ > 0) where.append(":").append(std::to_string(line_));
  return Status::InvalidArgument(where + ": " + std::string(what));
}

Result<std::string> ConfigNode::String() const {
  if (!IsScalar()) {
    return Error("`" + path_ + "` must be a single value, not " + std::string(KindName(kind_)));
  }
  return scalar_;
}

Result<int64_t> ConfigNode::Int() const {
  int64_t v = 0;
  std::string_view s = scalar_;
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  auto r = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (!IsScalar() || s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) {
    return Error("`" + path_ + "` must be an integer");
  }
  return v;
}

Result<bool> ConfigNode::Bool() const {
  const std::string s = Lower(scalar_);
  if (IsScalar()) {
    if (s == "true" || s == "yes" || s == "on" || s == "y") return true;
    if (s == "false" || s == "no" || s == "off" || s == "n") return false;
  }
  return Error("`" + path_ + "` must be true or false");
}

Result<double> ConfigNode::Double() const {
  char* end = nullptr;
  const double v = IsScalar() ? std::strtod(scalar_.c_str(), &end) : 0;
  if (!IsScalar() || scalar_.empty() || *end != '\0') return Error("`" + path_ + "` must be a number");
  return v;
}

Status ConfigNode::CheckKeys(std::initializer_list<std::string_view> allowed, std::string_view context) const {
  if (!IsMap()) return Error(std::string(context) + " must be a mapping");
  for (const auto& [key, value] : entries_) {
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || key.scalar_ == a;
    if (ok) continue;
    std::string list;
    for (std::string_view a : allowed) list.append(list.empty() ? "" : ", ").append(a);
    return key.Error("unknown key `" + key.scalar_ + "` in " + std::string(context) + " (expected one of: " + list +
                     ")");
  }
  return Status::OK();
}

Result<int64_t> ConfigNode::IntAt(std::string_view key, int64_t fallback) const {
  const ConfigNode* v = Find(key);
  if (v == nullptr) return fallback;
  auto n = v->Int();
  if (!n.ok()) return v->Error("`" + std::string(key) + "` must be an integer");
  return *n;
}

Result<int64_t> ConfigNode::DurationAt(std::string_view key, int64_t fallback, bool required) const {
  const std::string k(key);
  const ConfigNode* v = Find(key);
  if (v == nullptr) {
    if (required) return Error("needs `" + k + ":` (a duration like 1h)");
    return fallback;
  }
  if (!v->IsScalar()) return v->Error("`" + k + "` must be a duration like 5s");
  auto d = ParseDurationMs(v->scalar_);
  if (!d.ok()) return v->Error("`" + k + "`: " + d.status().message());
  return *d;
}

Result<std::string> ConfigNode::RequiredStringAt(std::string_view key, std::string_view context) const {
  const ConfigNode* v = Find(key);
  if (v == nullptr || !v->IsScalar() || v->scalar_.empty()) {
    return Error(std::string(context) + "needs `" + std::string(key) + ":` (a non-empty string)");
  }
  return v->scalar_;
}

Result<int64_t> ParseDurationMs(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return Status::InvalidArgument("'" + text + "' is not a duration (use e.g. 500ms, 5s, 10m, 1h, 1d)");
  const std::string unit = text.substr(i);
  int64_t scale = 0;
  if (unit.empty() || unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m" || unit == "min") scale = 60 * 1000;
  else if (unit == "h") scale = 3600 * 1000;
  else if (unit == "d") scale = 24 * 3600 * 1000LL;
  else return Status::InvalidArgument("'" + text + "': unknown unit '" + unit + "' (use ms, s, m, h or d)");
  int64_t n = 0;
  auto r = std::from_chars(text.data(), text.data() + i, n);
  // Out of int64's range, or beyond the limit once scaled (checked before
  // multiplying, so nothing overflows).
  if (r.ec != std::errc() || n > kMaxDurationMs / scale) {
    return Status::InvalidArgument("'" + text + "' is longer than the longest duration allowed, 36500d (100 years)");
  }
  return n * scale;
}

}  // namespace kappa
