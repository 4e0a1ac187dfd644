//! `/api/v1/incidents`: what the rules raised, its workflow, queries, export and retention;
//! `/api/v1/rules`: what each rule does.

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;
use vigil_actors::aggregates::incident::{Incident, IncidentCommand};
use vigil_projections::Order;
use vigil_projections::actions::actions_of_incident;
use vigil_projections::clips::clips_of_incident;
use vigil_projections::incidents::{
    IncidentQuery, IncidentRow, export_page, incident_history, incident_stats, list_incidents,
    search_incidents,
};
use vigil_schemas::events::{IncidentKind, IncidentStatus};

use super::ApiTags;
use super::auth::{Auth, only_cameras, request_meta, visible_incident};
use super::body::{BodyLimits, JsonBody};
use super::dto::{
    ActionDto, ClipDto, EvidenceDto, SeverityParam, action_dto, clip_dto, evidence_dto,
};
use super::error::{ApiError, incident_error};
use super::listing::{OrderParam, order_or};
use crate::app::App;
use crate::service::incidents;
use crate::service::visibility::wait_visible;

/// Rows per page read while exporting.
const EXPORT_PAGE: u32 = 1000;

/// Where an incident is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename = "IncidentStatus", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum StatusParam {
    /// Raised, nobody has taken it yet.
    Active,
    /// Someone is looking into it.
    Investigating,
    /// Handed up.
    Escalated,
    /// Dealt with (final).
    Resolved,
    /// Not a real incident (final).
    FalsePositive,
}

impl From<StatusParam> for IncidentStatus {
    fn from(s: StatusParam) -> Self {
        match s {
            StatusParam::Active => Self::Active,
            StatusParam::Investigating => Self::Investigating,
            StatusParam::Escalated => Self::Escalated,
            StatusParam::Resolved => Self::Resolved,
            StatusParam::FalsePositive => Self::FalsePositive,
        }
    }
}

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename = "IncidentKind", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum KindParam {
    /// Too many people.
    Crowd,
    /// A restricted zone entered.
    Intrusion,
    /// A stay too long in a zone.
    Loitering,
    /// A face matching no authorised person.
    Unauthorised,
    /// A face matching a watch-listed subject.
    PersonOfInterest,
    /// A person lying still.
    Sleep,
    /// A person who fell and stayed down.
    Fall,
    /// Theft-like behaviour.
    Theft,
    /// Raised by an outside system (Alertmanager).
    External,
}

impl From<KindParam> for IncidentKind {
    fn from(k: KindParam) -> Self {
        match k {
            KindParam::Crowd => Self::Crowd,
            KindParam::Intrusion => Self::Intrusion,
            KindParam::Loitering => Self::Loitering,
            KindParam::Unauthorised => Self::Unauthorised,
            KindParam::PersonOfInterest => Self::PersonOfInterest,
            KindParam::Sleep => Self::Sleep,
            KindParam::Fall => Self::Fall,
            KindParam::Theft => Self::Theft,
            KindParam::External => Self::External,
        }
    }
}

/// Who an incident is about.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SubjectsDto {
    /// Tracks of the people involved (`track-{camera}-{track}` streams).
    pub track_ids: Vec<String>,
    /// The enrolled subject a face matched.
    pub subject_id: Option<String>,
}

/// An incident.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IncidentDto {
    /// Id.
    pub id: String,
    /// `crowd`, `intrusion`, `loitering`, `unauthorised`, `person_of_interest`, `sleep`,
    /// `fall`, `theft`, `external`.
    pub kind: String,
    /// `low`, `medium`, `high`, `critical`.
    pub severity: String,
    /// `active`, `investigating`, `escalated`, `resolved`, `false_positive`.
    pub status: String,
    /// Highest confidence of its findings, 0–1.
    pub confidence: f64,
    /// The camera.
    pub camera_id: Option<String>,
    /// The zone.
    pub zone: Option<String>,
    /// Why, naming the evidence (the latest finding's words).
    pub reasoning: String,
    /// Operator notes, one per line.
    pub notes: String,
    /// Marked read.
    pub is_read: bool,
    /// Acted on.
    pub action_taken: bool,
    /// `rule:{kind}` or `alertmanager`.
    pub source: String,
    /// Who is involved.
    pub subjects: SubjectsDto,
    /// Actions the rule recommends.
    pub recommended_actions: Vec<String>,
    /// The first frames of evidence.
    pub evidence: Vec<EvidenceDto>,
    /// Every frame of evidence found.
    pub evidence_count: u64,
    /// When what it is about began: the time of its first evidence (the frame's capture time,
    /// an outside alert's `startsAt`), not when Vigil learnt of it.
    pub opened_at: DateTime<Utc>,
    /// The time of its latest evidence; never before `opened_at`.
    pub last_seen_at: DateTime<Utc>,
    /// When Vigil recorded it; later than `opened_at` when the evidence came late.
    pub recorded_at: DateTime<Utc>,
    /// When it last changed (recording time).
    pub updated_at: DateTime<Utc>,
    /// First marked read.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Reached `resolved` or `false_positive`.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Version of its stream.
    pub version: u64,
}

