#include "archive/archiver.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "kafka/kafka_client.h"
#include "flatbuffers/flatbuffers.h"
#include "schemas/log_record_generated.h"

namespace kappa {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTimeoutMs = 10000;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string Range(const std::string& topic, int32_t p, int64_t from, int64_t to_exclusive) {
  return topic + "[" + std::to_string(p) + "] offsets " + std::to_string(from) + ".." + std::to_string(to_exclusive - 1);
}

struct Followed {
  std::string topic;
  int32_t partition = 0;
  std::unique_ptr<ArchiveWriter> writer;
  int64_t end_at_start = 0;  // log end offset when the archiver started (stop_at_end)
  int64_t position = 0;      // the consumer's next offset (passes transaction markers too)
  int64_t high = 0;          // latest known log end
};

}  // namespace

Result<ArchiverSummary> RunArchiver(const KafkaConfig& config, const ArchiverOptions& options, StopToken stop) {
  if (options.root.empty()) return Status::InvalidArgument("no archive directory given (--archive DIR)");
  if (options.topics.empty()) return Status::InvalidArgument("no topic to archive (--topic NAME)");
  auto consumer_or = CreateClient(ClientKind::kConsumer, config,
                                  {{"group.id", "kappa-archive"},
                                   {"enable.auto.commit", "false"},
                                   {"enable.auto.offset.store", "false"},
                                   {"auto.offset.reset", "error"},
                                   {"enable.partition.eof", "false"},
                                   {"queued.min.messages", "100000"},
                                   {"fetch.wait.max.ms", "50"}});
  if (!consumer_or.ok()) return consumer_or.status();
  rd_kafka_t* rk = consumer_or->get();

  std::vector<Followed> followed;
  std::map<std::pair<std::string, int32_t>, size_t> index;
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(16);
  auto fail = [&](Status s) {
    rd_kafka_topic_partition_list_destroy(assignment);
    return s;
  };
  for (const auto& topic : options.topics) {
    auto partitions = TopicPartitionCount(rk, topic, kTimeoutMs);
    if (!partitions.ok()) return fail(partitions.status());
    auto marks = QueryAllWatermarks(rk, topic, *partitions, kTimeoutMs);
    if (!marks.ok()) return fail(marks.status());
    for (int32_t p = 0; p < *partitions; ++p) {
      auto writer = ArchiveWriter::Open(options.root, topic, p, options.block_bytes);
      if (!writer.ok()) return fail(writer.status());
      const Watermarks& w = (*marks)[p];
      const int64_t end = (*writer)->end_offset();
      if (end < w.low) {
        return fail(Status::DataLoss(
            "cannot archive " + Range(topic, p, end, w.low) + ": Kafka's log of that partition now starts at " +
            std::to_string(w.low) + " (retention deleted those records before they were archived). The archive " +
            "would have a hole, so nothing is written; archive into a new directory to keep history from " +
            std::to_string(w.low) + " on, and keep the old archive for what it holds"));
      }
      if (end > w.high) {
        return fail(Status::FailedPrecondition(
            "the archive of " + topic + "[" + std::to_string(p) + "] ends at offset " + std::to_string(end) +
            " but Kafka's log ends at " + std::to_string(w.high) +
            ": the topic was recreated or this archive belongs to another cluster; use another archive directory"));
      }
      Followed f;
      f.topic = topic;
      f.partition = p;
      f.writer = std::move(*writer);
      f.end_at_start = w.high;
      f.position = end;
      f.high = w.high;
      index[{topic, p}] = followed.size();
      followed.push_back(std::move(f));
      rd_kafka_topic_partition_list_add(assignment, topic.c_str(), p)->offset = end;
    }
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(rk, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err) return Status::Unavailable(std::string("cannot assign the archived topics: ") + rd_kafka_err2str(err));

  int64_t backlog = 0;
  for (const auto& f : followed) backlog += f.end_at_start - f.position;
  std::fprintf(stderr, "kappa archive: following %zu partition(s) of %zu topic(s) into %s, %lld record(s) behind\n",
               followed.size(), options.topics.size(), options.root.c_str(), static_cast<long long>(backlog));

  ArchiverSummary summary;
  const auto start = Clock::now();
  auto last_flush = Clock::now();
  auto last_status = Clock::now();
  int64_t records_at_status = 0;
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(rk);
  std::vector<rd_kafka_message_t*> batch(10000);
  ArchiveRecord record;
  Status result;
  // Quick lookup for the common case of one topic.
  const std::string& first_topic = options.topics.front();

  auto at_end = [&] {
    for (const auto& f : followed) {
      if (f.position < f.end_at_start) return false;
    }
    return true;
  };
  auto flush_all = [&]() -> Status {
    for (auto& f : followed) KAPPA_RETURN_IF_ERROR(f.writer->Flush());
    return Status::OK();
  };

  while (!stop.stop_requested()) {
    if (options.stop_at_end && at_end()) break;
    ssize_t n = rd_kafka_consume_batch_queue(queue, 100, batch.data(), batch.size());
    if (n < 0) {
      result = Status::Unavailable(std::string("consume failed: ") + rd_kafka_err2str(rd_kafka_last_error()));
      break;
    }
    for (ssize_t i = 0; i < n && result.ok(); ++i) {
      rd_kafka_message_t* m = batch[i];
      const char* topic = rd_kafka_topic_name(m->rkt);
      if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
          auto it = index.find({topic, m->partition});
          const int64_t from = it == index.end() ? -1 : followed[it->second].writer->end_offset();
          result = Status::DataLoss(std::string(topic) + "[" + std::to_string(m->partition) + "]: offset " +
                                    std::to_string(from) + " is no longer in Kafka (retention deleted it while the " +
                                    "archiver was behind): " + rd_kafka_message_errstr(m) +
                                    "; the archive would have a hole, so the archiver stops");
          break;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
        if (m->err == RD_KAFKA_RESP_ERR__FATAL || m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
          result = Status::Unavailable(std::string("source ") + topic + ": " + rd_kafka_message_errstr(m));
          break;
        }
        std::fprintf(stderr, "kappa archive: transient consumer error (retrying): %s\n", rd_kafka_message_errstr(m));
        continue;
      }
      Followed* f = nullptr;
      if (followed.size() > static_cast<size_t>(m->partition) && followed[m->partition].partition == m->partition &&
          first_topic == topic) {
        f = &followed[m->partition];
      } else {
        auto it = index.find({topic, m->partition});
        if (it == index.end()) continue;
        f = &followed[it->second];
      }
      if (m->offset < f->writer->end_offset()) continue;  // re-delivered after a reassignment
      record.offset = m->offset;
      record.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
      record.key_null = m->key == nullptr;
      record.key = std::string_view(static_cast<const char*>(m->key), m->key ? m->key_len : 0);
      record.value_null = m->payload == nullptr;
      record.value = std::string_view(static_cast<const char*>(m->payload), m->payload ? m->len : 0);
      record.headers.clear();
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t h = 0; rd_kafka_header_get_all(headers, h, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++h) {
          record.headers.push_back({name, std::string_view(static_cast<const char*>(value), value ? size : 0),
                                    value == nullptr});
        }
      }
      result = f->writer->Append(record);
      f->position = m->offset + 1;
      ++summary.records;
      summary.bytes += static_cast<int64_t>(record.key.size() + record.value.size());
    }
    for (ssize_t i = 0; i < n; ++i) rd_kafka_message_destroy(batch[i]);
    if (!result.ok()) break;

    const bool flush_due = Clock::now() - last_flush >= std::chrono::milliseconds(options.flush_interval_ms);
    const bool status_due = options.status_interval_ms > 0 &&
                            Clock::now() - last_status >= std::chrono::milliseconds(options.status_interval_ms);
    if (flush_due || status_due || (options.stop_at_end && n == 0)) {
      // The consumer's position passes transaction markers that never
      // arrive as messages; stop_at_end relies on it.
      rd_kafka_topic_partition_list_t* pos = rd_kafka_topic_partition_list_new(static_cast<int>(followed.size()));
      for (const auto& fp : followed) rd_kafka_topic_partition_list_add(pos, fp.topic.c_str(), fp.partition);
      if (rd_kafka_position(rk, pos) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < pos->cnt; ++i) {
          auto it = index.find({pos->elems[i].topic, pos->elems[i].partition});
          if (it != index.end() && pos->elems[i].offset >= 0) {
            followed[it->second].position = std::max(followed[it->second].position, pos->elems[i].offset);
          }
        }
      }
      rd_kafka_topic_partition_list_destroy(pos);
    }
    if (flush_due) {
      result = flush_all();
      if (!result.ok()) break;
      last_flush = Clock::now();
    }
    if (status_due) {
      int64_t lag = 0;
      for (auto& fp : followed) {
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(rk, fp.topic.c_str(), fp.partition, &low, &high);
        fp.high = std::max(fp.high, high);
        lag += std::max<int64_t>(0, fp.high - fp.position);
      }
      const double rate = (summary.records - records_at_status) / std::max(1e-3, SecondsSince(last_status));
      char eta[48] = "";
      if (rate > 0 && lag > 0) std::snprintf(eta, sizeof(eta), ", ETA %.1f s", lag / rate);
      std::fprintf(stderr, "%skappa archive: %lld records (%.1f MB), %.0f rec/s, lag %lld%s%s",
                   options.progress_on_terminal ? "\r" : "", static_cast<long long>(summary.records),
                   summary.bytes / 1e6, rate, static_cast<long long>(lag), eta,
                   options.progress_on_terminal ? "   " : "\n");
      std::fflush(stderr);
      records_at_status = summary.records;
      last_status = Clock::now();
    }
  }
  rd_kafka_queue_destroy(queue);
  // What was appended before a failure is good data: make it durable.
  Status flushed = flush_all();
  CloseConsumer(*consumer_or, 10000);
  if (options.progress_on_terminal && options.status_interval_ms > 0) std::fprintf(stderr, "\n");
  if (!result.ok()) return result;
  if (!flushed.ok()) return flushed;
  summary.seconds = SecondsSince(start);
  return summary;
}

