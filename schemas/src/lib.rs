//! Vigil's contracts, shared by every other crate and by downstream consumers.
//!
//! This crate owns the shapes that cross a boundary and must stay stable:
//! - [`envelope`]: the stored event envelope ([`RecordedEvent`]) and what a writer hands the store
//!   ([`NewEvent`]);
//! - [`events`]: the versioned domain events, their frozen type names, and upcasting from old
//!   versions;
//! - [`store`]: the [`EventStore`] trait every adapter implements, with its error type;
//! - [`json_schema`]: the JSON Schemas published for Kafka consumers (`schemas/json/`).
//!
//! It performs no I/O. The SQL migrations (`schemas/migrations/`) and golden fixtures
//! (`schemas/fixtures/`) live beside it as data.
#![deny(missing_docs)]

pub mod envelope;
pub mod events;
pub mod json_schema;
pub mod store;

pub use envelope::{EventMeta, NewEvent, RecordedEvent};
pub use events::{
    ActionEvent, AlertEvent, AnyEvent, ApiKeyEvent, AppearanceEvent, CalibrationEvent, CameraEvent,
    ClipEvent, DomainEvent, EventDecodeError, IncidentEvent, SubjectEvent,
};
pub use store::{
    AppendOutcome, Direction, EventStore, EventSubscription, ExpectedVersion, StoreError,
};

/// The SQL migrations, in the order they apply: `(version, name, sql)`.
///
/// The SQL is portable between SQLite and PostgreSQL (BIGINT, TEXT, DOUBLE PRECISION,
/// `ON CONFLICT`), so one list serves both backends. The few statements that cannot be
/// portable (full-text search) sit in sections for one dialect; a migrator runs
/// [`migration_sql`] on each before executing it.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "event_store",
        include_str!("../migrations/0001_event_store.sql"),
    ),
    (
        2,
        "read_models",
        include_str!("../migrations/0002_read_models.sql"),
    ),
    (
        3,
        "api_keys",
        include_str!("../migrations/0003_api_keys.sql"),
    ),
    (
        4,
        "events_by_recorded_at",
        include_str!("../migrations/0004_events_by_recorded_at.sql"),
    ),
    (
        5,
        "camera_status",
        include_str!("../migrations/0005_camera_status.sql"),
    ),
    (
        6,
        "incidents",
        include_str!("../migrations/0006_incidents.sql"),
    ),
    (
        7,
        "subjects",
        include_str!("../migrations/0007_subjects.sql"),
    ),
    (8, "vectors", include_str!("../migrations/0008_vectors.sql")),
    (
        9,
        "recorded_at",
        include_str!("../migrations/0009_recorded_at.sql"),
    ),
    (10, "clips", include_str!("../migrations/0010_clips.sql")),
    (
        11,
        "clip_tracks",
        include_str!("../migrations/0011_clip_tracks.sql"),
    ),
    (
        12,
        "cluster",
        include_str!("../migrations/0012_cluster.sql"),
    ),
];

/// The SQL databases Vigil's migrations serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlDialect {
    /// SQLite (the embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl SqlDialect {
    /// The name a migration's `-- dialect:` marker uses for it.
    pub fn marker_name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The part of a migration's SQL that `dialect` runs.
///
/// A line `-- dialect: sqlite`, `-- dialect: postgres` or `-- dialect: all` starts a section;
/// the lines up to the next marker belong to that dialect (or to every dialect). Lines before
/// the first marker belong to every dialect. The lines of other dialects' sections are blanked
/// (kept as empty lines, so line numbers in a database's error still match the file). A
/// marker naming no known dialect keeps its section from every dialect.
pub fn migration_sql(sql: &str, dialect: SqlDialect) -> String {
    let mut keep = true;
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        if let Some(name) = line.trim().strip_prefix("-- dialect:") {
            let name = name.trim();
            keep = name == "all" || name == dialect.marker_name();
            out.push('\n');
            continue;
        }
        if keep {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_sections_keep_their_lines_only() {
        let sql = "CREATE TABLE a (x BIGINT);\n\
                   -- dialect: sqlite\n\
                   CREATE VIRTUAL TABLE f USING fts5(body);\n\
                   -- dialect: postgres\n\
                   CREATE INDEX g ON a USING GIN (x);\n\
                   -- dialect: all\n\
                   CREATE TABLE b (y TEXT);\n";
        let sqlite = migration_sql(sql, SqlDialect::Sqlite);
        let postgres = migration_sql(sql, SqlDialect::Postgres);
        for text in [&sqlite, &postgres] {
            assert!(text.contains("CREATE TABLE a"));
            assert!(text.contains("CREATE TABLE b"));
            assert_eq!(text.lines().count(), sql.lines().count());
            assert!(!text.contains("dialect:"));
        }
        assert!(sqlite.contains("fts5") && !sqlite.contains("USING GIN"));
        assert!(postgres.contains("USING GIN") && !postgres.contains("fts5"));
        // No marker: everything is common.
        assert_eq!(
            migration_sql("SELECT 1;", SqlDialect::Postgres),
            "SELECT 1;\n"
        );
        // An unknown dialect's section runs nowhere.
        let odd = migration_sql("-- dialect: mysql\nSELECT 2;\n", SqlDialect::Sqlite);
        assert!(!odd.contains("SELECT 2"));
    }

    #[test]
    fn migrations_only_name_known_dialects() {
        for (version, _, sql) in MIGRATIONS {
            for line in sql.lines() {
                if let Some(name) = line.trim().strip_prefix("-- dialect:") {
                    assert!(
                        matches!(name.trim(), "all" | "sqlite" | "postgres"),
                        "migration {version} names dialect `{}`",
                        name.trim()
                    );
                }
            }
        }
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
