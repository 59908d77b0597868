-- The loading role (the workers) when it is not the schema's owner: rows in,
-- rows changed, never the schema itself. The owner (the migrator: it ran these
-- migrations and alone may change the schema) calls it once per loader, or
-- `shopstream-worker --migrate-only --grant-loader ROLE` does:
--   SELECT {schema}.grant_loader('shopstream_loader');
-- The loader may read the applied migrations (to see the schema is current)
-- but not record or forge one. Default privileges extend the grants to the
-- tables of later migrations. The loader's staging tables are temporary ones,
-- which PostgreSQL lets every role with CONNECT create unless a DBA revoked
-- TEMPORARY on the database.
CREATE FUNCTION {schema}.grant_loader(loader regrole) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- A regrole's text is its name quoted as an identifier where needed.
    EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO ' || loader::text;
    EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO ' || loader::text;
    EXECUTE 'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO ' || loader::text;
    EXECUTE 'REVOKE INSERT, UPDATE, DELETE ON {schema}.schema_migrations FROM ' || loader::text;
    EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ' || loader::text;
    EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO ' || loader::text;
END
$$;
-- Nobody but the owner hands out loading rights.
REVOKE EXECUTE ON FUNCTION {schema}.grant_loader(regrole) FROM PUBLIC;
