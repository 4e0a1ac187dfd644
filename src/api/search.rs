//! `POST /api/v1/search/face`: where and when was this person seen?
//!
//! The two stages (enrolled subjects, then appearances) are the use case
//! [`crate::service::search`]; this file parses the form and shapes the answer.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::types::multipart::Upload as UploadPart;
use poem_openapi::{Multipart, Object, OpenApi, payload::Json};
use vigil_projections::clips::clips_of_tracks;
use vigil_projections::vectors::{AppearanceFilter, AppearanceRow, from_micros};

use super::ApiTags;
use super::auth::{Auth, only_cameras};
use super::body::{Upload, UploadForm};
use super::dto::{ClipDto, EvidenceDto, clip_dto, evidence_dto, media_url, similarity};
use super::error::ApiError;
use crate::app::App;
use crate::service::search::{FaceQuery, search_face};

/// Hits per search unless `top_k` says otherwise.
const DEFAULT_TOP_K: usize = 10;
/// The most hits a search returns.
const MAX_TOP_K: usize = 100;

/// A face search (documentation of the multipart body).
#[derive(Debug, Multipart)]
#[allow(dead_code)] // only its schema is used; the body is parsed by `Upload`
struct FaceSearchForm {
    /// The picture (JPEG or PNG), showing exactly one face.
    image: UploadPart,
    /// Only tracks still seen at or after this time (RFC 3339).
    start: Option<DateTime<Utc>>,
    /// Only tracks already seen at or before this time (RFC 3339).
    end: Option<DateTime<Utc>>,
    /// Only these cameras: ids separated by commas.
    #[oai(validator(max_length = 10000))]
    camera_ids: Option<String>,
    /// Most hits (default 10).
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    top_k: Option<u32>,
    /// Largest descriptor distance of a hit (default: the calibrated `face_match_distance`).
    #[oai(validator(minimum(value = "0"), maximum(value = "2")))]
    max_distance: Option<f64>,
}

impl UploadForm for FaceSearchForm {
    const FIELDS: &'static [&'static str] =
        &["start", "end", "camera_ids", "top_k", "max_distance"];
    const FILES: &'static str = "image";
    const MAX_FILES: usize = 1;
}

/// A stay in one zone during a track.
#[derive(Debug, Clone, Object)]
pub struct ZoneVisitDto {
    /// The zone's name.
    pub zone: String,
    /// First frame inside.
    pub entered_at: DateTime<Utc>,
    /// Last frame inside.
    pub exited_at: DateTime<Utc>,
}

/// One track that showed the face.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FaceSearchHit {
    /// The track.
    pub track_id: String,
    /// The camera.
    pub camera_id: String,
    /// `1 - distance / 2`, clamped to 0–1.
    pub similarity: f64,
    /// Descriptor distance between the query (or the identified subject's nearest face) and
    /// the track's clearest face (same person: below about 0.6).
    pub distance: f64,
    /// First sighting.
    pub entered_at: DateTime<Utc>,
    /// Last sighting.
    pub exited_at: DateTime<Utc>,
    /// Seconds between them.
    pub dwell_seconds: f64,
    /// Sampled frames the person was in.
    pub frames: u32,
    /// Zones entered, with entry and exit times, in order of entry.
    pub zones: Vec<ZoneVisitDto>,
    /// The first frame of the track.
    pub entry_frame: Option<EvidenceDto>,
    /// The last frame of the track.
    pub exit_frame: Option<EvidenceDto>,
    /// The track's clearest face crop (JPEG).
    pub thumbnail_url: String,
    /// When that face was seen.
    pub face_seen_at: DateTime<Utc>,
    /// Clips that show the track (of its incidents, or of the appearance itself on a camera
    /// with `clip_appearances`), oldest first.
    pub clips: Vec<ClipDto>,
}

/// The enrolled subject stage 1 identified.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IdentifiedSubject {
    /// The subject.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `authorised` or `watchlist`.
    pub category: String,
    /// Distance from the picture to the subject's nearest enrolled face.
    pub distance: f64,
    /// `1 - distance / 2`.
    pub similarity: f64,
    /// Distance to the nearest face of another subject, when there is one.
    pub second_distance: Option<f64>,
}

/// What a search did.
#[derive(Debug, Clone, Object)]
pub struct SearchStats {
    /// `subject` (stage 1 identified an enrolled subject) or `appearances` (stage 2).
    pub stage: String,
    /// `exact` (flat scan) or `ivf_pq` (through the ANN index) for the appearances.
    pub method: String,
    /// Enrolled faces and appearances the searches ran over.
    pub vectors_searched: u64,
    /// Rows the vector searches returned, before the distance limit and one hit per track.
    pub raw_hits: u64,
    /// Tracks in the answer.
    pub unique_tracks: u64,
    /// Time spent, from the picture's arrival to the answer, in milliseconds.
    pub latency_ms: f64,
}

/// A face search's answer.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FaceSearchResult {
    /// The subject identified in stage 1; absent after stage 2.
    pub subject: Option<IdentifiedSubject>,
    /// Tracks, nearest first.
    pub hits: Vec<FaceSearchHit>,
    /// What the search did.
    pub search_stats: SearchStats,
}

/// The searchable parameters, validated.
struct Params {
    filter: AppearanceFilter,
    top_k: usize,
    max_distance: Option<f64>,
}

fn parse_time(
    fields: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    match fields.get(name).map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| ApiError::validation(name, format!("not an RFC 3339 time: {e}"))),
    }
}

