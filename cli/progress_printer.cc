#include "cli/progress_printer.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>

namespace kappa::cli {

std::string HumanCount(double n) {
  char buf[32];
  if (n >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
  else if (n >= 1e3) std::snprintf(buf, sizeof(buf), "%.1fk", n / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f", n);
  return buf;
}

std::string FormatTimeMs(int64_t ms) {
  if (ms == 0) return "none";
  // A bounded run's --final-watermark moves event time to the end of time
  // (less the allowed lateness): not a date (a bug bash saw the year
  // 292278994 in the status line).
  constexpr int64_t kYear10000Ms = 253402300800000;
  if (ms >= kYear10000Ms) return "end of input";
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string FormatStatusLine(const std::string& label, const ProgressSnapshot& s, bool with_epoch) {
  const RecordCounters& c = s.counters;
  char lag[192];
  std::string lag_text;
  if (s.source_unreachable()) {
    // The log ends are the last ones seen: "lag 0" would claim caught up.
    const long long seconds =
        static_cast<long long>(std::max<int64_t>(0, s.checkpoint_ms - s.source_unreachable_since_ms) / 1000);
    std::snprintf(lag, sizeof(lag), " for %lld s (last known %s, max p%d %s)", seconds,
                  HumanCount(s.total_lag()).c_str(), std::max(0, s.max_lag_partition()),
                  HumanCount(s.max_lag()).c_str());
    // A refused login is no broker away: waiting will not mend it.
    lag_text = "lag unknown: " +
               (s.source_unreachable_reason.empty() ? std::string("no Kafka broker has answered")
                                                    : s.source_unreachable_reason) +
               lag;
  } else {
    char eta[32] = "";
    if (s.total_lag() > 0 && s.eta_seconds() >= 0) std::snprintf(eta, sizeof(eta), ", ETA %.1f s", s.eta_seconds());
    std::snprintf(lag, sizeof(lag), "lag %s (max p%d %s%s)", HumanCount(s.total_lag()).c_str(),
                  std::max(0, s.max_lag_partition()), HumanCount(s.max_lag()).c_str(), eta);
    lag_text = lag;
  }
  char line[512];
  std::snprintf(line, sizeof(line), "%s: %.1f%% done, %s rec/s, in %s, ", label.c_str(), s.percent_done(),
                HumanCount(s.records_per_second).c_str(), HumanCount(c.in).c_str());
  std::string out = line + lag_text;
  if (!s.held_back.empty()) {
    // Not in the lag above: records this reader will not get (see the ERROR note).
    out += ", NOT READ (held back): " + s.held_back.front();
    if (s.held_back.size() > 1) out += " and " + std::to_string(s.held_back.size() - 1) + " more";
  }
  if (!with_epoch) return out;
  std::snprintf(line, sizeof(line),
                ", watermark %s, out %s, outputs %s, deduped %s, filtered %s, late %lld, dlq %lld, epoch %lld",
                FormatTimeMs(s.min_watermark_ms()).c_str(), HumanCount(c.out).c_str(), HumanCount(c.outputs).c_str(),
                HumanCount(c.deduped).c_str(), HumanCount(c.filtered).c_str(), static_cast<long long>(c.late),
                static_cast<long long>(c.dlq), static_cast<long long>(s.epoch));
  out += line;
  if (s.sink_rejected > 0) out += ", refused by the sink " + std::to_string(s.sink_rejected) + " (in the DLQ)";
  return out;
}

NoteCallback NotePrinter(const std::string& command) {
  return [command](NoteLevel level, const std::string& text) {
    const char* prefix = level == NoteLevel::kError ? "ERROR " : level == NoteLevel::kWarning ? "WARNING " : "";
    std::fprintf(stderr, "%s: %s%s\n", command.c_str(), prefix, text.c_str());
    std::fflush(stderr);
  };
}

ProgressReporter::StatusCallback StatusPrinter(const std::string& label, bool with_epoch) {
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  return [label, with_epoch, terminal](const ProgressSnapshot& snapshot, bool final) {
    const std::string line = FormatStatusLine(label, snapshot, with_epoch);
    if (terminal && !final) {
      std::fprintf(stderr, "\r%s   ", line.c_str());
    } else {
      std::fprintf(stderr, "%s%s\n", terminal ? "\r" : "", line.c_str());
    }
    std::fflush(stderr);
  };
}

}  // namespace kappa::cli
