-- What both flavours of the log share (plain PostgreSQL and TimescaleDB): the
-- unpartitioned tables and the append-only machinery. The events table itself
-- comes next, in 0002_events.native.sql or 0002_events.timescaledb.sql.
--
-- A partitioned table (like a hypertable) can only enforce uniqueness on keys that
-- include the partitioning column, so "event_id is unique" and "one event per
-- (stream, version)" cannot live on `events` itself. They live in two small,
-- unpartitioned tables written in the same transaction: `event_ids` (idempotency:
-- an event id maps to exactly one position) and `streams` (each stream's version,
-- the optimistic-concurrency check). `log_head` holds the last position and chain
-- hash; locking its single row is the sequencer (see event_store/postgres.py).
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

-- Append-only, enforced twice: the application role lacks the privileges
-- (0004_app_role.sql), and these triggers refuse the change for everyone else. A
-- superuser can still bypass triggers (session_replication_role = replica); the
-- hash chain catches that.
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

SELECT vigil_protect('event_ids', false);
SELECT vigil_protect('log_head', true);
