#include "workload/transaction_generator.h"

#include <flatbuffers/flatbuffers.h>

#include <cstdio>

#include "schemas/transaction_generated.h"

namespace kappa {
namespace {
constexpr size_t kRecentWindow = 256;
const char* const kCurrencies[] = {"USD", "EUR", "GBP", "JPY"};
}  // namespace

const char* RecordKindName(RecordKind kind) {
  switch (kind) {
    case RecordKind::kValid: return "valid";
    case RecordKind::kDuplicate: return "duplicate";
    case RecordKind::kGarbage: return "garbage";
    case RecordKind::kTruncated: return "truncated";
    case RecordKind::kMissingField: return "missing_field";
  }
  return "?";
}

TransactionGenerator::TransactionGenerator(const GeneratorOptions& options)
    : options_(options), random_(options.seed), zipf_(options.users == 0 ? 1 : options.users, options.zipf_exponent) {}

std::string TransactionGenerator::UserId(uint64_t rank) const {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "u%07llu", static_cast<unsigned long long>(rank));
  return buf;
}

bool TransactionGenerator::Next(GeneratedRecord* out) {
  if (stats_.total >= options_.count) return false;
  ++stats_.total;
  const double draw = random_.NextDouble();
  if (draw < options_.malformed_fraction) {
    MakeMalformed(out);
  } else if (draw < options_.malformed_fraction + options_.duplicate_fraction && !recent_.empty()) {
    *out = recent_[random_.Uniform(recent_.size())];
    out->kind = RecordKind::kDuplicate;
    out->out_of_order = false;
    ++stats_.duplicates;
  } else {
    MakeValid(out);
  }
  return true;
}

void TransactionGenerator::MakeValid(GeneratedRecord* out) {
  const uint64_t seq = next_txn_++;
  out->kind = RecordKind::kValid;
  out->user_id = UserId(zipf_.Sample(random_));
  out->key = out->user_id;
  char txn[24];
  std::snprintf(txn, sizeof(txn), "t%011llu", static_cast<unsigned long long>(seq));
  out->txn_id = txn;
  const double s = random_.NextDouble();
  out->status = static_cast<int8_t>(s < 0.85 ? schema::TxnStatus::Approved
                                    : s < 0.95 ? schema::TxnStatus::Cancelled
                                               : schema::TxnStatus::Refunded);
  const double a = random_.NextDouble();
  out->amount_cents = 100 + static_cast<int64_t>(a * a * a * 200000.0);
  out->currency = kCurrencies[random_.Uniform(4)];
  // Event time advances with the stream position, so duplicates and
  // malformed records also move the clock.
  const double step_ms = options_.events_per_second > 0 ? 1000.0 / options_.events_per_second : 0;
  out->event_time_ms = options_.start_time_ms + static_cast<int64_t>((stats_.total - 1) * step_ms);
  out->out_of_order = false;
  if (options_.out_of_order_fraction > 0 && random_.Bernoulli(options_.out_of_order_fraction) &&
      options_.max_delay_ms > 0) {
    out->event_time_ms -= 1 + static_cast<int64_t>(random_.Uniform(options_.max_delay_ms));
    out->out_of_order = true;
    ++stats_.out_of_order;
  }
  flatbuffers::FlatBufferBuilder fbb(128);
  auto root = schema::CreateTransactionDirect(fbb, out->txn_id.c_str(), out->user_id.c_str(),
                                              static_cast<schema::TxnStatus>(out->status),
                                              out->amount_cents, out->currency.c_str(),
                                              out->event_time_ms);
  schema::FinishTransactionBuffer(fbb, root);
  out->value.assign(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  ++stats_.valid;
  recent_.push_back(*out);
  if (recent_.size() > kRecentWindow) recent_.pop_front();
}

void TransactionGenerator::MakeMalformed(GeneratedRecord* out) {
  out->user_id.clear();
  out->txn_id.clear();
  out->currency.clear();
  out->status = 0;
  out->amount_cents = 0;
  out->event_time_ms = 0;
  out->out_of_order = false;
  out->key = UserId(zipf_.Sample(random_));
  const uint64_t kind = random_.Uniform(3);
  if (kind == 0) {
    out->kind = RecordKind::kGarbage;
    out->value.resize(8 + random_.Uniform(120));
    for (auto& c : out->value) c = static_cast<char>(random_.Next() & 0xff);
    out->value[4] = 'X';  // never the Transaction file identifier
    ++stats_.garbage;
  } else if (kind == 1) {
    // A valid record cut short: what a producer bug or a torn write looks like.
    GeneratedRecord full;
    const GeneratorStats saved = stats_;
    MakeValid(&full);
    recent_.pop_back();
    stats_ = saved;
    const size_t keep = 1 + random_.Uniform(full.value.size() - 1);
    out->value = full.value.substr(0, keep);
    // Cutting only trailing padding could leave a verifiable buffer; cut more.
    while (out->value.size() > 1) {
      flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(out->value.data()), out->value.size());
      if (!schema::VerifyTransactionBuffer(v)) break;
      out->value.resize(out->value.size() / 2);
    }
    out->key = full.key;
    out->kind = RecordKind::kTruncated;
    ++stats_.truncated;
  } else {
    // Structurally valid, but one required string is absent. Built with the
    // raw table API because the generated builder refuses to finish it.
    out->kind = RecordKind::kMissingField;
    const uint64_t missing = random_.Uniform(3);  // 0 txn_id, 1 user_id, 2 currency
    flatbuffers::FlatBufferBuilder fbb(128);
    char txn[24];
    std::snprintf(txn, sizeof(txn), "t%011llu", static_cast<unsigned long long>(next_txn_++));
    auto txn_off = fbb.CreateString(txn);
    auto user_off = fbb.CreateString(out->key);
    auto cur_off = fbb.CreateString("USD");
    const double step_ms = options_.events_per_second > 0 ? 1000.0 / options_.events_per_second : 0;
    const int64_t t = options_.start_time_ms + static_cast<int64_t>((stats_.total - 1) * step_ms);
    auto start = fbb.StartTable();
    fbb.AddElement<int64_t>(schema::Transaction::VT_EVENT_TIME_MS, t, 0);
    fbb.AddElement<int64_t>(schema::Transaction::VT_AMOUNT_CENTS, 1234, 0);
    if (missing != 2) fbb.AddOffset(schema::Transaction::VT_CURRENCY, cur_off);
    if (missing != 1) fbb.AddOffset(schema::Transaction::VT_USER_ID, user_off);
    if (missing != 0) fbb.AddOffset(schema::Transaction::VT_TXN_ID, txn_off);
    auto table = flatbuffers::Offset<schema::Transaction>(fbb.EndTable(start));
    fbb.Finish(table, schema::TransactionIdentifier());
    out->value.assign(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
    ++stats_.missing_field;
  }
}

}  // namespace kappa
