//! The single pass over a text that finds candidates for every built-in detector.
//!
//! The scanner walks the bytes once. Only a few bytes start work: a digit, `+` or `(` at a
//! word start (cards, phones, SSNs, IPv4, numeric dates, house numbers: `numbers`, `address`),
//! an upper-case letter at a word start (IBANs, names, titles, month names: `names`, `dates`),
//! `:` (IPv6 written in lower case or starting with `::`) and `@` (emails). Lower-case letters,
//! spaces and punctuation are skipped with one table lookup per byte, and a word that does not
//! start a candidate is skipped whole. Candidates are validated by hand-written parsers
//! (checksums, structural rules, `std::net`); context words are looked up only for candidates
//! that survive validation.

mod address;
mod dates;
mod names;
mod numbers;

use std::net::Ipv6Addr;
use std::str::FromStr;

use numbers::{PhoneForm, SsnForm, boundaries_ok, card, date_groups, ipv4, phone, ssn};

use crate::checksum::mod97;
use crate::context::Ctx;
use crate::detector::Inner;
use crate::dict::{self, Dicts};
use crate::kind::KindSet;
use crate::tables;
use crate::{Finding, PiiKind};

/// Kinds whose candidates start with a digit, `+` or `(`.
const NUMERIC_KINDS: KindSet = KindSet::of(&[
    PiiKind::Phone,
    PiiKind::Ssn,
    PiiKind::Card,
    PiiKind::Ip,
    PiiKind::DateOfBirth,
    PiiKind::Address,
]);
/// Kinds whose candidates start with an upper-case letter.
const UPPER_KINDS: KindSet = KindSet::of(&[
    PiiKind::Iban,
    PiiKind::Ip,
    PiiKind::DateOfBirth,
    PiiKind::Address,
    PiiKind::Person,
]);

/// Bytes that may start a candidate: digits and upper-case letters (at a word start), `@`,
/// `+`, `(` and `:`.
static STARTS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        // 0xC3..=0xC5 lead the UTF-8 of U+00C0..U+017F: capitals such as "É", "Ł", "Ø".
        t[c] = b.is_ascii_digit()
            || b.is_ascii_uppercase()
            || matches!(b, b'@' | b'+' | b'(' | b':' | 0xC3..=0xC5);
        c += 1;
    }
    t
};

/// Lower-case words between a given and a family name ("Jan van der Berg", "Ana de la Cruz").
#[inline]
fn is_particle(w: &[u8]) -> bool {
    matches!(
        w,
        b"van"
            | b"von"
            | b"der"
            | b"den"
            | b"de"
            | b"da"
            | b"di"
            | b"del"
            | b"della"
            | b"dos"
            | b"das"
            | b"du"
            | b"la"
            | b"le"
            | b"ter"
            | b"ten"
            | b"y"
            | b"e"
            | b"zu"
            | b"af"
    )
}

/// Street types written abbreviated with a dot ("pl. Skargi 31", "Str. 5"); whole street words
/// such as "way" or "run" end sentences too often to count.
const STREET_ABBREVIATIONS: &[&[u8]] = &[
    b"pl", b"ul", b"al", b"av", b"avda", b"str", b"bd", b"bld", b"St", b"st", b"rd", b"Rd", b"nr",
    b"Nr", b"no", b"No", b"os", b"ch", b"rte", b"Str", b"Av", b"Pl", b"Ul", b"Al",
];

/// Pattern findings remembered per text to keep tagged spans off them; a text with more is
/// left to the overlap resolution (which prefers the higher score).
const MAX_TAKEN: usize = 8;

/// At most this many digit groups make one numeric chunk ("+44 20 7123 4567" has four).
const MAX_GROUPS: usize = 8;
/// Longest digit run considered (19-digit PANs); longer runs are not PII we know.
const MAX_RUN: usize = 20;

/// One run of digits inside a numeric chunk.
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    /// Byte offset of the first digit.
    s: usize,
    /// Byte offset after the last digit.
    e: usize,
    /// Separator byte before this group (0 for the first; `)` after a parenthesised group).
    sep: u8,
    /// Whether the group is written in parentheses, "(718)".
    paren: bool,
}

impl Group {
    #[inline]
    fn len(&self) -> usize {
        self.e - self.s
    }
}

/// Digit groups joined by single separators, e.g. "(718) 574-5483" or "4111 1111 1111 1111".
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// `+`, `(` or 0: the byte that opened the chunk.
    lead: u8,
    /// Offset of the lead byte or of the first digit.
    start: usize,
    g: [Group; MAX_GROUPS],
    n: usize,
}

