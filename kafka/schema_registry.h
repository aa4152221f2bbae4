// SchemaRegistryClient: the Confluent Schema Registry REST API, as Avro
// producers and consumers use it, for the Avro input (Confluent wire format:
// magic byte 0, a 4-byte big-endian schema id, Avro binary) and the Avro sink.
// The registry is any server of that API: Confluent's, Karapace, Redpanda's,
// or Apicurio's compatibility API (base path /apis/ccompat/v7).
//
// The URL is `schema.registry.url`: scheme, host, port and the API's base
// path, e.g. http://127.0.0.1:8081 or http://host:8080/apis/ccompat/v7;
// https works too. Writer schemas are immutable once registered, so every
// schema fetched by id (and every subject version one references) is cached
// for the client's life: a registry that goes down stops nothing that
// already decoded its schemas. Thread-safe: one client is shared by every
// worker; requests to the registry are serialised (they are rare: one per
// schema id and per referenced subject version), cache hits take a shared
// lock only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/status.h"

namespace httplib {
class Client;
}

namespace kappa {

struct SchemaRegistryOptions {
  // schema.registry.url (required).
  std::string url;
  // schema.registry.timeout.ms: the bound on connecting and on waiting for
  // each response; a registry that does not answer within it is Unavailable.
  std::chrono::milliseconds timeout{5000};
  // schema.registry.retry.ms: how long a request is asked again while the
  // registry cannot be reached or answers a transient error (HTTP 5xx, 429),
  // 100 ms apart doubling up to 2 s, before it fails: a registry's restart
  // (Apicurio takes 6-10 s) stopped every job that met a new schema id
  // meanwhile (a bug bash). 0: asked once.
  std::chrono::milliseconds retry_for{20000};
  // What the user set the URL with, for messages: a job spec's
  // `source.schema_registry`, a flag; schema.registry.url for -X properties.
  std::string setting = "schema.registry.url";

  // From key=value properties (the source's settings, or -X flags): reads
  // schema.registry.url, schema.registry.timeout.ms and
  // schema.registry.retry.ms, ignores the rest. InvalidArgument if the URL
  // is missing, the timeout is not a positive number of milliseconds or the
  // retry time a negative one.
  static Result<SchemaRegistryOptions> FromProperties(
      const std::vector<std::pair<std::string, std::string>>& properties);
};

// What a request ends with when the process is asked to stop (SIGTERM,
// SIGINT) while it waits for a registry that does not answer: Aborted,
// its message beginning "stopped while waiting for the schema registry".
// A job stopped so takes no final checkpoint (the records that needed the
// schema are not processed) and says so; it waited out the 20 s retry, and
// then the 20 s stop grace, and exited 1 blaming "a broker or database" (a
// bug bash).
bool IsStoppedWaitingForRegistry(const Status& st);

// A schema reference as the Confluent Schema Registry defines it: the named
// type `name` (its full name, e.g. "acme.Money") is the schema registered
// under `subject` at `version`.
struct SchemaReference {
  std::string name;
  std::string subject;
  int64_t version = 0;
};

// A schema as registered under a subject: its text and its own references.
struct RegisteredSchema {
  std::string schema;
  std::vector<SchemaReference> references;
};

// The most schema references nest (A references B references C ... is 2
// deep at C): deeper is refused as InvalidArgument, as is a cycle.
constexpr int kMaxSchemaReferenceDepth = 32;

class SchemaRegistryClient {
 public:
  // InvalidArgument if the URL is not http(s)://host[:port][/base/path].
  // Connects to nothing yet: the first request does.
  static Result<std::unique_ptr<SchemaRegistryClient>> Create(SchemaRegistryOptions options);
  ~SchemaRegistryClient();
  SchemaRegistryClient(const SchemaRegistryClient&) = delete;
  SchemaRegistryClient& operator=(const SchemaRegistryClient&) = delete;

  // Registers an Avro schema (its JSON text) under `subject` (by convention
  // "<topic>-value"); returns its global id. Registering the same schema
  // again returns the same id. Errors: InvalidArgument (the registry rejects
  // the schema: its message is included), FailedPrecondition (incompatible
  // with the subject's earlier versions under its compatibility rule),
  // Unavailable (unreachable or failing).
  Result<int32_t> Register(const std::string& subject, const std::string& avro_schema_json);

  // The writer schema (JSON text) with this id; cached after the first
  // fetch. A schema without references is the registry's text as it is; one
  // with references (types defined under other subjects) has each
  // referenced type's definition inlined at its first use (see
  // InlineSchemaReferences), the referenced schemas fetched by subject and
  // version, so Avro C reads it alone. NotFound("unknown schema id N ...")
  // if the registry has no such id; InvalidArgument if its schema is none
  // kappa can read (another schemaType; a reference to a subject or version
  // the registry does not have, named; a reference cycle or references
  // nested deeper than kMaxSchemaReferenceDepth); Unavailable if it cannot
  // be reached or refuses.
  Result<std::string> SchemaById(int32_t id);

