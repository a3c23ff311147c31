//! The ledger: the node's one writer, its store and its derived state.
//!
//! Every append goes through a single task (the writer) that owns the order of the
//! logs. It takes whatever requests are waiting (up to [`MAX_BATCH`]; a small batch of
//! entries from peers only waits `INGEST_LINGER` for more), checks each
//! against the state plus the entries accepted earlier in the same batch, writes the
//! accepted ones in one atomic batch, waits for one flush, and only then applies them
//! to the in-memory state and answers. So concurrent publishes share a group commit,
//! no reader sees an entry that is not durable, and an acknowledged entry survives a
//! crash at any point.
//!
//! Readers never share a lock with the writer. The writer owns the current state and
//! publishes it as an immutable [`Snapshot`] through an [`ArcSwap`]: for each durable
//! batch it clones the state (O(1): its indexes are persistent maps that share their
//! nodes), applies the batch to the clone and swaps the new snapshot in. A reader
//! takes the current snapshot with [`Ledger::state`] (an atomic load and a reference
//! count) and may hold it as long as it likes, across awaits or on a blocking
//! thread; the writer never waits for it, and it never waits for the writer. Heavy
//! reads (the state digest, whole derived views, feeds and pages) run on the
//! blocking pool over such a snapshot, so they cannot hold up the async threads
//! that serve publishes either.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use accord_core::entry::{self, DecodedEntry, Logs, SignatureChecked};
use accord_core::state::ForkProof;
use accord_core::{
    Charter, EntryError, EntryId, Identity, LogHead, PublicId, State, VerifiedEntry,
};
use accord_store::{Store, StoreError, StoredEntry};
use arc_swap::ArcSwap;
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

use crate::claims::HomeClaims;
use crate::metrics::{self, Metrics};
use crate::signed::SignedRecord;

mod live;

pub use live::{Follower, LIVE_BATCHES, LIVE_BYTES};

/// How long the writer waits for one flush before it turns the node read-only: a
/// disk that stops answering (full, failing, or sled's flusher gone) must not hold
/// publishes, or a shutdown, for ever.
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Batches of at most this many entries are read back on the writer's own thread.
const READ_BACK_INLINE: usize = 64;

/// Most requests one group commit takes.
pub const MAX_BATCH: usize = 1024;

/// Why an append was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Refused(#[from] EntryError),
    /// The store failed; the node takes no more writes until restarted.
    #[error(
        "the node's storage failed: {0}; it is read-only until restarted \
         (if its disk is full, free space first)"
    )]
    Storage(String),
    #[error("the node is shutting down")]
    ShuttingDown,
}

use crate::batch::{self, Outcome, Request};
pub use crate::batch::{Ack, IngestReport};

enum Reply {
    One(oneshot::Sender<Result<Ack, AppendError>>),
    Many(oneshot::Sender<Result<IngestReport, AppendError>>),
}

impl Reply {
    fn fail(self, error: AppendError) {
        match self {
            Self::One(tx) => drop(tx.send(Err(error))),
            Self::Many(tx) => drop(tx.send(Err(error))),
        }
    }
}

struct Job {
    request: Request,
    reply: Reply,
}

/// What one durable batch added: broadcast to followers (federation streams).
#[derive(Debug, Clone, Default)]
pub struct Appended {
    /// (author, seq, encoded `SignedEntry`), in the order applied.
    pub entries: Vec<(PublicId, u64, Vec<u8>)>,
    /// One flag per entry of `entries`: true when this node was first to hold it
    /// (it came from a client, Publish or Submit), false when a peer sent it. Lazy
    /// followers get only the first kind pushed in full (`federation.rs`).
    pub first_here: Vec<bool>,
    pub forks: Vec<ForkProof>,
}

/// An immutable snapshot of the derived state, as the writer published it after a
/// durable batch. Dereferences to [`State`].
#[derive(Debug)]
pub struct Snapshot {
    /// The change count this state was published at (as [`Ledger::changes`] counts):
    /// views derived from it are cached under this number.
    pub version: u64,
    pub state: State,
}

impl Deref for Snapshot {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl Logs for Snapshot {
    fn head(&self, author: &PublicId) -> Option<LogHead> {
        self.state.head(author)
    }

    fn id_at(&self, author: &PublicId, seq: u64) -> Option<EntryId> {
        self.state.id_at(author, seq)
    }

    fn frozen_from(&self, author: &PublicId) -> Option<u64> {
        self.state.frozen_from(author)
    }

    fn roster(&self) -> &accord_core::roster::Roster {
        self.state.roster()
    }

    fn known_roles(&self, key: &PublicId) -> Option<accord_core::roster::RoleSet> {
        self.state.known_roles(key)
    }

    fn signing_key(&self, author: &PublicId, seq: u64) -> PublicId {
        self.state.signing_key(author, seq)
    }

    fn key_history(&self, author: &PublicId) -> Vec<(u64, PublicId)> {
        self.state.key_history(author)
    }
}

/// Where the writer publishes snapshots, for readers that must not keep the ledger
/// open ([`Ledger::snapshots`]).
#[derive(Clone)]
pub struct Snapshots(Arc<ArcSwap<Snapshot>>);

impl Snapshots {
    /// The current snapshot, as [`Ledger::state`].
    pub fn load(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }
}

/// A handle on the ledger: cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct Ledger {
    state: Arc<ArcSwap<Snapshot>>,
    store: Store,
    identities: Arc<Vec<Identity>>,
    jobs: mpsc::Sender<Job>,
    changes: watch::Receiver<u64>,
    appended: live::Followers,
    /// When the next digest may be computed: one caller at a time computes it (the
    /// others wait here, asynchronously, and share its result).
    digest: Arc<tokio::sync::Mutex<DigestCache>>,
    /// The last snapshot whose digest was computed, with the digest.
    digested: Digested,
    /// What peers claim of the home identities' logs (`claims.rs`): a node
    /// restored from a backup is behind them, and publishing before it catches up
    /// would fork them.
    own_logs_elsewhere: Arc<Mutex<HomeClaims>>,
    /// True once a peer has reported its heads since the node started.
    peer_contact: Arc<watch::Sender<bool>>,
    /// Until when publishes wait for that first report (None: no peers configured).
    peer_contact_deadline: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// Why the store failed, once it has: the node is then read-only. Shared with
    /// the writer.
    pub(crate) failed: Arc<watch::Sender<Option<String>>>,
    /// Logs that were short at start (lost entries, or a hole): each counts as whole
    /// again only once refilled and read back from seq 1 (`integrity.rs`).
    pub(crate) unproven: Arc<Mutex<BTreeSet<PublicId>>>,
    /// What this node had signed and made durable when it started, per home
    /// identity. The store cannot lose entries while the node runs (a failed write
    /// makes it read-only), so only a store behind this is missing entries; the
    /// writer's live record runs ahead of the state while a batch is applied.
    signed_at_start: Arc<SignedRecord>,
    /// Every author's head as the manifest written at the last stop (or periodically)
    /// had it; set once at start.
    heads_at_last_stop: Arc<std::sync::OnceLock<BTreeMap<PublicId, u64>>>,
    /// Per peer: its clock minus this node's (ms), and when that was measured.
    peer_clocks: Arc<Mutex<BTreeMap<String, (i64, std::time::Instant)>>>,
    metrics: Arc<Metrics>,
}

