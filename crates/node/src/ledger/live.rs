//! The writer's broadcast of durable batches to the live streams that follow it
//! (`federation.rs`), bounded in batches and in bytes.
//!
//! tokio's broadcast keeps each value until every receiver has taken it or
//! `capacity` later values push it out, whatever the values' sizes. A follower
//! that stops reading (a peer on a slow link, a stalled TCP window) would make the
//! node hold [`LIVE_BATCHES`] batches, and a batch may hold [`super::MAX_BATCH`]
//! requests of up to the charter's `max_entry_bytes` each, or whole peer messages:
//! gigabytes. So the channel carries weak references, and the [`Sender`] keeps the
//! strong ones of the batches some follower has not taken yet, up to [`LIVE_BYTES`]
//! (the newest batch always). An older batch is let go; a follower that comes to it
//! finds it gone and gets `Lagged`, as one [`LIVE_BATCHES`] behind does, and pulls
//! again from its heads.
//!
//! Why not a smaller capacity: a count derived from the byte budget must assume
//! the largest batch, and would make a follower lag whenever a few batches of a
//! few bytes came in a row; cutting batches into pieces of a bounded size still
//! needs the count to allow for the charter's largest entry. Weak references keep
//! the count bound for small batches and bound the bytes exactly.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::Appended;

/// Most batches the channel holds: a follower further behind gets `Lagged`.
pub const LIVE_BATCHES: usize = 1024;

/// Most bytes of batches the writer holds for followers that have not taken them
/// (the newest batch alone may be larger). One copy serves every follower, so this
/// bounds the live streams' memory together. It is the largest message a peer may
/// send ([`crate::federation::PEER_MAX_MESSAGE`]): a follower a whole catch-up batch
/// behind still follows live.
pub const LIVE_BYTES: usize = 64 << 20;

/// Room counted for an entry's author and seq, and for a fork proof's.
const ITEM_ROOM: usize = 64;

/// What the channel carries: a batch as a weak reference, made strong as a
/// follower takes its copy. tokio clones a value out of its slot before it counts
/// the receiver as having taken it (the slot drops the value at the last count),
/// so once [`broadcast::Sender::len`] says no follower still lacks a batch, every
/// follower holds its own strong reference to it or has dropped it, and the
/// writer's can go.
struct Handle {
    batch: Weak<Appended>,
    taken: Option<Arc<Appended>>,
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Self {
            batch: self.batch.clone(),
            taken: self.batch.upgrade(),
        }
    }
}

/// The writer's end: sends each durable batch to the followers.
pub(crate) struct Sender {
    tx: broadcast::Sender<Handle>,
    /// The newest batches some follower may not have taken yet, oldest first, with
    /// their sizes.
    held: VecDeque<(Arc<Appended>, usize)>,
    bytes: usize,
    budget: usize,
}

/// Where followers subscribe: every batch sent from then on.
#[derive(Clone)]
pub(crate) struct Followers(broadcast::Sender<Handle>);

/// A follower's receiver of the writer's batches.
pub struct Follower(broadcast::Receiver<Handle>);

/// A channel of [`LIVE_BATCHES`] batches and [`LIVE_BYTES`].
pub(crate) fn channel() -> (Sender, Followers) {
    bounded(LIVE_BATCHES, LIVE_BYTES)
}

/// A channel of at most `batches` batches and `budget` bytes.
fn bounded(batches: usize, budget: usize) -> (Sender, Followers) {
    let (tx, _) = broadcast::channel(batches);
    let followers = Followers(tx.clone());
    let sender = Sender {
        tx,
        held: VecDeque::new(),
        bytes: 0,
        budget,
    };
    (sender, followers)
}

/// The bytes a batch holds, as the budget counts them.
fn size(batch: &Appended) -> usize {
    let entries: usize = batch
        .entries
        .iter()
        .map(|(_, _, bytes)| bytes.len() + ITEM_ROOM)
        .sum();
    let forks: usize = batch
        .forks
        .iter()
        .map(|f| f.first.len() + f.second.len() + ITEM_ROOM)
        .sum();
    entries + forks + batch.first_here.len()
}

