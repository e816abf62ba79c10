//! The custos audit log: append-only JSON-lines segments of security events, each record
//! hash-chained to the one before it and a leaf of an RFC 6962 Merkle tree, plus Ed25519-signed
//! checkpoints (tree size, root, chain head). [`verify`] recomputes everything and names the
//! first bad position for a modified, deleted, inserted, reordered or torn record, a log
//! truncated below its last checkpoint, and a forged checkpoint; [`AuditLog::consistency_proof`]
//! proves to a holder of an older checkpoint that the log only grew.
//!
//! Events never hold cell values, secrets or raw subject identifiers: callers pass keyed
//! hashes for subjects.
//!
//! # On disk
//!
//! A log directory holds:
//! - `segment-NNNNNN.jsonl`: records, one line each,
//!   `{"seq":N,"event":{...},"chain":"<hex>"}`. The Merkle leaf of a record is the RFC 6962
//!   leaf hash of the exact bytes of its line up to, not including, `,"chain":"`; the chain
//!   value is `SHA-256(previous chain || leaf)`, starting from 32 zero bytes. Events are plain
//!   JSON objects (`jq '.event'` reads them).
//! - `checkpoints.jsonl`: signed [`Checkpoint`]s, one line each.
//! - `anchor.json` (after retention): the first sequence number still present `k`, the chain
//!   value after record `k - 1`, the Merkle frontier of the removed prefix (the roots of the
//!   perfect subtrees of the binary decomposition of `k`) and the first segment number kept.
//! - `torn-<position>-<unix_ns>.bin`: bytes of a torn last record moved aside by recovery.
//! - `writer.lock`: the lock ([`lock`]) processes sharing the log hold while they open,
//!   append, retain or read it; a writer whose view is stale ([`AuditLog::is_stale`]) opens
//!   the log again before appending.
//!
//! # Crash recovery
//!
//! A crash during an append can leave the last line of the last segment incomplete (no
//! newline). [`verify`] reports it as [`AuditError::Torn`]. [`AuditLog::open`] repairs exactly
//! that case and nothing else: it saves the torn bytes to a `torn-*.bin` file (mode 0600),
//! truncates the segment back to its last complete line, fsyncs both, and reports what it did
//! through [`AuditLog::recovered`] so the caller can say so loudly and append an event about it.
//! It refuses when a checkpoint covers the torn position (that is not a crash). Any other
//! failure of the records or of a checkpoint's root, chain or size makes `open` fail.
//!
//! # Retention
//!
//! [`AuditLog::apply_retention`] removes whole segments from the front whose every record is
//! older than a cutoff, never the current segment and never a record not yet covered by a
//! checkpoint. It first writes `anchor.json` (atomically), then deletes the segments, then
//! appends an `audit_retention` event naming the removed range. Replay starts from the anchor:
//! the tree of the removed prefix is summarised by its frontier, from which the roots of all
//! larger trees follow ([`merkle::Pruned`]). Checkpoints of sizes below `k` are then checked by
//! signature only; every later checkpoint binds the anchor, so altering its chain or frontier
//! is caught ([`AuditError::Modified`] or [`AuditError::Mismatch`]). A crash between writing
//! the anchor and deleting the segments leaves segments below the anchor, which are ignored and
//! deleted by the next `open`.
//!
//! # Cost
//!
//! An append serialises its event once into the line it writes and hashes that buffer; a batch
//! costs one fsync ([`AuditLog::sync`]). Replay ([`verify`], [`AuditLog::open`]) streams each
//! segment in 1 MiB chunks of whole lines; worker threads (one per core, at most four) hash the
//! leaves and check the chain links inside a chunk, and the calling thread checks sequence
//! numbers, the links between chunks and grows the Merkle frontier, capturing root and chain at
//! each checkpointed size. Replay does not parse event JSON (the hash covers its exact bytes;
//! [`tail`] parses it). `open` keeps 32 bytes per record present for consistency proofs.

pub mod merkle;
mod record;
mod replay;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{Frontier, Hash, Pruned};
use crate::replay::{SegmentInfo, State, replay};

