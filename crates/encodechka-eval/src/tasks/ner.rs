//! NE1 (factRuEval-2016) and NE2 (RuDReC): word-level entity tagging from frozen word vectors.
//!
//! Texts are split 50/50 (`train_test_split(test_size=0.5, random_state=1)`), cut into razdel words and
//! given BIO labels from the character spans; a one-vs-rest SGD logistic model is trained on the training
//! words and scored by macro F1 over every test label except `O`.

use std::path::Path;

use anyhow::Result;

use crate::data::{read_ner_json, sorted_classes};
use crate::embedder::WordStore;
use crate::metrics::macro_f1;
use crate::sgd::{Rows, SgdClassifier, SgdConfig};
use crate::splits::train_test_split;
use crate::tasks::VariantScore;
use crate::words::tokenize;

/// One text as words with their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledText {
    pub words: Vec<String>,
    pub labels: Vec<String>,
}

pub struct NerTask {
    pub train: Vec<LabelledText>,
    pub test: Vec<LabelledText>,
}

/// Words and BIO labels of one text (`make_word_labels` of the original).
///
/// Quirk kept on purpose: the original skips a character when its word index is falsy
/// (`if not token_id or token_id == -1`), so word 0 of every text is never labelled. The first character
/// of an entity that lands on an already labelled word is skipped too, and `B-` goes to the first word the
/// entity actually labels.
pub fn word_labels(text: &str, spans: &[(String, usize, usize)]) -> LabelledText {
    let words = tokenize(text);
    let mut char_to_word: Vec<Option<usize>> = vec![None; text.chars().count()];
    for (i, w) in words.iter().enumerate() {
        char_to_word[w.start..w.stop]
            .iter_mut()
            .for_each(|c| *c = Some(i));
    }
    let mut labels = vec!["O".to_string(); words.len()];
    for (kind, start, end) in spans {
        let mut begun = false;
        // spans past the text's end (none in the data) are cut, as Python slicing would
        for &cw in char_to_word.iter().take(*end).skip(*start) {
            let Some(w) = cw else { continue };
            if w == 0 || labels[w] != "O" {
                continue;
            }
            labels[w] = format!("{}-{kind}", if begun { "I" } else { "B" });
            begun = true;
        }
    }
    LabelledText {
        words: words.into_iter().map(|w| w.text).collect(),
        labels,
    }
}

impl NerTask {
    pub fn load(path: &Path) -> Result<Self> {
        let corpus = read_ner_json(path)?;
        let (train_idx, test_idx) = train_test_split(corpus.texts.len(), 0.5, 1);
        let take = |idx: &[usize]| -> Vec<LabelledText> {
            idx.iter()
                .map(|&i| word_labels(&corpus.texts[i], &corpus.labels[i]))
                .collect()
        };
        Ok(Self {
            train: take(&train_idx),
            test: take(&test_idx),
        })
    }

    pub fn len(&self) -> usize {
        self.train.len() + self.test.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn word_lists(&self) -> Vec<Vec<String>> {
        self.train
            .iter()
            .chain(&self.test)
            .map(|t| t.words.clone())
            .collect()
    }

    pub fn evaluate(&self, store: &WordStore) -> Result<Vec<VariantScore>> {
        let (x_train, y_train) = stack(&self.train, store)?;
        let (x_test, y_test) = stack(&self.test, store)?;
        let classes = sorted_classes(&y_train);
        let y_idx: Vec<usize> = y_train
            .iter()
            .map(|l| classes.binary_search(l).expect("own class"))
            .collect();
        let model = SgdClassifier::fit(
            &Rows {
                data: &x_train,
                dim: store.dim,
            },
            &y_idx,
            classes.len(),
            &SgdConfig::default(),
        );
        let predicted: Vec<&str> = model
            .predict(&Rows {
                data: &x_test,
                dim: store.dim,
            })
            .into_iter()
            .map(|c| classes[c].as_str())
            .collect();
        let truth: Vec<&str> = y_test.iter().map(String::as_str).collect();
        let mut labels: Vec<&str> = truth.iter().copied().filter(|&l| l != "O").collect();
        labels.sort();
        labels.dedup();
        let score = if labels.is_empty() {
            f64::NAN
        } else {
            macro_f1(&truth, &predicted, &labels)
        };
        Ok(vec![VariantScore {
            variant: "words".into(),
            classifier: "sgd".into(),
            score,
        }])
    }
}

/// All words of the given texts as rows (f32, as embedded) and their labels.
fn stack(texts: &[LabelledText], store: &WordStore) -> Result<(Vec<f32>, Vec<String>)> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for t in texts {
        x.extend_from_slice(store.get(&t.words)?);
        y.extend(t.labels.iter().cloned());
    }
    Ok((x, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bio_labels_with_the_word_zero_quirk() {
        // "Москва и Санкт-Петербург растут": Москва is word 0 and stays O although it is an entity.
        let text = "Москва и Санкт-Петербург растут";
        let spans = vec![("LOC".to_string(), 0, 6), ("LOC".to_string(), 9, 24)];
        let t = word_labels(text, &spans);
        assert_eq!(t.words, ["Москва", "и", "Санкт-Петербург", "растут"]);
        assert_eq!(t.labels, ["O", "O", "B-LOC", "O"]);
        // a two-word entity gets B- then I-
        let t = word_labels("Я видел Новый Орлеан .", &[("LOC".to_string(), 8, 20)]);
        assert_eq!(t.labels, ["O", "O", "B-LOC", "I-LOC", "O"]);
    }
}
