-- The `clips` projection: one row per recorded clip, and which incidents each covers.
CREATE TABLE IF NOT EXISTS clips (
    id               TEXT PRIMARY KEY,
    camera_id        TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    ended_at         TEXT NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    codec            TEXT NOT NULL,
    width            BIGINT NOT NULL,
    height           BIGINT NOT NULL,
    frames           BIGINT NOT NULL,
    bytes            BIGINT NOT NULL,
    media            TEXT NOT NULL,
    recorded_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clips_by_camera ON clips (camera_id, started_at);
-- `id` is `{clip_id}:{incident_id}`.
CREATE TABLE IF NOT EXISTS clip_incidents (
    id          TEXT PRIMARY KEY,
    clip_id     TEXT NOT NULL,
    incident_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clip_incidents_by_incident ON clip_incidents (incident_id);
