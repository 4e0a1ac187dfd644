//! Scoped API keys, rate limits, failed-attempt throttling, camera restrictions, revocation
//! across nodes, input limits, security headers and CORS.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{KEY, TestDb, TestServer, Which};

/// Issues a key with the admin key; returns (id, secret).
async fn issue(server: &TestServer, body: Value) -> (String, String) {
    let resp = server
        .req(Method::POST, "/api/v1/api-keys")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    let created: Value = resp.json().await.unwrap();
    (
        created["key"]["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

fn with_key(server: &TestServer, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    server
        .client
        .request(method, server.url(path))
        .header("x-api-key", key)
}

async fn code_of(resp: reqwest::Response) -> (StatusCode, String, Value) {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scoped_keys_get_403_outside_their_scopes() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let (id, secret) = issue(
        &server,
        json!({"name": "dashboard", "scopes": ["read:cameras"]}),
    )
    .await;
    assert!(secret.starts_with(&format!("vgl_{id}_")));

    let resp = with_key(&server, Method::GET, "/api/v1/cameras", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["x-ratelimit-limit"],
        "600",
        "the default standard limit"
    );
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "599");
    assert!(resp.headers().contains_key("x-ratelimit-reset"));
    let bearer = server
        .client
        .get(server.url("/api/v1/cameras"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        StatusCode::OK,
        "Authorization: Bearer works too"
    );

    let resp = with_key(&server, Method::POST, "/api/v1/cameras", &secret)
        .json(&json!({"name": "x", "source": "push"}))
        .send()
        .await
        .unwrap();
    let (status, code, body) = code_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    assert_eq!(body["error"]["details"]["required_scope"], "write:cameras");
    // Refused before the body is read: even a malformed body gets 403, not 400.
    let resp = with_key(&server, Method::POST, "/api/v1/cameras", &secret)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    for path in [
        "/api/v1/audit/events",
        "/api/v1/api-keys",
        "/api/v1/system/projections",
    ] {
        assert_eq!(
            with_key(&server, Method::GET, path, &secret)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // The secret never reaches the event store: only its keyed hash.
    let audit: Value = server
        .req(Method::GET, &format!("/api/v1/audit/streams/apikey-{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    let raw_secret = secret.rsplit('_').next().unwrap();
    assert!(!text.contains(raw_secret));
    assert_eq!(
        audit["events"][0]["payload"]["key_hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    server.stop().await;
    db.cleanup().await;
}

/// Every operation enforces exactly the scope the OpenAPI document declares for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_operation_enforces_its_declared_scope() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let doc: Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all: Vec<&str> = vigil_actors::aggregates::apikey::SCOPES
        .iter()
        .copied()
        .filter(|s| *s != "admin")
        .collect();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(scope) = op["x-vigil-scope"].as_str() else {
                continue;
            };
            if scope == "any" {
                // Every key may ask (`GET /api/v1/me`): a key with one scope learns its own.
                let (id, key) = issue(
                    &server,
                    json!({"name": "me", "scopes": ["ingest"], "camera_ids": ["door"]}),
                )
                .await;
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let resp = with_key(&server, method, path, &key).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "{path} with any key");
                let me: Value = resp.json().await.unwrap();
                assert_eq!(me["key_id"], id.as_str());
                assert_eq!(me["scopes"], json!(["ingest"]));
                assert_eq!(me["camera_ids"], json!(["door"]));
                let anonymous = server.client.get(server.url(path)).send().await.unwrap();
                assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
                checked += 1;
                continue;
            }
            let others: Vec<&str> = all.iter().copied().filter(|s| *s != scope).collect();
            let (_, without) = issue(&server, json!({"name": "without", "scopes": others})).await;
            let (_, with) = issue(&server, json!({"name": "with", "scopes": [scope]})).await;
            let concrete = path
                .replace("{id}", "nobody")
                .replace("{stream}", "camera-nobody");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |key: &str| {
                with_key(&server, method.clone(), &concrete, key)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
            };
            let refused = send(&without).await.unwrap();
            assert_eq!(
                refused.status(),
                StatusCode::FORBIDDEN,
                "{method} {path} without `{scope}`"
            );
            let allowed = send(&with).await.unwrap();
            assert!(
                ![StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED].contains(&allowed.status()),
                "{method} {path} with `{scope}` got {}",
                allowed.status()
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "checked {checked} operations");
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_limit_gets_429_with_headers_and_usage_counts_it() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let (id, secret) = issue(
        &server,
        json!({"name": "tight", "scopes": ["read:cameras"], "rate_limits": {"standard": 3}}),
    )
    .await;
    for remaining in ["2", "1", "0"] {
        let resp = with_key(&server, Method::GET, "/api/v1/cameras", &secret)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-ratelimit-limit"], "3");
        assert_eq!(resp.headers()["x-ratelimit-remaining"], remaining);
    }
    let resp = with_key(&server, Method::GET, "/api/v1/cameras/lobby", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let (_, code, _) = code_of(resp).await;
    assert_eq!(code, "RATE_LIMITED");
    // Other keys are not affected.
    assert_eq!(
        server
            .req(Method::GET, "/api/v1/cameras")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    server.app.flush_usage().await.unwrap();
    let usage: Value = server
        .req(Method::GET, &format!("/api/v1/api-keys/{id}/usage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["requests"], 3, "{usage}");
    assert_eq!(usage["throttled"], 1, "{usage}");
    let endpoints: Vec<&str> = usage["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints,
        vec!["GET /api/v1/cameras", "GET /api/v1/cameras/{}"]
    );
    assert!(usage["last_used_at"].is_string());
    // Changing the limit takes effect on the next request.
    let resp = server
        .req(Method::PATCH, &format!("/api/v1/api-keys/{id}"))
        .json(&json!({"rate_limits": {"standard": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["rate_limits"]["standard"], 100);
    assert_eq!(body["rate_limits"]["search"], 60, "other tiers kept");
    let resp = with_key(&server, Method::GET, "/api/v1/cameras", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-ratelimit-limit"], "100");
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_attempts_are_throttled_per_address() {
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.auth_failures_per_minute = 5;
    let server = TestServer::start(config).await;
    for _ in 0..5 {
        let (status, code, _) = code_of(
            with_key(&server, Method::GET, "/api/v1/cameras", "vgl_nobody_guess")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
        );
    }
    let resp = with_key(&server, Method::GET, "/api/v1/cameras", "vgl_nobody_guess")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    let (status, code, _) = code_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_FAILED_ATTEMPTS")
    );
    // While blocked, even the right key is refused from this address.
    let (status, ..) = code_of(
        server
            .req(Method::GET, "/api/v1/cameras")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn camera_restricted_keys_see_only_their_cameras() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    for id in ["a", "b", "c"] {
        let resp = server
            .req(Method::POST, "/api/v1/cameras")
            .json(&json!({"id": id, "name": id, "source": "push"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let (_, secret) = issue(&server, json!({"name": "site a", "scopes": ["read:cameras", "write:cameras", "read:audit"], "camera_ids": ["a", "c"]})).await;
    let list: Value = with_key(&server, Method::GET, "/api/v1/cameras", &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["a", "c"]);
    let page: Value = with_key(&server, Method::GET, "/api/v1/cameras?limit=1", &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["next_cursor"].as_str().unwrap().to_string();
    let page: Value = with_key(
        &server,
        Method::GET,
        &format!("/api/v1/cameras?limit=1&cursor={next}"),
        &secret,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(page["items"][0]["id"], "c");
    assert_eq!(
        with_key(&server, Method::GET, "/api/v1/cameras/a", &secret)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let (status, code, _) = code_of(
        with_key(&server, Method::GET, "/api/v1/cameras/b", &secret)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "CAMERA_NOT_FOUND")
    );
    let patch = with_key(&server, Method::PATCH, "/api/v1/cameras/b", &secret)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::NOT_FOUND);
    let delete = with_key(&server, Method::DELETE, "/api/v1/cameras/b", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);
    let create = with_key(&server, Method::POST, "/api/v1/cameras", &secret)
        .json(&json!({"name": "d", "source": "push"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    let audit = with_key(
        &server,
        Method::GET,
        "/api/v1/audit/streams/camera-b",
        &secret,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(audit.status(), StatusCode::FORBIDDEN);
    for (method, path, status) in [
        (
            Method::POST,
            "/api/v1/cameras/b/stop",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/cameras/b/snapshot",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            &format!("/api/v1/media/{}", "0".repeat(64)),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let resp = with_key(&server, method, path, &secret)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{path}");
    }
    let b: Value = server
        .req(Method::GET, "/api/v1/cameras/b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["name"], "b", "untouched");
    server.stop().await;
    db.cleanup().await;
}

/// Two nodes share one PostgreSQL database: a key revoked or disabled on one stops working on
/// the other with its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_and_disabling_apply_at_once_on_every_node() {
    let db = TestDb::new(Which::Postgres).await;
    let mut config = db.config();
    config.key_pepper = "shared-test-pepper".into();
    let node_a = TestServer::start(config.clone()).await;
    config.data_dir = db.dir.path().join("node-b");
    let node_b = TestServer::start(config).await;
    let (id, secret) = issue(
        &node_a,
        json!({"name": "roaming", "scopes": ["read:cameras"]}),
    )
    .await;
    assert_eq!(
        with_key(&node_b, Method::GET, "/api/v1/cameras", &secret)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let disable = node_a
        .req(Method::PATCH, &format!("/api/v1/api-keys/{id}"))
        .header("if-match", "\"1\"")
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(disable.status(), StatusCode::OK);
    let (status, code, _) = code_of(
        with_key(&node_b, Method::GET, "/api/v1/cameras", &secret)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "KEY_DISABLED")
    );
    let enable = node_a
        .req(Method::PATCH, &format!("/api/v1/api-keys/{id}"))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(enable.status(), StatusCode::OK);
    assert_eq!(
        with_key(&node_b, Method::GET, "/api/v1/cameras", &secret)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let revoke = node_a
        .req(Method::DELETE, &format!("/api/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    for node in [&node_a, &node_b] {
        let (status, code, _) = code_of(
            with_key(node, Method::GET, "/api/v1/cameras", &secret)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
        );
    }
    let gone = node_b
        .req(Method::GET, &format!("/api/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.status(),
        StatusCode::NOT_FOUND,
        "a revoked key reads as missing"
    );
    let listed: Value = node_b
        .req(Method::GET, "/api/v1/api-keys?include_revoked=true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(entry["revoked"], true);
    let active: Value = node_b
        .req(Method::GET, "/api/v1/api-keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !active["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str())
    );
    let again = node_a
        .req(Method::DELETE, &format!("/api/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // An expiring key stops at its expiry.
    let expires = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (_, short) = issue(
        &node_a,
        json!({"name": "short", "scopes": ["read:cameras"], "expires_at": expires}),
    )
    .await;
    assert_eq!(
        with_key(&node_b, Method::GET, "/api/v1/cameras", &short)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (status, code, _) = code_of(
        with_key(&node_b, Method::GET, "/api/v1/cameras", &short)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "KEY_EXPIRED")
    );
    node_a.stop().await;
    node_b.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_requests_are_validated_and_change_nothing_when_refused() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let head = server.head().await;
    let cases = [
        (json!({"name": "x", "scopes": ["fly"]}), "scopes[0]"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "", "scopes": ["search"]}), "name"),
        (
            json!({"name": "x", "scopes": ["search"], "rate_limits": {"search": 0}}),
            "rate_limits.search",
        ),
        (
            json!({"name": "x", "scopes": ["search"], "rate_limits": {"turbo": 5}}),
            "rate_limits.turbo",
        ),
        (
            json!({"name": "x", "scopes": ["search"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["search"], "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["search"], "camera_ids": ["ok", "not ok"]}),
            "camera_ids[1]",
        ),
    ];
    for (body, field) in cases {
        let (status, code, err) = code_of(
            server
                .req(Method::POST, "/api/v1/api-keys")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED"),
            "{body}"
        );
        assert_eq!(err["error"]["details"]["field"], field, "{body}");
    }
    // Per-route body cap: keys take 64 KiB although the server takes 1 MiB elsewhere.
    let big = json!({"name": "x", "scopes": ["search"], "camera_ids": vec!["c"; 40_000]});
    let (status, code, _) = code_of(
        server
            .req(Method::POST, "/api/v1/api-keys")
            .json(&big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    let (status, code, _) = code_of(
        server
            .req(Method::PATCH, "/api/v1/api-keys/ghost")
            .json(&json!({"name": "y"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "API_KEY_NOT_FOUND")
    );
    assert_eq!(server.head().await, head, "nothing appended");
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn security_headers_cors_and_slow_clients() {
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.request_timeout_secs = 1;
    let closed = TestServer::start(config.clone()).await;
    let resp = closed
        .req(Method::GET, "/api/v1/cameras")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        !resp.headers().contains_key("access-control-allow-origin"),
        "CORS is closed by default"
    );

    // A client that sends half a body and stalls gets 408 after the request time limit.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = closed.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/cameras HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut reply))
        .await
        .expect("answered")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("REQUEST_TIMEOUT"), "{reply}");
    closed.stop().await;

    config.cors_allowed_origins = vec!["https://console.example".into()];
    config.data_dir = db.dir.path().join("open");
    let open = TestServer::start(config).await;
    let allowed = open
        .req(Method::GET, "/api/v1/cameras")
        .header("origin", "https://console.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://console.example"
    );
    let other = open
        .req(Method::GET, "/api/v1/cameras")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    open.stop().await;
    db.cleanup().await;
}
