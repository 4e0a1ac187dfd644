//! One Lance dataset: upserts keyed by row id, deletes, purges that leave nothing on disk, the
//! IVF-PQ index kept fresh, and nearest-neighbour queries (exact or indexed, re-ranked).

use super::*;

/// One Lance dataset.
pub(crate) struct Table {
    name: &'static str,
    key: &'static str,
    uri: String,
    /// The bucket's storage options (endpoint, credentials) when the table lives in one;
    /// `None` on local disk.
    remote: Option<HashMap<String, String>>,
    schema: SchemaRef,
    dataset: RwLock<Option<Dataset>>,
}

impl Table {
    /// The table `name` under `base` (a folder, or an `s3://` URI with `remote`'s storage
    /// options).
    pub(crate) fn new(
        base: &str,
        remote: Option<HashMap<String, String>>,
        name: &'static str,
        key: &'static str,
        schema: SchemaRef,
    ) -> Self {
        Self {
            name,
            key,
            uri: format!("{}/{name}.lance", base.trim_end_matches('/')),
            remote,
            schema,
            dataset: RwLock::new(None),
        }
    }

    pub(crate) fn err(&self, e: impl std::fmt::Display) -> VectorError {
        VectorError {
            table: self.name,
            reason: e.to_string(),
        }
    }

    /// On local disk, whether the table was ever written (a bucket is asked by opening it).
    pub(crate) fn exists(&self) -> bool {
        self.remote.is_some() || Path::new(&self.uri).join("_versions").is_dir()
    }

    /// Where the bucket is and how to reach it, for Lance.
    fn store_params(&self) -> Option<ObjectStoreParams> {
        let options = self.remote.clone()?;
        Some(ObjectStoreParams {
            storage_options_accessor: Some(Arc::new(StorageOptionsAccessor::with_static_options(
                options,
            ))),
            ..Default::default()
        })
    }

    /// Opens the table's latest version; `None` when it was never written.
    async fn open(&self) -> Result<Option<Dataset>, VectorError> {
        let mut builder = DatasetBuilder::from_uri(&self.uri);
        if let Some(options) = &self.remote {
            builder = builder.with_storage_options(options.clone());
        }
        match builder.load().await {
            Ok(ds) => Ok(Some(ds)),
            Err(lance::Error::DatasetNotFound { .. } | lance::Error::NotFound { .. })
                if self.remote.is_some() =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// The latest version of the dataset, or `None` when it was never written.
    pub(crate) async fn latest(&self) -> Result<Option<Dataset>, VectorError> {
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
            None if self.exists() => match self.open().await? {
                Some(ds) => *cached = Some(ds),
                None => return Ok(None),
            },
            None => return Ok(None),
        }
        Ok(cached.clone())
    }

    pub(crate) async fn remember(&self, ds: Dataset) {
        *self.dataset.write().await = Some(ds);
    }

    /// Inserts `batch`, replacing rows with the same key.
    pub(crate) async fn upsert(&self, batch: RecordBatch) -> Result<(), VectorError> {
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
                    store_params: self.store_params(),
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
    pub(crate) async fn delete(&self, predicate: &str) -> Result<(), VectorError> {
        let Some(mut ds) = self.latest().await? else {
            return Ok(());
        };
        ds.delete(predicate).await.map_err(|e| self.err(e))?;
        self.remember(ds).await;
        Ok(())
    }

    /// Sets `column` to the SQL literal `value` in the rows `predicate` selects.
    pub(crate) async fn update(
        &self,
        predicate: &str,
        column: &str,
        value: &str,
    ) -> Result<(), VectorError> {
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
    pub(crate) async fn purge(&self) -> Result<(), VectorError> {
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
    pub(crate) async fn tidy(&self) -> Result<(), VectorError> {
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
    pub(crate) async fn maintain_index(&self, min_rows: usize) -> Result<(), VectorError> {
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

    pub(crate) async fn indexed(&self, ds: &Dataset) -> Result<bool, VectorError> {
        let indices = ds.load_indices().await.map_err(|e| self.err(e))?;
        Ok(indices.iter().any(|i| i.name == INDEX_NAME))
    }

    /// The rows `filter` selects (all without one), parsed by `parse`, ordered by `key`.
    pub(crate) async fn rows<T, K: Ord>(
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
    pub(crate) async fn nearest<T>(
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

    pub(crate) async fn drop_all(&self) -> Result<(), VectorError> {
        let mut cached = self.dataset.write().await;
        *cached = None;
        if let Some(params) = self.store_params() {
            let registry = Arc::new(ObjectStoreRegistry::default());
            let (store, path) = LanceObjectStore::from_uri_and_params(registry, &self.uri, &params)
                .await
                .map_err(|e| self.err(e))?;
            return store.remove_dir_all(path).await.map_err(|e| self.err(e));
        }
        match tokio::fs::remove_dir_all(&self.uri).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}
