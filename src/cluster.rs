//! Several ingest nodes on one PostgreSQL database: each camera is leased to one node at a time.
//!
//! Every node beats (`camera_heartbeat_secs`): it writes its row in `cluster_nodes`, hands back
//! the leases it gave up at the previous beat, renews its own, and takes or gives back cameras
//! towards an even share of the live nodes ([`share`]; `max_cameras` caps a node). Which of
//! the free cameras a node takes, and which it gives back first, follows rendezvous hashing
//! ([`affinity`]), so a node that restarts gets the same cameras again. A node gives back at
//! most one camera per beat (rebalancing is slow; taking over a dead node's cameras is not).
//! Lease times are the database's clock. A lease carries a fencing token that grows whenever
//! the camera changes hands; camera actors append through a [`FencedStore`] that commits only
//! while their node still holds the lease with the token they started with, so a node paused
//! past its lease (or cut off) writes nothing for the cameras it lost.
//!
//! On SQLite (one node) there are no leases: the node runs every camera.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use tokio::sync::watch;
use vigil_actors::node::{CameraLeases, Ingest};
use vigil_schemas::{
    AppendOutcome, Direction, EventStore, EventSubscription, ExpectedVersion, NewEvent,
    RecordedEvent, StoreError,
};

use crate::store::Backend;
use crate::store::sql::{LeaseFence, SqlEventStore, now_ms_sql};

/// How a node takes part in sharing the cameras.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This node's name.
    pub node: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often the node beats.
    pub heartbeat: Duration,
    /// The most cameras it takes; 0: no limit.
    pub max_cameras: u32,
}

impl ClusterSettings {
    /// The settings of `config`.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            node: config.effective_node_id(),
            lease: Duration::from_secs(config.camera_lease_secs),
            heartbeat: Duration::from_secs(config.camera_heartbeat_secs),
            max_cameras: config.max_cameras,
        }
    }
}

/// What a node reports of its load at each beat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Camera actors running.
    pub cameras_running: usize,
    /// Sampled frames handled per second, all its cameras together.
    pub frames_per_second: f64,
}

impl NodeLoad {
    /// The load of a node's cameras now.
    pub fn of(ingest: &Ingest) -> Self {
        let snapshots = ingest.snapshots();
        Self {
            cameras_running: snapshots.iter().filter(|(_, s)| s.running).count(),
            frames_per_second: snapshots.iter().map(|(_, s)| s.fps).sum(),
        }
    }
}

/// How many of `cameras` each live node should hold: an even share, no node above its cap
/// (`nodes`: name and `max_cameras`, 0 for no limit). The shares add up to `cameras` unless
/// the caps are smaller; where the division leaves a remainder, the first nodes by name take
/// one more, so every node computes the same shares and they differ by at most one between
/// uncapped nodes.
pub fn share(nodes: &[(String, u32)], cameras: usize) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    let mut open: Vec<(&str, usize)> = nodes
        .iter()
        .map(|(name, max)| {
            let cap = if *max == 0 { usize::MAX } else { *max as usize };
            (name.as_str(), cap)
        })
        .collect();
    open.sort();
    open.dedup_by(|a, b| a.0 == b.0);
    let mut left = cameras;
    while !open.is_empty() {
        let base = left / open.len();
        let (capped, rest): (Vec<_>, Vec<_>) = open.iter().partition(|(_, cap)| *cap <= base);
        if capped.is_empty() {
            let extra = left % open.len();
            for (i, (name, _)) in open.iter().enumerate() {
                shares.insert(name.to_string(), base + usize::from(i < extra));
            }
            break;
        }
        for (name, cap) in capped {
            shares.insert(name.to_string(), cap);
            left -= cap;
        }
        open = rest;
    }
    shares
}

