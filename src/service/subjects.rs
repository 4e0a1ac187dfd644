//! Enrolled people: reading faces out of uploaded pictures, storing their crops, enrolment,
//! adding faces, and erasure.

use std::sync::Arc;

use serde_json::json;
use vigil_actors::CommandError;
use vigil_actors::aggregates::subject::{
    MAX_FACES, MAX_FACES_PER_REQUEST, Subject, SubjectCommand, SubjectError, SubjectState,
};
use vigil_actors::frame::{self, RgbImage};
use vigil_actors::handler::Executed;
use vigil_actors::pool::{FoundFace, Want};
use vigil_projections::subjects::crop_in_use;
use vigil_schemas::events::{
    NormBox, Severity, SubjectCategory, SubjectEnrolled, SubjectFace, SubjectFacesAdded,
    subject_stream,
};
use vigil_schemas::{Direction, DomainEvent, EventMeta, SubjectEvent};

use super::visibility::wait_visible;
use super::{Refusal, ServiceError, command_error, pool_error};
use crate::app::App;

/// How many times an erasure loads the subject again after a concurrent write.
const ERASE_ATTEMPTS: usize = 5;

/// The margin around a face's box kept in its crop (a fraction of the box on every side).
const CROP_MARGIN: f32 = 0.25;

/// JPEG quality of face crops.
const CROP_QUALITY: u8 = 85;

/// Why an erasure through the API is recorded.
const ERASE_REASON: &str = "erased through the API";

/// 404 `SUBJECT_NOT_FOUND`.
pub fn subject_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(
        "SUBJECT_NOT_FOUND",
        format!("subject `{id}` does not exist"),
    )
}

/// 404 `SUBJECT_NOT_FOUND` for a subject that is not (or no longer) watch-listed.
pub fn poi_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(
        "SUBJECT_NOT_FOUND",
        format!("no watch-listed subject `{id}`"),
    )
}

/// Maps a subject command's failure.
pub fn subject_error(err: CommandError<SubjectError>, id: &str) -> ServiceError {
    command_error(err, "subject", |e| match e {
        SubjectError::NotFound(_) => subject_not_found(id),
        SubjectError::AlreadyExists(id) => ServiceError::refused(
            Refusal::Conflict,
            "SUBJECT_EXISTS",
            format!("subject `{id}` already exists (or existed)"),
            json!({"id": id}),
        ),
        SubjectError::Invalid { field, reason } => ServiceError::invalid(field, reason),
    })
}

/// One face found in an uploaded picture.
pub struct FoundIn {
    /// The decoded picture.
    pub image: Arc<RgbImage>,
    /// Its one face, with its descriptor.
    pub face: FoundFace,
}

/// Decodes every picture, then runs face detection on each: every picture must show exactly
/// one face. 422 `INVALID_IMAGE` names the first picture that is not a JPEG or PNG; 422
/// `FACE_COUNT` names every picture without exactly one face (`details.images`).
pub async fn find_faces(
    app: &App,
    files: Vec<(String, bytes::Bytes)>,
    part: &str,
) -> Result<Vec<FoundIn>, ServiceError> {
    if files.is_empty() || files.len() > MAX_FACES_PER_REQUEST {
        return Err(ServiceError::invalid(
            part,
            format!("1 to {MAX_FACES_PER_REQUEST} pictures, not {}", files.len()),
        ));
    }
    let mut images = Vec::with_capacity(files.len());
    for (index, (file, bytes)) in files.iter().enumerate() {
        let bytes = bytes.clone();
        let decoded = tokio::task::spawn_blocking(move || frame::decode(&bytes))
            .await
            .map_err(ServiceError::internal)?;
        let field = format!("{part}[{index}]");
        let image = decoded.map_err(|e| {
            ServiceError::refused(
                Refusal::Unprocessable,
                "INVALID_IMAGE",
                format!("{field} (`{file}`) is not a usable picture: {e}"),
                json!({"field": field, "index": index, "file": file, "reason": e.to_string()}),
            )
        })?;
        images.push(Arc::new(image));
    }
    let want = Want {
        faces: true,
        always_faces: true,
        embeddings: true,
        face_min_pixels: 0,
        person_regions: None,
    };
    let mut found = Vec::with_capacity(images.len());
    let mut refused = Vec::new();
    for (index, image) in images.into_iter().enumerate() {
        let analysis = app
            .ingest()
            .pool()
            .analyze(image.clone(), want.clone())
            .await
            .map_err(pool_error)?;
        let faces = analysis.faces.len();
        if faces == 1 {
            let face = analysis.faces.into_iter().next().expect("one face");
            found.push(FoundIn { image, face });
        } else {
            let reason = if faces == 0 {
                "no face found".to_string()
            } else {
                format!("{faces} faces found")
            };
            refused.push((index, faces, reason));
        }
    }
    if let Some((index, _, reason)) = refused.first() {
        let file = &files[*index].0;
        let more = match refused.len() {
            1 => String::new(),
            n => format!(" (and {} more pictures)", n - 1),
        };
        let images: Vec<_> = refused
            .iter()
            .map(|(i, faces, reason)| {
                json!({"index": i, "file": files[*i].0, "faces": faces, "reason": reason})
            })
            .collect();
        return Err(ServiceError::refused(
            Refusal::Unprocessable,
            "FACE_COUNT",
            format!(
                "{part}[{index}] (`{file}`): {reason}{more}; each picture must show exactly one face"
            ),
            json!({
                "field": format!("{part}[{index}]"),
                "index": index,
                "file": file,
                "faces": refused[0].1,
                "reason": reason,
                "images": images,
            }),
        ));
    }
    Ok(found)
}

