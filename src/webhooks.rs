//! Outbound webhook delivery for response actions.
//!
//! A response action (`alert_security`, `lock_doors`, …) is delivered to each configured
//! [`WebhookTarget`] that [receives](WebhookTarget::receives) it, as a JSON `POST`:
//!
//! - `Content-Type: application/json`
//! - `X-Vigil-Delivery`: the delivery id, the same on every retry, for receivers to
//!   de-duplicate;
//! - `X-Vigil-Event`: what happened (`action.requested`, …);
//! - `X-Vigil-Timestamp`: the attempt's time in unix seconds;
//! - `X-Vigil-Signature`: `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}` keyed
//!   with the target's secret (only when it has one), signed again on every attempt;
//! - `User-Agent: vigil/{version}`;
//! - the [Standard Webhooks](https://www.standardwebhooks.com/) headers, so receivers can use
//!   its stock verifiers: `webhook-id` (the delivery id), `webhook-timestamp` (the attempt's unix
//!   seconds) and, when the target has a secret, `webhook-signature`: `v1,` and the base64
//!   HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with [`standard_key`].
//!
//! A 2xx is delivered. A 4xx other than 408 and 429 (and a redirect, which is not followed) is
//! permanent. A 5xx, 408, 429, connection error or timeout is tried again, up to the target's
//! `max_attempts`, after an exponential backoff with full jitter ([`backoff_ceiling`]), or after
//! the receiver's `Retry-After` seconds on 429 and 503 when those are no longer than the
//! target's `backoff_max_ms`. Receivers check a signature with [`verify`].

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The default per-attempt timeout, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The default number of attempts (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The default delay before the first retry (before jitter), in milliseconds.
pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 500;
/// The default longest delay between attempts, in milliseconds.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;

/// The header carrying the delivery id (the same on every attempt).
pub const HEADER_DELIVERY: &str = "X-Vigil-Delivery";
/// The header carrying the event name.
pub const HEADER_EVENT: &str = "X-Vigil-Event";
/// The header carrying the attempt's unix time in seconds.
pub const HEADER_TIMESTAMP: &str = "X-Vigil-Timestamp";
/// The header carrying the signature (`sha256=…`), when the target has a secret.
pub const HEADER_SIGNATURE: &str = "X-Vigil-Signature";

/// Standard Webhooks: the message id (the delivery id, the same on every attempt).
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: the attempt's unix time in seconds.
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: `v1,` and the base64 signature, when the target has a secret.
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The prefix of a secret in Standard Webhooks' format (base64 of the key after it).
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

const SIGNATURE_PREFIX: &str = "sha256=";
const NAME_MAX_LEN: usize = 64;

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_backoff_initial_ms() -> u64 {
    DEFAULT_BACKOFF_INITIAL_MS
}

fn default_backoff_max_ms() -> u64 {
    DEFAULT_BACKOFF_MAX_MS
}

/// One configured outbound webhook target (config key `webhooks`, a TOML array of tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// The target's unique name: 1 to 64 of `a-z`, `0-9`, `_` and `-`.
    pub name: String,
    /// Where deliveries are posted: an `http://` or `https://` URL.
    pub url: String,
    /// The HMAC-SHA256 key deliveries are signed with; empty sends them unsigned. A
    /// `whsec_`-prefixed secret is in Standard Webhooks' format (base64 of the key after the
    /// prefix) and is given as it is to a Standard Webhooks verifier; any other secret is
    /// given to one as [`standard_secret`] (`whsec_` and its base64).
    #[serde(default)]
    pub secret: String,
    /// The action names it receives (`alert_security`, …); empty receives every action.
    #[serde(default)]
    pub actions: Vec<String>,
    /// The timeout of one attempt, in milliseconds (default 5000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How many attempts a delivery gets, the first one included (default 5).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The backoff before the first retry, doubled for each further one, in milliseconds
    /// (default 500).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// The longest backoff between attempts, in milliseconds (default 30000).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

impl WebhookTarget {
    /// A target with no secret, every action and the default timeout, attempts and backoff.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            secret: String::new(),
            actions: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_initial_ms: DEFAULT_BACKOFF_INITIAL_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
        }
    }

    /// Checks the name, the URL, the action names, the timeout, the attempts and the backoff.
    pub fn validate(&self) -> Result<(), String> {
        if !is_name(&self.name, true) {
            return Err(format!(
                "webhook name `{}` must be 1 to {NAME_MAX_LEN} of a-z, 0-9, `_` and `-`",
                self.name
            ));
        }
        let name = &self.name;
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "webhook `{name}`: url `{}` must start with http:// or https://",
                self.url
            ));
        }
        match reqwest::Url::parse(&self.url) {
            Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err(format!("webhook `{name}`: url `{}` has no host", self.url)),
            Err(e) => {
                return Err(format!(
                    "webhook `{name}`: url `{}` is invalid: {e}",
                    self.url
                ));
            }
        }
        if let Some(action) = self.actions.iter().find(|a| !is_name(a, false)) {
            return Err(format!(
                "webhook `{name}`: action `{action}` must be 1 to {NAME_MAX_LEN} of a-z, 0-9 and `_`"
            ));
        }
        if let Some(encoded) = self.secret.strip_prefix(STANDARD_SECRET_PREFIX) {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(encoded) {
                Ok(key) if !key.is_empty() => {}
                _ => {
                    return Err(format!(
                        "webhook `{name}`: a secret starting with `{STANDARD_SECRET_PREFIX}` \
                         must be followed by a non-empty base64 key (Standard Webhooks' format)"
                    ));
                }
            }
        }
        if self.timeout_ms == 0 {
            return Err(format!("webhook `{name}`: timeout_ms must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(format!("webhook `{name}`: max_attempts must be at least 1"));
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return Err(format!(
                "webhook `{name}`: backoff_initial_ms ({}) must not exceed backoff_max_ms ({})",
                self.backoff_initial_ms, self.backoff_max_ms
            ));
        }
        Ok(())
    }

    /// Whether it receives the action named `action` (it does when its `actions` are empty).
    pub fn receives(&self, action: &str) -> bool {
        self.actions.is_empty() || self.actions.iter().any(|a| a == action)
    }
}

