//! The roster: who is in the alliance, in what role, and how the roster changes.
//!
//! The roster is the charter plus the governance entries (proposals, approvals,
//! objections, departures), derived as a pure function of the set of entries:
//! [`Roster::fold`] takes the governance entries in one total order, (timestamp,
//! author, seq), and applies them one by one, with the time rules (a proposal lapses
//! 14 days after it was made; under lazy consensus it passes N days after unless a
//! member objects) judged by entry timestamps only: a deadline is reached once some
//! entry of the alliance is stamped after it. ARCHITECTURE.md ("Governance") gives
//! the rules in prose.
//!
//! Two sets are kept apart:
//!
//! - [`Known`]: every key the charter names or a proposal (by a known author) would
//!   admit, with every role any proposal would give it. It only grows as entries
//!   arrive, whatever their order, so the envelope rules (which decide what a node
//!   stores and relays) ask it, and two nodes never disagree for good about which
//!   entries exist.
//! - [`Roster`]: the organisations as the fold leaves them (active, left or
//!   removed, with the seq up to which each log counts), the quorum rule and every
//!   proposal with its fate. Views count an entry only when the roster says so
//!   ([`Roster::counts`]); new entries (publish, submit) must fit the current roster.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::charter::{Charter, Role};
use crate::id::{EntryId, PublicId};
use crate::reason::{Code, Reason};

pub const DAY_MS: i64 = 86_400_000;
/// A proposal that has not passed 14 days after it was made lapses.
pub const LAPSE_MS: i64 = 14 * DAY_MS;
/// Longest organisation name, in characters.
pub const MAX_NAME: usize = 100;

/// How a proposal passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumRule {
    /// More than half of the members approve.
    Majority,
    /// Every member approves.
    All,
    /// This many members approve (all of them if there are fewer).
    Count(u32),
    /// Passes this many days after it was made unless a member objects (or
    /// earlier, once a majority approves).
    #[serde(rename = "lazy_days")]
    Lazy(u32),
}

impl QuorumRule {
    /// The rule's own limits: a count of at least one, lazy consensus of 1 to 13
    /// days (it must come before the 14-day lapse).
    pub fn check(self) -> Result<(), String> {
        match self {
            Self::Count(0) => Err("a count must be at least 1".into()),
            Self::Lazy(days) if !(1..=13).contains(&days) => Err(format!(
                "lazy consensus must be 1 to 13 days (proposals lapse after 14), got {days}"
            )),
            _ => Ok(()),
        }
    }

    /// Approvals needed from an electorate of `n` members.
    pub fn needed(self, n: usize) -> usize {
        let majority = n / 2 + 1;
        let needed = match self {
            Self::Majority | Self::Lazy(_) => majority,
            Self::All => n,
            Self::Count(k) => (k as usize).min(n),
        };
        needed.max(1)
    }
}

impl std::fmt::Display for QuorumRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Majority => f.write_str("majority"),
            Self::All => f.write_str("all"),
            Self::Count(n) => write!(f, "count:{n}"),
            Self::Lazy(d) => write!(f, "lazy:{d}"),
        }
    }
}

impl std::str::FromStr for QuorumRule {
    type Err = String;

    /// `majority`, `all`, `count:N` (or just `N`), `lazy:DAYS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_lowercase();
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{v:?} is not a whole number"))
        };
        let rule = match s.split_once(':') {
            None if s == "majority" => Self::Majority,
            None if s == "all" => Self::All,
            None if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() => {
                Self::Count(number(&s)?)
            }
            Some(("count", n)) => Self::Count(number(n)?),
            Some(("lazy", n)) => Self::Lazy(number(n)?),
            _ => {
                return Err(format!(
                    "quorum rule {s:?} is not one of majority, all, count:N, lazy:DAYS"
                ));
            }
        };
        rule.check()?;
        Ok(rule)
    }
}

/// A set of roles (a bit per role).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    fn bit(role: Role) -> u8 {
        match role {
            Role::Member => 1,
            Role::Secretary => 2,
            Role::Observer => 4,
        }
    }

    pub fn of(role: Role) -> Self {
        Self(Self::bit(role))
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub fn insert(&mut self, role: Role) -> bool {
        let had = self.contains(role);
        self.0 |= Self::bit(role);
        !had
    }

    pub fn roles(self) -> impl Iterator<Item = Role> {
        [Role::Member, Role::Secretary, Role::Observer]
            .into_iter()
            .filter(move |r| self.contains(*r))
    }
}

impl Serialize for RoleSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.roles())
    }
}

/// A change to the roster that needs a quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    Admit {
        name: String,
        key: PublicId,
        role: Role,
        #[serde(skip_serializing_if = "Option::is_none")]
        ec_id: Option<String>,
        /// Its node, if the admission names one.
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<Node>,
    },
    /// The organisation's log counts up to and including `up_to_seq`.
    Remove {
        organisation: PublicId,
        up_to_seq: u64,
    },
    SetRole {
        organisation: PublicId,
        role: Role,
    },
    Quorum {
        rule: QuorumRule,
    },
    /// Recovery by quorum (a lost or leaked key, a frozen log, a log its node
    /// lost): the organisation's current log counts up to and including
    /// `up_to_seq`, and it goes on in a new log whose author is `key`.
    Recover {
        organisation: PublicId,
        key: PublicId,
        up_to_seq: u64,
    },
}

/// What a change touches: two changes that touch the same thing conflict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Key(PublicId),
    Name(String),
    Quorum,
}

impl Change {
    fn subjects(&self) -> Vec<Subject> {
        match self {
            Self::Admit { name, key, .. } => {
                vec![
                    Subject::Key(*key),
                    Subject::Name(name.trim().to_lowercase()),
                ]
            }
            Self::Remove { organisation, .. } | Self::SetRole { organisation, .. } => {
                vec![Subject::Key(*organisation)]
            }
            Self::Quorum { .. } => vec![Subject::Quorum],
            Self::Recover {
                organisation, key, ..
            } => vec![Subject::Key(*organisation), Subject::Key(*key)],
        }
    }

    /// The organisation a removal or recovery takes out of the electorate.
    fn excluded(&self) -> Option<PublicId> {
        match self {
            Self::Remove { organisation, .. } | Self::Recover { organisation, .. } => {
                Some(*organisation)
            }
            _ => None,
        }
    }

    /// One line for people: "admit Delta Party as member".
    pub fn describe(&self, roster: &Roster) -> String {
        let name = |k: &PublicId| {
            roster
                .name_of(k)
                .map_or_else(|| k.to_string(), str::to_owned)
        };
        match self {
            Self::Admit { name, role, .. } => format!("admit {name} as {}", role.as_str()),
            Self::Remove {
                organisation,
                up_to_seq,
            } => format!(
                "remove {} (its log counts up to seq {up_to_seq})",
                name(organisation)
            ),
            Self::SetRole { organisation, role } => {
                format!("make {} a {}", name(organisation), role.as_str())
            }
            Self::Quorum { rule } => format!("change the quorum rule to {rule}"),
            Self::Recover {
                organisation,
                key,
                up_to_seq,
            } => format!(
                "recover {}: its log counts up to seq {up_to_seq}, and it goes on in a new \
                 log under key {key}",
                name(organisation)
            ),
        }
    }
}

