// The Schema Registry client against a real registry (the suite's, started by
// scripts/schema_registry.sh): what the Avro input relies on to turn a
// record's schema id into its writer schema.
#include "base/stop_token.h"
#include "kafka/schema_registry.h"
#include "operators/decode_validate.h"
#include "formats/avro_decoder.h"
#include "formats/schema_spec.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
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
                                              std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                              std::chrono::milliseconds retry_for = SchemaRegistryOptions().retry_for) {
  SchemaRegistryOptions options;
  options.url = url;
  options.timeout = timeout;
  options.retry_for = retry_for;
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

  auto reader = Client(registry.url(), std::chrono::milliseconds(2000), std::chrono::milliseconds(0));
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
  auto client = Client(url, std::chrono::milliseconds(2000), std::chrono::milliseconds(0));
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
  auto client = Client(url, std::chrono::milliseconds(500), std::chrono::milliseconds(0));
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
  // On `port` if given (else a free one).
  explicit ScriptedRegistry(std::vector<std::pair<int, std::string>> answers, int port = 0)
      : answers_(std::move(answers)) {
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
    port_ = port;
    if (port == 0) {
      port_ = server_.bind_to_any_port("127.0.0.1");
    } else if (!server_.bind_to_port("127.0.0.1", port)) {
      ADD_FAILURE() << "cannot listen on port " << port;
    }
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
  // The wait is said as it begins and as it ends: a job waiting on the
  // registry printed nothing for up to 20 s (a bug bash).
  std::vector<std::string> notes;
  client->SetWaitNote([&](const std::string& text) { notes.push_back(text); });
  Result<std::string> schema = client->SchemaById(3);
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  EXPECT_EQ(*schema, "\"string\"");
  EXPECT_EQ(registry.requests(), 3);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_EQ(notes[0].rfind("the schema registry at " + registry.url() + " does not answer (HTTP 502): asking again "
                           "for up to 20 s",
                           0),
            0u)
      << notes[0];
  EXPECT_EQ(notes[1].rfind("the schema registry at " + registry.url() + " answers again after ", 0), 0u) << notes[1];
  notes.clear();
  EXPECT_TRUE(client->SchemaById(3).ok());
  EXPECT_TRUE(notes.empty()) << "a cached answer waits for nothing";
}

TEST(SchemaRegistryConflictTest, AServerErrorThatLastsIsReportedAfterTheRetries) {
  ScriptedRegistry registry({{500, R"({"error_code":50001,"message":"Error in the backend data store"})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000), std::chrono::milliseconds(3500));
  const auto began = std::chrono::steady_clock::now();
  Result<int32_t> id = client->Register("s-value", kPaymentV1);
  const auto took = std::chrono::steady_clock::now() - began;
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Status::Code::kUnavailable) << id.status().ToString();
  EXPECT_NE(id.status().message().find("HTTP 500, error_code 50001: Error in the backend data store"),
            std::string::npos)
      << id.status().message();
  EXPECT_EQ(registry.requests(), 6) << "100 ms doubling within 3.5 s: 3.1 s of pauses";
  EXPECT_GE(took, std::chrono::milliseconds(3000));
}

// A bug bash: each task of a job met the same dead registry in turn, and a
// job's start waited out the retry time once per task (38 s for two). For
// a while after a request gave up, the next fails at once with its error.
TEST(SchemaRegistryConflictTest, AfterARequestGaveUpTheNextFailsAtOnce) {
  ScriptedRegistry registry({{500, R"({"error_code":50001,"message":"Error in the backend data store"})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000), std::chrono::milliseconds(1000));
  Result<std::string> first = client->SchemaById(1);
  ASSERT_FALSE(first.ok());
  const int asked = registry.requests();
  EXPECT_GT(asked, 1);
  const auto began = std::chrono::steady_clock::now();
  Result<std::string> second = client->SchemaById(2);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kUnavailable) << second.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(500));
  EXPECT_EQ(registry.requests(), asked) << "asked again";
  EXPECT_NE(second.status().message().find("a moment ago, for another request"), std::string::npos)
      << second.status().message();
}

// A bug bash: SIGTERM while a job waited for a registry answering 500 was
// ignored for the whole retry time. The process's stop request ends the
// wait with an error IsStoppedWaitingForRegistry knows.
TEST(SchemaRegistryConflictTest, AStopRequestEndsTheWait) {
  ScriptedRegistry registry({{500, R"({"error_code":50001,"message":"down"})"}});
  auto client = Client(registry.url(), std::chrono::milliseconds(2000), std::chrono::milliseconds(20000));
  StopSource stop;
  ProcessStopToken() = StopToken(stop);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    stop.RequestStop();
  });
  const auto began = std::chrono::steady_clock::now();
  Result<std::string> schema = client->SchemaById(1);
  const auto took = std::chrono::steady_clock::now() - began;
  stopper.join();
  ProcessStopToken() = StopToken();
  ASSERT_FALSE(schema.ok());
  EXPECT_TRUE(IsStoppedWaitingForRegistry(schema.status())) << schema.status().ToString();
  EXPECT_NE(schema.status().message().find(registry.url() + ", which did not answer (HTTP 500)"), std::string::npos)
      << schema.status().message();
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_FALSE(IsStoppedWaitingForRegistry(Status::Aborted("stopped while restoring the state")));
}

// Each task's decoder made its own registry client: a topic of P
// partitions asked for every writer schema P times at a start or a replay
// (a bug bash). The decoders of one registry URL share one client (and its
// cache): one request for all of them.
TEST(SchemaRegistryConflictTest, TheDecodersOfOneRegistryShareItsAnswers) {
  ScriptedRegistry registry({{200, R"({"schema":"\"string\""})"}});
  DecodeSpec spec;
  spec.format = RecordFormat::kAvro;
  auto schema = std::make_shared<RecordSchema>();
  ASSERT_TRUE(schema->Add(FieldDecl{"txn_id", ValueType::kString, ""}).ok());
  spec.schema = schema;
  spec.schema_registry_url = registry.url();
  const std::string record("\0\0\0\0\x05garbage", 12);
  RawRecord raw;
  raw.payload = reinterpret_cast<const uint8_t*>(record.data());
  raw.size = record.size();
  std::vector<std::unique_ptr<RecordDecoder>> decoders;
  for (int task = 0; task < 4; ++task) {
    auto decoder = MakeRecordDecoder(spec);
    ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
    FieldValue out[1];
    DecodeError error;
    EXPECT_FALSE((*decoder)->Decode(raw, out, &error)) << "a string is not the declared record";
    EXPECT_TRUE((*decoder)->last_fatal().ok()) << (*decoder)->last_fatal().ToString();
    decoders.push_back(std::move(*decoder));
  }
  EXPECT_EQ(registry.requests(), 1) << "writer schema 5 asked once for the four tasks";
}

// A registry restarting (Apicurio takes 6-10 s) stopped every job that met
// a new schema id meanwhile: a refused connection was an error at once (a
// bug bash). It is asked again until the registry answers, within
// schema.registry.retry.ms; past it the error says how long it was tried.
TEST(SchemaRegistryConflictTest, ARegistryThatIsNotUpYetIsAskedAgainUntilItAnswers) {
  const int port = ClosedPort();
  auto client = Client("http://127.0.0.1:" + std::to_string(port), std::chrono::milliseconds(2000));
  std::unique_ptr<ScriptedRegistry> registry;
  std::thread starter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    registry = std::make_unique<ScriptedRegistry>(std::vector<std::pair<int, std::string>>{
                                                      {200, R"({"schema":"\"string\""})"}},
                                                  port);
  });
  const auto began = steady_clock::now();
  Result<std::string> schema = client->SchemaById(3);
  const auto took = steady_clock::now() - began;
  starter.join();
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  EXPECT_EQ(*schema, "\"string\"");
  EXPECT_EQ(registry->requests(), 1);
  EXPECT_GE(took, std::chrono::milliseconds(1400));

  auto impatient = Client("http://127.0.0.1:" + std::to_string(ClosedPort()), std::chrono::milliseconds(2000),
                          std::chrono::milliseconds(1000));
  Result<std::string> none = impatient->SchemaById(3);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Status::Code::kUnavailable) << none.status().ToString();
  EXPECT_NE(none.status().message().find(" times over 0."), std::string::npos) << none.status().message();
  EXPECT_NE(none.status().message().find(" s; schema.registry.retry.ms bounds it)"), std::string::npos)
      << none.status().message();
}

