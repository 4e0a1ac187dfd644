//! Several ingest nodes on one PostgreSQL database: camera leases with fencing tokens, three
//! `vigil serve` processes sharing twelve MJPEG cameras, a node killed (`kill -9`), restarted
//! and paused (`SIGSTOP`), and `GET /api/v1/system/nodes`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use vigil::cluster::{ClusterSettings, LeaseKeeper, NodeLoad};
use vigil::store::Backend;
use vigil_actors::node::CameraLeases;
use vigil_schemas::{EventMeta, EventStore, ExpectedVersion, NewEvent, StoreError};

use crate::durability::spawn_server_with;
use crate::support::{KEY, TestDb, TestServer, Which, call, repo_file, until};

fn keeper(db_store: &Arc<vigil::store::SqlEventStore>, node: &str) -> LeaseKeeper {
    LeaseKeeper::new(
        ClusterSettings {
            node: node.into(),
            lease: Duration::from_secs(2),
            heartbeat: Duration::from_secs(1),
            max_cameras: 0,
        },
        db_store.pool().clone(),
        Backend::Postgres,
        db_store.clone(),
        Some((**db_store).clone()),
    )
}

fn status_event(n: u32) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "camera.status_changed".into(),
        schema_version: 1,
        occurred_at: Utc::now(),
        meta: EventMeta {
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            actor: "camera:door".into(),
        },
        payload: json!({"camera_id": "door", "status": "online", "reason": format!("frame {n}")}),
    }
}

