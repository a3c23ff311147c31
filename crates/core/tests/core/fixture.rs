//! A small alliance for tests: three member parties, one secretary and an outsider,
//! each with a fixed key, and helpers that sign entries and track heads.

use std::collections::BTreeMap;

use accord_core::body::encode;
use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
use accord_core::entry::{self, LogHead, SignatureChecked};
use accord_core::pb;
use accord_core::pb::publish_request::Body as B;
use accord_core::{Charter, Identity, PublicId, State, VerifiedEntry};

/// 2027-04-01T12:00:00Z, the fixed "now" of the tests.
pub const NOW_MS: i64 = 1_806_580_800_000;

pub const A: usize = 0;
pub const B_: usize = 1;
pub const C: usize = 2;
pub const SEC: usize = 3;
pub const OUT: usize = 4;

pub struct Alliance {
    pub charter: Charter,
    pub ids: Vec<Identity>,
    heads: BTreeMap<usize, LogHead>,
    /// Each author's head before its last signature, for [`Alliance::unsign`].
    undo: BTreeMap<usize, Option<LogHead>>,
    pub clock_ms: i64,
}

impl Alliance {
    pub fn new() -> Self {
        let ids: Vec<Identity> = (0..5u8).map(|n| Identity::from_seed([n + 1; 32])).collect();
        let member = |i: usize, name: &str| CharterMember {
            name: name.into(),
            key: ids[i].public_id(),
            ec_id: None,
        };
        let doc = CharterDoc {
            accord_charter: 1,
            name: "Test Alliance".into(),
            members: vec![
                member(A, "Alpha Party"),
                member(B_, "Beta Party"),
                member(C, "Gamma Party"),
            ],
            secretaries: vec![CharterSecretary {
                name: "Secretariat".into(),
                key: ids[SEC].public_id(),
            }],
            rules: Rules::default(),
        };
        let charter = Charter::from_bytes(doc.to_file_bytes()).unwrap();
        Self {
            charter,
            ids,
            heads: BTreeMap::new(),
            undo: BTreeMap::new(),
            clock_ms: NOW_MS - 3_600_000,
        }
    }

    pub fn key(&self, who: usize) -> PublicId {
        self.ids[who].public_id()
    }

    pub fn key_bytes(&self, who: usize) -> Vec<u8> {
        self.key(who).to_vec()
    }

    /// Signs the next entry of `who` with a raw kind and body, advancing the clock.
    pub fn sign_raw(&mut self, who: usize, kind: i32, body: Vec<u8>) -> pb::SignedEntry {
        self.sign_seeing(who, kind, body, &[])
    }

    /// Signs like [`Alliance::sign_raw`], with `seen` as the causal reference.
    pub fn sign_seeing(
        &mut self,
        who: usize,
        kind: i32,
        body: Vec<u8>,
        seen: &[(PublicId, u64)],
    ) -> pb::SignedEntry {
        self.clock_ms += 1_000;
        let head = self.heads.get(&who).copied();
        self.undo.insert(who, head);
        let signed = entry::sign_seeing(
            &self.ids[who],
            self.charter.id(),
            head.as_ref(),
            self.clock_ms,
            kind,
            body,
            seen,
        );
        let decoded = entry::decode(signed.clone(), 1 << 20).unwrap();
        self.heads.insert(
            who,
            LogHead {
                seq: decoded.seq(),
                id: decoded.id(),
                timestamp_ms: self.clock_ms,
            },
        );
        signed
    }

    /// Forgets the last entry signed by `who` (it was refused): the next one
    /// takes its seq.
    pub fn unsign(&mut self, who: usize) {
        match self.undo.remove(&who).flatten() {
            Some(head) => self.heads.insert(who, head),
            None => self.heads.remove(&who),
        };
    }

    pub fn sign(&mut self, who: usize, body: B) -> pb::SignedEntry {
        let (kind, bytes) = encode(&body);
        self.sign_raw(who, kind as i32, bytes)
    }

    /// Signs and verifies the next entry of `who` against a state holding all of
    /// this alliance's earlier entries.
    pub fn verified(&mut self, state: &State, who: usize, body: B) -> VerifiedEntry {
        let (kind, bytes) = encode(&body);
        let seen = state.seen_since(&self.key(who));
        let signed = self.sign_seeing(who, kind as i32, bytes, &seen);
        accept(&self.charter, state, signed).unwrap()
    }
}

pub fn accept(
    charter: &Charter,
    state: &State,
    signed: pb::SignedEntry,
) -> Result<VerifiedEntry, entry::EntryError> {
    let decoded = entry::decode(signed, charter.rules().max_entry_bytes as usize)?;
    let checked = SignatureChecked::single(&decoded)?;
    decoded.accept(charter, state, NOW_MS, checked)
}

