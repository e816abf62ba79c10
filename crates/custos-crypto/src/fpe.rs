//! Format-preserving encryption with FF1 (NIST SP 800-38G) over AES-256.
//!
//! The AES block cipher is RustCrypto's `aes` (AES-NI, eight blocks in flight). For domains
//! below 2^64 (up to 19 digits, 12 base-36 or 10 base-62 characters per half, which covers
//! cards, SSNs and account numbers) the ten Feistel rounds run on machine integers
//! ([`Small`]), and a batch of values goes through them together: each round is one AES call
//! over a block per value, not one call per value. The `fpe` crate, whose arbitrary-precision
//! arithmetic costs about 6 us per cell, handles longer values. Both are checked against the
//! NIST samples, and against each other on random inputs.
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

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes256, Block};
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
/// The most letters or digits FF1 takes from one value. Longer values go through the `fpe`
/// crate's arbitrary-precision path, whose cost grows with the square of the length (10k
/// digits took 0.12 s here, 30k digits 1.1 s), so one stray long cell could stall a run for
/// minutes; identifiers are far shorter.
pub const MAX_NUMERALS: usize = 1024;

/// FF1 under one 256-bit key.
pub struct FpeCipher {
    aes: Aes256,
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
        let mut batch = FpeBatch::default();
        self.encrypt_batch([value], format, tweak, &mut batch);
        batch.into_first()
    }

    /// Decrypts what [`FpeCipher::encrypt`] produced with the same format and tweak.
    pub fn decrypt(
        &self,
        value: &str,
        format: Format,
        tweak: &[u8],
    ) -> Result<String, CryptoError> {
        let mut batch = FpeBatch::default();
        self.decrypt_batch([value], format, tweak, &mut batch);
        batch.into_first()
    }

    /// Encrypts every value of `values` into `batch` (which keeps its buffers between
    /// calls): value `i`'s result is `batch.get(i)`, the same as [`FpeCipher::encrypt`]'s.
    pub fn encrypt_batch<'v>(
        &self,
        values: impl IntoIterator<Item = &'v str>,
        format: Format,
        tweak: &[u8],
        batch: &mut FpeBatch,
    ) {
        self.apply(values, format, tweak, true, batch);
    }

    /// Decrypts every value of `values` into `batch`, like [`FpeCipher::decrypt`].
    pub fn decrypt_batch<'v>(
        &self,
        values: impl IntoIterator<Item = &'v str>,
        format: Format,
        tweak: &[u8],
        batch: &mut FpeBatch,
    ) {
        self.apply(values, format, tweak, false, batch);
    }

    fn apply<'v>(
        &self,
        values: impl IntoIterator<Item = &'v str>,
        format: Format,
        tweak: &[u8],
        encrypt: bool,
        b: &mut FpeBatch,
    ) {
        b.items.clear();
        b.positions.clear();
        b.numerals.clear();
        b.ends.clear();
        let alnum = format == Format::Alphanumeric;
        // One allocation per batch: the values are needed again to render the results.
        let values: Vec<&str> = values.into_iter().collect();
        let bytes: usize = values.iter().map(|v| v.len()).sum();
        b.positions.reserve(bytes);
        b.numerals.reserve(bytes);
        for value in &values {
            let start = b.numerals.len();
            for (i, &c) in value.as_bytes().iter().enumerate() {
                // Positions in `ALNUM`: digits, then upper case, then lower case.
                let numeral = match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'A'..=b'Z' if alnum => Some(c - b'A' + 10),
                    b'a'..=b'z' if alnum => Some(c - b'a' + 36),
                    _ => None,
                };
                if let Some(v) = numeral {
                    b.positions.push(i);
                    b.numerals.push(u16::from(v));
                }
            }
            let end = b.numerals.len();
            let (ff1, error) = check(format, &b.numerals[start..end], encrypt);
            b.items.push(Item {
                numerals: start..end,
                ff1: start + ff1.start..start + ff1.end,
                error,
            });
        }
        b.result.clone_from(&b.numerals);
        b.order.clear();
        b.order
            .extend((0..b.items.len()).filter(|&k| b.items[k].error.is_none()));
        self.feistel(alnum, tweak, encrypt, false, b);
        match format {
            Format::Card => {
                // The IIN stayed and the middle is enciphered; the check digit is recomputed.
                for item in b.items.iter().filter(|i| i.error.is_none()) {
                    let r = item.numerals.clone();
                    b.result[r.end - 1] = luhn_check_digit(&b.result[r.start..r.end - 1]);
                }
            }
            Format::Ssn => {
                // Cycle-walking: FF1 permutes all 10^9 strings; results that are not valid
                // SSNs go through FF1 again, which makes a permutation of the valid set.
                let mut walked = 0;
                loop {
                    let FpeBatch {
                        order,
                        items,
                        result,
                        ..
                    } = b;
                    order.retain(|&k| {
                        items[k].error.is_none() && !ssn_valid(&result[items[k].ff1.clone()])
                    });
                    if b.order.is_empty() {
                        break;
                    }
                    if walked == MAX_CYCLE_WALK {
                        for &k in &b.order {
                            b.items[k].error = Some(CryptoError::Domain(
                                "SSN cycle-walk did not converge".into(),
                            ));
                        }
                        break;
                    }
                    walked += 1;
                    self.feistel(false, tweak, encrypt, true, b);
                }
            }
            Format::Digits | Format::Alphanumeric => {}
        }
        // Each value with its numerals replaced; everything else (separators, other text)
        // stays. ASCII bytes replace ASCII bytes, so the text stays UTF-8; it is checked once
        // for the whole batch.
        let mut bytes = std::mem::take(&mut b.text).into_bytes();
        bytes.clear();
        for (item, value) in b.items.iter().zip(&values) {
            if item.error.is_none() {
                let at = bytes.len();
                bytes.extend_from_slice(value.as_bytes());
                let out = &mut bytes[at..];
                for (&pos, &v) in b.positions[item.numerals.clone()]
                    .iter()
                    .zip(&b.result[item.numerals.clone()])
                {
                    out[pos] = if alnum {
                        ALNUM[usize::from(v)]
                    } else {
                        b'0' + v as u8
                    };
                }
            }
            b.ends.push(bytes.len());
        }
        match String::from_utf8(bytes) {
            Ok(text) => b.text = text,
            // Only ASCII numerals were replaced, by ASCII numerals; fail closed regardless.
            Err(_) => {
                for item in &mut b.items {
                    item.error = Some(CryptoError::Domain("FF1 output is not UTF-8".into()));
                }
            }
        }
    }

    /// FF1 over every item in `b.order`, from its numerals (or, when `again`, from its last
    /// result) into its result. Items with FF1 inputs of one length share a [`Small`] and go
    /// round by round together, so each round is one AES call over all their blocks.
    fn feistel(&self, alnum: bool, tweak: &[u8], encrypt: bool, again: bool, b: &mut FpeBatch) {
        let (f, radix) = if alnum {
            (&self.radix62, 62)
        } else {
            (&self.radix10, 10)
        };
        let FpeBatch {
            items,
            order,
            numerals,
            result,
            input,
            output,
            work,
            ..
        } = b;
        // Usually every value has the same length and the order is already grouped.
        if !order.is_sorted_by_key(|&k| items[k].ff1.len()) {
            order.sort_unstable_by_key(|&k| (items[k].ff1.len(), k));
        }
        let mut start = 0;
        while let Some(&first) = order.get(start) {
            let n = items[first].ff1.len();
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|&&k| items[k].ff1.len() == n)
                    .count();
            let group = &order[start..end];
            start = end;
            input.clear();
            for &k in group {
                let from = if again { &*result } else { &*numerals };
                input.extend_from_slice(&from[items[k].ff1.clone()]);
            }
            match Small::new(&self.aes, radix, tweak, n) {
                Some(small) => {
                    small.run(&self.aes, input, encrypt, output, work);
                    for (&k, out) in group.iter().zip(output.chunks_exact(n.max(1))) {
                        result[items[k].ff1.clone()].copy_from_slice(out);
                    }
                }
                None => {
                    for (&k, x) in group.iter().zip(input.chunks_exact(n.max(1))) {
                        match ff1_big(f, tweak, x.to_vec(), encrypt) {
                            Ok(out) => result[items[k].ff1.clone()].copy_from_slice(&out),
                            Err(e) => items[k].error = Some(e),
                        }
                    }
                }
            }
        }
    }
}

