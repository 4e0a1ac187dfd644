//! MQTT: how Vigil reaches Home Assistant and the rest of the MQTT ecosystem.
//!
//! Two publishers share one topic tree under `{mqtt_topic_prefix}/` (default `vigil/`):
//! - The **relay** ([`MqttRelay`]) is a checkpointed subscriber of `$all` like the Kafka relay
//!   (`projection_checkpoints` row `mqtt-relay`, one leader per cluster): it turns camera
//!   status, incident and face-match events into messages, publishes a batch with QoS 1, waits
//!   for the broker's acknowledgement of every message, and only then moves its checkpoint by
//!   compare-and-set. A broker outage or a crash makes it start again from the checkpoint, so
//!   nothing after it is lost and a message may come twice (the payload's `event_id` tells).
//!   Its connection's last will marks `{prefix}/available` `offline`; it also publishes the
//!   Home Assistant discovery configs of every camera (retained) and withdraws a removed
//!   camera's.
//! - The **live state** ([`LiveState`]) runs on every ingest node: once a second it publishes
//!   each running camera's person count and motion state (retained) when they change, which
//!   are not events.
//!
//! Home Assistant discovery follows the MQTT discovery schema of Home Assistant 2024.12+
//! (`{discovery_prefix}/{component}/vigil/{camera}_{entity}/config`, a `device` per camera,
//! an `origin`, availability from the relay's will and the camera's status).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rumqttc::{
    AsyncClient, ClientError, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill,
    MqttOptions, Packet, QoS, Transport,
};
use serde_json::{Value, json};
use sqlx::AnyPool;
use vigil_actors::blob::BlobStore;
use vigil_schemas::events::{CameraEvent, IncidentEvent, SubjectEvent};
use vigil_schemas::{Direction, DomainEvent, EventStore, RecordedEvent};

use vigil_projections::checkpoint::Checkpoint;

use crate::config::Config;
use crate::links::MediaLinks;

pub mod settings;

pub use settings::{BrokerAddress, parse_url};

/// The relay's checkpoint name.
pub const CHECKPOINT: &str = "mqtt-relay";

/// Largest message the relay sends or accepts (an evidence JPEG).
const MAX_PACKET: usize = 16 << 20;
/// Longest a batch waits for the broker's acknowledgements before the relay restarts.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection attempt waits for the broker's CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the relay stopped (it then restarts from its checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The connection failed or was lost.
    #[error("mqtt connection: {0}")]
    Connection(#[from] ConnectionError),
    /// The client's request queue is gone.
    #[error("mqtt client: {0}")]
    Client(#[from] ClientError),
    /// The broker did not connect or acknowledge in time.
    #[error("mqtt: no answer from the broker within {0:?}")]
    Timeout(Duration),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] vigil_schemas::StoreError),
    /// The checkpoint table or a read model failed.
    #[error("database: {0}")]
    Database(String),
    /// Someone else moved the checkpoint (a second relay on another node).
    #[error("the MQTT relay checkpoint moved away from {0} under this relay")]
    CheckpointMoved(u64),
}

/// The client id in effect: `mqtt_client_id`, else `vigil-{host name}`.
pub fn client_id(config: &Config) -> String {
    if !config.mqtt_client_id.is_empty() {
        return config.mqtt_client_id.clone();
    }
    format!("vigil-{}", crate::config::host_name())
}

fn options(address: &BrokerAddress, client_id: String, will: Option<LastWill>) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, address.host.clone(), address.port);
    options
        .set_keep_alive(Duration::from_secs(15))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if address.tls {
        options.set_transport(Transport::tls_with_default_config());
    }
    if let Some((user, password)) = &address.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(will) = will {
        options.set_last_will(will);
    }
    options
}

