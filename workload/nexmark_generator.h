// NexmarkGenerator: the Nexmark benchmark's event stream (people, auctions,
// bids of an online auction), following the Beam/Flink NexmarkGenerator:
// event n is a person, an auction or a bid by n mod 50 (1 : 3 : 46); ids
// follow from the event number (auction and person ids start at 1000);
// bids go to a hot auction (the newest multiple of 100) with probability
// 1 - 1/hot_auction_ratio, else to one of the last `in_flight_auctions`
// auctions (or slightly ahead); bidders and sellers likewise with their hot
// ratios among the last `active_people`; prices are 10^U(0,6) dollars in
// cents; 90% of bids come from four hot channels; `extra` pads each event
// to the standard average sizes (person 200, auction 500, bid 100 bytes).
// Event time advances evenly: event n has date_time start_time_ms + n *
// 1000 / events_per_second (n counts from 0; first_event starts later).
//
// Each event is a pure function of (seed, event number): its randomness is a
// kappa::Random seeded from both, so the same options give the same bytes on
// every machine and any range of events can be made alone. Records are
// FlatBuffers kappa.schema.NexmarkEvent ("KNX1", schemas/nexmark.fbs) keyed
// like Kafka would partition them: bids and auctions by auction id, persons by
// person id, in decimal. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/random.h"

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace kappa {

struct NexmarkOptions {
  uint64_t count = 1000000;             // events in total
  uint64_t seed = 1;
  uint64_t first_event = 0;             // event number of the first event made
  double events_per_second = 10000.0;   // of event time (Beam's default first rate)
  int64_t start_time_ms = 1767225600000;  // 2026-01-01T00:00:00Z
  uint64_t active_people = 1000;
  uint64_t in_flight_auctions = 100;
  uint64_t hot_auction_ratio = 2;
  uint64_t hot_bidders_ratio = 4;
  uint64_t hot_sellers_ratio = 4;
  uint64_t avg_person_bytes = 200;
  uint64_t avg_auction_bytes = 500;
  uint64_t avg_bid_bytes = 100;
};

enum class NexmarkEventType : uint8_t { kPerson = 1, kAuction = 2, kBid = 3 };  // = schema::NexmarkBody
const char* NexmarkEventTypeName(NexmarkEventType type);

// The standard proportions: of every 50 events, 1 person, 3 auctions, 46 bids.
constexpr uint64_t kNexmarkPersonProportion = 1;
constexpr uint64_t kNexmarkAuctionProportion = 3;
constexpr uint64_t kNexmarkBidProportion = 46;
constexpr uint64_t kNexmarkProportionDenominator = 50;
constexpr int64_t kNexmarkFirstPersonId = 1000;
constexpr int64_t kNexmarkFirstAuctionId = 1000;
constexpr int64_t kNexmarkFirstCategoryId = 10;

struct NexmarkRecord {
  uint64_t event_number = 0;
  NexmarkEventType type = NexmarkEventType::kBid;
  std::string key;    // the Kafka key: auction id (bids, auctions) or person id, decimal
  std::string value;  // the FlatBuffers NexmarkEvent
  int64_t event_time_ms = 0;  // date_time
  // The main numeric fields, for tests and references (0 where the type has none).
  int64_t id = 0;       // person.id or auction.id
  int64_t auction = 0;  // bid.auction or auction.id
  int64_t bidder = 0;
  int64_t price = 0;
  int64_t seller = 0;
  int64_t category = 0;
};

struct NexmarkStats {
  uint64_t total = 0, persons = 0, auctions = 0, bids = 0;
  uint64_t bytes = 0;  // of values
};

class NexmarkGenerator {
 public:
  explicit NexmarkGenerator(const NexmarkOptions& options);
  ~NexmarkGenerator();
  // Fills *out with the next event; false once `count` events were made.
  bool Next(NexmarkRecord* out);
  const NexmarkStats& stats() const { return stats_; }
  const NexmarkOptions& options() const { return options_; }

  // The model, exposed for tests (event ids are event numbers here).
  static NexmarkEventType TypeOf(uint64_t event_id);
  static int64_t LastBase0PersonId(uint64_t event_id);
  static int64_t LastBase0AuctionId(uint64_t event_id);
  int64_t TimestampOf(uint64_t event_number) const;

 private:
  void MakePerson(uint64_t id, Random& r, NexmarkRecord* out);
  void MakeAuction(uint64_t id, Random& r, NexmarkRecord* out);
  void MakeBid(uint64_t id, Random& r, NexmarkRecord* out);
  int64_t NextBase0PersonId(uint64_t event_id, Random& r) const;
  int64_t NextBase0AuctionId(uint64_t event_id, Random& r) const;
  // Beam's nextString: 3..max_length-1 letters with some spaces, trimmed.
  void NextString(Random& r, size_t max_length, std::string* out) const;
  void NextExactString(Random& r, size_t length, std::string* out) const;
  void NextExtra(Random& r, size_t current_size, size_t desired_average, std::string* out) const;

  NexmarkOptions options_;
  NexmarkStats stats_;
  uint64_t next_ = 0;
  std::unique_ptr<flatbuffers::FlatBufferBuilder> fbb_;
  std::string hot_urls_[4];
  // Reused per event (no allocation once warm).
  std::string s1_, s2_, s3_, s4_, s5_, extra_;
};

}  // namespace kappa