/// Whether `numerals` suit `format`, and which of them FF1 enciphers.
fn check(
    format: Format,
    numerals: &[u16],
    encrypt: bool,
) -> (std::ops::Range<usize>, Option<CryptoError>) {
    let n = numerals.len();
    let error = match format {
        Format::Digits | Format::Alphanumeric if n > MAX_NUMERALS => Some(format!(
            "value has {n} letters or digits; FF1 takes at most {MAX_NUMERALS}"
        )),
        Format::Digits if n < 6 => Some(format!("value has {n} digits; FF1 needs at least 6")),
        Format::Alphanumeric if n < 4 => Some(format!(
            "value has {n} letters and digits; FF1 needs at least 4"
        )),
        Format::Card if !(13..=19).contains(&n) => {
            Some(format!("card numbers have 13 to 19 digits, found {n}"))
        }
        Format::Card if encrypt && !luhn_valid(numerals) => {
            Some("card number fails the Luhn check".into())
        }
        Format::Ssn if n != 9 || !ssn_valid(numerals) => {
            Some("not a structurally valid nine-digit SSN".into())
        }
        _ => None,
    };
    match (error, format) {
        (Some(e), _) => (0..0, Some(CryptoError::Domain(e))),
        // The IIN (first six) stays, the middle is enciphered, the check digit is recomputed.
        (None, Format::Card) => (6..n - 1, None),
        (None, _) => (0..n, None),
    }
}

