//! Governance: the roster as the charter plus proposals, approvals, objections and
//! departures; every refusal with its own words; and the property that the roster
//! and the digests are a function of the set of entries, whatever the arrival
//! order, duplicates and concurrent conflicting proposals.

use std::collections::VecDeque;

use accord_core::charter::Role;
use accord_core::entry::{EntryError, Logs};
use accord_core::pb;
use accord_core::pb::EntryKind as K;
use accord_core::pb::IntentionStatus as S;
use accord_core::reason::{Code, Reason};
use accord_core::roster::{DAY_MS, OrgStatus, ProposalStatus, QuorumRule};
use accord_core::state::item_hash;
use accord_core::{EntryId, Identity, PublicId, State, VerifiedEntry};
use proptest::prelude::*;
use prost::Message;

use crate::fixture::*;

const BALLOT: &str = "local.leeds.headingley-hyde-park.2027-05-06";
/// Two organisations that are not in the charter: the outsider, and one more.
const NEW: usize = OUT;
const NEW2: usize = 5;

/// An alliance and a node's state of it, publishing as a node would (every rule a
/// new entry meets) or relaying (the envelope rules only).
struct Gov {
    alliance: Alliance,
    state: State,
    entries: Vec<VerifiedEntry>,
}

impl Gov {
    fn new() -> Self {
        let mut alliance = Alliance::new();
        alliance.ids.push(Identity::from_seed([6; 32]));
        // Start well in the past, so the tests can let days go by.
        alliance.clock_ms = NOW_MS - 40 * DAY_MS;
        let state = State::new(alliance.charter.clone());
        Self {
            alliance,
            state,
            entries: Vec::new(),
        }
    }

    fn key(&self, who: usize) -> PublicId {
        self.alliance.key(who)
    }

    fn apply(&mut self, entry: VerifiedEntry) -> EntryId {
        let id = entry.id();
        self.state.apply(&entry);
        self.entries.push(entry);
        if self.state.views_stale() {
            self.state = State::from_entries(self.alliance.charter.clone(), self.entries.iter());
        }
        id
    }

    /// Publishes as a node would: refused with the error text, or applied.
    fn publish(&mut self, who: usize, kind: K, body: Vec<u8>) -> Result<EntryId, String> {
        let signed = self.alliance.sign_raw(who, kind as i32, body);
        match accept_new(&self.alliance.charter, &self.state, signed) {
            Ok(entry) => Ok(self.apply(entry)),
            Err(e) => {
                self.alliance.unsign(who);
                Err(e.to_string())
            }
        }
    }

    /// Relays an entry signed elsewhere: only the envelope rules.
    fn relay(&mut self, who: usize, kind: K, body: Vec<u8>) -> Result<EntryId, String> {
        let signed = self.alliance.sign_raw(who, kind as i32, body);
        match accept(&self.alliance.charter, &self.state, signed) {
            Ok(entry) => Ok(self.apply(entry)),
            Err(e) => {
                self.alliance.unsign(who);
                Err(e.to_string())
            }
        }
    }

    fn propose(&mut self, who: usize, change: pb::proposal::Change) -> Result<EntryId, String> {
        let body = proposal(self.state.roster().version, change);
        self.publish(who, K::Proposal, body)
    }

    fn approve(&mut self, who: usize, id: EntryId) -> Result<EntryId, String> {
        self.publish(who, K::Approval, approval(id))
    }

    fn object(&mut self, who: usize, id: EntryId) -> Result<EntryId, String> {
        let body = pb::Objection {
            proposal: id.to_vec(),
            reason: "no".into(),
        };
        self.publish(who, K::Objection, body.encode_to_vec())
    }

    fn intend(&mut self, who: usize) -> Result<EntryId, String> {
        let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Intends, ""));
        let signed = self.alliance.sign_raw(who, kind as i32, body);
        match accept_new(&self.alliance.charter, &self.state, signed) {
            Ok(entry) => Ok(self.apply(entry)),
            Err(e) => {
                self.alliance.unsign(who);
                Err(e.to_string())
            }
        }
    }

    fn status(&self, id: EntryId) -> ProposalStatus {
        self.state.roster().proposal(&id).unwrap().status.clone()
    }

    fn standing(&self, ballot_orgs: &[usize]) -> Vec<PublicId> {
        let mut keys: Vec<PublicId> = ballot_orgs.iter().map(|w| self.key(*w)).collect();
        keys.sort();
        keys
    }

    fn intending(&self) -> Vec<PublicId> {
        let mut keys: Vec<PublicId> = self
            .state
            .intentions()
            .into_iter()
            .map(|v| v.organisation)
            .collect();
        keys.sort();
        keys
    }
}

fn proposal(version: u64, change: pb::proposal::Change) -> Vec<u8> {
    pb::Proposal {
        roster_version: version,
        change: Some(change),
        rationale: String::new(),
    }
    .encode_to_vec()
}

fn approval(id: EntryId) -> Vec<u8> {
    pb::Approval {
        proposal: id.to_vec(),
    }
    .encode_to_vec()
}

fn admit(name: &str, key: PublicId, role: pb::Role) -> pb::proposal::Change {
    pb::proposal::Change::Admit(pb::Admit {
        name: name.into(),
        key: key.to_vec(),
        role: role as i32,
        ec_id: String::new(),
        node_address: String::new(),
        node_cert_sha256: Vec::new(),
    })
}

fn admit_with_node(name: &str, key: PublicId, address: &str, cert: u8) -> pb::proposal::Change {
    pb::proposal::Change::Admit(pb::Admit {
        name: name.into(),
        key: key.to_vec(),
        role: pb::Role::Member as i32,
        ec_id: String::new(),
        node_address: address.into(),
        node_cert_sha256: vec![cert; 32],
    })
}

