//! The `accord.v1.Ledger` service: request checking and views over the ledger.

use std::pin::Pin;
use std::sync::Arc;

use accord_core::ballot::BallotId;
use accord_core::body::Body;
use accord_core::clash::{Clash, EventClash};
use accord_core::entry::{self, Logs, SignatureChecked};
use accord_core::pb::ledger_server::Ledger as LedgerApi;
use accord_core::quote::quoted;
use accord_core::state::EventView;
use accord_core::{EntryError, EntryId, PublicId, State, pb};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::auth::caller;
use crate::feed_links::{FeedLinkError, FeedLinks, LinkInfo};
use crate::ledger::{Ack, AppendError, Ledger, Snapshot, Snapshots};
use crate::limits::{Limits, StreamLimits};
use crate::paging::{self, PageRequest};
use crate::replication::PeerStates;
use crate::status::{append_status, entry_status};
use crate::to_proto;

mod joining;
pub use joining::ThisNode;

/// Set-aside entries listed in a status answer (all are counted).
const SET_ASIDE_SHOWN: usize = 100;

/// Most entries one GetLog call returns.
pub const MAX_LOG_PAGE: u32 = 1000;

/// Least time between two rebuilds of the clash list for `WatchClashes` streams:
/// under a stream of publishes the list is rebuilt at most this often, not once per
/// batch (a rebuild reads every position).
pub const CLASH_REFRESH: std::time::Duration = std::time::Duration::from_millis(50);

pub struct LedgerService {
    ledger: Ledger,
    peers: PeerStates,
    /// Members' feed links and the calendar's public address, if the node serves one.
    calendar: Option<(FeedLinks, String)>,
    /// Turns true when the node is stopping: open streams end then.
    stopping: watch::Receiver<bool>,
    /// Bounds on open WatchClashes streams per connection and per token.
    streams: StreamLimits,
    derived: DerivedCache,
    /// This node's address and certificate, for `Announce` and `GetInvitation`.
    this_node: ThisNode,
    /// Each home identity's key file (as [`Ledger::identities`]), for RotateKey.
    key_files: Arc<Vec<std::path::PathBuf>>,
    /// One key rotation at a time: each writes `NAME.next` before it signs.
    rotating: Arc<tokio::sync::Mutex<()>>,
}

impl LedgerService {
    /// This node's clock against its peers', judged against half the charter's
    /// allowed skew: further out, its entries would be held by its peers (ahead) or
    /// carry a stale time (behind).
    fn clock_check(&self) -> Option<crate::ledger::ClockCheck> {
        let skew = i64::from(self.ledger.state().charter().rules().max_clock_skew_secs);
        self.ledger.clock_check(skew * 1000 / 2)
    }

    pub fn new(ledger: Ledger, peers: PeerStates, stopping: watch::Receiver<bool>) -> Self {
        Self {
            ledger,
            peers,
            calendar: None,
            stopping,
            streams: StreamLimits::new(Limits::default()),
            derived: DerivedCache::default(),
            this_node: ThisNode::default(),
            key_files: Arc::default(),
            rotating: Arc::default(),
        }
    }

    /// Where peers reach this node and its certificate (`Announce`, `GetInvitation`).
    pub fn with_this_node(mut self, this_node: ThisNode) -> Self {
        self.this_node = this_node;
        self
    }

    /// The key file of each home identity, in the order of the node's identities:
    /// RotateKey writes the new key beside it (`crate::keyfile`).
    pub fn with_key_files(mut self, files: Vec<std::path::PathBuf>) -> Self {
        self.key_files = Arc::new(files);
        self
    }

    /// Bounds open streams by `streams` (shared with the federation service).
    pub fn with_stream_limits(mut self, streams: StreamLimits) -> Self {
        self.streams = streams;
        self
    }

    /// Serves feed links for the calendar at `public_url`.
    pub fn with_calendar(mut self, links: FeedLinks, public_url: String) -> Self {
        self.calendar = Some((links, public_url));
        self
    }

    fn feed_links(&self) -> Result<&FeedLinks, Status> {
        self.calendar.as_ref().map(|(l, _)| l).ok_or_else(|| {
            Status::failed_precondition(
                "this node serves no calendar: add an [http] section to its config",
            )
        })
    }
}

fn link_status(e: FeedLinkError) -> Status {
    match e {
        FeedLinkError::EmptyLabel | FeedLinkError::LongLabel | FeedLinkError::Ambiguous(_) => {
            Status::invalid_argument(e.to_string())
        }
        FeedLinkError::LabelTaken(_) => Status::already_exists(e.to_string()),
        FeedLinkError::NotFound(_) => Status::not_found(e.to_string()),
        FeedLinkError::AlreadyRevoked { .. } => Status::failed_precondition(e.to_string()),
        FeedLinkError::Store(_) => Status::internal(e.to_string()),
    }
}

fn link_view(info: LinkInfo) -> pb::FeedLink {
    pb::FeedLink {
        id: info.id,
        label: info.record.label,
        created_ms: info.record.created_ms,
        revoked_ms: info.record.revoked_ms.unwrap_or(0),
        ..Default::default()
    }
}

fn ack(a: Ack) -> Response<pb::PublishResponse> {
    Response::new(pb::PublishResponse {
        id: a.id.to_vec(),
        author: a.author.to_vec(),
        seq: a.seq,
    })
}

