-- The `vectors` projection keeps its Lance tables (`subject_faces`, `appearances`) outside the
-- database; this table holds what it needs between a track's first and last event: the entry
-- frame of each track whose `appearance.ended` has not been applied yet. `id` is the track's
-- stream (`track-{camera}-{track}`).
CREATE TABLE IF NOT EXISTS track_entries (
    id          TEXT PRIMARY KEY,
    camera_id   TEXT NOT NULL,
    track_id    TEXT NOT NULL,
    -- JSON FrameRef of the entry frame.
    entry_frame TEXT NOT NULL
);
