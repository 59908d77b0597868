-- Rollups for the dashboard's global filters: every figure by time bucket x
-- country x segment x category x device, so any combination of filters
-- sums a few rows per bucket instead of scanning facts. Country and segment
-- are the customer's when the event was loaded (as in agg_geo), category the
-- product's.
--
-- agg_sales_slice_*.orders counts the orders with a line in the slice: sums
-- over buckets, countries, segments and devices are exact (an order has one
-- of each), a sum over categories would count a two-category order twice,
-- so order counts without a category filter come from agg_order_slice_*,
-- which has no category.
--
-- Each table holds two grains: minute buckets serve ranges up to a day, hour
-- buckets the longer ones (`grain` leads the key, so a range of one grain is
-- one index range). Maintained like the other rollups: statement triggers
-- over the rows actually inserted, in the loading transaction; one statement
-- per table writes both grains.

LOCK TABLE {schema}.fact_sales, {schema}.fact_activity IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE {schema}.agg_sales_slice (
    grain       text NOT NULL CHECK (grain IN ('minute', 'hour')),
    bucket      timestamptz NOT NULL,
    country     text NOT NULL,
    segment     text NOT NULL,
    category    text NOT NULL,
    device_key  smallint NOT NULL,
    lines       bigint NOT NULL,
    orders      bigint NOT NULL,
    units       bigint NOT NULL,
    gross       numeric NOT NULL,
    discounts   numeric NOT NULL,
    net         numeric NOT NULL,
    PRIMARY KEY (grain, bucket, country, segment, category, device_key)
);

CREATE TABLE {schema}.agg_order_slice (
    grain       text NOT NULL CHECK (grain IN ('minute', 'hour')),
    bucket      timestamptz NOT NULL,
    country     text NOT NULL,
    segment     text NOT NULL,
    device_key  smallint NOT NULL,
    orders      bigint NOT NULL,
    units       bigint NOT NULL,
    net         numeric NOT NULL,
    PRIMARY KEY (grain, bucket, country, segment, device_key)
);

CREATE TABLE {schema}.agg_activity_slice (
    grain       text NOT NULL CHECK (grain IN ('minute', 'hour')),
    bucket      timestamptz NOT NULL,
    country     text NOT NULL,
    segment     text NOT NULL,
    category    text NOT NULL,
    device_key  smallint NOT NULL,
    page_views  bigint NOT NULL,
    cart_adds   bigint NOT NULL,
    PRIMARY KEY (grain, bucket, country, segment, category, device_key)
);

-- The statements that add a set of new fact rows (`source`: the trigger's
-- transition table, or a fact table for the backfill) to the slices. One
-- text for both uses, so the backfill and the triggers cannot disagree.
-- Sorted by key so concurrent loads lock rows in one order and queue
-- instead of deadlocking.
CREATE FUNCTION {schema}.slice_sales_sql(source text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
SELECT ARRAY[
    format(
        'INSERT INTO {schema}.agg_sales_slice AS a (grain, bucket, country, segment, category, device_key,
                                                   lines, orders, units, gross, discounts, net)
         SELECT g.grain, date_trunc(g.grain, s.event_time, ''UTC''), c.country, c.segment, p.category,
                s.device_key, count(*), count(DISTINCT s.order_id), sum(s.quantity), sum(s.line_total),
                sum(s.discount_amount), sum(s.net_amount)
         FROM %s s JOIN {schema}.dim_customer c USING (customer_key)
              JOIN {schema}.dim_product p USING (product_key)
              CROSS JOIN (VALUES (''minute''), (''hour'')) AS g(grain)
         GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
         ON CONFLICT (grain, bucket, country, segment, category, device_key) DO UPDATE SET
             lines = a.lines + EXCLUDED.lines, orders = a.orders + EXCLUDED.orders,
             units = a.units + EXCLUDED.units, gross = a.gross + EXCLUDED.gross,
             discounts = a.discounts + EXCLUDED.discounts, net = a.net + EXCLUDED.net', source),
    format(
        'INSERT INTO {schema}.agg_order_slice AS a (grain, bucket, country, segment, device_key, orders, units, net)
         SELECT g.grain, date_trunc(g.grain, s.event_time, ''UTC''), c.country, c.segment, s.device_key,
                count(DISTINCT s.order_id), sum(s.quantity), sum(s.net_amount)
         FROM %s s JOIN {schema}.dim_customer c USING (customer_key)
              CROSS JOIN (VALUES (''minute''), (''hour'')) AS g(grain)
         GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
         ON CONFLICT (grain, bucket, country, segment, device_key) DO UPDATE SET
             orders = a.orders + EXCLUDED.orders, units = a.units + EXCLUDED.units,
             net = a.net + EXCLUDED.net', source)]
$$;

CREATE FUNCTION {schema}.slice_activity_sql(source text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
SELECT ARRAY[
    format(
        'INSERT INTO {schema}.agg_activity_slice AS a (grain, bucket, country, segment, category, device_key,
                                                      page_views, cart_adds)
         SELECT g.grain, date_trunc(g.grain, f.event_time, ''UTC''), c.country, c.segment, p.category,
                f.device_key, count(*) FILTER (WHERE f.event_type = ''page_view''),
                count(*) FILTER (WHERE f.event_type = ''add_to_cart'')
         FROM %s f JOIN {schema}.dim_customer c USING (customer_key)
              JOIN {schema}.dim_product p USING (product_key)
              CROSS JOIN (VALUES (''minute''), (''hour'')) AS g(grain)
         GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
         ON CONFLICT (grain, bucket, country, segment, category, device_key) DO UPDATE SET
             page_views = a.page_views + EXCLUDED.page_views, cart_adds = a.cart_adds + EXCLUDED.cart_adds',
        source)]
$$;

-- Run statements; a transition table is visible to EXECUTE in its trigger's function.
CREATE FUNCTION {schema}.rollup_sales_slices() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE stmt text;
BEGIN
    FOREACH stmt IN ARRAY {schema}.slice_sales_sql('inserted') LOOP
        EXECUTE stmt;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE FUNCTION {schema}.rollup_activity_slices() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE stmt text;
BEGIN
    FOREACH stmt IN ARRAY {schema}.slice_activity_sql('inserted') LOOP
        EXECUTE stmt;
    END LOOP;
    RETURN NULL;
END
$$;

-- Backfill from the facts already loaded, then keep up with new ones.
DO $$
DECLARE stmt text;
BEGIN
    FOREACH stmt IN ARRAY {schema}.slice_sales_sql('{schema}.fact_sales')
                          || {schema}.slice_activity_sql('{schema}.fact_activity') LOOP
        EXECUTE stmt;
    END LOOP;
END
$$;

CREATE TRIGGER rollup_sales_slices AFTER INSERT ON {schema}.fact_sales
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_sales_slices();

CREATE TRIGGER rollup_activity_slices AFTER INSERT ON {schema}.fact_activity
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_activity_slices();
