#include "engine/reinjected.h"

#include <algorithm>
#include <charconv>

#include "engine/job_spec.h"
#include "engine/task.h"

namespace kappa {

std::string RejectingVersion(const std::string& job, int32_t version) {
  return job + " v" + std::to_string(version);
}

bool RepeatOfProcessedRecord(const JobSpec& spec, int32_t partition, int64_t start_offset, int64_t copy_offset,
                             std::string_view source, std::string_view rejected_by, bool copied_before) {
  // "<topic>[<partition>]@<offset>": topic names hold no brackets.
  const size_t open = source.rfind('[');
  const size_t close = source.rfind("]@");
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return false;
  if (source.substr(0, open) != spec.source_topic) return false;  // re-injected from another topic (--any-source)
  int32_t p = -1;
  int64_t offset = -1;
  const char* p_begin = source.data() + open + 1;
  const char* p_end = source.data() + close;
  if (auto r = std::from_chars(p_begin, p_end, p); r.ec != std::errc() || r.ptr != p_end) return false;
  const char* o_begin = source.data() + close + 2;
  const char* o_end = source.data() + source.size();
  if (auto r = std::from_chars(o_begin, o_end, offset); r.ec != std::errc() || r.ptr != o_end) return false;
  if (p != partition || offset >= copy_offset) return false;
  // A version begun after the original processes its first copy, not this one.
  if (offset < start_offset && !copied_before) return false;
  const std::string self = RejectingVersion(spec.job, spec.version);
  for (size_t at = 0; at <= rejected_by.size();) {
    size_t comma = rejected_by.find(',', at);
    if (comma == std::string_view::npos) comma = rejected_by.size();
    if (rejected_by.substr(at, comma - at) == self) return false;
    at = comma + 1;
  }
  return true;
}

void ApplyReinjectionHeaders(const JobSpec& spec, Task* task, int64_t offset,
                             const std::function<std::string_view(const char* name)>& header) {
  auto number = [&](const char* name, int64_t* out) {
    const std::string_view t = header(name);
    auto r = std::from_chars(t.data(), t.data() + t.size(), *out);
    return !t.empty() && r.ec == std::errc() && r.ptr == t.data() + t.size() && *out >= 0;
  };
  int64_t retries = 0;
  if (!number(kRetryCountHeader, &retries)) return;
  int64_t first = 0;
  if (!number(kFirstFailureHeader, &first)) first = 0;
  task->SetLastRetry(static_cast<int32_t>(std::min<int64_t>(retries, 1 << 30)), first);
  if (RepeatOfProcessedRecord(spec, task->partition(), task->checkpoint().start_offset, offset,
                              header(kDlqSourceHeader), header(kDlqRejectedByHeader),
                              !header(kDlqCopiedBeforeHeader).empty())) {
    task->MarkLastRepeat();
  }
}

}  // namespace kappa
