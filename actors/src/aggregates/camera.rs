//! The camera aggregate (stream `camera-{id}`): registration, settings, removal.

use chrono::{DateTime, Utc};
use vigil_schemas::CameraEvent;
use vigil_schemas::events::{
    CameraFeatures, CameraRegistered, CameraRemoved, CameraUpdated, Zone, camera_stream,
};

use crate::aggregates::Aggregate;

/// Highest sampling rate a camera may ask for.
pub const MAX_SAMPLE_FPS: f64 = 30.0;
/// Longest camera name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest prompt.
pub const MAX_PROMPT_CHARS: usize = 4000;
/// Longest source URL.
pub const MAX_SOURCE_CHARS: usize = 2048;
/// Most zones per camera.
pub const MAX_ZONES: usize = 32;
/// Most points per zone polygon.
pub const MAX_ZONE_POINTS: usize = 64;

/// A registered camera, as the write side knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Source URL or `push`.
    pub source: String,
    /// Ingest on or off.
    pub enabled: bool,
    /// Sampling rate.
    pub sample_fps: f64,
    /// Analyses.
    pub features: CameraFeatures,
    /// Prompt.
    pub prompt: String,
    /// Zones.
    pub zones: Vec<Zone>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// State of one camera stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraState {
    /// The camera, while registered and not removed.
    pub camera: Option<Camera>,
    /// Whether it was removed (a removed id cannot be registered again).
    pub removed: bool,
}

/// Registration of a new camera.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterCamera {
    /// Id (client-supplied or generated).
    pub id: String,
    /// Name.
    pub name: String,
    /// Source URL or `push`.
    pub source: String,
    /// Ingest on or off.
    pub enabled: bool,
    /// Sampling rate.
    pub sample_fps: f64,
    /// Analyses.
    pub features: CameraFeatures,
    /// Prompt.
    pub prompt: String,
    /// Zones.
    pub zones: Vec<Zone>,
}

/// A partial feature set: only the present flags change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeaturesPatch {
    /// Crowd.
    pub crowd: Option<bool>,
    /// Authorised people only.
    pub authorised: Option<bool>,
    /// Critical area.
    pub critical: Option<bool>,
    /// Sleep.
    pub sleep: Option<bool>,
    /// Theft.
    pub theft: Option<bool>,
    /// Intrusion.
    pub intrusion: Option<bool>,
    /// Loitering.
    pub loitering: Option<bool>,
    /// Appearance clips.
    pub clip_appearances: Option<bool>,
}

impl FeaturesPatch {
    /// `base` with the present flags replaced.
    pub fn apply(&self, base: CameraFeatures) -> CameraFeatures {
        CameraFeatures {
            crowd: self.crowd.unwrap_or(base.crowd),
            authorised: self.authorised.unwrap_or(base.authorised),
            critical: self.critical.unwrap_or(base.critical),
            sleep: self.sleep.unwrap_or(base.sleep),
            theft: self.theft.unwrap_or(base.theft),
            intrusion: self.intrusion.unwrap_or(base.intrusion),
            loitering: self.loitering.unwrap_or(base.loitering),
            clip_appearances: self.clip_appearances.unwrap_or(base.clip_appearances),
        }
    }
}

impl From<CameraFeatures> for FeaturesPatch {
    /// Every flag set to the value `features` holds.
    fn from(f: CameraFeatures) -> Self {
        Self {
            crowd: Some(f.crowd),
            authorised: Some(f.authorised),
            critical: Some(f.critical),
            sleep: Some(f.sleep),
            theft: Some(f.theft),
            intrusion: Some(f.intrusion),
            loitering: Some(f.loitering),
            clip_appearances: Some(f.clip_appearances),
        }
    }
}

/// A partial update: only the present fields change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraPatch {
    /// New name.
    pub name: Option<String>,
    /// New source.
    pub source: Option<String>,
    /// New enabled flag.
    pub enabled: Option<bool>,
    /// New sampling rate.
    pub sample_fps: Option<f64>,
    /// Flags to change.
    pub features: Option<FeaturesPatch>,
    /// New prompt.
    pub prompt: Option<String>,
    /// New zone list (replaces the old one).
    pub zones: Option<Vec<Zone>>,
}

