-- The months in which each customer ordered, for monthly cohort retention:
-- a customer's cohort is the month of their first order, and the cohort's
-- retention in month k is the share of its customers who ordered again k
-- months later. One row per customer and month (small: customers times
-- active months), kept like the other rollups by a statement trigger over
-- the rows actually inserted, in the loading transaction. Months are UTC.

LOCK TABLE {schema}.fact_sales IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE {schema}.agg_customer_month (
    customer_key  bigint NOT NULL,
    month         date NOT NULL,
    orders        bigint NOT NULL,
    net           numeric NOT NULL,
    PRIMARY KEY (customer_key, month)
);

INSERT INTO {schema}.agg_customer_month
SELECT customer_key, date_trunc('month', event_time, 'UTC')::date, count(DISTINCT order_id), sum(net_amount)
FROM {schema}.fact_sales GROUP BY 1, 2;

CREATE FUNCTION {schema}.rollup_customer_months() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.agg_customer_month AS a (customer_key, month, orders, net)
    SELECT customer_key, date_trunc('month', event_time, 'UTC')::date, count(DISTINCT order_id), sum(net_amount)
    FROM inserted GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (customer_key, month) DO UPDATE SET orders = a.orders + EXCLUDED.orders, net = a.net + EXCLUDED.net;
    RETURN NULL;
END
$$;

CREATE TRIGGER rollup_customer_months AFTER INSERT ON {schema}.fact_sales
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_customer_months();

-- Customers of each cohort (first-order month) ordering k months after it
-- (k = 0: the cohort's size).
CREATE VIEW {schema}.v_cohort_retention AS
WITH firsts AS (
    SELECT customer_key, min(month) AS cohort FROM {schema}.agg_customer_month GROUP BY 1
)
SELECT f.cohort,
       ((extract(year FROM m.month) - extract(year FROM f.cohort)) * 12
        + extract(month FROM m.month) - extract(month FROM f.cohort))::int AS months_after,
       count(*) AS customers
FROM {schema}.agg_customer_month m JOIN firsts f USING (customer_key)
GROUP BY 1, 2;
