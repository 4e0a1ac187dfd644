//! The clip read model (`clips`, `clip_incidents`, `clip_tracks`) and its queries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use vigil_schemas::{ClipEvent, DomainEvent, RecordedEvent};

use crate::error::{InvalidCursor, QueryError};
use crate::format_time;
use crate::runner::{Projection, ProjectionError};
use crate::sql::{decode_keyset, encode_keyset, time_col};

/// A recorded clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipRow {
    /// Its id.
    pub id: String,
    /// The camera it shows.
    pub camera_id: String,
    /// Capture time of its first frame.
    pub started_at: DateTime<Utc>,
    /// Capture time of its last frame.
    pub ended_at: DateTime<Utc>,
    /// Seconds it plays.
    pub duration_seconds: f64,
    /// `h264` or `h265`.
    pub codec: String,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames in it.
    pub frames: u64,
    /// Size of the MP4 file.
    pub bytes: u64,
    /// SHA-256 of the file in the blob store.
    pub media: String,
    /// A segment of continuous recording.
    pub continuous: bool,
}

fn clip_row(row: &AnyRow) -> Result<ClipRow, QueryError> {
    let int = |name: &str| -> Result<i64, QueryError> { Ok(row.try_get::<i64, _>(name)?) };
    Ok(ClipRow {
        id: row.try_get("id")?,
        camera_id: row.try_get("camera_id")?,
        started_at: time_col(row, "started_at")?,
        ended_at: time_col(row, "ended_at")?,
        duration_seconds: row.try_get("duration_seconds")?,
        codec: row.try_get("codec")?,
        width: int("width")? as u32,
        height: int("height")? as u32,
        frames: int("frames")? as u64,
        bytes: int("bytes")? as u64,
        media: row.try_get("media")?,
        continuous: int("continuous")? != 0,
    })
}

/// The clips covering an incident, oldest first.
pub async fn clips_of_incident(
    pool: &AnyPool,
    incident_id: &str,
) -> Result<Vec<ClipRow>, QueryError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLIP_COLUMNS} FROM clips c JOIN clip_incidents i ON i.clip_id = c.id \
         WHERE i.incident_id = $1 ORDER BY c.started_at, c.id"
    )))
    .bind(incident_id.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter().map(clip_row).collect()
}

const CLIP_COLUMNS: &str = "c.id, c.camera_id, c.started_at, c.ended_at, c.duration_seconds, \
                            c.codec, c.width, c.height, c.frames, c.bytes, c.media, \
                            c.continuous";

/// The clips showing any of `track_ids`, with the track each shows, oldest first.
pub async fn clips_of_tracks(
    pool: &AnyPool,
    track_ids: &[String],
) -> Result<Vec<(String, ClipRow)>, QueryError> {
    let mut found = Vec::new();
    // A bounded number of placeholders per query.
    for chunk in track_ids.chunks(100) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.track_id, {CLIP_COLUMNS} FROM clips c JOIN clip_tracks t \
             ON t.clip_id = c.id WHERE t.track_id IN ({}) ORDER BY c.started_at, c.id",
            marks.join(", ")
        )));
        for id in chunk {
            query = query.bind(id.clone());
        }
        for row in query.fetch_all(pool).await? {
            found.push((row.try_get("track_id")?, clip_row(&row)?));
        }
    }
    found.sort_by(|a, b| (a.1.started_at, &a.1.id).cmp(&(b.1.started_at, &b.1.id)));
    Ok(found)
}

/// One page of a camera's clips that overlap `from`–`to`, oldest first: at most `limit`,
/// after `cursor` (a `next_cursor` this returned). Returns the page and the cursor of the
/// next one (`None` on the last page).
pub async fn camera_clips(
    pool: &AnyPool,
    camera_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<ClipRow>, Option<String>), QueryError> {
    let (after_at, after_id) = match cursor {
        Some(cursor) => {
            let mut parts = decode_keyset("clip", 2, cursor).map_err(QueryError::from)?;
            let id = parts.pop().unwrap_or_default();
            let at = parts.pop().unwrap_or_default();
            let at =
                DateTime::parse_from_rfc3339(&at).map_err(|_| QueryError::from(InvalidCursor))?;
            (format_time(at.with_timezone(&Utc)), id)
        }
        None => (String::new(), String::new()),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLIP_COLUMNS} FROM clips c WHERE c.camera_id = $1 AND c.ended_at >= $2 \
         AND c.started_at <= $3 AND (c.started_at > $4 OR (c.started_at = $4 AND c.id > $5)) \
         ORDER BY c.started_at, c.id LIMIT {}",
        limit + 1
    )))
    .bind(camera_id.to_string())
    .bind(format_time(from))
    .bind(format_time(to))
    .bind(after_at)
    .bind(after_id)
    .fetch_all(pool)
    .await?;
    let mut clips = rows.iter().map(clip_row).collect::<Result<Vec<_>, _>>()?;
    let next = if clips.len() > limit as usize {
        clips.truncate(limit as usize);
        clips
            .last()
            .map(|c| encode_keyset("clip", &[&format_time(c.started_at), &c.id]))
    } else {
        None
    };
    Ok((clips, next))
}