fn announcement(address: &str, cert: u8) -> Vec<u8> {
    pb::NodeAnnouncement {
        address: address.into(),
        cert_sha256: vec![cert; 32],
    }
    .encode_to_vec()
}

fn node_of(g: &Gov, who: usize) -> Option<(String, u8)> {
    let key = g.key(who);
    let org = g.state.roster().organisation(&key)?;
    org.node
        .as_ref()
        .map(|n| (n.address.clone(), n.cert_sha256[0]))
}

#[test]
fn nodes_come_from_the_admission_and_the_latest_announcement_of_an_active_organisation() {
    let mut g = Gov::new();
    assert!(g.state.roster().nodes().next().is_none());
    g.publish(
        A,
        K::NodeAnnouncement,
        announcement("a.example.org:7400", 1),
    )
    .unwrap();
    assert_eq!(node_of(&g, A), Some(("a.example.org:7400".into(), 1)));
    // The latest announcement in the log wins (a certificate rotation).
    g.publish(
        A,
        K::NodeAnnouncement,
        announcement("a.example.org:7400", 2),
    )
    .unwrap();
    assert_eq!(node_of(&g, A), Some(("a.example.org:7400".into(), 2)));
    // An admission may name the node; the newcomer's own announcement replaces it.
    let delta = g.key(NEW);
    let p = g
        .propose(A, admit_with_node("Delta Party", delta, "[::1]:7403", 3))
        .unwrap();
    assert_eq!(node_of(&g, NEW), None);
    g.approve(B_, p).unwrap();
    assert_eq!(node_of(&g, NEW), Some(("[::1]:7403".into(), 3)));
    g.publish(NEW, K::NodeAnnouncement, announcement("10.0.0.4:7400", 4))
        .unwrap();
    assert_eq!(node_of(&g, NEW), Some(("10.0.0.4:7400".into(), 4)));
    let nodes: Vec<u8> = g
        .state
        .roster()
        .nodes()
        .map(|(_, n)| n.cert_sha256[0])
        .collect();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.contains(&2) && nodes.contains(&4));
    // A departed organisation's node is no longer among the nodes to pin.
    g.publish(A, K::Leave, Vec::new()).unwrap();
    assert!(g.state.roster().nodes().all(|(o, _)| o.key != g.key(A)));
    // Bad bodies are refused with their reason and change nothing.
    let before = g.state.digest();
    for (address, len, want) in [
        ("b.example.org", 32, "must look like host:port"),
        ("b.example.org:0", 32, "no port 1 to 65535"),
        ("https://b.example.org:7400", 32, "DNS name"),
        ("b_x.example.org:7400", 32, "DNS name"),
        ("[nope]:7400", 32, "not an IPv6 address"),
        ("b.example.org:7400", 31, "32 bytes (SHA-256), not 31"),
    ] {
        let body = pb::NodeAnnouncement {
            address: address.into(),
            cert_sha256: vec![9; len],
        };
        let err = g
            .publish(B_, K::NodeAnnouncement, body.encode_to_vec())
            .unwrap_err();
        assert!(err.contains(want), "{address}: {err}");
    }
    assert_eq!(g.state.digest(), before);
    // The same entries in one set give the same roster.
    let again = State::from_entries(g.alliance.charter.clone(), g.entries.iter().rev());
    assert_eq!(again.roster(), g.state.roster());
}

fn remove(key: PublicId, up_to_seq: u64) -> pb::proposal::Change {
    pb::proposal::Change::Remove(pb::Remove {
        organisation: key.to_vec(),
        up_to_seq,
    })
}

fn set_role(key: PublicId, role: pb::Role) -> pb::proposal::Change {
    pb::proposal::Change::SetRole(pb::SetRole {
        organisation: key.to_vec(),
        role: role as i32,
    })
}

fn quorum(kind: pb::QuorumKind, value: u32) -> pb::proposal::Change {
    pb::proposal::Change::Quorum(pb::QuorumRule {
        kind: kind as i32,
        value,
    })
}

#[test]
fn an_organisation_admitted_by_a_majority_publishes_and_counts() {
    let mut g = Gov::new();
    let delta = g.key(NEW);
    // Before any proposal names it, the newcomer is refused even as a relayed entry.
    assert_eq!(
        g.intend(NEW).unwrap_err(),
        format!("author {delta} is not a member or secretary of the alliance")
    );
    let p = g
        .propose(A, admit("Delta Party", delta, pb::Role::Member))
        .unwrap();
    assert_eq!(g.status(p), ProposalStatus::Open);
    // Named by a proposal, its entries are stored and relayed, but count nowhere
    // until it is admitted; it cannot publish yet.
    assert_eq!(
        g.intend(NEW).unwrap_err(),
        format!("author {delta} is not a member or secretary of the alliance")
    );
    let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Intends, ""));
    g.relay(NEW, K::try_from(kind as i32).unwrap(), body)
        .unwrap();
    assert!(g.intending().is_empty());
    // Three members: the proposer's own proposal and one approval are a majority.
    g.approve(B_, p).unwrap();
    assert_eq!(
        g.status(p),
        ProposalStatus::Passed {
            version: 1,
            at_ms: g.entries.last().unwrap().timestamp_ms()
        }
    );
    let roster = g.state.roster();
    assert_eq!(roster.version, 1);
    let org = roster.organisation(&delta).unwrap();
    assert_eq!((org.name.as_str(), org.role), ("Delta Party", Role::Member));
    // The entry held before the admission now counts (the views were rebuilt).
    assert_eq!(g.intending(), g.standing(&[NEW]));
    g.intend(A).unwrap();
    assert_eq!(g.intending(), g.standing(&[A, NEW]));
    // The same entries in one set give the same state.
    let again = State::from_entries(g.alliance.charter.clone(), g.entries.iter().rev());
    assert_eq!(again.digest(), g.state.digest());
    assert_eq!(again.roster(), g.state.roster());
}

