//! Request bodies: `JsonBody<T>`, a JSON body with precise errors, and `Upload<F>`, a
//! multipart upload of pictures and text fields.
//!
//! Syntax errors are 400 `MALFORMED_JSON`; a body that parses but does not fit the schema is
//! 422 `VALIDATION_FAILED` whose `details.field` is the path of the offending field
//! (`features.crowd`, `zones[0].polygon[2].x`). The body is read with the configured size limit
//! (413 beyond it), whatever the `Content-Length` header claims.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use poem::http::StatusCode;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::ParseFromJSON;
use poem_openapi::types::Type;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;

/// The largest bodies accepted by any route, put into request data by the server: JSON
/// (`max_body_bytes`) and media uploads (`max_upload_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    /// Cap of JSON bodies.
    pub json: usize,
    /// Cap of bodies that carry pictures (multipart frames, base64 images).
    pub upload: usize,
}

impl BodyLimit {
    /// The cap for a body of type `T`.
    pub fn for_media(self, media: bool) -> usize {
        if media { self.upload } else { self.json }
    }
}

/// The size cap of one request body type; the effective cap is the smaller of this and
/// [`BodyLimit`].
pub trait BodyLimits {
    /// Largest body in bytes.
    const MAX_BYTES: usize;
    /// Whether the body carries a picture: it is capped by `max_upload_bytes` instead of
    /// `max_body_bytes`, and its strings by that cap instead of [`MAX_STRING_BYTES`].
    const MEDIA: bool = false;
    /// Whether the extractor checks the validators the document declares (lengths, ranges,
    /// patterns, item counts). Types whose domain checks every declared rule, naming the field
    /// more precisely, leave it off.
    const CHECK_DECLARED: bool = false;
}

/// Deepest nesting of arrays and objects accepted in a body.
pub const MAX_DEPTH: usize = 16;
/// Longest string accepted anywhere in a body, in bytes.
pub const MAX_STRING_BYTES: usize = 16 * 1024;
/// Most elements of one array.
pub const MAX_ARRAY_LEN: usize = 4096;
/// Most members of one object.
pub const MAX_OBJECT_KEYS: usize = 256;

