package kappa.peers;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.triggers.Trigger;
import org.apache.flink.streaming.api.windowing.triggers.TriggerResult;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * The user-spend job (scripts/jobs/spend_v2.yaml's logic) in Apache Flink's DataStream API, run in a
 * local MiniCluster inside this one JVM: a KafkaSource from the earliest offsets, bounded by the
 * latest offsets at start (so the job ends by itself), event time from the record with watermarks
 * per Kafka partition, dedup by txn_id (keyed state, 1 h of event time), drop cancelled, hourly
 * tumbling event-time windows per user with 10 min allowed lateness, ONE final row per window (a
 * trigger that fires once, at window end + allowed lateness), late records to a side topic,
 * KafkaSinks at least once (or exactly once with --eos: Kafka transactions committed on
 * checkpoints), checkpoints every 1 s as kappa's spend_peer.yaml does.
 *
 * <p>Late records, kappa's rule: a record is late when its window's end + 10 min is at or before
 * the largest event time read so far from its own Kafka partition (cancelled and duplicates
 * included), as the Kafka Streams peer judges against its task's stream time. Flink's window
 * operator judges against the operator's watermark instead, the minimum over every partition its
 * inputs read, which trails a partition's own time by as much as the partitions drift apart: with
 * 4 partitions on 1 or 2 source subtasks it would keep records kappa calls late. So the source
 * judges each record against its partition's time when it reads it (the deserializer sees each
 * partition's records in order), and the job routes those the way kappa does (after dedup and the
 * cancelled filter) to the late topic. The watermark (per partition: largest event time - 1 ms)
 * never passes a partition's own time, so the window operator, with the same 10 min of allowed
 * lateness, never drops a record the source let through; its late side output goes to the late
 * topic all the same (it stays empty, and anything in it would make the check fail).
 *
 * <p>End of input: the bench appends one end marker (user "~end", event time 2 h after the last
 * transaction) to every partition; the bounded source ends at the offsets that were the latest at
 * start, Flink then sends the final watermark (every window fires) and, with checkpointing, a final
 * checkpoint (which commits the last transaction under --eos). The marker's own window is
 * emitted; the checker ignores key "~end".
 *
 * <p>usage: SpendFlink --bootstrap B --input T --output O --late L --state-dir D [--name N]
 *   [--parallelism 1|2] [--eos]
 */
public final class SpendFlink {
  static final long SIZE_MS = Duration.ofHours(1).toMillis();
  static final long LATENESS_MS = Duration.ofMinutes(10).toMillis();
  static final long DEDUP_TTL_MS = Duration.ofHours(1).toMillis();

  /**
   * Parses each record (a malformed one is skipped) and judges it late or not against its
   * partition's time (the largest event time read so far from that partition, this record
   * included). One instance per source subtask; Flink calls it in the task thread, in each
   * partition's order. The partition times are not checkpointed: the bench runs without failures
   * (after a restart from a checkpoint a record right at the boundary could be judged otherwise).
   */
  static final class Source implements KafkaRecordDeserializationSchema<Txn> {
    private transient Map<Integer, Long> partitionTime;

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Txn> out) {
      final Txn t = Txn.parse(record.value());
      if (t == null) return;
      if (partitionTime == null) partitionTime = new HashMap<>();
      final long time = partitionTime.merge(record.partition(), t.eventTimeMs, Math::max);
      final long end = Math.floorDiv(t.eventTimeMs, SIZE_MS) * SIZE_MS + SIZE_MS;
      t.late = end + LATENESS_MS <= time;
      if (t.late) t.raw = record.value();
      out.collect(t);
    }

