-- Rollups for the dashboard's global filters: sales and activity by time
-- bucket x country x segment x category x device, so any combination of
-- filters over any time range sums a few rows per bucket instead of
-- scanning facts. Three grains (minute, hour, day) in one table, the grain
-- leading the key: each time range reads one grain (see the dashboard's
-- `filters.rs`). Country and segment are the customer's, category the
-- product's, as the loader knew them when it loaded the row.
--
-- agg_slice.orders counts the orders with a line in the slice's category: a
-- sum over categories would count a two-category order twice, so order
-- counts without a category filter come from agg_order_slice, which has no
-- category (and has the payment method instead).
--
-- Upserting these rows in every loading transaction cost a quarter of the
-- drain rate (measured), so loads only append pre-aggregated rows to
-- slice_queue (no index, no conflicts) and fold_slices() moves them into the
-- rollups every few seconds, under an advisory lock, in one transaction:
-- every queued row is counted exactly once, and readers add the queue to the
-- rollups (v_slice, v_order_slice), so they are exact at every moment.
--
-- Shopstream's loader aggregates its rows itself (only the rows its insert
-- returned) and marks its session with shopstream.loader_slices = on; for
-- every other writer (an older worker during a rolling upgrade, a manual
-- backfill) the triggers below queue the rows from the statement's
-- transition table. The SQL here is the definition; the loader's
-- aggregation (worker/src/slices.rs) is tested against it.

LOCK TABLE {schema}.fact_sales, {schema}.fact_activity IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE {schema}.agg_slice (
    grain       text NOT NULL CHECK (grain IN ('minute', 'hour', 'day')),
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
    page_views  bigint NOT NULL,
    cart_adds   bigint NOT NULL,
    PRIMARY KEY (grain, bucket, country, segment, category, device_key)
) PARTITION BY LIST (grain);
-- One partition per grain: a range read scans only its grain's rows, which
-- lie together instead of among the (far more numerous) minute rows.
CREATE TABLE {schema}.agg_slice_minute PARTITION OF {schema}.agg_slice FOR VALUES IN ('minute');
CREATE TABLE {schema}.agg_slice_hour PARTITION OF {schema}.agg_slice FOR VALUES IN ('hour');
CREATE TABLE {schema}.agg_slice_day PARTITION OF {schema}.agg_slice FOR VALUES IN ('day');

CREATE TABLE {schema}.agg_order_slice (
    grain       text NOT NULL CHECK (grain IN ('minute', 'hour', 'day')),
    bucket      timestamptz NOT NULL,
    country     text NOT NULL,
    segment     text NOT NULL,
    device_key  smallint NOT NULL,
    payment_method text NOT NULL,
    orders      bigint NOT NULL,
    units       bigint NOT NULL,
    gross       numeric NOT NULL,
    discounts   numeric NOT NULL,
    net         numeric NOT NULL,
    PRIMARY KEY (grain, bucket, country, segment, device_key, payment_method)
);

-- Minute rows waiting to be folded. category NULL: an order-level row
-- (agg_order_slice), which has a payment method instead.
CREATE TABLE {schema}.slice_queue (
    bucket      timestamptz NOT NULL,
    country     text NOT NULL,
    segment     text NOT NULL,
    category    text,
    device_key  smallint NOT NULL,
    payment_method text,
    lines       bigint NOT NULL,
    orders      bigint NOT NULL,
    units       bigint NOT NULL,
    gross       numeric NOT NULL,
    discounts   numeric NOT NULL,
    net         numeric NOT NULL,
    page_views  bigint NOT NULL,
    cart_adds   bigint NOT NULL
);

