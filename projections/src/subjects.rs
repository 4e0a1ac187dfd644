//! The subject read model (`subjects`, `subject_faces`), the alerts raised by matches
//! (`alerts`), and their queries.
//!
//! One `subjects` row per enrolled, not erased subject, folded from its `subject-{id}` stream;
//! one `subject_faces` row per face with its descriptor (a JSON array of 128 floats); one
//! `alerts` row per `subject.matched` until `alert.dismissed` (stream `alert-{match id}`)
//! deletes it. `subject.erased` deletes the subject's row, its faces and its alerts (they name
//! the person). Every column comes from events, so a rebuild is identical.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use vigil_schemas::events::{FrameRef, NormBox, Severity, SubjectCategory, SubjectFace};
use vigil_schemas::{AlertEvent, DomainEvent, RecordedEvent, SubjectEvent};

use crate::error::{InvalidCursor, QueryError};
use crate::format_time;
use crate::runner::{Projection, ProjectionError};
use crate::sql::{
    Arg, SqlBuilder, decode_keyset, encode_keyset, enum_col, json_col, opt_time_col, parse_time,
    push_visibility, time_col, to_json,
};

/// A subject as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Authorised or watch-listed.
    pub category: SubjectCategory,
    /// The severity of the incident a match raises (watch-listed subjects only).
    pub severity: Option<Severity>,
    /// Free text.
    pub notes: String,
    /// How many faces it has.
    pub face_count: u64,
    /// Its faces, in the order they were enrolled (without descriptors: see [`all_faces`]).
    pub faces: Vec<SubjectFaceRow>,
    /// When it was enrolled (`occurred_at` of `subject.enrolled`).
    pub created_at: DateTime<Utc>,
    /// The last change of its details or faces.
    pub updated_at: DateTime<Utc>,
    /// Stream version of its last event (matches included).
    pub version: u64,
}

/// One enrolled face, without its descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectFaceRow {
    /// The face's id.
    pub face_id: String,
    /// The subject it belongs to.
    pub subject_id: String,
    /// SHA-256 of the face crop (JPEG) in the media store.
    pub crop: String,
    /// The face's box in the picture it was enrolled from.
    pub bbox: NormBox,
    /// Face detector confidence.
    pub score: f32,
    /// When it was enrolled.
    pub added_at: DateTime<Utc>,
}

/// One enrolled face with what a matcher needs: `(subject_id, category, severity, name,
/// face_id, embedding)`, the embedding being the 128-d descriptor.
pub type EnrolledFace = (
    String,
    SubjectCategory,
    Option<Severity>,
    String,
    String,
    Vec<f32>,
);

/// An alert: a face seen on a camera matched an enrolled subject.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// Id (the match id).
    pub id: String,
    /// The subject.
    pub subject_id: String,
    /// The subject's name when matched.
    pub subject_name: String,
    /// The subject's category when matched.
    pub category: SubjectCategory,
    /// The camera.
    pub camera_id: String,
    /// The track the face belongs to.
    pub track_id: String,
    /// Descriptor distance to the subject's nearest face.
    pub distance: f64,
    /// Distance to the next-nearest other subject, when there is one.
    pub second_distance: Option<f64>,
    /// SHA-256 of the face crop seen.
    pub crop: String,
    /// The frame it was seen in.
    pub frame: FrameRef,
    /// When the face was seen: the matched frame's capture time (`frame.at` of
    /// `subject.matched`).
    pub at: DateTime<Utc>,
    /// When Vigil recorded the match (`recorded_at` of `subject.matched`, from the envelope).
    pub recorded_at: DateTime<Utc>,
    /// Acknowledged by an operator.
    pub acknowledged: bool,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// Filters and page of an alert listing.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Only alerts of this subject.
    pub subject_id: Option<String>,
    /// Only alerts of this camera.
    pub camera_id: Option<String>,
    /// Only alerts of subjects in this category (when matched).
    pub category: Option<SubjectCategory>,
    /// Only acknowledged (or unacknowledged) alerts.
    pub acknowledged: Option<bool>,
    /// Only alerts raised at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only alerts raised before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only alerts of these cameras (a camera-restricted key); `Some(vec![])` hides everything.
    pub only_cameras: Option<Vec<String>>,
    /// Continue after this cursor (a previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
    /// The listing's order by `(at, id)`; `None` is newest first.
    pub order: Option<crate::Order>,
}

// ---------------------------------------------------------------------------------------------
// Rows.

const SUBJECT_COLUMNS: &str =
    "id, name, category, severity, notes, face_count, created_at, updated_at, version";

const FACE_COLUMNS: &str = "id, subject_id, crop, bbox, score, added_at";

const ALERT_COLUMNS: &str = "id, subject_id, subject_name, category, camera_id, track_id, \
                             distance, second_distance, crop, frame, at, acknowledged, \
                             acknowledged_at, recorded_at";

