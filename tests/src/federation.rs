//! Several federated nodes in one process: each with its own folder, TLS identity and
//! home identity, wired in a topology whose links may go through a [`Proxy`] the
//! test controls (cut, blackhole, heal), with authenticated TLS clients of each
//! node's `Ledger` API and a bounded [`TestFederation::converge`].
//!
//! Replication is pull-based and symmetric: an edge `a - b` means `a` pulls from `b`
//! and `b` pulls from `a`, and each pins the other's certificate. With proxies, the
//! link "a pulls from b" goes through its own proxy in front of `b`, so a test can
//! cut one direction, one edge or a whole node off.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use accord_core::pb;
use accord_core::pb::ledger_client::LedgerClient;
use accord_core::{Identity, PublicId};
use accord_node::replication::Peer;
use accord_node::tls::{self, Fingerprint, TlsIdentity};
use accord_node::{NodeConfig, NodeError};
use anyhow::{Context, anyhow, bail};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::{ADMIN_TOKEN, Bearer, Client, NODE_TIMEOUT, RPC_TIMEOUT, Snapshot, TestAlliance};

/// How often [`TestFederation::converge`] and the other waits poll.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------
// TLS helpers

/// A new TLS identity (ECDSA P-256, self-signed for 127.0.0.1), written to `dir` as
/// `node.crt` and `node.key` and loaded back as a node would load it.
pub fn tls_identity(dir: &Path) -> anyhow::Result<TlsIdentity> {
    std::fs::create_dir_all(dir)?;
    let (cert, key) = tls::generate(&["127.0.0.1".into(), "localhost".into()])?;
    std::fs::write(dir.join("node.crt"), cert)?;
    std::fs::write(dir.join("node.key"), key)?;
    Ok(TlsIdentity::load(
        &dir.join("node.crt"),
        &dir.join("node.key"),
    )?)
}

/// A TLS identity kept in memory only (in a temporary folder removed at once).
pub fn fresh_tls_identity() -> anyhow::Result<TlsIdentity> {
    let dir = tempfile::tempdir()?;
    tls_identity(dir.path())
}