// ---- Schema references (Confluent's: a type registered once under its own
// subject, named by the schemas that use it) ----

struct Ref {
  std::string name, subject;
  int version = 1;
};

// The registry's answer to a request of the test's own (what Confluent's
// serializers send, which SchemaRegistryClient::Register does not).
httplib::Result Request(const std::string& url, const std::string& method, const std::string& path,
                        const std::string& body = "") {
  const size_t origin_end = url.find('/', std::string("http://").size());
  httplib::Client http(url.substr(0, origin_end));
  const std::string full = (origin_end == std::string::npos ? "" : url.substr(origin_end)) + path;
  if (method == "POST") return http.Post(full, body, "application/vnd.schemaregistry.v1+json");
  return http.Delete(full);
}

// Registers `schema` under `subject` with `refs`, as a Confluent serializer
// does for a schema using types of other subjects; its id, or -1.
int32_t RegisterWithReferences(const std::string& url, const std::string& subject, const std::string& schema,
                               const std::vector<Ref>& refs) {
  std::string body = "{\"schemaType\":\"AVRO\",\"schema\":" + JsonQuote(schema) + ",\"references\":[";
  for (size_t i = 0; i < refs.size(); ++i) {
    body += (i ? "," : "") + std::string("{\"name\":") + JsonQuote(refs[i].name) +
            ",\"subject\":" + JsonQuote(refs[i].subject) + ",\"version\":" + std::to_string(refs[i].version) + "}";
  }
  body += "]}";
  // Apicurio's in-memory store answers 500 (a key violation) or 409
  // ("already exists") to registrations that race others' (the client's
  // SendAgainIfTransient asks again the same way).
  httplib::Result r = Request(url, "POST", "/subjects/" + subject + "/versions", body);
  for (int retry = 0; retry < 5 && r && (r->status / 100 == 5 || r->status == 409); ++retry) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << retry));
    r = Request(url, "POST", "/subjects/" + subject + "/versions", body);
  }
  EXPECT_TRUE(r) << "no answer registering " << subject;
  if (!r) return -1;
  EXPECT_EQ(r->status, 200) << subject << ": " << r->body;
  Result<int64_t> id = JsonMemberInt(r->body, "id");
  return id.ok() ? static_cast<int32_t>(*id) : -1;
}