fn subject_from_row(row: &AnyRow) -> Result<SubjectRow, QueryError> {
    Ok(SubjectRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        category: enum_col(row, "category", SubjectCategory::parse)?,
        severity: row
            .try_get::<Option<String>, _>("severity")?
            .map(|s| {
                Severity::parse(&s).ok_or_else(|| QueryError::Corrupt(format!("severity: `{s}`")))
            })
            .transpose()?,
        notes: row.try_get("notes")?,
        face_count: row.try_get::<i64, _>("face_count")? as u64,
        faces: vec![],
        created_at: time_col(row, "created_at")?,
        updated_at: time_col(row, "updated_at")?,
        version: row.try_get::<i64, _>("version")? as u64,
    })
}

fn face_from_row(row: &AnyRow) -> Result<SubjectFaceRow, QueryError> {
    Ok(SubjectFaceRow {
        face_id: row.try_get("id")?,
        subject_id: row.try_get("subject_id")?,
        crop: row.try_get("crop")?,
        bbox: json_col(row, "bbox")?,
        score: row.try_get::<f64, _>("score")? as f32,
        added_at: time_col(row, "added_at")?,
    })
}

fn alert_from_row(row: &AnyRow) -> Result<AlertRow, QueryError> {
    let at = time_col(row, "at")?;
    Ok(AlertRow {
        id: row.try_get("id")?,
        subject_id: row.try_get("subject_id")?,
        subject_name: row.try_get("subject_name")?,
        category: enum_col(row, "category", SubjectCategory::parse)?,
        camera_id: row.try_get("camera_id")?,
        track_id: row.try_get("track_id")?,
        distance: row.try_get("distance")?,
        second_distance: row.try_get("second_distance")?,
        crop: row.try_get("crop")?,
        frame: json_col(row, "frame")?,
        at,
        acknowledged: row.try_get::<i64, _>("acknowledged")? != 0,
        acknowledged_at: opt_time_col(row, "acknowledged_at")?,
        // Rows projected before `recorded_at` existed read their `at` until rebuilt.
        recorded_at: opt_time_col(row, "recorded_at")?.unwrap_or(at),
    })
}

/// Fills in the faces of `subjects` (one query for all of them).
async fn with_faces(
    conn: &mut AnyConnection,
    mut subjects: Vec<SubjectRow>,
) -> Result<Vec<SubjectRow>, QueryError> {
    if subjects.is_empty() {
        return Ok(subjects);
    }
    let mut b = SqlBuilder::default();
    let ids: Vec<String> = subjects
        .iter()
        .map(|s| b.arg(Arg::Text(s.id.clone())))
        .collect();
    b.push(&format!(
        "SELECT {FACE_COLUMNS} FROM subject_faces WHERE subject_id IN ({}) \
         ORDER BY subject_id, ordinal",
        ids.join(", ")
    ));
    let mut by_subject: BTreeMap<String, Vec<SubjectFaceRow>> = BTreeMap::new();
    for row in b.fetch_all(conn).await? {
        let face = face_from_row(&row)?;
        by_subject
            .entry(face.subject_id.clone())
            .or_default()
            .push(face);
    }
    for subject in &mut subjects {
        subject.faces = by_subject.remove(&subject.id).unwrap_or_default();
    }
    Ok(subjects)
}

// ---------------------------------------------------------------------------------------------
// Queries.

fn encode_subject_cursor(row: &SubjectRow) -> String {
    encode_keyset("sub", &[&row.id])
}

fn decode_subject_cursor(cursor: &str) -> Result<String, InvalidCursor> {
    decode_keyset("sub", 1, cursor)?.pop().ok_or(InvalidCursor)
}

/// A page of subjects in id order (enrolment order: ids are UUID v7) in `order` (only those
/// of `category` when given), each with its faces, and the cursor of the next page if there is one. A cursor this API did not hand out
/// is [`QueryError::Cursor`].
pub async fn list_subjects(
    pool: &AnyPool,
    category: Option<SubjectCategory>,
    order: crate::Order,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<SubjectRow>, Option<String>), QueryError> {
    let after = cursor.map(decode_subject_cursor).transpose()?;
    let mut b = SqlBuilder::new(format!(
        "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE 1 = 1"
    ));
    if let Some(category) = category {
        let p = b.arg(Arg::Text(category.as_str().into()));
        b.push(&format!(" AND category = {p}"));
    }
    if let Some(after) = after {
        let p = b.arg(Arg::Text(after));
        b.push(&format!(" AND id {} {p}", order.after()));
    }
    let p = b.arg(Arg::Int(i64::from(limit) + 1));
    b.push(&format!(" ORDER BY id {} LIMIT {p}", order.sql()));
    let mut conn = pool.acquire().await?;
    let mut page = b
        .fetch_all(&mut conn)
        .await?
        .iter()
        .map(subject_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(encode_subject_cursor)
    } else {
        None
    };
    Ok((with_faces(&mut conn, page).await?, next))
}

/// One subject by id, with its faces; `None` when unknown or erased.
pub async fn get_subject(pool: &AnyPool, id: &str) -> Result<Option<SubjectRow>, QueryError> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let subject = subject_from_row(&row)?;
    Ok(with_faces(&mut conn, vec![subject]).await?.pop())
}

