//! Entries: signing, decoding, and the acceptance rules of DESIGN.md principle 3.
//!
//! The signature covers the exact encoded `Entry` bytes, and the entry id is the
//! hash of the same bytes: nothing is re-encoded between the author and any reader.
//!
//! The rules come in two parts. The *envelope* rules are the ones every release
//! agrees on: size, decoding, field shapes, alliance, author's role (and the role
//! an entry kind needs), signature, the author's log (seq, previous hash, fork,
//! time order) and the clock. Whether a node stores and relays an entry depends on
//! them alone, so two releases never disagree about which entries exist. The *body*
//! rules (what a statement, intention or event may say, which keys it may name) are
//! a release's reading of the entry: a new entry must meet them to be published
//! ([`DecodedEntry::check_body`]), but an entry signed elsewhere whose body this
//! release does not accept is still stored and relayed, and only left out of this
//! release's views ([`VerifiedEntry::body`] is then an error, counted by the state).

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;

use crate::body::{Body, BodyError};
use crate::charter::{Charter, Role};
use crate::id::{AllianceId, EntryId, PublicId, tagged_hash};
use crate::identity::Identity;
use crate::pb;
use crate::roster::{GovernanceError, RoleSet, Roster};

/// Prefix of the message an author signs: the tag, then the entry bytes.
pub const SIGNATURE_TAG: &[u8] = b"accord/v1/entry\0";
const ENTRY_ID_TAG: &[u8] = b"accord/v1/entry-id\0";

/// Why an entry was refused. Each acceptance rule has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("entry bytes do not decode: {0}")]
    Undecodable(String),
    #[error("entry field {field}: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("entry is for alliance {found}, this node serves {expected}")]
    WrongAlliance {
        expected: AllianceId,
        found: AllianceId,
    },
    #[error("author {0} is not a member or secretary of the alliance")]
    NotAMember(PublicId),
    #[error("only a secretary may record a resolution; {0} is not one")]
    NotASecretary(PublicId),
    #[error("only a member organisation may declare an intention; {0} is a secretary")]
    NotAMemberOrganisation(PublicId),
    #[error("{field} names {key}, who is not a {wanted} of the alliance")]
    UnknownParty {
        field: &'static str,
        key: PublicId,
        wanted: &'static str,
    },
    #[error("{author} is {role} and may not publish {kind} entries")]
    NotAllowed {
        author: PublicId,
        role: &'static str,
        kind: &'static str,
    },
    #[error(
        "{author} left or was removed from the alliance: its log counts up to seq {up_to_seq}, \
         and nothing later is accepted from it"
    )]
    Removed { author: PublicId, up_to_seq: u64 },
    #[error(
        "the log of {author} was replaced by a recovery: it counts up to seq {up_to_seq}, and \
         its organisation signs in the log of {next} now"
    )]
    Superseded {
        author: PublicId,
        up_to_seq: u64,
        next: PublicId,
    },
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    #[error("signature does not verify")]
    BadSignature,
    #[error(
        "entry {seq} of {author} is signed by {signer}, a key it retired: that key signed \
         its log up to seq {last_seq}, and {expected} signs it at seq {seq}"
    )]
    RetiredKey {
        author: PublicId,
        seq: u64,
        signer: PublicId,
        last_seq: u64,
        expected: PublicId,
    },
    #[error(
        "entry {seq} of {author} is signed by {signer}, which is not its key: {expected} \
         signs its log at seq {seq}"
    )]
    WrongSigner {
        author: PublicId,
        seq: u64,
        signer: PublicId,
        expected: PublicId,
    },
    #[error("entry body is invalid: {0}")]
    Body(#[from] BodyError),
    #[error("entry seq {found} does not follow the author's head {head} (expected {expected})")]
    SeqGap {
        head: u64,
        expected: u64,
        found: u64,
    },
    #[error("entry seq {seq} is already stored (replay)")]
    Duplicate { seq: u64, id: EntryId },
    #[error("entry seq {seq} conflicts with the stored entry {stored} of the same author (fork)")]
    Fork { seq: u64, stored: EntryId },
    #[error("entry's previous hash does not match the author's entry {seq}")]
    PrevMismatch { seq: u64 },
    #[error("author {author} forked their log at seq {seq}; nothing from that seq on is accepted")]
    Frozen { author: PublicId, seq: u64 },
    #[error("entry timestamp {timestamp_ms} is more than {skew_secs}s ahead of this node's clock")]
    FromTheFuture { timestamp_ms: i64, skew_secs: u32 },
    #[error(
        "entry timestamp {timestamp_ms} is earlier than the author's previous entry ({previous_ms})"
    )]
    TimeWentBack { timestamp_ms: i64, previous_ms: i64 },
}

