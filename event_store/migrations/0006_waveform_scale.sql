-- Devices send int16 counts with their own gain: keep it with the samples, so full
-- disclosure can show millivolts. Existing rows (none before the ECG pipeline) get
-- the codec's default of 1 uV per count.
ALTER TABLE waveforms ADD COLUMN IF NOT EXISTS scale_mv double precision NOT NULL DEFAULT 0.001 CHECK (scale_mv > 0);
