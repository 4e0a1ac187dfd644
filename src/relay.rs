//! The Kafka relay: a checkpointed subscriber of `$all` that publishes every stored event.
//!
//! The event store is the outbox: the relay reads `$all` from its checkpoint, sends each batch
//! with an idempotent producer (`acks=all`), and moves its checkpoint (compare-and-set in
//! `projection_checkpoints`, name `kafka-relay`) only after the broker acknowledged the whole
//! batch. A crash or a broker outage makes it start again from the checkpoint: nothing stored
//! is lost, and a message sent twice carries the same `event_id` header for consumers to
//! de-duplicate. Topics are `{prefix}.{category}s` (`vigil.cameras`, `vigil.apikeys`, …); the
//! key is the stream id, so one stream's events stay ordered in one partition; the payload is
//! the event envelope as `schemas/json/envelope.v1.json` describes it.
//!
//! Every message is also a CloudEvent in Kafka binary mode (CloudEvents 1.0, Kafka protocol
//! binding): `ce_specversion`, `ce_id` (the event id), `ce_source` (`public_base_url`, else
//! `urn:vigil`), `ce_type` (the event type), `ce_time` (when it happened), `ce_subject` (the
//! stream), `ce_dataschema` (the `$id` of the JSON Schema of the envelope's `payload`,
//! `https://vigil.dev/schemas/{type}.v{version}.json`, shipped in `schemas/json/`) and
//! `content-type: application/json`. With `public_base_url` set, an event that names media
//! (frames, face crops) also carries the extension `ce_vigilmedia`: a JSON array of
//! `{sha256, path, url, expires_at}`, the absolute signed links of `crate::links`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::AnyPool;
use tokio::sync::watch;
use vigil_projections::checkpoint::Checkpoint;
use vigil_schemas::{EventStore, RecordedEvent};

use crate::config::Config;

/// The relay's checkpoint name.
pub const CHECKPOINT: &str = "kafka-relay";

/// Why the relay stopped (it then restarts from its checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The broker refused or timed out.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] vigil_schemas::StoreError),
    /// The checkpoint table failed.
    #[error("checkpoint: {0}")]
    Database(#[from] sqlx::Error),
    /// Someone else moved the checkpoint (a second relay on another node).
    #[error("the relay checkpoint moved away from {0} under this relay")]
    CheckpointMoved(u64),
}

/// CloudEvents' `source` when no `public_base_url` is set.
pub const DEFAULT_SOURCE: &str = "urn:vigil";

