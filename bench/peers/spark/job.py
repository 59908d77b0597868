"""The Spark peer (bench/peers): the stack Shopstream replaces, done competently.

A Structured Streaming query reads the event topic, parses the JSON with an
explicit schema, and in foreachBatch loads a small star schema over JDBC:
customer and product dimensions (SCD type 1 upserts), an order-line fact and an
activity fact. Each batch is written with Spark's batched JDBC writer into a
staging table, then merged in ONE PostgreSQL transaction: dimensions upserted,
facts inserted with ON CONFLICT DO NOTHING on their natural keys. Spark's sink is
at-least-once (a batch interrupted by a crash runs again from the checkpoint), so
the keys are what makes a replay harmless.

Usage: job.py BOOTSTRAP TOPIC JDBC_URL SCHEMA CHECKPOINT_DIR
The tables come from ddl.sql (scripts/bench-peers.sh applies it).
"""

import os
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, LongType, StringType, StructField, StructType

PRODUCT = StructType(
    [
        StructField("product_id", StringType()),
        StructField("name", StringType()),
        StructField("category", StringType()),
        StructField("brand", StringType()),
        StructField("list_price", StringType()),
    ]
)
EVENT = StructType(
    [
        StructField("event_id", StringType()),
        StructField("event_type", StringType()),
        StructField("event_time", StringType()),
        StructField("session_id", StringType()),
        StructField(
            "customer",
            StructType(
                [
                    StructField(name, StringType())
                    for name in ("customer_id", "name", "email", "city", "country", "segment", "signup_date")
                ]
            ),
        ),
        StructField("product", PRODUCT),
        StructField("quantity", LongType()),
        StructField(
            "order",
            StructType(
                [
                    StructField("order_id", StringType()),
                    StructField("currency", StringType()),
                    StructField("payment_method", StringType()),
                    StructField(
                        "lines",
                        ArrayType(
                            StructType(
                                [
                                    StructField("line_number", IntegerType()),
                                    StructField("product", PRODUCT),
                                    StructField("quantity", LongType()),
                                    StructField("unit_price", StringType()),
                                    StructField("discount", StringType()),
                                ]
                            )
                        ),
                    ),
                ]
            ),
        ),
        StructField("device", StringType()),
        StructField("channel", StringType()),
    ]
)

# Money stays text until PostgreSQL casts it to numeric: exact, no binary floats.
# The dimensions take each key's newest attributes in the batch (SCD type 1).
MERGE = """
INSERT INTO {s}.dim_customer AS d (customer_id, name, email, city, country, segment, signup_date)
SELECT DISTINCT ON (customer_id) customer_id, name, email, city, country, segment, signup_date::date
FROM {s}.stage_rows ORDER BY customer_id, event_time DESC
ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, city = EXCLUDED.city,
    country = EXCLUDED.country, segment = EXCLUDED.segment, signup_date = EXCLUDED.signup_date;
INSERT INTO {s}.dim_product AS d (product_id, name, category, brand, list_price)
SELECT DISTINCT ON (product_id) product_id, product_name, category, brand, list_price::numeric
FROM {s}.stage_rows ORDER BY product_id, event_time DESC
ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category,
    brand = EXCLUDED.brand, list_price = EXCLUDED.list_price;
INSERT INTO {s}.fact_sales (order_id, line_number, event_id, customer_key, product_key, currency, payment_method,
    quantity, unit_price, discount_amount, line_total, net_amount, device, event_time)
SELECT l.order_id::uuid, l.line_number, l.event_id::uuid, c.customer_key, p.product_key, l.currency,
    l.payment_method, l.quantity, l.unit_price::numeric, l.discount::numeric,
    l.unit_price::numeric * l.quantity, l.unit_price::numeric * l.quantity - l.discount::numeric,
    l.device, l.event_time::timestamptz
FROM {s}.stage_rows l
JOIN {s}.dim_customer c ON c.customer_id = l.customer_id
JOIN {s}.dim_product p ON p.product_id = l.product_id
WHERE l.kind = 'line'
ON CONFLICT (order_id, line_number) DO NOTHING;
INSERT INTO {s}.fact_activity (event_id, event_type, event_time, session_id, customer_key, product_key,
    quantity, device, channel)
SELECT a.event_id::uuid, a.event_type, a.event_time::timestamptz, a.session_id::uuid, c.customer_key,
    p.product_key, a.quantity, a.device, a.channel
FROM {s}.stage_rows a
JOIN {s}.dim_customer c ON c.customer_id = a.customer_id
JOIN {s}.dim_product p ON p.product_id = a.product_id
WHERE a.kind = 'activity'
ON CONFLICT (event_id) DO NOTHING;
"""
CUSTOMER = ("customer_id", "name", "email", "city", "country", "segment", "signup_date")


