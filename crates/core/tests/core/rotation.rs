//! Key rotation: the log rules that decide which key signs which seq, and the
//! roster's current and retired keys.

use accord_core::entry::{EntryError, Logs};
use accord_core::pb;
use accord_core::pb::EntryKind as K;
use accord_core::pb::IntentionStatus as S;
use accord_core::roster::RetiredKey;
use accord_core::{Identity, State};
use prost::Message;

use crate::fixture::*;

const BALLOT: &str = "local.leeds.headingley-hyde-park.2027-05-06";

/// A ledger, with key rotation's moves.
struct Log(Ledger);

impl std::ops::Deref for Log {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.0
    }
}

impl std::ops::DerefMut for Log {
    fn deref_mut(&mut self) -> &mut Ledger {
        &mut self.0
    }
}

impl Log {
    fn new() -> Self {
        Self(Ledger::new())
    }

    /// Signs the next entry of `who` with its current key and offers it as a new
    /// entry; applied if accepted.
    fn publish(&mut self, who: usize, kind: K, body: Vec<u8>) -> Result<(), EntryError> {
        let signed = self.alliance.sign_raw(who, kind as i32, body);
        self.offer(who, signed)
    }

    fn offer(&mut self, who: usize, signed: pb::SignedEntry) -> Result<(), EntryError> {
        self.0.offer_new(who, signed).map(drop)
    }

    fn intend(&mut self, who: usize) -> Result<(), EntryError> {
        let (kind, body) = accord_core::body::encode(&intention(BALLOT, S::Intends, ""));
        self.publish(who, K::try_from(kind as i32).unwrap(), body)
    }

    /// Rotates `who` to a key made from `seed`; returns the new key's identity.
    fn rotate(&mut self, who: usize, seed: u8) -> Result<Identity, EntryError> {
        let key = Identity::from_seed([seed; 32]).signing_for(self.alliance.key(who));
        self.publish(who, K::KeyRotation, rotation(&key))?;
        self.alliance.ids[who] = key.clone();
        Ok(key)
    }

    /// Signs the next entry of `who` with `key` instead of its current key.
    fn as_key(&mut self, who: usize, key: Identity, kind: K, body: Vec<u8>) -> EntryError {
        let current = std::mem::replace(&mut self.alliance.ids[who], key);
        let signed = self.alliance.sign_raw(who, kind as i32, body);
        self.alliance.ids[who] = current;
        self.offer(who, signed).unwrap_err()
    }
}

fn rotation(key: &Identity) -> Vec<u8> {
    pb::KeyRotation {
        key: key.key_id().to_vec(),
    }
    .encode_to_vec()
}

fn intention_body() -> Vec<u8> {
    accord_core::body::encode(&intention(BALLOT, S::Considering, "")).1
}

#[test]
fn a_rotation_continues_the_same_log_with_the_new_key() {
    let mut log = Log::new();
    log.intend(A).unwrap();
    let first = log.alliance.key(A);
    let key = log.rotate(A, 50).unwrap();
    log.intend(A).unwrap();
    log.intend(A).unwrap();
    // One log, one organisation: seq 4, author A, signed by the new key.
    let head = log.state.head(&first).unwrap();
    assert_eq!(head.seq, 4);
    let last = log.entries.last().unwrap();
    assert_eq!(last.author(), first);
    assert_eq!(last.signer(), key.key_id());
    assert_eq!(log.state.signing_key(&first, 5), key.key_id());
    assert_eq!(
        log.state.key_history(&first),
        vec![(1, first), (3, key.key_id())]
    );
    let org = log.state.roster().organisation(&first).unwrap();
    assert_eq!(org.signing_key(), key.key_id());
    assert_eq!(
        org.retired_keys,
        vec![RetiredKey {
            key: first,
            last_seq: 2
        }]
    );
    // The intention counts as the organisation's, under its identity.
    assert!(
        log.state
            .intentions()
            .iter()
            .any(|i| i.organisation == first)
    );
}

#[test]
fn the_retired_key_signs_nothing_more() {
    let mut log = Log::new();
    let old = log.alliance.ids[A].clone();
    let first = old.public_id();
    log.rotate(A, 50).unwrap();
    let err = log.as_key(A, old.clone(), K::Intention, intention_body());
    assert!(
        matches!(err, EntryError::RetiredKey { last_seq: 1, seq: 2, signer, .. } if signer == first),
        "{err}"
    );
    // Not even another rotation.
    let other = Identity::from_seed([51; 32]);
    let err = log.as_key(A, old, K::KeyRotation, rotation(&other));
    assert!(matches!(err, EntryError::RetiredKey { .. }), "{err}");
    assert_eq!(log.state.head(&first).unwrap().seq, 1, "nothing stored");
}

#[test]
fn a_rotation_not_signed_by_the_current_key_is_refused() {
    let mut log = Log::new();
    let first = log.alliance.key(A);
    // Signed by a key that was never A's (the outsider's key, for A's log).
    let stranger = Identity::from_seed([60; 32]).signing_for(first);
    let new = Identity::from_seed([61; 32]);
    let err = log.as_key(A, stranger.clone(), K::KeyRotation, rotation(&new));
    assert!(
        matches!(err, EntryError::WrongSigner { seq: 1, signer, expected, .. }
            if signer == stranger.key_id() && expected == first),
        "{err}"
    );
    // Signed by the key it names (self-signed): refused as it is decoded.
    let self_signed = Identity::from_seed([63; 32]).signing_for(first);
    let err = decode_err(&log, &self_signed, rotation(&self_signed));
    assert!(
        matches!(err, EntryError::BadField { field: "body", .. }),
        "{err}"
    );
    assert_eq!(log.state.head(&first), None, "nothing stored");
}