fn dto(row: IncidentRow) -> IncidentDto {
    IncidentDto {
        kind: row.kind.as_str().into(),
        severity: row.severity.as_str().into(),
        status: row.status.as_str().into(),
        subjects: SubjectsDto {
            track_ids: row.subjects.track_ids,
            subject_id: row.subjects.subject_id,
        },
        evidence: row.evidence.into_iter().map(evidence_dto).collect(),
        id: row.id,
        confidence: row.confidence,
        camera_id: row.camera_id,
        zone: row.zone,
        reasoning: row.reasoning,
        notes: row.notes,
        is_read: row.is_read,
        action_taken: row.action_taken,
        source: row.source,
        recommended_actions: row.recommended_actions,
        evidence_count: row.evidence_count,
        opened_at: row.opened_at,
        last_seen_at: row.last_seen_at,
        recorded_at: row.recorded_at,
        updated_at: row.updated_at,
        acknowledged_at: row.acknowledged_at,
        resolved_at: row.resolved_at,
        version: row.version,
    }
}

/// One event of an incident's history.
#[derive(Debug, Clone, Object)]
pub struct HistoryDto {
    /// Its version in the incident's stream.
    pub version: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Event type (`incident.status_changed`, …).
    #[oai(rename = "type")]
    pub event_type: String,
    /// Who (`key:{id}`, `rule:{kind}`, `system:…`).
    pub actor: String,
    /// The event's payload.
    pub detail: serde_json::Value,
}

/// An incident with its history and actions.
#[derive(Debug, Clone, Object)]
pub struct IncidentDetail {
    /// The incident.
    pub incident: IncidentDto,
    /// Every event of its stream, oldest first: who changed what and why.
    pub history: Vec<HistoryDto>,
    /// Response actions taken for it, oldest first.
    pub actions: Vec<ActionDto>,
    /// Video clips of it, oldest first: RTSP cameras record one from the pre-roll before the
    /// incident until the post-roll after its latest finding (`clips` settings).
    pub clips: Vec<ClipDto>,
}

/// A page of incidents.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IncidentPage {
    /// In the order asked for (newest first by default).
    pub items: Vec<IncidentDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Search results.
#[derive(Debug, Clone, Object)]
pub struct SearchResults {
    /// Best match first.
    pub items: Vec<IncidentDto>,
}

/// An operator's change to an incident. At least one field.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch {
    /// New status. From `active`: `investigating`, `escalated`, `resolved`,
    /// `false_positive`; from `investigating`: `escalated`, `resolved`, `false_positive`; from
    /// `escalated`: `investigating`, `resolved`, `false_positive`. `resolved` and
    /// `false_positive` are final (409 `INVALID_TRANSITION`).
    pub status: Option<StatusParam>,
    /// With `status`: why; alone: a note.
    #[oai(validator(max_length = 4000))]
    pub notes: Option<String>,
    /// Mark read or unread.
    pub is_read: Option<bool>,
    /// Mark acted on or not.
    pub action_taken: Option<bool>,
}

impl BodyLimits for IncidentPatch {
    const MAX_BYTES: usize = 64 * 1024;
    const CHECK_DECLARED: bool = true;
}

/// Counts and means over the incidents the key may see.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct StatsDto {
    /// Every incident.
    pub total: i64,
    /// Not resolved and not dismissed.
    pub active: i64,
    /// Opened since 00:00 UTC today.
    pub today: i64,
    /// Opened since Monday 00:00 UTC.
    pub this_week: i64,
    /// Per severity.
    pub by_severity: std::collections::BTreeMap<String, i64>,
    /// Per kind.
    pub by_kind: std::collections::BTreeMap<String, i64>,
    /// Per status.
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// Mean confidence.
    pub mean_confidence: Option<f64>,
    /// `false_positive / (resolved + false_positive)`.
    pub false_positive_rate: Option<f64>,
    /// Mean seconds from opening to the first acknowledgement.
    pub mean_seconds_to_acknowledge: Option<f64>,
    /// Mean seconds from opening to resolved or dismissed.
    pub mean_seconds_to_resolve: Option<f64>,
}

