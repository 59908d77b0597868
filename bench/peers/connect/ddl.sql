-- The Kafka Connect peer's tables, in the schema named by the psql variable
-- "schema": the flattener's rows as the Debezium JDBC sink upserts them, keyed
-- as Shopstream's facts are. Created here, not by the sink (schema.evolution =
-- none), so the column types are the same as the other two systems'.
CREATE SCHEMA :"schema";
SET search_path = :"schema";
CREATE TABLE order_lines (
    order_id        uuid NOT NULL,
    line_number     int NOT NULL,
    event_id        uuid NOT NULL,
    event_time      timestamptz NOT NULL,
    customer_id     text NOT NULL,
    country         text,
    segment         text,
    product_id      text NOT NULL,
    category        text,
    currency        text NOT NULL,
    payment_method  text NOT NULL,
    quantity        bigint NOT NULL,
    unit_price      numeric(12, 2) NOT NULL,
    discount_amount numeric(12, 2) NOT NULL,
    line_total      numeric(14, 2) NOT NULL,
    net_amount      numeric(14, 2) NOT NULL,
    device          text,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_number)
);
CREATE TABLE activity (
    event_id    uuid PRIMARY KEY,
    event_type  text NOT NULL,
    event_time  timestamptz NOT NULL,
    session_id  uuid NOT NULL,
    customer_id text NOT NULL,
    product_id  text NOT NULL,
    quantity    bigint NOT NULL,
    device      text,
    channel     text,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);