/// One security-relevant event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// UTC time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Who: the principal's name.
    pub principal: String,
    /// What: the action (`run_pipeline`, `destroy_key`, ...).
    pub action: String,
    /// On what: the resource (`pipeline:customers`, `key:pii-main`).
    pub resource: String,
    /// `allowed`, `denied`, `succeeded` or `failed`.
    pub outcome: String,
    /// Error code of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Ids of the policies that decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Run id, for pipeline runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Rows processed, for pipeline runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Free-form detail without secrets or cell values (what retention removed, what recovery
    /// saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A signed statement of the log's size, Merkle root and chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Records covered.
    pub size: u64,
    /// Merkle root of those records, hex.
    pub root: String,
    /// Chain hash after the last of them, hex.
    pub chain: String,
    /// When it was signed, ns since the epoch.
    pub time_ns: i64,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl Checkpoint {
    fn message(size: u64, root: &str, chain: &str, time_ns: i64) -> Vec<u8> {
        format!("custos-audit-checkpoint-v1\n{size}\n{root}\n{chain}\n{time_ns}\n").into_bytes()
    }

    /// Whether the signature is valid under `key`.
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&sig) else {
            return false;
        };
        key.verify(
            &Self::message(self.size, &self.root, &self.chain, self.time_ns),
            &sig,
        )
        .is_ok()
    }
}

/// Why the log failed verification or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// I/O on a log file.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record does not hash to its stored chain value.
    #[error("audit record at position {0} was modified")]
    Modified(u64),
    /// Records are missing, inserted or reordered.
    #[error(
        "audit record at position {position} has sequence {found}: records were deleted, inserted or reordered"
    )]
    Sequence {
        /// Where.
        position: u64,
        /// The sequence number found there.
        found: u64,
    },
    /// The last record is incomplete (a crash during a write).
    #[error("audit record at position {0} is torn (incomplete last line)")]
    Torn(u64),
    /// A line that is not a record.
    #[error("audit record at position {0} is not a valid record")]
    Malformed(u64),
    /// The log is shorter than its last checkpoint.
    #[error(
        "audit log truncated: checkpoint {checkpoint} covers {size} records but the log holds {actual}"
    )]
    Truncated {
        /// Which checkpoint (0-based).
        checkpoint: usize,
        /// Records it covers.
        size: u64,
        /// Records present.
        actual: u64,
    },
    /// A checkpoint whose signature does not verify.
    #[error("audit checkpoint {0} has an invalid signature (forged or altered)")]
    Forged(usize),
    /// A checkpoint whose root or chain does not match the records.
    #[error("audit checkpoint {0} does not match the records it covers (history was rewritten)")]
    Mismatch(usize),
    /// The retention anchor cannot be read as one.
    #[error("audit anchor {path} is invalid: {reason}")]
    Anchor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A consistency proof needs records that retention removed, or a size the log never had.
    #[error(
        "audit consistency proof from size {old_size} is unavailable: the log holds positions {first}..{size}"
    )]
    ProofUnavailable {
        /// The size asked for.
        old_size: u64,
        /// First position still present.
        first: u64,
        /// Positions in the log.
        size: u64,
    },
    /// A line that is not a record, found by [`tail`] (which does not count positions).
    #[error("audit segment {path} line {line} is not a valid record")]
    BadLine {
        /// The segment.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An event that cannot be written as JSON.
    #[error("audit event at position {0} cannot be serialised")]
    Encode(u64),
    /// A verification thread stopped without an answer.
    #[error("audit verification worker stopped unexpectedly")]
    Worker,
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The segments in `dir` by number, ascending.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let mut out: Vec<(u64, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let n = p
                    .file_name()?
                    .to_str()?
                    .strip_prefix("segment-")?
                    .strip_suffix(".jsonl")?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some((n.parse().ok()?, p))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(dir)(e)),
    };
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("segment-{number:06}.jsonl"))
}

fn checkpoints(dir: &Path) -> Result<Vec<Checkpoint>, AuditError> {
    let path = dir.join("checkpoints.jsonl");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(&path))?;
        out.push(serde_json::from_str(&line).map_err(|_| AuditError::Forged(i))?);
    }
    Ok(out)
}

