//! The `accord.v1.Federation` service: what this node gives its peers.
//!
//! A peer pulls with its heads; the node answers with every entry the peer lacks,
//! read from the store one author's suffix at a time in batches, then (with
//! `follow`) every batch the writer makes durable from then on. The live part comes
//! from the ledger's broadcast; the stream subscribes before it reads the store, and
//! remembers how far it sent each author, so nothing appended in between is lost or
//! sent twice. A follower that falls too far behind (1,024 batches, or batches the
//! writer let go of for its byte budget: `ledger::LIVE_BYTES`) gets `Aborted` and
//! pulls again.
//!
//! A `lazy` follower (every node of this release) gets in full, live, only the
//! entries this node was first to hold (from its own clients) and those of the
//! authors it asked to have forwarded; of the entries this node relays it gets a
//! note of the new head, coalesced over [`NOTE_EVERY`]. In a full mesh each entry
//! then crosses each link about once, from its first holder, instead of once from
//! every node that holds it; a follower pulls by heads what its notes announce and
//! no peer brings (`replication.rs`). An entry sent in full after entries of its
//! author that were only noted is preceded by them, read from the store, so a
//! follower never sees a gap.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::time::Duration;

use accord_core::entry::Logs;
use accord_core::pb::federation_server::Federation;
use accord_core::state::ForkProof;
use accord_core::{EntryId, PublicId, State, pb};
use futures::Stream;
use prost::Message;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::{Request, Response, Status};

use crate::ledger::Ledger;
use crate::limits::{Limits, StreamLimits};
use crate::tls::{Fingerprint, peer_fingerprint};

/// Most entries per batch sent to a peer.
pub const SYNC_BATCH: usize = 2048;
/// A batch sent to a peer is cut once it holds this many bytes of entries, so a
/// batch stays a few MiB whatever the entries' sizes (one entry larger than this
/// travels alone).
pub const SYNC_BATCH_BYTES: usize = 4 << 20;
/// The largest message a node accepts from a peer (a `SyncBatch`), and so the
/// limit the puller sets on its client.
pub const PEER_MAX_MESSAGE: usize = 64 << 20;
/// The largest request the node's servers accept (a `Publish`, a `Submit`, a
/// `Sync` with its heads).
pub const MAX_REQUEST: usize = 16 << 20;
/// Room for the fields around an entry in a request or batch.
const ENVELOPE_ROOM: usize = 64 << 10;

// A batch that reached SYNC_BATCH_BYTES, plus one more entry that fits a request,
// always fits a peer's message.
const _: () = assert!(SYNC_BATCH_BYTES + MAX_REQUEST <= PEER_MAX_MESSAGE);

/// Checks that entries of the charter's largest size fit the transport: in a
/// request to this node, and so (by the assertion above) in a batch to a peer. A
/// charter whose limit does not fit would let a node accept entries it can never
/// pass on.
pub fn check_transport(charter: &accord_core::Charter) -> Result<(), String> {
    let max = charter.rules().max_entry_bytes as usize;
    if max + ENVELOPE_ROOM > MAX_REQUEST {
        return Err(format!(
            "the charter allows entries of {max} bytes, but requests to a node are limited \
             to {MAX_REQUEST} bytes; lower rules.max_entry_bytes to at most {}",
            MAX_REQUEST - ENVELOPE_ROOM
        ));
    }
    Ok(())
}

/// Cuts a stream of encoded entries into batches of at most [`SYNC_BATCH`]
/// entries and about [`SYNC_BATCH_BYTES`] bytes.
#[derive(Default)]
struct Batcher {
    entries: Vec<pb::SignedEntry>,
    bytes: usize,
}

impl Batcher {
    /// Adds an entry; returns a full batch to send, if this one filled it.
    fn push(&mut self, bytes: &[u8]) -> Option<pb::SyncBatch> {
        let Ok(signed) = pb::SignedEntry::decode(bytes) else {
            return None;
        };
        self.bytes += bytes.len();
        self.entries.push(signed);
        (self.entries.len() >= SYNC_BATCH || self.bytes >= SYNC_BATCH_BYTES).then(|| self.take())
    }

    fn take(&mut self) -> pb::SyncBatch {
        self.bytes = 0;
        pb::SyncBatch {
            entries: std::mem::take(&mut self.entries),
            ..Default::default()
        }
    }

    /// What is left, if anything.
    fn rest(&mut self) -> Option<pb::SyncBatch> {
        (!self.entries.is_empty()).then(|| self.take())
    }
}

/// Entries read from the store at a time while serving a pull.
const STORE_READ: usize = 256;