/// The head of one author's log, as far as a node has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub seq: u64,
    pub id: EntryId,
    pub timestamp_ms: i64,
}

/// What the log rules need to know about the logs a node holds.
pub trait Logs {
    fn head(&self, author: &PublicId) -> Option<LogHead>;
    /// The id of the stored entry `seq` of `author`, if stored.
    fn id_at(&self, author: &PublicId, seq: u64) -> Option<EntryId>;
    /// The seq of the author's fork, if a fork proof froze their log: entries
    /// before it still count and are accepted; nothing from it on is.
    fn frozen_from(&self, author: &PublicId) -> Option<u64>;
    /// The roster as the entries held derive it.
    fn roster(&self) -> &Roster;
    /// The roles `key` could hold by the entries held ([`crate::roster::Known`]);
    /// None for a key no entry or charter names.
    fn known_roles(&self, key: &PublicId) -> Option<RoleSet>;
    /// The key that signs `author`'s entry `seq`, by the key rotations among its
    /// entries held before `seq`: the author key itself until its first rotation.
    fn signing_key(&self, author: &PublicId, seq: u64) -> PublicId;
    /// Every key of `author`'s log by the entries held, oldest first, each with the
    /// first seq it signs: `(1, author)`, then one per rotation.
    fn key_history(&self, author: &PublicId) -> Vec<(u64, PublicId)>;
}

/// The key that signs entry `seq` of a log whose keys are `history` (as
/// [`Logs::key_history`] gives it).
pub fn key_at(history: &[(u64, PublicId)], seq: u64) -> Option<PublicId> {
    history
        .iter()
        .rev()
        .find(|(from, _)| *from <= seq)
        .map(|(_, key)| *key)
}

/// An entry that decoded into well-formed fields; its signature is not yet checked.
#[derive(Debug, Clone)]
pub struct DecodedEntry {
    signed: pb::SignedEntry,
    id: EntryId,
    alliance: AllianceId,
    author: PublicId,
    /// The key that signed it: the author's own, or the key a rotation named.
    signer: PublicId,
    /// For a key rotation: the key that signs the author's next entries.
    rotates_to: Option<PublicId>,
    seq: u64,
    prev: Option<EntryId>,
    timestamp_ms: i64,
    kind: i32,
    body: Vec<u8>,
    signature: Signature,
    /// The causal reference as this release reads it (see [`DecodedEntry::seen`]).
    seen: Option<Vec<(PublicId, u64)>>,
    /// Why the causal reference is malformed, if it is (a new entry is refused for
    /// it; an entry from elsewhere is read without the malformed heads).
    seen_problem: Option<String>,
}

/// An entry that passed every envelope rule. Only [`DecodedEntry::accept`] and
/// [`VerifiedEntry::reload`] make one. Its body is this release's reading of it:
/// the body, or why this release does not accept it.
#[derive(Debug, Clone)]
pub struct VerifiedEntry {
    decoded: DecodedEntry,
    body: Result<Body, EntryError>,
}

