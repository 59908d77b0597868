-- Star schema of one pipeline. `{schema}` is replaced by the quoted schema name.
-- Facts carry surrogate keys of every dimension; the loader guarantees the keys
-- exist, so facts have no foreign-key constraints (they would slow bulk loads).

CREATE TABLE {schema}.dim_customer (
    customer_key   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    text NOT NULL UNIQUE,
    name           text NOT NULL,
    email          text NOT NULL,
    city           text NOT NULL,
    country        text NOT NULL,
    segment        text NOT NULL,
    signup_date    date NOT NULL,
    -- Earliest purchase seen: tells new from returning customers.
    first_order_at timestamptz,
    inserted_at    timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.dim_product (
    product_key  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id   text NOT NULL UNIQUE,
    name         text NOT NULL,
    category     text NOT NULL,
    brand        text NOT NULL,
    list_price   numeric(18,2) NOT NULL,
    inserted_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.dim_date (
    date_key     integer PRIMARY KEY,          -- yyyymmdd
    full_date    date NOT NULL UNIQUE,
    year         smallint NOT NULL,
    quarter      smallint NOT NULL,
    month        smallint NOT NULL,
    month_name   text NOT NULL,
    day_of_month smallint NOT NULL,
    day_of_week  smallint NOT NULL,            -- ISO: Monday = 1
    day_name     text NOT NULL,
    iso_week     smallint NOT NULL,
    is_weekend   boolean NOT NULL
);

-- Event times are validated to fall in 2000..2099, so this covers them all.
INSERT INTO {schema}.dim_date
SELECT to_char(d, 'YYYYMMDD')::integer,
       d::date,
       extract(year FROM d)::smallint,
       extract(quarter FROM d)::smallint,
       extract(month FROM d)::smallint,
       trim(to_char(d, 'Month')),
       extract(day FROM d)::smallint,
       extract(isodow FROM d)::smallint,
       trim(to_char(d, 'Day')),
       extract(week FROM d)::smallint,
       extract(isodow FROM d) IN (6, 7)
FROM generate_series('2000-01-01'::date, '2099-12-31'::date, interval '1 day') AS d;

CREATE TABLE {schema}.dim_time (
    time_key  smallint PRIMARY KEY,            -- minute of the day, 0..1439
    hour      smallint NOT NULL,
    minute    smallint NOT NULL,
    label     text NOT NULL,                   -- "HH:MM"
    day_part  text NOT NULL                    -- night, morning, afternoon, evening
);

INSERT INTO {schema}.dim_time
SELECT m,
       m / 60,
       m % 60,
       lpad((m / 60)::text, 2, '0') || ':' || lpad((m % 60)::text, 2, '0'),
       CASE WHEN m < 360 THEN 'night' WHEN m < 720 THEN 'morning'
            WHEN m < 1080 THEN 'afternoon' ELSE 'evening' END
FROM generate_series(0, 1439) AS m;

-- Grain: one order line.
CREATE TABLE {schema}.fact_sales (
    order_id         uuid NOT NULL,
    line_number      integer NOT NULL,
    event_id         uuid NOT NULL,
    session_id       uuid NOT NULL,
    customer_key     bigint NOT NULL,
    product_key      bigint NOT NULL,
    date_key         integer NOT NULL,
    time_key         smallint NOT NULL,
    currency         text NOT NULL,
    payment_method   text NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price       numeric(18,2) NOT NULL,
    discount_amount  numeric(18,2) NOT NULL,
    line_total       numeric(18,2) NOT NULL,   -- quantity * unit_price
    net_amount       numeric(18,2) NOT NULL,   -- line_total - discount_amount
    is_first_order   boolean NOT NULL,         -- the customer's first purchase we have seen
    event_time       timestamptz NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    PRIMARY KEY (order_id, line_number)
);

-- Grain: one page view or cart add.
CREATE TABLE {schema}.fact_activity (
    event_id         uuid PRIMARY KEY,
    event_type       text NOT NULL CHECK (event_type IN ('page_view', 'add_to_cart')),
    session_id       uuid NOT NULL,
    customer_key     bigint NOT NULL,
    product_key      bigint NOT NULL,
    date_key         integer NOT NULL,
    time_key         smallint NOT NULL,
    quantity         integer,                  -- cart adds only
    list_price       numeric(18,2) NOT NULL,
    event_time       timestamptz NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL
);

CREATE TABLE {schema}.dead_letter (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    message_key      bytea,
    payload          bytea,
    error_kind       text NOT NULL,
    error            text NOT NULL,
    kafka_timestamp  timestamptz,
    received_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);

-- The source of truth for consumer positions; committed with the data.
CREATE TABLE {schema}.ingest_offsets (
    consumer_group   text NOT NULL,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    next_offset      bigint NOT NULL CHECK (next_offset >= 0),
    owner            text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

CREATE INDEX ON {schema}.fact_sales (event_time);
CREATE INDEX ON {schema}.fact_sales (date_key, time_key);
CREATE INDEX ON {schema}.fact_sales (product_key);
CREATE INDEX ON {schema}.fact_sales (customer_key);
CREATE INDEX ON {schema}.fact_activity (event_time);
CREATE INDEX ON {schema}.fact_activity (product_key, event_type);
CREATE INDEX ON {schema}.dead_letter (received_at);
