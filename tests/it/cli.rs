//! The `vigil` binary's subcommands.

use std::process::Output;

use serde_json::json;

use crate::durability::{spawn_server, spawn_server_with};
use crate::support::{KEY, TestDb, Which, answer, assert_error};

fn vigil(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.args(args).env("VIGIL_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("vigil runs");
    assert!(
        out.status.success(),
        "vigil {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_rebuild_and_config_on_a_served_database() {
    let db = TestDb::new(Which::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_server(&db.url, dir.path()).await;
    let client = reqwest::Client::new();
    for id in ["a", "b"] {
        let resp = client
            .post(format!("{base}/api/v1/cameras"))
            .header("x-api-key", KEY)
            .json(&json!({"id": id, "name": id, "source": "push"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let env = [("VIGIL_DATABASE_URL", db.url.as_str())];

    let out = vigil(&["replay"], &env);
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON envelope per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["position"], 1);
    assert_eq!(lines[1]["stream"], "camera-b");
    let out = vigil(&["replay", "--stream", "camera-b"], &env);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let out = vigil(&["replay", "--after", "1"], &env);
    assert!(String::from_utf8(out.stdout).unwrap().contains("camera-b"));

    let out = vigil(&["projections", "rebuild", "cameras"], &env);
    assert!(String::from_utf8_lossy(&out.stderr).contains("applied up to position 2"));
    let out = vigil(&["verify"], &env);
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("identical (2 rows)"), "{report}");
    // The Lance tables are compared too (replayed into a scratch folder).
    for table in ["subject_faces", "appearances", "track_entries"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("vectors") && l.contains(table) && l.contains("identical")),
            "{report}"
        );
    }
    // A read model that no longer matches its events is caught.
    let (pool, _) = vigil::store::open_pool(&db.url, 1).await.unwrap();
    sqlx::query("UPDATE cameras SET name = 'tampered' WHERE id = 'a'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let tampered = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("verify")
        .env("VIGIL_DATABASE_URL", &db.url)
        .env("VIGIL_LOG", "warn")
        .output()
        .unwrap();
    assert!(!tampered.status.success());
    assert!(String::from_utf8_lossy(&tampered.stdout).contains("DIFFERENT"));
    vigil(&["projections", "rebuild", "cameras"], &env);
    vigil(&["verify"], &env);
    let out = vigil(&["projections", "status"], &env);
    assert!(String::from_utf8(out.stdout).unwrap().contains("cameras"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["projections", "rebuild", "nope"])
        .env("VIGIL_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no projection named `nope`"));

    let out = vigil(
        &["config"],
        &[
            ("VIGIL_ADMIN_KEY", "super-secret"),
            ("VIGIL_DATABASE_URL", "postgres://u:pw@h/db"),
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("admin_key = \"****\"") && !text.contains("super-secret"),
        "{text}"
    );
    assert!(
        text.contains("postgres://u:****@h/db") && !text.contains(":pw@"),
        "{text}"
    );
    db.cleanup().await;
}

#[test]
fn schemas_export_writes_the_committed_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stale.v0.json"), "{}").unwrap();
    vigil(
        &["schemas", "export", "--dir", dir.path().to_str().unwrap()],
        &[],
    );
    let committed = crate::support::repo_file("schemas/json");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(
        !names.iter().any(|n| n == "stale.v0.json"),
        "files no event owns are removed"
    );
    assert!(names.len() >= 5);
    for name in names {
        let fresh = std::fs::read_to_string(dir.path().join(&name)).unwrap();
        let old = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert_eq!(fresh, old, "{name:?}");
    }
}

/// A configured KurrentDB that does not answer stops `vigil serve` with an error naming it,
/// instead of serving on another store.
#[test]
fn serve_refuses_to_start_when_kurrentdb_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("serve")
        .env("VIGIL_DATA_DIR", dir.path())
        .env("VIGIL_LISTEN", "127.0.0.1:0")
        .env("VIGIL_KURRENTDB_URL", "esdb://127.0.0.1:9?tls=false")
        .env("VIGIL_LOG", "warn")
        .output()
        .expect("vigil runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KurrentDB"), "{stderr}");
}

#[test]
fn bench_search_compares_lance_with_faiss_on_the_same_vectors() {
    let out = vigil(
        &[
            "bench",
            "search",
            "--vectors",
            "3000",
            "--queries",
            "20",
            "--no-hnsw",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // | engine | method | build s | p50 ms | p99 ms | recall@10 |
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| lance") || l.starts_with("| faiss"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let recall = |engine: &str, method: &str| -> f64 {
        let row = rows
            .iter()
            .find(|r| r[0] == engine && r[1].starts_with(method))
            .unwrap_or_else(|| panic!("no {engine} {method} row in\n{stdout}"));
        for latency in [row[3], row[4]] {
            assert!(latency.parse::<f64>().unwrap() > 0.0, "{row:?}");
        }
        row[5].parse().unwrap()
    };
    assert_eq!(recall("lance", "exact"), 1.0, "exact is the ground truth");
    assert_eq!(
        recall("faiss", "exact"),
        1.0,
        "FAISS agrees with Lance's exact answer"
    );
    for engine in ["lance", "faiss"] {
        let r = recall(engine, "IVF-PQ 55×PQ16, nprobes 32, refine 10");
        assert!((0.0..=1.0).contains(&r), "{r}");
    }
    assert_eq!(rows.len(), 6, "{stdout}");
}

/// `vigil serve` with an assets folder that lacks the weights refuses to start, naming the
/// missing file and the command that fetches it (no 503 on the first analysis later); with the
/// weights it starts, `/health/ready` says they are verified, and the models are preloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_checks_the_weights_at_start_and_reports_the_models_when_ready() {
    // The folder comes from the config (VIGIL_ASSETS_DIR) or, as for scripts/fetch-assets,
    // from VIGIL_ASSETS.
    for variable in ["VIGIL_ASSETS_DIR", "VIGIL_ASSETS"] {
        let empty = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
                .arg("serve")
                .env("VIGIL_DATA_DIR", data.path())
                .env("VIGIL_LISTEN", "127.0.0.1:0")
                .env(variable, empty.path())
                .env("VIGIL_LOG", "warn")
                .output(),
        )
        .await
        .expect("vigil serve stops by itself")
        .unwrap();
        assert!(!out.status.success(), "{variable}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let missing = format!(
            "{}/face-api/ssd_mobilenetv1_model-weights_manifest.json",
            empty.path().display()
        );
        assert!(stderr.contains(&missing), "{variable}: {stderr}");
        assert!(
            stderr.contains("scripts/fetch-assets --weights"),
            "{stderr}"
        );
        assert!(
            !data.path().join("vigil.db").exists(),
            "nothing was created before refusing"
        );
    }

    let db = TestDb::new(Which::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) =
        spawn_server_with(&db.url, dir.path(), &[("VIGIL_MODELS_BACKEND", "cpu")]).await;
    let client = reqwest::Client::new();
    let ready = crate::support::until(60, "the models to be preloaded", || async {
        let body: serde_json::Value = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["models"]["state"] != "not_loaded").then_some(body)
    })
    .await;
    assert_eq!(ready["models"]["weights"], "verified", "{ready}");
    assert_eq!(ready["models"]["state"], "loaded", "{ready}");
    assert_eq!(ready["models"]["workers_loaded"], 1, "{ready}");
    assert_eq!(ready["status"], "ok", "{ready}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    db.cleanup().await;
}

/// `vigil doctor` passes on a served database with the weights in place, and fails naming the
/// file when the weights folder is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_reports_each_check_and_fails_without_the_weights() {
    let db = TestDb::new(Which::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = spawn_server(&db.url, dir.path()).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let data = dir.path().to_str().unwrap();
    let env = [
        ("VIGIL_DATABASE_URL", db.url.as_str()),
        ("VIGIL_DATA_DIR", data),
        ("VIGIL_MODELS_BACKEND", "cpu"),
    ];
    let out = vigil(&["doctor"], &env);
    let report = String::from_utf8(out.stdout).unwrap();
    for (verdict, check) in [
        ("ok", "config"),
        ("ok", "weights"),
        ("ok", "models"),
        ("ok", "database"),
        ("skip", "kafka"),
        ("skip", "webhooks"),
        ("ok", "clock"),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([verdict, check])),
            "no `{verdict} {check}` line in\n{report}"
        );
    }
    assert!(report.contains("migrated to version"), "{report}");
    assert!(report.contains("GiB free"), "{report}");

    let empty = tempfile::tempdir().unwrap();
    let failed = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("doctor")
        .envs(env)
        .env("VIGIL_ASSETS_DIR", empty.path())
        .env("VIGIL_KAFKA_BROKERS", "127.0.0.1:9")
        .env("VIGIL_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let report = String::from_utf8_lossy(&failed.stdout);
    let weights = report
        .lines()
        .find(|l| l.starts_with("FAIL weights"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        weights.contains("face-api/ssd_mobilenetv1_model-weights_manifest.json")
            && weights.contains("scripts/fetch-assets --weights"),
        "{weights}"
    );
    assert!(report.contains("FAIL kafka"), "{report}");
    assert!(report.contains("2 check(s) failed"), "{report}");
    db.cleanup().await;
}

/// Cameras declared in the config file become camera events with the file as actor at each
/// start: registered when new, updated when changed, disabled when dropped from the file,
/// nothing when unchanged; the API refuses to change or remove them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cameras_declared_in_the_config_file_are_reconciled_at_each_start() {
    let db = TestDb::new(Which::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vigil.toml");
    let camera = |id: &str, fps: u32| {
        format!(
            "[[cameras]]\nid = \"{id}\"\nname = \"Camera {id}\"\nsource = \"push\"\nsample_fps = {fps}\nfeatures = {{ crowd = true }}\n"
        )
    };
    let data = dir.path().join("data");
    let env = [("VIGIL_CONFIG", file.to_str().unwrap())];
    let client = reqwest::Client::new();
    // Starts the server on the file as it is, optionally runs `during`, stops it, and answers
    // the camera settings events (registered, updated, removed) stored so far.
    let start = |during: bool| {
        let (db_url, data, env, client) = (db.url.clone(), data.clone(), env, client.clone());
        async move {
            let (mut child, base) = spawn_server_with(&db_url, &data, &env).await;
            if during {
                let patch = client
                    .patch(format!("{base}/api/v1/cameras/a"))
                    .header("x-api-key", KEY)
                    .json(&json!({"name": "renamed"}))
                    .send()
                    .await
                    .unwrap();
                let (status, body) = answer(patch).await;
                assert_error(status, &body, 409, "CAMERA_DECLARED_IN_CONFIG");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("vigil.toml"),
                    "{body}"
                );
                let delete = client
                    .delete(format!("{base}/api/v1/cameras/b"))
                    .header("x-api-key", KEY)
                    .send()
                    .await
                    .unwrap();
                let (status, body) = answer(delete).await;
                assert_error(status, &body, 409, "CAMERA_DECLARED_IN_CONFIG");
                let (status, listed) = answer(
                    client
                        .get(format!("{base}/api/v1/cameras"))
                        .header("x-api-key", KEY)
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                assert_eq!(status, 200, "{listed}");
                assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
            }
            child.start_kill().unwrap();
            child.wait().await.unwrap();
            let out = vigil(&["replay"], &[("VIGIL_DATABASE_URL", db_url.as_str())]);
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|e| {
                    matches!(
                        e["event_type"].as_str(),
                        Some("camera.registered" | "camera.updated" | "camera.removed")
                    )
                })
                .collect::<Vec<_>>()
        }
    };

    std::fs::write(&file, camera("a", 1) + &camera("b", 1)).unwrap();
    let events = start(true).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for (e, id) in events.iter().zip(["a", "b"]) {
        assert_eq!(e["event_type"], "camera.registered");
        assert_eq!(e["payload"]["camera_id"], id);
        assert_eq!(e["actor"], "config:vigil.toml");
        assert_eq!(e["payload"]["features"]["crowd"], true);
    }

    std::fs::write(&file, camera("a", 1) + &camera("b", 4)).unwrap();
    let events = start(false).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2]["event_type"], "camera.updated");
    assert_eq!(events[2]["payload"]["camera_id"], "b");
    assert_eq!(events[2]["payload"]["sample_fps"], 4.0);
    assert_eq!(events[2]["actor"], "config:vigil.toml");

    std::fs::write(&file, camera("b", 4)).unwrap();
    let events = start(false).await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[3]["payload"]["camera_id"], "a");
    assert_eq!(events[3]["payload"]["enabled"], false);
    assert_eq!(events[3]["actor"], "config:vigil.toml");

    let events = start(false).await;
    assert_eq!(
        events.len(),
        4,
        "a start with nothing changed appends nothing"
    );
    db.cleanup().await;
}
