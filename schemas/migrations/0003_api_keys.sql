-- API keys: a read model for listing (the write side checks keys against their streams), and
-- usage counters. Usage is telemetry, not domain facts: nodes add their counts periodically.
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    rate_limits  TEXT NOT NULL,
    camera_ids   TEXT NOT NULL,
    enabled      BIGINT NOT NULL,
    revoked      BIGINT NOT NULL,
    expires_at   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    version      BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_key_usage (
    key_id        TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    requests      BIGINT NOT NULL,
    throttled     BIGINT NOT NULL,
    last_used_at  TEXT NOT NULL,
    PRIMARY KEY (key_id, endpoint)
);
