// The Schema Registry client against a real registry (the suite's, started by
// scripts/schema_registry.sh): what the Avro input relies on to turn a
// record's schema id into its writer schema.
#include "kafka/schema_registry.h"
#include "formats/avro_decoder.h"
#include "formats/schema_spec.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>

#include "tests/support/test_support.h"

namespace kappa {
namespace {

using std::chrono::steady_clock;

std::string SharedRegistryUrl() {
  std::ifstream in(std::string(KAPPA_SCHEMA_REGISTRY_DIR) + "/url");
  std::string url;
  std::getline(in, url);
  return url;
}

std::unique_ptr<SchemaRegistryClient> Client(const std::string& url,
                                              std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  SchemaRegistryOptions options;
  options.url = url;
  options.timeout = timeout;
  auto client = SchemaRegistryClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

// A subject no other test (or earlier run against the same registry) uses.
std::string UniqueSubject(const std::string& name) {
  return name + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(steady_clock::now().time_since_epoch().count()) + "-value";
}

std::string WithoutSpace(std::string s) {
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\n' || c == '\t'; }),
          s.end());
  return s;
}

const std::string kPaymentV1 =
    R"({"type":"record","name":"Payment","namespace":"kappa.test","fields":[)"
    R"({"name":"user","type":"string"},{"name":"amount","type":"double"}]})";
// v2 adds a field with a default: a backward-compatible evolution.
const std::string kPaymentV2 =
    R"({"type":"record","name":"Payment","namespace":"kappa.test","fields":[)"
    R"({"name":"user","type":"string"},{"name":"amount","type":"double"},)"
    R"({"name":"currency","type":"string","default":"EUR"}]})";

class SchemaRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = SharedRegistryUrl();
    ASSERT_FALSE(url_.empty()) << "no " << KAPPA_SCHEMA_REGISTRY_DIR
                               << "/url: run through CTest (fixture schema_registry)";
  }
  std::string url_;
};

TEST_F(SchemaRegistryTest, RegistersTwoVersionsAndFetchesEachByItsId) {
  auto client = Client(url_);
  ASSERT_TRUE(client);
  std::string subject = UniqueSubject("payments");
  Result<int32_t> v1 = client->Register(subject, kPaymentV1);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  Result<int32_t> v2 = client->Register(subject, kPaymentV2);
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_NE(*v1, *v2);

  // A new client (a consumer elsewhere) knows nothing but the ids.
  auto reader = Client(url_);
  Result<std::string> s1 = reader->SchemaById(*v1);
  ASSERT_TRUE(s1.ok()) << s1.status().ToString();
  Result<std::string> s2 = reader->SchemaById(*v2);
  ASSERT_TRUE(s2.ok()) << s2.status().ToString();
  EXPECT_EQ(WithoutSpace(*s1), WithoutSpace(kPaymentV1));
  EXPECT_EQ(WithoutSpace(*s2), WithoutSpace(kPaymentV2));

  // The same schema again is the same id (what a restarted producer does).
  auto again = Client(url_);
  Result<int32_t> v1_again = again->Register(subject, kPaymentV1);
  ASSERT_TRUE(v1_again.ok()) << v1_again.status().ToString();
  EXPECT_EQ(*v1_again, *v1);
}

TEST_F(SchemaRegistryTest, SecondFetchOfAnIdIsServedFromTheCache) {
  auto writer = Client(url_);
  Result<int32_t> id = writer->Register(UniqueSubject("cached"), kPaymentV2);
  ASSERT_TRUE(id.ok()) << id.status().ToString();

  auto client = Client(url_);
  Result<std::string> first = client->SchemaById(*id);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(client->requests(), 1u);
  // From several threads at once, as the decode workers ask.
  std::vector<std::thread> threads;
  std::vector<std::string> seen(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        Result<std::string> again = client->SchemaById(*id);
        if (again.ok()) seen[t] = *again;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(client->requests(), 1u) << "every fetch after the first must come from the cache";
  for (const std::string& schema : seen) EXPECT_EQ(schema, *first);
}

TEST_F(SchemaRegistryTest, UnknownIdIsNotFoundAndNamesTheId) {
  auto client = Client(url_);
  Result<std::string> schema = client->SchemaById(2000000123);
  ASSERT_FALSE(schema.ok());
  EXPECT_EQ(schema.status().code(), Status::Code::kNotFound) << schema.status().ToString();
  EXPECT_NE(schema.status().message().find("unknown schema id 2000000123"), std::string::npos)
      << schema.status().message();
  // Not cached: a later registration of that id would be found.
  (void)client->SchemaById(2000000123);
  EXPECT_EQ(client->requests(), 2u);
}

TEST_F(SchemaRegistryTest, InvalidSchemaIsInvalidArgumentWithTheRegistrysReason) {
  auto client = Client(url_);
  Result<int32_t> id = client->Register(UniqueSubject("invalid"), R"({"type":"record","name":"X"})");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Status::Code::kInvalidArgument) << id.status().ToString();
}