fn optional_key(field: &str, bytes: &[u8]) -> Result<Option<PublicId>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    PublicId::from_slice(bytes)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn time_bound(field: &str, text: &str) -> Result<Option<DateTime<Utc>>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            Status::invalid_argument(format!(
                "{field} {} is not an RFC 3339 time: {e}",
                quoted(text)
            ))
        })
}

/// A query's ballot and election filters must be ids (empty is no filter), and the
/// ballot one a ballot: else the answer would be an empty list that looks like news.
fn query_ids(ballot: &str, election: &str) -> Result<(), Status> {
    if !ballot.is_empty() {
        let id = BallotId::parse(ballot)
            .map_err(|e| Status::invalid_argument(format!("ballot: {e}")))?;
        if !id.is_ballot() {
            return Err(Status::invalid_argument(format!(
                "ballot: {} names an election, not a ballot (filter by election for its ballots, or give a ballot such as {})",
                quoted(ballot),
                id.ballot_form()
            )));
        }
    }
    if !election.is_empty() {
        BallotId::parse(election)
            .map_err(|e| Status::invalid_argument(format!("election: {e}")))?;
    }
    Ok(())
}

/// Where a clash sits in [`State::clashes`]: unknown deadlines last, then by
/// deadline, then ballot.
type ClashKey = (bool, Option<i64>, String);

fn clash_key(c: &accord_core::clash::Clash) -> ClashKey {
    (
        c.nominations_close.is_none(),
        c.nominations_close.map(|t| t.timestamp_millis()),
        c.ballot.as_str().to_owned(),
    )
}

/// Views that are derived whole (standing and event clashes: each needs every
/// ballot's or every overlapping event's positions), made at most once per change
/// of the state, on the blocking pool, and shared by every call and stream until
/// the next change.
#[derive(Clone, Default)]
pub struct DerivedCache {
    clashes: Arc<Slot<Vec<Clash>>>,
    event_clashes: Arc<Slot<Vec<EventClash>>>,
    /// The clash list as `WatchClashes` streams see it: one task rebuilds it after
    /// changes and wakes the streams only when it differs. Started by the first
    /// stream.
    feed: Arc<tokio::sync::OnceCell<watch::Receiver<Arc<Vec<Clash>>>>>,
}

/// A view and the version of the snapshot it was made from. The async lock lets one
/// caller make the view while the others wait for it without holding a thread.
type Slot<T> = tokio::sync::Mutex<Option<(u64, Arc<T>)>>;

impl DerivedCache {
    /// The view of `snapshot` or of a newer one.
    async fn get<T: Send + Sync + 'static>(
        slot: &Slot<T>,
        snapshot: &Arc<Snapshot>,
        make: fn(&State) -> T,
    ) -> Result<Arc<T>, Status> {
        let mut cached = slot.lock().await;
        if let Some((v, view)) = cached.as_ref()
            && *v >= snapshot.version
        {
            return Ok(view.clone());
        }
        let version = snapshot.version;
        let snapshot = snapshot.clone();
        let view = tokio::task::spawn_blocking(move || Arc::new(make(&snapshot)))
            .await
            .map_err(|e| Status::internal(format!("deriving a view failed: {e}")))?;
        *cached = Some((version, view.clone()));
        Ok(view)
    }

    async fn clashes(&self, snapshot: &Arc<Snapshot>) -> Result<Arc<Vec<Clash>>, Status> {
        Self::get(&self.clashes, snapshot, State::clashes).await
    }

    async fn event_clashes(
        &self,
        snapshot: &Arc<Snapshot>,
    ) -> Result<Arc<Vec<EventClash>>, Status> {
        Self::get(&self.event_clashes, snapshot, State::event_clashes).await
    }

    /// The clash list that streams watch: changes only when the list does.
    async fn clash_feed(
        &self,
        ledger: &Ledger,
        stopping: &watch::Receiver<bool>,
    ) -> Result<watch::Receiver<Arc<Vec<Clash>>>, Status> {
        let feed = self
            .feed
            .get_or_try_init(|| async {
                let first = self.clashes(&ledger.state()).await?;
                let (tx, rx) = watch::channel(first);
                tokio::spawn(feed_clashes(
                    self.clone(),
                    ledger.snapshots(),
                    ledger.changes(),
                    stopping.clone(),
                    tx,
                ));
                Ok::<_, Status>(rx)
            })
            .await?;
        Ok(feed.clone())
    }
}

/// Rebuilds the clash list after changes of the state (on the blocking pool, at most
/// every [`CLASH_REFRESH`]) and publishes it when it differs. Ends when the node
/// stops or the writer ends.
async fn feed_clashes(
    cache: DerivedCache,
    snapshots: Snapshots,
    mut changes: watch::Receiver<u64>,
    mut stopping: watch::Receiver<bool>,
    tx: watch::Sender<Arc<Vec<Clash>>>,
) {
    loop {
        let rebuilt = tokio::time::Instant::now();
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stopping.wait_for(|s| *s) => return,
        }
        tokio::time::sleep_until(rebuilt + CLASH_REFRESH).await;
        changes.borrow_and_update();
        let Ok(clashes) = cache.clashes(&snapshots.load()).await else {
            continue;
        };
        tx.send_if_modified(|old| {
            let differs = **old != *clashes;
            if differs {
                *old = clashes;
            }
            differs
        });
    }
}

