-- The role the worker and gateway should run as: it may read and append, never
-- rewrite. (Roles are cluster-wide, hence the existence check.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigil_app') THEN
        CREATE ROLE vigil_app NOLOGIN;
    END IF;
END
$$;
REVOKE ALL ON events, event_ids, streams, log_head, waveforms FROM PUBLIC;
GRANT SELECT, INSERT ON events, event_ids, waveforms TO vigil_app;
GRANT SELECT, INSERT, UPDATE ON streams, log_head TO vigil_app;
GRANT SELECT ON vitals_per_minute TO vigil_app;