/// A lease fences appends: while a node holds it, its token's appends commit; once another
/// node took the camera (after the lease expired), the first node's appends are refused with
/// nothing stored, even with the new token, and the camera changes hands with a greater token
/// each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_lease_fences_appends_and_changes_hands_with_a_greater_token() {
    let db = TestDb::new(Which::Postgres).await;
    let store = db.store().await;
    let (n1, n2) = (keeper(&store, "n1"), keeper(&store, "n2"));
    let door: BTreeSet<String> = ["door".to_string()].into();
    let stream = "camerastatus-door";

    n1.want(door.clone());
    n1.beat(NodeLoad::default()).await.unwrap();
    assert_eq!(n1.held_now(), BTreeMap::from([("door".to_string(), 1)]));
    let first = n1.fenced("door", 1);
    first
        .append(stream, ExpectedVersion::Exact(0), vec![status_event(1)])
        .await
        .expect("the holder appends");

    // n1 is alive and holds it: n2 takes nothing.
    n2.want(door.clone());
    n2.beat(NodeLoad::default()).await.unwrap();
    assert!(n2.held_now().is_empty());

    // n1 stops beating (paused): after the lease, n2 takes the camera with token 2.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    n2.beat(NodeLoad::default()).await.unwrap();
    assert_eq!(n2.held_now(), BTreeMap::from([("door".to_string(), 2)]));

    // n1 wakes up: whatever it appends for the camera is refused, and nothing is stored.
    match first
        .append(stream, ExpectedVersion::Exact(1), vec![status_event(2)])
        .await
    {
        Err(StoreError::Fenced {
            camera,
            node,
            token,
        }) => assert_eq!((camera.as_str(), node.as_str(), token), ("door", "n1", 1)),
        other => panic!("expected a fenced append, got {other:?}"),
    }
    let forged = n1.fenced("door", 2);
    assert!(matches!(
        forged
            .append(stream, ExpectedVersion::Exact(1), vec![status_event(3)])
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(store.stream_version(stream).await.unwrap(), 1);
    n2.fenced("door", 2)
        .append(stream, ExpectedVersion::Exact(1), vec![status_event(4)])
        .await
        .expect("the new holder appends");

    // n1's next beat finds the lease gone.
    n1.beat(NodeLoad::default()).await.unwrap();
    assert!(n1.held_now().is_empty());

    // n2 shuts down and hands it back: n1 takes it at once, token 3.
    n2.release_all().await;
    n1.beat(NodeLoad::default()).await.unwrap();
    assert_eq!(n1.held_now(), BTreeMap::from([("door".to_string(), 3)]));
    assert_eq!(store.stream_version(stream).await.unwrap(), 2);
    db.cleanup().await;
}

/// On SQLite one node runs every camera: `GET /api/v1/system/nodes` names it alone, with the
/// cameras it runs and no leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_one_node_lists_every_camera_it_runs() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(vigil::config::Config {
        ingest: true,
        node_id: "solo".into(),
        models_backend: vigil_models::BackendPreference::Cpu,
        ..db.config()
    })
    .await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/cameras",
        Some(json!({"id": "desk", "name": "Desk", "source": "push"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let nodes = until(30, "the push camera to run", || async {
        let (status, body) = call(&server, Method::GET, "/api/v1/system/nodes", None).await;
        assert_eq!(status, 200, "{body}");
        (body["nodes"][0]["cameras"].as_array()?.len() == 1).then_some(body)
    })
    .await;
    assert_eq!(nodes["mode"], "single", "{nodes}");
    let list = nodes["nodes"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{nodes}");
    assert_eq!(list[0]["node_id"], "solo");
    assert_eq!(list[0]["this_node"], true);
    assert_eq!(list[0]["alive"], true);
    assert_eq!(list[0]["cameras"][0]["camera_id"], "desk");
    assert!(
        list[0]["cameras"][0].get("lease_token").is_none(),
        "{nodes}"
    );
    // Admin only.
    let res = server
        .client
        .get(server.url("/api/v1/system/nodes"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    server.stop().await;
}

const LEASE_SECS: f64 = 6.0;
const HEARTBEAT_SECS: f64 = 3.0;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One `vigil serve` process.
struct Node {
    child: tokio::process::Child,
    base: String,
}

async fn start_node(db: &TestDb, name: &str, dir: &Path) -> Node {
    let (child, base) = spawn_server_with(
        &db.url,
        dir,
        &[
            ("VIGIL_INGEST", "true"),
            ("VIGIL_NODE_ID", name),
            ("VIGIL_MODELS_BACKEND", "cpu"),
            ("VIGIL_CAMERA_LEASE_SECS", "6"),
            ("VIGIL_CAMERA_HEARTBEAT_SECS", "3"),
            ("VIGIL_KEY_PEPPER", "cluster-test-pepper"),
            ("VIGIL_CLIPS", "false"),
            ("VIGIL_POLL_INTERVAL_MS", "100"),
        ],
    )
    .await;
    Node { child, base }
}

/// A folder with one frame of the pedestrian clip's first second (a still scene: no model
/// runs, only decoding and motion gating).
fn still_frames() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let clip = std::env::var_os("VIGIL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vigil/assets")
        })
        .join("images/vtest.avi");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(&clip)
        .args(["-frames:v", "1", "-vf", "scale=192:-2", "-q:v", "4"])
        .arg(dir.path().join("0001.jpg"))
        .status()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(status.success(), "ffmpeg could not cut a frame of {clip:?}");
    dir
}

/// The MJPEG test camera server (tests/servers/mjpeg_server.py); killed on drop.
async fn mjpeg_server(frames: &Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new("python3")
        .arg(repo_file("tests/servers/mjpeg_server.py"))
        .args(["--port", "0", "--fps", "2", "--frames"])
        .arg(frames)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("the MJPEG server gets ready")
    .unwrap()
    .expect("a READY line");
    let url = line
        .strip_prefix("READY ")
        .expect("READY <url>")
        .to_string();
    (child, url)
}

/// When each node's handled-frame count of each camera went up, as seen every
/// [`SAMPLE_EVERY`]: `(tick, time, node, camera)`.
#[derive(Default)]
struct Samples {
    rises: Vec<(u64, DateTime<Utc>, String, String)>,
}

impl Samples {
    /// The nodes that sampled each camera in `[from, to]`.
    fn window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<String, BTreeSet<String>> {
        let mut by_camera: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, at, node, camera) in &self.rises {
            if *at >= from && *at <= to {
                by_camera
                    .entry(camera.clone())
                    .or_default()
                    .insert(node.clone());
            }
        }
        by_camera
    }

    /// The first time a node other than those in `not` sampled `camera` after `from`.
    fn first_elsewhere(
        &self,
        camera: &str,
        not: &str,
        from: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.rises
            .iter()
            .find(|(_, at, node, c)| c == camera && node != not && *at >= from)
            .map(|r| r.1)
    }

    /// The longest run of consecutive ticks in which two nodes sampled the same camera, in
    /// seconds (an upper bound of the time both analysed it).
    fn longest_overlap(&self) -> f64 {
        let mut per_tick: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
        for (tick, _, node, camera) in &self.rises {
            per_tick
                .entry((camera.clone(), *tick))
                .or_default()
                .insert(node.clone());
        }
        let mut longest = 0u64;
        let mut run: HashMap<String, (u64, u64)> = HashMap::new();
        for ((camera, tick), nodes) in &per_tick {
            if nodes.len() < 2 {
                continue;
            }
            let entry = run.entry(camera.clone()).or_insert((*tick, 0));
            if entry.0 + 1 == *tick || entry.1 == 0 {
                entry.1 += 1;
            } else {
                entry.1 = 1;
            }
            entry.0 = *tick;
            longest = longest.max(entry.1);
        }
        longest as f64 * SAMPLE_EVERY.as_secs_f64()
    }
}

/// How many frames each camera's actor on a node decided on (`/metrics`: analysed, found
/// still, or held without a model); none when the node does not answer within the sampling
/// period (killed, paused).
async fn sampled(client: &reqwest::Client, base: &str) -> Option<HashMap<String, u64>> {
    let text = client
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_millis(400))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut handled: HashMap<String, u64> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = [
            "vigil_camera_analysed_total{camera=\"",
            "vigil_camera_still_total{camera=\"",
            "vigil_camera_held_total{camera=\"",
        ]
        .iter()
        .find_map(|prefix| line.strip_prefix(prefix)) else {
            continue;
        };
        let Some((camera, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        *handled.entry(camera.to_string()).or_default() += value as u64;
    }
    Some(handled)
}

/// Samples every node's counters until dropped.
fn sample(
    nodes: Arc<Mutex<BTreeMap<String, String>>>,
    samples: Arc<Mutex<Samples>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut last: HashMap<(String, String), u64> = HashMap::new();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        for n in 0u64.. {
            tick.tick().await;
            let now: Vec<(String, String)> = nodes
                .lock()
                .unwrap()
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect();
            let reads =
                futures::future::join_all(now.iter().map(|(_, base)| sampled(&client, base))).await;
            let at = Utc::now();
            for ((node, base), read) in now.iter().zip(reads) {
                let Some(counts) = read else { continue };
                for (camera, value) in counts {
                    let key = (base.clone(), camera.clone());
                    let before = last.insert(key, value);
                    // A restarted process counts from 0 again (another base URL).
                    if before.is_none_or(|b| value > b) && value > 0 {
                        samples
                            .lock()
                            .unwrap()
                            .rises
                            .push((n, at, node.clone(), camera));
                    }
                }
            }
        }
    })
}