/// How long a peer's clock reading counts.
const CLOCK_READING_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// This node's clock against its peers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockCheck {
    /// Median over the peers heard from lately of (peer's clock − this node's), ms.
    pub offset_ms: i64,
    /// How many peers that is.
    pub peers: usize,
    /// Set when most of those peers, and at least [`CLOCK_WITNESSES`] of them, put
    /// this node's clock further out than the tolerance: the median offset of those
    /// that do.
    pub out_of_line_ms: Option<i64>,
    /// How many peers put it out of line.
    pub agreeing: usize,
    /// Set when most peers heard put this node's clock out of line but they are
    /// fewer than [`CLOCK_WITNESSES`]: a warning only.
    pub unconfirmed_ms: Option<i64>,
}

/// Peers that must agree (and be most of those heard) before a node refuses to
/// sign because of its own clock: with one or two, the peer may be the one that is
/// wrong (a fast clock, or a hostile member's false reading).
pub const CLOCK_WITNESSES: usize = 3;

impl ClockCheck {
    /// This node's clock judged from `offsets` (each a peer's clock minus this
    /// node's, ms) with a tolerance of `tolerance_ms`; None without readings.
    pub fn judge(mut offsets: Vec<i64>, tolerance_ms: i64) -> Option<Self> {
        if offsets.is_empty() {
            return None;
        }
        offsets.sort_unstable();
        let median = |v: &[i64]| v[v.len() / 2];
        // Of the peers that agree this node is out, the lower median by size: with
        // two readings, the smaller disagreement (the other peer may be off too).
        let lower_median = |v: &[i64]| {
            let mut by_size = v.to_vec();
            by_size.sort_unstable_by_key(|o| o.unsigned_abs());
            by_size[(by_size.len() - 1) / 2]
        };
        let behind: Vec<i64> = offsets
            .iter()
            .copied()
            .filter(|o| *o > tolerance_ms)
            .collect();
        let ahead: Vec<i64> = offsets
            .iter()
            .copied()
            .filter(|o| *o < -tolerance_ms)
            .collect();
        let majority = offsets.len() / 2 + 1;
        let (out_of_line_ms, agreeing) = if behind.len() >= majority {
            (Some(lower_median(&behind)), behind.len())
        } else if ahead.len() >= majority {
            (Some(lower_median(&ahead)), ahead.len())
        } else {
            (None, 0)
        };
        // One or two peers may be the ones whose clocks are wrong: their word is a
        // warning, never a refusal.
        let (out_of_line_ms, unconfirmed_ms) = if agreeing >= CLOCK_WITNESSES {
            (out_of_line_ms, None)
        } else {
            (None, out_of_line_ms)
        };
        Some(Self {
            offset_ms: median(&offsets),
            peers: offsets.len(),
            out_of_line_ms,
            unconfirmed_ms,
            agreeing,
        })
    }

    /// "2h 0m 5s ahead of" / "behind" wording for a disagreement of `offset_ms`
    /// (peer − this node): positive means this node is behind.
    pub fn describe(offset_ms: i64) -> String {
        let secs = offset_ms.unsigned_abs().div_ceil(1000);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let amount = if h > 0 {
            format!("{h}h {m}m {s}s")
        } else if m > 0 {
            format!("{m}m {s}s")
        } else {
            format!("{s}s")
        };
        let way = if offset_ms > 0 { "behind" } else { "ahead of" };
        format!("{amount} {way}")
    }

    /// What fewer than [`CLOCK_WITNESSES`] peers say of this node's clock, when
    /// most of those heard put it out of line.
    pub fn warning(&self) -> Option<String> {
        let off = self.unconfirmed_ms?;
        Some(format!(
            "{} of {} peers put this node's clock {} theirs; fewer than {CLOCK_WITNESSES} \
             agree, so it still signs (check the clock: `timedatectl`)",
            self.agreeing,
            self.peers,
            Self::describe(off)
        ))
    }

    /// Why this node must not sign now, if its clock is out of line.
    pub fn problem(&self) -> Option<String> {
        let off = self.out_of_line_ms?;
        Some(format!(
            "this node's clock is {} its peers' (median of {} of {} peers): entries it signed \
             now would carry a wrong time (peers hold entries stamped ahead of them; deadlines \
             and event times are judged by these stamps). Fix the clock (NTP: `timedatectl`) \
             and try again",
            Self::describe(off),
            self.agreeing,
            self.peers
        ))
    }
}

/// The logs `state` holds less of than `expected` (author, seq) says, with what
/// `on_peers` says peers hold.
fn shortfall<'a>(
    state: &State,
    expected: impl Iterator<Item = (&'a PublicId, u64)>,
    on_peers: impl Fn(&PublicId) -> u64,
) -> Vec<LostEntries> {
    expected
        .filter_map(|(author, seq)| {
            let stored = state.head(author).map_or(0, |h| h.seq);
            (stored < seq).then(|| LostEntries {
                author: *author,
                stored,
                signed: seq,
                on_peers: on_peers(author),
            })
        })
        .collect()
}

/// A log that the store holds less of than this node signed (a home identity's)
/// or than the manifest of heads said at start (another author's).
#[derive(Debug, Clone, Copy)]
pub struct LostEntries {
    pub author: PublicId,
    /// The seq the store holds up to.
    pub stored: u64,
    /// The seq this node has signed up to.
    pub signed: u64,
    /// The highest seq of it a peer has reported since start (0: none yet).
    pub on_peers: u64,
}

/// The last snapshot whose digest was computed, with its digest. Held strongly,
/// so that every caller that waited for a computation gets its result (held
/// weakly, the snapshot was gone as soon as the caller that computed it answered,
/// and each of the callers queued behind computed again, one gap after another:
/// status polls took up to 430 ms). It shares all but what changed since with the
/// current snapshot; the writer drops it when it rebuilds the state, which shares
/// nothing with the old.
type Digested = Arc<Mutex<Option<(Arc<Snapshot>, [u8; 32])>>>;