/// How much node `node` wants camera `camera` (rendezvous hashing): a node takes the free
/// cameras it wants most and gives back the one it wants least.
pub fn affinity(camera: &str, node: &str) -> u64 {
    let digest = Sha256::digest(format!("{camera}\0{node}").as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// What a node decides at a beat, from what the database says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Leases to keep (renewed).
    pub keep: BTreeSet<String>,
    /// Leases to give back: its actor stops now, the lease goes at the next beat.
    pub release: BTreeSet<String>,
    /// Free cameras to try to take, most wanted first: every free one, so that one another
    /// node wins at the same moment is replaced by the next.
    pub take: Vec<String>,
    /// How many of `take` to win (the node's shortfall from its share).
    pub short: usize,
}

/// The beat's decision (pure): `mine` the leases the node holds, `wanted` the cameras it
/// would run, `taken` the cameras any node holds unexpired, `target` its share.
pub fn plan(
    node: &str,
    mine: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    taken: &BTreeSet<String>,
    target: usize,
) -> Plan {
    let mut plan = Plan::default();
    for camera in mine {
        if wanted.contains(camera) {
            plan.keep.insert(camera.clone());
        } else {
            plan.release.insert(camera.clone());
        }
    }
    if plan.keep.len() > target {
        let least = plan
            .keep
            .iter()
            .min_by_key(|c| affinity(c, node))
            .cloned()
            .expect("more than the target");
        plan.keep.remove(&least);
        plan.release.insert(least);
    } else if plan.keep.len() < target {
        let mut free: Vec<&String> = wanted.iter().filter(|c| !taken.contains(*c)).collect();
        free.sort_by_key(|c| std::cmp::Reverse(affinity(c, node)));
        plan.take = free.into_iter().cloned().collect();
        plan.short = target - plan.keep.len();
    }
    plan
}

/// The camera leases of this node: what the supervisor wants, what the beats hold.
pub struct LeaseKeeper {
    settings: ClusterSettings,
    pool: AnyPool,
    backend: Backend,
    /// The node's event store.
    store: Arc<dyn EventStore>,
    /// The same store when it is the SQL one, which fences appends at commit.
    sql: Option<SqlEventStore>,
    wanted: Mutex<BTreeSet<String>>,
    /// Whether the supervisor said what it wants yet (until then a beat takes nothing and
    /// gives nothing back).
    announced: AtomicBool,
    /// Wakes the beat loop when the wanted cameras change (a camera registered or enabled is
    /// taken at once, not at the next heartbeat).
    wake: tokio::sync::Notify,
    held: watch::Sender<BTreeMap<String, u64>>,
    /// Given back at the last beat; handed back in the database at the next.
    releasing: Mutex<BTreeSet<String>>,
    /// When, before the next heartbeat, another node's lease on a camera this node wants
    /// runs out (its owner stopped renewing): the next beat comes then, so a dead node's
    /// cameras are taken when its leases expire rather than up to a heartbeat later.
    expiring: Mutex<Option<Duration>>,
    started_at: DateTime<Utc>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// The keeper of a node whose events go to `store` (`sql` when it is the SQL store).
    pub fn new(
        settings: ClusterSettings,
        pool: AnyPool,
        backend: Backend,
        store: Arc<dyn EventStore>,
        sql: Option<SqlEventStore>,
    ) -> Self {
        Self {
            settings,
            pool,
            backend,
            store,
            sql,
            wanted: Mutex::default(),
            announced: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            held: watch::Sender::new(BTreeMap::new()),
            releasing: Mutex::default(),
            expiring: Mutex::default(),
            started_at: Utc::now(),
            stopped: AtomicBool::new(false),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The leases it holds now (camera → token).
    pub fn held_now(&self) -> BTreeMap<String, u64> {
        self.held.borrow().clone()
    }

    /// Beats every heartbeat until [`release_all`](Self::release_all); a failed beat is logged
    /// and the next one tries again (the leases it holds stay held until they expire).
    pub async fn run(self: Arc<Self>, ingest: Arc<Ingest>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let expiring = self.expiring.lock().expect("expiring lock").take();
            let expired = async {
                match expiring {
                    // Past the expiry by a margin, so the database sees it expired.
                    Some(after) => tokio::time::sleep(after + Duration::from_millis(20)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
                _ = expired => {}
            }
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            match self.beat(NodeLoad::of(&ingest)).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(node = %self.settings.node, "camera leases renewed again");
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(node = %self.settings.node, error = %e, "cannot renew the camera leases; trying at every heartbeat");
                    }
                    failing = true;
                }
            }
        }
    }

    /// One beat: node row, hand back, renew, take or give back.
    pub async fn beat(&self, load: NodeLoad) -> Result<(), sqlx::Error> {
        let now = now_ms_sql(self.backend);
        let node = self.settings.node.as_str();
        let lease_ms = self.settings.lease.as_millis() as i64;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO cluster_nodes (node_id, started_at, heartbeat_ms, max_cameras, load) \
             VALUES ($1, $2, {now}, $3, $4) ON CONFLICT (node_id) DO UPDATE SET \
             started_at = excluded.started_at, heartbeat_ms = excluded.heartbeat_ms, \
             max_cameras = excluded.max_cameras, load = excluded.load"
        )))
        .bind(node)
        .bind(vigil_projections::format_time(self.started_at))
        .bind(i64::from(self.settings.max_cameras))
        .bind(serde_json::to_string(&load).unwrap_or_default())
        .execute(&self.pool)
        .await?;

        // Leases given back at the last beat: their actors have stopped since.
        let releasing = std::mem::take(&mut *self.releasing.lock().expect("releasing lock"));
        for camera in &releasing {
            sqlx::query(
                "UPDATE camera_leases SET expires_ms = 0 WHERE camera_id = $1 AND owner = $2",
            )
            .bind(camera.as_str())
            .bind(node)
            .execute(&self.pool)
            .await?;
        }

        // Renew what it holds. A lease that expired while no other node took it is still
        // this node's (same token): nobody else wrote for the camera meanwhile.
        let renewed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE camera_leases SET expires_ms = {now} + $2 WHERE owner = $1 AND expires_ms > 0 \
             RETURNING camera_id, token"
        )))
        .bind(node)
        .bind(lease_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut tokens: BTreeMap<String, u64> = BTreeMap::new();
        for row in renewed {
            let camera: String = row.try_get(0)?;
            let token: i64 = row.try_get(1)?;
            tokens.insert(camera, token as u64);
        }

        let live: Vec<(String, u32)> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT node_id, max_cameras FROM cluster_nodes WHERE heartbeat_ms > {now} - $1"
        )))
        .bind(lease_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let max: i64 = row.try_get(1)?;
            Ok((row.try_get(0)?, max.clamp(0, i64::from(u32::MAX)) as u32))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let leased: Vec<(String, String, i64)> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT camera_id, owner, expires_ms - {now} FROM camera_leases \
             WHERE expires_ms > {now}"
        )))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let taken: BTreeSet<String> = leased.iter().map(|(c, _, _)| c.clone()).collect();

        let wanted = self.wanted.lock().expect("wanted lock").clone();
        // A healthy owner renews every heartbeat, so its leases have more than a lease minus
        // a heartbeat (at least a heartbeat) to run; one that runs out sooner was not renewed.
        let heartbeat_ms = self.settings.heartbeat.as_millis() as i64;
        *self.expiring.lock().expect("expiring lock") = leased
            .iter()
            .filter(|(camera, owner, left)| {
                owner != node && *left < heartbeat_ms && wanted.contains(camera)
            })
            .map(|(_, _, left)| Duration::from_millis((*left).max(0) as u64))
            .min();
        let mut nodes = live;
        if !nodes.iter().any(|(n, _)| n == node) {
            nodes.push((node.to_string(), self.settings.max_cameras));
        }
        let target = share(&nodes, wanted.len()).get(node).copied().unwrap_or(0);
        let mine: BTreeSet<String> = tokens.keys().cloned().collect();
        let plan = if self.announced.load(Ordering::Relaxed) {
            plan(node, &mine, &wanted, &taken, target)
        } else {
            Plan {
                keep: mine,
                ..Plan::default()
            }
        };

        let mut won_count = 0;
        for camera in &plan.take {
            if won_count == plan.short {
                break;
            }
            let won = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO camera_leases (camera_id, owner, token, acquired_ms, expires_ms) \
                 VALUES ($1, $2, 1, {now}, {now} + $3) ON CONFLICT (camera_id) DO UPDATE SET \
                 owner = excluded.owner, token = camera_leases.token + 1, \
                 acquired_ms = excluded.acquired_ms, expires_ms = excluded.expires_ms \
                 WHERE camera_leases.expires_ms <= {now} RETURNING token"
            )))
            .bind(camera.as_str())
            .bind(node)
            .bind(lease_ms)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = won {
                let token: i64 = row.try_get(0)?;
                tracing::info!(node, camera = %camera, token, "took the camera's lease");
                tokens.insert(camera.clone(), token as u64);
                won_count += 1;
            }
        }
        for camera in &plan.release {
            tracing::info!(node, camera = %camera, "giving the camera's lease back");
            tokens.remove(camera);
        }
        self.releasing
            .lock()
            .expect("releasing lock")
            .extend(plan.release);
        self.held.send_if_modified(|held| {
            let changed = *held != tokens;
            if changed {
                *held = tokens;
            }
            changed
        });
        Ok(())
    }

    /// Stops beating and hands every lease back (a node shutting down, after its camera
    /// actors stopped), so the others take its cameras at their next beat.
    pub async fn release_all(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.held.send_replace(BTreeMap::new());
        let node = self.settings.node.as_str();
        let released = sqlx::query("UPDATE camera_leases SET expires_ms = 0 WHERE owner = $1")
            .bind(node)
            .execute(&self.pool)
            .await;
        let gone = sqlx::query("DELETE FROM cluster_nodes WHERE node_id = $1")
            .bind(node)
            .execute(&self.pool)
            .await;
        if let Err(e) = released.and(gone) {
            tracing::warn!(node, error = %e, "could not hand the camera leases back; they expire instead");
        }
    }
}

