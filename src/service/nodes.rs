//! Which node runs which camera: the nodes sharing the database, their leases and load.

use std::time::Duration;

use crate::app::App;
use crate::cluster::{LeaseRow, NodeLoad, NodeRow};
use crate::store::Backend;

use super::ServiceError;

/// How long a node that stopped beating stays listed (as not alive).
pub const DEAD_NODES_LISTED: Duration = Duration::from_secs(24 * 3600);

/// The nodes as `GET /api/v1/system/nodes` shows them.
#[derive(Debug, Clone)]
pub struct Nodes {
    /// Whether cameras are leased to nodes (PostgreSQL); otherwise the one node runs every
    /// camera.
    pub leased: bool,
    /// This node's name.
    pub this_node: String,
    /// The lease time.
    pub lease: Duration,
    /// The heartbeat.
    pub heartbeat: Duration,
    /// Every node, sorted by name.
    pub nodes: Vec<NodeRow>,
}

/// The nodes sharing this node's database: from the lease tables on PostgreSQL, else this
/// node alone with the cameras it runs.
pub async fn list(app: &App) -> Result<Nodes, ServiceError> {
    let config = app.config();
    let settings = crate::cluster::ClusterSettings::of(config);
    let nodes = if app.backend() == Backend::Postgres {
        crate::cluster::nodes(app.pool(), app.backend(), settings.lease, DEAD_NODES_LISTED)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("the database is unavailable ({e})")))?
    } else {
        let running = match app.supervision() {
            Some(supervision) => supervision.running().await,
            None => Vec::new(),
        };
        vec![NodeRow {
            node_id: settings.node.clone(),
            started_at: None,
            heartbeat_age_ms: 0,
            alive: true,
            max_cameras: settings.max_cameras,
            load: NodeLoad::of(app.ingest()),
            leases: running
                .into_iter()
                .map(|camera_id| LeaseRow {
                    camera_id,
                    token: 0,
                    held_ms: 0,
                    expires_in_ms: 0,
                })
                .collect(),
        }]
    };
    Ok(Nodes {
        leased: app.backend() == Backend::Postgres,
        this_node: settings.node,
        lease: settings.lease,
        heartbeat: settings.heartbeat,
        nodes,
    })
}
