-- Rollups for dashboards, maintained by the loader in the same transaction as
-- the facts (only from rows actually inserted), so they always equal the facts
-- and stay exactly-once. Reads stay fast on any number of fact rows.

CREATE TABLE {schema}.agg_sales_minute (
    bucket      timestamptz PRIMARY KEY,
    orders      bigint NOT NULL,
    units       bigint NOT NULL,
    gross       numeric(20,2) NOT NULL,
    discounts   numeric(20,2) NOT NULL,
    net         numeric(20,2) NOT NULL,
    new_orders  bigint NOT NULL,           -- first orders of their customers
    new_net     numeric(20,2) NOT NULL
);

CREATE TABLE {schema}.agg_activity_minute (
    bucket      timestamptz PRIMARY KEY,
    page_views  bigint NOT NULL,
    cart_adds   bigint NOT NULL
);

CREATE TABLE {schema}.agg_product (
    product_key  bigint PRIMARY KEY,
    views        bigint NOT NULL,
    cart_adds    bigint NOT NULL,
    order_lines  bigint NOT NULL,
    units        bigint NOT NULL,
    net          numeric(20,2) NOT NULL
);

CREATE TABLE {schema}.agg_geo (
    country  text NOT NULL,
    segment  text NOT NULL,
    orders   bigint NOT NULL,
    net      numeric(20,2) NOT NULL,
    PRIMARY KEY (country, segment)
);

-- Backfill from facts already loaded (schemas created before this migration).
INSERT INTO {schema}.agg_sales_minute
SELECT date_trunc('minute', event_time), count(DISTINCT order_id), sum(quantity), sum(line_total),
       sum(discount_amount), sum(net_amount), count(DISTINCT order_id) FILTER (WHERE is_first_order),
       coalesce(sum(net_amount) FILTER (WHERE is_first_order), 0)
FROM {schema}.fact_sales GROUP BY 1;

INSERT INTO {schema}.agg_activity_minute
SELECT date_trunc('minute', event_time), count(*) FILTER (WHERE event_type = 'page_view'),
       count(*) FILTER (WHERE event_type = 'add_to_cart')
FROM {schema}.fact_activity GROUP BY 1;

INSERT INTO {schema}.agg_product
SELECT product_key, sum(views), sum(cart_adds), sum(order_lines), sum(units), sum(net)
FROM (
    SELECT product_key, count(*) FILTER (WHERE event_type = 'page_view') AS views,
           count(*) FILTER (WHERE event_type = 'add_to_cart') AS cart_adds,
           0 AS order_lines, 0 AS units, 0::numeric AS net
    FROM {schema}.fact_activity GROUP BY product_key
    UNION ALL
    SELECT product_key, 0, 0, count(*), sum(quantity), sum(net_amount)
    FROM {schema}.fact_sales GROUP BY product_key
) x
GROUP BY product_key;

INSERT INTO {schema}.agg_geo
SELECT c.country, c.segment, count(DISTINCT f.order_id), sum(f.net_amount)
FROM {schema}.fact_sales f JOIN {schema}.dim_customer c USING (customer_key)
GROUP BY 1, 2;

-- agg_product answers per-product activity now; the index only slowed loads.
DROP INDEX IF EXISTS {schema}.fact_activity_product_key_event_type_idx;
