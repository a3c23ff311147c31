//! What peers claim of this node's own logs, and whether publishing must wait for
//! it: without I/O, so the simulation (`crates/sim`) runs the same rule.
//!
//! A node restored from a backup or onto an empty disk is behind its own
//! identities' logs; publishing before it catches up would fork them. A peer's
//! heads say so, but a head is an unsigned number: a broken or hostile peer can
//! claim any seq. So a claim holds publishing only while it is being backed: for
//! [`CLAIM_PATIENCE_MS`] after it was first heard, renewed whenever the home log
//! moves on here (entries of it arriving: signed evidence). A claim that brings no
//! entry in that time has decayed: that peer's claims of that log count no more
//! until the log reaches what it claimed.

use std::collections::BTreeMap;

use accord_core::entry::Logs;
use accord_core::{PublicId, State};

/// How long a claim of a longer home log holds publishing without any entry of
/// that log arriving. A catch-up brings its first entries within a second; a peer
/// that claims more and sends nothing for this long is not backing its claim.
pub const CLAIM_PATIENCE_MS: i64 = 30_000;

#[derive(Debug, Clone)]
struct Claim {
    seq: u64,
    /// When the wait for this claim began or last saw the log move on (ms, the
    /// caller's monotonic clock), and the home log's length then.
    since_ms: i64,
    held_then: u64,
    /// Set once the claim went unbacked for the patience: from then on it counts
    /// no more (the log moving on, by this node's own entries too, does not revive
    /// it), until the log reaches it.
    decayed: bool,
}

/// For each home identity, what each peer claims to hold of it.
#[derive(Debug, Clone, Default)]
pub struct HomeClaims {
    claims: BTreeMap<PublicId, BTreeMap<String, Claim>>,
    /// The longest log of each home identity any peer has reported.
    reported: BTreeMap<PublicId, u64>,
}

/// A claim that holds publishing: the peer's seq and name, and this node's seq.
pub type Behind = (u64, String, u64);

impl HomeClaims {
    /// Records the heads `peer` reported at `now_ms`; only those of `home`
    /// identities are kept, and only those beyond what `state` holds.
    pub fn note<'a>(
        &mut self,
        peer: &str,
        home: &[PublicId],
        heads: impl IntoIterator<Item = (&'a PublicId, u64)>,
        state: &State,
        now_ms: i64,
    ) {
        for (author, seq) in heads {
            if !home.contains(author) {
                continue;
            }
            let top = self.reported.entry(*author).or_insert(0);
            *top = (*top).max(seq);
            let held = state.head(author).map_or(0, |h| h.seq);
            let by_peer = self.claims.entry(*author).or_default();
            if seq <= held {
                by_peer.remove(peer);
                continue;
            }
            // A new claim starts its wait; a higher one from the same peer does not
            // start it again.
            let claim = by_peer.entry(peer.to_owned()).or_insert(Claim {
                seq,
                since_ms: now_ms,
                held_then: held,
                decayed: false,
            });
            claim.seq = claim.seq.max(seq);
        }
    }

    /// The longest log of `author` a peer has claimed (0: none).
    pub fn on_peers(&self, author: &PublicId) -> u64 {
        self.reported.get(author).copied().unwrap_or(0)
    }

    /// If a peer's claim that it holds more of `author`'s log than `state` (its
    /// home's) is still being backed at `now_ms`, the longest such claim: publishing
    /// now would fork the log.
    pub fn behind(&mut self, author: &PublicId, state: &State, now_ms: i64) -> Option<Behind> {
        let held = state.head(author).map_or(0, |h| h.seq);
        // Nothing from a fork's seq on is accepted: a peer's entries there never
        // arrive, so they do not count as what this node lacks.
        let limit = state.frozen_from(author).map_or(u64::MAX, |seq| seq - 1);
        let by_peer = self.claims.get_mut(author)?;
        by_peer.retain(|_, c| c.seq.min(limit) > held);
        let mut longest: Option<Behind> = None;
        for (peer, claim) in by_peer.iter_mut() {
            if claim.decayed {
                continue;
            }
            if held > claim.held_then {
                // The log moved on: the wait is renewed.
                claim.held_then = held;
                claim.since_ms = now_ms;
            }
            if now_ms - claim.since_ms >= CLAIM_PATIENCE_MS {
                claim.decayed = true;
                tracing::warn!(
                    %peer,
                    %author,
                    claimed = claim.seq,
                    held,
                    "a peer's claim to hold more of this node's own log brought no entry; \
                     it no longer holds publishing"
                );
                continue;
            }
            let theirs = claim.seq.min(limit);
            if longest.as_ref().is_none_or(|(seq, _, _)| theirs > *seq) {
                longest = Some((theirs, peer.clone(), held));
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use accord_core::Identity;

    use super::*;

    fn alliance() -> (State, PublicId) {
        let ids: Vec<Identity> = (1..=2u8).map(|n| Identity::from_seed([n; 32])).collect();
        let charter = crate::batch::tests::charter(&ids);
        (State::new(charter), ids[0].public_id())
    }

    #[test]
    fn an_unbacked_claim_holds_publishing_only_for_its_patience() {
        let (state, home) = alliance();
        let mut claims = HomeClaims::default();
        claims.note("liar", &[home], [(&home, 1_000_000)], &state, 0);
        assert_eq!(
            claims.behind(&home, &state, 1_000),
            Some((1_000_000, "liar".into(), 0))
        );
        // Claiming it again, or more, does not renew the wait.
        claims.note("liar", &[home], [(&home, 2_000_000)], &state, 20_000);
        assert!(claims.behind(&home, &state, 29_999).is_some());
        assert_eq!(claims.behind(&home, &state, CLAIM_PATIENCE_MS), None);
        claims.note("liar", &[home], [(&home, 3_000_000)], &state, 40_000);
        assert_eq!(claims.behind(&home, &state, 40_001), None);
        assert_eq!(
            claims.behind(&home, &state, 100_000),
            None,
            "it stays decayed"
        );
        // Another peer's claim waits on its own.
        claims.note("other", &[home], [(&home, 5)], &state, 40_000);
        assert_eq!(
            claims.behind(&home, &state, 40_001),
            Some((5, "other".into(), 0))
        );
    }

    #[test]
    fn claims_of_other_logs_and_of_what_is_held_are_not_kept() {
        let (state, home) = alliance();
        let stranger = Identity::from_seed([9; 32]).public_id();
        let mut claims = HomeClaims::default();
        claims.note("peer", &[home], [(&stranger, 7)], &state, 0);
        claims.note("peer", &[home], [(&home, 0)], &state, 0);
        assert!(!claims.claims.contains_key(&stranger));
        assert_eq!(claims.on_peers(&home), 0);
        assert_eq!(claims.behind(&home, &state, 0), None);
    }
}