    @Override
    public TypeInformation<Txn> getProducedType() {
      return TypeInformation.of(Txn.class);
    }
  }

  static final OutputTag<Txn> LATE = new OutputTag<>("late", TypeInformation.of(Txn.class));

  /**
   * Keyed by txn_id: drops a txn_id already seen within 1 h of event time (the first record of an id
   * wins, as in the Kafka Streams peer), then the cancelled ones; late ones go to the LATE side
   * output. The state of an id is cleared by an event-time timer once the watermark is 2 h 10 min
   * past it (the Kafka Streams peer's dedup retention).
   */
  static final class Dedup extends KeyedProcessFunction<String, Txn, Txn> {
    private transient ValueState<Long> seen;

    @Override
    public void open(OpenContext ctx) {
      seen = getRuntimeContext().getState(new ValueStateDescriptor<>("seen-event-time", Types.LONG));
    }

    @Override
    public void processElement(Txn t, Context ctx, Collector<Txn> out) throws Exception {
      final Long s = seen.value();
      if (s != null && s >= t.eventTimeMs - DEDUP_TTL_MS && s <= t.eventTimeMs + DEDUP_TTL_MS) return;
      seen.update(t.eventTimeMs);
      ctx.timerService().registerEventTimeTimer(t.eventTimeMs + 2 * DEDUP_TTL_MS + LATENESS_MS);
      if ("cancelled".equals(t.status)) return;
      if (t.late) {
        ctx.output(LATE, t);
      } else {
        out.collect(t);
      }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Txn> out) throws Exception {
      final Long s = seen.value();
      if (s != null && s + 2 * DEDUP_TTL_MS + LATENESS_MS <= timestamp) seen.clear();
    }
  }

  /**
   * Fires a window once, when the watermark passes its end + allowed lateness (the time the window
   * operator then clears it): one final row per window, as kappa and Kafka Streams' suppress
   * untilWindowCloses emit. Flink's EventTimeTrigger would fire at the end and again for every
   * record within the allowed lateness.
   */
  static final class FinalTrigger extends Trigger<Txn, TimeWindow> {
    private long closeTime(TimeWindow w) {
      return w.maxTimestamp() + LATENESS_MS;
    }

    @Override
    public TriggerResult onElement(Txn t, long ts, TimeWindow w, TriggerContext ctx) {
      ctx.registerEventTimeTimer(closeTime(w));
      return TriggerResult.CONTINUE;
    }

    @Override
    public TriggerResult onEventTime(long time, TimeWindow w, TriggerContext ctx) {
      return time == closeTime(w) ? TriggerResult.FIRE_AND_PURGE : TriggerResult.CONTINUE;
    }

    @Override
    public TriggerResult onProcessingTime(long time, TimeWindow w, TriggerContext ctx) {
      return TriggerResult.CONTINUE;
    }

    @Override
    public void clear(TimeWindow w, TriggerContext ctx) {
      ctx.deleteEventTimeTimer(closeTime(w));
    }
  }

  static final class Spend implements AggregateFunction<Txn, SpendAgg, SpendAgg> {
    @Override
    public SpendAgg createAccumulator() {
      return new SpendAgg();
    }

    @Override
    public SpendAgg add(Txn t, SpendAgg a) {
      return a.add(t.cents);
    }

    @Override
    public SpendAgg getResult(SpendAgg a) {
      return a;
    }

    @Override
    public SpendAgg merge(SpendAgg a, SpendAgg b) {
      return a.merge(b);
    }
  }

  /** The output row: Kafka key "user|window_end", value the JSON row kappa writes. */
  static final class Row extends ProcessWindowFunction<SpendAgg, String[], String, TimeWindow> {
    @Override
    public void process(String user, Context ctx, Iterable<SpendAgg> aggs, Collector<String[]> out) {
      final SpendAgg a = aggs.iterator().next();
      final TimeWindow w = ctx.window();
      // The user ids kappa gen writes need no JSON escaping (u0000123).
      out.collect(new String[] {user + "|" + w.getEnd(),
          "{\"key\":\"" + user + "\",\"window_start\":" + w.getStart() + ",\"window_end\":" + w.getEnd()
              + ",\"count\":" + a.count + ",\"sum\":" + a.sum + ",\"min\":" + a.min + ",\"max\":" + a.max
              + ",\"avg\":" + a.avg() + "}"});
    }
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> opt = new HashMap<>();
    opt.put("--parallelism", "1");
    opt.put("--name", "spend-flink-" + ProcessHandle.current().pid());
    boolean eos = false;
    for (int i = 0; i < args.length; ++i) {
      if (args[i].equals("--eos")) {
        eos = true;
      } else if (i + 1 < args.length) {
        opt.put(args[i], args[++i]);
      }
    }
    for (String need : new String[] {"--bootstrap", "--input", "--output", "--late", "--state-dir"}) {
      if (!opt.containsKey(need)) {
        System.err.println("SpendFlink: missing " + need + " (usage: --bootstrap B --input T --output O --late L"
            + " --state-dir D [--name N] [--parallelism N] [--eos])");
        System.exit(2);
      }
    }
    final String bootstrap = opt.get("--bootstrap");
    final String name = opt.get("--name");
    final int parallelism = Integer.parseInt(opt.get("--parallelism"));

    Configuration conf = new Configuration();
    // Checkpoints to files: the default (the JobManager's memory) refuses state over 5 MiB.
    conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
    conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY,
        new java.io.File(opt.get("--state-dir")).getAbsoluteFile().toURI().toString());
    // State in RocksDB, as Flink recommends for state that outgrows the heap (and as kappa keeps it),
    // its working files under the state dir.
    conf.set(ConfigOptions.key("state.backend.type").stringType().noDefaultValue(), "rocksdb");
    conf.set(ConfigOptions.key("state.backend.rocksdb.localdir").stringType().noDefaultValue(),
        new java.io.File(opt.get("--state-dir"), "rocksdb").getAbsolutePath());
    StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
    // Every 10 s (kappa's spend_peer.yaml checkpoints every 1 s: more often, not less); under --eos
    // each checkpoint commits a Kafka transaction.
    env.enableCheckpointing(10000, eos ? CheckpointingMode.EXACTLY_ONCE : CheckpointingMode.AT_LEAST_ONCE);
    // Everything else is Flink's default (network buffers, producer settings, full checkpoints).

    KafkaSource<Txn> source = KafkaSource.<Txn>builder()
        .setBootstrapServers(bootstrap)
        .setTopics(opt.get("--input"))
        .setGroupId(name)
        .setStartingOffsets(OffsetsInitializer.earliest())
        .setBounded(OffsetsInitializer.latest())
        .setDeserializer(new Source())
        .build();
    // Watermarks per Kafka partition (the source's own per-split generation): largest event time - 1 ms.
    WatermarkStrategy<Txn> watermarks =
        WatermarkStrategy.<Txn>forMonotonousTimestamps().withTimestampAssigner((t, ts) -> t.eventTimeMs);
    DataStream<Txn> txns = env.fromSource(source, watermarks, "transactions");

    SingleOutputStreamOperator<Txn> kept = txns.keyBy(t -> t.txnId).process(new Dedup()).name("dedup txn_id");
    final OutputTag<Txn> windowLate = new OutputTag<>("window-late", TypeInformation.of(Txn.class));
    SingleOutputStreamOperator<String[]> rows = kept
        .keyBy(t -> t.userId)
        .window(TumblingEventTimeWindows.of(Duration.ofMillis(SIZE_MS)))
        .allowedLateness(Duration.ofMillis(LATENESS_MS))
        .trigger(new FinalTrigger())
        .sideOutputLateData(windowLate)
        .aggregate(new Spend(), new Row(), TypeInformation.of(SpendAgg.class), TypeInformation.of(SpendAgg.class),
            TypeInformation.of(String[].class))
        .name("spend hourly");

    final DeliveryGuarantee guarantee = eos ? DeliveryGuarantee.EXACTLY_ONCE : DeliveryGuarantee.AT_LEAST_ONCE;
    final String output = opt.get("--output");
    final String lateTopic = opt.get("--late");
    rows.sinkTo(KafkaSink.<String[]>builder()
        .setBootstrapServers(bootstrap)
        .setDeliveryGuarantee(guarantee)
        .setTransactionalIdPrefix(name + "-rows")
        .setProperty("transaction.timeout.ms", "600000")  // the broker allows at most 15 min
        .setRecordSerializer((KafkaRecordSerializationSchema<String[]>) (r, ctx, ts) ->
            new ProducerRecord<>(output, utf8(r[0]), utf8(r[1])))
        .build()).name("rows to Kafka");
    // Late by the source's judgement, and (never, see above) anything the window operator found late.
    kept.getSideOutput(LATE).union(rows.getSideOutput(windowLate))
        .sinkTo(KafkaSink.<Txn>builder()
            .setBootstrapServers(bootstrap)
            .setDeliveryGuarantee(guarantee)
            .setTransactionalIdPrefix(name + "-late")
            .setProperty("transaction.timeout.ms", "600000")
            .setRecordSerializer((KafkaRecordSerializationSchema<Txn>) (t, ctx, ts) ->
                new ProducerRecord<>(lateTopic, utf8(t.userId),
                    t.raw != null ? t.raw : utf8("{\"dropped_by_flink_window\":\"" + t.txnId + "\"}")))
            .build()).name("late to Kafka");

    final long t0 = System.nanoTime();
    JobExecutionResult result = env.execute(name);
    final long t1 = System.nanoTime();
    System.out.printf("flink_execute_seconds=%.3f job_net_runtime_seconds=%.3f parallelism=%d%n", (t1 - t0) / 1e9,
        result.getNetRuntime() / 1e3, parallelism);
  }
}