/// A gRPC channel to `addr` over TLS 1.3, the server pinned to `server_pin`,
/// presenting `identity` (a peer) or no certificate (a client). Every call has a
/// deadline of [`RPC_TIMEOUT`]; connecting (TCP and TLS) at most five seconds.
pub fn tls_channel(
    addr: SocketAddr,
    server_pin: Fingerprint,
    identity: Option<&TlsIdentity>,
) -> anyhow::Result<Channel> {
    let config = tls::client_config(server_pin, identity)?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(RPC_TIMEOUT)
        .tcp_nodelay(true);
    let server_name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let connector = tower::service_fn(move |_: http::Uri| {
        let config = config.clone();
        let server_name = server_name.clone();
        async move {
            let connecting = async {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                tokio_rustls::TlsConnector::from(config)
                    .connect(server_name, tcp)
                    .await
            };
            let tls = tokio::time::timeout(Duration::from_secs(5), connecting)
                .await
                .map_err(|_| std::io::Error::other("TLS connect timed out"))??;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// An authenticated `Ledger` client of a TLS node (no client certificate; a token).
pub fn tls_client(
    addr: SocketAddr,
    server_pin: Fingerprint,
    token: Option<&str>,
) -> anyhow::Result<Client> {
    let channel = tls_channel(addr, server_pin, None)?;
    Ok(LedgerClient::with_interceptor(channel, Bearer::new(token))
        .max_decoding_message_size(64 << 20))
}

/// A `Federation` client of a TLS node, presenting `identity` (or no certificate).
pub fn federation_client(
    addr: SocketAddr,
    server_pin: Fingerprint,
    identity: Option<&TlsIdentity>,
) -> anyhow::Result<pb::federation_client::FederationClient<Channel>> {
    Ok(
        pb::federation_client::FederationClient::new(tls_channel(addr, server_pin, identity)?)
            .max_decoding_message_size(64 << 20),
    )
}

// ---------------------------------------------------------------------------------
// Log capture

/// Log lines of every node in this test process (all tests share it).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("ACCORD_TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: keep the last 16 MiB.
        if lines.len() > 16 << 20 {
            let cut = lines.len() - (8 << 20);
            lines.drain(..cut);
        }
        lines.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<LogCapture> = OnceLock::new();

/// Installs (once per process) a global subscriber that keeps every node's log
/// lines for [`logs_contain`]; with `ACCORD_TEST_LOG` set it also prints them.
pub fn capture_logs() -> LogCapture {
    LOGS.get_or_init(|| {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let filter = tracing_subscriber::EnvFilter::try_from_env("ACCORD_TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        capture
    })
    .clone()
}

/// Whether any captured log line contains every one of `needles`.
pub fn logs_contain(needles: &[&str]) -> bool {
    let Some(capture) = LOGS.get() else {
        return false;
    };
    let bytes = capture.0.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&bytes)
        .lines()
        .any(|line| needles.iter().all(|n| line.contains(n)))
}

// ---------------------------------------------------------------------------------
// Proxy

/// What a [`Proxy`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forwards to the target.
    Open,
    /// Accepts and closes at once (a refused link).
    Refuse,
    /// Accepts and never answers (a link that loses every packet).
    Blackhole,
    /// Stops forwarding without closing anything: open connections stay open and
    /// carry nothing more, new ones are accepted and never answered (a peer that is
    /// stopped, or a link that silently drops every packet).
    Stall,
    /// The proxy is gone.
    Stopped,
}

#[derive(Debug, Clone, Copy)]
struct ProxyState {
    mode: LinkMode,
    /// Bumped by every change: connections of an older epoch are dropped.
    epoch: u64,
}

/// A TCP proxy on `127.0.0.1:0` in front of `target`, which a test can cut
/// ([`Proxy::cut`], [`Proxy::blackhole`]) and heal ([`Proxy::heal`]). Dropping it
/// closes the listener and every connection.
pub struct Proxy {
    pub addr: SocketAddr,
    pub target: SocketAddr,
    control: watch::Sender<ProxyState>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("mode", &self.mode())
            .finish()
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (control, state) = watch::channel(ProxyState {
            mode: LinkMode::Open,
            epoch: 0,
        });
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, target, state, accepted.clone()));
        Ok(Self {
            addr,
            target,
            control,
            accepted,
            task,
        })
    }

    /// Drops every current connection and refuses new ones.
    pub fn cut(&self) {
        self.set(LinkMode::Refuse);
    }

    /// Drops every current connection; new ones are accepted and never answered.
    pub fn blackhole(&self) {
        self.set(LinkMode::Blackhole);
    }

    /// Stops forwarding but keeps every connection open ([`LinkMode::Stall`]).
    pub fn stall(&self) {
        self.set(LinkMode::Stall);
    }

    /// Forwards again (connections held by a blackhole or a stall are dropped).
    pub fn heal(&self) {
        self.set(LinkMode::Open);
    }

    pub fn mode(&self) -> LinkMode {
        self.control.borrow().mode
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set(&self, mode: LinkMode) {
        self.control.send_modify(|s| {
            s.mode = mode;
            s.epoch += 1;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set(LinkMode::Stopped);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mut state: watch::Receiver<ProxyState>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
) {
    // Dropping the set (when this task is aborted) aborts every connection task.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    // Transient (say, out of file descriptors): bounded pause.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = proxy_stopped(&mut state) => return,
        };
        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
        let now = *state.borrow();
        match now.mode {
            LinkMode::Open => {
                connections.spawn(forward(tcp, target, state.clone(), now.epoch));
            }
            LinkMode::Blackhole | LinkMode::Stall => {
                connections.spawn(hold(tcp, state.clone(), now.epoch));
            }
            LinkMode::Refuse => drop(tcp),
            LinkMode::Stopped => return,
        }
    }
}

async fn proxy_stopped(state: &mut watch::Receiver<ProxyState>) {
    let _ = state.wait_for(|s| s.mode == LinkMode::Stopped).await;
}

/// Completes once the proxy changes mode (or stops) after `epoch`.
async fn changed_since(state: &mut watch::Receiver<ProxyState>, epoch: u64) {
    let _ = state.wait_for(|s| s.epoch != epoch).await;
}

async fn forward(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut state: watch::Receiver<ProxyState>,
    epoch: u64,
) {
    let _ = inbound.set_nodelay(true);
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target));
    let mut outbound = tokio::select! {
        connected = connect => match connected {
            Ok(Ok(outbound)) => outbound,
            _ => return,
        },
        () = changed_since(&mut state, epoch) => return,
    };
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        () = changed_since(&mut state, epoch) => {}
    }
    // A stall keeps both sockets open, carrying nothing, until the next change.
    let now = *state.borrow();
    if now.mode == LinkMode::Stall {
        changed_since(&mut state, now.epoch).await;
    }
    drop((inbound, outbound));
}

