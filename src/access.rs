//! Access control at the edge: key hashing, per-key rate limits (governor), failed-attempt
//! throttling per client address, and usage counters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use vigil_projections::api_keys::EndpointUsage;
use vigil_schemas::events::RateLimits;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;
/// Limiters by key and tier, with the per-minute limit each was built for.
type LimiterMap = HashMap<(String, Tier), (u32, Arc<Limiter>)>;

/// The tier of endpoints a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Ordinary API calls.
    Standard,
    /// Frames, snapshots, media.
    Media,
    /// Searches.
    Search,
    /// Frame ingest.
    Ingest,
}

impl Tier {
    /// The tier of a route.
    pub fn of(method: &str, path: &str) -> Self {
        let ingest = method == "POST" && (path.ends_with("/frames") || path == "/api/v1/analyze");
        if ingest {
            Tier::Ingest
        } else if path.starts_with("/api/v1/search") {
            Tier::Search
        } else if path.ends_with("/snapshot")
            || path.ends_with("/frames")
            || path.contains("/media/")
        {
            Tier::Media
        } else {
            Tier::Standard
        }
    }

    /// This tier's per-minute limit in `limits`.
    pub fn limit_in(self, limits: &RateLimits) -> u32 {
        match self {
            Tier::Standard => limits.standard,
            Tier::Media => limits.media,
            Tier::Search => limits.search,
            Tier::Ingest => limits.ingest,
        }
    }
}

/// What goes into the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// Requests per minute.
    pub limit: u32,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// Seconds until the allowance is full again.
    pub reset_secs: u64,
    /// Seconds to wait, when refused.
    pub retry_after_secs: Option<u64>,
}

/// Per-key, per-tier rate limiters (one GCRA limiter each, replaced when the key's limit
/// changes).
#[derive(Default)]
pub struct KeyLimiters {
    limiters: Mutex<LimiterMap>,
}

impl KeyLimiters {
    /// Counts one request of `key_id` in `tier` against `per_minute`.
    pub fn check(&self, key_id: &str, tier: Tier, per_minute: u32) -> RateState {
        let per_minute = per_minute.max(1);
        let limiter = {
            let mut map = self.limiters.lock().expect("limiter lock");
            let entry = map
                .entry((key_id.to_string(), tier))
                .or_insert_with(|| (per_minute, Arc::new(new_limiter(per_minute))));
            if entry.0 != per_minute {
                *entry = (per_minute, Arc::new(new_limiter(per_minute)));
            }
            entry.1.clone()
        };
        let per_cell = 60.0 / f64::from(per_minute);
        match limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                RateState {
                    limit: per_minute,
                    remaining,
                    reset_secs: (f64::from(per_minute - remaining) * per_cell).ceil() as u64,
                    retry_after_secs: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                RateState {
                    limit: per_minute,
                    remaining: 0,
                    reset_secs: (f64::from(per_minute) * per_cell).ceil() as u64,
                    retry_after_secs: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                }
            }
        }
    }
}

fn new_limiter(per_minute: u32) -> Limiter {
    let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
    RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>()
}

