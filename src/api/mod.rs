//! The HTTP edge: poem + poem-openapi.
//!
//! Every response carries `X-Request-Id` and security headers; every 4xx/5xx has the body of
//! [`error::ErrorBody`]; authenticated responses carry `X-RateLimit-*`. `/openapi.json` is the
//! OpenAPI 3 document (each operation's scope as `x-vigil-scope`), `/docs` Swagger UI,
//! `/redoc` ReDoc, `/` the operator console ([`console`]).
//!
//! Endpoint files (one `…Api` each) hold DTOs, request parsing and the mapping of results
//! and errors onto HTTP; the use cases they call live in [`crate::service`]. They import only
//! the shared support modules ([`auth`], [`body`], [`dto`], [`error`], [`listing`]), never
//! each other, and name no table (`scripts/check-rooms` checks both).

pub mod actions;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod body;
pub mod calibration;
pub mod cameras;
pub mod console;
pub mod dto;
pub mod error;
pub mod incidents;
pub mod ingest;
pub mod listing;
pub mod media;
pub mod search;
pub mod subjects;
pub mod system;
pub mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::http::{HeaderName, HeaderValue, StatusCode};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route, handler};
use poem_openapi::{OpenApiService, Tags};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::access::route_label;
use crate::app::App;
use auth::{ACCESS, RequestAccess};
use body::BodyLimit;
use error::{REQUEST_ID, error_to_response, normalize_response, shaped};

/// Groups of endpoints in the OpenAPI document.
#[derive(Tags)]
pub enum ApiTags {
    /// The camera registry.
    Cameras,
    /// Incidents, rules, calibration, response actions, webhooks.
    Incidents,
    /// Enrolled people (authorised or watch-listed), their faces, and the alerts their
    /// matches raise.
    Subjects,
    /// API keys: scopes, limits, usage.
    ApiKeys,
    /// Stored events with their envelopes, for auditors.
    Audit,
    /// Health, projections and node status.
    System,
}

type Apis = (
    cameras::CamerasApi,
    ingest::IngestApi,
    media::MediaApi,
    incidents::IncidentsApi,
    calibration::CalibrationApi,
    actions::ActionsApi,
    subjects::SubjectsApi,
    search::SearchApi,
    api_keys::ApiKeysApi,
    audit::AuditApi,
    system::SystemApi,
);

/// The OpenAPI service with every endpoint.
pub fn openapi_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            cameras::CamerasApi,
            ingest::IngestApi,
            media::MediaApi,
            incidents::IncidentsApi,
            calibration::CalibrationApi,
            actions::ActionsApi,
            subjects::SubjectsApi,
            search::SearchApi,
            api_keys::ApiKeysApi,
            audit::AuditApi,
            system::SystemApi,
        ),
        "Vigil",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Self-hosted backend for AI video surveillance. Every request except health, metrics \
         and the documents needs a key, as `X-API-Key` or `Authorization: Bearer`; each \
         operation needs the scope in its `x-vigil-scope`. Every error has the body \
         `{\"error\": {\"code\", \"message\", \"details\"}, \"request_id\"}`. Authenticated \
         responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.",
    )
}

