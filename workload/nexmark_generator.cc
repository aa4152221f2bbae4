#include "workload/nexmark_generator.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "schemas/nexmark_generated.h"

namespace kappa {
namespace {

// Beam's constants (GeneratorConfig, the *Generator classes).
constexpr int64_t kPersonIdLead = 10;
constexpr int64_t kAuctionIdLead = 10;
constexpr int64_t kHotAuctionRatio = 100;  // hot ids are multiples of this
constexpr int64_t kHotSellerRatio = 100;
constexpr int64_t kHotBidderRatio = 100;
constexpr uint64_t kNumCategories = 5;
constexpr uint64_t kChannels = 10000;

constexpr const char* kFirstNames[] = {"Peter", "Paul",  "Luke",  "John",    "Saul",  "Vicky",
                                       "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
constexpr const char* kLastNames[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                      "Walton", "Smith",  "Jones",   "Noris"};
constexpr const char* kStates[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
constexpr const char* kCities[] = {"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland",
                                   "Bend",    "Redmond",     "Seattle",       "Kent",  "Cheyenne"};
constexpr const char* kHotChannels[] = {"Google", "Facebook", "Baidu", "Apple"};

template <typename T, size_t N>
const T& Pick(Random& r, const T (&options)[N]) {
  return options[r.Uniform(N)];
}

int64_t NextPrice(Random& r) {
  return static_cast<int64_t>(std::llround(std::pow(10.0, r.NextDouble() * 6.0) * 100.0));
}

// Seeds of events and channels: splitmix64 in Random's constructor spreads
// neighbouring seeds apart.
uint64_t EventSeed(uint64_t seed, uint64_t event_id) { return seed * 0x9e3779b97f4a7c15ULL + event_id; }
uint64_t ChannelSeed(uint64_t seed, uint64_t channel) {
  return ~(seed * 0xc2b2ae3d27d4eb4fULL) + channel;
}

}  // namespace

const char* NexmarkEventTypeName(NexmarkEventType type) {
  switch (type) {
    case NexmarkEventType::kPerson: return "person";
    case NexmarkEventType::kAuction: return "auction";
    case NexmarkEventType::kBid: return "bid";
  }
  return "?";
}

NexmarkGenerator::NexmarkGenerator(const NexmarkOptions& options)
    : options_(options), fbb_(std::make_unique<flatbuffers::FlatBufferBuilder>(1024)) {
  // The four hot channels' URLs, fixed per seed.
  Random r(ChannelSeed(options_.seed, kChannels));
  for (auto& url : hot_urls_) {
    url = "https://www.nexmark.com/";
    NextString(r, 5, &s1_);
    NextString(r, 5, &s2_);
    NextString(r, 5, &s3_);
    url.append(s1_).append("/").append(s2_).append("/").append(s3_).append("/item.htm?query=1");
    std::replace(url.begin(), url.end(), ' ', '_');
  }
}

NexmarkGenerator::~NexmarkGenerator() = default;

NexmarkEventType NexmarkGenerator::TypeOf(uint64_t event_id) {
  const uint64_t rem = event_id % kNexmarkProportionDenominator;
  if (rem < kNexmarkPersonProportion) return NexmarkEventType::kPerson;
  if (rem < kNexmarkPersonProportion + kNexmarkAuctionProportion) return NexmarkEventType::kAuction;
  return NexmarkEventType::kBid;
}

int64_t NexmarkGenerator::LastBase0PersonId(uint64_t event_id) {
  const int64_t epoch = static_cast<int64_t>(event_id / kNexmarkProportionDenominator);
  int64_t offset = static_cast<int64_t>(event_id % kNexmarkProportionDenominator);
  if (offset >= static_cast<int64_t>(kNexmarkPersonProportion)) offset = kNexmarkPersonProportion - 1;
  return epoch * static_cast<int64_t>(kNexmarkPersonProportion) + offset;
}

int64_t NexmarkGenerator::LastBase0AuctionId(uint64_t event_id) {
  int64_t epoch = static_cast<int64_t>(event_id / kNexmarkProportionDenominator);
  int64_t offset = static_cast<int64_t>(event_id % kNexmarkProportionDenominator);
  constexpr auto kP = static_cast<int64_t>(kNexmarkPersonProportion);
  constexpr auto kA = static_cast<int64_t>(kNexmarkAuctionProportion);
  if (offset < kP) {
    // A person event: the last auction was in the previous epoch.
    --epoch;
    offset = kA - 1;
  } else if (offset >= kP + kA) {
    offset = kA - 1;  // a bid: the epoch's last auction
  } else {
    offset -= kP;
  }
  return epoch * kA + offset;
}

int64_t NexmarkGenerator::TimestampOf(uint64_t event_number) const {
  return options_.start_time_ms +
         static_cast<int64_t>(static_cast<double>(event_number) * 1000.0 / options_.events_per_second);
}

int64_t NexmarkGenerator::NextBase0PersonId(uint64_t event_id, Random& r) const {
  const int64_t people = LastBase0PersonId(event_id) + 1;
  const int64_t active = std::min<int64_t>(people, static_cast<int64_t>(options_.active_people));
  const int64_t n = static_cast<int64_t>(r.Uniform(static_cast<uint64_t>(active + kPersonIdLead)));
  return people - active + n;
}

int64_t NexmarkGenerator::NextBase0AuctionId(uint64_t event_id, Random& r) const {
  const int64_t max_auction = LastBase0AuctionId(event_id);
  const int64_t min_auction =
      std::max<int64_t>(max_auction - static_cast<int64_t>(options_.in_flight_auctions), 0);
  return min_auction +
         static_cast<int64_t>(r.Uniform(static_cast<uint64_t>(max_auction - min_auction + 1 + kAuctionIdLead)));
}

void NexmarkGenerator::NextString(Random& r, size_t max_length, std::string* out) const {
  out->clear();
  size_t len = 3 + r.Uniform(max_length > 3 ? max_length - 3 : 1);
  while (len-- > 0) out->push_back(r.Uniform(13) == 0 ? ' ' : static_cast<char>('a' + r.Uniform(26)));
  while (!out->empty() && out->back() == ' ') out->pop_back();
  size_t lead = 0;
  while (lead < out->size() && (*out)[lead] == ' ') ++lead;
  out->erase(0, lead);
}

void NexmarkGenerator::NextExactString(Random& r, size_t length, std::string* out) const {
  out->resize(length);
  for (auto& c : *out) c = static_cast<char>('a' + r.Uniform(26));
}

void NexmarkGenerator::NextExtra(Random& r, size_t current_size, size_t desired_average,
                                 std::string* out) const {
  if (current_size > desired_average) {
    out->clear();
    return;
  }
  const size_t average = desired_average - current_size;
  const auto delta = static_cast<size_t>(std::llround(static_cast<double>(average) * 0.2));
  const size_t min_size = average - delta;
  const size_t size = min_size + (delta == 0 ? 0 : r.Uniform(2 * delta));
  NextExactString(r, size, out);
}

void NexmarkGenerator::MakePerson(uint64_t id, Random& r, NexmarkRecord* out) {
  const int64_t person = LastBase0PersonId(id) + kNexmarkFirstPersonId;
  std::string& name = s1_;
  name.assign(Pick(r, kFirstNames)).append(" ").append(Pick(r, kLastNames));
  std::string& email = s2_;
  NextString(r, 7, &email);
  NextString(r, 5, &s3_);
  email.append("@").append(s3_).append(".com");
  std::string& card = s4_;
  card.clear();
  for (int i = 0; i < 4; ++i) {
    if (i) card.push_back(' ');
    const auto digits = std::to_string(10000 + r.Uniform(10000));  // 4 digits, zero padded
    card.append(digits, 1, 4);
  }
  const char* city = Pick(r, kCities);
  const char* state = Pick(r, kStates);
  const size_t size = 8 + name.size() + email.size() + card.size() + std::strlen(city) + std::strlen(state);
  NextExtra(r, size, options_.avg_person_bytes, &extra_);
  auto& fbb = *fbb_;
  auto body = schema::CreatePersonDirect(fbb, person, name.c_str(), email.c_str(), card.c_str(), city, state,
                                         out->event_time_ms, extra_.c_str());
  schema::FinishNexmarkEventBuffer(fbb, schema::CreateNexmarkEvent(fbb, schema::NexmarkBody::Person, body.Union()));
  out->type = NexmarkEventType::kPerson;
  out->id = person;
  out->key = std::to_string(person);
  ++stats_.persons;
}

void NexmarkGenerator::MakeAuction(uint64_t id, Random& r, NexmarkRecord* out) {
  const int64_t auction = LastBase0AuctionId(id) + kNexmarkFirstAuctionId;
  int64_t seller;
  if (r.Uniform(options_.hot_sellers_ratio) > 0) {
    seller = (LastBase0PersonId(id) / kHotSellerRatio) * kHotSellerRatio;
  } else {
    seller = NextBase0PersonId(id, r);
  }
  seller += kNexmarkFirstPersonId;
  const int64_t category = kNexmarkFirstCategoryId + static_cast<int64_t>(r.Uniform(kNumCategories));
  const int64_t initial_bid = NextPrice(r);
  // Auctions last up to twice the time in_flight_auctions auctions take to open.
  const uint64_t events_per_generation =
      options_.in_flight_auctions * kNexmarkProportionDenominator / kNexmarkAuctionProportion;
  const int64_t horizon = TimestampOf(id + events_per_generation) - TimestampOf(id);
  const int64_t expires =
      out->event_time_ms + 1 + static_cast<int64_t>(r.Uniform(static_cast<uint64_t>(std::max<int64_t>(horizon * 2, 1))));
  NextString(r, 20, &s1_);
  NextString(r, 100, &s2_);
  const int64_t reserve = initial_bid + NextPrice(r);
  const size_t size = 8 + s1_.size() + s2_.size() + 8 + 8 + 8 + 8 + 8;
  NextExtra(r, size, options_.avg_auction_bytes, &extra_);
  auto& fbb = *fbb_;
  auto body = schema::CreateAuctionDirect(fbb, auction, s1_.c_str(), s2_.c_str(), initial_bid, reserve,
                                          out->event_time_ms, expires, seller, category, extra_.c_str());
  schema::FinishNexmarkEventBuffer(fbb,
                                   schema::CreateNexmarkEvent(fbb, schema::NexmarkBody::Auction, body.Union()));
  out->type = NexmarkEventType::kAuction;
  out->id = auction;
  out->auction = auction;
  out->seller = seller;
  out->category = category;
  out->key = std::to_string(auction);
  ++stats_.auctions;
}

void NexmarkGenerator::MakeBid(uint64_t id, Random& r, NexmarkRecord* out) {
  int64_t auction;
  if (r.Uniform(options_.hot_auction_ratio) > 0) {
    auction = (LastBase0AuctionId(id) / kHotAuctionRatio) * kHotAuctionRatio;
  } else {
    auction = NextBase0AuctionId(id, r);
  }
  auction += kNexmarkFirstAuctionId;
  int64_t bidder;
  if (r.Uniform(options_.hot_bidders_ratio) > 0) {
    bidder = (LastBase0PersonId(id) / kHotBidderRatio) * kHotBidderRatio + 1;
  } else {
    bidder = NextBase0PersonId(id, r);
  }
  bidder += kNexmarkFirstPersonId;
  const int64_t price = NextPrice(r);
  std::string& channel = s1_;
  std::string& url = s2_;
  if (r.Uniform(10) > 0) {
    const uint64_t hot = r.Uniform(4);
    channel.assign(kHotChannels[hot]);
    url.assign(hot_urls_[hot]);
  } else {
    // One of kChannels cold channels; its URL is a function of its number.
    const uint64_t c = r.Uniform(kChannels);
    channel.assign("channel-").append(std::to_string(c));
    Random cr(ChannelSeed(options_.seed, c));
    url.assign("https://www.nexmark.com/");
    NextString(cr, 5, &s3_);
    url.append(s3_).append("/");
    NextString(cr, 5, &s3_);
    url.append(s3_).append("/");
    NextString(cr, 5, &s3_);
    url.append(s3_).append("/item.htm?query=1&channel_id=").append(std::to_string(c));
    std::replace(url.begin(), url.end(), ' ', '_');
  }
  NextExtra(r, 8 + 8 + 8 + 8, options_.avg_bid_bytes, &extra_);
  auto& fbb = *fbb_;
  auto body = schema::CreateBidDirect(fbb, auction, bidder, price, channel.c_str(), url.c_str(),
                                      out->event_time_ms, extra_.c_str());
  schema::FinishNexmarkEventBuffer(fbb, schema::CreateNexmarkEvent(fbb, schema::NexmarkBody::Bid, body.Union()));
  out->type = NexmarkEventType::kBid;
  out->auction = auction;
  out->bidder = bidder;
  out->price = price;
  out->key = std::to_string(auction);
  ++stats_.bids;
}

bool NexmarkGenerator::Next(NexmarkRecord* out) {
  if (next_ >= options_.count) return false;
  const uint64_t n = next_++;
  const uint64_t id = options_.first_event + n;
  out->event_number = id;
  out->event_time_ms = TimestampOf(id);
  out->id = out->auction = out->bidder = out->price = out->seller = out->category = 0;
  Random r(EventSeed(options_.seed, id));
  fbb_->Clear();
  switch (TypeOf(id)) {
    case NexmarkEventType::kPerson:
      MakePerson(id, r, out);
      break;
    case NexmarkEventType::kAuction:
      MakeAuction(id, r, out);
      break;
    case NexmarkEventType::kBid:
      MakeBid(id, r, out);
      break;
  }
  out->value.assign(reinterpret_cast<const char*>(fbb_->GetBufferPointer()), fbb_->GetSize());
  ++stats_.total;
  stats_.bytes += out->value.size();
  return true;
}

}  // namespace kappa
