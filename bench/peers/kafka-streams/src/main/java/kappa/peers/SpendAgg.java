package kappa.peers;

import java.nio.ByteBuffer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** count, sum, min, max of amount cents in one (user, hour) window; avg = sum / count. */
public final class SpendAgg {
  public long count;
  public long sum;
  public long min = Long.MAX_VALUE;
  public long max = Long.MIN_VALUE;

  public SpendAgg add(long cents) {
    count++;
    sum += cents;
    min = Math.min(min, cents);
    max = Math.max(max, cents);
    return this;
  }

  public double avg() {
    return (double) sum / (double) count;
  }

  public static Serde<SpendAgg> serde() {
    Serializer<SpendAgg> ser = (topic, a) -> {
      if (a == null) return null;
      return ByteBuffer.allocate(32).putLong(a.count).putLong(a.sum).putLong(a.min).putLong(a.max).array();
    };
    Deserializer<SpendAgg> de = (topic, bytes) -> {
      if (bytes == null) return null;
      ByteBuffer b = ByteBuffer.wrap(bytes);
      SpendAgg a = new SpendAgg();
      a.count = b.getLong();
      a.sum = b.getLong();
      a.min = b.getLong();
      a.max = b.getLong();
      return a;
    };
    return Serdes.serdeFrom(ser, de);
  }
}