impl Chunk {
    /// Byte range of groups `a..=b`, including the lead and parentheses that belong to them.
    fn span(&self, a: usize, b: usize) -> (usize, usize) {
        let ga = self.g[a];
        let s = if a == 0 {
            self.start
        } else if ga.paren {
            ga.s - 1
        } else {
            ga.s
        };
        let gb = self.g[b];
        let e = if gb.paren { gb.e + 1 } else { gb.e };
        (s, e)
    }
}

/// Collected digits of a span, without allocating.
struct Digits {
    buf: [u8; 24],
    n: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.n]
    }
}

/// How the scanned text is used: a sentence to search, or one whole cell value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Free text: bare numbers need context words.
    Text,
    /// A whole cell: the column itself is the context, so bare forms score higher.
    Cell,
}

/// Word characters for boundaries: ASCII alphanumerics and any non-ASCII byte (so a digit run
/// glued to a letter of another script is not a word start either).
#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

#[inline]
fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// A pass over one text, feeding findings to `emit`.
pub(crate) struct Scan<'a, F: FnMut(Finding)> {
    det: &'a Inner,
    dicts: &'static Dicts,
    text: &'a str,
    b: &'a [u8],
    mode: Mode,
    /// Findings below this are not emitted.
    min_score: f32,
    /// End of the last phone number reported, for lists of numbers ("... or 0612 ...").
    last_phone: Option<usize>,
    /// Whether the name/address tagger runs (free text with PERSON or ADDRESS enabled).
    ner_on: bool,
    /// Byte offsets of candidates for the tagger: it only looks at tokens around these.
    anchors: Vec<usize>,
    /// Spans of the other kinds reported so far (only with the tagger on): a tagged name or
    /// address never takes a phone number's or an email's place.
    taken: [(usize, usize); MAX_TAKEN],
    n_taken: usize,
    emit: F,
}

impl<'a, F: FnMut(Finding)> Scan<'a, F> {
    /// Prepares a pass over `text`.
    pub(crate) fn new(det: &'a Inner, text: &'a str, mode: Mode, min_score: f32, emit: F) -> Self {
        Scan {
            det,
            dicts: dict::dicts(),
            text,
            b: text.as_bytes(),
            mode,
            min_score,
            last_phone: None,
            ner_on: mode == Mode::Text && det.ner.is_some(),
            anchors: Vec::new(),
            taken: [(0, 0); MAX_TAKEN],
            n_taken: 0,
            emit,
        }
    }

    /// Byte at `i`, or 0 past the end (0 never belongs to any class we look for).
    #[inline]
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    #[inline]
    fn word_start(&self, i: usize) -> bool {
        i == 0 || !is_word(self.b[i - 1])
    }

    /// End of the run of word bytes starting at `i`.
    #[inline]
    fn word_end(&self, mut i: usize) -> usize {
        while i < self.b.len() && is_word(self.b[i]) {
            i += 1;
        }
        i
    }

    #[inline]
    fn on(&self, kind: PiiKind) -> bool {
        self.det.enabled.has(kind)
    }

    fn ctx(&self, s: usize, e: usize) -> Ctx {
        match self.mode {
            Mode::Text => self.det.context.lookup(self.b, s, e),
            Mode::Cell => Ctx::default(),
        }
    }

    fn push(&mut self, kind: PiiKind, start: usize, end: usize, score: f32) {
        if self.ner_on && matches!(kind, PiiKind::Person | PiiKind::Address) {
            // The tagger has the last word on names and addresses in text (it also finds the
            // ones the rules find, with better bounds); what the rules found tells it where
            // to look.
            if score >= self.min_score {
                self.anchors.push(start);
            }
            return;
        }
        self.emit_finding(kind, start, end, score);
    }

    fn emit_finding(&mut self, kind: PiiKind, start: usize, end: usize, score: f32) {
        let score = score.clamp(0.0, 1.0);
        if self.det.enabled.has(kind) && score >= self.min_score {
            if self.ner_on
                && !matches!(kind, PiiKind::Person | PiiKind::Address)
                && let Some(t) = self.taken.get_mut(self.n_taken)
            {
                *t = (start, end);
                self.n_taken += 1;
            }
            if kind == PiiKind::Phone {
                self.last_phone = Some(end);
            }
            (self.emit)(Finding {
                kind,
                start,
                end,
                score,
            });
        }
    }

