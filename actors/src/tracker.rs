//! Per-camera multi-object tracking of person boxes (SORT-style).
//!
//! Every track carries a constant-velocity motion model: four independent 1-D Kalman filters
//! (position and velocity) on the box's centre x, centre y, width and height. Each
//! [`Tracker::update`] predicts every track to the frame's time, pairs predicted boxes with the
//! frame's detections by an optimal assignment on `1 - IoU` (Kuhn–Munkres), corrects the matched
//! tracks, and starts tentative tracks from the detections left over. A tentative track becomes
//! confirmed after [`TrackerConfig::min_hits`] consecutive matches and is dropped on its first
//! miss; a confirmed track ends once it has gone unmatched for longer than
//! [`TrackerConfig::lost_after_secs`].

/// An axis-aligned box in normalised image coordinates (0..1), top-left (x1, y1), bottom-right
/// (x2, y2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

impl TrackBox {
    /// Intersection over union with `other`, in 0..=1 (0 when either box is empty or not finite).
    pub fn iou(&self, other: &TrackBox) -> f32 {
        let iw = self.x2.min(other.x2) - self.x1.max(other.x1);
        let ih = self.y2.min(other.y2) - self.y1.max(other.y1);
        if !(iw > 0.0 && ih > 0.0) {
            return 0.0;
        }
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        let iou = inter / union;
        if iou.is_finite() && union > 0.0 {
            iou.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Area (0 for an inverted or degenerate box).
    pub fn area(&self) -> f32 {
        let w = self.x2 - self.x1;
        let h = self.y2 - self.y1;
        if w > 0.0 && h > 0.0 { w * h } else { 0.0 }
    }

    /// Bottom-centre point (feet).
    pub fn foot(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, self.y2)
    }

    fn centre_size(&self) -> [f64; 4] {
        let (x1, y1, x2, y2) = (
            f64::from(self.x1),
            f64::from(self.y1),
            f64::from(self.x2),
            f64::from(self.y2),
        );
        [(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1]
    }

    fn from_centre_size(s: [f64; 4]) -> Self {
        let (w, h) = (s[2].max(MIN_SIZE), s[3].max(MIN_SIZE));
        Self {
            x1: (s[0] - w / 2.0) as f32,
            y1: (s[1] - h / 2.0) as f32,
            x2: (s[0] + w / 2.0) as f32,
            y2: (s[1] + h / 2.0) as f32,
        }
    }
}

/// Tracker tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Lowest IoU between a track's predicted box and a detection for them to match (default 0.3).
    pub iou_threshold: f32,
    /// Consecutive matched frames before a track is confirmed (default 2). A track with min_hits
    /// 1 (or 0) is confirmed on its first frame.
    pub min_hits: u32,
    /// A confirmed track not matched for this many seconds ends (default 2.0).
    pub lost_after_secs: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            iou_threshold: 0.3,
            min_hits: 2,
            lost_after_secs: 2.0,
        }
    }
}

/// Tracker-local id of a track, increasing from 1 per Tracker. Ids are given out when a track is
/// confirmed, so tentative tracks that never confirm use none.
pub type TrackId = u64;

/// What one update did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TrackUpdate {
    /// For each input detection (same order, same length), the confirmed track it was assigned
    /// to, or None (unmatched, or its track is still tentative).
    pub assigned: Vec<Option<TrackId>>,
    /// Tracks confirmed by this update (their appearance starts now), each with the index of the
    /// detection that confirmed it.
    pub started: Vec<(TrackId, usize)>,
    /// Tracks that ended in this update (not matched for lost_after_secs).
    pub ended: Vec<EndedTrack>,
    /// Confirmed tracks held in place because the detector did not look where they are
    /// ([`Tracker::update_in`]), with their boxes.
    pub held: Vec<(TrackId, TrackBox)>,
}

/// A confirmed track that has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedTrack {
    /// Its id.
    pub id: TrackId,
    /// Time of its first matched detection (while still tentative).
    pub first_seen: f64,
    /// Time of its last matched detection.
    pub last_seen: f64,
    /// Its last matched detection box.
    pub last_box: TrackBox,
    /// How many frames it was matched in, tentative ones included.
    pub hits: u32,
}

/// Smallest width or height (normalised) a predicted box may shrink to.
const MIN_SIZE: f64 = 1e-4;

