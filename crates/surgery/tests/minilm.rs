//! Acceptance 1 and 2 on the real all-MiniLM-L6-v2 (skipped with a note when it has not been fetched:
//! `python3 scripts/fetch_model.py minilm`).

mod common;

use std::path::PathBuf;

use common::*;
use sekator_model::Encoder;
use sekator_surgery::size::file_params;
use sekator_surgery::{run, PlanSource, Rule};

#[test]
fn minilm_heads_and_ffn_half_is_exact_and_sizes_add_up() {
    let Some(model) = minilm() else {
        eprintln!("skipped: data/models/all-MiniLM-L6-v2 not present");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let imp = tmp.path().join("imp");
    common::stand_in_importance(&model, &imp, &model);

    // Heads 50% only: sizes from a dry run.
    let rule = Rule {
        heads_ratio: 0.5,
        ..Rule::default()
    };
    let mut o = opts(
        &model,
        PlanSource::Importance {
            dir: imp.clone(),
            rule,
        },
        &tmp.path().join("unused"),
    );
    o.dry_run = true;
    let h50 = run(&o, None).unwrap().report;
    assert_eq!(h50.before.params.total, 22_713_216);
    assert_eq!(h50.after.params.total, 20_940_288);
    assert_eq!(
        h50.before.file.unwrap().params,
        22_713_216,
        "stored params (position_ids buffer excluded)"
    );
    println!(
        "MiniLM heads 50%: params {} -> {} ({:.4}x), FLOPs/token@128 {} -> {} ({:.4}x)",
        h50.before.params.total,
        h50.after.params.total,
        h50.ratios.params_total,
        h50.before.flops_per_token,
        h50.after.flops_per_token,
        h50.ratios.flops_per_token
    );

    // Heads 50% + FFN 50%: written, exact against the masked original.
    let rule = Rule {
        heads_ratio: 0.5,
        ffn_ratio: 0.5,
        ..Rule::default()
    };
    let out = tmp.path().join("pruned");
    let outcome = run(
        &opts(&model, PlanSource::Importance { dir: imp, rule }, &out),
        None,
    )
    .unwrap();
    let r = &outcome.report;
    let stored = file_params(&out).unwrap();
    assert_eq!(stored.params, r.after.params.total);
    assert_eq!(stored.params, 17_396_736);
    assert_eq!(r.ratios.flops_per_token, 2.0);
    println!(
        "MiniLM heads 50% + FFN 50%: params {} -> {} ({:.4}x), file {} -> {} bytes, FLOPs/token@128 {} -> {} ({:.4}x), \
         heads {:?}, FFN {:?}",
        r.before.params.total,
        r.after.params.total,
        r.ratios.params_total,
        r.before.file.unwrap().bytes,
        stored.bytes,
        r.before.flops_per_token,
        r.after.flops_per_token,
        r.ratios.flops_per_token,
        r.after.heads_per_layer,
        r.after.ffn_sizes
    );

    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let pruned = Encoder::<B>::load(&out, &dev).unwrap();
    let reference = hidden(&orig, Some(&masks_for(&orig.config, &outcome.plan)));
    let got = hidden(&pruned, None);
    let d = max_diff(&reference, &got);
    println!("MiniLM heads 50% + FFN 50%: max |diff| vs masked original = {d:e}");
    assert!(d <= 1e-5, "{d}");
    assert!(out.join("modules.json").exists() && out.join("1_Pooling/config.json").exists());
    assert!(out.join("tokenizer.json").exists());
}

/// Vocabulary trimming on the real tokenizer: 2000 en-ru pairs as the corpus, tokens seen once dropped.
/// Corpus texts made only of kept tokens embed exactly as before; the others are spelled differently.
#[test]
fn minilm_vocabulary_trimmed_on_pairs_is_exact_for_in_vocabulary_texts() {
    let Some(model) = minilm() else {
        eprintln!("skipped: data/models/all-MiniLM-L6-v2 not present");
        return;
    };
    let pairs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/en-ru/pairs.tsv");
    let Ok(text) = std::fs::read_to_string(&pairs) else {
        eprintln!("skipped: data/en-ru/pairs.tsv not present");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let lines: Vec<&str> = text.lines().skip(1).take(2000).collect();
    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let out = tmp.path().join("trimmed");
    let mut o = opts(&model, PlanSource::None, &out);
    o.export.onnx = false;
    o.vocab = Some(sekator_surgery::VocabOptions {
        from: vec![corpus],
        size: None,
        min_count: 2,
    });
    let r = run(&o, None).unwrap().report;
    let v = r.vocab.clone().unwrap();
    println!(
        "MiniLM vocabulary on 2000 pairs, min count 2: {} -> {} tokens ({} special, {} alphabet), \
         coverage {:.4} of {} tokens ({} distinct)",
        v.before, v.after, v.special, v.alphabet, v.coverage, v.corpus_tokens, v.distinct
    );
    assert_eq!(v.before, 30522);
    assert!(
        v.after < v.distinct + v.special + v.alphabet && v.after > 1000,
        "{v:?}"
    );
    assert!(v.coverage < 1.0 && v.coverage > 0.9, "{v:?}");
    assert_eq!(
        r.before.params.total - r.after.params.total,
        (30522 - v.after) * 384
    );
    assert_eq!(file_params(&out).unwrap().params, r.after.params.total);

    let dev = Default::default();
    let orig = Encoder::<B>::load(&model, &dev).unwrap();
    let cut = Encoder::<B>::load(&out, &dev).unwrap();
    let pieces = |enc: &Encoder<B>, t: &str| -> Vec<String> {
        enc.tokenizer
            .inner()
            .encode(t, false)
            .unwrap()
            .get_tokens()
            .to_vec()
    };
    let (mut inside, mut outside) = (vec![], vec![]);
    for &l in &lines[..300] {
        let p = pieces(&orig, l);
        if p.iter().all(|t| cut.tokenizer.token_to_id(t).is_some()) {
            inside.push(l);
        } else {
            outside.push(l);
        }
    }
    assert!(inside.len() >= 16 && !outside.is_empty());
    for &l in &inside[..16] {
        assert_eq!(pieces(&orig, l), pieces(&cut, l), "{l}");
    }
    for &l in &outside {
        assert_ne!(pieces(&orig, l), pieces(&cut, l), "{l}");
    }
    let batch_hidden = |enc: &Encoder<B>, texts: &[&str]| {
        let toks = enc.tokenize(texts, 128).unwrap();
        let b =
            sekator_model::TokenBatch::new(&toks.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id);
        sekator_model::layers::to_vec(&enc.forward(&b, None).0)
    };
    let d = max_diff(
        &batch_hidden(&orig, &inside[..16]),
        &batch_hidden(&cut, &inside[..16]),
    );
    println!(
        "MiniLM trimmed: {} of 300 corpus lines in vocabulary; max |diff| of 16 = {d:e}",
        inside.len()
    );
    assert!(d <= 1e-6, "{d}");
}
