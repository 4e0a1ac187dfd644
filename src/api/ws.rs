//! `/ws`: live event subscriptions that resume from a position without gap or duplicate.
//!
//! A client authenticates like any request (`X-API-Key`, `Authorization: Bearer`), or, since
//! browsers cannot set headers on the handshake, with the subprotocols `vigil` and
//! `vigil.key.{base64url of the key}` (the console does this) or `?api_key=`; then it sends
//!
//! ```json
//! {"type": "subscribe", "topics": ["cameras", "system"], "camera_ids": ["lobby"],
//!  "severities": ["high"], "after_position": 42}
//! ```
//!
//! and receives every matching stored event after that position, then live ones, as
//! `{"type": "event", "position", "stream", "event_type", "occurred_at", "topic", "payload"}`.
//! The store's subscription is one stream from catch-up into live, so nothing is skipped or
//! repeated at the switch. A client that falls `ws_buffer` messages behind is closed with code
//! 4008 and a reason naming the `after_position` to resume from. `system` messages (head,
//! projection lag, camera count, queue depth) and pings come every `ws_heartbeat_secs`.
//! When the store fails under a subscription (the database is down), the client gets
//! `{"type": "error", "code": "SUBSCRIPTION_INTERRUPTED", "after_position"}` and the server
//! subscribes again from there every two seconds until the store answers: a pause, no gap.
//! `/ws/events`, `/ws/detections`, `/ws/system` and `/ws/analysis` start with preset topics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocket};
use poem::web::{Data, Path};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_schemas::{EventSubscription, RecordedEvent};

use super::auth::authenticate;
use super::error::ApiError;
use crate::app::{App, Principal};

/// The subprotocol the server chooses when a client offers it (with its key as
/// `vigil.key.{base64url}`, see [`super::auth::KEY_SUBPROTOCOL`]).
pub const PROTOCOL: &str = "vigil";

/// The close code of a client that fell too far behind.
pub const SLOW_CONSUMER: u16 = 4008;

/// How long a connection waits to subscribe again after the store failed under it.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(2);

/// How long a closing connection may take to flush what is queued before it is dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Topics a client can subscribe to, with the scope each needs (`None`: any key).
const TOPICS: &[(&str, Option<&str>)] = &[
    ("cameras", Some("read:cameras")),
    ("tracks", Some("read:cameras")),
    ("incidents", Some("read:incidents")),
    ("alerts", Some("read:incidents")),
    ("subjects", Some("read:subjects")),
    ("system", None),
];

/// The topic of a stored event, by its type's category; `None` for events never published on
/// WebSockets (API keys).
pub fn topic_of(event_type: &str) -> Option<&'static str> {
    match event_type.split('.').next()? {
        "camera" => Some("cameras"),
        "track" | "appearance" | "detection" => Some("tracks"),
        "incident" | "action" => Some("incidents"),
        "alert" => Some("alerts"),
        "clip" => Some("incidents"),
        "subject" | "face" => Some("subjects"),
        _ => None,
    }
}

/// A client's message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        topics: Vec<String>,
        #[serde(default)]
        camera_ids: Vec<String>,
        #[serde(default)]
        severities: Vec<String>,
        after_position: Option<u64>,
    },
    Ping,
}

/// What a connection currently wants.
#[derive(Debug, Clone, Default)]
struct Filter {
    topics: Vec<String>,
    camera_ids: Vec<String>,
    severities: Vec<String>,
}

impl Filter {
    fn admits(&self, principal: &Principal, event: &RecordedEvent) -> Option<&'static str> {
        let topic = topic_of(&event.event_type)?;
        if !self.topics.iter().any(|t| t == topic) {
            return None;
        }
        let camera = event.payload.get("camera_id").and_then(Value::as_str);
        if let Some(camera) = camera {
            if !principal.may_access_camera(camera) {
                return None;
            }
            if !self.camera_ids.is_empty() && !self.camera_ids.iter().any(|c| c == camera) {
                return None;
            }
        } else if principal.is_camera_restricted() || !self.camera_ids.is_empty() {
            return None;
        }
        if !self.severities.is_empty() {
            let severity = event.payload.get("severity").and_then(Value::as_str)?;
            if !self.severities.iter().any(|s| s == severity) {
                return None;
            }
        }
        Some(topic)
    }
}

/// A message for the writer task: data (with the position it carries) or a close.
enum Outgoing {
    Text(String, Option<u64>),
    Ping,
    Close(u16, String),
}

fn preset(name: &str) -> Option<Vec<String>> {
    let topics: &[&str] = match name {
        "events" => &["cameras", "tracks", "incidents", "alerts", "subjects"],
        "detections" => &["tracks"],
        "system" => &["system"],
        "analysis" => &["incidents", "alerts", "tracks"],
        _ => return None,
    };
    Some(topics.iter().map(|t| t.to_string()).collect())
}

