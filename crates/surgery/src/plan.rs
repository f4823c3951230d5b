//! What to cut: a [`Plan`] of attention heads and FFN neurons per layer, in ORIGINAL indices.
//!
//! The file form follows the Hugging Face `pruned_heads` convention — layer index (a string) -> original
//! indices of the units removed — so a plan reads the same whether the model it applies to is the original
//! checkpoint or one already pruned by an earlier run:
//!
//! ```json
//! {"heads": {"0": [0, 3]}, "ffn": {"2": [17, 255]}, "hidden": [5, 100], "keep_layers": [0, 2, 4]}
//! ```
//!
//! `ffn`, `hidden` (residual-stream dimensions, shared by every layer: width pruning) and `keep_layers` are
//! optional. Units already pruned in the model may be named again; like
//! transformers' `prune_heads`, they are skipped. Plans built from importance scores ([`Scores`]) are turned
//! into this form before anything is cut, and saved beside the output as `plan.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use sekator_model::rng::SplitMix64;
use sekator_model::BertConfig;

use crate::error::SurgeryError;

/// Units to remove, HF convention: layer (string) -> original indices, plus optional layer dropping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(default)]
    pub heads: BTreeMap<String, Vec<usize>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ffn: BTreeMap<String, Vec<usize>>,
    /// Residual-stream dimensions to remove (original indices), from the embeddings, every layer and the pooler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<usize>,
    /// Layers to keep (current layer numbering, ascending), applied after heads and neurons are cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_layers: Option<Vec<usize>>,
}

/// Lower bounds every plan must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub min_heads: usize,
    pub min_ffn: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_heads: 1,
            min_ffn: 1,
        }
    }
}

/// A plan resolved against one config: per layer, the NEW units to remove (original indices, sorted,
/// never already pruned).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub heads: Vec<Vec<usize>>,
    pub ffn: Vec<Vec<usize>>,
    /// Residual-stream dimensions (original indices, sorted, never already pruned).
    pub hidden: Vec<usize>,
    pub keep_layers: Option<Vec<usize>>,
}

impl Resolved {
    pub fn is_empty(&self) -> bool {
        self.heads.iter().all(Vec::is_empty)
            && self.ffn.iter().all(Vec::is_empty)
            && self.hidden.is_empty()
            && self.keep_layers.is_none()
    }

    pub fn heads_removed(&self) -> usize {
        self.heads.iter().map(Vec::len).sum()
    }

    pub fn ffn_removed(&self) -> usize {
        self.ffn.iter().map(Vec::len).sum()
    }

