-- All-time sums outgrow any fixed precision (numeric(20,2) ends below 10^18,
-- and a failing rollup update stops every load): rollups and the summary
-- view sum in unbounded numeric. Order lines stay numeric(18,2); validation
-- bounds a line below 10^10.

DROP VIEW {schema}.agg_product;
DROP VIEW {schema}.v_financial_summary;

ALTER TABLE {schema}.agg_sales_minute
    ALTER COLUMN gross TYPE numeric, ALTER COLUMN discounts TYPE numeric,
    ALTER COLUMN net TYPE numeric, ALTER COLUMN new_net TYPE numeric;
ALTER TABLE {schema}.agg_sales_hour
    ALTER COLUMN gross TYPE numeric, ALTER COLUMN discounts TYPE numeric,
    ALTER COLUMN net TYPE numeric, ALTER COLUMN new_net TYPE numeric;
ALTER TABLE {schema}.agg_product_sales ALTER COLUMN net TYPE numeric;
ALTER TABLE {schema}.agg_geo ALTER COLUMN net TYPE numeric;

CREATE VIEW {schema}.agg_product AS
SELECT product_key, coalesce(a.views, 0) AS views, coalesce(a.cart_adds, 0) AS cart_adds,
       coalesce(s.order_lines, 0) AS order_lines, coalesce(s.units, 0) AS units,
       coalesce(s.net, 0) AS net
FROM {schema}.agg_product_activity a FULL JOIN {schema}.agg_product_sales s USING (product_key);

CREATE VIEW {schema}.v_financial_summary AS
SELECT count(DISTINCT order_id)                       AS orders,
       coalesce(sum(quantity), 0)::bigint             AS units,
       coalesce(sum(line_total), 0)                   AS gross_revenue,
       coalesce(sum(discount_amount), 0)              AS discounts,
       coalesce(sum(net_amount), 0)                   AS net_revenue,
       round(coalesce(sum(net_amount), 0) / nullif(count(DISTINCT order_id), 0), 2) AS average_order_value,
       count(DISTINCT customer_key)                   AS customers
FROM {schema}.fact_sales;
