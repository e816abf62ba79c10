//! Words starting with an upper-case letter: IBANs, IPv6 in capitals, month names, military
//! addresses and person names (word lists plus titles).

use super::{Mode, Scan, is_hex, is_word};
use crate::dict;
use crate::kind::KindSet;
use crate::{Finding, PiiKind};

/// Kinds that look at a whole capitalised word.
const WORD_KINDS: KindSet = KindSet::of(&[PiiKind::Person, PiiKind::DateOfBirth, PiiKind::Address]);

impl<F: FnMut(Finding)> Scan<'_, F> {
    /// IBANs, names, titles, month names, military addresses and upper-case IPv6.
    pub(super) fn upper_word(&mut self, i: usize) -> Option<usize> {
        let b = self.b;
        if self.on(PiiKind::Iban)
            && self.at(i + 1).is_ascii_uppercase()
            && self.at(i + 2).is_ascii_digit()
            && self.at(i + 3).is_ascii_digit()
            && let Some(e) = self.iban(i)
        {
            return Some(e);
        }
        if self.on(PiiKind::Ip)
            && is_hex(b[i])
            && let Some(e) = self.ipv6(i)
        {
            return Some(e);
        }
        // The rest reads the whole word: names, month names, military addresses.
        if !self.det.enabled.any(WORD_KINDS) {
            return None;
        }
        let we = self.name_end(i);
        if self.ner_on
            && (self.at(i + 1).is_ascii_lowercase() || self.at(i + 1) >= 0x80)
            && self.may_anchor(we)
        {
            // "Lúcia": the name-shaped part stops at the first non-ASCII letter.
            let end = if is_word(self.at(we)) {
                self.word_end(i)
            } else {
                we
            };
            self.anchor_word(i, end);
        }
        if we - i < 2 || is_word(self.at(we)) {
            return None;
        }
        let w = &b[i..we];
        if self.on(PiiKind::Address)
            && let Some(e) = self.military(i, we)
        {
            return Some(e);
        }
        // "March 12, 1984" / "Mar. 12": only a word followed by a day can be a month here.
        let day_follows = match self.at(we) {
            b' ' => self.at(we + 1).is_ascii_digit(),
            b'.' => self.at(we + 1) == b' ' && self.at(we + 2).is_ascii_digit(),
            _ => false,
        };
        if day_follows
            && self.on(PiiKind::DateOfBirth)
            && dict::month(w).is_some()
            && let Some(e) = self.date_month_first(i, we)
        {
            return Some(e);
        }
        // In free text the tagger finds names from the anchors above; the word-list rules only
        // serve whole cells (where a lone surname in a name column counts).
        if self.on(PiiKind::Person) && !self.ner_on {
            return self.person(i, we);
        }
        None
    }

    /// End of a name-like word at `i`: letters, with inner apostrophes or hyphens ("O'Brien").
    pub(super) fn name_end(&self, i: usize) -> usize {
        let b = self.b;
        let mut e = self.alpha_end(i);
        while matches!(self.at(e), b'\'' | b'-') && self.at(e + 1).is_ascii_alphabetic() {
            e = self.alpha_end(e + 1);
        }
        e.min(b.len())
    }

    /// Whether `ws..we` is written like a name: "Morgan", "McDonald", "O'Brien",
    /// "Garcia-Lopez" (or "MORGAN" in a cell).
    pub(super) fn name_shaped(&self, ws: usize, we: usize) -> bool {
        let w = &self.b[ws..we];
        if w.len() < 2 || !w[0].is_ascii_uppercase() {
            return false;
        }
        if self.mode == Mode::Cell && !w.iter().any(u8::is_ascii_lowercase) {
            return true;
        }
        let plain = |p: &[u8]| {
            p.len() >= 2
                && p[0].is_ascii_uppercase()
                && p[1..].iter().all(|c| c.is_ascii_lowercase() || *c == b'\'')
        };
        w.split(|&c| c == b'-').all(|part| {
            plain(part)
                || [&b"Mac"[..], b"Mc", b"O'"]
                    .iter()
                    .any(|pre| part.strip_prefix(*pre).is_some_and(plain))
        })
    }

    /// Whether a name word, or one part of a hyphenated one, is in `set`.
    fn known(&self, set: &dict::WordSet, ws: usize, we: usize) -> bool {
        let w = &self.b[ws..we];
        dict::contains(set, w)
            || (w.contains(&b'-') && w.split(|&c| c == b'-').any(|p| dict::contains(set, p)))
    }

    /// The word after `e` if it is separated by one space and name-shaped: (start, end).
    pub(super) fn next_name_word(&self, e: usize) -> Option<(usize, usize)> {
        if self.at(e) != b' ' || !self.at(e + 1).is_ascii_uppercase() {
            return None;
        }
        let s = e + 1;
        let we = self.name_end(s);
        // A middle initial "J." or "J".
        if we == s + 1 {
            return (!is_word(self.at(we)))
                .then_some((s, if self.at(we) == b'.' { we + 1 } else { we }));
        }
        (self.name_shaped(s, we) && !is_word(self.at(we))).then_some((s, we))
    }

    /// A person's name starting with the word `ws..we`.
    pub(super) fn person(&mut self, ws: usize, we: usize) -> Option<usize> {
        let b = self.b;
        let w = &b[ws..we];
        // "Mr. Smith", "Dr Jane Doe".
        if dict::TITLES.contains(&w) {
            let mut j = we;
            if self.at(j) == b'.' {
                j += 1;
            }
            let (s1, mut e) = self.next_name_word(j)?;
            if e - s1 < 2 || self.b[e - 1] == b'.' {
                return None;
            }
            let known =
                self.known(&self.dicts.given, s1, e) || self.known(&self.dicts.surnames, s1, e);
            for _ in 0..2 {
                match self.next_name_word(e) {
                    Some((_, e2)) => e = e2,
                    None => break,
                }
            }
            // "Mrs. Refund issued" is a sentence break, not a name: unknown words stay below the
            // default threshold unless a word like "dear" or "name" comes before.
            let score = match (known, self.ctx(ws, e).before.has(PiiKind::Person)) {
                (true, _) => 0.85,
                (false, true) => 0.6,
                (false, false) => 0.45,
            };
            self.push(PiiKind::Person, ws, e, score);
            return Some(e);
        }
        if !self.name_shaped(ws, we) {
            return None;
        }
        let given = dict::contains(&self.dicts.given, w);
        // In text a name must start with a known given name; a cell may hold any name-shaped
        // words ("BENNETT" in a last_name column, "Chidi Okonkwo" in a full_name column).
        if !given && self.mode == Mode::Text {
            return None;
        }
        // Up to two more words: a middle name or initial, then the surname.
        let mut e = we;
        let mut last: Option<(usize, usize)> = None;
        let mut parts = 1;
        while parts < 3 {
            match self.next_name_word(e) {
                Some((s2, e2)) => {
                    last = Some((s2, e2));
                    e = e2;
                    parts += 1;
                }
                None => break,
            }
        }
        // Drop a trailing initial: "Morgan J." reads as the start of something else.
        if let Some((s2, e2)) = last
            && (e2 - s2 == 1 || (e2 - s2 == 2 && b[e2 - 1] == b'.'))
        {
            e = s2 - 1;
            parts -= 1;
        }
        let cx = self.ctx(ws, e);
        let ctx = cx.pos.has(PiiKind::Person);
        let score = if parts == 1 {
            // A lone given name needs a word before it: "Bill the customer" is a verb.
            match (self.mode, given, cx.before.has(PiiKind::Person)) {
                (Mode::Cell, true, _) => 0.65,
                (Mode::Cell, false, _) if dict::contains(&self.dicts.surnames, w) => 0.55,
                // Any capitalised word: only a name column can vouch for it.
                (Mode::Cell, false, _) => 0.4,
                (Mode::Text, _, true) => 0.6,
                (Mode::Text, _, false) => 0.3,
            }
        } else {
            let (s2, e2) = last.unwrap_or((ws, we));
            let last_known = self.known(&self.dicts.surnames, s2, e2);
            let base = match (given, last_known, self.mode) {
                (true, true, _) => 0.8,
                (true, false, Mode::Cell) => 0.6,
                (true, false, Mode::Text) => 0.45,
                (false, true, _) => 0.6,
                (false, false, Mode::Cell) if dict::contains(&self.dicts.surnames, w) => 0.6,
                (false, false, Mode::Cell) => 0.4,
                (false, false, Mode::Text) => return None,
            };
            if ctx { base + 0.15 } else { base }
        };
        self.push(PiiKind::Person, ws, e, score);
        Some(e.max(we))
    }
}