// Deletes a subject for good (Apicurio, like Confluent, first soft-deletes).
void DeleteSubject(const std::string& url, const std::string& subject) {
  httplib::Result soft = Request(url, "DELETE", "/subjects/" + subject);
  ASSERT_TRUE(soft && soft->status == 200) << (soft ? soft->body : "no answer");
  httplib::Result hard = Request(url, "DELETE", "/subjects/" + subject + "?permanent=true");
  ASSERT_TRUE(hard && hard->status == 200) << (hard ? hard->body : "no answer");
}

// Avro binary pieces.
std::string AvroLong(int64_t v) {
  uint64_t z = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  std::string out;
  while (z >= 0x80) {
    out += static_cast<char>((z & 0x7F) | 0x80);
    z >>= 7;
  }
  out += static_cast<char>(z);
  return out;
}
std::string AvroStr(const std::string& s) { return AvroLong(static_cast<int64_t>(s.size())) + s; }
std::string AvroDouble(double d) {
  char b[8];
  std::memcpy(b, &d, 8);  // little-endian on every platform kappa builds for
  return std::string(b, 8);
}
// The Confluent wire format: magic byte 0, the schema id big-endian, the body.
std::string Framed(int32_t id, const std::string& body) {
  std::string out(1, '\0');
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((static_cast<uint32_t>(id) >> shift) & 0xFF);
  return out + body;
}

RawRecord RawOf(const std::string& bytes) {
  return RawRecord{reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<uint32_t>(bytes.size())};
}

RecordSchema Fields(std::initializer_list<FieldDecl> decls) {
  RecordSchema schema;
  for (const FieldDecl& d : decls) EXPECT_TRUE(schema.Add(d).ok()) << d.name;
  return schema;
}

FieldDecl Optional(FieldDecl d) {
  d.optional = true;
  return d;
}

const std::string kMoney =
    R"({"type":"record","name":"Money","namespace":"kappa.ref","fields":[)"
    R"({"name":"amount","type":"double"},{"name":"currency","type":"string"}]})";