/// Bytes of every clip stored.
pub async fn clip_bytes(pool: &AnyPool) -> Result<u64, QueryError> {
    // SUM of BIGINT is NUMERIC on PostgreSQL: cast it back.
    let row = sqlx::query("SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS n FROM clips")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
}

/// Up to `limit` clips, oldest first, that no open incident (active, investigating or
/// escalated) holds: what a full budget deletes first. With `ended_before`, only the clips
/// that ended before it (what an age limit deletes).
pub async fn unpinned_clips(
    pool: &AnyPool,
    ended_before: Option<DateTime<Utc>>,
    limit: u32,
) -> Result<Vec<ClipRow>, QueryError> {
    // Every clip ends before the end of time.
    let before = ended_before.map_or_else(|| "9999".to_string(), format_time);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLIP_COLUMNS} FROM clips c WHERE c.ended_at < $1 AND NOT EXISTS (\
         SELECT 1 FROM clip_incidents ci JOIN incidents i ON i.id = ci.incident_id \
         WHERE ci.clip_id = c.id AND i.status IN ('active', 'investigating', 'escalated')) \
         ORDER BY c.started_at, c.id LIMIT {limit}"
    )))
    .bind(before)
    .fetch_all(pool)
    .await?;
    rows.iter().map(clip_row).collect()
}

/// Up to `limit` clips none of whose incidents is left (deleted, by retention or an operator).
pub async fn orphaned_clips(pool: &AnyPool, limit: u32) -> Result<Vec<ClipRow>, QueryError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLIP_COLUMNS} FROM clips c WHERE EXISTS (\
         SELECT 1 FROM clip_incidents ci WHERE ci.clip_id = c.id) AND NOT EXISTS (\
         SELECT 1 FROM clip_incidents ci JOIN incidents i ON i.id = ci.incident_id \
         WHERE ci.clip_id = c.id) ORDER BY c.started_at, c.id LIMIT {limit}"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(clip_row).collect()
}

/// Projects clip events into `clips` and `clip_incidents`.
pub struct ClipProjection;

#[async_trait]
impl Projection for ClipProjection {
    fn name(&self) -> &'static str {
        "clips"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["clips", "clip_incidents", "clip_tracks"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded = ClipEvent::from_recorded(event).map_err(|e| ProjectionError::Apply {
            name: "clips".into(),
            position: event.position,
            reason: e.to_string(),
        })?;
        let e = match decoded {
            Some(ClipEvent::Recorded(e)) => e,
            Some(ClipEvent::Deleted(e)) => {
                for table in ["clip_incidents", "clip_tracks"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE clip_id = $1"
                    )))
                    .bind(e.clip_id.clone())
                    .execute(&mut *conn)
                    .await?;
                }
                sqlx::query("DELETE FROM clips WHERE id = $1")
                    .bind(e.clip_id)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            None => return Ok(()),
        };
        sqlx::query(
            "INSERT INTO clips (id, camera_id, started_at, ended_at, duration_seconds, codec, \
             width, height, frames, bytes, media, recorded_at, continuous) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(e.clip_id.clone())
        .bind(e.camera_id)
        .bind(format_time(e.started_at))
        .bind(format_time(e.ended_at))
        .bind(e.duration_seconds)
        .bind(e.codec)
        .bind(i64::from(e.width))
        .bind(i64::from(e.height))
        .bind(e.frames as i64)
        .bind(e.bytes as i64)
        .bind(e.media)
        .bind(format_time(event.recorded_at))
        .bind(i64::from(e.continuous))
        .execute(&mut *conn)
        .await?;
        link(conn, "clip_tracks", "track_id", &e.clip_id, e.track_ids).await?;
        link(
            conn,
            "clip_incidents",
            "incident_id",
            &e.clip_id,
            e.incident_ids,
        )
        .await?;
        Ok(())
    }
}

