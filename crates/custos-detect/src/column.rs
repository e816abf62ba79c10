//! Column classification: what a structured column holds and how to protect it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{Detector, Finding, PiiKind};

/// How often one kind was seen in a column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassStat {
    /// The kind.
    #[serde(deserialize_with = "crate::kind::reported")]
    pub kind: PiiKind,
    /// Share of non-null values that are (or, in `embedded`, contain) this kind.
    pub match_ratio: f64,
    /// `match_ratio` weighted by the mean score, raised when the column name agrees.
    pub confidence: f64,
}

/// What a column holds, judged from its name and values (read back from a report with
/// [`Deserialize`]: a custom kind comes back without its detector's index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnProfile {
    /// The kind the column's name suggests, if any.
    pub name_hint: Option<PiiKind>,
    /// Kinds that whole values were classified as, best first.
    pub classes: Vec<ClassStat>,
    /// Kinds found inside free-text values, best first.
    pub embedded: Vec<ClassStat>,
    /// Whether most values are prose rather than single items.
    pub free_text: bool,
    /// Non-null, non-blank values seen.
    pub values: usize,
    /// The protection to configure for this column.
    pub recommended: Recommendation,
}

/// A protection action for a column, in the shape the pipeline config uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Recommendation {
    /// No personal data recognised: leave the column as it is.
    Keep,
    /// Randomised AEAD encryption (AES-256-GCM).
    Encrypt {
        /// Key name in the keyring.
        key: String,
    },
    /// Deterministic encryption (AES-SIV) so equal values still join.
    EncryptDeterministic {
        /// Key name in the keyring.
        key: String,
    },
    /// Format-preserving encryption (FF1).
    Fpe {
        /// The format kept.
        format: FpeFormat,
        /// Key name in the keyring.
        key: String,
    },
    /// Keyed-hash tokens (HMAC-SHA256).
    Tokenize {
        /// Key name in the keyring.
        key: String,
    },
    /// Replace all but the last characters.
    Mask {
        /// Characters left visible at the end.
        keep_last: u8,
    },
    /// Coarsen a date.
    Generalize {
        /// The coarser unit.
        to: Granularity,
    },
    /// Remove the value, or only the listed kinds inside free text.
    Redact {
        /// Kind names to cut out of the text; empty means the whole value.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        types: Vec<String>,
    },
}

/// Formats kept by format-preserving encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FpeFormat {
    /// US SSN: nine digits, separators kept.
    Ssn,
}

/// Units a date can be generalised to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Granularity {
    /// Keep the year only.
    Year,
}

/// Keyring name for randomised encryption.
pub const KEY_PII: &str = "pii-main";
/// Keyring name for deterministic encryption used in joins.
pub const KEY_JOINS: &str = "joins";
/// Keyring name for format-preserving encryption.
pub const KEY_FPE: &str = "fpe-main";
/// Keyring name for tokens.
pub const KEY_TOKENS: &str = "tokens";

impl Recommendation {
    /// The default protection for a column holding `kind`.
    pub fn for_kind(kind: PiiKind) -> Recommendation {
        match kind {
            PiiKind::Email => Recommendation::Encrypt {
                key: KEY_PII.into(),
            },
            PiiKind::Person => Recommendation::EncryptDeterministic {
                key: KEY_JOINS.into(),
            },
            PiiKind::Ssn => Recommendation::Fpe {
                format: FpeFormat::Ssn,
                key: KEY_FPE.into(),
            },
            PiiKind::Card | PiiKind::Iban | PiiKind::Ip | PiiKind::Custom(_) => {
                Recommendation::Tokenize {
                    key: KEY_TOKENS.into(),
                }
            }
            PiiKind::Phone => Recommendation::Mask { keep_last: 4 },
            PiiKind::DateOfBirth => Recommendation::Generalize {
                to: Granularity::Year,
            },
            PiiKind::Address => Recommendation::Redact { types: Vec::new() },
        }
    }