/// Decodes a signed entry given as its encoded `SignedEntry` bytes.
pub fn decode_bytes(bytes: &[u8], max_bytes: usize) -> Result<DecodedEntry, EntryError> {
    if bytes.len() > max_bytes {
        return Err(EntryError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let signed =
        pb::SignedEntry::decode(bytes).map_err(|e| EntryError::Undecodable(e.to_string()))?;
    decode(signed, max_bytes)
}

/// Decodes a signed entry and checks the shape of its fields.
pub fn decode(signed: pb::SignedEntry, max_bytes: usize) -> Result<DecodedEntry, EntryError> {
    let size = signed.encoded_len();
    if size > max_bytes {
        return Err(EntryError::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    let entry = pb::Entry::decode(signed.entry.as_slice())
        .map_err(|e| EntryError::Undecodable(e.to_string()))?;
    let bad = |field: &'static str, reason: String| EntryError::BadField { field, reason };
    let alliance =
        AllianceId::from_slice(&entry.alliance).map_err(|e| bad("alliance", e.to_string()))?;
    let author = PublicId::from_slice(&entry.author).map_err(|e| bad("author", e.to_string()))?;
    if entry.seq == 0 {
        return Err(bad("seq", "must be 1 or more".into()));
    }
    let prev = match (entry.seq, entry.prev.is_empty()) {
        (1, true) => None,
        (1, false) => return Err(bad("prev", "must be empty for seq 1".into())),
        (_, true) => return Err(bad("prev", "missing".into())),
        (_, false) => {
            Some(EntryId::from_slice(&entry.prev).map_err(|e| bad("prev", e.to_string()))?)
        }
    };
    let signature: [u8; 64] = signed.signature.as_slice().try_into().map_err(|_| {
        bad(
            "signature",
            format!("must be 64 bytes, got {}", signed.signature.len()),
        )
    })?;
    // The signer: empty for the author's own key, so an entry has one encoding.
    let signer = if entry.signer.is_empty() {
        author
    } else {
        let signer =
            PublicId::from_slice(&entry.signer).map_err(|e| bad("signer", e.to_string()))?;
        if signer == author {
            return Err(bad(
                "signer",
                "must be empty when the author's own key signs".into(),
            ));
        }
        signer
    };
    // A rotation's new key is an envelope matter: it decides who signs what follows.
    let rotates_to = if entry.kind == pb::EntryKind::KeyRotation as i32 {
        let key = crate::body::rotation_key(&entry.body).map_err(|e| bad("body", e.to_string()))?;
        if key == signer || key == author {
            return Err(bad(
                "body",
                "a key rotation must name a new key, not the one signing it or the author's".into(),
            ));
        }
        Some(key)
    } else {
        None
    };
    let id = EntryId::from_bytes(tagged_hash(ENTRY_ID_TAG, &signed.entry));
    let (seen, seen_problem) = read_seen(&author, entry.seen.as_ref());
    Ok(DecodedEntry {
        seen,
        seen_problem,
        id,
        alliance,
        author,
        signer,
        rotates_to,
        seq: entry.seq,
        prev,
        timestamp_ms: entry.timestamp_ms,
        kind: entry.kind,
        body: entry.body,
        signature: Signature::from_bytes(&signature),
        signed,
    })
}

/// The causal reference of an entry by `author`: the heads it names, without any
/// whose key is not 32 bytes or is the author's own (and why, if there were such).
/// Not an envelope rule: releases before the field existed store and relay such
/// entries, so this one must too; it only reads what it can.
fn read_seen(
    author: &PublicId,
    seen: Option<&pb::Causal>,
) -> (Option<Vec<(PublicId, u64)>>, Option<String>) {
    let Some(seen) = seen else {
        return (None, None);
    };
    let mut problem = None;
    let heads = seen
        .heads
        .iter()
        .filter_map(|h| match PublicId::from_slice(&h.author) {
            Ok(key) if key == *author => {
                problem = Some("names the entry's own author".to_owned());
                None
            }
            Ok(key) => Some((key, h.seq)),
            Err(e) => {
                problem = Some(format!("names a key that is not one: {e}"));
                None
            }
        })
        .collect();
    (Some(heads), problem)
}

impl DecodedEntry {
    pub fn id(&self) -> EntryId {
        self.id
    }

    pub fn author(&self) -> PublicId {
        self.author
    }

    /// The key that signed it (the author's own unless the log rotated its key).
    pub fn signer(&self) -> PublicId {
        self.signer
    }

    /// For a key rotation: the key that signs the author's entries after it.
    pub fn rotates_to(&self) -> Option<PublicId> {
        self.rotates_to
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    pub fn prev(&self) -> Option<EntryId> {
        self.prev
    }

    /// Checks that the signer is the key that signs the author's log at this seq,
    /// given the key rotations earlier in the log ([`Logs::signing_key`]).
    pub fn check_signer(&self, logs: &impl Logs) -> Result<(), EntryError> {
        let expected = logs.signing_key(&self.author, self.seq);
        if self.signer == expected {
            return Ok(());
        }
        Err(signer_error(
            self.author,
            self.seq,
            self.signer,
            &logs.key_history(&self.author),
        ))
    }

    pub fn alliance(&self) -> AllianceId {
        self.alliance
    }

    /// The other authors' log heads the author's node named as seen since its
    /// previous entry (`Entry.seen`); None for an entry signed before the field
    /// existed.
    pub fn seen(&self) -> Option<&[(PublicId, u64)]> {
        self.seen.as_deref()
    }

    /// The encoded `SignedEntry`: the exact entry bytes and the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.encode_to_vec()
    }

    /// The message the author signed: the tag and the exact entry bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        [SIGNATURE_TAG, &self.signed.entry].concat()
    }

    /// Checks the signature alone (strict verification: no small-order keys, no
    /// malleable signatures).
    pub fn verify_signature(&self) -> Result<(), EntryError> {
        let key = VerifyingKey::from_bytes(self.signer.as_bytes())
            .map_err(|_| EntryError::BadSignature)?;
        key.verify_strict(&self.signed_message(), &self.signature)
            .map_err(|_| EntryError::BadSignature)
    }

    /// Applies every envelope rule but the signature, which the caller has verified
    /// (singly or in a batch), and returns the verified entry. The body rules are
    /// applied too, but only to read the body: an entry whose body this release does
    /// not accept is still accepted (see the module documentation).
    pub fn accept(
        self,
        charter: &Charter,
        logs: &impl Logs,
        now_ms: i64,
        signature_verified: SignatureChecked,
    ) -> Result<VerifiedEntry, EntryError> {
        let _ = signature_verified;
        self.check_envelope(charter, |k| logs.known_roles(k))?;
        self.check_log(logs)?;
        let skew_secs = charter.rules().max_clock_skew_secs;
        if self.timestamp_ms > now_ms.saturating_add(i64::from(skew_secs) * 1000) {
            return Err(EntryError::FromTheFuture {
                timestamp_ms: self.timestamp_ms,
                skew_secs,
            });
        }
        let body = self.check_body();
        Ok(VerifiedEntry {
            decoded: self,
            body,
        })
    }

    /// As [`DecodedEntry::accept`], for a new entry published or submitted to this
    /// node: the body rules come first (in their documented place, after the
    /// signature) and a body they refuse refuses the entry.
    pub fn accept_new(
        self,
        charter: &Charter,
        logs: &impl Logs,
        now_ms: i64,
        signature_verified: SignatureChecked,
    ) -> Result<VerifiedEntry, EntryError> {
        self.check_envelope(charter, |k| logs.known_roles(k))?;
        self.check_standing(logs.roster())?;
        self.check_new_rules(logs.roster())?;
        self.accept(charter, logs, now_ms, signature_verified)
    }

    /// The author as the current roster has it, for a new entry: an active
    /// organisation whose current role allows the entry's kind. An organisation
    /// that left or was removed may not add past its cut.
    pub fn check_standing(&self, roster: &Roster) -> Result<(), EntryError> {
        let Some((org, _, cut)) = roster.place(&self.author) else {
            return Err(EntryError::NotAMember(self.author));
        };
        if org.log() != self.author {
            return Err(EntryError::Superseded {
                author: self.author,
                up_to_seq: cut.unwrap_or(0),
                next: org.log(),
            });
        }
        match cut {
            Some(cut) if self.seq > cut => Err(EntryError::Removed {
                author: self.author,
                up_to_seq: cut,
            }),
            Some(_) => kind_role(self.kind, self.author, org.roles_held),
            None => kind_role(self.kind, self.author, RoleSet::of(org.role)),
        }
    }

    /// The body rules of this release for a new entry: the body decodes and is well
    /// formed, the keys it names are organisations of the roster, and a governance
    /// entry fits the roster (see [`Roster::check_new`]).
    pub fn check_new_rules(&self, roster: &Roster) -> Result<Body, EntryError> {
        match (&self.seen, &self.seen_problem) {
            (None, _) => {
                return Err(EntryError::BadField {
                    field: "seen",
                    reason: "missing: a new entry must carry its causal reference, the \
                             other authors' log heads its signer held (may be empty)"
                        .into(),
                });
            }
            (Some(_), Some(problem)) => {
                return Err(EntryError::BadField {
                    field: "seen",
                    reason: problem.clone(),
                });
            }
            (Some(_), None) => {}
        }
        let body = Body::decode(self.kind, &self.body)?;
        crate::body::check_new(&body)?;
        check_parties(|k| roster.role(k).map(RoleSet::of), &body)?;
        if let Body::KeyRotation { key } = &body
            && let Some(o) = roster.key_holder(key)
        {
            return Err(GovernanceError::Refused(format!(
                "key {key} is already in the roster (a key of {})",
                o.name
            ))
            .into());
        }
        if let Some(action) = body.governance() {
            roster.check_new(&self.author, self.timestamp_ms, &action)?;
        }
        Ok(body)
    }

    /// The first rules after decoding: the entry is for this alliance and its author
    /// holds a role in it. Cheap, so a node can apply them before the signature.
    pub fn check_author(
        &self,
        charter: &Charter,
        known: impl Fn(&PublicId) -> Option<RoleSet>,
    ) -> Result<RoleSet, EntryError> {
        if self.alliance != charter.id() {
            return Err(EntryError::WrongAlliance {
                expected: charter.id(),
                found: self.alliance,
            });
        }
        known(&self.author).ok_or(EntryError::NotAMember(self.author))
    }

    /// The body checked as a new entry's: decodes, and meets [`crate::body::check_new`].
    /// For entries submitted to be published, not for entries relayed or reloaded.
    pub fn check_new_body(&self) -> Result<(), EntryError> {
        let body = Body::decode(self.kind, &self.body)?;
        crate::body::check_new(&body)?;
        Ok(())
    }

    /// Alliance, role, and the role the entry's kind needs: the envelope rules that
    /// do not depend on the log. A kind this release does not know needs no role.
    ///
    /// The roles are those the author could hold by the entries held (the charter's,
    /// and any a proposal names for it): a set that only grows as entries arrive, so
    /// an entry refused for its author now is accepted once the proposal naming the
    /// author arrives, and never refused once accepted.
    pub fn check_envelope(
        &self,
        charter: &Charter,
        known: impl Fn(&PublicId) -> Option<RoleSet>,
    ) -> Result<RoleSet, EntryError> {
        let roles = self.check_author(charter, known)?;
        kind_role(self.kind, self.author, roles)?;
        Ok(roles)
    }

    /// The envelope rules a stored entry is checked against when read back: the
    /// alliance, and for an author the charter names, the role its kind needs. An
    /// author admitted later is known only from other entries of the store, which
    /// the caller checks once it has read them all.
    pub fn check_stored(&self, charter: &Charter) -> Result<(), EntryError> {
        let known = |k: &PublicId| charter.role(k).map(RoleSet::of);
        if known(&self.author).is_some() {
            self.check_envelope(charter, known)?;
        } else {
            self.check_author(charter, |_| Some(RoleSet::default()))?;
        }
        Ok(())
    }

    /// The body as this release reads an entry from elsewhere: it decodes and is
    /// well formed. The keys it names are checked against the roster where the
    /// views count it ([`crate::state::State::apply`]), since the roster it was
    /// published under may not be known here yet.
    pub fn check_body(&self) -> Result<Body, EntryError> {
        Ok(Body::decode(self.kind, &self.body)?)
    }

    fn check_log(&self, logs: &impl Logs) -> Result<(), EntryError> {
        if let Some(seq) = logs.frozen_from(&self.author)
            && self.seq >= seq
        {
            return Err(EntryError::Frozen {
                author: self.author,
                seq,
            });
        }
        let head = logs.head(&self.author);
        let head_seq = head.map_or(0, |h| h.seq);
        // Who may sign this seq is known from the log up to it (a rotation precedes
        // what it governs), so an entry, or one side of a fork, signed by any other
        // key is refused whatever the arrival order.
        if self.seq <= head_seq + 1 {
            self.check_signer(logs)?;
            // (Keys that signed the log up to this seq: a replay of this very
            // rotation is a duplicate, not a reuse of the key it names.)
            if let Some(key) = self.rotates_to
                && logs
                    .key_history(&self.author)
                    .iter()
                    .any(|(from, k)| *k == key && *from <= self.seq)
            {
                return Err(EntryError::BadField {
                    field: "body",
                    reason: format!("the key rotation names {key}, which this log used before"),
                });
            }
        }
        if self.seq <= head_seq {
            let stored = logs
                .id_at(&self.author, self.seq)
                .expect("entries up to the head are stored");
            return Err(if stored == self.id {
                EntryError::Duplicate {
                    seq: self.seq,
                    id: stored,
                }
            } else {
                EntryError::Fork {
                    seq: self.seq,
                    stored,
                }
            });
        }
        if self.seq != head_seq + 1 {
            return Err(EntryError::SeqGap {
                head: head_seq,
                expected: head_seq + 1,
                found: self.seq,
            });
        }
        if let Some(head) = head {
            if self.prev != Some(head.id) {
                return Err(EntryError::PrevMismatch { seq: head.seq });
            }
            if self.timestamp_ms < head.timestamp_ms {
                return Err(EntryError::TimeWentBack {
                    timestamp_ms: self.timestamp_ms,
                    previous_ms: head.timestamp_ms,
                });
            }
        }
        Ok(())
    }
}

/// Why `signer` may not sign `author`'s entry `seq`, given the log's keys.
pub fn signer_error(
    author: PublicId,
    seq: u64,
    signer: PublicId,
    history: &[(u64, PublicId)],
) -> EntryError {
    let expected = key_at(history, seq).unwrap_or(author);
    let retired = history
        .iter()
        .zip(history.iter().skip(1))
        .find(|((_, key), _)| *key == signer)
        .map(|(_, (next_from, _))| next_from - 1);
    match retired {
        Some(last_seq) if last_seq < seq => EntryError::RetiredKey {
            author,
            seq,
            signer,
            last_seq,
            expected,
        },
        _ => EntryError::WrongSigner {
            author,
            seq,
            signer,
            expected,
        },
    }
}

/// Whether an author who could hold `roles` may author an entry of `kind`.
fn kind_role(kind: i32, author: PublicId, roles: RoleSet) -> Result<(), EntryError> {
    use pb::EntryKind as K;
    if crate::roster::kind_allowed(kind, roles) {
        return Ok(());
    }
    let role = roles.roles().next().unwrap_or(Role::Observer);
    Err(match (K::try_from(kind), role) {
        (Ok(K::Resolution), _) => EntryError::NotASecretary(author),
        (Ok(K::Intention), Role::Secretary) => EntryError::NotAMemberOrganisation(author),
        (kind, role) => EntryError::NotAllowed {
            author,
            role: match role {
                Role::Member => "a member",
                Role::Secretary => "a secretary",
                Role::Observer => "an observer",
            },
            kind: match kind {
                Ok(K::Intention) => "intention",
                Ok(K::Proposal) => "proposal",
                Ok(K::Approval) => "approval",
                Ok(K::Objection) => "objection",
                _ => "such",
            },
        },
    })
}

/// Keys named inside a body must belong to the alliance: resolutions name members,
/// statements and events name any organisation. `roles` gives the roles a key may
/// be counted in (the current roster for a new entry, the views' roster for one
/// from elsewhere).
pub fn check_parties(
    roles: impl Fn(&PublicId) -> Option<RoleSet>,
    body: &Body,
) -> Result<(), EntryError> {
    let (lists, members_only): (Vec<(&'static str, &[PublicId])>, bool) = match body {
        Body::Resolution(r) => (
            vec![("stands", &r.stands), ("stand_aside", &r.stand_aside)],
            true,
        ),
        Body::Statement(s) => (vec![("cosigners", &s.cosigners)], false),
        Body::Event(e) => (vec![("organisers", &e.organisers)], false),
        _ => return Ok(()),
    };
    for (field, keys) in lists {
        for key in keys {
            let ok = match roles(key) {
                Some(set) => !members_only || set.contains(Role::Member),
                None => false,
            };
            if !ok {
                let wanted = if members_only {
                    "member organisation"
                } else {
                    "member or secretary"
                };
                // (An observer counts as "member or secretary" here: any
                // organisation of the roster may organise or co-sign.)
                return Err(EntryError::UnknownParty {
                    field,
                    key: *key,
                    wanted,
                });
            }
        }
    }
    Ok(())
}

/// Proof that the caller verified a signature before [`DecodedEntry::accept`]: made
/// only by [`DecodedEntry::verify_signature`]'s callers through [`verify_batch`] or
/// [`SignatureChecked::single`].
#[derive(Debug, Clone, Copy)]
pub struct SignatureChecked(());

impl SignatureChecked {
    /// For entries a node reads back from its own store after verifying them once
    /// since it started (a rebuild of the views after a lower fork proof): their
    /// signatures were checked before they were stored and again at start-up, so
    /// checking them a third time would only stall the writer.
    pub fn verified_earlier_in_this_store() -> Self {
        Self(())
    }

    /// Verifies one entry's signature.
    pub fn single(entry: &DecodedEntry) -> Result<Self, EntryError> {
        entry.verify_signature().map(|()| Self(()))
    }
}

/// Verifies many signatures at once (ed25519 batch verification). On failure, falls
/// back to one-by-one checks and reports the index of each bad entry.
pub fn verify_batch(entries: &[DecodedEntry]) -> Result<SignatureChecked, Vec<usize>> {
    match entries {
        [] => return Ok(SignatureChecked(())),
        // One signature costs less checked on its own than through the batch
        // verifier (whose transcript and multiscalar set-up are for many): entries
        // relayed live in a big alliance mostly arrive one at a time.
        [one] => {
            return one
                .verify_signature()
                .map(|()| SignatureChecked(()))
                .map_err(|_| vec![0]);
        }
        _ => {}
    }
    let messages: Vec<Vec<u8>> = entries.iter().map(DecodedEntry::signed_message).collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = entries.iter().map(|e| e.signature).collect();
    let keys: Result<Vec<VerifyingKey>, _> = entries
        .iter()
        .map(|e| VerifyingKey::from_bytes(e.signer.as_bytes()))
        .collect();
    if let Ok(keys) = keys {
        // Batch verification is not strict about small-order points, so weak keys are
        // refused here first, as verify_strict would.
        if keys.iter().all(|k| !k.is_weak())
            && ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_ok()
        {
            return Ok(SignatureChecked(()));
        }
    }
    let bad: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.verify_signature().is_err())
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        Ok(SignatureChecked(()))
    } else {
        Err(bad)
    }
}

/// Signs a new entry for `identity`, extending `head`. The timestamp never goes back
/// behind the head's, so a node whose clock stepped back can still publish. The
/// author is the organisation the identity signs for, and `signer` is set when that
/// is not the key itself (after a rotation).
pub fn sign(
    identity: &Identity,
    alliance: AllianceId,
    head: Option<&LogHead>,
    now_ms: i64,
    kind: i32,
    body: Vec<u8>,
) -> pb::SignedEntry {
    sign_seeing(identity, alliance, head, now_ms, kind, body, &[])
}

/// Signs like [`sign`], with the causal reference `seen`: the other authors' log
/// heads the signer holds beyond what its previous entries named
/// ([`crate::State::seen_since`]).
pub fn sign_seeing(
    identity: &Identity,
    alliance: AllianceId,
    head: Option<&LogHead>,
    now_ms: i64,
    kind: i32,
    body: Vec<u8>,
    seen: &[(PublicId, u64)],
) -> pb::SignedEntry {
    let author = identity.public_id();
    let key = identity.key_id();
    let entry = pb::Entry {
        signer: if key == author {
            Vec::new()
        } else {
            key.to_vec()
        },
        seen: Some(causal(seen)),
        alliance: alliance.to_vec(),
        author: author.to_vec(),
        seq: head.map_or(1, |h| h.seq + 1),
        prev: head.map(|h| h.id.to_vec()).unwrap_or_default(),
        timestamp_ms: head.map_or(now_ms, |h| now_ms.max(h.timestamp_ms)),
        kind,
        body,
    };
    sign_entry(identity, &entry)
}

/// The causal reference naming `seen`, (author, seq) heads.
pub fn causal(seen: &[(PublicId, u64)]) -> pb::Causal {
    pb::Causal {
        heads: seen
            .iter()
            .map(|(author, seq)| pb::SeenHead {
                author: author.to_vec(),
                seq: *seq,
            })
            .collect(),
    }
}

/// Encodes `entry` and signs its bytes as `identity`, whatever the entry says (for
/// tools and tests that build entries field by field; [`sign_seeing`] builds a
/// well-formed one).
pub fn sign_entry(identity: &Identity, entry: &pb::Entry) -> pb::SignedEntry {
    let bytes = entry.encode_to_vec();
    let signature = identity.sign(&[SIGNATURE_TAG, &bytes].concat());
    pb::SignedEntry {
        entry: bytes,
        signature: signature.to_vec(),
    }
}

/// Decodes an entry this node has just signed ([`sign_seeing`]). The signature needs
/// no check: it was made here, with the author's own key.
pub fn sign_decoded(
    signed: pb::SignedEntry,
    max_bytes: usize,
) -> Result<(DecodedEntry, SignatureChecked), EntryError> {
    Ok((decode(signed, max_bytes)?, SignatureChecked(())))
}

impl VerifiedEntry {
    /// Rebuilds a verified entry from a node's own store: the signature (checked by
    /// the caller) and the envelope rules are checked again, the log rules not (the
    /// store holds only entries that passed them). The body is read by this release's
    /// rules, which may be stricter than those of the release that stored it: a body
    /// they refuse leaves the entry out of the views, it does not stop the node.
    ///
    /// The author's role is checked for an author the charter names; one admitted
    /// later is known only from entries that may come later in the store's order,
    /// so the caller checks at the end that every author is known
    /// ([`crate::state::State::unknown_authors`]).
    pub fn reload(
        decoded: DecodedEntry,
        charter: &Charter,
        checked: SignatureChecked,
    ) -> Result<Self, EntryError> {
        let _ = checked;
        decoded.check_stored(charter)?;
        let body = decoded.check_body();
        Ok(Self { decoded, body })
    }

    pub fn id(&self) -> EntryId {
        self.decoded.id
    }

    pub fn author(&self) -> PublicId {
        self.decoded.author
    }

    /// The key that signed it.
    pub fn signer(&self) -> PublicId {
        self.decoded.signer
    }

    /// For a key rotation: the key that signs the author's entries after it.
    pub fn rotates_to(&self) -> Option<PublicId> {
        self.decoded.rotates_to
    }

    /// As [`DecodedEntry::check_signer`], for an entry read back from a store or a
    /// backup (whose log rules are checked by the reader).
    pub fn check_signer(&self, logs: &impl Logs) -> Result<(), EntryError> {
        self.decoded.check_signer(logs)
    }

    pub fn seq(&self) -> u64 {
        self.decoded.seq
    }

    pub fn prev(&self) -> Option<EntryId> {
        self.decoded.prev
    }

    pub fn timestamp_ms(&self) -> i64 {
        self.decoded.timestamp_ms
    }

    pub fn kind(&self) -> i32 {
        self.decoded.kind
    }

    /// See [`DecodedEntry::seen`].
    pub fn seen(&self) -> Option<&[(PublicId, u64)]> {
        self.decoded.seen()
    }

    /// The body as this release reads it, or why this release does not accept it
    /// (the entry is then stored and relayed but in no view).
    pub fn body(&self) -> Result<&Body, &EntryError> {
        self.body.as_ref()
    }

    pub fn signed(&self) -> &pb::SignedEntry {
        &self.decoded.signed
    }

    /// The encoded `SignedEntry`: the exact entry bytes and the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.decoded.signed.encode_to_vec()
    }

    pub fn head(&self) -> LogHead {
        LogHead {
            seq: self.decoded.seq,
            id: self.decoded.id,
            timestamp_ms: self.decoded.timestamp_ms,
        }
    }
}