/// Commands on a camera.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraCommand {
    /// Register it.
    Register(RegisterCamera),
    /// Change some settings.
    Update(CameraPatch),
    /// Remove it.
    Remove,
}

/// Why a camera command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CameraError {
    /// The id is taken (or was used by a removed camera).
    #[error("camera `{0}` already exists")]
    AlreadyExists(String),
    /// No such camera.
    #[error("camera not found")]
    NotFound,
    /// A field's value is not acceptable.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The offending field, as the API names it (`zones[1].polygon`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CameraError {
    CameraError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Ids that name an endpoint under `/api/v1/cameras/` and so cannot name a camera.
pub const RESERVED_IDS: &[&str] = &["test"];

/// Checks a camera id: 1–64 of `A–Z a–z 0–9 _ -`, not one of [`RESERVED_IDS`].
pub fn validate_id(id: &str) -> Result<(), CameraError> {
    if id.is_empty() || id.len() > 64 {
        return Err(invalid("id", "must be 1 to 64 characters"));
    }
    if RESERVED_IDS.contains(&id) {
        return Err(invalid(
            "id",
            format!("`{id}` is reserved: POST /api/v1/cameras/{id} is another endpoint"),
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid("id", "may hold only letters, digits, '-' and '_'"));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), CameraError> {
    if name.trim().is_empty() {
        return Err(invalid("name", "must not be blank"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks a source: `push`, an `rtsp://`, `rtsps://`, `http://` or `https://` URL with a
/// host, or a `file://` URL of an absolute path (no host, or `localhost`) with only the query
/// parameters `loop`, `realtime` and `start` ([`crate::source::file::parse_url`]); no
/// whitespace or control characters, at most 2048 characters. This is the pattern the OpenAPI
/// document publishes for the field, except that the pattern cannot check a file URL's query
/// values and percent-encoding. Whether a file lies in a folder this node may read is the
/// transports' check (`SourceFactory::check_source`), not the aggregate's.
pub fn validate_source(source: &str) -> Result<(), CameraError> {
    if source == "push" {
        return Ok(());
    }
    if source.chars().count() > MAX_SOURCE_CHARS {
        return Err(invalid(
            "source",
            format!("must be at most {MAX_SOURCE_CHARS} characters"),
        ));
    }
    if source.starts_with("file://") {
        return crate::source::file::parse_url(source)
            .map(|_| ())
            .map_err(|reason| invalid("source", reason));
    }
    let rest = ["rtsp://", "rtsps://", "http://", "https://"]
        .iter()
        .find_map(|scheme| source.strip_prefix(scheme))
        .ok_or_else(|| {
            invalid(
                "source",
                "must be `push` or a rtsp://, rtsps://, http://, https:// or file:// URL",
            )
        })?;
    if source.chars().any(|c| c <= ' ' || c == '\u{7f}') {
        return Err(invalid(
            "source",
            "URL must not contain whitespace or control characters",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.split_once('@') {
        Some((_, host)) => host,
        None => authority,
    };
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err(invalid("source", "URL has no host"));
    }
    Ok(())
}

fn validate_fps(fps: f64) -> Result<(), CameraError> {
    if !fps.is_finite() || fps <= 0.0 || fps > MAX_SAMPLE_FPS {
        return Err(invalid(
            "sample_fps",
            format!("must be above 0 and at most {MAX_SAMPLE_FPS}"),
        ));
    }
    Ok(())
}

fn validate_prompt(prompt: &str) -> Result<(), CameraError> {
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(invalid(
            "prompt",
            format!("must be at most {MAX_PROMPT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks zones: unique non-blank names, 3–64 points each, coordinates within [0, 1].
pub fn validate_zones(zones: &[Zone]) -> Result<(), CameraError> {
    validate_polygons("zones", MAX_ZONES, zones)
}

/// Checks a list of named polygons (zones, motion masks) called `field`: at most `max`,
/// names 1–100 characters and unique, 3 to [`MAX_ZONE_POINTS`] normalised points each.
pub fn validate_polygons(field: &str, max: usize, zones: &[Zone]) -> Result<(), CameraError> {
    if zones.len() > max {
        return Err(invalid(field, format!("at most {max} polygons")));
    }
    for (i, zone) in zones.iter().enumerate() {
        if zone.name.trim().is_empty() || zone.name.chars().count() > 100 {
            return Err(invalid(
                format!("{field}[{i}].name"),
                "must be 1 to 100 characters",
            ));
        }
        if zones[..i].iter().any(|z| z.name == zone.name) {
            return Err(invalid(
                format!("{field}[{i}].name"),
                "names must be unique",
            ));
        }
        if zone.polygon.len() < 3 || zone.polygon.len() > MAX_ZONE_POINTS {
            return Err(invalid(
                format!("{field}[{i}].polygon"),
                format!("must have 3 to {MAX_ZONE_POINTS} points"),
            ));
        }
        for (j, p) in zone.polygon.iter().enumerate() {
            let inside = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
            if !inside(p.x) || !inside(p.y) {
                return Err(invalid(
                    format!("{field}[{i}].polygon[{j}]"),
                    "coordinates are normalised: 0 ≤ x, y ≤ 1",
                ));
            }
        }
    }
    Ok(())
}

/// Marker type implementing [`Aggregate`] for cameras.
pub struct CameraAggregate;

impl Aggregate for CameraAggregate {
    type State = CameraState;
    type Command = CameraCommand;
    type Event = CameraEvent;
    type Error = CameraError;

    fn stream(id: &str) -> String {
        camera_stream(id)
    }

    fn decide(
        state: &CameraState,
        command: CameraCommand,
    ) -> Result<Vec<CameraEvent>, CameraError> {
        match command {
            CameraCommand::Register(reg) => {
                if let Some(existing) = &state.camera {
                    return Err(CameraError::AlreadyExists(existing.id.clone()));
                }
                if state.removed {
                    return Err(CameraError::AlreadyExists(reg.id));
                }
                validate_id(&reg.id)?;
                validate_name(&reg.name)?;
                validate_source(&reg.source)?;
                validate_fps(reg.sample_fps)?;
                validate_prompt(&reg.prompt)?;
                validate_zones(&reg.zones)?;
                Ok(vec![CameraEvent::Registered(CameraRegistered {
                    camera_id: reg.id,
                    name: reg.name.trim().to_string(),
                    source: reg.source,
                    enabled: reg.enabled,
                    sample_fps: reg.sample_fps,
                    features: reg.features,
                    prompt: reg.prompt,
                    zones: reg.zones,
                })])
            }
            CameraCommand::Update(patch) => {
                let camera = state.camera.as_ref().ok_or(CameraError::NotFound)?;
                let mut change = CameraUpdated {
                    camera_id: camera.id.clone(),
                    ..Default::default()
                };
                if let Some(name) = patch.name {
                    validate_name(&name)?;
                    let name = name.trim().to_string();
                    change.name = (name != camera.name).then_some(name);
                }
                if let Some(source) = patch.source {
                    validate_source(&source)?;
                    change.source = (source != camera.source).then_some(source);
                }
                if let Some(enabled) = patch.enabled {
                    change.enabled = (enabled != camera.enabled).then_some(enabled);
                }
                if let Some(fps) = patch.sample_fps {
                    validate_fps(fps)?;
                    change.sample_fps = (fps != camera.sample_fps).then_some(fps);
                }
                if let Some(features) = patch.features {
                    let features = features.apply(camera.features);
                    change.features = (features != camera.features).then_some(features);
                }
                if let Some(prompt) = patch.prompt {
                    validate_prompt(&prompt)?;
                    change.prompt = (prompt != camera.prompt).then_some(prompt);
                }
                if let Some(zones) = patch.zones {
                    validate_zones(&zones)?;
                    change.zones = (zones != camera.zones).then_some(zones);
                }
                let unchanged = CameraUpdated {
                    camera_id: camera.id.clone(),
                    ..Default::default()
                };
                if change == unchanged {
                    Ok(vec![])
                } else {
                    Ok(vec![CameraEvent::Updated(change)])
                }
            }
            CameraCommand::Remove => {
                let camera = state.camera.as_ref().ok_or(CameraError::NotFound)?;
                Ok(vec![CameraEvent::Removed(CameraRemoved {
                    camera_id: camera.id.clone(),
                })])
            }
        }
    }

    fn evolve(mut state: CameraState, event: &CameraEvent, at: DateTime<Utc>) -> CameraState {
        match event {
            CameraEvent::Registered(e) => {
                state.camera = Some(Camera {
                    id: e.camera_id.clone(),
                    name: e.name.clone(),
                    source: e.source.clone(),
                    enabled: e.enabled,
                    sample_fps: e.sample_fps,
                    features: e.features,
                    prompt: e.prompt.clone(),
                    zones: e.zones.clone(),
                    created_at: at,
                    updated_at: at,
                });
            }
            CameraEvent::Updated(e) => {
                if let Some(camera) = state.camera.as_mut() {
                    if let Some(v) = &e.name {
                        camera.name = v.clone();
                    }
                    if let Some(v) = &e.source {
                        camera.source = v.clone();
                    }
                    if let Some(v) = e.enabled {
                        camera.enabled = v;
                    }
                    if let Some(v) = e.sample_fps {
                        camera.sample_fps = v;
                    }
                    if let Some(v) = e.features {
                        camera.features = v;
                    }
                    if let Some(v) = &e.prompt {
                        camera.prompt = v.clone();
                    }
                    if let Some(v) = &e.zones {
                        camera.zones = v.clone();
                    }
                    camera.updated_at = at;
                }
            }
            CameraEvent::Removed(_) => {
                state.camera = None;
                state.removed = true;
            }
            // Ingest status lives on its own stream (`camerastatus-{id}`).
            CameraEvent::StatusChanged(_) => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::testing;
    use vigil_schemas::events::Point;

    fn register(id: &str) -> RegisterCamera {
        RegisterCamera {
            id: id.into(),
            name: "Lobby".into(),
            source: "rtsp://cam.local:554/live".into(),
            enabled: true,
            sample_fps: 2.0,
            features: CameraFeatures::default(),
            prompt: String::new(),
            zones: vec![],
        }
    }

    /// given `events`, when `command`, then the result.
    fn given_when(
        events: &[CameraEvent],
        command: CameraCommand,
    ) -> Result<Vec<CameraEvent>, CameraError> {
        testing::when::<CameraAggregate>(events, command)
    }

    fn registered(id: &str) -> CameraEvent {
        given_when(&[], CameraCommand::Register(register(id)))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn registers_a_new_camera() {
        let events = given_when(&[], CameraCommand::Register(register("lobby"))).unwrap();
        assert_eq!(events.len(), 1);
        let CameraEvent::Registered(e) = &events[0] else {
            panic!("expected Registered")
        };
        assert_eq!(e.camera_id, "lobby");
        assert_eq!(e.sample_fps, 2.0);
    }

    #[test]
    fn refuses_a_taken_or_removed_id() {
        let err = given_when(&[registered("a")], CameraCommand::Register(register("a")));
        assert_eq!(err, Err(CameraError::AlreadyExists("a".into())));
        let removed = CameraEvent::Removed(CameraRemoved {
            camera_id: "a".into(),
        });
        let err = given_when(
            &[registered("a"), removed],
            CameraCommand::Register(register("a")),
        );
        assert_eq!(err, Err(CameraError::AlreadyExists("a".into())));
    }

    #[test]
    fn update_emits_only_changed_fields() {
        let patch = CameraPatch {
            name: Some("Lobby".into()),
            enabled: Some(false),
            features: Some(FeaturesPatch {
                crowd: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events = given_when(&[registered("a")], CameraCommand::Update(patch)).unwrap();
        let expected = CameraUpdated {
            camera_id: "a".into(),
            enabled: Some(false),
            features: Some(CameraFeatures {
                crowd: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(events, vec![CameraEvent::Updated(expected)]);
    }

    #[test]
    fn update_without_change_emits_nothing() {
        let patch = CameraPatch {
            sample_fps: Some(2.0),
            ..Default::default()
        };
        assert_eq!(
            given_when(&[registered("a")], CameraCommand::Update(patch)),
            Ok(vec![])
        );
    }

    #[test]
    fn update_or_remove_of_unknown_camera_is_not_found() {
        let patch = CameraPatch {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(
            given_when(&[], CameraCommand::Update(patch)),
            Err(CameraError::NotFound)
        );
        assert_eq!(
            given_when(&[], CameraCommand::Remove),
            Err(CameraError::NotFound)
        );
    }

    #[test]
    fn removal_then_everything_is_not_found() {
        let events = given_when(&[registered("a")], CameraCommand::Remove).unwrap();
        assert_eq!(
            events,
            vec![CameraEvent::Removed(CameraRemoved {
                camera_id: "a".into()
            })]
        );
        let all = [registered("a"), events[0].clone()];
        assert_eq!(
            given_when(&all, CameraCommand::Remove),
            Err(CameraError::NotFound)
        );
    }

    #[test]
    fn validation_names_the_offending_field() {
        let field_of = |r: Result<Vec<CameraEvent>, CameraError>| match r {
            Err(CameraError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut bad = register("a");
        bad.sample_fps = 0.0;
        assert_eq!(
            field_of(given_when(&[], CameraCommand::Register(bad))),
            "sample_fps"
        );
        let mut bad = register("a");
        bad.source = "ftp://x".into();
        assert_eq!(
            field_of(given_when(&[], CameraCommand::Register(bad))),
            "source"
        );
        let mut bad = register("a");
        bad.source = "rtsp:///nohost".into();
        assert_eq!(
            field_of(given_when(&[], CameraCommand::Register(bad))),
            "source"
        );
        let mut bad = register("a b");
        bad.name = "x".into();
        assert_eq!(
            field_of(given_when(&[], CameraCommand::Register(bad))),
            "id"
        );
        let mut bad = register("a");
        bad.zones = vec![Zone {
            name: "door".into(),
            polygon: vec![
                Point { x: 0.0, y: 0.0 },
                Point { x: 1.5, y: 0.0 },
                Point { x: 0.0, y: 1.0 },
            ],
        }];
        assert_eq!(
            field_of(given_when(&[], CameraCommand::Register(bad))),
            "zones[0].polygon[1]"
        );
        let patch = CameraPatch {
            name: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(
            field_of(given_when(&[registered("a")], CameraCommand::Update(patch))),
            "name"
        );
    }

    #[test]
    fn accepted_sources() {
        for ok in [
            "push",
            "rtsp://h/x",
            "rtsp://user:pw@h:554/s",
            "http://h/mjpg",
            "https://h",
            "http://h?x#y",
            "file:///videos/clip.mp4",
            "file://localhost/videos/a%20clip.mkv",
            "file:///v/clip.avi?loop=true&realtime=false&start=2026-01-02T03:04:05Z",
            "file:///v/clip.avi?start=2026-01-02T04:04:05%2B01:00&loop=false",
        ] {
            assert_eq!(validate_source(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "h/x",
            "file://host/etc/passwd",
            "file://relative/clip.mp4",
            "file:clip.mp4",
            "FILE:///v/clip.mp4",
            "file:///v/",
            "file:///v/clip.mp4?loop=1",
            "file:///v/clip.mp4?rate=2",
            "file:///v/clip.mp4?start=now",
            "file:///v/clip.mp4?loop=true&loop=true",
            "file:///v/clip.mp4#t=1",
            "file:///v/a clip.mp4",
            "file:///v/%00.mp4",
            "file:///v/%FF.mp4",
            "http://",
            "http://:80/x",
            "rtsp://h /x",
            "RTSP://h",
            "http://a@b@c",
            "http://u@/x",
            "http://h/\u{1}",
        ] {
            assert!(validate_source(bad).is_err(), "{bad}");
        }
        // A file URL's refusal says what is wrong with it.
        let err = validate_source("file:///v/clip.mp4?speed=2").unwrap_err();
        assert!(
            matches!(&err, CameraError::Invalid { field, reason }
                if field == "source" && reason.contains("unknown query parameter `speed`")),
            "{err}"
        );
    }

    #[test]
    fn evolve_applies_updates_and_removal() {
        let update = CameraEvent::Updated(CameraUpdated {
            camera_id: "a".into(),
            prompt: Some("watch the door".into()),
            ..Default::default()
        });
        let state = testing::given::<CameraAggregate>(&[registered("a"), update]);
        let camera = state.camera.clone().unwrap();
        assert_eq!(camera.prompt, "watch the door");
        assert_eq!(camera.name, "Lobby");
        let removed = CameraEvent::Removed(CameraRemoved {
            camera_id: "a".into(),
        });
        let state = CameraAggregate::evolve(state, &removed, Utc::now());
        assert!(state.camera.is_none() && state.removed);
    }
}
