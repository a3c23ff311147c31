//! A hash of a set that is updated item by item: LtHash16 (Bellare and
//! Micciancio's lattice hash, as Lewi et al. specify it in "Securing Update
//! Propagation with Homomorphic Hashing", 2019), with BLAKE3's extendable output
//! as the expansion.
//!
//! An item (here always the 32-byte hash of a view item's JSON) is expanded to
//! 2,048 bytes, read as 1,024 little-endian 16-bit lanes, and added lane by lane
//! (mod 2^16) to the set's hash; removing subtracts the same. The hash of a set is
//! then the same whatever order its items came and went in, and keeping it costs
//! one expansion per change, not a walk over the set. Lewi et al. estimate at
//! least 200 bits of security for these parameters. Adding one item 2^16 times
//! cancels out, so callers add each item at most once (every item here carries
//! its own key).
//!
//! Written here rather than taken from a crate: the one Rust crate for it
//! (`lthash-rs` 1.0) reads the lanes in the platform's byte order, so its hashes
//! would differ on a big-endian machine.

/// Lanes of 16 bits.
const LANES: usize = 1024;

/// The LtHash16 of a set of 32-byte items.
#[derive(Clone, PartialEq, Eq)]
pub struct SetHash(Box<[u16; LANES]>);

impl std::fmt::Debug for SetHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.to_bytes();
        let digest = blake3::hash(&bytes);
        write!(f, "SetHash({})", &digest.to_hex()[..16])
    }
}

impl Default for SetHash {
    fn default() -> Self {
        Self::new()
    }
}

impl SetHash {
    /// The hash of the empty set.
    pub fn new() -> Self {
        Self(Box::new([0; LANES]))
    }

    /// Adds `item` to the set.
    pub fn insert(&mut self, item: &[u8; 32]) {
        let lanes = expand(item);
        for (sum, lane) in self.0.iter_mut().zip(lanes.iter()) {
            *sum = sum.wrapping_add(*lane);
        }
    }

    /// Removes `item`, which must have been added.
    pub fn remove(&mut self, item: &[u8; 32]) {
        let lanes = expand(item);
        for (sum, lane) in self.0.iter_mut().zip(lanes.iter()) {
            *sum = sum.wrapping_sub(*lane);
        }
    }

    /// Replaces `old` (if any) by `new`.
    pub fn replace(&mut self, old: Option<&[u8; 32]>, new: &[u8; 32]) {
        if let Some(old) = old {
            self.remove(old);
        }
        self.insert(new);
    }

    /// The hash as 2,048 bytes: each lane little-endian, in order.
    pub fn to_bytes(&self) -> [u8; 2 * LANES] {
        let mut out = [0; 2 * LANES];
        for (bytes, lane) in out.chunks_exact_mut(2).zip(self.0.iter()) {
            bytes.copy_from_slice(&lane.to_le_bytes());
        }
        out
    }
}

/// BLAKE3's output for `item`, 2,048 bytes, as little-endian lanes.
fn expand(item: &[u8; 32]) -> [u16; LANES] {
    let mut bytes = [0u8; 2 * LANES];
    blake3::Hasher::new()
        .update(item)
        .finalize_xof()
        .fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::SetHash;

    fn item(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn order_does_not_matter_and_removing_undoes_adding() {
        let mut forward = SetHash::new();
        for n in 0..10 {
            forward.insert(&item(n));
        }
        let mut backward = SetHash::new();
        for n in (0..10).rev() {
            backward.insert(&item(n));
        }
        assert_eq!(forward, backward);

        backward.insert(&item(42));
        assert_ne!(forward, backward);
        backward.remove(&item(42));
        assert_eq!(forward, backward);

        backward.replace(Some(&item(3)), &item(43));
        forward.remove(&item(3));
        forward.insert(&item(43));
        assert_eq!(forward, backward);
        assert_ne!(forward, SetHash::new());
    }

    /// A known answer, computed apart with Python's `blake3` package and
    /// `struct`: SHA-256 of the bytes of the set {32 × 0x00, 32 × 0x01}.
    #[test]
    fn a_known_answer() {
        use sha2::Digest;
        let mut set = SetHash::new();
        set.insert(&item(1));
        set.insert(&item(0));
        assert_eq!(
            hex::encode(sha2::Sha256::digest(set.to_bytes())),
            "a9dc1f2c870cc3e47088bc963ac680467514f6f96eedb547df26ecaf1a76801c"
        );
    }
}
