//! English-Russian pair data (`en<TAB>ru` per line), shared by importance and distillation.
//!
//! Malformed lines are skipped and counted rather than aborting a long run; the first few are logged with
//! their line numbers so a broken file is easy to fix. An empty result is an error.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use sekator_model::rng::SplitMix64;
use sekator_model::ModelError;

#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub en: String,
    pub ru: String,
}

#[derive(Debug, Clone)]
pub struct PairData {
    pub path: PathBuf,
    pub pairs: Vec<Pair>,
    /// Lines skipped as malformed (no tab, an empty side, or more than two fields).
    pub skipped: usize,
    /// The first five skipped lines: (1-based line number, reason).
    pub first_bad: Vec<(usize, String)>,
}

impl PairData {
    /// Reads all pairs of `path`; a first line `en<TAB>ru` is treated as a header.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::Other(format!(
                "{}: pair file not found (run `just fetch-data`, or pass a TSV of en<TAB>ru lines)",
                path.display()
            )));
        }
        let f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let mut data = PairData {
            path: path.to_path_buf(),
            pairs: Vec::new(),
            skipped: 0,
            first_bad: Vec::new(),
        };
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| ModelError::io(path, e))?;
            let line = line.trim_end_matches('\r');
            if i == 0 && line.eq_ignore_ascii_case("en\tru") {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let reason = match fields.as_slice() {
                [en, ru] if !en.trim().is_empty() && !ru.trim().is_empty() => {
                    data.pairs.push(Pair {
                        en: en.trim().to_string(),
                        ru: ru.trim().to_string(),
                    });
                    continue;
                }
                [_] => "no tab",
                [_, _] => "empty side",
                _ => "more than one tab",
            };
            data.skipped += 1;
            if data.first_bad.len() < 5 {
                data.first_bad.push((i + 1, reason.to_string()));
            }
        }
        if data.skipped > 0 {
            let shown: Vec<String> = data
                .first_bad
                .iter()
                .map(|(n, r)| format!("line {n}: {r}"))
                .collect();
            tracing::warn!(
                "{}: skipped {} malformed lines ({})",
                path.display(),
                data.skipped,
                shown.join("; ")
            );
        }
        if data.pairs.is_empty() {
            return Err(ModelError::Other(format!(
                "{}: no valid en<TAB>ru pairs ({} lines skipped)",
                path.display(),
                data.skipped
            )));
        }
        Ok(data)
    }

    /// A seeded sample of `n` pairs (all of them, shuffled, when `n >= len`).
    pub fn sample(&self, n: usize, seed: u64) -> Vec<Pair> {
        let mut idx: Vec<usize> = (0..self.pairs.len()).collect();
        SplitMix64::new(seed).shuffle(&mut idx);
        idx.into_iter()
            .take(n)
            .map(|i| self.pairs[i].clone())
            .collect()
    }
}