/// Noise of one 1-D filter.
#[derive(Debug, Clone, Copy)]
struct Noise {
    /// Spectral density of the white-noise acceleration (per second).
    q: f64,
    /// Measurement variance.
    r: f64,
    /// Variance of the velocity before any has been observed.
    v0: f64,
}

const CENTRE_NOISE: Noise = Noise {
    q: 0.02,
    r: 1e-4,
    v0: 0.25,
};
const SIZE_NOISE: Noise = Noise {
    q: 0.005,
    r: 1e-4,
    v0: 0.04,
};

/// Constant-velocity Kalman filter on one coordinate, with its symmetric covariance.
#[derive(Debug, Clone, Copy)]
struct Kalman1d {
    x: f64,
    v: f64,
    pxx: f64,
    pxv: f64,
    pvv: f64,
    noise: Noise,
}

impl Kalman1d {
    fn new(z: f64, noise: Noise) -> Self {
        Self {
            x: z,
            v: 0.0,
            pxx: noise.r,
            pxv: 0.0,
            pvv: noise.v0,
            noise,
        }
    }

    /// Moves the state `dt` seconds ahead: x += v·dt, P = F·P·Fᵀ + Q(dt).
    fn predict(&mut self, dt: f64) {
        if dt.is_nan() || dt <= 0.0 {
            return;
        }
        let q = self.noise.q;
        self.x += self.v * dt;
        self.pxx += 2.0 * dt * self.pxv + dt * dt * self.pvv + q * dt * dt * dt / 3.0;
        self.pxv += dt * self.pvv + q * dt * dt / 2.0;
        self.pvv += q * dt;
    }

    /// Folds in a measurement `z` of the position.
    fn correct(&mut self, z: f64) {
        let s = self.pxx + self.noise.r;
        let (kx, kv) = (self.pxx / s, self.pxv / s);
        let innovation = z - self.x;
        self.x += kx * innovation;
        self.v += kv * innovation;
        let (pxx, pxv, pvv) = (self.pxx, self.pxv, self.pvv);
        self.pxx = (1.0 - kx) * pxx;
        self.pxv = (1.0 - kx) * pxv;
        self.pvv = pvv - kv * pxv;
    }
}

#[derive(Debug, Clone)]
struct Track {
    /// Set once confirmed.
    id: Option<TrackId>,
    /// Centre x, centre y, width, height.
    filters: [Kalman1d; 4],
    /// Time the filters are at.
    time: f64,
    first_seen: f64,
    last_seen: f64,
    last_box: TrackBox,
    hits: u32,
}

impl Track {
    fn new(t: f64, det: TrackBox) -> Self {
        let m = det.centre_size();
        Self {
            id: None,
            filters: [
                Kalman1d::new(m[0], CENTRE_NOISE),
                Kalman1d::new(m[1], CENTRE_NOISE),
                Kalman1d::new(m[2].max(MIN_SIZE), SIZE_NOISE),
                Kalman1d::new(m[3].max(MIN_SIZE), SIZE_NOISE),
            ],
            time: t,
            first_seen: t,
            last_seen: t,
            last_box: det,
            hits: 1,
        }
    }

    fn predict(&mut self, t: f64) {
        let dt = t - self.time;
        for f in &mut self.filters {
            f.predict(dt);
        }
        // A shrinking box must not turn inside out.
        for f in &mut self.filters[2..] {
            if f.x < MIN_SIZE {
                f.x = MIN_SIZE;
                f.v = f.v.max(0.0);
            }
        }
        self.time = self.time.max(t);
    }

    fn correct(&mut self, t: f64, det: TrackBox) {
        let m = det.centre_size();
        for (i, f) in self.filters.iter_mut().enumerate() {
            let z = if i >= 2 { m[i].max(MIN_SIZE) } else { m[i] };
            if z.is_finite() {
                f.correct(z);
            }
        }
        self.last_seen = t;
        self.last_box = det;
        self.hits = self.hits.saturating_add(1);
    }

    fn estimate(&self) -> TrackBox {
        TrackBox::from_centre_size(self.filters.map(|f| f.x))
    }

    fn ended(&self, id: TrackId) -> EndedTrack {
        EndedTrack {
            id,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            last_box: self.last_box,
            hits: self.hits,
        }
    }
}

/// Tracks the people in one camera's frames.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: TrackId,
    last_t: Option<f64>,
}

