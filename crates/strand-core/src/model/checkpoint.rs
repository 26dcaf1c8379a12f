//! Tensors of a Hugging Face checkpoint: `model.safetensors`, or shards
//! listed by `model.safetensors.index.json`.
//!
//! Files are memory-mapped; a tensor is converted to `f32` only when the
//! model asks for it, so a checkpoint is never held twice in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// Where each tensor of a checkpoint lives.
pub struct Checkpoint {
    files: Vec<(PathBuf, Mmap)>,
    /// tensor name -> (index into `files`, shape), read once at open so
    /// the checks before loading do not re-parse headers.
    index: BTreeMap<String, (usize, Vec<usize>)>,
}

/// A tensor read out of a checkpoint, converted to `f32`.
pub struct Loaded {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Checkpoint {
    /// Opens the weights in model directory `dir`.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let paths = files(dir)?;
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for path in paths {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the map is read-only; a checkpoint modified while we run
            // is outside what any model loader can defend against.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| Error::Checkpoint {
                path: path.clone(),
                msg: format!("not a valid safetensors file: {e}"),
            })?;
            for (name, view) in st.tensors() {
                if index
                    .insert(name.clone(), (files.len(), view.shape().to_vec()))
                    .is_some()
                {
                    return Err(Error::Tensor {
                        path: path.clone(),
                        name,
                        msg: "stored in more than one shard".into(),
                    });
                }
            }
            files.push((path, mmap));
        }
        Ok(Checkpoint { files, index })
    }

    /// Names of every stored tensor.
    pub fn names(&self) -> BTreeSet<&str> {
        self.index.keys().map(String::as_str).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The file a tensor is stored in (for messages); the first file if absent.
    pub fn path_of(&self, name: &str) -> &Path {
        let i = self.index.get(name).map_or(0, |(i, _)| *i);
        &self.files[i].0
    }

    /// Shape of a stored tensor.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.index.get(name).map(|(_, shape)| shape.clone())
    }

    /// Reads a floating-point tensor as `f32` (f32, bf16 and f16 are accepted).
    pub fn load_f32(&self, name: &str) -> Result<Loaded> {
        let (path, view) = self.view(name)?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Tensor {
                    path: path.to_path_buf(),
                    name: name.into(),
                    msg: format!("dtype {other:?} is not a float type (f32, bf16, f16)"),
                })
            }
        };
        Ok(Loaded {
            shape: view.shape().to_vec(),
            data,
        })
    }

    /// Reads an integer tensor (the complement-map buffers).
    pub fn load_i64(&self, name: &str) -> Result<Vec<i64>> {
        let (path, view) = self.view(name)?;
        let bytes = view.data();
        match view.dtype() {
            Dtype::I64 => Ok(bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
                .collect()),
            Dtype::I32 => Ok(bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("chunks of 4")) as i64)
                .collect()),
            other => Err(Error::Tensor {
                path: path.to_path_buf(),
                name: name.into(),
                msg: format!("dtype {other:?} is not an integer type"),
            }),
        }
    }

    fn view(&self, name: &str) -> Result<(&Path, safetensors::tensor::TensorView<'_>)> {
        let i = self
            .index
            .get(name)
            .map(|(i, _)| *i)
            .ok_or_else(|| Error::Tensor {
                path: self.files[0].0.clone(),
                name: name.into(),
                msg: "missing".into(),
            })?;
        let (path, mmap) = &self.files[i];
        let st = SafeTensors::deserialize(mmap).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        let view = st.tensor(name).map_err(|e| Error::Tensor {
            path: path.clone(),
            name: name.into(),
            msg: e.to_string(),
        })?;
        Ok((path, view))
    }
}

/// The weight files of model directory `dir`, in the order they are read:
/// `model.safetensors`, or the distinct shards named by
/// `model.safetensors.index.json` (a `pytorch_model.bin` is refused with
/// the way to convert it).
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.is_file() {
        Ok(vec![single])
    } else if index.is_file() {
        shard_paths(&index)
    } else if dir.join("pytorch_model.bin").is_file()
        || dir.join("pytorch_model.bin.index.json").is_file()
    {
        Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            msg: format!(
                "holds pytorch_model.bin, which strand does not read (it is a pickle and can run code); \
                 convert it once in python with the class named in config.json `architectures`, e.g. \
                 `AutoModelForMaskedLM.from_pretrained(\"{d}\", trust_remote_code=True).save_pretrained(\"{d}\", safe_serialization=True)` \
                 (AutoModelForSequenceClassification for classifiers)",
                d = dir.display()
            ),
        })
    } else {
        Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            msg: "no model.safetensors or model.safetensors.index.json".into(),
        })
    }
}

/// The distinct shard files named by an index file, in order.
fn shard_paths(index: &Path) -> Result<Vec<PathBuf>> {
    let err = |msg: String| Error::Checkpoint {
        path: index.to_path_buf(),
        msg,
    };
    let bytes = std::fs::read(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| err("no weight_map object".into()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| err(format!("weight_map[{tensor}] is not a file name")))?;
        if file.contains('/') || file.contains('\\') {
            return Err(err(format!("shard name {file} must be a plain file name")));
        }
        if seen.insert(file.to_string()) {
            let p = dir.join(file);
            if !p.is_file() {
                return Err(err(format!("shard {file} (holding {tensor}) is missing")));
            }
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(err("weight_map is empty".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// Writes one tensor of `values` stored as `dtype` and reads it back.
    fn roundtrip(dtype: Dtype, values: &[f32]) -> Vec<f32> {
        let bytes: Vec<u8> = match dtype {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::BF16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            Dtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            _ => unreachable!("test dtypes"),
        };
        let dir = tempfile::tempdir().unwrap();
        let view = TensorView::new(dtype, vec![values.len()], &bytes).unwrap();
        safetensors::serialize_to_file([("t", view)], None, &dir.path().join("model.safetensors"))
            .unwrap();
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(ckpt.shape("t"), Some(vec![values.len()]));
        ckpt.load_f32("t").unwrap().data
    }

    #[test]
    fn half_precision_weights_are_widened_exactly() {
        let v = [1.0f32, -0.333_333_34, 1e-3, 65504.0, -2.5e-5];
        assert_eq!(roundtrip(Dtype::F32, &v), v.to_vec());
        let bf: Vec<f32> = v
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect();
        assert_eq!(roundtrip(Dtype::BF16, &v), bf);
        let f16: Vec<f32> = v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        assert_eq!(roundtrip(Dtype::F16, &v), f16);
    }

    #[test]
    fn sharded_checkpoints_are_read_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        for (file, name) in [("a.safetensors", "x"), ("b.safetensors", "y")] {
            let bytes = 2.0f32.to_le_bytes();
            let view = TensorView::new(Dtype::F32, vec![1], &bytes).unwrap();
            safetensors::serialize_to_file([(name, view)], None, &dir.path().join(file)).unwrap();
        }
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#,
        )
        .unwrap();
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(ckpt.names().into_iter().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(ckpt.load_f32("y").unwrap().data, [2.0]);
    }

    #[test]
    fn pytorch_bin_is_refused_with_a_recipe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
        let e = Checkpoint::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("pytorch_model.bin") && e.contains("safe_serialization=True"),
            "{e}"
        );
    }
}
