#include "replay/promotion.h"

#include <simdjson.h>

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <vector>

#include "base/test_hooks.h"
#include "kafka/kafka_client.h"
#include "kafka/topic_reader.h"
#include "replay/deployment.h"
#include "replay/pg_serving.h"
#include "schemas/window_aggregate_generated.h"
#include "state/state_backend.h"

namespace kappa {
namespace {

Result<std::map<std::string, std::string>> LatestByKey(const KafkaConfig& config, const std::string& topic) {
  std::map<std::string, std::string> rows;
  auto st = ReadTopic(config, topic, [&](const ConsumedRecord& r) { rows[std::string(r.key)] = std::string(r.value); });
  if (!st.ok()) {
    if (st.status().code() == Status::Code::kNotFound) return rows;  // nothing produced yet
    return st.status();
  }
  return rows;
}

const schema::WindowAggregate* AsWindow(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return schema::VerifyWindowAggregateBuffer(v) ? schema::GetWindowAggregate(bytes.data()) : nullptr;
}

// One column of a feature row written as JSON. Integers stay exact: an
// int64 feature (a wrapping sum) above 2^53 compared as a double hid its
// changes.
struct JsonColumn {
  enum class Kind { kInt, kDouble, kNull, kOther } kind = Kind::kOther;
  int64_t i = 0;
  double d = 0;
  std::string raw;  // kOther: the value as JSON text (text columns)
  bool numeric() const { return kind == Kind::kInt || kind == Kind::kDouble; }
  long double number() const { return kind == Kind::kInt ? static_cast<long double>(i) : d; }
};

// A feature row written as JSON (a flat object): its columns.
bool JsonColumns(simdjson::dom::parser& parser, const std::string& bytes, std::map<std::string, JsonColumn>* out) {
  out->clear();
  if (bytes.size() < 2 || bytes.front() != '{') return false;
  simdjson::dom::object obj;
  if (parser.parse(bytes).get_object().get(obj) != simdjson::SUCCESS) return false;
  for (auto field : obj) {
    JsonColumn c;
    if (field.value.is_int64()) {
      c.kind = JsonColumn::Kind::kInt;
      c.i = int64_t(field.value);
    } else if (field.value.is_null()) {
      c.kind = JsonColumn::Kind::kNull;
    } else if (field.value.get_double().get(c.d) == simdjson::SUCCESS) {
      c.kind = JsonColumn::Kind::kDouble;
    } else {
      c.raw = simdjson::minify(field.value);
    }
    (*out)[std::string(field.key)] = std::move(c);
  }
  return true;
}

bool SameColumn(const JsonColumn& x, const JsonColumn& y) {
  if (x.kind == JsonColumn::Kind::kInt && y.kind == JsonColumn::Kind::kInt) return x.i == y.i;
  if (x.numeric() && y.numeric()) return x.number() == y.number();  // 80-bit: exact for int64
  return x.kind == y.kind && x.raw == y.raw;
}

// "50.00"; past 1e15 in exponent form (%.2f of 1.7e308 is 300 digits),
// below 0.01 in significant digits (a drift of a ratio is not "0.00"), and
// what infinity stands for.
std::string Magnitude(double v) {
  if (std::isinf(v)) return "beyond the double range";
  char buf[64];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof(buf), a >= 1e15 ? "%.6g" : a != 0 && a < 0.01 ? "%.3g" : "%.2f", v);
  return buf;
}

// |x - y| without rounding it to nothing (80-bit: exact for int64, and
// past the double's range).
long double Distance(long double x, long double y) { return fabsl(x - y); }

}  // namespace

