//! Reading a log back: segments are streamed in chunks of whole lines; worker threads split
//! lines, hash leaves and check the chain links inside a chunk, and the calling thread checks
//! sequence numbers, the link between chunks, grows the Merkle frontier and captures the root
//! and chain at every size a checkpoint names. Memory stays bounded by the chunk size (plus the
//! leaf hashes when the caller keeps them).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::record::{chain_next, find_newline, parse};
use crate::{Anchor, AuditError, io, segments};

/// Bytes read per chunk.
const CHUNK: usize = 1 << 20;

/// One segment as replayed.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    /// Number in the file name.
    pub number: u64,
    /// The file.
    pub path: PathBuf,
    /// Position of its first record.
    pub first: u64,
    /// Records it holds.
    pub records: u64,
    /// Chain value after its last record (the previous chain when empty).
    pub end_chain: Hash,
}

/// An incomplete last line of the last segment.
#[derive(Debug)]
pub(crate) struct TornTail {
    /// The position the record would have had.
    pub position: u64,
    /// The segment.
    pub path: PathBuf,
    /// Where the torn bytes start.
    pub offset: u64,
    /// The torn bytes.
    pub bytes: Vec<u8>,
}

/// The state of a replayed log.
#[derive(Debug)]
pub(crate) struct State {
    /// Leaf hashes of the records present (when asked for).
    pub leaves: Vec<Hash>,
    /// Frontier of the whole tree, removed prefix included.
    pub tree: Frontier,
    /// Chain value after the last record.
    pub chain: Hash,
    /// The segments, in order.
    pub segments: Vec<SegmentInfo>,
    /// A torn last line, not counted as a record.
    pub torn: Option<TornTail>,
    /// `(root, chain)` at each of the sizes asked for (in the same order).
    pub captured: Vec<(Hash, Hash)>,
}

impl State {
    /// Positions in the log, removed ones included.
    pub fn len(&self) -> u64 {
        self.tree.size()
    }
}

/// What a worker found in a chunk.
struct ChunkOut {
    /// `(seq, leaf, stored chain)` per line, up to the first broken line included.
    lines: Vec<(u64, Hash, Hash)>,
    /// The last entry of `lines` does not chain from the one before it.
    broken: bool,
    /// The line after the last entry of `lines` is not a record.
    malformed: bool,
}

fn analyse(data: &[u8]) -> ChunkOut {
    let mut out = ChunkOut {
        lines: Vec::with_capacity(data.len() / 256 + 1),
        broken: false,
        malformed: false,
    };
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match find_newline(rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = next;
        let Some(p) = parse(line) else {
            out.malformed = true;
            break;
        };
        let leaf = leaf_hash(p.body);
        if let Some((_, _, prev)) = out.lines.last()
            && chain_next(prev, &leaf) != p.chain
        {
            out.broken = true;
        }
        out.lines.push((p.seq, leaf, p.chain));
        if out.broken {
            break;
        }
    }
    out
}

enum Pending {
    /// A chunk handed to a worker.
    Chunk(usize),
    /// The end of a segment, with its unterminated tail and byte length.
    End {
        number: u64,
        path: PathBuf,
        tail: Vec<u8>,
        size: u64,
        last: bool,
    },
}

struct Merger<'a> {
    state: State,
    keep_leaves: bool,
    targets: &'a [u64],
    next_target: usize,
    segment_first: u64,
}

impl Merger<'_> {
    fn capture(&mut self) {
        while let Some(&t) = self.targets.get(self.next_target) {
            if t != self.state.tree.size() {
                break;
            }
            self.state
                .captured
                .push((self.state.tree.root(), self.state.chain));
            self.next_target += 1;
        }
    }

    fn chunk(&mut self, out: ChunkOut) -> Result<(), AuditError> {
        let n = out.lines.len();
        for (j, (seq, leaf, chain)) in out.lines.into_iter().enumerate() {
            let pos = self.state.len();
            if seq != pos {
                return Err(AuditError::Sequence {
                    position: pos,
                    found: seq,
                });
            }
            let broken = if j == 0 {
                chain_next(&self.state.chain, &leaf) != chain
            } else {
                out.broken && j + 1 == n
            };
            if broken {
                return Err(AuditError::Modified(pos));
            }
            self.state.tree.push(leaf);
            if self.keep_leaves {
                self.state.leaves.push(leaf);
            }
            self.state.chain = chain;
            self.capture();
        }
        if out.malformed {
            return Err(AuditError::Malformed(self.state.len()));
        }
        Ok(())
    }

    fn end(
        &mut self,
        number: u64,
        path: PathBuf,
        tail: Vec<u8>,
        size: u64,
        last: bool,
    ) -> Result<(), AuditError> {
        let pos = self.state.len();
        if !tail.is_empty() {
            if !last {
                return Err(AuditError::Malformed(pos));
            }
            self.state.torn = Some(TornTail {
                position: pos,
                path: path.clone(),
                offset: size - tail.len() as u64,
                bytes: tail,
            });
        }
        self.state.segments.push(SegmentInfo {
            number,
            path,
            first: self.segment_first,
            records: pos - self.segment_first,
            end_chain: self.state.chain,
        });
        self.segment_first = pos;
        Ok(())
    }
}

