//! Tiny fixtures shared by the integration tests: random teacher/student checkpoints and pair files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sekator_distill::metrics::MetricsLog;
use sekator_distill::DistillConfig;
use sekator_model::testing::{tiny_config, write_random_model};
use sekator_model::{Cpu, SafetensorsWeights};

const EN: [&str; 12] = [
    "the cat sleeps",
    "a dog runs fast",
    "we read books",
    "good morning",
    "the sun is hot",
    "i like tea",
    "she writes code",
    "rain falls today",
    "open the door",
    "the city is big",
    "birds can fly",
    "time goes on",
];
const RU: [&str; 12] = [
    "кот спит",
    "собака быстро бежит",
    "мы читаем книги",
    "доброе утро",
    "солнце горячее",
    "я люблю чай",
    "она пишет код",
    "сегодня идет дождь",
    "открой дверь",
    "город большой",
    "птицы умеют летать",
    "время идет",
];

/// `n` pairs, `en<TAB>ru` with a header; texts vary by a numeric suffix.
pub fn pairs_tsv(path: &Path, n: usize) {
    let mut s = String::from("en\tru\n");
    for i in 0..n {
        s.push_str(&format!(
            "{} {}\t{} {}\n",
            EN[i % 12],
            i / 12,
            RU[i % 12],
            i / 12
        ));
    }
    std::fs::write(path, s).unwrap();
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub teacher: PathBuf,
    pub student: PathBuf,
    pub data: PathBuf,
    pub cache: PathBuf,
}

impl Fixture {
    /// A 2-layer tiny teacher, a student with two heads of layer 1 pruned (different random weights),
    /// 40 training pairs and 16 dev pairs (`pairs_dev.tsv` beside them).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dev = Default::default();
        let teacher = dir.path().join("teacher");
        write_random_model::<Cpu>(&teacher, &tiny_config(2), 1, &dev).unwrap();
        let mut scfg = tiny_config(2);
        scfg.add_pruned_heads(1, &[0, 3]);
        let student = dir.path().join("student");
        write_random_model::<Cpu>(&student, &scfg, 2, &dev).unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let data = data_dir.join("pairs.tsv");
        pairs_tsv(&data, 40);
        pairs_tsv(&data_dir.join("pairs_dev.tsv"), 16);
        let cache = dir.path().join("cache");
        Self {
            dir,
            teacher,
            student,
            data,
            cache,
        }
    }

    pub fn config(&self, out: &str) -> DistillConfig {
        DistillConfig {
            teacher: Some(self.teacher.clone()),
            student: Some(self.student.clone()),
            data: Some(self.data.clone()),
            out: self.dir.path().join(out),
            cache_dir: Some(self.cache.clone()),
            steps: Some(12),
            batch_size: 4,
            max_length: 16,
            lr: 1e-3,
            warmup_steps: Some(3),
            eval_every: 6,
            eval_pairs: 16,
            checkpoint_every: 4,
            keep_checkpoints: 2,
            log_every: 1,
            cache_shard_rows: 16,
            device: sekator_model::DeviceKind::Cpu,
            ..Default::default()
        }
    }
}

/// All tensors of a model dir, by name.
pub fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let w = SafetensorsWeights::open_dir(dir).unwrap();
    w.names()
        .into_iter()
        .map(|n| {
            let (_, d) = w.read_f32(&n).unwrap();
            (n, d)
        })
        .collect()
}

/// (step, total training loss) of every logged training step of the run in `out`.
pub fn train_losses(out: &Path) -> Vec<(usize, f32)> {
    MetricsLog::resume(out, usize::MAX)
        .unwrap()
        .train()
        .map(|r| (r.step, r.loss.total))
        .collect()
}

pub fn max_abs_diff(a: &Path, b: &Path) -> f32 {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    let mut m = 0.0f32;
    for ((na, da), (nb, db)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        for (x, y) in da.iter().zip(db) {
            m = m.max((x - y).abs());
        }
    }
    m
}

/// Cuts `path` to half its length (a checkpoint file damaged after it was written).
pub fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

/// Flips one byte in the middle of `path` (same length, other content).
pub fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Rewrites the `state.json` of checkpoint `dir` through `edit` (on its JSON).
pub fn edit_state(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join(sekator_distill::checkpoint::STATE_FILE);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Runs `f` with a tracing subscriber on this thread that records every event at info and above; returns
/// `f`'s result and the log text.
pub fn with_log<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).to_string();
    (out, text)
}
