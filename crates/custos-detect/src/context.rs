//! Context words: keywords near a candidate that raise or lower its score.
//!
//! One Aho-Corasick automaton (ASCII case-insensitive, leftmost-longest so "telephone" wins
//! over "tel") holds every keyword of the built-in detectors and of the custom detectors. A lookup searches a short window around a candidate
//! (40 bytes before, 24 after, never across a sentence end), so its cost does not grow with the
//! text.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::kind::KindSet;
use crate::{DetectError, PiiKind};

/// Bytes searched before a candidate.
pub(crate) const BEFORE: usize = 40;
/// Bytes searched after a candidate (positive words only: "... as identifier").
pub(crate) const AFTER: usize = 24;

use PiiKind::{Address, Card, DateOfBirth, Email, Iban, Ip, Person, Phone, Ssn};

/// Built-in positive words: (word, kinds it supports).
const POSITIVE: &[(&str, &[PiiKind])] = &[
    ("email", &[Email]),
    ("e-mail", &[Email]),
    ("mail", &[Email]),
    ("reply to", &[Email]),
    ("cc", &[Email, Card]),
    ("contact", &[Email, Phone, Person]),
    ("phone", &[Phone]),
    ("ring", &[Phone]),
    ("my number", &[Phone]),
    ("new number", &[Phone]),
    ("number is", &[Phone]),
    ("numero", &[Phone]),
    ("landline", &[Phone]),
    ("hotline", &[Phone]),
    ("helpline", &[Phone]),
    ("direct line", &[Phone]),
    ("office line", &[Phone]),
    ("telefon", &[Phone]),
    ("telefono", &[Phone]),
    ("tlf", &[Phone]),
    ("ph", &[Phone]),
    ("tel", &[Phone]),
    ("telephone", &[Phone]),
    ("call", &[Phone]),
    ("mobile", &[Phone]),
    ("cell", &[Phone]),
    ("fax", &[Phone]),
    ("voicemail", &[Phone]),
    ("reach", &[Phone]),
    ("sms", &[Phone]),
    ("text", &[Phone]),
    ("whatsapp", &[Phone]),
    ("dial", &[Phone]),
    ("ssn", &[Ssn]),
    ("social security", &[Ssn]),
    ("social sec", &[Ssn]),
    ("tax id", &[Ssn]),
    ("taxpayer", &[Ssn]),
    ("tin", &[Ssn]),
    ("identifier", &[Ssn]),
    ("card", &[Card]),
    ("visa", &[Card]),
    ("mastercard", &[Card]),
    ("amex", &[Card]),
    ("american express", &[Card]),
    ("discover", &[Card]),
    ("credit", &[Card]),
    ("debit", &[Card]),
    ("pan", &[Card]),
    ("charged", &[Card]),
    ("paid", &[Card]),
    ("payment", &[Card]),
    ("refund", &[Card, Iban]),
    ("iban", &[Iban]),
    ("account", &[Iban]),
    ("bank", &[Iban]),
    ("wire", &[Iban]),
    ("transfer", &[Iban]),
    ("sepa", &[Iban]),
    ("ip", &[Ip]),
    ("ipv4", &[Ip]),
    ("ipv6", &[Ip]),
    ("host", &[Ip]),
    ("login", &[Ip]),
    ("server", &[Ip]),
    ("firewall", &[Ip]),
    ("blocked", &[Ip]),
    ("origin", &[Ip]),
    ("born", &[DateOfBirth]),
    ("dob", &[DateOfBirth]),
    ("d.o.b", &[DateOfBirth]),
    ("birth", &[DateOfBirth]),
    ("birthday", &[DateOfBirth]),
    ("birthdate", &[DateOfBirth]),
    ("name", &[Person]),
    ("named", &[Person]),
    ("dear", &[Person]),
    ("signed", &[Person]),
    ("patient", &[Person]),
    ("customer", &[Person]),
    ("address", &[Address, Ip, Email]),
    ("lives at", &[Address]),
    ("located at", &[Address]),
    ("ship to", &[Address]),
    ("mailing", &[Address]),
    ("street", &[Address]),
    ("residence", &[Address]),
];

