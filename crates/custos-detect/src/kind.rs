//! The kinds of personal data the detectors report.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DetectError;

/// A class of personal data.
///
/// Built-in kinds have stable lowercase names ([`PiiKind::as_str`]) used in config files,
/// reports and audit records. Custom kinds carry the index of their detector in
/// [`crate::DetectorConfig::custom`]; their name is that detector's name, which only the
/// [`crate::Detector`] knows ([`crate::Detector::kind_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    /// An email address.
    Email,
    /// A telephone number (NANP or international E.164).
    Phone,
    /// A US social security number.
    Ssn,
    /// A payment card number (PAN).
    Card,
    /// An international bank account number.
    Iban,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A date that is, or may be, a date of birth.
    DateOfBirth,
    /// A person's name.
    Person,
    /// A US street address.
    Address,
    /// A match of the custom detector with this index in the configuration.
    Custom(u16),
}

impl PiiKind {
    /// The kinds found by structure and checksums rather than by words: what the PII gate looks
    /// for inside free text and what the evaluation scores as "pattern" types.
    pub const PATTERN: [PiiKind; 6] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ssn,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ip,
    ];

    /// Every built-in kind, in the order used for reports.
    pub const BUILTIN: [PiiKind; 9] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ssn,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ip,
        PiiKind::DateOfBirth,
        PiiKind::Person,
        PiiKind::Address,
    ];

    /// The stable lowercase name; `"custom"` for every custom kind (see
    /// [`crate::Detector::kind_name`] for the configured name).
    pub const fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ssn => "ssn",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
            PiiKind::Ip => "ip",
            PiiKind::DateOfBirth => "date_of_birth",
            PiiKind::Person => "person",
            PiiKind::Address => "address",
            PiiKind::Custom(_) => "custom",
        }
    }

    /// True for the kinds this crate detects by itself.
    pub const fn is_builtin(self) -> bool {
        !matches!(self, PiiKind::Custom(_))
    }

    /// Bit of a built-in kind in a [`KindSet`]; custom kinds have none.
    pub(crate) const fn bit(self) -> u16 {
        match self {
            PiiKind::Email => 1 << 0,
            PiiKind::Phone => 1 << 1,
            PiiKind::Ssn => 1 << 2,
            PiiKind::Card => 1 << 3,
            PiiKind::Iban => 1 << 4,
            PiiKind::Ip => 1 << 5,
            PiiKind::DateOfBirth => 1 << 6,
            PiiKind::Person => 1 << 7,
            PiiKind::Address => 1 << 8,
            PiiKind::Custom(_) => 0,
        }
    }

    /// The built-in names joined for error messages.
    pub(crate) fn builtin_names() -> String {
        let names: Vec<&str> = Self::BUILTIN.iter().map(|k| k.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PiiKind::Custom(i) => write!(f, "custom#{i}"),
            k => f.write_str(k.as_str()),
        }
    }
}

impl FromStr for PiiKind {
    type Err = DetectError;

    /// Parses a built-in name; custom names are resolved by [`crate::Detector::kind_from_name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PiiKind::BUILTIN
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DetectError::UnknownKind {
                name: s.to_owned(),
                valid: PiiKind::builtin_names(),
            })
    }
}

impl Serialize for PiiKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PiiKind {
    /// Accepts built-in names only: a custom kind is meaningless without its detector list.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Deserializes a kind as reports write it: a built-in name, or `custom` (whose detector
/// index a report does not carry; it reads back as the first custom detector's).
pub(crate) fn reported<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PiiKind, D::Error> {
    let s = String::deserialize(deserializer)?;
    if s == "custom" {
        return Ok(PiiKind::Custom(0));
    }
    s.parse().map_err(serde::de::Error::custom)
}

/// A small set of built-in kinds (one bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct KindSet(u16);

impl KindSet {
    /// The set holding the given kinds (custom kinds are ignored).
    pub(crate) const fn of(kinds: &[PiiKind]) -> KindSet {
        let mut bits = 0;
        let mut i = 0;
        while i < kinds.len() {
            bits |= kinds[i].bit();
            i += 1;
        }
        KindSet(bits)
    }

    /// Whether `kind` is in the set; custom kinds are always "in".
    #[inline]
    pub(crate) fn has(self, kind: PiiKind) -> bool {
        match kind {
            PiiKind::Custom(_) => true,
            k => self.0 & k.bit() != 0,
        }
    }

    /// Whether any of the kinds in `other` is in the set.
    #[inline]
    pub(crate) fn any(self, other: KindSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Kinds in either set.
    #[inline]
    pub(crate) fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    /// Kinds in `self` but not in `other`.
    #[inline]
    pub(crate) fn minus(self, other: KindSet) -> KindSet {
        KindSet(self.0 & !other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in PiiKind::BUILTIN {
            assert_eq!(k.as_str().parse::<PiiKind>().unwrap(), k);
        }
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = "passport".parse::<PiiKind>().unwrap_err().to_string();
        assert!(err.contains("email, phone, ssn, card, iban, ip, date_of_birth, person, address"));
    }

    #[test]
    fn kind_set() {
        let s = KindSet::of(&[PiiKind::Email, PiiKind::Ip]);
        assert!(s.has(PiiKind::Email) && s.has(PiiKind::Ip) && !s.has(PiiKind::Ssn));
        assert!(s.has(PiiKind::Custom(3)));
        assert!(KindSet::of(&PiiKind::BUILTIN).has(PiiKind::Address));
    }
}
