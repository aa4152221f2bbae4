#include "engine/changelog.h"

#include <absl/container/flat_hash_map.h>
#include <flatbuffers/flatbuffers.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include "engine/kafka_sink.h"
#include "engine/task.h"
#include "kafka/kafka_client.h"
#include "kafka/kafka_status.h"
#include "kafka/partition_list.h"
#include "schemas/checkpoint_generated.h"
#include "state/task_checkpoint_codec.h"

namespace kappa {

namespace {
// The consumer group of these reads (they commit nothing; a secured Kafka wants Read on it).
constexpr char kChangelogReaderGroup[] = "kappa-changelog-reader";

constexpr std::string_view kMarkerKey("\0marker", 7);

}  // namespace

std::string ChangelogStateKey(std::string_view table, std::string_view key) {
  std::string out;
  out.reserve(table.size() + 1 + key.size());
  out.append(table);
  out.push_back('\0');
  out.append(key);
  return out;
}

// Where a state entry's key, "<table>\0<key>", ends its table name (the
// NUL); npos for any other key (no NUL, or no table name before it).
static size_t TableNameEnd(std::string_view key) {
  const size_t nul = key.find('\0');
  return nul == 0 ? std::string_view::npos : nul;
}

bool SplitChangelogStateKey(std::string_view key, std::pair<std::string, std::string>* out) {
  const size_t nul = TableNameEnd(key);
  if (nul == std::string_view::npos) return false;
  *out = {std::string(key.substr(0, nul)), std::string(key.substr(nul + 1))};
  return true;
}

std::string EncodeChangelogMarker(const ChangelogMarker& m) {
  flatbuffers::FlatBufferBuilder fbb(256);
  auto task = BuildTaskCheckpoint(fbb, m.task, m.epoch);
  auto root = schema::CreateChangelogMarker(fbb, task, fbb.CreateString(m.spec_hash), fbb.CreateString(m.writer),
                                            m.epoch);
  fbb.Finish(root);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

Result<ChangelogMarker> DecodeChangelogMarker(std::string_view bytes) {
  // Kafka hands payloads out at any address; FlatBuffers reads scalars in
  // place, which needs them aligned: an aligned copy first.
  std::vector<uint64_t> aligned((bytes.size() + 7) / 8);
  if (!bytes.empty()) std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const auto* data = reinterpret_cast<const uint8_t*>(aligned.data());
  flatbuffers::Verifier verifier(data, bytes.size());
  if (!verifier.VerifyBuffer<schema::ChangelogMarker>(nullptr)) {
    return Status::Corruption("a changelog marker of " + std::to_string(bytes.size()) + " bytes fails verification");
  }
  const auto* m = flatbuffers::GetRoot<schema::ChangelogMarker>(data);
  if (m->task() == nullptr) return Status::Corruption("a changelog marker has no task checkpoint");
  ChangelogMarker out;
  out.task = TaskCheckpointFrom(*m->task());
  out.spec_hash = m->spec_hash() ? m->spec_hash()->str() : "";
  out.writer = m->writer() ? m->writer()->str() : "";
  out.epoch = m->epoch();
  return out;
}

Result<int32_t> EnsureChangelogTopic(const KafkaConfig& config, const JobSpec& spec, int32_t partitions) {
  auto client = CreateClient(ClientKind::kProducer, config, {});
  if (!client.ok()) return client.status();
  const std::string topic = spec.ChangelogTopic();
  std::string refused;
  // Compacted: the latest value of each key (and the latest marker) is the
  // state. Compaction waits an hour after a write, so the entries a dying
  // writer left after its last marker are rewritten by the next owner long
  // before compaction could drop the values they shadow.
  auto created = CreateTopicIfMissing(client->get(), topic, partitions,
                                      {{"cleanup.policy", "compact"}, {"min.compaction.lag.ms", "3600000"}}, 20000,
                                      &refused);
  if (!created.ok()) return created.status();
  auto count = TopicPartitionCount(client->get(), topic, 10000);
  if (!count.ok()) {
    if (count.status().code() == Status::Code::kNotFound) {
      return Status::FailedPrecondition(
          "the changelog topic " + topic + " does not exist and cannot be created here (" + refused +
          "): create it, compacted, with " + std::to_string(partitions) + " partitions like " + spec.source_topic +
          " (on the embedded broker: kappa broker --topic " + topic + ":" + std::to_string(partitions) + ")");
    }
    return count.status();
  }
  if (*count > partitions) {
    return Status::FailedPrecondition("the changelog topic " + topic + " has " + std::to_string(*count) +
                                      " partitions, but " + spec.source_topic + " has " +
                                      std::to_string(partitions) +
                                      ": a task's state must live in the partition of its input (was the topic "
                                      "recreated?); delete " + topic +
                                      " only if no instance of this version runs, or deploy a new version");
  }
  return *count;
}

Result<std::unique_ptr<ChangelogReader>> ChangelogReader::Create(const KafkaConfig& config, std::string topic) {
  auto client = CreateClient(ClientKind::kConsumer, config,
                             {{"group.id", kChangelogReaderGroup},
                              {"enable.auto.commit", "false"},
                              {"enable.auto.offset.store", "false"},
                              {"auto.offset.reset", "error"},
                              {"enable.partition.eof", "true"},
                              {"max.partition.fetch.bytes", kChangelogPartitionFetchBytes},
                              {"fetch.max.bytes", kChangelogFetchBytes}});
  if (!client.ok()) return client.status();
  std::unique_ptr<ChangelogReader> r(new ChangelogReader());
  r->consumer_ = std::unique_ptr<rd_kafka_s, void (*)(rd_kafka_s*)>(client->release(), [](rd_kafka_s* rk) {
    KafkaHandle handle(rk);
    CloseConsumer(handle, 2000);
  });
  r->topic_ = std::move(topic);
  return r;
}

ChangelogReader::~ChangelogReader() = default;

Status ChangelogReader::Read(int32_t partition, int64_t from, int64_t high,
                             const std::function<void(const Record&)>& fn) {
  if (from >= high) return Status::OK();
  rd_kafka_t* rk = consumer_.get();
  const std::string where = topic_ + "[" + std::to_string(partition) + "]";
  PartitionList assignment(1);
  assignment.Add(topic_, partition, from);
  KAPPA_RETURN_IF_ERROR(StatusFromKafka(rd_kafka_assign(rk, assignment.get()), "cannot read " + where));
  Status st;
  auto last_progress = std::chrono::steady_clock::now();
  for (bool done = false; !done;) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (m == nullptr) {
      if (std::chrono::steady_clock::now() - last_progress > std::chrono::seconds(30)) {
        st = Status::Unavailable("reading " + where + ": no progress for 30 s");
        break;
      }
      continue;
    }
    last_progress = std::chrono::steady_clock::now();
    if (m->err) {
      // The end of what is readable: the high watermark, or under
      // read_committed the last stable offset.
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        done = true;
      } else if (Status refused =
                     ReadRefused(m->err, where, MessageErrorText(m), topic_, kChangelogReaderGroup);
                 !refused.ok()) {
        // The README's ACLs once named only Write on the changelog; both
        // instances stopped on "unavailable" (a bug bash).
        st = Status::PermissionDenied(refused.message() + "; a partition's state is restored from it");
      } else {
        st = Status::Unavailable("reading " + where + ": " + MessageErrorText(m));
      }
      rd_kafka_message_destroy(m);
      if (!st.ok()) break;
      continue;
    }
    if (m->partition == partition && m->offset >= from) {
      fn(Record{m->offset, std::string_view(static_cast<const char*>(m->key), m->key_len),
                std::string_view(static_cast<const char*>(m->payload), m->len), m->payload == nullptr});
      if (m->offset + 1 >= high) done = true;
    }
    rd_kafka_message_destroy(m);
  }
  (void)rd_kafka_assign(rk, nullptr);
  return st;
}

