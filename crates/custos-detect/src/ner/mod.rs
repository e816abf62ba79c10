//! The learned tagger for person names and street addresses: a linear-chain CRF trained by
//! `train/train_crf.py` on generated multi-locale sentences, shipped as `data/ner-v1.crfsuite`
//! and read with the pure-Rust `crfs` crate.
//!
//! Tagging costs far more per byte than the scanner, so the scanner only hands over windows of
//! tokens around candidates (capitalised words that do not just open a sentence, non-ASCII
//! capitals, rule-based names and addresses); text without any is never tagged.

pub(crate) mod features;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use crfs::Model;
use sha2::{Digest, Sha256};

use crate::DetectError;
use crate::PiiKind;
use crate::dict::{self, Dicts};
use features::{Props, Sink, Token, props, token_features, tokenize};

/// File name of the shipped model (versioned: retraining with other features is a new name).
pub(crate) const MODEL_NAME: &str = "ner-v1.crfsuite";
/// The model, compiled in so nothing is looked up at run time.
static MODEL_BYTES: &[u8] = include_bytes!("../../data/ner-v1.crfsuite");
/// SHA-256 of `MODEL_BYTES`, as printed by `train/train_crf.py`: a model that does not match
/// the feature code it was trained with would tag silently wrong, so it is refused.
const MODEL_SHA256: &str = "15c8c61a768c3edd7391bf59a53617cd6a87d2c0ee7cd6981260b9bceeb86620";

/// The model's labels, in the order of the weight arrays.
const LABELS: [&str; 5] = ["O", "B-PER", "I-PER", "B-ADDR", "I-ADDR"];
const L: usize = LABELS.len();

/// Tokens of context kept on each side of a candidate.
const BEFORE: usize = 8;
const AFTER: usize = 16;

/// FNV-1a, 64 bits, fed piece by piece: a feature's name is hashed without building it.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The keys are already hashes: use them as they are.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv(self.0 ^ FNV_OFFSET, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The tagger: the model's state weights per feature name (by hash) and its transitions.
///
/// `crfs` reads the CRFsuite file; its weights are then copied into this flat table, so
/// tagging hashes feature names in place instead of allocating a string per feature.
pub(crate) struct Ner {
    state: HashMap<u64, [f32; L], BuildHasherDefault<KeyHasher>>,
    trans: [[f32; L]; L],
}

impl std::fmt::Debug for Ner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ner")
            .field("features", &self.state.len())
            .finish_non_exhaustive()
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

fn label(name: &str) -> Result<usize, String> {
    LABELS
        .iter()
        .position(|l| *l == name)
        .ok_or_else(|| format!("unknown label {name:?}"))
}

/// Builds the weight tables from the model's feature listing (`crfs`' dump: one
/// "(type) source --> target: weight" line per feature; names hold no spaces).
fn compile(model: &Model<'_>) -> Result<Ner, String> {
    let mut dump = Vec::new();
    model.dump(&mut dump).map_err(|e| e.to_string())?;
    let dump = String::from_utf8(dump).map_err(|e| e.to_string())?;
    let mut ner = Ner {
        state: HashMap::default(),
        trans: [[0.0; L]; L],
    };
    let mut section = "";
    for line in dump.lines() {
        if let Some(name) = line.strip_suffix(" = {") {
            section = name;
            continue;
        }
        if !matches!(section, "TRANSITIONS" | "STATE_FEATURES") || !line.starts_with("  (") {
            continue;
        }
        let bad = || format!("unreadable feature line {line:?}");
        let (_, rest) = line.split_once(") ").ok_or_else(bad)?;
        let (lhs, weight) = rest.rsplit_once(": ").ok_or_else(bad)?;
        let (src, dst) = lhs.rsplit_once(" --> ").ok_or_else(bad)?;
        let weight: f32 = weight.parse().map_err(|_| bad())?;
        let dst = label(dst)?;
        if section == "TRANSITIONS" {
            ner.trans[label(src)?][dst] = weight;
        } else {
            ner.state
                .entry(fnv(FNV_OFFSET, src.as_bytes()))
                .or_insert([0.0; L])[dst] = weight;
        }
    }
    if ner.state.is_empty() {
        return Err("no state features".into());
    }
    Ok(ner)
}