// A Payment whose `price` is a Money registered under its own subject, and
// whose optional `fee` is a Money again (the same type referenced twice:
// defined once, at its first use). Every record decodes, the referenced
// type's fields included, and the referenced schema is fetched once.
TEST_F(SchemaRegistryTest, ASchemaWithAReferenceDecodesTheReferencedFields) {
  const std::string money_subject = UniqueSubject("money");
  auto writer = Client(url_);
  Result<int32_t> money = writer->Register(money_subject, kMoney);
  ASSERT_TRUE(money.ok()) << money.status().ToString();
  const std::string payment =
      R"({"type":"record","name":"Payment","namespace":"kappa.ref","fields":[)"
      R"({"name":"user","type":"string"},{"name":"price","type":"Money"},)"
      R"({"name":"fee","type":["null","kappa.ref.Money"],"default":null}]})";
  const int32_t id =
      RegisterWithReferences(url_, UniqueSubject("payment"), payment, {{"kappa.ref.Money", money_subject, 1}});
  ASSERT_GE(id, 0);

  auto client = Client(url_);
  Result<std::string> text = client->SchemaById(id);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text,
            R"({"type":"record","name":"Payment","namespace":"kappa.ref","fields":[)"
            R"({"name":"user","type":"string"},{"name":"price","type":)" + kMoney + "}," +
                R"({"name":"fee","type":["null","kappa.ref.Money"],"default":null}]})");
  EXPECT_EQ(client->requests(), 2u) << "the schema by id, then the referenced subject's version";

  auto decoder = AvroDecoder::Create(
      Fields({{"user", ValueType::kString, ""},
              {"amount", ValueType::kDouble, "price.amount"},
              {"currency", ValueType::kString, "price.currency"},
              Optional({"fee", ValueType::kDouble, "fee.amount"})}),
      client.get());
  ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
  FieldValue out[4];
  DecodeError error;
  for (int i = 0; i < 100; ++i) {
    const bool with_fee = i % 2 == 1;
    const std::string record =
        Framed(id, AvroStr("user-" + std::to_string(i)) + AvroDouble(i + 0.25) + AvroStr(i % 3 ? "EUR" : "USD") +
                       (with_fee ? AvroLong(1) + AvroDouble(i / 8.0) + AvroStr("CHF") : AvroLong(0)));
    ASSERT_TRUE((*decoder)->Decode(RawOf(record), out, &error)) << i << ": " << error.message;
    EXPECT_EQ(out[0].text(), "user-" + std::to_string(i));
    EXPECT_EQ(out[1].d, i + 0.25);
    EXPECT_EQ(out[2].text(), i % 3 ? "EUR" : "USD");
    ASSERT_EQ(out[3].present, with_fee) << i;
    if (with_fee) {
      EXPECT_EQ(out[3].d, i / 8.0);
    }
  }
  EXPECT_EQ(client->requests(), 2u) << "the resolved schema is cached by id";
}

// Payment references Money and Currency; Money references Currency (a chain
// two deep, and Currency referenced twice): each is fetched once, defined
// once, and an enum from the end of the chain decodes.
TEST_F(SchemaRegistryTest, NestedReferencesResolveThroughTheChain) {
  auto writer = Client(url_);
  const std::string currency_subject = UniqueSubject("currency");
  const std::string money_subject = UniqueSubject("money-chain");
  Result<int32_t> currency =
      writer->Register(currency_subject, R"({"type":"enum","name":"Currency","namespace":"kappa.ref","symbols":["EUR","USD","CHF"]})");
  ASSERT_TRUE(currency.ok()) << currency.status().ToString();
  ASSERT_GE(RegisterWithReferences(url_, money_subject,
                                   R"({"type":"record","name":"Money","namespace":"kappa.ref","fields":[)"
                                   R"({"name":"amount","type":"double"},{"name":"currency","type":"Currency"}]})",
                                   {{"kappa.ref.Currency", currency_subject, 1}}),
            0);
  const int32_t id = RegisterWithReferences(
      url_, UniqueSubject("payment-chain"),
      R"({"type":"record","name":"Payment","namespace":"kappa.pay","fields":[)"
      R"({"name":"user","type":"string"},{"name":"price","type":"kappa.ref.Money"},)"
      R"({"name":"settled_in","type":"kappa.ref.Currency"}]})",
      {{"kappa.ref.Money", money_subject, 1}, {"kappa.ref.Currency", currency_subject, 1}});
  ASSERT_GE(id, 0);

  auto client = Client(url_);
  auto decoder = AvroDecoder::Create(Fields({{"user", ValueType::kString, ""},
                                             {"amount", ValueType::kDouble, "price.amount"},
                                             {"currency", ValueType::kString, "price.currency"},
                                             {"settled_in", ValueType::kString, "settled_in"}}),
                                     client.get());
  ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
  const char* symbols[] = {"EUR", "USD", "CHF"};
  FieldValue out[4];
  DecodeError error;
  for (int i = 0; i < 30; ++i) {
    const std::string record = Framed(id, AvroStr("u" + std::to_string(i)) + AvroDouble(i * 1.5) + AvroLong(i % 3) +
                                              AvroLong((i + 1) % 3));
    ASSERT_TRUE((*decoder)->Decode(RawOf(record), out, &error)) << i << ": " << error.message;
    EXPECT_EQ(out[0].text(), "u" + std::to_string(i));
    EXPECT_EQ(out[1].d, i * 1.5);
    EXPECT_EQ(out[2].text(), symbols[i % 3]);
    EXPECT_EQ(out[3].text(), symbols[(i + 1) % 3]);
  }
  EXPECT_EQ(client->requests(), 3u) << "the id, Money's version, Currency's version (once)";
}

