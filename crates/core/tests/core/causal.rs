//! Causal order: "before" and "after" between authors come from the entries' causal
//! references (what the signer's node held), not from the signers' clocks.

use accord_core::body::encode;
use accord_core::entry::{self, LogHead};
use accord_core::pb;
use accord_core::pb::EntryKind as K;
use accord_core::pb::IntentionStatus as S;
use accord_core::roster::ProposalStatus;
use accord_core::{PublicId, State, VerifiedEntry};
use prost::Message;

use crate::fixture::*;

const LEEDS: &str = "local.leeds.headingley-hyde-park.2027-05-06";

/// Two members intend in one ballot; the secretary resolves that Beta stands aside.
/// Returns the alliance, the state and the entries, the resolution last.
/// With `beta_legacy`, Beta's intention carries no causal reference.
fn resolved_with(beta_legacy: bool) -> (Alliance, State, Vec<VerifiedEntry>) {
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let mut entries = Vec::new();
    let entry = alliance.verified(&state, A, intention(LEEDS, S::Intends, ""));
    state.apply(&entry);
    entries.push(entry);
    let entry = if beta_legacy {
        alliance.clock_ms += 1_000;
        beta_intends(&alliance, &state, alliance.clock_ms, None)
    } else {
        alliance.verified(&state, B_, intention(LEEDS, S::Intends, ""))
    };
    state.apply(&entry);
    entries.push(entry);
    let body = resolution(
        LEEDS,
        vec![alliance.key_bytes(A)],
        vec![alliance.key_bytes(B_)],
    );
    let entry = alliance.verified(&state, SEC, body);
    state.apply(&entry);
    entries.push(entry);
    (alliance, state, entries)
}

fn resolved() -> (Alliance, State, Vec<VerifiedEntry>) {
    resolved_with(false)
}

fn resolution_state(state: &State) -> &'static str {
    let resolutions = state.resolutions();
    assert_eq!(resolutions.len(), 1);
    resolutions[0].state.as_str()
}

/// Beta's next entry declaring `status`, stamped `timestamp_ms`, as its fields (to
/// change before signing with [`entry::sign_entry`]).
fn beta_next(alliance: &Alliance, state: &State, status: S, timestamp_ms: i64) -> pb::Entry {
    let (kind, body) = encode(&intention(LEEDS, status, ""));
    let head: Option<LogHead> = state
        .heads()
        .find(|(k, _)| *k == alliance.key(B_))
        .map(|h| h.1);
    let signed = entry::sign(
        &alliance.ids[B_],
        alliance.charter.id(),
        head.as_ref(),
        timestamp_ms,
        kind as i32,
        body,
    );
    pb::Entry::decode(signed.entry.as_slice()).unwrap()
}

/// Beta's next entry: intends, stamped `timestamp_ms`, naming `seen` (None: no
/// causal reference, as entries signed before it existed).
fn beta_intends(
    alliance: &Alliance,
    state: &State,
    timestamp_ms: i64,
    seen: Option<&[(PublicId, u64)]>,
) -> VerifiedEntry {
    let mut e = beta_next(alliance, state, S::Intends, timestamp_ms);
    e.seen = seen.map(entry::causal);
    accept(
        &alliance.charter,
        state,
        entry::sign_entry(&alliance.ids[B_], &e),
    )
    .unwrap()
}

/// Signs an entry as a release before causal references did.
fn legacy_sign(alliance: &Alliance, who: usize, e: pb::Entry) -> pb::SignedEntry {
    entry::sign_entry(&alliance.ids[who], &e)
}

#[test]
fn a_backdated_intention_whose_signer_had_seen_the_resolution_breaches_it() {
    let (alliance, mut state, entries) = resolved();
    assert_eq!(resolution_state(&state), "pending");
    let resolution = entries.last().unwrap();
    // Stamped before the resolution (the clock allows it: after Beta's own last
    // entry), but Beta's node held the resolution when it signed.
    let backdated = entries[1].timestamp_ms() + 1;
    assert!(backdated < resolution.timestamp_ms());
    let seen = state.seen_since(&alliance.key(B_));
    assert!(seen.contains(&(alliance.key(SEC), resolution.seq())));
    let entry = beta_intends(&alliance, &state, backdated, Some(&seen));
    state.apply(&entry);
    assert_eq!(resolution_state(&state), "breached");
    // Any arrival order gives the same.
    let mut all = entries.clone();
    all.push(entry);
    let again = State::from_entries(alliance.charter.clone(), all.iter().rev());
    assert_eq!(again.digest(), state.digest());
}

