//! The learned tagger for person names and street addresses: a linear-chain CRF trained by
//! `train/train_crf.py` on generated multi-locale sentences, shipped as `data/ner-v1.crfsuite`
//! and read with the pure-Rust `crfs` crate.
//!
//! Tagging costs far more per byte than the scanner, so the scanner only hands over windows of
//! tokens around candidates (capitalised words that do not just open a sentence, non-ASCII
//! capitals, rule-based names and addresses); text without any is never tagged.

pub(crate) mod features;

use std::sync::OnceLock;

use crfs::{Attribute, Model, Tagger};
use sha2::{Digest, Sha256};

use crate::DetectError;
use crate::PiiKind;
use crate::dict::{self, Dicts};
use features::{Token, features, tokenize};

/// File name of the shipped model (versioned: retraining with other features is a new name).
pub(crate) const MODEL_NAME: &str = "ner-v1.crfsuite";
/// The model, compiled in so nothing is looked up at run time.
static MODEL_BYTES: &[u8] = include_bytes!("../../data/ner-v1.crfsuite");
/// SHA-256 of `MODEL_BYTES`, as printed by `train/train_crf.py`: a model that does not match
/// the feature code it was trained with would tag silently wrong, so it is refused.
const MODEL_SHA256: &str = "5c989e1f579ab53600a2a15ac2779b35c6698055ddfb2089191da2a954767531";

/// Tokens of context kept on each side of a candidate.
const BEFORE: usize = 8;
const AFTER: usize = 16;

/// The loaded tagger.
pub(crate) struct Ner {
    tagger: Tagger<'static>,
}

impl std::fmt::Debug for Ner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ner")
    }
}

fn model_error(reason: String) -> DetectError {
    DetectError::Model {
        name: MODEL_NAME,
        reason,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tagger, checked and parsed once per process.
pub(crate) fn ner() -> Result<&'static Ner, DetectError> {
    static MODEL: OnceLock<Result<Model<'static>, String>> = OnceLock::new();
    static NER: OnceLock<Result<Ner, String>> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let got = sha256_hex(MODEL_BYTES);
        if got != MODEL_SHA256 {
            return Err(format!("sha256 {got}, expected {MODEL_SHA256}"));
        }
        Model::new(MODEL_BYTES).map_err(|e| e.to_string())
    });
    let model = model.as_ref().map_err(|e| model_error(e.clone()))?;
    NER.get_or_init(|| {
        model
            .tagger()
            .map(|tagger| Ner { tagger })
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| model_error(e.clone()))
}

/// One tagged entity with the score it is reported at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tagged {
    pub(crate) kind: PiiKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) score: f32,
}

/// How much to trust a tagged span: the model alone is right most of the time, a dictionary
/// name (or a house number) makes it likelier; a title before one unknown capitalised word is
/// as often a sentence break ("Mrs. Refund issued ...") and stays under the default threshold.
fn score(d: &Dicts, text: &str, kind: PiiKind, span: &[Token]) -> f32 {
    let word = |t: &Token| text.get(t.s..t.e).unwrap_or_default();
    if kind != PiiKind::Person {
        let number = span
            .iter()
            .any(|t| word(t).starts_with(|c: char| c.is_ascii_digit()));
        return if number { 0.8 } else { 0.55 };
    }
    let mut known = false;
    let mut titled = false;
    let mut words = 0;
    for t in span {
        let w = word(t);
        if !w.starts_with(char::is_alphanumeric) {
            continue;
        }
        words += 1;
        let lw = w.to_lowercase();
        let lw = lw.as_bytes();
        known |= d.given_intl.contains(lw) || d.surnames_intl.contains(lw);
        titled |= d.titles.contains(lw);
    }
    match (known, titled, words) {
        (true, _, _) => 0.8,
        (false, true, ..=2) => 0.45,
        _ => 0.6,
    }
}

impl Ner {
    /// Tags the windows of `text` around the byte offsets in `anchors` (sorted or not) and
    /// calls `emit` for every entity found.
    pub(crate) fn tag(&self, text: &str, anchors: &[usize], mut emit: impl FnMut(Tagged)) {
        let mut toks = Vec::new();
        tokenize(text, &mut toks);
        if toks.is_empty() {
            return;
        }
        let mut windows: Vec<(usize, usize)> = anchors
            .iter()
            .map(|&a| {
                let t = toks.partition_point(|t| t.e <= a).min(toks.len() - 1);
                (t.saturating_sub(BEFORE), (t + AFTER + 1).min(toks.len()))
            })
            .collect();
        windows.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
        for (s, e) in windows {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let d = dict::dicts();
        for (s, e) in merged {
            self.tag_window(d, text, &toks[s..e], &mut emit);
        }
    }

    fn tag_window(&self, d: &Dicts, text: &str, toks: &[Token], emit: &mut impl FnMut(Tagged)) {
        let xs: Vec<Vec<Attribute>> = features(d, text, toks)
            .into_iter()
            .map(|f| f.into_iter().map(|n| Attribute::new(n, 1.0)).collect())
            .collect();
        let Ok(tags) = self.tagger.tag(&xs) else {
            return;
        };
        let mut cur: Option<(PiiKind, usize, usize)> = None;
        let mut flush = |cur: &mut Option<(PiiKind, usize, usize)>| {
            if let Some((kind, a, b)) = cur.take() {
                let span = &toks[a..=b];
                emit(Tagged {
                    kind,
                    start: span[0].s,
                    end: span[span.len() - 1].e,
                    score: score(d, text, kind, span),
                });
            }
        };
        for (i, tag) in tags.iter().enumerate() {
            let (begin, kind) = match *tag {
                "B-PER" => (true, Some(PiiKind::Person)),
                "I-PER" => (false, Some(PiiKind::Person)),
                "B-ADDR" => (true, Some(PiiKind::Address)),
                "I-ADDR" => (false, Some(PiiKind::Address)),
                _ => (false, None),
            };
            match (kind, &mut cur) {
                (Some(k), Some((ck, _, end))) if !begin && *ck == k => *end = i,
                (Some(k), _) => {
                    flush(&mut cur);
                    cur = Some((k, i, i));
                }
                (None, _) => flush(&mut cur),
            }
        }
        flush(&mut cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_loads_and_tags() {
        let ner = ner().unwrap();
        let text = "Please send the letter to Maria Rossi, Via Roma 12, 00184 Roma.";
        let mut found = Vec::new();
        ner.tag(text, &[26], |t| found.push((t.kind, &text[t.start..t.end])));
        assert!(
            found.contains(&(PiiKind::Person, "Maria Rossi")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(k, s)| *k == PiiKind::Address && s.starts_with("Via Roma 12")),
            "{found:?}"
        );
    }

    #[test]
    fn hash_is_checked() {
        assert_eq!(sha256_hex(b"abc").len(), 64);
        assert_eq!(sha256_hex(MODEL_BYTES), MODEL_SHA256);
    }
}
