//! Pulling from peers: one task per configured peer.
//!
//! A session connects, sends this node's heads and frozen authors, and feeds every
//! batch the peer streams back into the ledger: fork proofs are verified and
//! recorded; entries are decoded, their signatures verified as a batch off the async
//! threads, and handed to the writer, which applies each author's entries in order.
//! An entry that does not fit (a gap) ends the session at once and the next one
//! pulls again from the new heads: nothing is dropped silently.
//!
//! The live part of the stream is lazy (`federation.rs`): the peer sends in full only
//! what it was first to hold, and notes of the heads it relays. A noted author this
//! node still lacks after the pull grace ([`Tuning::pull_grace`], longer while
//! pushes arrive late: [`Pulls::grace`]) is pulled from that peer by heads
//! (a `Sync` without `follow`, restricted to those authors); one session of the
//! node pulls a given author at a time ([`Pulls`]).
//!
//! Every `anti_entropy` interval the session also asks the peer for its heads (a
//! few bytes per author). If this node still lacks entries the peer already held at
//! the previous check, the live stream has missed something, and the session
//! starts over; entries the peer received since are on their way.
//! Sessions that fail are retried with exponential backoff and jitter.
//!
//! What a peer names cannot grow this node's memory without bound. The maps kept
//! per author ([`Pulls`], a session's notes and pulls) take only authors the state
//! knows (the charter's keys and those proposals name: no other author's entry is
//! taken here), so they are bounded by the roster's history, not by what peers
//! claim; notes that can no longer give a lateness sample are dropped; and the
//! authors blocked from one peer are capped ([`MAX_BLOCKED`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_core::entry::{self, DecodedEntry, Logs};
use accord_core::pb::federation_client::FederationClient;
use accord_core::state::ForkProof;
use accord_core::{EntryError, PublicId, State, pb};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use crate::federation::{behind, heads_from_pb};
use crate::ledger::Ledger;
use crate::tls::{self, TlsIdentity};

/// A peer as the config names it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    /// `https://host:port`.
    pub address: String,
    /// SHA-256 of the peer's TLS certificate.
    pub fingerprint: crate::tls::Fingerprint,
}

/// What an operator sees of one peer.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub address: String,
    pub connected: bool,
    /// Unix milliseconds of the last message from the peer.
    pub last_contact_ms: Option<i64>,
    /// Entries the peer holds that this node lacks, at the last heads check.
    pub behind: u64,
    /// Entries the peer sent, copies of ones already held included.
    pub received: u64,
    /// Of those, entries new to this node, stored.
    pub accepted: u64,
    pub refused: u64,
    /// Authors announced in notes: heads the peer holds of entries it relayed
    /// rather than sent (this node follows it lazily).
    pub notes: u64,
    /// Pulls by heads of noted entries that no other peer brought within the grace.
    pub pulls: u64,
    /// Authors this node has asked the peer to forward in full (a graft), having
    /// pulled them from it again and again: no other peer brings them first.
    pub grafted: Vec<accord_core::PublicId>,
    pub last_error: Option<String>,
    /// Authors whose entries from this peer this node does not take for now: one
    /// entry was refused (or held for its time), so its later entries cannot fit.
    /// The rest of the peer's authors go on replicating.
    pub blocked: BTreeMap<accord_core::PublicId, Blocked>,
}

/// Why one author's entries from a peer are not taken for now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Blocked {
    /// The entry refused or held.
    pub seq: u64,
    pub reason: String,
    /// For an entry stamped ahead of this node's clock: the Unix milliseconds from
    /// which it is within the allowed skew; the peer is pulled from again then.
    pub held_until_ms: Option<i64>,
    /// For an entry refused because its author (or the role its kind needs) is not
    /// known here yet: the author's roles as known then. Once a governance entry
    /// changes them (the proposal naming the author arrived), it is pulled again.
    #[serde(skip)]
    pub known_then: Option<Option<accord_core::roster::RoleSet>>,
}

impl PeerStatus {
    /// Entries held for their time.
    pub fn held(&self) -> u64 {
        self.blocked
            .values()
            .filter(|b| b.held_until_ms.is_some())
            .count() as u64
    }
}

/// The status of every peer, shared with the API.
pub type PeerStates = Arc<Mutex<BTreeMap<String, PeerStatus>>>;

/// How replication behaves.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub anti_entropy: Duration,
    pub connect_timeout: Duration,
    pub max_backoff: Duration,
    /// Deadline of each unary call to a peer, and of the answer that opens a pull.
    pub rpc_deadline: Duration,
    /// How long an entry a peer noted (relayed, not sent) may take to arrive from
    /// another peer before this node pulls it from the one that noted it. In a
    /// full mesh the entry's first holder pushes it to everyone at once, so it is
    /// almost always there first; the grace keeps the pull for when it is not (a
    /// node not connected to the author's home, a link down). The least grace:
    /// while pushes arrive late, the node waits longer ([`Pulls::grace`]).
    pub pull_grace: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            anti_entropy: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(10),
            rpc_deadline: Duration::from_secs(10),
            pull_grace: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("{0}")]
    Ledger(String),
    #[error("peer sent {0} invalid entries or proofs")]
    Misbehaving(u64),
    #[error(
        "peer sent entries of more than {MAX_BLOCKED} authors this node does not take; \
         backing off"
    )]
    TooManyBlocked,
}

/// Most authors blocked from one peer ([`PeerStatus::blocked`]). An honest peer
/// holds only entries of authors it knows, so this node blocks at most the authors
/// whose admission has not reached it yet, those whose entries are held for their
/// time, and those whose entries it refuses: a few, in an alliance of tens or
/// hundreds of organisations. A peer past this is sending entries of authors of its
/// own making (keys it made up and signed with), and its session ends.
pub const MAX_BLOCKED: usize = 1024;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn update(states: &PeerStates, name: &str, f: impl FnOnce(&mut PeerStatus)) {
    let mut states = states.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(status) = states.get_mut(name) {
        f(status);
    }
}

/// Noted authors being pulled, shared by every peer session of a node: when every
/// peer notes the same entry, one session pulls it and the others wait for it. It
/// also keeps the node's pull grace ([`Pulls::grace`]), which follows how late the
/// first holders' pushes arrive.
#[derive(Clone, Default)]
pub struct Pulls {
    claims: Arc<Mutex<HashMap<PublicId, Instant>>>,
    lateness: Arc<Mutex<Lateness>>,
    /// When an entry of each author last came pushed by its first holder (on any
    /// session's live stream, grafts aside): an author pushed since its pulls
    /// began has a path here, and is not grafted.
    pushed: Arc<Mutex<HashMap<PublicId, Instant>>>,
}