/// Where replay starts: the state after the records removed by retention.
#[derive(Debug, Clone, Default)]
pub(crate) struct Anchor {
    /// Chain value after record `frontier.size() - 1`.
    pub chain: Hash,
    /// Frontier of the removed prefix; its size is the first position present.
    pub frontier: Frontier,
    /// Segments numbered below this were removed.
    pub first_segment: u64,
}

impl Anchor {
    fn first(&self) -> u64 {
        self.frontier.size()
    }
}

/// `anchor.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorFile {
    /// First sequence number present.
    first: u64,
    /// Chain value after record `first - 1`, hex.
    chain: String,
    /// Merkle frontier of records `[0, first)`, hex, largest subtree first.
    frontier: Vec<String>,
    /// First segment number kept.
    first_segment: u64,
    /// When the retention that wrote it ran, ns since the epoch.
    time_ns: i64,
}

const ANCHOR: &str = "anchor.json";

fn read_anchor(dir: &Path) -> Result<Anchor, AuditError> {
    let path = dir.join(ANCHOR);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Anchor::default()),
        Err(e) => return Err(io(&path)(e)),
    };
    let bad = |reason| AuditError::Anchor {
        path: path.clone(),
        reason,
    };
    let f: AnchorFile = serde_json::from_slice(&text).map_err(|_| bad("not an anchor"))?;
    let h = |s: &str| -> Option<Hash> { hex::decode(s).ok()?.try_into().ok() };
    let chain = h(&f.chain).ok_or_else(|| bad("chain is not a hex hash"))?;
    let nodes = f
        .frontier
        .iter()
        .map(|s| h(s))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("frontier holds something other than hex hashes"))?;
    let frontier = Frontier::from_parts(f.first, nodes)
        .ok_or_else(|| bad("frontier does not match the first position"))?;
    Ok(Anchor {
        chain,
        frontier,
        first_segment: f.first_segment,
    })
}

fn write_anchor(dir: &Path, a: &Anchor, time_ns: i64) -> Result<(), AuditError> {
    let f = AnchorFile {
        first: a.first(),
        chain: hex::encode(a.chain),
        frontier: a.frontier.nodes().iter().map(hex::encode).collect(),
        first_segment: a.first_segment,
        time_ns,
    };
    let path = dir.join(ANCHOR);
    let tmp = dir.join("anchor.json.tmp");
    let mut text = serde_json::to_vec_pretty(&f).map_err(|_| AuditError::Encode(a.first()))?;
    text.push(b'\n');
    let mut file = create_private(&tmp, false)?;
    file.write_all(&text).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Opens `path` for writing, created with mode 0600 if missing: appending, or else truncated.
fn create_private(path: &Path, append: bool) -> Result<File, AuditError> {
    let mut o = OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(io(path))
}

/// Checks every checkpoint against a replayed log: signature (when a key is given), size,
/// and root and chain for sizes not below the anchor.
fn check_checkpoints(
    cps: &[Checkpoint],
    targets: &[u64],
    state: &State,
    first: u64,
    key: Option<&VerifyingKey>,
) -> Result<(), AuditError> {
    for (i, cp) in cps.iter().enumerate() {
        if key.is_some_and(|k| !cp.verify_signature(k)) {
            return Err(AuditError::Forged(i));
        }
        if cp.size > state.len() {
            return Err(AuditError::Truncated {
                checkpoint: i,
                size: cp.size,
                actual: state.len(),
            });
        }
        if cp.size < first {
            continue;
        }
        let (root, chain) = targets
            .binary_search(&cp.size)
            .ok()
            .and_then(|t| state.captured.get(t))
            .ok_or(AuditError::Mismatch(i))?;
        if hex::encode(root) != cp.root || hex::encode(chain) != cp.chain {
            return Err(AuditError::Mismatch(i));
        }
    }
    Ok(())
}

/// The sizes at which replay must capture root and chain.
fn targets(cps: &[Checkpoint], first: u64) -> Vec<u64> {
    let mut t: Vec<u64> = cps.iter().map(|c| c.size).filter(|s| *s >= first).collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Positions in the log (records present plus those removed by retention).
    pub records: u64,
    /// The first position present (records before it were removed by retention).
    pub first: u64,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// Merkle root of all records, hex.
    pub root: String,
}

/// Verifies the log in `dir` against the checkpoint key. Reads only; a torn last record is an
/// error here ([`AuditLog::open`] repairs it).
pub fn verify(dir: &Path, key: &VerifyingKey) -> Result<Report, AuditError> {
    let anchor = read_anchor(dir)?;
    let cps = checkpoints(dir)?;
    let targets = targets(&cps, anchor.first());
    let state = replay(dir, &anchor, &targets, false)?;
    if let Some(t) = &state.torn {
        return Err(AuditError::Torn(t.position));
    }
    check_checkpoints(&cps, &targets, &state, anchor.first(), Some(key))?;
    Ok(Report {
        records: state.len(),
        first: anchor.first(),
        checkpoints: cps.len(),
        root: hex::encode(state.tree.root()),
    })
}

/// The segments of the log in `dir` that retention kept, newest first.
fn kept_segments_newest_first(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let anchor = read_anchor(dir)?;
    Ok(segments(dir)?
        .into_iter()
        .rev()
        .filter(|(n, _)| *n >= anchor.first_segment)
        .map(|(_, p)| p)
        .collect())
}

/// The complete lines of a segment's bytes (an incomplete last line is not a record).
fn complete_lines(text: &[u8]) -> Vec<&[u8]> {
    match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => text[..i].split(|b| *b == b'\n').collect(),
        None => Vec::new(),
    }
}