/// Issue 22, defect 4: a member proposes admitting a newcomer, another approves, the
/// newcomer publishes, and then a second entry of the proposer's log at the
/// proposal's seq turns up. The fork freezes the proposer's log from that seq, but
/// the admission the alliance relied on (approved by another member) stands, the
/// newcomer's entries count, and the state rebuilt from the entries and the proof
/// knows every author, whichever side of the fork a node held and whenever the
/// proof came.
#[test]
fn a_fork_at_an_approved_admission_never_undoes_it() {
    let mut g = Gov::new();
    let delta = g.key(NEW);
    let p = g
        .propose(A, admit("Delta Party", delta, pb::Role::Member))
        .unwrap();
    let proposal = g.entries.last().unwrap().clone();
    g.approve(B_, p).unwrap();
    assert!(matches!(g.status(p), ProposalStatus::Passed { .. }));
    g.intend(NEW).unwrap();
    // The other side: a statement signed by A at the proposal's seq.
    g.alliance.unsign(A);
    let other = {
        let mut undo = g.alliance.sign_raw(
            A,
            K::Statement as i32,
            pb::Statement {
                title: "the other side".into(),
                text: "t".into(),
                cosigners: vec![],
            }
            .encode_to_vec(),
        );
        std::mem::take(&mut undo)
    };
    let proof = accord_core::state::ForkProof::verify(
        &g.alliance.charter,
        &proposal.to_bytes(),
        &other.encode_to_vec(),
    )
    .unwrap();
    let charter = g.alliance.charter.clone();
    // The proof after every entry, before the newcomer's, or first of all.
    let newcomer_entry = g.entries.last().unwrap().clone();
    let before_newcomer: Vec<VerifiedEntry> = g.entries[..g.entries.len() - 1].to_vec();
    let mut late = g.state.clone();
    assert!(
        late.record_fork(proof.clone()),
        "applied entries stop counting"
    );
    let late = State::from_entries_and_forks(charter.clone(), [proof.clone()], g.entries.iter());
    // As a node's writer does: a proof that stops applied entries counting means a
    // rebuild from what is stored.
    let mut early = State::new(charter.clone());
    for e in &before_newcomer {
        early.apply(e);
    }
    if early.record_fork(proof.clone()) {
        early =
            State::from_entries_and_forks(charter.clone(), [proof.clone()], before_newcomer.iter());
    }
    early.apply(&newcomer_entry);
    if early.views_stale() {
        early = State::from_entries_and_forks(charter.clone(), [proof.clone()], g.entries.iter());
    }
    for state in [&late, &early] {
        assert!(state.unknown_authors().is_empty());
        let org = state.roster().organisation(&delta).expect("still admitted");
        assert!(org.is_active());
        assert!(matches!(
            state.roster().proposal(&p).unwrap().status,
            ProposalStatus::Passed { .. }
        ));
        assert_eq!(
            state
                .intentions()
                .into_iter()
                .map(|v| v.organisation)
                .collect::<Vec<_>>(),
            vec![delta],
            "the newcomer's entry counts"
        );
        assert!(
            state
                .frozen()
                .any(|f| f.author == g.key(A) && f.seq == proof.seq)
        );
    }
    assert_eq!(late.digest(), early.digest());
    // A proposal on a side nobody else approved does not count, but what it names
    // stays known: a node holding the newcomer's entries still loads.
    let mut h = Gov::new();
    let lone = h
        .propose(A, admit("Delta Party", delta, pb::Role::Member))
        .unwrap();
    let lone_entry = h.entries.last().unwrap().clone();
    h.relay(
        NEW,
        K::Statement,
        pb::Statement {
            title: "held".into(),
            text: "t".into(),
            cosigners: vec![],
        }
        .encode_to_vec(),
    )
    .unwrap();
    h.alliance.unsign(A);
    let other = h.alliance.sign_raw(
        A,
        K::Statement as i32,
        pb::Statement {
            title: "other".into(),
            text: "t".into(),
            cosigners: vec![],
        }
        .encode_to_vec(),
    );
    let proof = accord_core::state::ForkProof::verify(
        &h.alliance.charter,
        &lone_entry.to_bytes(),
        &other.encode_to_vec(),
    )
    .unwrap();
    let state =
        State::from_entries_and_forks(h.alliance.charter.clone(), [proof], h.entries.iter());
    assert!(state.unknown_authors().is_empty());
    assert!(state.roster().proposal(&lone).is_none());
    assert!(state.roster().organisation(&delta).is_none());
}

/// Issue 22, defect 1: backdating cannot beat a deadline. A member cut off from
/// the others signs an approval stamped before the lapse, after the others'
/// entries stamped past it. No node had shown the proposal lapsed (the cut-off
/// member had not witnessed the deadline), so the vote overturns nothing; and once
/// that member's own log is past the deadline, nothing it signs can count.
#[test]
fn a_vote_stamped_before_a_lapse_overturns_no_fate_a_node_has_shown() {
    let mut g = Gov::new();
    let delta = g.key(NEW);
    // All three members must approve.
    let q = g.propose(A, quorum(pb::QuorumKind::All, 0)).unwrap();
    g.approve(B_, q).unwrap();
    let p = g
        .propose(A, admit("Delta Party", delta, pb::Role::Member))
        .unwrap();
    g.approve(B_, p).unwrap();
    let lapse = g.state.roster().proposal(&p).unwrap().lapses_ms;
    // A and B publish past the lapse; C, cut off, has not.
    g.alliance.clock_ms = lapse + DAY_MS;
    g.intend(A).unwrap();
    g.intend(B_).unwrap();
    assert_eq!(
        g.status(p),
        ProposalStatus::Open,
        "C has not witnessed the lapse"
    );
    // C's approval, stamped before the lapse, relayed from its own node.
    g.alliance.clock_ms = lapse - 60_000;
    g.relay(C, K::Approval, approval(p)).unwrap();
    assert!(matches!(g.status(p), ProposalStatus::Passed { .. }));
    let again = State::from_entries(g.alliance.charter.clone(), g.entries.iter().rev());
    assert_eq!(again.roster(), g.state.roster());

    // Another proposal, and C's approval stamped after its lapse: it counts for
    // nothing, and witnesses the lapse.
    let gamma = g.key(NEW2);
    let p2 = g
        .propose(A, admit("Epsilon", gamma, pb::Role::Member))
        .unwrap();
    g.approve(B_, p2).unwrap();
    let lapse2 = g.state.roster().proposal(&p2).unwrap().lapses_ms;
    g.alliance.clock_ms = lapse2 + 1_000;
    g.relay(C, K::Approval, approval(p2)).unwrap();
    assert_eq!(
        g.status(p2),
        ProposalStatus::Open,
        "A, B and Delta have not witnessed it"
    );
    g.intend(A).unwrap();
    g.intend(B_).unwrap();
    g.intend(NEW).unwrap();
    assert_eq!(g.status(p2), ProposalStatus::Lapsed { at_ms: lapse2 });
}