/// The OpenAPI document as JSON, with each operation's scope as `x-vigil-scope`.
pub fn openapi_json() -> String {
    let mut doc: Value =
        serde_json::from_str(&openapi_service().spec()).expect("poem-openapi writes JSON");
    // Request bodies are parsed strictly (unknown members are refused), and responses carry
    // only documented members: say so in every object schema — except the payloads other
    // systems send (Alertmanager's webhook carries members Vigil does not use).
    const OPEN_SCHEMAS: &[&str] = &["AlertmanagerPayload", "AlertmanagerAlert"];
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            let Some(schema) = schema.as_object_mut() else {
                continue;
            };
            if schema.contains_key("properties") && !OPEN_SCHEMAS.contains(&name.as_str()) {
                schema.insert("additionalProperties".into(), json!(false));
            }
        }
    }
    mark_nullable_optionals(&mut doc);
    // The incident export answers CSV or NDJSON by its `format`: poem-openapi keeps one content
    // type per status, so the other is added here.
    if let Some(content) =
        doc.pointer_mut("/paths/~1api~1v1~1incidents~1export/get/responses/200/content")
        && let Some(content) = content.as_object_mut()
    {
        for kind in ["text/csv", "application/x-ndjson"] {
            content.insert(
                kind.into(),
                json!({"schema": {"type": "string", "format": "binary"}}),
            );
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|p| p.values_mut())
        {
            let Some(op) = operation.as_object_mut() else {
                continue;
            };
            let scope = op
                .get("operationId")
                .and_then(Value::as_str)
                .and_then(auth::scope_of);
            if let Some(scope) = scope {
                op.insert("x-vigil-scope".into(), json!(scope));
                let text = if scope == "admin" {
                    "Requires the scope `admin`.".to_string()
                } else {
                    format!("Requires the scope `{scope}` (or `admin`).")
                };
                let description = match op.get("description").and_then(Value::as_str) {
                    Some(d) => format!("{d}\n\n{text}"),
                    None => text,
                };
                op.insert("description".into(), json!(description));
            }
        }
    }
    serde_json::to_string_pretty(&doc).expect("JSON serialises")
}

/// Marks every optional property of the schemas that JSON request bodies use as `nullable`:
/// [`body::JsonBody`] reads a `null` member as an absent one.
fn mark_nullable_optionals(doc: &mut Value) {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    out.push(name.to_string());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut pending = Vec::new();
    for operation in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
    {
        if let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema") {
            refs(schema, &mut pending);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = doc.pointer(&format!("/components/schemas/{name}")) {
            refs(schema, &mut pending);
        }
    }
    for name in seen {
        let Some(schema) = doc
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let required: Vec<Value> = schema
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (property, definition) in properties.iter_mut() {
            let Some(definition) = definition.as_object_mut() else {
                continue;
            };
            // A map's entries are members too: a `null` entry counts as left out.
            if let Some(entries) = definition
                .get_mut("additionalProperties")
                .and_then(Value::as_object_mut)
            {
                make_nullable(entries);
            }
            if !required.iter().any(|r| r.as_str() == Some(property)) {
                make_nullable(definition);
            }
        }
    }
}

/// Adds `nullable: true` to a schema (OpenAPI 3.0 ignores the siblings of a bare `$ref`, so
/// one is wrapped in `allOf` first).
fn make_nullable(definition: &mut serde_json::Map<String, Value>) {
    if let Some(reference) = definition.remove("$ref") {
        definition.insert("allOf".into(), json!([{"$ref": reference}]));
    }
    definition.insert("nullable".into(), json!(true));
}

#[handler]
fn openapi_document() -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(openapi_json())
}

/// One operation of the OpenAPI document.
pub struct DocumentedRoute {
    /// HTTP method, upper case.
    pub method: String,
    segments: Vec<String>,
    /// The scope it needs, if it is secured.
    pub scope: Option<&'static str>,
}

impl DocumentedRoute {
    fn matches_path(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(t, s)| t.starts_with('{') || t == s)
    }
}

fn documented_routes() -> &'static [DocumentedRoute] {
    static ROUTES: std::sync::OnceLock<Vec<DocumentedRoute>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let doc: Value =
            serde_json::from_str(&openapi_service().spec()).expect("poem-openapi writes JSON");
        let mut routes = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                routes.push(DocumentedRoute {
                    method: method.to_uppercase(),
                    segments: path
                        .split('/')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    scope: op["operationId"].as_str().and_then(auth::scope_of),
                });
            }
        }
        routes
    })
}

fn path_segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The documented routes a path addresses: of those whose pattern matches, the ones with the
/// most literal segments (`/cameras/test` is that endpoint, not the camera `test`, as the
/// router sees it too).
fn routes_for(path: &str) -> Vec<&'static DocumentedRoute> {
    let segments = path_segments(path);
    let matching: Vec<&'static DocumentedRoute> = documented_routes()
        .iter()
        .filter(|r| r.matches_path(&segments))
        .collect();
    let literal = |r: &DocumentedRoute| r.segments.iter().filter(|s| !s.starts_with('{')).count();
    let best = matching.iter().map(|r| literal(r)).max().unwrap_or(0);
    matching
        .into_iter()
        .filter(|r| literal(r) == best)
        .collect()
}

