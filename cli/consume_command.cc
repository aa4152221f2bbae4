// kappa consume: reads a topic back from its start to its current end.
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "cli/record_format.h"
#include "kafka/topic_reader.h"

namespace po = boost::program_options;

namespace kappa::cli {

int ConsumeCommand(int argc, char** argv) {
  po::options_description desc("options");
  std::string topic;
  desc.add_options()
      ("help,h", "show this help")
      ("topic,t", po::value<std::string>(&topic)->required(), "topic to read")
      ("print", "print every record as one JSON line on stdout: kappa's FlatBuffers payloads decoded, a valid JSON "
       "payload as it is, any other payload (Avro, malformed text, other binary) as {\"type\":\"raw\",\"bytes\":N,"
       "\"text\":...} with UTF-8 as it is and other bytes as \\u00XX (so a byte that is not UTF-8 reads as the "
       "character U+00XX: the text is for reading, count its bytes with kcat); a tombstone (no value at all) as "
       "\"value\":null,\"tombstone\":true, a JSON payload null as \"value\":null; headers as an object of name: value "
       "(a null value as null; a name the record has more than once: an array of its values); last the record's "
       "Kafka timestamp in ms (null if it has none)")
      ("idle-timeout-ms", po::value<int>()->default_value(15000), "give up after this long without progress");
  AddKafkaOptions(desc);
  const std::string usage =
      "usage: kappa consume --brokers HOST:PORT --topic TOPIC [--print]\n\n"
      "Reads every partition of TOPIC from its log start offset to its end offset as of now,\n"
      "then prints the number of records per partition.";
  po::variables_map vm;
  if (int rc = ParseOrExit(argc, argv, "consume", usage, desc, nullptr, vm); rc >= 0) return rc;
  if (vm["idle-timeout-ms"].as<int>() < 1) {
    return Fail("consume", Status::InvalidArgument("--idle-timeout-ms must be at least 1"));
  }
  KafkaConfig config;
  if (Status st = KafkaConfigFromOptions(vm, &config); !st.ok()) return Fail("consume", st);
  const bool print = vm.count("print") > 0;
  auto summary = ReadTopic(
      config, topic,
      [&](const ConsumedRecord& r) {
        if (!print) return;
        std::string line = "{\"partition\":" + std::to_string(r.partition) +
                           ",\"offset\":" + std::to_string(r.offset) + ",\"key\":" +
                           (r.key_null ? std::string("null") : "\"" + JsonEscape(std::string(r.key)) + "\"") +
                           ",\"value\":" +
                           // A tombstone printed as an empty value (a bug bash).
                           (r.value_null ? std::string("null,\"tombstone\":true")
                                         : FormatRecordJson(reinterpret_cast<const uint8_t*>(r.value.data()),
                                                            r.value.size()));
        if (!r.headers.empty()) {
          // Kafka allows a header name more than once; a JSON reader keeps
          // one value of a repeated member (a bug bash), so a repeated
          // name's values are one array, in the record's order.
          line += ",\"headers\":{";
          bool first = true;
          for (size_t i = 0; i < r.headers.size(); ++i) {
            const std::string& name = r.headers[i].first;
            bool seen = false;
            for (size_t j = 0; j < i && !seen; ++j) seen = r.headers[j].first == name;
            if (seen) continue;
            // A null value printed as "" (a bug bash): Kafka tells the two apart.
            std::vector<std::string> values;
            for (size_t j = i; j < r.headers.size(); ++j) {
              if (r.headers[j].first != name) continue;
              const bool null = j < r.header_null.size() && r.header_null[j];
              values.push_back(null ? "null" : "\"" + JsonEscape(r.headers[j].second) + "\"");
            }
            line += (first ? "\"" : ",\"") + JsonEscape(name) + "\":";
            first = false;
            if (values.size() == 1) {
              line += values[0];
            } else {
              line += "[";
              for (size_t v = 0; v < values.size(); ++v) line += (v ? "," : "") + values[v];
              line += "]";
            }
          }
          line += "}";
        }
        // Event times are what a job's windows read (kcat -f %T shows them).
        line += ",\"timestamp\":" + (r.timestamp_ms < 0 ? std::string("null") : std::to_string(r.timestamp_ms));
        line += "}\n";
        std::fputs(line.c_str(), stdout);
      },
      vm["idle-timeout-ms"].as<int>());
  if (!summary.ok()) return Fail("consume", summary.status());
  std::fprintf(print ? stderr : stdout, "kappa consume: %s: %lld records\n", topic.c_str(),
               static_cast<long long>(summary->total));
  for (size_t p = 0; p < summary->records_per_partition.size(); ++p) {
    std::fprintf(print ? stderr : stdout, "  partition %zu: %lld records (log start offset %lld)\n", p,
                 static_cast<long long>(summary->records_per_partition[p]),
                 static_cast<long long>(summary->log_start_offsets[p]));
  }
  return 0;
}

}  // namespace kappa::cli