    /// Back to file form (only layers with something to remove).
    pub fn to_plan(&self) -> Plan {
        let pick = |v: &[Vec<usize>]| {
            v.iter()
                .enumerate()
                .filter(|(_, u)| !u.is_empty())
                .map(|(l, u)| (l.to_string(), u.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        Plan {
            heads: pick(&self.heads),
            ffn: pick(&self.ffn),
            hidden: self.hidden.clone(),
            keep_layers: self.keep_layers.clone(),
        }
    }
}

/// Original FFN width of `layer` (current width plus the neurons already pruned).
pub fn original_ffn_width(cfg: &BertConfig, layer: usize) -> usize {
    cfg.ffn_sizes()[layer] + cfg.pruned_ffn.get(&layer.to_string()).map_or(0, Vec::len)
}

impl Plan {
    /// Reads a plan file; unknown keys and malformed indices are errors naming the file.
    pub fn read(path: &Path) -> Result<Self, SurgeryError> {
        let text = std::fs::read_to_string(path).map_err(|e| SurgeryError::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| SurgeryError::Plan(format!("{}: {e}", path.display())))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan serialises") + "\n"
    }

    /// Merges `other` into `self` (union per layer); `keep_layers` of `other` wins when set.
    pub fn merge(&mut self, other: &Plan) {
        for (src, dst) in [(&other.heads, &mut self.heads), (&other.ffn, &mut self.ffn)] {
            for (l, units) in src {
                let e = dst.entry(l.clone()).or_default();
                e.extend(units);
                e.sort_unstable();
                e.dedup();
            }
        }
        self.hidden.extend(&other.hidden);
        self.hidden.sort_unstable();
        self.hidden.dedup();
        if other.keep_layers.is_some() {
            self.keep_layers = other.keep_layers.clone();
        }
    }

    /// Checks the plan against `cfg` and returns the new removals per layer. Errors name the layer:
    /// an unknown layer or unit index, or a layer left with fewer than `limits` heads or neurons.
    pub fn resolve(&self, cfg: &BertConfig, limits: Limits) -> Result<Resolved, SurgeryError> {
        let n = cfg.num_hidden_layers;
        let layer_of = |key: &str, what: &str| -> Result<usize, SurgeryError> {
            let l: usize = key.trim().parse().map_err(|_| {
                SurgeryError::Plan(format!("{what}: key {key:?} is not a layer index"))
            })?;
            if l >= n {
                return Err(SurgeryError::Plan(format!(
                    "{what}: layer {l} does not exist (the model has {n} layers)"
                )));
            }
            Ok(l)
        };
        let mut heads = vec![Vec::new(); n];
        let mut ffn = vec![Vec::new(); n];
        for (key, units) in &self.heads {
            let l = layer_of(key, "heads")?;
            let kept: BTreeSet<usize> = cfg.kept_heads(l).into_iter().collect();
            let mut new: BTreeSet<usize> = heads[l].iter().copied().collect();
            for &h in units {
                if h >= cfg.num_attention_heads {
                    return Err(SurgeryError::Plan(format!(
                        "heads: layer {l} names head {h}, the model has {} heads per layer (original indices 0..{})",
                        cfg.num_attention_heads, cfg.num_attention_heads
                    )));
                }
                if kept.contains(&h) {
                    new.insert(h);
                }
            }
            let left = kept.len() - new.len();
            if left < limits.min_heads.max(1) {
                return Err(SurgeryError::Plan(format!(
                    "heads: the plan leaves layer {l} with {left} of {} heads; every layer must keep at least {} \
                     (--min-heads; drop whole layers with --keep-layers instead)",
                    cfg.num_attention_heads,
                    limits.min_heads.max(1)
                )));
            }
            heads[l] = new.into_iter().collect();
        }
        for (key, units) in &self.ffn {
            let l = layer_of(key, "ffn")?;
            let width = original_ffn_width(cfg, l);
            let kept: BTreeSet<usize> = cfg.kept_ffn(l).into_iter().collect();
            let mut new: BTreeSet<usize> = ffn[l].iter().copied().collect();
            for &u in units {
                if u >= width {
                    return Err(SurgeryError::Plan(format!(
                        "ffn: layer {l} names neuron {u}, the layer's original width is {width}"
                    )));
                }
                if kept.contains(&u) {
                    new.insert(u);
                }
            }
            let left = kept.len() - new.len();
            if left < limits.min_ffn.max(1) {
                return Err(SurgeryError::Plan(format!(
                    "ffn: the plan leaves layer {l} with {left} of {width} neurons; every layer must keep at least {} \
                     (--min-ffn)",
                    limits.min_ffn.max(1)
                )));
            }
            ffn[l] = new.into_iter().collect();
        }
        let keep_layers = match &self.keep_layers {
            None => None,
            Some(k) => Some(crate::layers::validate_keep_layers(k, n)?),
        };
        Ok(Resolved {
            heads,
            ffn,
            hidden: resolve_hidden(&self.hidden, cfg)?,
            keep_layers,
        })
    }
}

/// The residual-stream dimensions of `wanted` still present in `cfg`, checked: every index must exist in the
/// original width, and at least [`MIN_HIDDEN`] dimensions must stay.
fn resolve_hidden(wanted: &[usize], cfg: &BertConfig) -> Result<Vec<usize>, SurgeryError> {
    let width = cfg.original_hidden_size();
    if let Some(d) = wanted.iter().find(|&&d| d >= width) {
        return Err(SurgeryError::Plan(format!(
            "hidden: names dimension {d}, the model's original width (hidden_size) is {width}"
        )));
    }
    let new: BTreeSet<usize> = wanted
        .iter()
        .copied()
        .filter(|d| cfg.pruned_hidden.binary_search(d).is_err())
        .collect();
    let left = cfg.hidden_size - new.len();
    if left < MIN_HIDDEN {
        return Err(SurgeryError::Plan(format!(
            "hidden: the plan leaves the residual stream {left} of {width} dimensions wide; every LayerNorm \
             needs at least {MIN_HIDDEN} (over one dimension it outputs a constant)"
        )));
    }
    Ok(new.into_iter().collect())
}

/// The narrowest residual stream a plan may leave.
pub const MIN_HIDDEN: usize = 2;

/// Importance scores in the original index space of one model (see the importance->surgery contract).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// `heads[l][h]`: score of original head `h` of layer `l`, `None` when it is already pruned.
    pub heads: Vec<Vec<Option<f32>>>,
    /// `ffn[l]`: `(original neuron index, score)` of every neuron present, in current order.
    pub ffn: Vec<Vec<(usize, f32)>>,
    /// `(original residual-stream dimension, score)` of every dimension present; empty when the
    /// importance stage did not score them (`importance --hidden`).
    pub hidden: Vec<(usize, f32)>,
}

/// How to turn scores into a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Heads to remove: a fraction of all heads present, least important first, across layers.
    pub heads_ratio: f64,
    /// Instead of `heads_ratio`: keep this many (most important) heads in every layer.
    pub heads_per_layer: Option<usize>,
    /// FFN neurons to remove: a fraction of those present.
    pub ffn_ratio: f64,
    /// Take `ffn_ratio` of every layer's neurons instead of the globally least important.
    pub ffn_uniform: bool,
    /// Residual-stream dimensions to remove: a fraction of those present (width pruning; needs scores
    /// of the dimensions).
    #[serde(default)]
    pub hidden_ratio: f64,
    pub limits: Limits,
    /// The random control: remove as many units per layer as the rule above, but WHICH ones is a uniform
    /// choice seeded by this value, so a study can tell whether the scores matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<u64>,
}

impl Default for Rule {
    fn default() -> Self {
        Self {
            heads_ratio: 0.5,
            heads_per_layer: None,
            ffn_ratio: 0.0,
            ffn_uniform: false,
            hidden_ratio: 0.0,
            limits: Limits::default(),
            random: None,
        }
    }
}

fn check_ratio(name: &str, r: f64) -> Result<(), SurgeryError> {
    if !(0.0..1.0).contains(&r) || r.is_nan() {
        return Err(SurgeryError::Plan(format!("{name} {r} is outside [0, 1)")));
    }
    Ok(())
}

/// Removes the `count` least important units among `cands` (layer, original index, score), lowest score first
/// (ties: lower layer, then lower index), never leaving a layer with fewer than `min` units of `present[l]`.
fn least_important(
    mut cands: Vec<(usize, usize, f32)>,
    present: &[usize],
    count: usize,
    min: usize,
) -> Vec<Vec<usize>> {
    cands.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let mut left = present.to_vec();
    let mut out = vec![Vec::new(); present.len()];
    let mut taken = 0;
    for (l, u, _) in cands {
        if taken == count {
            break;
        }
        if left[l] > min {
            left[l] -= 1;
            out[l].push(u);
            taken += 1;
        }
    }
    for v in &mut out {
        v.sort_unstable();
    }
    out
}

/// How many units a plan removes: across all layers, or per layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    Global(usize),
    PerLayer(Vec<usize>),
}

