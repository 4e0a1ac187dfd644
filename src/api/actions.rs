//! `/api/v1/actions`, `/api/v1/dlq` and `/api/v1/webhooks/alerts`: response actions, the
//! dead-letter queue of failed deliveries, and the inbound Alertmanager webhook.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use vigil_actors::aggregates::action::{Action, ActionCommand, ActionError};
use vigil_projections::actions::{DlqRow, dlq_ids, get_action, get_dlq, list_dlq};
use vigil_schemas::events::{
    ActionKind, ActionRequested, IncidentKind, IncidentOpened, IncidentSubjects, Severity,
};

use super::ApiTags;
use super::auth::{Auth, request_meta, visible_incident, visible_to};
use super::body::{BodyLimits, JsonBody};
use super::dto::{ActionDto, action_dto};
use super::error::{ApiError, incident_error};
use super::listing::{OrderParam, order_or};
use crate::app::App;
use crate::service::actions::{
    RequestFailure, TargetError, open_or_extend, request_action, targets_for,
};
use crate::service::visibility::wait_visible;

/// A response action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename = "ActionKind", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ActionParam {
    /// Tell the security team.
    AlertSecurity,
    /// Tell the authorities.
    AlertAuthorities,
    /// Lock doors (through the door system's webhook).
    LockDoors,
    /// Sound an alarm (through the alarm system's webhook).
    SoundAlarm,
    /// Keep the evidence (through an archive's webhook).
    RecordEvidence,
    /// Ask for closer monitoring (through a VMS's webhook).
    IncreaseMonitoring,
    /// Call the webhook target named in `target`.
    Webhook,
}

impl From<ActionParam> for ActionKind {
    fn from(a: ActionParam) -> Self {
        match a {
            ActionParam::AlertSecurity => Self::AlertSecurity,
            ActionParam::AlertAuthorities => Self::AlertAuthorities,
            ActionParam::LockDoors => Self::LockDoors,
            ActionParam::SoundAlarm => Self::SoundAlarm,
            ActionParam::RecordEvidence => Self::RecordEvidence,
            ActionParam::IncreaseMonitoring => Self::IncreaseMonitoring,
            ActionParam::Webhook => Self::Webhook,
        }
    }
}

/// An action to take.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ExecuteAction {
    /// What to do.
    pub action: ActionParam,
    /// The incident it responds to (its camera is the action's camera).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub incident_id: Option<String>,
    /// The camera it is about (when not given through the incident).
    #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub camera_id: Option<String>,
    /// One configured webhook target (required for `webhook`; otherwise every target that
    /// receives the action).
    #[oai(validator(pattern = r"^[a-z0-9_-]{1,64}$"))]
    pub target: Option<String>,
    /// Free text for the receiver.
    #[oai(validator(max_length = 2000))]
    pub notes: Option<String>,
}

impl BodyLimits for ExecuteAction {
    const MAX_BYTES: usize = 16 * 1024;
    const CHECK_DECLARED: bool = true;
}

