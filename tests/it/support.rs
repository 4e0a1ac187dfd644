//! Shared test helpers: stores on both backends, an in-process server, an HTTP client.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use vigil::app::App;
use vigil::config::Config;
use vigil::store::scratch::{ScratchDb, admin_url};
use vigil::store::{SqlEventStore, open_pool};

/// The repository root as cargo names it when running the tests (a test binary reused from
/// another checkout still reads this checkout's files).
pub fn repo_file(path: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        )
        .join(path)
}

/// The admin key test servers accept.
pub const KEY: &str = "test-admin-key";

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Sqlite,
    Postgres,
}

/// A database that lives as long as the test: a temp folder or a scratch PostgreSQL database.
pub struct TestDb {
    pub url: String,
    /// Holds the SQLite file (when SQLite) and the data folder (key pepper) of test servers.
    pub dir: TempDir,
    scratch: Option<ScratchDb>,
}

impl TestDb {
    pub async fn new(which: Which) -> Self {
        match which {
            Which::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("vigil.db").display());
                Self {
                    url,
                    dir,
                    scratch: None,
                }
            }
            Which::Postgres => {
                let scratch = ScratchDb::create(&admin_url(), "test")
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL is required for this test: {e}"));
                let dir = tempfile::tempdir().expect("temp dir");
                Self {
                    url: scratch.url.clone(),
                    dir,
                    scratch: Some(scratch),
                }
            }
        }
    }

    /// A new store (own pool) on this database.
    pub async fn store(&self) -> Arc<SqlEventStore> {
        let (pool, backend) = open_pool(&self.url, 16).await.expect("open pool");
        Arc::new(
            SqlEventStore::new(pool, backend, Duration::from_millis(50))
                .await
                .expect("store"),
        )
    }

    /// A config pointing at this database.
    pub fn config(&self) -> Config {
        Config {
            database_url: self.url.clone(),
            data_dir: self.dir.path().join("data"),
            admin_key: KEY.into(),
            poll_interval_ms: 50,
            // Camera ingest is off unless a test turns it on (tests/it/cameras.rs).
            ingest: false,
            ..Config::default()
        }
    }

    /// Drops a PostgreSQL scratch database (SQLite folders go with the value).
    pub async fn cleanup(self) {
        if let Some(scratch) = self.scratch {
            let _ = scratch.drop_db().await;
        }
    }
}