/// Every enrolled face of every subject with its descriptor, by subject id then enrolment
/// order: what a face matcher loads.
pub async fn all_faces(pool: &AnyPool) -> Result<Vec<EnrolledFace>, QueryError> {
    let rows = sqlx::query(
        "SELECT f.subject_id, s.category, s.severity, s.name, f.id, f.embedding \
         FROM subject_faces f JOIN subjects s ON s.id = f.subject_id \
         ORDER BY f.subject_id, f.ordinal",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let severity = row
                .try_get::<Option<String>, _>("severity")?
                .map(|s| {
                    Severity::parse(&s)
                        .ok_or_else(|| QueryError::Corrupt(format!("severity: `{s}`")))
                })
                .transpose()?;
            Ok((
                row.try_get("subject_id")?,
                enum_col(row, "category", SubjectCategory::parse)?,
                severity,
                row.try_get("name")?,
                row.try_get("id")?,
                json_col(row, "embedding")?,
            ))
        })
        .collect()
}

/// Whether an enrolled face shows the crop `crop` (the same picture enrolled twice is one
/// file in the content-addressed media store), not counting the faces of `except_subject`.
pub async fn crop_in_use(
    pool: &AnyPool,
    crop: &str,
    except_subject: Option<&str>,
) -> Result<bool, QueryError> {
    let row = match except_subject {
        Some(subject) => {
            sqlx::query("SELECT 1 FROM subject_faces WHERE crop = $1 AND subject_id <> $2 LIMIT 1")
                .bind(crop)
                .bind(subject)
                .fetch_optional(pool)
                .await?
        }
        None => {
            sqlx::query("SELECT 1 FROM subject_faces WHERE crop = $1 LIMIT 1")
                .bind(crop)
                .fetch_optional(pool)
                .await?
        }
    };
    Ok(row.is_some())
}

/// The cursor that continues a newest-first alert listing after `row`.
fn encode_alert_cursor(row: &AlertRow) -> String {
    encode_keyset("alr", &[&format_time(row.at), &row.id])
}

/// The `(at, id)` an alert cursor continues after.
fn decode_alert_cursor(cursor: &str) -> Result<(String, String), InvalidCursor> {
    let mut parts = decode_keyset("alr", 2, cursor)?;
    let id = parts.pop().ok_or(InvalidCursor)?;
    let at = parts.pop().ok_or(InvalidCursor)?;
    let at = parse_time(&at).map_err(|_| InvalidCursor)?;
    Ok((format_time(at), id))
}

/// A page of alerts by `(at, id)` in `q.order` (newest first by default), and the cursor of
/// the next page if there is one. A cursor this API did not hand out is
/// [`QueryError::Cursor`].
pub async fn list_alerts(
    pool: &AnyPool,
    q: &AlertQuery,
) -> Result<(Vec<AlertRow>, Option<String>), QueryError> {
    let after = q.cursor.as_deref().map(decode_alert_cursor).transpose()?;
    let mut b = SqlBuilder::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE 1 = 1"));
    if let Some(subject) = &q.subject_id {
        let p = b.arg(Arg::Text(subject.clone()));
        b.push(&format!(" AND subject_id = {p}"));
    }
    if let Some(camera) = &q.camera_id {
        let p = b.arg(Arg::Text(camera.clone()));
        b.push(&format!(" AND camera_id = {p}"));
    }
    if let Some(category) = q.category {
        let p = b.arg(Arg::Text(category.as_str().into()));
        b.push(&format!(" AND category = {p}"));
    }
    if let Some(acknowledged) = q.acknowledged {
        let p = b.arg(Arg::Int(i64::from(acknowledged)));
        b.push(&format!(" AND acknowledged = {p}"));
    }
    if let Some(from) = q.from {
        let p = b.arg(Arg::Text(format_time(from)));
        b.push(&format!(" AND at >= {p}"));
    }
    if let Some(to) = q.to {
        let p = b.arg(Arg::Text(format_time(to)));
        b.push(&format!(" AND at < {p}"));
    }
    if !push_visibility(&mut b, "camera_id", q.only_cameras.as_deref()) {
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
            " AND (at {cmp} {p1} OR (at = {p2} AND id {cmp} {p3}))"
        ));
    }
    let p = b.arg(Arg::Int(i64::from(q.limit) + 1));
    b.push(&format!(" ORDER BY at {dir}, id {dir} LIMIT {p}"));
    let mut conn = pool.acquire().await?;
    let mut page = b
        .fetch_all(&mut conn)
        .await?
        .iter()
        .map(alert_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if page.len() > q.limit as usize {
        page.truncate(q.limit as usize);
        page.last().map(encode_alert_cursor)
    } else {
        None
    };
    Ok((page, next))
}

/// One alert by id; `None` when unknown, dismissed, or its subject was erased.
pub async fn get_alert(pool: &AnyPool, id: &str) -> Result<Option<AlertRow>, QueryError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(alert_from_row).transpose()
}