async fn hold(inbound: TcpStream, mut state: watch::Receiver<ProxyState>, epoch: u64) {
    changed_since(&mut state, epoch).await;
    drop(inbound);
}

// ---------------------------------------------------------------------------------
// Federation

/// Which nodes pull from which.
#[derive(Debug, Clone)]
pub enum Topology {
    /// Every node with every other.
    FullMesh,
    /// 0 - 1 - 2 - … (no link between non-neighbours).
    Chain,
    /// These undirected edges only.
    Edges(Vec<(usize, usize)>),
}

impl Topology {
    fn edges(&self, n: usize) -> Vec<(usize, usize)> {
        match self {
            Topology::FullMesh => (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .collect(),
            Topology::Chain => (1..n).map(|b| (b - 1, b)).collect(),
            Topology::Edges(edges) => edges.clone(),
        }
    }
}

/// How to build a [`TestFederation`].
#[derive(Debug, Clone)]
pub struct FederationSpec {
    /// Organisation nodes: node `i` is home to member `i`.
    pub nodes: usize,
    /// Members in the charter (at least `nodes`); the rest have no node.
    pub members: usize,
    /// Adds one more node (the last), home to secretary 0.
    pub secretariat: bool,
    pub topology: Topology,
    /// Every link through its own [`Proxy`].
    pub proxied: bool,
    pub anti_entropy: Duration,
}

impl FederationSpec {
    pub fn new(nodes: usize, topology: Topology) -> Self {
        Self {
            nodes,
            members: nodes,
            secretariat: false,
            topology,
            proxied: false,
            anti_entropy: Duration::from_millis(250),
        }
    }

    pub fn members(mut self, members: usize) -> Self {
        self.members = members;
        self
    }

    pub fn secretariat(mut self) -> Self {
        self.secretariat = true;
        self
    }

    pub fn proxied(mut self) -> Self {
        self.proxied = true;
        self
    }
}

/// One node of a [`TestFederation`]; built, then started (possibly later).
pub struct FedNode {
    pub name: String,
    /// The node's folder (config, keys, TLS files, `data/`).
    pub folder: PathBuf,
    pub config: NodeConfig,
    pub addr: SocketAddr,
    pub pin: Fingerprint,
    pub home: Identity,
    listener: Option<TcpListener>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), NodeError>>>,
}

impl std::fmt::Debug for FedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FedNode")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("running", &self.is_running())
            .finish()
    }
}

impl FedNode {
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// An authenticated client (admin token) of this node's `Ledger` API.
    pub fn client(&self) -> anyhow::Result<Client> {
        tls_client(self.addr, self.pin, Some(ADMIN_TOKEN))
    }

    pub fn client_with(&self, token: Option<&str>) -> anyhow::Result<Client> {
        tls_client(self.addr, self.pin, token)
    }