/// Checks the shape caps above; the error names the offending field's path.
fn check_shape(
    value: &serde_json::Value,
    path: &str,
    depth: usize,
    max_string: usize,
) -> Result<(), ApiError> {
    use serde_json::Value;
    let here = || {
        if path.is_empty() {
            "body".to_string()
        } else {
            path.to_string()
        }
    };
    if depth > MAX_DEPTH {
        return Err(ApiError::validation(
            here(),
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    match value {
        // A `null` member means "not set" (it is taken out after this check, so it still counts
        // against the member cap); a `null` reached here is an array item.
        Value::Null => Err(ApiError::validation(
            here(),
            "null is not accepted here: leave the item out",
        )),
        Value::String(s) if s.len() > max_string => Err(ApiError::validation(
            here(),
            format!("strings are at most {max_string} bytes"),
        )),
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_LEN {
                return Err(ApiError::validation(
                    here(),
                    format!("arrays hold at most {MAX_ARRAY_LEN} items"),
                ));
            }
            items.iter().enumerate().try_for_each(|(i, v)| {
                check_shape(v, &format!("{path}[{i}]"), depth + 1, max_string)
            })
        }
        Value::Object(map) => {
            if map.len() > MAX_OBJECT_KEYS {
                return Err(ApiError::validation(
                    here(),
                    format!("objects hold at most {MAX_OBJECT_KEYS} members"),
                ));
            }
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .try_for_each(|(k, v)| {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    check_shape(v, &child, depth + 1, max_string)
                })
        }
        _ => Ok(()),
    }
}

/// Takes every `null` member out of the objects in `value`: many clients send `null` for
/// "not set", which is what leaving a member out means in every request body of this API. An
/// optional field then takes its default; a required one is reported missing, by name.
/// Answers the JSON Pointers of the members it took out.
fn drop_null_members(value: &mut serde_json::Value) -> Vec<String> {
    fn walk(value: &mut serde_json::Value, at: &str, out: &mut Vec<String>) {
        use serde_json::Value;
        let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
        match value {
            Value::Object(map) => {
                map.retain(|k, v| {
                    if v.is_null() {
                        out.push(format!("{at}/{}", escape(k)));
                    }
                    !v.is_null()
                });
                for (k, v) in map.iter_mut() {
                    walk(v, &format!("{at}/{}", escape(k)), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(v, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut dropped = Vec::new();
    walk(value, "", &mut dropped);
    dropped
}

/// A `null` member stands for "not set" only where the member could be set: one that names no
/// field (`{"colour": null}`) is refused as unknown, like any unknown member. Each dropped
/// member is put back alone and the body deserialised again; serde refuses an unknown member
/// whatever its value.
fn refuse_unknown_nulls<T: DeserializeOwned>(
    stripped: &serde_json::Value,
    dropped: &[String],
) -> Result<(), ApiError> {
    for pointer in dropped {
        let Some((parent, key)) = pointer.rsplit_once('/') else {
            continue;
        };
        let mut probe = stripped.clone();
        let Some(map) = probe.pointer_mut(parent).and_then(|v| v.as_object_mut()) else {
            continue;
        };
        map.insert(
            key.replace("~1", "/").replace("~0", "~"),
            serde_json::Value::Null,
        );
        if let Err(err) = serde_path_to_error::deserialize::<_, T>(probe.clone())
            && err.inner().to_string().starts_with("unknown field")
        {
            return deserialize::<T>(probe).map(drop);
        }
    }
    Ok(())
}

/// Bytes of an oversized picture upload read (and thrown away) before answering 413, so that
/// a client still sending gets the answer instead of a broken connection.
const DRAIN_BYTES: usize = 256 << 20;

/// Reads a body of at most `limit` bytes; a larger one is 413 `PAYLOAD_TOO_LARGE`. With
/// `drain` (bodies carrying pictures, which clients send in large pieces) the rest of an
/// oversized body, up to [`DRAIN_BYTES`], is read first; otherwise reading stops at the limit.
pub async fn read_limited(
    body: poem::Body,
    limit: usize,
    drain: bool,
) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds {limit} bytes"),
            json!({"limit_bytes": limit}),
        )
    };
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            e.to_string(),
            json!({}),
        )
    };
    if !drain {
        return body.into_bytes_limit(limit).await.map_err(|err| match err {
            poem::error::ReadBodyError::PayloadTooLarge => too_large(),
            other => bad(&other),
        });
    }
    let mut stream = body.into_bytes_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(&e))?;
        seen += chunk.len();
        if seen > limit {
            if seen > DRAIN_BYTES {
                break;
            }
            buf.clear();
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// A JSON body deserialised with serde and documented with poem-openapi.
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .map(str::trim)
            .is_some_and(|ct| ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + ParseFromJSON + DeserializeOwned + BodyLimits + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limit = request
            .data::<BodyLimit>()
            .map_or(1 << 20, |l| l.for_media(T::MEDIA))
            .min(T::MAX_BYTES);
        let bytes = read_limited(
            poem::Body::from_request(request, body).await?,
            limit,
            T::MEDIA,
        )
        .await?;
        let max_string = if T::MEDIA { limit } else { MAX_STRING_BYTES };
        let (value, dropped) = json_object(&bytes, max_string)?;
        let parsed = deserialize(value.clone())?;
        refuse_unknown_nulls::<T>(&value, &dropped)?;
        if T::CHECK_DECLARED {
            check_declared::<T>(value)?;
        }
        Ok(JsonBody(parsed))
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: Type + ParseFromJSON + DeserializeOwned + BodyLimits + Send);

/// Checks the body against the validators the OpenAPI document declares for `T` (lengths,
/// ranges, patterns, item counts), so that what the document refuses the server refuses too.
/// Runs after serde accepted the body, whose errors name the field more precisely.
fn check_declared<T: ParseFromJSON>(value: serde_json::Value) -> Result<(), ApiError> {
    T::parse_from_json(Some(value)).map(drop).map_err(|e| {
        let message = e.into_message();
        let field = message
            .split("field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("body")
            .to_string();
        ApiError::validation(field, message)
    })
}

/// Parses `bytes` as `T` (every request body of this API is a JSON object), with the error
/// mapping of this module.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json_with(bytes, MAX_STRING_BYTES)
}

/// [`parse_json`] with strings capped at `max_string` bytes.
pub fn parse_json_with<T: DeserializeOwned>(
    bytes: &[u8],
    max_string: usize,
) -> Result<T, ApiError> {
    let (value, dropped) = json_object(bytes, max_string)?;
    let parsed = deserialize(value.clone())?;
    refuse_unknown_nulls::<T>(&value, &dropped)?;
    Ok(parsed)
}

/// Parses `bytes` as a JSON object within the shape caps, its `null` members taken out (their
/// JSON Pointers answered beside it).
fn json_object(
    bytes: &[u8],
    max_string: usize,
) -> Result<(serde_json::Value, Vec<String>), ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_JSON",
            format!("request body is not valid JSON: {e}"),
            json!({"line": e.line(), "column": e.column()}),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::validation("body", "must be a JSON object"));
    }
    check_shape(&value, "", 0, max_string)?;
    let dropped = drop_null_members(&mut value);
    Ok((value, dropped))
}

/// Deserialises a checked body, naming the offending field on failure.
fn deserialize<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let reason = err.into_inner().to_string();
        // serde reports unknown and missing fields against their parent: name the field itself.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|prefix| reason.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_string(),
            (full, Some(name)) if full == name || full.ends_with(&format!(".{name}")) => {
                full.to_string()
            }
            (".", None) => "body".to_string(),
            (parent, Some(name)) => format!("{parent}.{name}"),
            (parent, None) => parent.to_string(),
        };
        ApiError::validation(field, reason)
    })
}

