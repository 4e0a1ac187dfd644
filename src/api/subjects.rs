//! `/api/v1/subjects`: enrolled people, authorised or watch-listed, with 1–20 faces each;
//! `/api/v1/poi`: the same for watch-listed subjects (persons of interest); `/api/v1/alerts`:
//! what their matches on cameras raised.
//!
//! Enrolment runs the face models on every picture first: each must show exactly one face,
//! or nothing is stored (no event, no media file). Face crops then go to the media store and
//! `subject.enrolled` names them by SHA-256. Erasure records `subject.erased` and deletes the
//! subject's face crops; its faces and alerts leave the read model.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::multipart::Upload as UploadPart;
use poem_openapi::{ApiResponse, Enum, Multipart, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;
use vigil_actors::CommandError;
use vigil_actors::aggregates::alert::{Alert, AlertCommand};
use vigil_actors::aggregates::subject::{
    MAX_FACES_PER_REQUEST, MAX_NAME_CHARS, MAX_NOTES_CHARS, Subject, SubjectCommand,
};
use vigil_projections::Order;
use vigil_projections::subjects::{
    AlertQuery, AlertRow, SubjectFaceRow, SubjectRow, alert_ids, get_alert, get_subject,
    list_alerts, list_subjects,
};
use vigil_schemas::events::{Severity, SubjectCategory, SubjectEnrolled, SubjectUpdated};

use super::ApiTags;
use super::auth::{Auth, only_cameras, request_meta};
use super::body::{BodyLimits, JsonBody, Upload, UploadForm};
use super::dto::{
    BoxDto, EvidenceDto, SeverityParam, box_dto, evidence_dto, media_url, similarity,
};
use super::error::ApiError;
use super::listing::{OrderParam, order_or};
use crate::app::{App, Principal};
use crate::service::subjects::{self, NewSubject, poi_not_found, subject_error, subject_not_found};
use crate::service::visibility::wait_visible;

// ---------------------------------------------------------------------------------------------
// DTOs.

/// Authorised (may be seen) or watch-listed (a person of interest: a match raises an
/// incident).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename = "SubjectCategory", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum CategoryParam {
    /// May be seen.
    Authorised,
    /// A person of interest.
    Watchlist,
}

impl From<CategoryParam> for SubjectCategory {
    fn from(c: CategoryParam) -> Self {
        match c {
            CategoryParam::Authorised => Self::Authorised,
            CategoryParam::Watchlist => Self::Watchlist,
        }
    }
}

/// One enrolled face (its descriptor stays on the server).
#[derive(Debug, Clone, Object)]
pub struct SubjectFaceDto {
    /// The face's id.
    pub face_id: String,
    /// SHA-256 of the face crop (JPEG) in the media store.
    pub crop: String,
    /// Where to fetch the crop (`GET /api/v1/media/{sha256}`).
    pub crop_url: String,
    /// The face's box in the picture it was enrolled from.
    pub bbox: BoxDto,
    /// Face detector confidence, 0–1.
    pub score: f32,
    /// When it was enrolled.
    pub added_at: DateTime<Utc>,
}

/// An enrolled person.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SubjectDto {
    /// Id (UUID v7).
    pub id: String,
    /// Name.
    pub name: String,
    /// `authorised` or `watchlist`.
    pub category: String,
    /// Watch-listed subjects: the severity of the incident a match raises (`low`, `medium`,
    /// `high`, `critical`); absent for authorised subjects.
    pub severity: Option<String>,
    /// Free text.
    pub notes: String,
    /// How many faces it has.
    pub face_count: u64,
    /// Its faces, in the order they were enrolled.
    pub faces: Vec<SubjectFaceDto>,
    /// When it was enrolled.
    pub created_at: DateTime<Utc>,
    /// The last change of its details or faces.
    pub updated_at: DateTime<Utc>,
    /// Version of its stream (matches count too).
    pub version: u64,
}

