//! What a kernel is built from: one protection operation with its options, typed. Names
//! (an FPE format, a token encoding, a generalization level) are parsed once, where the
//! operation is described (the engine's `protect` transform, a SQL call), so a [`Protection`]
//! holds no option a kernel could still reject as unknown.

use std::num::NonZeroU32;

use crate::KernelError;
use crate::mask::MaskSpec;

pub use custos_crypto::fpe::Format as FpeFormat;
pub use custos_crypto::token::Encoding as TokenEncoding;

/// Token bytes kept when a `tokenize` names no length.
pub const DEFAULT_TOKEN_LENGTH: usize = 16;

/// The PII types `redact` looks for when it names none.
pub const DEFAULT_REDACT_TYPES: &[&str] = &["email", "phone", "ssn", "card", "iban", "ip"];

/// One protection operation. Dropping a column is not one: it needs no kernel, so whoever
/// describes the columns (the engine) handles it.
#[derive(Debug, Clone, PartialEq)]
pub enum Protection {
    /// AES-256-GCM, randomized: `cx1.` text.
    Encrypt {
        /// Key name (purpose `aead`).
        key: String,
    },
    /// Reverses `encrypt`.
    Decrypt {
        /// Key name the ciphertexts must name.
        key: String,
    },
    /// AES-SIV, deterministic (joinable): `cs1.` text.
    EncryptDeterministic {
        /// Key name (purpose `daead`).
        key: String,
    },
    /// Reverses `encrypt_deterministic`.
    DecryptDeterministic {
        /// Key name the ciphertexts must name.
        key: String,
    },
    /// FF1 format-preserving encryption.
    Fpe {
        /// Key name (purpose `fpe`).
        key: String,
        /// The alphabet and the characters kept.
        format: FpeFormat,
        /// Key version (`None`: the primary).
        version: Option<u32>,
    },
    /// Reverses `fpe`.
    FpeDecrypt {
        /// Key name.
        key: String,
        /// The format the values were encrypted with.
        format: FpeFormat,
        /// Key version (`None`: the primary).
        version: Option<u32>,
    },
    /// HMAC-SHA256 token.
    Tokenize {
        /// Key name (purpose `hmac`).
        key: String,
        /// Bytes of MAC kept (the tokenizer accepts 8 to 32).
        length: usize,
        /// Text encoding of the token.
        encoding: TokenEncoding,
    },
    /// Replaces characters with a mask character.
    Mask(MaskSpec),
    /// Replaces detected PII spans in free text.
    Redact {
        /// PII types to redact (built-in kinds or custom detector names).
        types: Vec<String>,
        /// What replaces a span.
        with: RedactWith,
    },
    /// Coarsens values.
    Generalize(Generalize),
    /// Shifts dates by a per-subject offset in `[-max_days, max_days]` from a keyed hash; the
    /// subject column is passed to the kernel when it is applied.
    DateShift {
        /// Key name (purpose `hmac`).
        key: String,
        /// Largest shift in days.
        max_days: NonZeroU32,
    },
}

/// What replaces a span that `redact` detects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedactWith {
    /// The type's label: `<EMAIL>`.
    Label,
    /// The label and a keyed token of the span: `<EMAIL:token>`.
    Token {
        /// Key name (purpose `hmac`).
        key: String,
    },
    /// An AES-256-GCM ciphertext of the span, bound to the column.
    Encrypt {
        /// Key name (purpose `aead`).
        key: String,
    },
}

/// How `generalize` coarsens a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generalize {
    /// Dates and timestamps to the first day of their month.
    Month,
    /// Dates and timestamps to the first day of their year.
    Year,
    /// Numbers to the lower bound of their bucket.
    Bucket(BucketWidth),
    /// Text: digits past the first this many become `*`.
    ZipDigits(usize),
}

/// What a bad generalization says: the one text for the config and SQL paths.
const GENERALIZE_USAGE: &str =
    "generalize needs exactly one of to = \"month\"|\"year\", bucket (> 0) or zip_digits";