/// A proposal's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposal {
    /// The roster version the proposer saw.
    pub roster_version: u64,
    pub change: Change,
    pub rationale: String,
}

/// A governance entry, as the fold takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovEntry {
    pub id: EntryId,
    pub author: PublicId,
    pub seq: u64,
    pub timestamp_ms: i64,
    pub action: Action,
    /// What the entry had seen (its causal reference, [`crate::state::Seen`]);
    /// None for an entry of a log that never carried one.
    pub seen: Option<crate::state::Seen>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Propose(Proposal),
    Approve(EntryId),
    Object(EntryId),
    Leave,
    /// The author's organisation announces its node (no quorum: the latest
    /// announcement of an active organisation counts).
    Announce(Node),
}

/// An organisation's node: where peers dial it and the SHA-256 of the TLS
/// certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Node {
    /// `host:port`.
    pub address: String,
    #[serde(serialize_with = "hex_32")]
    pub cert_sha256: [u8; 32],
}

fn hex_32<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Longest node address, in bytes (a DNS name of 253 and a port).
pub const MAX_NODE_ADDRESS: usize = 260;

impl Node {
    /// Checks `address` (`host:port`: a DNS name, an IPv4 address or a bracketed
    /// IPv6 address, and a port 1 to 65535) and the fingerprint's length.
    pub fn new(address: &str, cert_sha256: &[u8]) -> Result<Self, String> {
        let cert_sha256: [u8; 32] = cert_sha256.try_into().map_err(|_| {
            format!(
                "a certificate fingerprint is 32 bytes (SHA-256), not {}",
                cert_sha256.len()
            )
        })?;
        check_node_address(address)?;
        Ok(Self {
            address: address.to_owned(),
            cert_sha256,
        })
    }
}

/// `host:port`, as [`Node::new`] takes it.
pub fn check_node_address(address: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("node address {address:?} {why}"));
    if address.is_empty() {
        return bad("is empty");
    }
    if address.len() > MAX_NODE_ADDRESS {
        return bad("is too long");
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("must look like host:port");
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('0') => {}
        _ => return bad("has no port 1 to 65535 after its last ':'"),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => bad("has a bracketed host that is not an IPv6 address"),
        };
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return bad("must be host:port with a DNS name, an IPv4 address or [IPv6]");
    }
    Ok(())
}

/// Where an organisation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum OrgStatus {
    Active,
    /// Left by its own entry at `up_to_seq`; its log counts up to it.
    Left {
        up_to_seq: u64,
        at_ms: i64,
    },
    /// Removed by a proposal; its log counts up to `up_to_seq`.
    Removed {
        up_to_seq: u64,
        at_ms: i64,
        proposal: EntryId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Organisation {
    pub name: String,
    pub key: PublicId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ec_id: Option<String>,
    pub role: Role,
    /// Every role it has held: what its entries may be counted as.
    pub roles_held: RoleSet,
    #[serde(flatten)]
    pub status: OrgStatus,
    /// The roster version that admitted it (0: the charter).
    pub admitted_at: u64,
    /// The key that signs its log now, once it rotated its key (else `key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key: Option<PublicId>,
    /// Keys that signed its log before, oldest first (see [`Roster::set_keys`]).
    pub retired_keys: Vec<RetiredKey>,
    /// Its node, as its admission named it or its latest announcement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
    /// Recoveries by quorum that took effect, oldest first: its entries are in its
    /// identity's log, then in each recovery's new log.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<Recovery>,
    /// Each of its logs' keys, oldest first, with the first seq each signs (from
    /// the logs, see [`Roster::set_keys`]); a log without rotations is absent.
    #[serde(skip)]
    histories: BTreeMap<PublicId, Vec<(u64, PublicId)>>,
}

/// A recovery by quorum that took effect: `log` counts up to `up_to_seq`, and the
/// organisation goes on in the log whose author is `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub log: PublicId,
    pub up_to_seq: u64,
    pub next: PublicId,
    pub proposal: EntryId,
    pub at_ms: i64,
}

/// A key an organisation signed with before a rotation, and the last seq it signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetiredKey {
    pub key: PublicId,
    pub last_seq: u64,
}

impl Organisation {
    /// The key that signs its entries now.
    pub fn signing_key(&self) -> PublicId {
        self.current_key.unwrap_or_else(|| self.log())
    }

    /// The author of the log its new entries go in: its identity, until a
    /// recovery starts a new log.
    pub fn log(&self) -> PublicId {
        self.recoveries.last().map_or(self.key, |r| r.next)
    }

