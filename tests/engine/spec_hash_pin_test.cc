// Pins the canonical text and the hash of specs that use every operator kind
// and every option, and the exact error messages of bad specs: the operator
// registry moved the code that writes them, and a job's spec hash (its state
// directory's identity) must never change under a refactor. (The messages of
// semantic checks are each kind's Validate message since validation is
// written once.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/job_spec.h"

namespace kappa {
namespace {

const char kTopics[] = "sink: {topic: out}\ndlq: {topic: out.dlq}\nlate: {topic: out.late}\n";

struct Pinned {
  std::string yaml;
  std::string canonical;
  std::string hash;
};

std::vector<Pinned> PinnedSpecs() {
  return {
      {std::string(R"(job: every-op
version: 3
source: {topic: txns, start: 1700000000000, allow_truncated_history: true}
validate: {min_amount_cents: 1, max_amount_cents: 99999, currencies: [EUR, USD]}
operators:
  - dedup: {field: txn_id, ttl: 1h}
  - filter: ["status != cancelled", "amount_cents >= 100", "amount_cents % 7 == 3", "currency == EUR"]
  - map: {value: amount_cents, multiply: 3, divide: 100}
  - window: {type: sliding, size: 1h, slide: 15m, key: user_id, aggregates: [count, sum, min, max, avg], top: 2, argmax: [amount_cents, event_time_ms]}
allowed_lateness: 5m
delivery: exactly_once
)") + kTopics,
       "kappa-spec-v1;job=every-op;version=3;source=txns;start=2:1700000000000;truncated=1;decode=1,99999,1,EUR/USD/;lateness=300000;ops=dedup(txn_id,3600000)filter(status 1 cancelled 0;amount_cents 5  100;amount_cents 0  3 %7;currency 0 EUR 0;)map(amount_cents,3,100)window(1,3600000,900000,user_id,0,1,2,3,4,top=2,argmax=amount_cents/event_time_ms/);sink=out;dlq=out.dlq;late=out.late;delivery=1", "077e663d5e35bfa4"},
      {std::string(R"(job: defaults
version: 1
source: {topic: txns}
operators:
  - filter: ["status == approved"]
  - window: {size: 10m}
)") + kTopics,
       "kappa-spec-v1;job=defaults;version=1;source=txns;start=0:0;truncated=0;decode=0,9223372036854775807,1,;lateness=0;ops=filter(status 0 approved 0;)window(0,600000,600000,user_id,0,1,2,3,4);sink=out;dlq=out.dlq;late=out.late;delivery=0", "841bf5c995213b88"},
      {std::string(R"(job: emit-only
version: 1
source: {topic: txns, start: latest}
operators:
  - dedup: {ttl: 30s}
  - emit: {}
)") + kTopics,
       "kappa-spec-v1;job=emit-only;version=1;source=txns;start=1:0;truncated=0;decode=0,9223372036854775807,1,;lateness=0;ops=dedup(txn_id,30000)emit(txn_id);sink=out;dlq=out.dlq;late=out.late;delivery=0", "e87164f577281e30"},
      {std::string(R"(job: nexmark-mix
version: 7
format: nexmark
source: {topic: nexmark}
operators:
  - filter: {where: ["type == bid", "auction % 123 == 0"]}
  - map: {value: price, multiply: 908, divide: 1000}
  - dedup: {field: bidder, ttl: 2d}
  - emit: {key: auction, row: [auction, bidder, value, date_time]}
)") + kTopics,
       "kappa-spec-v1;job=nexmark-mix;version=7;source=nexmark;start=0:0;truncated=0;decode=0,9223372036854775807,1,;lateness=0;ops=filter(type 0 bid 3;auction 0  0 %123;)map(price,908,1000)dedup(bidder,172800000)emit(auction,row=auction/bidder/value/date_time/);sink=out;dlq=out.dlq;late=out.late;delivery=0;format=nexmark", "eb965ee19ed96178"},
      {std::string(R"(job: nexmark-window
version: 2
format: nexmark
source: {topic: nexmark}
operators:
  - filter: ["type == bid"]
  - window: {type: tumbling, size: 10s, key: partition, aggregates: [max], argmax: [auction, price]}
)") + kTopics,
       "kappa-spec-v1;job=nexmark-window;version=2;source=nexmark;start=0:0;truncated=0;decode=0,9223372036854775807,1,;lateness=0;ops=filter(type 0 bid 3;)window(0,10000,10000,partition,3,argmax=auction/price/);sink=out;dlq=out.dlq;late=out.late;delivery=0;format=nexmark", "318693a772319702"},
  };
}

TEST(SpecHashPinTest, CanonicalTextAndHashOfEveryOperatorAreUnchanged) {
  for (const auto& p : PinnedSpecs()) {
    auto spec = ParseJobSpec(p.yaml, "pin.yaml");
    ASSERT_TRUE(spec.ok()) << spec.status().ToString() << "\n" << p.yaml;
    EXPECT_EQ(spec->CanonicalLogic(), p.canonical) << p.yaml;
    EXPECT_EQ(spec->spec_hash, p.hash) << p.yaml;
  }
}

std::string Head(const std::string& ops, const std::string& extra = "") {
  return "job: j\nversion: 1\nsource: {topic: t}\n" + extra + "operators:\n" + ops + kTopics;
}

struct Bad {
  std::string yaml;
  std::string message;
};

std::vector<Bad> BadSpecs() {
  return {
      {Head("  - frobnicate: {}\n"),
       "bad.yaml:5: unknown operator `frobnicate` (expected dedup, filter, map, window, emit or repartition)"},
      {Head("  - dedup: {field: txn_id}\n  - emit: {}\n"),
       "bad.yaml:5: needs `ttl:` (a duration like 1h)"},
      {Head("  - dedup: {ttl: 0s}\n  - emit: {}\n"),
       "bad.yaml:5: dedup ttl must be positive, got 0 ms"},
      {Head("  - dedup: {ttl: 1h, field: nope}\n  - emit: {}\n"),
       "bad.yaml:5: unknown field `nope` (fields: txn_id, user_id, status, amount_cents, currency, event_time_ms; nexmark: type, auction, bidder, price, channel, url, date_time, id, item_name, description, initial_bid, reserve, expires, seller, category, name, email_address, credit_card, city, state, extra; any: offset, value, partition)"},
      {Head("  - dedup: {ttl: 1h, colour: red}\n  - emit: {}\n"),
       "bad.yaml:5: unknown key `colour` in dedup (expected one of: field, ttl)"},
      {Head("  - dedup: {ttl: [1]}\n  - emit: {}\n"),
       "bad.yaml:5: `ttl` must be a duration like 5s"},
      {Head("  - dedup: [1]\n  - emit: {}\n"),
       "bad.yaml:5: dedup must be a mapping"},
      {Head("  - dedup: {ttl: 1h, field: price}\n  - emit: {}\n"),
       "bad.yaml:5: field `price` is not in format transaction (Nexmark fields need top-level `format: nexmark`)"},
      {Head("  - filter: []\n  - emit: {}\n"),
       "bad.yaml:5: filter needs a list of predicates like \"status != cancelled\""},
      {Head("  - filter: {where: []}\n  - emit: {}\n"),
       "bad.yaml:5: filter needs a list of predicates like \"status != cancelled\""},
      {Head("  - filter: {when: [\"status == approved\"]}\n  - emit: {}\n"),
       "bad.yaml:5: unknown key `when` in filter (expected one of: where)"},
      {Head("  - filter: [\"status ~ x\"]\n  - emit: {}\n"),
       "bad.yaml:5: predicate \"status ~ x\": unknown operator `~` (write FIELD OP VALUE, OP one of == != < <= > >=, e.g. \"status != cancelled\")"},
      {Head("  - filter: [\"amount_cents >= ten\"]\n  - emit: {}\n"),
       "bad.yaml:5: predicate \"amount_cents >= ten\": `amount_cents` is numeric but `ten` is not an integer (write FIELD OP VALUE, OP one of == != < <= > >=, e.g. \"status != cancelled\")"},
      {Head("  - filter: [\"partition == 1\"]\n  - emit: {}\n"),
       "bad.yaml:5: predicate \"partition == 1\": `partition` can only key a window or an emit (write FIELD OP VALUE, OP one of == != < <= > >=, e.g. \"status != cancelled\")"},
      {Head("  - filter: [\"price > 1\"]\n  - emit: {}\n"),
       "bad.yaml:5: field `price` is not in format transaction (Nexmark fields need top-level `format: nexmark`)"},
      {Head("  - map: {value: status}\n  - emit: {}\n"),
       "bad.yaml:5: map value must be a numeric field (amount_cents or event_time_ms), not `status`"},
      {Head("  - map: {divide: 0}\n  - emit: {}\n"),
       "bad.yaml:5: map divide must not be 0"},
      {Head("  - map: {multiply: x}\n  - emit: {}\n"),
       "bad.yaml:5: `multiply` must be an integer"},
      {Head("  - map: {value: amount_cents, scale: 2}\n  - emit: {}\n"),
       "bad.yaml:5: map computes `scale` but no operator after it reads it (a misspelt `value`?)"},
      {Head("  - window: {size: 1x}\n"),
       "bad.yaml:5: `size`: '1x': unknown unit 'x' (use ms, s, m, h or d)"},
      {Head("  - window: {type: session, size: 1h}\n"),
       "bad.yaml:5: window `type` must be tumbling, sliding or rolling, not `session`"},
      {Head("  - window: {size: 0s}\n"),
       "bad.yaml:5: window size must be positive, got 0 ms"},
      {Head("  - window: {type: sliding, size: 1h}\n"),
       "bad.yaml:5: needs `slide:` (a duration like 1h)"},
      {Head("  - window: {type: sliding, size: 1h, slide: 2h}\n"),
       "bad.yaml:5: sliding window slide must be positive and at most the size (3600000 ms), got 7200000 ms"},
      {Head("  - window: {size: 1h, aggregates: count}\n"),
       "bad.yaml:5: window `aggregates` must be a list (count, sum, min, max, avg)"},
      {Head("  - window: {size: 1h, aggregates: [median]}\n"),
       "bad.yaml:5: unknown aggregate `median` (count, sum, min, max, avg)"},
      {Head("  - window: {size: 1h, top: -1}\n"),
       "bad.yaml:5: window `top` must not be negative"},
      {Head("  - window: {size: 1h, aggregates: [count], argmax: [amount_cents]}\n"),
       "bad.yaml:5: window `argmax` names the record holding the max: add `max` to `aggregates`"},
      // Taken as no top, it emitted every key's row (a bug bash).
      {Head("  - window: {size: 1h, top: 0}\n"),
       "bad.yaml:5: window `top` must be at least 1 (leave it out for a row per key)"},
      {Head("  - window: {size: 1h, argmax: []}\n"),
       "bad.yaml:5: `argmax` must be a non-empty list of numeric fields"},
      {Head("  - window: {size: 1h, argmax: [status]}\n"),
       "bad.yaml:5: window `argmax` takes numeric fields, not `status`"},
      {Head("  - window: {size: 1h, argmax: [amount_cents, amount_cents, amount_cents, amount_cents, amount_cents]}\n"),
       "bad.yaml:5: window `argmax` takes at most 4 fields, got 5"},
      {Head("  - window: {size: 1h, key: auction}\n"),
       "bad.yaml:5: field `auction` is not in format transaction (Nexmark fields need top-level `format: nexmark`)"},
      {Head("  - window: {size: 1h}\n  - emit: {}\n"),
       "bad.yaml:5: the operator chain must end with exactly one `window` or `emit`, as its last operator"},
      {Head("  - emit: {key: txn_id, row: [currency]}\n"),
       "bad.yaml:5: emit `row` takes numeric fields, not `currency`"},
      {Head("  - emit: {key: user, row: [amount_cents]}\n"),
       "bad.yaml:5: unknown field `user` (fields: txn_id, user_id, status, amount_cents, currency, event_time_ms; nexmark: type, auction, bidder, price, channel, url, date_time, id, item_name, description, initial_bid, reserve, expires, seller, category, name, email_address, credit_card, city, state, extra; any: offset, value, partition)"},
      {Head("  - emit: {tag: x}\n"),
       "bad.yaml:5: unknown key `tag` in emit (expected one of: key, row)"},
      {Head("  - emit: {key: bidder}\n"),
       "bad.yaml:5: field `bidder` is not in format transaction (Nexmark fields need top-level `format: nexmark`)"},
      {Head("  - dedup: {ttl: 1h}\n    filter: [\"status == approved\"]\n  - emit: {}\n"),
       "bad.yaml:5: each operator is a one-key mapping: dedup, filter, map, window, emit or repartition"},
      {Head("  - 42\n  - emit: {}\n"),
       "bad.yaml:5: each operator is a one-key mapping: dedup, filter, map, window, emit or repartition"},
      {Head("  - emit: {}\n", "format: csv\n"),
       "bad.yaml:4: unknown format `csv` (transaction, nexmark, json, avro or flatbuffers)"},
      {Head("  - emit: {}\n", "validate: {currencies: [EUR]}\nformat: nexmark\n"),
       "bad.yaml:4: `validate` (amounts, currencies) applies to format transaction only"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators: []\n") + kTopics,
       "bad.yaml:1: needs `operators:`, a list ending in a `window` or `emit`"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\n"),
       "bad.yaml:1: needs `sink:` with `topic:`"},
      {std::string("job: j k\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:1: `job` may hold only letters, digits, '-', '_' and '.'"},
      // Job tb.v1 version 2 and job tb version 1's instance v2 shared the
      // transactional id kappa.tb.v1.v2 (a bug bash).
      {std::string("job: tb.v1\nversion: 2\nsource: {topic: t}\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:1: `job` may not hold a part `v<digits>` between dots (`tb.v1`): kappa appends .v<version> to the "
       "job name for each version's consumer group, topics and transactional id, which must name one job and "
       "version"},
      {std::string("job: v2.orders\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:1: `job` may not hold a part `v<digits>` between dots (`v2.orders`): kappa appends .v<version> to the "
       "job name for each version's consumer group, topics and transactional id, which must name one job and "
       "version"},
      {std::string("job: j\nversion: 1\nsource: {topic: t, start: yesterday}\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:3: `start` must be earliest, latest or a timestamp in ms since the epoch"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nallowed_lateness: -5s\n") + kTopics,
       "bad.yaml:6: `allowed_lateness`: '-5s' is not a duration (use e.g. 500ms, 5s, 10m, 1h, 1d)"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\ndelivery: twice\n") + kTopics,
       "bad.yaml:6: `delivery` must be at_least_once or exactly_once"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\ncheckpoint: {interval: 0s}\n") + kTopics,
       "bad.yaml:6: checkpoint `interval` must be positive"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\npromote: {max_changed_share: 2}\n") + kTopics,
       "bad.yaml:6: `max_changed_share` must be between 0 and 1"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nparallelism: 0\n") + kTopics,
       "bad.yaml:6: `parallelism` must be between 1 and 256"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nsink: {topic: ''}\ndlq: {topic: d}\nlate: {topic: l}\n"),
       "bad.yaml:6: sink needs `topic:` (a non-empty string)"},
      {std::string("job: [unclosed\n"),
       "bad.yaml:2: invalid YAML: end of sequence flow not found"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nextra: 1\n") + kTopics,
       "bad.yaml:6: unknown key `extra` in the job spec (expected one of: job, version, format, source, validate, operators, allowed_lateness, sink, dlq, late, checkpoint, delivery, promote, parallelism, metrics, alerts, scale_out)"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nscale_out: {session_timeout: 2s}\n") + kTopics,
       "bad.yaml:6: `scale_out.session_timeout` must be between 6s (Kafka's group.min.session.timeout.ms) and 5m"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nscale_out: maybe\n") + kTopics,
       "bad.yaml:6: `scale_out` is true, false or a map {session_timeout, standbys}"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nscale_out: {standbys: 9}\n") + kTopics,
       "bad.yaml:6: `scale_out.standbys` is how many other instances keep a warm copy of each partition's state, 0 to "
       "8; got 9"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nscale_out: {standbys: -1}\n") + kTopics,
       "bad.yaml:6: `scale_out.standbys` is how many other instances keep a warm copy of each partition's state, 0 to "
       "8; got -1"},
      {Head("  - map: {divide: 1.5}\n  - emit: {}\n"),
       "bad.yaml:5: `divide` must be an integer"},
      {Head("  - dedup: {ttl: 1h}\n  - emit: {}\n  - emit: {}\n"),
       "bad.yaml:6: the operator chain must end with exactly one `window` or `emit`, as its last operator"},
      {Head("  - emit: {}\n", "validate: {min_amount_cents: x}\n"),
       "bad.yaml:4: `min_amount_cents` must be an integer"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\nsink: {topic: o}\ndlq: {topic: d}\n"),
       "bad.yaml:1: needs `late:` with `topic:`"},
      {std::string("job: j\nversion: 0\nsource: {topic: t}\noperators:\n  - emit: {}\n") + kTopics,
       // Issue 10 item 9: the line of the bad value and the range it must be in.
       "bad.yaml:2: `version` must be an integer from 1 to 2147483647, not '0'"},
      {std::string("job: j\nsource: {topic: t}\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:1: needs `version:` (an integer from 1 to 2147483647)"},
      {std::string("version: 1\nsource: {topic: t}\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:1: the job spec needs `job:` (a non-empty string)"},
      {std::string("job: j\nversion: 1\nsource: t\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:3: source must be a mapping"},
      {std::string("- 1\n- 2\n"),
       "bad.yaml:1: the job spec must be a mapping"}
  };
}

TEST(SpecHashPinTest, ErrorMessagesAreUnchanged) {
  for (const auto& b : BadSpecs()) {
    auto spec = ParseJobSpec(b.yaml, "bad.yaml");
    ASSERT_FALSE(spec.ok()) << b.yaml;
    EXPECT_EQ(spec.status().message(), b.message) << b.yaml;
  }
}

// Wrong scalar types used to say only "bad conversion": they keep the
// file:line and now name the key and what it needs.
TEST(SpecHashPinTest, WrongScalarTypesNameTheProblem) {
  const std::vector<Bad> cases = {
      {Head("  - emit: {key: [1]}\n"),
       "bad.yaml:5:"},
      {Head("  - filter: [[1]]\n  - emit: {}\n"),
       "bad.yaml:5:"},
      {Head("  - window: {size: 1h, type: [x]}\n"),
       "bad.yaml:5:"},
      {std::string("job: j\nversion: 1\nsource: {topic: t, allow_truncated_history: maybe}\noperators:\n  - emit: {}\n") + kTopics,
       "bad.yaml:3:"},
      {std::string("job: j\nversion: 1\nsource: {topic: t}\noperators:\n  - emit: {}\npromote: {max_changed_share: x}\n") + kTopics,
       "bad.yaml:6:"}
  };
  for (const auto& b : cases) {
    auto spec = ParseJobSpec(b.yaml, "bad.yaml");
    ASSERT_FALSE(spec.ok()) << b.yaml;
    EXPECT_EQ(spec.status().message().rfind(b.message, 0), 0u) << spec.status().message();
    EXPECT_EQ(spec.status().message().find("bad conversion"), std::string::npos) << spec.status().message();
  }
}

// Each kind's Validate runs when the spec is loaded (it used to run only
// when a task was built), so a spec the runtime would refuse is refused by
// `kappa run` at once, with its file and line.
TEST(SpecHashPinTest, OperatorValidationRunsAtLoad) {
  auto spec = ParseJobSpec(Head("  - window: {type: sliding, size: 1000h, slide: 1ms}\n"), "bad.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(),
            "bad.yaml:5: sliding window size / slide is 3600000000, at most 1000 windows per record are allowed");
  spec = ParseJobSpec(Head("  - dedup: {field: partition, ttl: 1h}\n  - emit: {}\n"), "bad.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(), "bad.yaml:5: dedup cannot be by `partition`");
}

}  // namespace
}  // namespace kappa
