// ConfigNode: a parsed configuration document as a plain tree of maps, lists
// and scalars, independent of the file format. The job spec loader builds it
// once from YAML (engine/job_spec.cc); every other layer reads its own
// section from the tree and never sees a YAML type. Each node knows where it
// came from (file, line, and its path in the document such as
// `operators[2].window.size`), so errors point at the spot. Immutable once
// built; safe to read from any thread.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace kappa {

class ConfigNode {
 public:
  enum class Kind { kNull, kScalar, kList, kMap };

  // Builders (the format's parser).
  ConfigNode(Kind kind, std::shared_ptr<const std::string> origin, std::string path, int line)
      : kind_(kind), origin_(std::move(origin)), path_(std::move(path)), line_(line) {}
  void set_scalar(std::string text) { scalar_ = std::move(text); }
  // `key` carries the key's own line (unknown keys are reported there).
  void AddEntry(ConfigNode key, ConfigNode value) { entries_.emplace_back(std::move(key), std::move(value)); }
  void AddItem(ConfigNode item) { items_.push_back(std::move(item)); }
  // The path of a child: "a.b" under a map, "a[3]" in a list.
  static std::string ChildPath(const std::string& parent, std::string_view key);
  static std::string ItemPath(const std::string& parent, size_t index);

  Kind kind() const { return kind_; }
  bool IsNull() const { return kind_ == Kind::kNull; }
  bool IsScalar() const { return kind_ == Kind::kScalar; }
  bool IsList() const { return kind_ == Kind::kList; }
  bool IsMap() const { return kind_ == Kind::kMap; }
  // "operators[2].window.size"; "" for the document.
  const std::string& path() const { return path_; }
  int line() const { return line_; }  // 1-based; 0 if unknown
  const std::string& origin() const { return *origin_; }

  // A scalar's text ("" for other kinds).
  const std::string& scalar() const { return scalar_; }
  // A list's items (empty for other kinds).
  const std::vector<ConfigNode>& items() const { return items_; }
  // A map's entries, in document order (empty for other kinds).
  const std::vector<std::pair<ConfigNode, ConfigNode>>& entries() const { return entries_; }
  size_t size() const { return IsMap() ? entries_.size() : items_.size(); }
  // The value of `key` in a map, or nullptr (also for other kinds).
  const ConfigNode* Find(std::string_view key) const;

  // InvalidArgument "<origin>:<line>: <what>" (the line left out if unknown).
  Status Error(std::string_view what) const;

  // Typed reads of a scalar; the errors name the path.
  Result<std::string> String() const;
  Result<int64_t> Int() const;
  Result<bool> Bool() const;  // true/false, yes/no, on/off, y/n
  Result<double> Double() const;

  // Helpers for a map's keys. `context` names the section in messages
  // ("dedup", "the job spec").
  // InvalidArgument unless this is a map whose keys are all in `allowed`.
  Status CheckKeys(std::initializer_list<std::string_view> allowed, std::string_view context) const;
  // The integer at `key`, or `fallback` when absent.
  Result<int64_t> IntAt(std::string_view key, int64_t fallback) const;
  // The duration at `key` (ParseDurationMs), or `fallback` when absent and
  // not `required`.
  Result<int64_t> DurationAt(std::string_view key, int64_t fallback, bool required) const;
  // The non-empty string at `key`; `context` prefixes the message.
  Result<std::string> RequiredStringAt(std::string_view key, std::string_view context) const;

 private:
  Kind kind_;
  std::shared_ptr<const std::string> origin_;
  std::string path_;
  int line_ = 0;
  std::string scalar_;
  std::vector<ConfigNode> items_;
  std::vector<std::pair<ConfigNode, ConfigNode>> entries_;
};

// The longest duration a spec may give: 36500d (100 years). Far beyond any
// window, TTL or lateness, and small enough that sums of event times and
// durations cannot overflow int64 milliseconds.
inline constexpr int64_t kMaxDurationMs = 36500LL * 24 * 3600 * 1000;

// "250ms", "5s", "10m", "1h", "2d", or a plain number of milliseconds, at
// most kMaxDurationMs (InvalidArgument naming the limit beyond it).
Result<int64_t> ParseDurationMs(const std::string& text);

}  // namespace kappa
