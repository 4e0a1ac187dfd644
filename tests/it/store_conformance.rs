//! The conformance suite every `EventStore` adapter must pass, run on SQLite and PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use uuid::Uuid;
use vigil_schemas::{Direction, EventMeta, EventStore, ExpectedVersion, NewEvent, StoreError};

use crate::support::{TestDb, Which};

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "test.happened".into(),
        schema_version: 1,
        occurred_at: Utc::now(),
        meta: EventMeta {
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            actor: "test".into(),
        },
        payload: serde_json::json!({"n": n, "text": "ünïcode ✓", "nested": {"list": [1, 2.5, null]}}),
    }
}

fn events(count: u64) -> Vec<NewEvent> {
    (0..count).map(event).collect()
}

async fn append_then_read_preserves_the_envelope(h: &Harness) {
    let store = h.store().await;
    let batch = events(3);
    let outcome = store
        .append(&h.s("s-1"), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.first_position,
            outcome.last_position,
            outcome.stream_version
        ),
        (h.p(1), h.p(3), 3)
    );
    let read = store
        .read_stream(&h.s("s-1"), 1, 10, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    for (i, (stored, sent)) in read.iter().zip(&batch).enumerate() {
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.stream, h.s("s-1"));
        assert_eq!(stored.stream_version, i as u64 + 1);
        assert_eq!(stored.position, h.p(i as u64 + 1));
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.schema_version, 1);
        assert_eq!(
            stored.occurred_at.timestamp_micros(),
            sent.occurred_at.timestamp_micros()
        );
        assert!(stored.recorded_at >= stored.occurred_at - chrono::Duration::seconds(1));
        assert_eq!(stored.correlation_id, sent.meta.correlation_id);
        assert_eq!(stored.causation_id, sent.meta.causation_id);
        assert_eq!(stored.actor, "test");
        assert_eq!(stored.payload, sent.payload);
    }
    assert_eq!(store.head_position().await.unwrap(), h.p(3));
    assert_eq!(store.stream_version(&h.s("s-1")).await.unwrap(), 3);
    assert_eq!(store.stream_version(&h.s("nobody")).await.unwrap(), 0);
}

async fn expected_version_is_enforced_with_the_actual_version(h: &Harness) {
    let store = h.store().await;
    store
        .append(&h.s("s"), ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let conflict = store
        .append(&h.s("s"), ExpectedVersion::NoStream, events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            conflict,
            StoreError::WrongExpectedVersion {
                actual: 2,
                expected: ExpectedVersion::NoStream,
                ..
            }
        ),
        "{conflict:?}"
    );
    let conflict = store
        .append(&h.s("s"), ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, StoreError::WrongExpectedVersion { actual: 2, .. }),
        "{conflict:?}"
    );
    let conflict = store
        .append(&h.s("new"), ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, StoreError::WrongExpectedVersion { actual: 0, .. }),
        "{conflict:?}"
    );
    // Nothing was written by the refused appends.
    assert_eq!(store.head_position().await.unwrap(), h.p(2));
    let ok = store
        .append(&h.s("s"), ExpectedVersion::Exact(2), events(1))
        .await
        .unwrap();
    assert_eq!(ok.stream_version, 3);
    let ok = store
        .append(&h.s("s"), ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    assert_eq!((ok.stream_version, ok.last_position), (5, h.p(5)));
}

