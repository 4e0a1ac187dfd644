-- The event log. Portable between SQLite and PostgreSQL.
--
-- Positions are assigned by the appender from `event_log_head`, whose single row every append
-- locks first: appends commit one at a time, so positions are gapless and a reader can never
-- see position N+1 before N (a PostgreSQL sequence would allow both).
CREATE TABLE IF NOT EXISTS events (
    position        BIGINT PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    stream          TEXT NOT NULL,
    stream_version  BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    schema_version  BIGINT NOT NULL,
    occurred_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    causation_id    TEXT,
    actor           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    UNIQUE (stream, stream_version)
);

CREATE TABLE IF NOT EXISTS event_streams (
    stream   TEXT PRIMARY KEY,
    version  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS event_log_head (
    id        BIGINT PRIMARY KEY,
    position  BIGINT NOT NULL
);

INSERT INTO event_log_head (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
