-- Rollups for dashboards, so reads stay fast on any number of fact rows.
--
-- They are maintained by statement-level triggers on the fact tables, from
-- the transition table of rows actually inserted (duplicates skipped by
-- ON CONFLICT DO NOTHING add nothing), in the same transaction as the facts:
-- they always equal the facts and are exactly-once with them, whoever loads
-- (including workers of an older version still running during a rolling
-- upgrade, which know nothing of rollups).

-- Loads wait while the rollups are created and backfilled, then fire the
-- triggers: no fact row can fall between the backfill and the triggers.
LOCK TABLE {schema}.fact_sales, {schema}.fact_activity IN SHARE ROW EXCLUSIVE MODE;

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

-- The same per hour: all-time figures and hour-of-day read 60x fewer rows.
-- Hours are UTC whatever the writer's session time zone.
CREATE TABLE {schema}.agg_sales_hour (LIKE {schema}.agg_sales_minute INCLUDING ALL);

CREATE TABLE {schema}.agg_activity_hour (LIKE {schema}.agg_activity_minute INCLUDING ALL);

-- Per product, split by the fact table that feeds it: each trigger then
-- locks rows of its own tables only, in key order, so concurrent loads queue
-- instead of deadlocking.
CREATE TABLE {schema}.agg_product_sales (
    product_key  bigint PRIMARY KEY,
    order_lines  bigint NOT NULL,
    units        bigint NOT NULL,
    net          numeric(20,2) NOT NULL
);

CREATE TABLE {schema}.agg_product_activity (
    product_key  bigint PRIMARY KEY,
    views        bigint NOT NULL,
    cart_adds    bigint NOT NULL
);

-- Country and segment as they were when the order was loaded.
CREATE TABLE {schema}.agg_geo (
    country  text NOT NULL,
    segment  text NOT NULL,
    orders   bigint NOT NULL,
    net      numeric(20,2) NOT NULL,
    PRIMARY KEY (country, segment)
);

CREATE VIEW {schema}.agg_product AS
SELECT product_key, coalesce(a.views, 0) AS views, coalesce(a.cart_adds, 0) AS cart_adds,
       coalesce(s.order_lines, 0) AS order_lines, coalesce(s.units, 0) AS units,
       coalesce(s.net, 0)::numeric(20,2) AS net
FROM {schema}.agg_product_activity a FULL JOIN {schema}.agg_product_sales s USING (product_key);

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

INSERT INTO {schema}.agg_sales_hour
SELECT date_trunc('hour', bucket, 'UTC'), sum(orders), sum(units), sum(gross), sum(discounts), sum(net),
       sum(new_orders), sum(new_net)
FROM {schema}.agg_sales_minute GROUP BY 1;

INSERT INTO {schema}.agg_activity_hour
SELECT date_trunc('hour', bucket, 'UTC'), sum(page_views), sum(cart_adds)
FROM {schema}.agg_activity_minute GROUP BY 1;

INSERT INTO {schema}.agg_product_sales
SELECT product_key, count(*), sum(quantity), sum(net_amount)
FROM {schema}.fact_sales GROUP BY product_key;

INSERT INTO {schema}.agg_product_activity
SELECT product_key, count(*) FILTER (WHERE event_type = 'page_view'),
       count(*) FILTER (WHERE event_type = 'add_to_cart')
FROM {schema}.fact_activity GROUP BY product_key;

INSERT INTO {schema}.agg_geo
SELECT c.country, c.segment, count(DISTINCT f.order_id), sum(f.net_amount)
FROM {schema}.fact_sales f JOIN {schema}.dim_customer c USING (customer_key)
GROUP BY 1, 2;

