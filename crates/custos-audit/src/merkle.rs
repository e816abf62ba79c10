//! RFC 6962 (Certificate Transparency) Merkle tree hashing, consistency proofs and their
//! verification (the algorithm of RFC 9162 section 2.1.4.2).
//!
//! [`Frontier`] keeps the root of an append-only tree up to date in O(log n) per leaf (a
//! "compact range"). [`Pruned`] is a tree whose first leaves were removed by retention and are
//! known only through their frontier: every node the RFC 6962 recursion needs for a tree of size
//! `n >= first` is either a frontier node or overlaps the kept leaves, so roots of those sizes
//! (and consistency proofs from old sizes whose nodes survive) are still computable.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `MTH` of one entry: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// An interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash of `leaves` (already leaf-hashed); the empty tree is `SHA-256("")`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// `PROOF(m, D[n])`: proves that the tree of the first `m` leaves is a prefix of the tree of
/// all `leaves`. Empty when `m` is 0 or equals the size.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn sub(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
        let n = d.len();
        if m == n {
            if !complete {
                out.push(root(d));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, &d[..k], complete, out);
            out.push(root(&d[k..]));
        } else {
            sub(m - k, &d[k..], false, out);
            out.push(root(&d[..k]));
        }
    }
    let mut out = Vec::new();
    if m > 0 && m < leaves.len() {
        sub(m, leaves, true, &mut out);
    }
    out
}

/// Checks a consistency proof between a tree of size `m` with root `old` and one of size `n`
/// with root `new`.
pub fn verify_consistency(m: u64, n: u64, old: &Hash, new: &Hash, proof: &[Hash]) -> bool {
    if m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && old == new;
    }
    if m == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if m.is_power_of_two() {
        path.push(*old);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old && sr == *new && s == 0
}

/// The roots of the perfect subtrees of the binary decomposition of a tree size, largest first:
/// for size 6 the roots of `[0, 4)` and `[4, 6)`. The RFC 6962 root of the tree is these nodes
/// folded from the right, so appending a leaf and computing the root are both O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier from its parts; `None` unless there is one node per set bit of `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// The frontier of a tree of `leaves`.
    pub fn of(leaves: &[Hash]) -> Self {
        let mut f = Self::new();
        for l in leaves {
            f.push(*l);
        }
        f
    }

    /// Leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest (leftmost) first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends one (already leaf-hashed) leaf.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The Merkle tree hash of the leaves covered.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return Sha256::digest([]).into();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// The leaf ranges `[start, end)` of the nodes, in the order of [`Frontier::nodes`].
    fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let size = self.size;
        let mut start = 0u64;
        (0..64u32).rev().filter_map(move |bit| {
            let w = 1u64 << bit;
            (size & w != 0).then(|| {
                start += w;
                (start - w, start)
            })
        })
    }
}

/// A tree of `frontier.size() + leaves.len()` leaves whose first `frontier.size()` leaves are
/// known only through their frontier (they were removed by retention).
#[derive(Debug, Clone, Copy)]
pub struct Pruned<'a> {
    frontier: &'a Frontier,
    leaves: &'a [Hash],
}

impl<'a> Pruned<'a> {
    /// The tree of the removed prefix summarised by `frontier` followed by `leaves`.
    pub fn new(frontier: &'a Frontier, leaves: &'a [Hash]) -> Self {
        Self { frontier, leaves }
    }

    /// Leaves in the whole tree, removed ones included.
    pub fn size(&self) -> u64 {
        self.frontier.size + self.leaves.len() as u64
    }

    /// The root of the tree of the first `n` leaves; `None` when `n` is below the removed
    /// prefix or beyond the tree.
    pub fn root(&self, n: u64) -> Option<Hash> {
        if n < self.frontier.size || n > self.size() {
            return None;
        }
        if n == 0 {
            return Some(Sha256::digest([]).into());
        }
        self.range_root(0, n)
    }

