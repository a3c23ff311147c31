//! The derived state of an alliance: a pure function of the set of accepted entries.
//!
//! [`State::apply`] takes each author's entries in log order (the log rules already
//! guarantee that), in any interleaving of authors. Every index is keyed so that the
//! interleaving cannot matter, and every view is computed from the indexes with
//! deterministic tie-breaks, so the same entries always give the same views and the
//! same [`State::digest`]. Nothing here reads a clock: views that depend on "now"
//! (upcoming events, open deadlines) are filtered by the caller.
//!
//! Its indexes are persistent collections ([`imbl`]): cloning a `State` is O(1) and
//! the clone shares everything with the original until one of them changes, which
//! then copies only the tree nodes on its path. The node's writer applies each batch
//! to a clone and publishes it whole, so readers keep working on the snapshot they
//! took while the writer moves on (see the node's `ledger` module).

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet, Vector};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ballot::BallotId;
use crate::body::{Body, Event, Intention, Resolution, Statement};
use crate::charter::Charter;
use crate::clash::{self, Clash, EventClash};
use crate::entry::{
    self, DecodedEntry, EntryError, LogHead, Logs, SignatureChecked, VerifiedEntry,
};
use crate::id::{EntryId, PublicId};
use crate::reason::{Code, Reason};
use crate::roster::{Action, GovEntry, Known, RoleSet, Roster};
use crate::sethash::SetHash;

/// Evidence that an author signed two different entries with the same seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForkProof {
    pub author: PublicId,
    pub seq: u64,
    /// The two encoded `SignedEntry`s, in ascending order of entry id.
    #[serde(with = "hex_bytes")]
    pub first: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub second: Vec<u8>,
}

/// The order in which fork proofs about one author are preferred: lowest first.
fn fork_rank(p: &ForkProof) -> (u64, &[u8], &[u8]) {
    (p.seq, &p.first, &p.second)
}

impl ForkProof {
    /// Whether this proof is preferred to `other` (about the same author): every
    /// node keeps the lowest by (seq, first, second), whatever the arrival order.
    pub fn outranks(&self, other: &ForkProof) -> bool {
        fork_rank(self) < fork_rank(other)
    }
}

/// Why a fork proof from elsewhere was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkProofError {
    #[error("fork proof holds an invalid entry: {0}")]
    Entry(#[from] EntryError),
    #[error("fork proof entries have different authors or seqs")]
    Unrelated,
    #[error("fork proof holds the same entry twice")]
    SameEntry,
    #[error(
        "fork proof of {author} at seq {seq} cannot be checked yet: this node holds its log \
         only up to seq {held}, and who signs seq {seq} depends on the entries before it"
    )]
    LogNotHeld {
        author: PublicId,
        seq: u64,
        held: u64,
    },
}

impl ForkProof {
    /// Checks a fork proof received from elsewhere: two encoded `SignedEntry`s by one
    /// author with one seq, different bytes, each validly signed by a member or
    /// secretary of this alliance and meeting the envelope rules (the bodies are
    /// evidence, not read).
    pub fn verify(charter: &Charter, a: &[u8], b: &[u8]) -> Result<Self, ForkProofError> {
        let max = charter.rules().max_entry_bytes as usize;
        let a = entry::decode_bytes(a, max)?;
        let b = entry::decode_bytes(b, max)?;
        if a.author() != b.author() || a.seq() != b.seq() {
            return Err(ForkProofError::Unrelated);
        }
        if a.id() == b.id() {
            return Err(ForkProofError::SameEntry);
        }
        let (author, seq) = (a.author(), a.seq());
        let mut pair = [a, b];
        pair.sort_by_key(DecodedEntry::id);
        let [a, b] = pair;
        let (first, second) = (a.to_bytes(), b.to_bytes());
        for e in [a, b] {
            let checked = SignatureChecked::single(&e)?;
            VerifiedEntry::reload(e, charter, checked)?;
        }
        Ok(Self {
            author,
            seq,
            first,
            second,
        })
    }
}

impl ForkProof {
    /// Checks that both entries are signed by the key that signs the author's log at
    /// the fork's seq ([`Logs::signing_key`]), which only the log before it tells:
    /// a key the author retired, or any other key, cannot freeze the log.
    /// [`ForkProof::verify`] checks each signature against its entry's signer.
    pub fn check_signers(&self, logs: &impl Logs, max_bytes: usize) -> Result<(), ForkProofError> {
        let held = logs.head(&self.author).map_or(0, |h| h.seq);
        if held + 1 < self.seq {
            return Err(ForkProofError::LogNotHeld {
                author: self.author,
                seq: self.seq,
                held,
            });
        }
        for bytes in [&self.first, &self.second] {
            entry::decode_bytes(bytes, max_bytes)?.check_signer(logs)?;
        }
        Ok(())
    }
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&hex::encode(bytes))
    }
}

/// An organisation's current position on a ballot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntentionView {
    pub organisation: PublicId,
    pub intention: Intention,
    pub entry: EntryId,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementView {
    pub id: EntryId,
    pub author: PublicId,
    pub statement: Statement,
    pub timestamp_ms: i64,
    /// Co-signatories who have endorsed, in key order.
    pub endorsed_by: Vec<PublicId>,
    /// Other members or secretaries who endorsed, in key order.
    pub supporters: Vec<PublicId>,
    /// Has co-signatories, and all of them endorsed.
    pub joint: bool,
    pub withdrawn: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    pub author: PublicId,
    pub event: Event,
    /// The author first, then the other organisers in the order given.
    pub organisers: Vec<PublicId>,
    /// Updates after the first publication (iCalendar SEQUENCE).
    pub sequence: u32,
    pub first_published_ms: i64,
    pub last_modified_ms: i64,
    /// The last change the public could see: a version that was public, or the one
    /// that made a public event alliance-only. None if it was never public. Public
    /// calendars date themselves by this, so they do not reveal when alliance-only
    /// events change.
    pub last_public_change_ms: Option<i64>,
    pub entry: EntryId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolutionView {
    pub id: EntryId,
    pub author: PublicId,
    pub resolution: Resolution,
    pub timestamp_ms: i64,
    pub state: clash::ClashState,
}

/// Everything derived, in canonical order: what the digest covers.
#[derive(Debug, Clone, Serialize)]
pub struct Derived {
    pub alliance: String,
    pub heads: BTreeMap<PublicId, (u64, EntryId)>,
    pub forks: Vec<ForkProof>,
    pub intentions: Vec<IntentionView>,
    pub clashes: Vec<Clash>,
    pub resolutions: Vec<ResolutionView>,
    pub statements: Vec<StatementView>,
    pub events: Vec<EventView>,
    pub event_clashes: Vec<EventClash>,
    pub set_aside: Vec<SetAside>,
    /// The roster, once any governance entry exists (left out before, so the
    /// digests of alliances that never changed their roster stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roster: Option<Roster>,
}

/// An entry this release stores and relays but leaves out of its views: its kind is
/// unknown here, or its body does not meet this release's body rules (an older or
/// newer release signed it). Its log position still counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetAside {
    pub author: PublicId,
    pub seq: u64,
    pub id: EntryId,
    pub kind: i32,
    /// Why: a code (what the digest holds) and this release's words.
    pub reason: Reason,
}

