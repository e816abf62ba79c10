//! Format-preserving encryption with FF1 (NIST SP 800-38G) over AES-256.
//!
//! The AES block cipher is aws-lc's (ECB over single blocks). For domains below 2^64 (up to 19 digits, 12
//! base-36 or 10 base-62 characters per half, which covers cards, SSNs and account numbers)
//! the ten Feistel rounds run on machine integers ([`ff1_small`]); the `fpe` crate, whose
//! arbitrary-precision arithmetic costs about 6 us per cell, handles longer values. Both are
//! checked against the NIST samples, and against each other on random inputs.
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
use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
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
    aes: Block,
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
            aes: aes256(key.expose())?,
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
        let mut out = String::new();
        self.apply(
            value,
            format,
            tweak,
            true,
            &mut FpeScratch::default(),
            &mut out,
        )?;
        Ok(out)
    }

    /// Decrypts what [`FpeCipher::encrypt`] produced with the same format and tweak.
    pub fn decrypt(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
    ) -> Result<String, CryptoError> {
        let mut out = String::new();
        self.apply(
            value,
            format,
            tweak,
            false,
            &mut FpeScratch::default(),
            &mut out,
        )?;
        Ok(out)
    }

    /// [`FpeCipher::encrypt`] appending to `out`, with buffers kept in `scratch` between
    /// calls (one scratch per batch: no allocation per value).
    pub fn encrypt_into(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
        scratch: &mut FpeScratch,
        out: &mut String,
    ) -> Result<(), CryptoError> {
        self.apply(value, format, tweak, true, scratch, out)
    }

    /// [`FpeCipher::decrypt`] appending to `out`, with buffers kept in `scratch`.
    pub fn decrypt_into(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
        scratch: &mut FpeScratch,
        out: &mut String,
    ) -> Result<(), CryptoError> {
        self.apply(value, format, tweak, false, scratch, out)
    }

    /// FF1 over `numerals` into `out`, in radix 62 or 10.
    fn run(
        &self,
        radix62: bool,
        tweak: &[u8],
        numerals: &[u16],
        encrypt: bool,
        out: &mut Vec<u16>,
    ) -> Result<(), CryptoError> {
        let (f, radix) = if radix62 {
            (&self.radix62, 62)
        } else {
            (&self.radix10, 10)
        };
        ff1_apply(&self.aes, f, radix, tweak, numerals, encrypt, out)
    }

    fn apply(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
        encrypt: bool,
        s: &mut FpeScratch,
        result: &mut String,
    ) -> Result<(), CryptoError> {
        let bytes = value.as_bytes();
        let alnum = format == Format::Alphanumeric;
        s.positions.clear();
        s.numerals.clear();
        for (i, &b) in bytes.iter().enumerate() {
            let digit = if alnum {
                b.is_ascii_alphanumeric()
            } else {
                b.is_ascii_digit()
            };
            if digit {
                s.positions.push(i);
                s.numerals.push(if alnum {
                    ALNUM.iter().position(|c| *c == b).unwrap_or(0) as u16
                } else {
                    u16::from(b - b'0')
                });
            }
        }
        let numerals = &s.numerals;
        let out = &mut s.out;
        match format {
            Format::Digits => {
                if numerals.len() < 6 {
                    return Err(CryptoError::Domain(format!(
                        "value has {} digits; FF1 needs at least 6",
                        numerals.len()
                    )));
                }
                self.run(false, tweak, numerals, encrypt, out)?;
            }
            Format::Alphanumeric => {
                if numerals.len() < 4 {
                    return Err(CryptoError::Domain(format!(
                        "value has {} letters and digits; FF1 needs at least 4",
                        numerals.len()
                    )));
                }
                self.run(true, tweak, numerals, encrypt, out)?;
            }
            Format::Card => {
                let n = numerals.len();
                if !(13..=19).contains(&n) {
                    return Err(CryptoError::Domain(format!(
                        "card numbers have 13 to 19 digits, found {n}"
                    )));
                }
                if encrypt && !luhn_valid(numerals) {
                    return Err(CryptoError::Domain(
                        "card number fails the Luhn check".into(),
                    ));
                }
                // The IIN (first six) stays, the middle is enciphered, the check digit is
                // recomputed.
                self.run(false, tweak, &numerals[6..n - 1], encrypt, &mut s.walk)?;
                out.clear();
                out.extend_from_slice(&numerals[..6]);
                out.extend_from_slice(&s.walk);
                let check = luhn_check_digit(out);
                out.push(check);
            }
            Format::Ssn => {
                if numerals.len() != 9 || !ssn_valid(numerals) {
                    return Err(CryptoError::Domain(
                        "not a structurally valid nine-digit SSN".into(),
                    ));
                }
                // Cycle-walking: FF1 permutes all 10^9 strings; repeat until the result is a
                // valid SSN, which makes a permutation of the valid set.
                s.walk.clear();
                s.walk.extend_from_slice(numerals);
                let mut walked = 0;
                loop {
                    self.run(false, tweak, &s.walk, encrypt, out)?;
                    if ssn_valid(out) {
                        break;
                    }
                    std::mem::swap(&mut s.walk, out);
                    walked += 1;
                    if walked > MAX_CYCLE_WALK {
                        return Err(CryptoError::Domain(
                            "SSN cycle-walk did not converge".into(),
                        ));
                    }
                }
            }
        }
        // The value with each numeral replaced; everything else (separators, other text)
        // stays. Numerals are ASCII, so the slices between them fall on char boundaries.
        let mut last = 0;
        for (&pos, &v) in s.positions.iter().zip(s.out.iter()) {
            result.push_str(value.get(last..pos).unwrap_or_default());
            result.push(char::from(if alnum {
                ALNUM[v as usize]
            } else {
                b'0' + v as u8
            }));
            last = pos + 1;
        }
        result.push_str(value.get(last..).unwrap_or_default());
        Ok(())
    }
}

