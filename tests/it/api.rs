//! The REST API end to end, on SQLite and PostgreSQL.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestDb, TestServer, Which, call, expect_error};
use vigil::config::Config;

async fn server(which: Which) -> (TestServer, TestDb) {
    let db = TestDb::new(which).await;
    let server = TestServer::start(db.config()).await;
    (server, db)
}

async fn create(server: &TestServer, body: Value) -> reqwest::Response {
    server
        .req(Method::POST, "/api/v1/cameras")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn camera_lifecycle(which: Which) {
    let (server, db) = server(which).await;
    let resp = create(
        &server,
        json!({"id": "lobby", "name": "Lobby", "source": "rtsp://10.0.0.5/live", "sample_fps": 2.5,
               "features": {"crowd": true, "intrusion": true}, "prompt": "front door",
               "zones": [{"name": "door", "polygon": [{"x": 0.1, "y": 0.1}, {"x": 0.5, "y": 0.1}, {"x": 0.3, "y": 0.8}]}]}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    assert_eq!(resp.headers()["location"], "/api/v1/cameras/lobby");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(
        created["features"],
        json!({"crowd": true, "authorised": false, "critical": false, "sleep": false, "theft": false, "intrusion": true, "loitering": false, "clip_appearances": false})
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["version"], 1);

    // A generated id is a UUID v7.
    let resp = create(
        &server,
        json!({"name": "Yard", "source": "push", "enabled": false}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let yard: Value = resp.json().await.unwrap();
    let yard_id = uuid::Uuid::parse_str(yard["id"].as_str().unwrap()).unwrap();
    assert_eq!(yard_id.get_version_num(), 7);
    assert_eq!(yard["status"], "disabled");

    let resp = server
        .req(Method::GET, "/api/v1/cameras/lobby")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["zones"][0]["name"], "door");
    assert_eq!(got["sample_fps"], 2.5);
    assert_eq!(got["prompt"], "front door");

    // PATCH with the right If-Match; only the named flag changes.
    let resp = server
        .req(Method::PATCH, "/api/v1/cameras/lobby")
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Lobby East", "features": {"crowd": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["etag"], "\"2\"");
    let patched: Value = resp.json().await.unwrap();
    assert_eq!(patched["name"], "Lobby East");
    assert_eq!(patched["features"]["crowd"], false);
    assert_eq!(patched["features"]["intrusion"], true);
    assert_eq!(patched["created_at"], created["created_at"]);

    // The write is visible to the list right away (writes wait for the read model briefly).
    let list: Value = server
        .req(Method::GET, "/api/v1/cameras")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Lobby East") && names.contains(&"Yard"),
        "{list}"
    );

    // Audit shows the stream with envelopes; the request id is the correlation id.
    let audit: Value = server
        .req(Method::GET, "/api/v1/audit/streams/camera-lobby")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_type"], "camera.registered");
    assert_eq!(events[0]["correlation_id"], request_id.as_str());
    assert_eq!(events[0]["actor"], "key:config-admin");
    assert_eq!(events[1]["event_type"], "camera.updated");
    assert_eq!(
        events[1]["payload"],
        json!({"camera_id": "lobby", "name": "Lobby East", "features": {"crowd": false, "authorised": false, "critical": false, "sleep": false, "theft": false, "intrusion": true, "loitering": false, "clip_appearances": false}})
    );
    let backward: Value = server
        .req(
            Method::GET,
            "/api/v1/audit/streams/camera-lobby?direction=backward&limit=1",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(backward["events"][0]["stream_version"], 2);
    assert_eq!(backward["next_from"], 1);
    let log: Value = server
        .req(Method::GET, "/api/v1/audit/events?after=0&limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["events"].as_array().unwrap().len(), 2);
    assert_eq!(log["next_after"], 2);
    assert_eq!(log["head"], server.head().await);

    // DELETE, then the camera is gone and its id cannot come back.
    let resp = server
        .req(Method::DELETE, "/api/v1/cameras/lobby")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    expect_error(
        server
            .req(Method::GET, "/api/v1/cameras/lobby")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "CAMERA_NOT_FOUND",
    )
    .await;
    expect_error(
        server
            .req(Method::DELETE, "/api/v1/cameras/lobby")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "CAMERA_NOT_FOUND",
    )
    .await;
    expect_error(
        create(
            &server,
            json!({"id": "lobby", "name": "again", "source": "push"}),
        )
        .await,
        StatusCode::CONFLICT,
        "CAMERA_EXISTS",
    )
    .await;
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_camera_lifecycle() {
    camera_lifecycle(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_camera_lifecycle() {
    camera_lifecycle(Which::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursor_pagination_and_filters() {
    let (server, db) = server(Which::Sqlite).await;
    for i in 0..7 {
        let resp = create(&server, json!({"id": format!("c{i}"), "name": format!("cam {i}"), "source": "push", "enabled": i % 2 == 0})).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/cameras?limit=3&cursor={c}"),
            None => "/api/v1/cameras?limit=3".to_string(),
        };
        let page: Value = server
            .req(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());

    let disabled: Value = server
        .req(Method::GET, "/api/v1/cameras?enabled=false")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let disabled: Vec<&str> = disabled["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(disabled, vec!["c1", "c3", "c5"]);
    let pending: Value = server
        .req(Method::GET, "/api/v1/cameras?status=pending&limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["items"].as_array().unwrap().len(), 2);
    assert!(pending["next_cursor"].is_string());

    // min_position: a read that names a position the model has reached answers at once.
    let head = server.head().await;
    let resp = server
        .req(Method::GET, &format!("/api/v1/cameras?min_position={head}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["x-vigil-position"].to_str().unwrap(),
        head.to_string()
    );
    server.stop().await;
    db.cleanup().await;
}

/// Every bad request gets its status and the error shape, and appends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_documented_errors_and_change_nothing() {
    let (server, db) = server(Which::Sqlite).await;
    assert_eq!(
        create(
            &server,
            json!({"id": "cam", "name": "Cam", "source": "push"})
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let head = server.head().await;
    let post = |body: &'static str| {
        server
            .req(Method::POST, "/api/v1/cameras")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    expect_error(
        post("{\"name\": \"x\", ").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "MALFORMED_JSON",
    )
    .await;
    let body = expect_error(
        post(r#"{"name": "x", "source": "push", "colour": "red"}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "colour");
    let body = expect_error(
        post(r#"{"name": "x", "source": "push", "features": {"crowd": "maybe"}}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "features.crowd");
    let body = expect_error(
        post(r#"{"name": "x", "source": "push", "features": {"teleport": true}}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "features.teleport");
    let body = expect_error(
        post(r#"{"name": "x", "source": "ftp://h/x"}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "source");
    let body = expect_error(
        post(r#"{"name": "x", "source": "push", "sample_fps": 240}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "sample_fps");
    let body = expect_error(
        post(r#"{"name": "x", "source": "push", "zones": [{"name": "a", "polygon": [{"x": 0, "y": 0}, {"x": 2, "y": 0}, {"x": 0, "y": 1}]}]}"#).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "zones[0].polygon[1]");
    let body = expect_error(
        post(r#"{"source": "push"}"#).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "name");
    expect_error(
        post(r#"{"id": "cam", "name": "dup", "source": "push"}"#)
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "CAMERA_EXISTS",
    )
    .await;

    let form = server
        .req(Method::POST, "/api/v1/cameras")
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    expect_error(
        form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let huge = format!(
        r#"{{"name": "x", "source": "push", "prompt": "{}"}}"#,
        "a".repeat(2 << 20)
    );
    let resp = server
        .req(Method::POST, "/api/v1/cameras")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;

    // Query parameters.
    let body = expect_error(
        server
            .req(Method::GET, "/api/v1/cameras?status=exploded")
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "status");
    let body = expect_error(
        server
            .req(Method::GET, "/api/v1/cameras?cursor=bm9wZQ")
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "cursor");
    let body = expect_error(
        server
            .req(Method::GET, "/api/v1/cameras?limit=0")
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "limit");
    let body = expect_error(
        server
            .req(Method::GET, "/api/v1/cameras?enabled=perhaps")
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "enabled");
    let body = expect_error(
        server
            .req(
                Method::GET,
                "/api/v1/audit/streams/camera-cam?direction=sideways",
            )
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "direction");

    // Optimistic concurrency over HTTP.
    let stale = server
        .req(Method::PATCH, "/api/v1/cameras/cam")
        .header("if-match", "\"7\"")
        .json(&json!({"name": "new"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(stale, StatusCode::PRECONDITION_FAILED, "VERSION_MISMATCH").await;
    assert_eq!(body["error"]["details"]["current_version"], 1);
    let stale = server
        .req(Method::DELETE, "/api/v1/cameras/cam")
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    expect_error(stale, StatusCode::PRECONDITION_FAILED, "VERSION_MISMATCH").await;
    let garbage = server
        .req(Method::PATCH, "/api/v1/cameras/cam")
        .header("if-match", "banana")
        .json(&json!({"name": "new"}))
        .send()
        .await
        .unwrap();
    expect_error(
        garbage,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let missing = server
        .req(Method::PATCH, "/api/v1/cameras/ghost")
        .json(&json!({"name": "new"}))
        .send()
        .await
        .unwrap();
    expect_error(missing, StatusCode::NOT_FOUND, "CAMERA_NOT_FOUND").await;

    // Authentication.
    let no_key = server
        .client
        .post(server.url("/api/v1/cameras"))
        .json(&json!({"name": "x", "source": "push"}))
        .send()
        .await
        .unwrap();
    expect_error(no_key, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let wrong_key = server
        .client
        .get(server.url("/api/v1/cameras"))
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    expect_error(wrong_key, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Unknown routes and methods keep the shape too.
    expect_error(
        server
            .req(Method::GET, "/api/v1/nothing-here")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    expect_error(
        server
            .req(Method::PUT, "/api/v1/cameras/cam")
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;

    // A PATCH that changes nothing appends nothing either.
    let same = server
        .req(Method::PATCH, "/api/v1/cameras/cam")
        .json(&json!({"name": "Cam"}))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::OK);
    assert_eq!(same.headers()["etag"], "\"1\"");

    assert_eq!(
        server.head().await,
        head,
        "no request above appended an event"
    );
    let cam: Value = server
        .req(Method::GET, "/api/v1/cameras/cam")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cam["name"], "Cam");
    assert_eq!(cam["version"], 1);
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shell_docs_health_metrics_and_request_ids() {
    let (server, db) = server(Which::Sqlite).await;
    let doc: Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected: &[(&str, &[&str])] = &[
        ("/api/v1/cameras", &["get", "post"]),
        ("/api/v1/cameras/{id}", &["get", "patch", "delete"]),
        ("/api/v1/audit/streams/{stream}", &["get"]),
        ("/api/v1/audit/events", &["get"]),
        ("/api/v1/system/projections", &["get"]),
        ("/api/v1/api-keys", &["get", "post"]),
        ("/api/v1/api-keys/{id}", &["get", "patch", "delete"]),
        ("/api/v1/api-keys/{id}/usage", &["get"]),
        ("/health/live", &["get"]),
        ("/health/ready", &["get"]),
    ];
    for (path, methods) in expected {
        for method in *methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing from /openapi.json"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["ApiKey"]["name"],
        "X-API-Key"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["Bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/api/v1/cameras"]["post"]["x-vigil-scope"],
        "write:cameras"
    );
    assert_eq!(
        doc["paths"]["/api/v1/api-keys"]["post"]["x-vigil-scope"],
        "admin"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    // The committed copy of the document is current.
    let committed = std::fs::read_to_string(crate::support::repo_file("docs/openapi.json"))
        .expect("docs/openapi.json");
    assert!(
        committed.trim_end() == vigil::api::openapi_json().trim_end(),
        "docs/openapi.json is stale: run `vigil openapi > docs/openapi.json`"
    );

    for page in ["/docs", "/redoc"] {
        let resp = server.client.get(server.url(page)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{page}");
        assert!(
            resp.text().await.unwrap().contains("openapi"),
            "{page} loads the document"
        );
    }
    let live: Value = server
        .client
        .get(server.url("/health/live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["status"], "ok");
    create(&server, json!({"name": "x", "source": "push"})).await;
    let ready = server
        .client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["projections"][0]["name"], "cameras");
    assert_eq!(ready["projections"][0]["lag"], 0);
    let projections: Value = server
        .req(Method::GET, "/api/v1/system/projections")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(projections[0]["checkpoint"], projections[0]["head"]);

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("vigil_projection_lag{projection=\"cameras\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_event_log_head "), "{metrics}");

    let resp = server
        .client
        .get(server.url("/health/live"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    let resp = server
        .client
        .get(server.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert!(uuid::Uuid::parse_str(resp.headers()["x-request-id"].to_str().unwrap()).is_ok());
    server.stop().await;
    db.cleanup().await;
}

/// With no key configured, the first start generates one; only its keyed hash is stored, and
/// a restart accepts the same key without printing a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_key_is_generated_once_and_only_its_hash_is_stored() {
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.admin_key = String::new();
    let (app, generated) = vigil::app::App::open(config.clone()).await.unwrap();
    let key = generated.expect("a key is generated on first start");
    assert!(key.starts_with("vgl_bootstrap_") && key.len() > 60, "{key}");
    let principal = app
        .resolve_key(&key)
        .await
        .unwrap()
        .expect("the generated key works");
    assert_eq!(principal.scopes, vec!["admin".to_string()]);
    assert!(
        app.resolve_key("vgl_bootstrap_wrong")
            .await
            .unwrap()
            .is_err()
    );
    let stored = app.store().read_all(0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_type, "apikey.issued");
    let text = stored[0].payload.to_string();
    let secret = key.rsplit('_').next().unwrap();
    assert!(!text.contains(secret), "the secret itself is not stored");
    assert!(text.contains(&app.hash_secret(secret)));
    assert!(
        config.data_dir.join("key_pepper").exists(),
        "a pepper was generated"
    );
    drop(app);
    let (again, generated) = vigil::app::App::open(config).await.unwrap();
    assert!(generated.is_none(), "no second key");
    assert!(
        again.resolve_key(&key).await.unwrap().is_ok(),
        "same pepper, same key"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_filters_by_recording_time_and_exports_ndjson() {
    let (server, db) = server(Which::Sqlite).await;
    let mut marks = Vec::new();
    for id in ["t1", "t2", "t3"] {
        marks.push(chrono::Utc::now());
        assert_eq!(
            create(&server, json!({"id": id, "name": id, "source": "push"}))
                .await
                .status(),
            StatusCode::CREATED
        );
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let (from, to) = (marks[1].to_rfc3339(), marks[2].to_rfc3339());
    let page: Value = server
        .req(Method::GET, "/api/v1/audit/events")
        .query(&[("from", from.as_str()), ("to", to.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let streams: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream"].as_str().unwrap())
        .collect();
    assert_eq!(streams, vec!["camera-t2"], "{page}");
    let bad = server
        .req(Method::GET, "/api/v1/audit/events")
        .query(&[("from", to.as_str()), ("to", from.as_str())])
        .send()
        .await
        .unwrap();
    expect_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    let export = server
        .req(Method::GET, "/api/v1/audit/export?after=1")
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    assert!(
        export.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/x-ndjson")
    );
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one envelope per line"))
        .collect();
    let positions: Vec<u64> = lines
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (2..=server.head().await).collect::<Vec<_>>());
    let since: Value = server
        .req(Method::GET, "/api/v1/audit/export")
        .query(&[("from", from.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .count()
        .into();
    assert_eq!(since, 2);
    server.stop().await;
    db.cleanup().await;
}

/// `GET /api/v1/system/gpu` names the device the models run on: the CPU when the config
/// forces it; with `auto`, a physical wgpu adapter or else the CPU (CI has only Mesa's software
/// Vulkan adapter, which `auto` passes over); with `wgpu`, the adapter even when it is software.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_endpoint_reports_the_models_device() {
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.models_backend = vigil_models::BackendPreference::Cpu;
    let server = TestServer::start(config).await;
    let resp = server
        .req(Method::GET, "/api/v1/system/gpu")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["backend"], "cpu", "{body}");
    assert_eq!(body["preference"], "cpu", "{body}");
    assert_eq!(body["physical"], false, "{body}");
    server.stop().await;

    let server = TestServer::start(db.config()).await;
    let body: Value = server
        .req(Method::GET, "/api/v1/system/gpu")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["preference"], "auto", "{body}");
    match body["backend"].as_str() {
        Some("wgpu") => assert_eq!(
            body["physical"], true,
            "auto takes no software adapter: {body}"
        ),
        Some("cpu") => assert_eq!(body["adapter"], "flex (CPU)", "{body}"),
        _ => panic!("{body}"),
    }
    let wgpu = TestServer::start(Config {
        models_backend: vigil_models::BackendPreference::Wgpu,
        ..db.config()
    })
    .await;
    let (status, forced) = call(&wgpu, Method::GET, "/api/v1/system/gpu", None).await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(
        forced["backend"], "wgpu",
        "setup installs a software Vulkan adapter, which `wgpu` takes: {forced}"
    );
    assert!(
        forced["adapter"].as_str().is_some_and(|a| !a.is_empty()),
        "{forced}"
    );
    wgpu.stop().await;
    let anonymous = server
        .client
        .get(server.url("/api/v1/system/gpu"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn media_serves_ranges_and_signed_expiring_urls() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let sha = server.app.ingest().blobs().put(&bytes).await.unwrap();
    let path = format!("/api/v1/media/{sha}");

    // Whole, then ranges.
    let res = server.req(Method::GET, &path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[..]);
    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
    ] {
        let res = server
            .req(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes {start}-{end}/1000").as_str()
        );
        assert_eq!(
            res.bytes().await.unwrap().as_ref(),
            &bytes[start..=end],
            "{range}"
        );
    }
    let res = server
        .req(Method::GET, &path)
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-range"], "bytes */1000");
    let body = expect_error(
        res,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "RANGE_NOT_SATISFIABLE",
    )
    .await;
    assert_eq!(body["error"]["details"]["length"], 1000);

    // A signed URL works without a key, with ranges; a changed one or an expired one does not.
    let res = server
        .req(Method::POST, &format!("{path}/sign?ttl_secs=60"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let signed: Value = res.json().await.unwrap();
    let url = signed["url"].as_str().unwrap().to_string();
    let anonymous = reqwest::Client::new();
    let res = anonymous.get(server.url(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[..]);
    let res = anonymous
        .get(server.url(&url))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[..4]);
    let exp: i64 = url
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let tampered = url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600));
    expect_error(
        anonymous.get(server.url(&tampered)).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "SIGNATURE_INVALID",
    )
    .await;
    let past = exp - 7200;
    let expired = format!(
        "/api/v1/media/{sha}/signed?exp={past}&sig={}",
        server.app.links().signature(&sha, past)
    );
    expect_error(
        anonymous.get(server.url(&expired)).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "URL_EXPIRED",
    )
    .await;
    // Without a signature the media needs a key.
    expect_error(
        anonymous.get(server.url(&path)).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    // Signing needs the media to exist, and a sane lifetime.
    let missing = format!("/api/v1/media/{}/sign", "0".repeat(64));
    expect_error(
        server.req(Method::POST, &missing).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "MEDIA_NOT_FOUND",
    )
    .await;
    expect_error(
        server
            .req(Method::POST, &format!("{path}/sign?ttl_secs=0"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    server.stop().await;
}

/// The `$ref`'d schema a property or item stands for (bare or wrapped in `allOf`).
fn schema_ref(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()
        .or_else(|| schema["allOf"][0]["$ref"].as_str())
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
}

/// Every optional property of `schema` as `(JSON pointer of its object in the body, name)`,
/// and of the objects `example` holds under it (nested objects, first items of arrays).
fn optional_properties(
    doc: &Value,
    schema: &str,
    example: &Value,
    at: &str,
    out: &mut Vec<(String, String)>,
) {
    let schema = &doc["components"]["schemas"][schema];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        if !required.contains(&name.as_str()) {
            assert_eq!(
                property["nullable"], true,
                "the document marks optional `{at}/{name}` nullable"
            );
            out.push((at.to_string(), name.clone()));
        }
        let Some(value) = example.get(name) else {
            continue;
        };
        if let Some(inner) = schema_ref(property)
            && value.is_object()
        {
            optional_properties(doc, inner, value, &format!("{at}/{name}"), out);
        } else if let Some(items) = schema_ref(&property["items"])
            && let Some(first) = value.get(0).filter(|v| v.is_object())
        {
            optional_properties(doc, items, first, &format!("{at}/{name}/0"), out);
        }
    }
}

/// Every JSON request body of the document, with each optional field (top level and nested)
/// sent as `null`, is parsed as if the field were left out: never 400 or 422
/// `VALIDATION_FAILED`. A required field sent as `null` is 422 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_is_absent_for_every_optional_field_of_every_json_body() {
    let (server, db) = server(Which::Sqlite).await;
    // What the bodies address: a push camera, a key, an incident.
    let resp = create(
        &server,
        json!({"id": "base", "name": "Base", "source": "push"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let key: Value = server
        .req(Method::POST, "/api/v1/api-keys")
        .json(&json!({"name": "viewer", "scopes": ["read:cameras"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = key["key"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{key}"))
        .to_string();
    let alerts: Value = server
        .req(Method::POST, "/api/v1/webhooks/alerts")
        .json(
            &json!({"alerts": [{"status": "firing", "startsAt": "2026-11-23T10:00:00Z",
                                  "labels": {"alertname": "Base"}}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let incident_id = alerts["opened"][0].as_str().unwrap().to_string();

    // A valid body per operation (each answers without a validation error).
    let example = |op: &str| -> (String, Value) {
        let (path, body) = match op {
            "execute_action" => (
                "/api/v1/actions/execute".into(),
                json!({"action": "alert_security"}),
            ),
            "analyze_frame" => (
                "/api/v1/analyze".into(),
                json!({"image": "bm90IGEgcGljdHVyZQ==", "camera_id": "base"}),
            ),
            "create_api_key" => (
                "/api/v1/api-keys".into(),
                json!({"name": "k", "scopes": ["read:cameras"], "rate_limits": {"standard": 100}}),
            ),
            "update_api_key" => (
                format!("/api/v1/api-keys/{key_id}"),
                json!({"name": "viewer", "enabled": true, "rate_limits": {"standard": 100}}),
            ),
            "patch_calibration" => (
                "/api/v1/calibration".into(),
                json!({"global": {"crowd_threshold": 5, "loitering_seconds": 60.0}}),
            ),
            "put_calibration" => (
                "/api/v1/calibration".into(),
                json!({"global": {"crowd_threshold": 5}}),
            ),
            "create_camera" => (
                "/api/v1/cameras".into(),
                json!({"name": "Nulls", "source": "push", "features": {"crowd": true},
                       "zones": [{"name": "z", "polygon": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 1, "y": 1}]}]}),
            ),
            "test_camera" => (
                "/api/v1/cameras/test".into(),
                json!({"url": "http://127.0.0.1:9/", "timeout_ms": 200}),
            ),
            "update_camera" => (
                "/api/v1/cameras/base".into(),
                json!({"name": "Base", "prompt": "the door", "features": {"crowd": true, "intrusion": false}}),
            ),
            "update_incident" => (
                format!("/api/v1/incidents/{incident_id}"),
                json!({"is_read": true, "notes": "seen"}),
            ),
            "update_subject" => (
                "/api/v1/subjects/nobody".into(),
                json!({"name": "Nobody", "notes": "none"}),
            ),
            "alertmanager_webhook" => (
                "/api/v1/webhooks/alerts".into(),
                json!({"version": "4", "alerts": [{"status": "firing", "startsAt": "2026-11-23T10:00:00Z",
                        "labels": {"alertname": "Nulls"}, "fingerprint": "fpnulls"}]}),
            ),
            other => panic!("no example body for `{other}`: add one"),
        };
        (path, body)
    };

    let doc: Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut covered = 0;
    for (doc_path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(schema) =
                schema_ref(&op["requestBody"]["content"]["application/json"]["schema"])
            else {
                continue;
            };
            let op_id = op["operationId"].as_str().unwrap();
            let (path, body) = example(op_id);
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |body: Value| {
                let (server, path, method) = (&server, path.clone(), method.clone());
                async move {
                    let resp = server.req(method, &path).json(&body).send().await.unwrap();
                    let status = resp.status();
                    let answer: Value = resp.json().await.unwrap_or(Value::Null);
                    (status, answer)
                }
            };
            let (status, answer) = send(body.clone()).await;
            assert!(
                status.is_success() || answer["error"]["code"] != "VALIDATION_FAILED",
                "{op_id} ({doc_path}): the example is valid: {answer}"
            );
            let mut optional = vec![];
            optional_properties(&doc, schema, &body, "", &mut optional);
            assert!(!optional.is_empty(), "{op_id} has optional fields");
            for (at, name) in optional {
                let mut with_null = body.clone();
                let parent = if at.is_empty() {
                    &mut with_null
                } else {
                    with_null.pointer_mut(&at).unwrap()
                };
                parent[name.as_str()] = Value::Null;
                let (status, answer) = send(with_null.clone()).await;
                assert!(
                    status != StatusCode::BAD_REQUEST
                        && !status.is_server_error()
                        && answer["error"]["code"] != "VALIDATION_FAILED",
                    "{op_id}: `{at}/{name}` sent as null is refused: {status} {answer}"
                );
            }
            let required = doc["components"]["schemas"][schema]["required"].clone();
            for name in required.as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                let mut with_null = body.clone();
                with_null[name] = Value::Null;
                let (status, answer) = send(with_null).await;
                assert_eq!(
                    status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{op_id}: {answer}"
                );
                assert_eq!(answer["error"]["code"], "VALIDATION_FAILED", "{answer}");
                assert_eq!(
                    answer["error"]["details"]["field"], name,
                    "{op_id}: {answer}"
                );
            }
            covered += 1;
        }
    }
    assert!(covered >= 12, "every JSON body is covered ({covered})");
    server.stop().await;
    db.cleanup().await;
}