// A referenced subject deleted after the schema using it was registered:
// each record of that schema is a dead letter naming the subject and
// version, not a stop of the job and not an unknown id.
TEST_F(SchemaRegistryTest, AReferenceToAMissingSubjectVersionIsADeadLetterNamingIt) {
  auto writer = Client(url_);
  const std::string money_subject = UniqueSubject("money-gone");
  ASSERT_TRUE(writer->Register(money_subject, kMoney).ok());
  const int32_t id = RegisterWithReferences(
      url_, UniqueSubject("payment-gone"),
      R"({"type":"record","name":"Payment","namespace":"kappa.ref","fields":[{"name":"price","type":"Money"}]})",
      {{"kappa.ref.Money", money_subject, 1}});
  ASSERT_GE(id, 0);
  ASSERT_NO_FATAL_FAILURE(DeleteSubject(url_, money_subject));

  auto client = Client(url_);
  auto decoder = AvroDecoder::Create(Fields({{"amount", ValueType::kDouble, "price.amount"}}), client.get());
  ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
  FieldValue out[1];
  DecodeError error;
  for (int i = 0; i < 5; ++i) {
    const std::string record = Framed(id, AvroDouble(i) + AvroStr("EUR"));
    EXPECT_FALSE((*decoder)->Decode(RawOf(record), out, &error));
    EXPECT_EQ(error.kind, DecodeError::Kind::kUndecodable);
    EXPECT_TRUE((*decoder)->last_fatal().ok()) << (*decoder)->last_fatal().ToString();
    EXPECT_NE(error.message.find("writer schema " + std::to_string(id)), std::string::npos) << error.message;
    EXPECT_NE(error.message.find(money_subject), std::string::npos) << error.message;
    EXPECT_NE(error.message.find("version"), std::string::npos) << error.message;
    EXPECT_EQ(error.message.find("unknown schema id"), std::string::npos) << error.message;
  }
}

// References nested 32 deep resolve; 33 deep is refused, saying so.
TEST_F(SchemaRegistryTest, ReferencesNestedDeeperThan32AreRefused) {
  auto writer = Client(url_);
  const std::string prefix = UniqueSubject("deep");
  std::vector<int32_t> ids;
  Result<int32_t> first = writer->Register(
      prefix + "-0", R"({"type":"record","name":"T0","namespace":"kappa.deep","fields":[{"name":"v","type":"long"}]})");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ids.push_back(*first);
  for (int i = 1; i <= kMaxSchemaReferenceDepth + 1; ++i) {
    const std::string schema = R"({"type":"record","name":"T)" + std::to_string(i) +
                               R"(","namespace":"kappa.deep","fields":[{"name":"inner","type":"T)" +
                               std::to_string(i - 1) + R"("}]})";
    ids.push_back(RegisterWithReferences(url_, prefix + "-" + std::to_string(i), schema,
                                         {{"kappa.deep.T" + std::to_string(i - 1), prefix + "-" + std::to_string(i - 1), 1}}));
    ASSERT_GE(ids.back(), 0) << i;
  }
  auto client = Client(url_);
  Result<std::string> deepest_allowed = client->SchemaById(ids[kMaxSchemaReferenceDepth]);
  ASSERT_TRUE(deepest_allowed.ok()) << deepest_allowed.status().ToString();
  EXPECT_NE(deepest_allowed->find(R"("name":"T0")"), std::string::npos) << *deepest_allowed;
  Result<std::string> too_deep = client->SchemaById(ids[kMaxSchemaReferenceDepth + 1]);
  EXPECT_EQ(too_deep.status().code(), Status::Code::kInvalidArgument) << too_deep.status().ToString();
  EXPECT_NE(too_deep.status().message().find("nest deeper than 32"), std::string::npos) << too_deep.status().ToString();
}