/// Parses line `index` (0-based) of the segment at `path` into `(position, event)`.
fn read_line(path: &Path, index: usize, line: &[u8]) -> Result<(u64, Event), AuditError> {
    let bad = || AuditError::BadLine {
        path: path.to_path_buf(),
        line: index + 1,
    };
    let p = record::parse(line).ok_or_else(bad)?;
    let event: Event = serde_json::from_slice(p.event).map_err(|_| bad())?;
    Ok((p.seq, event))
}

/// The last `limit` records of the log in `dir` as `(position, event)`, oldest first. Reads
/// only the segments it needs and verifies nothing (see [`verify`]); an incomplete last line is
/// not a record and is skipped.
pub fn tail(dir: &Path, limit: usize) -> Result<Vec<(u64, Event)>, AuditError> {
    let mut out: Vec<(u64, Event)> = Vec::new();
    for path in kept_segments_newest_first(dir)? {
        if out.len() >= limit {
            break;
        }
        let text = std::fs::read(&path).map_err(io(&path))?;
        let lines = complete_lines(&text);
        let skip = lines.len().saturating_sub(limit - out.len());
        let mut part = lines
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, line)| read_line(&path, i, line))
            .collect::<Result<Vec<_>, _>>()?;
        part.append(&mut out);
        out = part;
    }
    Ok(out)
}

/// The newest record of the log in `dir` whose action is `action`, as `(position, event)`.
/// Reads segments newest first and stops at the first match; like [`tail`] it verifies
/// nothing (open the log first).
pub fn last_of(dir: &Path, action: &str) -> Result<Option<(u64, Event)>, AuditError> {
    // Events are JSON objects written by serde_json: the action appears as this exact text.
    let needle = format!("\"action\":{}", serde_json::Value::from(action));
    for path in kept_segments_newest_first(dir)? {
        let text = std::fs::read(&path).map_err(io(&path))?;
        for (i, line) in complete_lines(&text).iter().enumerate().rev() {
            if !line.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                continue;
            }
            let (seq, event) = read_line(&path, i, line)?;
            if event.action == action {
                return Ok(Some((seq, event)));
            }
        }
    }
    Ok(None)
}

/// What [`AuditLog::open`] repaired: a torn last record moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The position the torn record would have had (the next record takes it).
    pub position: u64,
    /// Torn bytes moved aside.
    pub bytes: u64,
    /// Where they were saved.
    pub saved_to: PathBuf,
}

