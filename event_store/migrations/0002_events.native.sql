-- The events table on plain PostgreSQL: native range partitioning by store time.
-- (0002_events.timescaledb.sql makes it a hypertable instead.)
CREATE TABLE events (
    position        bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version > 0),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    payload         json        NOT NULL,  -- json, not jsonb: the exact text that was hashed
    metadata        json        NOT NULL,
    chain_hash      bytea       NOT NULL,
    PRIMARY KEY (position, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX events_stream_idx ON events (stream_id, stream_version);
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Monthly partitions around now; TRUNCATE triggers are per table, so each partition gets its own.
CREATE FUNCTION vigil_ensure_partitions(months_ahead integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    start date := date_trunc('month', now() - interval '1 month');
    name  text;
BEGIN
    FOR i IN 0..months_ahead + 1 LOOP
        name := format('events_%s', to_char(start, 'YYYYMM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                           name, start, start + interval '1 month');
            EXECUTE format('CREATE TRIGGER vigil_no_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change()', name);
        END IF;
        start := start + interval '1 month';
    END LOOP;
END
$$;

SELECT vigil_protect('events', false);
-- Row triggers are cloned to partitions; TRUNCATE triggers are not.
CREATE TRIGGER vigil_no_truncate BEFORE TRUNCATE ON events_default FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();
SELECT vigil_ensure_partitions(3);

-- Vitals per patient and minute (TimescaleDB builds this as a continuous aggregate).
CREATE VIEW vitals_per_minute AS
SELECT stream_id,
       date_trunc('minute', occurred_at) AS minute,
       avg((payload ->> 'hr')::double precision)   AS hr,
       avg((payload ->> 'spo2')::double precision) AS spo2,
       avg((payload ->> 'rr')::double precision)   AS rr,
       count(*)                                    AS samples
FROM events
WHERE event_type = 'VitalsObserved'
GROUP BY 1, 2;
