package kappa.peers;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.state.WindowStoreIterator;

/**
 * The user-spend job (scripts/jobs/spend_v2.yaml's logic) in Kafka Streams, written the way its
 * documentation recommends: event time from the record (TimestampExtractor), dedup by txn_id with a
 * window store and a processor (the event-deduplication pattern), drop cancelled, hourly tumbling
 * windows per user with a 10 min grace period (RocksDB window store), suppress until the window
 * closes so each window emits one final row, late records to a side topic.
 *
 * <p>The input is keyed by user id (kappa gen keys by user.id), so groupByKey needs no repartition
 * topic and each task (input partition) holds its users' windows, as a kappa task does.
 *
 * <p>End of input: the bench appends one end marker (user "~end", event time 2 h after the last transaction) to every
 * input partition. It closes every window in Kafka Streams (stream time passes end + grace) as
 * kappa's --final-watermark does; once the marker of every partition has gone through the topology
 * the app closes (which flushes the producer and commits) and exits. The marker's own window is
 * never emitted by Kafka Streams; the checker ignores key "~end".
 *
 * <p>usage: SpendStreams --bootstrap B --input T --output O --late L --state-dir D
 *   [--app-id ID] [--threads 1|2] [--guarantee at_least_once|exactly_once_v2]
 */
public final class SpendStreams {
  static final String END_USER = "~end";
  static final Duration SIZE = Duration.ofHours(1);
  static final Duration GRACE = Duration.ofMinutes(10);
  static final Duration DEDUP_TTL = Duration.ofHours(1);
  static final String DEDUP_STORE = "dedup-txn-id";

  /** Partitions whose end marker has been processed (downstream included: forward is synchronous). */
  static final Set<Integer> ENDED = ConcurrentHashMap.newKeySet();

