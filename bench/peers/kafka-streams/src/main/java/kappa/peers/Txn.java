package kappa.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * One transaction as `kappa gen --format json` writes it:
 * {"txn_id", "user": {"id"}, "status", "amount": {"cents", "currency"}, "event_time" (ISO-8601)}.
 * The fields and their strictness are those of scripts/jobs/spend_v2.yaml: a record without one of
 * them, or with a field of the wrong JSON type ("cents":"1234"), is malformed, as it is for kappa.
 */
public class Txn {
  public final String txnId;
  public final String userId;
  public final String status;
  public final long cents;
  public final String currency;
  public final long eventTimeMs;
  /** The record's bytes as read: what goes to the late topic. */
  public final byte[] raw;

  Txn(String txnId, String userId, String status, long cents, String currency, long eventTimeMs, byte[] raw) {
    this.txnId = txnId;
    this.userId = userId;
    this.status = status;
    this.cents = cents;
    this.currency = currency;
    this.eventTimeMs = eventTimeMs;
    this.raw = raw;
  }

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
      long t = Instant.parse(eventTime).toEpochMilli();
      return new Txn(txnId, userId, status, cents.longValue(), currency, t, bytes);
    } catch (java.io.IOException | DateTimeParseException | ArithmeticException e) {
      return null;
    }
  }

  public static Serde<Txn> serde() {
    Serializer<Txn> ser = (topic, t) -> t == null ? null : t.raw;
    Deserializer<Txn> de = (topic, bytes) -> parse(bytes);
    return Serdes.serdeFrom(ser, de);
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
