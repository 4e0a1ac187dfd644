//! Scene rules: pure functions from a camera's recent detections and tracks to findings.
//!
//! A [`RuleEngine`] holds one camera's memory (how long a crowd has lasted, which zone entries
//! already fired, how long a person has stayed or lain down). [`RuleEngine::observe`] takes one
//! analysed frame ([`Observation`]), the camera's [`CameraFeatures`] and its effective
//! [`CalibrationSettings`], and returns what the enabled rules found in it ([`Finding`]s). The
//! caller turns each finding into an incident, opening one or extending the open one with the
//! same [`Finding::dedup_key`] (which it prefixes with the camera).
//!
//! There is no I/O and no clock here: time comes from [`Observation::at`], so replaying the same
//! frames gives the same findings. Memory is bounded: what a rule remembers about a track goes
//! when [`RuleEngine::forget_track`] is called or when the track has not been seen for more than
//! [`FORGET_TRACK_AFTER_SECONDS`] of observation time.
//!
//! Persons scored below [`CalibrationSettings::min_person_score`] are invisible to every rule.
//! Zone names in the settings that are not zones of the camera are ignored.
//!
//! [`catalogue`] describes every rule for `GET /api/v1/rules`; [`validate_settings`] checks a
//! calibration before it is accepted; [`in_schedule`] evaluates weekly windows.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use vigil_schemas::events::{
    ActionKind, CalibrationSettings, CameraFeatures, IncidentKind, NormBox, ScheduleWindow,
    Severity, Weekday,
};

/// A track that has not been seen for longer than this much observation time is forgotten.
pub const FORGET_TRACK_AFTER_SECONDS: f64 = 60.0;

/// One person in an analysed frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonObs {
    /// The person's track; `None` until the tracker confirms it.
    pub track_id: Option<String>,
    /// The person's box, in normalised coordinates.
    pub bbox: NormBox,
    /// Detector confidence, 0..1.
    pub score: f32,
    /// Zones the person's foot point (bottom centre of the box) is in.
    pub zones: Vec<String>,
}

/// One analysed frame of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// When the frame was captured; the only clock the rules use.
    pub at: DateTime<Utc>,
    /// Frame width in pixels (for aspect ratios).
    pub width: u32,
    /// Frame height in pixels (for aspect ratios).
    pub height: u32,
    /// Persons detected in the frame.
    pub persons: Vec<PersonObs>,
    /// Names of all the camera's zones.
    pub camera_zones: Vec<String>,
}

/// What a rule found in a frame. The caller turns it into an incident (opening one, or
/// extending the open one with the same `dedup_key`).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The incident kind.
    pub kind: IncidentKind,
    /// How serious it is.
    pub severity: Severity,
    /// How sure the rule is, 0..1.
    pub confidence: f64,
    /// The zone it happened in, when the rule is about a zone.
    pub zone: Option<String>,
    /// The tracks involved (untracked persons have none).
    pub track_ids: Vec<String>,
    /// Why, in plain words.
    pub reasoning: String,
    /// Response actions the rule recommends.
    pub recommended_actions: Vec<ActionKind>,
    /// Findings with the same key belong to the same incident: `crowd:frame`,
    /// `crowd:zone:{zone}`, `intrusion:{zone}:{track}`, `loitering:{zone}:{track}`,
    /// `sleep:{track}`, `fall:{track}`. The caller prefixes the camera.
    pub dedup_key: String,
}

/// One camera's rule memory. Create one per camera and feed it that camera's frames in order.
#[derive(Debug, Default)]
pub struct RuleEngine {
    /// Crowd: per scope (`crowd:frame`, `crowd:zone:{zone}`), the first frame of the current
    /// run of frames at or above the threshold.
    crowd_since: HashMap<String, DateTime<Utc>>,
    /// What the rules remember per track.
    tracks: HashMap<String, TrackMemory>,
}

/// What the rules remember about one track.
#[derive(Debug)]
struct TrackMemory {
    /// The last frame the track was seen in (with a score the rules count).
    last_seen: DateTime<Utc>,
    /// Intrusion: restricted zones whose entry already fired and that the person has not left.
    intruded: HashSet<String>,
    /// Loitering: per watched zone the person is in, the first frame of the current stay.
    staying_since: HashMap<String, DateTime<Utc>>,
    /// Sleep/fall: posture history.
    posture: Posture,
}

impl TrackMemory {
    fn new(at: DateTime<Utc>) -> Self {
        Self {
            last_seen: at,
            intruded: HashSet::new(),
            staying_since: HashMap::new(),
            posture: Posture::default(),
        }
    }
}

/// Sleep/fall memory of one track.
#[derive(Debug, Default)]
struct Posture {
    /// The last frame the person was upright in.
    last_upright: Option<DateTime<Utc>>,
    /// The first frame of the current run of lying frames.
    lying_since: Option<DateTime<Utc>>,
    /// When that run began a fall: seconds between the last upright frame and the first lying
    /// one (at most the fall window).
    fell_within: Option<f64>,
}

impl RuleEngine {
    /// An engine with nothing remembered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs every rule the camera's features enable over one frame.
    ///
    /// Rules whose feature is off emit nothing and forget what they remembered, so turning a
    /// feature back on starts it afresh. With `critical` on, every finding is raised to at least
    /// [`Severity::High`], recommends [`ActionKind::AlertSecurity`], and says `(critical area)`.
    pub fn observe(
        &mut self,
        features: &CameraFeatures,
        settings: &CalibrationSettings,
        obs: &Observation,
    ) -> Vec<Finding> {
        let persons: Vec<&PersonObs> = obs
            .persons
            .iter()
            .filter(|p| f64::from(p.score) >= settings.min_person_score)
            .collect();

        self.prune(obs.at);
        for p in &persons {
            if let Some(track) = &p.track_id {
                self.tracks
                    .entry(track.clone())
                    .and_modify(|m| m.last_seen = m.last_seen.max(obs.at))
                    .or_insert_with(|| TrackMemory::new(obs.at));
            }
        }
        self.clear_disabled(features);

        let mut findings = Vec::new();
        if features.crowd {
            self.crowd(settings, obs, &persons, &mut findings);
        }
        if features.intrusion {
            self.intrusion(settings, obs, &persons, &mut findings);
        }
        if features.loitering {
            self.loitering(settings, obs, &persons, &mut findings);
        }
        if features.sleep {
            self.lying(settings, obs, &persons, &mut findings);
        }
        if features.critical {
            for f in &mut findings {
                make_critical(f);
            }
        }
        findings
    }

    /// A track ended: forget what the rules remember about it.
    pub fn forget_track(&mut self, track_id: &str) {
        self.tracks.remove(track_id);
    }

    /// Drops tracks not seen for more than [`FORGET_TRACK_AFTER_SECONDS`] before `now`.
    fn prune(&mut self, now: DateTime<Utc>) {
        self.tracks
            .retain(|_, m| seconds_between(m.last_seen, now) <= FORGET_TRACK_AFTER_SECONDS);
    }

    /// Forgets the memory of rules whose feature is off.
    fn clear_disabled(&mut self, features: &CameraFeatures) {
        if !features.crowd {
            self.crowd_since.clear();
        }
        for m in self.tracks.values_mut() {
            if !features.intrusion {
                m.intruded.clear();
            }
            if !features.loitering {
                m.staying_since.clear();
            }
            if !features.sleep {
                m.posture = Posture::default();
            }
        }
    }

