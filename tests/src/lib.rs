//! The test harness: a small alliance with deterministic keys, node configurations
//! written to a temporary folder, nodes run in-process on `127.0.0.1:0` with a
//! shutdown handle, authenticated gRPC clients, and signers for raw entries.
//!
//! Every wait here is bounded in time: RPCs carry a deadline, and polling loops give
//! up after a fixed number of rounds.

pub mod federation;
pub mod process;
pub mod python;

pub use federation::*;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use accord_core::body::encode;
use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
use accord_core::entry::{self, LogHead, SignatureChecked};
use accord_core::pb;
use accord_core::pb::ledger_client::LedgerClient;
use accord_core::pb::publish_request::Body;
use accord_core::{Charter, Identity, PublicId, State, VerifiedEntry};
use accord_node::{NodeConfig, NodeError};
use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Deadline of every RPC made through [`connect`].
pub const RPC_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take to start or stop.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// The token of the operator that [`TestAlliance::node_config`] gives every home
/// identity of the node.
pub const ADMIN_TOKEN: &str = "admin-token";

/// An authenticated client of the `Ledger` service.
pub type Client = LedgerClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Debug, Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| format!("Bearer {t}").parse().expect("ascii token")))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to `addr` whose every call has a deadline.
pub async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(RPC_TIMEOUT);
    let mut last = None;
    // Bounded: a freshly bound listener accepts at once; retry briefly otherwise.
    for _ in 0..50 {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("cannot connect to {addr}: {last:?}"))
}

/// A `Ledger` client presenting `token` (or no token at all).
pub async fn connect(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<Client> {
    let channel = channel(addr).await?;
    Ok(LedgerClient::with_interceptor(channel, Bearer::new(token))
        .max_decoding_message_size(64 << 20))
}

/// A loopback address for one node of a test: a random one in 127.0.0.0/8, never
/// 127.0.0.1. Connections to any loopback address leave from 127.0.0.1, so an
/// outbound connection (this test's or another process's) can never be given a
/// port on it: a node that stops and starts again on its address finds the port
/// free, where on 127.0.0.1 the kernel may have lent it to a client meanwhile.
pub fn node_ip() -> std::net::IpAddr {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let [a, b, c, ..] = hasher.finish().to_le_bytes();
    // 127.1.0.0 to 127.254.255.254: neither 127.0.0.x nor a broadcast-like .255.
    std::net::Ipv4Addr::new(127, a % 254 + 1, b, c % 254 + 1).into()
}

/// A listener on a port from the OS on a fresh [`node_ip`], to hold the address
/// until the node takes it.
pub fn node_listener() -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind((node_ip(), 0))
}

/// Lowercase hex SHA-256 of a token's UTF-8 bytes, as node configs hold it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// An operator of a node: a token and the identities (charter names or hex keys) it
/// may publish as.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    pub name: String,
    pub token: String,
    pub identities: Vec<String>,
}

