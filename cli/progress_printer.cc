#include "cli/progress_printer.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
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
  // Whole seconds rounded down: -599999 ms is 23:50:00, not 23:50:01.
  std::time_t s = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : -((-(ms + 1)) / 1000) - 1);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string FormatStatusLine(const std::string& label, const ProgressSnapshot& s, bool with_epoch, bool final) {
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
  // The last line's rate is the run's mean (ProgressReporter::ReportFinal):
  // after an idle end, "10.5k rec/s" under lines of 0 read as a glitch (a
  // bug bash).
  // A scaled-out instance with no partitions (more instances than
  // partitions, or before its first assignment) read "100.0% done".
  char done[32] = "no partitions assigned";
  if (!s.partitions.empty()) std::snprintf(done, sizeof(done), "%.1f%% done", s.percent_done());
  std::snprintf(line, sizeof(line), "%s: %s, %s rec/s%s, in %s, ", label.c_str(), done,
                HumanCount(s.records_per_second).c_str(), final ? " over the run" : "", HumanCount(c.in).c_str());
  std::string out = line + lag_text;
  if (s.sink_waiting()) {
    // Nothing is read while the sink retries: a rate of 0 alone read as a stall.
    out += ", waiting " +
           std::to_string(std::max<int64_t>(0, s.checkpoint_ms - s.sink_waiting_since_ms) / 1000) +
           " s for PostgreSQL (" + s.sink_waiting_reason + ")";
  }
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

namespace {

class StderrLines {
 public:
  static StderrLines& Get() {
    static StderrLines* lines = new StderrLines();  // never destroyed: its thread may be in write()
    return *lines;
  }
  void Write(std::string line) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (bytes_ + line.size() > kMaxBytes) {
        ++dropped_;
        return;
      }
      bytes_ += line.size();
      lines_.push_back(std::move(line));
    }
    ready_.notify_one();
  }
  void Flush(int max_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    drained_.wait_for(lock, std::chrono::milliseconds(max_ms), [&] { return lines_.empty() && !writing_; });
  }

 private:
  static constexpr size_t kMaxBytes = size_t{4} << 20;
  StderrLines() { std::thread([this] { Run(); }).detach(); }
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      ready_.wait(lock, [&] { return !lines_.empty(); });
      std::string line = std::move(lines_.front());
      lines_.pop_front();
      bytes_ -= line.size();
      if (lines_.empty() && dropped_ > 0) {
        line += "kappa: " + std::to_string(dropped_) + " lines of output were dropped: stderr was not read\n";
        dropped_ = 0;
      }
      writing_ = true;
      lock.unlock();
      for (size_t done = 0; done < line.size();) {
        const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // stderr gone: nothing to tell
        done += static_cast<size_t>(n);
      }
      lock.lock();
      writing_ = false;
      if (lines_.empty()) drained_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable ready_, drained_;
  std::deque<std::string> lines_;
  size_t bytes_ = 0;
  int64_t dropped_ = 0;
  bool writing_ = false;
};

}  // namespace

void WriteStderrLine(std::string line) { StderrLines::Get().Write(std::move(line)); }
void FlushStderrLines(int max_ms) { StderrLines::Get().Flush(max_ms); }

NoteCallback NotePrinter(const std::string& command) {
  return [command](NoteLevel level, const std::string& text) {
    const char* prefix = level == NoteLevel::kError ? "ERROR " : level == NoteLevel::kWarning ? "WARNING " : "";
    WriteStderrLine(command + ": " + prefix + text + "\n");
  };
}

ProgressReporter::StatusCallback StatusPrinter(const std::string& label, bool with_epoch) {
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  return [label, with_epoch, terminal](const ProgressSnapshot& snapshot, bool final) {
    const std::string line = FormatStatusLine(label, snapshot, with_epoch, final);
    if (terminal && !final) {
      WriteStderrLine("\r" + line + "   ");
    } else {
      WriteStderrLine((terminal ? "\r" : "") + line + "\n");
    }
  };
}

}  // namespace kappa::cli
