// FlatBuffers with a user's own schema: records built with the generated C++
// of tests/formats/payment_test.fbs are decoded through reflection (the
// decoder never sees generated code) and must read what the generated
// accessors read; every load-time error names the field, the path element
// and what is there; bad buffers and absent fields fail as the DLQ expects.
#include "formats/flatbuffers_decoder.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <tuple>

#include <flatbuffers/reflection.h>

#include "payment_test_generated.h"

namespace kappa {
namespace {

namespace ev = acme::events;

FieldDecl F(std::string name, ValueType type, std::string path = "", bool optional = false,
            TimestampEncoding ts = TimestampEncoding::kEpochMillis) {
  FieldDecl f;
  f.name = std::move(name);
  f.type = type;
  f.path = std::move(path);
  f.optional = optional;
  f.timestamp = ts;
  return f;
}

RecordSchema Schema(std::vector<FieldDecl> fields) {
  RecordSchema s;
  for (auto& f : fields) EXPECT_TRUE(s.Add(std::move(f)).ok());
  return s;
}

// A finished buffer copied 8-byte aligned, as the task's arena holds it.
struct Payload {
  std::vector<uint64_t> words;
  uint32_t size = 0;
  explicit Payload(const flatbuffers::FlatBufferBuilder& fbb) : Payload(fbb.GetBufferPointer(), fbb.GetSize()) {}
  Payload(const uint8_t* data, size_t n) : words((n + 7) / 8 + 1), size(static_cast<uint32_t>(n)) {
    std::memcpy(words.data(), data, n);
  }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(words.data()); }
  RawRecord raw(const char* key = "k-1", int64_t ts = 1700000000123) const {
    RawRecord r;
    r.payload = data();
    r.size = size;
    r.key = reinterpret_cast<const uint8_t*>(key);
    r.key_size = key ? static_cast<uint32_t>(std::strlen(key)) : 0;
    r.timestamp_ms = ts;
    return r;
  }
};

Payload FullPayment() {
  flatbuffers::FlatBufferBuilder fbb;
  auto money = ev::CreateMoneyDirect(fbb, 12345, "EUR");
  auto owner = ev::CreateMoneyDirect(fbb, -9, "USD");
  auto merchant = ev::CreateMerchantDirect(fbb, "Corner Shop", "DE", owner);
  std::vector<flatbuffers::Offset<flatbuffers::String>> tags = {fbb.CreateString("a")};
  ev::Geo geo(52.5, 13.4);
  std::vector<flatbuffers::Offset<ev::Money>> items = {ev::CreateMoneyDirect(fbb, 1, "EUR"),
                                                       ev::CreateMoneyDirect(fbb, 2, "EUR")};
  auto card = ev::CreateCardDirect(fbb, "4242");
  auto p = ev::CreatePaymentDirect(fbb, "txn-1", "user-42", money, merchant, ev::Status::declined, -3, -300, 250,
                                   uint64_t{1} << 40, 2.25, 0.5f, true, 1700000000000, -1500,
                                   "2026-01-01T00:00:01.250Z", 77, &tags, &geo, &items, ev::Method::Card, card.Union());
  fbb.Finish(p, ev::PaymentIdentifier());
  return Payload(fbb);
}

std::unique_ptr<FlatBuffersDecoder> Load(const RecordSchema& s, const std::string& path = KAPPA_PAYMENT_FBS,
                                         const std::string& root = "") {
  auto d = FlatBuffersDecoder::Create(s, path, root);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? std::move(*d) : nullptr;
}

std::string LoadError(const RecordSchema& s, const std::string& path = KAPPA_PAYMENT_FBS, const std::string& root = "") {
  auto d = FlatBuffersDecoder::Create(s, path, root);
  EXPECT_FALSE(d.ok());
  return d.ok() ? "" : d.status().ToString();
}

RecordSchema AllFields() {
  return Schema({
      F("id", ValueType::kString),
      F("user", ValueType::kString),
      F("cents", ValueType::kInt64, "amount.cents"),
      F("cents_d", ValueType::kDouble, "amount.cents"),
      F("currency", ValueType::kString, "amount.currency"),
      F("merchant", ValueType::kString, "merchant.name"),
      F("owner_cents", ValueType::kInt64, "merchant.owner.cents"),
      F("status", ValueType::kString),
      F("status_n", ValueType::kInt64, "status"),
      F("count", ValueType::kInt64),
      F("small", ValueType::kInt64),
      F("tiny", ValueType::kInt64),
      F("big", ValueType::kInt64),
      F("score", ValueType::kDouble),
      F("ratio", ValueType::kDouble),
      F("flagged", ValueType::kBool),
      F("ts", ValueType::kTimestamp, "ts_ms"),
      F("ts_us", ValueType::kTimestamp, "ts_us", false, TimestampEncoding::kEpochMicros),
      F("created", ValueType::kTimestamp, "created", false, TimestampEncoding::kIso8601),
      F("refund", ValueType::kInt64),
      F("lat", ValueType::kDouble, "geo.lat"),
      F("lon", ValueType::kDouble, "geo.lon"),
      F("key", ValueType::kString, "kafka.key"),
      F("kts", ValueType::kTimestamp, "kafka.timestamp"),
  });
}

void ExpectFullPayment(const RecordSchema& s, FlatBuffersDecoder& d) {
  const Payload payload = FullPayment();
  const ev::Payment* g = ev::GetPayment(payload.data());  // the generated accessors: the truth
  std::vector<FieldValue> v(static_cast<size_t>(s.size()));
  DecodeError err;
  ASSERT_TRUE(d.Decode(payload.raw(), v.data(), &err)) << err.message;
  auto at = [&](const char* name) { return v[static_cast<size_t>(*s.Find(name))]; };
  for (const auto& f : v) EXPECT_TRUE(f.present);
  EXPECT_EQ(at("id").text(), g->id()->string_view());
  EXPECT_EQ(at("user").text(), g->user()->string_view());
  EXPECT_EQ(at("cents").i, g->amount()->cents());
  EXPECT_EQ(at("cents_d").d, static_cast<double>(g->amount()->cents()));
  EXPECT_EQ(at("currency").text(), "EUR");
  EXPECT_EQ(at("merchant").text(), g->merchant()->name()->string_view());
  EXPECT_EQ(at("owner_cents").i, g->merchant()->owner()->cents());
  EXPECT_EQ(at("status").text(), ev::EnumNameStatus(g->status()));
  EXPECT_EQ(at("status").text(), "declined");
  EXPECT_EQ(at("status_n").i, static_cast<int64_t>(g->status()));
  EXPECT_EQ(at("count").i, g->count());
  EXPECT_EQ(at("small").i, g->small());
  EXPECT_EQ(at("tiny").i, g->tiny());
  EXPECT_EQ(at("big").i, static_cast<int64_t>(g->big()));
  EXPECT_EQ(at("score").d, g->score());
  EXPECT_EQ(at("ratio").d, static_cast<double>(g->ratio()));
  EXPECT_EQ(at("flagged").i, 1);
  EXPECT_EQ(at("ts").i, g->ts_ms());
  EXPECT_EQ(at("ts_us").i, -2);  // -1500 µs is -1.5 ms: toward negative infinity
  EXPECT_EQ(at("created").i, 1767225601250);
  EXPECT_EQ(at("refund").i, *g->refund());
  EXPECT_EQ(at("lat").d, g->geo()->lat());
  EXPECT_EQ(at("lon").d, g->geo()->lon());
  EXPECT_EQ(at("key").text(), "k-1");
  EXPECT_EQ(at("kts").i, 1700000000123);
}

TEST(FlatBuffersDecoderTest, ReadsWhatTheGeneratedAccessorsRead) {
  const RecordSchema s = AllFields();
  auto d = Load(s);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->root_type(), "acme.events.Payment");
  ExpectFullPayment(s, *d);
}

