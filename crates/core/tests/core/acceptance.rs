//! Every acceptance rule refuses with its own error, and refusal changes nothing.

use accord_core::entry::{self, EntryError};
use accord_core::pb;
use accord_core::pb::IntentionStatus as S;
use accord_core::pb::publish_request::Body as B;
use accord_core::reason::Code;
use accord_core::{PublicId, State};
use prost::Message;

use crate::fixture::*;

const BALLOT: &str = "local.leeds.headingley-hyde-park.2027-05-06";

/// Builds a state holding one accepted intention by A, lets `make` produce an entry,
/// and checks the verdict for a new entry: "ok" or the exact error text. A refused
/// entry must leave the state's digest unchanged.
///
/// The same entry relayed from a peer meets only the envelope rules: if the body
/// rules refused it, it is accepted, its body reads as the same error, and applying
/// it counts it as set aside and changes no view.
fn check(make: impl FnOnce(&mut Alliance, &State) -> pb::SignedEntry, expected: &str) {
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let first = alliance.verified(&state, A, intention(BALLOT, S::Intends, ""));
    state.apply(&first);
    let before = state.digest();
    let signed = make(&mut alliance, &state);
    let verdict = accept_new(&alliance.charter, &state, signed.clone());
    match verdict {
        Ok(_) => assert_eq!("ok", expected),
        Err(err) => {
            assert_eq!(err.to_string(), expected);
            assert_eq!(state.digest(), before, "a refused entry changed the state");
            if matches!(err, EntryError::Body(_) | EntryError::UnknownParty { .. }) {
                let relayed = accept(&alliance.charter, &state, signed)
                    .expect("the envelope rules accept a body the body rules refuse");
                // The keys a body names are judged where the views count it, by the
                // roster those views count by: the entry is set aside there.
                if !matches!(err, EntryError::UnknownParty { .. }) {
                    assert_eq!(relayed.body().unwrap_err().to_string(), expected);
                }
                let views = (state.intentions(), state.statements(), state.events());
                state.apply(&relayed);
                assert_eq!(state.set_aside_count(), 1);
                let reason = &state.set_aside_entries().next().unwrap().reason;
                assert_eq!(
                    reason.text(),
                    expected,
                    "set aside for the reason a new entry is refused"
                );
                let code = match &err {
                    EntryError::UnknownParty { .. } => Code::UnknownParty,
                    _ => Code::BodyRules,
                };
                assert_eq!(reason.code(), code);
                assert_eq!(state.entry_count(), 2);
                assert_eq!(
                    (state.intentions(), state.statements(), state.events()),
                    views,
                    "a set-aside entry changed a view"
                );
            } else {
                assert!(
                    accept(&alliance.charter, &state, signed).is_err(),
                    "an envelope rule refuses relayed entries too"
                );
            }
        }
    }
}

fn key_hex(alliance: &Alliance, who: usize) -> String {
    alliance.key(who).to_string()
}

#[test]
fn a_valid_entry_is_accepted() {
    check(
        |a, _| a.sign(B_, intention(BALLOT, S::Considering, "")),
        "ok",
    );
}

#[test]
fn garbage_bytes_are_refused() {
    let err = entry::decode_bytes(b"\xff\xff\xff not an entry", 65536).unwrap_err();
    assert!(matches!(err, EntryError::Undecodable(_)), "{err}");
    check(
        |_, _| pb::SignedEntry {
            entry: vec![0xff, 0x01, 0x02],
            signature: vec![0; 64],
        },
        "entry bytes do not decode: failed to decode Protobuf message: invalid wire type value: 7",
    );
}

#[test]
fn a_bad_signature_is_refused() {
    check(
        |a, _| {
            let mut signed = a.sign(B_, intention(BALLOT, S::Intends, ""));
            signed.signature[10] ^= 1;
            signed
        },
        "signature does not verify",
    );
    check(
        |a, _| {
            // The signature of one entry on the bytes of another.
            let mut signed = a.sign(B_, intention(BALLOT, S::Intends, ""));
            let other = a.sign(C, intention(BALLOT, S::Intends, ""));
            signed.signature = other.signature;
            signed
        },
        "signature does not verify",
    );
}

#[test]
fn altered_bytes_are_refused() {
    check(
        |a, _| {
            let mut signed = a.sign(B_, intention(BALLOT, S::Intends, ""));
            let mut entry = pb::Entry::decode(signed.entry.as_slice()).unwrap();
            entry.timestamp_ms += 1;
            signed.entry = entry.encode_to_vec();
            signed
        },
        "signature does not verify",
    );
}

