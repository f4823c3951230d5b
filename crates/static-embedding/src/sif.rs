//! Token weights from corpus frequencies: SIF (Arora et al. 2017), `a / (a + p(token))`, so frequent tokens
//! (articles, punctuation) count little in a sentence's mean and rare ones a lot.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Occurrences of every token id (no special tokens) in the lines of `files`, tokenised by `tok`.
pub fn count_tokens(
    tok: &sekator_model::TextTokenizer,
    files: &[PathBuf],
    vocab: usize,
) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; vocab];
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        // a pairs file holds two texts per line: count both sides
        let texts: Vec<&str> = text.lines().flat_map(|l| l.split('\t')).collect();
        for chunk in texts.chunks(4096) {
            let inputs: Vec<tokenizers::EncodeInput> = chunk.iter().map(|t| (*t).into()).collect();
            let enc = tok
                .inner()
                .encode_batch(inputs, false)
                .map_err(|e| anyhow::anyhow!("{}: tokenising: {e}", f.display()))?;
            for id in enc.iter().flat_map(|e| e.get_ids()) {
                if let Some(c) = counts.get_mut(*id as usize) {
                    *c += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// `a / (a + count / total)` per token; 1 for tokens the corpus never produced (or no corpus at all).
pub fn weights(counts: &[u64], a: f64) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| match total {
            0 => 1.0,
            t => a / (a + c as f64 / t as f64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_tokens_weigh_less() {
        let w = weights(&[0, 1, 99], 1e-2);
        assert_eq!(w[0], 1.0);
        assert!((w[1] - 0.01 / (0.01 + 0.01)).abs() < 1e-12);
        assert!(w[2] < 0.011);
        assert_eq!(weights(&[0, 0], 1e-3), vec![1.0, 1.0]);
    }
}