/// The results of [`FpeCipher::encrypt_batch`] or [`FpeCipher::decrypt_batch`], and the
/// buffers they reuse (keep one per column: no allocation per value).
#[derive(Debug, Default)]
pub struct FpeBatch {
    items: Vec<Item>,
    /// Byte offset in its value of every numeral, all values back to back.
    positions: Vec<usize>,
    numerals: Vec<u16>,
    /// FF1's output, laid out like `numerals`.
    result: Vec<u16>,
    /// The items FF1 still has to run over.
    order: Vec<usize>,
    input: Vec<u16>,
    output: Vec<u16>,
    work: Work,
    /// The rendered results back to back; value `i` ends at `ends[i]`.
    text: String,
    ends: Vec<usize>,
}

#[derive(Debug)]
struct Item {
    numerals: std::ops::Range<usize>,
    ff1: std::ops::Range<usize>,
    error: Option<CryptoError>,
}

impl FpeBatch {
    /// How many values the last call was given.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the last call was given no values.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Value `i`'s result, or why it has none (the reason names no value). An `i` past the
    /// last value has none either.
    pub fn get(&self, i: usize) -> Result<&str, &CryptoError> {
        static NO_SUCH_VALUE: CryptoError = CryptoError::Malformed("no such value in the batch");
        match self.items.get(i) {
            Some(Item { error: Some(e), .. }) => Err(e),
            Some(_) => {
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                Ok(self.text.get(start..self.ends[i]).unwrap_or_default())
            }
            None => Err(&NO_SUCH_VALUE),
        }
    }

    fn into_first(mut self) -> Result<String, CryptoError> {
        match self.items.first_mut().and_then(|i| i.error.take()) {
            Some(e) => Err(e),
            None => Ok(self.text),
        }
    }
}

fn aes256(key: &[u8]) -> Result<Aes256, CryptoError> {
    Aes256::new_from_slice(key).map_err(|_| CryptoError::KeySize {
        algorithm: "FF1-AES-256",
        expected: 32,
    })
}

