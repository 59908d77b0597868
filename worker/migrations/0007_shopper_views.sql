-- Views over who shops and how (schema version 2) and the calendar, for BI
-- tools: the questions of the report Shopstream replaces (orders by device,
-- AM vs PM, customers by gender and age, customers and sales by weekday).
-- Facts before version 2 show as device / channel / gender "unknown".

CREATE VIEW {schema}.v_sales_by_device AS
SELECT d.device_type,
       d.form_factor,
       count(DISTINCT f.order_id)  AS orders,
       sum(f.quantity)::bigint     AS units,
       sum(f.net_amount)           AS net_revenue
FROM {schema}.fact_sales f
JOIN {schema}.dim_device d USING (device_key)
GROUP BY d.device_type, d.form_factor;

CREATE VIEW {schema}.v_sales_by_channel AS
SELECT c.channel,
       c.paid,
       count(DISTINCT f.order_id)  AS orders,
       sum(f.quantity)::bigint     AS units,
       sum(f.net_amount)           AS net_revenue
FROM {schema}.fact_sales f
JOIN {schema}.dim_channel c USING (channel_key)
GROUP BY c.channel, c.paid;

-- Age bands as today (customers age; the fact's event time does not move them).
CREATE VIEW {schema}.v_customers_by_gender_age AS
SELECT coalesce(gender, 'unknown') AS gender,
       CASE WHEN birth_date IS NULL THEN 'unknown'
            WHEN age(current_date, birth_date) < interval '25 years' THEN '18-24'
            WHEN age(current_date, birth_date) < interval '35 years' THEN '25-34'
            WHEN age(current_date, birth_date) < interval '45 years' THEN '35-44'
            WHEN age(current_date, birth_date) < interval '55 years' THEN '45-54'
            WHEN age(current_date, birth_date) < interval '65 years' THEN '55-64'
            ELSE '65+' END         AS age_band,
       count(*)                    AS customers,
       count(first_order_at)       AS buyers
FROM {schema}.dim_customer
GROUP BY 1, 2;

CREATE VIEW {schema}.v_sales_by_hour_of_day AS
SELECT t.hour,
       t.am_pm,
       count(DISTINCT f.order_id)  AS orders,
       sum(f.quantity)::bigint     AS units,
       sum(f.net_amount)           AS net_revenue
FROM {schema}.fact_sales f
JOIN {schema}.dim_time t USING (time_key)
GROUP BY t.hour, t.am_pm;

CREATE VIEW {schema}.v_sales_by_weekday AS
SELECT d.day_of_week,
       d.day_name,
       count(DISTINCT f.customer_key) AS customers,
       count(DISTINCT f.order_id)     AS orders,
       sum(f.quantity)::bigint        AS units,
       sum(f.net_amount)              AS net_revenue
FROM {schema}.fact_sales f
JOIN {schema}.dim_date d USING (date_key)
GROUP BY d.day_of_week, d.day_name;
