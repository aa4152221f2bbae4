#include "replay/deployment.h"

#include "engine/postgres_table.h"
#include "kafka/kafka_client.h"
#include "postgres/pg_client.h"
#include "replay/pg_serving.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace kappa {

namespace {

// The status's first line, at most 300 bytes: what `kappa status` shows of
// why a version's process exited.
std::string ExitErrorLine(const Status& st) {
  std::string text = st.ToString();
  text = text.substr(0, text.find('\n'));
  if (text.size() > 300) {
    size_t cut = 297;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
    text = text.substr(0, cut) + "...";
  }
  return text;
}

// Whether a registered state dir (absolute; relative if registered by an
// older kappa) is the spec's.
bool SameStateDir(const std::string& registered, const std::string& spec_dir, const std::string& absolute) {
  if (registered == absolute) return true;
  return std::filesystem::path(registered).is_relative() && registered == spec_dir;
}

// Another job's version (not retired) that writes where this one would:
// the same output topic, or the same PostgreSQL table in the same database.
// Rows of two jobs in one place cannot be told apart by `kappa get` and
// promote's diff (a bug bash: `get` answered with the other job's row, and
// promote compared the other job's rows and found nothing changed).
// `counts` (if given) says which versions to hold it against.
// Its dead-letter or late topic as one of the other's internal topics, or
// the other's as one of its own: a restore read the other job's dead
// letters as state ("the changelog is damaged", for good), or stage 2 took
// them as input (a bug bash).
Status CheckInternalTopics(const JobSpec& spec, const std::string& job, const VersionInfo& v,
                           const std::string& who) {
  const std::vector<std::pair<std::string, std::string>> mine = {
      {"dlq", spec.dlq_topic}, {"dlq", spec.dlq_topic + ".parked"}, {"late", spec.late_topic}};
  for (const std::string& internal : JobSpec::InternalTopicsOf(job, v.version)) {
    for (const auto& [key, topic] : mine) {
      if (topic != internal) continue;
      return Status::FailedPrecondition("`" + key + ".topic` makes job " + spec.job + " write " + topic +
                                        ", a topic kappa keeps for " + who +
                                        " (its state or the records between its stages). Give job " + spec.job +
                                        " its own " + key + ".topic");
    }
  }
  const std::vector<std::pair<std::string, std::string>> theirs = {
      {"dead-letter", v.dlq_topic}, {"parked dead-letter", v.dlq_topic.empty() ? "" : v.dlq_topic + ".parked"},
      {"late", v.late_topic}};
  for (const std::string& internal : spec.InternalTopics()) {
    for (const auto& [what, topic] : theirs) {
      if (topic.empty() || topic != internal) continue;
      return Status::FailedPrecondition(internal + ", a topic kappa keeps for job " + spec.job + " version " +
                                        std::to_string(spec.version) + " (its state or the records between its "
                                        "stages), is the " + what + " topic of " + who + ". Give " + who +
                                        " another one, or retire it first");
    }
  }
  return Status::OK();
}

// Whether the spec's output comes back to its source through registered
// versions (each reading the one before's output): two jobs reading each
// other's output were accepted, and 10 seed records grew to 34,000 in 24 s
// (a bug bash); the spec refuses the one-job loop itself.
Status CheckNoCycle(const Registry& registry, const JobSpec& spec) {
  if (spec.postgres()) return Status::OK();
  std::multimap<std::string, std::string> edges;  // a source topic -> what reads it writes (who)
  std::map<std::string, std::string> writer_of;   // an output topic -> "job J version N"
  for (const std::string& job : registry.Jobs()) {
    auto record = registry.Job(job);
    if (!record) continue;
    for (const VersionInfo& v : record->versions) {
      if (v.state == VersionState::kRetired || v.output_topic.empty() || !v.postgres_table.empty()) continue;
      if (job == spec.job && v.version == spec.version) continue;
      edges.emplace(v.source_topic, v.output_topic);
      writer_of[v.output_topic] = "job " + job + " version " + std::to_string(v.version);
    }
  }
  // From this version's output, along what registered versions read and
  // write, back to its source?
  std::map<std::string, std::string> came_from;
  std::vector<std::string> todo = {spec.OutputTopic()};
  came_from[spec.OutputTopic()] = "";
  while (!todo.empty()) {
    const std::string topic = todo.back();
    todo.pop_back();
    if (topic == spec.source_topic) {
      std::string path = topic;
      for (std::string t = came_from[topic]; !t.empty(); t = came_from[t]) path = t + " -> " + path;
      std::string who;
      for (std::string t = topic; !came_from[t].empty(); t = came_from[t]) {
        who = writer_of[t] + (who.empty() ? "" : ", then " + who);
      }
      return Status::FailedPrecondition("job " + spec.job + " version " + std::to_string(spec.version) +
                                        " would close a loop: its output comes back to its source through " + who +
                                        " (" + path + "); every record would go round for ever. Read another "
                                        "topic, or retire one of them first");
    }
    for (auto [it, end] = edges.equal_range(topic); it != end; ++it) {
      if (came_from.count(it->second)) continue;
      came_from[it->second] = topic;
      todo.push_back(it->second);
    }
  }
  return Status::OK();
}

Status CheckOutputIsOwn(const Registry& registry, const JobSpec& spec,
                        const std::function<bool(const std::string&, int32_t)>& counts = nullptr) {
  for (const std::string& other : registry.Jobs()) {
    auto record = registry.Job(other);
    if (!record) continue;
    const bool same_job = other == spec.job;
    for (const VersionInfo& v : record->versions) {
      if (v.state == VersionState::kRetired) continue;
      if (same_job && v.version == spec.version) continue;
      if (counts && !counts(other, v.version)) continue;
      const std::string who = "job " + other + " version " + std::to_string(v.version);
      KAPPA_RETURN_IF_ERROR(CheckInternalTopics(spec, other, v, who));
      // The versions of one job may share their dead-letter and late topics
      // (and their PostgreSQL table's view), never one's rows with
      // another's dead letters: a v1 dead-letter topic that was v2's output
      // served v1's dead letters as v2's rows (a bug bash).
      if (same_job) {
        if (spec.postgres() || !v.postgres_table.empty()) continue;
        for (const auto& [what, topic] : {std::pair<std::string, std::string>{"dead-letter", v.dlq_topic},
                                          {"parked dead-letter", v.dlq_topic.empty() ? "" : v.dlq_topic + ".parked"},
                                          {"late", v.late_topic}}) {
          if (topic.empty() || topic != spec.OutputTopic()) continue;
          return Status::FailedPrecondition("output topic " + spec.OutputTopic() + " is the " + what +
                                            " topic of version " + std::to_string(v.version) +
                                            ": its rows and those records in one topic cannot be told apart. "
                                            "Give version " + std::to_string(spec.version) +
                                            " another sink.topic, or retire version " + std::to_string(v.version) +
                                            " first");
        }
        for (const auto& [key, topic] : {std::pair<std::string, std::string>{"dlq", spec.dlq_topic},
                                         {"dlq", spec.dlq_topic + ".parked"},
                                         {"late", spec.late_topic}}) {
          if (topic != v.output_topic) continue;
          return Status::FailedPrecondition("`" + key + ".topic` makes version " + std::to_string(spec.version) +
                                            " write " + topic + ", the output topic of version " +
                                            std::to_string(v.version) + ": its rows and these " +
                                            (key == "dlq" ? "dead letters" : "late records") +
                                            " in one topic cannot be told apart. Give it its own " + key + ".topic");
        }
        continue;
      }
      if (!spec.postgres() && v.postgres_table.empty() && v.output_topic == spec.OutputTopic()) {
        return Status::FailedPrecondition(
            "output topic " + spec.OutputTopic() + " is written by " + who +
            ": the rows of two jobs in one topic cannot be told apart by `kappa get` and promote's diff. Give job " +
            spec.job + " its own sink.topic, or retire " + who + " first");
      }
      // Rows in a dead-letter or late topic: `kappa dlq` would read them as
      // dead letters (failing each), `kappa get` the dead letters as rows.
      if (!spec.postgres() && v.postgres_table.empty()) {
        for (const auto& [what, topic] : {std::pair<std::string, std::string>{"dead-letter", v.dlq_topic},
                                          {"parked dead-letter", v.dlq_topic.empty() ? "" : v.dlq_topic + ".parked"},
                                          {"late", v.late_topic}}) {
          if (topic.empty() || topic != spec.OutputTopic()) continue;
          return Status::FailedPrecondition(
              "output topic " + spec.OutputTopic() + " is the " + what + " topic of " + who +
              ": rows and another job's " + what + " records in one topic cannot be told apart. Give job " +
              spec.job + " its own sink.topic, or retire " + who + " first");
        }
      }
      if (v.postgres_table.empty() && !v.output_topic.empty()) {
        for (const auto& [key, topic] : {std::pair<std::string, std::string>{"dlq", spec.dlq_topic},
                                         {"dlq", spec.dlq_topic + ".parked"},
                                         {"late", spec.late_topic}}) {
          if (topic != v.output_topic) continue;
          return Status::FailedPrecondition(
              "`" + key + ".topic` makes job " + spec.job + " write " + topic + ", the output topic of " + who +
              ": its rows and this job's " + (key == "dlq" ? "dead letters" : "late records") +
              " in one topic cannot be told apart. Give job " + spec.job + " its own " + key +
              ".topic, or retire " + who + " first");
        }
      }
      // A name of one that is the other's view or version table: readers of
      // job pgg's view t3_v1 read job pgf's version table (a bug bash).
      if (spec.postgres() && !v.postgres_table.empty() &&
          DsnDatabase(v.postgres_dsn) == DsnDatabase(spec.postgres_dsn) &&
          !SamePgTable(v.postgres_table, spec.postgres_table)) {
        const std::vector<std::string> mine = {spec.postgres_table, spec.PostgresTable()};
        const std::vector<std::string> theirs = {v.postgres_table, v.PostgresVersionTable()};
        for (const std::string& a : mine) {
          for (const std::string& b : theirs) {
            if (!SamePgTable(a, b)) continue;
            return Status::FailedPrecondition(
                "PostgreSQL " + a + " in " + DsnDatabase(spec.postgres_dsn) + ", which job " + spec.job +
                " version " + std::to_string(spec.version) + " would use (view " + spec.postgres_table +
                ", table " + spec.PostgresTable() + "), is " +
                (b == v.postgres_table ? "the serving view" : "the version table") + " of " + who +
                ": give job " + spec.job + " another sink.postgres.table");
          }
        }
      }
      if (spec.postgres() && SamePgTable(v.postgres_table, spec.postgres_table) &&
          DsnDatabase(v.postgres_dsn) == DsnDatabase(spec.postgres_dsn)) {
        return Status::FailedPrecondition(
            "PostgreSQL table " + spec.postgres_table + " in " + DsnDatabase(spec.postgres_dsn) +
            " is written by " + who + (v.postgres_table == spec.postgres_table ? "" : " (as " + v.postgres_table + ")") +
            " (its view and version tables): give job " + spec.job + " its own sink.postgres.table, or retire " +
            who + " first");
      }
    }
  }
  return Status::OK();
}

// One read-modify-write of the registration. *won: false when the write lost
// to a concurrent one (the registry view is then the newer state).
Result<JobRecord> TryRegister(Registry& registry, const JobSpec& spec, bool replay, bool* won, bool* added) {
  *won = true;
  *added = false;
  const std::string state_dir = AbsoluteStateDir(spec.state_dir);
  JobRecord record;
  if (auto existing = registry.Job(spec.job)) record = *existing;
  record.job = spec.job;
  if (VersionInfo* v = record.Find(spec.version)) {
    if (v->spec_hash != spec.spec_hash) {
      return Status::FailedPrecondition(
          "job " + spec.job + " version " + std::to_string(spec.version) + " is registered with spec hash " +
          v->spec_hash + ", but this spec hashes to " + spec.spec_hash +
          ": a logic change is a new version (bump `version:`)");
    }
    if (v->state == VersionState::kRetired) {
      return Status::FailedPrecondition("job " + spec.job + " version " + std::to_string(spec.version) +
                                        " is retired; deploy a new version number instead");
    }
    // The instances of a scaled-out version each have their own (the
    // registry keeps the first one's).
    if (!spec.scale_out.enabled && !SameStateDir(v->state_dir, spec.state_dir, state_dir)) {
      return Status::FailedPrecondition("job " + spec.job + " version " + std::to_string(spec.version) +
                                        " keeps its state in " + v->state_dir + ", not " + state_dir);
    }
    return record;  // a restart of a registered version
  }
  for (const auto& v : record.versions) {
    if (SameStateDir(v.state_dir, spec.state_dir, state_dir)) {
      return Status::FailedPrecondition("state directory " + state_dir + " belongs to version " +
                                        std::to_string(v.version) + "; each version needs its own");
    }
    if (v.output_topic == spec.OutputTopic() || v.group == spec.ConsumerGroup()) {
      return Status::FailedPrecondition("version " + std::to_string(v.version) + " already uses output topic " +
                                        v.output_topic + " / group " + v.group);
    }
    // The versions of a job serve through one view, named by the table, in
    // one database: promotion swaps that view, and compares the two tables
    // in one query. A version elsewhere would be promoted in name only.
    if (spec.postgres() && !v.postgres_table.empty() && v.state != VersionState::kRetired) {
      const std::string mine = DsnDatabase(spec.postgres_dsn), theirs = DsnDatabase(v.postgres_dsn);
      if (v.postgres_table != spec.postgres_table || mine != theirs) {
        return Status::FailedPrecondition(
            "job " + spec.job + " version " + std::to_string(spec.version) + " writes PostgreSQL table " +
            spec.postgres_table + " in " + mine + ", but version " + std::to_string(v.version) + " writes " +
            v.postgres_table + " in " + theirs +
            ": every version of a job serves through one view (the table name) in one database, which promotion "
            "switches; keep sink.postgres.table and the database, or retire version " + std::to_string(v.version) +
            " first, or use a new job name");
      }
    }
  }
  KAPPA_RETURN_IF_ERROR(CheckOutputIsOwn(registry, spec));
  KAPPA_RETURN_IF_ERROR(CheckNoCycle(registry, spec));
  VersionInfo info;
  info.version = spec.version;
  info.spec_hash = spec.spec_hash;
  info.state = replay ? VersionState::kReplaying : VersionState::kLive;
  info.source_topic = spec.source_topic;
  info.output_topic = spec.OutputTopic();
  info.group = spec.ConsumerGroup();
  info.state_dir = state_dir;
  info.registered_at_ms = WallClockMs();
  info.max_changed_share = spec.max_changed_share;
  info.dlq_topic = spec.dlq_topic;
  info.late_topic = spec.late_topic;
  if (spec.postgres()) {
    info.postgres_table = spec.postgres_table;
    info.postgres_dsn = DsnWithoutPassword(spec.postgres_dsn);
  }
  record.versions.push_back(info);
  if (record.serving == 0 && !replay) record.serving = spec.version;  // the first live version serves
  auto put = registry.TryPutJob(record);
  if (!put.ok()) return put.status();
  *won = *put;
  *added = *put;
  return record;
}

}  // namespace