std::string OutputDiff::ToString() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "compared %lld rows: %lld equal, %lld changed (%.1f%%); only in serving %lld, only in candidate %lld",
                static_cast<long long>(compared), static_cast<long long>(equal), static_cast<long long>(changed),
                100 * changed_share(), static_cast<long long>(only_serving), static_cast<long long>(only_candidate));
  std::string out = buf;
  if (only_serving > 0 || only_candidate > 0) {
    std::snprintf(buf, sizeof(buf), "; rows that differ, counting those of one version only: %.1f%%",
                  100 * differing_share());
    out += buf;
  }
  if (compared == 0 && only_serving == 0 && only_candidate == 0) {
    // No window of either version has closed yet: the gate had nothing to
    // go by (a bug bash read "0 changed (0.0%)" as a clean diff).
    out += "; nothing to compare yet (neither version has written a row), so the diff checked nothing";
  }
  for (const auto& f : fields) {
    if (f.changed == 0) continue;
    std::snprintf(buf, sizeof(buf), "\n  %-6s changed in %lld rows", f.field.c_str(), static_cast<long long>(f.changed));
    out += buf;
    if (f.changed > f.number_null + f.text) {
      out += ", largest change " + Magnitude(f.largest) + ", mean change " + Magnitude(f.mean);
    }
    if (f.number_null > 0) {
      out += "; in " + std::to_string(f.number_null) +
             " of them one version has a number and the other null (NaN, or a double past its range)";
    }
    if (f.text > 0) out += "; in " + std::to_string(f.text) + " of them as text";
  }
  if (!columns_only_in_one.empty()) {
    out += "\n  columns in one version only (not compared): ";
    for (size_t i = 0; i < columns_only_in_one.size(); ++i) out += (i ? ", " : "") + columns_only_in_one[i];
  }
  return out;
}

Result<OutputDiff> CompareOutputs(const KafkaConfig& config, const std::string& serving_topic,
                                  const std::string& candidate_topic) {
  auto a = LatestByKey(config, serving_topic);
  if (!a.ok()) return a.status();
  auto b = LatestByKey(config, candidate_topic);
  if (!b.ok()) return b.status();
  OutputDiff diff;
  const char* names[] = {"count", "sum", "min", "max", "avg"};
  std::vector<long double> total(5, 0);
  std::vector<int64_t> measured(5, 0);  // changes with a magnitude (both numbers)
  diff.fields.resize(5);
  for (int i = 0; i < 5; ++i) diff.fields[i].field = names[i];
  simdjson::dom::parser parser;
  std::map<std::string, JsonColumn> jx, jy;
  std::map<std::string, size_t> feature_index;  // JSON feature column -> its entry in diff.fields
  std::set<std::string> only_in_one;
  auto field_slot = [&](const std::string& name) -> size_t {
    auto slot = feature_index.try_emplace(name, diff.fields.size());
    if (slot.second) {
      diff.fields.push_back(FieldChange{});
      diff.fields.back().field = name;
      total.push_back(0);
      measured.push_back(0);
    }
    return slot.first->second;
  };
  auto add_change = [&](size_t i, long double d) {
    ++diff.fields[i].changed;
    ++measured[i];
    // A double: infinity past its range, which the report names.
    diff.fields[i].largest = std::max(diff.fields[i].largest, static_cast<double>(d));
    total[i] += d;
  };
  for (const auto& [key, value] : *a) {
    auto it = b->find(key);
    if (it == b->end()) {
      ++diff.only_serving;
      continue;
    }
    ++diff.compared;
    if (it->second == value) {
      ++diff.equal;
      continue;
    }
    const auto* x = AsWindow(value);
    const auto* y = AsWindow(it->second);
    if (!x || !y) {
      // Feature rows in JSON: the change per named column. The same values
      // written differently are equal (a whole double as "9" by a kappa
      // before 2026-12-06, "9.0" now; columns in another order).
      const bool json = JsonColumns(parser, value, &jx) && JsonColumns(parser, it->second, &jy);
      if (json && jx.size() == jy.size() &&
          std::all_of(jx.begin(), jx.end(), [&](const auto& column) {
            auto other = jy.find(column.first);
            return other != jy.end() && SameColumn(column.second, other->second);
          })) {
        ++diff.equal;
        continue;
      }
      ++diff.changed;
      if (json) {
        for (const auto& [name, vx] : jx) {
          auto vy = jy.find(name);
          if (vy == jy.end()) {
            only_in_one.insert(name);
            continue;
          }
          if (SameColumn(vx, vy->second)) continue;
          const size_t i = field_slot(name);
          if (vx.numeric() && vy->second.numeric()) {
            add_change(i, Distance(vx.number(), vy->second.number()));
          } else {
            ++diff.fields[i].changed;
            const bool number_null = (vx.numeric() && vy->second.kind == JsonColumn::Kind::kNull) ||
                                     (vy->second.numeric() && vx.kind == JsonColumn::Kind::kNull);
            ++(number_null ? diff.fields[i].number_null : diff.fields[i].text);
          }
        }
        for (const auto& [name, vy] : jy) {
          if (!jx.count(name)) only_in_one.insert(name);
        }
      }
      continue;
    }
    ++diff.changed;
    // Exact for the int64 aggregates: a double hid changes past 2^53.
    const long double dx[] = {static_cast<long double>(x->count()), static_cast<long double>(x->sum()),
                              static_cast<long double>(x->min()), static_cast<long double>(x->max()), x->avg()};
    const long double dy[] = {static_cast<long double>(y->count()), static_cast<long double>(y->sum()),
                              static_cast<long double>(y->min()), static_cast<long double>(y->max()), y->avg()};
    for (int i = 0; i < 5; ++i) {
      if (dx[i] == dy[i]) continue;
      add_change(static_cast<size_t>(i), Distance(dx[i], dy[i]));
    }
  }
  for (const auto& [key, value] : *b) {
    if (!a->count(key)) ++diff.only_candidate;
  }
  for (size_t i = 0; i < diff.fields.size(); ++i) {
    // The sum in 80 bits: changes near the double range add past it.
    if (measured[i]) diff.fields[i].mean = static_cast<double>(total[i] / static_cast<long double>(measured[i]));
  }
  diff.columns_only_in_one.assign(only_in_one.begin(), only_in_one.end());
  return diff;
}

