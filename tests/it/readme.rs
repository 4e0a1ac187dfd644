//! The README's curl walk-through, run as written against a real server.

use crate::durability::spawn_server;
use crate::support::{KEY, TestDb, Which};

fn walkthrough() -> String {
    let readme = std::fs::read_to_string(crate::support::repo_file("README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("walk-through start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walk-through end marker");
    let section = &readme[start..end];
    let mut script = String::new();
    let mut inside = false;
    for line in section.lines() {
        if line.starts_with("```bash") {
            inside = true;
        } else if line.starts_with("```") {
            inside = false;
        } else if inside {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert!(
        script.contains("curl"),
        "the walk-through has curl commands"
    );
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readme_walkthrough_runs_as_written() {
    let db = TestDb::new(Which::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_server(&db.url, dir.path()).await;
    let script = walkthrough();
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("VIGIL_URL", &base)
        .env("VIGIL_KEY", KEY)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walk-through failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "\"id\":\"lobby\"",
        "HTTP/1.1 412",
        "VERSION_MISMATCH",
        "camera.registered",
        "camera.updated",
        "\"items\"",
        "\"secret\":\"vgl_",
    ] {
        assert!(
            stdout.contains(expected),
            "walk-through output lacks {expected}:\n{stdout}"
        );
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    db.cleanup().await;
}