    fn crowd(
        &mut self,
        settings: &CalibrationSettings,
        obs: &Observation,
        persons: &[&PersonObs],
        findings: &mut Vec<Finding>,
    ) {
        let threshold = settings.crowd_threshold.max(1);
        // (dedup key, zone, persons counted)
        let scopes: Vec<(String, Option<&String>, Vec<&PersonObs>)> =
            if settings.crowd_zones.is_empty() {
                vec![("crowd:frame".to_string(), None, persons.to_vec())]
            } else {
                known_zones(&settings.crowd_zones, &obs.camera_zones)
                    .into_iter()
                    .map(|zone| {
                        let inside = persons
                            .iter()
                            .copied()
                            .filter(|p| p.zones.contains(zone))
                            .collect();
                        (format!("crowd:zone:{zone}"), Some(zone), inside)
                    })
                    .collect()
            };
        self.crowd_since
            .retain(|key, _| scopes.iter().any(|(k, _, _)| k == key));

        for (key, zone, counted) in scopes {
            let count = counted.len();
            if count < threshold as usize {
                self.crowd_since.remove(&key);
                continue;
            }
            let since = *self.crowd_since.entry(key.clone()).or_insert(obs.at);
            let lasted = seconds_between(since, obs.at);
            if lasted < settings.crowd_min_seconds {
                continue;
            }
            let high = count >= 2 * threshold as usize;
            let scope = match zone {
                Some(z) => format!("in zone '{z}'"),
                None => "in the frame".to_string(),
            };
            findings.push(Finding {
                kind: IncidentKind::Crowd,
                severity: if high {
                    Severity::High
                } else {
                    Severity::Medium
                },
                confidence: mean_score(&counted),
                zone: zone.cloned(),
                track_ids: counted.iter().filter_map(|p| p.track_id.clone()).collect(),
                reasoning: format!(
                    "{} {scope} for {lasted:.1} s (threshold {} for {:.1} s)",
                    persons_word(count),
                    persons_word(threshold as usize),
                    settings.crowd_min_seconds
                ),
                recommended_actions: if high {
                    vec![ActionKind::IncreaseMonitoring, ActionKind::AlertSecurity]
                } else {
                    vec![ActionKind::IncreaseMonitoring]
                },
                dedup_key: key,
            });
        }
    }

    fn intrusion(
        &mut self,
        settings: &CalibrationSettings,
        obs: &Observation,
        persons: &[&PersonObs],
        findings: &mut Vec<Finding>,
    ) {
        let restricted = watched_zones(&settings.intrusion_zones, &obs.camera_zones);
        let window = matching_window(&settings.intrusion_schedule, obs.at);
        let scheduled = settings.intrusion_schedule.is_empty() || window.is_some();
        for p in persons {
            let Some(track) = &p.track_id else { continue };
            let Some(memory) = self.tracks.get_mut(track) else {
                continue;
            };
            let inside: Vec<&String> = restricted
                .iter()
                .copied()
                .filter(|z| p.zones.contains(z))
                .collect();
            // Leaving a zone ends its entry; coming back is a new one.
            memory.intruded.retain(|z| inside.contains(&z));
            if !scheduled {
                continue;
            }
            for zone in inside {
                if !memory.intruded.insert(zone.clone()) {
                    continue;
                }
                let during = match window {
                    Some(w) => format!(" (inside the schedule {})", describe_window(w)),
                    None => String::new(),
                };
                findings.push(Finding {
                    kind: IncidentKind::Intrusion,
                    severity: Severity::High,
                    confidence: score(p),
                    zone: Some(zone.clone()),
                    track_ids: vec![track.clone()],
                    reasoning: format!(
                        "a person (track {track}) entered restricted zone '{zone}' at {} UTC{during}",
                        obs.at.format("%H:%M:%S")
                    ),
                    recommended_actions: vec![ActionKind::AlertSecurity],
                    dedup_key: format!("intrusion:{zone}:{track}"),
                });
            }
        }
    }

    fn loitering(
        &mut self,
        settings: &CalibrationSettings,
        obs: &Observation,
        persons: &[&PersonObs],
        findings: &mut Vec<Finding>,
    ) {
        let watched = watched_zones(&settings.loitering_zones, &obs.camera_zones);
        for p in persons {
            let Some(track) = &p.track_id else { continue };
            let Some(memory) = self.tracks.get_mut(track) else {
                continue;
            };
            let inside: Vec<&String> = watched
                .iter()
                .copied()
                .filter(|z| p.zones.contains(z))
                .collect();
            // Leaving a zone ends the stay there.
            memory.staying_since.retain(|z, _| inside.contains(&z));
            for zone in inside {
                let since = *memory.staying_since.entry(zone.clone()).or_insert(obs.at);
                let stayed = seconds_between(since, obs.at);
                if stayed <= settings.loitering_seconds {
                    continue;
                }
                findings.push(Finding {
                    kind: IncidentKind::Loitering,
                    severity: Severity::Medium,
                    confidence: score(p),
                    zone: Some(zone.clone()),
                    track_ids: vec![track.clone()],
                    reasoning: format!(
                        "a person (track {track}) has stayed in zone '{zone}' for {stayed:.1} s \
                         (threshold {:.1} s)",
                        settings.loitering_seconds
                    ),
                    recommended_actions: vec![ActionKind::IncreaseMonitoring],
                    dedup_key: format!("loitering:{zone}:{track}"),
                });
            }
        }
    }

    fn lying(
        &mut self,
        settings: &CalibrationSettings,
        obs: &Observation,
        persons: &[&PersonObs],
        findings: &mut Vec<Finding>,
    ) {
        for p in persons {
            let Some(track) = &p.track_id else { continue };
            let Some(memory) = self.tracks.get_mut(track) else {
                continue;
            };
            let Some(ratio) = aspect_ratio(&p.bbox, obs.width, obs.height) else {
                continue;
            };
            let posture = &mut memory.posture;
            if ratio < settings.lying_aspect_ratio {
                posture.last_upright = Some(obs.at);
                posture.lying_since = None;
                posture.fell_within = None;
                continue;
            }
            let since = match posture.lying_since {
                Some(since) => since,
                None => {
                    posture.lying_since = Some(obs.at);
                    posture.fell_within = posture
                        .last_upright
                        .map(|up| seconds_between(up, obs.at))
                        .filter(|gap| *gap <= settings.fall_window_seconds);
                    obs.at
                }
            };
            let lying = seconds_between(since, obs.at);
            if lying < settings.lying_seconds {
                continue;
            }
            let measure = format!(
                "box aspect ratio {ratio:.2}, threshold {:.2} for {:.1} s",
                settings.lying_aspect_ratio, settings.lying_seconds
            );
            let finding = match posture.fell_within {
                Some(gap) => Finding {
                    kind: IncidentKind::Fall,
                    severity: Severity::High,
                    confidence: score(p),
                    zone: None,
                    track_ids: vec![track.clone()],
                    reasoning: format!(
                        "a person (track {track}) went from upright to lying within {gap:.1} s \
                         and has stayed down for {lying:.1} s ({measure})"
                    ),
                    recommended_actions: vec![ActionKind::AlertSecurity],
                    dedup_key: format!("fall:{track}"),
                },
                None => Finding {
                    kind: IncidentKind::Sleep,
                    severity: Severity::Low,
                    confidence: score(p),
                    zone: None,
                    track_ids: vec![track.clone()],
                    reasoning: format!(
                        "a person (track {track}) has been lying down for {lying:.1} s ({measure})"
                    ),
                    recommended_actions: vec![ActionKind::IncreaseMonitoring],
                    dedup_key: format!("sleep:{track}"),
                },
            };
            findings.push(finding);
        }
    }
}

/// The `critical` modifier: at least high severity, security alerted, reasoning says why.
fn make_critical(finding: &mut Finding) {
    finding.severity = finding.severity.max(Severity::High);
    if !finding
        .recommended_actions
        .contains(&ActionKind::AlertSecurity)
    {
        finding.recommended_actions.push(ActionKind::AlertSecurity);
    }
    finding.reasoning.push_str(" (critical area)");
}

/// Seconds from `from` to `to` (negative when `to` is earlier).
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).as_seconds_f64()
}

fn score(p: &PersonObs) -> f64 {
    f64::from(p.score).clamp(0.0, 1.0)
}

fn mean_score(persons: &[&PersonObs]) -> f64 {
    if persons.is_empty() {
        return 0.0;
    }
    let total: f64 = persons.iter().map(|p| score(p)).sum();
    (total / persons.len() as f64).clamp(0.0, 1.0)
}