async fn clash_list(
    ledger: &Ledger,
    cache: &DerivedCache,
    request: &pb::ListClashesRequest,
    page: &PageRequest<ClashKey>,
) -> Result<pb::ListClashesResponse, Status> {
    optional_key("organisation", &request.organisation)?;
    query_ids("", &request.election)?;
    let state = ledger.state();
    let clashes = cache.clashes(&state).await?;
    clash_page(&clashes, state.roster(), request, page)
}

/// The page of `clashes` that `request` asks for.
fn clash_page(
    clashes: &[Clash],
    charter: &accord_core::roster::Roster,
    request: &pb::ListClashesRequest,
    page: &PageRequest<ClashKey>,
) -> Result<pb::ListClashesResponse, Status> {
    let organisation = optional_key("organisation", &request.organisation)?;
    let states: Vec<i32> = request.states.clone();
    let items = clashes
        .iter()
        .filter(|c| {
            page.after
                .as_ref()
                .is_none_or(|after| clash_key(c) > *after)
        })
        .filter(|c| states.is_empty() || states.contains(&(to_proto::clash_state(c.state) as i32)))
        .filter(|c| {
            request.election.is_empty()
                || c.ballot.as_str() == request.election
                || c.ballot.election_ids().contains(&request.election)
        })
        .filter(|c| organisation.is_none_or(|o| c.parties.iter().any(|p| p.organisation == o)))
        .map(|c| Ok((clash_key(c), to_proto::clash(c, charter))));
    let (clashes, next_page_token) = page.fill(items)?;
    Ok(pb::ListClashesResponse {
        clashes,
        next_page_token,
    })
}

/// Where an event sits in [`State::events`], as a page token holds it.
type EventKey = (i64, String, PublicId);

fn event_key(v: &EventView) -> EventKey {
    (
        v.event.start_utc.timestamp_millis(),
        v.event.uid.clone(),
        v.author,
    )
}

fn state_event_key(key: &EventKey) -> Result<accord_core::state::EventKey, Status> {
    let start = DateTime::from_timestamp_millis(key.0)
        .ok_or_else(|| Status::invalid_argument("page_token holds an impossible time"))?;
    Ok((start, key.1.clone(), key.2))
}

type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;
type ClashStream = Pin<Box<dyn Stream<Item = Result<pb::ListClashesResponse, Status>> + Send>>;

impl LedgerService {
    /// The home identity a publishing call signs as (`author`, or the token's only
    /// identity), once the node may sign: it has heard from a peer (or waited long
    /// enough), its clock is in line, and its store holds all it has signed.
    async fn home_index(
        &self,
        caller: &crate::auth::Caller,
        requested: &[u8],
    ) -> Result<usize, Status> {
        let author = if requested.is_empty() {
            match caller.identities.as_slice() {
                [only] => *only,
                _ => {
                    return Err(Status::invalid_argument(
                        "author is empty and the token covers more than one identity",
                    ));
                }
            }
        } else {
            PublicId::from_slice(requested)
                .map_err(|e| Status::invalid_argument(format!("author: {e}")))?
        };
        if !caller.identities.contains(&author) {
            let state = self.ledger.state();
            let name = state.roster().name_of(&author).unwrap_or("unknown");
            return Err(Status::permission_denied(format!(
                "the token of operator {:?} does not cover {name} ({author})",
                caller.name
            )));
        }
        let index = self
            .ledger
            .identities()
            .iter()
            .position(|i| i.public_id() == author);
        let index = index.ok_or_else(|| {
            Status::permission_denied(format!("{author} is not an identity of this node"))
        })?;
        self.ledger.wait_for_peer_contact().await;
        if let Some(problem) = self.clock_check().and_then(|c| c.problem()) {
            return Err(Status::failed_precondition(problem));
        }
        let lost = {
            let state = self.ledger.state();
            // A frozen log is the first thing to say: whatever the store lacks of it
            // from the fork on will never arrive.
            if let Some(fork) = state.frozen().find(|f| f.author == author) {
                return Err(entry_status(&EntryError::Frozen {
                    author,
                    seq: fork.seq,
                }));
            }
            self.ledger.lost_own_entries(&state)
        };
        if let Some(lost) = lost.into_iter().find(|l| l.author == author) {
            let peers = if lost.on_peers >= lost.signed {
                "a peer has them; try again once they have arrived".to_owned()
            } else if lost.on_peers > lost.stored {
                format!(
                    "peers hold it up to seq {} so far, short of {}",
                    lost.on_peers, lost.signed
                )
            } else {
                "no peer has supplied them yet: if none has them, the identity needs recovery \
                 by the alliance (a new key, then `accord propose recover`; deploy/README.md, \
                 \"Recovery by the alliance\")"
                    .to_owned()
            };
            return Err(Status::unavailable(format!(
                "this node has signed {author}'s log up to seq {}, but its store holds it only \
                 up to seq {}: the store lost entries, and publishing now would sign a seq \
                 already used (a fork). It waits until its peers supply seqs {}..={}; {peers}",
                lost.signed,
                lost.stored,
                lost.stored + 1,
                lost.signed
            )));
        }
        if let Some((theirs, peer, ours)) = self.ledger.behind_own_log(&author) {
            return Err(Status::unavailable(format!(
                "this node holds {ours} entries of {author}'s log but peer {peer:?} holds \
                 {theirs}: publishing now would fork the log, so it waits until this node \
                 has caught up (was it restored from a backup?); try again shortly"
            )));
        }
        Ok(index)
    }