impl Sender {
    /// Sends `batch` to every follower; returns how many there are. Lets go of the
    /// batches every follower has taken, then of the oldest ones while those held
    /// are over the budget.
    pub(crate) fn send(&mut self, batch: Arc<Appended>) -> usize {
        let handle = Handle {
            batch: Arc::downgrade(&batch),
            taken: None,
        };
        let size = size(&batch);
        self.held.push_back((batch, size));
        self.bytes += size;
        let followers = self.tx.send(handle).unwrap_or(0);
        // The newest `len` batches are the ones some follower has not taken.
        let lacking = self.tx.len();
        while self.held.len() > lacking.max(1) || (self.bytes > self.budget && self.held.len() > 1)
        {
            let (_, size) = self.held.pop_front().expect("a batch is held");
            self.bytes -= size;
        }
        if followers == 0 {
            self.held.clear();
            self.bytes = 0;
        }
        followers
    }

    /// The bytes of the batches held for followers.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.bytes
    }
}

impl Followers {
    pub(crate) fn subscribe(&self) -> Follower {
        Follower(self.0.subscribe())
    }
}

impl Follower {
    /// The next batch. `Lagged` when the follower fell more than [`LIVE_BATCHES`]
    /// batches behind, or the batch it came to was let go for the byte budget: it
    /// must catch up from the store. Cancel-safe, as `broadcast::Receiver::recv`.
    pub async fn recv(&mut self) -> Result<Arc<Appended>, RecvError> {
        let handle = self.0.recv().await?;
        handle
            .taken
            .ok_or(RecvError::Lagged(self.0.len() as u64 + 1))
    }
}

#[cfg(test)]
mod tests {
    use accord_core::PublicId;

    use super::*;

    fn batch(bytes: usize) -> Arc<Appended> {
        let author = PublicId::from_slice(&[1; 32]).unwrap();
        Arc::new(Appended {
            entries: vec![(author, 1, vec![0; bytes])],
            first_here: vec![true],
            forks: Vec::new(),
        })
    }

    /// Issue 22, defect 8: a follower that stops reading holds no more than the
    /// byte budget of batches. Past the budget the writer lets
    /// the oldest go, and the follower that comes to one gets `Lagged` (its stream
    /// then tells the peer to pull again); a follower that keeps up gets every
    /// batch, and what every follower has taken is not held.
    #[tokio::test]
    async fn a_follower_past_the_byte_budget_lags_and_one_keeping_up_does_not() {
        let mib = 1 << 20;
        let (mut sender, followers) = bounded(LIVE_BATCHES, 4 * mib);
        let mut slow = followers.subscribe();
        let mut quick = followers.subscribe();
        for n in 0..10 {
            assert_eq!(sender.send(batch(mib)), 2);
            let got = quick.recv().await.expect("a follower keeping up gets it");
            assert_eq!(got.entries[0].1, 1, "batch {n}");
            assert!(sender.held_bytes() <= 4 * mib + 2 * ITEM_ROOM);
        }
        // Ten batches of 1 MiB: the slow follower finds the first ones gone.
        assert!(matches!(slow.recv().await, Err(RecvError::Lagged(10))));
        drop(slow);
        // With the quick follower alone, a batch it took is let go at the next send.
        sender.send(batch(mib));
        quick.recv().await.expect("taken");
        sender.send(batch(10));
        assert_eq!(sender.held_bytes(), 10 + ITEM_ROOM + 1);
        // Without followers nothing is held.
        drop(quick);
        assert_eq!(sender.send(batch(mib)), 0);
        assert_eq!(sender.held_bytes(), 0);
    }

    /// A batch a follower took stays whole while it reads it, even once the writer
    /// let go of it for the budget.
    #[tokio::test]
    async fn a_batch_taken_stays_whole_after_the_writer_lets_go() {
        let (mut sender, followers) = bounded(LIVE_BATCHES, 1 << 20);
        let mut follower = followers.subscribe();
        sender.send(batch(1 << 20));
        let taken = follower.recv().await.expect("taken");
        for _ in 0..4 {
            sender.send(batch(1 << 20));
        }
        assert_eq!(taken.entries[0].2.len(), 1 << 20);
    }

    /// The count bound still holds: a follower more than the channel's batches
    /// behind lags, however small they are.
    #[tokio::test]
    async fn a_follower_too_many_batches_behind_lags() {
        let (mut sender, followers) = bounded(4, LIVE_BYTES);
        let mut follower = followers.subscribe();
        for _ in 0..6 {
            sender.send(batch(10));
        }
        assert!(matches!(follower.recv().await, Err(RecvError::Lagged(2))));
        assert!(follower.recv().await.is_ok());
    }
}
