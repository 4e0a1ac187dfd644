//! Faults that last: the database stopped under a running server. The server runs on a
//! PostgreSQL cluster of its own (initdb into a temp folder, its own port), so the test can stop
//! it with `pg_ctl -m immediate` and start it again without touching the shared one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use vigil_schemas::EventStore;

use crate::durability::spawn_server_with;
use crate::support::{KEY, answer, assert_error, free_port, until};

/// A PostgreSQL cluster that lives as long as the value: Debian's server binaries, run as the
/// `postgres` user when the tests run as root (the server refuses root).
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql (scripts/setup)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("initdb under /usr/lib/postgresql/*/bin (scripts/setup)")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl OwnPostgres {
    /// A new cluster, started.
    pub fn start_new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vigil-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown the cluster's folder to postgres");
        }
        let pg = Self {
            dir,
            port: free_port(),
            bin: pg_bin(),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` of the server's binaries, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data().display().to_string();
        let mut all = vec!["-D", &data, "-w", "-t", "60"];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Starts the server (waits until it accepts connections).
    pub fn start(&self) {
        let log = self
            .dir
            .path()
            .join("data/server.log")
            .display()
            .to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&["-l", &log, "-o", &options, "start"]);
    }

    /// Stops the server at once, as a crash would: no checkpoint, connections cut.
    pub fn stop_immediately(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

/// `method path` with the admin key: the status, the `Retry-After` header, the body, and how
/// long the answer took.
async fn timed(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, Option<String>, serde_json::Value, Duration) {
    let started = Instant::now();
    let mut req = client.request(method, url).header("x-api-key", KEY);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("the server answers");
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = answer(res).await;
    (status, retry_after, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_refused_with_503_and_retry_after_and_recovers_without_a_restart() {
    let pg = OwnPostgres::start_new();
    let data = pg.dir().join("vigil");
    let (mut child, base) = spawn_server_with(
        &pg.url(),
        &data,
        &[
            ("VIGIL_DATABASE_TIMEOUT_SECS", "2"),
            ("VIGIL_MODELS_BACKEND", "cpu"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{base}{path}");
    let camera = |id: &str| json!({"id": id, "name": id, "source": "push"});
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (status, _, body, _) = timed(
        &client,
        post.clone(),
        url("/api/v1/cameras"),
        Some(camera("before")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    until(30, "the camera in the read model", || async {
        let (status, ..) = timed(&client, get.clone(), url("/api/v1/cameras/before"), None).await;
        (status == 200).then_some(())
    })
    .await;
    // A camera analysing the pedestrian clip throughout.
    let clip = vigil_models::default_assets_dir().join("images/vtest.avi");
    let (status, _, body, _) = timed(
        &client,
        post.clone(),
        url("/api/v1/cameras"),
        Some(json!({"id": "plaza", "name": "Plaza", "sample_fps": 2,
                    "source": format!("file://{}?loop=true", clip.display())})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let store = {
        let (pool, backend) = vigil::store::open_pool(&pg.url(), 2).await.unwrap();
        vigil::store::SqlEventStore::new(pool, backend, Duration::from_millis(50))
            .await
            .unwrap()
    };
    until(120, "the camera's first track", || async {
        let events = store.read_all(0, 10_000).await.ok()?;
        events
            .iter()
            .any(|e| e.event_type == "appearance.started")
            .then_some(())
    })
    .await;
    let analysed_before = analysed(&client, &base).await;
    // A dashboard follows the cameras over a WebSocket from here.
    let mut ws = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("{}/ws", base.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("x-api-key", KEY.parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    };
    let head = store.head_position().await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "topics": ["cameras"], "after_position": head}),
    )
    .await;
    assert_eq!(ws_next(&mut ws, "subscribed").await["after_position"], head);

    pg.stop_immediately();
    let stopped_at = Instant::now();
    // Reads and writes are refused, quickly and in the documented shape, with `Retry-After`.
    for (method, path, body) in [
        (get.clone(), "/api/v1/cameras", None),
        (get.clone(), "/api/v1/incidents", None),
        (post.clone(), "/api/v1/cameras", Some(camera("during"))),
    ] {
        let (status, retry_after, body, took) =
            timed(&client, method.clone(), url(path), body).await;
        assert_error(status, &body, 503, "DATABASE_UNAVAILABLE");
        assert_eq!(retry_after.as_deref(), Some("5"), "{method} {path}");
        assert_eq!(body["error"]["details"]["retry_after_secs"], 5);
        assert!(
            took < Duration::from_secs(8),
            "{method} {path} answered in {took:?}, not within the 2 s database timeout and a margin"
        );
    }
    let (status, retry_after, body, _) =
        timed(&client, get.clone(), url("/health/ready"), None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["store"], false, "{body}");
    assert!(retry_after.is_some());
    let (status, ..) = timed(&client, get.clone(), url("/health/live"), None).await;
    assert_eq!(status, 200, "the process itself is alive");
    let interrupted = ws_next(&mut ws, "error").await;
    assert_eq!(
        interrupted["code"], "SUBSCRIPTION_INTERRUPTED",
        "{interrupted}"
    );

    // The camera kept analysing while the database was down.
    let analysed_during = analysed(&client, &base).await;
    assert!(
        analysed_during >= analysed_before + 2,
        "the camera analysed {analysed_before} frames before the outage and {analysed_during} during it"
    );
    let outage = stopped_at.elapsed();
    pg.start();
    // Everything comes back by itself: the same process reads, writes and projects again.
    until(60, "reads answering again", || async {
        let (status, ..) = timed(&client, get.clone(), url("/api/v1/cameras"), None).await;
        (status == 200).then_some(())
    })
    .await;
    let (status, _, body, _) = timed(
        &client,
        post.clone(),
        url("/api/v1/cameras"),
        Some(camera("after")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The same WebSocket goes on after the outage: every camera event since its position,
    // the new camera's registration among them.
    let expected: Vec<(u64, String)> = store
        .read_all(head, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type.starts_with("camera."))
        .map(|e| (e.position, e.stream.clone()))
        .collect();
    assert!(
        expected.iter().any(|(_, stream)| stream == "camera-after"),
        "{expected:?}"
    );
    let mut got = vec![];
    while got.len() < expected.len() {
        let event = ws_next(&mut ws, "event").await;
        got.push((
            event["position"].as_u64().unwrap(),
            event["stream"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(got, expected, "no gap, no repeat across the outage");
    until(60, "the projections following again", || async {
        let (status, ..) = timed(&client, get.clone(), url("/api/v1/cameras/after"), None).await;
        (status == 200).then_some(())
    })
    .await;
    let (status, _, body, _) = timed(&client, get.clone(), url("/api/v1/cameras"), None).await;
    assert_eq!(status, 200);
    let mut ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["after", "before", "plaza"],
        "the refused write stored nothing"
    );
    until(60, "ready again", || async {
        let (status, ..) = timed(&client, get.clone(), url("/health/ready"), None).await;
        (status == 200).then_some(())
    })
    .await;
    // The camera records again: tracks recorded after the outage, by the same process.
    let recovered_at = chrono::Utc::now();
    until(120, "a track recorded after the outage", || async {
        let events = store.read_all(0, 100_000).await.ok()?;
        events
            .iter()
            .any(|e| e.event_type.starts_with("appearance.") && e.recorded_at > recovered_at)
            .then_some(())
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "recovered without a restart (the outage lasted {outage:?})"
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_send(ws: &mut Ws, message: serde_json::Value) {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        message.to_string().into(),
    ))
    .await
    .unwrap();
}

/// The next message of type `kind` (others skipped), within 60 s.
async fn ws_next(ws: &mut Ws, kind: &str) -> serde_json::Value {
    use futures::StreamExt;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` message in 60 s"))
            .expect("the WebSocket stays open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

/// Frames camera `plaza` analysed, from `/metrics` (which answers without the database).
async fn analysed(client: &reqwest::Client, base: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("vigil_camera_analysed_total{camera=\"plaza\"} "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}