#[test]
fn another_alliances_entry_is_refused() {
    check(
        |a, _| {
            let signed = a.sign(B_, intention(BALLOT, S::Intends, ""));
            let mut entry = pb::Entry::decode(signed.entry.as_slice()).unwrap();
            entry.alliance = vec![9; 32];
            let bytes = entry.encode_to_vec();
            resign(a, B_, bytes)
        },
        &format!(
            "entry is for alliance {}, this node serves {}",
            "09".repeat(32),
            Alliance::new().charter.id()
        ),
    );
}

/// Signs `bytes` as `who` (a well-signed entry with hand-made contents).
fn resign(a: &Alliance, who: usize, bytes: Vec<u8>) -> pb::SignedEntry {
    let pem = a.ids[who].to_pem();
    let key =
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&pem)
            .unwrap();
    let message = [entry::SIGNATURE_TAG, &bytes].concat();
    let signature = ed25519_dalek::Signer::sign(&key, &message);
    pb::SignedEntry {
        entry: bytes,
        signature: signature.to_bytes().to_vec(),
    }
}

fn with_entry(a: &mut Alliance, who: usize, edit: impl FnOnce(&mut pb::Entry)) -> pb::SignedEntry {
    let signed = a.sign(who, intention(BALLOT, S::Intends, ""));
    let mut entry = pb::Entry::decode(signed.entry.as_slice()).unwrap();
    edit(&mut entry);
    resign(a, who, entry.encode_to_vec())
}

#[test]
fn a_non_member_is_refused() {
    let outsider = Alliance::new().key(OUT);
    check(
        |a, _| a.sign(OUT, intention(BALLOT, S::Intends, "")),
        &format!("author {outsider} is not a member or secretary of the alliance"),
    );
}

#[test]
fn log_rules() {
    check(
        |a, _| with_entry(a, A, |e| e.seq = 3),
        "entry seq 3 does not follow the author's head 1 (expected 2)",
    );
    check(
        |a, _| with_entry(a, B_, |e| e.seq = 0),
        "entry field seq: must be 1 or more",
    );
    check(
        |a, _| with_entry(a, A, |e| e.prev = vec![7; 32]),
        "entry's previous hash does not match the author's entry 1",
    );
    check(
        |a, _| with_entry(a, A, |e| e.prev = vec![]),
        "entry field prev: missing",
    );
    check(
        |a, _| with_entry(a, B_, |e| e.prev = vec![1; 32]),
        "entry field prev: must be empty for seq 1",
    );
    check(
        |a, _| with_entry(a, A, |e| e.timestamp_ms = 0),
        &format!(
            "entry timestamp 0 is earlier than the author's previous entry ({})",
            NOW_MS - 3_600_000 + 1_000
        ),
    );
    check(
        |a, _| with_entry(a, B_, |e| e.timestamp_ms = NOW_MS + 301_000),
        &format!(
            "entry timestamp {} is more than 300s ahead of this node's clock",
            NOW_MS + 301_000
        ),
    );
    check(
        |a, _| with_entry(a, B_, |e| e.author = vec![1, 2]),
        "entry field author: public key must be 32 bytes, got 2",
    );
}

#[test]
fn a_replay_and_a_fork_are_told_apart() {
    // The replay: the very entry already applied.
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let signed = alliance.sign(A, intention(BALLOT, S::Intends, ""));
    let first = accept(&alliance.charter, &state, signed.clone()).unwrap();
    state.apply(&first);
    assert_eq!(
        accept(&alliance.charter, &state, signed).unwrap_err(),
        EntryError::Duplicate {
            seq: 1,
            id: first.id()
        }
    );
    // The fork: a different entry 1 from the same author.
    let mut other = Alliance::new();
    let forked = other.sign(A, intention(BALLOT, S::Withdrawn, ""));
    assert_eq!(
        accept(&alliance.charter, &state, forked).unwrap_err(),
        EntryError::Fork {
            seq: 1,
            stored: first.id()
        }
    );
}

#[test]
fn a_frozen_log_accepts_nothing_from_the_fork_on() {
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let first = alliance.verified(&state, A, intention(BALLOT, S::Intends, ""));
    state.apply(&first);
    state.record_fork(accord_core::state::ForkProof {
        author: alliance.key(A),
        seq: 1,
        first: vec![1],
        second: vec![2],
    });
    let next = alliance.sign(A, intention(BALLOT, S::Withdrawn, ""));
    assert_eq!(
        accept(&alliance.charter, &state, next).unwrap_err(),
        EntryError::Frozen {
            author: alliance.key(A),
            seq: 1
        }
    );
}