/// As [`accept`], for a new entry published to a node: the body rules refuse too.
pub fn accept_new(
    charter: &Charter,
    state: &State,
    signed: pb::SignedEntry,
) -> Result<VerifiedEntry, entry::EntryError> {
    let decoded = entry::decode(signed, charter.rules().max_entry_bytes as usize)?;
    let checked = SignatureChecked::single(&decoded)?;
    decoded.accept_new(charter, state, NOW_MS, checked)
}

pub fn intention(ballot: &str, status: pb::IntentionStatus, candidate: &str) -> B {
    B::Intention(pb::Intention {
        ballot: ballot.into(),
        status: status as i32,
        candidate: candidate.into(),
        visibility: pb::Visibility::Public as i32,
        area: String::new(),
        note: String::new(),
    })
}

pub fn event(uid: &str, start: &str, end: &str, venue: &str, area: &str) -> pb::Event {
    pb::Event {
        uid: uid.into(),
        title: format!("Event {uid}"),
        description: String::new(),
        start: start.into(),
        end: end.into(),
        time_zone: String::new(),
        venue: venue.into(),
        area: area.into(),
        organisers: vec![],
        visibility: pb::Visibility::Public as i32,
        cancelled: false,
        all_day: false,
    }
}

pub fn resolution(ballot: &str, stands: Vec<Vec<u8>>, stand_aside: Vec<Vec<u8>>) -> B {
    B::Resolution(pb::Resolution {
        ballot: ballot.into(),
        stands,
        stand_aside,
        rationale: "agreed at PAL".into(),
    })
}

/// An alliance, the entries a node accepted so far, and its state of them: rebuilt
/// from every entry and fork proof whenever the roster changes what counts, as a
/// node's writer does.
pub struct Ledger {
    pub alliance: Alliance,
    pub state: State,
    pub entries: Vec<VerifiedEntry>,
}

impl Ledger {
    pub fn new() -> Self {
        let alliance = Alliance::new();
        let state = State::new(alliance.charter.clone());
        Self {
            alliance,
            state,
            entries: Vec::new(),
        }
    }

    pub fn key(&self, who: usize) -> PublicId {
        self.alliance.key(who)
    }

    pub fn apply(&mut self, entry: VerifiedEntry) -> accord_core::EntryId {
        let id = entry.id();
        self.state.apply(&entry);
        self.entries.push(entry);
        if self.state.views_stale() {
            self.rebuild();
        }
        id
    }

    /// The state of every entry and fork proof held, as from a node's store.
    pub fn rebuild(&mut self) {
        self.state = self.rebuilt(false);
    }

    /// The same entries and fork proofs in one set, in their order or reversed.
    pub fn rebuilt(&self, reversed: bool) -> State {
        let forks: Vec<_> = self.state.forks().cloned().collect();
        let charter = self.alliance.charter.clone();
        if reversed {
            State::from_entries_and_forks(charter, forks, self.entries.iter().rev())
        } else {
            State::from_entries_and_forks(charter, forks, self.entries.iter())
        }
    }

    /// Offers `signed` (the last entry signed for `who`) as a new entry, with every
    /// rule a node applies to one: applied, or refused (and `who`'s log unsigned).
    pub fn offer_new(
        &mut self,
        who: usize,
        signed: pb::SignedEntry,
    ) -> Result<accord_core::EntryId, entry::EntryError> {
        match accept_new(&self.alliance.charter, &self.state, signed) {
            Ok(entry) => Ok(self.apply(entry)),
            Err(e) => {
                self.alliance.unsign(who);
                Err(e)
            }
        }
    }

    /// Publishes as a node would: the causal reference of what the state holds,
    /// every rule for a new entry.
    pub fn publish(
        &mut self,
        who: usize,
        kind: pb::EntryKind,
        body: Vec<u8>,
    ) -> Result<accord_core::EntryId, entry::EntryError> {
        let seen = self.state.seen_since(&self.key(who));
        let signed = self.alliance.sign_seeing(who, kind as i32, body, &seen);
        self.offer_new(who, signed)
    }

    /// Relays an entry signed elsewhere: the envelope rules only.
    pub fn relay(
        &mut self,
        who: usize,
        kind: pb::EntryKind,
        body: Vec<u8>,
    ) -> Result<accord_core::EntryId, entry::EntryError> {
        let signed = self.alliance.sign_raw(who, kind as i32, body);
        match accept(&self.alliance.charter, &self.state, signed) {
            Ok(entry) => Ok(self.apply(entry)),
            Err(e) => {
                self.alliance.unsign(who);
                Err(e)
            }
        }
    }
}
