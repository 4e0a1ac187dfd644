//! The calibration read model (`calibration`: one row, id `global`) and its query.
//!
//! `calibration.changed` carries the whole document, so the row is simply the latest one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, AnyPool, Row};
use vigil_schemas::events::Calibration;
use vigil_schemas::{CalibrationEvent, DomainEvent, RecordedEvent};

use crate::error::QueryError;
use crate::format_time;
use crate::runner::{Projection, ProjectionError};
use crate::sql::{json_col, time_col, to_json};

/// The calibration in effect, the version of its stream (`calibration-global`; 0 before any
/// change, the HTTP ETag) and when it last changed (`None` before any change).
/// Before any `calibration.changed` it is [`Calibration::default`].
pub async fn get_calibration(
    pool: &AnyPool,
) -> Result<(Calibration, u64, Option<DateTime<Utc>>), QueryError> {
    let row =
        sqlx::query("SELECT document, version, updated_at FROM calibration WHERE id = 'global'")
            .fetch_optional(pool)
            .await?;
    match row {
        None => Ok((Calibration::default(), 0, None)),
        Some(row) => Ok((
            json_col(&row, "document")?,
            row.try_get::<i64, _>("version")? as u64,
            Some(time_col(&row, "updated_at")?),
        )),
    }
}

/// Projects `calibration.changed` into the `calibration` row.
pub struct CalibrationProjection;

#[async_trait]
impl Projection for CalibrationProjection {
    fn name(&self) -> &'static str {
        "calibration"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["calibration"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded =
            CalibrationEvent::from_recorded(event).map_err(|e| ProjectionError::Apply {
                name: "calibration".into(),
                position: event.position,
                reason: e.to_string(),
            })?;
        let Some(decoded) = decoded else {
            return Ok(());
        };
        let CalibrationEvent::Changed(e) = decoded;
        sqlx::query(
            "INSERT INTO calibration (id, document, version, updated_at, updated_by) \
             VALUES ('global', $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
             document = excluded.document, version = excluded.version, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(to_json(&e.calibration))
        .bind(event.stream_version as i64)
        .bind(format_time(event.occurred_at))
        .bind(event.actor.clone())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vigil_schemas::events::CalibrationOverrides;

    use super::*;
    use crate::testing::{Log, apply, on_both, t};

    async fn defaults_then_follows_changes(pool: &AnyPool) {
        let (calibration, version, at) = get_calibration(pool).await.unwrap();
        assert_eq!(calibration, Calibration::default());
        assert_eq!((version, at), (0, None));

        let mut changed = Calibration::default();
        changed.global.crowd_threshold = 9;
        changed.cameras.insert(
            "cam-a".into(),
            CalibrationOverrides {
                loitering_seconds: Some(15.5),
                ..Default::default()
            },
        );
        let mut log = Log::default();
        log.push(
            "calibration-global",
            "calibration.changed",
            t(6, 9, 0, 0),
            "key:admin",
            json!({
                "calibration": Calibration::default(), "change": "reset",
            }),
        );
        log.push(
            "calibration-global",
            "calibration.changed",
            t(6, 9, 30, 0),
            "key:admin",
            json!({
                "calibration": changed, "change": "patch",
            }),
        );
        apply(pool, &CalibrationProjection, &log.events).await;
        let (calibration, version, at) = get_calibration(pool).await.unwrap();
        assert_eq!(calibration, changed);
        assert_eq!(calibration.effective("cam-a").loitering_seconds, 15.5);
        assert_eq!((version, at), (2, Some(t(6, 9, 30, 0))));
        let by: String =
            sqlx::query_scalar("SELECT updated_by FROM calibration WHERE id = 'global'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(by, "key:admin");
    }

    on_both!(defaults_then_follows_changes);
}
