#include "kafka/partition_list.h"

#include <librdkafka/rdkafka.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace kappa {

PartitionList::PartitionList(int capacity) : list_(rd_kafka_topic_partition_list_new(capacity)) {}

PartitionList::~PartitionList() {
  if (list_) rd_kafka_topic_partition_list_destroy(list_);
}

PartitionList::PartitionList(PartitionList&& other) noexcept : list_(std::exchange(other.list_, nullptr)) {}

PartitionList& PartitionList::operator=(PartitionList&& other) noexcept {
  if (this != &other) {
    if (list_) rd_kafka_topic_partition_list_destroy(list_);
    list_ = std::exchange(other.list_, nullptr);
  }
  return *this;
}

void PartitionList::Add(const std::string& topic, int32_t partition, int64_t offset) {
  rd_kafka_topic_partition_list_add(list_, topic.c_str(), partition)->offset = offset;
}

void PartitionList::Add(const std::string& topic, int32_t partition, int64_t offset, std::string_view metadata) {
  rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(list_, topic.c_str(), partition);
  tp->offset = offset;
  if (!metadata.empty()) {
    // librdkafka frees metadata with free() when the list is destroyed.
    tp->metadata = std::malloc(metadata.size());
    std::memcpy(tp->metadata, metadata.data(), metadata.size());
    tp->metadata_size = metadata.size();
  }
}

int PartitionList::size() const { return list_ ? list_->cnt : 0; }

rd_kafka_topic_partition_t& PartitionList::operator[](int i) const { return list_->elems[i]; }

int32_t PartitionList::partition(int i) const { return list_->elems[i].partition; }
int64_t PartitionList::offset(int i) const { return list_->elems[i].offset; }
int PartitionList::error(int i) const { return list_->elems[i].err; }

std::string PartitionList::Metadata(int i) const {
  const auto& e = list_->elems[i];
  if (!e.metadata || e.metadata_size == 0) return std::string();
  return std::string(static_cast<const char*>(e.metadata), e.metadata_size);
}

}  // namespace kappa
