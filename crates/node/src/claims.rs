//! What peers claim of this node's own logs, and whether publishing must wait for
//! it: without I/O, so the simulation (`crates/sim`) runs the same rule.

use std::collections::BTreeMap;

use accord_core::entry::Logs;
use accord_core::{PublicId, State};

/// For each home identity, the longest log of it a peer has reported (seq, peer).
/// A node restored from a backup or onto an empty disk is behind its own
/// identities' logs; publishing before it catches up would fork them.
#[derive(Debug, Clone, Default)]
pub struct HomeClaims {
    heads: BTreeMap<PublicId, (u64, String)>,
}

impl HomeClaims {
    /// Records the heads `peer` reported; only those of `home` identities count.
    pub fn note<'a>(
        &mut self,
        peer: &str,
        home: &[PublicId],
        heads: impl IntoIterator<Item = (&'a PublicId, u64)>,
    ) {
        for (author, seq) in heads {
            if !home.contains(author) {
                continue;
            }
            let slot = self.heads.entry(*author).or_insert((0, String::new()));
            if seq > slot.0 {
                *slot = (seq, peer.to_owned());
            }
        }
    }

    /// The longest log of `author` a peer has reported (0: none).
    pub fn on_peers(&self, author: &PublicId) -> u64 {
        self.heads.get(author).map_or(0, |(seq, _)| *seq)
    }

    /// If a peer holds more of `author`'s log than `state` (its home's), the peer's
    /// seq and name and this node's seq: publishing now would fork the log.
    pub fn behind(&self, author: &PublicId, state: &State) -> Option<(u64, String, u64)> {
        let (theirs, peer) = self.heads.get(author).cloned()?;
        let ours = state.head(author).map_or(0, |h| h.seq);
        // Nothing from a fork's seq on is accepted: a peer's entries there never
        // arrive, so they do not count as what this node lacks.
        let theirs = state
            .frozen_from(author)
            .map_or(theirs, |seq| theirs.min(seq - 1));
        (theirs > ours).then_some((theirs, peer, ours))
    }
}
