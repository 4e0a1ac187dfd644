//! Authentication and authorisation of requests.
//!
//! A key arrives as `X-API-Key: …` or `Authorization: Bearer …`. It is checked against the
//! configured admin key and the key streams of the event store, then counted against the key's
//! per-minute limit for the route's tier. Each operation needs one scope, declared in
//! [`OPERATION_SCOPES`]; the OpenAPI document shows it as `x-vigil-scope`, and handlers enforce
//! it through [`Auth::require`] from the same table.

use std::sync::{Arc, Mutex};

use poem::Request;
use poem::http::StatusCode;
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};
use serde_json::json;

use vigil_projections::cameras::{CameraRow, get_camera};
use vigil_projections::incidents::{IncidentRow, get_incident};
use vigil_schemas::EventMeta;

use super::error::{ApiError, camera_not_found, incident_not_found};
use crate::access::{RateState, Tier};
use crate::app::{App, KeyRefusal, Principal};

/// The scope each secured operation needs, by operation id.
pub const OPERATION_SCOPES: &[(&str, &str)] = &[
    ("whoami", ANY_KEY),
    ("create_camera", "write:cameras"),
    ("list_cameras", "read:cameras"),
    ("get_camera", "read:cameras"),
    ("update_camera", "write:cameras"),
    ("delete_camera", "write:cameras"),
    ("start_camera", "write:cameras"),
    ("stop_camera", "write:cameras"),
    ("test_camera", "write:cameras"),
    ("camera_snapshot", "read:cameras"),
    ("list_recordings", "read:cameras"),
    ("get_media", "read:cameras"),
    ("sign_media", "read:cameras"),
    ("push_frames", "ingest"),
    ("analyze_frame", "ingest"),
    ("audit_stream", "read:audit"),
    ("audit_events", "read:audit"),
    ("audit_export", "read:audit"),
    ("list_projections", "admin"),
    ("get_gpu", "admin"),
    ("list_nodes", "admin"),
    ("create_api_key", "admin"),
    ("list_api_keys", "admin"),
    ("get_api_key", "admin"),
    ("update_api_key", "admin"),
    ("delete_api_key", "admin"),
    ("api_key_usage", "admin"),
    ("list_incidents", "read:incidents"),
    ("incident_stats", "read:incidents"),
    ("search_incidents", "read:incidents"),
    ("export_incidents", "read:incidents"),
    ("cleanup_incidents", "admin"),
    ("get_incident", "read:incidents"),
    ("update_incident", "write:incidents"),
    ("reanalyse_incident", "write:incidents"),
    ("list_rules", "read:incidents"),
    ("get_calibration", "read:incidents"),
    ("put_calibration", "admin"),
    ("patch_calibration", "admin"),
    ("reset_calibration", "admin"),
    ("calibration_defaults", "read:incidents"),
    ("execute_action", "write:incidents"),
    ("get_action", "read:incidents"),
    ("list_dlq", "admin"),
    ("requeue_dlq", "admin"),
    ("purge_dlq", "admin"),
    ("alertmanager_webhook", "write:incidents"),
    ("enroll_subject", "write:subjects"),
    ("list_subjects", "read:subjects"),
    ("get_subject", "read:subjects"),
    ("update_subject", "write:subjects"),
    ("erase_subject", "write:subjects"),
    ("add_subject_faces", "write:subjects"),
    ("enroll_poi", "write:subjects"),
    ("list_poi", "read:subjects"),
    ("get_poi", "read:subjects"),
    ("erase_poi", "write:subjects"),
    ("search_face", "search"),
    ("list_alerts", "read:incidents"),
    ("acknowledge_alert", "write:incidents"),
    ("dismiss_alerts", "write:incidents"),
];

/// The scope a request needs, from its method and path (routes as the OpenAPI document has
/// them, so the check runs in the extractor, before the body is read, from the same table the
/// document shows).
pub fn required_scope(method: &str, path: &str) -> Option<&'static str> {
    super::documented_route(method, path).and_then(|route| route.scope)
}

/// The "scope" of an operation that every valid key may call (`GET /api/v1/me`).
pub const ANY_KEY: &str = "any";

/// Whether `principal` may call an operation that needs `scope`.
fn holds(principal: &Principal, scope: &str) -> bool {
    scope == ANY_KEY || principal.has_scope(scope)
}

fn forbidden(scope: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        format!("this key lacks the scope `{scope}`"),
        json!({"required_scope": scope}),
    )
}

