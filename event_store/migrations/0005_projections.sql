-- Read models derived from the log (see event_store/projections.py). Unlike the
-- log they are rewritten in place and can be rebuilt from position 0 at any time,
-- so the application role may change them.
--
-- `projection_checkpoints` holds, per projection, the last log position whose
-- effects are in the tables; it is written in the same transaction as the rows,
-- which is what makes re-applying a page harmless.
CREATE TABLE patient_status (
    patient_id        text        PRIMARY KEY,
    last_vitals       jsonb,
    last_observed_at  timestamptz,
    open_alerts       integer     NOT NULL DEFAULT 0 CHECK (open_alerts >= 0),
    updated_position  bigint      NOT NULL
);

CREATE TABLE open_alerts (
    alert_id         text             PRIMARY KEY,
    patient_id       text             NOT NULL,
    priority         text             NOT NULL,
    condition        text             NOT NULL,
    message          text             NOT NULL,
    value            double precision,
    raised_at        timestamptz      NOT NULL,
    raised_position  bigint           NOT NULL
);
CREATE INDEX open_alerts_patient_idx ON open_alerts (patient_id);

CREATE TABLE projection_checkpoints (
    name      text   PRIMARY KEY,
    position  bigint NOT NULL CHECK (position >= 0)
);

REVOKE ALL ON patient_status, open_alerts, projection_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON patient_status, open_alerts, projection_checkpoints TO vigil_app;
