-- Incidents, response actions and calibration read models. Every column is derived from
-- events (times from `occurred_at` or a payload's own times), so a rebuild is identical.
-- Every table has an `id` column (`vigil verify` orders each table by it).
--
-- Sections after a `-- dialect:` marker run on one backend only (`vigil_schemas::migration_sql`).
-- dialect: all
CREATE TABLE IF NOT EXISTS incidents (
    id                      TEXT PRIMARY KEY,
    kind                    TEXT NOT NULL,
    severity                TEXT NOT NULL,
    -- 0 low, 1 medium, 2 high, 3 critical: sorts and filters "at least this severe".
    severity_rank           BIGINT NOT NULL,
    status                  TEXT NOT NULL,
    -- The highest confidence of every finding.
    confidence              DOUBLE PRECISION NOT NULL,
    camera_id               TEXT,
    zone                    TEXT,
    -- The latest finding's reasoning.
    reasoning               TEXT NOT NULL,
    -- Every operator note (note_added, and a status change's notes), one per line.
    notes                   TEXT NOT NULL DEFAULT '',
    is_read                 BIGINT NOT NULL,
    action_taken            BIGINT NOT NULL,
    source                  TEXT NOT NULL,
    dedup_key               TEXT NOT NULL,
    -- JSON IncidentSubjects: the union of every finding's tracks, and the matched subject.
    subjects                TEXT NOT NULL,
    -- JSON array of action names.
    recommended_actions     TEXT NOT NULL,
    -- JSON array of FrameRef: the first 50 frames of evidence.
    evidence                TEXT NOT NULL,
    -- Every frame of evidence, kept or not.
    evidence_count          BIGINT NOT NULL,
    opened_at               TEXT NOT NULL,
    last_seen_at            TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    -- First time it was marked read.
    acknowledged_at         TEXT,
    -- When it reached resolved or false_positive.
    resolved_at             TEXT,
    -- From opening to acknowledged_at and to resolved_at (means for statistics).
    micros_to_acknowledge   BIGINT,
    micros_to_resolve       BIGINT,
    version                 BIGINT NOT NULL,
    -- Global position of `incident.opened`: the search row's key.
    opened_position         BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS incidents_by_opened ON incidents (opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_by_status ON incidents (status, opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_by_severity ON incidents (severity_rank, opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_by_kind ON incidents (kind, opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_by_camera ON incidents (camera_id, opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_by_read ON incidents (is_read, opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_by_action_taken ON incidents (action_taken, opened_at, id);

CREATE TABLE IF NOT EXISTS incident_history (
    -- The event's id.
    id              TEXT NOT NULL UNIQUE,
    incident_id     TEXT NOT NULL,
    stream_version  BIGINT NOT NULL,
    at              TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    actor           TEXT NOT NULL,
    -- The payload as JSON, without incident_id.
    detail          TEXT NOT NULL,
    PRIMARY KEY (incident_id, stream_version)
);

-- Full-text search over reasoning and notes: one row per incident (`id` is the incident's),
-- body = reasoning, newline, notes. SQLite indexes it with FTS5 (ranked by bm25; the row's
-- rowid is `incidents.opened_position`, the global position of `incident.opened`),
-- PostgreSQL with a GIN index over `to_tsvector('simple', body)` (ranked by ts_rank). The
-- table exists on both with the same columns, so a rebuild empties it and `vigil verify`
-- compares it on both.
-- dialect: sqlite
CREATE VIRTUAL TABLE IF NOT EXISTS incidents_fts USING fts5(id UNINDEXED, body);
-- dialect: postgres
CREATE TABLE IF NOT EXISTS incidents_fts (
    id    TEXT PRIMARY KEY,
    body  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_fts_body ON incidents_fts USING GIN (to_tsvector('simple', body));
-- dialect: all

CREATE TABLE IF NOT EXISTS actions (
    -- The action's id.
    id            TEXT PRIMARY KEY,
    action        TEXT NOT NULL,
    incident_id   TEXT,
    camera_id     TEXT,
    notes         TEXT NOT NULL,
    automatic     BIGINT NOT NULL,
    -- The envelope's actor of `action.requested`.
    requested_by  TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    -- JSON array of target names.
    targets       TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS actions_by_incident ON actions (incident_id, requested_at, id);

-- One delivery per (action, target): pending, delivered, dead (the dead-letter queue) or
-- discarded.
CREATE TABLE IF NOT EXISTS action_deliveries (
    -- `{action_id}:{target}` (also the dead-letter queue's id).
    id           TEXT NOT NULL UNIQUE,
    action_id    TEXT NOT NULL,
    target       TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    last_error   TEXT,
    http_status  BIGINT,
    updated_at   TEXT NOT NULL,
    dead_at      TEXT,
    PRIMARY KEY (action_id, target)
);

CREATE INDEX IF NOT EXISTS action_deliveries_by_status ON action_deliveries (status, dead_at, action_id, target);

-- The calibration document (one row, id `global`).
CREATE TABLE IF NOT EXISTS calibration (
    id          TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL
);
