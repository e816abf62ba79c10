//! The detector: built once from a config, then shared (it is `Send + Sync`) and run on texts.

use regex::Regex;
use serde::Serialize;

use crate::checksum::{luhn, mod97};
use crate::context::ContextIndex;
use crate::kind::KindSet;
use crate::ner::{self, Ner};
use crate::scan::{Mode, Scan};
use crate::{Checksum, DetectError, DetectorConfig, PiiKind};

/// One piece of personal data found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Finding {
    /// What was found.
    pub kind: PiiKind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset after the last byte (exclusive).
    pub end: usize,
    /// Confidence in 0.0..=1.0.
    pub score: f32,
}

impl Finding {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty (never true for reported findings).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A compiled custom detector.
#[derive(Debug)]
struct Custom {
    name: String,
    /// The pattern anchored at both ends, to tell which detector produced a combined match.
    whole: Regex,
    checksum: Option<Checksum>,
    score: f32,
    has_context: bool,
}

/// All custom detectors, searched together in one pass.
#[derive(Debug)]
struct CustomSet {
    /// Every pattern as one alternation.
    combined: Regex,
    each: Vec<Custom>,
}

/// State shared with the scanner.
#[derive(Debug)]
pub(crate) struct Inner {
    /// Built-in kinds that run.
    pub(crate) enabled: KindSet,
    /// Reporting threshold.
    pub(crate) min_score: f32,
    /// Context words of built-in and custom detectors.
    pub(crate) context: ContextIndex,
    /// The name/address tagger, when PERSON or ADDRESS is enabled.
    pub(crate) ner: Option<&'static Ner>,
    custom: Option<CustomSet>,
}

/// Finds personal data in texts and classifies single values.
///
/// Build once with [`Detector::new`] and share it (`Arc<Detector>`) between threads; every
/// method takes `&self`.
#[derive(Debug)]
pub struct Detector {
    inner: Inner,
}

/// Names a custom detector may not take.
const RESERVED: &[&str] = &["custom"];

impl Detector {
    /// Compiles a detector; fails on a bad threshold or a bad custom detector.
    pub fn new(config: DetectorConfig) -> Result<Self, DetectError> {
        if !(0.0..=1.0).contains(&config.min_score) {
            return Err(DetectError::InvalidScore {
                field: "min_score".into(),
            });
        }
        if config.custom.len() > usize::from(u16::MAX) {
            return Err(DetectError::TooManyCustom {
                count: config.custom.len(),
                max: usize::from(u16::MAX),
            });
        }
        let mut each = Vec::with_capacity(config.custom.len());
        let mut alternation = String::new();
        let mut words: Vec<(u16, &[String])> = Vec::new();
        for (i, c) in config.custom.iter().enumerate() {
            check_name(&c.name, &config.custom[..i])?;
            if !(0.0..=1.0).contains(&c.score) {
                return Err(DetectError::InvalidScore {
                    field: format!("custom.{}.score", c.name),
                });
            }
            if c.context.iter().any(|w| w.trim().is_empty()) {
                return Err(DetectError::EmptyContextWord {
                    name: c.name.clone(),
                });
            }
            let bad = |e: regex::Error| DetectError::InvalidPattern {
                name: c.name.clone(),
                source: Box::new(e),
            };
            Regex::new(&c.pattern).map_err(bad)?;
            let whole = Regex::new(&format!("^(?:{})$", c.pattern)).map_err(bad)?;
            if !alternation.is_empty() {
                alternation.push('|');
            }
            alternation.push_str("(?:");
            alternation.push_str(&c.pattern);
            alternation.push(')');
            // The index fits: the list length was checked above.
            let idx = u16::try_from(i).unwrap_or(u16::MAX);
            words.push((idx, c.context.as_slice()));
            each.push(Custom {
                name: c.name.clone(),
                whole,
                checksum: c.checksum,
                score: c.score,
                has_context: !c.context.is_empty(),
            });
        }
        let custom = if each.is_empty() {
            None
        } else {
            let combined = Regex::new(&alternation).map_err(|e| DetectError::Build {
                what: "custom pattern alternation",
                reason: e.to_string(),
            })?;
            Some(CustomSet { combined, each })
        };
        let enabled = KindSet::of(&config.enabled);
        let ner = if enabled.any(KindSet::of(&[PiiKind::Person, PiiKind::Address])) {
            Some(ner::ner()?)
        } else {
            None
        };
        Ok(Detector {
            inner: Inner {
                ner,
                enabled,
                min_score: config.min_score,
                context: ContextIndex::new(&words)?,
                custom,
            },
        })
    }

