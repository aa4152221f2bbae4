// A job reading a topic that a transactional producer wrote (another
// exactly_once job's output, any producer with a transactional.id), on a
// real Apache Kafka (the suite's broker, CTest fixture `realkafka`).
//
// Such a topic ends in a commit or abort marker, an offset no record
// stands for, and an aborted transaction's records are never read under
// read_committed. A bounded run (`--stop-at-end`) compared its tasks' next
// offsets with the log end, which a task never reaches there: it showed
// "99.9% done, lag 1" for good (a bug bash). It ends once the consumer has
// read past the end, and reads exactly the committed records.
#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "kafka/kafka_client.h"
#include "kafka/topic_reader.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/real_kafka.h"
#include "tests/support/test_support.h"

namespace kappa::testing {
namespace {

class TransactionalInputTest : public SharedRealKafkaTest<> {
 protected:
  struct Record {
    int32_t partition;
    std::string key, value;
    int64_t timestamp_ms;
  };

  // Writes `records` to `topic` in transactions of `per_transaction`, the
  // ones whose index is in `aborted` aborted, the rest committed; with
  // `open_last`, the last transaction is sent and left open, its producer
  // handed over there.
  void WriteTransactions(const std::string& topic, const std::vector<Record>& records, size_t per_transaction,
                         const std::vector<size_t>& aborted, KafkaHandle* open_last = nullptr) {
    auto producer = CreateClient(ClientKind::kProducer, Config(), {{"transactional.id", Unique("txn-writer")}});
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    rd_kafka_t* rk = producer->get();
    auto check = [](rd_kafka_error_t* error, const char* what) {
      const std::string text = error ? rd_kafka_error_string(error) : "";
      if (error) rd_kafka_error_destroy(error);
      EXPECT_TRUE(text.empty()) << what << ": " << text;
      return text.empty();
    };
    ASSERT_TRUE(check(rd_kafka_init_transactions(rk, 30000), "init_transactions"));
    for (size_t t = 0; t * per_transaction < records.size(); ++t) {
      ASSERT_TRUE(check(rd_kafka_begin_transaction(rk), "begin_transaction"));
      for (size_t i = t * per_transaction; i < std::min(records.size(), (t + 1) * per_transaction); ++i) {
        const Record& r = records[i];
        ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(r.partition),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_KEY(const_cast<char*>(r.key.data()), r.key.size()),
                                    RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
                                    RD_KAFKA_V_TIMESTAMP(r.timestamp_ms), RD_KAFKA_V_END),
                  RD_KAFKA_RESP_ERR_NO_ERROR);
      }
      const bool abort = std::find(aborted.begin(), aborted.end(), t) != aborted.end();
      const bool last = (t + 1) * per_transaction >= records.size();
      // Sent before the abort: else librdkafka drops them unsent and the
      // log holds neither them nor a marker.
      if (abort || (last && open_last)) {
        ASSERT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
      }
      if (last && open_last) {
        *open_last = std::move(*producer);
        return;
      }
      ASSERT_TRUE(check(abort ? rd_kafka_abort_transaction(rk, 30000) : rd_kafka_commit_transaction(rk, 30000),
                        abort ? "abort_transaction" : "commit_transaction"));
    }
  }

  // The generated workload's records (written plainly to a topic of their
  // own and read back), to be written again transactionally.
  std::vector<Record> Workload(uint64_t seed, uint64_t count) {
    const std::string staging = Unique("txn-staging-" + std::to_string(seed));
    EXPECT_TRUE(CreateTopicAdmin(Config(), staging, 2, 1).ok());
    ProduceWorkload(Config(), staging, SmallWorkload(seed, count, 40));
    std::vector<Record> records;
    auto read = ReadTopic(Config(), staging, [&](const ConsumedRecord& r) {
      records.push_back({r.partition, std::string(r.key), std::string(r.value), r.timestamp_ms});
    });
    EXPECT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(records.size(), count);
    return records;
  }