    /// Serves the node on its listener; returns once it answers `GetStatus`.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let listener = match self.listener.take() {
            Some(listener) => listener,
            // Restarted: the same port again (bounded retries while it frees up).
            None => rebind(self.addr).await?,
        };
        let (tx, rx) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(accord_node::run(
            self.config.clone(),
            listener,
            async move {
                let _ = rx.await;
            },
        )));
        self.shutdown = Some(tx);
        let deadline = Instant::now() + NODE_TIMEOUT;
        let mut client = self.client()?;
        loop {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let task = self.task.take().expect("task");
                bail!("{} stopped while starting: {:?}", self.name, task.await);
            }
            match client.get_status(pb::GetStatusRequest::default()).await {
                Ok(_) => return Ok(()),
                Err(status) if Instant::now() >= deadline => {
                    bail!(
                        "{} did not answer within {NODE_TIMEOUT:?}: {status}",
                        self.name
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Stops the node (bounded) and checks `run` returned cleanly.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(NODE_TIMEOUT, task)
                .await
                .map_err(|_| anyhow!("{} did not stop within {NODE_TIMEOUT:?}", self.name))?
                .with_context(|| format!("{} panicked", self.name))?
                .with_context(|| format!("{} stopped with an error", self.name))?;
        }
        Ok(())
    }
}

async fn rebind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("cannot bind {addr} again: {last:?}")
}

impl Drop for FedNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// N federated nodes of one [`TestAlliance`], built (folders, keys, TLS identities,
/// listeners bound, peers configured) but not started: see [`TestFederation::start_all`].
pub struct TestFederation {
    pub alliance: TestAlliance,
    pub nodes: Vec<FedNode>,
    /// `(a, b)`: the proxy through which `a` pulls from `b`.
    pub proxies: BTreeMap<(usize, usize), Proxy>,
    pub edges: Vec<(usize, usize)>,
}

impl std::fmt::Debug for TestFederation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFederation")
            .field("nodes", &self.nodes)
            .field("edges", &self.edges)
            .finish()
    }
}

/// Extra peers for a node beyond the topology (say, a fake server).
#[derive(Debug, Clone)]
pub struct ExtraPeer {
    pub node: usize,
    pub peer: Peer,
}

impl TestFederation {
    pub async fn build(spec: FederationSpec) -> anyhow::Result<Self> {
        Self::build_with(spec, &[]).await
    }

    /// As [`TestFederation::build`], adding `extra` peers to some nodes.
    pub async fn build_with(spec: FederationSpec, extra: &[ExtraPeer]) -> anyhow::Result<Self> {
        capture_logs();
        let secretaries = usize::from(spec.secretariat);
        if spec.members < spec.nodes {
            bail!("{} nodes need at least as many members", spec.nodes);
        }
        let mut alliance = TestAlliance::new(spec.members, secretaries.max(1));
        let count = spec.nodes + secretaries;
        let edges = spec.topology.edges(count);
        if let Some((a, b)) = edges
            .iter()
            .find(|(a, b)| a == b || *a >= count || *b >= count)
        {
            bail!("bad edge {a} - {b} for {count} nodes");
        }
        let mut homes = Vec::new();
        let mut listeners = Vec::new();
        let mut tls_ids = Vec::new();
        let mut folders = Vec::new();
        let mut configs = Vec::new();
        for i in 0..count {
            let (home, name) = if i < spec.nodes {
                (alliance.member(i).clone(), format!("node-{i}"))
            } else {
                (alliance.secretary(0).clone(), "secretariat".to_string())
            };
            let config_path = alliance.node_config(&[&home], &[]);
            let folder = config_path.parent().expect("node folder").to_path_buf();
            let config = NodeConfig::load(&config_path)?;
            tls_ids.push(tls_identity(&folder.join("tls"))?);
            listeners.push(TcpListener::from_std({
                let listener = crate::node_listener()?;
                listener.set_nonblocking(true)?;
                listener
            })?);
            homes.push((home, name));
            folders.push(folder);
            configs.push(config);
        }
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<_, _>>()?;
        let mut proxies = BTreeMap::new();
        let mut peers: Vec<Vec<Peer>> = vec![Vec::new(); count];
        for &(a, b) in &edges {
            for (from, to) in [(a, b), (b, a)] {
                let target = addrs[to];
                let via = if spec.proxied {
                    let proxy = Proxy::start(target).await?;
                    let addr = proxy.addr;
                    proxies.insert((from, to), proxy);
                    addr
                } else {
                    target
                };
                peers[from].push(Peer {
                    name: homes[to].1.clone(),
                    address: format!("https://{via}"),
                    fingerprint: tls_ids[to].fingerprint(),
                });
            }
        }
        for e in extra {
            peers[e.node].push(e.peer.clone());
        }
        let mut nodes = Vec::new();
        let parts = homes
            .into_iter()
            .zip(listeners)
            .zip(tls_ids)
            .zip(folders)
            .zip(configs)
            .zip(peers)
            .zip(addrs);
        for ((((((home, listener), tls_id), folder), mut config), peers), addr) in parts {
            config.tls = Some(tls_id.clone());
            config.peers = peers;
            config.anti_entropy = spec.anti_entropy;
            nodes.push(FedNode {
                name: home.1,
                folder,
                config,
                addr,
                pin: tls_id.fingerprint(),
                home: home.0,
                listener: Some(listener),
                shutdown: None,
                task: None,
            });
        }
        Ok(Self {
            alliance,
            nodes,
            proxies,
            edges,
        })
    }

