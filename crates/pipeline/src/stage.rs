//! The stages of a run, in order, with the names they go by: the config section, the manifest's `stage`,
//! and the directory under `<runs_dir>/<name>/`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Importance,
    Surgery,
    Distill,
    Eval,
    Report,
}

impl Stage {
    /// In pipeline order.
    pub const ALL: [Stage; 5] = [
        Stage::Importance,
        Stage::Surgery,
        Stage::Distill,
        Stage::Eval,
        Stage::Report,
    ];

    /// The config section and the manifest's `stage` field.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Importance => "importance",
            Stage::Surgery => "surgery",
            Stage::Distill => "distill",
            Stage::Eval => "eval",
            Stage::Report => "report",
        }
    }

    /// The stage's binary (in the same target directory as every other stage's).
    pub const fn binary(self) -> &'static str {
        match self {
            Stage::Eval => "encodechka-eval",
            other => other.name(),
        }
    }

    /// The stage's directory in a run: surgery's output is the pruned model itself.
    pub const fn dir(self) -> &'static str {
        match self {
            Stage::Surgery => "pruned",
            other => other.name(),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the distilled model lands inside the distill stage's directory.
pub const DISTILLED_MODEL: &str = "final";

/// Where a run's static-embedding baseline lands (`[static]`, `static-embedding --config`).
pub const STATIC_MODEL: &str = "static";