/// Who holds which camera, from a node's `GET /api/v1/system/nodes`: node → cameras.
async fn leases(
    client: &reqwest::Client,
    base: &str,
) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let body: Value = client
        .get(format!("{base}/api/v1/system/nodes"))
        .header("x-api-key", KEY)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    assert_eq!(body["mode"], "leases", "{body}");
    Some(
        body["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["alive"] == true)
            .map(|n| {
                let cameras = n["cameras"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["camera_id"].as_str().unwrap().to_string())
                    .collect();
                (n["node_id"].as_str().unwrap().to_string(), cameras)
            })
            .collect(),
    )
}

/// Each camera sampled by exactly one node in the last two seconds, every camera, and each
/// node's count within one of `expected` (node → count).
fn settled(
    samples: &Samples,
    cameras: &[String],
    expected: &BTreeMap<&str, usize>,
) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let now = Utc::now();
    let window = samples.window(now - chrono::Duration::milliseconds(2500), now);
    if window.len() != cameras.len() || window.values().any(|n| n.len() != 1) {
        return None;
    }
    let mut per_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (camera, nodes) in &window {
        per_node
            .entry(nodes.first().unwrap().clone())
            .or_default()
            .insert(camera.clone());
    }
    let counts_ok = expected.iter().all(|(node, want)| {
        per_node
            .get(*node)
            .is_some_and(|c| c.len().abs_diff(*want) <= 1)
    }) && per_node.keys().all(|n| expected.contains_key(n.as_str()));
    counts_ok.then_some(per_node)
}

