//! Vocabulary trimming: keep the tokens a corpus needs, drop the other word-embedding rows.
//!
//! The corpus (`--vocab-from`, one text per line) is tokenised by the model's own tokenizer without special
//! tokens. Kept are: every special and added token, the "alphabet" (each single character the corpus's
//! tokens contain, as a word-initial piece and as a `##` continuation, where the vocabulary has them), and
//! the corpus tokens themselves, most frequent first (ties by original id), down to `--min-count` and up to
//! `--vocab-size` in all. Kept tokens stay in their original relative order (new id = rank among the kept
//! original ids), so `[PAD]` = 0 and the other leading specials keep their ids.
//!
//! Why texts made of kept tokens embed exactly as before: WordPiece takes the longest vocabulary piece at
//! each position, and the trimmed vocabulary is a subset that still holds every piece such a text used, so
//! no longer piece can appear and the same pieces are chosen; their embedding rows are copied unchanged.
//! Other words degrade only where a dropped piece was needed: the rebuilt WordPiece re-spells them with the
//! kept pieces (greedy longest match; the alphabet guarantees a spelling exists), and a word with a character
//! outside the kept alphabet becomes `[UNK]`, as in the original tokenizer for an unknown character.
//!
//! Only WordPiece tokenizers (BERT's) are supported. `cls.*` pre-training heads, whose decoder is tied to the
//! word embeddings, are never copied by surgery (see [`crate::checkpoint`]), so there is nothing to re-slice.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use sekator_model::{write_atomic, BertConfig, TextTokenizer};

pub use sekator_pipeline::artifacts::size::VocabReport;

use crate::checkpoint::{select_rows, Checkpoint};
use crate::error::SurgeryError;

const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";
const TOKENIZER_JSON: &str = "tokenizer.json";
const VOCAB_TXT: &str = "vocab.txt";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// The older transformers file of added tokens (token -> id).
const ADDED_TOKENS: &str = "added_tokens.json";
/// Special tokens a BERT vocabulary keeps even when no tokenizer file names them.
const BERT_SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
/// Lines tokenised per batch (bounds memory on large corpora).
const CHUNK: usize = 4096;

/// What to keep (the `--vocab-from`, `--vocab-size` and `--min-count` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct VocabOptions {
    pub from: Vec<PathBuf>,
    /// Tokens in all, special tokens and the alphabet included; `None`: every corpus token (>= `min_count`).
    pub size: Option<usize>,
    /// Corpus tokens seen fewer times are dropped (the alphabet and special tokens stay).
    pub min_count: u64,
}

/// The chosen vocabulary: original ids kept, ascending (the new id of `kept[i]` is `i`).
#[derive(Debug, Clone, PartialEq)]
pub struct Trim {
    pub kept: Vec<u32>,
    pub report: VocabReport,
}

impl Trim {
    /// Original id -> new id, for the kept ids.
    pub fn new_ids(&self) -> HashMap<u32, u32> {
        self.kept
            .iter()
            .enumerate()
            .map(|(new, &old)| (old, new as u32))
            .collect()
    }
}

/// Token occurrences per original id over the corpus files.
struct Counts {
    per_id: Vec<u64>,
    texts: usize,
}

