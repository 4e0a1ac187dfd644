//! WebSocket subscriptions with a real client: resume without gap or duplicate, slow clients
//! closed with a resume position, malformed messages answered, auth required.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{KEY, TestDb, TestServer, Which};

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer, path: &str, key: &str) -> Client {
    let url = format!("{}{}", server.base.replace("http://", "ws://"), path);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    let (client, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket connects");
    client
}

/// The next JSON message, skipping pings; `None` on close.
async fn next_json(client: &mut Client) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a message in time")?;
        match message.expect("a frame") {
            Message::Text(text) => return Some(serde_json::from_str(&text).expect("JSON")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn register(server: &TestServer, id: &str) -> u64 {
    let resp = server
        .req(Method::POST, "/api/v1/cameras")
        .json(&json!({"id": id, "name": id, "source": "push"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.headers()["x-vigil-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_after_a_position_while_writers_append() {
    let db = TestDb::new(Which::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    for i in 0..5 {
        register(&server, &format!("early-{i}")).await;
    }
    let after = server.head().await - 3;
    let mut client = connect(&server, "/ws", KEY).await;
    client
        .send(Message::text(
            json!({"type": "subscribe", "topics": ["cameras"], "after_position": after})
                .to_string(),
        ))
        .await
        .unwrap();
    let ack = next_json(&mut client).await.unwrap();
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["after_position"], after);

    // Writers append while the client catches up.
    let writer = {
        let base = server.base.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..30 {
                let resp = http
                    .post(format!("{base}/api/v1/cameras"))
                    .header("x-api-key", KEY)
                    .json(&json!({"id": format!("live-{i}"), "name": "live", "source": "push"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
            }
        })
    };
    writer.await.unwrap();
    let head = server.head().await;
    let mut positions = Vec::new();
    while positions.last().copied().unwrap_or(after) < head {
        let message = next_json(&mut client).await.expect("open");
        if message["type"] == "event" {
            assert_eq!(message["topic"], "cameras");
            assert_eq!(message["event_type"], "camera.registered");
            positions.push(message["position"].as_u64().unwrap());
        }
    }
    assert_eq!(
        positions,
        ((after + 1)..=head).collect::<Vec<_>>(),
        "every event once, in order, across catch-up and live"
    );
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_client_is_closed_with_a_resume_position_and_resumes_without_loss() {
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.ws_buffer = 64;
    let server = TestServer::start(config).await;
    // Many events at once, more than socket buffers and the queue hold.
    let store = server.app.store().clone();
    for batch in 0..40 {
        let events: Vec<_> = (0..100)
            .map(|i| {
                let e = vigil_schemas::CameraEvent::Updated(vigil_schemas::events::CameraUpdated {
                    camera_id: format!("cam-{batch}"),
                    prompt: Some(format!("{i} {}", "x".repeat(400))),
                    ..Default::default()
                });
                vigil_schemas::DomainEvent::to_new_event(
                    &e,
                    chrono::Utc::now(),
                    &vigil_schemas::EventMeta::system(),
                )
            })
            .collect();
        store
            .append(
                &format!("camera-cam-{batch}"),
                vigil_schemas::ExpectedVersion::Any,
                events,
            )
            .await
            .unwrap();
    }
    let head = server.head().await;
    let mut client = connect(&server, "/ws", KEY).await;
    client
        .send(Message::text(
            json!({"type": "subscribe", "topics": ["cameras"], "after_position": 0}).to_string(),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // do not read: fall behind

    let mut seen = Vec::new();
    let resume = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("in time")
            .expect("frame")
            .unwrap();
        match message {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "event" {
                    seen.push(v["position"].as_u64().unwrap());
                }
            }
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::from(4008));
                let reason = frame.reason.to_string();
                let n: u64 = reason
                    .rsplit('=')
                    .next()
                    .unwrap()
                    .parse()
                    .expect("resume position in the reason");
                break n;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(resume < head, "the client was closed before the end");
    assert_eq!(
        seen.last().copied().unwrap_or(0),
        resume,
        "the resume position is the last event received"
    );

    // Resume, as often as the server closes us (the queue holds only 64 messages), until the end.
    let mut resume = resume;
    let mut reconnects = 0;
    while seen.last().copied().unwrap_or(0) < head {
        reconnects += 1;
        assert!(reconnects < 2000, "no progress");
        let mut client = connect(&server, "/ws", KEY).await;
        client
            .send(Message::text(
                json!({"type": "subscribe", "topics": ["cameras"], "after_position": resume})
                    .to_string(),
            ))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), client.next())
                .await
                .expect("in time");
            let Some(Ok(message)) = message else { break };
            match message {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "event" {
                        seen.push(v["position"].as_u64().unwrap());
                        if v["position"].as_u64() == Some(head) {
                            break;
                        }
                    }
                }
                Message::Close(Some(frame)) => {
                    assert_eq!(frame.code, CloseCode::from(4008));
                    resume = frame.reason.rsplit('=').next().unwrap().parse().unwrap();
                    assert_eq!(seen.last().copied().unwrap_or(0), resume);
                    break;
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        seen,
        (1..=head).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    server.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_messages_get_errors_and_the_connection_stays() {
    let db = TestDb::new(Which::Sqlite).await;
    let mut config = db.config();
    config.ws_heartbeat_secs = 1;
    let server = TestServer::start(config).await;
    let mut client = connect(&server, "/ws", KEY).await;
    for bad in [
        "not json",
        r#"{"type": "subscribe"}"#,
        r#"{"type": "subscribe", "topics": ["weather"]}"#,
        r#"{"type": "teleport"}"#,
        r#"{"type": "subscribe", "topics": ["cameras"], "after_position": 999999}"#,
    ] {
        client.send(Message::text(bad)).await.unwrap();
        let reply = next_json(&mut client).await.expect("still open");
        assert_eq!(reply["type"], "error", "{bad}: {reply}");
        assert_eq!(reply["code"], "INVALID_MESSAGE", "{bad}: {reply}");
    }
    client
        .send(Message::text(r#"{"type": "ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await.unwrap()["type"], "pong");

    // A key without the topic's scope is told so; `system` needs none.
    let created: Value = server
        .req(Method::POST, "/api/v1/api-keys")
        .json(&json!({"name": "sys", "scopes": ["search"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut limited = connect(&server, "/ws", created["secret"].as_str().unwrap()).await;
    limited
        .send(Message::text(
            json!({"type": "subscribe", "topics": ["cameras"]}).to_string(),
        ))
        .await
        .unwrap();
    let reply = next_json(&mut limited).await.unwrap();
    assert_eq!(
        (reply["code"].as_str(), reply["required_scope"].as_str()),
        (Some("FORBIDDEN"), Some("read:cameras"))
    );

    // The system preset reports status every heartbeat.
    let mut system = connect(&server, "/ws/system", KEY).await;
    assert_eq!(next_json(&mut system).await.unwrap()["type"], "subscribed");
    let status = next_json(&mut system).await.unwrap();
    assert_eq!(status["type"], "system", "{status}");
    assert!(
        status["projections"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(status["head"].is_u64());

    // No key, no upgrade.
    let url = format!("{}/ws", server.base.replace("http://", "ws://"));
    let refused = tokio_tungstenite::connect_async(url).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // The query-string key works for browsers.
    let url = format!(
        "{}/ws/events?api_key={KEY}",
        server.base.replace("http://", "ws://")
    );
    let (mut browser, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("api_key in the query");
    assert_eq!(next_json(&mut browser).await.unwrap()["type"], "subscribed");
    server.stop().await;
    db.cleanup().await;
}
