//! `/api/v1/api-keys`: scoped keys with rate limits, camera restrictions and usage.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;
use vigil_actors::CommandError;
use vigil_actors::aggregates::apikey::{
    ApiKey, ApiKeyCommand, ApiKeyError, ApiKeyPatch, IssueApiKey, RateLimitsPatch,
};
use vigil_projections::QueryError;
use vigil_projections::api_keys::{
    ApiKeyRow, EndpointUsage, get_api_key, key_usage, list_api_keys,
};

use super::ApiTags;
use super::auth::{Auth, request_meta};
use super::body::{BodyLimits, JsonBody};
use super::dto::{etag, parse_if_match};
use super::error::ApiError;
use super::listing::{OrderParam, order_or};
use crate::app::{App, new_key};
use crate::service::visibility::wait_visible;

/// Requests per minute per tier; in a request, absent tiers keep their value (or the default).
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsInput {
    /// Ordinary API calls.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub standard: Option<u32>,
    /// Frames, snapshots and media.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub media: Option<u32>,
    /// Searches.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub search: Option<u32>,
    /// Frame ingest.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub ingest: Option<u32>,
}

impl From<RateLimitsInput> for RateLimitsPatch {
    fn from(r: RateLimitsInput) -> Self {
        Self {
            standard: r.standard,
            media: r.media,
            search: r.search,
            ingest: r.ingest,
        }
    }
}

/// Requests per minute per tier.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RateLimitsDto {
    /// Ordinary API calls.
    pub standard: u32,
    /// Frames, snapshots and media.
    pub media: u32,
    /// Searches.
    pub search: u32,
    /// Frame ingest.
    pub ingest: u32,
}

/// What a key may do. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum, Deserialize)]
pub enum Scope {
    /// Read cameras.
    #[oai(rename = "read:cameras")]
    #[serde(rename = "read:cameras")]
    ReadCameras,
    /// Register, change and remove cameras.
    #[oai(rename = "write:cameras")]
    #[serde(rename = "write:cameras")]
    WriteCameras,
    /// Read incidents.
    #[oai(rename = "read:incidents")]
    #[serde(rename = "read:incidents")]
    ReadIncidents,
    /// Change incidents.
    #[oai(rename = "write:incidents")]
    #[serde(rename = "write:incidents")]
    WriteIncidents,
    /// Read subjects.
    #[oai(rename = "read:subjects")]
    #[serde(rename = "read:subjects")]
    ReadSubjects,
    /// Enrol and change subjects.
    #[oai(rename = "write:subjects")]
    #[serde(rename = "write:subjects")]
    WriteSubjects,
    /// Read the audit log.
    #[oai(rename = "read:audit")]
    #[serde(rename = "read:audit")]
    ReadAudit,
    /// Search by face and time range.
    #[oai(rename = "search")]
    #[serde(rename = "search")]
    Search,
    /// Push frames.
    #[oai(rename = "ingest")]
    #[serde(rename = "ingest")]
    Ingest,
    /// Everything, key management included.
    #[oai(rename = "admin")]
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// The scope's name as keys store it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadCameras => "read:cameras",
            Self::WriteCameras => "write:cameras",
            Self::ReadIncidents => "read:incidents",
            Self::WriteIncidents => "write:incidents",
            Self::ReadSubjects => "read:subjects",
            Self::WriteSubjects => "write:subjects",
            Self::ReadAudit => "read:audit",
            Self::Search => "search",
            Self::Ingest => "ingest",
            Self::Admin => "admin",
        }
    }
}

fn scope_names(scopes: Vec<Scope>) -> Vec<String> {
    scopes.into_iter().map(|s| s.as_str().to_string()).collect()
}

/// A key to issue.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// Human-readable name (1–100 characters, not blank).
    #[oai(validator(min_length = 1, max_length = 100, pattern = r"\S"))]
    pub name: String,
    /// Scopes, at least one, each once.
    #[oai(validator(min_items = 1, unique_items))]
    pub scopes: Vec<Scope>,
    /// Per-minute limits; absent tiers get the server's defaults.
    pub rate_limits: Option<RateLimitsInput>,
    /// When the key stops working (UTC, in the future).
    pub expires_at: Option<DateTime<Utc>>,
    /// Restrict the key to these cameras (absent or empty: every camera).
    #[oai(validator(max_items = 1000, pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub camera_ids: Option<Vec<String>>,
}