    /// Its logs, oldest first: its identity's, then each recovery's new log.
    pub fn logs(&self) -> impl Iterator<Item = PublicId> + '_ {
        std::iter::once(self.key).chain(self.recoveries.iter().map(|r| r.next))
    }

    /// Where `log` sits among its logs (0: its identity's), if it is one of them.
    pub fn log_rank(&self, log: &PublicId) -> Option<usize> {
        self.logs().position(|l| l == *log)
    }

    /// The last seq of its log of rank `rank` that counts: the cut of the recovery
    /// that replaced it, else (its current log) the cut of a departure or removal.
    pub fn log_cut(&self, rank: usize) -> Option<u64> {
        match self.recoveries.get(rank) {
            Some(r) => Some(r.up_to_seq),
            None => self.cut(),
        }
    }

    /// Whether `key` is its identity, its current key, one it retired, or the
    /// author of a log a recovery started.
    pub fn holds_key(&self, key: &PublicId) -> bool {
        self.key == *key
            || self.current_key.as_ref() == Some(key)
            || self.retired_keys.iter().any(|r| r.key == *key)
            || self.recoveries.iter().any(|r| r.next == *key)
    }

    /// Derives `current_key` and `retired_keys` from its logs' key histories:
    /// every key of a log a recovery replaced is retired (the last one at the
    /// recovery's cut), and in its current log every key but the last.
    fn settle_keys(&mut self) {
        let logs: Vec<PublicId> = self.logs().collect();
        let mut retired = Vec::new();
        let mut current = None;
        for (rank, log) in logs.iter().enumerate() {
            let history = self
                .histories
                .get(log)
                .cloned()
                .unwrap_or_else(|| vec![(1, *log)]);
            retired.extend(history.iter().zip(history.iter().skip(1)).map(
                |((_, key), (next, _))| RetiredKey {
                    key: *key,
                    last_seq: next - 1,
                },
            ));
            let last = history.last().map(|(_, k)| *k);
            match self.recoveries.get(rank) {
                Some(r) => retired.extend(last.map(|key| RetiredKey {
                    key,
                    last_seq: r.up_to_seq,
                })),
                None => current = last.filter(|k| k != log),
            }
        }
        self.retired_keys = retired;
        self.current_key = current;
    }

    pub fn is_active(&self) -> bool {
        self.status == OrgStatus::Active
    }

    /// The last seq of its log that counts, once it left or was removed.
    pub fn cut(&self) -> Option<u64> {
        match self.status {
            OrgStatus::Active => None,
            OrgStatus::Left { up_to_seq, .. } | OrgStatus::Removed { up_to_seq, .. } => {
                Some(up_to_seq)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ProposalStatus {
    Open,
    Passed {
        version: u64,
        at_ms: i64,
    },
    Lapsed {
        at_ms: i64,
    },
    /// A conflicting change took effect after the roster version it was made
    /// against: it must be proposed again.
    Void {
        reason: Reason,
    },
    /// It could not take effect (it would leave no secretary, the key is already in
    /// the roster, ...).
    Refused {
        reason: Reason,
    },
}

impl ProposalStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Passed { .. } => "passed",
            Self::Lapsed { .. } => "lapsed",
            Self::Void { .. } => "void",
            Self::Refused { .. } => "refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProposalView {
    pub id: EntryId,
    pub author: PublicId,
    pub seq: u64,
    pub timestamp_ms: i64,
    #[serde(flatten)]
    pub proposal: Proposal,
    /// The quorum rule when it was made.
    pub rule: QuorumRule,
    /// The members whose approvals count (those of the roster it was made against;
    /// the organisation a removal names is not one).
    pub electorate: Vec<PublicId>,
    pub needed: usize,
    pub approvals: Vec<PublicId>,
    pub objections: Vec<PublicId>,
    /// When it lapses unless passed.
    pub lapses_ms: i64,
    /// Under lazy consensus: when it passes unless a member objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passes_unopposed_ms: Option<i64>,
    #[serde(flatten)]
    pub status: ProposalStatus,
}

/// Why a new governance entry (publish, submit) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovernanceError {
    #[error("no proposal {0} is in the roster")]
    UnknownProposal(EntryId),
    #[error("proposal {id} is closed ({status}): {detail}")]
    Closed {
        id: EntryId,
        status: &'static str,
        detail: String,
    },
    #[error("proposal {id} lapsed at {lapsed_ms} (14 days after it was made); propose it again")]
    Lapsed { id: EntryId, lapsed_ms: i64 },
    #[error("only a member organisation may approve or object; {who} is {what}")]
    NotAVoter { who: PublicId, what: String },
    #[error("{who} was not a member of the roster proposal {id} was made against")]
    NotInElectorate { who: PublicId, id: EntryId },
    #[error("{who} has already {how} proposal {id}")]
    AlreadyVoted {
        who: PublicId,
        how: &'static str,
        id: EntryId,
    },
    #[error("only a member or secretary may propose; {who} is {what}")]
    NotAProposer { who: PublicId, what: String },
    #[error("the change is refused: {0}")]
    Refused(String),
    #[error("the proposal is void: {0}")]
    Void(String),
    #[error("{who} cannot leave: {reason}")]
    CannotLeave { who: PublicId, reason: String },
    #[error("only an active organisation may announce its node; {who} is {what}")]
    NotAnnouncer { who: PublicId, what: String },
}

/// Every key the charter names or a proposal would admit, with every role it could
/// hold: grows only as entries arrive (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    roles: BTreeMap<PublicId, RoleSet>,
    /// The new logs any recovery proposal would give an organisation: they may
    /// hold every role the organisation may.
    successors: BTreeMap<PublicId, BTreeSet<PublicId>>,
}

impl Known {
    pub fn from_charter(charter: &Charter) -> Self {
        let mut roles = BTreeMap::new();
        for m in charter.members() {
            roles.insert(m.key, RoleSet::of(Role::Member));
        }
        for s in charter.secretaries() {
            roles.insert(s.key, RoleSet::of(Role::Secretary));
        }
        Self {
            roles,
            successors: BTreeMap::new(),
        }
    }

    pub fn roles(&self, key: &PublicId) -> Option<RoleSet> {
        self.roles.get(key).copied()
    }

    /// Adds what a proposal by `author` would make known. Returns a key whose roles
    /// changed (the first, when a role reaches an organisation and the logs a
    /// recovery names). A proposal by an unknown author makes nothing known.
    pub fn learn(&mut self, author: &PublicId, proposal: &Proposal) -> Option<PublicId> {
        if !self.roles.contains_key(author) {
            return None;
        }
        let (organisation, roles) = match &proposal.change {
            Change::Admit { key, role, .. } => (*key, RoleSet::of(*role)),
            Change::SetRole { organisation, role } => (*organisation, RoleSet::of(*role)),
            Change::Recover {
                organisation, key, ..
            } => {
                let roles = self.roles.get(organisation).copied()?;
                self.successors
                    .entry(*organisation)
                    .or_default()
                    .insert(*key);
                (*organisation, roles)
            }
            _ => return None,
        };
        let successors = self.successors.get(&organisation).into_iter().flatten();
        let mut changed = None;
        for key in std::iter::once(&organisation).chain(successors) {
            let set = self.roles.entry(*key).or_default();
            for role in roles.roles() {
                if set.insert(role) {
                    changed.get_or_insert(*key);
                }
            }
        }
        changed
    }
}

/// The governance entries in the fold's order: every entry after the entries it
/// came after (earlier entries of its own log, the proposal an approval or
/// objection names, and every entry its causal reference says its signer had seen),
/// and otherwise by (timestamp, author, seq). Clocks only break ties between entries
/// made without seeing each other, so a backdated entry cannot move before what its
/// signer had already seen. A cycle (which only a signer claiming to have seen
/// entries not yet made can cause) is broken by the same order.
///
/// Each entry comes with its effective time: the latest of its own timestamp and
/// the effective times of the entries it came after. An entry stamped before what
/// its signer had already seen takes effect no earlier than that: its stamp cannot
/// carry it back across a deadline.
pub fn causal_order(entries: Vec<&GovEntry>) -> Vec<(&GovEntry, i64)> {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};

    /// The tie-break between entries made without seeing each other.
    type Tie = (i64, PublicId, u64);
    let key = |e: &GovEntry| -> Tie { (e.timestamp_ms, e.author, e.seq) };
    // Each author's governance entries by seq: (seq, index).
    let mut logs: BTreeMap<PublicId, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        logs.entry(e.author).or_default().push((e.seq, i));
    }
    for log in logs.values_mut() {
        log.sort_unstable();
        log.dedup_by_key(|(seq, _)| *seq);
    }
    let by_id: HashMap<EntryId, usize> =
        entries.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    // The latest entry of `author` at or before `seq`.
    let at_or_before = |author: &PublicId, seq: u64| {
        let log = logs.get(author)?;
        let n = log.partition_point(|(s, _)| *s <= seq);
        n.checked_sub(1).map(|k| log[k].1)
    };
    let mut waits_for = vec![0usize; entries.len()];
    let mut then: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let mut before: Vec<usize> = Vec::new();
        if let Some(j) = e
            .seq
            .checked_sub(1)
            .and_then(|s| at_or_before(&e.author, s))
        {
            before.push(j);
        }
        if let Action::Approve(p) | Action::Object(p) = &e.action
            && let Some(&j) = by_id.get(p)
        {
            before.push(j);
        }
        for (author, seq) in e.seen.iter().flatten() {
            if *author != e.author
                && let Some(j) = at_or_before(author, *seq)
            {
                before.push(j);
            }
        }
        before.sort_unstable();
        before.dedup();
        for j in before.into_iter().filter(|j| *j != i) {
            waits_for[i] += 1;
            then[j].push(i);
            deps[i].push(j);
        }
    }
    let mut ready: BinaryHeap<Reverse<(Tie, usize)>> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| waits_for[*i] == 0)
        .map(|(i, e)| Reverse((key(e), i)))
        .collect();
    let mut done = vec![false; entries.len()];
    let mut effective = vec![i64::MIN; entries.len()];
    let mut order = Vec::with_capacity(entries.len());
    while order.len() < entries.len() {
        let next = match ready.pop() {
            Some(Reverse((_, i))) if done[i] => continue,
            Some(Reverse((_, i))) => i,
            // A cycle: take the first of what is left.
            None => (0..entries.len())
                .filter(|i| !done[*i])
                .min_by_key(|i| key(entries[*i]))
                .expect("entries are left"),
        };
        done[next] = true;
        // Dependencies not yet done (a cycle) do not count.
        effective[next] = deps[next]
            .iter()
            .filter(|j| done[**j])
            .map(|j| effective[*j])
            .fold(entries[next].timestamp_ms, i64::max);
        order.push((entries[next], effective[next]));
        for &k in &then[next] {
            waits_for[k] = waits_for[k].saturating_sub(1);
            if waits_for[k] == 0 && !done[k] {
                ready.push(Reverse((key(entries[k]), k)));
            }
        }
    }
    order
}