    /// Runs the pass.
    pub(crate) fn run(mut self) {
        let b = self.b;
        let n = b.len();
        let numeric = self.det.enabled.any(NUMERIC_KINDS);
        let upper = self.det.enabled.any(UPPER_KINDS);
        let email = self.on(PiiKind::Email);
        let ip = self.on(PiiKind::Ip);
        let mut i = 0;
        loop {
            // Lower-case letters, spaces and most punctuation never start a candidate.
            while i < n && !STARTS[usize::from(b[i])] {
                i += 1;
            }
            if i >= n {
                break;
            }
            let c = b[i];
            if c.is_ascii_alphanumeric() {
                if !self.word_start(i) {
                    i = self.word_end(i);
                    continue;
                }
                let next = if c.is_ascii_digit() {
                    if numeric { self.numeric(i) } else { None }
                } else if upper {
                    self.upper_word(i)
                } else {
                    None
                };
                i = match next {
                    Some(e) if e > i => e,
                    _ => self.word_end(i),
                };
                continue;
            }
            let next = match c {
                b'@' if email => self.email(i),
                b'+' | b'(' if numeric && self.at(i + 1).is_ascii_digit() && self.word_start(i) => {
                    // "++1" or "a+1" is arithmetic, not a phone number.
                    if i > 0 && matches!(b[i - 1], b'+' | b'(') {
                        None
                    } else {
                        self.numeric(i)
                    }
                }
                b':' if ip => self.colon(i),
                0xC3..=0xC5 if self.ner_on && self.word_start(i) => {
                    self.anchor_word(i, self.word_end(i));
                    None
                }
                _ => None,
            };
            i = match next {
                Some(e) if e > i => e,
                _ => i + 1,
            };
        }
        if self.ner_on && !self.anchors.is_empty() {
            self.tag_names();
        }
    }

    /// Runs the tagger around the anchors and reports its names and addresses.
    fn tag_names(&mut self) {
        let Some(ner) = self.det.ner else {
            return;
        };
        let anchors = std::mem::take(&mut self.anchors);
        let text = self.text;
        ner.tag(text, &anchors, |t| {
            let taken = &self.taken[..self.n_taken];
            if !taken.iter().any(|&(s, e)| s < t.end && t.start < e) {
                // "Dear Mr. Okonkwo", "Name: ...": a context word vouches for a weak name.
                let score = if t.score < 0.8 && self.ctx(t.start, t.end).before.has(t.kind) {
                    t.score + 0.15
                } else {
                    t.score
                };
                self.emit_finding(t.kind, t.start, t.end, score);
            }
        });
    }

    /// Records the capitalised word at `i` as a tagger anchor when it may start a name or an
    /// address. A name: another capitalised word follows ("Kimberly Mcintyre", "Dr. Okonkwo",
    /// "Jan van der Berg") and one of them is a listed name, or the pair does not open a
    /// sentence. An address: a house number follows a street word ("Kerkstraat 12",
    /// "chemin Julliard 2"). A lone capitalised word is left alone: sentences start with one,
    /// and tagging every sentence would cost more than the rest of the scan.
    fn anchor_word(&mut self, i: usize, we: usize) {
        if !self.cap_word(i) {
            return;
        }
        let mut j = we;
        if self.at(j) == b'.' && we - i <= 4 {
            j += 1;
        }
        if self.at(j) != b' ' {
            return;
        }
        j += 1;
        let c = self.at(j);
        if c.is_ascii_digit() {
            // "Version 2", "Ticket 1234" open sentences: only a word inside one (or starting
            // the text) is looked up.
            if (i == 0 || !self.sentence_initial(i))
                && (self.street_type(i, we) || self.street_word_before(i))
            {
                self.anchors.push(i);
            }
            return;
        }
        if matches!(c, b'a' | b'd' | b'e' | b'l' | b't' | b'v' | b'y' | b'z') {
            // "van der", "de la": particles between a given and a family name.
            for _ in 0..2 {
                let pe = self.alpha_end(j);
                if self.at(pe) == b' ' && is_particle(&self.b[j..pe]) {
                    j = pe + 1;
                } else {
                    break;
                }
            }
        }
        // A middle initial: "Mary J. Johnson".
        if self.at(j).is_ascii_uppercase() && self.at(j + 1) == b'.' && self.at(j + 2) == b' ' {
            j += 3;
        }
        if !self.cap_word(j) {
            return;
        }
        let known2 = || self.name_known(j, self.word_end(j));
        // Capitalised pairs that are neither names nor streets ("Republican Party", "Board
        // Meeting") are common in prose: one of the two must be in a list.
        let w = &self.b[i..we];
        let anchored = if we - i <= 7 && dict::contains(&self.dicts.titles, w) {
            // "Dear Mr. Okonkwo": an unlisted name after a title needs a context word.
            known2() || self.ctx(i, we).before.has(PiiKind::Person)
        } else {
            self.name_known(i, we) || known2() || dict::contains(&self.dicts.street_words, w)
        };
        if anchored {
            self.anchors.push(i);
        }
    }

