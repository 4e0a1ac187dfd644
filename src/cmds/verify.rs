//! `vigil verify`: replays `$all` through every projection into a scratch database and checks
//! that the live read models hold exactly the same rows.

use std::sync::Arc;

use vigil_projections::ProjectionRunner;
use vigil_projections::digest::table_digest;
use vigil_schemas::EventStore;

use crate::config::Config;
use crate::store::open_pool;

/// Replays each projection into a scratch SQLite database up to the position its live read
/// model has applied, and compares digests. Fails when a read model differs from its replay.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (live_pool, store) = super::open_store(&config).await?;
    let store: Arc<dyn EventStore> = store;
    let head = store.head_position().await?;
    let scratch_dir = tempfile::tempdir()?;
    let scratch_url = format!(
        "sqlite://{}",
        scratch_dir.path().join("verify.db").display()
    );
    let (scratch_pool, _) = open_pool(&scratch_url, 4).await?;
    let mut report =
        String::from("projection  table        live checkpoint  replayed to  result\n");
    let mut failures = 0;
    // The replay writes its Lance tables into the scratch folder, beside its database.
    let scratch_vectors = Arc::new(vigil_projections::vectors::VectorStore::new(
        scratch_dir.path().join("lance"),
        Default::default(),
    ));
    let live_projections = vigil_projections::all(config.vector_store());
    let replay_projections = vigil_projections::all(scratch_vectors);
    for (projection, replayed_projection) in live_projections.into_iter().zip(replay_projections) {
        let live = ProjectionRunner::new(live_pool.clone(), store.clone(), projection.clone());
        let replay = ProjectionRunner::new(
            scratch_pool.clone(),
            store.clone(),
            replayed_projection.clone(),
        );
        let live_checkpoint = live.checkpoint().await?;
        // Replay exactly as far as the live model has got, so a lagging model still compares.
        let replayed = replay.catch_up_until(live_checkpoint).await?;
        let mut digests = Vec::new();
        for table in projection.tables() {
            // Every read-model table is keyed by `id`.
            let a = table_digest(&live_pool, table, "id").await?;
            let b = table_digest(&scratch_pool, table, "id").await?;
            digests.push((table.to_string(), a, b));
        }
        // Tables outside the database (Lance) digest themselves.
        for ((table, a), (_, b)) in projection
            .outside_digests()
            .await?
            .into_iter()
            .zip(replayed_projection.outside_digests().await?)
        {
            digests.push((table, a, b));
        }
        for (table, a, b) in digests {
            let result = if live_checkpoint != replayed {
                failures += 1;
                format!("NOT COMPARABLE: live is at {live_checkpoint}, the log ends at {replayed}")
            } else if a == b {
                format!(
                    "identical ({})",
                    a.split(':').next().unwrap_or("?").to_owned() + " rows"
                )
            } else {
                failures += 1;
                format!("DIFFERENT: live {a}, replay {b}")
            };
            report += &format!(
                "{:<11} {:<12} {:>15} {:>12}  {result}\n",
                live.name(),
                table,
                live_checkpoint,
                replayed
            );
        }
    }
    super::write_out(&report)?;
    anyhow::ensure!(
        failures == 0,
        "{failures} read model(s) differ from their replay (head {head})"
    );
    Ok(())
}
