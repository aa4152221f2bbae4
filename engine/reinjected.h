// Records `kappa dlq replay` re-injects into a source topic: what they
// carry besides their original key and bytes, and which version processes
// them. A re-injected record is a second copy of a record every version
// reading the topic may already have read: a version that read the
// original and did not dead-letter it (it accepted, filtered or deduped it)
// skips the copy as a repeat; the versions that dead-lettered the original,
// and those that began after its offset, process it. Without this a fixed
// version replayed from offset zero counted every re-injected record twice
// (a bug bash: 7,153 rows where the input gives 3,525).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kappa {

struct JobSpec;
class Task;

// How often the record failed so far and when it first did (decimal).
inline constexpr char kRetryCountHeader[] = "kappa.retry_count";
inline constexpr char kFirstFailureHeader[] = "kappa.first_failure_at_ms";
// The DLQ record it came from ("dlq[p]@o").
inline constexpr char kDlqRecordHeader[] = "kappa.dlq";
// The original record: "<topic>[<partition>]@<offset>".
inline constexpr char kDlqSourceHeader[] = "kappa.dlq_source";
// The versions that dead-lettered the original when it was re-injected:
// "<job> v<version>" joined by ",".
inline constexpr char kDlqRejectedByHeader[] = "kappa.dlq_rejected_by";

// Set ("1") on a copy of an original that an earlier replay already
// re-injected for other versions: only the versions it names process it.
// A version begun after the original processes the first copy only: two
// replays (one stopped, or filtered with --since, then another) each made
// a copy for the versions left, and a version begun after both counted
// the record twice (a bug bash: 1,821 of 111,689).
inline constexpr char kDlqCopiedBeforeHeader[] = "kappa.dlq_copied_before";

// "<job> v<version>" as kDlqRejectedByHeader lists it.
std::string RejectingVersion(const std::string& job, int32_t version);

// Whether the re-injected copy at `copy_offset` of `partition`, with the
// headers above (`source` and `rejected_by`, empty if absent;
// `copied_before`: kDlqCopiedBeforeHeader is set), is a repeat for the
// version of `spec` that began reading `partition` at `start_offset`: the
// original is in the same partition of the version's source topic, the
// version is not among those that dead-lettered it, and either the copy is
// not the original's first or the original is at or after where the
// version began and before the copy.
bool RepeatOfProcessedRecord(const JobSpec& spec, int32_t partition, int64_t start_offset, int64_t copy_offset,
                             std::string_view source, std::string_view rejected_by, bool copied_before = false);

// Reads a record's re-injection headers for the record `task` appended
// last, at `offset`: its retry count and first failure (Task::SetLastRetry)
// and, where RepeatOfProcessedRecord says so, Task::MarkLastRepeat.
// `header(name)`: the value of the last header of that name, empty if none.
// Records without kRetryCountHeader are left as they are. The Kafka and
// archive sources' one reader of these headers.
void ApplyReinjectionHeaders(const JobSpec& spec, Task* task, int64_t offset,
                             const std::function<std::string_view(const char* name)>& header);

}  // namespace kappa