impl CameraLeases for LeaseKeeper {
    fn node(&self) -> &str {
        &self.settings.node
    }

    fn want(&self, cameras: BTreeSet<String>) {
        let mut wanted = self.wanted.lock().expect("wanted lock");
        let first = !self.announced.swap(true, Ordering::Relaxed);
        if first || *wanted != cameras {
            *wanted = cameras;
            self.wake.notify_one();
        }
    }

    fn holds(&self, camera: &str, token: u64) -> bool {
        self.held.borrow().get(camera) == Some(&token)
    }

    fn held(&self) -> watch::Receiver<BTreeMap<String, u64>> {
        self.held.subscribe()
    }

    fn fenced(&self, camera: &str, token: u64) -> Arc<dyn EventStore> {
        Arc::new(FencedStore {
            store: self.store.clone(),
            sql: self.sql.clone(),
            fence: LeaseFence {
                camera: camera.to_string(),
                node: self.settings.node.clone(),
                token,
            },
        })
    }
}

/// A camera actor's view of the event store: appends commit only while its node holds the
/// camera's lease with the actor's token. Reads go to the store. (With KurrentDB, which
/// cannot check a SQL row in its append, appends are not fenced: the leases still assign
/// the cameras.)
pub struct FencedStore {
    store: Arc<dyn EventStore>,
    sql: Option<SqlEventStore>,
    fence: LeaseFence,
}