/// A page of subjects.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SubjectPage {
    /// Subjects by id (enrolment order: ids are UUID v7), in the order asked for.
    pub items: Vec<SubjectDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Changes to a subject; absent fields stay as they are. At least one field.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct SubjectPatch {
    /// New name (1–200 characters, not blank).
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: Option<String>,
    /// New category. Moving to `authorised` clears the severity; moving to `watchlist`
    /// without a `severity` keeps the old one or takes `high`.
    pub category: Option<CategoryParam>,
    /// New severity (watch-listed subjects only).
    pub severity: Option<SeverityParam>,
    /// New notes (at most 4000 characters).
    #[oai(validator(max_length = 4000))]
    pub notes: Option<String>,
}

impl BodyLimits for SubjectPatch {
    const MAX_BYTES: usize = 64 * 1024;
    const CHECK_DECLARED: bool = true;
}

/// An alert: a face seen on a camera matched an enrolled subject.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AlertDto {
    /// Id (the match id).
    pub id: String,
    /// The subject.
    pub subject_id: String,
    /// The subject's name when matched.
    pub subject_name: String,
    /// The subject's category when matched (`authorised` or `watchlist`).
    pub category: String,
    /// The camera.
    pub camera_id: String,
    /// The track the face belongs to.
    pub track_id: String,
    /// Descriptor distance to the subject's nearest face (same person: below about 0.6).
    pub distance: f64,
    /// `1 - distance / 2`, clamped to 0–1.
    pub similarity: f64,
    /// Distance to the next-nearest other subject, when there is one.
    pub second_distance: Option<f64>,
    /// SHA-256 of the face crop seen.
    pub crop: String,
    /// Where to fetch the crop.
    pub crop_url: String,
    /// The frame it was seen in.
    pub frame: EvidenceDto,
    /// When the face was seen (the frame's capture time).
    pub at: DateTime<Utc>,
    /// When Vigil recorded the match; later than `at` when the frame came late.
    pub recorded_at: DateTime<Utc>,
    /// Acknowledged by an operator.
    pub acknowledged: bool,
    /// When it was first acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// A page of alerts.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AlertPage {
    /// In the order asked for (newest first by default).
    pub items: Vec<AlertDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What a dismissal did.
#[derive(Debug, Clone, Object)]
pub struct DismissedAlerts {
    /// Alerts dismissed (each recorded as `alert.dismissed`).
    pub dismissed: u64,
}

fn face_dto(f: SubjectFaceRow) -> SubjectFaceDto {
    SubjectFaceDto {
        crop_url: media_url(&f.crop),
        bbox: box_dto(&f.bbox),
        face_id: f.face_id,
        crop: f.crop,
        score: f.score,
        added_at: f.added_at,
    }
}

fn subject_dto(row: SubjectRow) -> SubjectDto {
    SubjectDto {
        id: row.id,
        name: row.name,
        category: row.category.as_str().into(),
        severity: row.severity.map(|s| s.as_str().into()),
        notes: row.notes,
        face_count: row.face_count,
        faces: row.faces.into_iter().map(face_dto).collect(),
        created_at: row.created_at,
        updated_at: row.updated_at,
        version: row.version,
    }
}

/// The subject as an enrolment described it, for an answer the read model is too slow for.
fn enrolled_dto(e: &SubjectEnrolled, version: u64) -> SubjectDto {
    let now = Utc::now();
    SubjectDto {
        id: e.subject_id.clone(),
        name: e.name.trim().to_string(),
        category: e.category.as_str().into(),
        severity: e.severity.map(|s| s.as_str().into()),
        notes: e.notes.clone(),
        face_count: e.faces.len() as u64,
        faces: e
            .faces
            .iter()
            .map(|f| SubjectFaceDto {
                face_id: f.face_id.clone(),
                crop: f.crop.clone(),
                crop_url: media_url(&f.crop),
                bbox: box_dto(&f.bbox),
                score: f.score,
                added_at: now,
            })
            .collect(),
        created_at: now,
        updated_at: now,
        version,
    }
}