    /// Starts every node not yet running.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            if !node.is_running() {
                node.start().await?;
            }
        }
        Ok(())
    }

    /// Builds and starts.
    pub async fn start(spec: FederationSpec) -> anyhow::Result<Self> {
        let mut federation = Self::build(spec).await?;
        federation.start_all().await?;
        Ok(federation)
    }

    pub fn node(&self, i: usize) -> &FedNode {
        &self.nodes[i]
    }

    /// An admin client of node `i`.
    pub fn client(&self, i: usize) -> anyhow::Result<Client> {
        self.nodes[i].client()
    }

    pub fn clients(&self) -> anyhow::Result<Vec<Client>> {
        self.nodes.iter().map(FedNode::client).collect()
    }

    /// The proxy of the link on which `from` pulls from `to`.
    pub fn proxy(&self, from: usize, to: usize) -> &Proxy {
        self.proxies
            .get(&(from, to))
            .unwrap_or_else(|| panic!("no proxy for {from} -> {to} (spec.proxied?)"))
    }

    /// Cuts every link of node `i` (both directions).
    pub fn isolate(&self, i: usize) {
        for ((a, b), proxy) in &self.proxies {
            if *a == i || *b == i {
                proxy.cut();
            }
        }
    }

    /// Cuts every link of node `i` and waits until no replication session crosses
    /// the cut any more (every peer status on either side says disconnected).
    pub async fn isolate_and_wait(&self, i: usize, within: Duration) -> anyhow::Result<()> {
        self.isolate(i);
        let deadline = Instant::now() + within;
        let cut_off = self.nodes[i].name.clone();
        for j in 0..self.nodes.len() {
            if !self.nodes[j].is_running() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_status(j, left, |s| {
                s.peers
                    .iter()
                    .filter(|p| j == i || p.name == cut_off)
                    .all(|p| !p.connected)
            })
            .await?;
        }
        Ok(())
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for proxy in self.proxies.values() {
            proxy.heal();
        }
    }

    /// Snapshots of every running node (bounded by the clients' deadlines).
    pub async fn snapshots(&self) -> anyhow::Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let mut client = node.client()?;
            out.push(
                crate::snapshot(&mut client)
                    .await
                    .with_context(|| format!("status of {}", node.name))?,
            );
        }
        Ok(out)
    }

    /// Polls until every running node reports the same digest and entry count;
    /// fails after `within`.
    pub async fn converge(&self, within: Duration) -> anyhow::Result<Snapshot> {
        self.converge_when(within, |_| true).await
    }

    /// Polls until every running node holds `entries` entries with one digest.
    pub async fn converge_to(&self, entries: u64, within: Duration) -> anyhow::Result<Snapshot> {
        self.converge_when(within, |s| s.entries == entries)
            .await
            .with_context(|| format!("waiting for {entries} entries"))
    }

    async fn converge_when(
        &self,
        within: Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> anyhow::Result<Snapshot> {
        let deadline = Instant::now() + within;
        let clients = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| Ok((n.name.clone(), n.client()?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut last: Vec<String> = Vec::new();
        while Instant::now() < deadline {
            last.clear();
            let mut snaps = Vec::new();
            for (name, client) in &clients {
                let mut client = client.clone();
                match crate::snapshot(&mut client).await {
                    Ok(s) => {
                        last.push(format!(
                            "{name}: {} entries, digest {}",
                            s.entries,
                            hex::encode(s.digest.get(..6).unwrap_or_default())
                        ));
                        snaps.push(s);
                    }
                    Err(e) => last.push(format!("{name}: {e}")),
                }
            }
            if snaps.len() == clients.len()
                && snaps
                    .iter()
                    .all(|s| s.digest == snaps[0].digest && s.heads == snaps[0].heads)
                && done(&snaps[0])
            {
                return Ok(snaps.swap_remove(0));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        bail!("no convergence within {within:?}: {last:?}")
    }

    /// Polls `GetStatus` of node `i` until `check` accepts it; fails after `within`.
    pub async fn wait_status(
        &self,
        i: usize,
        within: Duration,
        check: impl Fn(&pb::NodeStatus) -> bool,
    ) -> anyhow::Result<pb::NodeStatus> {
        let deadline = Instant::now() + within;
        let mut client = self.client(i)?;
        let mut last = None;
        while Instant::now() < deadline {
            match client.get_status(pb::GetStatusRequest::default()).await {
                Ok(status) => {
                    let status = status.into_inner();
                    if check(&status) {
                        return Ok(status);
                    }
                    last = Some(format!("{:?}", status_summary(&status)));
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        bail!(
            "{}: condition not met within {within:?}; last status {last:?}",
            self.nodes[i].name
        )
    }

    /// Stops every node (bounded) and reports the first failure.
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        let mut first = None;
        for node in &mut self.nodes {
            if let Err(e) = node.stop().await {
                first.get_or_insert(e);
            }
        }
        self.proxies.clear();
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A short, readable summary of a status for failure messages.
pub fn status_summary(status: &pb::NodeStatus) -> String {
    let peers: Vec<String> = status
        .peers
        .iter()
        .map(|p| {
            format!(
                "{}: connected={} behind={} received={} refused={} error={:?}",
                p.name, p.connected, p.behind, p.received, p.refused, p.last_error
            )
        })
        .collect();
    format!(
        "entries={} digest={} frozen={} peers=[{}]",
        status.entries,
        hex::encode(status.digest.get(..6).unwrap_or_default()),
        status.frozen.len(),
        peers.join("; ")
    )
}

/// Writes `entries` (signed, in log order per author) straight into the store at
/// `data_dir`, as a node would after accepting them, in batches with one flush each.
pub async fn store_entries(
    data_dir: &Path,
    alliance: accord_core::AllianceId,
    entries: &[accord_core::pb::SignedEntry],
) -> anyhow::Result<()> {
    use prost::Message;
    let store = accord_store::Store::open(data_dir, alliance, 1 << 24)?;
    for chunk in entries.chunks(10_000) {
        let batch = chunk
            .iter()
            .map(|signed| {
                let decoded = accord_core::entry::decode(signed.clone(), usize::MAX)?;
                Ok(accord_store::StoredEntry {
                    author: decoded.author(),
                    seq: decoded.seq(),
                    bytes: signed.encode_to_vec(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.append(&batch)?;
    }
    store.flush().await?;
    Ok(())
}

/// The public key of `identity` as bytes.
pub fn key_of(identity: &Identity) -> Vec<u8> {
    identity.public_id().to_vec()
}

/// The authors a status lists as frozen, as keys.
pub fn frozen(status: &pb::NodeStatus) -> Vec<PublicId> {
    status
        .frozen
        .iter()
        .filter_map(|k| PublicId::from_slice(k).ok())
        .collect()
}