/// When the next digest computation may start.
#[derive(Default)]
struct DigestCache {
    /// A computation waits [`DIGEST_SPACING`] times as long as the previous one
    /// took, and at least [`DIGEST_MIN_GAP`], so digests take at most a quarter of
    /// one core however many callers ask under a stream of changes (the rest is
    /// left to publishing).
    next_at: Option<tokio::time::Instant>,
}

/// How many times its own duration a digest computation waits after the previous
/// one. At 1 (half of one core), 50 pollers on a 100,000-entry state kept the
/// publish p99 at 1.5 to 3 times its value without them on two cores, when the
/// digest rendered every view (BENCHMARKS.md). It now reads the set hashes the
/// writer keeps: under a millisecond for 100,000 statements, more only where
/// clashes are many (they are hashed whole).
const DIGEST_SPACING: u32 = 3;

/// The least time between two digest computations, however cheap: under a stream
/// of changes, a caller waits at most this long (and one computation) for a
/// digest of the state as new as its call.
const DIGEST_MIN_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// Counts of what a reload did, for the log line and the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    pub entries: u64,
    pub forks: usize,
    pub seconds: f64,
}

/// Whether a reload checks the signatures of stored entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signatures {
    /// At start-up: the store may have been damaged or tampered with.
    Verify,
    /// A rebuild of the views while running (after a lower fork proof): every stored
    /// entry was verified before it was stored and at start-up.
    VerifiedEarlier,
}

/// Reads every stored entry, checks the signatures (batched, on every core) and the
/// log links, and rebuilds the derived state.
pub fn load_state(store: &Store, charter: &Charter) -> Result<(State, LoadReport), StoreError> {
    load_state_with(store, charter, Signatures::Verify)
}

/// As [`load_state`], choosing whether signatures are checked again.
pub fn load_state_with(
    store: &Store,
    charter: &Charter,
    signatures: Signatures,
) -> Result<(State, LoadReport), StoreError> {
    let started = Instant::now();
    let (mut state, forks) = load_pass(store, charter, signatures, None)?;
    batch::check_known(&state).map_err(StoreError::Corrupt)?;
    if state.views_stale() {
        // The roster changed what counts for entries read before the governance
        // entries that changed it: read everything again, counting by the roster
        // of the whole store (signatures were checked in the first pass).
        let roster = state.roster_arc();
        state = load_pass(store, charter, Signatures::VerifiedEarlier, Some(roster))?.0;
        state.unpin();
    }
    let report = LoadReport {
        entries: state.entry_count(),
        forks,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((state, report))
}

/// One read of the whole store; with `pinned`, the views count by that roster.
fn load_pass(
    store: &Store,
    charter: &Charter,
    signatures: Signatures,
    pinned: Option<Arc<accord_core::roster::Roster>>,
) -> Result<(State, usize), StoreError> {
    let mut state = match pinned {
        Some(roster) => State::pinned_to(charter.clone(), roster),
        None => State::new(charter.clone()),
    };
    // Fork proofs first: a frozen author's entries from the fork on do not count.
    let forks = store.forks()?;
    for (author, bytes) in &forks {
        let proof: ForkProofRecord = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("fork proof of {author}: {e}")))?;
        state.record_fork(proof.into_proof(*author)?);
    }
    apply_stored(&mut state, store.entries(), charter, signatures)?;
    if let Some((author, e)) = state.misfiled_fork() {
        return Err(StoreError::Corrupt(format!("fork proof of {author}: {e}")));
    }
    Ok((state, forks.len()))
}

/// Decodes, verifies and applies `entries` (in (author, seq) order, each log whole
/// from seq 1) to `state`: the same checks as a node's start-up, for a store or a
/// backup file. The first problem is an error.
///
/// The work is pipelined a window at a time: while worker threads verify window k,
/// this thread applies window k-1 (which only this thread can do: it owns `state`)
/// and reads window k+1, then helps verify what is left of window k. Applying and
/// reading in turn with verifying left a core idle for a third of the load once
/// entries carried causal references (BENCHMARKS.md). Problems are still reported in
/// store order: those of applying window k-1, then reading window k, then verifying
/// it.
pub fn apply_stored(
    state: &mut State,
    mut entries: impl Iterator<Item = Result<StoredEntry, StoreError>>,
    charter: &Charter,
    signatures: Signatures,
) -> Result<(), StoreError> {
    let max = charter.rules().max_entry_bytes as usize;
    // The last entry applied: (author, seq, id), to check the links across windows.
    let mut previous: Option<(PublicId, u64, EntryId)> = None;
    let mut reading = read_window(&mut entries, max);
    let mut to_apply: Vec<VerifiedEntry> = Vec::new();
    std::thread::scope(|scope| {
        loop {
            let window = match reading {
                Ok(window) if !window.is_empty() => window,
                Ok(_) => return apply_window(state, to_apply, &mut previous),
                Err(e) => {
                    apply_window(state, to_apply, &mut previous)?;
                    return Err(e);
                }
            };
            let verifying = Verifying::start(scope, window, charter, signatures);
            let applied = apply_window(state, std::mem::take(&mut to_apply), &mut previous);
            reading = match applied {
                Ok(()) => read_window(&mut entries, max),
                Err(_) => Ok(Vec::new()),
            };
            let verified = verifying.finish();
            applied?;
            to_apply = verified?;
        }
    })
}

/// Entries decoded and verified at a time: memory stays bounded however large the
/// store (two windows are held while one is applied and the next verified). 4,096
/// rather than 16,384 took a million-entry node's start-up peak from about 270 MB to
/// about 200 MB (BENCHMARKS.md).
const WINDOW: usize = 4 * 1024;

/// Reads and decodes the next [`WINDOW`] entries (none at the end).
fn read_window(
    entries: &mut impl Iterator<Item = Result<StoredEntry, StoreError>>,
    max: usize,
) -> Result<Vec<DecodedEntry>, StoreError> {
    let mut window = Vec::with_capacity(WINDOW);
    for stored in entries.take(WINDOW) {
        let stored = stored?;
        let entry = entry::decode_bytes(&stored.bytes, max).map_err(|e| {
            StoreError::Corrupt(format!("entry {}/{}: {e}", stored.author, stored.seq))
        })?;
        if entry.author() != stored.author || entry.seq() != stored.seq {
            return Err(StoreError::Corrupt(format!(
                "entry stored as {}/{} is {}/{}",
                stored.author,
                stored.seq,
                entry.author(),
                entry.seq()
            )));
        }
        window.push(entry);
    }
    Ok(window)
}

