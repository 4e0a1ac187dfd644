//! A digest of a table's rows, to prove a rebuilt read model equals the live one.

use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Column, Row};

/// SHA-256 over every row of `table` in `order_by` order, every column rendered as text.
pub async fn table_digest(
    pool: &AnyPool,
    table: &str,
    order_by: &str,
) -> Result<String, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM {table} ORDER BY {order_by}"
    )))
    .fetch_all(pool)
    .await?;
    let mut hasher = Sha256::new();
    for row in &rows {
        for (i, column) in row.columns().iter().enumerate() {
            hasher.update(column.name().as_bytes());
            hasher.update(b"=");
            let text = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                format!("{v:?}")
            } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                format!("{v:?}")
            } else {
                format!("{:?}", row.try_get::<Option<f64>, _>(i)?)
            };
            hasher.update(text.as_bytes());
            hasher.update(b"\x1f");
        }
        hasher.update(b"\x1e");
    }
    Ok(format!("{}:{}", rows.len(), hex::encode(hasher.finalize())))
}