/// The tagger, checked and compiled once per process.
pub(crate) fn ner() -> Result<&'static Ner, DetectError> {
    static NER: OnceLock<Result<Ner, String>> = OnceLock::new();
    NER.get_or_init(|| {
        let got = sha256_hex(MODEL_BYTES);
        if got != MODEL_SHA256 {
            return Err(format!("sha256 {got}, expected {MODEL_SHA256}"));
        }
        let model = Model::new(MODEL_BYTES).map_err(|e| e.to_string())?;
        compile(&model)
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

/// Adds up the state weights of one token's features.
struct Scorer<'a> {
    state: &'a HashMap<u64, [f32; L], BuildHasherDefault<KeyHasher>>,
    sum: [f32; L],
}

impl Sink for Scorer<'_> {
    fn feature(&mut self, parts: &[&str]) {
        let h = parts.iter().fold(FNV_OFFSET, |h, p| fnv(h, p.as_bytes()));
        if let Some(w) = self.state.get(&h) {
            for (s, w) in self.sum.iter_mut().zip(w) {
                *s += w;
            }
        }
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
            let window = &toks[s..e];
            let props = props(d, text, window);
            let labels = self.viterbi(&props);
            self.spans(d, text, window, &labels, &mut emit);
        }
    }

    /// The best label sequence (indexes into `LABELS`) for a window.
    fn viterbi(&self, props: &[Props]) -> Vec<usize> {
        let n = props.len();
        let mut back: Vec<[u8; L]> = Vec::with_capacity(n);
        let mut cur = [0.0f32; L];
        for t in 0..n {
            let mut sc = Scorer {
                state: &self.state,
                sum: [0.0; L],
            };
            token_features(props, t, &mut sc);
            if t == 0 {
                cur = sc.sum;
                back.push([0; L]);
                continue;
            }
            let mut next = [f32::NEG_INFINITY; L];
            let mut bp = [0u8; L];
            for (j, (nx, b)) in next.iter_mut().zip(bp.iter_mut()).enumerate() {
                for (i, c) in cur.iter().enumerate() {
                    let v = c + self.trans[i][j];
                    if v > *nx {
                        *nx = v;
                        *b = i as u8;
                    }
                }
                *nx += sc.sum[j];
            }
            back.push(bp);
            cur = next;
        }
        let mut best = 0;
        for (j, v) in cur.iter().enumerate() {
            if *v > cur[best] {
                best = j;
            }
        }
        let mut out = vec![0; n];
        for t in (0..n).rev() {
            out[t] = best;
            best = usize::from(back[t][best]);
        }
        out
    }

    /// Turns BIO labels into entities.
    fn spans(
        &self,
        d: &Dicts,
        text: &str,
        toks: &[Token],
        labels: &[usize],
        emit: &mut impl FnMut(Tagged),
    ) {
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
        for (i, &l) in labels.iter().enumerate() {
            let (begin, kind) = match l {
                1 => (true, Some(PiiKind::Person)),
                2 => (false, Some(PiiKind::Person)),
                3 => (true, Some(PiiKind::Address)),
                4 => (false, Some(PiiKind::Address)),
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

    /// The flat table tags exactly like `crfs`' own tagger on the fixture sentences.
    #[test]
    fn same_labels_as_crfs() {
        let model = Model::new(MODEL_BYTES).unwrap();
        let tagger = model.tagger().unwrap();
        let ner = ner().unwrap();
        let d = dict::dicts();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ner_features.jsonl"
        );
        let src = std::fs::read_to_string(path).unwrap();
        let mut tagged = 0;
        for line in src.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap();
            let mut toks = Vec::new();
            tokenize(text, &mut toks);
            if toks.is_empty() {
                continue;
            }
            let xs: Vec<Vec<crfs::Attribute>> = features::features(d, text, &toks)
                .into_iter()
                .map(|f| {
                    f.into_iter()
                        .map(|n| crfs::Attribute::new(n, 1.0))
                        .collect()
                })
                .collect();
            let want = tagger.tag(&xs).unwrap();
            let got: Vec<&str> = ner
                .viterbi(&props(d, text, &toks))
                .into_iter()
                .map(|l| LABELS[l])
                .collect();
            assert_eq!(got, want, "{text:?}");
            tagged += 1;
        }
        assert!(tagged >= 50);
    }

    #[test]
    fn hash_is_checked() {
        assert_eq!(sha256_hex(b"abc").len(), 64);
        assert_eq!(sha256_hex(MODEL_BYTES), MODEL_SHA256);
    }
}