  /** Event time is the transaction's event_time; a malformed record (-1) is skipped and counted. */
  public static final class EventTimeExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      return record.value() instanceof Txn t ? t.eventTimeMs : -1L;
    }
  }

  /**
   * Drops a txn_id already seen within DEDUP_TTL of event time (the documented pattern: a window
   * store whose retention bounds the state; the first record of an id wins).
   */
  static final class Dedup implements FixedKeyProcessor<String, Txn, Txn> {
    private FixedKeyProcessorContext<String, Txn> context;
    private WindowStore<String, Long> seen;

    @Override
    public void init(FixedKeyProcessorContext<String, Txn> context) {
      this.context = context;
      this.seen = context.getStateStore(DEDUP_STORE);
    }

    @Override
    public void process(FixedKeyRecord<String, Txn> record) {
      final Txn t = record.value();
      final long ts = record.timestamp();
      try (WindowStoreIterator<Long> it =
          seen.fetch(t.txnId, ts - DEDUP_TTL.toMillis(), ts + DEDUP_TTL.toMillis())) {
        if (it.hasNext()) return;  // a duplicate
      }
      seen.put(t.txnId, ts, ts);
      context.forward(record);
    }
  }

  /**
   * Kafka Streams drops records behind the grace period without a side output, so the job routes
   * them itself: a record is late when its window's end + grace is at or before the task's stream
   * time (the largest event time the task has read, cancelled and duplicates included), which is
   * kappa's rule (end <= max event time - allowed lateness). Everything forwarded here the window
   * aggregation accepts, since its own observed time never exceeds the task's.
   */
  static final class MarkLate implements FixedKeyProcessor<String, Txn, Txn> {
    private FixedKeyProcessorContext<String, Txn> context;

    @Override
    public void init(FixedKeyProcessorContext<String, Txn> context) {
      this.context = context;
    }

    @Override
    public void process(FixedKeyRecord<String, Txn> record) {
      final long t = record.timestamp();
      final long size = SIZE.toMillis();
      final long end = Math.floorDiv(t, size) * size + size;
      final boolean late = end + GRACE.toMillis() <= context.currentStreamTimeMs();
      context.forward(record.withValue(late ? new LateTxn(record.value()) : record.value()));
      if (END_USER.equals(record.value().userId)) {
        context.recordMetadata().ifPresent(m -> ENDED.add(m.partition()));
      }
    }
  }

  /** A late record on its way to the late topic. */
  static final class LateTxn extends Txn {
    LateTxn(Txn t) {
      super(t.txnId, t.userId, t.status, t.cents, t.currency, t.eventTimeMs, t.raw);
    }
  }

  static String row(String user, long start, long end, SpendAgg a) {
    // The user ids kappa gen writes need no JSON escaping (u0000123).
    return "{\"key\":\"" + user + "\",\"window_start\":" + start + ",\"window_end\":" + end + ",\"count\":" + a.count
        + ",\"sum\":" + a.sum + ",\"min\":" + a.min + ",\"max\":" + a.max + ",\"avg\":" + a.avg() + "}";
  }

  static StreamsBuilder topology(String input, String output, String late) {
    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(Stores.windowStoreBuilder(
        Stores.persistentWindowStore(DEDUP_STORE, DEDUP_TTL.multipliedBy(2).plus(GRACE), DEDUP_TTL, false),
        Serdes.String(), Serdes.Long()));
    KStream<String, Txn> txns = builder.stream(input,
        Consumed.with(Serdes.String(), Txn.serde()).withTimestampExtractor(new EventTimeExtractor()));
    KStream<String, Txn> marked = txns
        .filter((user, t) -> t != null)
        .processValues(Dedup::new, DEDUP_STORE)
        .filter((user, t) -> !"cancelled".equals(t.status))
        .processValues(MarkLate::new);
    marked.filter((user, t) -> t instanceof LateTxn).to(late, Produced.with(Serdes.String(), Txn.serde()));
    marked.filterNot((user, t) -> t instanceof LateTxn)
        .groupByKey(Grouped.with(Serdes.String(), Txn.serde()))
        .windowedBy(TimeWindows.ofSizeAndGrace(SIZE, GRACE))
        .aggregate(SpendAgg::new, (user, t, agg) -> agg.add(t.cents),
            Materialized.<String, SpendAgg, WindowStore<Bytes, byte[]>>as("spend-hourly")
                .withKeySerde(Serdes.String()).withValueSerde(SpendAgg.serde()))
        .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
        .toStream()
        .map((w, agg) -> KeyValue.pair(w.key() + "|" + w.window().end(),
            row(w.key(), w.window().start(), w.window().end(), agg)))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder;
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> opt = new HashMap<>();
    opt.put("--threads", "1");
    opt.put("--guarantee", StreamsConfig.AT_LEAST_ONCE);
    opt.put("--app-id", "spend-streams-" + ProcessHandle.current().pid());
    for (int i = 0; i + 1 < args.length; i += 2) opt.put(args[i], args[i + 1]);
    for (String need : new String[] {"--bootstrap", "--input", "--output", "--late", "--state-dir"}) {
      if (!opt.containsKey(need)) {
        System.err.println("SpendStreams: missing " + need + " (usage: --bootstrap B --input T --output O --late L"
            + " --state-dir D [--app-id ID] [--threads N] [--guarantee at_least_once|exactly_once_v2])");
        System.exit(2);
      }
    }
    final String bootstrap = opt.get("--bootstrap");
    final String input = opt.get("--input");
    int partitions;
    Properties adminProps = new Properties();
    adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(adminProps)) {
      partitions = admin.describeTopics(java.util.List.of(input)).allTopicNames().get().get(input).partitions().size();
    }

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, opt.get("--app-id"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(StreamsConfig.STATE_DIR_CONFIG, opt.get("--state-dir"));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(opt.get("--threads")));
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, opt.get("--guarantee"));
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    // Everything else is Kafka Streams' default (commit interval, record cache, RocksDB settings).

    KafkaStreams streams = new KafkaStreams(topology(input, opt.get("--output"), opt.get("--late")).build(), p);
    streams.setUncaughtExceptionHandler(e -> {
      System.err.println("SpendStreams: stream thread failed: " + e);
      e.printStackTrace();
      System.exit(1);
      return null;
    });
    final long t0 = System.nanoTime();
    streams.start();
    while (ENDED.size() < partitions) {
      if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING) {
        System.err.println("SpendStreams: stopped in state " + streams.state() + " before the end of the input");
        System.exit(1);
      }
      Thread.sleep(20);
    }
    final long t1 = System.nanoTime();
    streams.close(Duration.ofMinutes(2));  // flushes the producer and commits (the transaction under EOS)
    final long t2 = System.nanoTime();
    System.out.printf("streams_seconds_to_end=%.3f close_seconds=%.3f partitions=%d%n", (t1 - t0) / 1e9,
        (t2 - t1) / 1e9, partitions);
  }
}
