-- Several ingest nodes on one PostgreSQL database (src/cluster.rs): the nodes that beat, and
-- one lease per camera. A lease names the node that runs the camera, until when (the
-- database's clock, milliseconds since the epoch), and a fencing token that grows at every
-- change of hands: an append of a camera's events commits only while its node holds the lease
-- with the token the camera's actor started with. Released leases keep their row (expired) so
-- the token never starts over. SQLite (one node) creates the tables and never uses them.
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node_id      TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    max_cameras  BIGINT NOT NULL,
    load         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS camera_leases (
    camera_id   TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    token       BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS camera_leases_by_owner ON camera_leases (owner);
