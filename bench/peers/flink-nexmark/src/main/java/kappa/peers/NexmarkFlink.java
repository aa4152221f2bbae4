package kappa.peers;

import java.time.ZoneOffset;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;

/**
 * Nexmark q5 (hot items) and q7 (highest bid) in Flink SQL, the way Flink's own Nexmark suite
 * (github.com/nexmark/nexmark, queries/q5.sql and q7.sql) writes them, over the JSON events of
 * {@code kappa gen --workload nexmark --format json} in Kafka; for scripts/bench_nexmark_peers.sh
 * (issue 16 part 3). Runs in a local MiniCluster inside this one JVM.
 *
 * <p>Adapted to our events, nothing else: the topic holds flat JSON objects with a "type" field
 * ("person", "auction", "bid") instead of the suite's nested rows with an event_type, so the
 * {@code bid} view selects {@code type = 'bid'}; {@code dateTime} is ISO-8601 UTC with ms, read
 * as TIMESTAMP_LTZ(3) (the session time zone is UTC, so windows align on UTC as kappa's do). The
 * watermark is 1 ms behind the largest event time of each Kafka partition (the Kafka source
 * generates it per partition): the events are in event-time order in each partition, so nothing
 * is late, and 1 ms rather than 0 because several events share a millisecond. The source is
 * bounded at the offsets that are the latest at its start, so the job ends by itself after its
 * final watermark. Each query's result goes to a Kafka topic as JSON, with the window end added
 * (the suite's q5 and q7 write to a blackhole sink and leave the window out; the checker needs
 * it to compare per window).
 *
 * <p>Usage: --bootstrap B --input T --output O --query q5|q7 [--parallelism N] [--name N]
 * [--checkpoint-ms MS (5000, kappa's default checkpoint interval; 0: none)].
 */
public final class NexmarkFlink {
  private NexmarkFlink() {}

  // The whole topic, every event type's fields (a missing one is NULL); like the suite's
  // ddl_kafka.sql, but flat.
  static String sourceDdl(String topic, String bootstrap, String group) {
    return "CREATE TABLE nexmark (\n"
        + "  `type` STRING,\n"
        + "  id BIGINT, name STRING, emailAddress STRING, creditCard STRING, city STRING, state STRING,\n"
        + "  itemName STRING, description STRING, initialBid BIGINT, reserve BIGINT,\n"
        + "  expires TIMESTAMP_LTZ(3), seller BIGINT, category BIGINT,\n"
        + "  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,\n"
        + "  `dateTime` TIMESTAMP_LTZ(3), extra STRING,\n"
        + "  WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '0.001' SECOND\n"
        + ") WITH (\n"
        + "  'connector' = 'kafka',\n"
        + "  'topic' = '" + topic + "',\n"
        + "  'properties.bootstrap.servers' = '" + bootstrap + "',\n"
        + "  'properties.group.id' = '" + group + "',\n"
        + "  'scan.startup.mode' = 'earliest-offset',\n"
        + "  'scan.bounded.mode' = 'latest-offset',\n"
        + "  'format' = 'json',\n"
        + "  'json.timestamp-format.standard' = 'ISO-8601'\n"
        + ")";
  }

  // Like the suite's ddl_views.sql.
  static final String BID_VIEW =
      "CREATE VIEW bid AS SELECT auction, bidder, price, channel, url, `dateTime`, extra\n"
      + "FROM nexmark WHERE `type` = 'bid'";

  static String sinkDdl(String query, String topic, String bootstrap) {
    final String columns = query.equals("q5")
        ? "auction BIGINT, num BIGINT, window_end TIMESTAMP(3)"
        : "auction BIGINT, price BIGINT, bidder BIGINT, `dateTime` TIMESTAMP_LTZ(3), extra STRING,"
            + " window_end TIMESTAMP(3)";
    return "CREATE TABLE " + query + "_out (" + columns + ") WITH (\n"
        + "  'connector' = 'kafka',\n"
        + "  'topic' = '" + topic + "',\n"
        + "  'properties.bootstrap.servers' = '" + bootstrap + "',\n"
        + "  'format' = 'json',\n"
        + "  'json.timestamp-format.standard' = 'ISO-8601'\n"
        + ")";
  }