/// Response of an action request.
#[derive(ApiResponse)]
pub enum ActionAccepted {
    /// Requested; delivery runs in the background (see `GET /api/v1/actions/{id}`).
    #[oai(status = 202)]
    Accepted(
        Json<ActionDto>,
        /// Where to follow it.
        #[oai(header = "Location")]
        String,
        /// Global position of the request.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DlqEntry {
    /// `{action_id}:{target}`.
    pub id: String,
    /// The action.
    pub action_id: String,
    /// The target it failed to reach.
    pub target: String,
    /// What the action does.
    pub action: String,
    /// The incident.
    pub incident_id: Option<String>,
    /// The camera.
    pub camera_id: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When it was dead-lettered.
    pub dead_at: DateTime<Utc>,
    /// When the action was asked for.
    pub requested_at: DateTime<Utc>,
}

fn dlq_dto(r: DlqRow) -> DlqEntry {
    DlqEntry {
        action: r.action.as_str().into(),
        id: r.id,
        action_id: r.action_id,
        target: r.target,
        incident_id: r.incident_id,
        camera_id: r.camera_id,
        attempts: r.attempts,
        last_error: r.last_error,
        dead_at: r.dead_at,
        requested_at: r.requested_at,
    }
}

/// A page of the dead-letter queue.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DlqPage {
    /// In the order asked for (oldest first by default).
    pub items: Vec<DlqEntry>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// Result of a purge.
#[derive(Debug, Clone, Object)]
pub struct DlqPurged {
    /// Deliveries discarded (each recorded as `action.discarded`).
    pub discarded: u64,
}

/// Response of a requeue.
#[derive(ApiResponse)]
pub enum Requeued {
    /// Back in delivery.
    #[oai(status = 202)]
    Accepted(
        Json<DlqEntry>,
        /// Global position of `action.requeued`.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// One alert of an Alertmanager webhook.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct AlertmanagerAlert {
    /// `firing` or `resolved`.
    #[oai(validator(max_length = 32))]
    pub status: String,
    /// Labels (`alertname`, `severity`, `camera_id`, …).
    #[oai(default)]
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`, …).
    #[oai(default)]
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    #[serde(rename = "startsAt")]
    #[oai(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    /// When it ended (`0001-01-01T00:00:00Z` while firing).
    #[serde(rename = "endsAt", default)]
    #[oai(rename = "endsAt")]
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the source.
    #[serde(rename = "generatorURL", default)]
    #[oai(rename = "generatorURL", validator(max_length = 2000))]
    pub generator_url: Option<String>,
    /// Alertmanager's identity of the alert.
    #[serde(default)]
    #[oai(validator(max_length = 200))]
    pub fingerprint: Option<String>,
}

/// Alertmanager's webhook payload (version 4); members Vigil does not use are accepted and
/// ignored.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct AlertmanagerPayload {
    /// `4`.
    #[serde(default)]
    #[oai(validator(max_length = 16))]
    pub version: Option<String>,
    /// `firing` or `resolved`.
    #[serde(default)]
    #[oai(validator(max_length = 32))]
    pub status: Option<String>,
    /// The receiver's name.
    #[serde(default)]
    #[oai(validator(max_length = 200))]
    pub receiver: Option<String>,
    /// The alerts.
    #[oai(validator(max_items = 1000))]
    pub alerts: Vec<AlertmanagerAlert>,
}

impl BodyLimits for AlertmanagerPayload {
    const MAX_BYTES: usize = 1 << 20;
    const CHECK_DECLARED: bool = true;
}

/// Response of the Alertmanager webhook.
#[derive(ApiResponse)]
pub enum AlertsResponse {
    /// What the alerts did.
    #[oai(status = 200)]
    Ok(
        Json<AlertsReceived>,
        /// Global position of the last event appended, else the position the read models
        /// had applied; the incidents in the answer are readable at once.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// What an Alertmanager webhook did.
#[derive(Debug, Clone, Object)]
pub struct AlertsReceived {
    /// Incidents opened.
    pub opened: Vec<String>,
    /// Incidents a repeat of their alert extended.
    pub extended: Vec<String>,
    /// Resolved alerts (they change nothing; operators resolve incidents).
    pub resolved: u32,
}

fn action_error(err: RequestFailure, id: &str) -> ApiError {
    match err {
        RequestFailure::Action(e) => super::error::command_error(e, "action", |e| match e {
            ActionError::AlreadyExists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "ACTION_EXISTS",
                format!("action `{id}` already exists"),
                json!({}),
            ),
            ActionError::NotFound(a, t) | ActionError::NotDead(a, t) => dlq_not_found(&a, &t),
            ActionError::Invalid(reason) => ApiError::validation("action", reason),
        }),
        RequestFailure::Incident(e) => incident_error(e, id),
    }
}

fn dlq_not_found(action_id: &str, target: &str) -> ApiError {
    ApiError::not_found(
        "DLQ_ENTRY_NOT_FOUND",
        format!(
            "the delivery of action `{action_id}` to `{target}` is not in the dead-letter queue"
        ),
    )
}

fn severity_of_label(label: Option<&String>) -> Severity {
    match label.map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("critical" | "page" | "emergency") => Severity::Critical,
        Some("high" | "error") => Severity::High,
        Some("info" | "low" | "none") => Severity::Low,
        _ => Severity::Medium,
    }
}

/// Action, dead-letter queue and inbound webhook endpoints.
pub struct ActionsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Incidents")]
impl ActionsApi {
    /// Take a response action.
    ///
    /// Records `action.requested` (and `incident.action_taken` on its incident) and answers
    /// 202; the dispatcher then delivers it to every configured webhook target that receives
    /// the action (HMAC-SHA256 signed, retried with exponential backoff and jitter) and
    /// records each delivery's outcome. After a target's last retry the delivery goes to the
    /// dead-letter queue (`GET /api/v1/dlq`). 422 `ACTION_NOT_CONFIGURED` when no target
    /// receives it.
    #[oai(
        path = "/actions/execute",
        method = "post",
        operation_id = "execute_action"
    )]
    async fn execute(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<ExecuteAction>,
    ) -> Result<ActionAccepted, ApiError> {
        let principal = auth.require("execute_action")?;
        let body = body.0;
        let mut camera_id = body.camera_id.clone();
        if let Some(id) = &body.incident_id {
            let incident = visible_incident(&app, principal, id).await?;
            if let (Some(given), Some(own)) = (&camera_id, &incident.camera_id)
                && given != own
            {
                return Err(ApiError::validation(
                    "camera_id",
                    format!("the incident is on camera `{own}`, not `{given}`"),
                ));
            }
            camera_id = camera_id.or(incident.camera_id);
        } else if principal.is_camera_restricted() && camera_id.is_none() {
            return Err(ApiError::validation(
                "camera_id",
                "a key restricted to some cameras must name the camera or incident",
            ));
        }
        if let Some(camera) = &camera_id {
            visible_to(principal, camera)?;
        }
        let action: ActionKind = body.action.into();
        let targets = targets_for(&app.config().webhooks, action, body.target.as_deref()).map_err(
            |e| match e {
                TargetError::NotConfigured(_) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ACTION_NOT_CONFIGURED",
                    e.to_string(),
                    json!({"field": "action", "action": action.as_str()}),
                ),
                TargetError::TargetMissing
                | TargetError::UnknownTarget(_)
                | TargetError::NotReceived { .. } => ApiError::validation("target", e.to_string()),
            },
        )?;
        let action_id = uuid::Uuid::now_v7().to_string();
        let request = ActionRequested {
            action_id: action_id.clone(),
            action,
            incident_id: body.incident_id.clone(),
            camera_id,
            notes: body.notes.unwrap_or_default(),
            targets,
            automatic: false,
        };
        let position = request_action(app.handler(), request.clone(), &request_meta(principal))
            .await
            .map_err(|e| action_error(e, body.incident_id.as_deref().unwrap_or_default()))?;
        wait_visible(&app, Some(position)).await;
        let dto = get_action(app.pool(), &action_id)
            .await
            .map_err(ApiError::from)?
            .map(action_dto);
        let dto = dto.unwrap_or_else(|| ActionDto {
            action_id: action_id.clone(),
            action: action.as_str().into(),
            incident_id: request.incident_id,
            camera_id: request.camera_id,
            notes: request.notes,
            automatic: false,
            requested_by: principal.actor.clone(),
            requested_at: Utc::now(),
            deliveries: vec![],
        });
        Ok(ActionAccepted::Accepted(
            Json(dto),
            format!("/api/v1/actions/{action_id}"),
            position,
        ))
    }

    /// Get an action with its deliveries.
    #[oai(path = "/actions/:id", method = "get", operation_id = "get_action")]
    async fn get(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 300))] id: Path<String>,
    ) -> Result<Json<ActionDto>, ApiError> {
        let principal = auth.require("get_action")?;
        let not_found = || {
            ApiError::not_found(
                "ACTION_NOT_FOUND",
                format!("action `{}` does not exist", id.0),
            )
        };
        let row = get_action(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(not_found)?;
        if principal.is_camera_restricted()
            && !row
                .camera_id
                .as_deref()
                .is_some_and(|c| principal.may_access_camera(c))
        {
            return Err(not_found());
        }
        Ok(Json(action_dto(row)))
    }

    /// List the dead-letter queue.
    ///
    /// Deliveries whose every attempt failed, by when they were dead-lettered, oldest first
    /// unless `order=desc`; `limit` per page (1–500, default 50); pass `next_cursor` back as
    /// `cursor` (with the same `order`).
    #[oai(path = "/dlq", method = "get", operation_id = "list_dlq")]
    async fn list_dlq(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
        order: Query<Option<OrderParam>>,
    ) -> Result<Json<DlqPage>, ApiError> {
        auth.require("list_dlq")?;
        let order = order_or(order.0, vigil_projections::Order::Asc);
        let (rows, next_cursor) = list_dlq(
            app.pool(),
            order,
            cursor.0.as_deref(),
            limit.0.unwrap_or(50),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(DlqPage {
            items: rows.into_iter().map(dlq_dto).collect(),
            next_cursor,
        }))
    }

    /// Requeue a dead-lettered delivery.
    ///
    /// Records `action.requeued`; the dispatcher delivers it again with a fresh round of
    /// retries. 404 `DLQ_ENTRY_NOT_FOUND` when the delivery is not in the queue.
    #[oai(
        path = "/dlq/:id/requeue",
        method = "post",
        operation_id = "requeue_dlq"
    )]
    async fn requeue(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(max_length = 400))] id: Path<String>,
    ) -> Result<Requeued, ApiError> {
        let principal = auth.require("requeue_dlq")?;
        let entry = get_dlq(app.pool(), &id.0)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "DLQ_ENTRY_NOT_FOUND",
                    format!("`{}` is not in the dead-letter queue", id.0),
                )
            })?;
        let command = ActionCommand::Requeue {
            action_id: entry.action_id.clone(),
            target: entry.target.clone(),
        };
        let done = app
            .handler()
            .execute::<Action>(&entry.action_id, command, &request_meta(principal), None)
            .await
            .map_err(|e| action_error(RequestFailure::Action(e), ""))?;
        let seen = wait_visible(&app, done.position).await;
        Ok(Requeued::Accepted(
            Json(dlq_dto(entry)),
            done.position.unwrap_or(seen),
        ))
    }

    /// Empty the dead-letter queue.
    ///
    /// Every dead-lettered delivery is discarded (`action.discarded`), undelivered.
    #[oai(path = "/dlq", method = "delete", operation_id = "purge_dlq")]
    async fn purge(&self, app: Data<&App>, auth: Auth) -> Result<Json<DlqPurged>, ApiError> {
        let principal = auth.require("purge_dlq")?;
        let meta = request_meta(principal);
        let mut discarded = 0;
        let mut last = None;
        for (action_id, target) in dlq_ids(app.pool()).await.map_err(ApiError::from)? {
            let command = ActionCommand::Discard {
                action_id: action_id.clone(),
                target,
            };
            match app
                .handler()
                .execute::<Action>(&action_id, command, &meta, None)
                .await
            {
                Ok(done) => {
                    discarded += 1;
                    last = done.position.or(last);
                }
                // Requeued or discarded meanwhile.
                Err(vigil_actors::CommandError::Domain(_)) => {}
                Err(e) => return Err(action_error(RequestFailure::Action(e), "")),
            }
        }
        wait_visible(&app, last).await;
        Ok(Json(DlqPurged { discarded }))
    }

    /// Receive Alertmanager alerts.
    ///
    /// Point an Alertmanager `webhook_config` here (with a key holding `write:incidents` as
    /// its bearer token). Each firing alert opens an `external` incident: severity from the
    /// `severity` label (`critical`, `high`/`error`, `warning` → medium, `info` → low), the
    /// camera from a `camera_id` label, reasoning from `summary` or `description`. A repeat
    /// of the same alert (fingerprint and start) extends its incident.
    #[oai(
        path = "/webhooks/alerts",
        method = "post",
        operation_id = "alertmanager_webhook"
    )]
    async fn alerts(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<AlertmanagerPayload>,
    ) -> Result<AlertsResponse, ApiError> {
        let principal = auth.require("alertmanager_webhook")?;
        let meta = request_meta(principal);
        let mut received = AlertsReceived {
            opened: vec![],
            extended: vec![],
            resolved: 0,
        };
        let mut appended = None;
        for (i, alert) in body.0.alerts.into_iter().enumerate() {
            match alert.status.as_str() {
                "firing" => {}
                "resolved" => {
                    received.resolved += 1;
                    continue;
                }
                other => {
                    return Err(ApiError::validation(
                        format!("alerts[{i}].status"),
                        format!("must be `firing` or `resolved`, not `{other}`"),
                    ));
                }
            }
            let camera_id = alert.labels.get("camera_id").cloned();
            if let Some(camera) = &camera_id {
                visible_to(principal, camera)?;
            } else if principal.is_camera_restricted() {
                return Err(ApiError::validation(
                    format!("alerts[{i}].labels.camera_id"),
                    "a key restricted to some cameras may only raise alerts for its cameras",
                ));
            }
            let fingerprint = alert.fingerprint.clone().unwrap_or_else(|| {
                let labels = serde_json::to_string(&alert.labels).expect("labels serialise");
                hex::encode(&Sha256::digest(labels.as_bytes())[..8])
            });
            let name = alert
                .labels
                .get("alertname")
                .cloned()
                .unwrap_or_else(|| "alert".into());
            let text = alert
                .annotations
                .get("summary")
                .or_else(|| alert.annotations.get("description"))
                .cloned()
                .unwrap_or_default();
            let id = format!(
                "am-{}-{}",
                fingerprint
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(64)
                    .collect::<String>(),
                alert.starts_at.timestamp()
            );
            let reasoning = format!(
                "Alertmanager alert `{name}` firing since {}{}",
                alert
                    .starts_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            );
            let opened = IncidentOpened {
                incident_id: id.clone(),
                kind: IncidentKind::External,
                severity: severity_of_label(alert.labels.get("severity")),
                confidence: 1.0,
                camera_id,
                zone: alert.labels.get("zone").cloned(),
                reasoning: reasoning.chars().take(4000).collect(),
                subjects: IncidentSubjects::default(),
                recommended_actions: vec![],
                evidence: vec![],
                dedup_key: format!("alertmanager:{fingerprint}"),
                source: "alertmanager".into(),
                observed_at: alert.starts_at,
            };
            let (id, opened_now, position) = open_or_extend(app.handler(), opened, &meta)
                .await
                .map_err(|e| incident_error(e, &id))?;
            appended = appended.max(position);
            if opened_now {
                received.opened.push(id);
            } else {
                received.extended.push(id);
            }
        }
        let seen = wait_visible(&app, appended).await;
        Ok(AlertsResponse::Ok(Json(received), appended.unwrap_or(seen)))
    }
}