/// Tokenises the corpus with `model`'s tokenizer and chooses the kept ids (see the module docs).
pub fn choose(model: &Path, cfg: &BertConfig, opts: &VocabOptions) -> Result<Trim, SurgeryError> {
    let rows = cfg.vocab_size;
    let tok = TextTokenizer::from_dir(model)?;
    let json = read_json(&model.join(TOKENIZER_JSON))?;
    if let Some(kind) = json.as_ref().and_then(|j| j["model"]["type"].as_str()) {
        if kind != "WordPiece" {
            return Err(SurgeryError::Other(format!(
                "{}: vocabulary trimming supports WordPiece (BERT) tokenizers, this one is {kind}",
                model.join(TOKENIZER_JSON).display()
            )));
        }
    }
    let prefix = json
        .as_ref()
        .and_then(|j| j["model"]["continuing_subword_prefix"].as_str())
        .unwrap_or("##")
        .to_string();
    let vocab = tok.inner().get_vocab(true);
    if let Some((t, id)) = vocab.iter().find(|(_, id)| **id as usize >= rows) {
        return Err(SurgeryError::Other(format!(
            "{}: token `{t}` has id {id}, but the model has only {rows} word-embedding rows",
            tok.path().display()
        )));
    }
    let counts = count(&tok, &opts.from, rows)?;
    let mut specials = special_ids(model, &tok, json.as_ref())?;
    if cfg.pad_token_id < rows {
        specials.insert(cfg.pad_token_id as u32);
    }
    let files = opts
        .from
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let corpus: u64 = counts.per_id.iter().sum();
    let non_special: u64 = (0..rows as u32)
        .filter(|i| !specials.contains(i))
        .map(|i| counts.per_id[i as usize])
        .sum();
    if non_special == 0 {
        return Err(SurgeryError::Other(format!(
            "--vocab-from {files}: covers nothing ({} non-empty lines, {corpus} tokens, none but special \
             tokens); give the texts the model will embed, one per line",
            counts.texts
        )));
    }
    let alphabet = alphabet_ids(&vocab, &counts.per_id, &specials, &prefix);
    let must = specials.len() + alphabet.len();
    if let Some(n) = opts.size {
        if n < must {
            return Err(SurgeryError::Other(format!(
                "--vocab-size {n} is below the {} special tokens plus the {} single-character pieces that \
                 spell the corpus's words ({must} in all); pass --vocab-size {must} or more",
                specials.len(),
                alphabet.len()
            )));
        }
    }
    let kept = select(&counts.per_id, &specials, &alphabet, opts);
    let covered: u64 = kept.iter().map(|&i| counts.per_id[i as usize]).sum();
    let report = VocabReport {
        before: rows,
        after: kept.len(),
        special: specials.len(),
        alphabet: alphabet.len(),
        files: opts.from.iter().map(|p| p.display().to_string()).collect(),
        texts: counts.texts,
        corpus_tokens: corpus,
        distinct: counts.per_id.iter().filter(|&&c| c > 0).count(),
        covered_tokens: covered,
        coverage: covered as f64 / corpus.max(1) as f64,
    };
    Ok(Trim { kept, report })
}

/// Counts the tokens of every non-empty line of `files` (no special tokens added, no truncation).
fn count(tok: &TextTokenizer, files: &[PathBuf], rows: usize) -> Result<Counts, SurgeryError> {
    let mut per_id = vec![0u64; rows];
    let mut texts = 0;
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| SurgeryError::io(f, e))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for chunk in lines.chunks(CHUNK) {
            let enc = tok
                .inner()
                .encode_batch(chunk.to_vec(), false)
                .map_err(|e| SurgeryError::Other(format!("{}: tokenising: {e}", f.display())))?;
            for id in enc.iter().flat_map(|e| e.get_ids()) {
                per_id[*id as usize] += 1;
            }
        }
        texts += lines.len();
    }
    Ok(Counts { per_id, texts })
}

/// Ids of the tokens every vocabulary keeps: added tokens (`tokenizer.json`, `added_tokens.json`), the
/// special tokens named by `special_tokens_map.json` and `tokenizer_config.json`, BERT's five, and the ids
/// `tokenizer.json`'s post-processor and padding refer to.
fn special_ids(
    model: &Path,
    tok: &TextTokenizer,
    json: Option<&Value>,
) -> Result<BTreeSet<u32>, SurgeryError> {
    let mut ids: BTreeSet<u32> = tok
        .inner()
        .get_added_tokens_decoder()
        .keys()
        .copied()
        .collect();
    let mut names: Vec<String> = BERT_SPECIALS.iter().map(|s| s.to_string()).collect();
    for file in ["special_tokens_map.json", TOKENIZER_CONFIG] {
        if let Some(v) = read_json(&model.join(file))? {
            names.extend(named_specials(&v));
        }
    }
    if let Some(Value::Object(a)) = read_json(&model.join(ADDED_TOKENS))? {
        names.extend(a.keys().cloned());
    }
    ids.extend(names.iter().filter_map(|n| tok.token_to_id(n)));
    if let Some(j) = json {
        let mut j = j.clone();
        remap_special_ids(&mut j, &mut |id| {
            ids.insert(id);
            Some(id)
        })
        .map_err(SurgeryError::Other)?;
    }
    Ok(ids)
}