// ---------------------------------------------------------------------------------------------
// Multipart uploads of pictures.

/// A multipart form of pictures and text fields. The form's own `Multipart` derive documents
/// the body in the OpenAPI document; [`Upload`] parses it.
pub trait UploadForm: Payload {
    /// The text parts it takes besides the pictures, each at most once.
    const FIELDS: &'static [&'static str];
    /// The text parts it takes any number of times, kept in order in [`Upload::lists`].
    const LISTS: &'static [&'static str] = &[];
    /// The name of the pictures' parts.
    const FILES: &'static str = "files";
    /// The most pictures it takes.
    const MAX_FILES: usize;
}

/// A parsed upload of form `F`: each picture's file name (or `#index`) and bytes, and the
/// text fields. The body is read with the upload size limit (413 beyond it); a malformed
/// body is 400, an unknown or repeated part 422 naming it.
pub struct Upload<F> {
    /// Each picture's file name (or `#index`) and bytes, in order.
    pub files: Vec<(String, bytes::Bytes)>,
    /// The single-valued text fields given.
    pub fields: BTreeMap<String, String>,
    /// The repeatable text fields given, each value in order.
    pub lists: BTreeMap<String, Vec<String>>,
    form: PhantomData<fn() -> F>,
}

impl<F: UploadForm> Payload for Upload<F> {
    const CONTENT_TYPE: &'static str = "multipart/form-data";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("multipart/form-data"))
    }

    fn schema_ref() -> MetaSchemaRef {
        F::schema_ref()
    }

    fn register(registry: &mut Registry) {
        F::register(registry);
    }
}

fn malformed(e: multer::Error) -> poem::Error {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        format!("malformed multipart body: {e}"),
        json!({}),
    )
    .into()
}

impl<F: UploadForm> ParsePayload for Upload<F> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limit = request.data::<BodyLimit>().map_or(20 << 20, |l| l.upload);
        let content_type = request
            .header("content-type")
            .unwrap_or_default()
            .to_string();
        let boundary = multer::parse_boundary(&content_type).map_err(|e| {
            poem::Error::from(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("not a multipart body: {e}"),
                json!({}),
            ))
        })?;
        let bytes =
            read_limited(poem::Body::from_request(request, body).await?, limit, true).await?;
        let mut upload = Self {
            files: Vec::new(),
            fields: BTreeMap::new(),
            lists: BTreeMap::new(),
            form: PhantomData,
        };
        // A form with no parts is only its closing delimiter, which multer calls malformed:
        // it is an upload of nothing (422 later), not a syntax error.
        let closing = format!("--{boundary}--");
        if bytes.trim_ascii() == closing.as_bytes() || bytes.trim_ascii().is_empty() {
            return Ok(upload);
        }
        let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        while let Some(field) = multipart.next_field().await.map_err(malformed)? {
            match field.name().map(str::to_string) {
                Some(name) if name == F::FILES => {
                    if upload.files.len() == F::MAX_FILES {
                        let message = match F::MAX_FILES {
                            1 => "one picture, not more".to_string(),
                            n => format!("1 to {n} pictures per request, not more"),
                        };
                        return Err(ApiError::validation(F::FILES, message).into());
                    }
                    let file = field
                        .file_name()
                        .map_or_else(|| format!("#{}", upload.files.len()), str::to_string);
                    let data = field.bytes().await.map_err(malformed)?;
                    upload.files.push((file, data));
                }
                Some(name) if F::LISTS.contains(&name.as_str()) => {
                    let text = field.text().await.map_err(malformed)?;
                    upload.lists.entry(name).or_default().push(text);
                }
                Some(name) if F::FIELDS.contains(&name.as_str()) => {
                    let text = field.text().await.map_err(malformed)?;
                    if upload.fields.insert(name.clone(), text).is_some() {
                        return Err(ApiError::validation(name, "given more than once").into());
                    }
                }
                other => {
                    let takes: Vec<String> = std::iter::once(F::FILES)
                        .chain(F::FIELDS.iter().copied())
                        .chain(F::LISTS.iter().copied())
                        .map(|f| format!("`{f}`"))
                        .collect();
                    return Err(ApiError::validation(
                        other.unwrap_or_else(|| "(unnamed part)".into()),
                        format!("not a part of this form, which takes {}", takes.join(", ")),
                    )
                    .into());
                }
            }
        }
        Ok(upload)
    }
}