impl Count {
    /// The part of this count done after `step` of `steps` equal steps (rounded), minus `done` already
    /// removed; used by `--steps`.
    pub fn step(&self, step: usize, steps: usize, done: &Count) -> Count {
        let part = |n: usize| ((n as f64) * step as f64 / steps.max(1) as f64).round() as usize;
        match (self, done) {
            (Count::Global(n), Count::Global(d)) => Count::Global(part(*n).saturating_sub(*d)),
            (Count::PerLayer(v), Count::PerLayer(d)) => Count::PerLayer(
                v.iter()
                    .zip(d)
                    .map(|(&n, &d)| part(n).saturating_sub(d))
                    .collect(),
            ),
            _ => self.clone(),
        }
    }

    /// Units of `plan` (per layer) counted the same way as `self`.
    pub fn done_by(&self, removed: &[usize]) -> Count {
        match self {
            Count::Global(_) => Count::Global(removed.iter().sum()),
            Count::PerLayer(_) => Count::PerLayer(removed.to_vec()),
        }
    }
}

/// Units to remove per kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    pub heads: Count,
    pub ffn: Count,
    /// Residual-stream dimensions (always a global count: one set for the whole model).
    #[serde(default = "no_hidden")]
    pub hidden: Count,
}

fn no_hidden() -> Count {
    Count::Global(0)
}

