//! The incident read model (`incidents`, `incident_history`, `incidents_fts`) and its queries.
//!
//! One row per live incident, folded from its `incident-{id}` stream; one history row per event
//! of that stream; one search row per incident over its reasoning and notes (SQLite: an FTS5
//! table ranked by bm25; PostgreSQL: a plain table with a GIN index over
//! `to_tsvector('simple', body)`, ranked by `ts_rank`). `incident.deleted` removes all three.
//! Every column comes from events, so a rebuild is identical.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use vigil_schemas::events::{
    FrameRef, IncidentKind, IncidentOpened, IncidentStatus, IncidentSubjects, Severity,
};
use vigil_schemas::{DomainEvent, IncidentEvent, RecordedEvent};

use crate::error::{InvalidCursor, QueryError};
use crate::format_time;
use crate::runner::{Projection, ProjectionError};
use crate::sql::{
    Arg, SqlBuilder, decode_keyset, encode_keyset, enum_col, is_sqlite, json_col, opt_time_col,
    push_visibility, time_col, to_json,
};

/// Frames of evidence an incident row keeps (the first ones); `evidence_count` counts all.
pub const MAX_EVIDENCE: usize = 50;

/// An incident as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    /// Id.
    pub id: String,
    /// What it is about.
    pub kind: IncidentKind,
    /// How serious.
    pub severity: Severity,
    /// Where it is in its workflow.
    pub status: IncidentStatus,
    /// The highest confidence of all its findings.
    pub confidence: f64,
    /// The camera, when a camera's rule raised it.
    pub camera_id: Option<String>,
    /// The zone, when the rule is about one.
    pub zone: Option<String>,
    /// The latest finding's reasoning.
    pub reasoning: String,
    /// Operator notes (`incident.note_added`, and a status change's non-empty notes), one per
    /// line; empty when there are none.
    pub notes: String,
    /// Marked read.
    pub is_read: bool,
    /// Acted on.
    pub action_taken: bool,
    /// What raised it: `rule:{kind}` or `alertmanager`.
    pub source: String,
    /// What later findings of the same rule, camera, zone and track share.
    pub dedup_key: String,
    /// The union of every finding's tracks, and the matched subject.
    pub subjects: IncidentSubjects,
    /// Response actions the rule recommends.
    pub recommended_actions: Vec<String>,
    /// The first [`MAX_EVIDENCE`] frames of evidence, in the order they were found.
    pub evidence: Vec<FrameRef>,
    /// Every frame of evidence found, kept in `evidence` or not.
    pub evidence_count: u64,
    /// When what it is about began: the first evidence's time (`observed_at` of
    /// `incident.opened`: the frame's capture time, an outside alert's start).
    pub opened_at: DateTime<Utc>,
    /// When its latest evidence was seen (the latest `observed_at` of its findings), never
    /// before `opened_at`.
    pub last_seen_at: DateTime<Utc>,
    /// When Vigil recorded it (`recorded_at` of `incident.opened`, from the envelope); later
    /// than `opened_at` when the evidence arrived late (a frame or alert stamped in the past).
    pub recorded_at: DateTime<Utc>,
    /// `occurred_at` of its last event.
    pub updated_at: DateTime<Utc>,
    /// The first time it was marked read.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it reached `resolved` or `false_positive`.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Stream version of its last event (the HTTP ETag).
    pub version: u64,
}

/// Filters and page of an incident listing (also the filters of [`export_page`]).
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// Only incidents in this status.
    pub status: Option<IncidentStatus>,
    /// Only incidents at least this severe (`high` lists `high` and `critical`).
    pub severity: Option<Severity>,
    /// Only incidents of this kind.
    pub kind: Option<IncidentKind>,
    /// Only incidents of this camera.
    pub camera_id: Option<String>,
    /// Only incidents opened at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only incidents opened before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only read (or unread) incidents.
    pub is_read: Option<bool>,
    /// Only incidents acted on (or not).
    pub action_taken: Option<bool>,
    /// Only incidents of these cameras (a camera-restricted key): incidents of other cameras
    /// and incidents without a camera are hidden. `Some(vec![])` hides everything.
    pub only_cameras: Option<Vec<String>>,
    /// Continue after this cursor (a previous page's `next_cursor`, listed in the same order).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
    /// The listing's order by `(opened_at, id)`; `None` is newest first. The export ignores it
    /// (oldest first).
    pub order: Option<crate::Order>,
}

/// One event of an incident's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The event's version in the incident's stream.
    pub stream_version: u64,
    /// When it happened (`occurred_at`).
    pub at: DateTime<Utc>,
    /// Its type (`incident.status_changed`, …).
    pub event_type: String,
    /// Who caused it (`key:{id}`, `rule:{name}`, `system`).
    pub actor: String,
    /// Its payload without `incident_id`.
    pub detail: serde_json::Value,
}

/// Counts and means over the incidents a caller may see.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IncidentStats {
    /// Every incident.
    pub total: i64,
    /// Incidents whose workflow is not over (not `resolved`, not `false_positive`).
    pub active: i64,
    /// Opened since 00:00 UTC of today.
    pub today: i64,
    /// Opened since Monday 00:00 UTC of this week.
    pub this_week: i64,
    /// Per severity (every severity, zeros included).
    pub by_severity: BTreeMap<String, i64>,
    /// Per kind (every kind, zeros included).
    pub by_kind: BTreeMap<String, i64>,
    /// Per status (every status, zeros included).
    pub by_status: BTreeMap<String, i64>,
    /// Mean confidence; `None` without incidents.
    pub mean_confidence: Option<f64>,
    /// `false_positive / (resolved + false_positive)`; `None` while none is closed.
    pub false_positive_rate: Option<f64>,
    /// Mean seconds from opening to the first acknowledgement, over acknowledged incidents.
    pub mean_seconds_to_acknowledge: Option<f64>,
    /// Mean seconds from opening to `resolved`/`false_positive`, over closed incidents.
    pub mean_seconds_to_resolve: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Rows.

const COLUMNS: &[&str] = &[
    "id",
    "kind",
    "severity",
    "status",
    "confidence",
    "camera_id",
    "zone",
    "reasoning",
    "notes",
    "is_read",
    "action_taken",
    "source",
    "dedup_key",
    "subjects",
    "recommended_actions",
    "evidence",
    "evidence_count",
    "opened_at",
    "last_seen_at",
    "updated_at",
    "acknowledged_at",
    "resolved_at",
    "version",
    "recorded_at",
];

/// Columns only the projection reads and writes.
const EXTRA_COLUMNS: &[&str] = &[
    "severity_rank",
    "micros_to_acknowledge",
    "micros_to_resolve",
    "opened_position",
];

