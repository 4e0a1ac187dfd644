//! A reader for TensorFlow.js weight files: a JSON manifest plus binary shards.
//!
//! The manifest is a list of groups `{paths, weights: [{name, shape, dtype, quantization?}]}`
//! (bare, or under `weightsManifest` in a `model.json`). A group's shards, concatenated, hold its
//! tensors back to back in manifest order. A quantized tensor stores `uint8`/`uint16` codes that
//! mean `min + scale * q`, or `float16` halves; everything comes out as `f32`.
//!
//! Every file is checked against the SHA-256 list committed in `models/assets.sha256` before it
//! is parsed, and every size against the manifest, so a truncated download or a swapped file
//! fails with an error naming the file instead of loading wrong weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::ModelError;

/// The committed checksums of every asset the models load (`sha256sum` format, paths relative to
/// the assets folder).
pub const ASSET_CHECKSUMS: &str = include_str!("../assets.sha256");

/// One tensor of a weights file, as `f32`, with its TF.js shape (HWIO for conv kernels).
#[derive(Debug, Clone, PartialEq)]
pub struct TfTensor {
    /// The manifest's shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Every tensor of one model's weights, by manifest name.
#[derive(Debug, Clone)]
pub struct Weights {
    /// The manifest file, for error messages.
    pub source: PathBuf,
    tensors: HashMap<String, TfTensor>,
}

impl Weights {
    /// The tensor `name`, checked to have `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<TfTensor, ModelError> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingWeight {
                file: self.source.clone(),
                name: name.to_string(),
            })?;
        if tensor.shape != shape {
            return Err(ModelError::WeightShape {
                file: self.source.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: tensor.shape,
            });
        }
        Ok(tensor)
    }

    /// The tensor `name`, whatever its shape (graph models declare shapes in the graph).
    pub fn take_any(&mut self, name: &str) -> Option<TfTensor> {
        self.tensors.remove(name)
    }

    /// Names not taken yet (a model that leaves weights behind was built wrong).
    pub fn remaining(&self) -> Vec<String> {
        let mut names: Vec<_> = self.tensors.keys().cloned().collect();
        names.sort();
        names
    }

    /// How many tensors are left.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether every tensor was taken.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ManifestFile {
    Model {
        #[serde(rename = "weightsManifest")]
        weights_manifest: Vec<Group>,
    },
    Bare(Vec<Group>),
}

#[derive(Debug, Deserialize)]
struct Group {
    paths: Vec<String>,
    weights: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Debug, Deserialize)]
struct Quantization {
    dtype: String,
    scale: Option<f32>,
    min: Option<f32>,
}

/// The expected SHA-256 of `relative` (a path under the assets folder), if listed.
pub fn expected_checksum(relative: &str) -> Option<&'static str> {
    ASSET_CHECKSUMS.lines().find_map(|line| {
        let (sum, path) = line.split_once("  ")?;
        (path.trim() == relative).then_some(sum.trim())
    })
}

/// Reads `assets/relative` and checks it against the committed checksum list.
pub fn read_verified(assets: &Path, relative: &str) -> Result<Vec<u8>, ModelError> {
    let path = assets.join(relative);
    let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
        file: path.clone(),
        reason: format!("{source} (run scripts/fetch-assets --weights)"),
    })?;
    let expected = expected_checksum(relative).ok_or_else(|| ModelError::Checksum {
        file: path.clone(),
        expected: "an entry in models/assets.sha256".into(),
        found: "none".into(),
    })?;
    let found = hex::encode(Sha256::digest(&bytes));
    if found != expected {
        return Err(ModelError::Checksum {
            file: path,
            expected: expected.to_string(),
            found,
        });
    }
    Ok(bytes)
}

/// Loads the weights of the manifest `assets/relative`, verifying every file.
pub fn load(assets: &Path, relative: &str) -> Result<Weights, ModelError> {
    let manifest_path = assets.join(relative);
    let text = read_verified(assets, relative)?;
    let folder = Path::new(relative).parent().unwrap_or(Path::new(""));
    let mut shards = HashMap::new();
    let manifest: ManifestFile = serde_json::from_slice(&text).map_err(|e| ModelError::Format {
        file: manifest_path.clone(),
        reason: e.to_string(),
    })?;
    let groups = match manifest {
        ManifestFile::Model { weights_manifest } => weights_manifest,
        ManifestFile::Bare(groups) => groups,
    };
    for group in &groups {
        for shard in &group.paths {
            let rel = folder.join(shard).to_string_lossy().into_owned();
            if !shards.contains_key(&rel) {
                shards.insert(rel.clone(), read_verified(assets, &rel)?);
            }
        }
    }
    parse_groups(&manifest_path, folder, &groups, &shards)
}