-- The queue rows of a set of new fact rows (`sales` and `activity`: the
-- trigger's transition table, or a fact table for the backfill).
CREATE FUNCTION {schema}.slice_queue_sql(sales text, activity text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT format(
    'INSERT INTO {schema}.slice_queue
     SELECT date_trunc(''minute'', s.event_time, ''UTC''), c.country, c.segment, p.category, s.device_key,
            NULL, count(*), count(DISTINCT s.order_id), sum(s.quantity), sum(s.line_total),
            sum(s.discount_amount), sum(s.net_amount), 0, 0
     FROM %1$s s JOIN {schema}.dim_customer c USING (customer_key) JOIN {schema}.dim_product p USING (product_key)
     GROUP BY 1, 2, 3, 4, 5
     UNION ALL
     SELECT date_trunc(''minute'', s.event_time, ''UTC''), c.country, c.segment, NULL, s.device_key,
            s.payment_method, count(*), count(DISTINCT s.order_id), sum(s.quantity), sum(s.line_total),
            sum(s.discount_amount), sum(s.net_amount), 0, 0
     FROM %1$s s JOIN {schema}.dim_customer c USING (customer_key)
     GROUP BY 1, 2, 3, 5, 6
     UNION ALL
     SELECT date_trunc(''minute'', a.event_time, ''UTC''), c.country, c.segment, p.category, a.device_key,
            NULL, 0, 0, 0, 0, 0, 0, count(*) FILTER (WHERE a.event_type = ''page_view''),
            count(*) FILTER (WHERE a.event_type = ''add_to_cart'')
     FROM %2$s a JOIN {schema}.dim_customer c USING (customer_key) JOIN {schema}.dim_product p USING (product_key)
     GROUP BY 1, 2, 3, 4, 5',
    sales, activity)
$$;

-- Move every queued row into the rollups; -1 if another session is folding.
CREATE FUNCTION {schema}.fold_slices() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1397506371, hashtext('{schema}')) THEN  -- "SLIC"
        RETURN -1;
    END IF;
    WITH q AS (
        DELETE FROM {schema}.slice_queue RETURNING *
    ), g AS (
        SELECT g.grain, date_trunc(g.grain, q.bucket, 'UTC') AS bucket, country, segment, category, device_key,
               payment_method, sum(lines) AS lines, sum(orders) AS orders, sum(units) AS units, sum(gross) AS gross,
               sum(discounts) AS discounts, sum(net) AS net, sum(page_views) AS page_views,
               sum(cart_adds) AS cart_adds, count(*) AS queued
        FROM q CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g(grain)
        GROUP BY 1, 2, 3, 4, 5, 6, 7
    ), s AS (
        INSERT INTO {schema}.agg_slice AS a
        SELECT grain, bucket, country, segment, category, device_key, lines, orders, units, gross, discounts,
               net, page_views, cart_adds
        FROM g WHERE category IS NOT NULL
        ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (grain, bucket, country, segment, category, device_key) DO UPDATE SET
            lines = a.lines + EXCLUDED.lines, orders = a.orders + EXCLUDED.orders,
            units = a.units + EXCLUDED.units, gross = a.gross + EXCLUDED.gross,
            discounts = a.discounts + EXCLUDED.discounts, net = a.net + EXCLUDED.net,
            page_views = a.page_views + EXCLUDED.page_views, cart_adds = a.cart_adds + EXCLUDED.cart_adds
    ), o AS (
        INSERT INTO {schema}.agg_order_slice AS a
        SELECT grain, bucket, country, segment, device_key, payment_method, orders, units, gross, discounts, net
        FROM g WHERE category IS NULL
        ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (grain, bucket, country, segment, device_key, payment_method) DO UPDATE SET
            orders = a.orders + EXCLUDED.orders, units = a.units + EXCLUDED.units,
            gross = a.gross + EXCLUDED.gross, discounts = a.discounts + EXCLUDED.discounts,
            net = a.net + EXCLUDED.net
    )
    SELECT coalesce(sum(queued), 0) / 3 INTO folded FROM g;
    RETURN folded;
END
$$;

-- What readers sum: the rollups plus the rows not folded yet, at every grain.
CREATE VIEW {schema}.v_slice AS
SELECT grain, bucket, country, segment, category, device_key, lines, orders, units, gross, discounts, net,
       page_views, cart_adds
FROM {schema}.agg_slice
UNION ALL
SELECT g.grain, date_trunc(g.grain, q.bucket, 'UTC'), country, segment, category, device_key, lines, orders,
       units, gross, discounts, net, page_views, cart_adds
FROM {schema}.slice_queue q CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g(grain)
WHERE q.category IS NOT NULL;

CREATE VIEW {schema}.v_order_slice AS
SELECT grain, bucket, country, segment, device_key, payment_method, orders, units, gross, discounts, net
FROM {schema}.agg_order_slice
UNION ALL
SELECT g.grain, date_trunc(g.grain, q.bucket, 'UTC'), country, segment, device_key, payment_method, orders,
       units, gross, discounts, net
FROM {schema}.slice_queue q CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g(grain)
WHERE q.category IS NULL;

-- Sales under the filters (NULL: no filter), per bucket of p_grain in
-- [p_from, p_to): whole orders from v_order_slice, or with a category the
-- lines of that category from v_slice (whose orders are the orders with such
-- a line). The one place that choice is made: the dashboard's API and the
-- Grafana panels both call this. Inlined, so each call is planned with its
-- filters as constants.
CREATE FUNCTION {schema}.sales_slices(p_grain text, p_from timestamptz, p_to timestamptz, p_country text,
                                      p_segment text, p_category text, p_device smallint)
RETURNS TABLE (bucket timestamptz, country text, segment text, device_key smallint, payment_method text,
               orders bigint, units bigint, gross numeric, discounts numeric, net numeric)
LANGUAGE sql STABLE AS $$
    SELECT bucket, country, segment, device_key, payment_method, orders, units, gross, discounts, net
    FROM {schema}.v_order_slice
    WHERE p_category IS NULL AND grain = p_grain
      AND (p_from IS NULL OR bucket >= p_from) AND (p_to IS NULL OR bucket < p_to)
      AND (p_country IS NULL OR country = p_country) AND (p_segment IS NULL OR segment = p_segment)
      AND (p_device IS NULL OR device_key = p_device)
    UNION ALL
    SELECT bucket, country, segment, device_key, NULL, orders, units, gross, discounts, net
    FROM {schema}.v_slice
    WHERE p_category IS NOT NULL AND category = p_category AND grain = p_grain
      AND (p_from IS NULL OR bucket >= p_from) AND (p_to IS NULL OR bucket < p_to)
      AND (p_country IS NULL OR country = p_country) AND (p_segment IS NULL OR segment = p_segment)
      AND (p_device IS NULL OR device_key = p_device)
$$;

-- Sales and activity per bucket under the filters. Without dimension
-- filters the per-bucket rollups of migration 0003 answer (one row per
-- bucket; days from hours; with the customers' first orders, which only
-- they follow), else the slices (first orders NULL): the smallest table
-- that holds the answer, chosen here once for the API and Grafana.
CREATE FUNCTION {schema}.sales_totals(p_grain text, p_from timestamptz, p_to timestamptz, p_country text,
                                      p_segment text, p_category text, p_device smallint)
RETURNS TABLE (bucket timestamptz, orders bigint, units bigint, gross numeric, discounts numeric, net numeric,
               new_orders bigint, new_net numeric)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_grain = 'day' THEN date_trunc('day', a.bucket, 'UTC') ELSE a.bucket END,
           sum(a.orders)::bigint, sum(a.units)::bigint, sum(a.gross), sum(a.discounts), sum(a.net),
           sum(a.new_orders)::bigint, sum(a.new_net)
    FROM (SELECT * FROM {schema}.agg_sales_minute WHERE p_grain = 'minute'
          UNION ALL SELECT * FROM {schema}.agg_sales_hour WHERE p_grain IN ('hour', 'day')) a
    WHERE num_nulls(p_country, p_segment, p_category, p_device) = 4
      AND (p_from IS NULL OR a.bucket >= p_from) AND (p_to IS NULL OR a.bucket < p_to)
    GROUP BY 1
    UNION ALL
    SELECT s.bucket, sum(s.orders)::bigint, sum(s.units)::bigint, sum(s.gross), sum(s.discounts), sum(s.net),
           NULL::bigint, NULL::numeric
    FROM {schema}.sales_slices(p_grain, p_from, p_to, p_country, p_segment, p_category, p_device) s
    WHERE num_nulls(p_country, p_segment, p_category, p_device) < 4
    GROUP BY 1
$$;

CREATE FUNCTION {schema}.activity_totals(p_grain text, p_from timestamptz, p_to timestamptz, p_country text,
                                         p_segment text, p_category text, p_device smallint)
RETURNS TABLE (bucket timestamptz, page_views bigint, cart_adds bigint)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_grain = 'day' THEN date_trunc('day', a.bucket, 'UTC') ELSE a.bucket END,
           sum(a.page_views)::bigint, sum(a.cart_adds)::bigint
    FROM (SELECT * FROM {schema}.agg_activity_minute WHERE p_grain = 'minute'
          UNION ALL SELECT * FROM {schema}.agg_activity_hour WHERE p_grain IN ('hour', 'day')) a
    WHERE num_nulls(p_country, p_segment, p_category, p_device) = 4
      AND (p_from IS NULL OR a.bucket >= p_from) AND (p_to IS NULL OR a.bucket < p_to)
    GROUP BY 1
    UNION ALL
    SELECT v.bucket, sum(v.page_views)::bigint, sum(v.cart_adds)::bigint
    FROM {schema}.v_slice v
    WHERE num_nulls(p_country, p_segment, p_category, p_device) < 4 AND v.grain = p_grain
      AND (p_from IS NULL OR v.bucket >= p_from) AND (p_to IS NULL OR v.bucket < p_to)
      AND (p_country IS NULL OR v.country = p_country) AND (p_segment IS NULL OR v.segment = p_segment)
      AND (p_category IS NULL OR v.category = p_category) AND (p_device IS NULL OR v.device_key = p_device)
    GROUP BY 1
$$;

-- Rows of writers other than Shopstream's loader (which queues its own).
CREATE FUNCTION {schema}.queue_slices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('shopstream.loader_slices', true) IS DISTINCT FROM 'on' THEN
        IF TG_TABLE_NAME = 'fact_sales' THEN
            EXECUTE {schema}.slice_queue_sql('inserted', '(SELECT * FROM {schema}.fact_activity WHERE false)');
        ELSE
            EXECUTE {schema}.slice_queue_sql('(SELECT * FROM {schema}.fact_sales WHERE false)', 'inserted');
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- The facts already loaded, folded at once.
DO $$
BEGIN
    EXECUTE {schema}.slice_queue_sql('{schema}.fact_sales', '{schema}.fact_activity');
END
$$;
SELECT {schema}.fold_slices();

CREATE TRIGGER queue_slices AFTER INSERT ON {schema}.fact_sales
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.queue_slices();

CREATE TRIGGER queue_slices AFTER INSERT ON {schema}.fact_activity
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.queue_slices();

-- The dashboard's order-line table pages newest first by (event_time,
-- order_id, line_number): this index serves it at any depth, and every range
-- read the event_time index served, so it replaces that one.
CREATE INDEX fact_sales_event_time_order_idx ON {schema}.fact_sales (event_time, order_id, line_number);
DROP INDEX {schema}.fact_sales_event_time_idx;