#[derive(Debug, Clone)]
struct AuthorLog {
    ids: Vector<EntryId>,
    head_timestamp_ms: i64,
    /// The log's key rotations: (first seq the new key signs, the key).
    keys: Vector<(u64, PublicId)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Record<T> {
    pub(crate) value: T,
    pub(crate) entry: EntryId,
    pub(crate) author: PublicId,
    pub(crate) seq: u64,
    pub(crate) timestamp_ms: i64,
    /// What the entry had seen ([`State::seen_by`]).
    pub(crate) seen: Option<Seen>,
}

/// What an entry had seen: the highest seq of each other author's log that it or an
/// earlier entry of its log named in its causal reference (`Entry.seen`).
pub type Seen = OrdMap<PublicId, u64>;

impl<T> Record<T> {
    /// Whether this entry came after entry `seq` of `author` in causal order: it is
    /// later in the same log, or it (or an earlier entry of its log) named that
    /// entry as seen. An entry of a log that never carried a causal reference
    /// (signed before the field existed) is compared by the clocks instead.
    pub(crate) fn is_after(&self, author: &PublicId, seq: u64, timestamp_ms: i64) -> bool {
        if self.author == *author {
            return self.seq > seq;
        }
        match &self.seen {
            Some(seen) => seen.get(author).is_some_and(|s| *s >= seq),
            None => self.timestamp_ms > timestamp_ms,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EventHistory {
    pub(crate) first_published_ms: i64,
    /// Versions after the first.
    pub(crate) updates: u32,
    pub(crate) last_public_change_ms: Option<i64>,
    pub(crate) last: Record<Event>,
}

impl<T> Record<T> {
    fn of(entry: &VerifiedEntry, seen: &Option<Seen>, value: T) -> Self {
        Self {
            value,
            entry: entry.id(),
            author: entry.author(),
            seq: entry.seq(),
            timestamp_ms: entry.timestamp_ms(),
            seen: seen.clone(),
        }
    }
}

/// The rules that derive the views from the entries (body rules, deadlines and the
/// bank-holiday table, time-zone handling, the views' fields). A release that
/// changes what the views hold for the same entries bumps it, so a state digest is
/// always shown with the rules it was computed under. Version 1 was every release
/// before the label existed; 2 takes a local ballot's nation from its council and
/// counts intentions on election ids nowhere; 3 stores entries whose bodies it does
/// not accept and lists them as set aside; 4 orders entries of different authors by
/// their causal references, not their clocks (resolutions in force and breaches,
/// the governance fold); 5 counts a log a recovery by quorum started as its
/// organisation's; 6 defines the state digest over set hashes of the views' items
/// ([`digest_of`]) rather than over their JSON whole; 7 holds why a proposal is
/// void or refused, a departure refused or an entry set aside as a code
/// ([`crate::reason::Code`]) rather than in this release's words.
pub const RULES_VERSION: &str = "accord-rules/7";

/// The derived state of one alliance.
#[derive(Debug, Clone)]
pub struct State {
    charter: Arc<Charter>,
    logs: OrdMap<PublicId, AuthorLog>,
    forks: OrdMap<PublicId, ForkProof>,
    entries: u64,
    /// Each organisation's position per ballot: its latest intention entry. Earlier
    /// ones are in the log; no view needs them, so memory stays one record per
    /// (ballot, organisation) however often positions change.
    /// With the hash of each position's view, to take out of the view's set hash
    /// when it changes ([`State::digest`]).
    pub(crate) intentions: OrdMap<(BallotId, PublicId), (Record<Intention>, [u8; 32])>,
    /// Statements by (timestamp, id), the order of their view: read in order
    /// without a lookup per statement. With the hash of each one's view, as for
    /// positions.
    statements: OrdMap<(i64, EntryId), HeldStatement>,
    /// Each statement's timestamp, to find its place when an endorsement or a
    /// withdrawal changes its view.
    statement_at: OrdMap<EntryId, i64>,
    endorsements: OrdMap<EntryId, OrdSet<PublicId>>,
    withdrawals: OrdMap<EntryId, OrdSet<PublicId>>,
    /// Each author's events by uid: the latest version, with what the views need of
    /// the earlier ones.
    pub(crate) events: OrdMap<(PublicId, String), EventHistory>,
    pub(crate) resolutions: OrdMap<EntryId, (PublicId, Record<Resolution>)>,
    /// Resolutions in the order of their view: (timestamp, id).
    resolution_order: OrdSet<(i64, EntryId)>,
    /// Events in the order of their view (the current version's start, uid,
    /// author), with the hash of each event's view ([`State::digest`]).
    event_order: OrdMap<EventKey, [u8; 32]>,
    /// Entries in no view (unknown kind, or a body this release does not accept),
    /// by (author, seq), with the hash of each ([`State::digest`]).
    set_aside: OrdMap<(PublicId, u64), (SetAside, [u8; 32])>,
    /// Governance entries in the fold's order (timestamp, author, seq).
    governance: OrdMap<(i64, PublicId, u64), GovEntry>,
    /// Proposals found in the sides of fork proofs (an author's entries from its
    /// fork's seq on are never applied): one that another author approved keeps
    /// counting, since the alliance relied on it (see [`State::record_fork`]).
    forked_proposals: OrdMap<EntryId, GovEntry>,
    /// Every key the charter or a proposal names (grows only).
    known: Arc<Known>,
    /// The roster folded from `governance`.
    roster: Arc<Roster>,
    /// While rebuilding the views: the roster the whole set of entries gives, which
    /// the views count by instead of the roster folded so far.
    pinned: Option<Arc<Roster>>,
    /// Set when the roster changed what counts for entries already applied: the
    /// views must be rebuilt from every entry ([`State::from_entries_and_forks`], or
    /// the node's reload) before they are read.
    stale: bool,
    /// Keys named by entries set aside because the roster did not know them: if one
    /// joins the roster, the views must be rebuilt.
    party_waits: OrdSet<PublicId>,
    /// What each author's head entry had seen (None: its log never carried a
    /// causal reference).
    seen: OrdMap<PublicId, Seen>,
    /// The set hashes of the large views' item hashes ([`State::digest`]).
    sets: Arc<ViewSets>,
}

/// The set hash ([`SetHash`]) of each large view's item hashes, kept by
/// [`State::apply`] as items come, change and go.
#[derive(Debug, Clone, Default)]
struct ViewSets {
    intentions: SetHash,
    statements: SetHash,
    events: SetHash,
    set_aside: SetHash,
}

/// A statement held: its organisation, its record and the hash of its view.
type HeldStatement = (PublicId, Record<Statement>, [u8; 32]);

/// Where an event sits in [`State::events`]: start, uid, author.
pub type EventKey = (DateTime<Utc>, String, PublicId);

impl State {
    pub fn new(charter: Charter) -> Self {
        Self {
            governance: OrdMap::new(),
            forked_proposals: OrdMap::new(),
            known: Arc::new(Known::from_charter(&charter)),
            roster: Arc::new(Roster::from_charter(&charter)),
            pinned: None,
            stale: false,
            party_waits: OrdSet::new(),
            seen: OrdMap::new(),
            sets: Arc::new(ViewSets::default()),
            charter: Arc::new(charter),
            logs: OrdMap::new(),
            forks: OrdMap::new(),
            entries: 0,
            intentions: OrdMap::new(),
            statements: OrdMap::new(),
            statement_at: OrdMap::new(),
            endorsements: OrdMap::new(),
            withdrawals: OrdMap::new(),
            events: OrdMap::new(),
            resolutions: OrdMap::new(),
            resolution_order: OrdSet::new(),
            event_order: OrdMap::new(),
            set_aside: OrdMap::new(),
        }
    }

    /// The state of a set of entries given in any order, duplicates allowed: each
    /// author's entries are applied in seq order.
    pub fn from_entries<'a>(
        charter: Charter,
        entries: impl IntoIterator<Item = &'a VerifiedEntry>,
    ) -> Self {
        Self::from_entries_and_forks(charter, [], entries)
    }

    pub fn charter(&self) -> &Charter {
        &self.charter
    }

    /// Number of entries applied.
    pub fn entry_count(&self) -> u64 {
        self.entries
    }

    /// Every author's head, in key order.
    pub fn heads(&self) -> impl Iterator<Item = (PublicId, LogHead)> + '_ {
        self.logs.iter().filter_map(|(author, log)| {
            let id = *log.ids.back()?;
            Some((
                *author,
                LogHead {
                    seq: log.ids.len() as u64,
                    id,
                    timestamp_ms: log.head_timestamp_ms,
                },
            ))
        })
    }

    pub fn forks(&self) -> impl Iterator<Item = &ForkProof> {
        self.forks.values()
    }

    /// The fork proofs of logs still frozen: those of logs a recovery replaced
    /// are evidence only (their organisation goes on in a new log).
    pub fn frozen(&self) -> impl Iterator<Item = &ForkProof> {
        self.forks.values().filter(|f| {
            self.roster
                .owner(&f.author)
                .is_none_or(|o| o.log() == f.author)
        })
    }

    /// Records a fork proof. The author's log is frozen at the fork: nothing from
    /// the fork's seq on is accepted from them (earlier entries still are), and none of their entries from the fork's seq on counts in
    /// any view (the two sides of the fork are only evidence). Of several proofs
    /// about one author the lowest (seq, first, second) is kept, so every node that
    /// has seen the same proofs keeps the same one.
    ///
    /// Returns true when entries already applied no longer count: the caller must
    /// rebuild the state ([`State::from_entries_and_forks`]).
    pub fn record_fork(&mut self, proof: ForkProof) -> bool {
        if !self.fork_is_news(&proof) {
            return false;
        }
        let applied = self
            .logs
            .get(&proof.author)
            .map_or(0, |l| l.ids.len() as u64);
        let rebuild = applied >= proof.seq;
        // A proposal on either side stays known (keys it names may have signed
        // entries already), and counts if another author approved it.
        let author = proof.author;
        self.forked_proposals = self
            .forked_proposals
            .iter()
            .filter(|(_, g)| g.author != author)
            .map(|(id, g)| (*id, g.clone()))
            .collect();
        let max = self.charter.rules().max_entry_bytes as usize;
        for side in [&proof.first, &proof.second] {
            let Ok(entry) = entry::decode_bytes(side, max) else {
                continue;
            };
            if let Ok(body) = entry.check_body()
                && let Some(action @ Action::Propose(_)) = body.governance()
            {
                let seen = entry
                    .seen()
                    .map(|heads| heads.iter().copied().collect::<Seen>());
                self.forked_proposals.insert(
                    entry.id(),
                    GovEntry {
                        id: entry.id(),
                        author,
                        seq: entry.seq(),
                        timestamp_ms: entry.timestamp_ms(),
                        action,
                        seen,
                    },
                );
            }
        }
        self.forks.insert(proof.author, proof);
        self.relearn();
        self.refold();
        rebuild
    }

    /// Whether `proof` would replace what is known of its author's fork (there is
    /// none yet, or it ranks lower).
    pub fn fork_is_news(&self, proof: &ForkProof) -> bool {
        self.forks
            .get(&proof.author)
            .is_none_or(|old| fork_rank(proof) < fork_rank(old))
    }

    /// The state of a set of entries and fork proofs, in any order, duplicates
    /// allowed.
    pub fn from_entries_and_forks<'a>(
        charter: Charter,
        forks: impl IntoIterator<Item = ForkProof>,
        entries: impl IntoIterator<Item = &'a VerifiedEntry>,
    ) -> Self {
        let forks: Vec<ForkProof> = forks.into_iter().collect();
        let mut sorted: BTreeMap<(PublicId, u64), &VerifiedEntry> = BTreeMap::new();
        for entry in entries {
            sorted.insert((entry.author(), entry.seq()), entry);
        }
        let pass = |pinned: Option<Arc<Roster>>| {
            let mut state = Self::new(charter.clone());
            state.pinned = pinned;
            for proof in forks.iter().cloned() {
                state.record_fork(proof);
            }
            for entry in sorted.values() {
                state.apply(entry);
            }
            state
        };
        let first = pass(None);
        if !first.views_stale() {
            return first;
        }
        let mut second = pass(Some(first.roster.clone()));
        second.unpin();
        second
    }