/// How late entries pushed by their first holders arrive after a peer noted them.
///
/// A note that reaches this node before the entry's push means the push is late: a
/// peer received the entry, noted it (within its note interval) and the note came
/// first. When the push then arrives on a live stream, the time since the first
/// note is a sample. The grace must outlast such delays, or the node pulls what is
/// already on its way (on a saturated machine, 50 nodes on two cores, pushes queued
/// for seconds and each node received every entry three times). Arrivals by a pull
/// give no sample (they come after the grace by construction, and would only raise
/// it further); they close the note.
#[derive(Default)]
struct Lateness {
    /// Per author: the seq first noted beyond this node's head, and when.
    noted: HashMap<PublicId, (u64, Instant)>,
    /// Recent samples: when taken, and the delay.
    samples: std::collections::VecDeque<(Instant, Duration)>,
}

/// How long a sample of lateness counts.
const LATENESS_WINDOW: Duration = Duration::from_secs(30);
/// Most samples kept.
const LATENESS_SAMPLES: usize = 256;
/// The longest pull grace, whatever the samples: an entry that no push brings is
/// still pulled within this (and anti-entropy finds it in any case).
pub const MAX_PULL_GRACE: Duration = Duration::from_secs(5);

impl Pulls {
    /// Claims the pull of `author` until `until`, unless another session holds an
    /// unexpired claim.
    fn claim(&self, author: &PublicId, now: Instant, until: Instant) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        match claims.get(author) {
            Some(held) if *held > now => false,
            _ => {
                claims.insert(*author, until);
                true
            }
        }
    }

    fn release(&self, authors: &[PublicId]) {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for author in authors {
            claims.remove(author);
        }
    }

    /// A peer noted `author` (an author the state knows) at `seq`, beyond this
    /// node's head, at `now`.
    fn noted(&self, author: PublicId, seq: u64, now: Instant) {
        let mut lateness = self.lateness.lock().unwrap_or_else(|p| p.into_inner());
        lateness.noted.entry(author).or_insert((seq, now));
    }

    /// Entries (author, seq) arrived at `now`, `via` a live stream, a catch-up or
    /// a pull. One lock per batch (two for pushes); nothing more to do while no
    /// note is open. Pushes are recorded for the authors `known` says the state
    /// knows only: a peer may push entries of any number of made-up authors.
    fn arrived(
        &self,
        entries: impl IntoIterator<Item = (PublicId, u64)> + Clone,
        known: impl Fn(&PublicId) -> bool,
        via: Via,
        now: Instant,
    ) {
        if via == Via::Push {
            let mut pushed = self.pushed.lock().unwrap_or_else(|p| p.into_inner());
            for (author, _) in entries.clone() {
                if known(&author) {
                    pushed.insert(author, now);
                }
            }
        }
        let live = via.live();
        let mut lateness = self.lateness.lock().unwrap_or_else(|p| p.into_inner());
        if lateness.noted.is_empty() {
            return;
        }
        for (author, seq) in entries {
            let Some((noted_seq, at)) = lateness.noted.get(&author).copied() else {
                continue;
            };
            if seq < noted_seq {
                continue;
            }
            lateness.noted.remove(&author);
            let late = now.saturating_duration_since(at);
            if live && late < LATENESS_WINDOW {
                if lateness.samples.len() == LATENESS_SAMPLES {
                    lateness.samples.pop_front();
                }
                lateness.samples.push_back((now, late));
            }
        }
    }

    /// Whether an entry of `author` came pushed by its first holder after `since`.
    fn pushed_since(&self, author: &PublicId, since: Instant) -> bool {
        self.pushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(author)
            .is_some_and(|at| *at > since)
    }

    /// The pull grace at `now`: one and a half times the 90th percentile of the
    /// lateness samples of the last [`LATENESS_WINDOW`], at least `floor` (the
    /// configured grace) and at most [`MAX_PULL_GRACE`] (or `floor`, if that is
    /// larger). With no recent sample
    /// (pushes arrive before notes, as in a healthy mesh), `floor`.
    pub fn grace(&self, floor: Duration, now: Instant) -> Duration {
        let mut lateness = self.lateness.lock().unwrap_or_else(|p| p.into_inner());
        // A note older than the window gives no sample when its entry comes: an
        // entry that never comes (a peer's head no one else reaches) must not keep
        // its note for ever.
        lateness
            .noted
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < LATENESS_WINDOW);
        while lateness
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > LATENESS_WINDOW)
        {
            lateness.samples.pop_front();
        }
        let mut recent: Vec<Duration> = lateness.samples.iter().map(|(_, d)| *d).collect();
        if recent.is_empty() {
            return floor;
        }
        recent.sort_unstable();
        let p90 = recent[(recent.len() * 9).div_ceil(10) - 1];
        (p90 * 3 / 2).clamp(floor, MAX_PULL_GRACE.max(floor))
    }
}

/// Claims released when dropped: a session that ends mid-pull (its peer gone, the
/// node stopping) does not leave the other sessions waiting for the claims to
/// expire.
struct Claimed<'a> {
    pulls: &'a Pulls,
    authors: Vec<PublicId>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.pulls.release(&self.authors);
    }
}

/// An author a peer noted beyond this node's head, not yet here.
#[derive(Debug, Clone, Copy)]
struct Noted {
    /// The peer's head.
    seq: u64,
    /// When to pull it, if it has not arrived from elsewhere by then.
    due: Instant,
    /// Pulls made for it so far.
    tries: u32,
}

/// Pulls for one noted author before leaving it to the heads checks.
const MAX_PULL_TRIES: u32 = 3;

/// Pulls of one author from one peer within a session, with no entry of that
/// author pushed to this node by its first holder in between, after which this
/// node asks the peer to forward that author's entries in full, live (a graft):
/// the peer is then its path to that author, and waiting the pull grace at every
/// entry only makes the entries late. Where the first holder's pushes arrive,
/// however late (a saturated mesh), there is no graft: it would double them.
const GRAFT_AFTER: u32 = 3;

/// How long a graft stands. It is then dropped, and made again if the pulls
/// recur: the mesh may have healed, and a graft no longer needed would bring
/// each of the author's entries twice.
const GRAFT_FOR: Duration = Duration::from_secs(300);

/// Most authors grafted from one peer.
const MAX_GRAFTED: usize = 64;

/// A graft: a second `Sync` from the peer, lazy and following, restricted to
/// `authors` (`only`) with all of them in `forward`, so the peer sends their
/// entries in full as it gets them. Its catch-up brings what this node still
/// lacks of them.
struct Graft {
    authors: BTreeSet<PublicId>,
    stream: tonic::Streaming<pb::SyncBatch>,
    until: Instant,
}

/// The next message of the graft, if there is one; never completes without one.
async fn graft_message(graft: &mut Option<Graft>) -> Result<Option<pb::SyncBatch>, tonic::Status> {
    match graft {
        Some(graft) => graft.stream.message().await,
        None => std::future::pending().await,
    }
}