impl OperatorSpec {
    pub fn new(name: &str, token: &str, identities: &[&str]) -> Self {
        Self {
            name: name.into(),
            token: token.into(),
            identities: identities.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// An alliance for tests: members `Party 0..n`, secretaries `Secretary 0..m` and one
/// outsider, all with keys from fixed seeds, and the charter file in a temporary
/// folder that also holds the nodes' configurations and data.
#[derive(Debug)]
pub struct TestAlliance {
    pub dir: tempfile::TempDir,
    pub charter: Charter,
    pub charter_path: PathBuf,
    pub members: Vec<Identity>,
    pub secretaries: Vec<Identity>,
    /// A key the charter does not name.
    pub outsider: Identity,
    nodes: usize,
}

fn seed(role: u8, index: usize) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[0] = role;
    seed[1..9].copy_from_slice(&(index as u64).to_le_bytes());
    seed[31] = 0xac;
    seed
}

impl TestAlliance {
    pub fn new(members: usize, secretaries: usize) -> Self {
        Self::with_rules(members, secretaries, Rules::default())
    }

    pub fn with_rules(members: usize, secretaries: usize, rules: Rules) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("accord-test-")
            .tempdir()
            .expect("temporary folder");
        let members: Vec<Identity> = (0..members)
            .map(|i| Identity::from_seed(seed(1, i)))
            .collect();
        let secretaries: Vec<Identity> = (0..secretaries)
            .map(|i| Identity::from_seed(seed(2, i)))
            .collect();
        let outsider = Identity::from_seed(seed(3, 0));
        let doc = CharterDoc {
            accord_charter: accord_core::charter::CHARTER_FORMAT,
            name: "Test Alliance".into(),
            members: members
                .iter()
                .enumerate()
                .map(|(i, id)| CharterMember {
                    name: member_name(i),
                    key: id.public_id(),
                    ec_id: Some(format!("PP{}", 100 + i)),
                })
                .collect(),
            secretaries: secretaries
                .iter()
                .enumerate()
                .map(|(i, id)| CharterSecretary {
                    name: secretary_name(i),
                    key: id.public_id(),
                })
                .collect(),
            rules,
        };
        let bytes = doc.to_file_bytes();
        let charter_path = dir.path().join("charter.json");
        std::fs::write(&charter_path, &bytes).expect("write charter");
        let charter = Charter::from_bytes(bytes).expect("valid charter");
        Self {
            dir,
            charter,
            charter_path,
            members,
            secretaries,
            outsider,
            nodes: 0,
        }
    }

    pub fn member(&self, i: usize) -> &Identity {
        &self.members[i]
    }

    pub fn secretary(&self, i: usize) -> &Identity {
        &self.secretaries[i]
    }

    /// Public key bytes of member `i`.
    pub fn key(&self, i: usize) -> Vec<u8> {
        self.members[i].public_id().to_vec()
    }

    pub fn secretary_key(&self, i: usize) -> Vec<u8> {
        self.secretaries[i].public_id().to_vec()
    }

    /// Every member and secretary.
    pub fn everyone(&self) -> Vec<&Identity> {
        self.members.iter().chain(&self.secretaries).collect()
    }

    /// Writes a node's folder (keys, config) and returns the config file's path. The
    /// node is home to `home`; besides `operators`, an operator with [`ADMIN_TOKEN`]
    /// covers every home identity.
    pub fn node_config(&mut self, home: &[&Identity], operators: &[OperatorSpec]) -> PathBuf {
        self.write_node_config(home, operators, None)
    }

    /// As [`TestAlliance::node_config`], serving the calendar on a free loopback port
    /// (reserved now; [`TestNode::http`] gives its address).
    pub fn node_config_with_calendar(
        &mut self,
        home: &[&Identity],
        operators: &[OperatorSpec],
    ) -> PathBuf {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        self.write_node_config(home, operators, Some(port))
    }

    fn write_node_config(
        &mut self,
        home: &[&Identity],
        operators: &[OperatorSpec],
        http_port: Option<u16>,
    ) -> PathBuf {
        self.nodes += 1;
        let folder = self.dir.path().join(format!("node-{}", self.nodes));
        std::fs::create_dir_all(folder.join("keys")).expect("node folder");
        let mut keys = Vec::new();
        for (i, identity) in home.iter().enumerate() {
            let path = folder.join("keys").join(format!("home-{i}.pem"));
            std::fs::write(&path, identity.to_pem()).expect("write key");
            keys.push(format!("keys/home-{i}.pem"));
        }
        let mut all = vec![OperatorSpec {
            name: "admin".into(),
            token: ADMIN_TOKEN.into(),
            identities: home.iter().map(|i| i.public_id().to_string()).collect(),
        }];
        all.extend(operators.iter().cloned());
        let mut toml = String::new();
        toml += "data_dir = \"data\"\n";
        toml += "listen = \"127.0.0.1:0\"\n";
        toml += &format!("charter = {:?}\n", self.charter_path.display().to_string());
        toml += &format!("identities = {keys:?}\n");
        toml += "cache_capacity_mb = 16\n";
        for op in &all {
            toml += "\n[[operators]]\n";
            toml += &format!("name = {:?}\n", op.name);
            toml += &format!("token_sha256 = \"{}\"\n", token_sha256(&op.token));
            toml += &format!("identities = {:?}\n", op.identities);
        }
        if let Some(port) = http_port {
            toml += &format!(
                "\n[http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n"
            );
        }
        let path = folder.join("node.toml");
        std::fs::write(&path, toml).expect("write node config");
        path
    }

    /// A signer of raw entries for `identity` (member, secretary or outsider).
    pub fn signer(&self, identity: &Identity) -> RawSigner {
        RawSigner::new(identity.clone(), self.charter.id())
    }

    /// The digest the derived state of `entries` must have, computed locally.
    pub fn digest_of(&self, entries: &[pb::SignedEntry]) -> anyhow::Result<[u8; 32]> {
        Ok(state_of(&self.charter, entries)?.digest())
    }
}

pub fn member_name(i: usize) -> String {
    format!("Party {i}")
}

pub fn secretary_name(i: usize) -> String {
    format!("Secretary {i}")
}

/// The derived state of a set of stored entries, each re-verified.
pub fn state_of(charter: &Charter, entries: &[pb::SignedEntry]) -> anyhow::Result<State> {
    let verified: Vec<VerifiedEntry> = entries
        .iter()
        .map(|signed| {
            let decoded = entry::decode(signed.clone(), usize::MAX)?;
            let checked = SignatureChecked::single(&decoded)?;
            VerifiedEntry::reload(decoded, charter, checked)
        })
        .collect::<Result<_, _>>()?;
    Ok(State::from_entries(charter.clone(), &verified))
}

/// Signs entries for one identity outside any node, tracking its head, for `Submit`.
#[derive(Debug, Clone)]
pub struct RawSigner {
    pub identity: Identity,
    pub alliance: accord_core::AllianceId,
    pub head: Option<LogHead>,
}

impl RawSigner {
    pub fn new(identity: Identity, alliance: accord_core::AllianceId) -> Self {
        Self {
            identity,
            alliance,
            head: None,
        }
    }

