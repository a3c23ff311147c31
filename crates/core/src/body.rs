//! Typed entry bodies: decoding a known kind's body bytes and checking what the
//! body says (ballot ids, times, keys). Unknown kinds decode to [`Body::Unknown`] and
//! are kept as they are.

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use prost::Message;
use serde::Serialize;

use crate::ballot::{BallotError, BallotId};
use crate::id::{EntryId, PublicId};
use crate::pb;
use crate::quote::{bounded, quoted};

/// Longest title, venue or candidate name, in characters.
pub const MAX_SHORT_TEXT: usize = 300;
/// The time zone of events that name none.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Europe::London;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("{kind} body does not decode: {}", bounded(.reason))]
    Undecodable { kind: &'static str, reason: String },
    #[error(transparent)]
    Ballot(#[from] BallotError),
    #[error(
        "{id:?} names an election, not a ballot: an intention is declared on one ballot, such as {form}"
    )]
    ElectionNotBallot { id: String, form: String },
    #[error("intention has no status")]
    NoStatus,
    #[error("{}", bounded(.0))]
    BadNode(String),
    #[error("intention status {0} is not known")]
    UnknownStatus(i32),
    #[error("a confirmed intention needs a candidate name")]
    ConfirmedWithoutCandidate,
    #[error(
        "{field} {} is not an ONS GSS code (a letter E, W, S, N or K and 8 digits)",
        quoted(.value)
    )]
    BadGssCode { field: &'static str, value: String },
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error(
        "{field} {} is not a local time of the form YYYY-MM-DDTHH:MM[:SS]",
        quoted(.value)
    )]
    BadTime { field: &'static str, value: String },
    #[error("{field} {value} does not exist in {zone} (the clocks go forward then)")]
    NonexistentTime {
        field: &'static str,
        value: String,
        zone: String,
    },
    #[error("time zone {} is not an IANA time zone", quoted(.0))]
    UnknownTimeZone(String),
    #[error("{field} {value:?} is not a date of the form YYYY-MM-DD")]
    BadDate { field: &'static str, value: String },
    #[error("all-day event ends ({end}) before it starts ({start})")]
    LastDayBeforeFirst { start: String, end: String },
    #[error("event ends ({end}) before it starts ({start})")]
    EndBeforeStart { start: String, end: String },
    #[error("{field} holds {len} bytes where a 32-byte key was expected")]
    BadKey { field: &'static str, len: usize },
    #[error("{field} {key} is not an Ed25519 public key that can verify signatures")]
    WeakKey { field: &'static str, key: PublicId },
    #[error("{field} names {key} more than once")]
    DuplicateKey { field: &'static str, key: PublicId },
    #[error("resolution names {0} both to stand and to stand aside")]
    StandsAndStandsAside(PublicId),
    #[error("resolution names nobody to stand aside")]
    NobodyStandsAside,
    #[error("role {0} is not known")]
    UnknownRole(i32),
    #[error("quorum rule: {0}")]
    BadQuorum(String),
    #[error("visibility {0} is not known")]
    UnknownVisibility(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntentionStatus {
    Considering,
    Intends,
    Confirmed,
    Withdrawn,
    StoodAside,
}

impl IntentionStatus {
    pub fn from_pb(value: i32) -> Result<Self, BodyError> {
        use pb::IntentionStatus as P;
        match P::try_from(value) {
            Ok(P::Considering) => Ok(Self::Considering),
            Ok(P::Intends) => Ok(Self::Intends),
            Ok(P::Confirmed) => Ok(Self::Confirmed),
            Ok(P::Withdrawn) => Ok(Self::Withdrawn),
            Ok(P::StoodAside) => Ok(Self::StoodAside),
            Ok(P::Unspecified) => Err(BodyError::NoStatus),
            Err(_) => Err(BodyError::UnknownStatus(value)),
        }
    }

    pub fn to_pb(self) -> pb::IntentionStatus {
        match self {
            Self::Considering => pb::IntentionStatus::Considering,
            Self::Intends => pb::IntentionStatus::Intends,
            Self::Confirmed => pb::IntentionStatus::Confirmed,
            Self::Withdrawn => pb::IntentionStatus::Withdrawn,
            Self::StoodAside => pb::IntentionStatus::StoodAside,
        }
    }

    /// Intends or confirmed: a declared candidacy.
    pub fn is_standing(self) -> bool {
        matches!(self, Self::Intends | Self::Confirmed)
    }

    /// Withdrawn or stood aside.
    pub fn is_out(self) -> bool {
        matches!(self, Self::Withdrawn | Self::StoodAside)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Considering => "considering",
            Self::Intends => "intends",
            Self::Confirmed => "confirmed",
            Self::Withdrawn => "withdrawn",
            Self::StoodAside => "stood-aside",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    Alliance,
    Public,
}

impl Visibility {
    /// Unspecified means alliance-only: nothing becomes public by omission.
    pub fn from_pb(value: i32) -> Result<Self, BodyError> {
        match pb::Visibility::try_from(value) {
            Ok(pb::Visibility::Public) => Ok(Self::Public),
            Ok(pb::Visibility::Alliance | pb::Visibility::Unspecified) => Ok(Self::Alliance),
            Err(_) => Err(BodyError::UnknownVisibility(value)),
        }
    }

    pub fn to_pb(self) -> pb::Visibility {
        match self {
            Self::Alliance => pb::Visibility::Alliance,
            Self::Public => pb::Visibility::Public,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub title: String,
    pub text: String,
    pub cosigners: Vec<PublicId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Intention {
    pub ballot: BallotId,
    pub status: IntentionStatus,
    pub candidate: Option<String>,
    pub visibility: Visibility,
    pub area: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub uid: String,
    pub title: String,
    pub description: String,
    /// Local civil times in `time_zone`, as the author wrote them. For an all-day
    /// event, midnight of the first day and midnight after the last (exclusive, as
    /// DTEND in RFC 5545).
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub time_zone: Tz,
    pub start_utc: DateTime<Utc>,
    pub end_utc: DateTime<Utc>,
    pub venue: String,
    pub area: Option<String>,
    pub organisers: Vec<PublicId>,
    pub visibility: Visibility,
    pub cancelled: bool,
    /// Dates, not times: `start_utc`/`end_utc` are the first instant of the first
    /// day and of the day after the last in `time_zone`. Left out of the canonical
    /// JSON when false, so timed events keep their digest.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub all_day: bool,
}

impl Event {
    /// The first day of an all-day event (or the day a timed one starts, locally).
    pub fn first_day(&self) -> NaiveDate {
        self.start.date()
    }

    /// The last day of an all-day event, inclusive (or the day a timed one ends).
    pub fn last_day(&self) -> NaiveDate {
        if self.all_day {
            self.end.date().pred_opt().unwrap_or(self.end.date())
        } else {
            self.end.date()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub ballot: BallotId,
    pub stands: Vec<PublicId>,
    pub stand_aside: Vec<PublicId>,
    pub rationale: String,
}

/// A decoded, checked entry body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Body {
    Statement(Statement),
    Endorsement {
        statement: EntryId,
    },
    StatementWithdrawal {
        statement: EntryId,
        reason: String,
    },
    Intention(Intention),
    Event(Event),
    Resolution(Resolution),
    Proposal(crate::roster::Proposal),
    Approval {
        proposal: EntryId,
    },
    Objection {
        proposal: EntryId,
        reason: String,
    },
    Leave {
        reason: String,
    },
    NodeAnnouncement(crate::roster::Node),
    /// The author's log goes on signed by `key` (see [`crate::entry`]).
    KeyRotation {
        key: PublicId,
    },
    /// A kind this version does not know: stored and relayed, not interpreted.
    Unknown {
        kind: i32,
    },
}

impl Body {
    /// Decodes and checks the body of an entry of kind `kind`.
    pub fn decode(kind: i32, bytes: &[u8]) -> Result<Self, BodyError> {
        use pb::EntryKind as K;
        match K::try_from(kind) {
            Ok(K::Statement) => statement(decode_pb(bytes, "statement")?),
            Ok(K::Endorsement) => {
                let e: pb::Endorsement = decode_pb(bytes, "endorsement")?;
                Ok(Self::Endorsement {
                    statement: entry_id("statement", &e.statement)?,
                })
            }
            Ok(K::StatementWithdrawal) => {
                let w: pb::StatementWithdrawal = decode_pb(bytes, "statement withdrawal")?;
                check_len("reason", &w.reason, 10 * MAX_SHORT_TEXT)?;
                Ok(Self::StatementWithdrawal {
                    statement: entry_id("statement", &w.statement)?,
                    reason: w.reason,
                })
            }
            Ok(K::Intention) => intention(decode_pb(bytes, "intention")?),
            Ok(K::Event) => event(decode_pb(bytes, "event")?),
            Ok(K::Resolution) => resolution(decode_pb(bytes, "resolution")?),
            Ok(K::Proposal) => proposal(decode_pb(bytes, "proposal")?),
            Ok(K::Approval) => {
                let a: pb::Approval = decode_pb(bytes, "approval")?;
                Ok(Self::Approval {
                    proposal: entry_id("proposal", &a.proposal)?,
                })
            }
            Ok(K::Objection) => {
                let o: pb::Objection = decode_pb(bytes, "objection")?;
                check_len("reason", &o.reason, 10 * MAX_SHORT_TEXT)?;
                Ok(Self::Objection {
                    proposal: entry_id("proposal", &o.proposal)?,
                    reason: o.reason,
                })
            }
            Ok(K::Leave) => {
                let l: pb::Leave = decode_pb(bytes, "leave")?;
                check_len("reason", &l.reason, 10 * MAX_SHORT_TEXT)?;
                Ok(Self::Leave { reason: l.reason })
            }
            Ok(K::NodeAnnouncement) => {
                let n: pb::NodeAnnouncement = decode_pb(bytes, "node announcement")?;
                crate::roster::Node::new(&n.address, &n.cert_sha256)
                    .map(Self::NodeAnnouncement)
                    .map_err(BodyError::BadNode)
            }
            Ok(K::KeyRotation) => Ok(Self::KeyRotation {
                key: rotation_key(bytes)?,
            }),
            Ok(K::Unspecified) | Err(_) => Ok(Self::Unknown { kind }),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Statement(_) => "statement",
            Self::Endorsement { .. } => "endorsement",
            Self::StatementWithdrawal { .. } => "statement-withdrawal",
            Self::Intention(_) => "intention",
            Self::Event(_) => "event",
            Self::Resolution(_) => "resolution",
            Self::Proposal(_) => "proposal",
            Self::Approval { .. } => "approval",
            Self::Objection { .. } => "objection",
            Self::Leave { .. } => "leave",
            Self::NodeAnnouncement(_) => "node-announcement",
            Self::KeyRotation { .. } => "key-rotation",
            Self::Unknown { .. } => "unknown",
        }
    }
}

/// The entry kind and encoded body bytes of a body message, as the author writes them.
/// The governance action of a body, if it is one.
impl Body {
    pub fn governance(&self) -> Option<crate::roster::Action> {
        use crate::roster::Action;
        Some(match self {
            Self::Proposal(p) => Action::Propose(p.clone()),
            Self::Approval { proposal } => Action::Approve(*proposal),
            Self::Objection { proposal, .. } => Action::Object(*proposal),
            Self::Leave { .. } => Action::Leave,
            Self::NodeAnnouncement(node) => Action::Announce(node.clone()),
            _ => return None,
        })
    }
}

fn role(
    field: &'static str,
    value: i32,
    default: Option<crate::charter::Role>,
) -> Result<crate::charter::Role, BodyError> {
    use crate::charter::Role;
    match pb::Role::try_from(value) {
        Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Secretary) => Ok(Role::Secretary),
        Ok(pb::Role::Observer) => Ok(Role::Observer),
        Ok(pb::Role::Unspecified) => default.ok_or(BodyError::Empty { field }),
        Err(_) => Err(BodyError::UnknownRole(value)),
    }
}

/// The wire form of a role.
pub fn role_to_pb(role: crate::charter::Role) -> pb::Role {
    use crate::charter::Role;
    match role {
        Role::Member => pb::Role::Member,
        Role::Secretary => pb::Role::Secretary,
        Role::Observer => pb::Role::Observer,
    }
}

/// The wire form of a quorum rule.
pub fn quorum_to_pb(rule: crate::roster::QuorumRule) -> pb::QuorumRule {
    use crate::roster::QuorumRule as Q;
    let (kind, value) = match rule {
        Q::Majority => (pb::QuorumKind::Majority, 0),
        Q::All => (pb::QuorumKind::All, 0),
        Q::Count(n) => (pb::QuorumKind::Count, n),
        Q::Lazy(d) => (pb::QuorumKind::Lazy, d),
    };
    pb::QuorumRule {
        kind: kind as i32,
        value,
    }
}

pub fn quorum_from_pb(q: &pb::QuorumRule) -> Result<crate::roster::QuorumRule, BodyError> {
    use crate::roster::QuorumRule as Q;
    let rule = match pb::QuorumKind::try_from(q.kind) {
        Ok(pb::QuorumKind::Majority) => Q::Majority,
        Ok(pb::QuorumKind::All) => Q::All,
        Ok(pb::QuorumKind::Count) => Q::Count(q.value),
        Ok(pb::QuorumKind::Lazy) => Q::Lazy(q.value),
        _ => {
            return Err(BodyError::BadQuorum(format!(
                "kind {} is not known",
                q.kind
            )));
        }
    };
    rule.check().map_err(BodyError::BadQuorum)?;
    Ok(rule)
}

fn proposal(p: pb::Proposal) -> Result<Body, BodyError> {
    use crate::roster::{Change, Proposal};
    use pb::proposal::Change as C;
    check_len("rationale", &p.rationale, 10 * MAX_SHORT_TEXT)?;
    let key = |field: &'static str, bytes: &[u8]| {
        PublicId::from_slice(bytes).map_err(|_| BodyError::BadKey {
            field,
            len: bytes.len(),
        })
    };
    let change = match p.change {
        None => return Err(BodyError::Empty { field: "change" }),
        Some(C::Admit(a)) => {
            non_empty("name", &a.name, crate::roster::MAX_NAME)?;
            check_len("ec_id", &a.ec_id, 20)?;
            Change::Admit {
                name: a.name.trim().to_owned(),
                key: key("key", &a.key)?,
                role: role("role", a.role, Some(crate::charter::Role::Member))?,
                ec_id: optional(a.ec_id.trim().to_owned()),
                node: match (a.node_address.as_str(), a.node_cert_sha256.as_slice()) {
                    ("", []) => None,
                    (address, cert) => {
                        Some(crate::roster::Node::new(address, cert).map_err(BodyError::BadNode)?)
                    }
                },
            }
        }
        Some(C::Remove(r)) => Change::Remove {
            organisation: key("organisation", &r.organisation)?,
            up_to_seq: r.up_to_seq,
        },
        Some(C::SetRole(r)) => Change::SetRole {
            organisation: key("organisation", &r.organisation)?,
            role: role("role", r.role, None)?,
        },
        Some(C::Quorum(q)) => Change::Quorum {
            rule: quorum_from_pb(&q)?,
        },
        Some(C::Recover(r)) => Change::Recover {
            organisation: key("organisation", &r.organisation)?,
            key: key("key", &r.key)?,
            up_to_seq: r.up_to_seq,
        },
    };
    Ok(Body::Proposal(Proposal {
        roster_version: p.roster_version,
        change,
        rationale: p.rationale,
    }))
}

pub fn encode(body: &pb::publish_request::Body) -> (pb::EntryKind, Vec<u8>) {
    use pb::publish_request::Body as B;
    match body {
        B::Statement(m) => (pb::EntryKind::Statement, m.encode_to_vec()),
        B::Endorsement(m) => (pb::EntryKind::Endorsement, m.encode_to_vec()),
        B::StatementWithdrawal(m) => (pb::EntryKind::StatementWithdrawal, m.encode_to_vec()),
        B::Intention(m) => (pb::EntryKind::Intention, m.encode_to_vec()),
        B::Event(m) => (pb::EntryKind::Event, m.encode_to_vec()),
        B::Resolution(m) => (pb::EntryKind::Resolution, m.encode_to_vec()),
    }
}

fn decode_pb<M: Message + Default>(bytes: &[u8], kind: &'static str) -> Result<M, BodyError> {
    M::decode(bytes).map_err(|e| BodyError::Undecodable {
        kind,
        reason: e.to_string(),
    })
}

fn entry_id(field: &'static str, bytes: &[u8]) -> Result<EntryId, BodyError> {
    EntryId::from_slice(bytes).map_err(|_| BodyError::BadKey {
        field,
        len: bytes.len(),
    })
}

fn keys(field: &'static str, list: &[Vec<u8>]) -> Result<Vec<PublicId>, BodyError> {
    let mut out: Vec<PublicId> = Vec::with_capacity(list.len());
    for bytes in list {
        let key = PublicId::from_slice(bytes).map_err(|_| BodyError::BadKey {
            field,
            len: bytes.len(),
        })?;
        if out.contains(&key) {
            return Err(BodyError::DuplicateKey { field, key });
        }
        out.push(key);
    }
    Ok(out)
}

/// The new key a `KeyRotation` body names: 32 bytes that are an Ed25519 public key
/// able to verify (not a small-order point). An envelope rule: every release that
/// knows rotations reads it the same way (see [`crate::entry::decode`]).
pub fn rotation_key(bytes: &[u8]) -> Result<PublicId, BodyError> {
    let r: pb::KeyRotation = decode_pb(bytes, "key rotation")?;
    let key = PublicId::from_slice(&r.key).map_err(|_| BodyError::BadKey {
        field: "key",
        len: r.key.len(),
    })?;
    match ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes()) {
        Ok(k) if !k.is_weak() => Ok(key),
        _ => Err(BodyError::WeakKey { field: "key", key }),
    }
}

fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), BodyError> {
    if text.chars().count() > max {
        Err(BodyError::TooLong { field, max })
    } else {
        Ok(())
    }
}

fn non_empty(field: &'static str, text: &str, max: usize) -> Result<(), BodyError> {
    if text.trim().is_empty() {
        return Err(BodyError::Empty { field });
    }
    check_len(field, text, max)
}

fn optional(text: String) -> Option<String> {
    if text.trim().is_empty() {
        None
    } else {
        Some(text)
    }
}

/// ONS GSS codes: a nation letter and 8 digits, e.g. E14000530 or W05000001.
pub fn check_gss(field: &'static str, code: &str) -> Result<(), BodyError> {
    let bytes = code.as_bytes();
    let ok = bytes.len() == 9
        && matches!(bytes[0], b'E' | b'W' | b'S' | b'N' | b'K')
        && bytes[1..].iter().all(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(BodyError::BadGssCode {
            field,
            value: code.to_owned(),
        })
    }
}

fn statement(s: pb::Statement) -> Result<Body, BodyError> {
    non_empty("statement title", &s.title, MAX_SHORT_TEXT)?;
    non_empty("statement text", &s.text, 20_000)?;
    let cosigners = keys("cosigners", &s.cosigners)?;
    Ok(Body::Statement(Statement {
        title: s.title,
        text: s.text,
        cosigners,
    }))
}

/// Rules a new entry's body must meet beyond [`Body::decode`]'s: an intention names
/// a ballot, not an election (`parl.2024-07-04`, `local.leeds.2027-05-06`). They apply
/// where an entry is published or submitted, not to entries already signed and
/// stored or relayed: an older release may have accepted those, and the derived
/// state ignores intentions on elections instead.
pub fn check_new(body: &Body) -> Result<(), BodyError> {
    match body {
        Body::Intention(i) if !i.ballot.is_ballot() => Err(BodyError::ElectionNotBallot {
            id: i.ballot.to_string(),
            form: i.ballot.ballot_form(),
        }),
        _ => Ok(()),
    }
}

fn intention(i: pb::Intention) -> Result<Body, BodyError> {
    let ballot = BallotId::parse(&i.ballot)?;
    let status = IntentionStatus::from_pb(i.status)?;
    check_len("candidate", &i.candidate, MAX_SHORT_TEXT)?;
    check_len("note", &i.note, 10 * MAX_SHORT_TEXT)?;
    let candidate = optional(i.candidate);
    if status == IntentionStatus::Confirmed && candidate.is_none() {
        return Err(BodyError::ConfirmedWithoutCandidate);
    }
    if !i.area.is_empty() {
        check_gss("area", &i.area)?;
    }
    Ok(Body::Intention(Intention {
        ballot,
        status,
        candidate,
        visibility: Visibility::from_pb(i.visibility)?,
        area: optional(i.area),
        note: optional(i.note),
    }))
}

fn local_time(field: &'static str, value: &str) -> Result<NaiveDateTime, BodyError> {
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M"))
        .map_err(|_| BodyError::BadTime {
            field,
            value: value.to_owned(),
        })
}

fn date(field: &'static str, value: &str) -> Result<NaiveDate, BodyError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| BodyError::BadDate {
        field,
        value: value.to_owned(),
    })
}

/// The first instant of `day` in `zone`: midnight, or where a zone's clocks skip
/// midnight (some zones change at 00:00), the first minute after the gap.
pub fn day_start(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    (0..=24 * 60)
        .find_map(|minutes| {
            zone.from_local_datetime(&(midnight + chrono::Duration::minutes(minutes)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

/// A local time in `zone` as UTC. In the autumn hour that happens twice the first is
/// meant; a time in the spring gap does not exist and is refused.
pub fn to_utc(
    field: &'static str,
    local: NaiveDateTime,
    zone: Tz,
) -> Result<DateTime<Utc>, BodyError> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.with_timezone(&Utc)),
        LocalResult::None => Err(BodyError::NonexistentTime {
            field,
            value: local.format("%Y-%m-%dT%H:%M").to_string(),
            zone: zone.name().to_owned(),
        }),
    }
}

fn event(e: pb::Event) -> Result<Body, BodyError> {
    non_empty("event uid", &e.uid, 200)?;
    non_empty("event title", &e.title, MAX_SHORT_TEXT)?;
    check_len("event description", &e.description, 20_000)?;
    check_len("venue", &e.venue, MAX_SHORT_TEXT)?;
    let time_zone = if e.time_zone.is_empty() {
        DEFAULT_TIME_ZONE
    } else {
        e.time_zone
            .parse::<Tz>()
            .map_err(|_| BodyError::UnknownTimeZone(e.time_zone.clone()))?
    };
    let (start, end, start_utc, end_utc) = if e.all_day {
        let first = date("start", &e.start)?;
        let last = if e.end.trim().is_empty() {
            first
        } else {
            date("end", &e.end)?
        };
        if last < first {
            return Err(BodyError::LastDayBeforeFirst {
                start: e.start,
                end: e.end,
            });
        }
        let after = last.succ_opt().ok_or_else(|| BodyError::BadDate {
            field: "end",
            value: e.end.clone(),
        })?;
        let (start, end) = (
            first.and_time(NaiveTime::MIN),
            after.and_time(NaiveTime::MIN),
        );
        (
            start,
            end,
            day_start(first, time_zone),
            day_start(after, time_zone),
        )
    } else {
        let start = local_time("start", &e.start)?;
        let end = local_time("end", &e.end)?;
        let start_utc = to_utc("start", start, time_zone)?;
        let end_utc = to_utc("end", end, time_zone)?;
        if end_utc <= start_utc {
            return Err(BodyError::EndBeforeStart {
                start: e.start,
                end: e.end,
            });
        }
        (start, end, start_utc, end_utc)
    };
    if !e.area.is_empty() {
        check_gss("area", &e.area)?;
    }
    Ok(Body::Event(Event {
        uid: e.uid,
        title: e.title,
        description: e.description,
        start,
        end,
        time_zone,
        start_utc,
        end_utc,
        venue: e.venue,
        area: optional(e.area),
        organisers: keys("organisers", &e.organisers)?,
        visibility: Visibility::from_pb(e.visibility)?,
        cancelled: e.cancelled,
        all_day: e.all_day,
    }))
}

fn resolution(r: pb::Resolution) -> Result<Body, BodyError> {
    let ballot = BallotId::parse(&r.ballot)?;
    let stands = keys("stands", &r.stands)?;
    let stand_aside = keys("stand_aside", &r.stand_aside)?;
    if stand_aside.is_empty() {
        return Err(BodyError::NobodyStandsAside);
    }
    if let Some(both) = stands.iter().find(|k| stand_aside.contains(k)) {
        return Err(BodyError::StandsAndStandsAside(*both));
    }
    check_len("rationale", &r.rationale, 20_000)?;
    Ok(Body::Resolution(Resolution {
        ballot,
        stands,
        stand_aside,
        rationale: r.rationale,
    }))
}
