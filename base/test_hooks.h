// Test hooks that steer control flow, like RocksDB's TEST_SYNC_POINT: they
// exist only in builds configured with KAPPA_TEST_HOOKS (CMake option, on
// by default; scripts/setup.sh turns it off for the release build the
// quickstart and the benchmark use, and the test build keeps it on). In a build
// without it every hook below compiles to nothing.
//
// KAPPA_TEST_KILL_AT=<point>:<n> sends SIGKILL to the process the n-th time
// it reaches <point> (the checkpoint coordinator's before-flush, after-flush,
// after-commit; the Kafka sink's mid-transaction; kappa dlq replay's
// dlq-replay-after-flush and dlq-replay-after-mark; the archive writer's
// archive-torn-block; archive --repair's repair-copied-aside,
// repair-moved-later and repair-cut), so the crash tests can kill -9 at exact awkward moments. Without the variable a hook is one
// string compare.
//
// KAPPA_TEST_KILL_SIGNAL=STOP makes that SIGSTOP: the process freezes at
// the point until a test sends SIGCONT.
//
// KAPPA_TEST_SIGNAL_AT=<point>:<n> sends the process SIGTERM the n-th time
// it reaches <point> and goes on: a user's Ctrl-C arriving at that exact
// moment, for the stories of a graceful stop.
//
// KAPPA_TEST_HANG_AT=<point> makes the thread that reaches <point> wait for
// ever instead (a wait inside a client library with no timeout), so the
// tests can show that a stop request still ends the process.
#pragma once

#if defined(KAPPA_TEST_HOOKS)

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace kappa {

class KillSwitch {
 public:
  KillSwitch() {
    if (const char* hang = std::getenv("KAPPA_TEST_HANG_AT")) hang_point_ = hang;
    if (const char* signal = std::getenv("KAPPA_TEST_SIGNAL_AT")) {
      std::string s(signal);
      const auto colon = s.find(':');
      signal_point_ = s.substr(0, colon);
      signal_remaining_ = colon == std::string::npos ? 1 : std::atoi(s.c_str() + colon + 1);
    }
    const char* env = std::getenv("KAPPA_TEST_KILL_AT");
    if (!env) return;
    std::string s(env);
    auto colon = s.find(':');
    point_ = s.substr(0, colon);
    remaining_ = colon == std::string::npos ? 1 : std::atoi(s.c_str() + colon + 1);
  }
  bool Armed(const char* point) const { return !point_.empty() && point_ == point; }
  // True when this call is the n-th arrival (the caller may then do its
  // damage before Kill()).
  bool Reached(const char* point) { return Armed(point) && --remaining_ == 0; }
  // With KAPPA_TEST_KILL_SIGNAL=STOP the process stops instead (SIGSTOP)
  // and goes on where it was once continued: frozen at that exact moment,
  // as a paused process or a long GC pause is, for as long as a test likes.
  static void Kill(const char* point) {
    const char* how = std::getenv("KAPPA_TEST_KILL_SIGNAL");
    const bool stop = how != nullptr && std::string(how) == "STOP";
    std::fprintf(stderr, "kappa: KAPPA_TEST_KILL_AT reached %s: %s\n", point, stop ? "SIGSTOP" : "SIGKILL");
    std::fflush(stderr);
    ::kill(::getpid(), stop ? SIGSTOP : SIGKILL);
  }
  void At(const char* point) {
    if (!hang_point_.empty() && hang_point_ == point) {
      std::fprintf(stderr, "kappa: KAPPA_TEST_HANG_AT reached %s: waiting for ever\n", point);
      std::fflush(stderr);
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    if (!signal_point_.empty() && signal_point_ == point && --signal_remaining_ == 0) {
      std::fprintf(stderr, "kappa: KAPPA_TEST_SIGNAL_AT reached %s: SIGTERM\n", point);
      std::fflush(stderr);
      ::kill(::getpid(), SIGTERM);
    }
    if (Reached(point)) Kill(point);
  }

 private:
  std::string hang_point_;
  std::string signal_point_;
  int signal_remaining_ = 0;
  std::string point_;
  int remaining_ = 0;
};

}  // namespace kappa

#define KAPPA_TEST_HOOKS_ENABLED 1
// Declares a member or local KillSwitch named `name` (nothing without hooks).
#define KAPPA_KILL_SWITCH(name) ::kappa::KillSwitch name
// Kills the process at `point` when KAPPA_TEST_KILL_AT says so.
#define KAPPA_KILL_POINT(ks, point) (ks).At(point)
// Evaluates to whether `point` is armed / reached (false without hooks).
#define KAPPA_KILL_ARMED(ks, point) (ks).Armed(point)
#define KAPPA_KILL_REACHED(ks, point) (ks).Reached(point)
#define KAPPA_KILL_NOW(point) ::kappa::KillSwitch::Kill(point)

#else

#define KAPPA_TEST_HOOKS_ENABLED 0
#define KAPPA_KILL_SWITCH(name) static_assert(true, "no test hooks in this build")
#define KAPPA_KILL_POINT(ks, point) ((void)0)
#define KAPPA_KILL_ARMED(ks, point) false
#define KAPPA_KILL_REACHED(ks, point) false
#define KAPPA_KILL_NOW(point) ((void)0)

#endif
