//! Media by hash: `Range` requests (206/416) and signed, expiring URLs that a browser can use
//! without an API key.
//!
//! A signed URL is `/api/v1/media/{sha256}/signed?exp={unix seconds}&sig={hex}` where `sig` is
//! HMAC-SHA256 under the node pepper of `media:{sha256}:{exp}`: every node sharing the pepper
//! (as nodes sharing a database must) accepts every node's URLs, and nothing is stored.

use chrono::{DateTime, Utc};
use poem::Body;
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, ResponseContent};
use serde_json::json;

use super::ApiTags;
use super::auth::Auth;
use super::error::ApiError;
use crate::app::{App, Principal};

/// Longest a signed URL may live.
pub const MAX_TTL_SECS: u64 = crate::links::MAX_TTL_SECS;
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// Which bytes of a body of `len` bytes a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// No range, or one this server does not serve (several ranges, another unit): the whole.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// A range outside the body.
    Unsatisfiable,
}

/// Parses a `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against a body of `len` bytes.
pub fn parse_range(header: Option<&str>, len: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => {
            if start >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(start, end.min(len - 1))
            }
        }
        (Ok(_), Ok(_)) => Ranged::Whole,
        (Ok(start), Err(_)) if b.is_empty() => {
            if start >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(start, len - 1)
            }
        }
        (Err(_), Ok(suffix)) if a.is_empty() => {
            if suffix == 0 || len == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(len.saturating_sub(suffix), len - 1)
            }
        }
        _ => Ranged::Whole,
    }
}

/// Stored media: a JPEG frame or crop, or an MP4 clip.
#[derive(ResponseContent)]
pub enum MediaBody {
    /// A frame or a crop.
    #[oai(content_type = "image/jpeg")]
    Jpeg(Binary<Body>),
    /// A clip.
    #[oai(content_type = "video/mp4")]
    Mp4(Binary<Body>),
}

impl MediaBody {
    /// `body` (part of a file that is an MP4 or not) with its content type.
    fn of(body: Body, mp4: bool) -> Self {
        if mp4 {
            MediaBody::Mp4(Binary(body))
        } else {
            MediaBody::Jpeg(Binary(body))
        }
    }
}

/// Larger reads are streamed from the file instead of read into memory first.
const STREAM_FROM: u64 = 1 << 20;

/// Whether stored media is an MP4 file, by the blob store's one rule (it opens with an `ftyp`
/// box); else it is a JPEG.
fn is_mp4(media: &[u8]) -> bool {
    vigil_actors::blob::content_type_of(media) == "video/mp4"
}

/// Stored media, whole or in part.
#[derive(ApiResponse)]
pub enum MediaResponse {
    /// The stored media.
    #[oai(status = 200)]
    Ok(
        MediaBody,
        /// Media never changes: cache it forever.
        #[oai(header = "Cache-Control")]
        String,
        /// `bytes`: ranges are served.
        #[oai(header = "Accept-Ranges")]
        String,
    ),
    /// The requested range.
    #[oai(status = 206)]
    Partial(
        MediaBody,
        /// `bytes start-end/length`.
        #[oai(header = "Content-Range")]
        String,
        /// Media never changes: cache it forever.
        #[oai(header = "Cache-Control")]
        String,
    ),
    /// The range lies outside the media.
    #[oai(status = 416)]
    RangeNotSatisfiable(
        Json<super::error::ErrorBody>,
        /// `bytes */length`.
        #[oai(header = "Content-Range")]
        String,
    ),
}

/// Answers a request with `range` for the stored media named `sha256`, reading from disk only
/// the bytes it sends (a seek in a clip reads that part, not the whole file), and streaming
/// large reads (a whole clip) instead of holding them in memory.
async fn serve(app: &App, sha256: &str, range: Option<&str>) -> Result<MediaResponse, ApiError> {
    let len = stored(app, sha256).await?;
    let read = |start: u64, n: u64| async move {
        let blobs = app.ingest().blobs();
        if n >= STREAM_FROM {
            let reader = blobs.reader(sha256, start, n).await;
            let reader = reader.map_err(ApiError::internal)?;
            Ok::<_, ApiError>(Body::from_async_read(
                reader.ok_or_else(|| not_found(sha256))?,
            ))
        } else {
            let bytes = blobs.get_range(sha256, start, n).await;
            let bytes = bytes.map_err(ApiError::internal)?;
            Ok(Body::from(bytes.ok_or_else(|| not_found(sha256))?))
        }
    };
    let mp4 = || async {
        let head = app.ingest().blobs().get_range(sha256, 0, 8).await;
        let head = head.map_err(ApiError::internal)?;
        Ok::<_, ApiError>(is_mp4(&head.ok_or_else(|| not_found(sha256))?))
    };
    Ok(match parse_range(range, len) {
        Ranged::Whole => MediaResponse::Ok(
            MediaBody::of(read(0, len).await?, mp4().await?),
            CACHE_FOREVER.into(),
            "bytes".into(),
        ),
        Ranged::Part(start, end) => MediaResponse::Partial(
            MediaBody::of(read(start, end - start + 1).await?, mp4().await?),
            format!("bytes {start}-{end}/{len}"),
            CACHE_FOREVER.into(),
        ),
        Ranged::Unsatisfiable => MediaResponse::RangeNotSatisfiable(
            Json(super::error::ErrorBody {
                error: super::error::ErrorDetail {
                    code: "RANGE_NOT_SATISFIABLE".into(),
                    message: format!("the media is {len} bytes; the range lies outside it"),
                    details: json!({"length": len}),
                },
                request_id: super::error::current_request_id(),
            }),
            format!("bytes */{len}"),
        ),
    })
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed URL.
#[derive(Debug, Clone, Object)]
pub struct SignedUrl {
    /// Path and query of the signed URL (append to the server's base URL); or, where media
    /// live in a bucket that presigns (`s3_presign`), the bucket's absolute presigned URL.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

fn not_found(sha256: &str) -> ApiError {
    ApiError::not_found("MEDIA_NOT_FOUND", format!("no media `{sha256}`"))
}

/// The size of the stored media named `sha256` (404 `MEDIA_NOT_FOUND` when there is none).
async fn stored(app: &App, sha256: &str) -> Result<u64, ApiError> {
    app.ingest()
        .blobs()
        .size(sha256)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| not_found(sha256))
}

/// 403 for a key restricted to some cameras: a blob does not record its camera, so such a key
/// reads none by hash rather than any.
fn unrestricted(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_camera_restricted() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "a key restricted to some cameras cannot read media by hash",
            json!({}),
        ));
    }
    Ok(())
}

