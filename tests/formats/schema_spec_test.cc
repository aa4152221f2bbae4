// The spec's `source.fields` declaration: what a user writes becomes the
// schema the decoders fill, and every mistake is refused at its line.
#include "formats/schema_spec.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>

namespace kappa {
namespace {

// YAML text to a ConfigNode tree the way the job spec loader builds it
// (file name, lines, paths), so the errors below show real lines.
ConfigNode FromYaml(const YAML::Node& node, const std::shared_ptr<const std::string>& origin, std::string path) {
  const int line = node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
  if (node.IsMap()) {
    ConfigNode map(ConfigNode::Kind::kMap, origin, path, line);
    for (const auto& kv : node) {
      const std::string key = kv.first.Scalar();
      ConfigNode key_node(ConfigNode::Kind::kScalar, origin, path, kv.first.Mark().line + 1);
      key_node.set_scalar(key);
      map.AddEntry(std::move(key_node), FromYaml(kv.second, origin, ConfigNode::ChildPath(path, key)));
    }
    return map;
  }
  if (node.IsScalar()) {
    ConfigNode scalar(ConfigNode::Kind::kScalar, origin, std::move(path), line);
    scalar.set_scalar(node.Scalar());
    return scalar;
  }
  return ConfigNode(ConfigNode::Kind::kNull, origin, std::move(path), line);
}

// `yaml` is the source section; returns its `fields`.
ConfigNode Fields(const std::string& yaml) {
  ConfigNode root = FromYaml(YAML::Load(yaml), std::make_shared<const std::string>("job.yaml"), "");
  const ConfigNode* fields = root.Find("fields");
  EXPECT_NE(fields, nullptr);
  return fields != nullptr ? *fields : root;
}

std::string ErrorOf(const std::string& yaml) {
  auto schema = ParseRecordSchema(Fields(yaml));
  EXPECT_FALSE(schema.ok()) << yaml;
  return schema.status().message();
}

TEST(SchemaSpecTest, ReadsTheShortAndTheLongFormsInDeclarationOrder) {
  auto schema = ParseRecordSchema(Fields(R"(fields:
  txn_id: string
  user_id: {type: string, path: user.id}
  amount: {type: double, path: amount.value}
  cents: {type: int64, path: amount.cents}
  flagged: {type: bool, optional: true}
  event_time: {type: timestamp, path: ts, encoding: iso8601}
  created: {type: timestamp, path: created_us, encoding: epoch_us}
  seen: timestamp
  key: {type: string, path: kafka.key}
  kts: {type: timestamp, path: kafka.timestamp}
)"));
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  ASSERT_EQ(schema->size(), 10);
  const auto& f = schema->fields();
  EXPECT_EQ(f[0].name, "txn_id");
  EXPECT_EQ(f[0].type, ValueType::kString);
  EXPECT_EQ(f[0].path, "txn_id") << "the short form reads the field's own name";
  EXPECT_FALSE(f[0].optional);
  EXPECT_EQ(f[1].path, "user.id");
  EXPECT_EQ(f[2].type, ValueType::kDouble);
  EXPECT_EQ(f[3].type, ValueType::kInt64);
  EXPECT_EQ(f[3].path, "amount.cents");
  EXPECT_EQ(f[4].type, ValueType::kBool);
  EXPECT_TRUE(f[4].optional);
  EXPECT_EQ(f[4].path, "flagged");
  EXPECT_EQ(f[5].timestamp, TimestampEncoding::kIso8601);
  EXPECT_EQ(f[6].timestamp, TimestampEncoding::kEpochMicros);
  EXPECT_EQ(f[7].timestamp, TimestampEncoding::kEpochMillis) << "epoch_ms is the default";
  EXPECT_EQ(f[8].path, "kafka.key");
  EXPECT_EQ(schema->Find("kts"), 9);
}

TEST(SchemaSpecTest, RefusesMistakesAtTheirLineListingWhatIsValid) {
  std::string e = ErrorOf("fields:\n  a: string\n  b: integer\n");
  EXPECT_NE(e.find("job.yaml:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown type `integer`"), std::string::npos) << e;
  EXPECT_NE(e.find("string, int64, double, bool, timestamp"), std::string::npos) << e;

  e = ErrorOf("fields:\n  t: {type: timestamp,\n      encoding: epoch_s}\n");
  EXPECT_NE(e.find("job.yaml:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("epoch_ms, epoch_us, iso8601"), std::string::npos) << e;

  e = ErrorOf("fields:\n  a: {type: string, pth: x}\n");
  EXPECT_NE(e.find("unknown key `pth`"), std::string::npos) << e;
  EXPECT_NE(e.find("type, path, encoding, optional"), std::string::npos) << e;

  e = ErrorOf("fields:\n  a: {path: x}\n");
  EXPECT_NE(e.find("needs a `type`"), std::string::npos) << e;

  e = ErrorOf("fields:\n  a: {type: int64, encoding: iso8601}\n");
  EXPECT_NE(e.find("timestamps only"), std::string::npos) << e;

  e = ErrorOf("fields:\n  a: {type: bool, optional: maybe}\n");
  EXPECT_NE(e.find("true or false"), std::string::npos) << e;

  e = ErrorOf("fields:\n  a: string\n  b: {type: string, path: a..b}\n");
  EXPECT_NE(e.find("job.yaml:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("empty segment"), std::string::npos) << e;

  e = ErrorOf("fields:\n  1x: string\n");
  EXPECT_NE(e.find("identifier"), std::string::npos) << e;

  e = ErrorOf("fields:\n  a: [string]\n");
  EXPECT_NE(e.find("must be a type"), std::string::npos) << e;

  e = ErrorOf("fields: {}\n");
  EXPECT_NE(e.find("`fields` must map"), std::string::npos) << e;
}

TEST(SchemaSpecTest, RefusesPathsNoRecordCanSatisfy) {
  std::string e = ErrorOf("fields:\n  a: {type: string, path: user}\n  b: {type: string, path: user.id}\n");
  EXPECT_NE(e.find("job.yaml:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("both a value and an object"), std::string::npos) << e;

  e = ErrorOf("fields:\n  a: {type: string, path: x.y}\n  b: {type: int64, path: x.y}\n");
  EXPECT_NE(e.find("both read path `x.y`"), std::string::npos) << e;

  e = ErrorOf("fields:\n  k: {type: int64, path: kafka.key}\n");
  EXPECT_NE(e.find("kafka.key is the record's key, a string"), std::string::npos) << e;

  e = ErrorOf("fields:\n  k: {type: string, path: kafka.timestamp}\n");
  EXPECT_NE(e.find("kafka.timestamp"), std::string::npos) << e;

  // A prefix of a name is not a prefix of a path.
  auto ok = ParseRecordSchema(Fields("fields:\n  a: {type: string, path: user}\n  b: {type: string, path: username}\n"));
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();

  RecordSchema coded;
  ASSERT_TRUE(coded.Add({"a", ValueType::kString, "p.q"}).ok());
  ASSERT_TRUE(coded.Add({"b", ValueType::kString, "p"}).ok());
  EXPECT_FALSE(ValidateRecordSchema(coded).ok()) << "schemas built in code get the same checks";
}

TEST(SchemaSpecTest, CanonicalTextNamesEveryPartOfEveryFieldInOrder) {
  auto schema = ParseRecordSchema(Fields(R"(fields:
  user_id: {type: string, path: user.id}
  event_time: {type: timestamp, path: ts, encoding: iso8601}
  flagged: {type: bool, optional: true}
  odd: {type: int64, path: "ns:key%"}
)"));
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  EXPECT_EQ(CanonicalSchemaText(*schema),
            "user_id:string:user.id:-:0\n"
            "event_time:timestamp:ts:iso8601:0\n"
            "flagged:bool:flagged:-:1\n"
            "odd:int64:ns%3Akey%25:-:0\n");

  // Any change to a declaration changes the text (and so the spec hash);
  // the short and long forms of one declaration do not.
  auto text = [](const std::string& yaml) {
    auto s = ParseRecordSchema(Fields(yaml));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? CanonicalSchemaText(*s) : std::string();
  };
  const std::string base = text("fields: {a: timestamp, b: string}");
  EXPECT_EQ(base, text("fields: {a: {type: timestamp, path: a, encoding: epoch_ms}, b: {type: string}}"));
  EXPECT_NE(base, text("fields: {b: string, a: timestamp}"));
  EXPECT_NE(base, text("fields: {a: {type: timestamp, encoding: epoch_us}, b: string}"));
  EXPECT_NE(base, text("fields: {a: {type: timestamp, optional: true}, b: string}"));
  EXPECT_NE(base, text("fields: {a: {type: timestamp, path: x.a}, b: string}"));
  EXPECT_NE(base, text("fields: {a: int64, b: string}"));
}

}  // namespace
}  // namespace kappa