Status CheckRegisteredFirst(const Registry& registry, const JobSpec& spec) {
  const int64_t mine = registry.RegisteredOffset(spec.job, spec.version);
  if (mine < 0) return Status::OK();
  return CheckOutputIsOwn(registry, spec, [&](const std::string& job, int32_t version) {
    const int64_t theirs = registry.RegisteredOffset(job, version);
    return theirs >= 0 && theirs < mine;
  });
}

Status UnregisterUnstarted(Registry& registry, const JobSpec& spec, int64_t claim) {
  const std::string who = "job " + spec.job + " version " + std::to_string(spec.version);
  for (int attempt = 0; attempt < 20; ++attempt) {
    KAPPA_RETURN_IF_ERROR(registry.Refresh());
    auto record = registry.Job(spec.job);
    if (!record || registry.RegisteredOffset(spec.job, spec.version) != claim) return Status::OK();
    if (registry.Progress(spec.job, spec.version)) {
      return Status::FailedPrecondition(who + " stays registered: another process of it has reported progress");
    }
    std::erase_if(record->versions, [&](const VersionInfo& v) { return v.version == spec.version; });
    std::erase(record->previous_serving, spec.version);
    if (record->serving == spec.version) {
      // As if it had never registered: the version served before it (a
      // promotion to it meanwhile), else the first live version registered
      // after it (which would have served first: a bug bash left the one
      // that never ran serving beside the one that ran), else none.
      record->serving = record->RollbackTarget();
      if (record->serving == 0) {
        int64_t first = -1;
        for (const VersionInfo& v : record->versions) {
          const int64_t at = registry.RegisteredOffset(spec.job, v.version);
          if (v.state != VersionState::kLive || at < 0 || (first >= 0 && at >= first)) continue;
          first = at;
          record->serving = v.version;
        }
      }
    }
    auto won = registry.TryPutJob(*record);
    if (!won.ok()) return won.status();
    if (*won) return Status::OK();
  }
  return Status::Unavailable("job " + spec.job + " kept changing concurrently");
}