    /// Whether the roster changed what counts for entries already applied, so the
    /// views are out of date until rebuilt from every entry: by
    /// [`State::from_entries_and_forks`], or by applying every entry again to a
    /// [`State::pinned_to`] this state's roster and then [`State::unpin`].
    pub fn views_stale(&self) -> bool {
        self.stale
    }

    /// An empty state whose views count by `roster` (the roster of the whole set of
    /// entries about to be applied) rather than by the roster folded so far.
    pub fn pinned_to(charter: Charter, roster: Arc<Roster>) -> Self {
        let mut state = Self::new(charter);
        state.pinned = Some(roster);
        state
    }

    /// Ends a rebuild begun by [`State::pinned_to`]: every entry has been applied,
    /// so the roster folded equals the pinned one.
    pub fn unpin(&mut self) {
        if let Some(pinned) = self.pinned.take() {
            debug_assert_eq!(
                *pinned, *self.roster,
                "the rebuilt roster is the pinned one"
            );
        }
        self.stale = false;
    }

    /// The roster as the entries applied derive it.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// An `Arc` of the roster, to pin a rebuild to.
    pub fn roster_arc(&self) -> Arc<Roster> {
        self.roster.clone()
    }

    /// The first fork proof held whose entries are not signed by the key of the
    /// author's log at its seq (see [`ForkProof::check_signers`]): for a store or
    /// backup, whose proofs are read before the entries that tell who signs.
    pub fn misfiled_fork(&self) -> Option<(PublicId, ForkProofError)> {
        let max = self.charter.rules().max_entry_bytes as usize;
        self.forks
            .values()
            .find_map(|p| p.check_signers(self, max).err().map(|e| (p.author, e)))
    }