fn params(
    fields: &std::collections::BTreeMap<String, String>,
    allowed: Option<Vec<String>>,
) -> Result<Params, ApiError> {
    let start = parse_time(fields, "start")?;
    let end = parse_time(fields, "end")?;
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return Err(ApiError::validation("end", "is before `start`"));
    }
    let top_k = match fields.get("top_k").map(|v| v.trim()) {
        None | Some("") => DEFAULT_TOP_K,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=MAX_TOP_K).contains(k))
            .ok_or_else(|| {
                ApiError::validation("top_k", format!("a whole number from 1 to {MAX_TOP_K}"))
            })?,
    };
    let max_distance = match fields.get("max_distance").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && (0.0..=2.0).contains(d))
                .ok_or_else(|| ApiError::validation("max_distance", "a number from 0 to 2"))?,
        ),
    };
    let asked: Option<Vec<String>> = match fields.get("camera_ids").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) if v.chars().count() > 10_000 => {
            return Err(ApiError::validation(
                "camera_ids",
                "at most 10000 characters",
            ));
        }
        Some(v) => {
            let ids: Vec<String> = v.split(',').map(|c| c.trim().to_string()).collect();
            if ids.iter().any(|c| c.is_empty() || c.chars().count() > 200) {
                return Err(ApiError::validation(
                    "camera_ids",
                    "camera ids separated by commas, none empty or longer than 200 characters",
                ));
            }
            Some(ids)
        }
    };
    // A key restricted to some cameras searches only those.
    let camera_ids = match (asked, allowed) {
        (None, allowed) => allowed,
        (Some(asked), None) => Some(asked),
        (Some(asked), Some(allowed)) => {
            Some(asked.into_iter().filter(|c| allowed.contains(c)).collect())
        }
    };
    Ok(Params {
        filter: AppearanceFilter {
            start,
            end,
            camera_ids,
        },
        top_k,
        max_distance,
    })
}

fn hit_dto(row: AppearanceRow, distance: f64, clips: Vec<ClipDto>) -> FaceSearchHit {
    FaceSearchHit {
        clips,
        zones: row
            .zone_visits()
            .into_iter()
            .map(|z| ZoneVisitDto {
                zone: z.zone,
                entered_at: z.entered_at,
                exited_at: z.exited_at,
            })
            .collect(),
        entry_frame: row.entry().map(evidence_dto),
        exit_frame: row.exit().map(evidence_dto),
        thumbnail_url: media_url(&row.face_crop),
        face_seen_at: from_micros(row.face_at_us),
        entered_at: from_micros(row.start_us),
        exited_at: from_micros(row.end_us),
        dwell_seconds: row.dwell_seconds,
        frames: row.frames,
        similarity: similarity(distance),
        distance,
        track_id: row.track_id,
        camera_id: row.camera_id,
    }
}

/// Face search.
pub struct SearchApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Subjects")]
impl SearchApi {
    /// Search by face.
    ///
    /// Multipart: `image` (one JPEG or PNG showing exactly one face), optional `start` and
    /// `end` (RFC 3339: tracks seen at any moment in between), `camera_ids` (comma separated),
    /// `top_k` (1–100, default 10) and `max_distance` (0–2, default the calibrated
    /// `face_match_distance`). Stage 1 identifies the face among enrolled subjects (calibrated
    /// distance and margin); on a match the hits are that subject's appearances, searched with
    /// every enrolled face of the subject and the picture. Stage 2 otherwise searches the
    /// appearances with the picture. One hit per track, nearest first, with its entry and exit
    /// frames and face thumbnail; `search_stats` says which stage answered and what it
    /// searched. 422 `INVALID_IMAGE` or `FACE_COUNT` for a picture that cannot be searched by,
    /// `VALIDATION_FAILED` for a bad field; 503 `MODELS_UNAVAILABLE` when the face models cannot
    /// run. A key restricted to cameras searches only those.
    #[oai(path = "/search/face", method = "post", operation_id = "search_face")]
    async fn search_face(
        &self,
        app: Data<&App>,
        auth: Auth,
        body: Upload<FaceSearchForm>,
    ) -> Result<Json<FaceSearchResult>, ApiError> {
        let principal = auth.require("search_face")?;
        let started = Instant::now();
        let params = params(&body.fields, only_cameras(principal))?;
        if body.files.is_empty() {
            return Err(ApiError::validation("image", "a picture is required"));
        }
        let picture = body.files.into_iter().next().expect("one picture");
        let found = search_face(
            &app,
            FaceQuery {
                picture,
                part: "image",
                filter: params.filter,
                top_k: params.top_k,
                max_distance: params.max_distance,
            },
        )
        .await?;
        let subject = found.subject.map(|s| IdentifiedSubject {
            similarity: similarity(s.distance),
            id: s.id,
            name: s.name,
            category: s.category,
            distance: s.distance,
            second_distance: s.second_distance,
        });
        let (hits, method, vectors_searched, raw_hits) = (
            found.hits,
            found.method,
            found.vectors_searched,
            found.raw_hits,
        );
        let tracks: Vec<String> = hits.iter().map(|(r, _)| r.track_id.clone()).collect();
        let mut clips: BTreeMap<String, Vec<ClipDto>> = BTreeMap::new();
        for (track, clip) in clips_of_tracks(app.pool(), &tracks)
            .await
            .map_err(ApiError::from)?
        {
            clips.entry(track).or_default().push(clip_dto(clip));
        }
        let hits: Vec<FaceSearchHit> = hits
            .into_iter()
            .map(|(r, d)| {
                let shown = clips.remove(&r.track_id).unwrap_or_default();
                hit_dto(r, d, shown)
            })
            .collect();
        let search_stats = SearchStats {
            stage: if subject.is_some() {
                "subject"
            } else {
                "appearances"
            }
            .into(),
            method: method.as_str().into(),
            vectors_searched,
            raw_hits,
            unique_tracks: hits.len() as u64,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        Ok(Json(FaceSearchResult {
            subject,
            hits,
            search_stats,
        }))
    }
}
