//! Links a phone can open: the media a message names, as an absolute, signed URL that works
//! without a key until it expires.
//!
//! The signature is an HMAC of `media:{sha256}:{expiry}` under the node's key pepper (nothing is
//! stored; every node sharing the pepper accepts it), the same one `POST
//! /api/v1/media/{sha256}/sign` hands out and `GET /api/v1/media/{sha256}/signed` checks.
//! Outbound messages (webhook bodies, MQTT) name media as [`MediaLinks::describe`] writes it:
//! the stable hash, the keyed API path, and — when `public_base_url` is set — the signed URL.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Longest a signed media URL may work: a week.
pub const MAX_TTL_SECS: u64 = 604_800;

/// Checks a `public_base_url` setting: empty, or an `http(s)` URL with a host and no query or
/// fragment.
pub fn validate_base_url(base: &str) -> Result<(), String> {
    if base.is_empty() {
        return Ok(());
    }
    let url = reqwest::Url::parse(base).map_err(|e| format!("`{base}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{base}` must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{base}` names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{base}` must have no query or fragment"));
    }
    Ok(())
}

/// Signs media URLs for outbound messages.
#[derive(Clone)]
pub struct MediaLinks {
    pepper: Arc<[u8]>,
    base: Option<String>,
    ttl_secs: u64,
}

impl std::fmt::Debug for MediaLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLinks")
            .field("base", &self.base)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl MediaLinks {
    /// Links signed under `pepper`, absolute under `base` (empty: none), working `ttl_secs`.
    pub fn new(pepper: &[u8], base: &str, ttl_secs: u64) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            pepper: pepper.into(),
            base: (!base.is_empty()).then(|| base.to_string()),
            ttl_secs: ttl_secs.clamp(1, MAX_TTL_SECS),
        }
    }

    /// The public base URL, without a trailing slash, when one is set.
    pub fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// The signature of `sha256`'s URL expiring at `exp` (Unix seconds).
    pub fn signature(&self, sha256: &str, exp: i64) -> String {
        crate::access::hash_secret(&self.pepper, &format!("media:{sha256}:{exp}"))
    }

    /// The signed path (and query) of `sha256`, working for `ttl_secs` from now.
    pub fn signed_path(&self, sha256: &str, ttl_secs: u64) -> (String, DateTime<Utc>) {
        let expires_at = Utc::now() + chrono::Duration::seconds(ttl_secs as i64);
        let exp = expires_at.timestamp();
        (
            format!(
                "/api/v1/media/{sha256}/signed?exp={exp}&sig={}",
                self.signature(sha256, exp)
            ),
            expires_at,
        )
    }

    /// The absolute signed URL of `sha256` and when it stops working, when a base URL is set.
    pub fn absolute(&self, sha256: &str) -> Option<(String, DateTime<Utc>)> {
        let base = self.base.as_deref()?;
        let (path, expires_at) = self.signed_path(sha256, self.ttl_secs);
        Some((format!("{base}{path}"), expires_at))
    }

    /// How an outbound message names one media object: `sha256`, the keyed `path`, and with a
    /// base URL set, `url` (absolute, signed) and `expires_at`.
    pub fn describe(&self, sha256: &str) -> Value {
        let mut out = json!({
            "sha256": sha256,
            "path": format!("/api/v1/media/{sha256}"),
        });
        if let Some((url, expires_at)) = self.absolute(sha256) {
            out["url"] = json!(url);
            out["expires_at"] = json!(expires_at);
        }
        out
    }
}

/// The media an event's payload names: every `blob` (a frame) and `crop` (a face crop) that is a
/// SHA-256, each once.
pub fn media_in(payload: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match v {
                        Value::String(s)
                            if matches!(key.as_str(), "blob" | "crop")
                                && vigil_actors::blob::is_blob_id(s)
                                && !out.contains(s) =>
                        {
                            out.push(s.clone());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(payload, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_media_of_a_payload_are_its_frames_and_crops() {
        let other = "a".repeat(64);
        let payload = json!({
            "evidence": [{"blob": SHA, "at": "…"}, {"blob": SHA}],
            "crop": other,
            "key_hash": "b".repeat(64),
            "blob": "not a hash",
        });
        let mut found = media_in(&payload);
        found.sort();
        assert_eq!(found, vec![SHA.to_string(), other]);
    }

    #[test]
    fn base_urls_are_checked() {
        assert!(validate_base_url("").is_ok());
        assert!(validate_base_url("https://vigil.example.com").is_ok());
        assert!(validate_base_url("http://10.0.0.5:8080/vigil/").is_ok());
        assert!(validate_base_url("vigil.example.com").is_err());
        assert!(validate_base_url("ftp://vigil.example.com").is_err());
        assert!(validate_base_url("https://vigil.example.com/?a=b").is_err());
    }

    #[test]
    fn messages_name_media_by_hash_and_path_and_with_a_base_by_a_signed_url() {
        let plain = MediaLinks::new(b"pepper", "", 60);
        let described = plain.describe(SHA);
        assert_eq!(described["path"], format!("/api/v1/media/{SHA}"));
        assert!(described.get("url").is_none());

        let links = MediaLinks::new(b"pepper", "https://vigil.example.com/", 60);
        let described = links.describe(SHA);
        let url = described["url"].as_str().unwrap();
        let prefix = format!("https://vigil.example.com/api/v1/media/{SHA}/signed?exp=");
        assert!(url.starts_with(&prefix), "{url}");
        let (exp, sig) = url[prefix.len()..].split_once("&sig=").unwrap();
        let exp: i64 = exp.parse().unwrap();
        assert!((exp - Utc::now().timestamp() - 60).abs() <= 2);
        assert_eq!(sig, links.signature(SHA, exp));
        assert_ne!(
            sig,
            MediaLinks::new(b"other", "", 60).signature(SHA, exp),
            "another pepper signs differently"
        );
    }
}