/// A running server on an ephemeral port.
pub struct TestServer {
    pub base: String,
    pub app: App,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_on(config, listener).await
    }

    /// A server whose `public_base_url` is its own address, so outbound messages carry
    /// absolute links to it.
    pub async fn start_public(mut config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        config.public_base_url = format!("http://{}", listener.local_addr().expect("addr"));
        Self::start_on(config, listener).await
    }

    async fn start_on(mut config: Config, listener: tokio::net::TcpListener) -> Self {
        // In-process servers keep the default listen address in their config: each gets a
        // node name of its own from the port it really listens on.
        if config.node_id.is_empty() {
            let port = listener.local_addr().expect("addr").port();
            config.node_id = format!("test-{port}");
        }
        let (app, _) = App::open(config).await.expect("app opens");
        let mut tasks = app.spawn_background();
        // As `vigil serve` does.
        tasks.push(tokio::spawn(vigil::service::clips::keep_within_budget(
            app.clone(),
        )));
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = app.clone();
        tokio::spawn(async move {
            vigil::api::serve(served, listener, async move {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            base,
            app,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the admin key.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-api-key", KEY)
    }

    /// The Prometheus text at `/metrics` (no key needed).
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn head(&self) -> u64 {
        self.app.store().head_position().await.expect("head")
    }

    pub async fn stop(mut self) {
        self.app.stop_ingest().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Polls `check` until it returns `Some`, or fails naming `what` after `secs`.
pub async fn until<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Sends `body` (JSON) with the admin key; answers the status and the body as JSON (or as a
/// JSON string when it is not JSON).
pub async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = server.req(method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    answer(req.send().await.unwrap()).await
}

/// A response's status and body as JSON (or as a JSON string when it is not JSON).
pub async fn answer(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

/// The documented error shape with this status and code: a code, a message for people,
/// details for programs, and the request's id. The one error asserter of the tests.
pub fn assert_error(status: u16, body: &serde_json::Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["details"].is_object(), "{body}");
    assert!(body["request_id"].is_string(), "{body}");
}

/// [`assert_error`] on a response, whose `X-Request-Id` header must name the body's
/// `request_id`; returns the body.
pub async fn expect_error(
    resp: reqwest::Response,
    status: reqwest::StatusCode,
    code: &str,
) -> serde_json::Value {
    let request_id = resp
        .headers()
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .unwrap()
        .to_string();
    let (got, body) = answer(resp).await;
    assert_error(got, &body, status.as_u16(), code);
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

/// A port nothing listens on now, for a server this test starts itself (an RTSP server, a
/// `vigil serve` process). It is picked below the kernel's ephemeral range (32768-60999 on
/// Linux), where nothing binds port 0 nor connects from: the kernel's own pick could hand the
/// same port to another test's server (bound to port 0) or to an outgoing connection before
/// this test's server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const PORTS: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Test binaries running at once start at different places.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % PORTS,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..PORTS {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % PORTS) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + PORTS)
}

/// Every event of `stream`, through the audit API.
pub async fn stream_events(server: &TestServer, stream: &str) -> Vec<serde_json::Value> {
    let (status, body) = call(
        server,
        reqwest::Method::GET,
        &format!("/api/v1/audit/streams/{stream}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// Rebuilds projection `name` from position 0 (its server stopped) and checks every table it
/// owns, in the database and outside it (Lance), equals what the live projection left; returns
/// the tables' digests.
pub async fn assert_rebuild_equals_live(db: &TestDb, name: &str) -> Vec<String> {
    rebuild_equals_live(db, name).await
}

/// [`assert_rebuild_equals_live`] for every projection of the build, one after the other;
/// answers each projection's name with its digests.
pub async fn assert_every_rebuild_equals_live(db: &TestDb) -> Vec<(String, Vec<String>)> {
    let mut all = vec![];
    for projection in vigil_projections::all(db.config().vector_store()) {
        let name = projection.name();
        all.push((name.to_string(), rebuild_equals_live(db, name).await));
    }
    all
}

async fn rebuild_equals_live(db: &TestDb, name: &str) -> Vec<String> {
    rebuild_equals_live_with(db, &db.config(), name).await
}

/// [`assert_rebuild_equals_live`] with the vector store `config` names (a bucket, say).
pub async fn rebuild_equals_live_with(db: &TestDb, config: &Config, name: &str) -> Vec<String> {
    let (pool, _) = vigil::store::open_pool(&db.url, 4).await.unwrap();
    let store: Arc<dyn vigil_schemas::EventStore> = db.store().await;
    let projection = vigil_projections::all(config.vector_store())
        .into_iter()
        .find(|p| p.name() == name)
        .unwrap_or_else(|| panic!("no projection `{name}`"));
    let digests = async || {
        let mut all = vec![];
        for table in projection.tables() {
            let digest = vigil_projections::digest::table_digest(&pool, table, "id")
                .await
                .unwrap();
            all.push((table.to_string(), digest));
        }
        all.extend(projection.outside_digests().await.unwrap());
        all
    };
    let live = digests().await;
    vigil_projections::ProjectionRunner::new(pool.clone(), store, projection.clone())
        .rebuild()
        .await
        .unwrap();
    let rebuilt = digests().await;
    for ((table, before), (_, after)) in live.iter().zip(&rebuilt) {
        assert_eq!(after, before, "{table} rebuilt equals live");
    }
    assert_eq!(live.len(), rebuilt.len());
    pool.close().await;
    live.into_iter().map(|(_, d)| d).collect()
}

/// Waits until each projection of `names` on `server` holds every stored event.
pub async fn projections_caught_up(server: &TestServer, names: &[&str], secs: u64) {
    let head = server.head().await;
    for name in names {
        let status = server.app.projection_status(name).unwrap();
        assert!(
            status.wait_for(head, Duration::from_secs(secs)).await,
            "{name} did not reach {head}"
        );
    }
}

/// Files in a test node's media store (`{data_dir}/blobs`).
pub fn blob_count(db: &TestDb) -> usize {
    files_under(&db.dir.path().join("data/blobs"))
}

/// Files under `dir`, in every sub-folder; 0 when it does not exist.
pub fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// Records, as a camera's recorder would, that camera `gate` recorded clip `id` of `bytes`
/// bytes (the stored media `media`) from `at` for 20 s, covering `incidents`.
pub async fn record_clip(
    server: &TestServer,
    id: &str,
    incidents: &[&str],
    at: chrono::DateTime<chrono::Utc>,
    media: &str,
    bytes: usize,
) {
    use vigil_schemas::events::{ClipRecorded, clip_stream};
    use vigil_schemas::{ClipEvent, DomainEvent, EventMeta, ExpectedVersion};
    let recorded = ClipEvent::Recorded(ClipRecorded {
        clip_id: id.into(),
        camera_id: "gate".into(),
        incident_ids: incidents.iter().map(|i| i.to_string()).collect(),
        track_ids: vec![],
        continuous: false,
        started_at: at,
        ended_at: at + chrono::Duration::seconds(20),
        duration_seconds: 20.0,
        codec: "h264".into(),
        width: 1280,
        height: 720,
        frames: 500,
        bytes: bytes as u64,
        media: media.into(),
    });
    let meta = EventMeta {
        correlation_id: uuid::Uuid::now_v7(),
        causation_id: None,
        actor: "camera:gate".into(),
    };
    server
        .app
        .store()
        .append(
            &clip_stream(id),
            ExpectedVersion::NoStream,
            vec![recorded.to_new_event(at, &meta)],
        )
        .await
        .unwrap();
}

/// An S3-compatible server for the object-storage tests: moto's server (from PyPI, installed
/// by `scripts/setup` into the tools' virtual environment) on a free port, a stand-in for
/// MinIO or a cloud bucket, which these machines do not have. Stopped when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// `http://127.0.0.1:{port}`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and waits until it answers.
    pub async fn start() -> Self {
        let venv = std::env::var_os("VIGIL_VENV").map_or_else(
            || {
                std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                    .join(".cache/vigil/venv")
            },
            std::path::PathBuf::from,
        );
        let bin = venv.join("bin/moto_server");
        let port = free_port();
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the S3 stand-in `{}` does not start ({e}): run scripts/setup",
                    bin.display()
                )
            });
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client.get(&server.endpoint).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "moto_server did not answer on {} within 30 s",
            server.endpoint
        );
    }

    /// Creates the bucket `name`.
    pub async fn create_bucket(&self, name: &str) {
        let res = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "create bucket: {}", res.status());
    }

    /// The keys in `bucket` under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = vec![];
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let body = reqwest::Client::new()
                .get(format!("{}/{bucket}", self.endpoint))
                .query(&query)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let tag = |text: &str, name: &str| -> Vec<String> {
                let open = format!("<{name}>");
                let close = format!("</{name}>");
                text.split(&open)
                    .skip(1)
                    .filter_map(|part| part.split_once(&close).map(|(v, _)| v.to_string()))
                    .collect()
            };
            keys.extend(tag(&body, "Key"));
            token = tag(&body, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                return keys;
            }
        }
    }

    /// A config whose media and Lance tables live in `bucket` under `prefix` on this server.
    pub fn config(&self, base: Config, bucket: &str, prefix: &str) -> Config {
        Config {
            object_store_url: format!("s3://{bucket}/{prefix}"),
            s3_endpoint: self.endpoint.clone(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: "vigil-test".into(),
            s3_secret_access_key: "vigil-test-secret".into(),
            ..base
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