/// Checks the links and signers of a verified window and applies it, in order.
fn apply_window(
    state: &mut State,
    window: Vec<VerifiedEntry>,
    previous: &mut Option<(PublicId, u64, EntryId)>,
) -> Result<(), StoreError> {
    for entry in window {
        let same_author = previous.filter(|(author, _, _)| *author == entry.author());
        let expected_seq = same_author.map_or(1, |(_, seq, _)| seq + 1);
        let expected_prev = same_author.map(|(_, _, id)| id);
        if entry.seq() != expected_seq || entry.prev() != expected_prev {
            return Err(StoreError::Corrupt(format!(
                "log of {} is broken at seq {}",
                entry.author(),
                entry.seq()
            )));
        }
        // The key that signs each seq: known from the log before it, all applied.
        entry.check_signer(&*state).map_err(|e| {
            StoreError::Corrupt(format!("entry {}/{}: {e}", entry.author(), entry.seq()))
        })?;
        state.apply(&entry);
        *previous = Some((entry.author(), entry.seq(), entry.id()));
    }
    Ok(())
}

/// Entries batch-verified together.
const CHUNK: usize = 256;

/// One window's signatures being batch-verified (and bodies read) on worker threads,
/// chunk by chunk, in whatever order the threads take the chunks.
struct Verifying<'scope, 'env> {
    work: Arc<VerifyWork<'env>>,
    workers: Vec<std::thread::ScopedJoinHandle<'scope, ()>>,
}

/// What became of one chunk: its entries verified, or the first problem in it.
type Checked = Result<Vec<VerifiedEntry>, StoreError>;

/// The chunks of a window not yet taken, and the result of each chunk by its index.
struct VerifyWork<'env> {
    chunks: Mutex<std::iter::Enumerate<std::vec::IntoIter<Vec<DecodedEntry>>>>,
    results: Mutex<Vec<Option<Checked>>>,
    charter: &'env Charter,
    signatures: Signatures,
}

impl VerifyWork<'_> {
    /// Verifies chunks until none is left.
    fn run(&self) {
        loop {
            let next = self.chunks.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((index, chunk)) = next else { return };
            let result = verify_chunk(chunk, self.charter, self.signatures);
            self.results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(result);
        }
    }
}

impl<'scope, 'env> Verifying<'scope, 'env> {
    /// Starts one worker per core but one: the calling thread is the last worker
    /// once it has done its own part of the pipeline ([`Verifying::finish`]).
    fn start(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        window: Vec<DecodedEntry>,
        charter: &'env Charter,
        signatures: Signatures,
    ) -> Self {
        let mut chunks = Vec::with_capacity(window.len().div_ceil(CHUNK));
        let mut rest = window.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push(rest.by_ref().take(CHUNK).collect::<Vec<_>>());
        }
        let count = chunks.len();
        let work = Arc::new(VerifyWork {
            chunks: Mutex::new(chunks.into_iter().enumerate()),
            results: Mutex::new((0..count).map(|_| None).collect()),
            charter,
            signatures,
        });
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = (1..threads.min(count))
            .map(|_| {
                let work = work.clone();
                scope.spawn(move || work.run())
            })
            .collect();
        Self { work, workers }
    }

    /// Verifies what is left on this thread too, waits for the workers, and returns
    /// the window's entries in order, or the first problem in that order.
    fn finish(self) -> Result<Vec<VerifiedEntry>, StoreError> {
        self.work.run();
        for worker in self.workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let results =
            std::mem::take(&mut *self.work.results.lock().unwrap_or_else(|p| p.into_inner()));
        let mut all = Vec::with_capacity(results.len() * CHUNK);
        for result in results {
            all.extend(result.expect("every chunk is verified before the workers end")?);
        }
        Ok(all)
    }
}

/// Batch-verifies a chunk's signatures, then rechecks each body against the charter.
fn verify_chunk(
    chunk: Vec<DecodedEntry>,
    charter: &Charter,
    signatures: Signatures,
) -> Result<Vec<VerifiedEntry>, StoreError> {
    let checked = if signatures == Signatures::VerifiedEarlier {
        Ok(SignatureChecked::verified_earlier_in_this_store())
    } else {
        entry::verify_batch(&chunk)
    };
    let checked = checked.map_err(|bad| {
        let e = &chunk[bad[0]];
        StoreError::Corrupt(format!(
            "signature of stored entry {}/{} does not verify",
            e.author(),
            e.seq()
        ))
    })?;
    chunk
        .into_iter()
        .map(|e| {
            let (author, seq) = (e.author(), e.seq());
            VerifiedEntry::reload(e, charter, checked)
                .map_err(|err| StoreError::Corrupt(format!("entry {author}/{seq}: {err}")))
        })
        .collect()
}

/// A fork proof as stored: the two signed entries in hex.
#[derive(serde::Serialize, serde::Deserialize)]
struct ForkProofRecord {
    seq: u64,
    first: String,
    second: String,
}

/// A fork proof as the store records it.
pub fn fork_proof_record(proof: &ForkProof) -> Vec<u8> {
    serde_json::to_vec(&ForkProofRecord::of(proof)).expect("serialises")
}

/// A stored fork proof record of `author`, read and verified against `charter`.
pub fn fork_proof_from_record(
    charter: &accord_core::Charter,
    author: PublicId,
    record: &[u8],
) -> Result<ForkProof, StoreError> {
    let parsed: ForkProofRecord = serde_json::from_slice(record)
        .map_err(|e| StoreError::Corrupt(format!("fork proof of {author}: {e}")))?;
    let proof = parsed.into_proof(author)?;
    let verified = ForkProof::verify(charter, &proof.first, &proof.second)
        .map_err(|e| StoreError::Corrupt(format!("fork proof of {author}: {e}")))?;
    if verified.author != author || verified.seq != proof.seq {
        return Err(StoreError::Corrupt(format!(
            "fork proof stored for {author} at seq {} is about {} at seq {}",
            proof.seq, verified.author, verified.seq
        )));
    }
    Ok(verified)
}

impl ForkProofRecord {
    fn of(proof: &ForkProof) -> Self {
        Self {
            seq: proof.seq,
            first: hex::encode(&proof.first),
            second: hex::encode(&proof.second),
        }
    }

    fn into_proof(self, author: PublicId) -> Result<ForkProof, StoreError> {
        let bytes = |h: &str| hex::decode(h).map_err(|e| StoreError::Corrupt(e.to_string()));
        Ok(ForkProof {
            author,
            seq: self.seq,
            first: bytes(&self.first)?,
            second: bytes(&self.second)?,
        })
    }
}

