//! Word splitting as `razdel.tokenize` (natasha/razdel 0.5) does it, for the NER tasks.
//!
//! The NER features are one vector per word and the BIO labels come from character spans over those
//! words, so a different split gives different rows. razdel cuts text into atoms (runs of Cyrillic letters,
//! runs of Latin letters, runs of decimal digits, single punctuation marks, single other characters) and
//! glues neighbouring atoms with no space between them when a rule says so: hyphenated and underscored
//! words, decimals and fractions, runs of sentence-ending punctuation, `--`/`**`, emoticons, "other"
//! symbols stuck to letters, and `Yahoo!`. Character classes follow Python's `re` with `IGNORECASE`:
//! offsets are in Unicode code points, like the spans in the data.

use unicode_general_category::{get_general_category, GeneralCategory};

/// A word with its code-point span `[start, stop)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub start: usize,
    pub stop: usize,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ru,
    Lat,
    Int,
    Punct,
    Other,
}

struct Atom {
    start: usize,
    stop: usize,
    kind: Kind,
    text: String,
}

const DASHES: &str = "‑–—−-";
const ENDINGS: &str = ".?!…";
/// razdel's punctuation set. Its bracket list is `([}` + `)]}`: `{` is not in it (an upstream quirk), so
/// `{` is an "other" character.
const PUNCTS: &str = "\\/!#$%&*+,.:;<=>?@^_`|~№…‑–—−-«“‘»”’\"„'([})]}";

/// `[а-яё]` under `re.IGNORECASE` (which also admits the Cyrillic small-letter variants U+1C80..U+1C86).
fn is_ru(c: char) -> bool {
    matches!(c, 'а'..='я' | 'А'..='Я' | 'ё' | 'Ё' | '\u{1C80}'..='\u{1C86}')
}

/// `[a-z]` under `re.IGNORECASE`: ASCII letters plus İ, ı, ſ and the Kelvin sign, which case-fold into it.
fn is_lat(c: char) -> bool {
    c.is_ascii_alphabetic() || matches!(c, '\u{130}' | '\u{131}' | '\u{17F}' | '\u{212A}')
}

/// Python's `\d`: Unicode decimal digits (category Nd).
fn is_digit(c: char) -> bool {
    get_general_category(c) == GeneralCategory::DecimalNumber
}

/// Python's `\s` (str.isspace): Rust's White_Space plus the ASCII separators U+001C..U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

fn atoms(chars: &[char]) -> Vec<Atom> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        let run = |pred: fn(char) -> bool| {
            let mut j = i;
            while j < chars.len() && pred(chars[j]) {
                j += 1;
            }
            j
        };
        let (kind, stop) = if is_ru(c) {
            (Kind::Ru, run(is_ru))
        } else if is_lat(c) {
            (Kind::Lat, run(is_lat))
        } else if is_digit(c) {
            (Kind::Int, run(is_digit))
        } else if PUNCTS.contains(c) {
            (Kind::Punct, i + 1)
        } else {
            (Kind::Other, i + 1)
        };
        out.push(Atom {
            start: i,
            stop,
            kind,
            text: chars[i..stop].iter().collect(),
        });
        i = stop;
    }
    out
}

/// The context a join decision sees: up to three atoms left of the gap, up to three right of it, and the
/// token built so far.
struct Gap<'a> {
    left: &'a [Atom],
    right: &'a [Atom],
    buffer: &'a str,
}

impl Gap<'_> {
    fn left1(&self) -> &Atom {
        &self.left[self.left.len() - 1]
    }
    fn left2(&self) -> Option<&Atom> {
        self.left.len().checked_sub(2).map(|i| &self.left[i])
    }
    fn right1(&self) -> &Atom {
        &self.right[0]
    }
    fn right2(&self) -> Option<&Atom> {
        self.right.get(1)
    }
}

fn single(text: &str) -> Option<char> {
    let mut it = text.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// razdel's "2112" rules: when the gap touches a delimiter atom, look at the atoms on both sides of it.
fn around_delimiter<'g>(
    gap: &'g Gap,
    is_delim: impl Fn(char) -> bool,
) -> Option<(&'g Atom, &'g Atom)> {
    let delim = |a: &Atom| single(&a.text).is_some_and(&is_delim);
    let (l, r) = if delim(gap.left1()) {
        (gap.left2(), Some(gap.right1()))
    } else if delim(gap.right1()) {
        (Some(gap.left1()), gap.right2())
    } else {
        return None;
    };
    Some((l?, r?))
}

fn both_non_punct(l: &Atom, r: &Atom) -> bool {
    l.kind != Kind::Punct && r.kind != Kind::Punct
}

fn both_int(l: &Atom, r: &Atom) -> bool {
    l.kind == Kind::Int && r.kind == Kind::Int
}