    /// Cheap test of what follows a word ending at `we` (ASCII part): only a dot, or a space
    /// before a capital, a digit, a non-ASCII letter or a possible particle can make it an
    /// anchor. Sentences mostly go on with a small word, and this keeps them cheap.
    #[inline]
    fn may_anchor(&self, we: usize) -> bool {
        match self.at(we) {
            b' ' => {
                let c = self.at(we + 1);
                c.is_ascii_uppercase()
                    || c.is_ascii_digit()
                    || c >= 0x80
                    || matches!(c, b'a' | b'd' | b'e' | b'l' | b't' | b'v' | b'y' | b'z')
            }
            b'.' => true,
            c => c >= 0x80,
        }
    }

    /// Whether `ws..we` is a given or family name of any locale in the lists.
    fn name_known(&self, ws: usize, we: usize) -> bool {
        let d = self.dicts;
        let w = &self.b[ws..we];
        if w.is_ascii() {
            return dict::contains(&d.given_intl, w) || dict::contains(&d.surnames_intl, w);
        }
        let lw = self.text.get(ws..we).unwrap_or_default().to_lowercase();
        d.given_intl.contains(lw.as_bytes()) || d.surnames_intl.contains(lw.as_bytes())
    }

    /// Whether `ws..we` is a street word or ends in one ("Kerkstraat", "Hauptstraße").
    fn street_type(&self, ws: usize, we: usize) -> bool {
        let set = &self.dicts.street_words;
        let w = &self.b[ws..we];
        dict::contains(set, w)
            || (w.len() >= 6
                && (3..=8.min(w.len() - 3)).any(|k| dict::contains(set, &w[w.len() - k..])))
    }

    /// Whether the word before the one at `i` is a street word ("chemin", "rue", "pl.").
    fn street_word_before(&self, i: usize) -> bool {
        let b = self.b;
        let mut e = i;
        while e > 0 && matches!(b[e - 1], b' ' | b'.') {
            e -= 1;
        }
        let mut s = e;
        while s > 0 && b[s - 1].is_ascii_alphabetic() && e - s < 12 {
            s -= 1;
        }
        e - s >= 2
            && (s == 0 || !is_word(b[s - 1]))
            && dict::contains(&self.dicts.street_words, &b[s..e])
    }

    /// Whether a capitalised word written like a name starts at `i`: a capital (ASCII or
    /// U+00C0..U+017F) and then a small letter, any non-ASCII letter or an apostrophe and a
    /// capital ("Ann", "Élodie", "McPherson", "O'Brien"; not "IBAN", "A" or "NL14").
    #[inline]
    fn cap_word(&self, i: usize) -> bool {
        let c = self.at(i);
        let first = if c.is_ascii_uppercase() {
            1
        } else if (0xC3..=0xC5).contains(&c) && self.upper_at(i) {
            2
        } else {
            return false;
        };
        let s = self.at(i + first);
        let apostrophe = s == b'\'' && self.at(i + first + 1).is_ascii_uppercase();
        (s.is_ascii_lowercase() || s >= 0x80 || apostrophe) && self.word_start(i)
    }

    /// Whether the (non-ASCII) character at `i` is a capital.
    #[cold]
    fn upper_at(&self, i: usize) -> bool {
        self.text
            .get(i..)
            .and_then(|t| t.chars().next())
            .is_some_and(char::is_uppercase)
    }

