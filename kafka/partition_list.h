// PartitionList: an owning wrapper of librdkafka's
// rd_kafka_topic_partition_list_t, so no return path has to free one by
// hand. Move-only; not thread-safe (as the list itself).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

struct rd_kafka_topic_partition_list_s;
struct rd_kafka_topic_partition_s;

namespace kappa {

class PartitionList {
 public:
  explicit PartitionList(int capacity = 0);
  ~PartitionList();
  PartitionList(PartitionList&& other) noexcept;
  PartitionList& operator=(PartitionList&& other) noexcept;
  PartitionList(const PartitionList&) = delete;
  PartitionList& operator=(const PartitionList&) = delete;

  // Adds topic[partition] at `offset` (librdkafka's logical offsets allowed).
  void Add(const std::string& topic, int32_t partition, int64_t offset = -1001 /* RD_KAFKA_OFFSET_INVALID */);
  // The same with commit metadata (copied; freed with the list).
  void Add(const std::string& topic, int32_t partition, int64_t offset, std::string_view metadata);
  int size() const;
  rd_kafka_topic_partition_s& operator[](int i) const;
  // Element i's fields, without including librdkafka.
  int32_t partition(int i) const;
  int64_t offset(int i) const;
  int error(int i) const;  // an rd_kafka_resp_err_t
  // The metadata bytes of element i (empty if none).
  std::string Metadata(int i) const;

  rd_kafka_topic_partition_list_s* get() const { return list_; }

 private:
  rd_kafka_topic_partition_list_s* list_ = nullptr;
};

}  // namespace kappa
