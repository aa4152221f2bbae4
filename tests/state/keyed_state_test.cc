// KeyedState on its own: a randomized run against a plain std::map model
// (values, dirty set, erasures, the checkpoint capture), long keys that live
// on the heap, and the pointer-stability promise operators rely on.
#include "state/keyed_state.h"
#include "tests/state/state_test_access.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

namespace kappa {
namespace {

struct Value {
  int64_t a;
  int32_t b;
};

std::string Key(std::mt19937_64& rng) {
  // Mostly short keys (inline), some longer than the inline buffer.
  const uint64_t n = rng() % 300;
  std::string k = "k" + std::to_string(n);
  if (n % 7 == 0) k.append(40, static_cast<char>('a' + n % 26));
  return k;
}

struct Model {
  std::map<std::string, Value> values;
  std::set<std::string> dirty;
  // Since the last capture: erased keys the store holds (a key born and
  // erased between two captures never reached it and needs no deletion).
  std::set<std::string> erased;
};

void ExpectSame(const KeyedState<Value>& t, const Model& m) {
  ASSERT_EQ(t.size(), m.values.size());
  std::map<std::string, Value> seen;
  t.ForEach([&](std::string_view k, const Value& v) { seen.emplace(std::string(k), v); });
  ASSERT_EQ(seen.size(), m.values.size());
  for (const auto& [k, v] : m.values) {
    const Value* got = t.Find(k);
    ASSERT_NE(got, nullptr) << k;
    EXPECT_EQ(got->a, v.a) << k;
    EXPECT_EQ(got->b, v.b) << k;
    EXPECT_EQ(seen.at(k).a, v.a) << k;
  }
  EXPECT_EQ(StateRegistryTestAccess::DirtyCount(t), m.dirty.size());
}

// Applies a capture the way the backend does (deletions, then puts).
void Apply(const TableChanges& c, std::map<std::string, Value>* stored) {
  c.ForEachErased([&](std::string_view k) { stored->erase(std::string(k)); });
  c.ForEachPut([&](std::string_view k, std::string_view v) {
    ASSERT_EQ(v.size(), sizeof(Value));
    Value val;
    std::memcpy(&val, v.data(), sizeof(val));
    (*stored)[std::string(k)] = val;
  });
}

TEST(KeyedStateTest, MatchesAMapModelThroughUpsertsErasuresAndCaptures) {
  std::mt19937_64 rng(7);
  KeyedState<Value> t("t");
  Model m;
  std::map<std::string, Value> stored;  // what the checkpoints wrote
  TableChanges changes;
  for (int step = 0; step < 200000; ++step) {
    const uint64_t op = rng() % 100;
    const std::string k = Key(rng);
    if (op < 60) {
      bool inserted = false;
      Value& v = t.Upsert(k, Value{0, 1}, &inserted);
      EXPECT_EQ(inserted, !m.values.contains(k));
      v.a += static_cast<int64_t>(op);
      auto& mv = m.values.try_emplace(k, Value{0, 1}).first->second;
      mv.a += static_cast<int64_t>(op);
      m.dirty.insert(k);
    } else if (op < 80) {
      const Value* v = t.Find(k);
      ASSERT_EQ(v != nullptr, m.values.contains(k));
    } else if (op < 95) {
      if (m.values.erase(k) && stored.contains(k)) m.erased.insert(k);
      m.dirty.erase(k);
      t.Erase(k);
    } else if (op < 97) {
      const int64_t limit = static_cast<int64_t>(rng() % 200);
      size_t expect = 0;
      for (auto it = m.values.begin(); it != m.values.end();) {
        if (it->second.a < limit) {
          if (stored.contains(it->first)) m.erased.insert(it->first);
          m.dirty.erase(it->first);
          it = m.values.erase(it);
          ++expect;
        } else {
          ++it;
        }
      }
      EXPECT_EQ(t.EraseIf([&](std::string_view, const Value& v) { return v.a < limit; }), expect);
    } else {
      // A checkpoint: the capture holds exactly the dirty entries and erasures.
      std::set<std::string> erased;
      StateRegistryTestAccess::ForEachErased(t, [&](std::string_view e) { erased.insert(std::string(e)); });
      EXPECT_EQ(erased, m.erased);
      StateRegistryTestAccess::TakeChanges(t, &changes);
      EXPECT_EQ(changes.put_count, m.dirty.size());
      Apply(changes, &stored);
      EXPECT_EQ(StateRegistryTestAccess::DirtyCount(t), 0u);
      m.dirty.clear();
      m.erased.clear();
      ASSERT_EQ(stored.size(), m.values.size());
      for (const auto& [sk, sv] : stored) ASSERT_EQ(m.values.at(sk).a, sv.a) << sk;
    }
    if (step % 20000 == 0) ExpectSame(t, m);
  }
  ExpectSame(t, m);
}

TEST(KeyedStateTest, ValuesAndKeysStayPutUntilTheirEntryIsErased) {
  KeyedState<Value> t("t");
  Value* first = &t.Upsert("first", Value{1, 1});
  std::string_view first_key;
  t.ForEach([&](std::string_view k, const Value&) { first_key = k; });
  const std::string long_key(100, 'x');
  Value* second = &t.Upsert(long_key, Value{2, 2});
  for (int i = 0; i < 100000; ++i) t.Upsert("k" + std::to_string(i), Value{i, i});
  for (int i = 0; i < 100000; i += 2) t.Erase("k" + std::to_string(i));
  EXPECT_EQ(first, t.Find("first"));
  EXPECT_EQ(second, t.Find(long_key));
  EXPECT_EQ(first_key, "first");
  EXPECT_EQ(t.size(), 2u + 50000u);
}

TEST(KeyedStateTest, EraseThenReinsertRecordsTheDeletionAndTheNewValue) {
  KeyedState<Value> t("t");
  t.Upsert("a", Value{1, 1});
  StateRegistryTestAccess::ClearDirty(t);
  t.Erase("a");
  t.Upsert("a", Value{2, 2});
  TableChanges c;
  StateRegistryTestAccess::TakeChanges(t, &c);
  std::map<std::string, Value> stored{{"a", Value{1, 1}}};
  Apply(c, &stored);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored.at("a").a, 2);
  // The next capture is empty, and reuses the buffers.
  StateRegistryTestAccess::TakeChanges(t, &c);
  EXPECT_EQ(c.put_count + c.erased_count, 0u);
}

TEST(KeyedStateTest, TheEmptyKeyIsAKeyLikeAnyOther) {
  KeyedState<Value> t("t");
  EXPECT_EQ(t.Find(std::string_view()), nullptr);
  t.Upsert(std::string_view(), Value{1, 1}).a = 2;
  ASSERT_NE(t.Find(""), nullptr);
  EXPECT_EQ(t.Find("")->a, 2);
  TableChanges c;
  StateRegistryTestAccess::TakeChanges(t, &c);  // now in the store: erasing it must delete it there
  EXPECT_EQ(c.put_count, 1u);
  t.Erase("");
  EXPECT_EQ(t.size(), 0u);
  std::vector<std::string> erased;
  StateRegistryTestAccess::ForEachErased(t, [&](std::string_view k) { erased.emplace_back(k); });
  EXPECT_EQ(erased, std::vector<std::string>{""});
}

TEST(KeyedStateTest, AnEntryBornAndErasedBetweenCapturesCostsTheStoreNothing) {
  KeyedState<Value> t("t");
  TableChanges c;
  t.Upsert("stored", Value{1, 1});
  StateRegistryTestAccess::TakeChanges(t, &c);
  t.Upsert("transient", Value{2, 2});
  t.Erase("transient");
  t.Erase("stored");
  ASSERT_TRUE(StateRegistryTestAccess::Load(t, "loaded", std::string_view(reinterpret_cast<const char*>(&c), 0)).code() ==
              Status::Code::kCorruption);
  Value v{3, 3};
  ASSERT_TRUE(StateRegistryTestAccess::Load(t, "loaded", std::string_view(reinterpret_cast<const char*>(&v), sizeof(v))).ok());
  t.Erase("loaded");
  StateRegistryTestAccess::TakeChanges(t, &c);
  std::set<std::string> erased;
  c.ForEachErased([&](std::string_view k) { erased.insert(std::string(k)); });
  EXPECT_EQ(erased, (std::set<std::string>{"loaded", "stored"}));
  EXPECT_EQ(c.put_count, 0u);
}

TEST(KeyedStateTest, LoadedEntriesAreCleanAndWrongSizesAreCorruption) {
  KeyedState<Value> t("t");
  Value v{5, 6};
  ASSERT_TRUE(StateRegistryTestAccess::Load(t, "a", std::string_view(reinterpret_cast<const char*>(&v), sizeof(v))).ok());
  EXPECT_EQ(StateRegistryTestAccess::DirtyCount(t), 0u);
  EXPECT_EQ(t.Find("a")->a, 5);
  EXPECT_EQ(StateRegistryTestAccess::Load(t, "b", "xx").code(), Status::Code::kCorruption);
}

// An expiring table (a dedup's) whose registry forgets expired entries:
// ExpireIf leaves no erasure for the checkpoint to write, while EraseIf
// and the same table in a registry that keeps them still record theirs.
TEST(KeyedStateTest, ExpiredEntriesAreForgottenWithoutErasuresOnlyWhereTheRegistrySaysSo) {
  struct Seen {
    int64_t since_ms;
  };
  auto expire_all = [](KeyedState<Seen>* s) { return s->ExpireIf([](std::string_view, const Seen&) { return true; }); };
  for (bool forget : {false, true}) {
    SCOPED_TRACE(forget ? "forgetting" : "keeping erasures");
    StateRegistry r;
    if (forget) r.ForgetExpiredEntries();
    auto* seen = r.RegisterExpiring<Seen>("op1_dedup", 1000);
    auto* plain = r.Register<Seen>("op2_window");
    TableChanges c;
    for (auto* s : {seen, plain}) {
      s->Upsert("stored", Seen{1});
      StateRegistryTestAccess::TakeChanges(*s, &c);  // now in the store
      s->Upsert("fresh", Seen{2});
    }
    for (const auto& t : StateRegistryTestAccess::Tables(r)) {
      EXPECT_EQ(t->expiry_ttl_ms(), t->name() == "op1_dedup" ? 1000 : 0) << t->name();
      EXPECT_EQ(t->forgets_expired(), forget && t->name() == "op1_dedup") << t->name();
    }
    EXPECT_EQ(expire_all(seen), 2u);
    EXPECT_EQ(plain->ExpireIf([](std::string_view, const Seen&) { return true; }), 2u);
    EXPECT_EQ(seen->size(), 0u);
    StateRegistryTestAccess::TakeChanges(*seen, &c);
    EXPECT_EQ(c.erased_count, forget ? 0u : 1u);
    EXPECT_EQ(c.put_count, 0u);
    // A table without expiry records its erasures whatever the registry says.
    StateRegistryTestAccess::TakeChanges(*plain, &c);
    EXPECT_EQ(c.erased_count, 1u);
    // EraseIf is an erasure, not an expiry: recorded in both modes.
    seen->Upsert("again", Seen{3});
    StateRegistryTestAccess::TakeChanges(*seen, &c);
    seen->EraseIf([](std::string_view, const Seen&) { return true; });
    StateRegistryTestAccess::TakeChanges(*seen, &c);
    EXPECT_EQ(c.erased_count, 1u);
  }
}

}  // namespace
}  // namespace kappa