impl Generalize {
    /// The date level named `month` or `year`.
    pub fn level(name: &str) -> Result<Self, KernelError> {
        match name {
            "month" => Ok(Self::Month),
            "year" => Ok(Self::Year),
            _ => Err(Self::usage()),
        }
    }

    /// Numbers to buckets `width` wide (positive and finite).
    pub fn bucket(width: f64) -> Result<Self, KernelError> {
        BucketWidth::new(width)
            .map(Self::Bucket)
            .ok_or_else(Self::usage)
    }

    /// The error for a generalization that names no single valid coarsening.
    pub fn usage() -> KernelError {
        KernelError::Config(GENERALIZE_USAGE.into())
    }
}

/// A bucket width: positive and finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketWidth(f64);

impl BucketWidth {
    /// `width` if it is positive and finite.
    pub fn new(width: f64) -> Option<Self> {
        (width > 0.0 && width.is_finite()).then_some(Self(width))
    }

    /// The width.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// The FPE format named `name` (`digits`, `alphanumeric`, `card` or `ssn`).
pub fn fpe_format(name: &str) -> Result<FpeFormat, KernelError> {
    FpeFormat::parse(name).ok_or_else(|| {
        KernelError::Config(format!(
            "unknown FPE format \"{name}\"; expected digits, alphanumeric, card or ssn"
        ))
    })
}

/// The token encoding named `name` (`hex` or `base64url`).
pub fn token_encoding(name: &str) -> Result<TokenEncoding, KernelError> {
    match name {
        "hex" => Ok(TokenEncoding::Hex),
        "base64url" => Ok(TokenEncoding::Base64Url),
        _ => Err(KernelError::Config(format!(
            "unknown token encoding \"{name}\"; expected hex or base64url"
        ))),
    }
}

/// `max_days` of a date shift: at least 1.
pub fn max_days(days: u32) -> Result<NonZeroU32, KernelError> {
    NonZeroU32::new(days).ok_or_else(|| KernelError::Config("max_days must be at least 1".into()))
}

impl Protection {
    /// The operation's name (`encrypt`, `fpe`, `mask`, ...), as the config's `action` and in
    /// the protected-field metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Encrypt { .. } => "encrypt",
            Self::Decrypt { .. } => "decrypt",
            Self::EncryptDeterministic { .. } => "encrypt_deterministic",
            Self::DecryptDeterministic { .. } => "decrypt_deterministic",
            Self::Fpe { .. } => "fpe",
            Self::FpeDecrypt { .. } => "fpe_decrypt",
            Self::Tokenize { .. } => "tokenize",
            Self::Mask(_) => "mask",
            Self::Redact { .. } => "redact",
            Self::Generalize(_) => "generalize",
            Self::DateShift { .. } => "date_shift",
        }
    }

    /// Whether the output is plaintext again (a decrypting operation).
    pub fn reveals(&self) -> bool {
        matches!(
            self,
            Self::Decrypt { .. } | Self::DecryptDeterministic { .. } | Self::FpeDecrypt { .. }
        )
    }

    /// Whether equal inputs give equal outputs under a key (tokens, SIV, FPE, keyed date
    /// shifts, redaction tokens): whoever may run such an operation on inputs of their
    /// choosing can build a codebook. Random encryption, and operations without a key, are
    /// not.
    pub fn deterministic(&self) -> bool {
        match self {
            Self::EncryptDeterministic { .. }
            | Self::DecryptDeterministic { .. }
            | Self::Fpe { .. }
            | Self::FpeDecrypt { .. }
            | Self::Tokenize { .. }
            | Self::DateShift { .. } => true,
            Self::Redact { with, .. } => matches!(with, RedactWith::Token { .. }),
            Self::Encrypt { .. } | Self::Decrypt { .. } | Self::Mask(_) | Self::Generalize(_) => {
                false
            }
        }
    }

    /// The name of the key the operation uses, if it uses one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Encrypt { key }
            | Self::Decrypt { key }
            | Self::EncryptDeterministic { key }
            | Self::DecryptDeterministic { key }
            | Self::Fpe { key, .. }
            | Self::FpeDecrypt { key, .. }
            | Self::Tokenize { key, .. }
            | Self::DateShift { key, .. }
            | Self::Redact {
                with: RedactWith::Token { key } | RedactWith::Encrypt { key },
                ..
            } => Some(key),
            Self::Redact {
                with: RedactWith::Label,
                ..
            }
            | Self::Mask(_)
            | Self::Generalize(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_option_names() {
        assert_eq!(fpe_format("ssn").unwrap(), FpeFormat::Ssn);
        assert_eq!(
            fpe_format("roman").unwrap_err().to_string(),
            "unknown FPE format \"roman\"; expected digits, alphanumeric, card or ssn"
        );
        assert_eq!(token_encoding("hex").unwrap(), TokenEncoding::Hex);
        assert_eq!(
            token_encoding("base64url").unwrap(),
            TokenEncoding::Base64Url
        );
        assert_eq!(
            token_encoding("b64").unwrap_err().to_string(),
            "unknown token encoding \"b64\"; expected hex or base64url"
        );
        assert_eq!(max_days(30).unwrap().get(), 30);
        assert_eq!(
            max_days(0).unwrap_err().to_string(),
            "max_days must be at least 1"
        );
    }

    #[test]
    fn generalizations_are_checked() {
        assert_eq!(Generalize::level("year").unwrap(), Generalize::Year);
        assert_eq!(Generalize::level("month").unwrap(), Generalize::Month);
        assert_eq!(
            Generalize::bucket(2.5).unwrap(),
            Generalize::Bucket(BucketWidth(2.5))
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                Generalize::bucket(bad).unwrap_err().to_string(),
                GENERALIZE_USAGE
            );
        }
        assert_eq!(
            Generalize::level("decade").unwrap_err().to_string(),
            GENERALIZE_USAGE
        );
    }

    #[test]
    fn keys_and_determinism() {
        let key = || "k".to_string();
        let redact = |with| Protection::Redact {
            types: vec!["email".into()],
            with,
        };
        let cases = [
            (Protection::Encrypt { key: key() }, Some("k"), false, false),
            (Protection::Decrypt { key: key() }, Some("k"), false, true),
            (
                Protection::EncryptDeterministic { key: key() },
                Some("k"),
                true,
                false,
            ),
            (
                Protection::DecryptDeterministic { key: key() },
                Some("k"),
                true,
                true,
            ),
            (
                Protection::Fpe {
                    key: key(),
                    format: FpeFormat::Digits,
                    version: None,
                },
                Some("k"),
                true,
                false,
            ),
            (
                Protection::FpeDecrypt {
                    key: key(),
                    format: FpeFormat::Digits,
                    version: Some(1),
                },
                Some("k"),
                true,
                true,
            ),
            (
                Protection::Tokenize {
                    key: key(),
                    length: DEFAULT_TOKEN_LENGTH,
                    encoding: TokenEncoding::Hex,
                },
                Some("k"),
                true,
                false,
            ),
            (Protection::Mask(MaskSpec::default()), None, false, false),
            (redact(RedactWith::Label), None, false, false),
            (
                redact(RedactWith::Token { key: key() }),
                Some("k"),
                true,
                false,
            ),
            (
                redact(RedactWith::Encrypt { key: key() }),
                Some("k"),
                false,
                false,
            ),
            (
                Protection::Generalize(Generalize::ZipDigits(3)),
                None,
                false,
                false,
            ),
            (
                Protection::DateShift {
                    key: key(),
                    max_days: NonZeroU32::MIN,
                },
                Some("k"),
                true,
                false,
            ),
        ];
        for (p, k, det, reveals) in cases {
            assert_eq!(p.key(), k, "{}", p.name());
            assert_eq!(p.deterministic(), det, "{}", p.name());
            assert_eq!(p.reveals(), reveals, "{}", p.name());
        }
    }
}
