// Status: the result of an operation that can fail in an expected way (bad
// input, broker unreachable, invalid spec). Modelled on rocksdb::Status: a
// code plus a human message; exceptions are kept for bugs. Cheap to copy when
// ok. Not thread-safe to mutate, safe to share once built.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace kappa {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,    // the caller passed something wrong (flag, spec)
    kNotFound,           // a topic, file or key does not exist
    kIOError,            // disk or network failed
    kCorruption,         // stored data fails a checksum or verification
    kUnavailable,        // a broker or service cannot be reached (retryable)
    kFailedPrecondition, // state does not allow this (spec hash mismatch...)
    kDataLoss,           // history below the log start offset is gone
    kAborted,            // stopped by a signal or a fatal downstream error
    kPermissionDenied,   // the broker (or service) does not allow this principal to do it
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status FailedPrecondition(std::string msg) { return Status(Code::kFailedPrecondition, std::move(msg)); }
  static Status DataLoss(std::string msg) { return Status(Code::kDataLoss, std::move(msg)); }
  static Status Aborted(std::string msg) { return Status(Code::kAborted, std::move(msg)); }
  static Status PermissionDenied(std::string msg) { return Status(Code::kPermissionDenied, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // The same error, its message led by `context` ("stage 2: ...").
  Status WithContext(std::string_view context) const {
    return ok() ? *this : Status(code_, std::string(context) + message_);
  }
  std::string ToString() const;
  static std::string_view CodeName(Code code);

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the Status explaining why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() { return value_; }
  const T& value() const { return value_; }
  T& operator*() { return value_; }
  T* operator->() { return &value_; }

 private:
  Status status_;
  T value_{};
};

// For an errno from opening a file or socket: EMFILE names the process's
// open-files limit (ulimit -n, its value) and says to raise it, ENFILE the
// system's full file table, as " (...)"; anything else "".
std::string FileLimitHint(int err);

}  // namespace kappa

#define KAPPA_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::kappa::Status _st = (expr);          \
    if (!_st.ok()) return _st;             \
  } while (0)
