//! The static baseline of a tiny random teacher: the table is the PCA'd, SIF-weighted teacher token vectors,
//! and a sentence vector is the mean of its tokens' rows.

use std::path::Path;

use sekator_model::layers::to_vec;
use sekator_model::testing::{tiny_config, write_random_model};
use sekator_model::{pooling, Cpu, Encoder, StaticModel, TokenBatch, Tokens};
use sekator_static::{build, Options};

fn opts(teacher: &Path, corpus: &Path, out: &Path, dim: usize) -> Options {
    Options {
        teacher: teacher.to_path_buf(),
        corpus: vec![corpus.to_path_buf()],
        out: out.to_path_buf(),
        dim,
        sif_a: 1e-2,
        batch_size: 64,
        device: sekator_model::DeviceKind::Cpu,
        overwrite: false,
        progress: false,
    }
}

#[test]
fn table_is_the_teachers_token_vectors_and_sentences_average_it() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("teacher");
    write_random_model::<Cpu>(&teacher, &tiny_config(2), 3, &Default::default()).unwrap();
    let corpus = tmp.path().join("pairs.tsv");
    std::fs::write(&corpus, "hello world\tпривет мир\nhello\tпривет\n").unwrap();
    let out = tmp.path().join("static");
    // all 32 dimensions: PCA is a rotation, so distances between token vectors survive exactly
    let info = build(&opts(&teacher, &corpus, &out, 32)).unwrap();
    assert_eq!((info.vocab_size, info.dim), (160, 32));
    assert!((info.explained_variance - 1.0).abs() < 1e-9);
    assert!(info.corpus_tokens > 0);
    for f in [
        "model.safetensors",
        "modules.json",
        "sekator_static.json",
        "vocab.txt",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let m = StaticModel::load(&out).unwrap();
    assert!(StaticModel::is_static(&out) && !StaticModel::is_static(&teacher));

    // reference: the teacher's vectors of two tokens the corpus never produced (SIF weight 1)
    let enc = Encoder::<Cpu>::load(&teacher, &Default::default()).unwrap();
    let seen = m
        .token_ids(&["hello world привет мир"], 64)
        .unwrap()
        .concat();
    let unseen: Vec<u32> = (5..160).filter(|t| !seen.contains(t)).take(2).collect();
    let tv = |t: u32| {
        let tokens = Tokens {
            ids: vec![2, t, 3],
            word_ids: vec![None, Some(0), None],
        };
        let b = TokenBatch::new(&[&tokens], 0);
        let (h, mask) = enc.forward(&b, None);
        to_vec(&pooling::pool(&enc.model, &h, &mask, enc.pooling).unwrap())
    };
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let (a, b) = (unseen[0] as usize, unseen[1] as usize);
    let row = |i: usize| &m.table[i * 32..(i + 1) * 32];
    let d_teacher = dist(&tv(unseen[0]), &tv(unseen[1]));
    let d_static = dist(row(a), row(b));
    assert!(
        (d_teacher - d_static).abs() < 1e-4 * d_teacher.max(1.0),
        "{d_teacher} vs {d_static}"
    );

    // a sentence is the plain mean of its (special-token-free) rows
    let ids = m.token_ids(&["hello мир"], 128).unwrap().remove(0);
    assert!(!ids.is_empty() && !ids.contains(&2) && !ids.contains(&3));
    let mut want = vec![0.0f32; 32];
    for &i in &ids {
        want.iter_mut()
            .zip(row(i as usize))
            .for_each(|(w, x)| *w += x / ids.len() as f32);
    }
    let got = m.embed(&["hello мир"], 128).unwrap().remove(0);
    assert!(dist(&got, &want) < 1e-5);
    assert_eq!(
        m.embed(&[""], 128).unwrap()[0],
        vec![0.0; 32],
        "no token: zeros"
    );
}

#[test]
fn pca_keeps_the_leading_variance_and_bad_options_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("teacher");
    write_random_model::<Cpu>(&teacher, &tiny_config(1), 4, &Default::default()).unwrap();
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, "abc\n").unwrap();
    let out = tmp.path().join("s8");
    let info = build(&opts(&teacher, &corpus, &out, 8)).unwrap();
    assert!(info.explained_variance > 8.0 / 32.0 && info.explained_variance < 1.0);
    // column variances of the table fall with the component index (SIF weights are ~1 here)
    let m = StaticModel::load(&out).unwrap();
    let var = |c: usize| m.table.chunks(8).map(|r| r[c] * r[c]).sum::<f32>();
    assert!(var(0) > var(7), "{} {}", var(0), var(7));

    let err = build(&opts(&teacher, &corpus, &out, 8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exists; pass --overwrite"), "{err}");
    let err = build(&opts(&teacher, &corpus, &tmp.path().join("s64"), 64))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--dim 64 exceeds the teacher's hidden size 32"),
        "{err}"
    );
    let missing = opts(
        &teacher,
        &tmp.path().join("nope.txt"),
        &tmp.path().join("s"),
        4,
    );
    let err = format!("{:#}", build(&missing).unwrap_err());
    assert!(err.contains("nope.txt"), "{err}");
}