    pub fn key(&self) -> PublicId {
        self.identity.public_id()
    }

    /// Signs the next entry with a raw kind and body at `timestamp_ms`, without
    /// advancing the head (for entries meant to be refused).
    pub fn peek_raw(&self, timestamp_ms: i64, kind: i32, body: Vec<u8>) -> pb::SignedEntry {
        entry::sign(
            &self.identity,
            self.alliance,
            self.head.as_ref(),
            timestamp_ms,
            kind,
            body,
        )
    }

    /// Signs the next entry now, without advancing the head.
    pub fn peek(&self, body: &Body) -> pb::SignedEntry {
        let (kind, bytes) = encode(body);
        self.peek_raw(now_ms(), kind as i32, bytes)
    }

    /// Signs the next entry now and advances the head.
    pub fn next(&mut self, body: &Body) -> pb::SignedEntry {
        let signed = self.peek(body);
        self.advance(&signed);
        signed
    }

    /// Makes `signed` (an entry of this identity) the head.
    pub fn advance(&mut self, signed: &pb::SignedEntry) {
        let decoded = entry::decode(signed.clone(), usize::MAX).expect("own entry decodes");
        let entry = <pb::Entry as prost::Message>::decode(signed.entry.as_slice())
            .expect("own entry decodes");
        self.head = Some(LogHead {
            seq: decoded.seq(),
            id: decoded.id(),
            timestamp_ms: entry.timestamp_ms,
        });
    }
}

/// The entry id of a signed entry.
pub fn entry_id(signed: &pb::SignedEntry) -> Vec<u8> {
    entry::decode(signed.clone(), usize::MAX)
        .expect("entry decodes")
        .id()
        .to_vec()
}

/// A node running in this process on a `127.0.0.1:0` listener.
#[derive(Debug)]
pub struct TestNode {
    pub config_path: PathBuf,
    pub addr: SocketAddr,
    /// The calendar's base URL ("http://127.0.0.1:PORT"), if the config serves one.
    pub http: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), NodeError>>>,
}