    /// Authors of applied entries that neither the charter nor any proposal names
    /// (a store holding one was tampered with).
    pub fn unknown_authors(&self) -> Vec<PublicId> {
        self.logs
            .keys()
            .filter(|k| self.known.roles(k).is_none())
            .copied()
            .collect()
    }

    /// Every key the charter or a proposal held here names, with its possible roles.
    pub fn known(&self) -> &Known {
        &self.known
    }

    fn counting_roster(&self) -> &Roster {
        self.pinned.as_deref().unwrap_or(&self.roster)
    }

    /// Folds the roster again after a governance entry, or once an entry is stamped
    /// past a deadline; marks the views stale if what counts changed for an author
    /// whose entries were applied.
    fn refold(&mut self) {
        let logs = &self.logs;
        let witness = |log: &PublicId| logs.get(log).map_or(i64::MIN, |l| l.head_timestamp_ms);
        let mut roster = Roster::fold(&self.charter, self.folded(), &witness);
        for (author, log) in self.logs.iter().filter(|(_, l)| !l.keys.is_empty()) {
            roster.set_keys(author, &key_history(author, log));
        }
        self.install(roster);
    }

    /// Folds governance entry `entry` in: appended to the roster when that gives
    /// the same as a whole fold ([`Roster::append`]), else by folding again.
    fn fold_in(&mut self, entry: &GovEntry) {
        let relied_on = matches!(&entry.action,
            Action::Approve(id) if self.forked_proposals.contains_key(id));
        if !relied_on {
            let logs = &self.logs;
            let witness = |log: &PublicId| logs.get(log).map_or(i64::MIN, |l| l.head_timestamp_ms);
            let mut roster = (*self.roster).clone();
            if roster.append(entry, &witness) {
                self.install(roster);
                return;
            }
        }
        self.refold();
    }

    /// Makes `roster` the state's, marking the views stale if what counts changed
    /// for an author whose entries were applied.
    fn install(&mut self, roster: Roster) {
        let before = self.roster.counting();
        if self.pinned.is_none() && !self.stale {
            let after = roster.counting();
            if before != after {
                let changed = before
                    .iter()
                    .filter(|(k, v)| after.get(k) != Some(v))
                    .map(|(k, _)| k)
                    .chain(after.keys().filter(|k| !before.contains_key(k)));
                for key in changed {
                    if self.logs.contains_key(key) || self.party_waits.contains(key) {
                        self.stale = true;
                    }
                }
            }
        }
        self.roster = Arc::new(roster);
    }

    /// The governance entries the roster is folded from: every one applied, and
    /// each proposal of a fork's sides that an entry of another author approved.
    fn folded(&self) -> impl Iterator<Item = &GovEntry> {
        let relied_on = self.forked_proposals.values().filter(|p| {
            self.governance.values().any(|g| {
                g.author != p.author && matches!(&g.action, Action::Approve(id) if *id == p.id)
            })
        });
        self.governance.values().chain(relied_on)
    }

    /// Makes known what the governance entries name: the charter's keys, then
    /// every key a proposal by a known author names, until nothing changes.
    fn relearn(&mut self) {
        let mut known = Known::from_charter(&self.charter);
        loop {
            let mut changed = false;
            for g in self
                .governance
                .values()
                .chain(self.forked_proposals.values())
            {
                if let Action::Propose(p) = &g.action {
                    changed |= known.learn(&g.author, p).is_some();
                }
            }
            if !changed {
                break;
            }
        }
        self.known = Arc::new(known);
    }

