//! Format-preserving encryption with FF1 (NIST SP 800-38G) over AES-256, from the `fpe` crate.
//!
//! Characters outside the mode's alphabet (separators such as `-`, spaces) stay where they
//! are; the output has the input's length. The tweak binds the column, like the associated
//! data of the other modes. FF3-1 is not offered: no maintained Rust crate implements it (see
//! docs/crypto.md).
//!
//! Modes:
//! - [`Format::Digits`]: every ASCII digit, radix 10, at least 6 digits (NIST's minimum domain
//!   of one million values).
//! - [`Format::Alphanumeric`]: every ASCII letter and digit, radix 62, at least 4 of them.
//! - [`Format::Card`]: 13-19 digit card numbers that pass Luhn. The first six digits (the
//!   issuer prefix) stay, the digits between it and the check digit are encrypted, and the
//!   check digit is recomputed, so the output is a valid-looking card of the same issuer.
//! - [`Format::Ssn`]: nine-digit US SSNs with a valid structure (area not 000, 666 or 900-999;
//!   group not 00; serial not 0000). Cycle-walking keeps the output in that set.

use aes::Aes256;
use fpe::ff1::{FF1, FlexibleNumeralString};

use crate::{CryptoError, SecretBytes};

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Digits, separators kept.
    Digits,
    /// Letters and digits, separators kept.
    Alphanumeric,
    /// Payment card number (Luhn kept valid, issuer prefix kept).
    Card,
    /// US social security number (valid structure kept).
    Ssn,
}

impl Format {
    /// Parses `digits`, `alphanumeric`, `card`, `ssn`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "digits" => Self::Digits,
            "alphanumeric" => Self::Alphanumeric,
            "card" | "credit_card" => Self::Card,
            "ssn" => Self::Ssn,
            _ => return None,
        })
    }
}

const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MAX_CYCLE_WALK: usize = 10_000;

/// FF1 under one 256-bit key.
pub struct FpeCipher {
    radix10: FF1<Aes256>,
    radix62: FF1<Aes256>,
}

impl std::fmt::Debug for FpeCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FpeCipher([redacted])")
    }
}

fn ff1(key: &SecretBytes, radix: u32) -> Result<FF1<Aes256>, CryptoError> {
    if key.len() != 32 {
        return Err(CryptoError::KeySize {
            algorithm: "FF1-AES-256",
            expected: 32,
        });
    }
    FF1::<Aes256>::new(key.expose(), radix).map_err(|_| CryptoError::Domain("invalid radix".into()))
}

/// Luhn check digit for `payload` (digit values, check digit excluded).
pub fn luhn_check_digit(payload: &[u16]) -> u16 {
    let mut sum = 0u32;
    for (i, d) in payload.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - sum % 10) % 10) as u16
}

/// Whether digit values pass the Luhn check.
pub fn luhn_valid(digits: &[u16]) -> bool {
    match digits.split_last() {
        Some((check, payload)) => luhn_check_digit(payload) == *check,
        None => false,
    }
}