/// Three `vigil serve` processes on one PostgreSQL database share twelve MJPEG cameras: each
/// camera is analysed by exactly one node, four each; a node killed with `kill -9` loses its
/// cameras to the others within the lease time plus one heartbeat; started again it gets its
/// share back with no camera analysed twice for longer than a heartbeat; a node paused past
/// its lease (`SIGSTOP`) and resumed writes nothing for the cameras it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_the_cameras_and_take_over_from_a_dead_or_paused_node() {
    let _serial = crate::cameras::SERIAL.lock().await;
    let db = TestDb::new(Which::Postgres).await;
    let frames = still_frames();
    let (_camera_server, camera_url) = mjpeg_server(frames.path()).await;
    let dirs: BTreeMap<&str, tempfile::TempDir> = ["a", "b", "c"]
        .into_iter()
        .map(|n| (n, tempfile::tempdir().unwrap()))
        .collect();
    let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
    for name in ["a", "b", "c"] {
        nodes.insert(name, start_node(&db, name, dirs[name].path()).await);
    }
    let bases = Arc::new(Mutex::new(
        nodes
            .iter()
            .map(|(n, node)| (n.to_string(), node.base.clone()))
            .collect::<BTreeMap<_, _>>(),
    ));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let sampler = sample(bases.clone(), samples.clone());
    let client = reqwest::Client::new();

    let cameras: Vec<String> = (1..=12).map(|i| format!("cam{i:02}")).collect();
    for (i, id) in cameras.iter().enumerate() {
        let res = client
            .post(format!("{}/api/v1/cameras", nodes["a"].base))
            .header("x-api-key", KEY)
            .json(&json!({"id": id, "name": format!("Door {i}"),
                           "source": format!("{camera_url}/stream.mjpg?camera={id}"),
                           "sample_fps": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }

    // 1. Four cameras each, each analysed by one node, as the leases say.
    let even = BTreeMap::from([("a", 4), ("b", 4), ("c", 4)]);
    let started = std::time::Instant::now();
    let spread = until(90, "twelve cameras spread over three nodes", || async {
        settled(&samples.lock().unwrap(), &cameras, &even)
    })
    .await;
    eprintln!(
        "cluster: 12 cameras spread {:?} after {:.1} s",
        spread.values().map(BTreeSet::len).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    let held = leases(&client, &nodes["a"].base).await.unwrap();
    assert_eq!(held, spread, "the leases name the nodes that analyse");
    // The events of a camera name the node that runs it.
    let store = db.store().await;
    for (node, cams) in &spread {
        for camera in cams {
            let stream = format!("camerastatus-{camera}");
            let last = until(10, "the camera's online status", || async {
                store
                    .read_stream(&stream, u64::MAX, 1, vigil_schemas::Direction::Backward)
                    .await
                    .unwrap()
                    .pop()
            })
            .await;
            assert_eq!(last.actor, format!("camera:{camera}@{node}"), "{last:?}");
        }
    }

    // 2. kill -9 one node: the others take its cameras.
    let lost = spread["c"].clone();
    let killed_at = Utc::now();
    let mut c = nodes.remove("c").unwrap();
    c.child.start_kill().unwrap();
    c.child.wait().await.unwrap();
    bases.lock().unwrap().remove("c");
    let moved = until(30, "the dead node's leases to move", || async {
        let held = leases(&client, &nodes["a"].base).await?;
        let others: BTreeSet<String> = held
            .iter()
            .filter(|(node, _)| *node != "c")
            .flat_map(|(_, cameras)| cameras.iter().cloned())
            .collect();
        lost.is_subset(&others).then(Utc::now)
    })
    .await;
    let survivors = BTreeMap::from([("a", 6), ("b", 6)]);
    until(
        30,
        "the dead node's cameras analysed by the others",
        || async { settled(&samples.lock().unwrap(), &cameras, &survivors) },
    )
    .await;
    let analysed = {
        let samples = samples.lock().unwrap();
        lost.iter()
            .map(|camera| samples.first_elsewhere(camera, "c", killed_at).unwrap())
            .max()
            .unwrap()
    };
    let lease_moved = (moved - killed_at).num_milliseconds() as f64 / 1000.0;
    let analysed_after = (analysed - killed_at).num_milliseconds() as f64 / 1000.0;
    eprintln!(
        "cluster: kill -9: leases moved after {lease_moved:.2} s, every camera analysed again after {analysed_after:.2} s (lease {LEASE_SECS} s + heartbeat {HEARTBEAT_SECS} s)"
    );
    // The others take the leases when they expire (within the lease time), and the cameras
    // are analysed within the lease time plus one heartbeat: each camera's actor has then
    // started on its new node, connected, sampled a frame (1 fps) and analysed it, on two
    // cores shared by three nodes (plus this test's polling, a quarter of a second).
    assert!(lease_moved <= LEASE_SECS + 0.5, "{lease_moved}");
    assert!(
        analysed_after <= LEASE_SECS + HEARTBEAT_SECS + SAMPLE_EVERY.as_secs_f64(),
        "{analysed_after}"
    );

    // 3. Started again, it gets its share back, slowly (one camera per node per beat).
    let restarted_at = std::time::Instant::now();
    let c = start_node(&db, "c", dirs["c"].path()).await;
    bases.lock().unwrap().insert("c".into(), c.base.clone());
    nodes.insert("c", c);
    let spread = until(60, "the restarted node to get its share back", || async {
        settled(&samples.lock().unwrap(), &cameras, &even)
    })
    .await;
    let overlap = samples.lock().unwrap().longest_overlap();
    eprintln!(
        "cluster: restarted node back to {:?} after {:.1} s; longest overlap so far {overlap:.2} s",
        spread.values().map(BTreeSet::len).collect::<Vec<_>>(),
        restarted_at.elapsed().as_secs_f64()
    );
    assert!(
        overlap <= HEARTBEAT_SECS,
        "two nodes analysed one camera for {overlap} s"
    );

    // 4. SIGSTOP past the lease: the others take its cameras; resumed, it writes nothing for
    // the cameras it lost (until it may take some back by rebalancing).
    let lost = spread["b"].clone();
    let pid = nodes["b"].child.id().unwrap().to_string();
    let stopped_at = Utc::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    until(
        30,
        "the paused node's cameras analysed by the others",
        || async {
            let samples = samples.lock().unwrap();
            let since = samples.window(stopped_at, Utc::now());
            lost.iter()
                .all(|c| since.get(c).is_some_and(|n| n.iter().any(|n| n != "b")))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resumed_at = Utc::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_secs_f64(HEARTBEAT_SECS + 2.0)).await;

    // When b took each lost camera back, if it did: (acquired, owner) from the lease table.
    let (pool, _) = vigil::store::open_pool(&db.url, 2).await.unwrap();
    let back: HashMap<String, DateTime<Utc>> = sqlx::query(
        "SELECT camera_id, acquired_ms FROM camera_leases WHERE owner = 'b' AND expires_ms > 0",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|row| {
        use sqlx::Row;
        let ms: i64 = row.get(1);
        (
            row.get::<String, _>(0),
            DateTime::from_timestamp_millis(ms).unwrap(),
        )
    })
    .filter(|(_, at)| *at > resumed_at)
    .collect();
    let events = {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = store.read_all(after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            all.extend(page);
        }
        all
    };
    let mut wrote = Vec::new();
    for camera in &lost {
        let until_back = back.get(camera).copied().unwrap_or_else(Utc::now);
        for e in &events {
            let about = e.stream == format!("camerastatus-{camera}")
                || e.stream.starts_with(&format!("track-{camera}-"))
                || e.payload["camera_id"] == camera.as_str();
            if about
                && e.actor.ends_with("@b")
                && e.recorded_at > stopped_at
                && e.recorded_at < until_back
            {
                wrote.push(format!("{} {} {}", e.stream, e.event_type, e.recorded_at));
            }
        }
    }
    assert!(
        wrote.is_empty(),
        "the paused node wrote for cameras it lost: {wrote:?}"
    );
    // Its actors of the lost cameras stopped at its first beat after resuming.
    let late = {
        let samples = samples.lock().unwrap();
        let grace =
            resumed_at + chrono::Duration::milliseconds(((HEARTBEAT_SECS + 1.0) * 1000.0) as i64);
        lost.iter()
            .filter(|camera| {
                let until_back = back.get(*camera).copied().unwrap_or_else(Utc::now);
                samples
                    .window(grace, until_back)
                    .get(*camera)
                    .is_some_and(|n| n.contains("b"))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    if !late.is_empty() {
        let samples = samples.lock().unwrap();
        for camera in &late {
            let rises: Vec<String> = samples
                .rises
                .iter()
                .filter(|r| &r.3 == camera && r.1 > stopped_at)
                .map(|r| {
                    format!(
                        "{}@{:.2}",
                        r.2,
                        (r.1 - resumed_at).num_milliseconds() as f64 / 1000.0
                    )
                })
                .collect();
            eprintln!(
                "{camera}: back {:?} rises {rises:?}",
                back.get(camera)
                    .map(|t| (*t - resumed_at).num_milliseconds())
            );
        }
    }
    assert!(late.is_empty(), "the resumed node still analysed {late:?}");
    eprintln!(
        "cluster: SIGSTOP: the others took {} cameras; resumed, the node wrote nothing for them; it took back {} by rebalancing",
        lost.len(),
        back.len()
    );
    let overlap = samples.lock().unwrap().longest_overlap();
    eprintln!("cluster: longest overlap over the whole run {overlap:.2} s");

    sampler.abort();
    for (_, mut node) in nodes {
        let _ = node.child.start_kill();
        let _ = node.child.wait().await;
    }
    pool.close().await;
    db.cleanup().await;
}