/// Issue 22, defect 2: an approval a removed member signed past its cut counts
/// nowhere, even stamped before the removal took effect.
#[test]
fn a_removed_members_vote_past_its_cut_counts_nowhere() {
    let mut g = Gov::new();
    let delta = g.key(NEW);
    // Remove C, its log counting up to its seq 1.
    g.intend(C).unwrap();
    let cut = 1;
    let r = g.propose(A, remove(g.key(C), cut)).unwrap();
    // A proposal that needs one more approval than A's own.
    let p = g
        .propose(A, admit("Delta Party", delta, pb::Role::Member))
        .unwrap();
    let made = g.entries.last().unwrap().timestamp_ms();
    g.approve(B_, r).unwrap();
    assert!(matches!(g.status(r), ProposalStatus::Passed { .. }));
    // C, cut off, approves: seq 2 of its log, stamped before the removal passed.
    g.alliance.clock_ms = made + 1;
    g.relay(C, K::Approval, approval(p)).unwrap();
    assert_eq!(
        g.status(p),
        ProposalStatus::Open,
        "C's vote past its cut counts nowhere"
    );
    let again = State::from_entries(g.alliance.charter.clone(), g.entries.iter().rev());
    assert_eq!(again.roster(), g.state.roster());
    assert_eq!(again.digest(), g.state.digest());
}

#[test]
fn bad_governance_input_is_refused_with_its_reason_and_changes_nothing() {
    let mut g = Gov::new();
    let delta = g.key(NEW);
    let p = g
        .propose(A, admit("Delta Party", delta, pb::Role::Member))
        .unwrap();
    let check = |g: &mut Gov, result: Result<EntryId, String>, want: &str| {
        let before = g.state.digest();
        assert_eq!(result.unwrap_err(), want);
        assert_eq!(g.state.digest(), before);
    };
    let sec = g.key(SEC);
    // An approval by a non-member: the secretary, then an outsider.
    let r = g.approve(SEC, p);
    check(
        &mut g,
        r,
        &format!("{sec} is a secretary and may not publish approval entries"),
    );
    let outsider = g.key(NEW2);
    let r = g.approve(NEW2, p);
    check(
        &mut g,
        r,
        &format!("author {outsider} is not a member or secretary of the alliance"),
    );
    // A second approval by the same member (the proposer's proposal is its approval).
    let a = g.key(A);
    let r = g.approve(A, p);
    check(&mut g, r, &format!("{a} has already approved proposal {p}"));
    g.object(C, p).unwrap();
    let c = g.key(C);
    let r = g.approve(C, p);
    check(
        &mut g,
        r,
        &format!("{c} has already objected to proposal {p}"),
    );
    // Admitting a key already in the roster.
    let b = g.key(B_);
    let r = g.propose(A, admit("Beta Again", b, pb::Role::Member));
    check(
        &mut g,
        r,
        &format!("the change is refused: key {b} is already in the roster (as Beta Party)"),
    );
    // A change that would leave no secretary.
    let r = g.propose(A, set_role(sec, pb::Role::Observer));
    check(
        &mut g,
        r,
        "the change is refused: it would leave the alliance with no secretary",
    );
    let r = g.propose(A, remove(sec, 0));
    check(
        &mut g,
        r,
        "the change is refused: it would leave the alliance with no secretary",
    );
    // The proposal lapses 14 days after it was made, judged by entry timestamps.
    g.alliance.clock_ms += 15 * DAY_MS;
    let r = g.approve(B_, p);
    let lapse = g.state.roster().proposal(&p).unwrap().lapses_ms;
    check(
        &mut g,
        r,
        &format!("proposal {p} lapsed at {lapse} (14 days after it was made); propose it again"),
    );
    // It lapses once every member of its electorate holds an entry stamped after
    // the deadline: none of them can vote before it any more.
    g.intend(A).unwrap();
    g.intend(B_).unwrap();
    assert_eq!(g.status(p), ProposalStatus::Open, "C has not witnessed it");
    g.intend(C).unwrap();
    assert_eq!(g.status(p), ProposalStatus::Lapsed { at_ms: lapse });
    let r = g.approve(B_, p);
    check(
        &mut g,
        r,
        &format!("proposal {p} lapsed at {lapse} (14 days after it was made); propose it again"),
    );
    // An unknown proposal.
    let nothing = EntryId::from_bytes([7; 32]);
    let r = g.approve(B_, nothing);
    check(
        &mut g,
        r,
        &format!("no proposal {nothing} is in the roster"),
    );
}