/// `a-z`, `0-9`, `_` (and `-` when `dash`), 1 to 64 of them.
fn is_name(s: &str, dash: bool) -> bool {
    (1..=NAME_MAX_LEN).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dash && b == b'-')
        })
}

/// Checks every target ([`WebhookTarget::validate`]) and that their names are unique.
pub fn validate_targets(targets: &[WebhookTarget]) -> Result<(), String> {
    let mut names = HashSet::new();
    for target in targets {
        target.validate()?;
        if !names.insert(target.name.as_str()) {
            return Err(format!(
                "webhook names must be unique: `{}` is configured more than once",
                target.name
            ));
        }
    }
    Ok(())
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature of a delivery: `sha256=` and the hex HMAC-SHA256, keyed with `secret`, of
/// `{timestamp}.{body}`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `signature` is [`sign`]'s for this secret, timestamp and body (compared in constant
/// time), and `timestamp` is no more than `tolerance_secs` away from `now` (unix seconds).
pub fn verify(
    secret: &str,
    timestamp: i64,
    body: &[u8],
    signature: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    if tolerance_secs < 0 || now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return false;
    }
    let Some(digest) = signature
        .strip_prefix(SIGNATURE_PREFIX)
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&digest).is_ok()
}

/// The HMAC key of a target's Standard Webhooks signature: the base64-decoded part of a
/// `whsec_` secret, else the secret's bytes.
pub fn standard_key(secret: &str) -> Vec<u8> {
    use base64::Engine;
    secret
        .strip_prefix(STANDARD_SECRET_PREFIX)
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// A target's secret as a Standard Webhooks verifier takes it: a `whsec_` secret as it is,
/// any other as `whsec_` and the base64 of its bytes.
pub fn standard_secret(secret: &str) -> String {
    use base64::Engine;
    if secret.starts_with(STANDARD_SECRET_PREFIX) {
        return secret.to_string();
    }
    format!(
        "{STANDARD_SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(secret.as_bytes())
    )
}

/// The Standard Webhooks signature of a delivery: `v1,` and the base64 HMAC-SHA256, keyed
/// with [`standard_key`], of `{id}.{timestamp}.{body}`.
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&standard_key(secret)).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The backoff before retry number `attempt` (1-based: 1 is the retry after the first
/// failure), before jitter: `backoff_initial_ms * 2^(attempt - 1)`, at most `backoff_max_ms`.
pub fn backoff_ceiling(target: &WebhookTarget, attempt: u32) -> Duration {
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_millis(
        target
            .backoff_initial_ms
            .saturating_mul(factor)
            .min(target.backoff_max_ms),
    )
}

/// The backoff before retry number `attempt` with full jitter: uniform in
/// `[0, backoff_ceiling]`.
fn backoff(target: &WebhookTarget, attempt: u32) -> Duration {
    let ceiling = u64::try_from(backoff_ceiling(target, attempt).as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=ceiling))
}