/// Replays the log in `dir` from `anchor`, capturing `(root, chain)` at each of `targets`
/// (sorted, distinct, each at least `anchor.first`).
pub(crate) fn replay(
    dir: &Path,
    anchor: &Anchor,
    targets: &[u64],
    keep_leaves: bool,
) -> Result<State, AuditError> {
    let segs: Vec<_> = segments(dir)?
        .into_iter()
        .filter(|(n, _)| *n >= anchor.first_segment)
        .collect();
    let mut m = Merger {
        state: State {
            leaves: Vec::new(),
            tree: anchor.frontier.clone(),
            chain: anchor.chain,
            segments: Vec::with_capacity(segs.len()),
            torn: None,
            captured: Vec::with_capacity(targets.len()),
        },
        keep_leaves,
        targets,
        next_target: 0,
        segment_first: anchor.frontier.size(),
    };
    m.capture();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    std::thread::scope(|s| {
        let mut txs = Vec::with_capacity(workers);
        let mut rxs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            // Buffers go back with the results and are reused: a fresh 1 MiB buffer per chunk
            // costs page faults that showed up as a fifth of verification's CPU time.
            let (otx, orx) = mpsc::channel::<(ChunkOut, Vec<u8>)>();
            s.spawn(move || {
                for data in rx {
                    let out = analyse(&data);
                    if otx.send((out, data)).is_err() {
                        break;
                    }
                }
            });
            txs.push(tx);
            rxs.push(orx);
        }
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut in_flight = 0usize;
        let mut next = 0usize;
        let mut free: Vec<Vec<u8>> = Vec::new();
        let settle = |pending: &mut VecDeque<Pending>,
                      in_flight: &mut usize,
                      m: &mut Merger<'_>,
                      free: &mut Vec<Vec<u8>>|
         -> Result<(), AuditError> {
            match pending.pop_front() {
                Some(Pending::Chunk(w)) => {
                    *in_flight -= 1;
                    let (out, buf) = rxs
                        .get(w)
                        .and_then(|rx| rx.recv().ok())
                        .ok_or(AuditError::Worker)?;
                    free.push(buf);
                    m.chunk(out)
                }
                Some(Pending::End {
                    number,
                    path,
                    tail,
                    size,
                    last,
                }) => m.end(number, path, tail, size, last),
                None => Ok(()),
            }
        };
        for (si, (number, path)) in segs.iter().enumerate() {
            let mut file = File::open(path).map_err(io(path))?;
            let mut carry: Vec<u8> = Vec::new();
            let mut size = 0u64;
            loop {
                let mut buf = free.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(&carry);
                carry.clear();
                let before = buf.len();
                buf.reserve(CHUNK);
                let got = (&mut file)
                    .take(CHUNK as u64)
                    .read_to_end(&mut buf)
                    .map_err(io(path))?;
                size += got as u64;
                if got == 0 {
                    carry = buf;
                    break;
                }
                let Some(nl) = memchr::memrchr(b'\n', &buf[before..]) else {
                    carry = buf;
                    continue;
                };
                carry.extend_from_slice(&buf[before + nl + 1..]);
                buf.truncate(before + nl + 1);
                while in_flight >= 2 * workers {
                    settle(&mut pending, &mut in_flight, &mut m, &mut free)?;
                }
                txs.get(next)
                    .and_then(|tx| tx.send(buf).ok())
                    .ok_or(AuditError::Worker)?;
                pending.push_back(Pending::Chunk(next));
                in_flight += 1;
                next = (next + 1) % workers;
            }
            pending.push_back(Pending::End {
                number: *number,
                path: path.clone(),
                tail: carry,
                size,
                last: si + 1 == segs.len(),
            });
        }
        while !pending.is_empty() {
            settle(&mut pending, &mut in_flight, &mut m, &mut free)?;
        }
        drop(txs);
        Ok::<(), AuditError>(())
    })?;
    Ok(m.state)
}