    /// All findings in `text`: non-overlapping, sorted by start, each scoring at least
    /// `min_score`.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        self.detect_into(text, &mut out);
        out
    }

    /// Like [`Detector::detect`], reusing `out` (cleared first) so a loop over many texts
    /// allocates only when a text has more findings than any before it.
    pub fn detect_into(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        if self.inner.enabled != KindSet::default() {
            Scan::new(&self.inner, text, Mode::Text, self.inner.min_score, |f| {
                out.push(f)
            })
            .run();
        }
        if let Some(set) = &self.inner.custom {
            self.custom_pass(set, text, out);
        }
        resolve_overlaps(out);
    }

    /// What the whole value is, if it is one piece of personal data: an email, phone number,
    /// SSN, card, IBAN, IP, date, person's name or address spanning the trimmed text (or a
    /// full match of a custom detector). Returns the best-scoring kind with its score.
    pub fn classify_value(&self, text: &str) -> Option<(PiiKind, f32)> {
        self.classify_cell(text, self.inner.min_score)
    }

    /// [`Detector::classify_value`] with its own threshold (column profiling looks at weaker
    /// candidates when the column name agrees with them).
    pub(crate) fn classify_cell(&self, text: &str, min_score: f32) -> Option<(PiiKind, f32)> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        let mut best: Option<(PiiKind, f32)> = None;
        let mut keep = |kind: PiiKind, score: f32| {
            if score >= min_score && best.is_none_or(|(_, s)| score > s) {
                best = Some((kind, score));
            }
        };
        Scan::new(&self.inner, t, Mode::Cell, min_score, |f| {
            if f.start == 0 && f.end == t.len() {
                keep(f.kind, f.score);
            }
        })
        .run();
        if let Some(set) = &self.inner.custom {
            for (i, c) in set.each.iter().enumerate() {
                if c.whole.is_match(t) && checksum_ok(c.checksum, t) {
                    let idx = u16::try_from(i).unwrap_or(u16::MAX);
                    keep(PiiKind::Custom(idx), c.score);
                }
            }
        }
        best
    }

    /// The reported name of a kind: the stable built-in name, or a custom detector's name.
    pub fn kind_name(&self, kind: PiiKind) -> &str {
        match kind {
            PiiKind::Custom(i) => self
                .inner
                .custom
                .as_ref()
                .and_then(|s| s.each.get(usize::from(i)))
                .map_or("custom", |c| c.name.as_str()),
            k => k.as_str(),
        }
    }

    /// Resolves a built-in or custom kind name.
    pub fn kind_from_name(&self, name: &str) -> Result<PiiKind, DetectError> {
        if let Ok(k) = name.parse::<PiiKind>() {
            return Ok(k);
        }
        let customs = self
            .inner
            .custom
            .as_ref()
            .map_or(&[][..], |s| s.each.as_slice());
        if let Some(i) = customs.iter().position(|c| c.name == name) {
            return Ok(PiiKind::Custom(u16::try_from(i).unwrap_or(u16::MAX)));
        }
        let mut valid = PiiKind::builtin_names();
        for c in customs {
            valid.push_str(", ");
            valid.push_str(&c.name);
        }
        Err(DetectError::UnknownKind {
            name: name.to_owned(),
            valid,
        })
    }

    /// The reporting threshold.
    pub fn min_score(&self) -> f32 {
        self.inner.min_score
    }

    /// One search of the combined custom alternation over `text`.
    fn custom_pass(&self, set: &CustomSet, text: &str, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        let mut pos = 0;
        while pos <= text.len() {
            let Some(m) = set.combined.find_at(text, pos) else {
                break;
            };
            if m.is_empty() {
                pos = next_boundary(text, m.end());
                continue;
            }
            let s = m.as_str();
            let hit = set
                .each
                .iter()
                .enumerate()
                .find(|(_, c)| c.whole.is_match(s) && checksum_ok(c.checksum, s));
            match hit {
                Some((i, c)) => {
                    let idx = u16::try_from(i).unwrap_or(u16::MAX);
                    let boost = c.has_context
                        && self
                            .inner
                            .context
                            .custom_hit(bytes, m.start(), m.end(), idx);
                    let score = if boost {
                        (c.score + 0.2).min(1.0)
                    } else {
                        c.score
                    };
                    if score >= self.inner.min_score {
                        out.push(Finding {
                            kind: PiiKind::Custom(idx),
                            start: m.start(),
                            end: m.end(),
                            score,
                        });
                    }
                    pos = m.end();
                }
                // A failed checksum may hide a valid match starting inside this one.
                None => pos = next_boundary(text, m.start()),
            }
        }
    }
}

