//! The `accord.v1.Federation` service: what this node gives its peers.
//!
//! A peer pulls with its heads; the node answers with every entry the peer lacks,
//! read from the store one author's suffix at a time in batches, then (with
//! `follow`) every batch the writer makes durable from then on. The live part comes
//! from the ledger's broadcast; the stream subscribes before it reads the store, and
//! remembers how far it sent each author, so nothing appended in between is lost or
//! sent twice. A follower that falls too far behind gets `Aborted` and pulls again.

use std::collections::BTreeMap;
use std::pin::Pin;

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

/// Entries per batch sent to a peer.
pub const SYNC_BATCH: usize = 2048;

pub struct FederationService {
    ledger: Ledger,
    /// Fingerprints of the peers' TLS certificates: only they may pull.
    pins: Vec<Fingerprint>,
    stopping: watch::Receiver<bool>,
    /// Bounds on open `Sync` streams per connection and per peer.
    streams: StreamLimits,
}

impl FederationService {
    pub fn new(ledger: Ledger, pins: Vec<Fingerprint>, stopping: watch::Receiver<bool>) -> Self {
        Self {
            ledger,
            pins,
            stopping,
            streams: StreamLimits::new(Limits::default()),
        }
    }

    /// Bounds open `Sync` streams by `streams` (shared with the client API).
    pub fn with_stream_limits(mut self, streams: StreamLimits) -> Self {
        self.streams = streams;
        self
    }

    /// Only a pinned peer, proven by its TLS client certificate, may replicate.
    fn check_peer<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match peer_fingerprint(request) {
            Some(f) if self.pins.contains(&f) => Ok(()),
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
fn first_to_send(state: &State, author: &PublicId, theirs: Option<&PeerHead>) -> u64 {
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
        }))
    }

    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        self.check_peer(&request)?;
        let peer = peer_fingerprint(&request)
            .map(hex::encode)
            .unwrap_or_default();
        let permit = self.streams.acquire(
            request.remote_addr(),
            &format!("peer:{peer}"),
            &format!("peer {}", &peer[..peer.len().min(12)]),
        )?;
        let request = request.into_inner();
        let theirs = heads_from_pb(&request.heads)?;
        // Subscribe first: whatever becomes durable after this point arrives live.
        let mut live = self.ledger.subscribe();
        let (ours, forks) = {
            let state = self.ledger.state();
            if request.alliance != state.charter().id().to_vec() {
                return Err(Status::failed_precondition(format!(
                    "this node serves alliance {}, not the one asked for",
                    state.charter().id()
                )));
            }
            let ours: Vec<(PublicId, u64, u64)> = state
                .heads()
                .map(|(author, head)| {
                    let from = first_to_send(&state, &author, theirs.get(&author));
                    (author, from, head.seq)
                })
                .collect();
            // Every proof, even for authors the peer has frozen: of two proofs about
            // one author every node keeps the same one, so each must see both.
            let forks: Vec<pb::ForkProof> = state.forks().map(fork_to_pb).collect();
            (ours, forks)
        };
        let ledger = self.ledger.clone();
        let mut stopping = self.stopping.clone();
        let follow = request.follow;
        let (tx, rx) = mpsc::channel::<Result<pb::SyncBatch, Status>>(4);
        tokio::spawn(async move {
            // Holds the stream's place until the stream ends.
            let _permit = permit;
            // How far each author has been sent (or the peer already had).
            let mut sent: BTreeMap<PublicId, u64> = theirs
                .iter()
                .map(|(author, (seq, _))| (*author, *seq))
                .collect();
            if !forks.is_empty() {
                let batch = pb::SyncBatch {
                    entries: vec![],
                    forks,
                };
                if tx.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
            for (author, mut from, head) in ours {
                while from <= head {
                    let count = usize::try_from(head - from + 1)
                        .unwrap_or(usize::MAX)
                        .min(SYNC_BATCH);
                    let stored = match ledger.store().log(&author, from, count) {
                        Ok(stored) => stored,
                        Err(e) => {
                            let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                            return;
                        }
                    };
                    let Some(last) = stored.last() else { break };
                    from = last.seq + 1;
                    sent.insert(author, last.seq);
                    let entries = stored
                        .iter()
                        .filter_map(|s| pb::SignedEntry::decode(s.bytes.as_slice()).ok())
                        .collect();
                    let batch = pb::SyncBatch {
                        entries,
                        forks: vec![],
                    };
                    if tx.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
            }
            if !follow {
                return;
            }
            loop {
                let appended = tokio::select! {
                    appended = live.recv() => appended,
                    _ = stopping.wait_for(|s| *s) => return,
                    () = tx.closed() => return,
                };
                let appended = match appended {
                    Ok(appended) => appended,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!(
                                "follower fell {n} batches behind; pull again"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let mut batch = pb::SyncBatch::default();
                for (author, seq, bytes) in &appended.entries {
                    let done = sent.entry(*author).or_insert(0);
                    if *seq <= *done {
                        continue;
                    }
                    *done = *seq;
                    if let Ok(signed) = pb::SignedEntry::decode(bytes.as_slice()) {
                        batch.entries.push(signed);
                    }
                }
                batch.forks = appended.forks.iter().map(fork_to_pb).collect();
                if (!batch.entries.is_empty() || !batch.forks.is_empty())
                    && tx.send(Ok(batch)).await.is_err()
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

/// How many entries this node (`ours`) lacks against a peer's heads, summed over
/// authors; a head where the two hold different entries counts as one.
pub fn behind(ours: &impl Logs, theirs: &BTreeMap<PublicId, PeerHead>) -> u64 {
    theirs
        .iter()
        .map(|(author, (seq, id))| {
            let lacking = seq.saturating_sub(ours.head(author).map_or(0, |h| h.seq));
            let diverged = match (ours.id_at(author, *seq), id) {
                (Some(mine), Some(id)) => mine != *id && !ours.is_frozen(author),
                _ => false,
            };
            lacking + u64::from(diverged)
        })
        .sum()
}
