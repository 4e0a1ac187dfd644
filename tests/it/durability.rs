//! An append that was acknowledged survives `kill -9` of the server.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use vigil_schemas::{Direction, EventStore};

use crate::support::{KEY, TestDb, Which, free_port};

/// Starts `vigil serve` on `db` and returns it with its base URL once it answers.
pub async fn spawn_server(
    db_url: &str,
    data_dir: &std::path::Path,
) -> (tokio::process::Child, String) {
    spawn_server_with(db_url, data_dir, &[]).await
}

/// [`spawn_server`] with more environment variables (`VIGIL_CONFIG`, …).
pub async fn spawn_server_with(
    db_url: &str,
    data_dir: &std::path::Path,
    envs: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let port = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("serve")
        .env("VIGIL_LISTEN", format!("127.0.0.1:{port}"))
        .env("VIGIL_DATABASE_URL", db_url)
        .env("VIGIL_DATA_DIR", data_dir)
        .env("VIGIL_ADMIN_KEY", KEY)
        .env("VIGIL_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("vigil binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("{base}/health/live")).send().await
            && resp.status().is_success()
        {
            return (child, base);
        }
        assert!(
            Instant::now() < deadline,
            "vigil serve did not come up in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn acknowledged_writes_survive_kill_9(which: Which) {
    let db = TestDb::new(which).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_server(&db.url, dir.path()).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i}");
                let resp = client
                    .post(format!("{base}/api/v1/cameras"))
                    .header("x-api-key", KEY)
                    .json(&serde_json::json!({"id": id, "name": "cam", "source": "push"}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 201 => acked.lock().await.push(id),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => break, // the server died under us
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().expect("SIGKILL"); // kill -9
    child.wait().await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() > 10,
        "the server acknowledged only {} writes",
        acked.len()
    );

    let store = db.store().await;
    for id in &acked {
        let events = store
            .read_stream(&format!("camera-{id}"), 1, 10, Direction::Forward)
            .await
            .unwrap();
        assert_eq!(
            events.len(),
            1,
            "acknowledged camera {id} lost after kill -9"
        );
        assert_eq!(events[0].event_type, "camera.registered");
    }
    // The log is intact: gapless from 1 to head.
    let head = store.head_position().await.unwrap();
    let all = store.read_all(0, head as usize + 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>()
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_acknowledged_writes_survive_kill_9() {
    acknowledged_writes_survive_kill_9(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_acknowledged_writes_survive_kill_9() {
    acknowledged_writes_survive_kill_9(Which::Postgres).await;
}