/// Rows of link `table` tying clip `clip_id` to each of `ids` in `column` (`id` is
/// `{clip}:{other}`, so a replayed event adds nothing).
async fn link(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    clip_id: &str,
    ids: Vec<String>,
) -> Result<(), sqlx::Error> {
    for other in ids {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (id, clip_id, {column}) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING"
        )))
        .bind(format!("{clip_id}:{other}"))
        .bind(clip_id.to_string())
        .bind(other)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{Log, apply, on_both, t};

    fn recorded(log: &mut Log, id: &str, incidents: &[&str], start: i64) {
        recorded_with(log, id, incidents, &[], start);
    }

    fn recorded_with(log: &mut Log, id: &str, incidents: &[&str], tracks: &[&str], start: i64) {
        log.push(
            &format!("clip-{id}"),
            "clip.recorded",
            t(7, 9, 0, start + 30),
            "camera:gate",
            json!({
                "clip_id": id,
                "camera_id": "gate",
                "incident_ids": incidents,
                "track_ids": tracks,
                "continuous": incidents.is_empty() && tracks.is_empty(),
                "started_at": t(7, 9, 0, start),
                "ended_at": t(7, 9, 0, start + 20),
                "duration_seconds": 20.1,
                "codec": "h264",
                "width": 1280,
                "height": 720,
                "frames": 201,
                "bytes": 4_000_000,
                "media": format!("{:0>64}", id),
            }),
        );
    }

    async fn an_incident_lists_the_clips_that_cover_it(pool: &AnyPool) {
        let mut log = Log::default();
        recorded(&mut log, "c2", &["i1", "i2"], 40);
        recorded(&mut log, "c1", &["i1"], 0);
        apply(pool, &ClipProjection, &log.events).await;
        // Applied twice (a batch run again after a failure): nothing doubles.
        apply(pool, &ClipProjection, &log.events).await;
        let clips = clips_of_incident(pool, "i1").await.unwrap();
        let ids: Vec<&str> = clips.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2"], "oldest first");
        let c1 = &clips[0];
        assert_eq!((c1.width, c1.height, c1.frames), (1280, 720, 201));
        assert_eq!(
            (c1.started_at, c1.ended_at),
            (t(7, 9, 0, 0), t(7, 9, 0, 20))
        );
        assert_eq!(c1.bytes, 4_000_000);
        assert_eq!(clips_of_incident(pool, "i2").await.unwrap().len(), 1);
        assert!(clips_of_incident(pool, "i3").await.unwrap().is_empty());
    }

    fn incident(log: &mut Log, id: &str, event_type: &str, payload: serde_json::Value) {
        let fixture: serde_json::Value = serde_json::from_str(match event_type {
            "incident.opened" => include_str!("../../schemas/fixtures/incident.opened/v1.json"),
            "incident.status_changed" => {
                include_str!("../../schemas/fixtures/incident.status_changed/v1.json")
            }
            _ => include_str!("../../schemas/fixtures/incident.deleted/v1.json"),
        })
        .unwrap();
        let mut p = fixture["payload"].clone();
        p["incident_id"] = json!(id);
        for (k, v) in payload.as_object().unwrap() {
            p[k] = v.clone();
        }
        log.push(
            &format!("incident-{id}"),
            event_type,
            t(7, 8, 0, 0),
            "rule:crowd",
            p,
        );
    }

    async fn retention_finds_clips_no_open_incident_holds_and_clips_of_deleted_incidents(
        pool: &AnyPool,
    ) {
        let mut log = Log::default();
        // i-open stays open; i-done is resolved; i-gone is deleted.
        incident(
            &mut log,
            "i-open",
            "incident.opened",
            json!({"dedup_key": "a"}),
        );
        incident(
            &mut log,
            "i-done",
            "incident.opened",
            json!({"dedup_key": "b"}),
        );
        incident(
            &mut log,
            "i-done",
            "incident.status_changed",
            json!({"from": "active", "to": "resolved"}),
        );
        incident(
            &mut log,
            "i-gone",
            "incident.opened",
            json!({"dedup_key": "c"}),
        );
        incident(&mut log, "i-gone", "incident.deleted", json!({}));
        apply(pool, &crate::incidents::IncidentProjection, &log.events).await;
        let mut clips = Log {
            events: log.events.clone(),
        };
        recorded(&mut clips, "c-open", &["i-open", "i-done"], 0);
        recorded(&mut clips, "c-done", &["i-done"], 10);
        recorded(&mut clips, "c-gone", &["i-gone"], 20);
        let new = clips.events.split_off(log.events.len());
        apply(pool, &ClipProjection, &new).await;
        assert_eq!(clip_bytes(pool).await.unwrap(), 3 * 4_000_000);
        let ids = |rows: Vec<ClipRow>| rows.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(
            ids(unpinned_clips(pool, None, 10).await.unwrap()),
            ["c-done", "c-gone"],
            "an open incident holds its clip"
        );
        // c-done ended at 9:00:30, c-gone at 9:00:40.
        assert_eq!(
            ids(unpinned_clips(pool, Some(t(7, 9, 0, 35)), 10)
                .await
                .unwrap()),
            ["c-done"],
            "an age limit takes only what ended before it"
        );
        assert_eq!(ids(orphaned_clips(pool, 10).await.unwrap()), ["c-gone"]);
        // Deleted: gone from every table.
        clips.push(
            "clip-c-gone",
            "clip.deleted",
            t(7, 10, 0, 0),
            "system:clip-retention",
            json!({"clip_id": "c-gone", "camera_id": "gate", "media": "x", "reason": "budget"}),
        );
        apply(
            pool,
            &ClipProjection,
            &clips.events[clips.events.len() - 1..],
        )
        .await;
        assert!(orphaned_clips(pool, 10).await.unwrap().is_empty());
        assert_eq!(clip_bytes(pool).await.unwrap(), 2 * 4_000_000);
        assert!(clips_of_incident(pool, "i-gone").await.unwrap().is_empty());
    }

    async fn clips_show_tracks_and_a_camera_lists_its_clips_by_time(pool: &AnyPool) {
        let mut log = Log::default();
        // Continuous segments (no incident, no track) at 0 and 20 s; an appearance clip of
        // t1 and t2 at 10 s; an incident clip of t2 at 40 s.
        recorded(&mut log, "s1", &[], 0);
        recorded_with(&mut log, "a1", &[], &["t1", "t2"], 10);
        recorded(&mut log, "s2", &[], 20);
        recorded_with(&mut log, "i1", &["inc"], &["t2"], 40);
        apply(pool, &ClipProjection, &log.events).await;
        let shown = |rows: Vec<(String, ClipRow)>| {
            rows.into_iter()
                .map(|(t, c)| format!("{t}:{}", c.id))
                .collect::<Vec<_>>()
        };
        let tracks = ["t2".to_string(), "t1".to_string(), "t9".to_string()];
        let mut found = shown(clips_of_tracks(pool, &tracks).await.unwrap());
        found.sort();
        assert_eq!(found, ["t1:a1", "t2:a1", "t2:i1"]);
        // Every clip lasts 20 s: 25–45 s overlaps a1 (10–30), s2 (20–40) and i1 (40–60).
        let page = |cursor: Option<String>, limit| async move {
            camera_clips(
                pool,
                "gate",
                t(7, 9, 0, 25),
                t(7, 9, 0, 45),
                cursor.as_deref(),
                limit,
            )
            .await
            .unwrap()
        };
        let (first, next) = page(None, 2).await;
        assert_eq!(
            first.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["a1", "s2"]
        );
        assert!(first[1].continuous && !first[0].continuous);
        let (rest, last) = page(next, 2).await;
        assert_eq!(
            rest.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["i1"]
        );
        assert!(last.is_none());
        assert!(
            camera_clips(pool, "yard", t(7, 9, 0, 0), t(7, 9, 1, 0), None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert!(matches!(
            camera_clips(pool, "gate", t(7, 9, 0, 0), t(7, 9, 1, 0), Some("nope"), 10).await,
            Err(QueryError::Cursor(_))
        ));
        // Deleted: its tracks go with it.
        log.push(
            "clip-a1",
            "clip.deleted",
            t(7, 10, 0, 0),
            "system:clip-retention",
            json!({"clip_id": "a1", "camera_id": "gate", "media": "x", "reason": "subject_erased"}),
        );
        apply(pool, &ClipProjection, &log.events[log.events.len() - 1..]).await;
        assert_eq!(
            shown(clips_of_tracks(pool, &tracks).await.unwrap()),
            ["t2:i1"]
        );
    }

    on_both!(
        clips_show_tracks_and_a_camera_lists_its_clips_by_time,
        an_incident_lists_the_clips_that_cover_it,
        retention_finds_clips_no_open_incident_holds_and_clips_of_deleted_incidents,
    );
}
