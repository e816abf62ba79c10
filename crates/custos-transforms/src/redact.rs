//! Redaction of detected personal data inside free text.

use std::sync::Arc;

use custos_crypto::CellEncryptor;
use custos_crypto::aead::AeadEncryptor;
use custos_detect::{Detector, DetectorConfig, Finding, PiiKind};

use crate::kernel::{KernelError, Replacement};

/// Finds PII spans with a [`Detector`] and replaces them.
#[derive(Debug, Clone)]
pub struct Redactor {
    detector: Arc<Detector>,
    replacement: Replacement,
}

/// Per-batch state: reused buffers and, for `with = "encrypt"`, the encryptor.
pub(crate) struct RedactState {
    findings: Vec<Finding>,
    encryptor: Option<AeadEncryptor>,
    scratch: Vec<u8>,
    context: Vec<u8>,
}

impl Redactor {
    /// A redactor for the named PII types (`email`, `phone`, ..., or the name of a custom
    /// detector of `base`), replacing with labels.
    pub fn new(types: &[String], base: &DetectorConfig) -> Result<Self, KernelError> {
        let mut kinds = Vec::with_capacity(types.len());
        let mut custom = Vec::new();
        for t in types {
            if let Some(c) = base.custom.iter().find(|c| &c.name == t) {
                custom.push(c.clone());
                continue;
            }
            kinds.push(
                t.parse::<PiiKind>()
                    .map_err(|e| KernelError::Config(e.to_string()))?,
            );
        }
        let detector = Detector::new(DetectorConfig {
            enabled: kinds,
            min_score: base.min_score,
            custom,
        })
        .map_err(|e| KernelError::Config(e.to_string()))?;
        Ok(Self::with_detector(Arc::new(detector)))
    }

    /// A redactor over an existing detector, replacing with labels.
    pub fn with_detector(detector: Arc<Detector>) -> Self {
        Self {
            detector,
            replacement: Replacement::Label,
        }
    }

    pub(crate) fn set_replacement(&mut self, r: Replacement) {
        self.replacement = r;
    }

    /// Whether the output differs between calls on the same input (ciphertext replacement).
    pub fn is_volatile(&self) -> bool {
        matches!(self.replacement, Replacement::Encrypt { .. })
    }

    pub(crate) fn state(&self, context: &[u8]) -> Result<RedactState, KernelError> {
        let encryptor = match &self.replacement {
            Replacement::Encrypt { id, version, key } => Some(
                AeadEncryptor::new(*id, *version, key)
                    .map_err(|e| KernelError::Config(e.to_string()))?,
            ),
            _ => None,
        };
        Ok(RedactState {
            findings: Vec::with_capacity(8),
            encryptor,
            scratch: Vec::with_capacity(128),
            context: context.to_vec(),
        })
    }

    /// Appends `text` with every detected span replaced to `out`.
    pub(crate) fn redact(
        &self,
        text: &str,
        state: &mut RedactState,
        out: &mut String,
    ) -> Result<(), String> {
        state.findings.clear();
        self.detector.detect_into(text, &mut state.findings);
        let mut at = 0;
        for f in &state.findings {
            if f.start < at || f.end > text.len() {
                continue;
            }
            out.push_str(&text[at..f.start]);
            let label = self.detector.kind_name(f.kind).to_ascii_uppercase();
            match &self.replacement {
                Replacement::Label => {
                    out.push('<');
                    out.push_str(&label);
                    out.push('>');
                }
                Replacement::Token(t) => {
                    out.push('<');
                    out.push_str(&label);
                    out.push(':');
                    t.token_into(&text.as_bytes()[f.start..f.end], out);
                    out.push('>');
                }
                Replacement::Encrypt { .. } => {
                    let enc = state
                        .encryptor
                        .as_mut()
                        .ok_or_else(|| "redact encryptor missing".to_string())?;
                    enc.encrypt_text_into(
                        &text[f.start..f.end],
                        &state.context,
                        &mut state.scratch,
                        out,
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
            at = f.end;
        }
        out.push_str(&text[at..]);
        Ok(())
    }
}