    /// `PROOF(m, D[n])` as [`consistency_proof`] computes it for the full tree; `None` when a node
    /// it needs lies inside the removed prefix and is not a frontier node, or `m > n`, or `n` is
    /// not a size [`Pruned::root`] can serve.
    pub fn consistency_proof(&self, m: u64, n: u64) -> Option<Vec<Hash>> {
        fn sub(
            t: &Pruned<'_>,
            m: u64,
            lo: u64,
            hi: u64,
            complete: bool,
            out: &mut Vec<Hash>,
        ) -> Option<()> {
            let n = hi - lo;
            if m == n {
                if !complete {
                    out.push(t.range_root(lo, hi)?);
                }
                return Some(());
            }
            let k = split(n as usize) as u64;
            if m <= k {
                sub(t, m, lo, lo + k, complete, out)?;
                out.push(t.range_root(lo + k, hi)?);
            } else {
                sub(t, m - k, lo + k, hi, false, out)?;
                out.push(t.range_root(lo, lo + k)?);
            }
            Some(())
        }
        if m > n || n < self.frontier.size || n > self.size() {
            return None;
        }
        let mut out = Vec::new();
        if m > 0 && m < n {
            sub(self, m, 0, n, true, &mut out)?;
        }
        Some(out)
    }

    /// The root of the subtree over leaves `[lo, hi)` (`lo < hi <= size`).
    fn range_root(&self, lo: u64, hi: u64) -> Option<Hash> {
        let first = self.frontier.size;
        if lo >= first {
            let kept = self
                .leaves
                .get((lo - first) as usize..(hi - first) as usize)?;
            return Some(root(kept));
        }
        if let Some(i) = self.frontier.ranges().position(|r| r == (lo, hi)) {
            return self.frontier.nodes.get(i).copied();
        }
        if hi - lo <= 1 {
            return None;
        }
        let mid = lo + split((hi - lo) as usize) as u64;
        Some(node_hash(
            &self.range_root(lo, mid)?,
            &self.range_root(mid, hi)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn known_roots() {
        // RFC 6962 hashing of the empty tree and of one empty leaf.
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn every_prefix_is_consistent_and_tampering_is_caught() {
        for n in 1..=40usize {
            let l = leaves(n);
            let new = root(&l);
            for m in 0..=n {
                let old = root(&l[..m]);
                let proof = consistency_proof(m, &l);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &new, &proof),
                    "m={m} n={n}"
                );
                if m > 0 && m < n {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_consistency(m as u64, n as u64, &old, &new, &bad));
                    let mut other = l.clone();
                    other[m - 1][0] ^= 1;
                    let forged_old = root(&other[..m]);
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &forged_old,
                        &new,
                        &proof
                    ));
                }
            }
        }
    }

    #[test]
    fn the_frontier_tracks_the_root_of_every_prefix() {
        let l = leaves(70);
        let mut f = Frontier::new();
        assert_eq!(f.root(), root(&[]));
        for n in 1..=70 {
            f.push(l[n - 1]);
            assert_eq!(f.root(), root(&l[..n]), "n={n}");
            assert_eq!(f.nodes().len(), n.count_ones() as usize);
            let r: Vec<_> = f.ranges().collect();
            for (i, (a, b)) in r.iter().enumerate() {
                assert_eq!(f.nodes()[i], root(&l[*a as usize..*b as usize]));
            }
        }
        assert!(Frontier::from_parts(6, vec![[0; 32]]).is_none());
    }

    #[test]
    fn a_pruned_tree_serves_every_root_and_every_surviving_proof() {
        for total in 0..=48usize {
            let l = leaves(total);
            for k in 0..=total {
                let f = Frontier::of(&l[..k]);
                let t = Pruned::new(&f, &l[k..]);
                assert_eq!(t.size(), total as u64);
                for n in 0..=total {
                    let r = t.root(n as u64);
                    if n < k {
                        assert!(r.is_none());
                        continue;
                    }
                    assert_eq!(r, Some(root(&l[..n])), "k={k} n={n}");
                    for m in 0..=n {
                        let full = consistency_proof(m, &l[..n]);
                        match t.consistency_proof(m as u64, n as u64) {
                            Some(p) => assert_eq!(p, full, "k={k} m={m} n={n}"),
                            None => assert!(m < k, "k={k} m={m} n={n}"),
                        }
                    }
                    assert!(t.consistency_proof(n as u64 + 1, n as u64).is_none());
                }
            }
        }
    }
}