/// This node's heads of `authors` (those it holds entries of), for a `Sync`
/// restricted to them.
fn heads_of<'a>(state: &State, authors: impl Iterator<Item = &'a PublicId>) -> Vec<pb::AuthorHead> {
    authors
        .filter_map(|author| {
            let head = state.head(author)?;
            Some(pb::AuthorHead {
                author: author.to_vec(),
                seq: head.seq,
                id: head.id.to_vec(),
            })
        })
        .collect()
}

/// Opens a graft of `authors` from the peer, within the RPC deadline.
async fn open_graft(
    ledger: &Ledger,
    tuning: Tuning,
    client: &mut FederationClient<Channel>,
    authors: BTreeSet<PublicId>,
) -> Result<Graft, SessionError> {
    debug_assert!(!authors.is_empty(), "a graft names its authors");
    let request = {
        let state = ledger.state();
        pb::SyncRequest {
            alliance: state.charter().id().to_vec(),
            heads: heads_of(&state, authors.iter()),
            follow: true,
            lazy: true,
            forward: authors.iter().map(|a| a.to_vec()).collect(),
            only: authors.iter().map(|a| a.to_vec()).collect(),
            ..Default::default()
        }
    };
    let stream = tokio::time::timeout(tuning.rpc_deadline, client.sync(request))
        .await
        .map_err(|_| not_answering(tuning))??
        .into_inner();
    Ok(Graft {
        authors,
        stream,
        until: Instant::now() + GRAFT_FOR,
    })
}

/// How often a peer that stays unreachable is logged again after its first failure.
pub const REPEAT_FAILURE_LOG: Duration = Duration::from_secs(300);

/// Which failures of a peer's sessions to log: the first of a run of failures, then
/// one every `every` (saying how many were not logged), so a peer that stays down
/// fills the log with one line every few minutes, not one every retry (10 s).
#[derive(Debug)]
struct FailureLog {
    every: Duration,
    /// When the current run of failures was last logged, and failures since.
    logged: Option<(Instant, u64)>,
}

impl FailureLog {
    fn new(every: Duration) -> Self {
        Self {
            every,
            logged: None,
        }
    }

    /// A failure at `now`: Some(failures not logged since the last line) if this one
    /// is to be logged.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        match &mut self.logged {
            Some((at, quiet)) if now.duration_since(*at) < self.every => {
                *quiet += 1;
                None
            }
            Some((at, quiet)) => {
                let skipped = *quiet;
                *at = now;
                *quiet = 0;
                Some(skipped)
            }
            None => {
                self.logged = Some((now, 0));
                Some(0)
            }
        }
    }

    /// A session got through: the next failure starts a new run. True if a run of
    /// failures ended.
    fn recovered(&mut self) -> bool {
        self.logged.take().is_some()
    }
}

/// Pulls from `peer` until `stopping` turns true.
pub async fn run_peer(
    peer: Peer,
    identity: TlsIdentity,
    ledger: Ledger,
    states: PeerStates,
    tuning: Tuning,
    pulls: Pulls,
    mut stopping: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failures = FailureLog::new(REPEAT_FAILURE_LOG);
    loop {
        if *stopping.borrow() {
            return;
        }
        // Shutdown never waits on a peer: a session stuck on one ends with the node.
        let result = tokio::select! {
            result = session(&peer, &identity, &ledger, &states, tuning, &pulls, stopping.clone()) => result,
            () = stopped(&mut stopping) => return,
        };
        // Not connected, and why, in one update: a status read in between must not
        // show a peer down with no reason.
        let error = result.as_ref().err().map(|e| explain(e, &peer, &identity));
        let mut was_connected = false;
        update(&states, &peer.name, |s| {
            was_connected = s.connected;
            s.connected = false;
            // A graft lives in its session.
            s.grafted.clear();
            if let Some(e) = &error {
                s.last_error = Some(e.clone());
            }
        });
        if was_connected {
            failures.recovered();
        }
        match error {
            None => {
                backoff = Duration::from_millis(100);
                failures.recovered();
                tracing::debug!(peer = %peer.name, "sync session ended; pulling again");
            }
            Some(e) => {
                match failures.failed(Instant::now()) {
                    Some(0) => tracing::warn!(peer = %peer.name, "replication: {e}"),
                    Some(skipped) => tracing::warn!(
                        peer = %peer.name,
                        "replication: {e} (still failing: {skipped} more attempts since the \
                         last line; retrying every {}s)",
                        tuning.max_backoff.as_secs()
                    ),
                    None => tracing::debug!(peer = %peer.name, "replication: {e}"),
                }
                backoff = (backoff * 2).min(tuning.max_backoff);
            }
        }
        // Full jitter: somewhere between half the backoff and all of it.
        let jitter = 0.5 + 0.5 * random_unit();
        let wait = backoff.mul_f64(jitter);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stopping) => return,
        }
    }
}

/// Completes once the node is stopping.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// What a failed session's error means for the operator: a certificate that is not
/// the pinned one, or this node's certificate refused by the peer, said with the
/// fingerprint and the config entry to fix; anything else as it is.
fn explain(error: &SessionError, peer: &Peer, identity: &TlsIdentity) -> String {
    let SessionError::Status(status) = error else {
        return error.to_string();
    };
    if let Some(not_pinned) = tls::not_pinned_in(status) {
        return format!(
            "the node at {} presented TLS certificate {}, which is not cert_sha256 of [[peers]] {:?} in node.toml ({}): if the peer's operator changed its certificate, pin the new fingerprint",
            peer.address,
            hex::encode(not_pinned.presented),
            peer.name,
            hex::encode(peer.fingerprint),
        );
    }
    if tls::refused_by_peer(status) || tls::unpinned_by_peer(status) {
        return format!(
            "the node at {} refused this node's TLS certificate {}: its operator must pin that fingerprint in a [[peers]] entry of its node.toml",
            peer.address,
            hex::encode(identity.fingerprint()),
        );
    }
    error.to_string()
}

fn connect(peer: &Peer, identity: &TlsIdentity, tuning: Tuning) -> Result<Channel, SessionError> {
    let config = tls::client_config(peer.fingerprint, Some(identity))
        .map_err(|e| SessionError::Ledger(e.to_string()))?;
    tls::channel(&peer.address, config, tuning.connect_timeout).map_err(SessionError::Ledger)
}