/// `GET /ws`: a connection with no topics until the client subscribes.
#[handler]
pub async fn ws(req: &Request, socket: WebSocket, app: Data<&App>) -> poem::Result<Response> {
    upgrade(req, socket, app.0.clone(), None).await
}

/// `GET /ws/{preset}`: `events`, `detections`, `system` or `analysis`, subscribed from the
/// current head at once.
#[handler]
pub async fn ws_preset(
    req: &Request,
    socket: WebSocket,
    app: Data<&App>,
    Path(name): Path<String>,
) -> poem::Result<Response> {
    let topics = preset(&name).ok_or_else(|| {
        ApiError::not_found(
            "NOT_FOUND",
            format!("no WebSocket preset `{name}`; try events, detections, system, analysis"),
        )
    })?;
    upgrade(req, socket, app.0.clone(), Some(topics)).await
}

async fn upgrade(
    req: &Request,
    socket: WebSocket,
    app: App,
    topics: Option<Vec<String>>,
) -> poem::Result<Response> {
    let principal = authenticate(req).await?;
    // A browser that sent its key as a subprotocol needs one of its protocols chosen back.
    Ok(socket
        .protocols([PROTOCOL])
        .on_upgrade(move |stream| async move {
            let (sink, source) = stream.split();
            serve_connection(app, principal, sink, source, topics).await;
        })
        .into_response())
}

async fn serve_connection<S, R>(
    app: App,
    principal: Principal,
    mut sink: S,
    mut source: R,
    preset: Option<Vec<String>>,
) where
    S: futures::Sink<Message> + Unpin + Send + 'static,
    R: futures::Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let buffer = app.config().ws_buffer;
    let heartbeat = Duration::from_secs(app.config().ws_heartbeat_secs);
    let (data_tx, mut data_rx) = mpsc::channel::<Outgoing>(buffer);
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Outgoing>();
    let delivered = Arc::new(AtomicU64::new(0));

    // The writer: control messages first, then data; remembers the last position written.
    let written = delivered.clone();
    let writer = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                Some(m) = control_rx.recv() => m,
                Some(m) = data_rx.recv() => m,
                else => break,
            };
            let (message, position, last) = match next {
                Outgoing::Text(text, position) => (Message::Text(text), position, false),
                Outgoing::Ping => (Message::Ping(Vec::new()), None, false),
                Outgoing::Close(code, reason) => (
                    Message::Close(Some((CloseCode::from(code), reason))),
                    None,
                    true,
                ),
            };
            if sink.send(message).await.is_err() {
                break;
            }
            if let Some(p) = position {
                written.store(p, Ordering::SeqCst);
            }
            if last {
                let _ = sink.close().await;
                break;
            }
        }
    });

    let send_control = |value: Value| {
        let _ = control_tx.send(Outgoing::Text(value.to_string(), None));
    };
    let mut filter = Filter::default();
    let mut subscription: Option<EventSubscription> = None;
    // The position of the last event taken from the subscription (sent or filtered out), and,
    // after the store failed under the subscription, when to subscribe again from there.
    let mut taken = 0;
    let mut resume: Option<tokio::time::Instant> = None;
    if let Some(topics) = preset {
        filter.topics = topics;
        let from = app.store().head_position().await.unwrap_or(0);
        subscription = Some(app.store().subscribe_all(from));
        taken = from;
        delivered.store(from, Ordering::SeqCst);
        send_control(
            json!({"type": "subscribed", "topics": filter.topics, "after_position": from}),
        );
    }
    let mut tick = tokio::time::interval(heartbeat);
    tick.tick().await;
    let mut slow = false;

    loop {
        tokio::select! {
            incoming = source.next() => {
                let Some(Ok(message)) = incoming else { break };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                match serde_json::from_str::<ClientMessage>(&text) {
                    Err(err) => send_control(json!({"type": "error", "code": "INVALID_MESSAGE", "message": err.to_string()})),
                    Ok(ClientMessage::Ping) => send_control(json!({"type": "pong"})),
                    Ok(ClientMessage::Subscribe { topics, camera_ids, severities, after_position }) => {
                        if let Some(error) = check_topics(&principal, &topics) {
                            send_control(error);
                            continue;
                        }
                        let head = match app.store().head_position().await {
                            Ok(head) => head,
                            Err(err) => {
                                send_control(json!({"type": "error", "code": "UNAVAILABLE", "message": err.to_string()}));
                                continue;
                            }
                        };
                        let from = after_position.unwrap_or(head);
                        if from > head {
                            send_control(json!({"type": "error", "code": "INVALID_MESSAGE",
                                "message": format!("after_position {from} is beyond the newest stored event ({head})")}));
                            continue;
                        }
                        filter = Filter { topics, camera_ids, severities };
                        subscription = Some(app.store().subscribe_all(from));
                        taken = from;
                        resume = None;
                        delivered.store(from, Ordering::SeqCst);
                        send_control(json!({"type": "subscribed", "topics": filter.topics, "after_position": from}));
                    }
                }
            }
            batch = next_batch(&mut subscription), if subscription.is_some() => {
                let batch = match batch {
                    Some(Ok(batch)) => batch,
                    Some(Err(err)) => {
                        // The store failed (the database is down): subscribe again from the
                        // last event taken, so the client sees a pause, not a gap.
                        send_control(json!({"type": "error", "code": "SUBSCRIPTION_INTERRUPTED",
                            "message": format!("{err}; resuming after position {taken}"),
                            "after_position": taken}));
                        subscription = None;
                        resume = Some(tokio::time::Instant::now() + RESUBSCRIBE_AFTER);
                        continue;
                    }
                    None => { subscription = None; continue; }
                };
                for event in &batch {
                    taken = event.position;
                    let Some(topic) = filter.admits(&principal, event) else { continue };
                    let message = json!({
                        "type": "event",
                        "position": event.position,
                        "stream": event.stream,
                        "event_type": event.event_type,
                        "schema_version": event.schema_version,
                        "occurred_at": event.occurred_at,
                        "topic": topic,
                        "payload": event.payload,
                    });
                    if data_tx.try_send(Outgoing::Text(message.to_string(), Some(event.position))).is_err() {
                        slow = true;
                        break;
                    }
                }
                if slow {
                    break;
                }
            }
            () = tokio::time::sleep_until(resume.unwrap_or_else(tokio::time::Instant::now)), if resume.is_some() && subscription.is_none() => {
                resume = None;
                subscription = Some(app.store().subscribe_all(taken));
            }
            _ = tick.tick() => {
                let _ = control_tx.send(Outgoing::Ping);
                if filter.topics.iter().any(|t| t == "system") {
                    let status = system_status(&app, buffer - data_tx.capacity()).await;
                    if data_tx.try_send(Outgoing::Text(status.to_string(), None)).is_err() {
                        slow = true;
                        break;
                    }
                }
            }
        }
    }
    if slow {
        // Let the writer flush what is queued (for a while: a client that reads nothing at all
        // would block it for ever), then close with the position to resume from.
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while data_tx.capacity() < buffer
            && !writer.is_finished()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let resume = delivered.load(Ordering::SeqCst);
        let _ = control_tx.send(Outgoing::Close(
            SLOW_CONSUMER,
            format!("slow consumer: resume with after_position={resume}"),
        ));
    } else {
        let _ = control_tx.send(Outgoing::Close(1000, "bye".into()));
    }
    drop(data_tx);
    drop(control_tx);
    let mut writer = writer;
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        // The client reads nothing: drop the connection rather than hold a task for it.
        writer.abort();
    }
}

