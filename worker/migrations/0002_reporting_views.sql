-- Reporting views for the dashboard and BI tools. Money is net of discounts
-- unless the column says gross.

CREATE VIEW {schema}.v_financial_summary AS
SELECT count(DISTINCT order_id)                       AS orders,
       coalesce(sum(quantity), 0)::bigint             AS units,
       coalesce(sum(line_total), 0)::numeric(18,2)    AS gross_revenue,
       coalesce(sum(discount_amount), 0)::numeric(18,2) AS discounts,
       coalesce(sum(net_amount), 0)::numeric(18,2)    AS net_revenue,
       round(coalesce(sum(net_amount), 0) / nullif(count(DISTINCT order_id), 0), 2) AS average_order_value,
       count(DISTINCT customer_key)                   AS customers
FROM {schema}.fact_sales;

CREATE VIEW {schema}.v_sales_by_minute AS
SELECT date_trunc('minute', event_time) AS bucket,
       count(DISTINCT order_id)        AS orders,
       sum(quantity)::bigint           AS units,
       sum(line_total)                 AS gross_revenue,
       sum(discount_amount)            AS discounts,
       sum(net_amount)                 AS net_revenue
FROM {schema}.fact_sales
GROUP BY 1;

CREATE VIEW {schema}.v_sales_by_hour AS
SELECT date_trunc('hour', event_time) AS bucket,
       count(DISTINCT order_id)      AS orders,
       sum(quantity)::bigint         AS units,
       sum(line_total)               AS gross_revenue,
       sum(discount_amount)          AS discounts,
       sum(net_amount)               AS net_revenue
FROM {schema}.fact_sales
GROUP BY 1;

CREATE VIEW {schema}.v_sales_by_day AS
SELECT d.full_date                  AS day,
       d.day_name,
       d.is_weekend,
       count(DISTINCT f.order_id)   AS orders,
       sum(f.quantity)::bigint      AS units,
       sum(f.line_total)            AS gross_revenue,
       sum(f.discount_amount)       AS discounts,
       sum(f.net_amount)            AS net_revenue
FROM {schema}.fact_sales f
JOIN {schema}.dim_date d USING (date_key)
GROUP BY d.full_date, d.day_name, d.is_weekend;

CREATE VIEW {schema}.v_product_performance AS
WITH activity AS (
    SELECT product_key,
           count(*) FILTER (WHERE event_type = 'page_view')   AS views,
           count(*) FILTER (WHERE event_type = 'add_to_cart') AS cart_adds
    FROM {schema}.fact_activity
    GROUP BY product_key
), sales AS (
    SELECT product_key,
           count(DISTINCT order_id) AS orders,
           sum(quantity)::bigint    AS units,
           sum(net_amount)          AS net_revenue
    FROM {schema}.fact_sales
    GROUP BY product_key
)
SELECT p.product_key, p.product_id, p.name, p.category, p.brand, p.list_price,
       coalesce(a.views, 0)           AS views,
       coalesce(a.cart_adds, 0)       AS cart_adds,
       coalesce(s.orders, 0)          AS orders,
       coalesce(s.units, 0)           AS units,
       coalesce(s.net_revenue, 0)     AS net_revenue,
       round(coalesce(s.orders, 0)::numeric / nullif(a.views, 0), 4) AS view_to_purchase_rate
FROM {schema}.dim_product p
LEFT JOIN activity a USING (product_key)
LEFT JOIN sales s USING (product_key);

CREATE VIEW {schema}.v_category_performance AS
WITH activity AS (
    SELECT p.category,
           count(*) FILTER (WHERE f.event_type = 'page_view')   AS views,
           count(*) FILTER (WHERE f.event_type = 'add_to_cart') AS cart_adds
    FROM {schema}.fact_activity f
    JOIN {schema}.dim_product p USING (product_key)
    GROUP BY p.category
), sales AS (
    SELECT p.category,
           count(DISTINCT f.order_id) AS orders,
           sum(f.quantity)::bigint    AS units,
           sum(f.net_amount)          AS net_revenue
    FROM {schema}.fact_sales f
    JOIN {schema}.dim_product p USING (product_key)
    GROUP BY p.category
)
SELECT category,
       coalesce(a.views, 0)       AS views,
       coalesce(a.cart_adds, 0)   AS cart_adds,
       coalesce(s.orders, 0)      AS orders,
       coalesce(s.units, 0)       AS units,
       coalesce(s.net_revenue, 0) AS net_revenue
FROM activity a
FULL JOIN sales s USING (category);

-- Sessions reaching each funnel step (a purchase counts as reaching all).
CREATE VIEW {schema}.v_customer_funnel AS
WITH steps AS (
    SELECT session_id,
           bool_or(event_type = 'page_view')   AS viewed,
           bool_or(event_type = 'add_to_cart') AS carted,
           false                               AS purchased
    FROM {schema}.fact_activity
    GROUP BY session_id
    UNION ALL
    SELECT DISTINCT session_id, false, false, true
    FROM {schema}.fact_sales
), sessions AS (
    SELECT session_id, bool_or(viewed) AS viewed, bool_or(carted) AS carted, bool_or(purchased) AS purchased
    FROM steps
    GROUP BY session_id
)
SELECT count(*) FILTER (WHERE viewed)     AS sessions_with_view,
       count(*) FILTER (WHERE carted)     AS sessions_with_cart,
       count(*) FILTER (WHERE purchased)  AS sessions_with_purchase,
       round(count(*) FILTER (WHERE carted)::numeric / nullif(count(*) FILTER (WHERE viewed), 0), 4)
           AS view_to_cart_rate,
       round(count(*) FILTER (WHERE purchased)::numeric / nullif(count(*) FILTER (WHERE carted), 0), 4)
           AS cart_to_purchase_rate,
       round(count(*) FILTER (WHERE purchased)::numeric / nullif(count(*) FILTER (WHERE viewed), 0), 4)
           AS view_to_purchase_rate
FROM sessions;

CREATE VIEW {schema}.v_customer_new_vs_returning AS
SELECT CASE WHEN is_first_order THEN 'new' ELSE 'returning' END AS customer_type,
       count(DISTINCT order_id)     AS orders,
       count(DISTINCT customer_key) AS customers,
       sum(net_amount)              AS net_revenue
FROM {schema}.fact_sales
GROUP BY 1;

CREATE VIEW {schema}.v_revenue_by_country_segment AS
SELECT c.country, c.segment,
       count(DISTINCT f.order_id)   AS orders,
       count(DISTINCT f.customer_key) AS customers,
       sum(f.net_amount)            AS net_revenue
FROM {schema}.fact_sales f
JOIN {schema}.dim_customer c USING (customer_key)
GROUP BY c.country, c.segment;
