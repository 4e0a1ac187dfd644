//! The response-action read model (`actions`, `action_deliveries`) and its queries, the
//! dead-letter queue among them.
//!
//! `action.requested` makes one `pending` delivery per target; `action.succeeded` makes it
//! `delivered`, `action.failed` `dead` (in the dead-letter queue), `action.requeued` `pending`
//! again and `action.discarded` `discarded`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use vigil_schemas::events::ActionKind;
use vigil_schemas::{ActionEvent, DomainEvent, RecordedEvent};

use crate::error::{InvalidCursor, QueryError};
use crate::format_time;
use crate::runner::{Projection, ProjectionError};
use crate::sql::{
    Arg, SqlBuilder, decode_keyset, encode_keyset, json_col, opt_time_col, parse_time, time_col,
    to_json,
};

/// Where the delivery of an action to one target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Requested or requeued, not delivered yet.
    Pending,
    /// The target accepted it.
    Delivered,
    /// Every retry failed: it is in the dead-letter queue.
    Dead,
    /// Dropped from the dead-letter queue without delivery.
    Discarded,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 4] =
        [Self::Pending, Self::Delivered, Self::Dead, Self::Discarded];

    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Discarded => "discarded",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The delivery of an action to one target.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    /// The configured webhook target's name.
    pub target: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts of the latest round (0 until a round ends).
    pub attempts: u32,
    /// The last failed attempt's error, until a delivery succeeds.
    pub last_error: Option<String>,
    /// The receiver's HTTP status of the successful delivery.
    pub http_status: Option<u16>,
    /// `occurred_at` of its last event.
    pub updated_at: DateTime<Utc>,
    /// When it last went to the dead-letter queue.
    pub dead_at: Option<DateTime<Utc>>,
}

/// A response action with its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRow {
    /// Id.
    pub action_id: String,
    /// What to do.
    pub action: ActionKind,
    /// The incident it responds to.
    pub incident_id: Option<String>,
    /// The camera it is about.
    pub camera_id: Option<String>,
    /// Free text for the receiver.
    pub notes: String,
    /// Requested by a rule's automatic-action setting, not a person.
    pub automatic: bool,
    /// Who asked for it (the `action.requested` envelope's actor).
    pub requested_by: String,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// The targets it is delivered to.
    pub targets: Vec<String>,
    /// One delivery per target, in target order.
    pub deliveries: Vec<DeliveryRow>,
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqRow {
    /// `{action_id}:{target}`.
    pub id: String,
    /// The action.
    pub action_id: String,
    /// The target it failed to reach.
    pub target: String,
    /// What the action does.
    pub action: ActionKind,
    /// The incident it responds to.
    pub incident_id: Option<String>,
    /// The camera it is about.
    pub camera_id: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When it went to the dead-letter queue.
    pub dead_at: DateTime<Utc>,
    /// When the action was asked for.
    pub requested_at: DateTime<Utc>,
}

const ACTION_COLUMNS: &str = "a.id AS action_id, a.action, a.incident_id, a.camera_id, a.notes, \
                              a.automatic, a.requested_by, a.requested_at, a.targets";
const DELIVERY_COLUMNS: &str = "d.action_id, d.target, d.status, d.attempts, d.last_error, d.http_status, d.updated_at, d.dead_at";

fn action_kind(row: &AnyRow) -> Result<ActionKind, QueryError> {
    let text: String = row.try_get("action")?;
    ActionKind::parse(&text).ok_or_else(|| QueryError::Corrupt(format!("action: `{text}`")))
}

