//! The `vectors` projection: subject and appearance events become changes of the vector store.

use super::*;

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

pub(crate) fn apply_err(event: &RecordedEvent, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Apply {
        name: NAME.into(),
        position: event.position,
        reason: reason.to_string(),
    }
}

pub(crate) fn valid_embedding(e: &[f32]) -> bool {
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
