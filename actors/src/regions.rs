//! Where the person detector looks in a frame that only partly changed: rectangles around what
//! moved and around the live tracks that moved with it, cut from the frame at its own pixels
//! (the pool lays them out on shared 416² canvases and shrinks only those larger than one,
//! [`vigil_models::mosaic::Mosaic::shelves`]). When the regions would fill most of a canvas the
//! whole frame is one pass and no worse, and [`plan`] says so.

use vigil_schemas::events::NormBox;

/// Side of the person detector's input (NanoDet's 416).
pub const INPUT: f32 = vigil_models::persons::INPUT as f32;
/// A region is at least this many frame pixels on a side, so a small moving part (a hand, a
/// head) comes with enough of the body around it for the detector.
pub const MIN_SIDE: f32 = 160.0;
/// Each box grows by this share of its longer side on every side: motion often covers only
/// the moving limbs of a person, and a track's box its last position.
pub const MARGIN: f32 = 0.25;
/// Regions that together cover more than this share of one canvas (after shrinking) are
/// replaced by the whole frame: one pass either way, and the whole frame sees everything.
pub const WHOLE_FRAME_ABOVE: f32 = 0.75;

/// The regions, in frame pixels `(x, y, w, h)`, in which to look for persons around `boxes`
/// (normalised) in a `width × height` frame: each box widened by [`MARGIN`] into a square of at
/// least [`MIN_SIDE`] (as far as the frame allows), moved inside the frame rather than cut, and
/// regions that overlap merged into their bounding rectangle until none do. `None` when they
/// would cost about as much as the whole frame ([`WHOLE_FRAME_ABOVE`]).
pub fn plan(boxes: &[NormBox], width: u32, height: u32) -> Option<Vec<[f32; 4]>> {
    let (fw, fh) = (width as f32, height as f32);
    let mut regions: Vec<[f32; 4]> = boxes
        .iter()
        .filter(|b| b.x2 > b.x1 && b.y2 > b.y1)
        .map(|b| {
            let (x1, y1, x2, y2) = (b.x1 * fw, b.y1 * fh, b.x2 * fw, b.y2 * fh);
            let side = ((x2 - x1).max(y2 - y1) * (1.0 + 2.0 * MARGIN)).max(MIN_SIDE);
            let (w, h) = (side.min(fw), side.min(fh));
            let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
            [
                (cx - w / 2.0).clamp(0.0, fw - w),
                (cy - h / 2.0).clamp(0.0, fh - h),
                w,
                h,
            ]
        })
        .collect();
    // Merge overlapping pairs into their bounding rectangle until no two overlap.
    'merging: loop {
        for i in 0..regions.len() {
            for j in i + 1..regions.len() {
                let (a, b) = (regions[i], regions[j]);
                let overlap_w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
                let overlap_h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
                if overlap_w > 0.0 && overlap_h > 0.0 {
                    let (x1, y1) = (a[0].min(b[0]), a[1].min(b[1]));
                    let (x2, y2) = (
                        (a[0] + a[2]).max(b[0] + b[2]),
                        (a[1] + a[3]).max(b[1] + b[3]),
                    );
                    regions[i] = [x1, y1, x2 - x1, y2 - y1];
                    regions.swap_remove(j);
                    continue 'merging;
                }
            }
        }
        break;
    }
    (canvas_share(&regions) <= WHOLE_FRAME_ABOVE).then_some(regions)
}