// ---------------------------------------------------------------- record files

struct RecordFileWriter::Builder {
  flatbuffers::FlatBufferBuilder fbb{1024};
};

Result<std::unique_ptr<RecordFileWriter>> RecordFileWriter::Create(const std::string& path) {
  std::unique_ptr<RecordFileWriter> w(new RecordFileWriter());
  w->file_ = std::fopen(path.c_str(), "wb");
  if (!w->file_) return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  w->path_ = path;
  w->builder_ = std::make_unique<Builder>();
  return w;
}

RecordFileWriter::~RecordFileWriter() {
  if (file_) std::fclose(file_);
}

Status RecordFileWriter::Append(int32_t partition, int64_t offset, int64_t timestamp_ms, std::string_view key,
                                std::string_view value) {
  auto& fbb = builder_->fbb;
  fbb.Clear();
  auto k = fbb.CreateVector(reinterpret_cast<const uint8_t*>(key.data()), key.size());
  auto v = fbb.CreateVector(reinterpret_cast<const uint8_t*>(value.data()), value.size());
  schema::LogRecordBuilder b(fbb);
  b.add_partition(partition);
  b.add_offset(offset);
  b.add_timestamp_ms(timestamp_ms);
  b.add_key(k);
  b.add_value(v);
  fbb.FinishSizePrefixed(b.Finish(), schema::LogRecordIdentifier());
  if (std::fwrite(fbb.GetBufferPointer(), 1, fbb.GetSize(), file_) != fbb.GetSize()) {
    return Status::IOError("cannot write " + path_ + ": " + std::strerror(errno));
  }
  return Status::OK();
}

