// Which version skips a record `kappa dlq replay` re-injected
// (engine/reinjected.h): the headers read back, and every reason a copy is
// processed rather than skipped.
#include "engine/reinjected.h"

#include <gtest/gtest.h>

#include "archive/archive_record.h"
#include "archive/segment_format.h"
#include "engine/job_spec.h"

namespace kappa {
namespace {

JobSpec Spec(const std::string& job, int32_t version) {
  JobSpec spec;
  spec.job = job;
  spec.version = version;
  spec.source_topic = "transactions";
  return spec;
}

TEST(ReinjectedTest, AVersionThatReadTheOriginalAndDidNotRejectItSkipsTheCopy) {
  const JobSpec v2 = Spec("pay", 2);
  EXPECT_TRUE(RepeatOfProcessedRecord(v2, 1, 0, 900, "transactions[1]@17", "pay v1"));
  EXPECT_TRUE(RepeatOfProcessedRecord(v2, 1, 17, 900, "transactions[1]@17", "pay v1,audit v2"));
  // Processed: the version rejected it (alone or among others), began after
  // it, reads another partition or topic, or the header is not one.
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 0, 900, "transactions[1]@17", "pay v2"));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 0, 900, "transactions[1]@17", "pay v1,pay v2"));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 18, 900, "transactions[1]@17", "pay v1"));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 2, 0, 900, "transactions[1]@17", "pay v1"));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 0, 900, "other[1]@17", "pay v1"));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 0, 10, "transactions[1]@17", "pay v1"));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 0, 900, "", ""));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 0, 900, "transactions[1]@x", "pay v1"));
  EXPECT_FALSE(RepeatOfProcessedRecord(v2, 1, 0, 900, "transactions1]@17", "pay v1"));
  // Another job's version 2 is not this one.
  EXPECT_TRUE(RepeatOfProcessedRecord(v2, 1, 0, 900, "transactions[1]@17", "audit v2"));
  EXPECT_TRUE(RepeatOfProcessedRecord(v2, 1, 0, 900, "transactions[1]@17", "pay v22"));
}

TEST(ReinjectedTest, ArchivedHeadersAreFoundWithoutDecodingTheRecord) {
  ArchiveRecord r;
  r.offset = 5;
  r.value = "payload";
  r.headers = {{"kappa.retry_count", "2", false}, {"empty", "", true}, {kDlqSourceHeader, "transactions[0]@1", false}};
  std::string raw;
  segment_format::AppendRecord(r, &raw);
  std::vector<ArchiveRecord> parsed;
  ASSERT_TRUE(segment_format::ParseRecords(raw.data(), raw.size(), 0, 100, /*with_headers=*/false, &parsed).ok());
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_TRUE(parsed[0].headers.empty());
  EXPECT_EQ(parsed[0].header_count, 3u);
  std::string_view value;
  ASSERT_TRUE(FindArchivedHeader(parsed[0].raw_headers, parsed[0].header_count, kDlqSourceHeader, &value));
  EXPECT_EQ(value, "transactions[0]@1");
  ASSERT_TRUE(FindArchivedHeader(parsed[0].raw_headers, parsed[0].header_count, kRetryCountHeader, &value));
  EXPECT_EQ(value, "2");
  EXPECT_FALSE(FindArchivedHeader(parsed[0].raw_headers, parsed[0].header_count, "empty", &value));
  EXPECT_FALSE(FindArchivedHeader(parsed[0].raw_headers, parsed[0].header_count, kDlqRejectedByHeader, &value));
}

}  // namespace
}  // namespace kappa
