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

async fn append_then_read_preserves_the_envelope(db: &TestDb) {
    let store = db.store().await;
    let batch = events(3);
    let outcome = store
        .append("s-1", ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.first_position,
            outcome.last_position,
            outcome.stream_version
        ),
        (1, 3, 3)
    );
    let read = store
        .read_stream("s-1", 1, 10, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    for (i, (stored, sent)) in read.iter().zip(&batch).enumerate() {
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.stream, "s-1");
        assert_eq!(stored.stream_version, i as u64 + 1);
        assert_eq!(stored.position, i as u64 + 1);
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
    assert_eq!(store.head_position().await.unwrap(), 3);
    assert_eq!(store.stream_version("s-1").await.unwrap(), 3);
    assert_eq!(store.stream_version("nobody").await.unwrap(), 0);
}

async fn expected_version_is_enforced_with_the_actual_version(db: &TestDb) {
    let store = db.store().await;
    store
        .append("s", ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let conflict = store
        .append("s", ExpectedVersion::NoStream, events(1))
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
        .append("s", ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, StoreError::WrongExpectedVersion { actual: 2, .. }),
        "{conflict:?}"
    );
    let conflict = store
        .append("new", ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, StoreError::WrongExpectedVersion { actual: 0, .. }),
        "{conflict:?}"
    );
    // Nothing was written by the refused appends.
    assert_eq!(store.head_position().await.unwrap(), 2);
    let ok = store
        .append("s", ExpectedVersion::Exact(2), events(1))
        .await
        .unwrap();
    assert_eq!(ok.stream_version, 3);
    let ok = store
        .append("s", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    assert_eq!((ok.stream_version, ok.last_position), (5, 5));
}

async fn append_is_all_or_nothing(db: &TestDb) {
    let store = db.store().await;
    store
        .append("a", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let mut twice = events(3);
    twice[2].event_id = twice[0].event_id;
    assert!(matches!(
        store.append("a", ExpectedVersion::Any, twice).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(matches!(
        store.append("a", ExpectedVersion::Any, vec![]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(matches!(
        store.append("$all", ExpectedVersion::Any, events(1)).await,
        Err(StoreError::InvalidAppend(_))
    ));
    // A batch larger than one INSERT statement goes in whole.
    let big = store
        .append("big", ExpectedVersion::NoStream, events(450))
        .await
        .unwrap();
    assert_eq!(
        (big.first_position, big.last_position, big.stream_version),
        (2, 451, 450)
    );
    assert_eq!(store.read_all(0, 1000).await.unwrap().len(), 451);
}

async fn re_appending_the_same_events_is_idempotent(db: &TestDb) {
    let store = db.store().await;
    store
        .append("other", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let batch = events(3);
    let first = store
        .append("s", ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // The retry names the old expectation, which no longer holds: still the same answer.
    let again = store
        .append("s", ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(store.head_position().await.unwrap(), 5);
    assert_eq!(
        store
            .read_stream("s", 1, 10, Direction::Forward)
            .await
            .unwrap()
            .len(),
        3
    );

    // A batch that shares only some ids, or sends them to another stream, is refused whole.
    let mut partial = events(2);
    partial[1].event_id = batch[0].event_id;
    let err = store
        .append("s", ExpectedVersion::Any, partial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    let err = store
        .append("elsewhere", ExpectedVersion::Any, batch.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    let reordered = vec![batch[1].clone(), batch[0].clone(), batch[2].clone()];
    let err = store
        .append("s", ExpectedVersion::Any, reordered)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(store.head_position().await.unwrap(), 5);
}

async fn reads_page_both_ways(db: &TestDb) {
    let store = db.store().await;
    for i in 0..4 {
        store
            .append("x", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
        store
            .append(&format!("y-{i}"), ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let versions = |v: Vec<vigil_schemas::RecordedEvent>| {
        v.iter().map(|e| e.stream_version).collect::<Vec<_>>()
    };
    assert_eq!(
        versions(
            store
                .read_stream("x", 2, 2, Direction::Forward)
                .await
                .unwrap()
        ),
        vec![2, 3]
    );
    assert_eq!(
        versions(
            store
                .read_stream("x", u64::MAX, 3, Direction::Backward)
                .await
                .unwrap()
        ),
        vec![4, 3, 2]
    );
    assert_eq!(
        versions(
            store
                .read_stream("x", 2, 10, Direction::Backward)
                .await
                .unwrap()
        ),
        vec![2, 1]
    );
    assert!(
        store
            .read_stream("missing", 1, 10, Direction::Forward)
            .await
            .unwrap()
            .is_empty()
    );
    let positions: Vec<u64> = store
        .read_all(3, 3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, vec![4, 5, 6]);
    assert!(store.read_all(8, 10).await.unwrap().is_empty());
}

async fn subscription_catches_up_then_follows_live(db: &TestDb) {
    let store = db.store().await;
    store
        .append("s", ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    let mut sub = store.subscribe_all(2);
    let first = sub.next().await.unwrap().unwrap();
    assert_eq!(
        first.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let writer = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .append("s", ExpectedVersion::Any, events(2))
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
        vec![6, 7]
    );

    // Another process's append (a second pool) arrives through polling.
    let other = db.store().await;
    other
        .append("s", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let polled = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("polled event arrives")
        .unwrap()
        .unwrap();
    assert_eq!(polled[0].position, 8);
}

/// 8 writers append concurrently while one subscriber reads: every event arrives exactly once,
/// in position order, with no hole — including on PostgreSQL, where commit order and number
/// order could differ with a sequence.
async fn concurrent_writers_one_subscriber_sees_every_event_once_in_order(db: &TestDb) {
    const WRITERS: u64 = 8;
    const APPENDS: u64 = 40;
    let total: u64 = WRITERS * (0..APPENDS).map(|i| 1 + (i % 3)).sum::<u64>();
    let store = db.store().await;
    // The subscriber reads while the writers write.
    let mut sub = store.subscribe_all(0);
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
        let writer = db.store().await;
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..APPENDS {
                let batch = events(1 + (i % 3));
                ids.extend(batch.iter().map(|e| e.event_id));
                let stream = if i % 2 == 0 {
                    format!("w-{w}")
                } else {
                    "shared".to_string()
                };
                writer
                    .append(&stream, ExpectedVersion::Any, batch)
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
        (1..=total).collect::<Vec<_>>(),
        "every position once, in order"
    );
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, written, "exactly the appended events");
    // Stream versions are gapless per stream too.
    let shared: Vec<u64> = seen
        .iter()
        .filter(|e| e.stream == "shared")
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
async fn optimistic_concurrency_has_one_winner_per_version(db: &TestDb) {
    let store = db.store().await;
    store
        .append("race", ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for _ in 0..6 {
        let writer = db.store().await;
        handles.push(tokio::spawn(async move {
            writer
                .append("race", ExpectedVersion::Exact(1), events(1))
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
    assert_eq!(store.stream_version("race").await.unwrap(), 2);
}

async fn run(which: Which, case: impl AsyncFnOnce(&TestDb)) {
    let db = TestDb::new(which).await;
    case(&db).await;
    db.cleanup().await;
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
