//! The SQL toolkit every read model of the crate uses: queries built at run time with numbered
//! binds, time and JSON columns, keyset cursors, the camera restriction, and which backend a
//! connection speaks. Portable between SQLite and PostgreSQL (sqlx `Any`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::{InvalidCursor, QueryError};

/// A bind value of a query built at run time.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// SQL text with its numbered (`$n`) bind values.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    pub(crate) sql: String,
    args: Vec<Arg>,
}

impl SqlBuilder {
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: vec![],
        }
    }

    /// Adds a bind value and returns its placeholder.
    pub(crate) fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    pub(crate) fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    pub(crate) async fn fetch_all(
        self,
        conn: &mut AnyConnection,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for arg in self.args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
            };
        }
        q.fetch_all(conn).await
    }
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, QueryError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| QueryError::Corrupt(format!("time `{text}`: {e}")))
}

pub(crate) fn time_col(row: &AnyRow, name: &str) -> Result<DateTime<Utc>, QueryError> {
    parse_time(&row.try_get::<String, _>(name)?)
}

pub(crate) fn opt_time_col(row: &AnyRow, name: &str) -> Result<Option<DateTime<Utc>>, QueryError> {
    row.try_get::<Option<String>, _>(name)?
        .as_deref()
        .map(parse_time)
        .transpose()
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    name: &str,
) -> Result<T, QueryError> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| QueryError::Corrupt(format!("{name}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("read-model values are plain data and always serialise")
}

/// An opaque cursor: `{tag}:` and a JSON array of strings, base64url.
pub(crate) fn encode_keyset(tag: &str, parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{}", to_json(&parts)))
}

/// The strings of a cursor [`encode_keyset`] made with `tag` and `n` parts.
pub(crate) fn decode_keyset(
    tag: &str,
    n: usize,
    cursor: &str,
) -> Result<Vec<String>, InvalidCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
    let json = text
        .strip_prefix(tag)
        .and_then(|t| t.strip_prefix(':'))
        .ok_or(InvalidCursor)?;
    let parts: Vec<String> = serde_json::from_str(json).map_err(|_| InvalidCursor)?;
    if parts.len() != n || parts.iter().any(String::is_empty) {
        return Err(InvalidCursor);
    }
    Ok(parts)
}

/// Whether the connection is SQLite (otherwise PostgreSQL).
pub(crate) fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

pub(crate) fn enum_col<T>(
    row: &AnyRow,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, QueryError> {
    let text: String = row.try_get(name)?;
    parse(&text).ok_or_else(|| QueryError::Corrupt(format!("{name}: `{text}`")))
}

/// Adds `AND …` for the camera restriction; `false` when nothing can match.
pub(crate) fn push_visibility(
    b: &mut SqlBuilder,
    column: &str,
    only_cameras: Option<&[String]>,
) -> bool {
    let Some(ids) = only_cameras else {
        return true;
    };
    if ids.is_empty() {
        return false;
    }
    let list: Vec<String> = ids.iter().map(|id| b.arg(Arg::Text(id.clone()))).collect();
    b.push(&format!(" AND {column} IN ({})", list.join(", ")));
    true
}
