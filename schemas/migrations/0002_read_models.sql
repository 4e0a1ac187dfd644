-- Read models and projection checkpoints. Each projection commits its rows and its checkpoint
-- in one transaction.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name        TEXT PRIMARY KEY,
    position    BIGINT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS cameras (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,
    enabled     BIGINT NOT NULL,
    sample_fps  DOUBLE PRECISION NOT NULL,
    features    TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    zones       TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    version     BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS cameras_by_status ON cameras (status, id);
CREATE INDEX IF NOT EXISTS cameras_by_enabled ON cameras (enabled, id);
