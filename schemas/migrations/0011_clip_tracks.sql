-- Clips of appearances and continuous recording: which tracks a clip shows (`id` is
-- `{clip_id}:{track_id}`), and whether it is a segment of continuous recording. Clips
-- projected before this migration show no tracks and are not segments: rebuild the `clips`
-- projection to derive both from the events.
ALTER TABLE clips ADD COLUMN continuous BIGINT NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS clip_tracks (
    id       TEXT PRIMARY KEY,
    clip_id  TEXT NOT NULL,
    track_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clip_tracks_by_track ON clip_tracks (track_id);
CREATE INDEX IF NOT EXISTS clip_tracks_by_clip ON clip_tracks (clip_id);