/// Crops each face from its picture and stores the crops (JPEG) in the media store. On a
/// failure, the crops stored so far that no enrolled face shows are deleted again.
pub async fn store_faces(app: &App, found: Vec<FoundIn>) -> Result<Vec<SubjectFace>, ServiceError> {
    let mut faces = Vec::with_capacity(found.len());
    for FoundIn { image, face } in found {
        let embedding = face
            .embedding
            .filter(|e| e.len() == 128 && e.iter().all(|v| v.is_finite()))
            .ok_or_else(|| ServiceError::internal("the face model gave no 128-d descriptor"));
        let embedding = match embedding {
            Ok(e) => e,
            Err(e) => {
                discard_crops(app, &faces).await;
                return Err(e);
            }
        };
        let b = face.bbox;
        let jpeg = tokio::task::spawn_blocking(move || {
            let crop = image.crop_normalised(b.x1, b.y1, b.x2, b.y2, CROP_MARGIN);
            frame::encode_jpeg(&crop, CROP_QUALITY)
        })
        .await
        .map_err(ServiceError::internal)?;
        let crop = match app.ingest().blobs().put(&jpeg).await {
            Ok(sha) => sha,
            Err(e) if vigil_actors::blob::is_storage_full(&e) => {
                discard_crops(app, &faces).await;
                return Err(ServiceError::refused(
                    Refusal::StorageFull,
                    "STORAGE_FULL",
                    "the media folder is full: the face crops cannot be stored and nothing was \
                     enrolled; make room (delete clips, lower clip_budget_mib) and send it again",
                    json!({}),
                ));
            }
            Err(e) => {
                discard_crops(app, &faces).await;
                return Err(ServiceError::internal(format!(
                    "cannot store a face crop: {e}"
                )));
            }
        };
        faces.push(SubjectFace {
            face_id: uuid::Uuid::now_v7().to_string(),
            crop,
            bbox: NormBox {
                x1: b.x1,
                y1: b.y1,
                x2: b.x2,
                y2: b.y2,
            },
            score: b.score,
            embedding,
        });
    }
    Ok(faces)
}

/// Deletes the crops of faces that were not recorded, unless an enrolled face shows them
/// (the same picture enrolled before). Best effort: failures are logged.
pub async fn discard_crops(app: &App, faces: &[SubjectFace]) {
    for face in faces {
        match crop_in_use(app.pool(), &face.crop, None).await {
            Ok(false) => {
                if let Err(e) = app.ingest().blobs().delete(&face.crop).await {
                    tracing::warn!(crop = %face.crop, error = %e, "cannot delete an unused face crop");
                }
            }
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(crop = %face.crop, error = %e, "cannot check whether a face crop is used")
            }
        }
    }
}

/// Enrols `subject` with the one face of each picture of `files` (1 to
/// `MAX_FACES_PER_REQUEST`): the faces are found and their crops stored before the enrolment
/// is recorded; on a refusal the crops are deleted again. Answers the recorded enrolment and
/// the command's outcome.
pub async fn enrol(
    app: &App,
    meta: &EventMeta,
    subject: NewSubject,
    files: Vec<(String, bytes::Bytes)>,
) -> Result<(SubjectEnrolled, Executed<SubjectState>), ServiceError> {
    let found = find_faces(app, files, "files").await?;
    let faces = store_faces(app, found).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let enrolled = SubjectEnrolled {
        subject_id: id.clone(),
        name: subject.name,
        category: subject.category,
        severity: subject.severity,
        notes: subject.notes,
        faces,
    };
    let command = SubjectCommand::Enroll(enrolled.clone());
    let done = record_faces(app, meta, &id, command, &enrolled.faces).await?;
    Ok((enrolled, done))
}

