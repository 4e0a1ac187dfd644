//! The [`EventStore`] contract on KurrentDB (EventStoreDB) through the `eventstore` gRPC client.
//!
//! Built with the `kurrentdb` cargo feature and chosen by `VIGIL_KURRENTDB_URL`
//! (`esdb://host:2113?tls=false`); read models stay in the SQL database.
//!
//! KurrentDB's own `$all` positions (commit/prepare offsets in its transaction file) are
//! monotonic but not gapless, and `$all` also carries system events. Vigil's contract is a
//! gapless 1-based log, so this adapter numbers the non-system events of `$all` in order: the
//! n-th Vigil event of `$all` has position n. The numbering is a pure function of `$all`'s
//! order, so every process that reads the same server derives the same positions. Each
//! process keeps the mapping (ordinal → KurrentDB position) in memory, extends it by reading
//! `$all` forward when it meets a newer event, and checks every extension against what it
//! already holds ([`PositionIndex`]). The cost is 16 bytes of memory per event and a scan of
//! `$all` at the first use after a start.
//!
//! Idempotency: the contract says a re-appended batch (same ids, same stream, same order)
//! returns its original positions whatever the expectation. KurrentDB only guarantees that for
//! a retry with the same expected revision, so the adapter looks the batch's ids up in the
//! stream before an `Any` append and after a version conflict.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, Position,
    ReadAllOptions, ReadStreamOptions, StreamPosition, SubscribeToAllOptions, SubscriptionEvent,
    SubscriptionFilter,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;
use vigil_schemas::{
    AppendOutcome, Direction, EventStore, EventSubscription, ExpectedVersion, NewEvent,
    RecordedEvent, StoreError,
};

/// Events read from `$all` per request while the index catches up.
const INDEX_PAGE: usize = 1000;

/// The envelope fields KurrentDB has no place for, kept as the event's custom metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Envelope {
    schema_version: u32,
    occurred_at: DateTime<Utc>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    actor: String,
}

/// Ordinal → KurrentDB position for the Vigil events of `$all` (entry `i` is position `i+1`).
#[derive(Debug, Default)]
pub struct PositionIndex {
    positions: Vec<(u64, u64)>,
}

impl PositionIndex {
    /// How many events the index has numbered.
    pub fn len(&self) -> u64 {
        self.positions.len() as u64
    }

    /// Whether no event has been numbered yet.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The KurrentDB position of the newest numbered event.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.positions.last().copied()
    }

    /// The KurrentDB position of Vigil position `ordinal` (1-based).
    pub fn position_of(&self, ordinal: u64) -> Option<(u64, u64)> {
        let i = usize::try_from(ordinal.checked_sub(1)?).ok()?;
        self.positions.get(i).copied()
    }

    /// The Vigil position of the event at KurrentDB position `at`, if numbered.
    pub fn ordinal_of(&self, at: (u64, u64)) -> Option<u64> {
        self.positions.binary_search(&at).ok().map(|i| i as u64 + 1)
    }

    /// Records that the event at `at` is Vigil position `ordinal`. The ordinal must be the
    /// next one, or one already numbered with the same KurrentDB position; anything else means
    /// two readers disagree about `$all`, which is corruption, not a race.
    pub fn record(&mut self, ordinal: u64, at: (u64, u64)) -> Result<(), StoreError> {
        let next = self.len() + 1;
        if ordinal == next {
            if let Some(last) = self.last()
                && at <= last
            {
                return Err(StoreError::Corrupt {
                    position: ordinal,
                    reason: format!(
                        "KurrentDB position {at:?} is not after the previous event's {last:?}"
                    ),
                });
            }
            self.positions.push(at);
            Ok(())
        } else if ordinal < next {
            match self.position_of(ordinal) {
                Some(known) if known == at => Ok(()),
                known => Err(StoreError::Corrupt {
                    position: ordinal,
                    reason: format!("numbered at KurrentDB position {known:?} before, now {at:?}"),
                }),
            }
        } else {
            Err(StoreError::Gap {
                expected: next,
                found: ordinal,
            })
        }
    }
}