/// The char boundary after the char at `i` (or past the end).
fn next_boundary(text: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < text.len() && !text.is_char_boundary(j) {
        j += 1;
    }
    j
}

fn checksum_ok(c: Option<Checksum>, s: &str) -> bool {
    match c {
        None => true,
        Some(Checksum::Luhn) => luhn(s.as_bytes()),
        Some(Checksum::Mod97) => mod97(s.as_bytes()),
    }
}

fn check_name(name: &str, earlier: &[crate::CustomDetector]) -> Result<(), DetectError> {
    let bad = |reason: &'static str| {
        Err(DetectError::InvalidCustomName {
            name: name.to_owned(),
            reason,
        })
    };
    let Some(first) = name.bytes().next() else {
        return bad("name must not be empty");
    };
    if !first.is_ascii_lowercase()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return bad("name must be lowercase ascii letters, digits and '_', starting with a letter");
    }
    if name.parse::<PiiKind>().is_ok() || RESERVED.contains(&name) {
        return bad("name is taken by a built-in kind");
    }
    if earlier.iter().any(|c| c.name == name) {
        return bad("name is used by another custom detector");
    }
    Ok(())
}

/// Keeps one finding per overlapping cluster, preferring the higher score, then the longer
/// span; leaves the findings sorted by start.
pub(crate) fn resolve_overlaps(out: &mut Vec<Finding>) {
    if out.len() < 2 {
        return;
    }
    out.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut w = 0;
    for r in 1..out.len() {
        let f = out[r];
        let kept = out[w];
        if f.start < kept.end {
            let better = f.score > kept.score || (f.score == kept.score && f.len() > kept.len());
            if better {
                out[w] = f;
            }
        } else {
            w += 1;
            out[w] = f;
        }
    }
    out.truncate(w + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: PiiKind, start: usize, end: usize, score: f32) -> Finding {
        Finding {
            kind,
            start,
            end,
            score,
        }
    }

    #[test]
    fn overlaps_keep_best() {
        let mut v = vec![
            f(PiiKind::Phone, 10, 20, 0.6),
            f(PiiKind::Card, 5, 25, 0.9),
            f(PiiKind::Email, 30, 40, 0.9),
            f(PiiKind::Person, 0, 3, 0.7),
        ];
        resolve_overlaps(&mut v);
        assert_eq!(
            v.iter().map(|x| x.kind).collect::<Vec<_>>(),
            [PiiKind::Person, PiiKind::Card, PiiKind::Email]
        );
    }

    #[test]
    fn equal_scores_prefer_longer() {
        let mut v = vec![f(PiiKind::Phone, 0, 10, 0.8), f(PiiKind::Ssn, 2, 20, 0.8)];
        resolve_overlaps(&mut v);
        assert_eq!(v, [f(PiiKind::Ssn, 2, 20, 0.8)]);
    }

    #[test]
    fn send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Detector>();
    }
}