fn action_from_row(row: &AnyRow) -> Result<ActionRow, QueryError> {
    Ok(ActionRow {
        action_id: row.try_get("action_id")?,
        action: action_kind(row)?,
        incident_id: row.try_get("incident_id")?,
        camera_id: row.try_get("camera_id")?,
        notes: row.try_get("notes")?,
        automatic: row.try_get::<i64, _>("automatic")? != 0,
        requested_by: row.try_get("requested_by")?,
        requested_at: time_col(row, "requested_at")?,
        targets: json_col(row, "targets")?,
        deliveries: vec![],
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow, QueryError> {
    let status: String = row.try_get("status")?;
    Ok(DeliveryRow {
        target: row.try_get("target")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| QueryError::Corrupt(format!("delivery status: `{status}`")))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        last_error: row.try_get("last_error")?,
        http_status: row
            .try_get::<Option<i64>, _>("http_status")?
            .map(|s| s as u16),
        updated_at: time_col(row, "updated_at")?,
        dead_at: opt_time_col(row, "dead_at")?,
    })
}

fn dlq_from_row(row: &AnyRow) -> Result<DlqRow, QueryError> {
    let action_id: String = row.try_get("action_id")?;
    let target: String = row.try_get("target")?;
    Ok(DlqRow {
        id: format!("{action_id}:{target}"),
        action: action_kind(row)?,
        incident_id: row.try_get("incident_id")?,
        camera_id: row.try_get("camera_id")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        last_error: row
            .try_get::<Option<String>, _>("last_error")?
            .unwrap_or_default(),
        dead_at: time_col(row, "dead_at")?,
        requested_at: time_col(row, "requested_at")?,
        action_id,
        target,
    })
}

/// Actions matching `condition` (SQL over `a.`) with their deliveries, in requested order.
async fn actions_where(
    pool: &AnyPool,
    condition: &str,
    value: &str,
) -> Result<Vec<ActionRow>, QueryError> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ACTION_COLUMNS} FROM actions a WHERE {condition} \
         ORDER BY a.requested_at, a.id"
    )))
    .bind(value)
    .fetch_all(&mut *conn)
    .await?;
    let mut actions = rows
        .iter()
        .map(action_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let deliveries = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM action_deliveries d \
         JOIN actions a ON a.id = d.action_id WHERE {condition} \
         ORDER BY d.action_id, d.target"
    )))
    .bind(value)
    .fetch_all(&mut *conn)
    .await?;
    for row in &deliveries {
        let action_id: String = row.try_get("action_id")?;
        if let Some(action) = actions.iter_mut().find(|a| a.action_id == action_id) {
            action.deliveries.push(delivery_from_row(row)?);
        }
    }
    Ok(actions)
}

/// One action by id, with its deliveries.
pub async fn get_action(pool: &AnyPool, id: &str) -> Result<Option<ActionRow>, QueryError> {
    Ok(actions_where(pool, "a.id = $1", id).await?.pop())
}

/// The actions taken for an incident, oldest first, with their deliveries.
pub async fn actions_of_incident(
    pool: &AnyPool,
    incident_id: &str,
) -> Result<Vec<ActionRow>, QueryError> {
    actions_where(pool, "a.incident_id = $1", incident_id).await
}

const DLQ_SELECT: &str = "SELECT d.action_id, d.target, d.attempts, d.last_error, d.dead_at, \
                          a.action, a.incident_id, a.camera_id, a.requested_at \
                          FROM action_deliveries d JOIN actions a ON a.id = d.action_id \
                          WHERE d.status = 'dead'";

/// A page of the dead-letter queue by `(dead_at, action_id, target)` in `order` (by when each
/// delivery died), and the cursor of the next page if there is one. A cursor this API did not
/// hand out is [`QueryError::Cursor`].
pub async fn list_dlq(
    pool: &AnyPool,
    order: crate::Order,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<DlqRow>, Option<String>), QueryError> {
    let mut b = SqlBuilder::new(DLQ_SELECT);
    if let Some(cursor) = cursor {
        let parts = decode_keyset("dlq", 3, cursor)?;
        parse_time(&parts[0]).map_err(|_| InvalidCursor)?;
        let [p1, p2, p3, p4, p5, p6] =
            [0, 0, 1, 0, 1, 2].map(|i| b.arg(Arg::Text(parts[i].clone())));
        let c = order.after();
        b.push(&format!(
            " AND (d.dead_at {c} {p1} OR (d.dead_at = {p2} AND d.action_id {c} {p3}) \
             OR (d.dead_at = {p4} AND d.action_id = {p5} AND d.target {c} {p6}))"
        ));
    }
    let p = b.arg(Arg::Int(i64::from(limit) + 1));
    let dir = order.sql();
    b.push(&format!(
        " ORDER BY d.dead_at {dir}, d.action_id {dir}, d.target {dir} LIMIT {p}"
    ));
    let mut conn = pool.acquire().await?;
    let mut page = b
        .fetch_all(&mut conn)
        .await?
        .iter()
        .map(dlq_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last()
            .map(|r| encode_keyset("dlq", &[&format_time(r.dead_at), &r.action_id, &r.target]))
    } else {
        None
    };
    Ok((page, next))
}

/// One dead-lettered delivery by its id (`{action_id}:{target}`); `None` when there is no such
/// delivery or it is not dead (delivered, requeued, discarded).
pub async fn get_dlq(pool: &AnyPool, id: &str) -> Result<Option<DlqRow>, QueryError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{DLQ_SELECT} AND d.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(dlq_from_row).transpose()
}