async fn session(
    peer: &Peer,
    identity: &TlsIdentity,
    ledger: &Ledger,
    states: &PeerStates,
    tuning: Tuning,
    pulls: &Pulls,
    stopping: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let channel = connect(peer, identity, tuning)?;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(crate::federation::PEER_MAX_MESSAGE)
        .max_encoding_message_size(16 << 20);
    // The peer's heads first: if it holds more of a home identity's log than this
    // node (restored from a backup), publishing as it waits until this node catches up.
    let sent = now_ms();
    let heads = get_heads(&mut client, tuning).await?;
    if let Some(offset) = clock_offset(&heads, sent, now_ms()) {
        ledger.note_peer_clock(&peer.name, offset);
    }
    let theirs = heads_from_pb(&heads.heads)?;
    ledger.note_peer_heads(&peer.name, theirs.iter().map(|(a, h)| (a, h.0)));
    let request = {
        let state = ledger.state();
        pb::SyncRequest {
            alliance: state.charter().id().to_vec(),
            heads: crate::federation::heads_to_pb(&state),
            frozen: state.forks().map(|f| f.author.to_vec()).collect(),
            follow: true,
            // Live, only what the peer was first to hold; notes of the rest.
            lazy: true,
            ..Default::default()
        }
    };
    let stream = tokio::time::timeout(tuning.rpc_deadline, client.sync(request))
        .await
        .map_err(|_| not_answering(tuning))??
        .into_inner();
    tracing::info!(peer = %peer.name, "replicating");
    update(states, &peer.name, |s| {
        s.connected = true;
        s.last_contact_ms = Some(now_ms());
        s.last_error = None;
    });
    // Two stages: the reader verifies batches on the blocking pool (several at once,
    // kept in order), the ingester hands them to the writer one after another.
    let (tx, rx) = mpsc::channel(VERIFY_AHEAD);
    let ingest = ingest_loop(peer, ledger, states, rx);
    tokio::pin!(ingest);
    let read = read_loop(
        peer, ledger, states, tuning, pulls, stopping, client, stream, tx,
    );
    tokio::select! {
        result = &mut ingest => result,
        result = read => {
            result?;
            ingest.await
        }
    }
}

/// Asks the peer for its heads, within the RPC deadline.
async fn get_heads(
    client: &mut FederationClient<Channel>,
    tuning: Tuning,
) -> Result<pb::Heads, SessionError> {
    let mut request = tonic::Request::new(pb::GetHeadsRequest {});
    request.set_timeout(tuning.rpc_deadline);
    match tokio::time::timeout(tuning.rpc_deadline, client.get_heads(request)).await {
        Ok(answer) => Ok(answer?.into_inner()),
        Err(_) => Err(not_answering(tuning)),
    }
}

/// The peer's clock against this node's from a heads answer: the peer's time minus
/// the middle of the call (positive: the peer's clock is ahead of this one).
fn clock_offset(heads: &pb::Heads, sent_ms: i64, received_ms: i64) -> Option<i64> {
    (heads.now_ms != 0).then(|| heads.now_ms - (sent_ms + received_ms) / 2)
}

fn not_answering(tuning: Tuning) -> SessionError {
    SessionError::Status(tonic::Status::deadline_exceeded(format!(
        "the peer did not answer within {}s",
        tuning.rpc_deadline.as_secs()
    )))
}

/// Batches verified ahead of the writer, per peer.
const VERIFY_AHEAD: usize = 4;

type Pending = tokio::task::JoinHandle<Verified>;

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    peer: &Peer,
    ledger: &Ledger,
    states: &PeerStates,
    tuning: Tuning,
    pulls: &Pulls,
    mut stopping: watch::Receiver<bool>,
    mut client: FederationClient<Channel>,
    mut stream: tonic::Streaming<pb::SyncBatch>,
    tx: mpsc::Sender<Pending>,
) -> Result<(), SessionError> {
    let mut ticker = tokio::time::interval(tuning.anti_entropy);
    ticker.tick().await;
    // The peer's heads at the last check (as counted): what it held then and this
    // node still lacks a whole interval later was missed by the live stream.
    let mut previous: Option<BTreeMap<PublicId, crate::federation::PeerHead>> = None;
    // Past the catch-up: the first note marks the live part (the catch-up carries
    // none). Entries before it came late by design, so they give no lateness sample.
    let mut live = false;
    // Authors the peer noted beyond this node's heads, until they arrive.
    let mut noted: BTreeMap<PublicId, Noted> = BTreeMap::new();
    // Pulls of each author from this peer in this session with no push of it
    // between them (how many, since when), until it is grafted.
    let mut pulled: BTreeMap<PublicId, (u32, Instant)> = BTreeMap::new();
    let mut graft: Option<Graft> = None;
    let set_grafted = |graft: &Option<Graft>| {
        let authors = graft
            .as_ref()
            .map(|g| g.authors.iter().copied().collect())
            .unwrap_or_default();
        update(states, &peer.name, |s| s.grafted = authors);
    };
    loop {
        let next_due = noted.values().map(|n| n.due).min();
        tokio::select! {
            message = stream.message() => {
                let Some(mut batch) = message? else { return Ok(()) };
                ledger.metrics().peer_bytes(&peer.name, batch.encoded_len() as u64);
                update(states, &peer.name, |s| s.last_contact_ms = Some(now_ms()));
                if !batch.notes.is_empty() {
                    live = true;
                    let notes = std::mem::take(&mut batch.notes);
                    take_notes(peer, ledger, states, tuning, pulls, &notes, &mut noted)?;
                }
                if batch.entries.is_empty() && batch.forks.is_empty() {
                    continue;
                }
                let via = if live { Via::Push } else { Via::CatchUp };
                if !send_to_verify(ledger, &tx, batch, pulls, via).await {
                    return Ok(());
                }
            }
            message = graft_message(&mut graft) => {
                // A graft that fails ends alone: the session goes on by notes and
                // pulls, and grafts again if it must.
                let batch = match message {
                    Ok(Some(batch)) => batch,
                    ended => {
                        if let Err(e) = ended {
                            tracing::debug!(peer = %peer.name, "graft ended: {e}");
                        }
                        graft = None;
                        set_grafted(&graft);
                        continue;
                    }
                };
                ledger.metrics().peer_bytes(&peer.name, batch.encoded_len() as u64);
                update(states, &peer.name, |s| s.last_contact_ms = Some(now_ms()));
                if (!batch.entries.is_empty() || !batch.forks.is_empty())
                    && !send_to_verify(ledger, &tx, batch, pulls, Via::Graft).await
                {
                    return Ok(());
                }
            }
            () = sleep_until(next_due) => {
                let Some(authors) = pull_noted(peer, ledger, states, tuning, pulls, &mut client, &tx, &mut noted).await? else {
                    return Ok(());
                };
                let now = Instant::now();
                for author in authors {
                    let (count, since) = pulled.entry(author).or_insert((0, now));
                    if pulls.pushed_since(&author, *since) {
                        // Its first holder's pushes reach this node (late): pulls
                        // are what the grace is for, not a missing path.
                        (*count, *since) = (0, now);
                    }
                    *count += 1;
                }
                let due: Vec<PublicId> = pulled
                    .iter()
                    .filter(|(author, (count, since))| {
                        *count >= GRAFT_AFTER && !pulls.pushed_since(author, *since)
                    })
                    .map(|(author, _)| *author)
                    .collect();
                let mut authors = graft.as_ref().map(|g| g.authors.clone()).unwrap_or_default();
                for author in due {
                    pulled.remove(&author);
                    if authors.len() < MAX_GRAFTED {
                        authors.insert(author);
                    }
                }
                // Only a graft with authors: an empty `only` would ask for every
                // author, from empty heads (every entry the peer holds, again).
                let current = graft.as_ref().map(|g| &g.authors);
                if !authors.is_empty() && current != Some(&authors) {
                    // The new graft replaces the old: dropping a stream ends it at
                    // the peer.
                    graft = None;
                    match open_graft(ledger, tuning, &mut client, authors).await {
                        Ok(opened) => {
                            tracing::info!(
                                peer = %peer.name,
                                authors = opened.authors.len(),
                                "pulled the same authors from this peer again and again; asked it to forward them"
                            );
                            graft = Some(opened);
                        }
                        Err(e) => tracing::debug!(peer = %peer.name, "graft refused: {e:?}"),
                    }
                    set_grafted(&graft);
                }
            }
            _ = ticker.tick() => {
                if graft.as_ref().is_some_and(|g| g.until <= Instant::now()) {
                    graft = None;
                    set_grafted(&graft);
                }
                let sent = now_ms();
                let heads = get_heads(&mut client, tuning).await?;
                if let Some(offset) = clock_offset(&heads, sent, now_ms()) {
                    ledger.note_peer_clock(&peer.name, offset);
                }
                let theirs = heads_from_pb(&heads.heads)?;
                ledger.note_peer_heads(&peer.name, theirs.iter().map(|(a, h)| (a, h.0)));
                let now = now_ms();
                let mut due = false;
                let mut missed = 0;
                // The state before the peers' lock, in the order GetStatus takes
                // them: the other order could deadlock behind a waiting writer.
                let state = ledger.state();
                update(states, &peer.name, |s| {
                    // Held entries whose time has come are pulled again; an author
                    // refused here but since received from elsewhere is taken again.
                    s.blocked.retain(|author, b| match b.held_until_ms {
                        Some(until) if until <= now => {
                            due = true;
                            false
                        }
                        Some(_) => true,
                        None => {
                            state.head(author).is_none_or(|h| h.seq < b.seq)
                                && b.known_then
                                    .is_none_or(|then| state.known_roles(author) == then)
                        }
                    });
                    let counted: BTreeMap<_, _> = theirs
                        .iter()
                        .map(|(author, head)| match s.blocked.get(author) {
                            Some(b) => (*author, (head.0.min(b.seq - 1), None)),
                            None => (*author, *head),
                        })
                        .collect();
                    s.behind = behind(&*state, &counted);
                    s.last_contact_ms = Some(now);
                    if let Some(before) = &previous {
                        missed = behind(&*state, &held_since(before, &counted));
                    }
                    previous = Some(counted);
                });
                drop(state);
                if due {
                    tracing::info!(peer = %peer.name, "an entry held for its time is due; pulling again");
                    return Ok(());
                }
                // Entries still on their way (a busy alliance always has some) are
                // not missed; entries the peer already held at the last check are.
                if missed > 0 {
                    tracing::info!(peer = %peer.name, missed, "live stream missed entries; pulling again");
                    return Ok(());
                }
            }
            () = stopped(&mut stopping) => return Ok(()),
            () = tx.closed() => return Ok(()),
        }
    }
}

