//! The API key aggregate's events (stream `apikey-{id}`).

use super::*;

/// Requests per minute an API key may make, per tier of endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Ordinary API calls.
    pub standard: u32,
    /// Frames, snapshots and other media.
    pub media: u32,
    /// Searches (by face, by time range).
    pub search: u32,
    /// Frame ingest (push and analyse).
    pub ingest: u32,
}

/// An API key was issued. Events never carry the secret: only its keyed hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyIssued {
    /// The key's id (also its stream's suffix).
    pub key_id: String,
    /// Human-readable name.
    pub name: String,
    /// What the key may do, e.g. `read:cameras`, `admin`.
    pub scopes: Vec<String>,
    /// Lower-case hex HMAC-SHA256 of the secret under the node's key pepper.
    pub key_hash: String,
    /// Requests per minute per tier.
    pub rate_limits: RateLimits,
    /// When the key stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// The cameras the key is restricted to; empty means every camera.
    pub camera_ids: Vec<String>,
}

/// Some of an API key's settings changed. Each present field holds its new value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyUpdated {
    /// The key's id.
    pub key_id: String,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// New rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// New camera restriction (empty: every camera).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_ids: Option<Vec<String>>,
    /// Enabled or disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// An API key was revoked for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyRevoked {
    /// The key's id.
    pub key_id: String,
}

event_family! {
    /// Events of the API key aggregate (stream `apikey-{id}`).
    ApiKeyEvent {
        Issued(ApiKeyIssued) = "apikey.issued" v 1,
        Updated(ApiKeyUpdated) = "apikey.updated" v 1,
        Revoked(ApiKeyRevoked) = "apikey.revoked" v 1,
    }
}
