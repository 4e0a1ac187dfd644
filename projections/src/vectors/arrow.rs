//! Arrow schemas of the two tables, and the conversions between their rows and record batches.

use super::*;

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

pub(crate) fn faces_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("face_id", DataType::Utf8, false),
        Field::new("subject_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("crop", DataType::Utf8, false),
        Field::new("added_us", DataType::Int64, false),
        embedding_field(),
    ]))
}

pub(crate) fn appearances_schema() -> SchemaRef {
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
pub(crate) fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, String> {
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

pub(crate) fn faces_batch(rows: &[FaceRow]) -> Result<RecordBatch, String> {
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

pub(crate) fn appearances_batch(rows: &[AppearanceRow]) -> Result<RecordBatch, String> {
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
pub(crate) struct Columns<'a>(pub(crate) &'a RecordBatch);

impl Columns<'_> {
    pub(crate) fn col(&self, name: &str) -> Result<&ArrayRef, String> {
        self.0
            .column_by_name(name)
            .ok_or_else(|| format!("no column `{name}`"))
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<Option<String>>, String> {
        let col = self.col(name)?;
        let a = col
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column `{name}` is not text"))?;
        Ok((0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
            .collect())
    }

    pub(crate) fn texts(&self, name: &str) -> Result<Vec<String>, String> {
        Ok(self
            .strings(name)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    pub(crate) fn prims<T: ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<Vec<T::Native>, String> {
        let a = self
            .col(name)?
            .as_primitive_opt::<T>()
            .ok_or_else(|| format!("column `{name}` is not {}", T::DATA_TYPE))?;
        Ok(a.values().to_vec())
    }

    pub(crate) fn vectors(&self, name: &str) -> Result<Vec<Vec<f32>>, String> {
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
    pub(crate) fn distances(&self) -> Result<Vec<f64>, String> {
        Ok(self
            .prims::<Float32Type>("_distance")?
            .into_iter()
            .map(|d| f64::from(d.max(0.0)).sqrt())
            .collect())
    }
}

pub(crate) fn face_rows(b: &RecordBatch) -> Result<Vec<FaceRow>, String> {
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

pub(crate) fn appearance_rows(b: &RecordBatch) -> Result<Vec<AppearanceRow>, String> {
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
