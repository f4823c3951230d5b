//! The token-level term (`w_tokens`): zero for a student that is the teacher, trainable, logged, part of
//! the run's identity on resume, and absent (no teacher forward, no log part) when its weight is 0.

mod common;

use common::{with_log, Fixture};
use sekator_distill::metrics::{MetricsLog, Record};
use sekator_distill::{run, DistillConfig, DistillError, TrainOptions};
use sekator_model::testing::{tiny_config, write_random_model};
use sekator_model::Cpu;

/// The logged token terms of the run in `out`, in step order.
fn token_curve(out: &std::path::Path) -> Vec<f32> {
    MetricsLog::resume(out, usize::MAX)
        .unwrap()
        .train()
        .map(|r| r.loss.tokens)
        .collect()
}

fn tokens_only(fx: &Fixture, out: &str) -> DistillConfig {
    DistillConfig {
        w_mse: 0.0,
        w_cross: 0.0,
        w_rank: 0.0,
        w_tokens: 1.0,
        ..fx.config(out)
    }
}

#[test]
fn student_equal_to_teacher_has_no_token_loss() {
    let fx = Fixture::new();
    let cfg = DistillConfig {
        student: fx.config("x").teacher,
        steps: Some(1),
        ..tokens_only(&fx, "same")
    };
    let s = run(&cfg, &TrainOptions::default()).unwrap();
    let first = s.first_loss.unwrap();
    assert!(first.tokens.abs() < 1e-10, "{first:?}");
    assert_eq!(first.total, first.tokens);
}

#[test]
fn token_term_trains_down_and_is_logged() {
    let fx = Fixture::new();
    let cfg = DistillConfig {
        steps: Some(20),
        ..tokens_only(&fx, "tok")
    };
    let (s, log) = with_log(|| run(&cfg, &TrainOptions::default()).unwrap());
    assert!(log.contains(", tokens "), "{log}");
    let curve = token_curve(&cfg.out);
    assert_eq!(curve.len(), 20);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (head, tail) = (mean(&curve[..4]), mean(&curve[16..]));
    assert!(tail < 0.8 * head, "token term {head} -> {tail}: {curve:?}");
    let (first, last) = (s.first_loss.unwrap(), s.last_loss.unwrap());
    assert_eq!((first.total, last.total), (first.tokens, last.tokens));
}

#[test]
fn without_w_tokens_there_is_no_token_part() {
    let fx = Fixture::new();
    let cfg = DistillConfig {
        steps: Some(2),
        ..fx.config("off")
    };
    let (s, log) = with_log(|| run(&cfg, &TrainOptions::default()).unwrap());
    assert!(!log.contains("tokens"), "{log}");
    assert!(!log.contains("token term"), "{log}");
    assert_eq!(s.last_loss.unwrap().tokens, 0.0);
    assert_eq!(token_curve(&cfg.out), vec![0.0, 0.0]);
}

#[test]
fn resuming_with_another_w_tokens_is_refused() {
    let fx = Fixture::new();
    let cfg = fx.config("r");
    let opts = TrainOptions {
        max_steps_this_run: Some(5),
        ..Default::default()
    };
    run(&cfg, &opts).unwrap();
    let changed = DistillConfig {
        w_tokens: 0.5,
        ..cfg
    };
    let resume = TrainOptions {
        resume: true,
        ..Default::default()
    };
    match run(&changed, &resume) {
        Err(DistillError::Resume(why)) => assert!(why.contains("w_tokens"), "{why}"),
        r => panic!("resumed with another w_tokens: {:?}", r.map(|s| s.step)),
    }
}

#[test]
fn records_written_before_the_token_term_still_read() {
    let line = r#"{"kind":"train","step":3,"epoch":0,"total":1.5,"mse_en":0.5,"mse_ru":0.25,"cross":0.5,"rank":2.5,"lr":0.001,"grad_norm":0.7,"pairs_per_s":12.0}"#;
    let Record::Train(r) = serde_json::from_str::<Record>(line).unwrap() else {
        panic!("not a train record")
    };
    assert_eq!((r.step, r.loss.rank, r.loss.tokens), (3, 2.5, 0.0));
}

#[test]
fn token_term_refuses_a_student_with_another_vocabulary() {
    let fx = Fixture::new();
    let other = fx.dir.path().join("other-vocab");
    let mut c = tiny_config(2);
    c.vocab_size += 8;
    write_random_model::<Cpu>(&other, &c, 3, &Default::default()).unwrap();
    let cfg = DistillConfig {
        student: Some(other),
        ..tokens_only(&fx, "v")
    };
    let err = run(&cfg, &TrainOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains("vocabulary") && err.contains("other-vocab") && err.contains("teacher"),
        "{err}"
    );
}