Status RecordFileWriter::Close() {
  if (!file_) return Status::OK();
  const bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  std::fclose(file_);
  file_ = nullptr;
  return ok ? Status::OK() : Status::IOError("cannot write " + path_ + ": " + std::strerror(errno));
}

Result<ImportSummary> ImportRecordFile(const std::string& file, const std::string& root, const std::string& topic) {
  std::FILE* in = std::fopen(file.c_str(), "rb");
  if (!in) return Status::NotFound("cannot open record file " + file + ": " + std::strerror(errno));
  std::map<int32_t, std::unique_ptr<ArchiveWriter>> writers;
  ImportSummary summary;
  std::vector<uint64_t> buffer;  // aligned for FlatBuffers
  int64_t position = 0;
  Status result;
  ArchiveRecord record;
  auto flush_all = [&]() -> Status {
    for (auto& [p, w] : writers) KAPPA_RETURN_IF_ERROR(w->Flush());
    return Status::OK();
  };
  for (;;) {
    uint32_t size = 0;
    const size_t got = std::fread(&size, 1, 4, in);
    if (got == 0) break;
    if (got != 4 || size == 0 || size > (64u << 20)) {
      result = Status::Corruption(file + ": bad record length at byte " + std::to_string(position) +
                                  " (not a record file written by `kappa gen --to-archive`, or truncated)");
      break;
    }
    // The size prefix stays in front: FlatBuffers aligned the buffer with it.
    buffer.resize((size + 4) / 8 + 1);
    auto* data = reinterpret_cast<uint8_t*>(buffer.data());
    std::memcpy(data, &size, 4);
    if (std::fread(data + 4, 1, size, in) != size) {
      result = Status::Corruption(file + ": the record at byte " + std::to_string(position) +
                                  " is truncated (the file ends inside it)");
      break;
    }
    flatbuffers::Verifier verifier(data, size + 4);
    if (!flatbuffers::BufferHasIdentifier(data, schema::LogRecordIdentifier(), true) ||
        !schema::VerifySizePrefixedLogRecordBuffer(verifier)) {
      result = Status::Corruption(file + ": the record at byte " + std::to_string(position) +
                                  " fails verification (not a kappa LogRecord)");
      break;
    }
    const schema::LogRecord* r = schema::GetSizePrefixedLogRecord(data);
    if (r->partition() < 0 || r->offset() < 0) {
      result = Status::Corruption(file + ": the record at byte " + std::to_string(position) +
                                  " has a negative partition or offset");
      break;
    }
    auto& writer = writers[r->partition()];
    if (!writer) {
      auto w = ArchiveWriter::Open(root, topic, r->partition());
      if (!w.ok()) {
        result = w.status();
        break;
      }
      writer = std::move(*w);
    }
    position += 4 + size;
    if (r->offset() < writer->end_offset()) {
      ++summary.skipped;
      continue;
    }
    auto view = [](const flatbuffers::Vector<uint8_t>* v) {
      return v ? std::string_view(reinterpret_cast<const char*>(v->data()), v->size()) : std::string_view();
    };
    record.offset = r->offset();
    record.timestamp_ms = r->timestamp_ms();
    record.key = view(r->key());
    record.key_null = r->key_null();
    record.value = view(r->value());
    record.value_null = r->value_null();
    record.headers.clear();
    if (r->headers()) {
      for (const auto* h : *r->headers()) record.headers.push_back({h->name()->string_view(), view(h->value()), h->value_null()});
    }
    result = writer->Append(record);
    if (!result.ok()) break;
    if (++summary.records % 4000000 == 0) {
      result = flush_all();
      if (!result.ok()) break;
    }
  }
  std::fclose(in);
  Status flushed = flush_all();
  summary.partitions = static_cast<int32_t>(writers.size());
  if (!result.ok()) return result;
  if (!flushed.ok()) return flushed;
  return summary;
}

}  // namespace kappa