/// The scope operation `operation_id` needs.
pub fn scope_of(operation_id: &str) -> Option<&'static str> {
    OPERATION_SCOPES
        .iter()
        .find(|(op, _)| *op == operation_id)
        .map(|(_, scope)| *scope)
}

/// What authentication learned about the current request, for the response middleware.
#[derive(Debug, Default)]
pub struct RequestAccess {
    /// The key that made the request.
    pub key_id: Mutex<Option<String>>,
    /// Its rate-limit state for this request.
    pub rate: Mutex<Option<RateState>>,
}

tokio::task_local! {
    /// Access facts of the request being served, set by the request middleware.
    pub static ACCESS: Arc<RequestAccess>;
}

/// `X-API-Key` header (documentation of the scheme).
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header"
)]
#[allow(dead_code)]
struct ApiKeyScheme(poem_openapi::auth::ApiKey);

/// `Authorization: Bearer` header (documentation of the scheme).
#[derive(SecurityScheme)]
#[oai(rename = "Bearer", ty = "bearer")]
#[allow(dead_code)]
struct BearerScheme(poem_openapi::auth::Bearer);

/// An authenticated, rate-limited request.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl Auth {
    /// The principal, if it holds the scope `operation_id` needs; 403 otherwise.
    pub fn require(&self, operation_id: &str) -> Result<&Principal, ApiError> {
        let scope = scope_of(operation_id).ok_or_else(|| {
            ApiError::internal(format!("operation `{operation_id}` declares no scope"))
        })?;
        if holds(&self.0, scope) {
            Ok(&self.0)
        } else {
            Err(forbidden(scope))
        }
    }
}

fn presented_key(req: &Request) -> Option<String> {
    if let Some(key) = req.header("x-api-key") {
        return Some(key.trim().to_string());
    }
    // Browsers cannot set headers on a WebSocket handshake: `/ws` also takes the key as a
    // subprotocol (`vigil.key.{base64url}`, beside `vigil`), which keeps it out of URLs and
    // logs, or as `?api_key=`.
    if req.uri().path().starts_with("/ws") {
        if let Some(key) = req
            .header("sec-websocket-protocol")
            .and_then(key_of_subprotocols)
        {
            return Some(key);
        }
        if let Some(query) = req.uri().query()
            && let Some(key) = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("api_key="))
        {
            return Some(key.to_string());
        }
    }
    let value = req.header("authorization")?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The subprotocol that carries a key on a WebSocket handshake, before its base64url form.
pub const KEY_SUBPROTOCOL: &str = "vigil.key.";

/// The key in a `Sec-WebSocket-Protocol` list (`vigil, vigil.key.{base64url of the key}`).
fn key_of_subprotocols(list: &str) -> Option<String> {
    use base64::Engine;
    let encoded = list
        .split(',')
        .find_map(|p| p.trim().strip_prefix(KEY_SUBPROTOCOL))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn too_many(code: &str, message: String, retry_after: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        message,
        json!({"retry_after_secs": retry_after}),
    )
}

/// 429 for an address over its failed-attempt allowance, with `Retry-After`.
fn blocked_address(wait: u64) -> ApiError {
    remember(|a| {
        *a.rate.lock().expect("access lock") = Some(RateState {
            limit: 0,
            remaining: 0,
            reset_secs: wait,
            retry_after_secs: Some(wait),
        })
    });
    too_many(
        "TOO_MANY_FAILED_ATTEMPTS",
        format!("too many failed authentications from this address; retry in {wait} s"),
        wait,
    )
}

fn remember(f: impl FnOnce(&RequestAccess)) {
    let _ = ACCESS.try_with(|access| f(access));
}