TEST(FlatBuffersDecoderTest, BinarySchemaFromFlatcWorksToo) {
  const RecordSchema s = AllFields();
  auto d = Load(s, KAPPA_PAYMENT_BFBS);
  ASSERT_TRUE(d);
  ExpectFullPayment(s, *d);
}

TEST(FlatBuffersDecoderTest, AbsentScalarsReadTheSchemaDefault) {
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString("txn-2");
  ev::PaymentBuilder b(fbb);
  b.add_id(id);
  fbb.Finish(b.Finish(), ev::PaymentIdentifier());
  const Payload payload(fbb);
  const RecordSchema s = Schema({F("status", ValueType::kString), F("status_n", ValueType::kInt64, "status"),
                                 F("count", ValueType::kInt64), F("score", ValueType::kDouble),
                                 F("flagged", ValueType::kBool), F("big", ValueType::kInt64),
                                 F("refund", ValueType::kInt64, "", /*optional=*/true)});
  auto d = Load(s);
  ASSERT_TRUE(d);
  std::vector<FieldValue> v(static_cast<size_t>(s.size()));
  DecodeError err;
  ASSERT_TRUE(d->Decode(payload.raw(), v.data(), &err)) << err.message;
  EXPECT_TRUE(v[0].present);
  EXPECT_EQ(v[0].text(), "approved");
  EXPECT_EQ(v[1].i, 1);
  EXPECT_EQ(v[2].i, 7);
  EXPECT_EQ(v[3].d, 1.5);
  EXPECT_TRUE(v[4].present);
  EXPECT_EQ(v[4].i, 0);
  EXPECT_EQ(v[5].i, 0);
  // `refund: long = null` has no default: absent is absent.
  EXPECT_FALSE(v[6].present);

  // The same optional scalar declared required is a MissingField.
  const RecordSchema required = Schema({F("refund", ValueType::kInt64)});
  auto d2 = Load(required);
  ASSERT_TRUE(d2);
  EXPECT_FALSE(d2->Decode(payload.raw(), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(err.path, "refund");
}

TEST(FlatBuffersDecoderTest, AbsentStringsAndTablesAreMissingFieldsWithTheirPath) {
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString("txn-3");
  auto merchant = ev::CreateMerchantDirect(fbb, "Shop");  // no owner
  ev::PaymentBuilder b(fbb);
  b.add_id(id);
  b.add_merchant(merchant);
  fbb.Finish(b.Finish(), ev::PaymentIdentifier());
  const Payload payload(fbb);
  std::vector<FieldValue> v(4);
  DecodeError err;

  struct Case {
    FieldDecl decl;
  } cases[] = {{F("user", ValueType::kString)},
               {F("cents", ValueType::kInt64, "amount.cents")},
               {F("owner", ValueType::kInt64, "merchant.owner.cents")},
               {F("lat", ValueType::kDouble, "geo.lat")},
               {F("country", ValueType::kString, "merchant.country")}};
  for (const auto& c : cases) {
    const RecordSchema s = Schema({F("id", ValueType::kString), c.decl});
    auto d = Load(s);
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->Decode(payload.raw(), v.data(), &err)) << c.decl.path;
    EXPECT_EQ(err.kind, DecodeError::Kind::kMissingField) << c.decl.path;
    const std::string path = c.decl.path.empty() ? c.decl.name : c.decl.path;
    EXPECT_EQ(err.path, path);
    EXPECT_NE(err.message.find(path), std::string::npos) << err.message;

    FieldDecl opt = c.decl;
    opt.optional = true;
    const RecordSchema so = Schema({F("id", ValueType::kString), opt});
    auto dopt = Load(so);
    ASSERT_TRUE(dopt);
    ASSERT_TRUE(dopt->Decode(payload.raw(), v.data(), &err)) << err.message;
    EXPECT_TRUE(v[0].present);
    EXPECT_FALSE(v[1].present) << c.decl.path;
  }

  // A record without a Kafka key lacks kafka.key.
  const RecordSchema sk = Schema({F("key", ValueType::kString, "kafka.key")});
  auto dk = Load(sk);
  ASSERT_TRUE(dk);
  EXPECT_FALSE(dk->Decode(payload.raw(nullptr), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(err.path, "kafka.key");
}

TEST(FlatBuffersDecoderTest, BadBuffersAreUndecodable) {
  const RecordSchema s = Schema({F("id", ValueType::kString), F("user", ValueType::kString)});
  auto d = Load(s);
  ASSERT_TRUE(d);
  const Payload good = FullPayment();
  std::vector<FieldValue> v(2);
  DecodeError err;
  ASSERT_TRUE(d->Decode(good.raw(), v.data(), &err)) << err.message;

  auto expect_undecodable = [&](const Payload& p, const std::string& what) {
    DecodeError e;
    EXPECT_FALSE(d->Decode(p.raw(), v.data(), &e)) << what;
    EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << what;
    EXPECT_EQ(e.path, "") << what;
    EXPECT_FALSE(e.message.empty());
  };
  // Every truncation of a real record.
  for (uint32_t n = 0; n < good.size; ++n) expect_undecodable(Payload(good.data(), n), "truncated to " + std::to_string(n));
  // Garbage: JSON text, random bytes, all ones.
  const std::string json = R"({"id":"txn-1","user":"u"})";
  expect_undecodable(Payload(reinterpret_cast<const uint8_t*>(json.data()), json.size()), "json");
  std::vector<uint8_t> noise(200);
  uint32_t x = 12345;
  for (auto& b : noise) b = static_cast<uint8_t>((x = x * 1103515245 + 12345) >> 16);
  expect_undecodable(Payload(noise.data(), noise.size()), "noise");
  std::vector<uint8_t> ones(64, 0xff);
  expect_undecodable(Payload(ones.data(), ones.size()), "0xff");
  // Offsets pointing outside the buffer: corrupt the root offset.
  Payload corrupt = good;
  reinterpret_cast<uint32_t*>(corrupt.words.data())[0] = 0x7fffff00;
  expect_undecodable(corrupt, "root offset out of range");

  // A Payment without its (required) id is a MissingField `id`.
  flatbuffers::FlatBufferBuilder fbb;
  auto user = fbb.CreateString("u");
  const auto start = fbb.StartTable();
  fbb.AddOffset(ev::Payment::VT_USER, user);
  fbb.Finish(flatbuffers::Offset<ev::Payment>(fbb.EndTable(start)), ev::PaymentIdentifier());
  DecodeError e;
  EXPECT_FALSE(d->Decode(Payload(fbb).raw(), v.data(), &e));
  EXPECT_EQ(e.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(e.path, "id");
  // ... even when no declared field reads it.
  auto d_user = Load(Schema({F("user", ValueType::kString)}));
  ASSERT_TRUE(d_user);
  EXPECT_FALSE(d_user->Decode(Payload(fbb).raw(), v.data(), &e));
  EXPECT_EQ(e.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(e.path, "id");

  // Another schema's buffer (the file identifier differs).
  flatbuffers::FlatBufferBuilder other;
  auto id = other.CreateString("txn");
  ev::PaymentBuilder pb(other);
  pb.add_id(id);
  other.Finish(pb.Finish(), "XXXX");
  expect_undecodable(Payload(other), "file identifier");
}

// The verifier compiled from the schema at load must reject whatever the
// generated verifier of the same schema rejects: every byte of a record with
// nested tables, strings, a vector of tables and a union, corrupted. (Not
// FlatBuffers' reflection verifier: in 2.0.8 it reads out of bounds on some
// of these buffers, which AddressSanitizer reports.)
TEST(FlatBuffersDecoderTest, CompiledVerifierIsAsStrictAsTheGeneratedVerifier) {
  auto d = Load(Schema({F("id", ValueType::kString)}));
  ASSERT_TRUE(d);
  const Payload good = FullPayment();
  FieldValue v;
  DecodeError err;
  {
    flatbuffers::Verifier verifier(good.data(), good.size);
    ASSERT_TRUE(ev::VerifyPaymentBuffer(verifier));
  }
  ASSERT_TRUE(d->Decode(good.raw(), &v, &err)) << err.message;
  int rejected = 0;
  for (uint32_t i = 0; i < good.size; ++i) {
    for (const uint8_t value : {uint8_t{0}, uint8_t{0xff}, uint8_t{0x7f}, uint8_t{0x40}, uint8_t(good.data()[i] + 1)}) {
      Payload bad = good;
      reinterpret_cast<uint8_t*>(bad.words.data())[i] = value;
      flatbuffers::Verifier verifier(bad.data(), bad.size);
      const bool generated_ok = ev::VerifyPaymentBuffer(verifier);
      const bool ok = d->Decode(bad.raw(), &v, &err);
      if (!generated_ok) {
        EXPECT_FALSE(ok) << "byte " << i << " = " << int(value) << " passes, the generated verifier rejects it";
        if (!ok) {
          // A corrupted vtable entry can hide a required field: that is named.
          EXPECT_TRUE(err.kind == DecodeError::Kind::kUndecodable || err.kind == DecodeError::Kind::kMissingField)
              << err.message;
        }
      }
      rejected += !ok;
    }
  }
  EXPECT_GT(rejected, 0);
}

// Decode verifies a declared field of the root and reads it in one step: a
// read field whose vtable entry points past the buffer, or misaligns it, is
// a dead letter (kUndecodable), never a read out of bounds; a field declared
// twice reads the same; a record that lacks a declared field AND is corrupt
// elsewhere is kUndecodable (the corruption wins, as when verifying first).
TEST(FlatBuffersDecoderTest, ReadFieldsOutOfBoundsAreUndecodable) {
  const RecordSchema s = Schema({F("id", ValueType::kString), F("user", ValueType::kString),
                                 F("count", ValueType::kInt64), F("ts", ValueType::kTimestamp, "ts_ms"),
                                 F("score", ValueType::kDouble), F("status", ValueType::kString),
                                 F("status_again", ValueType::kString, "status")});
  auto d = Load(s);
  ASSERT_TRUE(d);
  const Payload good = FullPayment();
  std::vector<FieldValue> v(static_cast<size_t>(s.size()));
  DecodeError err;
  ASSERT_TRUE(d->Decode(good.raw(), v.data(), &err)) << err.message;
  EXPECT_EQ(v[0].text(), "txn-1");
  EXPECT_EQ(v[1].text(), "user-42");
  EXPECT_EQ(v[2].i, -3);
  EXPECT_EQ(v[3].i, 1700000000000);
  EXPECT_EQ(v[4].d, 2.25);
  EXPECT_EQ(v[5].text(), "declined");
  EXPECT_EQ(v[6].text(), "declined");

  // The vtable entry of a root field: buf + root - soffset + slot.
  auto vtable_entry = [](Payload& p, flatbuffers::voffset_t slot) {
    auto* buf = reinterpret_cast<uint8_t*>(p.words.data());
    const uint32_t root = flatbuffers::ReadScalar<uint32_t>(buf);
    return reinterpret_cast<uint16_t*>(buf + root - flatbuffers::ReadScalar<int32_t>(buf + root) + slot);
  };
  using P = ev::Payment;
  for (const auto slot : {P::VT_ID, P::VT_USER, P::VT_COUNT, P::VT_TS_MS, P::VT_SCORE, P::VT_STATUS}) {
    for (const bool misalign : {false, true}) {
      Payload bad = good;
      uint16_t* entry = vtable_entry(bad, slot);
      ASSERT_NE(*entry, 0) << slot;
      if (slot == P::VT_STATUS && misalign) continue;  // a byte is never misaligned
      *entry = misalign ? static_cast<uint16_t>(*entry + 1) : static_cast<uint16_t>(0xfff0);
      DecodeError e;
      EXPECT_FALSE(d->Decode(bad.raw(), v.data(), &e)) << "slot " << slot << (misalign ? " misaligned" : " past the end");
      EXPECT_EQ(e.kind, DecodeError::Kind::kUndecodable) << "slot " << slot << ": " << e.message;
    }
  }

  // No `user` (declared, not optional) and `count` (not declared) corrupt.
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString("txn-3");
  ev::PaymentBuilder b(fbb);
  b.add_id(id);
  b.add_count(5);
  fbb.Finish(b.Finish(), ev::PaymentIdentifier());
  auto d_ids = Load(Schema({F("id", ValueType::kString), F("user", ValueType::kString)}));
  ASSERT_TRUE(d_ids);
  Payload lacking(fbb);
  EXPECT_FALSE(d_ids->Decode(lacking.raw(), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(err.path, "user");
  *vtable_entry(lacking, P::VT_COUNT) = 0xfff0;
  EXPECT_FALSE(d_ids->Decode(lacking.raw(), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kUndecodable) << err.message;
}

TEST(FlatBuffersDecoderTest, RequiredFieldsMissingAnywhereNameTheirPath) {
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString("txn-5");
  const auto wstart = fbb.StartTable();  // a Wallet without its required provider
  const auto wallet = flatbuffers::Offset<ev::Wallet>(fbb.EndTable(wstart));
  ev::PaymentBuilder b(fbb);
  b.add_id(id);
  b.add_method_type(ev::Method::Wallet);
  b.add_method(wallet.Union());
  fbb.Finish(b.Finish(), ev::PaymentIdentifier());
  auto d = Load(Schema({F("id", ValueType::kString)}));
  ASSERT_TRUE(d);
  FieldValue v;
  DecodeError err;
  EXPECT_FALSE(d->Decode(Payload(fbb).raw(), &v, &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(err.path, "method.provider");
}

TEST(FlatBuffersDecoderTest, ValuesTheDeclaredTypeCannotHoldAreWrongType) {
  flatbuffers::FlatBufferBuilder fbb;
  auto id = fbb.CreateString("txn-4");
  auto created = fbb.CreateString("yesterday");
  ev::PaymentBuilder b(fbb);
  b.add_id(id);
  b.add_status(static_cast<ev::Status>(9));  // written by a newer schema
  b.add_big(~uint64_t{0});
  b.add_created(created);
  fbb.Finish(b.Finish(), ev::PaymentIdentifier());
  const Payload payload(fbb);
  std::vector<FieldValue> v(1);
  DecodeError err;
  const std::pair<FieldDecl, std::string> cases[] = {
      {F("status", ValueType::kString), "9"},
      {F("big", ValueType::kInt64), "18446744073709551615"},
      {F("created", ValueType::kTimestamp, "created", false, TimestampEncoding::kIso8601), "yesterday"},
  };
  for (const auto& [decl, shown] : cases) {
    auto d = Load(Schema({decl}));
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->Decode(payload.raw(), v.data(), &err)) << decl.path;
    EXPECT_EQ(err.kind, DecodeError::Kind::kWrongType) << decl.path;
    EXPECT_EQ(err.path, decl.path.empty() ? decl.name : decl.path);
    EXPECT_NE(err.message.find(shown), std::string::npos) << err.message;
  }
  // The enum's number is still readable as int64.
  auto d = Load(Schema({F("status", ValueType::kInt64)}));
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->Decode(payload.raw(), v.data(), &err));
  EXPECT_EQ(v[0].i, 9);
}

// Every load-time error names the field, the path element and what is there.
TEST(FlatBuffersDecoderTest, LoadErrorsSayWhatIsThere) {
  struct Case {
    FieldDecl decl;
    std::vector<std::string> says;
  };
  const Case cases[] = {
      {F("amount", ValueType::kInt64, "amont"),
       {"field `amount`", "acme.events.Payment has no field `amont`", "its fields: id, user, amount, merchant, status"}},
      {F("cents", ValueType::kInt64, "amount.centz"), {"acme.events.Money has no field `centz`", "cents, currency"}},
      {F("x", ValueType::kInt64, "count.x"), {"`acme.events.Payment.count` is an int, not a table", "`x`"}},
      {F("amount", ValueType::kInt64, "amount"), {"is a table acme.events.Money", "cents, currency"}},
      {F("tags", ValueType::kString), {"vector of string", "vectors and unions"}},
      {F("user", ValueType::kInt64), {"declared int64, but `acme.events.Payment.user` is a string"}},
      {F("status", ValueType::kDouble), {"enum acme.events.Status (byte)", "int64 (its value) or string (its name)"}},
      {F("flagged", ValueType::kInt64), {"declared int64", "is a bool"}},
      {F("count", ValueType::kBool), {"declared bool", "is an int"}},
      {F("score", ValueType::kTimestamp), {"declared timestamp", "is a double"}},
      {F("ts", ValueType::kTimestamp, "ts_ms", false, TimestampEncoding::kIso8601), {"ISO-8601", "is a long"}},
      {F("created", ValueType::kTimestamp), {"is a string", "iso8601"}},
      {F("lat", ValueType::kInt64, "geo.lat"), {"`acme.events.Payment.geo.lat` is a double"}},
      {F("geo", ValueType::kDouble, "geo.alt"), {"struct acme.events.Geo has no field `alt`", "lat, lon"}},
      {F("old", ValueType::kInt64), {"deprecated"}},
      {F("key", ValueType::kInt64, "kafka.key"), {"Kafka key", "declare it string"}},
      {F("kts", ValueType::kString, "kafka.timestamp"), {"Kafka timestamp", "timestamp or int64"}},
      {F("e", ValueType::kInt64, "amount..cents"), {"empty element"}},
  };
  for (const auto& c : cases) {
    const std::string error = LoadError(Schema({F("id", ValueType::kString), c.decl}));
    for (const auto& s : c.says) EXPECT_NE(error.find(s), std::string::npos) << "want `" << s << "` in: " << error;
  }
}

class FlatBuffersSchemaFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kappa-fbs-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(FlatBuffersSchemaFileTest, SchemaFileErrors) {
  const RecordSchema s = Schema({F("id", ValueType::kString)});
  EXPECT_NE(LoadError(s, (dir_ / "nope.fbs").string()).find("cannot read the FlatBuffers schema"), std::string::npos);

  const std::string bad = Write("bad.fbs", "table T { x: int; }\ntable U { y: nosuchtype; }\n");
  const std::string error = LoadError(s, bad);
  EXPECT_NE(error.find("does not compile"), std::string::npos) << error;
  EXPECT_NE(error.find("bad.fbs"), std::string::npos) << error;
  EXPECT_NE(error.find("nosuchtype"), std::string::npos) << error;

  std::string garbage(64, '\x5a');
  std::memcpy(garbage.data() + 4, "BFBS", 4);
  const std::string g = Write("garbage.bfbs", garbage);
  EXPECT_NE(LoadError(s, g).find("not a valid binary FlatBuffers schema"), std::string::npos);

  const std::string no_root = Write("noroot.fbs", "namespace n; table A { id: string; } table B { id: string; }\n");
  EXPECT_NE(LoadError(s, no_root).find("declares no root_type; name the table records are (root_type), one of: n.A, n.B"),
            std::string::npos)
      << LoadError(s, no_root);
  EXPECT_TRUE(FlatBuffersDecoder::Create(s, no_root, "B").ok());
  EXPECT_TRUE(FlatBuffersDecoder::Create(s, no_root, "n.A").ok());
  const std::string two_ns = Write("twons.fbs", "namespace p; table A { id: string; }\nnamespace q; table A { id: string; }\n");
  EXPECT_NE(LoadError(s, two_ns, "A").find("ambiguous"), std::string::npos);
}

// Defaults of absent fields as generated code reads them (a bug bash): a
// ulong default above INT64_MAX read 0 (reflection keeps defaults as int64)
// and a float default 0.1 read as the double 0.1, where a stored 0.1f reads
// 0.10000000149011612: count_distinct counted two values for one.
TEST_F(FlatBuffersSchemaFileTest, AbsentFieldsReadTheDefaultGeneratedCodeReads) {
  const std::string fbs = Write("defaults.fbs",
                                "table D { ts: long; big: ulong = 18446744073709551615; f: float = 0.1; "
                                "d: double = 0.1; }\nroot_type D;\n");
  auto build = [](bool with_f) {
    flatbuffers::FlatBufferBuilder fbb;
    const auto start = fbb.StartTable();
    fbb.AddElement<int64_t>(4, 1767225600000, 0);
    if (with_f) fbb.AddElement<float>(8, 0.1f, 0.0f);
    fbb.Finish(flatbuffers::Offset<void>(fbb.EndTable(start)));
    return Payload(fbb);
  };
  auto d = FlatBuffersDecoder::Create(
      Schema({F("big", ValueType::kDouble), F("f", ValueType::kDouble), F("d", ValueType::kDouble)}), fbs);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  std::vector<FieldValue> absent(3), stored(3);
  DecodeError err;
  ASSERT_TRUE((*d)->Decode(build(false).raw(), absent.data(), &err)) << err.message;
  ASSERT_TRUE((*d)->Decode(build(true).raw(), stored.data(), &err)) << err.message;
  EXPECT_EQ(absent[0].d, static_cast<double>(std::numeric_limits<uint64_t>::max()));
  EXPECT_EQ(absent[1].d, static_cast<double>(0.1f));
  EXPECT_EQ(absent[1].d, stored[1].d) << "one float, absent or stored";
  EXPECT_EQ(absent[2].d, 0.1) << "a double's default stays a double";
  // Declared int64, the absent ulong is beyond it, as a stored one is.
  auto as_int = FlatBuffersDecoder::Create(Schema({F("big", ValueType::kInt64)}), fbs);
  ASSERT_TRUE(as_int.ok()) << as_int.status().ToString();
  EXPECT_FALSE((*as_int)->Decode(build(false).raw(), absent.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kWrongType);
  EXPECT_NE(err.message.find("18446744073709551615"), std::string::npos) << err.message;
}

// A union member a newer schema appended (an allowed change) made every
// record holding it Undecodable ("truncated, corrupt, or of another
// schema"), though the old schema's generated verifier accepts it and no
// declared field reads the union (a bug bash). It is skipped as generated
// code skips it; a known member is still verified.
TEST_F(FlatBuffersSchemaFileTest, AUnionMemberANewerSchemaAddedIsSkipped) {
  const std::string fbs = Write("pets.fbs",
                                "table Cat { lives: int; }\ntable Dog { name: string; }\nunion Pet { Cat, Dog }\n"
                                "table P { amount: long; pet: Pet; }\nroot_type P;\n");
  auto d = FlatBuffersDecoder::Create(Schema({F("amount", ValueType::kInt64)}), fbs);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  // P{amount: 5, pet_type: type, pet: a table with one int field}.
  auto build = [](uint8_t type, bool corrupt_member) {
    flatbuffers::FlatBufferBuilder fbb;
    const auto member_start = fbb.StartTable();
    fbb.AddElement<int32_t>(4, 9, 0);
    const auto member = fbb.EndTable(member_start);
    const auto start = fbb.StartTable();
    fbb.AddElement<int64_t>(4, 5, 0);
    fbb.AddElement<uint8_t>(6, type, 0);
    fbb.AddOffset(8, flatbuffers::Offset<void>(member));
    fbb.Finish(flatbuffers::Offset<void>(fbb.EndTable(start)));
    std::vector<uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    if (corrupt_member) {
      // The member's vtable offset pointed far outside the buffer.
      const uint32_t root = flatbuffers::ReadScalar<uint32_t>(bytes.data());
      const uint8_t* table = bytes.data() + root;
      const uint8_t* vt = table - flatbuffers::ReadScalar<int32_t>(table);
      const uint16_t pet_off = flatbuffers::ReadScalar<uint16_t>(vt + 8);
      const size_t field = root + pet_off;
      const size_t member_pos = field + flatbuffers::ReadScalar<uint32_t>(bytes.data() + field);
      flatbuffers::WriteScalar<int32_t>(bytes.data() + member_pos, -100000);
    }
    return Payload(bytes.data(), bytes.size());
  };
  std::vector<FieldValue> v(1);
  DecodeError err;
  ASSERT_TRUE((*d)->Decode(build(3, false).raw(), v.data(), &err)) << "a member the schema lacks: " << err.message;
  EXPECT_EQ(v[0].i, 5);
  ASSERT_TRUE((*d)->Decode(build(1, false).raw(), v.data(), &err)) << err.message;
  EXPECT_FALSE((*d)->Decode(build(1, true).raw(), v.data(), &err)) << "a known member is verified";
  EXPECT_EQ(err.kind, DecodeError::Kind::kUndecodable);
}

// A string that is not UTF-8 (the FlatBuffers spec says strings are) was
// passed on, and a JSON row wrote its 0xFF as U+00FF: "x\xff" and "xÿ"
// became one `key` in two rows (a bug bash). It is a dead letter naming
// the field. And a bit_flags enum declared string, every combination of
// flags (and 0) dead-lettered "(a newer schema?)", is refused at load; a
// size-prefixed buffer says so.
TEST_F(FlatBuffersSchemaFileTest, AStringNotUtf8ABitFlagsEnumAndASizePrefixSayWhatTheyAre) {
  const std::string fbs = Write("text.fbs",
                                "enum Perm : ubyte (bit_flags) { Read, Write, Exec }\n"
                                "table Inner { name: string; }\n"
                                "table T { id: string; inner: Inner; perm: Perm; }\nroot_type T;\n");
  auto build = [](const std::string& id, const std::string& name) {
    flatbuffers::FlatBufferBuilder fbb;
    const auto n = fbb.CreateString(name);
    const auto inner_start = fbb.StartTable();
    fbb.AddOffset(4, n);
    const auto inner = fbb.EndTable(inner_start);
    const auto i = fbb.CreateString(id);
    const auto start = fbb.StartTable();
    fbb.AddOffset(4, i);
    fbb.AddOffset(6, flatbuffers::Offset<void>(inner));
    fbb.Finish(flatbuffers::Offset<void>(fbb.EndTable(start)));
    return Payload(fbb);
  };
  auto d = FlatBuffersDecoder::Create(Schema({F("id", ValueType::kString), F("name", ValueType::kString, "inner.name")}),
                                      fbs);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  std::vector<FieldValue> v(2);
  DecodeError err;
  const Payload valid = build("x\xc3\xbf", "caf\xc3\xa9");  // the values point into it
  ASSERT_TRUE((*d)->Decode(valid.raw(), v.data(), &err)) << err.message;
  EXPECT_EQ(v[0].text(), "x\xc3\xbf");
  for (const auto& [id, name, path, at] : {std::tuple<std::string, std::string, std::string, std::string>{
                                               "x\xff", "ok", "id", "byte 1 of 2"},
                                           {"ok", "caf\xc3", "inner.name", "byte 3 of 4"},
                                           {"\xe2\x82", "ok", "id", "byte 0 of 2"}}) {
    EXPECT_FALSE((*d)->Decode(build(id, name).raw(), v.data(), &err)) << path;
    EXPECT_EQ(err.kind, DecodeError::Kind::kWrongType) << err.message;
    EXPECT_EQ(err.path, path);
    EXPECT_NE(err.message.find("is not valid UTF-8 (a FlatBuffers string is UTF-8): " + at), std::string::npos)
        << err.message;
  }
  const std::string error = LoadError(Schema({F("perm", ValueType::kString)}), fbs);
  EXPECT_NE(error.find("a bit_flags enum's value is a set of flags, not one name: declare it int64"),
            std::string::npos)
      << error;
  EXPECT_TRUE(FlatBuffersDecoder::Create(Schema({F("perm", ValueType::kInt64)}), fbs).ok());
  // A size-prefixed buffer was blamed on its file identifier or called
  // corrupt: it says what it is.
  flatbuffers::FlatBufferBuilder fbb;
  const auto id = fbb.CreateString("t");
  const auto start = fbb.StartTable();
  fbb.AddOffset(4, id);
  fbb.FinishSizePrefixed(flatbuffers::Offset<void>(fbb.EndTable(start)));
  EXPECT_FALSE((*d)->Decode(Payload(fbb).raw(), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kUndecodable);
  EXPECT_NE(err.message.find("a size-prefixed buffer"), std::string::npos) << err.message;
}

TEST(FlatBuffersDecoderTest, RootTypeCanBeNamed) {
  const RecordSchema s = Schema({F("x", ValueType::kInt64)});
  auto other = FlatBuffersDecoder::Create(s, KAPPA_PAYMENT_FBS, "Other");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ((*other)->root_type(), "acme.events.Other");
  // Records of a non-root table carry no file identifier to check.
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(ev::CreateOther(fbb, 5));
  const Payload payload(fbb);
  FieldValue v;
  DecodeError err;
  ASSERT_TRUE((*other)->Decode(payload.raw(), &v, &err)) << err.message;
  EXPECT_EQ(v.i, 5);

  EXPECT_NE(LoadError(s, KAPPA_PAYMENT_FBS, "Nope").find("has no table `Nope`; its tables: "), std::string::npos);
  EXPECT_NE(LoadError(s, KAPPA_PAYMENT_FBS, "Geo").find("is a struct"), std::string::npos);
}

// A schema the compiled verifier does not cover (a vector of unions) is
// verified by FlatBuffers' reflection verifier instead.
TEST_F(FlatBuffersSchemaFileTest, VectorsOfUnionsAreRefusedAtLoad) {
  // FlatBuffers 2.0.8's reflection verifier, the only one that could check
  // them, reads out of bounds on corrupt records: refused, not risked.
  const std::string fbs = Write("vu.fbs", "table A { s: string; }\nunion U { A }\n"
                                          "table R { x: int; name: string (required); us: [U]; }\nroot_type R;\n");
  auto d = FlatBuffersDecoder::Create(Schema({F("x", ValueType::kInt64)}), fbs);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("vector of unions"), std::string::npos) << d.status().ToString();
}

TEST_F(FlatBuffersSchemaFileTest, IncludesAreFoundNextToTheSchema) {
  Write("common.fbs", "namespace c; table Money { cents: long; }\n");
  const std::string main = Write("main.fbs", "include \"common.fbs\";\nnamespace m; table E { amount: c.Money; }\nroot_type E;\n");
  const RecordSchema s = Schema({F("cents", ValueType::kInt64, "amount.cents")});
  auto d = FlatBuffersDecoder::Create(s, main);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  flatbuffers::FlatBufferBuilder fbb;
  const auto money_start = fbb.StartTable();
  fbb.AddElement<int64_t>(4, 99, 0);
  const auto money = fbb.EndTable(money_start);
  const auto e_start = fbb.StartTable();
  fbb.AddOffset(4, flatbuffers::Offset<void>(money));
  fbb.Finish(flatbuffers::Offset<void>(fbb.EndTable(e_start)));
  const Payload payload(fbb);
  FieldValue v;
  DecodeError err;
  ASSERT_TRUE((*d)->Decode(payload.raw(), &v, &err)) << err.message;
  EXPECT_EQ(v.i, 99);
}

// A table of scalars and strings in the root (`amount: Money`) is verified,
// and its declared fields read, in the same pass as the root's fields: the
// values, an absent field's default, an absent table, a missing required
// field named with its path, and a corrupt vtable entry in the nested table.
TEST_F(FlatBuffersSchemaFileTest, FieldsOfANestedTableReadAsTheGeneralPathReadsThem) {
  const std::string fbs = Write("nested.fbs",
                                "table Money { cents: long; code: string (required); at_us: long; }\n"
                                "table E { id: string; amount: Money; }\nroot_type E;\n");
  auto schema = [](bool optional) {
    return Schema({F("id", ValueType::kString), F("cents", ValueType::kInt64, "amount.cents", optional),
                   F("code", ValueType::kString, "amount.code", optional),
                   F("at", ValueType::kTimestamp, "amount.at_us", optional, TimestampEncoding::kEpochMicros)});
  };
  auto d = FlatBuffersDecoder::Create(schema(false), fbs);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  auto dopt = FlatBuffersDecoder::Create(schema(true), fbs);
  ASSERT_TRUE(dopt.ok()) << dopt.status().ToString();
  // E{id: "t", amount: Money{cents?, code?, at_us: -1500}}, or no amount.
  auto build = [](bool amount, bool cents, bool code) {
    flatbuffers::FlatBufferBuilder fbb;
    const auto id = fbb.CreateString("t");
    const auto c = fbb.CreateString("EUR");
    flatbuffers::uoffset_t money = 0;
    if (amount) {
      const auto start = fbb.StartTable();
      if (cents) fbb.AddElement<int64_t>(4, 12345, 0);
      if (code) fbb.AddOffset(6, c);
      fbb.AddElement<int64_t>(8, -1500, 0);
      money = fbb.EndTable(start);
    }
    const auto start = fbb.StartTable();
    fbb.AddOffset(4, id);
    if (amount) fbb.AddOffset(6, flatbuffers::Offset<void>(money));
    fbb.Finish(flatbuffers::Offset<void>(fbb.EndTable(start)));
    return Payload(fbb);
  };
  std::vector<FieldValue> v(4);
  DecodeError err;
  const Payload full = build(true, true, true);
  ASSERT_TRUE((*d)->Decode(full.raw(), v.data(), &err)) << err.message;
  EXPECT_EQ(v[0].text(), "t");
  EXPECT_EQ(v[1].i, 12345);
  EXPECT_EQ(v[2].text(), "EUR");
  EXPECT_EQ(v[3].i, -2);  // -1500 µs is -1.5 ms: toward negative infinity
  for (const auto& f : v) EXPECT_TRUE(f.present);

  ASSERT_TRUE((*d)->Decode(build(true, false, true).raw(), v.data(), &err)) << err.message;
  EXPECT_TRUE(v[1].present);
  EXPECT_EQ(v[1].i, 0);  // the schema's default

  EXPECT_FALSE((*d)->Decode(build(true, true, false).raw(), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(err.path, "amount.code");

  EXPECT_FALSE((*d)->Decode(build(false, false, false).raw(), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kMissingField);
  EXPECT_EQ(err.path, "amount.cents");
  ASSERT_TRUE((*dopt)->Decode(build(false, false, false).raw(), v.data(), &err)) << err.message;
  EXPECT_TRUE(v[0].present);
  EXPECT_FALSE(v[1].present);
  EXPECT_FALSE(v[2].present);
  EXPECT_FALSE(v[3].present);

  // Money's vtable entry of `cents` (slot 4) pointing past the buffer.
  Payload bad = full;
  auto* buf = reinterpret_cast<uint8_t*>(bad.words.data());
  const uint32_t root = flatbuffers::ReadScalar<uint32_t>(buf);
  const uint8_t* root_vt = buf + root - flatbuffers::ReadScalar<int32_t>(buf + root);
  const uint32_t amount_at = root + flatbuffers::ReadScalar<uint16_t>(root_vt + 6);
  const uint32_t money = amount_at + flatbuffers::ReadScalar<uint32_t>(buf + amount_at);
  auto* entry = reinterpret_cast<uint16_t*>(buf + money - flatbuffers::ReadScalar<int32_t>(buf + money) + 4);
  ASSERT_NE(*entry, 0);
  *entry = 0xfff0;
  EXPECT_FALSE((*d)->Decode(bad.raw(), v.data(), &err));
  EXPECT_EQ(err.kind, DecodeError::Kind::kUndecodable) << err.message;
}

// `schema: /dev/zero` was read until memory ran out (or for ever), and the
// out-of-memory message blamed the job's state (a bug bash). A schema that
// is no regular file, or is huge, is refused at once.
TEST(FlatBuffersDecoderTest, ASchemaThatIsNoRegularFileIsRefusedAtOnce) {
  const RecordSchema s = Schema({F("id", ValueType::kString)});
  for (const char* path : {"/dev/zero", "/dev/urandom", "/tmp"}) {
    const std::string err = LoadError(s, path);
    EXPECT_NE(err.find("is not a regular file"), std::string::npos) << path << ": " << err;
    auto digest = FlatBuffersSchemaDigest(path);
    EXPECT_FALSE(digest.ok()) << path;
  }
  const std::string big = ::testing::TempDir() + "/big_schema_" + std::to_string(::getpid()) + ".fbs";
  {
    std::ofstream out(big, std::ios::binary);
    out << std::string((16 << 20) + 1, ' ');
  }
  const std::string err = LoadError(s, big);
  EXPECT_NE(err.find("is over 16 MiB"), std::string::npos) << err;
  std::remove(big.c_str());
}

}  // namespace
}  // namespace kappa