  // Runs the user-spend job over `input` to its end, bounded by 90 s: the
  // exit code (-1: still running, killed) and the summary line.
  int RunToEnd(const ScratchDir& dir, const std::string& input, const std::string& name, std::string* err) {
    SpecOptions o = JobOptions(Unique(name), input, dir / "state");
    ChildProcess run({"run", WriteSpec(dir, name + ".yaml", o), "-b", bootstrap_, "--stop-at-end",
                      "--status-interval-ms", "500"},
                     name);
    const int rc = run.WaitFor(90000);
    if (rc == -1) run.Kill(SIGKILL);
    *err = run.Stdout() + run.Stderr();
    return rc;
  }
  // RunToEnd ends, exit 0, having read `in` records; *err: what it said.
  void ExpectRunEnds(const ScratchDir& dir, const std::string& input, const std::string& name, int64_t in,
                     std::string* err) {
    const int rc = RunToEnd(dir, input, name, err);
    ASSERT_NE(rc, -1) << "the bounded run never ended: " << *err;
    EXPECT_EQ(rc, 0) << *err;
    EXPECT_NE(err->find("in " + std::to_string(in) + " = "), std::string::npos) << *err;
  }
};

TEST_F(TransactionalInputTest, ABoundedRunEndsAfterTheLastCommitMarkerAndReadsEveryCommittedRecord) {
  const std::string input = Unique("txn-committed");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  const auto records = Workload(11, 1200);
  ASSERT_NO_FATAL_FAILURE(WriteTransactions(input, records, 100, {}));
  ScratchDir dir("txn-committed");
  std::string err;
  ASSERT_NO_FATAL_FAILURE(ExpectRunEnds(dir, input, "txn-committed-job", 1200, &err));
}

// The last transaction aborted: its records and markers are the end of the
// log, none of them read; the run ends with the committed records only.
TEST_F(TransactionalInputTest, ABoundedRunEndsAfterAnAbortedLastTransactionWithoutItsRecords) {
  const std::string input = Unique("txn-aborted");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  const auto records = Workload(12, 1000);
  // Transactions 0..9 of 100 records: 3 and 9 (the last) aborted.
  ASSERT_NO_FATAL_FAILURE(WriteTransactions(input, records, 100, {3, 9}));
  ScratchDir dir("txn-aborted");
  std::string err;
  ASSERT_NO_FATAL_FAILURE(ExpectRunEnds(dir, input, "txn-aborted-job", 800, &err));
  // Its last status says no lag: the markers and aborted records are no work left.
  const size_t last = err.rfind("% done");
  ASSERT_NE(last, std::string::npos) << err;
  EXPECT_NE(err.find("lag 0", last), std::string::npos) << err.substr(last);
}

// A bounded run stops at the last stable offset read as it opens: a
// transaction open then ends its partitions there. The run ended with the
// committed records only and said nothing of the rest (a bug bash); it
// names each partition an open transaction holds back.
TEST_F(TransactionalInputTest, ABoundedRunNamesThePartitionsAnOpenTransactionHoldsBack) {
  const std::string input = Unique("txn-open");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 2, 1).ok());
  auto records = Workload(13, 600);
  // The open transaction's records all in partition 1.
  for (size_t i = 500; i < records.size(); ++i) records[i].partition = 1;
  KafkaHandle open;
  ASSERT_NO_FATAL_FAILURE(WriteTransactions(input, records, 100, {}, &open));
  ASSERT_NE(open.get(), nullptr);
  // Partition 1's last stable offset: its committed records and one commit
  // marker per transaction that wrote there.
  int64_t stable_1 = 0;
  for (size_t t = 0; t < 5; ++t) {
    int64_t in_1 = 0;
    for (size_t i = t * 100; i < (t + 1) * 100; ++i) in_1 += records[i].partition == 1;
    stable_1 += in_1 + (in_1 > 0 ? 1 : 0);
  }
  ScratchDir dir("txn-open");
  std::string err;
  ASSERT_NO_FATAL_FAILURE(ExpectRunEnds(dir, input, "txn-open-job", 500, &err));
  EXPECT_NE(err.find("a transaction still open holds " + input + "[1] at offset " + std::to_string(stable_1) +
                     " (log end " + std::to_string(stable_1 + 100) + ")"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find(input + "[0] at offset"), std::string::npos) << err;
  if (rd_kafka_error_t* e = rd_kafka_abort_transaction(open.get(), 30000)) rd_kafka_error_destroy(e);
}

