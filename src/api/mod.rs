//! The HTTP edge: poem + poem-openapi.
//!
//! Every response carries `X-Request-Id`; every 4xx/5xx has the body of [`error::ErrorBody`].
//! `/openapi.json` is the OpenAPI 3 document, `/docs` Swagger UI, `/redoc` ReDoc.

pub mod audit;
pub mod body;
pub mod cameras;
pub mod error;
pub mod system;

use std::time::Instant;

use poem::http::HeaderValue;
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route};
use poem_openapi::auth::ApiKey;
use poem_openapi::{OpenApiService, SecurityScheme, Tags};
use tracing::Instrument;

use crate::app::App;
use body::BodyLimit;
use error::{REQUEST_ID, error_to_response, normalize_response};

/// Groups of endpoints in the OpenAPI document.
#[derive(Tags)]
pub enum ApiTags {
    /// The camera registry.
    Cameras,
    /// Stored events with their envelopes, for auditors.
    Audit,
    /// Health, projections and node status.
    System,
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The actor recorded on events this request causes.
    pub actor: String,
}

/// `X-API-Key` header authentication.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "check_api_key"
)]
pub struct AdminKey(pub Principal);

async fn check_api_key(req: &Request, key: ApiKey) -> Option<Principal> {
    let app = req.data::<App>()?;
    app.verify_key(&key.key).then(|| Principal {
        actor: "key:admin".into(),
    })
}

/// The OpenAPI service with every endpoint.
pub fn openapi_service()
-> OpenApiService<(cameras::CamerasApi, audit::AuditApi, system::SystemApi), ()> {
    OpenApiService::new(
        (cameras::CamerasApi, audit::AuditApi, system::SystemApi),
        "Vigil",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Self-hosted backend for AI video surveillance. Every request except health, metrics \
         and the documents needs an `X-API-Key` header. Every error has the body \
         `{\"error\": {\"code\", \"message\", \"details\"}, \"request_id\"}`.",
    )
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    openapi_service().spec()
}

/// The whole HTTP application for `app`.
pub fn routes(app: App) -> impl Endpoint {
    let service = openapi_service();
    let spec = service.spec_endpoint();
    let swagger = service.swagger_ui();
    let redoc = service.redoc();
    let limit = BodyLimit(app.config().max_body_bytes);
    Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", swagger)
        .nest("/redoc", redoc)
        .at("/metrics", poem::get(system::metrics))
        .nest("/", service)
        .with(Cors::new())
        .around(request_middleware)
        .data(limit)
        .data(app)
}

fn request_id_of(req: &Request) -> String {
    req.header("x-request-id")
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Request id, span, error shaping, access log and metrics for every request.
async fn request_middleware<E: Endpoint>(
    ep: std::sync::Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    let request_id = request_id_of(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let app = req.data::<App>().cloned();
    let span = tracing::info_span!("request", %request_id, %method, %path);
    let started = Instant::now();
    let id = request_id.clone();
    let mut resp = REQUEST_ID
        .scope(request_id.clone(), async move {
            match ep.call(req).await {
                Ok(resp) => normalize_response(resp.into_response(), &id),
                Err(err) => error_to_response(err, &id),
            }
        })
        .instrument(span.clone())
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", value);
    }
    let status = resp.status().as_u16();
    if let Some(app) = app {
        app.metrics().record(status);
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

/// Serves `app` on its configured address until `shutdown` resolves.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let std_listener = listener.into_std()?;
    let acceptor = poem::listener::TcpAcceptor::from_std(std_listener)?;
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes(app).into_endpoint(), shutdown, None)
        .await
}
