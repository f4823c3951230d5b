//! Shared helpers of the importance tests: tiny random checkpoints and pair files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sekator_importance::ImportanceOptions;
use sekator_model::testing::{tiny_config, write_random_model};
use sekator_model::{BertConfig, Cpu, NamedTensor, SafetensorsWeights};
use sekator_pipeline::Pair;

pub type B = Cpu;

const EN: [&str; 12] = [
    "the cat sleeps",
    "a dog runs fast",
    "we like green tea",
    "rain falls today",
    "my house is small",
    "she reads a book",
    "they play music",
    "the sun is hot",
    "birds sing at dawn",
    "he writes code",
    "snow covers hills",
    "i drink water",
];
const RU: [&str; 12] = [
    "кошка спит",
    "собака быстро бежит",
    "мы любим зеленый чай",
    "сегодня идёт дождь",
    "мой дом маленький",
    "она читает книгу",
    "они играют музыку",
    "солнце горячее",
    "птицы поют на рассвете",
    "он пишет код",
    "снег покрывает холмы",
    "я пью воду",
];

/// `n` distinct en-ru pairs built from small phrase lists (letters covered by the tiny vocabulary).
pub fn pairs(n: usize) -> Vec<Pair> {
    (0..n)
        .map(|i| {
            let (a, b) = (i % 12, (i / 12) % 12);
            let extra = i / 144;
            Pair {
                en: format!("{} and {} {}", EN[a], EN[b], extra),
                ru: format!("{} и {} {}", RU[a], RU[b], extra),
            }
        })
        .collect()
}

/// Writes `pairs` as a TSV with a header; returns its path.
pub fn write_pairs(dir: &Path, name: &str, pairs: &[Pair]) -> PathBuf {
    let p = dir.join(name);
    let mut s = String::from("en\tru\n");
    for x in pairs {
        s.push_str(&format!("{}\t{}\n", x.en, x.ru));
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// A tiny random checkpoint (hidden 32, 4 heads, FFN 64) with `cfg` under `dir/name`.
pub fn tiny_model(dir: &Path, name: &str, cfg: &BertConfig, seed: u64) -> PathBuf {
    let p = dir.join(name);
    write_random_model::<B>(&p, cfg, seed, &Default::default()).unwrap();
    p
}

pub fn tiny(dir: &Path, name: &str, layers: usize, seed: u64) -> PathBuf {
    tiny_model(dir, name, &tiny_config(layers), seed)
}

/// Rewrites the checkpoint `src` into `dst` after `edit` changed its tensors (tokenizer files copied).
pub fn edit_model(src: &Path, dst: &Path, edit: impl FnOnce(&BertConfig, &mut Vec<NamedTensor>)) {
    let cfg = sekator_model::read_config(src).unwrap();
    let w = SafetensorsWeights::open_dir(src).unwrap();
    let mut tensors: Vec<NamedTensor> = w
        .names()
        .into_iter()
        .map(|name| {
            let (shape, data) = w.read_f32(&name).unwrap();
            NamedTensor { name, shape, data }
        })
        .collect();
    edit(&cfg, &mut tensors);
    sekator_model::write_model_dir(dst, &cfg, &tensors, Some(src), true).unwrap();
}

/// Multiplies the rows of head `head` (current index) of `layer`'s `which` projection (query/key/value),
/// weight and bias, by `factor`.
pub fn scale_head(
    cfg: &BertConfig,
    t: &mut [NamedTensor],
    layer: usize,
    which: &str,
    head: usize,
    factor: f32,
) {
    let hd = cfg.head_dim();
    let hidden = cfg.hidden_size;
    for x in t.iter_mut() {
        let prefix = format!("encoder.layer.{layer}.attention.self.{which}.");
        if let Some(kind) = x.name.strip_prefix(&prefix) {
            let row_len = if kind == "weight" { hidden } else { 1 };
            for v in &mut x.data[head * hd * row_len..(head + 1) * hd * row_len] {
                *v *= factor;
            }
        }
    }
}

/// Options for fast tests: 64 pairs in batches of 16, max_length 32, no progress bars.
pub fn opts(data: &Path) -> ImportanceOptions {
    ImportanceOptions {
        data: data.to_path_buf(),
        samples: 64,
        batch_size: 16,
        max_length: 32,
        progress: false,
        ..Default::default()
    }
}
