//! Recovery by quorum: an organisation whose key was lost or leaked, whose log is
//! frozen by a fork, or whose node lost its log goes on in a new log under a new
//! key, once the alliance approves; its old log counts up to the cut.

use accord_core::body::IntentionStatus as Status;
use accord_core::entry::Logs;
use accord_core::pb;
use accord_core::pb::EntryKind as K;
use accord_core::pb::IntentionStatus as S;
use accord_core::roster::{ProposalStatus, RetiredKey};
use accord_core::state::ForkProof;
use accord_core::{EntryId, PublicId, State};
use prost::Message;

use crate::fixture::*;

const BALLOT: &str = "local.leeds.headingley-hyde-park.2027-05-06";
/// The key Gamma's new log is signed with.
const NEW_KEY: usize = OUT;

/// A ledger, with recovery's moves; refusals as their text.
struct Net(Ledger);

impl std::ops::Deref for Net {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.0
    }
}

impl std::ops::DerefMut for Net {
    fn deref_mut(&mut self) -> &mut Ledger {
        &mut self.0
    }
}

impl Net {
    fn new() -> Self {
        Self(Ledger::new())
    }

    fn publish(&mut self, who: usize, kind: K, body: Vec<u8>) -> Result<EntryId, String> {
        self.0.publish(who, kind, body).map_err(|e| e.to_string())
    }

    fn relay(&mut self, who: usize, kind: K, body: Vec<u8>) -> Result<EntryId, String> {
        self.0.relay(who, kind, body).map_err(|e| e.to_string())
    }

    fn intend(&mut self, who: usize, status: S) -> Result<EntryId, String> {
        let (kind, body) = accord_core::body::encode(&intention(BALLOT, status, ""));
        self.publish(who, K::try_from(kind as i32).unwrap(), body)
    }

    fn propose_recovery(&mut self, by: usize, up_to_seq: u64) -> Result<EntryId, String> {
        let body = pb::Proposal {
            roster_version: self.state.roster().version,
            change: Some(pb::proposal::Change::Recover(pb::Recover {
                organisation: self.key(C).to_vec(),
                key: self.key(NEW_KEY).to_vec(),
                up_to_seq,
            })),
            rationale: "Gamma's laptop was stolen".into(),
        };
        self.publish(by, K::Proposal, body.encode_to_vec())
    }

    fn approve(&mut self, who: usize, id: EntryId) -> Result<EntryId, String> {
        let body = pb::Approval {
            proposal: id.to_vec(),
        };
        self.publish(who, K::Approval, body.encode_to_vec())
    }

    /// Gamma's position on the ballot, as the views count it.
    fn gamma_position(&self) -> Option<Status> {
        let gamma = self.key(C);
        self.state
            .intentions()
            .into_iter()
            .find(|v| v.organisation == gamma)
            .map(|v| v.intention.status)
    }

    /// The same entries (and fork proofs) in one set, in reverse order.
    fn again(&self) -> State {
        self.rebuilt(true)
    }
}