#[async_trait]
impl EventStore for FencedStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        match &self.sql {
            Some(sql) => {
                sql.append_fenced(stream, expected, events, &self.fence)
                    .await
            }
            None => self.store.append(stream, expected, events).await,
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_stream(stream, from, limit, direction).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_all(after, limit).await
    }

    async fn read_all_recorded(
        &self,
        after: u64,
        limit: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_all_recorded(after, limit, from, to).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.store.head_position().await
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.store.stream_version(stream).await
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        self.store.subscribe_all(after)
    }
}

/// A node as the database knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// Its name.
    pub node_id: String,
    /// When its process started (RFC 3339; none for a node that keeps no node table).
    pub started_at: Option<String>,
    /// Milliseconds since its last beat, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// Whether it beat within the lease time.
    pub alive: bool,
    /// Its `max_cameras` (0: no limit).
    pub max_cameras: u32,
    /// Its load at its last beat.
    pub load: NodeLoad,
    /// The leases it holds, unexpired.
    pub leases: Vec<LeaseRow>,
}

/// One camera lease.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    /// The camera.
    pub camera_id: String,
    /// Its fencing token.
    pub token: u64,
    /// Milliseconds since the node took it.
    pub held_ms: i64,
    /// Milliseconds until it expires without renewal.
    pub expires_in_ms: i64,
}