/// How much of one detector canvas `regions` take once each is shrunk to fit it.
pub fn canvas_share(regions: &[[f32; 4]]) -> f32 {
    regions
        .iter()
        .map(|r| {
            let scale = (INPUT / r[2].max(r[3])).min(1.0);
            r[2] * r[3] * scale * scale / (INPUT * INPUT)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(x1: f32, y1: f32, x2: f32, y2: f32, w: f32, h: f32) -> NormBox {
        NormBox {
            x1: x1 / w,
            y1: y1 / h,
            x2: x2 / w,
            y2: y2 / h,
        }
    }

    #[test]
    fn a_box_becomes_a_square_with_a_margin_and_a_small_one_keeps_the_minimum_side() {
        let (w, h) = (1280.0, 720.0);
        let regions = plan(
            &[
                norm(100.0, 100.0, 180.0, 260.0, w, h),
                norm(1000.0, 400.0, 1010.0, 410.0, w, h),
            ],
            1280,
            720,
        )
        .unwrap();
        assert_eq!(regions.len(), 2);
        // 160 tall × 1.5 = 240, centred on (140, 180).
        let r = regions[0];
        assert!(
            (r[0] - 20.0).abs() < 1e-3 && (r[1] - 60.0).abs() < 1e-3,
            "{r:?}"
        );
        assert!((r[2] - 240.0).abs() < 1e-3 && (r[3] - 240.0).abs() < 1e-3);
        // A 10-pixel blob gets the minimum side, at its own scale (no enlarging: the
        // region is cut at frame pixels and shrunk only when larger than the canvas).
        assert_eq!(&regions[1][2..], &[MIN_SIDE, MIN_SIDE]);
        assert!(canvas_share(&regions) < 0.5);
    }

    #[test]
    fn regions_at_the_edge_move_inside_the_frame_instead_of_being_cut() {
        let regions = plan(&[norm(0.0, 600.0, 40.0, 720.0, 1280.0, 720.0)], 1280, 720).unwrap();
        let r = regions[0];
        assert_eq!(r[0], 0.0);
        assert!((r[1] + r[3] - 720.0).abs() < 1e-3, "{r:?}");
        // 120 tall × 1.5, centred on x = 20: moved right to start at the frame's edge.
        assert!(
            (r[2] - 180.0).abs() < 1e-3 && (r[3] - 180.0).abs() < 1e-3,
            "{r:?}"
        );
    }

    #[test]
    fn overlapping_regions_merge_until_none_overlap_and_apart_ones_stay_apart() {
        let (w, h) = (1920.0, 1080.0);
        // Three blobs in a chain (the first overlaps the second, the second the third once
        // merged) and one far away.
        let regions = plan(
            &[
                norm(100.0, 100.0, 140.0, 140.0, w, h),
                norm(200.0, 100.0, 240.0, 140.0, w, h),
                norm(330.0, 100.0, 370.0, 140.0, w, h),
                norm(1500.0, 800.0, 1540.0, 840.0, w, h),
            ],
            1920,
            1080,
        )
        .unwrap();
        assert_eq!(regions.len(), 2, "{regions:?}");
        let chain = regions.iter().find(|r| r[0] < 500.0).unwrap();
        // From the first square's left (120 - 80) to the third's right (350 + 80).
        assert!((chain[0] - 40.0).abs() < 1e-3 && (chain[0] + chain[2] - 430.0).abs() < 1e-3);
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                assert!(
                    a[0] + a[2] <= b[0]
                        || b[0] + b[2] <= a[0]
                        || a[1] + a[3] <= b[1]
                        || b[1] + b[3] <= a[1],
                    "{a:?} overlaps {b:?}"
                );
            }
        }
    }

    #[test]
    fn regions_as_costly_as_the_whole_frame_give_way_to_it() {
        // One person-sized region (300² at its own pixels) is half a canvas; two apart are
        // more than the whole frame's one pass.
        let one = norm(100.0, 100.0, 250.0, 300.0, 1280.0, 720.0);
        let other = norm(900.0, 300.0, 1050.0, 500.0, 1280.0, 720.0);
        assert_eq!(plan(&[one], 1280, 720).map(|r| r.len()), Some(1));
        assert_eq!(plan(&[one, other], 1280, 720), None);
        // A large region is shrunk to the canvas: it costs one canvas, like the whole frame.
        assert_eq!(
            plan(&[norm(0.0, 0.0, 900.0, 700.0, 1920.0, 1080.0)], 1920, 1080),
            None
        );
        // Nothing moved: nothing to look at.
        assert_eq!(plan(&[], 1280, 720), Some(vec![]));
    }
}