// A no-namespace R {m: Money} whose Money is a no-namespace type of its own
// reference (named MoneyZ, not Money), inside a writer com.x.Pay that also
// uses its own com.x.Money (the two longs in the other order): R and its
// Money keep the null namespace, so r.m is R's Money and m1 the writer's,
// as a Java reader decodes them, not the same type twice.
TEST_F(SchemaRegistryTest, ANoNamespaceReferenceInsideANamespacedWriterKeepsItsOwnTypes) {
  auto writer = Client(url_);
  const std::string a_subject = UniqueSubject("money-x");
  const std::string b_subject = UniqueSubject("money-null");
  const std::string r_subject = UniqueSubject("r-null");
  ASSERT_TRUE(writer->Register(a_subject, R"({"type":"record","name":"Money","namespace":"com.x","fields":[)"
                                          R"({"name":"cents","type":"long"},{"name":"fee","type":"long"}]})")
                  .ok());
  ASSERT_TRUE(writer->Register(b_subject, R"({"type":"record","name":"Money","fields":[)"
                                          R"({"name":"fee","type":"long"},{"name":"cents","type":"long"}]})")
                  .ok());
  ASSERT_GE(RegisterWithReferences(url_, r_subject, R"({"type":"record","name":"R","fields":[{"name":"m","type":"Money"}]})",
                                   {{"MoneyZ", b_subject, 1}}),
            0);
  const int32_t id = RegisterWithReferences(
      url_, UniqueSubject("pay-x"),
      R"({"type":"record","name":"Pay","namespace":"com.x","fields":[{"name":"m1","type":"Money"},{"name":"r","type":"R"}]})",
      {{"Money", a_subject, 1}, {"R", r_subject, 1}});
  ASSERT_GE(id, 0);

  auto client = Client(url_);
  auto decoder = AvroDecoder::Create(Fields({{"m1_cents", ValueType::kInt64, "m1.cents"},
                                             {"m1_fee", ValueType::kInt64, "m1.fee"},
                                             {"r_cents", ValueType::kInt64, "r.m.cents"},
                                             {"r_fee", ValueType::kInt64, "r.m.fee"}}),
                                     client.get());
  ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
  FieldValue out[4];
  DecodeError error;
  for (int i = 0; i < 20; ++i) {
    // m1 (com.x.Money): cents, fee; r.m (Money): fee, cents.
    const std::string record =
        Framed(id, AvroLong(100 + i) + AvroLong(i) + AvroLong(7 * i) + AvroLong(1000 + i));
    ASSERT_TRUE((*decoder)->Decode(RawOf(record), out, &error)) << i << ": " << error.message;
    EXPECT_EQ(out[0].i, 100 + i);
    EXPECT_EQ(out[1].i, i);
    EXPECT_EQ(out[2].i, 1000 + i);
    EXPECT_EQ(out[3].i, 7 * i);
  }
}

// The inlining itself, on schemas given directly (what the registry would
// return for each subject and version).
class InlineTest : public ::testing::Test {
 protected:
  std::map<std::pair<std::string, int64_t>, RegisteredSchema> subjects_;
  int lookups_ = 0;
  Result<std::string> Inline(const std::string& schema, const std::vector<SchemaReference>& refs) {
    return InlineSchemaReferences(schema, refs, [this](const SchemaReference& ref) -> Result<RegisteredSchema> {
      ++lookups_;
      auto it = subjects_.find({ref.subject, ref.version});
      if (it == subjects_.end()) return Status::NotFound(ref.subject);
      return it->second;
    });
  }
};

