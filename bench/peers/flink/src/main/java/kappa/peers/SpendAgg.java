package kappa.peers;

/** count, sum, min, max of amount cents in one (user, hour) window; avg = sum / count. A Flink POJO. */
public class SpendAgg {
  public long count;
  public long sum;
  public long min = Long.MAX_VALUE;
  public long max = Long.MIN_VALUE;

  public SpendAgg() {}

  public SpendAgg add(long cents) {
    count++;
    sum += cents;
    min = Math.min(min, cents);
    max = Math.max(max, cents);
    return this;
  }

  public SpendAgg merge(SpendAgg o) {
    count += o.count;
    sum += o.sum;
    min = Math.min(min, o.min);
    max = Math.max(max, o.max);
    return this;
  }

  public double avg() {
    return (double) sum / (double) count;
  }
}
