-- The append-only event log (thin-slice version; the event-store issue adds
-- hash chaining, immutability triggers, streams' versions and partitioning).
CREATE TABLE IF NOT EXISTS events (
    position        bigserial PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS events_stream_idx ON events (stream_id, position);
