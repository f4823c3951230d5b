//! The study of cuts (`study --config configs/study.toml`, `just study`): several plans that remove the same
//! share of encoder FLOPs, each distilled with the same budget and scored on encodechka, side by side.
//!
//! The study is configs plus a driver: [`plans`] turns each plan into an ordinary pipeline config, the
//! `study` binary runs the stages on each (they skip what is done), and [`report`] joins what they wrote.

pub mod plans;
pub mod report;

pub use plans::{PlanRun, PlanSection, StudyConfig, StudySection};
pub use report::StudyReport;
