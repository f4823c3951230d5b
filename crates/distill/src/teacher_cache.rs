//! Teacher sentence embeddings of every en and ru text, computed once and kept on disk.
//!
//! The cache key is (teacher checkpoint hash, data file hash, pooling, max length): a second run, a resumed
//! run or a run with other training settings on the same teacher and data never runs the teacher again.
//! Vectors are stored un-normalised, in the order of the pairs in the file, as `.npy` float32 shards of
//! `shard_rows` rows (`en-00000.npy`, `ru-00000.npy`, ...) under `<cache_dir>/<key>/`, memory-mapped when
//! read. Shards are written atomically one by one, so an interrupted fill resumes at the first missing
//! shard; `cache.json`, written last, marks the cache complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sekator_model::{npy, write_atomic, EmbedOptions, Encoder, Pooling};
use sekator_pipeline::Pair;

use crate::error::{DistillError, Result};

/// Teacher forward passes (batches) run by this process, over all caches: tests assert it stays 0 on a hit.
pub static TEACHER_FORWARD_BATCHES: AtomicU64 = AtomicU64::new(0);

pub fn teacher_forward_batches() -> u64 {
    TEACHER_FORWARD_BATCHES.load(Ordering::Relaxed)
}

const FORMAT_VERSION: u32 = 1;
const META_FILE: &str = "cache.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub teacher_hash: String,
    pub data_hash: String,
    pub pooling: Pooling,
    pub max_length: usize,
}

impl CacheKey {
    /// Directory name: a short hash of the key (the full key is in `cache.json`).
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "v{FORMAT_VERSION}|{}|{}|{}|{}",
            self.teacher_hash, self.data_hash, self.pooling, self.max_length
        ));
        hex::encode(h.finalize())[..24].to_string()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    version: u32,
    key: CacheKey,
    rows: usize,
    dim: usize,
    shard_rows: usize,
    shards: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    En,
    Ru,
}

impl Side {
    fn prefix(self) -> &'static str {
        match self {
            Side::En => "en",
            Side::Ru => "ru",
        }
    }
}

struct Shard {
    map: Mmap,
    offset: usize,
}

/// A complete cache, memory-mapped.
pub struct TeacherEmbeddings {
    pub dir: PathBuf,
    pub rows: usize,
    pub dim: usize,
    /// True when nothing had to be computed.
    pub hit: bool,
    /// Teacher forward passes (batches) run to fill this cache in this call (0 on a hit).
    pub forward_batches: u64,
    shard_rows: usize,
    en: Vec<Shard>,
    ru: Vec<Shard>,
}

/// What is needed to fill a cache on a miss.
pub struct CacheSource<'a> {
    pub teacher_dir: &'a Path,
    pub pairs: &'a [Pair],
    pub batch_size: usize,
    pub shard_rows: usize,
    pub dim: usize,
    /// Whether missing shards may be computed here. A process training in a reduced precision may not:
    /// its teacher would run in that dtype, and the targets must be the f32 teacher's.
    pub may_build: bool,
}

fn shard_path(dir: &Path, side: Side, s: usize) -> PathBuf {
    dir.join(format!("{}-{s:05}.npy", side.prefix()))
}

/// Reads a `.npy` header: (rows, cols, byte offset of the data).
fn npy_header(path: &Path, bytes: &[u8]) -> Result<(usize, usize, usize)> {
    let bad = |msg: &str| DistillError::Cache {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" || bytes[6] != 1 {
        return Err(bad("not a version-1 .npy file"));
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = bytes
        .get(10..10 + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("bad header"))?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(bad("expected little-endian float32 in C order"));
    }
    let dims: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(|s| s.split(',').filter_map(|d| d.trim().parse().ok()).collect())
        .unwrap_or_default();
    let [rows, cols] = dims[..] else {
        return Err(bad("expected a 2-D array"));
    };
    if bytes.len() != 10 + hlen + rows * cols * 4 {
        return Err(bad("file length does not match its shape (truncated?)"));
    }
    Ok((rows, cols, 10 + hlen))
}

fn open_shard(path: &Path, rows: usize, dim: usize) -> Result<Shard> {
    let f = std::fs::File::open(path).map_err(|e| DistillError::io(path, e))?;
    // SAFETY: read-only map of a file we wrote atomically and never modify in place.
    let map = unsafe { Mmap::map(&f) }.map_err(|e| DistillError::io(path, e))?;
    let (r, c, offset) = npy_header(path, &map)?;
    if r != rows || c != dim {
        return Err(DistillError::Cache {
            path: path.to_path_buf(),
            msg: format!("shape [{r}, {c}], expected [{rows}, {dim}]"),
        });
    }
    Ok(Shard { map, offset })
}

fn shard_rows_of(total: usize, shard_rows: usize, s: usize) -> usize {
    shard_rows.min(total - s * shard_rows)
}