/// What a retention run deleted.
#[derive(Debug, Clone, Object)]
pub struct CleanupResult {
    /// Incidents deleted (each recorded as `incident.deleted`).
    pub deleted: u64,
    /// Evidence files deleted from the media store (those no remaining incident shows).
    pub media_deleted: u64,
    /// Incidents opened before this time were deleted.
    pub cutoff: DateTime<Utc>,
}

/// What a reanalysis saw in one evidence frame.
#[derive(Debug, Clone, Object)]
pub struct ReanalysedFrame {
    /// The frame.
    pub blob: String,
    /// Persons at or above the camera's `min_person_score`.
    pub persons: u32,
    /// Faces.
    pub faces: u32,
    /// Strongest person score.
    pub max_person_score: f32,
}

/// The result of a reanalysis.
#[derive(Debug, Clone, Object)]
pub struct Reanalysis {
    /// The incident.
    pub incident_id: String,
    /// Each evidence frame looked at (the newest, at most five).
    pub frames: Vec<ReanalysedFrame>,
    /// What it concluded, recorded as new evidence.
    pub reasoning: String,
    /// Confidence of the reanalysis, 0–1 (mean strongest person score over the frames).
    pub confidence: f64,
}

/// One rule.
#[derive(Debug, Clone, Object)]
pub struct RuleDto {
    /// Its name.
    pub name: String,
    /// The camera feature flag that turns it on.
    pub feature: String,
    /// Incident kinds it raises.
    pub kinds: Vec<String>,
    /// `active`, `inert` (waits for something not built yet), `modifier` (changes other
    /// rules' incidents), `extension_point` (detects nothing today).
    pub status: String,
    /// What it detects today, in plain words.
    pub detects: String,
    /// Calibration fields it reads.
    pub settings: Vec<String>,
}

/// Every rule.
#[derive(Debug, Clone, Object)]
pub struct RuleList {
    /// The rules.
    pub items: Vec<RuleDto>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON incident per line.
    Ndjson,
}

/// A streamed export.
#[derive(ApiResponse)]
pub enum IncidentExport {
    /// The incidents, as `text/csv` or `application/x-ndjson` by `format`.
    #[oai(status = 200, content_type = "text/csv")]
    Csv(Binary<poem::Body>),
    /// The incidents, as `text/csv` or `application/x-ndjson` by `format`.
    #[oai(status = 200, content_type = "application/x-ndjson")]
    Ndjson(Binary<poem::Body>),
}

/// An incident answer.
#[derive(ApiResponse)]
pub enum IncidentResponse {
    /// The incident.
    #[oai(status = 200)]
    Ok(
        Json<IncidentDto>,
        /// Global position the answer reflects.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(ApiError::validation("to", "must lie after `from`"));
    }
    Ok(())
}

const CSV_HEADER: &str = "id,kind,severity,status,confidence,camera_id,zone,opened_at,last_seen_at,recorded_at,is_read,action_taken,evidence_count,reasoning,notes\n";

fn csv_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

fn csv_row(out: &mut String, r: &IncidentRow) {
    let cells = [
        r.id.clone(),
        r.kind.as_str().into(),
        r.severity.as_str().into(),
        r.status.as_str().into(),
        format!("{:.4}", r.confidence),
        r.camera_id.clone().unwrap_or_default(),
        r.zone.clone().unwrap_or_default(),
        vigil_projections::format_time(r.opened_at),
        vigil_projections::format_time(r.last_seen_at),
        vigil_projections::format_time(r.recorded_at),
        r.is_read.to_string(),
        r.action_taken.to_string(),
        r.evidence_count.to_string(),
    ];
    for cell in &cells {
        csv_field(out, cell);
        out.push(',');
    }
    csv_field(out, &r.reasoning);
    out.push(',');
    csv_field(out, &r.notes);
    out.push('\n');
}