/// Every node that beat within `keep` (dead ones included, marked), with its live leases,
/// sorted by name.
pub async fn nodes(
    pool: &AnyPool,
    backend: Backend,
    lease: Duration,
    keep: Duration,
) -> Result<Vec<NodeRow>, sqlx::Error> {
    let now = now_ms_sql(backend);
    let lease_ms = lease.as_millis() as i64;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT node_id, started_at, {now} - heartbeat_ms, max_cameras, load FROM cluster_nodes \
         WHERE heartbeat_ms > {now} - $1 ORDER BY node_id"
    )))
    .bind(keep.as_millis() as i64)
    .fetch_all(pool)
    .await?;
    let leases = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT owner, camera_id, token, {now} - acquired_ms, expires_ms - {now} FROM camera_leases \
         WHERE expires_ms > {now} ORDER BY camera_id"
    )))
    .fetch_all(pool)
    .await?;
    let mut by_owner: BTreeMap<String, Vec<LeaseRow>> = BTreeMap::new();
    for row in leases {
        let owner: String = row.try_get(0)?;
        let token: i64 = row.try_get(2)?;
        by_owner.entry(owner).or_default().push(LeaseRow {
            camera_id: row.try_get(1)?,
            token: token as u64,
            held_ms: row.try_get(3)?,
            expires_in_ms: row.try_get(4)?,
        });
    }
    rows.iter()
        .map(|row| {
            let node_id: String = row.try_get(0)?;
            let age: i64 = row.try_get(2)?;
            let max: i64 = row.try_get(3)?;
            let load: String = row.try_get(4)?;
            Ok(NodeRow {
                leases: by_owner.remove(&node_id).unwrap_or_default(),
                node_id,
                started_at: Some(row.try_get(1)?),
                heartbeat_age_ms: age,
                alive: age < lease_ms,
                max_cameras: max.clamp(0, i64::from(u32::MAX)) as u32,
                load: serde_json::from_str(&load).unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(n, m)| (n.to_string(), *m)).collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_are_even_within_one_and_add_up() {
        let three = nodes(&[("c", 0), ("a", 0), ("b", 0)]);
        let s = share(&three, 12);
        assert_eq!(s.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
        let s = share(&three, 13);
        assert_eq!(s["a"], 5, "the first by name takes the remainder");
        assert_eq!((s["b"], s["c"]), (4, 4));
        assert_eq!(share(&three, 2).values().sum::<usize>(), 2);
        assert!(share(&[], 5).is_empty());
    }

    #[test]
    fn capped_nodes_take_their_cap_and_the_others_the_rest() {
        let s = share(&nodes(&[("a", 2), ("b", 0), ("c", 0)]), 12);
        assert_eq!((s["a"], s["b"], s["c"]), (2, 5, 5));
        // Caps smaller than the cameras: every node full, some cameras run nowhere.
        let s = share(&nodes(&[("a", 2), ("b", 3)]), 12);
        assert_eq!((s["a"], s["b"]), (2, 3));
    }

    #[test]
    fn a_node_keeps_what_it_wants_takes_free_cameras_and_gives_back_one_at_a_time() {
        let wanted = set(&["c1", "c2", "c3", "c4", "c5", "c6"]);
        // Nothing held, nothing taken: take the share, most wanted first.
        let p = plan("a", &set(&[]), &wanted, &set(&[]), 3);
        assert_eq!(p.short, 3);
        let mut by_affinity: Vec<&String> = wanted.iter().collect();
        by_affinity.sort_by_key(|c| std::cmp::Reverse(affinity(c, "a")));
        assert_eq!(
            p.take.iter().collect::<Vec<_>>(),
            by_affinity,
            "every free one, in order"
        );
        // Taken cameras are not taken again.
        let p = plan(
            "a",
            &set(&[]),
            &wanted,
            &set(&["c1", "c2", "c3", "c4", "c5"]),
            3,
        );
        assert_eq!(p.take, vec!["c6".to_string()]);
        assert_eq!(p.short, 3);
        // Above the share: one goes back, the least wanted.
        let mine = set(&["c1", "c2", "c3", "c4", "c5"]);
        let p = plan("a", &mine, &wanted, &mine, 2);
        assert_eq!(p.release.len(), 1);
        let least = mine.iter().min_by_key(|c| affinity(c, "a")).unwrap();
        assert!(p.release.contains(least));
        assert_eq!(p.keep.len(), 4);
        assert!(p.take.is_empty());
        // A camera no longer wanted (disabled, ended) goes back at once.
        let p = plan(
            "a",
            &set(&["c1", "gone"]),
            &wanted,
            &set(&["c1", "gone"]),
            2,
        );
        assert_eq!(p.release, set(&["gone"]));
        assert_eq!(p.keep, set(&["c1"]));
    }

    #[test]
    fn affinity_depends_on_both_names() {
        assert_eq!(affinity("c1", "a"), affinity("c1", "a"));
        assert_ne!(affinity("c1", "a"), affinity("c1", "b"));
        assert_ne!(affinity("c1", "a"), affinity("c2", "a"));
    }
}