    /// The action's name as used in config (`action = "..."`).
    pub fn action(&self) -> &'static str {
        match self {
            Recommendation::Keep => "keep",
            Recommendation::Encrypt { .. } => "encrypt",
            Recommendation::EncryptDeterministic { .. } => "encrypt_deterministic",
            Recommendation::Fpe { .. } => "fpe",
            Recommendation::Tokenize { .. } => "tokenize",
            Recommendation::Mask { .. } => "mask",
            Recommendation::Generalize { .. } => "generalize",
            Recommendation::Redact { .. } => "redact",
        }
    }

    /// The TOML inline table for config, e.g. `{ action = "encrypt", key = "pii-main" }`.
    pub fn to_toml_action(&self) -> String {
        let mut s = format!("{{ action = {}", toml_str(self.action()));
        match self {
            Recommendation::Keep => {}
            Recommendation::Encrypt { key }
            | Recommendation::EncryptDeterministic { key }
            | Recommendation::Tokenize { key } => {
                let _ = write!(s, ", key = {}", toml_str(key));
            }
            Recommendation::Fpe { format, key } => {
                let f = match format {
                    FpeFormat::Ssn => "ssn",
                };
                let _ = write!(s, ", format = {}, key = {}", toml_str(f), toml_str(key));
            }
            Recommendation::Mask { keep_last } => {
                let _ = write!(s, ", keep_last = {keep_last}");
            }
            Recommendation::Generalize { to } => {
                let t = match to {
                    Granularity::Year => "year",
                };
                let _ = write!(s, ", to = {}", toml_str(t));
            }
            Recommendation::Redact { types } => {
                if !types.is_empty() {
                    let list: Vec<String> = types.iter().map(|t| toml_str(t)).collect();
                    let _ = write!(s, ", types = [{}]", list.join(", "));
                }
            }
        }
        s.push_str(" }");
        s
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The kind a column name suggests ("e_mail" -> email, "DateOfBirth" -> date_of_birth).
pub fn name_hint(column_name: &str) -> Option<PiiKind> {
    let tokens = name_tokens(column_name);
    let has = |w: &str| tokens.iter().any(|t| t == w);
    let joined: String = tokens.concat();
    let joined_has = |w: &str| joined.contains(w);
    if has("email") || has("mail") || joined_has("email") {
        return Some(PiiKind::Email);
    }
    if has("ip") || has("ipv4") || has("ipv6") || has("ipaddr") || joined_has("ipaddress") {
        return Some(PiiKind::Ip);
    }
    if has("ssn") || joined_has("socialsecurity") {
        return Some(PiiKind::Ssn);
    }
    if has("card")
        || has("cc")
        || has("ccn")
        || has("pan")
        || joined_has("creditcard")
        || joined_has("cardnumber")
    {
        return Some(PiiKind::Card);
    }
    if has("iban") || has("account") || has("acct") || joined_has("accountnumber") {
        return Some(PiiKind::Iban);
    }
    if [
        "phone",
        "tel",
        "telephone",
        "mobile",
        "cell",
        "fax",
        "msisdn",
    ]
    .iter()
    .any(|w| has(w))
        || joined_has("phone")
    {
        return Some(PiiKind::Phone);
    }
    if has("dob")
        || has("birth")
        || joined_has("birthdate")
        || joined_has("birthday")
        || joined_has("dateofbirth")
    {
        return Some(PiiKind::DateOfBirth);
    }
    if has("address") || has("street") || has("addr") || joined_has("address") {
        return Some(PiiKind::Address);
    }
    const NAMEISH: &[&str] = &[
        "name",
        "surname",
        "firstname",
        "lastname",
        "fullname",
        "forename",
        "givenname",
        "familyname",
    ];
    const QUALIFIERS: &[&str] = &[
        "first", "last", "full", "given", "middle", "family", "sur", "fore", "customer", "client",
        "contact", "person", "patient", "employee", "maiden", "legal",
    ];
    let named = tokens.iter().any(|t| NAMEISH.contains(&t.as_str()));
    let qualified = tokens
        .iter()
        .all(|t| NAMEISH.contains(&t.as_str()) || QUALIFIERS.contains(&t.as_str()));
    if named && qualified {
        return Some(PiiKind::Person);
    }
    None
}

/// Lower-case tokens of a column name, split at non-alphanumerics and camelCase humps.
fn name_tokens(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Lowest score of a whole-value reading that a matching column name can confirm.
const WEAK_SCORE: f32 = 0.4;

/// Values at least this long with at least this many spaces count as prose.
const TEXT_MIN_LEN: usize = 24;
const TEXT_MIN_SPACES: usize = 3;

/// Profiles a column: its name hint, the kinds of its values, whether it is free text, and a
/// recommended protection. `values` is usually a sample; nulls and blank values are skipped
/// and do not count in the ratios.
pub fn classify_column<'a>(
    detector: &Detector,
    column_name: &str,
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> ColumnProfile {
    let hint = name_hint(column_name);
    let mut whole: BTreeMap<PiiKind, (usize, f64)> = BTreeMap::new();
    let mut inside: BTreeMap<PiiKind, (usize, f64)> = BTreeMap::new();
    let mut non_null = 0usize;
    let mut texty = 0usize;
    let mut findings: Vec<Finding> = Vec::new();
    for v in values {
        let Some(v) = v else { continue };
        let t = v.trim();
        if t.is_empty() {
            continue;
        }
        non_null += 1;
        // Weak whole-value readings (ten bare digits as a phone number) count only when the
        // column name names that kind.
        if let Some((kind, score)) = detector.classify_cell(t, WEAK_SCORE)
            && (score >= detector.min_score() || hint == Some(kind))
        {
            let e = whole.entry(kind).or_default();
            e.0 += 1;
            e.1 += f64::from(score);
            continue;
        }
        if t.len() >= TEXT_MIN_LEN && t.bytes().filter(|&b| b == b' ').count() >= TEXT_MIN_SPACES {
            texty += 1;
            detector.detect_into(t, &mut findings);
            // Count each kind once per value.
            let mut seen: Vec<(PiiKind, f32)> = Vec::new();
            for f in &findings {
                match seen.iter_mut().find(|(k, _)| *k == f.kind) {
                    Some(s) => s.1 = s.1.max(f.score),
                    None => seen.push((f.kind, f.score)),
                }
            }
            for (kind, score) in seen {
                let e = inside.entry(kind).or_default();
                e.0 += 1;
                e.1 += f64::from(score);
            }
        }
    }
    let stats = |m: &BTreeMap<PiiKind, (usize, f64)>| -> Vec<ClassStat> {
        let mut v: Vec<ClassStat> = m
            .iter()
            .map(|(&kind, &(count, sum))| {
                let ratio = count as f64 / non_null.max(1) as f64;
                let mut confidence = ratio * (sum / count.max(1) as f64);
                if hint == Some(kind) {
                    confidence = (confidence + 0.2).min(1.0);
                }
                ClassStat {
                    kind,
                    match_ratio: ratio,
                    confidence,
                }
            })
            .collect();
        v.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.kind.cmp(&b.kind))
        });
        v
    };
    let classes = stats(&whole);
    let embedded = stats(&inside);
    let free_text = non_null > 0 && texty * 2 >= non_null;
    let recommended = recommend(detector, hint, &classes, &embedded, free_text);
    ColumnProfile {
        name_hint: hint,
        classes,
        embedded,
        free_text,
        values: non_null,
        recommended,
    }
}

