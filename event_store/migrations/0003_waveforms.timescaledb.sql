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
);
SELECT create_hypertable('waveforms', by_range('starts_at', interval '1 day'));
DO $migration$
BEGIN
    IF current_setting('timescaledb.license') = 'timescale' THEN  -- the Apache-2 edition cannot compress
        ALTER TABLE waveforms SET (timescaledb.compress, timescaledb.compress_segmentby = 'patient_id, lead');
        PERFORM add_compression_policy('waveforms', interval '2 days');
    END IF;
END
$migration$;
SELECT vigil_protect('waveforms', false);
