//! Word lists shipped in `data/` and compiled into the binary.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// FNV-1a: the keys are short ASCII words, where SipHash's setup costs more than the lookup.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A set of lower-case words.
pub(crate) type WordSet = HashSet<Box<[u8]>, BuildHasherDefault<Fnv>>;

/// The built-in dictionaries.
#[derive(Debug)]
pub(crate) struct Dicts {
    /// Common given names.
    pub(crate) given: WordSet,
    /// Common surnames.
    pub(crate) surnames: WordSet,
    /// Street suffixes and their abbreviations.
    pub(crate) street: WordSet,
    /// Given names of many locales (features of the name tagger).
    pub(crate) given_intl: WordSet,
    /// Family names of many locales (features of the name tagger).
    pub(crate) surnames_intl: WordSet,
    /// Honorifics and academic titles in many languages ("mr", "frau", "mme", "dott").
    pub(crate) titles: WordSet,
    /// Street types and prefixes in many languages ("rue", "calle", "straße", "ul").
    pub(crate) street_words: WordSet,
}

fn load(src: &str) -> WordSet {
    src.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // Full Unicode lower case, like the tagger's features ("Élodie" is stored "élodie").
        .map(|l| l.to_lowercase().into_bytes().into_boxed_slice())
        .collect()
}

/// The dictionaries, parsed once per process.
pub(crate) fn dicts() -> &'static Dicts {
    static DICTS: OnceLock<Dicts> = OnceLock::new();
    DICTS.get_or_init(|| Dicts {
        given: load(include_str!("../data/given_names.txt")),
        surnames: load(include_str!("../data/surnames.txt")),
        street: load(include_str!("../data/street_suffixes.txt")),
        given_intl: load(include_str!("../data/given_names_intl.txt")),
        surnames_intl: load(include_str!("../data/surnames_intl.txt")),
        titles: load(include_str!("../data/titles.txt")),
        street_words: load(include_str!("../data/street_words.txt")),
    })
}

/// Case-insensitive membership without allocating: words longer than the buffer are never in
/// the lists.
#[inline]
pub(crate) fn contains(set: &WordSet, word: &[u8]) -> bool {
    let mut buf = [0u8; 24];
    let Some(dst) = buf.get_mut(..word.len()) else {
        return false;
    };
    for (d, s) in dst.iter_mut().zip(word) {
        *d = s.to_ascii_lowercase();
    }
    set.contains(&*dst)
}

/// US state and territory abbreviations, plus the military "states".
pub(crate) const STATES: &[&[u8; 2]] = &[
    b"AL", b"AK", b"AZ", b"AR", b"CA", b"CO", b"CT", b"DE", b"DC", b"FL", b"GA", b"HI", b"ID",
    b"IL", b"IN", b"IA", b"KS", b"KY", b"LA", b"ME", b"MD", b"MA", b"MI", b"MN", b"MS", b"MO",
    b"MT", b"NE", b"NV", b"NH", b"NJ", b"NM", b"NY", b"NC", b"ND", b"OH", b"OK", b"OR", b"PA",
    b"RI", b"SC", b"SD", b"TN", b"TX", b"UT", b"VT", b"VA", b"WA", b"WV", b"WI", b"WY", b"PR",
    b"GU", b"VI", b"AS", b"MP", b"FM", b"MH", b"PW", b"AA", b"AE", b"AP",
];

/// Month names and their three-letter abbreviations, lower case, with their numbers.
pub(crate) const MONTHS: &[(&[u8], u8)] = &[
    (b"january", 1),
    (b"february", 2),
    (b"march", 3),
    (b"april", 4),
    (b"may", 5),
    (b"june", 6),
    (b"july", 7),
    (b"august", 8),
    (b"september", 9),
    (b"october", 10),
    (b"november", 11),
    (b"december", 12),
    (b"jan", 1),
    (b"feb", 2),
    (b"mar", 3),
    (b"apr", 4),
    (b"jun", 6),
    (b"jul", 7),
    (b"aug", 8),
    (b"sep", 9),
    (b"sept", 9),
    (b"oct", 10),
    (b"nov", 11),
    (b"dec", 12),
];

/// The month number of a (case-insensitive) month name.
pub(crate) fn month(word: &[u8]) -> Option<u8> {
    // Most capitalised words are not months: reject on length and first letter first.
    if !(3..=9).contains(&word.len())
        || !matches!(
            word[0].to_ascii_lowercase(),
            b'j' | b'f' | b'm' | b'a' | b's' | b'o' | b'n' | b'd'
        )
    {
        return None;
    }
    MONTHS
        .iter()
        .find(|(m, _)| m.eq_ignore_ascii_case(word))
        .map(|&(_, n)| n)
}

/// Honorifics that introduce a name.
pub(crate) const TITLES: &[&[u8]] = &[b"Mr", b"Mrs", b"Ms", b"Miss", b"Mx", b"Dr", b"Prof"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_load() {
        let d = dicts();
        assert!(d.given.len() > 500 && d.surnames.len() > 900 && d.street.len() > 200);
        assert!(contains(&d.given, b"Morgan"));
        assert!(contains(&d.surnames, b"BENNETT"));
        assert!(contains(&d.street, b"Fords"));
        assert!(!contains(&d.given, b"averyveryveryveryverylongword"));
    }

    #[test]
    fn months() {
        assert_eq!(month(b"March"), Some(3));
        assert_eq!(month(b"sept"), Some(9));
        assert_eq!(month(b"Marc"), None);
    }
}