Status RefreshLogEnds(const KafkaConfig& config, const std::string& topic, ProgressSnapshot* snapshot) {
  auto consumer = CreateClient(ClientKind::kConsumer, config, {{"group.id", "kappa-progress"}});
  if (!consumer.ok()) return consumer.status();
  Status first;
  for (auto& p : snapshot->partitions) {
    auto w = QueryWatermarks(consumer->get(), topic, p.partition, 10000);
    if (w.ok()) {
      p.log_end = w->high;
      continue;
    }
    if (first.ok()) first = w.status();
    // A broker that did not answer within the timeout will not answer for
    // the next partition either: one wait, not one per partition.
    if (first.code() == Status::Code::kUnavailable) break;
  }
  return first;
}

namespace {

constexpr int kWriteAttempts = 20;

// The test hooks' kill points between the registry record and the view swap.
KAPPA_KILL_SWITCH(kill_switch);

// The diff of two versions: their output topics, or their PostgreSQL tables
// (in the database). Versions that write to different kinds of sink cannot
// be compared: the result is then nullopt and *why says so.
Result<std::optional<OutputDiff>> CompareVersions(const KafkaConfig& config, const VersionInfo& serving,
                                                  const VersionInfo& candidate, const std::string& postgres_dsn,
                                                  std::string* why) {
  if (serving.postgres_table.empty() && candidate.postgres_table.empty()) {
    auto diff = CompareOutputs(config, serving.output_topic, candidate.output_topic);
    if (!diff.ok()) return diff.status();
    return std::optional<OutputDiff>(*diff);
  }
  if (serving.postgres_table.empty() || candidate.postgres_table.empty()) {
    *why = "outputs not compared: v" + std::to_string(serving.version) + " writes " +
           (serving.postgres_table.empty() ? "topic " + serving.output_topic : "PostgreSQL table " + serving.PostgresVersionTable()) +
           ", v" + std::to_string(candidate.version) + " " +
           (candidate.postgres_table.empty() ? "topic " + candidate.output_topic
                                             : "PostgreSQL table " + candidate.PostgresVersionTable());
    return std::optional<OutputDiff>();
  }
  auto pg = PgClient::Connect(ServingDsn(candidate, postgres_dsn));
  if (!pg.ok()) return pg.status();
  constexpr int kLockWaitS = 10;
  KAPPA_RETURN_IF_ERROR(BoundLockWait(**pg, kLockWaitS));
  auto diff = ComparePgTables(**pg, serving.PostgresVersionTable(), candidate.PostgresVersionTable());
  if (!diff.ok()) {
    return NameLockWait(**pg, diff.status(), {serving.PostgresVersionTable(), candidate.PostgresVersionTable()},
                        "the promotion diff", kLockWaitS);
  }
  return std::optional<OutputDiff>(*diff);
}

// Before a registry write that makes `v` serve: a PostgreSQL view that
// cannot be switched to it (views of someone else's on it, when it must be
// made again) refuses the change, rather than leave the registry and the
// database disagreeing. Nothing to check for a version without a table.
Status CheckPostgresSwap(const VersionInfo& v, const std::string& postgres_dsn) {
  if (v.postgres_table.empty()) return Status::OK();
  auto pg = PgClient::Connect(ServingDsn(v, postgres_dsn));
  if (!pg.ok()) return pg.status();
  return CheckServingSwap(**pg, v.postgres_table, v.version);
}

// After a registry write: makes PostgreSQL serve what the registry now says.
// Appends its line to *report; a failure says the registry already changed.
Status SwapAfterRegistry(Registry& registry, const std::string& job, const std::string& postgres_dsn,
                         std::string* report) {
  auto record = registry.Job(job);
  if (!record) return Status::OK();
  SwapWait wait;
  wait.on_wait = [](const std::string& text) { std::fprintf(stderr, "kappa: %s\n", text.c_str()); };
  auto line = ReconcileServing(*record, postgres_dsn, wait);
  if (!line.ok()) {
    return Status::Unavailable(
                  "the registry records v" + std::to_string(record->serving) + " as serving job " + job +
                      ", but the PostgreSQL view could not be switched: " + line.status().message() +
                      "; the next kappa promote, rollback, status or get makes PostgreSQL agree with the registry");
  }
  if (!line->empty()) *report += (report->empty() ? "" : "\n") + *line;
  return Status::OK();
}

// Why `version` would serve outputs that no longer move, and what to do:
// its process exited on an error, is silent (killed, a lost host) or is
// paused; nullopt if none of these (or nothing is known of it). Promote's
// and rollback's refusal alike.
struct NotMoving {
  std::string why;
  std::string remedy;
};
std::optional<NotMoving> WhyNotMoving(const Registry& registry, const std::string& job, int32_t version) {
  const std::string v = "job " + job + " version " + std::to_string(version);
  if (auto progress = registry.Progress(job, version)) {
    if (!progress->exit_error.empty()) {
      // Exited on an error: not a bounded run that ended.
      return NotMoving{v + "'s process stopped on an error (" + progress->exit_error + ")",
                       "mend that and start it again (kappa deploy/replay with its spec)"};
    }
    const std::string liveness = progress->Liveness(WallClockMs());
    if (liveness != "running" && liveness != "stopped") {
      return NotMoving{v + " is " + liveness, "start it again (kappa deploy/replay with its spec)"};
    }
  }
  if (auto throttle = registry.Throttle(job, version); throttle && throttle->paused) {
    return NotMoving{v + " is paused (kappa throttle)",
                     "kappa throttle " + job + " --version " + std::to_string(version) + " --resume first"};
  }
  return std::nullopt;
}

// One attempt of Promote on the registry's current view. *lost: the write
// lost to a concurrent one. *serving_seen: the serving version the checks
// and the diff were made against.
Status TryPromote(Registry& registry, const KafkaConfig& config, const std::string& job, int32_t version,
                  const PromoteOptions& options, int32_t expected_serving, std::string* report, bool* lost,
                  int32_t* serving_seen) {
  *lost = false;
  auto record = registry.Job(job);
  if (!record) return Status::NotFound("no job " + job + " in the registry (" + registry.control_topic() + ")");
  VersionInfo* candidate = record->Find(version);
  if (!candidate) return Status::NotFound("job " + job + " has no version " + std::to_string(version));
  if (candidate->state == VersionState::kRetired) {
    return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) + " is retired");
  }
  if (record->serving == version) {
    *report = "job " + job + " version " + std::to_string(version) + " already serves";
    return Status::OK();
  }
  if (expected_serving >= 0 && record->serving != expected_serving) {
    return Status::FailedPrecondition(
        "job " + job + ": version " + std::to_string(record->serving) + " was made the serving one (was " +
        std::to_string(expected_serving) + ") by someone else while this promotion ran; version " +
        std::to_string(version) + " was NOT promoted: review `kappa status` and promote again if still wanted");
  }
  *serving_seen = record->serving;
  std::string text;
  std::string stopped_note;
  if (!options.force) {
    // A replay whose process died is no longer "still replaying": "wait"
    // was advice for a version stopped on a data-loss error (a bug bash).
    if (candidate->state == VersionState::kReplaying) {
      if (const auto stalled = WhyNotMoving(registry, job, version)) {
        return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                          " has not caught up, and " + stalled->why + ": " + stalled->remedy);
      }
      return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                        " has not caught up yet (still replaying); wait, or --force");
    }
    auto progress = registry.Progress(job, version);
    if (!progress) {
      return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                        " has reported no progress yet; wait, or --force");
    }
    // A candidate that will not keep up after the switch: paused, or its
    // process gone. It was promoted without a word, and `kappa get` then
    // served what it had (a bug bash).
    // (One that stopped cleanly, a bounded run's, has said where its outputs
    // end: promoted as before, the report says so.)
    if (const auto stalled = WhyNotMoving(registry, job, version)) {
      return Status::FailedPrecondition(stalled->why + ": serving it would serve outputs that no longer move; " +
                                        stalled->remedy + ", or --force");
    }
    if (progress->Liveness(WallClockMs()) == "stopped") {
      stopped_note = "\nnote: version " + std::to_string(version) +
                     "'s process has stopped: its outputs do not move until it runs again";
    }
    ProgressSnapshot now = progress->snapshot;
    // Partitions no running instance reports (instances restarting or
    // rebalancing) have no lag to check: a version thousands of records
    // behind was promoted while its restarted instances held none yet,
    // its lag read 0 (a bug bash).
    if (now.unreported_partitions() > 0) {
      return Status::FailedPrecondition(
          "job " + job + " version " + std::to_string(version) + ": " +
          std::to_string(now.unreported_partitions()) + " of " +
          std::to_string(now.source_partitions) + " partitions of " + candidate->source_topic +
          " are reported by no running instance (instances starting or rebalancing), so how far behind it is "
          "there is unknown; wait until `kappa status` shows every partition reported, or --force");
    }
    KAPPA_RETURN_IF_ERROR(RefreshLogEnds(config, candidate->source_topic, &now));
    if (now.max_lag() > options.max_lag) {
      return Status::FailedPrecondition(
          "job " + job + " version " + std::to_string(version) + " is " + std::to_string(now.max_lag()) +
          " records behind on " + candidate->source_topic + "[" + std::to_string(now.max_lag_partition()) +
          "] (more than " + std::to_string(options.max_lag) + "); wait until it catches up, or --force");
    }
  }
  if (record->serving != 0) {
    const VersionInfo* serving = record->Find(record->serving);
    std::string why;
    auto compared = CompareVersions(config, *serving, *candidate, options.postgres_dsn, &why);
    if (!compared.ok()) return compared.status();
    const double gate = options.max_changed_share >= 0 ? options.max_changed_share : candidate->max_changed_share;
    if (!compared->has_value()) {
      text = "v" + std::to_string(record->serving) + " -> v" + std::to_string(version) + ": " + why;
      if (gate >= 0 && !options.accept) {
        *report = text;
        return Status::FailedPrecondition("the changed-share gate cannot be checked; promote with --accept to proceed");
      }
    }
    const OutputDiff* diff = compared->has_value() ? &**compared : nullptr;
    if (diff) text = "v" + std::to_string(record->serving) + " -> v" + std::to_string(version) + ": " + diff->ToString();
    if (diff && gate >= 0 && diff->differing_share() > gate && !options.accept) {
      *report = text;
      char buf[320];
      std::snprintf(buf, sizeof(buf),
                    "%.1f%% of rows differ (%lld changed, %lld only in the serving version, %lld only in the "
                    "candidate, of %lld keys), over the %.1f%% gate",
                    100 * diff->differing_share(), static_cast<long long>(diff->changed),
                    static_cast<long long>(diff->only_serving), static_cast<long long>(diff->only_candidate),
                    static_cast<long long>(diff->compared + diff->only_serving + diff->only_candidate), 100 * gate);
      return Status::FailedPrecondition(std::string(buf) + "; review the diff and promote with --accept to proceed");
    }
    record->PushPreviousServing(record->serving);
  }
  KAPPA_RETURN_IF_ERROR(CheckPostgresSwap(*candidate, options.postgres_dsn));
  record->serving = version;
  auto won = registry.TryPutJob(*record);
  if (!won.ok()) return won.status();
  if (!*won) {
    *lost = true;
    return Status::OK();
  }
  *report = text + (text.empty() ? "" : "\n") + "job " + job + ": version " + std::to_string(version) + " now serves" +
            stopped_note;
  KAPPA_KILL_POINT(kill_switch, "promote-registry-written");
  return Status::OK();
}