fn ff1_apply(
    aes: &Aes256,
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

/// FF1 of one value on machine integers (see [`Small`]); `None` when it does not apply.
fn ff1_small(
    aes: &Aes256,
    radix: u32,
    tweak: &[u8],
    x: &[u16],
    encrypt: bool,
    out: &mut Vec<u16>,
) -> Option<()> {
    if x.iter().any(|&d| u32::from(d) >= radix) {
        return None;
    }
    Small::new(aes, radix, tweak, x.len())?.run(aes, x, encrypt, out, &mut Work::default());
    Some(())
}

/// FF1 (NIST SP 800-38G, algorithms 7 and 8) for values of `n` numerals when
/// `radix^v < 2^64` (`v` the longer half): the rounds run on machine integers.
///
/// Every `Q` block before the last holds only tweak bytes, so the CBC-MAC state after `P` and
/// those blocks is the same for every value of this length and tweak and is computed here,
/// once; each round then costs one AES block per value (with `b <= 8`, `d <= 12` and `S` is
/// the first `d` bytes of `R`).
struct Small {
    radix: u64,
    n: usize,
    u: usize,
    pow_u: u64,
    pow_v: u64,
    b: usize,
    d: usize,
    /// The CBC-MAC state before the last `Q` block.
    state: Block,
    /// The last `Q` block (tweak tail, padding) XORed with `state`, before the round number
    /// and `NUM(B)` are set.
    base: Block,
}

/// The buffers of [`Small::run`].
#[derive(Debug, Default)]
struct Work {
    halves: Vec<(u64, u64)>,
    blocks: Vec<Block>,
}

impl Small {
    /// `None` when the domain is larger than 2^64, smaller than NIST's minimum of 10^6 (the
    /// `fpe` crate then reports why), or the radix is outside FF1's.
    fn new(aes: &Aes256, radix: u32, tweak: &[u8], n: usize) -> Option<Self> {
        if n < 2 || !(2..=65536).contains(&radix) {
            return None;
        }
        let r = u64::from(radix);
        let u = n / 2;
        let v = n - u;
        let pow_u = r.checked_pow(u32::try_from(u).ok()?)?;
        let pow_v = r.checked_pow(u32::try_from(v).ok()?)?;
        if pow_u.saturating_mul(pow_v) < 1_000_000 {
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
        let mut q = vec![0u8; q_len];
        q[..t].copy_from_slice(tweak);
        let mut state = Block::from(p);
        aes.encrypt_block(&mut state);
        for chunk in q[..q_len - 16].chunks_exact(16) {
            for (s, c) in state.iter_mut().zip(chunk) {
                *s ^= c;
            }
            aes.encrypt_block(&mut state);
        }
        let mut base = Block::default();
        for ((x, s), l) in base.iter_mut().zip(state.iter()).zip(&q[q_len - 16..]) {
            *x = s ^ l;
        }
        Some(Self {
            radix: r,
            n,
            u,
            pow_u,
            pow_v,
            b,
            d,
            state,
            base,
        })
    }

    /// Enciphers (or deciphers) the values of `x`, `n` numerals each back to back, into `out`
    /// in the same layout. Each round sets one block per value and encrypts all of them in
    /// one call, which keeps eight AES blocks in flight instead of one.
    fn run(&self, aes: &Aes256, x: &[u16], encrypt: bool, out: &mut Vec<u16>, w: &mut Work) {
        let (n, r, u, b) = (self.n, self.radix, self.u, self.b);
        w.halves.clear();
        w.halves.extend(
            x.chunks_exact(n)
                .map(|v| (num(r, &v[..u]), num(r, &v[u..]))),
        );
        w.blocks.resize(w.halves.len(), Block::default());
        for step in 0..10u8 {
            let i = if encrypt { step } else { 9 - step };
            let m = if i % 2 == 0 { self.pow_u } else { self.pow_v };
            for (&(a, bv), block) in w.halves.iter().zip(w.blocks.iter_mut()) {
                let value = if encrypt { bv } else { a };
                *block = self.base;
                block[15 - b] = self.state[15 - b] ^ i;
                for (j, byte) in value.to_be_bytes()[8 - b..].iter().enumerate() {
                    block[16 - b + j] = self.state[16 - b + j] ^ byte;
                }
            }
            aes.encrypt_blocks(&mut w.blocks);
            for ((a, bv), block) in w.halves.iter_mut().zip(w.blocks.iter()) {
                let y = self.y_mod(block, m);
                if encrypt {
                    // c = (A + y) mod m, with A < m and y < m.
                    let (sum, over) = a.overflowing_add(y);
                    let c = if over || sum >= m {
                        sum.wrapping_sub(m)
                    } else {
                        sum
                    };
                    *a = *bv;
                    *bv = c;
                } else {
                    // c = (B - y) mod m.
                    let c = if *bv >= y { *bv - y } else { *bv + (m - y) };
                    *bv = *a;
                    *a = c;
                }
            }
        }
        out.clear();
        out.resize(x.len(), 0);
        for (&(a, bv), o) in w.halves.iter().zip(out.chunks_exact_mut(n)) {
            str_m(r, a, &mut o[..u]);
            str_m(r, bv, &mut o[u..]);
        }
    }

    /// `y = NUM(S) mod m` with `S` the first `d` bytes of the round's block.
    fn y_mod(&self, block: &Block, m: u64) -> u64 {
        if self.d <= 8 {
            let mut y = [0u8; 8];
            y[8 - self.d..].copy_from_slice(&block[..self.d]);
            u64::from_be_bytes(y) % m
        } else {
            let mut y = [0u8; 16];
            y[16 - self.d..].copy_from_slice(&block[..self.d]);
            (u128::from_be_bytes(y) % u128::from(m)) as u64
        }
    }
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