    /// Applies one accepted entry. Panics if the entry does not extend its author's
    /// log: the log rules in [`crate::entry`] must have accepted it against this state.
    ///
    /// Entries of a frozen author from the fork's seq on are ignored.
    pub fn apply(&mut self, entry: &VerifiedEntry) {
        let author = entry.author();
        if self
            .forks
            .get(&author)
            .is_some_and(|f| entry.seq() >= f.seq)
        {
            return;
        }
        let log = self.logs.entry(author).or_insert(AuthorLog {
            ids: Vector::new(),
            head_timestamp_ms: i64::MIN,
            keys: Vector::new(),
        });
        assert_eq!(
            entry.seq(),
            log.ids.len() as u64 + 1,
            "entries of an author are applied in log order"
        );
        log.ids.push_back(entry.id());
        let previous_ms = std::mem::replace(&mut log.head_timestamp_ms, entry.timestamp_ms());
        if let Some(key) = entry.rotates_to() {
            log.keys.push_back((entry.seq() + 1, key));
        }
        self.entries += 1;
        let seen = self.see(entry);
        // A log's head moving past a pending deadline may be its last witness.
        let refold = self
            .roster
            .deadline_between(previous_ms, entry.timestamp_ms());
        let mut appended = None;
        if let Ok(body) = entry.body()
            && let Some(action) = body.governance()
        {
            let gov = GovEntry {
                id: entry.id(),
                author,
                seq: entry.seq(),
                timestamp_ms: entry.timestamp_ms(),
                action,
                seen: seen.clone(),
            };
            self.governance
                .insert((entry.timestamp_ms(), author, entry.seq()), gov.clone());
            if let Action::Propose(proposal) = &gov.action {
                // Learning a key can make known the author of a proposal already
                // held: only then is every proposal read again.
                let learned = Arc::make_mut(&mut self.known)
                    .learn(&author, proposal)
                    .is_some();
                if learned {
                    self.relearn();
                }
            }
            appended = Some(gov);
        }
        match (appended, refold) {
            (Some(gov), false) => self.fold_in(&gov),
            (_, true) => self.refold(),
            (None, false) => {}
        }
        if entry.rotates_to().is_some() {
            let history = self.key_history(&author);
            Arc::make_mut(&mut self.roster).set_keys(&author, &history);
        }
        let counting = self.counting_roster();
        if !counting.counts(&author, entry.seq(), entry.kind()) {
            return;
        }
        // The views are the organisation's, whichever of its logs (its identity's,
        // or one a recovery started) the entry is in; of two entries of different
        // logs, the one in the later log is the later.
        let (org, rank) = match counting.place(&author) {
            Some((org, rank, _)) => (org.key, rank),
            None => return,
        };
        let place = (rank, entry.seq());
        let parties = entry.body().ok().and_then(|body| {
            let roles = |k: &PublicId| counting.organisation(k).map(|o| o.roles_held);
            entry::check_parties(roles, body).err()
        });
        if let Some(e) = parties {
            let code = match &e {
                EntryError::UnknownParty { key, .. } => {
                    self.party_waits.insert(*key);
                    Code::UnknownParty
                }
                _ => Code::BodyRules,
            };
            self.set_aside(entry, Reason::new(code, e.to_string()));
            return;
        }
        let body = match entry.body() {
            Ok(Body::Unknown { kind }) => {
                let text = format!("kind {kind} is not known to this release");
                self.set_aside(entry, Reason::new(Code::UnknownKind, text));
                return;
            }
            Ok(body) => body,
            Err(e) => {
                self.set_aside(entry, Reason::new(Code::BodyRules, e.to_string()));
                return;
            }
        };
        match body {
            Body::Statement(s) => {
                let record = Record::of(entry, &seen, s.clone());
                let hash = item_hash(&self.statement_view(&entry.id(), &org, &record));
                self.statements
                    .insert((entry.timestamp_ms(), entry.id()), (org, record, hash));
                self.statement_at.insert(entry.id(), entry.timestamp_ms());
                Arc::make_mut(&mut self.sets).statements.insert(&hash);
            }
            Body::Endorsement { statement } => {
                self.endorsements.entry(*statement).or_default().insert(org);
                self.rehash_statement(statement);
            }
            Body::StatementWithdrawal { statement, .. } => {
                self.withdrawals.entry(*statement).or_default().insert(org);
                self.rehash_statement(statement);
            }
            // An intention names one ballot; one on an election id (refused at publish
            // since, but an older release may have signed it) counts nowhere.
            Body::Intention(i) if !i.ballot.is_ballot() => {}
            Body::Intention(i) => {
                let key = (i.ballot.clone(), org);
                let later = self
                    .intentions
                    .get(&key)
                    .is_none_or(|(old, _)| place > self.place_of(old));
                if later {
                    let record = Record::of(entry, &seen, i.clone());
                    let hash = item_hash(&IntentionView {
                        organisation: org,
                        intention: record.value.clone(),
                        entry: record.entry,
                        timestamp_ms: record.timestamp_ms,
                    });
                    let old = self.intentions.insert(key, (record, hash));
                    Arc::make_mut(&mut self.sets)
                        .intentions
                        .replace(old.as_ref().map(|(_, h)| h), &hash);
                }
            }
            Body::Event(e) => {
                let record = Record::of(entry, &seen, e.clone());
                let public = e.visibility == crate::body::Visibility::Public;
                let key = (org, e.uid.clone());
                if let Some(history) = self.events.get(&key)
                    && place < self.place_of(&history.last)
                {
                    // An earlier version, from a log a recovery replaced, arriving
                    // after a version of the organisation's new log.
                    let history = self.events.get_mut(&key).expect("present");
                    history.updates = history.updates.saturating_add(1);
                    history.first_published_ms =
                        history.first_published_ms.min(entry.timestamp_ms());
                    self.rehash_event(&org, &e.uid);
                    return;
                }
                match self.events.entry(key) {
                    imbl::ordmap::Entry::Vacant(slot) => {
                        slot.insert(EventHistory {
                            first_published_ms: entry.timestamp_ms(),
                            updates: 0,
                            last_public_change_ms: public.then_some(entry.timestamp_ms()),
                            last: record,
                        });
                    }
                    imbl::ordmap::Entry::Occupied(mut slot) => {
                        let history = slot.get_mut();
                        if history.last.value.start_utc != e.start_utc
                            && let Some(old) = self.event_order.remove(&(
                                history.last.value.start_utc,
                                e.uid.clone(),
                                org,
                            ))
                        {
                            Arc::make_mut(&mut self.sets).events.remove(&old);
                        }
                        history.updates = history.updates.saturating_add(1);
                        if public
                            || history.last.value.visibility == crate::body::Visibility::Public
                        {
                            history.last_public_change_ms = Some(entry.timestamp_ms());
                        }
                        history.last = record;
                    }
                }
                self.rehash_event(&org, &e.uid);
            }
            Body::Resolution(r) => {
                self.resolutions
                    .insert(entry.id(), (org, Record::of(entry, &seen, r.clone())));
                self.resolution_order
                    .insert((entry.timestamp_ms(), entry.id()));
            }
            Body::Proposal(_)
            | Body::Approval { .. }
            | Body::Objection { .. }
            | Body::Leave { .. }
            | Body::NodeAnnouncement(_)
            | Body::KeyRotation { .. }
            | Body::Unknown { .. } => {}
        }
    }