CREATE FUNCTION {schema}.rollup_sales() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.agg_sales_minute AS a (bucket, orders, units, gross, discounts, net, new_orders, new_net)
    SELECT date_trunc('minute', event_time), count(DISTINCT order_id), sum(quantity), sum(line_total),
           sum(discount_amount), sum(net_amount), count(DISTINCT order_id) FILTER (WHERE is_first_order),
           coalesce(sum(net_amount) FILTER (WHERE is_first_order), 0)
    FROM inserted GROUP BY 1 ORDER BY 1
    ON CONFLICT (bucket) DO UPDATE SET
        orders = a.orders + EXCLUDED.orders, units = a.units + EXCLUDED.units,
        gross = a.gross + EXCLUDED.gross, discounts = a.discounts + EXCLUDED.discounts,
        net = a.net + EXCLUDED.net, new_orders = a.new_orders + EXCLUDED.new_orders,
        new_net = a.new_net + EXCLUDED.new_net;

    INSERT INTO {schema}.agg_sales_hour AS a (bucket, orders, units, gross, discounts, net, new_orders, new_net)
    SELECT date_trunc('hour', event_time, 'UTC'), count(DISTINCT order_id), sum(quantity), sum(line_total),
           sum(discount_amount), sum(net_amount), count(DISTINCT order_id) FILTER (WHERE is_first_order),
           coalesce(sum(net_amount) FILTER (WHERE is_first_order), 0)
    FROM inserted GROUP BY 1 ORDER BY 1
    ON CONFLICT (bucket) DO UPDATE SET
        orders = a.orders + EXCLUDED.orders, units = a.units + EXCLUDED.units,
        gross = a.gross + EXCLUDED.gross, discounts = a.discounts + EXCLUDED.discounts,
        net = a.net + EXCLUDED.net, new_orders = a.new_orders + EXCLUDED.new_orders,
        new_net = a.new_net + EXCLUDED.new_net;

    INSERT INTO {schema}.agg_product_sales AS a (product_key, order_lines, units, net)
    SELECT product_key, count(*), sum(quantity), sum(net_amount)
    FROM inserted GROUP BY product_key ORDER BY product_key
    ON CONFLICT (product_key) DO UPDATE SET
        order_lines = a.order_lines + EXCLUDED.order_lines, units = a.units + EXCLUDED.units,
        net = a.net + EXCLUDED.net;

    INSERT INTO {schema}.agg_geo AS a (country, segment, orders, net)
    SELECT c.country, c.segment, count(DISTINCT s.order_id), sum(s.net_amount)
    FROM inserted s JOIN {schema}.dim_customer c USING (customer_key)
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (country, segment) DO UPDATE SET
        orders = a.orders + EXCLUDED.orders, net = a.net + EXCLUDED.net;
    RETURN NULL;
END
$$;

CREATE FUNCTION {schema}.rollup_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.agg_activity_minute AS a (bucket, page_views, cart_adds)
    SELECT date_trunc('minute', event_time), count(*) FILTER (WHERE event_type = 'page_view'),
           count(*) FILTER (WHERE event_type = 'add_to_cart')
    FROM inserted GROUP BY 1 ORDER BY 1
    ON CONFLICT (bucket) DO UPDATE SET
        page_views = a.page_views + EXCLUDED.page_views, cart_adds = a.cart_adds + EXCLUDED.cart_adds;

    INSERT INTO {schema}.agg_activity_hour AS a (bucket, page_views, cart_adds)
    SELECT date_trunc('hour', event_time, 'UTC'), count(*) FILTER (WHERE event_type = 'page_view'),
           count(*) FILTER (WHERE event_type = 'add_to_cart')
    FROM inserted GROUP BY 1 ORDER BY 1
    ON CONFLICT (bucket) DO UPDATE SET
        page_views = a.page_views + EXCLUDED.page_views, cart_adds = a.cart_adds + EXCLUDED.cart_adds;

    INSERT INTO {schema}.agg_product_activity AS a (product_key, views, cart_adds)
    SELECT product_key, count(*) FILTER (WHERE event_type = 'page_view'),
           count(*) FILTER (WHERE event_type = 'add_to_cart')
    FROM inserted GROUP BY product_key ORDER BY product_key
    ON CONFLICT (product_key) DO UPDATE SET
        views = a.views + EXCLUDED.views, cart_adds = a.cart_adds + EXCLUDED.cart_adds;
    RETURN NULL;
END
$$;

CREATE TRIGGER rollup_sales AFTER INSERT ON {schema}.fact_sales
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_sales();

CREATE TRIGGER rollup_activity AFTER INSERT ON {schema}.fact_activity
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_activity();

-- agg_product_activity answers per-product activity now; the index only slowed loads.
DROP INDEX IF EXISTS {schema}.fact_activity_product_key_event_type_idx;
