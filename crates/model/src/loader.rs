//! Reading and writing Hugging Face model directories (`config.json`, `model.safetensors`, tokenizer files).
//!
//! Tensors are read through a memory map and converted to f32 one at a time, so a 500 MB LaBSE checkpoint
//! never needs two copies in memory. Keys may carry a `bert.` prefix (as in `BertForPreTraining` exports);
//! it is stripped. Writes go to a temporary sibling directory that is renamed into place, so an interrupted
//! run never leaves a half-written checkpoint under the final name.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use crate::config::BertConfig;
use crate::error::ModelError;
use crate::layers::NamedTensor;
use crate::weights::WeightSource;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

/// Prefixes under which BERT weights appear in the checkpoints we accept.
const PREFIXES: [&str; 2] = ["bert.", "model."];

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// Named tensors of one checkpoint (one or several memory-mapped safetensors files).
pub struct SafetensorsWeights {
    files: Vec<(PathBuf, Mmap)>,
    entries: HashMap<String, Entry>,
}

impl SafetensorsWeights {
    /// Opens `model.safetensors` (or the shards listed in `model.safetensors.index.json`) in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join(WEIGHTS_FILE);
        let index = dir.join(INDEX_FILE);
        let paths: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ModelError::Safetensors {
                    path: index.clone(),
                    msg: e.to_string(),
                })?;
            let mut shards: Vec<String> = v["weight_map"]
                .as_object()
                .ok_or_else(|| ModelError::Safetensors {
                    path: index.clone(),
                    msg: "no weight_map".into(),
                })?
                .values()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            let hint = if dir.join("pytorch_model.bin").exists() {
                " (only pytorch_model.bin is present: convert it once with transformers' `save_pretrained(..., safe_serialization=True)`)"
            } else {
                ""
            };
            return Err(ModelError::Other(format!(
                "{}: not found{hint}",
                single.display()
            )));
        };
        Self::open_files(&paths)
    }

    pub fn open_files(paths: &[PathBuf]) -> Result<Self, ModelError> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
            // SAFETY: the file is opened read-only and we never hand out references beyond `self`'s lifetime;
            // a checkpoint modified by another process while we read it is outside what we can guard against.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
            let (header, meta) =
                SafeTensors::read_metadata(&mmap).map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    msg: e.to_string(),
                })?;
            let base = 8 + header;
            for (name, info) in meta.tensors() {
                let (start, end) = info.data_offsets;
                if base + end > mmap.len() {
                    return Err(ModelError::Safetensors {
                        path: path.clone(),
                        msg: format!("tensor `{name}` extends past the end of the file"),
                    });
                }
                let key = PREFIXES
                    .iter()
                    .find_map(|p| name.strip_prefix(p))
                    .unwrap_or(&name)
                    .to_string();
                entries.insert(
                    key,
                    Entry {
                        file: i,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: base + start,
                        end: base + end,
                    },
                );
            }
            files.push((path.clone(), mmap));
        }
        Ok(Self { files, entries })
    }

    /// Names (prefix stripped) of every tensor, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.entries.keys().cloned().collect();
        n.sort();
        n
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The tensor `name` converted to f32, whatever its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.files[0].0.clone(),
                name: name.to_string(),
            })?;
        let (path, mmap) = &self.files[e.file];
        let bytes = &mmap[e.start..e.end];
        let data = match e.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::Dtype {
                    path: path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        Ok((e.shape.clone(), data))
    }
}

impl WeightSource for SafetensorsWeights {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        // Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
        let resolved = if !self.entries.contains_key(name) && name.contains("LayerNorm") {
            let alt = name.replace(".weight", ".gamma").replace(".bias", ".beta");
            if self.entries.contains_key(&alt) {
                alt
            } else {
                name.to_string()
            }
        } else {
            name.to_string()
        };
        let file = self
            .entries
            .get(&resolved)
            .map(|e| self.files[e.file].0.clone());
        let (found, data) = self.read_f32(&resolved)?;
        if found != shape {
            return Err(ModelError::Shape {
                path: file.unwrap_or_default(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            });
        }
        Ok(data)
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Checks that `dir` is a model directory and returns its parsed config.
pub fn read_config(dir: &Path) -> Result<BertConfig, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::NotAModelDir {
            path: dir.to_path_buf(),
            missing: !dir.exists(),
        });
    }
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Err(ModelError::Other(format!(
            "{}: not found (a Hugging Face model directory needs config.json)",
            path.display()
        )));
    }
    BertConfig::load(&path)
}

