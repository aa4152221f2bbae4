#include "engine/stage_plan.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <variant>

#include "kafka/kafka_client.h"
#include "operators/repartition.h"

namespace kappa {
namespace {

size_t RepartitionIndex(const JobSpec& spec) {
  for (size_t i = 0; i < spec.operators.size(); ++i) {
    if (std::holds_alternative<RepartitionSpec>(spec.operators[i])) return i;
  }
  return spec.operators.size();
}

// The repartition topic, created when missing. Its partition count is part
// of where each key goes: a topic with another count is refused.
Status EnsureRepartitionTopic(rd_kafka_s* rk, const JobSpec& spec, const std::string& topic, int32_t partitions) {
  std::string refused;
  auto created = CreateTopicIfMissing(rk, topic, partitions, {}, 20000, &refused);
  if (!created.ok()) return created.status();
  auto count = TopicPartitionCount(rk, topic, 10000);
  if (!count.ok()) {
    if (count.status().code() == Status::Code::kNotFound) {
      return Status::FailedPrecondition("the repartition topic " + topic + " does not exist and cannot be created here (" +
                                        refused + "): create it with " + std::to_string(partitions) +
                                        " partitions (on the embedded broker: kappa broker --topic " + topic + ":" +
                                        std::to_string(partitions) + ")");
    }
    return count.status();
  }
  if (*count != partitions) {
    return Status::FailedPrecondition(
        "the repartition topic " + topic + " has " + std::to_string(*count) + " partitions, but " + spec.job + " v" +
        std::to_string(spec.version) + " sends its records to " + std::to_string(partitions) +
        ": a key's partition depends on the count; delete " + topic +
        " only if no instance of this version runs (and reset stage 1's state), or deploy a new version");
  }
  return Status::OK();
}

}  // namespace

bool IsRepartitioned(const JobSpec& spec) { return RepartitionIndex(spec) < spec.operators.size(); }

int32_t RepartitionPartitions(const JobSpec& spec, int32_t source_partitions) {
  const size_t at = RepartitionIndex(spec);
  if (at == spec.operators.size()) return 0;
  const auto& r = std::get<RepartitionSpec>(spec.operators[at]);
  return r.partitions > 0 ? r.partitions : source_partitions;
}

std::vector<JobSpec> PlanStages(const JobSpec& spec, int32_t source_partitions) {
  const size_t at = RepartitionIndex(spec);
  JobSpec up = spec;
  up.operators.assign(spec.operators.begin(), spec.operators.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  std::get<RepartitionSpec>(up.operators.back()).partitions = RepartitionPartitions(spec, source_partitions);
  up.stage = 0;
  up.stage_output_topic = spec.RepartitionTopic(1);
  up.postgres_dsn.clear();
  up.postgres_table.clear();

  JobSpec down = spec;
  down.operators.assign(spec.operators.begin() + static_cast<std::ptrdiff_t>(at) + 1, spec.operators.end());
  down.stage = 1;
  down.stage_upstreams = source_partitions;
  down.source_topic = spec.RepartitionTopic(1);
  down.origin_topic = spec.source_topic;
  down.start = StartPosition::kEarliest;
  down.start_timestamp_ms = 0;
  down.allow_truncated_history = false;
  down.archive_dir.clear();
  down.state_dir = spec.state_dir + ".stage1";
  return {std::move(up), std::move(down)};
}

Status RunRepartitioned(const JobSpec& spec, const KafkaConfig& config, const RunOptions& options, StopToken stop,
                        RunSummary* summary) {
  if (options.archive_only) {
    return Status::InvalidArgument(
        "a repartitioned job needs Kafka between its stages: run it with --archive (the archive, then Kafka) "
        "instead of --archive-only");
  }
  if (spec.scale_out.enabled && options.stop_at_end) {
    // Stage 2 of one process cannot tell when the other processes' stage 1
    // has written its last record: it stopped at the repartition topic's
    // end of the moment, and each process "stopped cleanly" with outputs
    // missing (a bug bash).
    return Status::InvalidArgument(
        "--stop-at-end is not supported for a scaled-out job with repartition: one process cannot tell when "
        "the others have written their last repartitioned record; run it without --stop-at-end (stop it once "
        "`kappa status` shows no lag), or in one process (scale_out: false) to read to the end");
  }
  int32_t source_partitions = 0;
  {
    // Asked even when the caller has (the plan needs the count); the
    // stages are not asked again, nor for the repartition topic made here.
    auto count = SourcePartitionCount(config, spec.source_topic);
    if (!count.ok()) return count.status();
    source_partitions = *count;
    auto client = CreateClient(ClientKind::kProducer, config, {});
    if (!client.ok()) return client.status();
    KAPPA_RETURN_IF_ERROR(EnsureRepartitionTopic(client->get(), spec, spec.RepartitionTopic(1),
                                                 RepartitionPartitions(spec, source_partitions)));
  }
  JobSpec whole = spec;
  if (whole.scale_out.enabled && whole.scale_out.instance.empty()) {
    // One name for the process in both groups.
    whole.scale_out.instance = DefaultInstanceName(whole.state_dir);
  }
  std::vector<JobSpec> stages = PlanStages(whole, source_partitions);

  auto upstream_ended = std::make_shared<std::atomic<bool>>(false);
  RunOptions up_options = options;
  RunOptions down_options = options;
  // Which error ends the job is decided here, from both stages' (returned).
  up_options.on_error = nullptr;
  down_options.on_error = nullptr;
  down_options.upstream_ended = upstream_ended;
  up_options.source_checked = true;
  down_options.source_checked = true;
  down_options.archive_dir.clear();
  down_options.metrics_file.clear();  // its own state directory's
  down_options.metrics = nullptr;
  down_options.on_status = nullptr;
  down_options.on_checkpoint = nullptr;
  down_options.rate_control = nullptr;
  down_options.max_rate = 0;  // the cap is on the input; stage 1 follows
  auto second_stage = std::make_shared<StageCounters>();
  down_options.publish_counters = second_stage;
  up_options.second_stage = second_stage;
  if (options.on_note) {
    down_options.on_note = [note = options.on_note](NoteLevel level, const std::string& text) {
      note(level, "stage 2 (after the repartition): " + text);
    };
  }

  StopSource up_stop;
  StopSource down_stop;
  std::atomic<bool> down_done{false};
  std::atomic<bool> up_done{false};
  Status down_status;
  JobRunner down(stages[1], config, std::move(down_options));
  std::thread down_thread([&] {
    down_status = down.Run(down_stop);
    down_done.store(true);
  });
  // Relays the caller's stop to both stages, and a failed stage 1 to stage 0.
  std::thread relay([&] {
    while (!up_done.load() || !down_done.load()) {
      if (stop.stop_requested()) {
        up_stop.RequestStop();
        down_stop.RequestStop();
      }
      if (down_done.load() && !up_done.load()) up_stop.RequestStop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  JobRunner up(stages[0], config, std::move(up_options));
  Status up_status = up.Run(up_stop);
  if (up_status.ok() && up.summary().input_ended) {
    // Stage 1 reads what stage 0 wrote, to its end (stop_at_end).
    upstream_ended->store(true, std::memory_order_release);
    if (!options.stop_at_end) down_stop.RequestStop();
  } else {
    down_stop.RequestStop();
  }
  up_done.store(true);
  down_thread.join();
  relay.join();

  const RunSummary& a = up.summary();
  const RunSummary& b = down.summary();
  *summary = a;
  if (whole.scale_out.enabled) {
    // Stage 1 holds some repartition partitions, written by every process:
    // its records are not this process's stage 0 outputs, and adding them up
    // made an account that did not balance. Each stage balances on its own.
    summary->stage2 = b.counters;
  } else {
    // The job's records: read and dropped by stage 0, aggregated and written
    // by stage 1 (stage 0's `out` is what it repartitioned).
    summary->counters = a.counters.WithSecondStage(b.counters);
  }
  summary->sink_rejected = b.sink_rejected;  // stage 1 writes the sink
  summary->epochs += b.epochs;
  summary->checkpoint_max_ms = std::max(a.checkpoint_max_ms, b.checkpoint_max_ms);
  summary->checkpoint_total_ms += b.checkpoint_total_ms;
  summary->flush_total_ms += b.flush_total_ms;
  summary->writer_wait_total_ms += b.writer_wait_total_ms;
  summary->writer_wait_max_ms = std::max(a.writer_wait_max_ms, b.writer_wait_max_ms);
  summary->capture_max_ms = std::max(a.capture_max_ms, b.capture_max_ms);
  summary->final_durable_ms = std::max(a.final_durable_ms, b.final_durable_ms);
  summary->seconds = std::max(a.seconds, b.seconds);
  summary->input_ended = a.input_ended && b.input_ended;
  if (!up_status.ok()) return up_status;
  if (!down_status.ok()) {
    return down_status.WithContext("stage 2 (after the repartition): ");
  }
  return up.ReportWithFinalSecondStage();
}

}  // namespace kappa
