//! Search by face: where and when was this person seen?
//!
//! Two stages over the Lance tables of the `vectors` projection. Stage 1 looks the face up
//! among enrolled faces (`subject_faces`): when it identifies a subject (the identity rule of
//! [`vigil_actors::gallery::identified`], as on cameras), the answer is that subject's
//! appearances, found with every enrolled face of the subject and the picture. Otherwise
//! stage 2 searches `appearances` with the picture alone. Either way only tracks within
//! `max_distance` (default: the calibrated match distance) come back, one per track, nearest
//! first, restricted to the time range and cameras asked for.

use std::collections::HashMap;

use vigil_actors::gallery::identified;
use vigil_projections::calibration::get_calibration;
use vigil_projections::subjects::get_subject;
use vigil_projections::vectors::{AppearanceFilter, AppearanceRow, DIM, SearchMethod};

use super::ServiceError;
use super::subjects::find_faces;
use crate::app::App;

/// Enrolled faces stage 1 looks at (enough to find the nearest two subjects).
const STAGE1_FACES: usize = 32;

/// A search by face.
pub struct FaceQuery {
    /// The picture's file name and bytes (JPEG or PNG, exactly one face).
    pub picture: (String, bytes::Bytes),
    /// The multipart part the picture came in, named in refusals.
    pub part: &'static str,
    /// Time range and cameras.
    pub filter: AppearanceFilter,
    /// Most tracks.
    pub top_k: usize,
    /// Largest distance of a hit; `None`: the calibrated match distance.
    pub max_distance: Option<f64>,
}

/// The enrolled subject stage 1 identified.
pub struct Identified {
    /// Subject id.
    pub id: String,
    /// Name (the id when the read model does not have it yet).
    pub name: String,
    /// Category.
    pub category: String,
    /// Distance to the subject's nearest face.
    pub distance: f64,
    /// Distance to the next other subject's nearest face, when there is one.
    pub second_distance: Option<f64>,
}

/// What a search found, and what it searched.
pub struct FaceSearch {
    /// The subject stage 1 identified; `None`: stage 2 answered.
    pub subject: Option<Identified>,
    /// One appearance per track with its distance, nearest first, at most `top_k`.
    pub hits: Vec<(AppearanceRow, f64)>,
    /// How the appearances were searched.
    pub method: SearchMethod,
    /// Vectors compared (enrolled faces and appearances).
    pub vectors_searched: u64,
    /// Hits before merging by track and cutting at `max_distance`.
    pub raw_hits: u64,
}

/// Runs a search by face.
pub async fn search_face(app: &App, query: FaceQuery) -> Result<FaceSearch, ServiceError> {
    let found = find_faces(app, vec![query.picture], query.part).await?;
    let picture = found
        .into_iter()
        .next()
        .and_then(|f| f.face.embedding)
        .filter(|e| e.len() == DIM)
        .ok_or_else(|| ServiceError::internal("the face model gave no 128-d descriptor"))?;
    let (calibration, _, _) = get_calibration(app.pool()).await?;
    let settings = calibration.global;
    let max_distance = query.max_distance.unwrap_or(settings.face_match_distance);
    let vectors = app.vectors();

    // Stage 1: the nearest enrolled subject, if it is clearly this person.
    let faces = vectors
        .nearest_faces(&picture, STAGE1_FACES)
        .await
        .map_err(ServiceError::internal)?;
    // Each subject's nearest face, nearest first (the hits come nearest first).
    let mut nearest: Vec<((String, String), f64)> = Vec::new();
    for (face, d) in &faces.hits {
        if !nearest.iter().any(|((s, _), _)| *s == face.subject_id) {
            nearest.push(((face.subject_id.clone(), face.category.clone()), *d));
        }
    }
    let identity = identified(
        &nearest,
        settings.face_match_distance,
        settings.face_match_margin,
    )
    .then(|| (nearest[0].clone(), nearest.get(1).map(|(_, d)| *d)));

    let mut queries = vec![picture];
    let mut vectors_searched = faces.vectors as u64;
    let subject = match identity {
        Some((((id, category), distance), second_distance)) => {
            let name = get_subject(app.pool(), &id)
                .await?
                .map_or_else(|| id.clone(), |s| s.name);
            queries.extend(
                vectors
                    .subject_faces(&id)
                    .await
                    .map_err(ServiceError::internal)?
                    .into_iter()
                    .map(|f| f.embedding),
            );
            Some(Identified {
                id,
                name,
                category,
                distance,
                second_distance,
            })
        }
        None => None,
    };

    // Stage 1 on a match (every face of the subject), else stage 2 (the picture alone).
    let mut best: HashMap<String, (AppearanceRow, f64)> = HashMap::new();
    let mut raw_hits = 0u64;
    let mut method = SearchMethod::Exact;
    let mut appearances_searched = 0u64;
    for q in &queries {
        let found = vectors
            .nearest_appearances(q, query.top_k, &query.filter)
            .await
            .map_err(ServiceError::internal)?;
        raw_hits += found.hits.len() as u64;
        appearances_searched = appearances_searched.max(found.vectors as u64);
        method = found.method;
        for (row, d) in found.hits {
            if d > max_distance {
                continue;
            }
            match best.get(&row.appearance_id) {
                Some((_, known)) if *known <= d => {}
                _ => {
                    best.insert(row.appearance_id.clone(), (row, d));
                }
            }
        }
    }
    vectors_searched += appearances_searched;
    let mut hits: Vec<(AppearanceRow, f64)> = best.into_values().collect();
    hits.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then(a.0.appearance_id.cmp(&b.0.appearance_id))
    });
    hits.truncate(query.top_k);
    Ok(FaceSearch {
        subject,
        hits,
        method,
        vectors_searched,
        raw_hits,
    })
}
