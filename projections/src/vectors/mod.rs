//! Lance vector tables and the `vectors` projection that builds them.
//!
//! Two tables live under one directory (by default `{data_dir}/lance`), each a Lance dataset:
//!
//! - `subject_faces`: one row per enrolled face (`face_id`, `subject_id`, `category`, `crop`,
//!   `added_us`, `embedding`), from `subject.enrolled` / `subject.faces_added`; a category
//!   change rewrites the subject's rows; `subject.erased` deletes them and then compacts the
//!   table and removes old versions, so the descriptors are gone from disk, not only hidden.
//! - `appearances`: one row per track that showed a face (`appearance_id` = the track's stream,
//!   camera, track, first/last sighting, dwell, zones, entry/exit frames, best face crop and
//!   its `embedding`), from `appearance.ended`; the entry frame comes from `appearance.started`
//!   through the `track_entries` SQL table.
//!
//! Writes are `merge_insert` keyed by the row id (or deletes), so applying a batch twice leaves
//! the same rows: the runner applies a batch here before it commits the checkpoint, and a
//! crash in between replays the batch. A rebuild deletes both datasets and replays.
//!
//! Search is exact (a flat scan) until a table holds [`VectorConfig::ann_min_rows`] rows; then an
//! IVF-PQ index is built, and refreshed (`optimize_indices`) once a tenth of the rows are not
//! in it; queries probe [`VectorConfig::nprobes`] partitions and re-rank
//! [`VectorConfig::refine`] × k candidates by exact distance. `vigil bench search` measures
//! both against FAISS.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lance::Dataset;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::optimize::{CompactionOptions, compact_files};
use lance::dataset::{
    MergeInsertBuilder, UpdateBuilder, WhenMatched, WhenNotMatched, WriteMode, WriteParams,
};
use lance::deps::arrow_array::cast::AsArray;
use lance::deps::arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, Int64Type, UInt32Type,
};
use lance::deps::arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch,
    RecordBatchIterator, StringArray, UInt32Array,
};
use lance::deps::arrow_schema::{DataType, Field, Schema, SchemaRef};
use lance::index::DatasetIndexExt;
use lance::index::vector::VectorIndexParams;
use lance::io::{
    ObjectStore as LanceObjectStore, ObjectStoreParams, ObjectStoreRegistry, StorageOptionsAccessor,
};
use lance_index::IndexType;
use lance_index::optimize::OptimizeOptions;
use lance_linalg::distance::MetricType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use tokio::sync::{Mutex, RwLock};
use vigil_schemas::events::{FrameRef, SubjectCategory, ZoneVisit, track_stream};
use vigil_schemas::{AppearanceEvent, DomainEvent, RecordedEvent, SubjectEvent};

use crate::runner::{Projection, ProjectionError};

/// Length of a face descriptor (dlib ResNet).
pub const DIM: usize = 128;
/// The projection's name (and checkpoint key).
pub const NAME: &str = "vectors";
/// The name of the ANN index on each table's `embedding` column.
const INDEX_NAME: &str = "embedding_ivf_pq";
/// Fragments a table may have before it is compacted.
const MAX_FRAGMENTS: usize = 32;
/// How long superseded versions stay readable after a compaction (searches that started on
/// them finish).
const KEEP_VERSIONS: chrono::Duration = chrono::Duration::minutes(10);

/// A failure of a Lance table.
#[derive(Debug, thiserror::Error)]
#[error("Lance table `{table}`: {reason}")]
pub struct VectorError {
    /// The table.
    pub table: &'static str,
    /// What went wrong.
    pub reason: String,
}

impl From<VectorError> for ProjectionError {
    fn from(e: VectorError) -> Self {
        ProjectionError::Outside {
            name: NAME.into(),
            reason: e.to_string(),
        }
    }
}

/// When tables get an ANN index and how it is searched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorConfig {
    /// Rows from which a table gets an IVF-PQ index; below, search is exact.
    pub ann_min_rows: usize,
    /// IVF partitions probed per query.
    pub nprobes: usize,
    /// Candidates re-ranked by exact distance, as a multiple of k.
    pub refine: u32,
}

impl Default for VectorConfig {
    fn default() -> Self {
        Self {
            ann_min_rows: 50_000,
            nprobes: 32,
            refine: 10,
        }
    }
}

/// IVF partitions for `rows` vectors: about √rows, at least 1, at most 4096.
pub fn ivf_partitions(rows: usize) -> usize {
    ((rows as f64).sqrt().round() as usize).clamp(1, 4096)
}

