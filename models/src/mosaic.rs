//! Many small regions of many images on one square canvas, so a network with a fixed input
//! looks at all of them in one pass. face-api's SSD stores its 5118 anchors for a 512² input
//! only: instead of running it on each whole frame, the head of every person of a batch is laid
//! out on a grid of cells (one, four or nine per canvas) and the detector runs once per canvas.
//! [`Mosaic::to_source`] maps what it found back to the image the region came from.

use crate::image::Image;

/// A rectangle of an image, in its pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// Index of the image it is cut from.
    pub image: usize,
    /// Left.
    pub x: f32,
    /// Top.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

/// Where a region went: the integer rectangle cut from its image, and where (and how scaled)
/// it lies on which canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The region's index in the list given to [`Mosaic::grid`].
    pub region: usize,
    /// Its image.
    pub image: usize,
    /// The pixels cut: left, top, width, height.
    pub cut: [usize; 4],
    /// The canvas it is on.
    pub canvas: usize,
    /// Its cell on that canvas (row-major).
    pub cell: usize,
    /// Left and top of the scaled cut on the canvas (the cell's corner).
    pub at: [usize; 2],
    /// Width and height of the scaled cut on the canvas.
    pub size: [usize; 2],
    /// Canvas pixels per image pixel.
    pub scale: f32,
}

/// Canvases with regions laid out on a grid, and where each region went.
#[derive(Debug, Clone)]
pub struct Mosaic {
    /// Side of every canvas.
    pub side: usize,
    /// Cells per row (and per column) of a grid; 0 for shelves.
    pub per_row: usize,
    /// The canvases; pixels outside every cut are 0.
    pub canvases: Vec<Image>,
    /// One per region that has pixels inside its image, in region order.
    pub placements: Vec<Placement>,
}

/// Cells per row for `n` regions: one cell for a single region, a 2×2 grid up to four, else
/// 3×3 (canvases fill up in order).
pub fn cells_per_row(n: usize) -> usize {
    match n {
        0 | 1 => 1,
        2..=4 => 2,
        _ => 3,
    }
}

/// `region` clipped to a `width × height` image as whole pixels (outer rounding); `None` when
/// less than a pixel is left.
fn cut(region: &Region, width: usize, height: usize) -> Option<[usize; 4]> {
    let x0 = region.x.max(0.0).floor() as usize;
    let y0 = region.y.max(0.0).floor() as usize;
    let x1 = ((region.x + region.w).ceil().max(0.0) as usize).min(width);
    let y1 = ((region.y + region.h).ceil().max(0.0) as usize).min(height);
    (x1 > x0 && y1 > y0).then(|| [x0, y0, x1 - x0, y1 - y0])
}

impl Mosaic {
    /// Lays `regions` of `images` out on canvases of `side²`, `per_row²` cells each, in order:
    /// each cut is scaled (up or down, aspect kept) so its longer side fills its cell, and sits
    /// in the cell's top-left corner.
    pub fn grid(images: &[Image], regions: &[Region], side: usize, per_row: usize) -> Self {
        let per_row = per_row.max(1);
        let cell = side / per_row;
        let per_canvas = per_row * per_row;
        let mut mosaic = Self::empty(side, per_row);
        for (r, region) in regions.iter().enumerate() {
            let image = &images[region.image];
            let Some(cut) = cut(region, image.width, image.height) else {
                continue;
            };
            let n = mosaic.placements.len();
            let (canvas, slot) = (n / per_canvas, n % per_canvas);
            let scale = cell as f32 / cut[2].max(cut[3]) as f32;
            let size = [
                ((cut[2] as f32 * scale).round() as usize).clamp(1, cell),
                ((cut[3] as f32 * scale).round() as usize).clamp(1, cell),
            ];
            let at = [(slot % per_row) * cell, (slot / per_row) * cell];
            mosaic.paste(image, r, region.image, cut, canvas, slot, at, size, scale);
        }
        mosaic
    }

