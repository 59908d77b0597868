-- The Spark peer's tables (bench/peers/spark/job.py), in the schema named by the
-- psql variable "schema". Facts carry their natural keys and no foreign keys,
-- as Shopstream's do.
CREATE SCHEMA :"schema";
SET search_path = :"schema";
CREATE TABLE dim_customer (
    customer_key bigserial PRIMARY KEY,
    customer_id  text NOT NULL UNIQUE,
    name text, email text, city text, country text, segment text, signup_date date
);
CREATE TABLE dim_product (
    product_key bigserial PRIMARY KEY,
    product_id  text NOT NULL UNIQUE,
    name text, category text, brand text, list_price numeric(12, 2)
);
CREATE TABLE fact_sales (
    order_id        uuid NOT NULL,
    line_number     int NOT NULL,
    event_id        uuid NOT NULL,
    customer_key    bigint NOT NULL,
    product_key     bigint NOT NULL,
    currency        text NOT NULL,
    payment_method  text NOT NULL,
    quantity        bigint NOT NULL,
    unit_price      numeric(12, 2) NOT NULL,
    discount_amount numeric(12, 2) NOT NULL,
    line_total      numeric(14, 2) NOT NULL,
    net_amount      numeric(14, 2) NOT NULL,
    device          text,
    event_time      timestamptz NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_number)
);
CREATE TABLE fact_activity (
    event_id     uuid PRIMARY KEY,
    event_type   text NOT NULL,
    event_time   timestamptz NOT NULL,
    session_id   uuid NOT NULL,
    customer_key bigint NOT NULL,
    product_key  bigint NOT NULL,
    quantity     bigint NOT NULL,
    device       text,
    channel      text,
    loaded_at    timestamptz NOT NULL DEFAULT now()
);
-- The staging table the JDBC writer truncates and fills each batch: order lines
-- and activity rows (kind), as text read from the JSON; the merge casts.
CREATE UNLOGGED TABLE stage_rows (
    kind text, event_id text, event_type text, event_time text, session_id text, device text, channel text,
    customer_id text, name text, email text, city text, country text, segment text, signup_date text,
    order_id text, currency text, payment_method text, line_number int,
    product_id text, product_name text, category text, brand text, list_price text,
    quantity bigint, unit_price text, discount text
);
