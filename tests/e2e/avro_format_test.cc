// Issue 12: Avro input in the Confluent wire format, its writer schema
// registered with a real Schema Registry (scripts/schema_registry.sh, CTest
// fixture `schema_registry`). The generated workload as Avro gives exactly
// the outputs of the built-in Transaction path; a registry the job cannot
// reach stops it with a clear error and dead-letters nothing, and the next
// run with the registry back finishes the same.
#include <avro.h>
#include <gtest/gtest.h>

#include <fstream>

#include "kafka/schema_registry.h"
#include "schemas/window_aggregate_generated.h"
#include "tests/e2e/e2e_util.h"
#include "workload/event_encoding.h"

namespace kappa::testing {
namespace {

std::string RegistryUrl() {
  std::ifstream in(std::string(KAPPA_SCHEMA_REGISTRY_DIR) + "/url");
  std::string url;
  std::getline(in, url);
  return url;
}

std::string AvroSpec(const ScratchDir& dir, const SpecOptions& o, const std::string& registry) {
  std::string text = ReadFile(WriteSpec(dir, "shape.yaml", o));
  const std::string anchor = "  start: earliest\n";
  text.insert(text.find(anchor) + anchor.size(),
              "  format: avro\n  schema_registry: " + registry +
                  "\n  fields:\n"
                  "    txn_id: string\n"
                  "    user_id: {type: string, path: user.id}\n"
                  "    status: string\n"
                  "    amount_cents: {type: int64, path: amount.cents}\n"
                  "    event_time: timestamp\n"
                  "  event_time: event_time\n"
                  "  value: amount_cents\n");
  const std::string path = dir / (o.job + ".yaml");
  std::ofstream(path) << text;
  return path;
}

class AvroFormatTest : public BrokerTest {};

TEST_F(AvroFormatTest, AvroThroughTheRegistryGivesTheBuiltInOutputsAndALostRegistryStopsTheJob) {
  const std::string url = RegistryUrl();
  if (url.empty()) GTEST_SKIP() << "no Schema Registry: CTest starts one (fixture schema_registry)";
  constexpr int kPartitions = 4;
  CreateTopic("transactions", kPartitions);
  CreateTopic("payments-avro", kPartitions);
  GeneratorOptions gen = SmallWorkload(44, 12000, 400);
  gen.duplicate_fraction = 0.02;
  gen.malformed_fraction = 0.03;
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", gen));
  // kappa gen registers payment.avsc (subject payments-avro-value) and
  // writes the id it gets into every record's header.
  std::string out, err;
  ASSERT_EQ(RunKappa({"gen", "--format", "avro", "--schema-registry", url, "-b", bootstrap(), "-t", "payments-avro",
                      "-n", "12000", "--users", "400", "--zipf", "0.8", "--seed", "44", "--rate", "1",
                      "--duplicate-fraction", "0.02", "--malformed-fraction", "0.03"},
                     &out, &err),
            0)
      << err;

  ScratchDir dir("avro");
  ASSERT_NO_FATAL_FAILURE(RunBuiltinReference(dir, bootstrap()));

  SpecOptions declared;
  declared.job = "user-spend-avro";
  declared.source = "payments-avro";
  declared.sink = "avro-out";
  declared.filter = "status != CANCELLED";  // the Avro enum's symbol
  declared.state_dir = dir / "avro";
  // First against a registry that is not there (a port nothing listens on):
  // the job stops saying so, dead-letters nothing and commits nothing.
  const std::string lost = AvroSpec(dir, declared, "http://127.0.0.1:9/apis/ccompat/v7");
  EXPECT_NE(RunKappa({"run", lost, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr, &err), 0);
  EXPECT_NE(err.find("127.0.0.1:9"), std::string::npos) << err;
  EXPECT_NE(err.find("that source.schema_registry is right"), std::string::npos) << "the spec's key: " << err;
  EXPECT_EQ(ReadOutputs(Config(), "user-spend-avro.dlq").total, 0) << "a lost registry is not a bad record";
  // Nor a registry's root without the API's path (a bug bash: its plain 404
  // was read as "no such schema", and every record was dead-lettered).
  const std::string root = url.substr(0, url.find('/', std::string("http://").size()));
  const std::string wrong = AvroSpec(dir, declared, root);
  EXPECT_NE(RunKappa({"run", wrong, "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr, &err), 0);
  EXPECT_NE(err.find("is source.schema_registry the API's base"), std::string::npos) << err;
  EXPECT_EQ(ReadOutputs(Config(), "user-spend-avro.dlq").total, 0) << "a wrong registry URL is not a bad record";
  // A filter literal in the wrong case (the README's own `status !=
  // cancelled`) filtered nothing in silence (a bug bash): the writer
  // schema's enum has CANCELLED. The job stops naming it, before anything
  // is committed; the spec is another version's to fix.
  {
    SpecOptions lower = declared;
    lower.job = "user-spend-avro-case";
    lower.filter = "status != cancelled";
    lower.state_dir = dir / "avro-case";
    EXPECT_EQ(RunKappa({"run", AvroSpec(dir, lower, url), "-b", bootstrap(), "--stop-at-end", "--status-interval-ms",
                        "0"},
                       nullptr, &err),
              1)
        << err;
    EXPECT_NE(err.find("a filter compares it with `cancelled`, which is none of them: symbols compare as written, "
                       "case included; write `CANCELLED`"),
              std::string::npos)
        << err;
    EXPECT_EQ(ReadOutputs(Config(), "user-spend-avro-case.dlq").total, 0);
  }
  // The registry URL is not logic (the spec hash leaves it out): the same
  // version continues with the right one.
  ASSERT_EQ(RunKappa({"run", AvroSpec(dir, declared, url), "-b", bootstrap(), "--stop-at-end", "--status-interval-ms",
                      "0"},
                     nullptr, &err),
            0)
      << err;

  const TopicContents want = ReadOutputs(Config(), "builtin-out.v1");
  const TopicContents got = ReadOutputs(Config(), "avro-out.v1");
  ASSERT_GT(want.rows.size(), 100u);
  EXPECT_EQ(got.total, want.total);
  ASSERT_EQ(got.rows.size(), want.rows.size());
  for (const auto& [key, row] : want.rows) {
    auto it = got.rows.find(key);
    ASSERT_NE(it, got.rows.end()) << key;
    EXPECT_EQ(it->second.value, row.value) << key;
  }
  const std::string want_metrics = ReadFile(dir / "builtin/metrics.json");
  const std::string got_metrics = ReadFile(dir / "avro/metrics.json");
  for (const char* counter : {"records_in", "deduped", "filtered", "dlq"}) {
    EXPECT_EQ(MetricsField(got_metrics, counter), MetricsField(want_metrics, counter)) << counter;
  }
}

// Feature rows in Avro: kappa registers the row schema under
// "<output topic>-value" when the job starts, every row carries that id, and
// a reader that fetches the schema by id (Avro C) reads the built-in path's
// count, sum, min, max and avg. A registry that cannot be reached at start
// stops the job before it writes anything.
TEST_F(AvroFormatTest, FeatureRowsInAvroAreReadableThroughTheRegisteredSchema) {
  const std::string url = RegistryUrl();
  if (url.empty()) GTEST_SKIP() << "no Schema Registry: CTest starts one (fixture schema_registry)";
  CreateTopic("transactions", 3);
  ASSERT_NO_FATAL_FAILURE(ProduceWorkload(Config(), "transactions", SmallWorkload(45, 6000, 200)));
  ScratchDir dir("avro-rows");
  std::string err;
  ASSERT_NO_FATAL_FAILURE(RunBuiltinReference(dir, bootstrap()));

  SpecOptions o;
  o.job = "features-avro";
  o.sink = "features-avro";
  o.state_dir = dir / "avro";
  auto write = [&](const std::string& registry) {
    std::string text = ReadFile(WriteSpec(dir, "shape.yaml", o));
    const std::string aggregates = "aggregates: [count, sum, min, max, avg]";
    text.replace(text.find(aggregates), aggregates.size(),
                 "features: {n: count, spend: sum(amount_cents), lo: min(amount_cents), hi: max(amount_cents), "
                 "mean: avg(amount_cents)}");
    const std::string sink = "sink: {topic: features-avro}";
    text.replace(text.find(sink), sink.size(),
                 "sink: {topic: features-avro, format: avro, schema_registry: '" + registry + "'}");
    std::ofstream(dir / "avro.yaml") << text;
    return dir / "avro.yaml";
  };
  EXPECT_NE(RunKappa({"run", write("http://127.0.0.1:9"), "-b", bootstrap(), "--stop-at-end"}, nullptr, &err), 0);
  EXPECT_NE(err.find("registering the Avro schema of the output rows under `features-avro.v1-value`"),
            std::string::npos)
      << err;
  EXPECT_EQ(ReadOutputs(Config(), "features-avro.v1").total, 0);
  ASSERT_EQ(RunKappa({"run", write(url), "-b", bootstrap(), "--stop-at-end", "--status-interval-ms", "0"}, nullptr,
                     &err),
            0)
      << err;

  const TopicContents want = ReadOutputs(Config(), "builtin-out.v1");
  const TopicContents got = ReadOutputs(Config(), "features-avro.v1");
  ASSERT_GT(want.rows.size(), 50u);
  ASSERT_EQ(got.rows.size(), want.rows.size());
  auto options = SchemaRegistryOptions::FromProperties({{"schema.registry.url", url}});
  ASSERT_TRUE(options.ok());
  auto registry = SchemaRegistryClient::Create(*options);
  ASSERT_TRUE(registry.ok());
  int32_t id = -1;
  avro_schema_t schema = nullptr;
  avro_value_iface_t* iface = nullptr;
  for (const auto& [key, row] : got.rows) {
    ASSERT_GE(row.value.size(), 5u);
    ASSERT_EQ(row.value[0], 0) << "Confluent magic byte";
    const int32_t row_id = static_cast<int32_t>((static_cast<uint8_t>(row.value[1]) << 24) |
                                                (static_cast<uint8_t>(row.value[2]) << 16) |
                                                (static_cast<uint8_t>(row.value[3]) << 8) |
                                                static_cast<uint8_t>(row.value[4]));
    if (schema == nullptr) {
      id = row_id;
      auto text = (*registry)->SchemaById(id);
      ASSERT_TRUE(text.ok()) << text.status().ToString();
      ASSERT_EQ(avro_schema_from_json_length(text->data(), text->size(), &schema), 0) << avro_strerror();
      iface = avro_generic_class_from_schema(schema);
    }
    EXPECT_EQ(row_id, id) << "one schema for every row";
    avro_value_t value;
    ASSERT_EQ(avro_generic_value_new(iface, &value), 0);
    avro_reader_t reader = avro_reader_memory(row.value.data() + 5, static_cast<int64_t>(row.value.size() - 5));
    ASSERT_EQ(avro_value_read(reader, &value), 0) << avro_strerror();
    avro_reader_free(reader);
    auto get_long = [&](const char* name) {
      avro_value_t f;
      int64_t v = 0;
      EXPECT_EQ(avro_value_get_by_name(&value, name, &f, nullptr), 0) << name;
      EXPECT_EQ(avro_value_get_long(&f, &v), 0) << name;
      return v;
    };
    avro_value_t mean_field;
    double mean = 0;
    ASSERT_EQ(avro_value_get_by_name(&value, "mean", &mean_field, nullptr), 0);
    ASSERT_EQ(avro_value_get_double(&mean_field, &mean), 0);
    const auto* w = flatbuffers::GetRoot<schema::WindowAggregate>(want.rows.at(key).value.data());
    EXPECT_EQ(get_long("window_end"), w->window_end_ms()) << key;
    EXPECT_EQ(get_long("n"), w->count()) << key;
    EXPECT_EQ(get_long("spend"), w->sum()) << key;
    EXPECT_EQ(get_long("lo"), w->min()) << key;
    EXPECT_EQ(get_long("hi"), w->max()) << key;
    EXPECT_EQ(mean, w->avg()) << key;
    avro_value_decref(&value);
  }
  avro_value_iface_decref(iface);
  avro_schema_decref(schema);
}

}  // namespace
}  // namespace kappa::testing