/// Buffers [`FpeCipher::encrypt_into`] reuses between values.
#[derive(Debug, Default)]
pub struct FpeScratch {
    positions: Vec<usize>,
    numerals: Vec<u16>,
    out: Vec<u16>,
    walk: Vec<u16>,
}

/// AES-256 on single blocks.
struct Block(EncryptingKey);

impl Block {
    fn encrypt(&self, block: &mut [u8; 16]) {
        // ECB over exactly one block with no context cannot fail; a failure would leave the
        // block unchanged, which the NIST sample tests would catch.
        let _ = self.0.less_safe_encrypt(block, EncryptionContext::None);
    }
}

fn aes256(key: &[u8]) -> Result<Block, CryptoError> {
    let size = |_| CryptoError::KeySize {
        algorithm: "FF1-AES-256",
        expected: 32,
    };
    let key = UnboundCipherKey::new(&AES_256, key).map_err(size)?;
    Ok(Block(EncryptingKey::ecb(key).map_err(size)?))
}

fn ff1_apply(
    aes: &Block,
    f: &FF1<Aes256>,
    radix: u32,
    tweak: &[u8],
    numerals: &[u16],
    encrypt: bool,
    out: &mut Vec<u16>,
) -> Result<(), CryptoError> {
    if ff1_small(aes, radix, tweak, numerals, encrypt, out).is_some() {
        return Ok(());
    }
    *out = ff1_big(f, tweak, numerals.to_vec(), encrypt)?;
    Ok(())
}

