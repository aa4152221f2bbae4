// What every benchmark report starts with: the machine it ran on, and the
// wall-clock helper the runs are timed with. Shared by
// the benchmarks that write bench/results/*.md (replay_throughput,
// realkafka_bench, formats_bench).
#pragma once

#include <sys/utsname.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace kappa::bench {

// Seconds of wall time since t.
inline double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The standard output of `cmd` (sh -c), without trailing newlines and spaces.
inline std::string Shell(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// "2 cores (AMD EPYC ...), 23.5 GiB, Linux 6.x".
inline std::string Machine() {
  utsname u{};
  ::uname(&u);
  std::string cpu = Shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
  std::string mem = Shell("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo");
  return std::to_string(std::thread::hardware_concurrency()) + " cores (" + (cpu.empty() ? "unknown CPU" : cpu.substr(1)) +
         "), " + mem + ", " + u.sysname + " " + u.release;
}

}  // namespace kappa::bench