    /// Lays `regions` of `images` out on canvases of `side²` at their own scale, shrunk only
    /// when a region is larger than the canvas (never enlarged): tallest first, left to right
    /// on shelves, a new shelf below when a row is full and a new canvas when the shelves are,
    /// `gap` empty pixels between neighbours so one region's content does not bleed into the
    /// next one's detections. `cell` is the placement's order on its canvas.
    pub fn shelves(images: &[Image], regions: &[Region], side: usize, gap: usize) -> Self {
        let mut mosaic = Self::empty(side, 0);
        let mut sized: Vec<(usize, [usize; 4], f32, [usize; 2])> = regions
            .iter()
            .enumerate()
            .filter_map(|(r, region)| {
                let image = &images[region.image];
                let cut = cut(region, image.width, image.height)?;
                let scale = (side as f32 / cut[2].max(cut[3]) as f32).min(1.0);
                let size = [
                    ((cut[2] as f32 * scale).round() as usize).clamp(1, side),
                    ((cut[3] as f32 * scale).round() as usize).clamp(1, side),
                ];
                Some((r, cut, scale, size))
            })
            .collect();
        sized.sort_by(|a, b| b.3[1].cmp(&a.3[1]).then(a.0.cmp(&b.0)));
        // The open canvas: its shelf's top and height, and the next free x on that shelf.
        let (mut canvas, mut slot) = (0usize, 0usize);
        let (mut shelf_top, mut shelf_height, mut x) = (0usize, 0usize, 0usize);
        for (r, cut, scale, size) in sized {
            if x > 0 && x + size[0] > side {
                shelf_top += shelf_height + gap;
                (shelf_height, x) = (0, 0);
            }
            if shelf_top + size[1] > side && (shelf_top > 0 || x > 0) {
                canvas += 1;
                (slot, shelf_top, shelf_height, x) = (0, 0, 0, 0);
            }
            let image = regions[r].image;
            let at = [x, shelf_top];
            mosaic.paste(&images[image], r, image, cut, canvas, slot, at, size, scale);
            slot += 1;
            x += size[0] + gap;
            shelf_height = shelf_height.max(size[1]);
        }
        mosaic.placements.sort_by_key(|p| p.region);
        mosaic
    }

    fn empty(side: usize, per_row: usize) -> Self {
        Self {
            side,
            per_row,
            canvases: Vec::new(),
            placements: Vec::new(),
        }
    }

    /// Scales `cut` of `image` to `size` and copies it to `at` on canvas `canvas` (opened when
    /// it is the next one).
    #[allow(clippy::too_many_arguments)]
    fn paste(
        &mut self,
        image: &Image,
        region: usize,
        image_index: usize,
        cut: [usize; 4],
        canvas: usize,
        cell: usize,
        at: [usize; 2],
        size: [usize; 2],
        scale: f32,
    ) {
        let side = self.side;
        while self.canvases.len() <= canvas {
            self.canvases.push(Image {
                width: side,
                height: side,
                data: vec![0.0; side * side * 3],
            });
        }
        let pixels = image
            .crop(cut[0], cut[1], cut[2], cut[3])
            .resize_bilinear(size[0], size[1]);
        let target = &mut self.canvases[canvas];
        for row in 0..size[1] {
            let src = row * size[0] * 3;
            let dst = ((at[1] + row) * side + at[0]) * 3;
            target.data[dst..dst + size[0] * 3]
                .copy_from_slice(&pixels.data[src..src + size[0] * 3]);
        }
        self.placements.push(Placement {
            region,
            image: image_index,
            cut,
            canvas,
            cell,
            at,
            size,
            scale,
        });
    }