fn persons_word(n: usize) -> String {
    if n == 1 {
        "1 person".to_string()
    } else {
        format!("{n} persons")
    }
}

/// The names in `listed` that are zones of the camera, in the order listed.
fn known_zones<'a>(listed: &'a [String], camera_zones: &[String]) -> Vec<&'a String> {
    listed.iter().filter(|z| camera_zones.contains(z)).collect()
}

/// The zones a rule watches: the listed ones that exist, or every camera zone when none is
/// listed.
fn watched_zones<'a>(listed: &'a [String], camera_zones: &'a [String]) -> Vec<&'a String> {
    if listed.is_empty() {
        camera_zones.iter().collect()
    } else {
        known_zones(listed, camera_zones)
    }
}

/// Width over height of the box in pixels, when both are positive.
fn aspect_ratio(bbox: &NormBox, width: u32, height: u32) -> Option<f64> {
    let w = f64::from(bbox.x2 - bbox.x1) * f64::from(width);
    let h = f64::from(bbox.y2 - bbox.y1) * f64::from(height);
    let ratio = w / h;
    (w > 0.0 && h > 0.0 && ratio.is_finite()).then_some(ratio)
}

/// The finding of the person-of-interest rule: a face on `track_id` matched watch-listed
/// subject `name` at `distance` (the next other subject at `second`).
#[allow(clippy::too_many_arguments)] // every number the reasoning names
pub fn person_of_interest(
    features: &CameraFeatures,
    settings: &CalibrationSettings,
    track_id: &str,
    subject_id: &str,
    name: &str,
    severity: Option<Severity>,
    distance: f64,
    second: Option<f64>,
) -> Finding {
    let next = second.map_or_else(
        || "no other subject enrolled".to_string(),
        |s| format!("next subject at {s:.2}"),
    );
    let mut finding = Finding {
        kind: IncidentKind::PersonOfInterest,
        severity: severity.unwrap_or(Severity::High),
        confidence: (1.0 - distance / 2.0).clamp(0.0, 1.0),
        zone: None,
        track_ids: vec![track_id.to_string()],
        reasoning: format!(
            "a face on track {track_id} matches watch-listed subject '{name}' at distance \
             {distance:.2} ({next}; threshold {:.2}, margin {:.2})",
            settings.face_match_distance, settings.face_match_margin
        ),
        recommended_actions: vec![ActionKind::AlertSecurity],
        dedup_key: format!("poi:{subject_id}:{track_id}"),
    };
    if features.critical {
        make_critical(&mut finding);
    }
    finding
}

/// The finding of the authorised rule: the face of `track_id`, checked `checks` times,
/// matched no authorised subject (`nearest`: the nearest one and its distance, if any is
/// enrolled).
pub fn unauthorised(
    features: &CameraFeatures,
    settings: &CalibrationSettings,
    track_id: &str,
    checks: u32,
    nearest: Option<(&str, f64)>,
) -> Finding {
    let nearest = match nearest {
        Some((name, d)) => format!("nearest authorised subject '{name}' at distance {d:.2}"),
        None => "no authorised subject is enrolled".to_string(),
    };
    let mut finding = Finding {
        kind: IncidentKind::Unauthorised,
        severity: Severity::High,
        confidence: 0.8,
        zone: None,
        track_ids: vec![track_id.to_string()],
        reasoning: format!(
            "the face of track {track_id}, seen on {checks} frames, matches no authorised \
             subject ({nearest}; threshold {:.2}, margin {:.2})",
            settings.face_match_distance, settings.face_match_margin
        ),
        recommended_actions: vec![ActionKind::AlertSecurity],
        dedup_key: format!("unauthorised:{track_id}"),
    };
    if features.critical {
        make_critical(&mut finding);
    }
    finding
}

/// One entry of `GET /api/v1/rules`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleInfo {
    /// The rule's name.
    pub name: &'static str,
    /// The [`CameraFeatures`] flag that turns it on (`watchlist` for one without a flag).
    pub feature: &'static str,
    /// The incident kinds it raises (wire names).
    pub kinds: Vec<&'static str>,
    /// `active` (runs and raises incidents), `inert` (emits nothing until what it needs
    /// exists), `modifier` (changes other rules' findings) or `extension_point` (a place for a
    /// future rule; detects nothing).
    pub status: &'static str,
    /// In plain words, what it detects today.
    pub detects: &'static str,
    /// The calibration fields it reads.
    pub settings: Vec<&'static str>,
}

/// Every rule, modifier and extension point, in a stable order.
pub fn catalogue() -> Vec<RuleInfo> {
    vec![
        RuleInfo {
            name: "crowd",
            feature: "crowd",
            kinds: vec![IncidentKind::Crowd.as_str()],
            status: "active",
            detects: "At least crowd_threshold persons (tracked or not) in the whole frame, or in \
                      each of crowd_zones separately, continuously for at least \
                      crowd_min_seconds. Medium severity; high at twice the threshold.",
            settings: vec![
                "crowd_threshold",
                "crowd_min_seconds",
                "crowd_zones",
                "min_person_score",
            ],
        },
        RuleInfo {
            name: "intrusion",
            feature: "intrusion",
            kinds: vec![IncidentKind::Intrusion.as_str()],
            status: "active",
            detects: "A tracked person entering a restricted zone (intrusion_zones; every zone of \
                      the camera when empty) at a time inside intrusion_schedule (always when \
                      empty). Once per entry: leaving and coming back is a new entry. High \
                      severity.",
            settings: vec!["intrusion_zones", "intrusion_schedule", "min_person_score"],
        },
        RuleInfo {
            name: "loitering",
            feature: "loitering",
            kinds: vec![IncidentKind::Loitering.as_str()],
            status: "active",
            detects: "A tracked person staying in one watched zone (loitering_zones; every zone of \
                      the camera when empty) without leaving for longer than loitering_seconds. \
                      Medium severity.",
            settings: vec!["loitering_seconds", "loitering_zones", "min_person_score"],
        },
        RuleInfo {
            name: "sleep_fall",
            feature: "sleep",
            kinds: vec![IncidentKind::Sleep.as_str(), IncidentKind::Fall.as_str()],
            status: "active",
            detects: "A tracked person lying down (box at least lying_aspect_ratio times wider \
                      than tall, in pixels) for at least lying_seconds. A fall (high severity) \
                      when the same track was upright at most fall_window_seconds before lying \
                      down; otherwise sleep (low severity).",
            settings: vec![
                "lying_aspect_ratio",
                "lying_seconds",
                "fall_window_seconds",
                "min_person_score",
            ],
        },
        RuleInfo {
            name: "critical",
            feature: "critical",
            kinds: vec![],
            status: "modifier",
            detects: "Nothing by itself: marks a critical area. Every finding of the camera is \
                      raised to at least high severity and recommends alerting security.",
            settings: vec![],
        },
        RuleInfo {
            name: "authorised",
            feature: "authorised",
            kinds: vec![IncidentKind::Unauthorised.as_str()],
            status: "active",
            detects: "A tracked person whose face, checked on at least two frames, matches no \
                      enrolled authorised subject (within face_match_distance and \
                      face_match_margin of the next subject). Once per track. High severity.",
            settings: vec!["face_match_distance", "face_match_margin"],
        },
        RuleInfo {
            name: "person_of_interest",
            feature: "always",
            kinds: vec![IncidentKind::PersonOfInterest.as_str()],
            status: "active",
            detects: "A tracked person whose face matches a watch-listed subject (within \
                      face_match_distance, and nearer than the next subject by \
                      face_match_margin). Runs on every camera while any subject is \
                      watch-listed; severity is the subject's. Once per track and subject.",
            settings: vec!["face_match_distance", "face_match_margin"],
        },
        RuleInfo {
            name: "theft",
            feature: "theft",
            kinds: vec![IncidentKind::Theft.as_str()],
            status: "extension_point",
            detects: "Nothing today. An extension point for theft-like behaviour: no rule or \
                      model stands behind it yet, so turning it on has no effect.",
            settings: vec![],
        },
    ]
}

