//! Reading encodechka's data files, with errors that name the file, the column and the fix.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data file {path} is missing: run `just fetch-data` (or pass --data DIR pointing at the encodechka files)")]
    Missing { path: PathBuf },
    #[error("{path}: no column `{column}` (columns: {available})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path}: column `{column}` is empty at data row {row}")]
    EmptyValue {
        path: PathBuf,
        column: String,
        row: usize,
    },
    #[error("{path}: column `{column}` row {row}: {value:?} is not a number")]
    NotNumber {
        path: PathBuf,
        column: String,
        row: usize,
        value: String,
    },
    #[error("{path}: cannot read: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error(
        "{path}: text {text}: entity span {start}..{end} is outside the text ({len} characters)"
    )]
    BadSpan {
        path: PathBuf,
        text: usize,
        start: usize,
        end: usize,
        len: usize,
    },
}

/// `dir/name`, or [`DataError::Missing`].
pub fn require(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::Missing { path })
    }
}

/// The named columns of a CSV file, every cell as text (as written; no type inference).
pub fn read_csv_columns(path: &Path, columns: &[&str]) -> Result<Vec<Vec<String>>, DataError> {
    if !path.is_file() {
        return Err(DataError::Missing {
            path: path.to_path_buf(),
        });
    }
    let unreadable = |e: PolarsError| DataError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .map_err(unreadable)?
        .finish()
        .map_err(unreadable)?;
    let available = || {
        df.get_column_names()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    columns
        .iter()
        .map(|&name| {
            let col = df.column(name).map_err(|_| DataError::MissingColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                available: available(),
            })?;
            let values = col.str().map_err(unreadable)?;
            values
                .into_iter()
                .enumerate()
                .map(|(row, v)| match v {
                    Some(s) if !s.is_empty() => Ok(s.to_string()),
                    _ => Err(DataError::EmptyValue {
                        path: path.to_path_buf(),
                        column: name.to_string(),
                        row: row + 1,
                    }),
                })
                .collect()
        })
        .collect()
}

/// Parses a numeric column read by [`read_csv_columns`].
pub fn parse_numbers(path: &Path, column: &str, values: &[String]) -> Result<Vec<f64>, DataError> {
    values
        .iter()
        .enumerate()
        .map(|(row, v)| {
            v.trim().parse::<f64>().map_err(|_| DataError::NotNumber {
                path: path.to_path_buf(),
                column: column.to_string(),
                row: row + 1,
                value: v.clone(),
            })
        })
        .collect()
}

/// One NER corpus: texts and, per text, `[type, start, end]` character spans (code points).
#[derive(Debug, Clone, Deserialize)]
pub struct NerCorpus {
    pub texts: Vec<String>,
    pub labels: Vec<Vec<(String, usize, usize)>>,
}

pub fn read_ner_json(path: &Path) -> Result<NerCorpus, DataError> {
    if !path.is_file() {
        return Err(DataError::Missing {
            path: path.to_path_buf(),
        });
    }
    let unreadable = |message: String| DataError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let corpus: NerCorpus =
        serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    if corpus.texts.len() != corpus.labels.len() {
        return Err(unreadable(format!(
            "{} texts but {} label lists",
            corpus.texts.len(),
            corpus.labels.len()
        )));
    }
    for (i, (text, spans)) in corpus.texts.iter().zip(&corpus.labels).enumerate() {
        let len = text.chars().count();
        for (_, start, end) in spans {
            if start > end || *end > len {
                return Err(DataError::BadSpan {
                    path: path.to_path_buf(),
                    text: i,
                    start: *start,
                    end: *end,
                    len,
                });
            }
        }
    }
    Ok(corpus)
}

/// Sorted distinct labels: numerically when every label is a number (pandas reads such columns as numbers,
/// so sklearn orders the classes numerically), else by code point (numpy's string order).
pub fn sorted_classes(labels: &[String]) -> Vec<String> {
    let mut classes: Vec<String> = labels.to_vec();
    classes.sort();
    classes.dedup();
    let numeric: Option<Vec<f64>> = classes
        .iter()
        .map(|c| c.trim().parse::<f64>().ok())
        .collect();
    if let Some(values) = numeric {
        let mut paired: Vec<(f64, String)> = values.into_iter().zip(classes).collect();
        paired.sort_by(|a, b| a.0.total_cmp(&b.0));
        classes = paired.into_iter().map(|(_, c)| c).collect();
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_and_column_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = require(dir.path(), "stsb_dev.csv").unwrap_err().to_string();
        assert!(
            err.contains("stsb_dev.csv") && err.contains("just fetch-data"),
            "{err}"
        );

        let path = dir.path().join("t.csv");
        std::fs::write(&path, "text,answer\n\"a, \"\"quoted\"\"\nline\",1\nb,-1\n").unwrap();
        let cols = read_csv_columns(&path, &["text", "answer"]).unwrap();
        assert_eq!(
            cols[0],
            vec!["a, \"quoted\"\nline".to_string(), "b".to_string()]
        );
        assert_eq!(cols[1], vec!["1".to_string(), "-1".to_string()]);
        let err = read_csv_columns(&path, &["text", "label"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`label`") && err.contains("t.csv") && err.contains("text, answer"),
            "{err}"
        );
    }

    #[test]
    fn classes_sort_like_sklearn() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sorted_classes(&s(&["1", "-1", "0", "10", "1"])),
            s(&["-1", "0", "1", "10"])
        );
        assert_eq!(
            sorted_classes(&s(&["I-ORG", "B-ORG", "O", "B-LOC"])),
            s(&["B-LOC", "B-ORG", "I-ORG", "O"])
        );
    }
}