/// Token strings under `*_token` keys and `additional_special_tokens` (plain or `{"content": ...}`).
fn named_specials(v: &Value) -> Vec<String> {
    let text = |v: &Value| {
        v.as_str()
            .or_else(|| v["content"].as_str())
            .map(str::to_string)
    };
    let Some(map) = v.as_object() else {
        return vec![];
    };
    let mut out = vec![];
    for (k, v) in map {
        if k.ends_with("_token") {
            out.extend(text(v));
        } else if k == "additional_special_tokens" {
            out.extend(v.as_array().into_iter().flatten().filter_map(text));
        }
    }
    out
}

/// Single-character pieces (`c` and `##c`) for every character of the corpus's non-special tokens: with
/// them, greedy longest match can spell any word of those characters whatever longer pieces were dropped.
fn alphabet_ids(
    vocab: &HashMap<String, u32>,
    counts: &[u64],
    specials: &BTreeSet<u32>,
    prefix: &str,
) -> BTreeSet<u32> {
    let mut chars = BTreeSet::new();
    for (t, &id) in vocab {
        if counts[id as usize] > 0 && !specials.contains(&id) {
            chars.extend(t.strip_prefix(prefix).unwrap_or(t).chars());
        }
    }
    chars
        .iter()
        .flat_map(|c| [c.to_string(), format!("{prefix}{c}")])
        .filter_map(|p| vocab.get(&p).copied())
        .filter(|id| !specials.contains(id))
        .collect()
}

/// Specials, the alphabet, then corpus tokens seen at least `min_count` times, most frequent first (ties by
/// id), up to `size` in all; ascending ids. The caller checked that `size` fits specials and alphabet.
fn select(
    counts: &[u64],
    specials: &BTreeSet<u32>,
    alphabet: &BTreeSet<u32>,
    opts: &VocabOptions,
) -> Vec<u32> {
    let mut kept: BTreeSet<u32> = specials.union(alphabet).copied().collect();
    let mut rest: Vec<u32> = (0..counts.len() as u32)
        .filter(|i| !kept.contains(i) && counts[*i as usize] >= opts.min_count.max(1))
        .collect();
    rest.sort_by_key(|&i| (std::cmp::Reverse(counts[i as usize]), i));
    let room = opts.size.map_or(rest.len(), |n| n - kept.len());
    kept.extend(rest.into_iter().take(room));
    kept.into_iter().collect()
}

/// Keeps the word-embedding rows of `trim.kept` and updates `vocab_size`, `pad_token_id` (and any other
/// `*_token_id` of config.json) to the new ids.
pub fn apply(ck: &mut Checkpoint, trim: &Trim) -> Result<(), SurgeryError> {
    let rows = ck.config.vocab_size;
    let t = ck.get_mut(WORD_EMBEDDINGS)?;
    if t.shape[0] != rows {
        return Err(SurgeryError::Tensor {
            name: WORD_EMBEDDINGS.into(),
            msg: format!(
                "has {} rows, config.json says vocab_size {rows}",
                t.shape[0]
            ),
        });
    }
    let keep: Vec<usize> = trim.kept.iter().map(|&i| i as usize).collect();
    select_rows(t, &keep);
    let map = trim.new_ids();
    let new = |old: usize| map.get(&(old as u32)).map(|&n| n as usize);
    ck.config.vocab_size = keep.len();
    ck.config.pad_token_id = new(ck.config.pad_token_id).ok_or_else(|| {
        SurgeryError::Other(format!(
            "pad_token_id {} is not among the kept tokens",
            ck.config.pad_token_id
        ))
    })?;
    for (k, v) in ck.config.extra.iter_mut() {
        if let (true, Some(old)) = (k.ends_with("_token_id"), v.as_u64()) {
            if let Some(n) = new(old as usize) {
                *v = n.into();
            }
        }
    }
    Ok(())
}