/// The documented operation a request addresses.
pub fn documented_route(method: &str, path: &str) -> Option<&'static DocumentedRoute> {
    routes_for(path).into_iter().find(|r| r.method == method)
}

/// The methods the API serves on a path, for `Allow`.
fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = routes_for(path)
        .into_iter()
        .map(|r| r.method.as_str())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// The whole HTTP application for `app`.
pub fn routes(app: App) -> impl Endpoint {
    let service = openapi_service();
    let swagger = service.swagger_ui();
    let redoc = service.redoc();
    let limit = BodyLimit {
        json: app.config().max_body_bytes,
        upload: app.config().max_upload_bytes,
    };
    let origins = app.config().cors_allowed_origins.clone();
    let route = Route::new()
        .at("/openapi.json", openapi_document)
        .nest("/docs", swagger)
        .nest("/redoc", redoc)
        .at("/metrics", poem::get(system::metrics))
        .at("/ws", poem::get(ws::ws))
        .at("/ws/:preset", poem::get(ws::ws_preset))
        .at("/console/:file", poem::get(console::file))
        // `/` is the console's page; the nested API would otherwise answer it with 404.
        .nest(
            "/",
            service.around(|ep, req| async move {
                if req.uri().path() == "/" && req.method() == poem::http::Method::GET {
                    return Ok(console::page());
                }
                Ok(ep.call(req).await?.into_response())
            }),
        );
    // CORS is closed unless origins are configured: no CORS headers at all.
    let route = if origins.is_empty() {
        route.boxed()
    } else {
        route
            .with(Cors::new().allow_origins(origins).expose_headers(EXPOSED))
            .boxed()
    };
    route.around(request_middleware).data(limit).data(app)
}

const EXPOSED: [&str; 6] = [
    "x-request-id",
    "x-vigil-position",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "etag",
];

fn request_id_of(req: &Request) -> String {
    req.header("x-request-id")
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        resp.headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}