pub struct FederationService {
    ledger: Ledger,
    /// Fingerprints of the peers' TLS certificates: only they may pull.
    pins: crate::tls::Pins,
    stopping: watch::Receiver<bool>,
    /// Bounds on open `Sync` streams per connection and per peer.
    streams: StreamLimits,
}

impl FederationService {
    pub fn new(ledger: Ledger, pins: Vec<Fingerprint>, stopping: watch::Receiver<bool>) -> Self {
        Self {
            ledger,
            pins: crate::tls::shared_pins(pins),
            stopping,
            streams: StreamLimits::new(Limits::default()),
        }
    }

    /// Pins whatever `pins` holds at each call (replaced when the config is reloaded).
    pub fn with_pins(mut self, pins: crate::tls::Pins) -> Self {
        self.pins = pins;
        self
    }

    /// Bounds open `Sync` streams by `streams` (shared with the client API).
    pub fn with_stream_limits(mut self, streams: StreamLimits) -> Self {
        self.streams = streams;
        self
    }

    /// Only a pinned peer, proven by its TLS client certificate, may replicate.
    fn check_peer<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match peer_fingerprint(request) {
            Some(f) if self.pins.load().contains(&f) => Ok(()),
            Some(_) => Err(Status::permission_denied(
                "this certificate is not a pinned peer",
            )),
            None => Err(Status::unauthenticated(
                "federation needs the TLS client certificate of a pinned peer",
            )),
        }
    }
}

pub fn fork_to_pb(proof: &ForkProof) -> pb::ForkProof {
    let signed = |bytes: &[u8]| pb::SignedEntry::decode(bytes).ok();
    pb::ForkProof {
        author: proof.author.to_vec(),
        seq: proof.seq,
        first: signed(&proof.first),
        second: signed(&proof.second),
    }
}

/// A peer's head of one author: seq and, when given, the head entry's id.
pub type PeerHead = (u64, Option<EntryId>);

/// Parses a version vector from the wire; malformed keys are an error.
pub fn heads_from_pb(heads: &[pb::AuthorHead]) -> Result<BTreeMap<PublicId, PeerHead>, Status> {
    heads
        .iter()
        .map(|h| {
            let author = PublicId::from_slice(&h.author)
                .map_err(|e| Status::invalid_argument(format!("heads: {e}")))?;
            let id = if h.id.is_empty() {
                None
            } else {
                Some(
                    EntryId::from_slice(&h.id)
                        .map_err(|e| Status::invalid_argument(format!("heads: {e}")))?,
                )
            };
            Ok((author, (h.seq, id)))
        })
        .collect()
}

/// This node's heads as sent to peers.
pub fn heads_to_pb(state: &State) -> Vec<pb::AuthorHead> {
    state
        .heads()
        .map(|(author, head)| pb::AuthorHead {
            author: author.to_vec(),
            seq: head.seq,
            id: head.id.to_vec(),
        })
        .collect()
}