Result<ChangelogTail> ChangelogReader::Tail(int32_t partition) {
  auto marks = QueryWatermarks(consumer_.get(), topic_, partition, 10000);
  if (!marks.ok()) return marks.status();
  ChangelogTail tail;
  tail.empty = marks->high <= marks->low;
  if (tail.empty) return tail;
  // The last two offsets: the marker, and a transaction's commit record.
  bool ends_with_marker = false;
  Status bad;
  KAPPA_RETURN_IF_ERROR(Read(partition, std::max(marks->low, marks->high - 2), marks->high, [&](const Record& r) {
    if (r.key == kMarkerKey && !r.value_null) {
      auto m = DecodeChangelogMarker(r.value);
      if (!m.ok()) {
        bad = m.status();
        return;
      }
      tail.marker = std::move(*m);
      ends_with_marker = true;
    } else {
      ends_with_marker = false;
    }
  }));
  if (!bad.ok()) return Status::Corruption(topic_ + "[" + std::to_string(partition) + "]: " + bad.message());
  if (!ends_with_marker) tail.marker.reset();
  return tail;
}

constexpr char kDamaged[] =
    "; the changelog is damaged: rebuild this version's state from its input "
    "(--reset-state on every instance)";

Result<ChangelogLastMarker> ChangelogReader::LastMarker(int32_t partition) {
  auto marks = QueryWatermarks(consumer_.get(), topic_, partition, 10000);
  if (!marks.ok()) return marks.status();
  const std::string where = topic_ + "[" + std::to_string(partition) + "]";
  ChangelogLastMarker out;
  // What follows the latest marker is one epoch's entries of one task at
  // most: 256 records back, then 8 times as many each time.
  for (int64_t window = 256;; window *= 8) {
    const int64_t from = std::max(marks->low, marks->high - window);
    std::optional<std::string> marker;
    std::vector<std::pair<int64_t, std::string>> after;  // (offset, key) of the entries after it
    KAPPA_RETURN_IF_ERROR(Read(partition, from, marks->high, [&](const Record& r) {
      ++out.records;
      if (r.key != kMarkerKey) {
        after.emplace_back(r.offset, std::string(r.key));
      } else if (!r.value_null) {
        marker = std::string(r.value);
        after.clear();
      }
    }));
    if (!marker && from > marks->low) continue;
    if (marker) {
      auto m = DecodeChangelogMarker(*marker);
      if (!m.ok()) return Status::Corruption(where + ": " + m.status().message() + kDamaged);
      out.marker = std::move(*m);
    }
    std::set<std::pair<std::string, std::string>> keys;
    for (const auto& [offset, key] : after) {
      std::pair<std::string, std::string> k;
      if (!SplitChangelogStateKey(key, &k)) {
        return Status::Corruption(where + ": a record at offset " + std::to_string(offset) +
                                  " has a key that is neither a state entry nor the marker" + kDamaged);
      }
      keys.insert(std::move(k));
    }
    out.orphans.assign(keys.begin(), keys.end());
    return out;
  }
}