/// Regression: a fork proof froze its author's whole log, so a node that was behind
/// when the author forked at seq 3 refused the author's entry 2 for ever and never
/// caught up (issue 9). Entries before the fork's seq are accepted from anyone.
#[test]
fn a_frozen_log_still_accepts_entries_before_the_fork() {
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let first = alliance.verified(&state, A, intention(BALLOT, S::Intends, ""));
    state.apply(&first);
    let second = alliance.sign(A, intention(BALLOT, S::Withdrawn, ""));
    let third = alliance.sign(A, intention(BALLOT, S::Intends, ""));
    state.record_fork(accord_core::state::ForkProof {
        author: alliance.key(A),
        seq: 3,
        first: vec![1],
        second: vec![2],
    });
    let second = accept(&alliance.charter, &state, second).expect("before the fork");
    state.apply(&second);
    assert_eq!(
        accept(&alliance.charter, &state, third).unwrap_err(),
        EntryError::Frozen {
            author: alliance.key(A),
            seq: 3
        }
    );
}

#[test]
fn an_oversized_entry_is_refused() {
    check(
        |a, _| {
            a.sign(
                B_,
                B::Statement(pb::Statement {
                    title: "t".into(),
                    text: "x".repeat(70_000),
                    cosigners: vec![],
                }),
            )
        },
        "entry is 70162 bytes, over the limit of 65536",
    );
}

#[test]
fn roles_are_enforced() {
    let alliance = Alliance::new();
    check(
        |a, _| {
            let (b, c) = (a.key_bytes(B_), a.key_bytes(C));
            a.sign(A, resolution(BALLOT, vec![b], vec![c]))
        },
        &format!(
            "only a secretary may record a resolution; {} is not one",
            key_hex(&alliance, A)
        ),
    );
    check(
        |a, _| a.sign(SEC, intention(BALLOT, S::Intends, "")),
        &format!(
            "only a member organisation may declare an intention; {} is a secretary",
            key_hex(&alliance, SEC)
        ),
    );
    check(
        |a, _| {
            let (b, c) = (a.key_bytes(B_), a.key_bytes(C));
            a.sign(SEC, resolution(BALLOT, vec![b], vec![c]))
        },
        "ok",
    );
}

#[test]
fn parties_named_in_a_body_must_belong_to_the_alliance() {
    let alliance = Alliance::new();
    check(
        |a, _| {
            let (b, out) = (a.key_bytes(B_), a.key_bytes(OUT));
            a.sign(SEC, resolution(BALLOT, vec![b], vec![out]))
        },
        &format!(
            "stand_aside names {}, who is not a member organisation of the alliance",
            key_hex(&alliance, OUT)
        ),
    );
    check(
        |a, _| {
            let sec = a.key_bytes(SEC);
            a.sign(
                B_,
                B::Statement(pb::Statement {
                    title: "t".into(),
                    text: "x".into(),
                    cosigners: vec![sec],
                }),
            )
        },
        "ok",
    );
    check(
        |a, _| {
            let mut e = event("e1", "2027-05-01T10:00", "2027-05-01T11:00", "Hall", "");
            e.organisers = vec![a.key_bytes(OUT)];
            a.sign(B_, B::Event(e))
        },
        &format!(
            "organisers names {}, who is not a member or secretary of the alliance",
            key_hex(&alliance, OUT)
        ),
    );
}