    /// Where a record's entry sits among its organisation's entries: the rank of
    /// its log (0: the identity's; see [`Roster::place`]) and its seq.
    fn place_of<T>(&self, record: &Record<T>) -> (usize, u64) {
        let rank = self
            .counting_roster()
            .place(&record.author)
            .map_or(0, |(_, rank, _)| rank);
        (rank, record.seq)
    }

    /// Adds what `entry` (the new head of its log) names as seen to what its log
    /// had seen, and returns what the entry had seen.
    fn see(&mut self, entry: &VerifiedEntry) -> Option<Seen> {
        let author = entry.author();
        let Some(delta) = entry.seen() else {
            return self.seen.get(&author).cloned();
        };
        let current = self.seen.get(&author);
        // Most entries name nothing new (their author's peers were quiet): no write.
        if let Some(current) = current
            && delta
                .iter()
                .all(|(key, seq)| current.get(key).is_some_and(|s| s >= seq))
        {
            return Some(current.clone());
        }
        let mut seen = current.cloned().unwrap_or_default();
        for (key, seq) in delta {
            if seen.get(key).is_none_or(|s| s < seq) {
                seen.insert(*key, *seq);
            }
        }
        self.seen.insert(author, seen.clone());
        Some(seen)
    }

    /// What the head entry of `author`'s log had seen (None: no entry of the log
    /// carried a causal reference).
    pub fn seen_by(&self, author: &PublicId) -> Option<&Seen> {
        self.seen.get(author)
    }

    /// The causal reference for `author`'s next entry: the head of every other log
    /// held here that is further on than what `author`'s log has named as seen.
    pub fn seen_since(&self, author: &PublicId) -> Vec<(PublicId, u64)> {
        let seen = self.seen.get(author);
        self.logs
            .iter()
            .filter(|(key, _)| *key != author)
            .map(|(key, log)| (*key, log.ids.len() as u64))
            .filter(|(key, seq)| seen.and_then(|s| s.get(key)).is_none_or(|s| s < seq))
            .collect()
    }

    fn set_aside(&mut self, entry: &VerifiedEntry, reason: Reason) {
        let (author, seq) = (entry.author(), entry.seq());
        let item = SetAside {
            author,
            seq,
            id: entry.id(),
            kind: entry.kind(),
            reason,
        };
        let hash = item_hash(&item);
        let old = self.set_aside.insert((author, seq), (item, hash));
        Arc::make_mut(&mut self.sets)
            .set_aside
            .replace(old.as_ref().map(|(_, h)| h), &hash);
    }

    /// Hashes the view of statement `id` again, if it is held, after its
    /// endorsements or withdrawals changed.
    fn rehash_statement(&mut self, id: &EntryId) {
        let Some(at) = self.statement_at.get(id) else {
            return;
        };
        let key = (*at, *id);
        let Some((author, record, _)) = self.statements.get(&key) else {
            return;
        };
        let hash = item_hash(&self.statement_view(id, author, record));
        let (_, _, held) = self.statements.get_mut(&key).expect("present");
        let old = std::mem::replace(held, hash);
        Arc::make_mut(&mut self.sets)
            .statements
            .replace(Some(&old), &hash);
    }

    /// Hashes the view of event `uid` of `author` again after it changed, under
    /// its current start.
    fn rehash_event(&mut self, author: &PublicId, uid: &str) {
        if let Some(view) = self.event(author, uid) {
            let hash = item_hash(&view);
            let old = self
                .event_order
                .insert((view.event.start_utc, uid.to_owned(), *author), hash);
            Arc::make_mut(&mut self.sets)
                .events
                .replace(old.as_ref(), &hash);
        }
    }

    /// Entries stored and relayed but in no view of this release, in (author, seq)
    /// order.
    pub fn set_aside_entries(&self) -> impl Iterator<Item = &SetAside> {
        self.set_aside.values().map(|(item, _)| item)
    }

    /// How many entries are set aside.
    pub fn set_aside_count(&self) -> u64 {
        self.set_aside.len() as u64
    }

    /// Current positions, ordered by ballot then organisation key.
    pub fn intentions(&self) -> Vec<IntentionView> {
        self.intentions
            .iter()
            .map(|((_, organisation), (last, _))| IntentionView {
                organisation: *organisation,
                intention: last.value.clone(),
                entry: last.entry,
                timestamp_ms: last.timestamp_ms,
            })
            .collect()
    }

    /// Standing clashes, soonest close of nominations first.
    pub fn clashes(&self) -> Vec<Clash> {
        clash::standing_clashes(self)
    }

    /// Events that overlap in time at the same venue or in the same area.
    pub fn event_clashes(&self) -> Vec<EventClash> {
        clash::event_clashes(&self.events())
    }

    /// Statements in order of publication (timestamp, then id).
    pub fn statements(&self) -> Vec<StatementView> {
        self.statements_after(None).collect()
    }