/// The ids of every alert (raised before `before`, when given), oldest first; with
/// `only_cameras`, only those of these cameras (as in [`AlertQuery::only_cameras`]).
pub async fn alert_ids(
    pool: &AnyPool,
    before: Option<DateTime<Utc>>,
    only_cameras: Option<&[String]>,
) -> Result<Vec<String>, QueryError> {
    let mut b = SqlBuilder::new("SELECT id FROM alerts WHERE 1 = 1");
    if let Some(before) = before {
        let p = b.arg(Arg::Text(format_time(before)));
        b.push(&format!(" AND at < {p}"));
    }
    if !push_visibility(&mut b, "camera_id", only_cameras) {
        return Ok(vec![]);
    }
    b.push(" ORDER BY at, id");
    let mut conn = pool.acquire().await?;
    b.fetch_all(&mut conn)
        .await?
        .iter()
        .map(|row| Ok(row.try_get("id")?))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The projection.

/// Projects subject and alert events into `subjects`, `subject_faces` and `alerts`.
pub struct SubjectProjection;

async fn load_subject(
    conn: &mut AnyConnection,
    id: &str,
    position: u64,
) -> Result<Option<SubjectRow>, ProjectionError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref()
        .map(|row| {
            subject_from_row(row).map_err(|e| ProjectionError::Apply {
                name: "subjects".into(),
                position,
                reason: format!("stored subject `{id}` does not decode: {e}"),
            })
        })
        .transpose()
}