#[test]
fn an_organisation_recovered_by_quorum_goes_on_in_a_new_log_that_counts_as_it() {
    let mut n = Net::new();
    let (gamma, new_key) = (n.key(C), n.key(NEW_KEY));
    n.intend(C, S::Intends).unwrap();
    // Seq 2 was signed by whoever holds the leaked key: the recovery cuts it off.
    n.intend(C, S::StoodAside).unwrap();
    assert_eq!(n.gamma_position(), Some(Status::StoodAside));
    // The new key's entries are refused until a recovery proposal names it.
    let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Withdrawn, ""));
    let kind = K::try_from(kind as i32).unwrap();
    assert!(
        n.relay(NEW_KEY, kind, body.clone())
            .unwrap_err()
            .contains("is not a member or secretary"),
    );
    let p = n.propose_recovery(A, 1).unwrap();
    let view = n.state.roster().proposal(&p).unwrap();
    // The organisation recovered has no vote on its own recovery.
    assert_eq!(view.electorate, {
        let mut e = vec![n.key(A), n.key(B_)];
        e.sort();
        e
    });
    assert_eq!(view.status, ProposalStatus::Open);
    // Named by an open proposal, the new log is stored and relayed but counts
    // nowhere, and cannot publish yet.
    n.relay(NEW_KEY, kind, body).unwrap();
    assert_eq!(n.gamma_position(), Some(Status::StoodAside));
    assert!(
        n.intend(NEW_KEY, S::Considering)
            .unwrap_err()
            .contains("not a member"),
    );
    n.approve(B_, p).unwrap();
    assert!(matches!(
        n.state.roster().proposal(&p).unwrap().status,
        ProposalStatus::Passed { version: 1, .. }
    ));
    // Gamma's old log counts up to seq 1 and its new log after it: the entry the
    // new log held before the recovery now counts as Gamma's.
    let roster = n.state.roster();
    let org = roster.organisation(&gamma).unwrap();
    assert_eq!(org.log(), new_key);
    assert_eq!(org.signing_key(), new_key);
    assert_eq!(org.recoveries.len(), 1);
    assert_eq!(
        (org.recoveries[0].log, org.recoveries[0].up_to_seq),
        (gamma, 1)
    );
    assert_eq!(
        org.retired_keys,
        vec![RetiredKey {
            key: gamma,
            last_seq: 1
        }]
    );
    assert_eq!(roster.name_of(&new_key), Some("Gamma Party"));
    assert!(roster.counts(&gamma, 1, K::Intention as i32));
    assert!(!roster.counts(&gamma, 2, K::Intention as i32));
    assert!(roster.counts(&new_key, 7, K::Intention as i32));
    assert_eq!(n.gamma_position(), Some(Status::Withdrawn));
    // It publishes again at once, as Gamma; the old key signs nothing more.
    n.intend(NEW_KEY, S::Considering).unwrap();
    assert_eq!(n.gamma_position(), Some(Status::Considering));
    let refused = n.intend(C, S::Intends).unwrap_err();
    assert!(
        refused.contains("was replaced by a recovery") && refused.contains("up to seq 1"),
        "{refused}"
    );
    // It votes as Gamma, in its new log.
    let q = n
        .publish(
            A,
            K::Proposal,
            pb::Proposal {
                roster_version: n.state.roster().version,
                change: Some(pb::proposal::Change::Quorum(pb::QuorumRule {
                    kind: pb::QuorumKind::All as i32,
                    value: 0,
                })),
                rationale: String::new(),
            }
            .encode_to_vec(),
        )
        .unwrap();
    n.approve(NEW_KEY, q).unwrap();
    let view = n.state.roster().proposal(&q).unwrap();
    assert!(view.approvals.contains(&gamma), "{:?}", view.approvals);
    // Any order of the same entries gives the same roster and digests.
    let again = n.again();
    assert_eq!(again.roster(), n.state.roster());
    assert_eq!(again.digest(), n.state.digest());
}

#[test]
fn a_frozen_log_is_recovered_from_the_seq_before_the_fork() {
    let mut n = Net::new();
    let (gamma, new_key) = (n.key(C), n.key(NEW_KEY));
    n.intend(C, S::Intends).unwrap();
    // Gamma's key signs two different entries at seq 2: its log is frozen there.
    let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::StoodAside, ""));
    let one = n.alliance.sign_raw(C, kind as i32, body);
    n.alliance.unsign(C);
    let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Confirmed, ""));
    let two = n.alliance.sign_raw(C, kind as i32, body);
    let proof = ForkProof::verify(
        &n.alliance.charter,
        &one.encode_to_vec(),
        &two.encode_to_vec(),
    )
    .unwrap();
    // Nothing of seq 2 was applied: nothing to rebuild.
    assert!(!n.state.record_fork(proof));
    assert_eq!(n.state.frozen_from(&gamma), Some(2));
    assert_eq!(n.state.frozen().count(), 1);
    // Frozen, Gamma cannot publish; its seq 1 still counts.
    assert!(n.intend(C, S::Withdrawn).is_err());
    assert_eq!(n.gamma_position(), Some(Status::Intends));
    let p = n.propose_recovery(A, 1).unwrap();
    n.approve(B_, p).unwrap();
    // The freeze is lifted from the cut: Gamma publishes again at once, in its
    // new log, and the fork proof stays as evidence.
    n.intend(NEW_KEY, S::StoodAside).unwrap();
    assert_eq!(n.gamma_position(), Some(Status::StoodAside));
    assert_eq!(n.state.frozen_from(&new_key), None);
    assert_eq!(n.state.forks().count(), 1);
    assert_eq!(n.state.frozen().count(), 0, "the freeze is lifted");
    let again = n.again();
    assert_eq!(again.roster(), n.state.roster());
    assert_eq!(again.digest(), n.state.digest());
    assert_eq!(again.entries_digest(), n.state.entries_digest());
}