/// Whether `at` falls in one of the windows (an empty list means always).
///
/// A window runs from `start` (inclusive) to `end` (exclusive), in UTC; `start` after `end`
/// spans midnight, and `days` are the days the window starts on (empty means every day), so
/// `fri 22:00–06:00` covers Saturday 03:00. A window whose `start` equals its `end` is empty.
/// A time that is not `HH:MM` (00:00–23:59, or `24:00` for `end`) never matches.
pub fn in_schedule(windows: &[ScheduleWindow], at: DateTime<Utc>) -> bool {
    windows.is_empty() || matching_window(windows, at).is_some()
}

/// The first window that `at` falls in.
fn matching_window(windows: &[ScheduleWindow], at: DateTime<Utc>) -> Option<&ScheduleWindow> {
    windows.iter().find(|w| window_contains(w, at))
}

fn window_contains(window: &ScheduleWindow, at: DateTime<Utc>) -> bool {
    let (Some(start), Some(end)) = (
        parse_hhmm(&window.start, false),
        parse_hhmm(&window.end, true),
    ) else {
        return false;
    };
    let (start, end) = (start * 60, end * 60);
    let now = at.num_seconds_from_midnight();
    let starts_on = |day: DateTime<Utc>| {
        window.days.is_empty() || window.days.contains(&weekday(day.weekday()))
    };
    if start < end {
        start <= now && now < end && starts_on(at)
    } else if start > end {
        (now >= start && starts_on(at)) || (now < end && starts_on(at - Duration::days(1)))
    } else {
        false
    }
}

/// Minutes since midnight of `HH:MM` (two digits each); `24:00` only when `end` is set.
fn parse_hhmm(text: &str, end: bool) -> Option<u32> {
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let digits = |a: u8, b: u8| {
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    };
    let hours = digits(bytes[0], bytes[1])?;
    let minutes = digits(bytes[3], bytes[4])?;
    match (hours, minutes) {
        (24, 0) if end => Some(24 * 60),
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        _ => None,
    }
}

fn weekday(day: chrono::Weekday) -> Weekday {
    match day {
        chrono::Weekday::Mon => Weekday::Mon,
        chrono::Weekday::Tue => Weekday::Tue,
        chrono::Weekday::Wed => Weekday::Wed,
        chrono::Weekday::Thu => Weekday::Thu,
        chrono::Weekday::Fri => Weekday::Fri,
        chrono::Weekday::Sat => Weekday::Sat,
        chrono::Weekday::Sun => Weekday::Sun,
    }
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

/// `22:00–06:00`, with ` starting mon, fri` when the window has days.
fn describe_window(window: &ScheduleWindow) -> String {
    let mut text = format!("{}–{}", window.start, window.end);
    if !window.days.is_empty() {
        let days: Vec<&str> = window.days.iter().map(|d| weekday_name(*d)).collect();
        text.push_str(&format!(" starting {}", days.join(", ")));
    }
    text
}

/// Validates calibration settings; the error names the bad field and says what it must be.
///
/// Counts and durations: `crowd_threshold` at least 1; `crowd_min_seconds`,
/// `loitering_seconds`, `lying_seconds`, `fall_window_seconds` and `incident_merge_seconds`
/// finite and at least 0. `lying_aspect_ratio` finite and above 0; `face_match_distance` in
/// 0..=2; `face_match_margin` finite and at least 0; `min_person_score` in 0..=1. Every
/// `intrusion_schedule` window has `start` as `HH:MM` in 00:00–23:59, `end` the same or
/// `24:00`, and `start` different from `end` (an empty window is a mistake).
pub fn validate_settings(settings: &CalibrationSettings) -> Result<(), String> {
    if settings.crowd_threshold < 1 {
        return Err(format!(
            "crowd_threshold must be at least 1 (got {})",
            settings.crowd_threshold
        ));
    }
    for (field, value) in [
        ("crowd_min_seconds", settings.crowd_min_seconds),
        ("loitering_seconds", settings.loitering_seconds),
        ("lying_seconds", settings.lying_seconds),
        ("fall_window_seconds", settings.fall_window_seconds),
        ("incident_merge_seconds", settings.incident_merge_seconds),
        ("face_match_margin", settings.face_match_margin),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(format!(
                "{field} must be a finite number of at least 0 (got {value})"
            ));
        }
    }
    let ratio = settings.lying_aspect_ratio;
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(format!(
            "lying_aspect_ratio must be a finite number above 0 (got {ratio})"
        ));
    }
    let distance = settings.face_match_distance;
    if !(0.0..=2.0).contains(&distance) {
        return Err(format!(
            "face_match_distance must be between 0 and 2 (got {distance})"
        ));
    }
    let min_score = settings.min_person_score;
    if !(0.0..=1.0).contains(&min_score) {
        return Err(format!(
            "min_person_score must be between 0 and 1 (got {min_score})"
        ));
    }
    let threshold = settings.motion_threshold;
    if !(1.0..=255.0).contains(&threshold) {
        return Err(format!(
            "motion_threshold must be between 1 and 255 (got {threshold})"
        ));
    }
    let area = settings.motion_min_area;
    if !(area > 0.0 && area <= 1.0) {
        return Err(format!(
            "motion_min_area must be above 0 and at most 1 (got {area})"
        ));
    }
    for (field, value) in [
        (
            "motion_background_seconds",
            settings.motion_background_seconds,
        ),
        ("motion_refresh_seconds", settings.motion_refresh_seconds),
    ] {
        if !(value.is_finite() && (0.0..=86_400.0).contains(&value)) {
            return Err(format!(
                "{field} must be between 0 and 86400 seconds (got {value})"
            ));
        }
    }
    if settings.face_min_person_pixels > 10_000 {
        return Err(format!(
            "face_min_person_pixels must be at most 10000 (got {})",
            settings.face_min_person_pixels
        ));
    }
    if !(1..=10_000).contains(&settings.face_descriptor_every_frames) {
        return Err(format!(
            "face_descriptor_every_frames must be between 1 and 10000 (got {})",
            settings.face_descriptor_every_frames
        ));
    }
    crate::aggregates::camera::validate_polygons(
        "motion_masks",
        MAX_MOTION_MASKS,
        &settings.motion_masks,
    )
    .map_err(|e| match e {
        crate::aggregates::camera::CameraError::Invalid { field, reason } => {
            format!("{field} {reason}")
        }
        other => other.to_string(),
    })?;
    validate_schedule("intrusion_schedule", &settings.intrusion_schedule)
}

/// Most motion masks per calibration level.
pub const MAX_MOTION_MASKS: usize = 32;

/// The motion detector's settings from a camera's calibration.
pub fn motion_settings(settings: &CalibrationSettings) -> crate::motion::MotionSettings {
    crate::motion::MotionSettings {
        threshold: settings.motion_threshold as f32,
        min_area: settings.motion_min_area as f32,
        background_seconds: settings.motion_background_seconds as f32,
        masks: settings
            .motion_masks
            .iter()
            .map(|m| m.polygon.clone())
            .collect(),
    }
}

