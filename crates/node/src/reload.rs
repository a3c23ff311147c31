//! What a running node takes from its config again when told to (SIGHUP): its
//! `[[peers]]` and `[[operators]]`. New peers are pinned and pulled from at once, a
//! removed peer's pulls stop and its certificate is unpinned (its open connections
//! may pull nothing more: every federation call checks the pins), a changed peer
//! (address or certificate) is restarted; operators' tokens are replaced whole.
//! Everything else in the file (addresses, data, charter, keys, TLS identity,
//! calendar, limits) needs a restart: a reload that changes any of it applies the
//! peers and operators and logs which other settings wait for a restart.
//!
//! The peers pulled from and pinned are the config's `[[peers]]` and the nodes of
//! the roster's active organisations ([`effective`]): when a new state changes the
//! roster's nodes, the same [`PeerSet::set`] applies them, without a restart.

use std::collections::BTreeMap;

use accord_core::roster::{Node, Roster};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Operators;
use crate::config::NodeConfig;
use crate::ledger::Ledger;
use crate::replication::{self, Peer, PeerStates, PeerStatus, Pulls, Tuning};
use crate::tls::{Pins, TlsIdentity};

/// The peers a node pulls from, each with its replication task.
pub(crate) struct PeerSet {
    identity: Option<TlsIdentity>,
    ledger: Ledger,
    states: PeerStates,
    tuning: Tuning,
    pulls: Pulls,
    stopping: watch::Receiver<bool>,
    pins: Pins,
    running: BTreeMap<String, (Peer, JoinHandle<()>)>,
}

impl PeerSet {
    pub(crate) fn new(
        identity: Option<TlsIdentity>,
        ledger: Ledger,
        states: PeerStates,
        tuning: Tuning,
        stopping: watch::Receiver<bool>,
        pins: Pins,
    ) -> Self {
        Self {
            identity,
            ledger,
            states,
            tuning,
            pulls: Pulls::default(),
            stopping,
            pins,
            running: BTreeMap::new(),
        }
    }

    /// Makes `peers` the set pulled from and pinned: starts the new, stops the
    /// removed, restarts the changed. What changed, as (added, removed, changed).
    pub(crate) fn set(&mut self, peers: &[Peer]) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        let wanted: BTreeMap<&str, &Peer> = peers.iter().map(|p| (p.name.as_str(), p)).collect();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let same = wanted.get(name.as_str()).map(|p| {
                let (old, _) = &self.running[&name];
                old.address == p.address && old.fingerprint == p.fingerprint
            });
            match same {
                Some(true) => continue,
                Some(false) => changed.push(name.clone()),
                None => removed.push(name.clone()),
            }
            if let Some((_, task)) = self.running.remove(&name) {
                task.abort();
            }
            self.states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        }
        self.pins.store(std::sync::Arc::new(
            peers.iter().map(|p| p.fingerprint).collect(),
        ));
        for peer in peers {
            if self.running.contains_key(&peer.name) {
                continue;
            }
            if !changed.contains(&peer.name) {
                added.push(peer.name.clone());
            }
            let Some(identity) = self.identity.clone() else {
                continue;
            };
            self.states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    peer.name.clone(),
                    PeerStatus {
                        name: peer.name.clone(),
                        address: peer.address.clone(),
                        ..Default::default()
                    },
                );
            let task = tokio::spawn(replication::run_peer(
                peer.clone(),
                identity,
                self.ledger.clone(),
                self.states.clone(),
                self.tuning,
                self.pulls.clone(),
                self.stopping.clone(),
            ));
            self.running.insert(peer.name.clone(), (peer.clone(), task));
        }
        (added, removed, changed)
    }

    /// Waits for every peer task to end (they end when the node stops).
    pub(crate) async fn join(self) {
        for (_, (_, task)) in self.running {
            let _ = task.await;
        }
    }
}

