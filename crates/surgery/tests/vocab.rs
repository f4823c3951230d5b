//! Vocabulary trimming (`--vocab-from`): texts made of kept tokens embed exactly as before, other words are
//! re-spelled or become `[UNK]`, the written tokenizer files agree with the sliced embeddings, and it composes
//! with head cuts and the ONNX export.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use sekator_model::{Encoder, TextTokenizer, TokenBatch, UnitMasks};
use sekator_surgery::{run, Options, PlanSource, VocabOptions};

/// Specials after the letters, so trimming moves `[UNK]`, `[CLS]`, `[SEP]` and `[MASK]` to new ids.
fn test_vocab() -> Vec<String> {
    let mut v = vec!["[PAD]".to_string()];
    v.extend(('a'..='z').map(|c| c.to_string()));
    v.extend(["[UNK]", "[CLS]", "[SEP]", "[MASK]"].map(String::from));
    v.extend(('a'..='z').map(|c| format!("##{c}")));
    for t in [
        "the", "play", "##ing", "ring", "cat", "##er", "qu", "##ick", ".", ",",
    ] {
        v.push(t.into());
    }
    v
}

/// A `tokenizer.json` laid out as transformers writes BERT's (MiniLM's): added specials, template
/// post-processor with ids, fixed padding.
fn tokenizer_json(vocab: &[String]) -> serde_json::Value {
    let id = |t: &str| vocab.iter().position(|v| v == t).unwrap();
    let added: Vec<_> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|t| {
            serde_json::json!({"id": id(t), "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i.into()))
        .collect();
    let special = |t: &str| serde_json::json!({"SpecialToken": {"id": t, "type_id": 0}});
    serde_json::json!({
        "version": "1.0",
        "truncation": {"max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": id("[PAD]"), "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]")],
            "pair": [special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]"),
                {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [id("[CLS]")], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [id("[SEP]")], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": map}
    })
}

/// A tiny random 2-layer model with [`test_vocab`] as `vocab.txt` and `tokenizer.json`.
fn json_model(dir: &Path) {
    tiny_model(dir, &sekator_model::testing::tiny_config(2), 11);
    let v = test_vocab();
    std::fs::write(dir.join("vocab.txt"), v.join("\n") + "\n").unwrap();
    let j = serde_json::to_string_pretty(&tokenizer_json(&v)).unwrap();
    std::fs::write(dir.join("tokenizer.json"), j).unwrap();
}

const CORPUS: &str = "the cat plays.\nthe ring, the cat\n\n";

fn write_corpus(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap();
    p
}

fn trim_opts(model: &Path, out: &Path, corpus: &Path, size: Option<usize>) -> Options {
    let mut o = opts(model, PlanSource::None, out);
    o.vocab = Some(VocabOptions {
        from: vec![corpus.to_path_buf()],
        size,
        min_count: 1,
    });
    o
}

fn hidden_of(enc: &Encoder<B>, texts: &[&str], masks: Option<&UnitMasks<B>>) -> Vec<f32> {
    let toks = enc.tokenize(texts, 64).unwrap();
    let batch = TokenBatch::new(&toks.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id);
    let (h, mask) = enc.forward(&batch, masks);
    sekator_model::testing::real_token_states(&h, &mask)
}

fn ids(tok: &TextTokenizer, text: &str) -> Vec<u32> {
    tok.encode(&[text], 64).unwrap().remove(0).ids
}

fn pieces(tok: &TextTokenizer, text: &str) -> Vec<String> {
    let enc = tok.inner().encode(text, false).unwrap();
    enc.get_tokens().to_vec()
}

#[test]
fn in_vocabulary_texts_embed_exactly_and_other_words_are_respelled_or_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    json_model(&model);
    let corpus = write_corpus(tmp.path(), CORPUS);
    let out = tmp.path().join("out");
    let outcome = run(&trim_opts(&model, &out, &corpus, None), None).unwrap();

    // 5 specials + 13 letters x 2 forms + "." and "," + the, cat, play, ring (##s is a letter piece)
    let v = outcome.report.vocab.clone().expect("vocab report");
    assert_eq!((v.before, v.after, v.special, v.alphabet), (160, 37, 5, 28));
    assert_eq!((v.texts, v.corpus_tokens, v.covered_tokens), (2, 10, 10));
    assert_eq!(v.coverage, 1.0);
    let h = 32;
    assert_eq!(
        outcome.report.before.params.total - outcome.report.after.params.total,
        (160 - 37) * h
    );
    assert_eq!(
        outcome.report.before.flops_per_token,
        outcome.report.after.flops_per_token
    );

    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let cut = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(cut.config.vocab_size, 37);
    assert_eq!(cut.config.pad_token_id, 0);
    // [UNK] 27 -> 14, [CLS] 28 -> 15, [SEP] 29 -> 16 (13 letters before them survive)
    let t = &cut.tokenizer;
    assert_eq!(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map(|s| t.token_to_id(s)),
        [Some(0), Some(14), Some(15), Some(16), Some(17)]
    );

    // In-vocabulary texts: the same tokens under the new ids, and the same hidden states.
    let map: HashMap<u32, u32> = {
        let kept: Vec<u32> = (0..160)
            .filter(|&i| {
                orig.tokenizer
                    .inner()
                    .id_to_token(i)
                    .is_some_and(|s| t.token_to_id(&s).is_some())
            })
            .collect();
        kept.iter()
            .enumerate()
            .map(|(n, &o)| (o, n as u32))
            .collect()
    };
    let texts = [
        "the cat plays.",
        "the ring, the cat",
        "cat",
        "a cat, the ring.",
    ];
    for text in texts {
        let old: Vec<u32> = ids(&orig.tokenizer, text).iter().map(|i| map[i]).collect();
        assert_eq!(ids(t, text), old, "{text}");
    }
    let d = max_diff(
        &hidden_of(&orig, &texts, None),
        &hidden_of(&cut, &texts, None),
    );
    println!("tiny tokenizer.json model, in-vocabulary texts: max |diff| = {d:e}");
    assert!(d <= 1e-6, "{d}");

    // A word whose piece `##ing` was dropped is re-spelled from the letters; `q` is gone, so "quick" is [UNK].
    assert_eq!(pieces(&orig.tokenizer, "playing"), ["play", "##ing"]);
    assert_eq!(pieces(t, "playing"), ["play", "##i", "##n", "##g"]);
    assert_eq!(pieces(&orig.tokenizer, "quick"), ["qu", "##ick"]);
    assert_eq!(pieces(t, "quick"), ["[UNK]"]);
    let d = max_diff(
        &hidden_of(&orig, &["the"], None),
        &hidden_of(&cut, &["the"], None),
    );
    assert!(d <= 1e-6);

    // The files agree: vocab.txt in new-id order, tokenizer.json's ids, embedding rows = vocab_size.
    let vocab: Vec<String> = std::fs::read_to_string(out.join("vocab.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(vocab.len(), 37);
    for (i, tok) in vocab.iter().enumerate() {
        assert_eq!(t.token_to_id(tok), Some(i as u32), "{tok}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer.json")).unwrap())
            .unwrap();
    assert_eq!(j["post_processor"]["special_tokens"]["[CLS]"]["ids"][0], 15);
    assert_eq!(j["added_tokens"][1]["id"], 14);
    let w = sekator_model::SafetensorsWeights::open_dir(&out).unwrap();
    assert_eq!(
        w.shape("embeddings.word_embeddings.weight"),
        Some(&[37, h][..])
    );
    let size: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("size.json")).unwrap()).unwrap();
    assert_eq!(size["vocab"]["after"], 37);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let key = format!("vocab_from:{}", corpus.display());
    assert_eq!(
        manifest["inputs"][&key].as_str(),
        Some(sekator_model::file_hash(&corpus).unwrap().as_str())
    );
    assert_eq!(
        manifest["config"]["vocab"],
        serde_json::json!({"vocab_size": null, "min_count": 1})
    );
    // The ONNX export was written for the smaller table.
    assert!(out.join("onnx/model.onnx").is_file() && out.join("onnx/model_qint8.onnx").is_file());
    assert_eq!(onnx_word_rows(&out.join("onnx/model.onnx")), 37);
}

/// Rows of the word-embedding initializer of an exported graph.
fn onnx_word_rows(path: &Path) -> i64 {
    use prost::Message;
    let bytes = std::fs::read(path).unwrap();
    let m = sekator_export::onnx::proto::ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.unwrap();
    let t = g
        .initializer
        .iter()
        .find(|t| t.name.contains("word_embeddings"))
        .expect("word embedding initializer");
    t.dims[0]
}

#[test]
fn vocab_size_keeps_the_most_frequent_tokens_and_reports_coverage() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    json_model(&model);
    let corpus = write_corpus(tmp.path(), CORPUS);
    let out = tmp.path().join("out");
    // 33 specials and letters, then "the" (3) and "cat" (2); "play" and "ring" (1 each) go
    let mut o = trim_opts(&model, &out, &corpus, Some(35));
    o.export.onnx = false;
    let r = run(&o, None).unwrap().report;
    let v = r.vocab.unwrap();
    assert_eq!((v.after, v.covered_tokens, v.corpus_tokens), (35, 8, 10));
    assert!((v.coverage - 0.8).abs() < 1e-12);
    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let cut = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(
        pieces(&cut.tokenizer, "plays"),
        ["p", "##l", "##a", "##y", "##s"]
    );
    let texts = ["the cat", "cat, the cat."];
    let d = max_diff(
        &hidden_of(&orig, &texts, None),
        &hidden_of(&cut, &texts, None),
    );
    assert!(d <= 1e-6, "{d}");
    // a dry run reports the same sizes without writing
    let mut dry = trim_opts(&model, &tmp.path().join("dry"), &corpus, Some(35));
    dry.dry_run = true;
    let rd = run(&dry, None).unwrap().report;
    assert_eq!(rd.after.params, r.after.params);
    assert_eq!(rd.vocab.unwrap().after, 35);
    assert!(!tmp.path().join("dry").exists());
}