impl BodyLimits for ApiKeyCreate {
    const MAX_BYTES: usize = 64 * 1024;
}

/// Changes to a key; absent fields stay.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyPatchBody {
    /// New name.
    #[oai(validator(min_length = 1, max_length = 100, pattern = r"\S"))]
    pub name: Option<String>,
    /// New scopes (replace the old ones).
    #[oai(validator(min_items = 1, unique_items))]
    pub scopes: Option<Vec<Scope>>,
    /// Limits to change.
    pub rate_limits: Option<RateLimitsInput>,
    /// New camera restriction (empty: every camera).
    #[oai(validator(max_items = 1000, pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub camera_ids: Option<Vec<String>>,
    /// Enable or disable the key.
    pub enabled: Option<bool>,
}

impl BodyLimits for ApiKeyPatchBody {
    const MAX_BYTES: usize = 64 * 1024;
}

/// A key (never its secret or hash).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyDto {
    /// Id (the part between `vgl_` and the second `_` of the key).
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Per-minute limits.
    pub rate_limits: RateLimitsDto,
    /// Camera restriction (empty: every camera).
    pub camera_ids: Vec<String>,
    /// Whether the key is enabled.
    pub enabled: bool,
    /// Whether the key was revoked (for good).
    pub revoked: bool,
    /// Expiry (UTC).
    pub expires_at: Option<DateTime<Utc>>,
    /// Issue time (UTC).
    pub created_at: DateTime<Utc>,
    /// Last change (UTC).
    pub updated_at: DateTime<Utc>,
    /// Version (also the `ETag`).
    pub version: u64,
}

impl From<ApiKeyRow> for ApiKeyDto {
    fn from(k: ApiKeyRow) -> Self {
        Self {
            rate_limits: RateLimitsDto {
                standard: k.rate_limits.standard,
                media: k.rate_limits.media,
                search: k.rate_limits.search,
                ingest: k.rate_limits.ingest,
            },
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            camera_ids: k.camera_ids,
            enabled: k.enabled,
            revoked: k.revoked,
            expires_at: k.expires_at,
            created_at: k.created_at,
            updated_at: k.updated_at,
            version: k.version,
        }
    }
}

/// A new key and its secret, shown only in this response.
#[derive(Debug, Clone, Object)]
pub struct ApiKeyCreated {
    /// The key.
    pub key: ApiKeyDto,
    /// The full key to send as `X-API-Key` or `Authorization: Bearer`. Only its hash is stored:
    /// it cannot be shown again.
    pub secret: String,
}

/// Every key.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyList {
    /// Keys by id, in the order asked for (ascending by default).
    pub items: Vec<ApiKeyDto>,
}

/// Usage of one endpoint.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EndpointUsageDto {
    /// `METHOD /route` with ids as `{}`.
    pub endpoint: String,
    /// Requests served.
    pub requests: u64,
    /// Requests refused with 429.
    pub throttled: u64,
    /// Last request (UTC).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Usage of a key, across every node.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UsageDto {
    /// The key.
    pub key_id: String,
    /// Requests served.
    pub requests: u64,
    /// Requests refused with 429.
    pub throttled: u64,
    /// Last request (UTC).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Per endpoint.
    pub endpoints: Vec<EndpointUsageDto>,
}

/// Response of issuing a key.
#[derive(ApiResponse)]
pub enum CreatedKey {
    /// Issued. The secret is in the body, once.
    #[oai(status = 201)]
    Created(
        Json<ApiKeyCreated>,
        /// The key's version.
        #[oai(header = "ETag")]
        String,
        /// Where the key lives.
        #[oai(header = "Location")]
        String,
        /// Global position of `apikey.issued`.
        #[oai(header = "X-Vigil-Position")]
        u64,
    ),
}

/// Response of reading or changing a key.
#[derive(ApiResponse)]
pub enum KeyResponse {
    /// The key.
    #[oai(status = 200)]
    Ok(
        Json<ApiKeyDto>,
        /// The key's version.
        #[oai(header = "ETag")]
        String,
    ),
}