/// IVF-PQ parameters Vigil uses for `rows` 128-d vectors: √rows partitions, 16 sub-vectors
/// of 8 dimensions, 8-bit codes, L2.
pub fn ivf_pq_params(rows: usize) -> VectorIndexParams {
    VectorIndexParams::ivf_pq(ivf_partitions(rows), 8, 16, MetricType::L2, 50)
}

/// One row of `subject_faces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceRow {
    /// The face's id (key).
    pub face_id: String,
    /// Its subject.
    pub subject_id: String,
    /// `authorised` or `watchlist`.
    pub category: String,
    /// SHA-256 of the face crop in the media store.
    pub crop: String,
    /// When it was enrolled (µs since the epoch).
    pub added_us: i64,
    /// The descriptor.
    pub embedding: Vec<f32>,
}

/// One row of `appearances`: a track whose best face has a descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppearanceRow {
    /// The track's stream, `track-{camera}-{track}` (key).
    pub appearance_id: String,
    /// The camera.
    pub camera_id: String,
    /// The track.
    pub track_id: String,
    /// First sighting (µs since the epoch).
    pub start_us: i64,
    /// Last sighting (µs since the epoch).
    pub end_us: i64,
    /// Seconds between them.
    pub dwell_seconds: f64,
    /// Sampled frames the person was in.
    pub frames: u32,
    /// JSON array of [`ZoneVisit`].
    pub zones: String,
    /// JSON [`FrameRef`] of the entry frame, when its `appearance.started` was seen.
    pub entry_frame: Option<String>,
    /// JSON [`FrameRef`] of the exit frame.
    pub exit_frame: String,
    /// SHA-256 of the best face crop in the media store.
    pub face_crop: String,
    /// Its detector confidence.
    pub face_score: f32,
    /// When the best face was seen (µs since the epoch).
    pub face_at_us: i64,
    /// The best face's descriptor.
    pub embedding: Vec<f32>,
}

impl AppearanceRow {
    /// The zones entered, in order.
    pub fn zone_visits(&self) -> Vec<ZoneVisit> {
        serde_json::from_str(&self.zones).unwrap_or_default()
    }

    /// The entry frame.
    pub fn entry(&self) -> Option<FrameRef> {
        self.entry_frame
            .as_deref()
            .and_then(|f| serde_json::from_str(f).ok())
    }

    /// The exit frame.
    pub fn exit(&self) -> Option<FrameRef> {
        serde_json::from_str(&self.exit_frame).ok()
    }
}

/// Microseconds since the epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The time at `us` microseconds since the epoch.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

mod arrow;
mod projection;
mod store;
mod table;

pub use arrow::*;
pub use projection::*;
pub use store::*;
pub(crate) use table::*;

/// How a search ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMethod {
    /// A flat scan: exact distances.
    Exact,
    /// The IVF-PQ index, re-ranked by exact distance.
    IvfPq,
}

impl SearchMethod {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::IvfPq => "ivf_pq",
        }
    }
}