/// Of the peer's heads `now`, the part it already held at the last check
/// (`before`): each author's head capped at its head then. Authors new since are
/// left out.
fn held_since(
    before: &BTreeMap<PublicId, crate::federation::PeerHead>,
    now: &BTreeMap<PublicId, crate::federation::PeerHead>,
) -> BTreeMap<PublicId, crate::federation::PeerHead> {
    now.iter()
        .filter_map(|(author, head)| {
            let then = before.get(author)?;
            Some((*author, if head.0 <= then.0 { *head } else { *then }))
        })
        .collect()
}

/// Completes at `due`, or never without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// How a batch came from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The part of the session's `Sync` before its first note.
    CatchUp,
    /// The live part of the session's `Sync`: entries the peer was first to hold
    /// (and the ones of their authors it only noted before, read from its store).
    Push,
    /// A graft's stream.
    Graft,
    /// A pull by heads of noted authors.
    Pull,
}

impl Via {
    fn live(self) -> bool {
        matches!(self, Via::Push | Via::Graft)
    }
}

/// Starts verifying a batch off the async threads and queues it for the writer, in
/// order. False when the ingester is gone.
async fn send_to_verify(
    ledger: &Ledger,
    tx: &mpsc::Sender<Pending>,
    batch: pb::SyncBatch,
    pulls: &Pulls,
    via: Via,
) -> bool {
    let charter = charter(ledger);
    let held = ledger.clone();
    let pulls = pulls.clone();
    let pending = tokio::task::spawn_blocking(move || verify(&charter, &held, batch, &pulls, via));
    tx.send(pending).await.is_ok()
}

/// Records the authors a peer noted beyond this node's heads, to pull after the
/// grace unless they arrive from elsewhere first. Authors this node takes nothing
/// more of (frozen before the noted seq, or blocked from this peer) are left out.
fn take_notes(
    peer: &Peer,
    ledger: &Ledger,
    states: &PeerStates,
    tuning: Tuning,
    pulls: &Pulls,
    notes: &[pb::AuthorHead],
    noted: &mut BTreeMap<PublicId, Noted>,
) -> Result<(), SessionError> {
    let heads = heads_from_pb(notes)?;
    ledger.note_peer_heads(&peer.name, heads.iter().map(|(a, h)| (a, h.0)));
    let now = Instant::now();
    let due = now + pulls.grace(tuning.pull_grace, now);
    // The state before the peers' lock, the order GetStatus takes them in.
    let state = ledger.state();
    update(states, &peer.name, |s| {
        s.notes += heads.len() as u64;
        for (author, (seq, _)) in &heads {
            // Only authors the state knows: no entry of another is taken here (one
            // admitted since is found by the heads checks), and a peer may name any
            // number of them.
            if state.known_roles(author).is_none() {
                continue;
            }
            let have = state.head(author).map_or(0, |h| h.seq);
            let frozen = state
                .frozen_from(author)
                .is_some_and(|from| have + 1 >= from);
            if *seq <= have || frozen || s.blocked.contains_key(author) {
                continue;
            }
            pulls.noted(*author, *seq, now);
            noted
                .entry(*author)
                .and_modify(|n| n.seq = n.seq.max(*seq))
                .or_insert(Noted {
                    seq: *seq,
                    due,
                    tries: 0,
                });
        }
    });
    Ok(())
}