fn alert_dto(row: AlertRow) -> AlertDto {
    AlertDto {
        similarity: similarity(row.distance),
        crop_url: media_url(&row.crop),
        frame: evidence_dto(row.frame),
        id: row.id,
        subject_id: row.subject_id,
        subject_name: row.subject_name,
        category: row.category.as_str().into(),
        camera_id: row.camera_id,
        track_id: row.track_id,
        distance: row.distance,
        second_distance: row.second_distance,
        crop: row.crop,
        at: row.at,
        recorded_at: row.recorded_at,
        acknowledged: row.acknowledged,
        acknowledged_at: row.acknowledged_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Multipart forms.

/// A subject to enrol (documentation of the multipart body).
#[derive(Debug, Multipart)]
#[allow(dead_code)] // only its schema is used; the body is parsed by `Upload`
struct EnrolForm {
    /// 1–5 pictures (JPEG or PNG), each under its own `files` part, each showing exactly one
    /// face.
    #[oai(validator(min_items = 1, max_items = 5))]
    files: Vec<UploadPart>,
    /// Name (1–200 characters, not blank).
    #[oai(validator(min_length = 1, max_length = 200))]
    name: String,
    /// `authorised` or `watchlist`.
    category: CategoryParam,
    /// Watch-listed subjects only: the severity of the incident a match raises (default
    /// `high`).
    severity: Option<SeverityParam>,
    /// Free text (at most 4000 characters).
    #[oai(validator(max_length = 4000))]
    notes: Option<String>,
}

/// A person of interest to enrol (documentation of the multipart body).
#[derive(Debug, Multipart)]
#[allow(dead_code)] // only its schema is used; the body is parsed by `Upload`
struct PoiForm {
    /// 1–5 pictures (JPEG or PNG), each under its own `files` part, each showing exactly one
    /// face.
    #[oai(validator(min_items = 1, max_items = 5))]
    files: Vec<UploadPart>,
    /// Name (1–200 characters, not blank).
    #[oai(validator(min_length = 1, max_length = 200))]
    name: String,
    /// The severity of the incident a match raises (default `high`).
    severity: Option<SeverityParam>,
    /// Free text (at most 4000 characters).
    #[oai(validator(max_length = 4000))]
    notes: Option<String>,
}

/// Faces to add to a subject (documentation of the multipart body).
#[derive(Debug, Multipart)]
#[allow(dead_code)] // only its schema is used; the body is parsed by `Upload`
struct FacesForm {
    /// 1–5 pictures (JPEG or PNG), each under its own `files` part, each showing exactly one
    /// face.
    #[oai(validator(min_items = 1, max_items = 5))]
    files: Vec<UploadPart>,
}

impl UploadForm for EnrolForm {
    const MAX_FILES: usize = MAX_FACES_PER_REQUEST;
    const FIELDS: &'static [&'static str] = &["name", "category", "severity", "notes"];
}

impl UploadForm for PoiForm {
    const MAX_FILES: usize = MAX_FACES_PER_REQUEST;
    const FIELDS: &'static [&'static str] = &["name", "severity", "notes"];
}