/// Decodes groups whose shards are already read (`shards` by path relative to the assets
/// folder). Public for tests that feed damaged shards.
fn parse_groups(
    manifest_path: &Path,
    folder: &Path,
    groups: &[Group],
    shards: &HashMap<String, Vec<u8>>,
) -> Result<Weights, ModelError> {
    let mut tensors = HashMap::new();
    for group in groups {
        let mut buffer = Vec::new();
        let mut last_shard = PathBuf::new();
        for shard in &group.paths {
            let rel = folder.join(shard).to_string_lossy().into_owned();
            last_shard = manifest_path.with_file_name(shard);
            buffer.extend_from_slice(&shards[&rel]);
        }
        let needed: usize = group.weights.iter().map(Entry::byte_len).sum();
        if buffer.len() != needed {
            return Err(ModelError::Truncated {
                file: last_shard,
                expected: needed,
                found: buffer.len(),
            });
        }
        let mut offset = 0;
        for entry in &group.weights {
            let len = entry.byte_len();
            let bytes = &buffer[offset..offset + len];
            offset += len;
            let data = entry.decode(bytes).map_err(|reason| ModelError::Format {
                file: manifest_path.to_path_buf(),
                reason: format!("{}: {reason}", entry.name),
            })?;
            tensors.insert(
                entry.name.clone(),
                TfTensor {
                    shape: entry.shape.clone(),
                    data,
                },
            );
        }
    }
    Ok(Weights {
        source: manifest_path.to_path_buf(),
        tensors,
    })
}

impl Entry {
    fn count(&self) -> usize {
        self.shape.iter().product()
    }

    fn stored_dtype(&self) -> &str {
        self.quantization
            .as_ref()
            .map_or(self.dtype.as_str(), |q| q.dtype.as_str())
    }

    fn byte_len(&self) -> usize {
        let width = match self.stored_dtype() {
            "uint8" | "bool" => 1,
            "uint16" | "float16" => 2,
            _ => 4,
        };
        self.count() * width
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<f32>, String> {
        let affine = |q: f32| -> f32 {
            let quant = self.quantization.as_ref();
            let scale = quant.and_then(|q| q.scale).unwrap_or(1.0);
            let min = quant.and_then(|q| q.min).unwrap_or(0.0);
            min + scale * q
        };
        let out = match self.stored_dtype() {
            "uint8" => bytes.iter().map(|&q| affine(f32::from(q))).collect(),
            "uint16" => bytes
                .chunks_exact(2)
                .map(|c| affine(f32::from(u16::from_le_bytes([c[0], c[1]]))))
                .collect(),
            "float16" => bytes
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            "float32" => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "int32" => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            other => return Err(format!("unsupported dtype {other}")),
        };
        Ok(out)
    }
}

/// IEEE 754 half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(json: &str) -> Vec<Group> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn dequantizes_in_manifest_order() {
        let groups = group(
            r#"[{"paths": ["w.bin"], "weights": [
                {"name": "a", "shape": [2], "dtype": "float32",
                 "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
                {"name": "b", "shape": [1], "dtype": "float32"},
                {"name": "c", "shape": [2], "dtype": "float32",
                 "quantization": {"dtype": "float16"}}
            ]}]"#,
        );
        let mut bytes = vec![0u8, 4];
        bytes.extend_from_slice(&2.5f32.to_le_bytes());
        bytes.extend_from_slice(&0x3c00u16.to_le_bytes()); // 1.0
        bytes.extend_from_slice(&0xc500u16.to_le_bytes()); // -5.0
        let shards = HashMap::from([("m/w.bin".to_string(), bytes)]);
        let mut w =
            parse_groups(Path::new("/x/m/w.json"), Path::new("m"), &groups, &shards).unwrap();
        assert_eq!(w.take("a", &[2]).unwrap().data, vec![-1.0, 1.0]);
        assert_eq!(w.take("b", &[1]).unwrap().data, vec![2.5]);
        assert_eq!(w.take("c", &[2]).unwrap().data, vec![1.0, -5.0]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_short_shard_is_refused_naming_the_file() {
        let groups = group(
            r#"[{"paths": ["w.bin"], "weights": [{"name": "a", "shape": [4], "dtype": "float32"}]}]"#,
        );
        let shards = HashMap::from([("m/w.bin".to_string(), vec![0u8; 10])]);
        let err =
            parse_groups(Path::new("/x/m/w.json"), Path::new("m"), &groups, &shards).unwrap_err();
        assert!(
            matches!(
                &err,
                ModelError::Truncated {
                    expected: 16,
                    found: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("/x/m/w.bin"), "{err}");
    }

    #[test]
    fn wrong_shapes_and_missing_names_are_errors() {
        let groups = group(
            r#"[{"paths": ["w.bin"], "weights": [{"name": "a", "shape": [1], "dtype": "float32"}]}]"#,
        );
        let shards = HashMap::from([("w.bin".to_string(), vec![0u8; 4])]);
        let mut w = parse_groups(Path::new("w.json"), Path::new(""), &groups, &shards).unwrap();
        assert!(matches!(
            w.take("a", &[2]),
            Err(ModelError::WeightShape { .. })
        ));
        assert!(matches!(
            w.take("zzz", &[1]),
            Err(ModelError::MissingWeight { .. })
        ));
    }

    #[test]
    fn half_floats_decode() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn a_changed_file_fails_its_checksum_naming_it() {
        let dir = std::env::temp_dir().join(format!("vigil-tfjs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("images/astronaut.png"), b"not the astronaut").unwrap();
        let err = read_verified(&dir, "images/astronaut.png").unwrap_err();
        assert!(matches!(err, ModelError::Checksum { .. }), "{err:?}");
        assert!(err.to_string().contains("astronaut.png"), "{err}");
        let err = read_verified(&dir, "images/missing.png").unwrap_err();
        assert!(err.to_string().contains("missing.png"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
