-- Camera ingest (camera actors) reports why a camera is in its status, and since when.
ALTER TABLE cameras ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE cameras ADD COLUMN status_at TEXT;
