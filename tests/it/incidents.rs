//! Incidents: the workflow, queries, export and retention, calibration, Alertmanager alerts,
//! response actions delivered to a real HTTP receiver (retries, dead-letter queue, requeue),
//! and rules end to end on the pedestrian clip.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use vigil::config::{AutoAction, Config};
use vigil::service::clips::ClipLimits;
use vigil::webhooks::WebhookTarget;
use vigil_schemas::events::{FrameRef, IncidentOpened, IncidentSubjects, incident_stream};
use vigil_schemas::{DomainEvent, EventMeta, ExpectedVersion, IncidentEvent};

use crate::support::{
    KEY, TestDb, TestServer, Which, answer, assert_error, assert_every_rebuild_equals_live, call,
    stream_events, until,
};

/// Opens an `external` incident through the Alertmanager webhook; returns its id.
async fn alert(server: &TestServer, name: &str, severity: &str, camera: Option<&str>) -> String {
    let mut labels = json!({"alertname": name, "severity": severity});
    if let Some(c) = camera {
        labels["camera_id"] = json!(c);
    }
    let payload = json!({
        "version": "4", "status": "firing", "receiver": "vigil",
        "groupLabels": {}, "commonLabels": {}, "externalURL": "http://am:9093",
        "alerts": [{
            "status": "firing", "labels": labels,
            "annotations": {"summary": format!("{name} reported by the door controller")},
            "startsAt": Utc::now().to_rfc3339(), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": format!("fp{name}")
        }]
    });
    let (status, body) = call(
        server,
        Method::POST,
        "/api/v1/webhooks/alerts",
        Some(payload),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["opened"][0].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_records_who_and_why_and_refuses_invalid_moves_on_sqlite() {
    the_workflow_records_who_and_why_and_refuses_invalid_moves(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_records_who_and_why_and_refuses_invalid_moves_on_postgres() {
    the_workflow_records_who_and_why_and_refuses_invalid_moves(Which::Postgres).await;
}

async fn the_workflow_records_who_and_why_and_refuses_invalid_moves(which: Which) {
    let db = TestDb::new(which).await;
    let server = TestServer::start(db.config()).await;
    let id = alert(&server, "DoorForced", "critical", None).await;

    let (status, body) = call(
        &server,
        Method::GET,
        &format!("/api/v1/incidents/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let incident = &body["incident"];
    assert_eq!(incident["kind"], "external");
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["status"], "active");
    assert!(
        incident["reasoning"]
            .as_str()
            .unwrap()
            .contains("DoorForced reported by the door controller"),
        "{incident}"
    );

    // active → investigating (with notes) → resolved; read and acted on.
    let (status, body) = call(
        &server,
        Method::PATCH,
        &format!("/api/v1/incidents/{id}"),
        Some(json!({"status": "investigating", "notes": "guard on the way", "is_read": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "investigating");
    assert_eq!(body["is_read"], true);
    assert!(body["acknowledged_at"].is_string());
    let (status, body) = call(
        &server,
        Method::PATCH,
        &format!("/api/v1/incidents/{id}"),
        Some(json!({"status": "resolved", "notes": "door closed", "action_taken": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "resolved");
    assert!(body["resolved_at"].is_string());
    assert_eq!(body["notes"], "guard on the way\ndoor closed");

    // Invalid moves: 409, nothing written.
    let stream = incident_stream(&id);
    let before = stream_events(&server, &stream).await.len();
    for bad in [
        json!({"status": "active"}),
        json!({"status": "investigating", "is_read": false}),
    ] {
        let (status, body) = call(
            &server,
            Method::PATCH,
            &format!("/api/v1/incidents/{id}"),
            Some(bad),
        )
        .await;
        assert_error(status, &body, 409, "INVALID_TRANSITION");
        assert_eq!(body["error"]["details"]["from"], "resolved");
    }
    // Bad bodies: 422 / 400, nothing written.
    for (bad, code) in [
        (json!({}), 422),
        (json!({"status": "closed"}), 422),
        (json!({"notes": ""}), 422),
        (json!({"colour": "red"}), 422),
    ] {
        let (status, body) = call(
            &server,
            Method::PATCH,
            &format!("/api/v1/incidents/{id}"),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, code, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    let (status, body) = call(
        &server,
        Method::PATCH,
        "/api/v1/incidents/no-such-incident",
        Some(json!({"is_read": true})),
    )
    .await;
    assert_error(status, &body, 404, "INCIDENT_NOT_FOUND");
    let events = stream_events(&server, &stream).await;
    assert_eq!(events.len(), before, "a refused change writes nothing");

    // The audit stream names who did what and why.
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "incident.opened",
            "incident.status_changed",
            "incident.acknowledged",
            "incident.status_changed",
            "incident.action_taken"
        ]
    );
    let changes: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "incident.status_changed")
        .collect();
    assert_eq!(changes[0]["payload"]["from"], "active");
    assert_eq!(changes[0]["payload"]["to"], "investigating");
    assert_eq!(changes[0]["payload"]["notes"], "guard on the way");
    assert_eq!(changes[1]["payload"]["to"], "resolved");
    for e in &events[1..] {
        assert_eq!(e["actor"], "key:config-admin", "{e}");
    }
    // The detail view carries the same history.
    let (_, body) = call(
        &server,
        Method::GET,
        &format!("/api/v1/incidents/{id}"),
        None,
    )
    .await;
    assert_eq!(body["history"].as_array().unwrap().len(), events.len());
    assert_eq!(body["history"][1]["actor"], "key:config-admin");
    server.stop().await;
    db.cleanup().await;
}

/// Appends an incident with a given opening time straight to the store.
#[allow(clippy::too_many_arguments)] // one per column the queries filter on
async fn seed(
    server: &TestServer,
    id: &str,
    kind: &str,
    severity: &str,
    camera: &str,
    reasoning: &str,
    at: chrono::DateTime<Utc>,
    evidence: Vec<FrameRef>,
) {
    let opened = IncidentEvent::Opened(IncidentOpened {
        incident_id: id.into(),
        kind: vigil_schemas::events::IncidentKind::parse(kind).unwrap(),
        severity: vigil_schemas::events::Severity::parse(severity).unwrap(),
        confidence: 0.75,
        camera_id: Some(camera.into()),
        zone: None,
        reasoning: reasoning.into(),
        subjects: IncidentSubjects::default(),
        recommended_actions: vec![],
        evidence,
        dedup_key: format!("{camera}:{kind}:{id}"),
        source: format!("rule:{kind}"),
        observed_at: at,
    });
    server
        .app
        .store()
        .append(
            &incident_stream(id),
            ExpectedVersion::NoStream,
            vec![opened.to_new_event(at, &EventMeta::system())],
        )
        .await
        .unwrap();
}

/// Every read model, rebuilt from position 0 after the server stopped, equals the live one
/// table by table; those `names` hold rows.
async fn assert_rebuilds_equal(db: &TestDb, names: &[&str]) {
    let every = assert_every_rebuild_equals_live(db).await;
    for name in names {
        let (_, live) = every
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no projection `{name}`"));
        assert!(
            live.iter().any(|d| !d.starts_with("0:")),
            "{name} holds rows: {live:?}"
        );
    }
}

async fn wait_read_model(server: &TestServer) {
    let head = server.head().await;
    let status = server.app.projection_status("incidents").unwrap();
    assert!(status.wait_for(head, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_page_search_export_and_retention_deletes_with_media_on_sqlite() {
    queries_filter_page_search_export_and_retention_deletes_with_media(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_page_search_export_and_retention_deletes_with_media_on_postgres() {
    queries_filter_page_search_export_and_retention_deletes_with_media(Which::Postgres).await;
}

async fn queries_filter_page_search_export_and_retention_deletes_with_media(which: Which) {
    let db = TestDb::new(which).await;
    let server = TestServer::start(db.config()).await;
    let now = Utc::now();
    let blob = server
        .app
        .ingest()
        .blobs()
        .put(b"old evidence frame")
        .await
        .unwrap();
    let shared = server
        .app
        .ingest()
        .blobs()
        .put(b"shared evidence frame")
        .await
        .unwrap();
    let frame = |b: &str| FrameRef {
        persons: vec![],
        blob: b.to_string(),
        frame_number: 1,
        at: now,
    };
    seed(
        &server,
        "old",
        "crowd",
        "medium",
        "gate",
        "9 persons near the turnstiles",
        now - chrono::Duration::days(40),
        vec![frame(&blob), frame(&shared)],
    )
    .await;
    seed(
        &server,
        "i1",
        "intrusion",
        "high",
        "gate",
        "a person entered restricted zone 'yard'",
        now - chrono::Duration::hours(2),
        vec![frame(&shared)],
    )
    .await;
    seed(
        &server,
        "i2",
        "loitering",
        "medium",
        "lobby",
        "a person stayed in zone 'bench' for 75 s",
        now - chrono::Duration::hours(1),
        vec![],
    )
    .await;
    for i in 0..5 {
        seed(
            &server,
            &format!("c{i}"),
            "crowd",
            "low",
            "lobby",
            &format!("{} persons in the frame", 5 + i),
            now - chrono::Duration::minutes(50 - i),
            vec![],
        )
        .await;
    }
    wait_read_model(&server).await;

    // Filters.
    let list = |q: &str| {
        let q = q.to_string();
        let server = &server;
        async move {
            let (status, body) =
                call(server, Method::GET, &format!("/api/v1/incidents?{q}"), None).await;
            assert_eq!(status, 200, "{q}: {body}");
            body
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&list("camera_id=gate").await),
        ["i1", "old"],
        "newest first"
    );
    assert_eq!(ids(&list("severity=high").await), ["i1"], "at least high");
    assert_eq!(ids(&list("kind=loitering").await), ["i2"]);
    assert_eq!(
        ids(&list(&format!(
            "from={}",
            (now - chrono::Duration::hours(3))
                .to_rfc3339()
                .replace('+', "%2B")
        ))
        .await)
        .len(),
        7
    );
    assert_eq!(ids(&list("is_read=true").await).len(), 0);
    // Pages of 3 cover all 8 once.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".into(),
        };
        let page = list(&q).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "no incident twice across pages");

    // Bad filters: documented 4xx.
    for (q, status_want) in [
        ("status=closed", 400),
        ("severity=urgent", 400),
        ("limit=0", 400),
        ("cursor=not-a-cursor", 422),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 422),
        ("is_read=maybe", 400),
    ] {
        let (status, body) = call(
            &server,
            Method::GET,
            &format!("/api/v1/incidents?{q}"),
            None,
        )
        .await;
        assert!(
            status == status_want || (status_want == 400 && status == 422),
            "{q}: {status} {body}"
        );
        assert!(body["error"]["code"].is_string(), "{q}: {body}");
    }

    // Stats.
    call(
        &server,
        Method::PATCH,
        "/api/v1/incidents/c0",
        Some(json!({"status": "false_positive", "is_read": true})),
    )
    .await;
    call(
        &server,
        Method::PATCH,
        "/api/v1/incidents/c1",
        Some(json!({"status": "resolved"})),
    )
    .await;
    call(
        &server,
        Method::PATCH,
        "/api/v1/incidents/c2",
        Some(json!({"status": "resolved", "notes": "crowd dispersed near the fountain"})),
    )
    .await;
    let (status, stats) = call(&server, Method::GET, "/api/v1/incidents/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total"], 8);
    assert_eq!(stats["active"], 5);
    assert_eq!(stats["by_kind"]["crowd"], 6);
    assert_eq!(stats["by_severity"]["low"], 5);
    assert_eq!(stats["by_status"]["resolved"], 2);
    let fp = stats["false_positive_rate"].as_f64().unwrap();
    assert!((fp - 1.0 / 3.0).abs() < 1e-9, "{stats}");
    assert!((stats["mean_confidence"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    assert!(stats["mean_seconds_to_acknowledge"].as_f64().unwrap() > 0.0);

    // Search: reasoning and notes, plain words.
    let search = |q: &str| {
        let q = q.to_string();
        let server = &server;
        async move {
            let (status, body) = call(
                server,
                Method::GET,
                &format!("/api/v1/incidents/search?q={q}"),
                None,
            )
            .await;
            assert_eq!(status, 200, "{q}: {body}");
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("turnstiles").await, ["old"]);
    assert_eq!(search("fountain").await, ["c2"], "notes are searched");
    assert_eq!(search("restricted%20yard").await, ["i1"]);
    assert!(search("helicopter").await.is_empty());
    // FTS syntax is taken as plain words, not as a query (which would fail).
    assert!(search("%22%20OR%20*").await.is_empty());
    let (status, body) = call(&server, Method::GET, "/api/v1/incidents/search?q=%20", None).await;
    assert_eq!(status, 422, "{body}");

    // Export: CSV with a header, NDJSON one object per line.
    let res = server
        .req(Method::GET, "/api/v1/incidents/export?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,kind,severity,status"));
    assert_eq!(lines.len(), 9, "{csv}");
    assert!(
        lines[1].starts_with("old,crowd,medium"),
        "oldest first: {csv}"
    );
    let res = server
        .req(
            Method::GET,
            "/api/v1/incidents/export?format=ndjson&camera_id=lobby",
        )
        .send()
        .await
        .unwrap();
    let ndjson = res.text().await.unwrap();
    let rows: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["camera_id"] == "lobby"));

    // Retention: only `old` is older than 30 days; its own frame goes, the shared one stays.
    let (status, body) = call(
        &server,
        Method::DELETE,
        "/api/v1/incidents/cleanup?days=30",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 1);
    assert_eq!(body["media_deleted"], 1);
    assert!(
        server
            .app
            .ingest()
            .blobs()
            .get(&blob)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        server
            .app
            .ingest()
            .blobs()
            .get(&shared)
            .await
            .unwrap()
            .is_some()
    );
    let (status, body) = call(&server, Method::GET, "/api/v1/incidents/old", None).await;
    assert_error(status, &body, 404, "INCIDENT_NOT_FOUND");
    let events = stream_events(&server, "incident-old").await;
    assert_eq!(events.last().unwrap()["event_type"], "incident.deleted");
    assert!(
        events.last().unwrap()["payload"]["reason"]
            .as_str()
            .unwrap()
            .contains("30 days")
    );
    let (status, body) = call(
        &server,
        Method::DELETE,
        "/api/v1/incidents/cleanup?days=0",
        None,
    )
    .await;
    assert!(status == 400 || status == 422, "{status} {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    call(
        &server,
        Method::PATCH,
        "/api/v1/calibration",
        Some(json!({"global": {"crowd_threshold": 4}})),
    )
    .await;
    wait_read_model(&server).await;
    server.stop().await;
    assert_rebuilds_equal(&db, &["incidents", "calibration"]).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_changes_are_events_with_camera_overrides() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let (_, defaults) = call(&server, Method::GET, "/api/v1/calibration/defaults", None).await;
    assert_eq!(defaults["crowd_threshold"], 5);
    let (_, body) = call(&server, Method::GET, "/api/v1/calibration", None).await;
    assert_eq!(body["global"], defaults);
    assert_eq!(body["version"], 0);

    let (status, body) = call(
        &server,
        Method::PATCH,
        "/api/v1/calibration",
        Some(json!({"global": {"crowd_threshold": 8, "loitering_seconds": 30},
                    "cameras": {"lobby": {"crowd_threshold": 3, "intrusion_schedule": [{"days": ["mon"], "start": "22:00", "end": "06:00"}]}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(
        &server,
        Method::GET,
        "/api/v1/calibration?camera_id=lobby",
        None,
    )
    .await;
    assert_eq!(body["global"]["crowd_threshold"], 8);
    assert_eq!(body["effective"]["crowd_threshold"], 3);
    assert_eq!(body["effective"]["loitering_seconds"], 30.0);
    assert_eq!(
        body["cameras"]["lobby"]["intrusion_schedule"][0]["start"],
        "22:00"
    );
    assert_eq!(body["version"], 1);

    // Out of range or malformed: 422 naming the field, nothing recorded.
    for bad in [
        json!({"global": {"crowd_threshold": 0}}),
        json!({"global": {"min_person_score": 1.5}}),
        json!({"cameras": {"lobby": {"intrusion_schedule": [{"start": "25:00", "end": "06:00"}]}}}),
        json!({"cameras": {"lobby": {"intrusion_schedule": [{"start": "06:00", "end": "06:00"}]}}}),
        json!({"global": {"sensitivity": 3}}),
        // Beyond a maximum the document declares.
        json!({"global": {"lying_seconds": 1e9}}),
    ] {
        let (status, body) = call(
            &server,
            Method::PATCH,
            "/api/v1/calibration",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{body}");
    }
    assert_eq!(stream_events(&server, "calibration-global").await.len(), 1);

    // Reset one camera, then everything.
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/calibration/reset?camera_id=lobby",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = call(
        &server,
        Method::GET,
        "/api/v1/calibration?camera_id=lobby",
        None,
    )
    .await;
    assert_eq!(body["effective"]["crowd_threshold"], 8);
    let (_, body) = call(&server, Method::POST, "/api/v1/calibration/reset", None).await;
    assert_eq!(body["global"], defaults);
    let events = stream_events(&server, "calibration-global").await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["payload"]["change"], "reset");
    assert_eq!(events[2]["actor"], "key:config-admin");

    // The rules listing says what each rule does, inert ones included.
    let (_, rules) = call(&server, Method::GET, "/api/v1/rules", None).await;
    let rules = rules["items"].as_array().unwrap();
    for feature in [
        "crowd",
        "intrusion",
        "loitering",
        "sleep",
        "critical",
        "authorised",
        "theft",
    ] {
        assert!(rules.iter().any(|r| r["feature"] == feature), "{feature}");
    }
    let authorised = rules.iter().find(|r| r["feature"] == "authorised").unwrap();
    assert_eq!(authorised["status"], "active");
    let poi = rules
        .iter()
        .find(|r| r["name"] == "person_of_interest")
        .unwrap();
    assert_eq!(poi["feature"], "always");
    let theft = rules.iter().find(|r| r["feature"] == "theft").unwrap();
    assert_eq!(theft["status"], "extension_point");
    server.stop().await;
    db.cleanup().await;
}

/// A webhook receiver on loopback: answers 500 while `failures` lasts (or always), records
/// every request.
#[derive(Clone, Default)]
struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
}

#[derive(Default)]
struct ReceiverState {
    failures: usize,
    always_fail: bool,
    /// Answer nothing (a receiver that hangs).
    hang: bool,
    requests: Vec<(BTreeMap<String, String>, Vec<u8>)>,
}

#[poem::handler]
async fn receive(
    req: &poem::Request,
    body: poem::Body,
    receiver: poem::web::Data<&Receiver>,
) -> poem::Response {
    let bytes = body.into_vec().await.unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let hang = {
        let mut state = receiver.state.lock().unwrap();
        state.requests.push((headers, bytes));
        state.hang
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let mut state = receiver.state.lock().unwrap();
    let fail = state.always_fail || state.failures > 0;
    state.failures = state.failures.saturating_sub(1);
    if fail {
        poem::Response::builder()
            .status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
            .finish()
    } else {
        poem::Response::builder()
            .status(poem::http::StatusCode::OK)
            .body("ok")
    }
}

impl Receiver {
    async fn start(failures: usize, always_fail: bool) -> (Self, String) {
        let receiver = Receiver::default();
        {
            let mut s = receiver.state.lock().unwrap();
            s.failures = failures;
            s.always_fail = always_fail;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
        let app = poem::EndpointExt::data(
            poem::Route::new().at("/hook", poem::post(receive)),
            receiver.clone(),
        );
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        (receiver, url)
    }

    fn requests(&self) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn target(name: &str, url: &str, actions: &[&str]) -> WebhookTarget {
    let mut t = WebhookTarget::new(name, url);
    t.secret = format!("secret-of-{name}");
    t.actions = actions.iter().map(|a| a.to_string()).collect();
    t.max_attempts = 4;
    t.backoff_initial_ms = 5;
    t.backoff_max_ms = 20;
    t.timeout_ms = 2000;
    t
}

async fn action(server: &TestServer, id: &str) -> Value {
    let (status, body) = call(server, Method::GET, &format!("/api/v1/actions/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn delivery_status(server: &TestServer, id: &str, want: &str) -> Value {
    until(10, &format!("action {id} to be {want}"), || async {
        let a = action(server, id).await;
        a["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == want)
            .then_some(a)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_delivered_signed_retried_dead_lettered_and_requeued() {
    let db = TestDb::new(Which::Sqlite).await;
    let (ok, ok_url) = Receiver::start(0, false).await;
    let (flaky, flaky_url) = Receiver::start(2, false).await;
    let (dead, dead_url) = Receiver::start(0, true).await;
    let server = TestServer::start(Config {
        webhooks: vec![
            target("desk", &ok_url, &["alert_security", "lock_doors"]),
            target("pager", &flaky_url, &["sound_alarm"]),
            target("archive", &dead_url, &["record_evidence"]),
        ],
        auto_actions: vec![AutoAction {
            kinds: vec!["external".into()],
            min_severity: "critical".into(),
            actions: vec!["lock_doors".into()],
        }],
        ..db.config()
    })
    .await;

    // A critical alert opens an incident; the automatic `lock_doors` goes to `desk`.
    let incident = alert(&server, "Break-in", "critical", Some("gate")).await;
    let auto_id = format!("auto-{incident}-lock_doors");
    let auto = until(10, "the automatic action", || async {
        let (status, body) = call(
            &server,
            Method::GET,
            &format!("/api/v1/actions/{auto_id}"),
            None,
        )
        .await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(auto["automatic"], true);
    delivery_status(&server, &auto_id, "delivered").await;

    // An operator's alert: delivered once, signed, with the incident in the body.
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "alert_security", "incident_id": incident, "notes": "send a guard"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["action_id"].as_str().unwrap().to_string();
    assert_eq!(body["camera_id"], "gate", "the incident's camera");
    let done = delivery_status(&server, &id, "delivered").await;
    assert_eq!(done["deliveries"][0]["attempts"], 1);
    assert_eq!(done["deliveries"][0]["http_status"], 200);
    let requests = ok.requests();
    let (headers, bytes) = requests
        .iter()
        .find(|(h, _)| h["x-vigil-delivery"] == format!("{id}:desk"))
        .expect("the receiver got the delivery");
    let ts: i64 = headers["x-vigil-timestamp"].parse().unwrap();
    assert!(vigil::webhooks::verify(
        "secret-of-desk",
        ts,
        bytes,
        &headers["x-vigil-signature"],
        Utc::now().timestamp(),
        300
    ));
    assert!(!vigil::webhooks::verify(
        "wrong",
        ts,
        bytes,
        &headers["x-vigil-signature"],
        Utc::now().timestamp(),
        300
    ));
    let sent: Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(sent["action"], "alert_security");
    assert_eq!(sent["incident"]["id"], incident.as_str());
    assert_eq!(sent["notes"], "send a guard");
    // The incident shows it was acted on, with both actions.
    let (_, detail) = call(
        &server,
        Method::GET,
        &format!("/api/v1/incidents/{incident}"),
        None,
    )
    .await;
    assert_eq!(detail["incident"]["action_taken"], true);
    assert_eq!(detail["actions"].as_array().unwrap().len(), 2);

    // Fails twice, then succeeds: one delivery id across the three attempts.
    let (_, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "sound_alarm", "camera_id": "gate"})),
    )
    .await;
    let id = body["action_id"].as_str().unwrap().to_string();
    let done = delivery_status(&server, &id, "delivered").await;
    assert_eq!(done["deliveries"][0]["attempts"], 3);
    let ids: Vec<String> = flaky
        .requests()
        .iter()
        .map(|(h, _)| h["x-vigil-delivery"].clone())
        .collect();
    assert_eq!(ids, vec![format!("{id}:pager"); 3]);

    // Always fails: dead-lettered after max_attempts, listed in the DLQ.
    let (_, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "record_evidence"})),
    )
    .await;
    let dead_id = body["action_id"].as_str().unwrap().to_string();
    delivery_status(&server, &dead_id, "dead").await;
    assert_eq!(dead.requests().len(), 4);
    let (_, dlq) = call(&server, Method::GET, "/api/v1/dlq", None).await;
    let items = dlq["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{dlq}");
    assert_eq!(items[0]["id"], format!("{dead_id}:archive"));
    assert_eq!(items[0]["attempts"], 4);
    assert!(
        items[0]["last_error"].as_str().unwrap().contains("500"),
        "{dlq}"
    );

    // The receiver recovers; a requeue delivers it and empties the queue.
    dead.state.lock().unwrap().always_fail = false;
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/dlq/{dead_id}:archive/requeue"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    delivery_status(&server, &dead_id, "delivered").await;
    let (_, dlq) = call(&server, Method::GET, "/api/v1/dlq", None).await;
    assert!(dlq["items"].as_array().unwrap().is_empty(), "{dlq}");
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/dlq/{dead_id}:archive/requeue"),
        None,
    )
    .await;
    assert_error(status, &body, 404, "DLQ_ENTRY_NOT_FOUND");

    // Dead again, then purged: discarded, not delivered.
    dead.state.lock().unwrap().always_fail = true;
    let (_, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "record_evidence"})),
    )
    .await;
    let purge_id = body["action_id"].as_str().unwrap().to_string();
    delivery_status(&server, &purge_id, "dead").await;
    let (status, body) = call(&server, Method::DELETE, "/api/v1/dlq", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["discarded"], 1);
    delivery_status(&server, &purge_id, "discarded").await;

    // Refusals write nothing.
    let head = server.head().await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "alert_authorities"})),
    )
    .await;
    assert_error(status, &body, 422, "ACTION_NOT_CONFIGURED");
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "webhook"})),
    )
    .await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "alert_security", "incident_id": "nope"})),
    )
    .await;
    assert_error(status, &body, 404, "INCIDENT_NOT_FOUND");
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "explode"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(server.head().await, head, "nothing was written");

    // Repeats of the same Alertmanager alert extend its incident; resolved ones change nothing.
    let payload = json!({"alerts": [
        {"status": "firing", "labels": {"alertname": "Heat"}, "startsAt": "2026-11-23T10:00:00Z", "fingerprint": "abc"},
        {"status": "resolved", "labels": {"alertname": "Old"}, "startsAt": "2026-11-23T09:00:00Z", "fingerprint": "def"}
    ]});
    let (_, first) = call(
        &server,
        Method::POST,
        "/api/v1/webhooks/alerts",
        Some(payload.clone()),
    )
    .await;
    let (_, second) = call(
        &server,
        Method::POST,
        "/api/v1/webhooks/alerts",
        Some(payload),
    )
    .await;
    assert_eq!(first["opened"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["resolved"], 1);
    assert_eq!(second["extended"], first["opened"], "{second}");
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/webhooks/alerts",
        Some(json!({"alerts": [{"status": "sleeping", "startsAt": "2026-11-23T10:00:00Z"}]})),
    )
    .await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");

    // A key without write:incidents may not act.
    let (_, key) = call(
        &server,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "viewer", "scopes": ["read:incidents"]})),
    )
    .await;
    let secret = key["secret"].as_str().unwrap_or_default().to_string();
    assert!(!secret.is_empty() && secret != KEY, "{key}");
    let res = server
        .client
        .post(server.url("/api/v1/actions/execute"))
        .header("x-api-key", &secret)
        .json(&json!({"action": "alert_security"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    call(
        &server,
        Method::PATCH,
        "/api/v1/calibration",
        Some(json!({"global": {"crowd_threshold": 4}})),
    )
    .await;
    wait_read_model(&server).await;
    let actions = server.app.projection_status("actions").unwrap();
    assert!(
        actions
            .wait_for(server.head().await, Duration::from_secs(10))
            .await
    );
    server.stop().await;
    assert_rebuilds_equal(&db, &["incidents", "actions", "calibration"]).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_in_flight_when_the_node_stops_is_delivered_after_restart() {
    let db = TestDb::new(Which::Sqlite).await;
    let (receiver, url) = Receiver::start(0, false).await;
    receiver.state.lock().unwrap().hang = true;
    let mut desk = target("desk", &url, &["alert_security"]);
    desk.timeout_ms = 600_000;
    let config = Config {
        webhooks: vec![desk],
        ..db.config()
    };
    let first = TestServer::start(config.clone()).await;
    let (status, body) = call(
        &first,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "alert_security"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["action_id"].as_str().unwrap().to_string();
    // The receiver has the request and is not answering: the node stops meanwhile.
    until(10, "the first attempt", || async {
        (!receiver.requests().is_empty()).then_some(())
    })
    .await;
    first.stop().await;
    receiver.state.lock().unwrap().hang = false;

    // The next node's dispatcher starts from a checkpoint before the request and delivers it.
    let second = TestServer::start(config).await;
    let done = delivery_status(&second, &id, "delivered").await;
    assert_eq!(done["deliveries"][0]["http_status"], 200);
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|(h, _)| h["x-vigil-delivery"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![format!("{id}:desk"); 2],
        "the same delivery id, for the receiver to de-duplicate"
    );
    let events = stream_events(&second, &format!("action-{id}")).await;
    let outcomes = events
        .iter()
        .filter(|e| e["event_type"] == "action.succeeded")
        .count();
    assert_eq!(outcomes, 1, "one outcome recorded");
    second.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_alert_opens_an_incident_at_its_start_on_sqlite() {
    an_old_alert_opens_an_incident_at_its_start(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_alert_opens_an_incident_at_its_start_on_postgres() {
    an_old_alert_opens_an_incident_at_its_start(Which::Postgres).await;
}

/// An Alertmanager alert that started an hour ago opens an incident whose times are the
/// alert's (`opened_at` = `last_seen_at` = `startsAt`), recorded now, readable at once; a
/// repeat does not move its times backwards.
async fn an_old_alert_opens_an_incident_at_its_start(which: Which) {
    let db = TestDb::new(which).await;
    let server = TestServer::start(db.config()).await;
    let started = (Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let payload = json!({"alerts": [{
        "status": "firing", "labels": {"alertname": "DoorForced", "severity": "high"},
        "startsAt": started, "endsAt": null, "generatorURL": null, "fingerprint": "fpold"
    }], "version": null, "receiver": null});
    for round in 0..2 {
        let res = server
            .req(Method::POST, "/api/v1/webhooks/alerts")
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("x-vigil-position"));
        let body: Value = res.json().await.unwrap();
        let id = if round == 0 {
            body["opened"][0].as_str()
        } else {
            body["extended"][0].as_str()
        }
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
        let (status, detail) = call(
            &server,
            Method::GET,
            &format!("/api/v1/incidents/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "readable at once: {detail}");
        let incident = &detail["incident"];
        let time = |name: &str| {
            chrono::DateTime::parse_from_rfc3339(incident[name].as_str().unwrap()).unwrap()
        };
        let start = chrono::DateTime::parse_from_rfc3339(&started).unwrap();
        assert_eq!(time("opened_at"), start, "{incident}");
        assert_eq!(time("last_seen_at"), start, "{incident}");
        assert!(
            time("recorded_at") > start + chrono::Duration::minutes(59),
            "{incident}"
        );
    }
    server.stop().await;
    assert_rebuilds_equal(&db, &["incidents"]).await;
    db.cleanup().await;
}

/// With `public_base_url` set, a webhook body names each evidence frame by hash and by an
/// absolute signed URL that a phone opens without a key until it expires, and not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_bodies_carry_signed_media_links_that_work_until_they_expire() {
    let db = TestDb::new(Which::Sqlite).await;
    let (desk, desk_url) = Receiver::start(0, false).await;
    let server = TestServer::start_public(Config {
        webhooks: vec![target("desk", &desk_url, &["alert_security"])],
        media_link_ttl_secs: 3,
        ..db.config()
    })
    .await;
    let jpeg = b"\xff\xd8 the bytes of an evidence frame \xff\xd9".to_vec();
    let sha = server.app.ingest().blobs().put(&jpeg).await.unwrap();
    let at = Utc::now();
    let id = uuid::Uuid::now_v7().to_string();
    seed(
        &server,
        &id,
        "intrusion",
        "high",
        "gate",
        "a person in the yard after hours",
        at,
        vec![FrameRef {
            persons: vec![],
            blob: sha.clone(),
            frame_number: 7,
            at,
        }],
    )
    .await;
    until(10, "the incident in the read model", || async {
        let (status, _) = call(
            &server,
            Method::GET,
            &format!("/api/v1/incidents/{id}"),
            None,
        )
        .await;
        (status == 200).then_some(())
    })
    .await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/actions/execute",
        Some(json!({"action": "alert_security", "incident_id": id})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let action_id = body["action_id"].as_str().unwrap().to_string();
    delivery_status(&server, &action_id, "delivered").await;
    let requests = desk.requests();
    let sent: Value = serde_json::from_slice(&requests[0].1).unwrap();
    let media = &sent["incident"]["evidence_media"][0];
    assert_eq!(media["sha256"], sha.as_str());
    assert_eq!(media["path"], format!("/api/v1/media/{sha}"));
    assert_eq!(
        sent["incident"]["evidence"][0],
        format!("/api/v1/media/{sha}")
    );
    let url = media["url"].as_str().expect("an absolute URL").to_string();
    assert!(
        url.starts_with(&format!("{}/api/v1/media/{sha}/signed?", server.base)),
        "{url}"
    );

    // No key: the URL is the authorisation.
    let plain = reqwest::Client::new();
    let opened = plain.get(&url).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    assert_eq!(opened.bytes().await.unwrap().as_ref(), jpeg.as_slice());
    let last = url.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let (status, body) = answer(plain.get(&tampered).send().await.unwrap()).await;
    assert_error(status, &body, 403, "SIGNATURE_INVALID");

    let expires: chrono::DateTime<Utc> = media["expires_at"].as_str().unwrap().parse().unwrap();
    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(1100);
    tokio::time::sleep(wait).await;
    let (status, body) = answer(plain.get(&url).send().await.unwrap()).await;
    assert_error(status, &body, 403, "URL_EXPIRED");
    server.stop().await;
    db.cleanup().await;
}

/// Records a clip of `bytes` random-looking bytes covering `incidents` directly in the store
/// (as a camera's recorder would), its file in the blob store; returns its media id.
async fn stored_clip(
    server: &TestServer,
    id: &str,
    incidents: &[&str],
    start: i64,
    bytes: usize,
) -> String {
    let file: Vec<u8> = (0..bytes)
        .map(|i| (i * 31 + start as usize) as u8)
        .collect();
    let media = server.app.ingest().blobs().put(&file).await.unwrap();
    let at = Utc::now() - chrono::Duration::minutes(10) + chrono::Duration::seconds(start);
    crate::support::record_clip(server, id, incidents, at, &media, bytes).await;
    media
}

/// Waits until the incidents and clips read models hold every stored event.
async fn wait_models(server: &TestServer) {
    crate::support::projections_caught_up(server, &["incidents", "clips"], 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_retention_keeps_the_budget_but_never_an_open_incidents_clip() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let open = alert(&server, "DoorForced", "critical", Some("gate")).await;
    let closed = alert(&server, "DoorHeld", "warning", Some("gate")).await;
    let (status, body) = call(
        &server,
        Method::PATCH,
        &format!("/api/v1/incidents/{closed}"),
        Some(json!({"status": "resolved", "notes": "closed by the guard"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Three clips of 600 KiB: the oldest holds the open incident.
    const KIB600: usize = 600 << 10;
    let pinned = stored_clip(&server, "c1", &[&open], 0, KIB600).await;
    let older = stored_clip(&server, "c2", &[&closed], 30, KIB600).await;
    let newer = stored_clip(&server, "c3", &[&closed, &open], 60, KIB600).await;
    wait_models(&server).await;
    let clips_of = |id: String| {
        let server = &server;
        async move {
            let (_, detail) = call(
                server,
                Method::GET,
                &format!("/api/v1/incidents/{id}"),
                None,
            )
            .await;
            detail["clips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(clips_of(open.clone()).await, ["c1", "c3"]);

    // A budget of 1 MiB: the unpinned clips go, oldest first, until the rest fits.
    let meta = vigil::service::clips::retention_meta();
    let done = vigil::service::clips::enforce(&server.app, ClipLimits::budget(1 << 20), &meta)
        .await
        .unwrap();
    assert_eq!(
        (done.deleted, done.bytes),
        (1, KIB600 as u64),
        "c2 alone brings it under"
    );
    assert_eq!(clips_of(closed.clone()).await, ["c3"]);
    let media_status = |sha: String| {
        let server = &server;
        async move {
            server
                .req(Method::GET, &format!("/api/v1/media/{sha}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(media_status(older).await, 404, "its file is removed");
    assert_eq!(media_status(pinned.clone()).await, 200);
    let deleted = stream_events(&server, "clip-c2").await;
    assert_eq!(deleted[1]["event_type"], "clip.deleted", "{deleted:?}");
    assert_eq!(deleted[1]["payload"]["reason"], "budget");
    // Even a tiny budget keeps what the open incident holds.
    vigil::service::clips::enforce(&server.app, ClipLimits::budget(1), &meta)
        .await
        .unwrap();
    assert_eq!(clips_of(open.clone()).await, ["c1", "c3"]);
    assert_eq!(media_status(newer.clone()).await, 200);

    // An age limit of two days: a three-day-old clip goes, unless an open incident holds it.
    const DAYS3: i64 = -3 * 86_400;
    let old = stored_clip(&server, "c4", &[&closed], DAYS3, 1000).await;
    stored_clip(&server, "c5", &[&closed, &open], DAYS3 + 30, 1000).await;
    wait_models(&server).await;
    let limits = ClipLimits {
        budget_bytes: 10 << 30,
        max_age: Some(chrono::Duration::days(2)),
    };
    let done = vigil::service::clips::enforce(&server.app, limits, &meta)
        .await
        .unwrap();
    assert_eq!(done.deleted, 1);
    assert_eq!(media_status(old).await, 404);
    assert_eq!(
        stream_events(&server, "clip-c4").await[1]["payload"]["reason"],
        "age"
    );
    assert_eq!(clips_of(open.clone()).await, ["c5", "c1", "c3"]);

    // Once the incident is deleted, its clips go with it.
    server
        .app
        .handler()
        .execute::<vigil_actors::aggregates::incident::Incident>(
            &open,
            vigil_actors::aggregates::incident::IncidentCommand::Delete {
                id: open.clone(),
                reason: "test".into(),
            },
            &meta,
            None,
        )
        .await
        .unwrap();
    wait_models(&server).await;
    let done = vigil::service::clips::enforce(&server.app, ClipLimits::budget(10 << 30), &meta)
        .await
        .unwrap();
    assert_eq!(done.deleted, 1, "c1 held only the deleted incident");
    assert_eq!(media_status(pinned).await, 404);
    let c1 = stream_events(&server, "clip-c1").await;
    assert_eq!(c1[1]["payload"]["reason"], "incidents_deleted");
    // c3 still covers the resolved incident.
    assert_eq!(media_status(newer).await, 200);
    assert_every_rebuild_equals_live(&db).await;
    server.stop().await;
}
