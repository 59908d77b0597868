-- Cart abandonment: the sessions that put something in the cart, and whether
-- they ordered. One row per such session (a small share of all sessions),
-- kept by statement triggers on both fact tables in the loading transaction;
-- either may load first (another writer, or a session split by a topic that
-- grew), so each side inserts or updates.

LOCK TABLE {schema}.fact_sales, {schema}.fact_activity IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE {schema}.agg_cart_session (
    session_id     uuid PRIMARY KEY,
    first_cart_at  timestamptz,          -- NULL: ordered without a cart add we have seen
    ordered        boolean NOT NULL
);

INSERT INTO {schema}.agg_cart_session
SELECT coalesce(c.session_id, o.session_id), c.first_cart_at, o.session_id IS NOT NULL
FROM (SELECT session_id, min(event_time) AS first_cart_at FROM {schema}.fact_activity
      WHERE event_type = 'add_to_cart' GROUP BY 1) c
FULL JOIN (SELECT DISTINCT session_id FROM {schema}.fact_sales) o USING (session_id);

CREATE FUNCTION {schema}.rollup_cart_sessions_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.agg_cart_session AS a (session_id, first_cart_at, ordered)
    SELECT session_id, min(event_time), false FROM inserted WHERE event_type = 'add_to_cart'
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (session_id) DO UPDATE
        SET first_cart_at = least(coalesce(a.first_cart_at, EXCLUDED.first_cart_at), EXCLUDED.first_cart_at)
        WHERE a.first_cart_at IS NULL OR EXCLUDED.first_cart_at < a.first_cart_at;
    RETURN NULL;
END
$$;

CREATE FUNCTION {schema}.rollup_cart_sessions_sales() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.agg_cart_session AS a (session_id, first_cart_at, ordered)
    SELECT DISTINCT session_id, NULL::timestamptz, true FROM inserted ORDER BY 1
    ON CONFLICT (session_id) DO UPDATE SET ordered = true WHERE NOT a.ordered;
    RETURN NULL;
END
$$;

CREATE TRIGGER rollup_cart_sessions AFTER INSERT ON {schema}.fact_activity
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_cart_sessions_activity();

CREATE TRIGGER rollup_cart_sessions AFTER INSERT ON {schema}.fact_sales
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {schema}.rollup_cart_sessions_sales();