/// Whether an event of `$all` belongs to Vigil (not one of KurrentDB's own).
fn is_vigil_event(stream: &str, event_type: &str) -> bool {
    !stream.starts_with('$') && !event_type.starts_with('$')
}

/// The event a read returned: the link itself for a link event, else the event.
fn original(resolved: eventstore::ResolvedEvent) -> Option<eventstore::RecordedEvent> {
    resolved.link.or(resolved.event)
}

/// Where a `$all` read or subscription starts: at the given KurrentDB position, or the start.
fn stream_position(at: Option<(u64, u64)>) -> StreamPosition<Position> {
    match at {
        Some((commit, prepare)) => StreamPosition::Position(Position { commit, prepare }),
        None => StreamPosition::Start,
    }
}

fn pos(p: Position) -> (u64, u64) {
    (p.commit, p.prepare)
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("KurrentDB: {err}"))
}

/// The event store on a KurrentDB server.
#[derive(Clone)]
pub struct KurrentEventStore {
    client: Client,
    index: Arc<Mutex<PositionIndex>>,
}

impl KurrentEventStore {
    /// Connects to `url` (`esdb://host:2113?tls=false`, or `kurrentdb://…`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let url = url.replacen("kurrentdb://", "esdb://", 1);
        let settings: ClientSettings = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid KurrentDB URL: {e}")))?;
        let client = Client::new(settings).map_err(backend)?;
        let store = Self {
            client,
            index: Arc::new(Mutex::new(PositionIndex::default())),
        };
        // Fails early on an unreachable server and builds the index once.
        store.catch_up(None).await?;
        Ok(store)
    }

    /// Extends the index by reading `$all` forward until it holds `target` (or to the end).
    async fn catch_up(&self, target: Option<(u64, u64)>) -> Result<(), StoreError> {
        let mut index = self.index.lock().await;
        let mut cursor = index.last();
        loop {
            if let (Some(target), Some(last)) = (target, index.last())
                && last >= target
            {
                return Ok(());
            }
            let (page, end) = self.page_after(cursor).await?;
            for event in &page {
                let at = pos(event.position);
                cursor = Some(at);
                if is_vigil_event(&event.stream_id, &event.event_type) {
                    let ordinal = index.len() + 1;
                    index.record(ordinal, at)?;
                }
            }
            if end {
                return Ok(());
            }
        }
    }

    /// The KurrentDB position of Vigil position `after` (`None` for 0: the start of `$all`),
    /// catching the index up when it is shorter; `Gap` when the log does not reach `after`.
    async fn floor_of(&self, after: u64) -> Result<Option<(u64, u64)>, StoreError> {
        if self.index.lock().await.len() < after {
            self.catch_up(None).await?;
        }
        let index = self.index.lock().await;
        if after > index.len() {
            return Err(StoreError::Gap {
                expected: index.len() + 1,
                found: after,
            });
        }
        Ok(index.position_of(after))
    }

    /// One page of `$all` strictly after `after` (system events included, so a caller can move
    /// its cursor past them), and whether it reached the end of `$all`.
    async fn page_after(
        &self,
        after: Option<(u64, u64)>,
    ) -> Result<(Vec<eventstore::RecordedEvent>, bool), StoreError> {
        let options = ReadAllOptions::default()
            .forwards()
            .position(stream_position(after))
            .max_count(INDEX_PAGE);
        let mut read = self.client.read_all(&options).await.map_err(backend)?;
        let mut page = Vec::new();
        let mut seen = 0usize;
        while let Some(resolved) = read.next().await.map_err(backend)? {
            seen += 1;
            // Reading from a position includes the event at it.
            if let Some(event) = original(resolved)
                && after.is_none_or(|a| pos(event.position) > a)
            {
                page.push(event);
            }
        }
        Ok((page, seen < INDEX_PAGE))
    }

    /// Converts a stored KurrentDB event to Vigil's envelope at Vigil position `position`.
    fn to_recorded(
        event: &eventstore::RecordedEvent,
        position: u64,
    ) -> Result<RecordedEvent, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        let envelope: Envelope = serde_json::from_slice(&event.custom_metadata)
            .map_err(|e| corrupt(format!("metadata: {e}")))?;
        let payload =
            serde_json::from_slice(&event.data).map_err(|e| corrupt(format!("payload: {e}")))?;
        Ok(RecordedEvent {
            event_id: event.id,
            stream: event.stream_id.clone(),
            stream_version: event.revision + 1,
            position,
            event_type: event.event_type.clone(),
            schema_version: envelope.schema_version,
            occurred_at: envelope.occurred_at,
            recorded_at: event.created,
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            actor: envelope.actor,
            payload,
        })
    }

    /// Numbers KurrentDB events already read (catching the index up as needed).
    async fn number(
        &self,
        events: Vec<eventstore::RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let Some(newest) = events.iter().map(|e| pos(e.position)).max() else {
            return Ok(Vec::new());
        };
        self.catch_up(Some(newest)).await?;
        let index = self.index.lock().await;
        events
            .iter()
            .map(|event| {
                let at = pos(event.position);
                let ordinal = index.ordinal_of(at).ok_or_else(|| StoreError::Corrupt {
                    position: 0,
                    reason: format!("event {} at {at:?} is missing from $all", event.id),
                })?;
                Self::to_recorded(event, ordinal)
            })
            .collect()
    }

    /// Every event of a stream, oldest first (empty when it does not exist).
    async fn whole_stream(
        &self,
        stream: &str,
    ) -> Result<Vec<eventstore::RecordedEvent>, StoreError> {
        self.raw_stream(stream, 0, usize::MAX, Direction::Forward)
            .await
    }

    async fn raw_stream(
        &self,
        stream: &str,
        from_revision: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<eventstore::RecordedEvent>, StoreError> {
        let mut options = ReadStreamOptions::default()
            .position(StreamPosition::Position(from_revision))
            .max_count(limit);
        options = match direction {
            Direction::Forward => options.forwards(),
            Direction::Backward => options.backwards(),
        };
        let mut read = match self.client.read_stream(stream, &options).await {
            Ok(read) => read,
            Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => out.extend(original(resolved)),
                Ok(None) => return Ok(out),
                Err(eventstore::Error::ResourceNotFound) => return Ok(out),
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// When the batch's ids are already in `stream`, in order and together, their original
    /// outcome; when only some are (or elsewhere), an idempotency error; `None` when none are.
    async fn stored_batch(
        &self,
        stream: &str,
        ids: &[Uuid],
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let mut existing = self.whole_stream(stream).await?;
        let version = existing.len() as u64;
        let Some(start) = existing.iter().position(|e| e.id == ids[0]) else {
            if let Some(clash) = existing.iter().find(|e| ids.contains(&e.id)) {
                return Err(StoreError::IdempotencyMismatch { event_id: clash.id });
            }
            return Ok(None);
        };
        let same = existing
            .get(start..start + ids.len())
            .is_some_and(|s| s.iter().zip(ids).all(|(e, id)| e.id == *id));
        if !same {
            return Err(StoreError::IdempotencyMismatch { event_id: ids[0] });
        }
        let stored: Vec<_> = existing.drain(start..start + ids.len()).collect();
        let numbered = self.number(stored).await?;
        Ok(Some(AppendOutcome {
            first_position: numbered.first().map_or(0, |e| e.position),
            last_position: numbered.last().map_or(0, |e| e.position),
            stream_version: version,
        }))
    }

    fn event_data(event: &NewEvent) -> Result<EventData, StoreError> {
        let envelope = Envelope {
            schema_version: event.schema_version,
            occurred_at: event.occurred_at,
            correlation_id: event.meta.correlation_id,
            causation_id: event.meta.causation_id,
            actor: event.meta.actor.clone(),
        };
        EventData::json(&event.event_type, &event.payload)
            .and_then(|data| data.id(event.event_id).metadata_as_json(&envelope))
            .map_err(|e| StoreError::InvalidAppend(format!("event cannot be encoded: {e}")))
    }
}

#[async_trait]
impl EventStore for KurrentEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        super::check_batch(stream, &events)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        if expected == ExpectedVersion::Any
            && let Some(outcome) = self.stored_batch(stream, &ids).await?
        {
            return Ok(outcome);
        }
        let data = events
            .iter()
            .map(Self::event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let revision = match expected {
            ExpectedVersion::Any => ExpectedRevision::Any,
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => ExpectedRevision::NoStream,
            ExpectedVersion::Exact(n) => ExpectedRevision::Exact(n - 1),
        };
        let options = AppendToStreamOptions::default().expected_revision(revision);
        match self.client.append_to_stream(stream, &options, data).await {
            Ok(_) => match self.stored_batch(stream, &ids).await? {
                Some(outcome) => Ok(outcome),
                None => Err(StoreError::Backend(format!(
                    "KurrentDB acknowledged the append to `{stream}` but its events are not there"
                ))),
            },
            Err(eventstore::Error::WrongExpectedVersion { current, .. }) => {
                if let Some(outcome) = self.stored_batch(stream, &ids).await? {
                    return Ok(outcome);
                }
                let actual = match current {
                    eventstore::CurrentRevision::Current(r) => r + 1,
                    eventstore::CurrentRevision::NoStream => 0,
                };
                Err(StoreError::WrongExpectedVersion {
                    stream: stream.to_string(),
                    expected,
                    actual,
                })
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let raw = match direction {
            Direction::Forward => {
                self.raw_stream(stream, from.saturating_sub(1), limit, direction)
                    .await?
            }
            Direction::Backward => {
                let version = self.stream_version(stream).await?;
                let top = from.min(version);
                if top == 0 {
                    return Ok(Vec::new());
                }
                self.raw_stream(stream, top - 1, limit, direction).await?
            }
        };
        self.number(raw).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = match self.floor_of(after).await {
            Err(StoreError::Gap { .. }) => return Ok(Vec::new()), // after the head: nothing yet
            other => other?,
        };
        let mut out = Vec::new();
        let mut next = after + 1;
        let mut cursor = start;
        loop {
            let (page, end) = self.page_after(cursor).await?;
            for event in &page {
                let at = pos(event.position);
                cursor = Some(at);
                if !is_vigil_event(&event.stream_id, &event.event_type) {
                    continue;
                }
                self.index.lock().await.record(next, at)?;
                out.push(Self::to_recorded(event, next)?);
                next += 1;
                if out.len() == limit {
                    return Ok(out);
                }
            }
            if end {
                return Ok(out);
            }
        }
    }

    async fn read_all_recorded(
        &self,
        after: u64,
        limit: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // KurrentDB cannot seek $all by time: scan forward and filter.
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            let page = self.read_all(cursor, INDEX_PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = last.position;
            for event in page {
                if to.is_some_and(|to| event.recorded_at >= to) {
                    return Ok(out);
                }
                if from.is_none_or(|from| event.recorded_at >= from) {
                    out.push(event);
                    if out.len() == limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.catch_up(None).await?;
        Ok(self.index.lock().await.len())
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let newest = self
            .raw_stream(stream, u64::MAX, 1, Direction::Backward)
            .await?;
        Ok(newest.first().map_or(0, |e| e.revision + 1))
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        struct State {
            store: KurrentEventStore,
            after: u64,
            /// The KurrentDB position the subscription starts after.
            floor: Option<(u64, u64)>,
            subscription: Option<eventstore::Subscription>,
            failed: bool,
        }
        let state = State {
            store: self.clone(),
            after,
            floor: None,
            subscription: None,
            failed: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.failed {
                return None;
            }
            if s.subscription.is_none() {
                match s.store.floor_of(s.after).await {
                    Ok(floor) => s.floor = floor,
                    Err(err) => {
                        s.failed = true;
                        return Some((Err(err), s));
                    }
                }
                let from = stream_position(s.floor);
                let options = SubscribeToAllOptions::default()
                    .position(from)
                    .filter(SubscriptionFilter::on_event_type().exclude_system_events());
                s.subscription = Some(s.store.client.subscribe_to_all(&options).await);
            }
            loop {
                let subscription = s.subscription.as_mut()?;
                let event = match subscription.next_subscription_event().await {
                    Ok(SubscriptionEvent::EventAppeared(resolved)) => match original(resolved) {
                        Some(event) => event,
                        None => continue,
                    },
                    Ok(_) => continue,
                    Err(err) => {
                        s.failed = true;
                        return Some((Err(backend(err)), s));
                    }
                };
                let at = pos(event.position);
                if !is_vigil_event(&event.stream_id, &event.event_type)
                    || s.floor.is_some_and(|floor| at <= floor)
                {
                    continue;
                }
                s.floor = Some(at);
                let ordinal = s.after + 1;
                let numbered = s
                    .store
                    .index
                    .lock()
                    .await
                    .record(ordinal, at)
                    .and_then(|()| Self::to_recorded(&event, ordinal));
                return match numbered {
                    Ok(recorded) => {
                        s.after = ordinal;
                        Some((Ok(vec![recorded]), s))
                    }
                    Err(err) => {
                        s.failed = true;
                        Some((Err(err), s))
                    }
                };
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_numbers_in_order_and_refuses_disagreement() {
        let mut index = PositionIndex::default();
        index.record(1, (10, 10)).unwrap();
        index.record(2, (25, 25)).unwrap();
        // A second reader numbering the same events agrees.
        index.record(1, (10, 10)).unwrap();
        assert_eq!(index.ordinal_of((25, 25)), Some(2));
        assert_eq!(index.position_of(1), Some((10, 10)));
        assert_eq!(index.position_of(0), None);
        // Disagreement, a step back and a skipped ordinal are all errors.
        assert!(matches!(
            index.record(2, (30, 30)),
            Err(StoreError::Corrupt { position: 2, .. })
        ));
        assert!(matches!(
            index.record(3, (20, 20)),
            Err(StoreError::Corrupt { position: 3, .. })
        ));
        assert!(matches!(
            index.record(5, (40, 40)),
            Err(StoreError::Gap {
                expected: 3,
                found: 5
            })
        ));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn system_events_are_not_numbered() {
        assert!(is_vigil_event("camera-1", "camera.registered"));
        assert!(!is_vigil_event(
            "$stats-0.0.0.0:2113",
            "$statistics-collected"
        ));
        assert!(!is_vigil_event("camera-1", "$metadata"));
    }

    fn stored(custom_metadata: &[u8], data: &[u8]) -> eventstore::RecordedEvent {
        eventstore::RecordedEvent {
            stream_id: "camera-1".into(),
            id: Uuid::now_v7(),
            revision: 4,
            event_type: "camera.registered".into(),
            data: bytes::Bytes::copy_from_slice(data),
            metadata: Default::default(),
            custom_metadata: bytes::Bytes::copy_from_slice(custom_metadata),
            is_json: true,
            position: Position {
                commit: 99,
                prepare: 99,
            },
            created: Utc::now(),
        }
    }

    #[test]
    fn envelope_round_trips_through_kurrentdb_metadata() {
        let envelope = Envelope {
            schema_version: 2,
            occurred_at: Utc::now(),
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            actor: "key:abc".into(),
        };
        let raw = stored(
            &serde_json::to_vec(&envelope).unwrap(),
            br#"{"name":"gate"}"#,
        );
        let recorded = KurrentEventStore::to_recorded(&raw, 7).unwrap();
        assert_eq!(recorded.position, 7);
        assert_eq!(recorded.stream_version, 5, "revision 4 is the fifth event");
        assert_eq!(recorded.event_id, raw.id);
        assert_eq!(recorded.schema_version, 2);
        assert_eq!(recorded.occurred_at, envelope.occurred_at);
        assert_eq!(recorded.correlation_id, envelope.correlation_id);
        assert_eq!(recorded.causation_id, envelope.causation_id);
        assert_eq!(recorded.actor, "key:abc");
        assert_eq!(recorded.recorded_at, raw.created);
        assert_eq!(recorded.payload, serde_json::json!({"name": "gate"}));
    }

    #[test]
    fn foreign_events_in_a_vigil_stream_are_reported_as_corrupt() {
        let raw = stored(b"not json", b"{}");
        assert!(matches!(
            KurrentEventStore::to_recorded(&raw, 3),
            Err(StoreError::Corrupt { position: 3, .. })
        ));
    }
}