#[test]
fn an_intention_whose_signer_had_not_seen_the_resolution_does_not_breach_it() {
    let (alliance, mut state, entries) = resolved();
    let resolution = entries.last().unwrap();
    // Stamped after the resolution, but made without it (Beta's node was cut off):
    // the resolution stays pending, not breached.
    let later = resolution.timestamp_ms() + 60_000;
    let entry = beta_intends(&alliance, &state, later, Some(&[]));
    state.apply(&entry);
    assert_eq!(resolution_state(&state), "pending");
}

#[test]
fn entries_without_a_causal_reference_are_compared_by_their_clocks() {
    for (offset, expected) in [(-500, "pending"), (60_000, "breached")] {
        let (alliance, mut state, entries) = resolved_with(true);
        let resolution = entries.last().unwrap();
        let entry = beta_intends(&alliance, &state, resolution.timestamp_ms() + offset, None);
        assert!(entry.seen().is_none());
        state.apply(&entry);
        assert_eq!(resolution_state(&state), expected, "offset {offset} ms");
    }
}

#[test]
fn a_new_entry_must_carry_a_causal_reference() {
    let (alliance, state, _) = resolved();
    let mut e = beta_next(&alliance, &state, S::Withdrawn, NOW_MS - 1000);
    e.seen = None;
    let legacy = legacy_sign(&alliance, B_, e.clone());
    let err = accept_new(&alliance.charter, &state, legacy.clone()).unwrap_err();
    assert!(
        err.to_string().starts_with("entry field seen: missing"),
        "{err}"
    );
    // Relayed (signed by an older release), it is accepted.
    accept(&alliance.charter, &state, legacy).unwrap();
    // A reference naming the author itself is refused as new.
    e.seen = Some(pb::Causal {
        heads: vec![pb::SeenHead {
            author: alliance.key_bytes(B_),
            seq: 1,
        }],
    });
    let err = accept_new(&alliance.charter, &state, legacy_sign(&alliance, B_, e)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entry field seen: names the entry's own author"
    );
}

#[test]
fn an_approval_stamped_before_its_proposal_still_counts() {
    let mut alliance = Alliance::new();
    alliance.ids.push(accord_core::Identity::from_seed([6; 32]));
    let mut state = State::new(alliance.charter.clone());
    let mut entries = Vec::new();
    let newcomer = alliance.key(OUT);
    let proposal = pb::Proposal {
        roster_version: 0,
        change: Some(pb::proposal::Change::Admit(pb::Admit {
            name: "Delta Party".into(),
            key: newcomer.to_vec(),
            role: pb::Role::Member as i32,
            ..Default::default()
        })),
        rationale: String::new(),
    };
    let propose = alliance.sign_seeing(A, K::Proposal as i32, proposal.encode_to_vec(), &[]);
    let propose = accept_new(&alliance.charter, &state, propose).unwrap();
    state.apply(&propose);
    entries.push(propose.clone());
    // Beta's clock is an hour behind: its approval is stamped before the proposal,
    // but it names the proposal and its node had seen it.
    alliance.clock_ms = propose.timestamp_ms() - 3_600_000;
    let approval = pb::Approval {
        proposal: propose.id().to_vec(),
    };
    let seen = state.seen_since(&alliance.key(B_));
    let approve = alliance.sign_seeing(B_, K::Approval as i32, approval.encode_to_vec(), &seen);
    let approve = accept_new(&alliance.charter, &state, approve).unwrap();
    assert!(approve.timestamp_ms() < propose.timestamp_ms());
    state.apply(&approve);
    entries.push(approve);
    let status = state
        .roster()
        .proposal(&propose.id())
        .unwrap()
        .status
        .clone();
    assert!(
        matches!(status, ProposalStatus::Passed { .. }),
        "{status:?}"
    );
    assert!(state.roster().organisation(&newcomer).is_some());
    let again = State::from_entries(alliance.charter.clone(), entries.iter().rev());
    assert_eq!(again.roster(), state.roster());
}