/// Connects to the broker of `config` once (as `{client id}-doctor`) and disconnects.
pub async fn probe(config: &Config) -> Result<(), String> {
    let address = parse_url(&config.mqtt_url)?;
    let connection = Connection::open(
        &address,
        format!("{}-doctor", client_id(config)),
        None,
        String::new(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let _ = connection.client.try_disconnect();
    Ok(())
}

/// The topic tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    discovery: String,
}

/// Home Assistant entities Vigil announces per camera: (component, entity suffix).
const ENTITIES: [(&str, &str); 5] = [
    ("binary_sensor", "person"),
    ("sensor", "persons"),
    ("binary_sensor", "motion"),
    ("sensor", "face"),
    ("camera", "evidence"),
];

impl Topics {
    /// The tree under `prefix`, discovery configs under `discovery`.
    pub fn new(prefix: &str, discovery: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            discovery: discovery.to_string(),
        }
    }

    /// The tree of `config`.
    pub fn of(config: &Config) -> Self {
        Self::new(&config.mqtt_topic_prefix, &config.mqtt_discovery_prefix)
    }

    /// `online` while the relay is connected, `offline` (its last will) after (retained).
    pub fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    /// A camera's ingest status, JSON (retained).
    pub fn status(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/status", self.prefix)
    }

    /// Persons in view, a number (retained).
    pub fn persons(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/persons", self.prefix)
    }

    /// `ON` while something moves, else `OFF` (retained).
    pub fn motion(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/motion", self.prefix)
    }

    /// The last recognised face, JSON (retained).
    pub fn face(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/face", self.prefix)
    }

    /// The evidence JPEG of the camera's newest incident (retained, when enabled).
    pub fn evidence(&self, camera: &str) -> String {
        format!("{}/cameras/{camera}/evidence", self.prefix)
    }

    /// Every incident event, JSON.
    pub fn incidents(&self) -> String {
        format!("{}/incidents", self.prefix)
    }

    /// A subject's face matches, JSON.
    pub fn matches(&self, subject: &str) -> String {
        format!("{}/subjects/{subject}/matches", self.prefix)
    }

    /// Home Assistant's status (its birth message `online` asks for the configs again).
    pub fn discovery_status(&self) -> String {
        format!("{}/status", self.discovery)
    }

    /// The discovery config topic of one of a camera's entities.
    pub fn discovery_config(&self, component: &str, camera: &str, entity: &str) -> String {
        format!(
            "{}/{component}/vigil/{camera}_{entity}/config",
            self.discovery
        )
    }
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload (JSON text, a number, `ON`/`OFF`, a JPEG, or empty to clear a retained topic).
    pub payload: Vec<u8>,
    /// Whether the broker keeps it for new subscribers.
    pub retain: bool,
}

impl Message {
    fn json(topic: String, value: &Value, retain: bool) -> Self {
        Self {
            topic,
            payload: serde_json::to_vec(value).expect("JSON serialises"),
            retain,
        }
    }

    fn clear(topic: String) -> Self {
        Self {
            topic,
            payload: Vec::new(),
            retain: true,
        }
    }
}