  // The schema registered under `subject` at `version`, with its own
  // references (not resolved); cached after the first fetch (a version is
  // immutable). NotFound naming the subject and version if the registry
  // has neither; InvalidArgument if it is not an Avro schema; Unavailable
  // as SchemaById.
  Result<RegisteredSchema> SchemaBySubjectVersion(const std::string& subject, int64_t version);

  // The URL as configured (for messages).
  const std::string& url() const { return options_.url; }
  // HTTP requests sent so far (for tests and metrics: a cache hit sends none).
  uint64_t requests() const;
  // Called (any thread) when a request starts being asked again because
  // the registry does not answer, and when it answers after that: a job
  // waiting on it printed nothing for up to 20 s, its last status line
  // reading "100.0% done, lag 0" (a bug bash). Replaces the previous one.
  void SetWaitNote(std::function<void(const std::string&)> note);

 private:
  struct Response {
    int status = 0;
    std::string body;
  };
  SchemaRegistryClient(SchemaRegistryOptions options, std::string origin, std::string base_path);
  // One request; Unavailable (naming the URL and the cause) when no HTTP
  // response came back.
  Result<Response> Send(const char* method, const std::string& path, const std::string& body);
  // Send, asked again while the registry cannot be reached or its answer is
  // transient: a server error or overload (HTTP 5xx, 429) and, when
  // `registering`, Apicurio's 409 "... already exists" for a version stored
  // concurrently. Registering and fetching are idempotent. For up to
  // options_.retry_for, 100 ms apart doubling up to 2 s; the last answer
  // (or failure, saying how long it was tried) is returned.
  Result<Response> SendAgainIfTransient(const char* method, const std::string& path, const std::string& body,
                                        bool registering);
  // A non-2xx response as a Status: the registry's own message and code.
  Status ErrorFrom(const Response& response, const std::string& what) const;
  // The schema in an answer to `what` (GET /schemas/ids/N or
  // /subjects/S/versions/V; a 404 of the API already handled), with its type
  // in *type: Unavailable if the registry refused or the answer is not this
  // API's.
  Result<RegisteredSchema> SchemaFrom(const Response& response, const std::string& what, std::string* type) const;

  const SchemaRegistryOptions options_;
  const std::string origin_;     // scheme://host:port
  const std::string base_path_;  // "" or "/apis/ccompat/v7" (no trailing '/')

  mutable std::mutex note_mu_;
  std::function<void(const std::string&)> wait_note_;
  // The last request that was asked again for all of retry_for without an
  // answer, and when it gave up (guarded by note_mu_): for a while after,
  // requests fail at once with its error. Each task of a job met the same
  // dead registry in turn, and a job's start waited 20 s per task (38 s
  // for two, a bug bash).
  std::chrono::steady_clock::time_point gave_up_at_{};
  Status gave_up_;
  mutable std::mutex http_mu_;  // guards client_ and requests_
  std::unique_ptr<httplib::Client> client_;
  uint64_t requests_ = 0;

  mutable std::shared_mutex cache_mu_;
  std::unordered_map<int32_t, std::string> schemas_by_id_;
  std::map<std::pair<std::string, std::string>, int32_t> ids_by_subject_schema_;
  std::map<std::pair<std::string, int64_t>, RegisteredSchema> schemas_by_subject_version_;
};

// `schema` (Avro JSON) with its references resolved by inlining, the way a
// Confluent deserializer makes referenced types known before parsing: each
// use of a referenced type's name (a JSON string in a type position: the
// schema itself, a field's type, a union branch, an array's items, a map's
// values), resolved as Java's Avro does (in the enclosing namespace, else
// the null one), is replaced by the referenced schema's definition at its
// first use, depth-first in document order; later uses stay names, which
// Avro resolves once defined. A reference is the one whose schema's
// top-level type has that full name (the reference's own name need not be
// it), else, failing that, the reference so named; each referenced schema
// (subject, version) is written once. A referenced schema is read at the
// top level, as Confluent's deserializer parses it: a named type there
// without a namespace is in the null namespace, written with
// "namespace":"" where Avro C would otherwise give it the enclosing one.
// The referenced schemas come from `lookup` (by subject and version) with
// their own references, resolved the same way. Every reference is fetched,
// used or not, as a Confluent deserializer does. Errors: InvalidArgument
// for a schema that is not JSON, a reference cycle, references nested
// deeper than kMaxSchemaReferenceDepth, or a null-namespace type used again
// inside a namespace (Avro C has no name for it there; named); whatever
// `lookup` returns otherwise. The result is minified JSON.
Result<std::string> InlineSchemaReferences(
    const std::string& schema, const std::vector<SchemaReference>& references,
    const std::function<Result<RegisteredSchema>(const SchemaReference&)>& lookup);

// JSON helpers for the registry's small documents (exposed for tests).
// The JSON string literal (with quotes) for `text`.
std::string JsonQuote(std::string_view text);
// The value of a top-level member of a JSON object: a string member's
// unescaped text, a number's digits. NotFound if absent, InvalidArgument if
// the document is not a JSON object or the member has another type.
Result<std::string> JsonMemberString(std::string_view json, std::string_view name);
Result<int64_t> JsonMemberInt(std::string_view json, std::string_view name);

}  // namespace kappa
