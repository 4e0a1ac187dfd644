-- Audit reads select by recording time: `recorded_at` grows with `position` (both are assigned
-- under the log's head lock), so the index serves range scans in log order.
CREATE INDEX IF NOT EXISTS events_by_recorded_at ON events (recorded_at, position);