/// Files that belong to the weights or config and must not be copied into a rewritten checkpoint.
fn is_weight_or_config(name: &str) -> bool {
    name == CONFIG_FILE
        || name.starts_with("model.safetensors")
        || name.starts_with("pytorch_model")
        || name.starts_with("tf_model")
        || name.starts_with("flax_model")
        || name.starts_with("rust_model")
        || name == "onnx"
        || name == "openvino"
        || name.ends_with(".tmp")
        || crate::portable::is_model_specific(name)
}

/// Copies `src` into `dst` except weights/config at the top level and the paths in `skip` (the output and
/// its temporary directory, which may live inside `src`).
fn copy_dir_filtered(src: &Path, dst: &Path, top: bool, skip: &[&Path]) -> Result<(), ModelError> {
    let entries: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| ModelError::io(src, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ModelError::io(src, e))?;
    std::fs::create_dir_all(dst).map_err(|e| ModelError::io(dst, e))?;
    for entry in entries {
        if skip.iter().any(|s| entry.path() == *s) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        if top && is_weight_or_config(&name) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        if from.is_dir() {
            copy_dir_filtered(&from, &to, false, skip)?;
        } else {
            std::fs::copy(&from, &to).map_err(|e| ModelError::io(&from, e))?;
        }
    }
    Ok(())
}

/// Writes `tensors` as F32 safetensors into `path` (in HF `[out, in]` layout, names without prefix).
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: BTreeMap<String, String>,
) -> Result<(), ModelError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| ModelError::Other(format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut meta: HashMap<String, String> = metadata.into_iter().collect();
    meta.entry("format".into()).or_insert_with(|| "pt".into());
    safetensors::tensor::serialize_to_file(views, Some(meta.clone()), path).map_err(|e| {
        ModelError::Safetensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    })?;
    crate::header_order::sort_metadata_in_file(path, &meta)
}

/// Writes a complete model directory atomically: config, weights, and every tokenizer/sentence-transformers
/// file of `copy_from` (not its model card or remote code: they describe the source model). The config is
/// made portable first ([`crate::portable`]): plain `BertModel`, or remote code for uneven shapes. Refuses to replace an existing `out` unless `overwrite`.
pub fn write_model_dir(
    out: &Path,
    config: &BertConfig,
    tensors: &[NamedTensor],
    copy_from: Option<&Path>,
    overwrite: bool,
) -> Result<(), ModelError> {
    if out.exists() && !overwrite {
        return Err(ModelError::Other(format!(
            "{}: already exists (pass --overwrite to replace it)",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    if let Some(src) = copy_from {
        copy_dir_filtered(src, &tmp, true, &[out, &tmp])?;
    } else {
        std::fs::create_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    let has_pooler = tensors.iter().any(|t| t.name == "pooler.dense.weight");
    let config = crate::portable::portable_config(config, has_pooler);
    crate::portable::write_code(&tmp, &config)?;
    crate::portable::fix_pooling_dimension(&tmp, config.hidden_size)?;
    let cfg_path = tmp.join(CONFIG_FILE);
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| ModelError::Other(e.to_string()))?;
    std::fs::write(&cfg_path, text + "\n").map_err(|e| ModelError::io(&cfg_path, e))?;
    write_safetensors(&tmp.join(WEIGHTS_FILE), tensors, BTreeMap::new())?;
    crate::fsio::publish_dir(&tmp, out)
}

/// sha256 over `config.json` and the weights files: identifies a checkpoint's content, not its path.
pub fn checkpoint_hash(dir: &Path) -> Result<String, ModelError> {
    let mut h = Sha256::new();
    // a static-embedding model has no config.json: its description file stands in
    let described = [CONFIG_FILE, crate::static_model::STATIC_FILE]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(CONFIG_FILE));
    let mut files = vec![described];
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| {
                    n.to_string_lossy().starts_with("model")
                        && n.to_string_lossy().ends_with(".safetensors")
                })
                .unwrap_or(false)
        })
        .collect();
    shards.sort();
    files.extend(shards);
    for f in files {
        let mut file = File::open(&f).map_err(|e| ModelError::io(&f, e))?;
        std::io::copy(&mut file, &mut h).map_err(|e| ModelError::io(&f, e))?;
    }
    Ok(hex::encode(h.finalize()))
}

/// sha256 of one file (data files, importance files).
pub fn file_hash(path: &Path) -> Result<String, ModelError> {
    let mut h = Sha256::new();
    let mut file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    std::io::copy(&mut file, &mut h).map_err(|e| ModelError::io(path, e))?;
    Ok(hex::encode(h.finalize()))
}