/// The Home Assistant discovery configs of one camera: `(topic, config)` per entity. The
/// camera entity (the evidence picture) only when evidence JPEGs are published.
pub fn discovery_configs(
    topics: &Topics,
    camera: &str,
    name: &str,
    with_evidence: bool,
) -> Vec<(String, Value)> {
    let version = env!("CARGO_PKG_VERSION");
    let device = json!({
        "identifiers": [format!("vigil_{camera}")],
        "name": name,
        "manufacturer": "Vigil",
        "model": "Camera",
        "sw_version": version,
    });
    let availability = json!([
        {"topic": topics.available()},
        {"topic": topics.status(camera), "value_template": "{{ value_json.availability }}"},
    ]);
    let mut out = Vec::new();
    for (component, entity) in ENTITIES {
        let mut config = match entity {
            "person" => json!({
                "name": "Person",
                "device_class": "occupancy",
                "state_topic": topics.persons(camera),
                "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
            "persons" => json!({
                "name": "Persons",
                "icon": "mdi:account-group",
                "state_topic": topics.persons(camera),
                "state_class": "measurement",
                "unit_of_measurement": "persons",
            }),
            "motion" => json!({
                "name": "Motion",
                "device_class": "motion",
                "state_topic": topics.motion(camera),
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
            "face" => json!({
                "name": "Last recognised face",
                "icon": "mdi:face-recognition",
                "state_topic": topics.face(camera),
                "value_template": "{{ value_json.subject_name }}",
                "json_attributes_topic": topics.face(camera),
            }),
            _ if with_evidence => json!({
                "name": "Last incident",
                "topic": topics.evidence(camera),
            }),
            _ => continue,
        };
        config["unique_id"] = json!(format!("vigil_{camera}_{entity}"));
        config["device"] = device.clone();
        config["availability"] = availability.clone();
        config["availability_mode"] = json!("all");
        config["origin"] = json!({"name": "Vigil", "sw_version": version});
        out.push((topics.discovery_config(component, camera, entity), config));
    }
    out
}

/// What the relay knows of an incident at one of its events (folded from its stream).
#[derive(Debug, Default)]
struct IncidentView {
    kind: String,
    severity: String,
    status: String,
    confidence: f64,
    camera_id: Option<String>,
    zone: Option<String>,
    reasoning: String,
    opened_at: Option<chrono::DateTime<chrono::Utc>>,
    evidence: Vec<String>,
    is_read: bool,
}

impl IncidentView {
    fn apply(&mut self, event: &IncidentEvent) {
        match event {
            IncidentEvent::Opened(o) => {
                self.kind = o.kind.as_str().into();
                self.severity = o.severity.as_str().into();
                self.status = "active".into();
                self.confidence = o.confidence;
                self.camera_id = o.camera_id.clone();
                self.zone = o.zone.clone();
                self.reasoning = o.reasoning.clone();
                self.opened_at = Some(o.observed_at);
                self.evidence = o.evidence.iter().map(|f| f.blob.clone()).collect();
            }
            IncidentEvent::EvidenceAdded(e) => {
                self.confidence = self.confidence.max(e.confidence);
                self.evidence
                    .extend(e.evidence.iter().map(|f| f.blob.clone()));
            }
            IncidentEvent::StatusChanged(c) => self.status = c.to.as_str().into(),
            IncidentEvent::Acknowledged(a) => self.is_read = a.is_read,
            IncidentEvent::Deleted(_) => self.status = "deleted".into(),
            IncidentEvent::NoteAdded(_) | IncidentEvent::ActionTaken(_) => {}
        }
    }
}

/// Turns events into messages.
struct Mapper {
    store: Arc<dyn EventStore>,
    pool: AnyPool,
    blobs: BlobStore,
    links: MediaLinks,
    topics: Topics,
    discovery: bool,
    evidence_jpeg: bool,
}

impl Mapper {
    fn discovery_of(&self, camera: &str, name: &str) -> Vec<Message> {
        if !self.discovery {
            return Vec::new();
        }
        discovery_configs(&self.topics, camera, name, self.evidence_jpeg)
            .into_iter()
            .map(|(topic, config)| Message::json(topic, &config, true))
            .collect()
    }

    /// The discovery configs of every camera in the read model.
    async fn all_discovery(&self) -> Result<Vec<Message>, MqttError> {
        if !self.discovery {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut query = vigil_projections::cameras::CameraQuery {
            limit: 500,
            ..Default::default()
        };
        loop {
            let (rows, next) = vigil_projections::cameras::list_cameras(&self.pool, &query)
                .await
                .map_err(|e| MqttError::Database(e.to_string()))?;
            for row in rows {
                out.extend(self.discovery_of(&row.id, &row.name));
            }
            match next {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(out),
            }
        }
    }

    async fn incident(&self, e: &RecordedEvent) -> Result<Vec<Message>, MqttError> {
        let history = self
            .store
            .read_stream(&e.stream, 1, e.stream_version as usize, Direction::Forward)
            .await?;
        let mut view = IncidentView::default();
        let mut this = None;
        for stored in history
            .iter()
            .filter(|h| h.stream_version <= e.stream_version)
        {
            match IncidentEvent::decode(&stored.event_type, stored.schema_version, &stored.payload)
            {
                Ok(event) => {
                    view.apply(&event);
                    if stored.event_id == e.event_id {
                        this = Some(event);
                    }
                }
                Err(err) => {
                    tracing::warn!(event = %stored.event_id, error = %err, "cannot decode an incident event")
                }
            }
        }
        let Some(this) = this else {
            return Ok(Vec::new());
        };
        let incident_id = e.stream.trim_start_matches("incident-");
        let mut out = vec![Message::json(
            self.topics.incidents(),
            &json!({
                "event_id": e.event_id,
                "event_type": e.event_type,
                "position": e.position,
                "at": e.occurred_at,
                "change": this.to_payload(),
                "incident": {
                    "id": incident_id,
                    "kind": view.kind,
                    "severity": view.severity,
                    "status": view.status,
                    "confidence": view.confidence,
                    "camera_id": view.camera_id,
                    "zone": view.zone,
                    "reasoning": view.reasoning,
                    "opened_at": view.opened_at,
                    "is_read": view.is_read,
                    "evidence": view.evidence.iter().map(|b| self.links.describe(b)).collect::<Vec<_>>(),
                },
            }),
            false,
        )];
        if let (IncidentEvent::Opened(opened), true) = (&this, self.evidence_jpeg)
            && let (Some(camera), Some(frame)) = (&opened.camera_id, opened.evidence.first())
        {
            match self.blobs.get(&frame.blob).await {
                Ok(Some(jpeg)) => out.push(Message {
                    topic: self.topics.evidence(camera),
                    payload: jpeg,
                    retain: true,
                }),
                Ok(None) => {}
                Err(err) => return Err(MqttError::Database(err.to_string())),
            }
        }
        Ok(out)
    }

    async fn messages(&self, e: &RecordedEvent) -> Result<Vec<Message>, MqttError> {
        let family = e.event_type.split('.').next().unwrap_or_default();
        match family {
            "incident" => self.incident(e).await,
            "camera" => {
                let event = match CameraEvent::decode(&e.event_type, e.schema_version, &e.payload) {
                    Ok(event) => event,
                    Err(err) => {
                        tracing::warn!(event = %e.event_id, error = %err, "cannot decode a camera event");
                        return Ok(Vec::new());
                    }
                };
                Ok(match event {
                    CameraEvent::Registered(r) => self.discovery_of(&r.camera_id, &r.name),
                    CameraEvent::Updated(u) => match &u.name {
                        Some(name) => self.discovery_of(&u.camera_id, name),
                        None => Vec::new(),
                    },
                    CameraEvent::Removed(r) => {
                        let c = &r.camera_id;
                        let mut out: Vec<Message> = ENTITIES
                            .iter()
                            .filter(|_| self.discovery)
                            .map(|(component, entity)| {
                                Message::clear(self.topics.discovery_config(component, c, entity))
                            })
                            .collect();
                        out.extend(
                            [
                                self.topics.status(c),
                                self.topics.persons(c),
                                self.topics.motion(c),
                                self.topics.face(c),
                                self.topics.evidence(c),
                            ]
                            .map(Message::clear),
                        );
                        out
                    }
                    CameraEvent::StatusChanged(s) => vec![Message::json(
                        self.topics.status(&s.camera_id),
                        &json!({
                            "camera_id": s.camera_id,
                            "status": s.status.as_str(),
                            "reason": s.reason,
                            "at": e.occurred_at,
                            "availability": if s.status.as_str() == "online" { "online" } else { "offline" },
                            "event_id": e.event_id,
                        }),
                        true,
                    )],
                })
            }
            "subject" if e.event_type == "subject.matched" => {
                let Ok(SubjectEvent::Matched(m)) =
                    SubjectEvent::decode(&e.event_type, e.schema_version, &e.payload)
                else {
                    tracing::warn!(event = %e.event_id, "cannot decode a subject.matched event");
                    return Ok(Vec::new());
                };
                let body = json!({
                    "event_id": e.event_id,
                    "match_id": m.match_id,
                    "subject_id": m.subject_id,
                    "subject_name": m.subject_name,
                    "category": m.category.as_str(),
                    "camera_id": m.camera_id,
                    "track_id": m.track_id,
                    "distance": m.distance,
                    "at": m.frame.at,
                    "crop": self.links.describe(&m.crop),
                    "frame": self.links.describe(&m.frame.blob),
                });
                Ok(vec![
                    Message::json(self.topics.matches(&m.subject_id), &body, false),
                    Message::json(self.topics.face(&m.camera_id), &body, true),
                ])
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// One connection to the broker, driven by its owner, that knows when the broker
/// acknowledged what it sent.
struct Connection {
    client: AsyncClient,
    events: EventLoop,
    /// Home Assistant asked for the configs again (its birth message).
    rediscover: bool,
    discovery_status: String,
}

impl Connection {
    async fn open(
        address: &BrokerAddress,
        client_id: String,
        will: Option<LastWill>,
        discovery_status: String,
    ) -> Result<Self, MqttError> {
        let (client, events) = AsyncClient::new(options(address, client_id, will), 256);
        let mut connection = Self {
            client,
            events,
            rediscover: false,
            discovery_status,
        };
        tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                if let Event::Incoming(Packet::ConnAck(ack)) = connection.events.poll().await? {
                    return match ack.code {
                        ConnectReturnCode::Success => Ok(()),
                        code => Err(MqttError::Connection(ConnectionError::ConnectionRefused(
                            code,
                        ))),
                    };
                }
            }
        })
        .await
        .map_err(|_| MqttError::Timeout(CONNECT_TIMEOUT))??;
        Ok(connection)
    }

    /// Handles one event of the connection: notes Home Assistant's birth message.
    fn note(&mut self, event: &Event) {
        if let Event::Incoming(Packet::Publish(p)) = event
            && p.topic == self.discovery_status
            && p.payload.as_ref() == b"online"
        {
            self.rediscover = true;
        }
    }

    /// Publishes `messages` with QoS 1 and returns once the broker acknowledged every one.
    async fn publish_acked(&mut self, messages: Vec<Message>) -> Result<(), MqttError> {
        let total = messages.len();
        if total == 0 {
            return Ok(());
        }
        let mut queue = messages.into_iter().peekable();
        let mut acked = 0usize;
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        while acked < total {
            // Hand the client what its queue takes, then drive the connection.
            while let Some(m) = queue.peek() {
                match self.client.try_publish(
                    m.topic.clone(),
                    QoS::AtLeastOnce,
                    m.retain,
                    m.payload.clone(),
                ) {
                    Ok(()) => {
                        queue.next();
                    }
                    Err(ClientError::TryRequest(_)) => break,
                    Err(other) => return Err(other.into()),
                }
            }
            let event = tokio::time::timeout_at(deadline, self.events.poll())
                .await
                .map_err(|_| MqttError::Timeout(ACK_TIMEOUT))??;
            if let Event::Incoming(Packet::PubAck(_)) = event {
                acked += 1;
            }
            self.note(&event);
        }
        Ok(())
    }
}

/// The MQTT relay of one node (the leader relays; the others wait).
pub struct MqttRelay {
    pool: AnyPool,
    address: BrokerAddress,
    client_id: String,
    mapper: Mapper,
    position: tokio::sync::watch::Sender<u64>,
}

impl MqttRelay {
    /// A relay to the broker of `config` (which must name one).
    pub fn new(
        config: &Config,
        store: Arc<dyn EventStore>,
        pool: AnyPool,
        links: MediaLinks,
    ) -> Result<Self, String> {
        Ok(Self {
            address: parse_url(&config.mqtt_url)?,
            client_id: format!("{}-relay", client_id(config)),
            mapper: Mapper {
                store,
                pool: pool.clone(),
                blobs: config.blob_store()?,
                links,
                topics: Topics::of(config),
                discovery: config.mqtt_discovery,
                evidence_jpeg: config.mqtt_evidence_jpeg,
            },
            pool,
            position: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The last position the broker acknowledged (this process's view).
    pub fn position(&self) -> tokio::sync::watch::Receiver<u64> {
        self.position.subscribe()
    }

    fn checkpoint_row(&self) -> Checkpoint {
        Checkpoint::new(self.pool.clone(), CHECKPOINT)
    }

    async fn checkpoint(&self) -> Result<u64, MqttError> {
        self.checkpoint_row()
            .read()
            .await
            .map_err(|e| MqttError::Database(e.to_string()))
    }

    async fn move_checkpoint(&self, from: u64, to: u64) -> Result<(), MqttError> {
        let moved = self
            .checkpoint_row()
            .advance(from, to)
            .await
            .map_err(|e| MqttError::Database(e.to_string()))?;
        if !moved {
            return Err(MqttError::CheckpointMoved(from));
        }
        self.position.send_replace(to);
        Ok(())
    }

    async fn follow(&self) -> Result<(), MqttError> {
        self.checkpoint_row()
            .ensure()
            .await
            .map_err(|e| MqttError::Database(e.to_string()))?;
        let topics = &self.mapper.topics;
        let will = LastWill::new(topics.available(), "offline", QoS::AtLeastOnce, true);
        let mut connection = Connection::open(
            &self.address,
            self.client_id.clone(),
            Some(will),
            topics.discovery_status(),
        )
        .await?;
        tracing::info!(host = %self.address.host, port = self.address.port, "MQTT relay connected");
        let mut hello = vec![Message {
            topic: topics.available(),
            payload: b"online".to_vec(),
            retain: true,
        }];
        hello.extend(self.mapper.all_discovery().await?);
        connection.publish_acked(hello).await?;
        if self.mapper.discovery {
            connection
                .client
                .try_subscribe(topics.discovery_status(), QoS::AtMostOnce)?;
        }
        let mut checkpoint = self.checkpoint().await?;
        self.position.send_replace(checkpoint);
        let mut live = self.mapper.store.subscribe_all(checkpoint);
        loop {
            if connection.rediscover {
                connection.rediscover = false;
                let configs = self.mapper.all_discovery().await?;
                connection.publish_acked(configs).await?;
            }
            tokio::select! {
                batch = live.next() => {
                    let Some(batch) = batch else { return Ok(()) };
                    let batch = batch?;
                    let Some(last) = batch.last().map(|e| e.position) else { continue };
                    let mut messages = Vec::new();
                    for event in &batch {
                        messages.extend(self.mapper.messages(event).await?);
                    }
                    connection.publish_acked(messages).await?;
                    self.move_checkpoint(checkpoint, last).await?;
                    checkpoint = last;
                }
                event = connection.events.poll() => {
                    let event = event?;
                    connection.note(&event);
                }
            }
        }
    }

    /// Relays forever while this node leads the MQTT relay; after an error (the broker gone)
    /// it waits (capped exponential backoff) and starts again from the committed checkpoint.
    pub async fn run(self) {
        vigil_projections::leader::lead_forever(&self.pool, CHECKPOINT, "MQTT relay", || {
            self.follow()
        })
        .await;
    }
}

/// Each ingest node's live camera state on MQTT: person count and motion, retained, published
/// when they change (checked every second) and all again after every reconnect.
pub struct LiveState {
    address: BrokerAddress,
    client_id: String,
    topics: Topics,
    ingest: Arc<vigil_actors::node::Ingest>,
}

impl LiveState {
    /// The live state of `ingest`'s cameras, to the broker of `config`.
    pub fn new(config: &Config, ingest: Arc<vigil_actors::node::Ingest>) -> Result<Self, String> {
        Ok(Self {
            address: parse_url(&config.mqtt_url)?,
            client_id: format!("{}-live", client_id(config)),
            topics: Topics::of(config),
            ingest,
        })
    }

    /// What each camera shows now: `(persons, moving)`; `None` for a camera not running.
    fn current(&self) -> HashMap<String, Option<(u64, bool)>> {
        self.ingest
            .snapshots()
            .into_iter()
            .map(|(id, now)| {
                let state = now.running.then(|| (now.persons, now.moving()));
                (id, state)
            })
            .collect()
    }

    /// Publishes until the process ends; reconnects with backoff.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.connected().await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "MQTT live state stopped; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn connected(&self) -> Result<(), MqttError> {
        let mut connection =
            Connection::open(&self.address, self.client_id.clone(), None, String::new()).await?;
        // After a reconnect everything goes out again: the broker may have lost it.
        let mut sent: HashMap<String, (u64, bool)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let mut messages = Vec::new();
                    for (camera, state) in self.current() {
                        // A camera that stopped shows nobody and no motion, once.
                        let state = match (state, sent.contains_key(&camera)) {
                            (Some(state), _) => state,
                            (None, true) => (0, false),
                            (None, false) => continue,
                        };
                        if sent.get(&camera) == Some(&state) {
                            continue;
                        }
                        messages.push(Message {
                            topic: self.topics.persons(&camera),
                            payload: state.0.to_string().into_bytes(),
                            retain: true,
                        });
                        messages.push(Message {
                            topic: self.topics.motion(&camera),
                            payload: if state.1 { b"ON".to_vec() } else { b"OFF".to_vec() },
                            retain: true,
                        });
                        sent.insert(camera, state);
                    }
                    connection.publish_acked(messages).await?;
                }
                event = connection.events.poll() => { event?; }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_camera_is_a_device_with_its_entities() {
        let topics = Topics::new("vigil", "homeassistant");
        let configs = discovery_configs(&topics, "door", "Front door", false);
        assert_eq!(configs.len(), 4, "no camera entity without evidence JPEGs");
        let with = discovery_configs(&topics, "door", "Front door", true);
        assert_eq!(with.len(), 5);
        let (topic, camera) = with.last().unwrap();
        assert_eq!(topic, "homeassistant/camera/vigil/door_evidence/config");
        assert_eq!(camera["topic"], "vigil/cameras/door/evidence");
        for (_, config) in &with {
            assert_eq!(config["device"]["identifiers"][0], "vigil_door");
            assert_eq!(config["device"]["name"], "Front door");
            assert_eq!(config["availability_mode"], "all");
        }
        let ids: std::collections::HashSet<_> =
            with.iter().map(|(_, c)| c["unique_id"].clone()).collect();
        assert_eq!(ids.len(), 5, "unique ids differ");
    }
}
