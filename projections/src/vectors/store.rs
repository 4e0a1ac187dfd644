//! The vector store: the two tables, what the API asks of them, and the changes the projection
//! applies to them.

use super::*;

/// The Lance tables: written by [`VectorProjection`], searched by the API.
pub struct VectorStore {
    /// The tables' folder, or their `s3://` URI.
    location: String,
    config: VectorConfig,
    faces: Table,
    appearances: Table,
    /// One writer at a time (the projection; a rebuild).
    writing: Mutex<()>,
}

impl std::fmt::Debug for VectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorStore")
            .field("location", &self.location)
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
    pub(crate) fn sql(&self) -> Option<String> {
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
    /// The tables under the folder `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>, config: VectorConfig) -> Self {
        Self::at(root.into().display().to_string(), None, config)
    }

    /// The tables under `uri` (`s3://bucket/prefix`) in an S3-compatible bucket, reached with
    /// Lance's `storage_options` (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `allow_http`; what is absent comes from the `AWS_*`
    /// environment). One node writes (the projection's leader); every node reads. Commits use
    /// the bucket's conditional puts, so two writers could not both commit one version.
    pub fn in_bucket(
        uri: &str,
        storage_options: HashMap<String, String>,
        config: VectorConfig,
    ) -> Self {
        Self::at(uri.to_string(), Some(storage_options), config)
    }

    fn at(location: String, remote: Option<HashMap<String, String>>, config: VectorConfig) -> Self {
        Self {
            faces: Table::new(
                &location,
                remote.clone(),
                "subject_faces",
                "face_id",
                faces_schema(),
            ),
            appearances: Table::new(
                &location,
                remote,
                "appearances",
                "appearance_id",
                appearances_schema(),
            ),
            location,
            config,
            writing: Mutex::new(()),
        }
    }

    /// Where the tables live: a folder, or an `s3://` URI.
    pub fn location(&self) -> &str {
        &self.location
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