Result<JobRecord> RegisterVersion(Registry& registry, const JobSpec& spec, bool replay, bool* added) {
  constexpr int kAttempts = 50;
  std::mt19937 rng(std::random_device{}());
  KAPPA_RETURN_IF_ERROR(registry.Refresh());
  bool ignored = false;
  if (added == nullptr) added = &ignored;
  for (int attempt = 1;; ++attempt) {
    bool won = false;
    auto record = TryRegister(registry, spec, replay, &won, added);
    if (!record.ok() || won) return record;
    // Lost to a concurrent write: the view is now the newer state; redo it.
    if (attempt == kAttempts) {
      return Status::Unavailable("job " + spec.job + " kept changing concurrently; version " +
                                 std::to_string(spec.version) + " was not registered after " +
                                 std::to_string(kAttempts) + " attempts: try again");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 20 * std::min(attempt, 5))(rng)));
  }
}

std::optional<StateMarker> ReadStateMarker(const std::string& dir) {
  std::ifstream in(std::filesystem::path(dir) / kStateMarkerFile);
  if (!in) return std::nullopt;
  StateMarker marker;
  bool has_job = false, has_version = false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("job: ", 0) == 0) {
      marker.job = line.substr(5);
      has_job = true;
    } else if (line.rfind("version: ", 0) == 0) {
      try {
        marker.version = std::stoi(line.substr(9));
        has_version = true;
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  if (!has_job || !has_version) return std::nullopt;
  return marker;
}

Status ClaimStateDir(const std::string& dir, const std::string& job, int32_t version) {
  namespace fs = std::filesystem;
  const std::string who = "job " + job + " version " + std::to_string(version);
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    // Built beside it and renamed into place: the directory never exists
    // without its marker.
    const fs::path target = fs::path(AbsoluteStateDir(dir));
    fs::create_directories(target.parent_path(), ec);
    if (ec) return Status::IOError("cannot create " + target.parent_path().string() + ": " + ec.message());
    const fs::path temp = target.string() + ".kappa-new-" + std::to_string(::getpid());
    fs::remove_all(temp, ec);
    fs::create_directory(temp, ec);
    if (ec) return Status::IOError("cannot create the state directory " + temp.string() + ": " + ec.message());
    {
      std::ofstream out(temp / kStateMarkerFile);
      out << "# written by kappa when it created this state directory; `kappa retire` deletes only\n"
             "# directories that hold this file, and only the files kappa wrote\n"
          << "job: " << job << "\nversion: " << version << "\n";
      out.flush();
      if (!out) {
        fs::remove_all(temp, ec);
        return Status::IOError("cannot write " + (temp / kStateMarkerFile).string());
      }
    }
    fs::rename(temp, target, ec);
    if (!ec) return Status::OK();
    fs::remove_all(temp, ec);  // someone else created it meanwhile: check theirs
  }
  auto marker = ReadStateMarker(dir);
  if (marker && (marker->job != job || marker->version != version)) {
    return Status::FailedPrecondition("state directory " + AbsoluteStateDir(dir) + " belongs to job " + marker->job +
                                      " version " + std::to_string(marker->version) + " (its " + kStateMarkerFile +
                                      " says so), not to " + who + "; give this version its own checkpoint dir");
  }
  return Status::OK();
}