fn columns(prefix: &str) -> String {
    COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn severity_rank(severity: Severity) -> i64 {
    Severity::ALL
        .iter()
        .position(|s| *s == severity)
        .expect("ALL holds every severity") as i64
}

fn from_row(row: &AnyRow) -> Result<IncidentRow, QueryError> {
    let opened_at = time_col(row, "opened_at")?;
    Ok(IncidentRow {
        id: row.try_get("id")?,
        kind: enum_col(row, "kind", IncidentKind::parse)?,
        severity: enum_col(row, "severity", Severity::parse)?,
        status: enum_col(row, "status", IncidentStatus::parse)?,
        confidence: row.try_get("confidence")?,
        camera_id: row.try_get("camera_id")?,
        zone: row.try_get("zone")?,
        reasoning: row.try_get("reasoning")?,
        notes: row.try_get("notes")?,
        is_read: row.try_get::<i64, _>("is_read")? != 0,
        action_taken: row.try_get::<i64, _>("action_taken")? != 0,
        source: row.try_get("source")?,
        dedup_key: row.try_get("dedup_key")?,
        subjects: json_col(row, "subjects")?,
        recommended_actions: json_col(row, "recommended_actions")?,
        evidence: json_col(row, "evidence")?,
        evidence_count: row.try_get::<i64, _>("evidence_count")? as u64,
        opened_at,
        last_seen_at: time_col(row, "last_seen_at")?,
        updated_at: time_col(row, "updated_at")?,
        acknowledged_at: opt_time_col(row, "acknowledged_at")?,
        resolved_at: opt_time_col(row, "resolved_at")?,
        version: row.try_get::<i64, _>("version")? as u64,
        // Rows projected before `recorded_at` existed read their opening time until rebuilt.
        recorded_at: opt_time_col(row, "recorded_at")?.unwrap_or(opened_at),
    })
}

fn rows(rows: &[AnyRow]) -> Result<Vec<IncidentRow>, QueryError> {
    rows.iter().map(from_row).collect()
}

// ---------------------------------------------------------------------------------------------
// Queries.

/// The cursor that continues a newest-first listing after `row`.
fn encode_cursor(row: &IncidentRow) -> String {
    encode_keyset("inc", &[&format_time(row.opened_at), &row.id])
}

/// The `(opened_at, id)` a cursor continues after.
fn decode_cursor(cursor: &str) -> Result<(String, String), InvalidCursor> {
    let mut parts = decode_keyset("inc", 2, cursor)?;
    let id = parts.pop().ok_or(InvalidCursor)?;
    let at = parts.pop().ok_or(InvalidCursor)?;
    let at = DateTime::parse_from_rfc3339(&at).map_err(|_| InvalidCursor)?;
    Ok((format_time(at.with_timezone(&Utc)), id))
}

/// Adds `AND …` for each filter of `q` (not its cursor); `false` when nothing can match.
fn push_filters(b: &mut SqlBuilder, q: &IncidentQuery) -> bool {
    if let Some(status) = q.status {
        let p = b.arg(Arg::Text(status.as_str().into()));
        b.push(&format!(" AND status = {p}"));
    }
    if let Some(severity) = q.severity {
        let p = b.arg(Arg::Int(severity_rank(severity)));
        b.push(&format!(" AND severity_rank >= {p}"));
    }
    if let Some(kind) = q.kind {
        let p = b.arg(Arg::Text(kind.as_str().into()));
        b.push(&format!(" AND kind = {p}"));
    }
    if let Some(camera) = &q.camera_id {
        let p = b.arg(Arg::Text(camera.clone()));
        b.push(&format!(" AND camera_id = {p}"));
    }
    if let Some(from) = q.from {
        let p = b.arg(Arg::Text(format_time(from)));
        b.push(&format!(" AND opened_at >= {p}"));
    }
    if let Some(to) = q.to {
        let p = b.arg(Arg::Text(format_time(to)));
        b.push(&format!(" AND opened_at < {p}"));
    }
    if let Some(read) = q.is_read {
        let p = b.arg(Arg::Int(i64::from(read)));
        b.push(&format!(" AND is_read = {p}"));
    }
    if let Some(taken) = q.action_taken {
        let p = b.arg(Arg::Int(i64::from(taken)));
        b.push(&format!(" AND action_taken = {p}"));
    }
    push_visibility(b, "camera_id", q.only_cameras.as_deref())
}

/// A page of incidents by `(opened_at, id)` in `q.order` (newest first by default), and the
/// cursor of the next page if there is one. A cursor this API did not hand out is
/// [`QueryError::Cursor`].
pub async fn list_incidents(
    pool: &AnyPool,
    q: &IncidentQuery,
) -> Result<(Vec<IncidentRow>, Option<String>), QueryError> {
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut b = SqlBuilder::new(format!("SELECT {} FROM incidents WHERE 1 = 1", columns("")));
    if !push_filters(&mut b, q) {
        return Ok((vec![], None));
    }
    let order = q.order.unwrap_or(crate::Order::Desc);
    let (cmp, dir) = (order.after(), order.sql());
    if let Some((at, id)) = after {
        let (p1, p2, p3) = (
            b.arg(Arg::Text(at.clone())),
            b.arg(Arg::Text(at)),
            b.arg(Arg::Text(id)),
        );
        b.push(&format!(
            " AND (opened_at {cmp} {p1} OR (opened_at = {p2} AND id {cmp} {p3}))"
        ));
    }
    let p = b.arg(Arg::Int(i64::from(q.limit) + 1));
    b.push(&format!(" ORDER BY opened_at {dir}, id {dir} LIMIT {p}"));
    let mut conn = pool.acquire().await?;
    let mut page = rows(&b.fetch_all(&mut conn).await?)?;
    let next = if page.len() > q.limit as usize {
        page.truncate(q.limit as usize);
        page.last().map(encode_cursor)
    } else {
        None
    };
    Ok((page, next))
}

/// A page of an export: incidents matching `q`'s filters (its `cursor` and `limit` are
/// ignored) in `opened_at` ascending, then id ascending order, after the `(opened_at, id)` of
/// the previous page's last row. An export reads page by page with bounded memory.
pub async fn export_page(
    pool: &AnyPool,
    q: &IncidentQuery,
    after: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<IncidentRow>, QueryError> {
    let mut b = SqlBuilder::new(format!("SELECT {} FROM incidents WHERE 1 = 1", columns("")));
    if !push_filters(&mut b, q) {
        return Ok(vec![]);
    }
    if let Some((at, id)) = after {
        let at = format_time(at);
        let (p1, p2, p3) = (
            b.arg(Arg::Text(at.clone())),
            b.arg(Arg::Text(at)),
            b.arg(Arg::Text(id)),
        );
        b.push(&format!(
            " AND (opened_at > {p1} OR (opened_at = {p2} AND id > {p3}))"
        ));
    }
    let p = b.arg(Arg::Int(i64::from(limit)));
    b.push(&format!(" ORDER BY opened_at, id LIMIT {p}"));
    let mut conn = pool.acquire().await?;
    rows(&b.fetch_all(&mut conn).await?)
}

/// One incident by id.
pub async fn get_incident(pool: &AnyPool, id: &str) -> Result<Option<IncidentRow>, QueryError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM incidents WHERE id = $1",
        columns("")
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The events of an incident, oldest first (empty for an unknown or deleted incident).
pub async fn incident_history(pool: &AnyPool, id: &str) -> Result<Vec<HistoryRow>, QueryError> {
    let rows = sqlx::query(
        "SELECT stream_version, at, event_type, actor, detail FROM incident_history \
         WHERE incident_id = $1 ORDER BY stream_version",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HistoryRow {
                stream_version: row.try_get::<i64, _>("stream_version")? as u64,
                at: time_col(row, "at")?,
                event_type: row.try_get("event_type")?,
                actor: row.try_get("actor")?,
                detail: json_col(row, "detail")?,
            })
        })
        .collect()
}

