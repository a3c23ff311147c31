//! Prometheus metrics, served as text at `/metrics` on the calendar's HTTP listener
//! (`prometheus-client`, OpenMetrics text). Every name starts `accord_`.
//!
//! Two kinds of figure:
//! - events, counted where they happen: publishes and their latency, group-commit
//!   sizes and flush times, signatures verified, bytes and entries from each peer,
//!   replication lag, storage failures, calendar requests by status;
//! - levels, read from the node's state when scraped (so they cannot drift from it):
//!   entries, heads, frozen logs, clashes by state, peers connected and behind.
//!
//! Labels hold only public names: an organisation's name and key (in the charter),
//! a peer's name (in node.toml), a route pattern, a status code. Never a token, a
//! member's feed link (its secret is in the path: routes are labelled by pattern,
//! `/m/{token}/…`), nor a peer's address.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_core::clash::ClashState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::ledger::Ledger;
use crate::replication::PeerStates;

/// A label set: pairs of a name and a value.
type Labels = Vec<(&'static str, String)>;

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric of one node. Cheap to share (`Arc`); the ledger owns one.
pub struct Metrics {
    registry: Registry,
    /// Held while the levels are refreshed and the text written, so two scrapes at
    /// once do not interleave their refreshes.
    scrape: Mutex<()>,
    peers: Mutex<Option<PeerStates>>,

    // Events.
    publishes: Family<Labels, Counter>,
    publish_seconds: Family<Labels, Histogram>,
    commit_entries: Histogram,
    commit_flush_seconds: Histogram,
    verified: Family<Labels, Counter>,
    peer_bytes: Family<Labels, Counter>,
    peer_received: Family<Labels, Counter>,
    peer_accepted: Family<Labels, Counter>,
    peer_refused: Family<Labels, Counter>,
    replication_lag: Histogram,
    storage_failures: Counter,
    calendar_requests: Family<Labels, Counter>,

    // Levels, refreshed at each scrape.
    entries: Gauge,
    heads: Family<Labels, Gauge>,
    frozen: Gauge,
    set_aside: Gauge,
    clashes: Family<Labels, Gauge>,
    event_clashes: Gauge,
    storage_failed: Gauge,
    lost_own: Gauge,
    peer_connected: Family<Labels, Gauge>,
    peer_behind: Family<Labels, Gauge>,
    peer_last_contact: Family<Labels, FloatGauge>,
    peer_blocked: Family<Labels, Gauge>,
    peers_connected: Gauge,
    peers_behind: Gauge,
    clock_offset: FloatGauge,
}

/// How one publish ended, as labelled.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Ok,
    Refused,
    Unavailable,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// Where verified signatures came from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// `Ledger.Submit`: entries signed elsewhere, sent by a client.
    Client,
    /// Replication from peers.
    Peer,
    /// The store, re-verified at start.
    Store,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Peer => "peer",
            Source::Store => "store",
        }
    }
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.25 ms to about 16 s.
    exponential_buckets(0.000_25, 2.0, 17)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("accord");
        let publishes = Family::<Labels, Counter>::default();
        registry.register(
            "publishes",
            "Entries clients asked this node to append (Publish, Submit), by call and result",
            publishes.clone(),
        );
        let publish_seconds =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(seconds_buckets()));
        registry.register_with_unit(
            "publish_duration",
            "Time from a Publish or Submit reaching the writer's queue to its durable answer",
            Unit::Seconds,
            publish_seconds.clone(),
        );
        let commit_entries = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "commit_batch_entries",
            "Entries written per group commit (one flush each)",
            commit_entries.clone(),
        );
        let commit_flush_seconds = Histogram::new(seconds_buckets());
        registry.register_with_unit(
            "commit_flush_duration",
            "Time to write and flush one group commit (and the record of signed heads)",
            Unit::Seconds,
            commit_flush_seconds.clone(),
        );
        let verified = Family::<Labels, Counter>::default();
        registry.register(
            "signatures_verified",
            "Entry signatures verified, by source (rate(): the verification rate)",
            verified.clone(),
        );
        let peer_bytes = Family::<Labels, Counter>::default();
        registry.register_with_unit(
            "peer_received",
            "Bytes of entries, fork proofs and notes received from each peer",
            Unit::Bytes,
            peer_bytes.clone(),
        );
        let peer_received = Family::<Labels, Counter>::default();
        registry.register(
            "peer_entries_received",
            "Entries received from each peer, copies of ones already held included",
            peer_received.clone(),
        );
        let peer_accepted = Family::<Labels, Counter>::default();
        registry.register(
            "peer_entries_accepted",
            "Entries received from each peer that were new here, stored",
            peer_accepted.clone(),
        );
        let peer_refused = Family::<Labels, Counter>::default();
        registry.register(
            "peer_entries_refused",
            "Entries and fork proofs from each peer that this node refused",
            peer_refused.clone(),
        );
        // 10 ms to about 3 days.
        let replication_lag = Histogram::new(exponential_buckets(0.01, 4.0, 13));
        registry.register_with_unit(
            "replication_lag",
            "For each entry stored from a peer: its arrival time here minus the time its author signed it",
            Unit::Seconds,
            replication_lag.clone(),
        );
        let storage_failures = Counter::default();
        registry.register(
            "storage_failures",
            "Writes or flushes of the store that failed (the node is then read-only)",
            storage_failures.clone(),
        );
        let calendar_requests = Family::<Labels, Counter>::default();
        registry.register(
            "calendar_requests",
            "Requests to the HTTP listener, by route pattern and status code",
            calendar_requests.clone(),
        );

        let entries = Gauge::default();
        registry.register("entries", "Entries held, every author", entries.clone());
        let heads = Family::<Labels, Gauge>::default();
        registry.register(
            "log_head_seq",
            "The seq of the last entry held of each author's log",
            heads.clone(),
        );
        let frozen = Gauge::default();
        registry.register(
            "frozen_logs",
            "Authors whose log is frozen by a fork proof and not recovered",
            frozen.clone(),
        );
        let set_aside = Gauge::default();
        registry.register(
            "set_aside_entries",
            "Entries held and relayed but left out of the views (unknown kind, body refused)",
            set_aside.clone(),
        );
        let clashes = Family::<Labels, Gauge>::default();
        registry.register("clashes", "Standing clashes, by state", clashes.clone());
        let event_clashes = Gauge::default();
        registry.register(
            "event_clashes",
            "Events that overlap in time at one venue or area",
            event_clashes.clone(),
        );
        let storage_failed = Gauge::default();
        registry.register(
            "storage_failed",
            "1 once the store has failed and the node is read-only until restarted",
            storage_failed.clone(),
        );
        let lost_own = Gauge::default();
        registry.register(
            "lost_own_entries",
            "Entries of home identities this node signed that its store lacks (publishing as them waits)",
            lost_own.clone(),
        );
        let peer_connected = Family::<Labels, Gauge>::default();
        registry.register(
            "peer_connected",
            "1 while a replication session with the peer is open",
            peer_connected.clone(),
        );
        let peer_behind = Family::<Labels, Gauge>::default();
        registry.register(
            "peer_behind_entries",
            "Entries the peer holds that this node lacks, at the last heads check",
            peer_behind.clone(),
        );
        let peer_last_contact = Family::<Labels, FloatGauge>::default();
        registry.register_with_unit(
            "peer_last_contact_timestamp",
            "Unix time of the last message from the peer (absent: never reached)",
            Unit::Seconds,
            peer_last_contact.clone(),
        );
        let peer_blocked = Family::<Labels, Gauge>::default();
        registry.register(
            "peer_blocked_authors",
            "Authors whose entries this node takes from the peer no more for now (refused or held)",
            peer_blocked.clone(),
        );
        let peers_connected = Gauge::default();
        registry.register(
            "peers_connected",
            "Peers with an open replication session",
            peers_connected.clone(),
        );
        let peers_behind = Gauge::default();
        registry.register(
            "peers_ahead",
            "Peers holding entries this node lacks (this node is behind them)",
            peers_behind.clone(),
        );
        let clock_offset = FloatGauge::default();
        registry.register_with_unit(
            "clock_offset",
            "This node's clock minus the median of its peers' (0 with no readings)",
            Unit::Seconds,
            clock_offset.clone(),
        );
        registry.register(
            "build",
            "The release running",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
        );

        Self {
            registry,
            scrape: Mutex::new(()),
            peers: Mutex::new(None),
            publishes,
            publish_seconds,
            commit_entries,
            commit_flush_seconds,
            verified,
            peer_bytes,
            peer_received,
            peer_accepted,
            peer_refused,
            replication_lag,
            storage_failures,
            calendar_requests,
            entries,
            heads,
            frozen,
            set_aside,
            clashes,
            event_clashes,
            storage_failed,
            lost_own,
            peer_connected,
            peer_behind,
            peer_last_contact,
            peer_blocked,
            peers_connected,
            peers_behind,
            clock_offset,
        }
    }

    /// Where the peers' figures are read from at each scrape.
    pub fn watch_peers(&self, peers: PeerStates) {
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = Some(peers);
    }

    /// One Publish (`call` "publish") or Submit ("submit") answered after `took`.
    pub fn publish(&self, call: &'static str, outcome: Outcome, took: Duration) {
        let labels = vec![("call", call.to_owned())];
        self.publish_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let mut labels = labels;
        labels.push(("result", outcome.as_str().to_owned()));
        self.publishes.get_or_create(&labels).inc();
    }

    /// One group commit of `entries` entries, written and flushed in `took`.
    pub fn commit(&self, entries: usize, took: Duration) {
        self.commit_entries.observe(entries as f64);
        self.commit_flush_seconds.observe(took.as_secs_f64());
    }

    pub fn verified(&self, source: Source, signatures: u64) {
        self.verified
            .get_or_create(&vec![("source", source.as_str().to_owned())])
            .inc_by(signatures);
    }

    /// A message of `bytes` from `peer`.
    pub fn peer_bytes(&self, peer: &str, bytes: u64) {
        self.peer_bytes
            .get_or_create(&peer_label(peer))
            .inc_by(bytes);
    }

    /// A batch from `peer`: entries received, accepted, refused.
    pub fn peer_batch(&self, peer: &str, received: u64, accepted: u64, refused: u64) {
        let labels = peer_label(peer);
        self.peer_received.get_or_create(&labels).inc_by(received);
        self.peer_accepted.get_or_create(&labels).inc_by(accepted);
        self.peer_refused.get_or_create(&labels).inc_by(refused);
    }

    /// An entry from a peer stored `lag` after its author signed it.
    pub fn replication_lag(&self, lag: Duration) {
        self.replication_lag.observe(lag.as_secs_f64());
    }

    pub fn storage_failure(&self) {
        self.storage_failures.inc();
    }

    /// A request to the HTTP listener: `route` is the matched pattern (never the
    /// path itself, which may hold a member's secret).
    pub fn calendar_request(&self, route: &str, status: u16) {
        self.calendar_requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// The metrics as Prometheus text, the levels refreshed from `ledger`.
    pub fn render(&self, ledger: &Ledger) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(ledger);
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String does not fail");
        text
    }

    fn refresh(&self, ledger: &Ledger) {
        // The state before the peers' lock, the order GetStatus takes them in.
        let state = ledger.state();
        self.entries.set(gauge_value(state.entry_count()));
        self.heads.clear();
        let charter = state.charter();
        for (author, head) in state.heads() {
            let name = charter.name_of(&author).unwrap_or("").to_owned();
            self.heads
                .get_or_create(&vec![("author", author.to_string()), ("name", name)])
                .set(gauge_value(head.seq));
        }
        self.frozen.set(gauge_value(state.frozen().count() as u64));
        self.set_aside.set(gauge_value(state.set_aside_count()));
        self.clashes.clear();
        for s in [
            ClashState::Open,
            ClashState::Potential,
            ClashState::Pending,
            ClashState::Resolved,
            ClashState::Breached,
        ] {
            self.clashes
                .get_or_create(&vec![("state", s.as_str().to_owned())])
                .set(0);
        }
        for clash in state.clashes() {
            self.clashes
                .get_or_create(&vec![("state", clash.state.as_str().to_owned())])
                .inc();
        }
        self.event_clashes
            .set(gauge_value(state.event_clashes().len() as u64));
        self.storage_failed
            .set(i64::from(ledger.storage_failure().is_some()));
        let lost: u64 = ledger
            .lost_own_entries(&state)
            .iter()
            .map(|l| l.signed.saturating_sub(l.stored))
            .sum();
        self.lost_own.set(gauge_value(lost));
        self.clock_offset.set(
            ledger
                .clock_check(i64::MAX)
                .map_or(0.0, |c| c.offset_ms.saturating_neg() as f64 / 1000.0),
        );
        drop(state);

        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.peer_connected.clear();
        self.peer_behind.clear();
        self.peer_last_contact.clear();
        self.peer_blocked.clear();
        let (mut connected, mut ahead) = (0, 0);
        if let Some(peers) = peers {
            let peers = peers.lock().unwrap_or_else(|p| p.into_inner());
            for status in peers.values() {
                let labels = peer_label(&status.name);
                self.peer_connected
                    .get_or_create(&labels)
                    .set(i64::from(status.connected));
                self.peer_behind
                    .get_or_create(&labels)
                    .set(gauge_value(status.behind));
                self.peer_blocked
                    .get_or_create(&labels)
                    .set(gauge_value(status.blocked.len() as u64));
                if let Some(ms) = status.last_contact_ms {
                    self.peer_last_contact
                        .get_or_create(&labels)
                        .set(ms as f64 / 1000.0);
                }
                connected += i64::from(status.connected);
                ahead += i64::from(status.behind > 0);
            }
        }
        self.peers_connected.set(connected);
        self.peers_behind.set(ahead);
    }
}

fn peer_label(peer: &str) -> Labels {
    vec![("peer", peer.to_owned())]
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Shared by the ledger's handles.
pub type SharedMetrics = Arc<Metrics>;