TEST_F(InlineTest, NamesResolveAgainstTheEnclosingNamespaceAndOtherStringsStay) {
  subjects_[{"m", 1}] = {R"({"type":"record","name":"M","namespace":"a","fields":[{"name":"x","type":"int"}]})", {}};
  // "M" inside namespace a is a.M; "doc" text that spells a.M stays text;
  // a map's values and an array's items are type positions.
  Result<std::string> out = Inline(
      R"({"type":"record","name":"R","namespace":"a","doc":"a.M","fields":[)"
      R"({"name":"ms","type":{"type":"map","values":{"type":"array","items":"M"}}},{"name":"m","type":"a.M"}]})",
      {{"a.M", "m", 1}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, R"({"type":"record","name":"R","namespace":"a","doc":"a.M","fields":[)"
                  R"({"name":"ms","type":{"type":"map","values":{"type":"array","items":)"
                  R"({"type":"record","name":"M","namespace":"a","fields":[{"name":"x","type":"int"}]}}}},)"
                  R"({"name":"m","type":"a.M"}]})");
  // In another namespace "M" is b.M: not the reference, left to Avro.
  Result<std::string> other = Inline(R"({"type":"record","name":"R","namespace":"b","fields":[{"name":"m","type":"M"}]})",
                                     {{"a.M", "m", 1}});
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(other->find("\"x\""), std::string::npos) << *other;
}

TEST_F(InlineTest, ACycleIsRefusedNamingItsSubjects) {
  subjects_[{"a", 1}] = {R"({"type":"record","name":"A","fields":[{"name":"b","type":["null","B"]}]})", {{"B", "b", 1}}};
  subjects_[{"b", 1}] = {R"({"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]})", {{"A", "a", 1}}};
  Result<std::string> out = Inline(R"({"type":"record","name":"R","fields":[{"name":"a","type":"A"}]})", {{"A", "a", 1}});
  EXPECT_EQ(out.status().code(), Status::Code::kInvalidArgument) << out.status().ToString();
  EXPECT_NE(out.status().message().find("cycle (subject 'a' version 1 -> subject 'b' version 1 -> subject 'a' version 1)"),
            std::string::npos)
      << out.status().ToString();
  EXPECT_EQ(lookups_, 2);
}

TEST_F(InlineTest, ALookupFailureIsReturnedAsItIs) {
  Result<std::string> out = Inline(R"({"type":"record","name":"R","fields":[{"name":"a","type":"A"}]})", {{"A", "gone", 3}});
  EXPECT_EQ(out.status().code(), Status::Code::kNotFound) << out.status().ToString();
  EXPECT_EQ(Inline("not json", {{"A", "gone", 3}}).status().code(), Status::Code::kInvalidArgument);
}