/// What [`AuditLog::apply_retention`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// First position removed.
    pub removed_from: u64,
    /// One past the last position removed: the first position still present.
    pub removed_to: u64,
    /// Segment files deleted.
    pub segments: usize,
    /// Position of the `audit_retention` event appended.
    pub event_position: u64,
}

/// An open audit log for appending.
pub struct AuditLog {
    dir: PathBuf,
    segment_bytes: u64,
    anchor: Anchor,
    /// Leaf hashes of the records present (position `anchor.first() + i`).
    leaves: Vec<Hash>,
    tree: Frontier,
    chain: Hash,
    /// The segments present; the last is the one appended to.
    segments: Vec<SegmentInfo>,
    segment_size: u64,
    file: std::io::BufWriter<File>,
    line: Vec<u8>,
    recovered: Option<Recovered>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("first", &self.anchor.first())
            .field("records", &self.tree.size())
            .finish()
    }
}

/// The lock file that serializes processes sharing one audit directory.
pub const LOCK_FILE: &str = "writer.lock";

/// Takes the exclusive lock of the audit directory `dir`, waiting for it: processes that
/// share a log (several CLI commands at once) append, retain, verify and read under it, so
/// none sees another's half-written record or appends on a stale chain. Released on drop.
pub fn lock(dir: &Path) -> Result<File, AuditError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(LOCK_FILE);
    let file = create_private(&path, true)?;
    file.lock().map_err(io(&path))?;
    Ok(file)
}

/// Write buffer of the current segment.
const WRITE_BUFFER: usize = 1 << 16;

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Moves a torn tail aside and truncates its segment back to the last complete line.
fn recover(dir: &Path, torn: &replay::TornTail) -> Result<Recovered, AuditError> {
    let seg = &torn.path;
    let len = std::fs::metadata(seg).map_err(io(seg))?.len();
    if len != torn.offset + torn.bytes.len() as u64 {
        // The segment changed since it was read: someone else is writing.
        return Err(AuditError::Torn(torn.position));
    }
    let saved_to = dir.join(format!("torn-{}-{}.bin", torn.position, unix_ns()));
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(&saved_to).map_err(io(&saved_to))?;
    f.write_all(&torn.bytes).map_err(io(&saved_to))?;
    f.sync_all().map_err(io(&saved_to))?;
    let s = OpenOptions::new().write(true).open(seg).map_err(io(seg))?;
    s.set_len(torn.offset).map_err(io(seg))?;
    s.sync_all().map_err(io(seg))?;
    sync_dir(dir)?;
    Ok(Recovered {
        position: torn.position,
        bytes: torn.bytes.len() as u64,
        saved_to,
    })
}

