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

/// The `embedding` column: 128 float32 values per row.
pub fn embedding_field() -> Field {
    Field::new(
        "embedding",
        DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, true)),
            DIM as i32,
        ),
        false,
    )
}

fn faces_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("face_id", DataType::Utf8, false),
        Field::new("subject_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("crop", DataType::Utf8, false),
        Field::new("added_us", DataType::Int64, false),
        embedding_field(),
    ]))
}

fn appearances_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("appearance_id", DataType::Utf8, false),
        Field::new("camera_id", DataType::Utf8, false),
        Field::new("track_id", DataType::Utf8, false),
        Field::new("start_us", DataType::Int64, false),
        Field::new("end_us", DataType::Int64, false),
        Field::new("dwell_seconds", DataType::Float64, false),
        Field::new("frames", DataType::UInt32, false),
        Field::new("zones", DataType::Utf8, false),
        Field::new("entry_frame", DataType::Utf8, true),
        Field::new("exit_frame", DataType::Utf8, false),
        Field::new("face_crop", DataType::Utf8, false),
        Field::new("face_score", DataType::Float32, false),
        Field::new("face_at_us", DataType::Int64, false),
        embedding_field(),
    ]))
}

/// A column of fixed-size 128-d vectors.
pub fn embedding_array(vectors: &[Vec<f32>]) -> Result<FixedSizeListArray, String> {
    let mut flat = Vec::with_capacity(vectors.len() * DIM);
    for v in vectors {
        if v.len() != DIM {
            return Err(format!("a descriptor has {} values, not {DIM}", v.len()));
        }
        flat.extend_from_slice(v);
    }
    embedding_array_flat(flat)
}

/// A column of fixed-size 128-d vectors from their concatenation.
pub fn embedding_array_flat(flat: Vec<f32>) -> Result<FixedSizeListArray, String> {
    FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        DIM as i32,
        Arc::new(Float32Array::from(flat)),
        None,
    )
    .map_err(|e| e.to_string())
}

/// A Lance record batch of `schema` from `columns`.
fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, String> {
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

fn faces_batch(rows: &[FaceRow]) -> Result<RecordBatch, String> {
    let strings = |f: fn(&FaceRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let embeddings: Vec<Vec<f32>> = rows.iter().map(|r| r.embedding.clone()).collect();
    batch(
        &faces_schema(),
        vec![
            strings(|r| &r.face_id),
            strings(|r| &r.subject_id),
            strings(|r| &r.category),
            strings(|r| &r.crop),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.added_us),
            )),
            Arc::new(embedding_array(&embeddings)?),
        ],
    )
}

fn appearances_batch(rows: &[AppearanceRow]) -> Result<RecordBatch, String> {
    let strings = |f: fn(&AppearanceRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let ints = |f: fn(&AppearanceRow) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    let embeddings: Vec<Vec<f32>> = rows.iter().map(|r| r.embedding.clone()).collect();
    batch(
        &appearances_schema(),
        vec![
            strings(|r| &r.appearance_id),
            strings(|r| &r.camera_id),
            strings(|r| &r.track_id),
            ints(|r| r.start_us),
            ints(|r| r.end_us),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.dwell_seconds),
            )),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.frames))),
            strings(|r| &r.zones),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.entry_frame.as_deref()),
            )),
            strings(|r| &r.exit_frame),
            strings(|r| &r.face_crop),
            Arc::new(Float32Array::from_iter_values(
                rows.iter().map(|r| r.face_score),
            )),
            ints(|r| r.face_at_us),
            Arc::new(embedding_array(&embeddings)?),
        ],
    )
}

/// Reads columns of a batch by name.
struct Columns<'a>(&'a RecordBatch);

