// StopToken: a cooperative stop request, shared between whoever asks (a
// signal handler, a test, a supervising thread) and the loops that check it.
// The flag is a lock-free std::atomic<int>, so RequestStop() is safe to call
// from a signal handler and from any thread; checking costs one relaxed load.
#pragma once

#include <atomic>

namespace kappa {

class StopSource {
 public:
  StopSource() = default;
  StopSource(const StopSource&) = delete;
  StopSource& operator=(const StopSource&) = delete;
  static_assert(std::atomic<int>::is_always_lock_free, "RequestStop must be async-signal-safe");

  void RequestStop() { requested_.store(1, std::memory_order_relaxed); }
  bool stop_requested() const { return requested_.load(std::memory_order_relaxed) != 0; }

 private:
  friend class StopToken;
  std::atomic<int> requested_{0};
};

// A view of a StopSource (or of nothing: never stops). Cheap to copy; the
// source must outlive it.
class StopToken {
 public:
  StopToken() = default;
  StopToken(const StopSource& source) : flag_(&source.requested_) {}  // NOLINT: implicit by design
  bool stop_requested() const { return flag_ && flag_->load(std::memory_order_relaxed) != 0; }

 private:
  const std::atomic<int>* flag_ = nullptr;
};

// The process's own stop request (SIGINT/SIGTERM, once the command line has
// installed its handlers; never stops before): waits no StopToken reaches,
// such as the first look for a broker inside a Kafka client call, end on it.
inline StopToken& ProcessStopToken() {
  static StopToken token;
  return token;
}

}  // namespace kappa
