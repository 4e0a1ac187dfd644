//! Motion detection on a camera's sampled frames, before any model runs.
//!
//! Each frame is reduced to a grey grid at most [`MAX_GRID_WIDTH`] cells wide (each cell the
//! mean of a square block of pixels, which also averages sensor noise away). A running-average
//! background follows the scene; a cell moves when it differs from the background by more than
//! the threshold, after the frame's overall brightness shift is taken out (auto-exposure and
//! slow lighting drift do not fire). The moving cells are dilated once, grouped into
//! 8-connected components, and each component with enough moving cells is a motion box. A
//! frame where most of the picture changes at once (lights switched on, the camera's day/night
//! switch) replaces the background instead of reporting motion everywhere. Cells inside the
//! camera's motion masks never move.
//!
//! The camera actor sends a frame to the models only when it has motion, a live track, or a
//! periodic full analysis is due ([`crate::camera_actor`]).

use vigil_schemas::events::{NormBox, Point};

use crate::frame::RgbImage;

/// Widest grey grid, in cells.
pub const MAX_GRID_WIDTH: u32 = 320;
/// Share of the unmasked picture that changing at once is a lighting change, not motion.
pub const LIGHTING_JUMP_FRACTION: f32 = 0.5;
/// Most boxes reported for one frame (the largest).
pub const MAX_BOXES: usize = 32;

/// How a camera's motion is detected (from its calibration).
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSettings {
    /// Grey-level difference from the background (0–255) above which a cell moves.
    pub threshold: f32,
    /// Smallest motion box, as a share of the frame's area (moving cells / all cells).
    pub min_area: f32,
    /// Seconds for a change to sink into the background (the running average's time
    /// constant): something that stops moving stops being motion after about this long.
    pub background_seconds: f32,
    /// Polygons (normalised coordinates) where motion is ignored.
    pub masks: Vec<Vec<Point>>,
}

impl Default for MotionSettings {
    fn default() -> Self {
        Self {
            threshold: 20.0,
            min_area: 0.001,
            background_seconds: 5.0,
            masks: vec![],
        }
    }
}

/// What the detector saw in one frame.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Motion {
    /// Moving regions, normalised, largest first.
    pub boxes: Vec<NormBox>,
    /// Share of the unmasked cells that moved (before dilation).
    pub changed: f32,
    /// The background was (re)started with this frame: the camera's first frame, a new frame
    /// size, changed masks, or a lighting jump. No motion is reported then.
    pub reseeded: bool,
}

impl Motion {
    /// Whether anything moved.
    pub fn moving(&self) -> bool {
        !self.boxes.is_empty()
    }
}

/// One camera's motion detector.
#[derive(Debug, Default)]
pub struct MotionDetector {
    /// Frame size the grid was built for.
    frame: (u32, u32),
    /// Pixels per cell side.
    step: u32,
    /// Grid size.
    cols: usize,
    rows: usize,
    /// Running average per cell.
    background: Vec<f32>,
    /// Cells to ignore.
    masked: Vec<bool>,
    /// The masks `masked` was built from.
    masks: Vec<Vec<Point>>,
    /// Capture time of the previous frame, seconds.
    last_t: Option<f64>,
}