/// Every dead-lettered delivery as `(action_id, target)`, oldest first (for a purge).
pub async fn dlq_ids(pool: &AnyPool) -> Result<Vec<(String, String)>, QueryError> {
    let rows = sqlx::query(
        "SELECT action_id, target FROM action_deliveries WHERE status = 'dead' \
         ORDER BY dead_at, action_id, target",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("action_id")?, row.try_get("target")?)))
        .collect()
}

/// Deliveries by target and status (`pending`, `delivered`, `dead`, `discarded`), as
/// `(target, status, count)`.
pub async fn delivery_counts(pool: &AnyPool) -> Result<Vec<(String, String, u64)>, QueryError> {
    let rows = sqlx::query(
        "SELECT target, status, COUNT(*) AS n FROM action_deliveries \
         GROUP BY target, status ORDER BY target, status",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let n: i64 = row.try_get("n")?;
            Ok((row.try_get("target")?, row.try_get("status")?, n as u64))
        })
        .collect()
}

/// Projects action events into `actions` and `action_deliveries`.
pub struct ActionProjection;

#[async_trait]
impl Projection for ActionProjection {
    fn name(&self) -> &'static str {
        "actions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["actions", "action_deliveries"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded = ActionEvent::from_recorded(event).map_err(|e| ProjectionError::Apply {
            name: "actions".into(),
            position: event.position,
            reason: e.to_string(),
        })?;
        let Some(decoded) = decoded else {
            return Ok(());
        };
        let at = format_time(event.occurred_at);
        // Each later event moves one delivery; a delivery the read model does not hold (a
        // target the request did not name) changes nothing.
        let update = match decoded {
            ActionEvent::Requested(e) => {
                sqlx::query(
                    "INSERT INTO actions (id, action, incident_id, camera_id, notes, \
                     automatic, requested_by, requested_at, targets) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(e.action_id.clone())
                .bind(e.action.as_str())
                .bind(e.incident_id)
                .bind(e.camera_id)
                .bind(e.notes)
                .bind(i64::from(e.automatic))
                .bind(event.actor.clone())
                .bind(at.clone())
                .bind(to_json(&e.targets))
                .execute(&mut *conn)
                .await?;
                for target in &e.targets {
                    sqlx::query(
                        "INSERT INTO action_deliveries (id, action_id, target, status, \
                         attempts, last_error, http_status, updated_at, dead_at) \
                         VALUES ($1, $2, $3, 'pending', 0, NULL, NULL, $4, NULL) \
                         ON CONFLICT (action_id, target) DO NOTHING",
                    )
                    .bind(format!("{}:{target}", e.action_id))
                    .bind(e.action_id.clone())
                    .bind(target.clone())
                    .bind(at.clone())
                    .execute(&mut *conn)
                    .await?;
                }
                return Ok(());
            }
            ActionEvent::Succeeded(e) => sqlx::query(
                "UPDATE action_deliveries SET status = 'delivered', attempts = $1, \
                 last_error = NULL, http_status = $2, updated_at = $3 \
                 WHERE action_id = $4 AND target = $5",
            )
            .bind(i64::from(e.attempts))
            .bind(i64::from(e.status))
            .bind(at)
            .bind(e.action_id)
            .bind(e.target),
            ActionEvent::Failed(e) => sqlx::query(
                "UPDATE action_deliveries SET status = 'dead', attempts = $1, last_error = $2, \
                 dead_at = $3, updated_at = $4 WHERE action_id = $5 AND target = $6",
            )
            .bind(i64::from(e.attempts))
            .bind(e.error)
            .bind(at.clone())
            .bind(at)
            .bind(e.action_id)
            .bind(e.target),
            ActionEvent::Requeued(e) => sqlx::query(
                "UPDATE action_deliveries SET status = 'pending', updated_at = $1 \
                 WHERE action_id = $2 AND target = $3",
            )
            .bind(at)
            .bind(e.action_id)
            .bind(e.target),
            ActionEvent::Discarded(e) => sqlx::query(
                "UPDATE action_deliveries SET status = 'discarded', updated_at = $1 \
                 WHERE action_id = $2 AND target = $3",
            )
            .bind(at)
            .bind(e.action_id)
            .bind(e.target),
        };
        update.execute(&mut *conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::digest::table_digest;
    use crate::testing::{Log, apply, on_both, t};

    fn requested(
        log: &mut Log,
        id: &str,
        incident: Option<&str>,
        targets: &[&str],
        at: DateTime<Utc>,
    ) {
        let mut payload = json!({
            "action_id": id,
            "action": "alert_security",
            "notes": "go look",
            "targets": targets,
            "automatic": incident.is_none(),
            "camera_id": "cam-a",
        });
        if let Some(incident) = incident {
            payload["incident_id"] = json!(incident);
        }
        log.push(
            &format!("action-{id}"),
            "action.requested",
            at,
            "key:op",
            payload,
        );
    }

    fn on(
        log: &mut Log,
        id: &str,
        event_type: &str,
        target: &str,
        at: DateTime<Utc>,
        mut payload: serde_json::Value,
    ) {
        payload["action_id"] = json!(id);
        payload["target"] = json!(target);
        log.push(&format!("action-{id}"), event_type, at, "system", payload);
    }

    async fn dlq(pool: &AnyPool) -> Vec<String> {
        let (page, next) = list_dlq(pool, crate::Order::Asc, None, 100).await.unwrap();
        assert!(next.is_none());
        page.into_iter().map(|r| r.id).collect()
    }

    async fn deliveries_move_through_the_dead_letter_queue(pool: &AnyPool) {
        let mut log = Log::default();
        requested(
            &mut log,
            "a1",
            Some("i1"),
            &["guards", "vms"],
            t(6, 10, 0, 0),
        );
        apply(pool, &ActionProjection, &log.events).await;
        let a1 = get_action(pool, "a1").await.unwrap().expect("a1");
        assert_eq!(a1.action, ActionKind::AlertSecurity);
        assert_eq!(a1.incident_id.as_deref(), Some("i1"));
        assert_eq!(a1.camera_id.as_deref(), Some("cam-a"));
        assert_eq!(a1.requested_by, "key:op");
        assert_eq!(a1.requested_at, t(6, 10, 0, 0));
        assert!(!a1.automatic);
        assert_eq!(a1.targets, ["guards", "vms"]);
        assert_eq!(a1.deliveries.len(), 2);
        assert!(
            a1.deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0)
        );
        assert!(dlq(pool).await.is_empty());

        // Failed: dead-lettered.
        let mut more = Log {
            events: log.events.clone(),
        };
        on(
            &mut more,
            "a1",
            "action.failed",
            "guards",
            t(6, 10, 1, 0),
            json!({"attempts": 5, "error": "HTTP 503"}),
        );
        on(
            &mut more,
            "a1",
            "action.succeeded",
            "vms",
            t(6, 10, 1, 5),
            json!({"attempts": 2, "status": 202}),
        );
        apply(pool, &ActionProjection, &more.events[1..]).await;
        assert_eq!(dlq(pool).await, ["a1:guards"]);
        let dead = get_dlq(pool, "a1:guards").await.unwrap().expect("dead");
        assert_eq!(dead.action_id, "a1");
        assert_eq!(dead.target, "guards");
        assert_eq!(dead.attempts, 5);
        assert_eq!(dead.last_error, "HTTP 503");
        assert_eq!(dead.dead_at, t(6, 10, 1, 0));
        assert_eq!(dead.requested_at, t(6, 10, 0, 0));
        assert_eq!(dead.incident_id.as_deref(), Some("i1"));
        assert!(get_dlq(pool, "a1:vms").await.unwrap().is_none());
        assert!(get_dlq(pool, "nonsense").await.unwrap().is_none());
        let a1 = get_action(pool, "a1").await.unwrap().unwrap();
        let vms = a1.deliveries.iter().find(|d| d.target == "vms").unwrap();
        assert_eq!(vms.status, DeliveryStatus::Delivered);
        assert_eq!((vms.attempts, vms.http_status), (2, Some(202)));
        assert_eq!(vms.updated_at, t(6, 10, 1, 5));

        // Requeued: out of the queue, pending again; failing again puts it back.
        let n = more.events.len();
        on(
            &mut more,
            "a1",
            "action.requeued",
            "guards",
            t(6, 11, 0, 0),
            json!({}),
        );
        apply(pool, &ActionProjection, &more.events[n..]).await;
        assert!(dlq(pool).await.is_empty());
        let guards = get_action(pool, "a1")
            .await
            .unwrap()
            .unwrap()
            .deliveries
            .remove(0);
        assert_eq!(guards.status, DeliveryStatus::Pending);
        let n = more.events.len();
        on(
            &mut more,
            "a1",
            "action.failed",
            "guards",
            t(6, 11, 1, 0),
            json!({"attempts": 5, "error": "timed out"}),
        );
        apply(pool, &ActionProjection, &more.events[n..]).await;
        let dead = get_dlq(pool, "a1:guards")
            .await
            .unwrap()
            .expect("dead again");
        assert_eq!(
            (dead.last_error.as_str(), dead.dead_at),
            ("timed out", t(6, 11, 1, 0))
        );

        // Discarded: out of the queue for good.
        let n = more.events.len();
        on(
            &mut more,
            "a1",
            "action.discarded",
            "guards",
            t(6, 12, 0, 0),
            json!({}),
        );
        apply(pool, &ActionProjection, &more.events[n..]).await;
        assert!(dlq(pool).await.is_empty());
        assert!(dlq_ids(pool).await.unwrap().is_empty());
        let guards = get_action(pool, "a1")
            .await
            .unwrap()
            .unwrap()
            .deliveries
            .remove(0);
        assert_eq!(guards.status, DeliveryStatus::Discarded);

        // Rebuild: identical rows (ordered by `id`, as `vigil verify` does).
        let mut before = vec![];
        for table in ActionProjection.tables() {
            before.push(table_digest(pool, table, "id").await.unwrap());
        }
        for table in ActionProjection.tables() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(pool)
                .await
                .unwrap();
        }
        apply(pool, &ActionProjection, &more.events).await;
        let mut after = vec![];
        for table in ActionProjection.tables() {
            after.push(table_digest(pool, table, "id").await.unwrap());
        }
        assert_eq!(before, after);
        assert!(before[1].starts_with("2:"), "{}", before[1]);
    }

    async fn pages_the_queue_oldest_first(pool: &AnyPool) {
        let mut log = Log::default();
        requested(&mut log, "a1", Some("i1"), &["x", "y"], t(6, 10, 0, 0));
        requested(&mut log, "a2", Some("i1"), &["x"], t(6, 10, 0, 1));
        requested(&mut log, "a3", None, &["z"], t(6, 10, 0, 2));
        // a1's two targets die at the same moment; a3 dies first.
        on(
            &mut log,
            "a3",
            "action.failed",
            "z",
            t(6, 10, 1, 0),
            json!({"attempts": 1, "error": "e"}),
        );
        on(
            &mut log,
            "a1",
            "action.failed",
            "y",
            t(6, 10, 2, 0),
            json!({"attempts": 1, "error": "e"}),
        );
        on(
            &mut log,
            "a1",
            "action.failed",
            "x",
            t(6, 10, 2, 0),
            json!({"attempts": 1, "error": "e"}),
        );
        on(
            &mut log,
            "a2",
            "action.failed",
            "x",
            t(6, 10, 3, 0),
            json!({"attempts": 1, "error": "e"}),
        );
        apply(pool, &ActionProjection, &log.events).await;
        let expected = ["a3:z", "a1:x", "a1:y", "a2:x"];
        assert_eq!(dlq(pool).await, expected);
        for limit in [1, 3] {
            let (mut seen, mut cursor) = (vec![], None::<String>);
            loop {
                let (page, next) = list_dlq(pool, crate::Order::Asc, cursor.as_deref(), limit)
                    .await
                    .unwrap();
                seen.extend(page.into_iter().map(|r| r.id));
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "limit {limit}");
        }
        assert!(matches!(
            list_dlq(pool, crate::Order::Asc, Some("junk"), 1).await,
            Err(QueryError::Cursor(_))
        ));
        let ids = dlq_ids(pool).await.unwrap();
        assert_eq!(ids[0], ("a3".to_string(), "z".to_string()));
        assert_eq!(ids.len(), 4);

        let of_i1 = actions_of_incident(pool, "i1").await.unwrap();
        assert_eq!(
            of_i1
                .iter()
                .map(|a| a.action_id.as_str())
                .collect::<Vec<_>>(),
            ["a1", "a2"]
        );
        assert_eq!(
            of_i1[0]
                .deliveries
                .iter()
                .map(|d| d.target.as_str())
                .collect::<Vec<_>>(),
            ["x", "y"]
        );
        assert_eq!(of_i1[1].deliveries.len(), 1);
        assert!(actions_of_incident(pool, "i9").await.unwrap().is_empty());
        let a3 = get_action(pool, "a3").await.unwrap().unwrap();
        assert!(a3.automatic && a3.incident_id.is_none());
        assert!(get_action(pool, "a9").await.unwrap().is_none());
    }

    on_both!(
        deliveries_move_through_the_dead_letter_queue,
        pages_the_queue_oldest_first,
    );

    #[test]
    fn delivery_statuses_round_trip() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
    }
}