/// Throttles failed authentication per client address: after `per_minute` failures an
/// address is refused (429) until its allowance refills, whatever key it sends.
pub struct FailureGuard {
    per_minute: u32,
    limiters: Mutex<HashMap<IpAddr, Arc<Limiter>>>,
    blocked_until: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailureGuard {
    /// A guard allowing `per_minute` failures per address.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            limiters: Mutex::default(),
            blocked_until: Mutex::default(),
        }
    }

    /// Seconds the address must still wait, if it is blocked.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let mut blocked = self.blocked_until.lock().expect("guard lock");
        match blocked.get(&ip) {
            Some(until) if *until > Instant::now() => {
                Some((*until - Instant::now()).as_secs_f64().ceil().max(1.0) as u64)
            }
            Some(_) => {
                blocked.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Records a failure; returns the seconds to wait when this one crossed the limit.
    pub fn failed(&self, ip: IpAddr) -> Option<u64> {
        let limiter = {
            let mut map = self.limiters.lock().expect("guard lock");
            if map.len() > 100_000 {
                map.clear(); // bounded memory under address spraying
            }
            map.entry(ip)
                .or_insert_with(|| Arc::new(new_limiter(self.per_minute)))
                .clone()
        };
        match limiter.check() {
            Ok(_) => None,
            Err(not_until) => {
                let wait = not_until
                    .wait_time_from(DefaultClock::default().now())
                    .max(Duration::from_secs(1));
                self.blocked_until
                    .lock()
                    .expect("guard lock")
                    .insert(ip, Instant::now() + wait);
                Some(wait.as_secs_f64().ceil() as u64)
            }
        }
    }
}

/// Usage counted on this node and not yet added to the database.
#[derive(Default)]
pub struct UsageCounter {
    pending: Mutex<HashMap<String, HashMap<String, EndpointUsage>>>,
}

impl UsageCounter {
    /// Counts one request of `key_id` on `endpoint`.
    pub fn record(&self, key_id: &str, endpoint: &str, throttled: bool) {
        let mut pending = self.pending.lock().expect("usage lock");
        let entry = pending
            .entry(key_id.to_string())
            .or_default()
            .entry(endpoint.to_string())
            .or_insert_with(|| EndpointUsage {
                endpoint: endpoint.to_string(),
                ..Default::default()
            });
        if throttled {
            entry.throttled += 1;
        } else {
            entry.requests += 1;
        }
        entry.last_used_at = Some(Utc::now());
    }

    /// The unflushed counts of one key.
    pub fn pending(&self, key_id: &str) -> Vec<EndpointUsage> {
        let pending = self.pending.lock().expect("usage lock");
        pending
            .get(key_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds every pending count to the database; counts that fail to write are kept.
    pub async fn flush(&self, pool: &sqlx::AnyPool) -> Result<(), sqlx::Error> {
        let taken = std::mem::take(&mut *self.pending.lock().expect("usage lock"));
        let mut failed = None;
        for (key_id, endpoints) in taken {
            let deltas: Vec<EndpointUsage> = endpoints.values().cloned().collect();
            if let Err(err) = vigil_projections::api_keys::add_usage(pool, &key_id, &deltas).await {
                let mut pending = self.pending.lock().expect("usage lock");
                let slot = pending.entry(key_id).or_default();
                for d in deltas {
                    let e = slot
                        .entry(d.endpoint.clone())
                        .or_insert_with(|| EndpointUsage {
                            endpoint: d.endpoint.clone(),
                            ..Default::default()
                        });
                    e.requests += d.requests;
                    e.throttled += d.throttled;
                    e.last_used_at = e.last_used_at.max(d.last_used_at);
                }
                failed = Some(err);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Keyed hash of a secret: HMAC-SHA256 under the node's pepper, as lower-case hex.
pub fn hash_secret(pepper: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).expect("HMAC takes any key length");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Splits a presented key `vgl_{key_id}_{secret}` into id and secret.
pub fn split_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix("vgl_")?;
    let (id, secret) = rest.split_once('_')?;
    (vigil_actors::aggregates::apikey::validate_key_id(id) && !secret.is_empty())
        .then_some((id, secret))
}

/// A label for usage counts that does not grow with ids: static path words stay, every other
/// segment becomes `{}`. `PATCH /api/v1/cameras/lobby` → `PATCH /api/v1/cameras/{}`.
pub fn route_label(method: &str, path: &str) -> String {
    const WORDS: &[&str] = &[
        "api",
        "v1",
        "cameras",
        "audit",
        "streams",
        "events",
        "system",
        "projections",
        "api-keys",
        "usage",
        "health",
        "live",
        "ready",
        "frames",
        "snapshot",
        "analyze",
        "search",
        "start",
        "stop",
        "test",
    ];
    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| if WORDS.contains(&s) { s } else { "{}" })
        .collect();
    format!("{method} /{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_id_and_secret() {
        assert_eq!(
            split_key("vgl_abc-1_s3cret_with_underscores"),
            Some(("abc-1", "s3cret_with_underscores"))
        );
        assert_eq!(split_key("vgl_abc"), None);
        assert_eq!(split_key("vgl__x"), None);
        assert_eq!(split_key("key_abc_x"), None);
    }

    #[test]
    fn hashes_depend_on_the_pepper() {
        let a = hash_secret(b"pepper-a", "secret");
        assert_eq!(a.len(), 64);
        assert_ne!(a, hash_secret(b"pepper-b", "secret"));
        assert!(constant_time_eq(&a, &hash_secret(b"pepper-a", "secret")));
        assert!(!constant_time_eq(&a, &hash_secret(b"pepper-a", "secreT")));
    }

    #[test]
    fn limiter_refuses_after_the_burst_and_reports_state() {
        let limiters = KeyLimiters::default();
        let first = limiters.check("k", Tier::Standard, 3);
        assert_eq!(
            (first.limit, first.remaining, first.retry_after_secs),
            (3, 2, None)
        );
        limiters.check("k", Tier::Standard, 3);
        limiters.check("k", Tier::Standard, 3);
        let refused = limiters.check("k", Tier::Standard, 3);
        assert_eq!(refused.remaining, 0);
        assert!(
            refused
                .retry_after_secs
                .is_some_and(|s| (1..=20).contains(&s)),
            "{refused:?}"
        );
        // Another tier and another key have their own allowance.
        assert!(
            limiters
                .check("k", Tier::Search, 3)
                .retry_after_secs
                .is_none()
        );
        assert!(
            limiters
                .check("other", Tier::Standard, 3)
                .retry_after_secs
                .is_none()
        );
        // A changed limit starts a fresh allowance.
        assert!(
            limiters
                .check("k", Tier::Standard, 10)
                .retry_after_secs
                .is_none()
        );
    }

    #[test]
    fn failures_block_an_address() {
        let guard = FailureGuard::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(guard.failed(ip), None);
        assert_eq!(guard.failed(ip), None);
        assert!(guard.failed(ip).is_some());
        assert!(guard.blocked(ip).is_some());
        assert!(guard.blocked("192.0.2.2".parse().unwrap()).is_none());
    }

    #[test]
    fn route_labels_hide_ids() {
        assert_eq!(
            route_label("PATCH", "/api/v1/cameras/lobby"),
            "PATCH /api/v1/cameras/{}"
        );
        assert_eq!(
            route_label("GET", "/api/v1/api-keys/abc/usage"),
            "GET /api/v1/api-keys/{}/usage"
        );
        assert_eq!(Tier::of("POST", "/api/v1/cameras/x/frames"), Tier::Ingest);
        assert_eq!(Tier::of("GET", "/api/v1/cameras/x/snapshot"), Tier::Media);
        assert_eq!(Tier::of("GET", "/api/v1/cameras"), Tier::Standard);
    }
}