/// Validates a list of schedule windows; `field` names the list in the error.
pub fn validate_schedule(field: &str, windows: &[ScheduleWindow]) -> Result<(), String> {
    for (i, w) in windows.iter().enumerate() {
        let Some(start) = parse_hhmm(&w.start, false) else {
            return Err(format!(
                "{field}[{i}].start must be HH:MM between 00:00 and 23:59 (got {:?})",
                w.start
            ));
        };
        let Some(end) = parse_hhmm(&w.end, true) else {
            return Err(format!(
                "{field}[{i}].end must be HH:MM between 00:00 and 24:00 (got {:?})",
                w.end
            ));
        };
        if start == end {
            return Err(format!(
                "{field}[{i}] starts and ends at {} (an empty window)",
                w.start
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    // ---- helpers -------------------------------------------------------------------------

    const ZONES: [&str; 3] = ["lobby", "walkway", "door"];

    /// Monday 2025-01-06 10:00:00 UTC plus `secs`.
    fn t(secs: f64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 6, 10, 0, 0).unwrap()
            + Duration::milliseconds((secs * 1000.0).round() as i64)
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// A standing person (tall box) with score 0.9.
    fn person(track: Option<&str>, zones: &[&str]) -> PersonObs {
        PersonObs {
            track_id: track.map(str::to_string),
            bbox: NormBox {
                x1: 0.4,
                y1: 0.2,
                x2: 0.5,
                y2: 0.8,
            },
            score: 0.9,
            zones: zones.iter().map(|z| z.to_string()).collect(),
        }
    }

    fn tracked(track: &str, zones: &[&str]) -> PersonObs {
        person(Some(track), zones)
    }

    /// A person lying down (wide box: 400×150 px on a 1000×1000 frame).
    fn lying(track: &str) -> PersonObs {
        PersonObs {
            bbox: NormBox {
                x1: 0.2,
                y1: 0.7,
                x2: 0.6,
                y2: 0.85,
            },
            ..tracked(track, &[])
        }
    }

    fn scored(mut p: PersonObs, score: f32) -> PersonObs {
        p.score = score;
        p
    }

    /// `n` untracked persons anywhere.
    fn crowd_of(n: usize) -> Vec<PersonObs> {
        (0..n).map(|_| person(None, &[])).collect()
    }

    /// A 1000×1000 frame at `secs` with the camera zones lobby, walkway, door.
    fn frame(secs: f64, persons: Vec<PersonObs>) -> Observation {
        frame_at(t(secs), persons)
    }

    fn frame_at(at: DateTime<Utc>, persons: Vec<PersonObs>) -> Observation {
        Observation {
            at,
            width: 1000,
            height: 1000,
            persons,
            camera_zones: ZONES.iter().map(|z| z.to_string()).collect(),
        }
    }

    fn only(set: impl FnOnce(&mut CameraFeatures)) -> CameraFeatures {
        let mut f = CameraFeatures::default();
        set(&mut f);
        f
    }

    fn settings(set: impl FnOnce(&mut CalibrationSettings)) -> CalibrationSettings {
        let mut s = CalibrationSettings::default();
        set(&mut s);
        s
    }

    /// Feeds the frames in order to a fresh engine; returns the findings of each frame.
    fn run(
        features: &CameraFeatures,
        settings: &CalibrationSettings,
        frames: Vec<Observation>,
    ) -> Vec<Vec<Finding>> {
        let mut engine = RuleEngine::new();
        frames
            .iter()
            .map(|f| engine.observe(features, settings, f))
            .collect()
    }

    fn window(days: &[Weekday], start: &str, end: &str) -> ScheduleWindow {
        ScheduleWindow {
            days: days.to_vec(),
            start: start.into(),
            end: end.into(),
        }
    }

    // ---- crowd ---------------------------------------------------------------------------

    #[test]
    fn crowd_under_threshold_emits_nothing() {
        // given threshold 5 for 3 s, when 4 persons stay for 10 s
        let found = run(
            &only(|f| f.crowd = true),
            &CalibrationSettings::default(),
            (0..=10).map(|s| frame(f64::from(s), crowd_of(4))).collect(),
        );
        // then nothing
        assert!(found.iter().all(Vec::is_empty), "{found:?}");
    }

    #[test]
    fn crowd_at_threshold_fires_once_it_has_lasted_long_enough() {
        // given threshold 5 for 3 s, when 5 persons are seen at 0, 2.9 and 3.1 s
        let found = run(
            &only(|f| f.crowd = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, crowd_of(5)),
                frame(2.9, crowd_of(5)),
                frame(3.1, crowd_of(5)),
                frame(4.0, crowd_of(5)),
            ],
        );
        // then not before 3 s, and on every frame after
        assert!(found[0].is_empty() && found[1].is_empty(), "{found:?}");
        assert_eq!(found[2].len(), 1);
        assert_eq!(found[3].len(), 1);
        let f = &found[2][0];
        assert_eq!(f.kind, IncidentKind::Crowd);
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.dedup_key, "crowd:frame");
        assert_eq!(f.zone, None);
        assert!(f.track_ids.is_empty());
        assert_eq!(f.recommended_actions, vec![ActionKind::IncreaseMonitoring]);
        assert!((f.confidence - 0.9).abs() < 1e-6, "{}", f.confidence);
        assert_eq!(
            f.reasoning,
            "5 persons in the frame for 3.1 s (threshold 5 persons for 3.0 s)"
        );
    }

    #[test]
    fn crowd_timer_restarts_after_a_frame_under_threshold() {
        // given threshold 5 for 3 s, when the count drops to 4 at 2 s
        let found = run(
            &only(|f| f.crowd = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, crowd_of(5)),
                frame(2.0, crowd_of(4)),
                frame(2.5, crowd_of(5)),
                frame(5.0, crowd_of(5)),
                frame(5.6, crowd_of(5)),
            ],
        );
        // then the 3 s count from 2.5 s
        assert!(found[..4].iter().all(Vec::is_empty), "{found:?}");
        assert_eq!(found[4].len(), 1);
        assert!(found[4][0].reasoning.contains("for 3.1 s"), "{found:?}");
    }

    #[test]
    fn crowd_of_twice_the_threshold_is_high_and_alerts_security() {
        let found = run(
            &only(|f| f.crowd = true),
            &settings(|s| s.crowd_min_seconds = 0.0),
            vec![frame(0.0, crowd_of(10))],
        );
        assert_eq!(found[0].len(), 1);
        assert_eq!(found[0][0].severity, Severity::High);
        assert!(
            found[0][0]
                .recommended_actions
                .contains(&ActionKind::AlertSecurity)
        );
    }

    #[test]
    fn crowd_counts_each_listed_zone_on_its_own() {
        // given crowd zones lobby and door, threshold 3
        let s = settings(|s| {
            s.crowd_threshold = 3;
            s.crowd_min_seconds = 0.0;
            s.crowd_zones = vec!["lobby".into(), "door".into()];
        });
        // when lobby holds 3 (one untracked) and door 2, with 6 persons in the frame
        let persons = vec![
            tracked("a", &["lobby"]),
            tracked("b", &["lobby"]),
            person(None, &["lobby"]),
            tracked("c", &["door"]),
            tracked("d", &["door"]),
            tracked("e", &["walkway"]),
        ];
        let found = run(&only(|f| f.crowd = true), &s, vec![frame(0.0, persons)]);
        // then only the lobby is crowded, and the frame as a whole is not counted
        assert_eq!(found[0].len(), 1, "{found:?}");
        let f = &found[0][0];
        assert_eq!(f.dedup_key, "crowd:zone:lobby");
        assert_eq!(f.zone.as_deref(), Some("lobby"));
        assert_eq!(f.track_ids, vec!["a".to_string(), "b".to_string()]);
        assert!(
            f.reasoning
                .starts_with("3 persons in zone 'lobby' for 0.0 s"),
            "{}",
            f.reasoning
        );
    }

    #[test]
    fn crowd_confidence_is_the_mean_score_of_those_counted() {
        let s = settings(|s| {
            s.crowd_threshold = 2;
            s.crowd_min_seconds = 0.0;
        });
        let persons = vec![
            scored(person(None, &[]), 0.6),
            scored(person(None, &[]), 1.0),
        ];
        let found = run(&only(|f| f.crowd = true), &s, vec![frame(0.0, persons)]);
        assert!((found[0][0].confidence - 0.8).abs() < 1e-6, "{found:?}");
    }

    #[test]
    fn persons_below_min_score_are_not_counted() {
        // given min score 0.5, when one of five persons scores 0.3
        let mut persons = crowd_of(4);
        persons.push(scored(person(None, &[]), 0.3));
        let found = run(
            &only(|f| f.crowd = true),
            &settings(|s| s.crowd_min_seconds = 0.0),
            vec![frame(0.0, persons.clone())],
        );
        // then there are four, under the threshold
        assert!(found[0].is_empty(), "{found:?}");
        // and with the fifth at 0.5 there are five
        persons[4].score = 0.5;
        let found = run(
            &only(|f| f.crowd = true),
            &settings(|s| s.crowd_min_seconds = 0.0),
            vec![frame(0.0, persons)],
        );
        assert_eq!(found[0].len(), 1);
    }

    // ---- intrusion -----------------------------------------------------------------------

    fn walkway_restricted() -> CalibrationSettings {
        settings(|s| s.intrusion_zones = vec!["walkway".into()])
    }

    #[test]
    fn intrusion_fires_once_per_entry_into_a_restricted_zone() {
        // when t1 is in the walkway for three frames
        let found = run(
            &only(|f| f.intrusion = true),
            &walkway_restricted(),
            vec![
                frame(3.0, vec![tracked("t1", &["walkway"])]),
                frame(4.0, vec![tracked("t1", &["walkway"])]),
                frame(5.0, vec![tracked("t1", &["walkway"])]),
            ],
        );
        // then one finding, on entry
        assert_eq!(found[0].len(), 1, "{found:?}");
        assert!(found[1].is_empty() && found[2].is_empty(), "{found:?}");
        let f = &found[0][0];
        assert_eq!(f.kind, IncidentKind::Intrusion);
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.dedup_key, "intrusion:walkway:t1");
        assert_eq!(f.zone.as_deref(), Some("walkway"));
        assert_eq!(f.track_ids, vec!["t1".to_string()]);
        assert_eq!(f.recommended_actions, vec![ActionKind::AlertSecurity]);
        assert!((f.confidence - 0.9).abs() < 1e-6);
        assert_eq!(
            f.reasoning,
            "a person (track t1) entered restricted zone 'walkway' at 10:00:03 UTC"
        );
    }

    #[test]
    fn intrusion_ignores_zones_that_are_not_restricted_and_untracked_persons() {
        let found = run(
            &only(|f| f.intrusion = true),
            &walkway_restricted(),
            vec![
                frame(0.0, vec![tracked("t1", &["lobby"])]),
                frame(1.0, vec![person(None, &["walkway"])]),
                frame(2.0, vec![scored(tracked("t2", &["walkway"]), 0.2)]),
            ],
        );
        assert!(found.iter().all(Vec::is_empty), "{found:?}");
    }

    #[test]
    fn intrusion_with_no_zones_listed_restricts_every_camera_zone_and_ignores_unknown_ones() {
        let everywhere = CalibrationSettings::default();
        let found = run(
            &only(|f| f.intrusion = true),
            &everywhere,
            vec![frame(0.0, vec![tracked("t1", &["door"])])],
        );
        assert_eq!(found[0].len(), 1);
        assert_eq!(found[0][0].dedup_key, "intrusion:door:t1");

        // a listed name that is no zone of this camera is ignored
        let vault = settings(|s| s.intrusion_zones = vec!["vault".into()]);
        let found = run(
            &only(|f| f.intrusion = true),
            &vault,
            vec![frame(0.0, vec![tracked("t1", &["vault"])])],
        );
        assert!(found[0].is_empty(), "{found:?}");
    }

    #[test]
    fn intrusion_outside_the_schedule_is_not_reported_inside_it_is() {
        // given the walkway is restricted 22:00–06:00
        let s = settings(|s| {
            s.intrusion_zones = vec!["walkway".into()];
            s.intrusion_schedule = vec![window(&[], "22:00", "06:00")];
        });
        // when t1 is there at 10:00, and t2 at 23:00
        let found = run(
            &only(|f| f.intrusion = true),
            &s,
            vec![
                frame_at(utc(2025, 1, 6, 10, 0, 0), vec![tracked("t1", &["walkway"])]),
                frame_at(utc(2025, 1, 6, 23, 0, 5), vec![tracked("t2", &["walkway"])]),
            ],
        );
        // then only t2 is reported, naming the schedule
        assert!(found[0].is_empty(), "{found:?}");
        assert_eq!(found[1].len(), 1);
        assert_eq!(
            found[1][0].reasoning,
            "a person (track t2) entered restricted zone 'walkway' at 23:00:05 UTC \
             (inside the schedule 22:00–06:00)"
        );
    }

    #[test]
    fn intrusion_reentry_fires_again_but_a_missed_frame_is_not_a_departure() {
        let found = run(
            &only(|f| f.intrusion = true),
            &walkway_restricted(),
            vec![
                frame(0.0, vec![tracked("t1", &["walkway"])]),
                frame(1.0, vec![]), // not detected in this frame
                frame(2.0, vec![tracked("t1", &["walkway"])]),
                frame(3.0, vec![tracked("t1", &["lobby"])]), // left
                frame(4.0, vec![tracked("t1", &["walkway"])]), // came back
            ],
        );
        let counts: Vec<usize> = found.iter().map(Vec::len).collect();
        assert_eq!(counts, vec![1, 0, 0, 0, 1]);
    }

    // ---- loitering -----------------------------------------------------------------------

    #[test]
    fn loitering_fires_on_every_frame_past_the_threshold() {
        // given 60 s, when t1 stays in the lobby
        let found = run(
            &only(|f| f.loitering = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, vec![tracked("t1", &["lobby"])]),
                frame(59.9, vec![tracked("t1", &["lobby"])]),
                frame(60.0, vec![tracked("t1", &["lobby"])]),
                frame(60.1, vec![tracked("t1", &["lobby"])]),
                frame(75.0, vec![tracked("t1", &["lobby"])]),
            ],
        );
        let counts: Vec<usize> = found.iter().map(Vec::len).collect();
        assert_eq!(counts, vec![0, 0, 0, 1, 1]);
        let f = &found[4][0];
        assert_eq!(f.kind, IncidentKind::Loitering);
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.dedup_key, "loitering:lobby:t1");
        assert_eq!(f.recommended_actions, vec![ActionKind::IncreaseMonitoring]);
        assert_eq!(
            f.reasoning,
            "a person (track t1) has stayed in zone 'lobby' for 75.0 s (threshold 60.0 s)"
        );
    }

    #[test]
    fn loitering_timer_restarts_when_the_person_leaves_the_zone() {
        let found = run(
            &only(|f| f.loitering = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, vec![tracked("t1", &["lobby"])]),
                frame(30.0, vec![tracked("t1", &["walkway"])]),
                frame(31.0, vec![tracked("t1", &["lobby"])]),
                frame(90.0, vec![tracked("t1", &["lobby"])]),
                frame(91.5, vec![tracked("t1", &["lobby"])]),
            ],
        );
        let counts: Vec<usize> = found.iter().map(Vec::len).collect();
        assert_eq!(counts, vec![0, 0, 0, 0, 1]);
    }

    #[test]
    fn loitering_in_an_unwatched_zone_is_not_reported() {
        let s = settings(|s| s.loitering_zones = vec!["door".into()]);
        let found = run(
            &only(|f| f.loitering = true),
            &s,
            vec![
                frame(0.0, vec![tracked("t1", &["lobby"])]),
                frame(100.0, vec![tracked("t1", &["lobby"])]),
            ],
        );
        assert!(found.iter().all(Vec::is_empty), "{found:?}");
    }

    // ---- sleep / fall --------------------------------------------------------------------

    #[test]
    fn lying_long_enough_without_a_fall_is_sleep() {
        // given 10 s lying; t1 is never seen upright
        let found = run(
            &only(|f| f.sleep = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, vec![lying("t1")]),
                frame(9.9, vec![lying("t1")]),
                frame(10.0, vec![lying("t1")]),
            ],
        );
        assert!(found[0].is_empty() && found[1].is_empty(), "{found:?}");
        assert_eq!(found[2].len(), 1);
        let f = &found[2][0];
        assert_eq!(f.kind, IncidentKind::Sleep);
        assert_eq!(f.severity, Severity::Low);
        assert_eq!(f.dedup_key, "sleep:t1");
        assert_eq!(f.recommended_actions, vec![ActionKind::IncreaseMonitoring]);
        assert!(
            f.reasoning.contains("lying down for 10.0 s") && f.reasoning.contains("2.67"),
            "{}",
            f.reasoning
        );
    }

    #[test]
    fn going_down_quickly_after_standing_is_a_fall() {
        // given a 2 s fall window; t1 stands at 0 s and lies from 1 s
        let found = run(
            &only(|f| f.sleep = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, vec![tracked("t1", &[])]),
                frame(1.0, vec![lying("t1")]),
                frame(10.9, vec![lying("t1")]),
                frame(11.0, vec![lying("t1")]),
            ],
        );
        let counts: Vec<usize> = found.iter().map(Vec::len).collect();
        assert_eq!(counts, vec![0, 0, 0, 1]);
        let f = &found[3][0];
        assert_eq!(f.kind, IncidentKind::Fall);
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.dedup_key, "fall:t1");
        assert_eq!(f.recommended_actions, vec![ActionKind::AlertSecurity]);
        assert!(
            f.reasoning.contains("within 1.0 s") && f.reasoning.contains("down for 10.0 s"),
            "{}",
            f.reasoning
        );
    }

    #[test]
    fn standing_long_before_lying_down_is_sleep_not_fall() {
        // the last upright frame is 5 s before lying, outside the 2 s window
        let found = run(
            &only(|f| f.sleep = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, vec![tracked("t1", &[])]),
                frame(5.0, vec![lying("t1")]),
                frame(15.0, vec![lying("t1")]),
            ],
        );
        assert_eq!(found[2].len(), 1);
        assert_eq!(found[2][0].kind, IncidentKind::Sleep);
    }

    #[test]
    fn getting_up_restarts_the_lying_timer() {
        let found = run(
            &only(|f| f.sleep = true),
            &CalibrationSettings::default(),
            vec![
                frame(0.0, vec![lying("t1")]),
                frame(8.0, vec![tracked("t1", &[])]),
                frame(9.0, vec![lying("t1")]),
                frame(18.0, vec![lying("t1")]),
                frame(19.0, vec![lying("t1")]),
            ],
        );
        let counts: Vec<usize> = found.iter().map(Vec::len).collect();
        assert_eq!(counts, vec![0, 0, 0, 0, 1]);
    }

    #[test]
    fn lying_is_judged_on_the_box_in_pixels() {
        // a box square in normalised coordinates
        let square = PersonObs {
            bbox: NormBox {
                x1: 0.3,
                y1: 0.3,
                x2: 0.6,
                y2: 0.6,
            },
            ..tracked("t1", &[])
        };
        let s = settings(|s| s.lying_seconds = 0.0);
        let features = only(|f| f.sleep = true);
        // is upright on a square frame
        let found = run(&features, &s, vec![frame(0.0, vec![square.clone()])]);
        assert!(found[0].is_empty(), "{found:?}");
        // and lying on a 16:9 frame (576×324 px, ratio 1.78)
        let mut wide = frame(0.0, vec![square]);
        wide.width = 1920;
        wide.height = 1080;
        let found = run(&features, &s, vec![wide]);
        assert_eq!(found[0].len(), 1);
        assert!(found[0][0].reasoning.contains("1.78"), "{found:?}");
    }

    // ---- critical, features, memory ------------------------------------------------------

    #[test]
    fn critical_area_raises_severity_and_alerts_security() {
        // given a sleeping person (low) on a camera in a critical area
        let frames = || {
            vec![
                frame(0.0, vec![lying("t1")]),
                frame(10.0, vec![lying("t1")]),
            ]
        };
        let plain = run(
            &only(|f| f.sleep = true),
            &CalibrationSettings::default(),
            frames(),
        );
        let critical = run(
            &only(|f| {
                f.sleep = true;
                f.critical = true;
            }),
            &CalibrationSettings::default(),
            frames(),
        );
        assert_eq!(plain[1][0].severity, Severity::Low);
        let f = &critical[1][0];
        assert_eq!(f.severity, Severity::High);
        assert_eq!(
            f.recommended_actions,
            vec![ActionKind::IncreaseMonitoring, ActionKind::AlertSecurity]
        );
        assert!(f.reasoning.ends_with(" (critical area)"), "{}", f.reasoning);
        assert_eq!(
            f.reasoning,
            format!("{} (critical area)", plain[1][0].reasoning)
        );
    }

    #[test]
    fn critical_alone_and_the_inert_features_emit_nothing() {
        // every person-based situation at once, long enough for every rule
        let busy = |secs| {
            let mut persons = crowd_of(10);
            persons.push(tracked("t1", &["walkway"]));
            persons.push(lying("t2"));
            frame(secs, persons)
        };
        let all_on = only(|f| {
            f.crowd = true;
            f.intrusion = true;
            f.loitering = true;
            f.sleep = true;
        });
        let found = run(
            &all_on,
            &CalibrationSettings::default(),
            vec![busy(0.0), busy(100.0)],
        );
        assert!(
            !found[1].is_empty(),
            "the situation must trip the active rules"
        );

        let others = only(|f| {
            f.critical = true;
            f.authorised = true;
            f.theft = true;
        });
        let found = run(
            &others,
            &CalibrationSettings::default(),
            vec![busy(0.0), busy(100.0)],
        );
        assert!(found.iter().all(Vec::is_empty), "{found:?}");
    }

    #[test]
    fn a_disabled_feature_emits_nothing_while_the_others_run() {
        // crowd on, sleep off: a crowd of lying people is only a crowd
        let persons: Vec<PersonObs> = (0..5).map(|i| lying(&format!("t{i}"))).collect();
        let found = run(
            &only(|f| f.crowd = true),
            &CalibrationSettings::default(),
            vec![frame(0.0, persons.clone()), frame(20.0, persons)],
        );
        let kinds: Vec<IncidentKind> = found[1].iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![IncidentKind::Crowd]);
    }

    #[test]
    fn forgetting_a_track_drops_its_memory() {
        let features = only(|f| f.intrusion = true);
        let s = walkway_restricted();
        let mut engine = RuleEngine::new();
        let inside = |secs| frame(secs, vec![tracked("t1", &["walkway"])]);
        assert_eq!(engine.observe(&features, &s, &inside(0.0)).len(), 1);
        assert!(engine.observe(&features, &s, &inside(1.0)).is_empty());
        // when the track is forgotten
        engine.forget_track("t1");
        assert!(engine.tracks.is_empty());
        // then its entry is new again
        assert_eq!(engine.observe(&features, &s, &inside(2.0)).len(), 1);
    }

    #[test]
    fn tracks_unseen_for_over_a_minute_are_pruned() {
        let features = only(|f| {
            f.loitering = true;
            f.sleep = true;
        });
        let s = CalibrationSettings::default();
        let mut engine = RuleEngine::new();
        engine.observe(&features, &s, &frame(0.0, vec![tracked("t1", &["lobby"])]));
        engine.observe(&features, &s, &frame(60.0, vec![tracked("t2", &["lobby"])]));
        assert!(
            engine.tracks.contains_key("t1"),
            "60 s is not over a minute"
        );
        engine.observe(&features, &s, &frame(60.5, vec![tracked("t2", &["lobby"])]));
        assert!(!engine.tracks.contains_key("t1"));
        assert!(engine.tracks.contains_key("t2"));
        assert_eq!(engine.tracks.len(), 1);
    }

    #[test]
    fn crowd_memory_is_dropped_when_the_count_falls() {
        let features = only(|f| f.crowd = true);
        let s = CalibrationSettings::default();
        let mut engine = RuleEngine::new();
        engine.observe(&features, &s, &frame(0.0, crowd_of(5)));
        assert_eq!(engine.crowd_since.len(), 1);
        engine.observe(&features, &s, &frame(1.0, crowd_of(1)));
        assert!(engine.crowd_since.is_empty());
    }

    // ---- schedule ------------------------------------------------------------------------

    #[test]
    fn an_empty_schedule_is_always() {
        assert!(in_schedule(&[], utc(2025, 1, 6, 3, 0, 0)));
    }

    #[test]
    fn an_overnight_window_spans_midnight() {
        let w = [window(&[], "22:00", "06:00")];
        assert!(in_schedule(&w, utc(2025, 1, 6, 22, 0, 0)));
        assert!(in_schedule(&w, utc(2025, 1, 6, 23, 30, 0)));
        assert!(in_schedule(&w, utc(2025, 1, 7, 5, 59, 59)));
        assert!(!in_schedule(&w, utc(2025, 1, 7, 6, 0, 0)));
        assert!(!in_schedule(&w, utc(2025, 1, 6, 21, 59, 59)));
        assert!(!in_schedule(&w, utc(2025, 1, 6, 12, 0, 0)));
    }

    #[test]
    fn days_are_the_days_a_window_starts_on() {
        // 2025-01-10 is a Friday
        let w = [window(&[Weekday::Fri], "22:00", "06:00")];
        assert!(in_schedule(&w, utc(2025, 1, 10, 23, 0, 0)));
        assert!(
            in_schedule(&w, utc(2025, 1, 11, 3, 0, 0)),
            "Saturday morning"
        );
        assert!(
            !in_schedule(&w, utc(2025, 1, 11, 23, 0, 0)),
            "Saturday night"
        );
        assert!(
            !in_schedule(&w, utc(2025, 1, 10, 3, 0, 0)),
            "began on Thursday"
        );

        let mondays = [window(&[Weekday::Mon], "09:00", "17:00")];
        assert!(in_schedule(&mondays, utc(2025, 1, 6, 10, 0, 0)));
        assert!(!in_schedule(&mondays, utc(2025, 1, 7, 10, 0, 0)));
    }

    #[test]
    fn end_may_be_midnight_and_bad_times_never_match() {
        let late = [window(&[], "18:00", "24:00")];
        assert!(in_schedule(&late, utc(2025, 1, 6, 23, 59, 59)));
        assert!(!in_schedule(&late, utc(2025, 1, 6, 17, 59, 0)));
        for (start, end) in [("25:00", "06:00"), ("9:00", "17:00"), ("24:00", "06:00")] {
            let w = [window(&[], start, end)];
            for hour in 0..24 {
                assert!(
                    !in_schedule(&w, utc(2025, 1, 6, hour, 30, 0)),
                    "{start}–{end} at {hour}:30"
                );
            }
        }
        assert!(!in_schedule(
            &[window(&[], "08:00", "08:00")],
            utc(2025, 1, 6, 8, 0, 0)
        ));
    }

    // ---- validation ----------------------------------------------------------------------

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(validate_settings(&CalibrationSettings::default()), Ok(()));
        let s = settings(|s| {
            s.intrusion_schedule = vec![window(&[Weekday::Sat], "20:00", "24:00")];
            s.crowd_min_seconds = 0.0;
            s.face_match_distance = 2.0;
            s.min_person_score = 1.0;
        });
        assert_eq!(validate_settings(&s), Ok(()));
    }

    #[test]
    fn bad_values_are_rejected_naming_the_field() {
        let cases: Vec<(&str, CalibrationSettings)> = vec![
            ("crowd_threshold", settings(|s| s.crowd_threshold = 0)),
            (
                "crowd_min_seconds",
                settings(|s| s.crowd_min_seconds = -1.0),
            ),
            (
                "loitering_seconds",
                settings(|s| s.loitering_seconds = f64::NAN),
            ),
            (
                "lying_seconds",
                settings(|s| s.lying_seconds = f64::INFINITY),
            ),
            (
                "fall_window_seconds",
                settings(|s| s.fall_window_seconds = -0.5),
            ),
            (
                "incident_merge_seconds",
                settings(|s| s.incident_merge_seconds = -1.0),
            ),
            (
                "lying_aspect_ratio",
                settings(|s| s.lying_aspect_ratio = 0.0),
            ),
            (
                "face_match_distance",
                settings(|s| s.face_match_distance = 2.5),
            ),
            (
                "face_match_distance",
                settings(|s| s.face_match_distance = -0.1),
            ),
            (
                "face_match_margin",
                settings(|s| s.face_match_margin = -0.1),
            ),
            ("min_person_score", settings(|s| s.min_person_score = 1.5)),
            (
                "min_person_score",
                settings(|s| s.min_person_score = f64::NAN),
            ),
            (
                "intrusion_schedule[0].start",
                settings(|s| s.intrusion_schedule = vec![window(&[], "24:00", "06:00")]),
            ),
            (
                "intrusion_schedule[1].end",
                settings(|s| {
                    s.intrusion_schedule =
                        vec![window(&[], "22:00", "06:00"), window(&[], "08:00", "7pm")]
                }),
            ),
            (
                "intrusion_schedule[0]",
                settings(|s| s.intrusion_schedule = vec![window(&[], "08:00", "08:00")]),
            ),
        ];
        for (field, s) in cases {
            let err = validate_settings(&s).expect_err(field);
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }

    // ---- catalogue -----------------------------------------------------------------------

    #[test]
    fn the_catalogue_lists_every_feature_flag() {
        let flags = serde_json::to_value(CameraFeatures::default()).unwrap();
        let flags = flags.as_object().unwrap();
        assert_eq!(flags.len(), 8);
        let listed: Vec<&str> = catalogue().iter().map(|r| r.feature).collect();
        // Flags that switch a recording on, not a rule.
        const NOT_RULES: [&str; 1] = ["clip_appearances"];
        for flag in flags.keys().filter(|f| !NOT_RULES.contains(&f.as_str())) {
            assert!(
                listed.contains(&flag.as_str()),
                "{flag} is not in the catalogue"
            );
        }
        assert!(
            listed.contains(&"always"),
            "person of interest runs on every camera"
        );
    }

    #[test]
    fn face_findings_name_the_subject_and_distances_and_honour_critical() {
        let settings = CalibrationSettings::default();
        let plain = CameraFeatures::default();
        let poi = person_of_interest(
            &plain,
            &settings,
            "t1",
            "s1",
            "Eileen",
            Some(Severity::Medium),
            0.31,
            Some(0.72),
        );
        assert_eq!(poi.kind, IncidentKind::PersonOfInterest);
        assert_eq!(poi.severity, Severity::Medium, "the subject's severity");
        assert!(
            poi.reasoning.contains("'Eileen' at distance 0.31"),
            "{}",
            poi.reasoning
        );
        assert!(
            poi.reasoning.contains("next subject at 0.72"),
            "{}",
            poi.reasoning
        );
        assert_eq!(poi.dedup_key, "poi:s1:t1");
        let critical = CameraFeatures {
            critical: true,
            ..CameraFeatures::default()
        };
        let unknown = unauthorised(&critical, &settings, "t2", 3, Some(("Bob", 0.83)));
        assert_eq!(unknown.kind, IncidentKind::Unauthorised);
        assert!(
            unknown.reasoning.contains("seen on 3 frames"),
            "{}",
            unknown.reasoning
        );
        assert!(unknown.reasoning.contains("'Bob' at distance 0.83"));
        assert!(unknown.reasoning.ends_with("(critical area)"));
        let nobody = unauthorised(&plain, &settings, "t3", 2, None);
        assert!(
            nobody
                .reasoning
                .contains("no authorised subject is enrolled")
        );
    }

    #[test]
    fn the_catalogue_names_real_settings_kinds_and_statuses() {
        let fields = serde_json::to_value(CalibrationSettings::default()).unwrap();
        let fields = fields.as_object().unwrap();
        let kinds: Vec<&str> = IncidentKind::ALL.iter().map(|k| k.as_str()).collect();
        let mut names = HashSet::new();
        for rule in catalogue() {
            assert!(names.insert(rule.name), "{} listed twice", rule.name);
            assert!(
                ["active", "inert", "modifier", "extension_point"].contains(&rule.status),
                "{}",
                rule.status
            );
            for setting in &rule.settings {
                assert!(fields.contains_key(*setting), "{}: {setting}", rule.name);
            }
            for kind in &rule.kinds {
                assert!(kinds.contains(kind), "{}: {kind}", rule.name);
            }
        }
        let theft = catalogue().into_iter().find(|r| r.name == "theft").unwrap();
        assert_eq!(theft.status, "extension_point");
        assert!(theft.detects.starts_with("Nothing today"));
    }
}