/// Counts and means over the incidents of `only_cameras` (all incidents when `None`).
/// "Today" and "this week" start at 00:00 UTC of `now`'s day and of its week's Monday.
pub async fn incident_stats(
    pool: &AnyPool,
    now: DateTime<Utc>,
    only_cameras: Option<&[String]>,
) -> Result<IncidentStats, QueryError> {
    let mut stats = IncidentStats {
        by_severity: Severity::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect(),
        by_kind: IncidentKind::ALL
            .iter()
            .map(|k| (k.as_str().to_string(), 0))
            .collect(),
        by_status: IncidentStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect(),
        ..IncidentStats::default()
    };
    let today = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let week = today - Duration::days(i64::from(now.weekday().num_days_from_monday()));

    let mut b = SqlBuilder::default();
    let (p_today, p_week) = (
        b.arg(Arg::Text(format_time(today))),
        b.arg(Arg::Text(format_time(week))),
    );
    b.push(&format!(
        "SELECT COUNT(*) AS total, \
         COUNT(CASE WHEN status NOT IN ('resolved', 'false_positive') THEN 1 END) AS active, \
         COUNT(CASE WHEN opened_at >= {p_today} THEN 1 END) AS today, \
         COUNT(CASE WHEN opened_at >= {p_week} THEN 1 END) AS this_week, \
         AVG(confidence) AS mean_confidence, \
         AVG(CAST(micros_to_acknowledge AS DOUBLE PRECISION)) AS mtta, \
         AVG(CAST(micros_to_resolve AS DOUBLE PRECISION)) AS mttr \
         FROM incidents WHERE 1 = 1"
    ));
    if !push_visibility(&mut b, "camera_id", only_cameras) {
        return Ok(stats);
    }
    let mut conn = pool.acquire().await?;
    let totals = b.fetch_all(&mut conn).await?;
    if let Some(row) = totals.first() {
        stats.total = row.try_get("total")?;
        stats.active = row.try_get("active")?;
        stats.today = row.try_get("today")?;
        stats.this_week = row.try_get("this_week")?;
        stats.mean_confidence = row.try_get("mean_confidence")?;
        stats.mean_seconds_to_acknowledge = row.try_get::<Option<f64>, _>("mtta")?.map(|m| m / 1e6);
        stats.mean_seconds_to_resolve = row.try_get::<Option<f64>, _>("mttr")?.map(|m| m / 1e6);
    }
    for (column, map) in [
        ("severity", &mut stats.by_severity),
        ("kind", &mut stats.by_kind),
        ("status", &mut stats.by_status),
    ] {
        let mut b = SqlBuilder::new(format!(
            "SELECT {column} AS k, COUNT(*) AS n FROM incidents WHERE 1 = 1"
        ));
        push_visibility(&mut b, "camera_id", only_cameras);
        b.push(&format!(" GROUP BY {column}"));
        for row in b.fetch_all(&mut conn).await? {
            map.insert(row.try_get("k")?, row.try_get("n")?);
        }
    }
    let resolved = stats.by_status["resolved"];
    let false_positive = stats.by_status["false_positive"];
    if resolved + false_positive > 0 {
        stats.false_positive_rate =
            Some(false_positive as f64 / (resolved + false_positive) as f64);
    }
    Ok(stats)
}

/// The words of a search query that can match anything (those with a letter or digit).
fn search_words(q: &str) -> Vec<&str> {
    q.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect()
}

