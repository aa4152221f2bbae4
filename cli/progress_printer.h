// How long-running commands show progress on a terminal: notes as one line
// each on stderr ("kappa run: ...", warnings marked WARNING), and status
// lines (percent done, rate, lag with the slowest partition, ETA, watermark,
// counters), rewritten in place when stderr is a terminal. The only place
// progress is formatted; the libraries hand over ProgressSnapshots.
#pragma once

#include <string>

#include "base/progress.h"

namespace kappa::cli {

// "1.23M", "45.6k", "789".
std::string HumanCount(double n);
// "2026-01-01T10:00:00Z", or "none" for 0.
std::string FormatTimeMs(int64_t ms);
// One status line (without a newline), e.g. "kappa run spend v2: 41.0% done, ...".
// `label` names what runs; `epoch` is shown when >= 0. The final line's
// rate is the run's mean, and says so.
std::string FormatStatusLine(const std::string& label, const ProgressSnapshot& snapshot, bool with_epoch,
                             bool final = false);

// Lines for stderr, written by a thread of their own: a job's thread never
// waits on stderr. With stderr on a pipe nobody read, the job stopped
// processing and checkpointing while /metrics served frozen numbers (a bug
// bash). Past 4 MiB waiting, lines are dropped and counted, and said once
// written again. Flush waits (at most max_ms) until what waits is written:
// before a command's last words, so that lines keep their order.
void WriteStderrLine(std::string line);
void FlushStderrLines(int max_ms = 2000);

// Prints notes on stderr as "<command>: <text>" ("<command>: WARNING <text>").
NoteCallback NotePrinter(const std::string& command);
// Prints status lines on stderr; on a terminal the line is rewritten in
// place until the final one.
ProgressReporter::StatusCallback StatusPrinter(const std::string& label, bool with_epoch);

}  // namespace kappa::cli