#[test]
fn bodies_are_checked() {
    check(
        |a, _| {
            a.sign(
                B_,
                intention("local.leeds.headingley.2027-02-30", S::Intends, ""),
            )
        },
        "entry body is invalid: ballot id \"local.leeds.headingley.2027-02-30\" has an impossible date 2027-02-30",
    );
    check(
        |a, _| a.sign(B_, intention(BALLOT, S::Confirmed, "")),
        "entry body is invalid: a confirmed intention needs a candidate name",
    );
    check(
        |a, _| a.sign(B_, intention(BALLOT, S::Confirmed, "Ada Lovelace")),
        "ok",
    );
    check(
        |a, _| a.sign(B_, intention(BALLOT, S::Unspecified, "")),
        "entry body is invalid: intention has no status",
    );
    check(
        |a, _| {
            a.sign(
                B_,
                B::Event(event(
                    "e1",
                    "2027-05-01T12:00",
                    "2027-05-01T11:00",
                    "Hall",
                    "",
                )),
            )
        },
        "entry body is invalid: event ends (2027-05-01T11:00) before it starts (2027-05-01T12:00)",
    );
    check(
        |a, _| {
            a.sign(
                B_,
                B::Event(event(
                    "e1",
                    "2027-03-28T01:30",
                    "2027-03-28T03:00",
                    "Hall",
                    "",
                )),
            )
        },
        "entry body is invalid: start 2027-03-28T01:30 does not exist in Europe/London (the clocks go forward then)",
    );
    let all_day = |start: &str, end: &str| {
        let mut e = event("e1", start, end, "Hall", "");
        e.all_day = true;
        B::Event(e)
    };
    check(|a, _| a.sign(B_, all_day("2027-05-01", "")), "ok");
    check(|a, _| a.sign(B_, all_day("2027-05-01", "2027-05-03")), "ok");
    check(
        |a, _| a.sign(B_, all_day("2027-05-01T10:00", "")),
        "entry body is invalid: start \"2027-05-01T10:00\" is not a date of the form YYYY-MM-DD",
    );
    check(
        |a, _| a.sign(B_, all_day("2027-05-01", "2027-02-30")),
        "entry body is invalid: end \"2027-02-30\" is not a date of the form YYYY-MM-DD",
    );
    check(
        |a, _| a.sign(B_, all_day("2027-05-03", "2027-05-01")),
        "entry body is invalid: all-day event ends (2027-05-01) before it starts (2027-05-03)",
    );
    check(
        |a, _| {
            a.sign(
                B_,
                B::Event(event(
                    "e1",
                    "2027-05-01T10:00",
                    "2027-05-01T11:00",
                    "Hall",
                    "X123",
                )),
            )
        },
        "entry body is invalid: area \"X123\" is not an ONS GSS code (a letter E, W, S, N or K and 8 digits)",
    );
    check(
        |a, _| {
            let b = a.key_bytes(B_);
            a.sign(SEC, resolution(BALLOT, vec![b.clone()], vec![b]))
        },
        &format!(
            "entry body is invalid: resolution names {} both to stand and to stand aside",
            key_hex(&Alliance::new(), B_)
        ),
    );
    check(
        |a, _| {
            a.sign(
                B_,
                B::Endorsement(pb::Endorsement {
                    statement: vec![1, 2, 3],
                }),
            )
        },
        "entry body is invalid: statement holds 3 bytes where a 32-byte key was expected",
    );
}

#[test]
fn unknown_kinds_are_accepted_untouched() {
    let mut alliance = Alliance::new();
    let state = State::new(alliance.charter.clone());
    let signed = alliance.sign_raw(B_, 42, b"\x0a\x03new".to_vec());
    let entry = accept(&alliance.charter, &state, signed.clone()).unwrap();
    assert_eq!(entry.kind(), 42);
    assert_eq!(entry.signed(), &signed);
    assert_eq!(entry.to_bytes(), signed.encode_to_vec());
}

#[test]
fn batch_verification_finds_the_forgery() {
    let mut alliance = Alliance::new();
    let mut decoded = Vec::new();
    for i in 0..20 {
        let mut signed = alliance.sign(i % 3, intention(BALLOT, S::Considering, ""));
        if i == 13 {
            signed.signature[0] ^= 0x55;
        }
        decoded.push(entry::decode(signed, 65536).unwrap());
    }
    assert_eq!(entry::verify_batch(&decoded).unwrap_err(), vec![13]);
    decoded.remove(13);
    assert!(entry::verify_batch(&decoded).is_ok());
    let _: Option<PublicId> = None;
}

/// Two nodes that each hold a different side of a fork agree once both have the
/// proof: neither side counts, and the digests match.
#[test]
fn both_sides_of_a_fork_agree_once_the_proof_is_known() {
    let mut one = Alliance::new();
    let mut two = Alliance::new();
    let left = one.sign(A, intention(BALLOT, S::Intends, ""));
    let right = two.sign(A, intention(BALLOT, S::Withdrawn, ""));
    let proof = accord_core::state::ForkProof::verify(
        &one.charter,
        &left.encode_to_vec(),
        &right.encode_to_vec(),
    )
    .unwrap();
    let mut states = Vec::new();
    for (alliance, side) in [(&mut one, left), (&mut two, right)] {
        let mut state = State::new(alliance.charter.clone());
        let side = accept(&alliance.charter, &state, side).unwrap();
        state.apply(&side);
        let other = alliance.verified(&state, B_, intention(BALLOT, S::Intends, ""));
        state.apply(&other);
        assert!(
            state.record_fork(proof.clone()),
            "the applied side must be dropped"
        );
        states.push(State::from_entries_and_forks(
            alliance.charter.clone(),
            [proof.clone()],
            [&side, &other],
        ));
    }
    assert_eq!(states[0].digest(), states[1].digest());
    assert_eq!(states[0].intentions().len(), 1, "only B's position counts");
    // A later, higher proof about the same author changes nothing.
    let mut later = proof.clone();
    later.seq = 5;
    assert!(!states[0].record_fork(later));
}