async fn save_subject(conn: &mut AnyConnection, s: &SubjectRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO subjects ({SUBJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, category = excluded.category, \
         severity = excluded.severity, notes = excluded.notes, face_count = excluded.face_count, \
         created_at = excluded.created_at, updated_at = excluded.updated_at, \
         version = excluded.version"
    )))
    .bind(s.id.clone())
    .bind(s.name.clone())
    .bind(s.category.as_str())
    .bind(s.severity.map(|v| v.as_str().to_string()))
    .bind(s.notes.clone())
    .bind(s.face_count as i64)
    .bind(format_time(s.created_at))
    .bind(format_time(s.updated_at))
    .bind(s.version as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_faces(
    conn: &mut AnyConnection,
    subject_id: &str,
    first_ordinal: u64,
    faces: &[SubjectFace],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for (i, face) in faces.iter().enumerate() {
        sqlx::query(
            "INSERT INTO subject_faces (id, subject_id, ordinal, crop, bbox, score, embedding, \
             added_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(face.face_id.clone())
        .bind(subject_id)
        .bind((first_ordinal + i as u64) as i64)
        .bind(face.crop.clone())
        .bind(to_json(&face.bbox))
        .bind(f64::from(face.score))
        .bind(to_json(&face.embedding))
        .bind(format_time(at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_alert(conn: &mut AnyConnection, a: &AlertRow) -> Result<(), sqlx::Error> {
    // sqlx's `Any` driver binds a NULL double as a float4 on PostgreSQL, which a statement
    // prepared for a float8 refuses: a missing second distance is a literal NULL.
    let second = if a.second_distance.is_some() {
        "$14"
    } else {
        "NULL"
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO alerts (id, subject_id, subject_name, category, camera_id, track_id, \
         distance, crop, frame, at, acknowledged, acknowledged_at, recorded_at, \
         second_distance) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, {second}) \
         ON CONFLICT (id) DO NOTHING"
    )))
    .bind(a.id.clone())
    .bind(a.subject_id.clone())
    .bind(a.subject_name.clone())
    .bind(a.category.as_str())
    .bind(a.camera_id.clone())
    .bind(a.track_id.clone())
    .bind(a.distance)
    .bind(a.crop.clone())
    .bind(to_json(&a.frame))
    .bind(format_time(a.at))
    .bind(i64::from(a.acknowledged))
    .bind(a.acknowledged_at.map(format_time))
    .bind(format_time(a.recorded_at));
    if let Some(second) = a.second_distance {
        q = q.bind(second);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

fn subject_id_of(event: &SubjectEvent) -> &str {
    match event {
        SubjectEvent::Enrolled(e) => &e.subject_id,
        SubjectEvent::Updated(e) => &e.subject_id,
        SubjectEvent::FacesAdded(e) => &e.subject_id,
        SubjectEvent::Erased(e) => &e.subject_id,
        SubjectEvent::Matched(e) => &e.subject_id,
    }
}

async fn apply_subject_event(
    conn: &mut AnyConnection,
    decoded: SubjectEvent,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let at = event.occurred_at;
    if let SubjectEvent::Enrolled(e) = decoded {
        let row = SubjectRow {
            id: e.subject_id.clone(),
            name: e.name,
            category: e.category,
            severity: e.severity,
            notes: e.notes,
            face_count: e.faces.len() as u64,
            faces: vec![],
            created_at: at,
            updated_at: at,
            version: event.stream_version,
        };
        save_subject(conn, &row).await?;
        insert_faces(conn, &e.subject_id, 0, &e.faces, at).await?;
        return Ok(());
    }
    let id = subject_id_of(&decoded).to_string();
    // An event of a subject the read model does not hold (erased) changes nothing.
    let Some(mut s) = load_subject(conn, &id, event.position).await? else {
        return Ok(());
    };
    match decoded {
        SubjectEvent::Enrolled(_) => unreachable!("handled above"),
        SubjectEvent::Updated(u) => {
            if let Some(name) = u.name {
                s.name = name;
            }
            if let Some(category) = u.category {
                s.category = category;
                if category == SubjectCategory::Authorised {
                    s.severity = None;
                }
            }
            if let Some(severity) = u.severity {
                s.severity = Some(severity);
            }
            if let Some(notes) = u.notes {
                s.notes = notes;
            }
            s.updated_at = at;
        }
        SubjectEvent::FacesAdded(a) => {
            insert_faces(conn, &id, s.face_count, &a.faces, at).await?;
            s.face_count += a.faces.len() as u64;
            s.updated_at = at;
        }
        SubjectEvent::Erased(_) => {
            for table in ["alerts", "subject_faces"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE subject_id = $1"
                )))
                .bind(id.clone())
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query("DELETE FROM subjects WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        SubjectEvent::Matched(m) => {
            let alert = AlertRow {
                id: m.match_id,
                subject_id: m.subject_id,
                subject_name: m.subject_name,
                category: m.category,
                camera_id: m.camera_id,
                track_id: m.track_id,
                distance: m.distance,
                second_distance: m.second_distance,
                crop: m.crop,
                at: m.frame.at,
                frame: m.frame,
                recorded_at: event.recorded_at,
                acknowledged: false,
                acknowledged_at: None,
            };
            insert_alert(conn, &alert).await?;
        }
    }
    s.version = event.stream_version;
    save_subject(conn, &s).await?;
    Ok(())
}

async fn apply_alert_event(
    conn: &mut AnyConnection,
    decoded: AlertEvent,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    // An event of an alert the read model does not hold (dismissed, or its subject erased)
    // changes nothing.
    match decoded {
        AlertEvent::Acknowledged(a) => {
            sqlx::query(
                "UPDATE alerts SET acknowledged = 1, \
                 acknowledged_at = COALESCE(acknowledged_at, $1) WHERE id = $2",
            )
            .bind(format_time(event.occurred_at))
            .bind(a.alert_id)
            .execute(&mut *conn)
            .await?;
        }
        AlertEvent::Dismissed(d) => {
            sqlx::query("DELETE FROM alerts WHERE id = $1")
                .bind(d.alert_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Projection for SubjectProjection {
    fn name(&self) -> &'static str {
        "subjects"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["subjects", "subject_faces", "alerts"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let failed = |reason: String| ProjectionError::Apply {
            name: "subjects".into(),
            position: event.position,
            reason,
        };
        if let Some(decoded) =
            SubjectEvent::from_recorded(event).map_err(|e| failed(e.to_string()))?
        {
            apply_subject_event(conn, decoded, event).await
        } else if let Some(decoded) =
            AlertEvent::from_recorded(event).map_err(|e| failed(e.to_string()))?
        {
            apply_alert_event(conn, decoded, event).await
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::Order;
    use crate::digest::table_digest;
    use crate::testing::{Log, apply, on_both, t};

    fn embedding(seed: u32) -> Vec<f32> {
        (0..128)
            .map(|i| ((seed * 131 + i) % 97) as f32 / 97.0 - 0.5 + 1e-7 * i as f32)
            .collect()
    }

    fn face(id: &str, seed: u32) -> serde_json::Value {
        json!({
            "face_id": id,
            "crop": format!("{:064x}", seed),
            "bbox": {"x1": 0.25, "y1": 0.125, "x2": 0.75, "y2": 0.625},
            "score": 0.9375,
            "embedding": embedding(seed),
        })
    }

    fn enrol(
        log: &mut Log,
        id: &str,
        name: &str,
        category: &str,
        at: DateTime<Utc>,
        faces: &[&str],
    ) {
        let faces: Vec<_> = faces
            .iter()
            .enumerate()
            .map(|(i, f)| face(f, i as u32 + name.len() as u32))
            .collect();
        let mut payload = json!({
            "subject_id": id, "name": name, "category": category, "notes": "", "faces": faces,
        });
        if category == "watchlist" {
            payload["severity"] = json!("high");
        }
        log.push(
            &format!("subject-{id}"),
            "subject.enrolled",
            at,
            "key:op",
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
        payload["subject_id"] = json!(id);
        log.push(&format!("subject-{id}"), event_type, at, "key:op", payload);
    }

    fn matched(
        log: &mut Log,
        match_id: &str,
        subject: &str,
        category: &str,
        camera: &str,
        at: DateTime<Utc>,
        second: Option<f64>,
    ) {
        let mut payload = json!({
            "match_id": match_id, "subject_name": format!("name of {subject}"),
            "category": category, "camera_id": camera, "track_id": format!("trk-{match_id}"),
            "distance": 0.375, "crop": format!("{:064x}", 0xc0),
            "frame": {"blob": format!("{:064x}", 0xf0), "frame_number": 12, "at": at},
        });
        if let Some(second) = second {
            payload["second_distance"] = json!(second);
        }
        on(log, subject, "subject.matched", at, payload);
    }

    fn alert_event(log: &mut Log, alert: &str, event_type: &str, at: DateTime<Utc>) {
        log.push(
            &format!("alert-{alert}"),
            event_type,
            at,
            "key:op",
            json!({"alert_id": alert}),
        );
    }

    /// Three subjects: `s1` Eileen (watch list, one face), `s2` Bob (authorised, two faces,
    /// then a third), `s3` Carol (watch list, one face; later moved to the authorised list).
    fn people() -> Log {
        let mut log = Log::default();
        enrol(
            &mut log,
            "s1",
            "Eileen",
            "watchlist",
            t(6, 9, 0, 0),
            &["f1"],
        );
        enrol(
            &mut log,
            "s2",
            "Bob",
            "authorised",
            t(6, 9, 5, 0),
            &["f2", "f3"],
        );
        enrol(
            &mut log,
            "s3",
            "Carol",
            "watchlist",
            t(6, 9, 10, 0),
            &["f5"],
        );
        on(
            &mut log,
            "s2",
            "subject.faces_added",
            t(6, 10, 0, 0),
            json!({"faces": [face("f4", 40)]}),
        );
        on(
            &mut log,
            "s1",
            "subject.updated",
            t(6, 11, 0, 0),
            json!({"name": "Eileen B.", "severity": "critical", "notes": "banned"}),
        );
        on(
            &mut log,
            "s3",
            "subject.updated",
            t(6, 12, 0, 0),
            json!({"category": "authorised"}),
        );
        log
    }

    /// `people()` plus alerts: `m1` (s1, cam-a, Tuesday 08:00), `m2` (s1, cam-b, 09:00, with
    /// a second distance), `m3` (s2, cam-a, 10:00), `m4` (s2, cam-a, 10:00); `m2` acknowledged
    /// twice, `m4` dismissed.
    fn sightings() -> Log {
        let mut log = people();
        matched(
            &mut log,
            "m1",
            "s1",
            "watchlist",
            "cam-a",
            t(7, 8, 0, 0),
            None,
        );
        matched(
            &mut log,
            "m2",
            "s1",
            "watchlist",
            "cam-b",
            t(7, 9, 0, 0),
            Some(0.8125),
        );
        matched(
            &mut log,
            "m3",
            "s2",
            "authorised",
            "cam-a",
            t(7, 10, 0, 0),
            None,
        );
        matched(
            &mut log,
            "m4",
            "s2",
            "authorised",
            "cam-a",
            t(7, 10, 0, 0),
            None,
        );
        alert_event(&mut log, "m2", "alert.acknowledged", t(7, 9, 1, 0));
        alert_event(&mut log, "m2", "alert.acknowledged", t(7, 9, 2, 0));
        alert_event(&mut log, "m4", "alert.dismissed", t(7, 11, 0, 0));
        log
    }

    async fn alert_list(pool: &AnyPool, q: AlertQuery) -> Vec<String> {
        let q = AlertQuery { limit: 100, ..q };
        let (page, next) = list_alerts(pool, &q).await.unwrap();
        assert!(next.is_none());
        page.into_iter().map(|a| a.id).collect()
    }

    async fn folds_events_into_rows(pool: &AnyPool) {
        apply(pool, &SubjectProjection, &people().events).await;
        let s1 = get_subject(pool, "s1").await.unwrap().expect("s1");
        assert_eq!(s1.name, "Eileen B.");
        assert_eq!(s1.category, SubjectCategory::Watchlist);
        assert_eq!(s1.severity, Some(Severity::Critical));
        assert_eq!(s1.notes, "banned");
        assert_eq!(
            (s1.created_at, s1.updated_at),
            (t(6, 9, 0, 0), t(6, 11, 0, 0))
        );
        assert_eq!(s1.version, 2);
        assert_eq!(s1.face_count, 1);
        assert_eq!(s1.faces[0].face_id, "f1");
        assert_eq!(s1.faces[0].score, 0.9375);
        assert_eq!(s1.faces[0].bbox.y2, 0.625);
        assert_eq!(s1.faces[0].added_at, t(6, 9, 0, 0));

        let s2 = get_subject(pool, "s2").await.unwrap().expect("s2");
        assert_eq!(s2.face_count, 3);
        let faces: Vec<&str> = s2.faces.iter().map(|f| f.face_id.as_str()).collect();
        assert_eq!(faces, ["f2", "f3", "f4"], "enrolment order");
        assert_eq!(s2.faces[2].added_at, t(6, 10, 0, 0));
        assert_eq!(s2.faces[2].crop, format!("{:064x}", 40));
        assert_eq!(s2.updated_at, t(6, 10, 0, 0));
        assert_eq!(s2.severity, None);

        // Moving to the authorised list clears the severity.
        let s3 = get_subject(pool, "s3").await.unwrap().expect("s3");
        assert_eq!(s3.category, SubjectCategory::Authorised);
        assert_eq!(s3.severity, None);
        assert!(get_subject(pool, "nope").await.unwrap().is_none());

        // The matcher's view: every face with its exact descriptor.
        let all = all_faces(pool).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|f| f.4.as_str()).collect();
        assert_eq!(ids, ["f1", "f2", "f3", "f4", "f5"]);
        let (subject, category, severity, name, _, descriptor) = &all[0];
        assert_eq!(
            (subject.as_str(), *category, *severity, name.as_str()),
            (
                "s1",
                SubjectCategory::Watchlist,
                Some(Severity::Critical),
                "Eileen B."
            )
        );
        assert_eq!(descriptor, &embedding("Eileen".len() as u32));
        assert_eq!(all[3].5, embedding(40));
    }

    async fn lists_subjects_by_category_and_page(pool: &AnyPool) {
        apply(pool, &SubjectProjection, &people().events).await;
        let ids = |rows: Vec<SubjectRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let (all, next) = list_subjects(pool, None, Order::Asc, None, 10)
            .await
            .unwrap();
        assert!(next.is_none());
        assert_eq!(all[1].faces.len(), 3, "listings carry faces");
        assert_eq!(ids(all), ["s1", "s2", "s3"]);
        let (watch, _) =
            list_subjects(pool, Some(SubjectCategory::Watchlist), Order::Asc, None, 10)
                .await
                .unwrap();
        assert_eq!(ids(watch), ["s1"]);
        let (authorised, _) = list_subjects(
            pool,
            Some(SubjectCategory::Authorised),
            Order::Asc,
            None,
            10,
        )
        .await
        .unwrap();
        assert_eq!(ids(authorised), ["s2", "s3"]);
        for limit in [1, 2] {
            let mut seen = vec![];
            let mut cursor: Option<String> = None;
            loop {
                let (page, next) = list_subjects(pool, None, Order::Asc, cursor.as_deref(), limit)
                    .await
                    .unwrap();
                assert!(page.len() <= limit as usize);
                seen.extend(ids(page));
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, ["s1", "s2", "s3"], "limit {limit}");
        }
        for junk in [
            "junk!",
            &URL_SAFE_NO_PAD.encode("cam:s1"),
            &encode_keyset("alr", &["s1"]),
        ] {
            assert!(matches!(
                list_subjects(pool, None, Order::Asc, Some(junk), 2).await,
                Err(QueryError::Cursor(_))
            ));
        }
    }

    async fn lists_filters_acknowledges_and_dismisses_alerts(pool: &AnyPool) {
        apply(pool, &SubjectProjection, &sightings().events).await;
        // Newest first; m4 is dismissed; m3 and m4 shared a time.
        assert_eq!(
            alert_list(pool, AlertQuery::default()).await,
            ["m3", "m2", "m1"]
        );
        let m2 = get_alert(pool, "m2").await.unwrap().expect("m2");
        assert!(m2.acknowledged);
        // The first acknowledgement counts.
        assert_eq!(m2.acknowledged_at, Some(t(7, 9, 1, 0)));
        assert_eq!(m2.second_distance, Some(0.8125));
        assert_eq!(m2.distance, 0.375);
        assert_eq!(m2.subject_name, "name of s1");
        assert_eq!(m2.track_id, "trk-m2");
        assert_eq!(m2.frame.frame_number, 12);
        assert_eq!(m2.frame.at, t(7, 9, 0, 0));
        assert_eq!(m2.at, t(7, 9, 0, 0));
        let m1 = get_alert(pool, "m1").await.unwrap().expect("m1");
        assert_eq!((m1.acknowledged, m1.acknowledged_at), (false, None));
        assert_eq!(m1.second_distance, None);
        assert!(get_alert(pool, "m4").await.unwrap().is_none());
        // A match is an event of the subject's stream: it moves the version, not updated_at.
        let s2 = get_subject(pool, "s2").await.unwrap().unwrap();
        assert_eq!((s2.version, s2.updated_at), (4, t(6, 10, 0, 0)));

        let q = |f: fn(&mut AlertQuery)| {
            let mut q = AlertQuery::default();
            f(&mut q);
            q
        };
        assert_eq!(
            alert_list(pool, q(|q| q.subject_id = Some("s1".into()))).await,
            ["m2", "m1"]
        );
        assert_eq!(
            alert_list(pool, q(|q| q.camera_id = Some("cam-a".into()))).await,
            ["m3", "m1"]
        );
        assert_eq!(
            alert_list(pool, q(|q| q.category = Some(SubjectCategory::Authorised))).await,
            ["m3"]
        );
        assert_eq!(
            alert_list(pool, q(|q| q.acknowledged = Some(true))).await,
            ["m2"]
        );
        assert_eq!(
            alert_list(pool, q(|q| q.acknowledged = Some(false))).await,
            ["m3", "m1"]
        );
        // `from` inclusive, `to` exclusive.
        assert_eq!(
            alert_list(
                pool,
                q(|q| {
                    q.from = Some(t(7, 9, 0, 0));
                    q.to = Some(t(7, 10, 0, 0));
                })
            )
            .await,
            ["m2"]
        );
        assert_eq!(
            alert_list(pool, q(|q| q.only_cameras = Some(vec!["cam-b".into()]))).await,
            ["m2"]
        );
        assert!(
            alert_list(pool, q(|q| q.only_cameras = Some(vec![])))
                .await
                .is_empty()
        );

        // Pages.
        let mut seen = vec![];
        let mut cursor = None;
        loop {
            let (page, next) = list_alerts(
                pool,
                &AlertQuery {
                    cursor,
                    limit: 1,
                    ..AlertQuery::default()
                },
            )
            .await
            .unwrap();
            assert_eq!(page.len(), 1);
            seen.extend(page.into_iter().map(|a| a.id));
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["m3", "m2", "m1"]);
        let junk = AlertQuery {
            cursor: Some(encode_keyset("alr", &["yesterday", "m1"])),
            limit: 1,
            ..AlertQuery::default()
        };
        assert!(matches!(
            list_alerts(pool, &junk).await,
            Err(QueryError::Cursor(_))
        ));

        // What a dismissal of everything (or of the older ones) would dismiss, oldest first.
        assert_eq!(
            alert_ids(pool, None, None).await.unwrap(),
            ["m1", "m2", "m3"]
        );
        assert_eq!(
            alert_ids(pool, Some(t(7, 9, 30, 0)), None).await.unwrap(),
            ["m1", "m2"]
        );
        assert_eq!(
            alert_ids(pool, None, Some(&["cam-a".to_string()]))
                .await
                .unwrap(),
            ["m1", "m3"]
        );
        assert!(alert_ids(pool, None, Some(&[])).await.unwrap().is_empty());
    }

    async fn erasure_removes_the_subject_its_faces_and_alerts(pool: &AnyPool) {
        let mut log = sightings();
        // s3 shares s1's crop picture.
        on(
            &mut log,
            "s3",
            "subject.faces_added",
            t(7, 12, 0, 0),
            json!({"faces": [face("f6", "Eileen".len() as u32)]}),
        );
        let s1_crop = format!("{:064x}", "Eileen".len());
        on(
            &mut log,
            "s1",
            "subject.erased",
            t(8, 9, 0, 0),
            json!({"face_ids": ["f1"], "reason": "request"}),
        );
        // Later events about the erased subject or its alerts change nothing.
        matched(
            &mut log,
            "m9",
            "s1",
            "watchlist",
            "cam-a",
            t(8, 10, 0, 0),
            None,
        );
        alert_event(&mut log, "m1", "alert.acknowledged", t(8, 10, 1, 0));
        on(
            &mut log,
            "s1",
            "subject.updated",
            t(8, 10, 2, 0),
            json!({"name": "Ghost"}),
        );
        apply(pool, &SubjectProjection, &log.events).await;
        assert!(get_subject(pool, "s1").await.unwrap().is_none());
        assert!(get_alert(pool, "m1").await.unwrap().is_none());
        assert!(get_alert(pool, "m9").await.unwrap().is_none());
        assert_eq!(alert_list(pool, AlertQuery::default()).await, ["m3"]);
        let faces = all_faces(pool).await.unwrap();
        assert!(faces.iter().all(|f| f.0 != "s1"), "{faces:?}");
        assert_eq!(faces.len(), 5);
        let (ids, _) = list_subjects(pool, None, Order::Asc, None, 10)
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        // The crop s1 had is still shown by s3's face; s2's are only s2's.
        assert!(crop_in_use(pool, &s1_crop, Some("s1")).await.unwrap());
        assert!(!crop_in_use(pool, &s1_crop, Some("s3")).await.unwrap());
        let s2_crop = format!("{:064x}", 40);
        assert!(!crop_in_use(pool, &s2_crop, Some("s2")).await.unwrap());
        assert!(crop_in_use(pool, &s2_crop, None).await.unwrap());
        assert!(
            !crop_in_use(pool, &format!("{:064x}", 41), None)
                .await
                .unwrap()
        );
        let count = |table: &'static str| async move {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {table} WHERE subject_id = 's1'"
            )))
            .fetch_one(pool)
            .await
            .unwrap();
            n
        };
        assert_eq!(count("subject_faces").await, 0);
        assert_eq!(count("alerts").await, 0);
    }

    async fn rebuilds_identically(pool: &AnyPool) {
        let mut log = sightings();
        on(
            &mut log,
            "s3",
            "subject.erased",
            t(8, 9, 0, 0),
            json!({"face_ids": ["f5"], "reason": "request"}),
        );
        apply(pool, &SubjectProjection, &log.events).await;
        let mut before = vec![];
        // `vigil verify` orders every read-model table by `id`.
        for table in SubjectProjection.tables() {
            before.push(table_digest(pool, table, "id").await.unwrap());
        }
        assert_eq!(
            before
                .iter()
                .map(|d| d.split(':').next().unwrap())
                .collect::<Vec<_>>(),
            ["2", "4", "3"]
        );
        for table in SubjectProjection.tables() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(pool)
                .await
                .unwrap();
        }
        assert!(all_faces(pool).await.unwrap().is_empty());
        apply(pool, &SubjectProjection, &log.events).await;
        let mut after = vec![];
        for table in SubjectProjection.tables() {
            after.push(table_digest(pool, table, "id").await.unwrap());
        }
        assert_eq!(before, after);
    }

    on_both!(
        folds_events_into_rows,
        lists_subjects_by_category_and_page,
        lists_filters_acknowledges_and_dismisses_alerts,
        erasure_removes_the_subject_its_faces_and_alerts,
        rebuilds_identically,
    );

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_keyset("alr", &["2025-01-06T10:00:00.000000Z", "m|1"]);
        assert_eq!(
            decode_alert_cursor(&cursor).unwrap(),
            ("2025-01-06T10:00:00.000000Z".to_string(), "m|1".to_string())
        );
        assert!(
            decode_alert_cursor(&encode_keyset("inc", &["2025-01-06T10:00:00Z", "m"])).is_err()
        );
        assert!(decode_alert_cursor(&encode_keyset("alr", &["2025-01-06T10:00:00Z"])).is_err());
        assert_eq!(
            decode_subject_cursor(&encode_keyset("sub", &["s-1"])).unwrap(),
            "s-1"
        );
        assert!(decode_subject_cursor(&encode_keyset("sub", &[""])).is_err());
        assert!(decode_subject_cursor("!!").is_err());
    }
}