impl UploadForm for FacesForm {
    const MAX_FILES: usize = MAX_FACES_PER_REQUEST;
    const FIELDS: &'static [&'static str] = &[];
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// Response of an enrolment.
#[derive(ApiResponse)]
pub enum CreatedSubject {
    /// Enrolled.
    #[oai(status = 201)]
    Created(
        Json<SubjectDto>,
        /// Where the subject lives.
        #[oai(header = "Location")]
        String,
        /// Global position of the event this write appended.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of a change.
#[derive(ApiResponse)]
pub enum SubjectResponse {
    /// The subject.
    #[oai(status = 200)]
    Ok(
        Json<SubjectDto>,
        /// Global position the answer reflects.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of an erasure.
#[derive(ApiResponse)]
pub enum Erased {
    /// Erased.
    #[oai(status = 204)]
    NoContent(
        /// Global position of `subject.erased`.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of an acknowledgement.
#[derive(ApiResponse)]
pub enum AlertResponse {
    /// The alert.
    #[oai(status = 200)]
    Ok(
        Json<AlertDto>,
        /// Global position the answer reflects.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// 404 `ALERT_NOT_FOUND`.
fn alert_not_found(id: &str) -> ApiError {
    ApiError::not_found("ALERT_NOT_FOUND", format!("alert `{id}` does not exist"))
}

/// The subject as the read model shows it after a write at `position` (503
/// `READ_MODEL_LAGGING` when it has not caught up in time).
async fn visible_subject(
    app: &App,
    id: &str,
    position: Option<u64>,
) -> Result<(SubjectDto, u64), ApiError> {
    let seen = wait_visible(app, position).await;
    let caught_up = position.is_none_or(|p| seen >= p);
    match get_subject(app.pool(), id).await.map_err(ApiError::from)? {
        Some(row) if caught_up => Ok((subject_dto(row), position.unwrap_or(seen))),
        Some(_) | None if !caught_up => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "READ_MODEL_LAGGING",
            "the change is stored but the subject read model has not caught up yet; read it again",
            json!({"position": seen, "min_position": position}),
        )),
        _ => Err(subject_not_found(id).into()),
    }
}

fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 500"));
    }
    Ok(limit)
}

/// Reads and checks the text fields of an enrolment; `forced` is the category of `/poi`.
fn details(
    fields: &BTreeMap<String, String>,
    forced: Option<SubjectCategory>,
) -> Result<NewSubject, ApiError> {
    let name = fields.get("name").map(|n| n.trim()).unwrap_or_default();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(
            "name",
            format!("required: 1 to {MAX_NAME_CHARS} characters, not blank"),
        ));
    }
    let category = match forced {
        Some(category) => category,
        None => {
            let text = fields.get("category").ok_or_else(|| {
                ApiError::validation("category", "required: `authorised` or `watchlist`")
            })?;
            SubjectCategory::parse(text.trim())
                .ok_or_else(|| ApiError::validation("category", "`authorised` or `watchlist`"))?
        }
    };
    let severity = fields
        .get("severity")
        .map(|s| {
            Severity::parse(s.trim()).ok_or_else(|| {
                ApiError::validation("severity", "`low`, `medium`, `high` or `critical`")
            })
        })
        .transpose()?;
    if severity.is_some() && category == SubjectCategory::Authorised {
        return Err(ApiError::validation(
            "severity",
            "only watch-listed subjects have a severity",
        ));
    }
    let notes = fields.get("notes").cloned().unwrap_or_default();
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(ApiError::validation(
            "notes",
            format!("at most {MAX_NOTES_CHARS} characters"),
        ));
    }
    Ok(NewSubject {
        name: name.to_string(),
        category,
        severity,
        notes,
    })
}

async fn list(
    app: &App,
    category: Option<SubjectCategory>,
    order: Order,
    cursor: Option<String>,
    limit: Option<u32>,
) -> Result<Json<SubjectPage>, ApiError> {
    let limit = check_limit(limit)?;
    let (rows, next_cursor) = list_subjects(app.pool(), category, order, cursor.as_deref(), limit)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(SubjectPage {
        items: rows.into_iter().map(subject_dto).collect(),
        next_cursor,
    }))
}

/// The alert, when the key may see it (camera-restricted keys: their cameras' alerts only).
async fn visible_alert(app: &App, principal: &Principal, id: &str) -> Result<AlertRow, ApiError> {
    get_alert(app.pool(), id)
        .await
        .map_err(ApiError::from)?
        .filter(|row| principal.may_access_camera(&row.camera_id))
        .ok_or_else(|| alert_not_found(id))
}

