-- Who shops and how (events of schema version 2): the customer's gender and
-- birth date, the session's device and traffic channel, and AM/PM on the
-- clock. Every existing row keeps its figures: earlier facts and version 1
-- events point at the "unknown" rows (key 0), and adding a column with a
-- constant default rewrites no table.
--
-- The keys and spellings of dim_device and dim_channel are those of
-- `shopstream_model::shopper` (a test compares them).

LOCK TABLE {schema}.fact_sales, {schema}.fact_activity, {schema}.dim_customer IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE {schema}.dim_customer ADD COLUMN gender text, ADD COLUMN birth_date date;

CREATE TABLE {schema}.dim_device (
    device_key   smallint PRIMARY KEY,
    device_type  text NOT NULL UNIQUE,
    form_factor  text NOT NULL            -- handheld, computer, tv
);
INSERT INTO {schema}.dim_device VALUES
    (0, 'unknown', 'unknown'),
    (1, 'mobile', 'handheld'),
    (2, 'pc', 'computer'),
    (3, 'laptop', 'computer'),
    (4, 'tablet', 'handheld'),
    (5, 'smart_tv', 'tv');

CREATE TABLE {schema}.dim_channel (
    channel_key  smallint PRIMARY KEY,
    channel      text NOT NULL UNIQUE,
    paid         boolean                 -- NULL: unknown
);
INSERT INTO {schema}.dim_channel VALUES
    (0, 'unknown', NULL),
    (1, 'direct', false),
    (2, 'organic_search', false),
    (3, 'paid_search', true),
    (4, 'social', false),
    (5, 'email', false),
    (6, 'referral', false);

ALTER TABLE {schema}.fact_sales
    ADD COLUMN device_key smallint NOT NULL DEFAULT 0,
    ADD COLUMN channel_key smallint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.fact_activity
    ADD COLUMN device_key smallint NOT NULL DEFAULT 0,
    ADD COLUMN channel_key smallint NOT NULL DEFAULT 0;

ALTER TABLE {schema}.dim_time ADD COLUMN am_pm text;
UPDATE {schema}.dim_time SET am_pm = CASE WHEN hour < 12 THEN 'AM' ELSE 'PM' END;
ALTER TABLE {schema}.dim_time ALTER COLUMN am_pm SET NOT NULL;