/// One delivery: what is posted to a target, the same on every attempt.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The delivery's id (`X-Vigil-Delivery`), for receivers to de-duplicate retries.
    pub delivery_id: &'a str,
    /// What happened (`X-Vigil-Event`), e.g. `action.requested`.
    pub event: &'a str,
    /// The JSON body.
    pub body: &'a serde_json::Value,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered {
        /// The attempts it took.
        attempts: u32,
        /// The receiver's status.
        status: u16,
    },
    /// Every attempt failed, or one failed for good (a 4xx other than 408 and 429).
    Failed {
        /// The attempts made.
        attempts: u32,
        /// Why the last one failed (`HTTP 503 Service Unavailable`, `timed out after 5000 ms`,
        /// `connection refused (…)`).
        error: String,
    },
}

impl DeliveryOutcome {
    /// Whether the receiver accepted it.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered { .. })
    }

    /// The attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Delivered { attempts, .. } | Self::Failed { attempts, .. } => *attempts,
        }
    }
}

/// `vigil/{version}`.
fn user_agent() -> String {
    format!("vigil/{}", env!("CARGO_PKG_VERSION"))
}

/// An HTTP client for [`deliver`]: redirects are not followed, and there is no overall timeout
/// (each attempt has its target's `timeout_ms`).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("the webhook HTTP client builds (rustls with bundled roots)")
}

/// Why one attempt failed.
struct AttemptError {
    error: String,
    retry: bool,
    retry_after: Option<Duration>,
}

impl AttemptError {
    fn retry(error: String) -> Self {
        Self {
            error,
            retry: true,
            retry_after: None,
        }
    }

    fn permanent(error: String) -> Self {
        Self {
            error,
            retry: false,
            retry_after: None,
        }
    }
}

