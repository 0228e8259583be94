-- Raw ECG for full disclosure, outside the events: one row per received chunk.
-- Events refer to it by patient, lead and time range. Partitioned by time (a
-- hypertable where TimescaleDB is present); the primary key includes the time
-- column, as both require.
CREATE TABLE waveforms (
    patient_id    text        NOT NULL,
    lead          text        NOT NULL,
    starts_at     timestamptz NOT NULL,
    sampling_hz   real        NOT NULL CHECK (sampling_hz > 0),
    sample_count  integer     NOT NULL CHECK (sample_count > 0),
    samples       bytea       NOT NULL,   -- little-endian int16, see streams/ ECG codec
    source        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (patient_id, lead, starts_at)
) PARTITION BY RANGE (starts_at);
CREATE TABLE waveforms_default PARTITION OF waveforms DEFAULT;
SELECT vigil_protect('waveforms', false);
-- Row triggers are cloned to partitions; TRUNCATE triggers are not.
CREATE TRIGGER vigil_no_truncate BEFORE TRUNCATE ON waveforms_default FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();