fn alert_command_error(err: CommandError<vigil_actors::aggregates::alert::Never>) -> ApiError {
    super::error::command_error(err, "alert", |never| match never {})
}

/// Enrols a subject from an upload (`forced` is the category of `/poi`) and answers with it
/// as the read model shows it, or as recorded when the read model is slow.
async fn enrol(
    app: &App,
    principal: &Principal,
    upload: (Vec<(String, bytes::Bytes)>, BTreeMap<String, String>),
    forced: Option<SubjectCategory>,
    path: &str,
) -> Result<CreatedSubject, ApiError> {
    let (files, fields) = upload;
    let subject = details(&fields, forced)?;
    let (enrolled, done) = subjects::enrol(app, &request_meta(principal), subject, files).await?;
    let id = &enrolled.subject_id;
    let seen = wait_visible(app, done.position).await;
    let dto = match get_subject(app.pool(), id).await.map_err(ApiError::from)? {
        Some(row) => subject_dto(row),
        None => {
            // The read model is slow: answer with what was recorded.
            let mut dto = enrolled_dto(&enrolled, done.version);
            dto.severity = done.state.severity.map(|s| s.as_str().into());
            dto
        }
    };
    Ok(CreatedSubject::Created(
        Json(dto),
        format!("{path}/{id}"),
        done.position.unwrap_or(seen),
    ))
}

/// Erases subject `id` (only if watch-listed, with `only_watchlist`).
async fn erase(
    app: &App,
    principal: &Principal,
    id: &str,
    only_watchlist: bool,
) -> Result<Erased, ApiError> {
    let position = subjects::erase(app, &request_meta(principal), id, only_watchlist).await?;
    Ok(Erased::NoContent(position))
}

// ---------------------------------------------------------------------------------------------
// Endpoints.

/// Subject, person-of-interest and alert endpoints.
pub struct SubjectsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Subjects")]
impl SubjectsApi {
    /// Enrol a subject.
    ///
    /// Multipart: 1–5 pictures (JPEG or PNG) as `files` parts, `name`, `category`
    /// (`authorised` or `watchlist`), optional `severity` (watch list only; default `high`)
    /// and `notes`. Every picture is decoded and run through face detection first; each must
    /// show exactly one face. Then each face's crop goes to the media store and
    /// `subject.enrolled` records the faces with their 128-d descriptors. Any refusal stores
    /// nothing: 422 `INVALID_IMAGE` (not a JPEG or PNG) or `FACE_COUNT` (no face, or several)
    /// names the picture by index and file name in `details`; 422 `VALIDATION_FAILED` for a
    /// missing or bad field or a wrong number of files; 503 `MODELS_UNAVAILABLE` when the
    /// models cannot run.
    #[oai(path = "/subjects", method = "post", operation_id = "enroll_subject")]
    async fn enroll(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: Upload<EnrolForm>,
    ) -> Result<CreatedSubject, ApiError> {
        let principal = auth.require("enroll_subject")?;
        enrol(
            &app,
            principal,
            (body.files, body.fields),
            None,
            "/api/v1/subjects",
        )
        .await
    }

    /// List subjects.
    ///
    /// By id (enrolment order: ids are UUID v7), oldest first unless `order=desc`, each with
    /// its faces; `limit` per page (1–500, default 50); pass `next_cursor` back as `cursor`
    /// (with the same `order`). Filter: `category`.
    #[oai(path = "/subjects", method = "get", operation_id = "list_subjects")]
    async fn list(
        &self,
        app: Data<&App>,
        auth: Auth,
        category: Query<Option<CategoryParam>>,
        #[oai(validator(max_length = 1000))] cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        order: Query<Option<OrderParam>>,
    ) -> Result<Json<SubjectPage>, ApiError> {
        auth.require("list_subjects")?;
        let order = order_or(order.0, Order::Asc);
        list(&app, category.0.map(Into::into), order, cursor.0, limit.0).await
    }

