//! Crash recovery: a writer killed mid-append, and torn tails that are not crashes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use custos_audit::{AuditError, AuditLog, verify};

use crate::{event, key, lines};

const CHILD_DIR: &str = "CUSTOS_AUDIT_CRASH_DIR";

/// Not a test: the writer the crash test kills. Appends forever, syncing in small batches and
/// checkpointing now and then, into the directory named by the environment.
#[test]
#[ignore = "run by a_writer_killed_mid_append_loses_no_complete_record"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mut l = AuditLog::open(Path::new(&dir), 4096).unwrap();
    let mut i = 0u64;
    loop {
        l.append(&event(i)).unwrap();
        i += 1;
        if i.is_multiple_of(7) {
            l.sync().unwrap();
        }
        if i.is_multiple_of(50) {
            l.checkpoint(&key(), i as i64).unwrap();
        }
    }
}

fn checkpoint_count(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("checkpoints.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn torn_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("torn-")
        })
        .collect()
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_writer_killed_mid_append_loses_no_complete_record() {
    let vk = key().verifying_key();
    for round in 0..3u64 {
        let d = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "recovery::crash_child",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_DIR, d.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while checkpoint_count(d.path()) < 3 + round as usize {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "child never wrote"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(7 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // Whatever the kill left is either a clean log or one with a torn last line.
        let complete: usize = lines(d.path()).iter().map(|(_, l)| l.len()).sum();
        let n = match verify(d.path(), &vk) {
            Ok(r) => r.records,
            Err(AuditError::Torn(p)) => p,
            Err(e) => panic!("round {round}: {e}"),
        };
        assert!(n >= 150);
        // A torn line shows up in `lines` too; every complete one is a record.
        assert!(complete as u64 == n || complete as u64 == n + 1);
        if complete as u64 == n + 1 {
            // Recover the real torn line first.
            let l = AuditLog::open(d.path(), 4096).unwrap();
            assert_eq!(l.recovered().unwrap().position, n);
            drop(l);
        }

        // Then a torn write for sure: half of a record line with no newline.
        let segs = lines(d.path());
        let (last, last_lines) = segs.last().unwrap();
        let template = segs
            .iter()
            .rev()
            .find_map(|(_, l)| l.last().cloned())
            .unwrap();
        let half = &template.as_bytes()[..template.len() / 2];
        append_bytes(last, half);
        assert!(matches!(verify(d.path(), &vk), Err(AuditError::Torn(p)) if p == n));

        let before = torn_files(d.path()).len();
        let mut l = AuditLog::open(d.path(), 4096).unwrap();
        let rec = l.recovered().cloned().unwrap();
        assert_eq!((rec.position, rec.bytes), (n, half.len() as u64));
        assert_eq!(std::fs::read(&rec.saved_to).unwrap(), half);
        assert!(
            rec.saved_to
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("torn-{n}-"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&rec.saved_to)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(torn_files(d.path()).len(), before + 1);
        assert_eq!(l.len(), n);
        // The segment holds exactly its complete lines again.
        assert_eq!(&lines(d.path()).last().unwrap().1, last_lines);
        assert_eq!(verify(d.path(), &vk).unwrap().records, n);

        // Appending continues at the torn position, and the recovery itself is audited.
        let mut e = event(n);
        e.action = "audit_recovered".into();
        e.detail = Some(format!(
            "torn record at {n} saved to {}",
            rec.saved_to.display()
        ));
        assert_eq!(l.append(&e).unwrap(), n);
        assert_eq!(l.append(&event(n + 1)).unwrap(), n + 1);
        l.checkpoint(&key(), 1).unwrap();
        drop(l);
        let r = verify(d.path(), &vk).unwrap();
        assert_eq!(r.records, n + 2);
        let all: Vec<String> = lines(d.path()).into_iter().flat_map(|(_, l)| l).collect();
        for (i, line) in all.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["seq"], i as u64);
        }
        let l = AuditLog::open(d.path(), 4096).unwrap();
        assert!(l.recovered().is_none());
        assert_eq!(l.len(), n + 2);
    }
}

#[test]
fn open_repairs_only_a_torn_tail() {
    let vk = key().verifying_key();
    let d = tempfile::tempdir().unwrap();
    crate::log(d.path(), 12);
    let segs = lines(d.path());
    let (last, orig) = segs.last().cloned().unwrap();
    let orig_text = std::fs::read(&last).unwrap();

    // A torn tail after a modified record: the modification wins and nothing is repaired.
    let mut m = orig.clone();
    m[0] = m[0].replace("user", "admin");
    crate::write(&last, &m);
    append_bytes(&last, b"{\"seq\":12,\"ev");
    let tampered = std::fs::read(&last).unwrap();
    assert!(matches!(
        AuditLog::open(d.path(), 600),
        Err(AuditError::Modified(_))
    ));
    assert_eq!(std::fs::read(&last).unwrap(), tampered);
    assert!(torn_files(d.path()).is_empty());

    // An unterminated line in a segment other than the last is not a crash.
    std::fs::write(&last, &orig_text).unwrap();
    let (first_seg, first_lines) = segs[0].clone();
    let mut t = first_lines.join("\n");
    t.push('\n');
    t.push_str(&first_lines[0][..10]);
    std::fs::write(&first_seg, &t).unwrap();
    assert!(matches!(
        AuditLog::open(d.path(), 600),
        Err(AuditError::Malformed(_))
    ));
    crate::write(&first_seg, &first_lines);
    assert!(verify(d.path(), &vk).is_ok());

    // A last record cut short that a checkpoint covers was complete once: not a crash.
    let cut = &orig_text[..orig_text.len() - 1];
    std::fs::write(&last, cut).unwrap();
    assert!(matches!(verify(d.path(), &vk), Err(AuditError::Torn(11))));
    assert!(matches!(
        AuditLog::open(d.path(), 600),
        Err(AuditError::Torn(11))
    ));
    assert_eq!(std::fs::read(&last).unwrap(), cut);
    assert!(torn_files(d.path()).is_empty());

    // Deleting a record covered by a checkpoint makes open fail too.
    crate::write(&last, &orig[..orig.len() - 1]);
    assert!(matches!(
        AuditLog::open(d.path(), 600),
        Err(AuditError::Truncated { .. })
    ));
    std::fs::write(&last, &orig_text).unwrap();
    assert_eq!(AuditLog::open(d.path(), 600).unwrap().len(), 12);
}
