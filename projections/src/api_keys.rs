//! The API key read model (`api_keys`) and usage counters (`api_key_usage`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use vigil_schemas::events::RateLimits;
use vigil_schemas::{ApiKeyEvent, DomainEvent, RecordedEvent};

use crate::error::QueryError;
use crate::format_time;
use crate::runner::{Projection, ProjectionError};

/// A key as the read model lists it (never its hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Per-minute limits.
    pub rate_limits: RateLimits,
    /// Camera restriction (empty: all).
    pub camera_ids: Vec<String>,
    /// Enabled.
    pub enabled: bool,
    /// Revoked for good.
    pub revoked: bool,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Issue time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Stream version.
    pub version: u64,
}

const COLUMNS: &str = "id, name, scopes, rate_limits, camera_ids, enabled, revoked, expires_at, created_at, updated_at, version";

fn json_col<T: serde::de::DeserializeOwned>(row: &AnyRow, name: &str) -> Result<T, QueryError> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| QueryError::Corrupt(format!("{name}: {e}")))
}

fn time_col(text: &str) -> Result<DateTime<Utc>, QueryError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| QueryError::Corrupt(format!("time `{text}`: {e}")))
}

fn from_row(row: &AnyRow) -> Result<ApiKeyRow, QueryError> {
    let expires: Option<String> = row.try_get("expires_at")?;
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: json_col(row, "scopes")?,
        rate_limits: json_col(row, "rate_limits")?,
        camera_ids: json_col(row, "camera_ids")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
        expires_at: expires.as_deref().map(time_col).transpose()?,
        created_at: time_col(&row.try_get::<String, _>("created_at")?)?,
        updated_at: time_col(&row.try_get::<String, _>("updated_at")?)?,
        version: row.try_get::<i64, _>("version")? as u64,
    })
}

/// Every key in id order, revoked ones included.
pub async fn list_api_keys(pool: &AnyPool) -> Result<Vec<ApiKeyRow>, QueryError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys ORDER BY id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One key by id.
pub async fn get_api_key(pool: &AnyPool, id: &str) -> Result<Option<ApiKeyRow>, QueryError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Usage of one key on one endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointUsage {
    /// `METHOD /route/{template}`.
    pub endpoint: String,
    /// Requests that passed authentication.
    pub requests: u64,
    /// Requests refused with 429.
    pub throttled: u64,
    /// Last request.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Adds counts to the usage table (one transaction).
pub async fn add_usage(
    pool: &AnyPool,
    key_id: &str,
    deltas: &[EndpointUsage],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for d in deltas {
        let last = d.last_used_at.map(format_time).unwrap_or_default();
        sqlx::query(
            "INSERT INTO api_key_usage (key_id, endpoint, requests, throttled, last_used_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id, endpoint) DO UPDATE SET \
             requests = api_key_usage.requests + excluded.requests, \
             throttled = api_key_usage.throttled + excluded.throttled, \
             last_used_at = CASE WHEN excluded.last_used_at > api_key_usage.last_used_at \
                            THEN excluded.last_used_at ELSE api_key_usage.last_used_at END",
        )
        .bind(key_id)
        .bind(d.endpoint.clone())
        .bind(d.requests as i64)
        .bind(d.throttled as i64)
        .bind(last)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Stored usage of one key, per endpoint in endpoint order.
pub async fn key_usage(pool: &AnyPool, key_id: &str) -> Result<Vec<EndpointUsage>, QueryError> {
    let rows = sqlx::query(
        "SELECT endpoint, requests, throttled, last_used_at FROM api_key_usage WHERE key_id = $1 ORDER BY endpoint",
    )
    .bind(key_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let last: String = row.try_get("last_used_at")?;
            Ok(EndpointUsage {
                endpoint: row.try_get("endpoint")?,
                requests: row.try_get::<i64, _>("requests")? as u64,
                throttled: row.try_get::<i64, _>("throttled")? as u64,
                last_used_at: if last.is_empty() {
                    None
                } else {
                    Some(time_col(&last)?)
                },
            })
        })
        .collect()
}

/// Projects API key events into `api_keys`.
pub struct ApiKeyProjection;

async fn write_row(conn: &mut AnyConnection, k: &ApiKeyRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, scopes = excluded.scopes, \
         rate_limits = excluded.rate_limits, camera_ids = excluded.camera_ids, enabled = excluded.enabled, \
         revoked = excluded.revoked, expires_at = excluded.expires_at, created_at = excluded.created_at, \
         updated_at = excluded.updated_at, version = excluded.version"
    )))
    .bind(k.id.clone())
    .bind(k.name.clone())
    .bind(json(&k.scopes))
    .bind(json(&k.rate_limits))
    .bind(json(&k.camera_ids))
    .bind(i64::from(k.enabled))
    .bind(i64::from(k.revoked))
    .bind(k.expires_at.map(format_time))
    .bind(format_time(k.created_at))
    .bind(format_time(k.updated_at))
    .bind(k.version as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

#[async_trait]
impl Projection for ApiKeyProjection {
    fn name(&self) -> &'static str {
        "api_keys"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["api_keys"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let failed = |reason: String| ProjectionError::Apply {
            name: "api_keys".into(),
            position: event.position,
            reason,
        };
        let Some(decoded) = ApiKeyEvent::from_recorded(event).map_err(|e| failed(e.to_string()))?
        else {
            return Ok(());
        };
        let key_id = match &decoded {
            ApiKeyEvent::Issued(e) => e.key_id.clone(),
            ApiKeyEvent::Updated(e) => e.key_id.clone(),
            ApiKeyEvent::Revoked(e) => e.key_id.clone(),
        };
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(key_id.clone())
        .fetch_optional(&mut *conn)
        .await?;
        let existing = existing
            .as_ref()
            .map(from_row)
            .transpose()
            .map_err(|e| failed(e.to_string()))?;
        let row = match (decoded, existing) {
            (ApiKeyEvent::Issued(e), _) => ApiKeyRow {
                id: e.key_id,
                name: e.name,
                scopes: e.scopes,
                rate_limits: e.rate_limits,
                camera_ids: e.camera_ids,
                enabled: true,
                revoked: false,
                expires_at: e.expires_at,
                created_at: event.occurred_at,
                updated_at: event.occurred_at,
                version: event.stream_version,
            },
            (ApiKeyEvent::Updated(e), Some(mut k)) => {
                k.name = e.name.unwrap_or(k.name);
                k.scopes = e.scopes.unwrap_or(k.scopes);
                k.rate_limits = e.rate_limits.unwrap_or(k.rate_limits);
                k.camera_ids = e.camera_ids.unwrap_or(k.camera_ids);
                k.enabled = e.enabled.unwrap_or(k.enabled);
                k.updated_at = event.occurred_at;
                k.version = event.stream_version;
                k
            }
            (ApiKeyEvent::Revoked(_), Some(mut k)) => {
                k.revoked = true;
                k.enabled = false;
                k.updated_at = event.occurred_at;
                k.version = event.stream_version;
                k
            }
            (_, None) => return Err(failed(format!("change of unknown key `{key_id}`"))),
        };
        write_row(conn, &row).await?;
        Ok(())
    }
}