/// The CloudEvents attributes of one stored event, as `(header, value)` pairs of the Kafka
/// binary content mode.
pub fn cloudevent_headers(source: &str, e: &RecordedEvent) -> Vec<(&'static str, String)> {
    vec![
        ("ce_specversion", "1.0".into()),
        ("ce_id", e.event_id.to_string()),
        ("ce_source", source.into()),
        ("ce_type", e.event_type.clone()),
        (
            "ce_time",
            e.occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
        ("ce_subject", e.stream.clone()),
        (
            "ce_dataschema",
            format!(
                "https://vigil.dev/schemas/{}.v{}.json",
                e.event_type, e.schema_version
            ),
        ),
        ("content-type", "application/json".into()),
    ]
}

/// The topic an event goes to: `{prefix}.{category}s`, category being the part of the event
/// type before the first dot.
pub fn topic_for(prefix: &str, event_type: &str) -> String {
    let category = event_type.split('.').next().unwrap_or(event_type);
    format!("{prefix}.{category}s")
}

/// The Kafka relay of one node.
pub struct KafkaRelay {
    store: Arc<dyn EventStore>,
    pool: AnyPool,
    /// The producer's settings, to make a fresh one after an error.
    client: ClientConfig,
    /// Replaced at every (re)start of the relay: an idempotent producer keeps its producer id
    /// and sequence numbers, which a broker that lost its state (restarted on memory storage,
    /// rebuilt) refuses until the messages time out, again and again.
    producer: std::sync::RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    prefix: String,
    source: String,
    partitions: i32,
    replication: i32,
    timeout: Duration,
    position: watch::Sender<u64>,
    links: Option<crate::links::MediaLinks>,
}

impl KafkaRelay {
    /// A relay to the brokers of `config` (which must name some).
    pub fn new(
        config: &Config,
        store: Arc<dyn EventStore>,
        pool: AnyPool,
    ) -> Result<Self, RelayError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                config.kafka_message_timeout_ms.to_string(),
            );
        let producer: FutureProducer = client.create()?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .create()?;
        Ok(Self {
            store,
            pool,
            client,
            producer: std::sync::RwLock::new(producer),
            admin,
            prefix: config.kafka_topic_prefix.clone(),
            source: match config.public_base_url.trim_end_matches('/') {
                "" => DEFAULT_SOURCE.to_string(),
                base => base.to_string(),
            },
            partitions: config.kafka_partitions,
            replication: config.kafka_replication,
            timeout: Duration::from_millis(config.kafka_message_timeout_ms),
            position: watch::Sender::new(0),
            links: None,
        })
    }

    /// Adds `ce_vigilmedia` (absolute signed links of the media an event names) to the messages
    /// of events that name media, when `links` has a public base URL.
    pub fn with_links(mut self, links: crate::links::MediaLinks) -> Self {
        self.links = links.base().is_some().then_some(links);
        self
    }

    /// The `ce_vigilmedia` value of an event: its media as links, when it names any.
    fn media_header(&self, e: &RecordedEvent) -> Option<String> {
        let links = self.links.as_ref()?;
        let media = crate::links::media_in(&e.payload);
        (!media.is_empty()).then(|| {
            serde_json::Value::Array(media.iter().map(|sha| links.describe(sha)).collect())
                .to_string()
        })
    }

    /// The last position the broker acknowledged (this process's view).
    pub fn position(&self) -> watch::Receiver<u64> {
        self.position.subscribe()
    }

    /// The committed checkpoint.
    pub async fn checkpoint(&self) -> Result<u64, RelayError> {
        Ok(self.checkpoint_row().read().await?)
    }

    fn checkpoint_row(&self) -> Checkpoint {
        Checkpoint::new(self.pool.clone(), CHECKPOINT)
    }

    /// Creates the topics of every known event category (and `extra`), ignoring those that exist.
    pub async fn ensure_topics(&self, extra: &[String]) -> Result<(), RelayError> {
        let mut names: Vec<String> = vigil_schemas::events::all_event_types()
            .map(|(t, _)| topic_for(&self.prefix, t))
            .chain(extra.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| {
                NewTopic::new(
                    n,
                    self.partitions,
                    TopicReplication::Fixed(self.replication),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        for result in self.admin.create_topics(&topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(RelayError::Kafka(rdkafka::error::KafkaError::AdminOp(code)))
                        .inspect_err(|_| tracing::warn!(%topic, ?code, "could not create topic"));
                }
            }
        }
        Ok(())
    }

    /// Sends a batch and waits until the broker acknowledged every message. Moves no
    /// checkpoint: `vigil replay --to-kafka` uses it to re-publish a range.
    pub async fn send_batch(&self, batch: &[RecordedEvent]) -> Result<(), RelayError> {
        let payloads: Vec<(String, String, &RecordedEvent)> = batch
            .iter()
            .map(|e| {
                let payload = serde_json::to_string(e).expect("envelopes serialise");
                (topic_for(&self.prefix, &e.event_type), payload, e)
            })
            .collect();
        let producer = self.producer.read().expect("producer lock").clone();
        // Enqueue every message first (librdkafka keeps each partition's order), then await all.
        let sends: Vec<_> = payloads
            .iter()
            .map(|(topic, payload, e)| {
                let event_id = e.event_id.to_string();
                let position = e.position.to_string();
                let version = e.schema_version.to_string();
                let correlation = e.correlation_id.to_string();
                let mut cloudevent = cloudevent_headers(&self.source, e);
                if let Some(media) = self.media_header(e) {
                    cloudevent.push(("ce_vigilmedia", media));
                }
                let mut headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "event_id",
                        value: Some(event_id.as_str()),
                    })
                    .insert(Header {
                        key: "event_type",
                        value: Some(e.event_type.as_str()),
                    })
                    .insert(Header {
                        key: "schema_version",
                        value: Some(version.as_str()),
                    })
                    .insert(Header {
                        key: "position",
                        value: Some(position.as_str()),
                    })
                    .insert(Header {
                        key: "correlation_id",
                        value: Some(correlation.as_str()),
                    });
                for (key, value) in &cloudevent {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value.as_str()),
                    });
                }
                let record = FutureRecord::to(topic)
                    .key(e.stream.as_str())
                    .payload(payload.as_str())
                    .headers(headers);
                producer.send(record, self.timeout)
            })
            .collect();
        for result in futures::future::join_all(sends).await {
            result.map_err(|(err, _)| err)?;
        }
        Ok(())
    }

    /// Publishes one contiguous batch and moves the checkpoint from `checkpoint` past it.
    pub async fn publish(
        &self,
        checkpoint: u64,
        batch: &[RecordedEvent],
    ) -> Result<u64, RelayError> {
        let Some(last) = batch.last() else {
            return Ok(checkpoint);
        };
        self.send_batch(batch).await?;
        if !self
            .checkpoint_row()
            .advance(checkpoint, last.position)
            .await?
        {
            return Err(RelayError::CheckpointMoved(checkpoint));
        }
        self.position.send_replace(last.position);
        Ok(last.position)
    }

    async fn follow(&self) -> Result<(), RelayError> {
        let fresh: FutureProducer = self.client.create()?;
        let old = std::mem::replace(&mut *self.producer.write().expect("producer lock"), fresh);
        // Dropping a producer purges and flushes it (up to half a second): not on this thread.
        tokio::task::spawn_blocking(move || drop(old));
        self.checkpoint_row().ensure().await?;
        self.ensure_topics(&[]).await?;
        let mut known: HashSet<String> = HashSet::new();
        let mut checkpoint = self.checkpoint().await?;
        self.position.send_replace(checkpoint);
        let mut live = self.store.subscribe_all(checkpoint);
        while let Some(batch) = live.next().await {
            let batch = batch?;
            let fresh: Vec<String> = batch
                .iter()
                .map(|e| topic_for(&self.prefix, &e.event_type))
                .filter(|t| !known.contains(t))
                .collect();
            if !fresh.is_empty() {
                self.ensure_topics(&fresh).await?;
                known.extend(fresh);
            }
            checkpoint = self.publish(checkpoint, &batch).await?;
        }
        Ok(())
    }

    /// Relays forever while this node leads the relay (one per cluster on PostgreSQL); after an
    /// error it waits (capped exponential backoff) and starts again from the committed checkpoint.
    pub async fn run(self) {
        // One relay per cluster: the others wait for the leader's lock.
        vigil_projections::leader::lead_forever(&self.pool, CHECKPOINT, "kafka relay", || {
            self.follow()
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_carries_the_cloudevents_attributes_of_its_event() {
        let event = RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream: "incident-42".into(),
            stream_version: 1,
            position: 7,
            event_type: "incident.opened".into(),
            schema_version: 1,
            occurred_at: "2026-12-05T08:00:00.25Z".parse().unwrap(),
            recorded_at: chrono::Utc::now(),
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            actor: "rule".into(),
            payload: serde_json::json!({}),
        };
        let headers: std::collections::HashMap<_, _> = cloudevent_headers(DEFAULT_SOURCE, &event)
            .into_iter()
            .collect();
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], event.event_id.to_string());
        assert_eq!(headers["ce_source"], "urn:vigil");
        assert_eq!(headers["ce_type"], "incident.opened");
        assert_eq!(headers["ce_time"], "2026-12-05T08:00:00.250000Z");
        assert_eq!(headers["ce_subject"], "incident-42");
        assert_eq!(
            headers["ce_dataschema"],
            "https://vigil.dev/schemas/incident.opened.v1.json"
        );
        assert_eq!(headers["content-type"], "application/json");
        assert!(
            vigil_schemas::json_schema::all()
                .iter()
                .any(|(_, schema)| schema["$id"] == headers["ce_dataschema"].as_str()),
            "the schema's $id"
        );
    }
}