/// Response of revoking a key.
#[derive(ApiResponse)]
pub enum Revoked {
    /// Revoked: the key stops working at once, on every node.
    #[oai(status = 204)]
    NoContent,
}

fn command_error(err: CommandError<ApiKeyError>, id: &str) -> ApiError {
    super::error::command_error(err, "key", |e| match e {
        ApiKeyError::NotFound => not_found(id),
        ApiKeyError::AlreadyIssued(id) => ApiError::new(
            StatusCode::CONFLICT,
            "API_KEY_EXISTS",
            format!("API key `{id}` already exists"),
            json!({}),
        ),
        ApiKeyError::Invalid { field, reason } => ApiError::validation(field, reason),
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "API_KEY_NOT_FOUND",
        format!("API key `{id}` does not exist"),
    )
}

fn query_error(err: QueryError) -> ApiError {
    match err {
        QueryError::Database(e) => ApiError::database_unavailable(e),
        other => ApiError::internal(other),
    }
}

/// The key as the read model shows it once it has applied `position`.
async fn read_after(app: &App, id: &str, position: Option<u64>) -> Result<ApiKeyRow, ApiError> {
    wait_visible(app, position).await;
    get_api_key(app.pool(), id)
        .await
        .map_err(query_error)?
        .ok_or_else(|| not_found(id))
}

/// A key that exists and is not revoked (a revoked key reads as missing).
async fn live_key(app: &App, id: &str) -> Result<ApiKeyRow, ApiError> {
    get_api_key(app.pool(), id)
        .await
        .map_err(query_error)?
        .filter(|k| !k.revoked)
        .ok_or_else(|| not_found(id))
}

/// API key endpoints.
pub struct ApiKeysApi;

#[OpenApi(prefix_path = "/api/v1/api-keys", tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Issue a key.
    ///
    /// The response holds the secret, once; only a keyed hash of it is stored.
    #[oai(path = "/", method = "post", operation_id = "create_api_key")]
    async fn create(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: JsonBody<ApiKeyCreate>,
    ) -> Result<CreatedKey, ApiError> {
        let principal = auth.require("create_api_key")?;
        let body = body.0;
        let key_id = uuid::Uuid::now_v7().simple().to_string();
        let (key, secret) = new_key(&key_id);
        let issue = IssueApiKey {
            key_id: key_id.clone(),
            name: body.name,
            scopes: scope_names(body.scopes),
            key_hash: app.hash_secret(&secret),
            rate_limits: RateLimitsPatch::from(body.rate_limits.unwrap_or_default())
                .apply(app.config().default_rate_limits),
            expires_at: body.expires_at,
            camera_ids: body.camera_ids.unwrap_or_default(),
            now: Utc::now(),
        };
        let done = app
            .handler()
            .execute::<ApiKey>(
                &key_id,
                ApiKeyCommand::Issue(issue),
                &request_meta(principal),
                None,
            )
            .await
            .map_err(|e| command_error(e, &key_id))?;
        let row = read_after(&app, &key_id, done.position).await?;
        Ok(CreatedKey::Created(
            Json(ApiKeyCreated {
                key: row.into(),
                secret: key,
            }),
            etag(done.version),
            format!("/api/v1/api-keys/{key_id}"),
            done.position.unwrap_or_default(),
        ))
    }

    /// List keys; revoked ones too with `include_revoked=true`.
    ///
    /// Every key by id, ascending unless `order=desc` (one page).
    #[oai(path = "/", method = "get", operation_id = "list_api_keys")]
    async fn list(
        &self,
        app: Data<&App>,
        auth: Auth,
        include_revoked: Query<Option<bool>>,
        order: Query<Option<OrderParam>>,
    ) -> Result<Json<ApiKeyList>, ApiError> {
        auth.require("list_api_keys")?;
        let include_revoked = include_revoked.0.unwrap_or(false);
        let mut items = list_api_keys(app.pool()).await.map_err(query_error)?;
        if order_or(order.0, vigil_projections::Order::Asc) == vigil_projections::Order::Desc {
            items.reverse();
        }
        Ok(Json(ApiKeyList {
            items: items
                .into_iter()
                .filter(|k| include_revoked || !k.revoked)
                .map(Into::into)
                .collect(),
        }))
    }

    /// Get a key.
    #[oai(path = "/:id", method = "get", operation_id = "get_api_key")]
    async fn get(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
    ) -> Result<KeyResponse, ApiError> {
        auth.require("get_api_key")?;
        let row = live_key(&app, &id.0).await?;
        let version = row.version;
        Ok(KeyResponse::Ok(Json(row.into()), etag(version)))
    }

    /// Change a key: rename, enable or disable, change scopes, limits or cameras.
    ///
    /// Honours `If-Match: "N"` (412 `VERSION_MISMATCH` otherwise). Changes apply to the next
    /// request made with the key, on every node.
    #[oai(path = "/:id", method = "patch", operation_id = "update_api_key")]
    async fn update(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
        #[oai(name = "If-Match", validator(pattern = r#"^(W/)?"?[0-9]{1,19}"?$"#))]
        if_match: Header<Option<String>>,
        body: JsonBody<ApiKeyPatchBody>,
    ) -> Result<KeyResponse, ApiError> {
        let principal = auth.require("update_api_key")?;
        let expected = parse_if_match(if_match.0)?;
        let body = body.0;
        let patch = ApiKeyPatch {
            name: body.name,
            scopes: body.scopes.map(scope_names),
            rate_limits: body.rate_limits.map(RateLimitsPatch::from),
            camera_ids: body.camera_ids,
            enabled: body.enabled,
        };
        let done = app
            .handler()
            .execute::<ApiKey>(
                &id.0,
                ApiKeyCommand::Update(patch),
                &request_meta(principal),
                expected,
            )
            .await
            .map_err(|e| command_error(e, &id.0))?;
        let row = read_after(&app, &id.0, done.position).await?;
        Ok(KeyResponse::Ok(Json(row.into()), etag(done.version)))
    }

    /// Revoke a key, for good.
    ///
    /// Every node checks keys against their event streams, so the key stops working with the
    /// next request, everywhere.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_api_key")]
    async fn delete(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
    ) -> Result<Revoked, ApiError> {
        let principal = auth.require("delete_api_key")?;
        let done = app
            .handler()
            .execute::<ApiKey>(&id.0, ApiKeyCommand::Revoke, &request_meta(principal), None)
            .await
            .map_err(|e| command_error(e, &id.0))?;
        read_after(&app, &id.0, done.position).await?;
        Ok(Revoked::NoContent)
    }

    /// Usage of a key: requests, throttled requests, last use, per endpoint.
    ///
    /// Counts from every node; other nodes' last two seconds may not be in yet.
    #[oai(path = "/:id/usage", method = "get", operation_id = "api_key_usage")]
    async fn usage(
        &self,
        app: Data<&App>,
        auth: Auth,
        id: Path<String>,
    ) -> Result<Json<UsageDto>, ApiError> {
        auth.require("api_key_usage")?;
        if id.0 != crate::app::CONFIG_KEY_ID {
            live_key(&app, &id.0).await?;
        }
        let mut merged: BTreeMap<String, EndpointUsage> = BTreeMap::new();
        let stored = key_usage(app.pool(), &id.0).await.map_err(query_error)?;
        for u in stored.into_iter().chain(app.usage().pending(&id.0)) {
            let e = merged
                .entry(u.endpoint.clone())
                .or_insert_with(|| EndpointUsage {
                    endpoint: u.endpoint.clone(),
                    ..Default::default()
                });
            e.requests += u.requests;
            e.throttled += u.throttled;
            e.last_used_at = e.last_used_at.max(u.last_used_at);
        }
        let endpoints: Vec<EndpointUsageDto> = merged
            .into_values()
            .map(|u| EndpointUsageDto {
                endpoint: u.endpoint,
                requests: u.requests,
                throttled: u.throttled,
                last_used_at: u.last_used_at,
            })
            .collect();
        Ok(Json(UsageDto {
            key_id: id.0,
            requests: endpoints.iter().map(|e| e.requests).sum(),
            throttled: endpoints.iter().map(|e| e.throttled).sum(),
            last_used_at: endpoints.iter().filter_map(|e| e.last_used_at).max(),
            endpoints,
        }))
    }
}