poem_openapi::impl_apirequest_for_payload!(Upload<F>, F: UploadForm);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        crowd: bool,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        features: Option<Inner>,
    }

    fn field_of(err: ApiError) -> (u16, String) {
        match err {
            ApiError::Unprocessable(body) => (
                422,
                body.0.error.details["field"].as_str().unwrap().to_string(),
            ),
            ApiError::BadRequest(body) => (400, body.0.error.code.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_400_and_schema_errors_name_the_field() {
        assert_eq!(
            field_of(parse_json::<Outer>(b"{\"name\": ").unwrap_err()),
            (400, "MALFORMED_JSON".into())
        );
        let err =
            parse_json::<Outer>(br#"{"name": "a", "features": {"crowd": "maybe"}}"#).unwrap_err();
        assert_eq!(field_of(err), (422, "features.crowd".into()));
        let err = parse_json::<Outer>(br#"{"name": "a", "colour": "red"}"#).unwrap_err();
        assert_eq!(field_of(err), (422, "colour".into()));
        // Null members count against the member cap like any other.
        let crowded = format!(
            "{{\"name\": \"a\", {}}}",
            (0..MAX_OBJECT_KEYS)
                .map(|i| format!("\"x{i}\": null"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(
            field_of(parse_json::<Outer>(crowded.as_bytes()).unwrap_err()),
            (422, "body".into())
        );
        // A null member that names no field is unknown, like any unknown member.
        for body in [
            &br#"{"name": "a", "colour": null}"#[..],
            br#"{"name": "a", "features": {"crowd": true, "glitter": null}}"#,
        ] {
            let err = parse_json::<Outer>(body).unwrap_err();
            let (status, field) = field_of(err);
            assert_eq!(status, 422);
            assert!(field == "colour" || field == "features.glitter", "{field}");
        }
        let err = parse_json::<Outer>(br#"{"name": null, "features": null}"#).unwrap_err();
        assert_eq!(
            field_of(err),
            (422, "name".into()),
            "null for a required field is a missing field"
        );
        assert!(
            parse_json::<Outer>(br#"{"name": "a", "features": null}"#).is_ok(),
            "null for an optional field is absent"
        );
        let err =
            parse_json::<Outer>(br#"{"name": "a", "features": {"crowd": null}}"#).unwrap_err();
        assert_eq!(field_of(err), (422, "features.crowd".into()));
        let err = parse_json::<Outer>(br#"{"features": {"crowd": true}}"#).unwrap_err();
        assert_eq!(field_of(err), (422, "name".into()));
        let err = parse_json::<Outer>(br#"{"name": "a", "features": {"crowd": true, "x": 1}}"#)
            .unwrap_err();
        assert_eq!(field_of(err), (422, "features.x".into()));
        assert_eq!(
            field_of(parse_json::<Outer>(b"[1]").unwrap_err()),
            (422, "body".into())
        );
        assert!(parse_json::<Outer>(br#"{"name": "a"}"#).is_ok());
        let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(MAX_STRING_BYTES + 1));
        assert_eq!(
            field_of(parse_json::<Outer>(long.as_bytes()).unwrap_err()),
            (422, "name".into())
        );
        let deep = format!(
            r#"{{"name": "a", "features": {}{}}}"#,
            "[".repeat(20),
            "]".repeat(20)
        );
        let (status, field) = field_of(parse_json::<Outer>(deep.as_bytes()).unwrap_err());
        assert_eq!(status, 422);
        assert!(field.starts_with("features[0]"), "{field}");
    }
}
