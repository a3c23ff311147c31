//! One alliance in one thread: nodes running the writer's decisions
//! (`accord_node::batch`), the claims gate (`accord_node::claims`) and the clock
//! judgement over an in-memory durable store, linked by a simulated network, on
//! one queue of events ordered by (time, insertion counter).
//!
//! The sync between nodes is a model of the node's sessions, not their code: a
//! node asks each peer for what it lacks by sending its heads (and its clock, as
//! `GetHeads` answers carry it), the peer answers with the entries past those heads
//! and its fork proofs, and every batch a node commits is pushed to its peers. The
//! session's own machinery (pulls, grafts, grace, keepalive) stays with the
//! process-level tests.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
use accord_core::entry::{self, Logs, SignatureChecked};
use accord_core::pb;
use accord_core::roster::{DAY_MS, OrgStatus, ProposalStatus};
use accord_core::state::ForkProof;
use accord_core::{Charter, EntryError, EntryId, Identity, PublicId, State, VerifiedEntry};
use accord_node::batch::{self, Outcome, Request};
use accord_node::claims::HomeClaims;
use accord_node::federation::first_to_send;
use accord_node::ledger::ClockCheck;
use prost::Message;

use crate::config::Config;
use crate::rng::Rng;

/// 2027-01-01T00:00:00Z: where every run's clock starts.
pub const EPOCH_MS: i64 = 1_798_761_600_000;
/// The writer's wait for more entries from peers (`INGEST_LINGER`).
const LINGER_MS: i64 = 2;
/// How often a node asks each peer for what it lacks.
const SYNC_MS: i64 = 10_000;
/// How long a peer's clock reading counts (`CLOCK_READING_TTL`).
const CLOCK_TTL_MS: i64 = 600_000;
/// Most entries one answer to a node's heads carries.
const ANSWER_CAP: usize = 512;
/// Most requests one writer batch takes (`MAX_BATCH`).
const MAX_BATCH: usize = 1024;
/// Deterministic caps on one run: a run past them fails, replayably.
const MAX_EVENTS: u64 = 2_000_000;

#[derive(Debug, Clone)]
enum Msg {
    /// "Here is what I hold; send me what I lack" (and my clock).
    Heads {
        heads: Vec<(PublicId, u64, Option<EntryId>)>,
        clock_ms: i64,
    },
    Entries {
        entries: Vec<Vec<u8>>,
        forks: Vec<ForkProof>,
    },
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        incarnation: u64,
        msg: Msg,
    },
    Tick {
        node: usize,
        incarnation: u64,
    },
    Sync {
        node: usize,
        incarnation: u64,
    },
    Act,
    Hostile,
    Crash(usize),
    Restart(usize),
    Split(Vec<u8>),
    Heal,
}

/// Who asked for a request the writer answers.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// An organisation's own publish at its home node.
    Client {
        org: usize,
        liveness: bool,
    },
    Peer,
    Other,
}

#[derive(Debug, Default, Clone)]
struct MemStore {
    entries: BTreeMap<(PublicId, u64), VerifiedEntry>,
    forks: BTreeMap<PublicId, ForkProof>,
}

struct Node {
    org: usize,
    up: bool,
    incarnation: u64,
    store: MemStore,
    state: State,
    /// The home identity's current key.
    identity: Identity,
    inbox: Vec<(Request, Origin)>,
    tick_at: Option<i64>,
    failed: Option<String>,
    claims: HomeClaims,
    /// Per peer: its clock minus this node's, and when read (true time).
    clocks: BTreeMap<usize, (i64, i64)>,
    /// This node's clock minus the true time.
    offset_ms: i64,
    /// Sync rounds still to run before the node's timer rests.
    rounds_left: u32,
}

struct Org {
    identity: Identity,

    honest: bool,
    /// A new key made for a recovery, once proposed.
    next_key: Option<Identity>,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<String>,
    pub events: u64,
    pub entries: u64,
    pub published: u64,
    pub refused: u64,
    /// Rare paths this run reached (probes).
    pub probes: BTreeSet<&'static str>,
    /// A hash of the run's decisions: equal for equal seeds.
    pub trace_hash: u64,
}

pub struct World {
    cfg: Config,
    now: i64,
    counter: u64,
    queue: BTreeMap<(i64, u64), Ev>,
    charter: Charter,
    orgs: Vec<Org>,
    /// Keys of organisations proposed for admission, in order.
    newcomers: Vec<Identity>,
    nodes: Vec<Node>,
    work: Rng,
    net: Rng,
    faults: Rng,
    hostile_rng: Rng,
    verified: HashSet<Vec<u8>>,
    /// Per node, its side of a partition (None: whole).
    split: Option<Vec<u8>>,
    /// Last delivery time per link, so each link is FIFO.
    link_last: BTreeMap<(usize, usize), i64>,
    faults_on: bool,
    hostile_silenced: bool,
    /// The first final fate each proposal showed on an honest node.
    fates: BTreeMap<EntryId, (&'static str, usize, i64)>,
    /// The final fates each honest node has shown: (node, proposal) → fate.
    shown: BTreeMap<(usize, EntryId), &'static str>,
    /// Every entry an honest key signed: (author, seq) → id.
    signed: BTreeMap<(PublicId, u64), EntryId>,
    /// Authors an honest node refused an entry of as a fork.
    forked: BTreeSet<PublicId>,
    liveness: BTreeMap<usize, Option<String>>,
    trace: bool,
    pub report: Report,
}

fn hash_mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(5)
}