def main(bootstrap, topic, jdbc_url, schema, checkpoint):
    jars = os.environ["PEERS_SPARK_JARS"]
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("shopstream-peer-spark")
        .config("spark.jars", jars)
        # java.sql.DriverManager (the merge's connection) sees only the JVM's own
        # class path, not spark.jars.
        .config("spark.driver.extraClassPath", os.environ["PEERS_POSTGRES_JDBC_JAR"])
        .config("spark.driver.memory", "2g")
        .config("spark.sql.shuffle.partitions", 2)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    jvm = spark.sparkContext._gateway.jvm

    def write_batch(batch, batch_id):
        # One staging write per batch (each Spark action costs a job's overhead):
        # order lines and activity rows in one table, with the customer's and the
        # product's attributes the merge takes the dimensions from.
        batch.persist()
        customer = [F.col(f"customer.{c}").alias(c) for c in CUSTOMER]
        lines = batch.where("event_type = 'purchase'").select(
            "event_id", "event_type", "event_time", "session_id", "device", "channel", *customer,
            F.col("order.order_id").alias("order_id"), F.col("order.currency").alias("currency"),
            F.col("order.payment_method").alias("payment_method"), F.explode("order.lines").alias("l"),
        ).select(
            F.lit("line").alias("kind"), "*", F.col("l.line_number").alias("line_number"),
            F.col("l.product.product_id").alias("product_id"), F.col("l.product.name").alias("product_name"),
            F.col("l.product.category").alias("category"), F.col("l.product.brand").alias("brand"),
            F.col("l.product.list_price").alias("list_price"), F.col("l.quantity").alias("quantity"),
            F.col("l.unit_price").alias("unit_price"), F.col("l.discount").alias("discount"),
        ).drop("l")
        activity = batch.where("event_type IN ('page_view', 'add_to_cart')").select(
            F.lit("activity").alias("kind"), "event_id", "event_type", "event_time", "session_id", "device",
            "channel", *customer, F.col("product.product_id").alias("product_id"),
            F.col("product.name").alias("product_name"), F.col("product.category").alias("category"),
            F.col("product.brand").alias("brand"), F.col("product.list_price").alias("list_price"),
            F.coalesce("quantity", F.lit(1)).alias("quantity"),
        )
        rows = lines.unionByName(activity, allowMissingColumns=True).where(
            "customer_id IS NOT NULL AND product_id IS NOT NULL"
        )
        # Spark's JDBC writer: batched INSERTs (rewritten into multi-row ones by
        # the driver's reWriteBatchedInserts), one connection per partition.
        (
            rows.write.format("jdbc")
            .option("url", jdbc_url)
            .option("dbtable", f"{schema}.stage_rows")
            .option("batchsize", 10000)
            .option("truncate", "true")
            .mode("overwrite")
            .save()
        )
        conn = jvm.java.sql.DriverManager.getConnection(jdbc_url)
        try:
            conn.setAutoCommit(False)
            conn.createStatement().execute(MERGE.format(s=schema))
            conn.commit()
        finally:
            conn.close()
        batch.unpersist()

    events = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", 100000)
        .load()
        .select(F.from_json(F.col("value").cast("string"), EVENT).alias("e"))
        .select("e.*")
    )
    query = events.writeStream.foreachBatch(write_batch).option("checkpointLocation", checkpoint).start()
    query.awaitTermination()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit("usage: job.py BOOTSTRAP TOPIC JDBC_URL SCHEMA CHECKPOINT_DIR")
    main(*sys.argv[1:])
