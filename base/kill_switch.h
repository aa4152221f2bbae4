// Test-only crash injection: KAPPA_TEST_KILL_AT=<point>:<n> sends SIGKILL to
// this process the n-th time it reaches <point> (the job runner's
// before-flush, after-flush, after-commit; the archiver's
// archive-torn-block, archive-after-flush), so tests can kill -9 at exact
// awkward moments. Without the variable, At() is one string compare.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace kappa {

class KillSwitch {
 public:
  KillSwitch() {
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
  static void Kill(const char* point) {
    std::fprintf(stderr, "kappa: KAPPA_TEST_KILL_AT reached %s: SIGKILL\n", point);
    std::fflush(stderr);
    ::kill(::getpid(), SIGKILL);
  }
  void At(const char* point) {
    if (Reached(point)) Kill(point);
  }

 private:
  std::string point_;
  int remaining_ = 0;
};

}  // namespace kappa
