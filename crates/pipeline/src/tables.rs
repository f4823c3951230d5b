//! Tables shared by the eval stage and the report: the published encodechka leaderboard, Markdown from
//! polars frames, CSV files written atomically.

use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::*;

pub use crate::artifacts::eval::TASKS;

/// The published leaderboard shipped with the repository (`data/published/encodechka_leaderboard.csv`).
pub const PUBLISHED_CSV: &str = include_str!("../../../data/published/encodechka_leaderboard.csv");

/// Suffix marking published rows beside measured ones.
pub const PUBLISHED_MARK: &str = " (published)";

/// One leaderboard row as published.
#[derive(Clone, Debug)]
pub struct PublishedRow {
    pub model: String,
    /// (task code as in [`TASKS`], score) for the tasks published.
    pub scores: Vec<(&'static str, f64)>,
    pub mean_s: f64,
    pub mean_sw: Option<f64>,
    pub cpu_ms: Option<f64>,
    pub gpu_ms: Option<f64>,
    pub size_mb: Option<f64>,
    pub dim: Option<i64>,
    pub source: String,
}

fn f64_at(col: &Column, i: usize) -> Option<f64> {
    match col.get(i).ok()? {
        AnyValue::Null => None,
        AnyValue::String(s) => s.trim().parse().ok(),
        v => v.extract::<f64>(),
    }
}

/// Parses a leaderboard CSV (the shipped one when `text` is [`PUBLISHED_CSV`]).
pub fn parse_published(text: &str) -> Result<Vec<PublishedRow>> {
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(std::io::Cursor::new(text.as_bytes().to_vec()))
        .finish()
        .context("parsing the published leaderboard")?;
    let col = |name: &str| {
        df.column(name)
            .with_context(|| format!("published leaderboard: no column `{name}`"))
    };
    let mut rows = Vec::new();
    for i in 0..df.height() {
        let model = col("model")?
            .get(i)?
            .get_str()
            .unwrap_or_default()
            .to_string();
        let mut scores = Vec::new();
        for t in TASKS {
            if let Some(v) = f64_at(col(t)?, i) {
                scores.push((t, v));
            }
        }
        rows.push(PublishedRow {
            model,
            scores,
            mean_s: f64_at(col("mean_s")?, i).unwrap_or(f64::NAN),
            mean_sw: f64_at(col("mean_sw")?, i),
            cpu_ms: f64_at(col("cpu_ms")?, i),
            gpu_ms: f64_at(col("gpu_ms")?, i),
            size_mb: f64_at(col("size_mb")?, i),
            dim: f64_at(col("dim")?, i).map(|d| d as i64),
            source: col("source")?
                .get(i)?
                .get_str()
                .unwrap_or_default()
                .to_string(),
        });
    }
    Ok(rows)
}

fn cell(v: AnyValue, decimals: usize) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::Float64(x) if x.is_nan() => "nan".into(),
        AnyValue::Float64(x) => format!("{x:.decimals$}"),
        AnyValue::Float32(x) => format!("{x:.decimals$}"),
        AnyValue::String(s) => s.replace('|', "\\|"),
        AnyValue::StringOwned(s) => s.replace('|', "\\|"),
        other => other.to_string().trim_matches('"').to_string(),
    }
}

/// A frame as a Markdown table (floats to `decimals` places, numbers right-aligned).
pub fn markdown(df: &DataFrame, decimals: usize) -> String {
    let cols = df.get_columns();
    let mut s = String::new();
    s.push_str(&format!(
        "| {} |\n",
        cols.iter()
            .map(|c| c.name().as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    let align: Vec<&str> = cols
        .iter()
        .map(|c| {
            if c.dtype().is_primitive_numeric() {
                "---:"
            } else {
                ":---"
            }
        })
        .collect();
    s.push_str(&format!("|{}|\n", align.join("|")));
    for i in 0..df.height() {
        let row: Vec<String> = cols
            .iter()
            .map(|c| cell(c.get(i).unwrap_or(AnyValue::Null), decimals))
            .collect();
        s.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    s
}

/// Writes `df` as CSV with a header to `path`, atomically.
pub fn write_csv(path: &Path, df: &mut DataFrame) -> Result<()> {
    let mut bytes = vec![];
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(df)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(sekator_model::write_atomic(path, &bytes)?)
}
