// kappa gen: produces a deterministic workload (transactions or Nexmark)
// into a topic, or writes it to a record file for `kappa archive --import`.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <vector>

#include "cli/command.h"
#include "formats/builtin_decoders.h"
#include "kafka/kafka_client.h"
#include "kafka/schema_registry.h"
#include "workload/event_encoding.h"
#include "workload/event_producer.h"
#include "workload/record_file_export.h"
#include "workload/nexmark_generator.h"
#include "workload/transaction_generator.h"

namespace po = boost::program_options;

namespace kappa::cli {
namespace {

// The produce loop's progress, rewritten in place on a terminal.
ProgressFn GenProgress(bool tty, const char* unit) {
  if (!tty) return {};
  return [unit](uint64_t sent, uint64_t total, double seconds) {
    std::fprintf(stderr, "\r  gen %llu/%llu (%3.0f%%)  %.0f %s/s   ", static_cast<unsigned long long>(sent),
                 static_cast<unsigned long long>(total), total ? 100.0 * sent / total : 100.0,
                 seconds > 0 ? sent / seconds : 0.0, unit);
  };
}
Status CheckFraction(const char* name, double v) {
  if (!(v >= 0 && v <= 1)) return Status::InvalidArgument(std::string("--") + name + " must be between 0 and 1");
  return Status::OK();
}

// Shows `kappa gen --to-archive` progress on a terminal.
ProgressFn FileProgress(bool tty) {
  return [tty](uint64_t written, uint64_t total, double) {
    if (!tty) return;
    std::fprintf(stderr, "\r  gen %llu/%llu (%3.0f%%)   ", static_cast<unsigned long long>(written),
                 static_cast<unsigned long long>(total), 100.0 * written / std::max<uint64_t>(1, total));
  };
}

// The malformed records by the classes of a user format (json, avro,
// flatbuffers; workload/event_encoding.h), after the summary line.
void PrintMalformedClasses(const EncodingOptions& e, const EncodingStats& stats) {
  if (e.format == EventFormat::kTransaction) return;
  std::string classes;
  for (int c = 1; c < kMalformedClasses; ++c) {
    if (stats.count[c] == 0) continue;
    classes += " " + std::string(MalformedClassName(static_cast<MalformedClass>(c))) + " " +
               std::to_string(stats.count[c]);
  }
  // Nothing malformed: said so, not an empty list.
  std::printf("  format %s, malformed by class:%s\n", EventFormatName(e.format),
              classes.empty() ? " none" : classes.c_str());
}

// A delivery the broker refused for its timestamp: each record's Kafka
// timestamp is its event time, which the message alone did not say.
// The size of a written record file in MB: what the disk holds, keys,
// timestamps and framing included (the values alone were reported as the
// file's size: 226 MB for a 399 MB file, a bug bash).
double FileMb(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<double>(size) / 1e6;
}

// Each partition's log start of `topic`: none for a topic that does not
// exist yet, an error when Kafka cannot be reached (asked before writing,
// gen waited 10 s here, then 10 s more to write, and said "within 10 s",
// a bug bash).
Result<std::vector<int64_t>> LogStarts(rd_kafka_s* rk, const std::string& topic) {
  auto marks = QueryTopicWatermarks(rk, topic, 10000);
  if (!marks.ok()) {
    if (marks.status().code() == Status::Code::kUnavailable) return marks.status();
    return std::vector<int64_t>{};
  }
  std::vector<int64_t> starts;
  for (const Watermarks& m : *marks) starts.push_back(m.low);
  return starts;
}
Result<std::vector<int64_t>> LogStartsBefore(const KafkaConfig& config, const std::string& topic) {
  auto client = CreateClient(ClientKind::kConsumer, config, {});
  if (!client.ok()) return client.status();
  return LogStarts(client->get(), topic);
}

// Records the broker dropped while they were written (the embedded
// broker keeps the last 5 MiB of each partition; a real one's retention.bytes
// or retention.ms can too): gen said it wrote them all, and the job then
// stopped on a history gap (a bug bash: 22,068 of 150,000 gone in silence).
void WarnIfDropped(const KafkaConfig& config, const std::string& topic, const std::vector<int64_t>& before) {
  auto client = CreateClient(ClientKind::kConsumer, config, {});
  if (!client.ok()) return;
  auto starts = LogStarts(client->get(), topic);
  const std::vector<int64_t> after = starts.ok() ? *starts : std::vector<int64_t>{};
  int64_t dropped = 0;
  std::string where;
  for (size_t p = 0; p < after.size(); ++p) {
    const int64_t was = p < before.size() ? before[p] : 0;
    if (after[p] <= was) continue;
    dropped += after[p] - was;
    where += (where.empty() ? "" : ", ") + std::string("partition ") + std::to_string(p) + " now starts at " +
             std::to_string(after[p]);
  }
  if (dropped == 0) return;
  const bool embedded = IsEmbeddedBroker(client->get(), 5000).value_or(false);
  std::fprintf(stderr,
               "kappa gen: WARNING the broker no longer holds %lld of the records of %s (%s): %s\n",
               static_cast<long long>(dropped), topic.c_str(), where.c_str(),
               embedded ? "the embedded broker keeps the last 5 MiB of each partition; give the topic more "
                          "partitions (kappa broker --topic NAME:PARTITIONS), or write fewer records"
                        : "the topic's retention (retention.bytes or retention.ms) deleted them");
}

Status WithTimestampHint(Status st) {
  if (st.message().find("INVALID_TIMESTAMP") == std::string::npos) return st;
  return Status::FailedPrecondition(
      st.message() +
      "; each record's Kafka timestamp is its event time (--start-time-ms on): the broker refuses timestamps more "
      "than message.timestamp.after.max.ms ahead of its clock (1 h by default) or more than "
      "message.timestamp.before.max.ms behind it; start earlier, or set those on the topic");
}

// Writes the transaction workload to a record file (workload/record_file_export.h).
int GenToFile(const GeneratorOptions& g, const EncodingOptions& e, const std::string& path, int partitions, bool tty) {
  auto summary = WriteEventsToFile(path, g, partitions, FileProgress(tty), e);
  if (tty) std::fprintf(stderr, "\n");
  if (!summary.ok()) return Fail("gen", summary.status());
  const auto& s = summary->stats;
  std::printf("kappa gen: %llu records (%.1f MB of keys and values; the file %.1f MB) over %d partitions to %s in %.2f s; "
              "valid %llu, duplicates %llu, malformed %llu\n",
              static_cast<unsigned long long>(s.total), summary->bytes / 1e6, FileMb(path), partitions, path.c_str(),
              summary->seconds, static_cast<unsigned long long>(s.valid), static_cast<unsigned long long>(s.duplicates),
              static_cast<unsigned long long>(s.malformed()));
  PrintMalformedClasses(e, summary->encoding);
  return 0;
}


// kappa gen --workload nexmark: the Nexmark events instead of transactions,
// to a topic or (with --to-archive) a record file.
int GenNexmark(const KafkaConfig& config, const std::string& topic, const GeneratorOptions& g,
               bool default_rate, const std::string& to_archive, int partitions, EventFormat format) {
  NexmarkOptions n;
  n.count = g.count;
  n.seed = g.seed;
  n.start_time_ms = g.start_time_ms;
  if (!default_rate) n.events_per_second = g.events_per_second;
  const bool tty = StderrIsTerminal();
  if (!to_archive.empty()) {
    auto summary = WriteNexmarkToFile(to_archive, n, partitions, FileProgress(tty));
    if (tty) std::fprintf(stderr, "\n");
    if (!summary.ok()) return Fail("gen", summary.status());
    const auto& s = summary->nexmark;
    std::printf("kappa gen: %llu nexmark events (%.1f MB of values; the file %.1f MB) over %d partitions to %s\n"
                "  persons %llu, auctions %llu, bids %llu\n",
                static_cast<unsigned long long>(s.total), s.bytes / 1e6, FileMb(to_archive), partitions,
                to_archive.c_str(),
                static_cast<unsigned long long>(s.persons), static_cast<unsigned long long>(s.auctions),
                static_cast<unsigned long long>(s.bids));
    return 0;
  }
  const ProgressFn progress = GenProgress(tty, "events");
  auto before = LogStartsBefore(config, topic);
  if (!before.ok()) return Fail("gen", before.status());
  const std::vector<int64_t> starts = std::move(*before);
  auto summary = ProduceNexmark(config, topic, n, progress, format);
  if (tty) std::fprintf(stderr, "\n");
  if (!summary.ok()) return Fail("gen", WithTimestampHint(summary.status()));
  WarnIfDropped(config, topic, starts);
  const auto& s = summary->nexmark;
  std::printf("kappa gen: %llu nexmark events to %s (%d partitions) in %.2f s, %.0f events/s, %.1f MB\n"
              "  persons %llu, auctions %llu, bids %llu\n",
              static_cast<unsigned long long>(s.total), topic.c_str(), summary->partitions, summary->seconds,
              summary->seconds > 0 ? s.total / summary->seconds : 0.0, summary->bytes / 1e6,
              static_cast<unsigned long long>(s.persons), static_cast<unsigned long long>(s.auctions),
              static_cast<unsigned long long>(s.bids));
  return 0;
}
}  // namespace

int GenCommand(int argc, char** argv) {
  po::options_description desc("options");
  GeneratorOptions g;
  std::string topic;
  std::string workload = "transactions";
  // Signed on purpose: Boost parses "-5" into an unsigned as 2^64-5.
  int64_t count = 0, users = 0, seed = 0;
  std::string to_archive;
  int partitions = 0;
  std::string format_name = "transaction";
  int64_t schema_id = 1;
  std::string schema_registry;
  desc.add_options()
      ("help,h", "show this help")
      ("topic,t", po::value<std::string>(&topic), "topic to write (must exist; records are keyed by user_id over all its partitions)")
      ("to-archive", po::value<std::string>(&to_archive), "write a record file for `kappa archive --import` instead of producing to Kafka (no broker needed)")
      ("partitions", po::value<int>(&partitions)->default_value(0), "with --to-archive: partitions to spread the records over (by key, as the producer does)")
      ("count,n", po::value<int64_t>(&count)->default_value(static_cast<int64_t>(g.count)), "records in total (valid + duplicate + malformed)")
      ("users", po::value<int64_t>(&users)->default_value(static_cast<int64_t>(g.users)), "distinct users (Zipf-skewed activity), at most 100,000,000")
      ("zipf", po::value<double>(&g.zipf_exponent)->default_value(g.zipf_exponent), "Zipf exponent of user activity")
      ("seed", po::value<int64_t>(&seed)->default_value(static_cast<int64_t>(g.seed)), "random seed (non-negative): same seed, same bytes")
      ("rate", po::value<double>(&g.events_per_second)->default_value(g.events_per_second), "events per second of EVENT time (not of wall-clock time)")
      ("start-time-ms", po::value<int64_t>(&g.start_time_ms)->default_value(g.start_time_ms), "event time of the first record (ms since epoch)")
      ("late-fraction", po::value<double>(&g.out_of_order_fraction)->default_value(0.0), "fraction of transactions sent out of order (event time moved back)")
      ("max-delay-ms", po::value<int64_t>(&g.max_delay_ms)->default_value(g.max_delay_ms), "largest delay of an out-of-order event")
      ("duplicate-fraction", po::value<double>(&g.duplicate_fraction)->default_value(0.0), "fraction of records that resend a recent txn_id (a retrying producer)")
      ("malformed-fraction", po::value<double>(&g.malformed_fraction)->default_value(0.0), "fraction of malformed payloads (garbage, truncated, missing fields)")
      ("format", po::value<std::string>(&format_name)->default_value(format_name),
       "encoding of the transactions (the same events in every format): transaction (kappa's schemas/transaction.fbs), "
       "json (one object per record, fields in schemas/examples/transactions.json-fields.md), "
       "avro (schemas/examples/payment.avsc, Confluent wire format: byte 0, schema id, Avro binary) or "
       "flatbuffers (the user schema schemas/examples/payment.fbs)")
      ("schema-id", po::value<int64_t>(&schema_id)->default_value(schema_id),
       "with --format avro: the schema id written into every record's header; give the id under which your Schema "
       "Registry holds schemas/examples/payment.avsc, or let --schema-registry register it")
      ("schema-registry", po::value<std::string>(&schema_registry),
       "with --format avro: register schemas/examples/payment.avsc at this Schema Registry URL (its path is the API's "
       "base path) under the subject <topic>-value and write the id it gets")
      ("workload", po::value<std::string>(&workload)->default_value(workload), "transactions, or nexmark: the Nexmark benchmark's Person/Auction/Bid events (schemas/nexmark.fbs, 1:3:46), keyed by auction id (persons by person id), or with --format json the same events as JSON objects (workload/event_encoding.h: EncodeNexmarkJson); uses --count, --seed, --start-time-ms and --rate (default 10000 events/s of event time for nexmark)");
  AddKafkaOptions(desc);
  const std::string usage =
      "usage: kappa gen --brokers HOST:PORT --topic TOPIC [options]\n"
      "       kappa gen --to-archive FILE --partitions N [options]\n\n"
      "Generates transactions (txn_id, user_id, status, amount_cents, currency, event_time_ms)\n"
      "deterministically, as FlatBuffers Transaction records or (--format) JSON, Avro or a user\n"
      "FlatBuffers schema, and produces them, keyed by user_id, with\n"
      "an idempotent producer, or writes them with their partition and offset to a record file\n"
      "that `kappa archive --import` loads (the way to build a large history without a broker).\n"
      "Each record's Kafka timestamp is its event time (from --start-time-ms, 2026-01-01 by default;\n"
      "a malformed record, which has none, gets --start-time-ms):\n"
      "on a topic with time-based retention (retention.ms, 7 days by default) a history older than\n"
      "that goes at the broker's next retention check.\n"
      "Shows progress on a terminal and prints a summary.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "gen", usage, desc, nullptr, vm); rc >= 0) return rc;
  KafkaConfig config;
  const bool file_mode = vm.count("to-archive") > 0;
  Status st = file_mode ? Status::OK() : KafkaConfigFromOptions(vm, &config);
  if (st.ok() && !file_mode && topic.empty()) st = Status::InvalidArgument("--topic is required (or --to-archive FILE)");
  if (st.ok() && file_mode && (vm.count("brokers") || !topic.empty())) {
    st = Status::InvalidArgument("--to-archive writes a file, not to Kafka: --brokers and --topic do not apply (the "
                                 "topic is named when the file is imported: kappa archive --import FILE -t TOPIC)");
  }
  if (st.ok() && file_mode && (partitions < 1 || partitions > 100000)) {
    st = Status::InvalidArgument("--to-archive needs --partitions between 1 and 100000");
  }
  if (st.ok()) st = CheckFraction("late-fraction", g.out_of_order_fraction);
  if (st.ok()) st = CheckFraction("duplicate-fraction", g.duplicate_fraction);
  if (st.ok()) st = CheckFraction("malformed-fraction", g.malformed_fraction);
  if (st.ok() && g.duplicate_fraction + g.malformed_fraction > 1) st = Status::InvalidArgument("--duplicate-fraction plus --malformed-fraction exceeds 1");
  if (st.ok() && count < 0) st = Status::InvalidArgument("--count must not be negative");
  if (st.ok() && (users < 1 || users > 100000000)) st = Status::InvalidArgument("--users must be between 1 and 100,000,000");
  if (st.ok() && seed < 0) st = Status::InvalidArgument("--seed must not be negative");
  if (st.ok() && !(g.zipf_exponent >= 0 && g.zipf_exponent <= 10)) st = Status::InvalidArgument("--zipf must be between 0 (uniform) and 10");
  if (st.ok() && g.out_of_order_fraction > 0 && g.max_delay_ms <= 0) {
    st = Status::InvalidArgument("--late-fraction needs a positive --max-delay-ms (how far back a late event goes)");
  }
  g.count = static_cast<uint64_t>(count);
  g.users = static_cast<uint64_t>(users);
  g.seed = static_cast<uint64_t>(seed);
  // `!(x > 0)` catches NaN too (it compares false both ways).
  if (st.ok() && !(g.events_per_second > 0 && std::isfinite(g.events_per_second))) {
    st = Status::InvalidArgument("--rate must be a positive number of events per second");
  }
  if (st.ok() && g.max_delay_ms < 0) st = Status::InvalidArgument("--max-delay-ms must not be negative");
  // Every job dead-letters an event time below 1 ms or after the year 9999
  // (formats/builtin_decoders.h), and librdkafka stamps a record of
  // timestamp 0 with its clock: such records were counted valid here (a
  // bug bash).
  if (st.ok() && g.start_time_ms < 1) {
    st = Status::InvalidArgument("--start-time-ms must be at least 1: an event time is at least 1 ms since the epoch "
                                 "(every job dead-letters 0)");
  }
  // Out-of-order events are up to max_delay earlier: before 1 ms they were
  // counted valid here and dead-lettered by every job (event time must be
  // at least 1).
  if (st.ok() && g.out_of_order_fraction > 0 && g.start_time_ms <= g.max_delay_ms) {
    st = Status::InvalidArgument("--start-time-ms must be above --max-delay-ms (" + std::to_string(g.max_delay_ms) +
                                 "): out-of-order events are up to that much earlier, and an event time must be at "
                                 "least 1 ms since the epoch");
  }
  // The last event's time, start + count / rate seconds, must be one a job
  // takes: up to 9999-12-31T23:59:59.999Z (beyond 64 bits it wrapped to
  // negative times; beyond the year 9999 it was counted valid and
  // dead-lettered by every job).
  if (st.ok()) {
    const double span_ms = static_cast<double>(std::max<int64_t>(count - 1, 0)) / g.events_per_second * 1000.0;
    if (static_cast<double>(g.start_time_ms) + span_ms > static_cast<double>(kMaxEventTimeMs)) {
      st = Status::InvalidArgument("--start-time-ms plus --count / --rate seconds of event time goes past "
                                   "9999-12-31T23:59:59.999Z, the latest event time a job takes: start earlier or "
                                   "raise --rate");
    }
  }
  if (st.ok() && workload != "transactions" && workload != "nexmark") {
    st = Status::InvalidArgument("--workload must be transactions or nexmark, not `" + workload + "`");
  }
  EncodingOptions encoding;
  if (st.ok()) {
    auto format = ParseEventFormat(format_name);
    if (format.ok()) encoding.format = *format;
    else st = Status::InvalidArgument("--format: " + format.status().message());
  }
  if (st.ok() && (schema_id < 0 || schema_id > INT32_MAX)) st = Status::InvalidArgument("--schema-id must be between 0 and 2147483647");
  if (st.ok() && vm.count("schema-id") && !vm["schema-id"].defaulted() && encoding.format != EventFormat::kAvro) {
    st = Status::InvalidArgument("--schema-id applies to --format avro only");
  }
  if (st.ok() && !schema_registry.empty() && encoding.format != EventFormat::kAvro) {
    st = Status::InvalidArgument("--schema-registry applies to --format avro only");
  }
  if (st.ok() && !schema_registry.empty() && vm.count("schema-id") && !vm["schema-id"].defaulted()) {
    st = Status::InvalidArgument("give --schema-id or --schema-registry, not both");
  }
  if (st.ok() && workload == "nexmark" && encoding.format != EventFormat::kTransaction &&
      encoding.format != EventFormat::kJson) {
    st = Status::InvalidArgument("--workload nexmark writes kappa's FlatBuffers (the default) or --format json, not " +
                                 format_name);
  }
  if (st.ok() && workload == "nexmark") {
    // The transactions workload's shape options: accepted and ignored for
    // Nexmark, 50% malformed events asked for and none written (a bug bash).
    for (const char* option : {"users", "zipf", "late-fraction", "max-delay-ms", "duplicate-fraction",
                               "malformed-fraction"}) {
      if (vm.count(option) && !vm[option].defaulted()) {
        st = Status::InvalidArgument(std::string("--") + option +
                                     " shapes the transactions workload; --workload nexmark uses --count, --seed, "
                                     "--start-time-ms and --rate");
        break;
      }
    }
  }
  if (st.ok() && workload == "nexmark" && file_mode && encoding.format == EventFormat::kJson) {
    st = Status::InvalidArgument("--workload nexmark --format json writes to a topic only; drop --to-archive, or "
                                 "--format for the FlatBuffers events that `kappa archive --import` loads");
  }
  encoding.schema_id = static_cast<int32_t>(schema_id);
  if (st.ok() && !schema_registry.empty()) {
    // The Confluent convention: the value schema of topic T is subject T-value.
    auto options = SchemaRegistryOptions::FromProperties({{"schema.registry.url", schema_registry}});
    if (options.ok()) options->setting = "--schema-registry";
    auto client = options.ok() ? SchemaRegistryClient::Create(*options)
                               : Result<std::unique_ptr<SchemaRegistryClient>>(options.status());
    auto id = client.ok() ? (*client)->Register((file_mode ? std::string("kappa-gen") : topic) + "-value",
                                                AvroPaymentEncoder::SchemaJson())
                          : Result<int32_t>(client.status());
    if (id.ok()) {
      encoding.schema_id = *id;
    } else {
      st = id.status();  // it names the registry's URL and what to do
    }
  }
  if (!st.ok()) return Fail("gen", st);
  if (workload == "nexmark") {
    return GenNexmark(config, topic, g, vm["rate"].defaulted(), file_mode ? to_archive : std::string(), partitions,
                      encoding.format);
  }

  const bool tty = StderrIsTerminal();
  if (file_mode) return GenToFile(g, encoding, to_archive, partitions, tty);
  const ProgressFn progress = GenProgress(tty, "records");
  auto before = LogStartsBefore(config, topic);
  if (!before.ok()) return Fail("gen", before.status());
  const std::vector<int64_t> starts = std::move(*before);
  auto summary = ProduceEvents(config, topic, g, progress, encoding);
  if (tty) std::fprintf(stderr, "\n");
  if (!summary.ok()) return Fail("gen", WithTimestampHint(summary.status()));
  WarnIfDropped(config, topic, starts);
  const auto& s = summary->stats;
  // The garbage/truncated/missing-field split is the Transaction's; a user
  // format's malformed records are of its own classes, on the next line (a
  // bug bash read Avro's 116 bad_magic as "garbage 116" and its 123
  // truncated headers as "missing field 123").
  char classes[128] = "";
  if (encoding.format == EventFormat::kTransaction) {
    std::snprintf(classes, sizeof(classes), " (garbage %llu, truncated %llu, missing field %llu)",
                  static_cast<unsigned long long>(s.garbage), static_cast<unsigned long long>(s.truncated),
                  static_cast<unsigned long long>(s.missing_field));
  }
  std::printf(
      "kappa gen: %llu records to %s (%d partitions) in %.2f s, %.0f records/s, %.1f MB\n"
      "  valid %llu (out of order %llu), duplicates %llu, malformed %llu%s\n",
      static_cast<unsigned long long>(s.total), topic.c_str(), summary->partitions, summary->seconds,
      summary->seconds > 0 ? s.total / summary->seconds : 0.0, summary->bytes / 1e6,
      static_cast<unsigned long long>(s.valid), static_cast<unsigned long long>(s.out_of_order),
      static_cast<unsigned long long>(s.duplicates), static_cast<unsigned long long>(s.malformed()), classes);
  PrintMalformedClasses(encoding, summary->encoding);
  return 0;
}

}  // namespace kappa::cli
