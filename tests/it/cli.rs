//! The `vigil` binary's subcommands.

use std::process::Output;

use serde_json::json;

use crate::durability::spawn_server;
use crate::support::{KEY, TestDb, Which};

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
