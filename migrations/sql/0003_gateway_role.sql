-- The login role the gateway uses. PgBouncer in transaction mode forgets session settings, so the limits live
-- on the role, where every new server connection picks them up.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gateway') THEN
        CREATE ROLE gateway LOGIN;
    END IF;
END
$$;
ALTER ROLE gateway SET statement_timeout = '5s';
ALTER ROLE gateway SET idle_in_transaction_session_timeout = '10s';
ALTER ROLE gateway SET lock_timeout = '2s';

GRANT USAGE ON SCHEMA public TO gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO gateway;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO gateway;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gateway;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO gateway;
-- Monitoring: pg_stat_statements and replication progress.
GRANT pg_monitor TO gateway;