TEST_F(SchemaRegistryTest, WrongBasePathSaysSo) {
  // The registry's root without the compatibility API's path.
  std::string root = url_.substr(0, url_.find('/', std::string("http://").size()));
  auto client = Client(root);
  Result<std::string> schema = client->SchemaById(1);
  ASSERT_FALSE(schema.ok());
  // Not NotFound (an unknown id, a dead letter): a wrong URL stops a job.
  EXPECT_EQ(schema.status().code(), Status::Code::kFailedPrecondition) << schema.status().ToString();
  EXPECT_NE(schema.status().message().find("base"), std::string::npos) << schema.status().message();
}

// A registry of the test's own, stopped by the destructor.
class OwnRegistry {
 public:
  explicit OwnRegistry(const std::string& dir) : dir_(dir) {
    url_ = testing::RunShell("timeout 300 " + std::string(KAPPA_SOURCE_DIR) +
                             "/scripts/schema_registry.sh start --dir " + dir_ + " | tail -n 1");
    while (!url_.empty() && (url_.back() == '\n' || url_.back() == ' ')) url_.pop_back();
  }
  ~OwnRegistry() { Stop(); }
  void Stop() {
    testing::RunShell("timeout 60 " + std::string(KAPPA_SOURCE_DIR) + "/scripts/schema_registry.sh stop --dir " +
                      dir_);
  }
  const std::string& url() const { return url_; }

 private:
  std::string dir_;
  std::string url_;
};

// A consumer that has its writer schemas keeps decoding while the registry is
// down; only a schema it has not seen yet needs the registry.
TEST(SchemaRegistryOwnTest, CachedSchemasOutliveTheRegistry) {
  testing::ScratchDir scratch("registry_down");
  OwnRegistry registry(scratch / "registry");
  ASSERT_EQ(registry.url().rfind("http://127.0.0.1:", 0), 0u) << "no registry started: '" << registry.url() << "'";
  auto writer = Client(registry.url());
  Result<int32_t> v1 = writer->Register("down-value", kPaymentV1);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  Result<int32_t> v2 = writer->Register("down-value", kPaymentV2);
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();

  auto reader = Client(registry.url(), std::chrono::milliseconds(2000));
  ASSERT_TRUE(reader->SchemaById(*v1).ok());
  registry.Stop();

  Result<std::string> cached = reader->SchemaById(*v1);
  ASSERT_TRUE(cached.ok()) << cached.status().ToString();
  EXPECT_EQ(WithoutSpace(*cached), WithoutSpace(kPaymentV1));
  auto start = steady_clock::now();
  Result<std::string> uncached = reader->SchemaById(*v2);
  EXPECT_EQ(uncached.status().code(), Status::Code::kUnavailable) << uncached.status().ToString();
  EXPECT_NE(uncached.status().message().find(registry.url()), std::string::npos) << uncached.status().message();
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));
}

// A loopback port where nothing listens.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(SchemaRegistryUnreachableTest, RefusedConnectionIsUnavailableAndNamesTheUrl) {
  std::string url = "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/apis/ccompat/v7";
  auto client = Client(url, std::chrono::milliseconds(2000));
  auto start = steady_clock::now();
  Result<std::string> schema = client->SchemaById(1);
  ASSERT_FALSE(schema.ok());
  EXPECT_EQ(schema.status().code(), Status::Code::kUnavailable) << schema.status().ToString();
  EXPECT_NE(schema.status().message().find(url), std::string::npos) << schema.status().message();
  EXPECT_NE(schema.status().message().find("schema.registry.url"), std::string::npos);
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(3));
  Result<int32_t> id = client->Register("s-value", kPaymentV1);
  EXPECT_EQ(id.status().code(), Status::Code::kUnavailable) << id.status().ToString();
}

TEST(SchemaRegistryUnreachableTest, SilentServerIsUnavailableWithinTheTimeout) {
  // Accepts connections (the kernel completes the handshake) but never answers.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto client = Client(url, std::chrono::milliseconds(500));
  auto start = steady_clock::now();
  Result<std::string> schema = client->SchemaById(7);
  auto waited = steady_clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(schema.ok());
  EXPECT_EQ(schema.status().code(), Status::Code::kUnavailable) << schema.status().ToString();
  EXPECT_NE(schema.status().message().find("500 ms"), std::string::npos) << schema.status().message();
  EXPECT_GE(waited, std::chrono::milliseconds(400));
  EXPECT_LT(waited, std::chrono::seconds(3));
}

