//! The camera read model (`cameras` table) and its queries.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use vigil_schemas::events::{CameraFeatures, Zone};
use vigil_schemas::{CameraEvent, DomainEvent, RecordedEvent};

use crate::error::{InvalidCursor, QueryError};
use crate::format_time;
use crate::runner::{Projection, ProjectionError};
use crate::sql::parse_time;

/// Camera statuses the read model can hold. An enabled camera is `pending` until its actor
/// reports (`camera.status_changed`): `online`, `offline`, `error`, `stopped` (the server
/// shut down) or `ended` (its video file was read to the end). A disabled camera is
/// `disabled`.
pub const STATUSES: &[&str] = &[
    "pending", "online", "offline", "error", "stopped", "ended", "disabled",
];

/// A camera as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Source URL or `push`.
    pub source: String,
    /// Ingest on or off.
    pub enabled: bool,
    /// Sampling rate.
    pub sample_fps: f64,
    /// Analyses.
    pub features: CameraFeatures,
    /// Prompt.
    pub prompt: String,
    /// Zones.
    pub zones: Vec<Zone>,
    /// One of [`STATUSES`].
    pub status: String,
    /// Why, as the camera's actor reported it (empty until it reports).
    pub status_reason: String,
    /// When the status last changed (`None` until the actor reports).
    pub status_at: Option<DateTime<Utc>>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Stream version of the last applied event (the HTTP ETag).
    pub version: u64,
}

/// Filters and page of a camera listing.
#[derive(Debug, Clone, Default)]
pub struct CameraQuery {
    /// Only cameras with this status.
    pub status: Option<String>,
    /// Only enabled (or disabled) cameras.
    pub enabled: Option<bool>,
    /// Continue after this cursor (from a previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Only these ids (a camera-restricted key's cameras).
    pub only_ids: Option<Vec<String>>,
    /// The listing's order by id; `None` is ascending.
    pub order: Option<crate::Order>,
}

/// The cursor that continues after `last_id`.
pub fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("cam:{last_id}"))
}

/// Decodes a cursor this API handed out into the id it continues after.
pub fn decode_cursor(cursor: &str) -> Result<String, InvalidCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
    text.strip_prefix("cam:")
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or(InvalidCursor)
}

const COLUMNS: &str = "id, name, source, enabled, sample_fps, features, prompt, zones, status, \
                       created_at, updated_at, version, status_reason, status_at";

fn from_row(row: &AnyRow) -> Result<CameraRow, QueryError> {
    let features: String = row.try_get("features")?;
    let zones: String = row.try_get("zones")?;
    Ok(CameraRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        source: row.try_get("source")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        sample_fps: row.try_get("sample_fps")?,
        features: serde_json::from_str(&features)
            .map_err(|e| QueryError::Corrupt(e.to_string()))?,
        prompt: row.try_get("prompt")?,
        zones: serde_json::from_str(&zones).map_err(|e| QueryError::Corrupt(e.to_string()))?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        status_at: row
            .try_get::<Option<String>, _>("status_at")?
            .map(|t| parse_time(&t))
            .transpose()?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_time(&row.try_get::<String, _>("updated_at")?)?,
        version: row.try_get::<i64, _>("version")? as u64,
    })
}

/// Cameras per status, and the total.
pub async fn count_cameras(pool: &AnyPool) -> Result<serde_json::Value, QueryError> {
    let rows =
        sqlx::query("SELECT status, COUNT(*) AS n FROM cameras GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await?;
    let mut by_status = serde_json::Map::new();
    let mut total = 0;
    for row in &rows {
        let n: i64 = row.try_get("n")?;
        total += n;
        by_status.insert(row.try_get::<String, _>("status")?, n.into());
    }
    Ok(serde_json::json!({"total": total, "by_status": by_status}))
}

/// One camera by id.
pub async fn get_camera(pool: &AnyPool, id: &str) -> Result<Option<CameraRow>, QueryError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM cameras WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// A page of cameras by id in `query.order` (ascending by default), and the cursor of the next
/// page if there is one.
pub async fn list_cameras(
    pool: &AnyPool,
    query: &CameraQuery,
) -> Result<(Vec<CameraRow>, Option<String>), QueryError> {
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut sql = format!("SELECT {COLUMNS} FROM cameras WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if query.status.is_some() {
        sql += &format!(" AND status = ${}", next());
    }
    if query.enabled.is_some() {
        sql += &format!(" AND enabled = ${}", next());
    }
    let order = query.order.unwrap_or(crate::Order::Asc);
    if after.is_some() {
        sql += &format!(" AND id {} ${}", order.after(), next());
    }
    if let Some(ids) = &query.only_ids {
        if ids.is_empty() {
            return Ok((vec![], None));
        }
        let list: Vec<String> = ids.iter().map(|_| format!("${}", next())).collect();
        sql += &format!(" AND id IN ({})", list.join(", "));
    }
    sql += &format!(" ORDER BY id {} LIMIT ${}", order.sql(), next());
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(status) = &query.status {
        q = q.bind(status.clone());
    }
    if let Some(enabled) = query.enabled {
        q = q.bind(i64::from(enabled));
    }
    if let Some(after) = after {
        q = q.bind(after);
    }
    for id in query.only_ids.iter().flatten() {
        q = q.bind(id.clone());
    }
    let rows = q.bind(i64::from(query.limit) + 1).fetch_all(pool).await?;
    let mut cameras = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if cameras.len() > query.limit as usize {
        cameras.truncate(query.limit as usize);
        cameras.last().map(|c| encode_cursor(&c.id))
    } else {
        None
    };
    Ok((cameras, next_cursor))
}

/// Projects camera events into the `cameras` table.
pub struct CameraProjection;

fn status_for(enabled: bool, current: Option<&str>) -> &'static str {
    match (enabled, current) {
        (false, _) => "disabled",
        (true, Some(s)) if s != "disabled" => STATUSES
            .iter()
            .find(|x| **x == s)
            .copied()
            .unwrap_or("pending"),
        (true, _) => "pending",
    }
}

