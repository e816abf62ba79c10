//! The `protect` transform and the `[danger]` table.

use serde::Deserialize;

/// `type = "protect"`: one protection action per column; other columns pass unchanged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectTransform {
    /// `columns.NAME = { action = "...", ... }`, in declaration order.
    pub columns: ColumnActions,
    /// Keystore file (default: `$CUSTOS_KEYSTORE`, or `keystore.ck` in the state directory).
    #[serde(default)]
    pub keystore: Option<String>,
}

/// Column actions in declaration order.
#[derive(Debug, Clone, Default)]
pub struct ColumnActions(pub Vec<(String, ColumnAction)>);

impl<'de> Deserialize<'de> for ColumnActions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ColumnActions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of column name = { action = \"...\" }")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<ColumnActions, A::Error> {
                let mut cols = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    let v: ColumnAction = m.next_value()?;
                    cols.push((k, v));
                }
                Ok(ColumnActions(cols))
            }
        }
        d.deserialize_map(V)
    }
}

/// What happens to one column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ColumnAction {
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
        /// `digits`, `alphanumeric`, `card` or `ssn`.
        format: String,
        /// Key version (default: the primary). FPE output carries no header, so decrypting
        /// after a rotation needs the version it was written with.
        #[serde(default)]
        version: Option<u32>,
    },
    /// Reverses `fpe`.
    FpeDecrypt {
        /// Key name.
        key: String,
        /// The format it was encrypted with.
        format: String,
        /// Key version (default: the primary).
        #[serde(default)]
        version: Option<u32>,
    },
    /// HMAC-SHA256 token.
    Tokenize {
        /// Key name (purpose `hmac`).
        key: String,
        /// Bytes of MAC kept, 8 to 32 (default 16).
        #[serde(default)]
        length: Option<usize>,
        /// `hex` (default) or `base64url`.
        #[serde(default)]
        encoding: Option<String>,
    },
    /// Replaces characters with a mask character.
    Mask {
        /// Characters kept at the start (default 0).
        #[serde(default)]
        keep_first: usize,
        /// Characters kept at the end (default 0).
        #[serde(default)]
        keep_last: usize,
        /// Mask character (default `*`).
        #[serde(default)]
        char: Option<String>,
        /// Keep non-alphanumeric characters (separators) and count only letters and digits
        /// for `keep_first`/`keep_last` (default true).
        #[serde(default)]
        keep_separators: Option<bool>,
        /// Email-aware: keep the first character of the local part and the domain.
        #[serde(default)]
        email: bool,
        /// Pattern applied position by position: `#` keeps the character, `*` masks it, any
        /// other character is written as is; positions past the pattern are masked.
        #[serde(default)]
        pattern: Option<String>,
    },
    /// Replaces detected PII spans in free text.
    Redact {
        /// PII types to redact (default: email, phone, ssn, card, iban, ip).
        #[serde(default)]
        types: Option<Vec<String>>,
        /// `label` (`<EMAIL>`, default), `token` (`<EMAIL:token>`, needs `key` of purpose
        /// hmac) or `encrypt` (AES-GCM ciphertext of the span, needs `key` of purpose aead).
        #[serde(default)]
        with: Option<String>,
        /// Key for `with = "token"` or `"encrypt"`.
        #[serde(default)]
        key: Option<String>,
    },
    /// Coarsens values: dates to month or year, numbers to buckets, text to a ZIP prefix.
    Generalize {
        /// For dates and timestamps: `month` or `year`.
        #[serde(default)]
        to: Option<String>,
        /// For numbers: bucket width (values become the bucket's lower bound).
        #[serde(default)]
        bucket: Option<f64>,
        /// For text: digits kept at the start (`88725` with 3 -> `887**`).
        #[serde(default)]
        zip_digits: Option<usize>,
    },
    /// Shifts dates by a per-subject offset in `[-max_days, max_days]` from a keyed hash.
    DateShift {
        /// Largest shift in days.
        max_days: u32,
        /// Column whose value picks the offset (the same subject always gets the same one).
        subject: String,
        /// Key name (purpose `hmac`).
        key: String,
    },
    /// Removes the column.
    Drop,
}

impl ColumnAction {
    /// The `action` tag.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Encrypt { .. } => "encrypt",
            Self::Decrypt { .. } => "decrypt",
            Self::EncryptDeterministic { .. } => "encrypt_deterministic",
            Self::DecryptDeterministic { .. } => "decrypt_deterministic",
            Self::Fpe { .. } => "fpe",
            Self::FpeDecrypt { .. } => "fpe_decrypt",
            Self::Tokenize { .. } => "tokenize",
            Self::Mask { .. } => "mask",
            Self::Redact { .. } => "redact",
            Self::Generalize { .. } => "generalize",
            Self::DateShift { .. } => "date_shift",
            Self::Drop => "drop",
        }
    }

    /// Whether the output is plaintext again (a decrypting action).
    pub fn reveals(&self) -> bool {
        matches!(
            self,
            Self::Decrypt { .. } | Self::DecryptDeterministic { .. } | Self::FpeDecrypt { .. }
        )
    }

    /// Key names the action uses.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Self::Encrypt { key }
            | Self::Decrypt { key }
            | Self::EncryptDeterministic { key }
            | Self::DecryptDeterministic { key }
            | Self::Fpe { key, .. }
            | Self::FpeDecrypt { key, .. }
            | Self::Tokenize { key, .. }
            | Self::DateShift { key, .. } => vec![key.as_str()],
            Self::Redact { key, .. } => key.iter().map(String::as_str).collect(),
            Self::Mask { .. } | Self::Generalize { .. } | Self::Drop => Vec::new(),
        }
    }
}

/// The `[danger]` table: switches that weaken protection, each logged loudly when used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DangerSection {
    /// `"SINK.COLUMN"` pairs allowed to reach a sink as plaintext PII.
    #[serde(default)]
    pub allow_plaintext: Vec<String>,
    /// Permits PostgreSQL connections with `sslmode = "require"` (unverified TLS) or
    /// `"disable"` (plaintext). Logged and audited.
    #[serde(default)]
    pub allow_insecure_db: bool,
}

impl DangerSection {
    /// Whether `sink.column` may carry plaintext PII.
    pub fn allows(&self, sink: &str, column: &str) -> bool {
        self.allow_plaintext.iter().any(|e| {
            e.split_once('.')
                .is_some_and(|(s, c)| s == sink && (c == column || c == "*"))
        })
    }
}

/// The `[detection]` table: the detector settings shared by `redact`, the PII gate and
/// `custos scan`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSection {
    /// Findings scoring below this are ignored (default 0.5).
    #[serde(default)]
    pub min_score: Option<f32>,
    /// Extra detectors: `{ name, pattern, checksum = "luhn" | "mod97", context = [...], score }`.
    #[serde(default)]
    pub custom: Vec<custos_detect::CustomDetector>,
}

impl DetectionSection {
    /// The detector configuration: every built-in kind plus the custom detectors.
    pub fn detector_config(&self) -> custos_detect::DetectorConfig {
        let mut c = custos_detect::DetectorConfig {
            custom: self.custom.clone(),
            ..Default::default()
        };
        if let Some(m) = self.min_score {
            c.min_score = m;
        }
        c
    }
}