namespace {

// The deployment's one thread that talks to the control topic while the job
// runs: publishes the latest offered progress (an older unpublished snapshot
// is simply replaced), re-reads the registry every registry_poll_ms to see a
// retirement, and marks a replaying version caught up. Its notes are queued
// and handed to on_note on the job's thread (TakeNotes).
class ProgressPublisher {
 public:
  ProgressPublisher(Registry& registry, const JobSpec& spec, const DeploymentOptions& options,
                    std::shared_ptr<RateControl> rate)
      : registry_(registry), job_(spec.job), version_(spec.version), scaled_out_(spec.scale_out.enabled),
        options_(options), rate_(std::move(rate)), started_cap_(options.run.max_rate) {
    // A throttle from before this start is already applied (and said so).
    if (auto throttle = registry_.Throttle(job_, version_)) throttle_at_ = throttle->updated_at_ms;
    thread_ = std::thread([this] { Loop(); });
  }
  ~ProgressPublisher() { Stop(); }
  ProgressPublisher(const ProgressPublisher&) = delete;
  ProgressPublisher& operator=(const ProgressPublisher&) = delete;

  // Job thread: never waits for the registry.
  void Offer(ProgressRecord record) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      latest_ = record;
      pending_ = std::move(record);
    }
    cv_.notify_one();
  }
  bool retired() const { return retired_.load(std::memory_order_acquire); }
  std::vector<std::pair<NoteLevel, std::string>> TakeNotes() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(notes_, {});
  }
  // Stops the thread (after a write in flight) and joins it.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  // After Stop(), on the caller's thread: a catch-up that became due with
  // the last checkpoints is still recorded (a replay run to the end). A
  // bounded run that ended at its input's end within the catch-up lag has
  // caught up without the hold (which guards a live stream against a
  // moment's dip in lag): it stayed "replaying" for good, shown so even
  // once promoted, and a plain promote refused it (a bug bash).
  void FinishCatchUp(bool input_ended) {
    const int64_t since = latest_ ? latest_->caught_up_since_ms : 0;
    if (since != 0 && !caught_up_settled_ &&
        (input_ended || WallClockMs() - since >= options_.catch_up_hold_ms)) {
      CheckRegistry(since, /*hold_over=*/true);
    }
  }
  // The last offered record, published or not.
  std::optional<ProgressRecord> latest() const {
    std::lock_guard<std::mutex> lock(mu_);
    return latest_;
  }

 private:
  using SteadyTime = std::chrono::steady_clock;

  void Note(NoteLevel level, std::string text) {
    std::lock_guard<std::mutex> lock(mu_);
    notes_.emplace_back(level, std::move(text));
  }

  void Loop() {
    const auto poll = std::chrono::milliseconds(std::max<int64_t>(1, options_.registry_poll_ms));
    SteadyTime::time_point next_poll = SteadyTime::now() + poll;
    SteadyTime::time_point retry_at = SteadyTime::now();
    SteadyTime::time_point last_check = SteadyTime::now();
    constexpr auto kMinCheckGap = std::chrono::milliseconds(200);
    bool failing = false;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      // The next thing due: a pending write, the registry poll, the end of
      // the catch-up hold.
      SteadyTime::time_point wake = next_poll;
      if (pending_) wake = std::min(wake, retry_at);
      const int64_t since = latest_ ? latest_->caught_up_since_ms : 0;
      if (since != 0 && !caught_up_settled_) {
        const int64_t left = std::max<int64_t>(0, since + options_.catch_up_hold_ms - WallClockMs());
        wake = std::min(wake, std::max(SteadyTime::now() + std::chrono::milliseconds(left), last_check + kMinCheckGap));
      }
      cv_.wait_until(lock, wake, [&] { return stopping_ || (pending_ && SteadyTime::now() >= retry_at); });
      if (stopping_) break;
      if (pending_ && SteadyTime::now() >= retry_at) {
        ProgressRecord record = std::move(*pending_);
        pending_.reset();
        lock.unlock();
        Status st = registry_.PutProgress(record);
        lock.lock();
        if (!st.ok()) {
          if (!pending_) pending_ = std::move(record);  // retried, unless a newer one came
          retry_at = SteadyTime::now() + std::chrono::seconds(1);
          if (!failing) {
            notes_.emplace_back(NoteLevel::kWarning, "could not publish progress (will retry): " + st.ToString());
          }
          failing = true;
        } else {
          if (failing) notes_.emplace_back(NoteLevel::kInfo, "publishing progress again");
          failing = false;
        }
      }
      const int64_t caught_up_since = latest_ ? latest_->caught_up_since_ms : 0;
      const auto now = SteadyTime::now();
      const bool hold_over = caught_up_since != 0 && !caught_up_settled_ && now >= last_check + kMinCheckGap &&
                             WallClockMs() - caught_up_since >= options_.catch_up_hold_ms;
      if (now >= next_poll || hold_over) {
        next_poll = now + poll;
        last_check = now;
        lock.unlock();
        CheckRegistry(caught_up_since);
        lock.lock();
      }
    }
  }

  // Off the lock: re-reads the registry; sees a retirement; marks caught up.
  void CheckRegistry(int64_t caught_up_since, bool hold_over = false) {
    // Unreadable, the registry's throttle, pause and retire of this version
    // go unseen: a principal that lost Read on the control topic went on
    // reading while paused and retired, without a word (a bug bash). Said
    // at once, every minute while it lasts, and when it reads again.
    if (Status read = registry_.Refresh(); !read.ok()) {
      const int64_t now = WallClockMs();
      if (unreadable_since_ms_ == 0) unreadable_since_ms_ = now;
      if (now - unreadable_warned_ms_ >= 60000) {
        unreadable_warned_ms_ = now;
        Note(NoteLevel::kWarning,
             "cannot read the control topic " + registry_.control_topic() + " for " +
                 std::to_string((now - unreadable_since_ms_) / 1000) + " s (" + read.message() + "): kappa throttle, " +
                 "pause and retire of " + job_ + " v" + std::to_string(version_) +
                 " are not seen until it can; it runs on and asks again every second");
      }
      return;
    }
    if (unreadable_since_ms_ != 0) {
      Note(NoteLevel::kInfo, "reading the control topic " + registry_.control_topic() + " again after " +
                                 std::to_string((WallClockMs() - unreadable_since_ms_) / 1000) + " s");
      unreadable_since_ms_ = 0;
      unreadable_warned_ms_ = 0;
    }
    if (options_.on_registry_read) options_.on_registry_read(registry_);
    auto job = registry_.Job(job_);
    VersionInfo* self = job ? job->Find(version_) : nullptr;
    if (!self) {
      // Its registration is gone (the control topic deleted, or made
      // again): it ran on unseen by status, promote, throttle and retire,
      // without a word (a bug bash).
      if (!unregistered_warned_) {
        unregistered_warned_ = true;
        Note(NoteLevel::kWarning, "job " + job_ + " version " + std::to_string(version_) +
                                      " is no longer in the control topic " + registry_.control_topic() +
                                      " (deleted, or made again?): it runs on, but kappa status, promote, throttle "
                                      "and retire do not see it; stop it and register it again with kappa "
                                      "deploy/replay");
      }
      return;
    }
    unregistered_warned_ = false;
    if (self->state == VersionState::kRetired) {
      if (!retired_.exchange(true)) {
        Note(NoteLevel::kInfo, "job " + job_ + " version " + std::to_string(version_) + " was retired; stopping");
      }
      return;
    }
    ApplyRate(*job);
    if (self->state != VersionState::kReplaying) {
      caught_up_settled_ = true;  // live or already caught up: nothing to mark
      return;
    }
    // Scaled out, the version is caught up when every partition is: its
    // instances' records merged (this one judges only its own partitions).
    if (scaled_out_ && caught_up_since != 0) {
      auto merged = registry_.Progress(job_, version_);
      caught_up_since = merged ? merged->caught_up_since_ms : 0;
    }
    if (caught_up_since != 0 && !caught_up_settled_ &&
        (hold_over || WallClockMs() - caught_up_since >= options_.catch_up_hold_ms)) {
      // A write that loses to a concurrent one is redone on the new state (a
      // failure is retried at the next check).
      for (int attempt = 0; attempt < 5; ++attempt) {
        self->state = VersionState::kCaughtUp;
        auto won = registry_.TryPutJob(*job);
        if (!won.ok()) return;
        if (*won) {
          caught_up_settled_ = true;
          const bool held = WallClockMs() - caught_up_since >= options_.catch_up_hold_ms;
          Note(NoteLevel::kInfo, "job " + job_ + " version " + std::to_string(version_) +
                                     " caught up (every partition within " +
                                     std::to_string(options_.catch_up_max_lag) + " records of the end " +
                                     (held ? "for " + std::to_string(options_.catch_up_hold_ms) + " ms"
                                           : std::string("when its bounded run ended")) +
                                     "); ready to promote");
          return;
        }
        job = registry_.Job(job_);
        self = job ? job->Find(version_) : nullptr;
        if (!self || self->state != VersionState::kReplaying) return;  // the next check sees what changed
      }
    }
  }

  // The serving version's lag as its last report says, or more where this
  // replay has since seen its source's log further on: a live process
  // stalled (SIGSTOP, starved of CPU) publishes nothing, and the lag it last
  // reported, 0, held while its log grew by 60,000 records (a bug bash).
  int64_t LiveLag(const JobRecord& job, const ProgressRecord& live) {
    const VersionInfo* serving = job.Find(job.serving);
    const VersionInfo* self = job.Find(version_);
    std::map<int32_t, int64_t> ends;
    if (serving && self && serving->source_topic == self->source_topic) {
      std::lock_guard<std::mutex> lock(mu_);
      if (latest_) {
        for (const auto& p : latest_->snapshot.partitions) ends[p.partition] = p.log_end;
      }
    }
    int64_t lag = 0;
    for (PartitionProgress p : live.snapshot.partitions) {
      if (auto it = ends.find(p.partition); it != ends.end()) p.log_end = std::max(p.log_end, it->second);
      lag += p.lag();
    }
    return lag;
  }

  static std::string Rate(double r) { return RateText(r); }

  // Publisher thread: the throttle record and the serving version's lag
  // decide the job's cap (read by the job thread at its next read).
  void ApplyRate(const JobRecord& job) {
    auto throttle = registry_.Throttle(job_, version_);
    const double cap = throttle && throttle->max_rate >= 0 ? throttle->max_rate : started_cap_;
    const bool paused = throttle && throttle->paused;
    const int64_t at = throttle ? throttle->updated_at_ms : 0;
    if (at != throttle_at_) {
      throttle_at_ = at;
      if (throttle) {
        Note(NoteLevel::kInfo, "throttle: v" + std::to_string(version_) + " " + (paused ? "paused" : "at " + Rate(cap)) +
                                   " (kappa throttle, " + std::to_string(WallClockMs() - at) + " ms ago)");
      }
    }
    // A version-wide cap (kappa throttle --max-rate N) is shared by the
    // instances; protection lowers it for all of them, from the version's
    // rate: each instance ramping its own rate back up to the whole cap read
    // 4,739-5,063 rec/s under a cap of 3,000 (a bug bash).
    const bool wide = throttle && throttle->max_rate > 0;
    if (options_.protect_live_lag > 0 && job.serving != 0 && job.serving != version_) {
      auto live = registry_.Progress(job_, job.serving);
      if (live && !live->stopped) {
        const int64_t lag = LiveLag(job, *live);
        const int64_t limit = options_.protect_live_lag;
        const std::string who = "live v" + std::to_string(job.serving) + " lag " + std::to_string(lag);
        if (lag > limit) {
          double base = protect_rate_;
          if (base <= 0) {
            double measured = 0;
            if (wide) {
              if (auto mine = registry_.Progress(job_, version_)) measured = mine->snapshot.records_per_second;
            } else {
              std::lock_guard<std::mutex> lock(mu_);
              if (latest_) measured = latest_->snapshot.records_per_second;
            }
            base = cap > 0 ? (measured > 0 ? std::min(cap, measured) : cap) : measured;
            unprotected_rate_ = base;
          }
          const double ceiling = cap > 0 ? cap : unprotected_rate_;
          const double floor = std::max(100.0, ceiling * 0.01);
          const double lowered = std::max(floor, base / 2);
          if (base <= 0 || lowered < base || protect_rate_ <= 0) {
            protect_rate_ = base <= 0 ? floor : lowered;
            Note(NoteLevel::kInfo, "protect-live-lag: " + who + " > " + std::to_string(limit) +
                                       ", replay rate lowered to " + Rate(protect_rate_));
          }
        } else if (protect_rate_ > 0 && lag < limit / 2) {
          const double ceiling = cap > 0 ? cap : unprotected_rate_;
          const double raised = protect_rate_ * 1.5;
          if (raised >= ceiling) {
            protect_rate_ = 0;
            Note(NoteLevel::kInfo, "protect-live-lag: " + who + " < " + std::to_string(limit / 2) +
                                       ", replay rate back to " + Rate(cap));
          } else {
            protect_rate_ = raised;
            Note(NoteLevel::kInfo, "protect-live-lag: " + who + " < " + std::to_string(limit / 2) +
                                       ", replay rate raised to " + Rate(protect_rate_));
          }
        }
      }
    }
    double effective = cap;
    if (protect_rate_ > 0) effective = cap > 0 ? std::min(cap, protect_rate_) : protect_rate_;
    // Without a version-wide cap, protect_live_lag works from this
    // process's measured rate: its own.
    rate_->version_wide.store(wide || (throttle && throttle->max_rate == 0 && protect_rate_ <= 0),
                              std::memory_order_relaxed);
    rate_->max_rate.store(effective, std::memory_order_relaxed);
    rate_->paused.store(paused, std::memory_order_relaxed);
  }

  Registry& registry_;
  const std::string job_;
  const int32_t version_;
  const bool scaled_out_;
  const DeploymentOptions& options_;
  const std::shared_ptr<RateControl> rate_;
  const double started_cap_;
  // Publisher thread only.
  int64_t throttle_at_ = 0;        // the throttle record last applied (its time)
  double protect_rate_ = 0;        // > 0: protect_live_lag holds the rate here
  double unprotected_rate_ = 0;    // the rate before protection began (for a run without cap)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<ProgressRecord> pending_;  // offered, not yet published
  std::optional<ProgressRecord> latest_;   // the last offered
  std::vector<std::pair<NoteLevel, std::string>> notes_;
  bool stopping_ = false;
  bool caught_up_settled_ = false;  // publisher thread only: marked caught up, or nothing to mark
  bool unregistered_warned_ = false;  // publisher thread only: said that its registration is gone
  int64_t unreadable_since_ms_ = 0;   // publisher thread only: the registry unreadable since (0: readable)
  int64_t unreadable_warned_ms_ = 0;  // and when that was last said
  std::atomic<bool> retired_{false};
  std::thread thread_;
};

}  // namespace

