#include "base/status.h"

#include <sys/resource.h>

#include <cerrno>

namespace kappa {

std::string_view Status::CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kIOError: return "I/O error";
    case Code::kCorruption: return "corruption";
    case Code::kUnavailable: return "unavailable";
    case Code::kFailedPrecondition: return "failed precondition";
    case Code::kDataLoss: return "data loss";
    case Code::kAborted: return "aborted";
    case Code::kPermissionDenied: return "permission denied";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(CodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

std::string FileLimitHint(int err) {
  if (err == ENFILE) return " (the system cannot open another file: its file table is full)";
  if (err != EMFILE) return "";
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return " (this process cannot open another file: it has used its open-files limit, ulimit -n " +
         std::to_string(limit.rlim_cur) + "; raise it)";
}

}  // namespace kappa
