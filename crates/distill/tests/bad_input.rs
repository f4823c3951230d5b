//! Acceptance 4: malformed lines are skipped and counted; empty data, hidden-size mismatch, a missing
//! teacher, bad config keys and a non-finite loss are clear errors.

mod common;

use std::process::Command;

use common::Fixture;
use sekator_distill::{run, TrainOptions};
use sekator_model::testing::write_random_model;
use sekator_model::{BertConfig, Cpu, Encoder};

#[test]
fn malformed_lines_are_skipped_and_counted_with_line_numbers() {
    let fx = Fixture::new();
    let mut text = std::fs::read_to_string(&fx.data).unwrap();
    text.push_str("no tab here\n\tempty english\nthree\tfields\there\n");
    std::fs::write(&fx.data, text).unwrap();
    let mut cfg = fx.config("o");
    cfg.steps = Some(1);
    let s = run(&cfg, &TrainOptions::default()).unwrap();
    assert_eq!(s.train_pairs, 40);
    assert_eq!(s.skipped_lines, 3);
    // header + 40 pairs = 41 lines, the bad ones are 42, 43, 44.
    let lines: Vec<usize> = s.first_bad_lines.iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, vec![42, 43, 44]);
}

#[test]
fn empty_data_is_an_error() {
    let fx = Fixture::new();
    std::fs::write(&fx.data, "en\tru\n").unwrap();
    let err = run(&fx.config("o"), &TrainOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no valid en<TAB>ru pairs"), "{err}");
    assert!(err.contains("pairs.tsv"), "{err}");
}

#[test]
fn missing_data_file_is_an_error() {
    let fx = Fixture::new();
    let mut cfg = fx.config("o");
    cfg.data = Some(fx.dir.path().join("nope.tsv"));
    let err = run(&cfg, &TrainOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains("nope.tsv") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn hidden_size_mismatch_is_an_error() {
    let fx = Fixture::new();
    let small = fx.dir.path().join("small");
    let mut c = BertConfig::new(160, 16, 1, 2, 32);
    c.max_position_embeddings = 64;
    write_random_model::<Cpu>(&small, &c, 3, &Default::default()).unwrap();
    let mut cfg = fx.config("o");
    cfg.student = Some(small);
    let err = run(&cfg, &TrainOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains("hidden size 16")
            && err.contains("teacher's 32")
            && err.contains("not a width cut"),
        "{err}"
    );
}

/// A width-cut student (config `pruned_hidden`, in the teacher's indices) trains against the teacher's
/// vectors on the dimensions it kept; the token term, which compares whole token states, is refused.
#[test]
fn a_width_cut_student_trains_on_the_kept_dimensions() {
    let fx = Fixture::new();
    let narrow = fx.dir.path().join("narrow");
    let mut c = sekator_model::testing::tiny_config(2);
    c.add_pruned_hidden(&[0, 3, 7, 8, 20, 31]);
    write_random_model::<Cpu>(&narrow, &c, 4, &Default::default()).unwrap();
    let mut cfg = fx.config("o");
    cfg.student = Some(narrow.clone());
    cfg.steps = Some(6);
    let s = run(&cfg, &TrainOptions::default()).unwrap();
    let first = s.eval_first.as_ref().unwrap().mse;
    let last = s.eval_last.as_ref().unwrap().mse;
    assert!(last < first, "dev MSE {first} -> {last}");
    let out = Encoder::<Cpu>::load(&cfg.out.join("final"), &Default::default()).unwrap();
    assert_eq!((out.config.hidden_size, out.config.head_dim()), (26, 8));
    let mut tokens = fx.config("t");
    tokens.student = Some(narrow);
    tokens.w_tokens = 1.0;
    let err = run(&tokens, &TrainOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("width-pruned") && err.contains("w_tokens = 0"),
        "{err}"
    );
}

#[test]
fn missing_teacher_is_an_error() {
    let fx = Fixture::new();
    let mut cfg = fx.config("o");
    cfg.teacher = Some(fx.dir.path().join("no-such-teacher"));
    let err = run(&cfg, &TrainOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains("teacher checkpoint")
            && err.contains("no-such-teacher")
            && err.contains("not found"),
        "{err}"
    );
    let mut unset = fx.config("o");
    unset.teacher = None;
    let err = run(&unset, &TrainOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no teacher"), "{err}");
}

#[test]
fn pooler_pooling_without_pooler_weights_is_an_error() {
    let fx = Fixture::new();
    // Strip the pooler from the student.
    let enc = Encoder::<Cpu>::load(&fx.student, &Default::default()).unwrap();
    let tensors: Vec<_> = enc
        .model
        .export()
        .into_iter()
        .filter(|t| !t.name.starts_with("pooler."))
        .collect();
    let nopool = fx.dir.path().join("nopool");
    sekator_model::write_model_dir(&nopool, &enc.config, &tensors, Some(&fx.student), true)
        .unwrap();
    let mut cfg = fx.config("o");
    cfg.student = Some(nopool);
    cfg.pooling = Some(sekator_model::Pooling::Pooler);
    let err = run(&cfg, &TrainOptions::default()).unwrap_err().to_string();
    assert!(err.contains("student has no pooler"), "{err}");
}

#[test]
fn non_finite_loss_stops_with_the_step() {
    let fx = Fixture::new();
    // A student whose embedding LayerNorm is NaN: the first loss is NaN.
    let enc = Encoder::<Cpu>::load(&fx.student, &Default::default()).unwrap();
    let mut tensors = enc.model.export();
    for t in tensors
        .iter_mut()
        .filter(|t| t.name == "embeddings.LayerNorm.weight")
    {
        t.data.iter_mut().for_each(|v| *v = f32::NAN);
    }
    let bad = fx.dir.path().join("nan-student");
    sekator_model::write_model_dir(&bad, &enc.config, &tensors, Some(&fx.student), true).unwrap();
    let mut cfg = fx.config("o");
    cfg.student = Some(bad);
    let err = run(&cfg, &TrainOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains("non-finite loss") && err.contains("step 1"),
        "{err}"
    );
    assert!(!cfg.out.join("checkpoints/step-4").exists());
}

#[test]
fn cli_reports_unknown_config_key_and_exits_nonzero() {
    let fx = Fixture::new();
    let p = fx.dir.path().join("bad.toml");
    std::fs::write(&p, "lr = 1e-4\nlearnig_rate = 2\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error:") && err.contains("learnig_rate") && err.contains("bad.toml"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn cli_flags_override_the_config_file() {
    let fx = Fixture::new();
    let p = fx.dir.path().join("c.toml");
    std::fs::write(&p, "lr = 1e-4\nbatch_size = 8\nteacher = \"t\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args([
            "--config",
            p.to_str().unwrap(),
            "--batch-size",
            "16",
            "--student",
            "s",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let cfg = sekator_distill::DistillConfig::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg.batch_size, 16);
    assert_eq!(cfg.lr, 1e-4);
    assert_eq!(cfg.teacher.as_deref(), Some(std::path::Path::new("t")));
    assert_eq!(cfg.student.as_deref(), Some(std::path::Path::new("s")));
}