impl World {
    pub fn new(seed: u64, cfg: Config, trace: bool) -> Self {
        let mut keys = Rng::new(seed, "keys");
        let mut key = || {
            let mut s = [0u8; 32];
            for chunk in s.chunks_mut(8) {
                chunk.copy_from_slice(&keys.u64().to_le_bytes());
            }
            Identity::from_seed(s)
        };
        let orgs: Vec<Org> = (0..cfg.orgs)
            .map(|i| Org {
                identity: key(),

                honest: cfg.hostile.as_ref().is_none_or(|h| h.org != i),
                next_key: None,
            })
            .collect();
        let newcomers = (0..4).map(|_| key()).collect();
        let doc = CharterDoc {
            accord_charter: 1,
            name: "Simulated Alliance".into(),
            members: orgs
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, o)| CharterMember {
                    name: format!("Party {i}"),
                    key: o.identity.public_id(),
                    ec_id: None,
                })
                .collect(),
            secretaries: vec![CharterSecretary {
                name: "Secretariat".into(),
                key: orgs[0].identity.public_id(),
            }],
            rules: Rules {
                quorum: Some(cfg.quorum),
                ..Rules::default()
            },
        };
        let charter = Charter::from_bytes(doc.to_file_bytes()).expect("a valid charter");
        let mut faults = Rng::new(seed, "faults");
        let skew = i64::from(charter.rules().max_clock_skew_secs) * 1000;
        let nodes = orgs
            .iter()
            .enumerate()
            .map(|(i, o)| Node {
                org: i,
                up: true,
                incarnation: 0,
                store: MemStore::default(),
                state: State::new(charter.clone()),
                identity: o.identity.clone(),
                inbox: Vec::new(),
                tick_at: None,
                failed: None,
                claims: HomeClaims::default(),
                clocks: BTreeMap::new(),
                // Within a quarter of the skew, or (one node in five) up to 0.9 of it.
                offset_ms: if cfg.clock_skew {
                    let reach = if faults.chance(20) {
                        skew * 9 / 10
                    } else {
                        skew / 4
                    };
                    faults.range(0, 2 * reach as u64) as i64 - reach
                } else {
                    0
                },
                rounds_left: 0,
            })
            .collect();
        Self {
            now: EPOCH_MS,
            counter: 0,
            queue: BTreeMap::new(),
            charter,
            orgs,
            newcomers,
            nodes,
            work: Rng::new(seed, "workload"),
            net: Rng::new(seed, "network"),
            faults,
            hostile_rng: Rng::new(seed, "hostile"),
            verified: HashSet::new(),
            split: None,
            link_last: BTreeMap::new(),
            faults_on: true,
            hostile_silenced: false,
            fates: BTreeMap::new(),
            shown: BTreeMap::new(),
            signed: BTreeMap::new(),
            forked: BTreeSet::new(),
            liveness: BTreeMap::new(),
            trace,
            report: Report::default(),
            cfg,
        }
    }

    fn at(&mut self, time: i64, ev: Ev) {
        self.counter += 1;
        self.queue.insert((time, self.counter), ev);
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.trace {
            let line = line();
            println!("{:>12} {line}", self.now - EPOCH_MS);
        }
    }

    fn violation(&mut self, what: String) {
        self.log(|| format!("VIOLATION {what}"));
        if self.report.violations.len() < 20 && !self.report.violations.contains(&what) {
            self.report.violations.push(what);
        }
    }

    fn honest(&self, node: usize) -> bool {
        self.orgs[self.nodes[node].org].honest
    }

    fn hostile_org(&self) -> Option<usize> {
        self.cfg.hostile.as_ref().map(|h| h.org)
    }

    fn clock(&self, node: usize) -> i64 {
        self.now + self.nodes[node].offset_ms
    }

    /// Runs the whole schedule: bursts and warps with faults on, then healing,
    /// liveness and quiescence, then the final checks.
    pub fn run(&mut self) {
        let bursts = self.cfg.bursts;
        for burst in 0..bursts {
            self.burst(burst);
            if !self.report.violations.is_empty() {
                break;
            }
            // A warp: hours or days, sometimes past the lapse of every proposal.
            let warp = match self.work.range(0, 9) {
                0..=3 => self.work.range(1, 12) as i64 * 3_600_000,
                4..=7 => self.work.range(1, 5) as i64 * DAY_MS,
                _ => self.work.range(14, 16) as i64 * DAY_MS,
            };
            self.now += warp;
            self.log(|| format!("warp {warp} ms"));
        }
        if self.report.violations.is_empty() {
            self.heal_and_check();
        }
        let mut h = 0;
        for v in &self.report.violations {
            for b in v.bytes() {
                h = hash_mix(h, u64::from(b));
            }
        }
        self.report.trace_hash = hash_mix(self.report.trace_hash, h);
    }

    fn burst(&mut self, burst: usize) {
        let start = self.now;
        let span = 60_000;
        for node in 0..self.nodes.len() {
            self.nodes[node].rounds_left = 9;
            let jitter = self.net.range(0, SYNC_MS as u64) as i64;
            let incarnation = self.nodes[node].incarnation;
            self.at(start + jitter, Ev::Sync { node, incarnation });
        }
        let actions = self.work.range(5, 20);
        for _ in 0..actions {
            let t = start + self.work.range(0, span as u64) as i64;
            self.at(t, Ev::Act);
        }
        if self.cfg.hostile.is_some() {
            for _ in 0..self.hostile_rng.range(1, 4) {
                let t = start + self.hostile_rng.range(0, span as u64) as i64;
                self.at(t, Ev::Hostile);
            }
        }
        if self.cfg.partitions && self.faults.chance(60) {
            let n = self.nodes.len();
            let sides: Vec<u8> = (0..n).map(|_| self.faults.range(0, 1) as u8).collect();
            let t = start + self.faults.range(0, 30_000) as i64;
            self.at(t, Ev::Split(sides));
            // Some partitions outlast the burst (and the warp after it).
            if self.faults.chance(70) {
                let end = t + self.faults.range(5_000, 80_000) as i64;
                self.at(end, Ev::Heal);
            }
        }
        if self.cfg.crashes && self.faults.chance(50) {
            let node = self.faults.index(self.nodes.len());
            let t = start + self.faults.range(0, span as u64) as i64;
            self.at(t, Ev::Crash(node));
            if burst + 1 < self.cfg.bursts || self.faults.chance(50) {
                let back = t + self.faults.range(1_000, 60_000) as i64;
                self.at(back, Ev::Restart(node));
            }
        }
        self.drain(start + 200_000);
    }

    /// Runs events until the queue is empty or `until` (time).
    fn drain(&mut self, until: i64) {
        while let Some(entry) = self.queue.first_entry() {
            let (time, _) = *entry.key();
            if time > until {
                break;
            }
            let ev = entry.remove();
            self.now = self.now.max(time);
            self.report.events += 1;
            if self.report.events > MAX_EVENTS {
                self.violation(format!("the run passed {MAX_EVENTS} events"));
                self.queue.clear();
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.handle(ev);
            }));
            if let Err(panic) = result {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                self.violation(format!("panic: {text}"));
                self.queue.clear();
                return;
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                from,
                to,
                incarnation,
                msg,
            } => {
                let node = &self.nodes[to];
                if !node.up || node.incarnation != incarnation {
                    return;
                }
                match msg {
                    Msg::Heads { heads, clock_ms } => self.on_heads(to, from, heads, clock_ms),
                    Msg::Entries { entries, forks } => self.on_entries(to, entries, forks),
                }
            }
            Ev::Tick { node, incarnation } => {
                let n = &self.nodes[node];
                if n.up && n.incarnation == incarnation && n.tick_at == Some(self.now) {
                    self.tick(node);
                }
            }
            Ev::Sync { node, incarnation } => {
                let n = &mut self.nodes[node];
                if !n.up || n.incarnation != incarnation || n.rounds_left == 0 {
                    return;
                }
                n.rounds_left -= 1;
                self.sync(node);
                self.at(self.now + SYNC_MS, Ev::Sync { node, incarnation });
            }
            Ev::Act => self.act(),
            Ev::Hostile => self.hostile_act(),
            Ev::Crash(node) => self.crash(node),
            Ev::Restart(node) => self.restart(node),
            Ev::Split(sides) => {
                self.log(|| format!("partition {sides:?}"));
                self.split = Some(sides);
            }
            Ev::Heal => {
                self.log(|| "partition healed".into());
                self.split = None;
            }
        }
    }

    // ---- network -------------------------------------------------------------

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if from == to || !self.nodes[from].up {
            return;
        }
        if self.hostile_silenced && !self.honest(from) {
            return;
        }
        if let Some(sides) = &self.split
            && sides[from] != sides[to]
        {
            return;
        }
        if self.faults_on && self.cfg.loss > 0 && self.net.chance(self.cfg.loss) {
            return;
        }
        let delay = self.cfg.delay_min as i64 + self.net.exp(self.cfg.delay_mean);
        let last = self.link_last.get(&(from, to)).copied().unwrap_or(0);
        let at = (self.now + delay).max(last);
        self.link_last.insert((from, to), at);
        let incarnation = self.nodes[to].incarnation;
        self.report.trace_hash =
            hash_mix(self.report.trace_hash, at as u64 ^ (from * 31 + to) as u64);
        self.at(
            at,
            Ev::Deliver {
                from,
                to,
                incarnation,
                msg,
            },
        );
    }

    fn heads_of(state: &State) -> Vec<(PublicId, u64, Option<EntryId>)> {
        state.heads().map(|(a, h)| (a, h.seq, Some(h.id))).collect()
    }

    fn sync(&mut self, node: usize) {
        let mut heads = Self::heads_of(&self.nodes[node].state);
        let mut clock_ms = self.clock(node);
        if let Some(h) = &self.cfg.hostile
            && h.org == self.nodes[node].org
        {
            if h.inflate_heads {
                // Claims of every log, honest ones included, far past what any holds.
                heads = self
                    .orgs
                    .iter()
                    .map(|o| (o.identity.public_id(), 1_000_000, None))
                    .collect();
                self.report.probes.insert("inflated heads sent");
            }
            if h.fast_clock {
                clock_ms += 600_000;
            }
        }
        for peer in 0..self.nodes.len() {
            self.send(
                node,
                peer,
                Msg::Heads {
                    heads: heads.clone(),
                    clock_ms,
                },
            );
        }
    }

    fn on_heads(
        &mut self,
        node: usize,
        from: usize,
        heads: Vec<(PublicId, u64, Option<EntryId>)>,
        clock_ms: i64,
    ) {
        let offset = clock_ms - self.clock(node);
        let now = self.now;
        let home = vec![self.nodes[node].identity.public_id()];
        let n = &mut self.nodes[node];
        n.clocks.insert(from, (offset, now));
        n.claims.note(
            &format!("node{from}"),
            &home,
            heads.iter().map(|(a, s, _)| (a, *s)),
            &n.state,
            now,
        );
        let theirs: BTreeMap<PublicId, (u64, Option<EntryId>)> =
            heads.into_iter().map(|(a, s, id)| (a, (s, id))).collect();
        let mut entries = Vec::new();
        for (author, _) in n.state.heads() {
            let first = first_to_send(&n.state, &author, theirs.get(&author));
            for ((_, _), entry) in n.store.entries.range((author, first)..=(author, u64::MAX)) {
                if entries.len() >= ANSWER_CAP {
                    break;
                }
                entries.push(entry.to_bytes());
            }
        }
        let forks: Vec<ForkProof> = n.store.forks.values().cloned().collect();
        if !entries.is_empty() || !forks.is_empty() {
            self.send(node, from, Msg::Entries { entries, forks });
        }
    }

    /// Decodes and verifies a peer's entries (each signature checked once per run)
    /// and queues them for the writer.
    fn on_entries(&mut self, node: usize, entries: Vec<Vec<u8>>, forks: Vec<ForkProof>) {
        let max = self.charter.rules().max_entry_bytes as usize;
        let mut decoded = Vec::new();
        for bytes in entries {
            let Ok(entry) = entry::decode_bytes(&bytes, max) else {
                continue;
            };
            if !self.verified.contains(&bytes) {
                if entry.verify_signature().is_err() {
                    continue;
                }
                self.verified.insert(bytes);
            }
            decoded.push(entry);
        }
        let mut proofs = Vec::new();
        for proof in forks {
            if let Ok(p) = ForkProof::verify(&self.charter, &proof.first, &proof.second) {
                proofs.push(p);
            }
        }
        if !decoded.is_empty() {
            let checked = SignatureChecked::verified_earlier_in_this_store();
            self.enqueue(
                node,
                Request::Ingest {
                    entries: decoded,
                    checked,
                },
                Origin::Peer,
            );
        }
        if !proofs.is_empty() {
            self.enqueue(node, Request::Forks(proofs), Origin::Peer);
        }
    }

    // ---- the writer ------------------------------------------------------------

    fn enqueue(&mut self, node: usize, request: Request, origin: Origin) {
        let from_peer = matches!(origin, Origin::Peer);
        let linger = if self.cfg.long_linger {
            LINGER_MS * 25
        } else {
            LINGER_MS
        };
        let at = if from_peer {
            self.now + linger
        } else {
            self.now
        };
        let n = &mut self.nodes[node];
        n.inbox.push((request, origin));
        if n.tick_at.is_none_or(|t| t > at) {
            n.tick_at = Some(at);
            let incarnation = n.incarnation;
            self.at(at, Ev::Tick { node, incarnation });
        }
    }

    fn tick(&mut self, node: usize) {
        let now = self.clock(node);
        let n = &mut self.nodes[node];
        n.tick_at = None;
        let take = n.inbox.len().min(MAX_BATCH);
        let jobs: Vec<(Request, Origin)> = n.inbox.drain(..take).collect();
        if !n.inbox.is_empty() {
            n.tick_at = Some(self.now);
            let incarnation = n.incarnation;
            self.at(self.now, Ev::Tick { node, incarnation });
        }
        let n = &mut self.nodes[node];
        if let Some(reason) = &n.failed {
            let reason = reason.clone();
            for (_, origin) in jobs {
                self.answered(origin, Err(reason.clone()));
            }
            return;
        }
        let (requests, origins): (Vec<Request>, Vec<Origin>) = jobs.into_iter().unzip();
        let mut identities = [n.identity.clone()];
        let store = &n.store;
        let plan = batch::plan(&n.state, &mut identities, requests, now, |a, s| {
            Ok::<_, String>(store.entries.get(&(*a, s)).map(|e| e.to_bytes()))
        });
        n.identity = identities[0].clone();
        // A crash before the batch is durable loses it; nobody was answered.
        if self.cfg.crashes && self.faults_on && plan.writes() && self.faults.chance(1) {
            self.report.probes.insert("crash inside a writer batch");
            self.crash(node);
            return;
        }
        let n = &mut self.nodes[node];
        for entry in &plan.accepted {
            n.store
                .entries
                .insert((entry.author(), entry.seq()), entry.clone());
        }
        for proof in &plan.forks {
            n.store.forks.insert(proof.author, proof.clone());
        }
        if plan.writes() {
            let (mut state, rebuild) = batch::apply(n.state.clone(), &plan);
            if rebuild {
                match batch::rebuild(
                    self.charter.clone(),
                    n.store.forks.values().cloned(),
                    n.store.entries.values(),
                ) {
                    Ok(rebuilt) => state = rebuilt,
                    Err(e) => {
                        n.failed = Some(e.clone());
                        if self.honest(node) {
                            self.violation(format!(
                                "node {node} turned read-only: cannot rebuild the state after a fork: {e}"
                            ));
                        }
                    }
                }
            }
            self.nodes[node].state = state;
            self.report.entries += plan.accepted.len() as u64;
        }
        let honest = self.honest(node);
        for (origin, outcome) in origins.into_iter().zip(plan.outcomes) {
            match outcome {
                Outcome::One(result) => {
                    if let Ok(ack) = &result
                        && honest
                        && matches!(origin, Origin::Client { .. })
                    {
                        let old = self.signed.insert((ack.author, ack.seq), ack.id);
                        if old.is_some_and(|old| old != ack.id) {
                            self.violation(format!(
                                "honest {} signed two entries at seq {}",
                                ack.author, ack.seq
                            ));
                        }
                    }
                    self.answered(origin, result.map(|_| ()).map_err(|e| e.to_string()));
                }
                Outcome::Many(report) => {
                    for (author, seq, e) in &report.refused {
                        if let EntryError::Fork { .. } = e
                            && honest
                        {
                            self.forked.insert(*author);
                            self.log(|| format!("node {node} refused {author}/{seq} as a fork"));
                        }
                    }
                }
            }
        }
        if !plan.accepted.is_empty() && honest {
            let first: Vec<Vec<u8>> = plan
                .accepted
                .iter()
                .zip(&plan.first_here)
                .filter(|(_, first)| **first)
                .map(|(e, _)| e.to_bytes())
                .collect();
            if !first.is_empty() || !plan.forks.is_empty() {
                for peer in 0..self.nodes.len() {
                    self.send(
                        node,
                        peer,
                        Msg::Entries {
                            entries: first.clone(),
                            forks: plan.forks.clone(),
                        },
                    );
                }
            }
        }
        if honest {
            self.watch_fates(node);
            self.follow_recovery(node);
        }
    }

    fn answered(&mut self, origin: Origin, result: Result<(), String>) {
        if let Origin::Client { org, liveness } = origin {
            match &result {
                Ok(()) => self.report.published += 1,
                Err(_) => self.report.refused += 1,
            }
            if liveness {
                self.liveness.insert(org, result.err());
            }
        }
    }

    /// A fate an honest node showed as final must never change on any honest node.
    fn watch_fates(&mut self, node: usize) {
        let fates: Vec<(EntryId, Option<&'static str>)> = self.nodes[node]
            .state
            .roster()
            .proposals()
            .map(|p| {
                (
                    p.id,
                    (p.status != ProposalStatus::Open).then(|| p.status.as_str()),
                )
            })
            .collect();
        let now = self.now - EPOCH_MS;
        for (id, fate) in fates {
            let Some(fate) = fate else {
                if let Some(fate) = self.shown.get(&(node, id)).copied() {
                    self.violation(format!(
                        "proposal {id} was {fate} on node {node} and is open again there (t={now})"
                    ));
                }
                continue;
            };
            match self.fates.get(&id).copied() {
                None => {
                    self.fates.insert(id, (fate, node, self.now));
                }
                Some((first, by, at)) if first != fate => {
                    self.violation(format!(
                        "proposal {id} was {first} on node {by} (t={}) and is {fate} on node {node} (t={now})",
                        at - EPOCH_MS
                    ));
                }
                Some(_) => {}
            }
            self.shown.insert((node, id), fate);
        }
    }

    /// After a recovery of its organisation passes, a node signs with the new key.
    fn follow_recovery(&mut self, node: usize) {
        let org = self.nodes[node].org;
        let Some(next) = self.orgs[org].next_key.clone() else {
            return;
        };
        let current = self.nodes[node].identity.public_id();
        if current == next.public_id() {
            return;
        }
        let moved = self.nodes[node]
            .state
            .roster()
            .owner(&current)
            .is_some_and(|o| o.log() == next.public_id());
        if moved {
            self.log(|| format!("node {node} follows its recovery to a new key"));
            self.nodes[node].identity = next.clone();
            self.orgs[org].identity = next;
            self.report.probes.insert("recovery followed");
        }
    }

    fn crash(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if !n.up {
            return;
        }
        self.log(|| format!("node {node} crashes"));
        let n = &mut self.nodes[node];
        n.up = false;
        n.incarnation += 1;
        n.inbox.clear();
        n.tick_at = None;
        n.clocks.clear();
        n.claims = HomeClaims::default();
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].up {
            return;
        }
        self.log(|| format!("node {node} restarts"));
        let n = &mut self.nodes[node];
        n.up = true;
        n.incarnation += 1;
        n.failed = None;
        match batch::rebuild(
            self.charter.clone(),
            n.store.forks.values().cloned(),
            n.store.entries.values(),
        ) {
            Ok(state) => n.state = state,
            Err(e) => {
                n.up = false;
                if self.honest(node) {
                    self.violation(format!("node {node} cannot start: {e}"));
                }
                return;
            }
        }
        let n = &mut self.nodes[node];
        n.rounds_left = n.rounds_left.max(3);
        let incarnation = n.incarnation;
        self.at(self.now, Ev::Sync { node, incarnation });
    }

    // ---- honest workload -------------------------------------------------------

    /// The checks a node's Publish makes before the writer (service.rs).
    fn gate(&mut self, node: usize) -> Result<(), String> {
        let skew = i64::from(self.charter.rules().max_clock_skew_secs) * 1000;
        let now = self.now;
        let n = &mut self.nodes[node];
        if let Some(reason) = &n.failed {
            return Err(format!("read-only: {reason}"));
        }
        let readings: Vec<i64> = n
            .clocks
            .values()
            .filter(|(_, at)| now - at < CLOCK_TTL_MS)
            .map(|(o, _)| *o)
            .collect();
        let peers = readings.len();
        if let Some(problem) = ClockCheck::judge(readings, skew / 2).and_then(|c| c.problem()) {
            let own_off = n.offset_ms.abs();
            if own_off <= skew / 2 && peers < 3 {
                self.violation(format!(
                    "node {node}, its clock {own_off} ms from true, refused to publish on \
                     the word of {peers} peer(s): {problem}"
                ));
            }
            return Err(problem);
        }
        let author = n.identity.public_id();
        if let Some(f) = n.state.frozen().find(|f| f.author == author) {
            return Err(format!("frozen from seq {}", f.seq));
        }
        if let Some((theirs, peer, ours)) = n.claims.behind(&author, &n.state, now) {
            return Err(format!(
                "behind its own log: {peer} claims {theirs}, holds {ours}"
            ));
        }
        Ok(())
    }

    fn publish(&mut self, org: usize, kind: i32, body: Vec<u8>, liveness: bool) {
        let node = org;
        if !self.nodes[node].up {
            return;
        }
        if let Err(e) = self.gate(node) {
            self.log(|| format!("org {org} cannot publish: {e}"));
            self.report.refused += 1;
            if liveness {
                self.liveness.insert(org, Some(e));
            }
            return;
        }
        self.enqueue(
            node,
            Request::Publish {
                identity: 0,
                kind,
                body,
            },
            Origin::Client { org, liveness },
        );
    }

    fn act(&mut self) {
        let honest: Vec<usize> = (0..self.orgs.len())
            .filter(|o| self.orgs[*o].honest && self.nodes[*o].up)
            .collect();
        let Some(&org) = self.work.pick(&honest) else {
            return;
        };
        let roll = self.work.range(0, 99);
        if roll < self.cfg.governance {
            self.governance(org);
        } else if roll < self.cfg.governance + 10 && self.cfg.admissions {
            self.newcomer_publishes(org);
        } else {
            let (kind, body) = self.ordinary_body(org);
            self.publish(org, kind, body, false);
        }
    }

    fn ordinary_body(&mut self, org: usize) -> (i32, Vec<u8>) {
        use pb::publish_request::Body as B;
        let n = self.work.range(0, 999);
        let body = match self.work.range(0, 2) {
            0 => B::Statement(pb::Statement {
                title: format!("Statement {org}-{n}"),
                text: "text".into(),
                cosigners: vec![],
            }),
            1 => {
                let day = self.work.range(10, 28);
                B::Event(pb::Event {
                    uid: format!("event-{org}-{}", n % 3),
                    title: format!("Event {n}"),
                    description: String::new(),
                    start: format!("2027-06-{day}T10:00"),
                    end: format!("2027-06-{day}T12:00"),
                    time_zone: String::new(),
                    venue: "Hall".into(),
                    area: String::new(),
                    organisers: vec![],
                    visibility: pb::Visibility::Public as i32,
                    cancelled: false,
                    all_day: false,
                })
            }
            _ => B::Intention(pb::Intention {
                ballot: "local.leeds.headingley-hyde-park.2027-05-06".into(),
                status: pb::IntentionStatus::Intends as i32,
                candidate: String::new(),
                visibility: pb::Visibility::Public as i32,
                area: String::new(),
                note: String::new(),
            }),
        };
        let (kind, bytes) = accord_core::body::encode(&body);
        (kind as i32, bytes)
    }

    fn governance(&mut self, org: usize) {
        let node = org;
        let me = self.nodes[node].identity.public_id();
        let state = &self.nodes[node].state;
        let roster = state.roster();
        let Some(my_org) = roster.owner(&me).map(|o| o.key) else {
            return;
        };
        // Vote on an open proposal first.
        let open: Vec<EntryId> = roster
            .proposals()
            .filter(|p| {
                p.status == ProposalStatus::Open
                    && p.electorate.contains(&my_org)
                    && !p.approvals.contains(&my_org)
                    && !p.objections.contains(&my_org)
            })
            .map(|p| p.id)
            .collect();
        if let Some(&id) = self.work.pick(&open) {
            if self.work.chance(85) {
                let body = pb::Approval {
                    proposal: id.to_vec(),
                };
                self.publish(
                    org,
                    pb::EntryKind::Approval as i32,
                    body.encode_to_vec(),
                    false,
                );
            } else {
                let body = pb::Objection {
                    proposal: id.to_vec(),
                    reason: "no".into(),
                };
                self.publish(
                    org,
                    pb::EntryKind::Objection as i32,
                    body.encode_to_vec(),
                    false,
                );
            }
            return;
        }
        let version = roster.version;
        let mut changes = Vec::new();
        if self.cfg.admissions {
            let next = self
                .newcomers
                .iter()
                .find(|k| roster.organisation(&k.public_id()).is_none())
                .cloned();
            if let Some(k) = next {
                changes.push(pb::proposal::Change::Admit(pb::Admit {
                    name: format!("Newcomer {}", &k.public_id().to_string()[..6]),
                    key: k.public_id().to_vec(),
                    role: pb::Role::Member as i32,
                    ..Default::default()
                }));
            }
        }
        if self.cfg.remove_hostile
            && let Some(h) = self.hostile_org()
        {
            let key = self.orgs[h].identity.public_id();
            if roster.organisation(&key).is_some_and(|o| o.is_active()) {
                let up_to_seq = state.head(&key).map_or(0, |h| h.seq);
                changes.push(pb::proposal::Change::Remove(pb::Remove {
                    organisation: key.to_vec(),
                    up_to_seq,
                }));
            }
        }
        if self.cfg.recoveries {
            let candidates: Vec<usize> = (1..self.orgs.len())
                .filter(|o| *o != org && self.orgs[*o].honest && self.orgs[*o].next_key.is_none())
                .collect();
            if let Some(&target) = self.work.pick(&candidates) {
                let key = self.orgs[target].identity.public_id();
                if let Some(o) = roster.organisation(&key).filter(|o| o.is_active()) {
                    let log = o.log();
                    let up_to_seq = state.head(&log).map_or(0, |h| h.seq);
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&self.work.u64().to_le_bytes());
                    seed[8] = target as u8;
                    let new = Identity::from_seed(seed);
                    changes.push(pb::proposal::Change::Recover(pb::Recover {
                        organisation: o.key.to_vec(),
                        key: new.public_id().to_vec(),
                        up_to_seq,
                    }));
                    self.orgs[target].next_key = Some(new);
                }
            }
        }
        let Some(change) = self.work.pick(&changes).cloned() else {
            return;
        };
        let body = pb::Proposal {
            roster_version: version,
            change: Some(change),
            rationale: String::new(),
        };
        self.publish(
            org,
            pb::EntryKind::Proposal as i32,
            body.encode_to_vec(),
            false,
        );
    }

    /// An admitted newcomer (which has no node) submits a statement to a node.
    fn newcomer_publishes(&mut self, node: usize) {
        let state = &self.nodes[node].state;
        let admitted: Vec<Identity> = self
            .newcomers
            .iter()
            .filter(|k| {
                state
                    .roster()
                    .organisation(&k.public_id())
                    .is_some_and(|o| o.is_active())
            })
            .cloned()
            .collect();
        let Some(k) = self.work.pick(&admitted).cloned() else {
            return;
        };
        let head = state.head(&k.public_id());
        let seen = state.seen_since(&k.public_id());
        let (kind, body) = self.ordinary_body(node);
        let signed = entry::sign_seeing(
            &k,
            self.charter.id(),
            head.as_ref(),
            self.clock(node),
            kind,
            body,
            &seen,
        );
        let max = self.charter.rules().max_entry_bytes as usize;
        if let Ok((decoded, checked)) = entry::sign_decoded(signed, max) {
            self.report.probes.insert("newcomer published");
            self.enqueue(
                node,
                Request::Submit {
                    entry: Box::new(decoded),
                    checked,
                },
                Origin::Other,
            );
        }
    }

    // ---- the hostile member ----------------------------------------------------

    /// Signs an entry of the hostile's log at `seq` after `prev` with any time and
    /// `seen`.
    fn forge(
        &self,
        who: &Identity,
        seq: u64,
        prev: Option<EntryId>,
        timestamp_ms: i64,
        (kind, body): (i32, Vec<u8>),
        seen: &[(PublicId, u64)],
    ) -> Vec<u8> {
        let entry = pb::Entry {
            signer: Vec::new(),
            seen: Some(entry::causal(seen)),
            alliance: self.charter.id().to_vec(),
            author: who.public_id().to_vec(),
            seq,
            prev: prev.map(|p| p.to_vec()).unwrap_or_default(),
            timestamp_ms,
            kind,
            body,
        };
        entry::sign_entry(who, &entry).encode_to_vec()
    }

    fn honest_up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|n| self.honest(*n) && self.nodes[*n].up)
            .collect()
    }

    fn statement(title: String) -> (i32, Vec<u8>) {
        let body = pb::Statement {
            title,
            text: "text".into(),
            cosigners: vec![],
        };
        (pb::EntryKind::Statement as i32, body.encode_to_vec())
    }

    fn hostile_act(&mut self) {
        let Some(h) = self.cfg.hostile.clone() else {
            return;
        };
        if self.hostile_silenced || !self.nodes[h.org].up {
            return;
        }
        let me = self.orgs[h.org].identity.clone();
        let author = me.public_id();
        let state = self.nodes[h.org].state.clone();
        let head = state.head(&author);
        let (seq, prev, last_ts) = head.map_or((1, None, EPOCH_MS - DAY_MS), |h| {
            (h.seq + 1, Some(h.id), h.timestamp_ms)
        });
        let targets = self.honest_up();
        if targets.is_empty() {
            return;
        }
        // What it can do now: inflated heads and a fast clock act in its syncs, and
        // a fork at its governance needs a proposal of its own first.
        let menu: Vec<&'static str> = std::iter::once("plain")
            .chain(h.acts().flat_map(|act| match act {
                "inflate-heads" | "fast-clock" => vec![],
                "fork-governance" => vec![act, "propose-admission"],
                _ => vec![act],
            }))
            .collect();
        let act = *self.hostile_rng.pick(&menu).expect("not empty");
        self.log(|| format!("hostile {}: {act}", h.org));
        // Its own entries stay stamped low, so that any later backdating is allowed.
        let ts = last_ts.max(EPOCH_MS - DAY_MS) + 1;
        let seen = state.seen_since(&author);
        match act {
            "plain" | "flood" => {
                let count = if act == "flood" { 40 } else { 1 };
                let mut entries = Vec::new();
                let (mut s, mut p) = (seq, prev);
                for i in 0..count {
                    let (kind, body) = if act == "flood" {
                        let node = pb::NodeAnnouncement {
                            address: format!("h{i}.example:7443"),
                            cert_sha256: vec![i as u8; 32],
                        };
                        (pb::EntryKind::NodeAnnouncement as i32, node.encode_to_vec())
                    } else {
                        Self::statement(format!("hostile {s}"))
                    };
                    let bytes = self.forge(
                        &me,
                        s,
                        p,
                        ts,
                        (kind, body),
                        if i == 0 { &seen } else { &[] },
                    );
                    let Ok(d) = entry::decode_bytes(&bytes, 1 << 20) else {
                        return;
                    };
                    p = Some(d.id());
                    s += 1;
                    entries.push(bytes);
                }
                // Its own node too, so its log goes on from there.
                for node in targets.iter().copied().chain([h.org]) {
                    self.send_direct(h.org, node, entries.clone());
                }
                if act == "flood" {
                    self.report.probes.insert("announcement flood");
                }
            }
            "fork-split" | "fork-one-batch" => {
                let (k1, b1) = Self::statement(format!("side A {seq}"));
                let (k2, b2) = Self::statement(format!("side B {seq}"));
                let a = self.forge(&me, seq, prev, ts, (k1, b1), &seen);
                let b = self.forge(&me, seq, prev, ts, (k2, b2), &seen);
                if act == "fork-one-batch" {
                    let target = targets[self.hostile_rng.index(targets.len())];
                    self.send_direct(h.org, target, vec![a, b]);
                    self.report.probes.insert("fork sides in one batch");
                } else {
                    for (i, node) in targets.iter().enumerate() {
                        let side = if i % 2 == 0 { a.clone() } else { b.clone() };
                        self.send_direct(h.org, *node, vec![side]);
                    }
                    self.report.probes.insert("fork sides to two halves");
                }
            }
            "propose-admission" => {
                // Admitting a newcomer, as any member may propose: the honest members
                // approve, the newcomer publishes, and then the proposal is forked.
                let Some(k) = self
                    .newcomers
                    .iter()
                    .find(|k| state.roster().organisation(&k.public_id()).is_none())
                    .cloned()
                else {
                    return;
                };
                let body = pb::Proposal {
                    roster_version: state.roster().version,
                    change: Some(pb::proposal::Change::Admit(pb::Admit {
                        name: format!("Newcomer {}", &k.public_id().to_string()[..6]),
                        key: k.public_id().to_vec(),
                        role: pb::Role::Member as i32,
                        ..Default::default()
                    })),
                    rationale: String::new(),
                };
                let now = self.clock(h.org);
                let bytes = self.forge(
                    &me,
                    seq,
                    prev,
                    now.max(last_ts),
                    (pb::EntryKind::Proposal as i32, body.encode_to_vec()),
                    &seen,
                );
                for node in targets.iter().copied().chain([h.org]) {
                    self.send_direct(h.org, node, vec![bytes.clone()]);
                }
                self.report.probes.insert("hostile proposed an admission");
            }
            "fork-governance" => {
                // A second entry at the seq of its last proposal.
                let Some(at) = (1..seq).rev().find(|s| {
                    self.nodes[h.org]
                        .store
                        .entries
                        .get(&(author, *s))
                        .is_some_and(|e| {
                            e.body().is_ok_and(|b| {
                                matches!(
                                    b.governance(),
                                    Some(accord_core::roster::Action::Propose(_))
                                )
                            })
                        })
                }) else {
                    return;
                };
                let before = at.checked_sub(1).filter(|s| *s > 0);
                let prev = before.and_then(|s| state.id_at(&author, s));
                let ts = before
                    .and_then(|s| self.nodes[h.org].store.entries.get(&(author, s)))
                    .map_or(EPOCH_MS - DAY_MS, |e| e.timestamp_ms());
                let (k, b) = Self::statement(format!("rewritten {at}"));
                let bytes = self.forge(&me, at, prev, ts, (k, b), &[]);
                let target = targets[self.hostile_rng.index(targets.len())];
                self.send_direct(h.org, target, vec![bytes]);
                self.report.probes.insert("fork at a governance entry");
            }
            "backdate" | "votes-after-removal" => {
                let roster = state.roster();
                let removed_at = roster.organisation(&author).and_then(|o| match o.status {
                    OrgStatus::Removed { at_ms, .. } => Some(at_ms),
                    _ => None,
                });
                if act == "votes-after-removal" && removed_at.is_none() {
                    return;
                }
                let mut votes = Vec::new();
                let mut stamp = ts;
                let mut s = seq;
                let mut p = prev;
                for prop in roster.proposals() {
                    if prop.approvals.contains(&author) || prop.objections.contains(&author) {
                        continue;
                    }
                    let deadline = match (act, &prop.status) {
                        ("votes-after-removal", _) => removed_at.expect("checked") - 1,
                        (_, ProposalStatus::Lapsed { at_ms }) => at_ms - 1,
                        (_, ProposalStatus::Open) => prop.lapses_ms - 1,
                        (_, ProposalStatus::Passed { at_ms, .. }) => at_ms - 1,
                        _ => continue,
                    };
                    if deadline < stamp {
                        continue;
                    }
                    stamp = deadline;
                    let (kind, body) = if matches!(prop.status, ProposalStatus::Passed { .. }) {
                        let o = pb::Objection {
                            proposal: prop.id.to_vec(),
                            reason: "backdated".into(),
                        };
                        (pb::EntryKind::Objection as i32, o.encode_to_vec())
                    } else {
                        let a = pb::Approval {
                            proposal: prop.id.to_vec(),
                        };
                        (pb::EntryKind::Approval as i32, a.encode_to_vec())
                    };
                    let bytes = self.forge(&me, s, p, stamp, (kind, body), &[]);
                    let Ok(d) = entry::decode_bytes(&bytes, 1 << 20) else {
                        continue;
                    };
                    p = Some(d.id());
                    s += 1;
                    votes.push(bytes);
                }
                if votes.is_empty() {
                    return;
                }
                self.report.probes.insert(if act == "backdate" {
                    "backdated votes sent"
                } else {
                    "votes after removal sent"
                });
                // To one node on its side of any partition, and to its own.
                let side = self.split.as_ref().map(|s| s[h.org]);
                let near: Vec<usize> = targets
                    .iter()
                    .copied()
                    .filter(|n| {
                        side.is_none_or(|side| self.split.as_ref().expect("split")[*n] == side)
                    })
                    .collect();
                if let Some(&target) = self.hostile_rng.pick(&near) {
                    self.send_direct(h.org, target, votes.clone());
                }
                self.send_direct(h.org, h.org, votes);
            }
            "seen-lies" => {
                let lie: Vec<(PublicId, u64)> = if self.hostile_rng.chance(50) {
                    self.orgs
                        .iter()
                        .map(|o| (o.identity.public_id(), 1_000_000))
                        .filter(|(k, _)| *k != author)
                        .collect()
                } else {
                    Vec::new()
                };
                let (k, b) = Self::statement(format!("hostile seen {seq}"));
                let bytes = self.forge(&me, seq, prev, ts, (k, b), &lie);
                for node in targets.iter().copied().chain([h.org]) {
                    self.send_direct(h.org, node, vec![bytes.clone()]);
                }
                self.report.probes.insert("false seen sent");
            }
            "junk" => {
                let mut junk = vec![0xff; 40];
                junk[0] = self.hostile_rng.u64() as u8;
                let (k, b) = Self::statement("bad signature".into());
                let mut bad = self.forge(&me, seq, prev, ts, (k, b), &seen);
                let last = bad.len() - 1;
                bad[last] ^= 1;
                let target = targets[self.hostile_rng.index(targets.len())];
                self.send_direct(h.org, target, vec![junk, bad]);
                self.report.probes.insert("junk sent");
            }
            _ => {}
        }
    }

    /// A hostile node's message straight to `to` (its own node is fed directly).
    fn send_direct(&mut self, from: usize, to: usize, entries: Vec<Vec<u8>>) {
        let msg = Msg::Entries {
            entries,
            forks: Vec::new(),
        };
        if from == to {
            if let Msg::Entries { entries, forks } = msg {
                self.on_entries(to, entries, forks);
            }
        } else {
            self.send(from, to, msg);
        }
    }

    // ---- healing and the final checks -----------------------------------------

    fn heal_and_check(&mut self) {
        self.log(|| "healing".into());
        self.faults_on = false;
        self.split = None;
        self.hostile_silenced = true;
        let skew = i64::from(self.charter.rules().max_clock_skew_secs) * 1000;
        for node in 0..self.nodes.len() {
            if self.honest(node) {
                let off = self.nodes[node].offset_ms;
                self.nodes[node].offset_ms = off.clamp(-skew / 4, skew / 4);
                self.restart(node);
            }
            self.nodes[node].rounds_left = 12;
            let incarnation = self.nodes[node].incarnation;
            self.at(self.now + node as i64 * 7, Ev::Sync { node, incarnation });
        }
        if !self.report.violations.is_empty() {
            return;
        }
        // Let the sync settle, then each honest organisation publishes: it must be
        // acknowledged within a bounded time after healing.
        let settle = self.now + 3 * SYNC_MS;
        self.drain(settle);
        let honest: Vec<usize> = (0..self.orgs.len())
            .filter(|o| self.orgs[*o].honest)
            .collect();
        let mut pending: BTreeSet<usize> = honest
            .iter()
            .copied()
            .filter(|o| {
                let key = self.nodes[*o].identity.public_id();
                self.nodes[*o]
                    .state
                    .roster()
                    .owner(&key)
                    .is_some_and(|org| org.is_active())
            })
            .collect();
        for attempt in 0..12 {
            for org in pending.clone() {
                let (kind, body) = Self::statement(format!("after healing {org} {attempt}"));
                self.publish(org, kind, body, true);
            }
            let until = self.now + 5_000;
            self.drain(until);
            self.now = self.now.max(until);
            pending.retain(|org| !matches!(self.liveness.get(org), Some(None)));
            if pending.is_empty() {
                break;
            }
        }
        for org in pending {
            let why = self
                .liveness
                .get(&org)
                .cloned()
                .flatten()
                .unwrap_or_default();
            self.violation(format!(
                "organisation {org} could not publish within 60 s of healing: {why}"
            ));
        }
        // Quiescence: every queued message delivered, every sync round run.
        for node in 0..self.nodes.len() {
            self.nodes[node].rounds_left = 6;
            let incarnation = self.nodes[node].incarnation;
            self.at(self.now + node as i64, Ev::Sync { node, incarnation });
        }
        self.drain(i64::MAX);
        self.final_checks();
    }

    fn final_checks(&mut self) {
        let honest = self.honest_up();
        // Agreement.
        let digests: Vec<(usize, [u8; 32], [u8; 32])> = honest
            .iter()
            .map(|n| {
                let s = &self.nodes[*n].state;
                (*n, s.entries_digest(), s.digest())
            })
            .collect();
        if let Some(first) = digests.first() {
            for d in &digests[1..] {
                if d.1 != first.1 {
                    let diff = self.heads_diff(first.0, d.0);
                    self.violation(format!(
                        "nodes {} and {} hold different entries after healing: {diff}",
                        first.0, d.0
                    ));
                } else if d.2 != first.2 {
                    self.violation(format!(
                        "nodes {} and {} hold the same entries but show different states",
                        first.0, d.0
                    ));
                }
            }
        }
        for &n in &honest {
            // A rebuild from scratch equals the incremental state.
            let node = &self.nodes[n];
            match batch::rebuild(
                self.charter.clone(),
                node.store.forks.values().cloned(),
                node.store.entries.values(),
            ) {
                Ok(rebuilt) => {
                    if rebuilt.digest() != node.state.digest() {
                        let diff = differences(&rebuilt, &node.state);
                        self.violation(format!(
                            "node {n}: the state rebuilt from its store differs from its incremental state: {diff}"
                        ));
                    }
                }
                Err(e) => self.violation(format!("node {n} could not restart: {e}")),
            }
            // Every fork an honest node saw is proven on every honest node.
            for author in self.forked.clone() {
                if !self.nodes[n].state.forks().any(|f| f.author == author) {
                    self.violation(format!(
                        "an honest node refused an entry of {author} as a fork, but node {n} holds no proof"
                    ));
                }
            }
        }
        if let Some(&n) = honest.first() {
            self.permutations(n);
        }
    }

    fn heads_diff(&self, a: usize, b: usize) -> String {
        let of = |n: usize| -> BTreeMap<PublicId, (u64, Option<EntryId>)> {
            Self::heads_of(&self.nodes[n].state)
                .into_iter()
                .map(|(a, s, id)| (a, (s, id)))
                .collect()
        };
        let (ha, hb) = (of(a), of(b));
        let mut out = Vec::new();
        for k in ha.keys().chain(hb.keys()).collect::<BTreeSet<_>>() {
            if ha.get(k) != hb.get(k) {
                out.push(format!("{k}: {:?} vs {:?}", ha.get(k), hb.get(k)));
            }
        }
        let fa = self.nodes[a].store.forks.len();
        let fb = self.nodes[b].store.forks.len();
        format!("{} (fork proofs {fa} vs {fb})", out.join("; "))
    }

    /// The state of a node's final entries, applied one at a time in three seeded
    /// orders (each log in seq order, fork proofs anywhere), as a writer would
    /// apply them arriving: each equals the state of the set.
    fn permutations(&mut self, node: usize) {
        let n = &self.nodes[node];
        let expected = n.state.digest();
        let entries: Vec<VerifiedEntry> = n.store.entries.values().cloned().collect();
        let forks: Vec<ForkProof> = n.store.forks.values().cloned().collect();
        let mut rng = Rng::new(self.report.events, "permutations");
        for round in 0..3 {
            // An interleaving of the logs: repeatedly take the next entry of a random log.
            let mut logs: BTreeMap<PublicId, Vec<&VerifiedEntry>> = BTreeMap::new();
            for e in &entries {
                logs.entry(e.author()).or_default().push(e);
            }
            let mut cursors: Vec<(PublicId, usize)> = logs.keys().map(|k| (*k, 0)).collect();
            let mut order: Vec<Option<&VerifiedEntry>> = Vec::new();
            while !cursors.is_empty() {
                let i = rng.index(cursors.len());
                let (author, at) = cursors[i];
                order.push(Some(logs[&author][at]));
                if at + 1 == logs[&author].len() {
                    cursors.swap_remove(i);
                } else {
                    cursors[i].1 += 1;
                }
            }
            let mut proofs: Vec<(usize, &ForkProof)> = forks
                .iter()
                .map(|f| (rng.index(order.len() + 1), f))
                .collect();
            proofs.sort_by_key(|(at, _)| *at);
            let mut state = State::new(self.charter.clone());
            let mut applied: Vec<&VerifiedEntry> = Vec::new();
            let mut recorded: Vec<ForkProof> = Vec::new();
            let mut next_proof = 0;
            for (i, e) in order.iter().enumerate() {
                while next_proof < proofs.len() && proofs[next_proof].0 <= i {
                    let proof = proofs[next_proof].1.clone();
                    recorded.push(proof.clone());
                    if state.record_fork(proof) {
                        state = State::from_entries_and_forks(
                            self.charter.clone(),
                            recorded.clone(),
                            applied.iter().copied(),
                        );
                    }
                    next_proof += 1;
                }
                let e = e.expect("an entry");
                state.apply(e);
                applied.push(e);
                if state.views_stale() {
                    state = State::from_entries_and_forks(
                        self.charter.clone(),
                        recorded.clone(),
                        applied.iter().copied(),
                    );
                }
            }
            for (_, proof) in &proofs[next_proof..] {
                recorded.push((*proof).clone());
                if state.record_fork((*proof).clone()) {
                    state = State::from_entries_and_forks(
                        self.charter.clone(),
                        recorded.clone(),
                        applied.iter().copied(),
                    );
                }
            }
            if state.digest() != expected {
                self.violation(format!(
                    "node {node}'s entries applied in another order (round {round}) give another state"
                ));
                return;
            }
        }
    }
}

