package kappa.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Instant;
import java.time.format.DateTimeParseException;

/**
 * One transaction as `kappa gen --format json` writes it:
 * {"txn_id", "user": {"id"}, "status", "amount": {"cents", "currency"}, "event_time" (ISO-8601)}.
 * The fields and their strictness are those of scripts/jobs/spend_v2.yaml (and of the Kafka Streams
 * peer): a record without one of them, or with a field of the wrong JSON type, is malformed.
 *
 * <p>A Flink POJO (public fields, no-argument constructor), so it crosses the job's two shuffles with
 * Flink's PojoSerializer, not Kryo.
 */
public class Txn {
  public String txnId;
  public String userId;
  public String status;
  public long cents;
  public long eventTimeMs;
  /** Late by kappa's rule, judged when read (see SpendFlink.Source). */
  public boolean late;
  /** The record's bytes as read, kept only for a late record: what goes to the late topic. */
  public byte[] raw;

  public Txn() {}

  private static final ObjectMapper MAPPER = new ObjectMapper();

  private static String text(JsonNode n) {
    return n != null && n.isTextual() ? n.textValue() : null;
  }

  /** The transaction, or null when the bytes are not one (malformed). */
  public static Txn parse(byte[] bytes) {
    if (bytes == null) return null;
    try {
      JsonNode root = MAPPER.readTree(bytes);
      if (root == null || !root.isObject()) return null;
      String txnId = text(root.get("txn_id"));
      JsonNode user = root.get("user");
      String userId = user == null ? null : text(user.get("id"));
      String status = text(root.get("status"));
      JsonNode amount = root.get("amount");
      JsonNode cents = amount == null ? null : amount.get("cents");
      String currency = amount == null ? null : text(amount.get("currency"));
      String eventTime = text(root.get("event_time"));
      if (txnId == null || userId == null || status == null || cents == null || !cents.isIntegralNumber()
          || !cents.canConvertToLong() || currency == null || eventTime == null) {
        return null;
      }
      Txn t = new Txn();
      t.txnId = txnId;
      t.userId = userId;
      t.status = status;
      t.cents = cents.longValue();
      t.eventTimeMs = Instant.parse(eventTime).toEpochMilli();
      return t;
    } catch (java.io.IOException | DateTimeParseException | ArithmeticException e) {
      return null;
    }
  }
}
