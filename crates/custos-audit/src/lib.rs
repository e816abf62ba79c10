//! The custos audit log: append-only JSON-lines segments of security events, each record
//! hash-chained to the one before it and a leaf of an RFC 6962 Merkle tree, plus Ed25519-signed
//! checkpoints (tree size, root, chain head). [`verify`] recomputes everything and names the
//! first bad position for a modified, deleted, inserted, reordered or torn record, a log
//! truncated below its last checkpoint, and a forged checkpoint; [`AuditLog::consistency_proof`]
//! proves to a holder of an older checkpoint that the log only grew.
//!
//! Events never hold cell values, secrets or raw subject identifiers: callers pass keyed
//! hashes for subjects.

pub mod merkle;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{Hash, leaf_hash, root};

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
}

/// What is hashed for a record: its position and its event.
#[derive(Serialize)]
struct Leaf<'a> {
    seq: u64,
    event: &'a Event,
}

/// A record as stored: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    seq: u64,
    event: Event,
    /// Chain hash after this record, hex.
    chain: String,
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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn chain_next(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

fn segments(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(dir)(e)),
    };
    out.sort();
    Ok(out)
}

/// Reads every record, checking sequence and chain; returns the leaves and the chain value
/// after each record (`chains[i]` after `i` records).
fn replay(dir: &Path) -> Result<(Vec<Hash>, Vec<Hash>), AuditError> {
    let mut leaves = Vec::new();
    let mut chains = vec![[0u8; 32]];
    let segs = segments(dir)?;
    for (si, seg) in segs.iter().enumerate() {
        let mut text = String::new();
        File::open(seg)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(io(seg))?;
        let last_segment = si + 1 == segs.len();
        let ends_clean = text.is_empty() || text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (li, line) in lines.iter().enumerate() {
            let pos = leaves.len() as u64;
            let rec: Record = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(_) if last_segment && li + 1 == lines.len() && !ends_clean => {
                    return Err(AuditError::Torn(pos));
                }
                Err(_) => return Err(AuditError::Malformed(pos)),
            };
            if rec.seq != pos {
                return Err(AuditError::Sequence {
                    position: pos,
                    found: rec.seq,
                });
            }
            let leaf = leaf_hash(
                &serde_json::to_vec(&Leaf {
                    seq: rec.seq,
                    event: &rec.event,
                })
                .map_err(|_| AuditError::Malformed(pos))?,
            );
            let prev = chains[chains.len() - 1];
            let chain = chain_next(&prev, &leaf);
            if hex::encode(chain) != rec.chain {
                return Err(AuditError::Modified(pos));
            }
            leaves.push(leaf);
            chains.push(chain);
        }
        if !ends_clean && !last_segment {
            return Err(AuditError::Malformed(leaves.len() as u64));
        }
    }
    Ok((leaves, chains))
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

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records verified.
    pub records: u64,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// Merkle root of all records, hex.
    pub root: String,
}

/// Verifies the log in `dir` against the checkpoint key.
pub fn verify(dir: &Path, key: &VerifyingKey) -> Result<Report, AuditError> {
    let (leaves, chains) = replay(dir)?;
    let cps = checkpoints(dir)?;
    for (i, cp) in cps.iter().enumerate() {
        if !cp.verify_signature(key) {
            return Err(AuditError::Forged(i));
        }
        if cp.size > leaves.len() as u64 {
            return Err(AuditError::Truncated {
                checkpoint: i,
                size: cp.size,
                actual: leaves.len() as u64,
            });
        }
        let n = cp.size as usize;
        if hex::encode(root(&leaves[..n])) != cp.root || hex::encode(chains[n]) != cp.chain {
            return Err(AuditError::Mismatch(i));
        }
    }
    Ok(Report {
        records: leaves.len() as u64,
        checkpoints: cps.len(),
        root: hex::encode(root(&leaves)),
    })
}

/// An open audit log for appending.
pub struct AuditLog {
    dir: PathBuf,
    segment_bytes: u64,
    leaves: Vec<Hash>,
    chain: Hash,
    segment: PathBuf,
    segment_size: u64,
    file: std::io::BufWriter<File>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("records", &self.leaves.len())
            .finish()
    }
}

fn open_segment(path: &Path) -> Result<File, AuditError> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(io(path))
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, verifying the existing records; new segments start
    /// when the current one exceeds `segment_bytes`.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (leaves, chains) = replay(dir)?;
        let chain = chains[chains.len() - 1];
        let segment = segments(dir)?
            .pop()
            .unwrap_or_else(|| dir.join("segment-000001.jsonl"));
        let file = open_segment(&segment)?;
        let segment_size = file.metadata().map_err(io(&segment))?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            leaves,
            chain,
            segment,
            segment_size,
            file: std::io::BufWriter::new(file),
        })
    }

    /// Records in the log.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Appends an event; durable after [`AuditLog::sync`]. Returns its position.
    pub fn append(&mut self, event: Event) -> Result<u64, AuditError> {
        let seq = self.len();
        let leaf = leaf_hash(
            &serde_json::to_vec(&Leaf { seq, event: &event })
                .map_err(|_| AuditError::Malformed(seq))?,
        );
        let chain = chain_next(&self.chain, &leaf);
        let mut line = serde_json::to_vec(&Record {
            seq,
            event,
            chain: hex::encode(chain),
        })
        .map_err(|_| AuditError::Malformed(seq))?;
        line.push(b'\n');
        if self.segment_size > 0 && self.segment_size + line.len() as u64 > self.segment_bytes {
            self.sync()?;
            let n = segments(&self.dir)?.len() + 1;
            self.segment = self.dir.join(format!("segment-{n:06}.jsonl"));
            self.file = std::io::BufWriter::new(open_segment(&self.segment)?);
            self.segment_size = 0;
        }
        self.file.write_all(&line).map_err(io(&self.segment))?;
        self.segment_size += line.len() as u64;
        self.leaves.push(leaf);
        self.chain = chain;
        Ok(seq)
    }

    /// Flushes and fsyncs the current segment (one fsync for a batch of appends).
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.file.flush().map_err(io(&self.segment))?;
        self.file.get_ref().sync_data().map_err(io(&self.segment))
    }

    /// Signs and appends a checkpoint of the whole log (after syncing it).
    pub fn checkpoint(&mut self, key: &SigningKey, time_ns: i64) -> Result<Checkpoint, AuditError> {
        self.sync()?;
        let size = self.len();
        let root = hex::encode(root(&self.leaves));
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
        let mut f = open_segment(&path)?;
        let mut line = serde_json::to_vec(&cp).map_err(|_| AuditError::Malformed(size))?;
        line.push(b'\n');
        f.write_all(&line).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        Ok(cp)
    }

    /// Proves that the log of the first `old_size` records (an exported checkpoint) is a prefix
    /// of the current log.
    pub fn consistency_proof(&self, old_size: u64) -> Vec<Hash> {
        merkle::consistency_proof(old_size as usize, &self.leaves)
    }

    /// The Merkle root of the whole log.
    pub fn root(&self) -> Hash {
        root(&self.leaves)
    }
}