    /// Statements after `after` (a (timestamp, id) of the order of
    /// [`State::statements`]), in that order, read from an index: a page costs what
    /// it holds, not the whole list.
    pub fn statements_after(
        &self,
        after: Option<(i64, EntryId)>,
    ) -> impl Iterator<Item = StatementView> + '_ {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.statements
            .range((from, Bound::Unbounded))
            .map(|((_, id), (author, record, _))| self.statement_view(id, author, record))
    }

    fn statement_view(
        &self,
        id: &EntryId,
        author: &PublicId,
        record: &Record<Statement>,
    ) -> StatementView {
        let endorsers = self.endorsements.get(id);
        let endorsed = |key: &PublicId| endorsers.is_some_and(|set| set.contains(key));
        let mut endorsed_by: Vec<PublicId> = record
            .value
            .cosigners
            .iter()
            .copied()
            .filter(|c| endorsed(c))
            .collect();
        endorsed_by.sort();
        let supporters: Vec<PublicId> = endorsers
            .into_iter()
            .flatten()
            .filter(|k| *k != author && !record.value.cosigners.contains(k))
            .copied()
            .collect();
        let withdrawn = self
            .withdrawals
            .get(id)
            .is_some_and(|set| set.contains(author));
        StatementView {
            id: *id,
            author: *author,
            joint: !record.value.cosigners.is_empty()
                && endorsed_by.len() == record.value.cosigners.len(),
            statement: record.value.clone(),
            timestamp_ms: record.timestamp_ms,
            endorsed_by,
            supporters,
            withdrawn,
        }
    }

    /// The current version of every event (cancelled ones included), by start time.
    pub fn events(&self) -> Vec<EventView> {
        self.events_after(None).collect()
    }

    /// Events after `after` in the order of [`State::events`], read from an index.
    pub fn events_after(&self, after: Option<&EventKey>) -> impl Iterator<Item = EventView> + '_ {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.event_order
            .range::<_, EventKey>((from, Bound::Unbounded))
            .filter_map(|((_, uid, author), _)| self.event(author, uid))
    }

    /// The current version of the event `uid` of `author`.
    pub fn event(&self, author: &PublicId, uid: &str) -> Option<EventView> {
        let history = self.events.get(&(*author, uid.to_owned()))?;
        let last = &history.last;
        let mut organisers = vec![*author];
        organisers.extend(last.value.organisers.iter().filter(|o| *o != author));
        Some(EventView {
            author: *author,
            event: last.value.clone(),
            organisers,
            sequence: history.updates,
            first_published_ms: history.first_published_ms,
            last_modified_ms: last.timestamp_ms,
            last_public_change_ms: history.last_public_change_ms,
            entry: last.entry,
        })
    }

    /// Every resolution with its state, oldest first.
    pub fn resolutions(&self) -> Vec<ResolutionView> {
        self.resolutions_after(None).collect()
    }

    /// Resolutions after `after` (timestamp, id) in the order of
    /// [`State::resolutions`], read from an index.
    pub fn resolutions_after(
        &self,
        after: Option<(i64, EntryId)>,
    ) -> impl Iterator<Item = ResolutionView> + '_ {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.resolution_order
            .range((from, Bound::Unbounded))
            .filter_map(|(_, id)| {
                let (author, record) = self.resolutions.get(id)?;
                Some(ResolutionView {
                    id: *id,
                    author: *author,
                    resolution: record.value.clone(),
                    timestamp_ms: record.timestamp_ms,
                    state: clash::resolution_state(self, record),
                })
            })
    }

    /// Current positions after `after` (ballot, organisation) in the order of
    /// [`State::intentions`], read from the index.
    pub fn intentions_after(
        &self,
        after: Option<&(BallotId, PublicId)>,
    ) -> impl Iterator<Item = IntentionView> + '_ {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.intentions
            .range::<_, (BallotId, PublicId)>((from, Bound::Unbounded))
            .map(|((_, organisation), (last, _))| IntentionView {
                organisation: *organisation,
                intention: last.value.clone(),
                entry: last.entry,
                timestamp_ms: last.timestamp_ms,
            })
    }

    /// All views in canonical order.
    pub fn derived(&self) -> Derived {
        Derived {
            alliance: self.charter.id().to_string(),
            heads: self
                .heads()
                .map(|(author, head)| (author, (head.seq, head.id)))
                .collect(),
            forks: self.forks.values().cloned().collect(),
            intentions: self.intentions(),
            clashes: self.clashes(),
            resolutions: self.resolutions(),
            statements: self.statements(),
            events: self.events(),
            event_clashes: self.event_clashes(),
            set_aside: self.set_aside_entries().cloned().collect(),
            roster: (!self.roster.is_charter_only()).then(|| (*self.roster).clone()),
        }
    }

    /// The entries digest: equal on two nodes whenever they hold the same entries
    /// and fork proofs, whatever their release (it covers no derived view, so new
    /// body rules, holiday tables or time-zone data cannot change it). SHA-256 of
    /// `"accord/v1/entries-digest\0"`, the number of heads (u64, big-endian), each
    /// head in key order as author (32 bytes) ‖ seq (u64 BE) ‖ head entry id (32
    /// bytes), the number of fork proofs (u64 BE), then each proof in author order as
    /// author ‖ seq (u64 BE) ‖ len(first) (u64 BE) ‖ first ‖ len(second) ‖ second.
    pub fn entries_digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(b"accord/v1/entries-digest\0");
        let heads: Vec<(PublicId, LogHead)> = self.heads().collect();
        hash.update((heads.len() as u64).to_be_bytes());
        for (author, head) in heads {
            hash.update(author.as_bytes());
            hash.update(head.seq.to_be_bytes());
            hash.update(head.id.as_bytes());
        }
        hash.update((self.forks.len() as u64).to_be_bytes());
        for proof in self.forks.values() {
            hash.update(proof.author.as_bytes());
            hash.update(proof.seq.to_be_bytes());
            for side in [&proof.first, &proof.second] {
                hash.update((side.len() as u64).to_be_bytes());
                hash.update(side);
            }
        }
        hash.finalize().into()
    }

    /// The state digest, under the rules of [`RULES_VERSION`]: two nodes with the
    /// same entries show the same state digest when they also run the same rules.
    /// It is [`digest_of`] the views of [`State::derived`], but the set hashes of
    /// the large views (positions, statements, events, entries set aside) are kept
    /// by [`State::apply`] as it changes their items, so computing it costs the
    /// same for ten entries as for a million: the node's readers can ask for it
    /// often without slowing the writer. Clashes, resolutions (whose states follow
    /// every position), event clashes, heads, fork proofs and the roster are
    /// hashed from their views each time.
    pub fn digest(&self) -> [u8; 32] {
        let mut digest = StateDigest::new(&self.charter.id().to_string());
        digest.section_of(
            "heads",
            self.heads()
                .map(|(author, head)| item_hash(&(author, (head.seq, head.id)))),
        );
        digest.section_of("forks", self.forks.values().map(item_hash));
        digest.section("intentions", self.intentions.len(), &self.sets.intentions);
        digest.section_of("clashes", self.clashes().iter().map(item_hash));
        digest.section_of(
            "resolutions",
            self.resolutions_after(None).map(|r| item_hash(&r)),
        );
        digest.section("statements", self.statements.len(), &self.sets.statements);
        digest.section("events", self.event_order.len(), &self.sets.events);
        digest.section_of("event_clashes", self.event_clashes().iter().map(item_hash));
        digest.section("set_aside", self.set_aside.len(), &self.sets.set_aside);
        digest.section_of(
            "roster",
            (!self.roster.is_charter_only()).then(|| item_hash(&*self.roster)),
        );
        digest.finish()
    }
}

