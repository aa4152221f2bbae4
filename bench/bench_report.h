// What every benchmark report starts with: the machine it ran on, and the
// helpers the runs are timed, measured and printed with. Shared by the
// benchmarks that write bench/results/*.md (replay_throughput,
// realkafka_bench, formats_bench, postgres_bench).
#pragma once

#include <sys/resource.h>
#include <sys/utsname.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
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

// printf of one number: Fmt(1.234) is "1.23".
inline std::string Fmt(double v, const char* f = "%.2f") {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// A rate for the tables: "3.46 M" or "812.5 k".
inline std::string Rate(double r) { return r >= 1e6 ? Fmt(r / 1e6) + " M" : Fmt(r / 1e3, "%.1f") + " k"; }

// User + system CPU seconds of this process so far.
inline double CpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A memory line of /proc/self/status in MB: "VmHWM:" (the peak RSS since the
// last ResetPeakRss) or "VmRSS:" (the RSS now); 0 if absent.
inline double ProcStatusMb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(std::strlen(field))) / 1024.0;
  }
  return 0;
}
inline void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }
inline double PeakRssMb() { return ProcStatusMb("VmHWM:"); }

}  // namespace kappa::bench
