//! The MQTT relay, live camera state and Home Assistant discovery against a real Mosquitto
//! broker (Debian's `mosquitto`, which scripts/setup installs; `VIGIL_MOSQUITTO_BIN` overrides
//! its path). Each test runs its own broker process on a loopback port, so it can stop and start
//! it; the consumer is a real MQTT client (rumqttc).

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use vigil_schemas::events::{
    CameraStatus, CameraStatusChanged, FrameRef, IncidentKind, IncidentOpened, IncidentSubjects,
    NormBox, Severity, SubjectCategory, SubjectEnrolled, SubjectFace, SubjectMatched,
    camera_status_stream, incident_stream, subject_stream,
};
use vigil_schemas::{
    CameraEvent, DomainEvent, EventMeta, ExpectedVersion, IncidentEvent, SubjectEvent,
};

use crate::support::{TestDb, TestServer, Which, call, free_port, until};

fn mosquitto_bin() -> String {
    if let Ok(bin) = std::env::var("VIGIL_MOSQUITTO_BIN") {
        return bin;
    }
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("no mosquitto binary: run scripts/setup (or set VIGIL_MOSQUITTO_BIN)")
        })
        .to_string()
}

/// A Mosquitto broker on a loopback port that keeps its retained messages and sessions in a
/// folder across restarts.
pub(crate) struct Mosquitto {
    child: Option<tokio::process::Child>,
    port: u16,
    conf: std::path::PathBuf,
}

impl Mosquitto {
    pub(crate) async fn start(port: u16, dir: &std::path::Path) -> Self {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut broker = Self {
            child: None,
            port,
            conf,
        };
        broker.restart().await;
        broker
    }

    async fn restart(&mut self) {
        let child = tokio::process::Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }

    /// Stops it the way a service manager does (SIGTERM: it saves its state and exits).
    pub(crate) async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait().await.unwrap();
    }
}

/// One received message: topic, payload, whether it came as retained.
type Received = (String, Vec<u8>, bool);

/// An MQTT client that subscribes (QoS 1) to `filters` at every connect and records every
/// message; with `persistent`, its session (and the messages queued for it) outlives a broker
/// restart.
struct Subscriber {
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    fn start(port: u16, id: &str, persistent: bool, filters: &[&str]) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(!persistent)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut events) = AsyncClient::new(options, 64);
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            client.try_subscribe(f.clone(), QoS::AtLeastOnce).unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.to_vec(), p.retain));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Self { received, task }
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The newest payload on `topic`.
    fn last(&self, topic: &str) -> Option<Vec<u8>> {
        self.all()
            .into_iter()
            .rev()
            .find(|(t, _, _)| t == topic)
            .map(|(_, p, _)| p)
    }

    async fn wait_for(&self, topic: &str, what: &str) -> Vec<u8> {
        until(20, what, || async { self.last(topic) }).await
    }

    /// The first message on `vigil/incidents` of an event of `event_type`.
    fn incident_message(&self, event_type: &str) -> Value {
        self.all()
            .iter()
            .filter(|(t, _, _)| t == "vigil/incidents")
            .map(|(_, p, _)| serde_json::from_slice::<Value>(p).unwrap())
            .find(|m| m["event_type"] == event_type)
            .unwrap_or_else(|| panic!("no {event_type} on vigil/incidents"))
    }

    fn stop(self) {
        self.task.abort();
    }
}

async fn relayed(server: &TestServer) -> u64 {
    vigil_projections::checkpoint::Checkpoint::new(
        server.app.pool().clone(),
        vigil::mqtt::CHECKPOINT,
    )
    .read()
    .await
    .unwrap_or(0)
}

async fn wait_relayed(server: &TestServer) {
    let head = server.head().await;
    until(30, "the MQTT relay to reach the head", || async {
        (relayed(server).await >= head).then_some(())
    })
    .await;
}