/// `^[=:;]-?[)(]{1,3}$`
fn is_smile(s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    if c.is_empty() || !"=:;".contains(c[0]) {
        return false;
    }
    let rest = if c.get(1) == Some(&'-') {
        &c[2..]
    } else {
        &c[1..]
    };
    (1..=3).contains(&rest.len()) && rest.iter().all(|&ch| ch == ')' || ch == '(')
}

fn join(gap: &Gap) -> bool {
    // dash, underscore, float, fraction
    if around_delimiter(gap, |c| DASHES.contains(c)).is_some_and(|(l, r)| both_non_punct(l, r)) {
        return true;
    }
    if around_delimiter(gap, |c| c == '_').is_some_and(|(l, r)| both_non_punct(l, r)) {
        return true;
    }
    if around_delimiter(gap, |c| c == '.' || c == ',').is_some_and(|(l, r)| both_int(l, r)) {
        return true;
    }
    if around_delimiter(gap, |c| c == '/' || c == '\\').is_some_and(|(l, r)| both_int(l, r)) {
        return true;
    }
    let (l, r) = (gap.left1(), gap.right1());
    // punct
    if l.kind == Kind::Punct && r.kind == Kind::Punct {
        if is_smile(&format!("{}{}", gap.buffer, r.text)) {
            return true;
        }
        let ending = |a: &Atom| single(&a.text).is_some_and(|c| ENDINGS.contains(c));
        if ending(l) && ending(r) {
            return true;
        }
        let pair = format!("{}{}", l.text, r.text);
        if pair == "--" || pair == "**" {
            return true;
        }
    }
    // other
    let letters_or_other = |k: Kind| matches!(k, Kind::Other | Kind::Ru | Kind::Lat);
    if (l.kind == Kind::Other && letters_or_other(r.kind))
        || (letters_or_other(l.kind) && r.kind == Kind::Other)
    {
        return true;
    }
    // yahoo
    l.text.to_lowercase() == "yahoo" && r.text == "!"
}

/// Splits `text` into words the way `razdel.tokenize` does.
pub fn tokenize(text: &str) -> Vec<Word> {
    let chars: Vec<char> = text.chars().collect();
    let atoms = atoms(&chars);
    let mut words = Vec::new();
    let Some(first) = atoms.first() else {
        return words;
    };
    let mut buffer = first.text.clone();
    let mut start = first.start;
    for idx in 1..atoms.len() {
        let (prev, atom) = (&atoms[idx - 1], &atoms[idx]);
        let touching = prev.stop == atom.start;
        let gap = Gap {
            left: &atoms[idx.saturating_sub(3)..idx],
            right: &atoms[idx..(idx + 3).min(atoms.len())],
            buffer: &buffer,
        };
        if touching && join(&gap) {
            buffer.push_str(&atom.text);
        } else {
            words.push(Word {
                start,
                stop: prev.stop,
                text: std::mem::take(&mut buffer),
            });
            buffer = atom.text.clone();
            start = atom.start;
        }
    }
    words.push(Word {
        start,
        stop: atoms[atoms.len() - 1].stop,
        text: buffer,
    });
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn splits_words_numbers_and_punctuation() {
        assert_eq!(
            texts("Кружка-термос на 0.5л (50/64 см³, 516;...)"),
            [
                "Кружка-термос",
                "на",
                "0.5",
                "л",
                "(",
                "50/64",
                "см³",
                ",",
                "516",
                ";",
                "...",
                ")"
            ]
        );
    }

    #[test]
    fn spans_are_code_points() {
        let w = tokenize("Ёж  ест.");
        assert_eq!(
            w[0],
            Word {
                start: 0,
                stop: 2,
                text: "Ёж".into()
            }
        );
        assert_eq!(
            w[1],
            Word {
                start: 4,
                stop: 7,
                text: "ест".into()
            }
        );
        assert_eq!(
            w[2],
            Word {
                start: 7,
                stop: 8,
                text: ".".into()
            }
        );
    }

    #[test]
    fn quirks() {
        // a dash glued to the next word joins even after a space before it
        assert_eq!(texts("a -b"), ["a", "-b"]);
        // emoticons grow only while the prefix is itself a smile: ":-" is not, so ":-)" falls apart
        assert_eq!(texts("ну :)) :-) ?!"), ["ну", ":))", ":", "-", ")", "?!"]);
        assert_eq!(texts("Yahoo!"), ["Yahoo!"]);
        // `{` is not in razdel's punctuation, so it sticks to letters; `}` is punctuation
        assert_eq!(texts("{x} y"), ["{x", "}", "y"]);
        // the float rule looks past the space after the comma
        assert_eq!(texts("3,14 и 3, 14"), ["3,14", "и", "3,", "14"]);
        assert!(tokenize("   ").is_empty());
    }
}