Result<ChangelogContents> ChangelogReader::ReadAll(int32_t partition, const NoteCallback& note,
                                                   const std::function<void(const RestoreProgress&)>& progress) {
  ChangelogContents out;
  // By the record's whole key, "<table>\0<key>" (split once at the end): a
  // hash map, since a restore of ~600 k records spent over half its CPU in
  // an ordered map of split keys. nullopt: a tombstone.
  using Values = absl::flat_hash_map<std::string, std::optional<std::string>>;
  Values committed, pending;
  Status bad;
  const auto started = std::chrono::steady_clock::now();
  auto last_note = started;
  auto marks = QueryWatermarks(consumer_.get(), topic_, partition, 10000);
  if (!marks.ok()) return marks.status();
  const int64_t low = marks->low, total = marks->high - marks->low;
  const std::string where = topic_ + "[" + std::to_string(partition) + "]";
  if (progress) progress(RestoreProgress{partition, 0, total, 0, -1});
  KAPPA_RETURN_IF_ERROR(Read(partition, low, marks->high, [&](const Record& r) {
    if (!bad.ok()) return;
    ++out.records;
    out.bytes += static_cast<int64_t>(r.key.size() + r.value.size());
    if (r.key == kMarkerKey) {
      if (r.value_null) return;
      auto m = DecodeChangelogMarker(r.value);
      if (!m.ok()) {
        bad = m.status();
        return;
      }
      // The entries before it are state now.
      if (committed.empty()) {
        committed.swap(pending);
      } else {
        for (auto& [k, v] : pending) committed.insert_or_assign(k, std::move(v));
      }
      pending.clear();
      out.marker = std::move(*m);
    } else {
      if (TableNameEnd(r.key) == std::string_view::npos) {
        bad = Status::Corruption("a record at offset " + std::to_string(r.offset) +
                                 " has a key that is neither a state entry nor the marker");
        return;
      }
      std::optional<std::string>& value = pending[absl::string_view(r.key.data(), r.key.size())];
      if (r.value_null) value.reset();
      else value.emplace(r.value);
    }
    if ((!note && !progress) || out.records % 4096 != 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_note > std::chrono::seconds(2)) {
      last_note = now;
      const double s = std::chrono::duration<double>(now - started).count();
      const double rate = static_cast<double>(out.records) / std::max(1e-3, s);
      const int64_t left = std::max<int64_t>(0, total - (r.offset + 1 - low));
      if (progress) progress(RestoreProgress{partition, out.records, total, out.bytes, static_cast<double>(left) / rate});
      if (!note) return;
      note(NoteLevel::kInfo, "restoring " + where + " from the changelog: " + std::to_string(out.records) +
                                 " records, " + std::to_string(out.bytes >> 20) + " MiB, " +
                                 std::to_string(static_cast<int64_t>(rate)) + " records/s, ETA " +
                                 std::to_string(static_cast<int64_t>(static_cast<double>(left) / rate)) + " s");
    }
  }));
  if (!bad.ok()) {
    return Status::Corruption(where + ": " + bad.message() + kDamaged);
  }
  out.entries.reserve(committed.size());
  for (auto& [k, v] : committed) {
    if (!v) continue;
    const size_t nul = TableNameEnd(k);
    out.entries.push_back({k.substr(0, nul), k.substr(nul + 1), std::move(*v)});
  }
  for (const auto& [k, v] : pending) {
    std::pair<std::string, std::string> split;
    SplitChangelogStateKey(k, &split);
    out.orphans.push_back(std::move(split));
  }
  std::sort(out.orphans.begin(), out.orphans.end());
  return out;
}