/// The fields Home Assistant's MQTT discovery requires of a config (its MQTT integration
/// documentation: the discovery topic format, `unique_id` and `device` for device-based
/// discovery, each component's required topic), and that every topic it names is one Vigil
/// publishes.
fn check_discovery_config(topic: &str, config: &Value) {
    let parts: Vec<&str> = topic.split('/').collect();
    assert_eq!(parts.len(), 5, "{topic}");
    assert_eq!(parts[0], "homeassistant");
    assert_eq!(parts[4], "config");
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    assert!(
        id_ok(parts[2]) && id_ok(parts[3]),
        "node and object ids: {topic}"
    );
    let component = parts[1];
    let required: &[&str] = match component {
        "binary_sensor" | "sensor" => &["state_topic"],
        "camera" => &["topic"],
        other => panic!("unexpected component {other}"),
    };
    for key in required {
        let t = config[key]
            .as_str()
            .unwrap_or_else(|| panic!("{topic}: {key}"));
        assert!(t.starts_with("vigil/") && !t.contains(['+', '#']), "{t}");
    }
    assert!(config["unique_id"].as_str().is_some_and(|s| !s.is_empty()));
    let device = &config["device"];
    assert!(
        device["identifiers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{topic}: device identifiers"
    );
    assert!(device["name"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(config["origin"]["name"].as_str().is_some());
    for a in config["availability"].as_array().expect("availability") {
        assert!(a["topic"].as_str().is_some_and(|t| t.starts_with("vigil/")));
    }
    assert!(matches!(
        config["availability_mode"].as_str(),
        Some("all" | "any" | "latest")
    ));
    if let Some(class) = config.get("device_class").and_then(Value::as_str) {
        let allowed: &[&str] = match component {
            "binary_sensor" => &["motion", "occupancy", "presence"],
            _ => &[],
        };
        assert!(allowed.contains(&class), "{topic}: device_class {class}");
    }
    if let Some(class) = config.get("state_class").and_then(Value::as_str) {
        assert!(["measurement", "total", "total_increasing"].contains(&class));
    }
}

async fn append<E: DomainEvent>(server: &TestServer, stream: &str, event: E) {
    server
        .app
        .store()
        .append(
            stream,
            ExpectedVersion::Any,
            vec![event.to_new_event(Utc::now(), &EventMeta::system())],
        )
        .await
        .unwrap();
}

async fn status(server: &TestServer, camera: &str, status: CameraStatus, reason: &str) {
    append(
        server,
        &camera_status_stream(camera),
        CameraEvent::StatusChanged(CameraStatusChanged {
            camera_id: camera.into(),
            status,
            reason: reason.into(),
        }),
    )
    .await;
}

async fn patch_status(server: &TestServer, incident: &str, to: &str) {
    let (code, body) = call(
        server,
        Method::PATCH,
        &format!("/api/v1/incidents/{incident}"),
        Some(json!({"status": to, "notes": format!("moved to {to}")})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

/// Incident events on `vigil/incidents`, first sighting of each event id, as event ids per
/// incident stream in arrival order.
fn incident_sequences(received: &[Received]) -> HashMap<String, Vec<String>> {
    let mut seen = HashSet::new();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (topic, payload, _) in received {
        if topic != "vigil/incidents" {
            continue;
        }
        let m: Value = serde_json::from_slice(payload).unwrap();
        let id = m["event_id"].as_str().unwrap().to_string();
        if seen.insert(id.clone()) {
            out.entry(format!(
                "incident-{}",
                m["incident"]["id"].as_str().unwrap()
            ))
            .or_default()
            .push(id);
        }
    }
    out
}

async fn stored_incident_sequences(server: &TestServer) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for e in server.app.store().read_all(0, 100_000).await.unwrap() {
        if e.event_type.starts_with("incident.") {
            out.entry(e.stream.clone())
                .or_default()
                .push(e.event_id.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_reach_mqtt_in_order_through_a_broker_outage_and_home_assistant_finds_each_camera() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(port, dir.path()).await;
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.mqtt_url = format!("mqtt://127.0.0.1:{port}");
    config.mqtt_discovery = true;
    config.mqtt_evidence_jpeg = true;
    config.mqtt_client_id = format!("vigil-test-{port}");
    config.ingest = true;
    let server = TestServer::start_public(config).await;
    let watcher = Subscriber::start(port, "watcher", true, &["vigil/#"]);
    let online = watcher
        .wait_for("vigil/available", "the relay's availability")
        .await;
    assert_eq!(online, b"online");

    // A camera (not ingested: its status comes from the events below) and a running one.
    let (code, body) = call(
        &server,
        Method::POST,
        "/api/v1/cameras",
        Some(json!({"id": "door", "name": "Front door", "source": "push", "enabled": false})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    status(&server, "door", CameraStatus::Online, "connected: push").await;
    let (code, body) = call(
        &server,
        Method::POST,
        "/api/v1/cameras",
        Some(json!({"id": "yard", "name": "Yard", "source": "push"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");

    // An incident with an evidence frame, one from Alertmanager, a workflow, a face match.
    let jpeg = b"\xff\xd8 the evidence frame \xff\xd9".to_vec();
    let sha = server.app.ingest().blobs().put(&jpeg).await.unwrap();
    let seen_at = Utc::now();
    let intrusion = uuid::Uuid::now_v7().to_string();
    append(
        &server,
        &incident_stream(&intrusion),
        IncidentEvent::Opened(IncidentOpened {
            incident_id: intrusion.clone(),
            kind: IncidentKind::Intrusion,
            severity: Severity::High,
            confidence: 0.8,
            camera_id: Some("door".into()),
            zone: Some("porch".into()),
            reasoning: "1 person in zone porch".into(),
            subjects: IncidentSubjects::default(),
            recommended_actions: vec![],
            evidence: vec![FrameRef {
                persons: vec![],
                blob: sha.clone(),
                frame_number: 3,
                at: seen_at,
            }],
            dedup_key: "door:intrusion:porch".into(),
            source: "rule:intrusion".into(),
            observed_at: seen_at,
        }),
    )
    .await;
    until(10, "the incident in the read model", || async {
        let (code, _) = call(
            &server,
            Method::GET,
            &format!("/api/v1/incidents/{intrusion}"),
            None,
        )
        .await;
        (code == 200).then_some(())
    })
    .await;
    patch_status(&server, &intrusion, "investigating").await;
    let subject = uuid::Uuid::now_v7().to_string();
    append(
        &server,
        &subject_stream(&subject),
        SubjectEvent::Enrolled(SubjectEnrolled {
            subject_id: subject.clone(),
            name: "Ada".into(),
            category: SubjectCategory::Authorised,
            severity: None,
            notes: String::new(),
            faces: vec![SubjectFace {
                face_id: uuid::Uuid::now_v7().to_string(),
                crop: sha.clone(),
                bbox: NormBox {
                    x1: 0.1,
                    y1: 0.1,
                    x2: 0.5,
                    y2: 0.5,
                },
                score: 0.99,
                embedding: vec![0.05; 128],
            }],
        }),
    )
    .await;
    append(
        &server,
        &subject_stream(&subject),
        SubjectEvent::Matched(SubjectMatched {
            match_id: uuid::Uuid::now_v7().to_string(),
            subject_id: subject.clone(),
            subject_name: "Ada".into(),
            category: SubjectCategory::Authorised,
            camera_id: "door".into(),
            track_id: "track-door-1".into(),
            distance: 0.31,
            second_distance: None,
            crop: sha.clone(),
            frame: FrameRef {
                persons: vec![],
                blob: sha.clone(),
                frame_number: 4,
                at: seen_at,
            },
        }),
    )
    .await;
    wait_relayed(&server).await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("vigil_mqtt_relay_lag 0"), "{metrics}");

    // Every incident event, in its stream's order.
    let got = until(20, "every incident event on vigil/incidents", || async {
        let got = incident_sequences(&watcher.all());
        (got == stored_incident_sequences(&server).await).then_some(got)
    })
    .await;
    assert_eq!(
        got[&incident_stream(&intrusion)].len(),
        2,
        "opened, status changed"
    );
    let opened: Value = watcher.incident_message("incident.opened");
    assert_eq!(opened["incident"]["kind"], "intrusion");
    assert_eq!(opened["incident"]["severity"], "high");
    assert_eq!(opened["incident"]["reasoning"], "1 person in zone porch");
    // Its evidence opens without a key.
    let url = opened["incident"]["evidence"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&server.base), "{url}");
    let fetched = reqwest::get(url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), jpeg.as_slice());
    // The evidence picture on its binary topic, the status change with the incident's state.
    assert_eq!(
        watcher.last("vigil/cameras/door/evidence").unwrap(),
        jpeg,
        "the evidence JPEG"
    );
    let changed: Value = watcher.incident_message("incident.status_changed");
    assert_eq!(changed["incident"]["status"], "investigating");
    assert_eq!(changed["incident"]["camera_id"], "door");
    assert_eq!(changed["change"]["to"], "investigating");
    // The face match per subject and the camera's last recognised face.
    let face: Value =
        serde_json::from_slice(&watcher.last("vigil/cameras/door/face").unwrap()).unwrap();
    assert_eq!(face["subject_name"], "Ada");
    assert_eq!(face["subject_id"], subject.as_str());
    assert!(
        watcher
            .last(&format!("vigil/subjects/{subject}/matches"))
            .is_some()
    );
    // The running camera's live state.
    let persons = watcher
        .wait_for("vigil/cameras/yard/persons", "the yard's person count")
        .await;
    assert_eq!(persons, b"0");
    // Motion goes out right after the count, in the same batch: it may land a moment later.
    let motion = watcher
        .wait_for("vigil/cameras/yard/motion", "the yard's motion")
        .await;
    assert_eq!(motion, b"OFF");

    // The broker goes away while events keep coming: the checkpoint waits.
    broker.stop().await;
    let before = relayed(&server).await;
    patch_status(&server, &intrusion, "escalated").await;
    status(&server, "door", CameraStatus::Offline, "connection lost").await;
    let alert = json!({
        "version": "4", "status": "firing", "receiver": "vigil",
        "groupLabels": {}, "commonLabels": {}, "externalURL": "http://am:9093",
        "alerts": [{
            "status": "firing", "labels": {"alertname": "Door forced", "severity": "critical", "camera_id": "door"},
            "annotations": {"summary": "door forced open"},
            "startsAt": Utc::now().to_rfc3339(), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": "fp-door"
        }]
    });
    let (code, body) = call(
        &server,
        Method::POST,
        "/api/v1/webhooks/alerts",
        Some(alert),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let forced = body["opened"][0].as_str().unwrap().to_string();
    patch_status(&server, &forced, "resolved").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        relayed(&server).await,
        before,
        "nothing is acknowledged without a broker"
    );
    assert!(!server.metrics().await.contains("vigil_mqtt_relay_lag 0"));

    // Back: every event after the checkpoint arrives, in order per stream.
    broker.restart().await;
    wait_relayed(&server).await;
    let got = until(30, "every incident event after the outage", || async {
        let got = incident_sequences(&watcher.all());
        (got == stored_incident_sequences(&server).await).then_some(got)
    })
    .await;
    assert_eq!(got[&incident_stream(&forced)].len(), 2);
    assert_eq!(got[&incident_stream(&intrusion)].len(), 3);

    // A client that connects now finds the retained state and Home Assistant's configs.
    let late = Subscriber::start(port, "late", false, &["vigil/#", "homeassistant/#"]);
    let door: Value = serde_json::from_slice(
        &late
            .wait_for("vigil/cameras/door/status", "the door's retained status")
            .await,
    )
    .unwrap();
    assert_eq!(door["status"], "offline");
    assert_eq!(door["availability"], "offline");
    assert_eq!(
        late.wait_for("vigil/available", "availability").await,
        b"online"
    );
    let configs = until(20, "the discovery configs of both cameras", || async {
        let configs: HashMap<String, Value> = late
            .all()
            .into_iter()
            .filter(|(t, p, retained)| {
                t.starts_with("homeassistant/") && *retained && !p.is_empty()
            })
            .map(|(t, p, _)| (t, serde_json::from_slice(&p).unwrap()))
            .collect();
        (configs.len() == 10).then_some(configs)
    })
    .await;
    for (topic, config) in &configs {
        check_discovery_config(topic, config);
    }
    let person = &configs["homeassistant/binary_sensor/vigil/door_person/config"];
    assert_eq!(person["device"]["name"], "Front door");
    assert_eq!(person["state_topic"], "vigil/cameras/door/persons");
    assert_eq!(
        configs["homeassistant/camera/vigil/yard_evidence/config"]["topic"],
        "vigil/cameras/yard/evidence"
    );
    late.stop();

    // A removed camera withdraws its configs and clears its retained state.
    let (code, body) = call(&server, Method::DELETE, "/api/v1/cameras/door", None).await;
    assert!(code == 204 || code == 200, "{code} {body}");
    wait_relayed(&server).await;
    let after = Subscriber::start(port, "after", false, &["vigil/#", "homeassistant/#"]);
    until(20, "the yard's configs", || async {
        let n = after
            .all()
            .iter()
            .filter(|(t, p, _)| t.starts_with("homeassistant/") && !p.is_empty())
            .count();
        (n == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left: Vec<String> = after
        .all()
        .into_iter()
        .filter(|(t, p, _)| t.contains("door") && !p.is_empty())
        .map(|(t, _, _)| t)
        .collect();
    assert!(left.is_empty(), "the door left retained messages: {left:?}");
    after.stop();
    watcher.stop();
    server.stop().await;
    broker.stop().await;
    db.cleanup().await;
}
