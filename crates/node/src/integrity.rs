//! What the node claims of its store, proven by reading it.
//!
//! The node never says it holds what it cannot serve. At start, every log is read
//! through the store's checked reads (`accord_store::Store::entries`: each step
//! that a range read skips or ends early is checked by a lookup, so sled's damaged
//! leaf links are read around, and an entry missing in the middle of a log is a
//! hole, never a log that silently ends). A log loads up to its first hole; what the
//! store held past it, like a log shorter than the manifest of heads or than the
//! record of signed seqs, is *lost*: health fails with the log named, and the peers
//! refill it. A refilled log counts as whole again only once it has been read back
//! from seq 1 through the same reads that serve peers and clients.
//!
//! While the node runs, every batch is read back before it is acknowledged (the
//! writer), and a read that serves a peer or a client and finds fewer entries than
//! the state counts turns the node read-only: the store lost what it had
//! acknowledged, and only a restart (which loads up to the hole and refills) or a
//! rebuild mends that.

use std::collections::BTreeMap;

use accord_core::entry::Logs;
use accord_core::{PublicId, State};
use accord_store::{StoreError, StoredEntry};

use crate::ledger::{Ledger, LostEntries};

/// What each log should hold at start: the manifest of heads, raised to what the
/// store holds past a hole.
pub fn expected_heads(
    manifest: BTreeMap<PublicId, u64>,
    damage: &accord_store::Damage,
) -> BTreeMap<PublicId, u64> {
    let mut expected = manifest;
    for (author, hole) in &damage.holes {
        let seq = expected.entry(*author).or_insert(0);
        *seq = (*seq).max(hole.stored_to);
    }
    expected
}

/// Entries read at a time when a refilled log is read back.
const PAGE: usize = 4096;

impl Ledger {
    /// Turns the node read-only: every later append is refused with `reason`.
    pub fn fail_storage(&self, reason: String) {
        if self.failed.borrow().is_none() {
            tracing::error!("{reason}");
            self.metrics().storage_failure();
            self.failed.send_replace(Some(reason));
        }
    }

    /// Marks logs that were short at start: they count as lost until refilled and
    /// read back whole.
    pub fn prove_later(&self, authors: impl IntoIterator<Item = PublicId>) {
        self.unproven
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(authors);
    }

    /// Every log the store holds less of than it should, own and others'.
    pub fn all_lost(&self, state: &State) -> Vec<LostEntries> {
        let mut lost = self.lost_own_entries(state);
        lost.extend(self.lost_entries(state));
        lost
    }

    /// Why the store is not whole and writable, in one line naming the log; None
    /// when it is. Health (gRPC, `/healthz`, `accord healthcheck`) fails exactly
    /// while this is Some.
    pub fn store_problem(&self, state: &State) -> Option<String> {
        if let Some(reason) = self.storage_failure() {
            return Some(format!("storage failed: {reason}"));
        }
        if let Some(reason) = self.store().engine_failure() {
            return Some(format!("the storage engine failed: {reason}"));
        }
        let lost = self.all_lost(state);
        if let Some(first) = lost.first() {
            let more = match lost.len() {
                1 => String::new(),
                n => format!(" (and {} more logs)", n - 1),
            };
            return Some(format!(
                "store lost entries: the log of {} reads whole to seq {}; seqs {}..={} are \
                 missing{more}",
                name(state, &first.author),
                first.stored,
                first.stored + 1,
                first.signed
            ));
        }
        let unproven = self.unproven.lock().unwrap_or_else(|p| p.into_inner());
        unproven.first().map(|author| {
            format!(
                "store lost entries: the log of {} was refilled and is being read back",
                name(state, author)
            )
        })
    }

    /// Reads `count` entries of `author` from `from`, all of which the state counts
    /// (the caller bounds `count` by the head). Fewer means the store lost entries
    /// it acknowledged: the node turns read-only and the read is an error.
    pub async fn read_log(
        &self,
        author: PublicId,
        from: u64,
        count: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let store = self.store().clone();
        let read = tokio::task::spawn_blocking(move || store.log(&author, from, count))
            .await
            .map_err(|e| StoreError::Engine(e.to_string()))?;
        let missing = match &read {
            Ok(entries) if entries.len() == count => return read,
            Ok(entries) => from + entries.len() as u64,
            Err(StoreError::Hole { seq, .. }) => *seq,
            Err(e) => {
                self.fail_storage(format!("the store cannot be read: {e}"));
                return read;
            }
        };
        let reason = format!(
            "the store cannot read back entry {missing} of the log of {author}, which it \
             held: the node is read-only; restart it to reload and refill from the peers"
        );
        self.fail_storage(reason.clone());
        Err(StoreError::Corrupt(reason))
    }

    /// Once a second (the health loop): reads back each log that was short at start
    /// and has been refilled since; a log that reads whole from seq 1 to its head
    /// counts as whole again. A panic of the engine on its own threads turns the node
    /// read-only.
    pub async fn check_store(&self) {
        if let Some(reason) = self.store().engine_failure() {
            self.fail_storage(format!("the storage engine failed: {reason}"));
        }
        let refilled: Vec<PublicId> = {
            let state = self.state();
            let lost = self.all_lost(&state);
            self.unproven
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|a| !lost.iter().any(|l| l.author == **a))
                .copied()
                .collect()
        };
        for author in refilled {
            let head = self.state().head(&author).map_or(0, |h| h.seq);
            let store = self.store().clone();
            let read = tokio::task::spawn_blocking(move || read_whole(&store, &author, head)).await;
            match read {
                Ok(Ok(())) => {
                    self.store().hole_filled(&author);
                    self.unproven
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&author);
                    tracing::info!(
                        author = %author,
                        head,
                        "the log was refilled and reads back whole from seq 1"
                    );
                }
                Ok(Err(e)) => self.fail_storage(format!(
                    "the log of {author} was refilled but does not read back: {e}"
                )),
                Err(e) => self.fail_storage(format!("reading back the log of {author}: {e}")),
            }
        }
    }
}

/// Reads `author`'s log from seq 1 to `head` a page at a time, as peers and clients
/// read it; an error unless every seq comes back.
pub fn read_whole(
    store: &accord_store::Store,
    author: &PublicId,
    head: u64,
) -> Result<(), StoreError> {
    let mut from = 1;
    while from <= head {
        let count = usize::try_from(head - from + 1)
            .unwrap_or(usize::MAX)
            .min(PAGE);
        let page = store.log(author, from, count)?;
        if page.len() != count {
            return Err(StoreError::Corrupt(format!(
                "the log of {author} reads only to seq {}",
                from + page.len() as u64 - 1
            )));
        }
        from += count as u64;
    }
    Ok(())
}

/// An author's name in the roster, else its key.
fn name(state: &State, author: &PublicId) -> String {
    state
        .roster()
        .owner(author)
        .map_or_else(|| author.to_string(), |o| o.name.clone())
}