/// The nodes of the roster's active organisations other than this node's home
/// identities: what [`effective`] adds to the config's peers. Compared between
/// states, to apply only a change. None for a node without TLS: it cannot federate.
pub(crate) fn roster_nodes(config: &NodeConfig, roster: &Roster) -> Vec<(String, Node)> {
    if config.tls.is_none() {
        return Vec::new();
    }
    let home: Vec<_> = config.identities.iter().map(|i| i.public_id()).collect();
    roster
        .nodes()
        .filter(|(o, _)| !home.contains(&o.key))
        .map(|(o, n)| (o.name.clone(), n.clone()))
        .collect()
}

/// The peers a node pulls from and pins: the config's `[[peers]]`, then each node of
/// `roster_nodes` that no config peer already names, by the organisation's name
/// (case-insensitive) or by address. So a config entry wins over the roster for the
/// same organisation or address: an operator can override what the roster says.
pub(crate) fn effective(config: &NodeConfig, roster_nodes: &[(String, Node)]) -> Vec<Peer> {
    let mut peers = config.peers.clone();
    for (name, node) in roster_nodes {
        let address = format!("https://{}", node.address);
        let named = peers.iter().any(|p| {
            p.name.eq_ignore_ascii_case(name) || p.address.trim_end_matches('/') == address
        });
        if !named {
            peers.push(Peer {
                name: name.clone(),
                address,
                fingerprint: node.cert_sha256,
            });
        }
    }
    peers
}

/// Applies the roster's nodes after a change of state: pins and pulls from newly
/// announced or admitted nodes, unpins the nodes of organisations removed or gone
/// and the certificates replaced.
pub(crate) fn apply_roster(config: &NodeConfig, nodes: &[(String, Node)], peers: &mut PeerSet) {
    let (added, removed, changed) = peers.set(&effective(config, nodes));
    if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
        tracing::info!(
            roster_nodes = nodes.len(),
            added = %added.join(","),
            removed = %removed.join(","),
            changed = %changed.join(","),
            "the roster's nodes changed: peers applied"
        );
    }
}

/// Applies a reloaded config's peers and operators; logs what changed and which
/// other settings differ from the running ones (they wait for a restart).
pub(crate) fn apply(
    running: &NodeConfig,
    new: &NodeConfig,
    roster_nodes: &[(String, Node)],
    peers: &mut PeerSet,
    operators: &Operators,
) {
    let (added, removed, changed) = peers.set(&effective(new, roster_nodes));
    operators.store(std::sync::Arc::new(new.operators.clone()));
    let restart = needs_restart(running, new);
    tracing::info!(
        peers = new.peers.len(),
        operators = new.operators.len(),
        added = %added.join(","),
        removed = %removed.join(","),
        changed = %changed.join(","),
        "config reloaded: peers and operators applied"
    );
    if !restart.is_empty() {
        tracing::warn!(
            "config reloaded, but {} changed too: only [[peers]] and [[operators]] apply \
             without a restart; restart the node for the rest",
            restart.join(", ")
        );
    }
}

/// The settings other than peers and operators in which `new` differs from `running`.
fn needs_restart(running: &NodeConfig, new: &NodeConfig) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if running.listen != new.listen {
        differ.push("listen");
    }
    if running.advertise != new.advertise {
        differ.push("advertise");
    }
    if running.data_dir != new.data_dir {
        differ.push("data_dir");
    }
    if running.charter.id() != new.charter.id() {
        differ.push("charter");
    }
    let ids = |c: &NodeConfig| {
        c.identities
            .iter()
            .map(|i| i.public_id())
            .collect::<Vec<_>>()
    };
    if ids(running) != ids(new) {
        differ.push("identities");
    }
    let tls = |c: &NodeConfig| c.tls.as_ref().map(TlsIdentity::fingerprint);
    if tls(running) != tls(new) {
        differ.push("[tls]");
    }
    let http = |c: &NodeConfig| {
        c.http
            .as_ref()
            .map(|h| (h.listen, h.public_url.clone(), h.refresh))
    };
    if http(running) != http(new) {
        differ.push("[http]");
    }
    if running.anti_entropy != new.anti_entropy {
        differ.push("anti_entropy_secs");
    }
    differ
}