/// Whole-value evidence first, then free-text findings, then the column name; a column whose
/// name says personal data is protected even when the sample is empty or unclear.
fn recommend(
    detector: &Detector,
    hint: Option<PiiKind>,
    classes: &[ClassStat],
    embedded: &[ClassStat],
    free_text: bool,
) -> Recommendation {
    // A date is personal only as a date of birth: without the column name saying so, a
    // column of dates (created_at, shipped_on) is left to the other rules.
    let top = classes
        .iter()
        .find(|c| c.kind != PiiKind::DateOfBirth || hint == Some(c.kind));
    if let Some(top) = top
        && (top.match_ratio >= 0.5 || (hint == Some(top.kind) && top.match_ratio >= 0.2))
    {
        return Recommendation::for_kind(top.kind);
    }
    if free_text && !embedded.is_empty() {
        let mut kinds: Vec<PiiKind> = embedded.iter().map(|c| c.kind).collect();
        kinds.sort();
        return Recommendation::Redact {
            types: kinds
                .iter()
                .map(|&k| detector.kind_name(k).to_owned())
                .collect(),
        };
    }
    match hint {
        Some(k) => Recommendation::for_kind(k),
        None => Recommendation::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        let cases = [
            ("email", Some(PiiKind::Email)),
            ("e_mail", Some(PiiKind::Email)),
            ("EmailAddress", Some(PiiKind::Email)),
            ("phone", Some(PiiKind::Phone)),
            ("mobile_no", Some(PiiKind::Phone)),
            ("tel", Some(PiiKind::Phone)),
            ("ssn", Some(PiiKind::Ssn)),
            ("social_security", Some(PiiKind::Ssn)),
            ("credit_card", Some(PiiKind::Card)),
            ("cc", Some(PiiKind::Card)),
            ("pan", Some(PiiKind::Card)),
            ("iban", Some(PiiKind::Iban)),
            ("account", Some(PiiKind::Iban)),
            ("ip", Some(PiiKind::Ip)),
            ("ip_address", Some(PiiKind::Ip)),
            ("dob", Some(PiiKind::DateOfBirth)),
            ("birth_date", Some(PiiKind::DateOfBirth)),
            ("date_of_birth", Some(PiiKind::DateOfBirth)),
            ("DateOfBirth", Some(PiiKind::DateOfBirth)),
            ("name", Some(PiiKind::Person)),
            ("full_name", Some(PiiKind::Person)),
            ("first_name", Some(PiiKind::Person)),
            ("last_name", Some(PiiKind::Person)),
            ("surname", Some(PiiKind::Person)),
            ("address", Some(PiiKind::Address)),
            ("street", Some(PiiKind::Address)),
            ("product_name", None),
            ("salary", None),
            ("id", None),
            ("notes", None),
        ];
        for (name, want) in cases {
            assert_eq!(name_hint(name), want, "{name}");
        }
    }

    #[test]
    fn toml_actions() {
        let r = |k| Recommendation::for_kind(k).to_toml_action();
        assert_eq!(
            r(PiiKind::Email),
            r#"{ action = "encrypt", key = "pii-main" }"#
        );
        assert_eq!(
            r(PiiKind::Person),
            r#"{ action = "encrypt_deterministic", key = "joins" }"#
        );
        assert_eq!(
            r(PiiKind::Ssn),
            r#"{ action = "fpe", format = "ssn", key = "fpe-main" }"#
        );
        assert_eq!(
            r(PiiKind::Card),
            r#"{ action = "tokenize", key = "tokens" }"#
        );
        assert_eq!(r(PiiKind::Phone), r#"{ action = "mask", keep_last = 4 }"#);
        assert_eq!(
            r(PiiKind::Iban),
            r#"{ action = "tokenize", key = "tokens" }"#
        );
        assert_eq!(r(PiiKind::Ip), r#"{ action = "tokenize", key = "tokens" }"#);
        assert_eq!(
            r(PiiKind::DateOfBirth),
            r#"{ action = "generalize", to = "year" }"#
        );
        assert_eq!(r(PiiKind::Address), r#"{ action = "redact" }"#);
        let red = Recommendation::Redact {
            types: vec!["email".into(), "phone".into()],
        };
        assert_eq!(
            red.to_toml_action(),
            r#"{ action = "redact", types = ["email", "phone"] }"#
        );
        assert_eq!(
            Recommendation::Keep.to_toml_action(),
            r#"{ action = "keep" }"#
        );
    }
}
