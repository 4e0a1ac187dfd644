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
    let cwd = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(cwd.path())
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
        "\"id\":\"plaza\"",
        // The file camera streamed and the crowd rule opened an incident on it.
        "\"kind\":\"crowd\"",
        "\"status\":\"online\"",
        " ff d8 ff",
        "\"status\":\"investigating\"",
        "HTTP/1.1 412",
        "VERSION_MISMATCH",
        // The face match: an alert, a person-of-interest incident, a search hit on `door`.
        "\"subject_name\":\"Astronaut\"",
        "\"kind\":\"person_of_interest\"",
        "\"hits\":[{\"camera_id\":\"door\"",
        "camera.registered",
        "camera.updated",
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

/// The spans of `text` between backticks.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Whether `path` (`/api/v1/cameras/lobby`, `/api/v1/cameras/{id}`) is one of the document's
/// path templates, a `{…}` segment matching any segment.
fn documented(path: &str, templates: &[String]) -> bool {
    if path.ends_with('/') {
        // A prefix (`/api/v1/media/…`): some path lies under it.
        return templates.iter().any(|t| t.starts_with(path));
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    templates.iter().any(|t| {
        let template: Vec<&str> = t.split('/').collect();
        template.len() == segments.len()
            && template.iter().zip(&segments).all(|(t, s)| {
                t == s
                    || (t.starts_with('{') && !s.is_empty())
                    || (s.starts_with('{') && t.starts_with('{'))
            })
    })
}

/// Every Kafka topic, HTTP path, `vigil` command, script and linked file the README names
/// exists, so the README cannot drift from the code unnoticed.
#[tokio::test]
async fn every_topic_path_and_command_the_readme_names_exists() {
    let readme = std::fs::read_to_string(crate::support::repo_file("README.md")).unwrap();

    // Topics: `vigil.{category}s` for the categories of the published event types, and all of
    // them named.
    let categories: std::collections::BTreeSet<String> =
        std::fs::read_dir(crate::support::repo_file("schemas/json"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                let (category, rest) = name.split_once('.')?;
                (category != "envelope" && rest.ends_with(".json")).then(|| category.to_string())
            })
            .collect();
    let topics: std::collections::BTreeSet<String> = categories
        .iter()
        .map(|c| vigil::relay::topic_for("vigil", &format!("{c}.x")))
        .collect();
    let named: std::collections::BTreeSet<String> = backticked(&readme)
        .into_iter()
        .filter(|s| s.starts_with("vigil.") && !s.contains(' '))
        .filter(|s| !s.ends_with(".toml") && !s.ends_with(".db"))
        .map(str::to_string)
        .collect();
    assert!(!named.is_empty());
    for topic in &named {
        assert!(
            topics.contains(topic),
            "the README names topic `{topic}`; the relay publishes {topics:?}"
        );
    }
    for topic in &topics {
        assert!(
            named.contains(topic),
            "the README does not name topic `{topic}`"
        );
    }

    // HTTP paths: the API's in the OpenAPI document, the others served (not 404).
    let doc: serde_json::Value = serde_json::from_str(&vigil::api::openapi_json()).unwrap();
    let templates: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let mut paths: Vec<String> = Vec::new();
    for (i, _) in readme.match_indices('/') {
        let before = readme[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '/')
            && !readme[..i].ends_with("URL")
        {
            continue;
        }
        let path: String = readme[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/_-{}.".contains(*c))
            .collect();
        let path = path.trim_end_matches('.').to_string();
        if [
            "/api/v1/",
            "/health/",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/redoc",
            "/ws",
        ]
        .iter()
        .any(|p| path.starts_with(p))
        {
            paths.push(path);
        }
    }
    paths.sort();
    paths.dedup();
    assert!(paths.len() > 20, "{paths:?}");
    let db = crate::support::TestDb::new(crate::support::Which::Sqlite).await;
    let server = crate::support::TestServer::start(db.config()).await;
    for path in &paths {
        if path.starts_with("/api/v1/") || path.starts_with("/health/") && path.len() > 8 {
            assert!(
                documented(path, &templates),
                "the README names {path}, which the API does not serve"
            );
        } else if path != "/health/" {
            let status = server
                .req(reqwest::Method::GET, path)
                .send()
                .await
                .unwrap()
                .status();
            assert_ne!(status, 404, "the README names {path}, which is not served");
        }
    }
    server.stop().await;

    // Commands: each `vigil …` subcommand answers --help.
    for span in backticked(&readme) {
        let Some(rest) = span.strip_prefix("vigil ") else {
            continue;
        };
        let words: Vec<&str> = rest
            .split_whitespace()
            .take_while(|w| {
                w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
            })
            .collect();
        if words.is_empty() {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&words)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the README names `vigil {}`, which is no command",
            words.join(" ")
        );
    }

    // Scripts and linked files are in the repository.
    for (i, _) in readme.match_indices("scripts/") {
        let name: String = readme[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/_-".contains(*c))
            .collect();
        assert!(
            crate::support::repo_file(&name).is_file(),
            "the README names {name}, which does not exist"
        );
    }
    for (i, _) in readme.match_indices("](") {
        let target: String = readme[i + 2..].chars().take_while(|c| *c != ')').collect();
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        assert!(
            crate::support::repo_file(&target).exists(),
            "the README links {target}, which does not exist"
        );
    }
    db.cleanup().await;
}