#[test]
fn a_removed_organisation_counts_up_to_its_cut_and_publishes_nothing_more() {
    let mut g = Gov::new();
    let c = g.key(C);
    g.intend(C).unwrap();
    let cut = g.state.roster().organisation(&c).map(|_| 1).unwrap();
    let p = g.propose(A, remove(c, cut)).unwrap();
    // C's own vote does not count on its removal: the electorate is A and B.
    assert_eq!(
        g.state.roster().proposal(&p).unwrap().electorate,
        g.standing(&[A, B_])
    );
    // C keeps publishing while the vote runs (a peer relays it here).
    let (kind, body) = accord_core::body::encode(&intention(
        "local.sheffield.walkley.2027-05-06",
        S::Intends,
        "",
    ));
    g.relay(C, K::try_from(kind as i32).unwrap(), body.clone())
        .unwrap();
    assert_eq!(g.state.intentions().len(), 2);
    g.approve(B_, p).unwrap();
    let org = g.state.roster().organisation(&c).unwrap();
    assert!(matches!(
        org.status,
        OrgStatus::Removed { up_to_seq: 1, .. }
    ));
    // Its entry past the cut is kept (in the log) but counts nowhere.
    assert_eq!(g.intending(), g.standing(&[C]));
    assert_eq!(g.state.intentions().len(), 1);
    assert_eq!(g.state.head(&c).map(|h| h.seq), Some(2));
    // A new entry of it is refused, and a relayed one is kept as evidence.
    assert_eq!(
        g.intend(C).unwrap_err(),
        format!(
            "{c} left or was removed from the alliance: its log counts up to seq 1, and \
             nothing later is accepted from it"
        )
    );
    g.relay(C, K::try_from(kind as i32).unwrap(), body).unwrap();
    assert_eq!(g.state.intentions().len(), 1);
    // Two members are left: removing one more is refused.
    let b = g.key(B_);
    assert_eq!(
        g.propose(A, remove(b, 0)).unwrap_err(),
        "the change is refused: it would leave the alliance with fewer than two members (1)"
    );
    let again = State::from_entries(g.alliance.charter.clone(), g.entries.iter().rev());
    assert_eq!(again.digest(), g.state.digest());
}

#[test]
fn leaving_needs_no_quorum_but_may_not_leave_fewer_than_two_members() {
    let mut g = Gov::new();
    g.intend(B_).unwrap();
    g.publish(
        B_,
        K::Leave,
        pb::Leave {
            reason: "bye".into(),
        }
        .encode_to_vec(),
    )
    .unwrap();
    let b = g.key(B_);
    let org = g.state.roster().organisation(&b).unwrap();
    assert!(matches!(org.status, OrgStatus::Left { up_to_seq: 2, .. }));
    assert_eq!(g.state.roster().version, 1);
    // Its intention before leaving still counts.
    assert_eq!(g.intending(), g.standing(&[B_]));
    let c = g.key(C);
    assert_eq!(
        g.publish(C, K::Leave, pb::Leave::default().encode_to_vec())
            .unwrap_err(),
        format!("{c} cannot leave: it would leave the alliance with fewer than two members (1)")
    );
}

#[test]
fn a_proposal_made_against_a_replaced_roster_is_void() {
    let mut g = Gov::new();
    let delta = g.key(NEW);
    // Two proposals to admit the same key, made concurrently at version 0.
    let p1 = g
        .propose(A, admit("Delta Party", delta, pb::Role::Member))
        .unwrap();
    let p2 = g
        .propose(B_, admit("Delta Alliance", delta, pb::Role::Observer))
        .unwrap();
    g.approve(C, p1).unwrap();
    assert!(matches!(g.status(p1), ProposalStatus::Passed { .. }));
    let ProposalStatus::Void { reason } = g.status(p2) else {
        panic!("the second proposal is void");
    };
    assert!(reason.text().contains("since version 0"), "{reason}");
    assert_eq!(reason.code(), Code::RosterVersionSuperseded);
    let r = g.approve(C, p2);
    assert!(
        r.as_ref().unwrap_err().starts_with(&format!(
            "proposal {p2} is closed (void): the roster changed"
        )),
        "{r:?}"
    );
    // A proposal signed elsewhere against version 0 touching what changed is void as
    // it arrives; one touching something else is not.
    let body = proposal(0, set_role(delta, pb::Role::Observer));
    assert!(
        g.publish(A, K::Proposal, body.clone())
            .unwrap_err()
            .starts_with("the proposal is void: the roster changed")
    );
    let late = g.relay(A, K::Proposal, body).unwrap();
    assert!(matches!(g.status(late), ProposalStatus::Void { .. }));
    let other = g
        .relay(A, K::Proposal, proposal(0, quorum(pb::QuorumKind::All, 0)))
        .unwrap();
    assert_eq!(g.status(other), ProposalStatus::Open);
}