impl Rule {
    pub fn validate(&self) -> Result<(), SurgeryError> {
        check_ratio("--heads-ratio", self.heads_ratio)?;
        check_ratio("--ffn-ratio", self.ffn_ratio)?;
        check_ratio("--hidden-ratio", self.hidden_ratio)?;
        if self.heads_per_layer == Some(0) {
            return Err(SurgeryError::Plan(
                "--heads-per-layer 0 would leave layers without heads (drop layers with --keep-layers instead)".into(),
            ));
        }
        Ok(())
    }

    /// Refuses `--random` with `--steps K > 1`: a random plan ignores the scores, so re-scoring between
    /// steps would decide nothing and only cost passes.
    pub fn check_steps(&self, steps: usize) -> Result<(), SurgeryError> {
        if self.random.is_some() && steps > 1 {
            return Err(SurgeryError::Plan(format!(
                "--random cannot be combined with --steps {steps}: a random plan ignores the scores, so there \
                 is nothing to re-score (use --steps 1)"
            )));
        }
        Ok(())
    }

    /// How many heads and neurons this rule removes from a model with these scores.
    pub fn targets(&self, scores: &Scores) -> Result<Targets, SurgeryError> {
        self.validate()?;
        let hp: Vec<usize> = scores
            .heads
            .iter()
            .map(|l| l.iter().flatten().count())
            .collect();
        let fp: Vec<usize> = scores.ffn.iter().map(Vec::len).collect();
        let heads = match self.heads_per_layer {
            Some(keep) => Count::PerLayer(
                hp.iter()
                    .map(|&p| p.saturating_sub(keep.max(self.limits.min_heads)))
                    .collect(),
            ),
            None => {
                Count::Global((self.heads_ratio * hp.iter().sum::<usize>() as f64).round() as usize)
            }
        };
        let ffn = if self.ffn_uniform {
            Count::PerLayer(
                fp.iter()
                    .map(|&p| (self.ffn_ratio * p as f64).round() as usize)
                    .collect(),
            )
        } else {
            Count::Global((self.ffn_ratio * fp.iter().sum::<usize>() as f64).round() as usize)
        };
        if self.hidden_ratio > 0.0 && scores.hidden.is_empty() {
            return Err(SurgeryError::Plan(
                "--hidden-ratio needs scores of the residual-stream dimensions, and these importance scores \
                 have none: rerun importance with --hidden (config: [importance] hidden = true)"
                    .into(),
            ));
        }
        let hidden =
            Count::Global((self.hidden_ratio * scores.hidden.len() as f64).round() as usize);
        Ok(Targets { heads, ffn, hidden })
    }

    /// The plan this rule gives for `scores`.
    pub fn plan(&self, scores: &Scores) -> Result<Plan, SurgeryError> {
        Ok(self.plan_counts(scores, &self.targets(scores)?))
    }

    /// Removes `targets` units, least important first (globally or per layer), within the rule's limits.
    pub fn plan_counts(&self, scores: &Scores, targets: &Targets) -> Plan {
        let lim = self.limits;
        let hp: Vec<usize> = scores
            .heads
            .iter()
            .map(|l| l.iter().flatten().count())
            .collect();
        let hc: Vec<(usize, usize, f32)> = scores
            .heads
            .iter()
            .enumerate()
            .flat_map(|(l, v)| {
                v.iter()
                    .enumerate()
                    .filter_map(move |(h, s)| s.map(|s| (l, h, s)))
            })
            .collect();
        let fp: Vec<usize> = scores.ffn.iter().map(Vec::len).collect();
        let fc: Vec<(usize, usize, f32)> = scores
            .ffn
            .iter()
            .enumerate()
            .flat_map(|(l, v)| v.iter().map(move |&(u, s)| (l, u, s)))
            .collect();
        let mut heads = select(hc, &hp, &targets.heads, lim.min_heads.max(1));
        let mut ffn = select(fc, &fp, &targets.ffn, lim.min_ffn.max(1));
        let dc: Vec<(usize, usize, f32)> = scores.hidden.iter().map(|&(d, s)| (0, d, s)).collect();
        let mut hidden =
            select(dc, &[scores.hidden.len()], &targets.hidden, MIN_HIDDEN).swap_remove(0);
        if let Some(seed) = self.random {
            let mut rng = SplitMix64::new(seed);
            heads = redraw(&heads, &present_heads(scores), &mut rng);
            let present_ffn: Vec<Vec<usize>> = scores
                .ffn
                .iter()
                .map(|v| v.iter().map(|p| p.0).collect())
                .collect();
            ffn = redraw(&ffn, &present_ffn, &mut rng);
            let present_hidden = vec![scores.hidden.iter().map(|p| p.0).collect()];
            hidden = redraw(&[hidden], &present_hidden, &mut rng).swap_remove(0);
        }
        Resolved {
            heads,
            ffn,
            hidden,
            keep_layers: None,
        }
        .to_plan()
    }
}