  // Query 5, hot items: per sliding window (10 s, every 2 s) the auctions with the most bids,
  // all of them on a tie: the bid counts per auction and window, joined with their maximum per
  // window.
  static final String Q5 =
      "INSERT INTO q5_out\n"
      + "SELECT AuctionBids.auction, AuctionBids.num, AuctionBids.endtime\n"
      + "FROM (\n"
      + "  SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime\n"
      + "  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))\n"
      + "  GROUP BY auction, window_start, window_end\n"
      + ") AS AuctionBids\n"
      + "JOIN (\n"
      + "  SELECT MAX(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime\n"
      + "  FROM (\n"
      + "    SELECT COUNT(*) AS num, window_start AS starttime, window_end AS endtime\n"
      + "    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))\n"
      + "    GROUP BY auction, window_start, window_end\n"
      + "  ) AS CountBids\n"
      + "  GROUP BY CountBids.starttime, CountBids.endtime\n"
      + ") AS MaxBids\n"
      + "ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime\n"
      + "  AND AuctionBids.num >= MaxBids.maxn";

  // Query 7, highest bid: per tumbling 10 s window its maximum price, joined back with the bids
  // of that window at that price.
  static final String Q7 =
      "INSERT INTO q7_out\n"
      + "SELECT B.auction, B.price, B.bidder, B.`dateTime`, B.extra, B1.`dateTime`\n"
      + "FROM bid B\n"
      + "JOIN (\n"
      + "  SELECT MAX(price) AS maxprice, window_end AS `dateTime`\n"
      + "  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))\n"
      + "  GROUP BY window_start, window_end\n"
      + ") B1\n"
      + "ON B.price = B1.maxprice\n"
      + "WHERE B.`dateTime` BETWEEN B1.`dateTime` - INTERVAL '10' SECOND AND B1.`dateTime`";

  public static void main(String[] args) throws Exception {
    Map<String, String> opt = new HashMap<>();
    opt.put("--parallelism", "1");
    opt.put("--checkpoint-ms", "5000");
    opt.put("--name", "nexmark-flink-" + ProcessHandle.current().pid());
    for (int i = 0; i + 1 < args.length; i += 2) opt.put(args[i], args[i + 1]);
    for (String need : new String[] {"--bootstrap", "--input", "--output", "--query"}) {
      if (!opt.containsKey(need)) {
        System.err.println("NexmarkFlink: missing " + need + " (usage: --bootstrap B --input T --output O"
            + " --query q5|q7 [--parallelism N] [--name N] [--checkpoint-ms MS] [--explain true])");
        System.exit(2);
      }
    }
    final String query = opt.get("--query");
    if (!query.equals("q5") && !query.equals("q7")) {
      System.err.println("NexmarkFlink: --query is q5 or q7, not " + query);
      System.exit(2);
    }
    final int parallelism = Integer.parseInt(opt.get("--parallelism"));
    final long checkpointMs = Long.parseLong(opt.get("--checkpoint-ms"));
    final String bootstrap = opt.get("--bootstrap");

    Configuration conf = new Configuration();
    if (checkpointMs > 0) {
      // Checkpoints to files in a temporary directory: the default (the JobManager's memory)
      // refuses state over 5 MiB.
      java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("nexmark-flink-ckpt");
      conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
      conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, dir.toUri().toString());
    }
    StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
    if (checkpointMs > 0) env.enableCheckpointing(checkpointMs, CheckpointingMode.AT_LEAST_ONCE);
    StreamTableEnvironment tEnv = StreamTableEnvironment.create(env);
    tEnv.getConfig().setLocalTimeZone(ZoneOffset.UTC);
    tEnv.getConfig().set("pipeline.name", opt.get("--name"));
    // Everything else is Flink's default (HashMap state backend, mini-batch off, ...).

    tEnv.executeSql(sourceDdl(opt.get("--input"), bootstrap, opt.get("--name")));
    tEnv.executeSql(BID_VIEW);
    tEnv.executeSql(sinkDdl(query, opt.get("--output"), bootstrap));
    final String insert = query.equals("q5") ? Q5 : Q7;
    if (opt.getOrDefault("--explain", "false").equals("true")) {
      System.err.println(tEnv.explainSql(insert));
    }
    final long t0 = System.nanoTime();
    TableResult result = tEnv.executeSql(insert);
    result.await();
    final long t1 = System.nanoTime();
    final long net = result.getJobClient().get().getJobExecutionResult().get().getNetRuntime();
    System.out.printf("flink_execute_seconds=%.3f job_net_runtime_seconds=%.3f parallelism=%d query=%s%n",
        (t1 - t0) / 1e9, net / 1e3, parallelism, query);
    System.exit(0);
  }
}