    /// A box `[x1, y1, x2, y2]` found on canvas `canvas`, in the pixels of the image its
    /// region came from: the placement whose scaled cut holds the box's centre, with the box
    /// clipped to that cut. `None` when the centre lies on empty canvas.
    pub fn to_source(&self, canvas: usize, b: [f32; 4]) -> Option<(&Placement, [f32; 4])> {
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let p = self.placements.iter().find(|p| {
            p.canvas == canvas
                && cx >= p.at[0] as f32
                && cx < (p.at[0] + p.size[0]) as f32
                && cy >= p.at[1] as f32
                && cy < (p.at[1] + p.size[1]) as f32
        })?;
        let (left, top) = (p.at[0] as f32, p.at[1] as f32);
        let (right, bottom) = (left + p.size[0] as f32, top + p.size[1] as f32);
        let map_x = |x: f32| p.cut[0] as f32 + (x.clamp(left, right) - left) / p.scale;
        let map_y = |y: f32| p.cut[1] as f32 + (y.clamp(top, bottom) - top) / p.scale;
        Some((p, [map_x(b[0]), map_y(b[1]), map_x(b[2]), map_y(b[3])]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w × h` image whose pixel (x, y) is `(x, y, tag)`.
    fn coords(w: usize, h: usize, tag: f32) -> Image {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend([x as f32, y as f32, tag]);
            }
        }
        Image {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn regions_fill_cells_in_order_across_canvases_and_map_back() {
        let images = [coords(640, 360, 1.0), coords(320, 240, 2.0)];
        let regions: Vec<Region> = (0..5)
            .map(|i| Region {
                image: i % 2,
                x: 10.0 * i as f32,
                y: 20.0,
                w: 64.0,
                h: 128.0,
            })
            .collect();
        let m = Mosaic::grid(&images, &regions, 512, 2);
        assert_eq!(m.canvases.len(), 2, "four cells per canvas, five regions");
        assert_eq!(m.placements.len(), 5);
        let p = m.placements[3];
        assert_eq!((p.canvas, p.cell, p.at), (0, 3, [256, 256]));
        // 64 × 128 scaled by 2 fills the 256 cell's height.
        assert_eq!((p.size, p.scale), ([128, 256], 2.0));
        let fifth = m.placements[4];
        assert_eq!((fifth.canvas, fifth.at), (1, [0, 0]));
        // The pixel at the cell's corner is the cut's corner of its own image.
        let canvas = &m.canvases[0];
        assert_eq!(canvas.at(256, 256, 0), 30.0);
        assert_eq!(canvas.at(256, 256, 1), 20.0);
        assert_eq!(canvas.at(256, 256, 2), 2.0, "region 3 is cut from image 1");
        // Outside every cut the canvas is empty.
        assert_eq!(canvas.at(400, 300, 2), 0.0);
        // A box drawn around the cut's middle maps back to the region's middle.
        let (q, b) = m
            .to_source(0, [256.0 + 32.0, 256.0 + 64.0, 256.0 + 96.0, 256.0 + 192.0])
            .unwrap();
        assert_eq!(q.region, 3);
        assert_eq!(b, [30.0 + 16.0, 20.0 + 32.0, 30.0 + 48.0, 20.0 + 96.0]);
        // A box centred on empty canvas belongs to nobody; one spilling over its cut is
        // clipped to it.
        assert!(m.to_source(0, [390.0, 280.0, 410.0, 320.0]).is_none());
        let (_, clipped) = m.to_source(1, [-20.0, -20.0, 40.0, 40.0]).unwrap();
        assert_eq!(clipped, [40.0, 20.0, 60.0, 40.0]);
    }

    #[test]
    fn regions_outside_their_image_are_clipped_or_left_out() {
        let images = [coords(100, 100, 1.0)];
        let regions = [
            Region {
                image: 0,
                x: -20.0,
                y: 90.0,
                w: 50.0,
                h: 50.0,
            },
            Region {
                image: 0,
                x: 150.0,
                y: 0.0,
                w: 10.0,
                h: 10.0,
            },
        ];
        let m = Mosaic::grid(&images, &regions, 512, cells_per_row(regions.len()));
        assert_eq!(m.placements.len(), 1);
        assert_eq!(m.placements[0].cut, [0, 90, 30, 10]);
        assert_eq!(m.placements[0].size, [256, 85]);
        assert_eq!(cells_per_row(1), 1);
        assert_eq!(cells_per_row(4), 2);
        assert_eq!(cells_per_row(9), 3);
        assert_eq!(cells_per_row(30), 3);
    }

    #[test]
    fn shelves_keep_small_regions_at_their_scale_shrink_large_ones_and_spill_to_new_canvases() {
        let images = [coords(1280, 720, 1.0), coords(640, 480, 2.0)];
        let region = |image, x, y, w, h| Region { image, x, y, w, h };
        let regions = [
            region(0, 100.0, 100.0, 200.0, 300.0),
            region(1, 0.0, 0.0, 200.0, 200.0),
            region(0, 600.0, 0.0, 700.0, 720.0),
            region(1, 300.0, 100.0, 150.0, 100.0),
        ];
        let m = Mosaic::shelves(&images, &regions, 416, 8);
        assert_eq!(m.placements.len(), 4);
        assert!(m.placements.iter().enumerate().all(|(i, p)| p.region == i));
        // 680 × 720 (clipped at the frame's right edge) is shrunk to the canvas and fills one.
        let large = m.placements[2];
        assert_eq!(large.cut, [600, 0, 680, 720]);
        assert_eq!(large.size, [393, 416]);
        assert!((large.scale - 416.0 / 720.0).abs() < 1e-6);
        // The others keep their pixels and share the next canvas on one shelf, tallest first,
        // 8 pixels apart.
        let (a, b, c) = (m.placements[0], m.placements[1], m.placements[3]);
        assert_ne!(a.canvas, large.canvas);
        assert!(a.canvas == b.canvas && b.canvas == c.canvas);
        assert_eq!((a.scale, a.size, a.at), (1.0, [200, 300], [0, 0]));
        assert_eq!((b.size, b.at), ([200, 200], [208, 0]));
        // 150 does not fit beside them (416 - 416): a second shelf under the tallest.
        assert_eq!((c.size, c.at), ([150, 100], [0, 308]));
        assert_eq!(m.canvases.len(), 2);
        let canvas = &m.canvases[b.canvas];
        assert_eq!(canvas.at(208, 0, 2), 2.0, "region 1 is cut from image 1");
        assert_eq!(canvas.at(204, 0, 2), 0.0, "the gap stays empty");
        // A detection inside region 3 maps back to image 1 unscaled.
        let (p, mapped) = m.to_source(c.canvas, [10.0, 318.0, 60.0, 378.0]).unwrap();
        assert_eq!(p.region, 3);
        assert_eq!(mapped, [310.0, 110.0, 360.0, 170.0]);
    }
}