fn ff1_big(
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

fn num(radix: u64, digits: &[u16]) -> u64 {
    digits
        .iter()
        .fold(0u64, |acc, &d| acc.wrapping_mul(radix) + u64::from(d))
}

fn str_m(radix: u64, mut value: u64, out: &mut [u16]) {
    for slot in out.iter_mut().rev() {
        *slot = (value % radix) as u16;
        value /= radix;
    }
}

/// FF1 (NIST SP 800-38G, algorithms 7 and 8) when `radix^v < 2^64` (`v` the longer half), on
/// machine integers. `None` when the domain is larger, smaller than NIST's minimum of 10^6,
/// or the input is not a valid numeral string (the caller then uses the `fpe` crate, which reports why).
///
/// Every `Q` block before the last holds only tweak bytes, so the CBC-MAC state after `P` and
/// those blocks is computed once per value; each round then costs one AES block (with
/// `b <= 8`, `d <= 12` and `S` is the first `d` bytes of `R`).
fn ff1_small(
    aes: &Block,
    radix: u32,
    tweak: &[u8],
    x: &[u16],
    encrypt: bool,
    out: &mut Vec<u16>,
) -> Option<()> {
    let n = x.len();
    if n < 2 || !(2..=65536).contains(&radix) || x.iter().any(|&d| u32::from(d) >= radix) {
        return None;
    }
    let r = u64::from(radix);
    let u = n / 2;
    let v = n - u;
    let pow_u = r.checked_pow(u32::try_from(u).ok()?)?;
    let pow_v = r.checked_pow(u32::try_from(v).ok()?)?;
    if pow_u.saturating_mul(pow_v) < 1_000_000 {
        // Below NIST's minimum domain; the `fpe` crate reports it.
        return None;
    }
    // b = ceil(ceil(v * log2(radix)) / 8): the bytes of the largest v-numeral value.
    let b = (64 - (pow_v - 1).leading_zeros() as usize)
        .div_ceil(8)
        .max(1);
    let d = 4 * b.div_ceil(4) + 4;
    let t = tweak.len();
    let mut p = [0u8; 16];
    p[..3].copy_from_slice(&[1, 2, 1]);
    p[3..6].copy_from_slice(&radix.to_be_bytes()[1..]);
    p[6] = 10;
    p[7] = (u % 256) as u8;
    p[8..12].copy_from_slice(&u32::try_from(n).ok()?.to_be_bytes());
    p[12..16].copy_from_slice(&u32::try_from(t).ok()?.to_be_bytes());
    // Q = T || 0^pad || [i] || [NUM(B)]^b, a multiple of 16 bytes.
    let pad = (16 - (t + b + 1) % 16) % 16;
    let q_len = t + pad + 1 + b;
    // On the stack for the usual short tweaks: this ran once per value.
    let mut q_stack = [0u8; 96];
    let mut q_heap = Vec::new();
    let q: &mut [u8] = if q_len <= q_stack.len() {
        &mut q_stack[..q_len]
    } else {
        q_heap.resize(q_len, 0);
        &mut q_heap
    };
    q[..t].copy_from_slice(tweak);
    let mut state = p;
    aes.encrypt(&mut state);
    for chunk in q[..q_len - 16].chunks_exact(16) {
        for (s, c) in state.iter_mut().zip(chunk) {
            *s ^= c;
        }
        aes.encrypt(&mut state);
    }
    let last: [u8; 16] = q[q_len - 16..].try_into().ok()?;
    let round_y = |i: u8, value: u64| -> u128 {
        let mut block = last;
        block[15 - b] = i;
        block[16 - b..].copy_from_slice(&value.to_be_bytes()[8 - b..]);
        for (x, s) in block.iter_mut().zip(state.iter()) {
            *x ^= s;
        }
        aes.encrypt(&mut block);
        block[..d]
            .iter()
            .fold(0u128, |acc, &byte| (acc << 8) | u128::from(byte))
    };
    let (mut a, mut bv) = (num(r, &x[..u]), num(r, &x[u..]));
    if encrypt {
        for i in 0..10u8 {
            let m = u128::from(if i % 2 == 0 { pow_u } else { pow_v });
            let y = round_y(i, bv);
            let c = ((u128::from(a) + y % m) % m) as u64;
            a = bv;
            bv = c;
        }
    } else {
        for i in (0..10u8).rev() {
            let m = u128::from(if i % 2 == 0 { pow_u } else { pow_v });
            let y = round_y(i, a);
            let c = ((u128::from(bv) + m - y % m) % m) as u64;
            bv = a;
            a = c;
        }
    }
    out.clear();
    out.resize(n, 0);
    str_m(r, a, &mut out[..u]);
    str_m(r, bv, &mut out[u..]);
    Some(())
}

/// Raw FF1-AES-256 over numerals, for the NIST sample vectors.
pub fn raw_ff1(
    key: &[u8],
    radix: u32,
    tweak: &[u8],
    numerals: Vec<u16>,
    encrypt: bool,
) -> Result<Vec<u16>, CryptoError> {
    let mut out = Vec::new();
    ff1_apply(
        &aes256(key)?,
        &ff1(&SecretBytes::new(key.to_vec()), radix)?,
        radix,
        tweak,
        &numerals,
        encrypt,
        &mut out,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The integer fast path and the `fpe` crate agree on every input both accept.
        #[test]
        fn small_path_matches_fpe_crate(
            key in proptest::array::uniform32(any::<u8>()),
            radix in prop::sample::select(vec![10u32, 26, 36, 62]),
            seed in proptest::collection::vec(any::<u16>(), 2..24),
            tweak in proptest::collection::vec(any::<u8>(), 0..40),
            encrypt in any::<bool>(),
        ) {
            let x: Vec<u16> = seed.iter().map(|d| d % radix as u16).collect();
            let aes = aes256(&key).unwrap();
            let f = ff1(&SecretBytes::new(key.to_vec()), radix).unwrap();
            let (mut fast, mut back) = (Vec::new(), Vec::new());
            if ff1_small(&aes, radix, &tweak, &x, encrypt, &mut fast).is_some() {
                prop_assert_eq!(&fast, &ff1_big(&f, &tweak, x.clone(), encrypt).unwrap());
                prop_assert!(ff1_small(&aes, radix, &tweak, &fast, !encrypt, &mut back).is_some());
                prop_assert_eq!(back, x);
            }
        }
    }

    #[test]
    fn long_values_use_the_big_path_and_round_trip() {
        let key = SecretBytes::random(32);
        let aes = aes256(key.expose()).unwrap();
        let x: Vec<u16> = (0..50).map(|i| (i * 7 % 10) as u16).collect();
        assert!(ff1_small(&aes, 10, b"t", &x, true, &mut Vec::new()).is_none());
        let ct = raw_ff1(key.expose(), 10, b"t", x.clone(), true).unwrap();
        assert_eq!(ct.len(), 50);
        assert_eq!(raw_ff1(key.expose(), 10, b"t", ct, false).unwrap(), x);
    }
}