/// Pulls, from this peer, the noted authors whose grace is over and that have not
/// arrived from elsewhere, one session at a time per author ([`Pulls`]). The pull
/// is a `Sync` without `follow`, restricted to those authors, from this node's
/// heads; its batches go through the same verification and writer queue as the
/// live stream's, in order. Gives the authors pulled; None when the ingester is
/// gone.
#[allow(clippy::too_many_arguments)]
async fn pull_noted(
    peer: &Peer,
    ledger: &Ledger,
    states: &PeerStates,
    tuning: Tuning,
    pulls: &Pulls,
    client: &mut FederationClient<Channel>,
    tx: &mpsc::Sender<Pending>,
    noted: &mut BTreeMap<PublicId, Noted>,
) -> Result<Option<Vec<PublicId>>, SessionError> {
    let now = Instant::now();
    let grace = pulls.grace(tuning.pull_grace, now);
    let mut authors = Vec::new();
    let request = {
        let state = ledger.state();
        noted.retain(|author, n| {
            let here = state.head(author).map_or(0, |h| h.seq) >= n.seq;
            !here && (n.due > now || n.tries < MAX_PULL_TRIES)
        });
        for (author, n) in noted.iter_mut().filter(|(_, n)| n.due <= now) {
            if pulls.claim(author, now, now + tuning.rpc_deadline) {
                authors.push(*author);
                n.tries += 1;
            }
            n.due = now + grace;
        }
        if authors.is_empty() {
            return Ok(Some(authors));
        }
        pb::SyncRequest {
            alliance: state.charter().id().to_vec(),
            heads: heads_of(&state, authors.iter()),
            only: authors.iter().map(|a| a.to_vec()).collect(),
            ..Default::default()
        }
    };
    tracing::debug!(peer = %peer.name, authors = authors.len(), "pulling noted entries");
    let pulled = authors.clone();
    let _claimed = Claimed { pulls, authors };
    update(states, &peer.name, |s| s.pulls += 1);
    Ok(pull(peer, ledger, tuning, pulls, client, tx, request)
        .await?
        .then_some(pulled))
}

/// One `Sync` without `follow`, its batches queued for verification; bounded by
/// the RPC deadline. False when the ingester is gone.
async fn pull(
    peer: &Peer,
    ledger: &Ledger,
    tuning: Tuning,
    pulls: &Pulls,
    client: &mut FederationClient<Channel>,
    tx: &mpsc::Sender<Pending>,
    request: pb::SyncRequest,
) -> Result<bool, SessionError> {
    let pulling = async {
        let mut stream = client.sync(request).await?.into_inner();
        while let Some(batch) = stream.message().await? {
            ledger
                .metrics()
                .peer_bytes(&peer.name, batch.encoded_len() as u64);
            if !send_to_verify(ledger, tx, batch, pulls, Via::Pull).await {
                return Ok(false);
            }
        }
        Ok(true)
    };
    tokio::time::timeout(tuning.rpc_deadline, pulling)
        .await
        .map_err(|_| not_answering(tuning))?
}

