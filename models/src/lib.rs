//! Vigil's vision models: person detection, face detection and face embeddings.
//!
//! The Burn modules, weight import and wgpu/CPU backend choice arrive with the models issue.
//! Until then this crate holds the types that cross its boundary, so the write side and the
//! API can be written against them: what a detector reports ([`Detection`]) and which compute
//! backend a node asks for ([`BackendPreference`]).
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

/// An axis-aligned box in normalised image coordinates (0–1, origin top-left).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

impl BoundingBox {
    /// Area of the box.
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union with `other`, 0 when they do not overlap.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let left = self.x.max(other.x);
        let top = self.y.max(other.y);
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        let intersection = (right - left).max(0.0) * (bottom - top).max(0.0);
        let union = self.area() + other.area() - intersection;
        if union <= 0.0 {
            0.0
        } else {
            intersection / union
        }
    }
}

/// What a detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectionClass {
    /// A person (COCO class 0).
    Person,
    /// A face.
    Face,
}

/// One detection in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// What it is.
    pub class: DetectionClass,
    /// Where it is.
    pub bbox: BoundingBox,
    /// Confidence, 0–1.
    pub score: f32,
}

/// Which compute backend a node asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendPreference {
    /// The best wgpu adapter, or the CPU when there is none.
    #[default]
    Auto,
    /// wgpu only; failing when no adapter exists.
    Wgpu,
    /// The CPU (ndarray) only.
    Cpu,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BoundingBox {
            x: 0.0,
            y: 0.0,
            width: 0.5,
            height: 0.5,
        };
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        let far = BoundingBox {
            x: 0.6,
            y: 0.6,
            width: 0.2,
            height: 0.2,
        };
        assert_eq!(a.iou(&far), 0.0);
        let shifted = BoundingBox {
            x: 0.25,
            y: 0.0,
            width: 0.5,
            height: 0.5,
        };
        // intersection 0.125, union 0.375
        assert!((a.iou(&shifted) - 1.0 / 3.0).abs() < 1e-6);
    }
}