// A registry's answers to POST .../versions scripted in turn (the last one
// repeated): for the answers a real registry gives only in a race.
class ScriptedRegistry {
 public:
  explicit ScriptedRegistry(std::vector<std::pair<int, std::string>> answers) : answers_(std::move(answers)) {
    // Registrations and fetches by id take their answers from one script,
    // in order; the last answer repeats.
    auto answer = [this](const httplib::Request&, httplib::Response& res) {
      const size_t n = static_cast<size_t>(requests_++);
      const auto& [status, body] = answers_[std::min(n, answers_.size() - 1)];
      res.status = status;
      res.set_content(body, "application/vnd.schemaregistry.v1+json");
    };
    server_.Post(R"(/subjects/([^/]+)/versions)", answer);
    server_.Get(R"(/schemas/ids/(\d+))", answer);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~ScriptedRegistry() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }

 private:
  std::vector<std::pair<int, std::string>> answers_;
  httplib::Server server_;
  std::atomic<int> requests_{0};
  int port_ = 0;
  std::thread thread_;
};

// A writer schema of another schema type: the fetch says so as
// InvalidArgument, and the Avro decoder dead-letters each of its records
// with that reason (a bug bash: "not a valid Avro schema: Unknown Avro
// type"). A schema with references is resolved through the subjects they
// name; a registry that answers the id but not those stops the job, as any
// registry failure does; an empty list of references is an ordinary schema.
TEST(SchemaRegistryScriptedTest, ASchemaOfAnotherTypeIsNamedAsSuchAndReferencesAreFollowed) {
  const std::string escaped = R"({\"type\":\"record\",\"name\":\"P\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]})";
  const std::string record("\0\0\0\0\6\2", 6);  // magic, id 6, a = 1
  RawRecord raw{reinterpret_cast<const uint8_t*>(record.data()), static_cast<uint32_t>(record.size())};
  RecordSchema fields;
  ASSERT_TRUE(fields.Add({"a", ValueType::kInt64, ""}).ok());
  FieldValue out[1];
  DecodeError error;
  {
    ScriptedRegistry registry({{200, R"({"schema":"syntax = \"proto3\"; message P { int64 a = 1; }","schemaType":"PROTOBUF"})"}});
    auto client = Client(registry.url());
    Result<std::string> s = client->SchemaById(5);
    EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument) << s.status().ToString();
    EXPECT_NE(s.status().message().find("writer schema 5 is a PROTOBUF schema, not Avro"), std::string::npos)
        << s.status().ToString();
    // In the decoder: each record of it is a dead letter with that reason,
    // not a stop of the job.
    auto decoder = AvroDecoder::Create(fields, client.get());
    ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
    const std::string record5("\0\0\0\0\5\2", 6);
    EXPECT_FALSE((*decoder)->Decode(RawRecord{reinterpret_cast<const uint8_t*>(record5.data()), 6}, out, &error));
    EXPECT_EQ(error.kind, DecodeError::Kind::kUndecodable);
    EXPECT_NE(error.message.find("PROTOBUF"), std::string::npos) << error.message;
    EXPECT_TRUE((*decoder)->last_fatal().ok()) << (*decoder)->last_fatal().ToString();
  }
  {
    // This registry serves ids only: /subjects/u/versions/1 is no API there.
    ScriptedRegistry registry({{200, "{\"schema\":\"" + escaped +
                                         "\",\"references\":[{\"name\":\"acme.User\",\"subject\":\"u\",\"version\":1}]}"}});
    auto client = Client(registry.url());
    Result<std::string> s = client->SchemaById(6);
    EXPECT_EQ(s.status().code(), Status::Code::kFailedPrecondition) << s.status().ToString();
    EXPECT_NE(s.status().message().find("subject 'u' version 1"), std::string::npos) << s.status().ToString();
    auto decoder = AvroDecoder::Create(fields, client.get());
    ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
    EXPECT_FALSE((*decoder)->Decode(raw, out, &error));
    EXPECT_EQ((*decoder)->last_fatal().code(), Status::Code::kFailedPrecondition)
        << (*decoder)->last_fatal().ToString();
  }
  {
    ScriptedRegistry registry({{200, "{\"schema\":\"" + escaped + "\",\"references\":[ ],\"schemaType\":\"AVRO\"}"}});
    Result<std::string> s = Client(registry.url())->SchemaById(7);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
  }
}

