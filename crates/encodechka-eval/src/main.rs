//! `encodechka-eval`: see `encodechka-eval --help`.

use std::process::ExitCode;

use sekator_encodechka::cli::{run, Cli};
use sekator_pipeline::{flag, lock_stage, parse_stage_args, Stage};

fn main() -> ExitCode {
    sekator_model::logging::init("info");
    let parsed = parse_stage_args::<Cli>(Stage::Eval.name(), |c| {
        let r = &c.run;
        let mut derived = vec![];
        derived.extend(flag("data", r.encodechka.display()));
        derived.extend(flag("out", c.stage_dir(Stage::Eval).display()));
        let models = [
            ("teacher", r.model.clone()),
            ("pruned", c.stage_dir(Stage::Surgery)),
            (
                "distilled",
                c.stage_dir(Stage::Distill)
                    .join(sekator_pipeline::stage::DISTILLED_MODEL),
            ),
        ];
        for (name, dir) in models {
            derived.extend(flag("model", dir.display()));
            derived.extend(flag("name", name));
        }
        // the teacher's static-embedding baseline, when the run builds one
        if c.has_section(sekator_pipeline::config::STATIC_SECTION) {
            let dir = c.run_dir().join(sekator_pipeline::stage::STATIC_MODEL);
            derived.extend(flag("model", dir.display()));
            derived.extend(flag("name", "static"));
        }
        let mut defaults = vec![];
        defaults.extend(flag("device", r.device));
        // one cache for every run: the teacher is embedded once across runs
        defaults.extend(flag("cache", r.runs_dir.join("encodechka-cache").display()));
        (derived, defaults)
    });
    let locked = parsed.and_then(|(cli, rc)| {
        let lock = lock_stage(rc.map(|c| c.run_dir()).as_deref(), &cli.out, Stage::Eval)?;
        Ok((cli, lock))
    });
    let (cli, _lock) = match locked {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("some models failed (see above); tables hold the others");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