impl Tracker {
    /// A tracker with no tracks.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
            last_t: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Advances to time `t` (seconds, non-decreasing; a smaller t is treated as equal to the
    /// last, and so is a non-finite one) with this frame's detections.
    pub fn update(&mut self, t: f64, detections: &[TrackBox]) -> TrackUpdate {
        self.update_in(t, detections, None)
    }

    /// Like [`Tracker::update`], for detections the detector found only inside `observed`
    /// (`None`: the whole frame). A track whose predicted box lies less than half inside them
    /// is held: kept where it was, velocity dropped, not matched and not missed.
    pub fn update_in(
        &mut self,
        t: f64,
        detections: &[TrackBox],
        observed: Option<&[TrackBox]>,
    ) -> TrackUpdate {
        let t = match self.last_t {
            Some(last) if !t.is_finite() || t < last => last,
            None if !t.is_finite() => 0.0,
            _ => t,
        };
        self.last_t = Some(t);
        let mut held = Vec::new();
        if let Some(observed) = observed {
            let mut looked_at = Vec::with_capacity(self.tracks.len());
            for mut track in std::mem::take(&mut self.tracks) {
                let mut predicted = track.clone();
                predicted.predict(t);
                let b = predicted.estimate();
                let inside: f32 = observed.iter().map(|o| overlap(&b, o)).sum();
                if inside >= 0.5 * b.area() {
                    looked_at.push(track);
                } else {
                    for f in &mut track.filters {
                        f.v = 0.0;
                    }
                    track.time = t;
                    held.push(track);
                }
            }
            self.tracks = looked_at;
        }
        for track in &mut self.tracks {
            track.predict(t);
        }

        let threshold = self.config.iou_threshold;
        let ious: Vec<Vec<f32>> = self
            .tracks
            .iter()
            .map(|track| {
                let predicted = track.estimate();
                detections.iter().map(|d| predicted.iou(d)).collect()
            })
            .collect();
        // Pairs under the threshold get a cost above any sum of allowed pairs, so the solver first
        // makes as many allowed matches as it can and then minimises 1 - IoU among them.
        let gated = (self.tracks.len().min(detections.len()) + 1) as f64;
        let cost: Vec<Vec<f64>> = ious
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&iou| {
                        if iou >= threshold {
                            1.0 - f64::from(iou)
                        } else {
                            gated
                        }
                    })
                    .collect()
            })
            .collect();
        let mut track_match = hungarian(&cost);
        for (i, m) in track_match.iter_mut().enumerate() {
            if m.is_some_and(|j| ious[i][j] < threshold) {
                *m = None;
            }
        }

        let min_hits = self.config.min_hits.max(1);
        let mut out = TrackUpdate {
            assigned: vec![None; detections.len()],
            ..TrackUpdate::default()
        };
        let mut det_used = vec![false; detections.len()];
        let mut kept = Vec::with_capacity(self.tracks.len() + detections.len());
        for (mut track, m) in std::mem::take(&mut self.tracks)
            .into_iter()
            .zip(track_match)
        {
            match (m, track.id) {
                (Some(j), _) => {
                    det_used[j] = true;
                    track.correct(t, detections[j]);
                    if track.id.is_none() && track.hits >= min_hits {
                        track.id = Some(self.take_id());
                        out.started.extend(track.id.map(|id| (id, j)));
                    }
                    out.assigned[j] = track.id;
                    kept.push(track);
                }
                // A tentative track that misses a frame is dropped.
                (None, None) => {}
                (None, Some(id)) => {
                    if t - track.last_seen > self.config.lost_after_secs {
                        out.ended.push(track.ended(id));
                    } else {
                        kept.push(track);
                    }
                }
            }
        }
        for (j, det) in detections.iter().enumerate() {
            if det_used[j] {
                continue;
            }
            let mut track = Track::new(t, *det);
            if min_hits <= 1 {
                let id = self.take_id();
                track.id = Some(id);
                out.started.push((id, j));
                out.assigned[j] = Some(id);
            }
            kept.push(track);
        }
        out.held = held
            .iter()
            .filter_map(|track| track.id.map(|id| (id, track.estimate())))
            .collect();
        kept.extend(held);
        self.tracks = kept;
        out
    }

    /// Every track's box as the motion model predicts it at `t`, without advancing the
    /// tracker, each with whether the track is confirmed (`false`: tentative).
    pub fn predicted(&self, t: f64) -> Vec<(bool, TrackBox)> {
        self.tracks
            .iter()
            .map(|track| {
                let mut track = track.clone();
                track.predict(t);
                (track.id.is_some(), track.estimate())
            })
            .collect()
    }

    /// Ends every confirmed track now (camera stopped); tentative tracks are dropped silently.
    pub fn finish(&mut self) -> Vec<EndedTrack> {
        std::mem::take(&mut self.tracks)
            .into_iter()
            .filter_map(|track| track.id.map(|id| track.ended(id)))
            .collect()
    }

    /// Whether it holds no track at all, confirmed or tentative.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Confirmed tracks currently alive.
    pub fn active(&self) -> usize {
        self.tracks.iter().filter(|t| t.id.is_some()).count()
    }

    /// Confirmed tracks currently alive, each with its box as the motion model estimates it at
    /// the last update's time.
    pub fn active_tracks(&self) -> Vec<(TrackId, TrackBox)> {
        self.tracks
            .iter()
            .filter_map(|t| t.id.map(|id| (id, t.estimate())))
            .collect()
    }

    fn take_id(&mut self) -> TrackId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Area of the intersection of `a` and `b`.