namespace {

// sink.postgres: the version's table exists from the start (the sink's own
// DDL, IF NOT EXISTS) and the serving view agrees with the registry (the
// registry wins, replay/pg_serving.h). The sink reports a database it cannot
// reach; here that is only a warning.
// `pg` is the session RunDeployment checked the database with. Returns
// whether it created the version's table.
template <typename Note>
bool ReconcilePostgres(const JobSpec& spec, const JobRecord& record, Note& note, PgClient& pg) {
  bool made = false;
  auto existed = PgRelationExists(pg, spec.PostgresTable());
  Status st = pg.Exec(PostgresCreateTable(spec)).status();
  // Made here, before the sink: its comment names the job, as the sink's
  // would have (the check that a job is not given another's table reads
  // it; tables deploy and replay made had none, a bug bash).
  if (st.ok() && existed.ok() && !*existed) {
    made = true;
    const std::string table = QuoteQualified(spec.PostgresTable());
    st = pg.Exec("DO $$ BEGIN IF obj_description(" + QuoteLiteral(table) +
                 "::regclass, 'pg_class') IS NULL THEN COMMENT ON TABLE " + table + " IS " +
                 QuoteLiteral(PgOwnerComment(spec.job)) + "; END IF; END $$")
             .status();
  }
  if (st.ok()) {
    SwapWait wait;
    wait.on_wait = [&note](const std::string& text) { note(NoteLevel::kWarning, text); };
    auto line = ReconcileServing(record, spec.postgres_dsn, wait);
    st = line.status();
    if (line.ok() && !line->empty()) note(NoteLevel::kInfo, *line);
  }
  if (!st.ok()) note(NoteLevel::kWarning, "the PostgreSQL serving view was not checked: " + st.ToString());
  return made;
}

}  // namespace