/// Built-in negative words: numbers right after these are identifiers, versions or amounts.
const NEGATIVE: &[(&str, &[PiiKind])] = &[
    ("order", &[Phone, Ssn, Card]),
    ("ticket", &[Phone, Ssn, Card]),
    ("invoice", &[Phone, Ssn, Card]),
    ("ref", &[Phone, Ssn, Card]),
    ("reference", &[Phone, Ssn, Card]),
    ("tracking", &[Phone, Ssn, Card]),
    ("confirmation", &[Phone, Ssn, Card]),
    ("booking", &[Phone, Ssn, Card]),
    ("receipt", &[Phone, Ssn, Card]),
    ("case", &[Phone, Ssn, Card]),
    ("sku", &[Phone, Ssn, Card]),
    ("serial", &[Phone, Ssn, Card]),
    ("isbn", &[Phone, Ssn, Card]),
    ("po", &[Phone, Ssn, Card]),
    ("amount", &[Phone, Ssn, Card]),
    ("total", &[Phone, Ssn, Card]),
    ("price", &[Phone, Ssn, Card]),
    ("balance", &[Phone, Ssn, Card]),
    ("usd", &[Phone, Ssn, Card]),
    ("eur", &[Phone, Ssn, Card]),
    ("version", &[Ip, Phone, DateOfBirth]),
    ("ver", &[Ip, Phone, DateOfBirth]),
    ("v", &[Ip, Phone, DateOfBirth]),
    ("release", &[Ip, Phone, DateOfBirth]),
    ("build", &[Ip, Phone, DateOfBirth]),
    ("firmware", &[Ip, Phone, DateOfBirth]),
    ("rev", &[Ip, Phone, DateOfBirth]),
];

/// What one keyword means.
#[derive(Debug, Default, Clone)]
struct Rule {
    /// Built-in kinds this word supports.
    pos: KindSet,
    /// Built-in kinds this word argues against.
    neg: KindSet,
    /// Custom detectors (by index) this word supports.
    custom: Vec<u16>,
    /// Short words must end at a word boundary ("ip" must not match "ipsum");
    /// longer ones may carry a suffix ("called", "phones").
    whole: bool,
}

/// Context found around a candidate.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ctx {
    /// Kinds supported by the nearest relevant word.
    pub(crate) pos: KindSet,
    /// Kinds argued against by a word nearer than any supporting one.
    pub(crate) neg: KindSet,
    /// The part of `pos` supported by words before the candidate ("name: Morgan").
    pub(crate) before: KindSet,
}

/// The keyword automaton and what each keyword means.
#[derive(Debug)]
pub(crate) struct ContextIndex {
    ac: AhoCorasick,
    rules: Vec<Rule>,
}

impl ContextIndex {
    /// Builds the index from the built-in words plus each custom detector's words.
    pub(crate) fn new(custom: &[(u16, &[String])]) -> Result<Self, DetectError> {
        // One entry per distinct lower-cased word, merging what every detector says about it.
        let mut by_word: BTreeMap<String, Rule> = BTreeMap::new();
        fn entry<'m>(by_word: &'m mut BTreeMap<String, Rule>, w: &str) -> &'m mut Rule {
            let w = w.trim().to_ascii_lowercase();
            let whole = w.len() < 4;
            by_word.entry(w).or_insert_with(|| Rule {
                whole,
                ..Rule::default()
            })
        }
        for (w, kinds) in POSITIVE {
            let r = entry(&mut by_word, w);
            r.pos = r.pos.union(KindSet::of(kinds));
        }
        for (w, kinds) in NEGATIVE {
            let r = entry(&mut by_word, w);
            r.neg = r.neg.union(KindSet::of(kinds));
        }
        for (idx, ws) in custom {
            for w in ws.iter() {
                entry(&mut by_word, w).custom.push(*idx);
            }
        }
        let (words, rules): (Vec<String>, Vec<Rule>) = by_word.into_iter().unzip();
        // Windows are a few dozen bytes: a DFA without a prefilter beats skipping ahead.
        let ac = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::DFA))
            .prefilter(false)
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .map_err(|e| DetectError::Build {
                what: "context word automaton",
                reason: e.to_string(),
            })?;
        Ok(ContextIndex { ac, rules })
    }

    /// Context of the candidate `start..end` in `text`: the nearest word before decides
    /// between support and objection; words after can only support.
    pub(crate) fn lookup(&self, text: &[u8], start: usize, end: usize) -> Ctx {
        let mut ctx = Ctx::default();
        let lo = window_start(text, start);
        for m in self.ac.find_iter(&text[lo..start]) {
            let (s, e) = (lo + m.start(), lo + m.end());
            let Some(rule) = self.rules.get(m.pattern().as_usize()) else {
                continue;
            };
            if !word_edges(text, s, e, rule.whole) {
                continue;
            }
            // Matches come in text order, so a later word is nearer to the candidate.
            ctx.pos = ctx.pos.union(rule.pos).minus(rule.neg);
            ctx.neg = ctx.neg.union(rule.neg).minus(rule.pos);
        }
        ctx.before = ctx.pos;
        let hi = window_end(text, end);
        for m in self.ac.find_iter(&text[end..hi]) {
            let (s, e) = (end + m.start(), end + m.end());
            let Some(rule) = self.rules.get(m.pattern().as_usize()) else {
                continue;
            };
            if word_edges(text, s, e, rule.whole) {
                ctx.pos = ctx.pos.union(rule.pos.minus(ctx.neg));
            }
        }
        ctx
    }

    /// Whether a context word of custom detector `idx` is near `start..end`.
    pub(crate) fn custom_hit(&self, text: &[u8], start: usize, end: usize, idx: u16) -> bool {
        let lo = window_start(text, start);
        let hi = window_end(text, end);
        let hit = |base: usize, hay: &[u8]| {
            self.ac.find_iter(hay).any(|m| {
                self.rules.get(m.pattern().as_usize()).is_some_and(|r| {
                    r.custom.contains(&idx)
                        && word_edges(text, base + m.start(), base + m.end(), r.whole)
                })
            })
        };
        hit(lo, &text[lo..start]) || hit(end, &text[end..hi])
    }
}

