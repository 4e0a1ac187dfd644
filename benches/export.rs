//! Incident export benchmark: `GET /api/v1/incidents/export` streaming 10 000 and 100 000
//! incidents as CSV and NDJSON from the embedded SQLite read model.
//!
//! `cargo bench --bench export`. Prints rows per second and the process's peak resident memory
//! during each export (the kernel's high-water mark is reset before each one through
//! `/proc/self/clear_refs`), so a memory bound shows as a peak that does not grow with the
//! row count.
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use vigil::app::App;
use vigil::config::Config;
use vigil_schemas::events::{
    FrameRef, IncidentKind, IncidentOpened, IncidentSubjects, Severity, incident_stream,
};
use vigil_schemas::{DomainEvent, EventMeta, ExpectedVersion, IncidentEvent};

const KEY: &str = "bench-admin-key";

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets the peak resident set size (VmHWM) to the current one.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
}

async fn seed(app: &App, from: usize, to: usize) {
    let kinds = [
        IncidentKind::Crowd,
        IncidentKind::Intrusion,
        IncidentKind::Loitering,
    ];
    let base = Utc::now() - chrono::Duration::days(30);
    let started = Instant::now();
    futures::stream::iter(from..to)
        .map(|i| {
            let store = app.store().clone();
            async move {
                let at = base + chrono::Duration::milliseconds(i as i64 * 20);
                let id = format!("bench-{i:07}");
                let opened = IncidentEvent::Opened(IncidentOpened {
                    incident_id: id.clone(),
                    kind: kinds[i % 3],
                    severity: Severity::ALL[i % 4],
                    confidence: 0.5 + (i % 50) as f64 / 100.0,
                    camera_id: Some(format!("cam-{:02}", i % 16)),
                    zone: Some("lobby".into()),
                    reasoning: format!(
                        "{} persons in zone 'lobby' for 4.0 s (threshold 5 persons for 3.0 s), \
                         seen at the north entrance",
                        5 + i % 7
                    ),
                    subjects: IncidentSubjects {
                        track_ids: vec![format!("0193b2e0-0000-7000-8000-{i:012}")],
                        subject_id: None,
                    },
                    recommended_actions: vec!["increase_monitoring".into()],
                    evidence: vec![FrameRef {
                        persons: vec![],
                        blob: format!("{:064x}", i),
                        frame_number: i as u64,
                        at,
                    }],
                    dedup_key: format!("cam:{i}"),
                    source: "rule:crowd".into(),
                    observed_at: at,
                });
                store
                    .append(
                        &incident_stream(&id),
                        ExpectedVersion::NoStream,
                        vec![opened.to_new_event(at, &EventMeta::system())],
                    )
                    .await
                    .expect("append");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let head = app.store().head_position().await.expect("head");
    let status = app.projection_status("incidents").expect("incidents");
    assert!(
        status.wait_for(head, Duration::from_secs(1800)).await,
        "read model caught up"
    );
    println!(
        "seeded incidents {from}..{to} in {:.1} s (appended and projected)",
        started.elapsed().as_secs_f64()
    );
}

async fn export(base: &str, format: &str, expected: usize) -> (f64, f64, u64, u64) {
    let client = reqwest::Client::new();
    let before = status_kib("VmRSS:");
    reset_peak();
    let started = Instant::now();
    let res = client
        .get(format!("{base}/api/v1/incidents/export?format={format}"))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("export");
    assert!(res.status().is_success());
    let mut lines = 0usize;
    let mut bytes = 0usize;
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let secs = started.elapsed().as_secs_f64();
    let rows = if format == "csv" { lines - 1 } else { lines };
    assert_eq!(rows, expected, "every incident exported once");
    let peak = status_kib("VmHWM:");
    (
        rows as f64 / secs,
        bytes as f64 / secs / 1e6,
        before / 1024,
        peak / 1024,
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: dir.path().join("data"),
            admin_key: KEY.into(),
            ingest: false,
            poll_interval_ms: 50,
            ..Config::default()
        };
        let (app, _) = App::open(config).await.expect("app");
        let _tasks = app.spawn_background();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let served = app.clone();
        tokio::spawn(async move {
            vigil::api::serve(served, listener, std::future::pending())
                .await
                .expect("serve");
        });

        let mut rows = vec![];
        let mut seeded = 0;
        for n in [10_000, 100_000] {
            seed(&app, seeded, n).await;
            seeded = n;
            for format in ["csv", "ndjson"] {
                let (rate, mbs, before, peak) = export(&base, format, n).await;
                rows.push(format!(
                    "| {n} | {format} | {rate:.0} | {mbs:.1} | {before} | {peak} |"
                ));
            }
        }
        println!("| incidents | format | rows/s | MB/s | RSS before (MiB) | peak RSS during export (MiB) |");
        println!("|---:|---|---:|---:|---:|---:|");
        for row in rows {
            println!("{row}");
        }
    });
}
