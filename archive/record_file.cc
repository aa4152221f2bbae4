#include "archive/record_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include "flatbuffers/flatbuffers.h"
#include "schemas/log_record_generated.h"

namespace kappa {

namespace {
constexpr uint32_t kMaxRecordBytes = 64u << 20;

void Feed(XXH3_state_t* state, const void* data, size_t size) { XXH3_64bits_update(state, data, size); }
template <typename T>
void FeedValue(XXH3_state_t* state, T value) {
  Feed(state, &value, sizeof(value));  // little-endian machines only, as the archive's blocks
}
void FeedBytes(XXH3_state_t* state, std::string_view bytes, bool null) {
  FeedValue<uint8_t>(state, null ? 1 : 0);
  FeedValue<uint64_t>(state, bytes.size());
  Feed(state, bytes.data(), bytes.size());
}
}  // namespace

uint64_t RecordFileChecksum(int32_t partition, const ArchiveRecord& record) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  FeedValue<int32_t>(&state, partition);
  FeedValue<int64_t>(&state, record.offset);
  FeedValue<int64_t>(&state, record.timestamp_ms);
  FeedBytes(&state, record.key, record.key_null);
  FeedBytes(&state, record.value, record.value_null);
  FeedValue<uint64_t>(&state, record.headers.size());
  for (const auto& h : record.headers) {
    FeedBytes(&state, h.name, false);
    FeedBytes(&state, h.value, h.value_null);
  }
  const uint64_t sum = XXH3_64bits_digest(&state);
  return sum == 0 ? 1 : sum;
}

// ---------------------------------------------------------------- writer

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
  if (!file_) return Status::FailedPrecondition("record file " + path_ + " is closed");
  if (partition < 0 || offset < 0) {
    return Status::InvalidArgument("record file " + path_ + ": negative partition or offset");
  }
  ArchiveRecord record;
  record.offset = offset;
  record.timestamp_ms = timestamp_ms;
  record.key = key;
  record.value = value;
  const uint64_t checksum = RecordFileChecksum(partition, record);
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
  b.add_checksum(checksum);
  fbb.FinishSizePrefixed(b.Finish(), schema::LogRecordIdentifier());
  if (std::fwrite(fbb.GetBufferPointer(), 1, fbb.GetSize(), file_) != fbb.GetSize()) {
    return Status::IOError("cannot write " + path_ + ": " + std::strerror(errno));
  }
  const size_t p = static_cast<size_t>(partition);
  if (next_offset_.size() <= p) next_offset_.resize(p + 1, 0);
  next_offset_[p] = std::max(next_offset_[p], offset + 1);
  ++records_;
  bytes_ += static_cast<int64_t>(key.size() + value.size());
  return Status::OK();
}

Status RecordFileWriter::AppendNext(int32_t partition, int64_t timestamp_ms, std::string_view key,
                                    std::string_view value) {
  const size_t p = static_cast<size_t>(partition);
  const int64_t offset = partition >= 0 && p < next_offset_.size() ? next_offset_[p] : 0;
  return Append(partition, offset, timestamp_ms, key, value);
}

Status RecordFileWriter::Close() {
  if (!file_) return Status::OK();
  const bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  const int err = errno;
  std::fclose(file_);
  file_ = nullptr;
  return ok ? Status::OK() : Status::IOError("cannot write " + path_ + ": " + std::strerror(err));
}

// ---------------------------------------------------------------- reader

Result<std::unique_ptr<RecordFileReader>> RecordFileReader::Open(const std::string& path) {
  std::unique_ptr<RecordFileReader> r(new RecordFileReader());
  r->file_ = std::fopen(path.c_str(), "rb");
  if (!r->file_) return Status::NotFound("cannot open record file " + path + ": " + std::strerror(errno));
  r->path_ = path;
  // fopen takes a directory, and its first read fails: that read error
  // must not pass for an empty file.
  struct stat st{};
  if (::fstat(fileno(r->file_), &st) != 0) return Status::IOError("cannot stat " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("record file " + path + " is not a regular file (" +
                                   (S_ISDIR(st.st_mode) ? "a directory" : "a device, pipe or socket") +
                                   "): pass the file `kappa gen --to-archive` wrote");
  }
  return r;
}

RecordFileReader::~RecordFileReader() {
  if (file_) std::fclose(file_);
}

Result<bool> RecordFileReader::Next(RecordFileEntry* out) {
  uint32_t size = 0;
  const size_t got = std::fread(&size, 1, 4, file_);
  if (got == 0 && std::ferror(file_)) {
    return Status::IOError("cannot read " + path_ + " at byte " + std::to_string(position_) + ": " +
                           std::strerror(errno));
  }
  if (got == 0) return false;
  if (got != 4 || size == 0 || size > kMaxRecordBytes) {
    return Status::Corruption(path_ + ": bad record length at byte " + std::to_string(position_) +
                              " (not a record file written by `kappa gen --to-archive`, or truncated)");
  }
  // The size prefix stays in front: FlatBuffers aligned the buffer with it.
  buffer_.resize((size + 4) / 8 + 1);
  auto* data = reinterpret_cast<uint8_t*>(buffer_.data());
  std::memcpy(data, &size, 4);
  if (std::fread(data + 4, 1, size, file_) != size) {
    return Status::Corruption(path_ + ": the record at byte " + std::to_string(position_) +
                              " is truncated (the file ends inside it)");
  }
  flatbuffers::Verifier verifier(data, size + 4);
  if (!flatbuffers::BufferHasIdentifier(data, schema::LogRecordIdentifier(), true) ||
      !schema::VerifySizePrefixedLogRecordBuffer(verifier)) {
    return Status::Corruption(path_ + ": the record at byte " + std::to_string(position_) +
                              " fails verification (not a kappa LogRecord)");
  }
  const schema::LogRecord* r = schema::GetSizePrefixedLogRecord(data);
  if (r->partition() < 0 || r->offset() < 0) {
    return Status::Corruption(path_ + ": the record at byte " + std::to_string(position_) +
                              " has a negative partition or offset");
  }
  auto view = [](const flatbuffers::Vector<uint8_t>* v) {
    return v ? std::string_view(reinterpret_cast<const char*>(v->data()), v->size()) : std::string_view();
  };
  out->partition = r->partition();
  ArchiveRecord& record = out->record;
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
  if (r->checksum() != 0 && r->checksum() != RecordFileChecksum(out->partition, record)) {
    return Status::Corruption(path_ + ": the record at byte " + std::to_string(position_) + " (partition " +
                              std::to_string(out->partition) + ", offset " + std::to_string(record.offset) +
                              ") fails its checksum: the file was damaged after it was written. Records before it "
                              "are imported; write or copy the file again and run the same import: what is already "
                              "in the archive is skipped");
  }
  position_ += 4 + size;
  return true;
}

}  // namespace kappa