    /// Get a subject.
    #[oai(path = "/subjects/:id", method = "get", operation_id = "get_subject")]
    async fn get(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
    ) -> Result<Json<SubjectDto>, ApiError> {
        auth.require("get_subject")?;
        let row = get_subject(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::from(subject_not_found(&id.0)))?;
        Ok(Json(subject_dto(row)))
    }

    /// Change a subject.
    ///
    /// `name`, `category`, `severity`, `notes`; only what changes is recorded
    /// (`subject.updated`). Moving to `authorised` clears the severity; a `severity` for an
    /// authorised subject is 422.
    #[oai(
        path = "/subjects/:id",
        method = "patch",
        operation_id = "update_subject"
    )]
    async fn update(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
        body: JsonBody<SubjectPatch>,
    ) -> Result<SubjectResponse, ApiError> {
        let principal = auth.require("update_subject")?;
        let body = body.0;
        if body.name.is_none()
            && body.category.is_none()
            && body.severity.is_none()
            && body.notes.is_none()
        {
            return Err(ApiError::validation(
                "body",
                "name at least one of name, category, severity, notes",
            ));
        }
        let command = SubjectCommand::Update(SubjectUpdated {
            subject_id: id.0.clone(),
            name: body.name,
            category: body.category.map(Into::into),
            severity: body.severity.map(Into::into),
            notes: body.notes,
        });
        let done = app
            .handler()
            .execute::<Subject>(&id.0, command, &request_meta(principal), None)
            .await
            .map_err(|e| ApiError::from(subject_error(e, &id.0)))?;
        let (dto, position) = visible_subject(&app, &id.0, done.position).await?;
        Ok(SubjectResponse::Ok(Json(dto), position))
    }

    /// Erase a subject.
    ///
    /// Records `subject.erased` (the stream keeps that record for audit), then deletes the
    /// subject's face crops from the media store; its faces, descriptors and alerts leave the
    /// read model. The id cannot be enrolled again.
    #[oai(
        path = "/subjects/:id",
        method = "delete",
        operation_id = "erase_subject"
    )]
    async fn erase(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
    ) -> Result<Erased, ApiError> {
        let principal = auth.require("erase_subject")?;
        erase(&app, principal, &id.0, false).await
    }

    /// Add faces to a subject.
    ///
    /// Multipart: 1–5 pictures as `files` parts, checked like an enrolment (each must show
    /// exactly one face; any refusal stores nothing); `subject.faces_added`. A subject holds
    /// at most 20 faces.
    #[oai(
        path = "/subjects/:id/faces",
        method = "post",
        operation_id = "add_subject_faces"
    )]
    async fn add_faces(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
        body: Upload<FacesForm>,
    ) -> Result<SubjectResponse, ApiError> {
        let principal = auth.require("add_subject_faces")?;
        let done = subjects::add_faces(&app, &request_meta(principal), &id.0, body.files).await?;
        let (dto, position) = visible_subject(&app, &id.0, done.position).await?;
        Ok(SubjectResponse::Ok(Json(dto), position))
    }

    /// Enrol a person of interest.
    ///
    /// A watch-listed subject: like `POST /api/v1/subjects` without `category` (a `category`
    /// part is refused).
    #[oai(path = "/poi", method = "post", operation_id = "enroll_poi")]
    async fn enroll_poi(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: Upload<PoiForm>,
    ) -> Result<CreatedSubject, ApiError> {
        let principal = auth.require("enroll_poi")?;
        enrol(
            &app,
            principal,
            (body.files, body.fields),
            Some(SubjectCategory::Watchlist),
            "/api/v1/poi",
        )
        .await
    }

    /// List persons of interest.
    ///
    /// Watch-listed subjects, newest enrolment first unless `order=asc` (as
    /// `GET /api/v1/subjects?category=watchlist&order=desc`: ids are UUID v7, in enrolment
    /// order); `limit` per page (1–500, default 50); pass `next_cursor` back as `cursor` (with
    /// the same `order`).
    #[oai(path = "/poi", method = "get", operation_id = "list_poi")]
    async fn list_poi(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 1000))] cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        order: Query<Option<OrderParam>>,
    ) -> Result<Json<SubjectPage>, ApiError> {
        auth.require("list_poi")?;
        let order = order_or(order.0, Order::Desc);
        list(
            &app,
            Some(SubjectCategory::Watchlist),
            order,
            cursor.0,
            limit.0,
        )
        .await
    }

    /// Get a person of interest.
    ///
    /// 404 `SUBJECT_NOT_FOUND` when the subject is not watch-listed.
    #[oai(path = "/poi/:id", method = "get", operation_id = "get_poi")]
    async fn get_poi(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
    ) -> Result<Json<SubjectDto>, ApiError> {
        auth.require("get_poi")?;
        let row = get_subject(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?
            .filter(|row| row.category == SubjectCategory::Watchlist)
            .ok_or_else(|| ApiError::from(poi_not_found(&id.0)))?;
        Ok(Json(subject_dto(row)))
    }

    /// Erase a person of interest.
    ///
    /// As `DELETE /api/v1/subjects/{id}`; 404 `SUBJECT_NOT_FOUND` when the subject is not
    /// watch-listed (nothing is erased).
    #[oai(path = "/poi/:id", method = "delete", operation_id = "erase_poi")]
    async fn erase_poi(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
    ) -> Result<Erased, ApiError> {
        let principal = auth.require("erase_poi")?;
        erase(&app, principal, &id.0, true).await
    }

    /// List alerts.
    ///
    /// Matches of enrolled subjects on cameras by match time (`at`, then id), newest first
    /// unless `order=asc`; `limit` per page (1–500, default 50); pass `next_cursor` back as
    /// `cursor` (with the same `order`). Filters: `subject_id`, `camera_id`,
    /// `category`, `acknowledged`, `from`/`to` (match time, `from` inclusive). Dismissed
    /// alerts and the alerts of erased subjects are gone. A camera-restricted key sees only its
    /// cameras' alerts.
    #[oai(path = "/alerts", method = "get", operation_id = "list_alerts")]
    #[allow(clippy::too_many_arguments)] // one argument per query parameter
    async fn list_alerts(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] subject_id: Query<Option<String>>,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] camera_id: Query<Option<String>>,
        category: Query<Option<CategoryParam>>,
        acknowledged: Query<Option<bool>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(max_length = 1000))] cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        order: Query<Option<OrderParam>>,
    ) -> Result<Json<AlertPage>, ApiError> {
        let principal = auth.require("list_alerts")?;
        let limit = check_limit(limit.0)?;
        if let (Some(from), Some(to)) = (from.0, to.0)
            && from >= to
        {
            return Err(ApiError::validation("to", "must lie after `from`"));
        }
        let query = AlertQuery {
            subject_id: subject_id.0,
            camera_id: camera_id.0,
            category: category.0.map(Into::into),
            acknowledged: acknowledged.0,
            from: from.0,
            to: to.0,
            only_cameras: only_cameras(principal),
            cursor: cursor.0,
            limit,
            order: Some(order_or(order.0, Order::Desc)),
        };
        let (rows, next_cursor) = list_alerts(app.pool(), &query)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(AlertPage {
            items: rows.into_iter().map(alert_dto).collect(),
            next_cursor,
        }))
    }

    /// Acknowledge an alert.
    ///
    /// Records `alert.acknowledged` once; acknowledging again records nothing. 404
    /// `ALERT_NOT_FOUND` for an unknown or dismissed alert.
    #[oai(
        path = "/alerts/:id/ack",
        method = "post",
        operation_id = "acknowledge_alert"
    )]
    async fn acknowledge(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 200))] id: Path<String>,
    ) -> Result<AlertResponse, ApiError> {
        let principal = auth.require("acknowledge_alert")?;
        visible_alert(&app, principal, &id.0).await?;
        let done = app
            .handler()
            .execute::<Alert>(
                &id.0,
                AlertCommand::Acknowledge(id.0.clone()),
                &request_meta(principal),
                None,
            )
            .await
            .map_err(alert_command_error)?;
        let seen = wait_visible(&app, done.position).await;
        let row = visible_alert(&app, principal, &id.0).await?;
        Ok(AlertResponse::Ok(
            Json(alert_dto(row)),
            done.position.unwrap_or(seen),
        ))
    }

    /// Dismiss alerts.
    ///
    /// Every alert the key may see, or with `before` those matched earlier, is dismissed
    /// (`alert.dismissed` on each) and leaves the list.
    #[oai(path = "/alerts", method = "delete", operation_id = "dismiss_alerts")]
    async fn dismiss(
        &self,
        app: Data<&App>,
        auth: Auth,
        before: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<DismissedAlerts>, ApiError> {
        let principal = auth.require("dismiss_alerts")?;
        let only = only_cameras(principal);
        let ids = alert_ids(app.pool(), before.0, only.as_deref())
            .await
            .map_err(ApiError::from)?;
        let meta = request_meta(principal);
        let mut dismissed = 0;
        let mut last = None;
        for id in ids {
            let done = app
                .handler()
                .execute::<Alert>(&id, AlertCommand::Dismiss(id.clone()), &meta, None)
                .await
                .map_err(alert_command_error)?;
            if done.position.is_some() {
                dismissed += 1;
                last = done.position;
            }
        }
        wait_visible(&app, last).await;
        Ok(Json(DismissedAlerts { dismissed }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_is_clamped() {
        assert_eq!(similarity(0.0), 1.0);
        assert_eq!(similarity(0.5), 0.75);
        assert_eq!(similarity(2.5), 0.0);
        assert_eq!(similarity(-1.0), 1.0);
    }

    #[test]
    fn details_are_checked_before_the_models_run() {
        let fields = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ok = details(
            &fields(&[
                ("name", " Eileen "),
                ("category", "watchlist"),
                ("severity", "low"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(ok.name, "Eileen");
        assert_eq!(ok.severity, Some(Severity::Low));
        let forced = details(
            &fields(&[("name", "Bob")]),
            Some(SubjectCategory::Watchlist),
        )
        .unwrap();
        assert_eq!(forced.category, SubjectCategory::Watchlist);
        let field_of = |e: ApiError| match e {
            ApiError::Unprocessable(body) => body.0.error.details["field"].clone(),
            other => panic!("{other:?}"),
        };
        for (bad, field) in [
            (fields(&[("category", "watchlist")]), "name"),
            (fields(&[("name", "  "), ("category", "watchlist")]), "name"),
            (fields(&[("name", "Bob")]), "category"),
            (
                fields(&[("name", "Bob"), ("category", "friend")]),
                "category",
            ),
            (
                fields(&[
                    ("name", "Bob"),
                    ("category", "authorised"),
                    ("severity", "low"),
                ]),
                "severity",
            ),
            (
                fields(&[
                    ("name", "Bob"),
                    ("category", "watchlist"),
                    ("severity", "dire"),
                ]),
                "severity",
            ),
        ] {
            assert_eq!(field_of(details(&bad, None).err().unwrap()), field);
        }
        let long = "n".repeat(MAX_NOTES_CHARS + 1);
        let e = details(
            &fields(&[("name", "Bob"), ("category", "watchlist"), ("notes", &long)]),
            None,
        );
        assert_eq!(field_of(e.err().unwrap()), "notes");
    }
}