/// Original indices of the heads present in every layer (those with a score).
fn present_heads(scores: &Scores) -> Vec<Vec<usize>> {
    scores
        .heads
        .iter()
        .map(|v| (0..v.len()).filter(|&h| v[h].is_some()).collect())
        .collect()
}

/// As many units per layer as `chosen` holds, drawn uniformly from `present` instead: the counts, and so
/// the limits, stay those of the importance plan; only which units go changes.
fn redraw(chosen: &[Vec<usize>], present: &[Vec<usize>], rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    chosen
        .iter()
        .zip(present)
        .map(|(c, p)| {
            let mut p = p.clone();
            rng.shuffle(&mut p);
            p.truncate(c.len());
            p.sort_unstable();
            p
        })
        .collect()
}

fn select(
    cands: Vec<(usize, usize, f32)>,
    present: &[usize],
    count: &Count,
    min: usize,
) -> Vec<Vec<usize>> {
    match count {
        Count::Global(n) => least_important(cands, present, *n, min),
        Count::PerLayer(v) => {
            let mut out = vec![Vec::new(); present.len()];
            for l in 0..present.len() {
                let mine: Vec<_> = cands.iter().copied().filter(|c| c.0 == l).collect();
                let mut one = vec![0; present.len()];
                one[l] = present[l];
                out[l] =
                    least_important(mine, &one, v.get(l).copied().unwrap_or(0), min).swap_remove(l);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sekator_model::testing::tiny_config;

    fn scores(heads: Vec<Vec<Option<f32>>>, ffn: Vec<Vec<f32>>) -> Scores {
        Scores {
            heads,
            ffn: ffn
                .into_iter()
                .map(|v| v.into_iter().enumerate().collect())
                .collect(),
            hidden: Vec::new(),
        }
    }

    #[test]
    fn plan_file_round_trips_in_hf_form() {
        let text = r#"{"heads": {"0": [0, 3]}, "ffn": {"2": [17, 255]}}"#;
        let p: Plan = serde_json::from_str(text).unwrap();
        assert_eq!(p.heads["0"], vec![0, 3]);
        assert_eq!(p.ffn["2"], vec![17, 255]);
        let again: Plan = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(again, p);
        assert!(
            serde_json::from_str::<Plan>(r#"{"head": {}}"#).is_err(),
            "typos in keys are refused"
        );
    }

    #[test]
    fn global_ratio_takes_lowest_scores_and_respects_min_heads() {
        // Layer 0 holds the four worst heads; min_heads 1 must stop the 4th from going.
        let s = scores(
            vec![
                vec![Some(0.1), Some(0.2), Some(0.3), Some(0.4)],
                vec![Some(0.9), Some(0.5), Some(0.8), Some(0.7)],
            ],
            vec![vec![1.0; 4], vec![1.0; 4]],
        );
        let rule = Rule {
            heads_ratio: 0.5,
            ..Rule::default()
        };
        let p = rule.plan(&s).unwrap();
        assert_eq!(p.heads["0"], vec![0, 1, 2]);
        assert_eq!(p.heads["1"], vec![1]);
        assert!(p.ffn.is_empty());
    }

    #[test]
    fn already_pruned_heads_are_not_candidates() {
        let s = scores(
            vec![vec![None, Some(0.2), Some(0.1), Some(0.4)]],
            vec![vec![1.0; 4]],
        );
        let p = Rule {
            heads_ratio: 0.34,
            ..Rule::default()
        }
        .plan(&s)
        .unwrap();
        assert_eq!(p.heads["0"], vec![2]); // round(0.34 * 3) = 1
    }

    #[test]
    fn per_layer_and_uniform_ffn_rules() {
        let s = scores(
            vec![
                vec![Some(0.4), Some(0.3), Some(0.2), Some(0.1)],
                vec![Some(0.1), Some(0.2), Some(0.3), Some(0.4)],
            ],
            vec![
                vec![0.5, 0.1, 0.9, 0.2],
                vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ],
        );
        let rule = Rule {
            heads_per_layer: Some(1),
            ffn_ratio: 0.5,
            ffn_uniform: true,
            ..Rule::default()
        };
        let p = rule.plan(&s).unwrap();
        assert_eq!(p.heads["0"], vec![1, 2, 3]);
        assert_eq!(p.heads["1"], vec![0, 1, 2]);
        assert_eq!(p.ffn["0"], vec![1, 3]);
        assert_eq!(p.ffn["1"], vec![0, 1, 2, 3]);
        // global FFN: the zeros of layer 1 go first
        let rule = Rule {
            heads_ratio: 0.0,
            ffn_ratio: 0.5,
            ..Rule::default()
        };
        let p = rule.plan(&s).unwrap();
        assert!(p.heads.is_empty());
        assert!(!p.ffn.contains_key("0"));
        assert_eq!(p.ffn["1"], (0..6).collect::<Vec<_>>());
    }

    /// 3 layers of 12 heads and 32 neurons, scores rising with the index and a layer bias (uneven counts
    /// under a global ratio); heads 0 and 5 of layer 1 and neurons 0..4 of layer 2 already pruned.
    fn twelve_heads() -> Scores {
        let heads = (0..3)
            .map(|l| {
                let s = |h: usize| (l != 1 || (h != 0 && h != 5)).then_some((h + 4 * l) as f32);
                (0..12).map(s).collect()
            })
            .collect();
        let ffn = (0..3)
            .map(|l| {
                let first = if l == 2 { 4 } else { 0 };
                (first..32).map(|u| (u, (u + 8 * l) as f32)).collect()
            })
            .collect();
        Scores {
            heads,
            ffn,
            hidden: Vec::new(),
        }
    }

    #[test]
    fn hidden_ratio_takes_the_least_important_dimensions() {
        let mut sc = twelve_heads();
        let rule = Rule {
            heads_ratio: 0.0,
            hidden_ratio: 0.5,
            ..Rule::default()
        };
        let err = rule.plan(&sc).unwrap_err().to_string();
        assert!(err.contains("rerun importance with --hidden"), "{err}");
        // dimension 2 already cut: scores name the original indices of the six left
        sc.hidden = vec![(0, 5.0), (1, 1.0), (3, 2.0), (4, 0.5), (5, 9.0), (6, 3.0)];
        let p = rule.plan(&sc).unwrap();
        assert_eq!(p.hidden, vec![1, 3, 4]);
        assert!(p.heads.is_empty() && p.ffn.is_empty());
        // a ratio near 1 still leaves MIN_HIDDEN dimensions, the most important
        let most = Rule {
            hidden_ratio: 0.99,
            ..rule.clone()
        };
        assert_eq!(most.plan(&sc).unwrap().hidden, vec![1, 3, 4, 6]);
        // the random control removes as many, drawn among those present
        let random = Rule {
            random: Some(3),
            ..rule
        };
        let r = random.plan(&sc).unwrap().hidden;
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|d| [0, 1, 3, 4, 5, 6].contains(d)));
    }

    fn per_layer(m: &BTreeMap<String, Vec<usize>>, layers: usize) -> Vec<Vec<usize>> {
        (0..layers)
            .map(|l| m.get(&l.to_string()).cloned().unwrap_or_default())
            .collect()
    }

    fn random_rule(seed: Option<u64>) -> Rule {
        Rule {
            heads_ratio: 0.4,
            ffn_ratio: 0.3,
            random: seed,
            ..Rule::default()
        }
    }

    #[test]
    fn random_plan_keeps_the_per_layer_counts_and_draws_other_units() {
        let s = twelve_heads();
        let imp = random_rule(None).plan(&s).unwrap();
        let (ih, if_) = (per_layer(&imp.heads, 3), per_layer(&imp.ffn, 3));
        let count = |v: &[Vec<usize>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(
            count(&ih),
            vec![9, 4, 1],
            "importance plan: uneven per layer"
        );
        let rand = random_rule(Some(7)).plan(&s).unwrap();
        let (rh, rf) = (per_layer(&rand.heads, 3), per_layer(&rand.ffn, 3));
        assert_eq!(count(&rh), count(&ih));
        assert_eq!(count(&rf), count(&if_));
        assert_ne!(rh, ih, "seed 7 draws other heads than the importance plan");
        assert_ne!(
            rf, if_,
            "seed 7 draws other neurons than the importance plan"
        );
        assert_eq!(random_rule(Some(7)).plan(&s).unwrap(), rand, "same seed");
        assert_ne!(random_rule(Some(8)).plan(&s).unwrap(), rand, "other seed");
    }

    #[test]
    fn random_plan_never_draws_units_already_pruned() {
        let s = twelve_heads();
        let present = present_heads(&s);
        for seed in 0..200 {
            let p = random_rule(Some(seed)).plan(&s).unwrap();
            for (l, (h, f)) in per_layer(&p.heads, 3)
                .iter()
                .zip(per_layer(&p.ffn, 3))
                .enumerate()
            {
                assert!(
                    h.iter().all(|u| present[l].contains(u)),
                    "seed {seed}: {h:?}"
                );
                assert!(l != 2 || f.iter().all(|&u| u >= 4), "seed {seed}: {f:?}");
            }
        }
    }

    #[test]
    fn random_plan_is_refused_with_several_steps() {
        let e = random_rule(Some(1)).check_steps(2).unwrap_err().to_string();
        assert!(e.contains("--random") && e.contains("--steps 2"), "{e}");
        assert!(random_rule(Some(1)).check_steps(1).is_ok());
        assert!(random_rule(None).check_steps(2).is_ok());
    }

    #[test]
    fn resolve_names_the_layer_left_without_heads() {
        let cfg = tiny_config(3);
        let p: Plan = serde_json::from_str(r#"{"heads": {"2": [0, 1, 2, 3]}}"#).unwrap();
        let e = p.resolve(&cfg, Limits::default()).unwrap_err().to_string();
        assert!(e.contains("layer 2") && e.contains("0 of 4 heads"), "{e}");
        let p: Plan = serde_json::from_str(r#"{"heads": {"5": [0]}}"#).unwrap();
        assert!(p
            .resolve(&cfg, Limits::default())
            .unwrap_err()
            .to_string()
            .contains("layer 5"));
        let p: Plan = serde_json::from_str(r#"{"heads": {"1": [4]}}"#).unwrap();
        assert!(p
            .resolve(&cfg, Limits::default())
            .unwrap_err()
            .to_string()
            .contains("head 4"));
        let p: Plan = serde_json::from_str(r#"{"ffn": {"0": [64]}}"#).unwrap();
        assert!(p
            .resolve(&cfg, Limits::default())
            .unwrap_err()
            .to_string()
            .contains("neuron 64"));
        let p: Plan = serde_json::from_str(r#"{"heads": {"1": [0, 1]}}"#).unwrap();
        let e = p
            .resolve(
                &cfg,
                Limits {
                    min_heads: 3,
                    min_ffn: 1,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 1") && e.contains("2 of 4"), "{e}");
    }

    #[test]
    fn resolve_skips_units_already_pruned() {
        let mut cfg = tiny_config(2);
        cfg.add_pruned_heads(0, &[1]);
        cfg.add_pruned_ffn(1, &[5, 6]);
        cfg.set_ffn_sizes(vec![64, 62]);
        let p: Plan =
            serde_json::from_str(r#"{"heads": {"0": [1, 2]}, "ffn": {"1": [5, 63]}}"#).unwrap();
        let r = p.resolve(&cfg, Limits::default()).unwrap();
        assert_eq!(r.heads, vec![vec![2], vec![]]);
        assert_eq!(r.ffn, vec![vec![], vec![63]]);
        assert_eq!(original_ffn_width(&cfg, 1), 64);
    }
}