/// Issue 22, defect 9: a reason's words stay out of the state digest. A void or
/// refused proposal, a refused departure and an entry set aside are in the views
/// the digest hashes by their codes alone: their words appear nowhere in them, an
/// item whose words differ hashes the same, and one whose code differs does not.
#[test]
fn reasons_are_in_the_digest_as_codes_not_words() {
    let mut g = Gov::new();
    let delta = g.key(NEW);
    let sec = g.key(SEC);
    // Void: two proposals to admit the same key; the first passes.
    let p1 = g
        .propose(A, admit("Delta Party", delta, pb::Role::Observer))
        .unwrap();
    let p2 = g
        .propose(B_, admit("Delta Alliance", delta, pb::Role::Member))
        .unwrap();
    g.approve(C, p1).unwrap();
    // Refused: signed elsewhere, it would leave no secretary.
    let version = g.state.roster().version;
    let refused = g
        .relay(
            A,
            K::Proposal,
            proposal(version, set_role(sec, pb::Role::Observer)),
        )
        .unwrap();
    // A departure refused by the fold: B leaves, then C would leave one member.
    g.publish(B_, K::Leave, pb::Leave::default().encode_to_vec())
        .unwrap();
    g.relay(C, K::Leave, pb::Leave::default().encode_to_vec())
        .unwrap();
    // Set aside: a body this release refuses, and a kind it does not know.
    let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Confirmed, ""));
    g.relay(A, K::try_from(kind as i32).unwrap(), body).unwrap();
    let signed = g
        .alliance
        .sign_raw(A, 999, b"from a later release".to_vec());
    let unknown = accept(&g.alliance.charter, &g.state, signed).unwrap();
    g.apply(unknown);

    let derived = g.state.derived();
    let json = serde_json::to_string(&derived).unwrap();
    let mut reasons = Vec::new();
    for p in [p2, refused] {
        match g.status(p) {
            ProposalStatus::Void { reason } | ProposalStatus::Refused { reason } => {
                reasons.push(reason)
            }
            other => panic!("proposal {p} is {}", other.as_str()),
        }
    }
    reasons.extend(g.state.set_aside_entries().map(|a| a.reason.clone()));
    let codes: Vec<Code> = reasons.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes,
        [
            Code::RosterVersionSuperseded,
            Code::NoSecretary,
            Code::BodyRules,
            Code::UnknownKind
        ]
    );
    for reason in &reasons {
        assert!(
            !json.contains(reason.text()),
            "{reason} is in the views' JSON"
        );
        assert!(
            json.contains(&format!("\"reason\":\"{}\"", reason.code())),
            "{} is not in the views' JSON",
            reason.code()
        );
    }
    assert!(
        !json.contains("fewer than two members"),
        "a refused departure's words are in the views' JSON"
    );
    assert!(json.contains("\"too-few-members\""));
    assert_eq!(g.state.digest(), accord_core::state::digest_of(&derived));

    // Other words, the same hash; another code, another hash.
    let view = g.state.roster().proposal(&p2).unwrap().clone();
    let mut reworded = view.clone();
    reworded.status = ProposalStatus::Void {
        reason: Reason::new(Code::RosterVersionSuperseded, "Made against an old roster."),
    };
    assert_eq!(item_hash(&reworded), item_hash(&view));
    reworded.status = ProposalStatus::Void {
        reason: Reason::new(Code::NameTaken, "Made against an old roster."),
    };
    assert_ne!(item_hash(&reworded), item_hash(&view));
    let aside = g.state.set_aside_entries().next().unwrap().clone();
    let mut reworded = aside.clone();
    reworded.reason = Reason::new(aside.reason.code(), "This body breaks a rule.");
    assert_eq!(item_hash(&reworded), item_hash(&aside));
}

#[test]
fn lazy_consensus_passes_after_its_days_unless_a_member_objects() {
    let mut g = Gov::new();
    let q = g.propose(A, quorum(pb::QuorumKind::Lazy, 3)).unwrap();
    g.approve(B_, q).unwrap();
    assert_eq!(g.state.roster().quorum, QuorumRule::Lazy(3));
    let delta = g.key(NEW);
    let p = g
        .propose(SEC, admit("Delta Party", delta, pb::Role::Observer))
        .unwrap();
    let sec_made = g.entries.last().unwrap().timestamp_ms();
    g.alliance.clock_ms += 2 * DAY_MS;
    g.intend(A).unwrap();
    assert_eq!(g.status(p), ProposalStatus::Open);
    g.alliance.clock_ms += 2 * DAY_MS;
    // No entry is stamped after the deadline yet: still open, whatever the clock.
    assert_eq!(g.status(p), ProposalStatus::Open);
    // One member's entry after it is not enough: another could still object in
    // time.
    g.intend(B_).unwrap();
    assert_eq!(g.status(p), ProposalStatus::Open);
    g.intend(A).unwrap();
    g.intend(C).unwrap();
    assert_eq!(
        g.status(p),
        ProposalStatus::Passed {
            version: 2,
            at_ms: sec_made + 3 * DAY_MS
        }
    );
    // An observer may publish events, not intentions.
    assert_eq!(
        g.intend(NEW).unwrap_err(),
        format!("{delta} is an observer and may not publish intention entries")
    );
    // With an objection it does not pass by time.
    let gamma = g.key(NEW2);
    let p2 = g
        .propose(A, admit("Epsilon", gamma, pb::Role::Member))
        .unwrap();
    g.object(C, p2).unwrap();
    g.alliance.clock_ms += 4 * DAY_MS;
    g.intend(B_).unwrap();
    assert_eq!(g.status(p2), ProposalStatus::Open);
    // A majority still passes it.
    g.approve(B_, p2).unwrap();
    assert!(matches!(g.status(p2), ProposalStatus::Passed { .. }));
}

#[test]
fn charter_quorum_rules_and_older_charters() {
    use accord_core::Charter;
    let alliance = Alliance::new();
    let bytes = String::from_utf8(alliance.charter.bytes().to_vec()).unwrap();
    assert!(!bytes.contains("quorum"), "older charters keep their bytes");
    assert_eq!(
        State::new(alliance.charter.clone()).roster().quorum,
        QuorumRule::Majority
    );
    for (rule, want) in [
        ("\"all\"", Ok(QuorumRule::All)),
        ("{\"count\": 2}", Ok(QuorumRule::Count(2))),
        ("{\"lazy_days\": 7}", Ok(QuorumRule::Lazy(7))),
        (
            "{\"lazy_days\": 20}",
            Err(
                "charter quorum rule: lazy consensus must be 1 to 13 days (proposals lapse after 14), got 20",
            ),
        ),
    ] {
        let text = bytes.replace(
            "\"max_clock_skew_secs\": 300",
            &format!("\"max_clock_skew_secs\": 300,\n    \"quorum\": {rule}"),
        );
        match (Charter::from_bytes(text.into_bytes()), want) {
            (Ok(c), Ok(rule)) => assert_eq!(c.rules().quorum, Some(rule)),
            (Err(e), Err(w)) => assert_eq!(e.to_string(), w),
            (got, want) => panic!("{got:?} vs {want:?}"),
        }
    }
    assert_eq!("lazy:5".parse::<QuorumRule>(), Ok(QuorumRule::Lazy(5)));
    assert_eq!("3".parse::<QuorumRule>(), Ok(QuorumRule::Count(3)));
    assert!("most".parse::<QuorumRule>().is_err());
}