impl TeacherEmbeddings {
    /// Opens the cache for `key` under `cache_dir`, computing missing shards with the teacher from `src`.
    pub fn open_or_build<B: Backend>(
        cache_dir: &Path,
        key: &CacheKey,
        src: CacheSource<'_>,
        device: &B::Device,
    ) -> Result<Self> {
        let dir = cache_dir.join(key.id());
        let meta_path = dir.join(META_FILE);
        if let Some(c) = Self::open_complete(&dir, &meta_path, key, &src) {
            return Ok(c);
        }
        std::fs::create_dir_all(&dir).map_err(|e| DistillError::io(&dir, e))?;
        let n = src.pairs.len();
        let shard_rows = src.shard_rows.max(1);
        let shards = n.div_ceil(shard_rows);
        let missing: Vec<(usize, Side)> = (0..shards)
            .flat_map(|s| [(s, Side::En), (s, Side::Ru)])
            .filter(|&(s, side)| {
                open_shard(
                    &shard_path(&dir, side, s),
                    shard_rows_of(n, shard_rows, s),
                    src.dim,
                )
                .is_err()
            })
            .collect();
        tracing::info!(
            "teacher cache miss: {} — encoding {} of {} shard files ({} pairs) with the teacher",
            dir.display(),
            missing.len(),
            2 * shards,
            n
        );
        let mut forward = 0;
        if !missing.is_empty() && !src.may_build {
            return Err(DistillError::TeacherCacheMissing { dir });
        }
        if !missing.is_empty() {
            forward = fill_shards::<B>(&dir, key, &src, shard_rows, &missing, device)?;
        }
        let meta = Meta {
            version: FORMAT_VERSION,
            key: key.clone(),
            rows: n,
            dim: src.dim,
            shard_rows,
            shards,
        };
        let text = serde_json::to_string_pretty(&meta).map_err(|e| DistillError::Cache {
            path: meta_path.clone(),
            msg: e.to_string(),
        })?;
        write_atomic(&meta_path, text.as_bytes())?;
        let mut c = Self::open(&dir, &meta)?;
        c.forward_batches = forward;
        Ok(c)
    }

    /// The cache in `dir` if `cache.json` marks it complete for `key` and `src` and its shards open (a
    /// hit); an unusable one is logged and left to be recomputed.
    fn open_complete(
        dir: &Path,
        meta_path: &Path,
        key: &CacheKey,
        src: &CacheSource<'_>,
    ) -> Option<Self> {
        let meta = std::fs::read_to_string(meta_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Meta>(&t).ok())?;
        if meta.version != FORMAT_VERSION
            || meta.key != *key
            || meta.rows != src.pairs.len()
            || meta.dim != src.dim
        {
            return None;
        }
        match Self::open(dir, &meta) {
            Ok(mut c) => {
                c.hit = true;
                tracing::info!(
                    "teacher cache hit: {} ({} pairs, dim {})",
                    dir.display(),
                    c.rows,
                    c.dim
                );
                Some(c)
            }
            Err(e) => {
                tracing::warn!(
                    "teacher cache {} unusable ({e}); recomputing",
                    dir.display()
                );
                None
            }
        }
    }

    fn open(dir: &Path, meta: &Meta) -> Result<Self> {
        let mut en = Vec::new();
        let mut ru = Vec::new();
        for s in 0..meta.shards {
            let rows = shard_rows_of(meta.rows, meta.shard_rows, s);
            en.push(open_shard(&shard_path(dir, Side::En, s), rows, meta.dim)?);
            ru.push(open_shard(&shard_path(dir, Side::Ru, s), rows, meta.dim)?);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            rows: meta.rows,
            dim: meta.dim,
            hit: false,
            forward_batches: 0,
            shard_rows: meta.shard_rows,
            en,
            ru,
        })
    }

    /// Row `i` of `side`.
    pub fn row(&self, side: Side, i: usize) -> Vec<f32> {
        let shard = &(if side == Side::En { &self.en } else { &self.ru })[i / self.shard_rows];
        let start = shard.offset + (i % self.shard_rows) * self.dim * 4;
        shard.map[start..start + self.dim * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Rows `idx` of `side`, concatenated (`[idx.len(), dim]` row-major).
    pub fn gather(&self, side: Side, idx: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            out.extend(self.row(side, i));
        }
        out
    }
}

/// Encodes the `missing` shards (`(shard, side)`) of `src.pairs` with the teacher into `dir`, one atomic
/// file each (so an interrupted fill resumes); returns the teacher forward passes (batches) run.
fn fill_shards<B: Backend>(
    dir: &Path,
    key: &CacheKey,
    src: &CacheSource<'_>,
    shard_rows: usize,
    missing: &[(usize, Side)],
    device: &B::Device,
) -> Result<u64> {
    let n = src.pairs.len();
    let teacher = Encoder::<B>::load(src.teacher_dir, device)?;
    if teacher.hidden_size() != src.dim {
        return Err(DistillError::Input(format!(
            "{}: teacher hidden size {} differs from its config's {}",
            src.teacher_dir.display(),
            teacher.hidden_size(),
            src.dim
        )));
    }
    let opts = EmbedOptions {
        pooling: key.pooling,
        normalize: false,
        batch_size: src.batch_size.max(1),
        max_length: key.max_length,
    };
    let todo_texts = missing
        .iter()
        .map(|&(s, _)| shard_rows_of(n, shard_rows, s))
        .sum::<usize>();
    let bar = progress_bar(todo_texts as u64, "teacher");
    let mut done_before = 0u64;
    let mut batches = 0u64;
    for &(s, side) in missing {
        let range = s * shard_rows..s * shard_rows + shard_rows_of(n, shard_rows, s);
        let texts: Vec<String> = src.pairs[range]
            .iter()
            .map(|p| {
                if side == Side::En {
                    p.en.clone()
                } else {
                    p.ru.clone()
                }
            })
            .collect();
        let rows = teacher.embed(&texts, &opts, |done| {
            TEACHER_FORWARD_BATCHES.fetch_add(1, Ordering::Relaxed);
            batches += 1;
            bar.set_position(done_before + done as u64);
        })?;
        done_before += texts.len() as u64;
        let mut bytes = Vec::with_capacity(rows.len() * src.dim * 4 + 128);
        npy::write_f32(&mut bytes, &rows, src.dim).map_err(|e| DistillError::io(dir, e))?;
        write_atomic(&shard_path(dir, side, s), &bytes)?;
    }
    bar.finish_and_clear();
    Ok(batches)
}

pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} texts  {{per_sec}}  eta {{eta}}"
        ))
        .expect("valid template"),
    );
    bar
}