Status GaveUp(const std::string& job, const std::string& what) {
  return Status::Unavailable("job " + job + " kept changing concurrently; " + what + " not done after " +
                             std::to_string(kWriteAttempts) + " attempts: try again");
}

}  // namespace

// A promotion that loses to a concurrent write is redone on the new state:
// its checks run again, and it is refused if another version was made the
// serving one meanwhile (the diff was against a version that no longer
// serves). A success is always in the log.
Status Promote(Registry& registry, const KafkaConfig& config, const std::string& job, int32_t version,
               const PromoteOptions& options, std::string* report) {
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  int32_t expected_serving = -1;
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    bool lost = false;
    int32_t serving_seen = 0;
    report->clear();
    Status st = TryPromote(registry, config, job, version, options, expected_serving, report, &lost, &serving_seen);
    if (!st.ok()) return st;
    if (!lost) return SwapAfterRegistry(registry, job, options.postgres_dsn, report);
    expected_serving = serving_seen;  // the view is now the newer state
  }
  return GaveUp(job, "the promotion was");
}


Status Rollback(Registry& registry, const std::string& job, std::string* report, const std::string& postgres_dsn,
                bool force) {
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  int32_t expected_serving = -1;
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    auto record = registry.Job(job);
    if (!record) return Status::NotFound("no job " + job + " in the registry");
    if (expected_serving >= 0 && record->serving != expected_serving) {
      return Status::FailedPrecondition("job " + job + ": version " + std::to_string(record->serving) +
                                        " was made the serving one by someone else while rolling back (was " +
                                        std::to_string(expected_serving) +
                                        "); nothing was rolled back: review `kappa status`");
    }
    expected_serving = record->serving;
    bool found = false;
    std::string skipped;  // retired versions passed over, for the refusal
    while (!record->previous_serving.empty()) {
      const int32_t previous = record->previous_serving.back();
      record->previous_serving.pop_back();
      const VersionInfo* v = record->Find(previous);
      if (v && v->state == VersionState::kRetired) {
        skipped += (skipped.empty() ? "v" : ", v") + std::to_string(previous);
        continue;
      }
      // The version serving now is no rollback: a promote back and forth
      // (1, 2, 1) with 2 retired reported "version 1 serves again (was 1)".
      if (previous == record->serving) continue;
      if (v) {
        // Rolled back to a killed or paused version without a word, where
        // promote refuses both (a bug bash): readers of the alias got rows
        // that no longer moved.
        if (const auto stalled = WhyNotMoving(registry, job, previous); stalled && !force) {
          return Status::FailedPrecondition(stalled->why + ": serving it again would serve outputs that no longer "
                                            "move; " + stalled->remedy + ", then roll back, or --force; nothing "
                                            "was rolled back");
        }
        KAPPA_RETURN_IF_ERROR(CheckPostgresSwap(*v, postgres_dsn));
        const int32_t from = record->serving;
        record->serving = previous;
        auto won = registry.TryPutJob(*record);
        if (!won.ok()) return won.status();
        if (*won) {
          *report = "job " + job + ": version " + std::to_string(previous) + " serves again (was " +
                    std::to_string(from) + ")";
          KAPPA_KILL_POINT(kill_switch, "rollback-registry-written");
          return SwapAfterRegistry(registry, job, postgres_dsn, report);
        }
        found = true;
        break;
      }
    }
    if (!found) {
      return Status::FailedPrecondition("job " + job + " has no earlier serving version to roll back to" +
                                        (skipped.empty() ? std::string() : " (" + skipped + " retired)"));
    }
  }
  return GaveUp(job, "the rollback was");
}