// How long after its registration a version that no process has reported
// for is taken as never started.
constexpr int64_t kUnstartedAfterMs = 30000;

Status CheckControlTopic(const JobSpec& spec, const std::string& control_topic) {
  // `--control-topic transactions` wrote registry records into the job's
  // input, which every job reading it then dead-lettered (a bug bash); the
  // spec refuses the same for its own output topics.
  const std::vector<std::pair<const char*, std::string>> topics = {
      {"source", spec.source_topic},
      {"output", spec.postgres() ? std::string() : spec.OutputTopic()},
      {"DLQ", spec.dlq_topic},
      {"parked DLQ", spec.ParkedTopic()},
      {"late", spec.late_topic},
      {"repartition", spec.RepartitionTopic(1)},
      {"changelog", spec.ChangelogTopic()}};
  for (const auto& [what, topic] : topics) {
    if (topic.empty() || topic != control_topic) continue;
    return Status::InvalidArgument("--control-topic " + control_topic + " is the job's " + what +
                                   " topic: the registry needs a topic of its own (default kappa.control)");
  }
  return Status::OK();
}

Status RunDeployment(const KafkaConfig& config, const JobSpec& spec, const DeploymentOptions& options,
                     Registry& registry, StopToken stop, RunSummary* summary) {
  auto note = [&](NoteLevel level, const std::string& text) {
    if (options.on_note) options.on_note(level, text);
  };
  KAPPA_RETURN_IF_ERROR(CheckControlTopic(spec, registry.control_topic()));
  // The state directory first: a directory another job or version holds
  // (or one that cannot be made) refused after the registration left a
  // version registered, serving, that no process could ever run (a bug bash).
  KAPPA_RETURN_IF_ERROR(ClaimStateDir(spec.state_dir, spec.job, spec.version));
  // The source first: a deploy whose source is missing registered, and
  // while it was registered another job's valid deploy of the same sink
  // withdrew in its favour (a bug bash).
  if (!options.run.archive_only) KAPPA_RETURN_IF_ERROR(SourcePartitionCount(config, spec.source_topic).status());
  // The database too: a deploy with PostgreSQL down registered the version,
  // said "running live", failed, and left it serving with "no progress
  // reported yet" for good (a bug bash).
  std::unique_ptr<PgClient> pg;  // kept for ReconcilePostgres below
  if (spec.postgres()) {
    auto connected = PgClient::Connect(spec.postgres_dsn);
    if (!connected.ok()) return connected.status().WithContext("sink.postgres: ");
    pg = std::move(*connected);
  }
  // A restart finds its version registered: said so, not "registered"
  // again. Fresh: this process's write added the version (another process
  // registering the same version at the same moment found it registered).
  bool fresh = false;
  auto registered = RegisterVersion(registry, spec, options.replay, &fresh);
  if (!registered.ok()) return registered.status();
  // Registered before by a process that never reported (killed right after
  // registering, before its start was refused: a bug bash left such a
  // version serving, unretirable, for good): a refusal withdraws it too,
  // once no process of it can still be starting (30 s).
  const VersionInfo* found = registered->Find(spec.version);
  const bool unstarted_before = !fresh && found != nullptr && found->state != VersionState::kRetired &&
                                WallClockMs() - found->registered_at_ms >= kUnstartedAfterMs &&
                                !registry.Progress(spec.job, spec.version);
  const int64_t claim = fresh || unstarted_before ? registry.RegisteredOffset(spec.job, spec.version) : -1;
  // A version that never ran is unregistered again, so that a refused
  // deploy leaves the registry as it was: refused at its start (its sink
  // holding another job's rows, its state another job's, its source
  // missing), it stayed registered, serving, unretirable, and answering
  // `kappa get` with the other job's rows (a bug bash); a scaled-out
  // replay stayed "replaying" on a missing changelog topic. Not if another
  // instance of it has reported meanwhile.
  bool reconciled_postgres = false;  // ReconcilePostgres ran (below)
  bool created_table = false;        // and made the version's table
  auto unregister = [&](const Status& why) {
    // Refusals of the spec only: a state directory in use (another process
    // of this version started at the same moment runs it, a bug bash) or a
    // Kafka away says nothing against the registration.
    const bool refused = why.code() == Status::Code::kNotFound || why.code() == Status::Code::kFailedPrecondition ||
                         why.code() == Status::Code::kInvalidArgument;
    if (claim < 0 || !refused) return why;
    Status undone = UnregisterUnstarted(registry, spec, claim);
    note(undone.ok() ? NoteLevel::kInfo : NoteLevel::kWarning,
         undone.ok() ? "job " + spec.job + " version " + std::to_string(spec.version) +
                           " unregistered again: it did not start"
                     : "could not unregister job " + spec.job + " version " + std::to_string(spec.version) +
                           ", which did not start: " + undone.ToString() + "; retire it with kappa retire");
    if (undone.ok() && reconciled_postgres) {
      // What the start made in PostgreSQL goes with the registration: a
      // refused deploy left its view (over another job's table, when that
      // was the refusal), its kappa_serving row and its empty table (a bug
      // bash).
      std::optional<JobRecord> after;
      if (registry.Refresh().ok()) after = registry.Job(spec.job);
      auto line = WithdrawServing(after, spec.postgres_dsn, spec.job, spec.postgres_table, spec.version,
                                  created_table);
      if (!line.ok()) {
        note(NoteLevel::kWarning, "PostgreSQL: what the start made for version " + std::to_string(spec.version) +
                                      " (view " + spec.postgres_table + ", table " + spec.PostgresTable() +
                                      ") was not undone: " + line.status().ToString());
      } else if (!line->empty()) {
        note(NoteLevel::kInfo, *line);
      }
    }
    return why;
  };
  // Two jobs registering one output at the same moment both passed the
  // check, each before the other's write (a bug bash: both served, and
  // `kappa get` answered with the other job's rows): the log order of the
  // two registrations decides, the later one withdraws.
  if (fresh) {
    if (Status first = CheckRegisteredFirst(registry, spec); !first.ok()) return unregister(first);
  }
  if (spec.postgres()) {
    created_table = ReconcilePostgres(spec, *registered, note, *pg);
    pg.reset();  // the job's sink opens its own session
    reconciled_postgres = true;
  }
  note(NoteLevel::kInfo, "job " + spec.job + " version " + std::to_string(spec.version) +
                             (fresh ? " registered (" : " registered already (") +
                             (registered->serving == spec.version ? "serving" : "not serving") + "); " +
                             (options.replay ? "replaying beside the running versions, from offset 0 or from its checkpoint"
                                             : "running live"));

  // The cap the job reads at every read, set by the publisher from the
  // throttle record and protect_live_lag; a throttle written before this
  // start applies from the first read.
  auto rate = std::make_shared<RateControl>(options.run.max_rate);
  if (auto throttle = registry.Throttle(spec.job, spec.version)) {
    if (throttle->max_rate >= 0) {
      rate->max_rate.store(throttle->max_rate);
      rate->version_wide.store(true);
    }
    rate->paused.store(throttle->paused);
    note(NoteLevel::kInfo, "throttle: v" + std::to_string(spec.version) + " starts " + DescribeThrottle(*throttle) +
                               " (kappa throttle; --resume / --max-rate to change)");
  }
  if (options.on_registry_read) options.on_registry_read(registry);
  // From here until the job returns, only the publisher touches the registry.
  ProgressPublisher publisher(registry, spec, options, rate);
  auto drain_notes = [&] {
    for (auto& [level, text] : publisher.TakeNotes()) note(level, text);
  };
  int64_t caught_up_since = 0;
  // Scaled out: this instance's last record (from the registry at its
  // start), so that positions of partitions it does not hold (yet) are
  // carried into its records rather than forgotten by the first one.
  std::optional<ProgressRecord> previous;
  if (spec.scale_out.enabled) {
    for (auto& r : registry.InstanceProgress(spec.job, spec.version)) {
      if (r.instance == spec.scale_out.instance) previous = std::move(r);
    }
  }
  RunOptions run = options.run;
  run.source_checked = !run.archive_only;
  run.rate_control = rate;
  run.on_checkpoint = [&](const ProgressSnapshot& snapshot) -> bool {
    // With no broker answering, the log ends are stale: not caught up.
    if (!snapshot.source_unreachable() && snapshot.max_lag() <= options.catch_up_max_lag) {
      if (caught_up_since == 0) caught_up_since = WallClockMs();
    } else {
      caught_up_since = 0;
    }
    ProgressRecord record;
    record.job = spec.job;
    record.version = spec.version;
    record.snapshot = snapshot;
    record.caught_up_since_ms = caught_up_since;
    record.instance = spec.scale_out.enabled ? spec.scale_out.instance : std::string();
    record.report_interval_ms = spec.checkpoint_interval_ms;
    if (spec.scale_out.enabled) {
      if (previous) CarryReleasedPositions(*previous, &record);
      previous = record;
    }
    publisher.Offer(std::move(record));
    drain_notes();
    return !publisher.retired();
  };
  JobRunner runner(spec, config, run);
  Status st = runner.Run(stop);
  if (summary) *summary = runner.summary();
  publisher.Stop();
  if (!st.ok() && !publisher.latest() && runner.summary().records_this_run == 0 && claim >= 0) {
    drain_notes();
    return unregister(st);
  }
  publisher.FinishCatchUp(st.ok() && runner.summary().input_ended && run.stop_at_end);
  drain_notes();
  // Say the process has stopped, so status never shows a dead version as
  // running; this one write is awaited.
  // Only a process that ran: one refused at its start (its state directory
  // in use by the version's running process) marked that process's record
  // stopped, and retire then deleted the running version's state (a bug
  // bash). A run too short to report marks the record it found.
  // A process that failed before it reported (a restore refused, say)
  // marks the record of the version's last process only if that one had
  // stopped: a running one is another process's.
  std::optional<ProgressRecord> last = publisher.latest();
  if (!last && st.ok()) last = registry.Progress(spec.job, spec.version);
  if (!last && !st.ok() && !spec.scale_out.enabled) {
    auto found = registry.Progress(spec.job, spec.version);
    if (found && found->stopped) last = found;
    // A first run that read records and failed before its first report (a
    // replay stopped by a history gap within a second): status said "no
    // progress reported yet", then "may have failed at its start", never
    // the error (a bug bash). It ran, so no other process holds the version.
    if (!found && runner.summary().records_this_run > 0) {
      last = ProgressRecord{};
      last->job = spec.job;
      last->version = spec.version;
      last->snapshot.checkpoint_ms = WallClockMs();
      last->snapshot.counters = runner.summary().counters;
    }
  }
  if (last) {
    last->stopped = true;
    // An exit on an error said so only on the process's stderr: status
    // showed "stopped", as after an operator's clean stop (a bug bash).
    last->exit_error = st.ok() ? std::string() : ExitErrorLine(st);
    if (spec.scale_out.enabled) last->instance = spec.scale_out.instance;
    Status put = registry.PutProgress(*last);
    if (!put.ok()) {
      note(NoteLevel::kWarning, "could not record that the version stopped: " + put.ToString());
      if (summary) summary->stop_unrecorded = true;
    }
  }
  return st;
}

}  // namespace kappa