/// A deadline in the fold: when, what kind (lapse or lazy pass), which proposal.
type Deadline = (i64, u8, EntryId);

/// Most extra passes of the fold that leave out entries past the cuts it found.
const MAX_CUT_PASSES: usize = 4;
const LAZY: u8 = 0;
const LAPSE: u8 = 1;

/// The roster as the fold leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Roster {
    /// Changes applied since the charter (0: the charter's roster).
    pub version: u64,
    pub quorum: QuorumRule,
    /// Whether the charter named its quorum rule (else a majority of members).
    #[serde(skip)]
    charter_rule: bool,
    organisations: BTreeMap<PublicId, Organisation>,
    /// The logs recoveries started: the new log's author → the organisation.
    #[serde(skip)]
    logs: BTreeMap<PublicId, PublicId>,
    proposals: BTreeMap<EntryId, ProposalView>,
    /// The subjects each version changed, by version.
    #[serde(skip)]
    history: Vec<(u64, Vec<Subject>, EntryId)>,
    #[serde(skip)]
    deadlines: BTreeSet<Deadline>,
    /// Departures refused by the fold (they would leave no secretary or fewer than
    /// two members): (author, seq, why).
    refused_departures: Vec<(PublicId, u64, Reason)>,
    /// What [`Roster::append`] needs to fold one more entry without folding the
    /// rest again.
    #[serde(skip)]
    memo: FoldMemo,
}

/// The fold's bookkeeping for appending an entry: derived from the same entries
/// as the roster, so two rosters of the same entries are equal whatever it holds.
/// Its maps are persistent (imbl), so the copy of the roster a node's writer
/// appends to costs O(1) for them, however many entries were folded.
#[derive(Debug, Clone, Default, Eq)]
struct FoldMemo {
    /// Each governance entry folded: its effective time.
    effective: imbl::OrdMap<(PublicId, u64), i64>,
    /// The greatest (timestamp, author, seq) folded.
    last: Option<(i64, PublicId, u64)>,
    /// Per author, the highest seq any folded entry names as seen.
    referenced: imbl::OrdMap<PublicId, u64>,
    /// Every proposal id a folded vote names.
    voted: imbl::OrdSet<EntryId>,
    /// The latest deadline reached (None: none yet).
    settled_ms: Option<i64>,
    /// Deadlines the fold passed that not every member of their electorate had
    /// witnessed: each is reached, at its place, by the fold after its last
    /// witness arrives. (A roster appended to may hold some whose proposal closed
    /// later: they only cost a fold that changes nothing.)
    pending: BTreeSet<Deadline>,
    /// The cuts the fold left out entries past.
    cuts: BTreeMap<PublicId, u64>,
}

impl PartialEq for FoldMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl FoldMemo {
    fn note(&mut self, entry: &GovEntry, effective_ms: i64) {
        self.effective
            .insert((entry.author, entry.seq), effective_ms);
        let key = (entry.timestamp_ms, entry.author, entry.seq);
        if self.last.is_none_or(|last| key > last) {
            self.last = Some(key);
        }
        for (author, seq) in entry.seen.iter().flatten() {
            let top = self.referenced.entry(*author).or_insert(0);
            *top = (*top).max(*seq);
        }
        if let Action::Approve(id) | Action::Object(id) = &entry.action {
            self.voted.insert(*id);
        }
    }

    /// The latest effective time of a folded entry of `author` at or before `seq`.
    fn at_or_before(&self, author: &PublicId, seq: u64) -> Option<i64> {
        self.effective
            .range((*author, 0)..=(*author, seq))
            .next_back()
            .map(|(_, t)| *t)
    }
}

impl Roster {
    pub fn from_charter(charter: &Charter) -> Self {
        let mut organisations = BTreeMap::new();
        let mut add = |name: &str, key: PublicId, ec_id: Option<String>, role: Role| {
            organisations.insert(
                key,
                Organisation {
                    name: name.to_owned(),
                    key,
                    ec_id,
                    role,
                    roles_held: RoleSet::of(role),
                    status: OrgStatus::Active,
                    admitted_at: 0,
                    current_key: None,
                    retired_keys: Vec::new(),
                    node: None,
                    recoveries: Vec::new(),
                    histories: BTreeMap::new(),
                },
            );
        };
        for m in charter.members() {
            add(&m.name, m.key, m.ec_id.clone(), Role::Member);
        }
        for s in charter.secretaries() {
            add(&s.name, s.key, None, Role::Secretary);
        }
        Self {
            version: 0,
            quorum: charter.rules().quorum.unwrap_or(QuorumRule::Majority),
            charter_rule: charter.rules().quorum.is_some(),
            organisations,
            logs: BTreeMap::new(),
            proposals: BTreeMap::new(),
            history: Vec::new(),
            deadlines: BTreeSet::new(),
            refused_departures: Vec::new(),
            memo: FoldMemo::default(),
        }
    }