namespace {

// The files kappa writes into a state directory: the state's and the
// deployment's marker.
bool IsKappaStateFile(const std::string& name) { return IsStateFile(name) || name == "KAPPA_STATE"; }

// Deletes a retired version's state directory, but only one kappa created
// for this job and version (its marker says so), and in it only the files
// kappa wrote; anything else is kept and named. Returns the report line.
std::string DeleteVersionState(const std::string& job, const VersionInfo& v) {
  namespace fs = std::filesystem;
  const std::string what = "the state of version " + std::to_string(v.version) + " (" + v.state_dir + ")";
  if (fs::path(v.state_dir).is_relative()) {
    return "not deleting " + what + ": the registry holds a relative path (registered by an older kappa), " +
           "which cannot say which directory it was; delete it yourself";
  }
  std::error_code ec;
  const auto status = fs::symlink_status(v.state_dir, ec);
  if (ec || status.type() == fs::file_type::not_found) return "";
  if (status.type() != fs::file_type::directory) {
    return "not deleting " + what + ": it is not a directory kappa created";
  }
  auto marker = ReadStateMarker(v.state_dir);
  if (!marker) {
    return "not deleting " + what + ": it holds no " + std::string(kStateMarkerFile) +
           " marker, so kappa did not create it; delete it yourself if it is no longer needed";
  }
  if (marker->job != job || marker->version != v.version) {
    return "not deleting " + what + ": its " + std::string(kStateMarkerFile) + " names job " + marker->job +
           " version " + std::to_string(marker->version);
  }
  // A process that has the store open (whatever the registry's progress
  // records say: a refused second start once marked a running version
  // stopped, and its state was deleted under it, a bug bash).
  if (StateBackend::InUse(v.state_dir)) {
    return "not deleting " + what + ": a process still has it open (RocksDB LOCK held); retire again once it "
           "has stopped";
  }
  std::vector<fs::path> ours;
  std::vector<std::string> foreign;
  for (const auto& entry : fs::directory_iterator(v.state_dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool regular = entry.symlink_status(ec).type() == fs::file_type::regular;
    if (regular && IsKappaStateFile(name)) {
      if (name != kStateMarkerFile) ours.push_back(entry.path());
    } else {
      foreign.push_back(name + (entry.symlink_status(ec).type() == fs::file_type::directory ? "/" : ""));
    }
  }
  if (ec) return "not deleting " + what + ": cannot list it: " + ec.message();
  std::sort(foreign.begin(), foreign.end());
  std::string failed;
  for (const auto& file : ours) {
    if (!fs::remove(file, ec) && ec) failed += " " + file.filename().string();
  }
  if (!failed.empty()) return "could not delete all of " + what + ": cannot remove" + failed;
  if (!foreign.empty()) {
    std::string names;
    for (const auto& f : foreign) names += (names.empty() ? "" : ", ") + f;
    return "deleted kappa's files from " + what + " but kept the directory: it also holds what kappa did not " +
           "write, left untouched: " + names;
  }
  fs::remove(fs::path(v.state_dir) / kStateMarkerFile, ec);
  fs::remove(v.state_dir, ec);
  if (ec) return "could not delete " + what + ": " + ec.message();
  return "deleted " + what;
}

// A repartitioned version's second stage keeps its state beside the
// first's (engine/stage_plan.h): <state_dir>.stage1, kappa's files only and
// no marker of its own. It goes once the first stage's directory went.
std::string DeleteStageState(const VersionInfo& v) {
  namespace fs = std::filesystem;
  const fs::path dir = v.state_dir + ".stage1";
  std::error_code ec;
  if (fs::symlink_status(dir, ec).type() != fs::file_type::directory) return "";
  const std::string what = "the state of its stage 2 (" + dir.string() + ")";
  std::vector<std::string> foreign;
  std::string failed;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.symlink_status(ec).type() == fs::file_type::regular && IsKappaStateFile(name)) {
      if (!fs::remove(entry.path(), ec) && ec) failed += " " + name;
    } else {
      foreign.push_back(name);
    }
  }
  if (!failed.empty()) return "could not delete all of " + what + ": cannot remove" + failed;
  if (!foreign.empty()) return "deleted kappa's files from " + what + " but kept the directory: it holds other files";
  fs::remove(dir, ec);
  return ec ? "could not delete " + what + ": " + ec.message() : "deleted " + what;
}

}  // namespace