// Finding 1: a no-namespace R inlined inside com.x keeps the null namespace
// (said as "" where Avro C would give it com.x), and its bare Money is the
// no-namespace Money of its own reference (named MoneyZ), not the writer's
// com.x.Money; a later "Money" in com.x stays the writer's.
TEST_F(InlineTest, ANoNamespaceReferenceKeepsTheNullNamespaceAndItsOwnTypes) {
  const std::string x_money =
      R"({"type":"record","name":"Money","namespace":"com.x","fields":[{"name":"cents","type":"long"},{"name":"fee","type":"long"}]})";
  const std::string null_money =
      R"({"type":"record","name":"Money","fields":[{"name":"fee","type":"long"},{"name":"cents","type":"long"}]})";
  subjects_[{"a", 1}] = {x_money, {}};
  subjects_[{"b", 1}] = {null_money, {}};
  subjects_[{"r", 1}] = {R"({"type":"record","name":"R","fields":[{"name":"m","type":"Money"}]})", {{"MoneyZ", "b", 1}}};
  Result<std::string> out = Inline(
      R"({"type":"record","name":"Pay","namespace":"com.x","fields":[)"
      R"({"name":"m1","type":"Money"},{"name":"r","type":"R"},{"name":"m2","type":"Money"}]})",
      {{"Money", "a", 1}, {"R", "r", 1}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, R"({"type":"record","name":"Pay","namespace":"com.x","fields":[{"name":"m1","type":)" + x_money +
                      R"(},{"name":"r","type":{"type":"record","name":"R","namespace":"","fields":[{"name":"m","type":)" +
                      null_money + R"(}]}},{"name":"m2","type":"Money"}]})");
}

// Finding 4: a no-namespace enum Kind inside a no-namespace Addr, beside the
// writer's own com.a.Kind: two types, Addr's in the null namespace.
TEST_F(InlineTest, ANoNamespaceEnumBesideTheWritersOwnIsItsOwnType) {
  subjects_[{"addr", 1}] = {
      R"({"type":"record","name":"Addr","fields":[{"name":"k","type":{"type":"enum","name":"Kind","symbols":["HOME"]}}]})", {}};
  Result<std::string> out = Inline(R"({"type":"record","name":"W","namespace":"com.a","fields":[)"
                                   R"({"name":"k","type":{"type":"enum","name":"Kind","symbols":["X"]}},)"
                                   R"({"name":"addr","type":"Addr"}]})",
                                   {{"Addr", "addr", 1}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, R"({"type":"record","name":"W","namespace":"com.a","fields":[)"
                  R"({"name":"k","type":{"type":"enum","name":"Kind","symbols":["X"]}},)"
                  R"({"name":"addr","type":{"type":"record","name":"Addr","namespace":"","fields":[)"
                  R"({"name":"k","type":{"type":"enum","name":"Kind","symbols":["HOME"]}}]}}]})");
}

// Finding 2: Confluent does not ask a reference's name to be its type's full
// name; a reference named "amt.avsc" defining com.x.Amt is matched by the
// type's full name.
TEST_F(InlineTest, AReferenceNamedOtherwiseThanItsTypeIsInlined) {
  const std::string amt = R"({"type":"record","name":"Amt","namespace":"com.x","fields":[{"name":"v","type":"long"}]})";
  subjects_[{"amt", 1}] = {amt, {}};
  Result<std::string> out = Inline(R"({"type":"record","name":"W","namespace":"com.x","fields":[)"
                                   R"({"name":"a","type":"Amt"},{"name":"b","type":["null","com.x.Amt"]}]})",
                                   {{"amt.avsc", "amt", 1}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, R"({"type":"record","name":"W","namespace":"com.x","fields":[{"name":"a","type":)" + amt +
                      R"(},{"name":"b","type":["null","com.x.Amt"]}]})");
}

// Finding 3: P and Q each have a reference named "Kind", to different types
// (p.Kind, q.Kind): each is inlined where its own schema uses it.
TEST_F(InlineTest, SameReferenceNameInTwoSchemasMeansEachItsOwnType) {
  const std::string p_kind = R"({"type":"enum","name":"Kind","namespace":"p","symbols":["A"]})";
  const std::string q_kind = R"({"type":"enum","name":"Kind","namespace":"q","symbols":["B"]})";
  subjects_[{"pk", 1}] = {p_kind, {}};
  subjects_[{"qk", 1}] = {q_kind, {}};
  subjects_[{"p", 1}] = {R"({"type":"record","name":"P","namespace":"p","fields":[{"name":"k","type":"Kind"}]})",
                         {{"Kind", "pk", 1}}};
  subjects_[{"q", 1}] = {R"({"type":"record","name":"Q","namespace":"q","fields":[{"name":"k","type":"Kind"}]})",
                         {{"Kind", "qk", 1}}};
  Result<std::string> out = Inline(R"({"type":"record","name":"W","namespace":"w","fields":[)"
                                   R"({"name":"p","type":"p.P"},{"name":"q","type":"q.Q"}]})",
                                   {{"p.P", "p", 1}, {"q.Q", "q", 1}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, R"({"type":"record","name":"W","namespace":"w","fields":[)"
                  R"({"name":"p","type":{"type":"record","name":"P","namespace":"p","fields":[{"name":"k","type":)" +
                      p_kind + R"(}]}},)"
                      R"({"name":"q","type":{"type":"record","name":"Q","namespace":"q","fields":[{"name":"k","type":)" +
                      q_kind + R"(}]}}]})");
}

// A null-namespace type used a second time from inside a namespace: Avro C
// has no way to name it there (it would read com.x.R), so the schema is
// refused naming the type, rather than read as another type.
TEST_F(InlineTest, ANullNamespaceTypeUsedAgainInsideANamespaceIsRefusedNamingIt) {
  subjects_[{"r", 1}] = {R"({"type":"record","name":"R","fields":[{"name":"v","type":"long"}]})", {}};
  Result<std::string> out = Inline(R"({"type":"record","name":"Pay","namespace":"com.x","fields":[)"
                                   R"({"name":"r1","type":"R"},{"name":"r2","type":"R"}]})",
                                   {{"R", "r", 1}});
  EXPECT_EQ(out.status().code(), Status::Code::kInvalidArgument) << out.status().ToString();
  EXPECT_NE(out.status().message().find("'R'"), std::string::npos) << out.status().ToString();
  EXPECT_NE(out.status().message().find("com.x"), std::string::npos) << out.status().ToString();
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
  auto retry = SchemaRegistryOptions::FromProperties({{"schema.registry.url", "http://h"},
                                                      {"schema.registry.retry.ms", "0"}});
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_EQ(retry->retry_for, std::chrono::milliseconds(0));
  EXPECT_EQ(SchemaRegistryOptions::FromProperties({{"schema.registry.url", "http://h"}})->retry_for,
            std::chrono::seconds(20));
  auto bad_retry = SchemaRegistryOptions::FromProperties({{"schema.registry.url", "http://h"},
                                                          {"schema.registry.retry.ms", "-1"}});
  EXPECT_EQ(bad_retry.status().code(), Status::Code::kInvalidArgument);
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