    /// The roster of the charter and `entries`, given in any order: they are folded
    /// in causal order ([`causal_order`]). `witness(log)` is the timestamp of the
    /// head entry of `log` held (`i64::MIN`: none).
    ///
    /// Two rules make every fate a function of the set of entries that no entry
    /// arriving later can overturn (ARCHITECTURE.md, "Rules that hold against a
    /// hostile member"):
    /// - a deadline (a lapse, or a lazy pass) is reached only once every active
    ///   member of the proposal's electorate holds a log entry stamped at or after
    ///   it: a member's later entries are stamped no earlier than its head, so no
    ///   vote before the deadline can come from it any more; until then the
    ///   proposal stays open, and an approval stamped at or after its lapse counts
    ///   for nothing;
    /// - an organisation's entries past its cut (a removal, a departure, or a
    ///   recovery's end of an old log) count nowhere, wherever they fall in the
    ///   order: the fold is run again with them left out until the cuts it finds
    ///   are the cuts it left out (at most a few passes; one without any cut).
    pub fn fold<'a>(
        charter: &Charter,
        entries: impl IntoIterator<Item = &'a GovEntry>,
        witness: &dyn Fn(&PublicId) -> i64,
    ) -> Self {
        let order = causal_order(entries.into_iter().collect());
        let mut cuts: BTreeMap<PublicId, u64> = BTreeMap::new();
        let mut roster = Self::fold_once(charter, &order, &cuts, witness);
        for _ in 0..MAX_CUT_PASSES {
            let found = roster.cuts();
            if found == cuts {
                break;
            }
            cuts = found;
            roster = Self::fold_once(charter, &order, &cuts, witness);
        }
        for (entry, effective_ms) in &order {
            roster.memo.note(entry, *effective_ms);
        }
        roster.memo.cuts = cuts;
        roster
    }

    /// Folds one more governance entry into this roster when that gives what
    /// folding every entry again would: the entry comes last in the causal order
    /// (its (timestamp, author, seq) is the greatest, and no entry folded came
    /// after it), every deadline it could come before is still to be reached, it
    /// changes no cut, and no log has rotated its key. Otherwise false, and the
    /// roster must be folded again from all its entries (this one may be left half
    /// applied). So a live alliance's governance entries, which arrive in order,
    /// cost one step each rather than a fold of all of them.
    pub fn append(&mut self, entry: &GovEntry, witness: &dyn Fn(&PublicId) -> i64) -> bool {
        let memo = &self.memo;
        let key = (entry.timestamp_ms, entry.author, entry.seq);
        if memo.last.is_some_and(|last| key <= last)
            || memo
                .referenced
                .get(&entry.author)
                .is_some_and(|s| *s >= entry.seq)
            || memo.voted.contains(&entry.id)
            || self.organisations.values().any(|o| !o.histories.is_empty())
        {
            return false;
        }
        let mut effective_ms = entry.timestamp_ms;
        let mut after = |t: Option<i64>| {
            if let Some(t) = t {
                effective_ms = effective_ms.max(t);
            }
        };
        after(
            entry
                .seq
                .checked_sub(1)
                .and_then(|s| memo.at_or_before(&entry.author, s)),
        );
        if let Action::Approve(id) | Action::Object(id) = &entry.action
            && let Some(p) = self.proposals.get(id)
        {
            after(memo.effective.get(&(p.author, p.seq)).copied());
        }
        for (author, seq) in entry.seen.iter().flatten() {
            if *author != entry.author {
                after(memo.at_or_before(author, *seq));
            }
        }
        if memo
            .settled_ms
            .is_some_and(|settled| effective_ms <= settled)
        {
            return false;
        }
        let past_cut = memo
            .cuts
            .get(&entry.author)
            .is_some_and(|cut| entry.seq > *cut);
        self.memo.note(entry, effective_ms);
        if !past_cut {
            self.run_deadlines(effective_ms, witness);
            self.step(entry, effective_ms);
        }
        self.run_deadlines(i64::MAX, witness);
        self.cuts() == self.memo.cuts
    }

    fn fold_once(
        charter: &Charter,
        order: &[(&GovEntry, i64)],
        cuts: &BTreeMap<PublicId, u64>,
        witness: &dyn Fn(&PublicId) -> i64,
    ) -> Self {
        let mut roster = Self::from_charter(charter);
        for (entry, effective_ms) in order {
            if cuts.get(&entry.author).is_some_and(|cut| entry.seq > *cut) {
                continue;
            }
            roster.run_deadlines(*effective_ms, witness);
            roster.step(entry, *effective_ms);
        }
        roster.run_deadlines(i64::MAX, witness);
        roster
    }

    /// Every log's cut: the last seq of it that counts.
    fn cuts(&self) -> BTreeMap<PublicId, u64> {
        let mut cuts = BTreeMap::new();
        for org in self.organisations.values() {
            for log in org.logs() {
                if let Some((_, _, Some(cut))) = self.place(&log) {
                    cuts.insert(log, cut);
                }
            }
        }
        cuts
    }

    /// Whether a deadline still to be reached falls in `(after, until]`: an entry
    /// that moves a log's head across it may reach it, and the roster must be
    /// folded again.
    pub fn deadline_between(&self, after: i64, until: i64) -> bool {
        if until <= after {
            return false;
        }
        self.memo
            .pending
            .range((after.saturating_add(1), 0, EntryId::from_bytes([0; 32]))..)
            .next()
            .is_some_and(|d| d.0 <= until)
    }

    pub fn organisations(&self) -> impl Iterator<Item = &Organisation> {
        self.organisations.values()
    }

    /// Records the keys of `author`'s log ([`crate::entry::Logs::key_history`]):
    /// they come from the log itself (each rotation is an entry of it), not from the
    /// fold, so the state sets them after every fold. Nothing for a key that is not
    /// an organisation of the roster.
    pub fn set_keys(&mut self, author: &PublicId, history: &[(u64, PublicId)]) {
        let Some(key) = self.owner(author).map(|o| o.key) else {
            return;
        };
        let org = self.organisations.get_mut(&key).expect("owner");
        org.histories.insert(*author, history.to_vec());
        org.settle_keys();
    }

    /// The organisation whose identity, current key or retired key is `key`, or
    /// whose log a recovery started under `key`.
    pub fn key_holder(&self, key: &PublicId) -> Option<&Organisation> {
        self.organisations.values().find(|o| o.holds_key(key))
    }

    /// An organisation by its identity.
    pub fn organisation(&self, key: &PublicId) -> Option<&Organisation> {
        self.organisations.get(key)
    }

    /// The organisation whose log `author`'s is: its identity's log, or one a
    /// recovery started.
    pub fn owner(&self, author: &PublicId) -> Option<&Organisation> {
        self.organisations.get(author).or_else(|| {
            self.logs
                .get(author)
                .and_then(|org| self.organisations.get(org))
        })
    }

    /// The organisation whose log `author`'s is, the log's rank among its logs (0:
    /// its identity's) and the last seq of the log that counts.
    pub fn place(&self, author: &PublicId) -> Option<(&Organisation, usize, Option<u64>)> {
        let org = self.owner(author)?;
        let rank = org.log_rank(author)?;
        Some((org, rank, org.log_cut(rank)))
    }

    /// The current role of an active organisation, by its identity.
    pub fn role(&self, key: &PublicId) -> Option<Role> {
        self.organisations
            .get(key)
            .filter(|o| o.is_active())
            .map(|o| o.role)
    }

    /// The current role of the active organisation whose current log is
    /// `author`'s: what a new entry by `author` may be. A log a recovery replaced
    /// signs nothing more.
    pub fn author_role(&self, author: &PublicId) -> Option<Role> {
        self.owner(author)
            .filter(|o| o.is_active() && o.log() == *author)
            .map(|o| o.role)
    }

    /// The name of the organisation whose identity or log `key` is.
    pub fn name_of(&self, key: &PublicId) -> Option<&str> {
        self.owner(key).map(|o| o.name.as_str())
    }

    /// An organisation by name (case-insensitive; active ones first) or key in hex.
    pub fn find(&self, name_or_key: &str) -> Option<PublicId> {
        if let Ok(key) = name_or_key.trim().parse::<PublicId>() {
            return self.organisations.contains_key(&key).then_some(key);
        }
        let wanted = name_or_key.trim().to_lowercase();
        let mut matching: Vec<&Organisation> = self
            .organisations
            .values()
            .filter(|o| o.name.to_lowercase() == wanted)
            .collect();
        matching.sort_by_key(|o| !o.is_active());
        matching.first().map(|o| o.key)
    }

    pub fn proposals(&self) -> impl Iterator<Item = &ProposalView> {
        self.proposals.values()
    }

    pub fn proposal(&self, id: &EntryId) -> Option<&ProposalView> {
        self.proposals.get(id)
    }

    /// Whether any governance entry has been folded (else this is the charter's
    /// roster, and the derived state leaves it out of its digest).
    pub fn is_charter_only(&self) -> bool {
        self.proposals.is_empty()
            && self.history.is_empty()
            && self.refused_departures.is_empty()
            && self.organisations.values().all(|o| o.node.is_none())
    }

    /// The nodes of the active organisations that have one, by organisation key:
    /// what every node pins and dials besides its config's `[[peers]]`.
    pub fn nodes(&self) -> impl Iterator<Item = (&Organisation, &Node)> {
        self.organisations
            .values()
            .filter(|o| o.is_active())
            .filter_map(|o| o.node.as_ref().map(|n| (o, n)))
    }

    /// Whether an entry counts in the views: its author is an organisation of the
    /// roster (whatever its status), the entry is within the part of its log that
    /// counts, and some role the organisation has held allows the entry's kind.
    pub fn counts(&self, author: &PublicId, seq: u64, kind: i32) -> bool {
        let Some((org, _, cut)) = self.place(author) else {
            return false;
        };
        if cut.is_some_and(|cut| seq > cut) {
            return false;
        }
        kind_allowed(kind, org.roles_held)
    }

    /// What the views' counting depends on, per log (the organisation, its roles,
    /// the log's cut): when it changes for an author whose entries were applied,
    /// the views must be rebuilt.
    pub fn counting(&self) -> BTreeMap<PublicId, (PublicId, RoleSet, Option<u64>)> {
        self.organisations
            .values()
            .flat_map(|o| {
                o.logs()
                    .enumerate()
                    .map(move |(rank, log)| (log, (o.key, o.roles_held, o.log_cut(rank))))
            })
            .collect()
    }

    fn members(&self) -> impl Iterator<Item = &Organisation> {
        self.organisations
            .values()
            .filter(|o| o.is_active() && o.role == Role::Member)
    }

    fn secretaries(&self) -> usize {
        self.organisations
            .values()
            .filter(|o| o.is_active() && o.role == Role::Secretary)
            .count()
    }

    /// Whether `roster` after a change still has a secretary (if this one had) and
    /// two members.
    fn check_left(&self, after: &Roster) -> Result<(), Reason> {
        if self.secretaries() > 0 && after.secretaries() == 0 {
            return Err(Reason::new(
                Code::NoSecretary,
                "it would leave the alliance with no secretary",
            ));
        }
        let (before, now) = (self.members().count(), after.members().count());
        if now < 2 && now < before {
            return Err(Reason::new(
                Code::TooFewMembers,
                format!("it would leave the alliance with fewer than two members ({now})"),
            ));
        }
        Ok(())
    }

    /// A copy of the organisations and rule (not the proposals), to try a change on.
    fn light(&self) -> Roster {
        Roster {
            version: self.version,
            quorum: self.quorum,
            charter_rule: self.charter_rule,
            organisations: self.organisations.clone(),
            logs: self.logs.clone(),
            proposals: BTreeMap::new(),
            history: Vec::new(),
            deadlines: BTreeSet::new(),
            refused_departures: Vec::new(),
            memo: FoldMemo::default(),
        }
    }

    /// Applies `change` to a copy; refuses what the rules forbid.
    fn changed(&self, change: &Change) -> Result<Roster, Reason> {
        let mut after = self.light();
        let active = |key: &PublicId| -> Result<&Organisation, Reason> {
            self.organisations
                .get(key)
                .filter(|o| o.is_active())
                .ok_or_else(|| {
                    Reason::new(
                        Code::NotActive,
                        format!("{key} is not an active organisation of the alliance"),
                    )
                })
        };
        match change {
            Change::Admit {
                name,
                key,
                role,
                ec_id,
                node,
            } => {
                if let Some(o) = self.organisations.get(key) {
                    return Err(Reason::new(
                        Code::KeyInRoster,
                        format!("key {key} is already in the roster (as {})", o.name),
                    ));
                }
                let lower = name.trim().to_lowercase();
                if let Some(o) = self
                    .organisations
                    .values()
                    .find(|o| o.is_active() && o.name.to_lowercase() == lower)
                {
                    return Err(Reason::new(
                        Code::NameTaken,
                        format!("the name {:?} is already taken", o.name),
                    ));
                }
                after.organisations.insert(
                    *key,
                    Organisation {
                        name: name.trim().to_owned(),
                        key: *key,
                        ec_id: ec_id.clone(),
                        role: *role,
                        roles_held: RoleSet::of(*role),
                        status: OrgStatus::Active,
                        admitted_at: self.version + 1,
                        current_key: None,
                        retired_keys: Vec::new(),
                        node: node.clone(),
                        recoveries: Vec::new(),
                        histories: BTreeMap::new(),
                    },
                );
            }
            Change::Recover {
                organisation,
                key,
                up_to_seq,
            } => {
                active(organisation)?;
                if let Some(o) = self.key_holder(key) {
                    return Err(Reason::new(
                        Code::KeyInRoster,
                        format!("key {key} is already in the roster (a key of {})", o.name),
                    ));
                }
                let org = after.organisations.get_mut(organisation).expect("active");
                org.recoveries.push(Recovery {
                    log: org.log(),
                    up_to_seq: *up_to_seq,
                    next: *key,
                    proposal: EntryId::from_bytes([0; 32]),
                    at_ms: 0,
                });
                org.settle_keys();
                after.logs.insert(*key, *organisation);
            }
            Change::Remove { organisation, .. } => {
                active(organisation)?;
                let org = after.organisations.get_mut(organisation).expect("active");
                org.status = OrgStatus::Removed {
                    up_to_seq: 0,
                    at_ms: 0,
                    proposal: EntryId::from_bytes([0; 32]),
                };
            }
            Change::SetRole { organisation, role } => {
                let org = active(organisation)?;
                if org.role == *role {
                    return Err(Reason::new(
                        Code::RoleUnchanged,
                        format!("{} is already a {}", org.name, role.as_str()),
                    ));
                }
                let org = after.organisations.get_mut(organisation).expect("active");
                org.role = *role;
                org.roles_held.insert(*role);
            }
            Change::Quorum { rule } => {
                rule.check()
                    .map_err(|why| Reason::new(Code::QuorumRuleInvalid, why))?;
                if let QuorumRule::Count(n) = rule {
                    let members = self.members().count();
                    if *n as usize > members {
                        return Err(Reason::new(
                            Code::QuorumCountOverMembers,
                            format!("a count of {n} is more than the {members} members"),
                        ));
                    }
                }
                after.quorum = *rule;
            }
        }
        self.check_left(&after)?;
        Ok(after)
    }

    /// The active organisation whose entry this is, if the entry counts at this
    /// point of the fold.
    fn standing(&self, author: &PublicId, seq: u64) -> Option<&Organisation> {
        let (org, _, cut) = self.place(author)?;
        match cut {
            None => Some(org),
            Some(cut) if seq <= cut => Some(org),
            Some(_) => None,
        }
    }

    /// The newest change since `base` that touches what `change` touches.
    fn conflict(&self, base: u64, change: &Change) -> Option<(u64, EntryId)> {
        let subjects = change.subjects();
        self.history
            .iter()
            .rev()
            .take_while(|(v, _, _)| *v > base)
            .find(|(_, s, _)| s.iter().any(|x| subjects.contains(x)))
            .map(|(v, _, by)| (*v, *by))
    }

    fn void_reason(base: u64, version: u64, by: &EntryId) -> Reason {
        Reason::new(
            Code::RosterVersionSuperseded,
            format!(
                "the roster changed what it changes (by {} at roster version {version}) \
                 since version {base}, which it was made against; propose it again",
                short(by)
            ),
        )
    }

    /// Judges each deadline before `before_ms`, once, at its place in the fold: one
    /// every active member of its proposal's electorate has witnessed is reached;
    /// one they have not stays pending (a later fold reaches it at the same place,
    /// once its witnesses are held: [`Roster::deadline_between`]).
    fn run_deadlines(&mut self, before_ms: i64, witness: &dyn Fn(&PublicId) -> i64) {
        while let Some(&deadline) = self.deadlines.first() {
            if deadline.0 >= before_ms {
                break;
            }
            self.deadlines.remove(&deadline);
            let (at_ms, kind, id) = deadline;
            let Some(p) = self.proposals.get(&id) else {
                continue;
            };
            if p.status != ProposalStatus::Open {
                continue;
            }
            if !self.witnessed(&p.electorate, at_ms, witness) {
                self.memo.pending.insert(deadline);
                continue;
            }
            self.memo.settled_ms = self.memo.settled_ms.max(Some(at_ms));
            if kind == LAPSE {
                self.proposals.get_mut(&id).expect("present").status =
                    ProposalStatus::Lapsed { at_ms };
            } else if p.objections.is_empty() {
                self.enact(id, at_ms);
            }
        }
    }

    /// Whether every member of `electorate` still active holds, in one of its
    /// logs, an entry stamped at or after `at_ms`.
    fn witnessed(
        &self,
        electorate: &[PublicId],
        at_ms: i64,
        witness: &dyn Fn(&PublicId) -> i64,
    ) -> bool {
        electorate.iter().all(|key| {
            self.organisations
                .get(key)
                .filter(|o| o.is_active())
                .is_none_or(|o| o.logs().any(|log| witness(&log) >= at_ms))
        })
    }

    fn step(&mut self, entry: &GovEntry, effective_ms: i64) {
        let Some(org) = self.standing(&entry.author, entry.seq) else {
            return;
        };
        // Votes, departures and announcements are the organisation's, whichever of
        // its logs they are in.
        let who = org.key;
        let role = org.role;
        let active = org.is_active();
        let current_log = org.log() == entry.author;
        match &entry.action {
            Action::Propose(proposal) => {
                if !active || !matches!(role, Role::Member | Role::Secretary) {
                    return;
                }
                self.propose(entry, who, proposal);
            }
            Action::Approve(id) | Action::Object(id) => {
                if !active || role != Role::Member {
                    return;
                }
                let Some(p) = self.proposals.get_mut(id) else {
                    return;
                };
                // A vote stamped at or after the lapse counts for nothing, even
                // while the lapse waits for its witnesses.
                if p.status != ProposalStatus::Open
                    || effective_ms >= p.lapses_ms
                    || !p.electorate.contains(&who)
                    || p.approvals.contains(&who)
                    || p.objections.contains(&who)
                {
                    return;
                }
                if matches!(entry.action, Action::Approve(_)) {
                    p.approvals.push(who);
                    p.approvals.sort();
                    if p.approvals.len() >= p.needed {
                        self.enact(*id, entry.timestamp_ms);
                    }
                } else {
                    p.objections.push(who);
                    p.objections.sort();
                }
            }
            Action::Leave => {
                // A departure names a seq of the organisation's current log: one in
                // a log a recovery replaced counts nowhere.
                if !active || !current_log {
                    return;
                }
                let mut after = self.light();
                after.organisations.get_mut(&who).expect("active").status = OrgStatus::Left {
                    up_to_seq: entry.seq,
                    at_ms: entry.timestamp_ms,
                };
                if let Err(why) = self.check_left(&after) {
                    self.refused_departures.push((entry.author, entry.seq, why));
                    return;
                }
                self.organisations = after.organisations;
                self.record(vec![Subject::Key(who)], entry.id);
            }
            Action::Announce(node) => {
                if active {
                    self.organisations.get_mut(&who).expect("active").node = Some(node.clone());
                }
            }
        }
    }

    fn propose(&mut self, entry: &GovEntry, who: PublicId, proposal: &Proposal) {
        let rule = self.quorum;
        let excluded = proposal.change.excluded();
        let electorate: Vec<PublicId> = self
            .members()
            .map(|o| o.key)
            .filter(|k| Some(*k) != excluded)
            .collect();
        let needed = rule.needed(electorate.len());
        let status =
            if let Some((version, by)) = self.conflict(proposal.roster_version, &proposal.change) {
                ProposalStatus::Void {
                    reason: Self::void_reason(proposal.roster_version, version, &by),
                }
            } else if let Err(reason) = self.changed(&proposal.change) {
                ProposalStatus::Refused { reason }
            } else {
                ProposalStatus::Open
            };
        let lapses_ms = entry.timestamp_ms.saturating_add(LAPSE_MS);
        let passes_unopposed_ms = match rule {
            QuorumRule::Lazy(days) => {
                Some(entry.timestamp_ms.saturating_add(i64::from(days) * DAY_MS))
            }
            _ => None,
        };
        let approvals = if electorate.contains(&who) {
            vec![who]
        } else {
            Vec::new()
        };
        let open = status == ProposalStatus::Open;
        self.proposals.insert(
            entry.id,
            ProposalView {
                id: entry.id,
                author: entry.author,
                seq: entry.seq,
                timestamp_ms: entry.timestamp_ms,
                proposal: proposal.clone(),
                rule,
                electorate,
                needed,
                approvals,
                objections: Vec::new(),
                lapses_ms,
                passes_unopposed_ms,
                status,
            },
        );
        if open {
            self.deadlines.insert((lapses_ms, LAPSE, entry.id));
            if let Some(at) = passes_unopposed_ms {
                self.deadlines.insert((at, LAZY, entry.id));
            }
            let p = &self.proposals[&entry.id];
            if p.approvals.len() >= p.needed {
                self.enact(entry.id, entry.timestamp_ms);
            }
        }
    }

    /// A proposal reached its quorum (or its lazy deadline) at `at_ms`.
    fn enact(&mut self, id: EntryId, at_ms: i64) {
        let change = self.proposals[&id].proposal.change.clone();
        let status = match self.changed(&change) {
            Err(reason) => ProposalStatus::Refused { reason },
            Ok(mut after) => {
                if let Change::Remove {
                    organisation,
                    up_to_seq,
                } = &change
                {
                    after
                        .organisations
                        .get_mut(organisation)
                        .expect("removed")
                        .status = OrgStatus::Removed {
                        up_to_seq: *up_to_seq,
                        at_ms,
                        proposal: id,
                    };
                }
                if let Change::Recover { organisation, .. } = &change {
                    let recovery = after
                        .organisations
                        .get_mut(organisation)
                        .and_then(|o| o.recoveries.last_mut())
                        .expect("recovered");
                    recovery.proposal = id;
                    recovery.at_ms = at_ms;
                }
                self.organisations = after.organisations;
                self.logs = after.logs;
                self.quorum = after.quorum;
                self.record(change.subjects(), id);
                ProposalStatus::Passed {
                    version: self.version,
                    at_ms,
                }
            }
        };
        self.proposals.get_mut(&id).expect("present").status = status;
    }

    /// Records a change: the version moves on, and every open proposal touching the
    /// same subjects is void.
    fn record(&mut self, subjects: Vec<Subject>, by: EntryId) {
        self.version += 1;
        let version = self.version;
        for p in self.proposals.values_mut() {
            if p.status == ProposalStatus::Open
                && p.proposal
                    .change
                    .subjects()
                    .iter()
                    .any(|s| subjects.contains(s))
            {
                p.status = ProposalStatus::Void {
                    reason: Self::void_reason(p.proposal.roster_version, version, &by),
                };
            }
        }
        self.history.push((version, subjects, by));
    }

    /// The rules a new governance entry by `author`, stamped `timestamp_ms`, must
    /// meet against this roster (publish and submit; entries relayed from peers are
    /// judged by the fold instead).
    pub fn check_new(
        &self,
        author: &PublicId,
        timestamp_ms: i64,
        action: &Action,
    ) -> Result<(), GovernanceError> {
        let what = |key: &PublicId| match self.owner(key) {
            None => "not in the roster".to_owned(),
            Some(o) if !o.is_active() => format!("{} and no longer active", o.name),
            Some(o) if o.log() != *key => format!(
                "a log of {} that a recovery replaced (it signs in {}'s log now)",
                o.name,
                o.log()
            ),
            Some(o) => format!("{} ({})", o.name, o.role.as_str()),
        };
        // The organisation whose current log the author's is.
        let who = self
            .owner(author)
            .filter(|o| o.log() == *author)
            .map_or(*author, |o| o.key);
        match action {
            Action::Propose(p) => {
                if !matches!(
                    self.author_role(author),
                    Some(Role::Member | Role::Secretary)
                ) {
                    return Err(GovernanceError::NotAProposer {
                        who: *author,
                        what: what(author),
                    });
                }
                if let Change::Admit { key, .. } | Change::Recover { key, .. } = &p.change
                    && let Some(o) = self.key_holder(key)
                    && o.key != *key
                {
                    return Err(GovernanceError::Refused(format!(
                        "key {key} is already in the roster (a key of {})",
                        o.name
                    )));
                }
                if let Some((version, by)) = self.conflict(p.roster_version, &p.change) {
                    return Err(GovernanceError::Void(
                        Self::void_reason(p.roster_version, version, &by).to_string(),
                    ));
                }
                self.changed(&p.change)
                    .map(drop)
                    .map_err(|reason| GovernanceError::Refused(reason.to_string()))
            }
            Action::Approve(id) | Action::Object(id) => {
                let p = self
                    .proposals
                    .get(id)
                    .ok_or(GovernanceError::UnknownProposal(*id))?;
                if self.author_role(author) != Some(Role::Member) {
                    return Err(GovernanceError::NotAVoter {
                        who: *author,
                        what: what(author),
                    });
                }
                match &p.status {
                    ProposalStatus::Open => {}
                    ProposalStatus::Lapsed { at_ms } => {
                        return Err(GovernanceError::Lapsed {
                            id: *id,
                            lapsed_ms: *at_ms,
                        });
                    }
                    other => {
                        let detail = match other {
                            ProposalStatus::Void { reason }
                            | ProposalStatus::Refused { reason } => reason.to_string(),
                            ProposalStatus::Passed { version, .. } => {
                                format!("it took effect at roster version {version}")
                            }
                            _ => String::new(),
                        };
                        return Err(GovernanceError::Closed {
                            id: *id,
                            status: other.as_str(),
                            detail,
                        });
                    }
                }
                if timestamp_ms > p.lapses_ms {
                    return Err(GovernanceError::Lapsed {
                        id: *id,
                        lapsed_ms: p.lapses_ms,
                    });
                }
                if !p.electorate.contains(&who) {
                    return Err(GovernanceError::NotInElectorate {
                        who: *author,
                        id: *id,
                    });
                }
                let how = if p.approvals.contains(&who) {
                    Some("approved")
                } else if p.objections.contains(&who) {
                    Some("objected to")
                } else {
                    None
                };
                match how {
                    Some(how) => Err(GovernanceError::AlreadyVoted {
                        who: *author,
                        how,
                        id: *id,
                    }),
                    None => Ok(()),
                }
            }
            Action::Announce(_) => match self.author_role(author) {
                Some(_) => Ok(()),
                None => Err(GovernanceError::NotAnnouncer {
                    who: *author,
                    what: what(author),
                }),
            },
            Action::Leave => {
                if self.author_role(author).is_none() {
                    return Err(GovernanceError::CannotLeave {
                        who: *author,
                        reason: format!("it is {}", what(author)),
                    });
                }
                let mut after = self.light();
                after.organisations.get_mut(&who).expect("active").status = OrgStatus::Left {
                    up_to_seq: 0,
                    at_ms: 0,
                };
                self.check_left(&after)
                    .map_err(|reason| GovernanceError::CannotLeave {
                        who: *author,
                        reason: reason.to_string(),
                    })
            }
        }
    }
}

/// Whether an organisation that has held `roles` may author an entry of `kind`:
/// intentions need a member, resolutions a secretary, proposals a member or
/// secretary, approvals and objections a member; anything else any role.
pub fn kind_allowed(kind: i32, roles: RoleSet) -> bool {
    use crate::pb::EntryKind as K;
    match K::try_from(kind) {
        Ok(K::Intention) => roles.contains(Role::Member),
        Ok(K::Resolution) => roles.contains(Role::Secretary),
        Ok(K::Proposal) => roles.contains(Role::Member) || roles.contains(Role::Secretary),
        Ok(K::Approval | K::Objection) => roles.contains(Role::Member),
        _ => true,
    }
}

fn short(id: &EntryId) -> String {
    id.to_string().chars().take(12).collect()
}
