//! Throughput of every cell primitive over 1M cells of ~20 bytes on one thread, keys expanded
//! once per run as the pipeline kernels do. A plain harness (no criterion) so that benchmark
//! dependencies do not change the feature set, and with it the build, of the engine.
//!
//! Run: `cargo bench -p custos-crypto --bench cells` (best of 3 runs per primitive);
//! `CUSTOS_BENCH_ONLY=ff1` runs the primitives whose name contains `ff1`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use custos_crypto::aead::{AeadDecryptor, AeadEncryptor};
use custos_crypto::fpe::{Format, FpeBatch, FpeCipher};
use custos_crypto::siv::SivCipher;
use custos_crypto::token::{Encoding, Tokenizer};
use custos_crypto::{CellEncryptor, SecretBytes};

fn measure(name: &str, cells: usize, mut f: impl FnMut() -> usize) {
    if let Ok(only) = std::env::var("CUSTOS_BENCH_ONLY")
        && !name.contains(only.as_str())
    {
        return;
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{name:<24} {:>10.0} cells/s  ({cells} cells in {best:.3} s)",
        cells as f64 / best
    );
}

fn main() {
    let n: usize = std::env::var("CUSTOS_BENCH_CELLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let data: Vec<String> = (0..n).map(|i| format!("user{i:08}@example.org")).collect();
    let key = SecretBytes::random(32);
    measure("aes256gcm encrypt text", n, || {
        let mut enc = AeadEncryptor::new(1, 1, &key).unwrap();
        let (mut out, mut scratch) = (String::with_capacity(100), Vec::with_capacity(100));
        let mut total = 0;
        for s in &data {
            out.clear();
            enc.encrypt_text_into(s, b"t\0email", &mut scratch, &mut out)
                .unwrap();
            total += out.len();
        }
        total
    });
    measure("aes256gcm encrypt binary", n, || {
        let mut enc = AeadEncryptor::new(1, 1, &key).unwrap();
        let mut out = Vec::with_capacity(100);
        let mut total = 0;
        for s in &data {
            out.clear();
            enc.encrypt_into(s.as_bytes(), b"t\0email", &mut out)
                .unwrap();
            total += out.len();
        }
        total
    });
    let mut enc = AeadEncryptor::new(1, 1, &key).unwrap();
    let cts: Vec<Vec<u8>> = data
        .iter()
        .map(|s| enc.encrypt(s.as_bytes(), b"t\0email").unwrap())
        .collect();
    measure("aes256gcm decrypt", n, || {
        let mut dec = AeadDecryptor::new();
        cts.iter()
            .map(|c| dec.decrypt(c, &key, b"t\0email").unwrap().len())
            .sum()
    });
    let tok = Tokenizer::new(&key, 16, Encoding::Hex).unwrap();
    measure("hmac-sha256 token", n, || {
        let mut out = String::with_capacity(64);
        let mut total = 0;
        for s in &data {
            out.clear();
            tok.token_into(s.as_bytes(), &mut out);
            total += out.len();
        }
        total
    });
    let key64 = SecretBytes::random(64);
    measure("aes256siv encrypt text", n, || {
        let mut siv = SivCipher::new(1, 1, &key64).unwrap();
        let mut scratch = Vec::with_capacity(100);
        let mut out = String::with_capacity(100);
        let mut total = 0;
        for s in &data {
            out.clear();
            siv.encrypt_text_into(s, b"t\0email", &mut scratch, &mut out)
                .unwrap();
            total += out.len();
        }
        total
    });
    let fpe = FpeCipher::new(&key).unwrap();
    let ssns: Vec<String> = (0..n)
        .map(|i| format!("{:03}-{:02}-{:04}", 100 + i % 500, 1 + i % 98, 1 + i % 9998))
        .collect();
    // The kernels' path: batches of 8192 values (one per Arrow batch), one AES call per round.
    let batched = |values: &[String], format: Format, tweak: &'static [u8]| {
        let mut batch = FpeBatch::default();
        let mut total = 0;
        for chunk in values.chunks(8192) {
            fpe.encrypt_batch(chunk.iter().map(String::as_str), format, tweak, &mut batch);
            total += (0..batch.len())
                .map(|i| batch.get(i).unwrap().len())
                .sum::<usize>();
        }
        total
    };
    measure("ff1 ssn", n, || batched(&ssns, Format::Ssn, b"ssn"));
    measure("ff1 ssn one at a time", n, || {
        ssns.iter()
            .map(|s| fpe.encrypt(s, Format::Ssn, b"ssn").unwrap().len())
            .sum()
    });
    let cards: Vec<String> = (0..n)
        .map(|i| format!("4111{:011}", i))
        .map(|body| {
            let digits: Vec<u16> = body.bytes().map(|b| u16::from(b - b'0')).collect();
            format!("{body}{}", custos_crypto::fpe::luhn_check_digit(&digits))
        })
        .collect();
    measure("ff1 card", n, || batched(&cards, Format::Card, b"card"));
}