Status Retire(Registry& registry, const std::string& job, int32_t version, int64_t retention_ms, std::string* report,
              const std::string& postgres_dsn) {
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    auto record = registry.Job(job);
    if (!record) return Status::NotFound("no job " + job + " in the registry");
    VersionInfo* v = record->Find(version);
    if (!v) return Status::NotFound("job " + job + " has no version " + std::to_string(version));
    if (record->serving == version) {
      return Status::FailedPrecondition("job " + job + " version " + std::to_string(version) +
                                        " serves; promote another version (or roll back) before retiring it");
    }
    const int64_t now = WallClockMs();
    const bool already = v->state == VersionState::kRetired;
    if (!already) {
      v->state = VersionState::kRetired;
      v->retired_at_ms = now;
      auto won = registry.TryPutJob(*record);
      if (!won.ok()) return won.status();
      if (!*won) continue;  // redone on the newer state
    }
    *report = "job " + job + ": version " + std::to_string(version) +
              (already ? " was retired already, " + std::to_string((now - v->retired_at_ms) / 1000) + " s ago"
                       : " retired; its process stops at its next check");
    // Its topics were left without a word (a bug bash: a repartitioned
    // version's copy of its whole input stayed on the broker).
    if (!already) {
      const std::string group = v->group.empty() ? job + ".v" + std::to_string(version) : v->group;
      // (A PostgreSQL version's line read "...no topic): and ...", a bug bash.)
      const bool output = !v->output_topic.empty() && v->postgres_table.empty();
      *report += "\n  its Kafka topics stay (kappa deletes no topic): " +
                 (output ? v->output_topic + ", and " : std::string()) + group + ".repartition.1 and " + group +
                 ".changelog if it has them; delete them (kafka-topics.sh --delete) once nothing reads them";
    }
    // A version whose process still reports (it has not seen the retirement
    // yet) keeps its state and table: deleted under it, the process failed
    // on its own files (a bug bash, with --retention 0s). A process that went
    // silent (kill -9, a lost host) counts as gone.
    std::set<int32_t> running;
    for (const auto& other : record->versions) {
      if (other.state != VersionState::kRetired || now - other.retired_at_ms < retention_ms) continue;
      auto progress = registry.Progress(job, other.version);
      if (progress && progress->Liveness(now) == "running") {
        running.insert(other.version);
        *report += "\n  kept the state of version " + std::to_string(other.version) +
                   ": its process still runs (it stops within a few seconds); retire again afterwards to delete it";
      }
    }
    // Local state of versions retired longer ago than the retention is deleted.
    for (const auto& other : record->versions) {
      if (running.count(other.version)) continue;
      if (other.state == VersionState::kRetired && now - other.retired_at_ms >= retention_ms && !other.state_dir.empty()) {
        const std::string line = DeleteVersionState(job, other);
        if (!line.empty()) *report += "\n  " + line;
        if (line.rfind("deleted ", 0) == 0) {
          const std::string stage = DeleteStageState(other);
          if (!stage.empty()) *report += "\n  " + stage;
        }
      }
    }
    // Their PostgreSQL tables too (never the serving version's).
    std::unique_ptr<PgClient> pg;
    for (const auto& other : record->versions) {
      if (other.state != VersionState::kRetired || now - other.retired_at_ms < retention_ms ||
          other.postgres_table.empty() || other.version == record->serving || running.count(other.version)) {
        continue;
      }
      Result<std::string> line = std::string();
      if (!pg) {
        auto connected = PgClient::Connect(ServingDsn(other, postgres_dsn));
        if (connected.ok()) {
          pg = std::move(*connected);
        } else {
          line = connected.status();
        }
      }
      if (pg) line = DropVersionTable(*pg, job, other);
      if (!line.ok()) {
        *report += "\n  could not drop PostgreSQL table " + other.PostgresVersionTable() + ": " +
                   line.status().message() + "; a later retire tries again";
      } else if (!line->empty()) {
        *report += "\n  " + *line;
      }
    }
    return Status::OK();
  }
  return GaveUp(job, "the retirement was");
}

}  // namespace kappa
