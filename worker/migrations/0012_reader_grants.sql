-- The reading role (the dashboard, Grafana, analysts): USAGE on this schema and
-- SELECT on every table and view in it, nothing else. The schema's owner (the
-- role that runs the migrations) calls it once per reader:
--   SELECT {schema}.grant_reader('shopstream_reader');
-- Default privileges make the tables of later migrations readable too. The
-- reporting functions run with the caller's rights (SECURITY INVOKER), so the
-- reader reaches through them only what these grants allow.
CREATE FUNCTION {schema}.grant_reader(reader regrole) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- A regrole's text is its name quoted as an identifier where needed.
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || reader::text;
    EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO ' || reader::text;
    EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO ' || reader::text;
END
$$;
-- Nobody but the owner hands out reading rights.
REVOKE EXECUTE ON FUNCTION {schema}.grant_reader(regrole) FROM PUBLIC;