/// Incident and rule endpoints.
pub struct IncidentsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Incidents")]
impl IncidentsApi {
    /// List incidents.
    ///
    /// By opening time (`opened_at`, then id), newest first unless `order=asc`; `limit` per
    /// page (1–500, default 50); pass `next_cursor` back as `cursor` (with the same `order`).
    /// Filters: `status`, `severity` (at least: `high` lists high and critical),
    /// `kind`, `camera_id`, `from`/`to` (opening time, `from` inclusive), `is_read`,
    /// `action_taken`. A camera-restricted key sees only its cameras' incidents.
    #[oai(path = "/incidents", method = "get", operation_id = "list_incidents")]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter
    async fn list(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
        status: Query<Option<StatusParam>>,
        severity: Query<Option<SeverityParam>>,
        kind: Query<Option<KindParam>>,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] camera_id: Query<Option<String>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        is_read: Query<Option<bool>>,
        action_taken: Query<Option<bool>>,
        order: Query<Option<OrderParam>>,
    ) -> Result<Json<IncidentPage>, ApiError> {
        let principal = auth.require("list_incidents")?;
        let limit = limit.0.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::validation("limit", "must be between 1 and 500"));
        }
        check_range(from.0, to.0)?;
        let query = IncidentQuery {
            status: status.0.map(Into::into),
            severity: severity.0.map(Into::into),
            kind: kind.0.map(Into::into),
            camera_id: camera_id.0,
            from: from.0,
            to: to.0,
            is_read: is_read.0,
            action_taken: action_taken.0,
            only_cameras: only_cameras(principal),
            cursor: cursor.0,
            limit,
            order: Some(order_or(order.0, Order::Desc)),
        };
        let (rows, next_cursor) = list_incidents(app.pool(), &query)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(IncidentPage {
            items: rows.into_iter().map(dto).collect(),
            next_cursor,
        }))
    }

    /// Incident statistics.
    ///
    /// Totals, active, opened today and this week (UTC), by severity, kind and status, mean
    /// confidence, false-positive rate and mean times to acknowledge and to resolve.
    #[oai(
        path = "/incidents/stats",
        method = "get",
        operation_id = "incident_stats"
    )]
    async fn stats(&self, app: Data<&App>, auth: Auth) -> Result<Json<StatsDto>, ApiError> {
        let principal = auth.require("incident_stats")?;
        let only = only_cameras(principal);
        let s = incident_stats(app.pool(), Utc::now(), only.as_deref())
            .await
            .map_err(ApiError::from)?;
        Ok(Json(StatsDto {
            total: s.total,
            active: s.active,
            today: s.today,
            this_week: s.this_week,
            by_severity: s.by_severity,
            by_kind: s.by_kind,
            by_status: s.by_status,
            mean_confidence: s.mean_confidence,
            false_positive_rate: s.false_positive_rate,
            mean_seconds_to_acknowledge: s.mean_seconds_to_acknowledge,
            mean_seconds_to_resolve: s.mean_seconds_to_resolve,
        }))
    }

    /// Search incidents.
    ///
    /// Full text over reasoning and notes (SQLite FTS5, PostgreSQL text search); `q` is plain
    /// words, all of which must occur. Best match first, at most `limit` (default 50).
    #[oai(
        path = "/incidents/search",
        method = "get",
        operation_id = "search_incidents"
    )]
    async fn search(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(min_length = 1, max_length = 500))] q: Query<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
    ) -> Result<Json<SearchResults>, ApiError> {
        let principal = auth.require("search_incidents")?;
        if q.0.trim().is_empty() {
            return Err(ApiError::validation("q", "must contain a word"));
        }
        let only = only_cameras(principal);
        let rows = search_incidents(app.pool(), &q.0, only.as_deref(), limit.0.unwrap_or(50))
            .await
            .map_err(ApiError::from)?;
        Ok(Json(SearchResults {
            items: rows.into_iter().map(dto).collect(),
        }))
    }

    /// Export incidents.
    ///
    /// Every incident matching the filters (as in the listing), oldest first, streamed page
    /// by page: `format=csv` (header row; reasoning and notes quoted as needed) or `ndjson`
    /// (one incident object per line).
    #[oai(
        path = "/incidents/export",
        method = "get",
        operation_id = "export_incidents"
    )]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter
    async fn export(
        &self,
        app: Data<&App>,
        auth: Auth,
        format: Query<Option<ExportFormat>>,
        status: Query<Option<StatusParam>>,
        severity: Query<Option<SeverityParam>>,
        kind: Query<Option<KindParam>>,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] camera_id: Query<Option<String>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
    ) -> Result<IncidentExport, ApiError> {
        let principal = auth.require("export_incidents")?;
        check_range(from.0, to.0)?;
        let format = format.0.unwrap_or(ExportFormat::Csv);
        let query = IncidentQuery {
            status: status.0.map(Into::into),
            severity: severity.0.map(Into::into),
            kind: kind.0.map(Into::into),
            camera_id: camera_id.0,
            from: from.0,
            to: to.0,
            only_cameras: only_cameras(principal),
            limit: EXPORT_PAGE,
            ..IncidentQuery::default()
        };
        let pool = app.pool().clone();
        let header = (format == ExportFormat::Csv).then(|| bytes::Bytes::from(CSV_HEADER));
        let pages = futures::stream::unfold(
            (Some(None::<(DateTime<Utc>, String)>), header),
            move |(cursor, header)| {
                let (pool, query) = (pool.clone(), query.clone());
                async move {
                    if let Some(header) = header {
                        return Some((Ok(header), (cursor, None)));
                    }
                    let after = cursor?;
                    match export_page(&pool, &query, after, EXPORT_PAGE).await {
                        Ok(rows) if rows.is_empty() => None,
                        Ok(rows) => {
                            let next = rows.last().map(|r| (r.opened_at, r.id.clone()));
                            let mut out = String::with_capacity(rows.len() * 400);
                            for row in rows {
                                match format {
                                    ExportFormat::Csv => csv_row(&mut out, &row),
                                    ExportFormat::Ndjson => {
                                        out.push_str(
                                            &serde_json::to_string(&incident_json(row))
                                                .expect("incidents serialise"),
                                        );
                                        out.push('\n');
                                    }
                                }
                            }
                            Some((
                                Ok::<_, std::io::Error>(bytes::Bytes::from(out)),
                                (Some(next), None),
                            ))
                        }
                        Err(err) => {
                            Some((Err(std::io::Error::other(err.to_string())), (None, None)))
                        }
                    }
                }
            },
        );
        let body = poem::Body::from_bytes_stream(pages);
        Ok(match format {
            ExportFormat::Csv => IncidentExport::Csv(Binary(body)),
            ExportFormat::Ndjson => IncidentExport::Ndjson(Binary(body)),
        })
    }

    /// Delete old incidents (retention).
    ///
    /// Every incident opened more than `days` days ago is deleted: `incident.deleted` is
    /// recorded on its stream (which stays for audit), it leaves the read model, and its
    /// evidence files leave the media store unless a remaining incident shows them.
    #[oai(
        path = "/incidents/cleanup",
        method = "delete",
        operation_id = "cleanup_incidents"
    )]
    async fn cleanup(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "36500")))] days: Query<u32>,
    ) -> Result<Json<CleanupResult>, ApiError> {
        let principal = auth.require("cleanup_incidents")?;
        if principal.is_camera_restricted() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "a key restricted to some cameras cannot run retention",
                json!({}),
            ));
        }
        let done = incidents::delete_older_than(&app, &request_meta(principal), days.0).await?;
        Ok(Json(CleanupResult {
            deleted: done.deleted,
            media_deleted: done.media_deleted,
            cutoff: done.cutoff,
        }))
    }

    /// Get an incident with its history and actions.
    #[oai(path = "/incidents/:id", method = "get", operation_id = "get_incident")]
    async fn get(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
    ) -> Result<Json<IncidentDetail>, ApiError> {
        let principal = auth.require("get_incident")?;
        let row = visible_incident(&app, principal, &id.0).await?;
        let history = incident_history(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?;
        let actions = actions_of_incident(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?;
        let clips = clips_of_incident(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(IncidentDetail {
            incident: dto(row),
            history: history
                .into_iter()
                .map(|h| HistoryDto {
                    version: h.stream_version,
                    at: h.at,
                    event_type: h.event_type,
                    actor: h.actor,
                    detail: h.detail,
                })
                .collect(),
            actions: actions.into_iter().map(action_dto).collect(),
            clips: clips.into_iter().map(clip_dto).collect(),
        }))
    }

    /// Change an incident's status, notes, read or acted-on flag.
    ///
    /// All in one: an invalid part (409 `INVALID_TRANSITION` for a move the workflow does not
    /// allow) records nothing. Each change is an event with the key as its actor, visible in
    /// `GET /api/v1/audit/streams/incident-{id}`.
    #[oai(
        path = "/incidents/:id",
        method = "patch",
        operation_id = "update_incident"
    )]
    async fn update(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
        body: JsonBody<IncidentPatch>,
    ) -> Result<IncidentResponse, ApiError> {
        let principal = auth.require("update_incident")?;
        visible_incident(&app, principal, &id.0).await?;
        let body = body.0;
        if body.status.is_none()
            && body.notes.is_none()
            && body.is_read.is_none()
            && body.action_taken.is_none()
        {
            return Err(ApiError::validation(
                "body",
                "name at least one of status, notes, is_read, action_taken",
            ));
        }
        if body.status.is_none() && body.notes.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ApiError::validation("notes", "a note cannot be empty"));
        }
        let command = IncidentCommand::Update {
            id: id.0.clone(),
            status: body.status.map(Into::into),
            notes: body.notes,
            is_read: body.is_read,
            action_taken: body.action_taken,
        };
        let done = app
            .handler()
            .execute::<Incident>(&id.0, command, &request_meta(principal), None)
            .await
            .map_err(|e| incident_error(e, &id.0))?;
        let seen = wait_visible(&app, done.position).await;
        let row = visible_incident(&app, principal, &id.0).await?;
        Ok(IncidentResponse::Ok(
            Json(dto(row)),
            done.position.unwrap_or(seen),
        ))
    }

    /// Analyse an incident's evidence again.
    ///
    /// Runs the person and face models over its newest evidence frames (at most five) and
    /// records what they see as new evidence (`incident.evidence_added`). 409
    /// `INCIDENT_CLOSED` for a resolved or dismissed incident; 422 when none of its frames is
    /// in the media store any more.
    #[oai(
        path = "/incidents/:id/reanalyse",
        method = "post",
        operation_id = "reanalyse_incident"
    )]
    async fn reanalyse(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
    ) -> Result<Json<Reanalysis>, ApiError> {
        let principal = auth.require("reanalyse_incident")?;
        let row = visible_incident(&app, principal, &id.0).await?;
        let done = incidents::reanalyse(&app, &request_meta(principal), &row).await?;
        Ok(Json(Reanalysis {
            incident_id: row.id,
            frames: done
                .frames
                .into_iter()
                .map(|f| ReanalysedFrame {
                    blob: f.blob,
                    persons: f.persons,
                    faces: f.faces,
                    max_person_score: f.max_person_score,
                })
                .collect(),
            reasoning: done.reasoning,
            confidence: done.confidence,
        }))
    }

    /// List the rules.
    ///
    /// Every rule, the camera feature that turns it on, what it detects today (plainly: some
    /// are inert or extension points), and the calibration fields it reads.
    #[oai(path = "/rules", method = "get", operation_id = "list_rules")]
    async fn rules(&self, auth: Auth) -> Result<Json<RuleList>, ApiError> {
        auth.require("list_rules")?;
        Ok(Json(RuleList {
            items: vigil_actors::rules::catalogue()
                .into_iter()
                .map(|r| RuleDto {
                    name: r.name.into(),
                    feature: r.feature.into(),
                    kinds: r.kinds.into_iter().map(String::from).collect(),
                    status: r.status.into(),
                    detects: r.detects.into(),
                    settings: r.settings.into_iter().map(String::from).collect(),
                })
                .collect(),
        }))
    }
}