impl Ledger {
    /// Starts the writer over `store` and `state`. The writer stops once every
    /// handle is dropped and the requests already queued are answered.
    pub fn start(
        store: Store,
        state: State,
        identities: Vec<Identity>,
        signed: SignedRecord,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let signed_at_start = Arc::new(signed.clone());
        let signed = Arc::new(Mutex::new(signed));
        let (jobs_tx, jobs_rx) = mpsc::channel(4 * MAX_BATCH);
        let (changes_tx, changes_rx) = watch::channel(0u64);
        let (appended_tx, appended) = live::channel();
        let storage_tx = Arc::new(watch::channel(None).0);
        let current = Arc::new(Snapshot { version: 0, state });
        let state = Arc::new(ArcSwap::new(current.clone()));
        let identities = Arc::new(identities);
        let metrics = Arc::new(Metrics::new());
        let digested = Digested::default();
        let writer = Writer {
            digested: digested.clone(),
            metrics: metrics.clone(),
            published: state.clone(),
            current,
            store: store.clone(),
            identities: identities.to_vec(),
            changes: changes_tx,
            appended: appended_tx,
            failed: storage_tx.clone(),
            signed,
        };
        let task = tokio::spawn(writer.run(jobs_rx));
        (
            Self {
                state,
                store,
                identities,
                jobs: jobs_tx,
                changes: changes_rx,
                appended,
                digest: Arc::default(),
                digested,
                own_logs_elsewhere: Arc::default(),
                peer_contact: Arc::new(watch::channel(false).0),
                peer_contact_deadline: Arc::default(),
                failed: storage_tx,
                unproven: Arc::default(),
                signed_at_start,
                heads_at_last_stop: Arc::default(),
                peer_clocks: Arc::default(),
                metrics,
            },
            task,
        )
    }

    /// The node's metrics (`/metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The current snapshot of the derived state: never blocks, and holding it
    /// (for as long as the caller likes) never blocks the writer.
    pub fn state(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    /// A handle that reads snapshots only: unlike a [`Ledger`], holding it does not
    /// keep the writer running (for background tasks that must end with it).
    pub fn snapshots(&self) -> Snapshots {
        Snapshots(self.state.clone())
    }

    /// A snapshot at least as new as the state when called, with its digest
    /// ([`State::digest`]). The digest is computed on the blocking pool, at most once
    /// per change and by one caller at a time: callers that arrive while it is being
    /// computed wait for it (asynchronously) and share the next result. Under a
    /// stream of changes computations are spaced (see `DigestCache::next_at`).
    pub async fn digest(&self) -> Result<(Arc<Snapshot>, [u8; 32]), tokio::task::JoinError> {
        let wanted = self.state.load().version;
        let last = || {
            self.digested
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .filter(|(snapshot, _)| snapshot.version >= wanted)
        };
        if let Some(done) = last() {
            return Ok(done);
        }
        let mut cache = self.digest.lock().await;
        if let Some(done) = last() {
            return Ok(done);
        }
        if let Some(at) = cache.next_at {
            tokio::time::sleep_until(at).await;
        }
        // The newest snapshot: callers queued behind this one are served by it.
        let snapshot = self.state();
        let started = tokio::time::Instant::now();
        let digest = tokio::task::spawn_blocking({
            let snapshot = snapshot.clone();
            move || snapshot.digest()
        })
        .await?;
        let now = tokio::time::Instant::now();
        cache.next_at = Some(now + ((now - started) * DIGEST_SPACING).max(DIGEST_MIN_GAP));
        *self.digested.lock().unwrap_or_else(|p| p.into_inner()) = Some((snapshot.clone(), digest));
        Ok((snapshot, digest))
    }

    /// The node has peers: publishes made in the next `wait` wait (at most until
    /// then) for a first peer's heads, so that a node restored from a backup learns
    /// that it is behind its own logs before it signs anything.
    pub fn expect_peers(&self, wait: std::time::Duration) {
        *self
            .peer_contact_deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now() + wait);
    }

    /// Waits (bounded, see [`Ledger::expect_peers`]) until a peer has reported its
    /// heads since start. Returns at once without peers or once the time is up.
    pub async fn wait_for_peer_contact(&self) {
        let Some(deadline) = *self
            .peer_contact_deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        else {
            return;
        };
        if *self.peer_contact.borrow() || tokio::time::Instant::now() >= deadline {
            return;
        }
        let mut contact = self.peer_contact.subscribe();
        let _ = tokio::time::timeout_at(deadline, contact.wait_for(|c| *c)).await;
    }

    /// Records the heads a peer reported, for [`Ledger::behind_own_log`].
    pub fn note_peer_heads<'a>(
        &self,
        peer: &str,
        heads: impl IntoIterator<Item = (&'a PublicId, u64)>,
    ) {
        self.peer_contact
            .send_if_modified(|c| !std::mem::replace(c, true));
        let home: Vec<PublicId> = self.identities.iter().map(|i| i.public_id()).collect();
        let state = self.state();
        self.own_logs_elsewhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(peer, &home, heads, &state, monotonic_ms());
    }

    /// If a peer claims more of `author`'s log than this node (its home) holds, and
    /// the claim is still being backed (`claims.rs`): the peer's seq and name and
    /// this node's seq. Publishing now would fork the log.
    pub fn behind_own_log(&self, author: &PublicId) -> Option<crate::claims::Behind> {
        let state = self.state();
        self.own_logs_elsewhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .behind(author, &state, monotonic_ms())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Why the store failed, if it has: every write since was refused and the node
    /// is read-only until restarted.
    pub fn storage_failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Each home identity whose log this node's store holds less of than the node
    /// has signed (the store lost entries). Publishing as it would sign a seq
    /// already used. A log a recovery by quorum replaced is not one.
    /// `state` is the caller's snapshot: taking a second read of the state here
    /// while the caller holds one could deadlock behind a waiting writer.
    pub fn lost_own_entries(&self, state: &State) -> Vec<LostEntries> {
        let elsewhere = self
            .own_logs_elsewhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // A log a recovery replaced counts only up to its cut: what it lost is moot.
        let roster = state.roster();
        let signed = self
            .signed_at_start
            .heads()
            .iter()
            .filter(|(a, _)| roster.owner(a).is_none_or(|o| o.log() == **a))
            .map(|(a, (seq, _))| (a, *seq));
        shortfall(state, signed, |author| elsewhere.on_peers(author))
    }

    /// Records a peer's clock reading: its clock minus this node's, in ms.
    /// Readings past [`CLOCK_READING_TTL`] are dropped: the map holds the peers
    /// heard from lately, not every peer a reload ever named.
    pub fn note_peer_clock(&self, peer: &str, offset_ms: i64) {
        let mut clocks = self.peer_clocks.lock().unwrap_or_else(|p| p.into_inner());
        clocks.retain(|_, (_, at)| at.elapsed() < CLOCK_READING_TTL);
        clocks.insert(peer.to_owned(), (offset_ms, std::time::Instant::now()));
    }

    /// This node's clock against its peers' recent readings, judged with a
    /// tolerance of `tolerance_ms`; None before any peer has answered.
    pub fn clock_check(&self, tolerance_ms: i64) -> Option<ClockCheck> {
        let offsets: Vec<i64> = self
            .peer_clocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|(_, at)| at.elapsed() < CLOCK_READING_TTL)
            .map(|(offset, _)| *offset)
            .collect();
        ClockCheck::judge(offsets, tolerance_ms)
    }