TEST(SchemaRegistryConflictTest, ATransientVersionConflictIsAskedAgain) {
  // Apicurio's answer to a version registered while the previous one is
  // being stored (seen in CI): not an incompatibility.
  ScriptedRegistry registry(
      {{409, R"({"error_code":0,"message":"An artifact version 'null' for artifact ID 's-value' in group 'null' already exists."})"},
       {409, R"({"error_code":0,"message":"An artifact version 'null' for artifact ID 's-value' in group 'null' already exists."})"},
       {200, R"({"id":42})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000));
  Result<int32_t> id = client->Register("s-value", kPaymentV1);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, 42);
  EXPECT_EQ(registry.requests(), 3);
}

TEST(SchemaRegistryConflictTest, AnIncompatibleSchemaIsRefusedAtOnce) {
  ScriptedRegistry registry(
      {{409, R"({"error_code":409,"message":"Schema being registered is incompatible with an earlier schema"})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000));
  Result<int32_t> id = client->Register("s-value", kPaymentV1);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Status::Code::kFailedPrecondition) << id.status().ToString();
  EXPECT_NE(id.status().message().find("incompatible"), std::string::npos) << id.status().message();
  EXPECT_EQ(registry.requests(), 1) << "an incompatibility is not asked again";
}

TEST(SchemaRegistryConflictTest, ServerErrorsAreAskedAgainWithBackoff) {
  // Apicurio's in-memory store under concurrent registrations (seen in CI),
  // then an overloaded proxy: both pass.
  ScriptedRegistry registry(
      {{500, R"({"error_code":0,"message":"org.h2.jdbc.JdbcSQLTimeoutException: Timeout trying to lock table"})"},
       {503, "busy"},
       {200, R"({"id":7})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000));
  Result<int32_t> id = client->Register("s-value", kPaymentV1);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, 7);
  EXPECT_EQ(registry.requests(), 3);
}

TEST(SchemaRegistryConflictTest, AFetchByIdIsAskedAgainAfterAServerError) {
  ScriptedRegistry registry({{502, "bad gateway"}, {429, "slow down"}, {200, R"({"schema":"\"string\""})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000));
  Result<std::string> schema = client->SchemaById(3);
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  EXPECT_EQ(*schema, "\"string\"");
  EXPECT_EQ(registry.requests(), 3);
}

TEST(SchemaRegistryConflictTest, AServerErrorThatLastsIsReportedAfterTheRetries) {
  ScriptedRegistry registry({{500, R"({"error_code":50001,"message":"Error in the backend data store"})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000));
  const auto began = std::chrono::steady_clock::now();
  Result<int32_t> id = client->Register("s-value", kPaymentV1);
  const auto took = std::chrono::steady_clock::now() - began;
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Status::Code::kUnavailable) << id.status().ToString();
  EXPECT_NE(id.status().message().find("HTTP 500, error_code 50001: Error in the backend data store"),
            std::string::npos)
      << id.status().message();
  EXPECT_EQ(registry.requests(), 1 + SchemaRegistryClient::kTransientRetries);
  EXPECT_GE(took, std::chrono::milliseconds(3000)) << "100 ms doubling: 3.1 s of pauses";
}

TEST(SchemaRegistryOptionsTest, UrlAndTimeoutFromProperties) {
  auto options = SchemaRegistryOptions::FromProperties(
      {{"bootstrap.servers", "x"}, {"schema.registry.url", "http://h:1/apis/ccompat/v7/"},
       {"schema.registry.timeout.ms", "250"}});
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->url, "http://h:1/apis/ccompat/v7/");
  EXPECT_EQ(options->timeout, std::chrono::milliseconds(250));
  auto missing = SchemaRegistryOptions::FromProperties({});
  EXPECT_EQ(missing.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("schema.registry.url"), std::string::npos);
  auto bad_timeout = SchemaRegistryOptions::FromProperties({{"schema.registry.url", "http://h"},
                                                            {"schema.registry.timeout.ms", "soon"}});
  EXPECT_EQ(bad_timeout.status().code(), Status::Code::kInvalidArgument);
  SchemaRegistryOptions no_scheme;
  no_scheme.url = "127.0.0.1:8081";
  EXPECT_EQ(SchemaRegistryClient::Create(no_scheme).status().code(), Status::Code::kInvalidArgument);
}

TEST(JsonTest, QuoteAndMembersRoundTrip) {
  std::string text = "a\"b\\c\n\t\x01 é";
  std::string doc = "{\"other\": [1, {\"x\": \"}\"}], \"s\": " + JsonQuote(text) + ", \"n\": 42}";
  Result<std::string> s = JsonMemberString(doc, "s");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(*s, text);
  EXPECT_EQ(*JsonMemberInt(doc, "n"), 42);
  EXPECT_EQ(JsonMemberString(doc, "missing").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(*JsonMemberString(R"({"u":"\u00e9\ud83d\ude00"})", "u"), "é\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace kappa