// A topic whose first transaction was aborted has no readable record at
// offsets 0..N. Its archive was named after its first record, so a replay
// from the archive alone said "records 0..100 are gone" (false: they never
// held a record) and offered allow_truncated_history, which would mark
// every output with a history gap (a bug bash). The archive begins where
// the archiver began reading.
TEST_F(TransactionalInputTest, AnArchiveOfATopicWhoseFirstTransactionAbortedReplaysWithoutAGap) {
  const std::string input = Unique("txn-first-aborted");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 1, 1).ok());
  auto records = Workload(13, 600);
  for (auto& r : records) r.partition = 0;
  ASSERT_NO_FATAL_FAILURE(WriteTransactions(input, records, 100, {0}));
  ScratchDir dir("txn-first-aborted");
  const std::string archive = dir / "archive";
  std::string out, err;
  ASSERT_EQ(RunKappa({"archive", "-a", archive, "-t", input, "-b", bootstrap_, "--stop-at-end"}, &out, &err), 0)
      << err;
  ASSERT_EQ(RunKappa({"archive", "-a", archive, "--list"}, &out, &err), 0) << err;
  EXPECT_NE(out.find(input + "[0]: offsets 0.."), std::string::npos) << out;
  SpecOptions o = JobOptions(Unique("txn-first-aborted-job"), input, dir / "state");
  ChildProcess run({"run", WriteSpec(dir, "job.yaml", o), "-b", bootstrap_, "--archive", archive, "--archive-only",
                    "--stop-at-end", "--status-interval-ms", "0"},
                   "txn-first-aborted-job");
  const int rc = run.WaitFor(90000);
  if (rc == -1) run.Kill(SIGKILL);
  const std::string said = run.Stdout() + run.Stderr();
  EXPECT_EQ(rc, 0) << said;
  EXPECT_EQ(said.find("are gone"), std::string::npos) << said;
  EXPECT_NE(said.find("in 500 = "), std::string::npos) << said;
}

// A topic recreated and written transactionally so that the archive's last
// offset is a commit marker in the new log: the check of the same history
// found no record there, took it for "nothing to compare", and the new
// log's records were archived after the old one's (a bug bash). A topic
// that is not compacted keeps every committed record readable: refused.
TEST_F(TransactionalInputTest, ARecreatedTopicWhoseMarkerStandsAtTheArchivesEndIsRefused) {
  const std::string input = Unique("txn-recreated");
  ASSERT_TRUE(CreateTopicAdmin(Config(), input, 1, 1).ok());
  auto records = Workload(17, 40);
  for (auto& r : records) r.partition = 0;
  // The old log: records 0..9 in one transaction (its marker at 10).
  ASSERT_NO_FATAL_FAILURE(WriteTransactions(input, {records.begin(), records.begin() + 10}, 10, {}));
  ScratchDir dir("txn-recreated");
  const std::string archive = dir / "archive";
  std::string out, err;
  // Kafka acknowledges a commit before it writes the marker: until then a
  // bounded archiver ends before the transaction's records. Again until
  // the archive holds them.
  bool archived = false;
  for (int i = 0; i < 50 && !archived; ++i) {
    ASSERT_EQ(RunKappa({"archive", "-a", archive, "-t", input, "-b", bootstrap_, "--stop-at-end"}, &out, &err), 0)
        << err;
    ASSERT_EQ(RunKappa({"archive", "-a", archive, "--list"}, &out, &err), 0) << err;
    archived = out.find(input + "[0]: offsets 0..9") != std::string::npos;
    if (!archived) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(archived) << out;
  const Status recreated = RecreateTopicAdmin(Config(), input, 1);
  ASSERT_TRUE(recreated.ok()) << recreated.ToString();
  // The new log: 9 records (0..8, the marker at 9: the archive's last
  // offset), then 11 more (10..20).
  ASSERT_NO_FATAL_FAILURE(WriteTransactions(input, {records.begin() + 10, records.begin() + 19}, 9, {}));
  ASSERT_NO_FATAL_FAILURE(WriteTransactions(input, {records.begin() + 19, records.begin() + 30}, 11, {}));
  EXPECT_EQ(RunKappa({"archive", "-a", archive, "-t", input, "-b", bootstrap_, "--stop-at-end"}, &out, &err), 1)
      << out << err;
  EXPECT_NE(err.find("the archive of " + input + "[0] ends with offset 9, a committed record, but Kafka holds no "
                     "record at that offset now"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("the topic was recreated"), std::string::npos) << err;
  ASSERT_EQ(RunKappa({"archive", "-a", archive, "--list"}, &out, &err), 0) << err;
  EXPECT_NE(out.find(input + "[0]: offsets 0..9"), std::string::npos) << "nothing appended: " << out;
}

}  // namespace
}  // namespace kappa::testing
