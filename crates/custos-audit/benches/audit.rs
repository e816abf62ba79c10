//! Append and verify throughput of the audit log. `cargo bench -p custos-audit --bench audit`
//! appends 1M realistic events (one sync and one checkpoint at the end, as a batch), then
//! verifies them; prints the best of 3 runs of each.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use custos_audit::{AuditLog, Event, verify};
use ed25519_dalek::SigningKey;

const EVENTS: u64 = 1_000_000;
const RUNS: usize = 3;

fn event(i: u64) -> Event {
    Event {
        time_ns: 1_760_000_000_000_000_000 + (i as i64) * 1_000,
        principal: format!("svc-etl-{}", i % 17),
        action: if i.is_multiple_of(11) {
            "decrypt_column".into()
        } else {
            "run_pipeline".into()
        },
        resource: format!("pipeline:customers-{}", i % 5),
        outcome: if i.is_multiple_of(97) {
            "denied".into()
        } else {
            "succeeded".into()
        },
        error_code: None,
        host: "etl-worker-03.prod.internal".into(),
        pid: 41_872,
        policies: vec!["data_engineer.run".into(), "pii.protect".into()],
        run_id: Some(format!("01J9Z8K{i:019}")),
        rows: Some(i * 37 % 1_000_000),
        detail: None,
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    // Profiling aid: `CUSTOS_BENCH_VERIFY_DIR=DIR` only verifies an existing log (written by
    // this bench with `CUSTOS_BENCH_KEEP=DIR`).
    if let Ok(d) = std::env::var("CUSTOS_BENCH_VERIFY_DIR") {
        let start = Instant::now();
        let r = verify(std::path::Path::new(&d), &key.verifying_key()).unwrap();
        let t = start.elapsed();
        println!(
            "verify: {} events in {:.3} s = {:.0} events/s",
            r.records,
            t.as_secs_f64(),
            rate(r.records, t)
        );
        return;
    }
    let mut best_append = Duration::MAX;
    let mut dir = None;
    for _ in 0..RUNS {
        let d = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let mut log = AuditLog::open(d.path(), 64 << 20).unwrap();
        for i in 0..EVENTS {
            log.append(&event(i)).unwrap();
        }
        log.sync().unwrap();
        log.checkpoint(&key, 1).unwrap();
        best_append = best_append.min(start.elapsed());
        dir = Some(d);
    }
    let dir = dir.unwrap();
    if let Ok(keep) = std::env::var("CUSTOS_BENCH_KEEP") {
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::rename(dir.path(), &keep).unwrap();
        std::fs::create_dir_all(dir.path()).unwrap();
        for e in std::fs::read_dir(&keep).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "append: {EVENTS} events, {:.1} MiB, best {:.3} s = {:.0} events/s",
        bytes as f64 / (1 << 20) as f64,
        best_append.as_secs_f64(),
        rate(EVENTS, best_append)
    );

    // Let the kernel finish writing the segments back, so verification measures reading and
    // hashing rather than competing with the write-back of what append just wrote.
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
    let vk = key.verifying_key();
    let mut best_verify = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let r = verify(dir.path(), &vk).unwrap();
        best_verify = best_verify.min(start.elapsed());
        assert_eq!(r.records, EVENTS);
    }
    println!(
        "verify: {EVENTS} events, best {:.3} s = {:.0} events/s",
        best_verify.as_secs_f64(),
        rate(EVENTS, best_verify)
    );

    let mut best_open = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let log = AuditLog::open(dir.path(), 64 << 20).unwrap();
        best_open = best_open.min(start.elapsed());
        assert_eq!(log.len(), EVENTS);
    }
    println!(
        "open:   {EVENTS} events, best {:.3} s = {:.0} events/s",
        best_open.as_secs_f64(),
        rate(EVENTS, best_open)
    );
}
