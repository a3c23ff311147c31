//! Property: derived state is a function of the set of entries. Any arrival order that
//! keeps each author's log order, with any duplicates, gives the same digest.

use std::collections::VecDeque;

use accord_core::entry::EntryError;
use accord_core::pb;
use accord_core::pb::publish_request::Body as B;
use accord_core::{EntryId, State, VerifiedEntry};
use proptest::prelude::*;

use crate::fixture::*;

const BALLOTS: [&str; 3] = [
    "local.leeds.headingley-hyde-park.2027-05-06",
    "local.sheffield.walkley.2027-05-06",
    "parl.runcorn-and-helsby.by.2027-03-04",
];

#[derive(Debug, Clone)]
enum Action {
    Intention {
        ballot: usize,
        status: i32,
    },
    Resolution {
        ballot: usize,
        stands: usize,
        aside: usize,
    },
    Statement {
        cosign: bool,
    },
    Endorse {
        statement: usize,
    },
    Event {
        uid: usize,
        hour: u32,
        cancelled: bool,
    },
    Unknown,
}

fn action() -> impl Strategy<Value = (usize, Action)> {
    prop_oneof![
        (0..3usize, 0..3usize, 1..=5i32)
            .prop_map(|(who, ballot, status)| (who, Action::Intention { ballot, status })),
        (0..3usize, 0..3usize, 0..3usize)
            .prop_filter("distinct parties", |(_, s, a)| s != a)
            .prop_map(|(ballot, stands, aside)| (
                SEC,
                Action::Resolution {
                    ballot,
                    stands,
                    aside
                }
            )),
        (0..4usize, any::<bool>()).prop_map(|(who, cosign)| (who, Action::Statement { cosign })),
        (0..4usize, 0..8usize).prop_map(|(who, statement)| (who, Action::Endorse { statement })),
        (0..4usize, 0..3usize, 9..20u32, any::<bool>()).prop_map(|(who, uid, hour, cancelled)| (
            who,
            Action::Event {
                uid,
                hour,
                cancelled
            }
        )),
        (0..4usize).prop_map(|who| (who, Action::Unknown)),
    ]
}

/// Turns a script into valid entries, in the order they were made.
fn build(script: &[(usize, Action)]) -> (Alliance, Vec<VerifiedEntry>) {
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let mut statements: Vec<EntryId> = Vec::new();
    let mut out = Vec::new();
    for (who, action) in script {
        let body = match action {
            Action::Intention { ballot, status } => {
                let candidate = if *status == pb::IntentionStatus::Confirmed as i32 {
                    "A. Candidate"
                } else {
                    ""
                };
                let mut b = intention(BALLOTS[*ballot], pb::IntentionStatus::Intends, candidate);
                if let B::Intention(i) = &mut b {
                    i.status = *status;
                }
                b
            }
            Action::Resolution {
                ballot,
                stands,
                aside,
            } => resolution(
                BALLOTS[*ballot],
                vec![alliance.key_bytes(*stands)],
                vec![alliance.key_bytes(*aside)],
            ),
            Action::Statement { cosign } => B::Statement(pb::Statement {
                title: "t".into(),
                text: "x".into(),
                cosigners: if *cosign {
                    vec![alliance.key_bytes(B_), alliance.key_bytes(C)]
                } else {
                    vec![]
                },
            }),
            Action::Endorse { statement } => match statements.get(*statement) {
                Some(id) => B::Endorsement(pb::Endorsement {
                    statement: id.to_vec(),
                }),
                None => continue,
            },
            Action::Event {
                uid,
                hour,
                cancelled,
            } => {
                let mut e = event(
                    &format!("ev{uid}"),
                    &format!("2027-04-10T{hour:02}:00"),
                    &format!("2027-04-10T{:02}:30", hour + 1),
                    ["Hall", "Library"][uid % 2],
                    "",
                );
                e.cancelled = *cancelled;
                B::Event(e)
            }
            Action::Unknown => {
                let signed = alliance.sign_raw(*who, 77, vec![1, 2, 3]);
                let entry = accept(&alliance.charter, &state, signed).unwrap();
                state.apply(&entry);
                out.push(entry);
                continue;
            }
        };
        let entry = alliance.verified(&state, *who, body);
        if matches!(entry.body(), Ok(accord_core::body::Body::Statement(_))) {
            statements.push(entry.id());
        }
        state.apply(&entry);
        out.push(entry);
    }
    (alliance, out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn arrival_order_and_duplicates_do_not_change_the_state(
        script in prop::collection::vec(action(), 1..40),
        picks in prop::collection::vec(0..5usize, 0..200),
        dups in prop::collection::vec(0..64usize, 0..10),
    ) {
        let (alliance, entries) = build(&script);
        let reference = State::from_entries(alliance.charter.clone(), &entries);

        // Deliver the authors' logs interleaved as `picks` says, re-sending some
        // entries, through the acceptance rules as a node would.
        let mut queues: Vec<VecDeque<&VerifiedEntry>> = vec![VecDeque::new(); 5];
        for e in &entries {
            let who = alliance.ids.iter().position(|id| id.public_id() == e.author()).unwrap();
            queues[who].push_back(e);
        }
        let mut state = State::new(alliance.charter.clone());
        let mut delivered: Vec<&VerifiedEntry> = Vec::new();
        let mut picks = picks.into_iter().chain((0..5).cycle().take(5 * entries.len() + 5));
        while queues.iter().any(|q| !q.is_empty()) {
            let who = picks.next().unwrap();
            if let Some(e) = queues[who].pop_front() {
                let again = accept(&alliance.charter, &state, e.signed().clone()).unwrap();
                state.apply(&again);
                delivered.push(e);
                for d in &dups {
                    if *d == delivered.len() {
                        let replay = delivered[d / 2].signed().clone();
                        let err = accept(&alliance.charter, &state, replay).unwrap_err();
                        prop_assert!(matches!(err, EntryError::Duplicate { .. }), "{}", err);
                    }
                }
            }
        }
        prop_assert_eq!(state.digest(), reference.digest());
        // The hashes kept item by item as entries arrive give the digest of the
        // views made whole.
        prop_assert_eq!(
            reference.digest(),
            accord_core::state::digest_of(&reference.derived())
        );

        // The set given in reverse, with every entry twice, derives the same state.
        let mut doubled: Vec<&VerifiedEntry> = entries.iter().rev().collect();
        doubled.extend(entries.iter());
        let from_set = State::from_entries(alliance.charter.clone(), doubled);
        prop_assert_eq!(from_set.digest(), reference.digest());
    }
}