/// Signs `body` as a first key rotation by `key` and decodes it: the error.
fn decode_err(log: &Log, key: &Identity, body: Vec<u8>) -> EntryError {
    let signed = accord_core::entry::sign(
        key,
        log.alliance.charter.id(),
        None,
        NOW_MS,
        K::KeyRotation as i32,
        body,
    );
    accord_core::entry::decode(signed, 1 << 20).unwrap_err()
}

#[test]
fn a_rotation_must_name_a_new_key_not_in_the_roster() {
    let mut log = Log::new();
    let first = log.alliance.key(A);
    // Another organisation's key: refused for a new entry.
    let beta = log.alliance.key(B_);
    let body = pb::KeyRotation { key: beta.to_vec() }.encode_to_vec();
    let err = log.publish(A, K::KeyRotation, body).unwrap_err();
    assert!(matches!(err, EntryError::Governance(_)), "{err}");
    // Back to a key the log used before: refused by the envelope rules.
    let used = log.rotate(A, 70).unwrap();
    log.rotate(A, 71).unwrap();
    let body = pb::KeyRotation {
        key: used.key_id().to_vec(),
    }
    .encode_to_vec();
    let err = log.publish(A, K::KeyRotation, body.clone()).unwrap_err();
    assert!(matches!(err, EntryError::Governance(_)), "{err}");
    // ... and, relayed from a peer (no roster rules), by the envelope rules.
    let signed = log.alliance.sign_raw(A, K::KeyRotation as i32, body);
    let err = accept(&log.alliance.charter, &log.state, signed).unwrap_err();
    log.alliance.unsign(A);
    assert!(
        matches!(err, EntryError::BadField { field: "body", .. }),
        "{err}"
    );
    assert_eq!(log.state.head(&first).unwrap().seq, 2, "nothing stored");
    // Back to the organisation's first key, or not 32 bytes: refused when decoded.
    let current = log.alliance.ids[A].clone();
    let err = decode_err(
        &log,
        &current,
        pb::KeyRotation {
            key: first.to_vec(),
        }
        .encode_to_vec(),
    );
    assert!(
        matches!(err, EntryError::BadField { field: "body", .. }),
        "{err}"
    );
    let err = decode_err(
        &log,
        &current,
        pb::KeyRotation { key: vec![1; 5] }.encode_to_vec(),
    );
    assert!(
        matches!(err, EntryError::BadField { field: "body", .. }),
        "{err}"
    );
}

#[test]
fn a_retired_key_cannot_fork_the_log() {
    let mut log = Log::new();
    let old = log.alliance.ids[A].clone();
    let first = old.public_id();
    log.intend(A).unwrap();
    let key = log.rotate(A, 80).unwrap();
    log.intend(A).unwrap();
    // A different entry 3 signed by the retired key is refused as such, not taken
    // as one side of a fork (which would freeze the log).
    let mut forger = Alliance::new();
    forger.ids[A] = old;
    let mut state_before = State::new(log.alliance.charter.clone());
    for e in &log.entries[..2] {
        state_before.apply(e);
    }
    forger.sign_raw(A, K::Intention as i32, intention_body());
    forger.sign_raw(A, K::Intention as i32, intention_body());
    let third = forger.sign_raw(A, K::Intention as i32, intention_body());
    let err = accept(&log.alliance.charter, &log.state, third).unwrap_err();
    assert!(matches!(err, EntryError::RetiredKey { .. }), "{err}");
    assert_eq!(log.state.frozen_from(&first), None);
    // The new key signing at seq 2 (where the old key signed the rotation) is no
    // fork either: seq 2 is the old key's.
    let mut early = Alliance::new();
    early.ids[A] = key;
    early.sign_raw(A, K::Intention as i32, intention_body());
    let second = early.sign_raw(A, K::Intention as i32, intention_body());
    let err = accept(&log.alliance.charter, &log.state, second).unwrap_err();
    assert!(
        matches!(err, EntryError::WrongSigner { seq: 2, .. }),
        "{err}"
    );
}

#[test]
fn rotations_give_the_same_state_in_any_order() {
    let mut log = Log::new();
    log.intend(A).unwrap();
    log.rotate(A, 90).unwrap();
    log.intend(B_).unwrap();
    log.intend(A).unwrap();
    log.rotate(B_, 91).unwrap();
    log.rotate(A, 92).unwrap();
    log.intend(B_).unwrap();
    log.intend(A).unwrap();
    let charter = log.alliance.charter.clone();
    let reversed = State::from_entries(charter.clone(), log.entries.iter().rev());
    assert_eq!(reversed.entries_digest(), log.state.entries_digest());
    assert_eq!(reversed.digest(), log.state.digest());
    assert_eq!(reversed.roster(), log.state.roster());
    let a = log
        .state
        .roster()
        .organisation(&log.alliance.key(A))
        .unwrap();
    assert_eq!(a.retired_keys.len(), 2);
    assert_eq!(a.retired_keys[1].last_seq, 4);
}
