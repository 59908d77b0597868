-- Exactly one first order per customer, and dimension attributes from the
-- newest event, whatever order workers commit in.
--
-- first_order_id names the order (the earliest event time, ties broken by
-- order id); a load that moves it earlier clears the flag of the order that
-- was first until then, and the trigger below keeps the new-customer rollups
-- equal to the facts. attributes_at is the event time the attributes came
-- from: an older event no longer overwrites a newer one.

LOCK TABLE {schema}.fact_sales, {schema}.dim_customer IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE {schema}.dim_customer ADD COLUMN first_order_id uuid, ADD COLUMN attributes_at timestamptz;
ALTER TABLE {schema}.dim_product ADD COLUMN attributes_at timestamptz;

-- The flagged rows of a customer, found at once by every load that buys.
CREATE INDEX fact_sales_first_order_idx ON {schema}.fact_sales (customer_key) WHERE is_first_order;

CREATE FUNCTION {schema}.rollup_sales_reflag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Statement triggers fire for updates of no rows too (most loads).
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN
        RETURN NULL;
    END IF;
    -- Per bucket: orders whose flag was set minus those whose flag was cleared.
    WITH changed AS (
        SELECT n.event_time, n.order_id, n.net_amount, n.is_first_order AS first
        FROM old_rows o JOIN new_rows n USING (order_id, line_number)
        WHERE o.is_first_order IS DISTINCT FROM n.is_first_order
    ), delta AS (
        SELECT date_trunc('minute', event_time) AS bucket,
               count(DISTINCT order_id) FILTER (WHERE first) - count(DISTINCT order_id) FILTER (WHERE NOT first) AS orders,
               coalesce(sum(net_amount) FILTER (WHERE first), 0) - coalesce(sum(net_amount) FILTER (WHERE NOT first), 0) AS net
        FROM changed GROUP BY 1
    )
    UPDATE {schema}.agg_sales_minute a SET new_orders = a.new_orders + d.orders, new_net = a.new_net + d.net
    FROM delta d WHERE a.bucket = d.bucket;

    WITH changed AS (
        SELECT n.event_time, n.order_id, n.net_amount, n.is_first_order AS first
        FROM old_rows o JOIN new_rows n USING (order_id, line_number)
        WHERE o.is_first_order IS DISTINCT FROM n.is_first_order
    ), delta AS (
        SELECT date_trunc('hour', event_time, 'UTC') AS bucket,
               count(DISTINCT order_id) FILTER (WHERE first) - count(DISTINCT order_id) FILTER (WHERE NOT first) AS orders,
               coalesce(sum(net_amount) FILTER (WHERE first), 0) - coalesce(sum(net_amount) FILTER (WHERE NOT first), 0) AS net
        FROM changed GROUP BY 1
    )
    UPDATE {schema}.agg_sales_hour a SET new_orders = a.new_orders + d.orders, new_net = a.new_net + d.net
    FROM delta d WHERE a.bucket = d.bucket;
    RETURN NULL;
END
$$;

-- Transition tables cannot go with a column list (UPDATE OF is_first_order):
-- nothing else updates facts.
CREATE TRIGGER rollup_sales_reflag AFTER UPDATE ON {schema}.fact_sales
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_sales_reflag();

-- Schemas loaded before this migration: name each customer's first order and
-- correct any order flagged first that was not (the trigger fixes the rollups).
UPDATE {schema}.dim_customer c SET first_order_id = f.order_id, first_order_at = f.event_time
FROM (SELECT DISTINCT ON (customer_key) customer_key, order_id, event_time
      FROM {schema}.fact_sales ORDER BY customer_key, event_time, order_id) f
WHERE c.customer_key = f.customer_key;

UPDATE {schema}.fact_sales f SET is_first_order = (f.order_id = c.first_order_id)
FROM {schema}.dim_customer c
WHERE f.customer_key = c.customer_key AND f.is_first_order IS DISTINCT FROM (f.order_id = c.first_order_id);