async fn next_batch(
    subscription: &mut Option<EventSubscription>,
) -> Option<Result<Vec<RecordedEvent>, vigil_schemas::StoreError>> {
    match subscription {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn check_topics(principal: &Principal, topics: &[String]) -> Option<Value> {
    if topics.is_empty() {
        return Some(
            json!({"type": "error", "code": "INVALID_MESSAGE", "message": "name at least one topic"}),
        );
    }
    for topic in topics {
        match TOPICS.iter().find(|(name, _)| name == topic) {
            None => {
                let known: Vec<&str> = TOPICS.iter().map(|(n, _)| *n).collect();
                return Some(json!({"type": "error", "code": "INVALID_MESSAGE",
                    "message": format!("unknown topic `{topic}`; one of {}", known.join(", "))}));
            }
            Some((_, Some(scope))) if !principal.has_scope(scope) => {
                return Some(json!({"type": "error", "code": "FORBIDDEN",
                    "message": format!("topic `{topic}` needs the scope `{scope}`"), "required_scope": scope}));
            }
            Some(_) => {}
        }
    }
    None
}

async fn system_status(app: &App, queue_depth: usize) -> Value {
    let head = app.store().head_position().await.unwrap_or(0);
    let mut projections = Vec::new();
    for runner in app.runners() {
        let position = runner.status().position();
        projections.push(json!({"name": runner.name(), "position": position, "lag": head.saturating_sub(position)}));
    }
    let cameras = vigil_projections::cameras::count_cameras(app.pool())
        .await
        .ok();
    json!({
        "type": "system",
        "head": head,
        "projections": projections,
        "cameras": cameras,
        "queue_depth": queue_depth,
    })
}
