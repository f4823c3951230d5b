//! On-disk embedding cache, so re-running one task (or trying a new classifier) does not re-embed.
//!
//! Layout: `<root>/<checkpoint hash>/<namespace>/seg-*.bin`. The namespace names what the vectors are
//! (sentence variants at a truncation length and dimension, or word vectors), the record key is the first
//! 16 bytes of sha256 of the text (or of the word list). Every run appends a new segment holding only the
//! vectors it computed; a segment is written to a temporary file and renamed, so a crash never leaves a
//! half-written one that later runs would trust.

use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"SKEMB001";

pub type Key = [u8; 16];

/// Cache key of a text (or of a word list joined by [`crate::embedder::word_list_key`]).
pub fn key_of(text: &str) -> Key {
    let digest = Sha256::digest(text.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

/// One namespace of one checkpoint's cache.
pub struct CacheShelf {
    dir: PathBuf,
    dim: usize,
}

impl CacheShelf {
    /// `fingerprint` is the checkpoint's content hash; `namespace` must change whenever the meaning of the
    /// vectors does (truncation length, variant set).
    pub fn open(root: &Path, fingerprint: &str, namespace: &str, dim: usize) -> Result<Self> {
        let dir = root.join(fingerprint).join(namespace);
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating cache directory {}", dir.display()))?;
        Ok(Self { dir, dim })
    }

    fn segments(&self) -> Result<Vec<PathBuf>> {
        let mut segs: Vec<PathBuf> = fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "bin")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
            })
            .collect();
        segs.sort();
        Ok(segs)
    }

    /// Every cached record. A segment that cannot be read is reported and skipped (its vectors are simply
    /// recomputed).
    pub fn load(&self) -> Result<HashMap<Key, Vec<f32>>> {
        let mut out = HashMap::new();
        for seg in self.segments()? {
            if let Err(e) = read_segment(&seg, self.dim, &mut out) {
                tracing::warn!("ignoring unreadable cache segment {}: {e:#}", seg.display());
            }
        }
        Ok(out)
    }

    /// Writes `records` as a new segment (nothing when empty).
    pub fn append(&self, records: &[(Key, Vec<f32>)]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut w = Vec::with_capacity(12 + records.len() * (40 + 4 * self.dim));
        w.extend_from_slice(MAGIC);
        w.extend_from_slice(&(self.dim as u32).to_le_bytes());
        for (key, values) in records {
            if values.len() % self.dim != 0 {
                bail!(
                    "cache record of {} values is not a multiple of dim {}",
                    values.len(),
                    self.dim
                );
            }
            w.extend_from_slice(key);
            w.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for v in values {
                w.extend_from_slice(&v.to_le_bytes());
            }
        }
        let name = format!(
            "seg-{}-{}.bin",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id()
        );
        let path = self.dir.join(name);
        sekator_model::write_atomic(&path, &w)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn read_segment(path: &Path, dim: usize, out: &mut HashMap<Key, Vec<f32>>) -> Result<()> {
    let mut r = BufReader::new(fs::File::open(path)?);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        bail!("not a cache segment");
    }
    let mut u32buf = [0u8; 4];
    r.read_exact(&mut u32buf)?;
    if u32::from_le_bytes(u32buf) as usize != dim {
        bail!(
            "dimension {} differs from {dim}",
            u32::from_le_bytes(u32buf)
        );
    }
    let mut records = Vec::new();
    loop {
        let mut key = [0u8; 16];
        match r.read_exact(&mut key) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        r.read_exact(&mut u32buf)?;
        let n = u32::from_le_bytes(u32buf) as usize;
        let mut bytes = vec![0u8; n * 4];
        r.read_exact(&mut bytes)?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        records.push((key, values));
    }
    // Only a fully readable segment counts.
    out.extend(records);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_segments() {
        let root = tempfile::tempdir().unwrap();
        let shelf = CacheShelf::open(root.path(), "abc", "sent-len128", 2).unwrap();
        assert!(shelf.load().unwrap().is_empty());
        shelf.append(&[(key_of("a"), vec![1.0, 2.0])]).unwrap();
        shelf
            .append(&[(key_of("b"), vec![3.0, 4.0, 5.0, 6.0])])
            .unwrap();
        let all = shelf.load().unwrap();
        assert_eq!(all[&key_of("a")], vec![1.0, 2.0]);
        assert_eq!(all[&key_of("b")], vec![3.0, 4.0, 5.0, 6.0]);
        // a truncated segment is skipped, not trusted
        let seg = shelf.segments().unwrap().pop().unwrap();
        let bytes = fs::read(&seg).unwrap();
        fs::write(&seg, &bytes[..bytes.len() - 3]).unwrap();
        let all = shelf.load().unwrap();
        assert!(all.contains_key(&key_of("a")) && !all.contains_key(&key_of("b")));
        // another dimension is another namespace's business
        assert!(shelf.append(&[(key_of("c"), vec![1.0, 2.0, 3.0])]).is_err());
    }
}
