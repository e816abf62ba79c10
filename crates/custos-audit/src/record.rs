//! The on-disk form of one record and its leaf.
//!
//! A record is one line: `{"seq":N,"event":{...},"chain":"<64 hex>"}` and a newline. The leaf
//! hashed into the Merkle tree and the chain is `leaf_hash` of the exact bytes of the line up
//! to, not including, `,"chain":"` (the *body*). The writer produces the body once; a verifier
//! hashes the bytes it read and parses only the sequence number.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::Event;
use crate::merkle::{Hash, leaf_hash};

const SEQ_OPEN: &[u8] = b"{\"seq\":";
const EVENT_OPEN: &[u8] = b",\"event\":";
const CHAIN_OPEN: &[u8] = b",\"chain\":\"";
const CHAIN_CLOSE: &[u8] = b"\"}";
/// Bytes after the body: `,"chain":"`, 64 hex digits, `"}`.
const TAIL_LEN: usize = CHAIN_OPEN.len() + 64 + CHAIN_CLOSE.len();

/// The chain value after a record: `SHA-256(previous || leaf)`.
pub(crate) fn chain_next(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// Writes the line of record `seq` into `buf` (cleared first, newline included); returns its
/// leaf and the chain after it.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    seq: u64,
    event: &Event,
    prev: &Hash,
) -> Result<(Hash, Hash), serde_json::Error> {
    buf.clear();
    buf.extend_from_slice(SEQ_OPEN);
    // Writing a number into a Vec cannot fail.
    let _ = write!(buf, "{seq}");
    buf.extend_from_slice(EVENT_OPEN);
    serde_json::to_writer(&mut *buf, event)?;
    let leaf = leaf_hash(buf);
    let chain = chain_next(prev, &leaf);
    buf.extend_from_slice(CHAIN_OPEN);
    let mut hexed = [0u8; 64];
    // The output is exactly twice the input.
    let _ = hex::encode_to_slice(chain, &mut hexed);
    buf.extend_from_slice(&hexed);
    buf.extend_from_slice(CHAIN_CLOSE);
    buf.push(b'\n');
    Ok((leaf, chain))
}

/// A record line split into its parts (no JSON parsing of the event).
pub(crate) struct Parsed<'a> {
    /// The sequence number.
    pub seq: u64,
    /// The hashed bytes.
    pub body: &'a [u8],
    /// The event's JSON.
    pub event: &'a [u8],
    /// The stored chain value.
    pub chain: Hash,
}

/// Splits a line (without its newline); `None` if it is not in the record form.
pub(crate) fn parse(line: &[u8]) -> Option<Parsed<'_>> {
    let split = line.len().checked_sub(TAIL_LEN)?;
    let (body, tail) = line.split_at(split);
    let hexed = tail.strip_prefix(CHAIN_OPEN)?.strip_suffix(CHAIN_CLOSE)?;
    let chain = unhex(hexed)?;
    let rest = body.strip_prefix(SEQ_OPEN)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let mut seq: u64 = 0;
    for d in &rest[..digits] {
        seq = seq.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    let event = rest[digits..].strip_prefix(EVENT_OPEN)?;
    if !(event.starts_with(b"{") && event.ends_with(b"}")) {
        return None;
    }
    Some(Parsed {
        seq,
        body,
        event,
        chain,
    })
}

/// Value of each lowercase hex digit; `0xff` for any other byte.
const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes 64 lowercase hex digits (the only form the writer produces). Branch-free per digit:
/// hashes are random, so a branch per digit would mispredict half the time.
fn unhex(s: &[u8]) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let hi = HEX[usize::from(pair[0])];
        let lo = HEX[usize::from(pair[1])];
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// The index of the first newline in `s` (SIMD `memchr`: twice the speed of a word-at-a-time loop here).
pub(crate) fn find_newline(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_parse_agree_and_reject_near_misses() {
        let e = Event {
            time_ns: 5,
            principal: "p\n\"q".into(),
            action: "a".into(),
            resource: "r".into(),
            outcome: "succeeded".into(),
            error_code: None,
            host: "h".into(),
            pid: 1,
            policies: vec![],
            run_id: None,
            rows: None,
            detail: None,
        };
        let mut buf = Vec::new();
        let (leaf, chain) = encode(&mut buf, 1234, &e, &[3; 32]).unwrap();
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
        let line = &buf[..buf.len() - 1];
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["seq"], 1234);
        let p = parse(line).unwrap();
        assert_eq!((p.seq, p.chain), (1234, chain));
        assert_eq!(leaf_hash(p.body), leaf);
        assert_eq!(serde_json::from_slice::<Event>(p.event).unwrap(), e);
        let text = String::from_utf8(line.to_vec()).unwrap();
        for (i, b) in buf.iter().enumerate() {
            let mut t = buf.clone();
            t[i] = if *b == b'\n' { b'x' } else { b'\n' };
            let expect = t.iter().position(|c| *c == b'\n');
            assert_eq!(find_newline(&t), expect);
            assert_eq!(
                find_newline(&t[i..]),
                t[i..].iter().position(|c| *c == b'\n')
            );
        }
        for bad in [
            text.replace("\"seq\":1234", "\"seq\":01234"),
            text.replace("\"seq\":1234", "\"seq\":"),
            text.replace("\"chain\":\"", "\"chain\":\"A"),
            text.to_uppercase(),
            text[1..].to_string(),
            text[..text.len() - 1].to_string(),
            String::new(),
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