/// A search's hits, nearest first, and what it searched.
#[derive(Debug, Clone)]
pub struct Found<T> {
    /// `(row, Euclidean distance)`, nearest first.
    pub hits: Vec<(T, f64)>,
    /// Rows the search ran over (the filtered rows, or the whole table with an index).
    pub vectors: usize,
    /// Exact or through the index.
    pub method: SearchMethod,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut v: Vec<f32> = (0..DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) - 0.5
            })
            .collect();
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= norm);
        v
    }

    fn face(id: &str, subject: &str, seed: u32) -> FaceRow {
        FaceRow {
            face_id: id.into(),
            subject_id: subject.into(),
            category: "watchlist".into(),
            crop: format!("crop-{id}"),
            added_us: 1_000 + seed as i64,
            embedding: vector(seed),
        }
    }

    fn appearance(id: &str, camera: &str, start_s: i64, seed: u32) -> AppearanceRow {
        AppearanceRow {
            appearance_id: id.into(),
            camera_id: camera.into(),
            track_id: id.into(),
            start_us: start_s * 1_000_000,
            end_us: (start_s + 10) * 1_000_000,
            dwell_seconds: 10.0,
            frames: 20,
            zones: "[]".into(),
            entry_frame: None,
            exit_frame: "{}".into(),
            face_crop: "c".into(),
            face_score: 0.9,
            face_at_us: start_s * 1_000_000,
            embedding: vector(seed),
        }
    }

    #[tokio::test]
    async fn upserts_are_idempotent_and_erasure_removes_the_rows_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = VectorStore::new(dir.path(), VectorConfig::default());
        let changes = vec![
            Change::Face(face("f1", "s1", 1)),
            Change::Face(face("f2", "s1", 2)),
            Change::Face(face("f3", "s2", 3)),
        ];
        store.apply(changes.clone()).await.unwrap();
        let once = store.digests().await.unwrap();
        store.apply(changes).await.unwrap();
        assert_eq!(
            store.digests().await.unwrap(),
            once,
            "applying twice changes nothing"
        );
        assert_eq!(store.all_faces().await.unwrap().len(), 3);

        store
            .apply(vec![Change::Category {
                subject_id: "s1".into(),
                category: "authorised".into(),
            }])
            .await
            .unwrap();
        let cats: Vec<_> = store
            .all_faces()
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.face_id, f.category))
            .collect();
        assert_eq!(
            cats,
            [
                ("f1".to_string(), "authorised".to_string()),
                ("f2".into(), "authorised".into()),
                ("f3".into(), "watchlist".into())
            ]
        );

        store
            .apply(vec![Change::Erase {
                subject_id: "s1".into(),
            }])
            .await
            .unwrap();
        let left: Vec<_> = store
            .all_faces()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.face_id)
            .collect();
        assert_eq!(left, ["f3"]);
        // Only the latest version is left, and its data files hold only f3: the erased
        // descriptors are not on disk any more.
        let versions: Vec<String> =
            std::fs::read_dir(dir.path().join("subject_faces.lance/_versions"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".manifest"))
                .collect();
        assert_eq!(
            versions.len(),
            1,
            "old versions are removed after an erasure: {versions:?}"
        );
        let needle: Vec<u8> = vector(1)[..4]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for entry in walk(&dir.path().join("subject_faces.lance")) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{} still holds an erased descriptor",
                entry.display()
            );
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[tokio::test]
    async fn nearest_search_filters_by_time_and_camera_exact_and_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let config = VectorConfig {
            ann_min_rows: 300,
            ..Default::default()
        };
        let store = VectorStore::new(dir.path(), config);
        let rows: Vec<Change> = (0..200)
            .map(|i| {
                Change::Appearance(appearance(
                    &format!("a{i:03}"),
                    if i % 2 == 0 { "north" } else { "south" },
                    i as i64 * 100,
                    i,
                ))
            })
            .collect();
        store.apply(rows).await.unwrap();
        let q = vector(42);
        let all = store
            .nearest_appearances(&q, 3, &AppearanceFilter::default())
            .await
            .unwrap();
        assert_eq!(all.method, SearchMethod::Exact);
        assert_eq!(all.vectors, 200);
        assert_eq!(all.hits[0].0.appearance_id, "a042");
        assert!(all.hits[0].1 < 1e-3, "{}", all.hits[0].1);
        assert!(all.hits[1].1 >= all.hits[0].1);

        // a042 spans 4200–4210 s; a range that ends before it or cameras without it miss it.
        let before = AppearanceFilter {
            end: Some(from_micros(4_100 * 1_000_000)),
            ..Default::default()
        };
        let found = store.nearest_appearances(&q, 3, &before).await.unwrap();
        assert!(found.hits.iter().all(|(r, _)| r.start_us <= 4_100_000_000));
        assert!(found.hits.iter().all(|(r, _)| r.appearance_id != "a042"));
        assert_eq!(found.vectors, 42);
        let south = AppearanceFilter {
            camera_ids: Some(vec!["south".into(), "it's".into()]),
            ..Default::default()
        };
        let found = store.nearest_appearances(&q, 5, &south).await.unwrap();
        assert_eq!(found.vectors, 100);
        assert!(found.hits.iter().all(|(r, _)| r.camera_id == "south"));
        let window = AppearanceFilter {
            start: Some(from_micros(4_205 * 1_000_000)),
            end: Some(from_micros(4_206 * 1_000_000)),
            camera_ids: Some(vec!["north".into()]),
        };
        let found = store.nearest_appearances(&q, 5, &window).await.unwrap();
        assert_eq!(found.hits.len(), 1);
        assert_eq!(found.hits[0].0.appearance_id, "a042");

        // Past the threshold the table gets an index and search goes through it.
        let more: Vec<Change> = (200..400)
            .map(|i| {
                Change::Appearance(appearance(&format!("a{i:03}"), "north", i as i64 * 100, i))
            })
            .collect();
        store.apply(more).await.unwrap();
        let indexed = store
            .nearest_appearances(&q, 3, &AppearanceFilter::default())
            .await
            .unwrap();
        assert_eq!(indexed.method, SearchMethod::IvfPq);
        assert_eq!(indexed.vectors, 400);
        assert_eq!(indexed.hits[0].0.appearance_id, "a042");
        assert!(indexed.hits[0].1 < 1e-3, "refined distances are exact");
    }
}