    /// Records the heads the manifest held at start, for [`Ledger::lost_entries`].
    pub fn expect_heads(&self, heads: BTreeMap<PublicId, u64>) {
        let _ = self.heads_at_last_stop.set(heads);
    }

    /// Each author other than this node's own whose log the store holds less of
    /// than the manifest of heads said at start: entries the store lost, which the
    /// peers refill (`signed` is the manifest's seq; `on_peers` is 0).
    pub fn lost_entries(&self, state: &State) -> Vec<LostEntries> {
        let Some(expected) = self.heads_at_last_stop.get() else {
            return Vec::new();
        };
        let others = expected
            .iter()
            .filter(|(author, _)| !self.identities.iter().any(|i| i.public_id() == **author))
            .map(|(a, seq)| (a, *seq));
        shortfall(state, others, |_| 0)
    }

    /// Changes when the store fails.
    pub fn storage_watch(&self) -> watch::Receiver<Option<String>> {
        self.failed.subscribe()
    }

    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// Changes each time a batch is applied.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Every durable batch from now on. A follower that falls too far behind
    /// ([`LIVE_BATCHES`] batches, or batches of more than [`LIVE_BYTES`] the writer
    /// has let go) gets `Lagged` and must catch up from the store.
    pub fn subscribe(&self) -> Follower {
        self.appended.subscribe()
    }

    /// Signs a body as home identity `identity` (an index into [`Self::identities`])
    /// and appends it; answers once durable.
    pub async fn publish(
        &self,
        identity: usize,
        kind: i32,
        body: Vec<u8>,
    ) -> Result<Ack, AppendError> {
        let started = std::time::Instant::now();
        let result = self
            .one(Request::Publish {
                identity,
                kind,
                body,
            })
            .await;
        self.count("publish", &result, started);
        result
    }

    fn count(
        &self,
        call: &'static str,
        result: &Result<Ack, AppendError>,
        started: std::time::Instant,
    ) {
        let outcome = match result {
            Ok(_) => metrics::Outcome::Ok,
            Err(AppendError::Refused(_)) => metrics::Outcome::Refused,
            Err(_) => metrics::Outcome::Unavailable,
        };
        self.metrics.publish(call, outcome, started.elapsed());
    }

    /// Appends an entry signed elsewhere; answers once durable.
    pub async fn submit(
        &self,
        entry: DecodedEntry,
        checked: SignatureChecked,
    ) -> Result<Ack, AppendError> {
        let started = std::time::Instant::now();
        let result = self
            .one(Request::Submit {
                entry: Box::new(entry),
                checked,
            })
            .await;
        self.count("submit", &result, started);
        result
    }

    /// Appends a peer's entries (signatures checked by the caller); answers once the
    /// accepted ones are durable.
    pub async fn ingest(
        &self,
        entries: Vec<DecodedEntry>,
        checked: SignatureChecked,
    ) -> Result<IngestReport, AppendError> {
        self.many(Request::Ingest { entries, checked }).await
    }

    /// Rotates home identity `identity`'s key to `key` (which must already be on
    /// disk): signs a key rotation with the current key and appends it; from then
    /// on the writer signs as `key`. Answers once the rotation is durable.
    pub async fn rotate_key(&self, identity: usize, key: Identity) -> Result<Ack, AppendError> {
        let started = std::time::Instant::now();
        let result = self
            .one(Request::Rotate {
                identity,
                key: Box::new(key),
            })
            .await;
        self.count("rotate_key", &result, started);
        result
    }

    /// Records verified fork proofs; answers once durable.
    pub async fn record_forks(&self, forks: Vec<ForkProof>) -> Result<IngestReport, AppendError> {
        self.many(Request::Forks(forks)).await
    }

    async fn one(&self, request: Request) -> Result<Ack, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job {
            request,
            reply: Reply::One(reply),
        })
        .await?;
        answer.await.map_err(|_| AppendError::ShuttingDown)?
    }

    async fn many(&self, request: Request) -> Result<IngestReport, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job {
            request,
            reply: Reply::Many(reply),
        })
        .await?;
        answer.await.map_err(|_| AppendError::ShuttingDown)?
    }

    async fn send(&self, job: Job) -> Result<(), AppendError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| AppendError::ShuttingDown)
    }
}

struct Writer {
    /// Where readers find the current snapshot.
    published: Arc<ArcSwap<Snapshot>>,
    /// The snapshot last published: only the writer publishes.
    current: Arc<Snapshot>,
    store: Store,
    /// The key each home identity signs with now (a rotation replaces one).
    identities: Vec<Identity>,
    changes: watch::Sender<u64>,
    appended: live::Sender,
    /// Set when the store failed: from then on every append is refused.
    failed: Arc<watch::Sender<Option<String>>>,
    /// What this node has signed; rewritten after the flush of every batch that
    /// raises a home identity's head, before the batch is acknowledged or sent.
    signed: Arc<Mutex<SignedRecord>>,
    metrics: Arc<Metrics>,
    /// The readers' last digested snapshot: dropped on a rebuild.
    digested: Digested,
}

/// Whether `batch` holds only entries from peers, fewer than
/// [`INGEST_LINGER_BELOW`]: the writer may wait a moment for more.
fn only_a_few_from_peers(batch: &[Job]) -> bool {
    let mut entries = 0;
    for job in batch {
        match &job.request {
            Request::Ingest { entries: e, .. } => entries += e.len(),
            _ => return false,
        }
    }
    entries < INGEST_LINGER_BELOW
}

/// Milliseconds on this process's monotonic clock.
fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How long the writer waits for more entries from peers before committing a small
/// batch that holds nothing else. In a big alliance a node's peers each relay the
/// entries they were first to hold, one or two at a time: one store write, flush and
/// state update for several of them costs much less than one each. Nobody waits on
/// these entries, and a client's request ends the wait at once.
const INGEST_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// A batch holding at least this many entries from peers (a catch-up) is committed
/// without waiting for more.
const INGEST_LINGER_BELOW: usize = 64;

impl Writer {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let until = tokio::time::Instant::now() + INGEST_LINGER;
            while batch.len() < MAX_BATCH && only_a_few_from_peers(&batch) {
                let room = MAX_BATCH - batch.len();
                match tokio::time::timeout_at(until, jobs.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            self.commit(std::mem::take(&mut batch)).await;
        }
    }