/// Just the time of an event.
#[derive(Deserialize)]
struct EventTime {
    time_ns: i64,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, verifying the records and every checkpoint's size,
    /// root and chain (signatures need the key: see [`verify`]); new segments start when the
    /// current one would exceed `segment_bytes`. A torn last record is moved aside and reported
    /// by [`AuditLog::recovered`]; any other failure is an error.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let anchor = read_anchor(dir)?;
        let cps = checkpoints(dir)?;
        let targets = targets(&cps, anchor.first());
        let mut state = replay(dir, &anchor, &targets, true)?;
        let recovered = match state.torn.take() {
            Some(t) if cps.iter().any(|c| c.size > t.position) => {
                // A checkpoint was signed over this record, so it was complete once.
                return Err(AuditError::Torn(t.position));
            }
            Some(t) => Some(recover(dir, &t)?),
            None => None,
        };
        check_checkpoints(&cps, &targets, &state, anchor.first(), None)?;
        // Finish a retention interrupted between writing the anchor and deleting segments.
        for (n, p) in segments(dir)? {
            if n < anchor.first_segment {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        if state.segments.is_empty() {
            let number = anchor.first_segment.max(1);
            state.segments.push(SegmentInfo {
                number,
                path: segment_path(dir, number),
                first: state.len(),
                records: 0,
                end_chain: state.chain,
            });
        }
        let current = state
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| segment_path(dir, 1));
        let file = create_private(&current, true)?;
        let segment_size = file.metadata().map_err(io(&current))?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            anchor,
            leaves: state.leaves,
            tree: state.tree,
            chain: state.chain,
            segments: state.segments,
            segment_size,
            file: std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            line: Vec::with_capacity(512),
            recovered,
        })
    }

    /// What `open` repaired, if anything: report it and append an event saying so.
    pub fn recovered(&self) -> Option<&Recovered> {
        self.recovered.as_ref()
    }

    /// Positions in the log (the next record's sequence number), removed ones included.
    pub fn len(&self) -> u64 {
        self.tree.size()
    }

    /// Whether nothing was ever appended.
    pub fn is_empty(&self) -> bool {
        self.tree.size() == 0
    }

    /// The first position still present (records before it were removed by retention).
    pub fn first(&self) -> u64 {
        self.anchor.first()
    }

    fn current_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| segment_path(&self.dir, 1))
    }

    /// Appends an event; durable after [`AuditLog::sync`]. Returns its position.
    pub fn append(&mut self, event: &Event) -> Result<u64, AuditError> {
        let seq = self.len();
        let (leaf, chain) = record::encode(&mut self.line, seq, event, &self.chain)
            .map_err(|_| AuditError::Encode(seq))?;
        let n = self.line.len() as u64;
        if self.segment_size > 0 && self.segment_size + n > self.segment_bytes {
            self.rotate()?;
        }
        if let Err(e) = self.file.write_all(&self.line) {
            return Err(io(&self.current_path())(e));
        }
        self.segment_size += n;
        self.leaves.push(leaf);
        self.tree.push(leaf);
        self.chain = chain;
        if let Some(s) = self.segments.last_mut() {
            s.records += 1;
            s.end_chain = chain;
        }
        Ok(seq)
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        let number = self.segments.last().map_or(1, |s| s.number + 1);
        let path = segment_path(&self.dir, number);
        self.file = std::io::BufWriter::with_capacity(WRITE_BUFFER, create_private(&path, true)?);
        sync_dir(&self.dir)?;
        self.segments.push(SegmentInfo {
            number,
            path,
            first: self.len(),
            records: 0,
            end_chain: self.chain,
        });
        self.segment_size = 0;
        Ok(())
    }

    /// Whether another process changed the log since this handle last synced (a later
    /// segment, another length of the current one, or records removed by retention): such a
    /// handle must be opened again before it appends. Call with the directory's [`lock`].
    pub fn is_stale(&self) -> Result<bool, AuditError> {
        let on_disk = segments(&self.dir)?;
        let (Some((number, path)), Some(ours)) = (on_disk.last(), self.segments.last()) else {
            return Ok(true);
        };
        if *number != ours.number {
            return Ok(true);
        }
        let len = std::fs::metadata(path).map_err(io(path))?.len();
        if len != self.segment_size {
            return Ok(true);
        }
        let anchor = read_anchor(&self.dir)?;
        Ok(anchor.first_segment != self.anchor.first_segment
            || anchor.first() != self.anchor.first())
    }

    /// Flushes and fsyncs the current segment (one fsync for a batch of appends).
    pub fn sync(&mut self) -> Result<(), AuditError> {
        let path = self.current_path();
        self.file.flush().map_err(io(&path))?;
        self.file.get_ref().sync_data().map_err(io(&path))
    }

    /// Signs and appends a checkpoint of the whole log (after syncing it).
    pub fn checkpoint(&mut self, key: &SigningKey, time_ns: i64) -> Result<Checkpoint, AuditError> {
        self.sync()?;
        let size = self.len();
        let root = hex::encode(self.tree.root());
        let chain = hex::encode(self.chain);
        let sig = key.sign(&Checkpoint::message(size, &root, &chain, time_ns));
        let cp = Checkpoint {
            size,
            root,
            chain,
            time_ns,
            signature: hex::encode(sig.to_bytes()),
        };
        let path = self.dir.join("checkpoints.jsonl");
        let mut f = create_private(&path, true)?;
        let mut line = serde_json::to_vec(&cp).map_err(|_| AuditError::Encode(size))?;
        line.push(b'\n');
        f.write_all(&line).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        Ok(cp)
    }

    /// Proves that the log of the first `old_size` records (an exported checkpoint) is a prefix
    /// of the current log. Unavailable when a node it needs was removed by retention (which
    /// can happen only when `old_size` is below [`AuditLog::first`]) or `old_size` exceeds the
    /// log.
    pub fn consistency_proof(&self, old_size: u64) -> Result<Vec<Hash>, AuditError> {
        Pruned::new(&self.anchor.frontier, &self.leaves)
            .consistency_proof(old_size, self.len())
            .ok_or(AuditError::ProofUnavailable {
                old_size,
                first: self.first(),
                size: self.len(),
            })
    }

    /// The Merkle root of the whole log.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Removes whole segments from the front whose every record is older than
    /// `now_ns - older_than_ns`, keeping the current segment and every record not yet covered
    /// by a checkpoint (so a checkpoint binds the anchor: [`AuditLog::open`] has checked the
    /// root and chain of every checkpoint, [`verify`] checks their signatures); writes
    /// `anchor.json` first, then deletes, then appends and syncs an `audit_retention` event (by
    /// `principal` on `host`) naming the removed range. `None` when nothing qualifies (and
    /// nothing is written).
    pub fn apply_retention(
        &mut self,
        older_than_ns: i64,
        now_ns: i64,
        principal: &str,
        host: &str,
    ) -> Result<Option<RetentionReport>, AuditError> {
        let cutoff = now_ns.saturating_sub(older_than_ns);
        let covered = checkpoints(&self.dir)?
            .iter()
            .filter(|c| c.size <= self.len())
            .map(|c| c.size)
            .max()
            .unwrap_or(0);
        let mut remove = 0usize;
        for seg in self
            .segments
            .iter()
            .take(self.segments.len().saturating_sub(1))
        {
            if seg.first + seg.records > covered || !all_older(seg, cutoff)? {
                break;
            }
            remove += 1;
        }
        let (Some(last_removed), Some(first_kept)) = (
            self.segments.get(remove.wrapping_sub(1)),
            self.segments.get(remove),
        ) else {
            return Ok(None);
        };
        let old_first = self.first();
        let k = first_kept.first;
        let drop_leaves = (k - old_first) as usize;
        let mut frontier = self.anchor.frontier.clone();
        for leaf in self.leaves.iter().take(drop_leaves) {
            frontier.push(*leaf);
        }
        let anchor = Anchor {
            chain: last_removed.end_chain,
            frontier,
            first_segment: first_kept.number,
        };
        self.sync()?;
        write_anchor(&self.dir, &anchor, now_ns)?;
        for (n, p) in segments(&self.dir)? {
            if n < anchor.first_segment {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        sync_dir(&self.dir)?;
        self.leaves.drain(..drop_leaves);
        self.segments.drain(..remove);
        self.anchor = anchor;
        let event = Event {
            time_ns: now_ns,
            principal: principal.to_string(),
            action: "audit_retention".into(),
            resource: "audit".into(),
            outcome: "succeeded".into(),
            error_code: None,
            host: host.to_string(),
            pid: std::process::id(),
            policies: Vec::new(),
            run_id: None,
            rows: None,
            detail: Some(format!(
                "removed records {old_first}..{k} ({remove} segments), all older than {cutoff} ns"
            )),
        };
        let event_position = self.append(&event)?;
        self.sync()?;
        Ok(Some(RetentionReport {
            removed_from: old_first,
            removed_to: k,
            segments: remove,
            event_position,
        }))
    }
}

/// Whether every record of a (verified) segment is older than `cutoff`.
fn all_older(seg: &SegmentInfo, cutoff: i64) -> Result<bool, AuditError> {
    let file = File::open(&seg.path).map_err(io(&seg.path))?;
    for (pos, line) in (seg.first..).zip(BufReader::new(file).split(b'\n')) {
        let line = line.map_err(io(&seg.path))?;
        let t: EventTime = record::parse(&line)
            .and_then(|p| serde_json::from_slice(p.event).ok())
            .ok_or(AuditError::Malformed(pos))?;
        if t.time_ns >= cutoff {
            return Ok(false);
        }
    }
    Ok(true)
}
