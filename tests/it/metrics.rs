//! `/metrics` as Prometheus reads it: the text parses with the Prometheus Python client's
//! parser (PyPI `prometheus-client`, installed by scripts/setup), and every series the Grafana
//! dashboard in `docs/grafana/vigil.json` queries is there on a node with cameras, Kafka, MQTT
//! and a webhook target.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};
use vigil::webhooks::WebhookTarget;

use crate::kafka::{Broker, venv_python};
use crate::mqtt::Mosquitto;
use crate::support::{TestDb, TestServer, Which, call, free_port, repo_file, until};

/// The metric names an expression of the dashboard reads.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut inside_braces = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        match c {
            '{' => inside_braces = true,
            '}' => inside_braces = false,
            _ => {}
        }
        if !inside_braces && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
            continue;
        }
        if word.starts_with("vigil_") || word.starts_with("process_") {
            names.push(word.clone());
        }
        word.clear();
    }
    names
}

/// Parses the exposition with `prometheus_client.parser` and returns every sample's name.
async fn parse_with_prometheus_client(text: &str) -> HashSet<String> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
names = set()
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        names.add(sample.name)
print(json.dumps(sorted(names)))
"#;
    let mut child = tokio::process::Command::new(venv_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python from the venv scripts/setup makes");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<String>>(&out.stdout)
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_grafana_dashboard_finds_every_series_it_queries() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("docs/grafana/vigil.json")).unwrap(),
    )
    .unwrap();
    let queried: HashSet<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .flat_map(|t| names_in(t["expr"].as_str().unwrap()))
        .collect();
    assert!(queried.len() >= 20, "{queried:?}");

    let kafka = Broker::start(free_port()).await;
    let dir = tempfile::tempdir().unwrap();
    let mqtt_port = free_port();
    let mut mqtt = Mosquitto::start(mqtt_port, dir.path()).await;
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.ingest = true;
    config.kafka_brokers = kafka.addr();
    config.kafka_message_timeout_ms = 5000;
    config.mqtt_url = format!("mqtt://127.0.0.1:{mqtt_port}");
    config.webhooks = vec![WebhookTarget::new("desk", "http://127.0.0.1:9/hook")];
    let server = TestServer::start(config).await;
    let (code, body) = call(
        &server,
        Method::POST,
        "/api/v1/cameras",
        Some(json!({"id": "lobby", "name": "Lobby", "source": "push"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = call(&server, Method::GET, "/api/v1/cameras/nowhere", None).await;
    assert_eq!(code, 404);

    let text = until(30, "every queried series in /metrics", || async {
        let text = server.metrics().await;
        let samples = parse_with_prometheus_client(&text).await;
        queried.iter().all(|q| samples.contains(q)).then_some(text)
    })
    .await;
    let samples = parse_with_prometheus_client(&text).await;
    let missing: Vec<_> = queried.iter().filter(|q| !samples.contains(*q)).collect();
    assert!(missing.is_empty(), "missing {missing:?}");
    // A few values that must be right, not only present.
    assert!(
        text.contains("vigil_camera_running{camera=\"lobby\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vigil_webhook_deliveries{target=\"desk\",status=\"dead\"} 0"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("vigil_http_requests_total{")
                && l.contains("route=\"/api/v1/cameras/{}\"")
                && l.contains("status=\"404\"")),
        "{text}"
    );
    assert!(text.contains("# HELP vigil_camera_persons "), "{text}");
    server.stop().await;
    mqtt.stop().await;
    kafka.stop().await;
    db.cleanup().await;
}