/// The vocab.txt-only tokenizer (LaBSE-like exports), combined with a head cut: the result equals the
/// masked original on in-vocabulary text.
#[test]
fn vocab_txt_model_with_a_head_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(2), 7);
    let corpus = write_corpus(tmp.path(), "привет мир\n");
    let plan = plan_from_json(r#"{"heads": {"0": [1], "1": [0, 3]}}"#);
    let p = write_plan(tmp.path(), "plan.json", &plan);
    let out = tmp.path().join("out");
    let mut o = trim_opts(&model, &out, &corpus, None);
    o.source = PlanSource::File(p);
    o.export.int8 = false;
    let outcome = run(&o, None).unwrap();
    // п р и в е т м, each as a word start and as ##piece, plus 5 specials
    let v = outcome.report.vocab.unwrap();
    assert_eq!((v.after, v.alphabet, v.coverage), (19, 14, 1.0));
    assert!(!out.join("tokenizer.json").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("vocab.txt"))
            .unwrap()
            .lines()
            .count(),
        19
    );
    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let cut = Encoder::<B>::load(&out, &dev).unwrap();
    assert_eq!(cut.model.num_heads(), vec![3, 2]);
    let texts = ["привет мир", "мир", "три"];
    let reference = hidden_of(&orig, &texts, Some(&masks_for(&orig.config, &plan)));
    let d = max_diff(&reference, &hidden_of(&cut, &texts, None));
    println!("tiny vocab.txt model, trimmed + heads cut: max |diff| vs masked original = {d:e}");
    assert!(d <= 1e-5, "{d}");
    // a letter outside the corpus (`к`) makes its word unknown
    let unk = cut.tokenizer.token_to_id("[UNK]").unwrap();
    assert_eq!(ids(&cut.tokenizer, "кот")[1], unk);
    assert_eq!(onnx_word_rows(&out.join("onnx/model.onnx")), 19);
}