-- Orders by status under the same filters, from fact_order (one row per
-- order, whose status changes, so it is not in the slices): the orders placed
-- in [p_from, p_to) by customers of p_country / p_segment, on p_device, with
-- a line of p_category (NULL: no filter). v_revenue_by_status and
-- v_order_status_reasons become these with no filter, so both keep one
-- definition. LANGUAGE sql functions are inlined: each call is planned with
-- its filters.
CREATE FUNCTION {schema}.orders_filtered(p_from timestamptz, p_to timestamptz, p_country text, p_segment text,
                                         p_category text, p_device smallint)
RETURNS SETOF {schema}.fact_order LANGUAGE sql STABLE AS $$
    -- Three branches, all but one pruned by their constant tests: each plans
    -- as plain joins (an EXISTS under OR would not), and joins only what its
    -- filters need.
    SELECT o.* FROM {schema}.fact_order o
    WHERE p_category IS NULL AND p_country IS NULL AND p_segment IS NULL
      AND (p_from IS NULL OR o.placed_at >= p_from) AND (p_to IS NULL OR o.placed_at < p_to)
      AND (p_device IS NULL OR o.device_key = p_device)
    UNION ALL
    SELECT o.* FROM {schema}.fact_order o JOIN {schema}.dim_customer c USING (customer_key)
    WHERE p_category IS NULL AND (p_country IS NOT NULL OR p_segment IS NOT NULL)
      AND (p_from IS NULL OR o.placed_at >= p_from) AND (p_to IS NULL OR o.placed_at < p_to)
      AND (p_device IS NULL OR o.device_key = p_device)
      AND (p_country IS NULL OR c.country = p_country) AND (p_segment IS NULL OR c.segment = p_segment)
    UNION ALL
    SELECT o.* FROM {schema}.fact_order o JOIN {schema}.dim_customer c USING (customer_key)
         JOIN (SELECT DISTINCT s.order_id FROM {schema}.fact_sales s JOIN {schema}.dim_product p USING (product_key)
               WHERE p.category = p_category) x USING (order_id)
    WHERE p_category IS NOT NULL
      AND (p_from IS NULL OR o.placed_at >= p_from) AND (p_to IS NULL OR o.placed_at < p_to)
      AND (p_device IS NULL OR o.device_key = p_device)
      AND (p_country IS NULL OR c.country = p_country) AND (p_segment IS NULL OR c.segment = p_segment)