    /// Checks, stores, flushes, applies and answers one batch.
    async fn commit(&mut self, jobs: Vec<Job>) {
        if let Some(reason) = self.failed.borrow().clone() {
            for job in jobs {
                job.reply.fail(AppendError::Storage(reason.clone()));
            }
            return;
        }
        let snapshot = self.current.clone();
        let (requests, replies): (Vec<Request>, Vec<Reply>) =
            jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
        let store = &self.store;
        let plan = batch::plan(
            &snapshot,
            &mut self.identities,
            requests,
            now_ms(),
            |a, s| store.get(a, s),
        );
        if plan.writes() {
            let writing = std::time::Instant::now();
            let written = self.write(&plan.accepted, &plan.forks).await;
            self.metrics.commit(plan.accepted.len(), writing.elapsed());
            if let Err(e) = written {
                let reason = e.to_string();
                tracing::error!("storage failed; refusing further writes: {reason}");
                self.fail(reason.clone());
                for reply in replies {
                    reply.fail(AppendError::Storage(reason.clone()));
                }
                return;
            }
            // A copy that shares every node with the published state (O(1)); readers
            // keep the published one until the new one replaces it.
            let (mut state, rebuild) = batch::apply(snapshot.state.clone(), &plan);
            drop(snapshot);
            let now = now_ms();
            for (entry, first) in plan.accepted.iter().zip(&plan.first_here) {
                if !first {
                    let lag = now.saturating_sub(entry.timestamp_ms()).max(0);
                    self.metrics
                        .replication_lag(std::time::Duration::from_millis(lag as u64));
                }
            }
            if rebuild && let Some(rebuilt) = self.rebuild(state.charter().clone()).await {
                state = rebuilt;
                // The old state, kept for its digest, shares nothing with the new.
                *self.digested.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            self.publish(state);
            let appended = Appended {
                entries: plan
                    .accepted
                    .iter()
                    .map(|e| (e.author(), e.seq(), e.to_bytes()))
                    .collect(),
                first_here: plan.first_here,
                forks: plan.forks,
            };
            // No follower is not an error.
            let _ = self.appended.send(Arc::new(appended));
        }
        for (reply, outcome) in replies.into_iter().zip(plan.outcomes) {
            match (reply, outcome) {
                (Reply::One(tx), Outcome::One(result)) => {
                    let _ = tx.send(result.map_err(AppendError::Refused));
                }
                (Reply::Many(tx), Outcome::Many(report)) => {
                    let _ = tx.send(Ok(report));
                }
                (reply, _) => reply.fail(AppendError::Storage("reply mismatch".into())),
            }
        }
    }

    /// From now on the node is read-only: every append is refused with `reason`.
    fn fail(&mut self, reason: String) {
        self.metrics.storage_failure();
        self.failed.send_replace(Some(reason));
    }

    /// Publishes `state` as the next snapshot, then tells the watchers of
    /// [`Ledger::changes`]: whoever is woken finds it published.
    fn publish(&mut self, state: State) {
        let version = self.current.version + 1;
        let next = Arc::new(Snapshot { version, state });
        self.published.store(next.clone());
        self.current = next;
        self.changes.send_replace(version);
    }

    /// Rebuilds the state from the store (on the blocking pool) after a fork proof
    /// made applied entries stop counting; the caller publishes it. Rare: once per
    /// forked author at most. None (and the ledger refuses further writes) if the
    /// store cannot be read.
    async fn rebuild(&mut self, charter: Charter) -> Option<State> {
        let store = self.store.clone();
        let rebuild = move || load_state_with(&store, &charter, Signatures::VerifiedEarlier);
        match tokio::task::spawn_blocking(rebuild).await {
            Ok(Ok((state, _))) => Some(state),
            Ok(Err(e)) => {
                tracing::error!("cannot rebuild the state after a fork: {e}");
                self.fail(e.to_string());
                None
            }
            Err(e) => {
                tracing::error!("cannot rebuild the state after a fork: {e}");
                self.fail(e.to_string());
                None
            }
        }
    }

    async fn write(
        &self,
        accepted: &[VerifiedEntry],
        forks: &[ForkProof],
    ) -> Result<(), StoreError> {
        let stored: Vec<StoredEntry> = accepted
            .iter()
            .map(|e| StoredEntry {
                author: e.author(),
                seq: e.seq(),
                bytes: e.signed().encode_to_vec(),
            })
            .collect();
        if !stored.is_empty() {
            self.store.append(&stored)?;
        }
        let raised = {
            let mut signed = self.signed.lock().unwrap_or_else(|p| p.into_inner());
            let mut raised = false;
            for e in accepted {
                if self.identities.iter().any(|i| i.public_id() == e.author()) {
                    raised |= signed.raise(e.author(), e.seq(), e.id());
                }
            }
            raised.then(|| signed.next_save())
        };
        for proof in forks {
            let record = serde_json::to_vec(&ForkProofRecord::of(proof)).expect("serialises");
            self.store.put_fork(&proof.author, &record)?;
        }
        // Entries pulled from peers are flushed too: nobody waits for them, but
        // sled holds unflushed writes in memory, and a flush per batch keeps a node
        // catching up on a million entries within its memory budget.
        match tokio::time::timeout(FLUSH_LIMIT, self.store.flush()).await {
            Ok(flushed) => flushed?,
            Err(_) => return Err(StoreError::Stalled(FLUSH_LIMIT)),
        }
        // What is acknowledged must be what a read will serve.
        // A few entries read back from sled's cache in microseconds; a peer's large
        // batch goes to the blocking pool.
        if stored.len() <= READ_BACK_INLINE {
            self.store.read_back(&stored)?;
        } else {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.read_back(&stored))
                .await
                .map_err(|e| StoreError::Engine(e.to_string()))??;
        }
        if let Some(record) = raised {
            tokio::task::spawn_blocking(move || record.save())
                .await
                .map_err(|e| StoreError::Corrupt(format!("writing the signed heads: {e}")))?
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "cannot write the record of signed heads ({}): {e}",
                        crate::signed::FILES.join(", ")
                    ))
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Issue 22, defect 5: one or two peers' word about this node's clock is a
    /// warning; three agreeing, and most of those heard, a refusal.
    #[test]
    fn the_clock_check_refuses_only_on_three_agreeing_peers() {
        let tolerance = 150_000;
        let one = ClockCheck::judge(vec![600_000], tolerance).unwrap();
        assert_eq!(
            (one.out_of_line_ms, one.unconfirmed_ms),
            (None, Some(600_000))
        );
        assert!(one.problem().is_none());
        assert!(one.warning().unwrap().starts_with("1 of 1 peers"));
        let two = ClockCheck::judge(vec![600_000, 590_000], tolerance).unwrap();
        assert!(two.problem().is_none() && two.warning().is_some());
        let three = ClockCheck::judge(vec![600_000, 590_000, 610_000], tolerance).unwrap();
        assert_eq!(three.out_of_line_ms, Some(600_000));
        assert!(three.problem().is_some() && three.warning().is_none());
        // Three of seven is not most of those heard.
        let split =
            ClockCheck::judge(vec![600_000, 600_000, 600_000, 0, 0, 0, 0], tolerance).unwrap();
        assert!(split.problem().is_none() && split.warning().is_none());
    }

