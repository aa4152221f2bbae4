// Time helpers shared by every layer: wall-clock milliseconds (for records
// and reports; never for processing decisions, which use event time), and a
// monotonic stopwatch for rates and durations. A Clock interface lets the
// checkpoint coordinator and the progress reporter be driven by a test.
#pragma once

#include <chrono>
#include <cstdint>

namespace kappa {

// Milliseconds since the Unix epoch, from the system clock.
inline int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Seconds elapsed on the monotonic clock since it was started or reset.
class Stopwatch {
 public:
  using Steady = std::chrono::steady_clock;
  Stopwatch() : start_(Steady::now()) {}
  void Reset() { start_ = Steady::now(); }
  double Seconds() const { return std::chrono::duration<double>(Steady::now() - start_).count(); }
  double Millis() const { return Seconds() * 1000; }

 private:
  Steady::time_point start_;
};

// Monotonic milliseconds, replaceable in tests. Thread-safe if the
// implementation is; SteadyClock is.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;
};

class SteadyClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static const SteadyClock& Instance() {
    static const SteadyClock clock;
    return clock;
  }
};

}  // namespace kappa