/// An FTS5 query matching every word of `words` as plain text: each word is a quoted string,
/// so FTS5 operators (`OR`, `NEAR`, `*`, `:`, `^`, parentheses) in it are only text.
fn fts5_query(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Incidents whose reasoning or notes hold every word of `q`, best match first (bm25 on
/// SQLite, `ts_rank` on PostgreSQL), at most `limit`. `q` is plain words, never query syntax;
/// a query without words finds nothing. `only_cameras` hides incidents as in
/// [`IncidentQuery::only_cameras`].
pub async fn search_incidents(
    pool: &AnyPool,
    q: &str,
    only_cameras: Option<&[String]>,
    limit: u32,
) -> Result<Vec<IncidentRow>, QueryError> {
    let words = search_words(q);
    if words.is_empty() {
        return Ok(vec![]);
    }
    let mut conn = pool.acquire().await?;
    let mut b = SqlBuilder::default();
    let order = if is_sqlite(&conn) {
        let p = b.arg(Arg::Text(fts5_query(&words)));
        b.push(&format!(
            "SELECT {} FROM incidents_fts JOIN incidents i ON i.id = incidents_fts.id \
             WHERE incidents_fts MATCH {p}",
            columns("i.")
        ));
        "bm25(incidents_fts), i.id".to_string()
    } else {
        let p = b.arg(Arg::Text(words.join(" ")));
        b.push(&format!(
            "SELECT {} FROM incidents_fts f JOIN incidents i ON i.id = f.id \
             WHERE to_tsvector('simple', f.body) @@ plainto_tsquery('simple', {p})",
            columns("i.")
        ));
        format!("ts_rank(to_tsvector('simple', f.body), plainto_tsquery('simple', {p})) DESC, i.id")
    };
    if !push_visibility(&mut b, "i.camera_id", only_cameras) {
        return Ok(vec![]);
    }
    let p = b.arg(Arg::Int(i64::from(limit)));
    b.push(&format!(" ORDER BY {order} LIMIT {p}"));
    rows(&b.fetch_all(&mut conn).await?)
}

/// Whether an incident still in the read model shows media `blob` among its evidence (for
/// retention: media shown by a remaining incident stays).
pub async fn evidence_in_use(pool: &AnyPool, blob: &str) -> Result<bool, QueryError> {
    let row = sqlx::query("SELECT 1 FROM incidents WHERE evidence LIKE $1 LIMIT 1")
        .bind(format!("%{blob}%"))
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

/// Incidents opened before `cutoff`, oldest first, at most `limit`, each with the blobs of
/// the evidence it keeps (for retention: delete the incident, then its media).
pub async fn incidents_opened_before(
    pool: &AnyPool,
    cutoff: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<(String, Vec<String>)>, QueryError> {
    let rows = sqlx::query(
        "SELECT id, evidence FROM incidents WHERE opened_at < $1 ORDER BY opened_at, id LIMIT $2",
    )
    .bind(format_time(cutoff))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let evidence: Vec<FrameRef> = json_col(row, "evidence")?;
            let mut blobs: Vec<String> = vec![];
            for frame in evidence {
                if !blobs.contains(&frame.blob) {
                    blobs.push(frame.blob);
                }
            }
            Ok((row.try_get("id")?, blobs))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The projection.

/// Projects incident events into `incidents`, `incident_history` and `incidents_fts`.
pub struct IncidentProjection;

/// A row with the columns only the projection uses.
struct Stored {
    row: IncidentRow,
    // Integers, not DOUBLE PRECISION: sqlx's `Any` driver binds a NULL double as a float4 on
    // PostgreSQL, which refuses it.
    micros_to_acknowledge: Option<i64>,
    micros_to_resolve: Option<i64>,
    opened_position: u64,
}

fn micros_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX).max(0)
}

fn add_tracks(subjects: &mut IncidentSubjects, tracks: &[String]) {
    for track in tracks {
        if !subjects.track_ids.contains(track) {
            subjects.track_ids.push(track.clone());
        }
    }
}

fn add_evidence(row: &mut IncidentRow, frames: &[FrameRef]) {
    let room = MAX_EVIDENCE.saturating_sub(row.evidence.len());
    row.evidence.extend(frames.iter().take(room).cloned());
    row.evidence_count += frames.len() as u64;
}

fn add_note(notes: &mut String, note: &str) {
    if note.trim().is_empty() {
        return;
    }
    if !notes.is_empty() {
        notes.push('\n');
    }
    notes.push_str(note);
}

fn incident_id(event: &IncidentEvent) -> &str {
    match event {
        IncidentEvent::Opened(e) => &e.incident_id,
        IncidentEvent::EvidenceAdded(e) => &e.incident_id,
        IncidentEvent::StatusChanged(e) => &e.incident_id,
        IncidentEvent::Acknowledged(e) => &e.incident_id,
        IncidentEvent::NoteAdded(e) => &e.incident_id,
        IncidentEvent::ActionTaken(e) => &e.incident_id,
        IncidentEvent::Deleted(e) => &e.incident_id,
    }
}

async fn load(
    conn: &mut AnyConnection,
    id: &str,
    position: u64,
) -> Result<Option<Stored>, ProjectionError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {}, {} FROM incidents WHERE id = $1",
        columns(""),
        EXTRA_COLUMNS.join(", ")
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt = |e: QueryError| ProjectionError::Apply {
        name: "incidents".into(),
        position,
        reason: format!("stored incident `{id}` does not decode: {e}"),
    };
    Ok(Some(Stored {
        row: from_row(&row).map_err(corrupt)?,
        micros_to_acknowledge: row.try_get("micros_to_acknowledge")?,
        micros_to_resolve: row.try_get("micros_to_resolve")?,
        opened_position: row.try_get::<i64, _>("opened_position")? as u64,
    }))
}

async fn save(conn: &mut AnyConnection, s: &Stored) -> Result<(), sqlx::Error> {
    let all: Vec<&str> = COLUMNS.iter().chain(EXTRA_COLUMNS).copied().collect();
    let placeholders: Vec<String> = (1..=all.len()).map(|n| format!("${n}")).collect();
    let updates: Vec<String> = all[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let r = &s.row;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO incidents ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
        all.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    )))
    .bind(r.id.clone())
    .bind(r.kind.as_str())
    .bind(r.severity.as_str())
    .bind(r.status.as_str())
    .bind(r.confidence)
    .bind(r.camera_id.clone())
    .bind(r.zone.clone())
    .bind(r.reasoning.clone())
    .bind(r.notes.clone())
    .bind(i64::from(r.is_read))
    .bind(i64::from(r.action_taken))
    .bind(r.source.clone())
    .bind(r.dedup_key.clone())
    .bind(to_json(&r.subjects))
    .bind(to_json(&r.recommended_actions))
    .bind(to_json(&r.evidence))
    .bind(r.evidence_count as i64)
    .bind(format_time(r.opened_at))
    .bind(format_time(r.last_seen_at))
    .bind(format_time(r.updated_at))
    .bind(r.acknowledged_at.map(format_time))
    .bind(r.resolved_at.map(format_time))
    .bind(r.version as i64)
    .bind(format_time(r.recorded_at))
    .bind(severity_rank(r.severity))
    .bind(s.micros_to_acknowledge)
    .bind(s.micros_to_resolve)
    .bind(s.opened_position as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces the incident's search row (reasoning, newline, notes).
async fn index_text(conn: &mut AnyConnection, s: &Stored) -> Result<(), sqlx::Error> {
    unindex(conn, s).await?;
    let body = format!("{}\n{}", s.row.reasoning, s.row.notes);
    if is_sqlite(conn) {
        // FTS5 finds a row fast only by rowid: the position of `incident.opened`.
        sqlx::query("INSERT INTO incidents_fts (rowid, id, body) VALUES ($1, $2, $3)")
            .bind(s.opened_position as i64)
            .bind(s.row.id.clone())
            .bind(body)
            .execute(&mut *conn)
            .await?;
    } else {
        sqlx::query("INSERT INTO incidents_fts (id, body) VALUES ($1, $2)")
            .bind(s.row.id.clone())
            .bind(body)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Removes the incident's search row.
async fn unindex(conn: &mut AnyConnection, s: &Stored) -> Result<(), sqlx::Error> {
    if is_sqlite(conn) {
        sqlx::query("DELETE FROM incidents_fts WHERE rowid = $1")
            .bind(s.opened_position as i64)
            .execute(&mut *conn)
            .await?;
    } else {
        sqlx::query("DELETE FROM incidents_fts WHERE id = $1")
            .bind(s.row.id.clone())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn record_history(
    conn: &mut AnyConnection,
    incident_id: &str,
    event: &RecordedEvent,
) -> Result<(), sqlx::Error> {
    let mut detail = event.payload.clone();
    if let Some(object) = detail.as_object_mut() {
        object.remove("incident_id");
    }
    sqlx::query(
        "INSERT INTO incident_history (id, incident_id, stream_version, at, event_type, actor, \
         detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.event_id.to_string())
    .bind(incident_id)
    .bind(event.stream_version as i64)
    .bind(format_time(event.occurred_at))
    .bind(event.event_type.clone())
    .bind(event.actor.clone())
    .bind(to_json(&detail))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn opened_row(e: IncidentOpened, event: &RecordedEvent) -> Stored {
    let mut subjects = IncidentSubjects {
        track_ids: vec![],
        subject_id: e.subjects.subject_id,
    };
    add_tracks(&mut subjects, &e.subjects.track_ids);
    let mut row = IncidentRow {
        id: e.incident_id,
        kind: e.kind,
        severity: e.severity,
        status: IncidentStatus::Active,
        confidence: e.confidence,
        camera_id: e.camera_id,
        zone: e.zone,
        reasoning: e.reasoning,
        notes: String::new(),
        is_read: false,
        action_taken: false,
        source: e.source,
        dedup_key: e.dedup_key,
        subjects,
        recommended_actions: e.recommended_actions,
        evidence: vec![],
        evidence_count: 0,
        opened_at: e.observed_at,
        last_seen_at: e.observed_at,
        recorded_at: event.recorded_at,
        updated_at: event.occurred_at,
        acknowledged_at: None,
        resolved_at: None,
        version: event.stream_version,
    };
    add_evidence(&mut row, &e.evidence);
    Stored {
        row,
        micros_to_acknowledge: None,
        micros_to_resolve: None,
        opened_position: event.position,
    }
}

#[async_trait]
impl Projection for IncidentProjection {
    fn name(&self) -> &'static str {
        "incidents"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["incidents", "incident_history", "incidents_fts"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let failed = |reason: String| ProjectionError::Apply {
            name: "incidents".into(),
            position: event.position,
            reason,
        };
        let Some(decoded) =
            IncidentEvent::from_recorded(event).map_err(|e| failed(e.to_string()))?
        else {
            return Ok(());
        };
        if let IncidentEvent::Opened(e) = decoded {
            let stored = opened_row(e, event);
            save(conn, &stored).await?;
            index_text(conn, &stored).await?;
            record_history(conn, &stored.row.id, event).await?;
            return Ok(());
        }
        let id = incident_id(&decoded).to_string();
        // An event of an incident the read model does not hold (deleted) changes nothing.
        let Some(mut s) = load(conn, &id, event.position).await? else {
            return Ok(());
        };
        let mut text_changed = false;
        let at = event.occurred_at;
        match decoded {
            IncidentEvent::Opened(_) => unreachable!("handled above"),
            IncidentEvent::Deleted(_) => {
                unindex(conn, &s).await?;
                sqlx::query("DELETE FROM incident_history WHERE incident_id = $1")
                    .bind(id.clone())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("DELETE FROM incidents WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            IncidentEvent::EvidenceAdded(e) => {
                let r = &mut s.row;
                r.confidence = r.confidence.max(e.confidence);
                text_changed = r.reasoning != e.reasoning;
                r.reasoning = e.reasoning;
                add_tracks(&mut r.subjects, &e.track_ids);
                add_evidence(r, &e.evidence);
                r.last_seen_at = r.last_seen_at.max(e.observed_at);
            }
            IncidentEvent::StatusChanged(e) => {
                s.row.status = e.to;
                if e.to.is_final() && s.row.resolved_at.is_none() {
                    s.row.resolved_at = Some(at);
                    s.micros_to_resolve = Some(micros_between(s.row.recorded_at, at));
                }
                let before = s.row.notes.len();
                add_note(&mut s.row.notes, &e.notes);
                text_changed = s.row.notes.len() != before;
            }
            IncidentEvent::Acknowledged(e) => {
                s.row.is_read = e.is_read;
                if e.is_read && s.row.acknowledged_at.is_none() {
                    s.row.acknowledged_at = Some(at);
                    s.micros_to_acknowledge = Some(micros_between(s.row.recorded_at, at));
                }
            }
            IncidentEvent::NoteAdded(e) => {
                let before = s.row.notes.len();
                add_note(&mut s.row.notes, &e.notes);
                text_changed = s.row.notes.len() != before;
            }
            IncidentEvent::ActionTaken(e) => {
                s.row.action_taken = e.action_taken;
            }
        }
        s.row.updated_at = at;
        s.row.version = event.stream_version;
        save(conn, &s).await?;
        if text_changed {
            index_text(conn, &s).await?;
        }
        record_history(conn, &id, event).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::digest::table_digest;
    use crate::testing::{Log, apply, on_both, t};

    fn frames(n: usize, prefix: &str, at: DateTime<Utc>) -> serde_json::Value {
        (0..n)
            .map(|i| json!({"blob": format!("{prefix}{i:04}"), "frame_number": i, "at": at}))
            .collect()
    }

    fn opened(
        log: &mut Log,
        id: &str,
        kind: &str,
        severity: &str,
        camera: Option<&str>,
        at: DateTime<Utc>,
        reasoning: &str,
    ) {
        let mut payload = json!({
            "incident_id": id,
            "kind": kind,
            "severity": severity,
            "confidence": 0.5,
            "reasoning": reasoning,
            "subjects": {"track_ids": ["trk-1", "trk-1"]},
            "recommended_actions": ["alert_security"],
            "evidence": frames(2, id, at),
            "dedup_key": format!("{kind}:{id}"),
            "source": format!("rule:{kind}"),
            "observed_at": at,
        });
        if let Some(camera) = camera {
            payload["camera_id"] = json!(camera);
            payload["zone"] = json!("dock");
        }
        log.push(
            &format!("incident-{id}"),
            "incident.opened",
            at,
            "rule:test",
            payload,
        );
    }

    fn on(
        log: &mut Log,
        id: &str,
        event_type: &str,
        at: DateTime<Utc>,
        mut payload: serde_json::Value,
    ) {
        payload["incident_id"] = json!(id);
        log.push(&format!("incident-{id}"), event_type, at, "key:op", payload);
    }

    /// Five incidents over one week (Monday 6 to Wednesday 8 January 2025):
    /// - `i1` intrusion/high on cam-a, Monday 10:00: more evidence (60 frames), acknowledged
    ///   after 120 s, resolved after 600 s;
    /// - `i2` crowd/low on cam-b, Tuesday 09:00: false positive after 300 s;
    /// - `i3` external/critical without camera, Wednesday 08:00;
    /// - `i4` and `i5` loitering/medium on cam-a, both Wednesday 12:00: `i4` investigating,
    ///   acted on, with a note.
    fn week() -> Log {
        let mut log = Log::default();
        let (mon, tue, wed) = (t(6, 10, 0, 0), t(7, 9, 0, 0), t(8, 8, 0, 0));
        let noon = t(8, 12, 0, 0);
        opened(
            &mut log,
            "i1",
            "intrusion",
            "high",
            Some("cam-a"),
            mon,
            "Person entered the loading dock after hours",
        );
        opened(
            &mut log,
            "i2",
            "crowd",
            "low",
            Some("cam-b"),
            tue,
            "Seven people near the gate",
        );
        opened(
            &mut log,
            "i3",
            "external",
            "critical",
            None,
            wed,
            "Disk almost full on recorder",
        );
        opened(
            &mut log,
            "i4",
            "loitering",
            "medium",
            Some("cam-a"),
            noon,
            "Someone waited by the fence",
        );
        opened(
            &mut log,
            "i5",
            "loitering",
            "medium",
            Some("cam-a"),
            noon,
            "Someone waited by the door",
        );
        on(
            &mut log,
            "i1",
            "incident.evidence_added",
            t(6, 10, 0, 30),
            json!({
                "confidence": 0.9,
                "reasoning": "Person crossed the loading dock carrying a crowbar",
                "track_ids": ["trk-2", "trk-1"],
                "evidence": frames(60, "more", t(6, 10, 0, 30)),
                "observed_at": t(6, 10, 0, 30),
            }),
        );
        on(
            &mut log,
            "i1",
            "incident.acknowledged",
            t(6, 10, 2, 0),
            json!({"is_read": true}),
        );
        on(
            &mut log,
            "i1",
            "incident.acknowledged",
            t(6, 10, 3, 0),
            json!({"is_read": false}),
        );
        on(
            &mut log,
            "i1",
            "incident.acknowledged",
            t(6, 10, 4, 0),
            json!({"is_read": true}),
        );
        on(
            &mut log,
            "i1",
            "incident.status_changed",
            t(6, 10, 10, 0),
            json!({
                "from": "active", "to": "resolved", "notes": "Guard escorted them out",
            }),
        );
        on(
            &mut log,
            "i2",
            "incident.status_changed",
            t(7, 9, 5, 0),
            json!({
                "from": "active", "to": "false_positive", "notes": "",
            }),
        );
        on(
            &mut log,
            "i4",
            "incident.status_changed",
            t(8, 12, 1, 0),
            json!({
                "from": "active", "to": "investigating", "notes": "",
            }),
        );
        on(
            &mut log,
            "i4",
            "incident.action_taken",
            t(8, 12, 2, 0),
            json!({
                "action": "alert_security", "action_id": "a1", "action_taken": true,
            }),
        );
        on(
            &mut log,
            "i4",
            "incident.note_added",
            t(8, 12, 3, 0),
            json!({"notes": "Forklift driver on a break"}),
        );
        log
    }

    async fn ids(pool: &AnyPool, q: IncidentQuery) -> Vec<String> {
        let q = IncidentQuery { limit: 100, ..q };
        let (page, next) = list_incidents(pool, &q).await.unwrap();
        assert!(next.is_none());
        page.into_iter().map(|r| r.id).collect()
    }

    async fn folds_events_into_rows(pool: &AnyPool) {
        apply(pool, &IncidentProjection, &week().events).await;
        let i1 = get_incident(pool, "i1").await.unwrap().expect("i1");
        assert_eq!(i1.kind, IncidentKind::Intrusion);
        assert_eq!(i1.severity, Severity::High);
        assert_eq!(i1.status, IncidentStatus::Resolved);
        assert_eq!(i1.confidence, 0.9);
        assert_eq!(i1.camera_id.as_deref(), Some("cam-a"));
        assert_eq!(i1.zone.as_deref(), Some("dock"));
        assert_eq!(
            i1.reasoning,
            "Person crossed the loading dock carrying a crowbar"
        );
        assert_eq!(i1.notes, "Guard escorted them out");
        assert!(i1.is_read && !i1.action_taken);
        assert_eq!(i1.subjects.track_ids, ["trk-1", "trk-2"]);
        assert_eq!(i1.recommended_actions, ["alert_security"]);
        assert_eq!(i1.evidence.len(), MAX_EVIDENCE);
        assert_eq!(i1.evidence_count, 62);
        assert_eq!(i1.evidence[0].blob, "i10000");
        assert_eq!(i1.evidence[2].blob, "more0000");
        assert_eq!(i1.opened_at, t(6, 10, 0, 0));
        assert_eq!(i1.last_seen_at, t(6, 10, 0, 30));
        assert_eq!(i1.updated_at, t(6, 10, 10, 0));
        // The first acknowledgement counts, not the later one.
        assert_eq!(i1.acknowledged_at, Some(t(6, 10, 2, 0)));
        assert_eq!(i1.resolved_at, Some(t(6, 10, 10, 0)));
        assert_eq!(i1.version, 6);
        let i4 = get_incident(pool, "i4").await.unwrap().expect("i4");
        assert!(i4.action_taken && !i4.is_read);
        assert_eq!(i4.status, IncidentStatus::Investigating);
        assert_eq!(i4.notes, "Forklift driver on a break");
        assert_eq!(i4.resolved_at, None);
        let i3 = get_incident(pool, "i3").await.unwrap().expect("i3");
        assert_eq!((i3.camera_id, i3.zone), (None, None));
        assert!(get_incident(pool, "nope").await.unwrap().is_none());

        let history = incident_history(pool, "i1").await.unwrap();
        let types: Vec<&str> = history.iter().map(|h| h.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "incident.opened",
                "incident.evidence_added",
                "incident.acknowledged",
                "incident.acknowledged",
                "incident.acknowledged",
                "incident.status_changed"
            ]
        );
        assert_eq!(
            history.iter().map(|h| h.stream_version).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(history[0].actor, "rule:test");
        assert_eq!(history[5].actor, "key:op");
        assert_eq!(history[5].at, t(6, 10, 10, 0));
        assert_eq!(
            history[5].detail,
            json!({"from": "active", "to": "resolved", "notes": "Guard escorted them out"})
        );
        assert!(history[0].detail.get("incident_id").is_none());
    }

    async fn lists_with_filters(pool: &AnyPool) {
        apply(pool, &IncidentProjection, &week().events).await;
        let all = ids(pool, IncidentQuery::default()).await;
        assert_eq!(all, ["i5", "i4", "i3", "i2", "i1"]);
        let q = |f: fn(&mut IncidentQuery)| {
            let mut q = IncidentQuery::default();
            f(&mut q);
            q
        };
        assert_eq!(
            ids(pool, q(|q| q.status = Some(IncidentStatus::Resolved))).await,
            ["i1"]
        );
        assert_eq!(
            ids(pool, q(|q| q.severity = Some(Severity::High))).await,
            ["i3", "i1"]
        );
        assert_eq!(
            ids(pool, q(|q| q.severity = Some(Severity::Medium))).await,
            ["i5", "i4", "i3", "i1"]
        );
        assert_eq!(
            ids(pool, q(|q| q.kind = Some(IncidentKind::Crowd))).await,
            ["i2"]
        );
        assert_eq!(
            ids(pool, q(|q| q.camera_id = Some("cam-a".into()))).await,
            ["i5", "i4", "i1"]
        );
        assert_eq!(ids(pool, q(|q| q.is_read = Some(true))).await, ["i1"]);
        assert_eq!(ids(pool, q(|q| q.action_taken = Some(true))).await, ["i4"]);
        assert_eq!(
            ids(pool, q(|q| q.action_taken = Some(false))).await,
            ["i5", "i3", "i2", "i1"]
        );
        // `from` is inclusive, `to` exclusive.
        assert_eq!(
            ids(
                pool,
                q(|q| {
                    q.from = Some(t(7, 9, 0, 0));
                    q.to = Some(t(8, 12, 0, 0));
                })
            )
            .await,
            ["i3", "i2"]
        );
        // A restricted key sees its cameras only: not others, not camera-less incidents.
        assert_eq!(
            ids(pool, q(|q| q.only_cameras = Some(vec!["cam-b".into()]))).await,
            ["i2"]
        );
        assert!(
            ids(pool, q(|q| q.only_cameras = Some(vec![])))
                .await
                .is_empty()
        );
        assert_eq!(
            ids(
                pool,
                q(|q| {
                    q.only_cameras = Some(vec!["cam-a".into(), "cam-b".into()]);
                    q.severity = Some(Severity::High);
                })
            )
            .await,
            ["i1"]
        );
    }

    async fn pages_with_cursors(pool: &AnyPool) {
        apply(pool, &IncidentProjection, &week().events).await;
        for limit in [1, 2, 5] {
            let mut seen = vec![];
            let mut cursor = None;
            loop {
                let q = IncidentQuery {
                    cursor,
                    limit,
                    ..Default::default()
                };
                let (page, next) = list_incidents(pool, &q).await.unwrap();
                assert!(page.len() <= limit as usize);
                seen.extend(page.into_iter().map(|r| r.id));
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, ["i5", "i4", "i3", "i2", "i1"], "limit {limit}");
        }
        for junk in ["junk!", "aW5jOnt9", &URL_SAFE_NO_PAD.encode("cam:i1")] {
            let q = IncidentQuery {
                cursor: Some(junk.into()),
                limit: 2,
                ..Default::default()
            };
            assert!(matches!(
                list_incidents(pool, &q).await,
                Err(QueryError::Cursor(_))
            ));
        }

        // Export: oldest first, page after page.
        let q = IncidentQuery {
            camera_id: Some("cam-a".into()),
            ..Default::default()
        };
        let first = export_page(pool, &q, None, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["i1", "i4"]
        );
        let last = first.last().unwrap();
        let rest = export_page(pool, &q, Some((last.opened_at, last.id.clone())), 2)
            .await
            .unwrap();
        assert_eq!(
            rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["i5"]
        );

        // Retention: opened before Wednesday, with their kept evidence's blobs.
        let old = incidents_opened_before(pool, t(8, 0, 0, 0), 10)
            .await
            .unwrap();
        assert_eq!(
            old.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["i1", "i2"]
        );
        assert_eq!(old[0].1.len(), MAX_EVIDENCE);
        assert_eq!(old[1].1, ["i20000", "i20001"]);
        assert_eq!(
            incidents_opened_before(pool, t(8, 0, 0, 0), 1)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    async fn counts_stats(pool: &AnyPool) {
        let empty = incident_stats(pool, t(8, 13, 0, 0), None).await.unwrap();
        assert_eq!(empty.total, 0);
        assert_eq!(empty.mean_confidence, None);
        assert_eq!(empty.false_positive_rate, None);
        assert_eq!(empty.by_status["active"], 0);
        apply(pool, &IncidentProjection, &week().events).await;
        // Wednesday 13:00: today is from Wednesday 00:00, the week from Monday 00:00.
        let stats = incident_stats(pool, t(8, 13, 0, 0), None).await.unwrap();
        assert_eq!(stats.total, 5);
        assert_eq!(stats.active, 3);
        assert_eq!(stats.today, 3);
        assert_eq!(stats.this_week, 5);
        assert_eq!(stats.by_severity["medium"], 2);
        assert_eq!(stats.by_severity["critical"], 1);
        assert_eq!(stats.by_kind["loitering"], 2);
        assert_eq!(stats.by_kind["theft"], 0);
        assert_eq!(stats.by_status["false_positive"], 1);
        assert_eq!(stats.by_status["investigating"], 1);
        assert_eq!(stats.false_positive_rate, Some(0.5));
        assert_eq!(stats.mean_seconds_to_acknowledge, Some(120.0));
        assert_eq!(stats.mean_seconds_to_resolve, Some(450.0));
        let mean = stats.mean_confidence.unwrap();
        assert!((mean - (0.9 + 0.5 * 4.0) / 5.0).abs() < 1e-9, "{mean}");
        // Sunday the 12th still belongs to the week of Monday the 6th; Monday the 13th does not.
        let sunday = incident_stats(pool, t(12, 23, 0, 0), None).await.unwrap();
        assert_eq!((sunday.today, sunday.this_week), (0, 5));
        let monday = incident_stats(pool, t(13, 1, 0, 0), None).await.unwrap();
        assert_eq!(monday.this_week, 0);
        // A restricted key counts its cameras' incidents only.
        let b = incident_stats(pool, t(8, 13, 0, 0), Some(&["cam-b".to_string()]))
            .await
            .unwrap();
        assert_eq!((b.total, b.active), (1, 0));
        assert_eq!(b.false_positive_rate, Some(1.0));
        assert_eq!(b.mean_seconds_to_acknowledge, None);
        assert_eq!(b.by_kind["crowd"], 1);
        assert_eq!(b.by_kind["intrusion"], 0);
        let none = incident_stats(pool, t(8, 13, 0, 0), Some(&[]))
            .await
            .unwrap();
        assert_eq!(none.total, 0);
    }

    async fn searches_reasoning_and_notes(pool: &AnyPool) {
        apply(pool, &IncidentProjection, &week().events).await;
        let found = |q: &'static str| async move {
            search_incidents(pool, q, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        // From notes (note_added, and a status change's notes) and from the latest reasoning.
        assert_eq!(found("forklift").await, ["i4"]);
        assert_eq!(found("Guard escorted").await, ["i1"]);
        assert_eq!(found("crowbar").await, ["i1"]);
        // The reasoning an evidence_added replaced is no longer searchable.
        assert!(found("hours").await.is_empty());
        // Every word must match.
        assert!(found("forklift crowbar").await.is_empty());
        assert_eq!(found("someone waited").await.len(), 2);
        assert!(found("submarine").await.is_empty());
        // No words, or query syntax: plain text, never an error.
        assert!(found("   ").await.is_empty());
        assert!(found("- ** ()").await.is_empty());
        assert!(found("dock OR").await.is_empty());
        assert_eq!(found("\"crowbar\"").await, ["i1"]);
        assert!(
            found("NEAR(dock crowbar) body:dock ^dock dock*")
                .await
                .is_empty()
        );
        // Restricted keys.
        let only_b = search_incidents(pool, "someone", Some(&["cam-b".to_string()]), 10)
            .await
            .unwrap();
        assert!(only_b.is_empty());
        assert_eq!(
            search_incidents(pool, "someone", None, 1)
                .await
                .unwrap()
                .len(),
            1
        );

        // Ranked: many matches in a short text first.
        let mut log = week();
        opened(
            &mut log,
            "i6",
            "theft",
            "low",
            None,
            t(9, 8, 0, 0),
            "fence fence fence",
        );
        apply(
            pool,
            &IncidentProjection,
            &log.events[log.events.len() - 1..],
        )
        .await;
        assert_eq!(found("fence").await, ["i6", "i4"]);
    }

    async fn deletes_everything_of_an_incident(pool: &AnyPool) {
        let mut log = week();
        on(
            &mut log,
            "i4",
            "incident.deleted",
            t(9, 0, 0, 0),
            json!({"reason": "retention"}),
        );
        // Later events of a deleted incident change nothing.
        on(
            &mut log,
            "i4",
            "incident.note_added",
            t(9, 0, 1, 0),
            json!({"notes": "forklift again"}),
        );
        apply(pool, &IncidentProjection, &log.events).await;
        assert!(get_incident(pool, "i4").await.unwrap().is_none());
        assert!(incident_history(pool, "i4").await.unwrap().is_empty());
        assert!(
            search_incidents(pool, "forklift", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let count = |table: &'static str| async move {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(pool)
                    .await
                    .unwrap();
            n
        };
        assert_eq!(count("incidents").await, 4);
        assert_eq!(count("incidents_fts").await, 4);
        let fts_of_i4: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM incidents_fts WHERE id = 'i4'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(fts_of_i4, 0);
        assert_eq!(
            ids(pool, IncidentQuery::default()).await,
            ["i5", "i3", "i2", "i1"]
        );
    }

    async fn rebuilds_identically(pool: &AnyPool) {
        let mut log = week();
        on(
            &mut log,
            "i2",
            "incident.deleted",
            t(9, 0, 0, 0),
            json!({"reason": "operator"}),
        );
        apply(pool, &IncidentProjection, &log.events).await;
        let mut before = vec![];
        // `vigil verify` orders every read-model table by `id`.
        for table in IncidentProjection.tables() {
            before.push(table_digest(pool, table, "id").await.unwrap());
        }
        assert!(before[2].starts_with("4:"), "{}", before[2]);
        for table in IncidentProjection.tables() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(pool)
                .await
                .unwrap();
        }
        assert!(
            search_incidents(pool, "crowbar", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        apply(pool, &IncidentProjection, &log.events).await;
        let mut after = vec![];
        for table in IncidentProjection.tables() {
            after.push(table_digest(pool, table, "id").await.unwrap());
        }
        assert_eq!(before, after);
        assert_eq!(
            search_incidents(pool, "crowbar", None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    on_both!(
        folds_events_into_rows,
        lists_with_filters,
        pages_with_cursors,
        counts_stats,
        searches_reasoning_and_notes,
        deletes_everything_of_an_incident,
        rebuilds_identically,
    );

    #[test]
    fn search_words_are_quoted_for_fts5() {
        assert_eq!(search_words(" a  -- b\"c () "), ["a", "b\"c"]);
        assert_eq!(
            fts5_query(&["dock", "OR", "b\"c"]),
            "\"dock\" \"OR\" \"b\"\"c\""
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_keyset("inc", &["2025-01-06T10:00:00.000000Z", "i|1"]);
        assert_eq!(
            decode_cursor(&cursor).unwrap(),
            ("2025-01-06T10:00:00.000000Z".to_string(), "i|1".to_string())
        );
        assert!(decode_cursor(&encode_keyset("inc", &["yesterday", "i1"])).is_err());
        assert!(decode_cursor(&encode_keyset("inc", &["2025-01-06T10:00:00Z", ""])).is_err());
        assert!(decode_cursor(&encode_keyset("dlq", &["2025-01-06T10:00:00Z", "i1"])).is_err());
        assert!(decode_cursor(&encode_keyset("inc", &["2025-01-06T10:00:00Z"])).is_err());
        assert!(decode_cursor("!!").is_err());
    }

    #[test]
    fn evidence_is_capped_and_counted() {
        let mut log = Log::default();
        opened(&mut log, "x", "fall", "high", None, t(6, 0, 0, 0), "r");
        let IncidentEvent::Opened(mut e) =
            IncidentEvent::decode("incident.opened", 1, &log.events[0].payload).unwrap()
        else {
            panic!("opened");
        };
        e.evidence = serde_json::from_value(frames(70, "f", t(6, 0, 0, 0))).unwrap();
        let stored = opened_row(e, &log.events[0]);
        assert_eq!(stored.row.evidence.len(), MAX_EVIDENCE);
        assert_eq!(stored.row.evidence_count, 70);
        assert_eq!(stored.row.subjects.track_ids, ["trk-1"]);
        assert_eq!(stored.opened_position, 1);
    }
}