    use accord_core::pb;

    use super::*;

    fn charter(member: &Identity) -> Charter {
        crate::test_support::one_member_charter("Snapshot Alliance", member)
    }

    fn statement(title: &str) -> (i32, Vec<u8>) {
        let (kind, bytes) =
            accord_core::body::encode(&pb::publish_request::Body::Statement(pb::Statement {
                title: title.into(),
                text: format!("The text of {title}."),
                cosigners: vec![],
            }));
        (kind as i32, bytes)
    }

    /// A reader may hold a snapshot as long as it likes: the writer publishes past
    /// it (with the state behind a lock, the writer waited for every reader).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_snapshot_does_not_hold_up_the_writer() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let member = Identity::from_seed([7; 32]);
        let charter = charter(&member);
        let store = Store::open(dir.path(), charter.id(), 1 << 22).expect("store opens");
        let signed = SignedRecord::load(dir.path()).expect("no record yet");
        let (ledger, _writer) = Ledger::start(store, State::new(charter), vec![member], signed);
        let held = ledger.state();
        for n in 0..3 {
            let (kind, body) = statement(&format!("statement {n}"));
            tokio::time::timeout(Duration::from_secs(10), ledger.publish(0, kind, body))
                .await
                .expect("the publish completes while a reader holds a snapshot")
                .expect("the publish is accepted");
        }
        // The held snapshot is unchanged; a new one sees every publish.
        assert_eq!(held.entry_count(), 0);
        assert_eq!(held.version, 0);
        let now = ledger.state();
        assert_eq!(now.entry_count(), 3);
        assert_eq!(now.version, *ledger.changes().borrow());
        // The digest is of a snapshot at least as new as the call.
        let (digested, digest) = ledger.digest().await.expect("digest computed");
        assert_eq!(digested.entry_count(), 3);
        assert_eq!(digest, now.digest());
        assert_ne!(digest, held.digest());
        drop(held);
    }

    /// A peer holding more of a home identity's log makes publishing wait (this
    /// node was restored from a backup), but not past a fork: nothing from the
    /// fork's seq on is ever accepted, so what the peer holds there is not "behind".
    /// (CI saw a frozen organisation's publish answered "behind its own log" when
    /// the proof arrived before the fork's first side.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forked_home_log_is_not_behind_a_peer_past_the_fork() {
        use prost::Message;
        let dir = tempfile::tempdir().expect("temporary folder");
        let member = Identity::from_seed([7; 32]);
        let key = member.public_id();
        let charter = charter(&member);
        let store = Store::open(dir.path(), charter.id(), 1 << 22).expect("store opens");
        let signed = SignedRecord::load(dir.path()).expect("no record yet");
        let (ledger, _writer) = Ledger::start(
            store,
            State::new(charter.clone()),
            vec![Identity::from_seed([7; 32])],
            signed,
        );
        for n in 0..2 {
            let (kind, body) = statement(&format!("statement {n}"));
            ledger.publish(0, kind, body).await.expect("published");
        }
        ledger.note_peer_heads("peer", [(&key, 3)]);
        let behind = ledger
            .behind_own_log(&key)
            .map(|(theirs, _, ours)| (theirs, ours));
        assert_eq!(behind, Some((3, 2)));
        // The key leaked: two entries at seq 3, neither held here.
        let head = ledger.state().head(&key);
        let mut sides: Vec<(EntryId, Vec<u8>)> = ["one", "two"]
            .map(|title| {
                let (kind, body) = statement(title);
                let signed =
                    entry::sign(&member, charter.id(), head.as_ref(), now_ms(), kind, body);
                let bytes = signed.encode_to_vec();
                let id = entry::decode(signed, 1 << 16).expect("decodes").id();
                (id, bytes)
            })
            .into();
        sides.sort();
        let proof = ForkProof {
            author: key,
            seq: 3,
            first: sides[0].1.clone(),
            second: sides[1].1.clone(),
        };
        let report = ledger.record_forks(vec![proof]).await.expect("recorded");
        assert_eq!(report.forks, 1);
        assert!(ledger.state().frozen().any(|f| f.author == key));
        assert_eq!(ledger.behind_own_log(&key), None);
    }

    /// A peer's batch may hold the proposal that names an organisation and that
    /// organisation's first entry: both are taken at once (before, the entry was
    /// refused as by an unknown author until offered again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_of_an_organisation_proposed_in_the_same_batch_is_taken() {
        use prost::Message;
        let dir = tempfile::tempdir().expect("temporary folder");
        let member = Identity::from_seed([7; 32]);
        let newcomer = Identity::from_seed([8; 32]);
        let charter = charter(&member);
        let store = Store::open(dir.path(), charter.id(), 1 << 22).expect("store opens");
        let signed = SignedRecord::load(dir.path()).expect("no record yet");
        let (ledger, _writer) = Ledger::start(store, State::new(charter.clone()), vec![], signed);
        let now = now_ms();
        let proposal = pb::Proposal {
            roster_version: 0,
            change: Some(pb::proposal::Change::Admit(pb::Admit {
                name: "Beta".into(),
                key: newcomer.public_id().to_vec(),
                role: pb::Role::Member as i32,
                ..Default::default()
            })),
            rationale: String::new(),
        };
        let (kind, body) = statement("from the newcomer");
        let batch = [
            entry::sign(
                &member,
                charter.id(),
                None,
                now,
                pb::EntryKind::Proposal as i32,
                proposal.encode_to_vec(),
            ),
            entry::sign(&newcomer, charter.id(), None, now, kind, body),
        ];
        let decoded: Vec<DecodedEntry> = batch
            .into_iter()
            .map(|s| entry::decode(s, 1 << 16).expect("decodes"))
            .collect();
        let checked = entry::verify_batch(&decoded).expect("signatures verify");
        let report = ledger.ingest(decoded, checked).await.expect("ingested");
        assert_eq!(report.accepted, 2, "refused: {:?}", report.refused);
        assert_eq!(ledger.state().entry_count(), 2);
    }
}