impl MotionDetector {
    /// A detector that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at the frame captured at `t` (seconds, any origin, increasing).
    pub fn observe(&mut self, image: &RgbImage, t: f64, settings: &MotionSettings) -> Motion {
        if image.width == 0 || image.height == 0 {
            return Motion::default();
        }
        let grey = self.grid(image, settings);
        let dt = self.last_t.map(|last| (t - last).max(0.0));
        self.last_t = Some(t);
        let Some(dt) = dt.filter(|_| self.background.len() == grey.len()) else {
            self.background = grey;
            return Motion {
                reseeded: true,
                ..Motion::default()
            };
        };

        // The frame's overall brightness shift against the background, taken out of every
        // cell's difference.
        let (mut sum, mut n) = (0.0f64, 0usize);
        for (i, (g, b)) in grey.iter().zip(&self.background).enumerate() {
            if !self.masked[i] {
                sum += f64::from(g - b);
                n += 1;
            }
        }
        if n == 0 {
            self.background = grey;
            return Motion::default();
        }
        let shift = (sum / n as f64) as f32;
        let moving: Vec<bool> = grey
            .iter()
            .zip(&self.background)
            .zip(&self.masked)
            .map(|((g, b), masked)| !masked && (g - b - shift).abs() > settings.threshold)
            .collect();
        let changed_cells = moving.iter().filter(|m| **m).count();
        let changed = changed_cells as f32 / n as f32;
        if changed > LIGHTING_JUMP_FRACTION {
            self.background = grey;
            return Motion {
                changed,
                reseeded: true,
                ..Motion::default()
            };
        }

        let rate = if settings.background_seconds > 0.0 {
            1.0 - (-(dt as f32) / settings.background_seconds).exp()
        } else {
            1.0
        };
        for (b, g) in self.background.iter_mut().zip(&grey) {
            *b += rate * (g - *b);
        }

        let min_cells = ((settings.min_area * n as f32).ceil() as usize).max(1);
        let boxes = if changed_cells >= min_cells {
            self.components(&moving, min_cells, image)
        } else {
            vec![]
        };
        Motion {
            boxes,
            changed,
            reseeded: false,
        }
    }

    /// The frame as a grey grid; rebuilds the grid (and forgets the background) when the
    /// frame size or the masks changed.
    fn grid(&mut self, image: &RgbImage, settings: &MotionSettings) -> Vec<f32> {
        if self.frame != (image.width, image.height) || self.masks != settings.masks {
            self.frame = (image.width, image.height);
            self.step = image.width.div_ceil(MAX_GRID_WIDTH).max(1);
            self.cols = (image.width / self.step).max(1) as usize;
            self.rows = (image.height / self.step).max(1) as usize;
            self.masks = settings.masks.clone();
            self.masked = (0..self.rows * self.cols)
                .map(|i| {
                    let (cx, cy) = (i % self.cols, i / self.cols);
                    let x = (cx as f64 + 0.5) / self.cols as f64;
                    let y = (cy as f64 + 0.5) / self.rows as f64;
                    self.masks
                        .iter()
                        .any(|m| crate::geometry::in_polygon(x, y, m))
                })
                .collect();
            self.background.clear();
            self.last_t = None;
        }
        let step = self.step as usize;
        let width = image.width as usize;
        let mut sums = vec![0u32; self.rows * self.cols];
        for (y, row) in image
            .data
            .chunks_exact(width * 3)
            .take(self.rows * step)
            .enumerate()
        {
            let cells = &mut sums[(y / step) * self.cols..(y / step + 1) * self.cols];
            for (x, px) in row.chunks_exact(3).take(self.cols * step).enumerate() {
                // ITU-R BT.601 luma in 8-bit fixed point.
                cells[x / step] +=
                    77 * u32::from(px[0]) + 150 * u32::from(px[1]) + 29 * u32::from(px[2]);
            }
        }
        let scale = 1.0 / (256 * step * step) as f32;
        sums.into_iter().map(|s| s as f32 * scale).collect()
    }