fn surgery(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_surgery"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The last stderr line of a failed run (`error: ...`).
fn error_line(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "expected failure");
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    let last = e.trim_end().lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("error: "), "stderr: {e}");
    last
}

#[test]
fn a_corpus_that_covers_nothing_or_a_size_below_the_specials_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(2), 3);
    let m = model.to_string_lossy().to_string();
    let out = tmp.path().join("out");
    let o = out.to_string_lossy().to_string();
    let base = ["--model", &m, "--out", &o, "--bench-texts", "0"];
    for (name, text) in [("empty.txt", ""), ("unknown.txt", "你好 ★\n\n★★\n")] {
        let f = tmp.path().join(name);
        std::fs::write(&f, text).unwrap();
        let f = f.to_string_lossy().to_string();
        let e = error_line(&surgery(&[&base[..], &["--vocab-from", &f]].concat()));
        assert!(
            e.contains(&format!("--vocab-from {f}: covers nothing")) && e.contains("one per line"),
            "{e}"
        );
    }
    let good = write_corpus(tmp.path(), "привет мир\n");
    let g = good.to_string_lossy().to_string();
    let e = error_line(&surgery(
        &[&base[..], &["--vocab-from", &g, "--vocab-size", "3"]].concat(),
    ));
    assert!(
        e.contains("--vocab-size 3 is below the 5 special tokens")
            && e.contains("pass --vocab-size 19 or more"),
        "{e}"
    );
    let missing = tmp.path().join("nope.txt").to_string_lossy().to_string();
    let e = error_line(&surgery(&[&base[..], &["--vocab-from", &missing]].concat()));
    assert!(e.contains(&missing), "{e}");
    // --vocab-size and --min-count need --vocab-from (a usage error)
    let r = surgery(&[&base[..], &["--keep-layers", "0", "--vocab-size", "50"]].concat());
    assert_eq!(r.status.code(), Some(2));
    assert!(!out.exists());
    let help = String::from_utf8_lossy(&surgery(&["--help"]).stdout).to_string();
    for word in [
        "--vocab-from",
        "--vocab-size",
        "--min-count",
        "re-spelled",
        "[UNK]",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}

