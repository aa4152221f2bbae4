// Copies a topic record by record with the Java client (kafka-clients), once
// per compression codec, adding record headers: the way a Java producer in
// front of kappa would write its input. Run as a single-file source program
// (JEP 330; a JRE is enough, it carries the jdk.compiler module):
//   java -cp '<kafka lib>/*' Copy.java BOOTSTRAP SOURCE CODEC=DEST [CODEC=DEST...]
// Each copy keeps every record's partition, key, value and timestamp, and
// gets the headers java.codec=<codec>, java.origin=<partition>/<offset> and
// java.null (a header with a null value). Prints "copied N records to DEST"
// per copy; exits non-zero on any error. The destination topics must exist
// with as many partitions as SOURCE.
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Copy {
  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: Copy BOOTSTRAP SOURCE CODEC=DEST [CODEC=DEST...]");
      System.exit(2);
    }
    String bootstrap = args[0], source = args[1];
    List<ConsumerRecord<byte[], byte[]>> records = readAll(bootstrap, source);
    for (int i = 2; i < args.length; ++i) {
      String[] pair = args[i].split("=", 2);
      String codec = pair[0], dest = pair[1];
      Properties p = new Properties();
      p.put("bootstrap.servers", bootstrap);
      p.put("compression.type", codec);
      p.put("acks", "all");
      p.put("enable.idempotence", "true");
      p.put("linger.ms", "20");
      p.put("batch.size", "65536");
      p.put("max.block.ms", "20000");  // a missing topic or partition fails, not hangs
      try (KafkaProducer<byte[], byte[]> producer =
               new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
        List<java.util.concurrent.Future<?>> acks = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : records) {
          RecordHeaders headers = new RecordHeaders();
          headers.add("java.codec", codec.getBytes("UTF-8"));
          headers.add("java.origin", (r.partition() + "/" + r.offset()).getBytes("UTF-8"));
          headers.add("java.null", null);
          acks.add(producer.send(
              new ProducerRecord<>(dest, r.partition(), r.timestamp(), r.key(), r.value(), headers)));
        }
        producer.flush();
        for (java.util.concurrent.Future<?> f : acks) f.get();  // throws on a failed send
      }
      System.out.println("copied " + records.size() + " records to " + dest);
    }
  }

  // Every record of the topic, partition by partition up to the end offsets
  // as of the start.
  static List<ConsumerRecord<byte[], byte[]>> readAll(String bootstrap, String topic) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("enable.auto.commit", "false");
    p.put("max.poll.records", "5000");
    List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
    try (KafkaConsumer<byte[], byte[]> consumer =
             new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> parts = new ArrayList<>();
      for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(20))) {
        parts.add(new TopicPartition(topic, info.partition()));
      }
      consumer.assign(parts);
      consumer.seekToBeginning(parts);
      Map<TopicPartition, Long> end = new HashMap<>(consumer.endOffsets(parts, Duration.ofSeconds(20)));
      long deadline = System.currentTimeMillis() + 60000;
      while (true) {
        boolean done = true;
        for (TopicPartition tp : parts) done &= consumer.position(tp) >= end.get(tp);
        if (done) break;
        if (System.currentTimeMillis() > deadline) throw new RuntimeException("reading " + topic + " took over 60 s");
        for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) out.add(r);
      }
    }
    return out;
  }
}