/// Whether nine digit values form a structurally valid SSN.
pub fn ssn_valid(d: &[u16]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let num = |s: &[u16]| s.iter().fold(0u32, |a, x| a * 10 + u32::from(*x));
    let (area, group, serial) = (num(&d[..3]), num(&d[3..5]), num(&d[5..]));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

impl FpeCipher {
    /// FF1 with `key` (32 bytes).
    pub fn new(key: &SecretBytes) -> Result<Self, CryptoError> {
        Ok(Self {
            radix10: ff1(key, 10)?,
            radix62: ff1(key, 62)?,
        })
    }

    /// Encrypts `value` in `format` with `tweak` (the column binding).
    pub fn encrypt(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
    ) -> Result<String, CryptoError> {
        self.apply(value, format, tweak, true)
    }

    /// Decrypts what [`FpeCipher::encrypt`] produced with the same format and tweak.
    pub fn decrypt(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
    ) -> Result<String, CryptoError> {
        self.apply(value, format, tweak, false)
    }

    fn run(
        &self,
        radix62: bool,
        tweak: &[u8],
        numerals: Vec<u16>,
        encrypt: bool,
    ) -> Result<Vec<u16>, CryptoError> {
        let f = if radix62 {
            &self.radix62
        } else {
            &self.radix10
        };
        ff1_apply(f, tweak, numerals, encrypt)
    }

    fn apply(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
        encrypt: bool,
    ) -> Result<String, CryptoError> {
        let bytes = value.as_bytes();
        let alnum = format == Format::Alphanumeric;
        let positions: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                if alnum {
                    b.is_ascii_alphanumeric()
                } else {
                    b.is_ascii_digit()
                }
            })
            .map(|(i, _)| i)
            .collect();
        let numerals: Vec<u16> = positions
            .iter()
            .map(|&i| {
                let b = bytes[i];
                if alnum {
                    ALNUM.iter().position(|c| *c == b).unwrap_or(0) as u16
                } else {
                    u16::from(b - b'0')
                }
            })
            .collect();
        let out: Vec<u16> = match format {
            Format::Digits => {
                if numerals.len() < 6 {
                    return Err(CryptoError::Domain(format!(
                        "value has {} digits; FF1 needs at least 6",
                        numerals.len()
                    )));
                }
                self.run(false, tweak, numerals, encrypt)?
            }
            Format::Alphanumeric => {
                if numerals.len() < 4 {
                    return Err(CryptoError::Domain(format!(
                        "value has {} letters and digits; FF1 needs at least 4",
                        numerals.len()
                    )));
                }
                self.run(true, tweak, numerals, encrypt)?
            }
            Format::Card => {
                let n = numerals.len();
                if !(13..=19).contains(&n) {
                    return Err(CryptoError::Domain(format!(
                        "card numbers have 13 to 19 digits, found {n}"
                    )));
                }
                if encrypt && !luhn_valid(&numerals) {
                    return Err(CryptoError::Domain(
                        "card number fails the Luhn check".into(),
                    ));
                }
                let middle = self.run(false, tweak, numerals[6..n - 1].to_vec(), encrypt)?;
                let mut out = numerals[..6].to_vec();
                out.extend(middle);
                let check = luhn_check_digit(&out);
                out.push(check);
                out
            }
            Format::Ssn => {
                if numerals.len() != 9 || !ssn_valid(&numerals) {
                    return Err(CryptoError::Domain(
                        "not a structurally valid nine-digit SSN".into(),
                    ));
                }
                // Cycle-walking: FF1 permutes all 10^9 strings; repeat until the result is a
                // valid SSN, which makes a permutation of the valid set.
                let mut cur = numerals;
                let mut walked = 0;
                loop {
                    cur = self.run(false, tweak, cur, encrypt)?;
                    if ssn_valid(&cur) {
                        break cur;
                    }
                    walked += 1;
                    if walked > MAX_CYCLE_WALK {
                        return Err(CryptoError::Domain(
                            "SSN cycle-walk did not converge".into(),
                        ));
                    }
                }
            }
        };
        let mut result = bytes.to_vec();
        for (&pos, &v) in positions.iter().zip(out.iter()) {
            result[pos] = if alnum {
                ALNUM[v as usize]
            } else {
                b'0' + v as u8
            };
        }
        String::from_utf8(result).map_err(|_| CryptoError::Malformed("output is not UTF-8"))
    }
}

fn ff1_apply(
    f: &FF1<Aes256>,
    tweak: &[u8],
    numerals: Vec<u16>,
    encrypt: bool,
) -> Result<Vec<u16>, CryptoError> {
    let ns = FlexibleNumeralString::from(numerals);
    let out = if encrypt {
        f.encrypt(tweak, &ns)
    } else {
        f.decrypt(tweak, &ns)
    };
    out.map(Vec::from)
        .map_err(|e| CryptoError::Domain(format!("FF1: {e}")))
}

/// Raw FF1-AES-256 over numerals, for the NIST sample vectors.
pub fn raw_ff1(
    key: &[u8],
    radix: u32,
    tweak: &[u8],
    numerals: Vec<u16>,
    encrypt: bool,
) -> Result<Vec<u16>, CryptoError> {
    ff1_apply(
        &ff1(&SecretBytes::new(key.to_vec()), radix)?,
        tweak,
        numerals,
        encrypt,
    )
}