/// `[surgery]` keys of a pipeline config; the corpus is an input of the manifest, so editing it reruns.
#[test]
fn config_keys_and_a_changed_corpus_reruns_the_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, &sekator_model::testing::tiny_config(2), 3);
    let runs = tmp.path().join("runs");
    stand_in_importance(&model, &runs.join("t/importance"), &model);
    let corpus = write_corpus(tmp.path(), "привет мир\n");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[run]\nname = \"t\"\nmodel = {:?}\nruns_dir = {:?}\n[surgery]\nheads_ratio = 0.0\n\
             vocab_from = [{:?}]\nmin_count = 1\nno_onnx = true\nbench_texts = 0\n",
            model.to_string_lossy(),
            runs.to_string_lossy(),
            corpus.to_string_lossy()
        ),
    )
    .unwrap();
    let c = cfg.to_string_lossy().to_string();
    let out = runs.join("t/pruned");
    let r = surgery(&["--config", &c]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        stdout.contains("vocabulary: 160 -> 19 tokens") && stdout.contains("cover 100.00%"),
        "{stdout}"
    );
    assert_eq!(sekator_model::read_config(&out).unwrap().vocab_size, 19);
    let again = surgery(&["--config", &c]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
    // к and о join the alphabet (т is there already): 19 + 4
    std::fs::write(&corpus, "привет мир кот\n").unwrap();
    let r = surgery(&["--config", &c]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!String::from_utf8_lossy(&r.stdout).contains("up to date"));
    assert_eq!(sekator_model::read_config(&out).unwrap().vocab_size, 23);
}
