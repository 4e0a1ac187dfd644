-- Incidents and alerts keep their event times (from the evidence: `opened_at`, `last_seen_at`,
-- an alert's `at`) apart from when Vigil recorded them (`recorded_at` of the opening event,
-- from its envelope). Rows projected before this migration have no `recorded_at` (read as
-- their event time) and the recording time as `opened_at`: rebuild the `incidents` and
-- `subjects` projections to derive both from the events.
-- dialect: all
ALTER TABLE incidents ADD COLUMN recorded_at TEXT;
ALTER TABLE alerts ADD COLUMN recorded_at TEXT;