impl Columns<'_> {
    fn col(&self, name: &str) -> Result<&ArrayRef, String> {
        self.0
            .column_by_name(name)
            .ok_or_else(|| format!("no column `{name}`"))
    }

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>, String> {
        let col = self.col(name)?;
        let a = col
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column `{name}` is not text"))?;
        Ok((0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
            .collect())
    }

    fn texts(&self, name: &str) -> Result<Vec<String>, String> {
        Ok(self
            .strings(name)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    fn prims<T: ArrowPrimitiveType>(&self, name: &str) -> Result<Vec<T::Native>, String> {
        let a = self
            .col(name)?
            .as_primitive_opt::<T>()
            .ok_or_else(|| format!("column `{name}` is not {}", T::DATA_TYPE))?;
        Ok(a.values().to_vec())
    }

    fn vectors(&self, name: &str) -> Result<Vec<Vec<f32>>, String> {
        let a = self
            .col(name)?
            .as_fixed_size_list_opt()
            .ok_or_else(|| format!("column `{name}` is not a vector"))?;
        (0..a.len())
            .map(|i| {
                let item = a.value(i);
                item.as_primitive_opt::<Float32Type>()
                    .map(|v| v.values().to_vec())
                    .ok_or_else(|| format!("column `{name}` does not hold float32"))
            })
            .collect()
    }

    /// `_distance` (squared L2) as a distance.
    fn distances(&self) -> Result<Vec<f64>, String> {
        Ok(self
            .prims::<Float32Type>("_distance")?
            .into_iter()
            .map(|d| f64::from(d.max(0.0)).sqrt())
            .collect())
    }
}

fn face_rows(b: &RecordBatch) -> Result<Vec<FaceRow>, String> {
    let c = Columns(b);
    let (ids, subjects, categories, crops, added, embeddings) = (
        c.texts("face_id")?,
        c.texts("subject_id")?,
        c.texts("category")?,
        c.texts("crop")?,
        c.prims::<Int64Type>("added_us")?,
        c.vectors("embedding")?,
    );
    Ok(ids
        .into_iter()
        .zip(subjects)
        .zip(categories)
        .zip(crops)
        .zip(added)
        .zip(embeddings)
        .map(
            |(((((face_id, subject_id), category), crop), added_us), embedding)| FaceRow {
                face_id,
                subject_id,
                category,
                crop,
                added_us,
                embedding,
            },
        )
        .collect())
}

fn appearance_rows(b: &RecordBatch) -> Result<Vec<AppearanceRow>, String> {
    let c = Columns(b);
    let ids = c.texts("appearance_id")?;
    let cameras = c.texts("camera_id")?;
    let tracks = c.texts("track_id")?;
    let starts = c.prims::<Int64Type>("start_us")?;
    let ends = c.prims::<Int64Type>("end_us")?;
    let dwell = c.prims::<Float64Type>("dwell_seconds")?;
    let frames = c.prims::<UInt32Type>("frames")?;
    let zones = c.texts("zones")?;
    let entries = c.strings("entry_frame")?;
    let exits = c.texts("exit_frame")?;
    let crops = c.texts("face_crop")?;
    let scores = c.prims::<Float32Type>("face_score")?;
    let face_at = c.prims::<Int64Type>("face_at_us")?;
    let embeddings = c.vectors("embedding")?;
    let mut rows = Vec::with_capacity(ids.len());
    for (i, appearance_id) in ids.into_iter().enumerate() {
        rows.push(AppearanceRow {
            appearance_id,
            camera_id: cameras[i].clone(),
            track_id: tracks[i].clone(),
            start_us: starts[i],
            end_us: ends[i],
            dwell_seconds: dwell[i],
            frames: frames[i],
            zones: zones[i].clone(),
            entry_frame: entries[i].clone(),
            exit_frame: exits[i].clone(),
            face_crop: crops[i].clone(),
            face_score: scores[i],
            face_at_us: face_at[i],
            embedding: embeddings[i].clone(),
        });
    }
    Ok(rows)
}

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

/// One Lance dataset.
struct Table {
    name: &'static str,
    key: &'static str,
    uri: String,
    schema: SchemaRef,
    dataset: RwLock<Option<Dataset>>,
}

impl Table {
    fn new(root: &Path, name: &'static str, key: &'static str, schema: SchemaRef) -> Self {
        Self {
            name,
            key,
            uri: root.join(format!("{name}.lance")).display().to_string(),
            schema,
            dataset: RwLock::new(None),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> VectorError {
        VectorError {
            table: self.name,
            reason: e.to_string(),
        }
    }

    fn exists(&self) -> bool {
        Path::new(&self.uri).join("_versions").is_dir()
    }

    /// The latest version of the dataset, or `None` when it was never written.
    async fn latest(&self) -> Result<Option<Dataset>, VectorError> {
        {
            let cached = self.dataset.read().await;
            if let Some(ds) = cached.as_ref() {
                let latest = ds.latest_version_id().await.map_err(|e| self.err(e))?;
                if latest == ds.version().version {
                    return Ok(Some(ds.clone()));
                }
            }
        }
        let mut cached = self.dataset.write().await;
        match cached.as_mut() {
            Some(ds) => ds.checkout_latest().await.map_err(|e| self.err(e))?,
            None if self.exists() => {
                *cached = Some(Dataset::open(&self.uri).await.map_err(|e| self.err(e))?)
            }
            None => return Ok(None),
        }
        Ok(cached.clone())
    }

    async fn remember(&self, ds: Dataset) {
        *self.dataset.write().await = Some(ds);
    }

    /// Inserts `batch`, replacing rows with the same key.
    async fn upsert(&self, batch: RecordBatch) -> Result<(), VectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let reader = RecordBatchIterator::new(vec![Ok(batch)], self.schema.clone());
        let ds = match self.latest().await? {
            None => Dataset::write(
                reader,
                self.uri.as_str(),
                Some(WriteParams {
                    mode: WriteMode::Create,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| self.err(e))?,
            Some(ds) => {
                let job = MergeInsertBuilder::try_new(Arc::new(ds), vec![self.key.to_string()])
                    .map_err(|e| self.err(e))?
                    .when_matched(WhenMatched::UpdateAll)
                    .when_not_matched(WhenNotMatched::InsertAll)
                    .try_build()
                    .map_err(|e| self.err(e))?;
                let (ds, _) = job.execute_reader(reader).await.map_err(|e| self.err(e))?;
                Arc::unwrap_or_clone(ds)
            }
        };
        self.remember(ds).await;
        Ok(())
    }

    /// Deletes the rows `predicate` selects.
    async fn delete(&self, predicate: &str) -> Result<(), VectorError> {
        let Some(mut ds) = self.latest().await? else {
            return Ok(());
        };
        ds.delete(predicate).await.map_err(|e| self.err(e))?;
        self.remember(ds).await;
        Ok(())
    }

    /// Sets `column` to the SQL literal `value` in the rows `predicate` selects.
    async fn update(&self, predicate: &str, column: &str, value: &str) -> Result<(), VectorError> {
        let Some(ds) = self.latest().await? else {
            return Ok(());
        };
        let result = UpdateBuilder::new(Arc::new(ds))
            .update_where(predicate)
            .and_then(|b| b.set(column, value))
            .and_then(|b| b.build())
            .map_err(|e| self.err(e))?
            .execute()
            .await
            .map_err(|e| self.err(e))?;
        self.remember(Arc::unwrap_or_clone(result.new_dataset))
            .await;
        Ok(())
    }

    /// Rewrites fragments that hold deleted rows and removes every older version's files, so
    /// deleted rows leave the disk.
    async fn purge(&self) -> Result<(), VectorError> {
        let Some(mut ds) = self.latest().await? else {
            return Ok(());
        };
        let options = CompactionOptions {
            materialize_deletions: true,
            materialize_deletions_threshold: 0.0,
            ..Default::default()
        };
        compact_files(&mut ds, options, None)
            .await
            .map_err(|e| self.err(e))?;
        ds.cleanup_old_versions(chrono::Duration::zero(), Some(true), None)
            .await
            .map_err(|e| self.err(e))?;
        self.remember(ds).await;
        Ok(())
    }

    /// Every write adds a fragment and a version: past [`MAX_FRAGMENTS`] fragments, merges them
    /// and drops versions older than [`KEEP_VERSIONS`], so a long-running table stays compact.
    async fn tidy(&self) -> Result<(), VectorError> {
        let Some(mut ds) = self.latest().await? else {
            return Ok(());
        };
        if ds.get_fragments().len() <= MAX_FRAGMENTS {
            return Ok(());
        }
        compact_files(&mut ds, CompactionOptions::default(), None)
            .await
            .map_err(|e| self.err(e))?;
        ds.cleanup_old_versions(KEEP_VERSIONS, None, None)
            .await
            .map_err(|e| self.err(e))?;
        self.remember(ds).await;
        Ok(())
    }

    /// Builds the IVF-PQ index once the table holds `min_rows` rows; refreshes it once a tenth
    /// of the rows are outside it.
    async fn maintain_index(&self, min_rows: usize) -> Result<(), VectorError> {
        let Some(mut ds) = self.latest().await? else {
            return Ok(());
        };
        let rows = ds.count_rows(None).await.map_err(|e| self.err(e))?;
        if rows < min_rows.max(256) {
            return Ok(());
        }
        if !self.indexed(&ds).await? {
            tracing::info!(table = self.name, rows, "building the IVF-PQ index");
            ds.create_index(
                &["embedding"],
                IndexType::IvfPq,
                Some(INDEX_NAME.into()),
                &ivf_pq_params(rows),
                true,
            )
            .await
            .map_err(|e| self.err(e))?;
        } else {
            let stats = ds
                .index_statistics(INDEX_NAME)
                .await
                .map_err(|e| self.err(e))?;
            let unindexed = serde_json::from_str::<serde_json::Value>(&stats)
                .ok()
                .and_then(|s| s["num_unindexed_rows"].as_u64())
                .unwrap_or(0) as usize;
            if unindexed * 10 < rows {
                return Ok(());
            }
            tracing::info!(
                table = self.name,
                rows,
                unindexed,
                "refreshing the IVF-PQ index"
            );
            ds.optimize_indices(&OptimizeOptions::append())
                .await
                .map_err(|e| self.err(e))?;
        }
        self.remember(ds).await;
        Ok(())
    }

    async fn indexed(&self, ds: &Dataset) -> Result<bool, VectorError> {
        let indices = ds.load_indices().await.map_err(|e| self.err(e))?;
        Ok(indices.iter().any(|i| i.name == INDEX_NAME))
    }

    /// The rows `filter` selects (all without one), parsed by `parse`, ordered by `key`.
    async fn rows<T, K: Ord>(
        &self,
        filter: Option<&str>,
        parse: fn(&RecordBatch) -> Result<Vec<T>, String>,
        key: fn(&T) -> K,
    ) -> Result<Vec<T>, VectorError> {
        let Some(ds) = self.latest().await? else {
            return Ok(Vec::new());
        };
        let mut scan = ds.scan();
        if let Some(filter) = filter {
            scan.filter(filter).map_err(|e| self.err(e))?;
        }
        let b = scan.try_into_batch().await.map_err(|e| self.err(e))?;
        let mut rows = parse(&b).map_err(|e| self.err(e))?;
        rows.sort_by_key(key);
        Ok(rows)
    }

    /// The `k` rows nearest to `query` among those `filter` selects, parsed by `parse`.
    async fn nearest<T>(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
        config: &VectorConfig,
        parse: fn(&RecordBatch) -> Result<Vec<T>, String>,
    ) -> Result<Found<T>, VectorError> {
        let Some(ds) = self.latest().await? else {
            return Ok(Found {
                hits: Vec::new(),
                vectors: 0,
                method: SearchMethod::Exact,
            });
        };
        let indexed = self.indexed(&ds).await?;
        // What the search runs over: the whole table through the index, else the filtered
        // rows the flat scan reads.
        let vectors = ds
            .count_rows(if indexed {
                None
            } else {
                filter.map(str::to_string)
            })
            .await
            .map_err(|e| self.err(e))?;
        let q = Float32Array::from(query.to_vec());
        let mut scan = ds.scan();
        scan.nearest("embedding", &q, k.max(1))
            .map_err(|e| self.err(e))?
            .distance_metric(MetricType::L2);
        if let Some(filter) = filter {
            scan.filter(filter).map_err(|e| self.err(e))?;
            scan.prefilter(true);
        }
        let method = if indexed {
            scan.nprobes(config.nprobes).refine(config.refine);
            SearchMethod::IvfPq
        } else {
            scan.use_index(false);
            SearchMethod::Exact
        };
        let b = scan.try_into_batch().await.map_err(|e| self.err(e))?;
        let hits = if b.num_rows() == 0 {
            Vec::new()
        } else {
            let rows = parse(&b).map_err(|e| self.err(e))?;
            let distances = Columns(&b).distances().map_err(|e| self.err(e))?;
            rows.into_iter().zip(distances).collect()
        };
        Ok(Found {
            hits,
            vectors,
            method,
        })
    }

    async fn drop_all(&self) -> Result<(), VectorError> {
        let mut cached = self.dataset.write().await;
        *cached = None;
        match tokio::fs::remove_dir_all(&self.uri).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// The Lance tables: written by [`VectorProjection`], searched by the API.
pub struct VectorStore {
    root: PathBuf,
    config: VectorConfig,
    faces: Table,
    appearances: Table,
    /// One writer at a time (the projection; a rebuild).
    writing: Mutex<()>,
}

impl std::fmt::Debug for VectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorStore")
            .field("root", &self.root)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// SQL string literal (single quotes doubled).
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Which appearances a search looks at.
#[derive(Debug, Clone, Default)]
pub struct AppearanceFilter {
    /// Seen at or after this time (the track's last sighting is not before it).
    pub start: Option<DateTime<Utc>>,
    /// Seen at or before this time (the track's first sighting is not after it).
    pub end: Option<DateTime<Utc>>,
    /// Only these cameras (`None`: every camera).
    pub camera_ids: Option<Vec<String>>,
}

impl AppearanceFilter {
    fn sql(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(start) = self.start {
            parts.push(format!("end_us >= {}", micros(start)));
        }
        if let Some(end) = self.end {
            parts.push(format!("start_us <= {}", micros(end)));
        }
        if let Some(cameras) = &self.camera_ids {
            if cameras.is_empty() {
                parts.push("false".into());
            } else {
                let list: Vec<String> = cameras.iter().map(|c| sql_literal(c)).collect();
                parts.push(format!("camera_id IN ({})", list.join(", ")));
            }
        }
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }
}

impl VectorStore {
    /// The tables under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>, config: VectorConfig) -> Self {
        let root = root.into();
        Self {
            faces: Table::new(&root, "subject_faces", "face_id", faces_schema()),
            appearances: Table::new(&root, "appearances", "appearance_id", appearances_schema()),
            root,
            config,
            writing: Mutex::new(()),
        }
    }

    /// Where the tables live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The search settings.
    pub fn config(&self) -> VectorConfig {
        self.config
    }

    /// Every row of `subject_faces`, ordered by id.
    pub async fn all_faces(&self) -> Result<Vec<FaceRow>, VectorError> {
        self.faces
            .rows(None, face_rows, |r| r.face_id.clone())
            .await
    }

    /// Every row of `appearances`, ordered by id.
    pub async fn all_appearances(&self) -> Result<Vec<AppearanceRow>, VectorError> {
        self.appearances
            .rows(None, appearance_rows, |r| r.appearance_id.clone())
            .await
    }

    /// The faces of one subject, ordered by id.
    pub async fn subject_faces(&self, subject_id: &str) -> Result<Vec<FaceRow>, VectorError> {
        let filter = format!("subject_id = {}", sql_literal(subject_id));
        self.faces
            .rows(Some(&filter), face_rows, |r| r.face_id.clone())
            .await
    }

    /// The `k` enrolled faces nearest to `query`.
    pub async fn nearest_faces(
        &self,
        query: &[f32],
        k: usize,
    ) -> Result<Found<FaceRow>, VectorError> {
        self.faces
            .nearest(query, k, None, &self.config, face_rows)
            .await
    }

    /// The `k` appearances nearest to `query` among those `filter` selects.
    pub async fn nearest_appearances(
        &self,
        query: &[f32],
        k: usize,
        filter: &AppearanceFilter,
    ) -> Result<Found<AppearanceRow>, VectorError> {
        let sql = filter.sql();
        self.appearances
            .nearest(query, k, sql.as_deref(), &self.config, appearance_rows)
            .await
    }

    /// `(table, digest)` of both tables: row count and SHA-256 over the rows ordered by id.
    pub async fn digests(&self) -> Result<Vec<(String, String)>, VectorError> {
        fn digest<T: Serialize>(rows: &[T]) -> String {
            let mut h = Sha256::new();
            for row in rows {
                h.update(serde_json::to_vec(row).expect("rows serialise"));
                h.update(b"\n");
            }
            format!("{}:{}", rows.len(), hex::encode(h.finalize()))
        }
        Ok(vec![
            ("subject_faces".into(), digest(&self.all_faces().await?)),
            ("appearances".into(), digest(&self.all_appearances().await?)),
        ])
    }

    /// Deletes both tables.
    pub async fn reset(&self) -> Result<(), VectorError> {
        let _writing = self.writing.lock().await;
        self.faces.drop_all().await?;
        self.appearances.drop_all().await
    }

    /// Applies a batch of changes in order; see [`Change`].
    pub async fn apply(&self, changes: Vec<Change>) -> Result<(), VectorError> {
        if changes.is_empty() {
            return Ok(());
        }
        let _writing = self.writing.lock().await;
        // Consecutive upserts go to Lance as one merge; a delete or an update first flushes
        // what is pending, so the table sees every change in event order.
        let mut faces: BTreeMap<String, FaceRow> = BTreeMap::new();
        let mut appearances: BTreeMap<String, AppearanceRow> = BTreeMap::new();
        let mut erased = false;
        for change in changes {
            match change {
                Change::Face(row) => {
                    faces.insert(row.face_id.clone(), row);
                }
                Change::Appearance(row) => {
                    appearances.insert(row.appearance_id.clone(), row);
                }
                Change::Category {
                    subject_id,
                    category,
                } => {
                    self.flush_faces(&mut faces).await?;
                    self.faces
                        .update(
                            &format!("subject_id = {}", sql_literal(&subject_id)),
                            "category",
                            &sql_literal(&category),
                        )
                        .await?;
                }
                Change::Erase { subject_id } => {
                    self.flush_faces(&mut faces).await?;
                    self.faces
                        .delete(&format!("subject_id = {}", sql_literal(&subject_id)))
                        .await?;
                    erased = true;
                }
            }
        }
        self.flush_faces(&mut faces).await?;
        if !appearances.is_empty() {
            let rows: Vec<AppearanceRow> = std::mem::take(&mut appearances).into_values().collect();
            let b = appearances_batch(&rows).map_err(|e| self.appearances.err(e))?;
            self.appearances.upsert(b).await?;
        }
        if erased {
            self.faces.purge().await?;
        }
        self.faces.tidy().await?;
        self.appearances.tidy().await?;
        self.faces.maintain_index(self.config.ann_min_rows).await?;
        self.appearances
            .maintain_index(self.config.ann_min_rows)
            .await
    }

    async fn flush_faces(&self, faces: &mut BTreeMap<String, FaceRow>) -> Result<(), VectorError> {
        if faces.is_empty() {
            return Ok(());
        }
        let rows: Vec<FaceRow> = std::mem::take(faces).into_values().collect();
        let b = faces_batch(&rows).map_err(|e| self.faces.err(e))?;
        self.faces.upsert(b).await
    }
}

/// One change to the vector tables.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace an enrolled face.
    Face(FaceRow),
    /// Insert or replace an appearance.
    Appearance(AppearanceRow),
    /// A subject moved to another category.
    Category {
        /// The subject.
        subject_id: String,
        /// Its new category.
        category: String,
    },
    /// A subject was erased: its faces go.
    Erase {
        /// The subject.
        subject_id: String,
    },
}

/// Builds the Lance tables from subject and appearance events.
pub struct VectorProjection {
    store: Arc<VectorStore>,
}

impl VectorProjection {
    /// The projection writing into `store`.
    pub fn new(store: Arc<VectorStore>) -> Self {
        Self { store }
    }
}

fn apply_err(event: &RecordedEvent, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Apply {
        name: NAME.into(),
        position: event.position,
        reason: reason.to_string(),
    }
}

fn valid_embedding(e: &[f32]) -> bool {
    e.len() == DIM && e.iter().all(|v| v.is_finite())
}

#[async_trait]
impl Projection for VectorProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["track_entries"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.event_type != "appearance.started" {
            return Ok(());
        }
        let Ok(AppearanceEvent::Started(s)) =
            AppearanceEvent::decode(&event.event_type, event.schema_version, &event.payload)
        else {
            return Err(apply_err(event, "undecodable appearance.started"));
        };
        let frame = serde_json::to_string(&s.entry_frame).map_err(|e| apply_err(event, e))?;
        sqlx::query(
            "INSERT INTO track_entries (id, camera_id, track_id, entry_frame) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET entry_frame = excluded.entry_frame",
        )
        .bind(track_stream(&s.camera_id, &s.track_id))
        .bind(&s.camera_id)
        .bind(&s.track_id)
        .bind(frame)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn apply_outside(
        &self,
        conn: &mut AnyConnection,
        batch: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut changes = Vec::new();
        // Category of each subject as of this batch, for faces added after a move.
        let mut categories: HashMap<String, String> = HashMap::new();
        for event in batch {
            let family = event.event_type.split('.').next().unwrap_or_default();
            match family {
                "subject" => {
                    let decoded = SubjectEvent::decode(
                        &event.event_type,
                        event.schema_version,
                        &event.payload,
                    )
                    .map_err(|e| apply_err(event, e))?;
                    match decoded {
                        SubjectEvent::Enrolled(e) => {
                            categories.insert(e.subject_id.clone(), e.category.as_str().into());
                            for f in e
                                .faces
                                .into_iter()
                                .filter(|f| valid_embedding(&f.embedding))
                            {
                                changes.push(Change::Face(FaceRow {
                                    face_id: f.face_id,
                                    subject_id: e.subject_id.clone(),
                                    category: e.category.as_str().into(),
                                    crop: f.crop,
                                    added_us: micros(event.occurred_at),
                                    embedding: f.embedding,
                                }));
                            }
                        }
                        SubjectEvent::FacesAdded(e) => {
                            let category = match categories.get(&e.subject_id) {
                                Some(c) => c.clone(),
                                // Enrolled in an earlier batch: its rows already say.
                                None => self
                                    .store
                                    .subject_faces(&e.subject_id)
                                    .await?
                                    .into_iter()
                                    .next()
                                    .map_or_else(
                                        || SubjectCategory::Watchlist.as_str().to_string(),
                                        |f| f.category,
                                    ),
                            };
                            for f in e
                                .faces
                                .into_iter()
                                .filter(|f| valid_embedding(&f.embedding))
                            {
                                changes.push(Change::Face(FaceRow {
                                    face_id: f.face_id,
                                    subject_id: e.subject_id.clone(),
                                    category: category.clone(),
                                    crop: f.crop,
                                    added_us: micros(event.occurred_at),
                                    embedding: f.embedding,
                                }));
                            }
                        }
                        SubjectEvent::Updated(e) => {
                            if let Some(category) = e.category {
                                categories.insert(e.subject_id.clone(), category.as_str().into());
                                changes.push(Change::Category {
                                    subject_id: e.subject_id,
                                    category: category.as_str().into(),
                                });
                            }
                        }
                        SubjectEvent::Erased(e) => changes.push(Change::Erase {
                            subject_id: e.subject_id,
                        }),
                        SubjectEvent::Matched(_) => {}
                    }
                }
                "appearance" if event.event_type == "appearance.ended" => {
                    let Ok(AppearanceEvent::Ended(e)) = AppearanceEvent::decode(
                        &event.event_type,
                        event.schema_version,
                        &event.payload,
                    ) else {
                        return Err(apply_err(event, "undecodable appearance.ended"));
                    };
                    let id = track_stream(&e.camera_id, &e.track_id);
                    let entry: Option<String> =
                        sqlx::query("SELECT entry_frame FROM track_entries WHERE id = $1")
                            .bind(&id)
                            .fetch_optional(&mut *conn)
                            .await?
                            .map(|row| row.try_get(0))
                            .transpose()?;
                    sqlx::query("DELETE FROM track_entries WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    let Some(face) = e.best_face.filter(|f| valid_embedding(&f.embedding)) else {
                        continue;
                    };
                    changes.push(Change::Appearance(AppearanceRow {
                        appearance_id: id,
                        camera_id: e.camera_id,
                        track_id: e.track_id,
                        start_us: micros(e.started_at),
                        end_us: micros(e.ended_at),
                        dwell_seconds: e.dwell_seconds,
                        frames: e.frames,
                        zones: serde_json::to_string(&e.zones).map_err(|x| apply_err(event, x))?,
                        entry_frame: entry,
                        exit_frame: serde_json::to_string(&e.exit_frame)
                            .map_err(|x| apply_err(event, x))?,
                        face_crop: face.crop,
                        face_score: face.score,
                        face_at_us: micros(face.at),
                        embedding: face.embedding,
                    }));
                }
                _ => {}
            }
        }
        self.store.apply(changes).await?;
        Ok(())
    }

    async fn reset_outside(&self) -> Result<(), ProjectionError> {
        Ok(self.store.reset().await?)
    }

    async fn outside_digests(&self) -> Result<Vec<(String, String)>, ProjectionError> {
        Ok(self.store.digests().await?)
    }
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