/// Posts `delivery` to `target`, trying again on 5xx, 408, 429, connection errors and timeouts
/// up to the target's `max_attempts`, with backoff and jitter in between (or the receiver's
/// `Retry-After` on 429 and 503 when it is no longer than `backoff_max_ms`). A 2xx is
/// delivered; any other 4xx (or a redirect) fails at once.
pub async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    delivery: Delivery<'_>,
) -> DeliveryOutcome {
    let body = match serde_json::to_vec(delivery.body) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            return DeliveryOutcome::Failed {
                attempts: 0,
                error: format!("the body does not serialise: {e}"),
            };
        }
    };
    let max_attempts = target.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match attempt_once(client, target, delivery, &body).await {
            Ok(status) => {
                tracing::debug!(
                    target_name = %target.name,
                    delivery_id = delivery.delivery_id,
                    attempt,
                    status,
                    "webhook delivered"
                );
                return DeliveryOutcome::Delivered {
                    attempts: attempt,
                    status,
                };
            }
            Err(failure) => failure,
        };
        if !failure.retry || attempt >= max_attempts {
            tracing::warn!(
                target_name = %target.name,
                delivery_id = delivery.delivery_id,
                attempt,
                max_attempts,
                error = %failure.error,
                permanent = !failure.retry,
                "webhook delivery failed"
            );
            return DeliveryOutcome::Failed {
                attempts: attempt,
                error: failure.error,
            };
        }
        let delay = match failure.retry_after {
            Some(after) if after <= Duration::from_millis(target.backoff_max_ms) => after,
            _ => backoff(target, attempt),
        };
        tracing::debug!(
            target_name = %target.name,
            delivery_id = delivery.delivery_id,
            attempt,
            max_attempts,
            error = %failure.error,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "webhook attempt failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// One attempt: the receiver's status when it is 2xx.
async fn attempt_once(
    client: &reqwest::Client,
    target: &WebhookTarget,
    delivery: Delivery<'_>,
    body: &Bytes,
) -> Result<u16, AttemptError> {
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = client
        .post(&target.url)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, user_agent())
        .header(HEADER_DELIVERY, delivery.delivery_id)
        .header(HEADER_EVENT, delivery.event)
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_WEBHOOK_ID, delivery.delivery_id)
        .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
        .body(body.clone());
    if !target.secret.is_empty() {
        request = request
            .header(HEADER_SIGNATURE, sign(&target.secret, timestamp, body))
            .header(
                HEADER_WEBHOOK_SIGNATURE,
                sign_standard(&target.secret, delivery.delivery_id, timestamp, body),
            );
    }
    let timeout = Duration::from_millis(target.timeout_ms.max(1));
    let response = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => {
            return Err(AttemptError::retry(format!(
                "timed out after {} ms",
                target.timeout_ms
            )));
        }
        Ok(Err(e)) => return Err(transport_error(&e)),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let mut error = status_error(status);
    if status.is_redirection() {
        error.push_str(" (redirects are not followed)");
    }
    let retry = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    let retry_after =
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            retry_after(response.headers())
        } else {
            None
        };
    Err(AttemptError {
        error,
        retry,
        retry_after,
    })
}

