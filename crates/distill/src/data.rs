//! Training pairs and the order they are seen in.
//!
//! Epoch `e` visits the pairs in a permutation drawn from `(seed, e)` alone and cuts it into consecutive
//! batches (the last one of an epoch may be smaller). A position in the data is therefore just
//! `(epoch, batch in epoch)`, and it follows from the global step: resuming needs no saved RNG state.

use std::path::Path;

use sekator_model::rng::SplitMix64;
use sekator_pipeline::{Pair, PairData};

use crate::error::Result;

/// Where the next batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataPosition {
    pub epoch: usize,
    /// Index of the next batch within the epoch.
    pub batch: usize,
}

pub struct TrainData {
    pub pairs: Vec<Pair>,
    pub batch_size: usize,
    pub seed: u64,
    /// Lines of the file skipped as malformed, and the first few (line number, reason).
    pub skipped: usize,
    pub first_bad: Vec<(usize, String)>,
    order: Option<(usize, Vec<usize>)>,
}

impl TrainData {
    /// Reads `path` through [`PairData::read`] (malformed lines skipped, counted and logged; empty is an error).
    pub fn read(path: &Path, batch_size: usize, seed: u64) -> Result<Self> {
        let d = PairData::read(path)?;
        Ok(Self::from_pairs(
            d.pairs,
            batch_size,
            seed,
            d.skipped,
            d.first_bad,
        ))
    }

    pub fn from_pairs(
        pairs: Vec<Pair>,
        batch_size: usize,
        seed: u64,
        skipped: usize,
        first_bad: Vec<(usize, String)>,
    ) -> Self {
        Self {
            pairs,
            batch_size: batch_size.max(1),
            seed,
            skipped,
            first_bad,
            order: None,
        }
    }

    /// Keeps only the `m` pairs that the first `m` positions of epoch 0's permutation visit (in file order):
    /// a run whose step budget covers less than one epoch then caches teacher embeddings for just those.
    pub fn keep_first_visited(&mut self, m: usize) {
        if m >= self.pairs.len() {
            return;
        }
        let mut keep = Self::epoch_order(self.pairs.len(), self.seed, 0)[..m].to_vec();
        keep.sort_unstable();
        self.pairs = keep.iter().map(|&i| self.pairs[i].clone()).collect();
        self.order = None;
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.pairs.len().div_ceil(self.batch_size)
    }

    /// The position of global batch number `step` (0-based).
    pub fn position_of(&self, step: usize) -> DataPosition {
        let per = self.batches_per_epoch();
        DataPosition {
            epoch: step / per,
            batch: step % per,
        }
    }

    /// The permutation of pair indices visited in `epoch`.
    pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let mut rng = SplitMix64::new(
            seed ^ (epoch as u64)
                .wrapping_mul(0xD1B5_4A32_D192_ED03)
                .wrapping_add(1),
        );
        rng.shuffle(&mut idx);
        idx
    }

    /// Pair indices of the batch at `pos`.
    pub fn batch(&mut self, pos: DataPosition) -> Vec<usize> {
        if self.order.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
            self.order = Some((
                pos.epoch,
                Self::epoch_order(self.pairs.len(), self.seed, pos.epoch),
            ));
        }
        let order = &self.order.as_ref().expect("set above").1;
        let start = (pos.batch * self.batch_size).min(order.len());
        let end = (start + self.batch_size).min(order.len());
        order[start..end].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, bs: usize) -> TrainData {
        let pairs = (0..n)
            .map(|i| Pair {
                en: format!("e{i}"),
                ru: format!("r{i}"),
            })
            .collect();
        TrainData::from_pairs(pairs, bs, 7, 0, vec![])
    }

    #[test]
    fn each_epoch_covers_every_pair_once() {
        let mut d = data(10, 4);
        assert_eq!(d.batches_per_epoch(), 3);
        for epoch in 0..2 {
            let mut seen: Vec<usize> = (0..3)
                .flat_map(|b| d.batch(DataPosition { epoch, batch: b }))
                .collect();
            assert_eq!(seen.len(), 10);
            seen.sort();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn order_depends_on_seed_and_epoch_only() {
        let a = TrainData::epoch_order(50, 1, 0);
        assert_eq!(a, TrainData::epoch_order(50, 1, 0));
        assert_ne!(a, TrainData::epoch_order(50, 1, 1));
        assert_ne!(a, TrainData::epoch_order(50, 2, 0));
        let mut d = data(10, 4);
        assert_eq!(d.position_of(4), DataPosition { epoch: 1, batch: 1 });
        let fresh = d.batch(DataPosition { epoch: 1, batch: 1 });
        let _ = d.batch(DataPosition { epoch: 0, batch: 0 });
        assert_eq!(d.batch(DataPosition { epoch: 1, batch: 1 }), fresh);
    }
}
