-- Subjects (enrolled people), their faces, and the alerts their matches raise. Every column is
-- derived from events (times from `occurred_at`), so a rebuild is identical. Every table has an
-- `id` column (`vigil verify` orders each table by it). An erased subject leaves all three.
CREATE TABLE IF NOT EXISTS subjects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- `authorised` or `watchlist`.
    category    TEXT NOT NULL,
    -- Watch-listed subjects only: the severity of the incident a match raises.
    severity    TEXT,
    notes       TEXT NOT NULL,
    face_count  BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    -- The last change of its details or faces (a match changes neither).
    updated_at  TEXT NOT NULL,
    -- Stream version of its last event (matches included).
    version     BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS subjects_by_category ON subjects (category, id);

CREATE TABLE IF NOT EXISTS subject_faces (
    -- The face's id.
    id          TEXT PRIMARY KEY,
    subject_id  TEXT NOT NULL,
    -- 0, 1, … in the order the subject's faces were enrolled.
    ordinal     BIGINT NOT NULL,
    -- SHA-256 of the face crop (JPEG) in the media store.
    crop        TEXT NOT NULL,
    -- JSON NormBox: the face's box in its image.
    bbox        TEXT NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    -- JSON array of the 128 floats of the descriptor.
    embedding   TEXT NOT NULL,
    added_at    TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS subject_faces_by_subject ON subject_faces (subject_id, ordinal);
CREATE INDEX IF NOT EXISTS subject_faces_by_crop ON subject_faces (crop);

-- One row per `subject.matched` not dismissed (`alert.dismissed` deletes it).
CREATE TABLE IF NOT EXISTS alerts (
    -- The match id.
    id               TEXT PRIMARY KEY,
    subject_id       TEXT NOT NULL,
    -- The subject's name and category when matched.
    subject_name     TEXT NOT NULL,
    category         TEXT NOT NULL,
    camera_id        TEXT NOT NULL,
    track_id         TEXT NOT NULL,
    distance         DOUBLE PRECISION NOT NULL,
    second_distance  DOUBLE PRECISION,
    -- SHA-256 of the face crop seen.
    crop             TEXT NOT NULL,
    -- JSON FrameRef: the frame it was seen in.
    frame            TEXT NOT NULL,
    -- `occurred_at` of `subject.matched`.
    at               TEXT NOT NULL,
    acknowledged     BIGINT NOT NULL,
    acknowledged_at  TEXT
);

CREATE INDEX IF NOT EXISTS alerts_by_at ON alerts (at, id);
CREATE INDEX IF NOT EXISTS alerts_by_subject ON alerts (subject_id, at, id);
CREATE INDEX IF NOT EXISTS alerts_by_camera ON alerts (camera_id, at, id);