/// `HTTP 503 Service Unavailable`.
fn status_error(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// A `Retry-After` in seconds (the HTTP-date form is not used).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// A short description of a failure to get a response.
fn transport_error(e: &reqwest::Error) -> AttemptError {
    let mut root: &(dyn std::error::Error + 'static) = e;
    let mut refused = false;
    loop {
        if let Some(io) = root.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            refused = true;
        }
        match root.source() {
            Some(source) => root = source,
            None => break,
        }
    }
    if e.is_builder() {
        return AttemptError::permanent(format!("invalid request: {root}"));
    }
    if e.is_timeout() {
        return AttemptError::retry(format!("timed out: {root}"));
    }
    if e.is_connect() {
        let address = e
            .url()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_default();
        return AttemptError::retry(if refused {
            format!("connection refused ({address})")
        } else {
            format!("connection to {address} failed: {root}")
        });
    }
    AttemptError::retry(format!("request failed: {root}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const SECRET: &str = "s3cret";

    /// How the test receiver answers.
    #[derive(Clone)]
    struct Script {
        /// The first `fail_times` requests get `fail_status`, the rest 200.
        fail_times: usize,
        fail_status: u16,
        /// Sent with failures.
        retry_after: Option<&'static str>,
        /// Waited before answering.
        delay: Duration,
    }

    impl Script {
        fn ok() -> Self {
            Self::failing(0, 500)
        }

        fn failing(fail_times: usize, fail_status: u16) -> Self {
            Self {
                fail_times,
                fail_status,
                retry_after: None,
                delay: Duration::ZERO,
            }
        }
    }

    /// One request the receiver got.
    #[derive(Debug, Clone)]
    struct Received {
        method: String,
        path: String,
        /// Lower-case names.
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> &str {
            self.headers
                .get(&name.to_ascii_lowercase())
                .map(String::as_str)
                .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
        }
    }

    type Log = Arc<Mutex<Vec<Received>>>;

    /// A minimal HTTP/1.1 receiver on 127.0.0.1: its URL and what it received.
    async fn receiver(script: Script) -> (String, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, seen) = (script.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, script, seen).await;
                });
            }
        });
        (format!("http://{address}/hook"), log)
    }

    async fn serve(stream: TcpStream, script: Script, seen: Log) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(Received {
                method,
                path,
                headers,
                body,
            });
            seen.len() - 1
        };
        tokio::time::sleep(script.delay).await;
        let status = if index < script.fail_times {
            script.fail_status
        } else {
            200
        };
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Whatever");
        let mut response =
            format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n");
        if status != 200
            && let Some(after) = script.retry_after
        {
            response.push_str(&format!("Retry-After: {after}\r\n"));
        }
        response.push_str("\r\n");
        let mut stream = reader.into_inner();
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    }

    fn target(url: &str) -> WebhookTarget {
        WebhookTarget {
            secret: SECRET.into(),
            timeout_ms: 2_000,
            max_attempts: 4,
            backoff_initial_ms: 1,
            backoff_max_ms: 5,
            ..WebhookTarget::new("door_system", url)
        }
    }

    fn body() -> serde_json::Value {
        serde_json::json!({
            "action_id": "act-1",
            "action": "lock_doors",
            "camera_id": "cam-1",
            "notes": "person after hours",
        })
    }

    async fn send(target: &WebhookTarget, id: &str) -> DeliveryOutcome {
        let body = body();
        deliver(
            &client(),
            target,
            Delivery {
                delivery_id: id,
                event: "action.requested",
                body: &body,
            },
        )
        .await
    }

    fn received(log: &Log) -> Vec<Received> {
        log.lock().unwrap().clone()
    }

    /// Every request is a signed post of the body with the delivery's headers.
    fn assert_well_formed(request: &Received, id: &str) {
        let now = chrono::Utc::now().timestamp();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.body, serde_json::to_vec(&body()).unwrap());
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header(HEADER_DELIVERY), id);
        assert_eq!(request.header(HEADER_EVENT), "action.requested");
        assert_eq!(
            request.header("user-agent"),
            format!("vigil/{}", env!("CARGO_PKG_VERSION"))
        );
        let timestamp: i64 = request.header(HEADER_TIMESTAMP).parse().unwrap();
        let signature = request.header(HEADER_SIGNATURE);
        assert!(signature.starts_with("sha256="), "{signature}");
        assert!(verify(SECRET, timestamp, &request.body, signature, now, 60));
        assert!(!verify(
            "other",
            timestamp,
            &request.body,
            signature,
            now,
            60
        ));
    }

    /// Verifies each `(secret, request)` with the Standard Webhooks reference library from
    /// PyPI (`standardwebhooks`, installed into the venv by scripts/setup); one line per
    /// request: `ok` or why it was refused.
    fn verify_with_reference_library(cases: &[(String, &Received)]) -> Vec<String> {
        let venv = std::env::var("VIGIL_VENV").unwrap_or_else(|_| {
            format!("{}/.cache/vigil/venv", std::env::var("HOME").expect("HOME"))
        });
        let input: Vec<serde_json::Value> = cases
            .iter()
            .map(|(secret, r)| {
                serde_json::json!({
                    "secret": secret,
                    "body": String::from_utf8(r.body.clone()).unwrap(),
                    "headers": r.headers,
                })
            })
            .collect();
        let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
for case in json.load(sys.stdin):
    try:
        Webhook(case["secret"]).verify(case["body"], case["headers"])
        print("ok")
    except WebhookVerificationError as e:
        print("refused: " + str(e))
"#;
        let mut child = std::process::Command::new(format!("{venv}/bin/python"))
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{venv}/bin/python: {e} (run scripts/setup)"));
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&serde_json::to_vec(&input).unwrap())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the standardwebhooks library did not run (scripts/setup installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn the_standard_webhooks_reference_library_verifies_deliveries() {
        let (url, log) = receiver(Script::ok()).await;
        // A plain secret (given to verifiers as `whsec_` + base64) and one in Standard
        // Webhooks' own format.
        let plain = target(&url);
        let standard = WebhookTarget {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            ..target(&url)
        };
        standard.validate().unwrap();
        send(&plain, "dlv-sw-1").await;
        send(&standard, "dlv-sw-2").await;
        let got = received(&log);
        assert_eq!(got.len(), 2);
        for (request, id) in got.iter().zip(["dlv-sw-1", "dlv-sw-2"]) {
            assert_eq!(request.header(HEADER_WEBHOOK_ID), id);
            assert_eq!(
                request.header(HEADER_WEBHOOK_TIMESTAMP),
                request.header(HEADER_TIMESTAMP)
            );
            assert!(request.header(HEADER_WEBHOOK_SIGNATURE).starts_with("v1,"));
        }
        // Vigil's own signature still verifies, keyed with the secret as written.
        let now = chrono::Utc::now().timestamp();
        let ts: i64 = got[1].header(HEADER_TIMESTAMP).parse().unwrap();
        assert!(verify(
            &standard.secret,
            ts,
            &got[1].body,
            got[1].header(HEADER_SIGNATURE),
            now,
            60
        ));

        let mut tampered = got[0].clone();
        tampered.body.push(b' ');
        let verdicts = verify_with_reference_library(&[
            (standard_secret(&plain.secret), &got[0]),
            (standard.secret.clone(), &got[1]),
            // The wrong secret, and a body changed on the way: refused.
            (standard_secret("other"), &got[0]),
            (standard_secret(&plain.secret), &tampered),
        ]);
        assert_eq!(verdicts.len(), 4, "{verdicts:?}");
        assert_eq!(verdicts[0], "ok", "{verdicts:?}");
        assert_eq!(verdicts[1], "ok", "{verdicts:?}");
        assert!(verdicts[2].starts_with("refused"), "{verdicts:?}");
        assert!(verdicts[3].starts_with("refused"), "{verdicts:?}");
    }

    #[test]
    fn a_malformed_standard_secret_is_refused_by_the_config() {
        for secret in ["whsec_", "whsec_not base64!"] {
            let t = WebhookTarget {
                secret: secret.into(),
                ..WebhookTarget::new("door", "http://127.0.0.1:9/hook")
            };
            let err = t.validate().unwrap_err();
            assert!(err.contains("whsec_"), "{err}");
        }
        assert_eq!(standard_secret("whsec_AAAA"), "whsec_AAAA");
        assert_eq!(standard_secret("s3cret"), "whsec_czNjcmV0");
        assert_eq!(standard_key("whsec_czNjcmV0"), b"s3cret");
    }

    #[tokio::test]
    async fn delivers_on_the_first_attempt() {
        let (url, log) = receiver(Script::ok()).await;
        let outcome = send(&target(&url), "dlv-1").await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Delivered {
                attempts: 1,
                status: 200
            }
        );
        assert!(outcome.is_delivered());
        let requests = received(&log);
        assert_eq!(requests.len(), 1);
        assert_well_formed(&requests[0], "dlv-1");
    }

    #[tokio::test]
    async fn unsigned_without_a_secret() {
        let (url, log) = receiver(Script::ok()).await;
        let target = WebhookTarget {
            secret: String::new(),
            ..target(&url)
        };
        assert!(send(&target, "dlv-u").await.is_delivered());
        let requests = received(&log);
        assert_eq!(requests.len(), 1);
        assert!(!requests[0].headers.contains_key("x-vigil-signature"));
        assert_eq!(requests[0].header(HEADER_DELIVERY), "dlv-u");
    }

    #[tokio::test]
    async fn retries_503_with_the_same_delivery_id() {
        let (url, log) = receiver(Script::failing(2, 503)).await;
        let outcome = send(&target(&url), "dlv-2").await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Delivered {
                attempts: 3,
                status: 200
            }
        );
        let requests = received(&log);
        assert_eq!(requests.len(), 3);
        for request in &requests {
            assert_well_formed(request, "dlv-2");
        }
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let (url, log) = receiver(Script::failing(usize::MAX, 500)).await;
        let target = target(&url);
        let outcome = send(&target, "dlv-3").await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Failed {
                attempts: target.max_attempts,
                error: "HTTP 500 Internal Server Error".into(),
            }
        );
        assert_eq!(received(&log).len(), 4);
    }

    #[tokio::test]
    async fn retries_408_and_429() {
        for status in [408, 429] {
            let (url, log) = receiver(Script::failing(1, status)).await;
            let outcome = send(&target(&url), "dlv-r").await;
            assert_eq!(outcome.attempts(), 2, "{status}: {outcome:?}");
            assert!(outcome.is_delivered());
            assert_eq!(received(&log).len(), 2);
        }
    }

    #[tokio::test]
    async fn a_4xx_is_permanent() {
        let (url, log) = receiver(Script::failing(usize::MAX, 404)).await;
        let outcome = send(&target(&url), "dlv-4").await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Failed {
                attempts: 1,
                error: "HTTP 404 Not Found".into(),
            }
        );
        assert_eq!(received(&log).len(), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (url, log) = receiver(Script::failing(usize::MAX, 302)).await;
        let outcome = send(&target(&url), "dlv-5").await;
        let DeliveryOutcome::Failed { attempts, error } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(attempts, 1);
        assert!(error.starts_with("HTTP 302 Found"), "{error}");
        assert_eq!(received(&log).len(), 1);
    }

    #[tokio::test]
    async fn times_out_each_attempt() {
        let (url, log) = receiver(Script {
            delay: Duration::from_secs(5),
            ..Script::ok()
        })
        .await;
        let target = WebhookTarget {
            timeout_ms: 100,
            max_attempts: 2,
            ..target(&url)
        };
        let started = Instant::now();
        let outcome = send(&target, "dlv-6").await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Failed {
                attempts: 2,
                error: "timed out after 100 ms".into(),
            }
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(received(&log).len(), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connection_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let target = WebhookTarget {
            max_attempts: 2,
            ..target(&format!("http://{address}/hook"))
        };
        let outcome = send(&target, "dlv-7").await;
        let DeliveryOutcome::Failed { attempts, error } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(attempts, 2);
        assert_eq!(error, format!("connection refused ({address})"));
    }

    #[tokio::test]
    async fn honours_a_short_retry_after() {
        let (url, log) = receiver(Script {
            retry_after: Some("1"),
            ..Script::failing(1, 429)
        })
        .await;
        let target = WebhookTarget {
            backoff_max_ms: 5_000,
            ..target(&url)
        };
        let started = Instant::now();
        let outcome = send(&target, "dlv-8").await;
        assert_eq!(outcome.attempts(), 2);
        assert!(outcome.is_delivered());
        assert!(started.elapsed() >= Duration::from_millis(950));
        assert_eq!(received(&log).len(), 2);
    }

    #[tokio::test]
    async fn ignores_a_retry_after_beyond_the_backoff_max() {
        let (url, _log) = receiver(Script {
            retry_after: Some("3600"),
            ..Script::failing(1, 503)
        })
        .await;
        let started = Instant::now();
        let outcome = send(&target(&url), "dlv-9").await;
        assert_eq!(outcome.attempts(), 2);
        assert!(outcome.is_delivered());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let target = WebhookTarget {
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            ..WebhookTarget::new("t", "http://localhost/")
        };
        let ms = |attempt| backoff_ceiling(&target, attempt).as_millis();
        assert_eq!(ms(1), 500);
        assert_eq!(ms(2), 1_000);
        assert_eq!(ms(3), 2_000);
        assert_eq!(ms(6), 16_000);
        assert_eq!(ms(7), 30_000);
        assert_eq!(ms(64), 30_000);
        assert_eq!(ms(u32::MAX), 30_000);
        assert_eq!(ms(0), 500);
        for attempt in 1..10 {
            assert!(backoff(&target, attempt) <= backoff_ceiling(&target, attempt));
        }
    }

    #[test]
    fn sign_and_verify() {
        let body = br#"{"a":1}"#;
        let signature = sign("key", 1_700_000_000, body);
        assert!(signature.starts_with("sha256="));
        assert_eq!(signature.len(), "sha256=".len() + 64);
        assert_eq!(signature, sign("key", 1_700_000_000, body));
        assert!(verify(
            "key",
            1_700_000_000,
            body,
            &signature,
            1_700_000_010,
            300
        ));
        assert!(verify(
            "key",
            1_700_000_000,
            body,
            &signature,
            1_699_999_990,
            300
        ));
        // Wrong secret, body, timestamp or form.
        assert!(!verify(
            "nope",
            1_700_000_000,
            body,
            &signature,
            1_700_000_000,
            300
        ));
        assert!(!verify(
            "key",
            1_700_000_000,
            b"{}",
            &signature,
            1_700_000_000,
            300
        ));
        assert!(!verify(
            "key",
            1_700_000_001,
            body,
            &signature,
            1_700_000_000,
            300
        ));
        assert!(!verify(
            "key",
            1_700_000_000,
            body,
            &signature[7..],
            1_700_000_000,
            300
        ));
        assert!(!verify(
            "key",
            1_700_000_000,
            body,
            "sha256=zz",
            1_700_000_000,
            300
        ));
        // Stale.
        assert!(!verify(
            "key",
            1_700_000_000,
            body,
            &signature,
            1_700_000_301,
            300
        ));
        assert!(!verify(
            "key",
            1_700_000_000,
            body,
            &signature,
            1_700_000_000,
            -1
        ));
        assert!(verify(
            "key",
            1_700_000_000,
            body,
            &signature,
            1_700_000_300,
            300
        ));
    }

    #[test]
    fn receives_listed_actions_or_all() {
        let mut target = WebhookTarget::new("t", "http://localhost/");
        assert!(target.receives("alert_security"));
        target.actions = vec!["lock_doors".into(), "sound_alarm".into()];
        assert!(target.receives("lock_doors"));
        assert!(!target.receives("alert_security"));
    }

    #[test]
    fn validates_targets() {
        let good = WebhookTarget::new("door-system_2", "https://doors.example.com/hook");
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(
            WebhookTarget::new("a", "http://10.0.0.5:8080/x").validate(),
            Ok(())
        );
        for name in ["", "Doors", "door system", "door.system", &"a".repeat(65)] {
            let target = WebhookTarget {
                name: name.into(),
                ..good.clone()
            };
            assert!(target.validate().is_err(), "name {name:?}");
        }
        for url in [
            "",
            "doors.example.com",
            "ftp://doors.example.com/",
            "http://",
            "http://exa mple.com/",
        ] {
            let target = WebhookTarget {
                url: url.into(),
                ..good.clone()
            };
            assert!(target.validate().is_err(), "url {url:?}");
        }
        let invalid = [
            WebhookTarget {
                max_attempts: 0,
                ..good.clone()
            },
            WebhookTarget {
                timeout_ms: 0,
                ..good.clone()
            },
            WebhookTarget {
                backoff_initial_ms: 10,
                backoff_max_ms: 5,
                ..good.clone()
            },
            WebhookTarget {
                actions: vec!["Lock Doors".into()],
                ..good.clone()
            },
        ];
        for target in invalid {
            assert!(target.validate().is_err(), "{target:?}");
        }
        let other = WebhookTarget::new("alarm", "http://alarm.local/");
        assert_eq!(validate_targets(&[]), Ok(()));
        assert_eq!(validate_targets(&[good.clone(), other.clone()]), Ok(()));
        let duplicate = validate_targets(&[good.clone(), other, good.clone()]).unwrap_err();
        assert!(duplicate.contains("door-system_2"), "{duplicate}");
        let zero = WebhookTarget {
            max_attempts: 0,
            ..good
        };
        assert!(
            validate_targets(&[zero])
                .unwrap_err()
                .contains("max_attempts")
        );
    }

    #[test]
    fn deserialises_with_defaults() {
        #[derive(Deserialize)]
        struct Config {
            webhooks: Vec<WebhookTarget>,
        }
        let config: Config = toml::from_str(
            r#"
            [[webhooks]]
            name = "doors"
            url = "https://doors.example.com/hook"

            [[webhooks]]
            name = "alarm"
            url = "http://alarm.local/"
            secret = "k"
            actions = ["sound_alarm"]
            timeout_ms = 1000
            max_attempts = 3
            backoff_initial_ms = 100
            backoff_max_ms = 1000
            "#,
        )
        .unwrap();
        assert_eq!(
            config.webhooks[0],
            WebhookTarget::new("doors", "https://doors.example.com/hook")
        );
        assert_eq!(config.webhooks[1].max_attempts, 3);
        assert_eq!(config.webhooks[1].actions, ["sound_alarm"]);
        assert_eq!(validate_targets(&config.webhooks), Ok(()));
        let unknown =
            toml::from_str::<WebhookTarget>("name = \"a\"\nurl = \"http://a/\"\nretries = 3");
        assert!(unknown.is_err());
    }
}
