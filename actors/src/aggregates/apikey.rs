//! The API key aggregate (stream `apikey-{id}`): issue, change, disable, revoke.

use chrono::{DateTime, Utc};
use vigil_schemas::ApiKeyEvent;
use vigil_schemas::events::{
    ApiKeyIssued, ApiKeyRevoked, ApiKeyUpdated, RateLimits, apikey_stream,
};

use crate::aggregates::Aggregate;
use crate::aggregates::camera::validate_id;

/// Every scope a key can hold. `admin` implies all others.
pub const SCOPES: &[&str] = &[
    "read:cameras",
    "write:cameras",
    "read:incidents",
    "write:incidents",
    "read:subjects",
    "write:subjects",
    "read:audit",
    "search",
    "ingest",
    "admin",
];

/// Highest per-minute limit a key may have in any tier.
pub const MAX_RATE_PER_MINUTE: u32 = 1_000_000;
/// Most cameras a key may be restricted to.
pub const MAX_CAMERA_IDS: usize = 1000;

/// A key as the write side knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    /// Id.
    pub key_id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Keyed hash of the secret.
    pub key_hash: String,
    /// Per-minute limits.
    pub rate_limits: RateLimits,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Camera restriction (empty: all).
    pub camera_ids: Vec<String>,
    /// Disabled keys are refused until enabled again.
    pub enabled: bool,
    /// Issue time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Whether a key holding `scopes` may act under `scope`: it holds it, or holds `admin`.
pub fn grants(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope || s == "admin")
}

impl ApiKeyRecord {
    /// Whether the key holds `scope` (directly or through `admin`).
    pub fn has_scope(&self, scope: &str) -> bool {
        grants(&self.scopes, scope)
    }
}

/// State of one key stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiKeyState {
    /// The key, while issued and not revoked.
    pub key: Option<ApiKeyRecord>,
    /// Whether it was revoked (for good).
    pub revoked: bool,
}

/// Issue a key.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueApiKey {
    /// Id.
    pub key_id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Keyed hash of the secret (the caller generated the secret).
    pub key_hash: String,
    /// Per-minute limits.
    pub rate_limits: RateLimits,
    /// Expiry, which must lie after `now`.
    pub expires_at: Option<DateTime<Utc>>,
    /// Camera restriction.
    pub camera_ids: Vec<String>,
    /// The current time, for the expiry check.
    pub now: DateTime<Utc>,
}

/// Some tiers' per-minute limits; absent tiers keep theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitsPatch {
    /// Ordinary calls.
    pub standard: Option<u32>,
    /// Media.
    pub media: Option<u32>,
    /// Searches.
    pub search: Option<u32>,
    /// Frame ingest.
    pub ingest: Option<u32>,
}

impl RateLimitsPatch {
    /// `base` with the present tiers replaced.
    pub fn apply(&self, base: RateLimits) -> RateLimits {
        RateLimits {
            standard: self.standard.unwrap_or(base.standard),
            media: self.media.unwrap_or(base.media),
            search: self.search.unwrap_or(base.search),
            ingest: self.ingest.unwrap_or(base.ingest),
        }
    }
}

/// Change a key; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiKeyPatch {
    /// New name.
    pub name: Option<String>,
    /// New scopes.
    pub scopes: Option<Vec<String>>,
    /// Limits to change; absent tiers stay.
    pub rate_limits: Option<RateLimitsPatch>,
    /// New camera restriction.
    pub camera_ids: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Commands on a key.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyCommand {
    /// Issue it.
    Issue(IssueApiKey),
    /// Change it.
    Update(ApiKeyPatch),
    /// Revoke it.
    Revoke,
}

/// Why a key command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiKeyError {
    /// The id is taken.
    #[error("API key `{0}` already exists")]
    AlreadyIssued(String),
    /// No such key (or it was revoked).
    #[error("API key not found")]
    NotFound,
    /// A field's value is not acceptable.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiKeyError {
    ApiKeyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn validate_name(name: &str) -> Result<(), ApiKeyError> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(invalid("name", "must be 1 to 100 characters"));
    }
    Ok(())
}

fn validate_scopes(scopes: &[String]) -> Result<(), ApiKeyError> {
    if scopes.is_empty() {
        return Err(invalid("scopes", "at least one scope"));
    }
    for (i, scope) in scopes.iter().enumerate() {
        if !SCOPES.contains(&scope.as_str()) {
            return Err(invalid(
                format!("scopes[{i}]"),
                format!("unknown scope; one of {}", SCOPES.join(", ")),
            ));
        }
        if scopes[..i].contains(scope) {
            return Err(invalid(format!("scopes[{i}]"), "listed twice"));
        }
    }
    Ok(())
}