impl TestNode {
    /// Loads `config_path` and serves it; returns once the node answers `GetStatus`.
    pub async fn start(config_path: &Path) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(config_path, listener).await
    }

    /// As [`TestNode::start`], on a listener bound beforehand (so that peers can name
    /// its address in their configs).
    pub async fn start_on(
        config_path: &Path,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Self> {
        let config = NodeConfig::load(config_path)
            .with_context(|| format!("loading {}", config_path.display()))?;
        let addr = listener.local_addr()?;
        let http = config.http.as_ref().map(|h| h.public_url.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(accord_node::run(config, listener, async move {
            let _ = rx.await;
        }));
        let mut node = Self {
            config_path: config_path.to_owned(),
            addr,
            http,
            shutdown: Some(tx),
            task: Some(task),
        };
        node.wait_ready().await?;
        Ok(node)
    }

    /// Waits (bounded) until the node answers `GetStatus` with the admin token.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + NODE_TIMEOUT;
        let mut client = connect(self.addr, Some(ADMIN_TOKEN)).await?;
        loop {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let task = self.task.take().expect("task");
                bail!("node stopped while starting: {:?}", task.await);
            }
            match client.get_status(pb::GetStatusRequest::default()).await {
                Ok(_) => return Ok(()),
                Err(status) if tokio::time::Instant::now() >= deadline => {
                    bail!("node did not answer within {NODE_TIMEOUT:?}: {status}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// A client with the admin token.
    pub async fn client(&self) -> anyhow::Result<Client> {
        connect(self.addr, Some(ADMIN_TOKEN)).await
    }

    /// A client with `token` (or none).
    pub async fn client_with(&self, token: Option<&str>) -> anyhow::Result<Client> {
        connect(self.addr, token).await
    }

    /// Stops the node and waits (bounded) for `run` to return.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(NODE_TIMEOUT, task)
                .await
                .map_err(|_| anyhow!("node did not stop within {NODE_TIMEOUT:?}"))?
                .context("node task panicked")?
                .context("node stopped with an error")?;
        }
        Ok(())
    }

    /// Stops the node and starts it again on the same config and data folder (on a
    /// new port).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        *self = Self::start(&self.config_path).await?;
        Ok(())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Every stored entry of `author`, page by page (bounded).
pub async fn full_log(client: &mut Client, author: &[u8]) -> anyhow::Result<Vec<pb::SignedEntry>> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = client
            .get_log(pb::GetLogRequest {
                author: author.to_vec(),
                from_seq: out.len() as u64 + 1,
                limit: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .entries;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
    bail!("log of {} did not end", hex::encode(author))
}

/// Every stored entry of every author the node reports a head for.
pub async fn all_entries(client: &mut Client) -> anyhow::Result<Vec<pb::SignedEntry>> {
    let status = client
        .get_status(pb::GetStatusRequest::default())
        .await?
        .into_inner();
    let mut out = Vec::new();
    for head in status.heads {
        out.extend(full_log(client, &head.author).await?);
    }
    Ok(out)
}

/// What a node's status says about its contents: entry count, heads and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: u64,
    pub heads: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
    pub digest: Vec<u8>,
}

pub async fn snapshot(client: &mut Client) -> anyhow::Result<Snapshot> {
    let status = client
        .get_status(pb::GetStatusRequest::default())
        .await?
        .into_inner();
    Ok(Snapshot {
        entries: status.entries,
        heads: status
            .heads
            .into_iter()
            .map(|h| (h.author, (h.seq, h.id)))
            .collect(),
        digest: status.digest,
    })
}

/// Publishes `body` as `author`; returns the response.
pub async fn publish(
    client: &mut Client,
    author: &Identity,
    body: Body,
) -> Result<pb::PublishResponse, tonic::Status> {
    client
        .publish(pb::PublishRequest {
            author: author.public_id().to_vec(),
            body: Some(body),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn submit(
    client: &mut Client,
    entry: pb::SignedEntry,
) -> Result<pb::PublishResponse, tonic::Status> {
    client
        .submit(pb::SubmitRequest { entry: Some(entry) })
        .await
        .map(tonic::Response::into_inner)
}

pub fn intention(ballot: &str, status: pb::IntentionStatus, candidate: &str) -> Body {
    Body::Intention(pb::Intention {
        ballot: ballot.into(),
        status: status as i32,
        candidate: candidate.into(),
        visibility: pb::Visibility::Public as i32,
        area: String::new(),
        note: String::new(),
    })
}

pub fn statement(title: &str, cosigners: Vec<Vec<u8>>) -> Body {
    Body::Statement(pb::Statement {
        title: title.into(),
        text: format!("The text of {title}."),
        cosigners,
    })
}

pub fn endorsement(statement: &[u8]) -> Body {
    Body::Endorsement(pb::Endorsement {
        statement: statement.to_vec(),
    })
}

pub fn withdrawal(statement: &[u8], reason: &str) -> Body {
    Body::StatementWithdrawal(pb::StatementWithdrawal {
        statement: statement.to_vec(),
        reason: reason.into(),
    })
}

pub fn event(uid: &str, start: &str, end: &str, venue: &str) -> pb::Event {
    pb::Event {
        uid: uid.into(),
        title: format!("Event {uid}"),
        description: String::new(),
        start: start.into(),
        end: end.into(),
        time_zone: String::new(),
        venue: venue.into(),
        area: String::new(),
        organisers: vec![],
        visibility: pb::Visibility::Public as i32,
        cancelled: false,
        all_day: false,
    }
}

pub fn resolution(ballot: &str, stands: Vec<Vec<u8>>, stand_aside: Vec<Vec<u8>>) -> Body {
    Body::Resolution(pb::Resolution {
        ballot: ballot.into(),
        stands,
        stand_aside,
        rationale: "agreed at the alliance meeting".into(),
    })
}

/// Runs `check` until it returns `Some`, at most `rounds` times `every` apart.
pub async fn poll<T, F, Fut>(rounds: usize, every: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    for _ in 0..rounds {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        tokio::time::sleep(every).await;
    }
    bail!("condition not met after {rounds} rounds of {every:?}")
}
