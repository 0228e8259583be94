-- The events table on TimescaleDB: a hypertable on store time. Under the Timescale
-- License (TimescaleDB's own images) also compression of chunks older than 7 days
-- and a continuous aggregate of vitals per minute; the Apache-2 edition (Debian's
-- packages, some clouds) refuses both, and gets the plain view of the native schema.
-- The test suite runs this on the Apache-2 edition (scripts/install-timescaledb.sh).
CREATE EXTENSION IF NOT EXISTS timescaledb;

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
);
SELECT create_hypertable('events', by_range('recorded_at', interval '1 day'));
CREATE INDEX events_stream_idx ON events (stream_id, stream_version);
SELECT vigil_protect('events', false);
-- Chunks are managed by TimescaleDB; nothing to pre-create.
CREATE FUNCTION vigil_ensure_partitions(months_ahead integer) RETURNS void LANGUAGE sql AS $$ SELECT $$;

DO $migration$
BEGIN
    IF current_setting('timescaledb.license') = 'timescale' THEN
        ALTER TABLE events SET (timescaledb.compress, timescaledb.compress_orderby = 'position');
        PERFORM add_compression_policy('events', interval '7 days');
        -- A continuous aggregate buckets the hypertable's time column: store time.
        CREATE MATERIALIZED VIEW vitals_per_minute WITH (timescaledb.continuous) AS
        SELECT stream_id,
               time_bucket(interval '1 minute', recorded_at) AS minute,
               avg((payload ->> 'hr')::double precision)   AS hr,
               avg((payload ->> 'spo2')::double precision) AS spo2,
               avg((payload ->> 'rr')::double precision)   AS rr,
               count(*)                                    AS samples
        FROM events
        WHERE event_type = 'VitalsObserved'
        GROUP BY 1, 2
        WITH NO DATA;
        PERFORM add_continuous_aggregate_policy('vitals_per_minute',
            start_offset => interval '1 hour', end_offset => interval '1 minute',
            schedule_interval => interval '1 minute');
    ELSE
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
    END IF;
END
$migration$;