$$;

CREATE FUNCTION {schema}.revenue_by_status(p_from timestamptz, p_to timestamptz, p_country text, p_segment text,
                                           p_category text, p_device smallint)
RETURNS TABLE (orders bigint, pending_orders bigint, completed_orders bigint, canceled_orders bigint,
               refunded_orders bigint, booked_revenue numeric, completed_revenue numeric, canceled_revenue numeric,
               refunded_revenue numeric, net_realised_revenue numeric)
LANGUAGE sql STABLE AS $$
    SELECT count(*),
           count(*) FILTER (WHERE status = 'pending'),
           count(*) FILTER (WHERE status IN ('completed', 'refunded')),
           count(*) FILTER (WHERE status = 'canceled'),
           count(*) FILTER (WHERE status = 'refunded'),
           coalesce(sum(booked_amount), 0),
           coalesce(sum(booked_amount) FILTER (WHERE status IN ('completed', 'refunded')), 0),
           coalesce(sum(booked_amount) FILTER (WHERE status = 'canceled'), 0),
           coalesce(sum(refunded_amount) FILTER (WHERE status = 'refunded'), 0),
           coalesce(sum(booked_amount - refunded_amount) FILTER (WHERE status IN ('completed', 'refunded')), 0)
    FROM {schema}.orders_filtered(p_from, p_to, p_country, p_segment, p_category, p_device)
$$;

CREATE FUNCTION {schema}.order_status_reasons(p_from timestamptz, p_to timestamptz, p_country text, p_segment text,
                                              p_category text, p_device smallint)
RETURNS TABLE (status text, reason text, orders bigint, amount numeric)
LANGUAGE sql STABLE AS $$
    SELECT status, coalesce(CASE status WHEN 'canceled' THEN cancel_reason ELSE refund_reason END, ''),
           count(*), sum(CASE status WHEN 'canceled' THEN booked_amount ELSE refunded_amount END)
    FROM {schema}.orders_filtered(p_from, p_to, p_country, p_segment, p_category, p_device)
    WHERE status IN ('canceled', 'refunded')
    GROUP BY 1, 2
$$;

CREATE OR REPLACE VIEW {schema}.v_revenue_by_status AS
SELECT * FROM {schema}.revenue_by_status(NULL, NULL, NULL, NULL, NULL, NULL);

CREATE OR REPLACE VIEW {schema}.v_order_status_reasons AS
SELECT * FROM {schema}.order_status_reasons(NULL, NULL, NULL, NULL, NULL, NULL);
