// kappa schema: prints the schema of the rows a job's feature window writes,
// for the readers of its output topic (an Avro schema to register or read
// with, a .fbs to compile with flatc, or the JSON rows' columns).
#include <cctype>
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "engine/job_spec.h"
#include "engine/postgres_table.h"

namespace po = boost::program_options;

namespace kappa::cli {

int SchemaCommand(int argc, char** argv) {
  po::options_description desc("options");
  po::positional_options_description positional;
  std::string spec_path, format_name;
  desc.add_options()
      ("help,h", "show this help")
      ("spec", po::value<std::string>(&spec_path)->required(), "the job spec (YAML)")
      ("format", po::value<std::string>(&format_name),
       "avro, flatbuffers, json or postgres (default: the spec's sink: its format, or postgres)");
  positional.add("spec", 1);
  const std::string usage =
      "usage: kappa schema JOB_SPEC [--format avro|flatbuffers|json|postgres]\n\n"
      "Prints the schema of the rows the job's window writes to <sink>.v<version> when it names\n"
      "its `features`: for avro the record schema kappa registers under <output topic>-value, for\n"
      "flatbuffers a .fbs to compile with flatc (field i has id i), for json one line per column\n"
      "with its type. Columns: key, window_start, window_end (a rolling window: key, event_time),\n"
      "then the features in the order the spec names them; times are epoch milliseconds.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "schema", usage, desc, &positional, vm); rc >= 0) return rc;
  // Checked first: a bad --format was hidden behind whatever the spec lacked.
  if (!format_name.empty() && format_name != "postgres") {
    if (auto parsed = ParseRowFormat(format_name); !parsed.ok()) {
      // The sink's list lacks postgres, which is a sink of its own there.
      return Fail("schema", Status::InvalidArgument("--format: unknown format `" + format_name +
                                                    "` (avro, flatbuffers, json or postgres)"));
    }
  }
  auto spec = LoadJobSpec(spec_path);
  if (!spec.ok()) return Fail("schema", spec.status());
  const WindowSpec* window = spec->FeatureWindow();
  if (window == nullptr) {
    // A valid spec this command has nothing to print for: not a usage
    // error (exit 1, not 2; a bug bash).
    return Fail("schema", Status::FailedPrecondition(
                              spec_path + ": the chain does not end in a window with `features`, so its rows have "
                              "kappa's own formats (the input records, or kappa.schema.WindowAggregate in "
                              "schemas/window_aggregate.fbs)"));
  }
  RowFormat format = window->row_format;
  if (format_name == "postgres") {
    format = RowFormat::kPostgres;
    // A spec without sink.postgres: the table its topic would name.
    if (!spec->postgres()) {
      for (char c : spec->sink_topic) spec->postgres_table.push_back(std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_');
    }
  } else if (!format_name.empty()) {
    auto parsed = ParseRowFormat(format_name);
    if (!parsed.ok()) return Fail("schema", Status::InvalidArgument("--format: " + parsed.status().message()));
    format = *parsed;
  }
  const auto columns = window->RowColumns();
  switch (format) {
    case RowFormat::kAvro:
      std::printf("%s\n", AvroRowSchema("FeatureRow", columns).c_str());
      break;
    case RowFormat::kFlatBuffers:
      std::printf("%s", FlatBuffersRowSchema("FeatureRow", columns).c_str());
      break;
    case RowFormat::kPostgres:
      std::printf("%s;\n", PostgresCreateTable(*spec).c_str());
      break;
    case RowFormat::kJson:
      for (const RowColumn& c : columns) {
        std::printf("%s: %s\n", c.name.c_str(), std::string(ValueTypeName(c.type)).c_str());
      }
      break;
  }
  return 0;
}

}  // namespace kappa::cli
