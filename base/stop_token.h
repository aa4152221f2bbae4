// StopToken: a cooperative stop request, shared between whoever asks (a
// signal handler, a test, a supervising thread) and the loops that check it.
// The flag is a lock-free std::atomic<int>, so RequestStop() is safe to call
// from a signal handler and from any thread; checking costs one relaxed load.
#pragma once

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace kappa {

// The flag holds when the stop was first asked for (CLOCK_MONOTONIC, the
// steady clock's, in ns; never 0), so that a bound "N s after the stop
// request" counts from the request, not from whenever a waiter first looks
// (a bug bash: a commit blocked in librdkafka for 10 s saw the stop only
// then, and waited its 4 s bound again from there).
class StopSource {
 public:
  StopSource() = default;
  StopSource(const StopSource&) = delete;
  StopSource& operator=(const StopSource&) = delete;
  static_assert(std::atomic<int64_t>::is_always_lock_free, "RequestStop must be async-signal-safe");

  void RequestStop() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
    int64_t none = 0;
    requested_.compare_exchange_strong(none, static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec + 1,
                                       std::memory_order_relaxed);
  }
  bool stop_requested() const { return requested_.load(std::memory_order_relaxed) != 0; }

 private:
  friend class StopToken;
  std::atomic<int64_t> requested_{0};
};

// A view of a StopSource (or of nothing: never stops). Cheap to copy; the
// source must outlive it.
class StopToken {
 public:
  StopToken() = default;
  StopToken(const StopSource& source) : flag_(&source.requested_) {}  // NOLINT: implicit by design
  bool stop_requested() const { return flag_ && flag_->load(std::memory_order_relaxed) != 0; }
  // When the stop was requested, on the steady clock; nullopt-like max()
  // if it was not.
  std::chrono::steady_clock::time_point requested_at() const {
    const int64_t ns = flag_ ? flag_->load(std::memory_order_relaxed) : 0;
    if (ns == 0) return std::chrono::steady_clock::time_point::max();
    return std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::nanoseconds(ns - 1)));
  }

 private:
  const std::atomic<int64_t>* flag_ = nullptr;
};

// The process's own stop request (SIGINT/SIGTERM, once the command line has
// installed its handlers; never stops before): waits no StopToken reaches,
// such as the first look for a broker inside a Kafka client call, end on it.
inline StopToken& ProcessStopToken() {
  static StopToken token;
  return token;
}

}  // namespace kappa