// The property: any arrival order, with duplicates and concurrent conflicting
// proposals, gives the same roster and digests.

#[derive(Debug, Clone)]
enum Step {
    /// Propose admitting newcomer `who` (0 or 1) under name `name` (0 or 1), as
    /// seen `stale` versions ago.
    Admit {
        by: usize,
        who: usize,
        name: usize,
        stale: u64,
    },
    Remove {
        by: usize,
        target: usize,
        stale: u64,
    },
    Role {
        by: usize,
        target: usize,
        role: usize,
        stale: u64,
    },
    Quorum {
        by: usize,
        rule: usize,
        stale: u64,
    },
    Approve {
        by: usize,
        proposal: usize,
    },
    Object {
        by: usize,
        proposal: usize,
    },
    Leave {
        by: usize,
    },
    Announce {
        by: usize,
        cert: u8,
    },
    Intend {
        by: usize,
    },
    /// Party `by` rotates its key (its next entries are signed by a new key).
    Rotate {
        by: usize,
    },
    /// Propose recovering party `target` into a new log under a new key.
    Recover {
        by: usize,
        target: usize,
        stale: u64,
    },
    /// The new log of recovery proposal `n` (if made) publishes an intention.
    NewLog {
        n: usize,
    },
    Days(u32),
}

fn step() -> impl Strategy<Value = Step> {
    let who = 0..6usize;
    prop_oneof![
        1 => (0..4usize, 0..2usize, 0..2usize, 0..3u64)
            .prop_map(|(by, who, name, stale)| Step::Admit { by, who, name, stale }),
        1 => (0..4usize, 0..6usize, 0..3u64)
            .prop_map(|(by, target, stale)| Step::Remove { by, target, stale }),
        1 => (0..4usize, 0..6usize, 0..3usize, 0..3u64)
            .prop_map(|(by, target, role, stale)| Step::Role { by, target, role, stale }),
        1 => (0..4usize, 0..4usize, 0..3u64)
            .prop_map(|(by, rule, stale)| Step::Quorum { by, rule, stale }),
        3 => (who.clone(), 0..8usize).prop_map(|(by, proposal)| Step::Approve { by, proposal }),
        1 => (who.clone(), 0..8usize).prop_map(|(by, proposal)| Step::Object { by, proposal }),
        1 => (0..6usize).prop_map(|by| Step::Leave { by }),
        2 => (0..6usize, 0..3u8).prop_map(|(by, cert)| Step::Announce { by, cert }),
        2 => (0..6usize).prop_map(|by| Step::Intend { by }),
        1 => (0..6usize).prop_map(|by| Step::Rotate { by }),
        2 => (0..4usize, 0..6usize, 0..3u64)
            .prop_map(|(by, target, stale)| Step::Recover { by, target, stale }),
        2 => (0..3usize).prop_map(|n| Step::NewLog { n }),
        1 => (1..5u32).prop_map(Step::Days),
    ]
}