/// Rewrites the tokenizer files that `out` copied from `src` for the trimmed ids: `tokenizer.json` (WordPiece
/// vocabulary, added tokens, post-processor and padding ids), `vocab.txt` (tokens in new-id order) and the
/// `added_tokens_decoder` of `tokenizer_config.json` and `added_tokens.json`, each only where `src` has it.
pub fn write_tokenizer(src: &Path, out: &Path, trim: &Trim) -> Result<(), SurgeryError> {
    let map = trim.new_ids();
    let path = src.join(TOKENIZER_JSON);
    if let Some(mut j) = read_json(&path)? {
        rebuild_tokenizer_json(&mut j, &map)
            .map_err(|m| SurgeryError::Other(format!("{}: {m}", path.display())))?;
        write_json(&out.join(TOKENIZER_JSON), &j)?;
    }
    let vpath = src.join(VOCAB_TXT);
    if vpath.exists() {
        let text = std::fs::read_to_string(&vpath).map_err(|e| SurgeryError::io(&vpath, e))?;
        let lines: Vec<&str> = text.lines().collect();
        let kept: Vec<&str> = trim
            .kept
            .iter()
            .filter_map(|&i| lines.get(i as usize).copied())
            .collect();
        write_atomic(&out.join(VOCAB_TXT), (kept.join("\n") + "\n").as_bytes())?;
    }
    let cpath = src.join(TOKENIZER_CONFIG);
    if let Some(mut c) = read_json(&cpath)? {
        if let Some(dec) = c
            .get_mut("added_tokens_decoder")
            .and_then(Value::as_object_mut)
        {
            let old = std::mem::take(dec);
            for (k, v) in old {
                let id = k.parse::<u32>().ok().and_then(|i| map.get(&i));
                let id = id.ok_or_else(|| {
                    SurgeryError::Other(format!(
                        "{}: added token id {k} was not kept",
                        cpath.display()
                    ))
                })?;
                dec.insert(id.to_string(), v);
            }
            write_json(&out.join(TOKENIZER_CONFIG), &c)?;
        }
    }
    let apath = src.join(ADDED_TOKENS);
    if let Some(mut a) = read_json(&apath)? {
        for (t, id) in a.as_object_mut().into_iter().flatten() {
            let n = id
                .as_u64()
                .and_then(|i| map.get(&(i as u32)))
                .ok_or_else(|| {
                    SurgeryError::Other(format!("{}: token `{t}` was not kept", apath.display()))
                })?;
            *id = (*n).into();
        }
        write_json(&out.join(ADDED_TOKENS), &a)?;
    }
    Ok(())
}

/// The WordPiece vocabulary and every id `tokenizer.json` holds, mapped to the new ids.
fn rebuild_tokenizer_json(j: &mut Value, map: &HashMap<u32, u32>) -> Result<(), String> {
    let vocab = j
        .get_mut("model")
        .and_then(|m| m.get_mut("vocab"))
        .and_then(Value::as_object_mut)
        .ok_or("model.vocab is not a map of tokens to ids")?;
    let old = std::mem::take(vocab);
    for (t, id) in old {
        let id = id
            .as_u64()
            .ok_or(format!("token `{t}` has no integer id"))? as u32;
        if let Some(&n) = map.get(&id) {
            vocab.insert(t, n.into());
        }
    }
    let added = j.get_mut("added_tokens").and_then(Value::as_array_mut);
    for a in added.into_iter().flatten() {
        let id = a.get_mut("id").ok_or("an added token has no id")?;
        let old = id.as_u64().ok_or("an added token has no integer id")? as u32;
        let n = map
            .get(&old)
            .ok_or(format!("added token id {old} was not kept"))?;
        *id = (*n).into();
    }
    remap_special_ids(j, &mut |id| map.get(&id).copied())
}