/// The first differences between two states' views, for a failure's message.
fn differences(a: &State, b: &State) -> String {
    let (a, b) = (a.derived(), b.derived());
    let mut out = Vec::new();
    let pairs = [
        ("heads", serde_json(&a.heads), serde_json(&b.heads)),
        ("forks", serde_json(&a.forks), serde_json(&b.forks)),
        (
            "intentions",
            serde_json(&a.intentions),
            serde_json(&b.intentions),
        ),
        (
            "statements",
            serde_json(&a.statements),
            serde_json(&b.statements),
        ),
        ("events", serde_json(&a.events), serde_json(&b.events)),
        (
            "set_aside",
            serde_json(&a.set_aside),
            serde_json(&b.set_aside),
        ),
        ("roster", serde_json(&a.roster), serde_json(&b.roster)),
    ];
    for (name, x, y) in pairs {
        if x != y {
            let at = x
                .bytes()
                .zip(y.bytes())
                .position(|(p, q)| p != q)
                .unwrap_or(0);
            let from = at.saturating_sub(120);
            out.push(format!(
                "{name} differ at byte {at}: …{}… vs …{}…",
                x.get(from..(at + 200).min(x.len())).unwrap_or(""),
                y.get(from..(at + 200).min(y.len())).unwrap_or("")
            ));
        }
    }
    out.join("; ")
}

fn serde_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