#[test]
fn recoveries_that_cannot_be_made_are_refused_and_change_nothing() {
    let mut n = Net::new();
    let before = n.state.digest();
    let body = |org: PublicId, key: PublicId| {
        pb::Proposal {
            roster_version: 0,
            change: Some(pb::proposal::Change::Recover(pb::Recover {
                organisation: org.to_vec(),
                key: key.to_vec(),
                up_to_seq: 0,
            })),
            rationale: String::new(),
        }
        .encode_to_vec()
    };
    let (a, b, gamma, new_key) = (n.key(A), n.key(B_), n.key(C), n.key(NEW_KEY));
    // A key already in the roster cannot be the new log's.
    let err = n.publish(A, K::Proposal, body(gamma, b)).unwrap_err();
    assert!(err.contains("already in the roster"), "{err}");
    // Only an organisation of the roster can be recovered.
    let err = n.publish(A, K::Proposal, body(new_key, a)).unwrap_err();
    assert!(err.contains("not an active organisation"), "{err}");
    // A malformed key is refused by the body rules.
    let bad = pb::Proposal {
        roster_version: 0,
        change: Some(pb::proposal::Change::Recover(pb::Recover {
            organisation: gamma.to_vec(),
            key: vec![7; 31],
            up_to_seq: 0,
        })),
        rationale: String::new(),
    };
    let err = n.publish(A, K::Proposal, bad.encode_to_vec()).unwrap_err();
    assert!(err.contains("key"), "{err}");
    assert_eq!(n.state.digest(), before);
    // Two recoveries of one organisation: the first to pass makes the other void.
    let first = n.publish(A, K::Proposal, body(gamma, new_key)).unwrap();
    let other = n.alliance.ids.len();
    n.alliance
        .ids
        .push(accord_core::Identity::from_seed([42; 32]));
    let second = n
        .publish(B_, K::Proposal, body(gamma, n.key(other)))
        .unwrap();
    n.approve(B_, first).unwrap();
    assert!(matches!(
        n.state.roster().proposal(&second).unwrap().status,
        ProposalStatus::Void { .. }
    ));
}

/// Issue 22, defect 6: after a recovery, an event's version in the replaced log
/// and its version in the new log leave the same state whichever arrives first,
/// applied one at a time as a node's writer applies them (rebuilding when the
/// roster changes what counts).
#[test]
fn an_events_versions_in_the_old_and_new_logs_give_one_state_in_any_order() {
    use pb::publish_request::Body as B;
    let mut n = Net::new();
    let version = |title: &str| {
        let mut e = event("u1", "2027-05-01T10:00", "2027-05-01T11:00", "Hall", "");
        e.title = title.into();
        let (kind, body) = accord_core::body::encode(&B::Event(e));
        (K::try_from(kind as i32).unwrap(), body)
    };
    let (kind, body) = version("from the old log");
    n.publish(C, kind, body).unwrap();
    let p = n.propose_recovery(A, 1).unwrap();
    n.approve(B_, p).unwrap();
    let (kind, body) = version("from the new log");
    n.publish(NEW_KEY, kind, body).unwrap();
    let set = State::from_entries(n.alliance.charter.clone(), n.entries.iter());
    assert_eq!(set.digest(), n.state.digest());
    // Every order that keeps each log in seq order: the old log's version first,
    // or after the new log's.
    let old = n.entries[0].clone();
    let rest: Vec<_> = n.entries[1..].to_vec();
    for at in 0..=rest.len() {
        let mut order = rest.clone();
        order.insert(at, old.clone());
        let mut state = State::new(n.alliance.charter.clone());
        let mut applied = Vec::new();
        for e in &order {
            state.apply(e);
            applied.push(e.clone());
            if state.views_stale() {
                state = State::from_entries(n.alliance.charter.clone(), applied.iter());
            }
        }
        assert_eq!(
            state.events(),
            set.events(),
            "the old log's version applied at {at}"
        );
        assert_eq!(
            state.digest(),
            set.digest(),
            "the old log's version applied at {at}"
        );
    }
}