/// The state digest of a set of views ([`State::derived`]); [`State::digest`]
/// gives the same from the set hashes it keeps. SHA-256 of
/// `"accord/v2/state-digest\0"` ‖ len(alliance id) (u64, big-endian) ‖ the
/// alliance id, then, for each section of [`Derived`] in its field order: its
/// name ‖ `\0` ‖ its number of items (u64 BE) ‖ the 2,048 bytes of the LtHash16
/// ([`SetHash`]) of the SHA-256 of each item's JSON. A head is the item
/// `[author, [seq, id]]`; the roster is one item, or none while the charter alone
/// makes it. Every view's order follows from its items' own fields, and every item
/// carries its key, so the set of items fixes the view. Why a proposal is void or
/// refused, a departure refused or an entry set aside is in an item as its code
/// ([`crate::reason::Reason`] serialises as nothing else), so rewording a message
/// changes no digest.
pub fn digest_of(derived: &Derived) -> [u8; 32] {
    fn hashes<T: Serialize>(items: &[T]) -> impl Iterator<Item = [u8; 32]> + '_ {
        items.iter().map(item_hash)
    }
    let d = derived;
    let mut digest = StateDigest::new(&d.alliance);
    digest.section_of(
        "heads",
        d.heads
            .iter()
            .map(|(author, head)| item_hash(&(author, head))),
    );
    digest.section_of("forks", hashes(&d.forks));
    digest.section_of("intentions", hashes(&d.intentions));
    digest.section_of("clashes", hashes(&d.clashes));
    digest.section_of("resolutions", hashes(&d.resolutions));
    digest.section_of("statements", hashes(&d.statements));
    digest.section_of("events", hashes(&d.events));
    digest.section_of("event_clashes", hashes(&d.event_clashes));
    digest.section_of("set_aside", hashes(&d.set_aside));
    digest.section_of("roster", d.roster.iter().map(item_hash));
    digest.finish()
}

/// SHA-256 of an item's JSON: what the state digest holds of each item.
pub fn item_hash<T: Serialize + ?Sized>(item: &T) -> [u8; 32] {
    let json = serde_json::to_vec(item).expect("views serialise");
    Sha256::digest(&json).into()
}

/// The state digest as it is written: see [`digest_of`].
struct StateDigest(Sha256);

impl StateDigest {
    fn new(alliance: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"accord/v2/state-digest\0");
        hash.update((alliance.len() as u64).to_be_bytes());
        hash.update(alliance.as_bytes());
        Self(hash)
    }

    fn section(&mut self, name: &str, count: usize, set: &SetHash) {
        self.0.update(name.as_bytes());
        self.0.update([0]);
        self.0.update((count as u64).to_be_bytes());
        self.0.update(set.to_bytes());
    }

    /// A section whose set hash is made here from its item hashes.
    fn section_of(&mut self, name: &str, items: impl IntoIterator<Item = [u8; 32]>) {
        let mut set = SetHash::new();
        let mut count = 0;
        for item in items {
            set.insert(&item);
            count += 1;
        }
        self.section(name, count, &set);
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl Logs for State {
    fn head(&self, author: &PublicId) -> Option<LogHead> {
        let log = self.logs.get(author)?;
        let id = *log.ids.back()?;
        Some(LogHead {
            seq: log.ids.len() as u64,
            id,
            timestamp_ms: log.head_timestamp_ms,
        })
    }

    fn id_at(&self, author: &PublicId, seq: u64) -> Option<EntryId> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.logs.get(author)?.ids.get(index).copied()
    }

    fn frozen_from(&self, author: &PublicId) -> Option<u64> {
        self.forks.get(author).map(|f| f.seq)
    }

    fn roster(&self) -> &Roster {
        &self.roster
    }

    fn known_roles(&self, key: &PublicId) -> Option<RoleSet> {
        self.known.roles(key)
    }

    fn signing_key(&self, author: &PublicId, seq: u64) -> PublicId {
        self.logs
            .get(author)
            .and_then(|log| {
                log.keys
                    .iter()
                    .rev()
                    .find(|(from, _)| *from <= seq)
                    .map(|(_, key)| *key)
            })
            .unwrap_or(*author)
    }

    fn key_history(&self, author: &PublicId) -> Vec<(u64, PublicId)> {
        match self.logs.get(author) {
            Some(log) => key_history(author, log),
            None => vec![(1, *author)],
        }
    }
}

/// Every key of a log, oldest first, with the first seq each signs.
fn key_history(author: &PublicId, log: &AuthorLog) -> Vec<(u64, PublicId)> {
    let mut keys = vec![(1, *author)];
    keys.extend(log.keys.iter().copied());
    keys
}