    /// The 8-connected components of the moving cells after one 3×3 dilation, as normalised
    /// boxes, keeping those with at least `min_cells` moving cells (counted before dilation).
    fn components(&self, moving: &[bool], min_cells: usize, image: &RgbImage) -> Vec<NormBox> {
        let (cols, rows) = (self.cols, self.rows);
        let mut dilated = vec![false; moving.len()];
        for (i, _) in moving.iter().enumerate().filter(|(_, m)| **m) {
            let (x, y) = (i % cols, i / cols);
            for ny in y.saturating_sub(1)..=(y + 1).min(rows - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(cols - 1) {
                    dilated[ny * cols + nx] = true;
                }
            }
        }
        let mut seen = vec![false; moving.len()];
        let mut found: Vec<(usize, NormBox)> = vec![];
        let mut stack = vec![];
        for start in 0..dilated.len() {
            if !dilated[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let (mut x1, mut y1, mut x2, mut y2) = (cols, rows, 0, 0);
            let mut cells = 0;
            while let Some(i) = stack.pop() {
                let (x, y) = (i % cols, i / cols);
                (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x), y2.max(y));
                cells += usize::from(moving[i]);
                for ny in y.saturating_sub(1)..=(y + 1).min(rows - 1) {
                    for nx in x.saturating_sub(1)..=(x + 1).min(cols - 1) {
                        let j = ny * cols + nx;
                        if dilated[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            if cells >= min_cells {
                let step = self.step as f32;
                let (w, h) = (image.width as f32, image.height as f32);
                found.push((
                    cells,
                    NormBox {
                        x1: x1 as f32 * step / w,
                        y1: y1 as f32 * step / h,
                        x2: ((x2 + 1) as f32 * step / w).min(1.0),
                        y2: ((y2 + 1) as f32 * step / h).min(1.0),
                    },
                ));
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found.into_iter().take(MAX_BOXES).map(|(_, b)| b).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 640;
    const H: u32 = 480;

    /// A deterministic noise source (xorshift), so the tests need no RNG crate.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % 1000) as f32 / 1000.0
        }
    }

    /// A textured grey scene at brightness `level`, with sensor noise of ± `noise` grey
    /// levels, and a dark `w`×`h` block at (`bx`, `by`) when given.
    fn scene(
        level: f32,
        noise: f32,
        n: &mut Noise,
        block: Option<(u32, u32, u32, u32)>,
    ) -> RgbImage {
        let mut data = Vec::with_capacity((W * H * 3) as usize);
        for y in 0..H {
            for x in 0..W {
                let texture = ((x / 40 + y / 40) % 2) as f32 * 30.0;
                let mut v = level + texture + (n.next() * 2.0 - 1.0) * noise;
                if let Some((bx, by, bw, bh)) = block
                    && (bx..bx + bw).contains(&x)
                    && (by..by + bh).contains(&y)
                {
                    v = 10.0;
                }
                let v = v.clamp(0.0, 255.0) as u8;
                data.extend_from_slice(&[v, v, v]);
            }
        }
        RgbImage {
            width: W,
            height: H,
            data,
        }
    }

    fn run(frames: &[RgbImage], settings: &MotionSettings) -> Vec<Motion> {
        let mut detector = MotionDetector::new();
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| detector.observe(f, i as f64 * 0.2, settings))
            .collect()
    }

    #[test]
    fn the_first_frame_seeds_the_background() {
        let mut n = Noise(1);
        let seen = run(
            &[scene(100.0, 0.0, &mut n, None)],
            &MotionSettings::default(),
        );
        assert!(seen[0].reseeded);
        assert!(!seen[0].moving());
    }

    #[test]
    fn sensor_noise_alone_is_no_motion() {
        let mut n = Noise(7);
        let frames: Vec<_> = (0..20).map(|_| scene(100.0, 12.0, &mut n, None)).collect();
        for (i, m) in run(&frames, &MotionSettings::default()).iter().enumerate() {
            assert!(!m.moving(), "frame {i}: {m:?}");
        }
    }

    #[test]
    fn a_moving_block_is_found_where_it_is() {
        let mut n = Noise(3);
        let mut frames: Vec<_> = (0..5).map(|_| scene(120.0, 8.0, &mut n, None)).collect();
        // 64×128 px at (320, 160): a person-sized block walking in.
        frames.push(scene(120.0, 8.0, &mut n, Some((320, 160, 64, 128))));
        let seen = run(&frames, &MotionSettings::default());
        let last = seen.last().unwrap();
        assert_eq!(last.boxes.len(), 1, "{last:?}");
        let b = &last.boxes[0];
        let px = [
            b.x1 * W as f32,
            b.y1 * H as f32,
            b.x2 * W as f32,
            b.y2 * H as f32,
        ];
        // The block's edges, widened by the dilation's one cell (2 px here), give or take a
        // cell.
        for (got, want) in px.iter().zip([318.0, 158.0, 386.0, 290.0]) {
            assert!((got - want).abs() <= 2.01, "{px:?}");
        }
    }

    #[test]
    fn something_that_stops_becomes_background() {
        let mut n = Noise(5);
        let block = Some((100, 100, 80, 80));
        let mut frames = vec![scene(120.0, 4.0, &mut n, None)];
        frames.extend((0..60).map(|_| scene(120.0, 4.0, &mut n, block)));
        let settings = MotionSettings {
            background_seconds: 2.0,
            ..MotionSettings::default()
        };
        let seen = run(&frames, &settings);
        assert!(seen[1].moving());
        // 12 s later (6 time constants) it has sunk in.
        assert!(!seen.last().unwrap().moving(), "{:?}", seen.last());
    }

    #[test]
    fn a_lighting_jump_reseeds_instead_of_alarming() {
        let mut n = Noise(11);
        let mut frames: Vec<_> = (0..3).map(|_| scene(60.0, 4.0, &mut n, None)).collect();
        // The lights come on: everything brighter, unevenly (the texture's dark squares
        // brighten more), which a uniform shift does not explain.
        let mut lit = scene(60.0, 4.0, &mut n, None);
        for v in lit.data.iter_mut() {
            *v = (f32::from(*v) * 2.5).min(255.0) as u8;
        }
        frames.push(lit.clone());
        frames.push(lit);
        let seen = run(&frames, &MotionSettings::default());
        assert!(seen[3].reseeded && !seen[3].moving(), "{:?}", seen[3]);
        assert!(seen[3].changed > LIGHTING_JUMP_FRACTION);
        assert!(!seen[4].moving() && !seen[4].reseeded, "{:?}", seen[4]);
    }

    #[test]
    fn a_uniform_brightness_drift_is_no_motion() {
        let mut n = Noise(13);
        let frames: Vec<_> = (0..30)
            .map(|i| scene(80.0 + i as f32 * 3.0, 4.0, &mut n, None))
            .collect();
        for (i, m) in run(&frames, &MotionSettings::default()).iter().enumerate() {
            assert!(!m.moving() && (i == 0 || !m.reseeded), "frame {i}: {m:?}");
        }
    }

    #[test]
    fn motion_inside_a_mask_is_ignored_and_outside_it_is_not() {
        let mut n = Noise(17);
        let mask = vec![
            Point { x: 0.4, y: 0.2 },
            Point { x: 0.7, y: 0.2 },
            Point { x: 0.7, y: 0.7 },
            Point { x: 0.4, y: 0.7 },
        ];
        let settings = MotionSettings {
            masks: vec![mask],
            ..MotionSettings::default()
        };
        let mut frames: Vec<_> = (0..3).map(|_| scene(120.0, 4.0, &mut n, None)).collect();
        // Inside the mask: nothing.
        frames.push(scene(120.0, 4.0, &mut n, Some((320, 160, 64, 128))));
        let seen = run(&frames, &settings);
        assert!(!seen.last().unwrap().moving(), "{:?}", seen.last());
        // The same block left of the mask: found.
        frames.pop();
        frames.push(scene(120.0, 4.0, &mut n, Some((64, 160, 64, 128))));
        let seen = run(&frames, &settings);
        assert_eq!(seen.last().unwrap().boxes.len(), 1);
    }

    #[test]
    fn blobs_smaller_than_the_minimum_area_are_not_motion() {
        let mut n = Noise(19);
        let mut frames: Vec<_> = (0..3).map(|_| scene(120.0, 4.0, &mut n, None)).collect();
        // 8×8 px: 0.02 % of the frame.
        frames.push(scene(120.0, 4.0, &mut n, Some((300, 300, 8, 8))));
        let seen = run(&frames, &MotionSettings::default());
        assert!(!seen.last().unwrap().moving());
        let fine = MotionSettings {
            min_area: 0.0001,
            ..MotionSettings::default()
        };
        let seen = run(&frames, &fine);
        assert!(seen.last().unwrap().moving());
    }

    #[test]
    fn two_separate_movers_are_two_boxes_largest_first() {
        let mut n = Noise(23);
        let mut frames: Vec<_> = (0..3).map(|_| scene(120.0, 4.0, &mut n, None)).collect();
        let mut two = scene(120.0, 4.0, &mut n, Some((40, 40, 40, 80)));
        let big = scene(120.0, 4.0, &mut n, Some((400, 200, 100, 200)));
        // Paste the big block into the frame with the small one.
        for y in 200..400 {
            for x in 400..500 {
                let i = ((y * W + x) * 3) as usize;
                two.data[i..i + 3].copy_from_slice(&big.data[i..i + 3]);
            }
        }
        frames.push(two);
        let seen = run(&frames, &MotionSettings::default());
        let boxes = &seen.last().unwrap().boxes;
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        assert!(boxes[0].x1 > 0.5 && boxes[1].x1 < 0.2, "{boxes:?}");
    }
}