/// Authenticates, rate-limits and authorises a request (scope from [`required_scope`]).
pub async fn authenticate(req: &Request) -> Result<Principal, ApiError> {
    let app = req
        .data::<App>()
        .ok_or_else(|| ApiError::internal("request without app data"))?;
    let Some(presented) = presented_key(req).filter(|k| !k.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "a key is required: send X-API-Key or Authorization: Bearer",
            json!({}),
        ));
    };
    let ip = req.remote_addr().as_socket_addr().map(|a| a.ip());
    if let Some(wait) = ip.and_then(|ip| app.failures().blocked(ip)) {
        return Err(blocked_address(wait));
    }
    let principal = match app.resolve_key(&presented).await? {
        Ok(principal) => principal,
        Err(refusal) => {
            if let Some(wait) = ip.and_then(|ip| app.failures().failed(ip)) {
                return Err(blocked_address(wait));
            }
            let (code, message) = match refusal {
                KeyRefusal::Invalid => ("UNAUTHORIZED", "the key is not valid"),
                KeyRefusal::Disabled => ("KEY_DISABLED", "the key is disabled"),
                KeyRefusal::Expired => ("KEY_EXPIRED", "the key has expired"),
            };
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                code,
                message,
                json!({}),
            ));
        }
    };
    let tier = Tier::of(req.method().as_str(), req.uri().path());
    let state = app.limiters().check(
        &principal.key_id,
        tier,
        tier.limit_in(&principal.rate_limits),
    );
    remember(|a| {
        *a.key_id.lock().expect("access lock") = Some(principal.key_id.clone());
        *a.rate.lock().expect("access lock") = Some(state);
    });
    if let Some(wait) = state.retry_after_secs {
        return Err(too_many(
            "RATE_LIMITED",
            format!(
                "rate limit of {} requests per minute reached; retry in {wait} s",
                state.limit
            ),
            wait,
        ));
    }
    if let Some(scope) = required_scope(req.method().as_str(), req.uri().path())
        && !holds(&principal, scope)
    {
        return Err(forbidden(scope));
    }
    Ok(principal)
}

impl<'a> ApiExtractor<'a> for Auth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <ApiKeyScheme as ApiExtractor>::register(registry);
        <BearerScheme as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["ApiKey", "Bearer"]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Auth(authenticate(req).await?))
    }
}

// ---------------------------------------------------------------------------------------------
// Who a request acts as, and what its key may see.

/// Event metadata for a request: its id as correlation id, the key as actor.
pub fn request_meta(principal: &Principal) -> EventMeta {
    let correlation_id = uuid::Uuid::parse_str(&super::error::current_request_id())
        .unwrap_or_else(|_| uuid::Uuid::now_v7());
    EventMeta {
        correlation_id,
        causation_id: None,
        actor: principal.actor.clone(),
    }
}

/// A camera-restricted key sees other cameras as missing (404), not as forbidden.
pub fn visible_to(principal: &Principal, id: &str) -> Result<(), ApiError> {
    if principal.may_access_camera(id) {
        Ok(())
    } else {
        Err(camera_not_found(id))
    }
}

/// Camera `id` as the read model holds it, when the key may see it (404 otherwise).
pub async fn visible_row(
    app: &App,
    principal: &Principal,
    id: &str,
) -> Result<CameraRow, ApiError> {
    visible_to(principal, id)?;
    get_camera(app.pool(), id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| camera_not_found(id))
}

/// The cameras a key is restricted to, `None` for an unrestricted key.
pub fn only_cameras(principal: &Principal) -> Option<Vec<String>> {
    principal
        .is_camera_restricted()
        .then(|| principal.camera_ids.clone())
}

/// Whether the key may see the incident (restricted keys: only their cameras' incidents).
fn may_see(principal: &Principal, row: &IncidentRow) -> bool {
    !principal.is_camera_restricted()
        || row
            .camera_id
            .as_deref()
            .is_some_and(|c| principal.may_access_camera(c))
}

/// The incident, when the key may see it (404 otherwise).
pub async fn visible_incident(
    app: &App,
    principal: &Principal,
    id: &str,
) -> Result<IncidentRow, ApiError> {
    get_incident(app.pool(), id)
        .await
        .map_err(ApiError::from)?
        .filter(|row| may_see(principal, row))
        .ok_or_else(|| incident_not_found(id))
}

#[cfg(test)]
mod tests {
    use super::key_of_subprotocols;

    #[test]
    fn a_key_travels_as_a_base64url_subprotocol() {
        // "vgl_k1_s3cret" in base64url, without and with padding.
        assert_eq!(
            key_of_subprotocols("vigil, vigil.key.dmdsX2sxX3MzY3JldA").as_deref(),
            Some("vgl_k1_s3cret")
        );
        assert_eq!(
            key_of_subprotocols("vigil.key.dmdsX2sxX3MzY3JldA==,vigil").as_deref(),
            Some("vgl_k1_s3cret")
        );
        assert_eq!(key_of_subprotocols("vigil"), None);
        assert_eq!(key_of_subprotocols("vigil, vigil.key.%%%"), None);
    }
}