async fn write_row(conn: &mut AnyConnection, c: &CameraRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO cameras ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, source = excluded.source, \
         enabled = excluded.enabled, sample_fps = excluded.sample_fps, features = excluded.features, \
         prompt = excluded.prompt, zones = excluded.zones, status = excluded.status, \
         created_at = excluded.created_at, updated_at = excluded.updated_at, version = excluded.version, \
         status_reason = excluded.status_reason, status_at = excluded.status_at"
    )))
    .bind(c.id.clone())
    .bind(c.name.clone())
    .bind(c.source.clone())
    .bind(i64::from(c.enabled))
    .bind(c.sample_fps)
    .bind(serde_json::to_string(&c.features).expect("features serialise"))
    .bind(c.prompt.clone())
    .bind(serde_json::to_string(&c.zones).expect("zones serialise"))
    .bind(c.status.clone())
    .bind(format_time(c.created_at))
    .bind(format_time(c.updated_at))
    .bind(c.version as i64)
    .bind(c.status_reason.clone())
    .bind(c.status_at.map(format_time))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for CameraProjection {
    fn name(&self) -> &'static str {
        "cameras"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["cameras"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let failed = |reason: String| ProjectionError::Apply {
            name: "cameras".into(),
            position: event.position,
            reason,
        };
        let Some(decoded) = CameraEvent::from_recorded(event).map_err(|e| failed(e.to_string()))?
        else {
            return Ok(());
        };
        match decoded {
            CameraEvent::Registered(e) => {
                let row = CameraRow {
                    status: status_for(e.enabled, None).into(),
                    status_reason: String::new(),
                    status_at: None,
                    id: e.camera_id,
                    name: e.name,
                    source: e.source,
                    enabled: e.enabled,
                    sample_fps: e.sample_fps,
                    features: e.features,
                    prompt: e.prompt,
                    zones: e.zones,
                    created_at: event.occurred_at,
                    updated_at: event.occurred_at,
                    version: event.stream_version,
                };
                write_row(conn, &row).await?;
            }
            CameraEvent::Updated(e) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM cameras WHERE id = $1"
                )))
                .bind(e.camera_id.clone())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| failed(format!("update of unknown camera `{}`", e.camera_id)))?;
                let mut c = from_row(&row).map_err(|err| failed(err.to_string()))?;
                c.name = e.name.unwrap_or(c.name);
                c.source = e.source.unwrap_or(c.source);
                c.enabled = e.enabled.unwrap_or(c.enabled);
                c.status = status_for(c.enabled, Some(&c.status)).into();
                c.sample_fps = e.sample_fps.unwrap_or(c.sample_fps);
                c.features = e.features.unwrap_or(c.features);
                c.prompt = e.prompt.unwrap_or(c.prompt);
                c.zones = e.zones.unwrap_or(c.zones);
                c.updated_at = event.occurred_at;
                c.version = event.stream_version;
                write_row(conn, &c).await?;
            }
            CameraEvent::Removed(e) => {
                sqlx::query("DELETE FROM cameras WHERE id = $1")
                    .bind(e.camera_id)
                    .execute(&mut *conn)
                    .await?;
            }
            CameraEvent::StatusChanged(e) => {
                // A disabled camera stays `disabled` whatever its stopping actor reports; a
                // report about a removed camera finds no row.
                sqlx::query(
                    "UPDATE cameras SET status = CASE WHEN enabled = 0 THEN 'disabled' ELSE $1 END, \
                     status_reason = $2, status_at = $3 WHERE id = $4",
                )
                .bind(e.status.as_str())
                .bind(e.reason)
                .bind(format_time(event.occurred_at))
                .bind(e.camera_id)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        assert_eq!(decode_cursor(&encode_cursor("abc-1")).unwrap(), "abc-1");
        assert!(decode_cursor("not base64!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("inc:abc")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("cam:")).is_err());
    }

    #[test]
    fn status_follows_enabled() {
        assert_eq!(status_for(false, Some("online")), "disabled");
        assert_eq!(status_for(true, Some("disabled")), "pending");
        assert_eq!(status_for(true, Some("online")), "online");
        assert_eq!(status_for(true, None), "pending");
    }
}