/// Request id, span, time limit, error shaping, rate-limit and security headers, usage,
/// access log and metrics for every request.
async fn request_middleware<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let request_id = request_id_of(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let app = req.data::<App>().cloned();
    let timeout = app.as_ref().map_or(Duration::from_secs(30), |a| {
        Duration::from_secs(a.config().request_timeout_secs)
    });
    let span = tracing::info_span!("request", %request_id, %method, %path);
    let started = Instant::now();
    let access = Arc::new(RequestAccess::default());
    let id = request_id.clone();
    let served = async move {
        match tokio::time::timeout(timeout, ep.call(req)).await {
            Ok(Ok(resp)) => normalize_response(resp.into_response(), &id),
            Ok(Err(err)) => error_to_response(err, &id),
            Err(_) => shaped(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!("the request took longer than {} s", timeout.as_secs()),
                json!({}),
                &id,
            ),
        }
    };
    let mut resp = REQUEST_ID
        .scope(request_id.clone(), ACCESS.scope(access.clone(), served))
        .instrument(span.clone())
        .await;
    set(&mut resp, "x-request-id", &request_id);
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        set(&mut resp, "allow", &allowed_methods(&path).join(", "));
    }
    if matches!(
        resp.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        // The body was not read to its end: the connection cannot carry another request.
        set(&mut resp, "connection", "close");
    }
    set(&mut resp, "x-content-type-options", "nosniff");
    set(&mut resp, "x-frame-options", "DENY");
    set(&mut resp, "referrer-policy", "no-referrer");
    if console::is_console_path(&path) {
        let origin = app
            .as_ref()
            .and_then(|a| a.config().presigned_media_origin());
        set(
            &mut resp,
            "content-security-policy",
            &console::csp(origin.as_deref()),
        );
    } else if path.starts_with("/api/") {
        set(&mut resp, "cache-control", "no-store");
        set(
            &mut resp,
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        );
    }
    let rate = *access.rate.lock().expect("access lock");
    if let Some(rate) = rate {
        if rate.limit > 0 {
            set(&mut resp, "x-ratelimit-limit", &rate.limit.to_string());
            set(
                &mut resp,
                "x-ratelimit-remaining",
                &rate.remaining.to_string(),
            );
            set(&mut resp, "x-ratelimit-reset", &rate.reset_secs.to_string());
        }
        if let Some(wait) = rate.retry_after_secs {
            set(&mut resp, "retry-after", &wait.to_string());
        }
    }
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE
        && !resp.headers().contains_key("retry-after")
    {
        set(
            &mut resp,
            "retry-after",
            &error::RETRY_AFTER_SECS.to_string(),
        );
    }
    let status = resp.status().as_u16();
    if let Some(app) = &app {
        let route = crate::access::route_label(method.as_str(), &path);
        let route = route
            .split_once(' ')
            .map_or(route.as_str(), |(_, r)| r)
            .to_string();
        let seconds = started.elapsed().as_secs_f64();
        app.telemetry().record(|| {
            if let Some(class) =
                ["2xx", "3xx", "4xx", "5xx"].get(usize::from(status / 100).wrapping_sub(2))
            {
                metrics::counter!("vigil_http_responses_total", "class" => *class).increment(1);
            }
            metrics::counter!(
                "vigil_http_requests_total",
                "method" => method.to_string(),
                "route" => route.clone(),
                "status" => status.to_string()
            )
            .increment(1);
            metrics::histogram!(
                "vigil_http_request_duration_seconds",
                "method" => method.to_string(),
                "route" => route
            )
            .record(seconds);
        });
        if let Some(key_id) = access.key_id.lock().expect("access lock").as_deref() {
            app.usage()
                .record(key_id, &route_label(method.as_str(), &path), status == 429);
        }
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "served"
        );
    });
    Ok(resp)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let std_listener = listener.into_std()?;
    let acceptor = poem::listener::TcpAcceptor::from_std(std_listener)?;
    poem::Server::new_with_acceptor(acceptor)
        .idle_timeout(Duration::from_secs(60))
        .run_with_graceful_shutdown(
            routes(app).into_endpoint(),
            shutdown,
            Some(Duration::from_secs(10)),
        )
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Operation ids that must appear in [`super::auth::OPERATION_SCOPES`]: every operation with a security
    /// requirement in the document.
    fn secured_operations() -> Vec<String> {
        let doc: Value = serde_json::from_str(&super::openapi_service().spec())
            .expect("poem-openapi writes JSON");
        let mut ids = Vec::new();
        if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
            for op in paths
                .values()
                .filter_map(Value::as_object)
                .flat_map(|p| p.values())
            {
                if op.get("security").is_some()
                    && let Some(id) = op.get("operationId").and_then(Value::as_str)
                {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }

    #[test]
    fn every_secured_operation_declares_a_scope() {
        let secured = secured_operations();
        assert!(secured.len() >= 10, "{secured:?}");
        for op in &secured {
            assert!(
                super::auth::scope_of(op).is_some(),
                "operation `{op}` has no scope in OPERATION_SCOPES"
            );
        }
        for (op, scope) in super::auth::OPERATION_SCOPES {
            assert!(
                secured.iter().any(|s| s == op),
                "OPERATION_SCOPES names `{op}`, which is not a secured operation"
            );
            assert!(
                *scope == super::auth::ANY_KEY
                    || vigil_actors::aggregates::apikey::SCOPES.contains(scope),
                "`{scope}` is not a scope"
            );
        }
    }

    #[test]
    fn requests_map_to_the_scope_of_their_route() {
        use super::auth::required_scope;
        assert_eq!(
            required_scope("POST", "/api/v1/cameras"),
            Some("write:cameras")
        );
        assert_eq!(
            required_scope("POST", "/api/v1/cameras/"),
            Some("write:cameras")
        );
        assert_eq!(
            required_scope("GET", "/api/v1/cameras/lobby"),
            Some("read:cameras")
        );
        assert_eq!(
            required_scope("DELETE", "/api/v1/cameras/lobby"),
            Some("write:cameras")
        );
        assert_eq!(
            required_scope("GET", "/api/v1/api-keys/k/usage"),
            Some("admin")
        );
        assert_eq!(
            required_scope("GET", "/api/v1/audit/events"),
            Some("read:audit")
        );
        assert_eq!(required_scope("GET", "/health/live"), None);
        assert_eq!(required_scope("PUT", "/api/v1/cameras/lobby"), None);
    }
}