    /// Checks a body (off the writer) and appends it signed by home identity `index`.
    async fn publish_body(
        &self,
        index: usize,
        kind: i32,
        bytes: Vec<u8>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        // Check the body here, concurrently, so the writer sees only sound bodies.
        Body::decode(kind, &bytes)
            .and_then(|b| accord_core::body::check_new(&b))
            .map_err(|e| entry_status(&EntryError::Body(e)))?;
        let result = self.ledger.publish(index, kind, bytes).await;
        match result {
            Ok(a) => {
                tracing::debug!(author = %a.author, seq = a.seq, "published");
                Ok(ack(a))
            }
            Err(e) => Err(append_status(&e)),
        }
    }
}

#[tonic::async_trait]
impl LedgerApi for LedgerService {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let index = self.home_index(&caller, &request.author).await?;
        let body = request
            .body
            .ok_or_else(|| Status::invalid_argument("publish request has no body"))?;
        let (kind, bytes) = accord_core::body::encode(&body);
        self.publish_body(index, kind as i32, bytes).await
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let signed = request
            .into_inner()
            .entry
            .ok_or_else(|| Status::invalid_argument("submit request has no entry"))?;
        // The rules in their documented order: alliance and role before the signature.
        let decoded = {
            let state = self.ledger.state();
            let charter = state.charter();
            let decoded = entry::decode(signed, charter.rules().max_entry_bytes as usize)
                .map_err(|e| entry_status(&e))?;
            decoded
                .check_author(charter, |k| state.known_roles(k))
                .map_err(|e| entry_status(&e))?;
            decoded
        };
        let checked = SignatureChecked::single(&decoded);
        self.ledger
            .metrics()
            .verified(crate::metrics::Source::Client, 1);
        let checked = checked.map_err(|e| entry_status(&e))?;
        decoded.check_new_body().map_err(|e| entry_status(&e))?;
        self.ledger
            .submit(decoded, checked)
            .await
            .map(ack)
            .map_err(|e| {
                let status = append_status(&e);
                // "Ahead of this node's clock" misleads when it is this node's clock
                // that is behind: say so when the peers agree.
                let behind = self
                    .clock_check()
                    .and_then(|c| c.out_of_line_ms)
                    .filter(|off| *off > 0);
                match (&e, behind) {
                    (AppendError::Refused(EntryError::FromTheFuture { .. }), Some(off)) => {
                        Status::new(
                            status.code(),
                            format!(
                                "{}; but this node's clock is {} its peers', so the entry's \
                                 time may be right and this node's clock wrong",
                                status.message(),
                                crate::ledger::ClockCheck::describe(off)
                            ),
                        )
                    }
                    _ => status,
                }
            })
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        let clock = self.clock_check();
        // With the digest, the rest of the status describes the same snapshot.
        let (state, digest) = if request.get_ref().omit_digest {
            (self.ledger.state(), Vec::new())
        } else {
            let (state, digest) = self
                .ledger
                .digest()
                .await
                .map_err(|e| Status::internal(format!("computing the digest failed: {e}")))?;
            (state, digest.to_vec())
        };
        let charter = state.charter();
        let home: Vec<PublicId> = self
            .ledger
            .identities()
            .iter()
            .map(|i| i.public_id())
            .collect();
        // The charter's organisations in its order, then those the roster admitted
        // since, each with its standing in the current roster.
        let roster = state.roster();
        let organisations = charter
            .members()
            .iter()
            .map(|m| m.key)
            .chain(charter.secretaries().iter().map(|s| s.key))
            .chain(
                roster
                    .organisations()
                    .filter(|o| o.admitted_at > 0)
                    .map(|o| o.key),
            )
            .filter_map(|key| roster.organisation(&key))
            .map(|o| pb::Organisation {
                key: o.key.to_vec(),
                name: o.name.clone(),
                ec_id: o.ec_id.clone().unwrap_or_default(),
                secretary: o.is_active() && o.role == accord_core::Role::Secretary,
                home: o.logs().any(|log| home.contains(&log)),
                role: match o.status {
                    accord_core::roster::OrgStatus::Active => o.role.as_str(),
                    accord_core::roster::OrgStatus::Left { .. } => "left",
                    accord_core::roster::OrgStatus::Removed { .. } => "removed",
                }
                .to_owned(),
            })
            .collect();
        Ok(Response::new(pb::NodeStatus {
            alliance: charter.id().to_vec(),
            alliance_name: charter.name().to_string(),
            heads: state
                .heads()
                .map(|(author, head)| pb::Head {
                    author: author.to_vec(),
                    seq: head.seq,
                    id: head.id.to_vec(),
                })
                .collect(),
            digest,
            entries_digest: state.entries_digest().to_vec(),
            rules_version: accord_core::state::RULES_VERSION.to_string(),
            storage_failed: self.ledger.storage_failure().unwrap_or_default(),
            clock_offset_ms: clock.map_or(0, |c| c.offset_ms),
            clock_peers: clock.map_or(0, |c| c.peers as u32),
            clock_problem: clock.and_then(|c| c.problem()).unwrap_or_default(),
            clock_warning: clock.and_then(|c| c.warning()).unwrap_or_default(),
            roster_version: state.roster().version,
            open_proposals: state
                .roster()
                .proposals()
                .filter(|p| p.status == accord_core::roster::ProposalStatus::Open)
                .count() as u32,
            lost_entries: self
                .ledger
                .lost_entries(&state)
                .into_iter()
                .map(|l| pb::LostEntries {
                    author: l.author.to_vec(),
                    stored_seq: l.stored,
                    signed_seq: l.signed,
                    peer_seq: 0,
                })
                .collect(),
            lost_own_entries: self
                .ledger
                .lost_own_entries(&state)
                .into_iter()
                .map(|l| pb::LostEntries {
                    author: l.author.to_vec(),
                    stored_seq: l.stored,
                    signed_seq: l.signed,
                    peer_seq: l.on_peers,
                })
                .collect(),
            free_disk_bytes: self.ledger.store().free_space().unwrap_or(0),
            set_aside_count: state.set_aside_count(),
            set_aside: state
                .set_aside_entries()
                .take(SET_ASIDE_SHOWN)
                .map(|a| pb::SetAsideEntry {
                    author: a.author.to_vec(),
                    seq: a.seq,
                    id: a.id.to_vec(),
                    kind: a.kind,
                    reason: a.reason.to_string(),
                })
                .collect(),
            entries: state.entry_count(),
            organisations,
            version: env!("CARGO_PKG_VERSION").to_string(),
            peers: self
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|p| pb::PeerStatus {
                    name: p.name.clone(),
                    address: p.address.clone(),
                    connected: p.connected,
                    last_contact_ms: p.last_contact_ms.unwrap_or(0),
                    behind: p.behind,
                    received: p.received,
                    accepted: p.accepted,
                    refused: p.refused,
                    last_error: p.last_error.clone().unwrap_or_default(),
                    held: p.held(),
                    notes: p.notes,
                    pulls: p.pulls,
                    grafted: p.grafted.iter().map(|a| a.to_vec()).collect(),
                    refusals: p
                        .blocked
                        .iter()
                        .map(|(author, b)| pb::PeerRefusal {
                            author: author.to_vec(),
                            seq: b.seq,
                            reason: b.reason.clone(),
                            held_until_ms: b.held_until_ms.unwrap_or(0),
                        })
                        .collect(),
                })
                .collect(),
            frozen: state.frozen().map(|f| f.author.to_vec()).collect(),
            calendar_url: self
                .calendar
                .as_ref()
                .map(|(_, url)| url.clone())
                .unwrap_or_default(),
        }))
    }

    async fn get_charter(
        &self,
        _request: Request<pb::GetCharterRequest>,
    ) -> Result<Response<pb::GetCharterResponse>, Status> {
        let state = self.ledger.state();
        Ok(Response::new(pb::GetCharterResponse {
            charter: state.charter().bytes().to_vec(),
        }))
    }

    async fn get_roster(
        &self,
        _request: Request<pb::GetRosterRequest>,
    ) -> Result<Response<pb::RosterView>, Status> {
        let state = self.ledger.state();
        let home: Vec<PublicId> = self
            .ledger
            .identities()
            .iter()
            .map(|i| i.public_id())
            .collect();
        Ok(Response::new(to_proto::roster(state.roster(), &home)))
    }

    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Result<Response<pb::ListProposalsResponse>, Status> {
        let request = request.into_inner();
        // Newest first: keyed by (timestamp, id), read backwards.
        let page: PageRequest<(i64, EntryId)> =
            paging::list_request("proposals", request.page_size, &request.page_token)?;
        let state = self.ledger.state();
        let roster = state.roster();
        let mut all: Vec<&accord_core::roster::ProposalView> = roster
            .proposals()
            .filter(|p| !request.open_only || p.status == accord_core::roster::ProposalStatus::Open)
            .collect();
        all.sort_by_key(|p| std::cmp::Reverse((p.timestamp_ms, p.id)));
        let items = all
            .into_iter()
            .filter(|p| {
                page.after
                    .is_none_or(|after| (p.timestamp_ms, p.id) < after)
            })
            .map(|p| Ok(((p.timestamp_ms, p.id), to_proto::proposal(p, roster))));
        let (proposals, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::ListProposalsResponse {
            proposals,
            next_page_token,
        }))
    }

    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        use pb::propose_request::Change as C;
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let change = request
            .change
            .ok_or_else(|| Status::invalid_argument("proposal has no change"))?;
        let index = self.home_index(&caller, &request.author).await?;
        let state = self.ledger.state();
        let change = match change {
            C::Admit(a) => pb::proposal::Change::Admit(a),
            C::SetRole(r) => pb::proposal::Change::SetRole(r),
            C::Quorum(q) => pb::proposal::Change::Quorum(q),
            C::Remove(r) => {
                let organisation = PublicId::from_slice(&r.organisation)
                    .map_err(|e| Status::invalid_argument(format!("organisation: {e}")))?;
                let up_to_seq = if r.up_to_seq == 0 {
                    state.head(&organisation).map_or(0, |h| h.seq)
                } else {
                    r.up_to_seq
                };
                pb::proposal::Change::Remove(pb::Remove {
                    organisation: r.organisation,
                    up_to_seq,
                })
            }
            C::Recover(r) => {
                let organisation = PublicId::from_slice(&r.organisation)
                    .map_err(|e| Status::invalid_argument(format!("organisation: {e}")))?;
                let up_to_seq = match r.up_to_seq {
                    0 => recovery_cut(&state, &organisation),
                    n => n,
                };
                pb::proposal::Change::Recover(pb::Recover {
                    organisation: r.organisation,
                    key: r.key,
                    up_to_seq,
                })
            }
        };
        let body = pb::Proposal {
            roster_version: state.roster().version,
            change: Some(change),
            rationale: request.rationale,
        };
        drop(state);
        self.publish_body(
            index,
            pb::EntryKind::Proposal as i32,
            prost::Message::encode_to_vec(&body),
        )
        .await
    }

    async fn approve(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let index = self.home_index(&caller, &request.author).await?;
        let body = pb::Approval {
            proposal: request.proposal,
        };
        self.publish_body(
            index,
            pb::EntryKind::Approval as i32,
            prost::Message::encode_to_vec(&body),
        )
        .await
    }

    async fn object(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let index = self.home_index(&caller, &request.author).await?;
        let body = pb::Objection {
            proposal: request.proposal,
            reason: request.reason,
        };
        self.publish_body(
            index,
            pb::EntryKind::Objection as i32,
            prost::Message::encode_to_vec(&body),
        )
        .await
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let _one_at_a_time = self.rotating.lock().await;
        let index = self.home_index(&caller, &request.author).await?;
        let Some(path) = self.key_files.get(index).cloned() else {
            return Err(Status::failed_precondition(
                "this node did not read that identity's key from a file, so it has nowhere \
                 to keep a new key",
            ));
        };
        let author = self.ledger.identities()[index].public_id();
        {
            // The rules a rotation entry must meet, before a key is made for it.
            let state = self.ledger.state();
            let org = state.roster().organisation(&author);
            if !org.is_some_and(|o| o.is_active()) {
                return Err(Status::permission_denied(format!(
                    "{author} is not an active organisation of the roster: it may not rotate \
                     its key"
                )));
            }
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| {
            tracing::error!("no randomness for a new key: {e}");
            Status::internal("no randomness available for a new key")
        })?;
        let key = accord_core::Identity::from_seed(seed).signing_for(author);
        let new_key = key.key_id();
        // The new key is on disk before anything names it.
        let written = tokio::task::spawn_blocking({
            let (path, key) = (path.clone(), key.clone());
            move || crate::keyfile::write_next(&path, &key)
        })
        .await
        .map_err(|e| Status::internal(format!("writing the new key: {e}")))?;
        if let Err(e) = written {
            tracing::error!("cannot write the new key beside {}: {e}", path.display());
            return Err(Status::internal(
                "cannot write the new key beside the key file (see the node's log)",
            ));
        }
        let retired_key = {
            let state = self.ledger.state();
            let next = state.head(&author).map_or(1, |h| h.seq + 1);
            state.signing_key(&author, next)
        };
        let ack = self
            .ledger
            .rotate_key(index, key)
            .await
            .map_err(|e| append_status(&e))?;
        let retired = tokio::task::spawn_blocking({
            let path = path.clone();
            move || crate::keyfile::retire(&path, ack.seq)
        })
        .await
        .map_err(|e| Status::internal(format!("retiring the old key: {e}")))?;
        if let Err(e) = retired {
            // The node signs with the new key already; its next start finishes this.
            tracing::error!(
                "the key rotation of {author} is durable, but moving the key files failed: {e}"
            );
        }
        tracing::info!(%author, seq = ack.seq, key = %new_key, "rotated the key");
        Ok(Response::new(pb::RotateKeyResponse {
            id: ack.id.to_vec(),
            author: ack.author.to_vec(),
            seq: ack.seq,
            key: new_key.to_vec(),
            retired_key: retired_key.to_vec(),
        }))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let index = self.home_index(&caller, &request.author).await?;
        let body = pb::Leave {
            reason: request.reason,
        };
        self.publish_body(
            index,
            pb::EntryKind::Leave as i32,
            prost::Message::encode_to_vec(&body),
        )
        .await
    }

    async fn announce(
        &self,
        request: Request<pb::AnnounceRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        joining::announce(self, request).await
    }

    async fn get_invitation(
        &self,
        request: Request<pb::GetInvitationRequest>,
    ) -> Result<Response<pb::Invitation>, Status> {
        joining::invitation(self, request).await
    }

    async fn list_intentions(
        &self,
        request: Request<pb::ListIntentionsRequest>,
    ) -> Result<Response<pb::ListIntentionsResponse>, Status> {
        let request = request.into_inner();
        let organisation = optional_key("organisation", &request.organisation)?;
        query_ids(&request.ballot, &request.election)?;
        let page: PageRequest<(String, PublicId)> =
            paging::list_request("intentions", request.page_size, &request.page_token)?;
        let after = match &page.after {
            Some((ballot, organisation)) => Some((
                BallotId::parse(ballot)
                    .map_err(|_| Status::invalid_argument("page_token names no ballot"))?,
                *organisation,
            )),
            None => None,
        };
        let state = self.ledger.state();
        let items = state
            .intentions_after(after.as_ref())
            .filter(|v| request.ballot.is_empty() || v.intention.ballot.as_str() == request.ballot)
            .filter(|v| {
                request.election.is_empty()
                    || v.intention.ballot.as_str() == request.election
                    || v.intention
                        .ballot
                        .election_ids()
                        .contains(&request.election)
            })
            .filter(|v| organisation.is_none_or(|o| v.organisation == o))
            .map(|v| {
                Ok((
                    (v.intention.ballot.as_str().to_owned(), v.organisation),
                    to_proto::intention_view(&v, state.roster()),
                ))
            });
        let (intentions, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::ListIntentionsResponse {
            intentions,
            next_page_token,
        }))
    }

    async fn list_clashes(
        &self,
        request: Request<pb::ListClashesRequest>,
    ) -> Result<Response<pb::ListClashesResponse>, Status> {
        let request = request.into_inner();
        let page = paging::list_request("clashes", request.page_size, &request.page_token)?;
        clash_list(&self.ledger, &self.derived, &request, &page)
            .await
            .map(Response::new)
    }

    type WatchClashesStream = ClashStream;
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let who = caller(&request)?.name.clone();
        let permit = self.streams.acquire(
            request.remote_addr(),
            &format!("operator:{who}"),
            &format!("operator {who:?}"),
        )?;
        tracing::info!(operator = %who, "backup started");
        let mut chunks = crate::backup::produce(&self.ledger);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            // Holds the stream's place until the backup ends.
            let _permit = permit;
            loop {
                let next = tokio::select! {
                    next = chunks.recv() => Some(next),
                    _ = stopping.wait_for(|s| *s) => None,
                };
                let message = match next {
                    None => Err(Status::unavailable("the node is stopping")),
                    Some(None) => return,
                    Some(Some(Ok(data))) => Ok(pb::BackupChunk { data }),
                    Some(Some(Err(e))) => Err(Status::internal(format!("backup failed: {e}"))),
                };
                let last = message.is_err();
                if tx.send(message).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as BackupStream,
        ))
    }

    async fn watch_clashes(
        &self,
        request: Request<pb::ListClashesRequest>,
    ) -> Result<Response<Self::WatchClashesStream>, Status> {
        let who = caller(&request)?.name.clone();
        let permit = self.streams.acquire(
            request.remote_addr(),
            &format!("operator:{who}"),
            &format!("operator {who:?}"),
        )?;
        let request = request.into_inner();
        // Every message is the first page; its next_page_token pages on through
        // ListClashes.
        let page = paging::list_request("clashes", request.page_size, "")?;
        let mut feed = self
            .derived
            .clash_feed(&self.ledger, &self.stopping)
            .await?;
        feed.borrow_and_update();
        let first = clash_list(&self.ledger, &self.derived, &request, &page).await?;
        let ledger = self.ledger.clone();
        let mut stopping = self.stopping.clone();
        let stream = async_stream(move |tx| async move {
            // Holds the stream's place until the stream ends.
            let _permit = permit;
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            loop {
                // Woken only when the clash list changed, not at every publish.
                tokio::select! {
                    changed = feed.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = stopping.wait_for(|s| *s) => return,
                    () = tx.closed() => return,
                }
                let clashes = feed.borrow_and_update().clone();
                let next = clash_page(&clashes, ledger.state().roster(), &request, &page);
                let next = match next {
                    Ok(next) => next,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if next != last {
                    last = next;
                    if tx.send(Ok(last.clone())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_statements(
        &self,
        request: Request<pb::ListStatementsRequest>,
    ) -> Result<Response<pb::ListStatementsResponse>, Status> {
        let request = request.into_inner();
        let page: PageRequest<(i64, EntryId)> =
            paging::list_request("statements", request.page_size, &request.page_token)?;
        let state = self.ledger.state();
        let items = state
            .statements_after(page.after)
            .map(|v| Ok(((v.timestamp_ms, v.id), to_proto::statement_view(&v))));
        let (statements, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::ListStatementsResponse {
            statements,
            next_page_token,
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let request = request.into_inner();
        let from = time_bound("from", &request.from)?;
        let to = time_bound("to", &request.to)?;
        let page: PageRequest<EventKey> =
            paging::list_request("events", request.page_size, &request.page_token)?;
        let after = page.after.as_ref().map(state_event_key).transpose()?;
        let state = self.ledger.state();
        let items = state
            .events_after(after.as_ref())
            // In start order: nothing after `to` can overlap.
            .take_while(|v| to.is_none_or(|t| v.event.start_utc < t))
            .filter(|v| request.include_cancelled || !v.event.cancelled)
            .filter(|v| from.is_none_or(|f| v.event.end_utc > f))
            .map(|v| Ok((event_key(&v), to_proto::event_view(&v))));
        let (events, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn list_event_clashes(
        &self,
        request: Request<pb::ListEventClashesRequest>,
    ) -> Result<Response<pb::ListEventClashesResponse>, Status> {
        let request = request.into_inner();
        let page: PageRequest<(EventKey, EventKey)> =
            paging::list_request("event clashes", request.page_size, &request.page_token)?;
        let state = self.ledger.state();
        // Each side is looked up in the events index (not searched for per clash).
        let view = |r: &accord_core::clash::EventRef| {
            state.event(&r.author, &r.uid).ok_or_else(|| {
                Status::internal(format!("event clash names an unknown event {}", r.uid))
            })
        };
        let clashes = self.derived.event_clashes(&state).await?;
        let items = clashes.iter().filter_map(|c| {
            let pair = view(&c.first).and_then(|first| Ok((first, view(&c.second)?)));
            let (first, second) = match pair {
                Ok(pair) => pair,
                Err(e) => return Some(Err(e)),
            };
            let key = (event_key(&first), event_key(&second));
            if page.after.as_ref().is_some_and(|after| key <= *after) {
                return None;
            }
            Some(Ok((
                key,
                pb::EventClash {
                    first: Some(to_proto::event_view(&first)),
                    second: Some(to_proto::event_view(&second)),
                    reason: c.reason.to_string(),
                },
            )))
        });
        let (clashes, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::ListEventClashesResponse {
            clashes,
            next_page_token,
        }))
    }

    async fn list_resolutions(
        &self,
        request: Request<pb::ListResolutionsRequest>,
    ) -> Result<Response<pb::ListResolutionsResponse>, Status> {
        let request = request.into_inner();
        let page: PageRequest<(i64, EntryId)> =
            paging::list_request("resolutions", request.page_size, &request.page_token)?;
        let state = self.ledger.state();
        let items = state
            .resolutions_after(page.after)
            .map(|v| Ok(((v.timestamp_ms, v.id), to_proto::resolution_view(&v))));
        let (resolutions, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::ListResolutionsResponse {
            resolutions,
            next_page_token,
        }))
    }

    async fn get_log(
        &self,
        request: Request<pb::GetLogRequest>,
    ) -> Result<Response<pb::GetLogResponse>, Status> {
        let request = request.into_inner();
        let author = optional_key("author", &request.author)?
            .ok_or_else(|| Status::invalid_argument("author is required"))?;
        let page: PageRequest<(PublicId, u64)> = paging::request(
            "log",
            request.limit,
            &request.page_token,
            MAX_LOG_PAGE as usize,
            MAX_LOG_PAGE as usize,
        )?;
        let from = match page.after {
            Some((a, _)) if a != author => {
                return Err(Status::invalid_argument(
                    "page_token is for another author's log",
                ));
            }
            Some((_, seq)) => seq.saturating_add(1),
            None => request.from_seq.max(1),
        };
        // Only what the state has applied: never an entry that is not yet durable.
        let head = {
            use accord_core::entry::Logs;
            self.ledger.state().head(&author).map_or(0, |h| h.seq)
        };
        if from > head {
            return Ok(Response::new(pb::GetLogResponse::default()));
        }
        // One more than the page, to know whether another page follows.
        let count =
            usize::try_from((head - from + 1).min(page.size as u64 + 1)).unwrap_or(usize::MAX);
        let stored = self
            .ledger
            .read_log(author, from, count)
            .await
            .map_err(|e| Status::data_loss(e.to_string()))?;
        let items = stored.iter().zip(from..).map(|(s, seq)| {
            <pb::SignedEntry as prost::Message>::decode(s.bytes.as_slice())
                .map(|e| ((author, seq), e))
                .map_err(|e| Status::internal(format!("stored entry does not decode: {e}")))
        });
        let (entries, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::GetLogResponse {
            entries,
            next_page_token,
        }))
    }

    async fn create_feed_link(
        &self,
        request: Request<pb::CreateFeedLinkRequest>,
    ) -> Result<Response<pb::FeedLink>, Status> {
        let links = self.feed_links()?;
        let base = self.calendar.as_ref().map_or("", |(_, url)| url.as_str());
        let made = links
            .create(&request.get_ref().label, Utc::now().timestamp_millis())
            .await
            .map_err(link_status)?;
        tracing::info!(id = %made.info.id, label = %made.info.record.label, "feed link created");
        let page_url = format!("{base}/m/{}/", made.token);
        let feed_url = format!("{page_url}calendar.ics");
        let webcal_url = format!(
            "webcal://{}",
            feed_url
                .split_once("://")
                .map_or(feed_url.as_str(), |(_, rest)| rest)
        );
        Ok(Response::new(pb::FeedLink {
            token: made.token,
            page_url,
            feed_url,
            webcal_url,
            ..link_view(made.info)
        }))
    }

    async fn revoke_feed_link(
        &self,
        request: Request<pb::RevokeFeedLinkRequest>,
    ) -> Result<Response<pb::FeedLink>, Status> {
        let revoked = self
            .feed_links()?
            .revoke(&request.get_ref().link, Utc::now().timestamp_millis())
            .await
            .map_err(link_status)?;
        tracing::info!(id = %revoked.id, label = %revoked.record.label, "feed link revoked");
        Ok(Response::new(link_view(revoked)))
    }

    async fn list_feed_links(
        &self,
        request: Request<pb::ListFeedLinksRequest>,
    ) -> Result<Response<pb::ListFeedLinksResponse>, Status> {
        let request = request.into_inner();
        let page: PageRequest<(i64, String)> =
            paging::list_request("feed links", request.page_size, &request.page_token)?;
        let links = self.feed_links()?.list().map_err(link_status)?;
        let items = links
            .into_iter()
            .map(|l| ((l.record.created_ms, l.id.clone()), l))
            .filter(|(key, _)| page.after.as_ref().is_none_or(|after| key > after))
            .map(|(key, l)| Ok((key, link_view(l))));
        let (links, next_page_token) = page.fill(items)?;
        Ok(Response::new(pb::ListFeedLinksResponse {
            links,
            next_page_token,
        }))
    }
}

/// A stream fed by a task through a small channel; the task sees when the client
/// goes away (`tx.closed()`).
fn async_stream<F, Fut>(body: F) -> ClashStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::ListClashesResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Where a recovery of `organisation` cuts its current log by default: the head
/// this node holds of it, or the seq before a fork of it (the entries both sides
/// of a fork signed count nowhere).
fn recovery_cut(state: &accord_core::State, organisation: &PublicId) -> u64 {
    let log = state
        .roster()
        .organisation(organisation)
        .map_or(*organisation, |o| o.log());
    let head = state.head(&log).map_or(0, |h| h.seq);
    match state.forks().find(|f| f.author == log) {
        Some(fork) => head.min(fork.seq - 1),
        None => head,
    }
}