fn overlap(a: &TrackBox, b: &TrackBox) -> f32 {
    let w = a.x2.min(b.x2) - a.x1.max(b.x1);
    let h = a.y2.min(b.y2) - a.y1.max(b.y1);
    if w > 0.0 && h > 0.0 { w * h } else { 0.0 }
}

/// Minimum-cost assignment of rows to columns (Kuhn–Munkres with potentials, O(n²·m)).
///
/// `cost` is a rectangular matrix of finite values (rows of equal length). Returns, for every
/// row, the column it is assigned to; `min(rows, cols)` pairs are made, each column at most once,
/// with the smallest possible total cost.
fn hungarian(cost: &[Vec<f64>]) -> Vec<Option<usize>> {
    let rows = cost.len();
    let cols = cost.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    if rows > cols {
        // Solve the transpose (fewer rows than columns) and turn the answer round.
        let transposed: Vec<Vec<f64>> = (0..cols)
            .map(|j| cost.iter().map(|row| row[j]).collect())
            .collect();
        let mut by_row = vec![None; rows];
        for (j, i) in hungarian(&transposed).into_iter().enumerate() {
            if let Some(i) = i {
                by_row[i] = Some(j);
            }
        }
        return by_row;
    }

    // 1-based: row 0 and column 0 are a virtual start. `owner[j]` is the row holding column j.
    let mut row_pot = vec![0.0f64; rows + 1];
    let mut col_pot = vec![0.0f64; cols + 1];
    let mut owner = vec![0usize; cols + 1];
    let mut back = vec![0usize; cols + 1];
    for row in 1..=rows {
        owner[0] = row;
        let mut col = 0usize;
        let mut slack = vec![f64::INFINITY; cols + 1];
        let mut visited = vec![false; cols + 1];
        // Grow a tree of tight edges from `row` until it reaches a free column.
        loop {
            visited[col] = true;
            let from = owner[col];
            let mut delta = f64::INFINITY;
            let mut next = 0usize;
            for j in 1..=cols {
                if visited[j] {
                    continue;
                }
                let reduced = cost[from - 1][j - 1] - row_pot[from] - col_pot[j];
                if reduced < slack[j] {
                    slack[j] = reduced;
                    back[j] = col;
                }
                if slack[j] < delta {
                    delta = slack[j];
                    next = j;
                }
            }
            for j in 0..=cols {
                if visited[j] {
                    row_pot[owner[j]] += delta;
                    col_pot[j] -= delta;
                } else {
                    slack[j] -= delta;
                }
            }
            col = next;
            if owner[col] == 0 {
                break;
            }
        }
        // Flip the alternating path back to the start.
        while col != 0 {
            let prev = back[col];
            owner[col] = owner[prev];
            col = prev;
        }
    }

    let mut by_row = vec![None; rows];
    for (j, &i) in owner.iter().enumerate().skip(1) {
        if i != 0 {
            by_row[i - 1] = Some(j - 1);
        }
    }
    by_row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> TrackBox {
        TrackBox { x1, y1, x2, y2 }
    }

    fn person(cx: f32, cy: f32) -> TrackBox {
        bx(cx - 0.05, cy - 0.15, cx + 0.05, cy + 0.15)
    }

    fn config(min_hits: u32) -> TrackerConfig {
        TrackerConfig {
            min_hits,
            ..TrackerConfig::default()
        }
    }

    #[test]
    fn a_track_outside_the_looked_at_regions_is_held_still_until_a_frame_looks_at_it() {
        let mut tracker = Tracker::new(config(2));
        // A person walks right, confirmed on the second frame.
        tracker.update(0.0, &[person(0.3, 0.5)]);
        let started = tracker.update(0.2, &[person(0.32, 0.5)]).started;
        assert_eq!(started.len(), 1);
        let id = started[0].0;
        // Then the detector looks only at the far corner for half a minute: the track is held
        // where it was (no drift from its old velocity), never ended.
        let elsewhere = [bx(0.8, 0.0, 1.0, 0.3)];
        let mut t = 0.2;
        let mut last = None;
        while t < 30.0 {
            t += 0.2;
            let update = tracker.update_in(t, &[], Some(&elsewhere));
            assert!(update.ended.is_empty(), "ended at {t}");
            assert_eq!(update.held.len(), 1);
            let (held_id, b) = update.held[0];
            assert_eq!(held_id, id);
            if let Some(previous) = last {
                assert_eq!(b, previous, "a held box stays put");
            }
            last = Some(b);
        }
        assert!((last.unwrap().x1 + 0.05 - 0.32).abs() < 0.02, "{last:?}");
        // A region over it that finds it matches it again (same track)…
        let here = [bx(0.1, 0.2, 0.6, 0.9)];
        let update = tracker.update_in(t + 0.2, &[person(0.32, 0.5)], Some(&here));
        assert_eq!(update.assigned, vec![Some(id)]);
        assert!(update.held.is_empty());
        // …and once a frame looks at it and it is gone for longer than lost_after_secs, it ends.
        let mut ended = vec![];
        let mut t = t + 0.2;
        while ended.is_empty() && t < 40.0 {
            t += 0.2;
            ended = tracker.update_in(t, &[], Some(&here)).ended;
        }
        assert_eq!(ended.len(), 1);
        assert!(t > 32.0, "{t}");
        assert!(tracker.predicted(t).is_empty());
    }

    #[test]
    fn box_geometry() {
        let a = bx(0.0, 0.0, 0.2, 0.2);
        let b = bx(0.1, 0.0, 0.3, 0.2);
        assert!((a.area() - 0.04).abs() < 1e-6);
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-5);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        let far = bx(0.5, 0.5, 0.6, 0.6);
        assert_eq!(a.iou(&far), 0.0);
        assert_eq!(a.foot(), (0.1, 0.2));
        let inverted = bx(0.2, 0.2, 0.0, 0.0);
        assert_eq!(inverted.area(), 0.0);
        assert_eq!(inverted.iou(&a), 0.0);
    }

    #[test]
    fn crossing_people_keep_their_ids() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let (mut id_a, mut id_b) = (None, None);
        let mut heaviest_overlap = 0.0f32;
        for k in 0..13 {
            // A walks right, B walks left; they pass each other around k = 6..7.
            let a = person(0.2 + 0.05 * k as f32, 0.5);
            let b = person(0.825 - 0.05 * k as f32, 0.5);
            heaviest_overlap = heaviest_overlap.max(a.iou(&b));
            let up = tracker.update(f64::from(k) * 0.1, &[a, b]);
            assert_eq!(up.assigned.len(), 2);
            assert!(up.ended.is_empty(), "frame {k}: {up:?}");
            if k == 0 {
                assert_eq!(up.assigned, vec![None, None]);
                continue;
            }
            if k == 1 {
                assert_eq!(up.started.len(), 2);
                id_a = up.assigned[0];
                id_b = up.assigned[1];
                assert!(id_a.is_some() && id_b.is_some() && id_a != id_b);
            }
            assert_eq!(
                up.assigned,
                vec![id_a, id_b],
                "frame {k}: ids swapped or lost"
            );
        }
        assert!(heaviest_overlap > 0.5, "the boxes never overlapped heavily");
        assert_eq!(tracker.active(), 2);
    }

    #[test]
    fn steady_box_survives_a_missed_frame() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let at = |k: u32| person(0.1 + 0.04 * k as f32, 0.5);
        let mut id = None;
        for k in 0..6 {
            let up = tracker.update(f64::from(k) * 0.1, &[at(k)]);
            if k >= 1 {
                id = id.or(up.assigned[0]);
                assert_eq!(up.assigned[0], id);
            }
        }
        // Frame 6 has no detection.
        let up = tracker.update(0.6, &[]);
        assert!(up.assigned.is_empty() && up.ended.is_empty() && up.started.is_empty());
        // The last matched box and the box two frames on barely overlap; only the prediction does.
        assert!(at(5).iou(&at(7)) < 0.3);
        for k in 7..10 {
            let up = tracker.update(f64::from(k) * 0.1, &[at(k)]);
            assert_eq!(up.assigned, vec![id], "frame {k}");
            assert!(up.started.is_empty());
        }
        assert_eq!(tracker.active(), 1);
    }

    #[test]
    fn min_hits_gates_confirmation() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let up = tracker.update(0.0, &[person(0.3, 0.5)]);
        assert_eq!(up.assigned, vec![None]);
        assert!(up.started.is_empty());
        assert_eq!(tracker.active(), 0);
        let up = tracker.update(0.1, &[person(0.3, 0.5)]);
        assert_eq!(up.started, vec![(1, 0)]);
        assert_eq!(up.assigned, vec![Some(1)]);
        assert_eq!(tracker.active(), 1);

        // A one-frame flicker elsewhere never starts, and neither does its reappearance later.
        let up = tracker.update(0.2, &[person(0.3, 0.5), person(0.8, 0.5)]);
        assert_eq!(up.assigned, vec![Some(1), None]);
        assert!(up.started.is_empty());
        let up = tracker.update(0.3, &[person(0.3, 0.5)]);
        assert!(up.started.is_empty());
        let up = tracker.update(0.4, &[person(0.3, 0.5), person(0.8, 0.5)]);
        assert!(up.started.is_empty());
        assert_eq!(tracker.active(), 1);
        assert!(tracker.finish().iter().all(|e| e.id == 1));

        // With min_hits 1 the first frame confirms.
        let mut eager = Tracker::new(config(1));
        let up = eager.update(0.0, &[person(0.3, 0.5)]);
        assert_eq!(up.started, vec![(1, 0)]);
        assert_eq!(up.assigned, vec![Some(1)]);
    }

    #[test]
    fn track_ends_after_lost_after_secs() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let last = person(0.5, 0.5);
        for k in 0..=10 {
            tracker.update(f64::from(k) * 0.1, &[last]);
        }
        assert_eq!(tracker.active(), 1);
        assert!(tracker.update(1.5, &[]).ended.is_empty());
        // Exactly lost_after_secs since the last match: still alive.
        assert!(tracker.update(3.0, &[]).ended.is_empty());
        assert_eq!(tracker.active(), 1);
        let up = tracker.update(3.1, &[]);
        assert_eq!(up.ended.len(), 1);
        let ended = &up.ended[0];
        assert_eq!(ended.id, 1);
        assert_eq!(ended.first_seen, 0.0);
        assert!((ended.last_seen - 1.0).abs() < 1e-9);
        assert_eq!(ended.last_box, last);
        assert_eq!(ended.hits, 11);
        assert_eq!(tracker.active(), 0);
        assert!(tracker.update(4.0, &[]).ended.is_empty());
    }

    #[test]
    fn time_going_backwards_counts_as_the_last_time() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        tracker.update(1.0, &[person(0.5, 0.5)]);
        tracker.update(1.1, &[person(0.5, 0.5)]);
        let up = tracker.update(0.2, &[]);
        assert!(up.ended.is_empty());
        let ended = tracker.update(3.2, &[]).ended;
        assert_eq!(ended.len(), 1);
        assert!((ended[0].last_seen - 1.1).abs() < 1e-9);
    }

    #[test]
    fn finish_ends_confirmed_tracks_only() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        tracker.update(0.0, &[person(0.2, 0.5), person(0.6, 0.5)]);
        let up = tracker.update(0.5, &[person(0.2, 0.5), person(0.6, 0.5)]);
        assert_eq!(up.started.len(), 2);
        // A third, tentative track.
        tracker.update(1.0, &[person(0.2, 0.5), person(0.6, 0.5), person(0.9, 0.5)]);
        let mut ended = tracker.finish();
        ended.sort_by_key(|e| e.id);
        assert_eq!(ended.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2]);
        assert!(
            ended
                .iter()
                .all(|e| e.first_seen == 0.0 && e.last_seen == 1.0)
        );
        assert!(ended.iter().all(|e| e.hits == 3));
        assert_eq!(tracker.active(), 0);
        assert!(tracker.finish().is_empty());
    }

    #[test]
    fn shrinking_box_prediction_stays_positive() {
        let mut tracker = Tracker::new(config(1));
        for k in 0..4 {
            let s = 0.2 - 0.05 * k as f32;
            let b = bx(0.5 - s, 0.5 - s, 0.5 + s, 0.5 + s);
            tracker.update(f64::from(k) * 0.1, &[b]);
        }
        tracker.update(1.5, &[]);
        let boxes = tracker.active_tracks();
        assert_eq!(boxes.len(), 1);
        let b = boxes[0].1;
        assert!(b.x2 > b.x1 && b.y2 > b.y1, "{b:?}");
        // The size model ran into the clamp rather than carrying the shrink on.
        assert!(b.x2 - b.x1 < 0.01, "{b:?}");
    }

    #[test]
    fn assigned_matches_detection_count() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        for (k, n) in [0usize, 3, 1, 5, 0, 2].into_iter().enumerate() {
            let dets: Vec<TrackBox> = (0..n).map(|i| person(0.1 + 0.15 * i as f32, 0.5)).collect();
            let up = tracker.update(k as f64 * 0.1, &dets);
            assert_eq!(up.assigned.len(), n);
            assert!(up.started.iter().all(|&(_, j)| j < n));
        }
    }

    #[test]
    fn hungarian_beats_greedy() {
        // IoUs [[0.9, 0.8], [0.7, 0.1]]: greedy takes (0,0) = 0.9, leaving (1,1) = 0.1 (total
        // cost 1.0); the optimum pairs (0,1) and (1,0) for a total cost of 0.5.
        let iou = [[0.9, 0.8], [0.7, 0.1]];
        let cost: Vec<Vec<f64>> = iou
            .iter()
            .map(|r| r.iter().map(|v| 1.0 - v).collect())
            .collect();
        assert_eq!(hungarian(&cost), vec![Some(1), Some(0)]);

        let cost = vec![
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        assert_eq!(hungarian(&cost), vec![Some(1), Some(0), Some(2)]);
        // Rectangular both ways.
        assert_eq!(hungarian(&[vec![5.0, 1.0, 3.0]]), vec![Some(1)]);
        assert_eq!(
            hungarian(&[vec![5.0], vec![1.0], vec![3.0]]),
            vec![None, Some(0), None]
        );
        assert_eq!(hungarian(&[vec![], vec![]]), vec![None, None]);
        assert!(hungarian(&[]).is_empty());
    }

    #[test]
    fn hungarian_matches_brute_force() {
        fn best(cost: &[Vec<f64>], row: usize, used: &mut Vec<bool>) -> f64 {
            if row == cost.len() {
                return 0.0;
            }
            let mut best_total = f64::INFINITY;
            for j in 0..used.len() {
                if !used[j] {
                    used[j] = true;
                    best_total = best_total.min(cost[row][j] + best(cost, row + 1, used));
                    used[j] = false;
                }
            }
            best_total
        }
        let mut seed = 0x2545_f491_u64;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as f64 / f64::from(1u32 << 31)
        };
        for rows in 1..=5 {
            for cols in rows..=6 {
                for _ in 0..20 {
                    let cost: Vec<Vec<f64>> = (0..rows)
                        .map(|_| (0..cols).map(|_| next()).collect())
                        .collect();
                    let got = hungarian(&cost);
                    let mut cols_seen: Vec<usize> = got.iter().map(|c| c.unwrap()).collect();
                    let total: f64 = got
                        .iter()
                        .enumerate()
                        .map(|(i, c)| cost[i][c.unwrap()])
                        .sum();
                    cols_seen.sort_unstable();
                    cols_seen.dedup();
                    assert_eq!(cols_seen.len(), rows);
                    let want = best(&cost, 0, &mut vec![false; cols]);
                    assert!(
                        (total - want).abs() < 1e-9,
                        "{rows}x{cols}: {total} vs {want}"
                    );
                }
            }
        }
    }
}