/// Applies `f` to the ids of the post-processor (TemplateProcessing `special_tokens.*.ids`, BertProcessing
/// and RobertaProcessing `cls`/`sep`, nested in `Sequence`) and to `padding.pad_id`; `None` from `f` is an
/// error naming the id.
fn remap_special_ids(j: &mut Value, f: &mut dyn FnMut(u32) -> Option<u32>) -> Result<(), String> {
    let mut one = |v: &mut Value, what: &str| -> Result<(), String> {
        let Some(id) = v.as_u64() else {
            return Ok(());
        };
        let n = f(id as u32).ok_or(format!("{what} id {id} was not kept"))?;
        *v = n.into();
        Ok(())
    };
    if let Some(id) = j.get_mut("padding").and_then(|p| p.get_mut("pad_id")) {
        one(id, "padding.pad_id")?;
    }
    let mut stack: Vec<&mut Value> = j.get_mut("post_processor").into_iter().collect();
    while let Some(p) = stack.pop() {
        let Some(obj) = p.as_object_mut() else {
            continue;
        };
        for key in ["cls", "sep"] {
            if let Some(pair) = obj.get_mut(key).and_then(Value::as_array_mut) {
                if let Some(id) = pair.get_mut(1) {
                    one(id, &format!("post_processor.{key}"))?;
                }
            }
        }
        if let Some(st) = obj.get_mut("special_tokens").and_then(Value::as_object_mut) {
            for (name, t) in st.iter_mut() {
                let ids = t.get_mut("ids").and_then(Value::as_array_mut);
                for id in ids.into_iter().flatten() {
                    one(id, &format!("post_processor special token `{name}`"))?;
                }
            }
        }
        if let Some(ps) = obj.get_mut("processors").and_then(Value::as_array_mut) {
            stack.extend(ps.iter_mut());
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Option<Value>, SurgeryError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| SurgeryError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| SurgeryError::Other(format!("{}: {e}", path.display())))
}

fn write_json(path: &Path, v: &Value) -> Result<(), SurgeryError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| SurgeryError::Other(e.to_string()))?;
    write_atomic(path, (text + "\n").as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(size: Option<usize>, min_count: u64) -> VocabOptions {
        VocabOptions {
            from: vec![],
            size,
            min_count,
        }
    }

    #[test]
    fn selection_keeps_specials_alphabet_then_frequent_tokens_in_original_order() {
        // ids 0..8: 0 and 3 special, 5 alphabet; corpus counts per id
        let counts = [0, 4, 9, 0, 4, 1, 7, 2];
        let specials = BTreeSet::from([0, 3]);
        let alphabet = BTreeSet::from([5]);
        let all = select(&counts, &specials, &alphabet, &opts(None, 1));
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        // 5 in all: specials + alphabet + the two most frequent (9 at id 2, 7 at id 6)
        assert_eq!(
            select(&counts, &specials, &alphabet, &opts(Some(5), 1)),
            vec![0, 2, 3, 5, 6]
        );
        // a tie (4 at ids 1 and 4) goes to the lower original id
        assert_eq!(
            select(&counts, &specials, &alphabet, &opts(Some(6), 1)),
            vec![0, 1, 2, 3, 5, 6]
        );
        // min count 4 drops ids 5 (alphabet, stays) and 7
        assert_eq!(
            select(&counts, &specials, &alphabet, &opts(None, 4)),
            vec![0, 1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn alphabet_has_both_forms_of_each_corpus_character() {
        let vocab: HashMap<String, u32> =
            ["[UNK]", "ab", "a", "##a", "b", "##b", "c", "##c", "##d"]
                .iter()
                .enumerate()
                .map(|(i, t)| (t.to_string(), i as u32))
                .collect();
        // the corpus produced "ab" and "##d"; [UNK] is special and contributes no characters
        let mut counts = vec![0u64; vocab.len()];
        counts[0] = 3;
        counts[1] = 2;
        counts[8] = 1;
        let a = alphabet_ids(&vocab, &counts, &BTreeSet::from([0]), "##");
        // a, ##a, b, ##b and ##d (no word-initial "d" in this vocabulary); nothing of "c"
        assert_eq!(a, BTreeSet::from([2, 3, 4, 5, 8]));
    }

    #[test]
    fn post_processor_padding_and_added_ids_are_remapped() {
        let mut j = serde_json::json!({
            "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "x": 1, "[CLS]": 5, "[SEP]": 7}},
            "added_tokens": [{"id": 0, "content": "[PAD]"}, {"id": 5, "content": "[CLS]"}],
            "padding": {"pad_id": 0},
            "post_processor": {"type": "Sequence", "processors": [
                {"type": "TemplateProcessing", "special_tokens": {"[CLS]": {"ids": [5]}}},
                {"type": "BertProcessing", "sep": ["[SEP]", 7], "cls": ["[CLS]", 5]}
            ]}
        });
        let map = HashMap::from([(0, 0), (5, 1), (7, 2)]);
        rebuild_tokenizer_json(&mut j, &map).unwrap();
        assert_eq!(
            j["model"]["vocab"],
            serde_json::json!({"[PAD]": 0, "[CLS]": 1, "[SEP]": 2})
        );
        assert_eq!(j["added_tokens"][1]["id"], 1);
        let ps = &j["post_processor"]["processors"];
        assert_eq!(ps[0]["special_tokens"]["[CLS]"]["ids"][0], 1);
        assert_eq!(ps[1]["sep"][1], 2);
        assert_eq!(ps[1]["cls"][1], 1);
        // an id the map lacks is an error naming it
        let mut j2 = serde_json::json!({"model": {"vocab": {}}, "padding": {"pad_id": 9}});
        let e = rebuild_tokenizer_json(&mut j2, &map).unwrap_err();
        assert!(e.contains("padding.pad_id id 9"), "{e}");
    }
}