/// Hands verified batches to the writer in order. Ends the session (`Ok`) when an
/// entry arrived ahead of a gap, so the next session pulls again from the heads.
async fn ingest_loop(
    peer: &Peer,
    ledger: &Ledger,
    states: &PeerStates,
    mut rx: mpsc::Receiver<Pending>,
) -> Result<(), SessionError> {
    while let Some(pending) = rx.recv().await {
        let verified = pending
            .await
            .map_err(|e| SessionError::Ledger(e.to_string()))?;
        if !store_verified(peer, ledger, states, verified).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// A batch after decoding and signature checks.
struct Verified {
    entries: Vec<DecodedEntry>,
    checked: Option<entry::SignatureChecked>,
    proofs: Vec<ForkProof>,
    received: u64,
    /// Entries or proofs that failed to decode or verify.
    refused: u64,
}

/// Decodes a batch, drops the entries this node already holds (same author, seq
/// and id: copies relayed by several peers) before any signature is checked, and
/// checks the rest's signatures (batched). CPU only.
fn verify(
    charter: &accord_core::Charter,
    ledger: &Ledger,
    batch: pb::SyncBatch,
    pulls: &Pulls,
    via: Via,
) -> Verified {
    let max = charter.rules().max_entry_bytes as usize;
    let mut refused = 0u64;
    let mut proofs = Vec::new();
    for proof in batch.forks {
        let bytes = |e: &Option<pb::SignedEntry>| e.as_ref().map(Message::encode_to_vec);
        let (Some(a), Some(b)) = (bytes(&proof.first), bytes(&proof.second)) else {
            refused += 1;
            continue;
        };
        match ForkProof::verify(charter, &a, &b) {
            Ok(proof) => proofs.push(proof),
            Err(e) => {
                refused += 1;
                tracing::warn!("refused a fork proof: {e}");
            }
        }
    }
    let received = batch.entries.len() as u64;
    let mut decoded: Vec<DecodedEntry> = Vec::with_capacity(batch.entries.len());
    for signed in batch.entries {
        match entry::decode(signed, max) {
            Ok(e) => decoded.push(e),
            Err(e) => {
                refused += 1;
                tracing::warn!("refused an entry: {e}");
            }
        }
    }
    {
        let state = ledger.state();
        pulls.arrived(
            decoded.iter().map(|e| (e.author(), e.seq())),
            |author| state.known_roles(author).is_some(),
            via,
            Instant::now(),
        );
        decoded.retain(|e| state.id_at(&e.author(), e.seq()) != Some(e.id()));
    }
    ledger
        .metrics()
        .verified(crate::metrics::Source::Peer, decoded.len() as u64);
    let (entries, checked, forged) = verified(decoded);
    if forged > 0 {
        tracing::warn!(forged, "refused entries whose signatures do not verify");
    }
    Verified {
        entries,
        checked,
        proofs,
        received,
        refused: refused + forged,
    }
}

/// Stores one verified batch. Returns false when the session should start over.
async fn store_verified(
    peer: &Peer,
    ledger: &Ledger,
    states: &PeerStates,
    verified: Verified,
) -> Result<bool, SessionError> {
    let refused = verified.refused;
    if !verified.proofs.is_empty() {
        ledger
            .record_forks(verified.proofs)
            .await
            .map_err(|e| SessionError::Ledger(e.to_string()))?;
    }
    let mut gap = false;
    let mut accepted = 0;
    let mut refused_here = 0;
    let mut blocked = BTreeMap::new();
    if let Some(checked) = verified.checked {
        let report = ledger
            .ingest(verified.entries, checked)
            .await
            .map_err(|e| SessionError::Ledger(e.to_string()))?;
        accepted = report.accepted as u64;
        let already: Vec<accord_core::PublicId> = {
            let states = states.lock().unwrap_or_else(|p| p.into_inner());
            states
                .get(&peer.name)
                .map(|s| s.blocked.keys().copied().collect())
                .unwrap_or_default()
        };
        for (author, seq, error) in &report.refused {
            let is_blocked = already.contains(author) || blocked.contains_key(author);
            match error {
                // Follows an entry of the same author refused or held here: expected.
                EntryError::SeqGap { .. } | EntryError::PrevMismatch { .. } if is_blocked => {}
                // Does not fit this node's log yet (or the author forked): pull again
                // from the heads, which finds the fork if there is one.
                EntryError::SeqGap { .. } | EntryError::PrevMismatch { .. } => gap = true,
                // A fork is recorded as a proof by the writer; a frozen log is expected.
                EntryError::Fork { .. } | EntryError::Frozen { .. } => {}
                // Ahead of this node's clock: held (the peer keeps it), and pulled
                // again once its time comes. Not misbehaviour: clocks differ.
                EntryError::FromTheFuture {
                    timestamp_ms,
                    skew_secs,
                } => {
                    tracing::info!(peer = %peer.name, %author, seq, "holding an entry until its time: {error}");
                    let until = timestamp_ms.saturating_sub(i64::from(*skew_secs) * 1000);
                    blocked.insert(
                        *author,
                        Blocked {
                            seq: *seq,
                            reason: error.to_string(),
                            held_until_ms: Some(until),
                            known_then: None,
                        },
                    );
                }
                // An author not known here yet, or a role it may hold not known yet:
                // the proposal naming it has not arrived. Taken again once it has.
                EntryError::NotAMember(_)
                | EntryError::NotAllowed { .. }
                | EntryError::NotASecretary(_)
                | EntryError::NotAMemberOrganisation(_) => {
                    tracing::info!(peer = %peer.name, %author, seq, "holding back an entry until its author's admission arrives: {error}");
                    blocked.insert(
                        *author,
                        Blocked {
                            seq: *seq,
                            reason: error.to_string(),
                            held_until_ms: None,
                            known_then: Some(ledger.state().known_roles(author)),
                        },
                    );
                }
                // Refused: this author's entries from this peer stop here; every
                // other author goes on.
                _ => {
                    refused_here += 1;
                    tracing::warn!(peer = %peer.name, %author, seq, "refused an entry; taking no more of this author from this peer: {error}");
                    blocked.insert(
                        *author,
                        Blocked {
                            seq: *seq,
                            reason: error.to_string(),
                            held_until_ms: None,
                            known_then: None,
                        },
                    );
                }
            }
        }
    }
    ledger.metrics().peer_batch(
        &peer.name,
        verified.received,
        accepted,
        refused + refused_here,
    );
    let mut overflow = false;
    update(states, &peer.name, |s| {
        s.received += verified.received;
        s.accepted += accepted;
        s.refused += refused + refused_here;
        for (author, b) in &blocked {
            if b.held_until_ms.is_none() {
                s.last_error = Some(format!("refused entry {author}/{}: {}", b.seq, b.reason));
            }
        }
        overflow = !block(&mut s.blocked, blocked);
    });
    if overflow {
        return Err(SessionError::TooManyBlocked);
    }
    if refused > 0 {
        // Entries that do not decode or whose signatures fail are no matter of
        // release or clock: the peer relays forgeries. Honest entries of the batch
        // are kept; the peer is backed off from.
        return Err(SessionError::Misbehaving(refused));
    }
    Ok(!gap)
}

/// Adds `more` to the authors blocked from a peer, up to [`MAX_BLOCKED`]; false
/// if some did not fit (those are left out).
fn block(blocked: &mut BTreeMap<PublicId, Blocked>, more: BTreeMap<PublicId, Blocked>) -> bool {
    let mut fits = true;
    for (author, b) in more {
        if blocked.len() >= MAX_BLOCKED && !blocked.contains_key(&author) {
            fits = false;
            continue;
        }
        blocked.insert(author, b);
    }
    fits
}

fn charter(ledger: &Ledger) -> accord_core::Charter {
    ledger.state().charter().clone()
}

/// Batch-verifies signatures; drops the entries whose signatures fail.
fn verified(
    decoded: Vec<DecodedEntry>,
) -> (Vec<DecodedEntry>, Option<entry::SignatureChecked>, u64) {
    match entry::verify_batch(&decoded) {
        Ok(checked) => (decoded, Some(checked), 0),
        Err(bad) => {
            let forged = bad.len() as u64;
            let good: Vec<DecodedEntry> = decoded
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !bad.contains(i))
                .map(|(_, e)| e)
                .collect();
            match entry::verify_batch(&good) {
                Ok(checked) => (good, Some(checked), forged),
                Err(_) => (Vec::new(), None, forged),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{FailureLog, LATENESS_WINDOW, MAX_PULL_GRACE, Pulls, Via};

    /// 100,000 keys no charter or proposal names.
    fn made_up_authors() -> Vec<accord_core::PublicId> {
        (0..100_000u32)
            .map(|i| {
                let mut key = [0xee; 32];
                key[..4].copy_from_slice(&i.to_be_bytes());
                accord_core::PublicId::from_slice(&key).unwrap()
            })
            .collect()
    }

    /// Issue 22, defect 8: the per-author maps take only authors the state knows.
    /// Notes and pushes of 100,000 made-up authors leave every map as it was; a
    /// note of an author the state knows is taken.
    #[tokio::test]
    async fn notes_and_pushes_of_made_up_authors_are_not_kept() {
        use std::collections::BTreeMap;
        use std::sync::{Arc, Mutex};

        use accord_core::entry::Logs;
        use accord_core::{Identity, State, pb};

        use super::{Peer, PeerStates, PeerStatus, Tuning, take_notes};
        use crate::ledger::Ledger;
        use crate::signed::SignedRecord;

        let dir = tempfile::tempdir().expect("temporary folder");
        let member = Identity::from_seed([7; 32]);
        let charter = crate::test_support::one_member_charter("Note Alliance", &member);
        let store = accord_store::Store::open(dir.path(), charter.id(), 1 << 22).expect("store");
        let signed = SignedRecord::load(dir.path()).expect("no record yet");
        let (ledger, _writer) = Ledger::start(store, State::new(charter), vec![], signed);
        let peer = Peer {
            name: "peer".into(),
            address: "https://127.0.0.1:1".into(),
            fingerprint: [0; 32],
        };
        let states: PeerStates = Arc::new(Mutex::new(BTreeMap::from([(
            peer.name.clone(),
            PeerStatus::default(),
        )])));
        let pulls = Pulls::default();
        let mut noted = BTreeMap::new();
        let made_up = made_up_authors();
        let notes: Vec<pb::AuthorHead> = made_up
            .iter()
            .map(|author| pb::AuthorHead {
                author: author.to_vec(),
                seq: 1,
                id: vec![],
            })
            .collect();
        let tuning = Tuning::default();
        take_notes(&peer, &ledger, &states, tuning, &pulls, &notes, &mut noted).unwrap();
        assert!(noted.is_empty());
        assert!(pulls.lateness.lock().unwrap().noted.is_empty());
        let state = ledger.state();
        pulls.arrived(
            made_up.iter().map(|a| (*a, 1)),
            |author| state.known_roles(author).is_some(),
            Via::Push,
            Instant::now(),
        );
        assert!(pulls.pushed.lock().unwrap().is_empty());
        assert!(pulls.claims.lock().unwrap().is_empty());
        // The member's log, noted beyond this node's head, is taken.
        let known = [pb::AuthorHead {
            author: member.public_id().to_vec(),
            seq: 3,
            id: vec![],
        }];
        take_notes(&peer, &ledger, &states, tuning, &pulls, &known, &mut noted).unwrap();
        assert_eq!(noted.keys().collect::<Vec<_>>(), [&member.public_id()]);
        assert_eq!(pulls.lateness.lock().unwrap().noted.len(), 1);
        assert_eq!(states.lock().unwrap()["peer"].notes, 100_001);
    }

    /// A note whose entry never comes is dropped once it can give no lateness
    /// sample.
    #[test]
    fn a_note_older_than_the_lateness_window_is_dropped() {
        let start = Instant::now();
        let pulls = Pulls::default();
        let author = accord_core::PublicId::from_slice(&[1; 32]).unwrap();
        pulls.noted(author, 5, start);
        pulls.grace(Duration::from_millis(500), start + LATENESS_WINDOW / 2);
        assert_eq!(pulls.lateness.lock().unwrap().noted.len(), 1);
        pulls.grace(Duration::from_millis(500), start + LATENESS_WINDOW);
        assert!(pulls.lateness.lock().unwrap().noted.is_empty());
    }

    /// Entries of made-up authors (validly signed by keys a peer made) are
    /// refused and their authors blocked, up to [`super::MAX_BLOCKED`]; past it the
    /// peer's session ends, and the map stays at the cap.
    #[test]
    fn the_authors_blocked_from_a_peer_are_capped() {
        use std::collections::BTreeMap;

        use super::{Blocked, MAX_BLOCKED, block};

        let refused = || Blocked {
            seq: 1,
            reason: "author is not a member or secretary of the alliance".into(),
            held_until_ms: None,
            known_then: Some(None),
        };
        let made_up = made_up_authors();
        let mut blocked = BTreeMap::new();
        let first: BTreeMap<_, _> = made_up[..MAX_BLOCKED]
            .iter()
            .map(|a| (*a, refused()))
            .collect();
        assert!(block(&mut blocked, first));
        // Blocking an author again fits; a new one does not.
        let again: BTreeMap<_, _> = made_up[..10].iter().map(|a| (*a, refused())).collect();
        assert!(block(&mut blocked, again));
        let rest: BTreeMap<_, _> = made_up[MAX_BLOCKED..]
            .iter()
            .map(|a| (*a, refused()))
            .collect();
        assert!(!block(&mut blocked, rest));
        assert_eq!(blocked.len(), MAX_BLOCKED);
    }

    /// The pull grace follows how late pushes arrive after a note: it stays at the
    /// configured floor while pushes come first, grows when they come late, is
    /// capped, ignores arrivals by pull, and falls back once the late samples age.
    #[test]
    fn the_pull_grace_follows_late_pushes_and_comes_back() {
        let floor = Duration::from_millis(500);
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let author = |i: u8| accord_core::PublicId::from_slice(&[i; 32]).unwrap();
        let pulls = Pulls::default();
        assert_eq!(pulls.grace(floor, start), floor);

        // Pulled arrivals close their notes without a sample, however late.
        pulls.noted(author(1), 5, ms(0));
        pulls.arrived([(author(1), 5)], |_| true, Via::Pull, ms(4_000));
        assert_eq!(pulls.grace(floor, ms(4_000)), floor);

        // An arrival before the noted seq leaves the note open.
        pulls.noted(author(2), 7, ms(0));
        pulls.arrived([(author(2), 6)], |_| true, Via::Push, ms(100));
        // Pushes arriving 2 s after their notes: the grace becomes 3 s.
        pulls.arrived([(author(2), 7)], |_| true, Via::Push, ms(2_000));
        for i in 3..12 {
            pulls.noted(author(i), 1, ms(1_000));
            pulls.arrived([(author(i), 1)], |_| true, Via::Push, ms(3_000));
        }
        assert_eq!(pulls.grace(floor, ms(3_000)), Duration::from_millis(3_000));
        // A push 10 s late: the grace is capped.
        for i in 12..40 {
            pulls.noted(author(i), 1, ms(3_000));
            pulls.arrived([(author(i), 1)], |_| true, Via::Push, ms(13_000));
        }
        assert_eq!(pulls.grace(floor, ms(13_000)), MAX_PULL_GRACE);
        // Once the samples are older than the window, the floor again.
        let later = ms(13_000) + LATENESS_WINDOW + Duration::from_millis(1);
        assert_eq!(pulls.grace(floor, later), floor);
        // A bigger configured grace is kept even above the cap.
        assert_eq!(
            pulls.grace(Duration::from_secs(8), later),
            Duration::from_secs(8)
        );
    }

    /// What a peer held at the last heads check and still held now: each author's
    /// head capped at its head then, and no author that is new since. Entries a
    /// busy peer received since the last check are on their way, not missed.
    #[test]
    fn only_what_the_peer_held_at_the_last_check_counts_as_missed() {
        use std::collections::BTreeMap;
        let author = |i: u8| accord_core::PublicId::from_slice(&[i; 32]).unwrap();
        let id = |i: u8| Some(accord_core::EntryId::from_slice(&[i; 32]).unwrap());
        let before = BTreeMap::from([(author(1), (5, id(15))), (author(2), (3, id(23)))]);
        let now = BTreeMap::from([
            (author(1), (9, id(19))),
            (author(2), (3, id(23))),
            (author(3), (4, id(34))),
        ]);
        assert_eq!(
            super::held_since(&before, &now),
            BTreeMap::from([(author(1), (5, id(15))), (author(2), (3, id(23)))])
        );
    }

    /// A peer that stays down is logged at its first failure, then once per period
    /// with the count of attempts not logged; a session that gets through starts
    /// a new run.
    #[test]
    fn a_peer_that_stays_down_is_logged_once_then_every_few_minutes() {
        let every = std::time::Duration::from_secs(300);
        let start = std::time::Instant::now();
        let at = |secs: u64| start + std::time::Duration::from_secs(secs);
        let mut log = FailureLog::new(every);
        let logged: Vec<(u64, Option<u64>)> = (0..=70)
            .map(|i| (i * 10, log.failed(at(i * 10))))
            .filter(|(_, l)| l.is_some())
            .collect();
        assert_eq!(
            logged,
            vec![(0, Some(0)), (300, Some(29)), (600, Some(29))],
            "retries every 10 s for 700 s"
        );
        assert!(log.recovered());
        assert_eq!(log.failed(at(710)), Some(0));
        assert!(!FailureLog::new(every).recovered());
    }
}