/// Start of the window before `start`: at most [`BEFORE`] bytes back, and not before the end
/// of the previous sentence.
fn window_start(text: &[u8], start: usize) -> usize {
    let lo = start.saturating_sub(BEFORE);
    let mut i = start;
    while i > lo {
        // A terminator followed by whitespace ends the previous sentence.
        if is_blank(text[i - 1]) && i >= 2 && is_terminator(text[i - 2]) && i - 1 < start {
            return i;
        }
        if text[i - 1] == b'\n' {
            return i;
        }
        i -= 1;
    }
    lo
}

/// End of the window after `end`: at most [`AFTER`] bytes on, stopping at a sentence end.
fn window_end(text: &[u8], end: usize) -> usize {
    let hi = (end + AFTER).min(text.len());
    let mut i = end;
    while i < hi {
        let b = text[i];
        if b == b'\n' {
            return i;
        }
        if is_terminator(b) && text.get(i + 1).is_none_or(|&n| is_blank(n)) {
            return i;
        }
        i += 1;
    }
    hi
}

#[inline]
fn is_terminator(b: u8) -> bool {
    matches!(b, b'.' | b'!' | b'?' | b';')
}

#[inline]
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// A keyword counts only at the start of a word, and short ones only as a whole word.
fn word_edges(text: &[u8], s: usize, e: usize, whole: bool) -> bool {
    let starts = s == 0 || text.get(s - 1).is_none_or(|&b| !is_word(b));
    let ends = !whole || text.get(e).is_none_or(|&b| !is_word(b));
    starts && ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> ContextIndex {
        ContextIndex::new(&[]).unwrap()
    }

    #[test]
    fn nearest_word_wins() {
        let t = b"Phone for order 7185745483";
        let c = idx().lookup(t, 16, t.len());
        assert!(c.neg.has(Phone) && !c.pos.has(Phone));
        let t = b"Order shipped, call 7185745483";
        let c = idx().lookup(t, 20, t.len());
        assert!(c.pos.has(Phone) && !c.neg.has(Phone));
    }

    #[test]
    fn short_words_need_whole_word() {
        let t = b"Lorem ipsum 10.0.0.1";
        assert!(!idx().lookup(t, 12, t.len()).pos.has(Ip));
        let t = b"from IP 10.0.0.1";
        assert!(idx().lookup(t, 8, t.len()).pos.has(Ip));
        let t = b"we called 7185745483";
        assert!(idx().lookup(t, 10, t.len()).pos.has(Phone));
    }

    #[test]
    fn sentence_end_stops_window() {
        let t = b"SSN is private. Then 123456789";
        assert!(!idx().lookup(t, 21, t.len()).pos.has(Ssn));
        let t = b"Provided 123456789 as identifier.";
        assert!(idx().lookup(t, 9, 18).pos.has(Ssn));
    }

    #[test]
    fn custom_words() {
        let words = vec!["employee".to_string()];
        let ix = ContextIndex::new(&[(0, words.as_slice())]).unwrap();
        let t = b"Employee no E-12345";
        assert!(ix.custom_hit(t, 12, t.len(), 0));
        assert!(!ix.custom_hit(t, 12, t.len(), 1));
    }
}