/// Signed media endpoints.
pub struct MediaApi;

#[OpenApi(tag = "ApiTags::Cameras")]
impl MediaApi {
    /// A stored frame, crop or clip.
    ///
    /// The JPEG or MP4 whose SHA-256 (hex) events name (`entry_frame.blob`, `best_face.crop`,
    /// a clip's `media`, …), served as `image/jpeg` or `video/mp4`.
    /// Keys restricted to some cameras get 403 (media does not record its camera). A single
    /// `Range: bytes=…` is answered 206 with `Content-Range`, or 416 outside the media. For a
    /// URL that works without a key, see `POST /api/v1/media/{sha256}/sign`.
    #[oai(
        path = "/api/v1/media/:sha256",
        method = "get",
        operation_id = "get_media"
    )]
    async fn media(
        &self,
        app: Data<&App>,
        auth: Auth,
        sha256: Path<String>,
        #[oai(name = "Range", validator(max_length = 200))] range: Header<Option<String>>,
    ) -> Result<MediaResponse, ApiError> {
        let principal = auth.require("get_media")?;
        unrestricted(principal)?;
        serve(&app, &sha256.0, range.0.as_deref()).await
    }

    /// Sign a media URL.
    ///
    /// A URL to the media that works without a key until it expires (`ttl_secs`, 1 to 604800,
    /// default 3600): for an `<img>` in a browser. Where media live in an S3-compatible bucket
    /// with `s3_presign` on, the bucket's own presigned URL (absolute), else a path on this
    /// server. Keys restricted to some cameras get 403,
    /// as for `GET /api/v1/media/{sha256}`.
    #[oai(
        path = "/api/v1/media/:sha256/sign",
        method = "post",
        operation_id = "sign_media"
    )]
    async fn sign(
        &self,
        app: Data<&App>,
        auth: Auth,
        #[oai(validator(pattern = "^[0-9a-f]{64}$"))] sha256: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "604800")))] ttl_secs: Query<
            Option<u64>,
        >,
    ) -> Result<Json<SignedUrl>, ApiError> {
        let principal = auth.require("sign_media")?;
        unrestricted(principal)?;
        let ttl = ttl_secs.0.unwrap_or(3600);
        if !(1..=MAX_TTL_SECS).contains(&ttl) {
            return Err(ApiError::validation(
                "ttl_secs",
                format!("must be between 1 and {MAX_TTL_SECS}"),
            ));
        }
        stored(&app, &sha256.0).await?;
        let presigned = app
            .ingest()
            .blobs()
            .presigned(&sha256.0, std::time::Duration::from_secs(ttl))
            .await
            .map_err(ApiError::internal)?;
        if let Some(url) = presigned {
            let expires_at = Utc::now() + chrono::Duration::seconds(ttl as i64);
            return Ok(Json(SignedUrl { url, expires_at }));
        }
        let (url, expires_at) = app.links().signed_path(&sha256.0, ttl);
        Ok(Json(SignedUrl { url, expires_at }))
    }

    /// Media through a signed URL.
    ///
    /// No key: the URL's `exp` and `sig` (from `POST /api/v1/media/{sha256}/sign`) are the
    /// authorisation. 403 `SIGNATURE_INVALID` or `URL_EXPIRED` otherwise. Serves `Range`
    /// requests like `GET /api/v1/media/{sha256}`.
    #[oai(
        path = "/api/v1/media/:sha256/signed",
        method = "get",
        operation_id = "get_signed_media"
    )]
    async fn signed(
        &self,
        app: Data<&App>,
        #[oai(validator(pattern = "^[0-9a-f]{64}$"))] sha256: Path<String>,
        exp: Query<i64>,
        #[oai(validator(pattern = "^[0-9a-f]{64}$"))] sig: Query<String>,
        #[oai(name = "Range", validator(max_length = 200))] range: Header<Option<String>>,
    ) -> Result<MediaResponse, ApiError> {
        if !same(&app.links().signature(&sha256.0, exp.0), &sig.0) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "SIGNATURE_INVALID",
                "the URL's signature does not match; sign it again",
                json!({}),
            ));
        }
        if exp.0 < Utc::now().timestamp() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "URL_EXPIRED",
                "the signed URL has expired; sign it again",
                json!({"expired_at": exp.0}),
            ));
        }
        serve(&app, &sha256.0, range.0.as_deref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_against_the_length() {
        assert_eq!(parse_range(None, 100), Ranged::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ranged::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ranged::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ranged::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-500"), 100), Ranged::Part(0, 99));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ranged::Part(50, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ranged::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Ranged::Whole);
        assert_eq!(parse_range(Some("bytes=9-3"), 100), Ranged::Whole);
        assert_eq!(parse_range(Some("bytes=x-y"), 100), Ranged::Whole);
    }
}
