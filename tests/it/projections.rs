//! Projection runner: checkpoints, continuity, rebuild by replay.

use std::sync::Arc;

use vigil_actors::CommandHandler;
use vigil_actors::aggregates::camera::{
    CameraAggregate, CameraCommand, CameraPatch, FeaturesPatch, RegisterCamera,
};
use vigil_projections::cameras::{CameraProjection, CameraQuery, list_cameras};
use vigil_projections::digest::table_digest;
use vigil_projections::{ProjectionError, ProjectionRunner};
use vigil_schemas::events::{CameraFeatures, Point, Zone};
use vigil_schemas::{EventMeta, EventStore};

use crate::support::{TestDb, Which};

async fn populate(handler: &CommandHandler, cameras: usize) {
    let meta = EventMeta::system();
    for i in 0..cameras {
        let id = format!("cam-{i:03}");
        let register = RegisterCamera {
            id: id.clone(),
            name: format!("Camera {i}"),
            source: format!("rtsp://10.0.0.{i}/live"),
            enabled: i % 3 != 0,
            sample_fps: 0.5 + i as f64 / 10.0,
            features: CameraFeatures {
                crowd: i % 2 == 0,
                ..Default::default()
            },
            prompt: format!("prompt {i}"),
            zones: vec![Zone {
                name: "z".into(),
                polygon: vec![
                    Point { x: 0.1, y: 0.1 },
                    Point { x: 0.9, y: 0.1 },
                    Point { x: 0.5, y: 0.9 },
                ],
            }],
        };
        handler
            .execute::<CameraAggregate>(&id, CameraCommand::Register(register), &meta, None)
            .await
            .unwrap();
        if i % 2 == 1 {
            let patch = CameraPatch {
                name: Some(format!("Renamed {i}")),
                enabled: Some(i % 4 == 1),
                features: Some(FeaturesPatch {
                    loitering: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            handler
                .execute::<CameraAggregate>(&id, CameraCommand::Update(patch), &meta, None)
                .await
                .unwrap();
        }
        if i % 5 == 4 {
            handler
                .execute::<CameraAggregate>(&id, CameraCommand::Remove, &meta, None)
                .await
                .unwrap();
        }
    }
}

async fn rebuilt_read_model_equals_live(which: Which) {
    let db = TestDb::new(which).await;
    let store = db.store().await;
    let store: Arc<dyn EventStore> = store;
    let handler = CommandHandler::new(store.clone());
    let runner = ProjectionRunner::new(
        db_pool(&db).await,
        store.clone(),
        Arc::new(CameraProjection),
    );
    // Live: the runner follows while commands are written.
    let live = tokio::spawn(runner.clone().run());
    populate(&handler, 40).await;
    let head = store.head_position().await.unwrap();
    assert!(
        runner
            .status()
            .wait_for(head, std::time::Duration::from_secs(10))
            .await,
        "live projection caught up"
    );
    live.abort();
    let pool = db_pool(&db).await;
    let live_digest = table_digest(&pool, "cameras", "id").await.unwrap();
    assert!(
        live_digest.starts_with("32:"),
        "40 registered, 8 removed: {live_digest}"
    );

    let reached = runner.rebuild().await.unwrap();
    assert_eq!(reached, head);
    assert_eq!(runner.checkpoint().await.unwrap(), head);
    let rebuilt_digest = table_digest(&pool, "cameras", "id").await.unwrap();
    assert_eq!(live_digest, rebuilt_digest);

    // The digest is sensitive: a changed row changes it.
    sqlx::query("UPDATE cameras SET prompt = 'tampered' WHERE id = 'cam-000'")
        .execute(&pool)
        .await
        .unwrap();
    assert_ne!(
        table_digest(&pool, "cameras", "id").await.unwrap(),
        live_digest
    );

    let disabled = list_cameras(
        &pool,
        &CameraQuery {
            status: Some("disabled".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .0;
    assert!(disabled.iter().all(|c| !c.enabled) && !disabled.is_empty());
    db.cleanup().await;
}

async fn db_pool(db: &TestDb) -> sqlx::AnyPool {
    vigil::store::open_pool(&db.url, 4).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rebuilt_read_model_equals_live() {
    rebuilt_read_model_equals_live(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rebuilt_read_model_equals_live() {
    rebuilt_read_model_equals_live(Which::Postgres).await;
}

#[tokio::test]
async fn a_batch_that_does_not_continue_the_checkpoint_is_an_error() {
    let db = TestDb::new(Which::Sqlite).await;
    let store: Arc<dyn EventStore> = db.store().await;
    let handler = CommandHandler::new(store.clone());
    populate(&handler, 3).await;
    let pool = db_pool(&db).await;
    let runner = ProjectionRunner::new(pool.clone(), store.clone(), Arc::new(CameraProjection));
    let all = store.read_all(0, 100).await.unwrap();

    // A batch starting past the checkpoint is refused, and nothing is applied.
    runner.catch_up().await.unwrap();
    let head = store.head_position().await.unwrap();
    let err = runner.apply_batch(head, &all[1..]).await.unwrap_err();
    assert!(
        matches!(err, ProjectionError::Discontinuous { .. }),
        "{err:?}"
    );

    // A second runner with a stale view of the checkpoint cannot apply over the first.
    let stale = ProjectionRunner::new(pool.clone(), store.clone(), Arc::new(CameraProjection));
    let err = stale.apply_batch(0, &all).await.unwrap_err();
    assert!(
        matches!(err, ProjectionError::CheckpointMoved { expected: 0, .. }),
        "{err:?}"
    );
    assert_eq!(runner.checkpoint().await.unwrap(), head);

    // A batch with a hole inside is refused whole: the checkpoint does not move.
    let rebuilt = runner.rebuild().await.unwrap();
    assert_eq!(rebuilt, head);
    let before = table_digest(&pool, "cameras", "id").await.unwrap();
    sqlx::query("UPDATE projection_checkpoints SET position = 0 WHERE name = 'cameras'")
        .execute(&pool)
        .await
        .unwrap();
    let holey = vec![all[0].clone(), all[2].clone()];
    let err = runner.apply_batch(0, &holey).await.unwrap_err();
    assert!(
        matches!(err, ProjectionError::Discontinuous { found: 3, .. }),
        "{err:?}"
    );
    assert_eq!(runner.checkpoint().await.unwrap(), 0, "rolled back");
    assert_eq!(table_digest(&pool, "cameras", "id").await.unwrap(), before);
    db.cleanup().await;
}