    /// Whether the word at `i` opens a sentence (text start, or after ".", "!" or "?" that do
    /// not end an abbreviation).
    fn sentence_initial(&self, i: usize) -> bool {
        let b = self.b;
        let mut j = i;
        while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
            j -= 1;
        }
        j == 0
            || match b[j - 1] {
                b'!' | b'?' => true,
                b'.' => !self.abbreviation_before(j - 1),
                _ => false,
            }
    }

    /// Whether the '.' at `dot` ends an abbreviation, a title or street abbreviation ("Dr.",
    /// "Sra.", "pl.", "Str.") or an initial ("J."), rather than a sentence.
    fn abbreviation_before(&self, dot: usize) -> bool {
        let b = self.b;
        let mut k = dot;
        while k > 0 && b[k - 1].is_ascii_alphabetic() && dot - k <= 4 {
            k -= 1;
        }
        let w = &b[k..dot];
        !w.is_empty()
            && (k == 0 || !is_word(b[k - 1]))
            && ((w.len() == 1 && w[0].is_ascii_uppercase())
                || dict::contains(&self.dicts.titles, w)
                || STREET_ABBREVIATIONS.contains(&w))
    }

    /// IPv6 addresses that start with "::" or with a lower-case hex word ("fe80::1"); those
    /// starting with a digit or an upper-case letter were tried at their first byte.
    fn colon(&mut self, i: usize) -> Option<usize> {
        let b = self.b;
        if self.at(i + 1) == b':' && (i == 0 || !(is_hex(b[i - 1]) || b[i - 1] == b':')) {
            return self.ipv6(i);
        }
        let mut k = i;
        while k > 0 && i - k < 4 && is_hex(b[k - 1]) {
            k -= 1;
        }
        if k < i && b[k].is_ascii_lowercase() && self.word_start(k) {
            return self.ipv6(k);
        }
        None
    }

    // ------------------------------------------------------------------ emails

    /// An email around the `@` at `at`; returns where scanning resumes.
    fn email(&mut self, at: usize) -> Option<usize> {
        let b = self.b;
        let mut s = at;
        while s > 0 && at - s < 64 && is_local(b[s - 1]) {
            s -= 1;
        }
        while s < at && matches!(b[s], b'.' | b'-' | b'+' | b'\'') {
            s += 1;
        }
        if s == at || b[at - 1] == b'.' {
            return None;
        }
        let mut e = at + 1;
        while e < b.len()
            && e - at <= 253
            && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'.' | b'-'))
        {
            e += 1;
        }
        while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        if e < b.len() && b[e] >= 0x80 {
            return None;
        }
        if !domain_ok(&b[at + 1..e]) {
            return None;
        }
        let ctx = self.ctx(s, e);
        let score = if ctx.pos.has(PiiKind::Email) {
            0.95
        } else {
            0.9
        };
        self.push(PiiKind::Email, s, e, score);
        Some(e)
    }

    // ------------------------------------------------------------------ IPv6

    /// An IPv6 address starting at `i` (a hex digit or `::`); None when the word is not one.
    fn ipv6(&mut self, i: usize) -> Option<usize> {
        let b = self.b;
        let mut j = i;
        while j < b.len() && j - i < 5 && is_hex(b[j]) {
            j += 1;
        }
        if self.at(j) != b':' {
            return None;
        }
        let mut e = i;
        let mut colons = 0;
        while e < b.len() && e - i < 46 && (is_hex(b[e]) || b[e] == b':' || b[e] == b'.') {
            colons += usize::from(b[e] == b':');
            e += 1;
        }
        // Sentence punctuation after the address is not part of it.
        loop {
            let last = b[e - 1];
            if last == b'.' || (last == b':' && e >= i + 2 && b[e - 2] != b':') {
                e -= 1;
                colons -= usize::from(last == b':');
            } else {
                break;
            }
        }
        if colons < 2 || self.at(e).is_ascii_alphanumeric() || e <= i {
            return None;
        }
        let s = std::str::from_utf8(&b[i..e]).ok()?;
        Ipv6Addr::from_str(s).ok()?;
        let ctx = self.ctx(i, e);
        let score = if ctx.pos.has(PiiKind::Ip) { 0.95 } else { 0.85 };
        self.push(PiiKind::Ip, i, e, score);
        Some(e)
    }

    // ------------------------------------------------------------------ numbers

    /// Everything that starts with a digit, `+` or `(` at `i`; returns where scanning resumes.
    fn numeric(&mut self, i: usize) -> Option<usize> {
        if self.on(PiiKind::Ip)
            && is_hex(self.b[i])
            && let Some(e) = self.ipv6(i)
        {
            return Some(e);
        }
        let mut chunk = self.chunk(i)?;
        let mut end = chunk.span(0, chunk.n - 1).1;
        // "x9150", " ext. 12": an extension belongs to a phone number ending here.
        let ext = self.extension(end);
        // A number glued to letters ("5pm", "172B") or to an email's '@' ends before it.
        if ext.is_none() && (is_word(self.at(end)) || self.at(end) == b'@') {
            chunk.n -= 1;
            if chunk.n == 0 {
                return None;
            }
        }
        if self.is_amount(&chunk) {
            return Some(end);
        }
        let mut ctx: Option<Ctx> = None;
        let mut found_end = None;
        let mut a = 0;
        while a < chunk.n {
            let mut hit = None;
            for z in (a..chunk.n).rev() {
                if !boundaries_ok(&chunk, a, z) {
                    continue;
                }
                if let Some(h) = self.classify_span(&chunk, a, z, &mut ctx) {
                    hit = Some((z, h));
                    break;
                }
            }
            match hit {
                Some((z, (kind, score))) => {
                    let (s, mut e) = chunk.span(a, z);
                    if kind == PiiKind::Phone
                        && z + 1 == chunk.n
                        && let Some(x) = ext
                    {
                        e = x;
                    }
                    self.push(kind, s, e, score);
                    found_end = Some(e);
                    a = z + 1;
                }
                None => a += 1,
            }
        }
        end = chunk.span(0, chunk.n - 1).1;
        if found_end.is_none() && chunk.n == 1 && chunk.lead == 0 {
            let g = chunk.g[0];
            if g.len() <= 2
                && self.on(PiiKind::DateOfBirth)
                && let Some(e) = self.date_day_first(g)
            {
                return Some(e);
            }
            if g.len() <= 6
                && self.on(PiiKind::Address)
                && let Some(e) = self.address(g.s, g.e)
            {
                return Some(e);
            }
            // "12 rue de la Paix", "5 via Roma": a house number before a street word.
            if self.ner_on && g.len() <= 5 && self.at(g.e) == b' ' {
                let ws = g.e + 1;
                let we = self.alpha_end(ws);
                if (2..=10).contains(&(we - ws))
                    && dict::contains(&self.dicts.street_words, &self.b[ws..we])
                {
                    self.anchors.push(g.s);
                }
            }
        }
        Some(found_end.map_or(end, |f| f.max(end)))
    }

    /// Whether the layout around `span` says phone: the number stands on a line of its own
    /// after another line (a letter's signature block), or it follows a phone number in a
    /// list ("+33 1 83 41 77 76 or 0415391500").
    fn phone_layout(&self, (s, e): (usize, usize)) -> bool {
        let b = self.b;
        if let Some(p) = self.last_phone
            && p <= s
            && s - p <= 6
        {
            let gap = &b[p..s];
            if matches!(gap, b" or " | b", " | b" / " | b" and " | b"; " | b", or ") {
                return true;
            }
        }
        let mut i = s;
        while i > 0 && b[i - 1] == b' ' {
            i -= 1;
        }
        let own_line = i > 0 && b[i - 1] == b'\n';
        own_line && matches!(self.at(e), 0 | b'\n' | b'\r')
    }

    /// End of a phone extension right after `e`: "x123", " x 12", " ext. 12", " ext 1234",
    /// "extension 5".
    fn extension(&self, e: usize) -> Option<usize> {
        let b = self.b;
        let mut j = e;
        if self.at(j) == b' ' {
            j += 1;
        }
        let we = self.alpha_end(j);
        let w = &b[j..we];
        if !(w.eq_ignore_ascii_case(b"x")
            || w.eq_ignore_ascii_case(b"ext")
            || w.eq_ignore_ascii_case(b"extn")
            || w.eq_ignore_ascii_case(b"extension"))
        {
            return None;
        }
        j = we;
        if self.at(j) == b'.' {
            j += 1;
        }
        if self.at(j) == b' ' {
            j += 1;
        }
        let ds = j;
        while j < b.len() && b[j].is_ascii_digit() && j - ds < 6 {
            j += 1;
        }
        (j > ds && !is_word(self.at(j))).then_some(j)
    }

    /// Reads a chunk of digit groups starting at `i` (a digit, `+` or `(`).
    fn chunk(&self, i: usize) -> Option<Chunk> {
        let b = self.b;
        let mut c = Chunk {
            lead: 0,
            start: i,
            g: [Group::default(); MAX_GROUPS],
            n: 0,
        };
        let mut j = i;
        let mut paren = false;
        if b[i] == b'+' {
            c.lead = b'+';
            j += 1;
        } else if b[i] == b'(' {
            c.lead = b'(';
            paren = true;
            j += 1;
        }
        let mut sep = 0u8;
        loop {
            let s = j;
            while j < b.len() && b[j].is_ascii_digit() && j - s < MAX_RUN {
                j += 1;
            }
            if j == s {
                break;
            }
            if paren && self.at(j) != b')' {
                // An unclosed "(718" is not a group; keep what came before it.
                break;
            }
            c.g[c.n] = Group {
                s,
                e: j,
                sep,
                paren,
            };
            c.n += 1;
            if c.n == MAX_GROUPS {
                break;
            }
            if paren {
                j += 1;
                paren = false;
                match self.at(j) {
                    d if d.is_ascii_digit() => {
                        sep = b')';
                        continue;
                    }
                    b' ' | b'-' | b'.' if self.at(j + 1).is_ascii_digit() => {
                        sep = b')';
                        j += 1;
                        continue;
                    }
                    _ => break,
                }
            }
            let d = self.at(j);
            // "+44(0)115 ...", "+80(6)36...": a bracketed trunk digit or area code.
            if d == b'(' && c.n <= 2 && self.at(j + 1).is_ascii_digit() {
                sep = d;
                paren = true;
                j += 1;
                continue;
            }
            if !matches!(d, b'-' | b'.' | b' ' | b'/' | b':') {
                break;
            }
            let nx = self.at(j + 1);
            if nx.is_ascii_digit() {
                sep = d;
                j += 1;
            } else if d == b' ' && nx == b'(' && c.n <= 2 && self.at(j + 2).is_ascii_digit() {
                // "+1 (718) 574-5483": only the area code after a country code.
                sep = d;
                paren = true;
                j += 2;
            } else {
                break;
            }
        }
        (c.n > 0).then_some(c)
    }

    /// Whether the chunk is a money amount: "$1,234.56", "€ 120", or the "345.67" of
    /// "12,345.67" (a comma list of phone numbers, "...-5483,212-555-0100", is not).
    fn is_amount(&self, c: &Chunk) -> bool {
        let b = self.b;
        let s = c.start;
        if s >= 2 && b[s - 1] == b',' && b[s - 2].is_ascii_digit() && c.g[0].len() == 3 {
            let cents = c.n == 2 && c.g[1].sep == b'.' && c.g[1].len() == 2;
            if c.n == 1 || cents {
                return true;
            }
        }
        let mut k = s;
        if k > 0 && b[k - 1] == b' ' {
            k -= 1;
        }
        let head = &b[..k];
        head.ends_with(b"$") || head.ends_with("€".as_bytes()) || head.ends_with("£".as_bytes())
    }

    /// Concatenated digits of groups `a..=z` (None when more than fit).
    fn digits(&self, c: &Chunk, a: usize, z: usize) -> Option<Digits> {
        let mut d = Digits { buf: [0; 24], n: 0 };
        for g in &c.g[a..=z] {
            let src = &self.b[g.s..g.e];
            let dst = d.buf.get_mut(d.n..d.n + src.len())?;
            dst.copy_from_slice(src);
            d.n += src.len();
        }
        Some(d)
    }

    /// The best reading of groups `a..=z`: card, phone, SSN, IPv4 or date.
    fn classify_span(
        &self,
        c: &Chunk,
        a: usize,
        z: usize,
        ctx: &mut Option<Ctx>,
    ) -> Option<(PiiKind, f32)> {
        let d = self.digits(c, a, z)?;
        let groups = &c.g[a..=z];
        let lead = if a == 0 { c.lead } else { 0 };
        let mut ctx_of = |this: &Self| -> Ctx {
            *ctx.get_or_insert_with(|| {
                let (s, e) = c.span(0, c.n - 1);
                this.ctx(s, e)
            })
        };
        if lead == 0 {
            if self.on(PiiKind::Card)
                && let Some(base) = card(groups, d.as_slice())
            {
                let cx = ctx_of(self);
                return Some((PiiKind::Card, adjust(base, cx, PiiKind::Card, 0.1, 0.35)));
            }
            if self.on(PiiKind::Ssn)
                && let Some(form) = ssn(groups, d.as_slice())
            {
                let cx = ctx_of(self);
                let score = match (form, self.mode) {
                    (SsnForm::Bare, Mode::Cell) => 0.6,
                    (SsnForm::Bare, Mode::Text) if cx.neg.has(PiiKind::Ssn) => return None,
                    (SsnForm::Bare, Mode::Text) if cx.pos.has(PiiKind::Ssn) => 0.85,
                    // Nine bare digits without an SSN word may still be a phone number.
                    (SsnForm::Bare, Mode::Text) if !cx.pos.has(PiiKind::Phone) => 0.3,
                    (SsnForm::Bare, Mode::Text) => 0.0,
                    (SsnForm::Dashed, _) => adjust(0.75, cx, PiiKind::Ssn, 0.2, 0.4),
                    (SsnForm::Spaced, _) => adjust(0.6, cx, PiiKind::Ssn, 0.3, 0.4),
                };
                if score > 0.0 {
                    return Some((PiiKind::Ssn, score));
                }
            }
        }
        // Dotted quads and dates are read before phones: their shapes are stricter.
        let other = lead == 0
            && !c.g[a].paren
            && ((self.on(PiiKind::Ip) && ipv4(self.b, groups))
                || (self.on(PiiKind::DateOfBirth) && date_groups(self.b, groups)));
        if self.on(PiiKind::Phone)
            && !other
            && let Some(form) = phone(groups, d.as_slice(), lead)
        {
            let cx = ctx_of(self);
            let score = match (form, self.mode) {
                // Bare digits are as often an id as a phone number: a cell needs the
                // column name to agree (see `classify_column`).
                (PhoneForm::Bare, Mode::Cell) => 0.45,
                (PhoneForm::Bare, Mode::Text) if cx.neg.has(PiiKind::Phone) => return None,
                (PhoneForm::Bare, Mode::Text)
                    if cx.pos.has(PiiKind::Phone) || self.phone_layout(c.span(a, z)) =>
                {
                    0.8
                }
                (PhoneForm::Bare, Mode::Text) => 0.4,
                (PhoneForm::Formatted(base), _) => adjust(base, cx, PiiKind::Phone, 0.15, 0.4),
            };
            return Some((PiiKind::Phone, score));
        }
        if lead != 0 {
            return None;
        }
        if self.on(PiiKind::Ip) && ipv4(self.b, groups) {
            let cx = ctx_of(self);
            if cx.neg.has(PiiKind::Ip) {
                return None;
            }
            return Some((PiiKind::Ip, adjust(0.75, cx, PiiKind::Ip, 0.15, 0.0)));
        }
        if self.on(PiiKind::DateOfBirth) && date_groups(self.b, groups) {
            let cx = ctx_of(self);
            if cx.neg.has(PiiKind::DateOfBirth) {
                return None;
            }
            return Some((PiiKind::DateOfBirth, self.date_score(cx)));
        }
        None
    }

    #[inline]
    fn alpha_end(&self, mut i: usize) -> usize {
        while i < self.b.len() && self.b[i].is_ascii_alphabetic() {
            i += 1;
        }
        i
    }

    // ------------------------------------------------------------------ IBAN

    /// An IBAN at `i` ("DE89 3704 0044 0532 0130 00" or compact).
    fn iban(&mut self, i: usize) -> Option<usize> {
        let b = self.b;
        let rule = tables::iban_rule([b[i], b[i + 1]])?;
        let len = usize::from(rule.len);
        let mut buf = [0u8; 34];
        buf[..4].copy_from_slice(&b[i..i + 4]);
        let mut n = 4;
        let mut j = i + 4;
        if self.at(j) == b' ' {
            // Grouped: blocks of four, the last one shorter.
            while n < len {
                if self.at(j) != b' ' {
                    return None;
                }
                j += 1;
                let take = (len - n).min(4);
                let blk = b.get(j..j + take)?;
                if !blk
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                {
                    return None;
                }
                buf[n..n + take].copy_from_slice(blk);
                n += take;
                j += take;
                if take < 4 && is_word(self.at(j)) {
                    return None;
                }
            }
        } else {
            let blk = b.get(j..i + len)?;
            if !blk
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                return None;
            }
            buf[4..len].copy_from_slice(blk);
            j = i + len;
        }
        if is_word(self.at(j)) {
            return None;
        }
        let iban = &buf[..len];
        if !tables::bban_ok(rule, &iban[4..]) || !mod97(iban) {
            return None;
        }
        let cx = self.ctx(i, j);
        let score = if cx.pos.has(PiiKind::Iban) { 1.0 } else { 0.9 };
        self.push(PiiKind::Iban, i, j, score);
        Some(j)
    }
}

/// Raises a base score for supporting context, lowers it for objecting context.
#[inline]
fn adjust(base: f32, cx: Ctx, kind: PiiKind, up: f32, down: f32) -> f32 {
    if cx.neg.has(kind) {
        base - down
    } else if cx.pos.has(kind) {
        base + up
    } else {
        base
    }
}

#[inline]
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

/// Domain labels: at least two, each 1..=63 alphanumerics or inner hyphens, alphabetic TLD.
fn domain_ok(d: &[u8]) -> bool {
    if d.is_empty() || d.len() > 253 {
        return false;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in d.split(|&c| c == b'.') {
        if label.is_empty()
            || label.len() > 63
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(domain_ok(b"example.com"));
        assert!(domain_ok(b"mail.co.uk"));
        assert!(!domain_ok(b"localhost"));
        assert!(!domain_ok(b"-a.com"));
        assert!(!domain_ok(b"a..com"));
        assert!(!domain_ok(b"a.c0m"));
    }
}