async fn append_is_all_or_nothing(h: &Harness) {
    let store = h.store().await;
    store
        .append(&h.s("a"), ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let mut twice = events(3);
    twice[2].event_id = twice[0].event_id;
    assert!(matches!(
        store.append(&h.s("a"), ExpectedVersion::Any, twice).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(matches!(
        store.append(&h.s("a"), ExpectedVersion::Any, vec![]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(matches!(
        store.append("$all", ExpectedVersion::Any, events(1)).await,
        Err(StoreError::InvalidAppend(_))
    ));
    // A batch larger than one INSERT statement goes in whole.
    let big = store
        .append(&h.s("big"), ExpectedVersion::NoStream, events(450))
        .await
        .unwrap();
    assert_eq!(
        (big.first_position, big.last_position, big.stream_version),
        (h.p(2), h.p(451), 450)
    );
    assert_eq!(store.read_all(h.p(0), 1000).await.unwrap().len(), 451);
}

async fn re_appending_the_same_events_is_idempotent(h: &Harness) {
    let store = h.store().await;
    store
        .append(&h.s("other"), ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let batch = events(3);
    let first = store
        .append(&h.s("s"), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // The retry names the old expectation, which no longer holds: still the same answer.
    let again = store
        .append(&h.s("s"), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(store.head_position().await.unwrap(), h.p(5));
    assert_eq!(
        store
            .read_stream(&h.s("s"), 1, 10, Direction::Forward)
            .await
            .unwrap()
            .len(),
        3
    );

    // A batch that shares only some ids, or sends them to another stream, is refused whole.
    let mut partial = events(2);
    partial[1].event_id = batch[0].event_id;
    let err = store
        .append(&h.s("s"), ExpectedVersion::Any, partial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    let err = store
        .append(&h.s("elsewhere"), ExpectedVersion::Any, batch.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    let reordered = vec![batch[1].clone(), batch[0].clone(), batch[2].clone()];
    let err = store
        .append(&h.s("s"), ExpectedVersion::Any, reordered)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(store.head_position().await.unwrap(), h.p(5));
}

async fn reads_page_both_ways(h: &Harness) {
    let store = h.store().await;
    for i in 0..4 {
        store
            .append(&h.s("x"), ExpectedVersion::Any, events(1))
            .await
            .unwrap();
        store
            .append(&h.s(&format!("y-{i}")), ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let versions = |v: Vec<vigil_schemas::RecordedEvent>| {
        v.iter().map(|e| e.stream_version).collect::<Vec<_>>()
    };
    assert_eq!(
        versions(
            store
                .read_stream(&h.s("x"), 2, 2, Direction::Forward)
                .await
                .unwrap()
        ),
        vec![2, 3]
    );
    assert_eq!(
        versions(
            store
                .read_stream(&h.s("x"), u64::MAX, 3, Direction::Backward)
                .await
                .unwrap()
        ),
        vec![4, 3, 2]
    );
    assert_eq!(
        versions(
            store
                .read_stream(&h.s("x"), 2, 10, Direction::Backward)
                .await
                .unwrap()
        ),
        vec![2, 1]
    );
    assert!(
        store
            .read_stream(&h.s("missing"), 1, 10, Direction::Forward)
            .await
            .unwrap()
            .is_empty()
    );
    let positions: Vec<u64> = store
        .read_all(h.p(3), 3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, vec![h.p(4), h.p(5), h.p(6)]);
    assert!(store.read_all(h.p(8), 10).await.unwrap().is_empty());
}

async fn subscription_catches_up_then_follows_live(h: &Harness) {
    let store = h.store().await;
    store
        .append(&h.s("s"), ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    let mut sub = store.subscribe_all(h.p(2));
    let first = sub.next().await.unwrap().unwrap();
    assert_eq!(
        first.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![h.p(3), h.p(4), h.p(5)]
    );
    let writer = store.clone();
    let stream = h.s("s");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .append(&stream, ExpectedVersion::Any, events(2))
            .await
            .unwrap();
    });
    let live = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("live event arrives")
        .unwrap()
        .unwrap();
    assert_eq!(
        live.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![h.p(6), h.p(7)]
    );

    // Another process's append (a second pool) arrives through polling.
    let other = h.store().await;
    other
        .append(&h.s("s"), ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let polled = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("polled event arrives")
        .unwrap()
        .unwrap();
    assert_eq!(polled[0].position, h.p(8));
}

/// 8 writers append concurrently while one subscriber reads: every event arrives exactly once,
/// in position order, with no hole — including on PostgreSQL, where commit order and number
/// order could differ with a sequence.
async fn concurrent_writers_one_subscriber_sees_every_event_once_in_order(h: &Harness) {
    const WRITERS: u64 = 8;
    const APPENDS: u64 = 40;
    let total: u64 = WRITERS * (0..APPENDS).map(|i| 1 + (i % 3)).sum::<u64>();
    let store = h.store().await;
    // The subscriber reads while the writers write.
    let mut sub = store.subscribe_all(h.p(0));
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while (seen.len() as u64) < total {
            let batch = tokio::time::timeout(Duration::from_secs(20), sub.next())
                .await
                .expect("subscription keeps up")
                .expect("subscription open")
                .expect("no gap");
            seen.extend(batch);
        }
        (seen, sub)
    });
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        // Each writer has its own pool, like separate processes.
        let writer = h.store().await;
        let (own, shared) = (h.s(&format!("w-{w}")), h.s("shared"));
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..APPENDS {
                let batch = events(1 + (i % 3));
                ids.extend(batch.iter().map(|e| e.event_id));
                let stream = if i % 2 == 0 { &own } else { &shared };
                writer
                    .append(stream, ExpectedVersion::Any, batch)
                    .await
                    .unwrap();
            }
            ids
        }));
    }
    let mut written = HashSet::new();
    for handle in handles {
        written.extend(handle.await.unwrap());
    }
    assert_eq!(written.len() as u64, total);
    let (seen, mut sub) = reader.await.unwrap();
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (h.p(1)..=h.p(total)).collect::<Vec<_>>(),
        "every position once, in order"
    );
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, written, "exactly the appended events");
    // Stream versions are gapless per stream too.
    let shared: Vec<u64> = seen
        .iter()
        .filter(|e| e.stream == h.s("shared"))
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(shared, (1..=shared.len() as u64).collect::<Vec<_>>());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "nothing extra"
    );
}

/// Concurrent writers on one stream with `Exact`: exactly one wins each version.
async fn optimistic_concurrency_has_one_winner_per_version(h: &Harness) {
    let store = h.store().await;
    store
        .append(&h.s("race"), ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..6 {
        let writer = h.store().await;
        let race = h.s("race");
        handles.push(tokio::spawn(async move {
            writer
                .append(&race, ExpectedVersion::Exact(1), events(1))
                .await
        }));
    }
    let mut wins = 0;
    for handle in handles {
        match handle.await.unwrap() {
            Ok(outcome) => {
                wins += 1;
                assert_eq!(outcome.stream_version, 2);
            }
            Err(StoreError::WrongExpectedVersion { actual: 2, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.stream_version(&h.s("race")).await.unwrap(), 2);
}

/// What a conformance case runs against: a fresh store, stream names unique to the run, and
/// positions counted from the log's head when the case started (a KurrentDB server is shared
/// and keeps earlier runs' events; a SQL test database starts empty).
pub struct Harness {
    db: Option<TestDb>,
    #[cfg(feature = "kurrentdb")]
    kurrent_url: Option<String>,
    prefix: String,
    base: u64,
}

impl Harness {
    async fn sql(which: Which) -> Self {
        Self {
            db: Some(TestDb::new(which).await),
            #[cfg(feature = "kurrentdb")]
            kurrent_url: None,
            prefix: String::new(),
            base: 0,
        }
    }

    /// A new connection to the store under test (like another process).
    async fn store(&self) -> Arc<dyn EventStore> {
        #[cfg(feature = "kurrentdb")]
        if let Some(url) = &self.kurrent_url {
            return Arc::new(
                vigil::store::kurrent::KurrentEventStore::connect(url)
                    .await
                    .unwrap_or_else(|e| panic!("KurrentDB at {url}: {e}")),
            );
        }
        let db = self.db.as_ref().expect("a SQL test database");
        db.store().await
    }

    /// The run's name for stream `name`.
    fn s(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The global position of the run's `n`-th event.
    fn p(&self, n: u64) -> u64 {
        self.base + n
    }
}

async fn run(which: Which, case: impl AsyncFnOnce(&Harness)) {
    let mut harness = Harness::sql(which).await;
    case(&harness).await;
    if let Some(db) = harness.db.take() {
        db.cleanup().await;
    }
}

macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run(super::Which::Sqlite, super::$case).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run(super::Which::Postgres, super::$case).await;
                }
            )+
        }
    };
}

conformance!(
    append_then_read_preserves_the_envelope,
    expected_version_is_enforced_with_the_actual_version,
    append_is_all_or_nothing,
    re_appending_the_same_events_is_idempotent,
    reads_page_both_ways,
    subscription_catches_up_then_follows_live,
    concurrent_writers_one_subscriber_sees_every_event_once_in_order,
    optimistic_concurrency_has_one_winner_per_version,
);

/// Many live subscriptions share one reader of the SQL log: fifty subscribers following ten
/// appends cost the store a handful of reads, not one per subscriber and append, and each
/// still sees every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_live_subscriptions_share_one_reader() {
    let db = TestDb::new(Which::Sqlite).await;
    let store = db.store().await;
    store
        .append("s-0", ExpectedVersion::NoStream, events(5))
        .await
        .unwrap();
    let mut subscriptions: Vec<_> = (0..50).map(|_| store.subscribe_all(0)).collect();
    // Each catches up with its own reads.
    for sub in &mut subscriptions {
        let batch = sub.next().await.unwrap().unwrap();
        assert_eq!(batch.len(), 5);
    }
    let before = store.log_reads();
    let followers: Vec<_> = subscriptions
        .into_iter()
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut seen = vec![];
                while seen.len() < 10 {
                    for e in sub.next().await.unwrap().unwrap() {
                        seen.push(e.position);
                    }
                }
                seen
            })
        })
        .collect();
    for i in 0..10 {
        store
            .append(
                &format!("s-{}", i + 1),
                ExpectedVersion::NoStream,
                events(1),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for follower in followers {
        assert_eq!(follower.await.unwrap(), (6..=15).collect::<Vec<u64>>());
    }
    let reads = store.log_reads() - before;
    assert!(
        reads < 200,
        "50 live subscriptions and 10 appends took {reads} reads of the log (one each would be 500)"
    );
    db.cleanup().await;
}

/// The same cases on a KurrentDB server named by `VIGIL_KURRENTDB_URL`, one after another (the
/// server is shared, so positions are only predictable with one case writing at a time).
///
/// No KurrentDB server can be installed on the machines this project is built on, so this test
/// is `#[ignore]`d: `cargo test` lists it as ignored (not run, never passed), and
/// `scripts/test` runs it with `--include-ignored` when `VIGIL_KURRENTDB_URL` is set. Run by
/// hand without the variable, it fails saying so.
#[cfg(feature = "kurrentdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a KurrentDB server: set VIGIL_KURRENTDB_URL and build with --features kurrentdb"]
async fn kurrentdb_conformance() {
    let url = std::env::var("VIGIL_KURRENTDB_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("VIGIL_KURRENTDB_URL must name a KurrentDB server (esdb://host:2113?tls=false)");
    let mut harness = Harness {
        db: None,
        kurrent_url: Some(url),
        prefix: String::new(),
        base: 0,
    };
    macro_rules! each {
        ($($case:ident),+ $(,)?) => {$(
            harness.prefix = format!("conformance-{}-", Uuid::now_v7().simple());
            harness.base = harness.store().await.head_position().await.unwrap();
            $case(&harness).await;
        )+};
    }
    each!(
        append_then_read_preserves_the_envelope,
        expected_version_is_enforced_with_the_actual_version,
        append_is_all_or_nothing,
        re_appending_the_same_events_is_idempotent,
        reads_page_both_ways,
        subscription_catches_up_then_follows_live,
        concurrent_writers_one_subscriber_sees_every_event_once_in_order,
        optimistic_concurrency_has_one_winner_per_version,
    );
}

/// The store is usable as a trait object (how the app holds it).
#[tokio::test]
async fn store_is_object_safe() {
    let db = TestDb::new(Which::Sqlite).await;
    let store: Arc<dyn EventStore> = db.store().await;
    store
        .append("s", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    assert_eq!(store.head_position().await.unwrap(), 1);
}