fn validate_limits(limits: &RateLimits) -> Result<(), ApiKeyError> {
    for (tier, value) in [
        ("standard", limits.standard),
        ("media", limits.media),
        ("search", limits.search),
        ("ingest", limits.ingest),
    ] {
        if value == 0 || value > MAX_RATE_PER_MINUTE {
            return Err(invalid(
                format!("rate_limits.{tier}"),
                format!("must be 1 to {MAX_RATE_PER_MINUTE} per minute"),
            ));
        }
    }
    Ok(())
}

fn validate_cameras(ids: &[String]) -> Result<(), ApiKeyError> {
    if ids.len() > MAX_CAMERA_IDS {
        return Err(invalid(
            "camera_ids",
            format!("at most {MAX_CAMERA_IDS} cameras"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        validate_id(id).map_err(|_| invalid(format!("camera_ids[{i}]"), "not a camera id"))?;
    }
    Ok(())
}

/// Checks a key id: 1–64 of `A–Z a–z 0–9 -` (no `_`, which separates id and secret).
pub fn validate_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Marker type implementing [`Aggregate`] for API keys.
pub struct ApiKey;

impl Aggregate for ApiKey {
    type State = ApiKeyState;
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;

    fn stream(id: &str) -> String {
        apikey_stream(id)
    }

    fn decide(
        state: &ApiKeyState,
        command: ApiKeyCommand,
    ) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        match command {
            ApiKeyCommand::Issue(issue) => {
                if state.key.is_some() || state.revoked {
                    return Err(ApiKeyError::AlreadyIssued(issue.key_id));
                }
                if !validate_key_id(&issue.key_id) {
                    return Err(invalid("key_id", "must be 1 to 64 of A-Z a-z 0-9 -"));
                }
                validate_name(&issue.name)?;
                validate_scopes(&issue.scopes)?;
                validate_limits(&issue.rate_limits)?;
                validate_cameras(&issue.camera_ids)?;
                if issue.expires_at.is_some_and(|t| t <= issue.now) {
                    return Err(invalid("expires_at", "must lie in the future"));
                }
                Ok(vec![ApiKeyEvent::Issued(ApiKeyIssued {
                    key_id: issue.key_id,
                    name: issue.name.trim().to_string(),
                    scopes: issue.scopes,
                    key_hash: issue.key_hash,
                    rate_limits: issue.rate_limits,
                    expires_at: issue.expires_at,
                    camera_ids: issue.camera_ids,
                })])
            }
            ApiKeyCommand::Update(patch) => {
                let key = state.key.as_ref().ok_or(ApiKeyError::NotFound)?;
                let mut change = ApiKeyUpdated {
                    key_id: key.key_id.clone(),
                    ..Default::default()
                };
                if let Some(name) = patch.name {
                    validate_name(&name)?;
                    let name = name.trim().to_string();
                    change.name = (name != key.name).then_some(name);
                }
                if let Some(scopes) = patch.scopes {
                    validate_scopes(&scopes)?;
                    change.scopes = (scopes != key.scopes).then_some(scopes);
                }
                if let Some(limits) = patch.rate_limits {
                    let limits = limits.apply(key.rate_limits);
                    validate_limits(&limits)?;
                    change.rate_limits = (limits != key.rate_limits).then_some(limits);
                }
                if let Some(ids) = patch.camera_ids {
                    validate_cameras(&ids)?;
                    change.camera_ids = (ids != key.camera_ids).then_some(ids);
                }
                if let Some(enabled) = patch.enabled {
                    change.enabled = (enabled != key.enabled).then_some(enabled);
                }
                if change
                    == (ApiKeyUpdated {
                        key_id: key.key_id.clone(),
                        ..Default::default()
                    })
                {
                    Ok(vec![])
                } else {
                    Ok(vec![ApiKeyEvent::Updated(change)])
                }
            }
            ApiKeyCommand::Revoke => {
                let key = state.key.as_ref().ok_or(ApiKeyError::NotFound)?;
                Ok(vec![ApiKeyEvent::Revoked(ApiKeyRevoked {
                    key_id: key.key_id.clone(),
                })])
            }
        }
    }

    fn evolve(mut state: ApiKeyState, event: &ApiKeyEvent, at: DateTime<Utc>) -> ApiKeyState {
        match event {
            ApiKeyEvent::Issued(e) => {
                state.key = Some(ApiKeyRecord {
                    key_id: e.key_id.clone(),
                    name: e.name.clone(),
                    scopes: e.scopes.clone(),
                    key_hash: e.key_hash.clone(),
                    rate_limits: e.rate_limits,
                    expires_at: e.expires_at,
                    camera_ids: e.camera_ids.clone(),
                    enabled: true,
                    created_at: at,
                    updated_at: at,
                });
            }
            ApiKeyEvent::Updated(e) => {
                if let Some(key) = state.key.as_mut() {
                    if let Some(v) = &e.name {
                        key.name = v.clone();
                    }
                    if let Some(v) = &e.scopes {
                        key.scopes = v.clone();
                    }
                    if let Some(v) = e.rate_limits {
                        key.rate_limits = v;
                    }
                    if let Some(v) = &e.camera_ids {
                        key.camera_ids = v.clone();
                    }
                    if let Some(v) = e.enabled {
                        key.enabled = v;
                    }
                    key.updated_at = at;
                }
            }
            ApiKeyEvent::Revoked(_) => {
                state.key = None;
                state.revoked = true;
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::testing;

    fn limits() -> RateLimits {
        RateLimits {
            standard: 60,
            media: 10,
            search: 5,
            ingest: 100,
        }
    }

    fn issue(id: &str) -> IssueApiKey {
        IssueApiKey {
            key_id: id.into(),
            name: "dashboard".into(),
            scopes: vec!["read:cameras".into()],
            key_hash: "00".repeat(32),
            rate_limits: limits(),
            expires_at: None,
            camera_ids: vec![],
            now: Utc::now(),
        }
    }

    fn given_when(
        events: &[ApiKeyEvent],
        command: ApiKeyCommand,
    ) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        testing::when::<ApiKey>(events, command)
    }

    fn issued(id: &str) -> ApiKeyEvent {
        given_when(&[], ApiKeyCommand::Issue(issue(id)))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn issue_validates_every_field() {
        let field = |cmd: IssueApiKey| match given_when(&[], ApiKeyCommand::Issue(cmd)) {
            Err(ApiKeyError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut c = issue("k");
        c.scopes = vec!["read:cameras".into(), "fly".into()];
        assert_eq!(field(c), "scopes[1]");
        let mut c = issue("k");
        c.scopes = vec![];
        assert_eq!(field(c), "scopes");
        let mut c = issue("k");
        c.rate_limits.search = 0;
        assert_eq!(field(c), "rate_limits.search");
        let mut c = issue("k");
        c.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        assert_eq!(field(c), "expires_at");
        let mut c = issue("k");
        c.camera_ids = vec!["ok".into(), "not ok".into()];
        assert_eq!(field(c), "camera_ids[1]");
        assert_eq!(field(issue("has_underscore")), "key_id");
    }

    #[test]
    fn a_limits_patch_changes_only_its_tiers() {
        let patch = ApiKeyPatch {
            rate_limits: Some(RateLimitsPatch {
                search: Some(7),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events = given_when(&[issued("k")], ApiKeyCommand::Update(patch)).unwrap();
        let expected = RateLimits {
            search: 7,
            ..limits()
        };
        assert_eq!(
            events,
            vec![ApiKeyEvent::Updated(ApiKeyUpdated {
                key_id: "k".into(),
                rate_limits: Some(expected),
                ..Default::default()
            })]
        );
        let zero = ApiKeyPatch {
            rate_limits: Some(RateLimitsPatch {
                media: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            given_when(&[issued("k")], ApiKeyCommand::Update(zero)),
            Err(ApiKeyError::Invalid { field, .. }) if field == "rate_limits.media"
        ));
    }

    #[test]
    fn admin_implies_every_scope() {
        let ApiKeyEvent::Issued(mut e) = issued("k") else {
            panic!()
        };
        e.scopes = vec!["admin".into()];
        let state = ApiKey::evolve(ApiKeyState::default(), &ApiKeyEvent::Issued(e), Utc::now());
        let key = state.key.unwrap();
        assert!(key.has_scope("write:cameras") && key.has_scope("read:audit"));
    }

    #[test]
    fn disable_then_revoke_then_nothing() {
        let patch = ApiKeyPatch {
            enabled: Some(false),
            ..Default::default()
        };
        let events = given_when(&[issued("k")], ApiKeyCommand::Update(patch.clone())).unwrap();
        assert_eq!(
            events,
            vec![ApiKeyEvent::Updated(ApiKeyUpdated {
                key_id: "k".into(),
                enabled: Some(false),
                ..Default::default()
            })]
        );
        let history = [issued("k"), events[0].clone()];
        assert_eq!(
            given_when(&history, ApiKeyCommand::Update(patch)),
            Ok(vec![])
        );
        let revoked = given_when(&history, ApiKeyCommand::Revoke).unwrap();
        let history = [issued("k"), events[0].clone(), revoked[0].clone()];
        assert_eq!(
            given_when(&history, ApiKeyCommand::Revoke),
            Err(ApiKeyError::NotFound)
        );
        assert_eq!(
            given_when(&history, ApiKeyCommand::Issue(issue("k"))),
            Err(ApiKeyError::AlreadyIssued("k".into()))
        );
    }
}
