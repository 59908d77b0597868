// The Kafka Streams app in front of the Kafka Connect peer (bench/peers): a JDBC
// sink writes one row per record and Connect's transforms map one record to one,
// so a purchase must become its order lines before the sink sees it. This is
// what a Connect user would deploy for that (or ksqlDB's EXPLODE, which is Kafka
// Streams underneath).
//
// In:  the Shopstream event topic (one JSON event per message).
// Out: OUT.lines    one flat JSON object per order line (line totals computed
//                   with BigDecimal, as the worker does with rust_decimal);
//      OUT.activity one flat JSON object per page view or cart add.
// Order status updates and malformed events are dropped (counted in the log):
// the peers load order lines and activity only.
//
// Usage: java -cp CP Flatten BOOTSTRAP IN_TOPIC OUT_PREFIX APPLICATION_ID STATE_DIR
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;

public final class Flatten {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final AtomicLong DROPPED = new AtomicLong();

  /**
   * Output records for one event. The key says which topic a record goes to
   * ("lines|ORDER_ID" or "activity|CUSTOMER_ID") and spreads them over its
   * partitions; the sink takes its primary key from the value.
   */
  static List<KeyValue<String, String>> flatten(String raw) {
    List<KeyValue<String, String>> out = new ArrayList<>();
    try {
      JsonNode e = JSON.readTree(raw);
      String type = e.path("event_type").asText();
      JsonNode customer = e.path("customer");
      if (type.equals("purchase")) {
        JsonNode order = e.path("order");
        for (JsonNode line : order.path("lines")) {
          BigDecimal unit = new BigDecimal(line.path("unit_price").asText());
          BigDecimal discount = new BigDecimal(line.path("discount").asText());
          long quantity = line.path("quantity").asLong();
          BigDecimal total = unit.multiply(BigDecimal.valueOf(quantity));
          ObjectNode row = JSON.createObjectNode();
          row.put("order_id", order.path("order_id").asText());
          row.put("line_number", line.path("line_number").asInt());
          row.put("event_id", e.path("event_id").asText());
          row.put("event_time", e.path("event_time").asText());
          row.put("customer_id", customer.path("customer_id").asText());
          row.put("country", customer.path("country").asText());
          row.put("segment", customer.path("segment").asText());
          row.put("product_id", line.path("product").path("product_id").asText());
          row.put("category", line.path("product").path("category").asText());
          row.put("currency", order.path("currency").asText());
          row.put("payment_method", order.path("payment_method").asText());
          row.put("quantity", quantity);
          row.put("unit_price", unit.toPlainString());
          row.put("discount_amount", discount.toPlainString());
          row.put("line_total", total.toPlainString());
          row.put("net_amount", total.subtract(discount).toPlainString());
          row.put("device", e.path("device").asText(null));
          out.add(KeyValue.pair("lines|" + order.path("order_id").asText(), JSON.writeValueAsString(row)));
        }
      } else if (type.equals("page_view") || type.equals("add_to_cart")) {
        ObjectNode row = JSON.createObjectNode();
        row.put("event_id", e.path("event_id").asText());
        row.put("event_type", type);
        row.put("event_time", e.path("event_time").asText());
        row.put("session_id", e.path("session_id").asText());
        row.put("customer_id", customer.path("customer_id").asText());
        row.put("product_id", e.path("product").path("product_id").asText());
        row.put("quantity", e.path("quantity").asLong(1));
        row.put("device", e.path("device").asText(null));
        row.put("channel", e.path("channel").asText(null));
        out.add(KeyValue.pair("activity|" + customer.path("customer_id").asText(), JSON.writeValueAsString(row)));
      }
    } catch (Exception ex) {
      DROPPED.incrementAndGet();
    }
    return out;
  }

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 5) {
      System.err.println("usage: Flatten BOOTSTRAP IN_TOPIC OUT_PREFIX APPLICATION_ID STATE_DIR");
      System.exit(2);
    }
    String in = args[1];
    String out = args[2];
    Properties props = new Properties();
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
    props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    // One thread: the machine has two cores shared with the broker, Connect and
    // PostgreSQL. At-least-once: the sink upserts on the rows' keys, so a replay
    // after a crash rewrites the same rows.
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> events = builder.stream(in);
    events
        .flatMap((key, value) -> flatten(value))
        .to(
            (key, row, context) -> out + "." + key.substring(0, key.indexOf('|')),
            Produced.with(Serdes.String(), Serdes.String()));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close();
                  System.err.println("flattener: dropped " + DROPPED.get() + " malformed events");
                  done.countDown();
                }));
    streams.start();
    done.await();
  }
}