/// The first seq of `author` to send a peer whose head is `theirs`: the one after
/// it, or the head itself when this node holds a different entry there (a fork the
/// peer will then find).
pub fn first_to_send(state: &State, author: &PublicId, theirs: Option<&PeerHead>) -> u64 {
    match theirs {
        None => 1,
        Some((seq, id)) => match (state.id_at(author, *seq), id) {
            (Some(ours), Some(id)) if ours != *id => *seq,
            _ => seq + 1,
        },
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SyncBatch, Status>> + Send>>;

#[tonic::async_trait]
impl Federation for FederationService {
    async fn get_heads(
        &self,
        request: Request<pb::GetHeadsRequest>,
    ) -> Result<Response<pb::Heads>, Status> {
        self.check_peer(&request)?;
        let state = self.ledger.state();
        Ok(Response::new(pb::Heads {
            alliance: state.charter().id().to_vec(),
            heads: heads_to_pb(&state),
            frozen: state.forks().map(|f| f.author.to_vec()).collect(),
            now_ms: chrono::Utc::now().timestamp_millis(),
        }))
    }

    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        self.check_peer(&request)?;
        let pinned = peer_fingerprint(&request);
        let fingerprint = pinned.map(hex::encode).unwrap_or_default();
        let peer = format!(
            "{} (certificate {})",
            request
                .remote_addr()
                .map_or_else(|| "a peer".to_owned(), |a| a.to_string()),
            &fingerprint[..fingerprint.len().min(12)]
        );
        let permit = self.streams.acquire(
            request.remote_addr(),
            &format!("peer:{fingerprint}"),
            &format!("peer {}", &fingerprint[..fingerprint.len().min(12)]),
        )?;
        let request = request.into_inner();
        let theirs = heads_from_pb(&request.heads)?;
        let forward = authors_from_pb("forward", &request.forward)?;
        let only = authors_from_pb("only", &request.only)?;
        let wanted = move |author: &PublicId| only.is_empty() || only.contains(author);
        // Subscribe first: whatever becomes durable after this point arrives live.
        let mut live = self.ledger.subscribe();
        let (ours, forks, sent) = {
            let state = self.ledger.state();
            if request.alliance != state.charter().id().to_vec() {
                return Err(Status::failed_precondition(format!(
                    "this node serves alliance {}, not the one asked for",
                    state.charter().id()
                )));
            }
            let ours: Vec<(PublicId, u64, u64)> = state
                .heads()
                .filter(|(author, _)| wanted(author))
                .map(|(author, head)| {
                    let from = first_to_send(&state, &author, theirs.get(&author));
                    (author, from, head.seq)
                })
                .collect();
            // Every proof (of the authors asked for), even for authors the peer has
            // frozen: of two proofs about one author every node keeps the same one,
            // so each must see both.
            let forks: Vec<pb::ForkProof> = state
                .forks()
                .filter(|f| wanted(&f.author))
                .map(fork_to_pb)
                .collect();
            // How far each author has been sent (or the peer already had). Only
            // authors this node knows: the stream keeps it as long as it lives, and
            // a request may name any number of made-up authors.
            let sent: BTreeMap<PublicId, u64> = theirs
                .iter()
                .filter(|(author, _)| state.known_roles(author).is_some())
                .map(|(author, (seq, _))| (*author, *seq))
                .collect();
            (ours, forks, sent)
        };
        drop(theirs);
        let ledger = self.ledger.clone();
        let mut stopping = self.stopping.clone();
        // A live stream ends once the follower's certificate is no longer pinned
        // (checked every second): unpinning cuts what is open, not only what comes.
        let pins = self.pins.clone();
        let mut pin_check = tokio::time::interval(PIN_CHECK_EVERY);
        pin_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let follow = request.follow;
        let lazy = request.lazy;
        let (tx, rx) = mpsc::channel::<Result<pb::SyncBatch, Status>>(4);
        tokio::spawn(async move {
            // Holds the stream's place until the stream ends.
            let _permit = permit;
            let mut out = Outgoing {
                ledger,
                tx,
                peer,
                batcher: Batcher::default(),
                sent,
            };
            for (author, from, head) in ours {
                if !out.send_log(author, from, head).await {
                    return;
                }
            }
            if !out.flush().await {
                return;
            }
            // Proofs after the entries: a proof freezes its author from the fork's seq
            // on, and the entries before it must have arrived by then.
            if !forks.is_empty() {
                let batch = pb::SyncBatch {
                    forks,
                    ..Default::default()
                };
                if !out.send(batch).await {
                    return;
                }
            }
            if !follow {
                return;
            }
            // Notes waiting for the next flush (lazy followers): author -> head seq.
            // Without the head's id: decoding each relayed entry for it would cost
            // more than the note saves, and forks are found by the heads checks.
            let mut notes: BTreeMap<PublicId, u64> = BTreeMap::new();
            let note_timer = tokio::time::sleep(NOTE_EVERY);
            tokio::pin!(note_timer);
            loop {
                let appended = tokio::select! {
                    appended = live.recv() => appended,
                    () = &mut note_timer, if !notes.is_empty() => {
                        let batch = pb::SyncBatch {
                            notes: std::mem::take(&mut notes)
                                .into_iter()
                                .map(|(author, seq)| pb::AuthorHead {
                                    author: author.to_vec(),
                                    seq,
                                    id: vec![],
                                })
                                .collect(),
                            ..Default::default()
                        };
                        if !out.send(batch).await {
                            return;
                        }
                        continue;
                    }
                    // Unit, not the guard `wait_for` returns: a guard alive across the
                    // notes branch's await would make this task not `Send`.
                    () = async { let _ = stopping.wait_for(|s| *s).await; } => return,
                    () = out.tx.closed() => return,
                    _ = pin_check.tick() => {
                        if pinned.is_some_and(|f| !pins.load().contains(&f)) {
                            tracing::info!(peer = %out.peer, "ending its stream: its certificate is no longer pinned");
                            let _ = out
                                .tx
                                .send(Err(Status::permission_denied(format!(
                                    "{}: it is not in this node's [[peers]] nor the roster's nodes any more",
                                    crate::tls::NO_LONGER_PINNED
                                ))))
                                .await;
                            return;
                        }
                        continue;
                    }
                };
                let appended = match appended {
                    Ok(appended) => appended,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = out
                            .tx
                            .send(Err(Status::aborted(format!(
                                "follower fell {n} batches behind; pull again"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let notes_before = notes.len();
                for (i, (author, seq, bytes)) in appended.entries.iter().enumerate() {
                    if !wanted(author) || out.sent.get(author).is_some_and(|s| *seq <= *s) {
                        continue;
                    }
                    let first_here = appended.first_here.get(i).copied().unwrap_or(true);
                    if lazy && !first_here && !forward.contains(author) {
                        notes.insert(*author, *seq);
                        continue;
                    }
                    // Entries of this author that were only noted come first, from
                    // the store: a follower never gets an entry ahead of a gap.
                    let done = out.sent.get(author).copied().unwrap_or(0);
                    if *seq > done + 1 && !out.send_log(*author, done + 1, *seq - 1).await {
                        return;
                    }
                    notes.remove(author);
                    out.sent.insert(*author, *seq);
                    if !out.push(bytes).await {
                        return;
                    }
                }
                if notes_before == 0 && !notes.is_empty() {
                    note_timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + NOTE_EVERY);
                }
                let mut batch = out.batcher.rest().unwrap_or_default();
                batch.forks = appended.forks.iter().map(fork_to_pb).collect();
                if (!batch.entries.is_empty() || !batch.forks.is_empty()) && !out.send(batch).await
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// How often a live stream checks that its follower's certificate is still pinned.
const PIN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often, at most, a lazy follower gets notes: the notes of every entry relayed
/// here within this interval travel in one message, so a busy mesh costs each link
/// a few small messages a second rather than one per entry.
pub const NOTE_EVERY: Duration = Duration::from_millis(250);

/// Parses a list of authors from the wire; a malformed key is an error.
fn authors_from_pb(field: &str, authors: &[Vec<u8>]) -> Result<BTreeSet<PublicId>, Status> {
    authors
        .iter()
        .map(|a| {
            PublicId::from_slice(a).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
        })
        .collect()
}

/// One `Sync` stream's sending side: batches, and how far each author was sent.
struct Outgoing {
    ledger: Ledger,
    tx: mpsc::Sender<Result<pb::SyncBatch, Status>>,
    peer: String,
    batcher: Batcher,
    sent: BTreeMap<PublicId, u64>,
}

impl Outgoing {
    /// Adds `author`'s entries `from..=head` from the store to the batches, sending
    /// each batch that fills. False when the stream is gone or the store failed.
    async fn send_log(&mut self, author: PublicId, mut from: u64, head: u64) -> bool {
        while from <= head {
            let count = usize::try_from(head - from + 1)
                .unwrap_or(usize::MAX)
                .min(STORE_READ);
            let stored = match self.ledger.read_log(author, from, count).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::error!(peer = %self.peer, "serving a pull: cannot read the store: {e}");
                    let _ = self
                        .tx
                        .send(Err(Status::data_loss("this node cannot read its store")))
                        .await;
                    return false;
                }
            };
            let Some(last) = stored.last() else { break };
            from = last.seq + 1;
            self.sent.insert(author, last.seq);
            for entry in &stored {
                if !self.push(&entry.bytes).await {
                    return false;
                }
            }
        }
        true
    }

    /// Adds one encoded entry, sending the batch if it filled.
    async fn push(&mut self, bytes: &[u8]) -> bool {
        match self.batcher.push(bytes) {
            Some(batch) => self.send(batch).await,
            None => true,
        }
    }

    /// Sends what the batcher holds, if anything.
    async fn flush(&mut self) -> bool {
        match self.batcher.rest() {
            Some(batch) => self.send(batch).await,
            None => true,
        }
    }

    async fn send(&self, batch: pb::SyncBatch) -> bool {
        send(&self.tx, &self.peer, batch).await
    }
}

/// Sends one batch to the puller; false when the stream is gone.
async fn send(
    tx: &mpsc::Sender<Result<pb::SyncBatch, Status>>,
    peer: &str,
    batch: pb::SyncBatch,
) -> bool {
    let ok = tx.send(Ok(batch)).await.is_ok();
    if !ok {
        tracing::debug!(%peer, "a pull ended: the peer closed its stream");
    }
    ok
}

/// How many entries this node (`ours`) lacks against a peer's heads, summed over
/// authors; a head where the two hold different entries counts as one. For an
/// author frozen by a fork, only entries before the fork count: nothing from the
/// fork's seq on will ever be accepted.
pub fn behind(ours: &impl Logs, theirs: &BTreeMap<PublicId, PeerHead>) -> u64 {
    theirs
        .iter()
        .map(|(author, (seq, id))| {
            let frozen = ours.frozen_from(author);
            let counted = frozen.map_or(*seq, |from| (*seq).min(from.saturating_sub(1)));
            let lacking = counted.saturating_sub(ours.head(author).map_or(0, |h| h.seq));
            let diverged = match (ours.id_at(author, *seq), id) {
                (Some(mine), Some(id)) => mine != *id && frozen.is_none(),
                _ => false,
            };
            lacking + u64::from(diverged)
        })
        .sum()
}