/// Adds the one face of each picture of `files` to subject `id`, within the subject's limit
/// of `MAX_FACES`; on a refusal the new crops are deleted again.
pub async fn add_faces(
    app: &App,
    meta: &EventMeta,
    id: &str,
    files: Vec<(String, bytes::Bytes)>,
) -> Result<Executed<SubjectState>, ServiceError> {
    let (state, _) = app
        .handler()
        .load::<Subject>(id)
        .await
        .map_err(|e| subject_error(e, id))?;
    if !state.exists {
        return Err(subject_not_found(id));
    }
    if state.faces.len() + files.len() > MAX_FACES {
        return Err(ServiceError::invalid(
            "files",
            format!(
                "a subject holds at most {MAX_FACES} faces; it has {}",
                state.faces.len()
            ),
        ));
    }
    let found = find_faces(app, files, "files").await?;
    let faces = store_faces(app, found).await?;
    let command = SubjectCommand::AddFaces(SubjectFacesAdded {
        subject_id: id.to_string(),
        faces: faces.clone(),
    });
    record_faces(app, meta, id, command, &faces).await
}

/// Runs `command`, which records `faces`, on subject `id`; on a refusal the faces' crops are
/// deleted again (unless another face shows them).
async fn record_faces(
    app: &App,
    meta: &EventMeta,
    id: &str,
    command: SubjectCommand,
    faces: &[SubjectFace],
) -> Result<Executed<SubjectState>, ServiceError> {
    match app
        .handler()
        .execute::<Subject>(id, command, meta, None)
        .await
    {
        Ok(done) => Ok(done),
        Err(e) => {
            discard_crops(app, faces).await;
            Err(subject_error(e, id))
        }
    }
}

/// The tracks that matched subject `id` (its `subject.matched` events), each once.
async fn matched_tracks(app: &App, id: &str) -> Result<Vec<String>, ServiceError> {
    const PAGE: usize = 500;
    let stream = subject_stream(id);
    let mut tracks = Vec::new();
    let mut from = 1;
    loop {
        let page = app
            .store()
            .read_stream(&stream, from, PAGE, Direction::Forward)
            .await?;
        for event in &page {
            if let Ok(Some(SubjectEvent::Matched(m))) = SubjectEvent::from_recorded(event) {
                tracks.push(m.track_id);
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => from = last.stream_version + 1,
            _ => break,
        }
    }
    tracks.sort();
    tracks.dedup();
    Ok(tracks)
}

/// Erases subject `id` (only if watch-listed, with `only_watchlist`), deletes its face crops
/// from the media store unless another subject's face shows them (once the read models show
/// the erasure), and deletes the clips that show a track that matched it (`clip.deleted`,
/// reason `subject_erased`). Retries on concurrent writes. Answers the position the read
/// models have reached.
pub async fn erase(
    app: &App,
    meta: &EventMeta,
    id: &str,
    only_watchlist: bool,
) -> Result<u64, ServiceError> {
    let mut erased = None;
    for _ in 0..ERASE_ATTEMPTS {
        // The crops are those of the state the erasure is decided on: at that exact version.
        let (state, version) = app
            .handler()
            .load::<Subject>(id)
            .await
            .map_err(|e| subject_error(e, id))?;
        if !state.exists {
            return Err(subject_not_found(id));
        }
        if only_watchlist && state.category != Some(SubjectCategory::Watchlist) {
            return Err(poi_not_found(id));
        }
        let command = SubjectCommand::Erase {
            subject_id: id.to_string(),
            reason: ERASE_REASON.into(),
        };
        match app
            .handler()
            .execute::<Subject>(id, command, meta, Some(version))
            .await
        {
            Ok(done) => {
                erased = Some((done, state.faces));
                break;
            }
            // Written meanwhile (a face added, a match): decide again on the new state.
            Err(CommandError::VersionMismatch { .. }) => continue,
            Err(e) => return Err(subject_error(e, id)),
        }
    }
    let Some((done, faces)) = erased else {
        return Err(ServiceError::refused(
            Refusal::Conflict,
            "WRITE_CONFLICT",
            format!("subject `{id}` kept changing during {ERASE_ATTEMPTS} attempts; retry"),
            json!({}),
        ));
    };
    let seen = wait_visible(app, done.position).await;
    let mut crops: Vec<String> = faces.into_iter().map(|(_, crop)| crop).collect();
    crops.sort();
    crops.dedup();
    for crop in crops {
        if crop_in_use(app.pool(), &crop, Some(id)).await? {
            continue;
        }
        app.ingest()
            .blobs()
            .delete(&crop)
            .await
            .map_err(ServiceError::internal)?;
    }
    let tracks = matched_tracks(app, id).await?;
    let clips = super::clips::erase_tracks(app, &tracks, meta).await?;
    if clips.deleted > 0 {
        tracing::info!(
            subject = id,
            clips = clips.deleted,
            "an erased subject's clips deleted"
        );
    }
    Ok(done.position.unwrap_or(seen))
}

/// Who to enrol, besides the pictures.
pub struct NewSubject {
    /// Name, trimmed.
    pub name: String,
    /// Authorised or watch-listed.
    pub category: SubjectCategory,
    /// Watch-listed only: the severity of a match's incident.
    pub severity: Option<Severity>,
    /// Free text.
    pub notes: String,
}
