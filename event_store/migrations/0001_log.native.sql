-- The append-only event log, on plain PostgreSQL: native range partitioning by
-- store time. (0001_log.timescaledb.sql is the same log as a hypertable.)
--
-- A partitioned table (like a hypertable) can only enforce uniqueness on keys that
-- include the partitioning column, so "event_id is unique" and "one event per
-- (stream, version)" cannot live on `events` itself. They live in two small,
-- unpartitioned tables written in the same transaction: `event_ids` (idempotency:
-- an event id maps to exactly one position) and `streams` (each stream's version,
-- the optimistic-concurrency check). `log_head` holds the last position and chain
-- hash; locking its single row is the sequencer (see event_store/postgres.py).
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

CREATE TABLE event_ids (
    event_id   uuid   PRIMARY KEY,
    stream_id  text   NOT NULL,
    position   bigint NOT NULL UNIQUE
);

CREATE TABLE streams (
    stream_id  text    PRIMARY KEY,
    version    integer NOT NULL CHECK (version > 0)
);

CREATE TABLE log_head (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position    bigint  NOT NULL,
    chain_hash  bytea   NOT NULL
);
INSERT INTO log_head (position, chain_hash) VALUES (0, decode(repeat('00', 32), 'hex'));

-- Append-only, enforced twice: the application role lacks the privileges (below),
-- and these triggers refuse the change for everyone else. A superuser can still
-- bypass triggers (session_replication_role = replica); the hash chain catches that.
CREATE FUNCTION vigil_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vigil: % on % refused: the event log is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION vigil_protect(tbl regclass, allow_update boolean) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER vigil_no_delete BEFORE DELETE%s ON %s FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change()',
                   CASE WHEN allow_update THEN '' ELSE ' OR UPDATE' END, tbl);
    EXECUTE format('CREATE TRIGGER vigil_no_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change()', tbl);
END
$$;

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
SELECT vigil_protect('event_ids', false);
SELECT vigil_protect('log_head', true);
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