/// An incident as one NDJSON line.
fn incident_json(row: IncidentRow) -> serde_json::Value {
    let d = dto(row);
    json!({
        "id": d.id, "kind": d.kind, "severity": d.severity, "status": d.status,
        "confidence": d.confidence, "camera_id": d.camera_id, "zone": d.zone,
        "reasoning": d.reasoning, "notes": d.notes, "is_read": d.is_read,
        "action_taken": d.action_taken, "source": d.source,
        "subjects": {"track_ids": d.subjects.track_ids, "subject_id": d.subjects.subject_id},
        "recommended_actions": d.recommended_actions,
        "evidence": d.evidence.iter().map(|e| json!({"blob": e.blob, "frame_number": e.frame_number, "at": e.at})).collect::<Vec<_>>(),
        "evidence_count": d.evidence_count, "opened_at": d.opened_at,
        "last_seen_at": d.last_seen_at, "recorded_at": d.recorded_at, "updated_at": d.updated_at,
        "acknowledged_at": d.acknowledged_at, "resolved_at": d.resolved_at, "version": d.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut out = String::new();
        csv_field(&mut out, "plain");
        out.push(',');
        csv_field(&mut out, "a, \"quoted\"\nline");
        assert_eq!(out, "plain,\"a, \"\"quoted\"\"\nline\"");
    }
}