/// Turns a script into entries as several nodes would sign them: each is checked
/// only by the envelope rules against the entries made so far, so proposals made
/// against old roster versions and votes on closed proposals all occur.
fn build(script: &[Step]) -> Gov {
    let mut g = Gov::new();
    g.alliance.ids.push(Identity::from_seed([7; 32]));
    let newcomers = [NEW, NEW2];
    let names = ["Delta Party", "Epsilon Group"];
    let mut proposals: Vec<EntryId> = Vec::new();
    let mut rotations = 0u8;
    // The identities of the new logs recovery proposals named, by proposal.
    let mut new_logs: Vec<usize> = Vec::new();
    let party = |i: usize| [A, B_, C, SEC, NEW, NEW2][i];
    for s in script {
        let version = |g: &Gov, stale: u64| g.state.roster().version.saturating_sub(stale);
        let made = match s {
            Step::Admit {
                by,
                who,
                name,
                stale,
            } => {
                let key = g.key(newcomers[*who]);
                let change = if *name == 0 {
                    admit(names[*name], key, pb::Role::Member)
                } else {
                    admit_with_node(names[*name], key, "new.example.org:7400", 9)
                };
                let body = proposal(version(&g, *stale), change);
                g.relay(party(*by), K::Proposal, body)
            }
            Step::Remove { by, target, stale } => {
                let key = g.key(party(*target));
                let cut = g.state.head(&key).map_or(0, |h| h.seq);
                let body = proposal(version(&g, *stale), remove(key, cut));
                g.relay(party(*by), K::Proposal, body)
            }
            Step::Role {
                by,
                target,
                role,
                stale,
            } => {
                let key = g.key(party(*target));
                let role = [pb::Role::Member, pb::Role::Secretary, pb::Role::Observer][*role];
                let body = proposal(version(&g, *stale), set_role(key, role));
                g.relay(party(*by), K::Proposal, body)
            }
            Step::Quorum { by, rule, stale } => {
                let (kind, value) = [
                    (pb::QuorumKind::Majority, 0),
                    (pb::QuorumKind::All, 0),
                    (pb::QuorumKind::Count, 2),
                    (pb::QuorumKind::Lazy, 2),
                ][*rule];
                let body = proposal(version(&g, *stale), quorum(kind, value));
                g.relay(party(*by), K::Proposal, body)
            }
            Step::Approve { by, proposal } | Step::Object { by, proposal } => {
                let Some(id) = proposals.get(*proposal).copied() else {
                    continue;
                };
                if matches!(s, Step::Approve { .. }) {
                    g.relay(party(*by), K::Approval, approval(id))
                } else {
                    let body = pb::Objection {
                        proposal: id.to_vec(),
                        reason: String::new(),
                    };
                    g.relay(party(*by), K::Objection, body.encode_to_vec())
                }
            }
            Step::Leave { by } => g.relay(party(*by), K::Leave, Vec::new()),
            Step::Announce { by, cert } => g.relay(
                party(*by),
                K::NodeAnnouncement,
                announcement("node.example.org:7400", *cert),
            ),
            Step::Intend { by } => {
                let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Intends, ""));
                g.relay(party(*by), K::try_from(kind as i32).unwrap(), body)
            }
            Step::Rotate { by } => {
                let who = party(*by);
                rotations += 1;
                let key = Identity::from_seed([100 + rotations; 32]).signing_for(g.key(who));
                let body = pb::KeyRotation {
                    key: key.key_id().to_vec(),
                };
                let made = g.relay(who, K::KeyRotation, body.encode_to_vec());
                if made.is_ok() {
                    g.alliance.ids[who] = key;
                }
                made
            }
            Step::Recover { by, target, stale } => {
                let org = g.key(party(*target));
                let cut = g.state.head(&org).map_or(0, |h| h.seq);
                let new = Identity::from_seed([150 + new_logs.len() as u8; 32]);
                let change = pb::proposal::Change::Recover(pb::Recover {
                    organisation: org.to_vec(),
                    key: new.public_id().to_vec(),
                    up_to_seq: cut,
                });
                let body = proposal(version(&g, *stale), change);
                let made = g.relay(party(*by), K::Proposal, body);
                if made.is_ok() {
                    g.alliance.ids.push(new);
                    new_logs.push(g.alliance.ids.len() - 1);
                }
                made
            }
            Step::NewLog { n } => {
                let Some(who) = new_logs.get(*n).copied() else {
                    continue;
                };
                let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Intends, ""));
                g.relay(who, K::try_from(kind as i32).unwrap(), body)
            }
            Step::Days(days) => {
                let next = g.alliance.clock_ms + i64::from(*days) * DAY_MS;
                if next < NOW_MS - DAY_MS {
                    g.alliance.clock_ms = next;
                }
                continue;
            }
        };
        if let (
            Ok(id),
            Step::Admit { .. }
            | Step::Remove { .. }
            | Step::Role { .. }
            | Step::Quorum { .. }
            | Step::Recover { .. },
        ) = (made, s)
        {
            proposals.push(id);
        }
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn the_roster_is_a_function_of_the_set_of_entries(
        script in prop::collection::vec(step(), 1..45),
        picks in prop::collection::vec(0..10usize, 0..300),
        dups in prop::collection::vec(0..80usize, 0..10),
    ) {
        let g = build(&script);
        let charter = g.alliance.charter.clone();
        let reference = State::from_entries(charter.clone(), g.entries.iter());
        prop_assert_eq!(reference.digest(), g.state.digest());
        prop_assert_eq!(reference.roster(), g.state.roster());

        // Deliver the authors' logs interleaved as `picks` says, re-sending some, as
        // a node would: an entry of an author not yet known is refused and offered
        // again later; when the roster changes what counts, the views are rebuilt
        // from every entry held.
        let logs = g.alliance.ids.len();
        let mut queues: Vec<VecDeque<&VerifiedEntry>> = vec![VecDeque::new(); logs];
        for e in &g.entries {
            let who = g.alliance.ids.iter().position(|id| id.public_id() == e.author()).unwrap();
            queues[who].push_back(e);
        }
        let mut state = State::new(charter.clone());
        let mut delivered: Vec<&VerifiedEntry> = Vec::new();
        let total = g.entries.len();
        let mut picks = picks
            .into_iter()
            .map(|p| p % logs)
            .chain((0..logs).cycle().take(logs * logs * (total + 1)));
        while queues.iter().any(|q| !q.is_empty()) {
            let Some(who) = picks.next() else {
                prop_assert!(false, "delivery did not finish");
                unreachable!();
            };
            let Some(e) = queues[who].front().copied() else {
                continue;
            };
            match accept(&charter, &state, e.signed().clone()) {
                Ok(again) => {
                    queues[who].pop_front();
                    state.apply(&again);
                    delivered.push(e);
                    if state.views_stale() {
                        state = State::from_entries(charter.clone(), delivered.iter().copied());
                    }
                }
                // Refused for an author or role not known yet: offered again later.
                Err(
                    EntryError::NotAMember(_)
                    | EntryError::NotAllowed { .. }
                    | EntryError::NotASecretary(_)
                    | EntryError::NotAMemberOrganisation(_),
                ) => continue,
                Err(e) => prop_assert!(false, "refused: {}", e),
            }
            for d in &dups {
                if *d == delivered.len() && *d > 0 {
                    let replay = delivered[d / 2].signed().clone();
                    let err = accept(&charter, &state, replay).unwrap_err();
                    prop_assert!(matches!(err, EntryError::Duplicate { .. }), "{}", err);
                }
            }
        }
        prop_assert_eq!(state.roster(), reference.roster());
        prop_assert_eq!(state.entries_digest(), reference.entries_digest());
        prop_assert_eq!(state.digest(), reference.digest());

        let mut doubled: Vec<&VerifiedEntry> = g.entries.iter().rev().collect();
        doubled.extend(g.entries.iter());
        let from_set = State::from_entries(charter, doubled);
        prop_assert_eq!(from_set.digest(), reference.digest());
        prop_assert_eq!(
            reference.digest(),
            accord_core::state::digest_of(&reference.derived())
        );
    }
}