Result<ChangelogTail> ReadChangelogTail(const KafkaConfig& config, const std::string& topic, int32_t partition) {
  auto reader = ChangelogReader::Create(config, topic);
  if (!reader.ok()) return reader.status();
  return (*reader)->Tail(partition);
}

Result<ChangelogContents> ReadChangelog(const KafkaConfig& config, const std::string& topic, int32_t partition,
                                        const NoteCallback& note) {
  auto reader = ChangelogReader::Create(config, topic);
  if (!reader.ok()) return reader.status();
  return (*reader)->ReadAll(partition, note);
}

Status ChangelogWriter::Put(int32_t partition, std::string_view table, std::string_view key, std::string_view value) {
  key_.clear();
  key_.append(table);
  key_.push_back('\0');
  key_.append(key);
  ++records_;
  return sink_.ProduceState(topic_, partition, key_, value);
}

Status ChangelogWriter::WriteEpoch(const Task& task, int64_t epoch) {
  const int32_t p = task.partition();
  Status st;
  task.registry().ForEachTable([&](const StateTable& table) {
    if (!st.ok()) return;
    table.ForEachErased([&](std::string_view key) {
      if (st.ok()) st = Put(p, table.name(), key, std::string_view());
    });
    table.ForEachDirty([&](std::string_view key, std::string_view value) {
      // A present value is never a tombstone, even an empty one.
      if (st.ok()) st = Put(p, table.name(), key, value.data() ? value : std::string_view("", 0));
    });
  });
  if (!st.ok()) return st;
  ChangelogMarker m;
  m.task = task.checkpoint();
  m.spec_hash = spec_.spec_hash;
  m.writer = spec_.scale_out.instance;
  m.epoch = epoch;
  ++records_;
  return sink_.ProduceState(topic_, p, kMarkerKey, EncodeChangelogMarker(m));
}

Status ChangelogWriter::WriteAll(int32_t partition, StateBackend& backend, const std::vector<std::string>& tables) {
  return backend.ForEachEntry(partition, tables,
                              [&](const std::string& table, std::string_view key, std::string_view value) {
                                return Put(partition, table, key, value.data() ? value : std::string_view("", 0));
                              });
}

Status ChangelogWriter::Rewrite(int32_t partition, const std::vector<std::pair<std::string, std::string>>& orphans,
                                const std::vector<StateBackend::Entry>& entries) {
  if (orphans.empty()) return Status::OK();
  // The orphans' restored values (absent: a tombstone), in one pass over
  // the entries, which may be the whole partition's state.
  using Key = std::pair<std::string_view, std::string_view>;
  std::map<Key, std::optional<std::string_view>> value;
  for (const auto& [table, key] : orphans) value.emplace(Key(table, key), std::nullopt);
  for (const auto& e : entries) {
    auto it = value.find({e.table, e.key});
    if (it != value.end()) it->second = std::string_view(e.value);
  }
  for (const auto& [k, v] : value) {
    // A present value is never a tombstone, even an empty one.
    const std::string_view bytes = v ? std::string_view(v->data() ? v->data() : "", v->size()) : std::string_view();
    KAPPA_RETURN_IF_ERROR(Put(partition, k.first, k.second, bytes));
  }
  return Status::OK();
}

}  // namespace kappa
