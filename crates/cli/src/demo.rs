//! `accord demo`: a ready-made alliance in one folder, run as a real federation in
//! this process. Each organisation (three members and the secretariat) has its own
//! node, with its own data, TLS certificate, operator token and port on loopback; the
//! four nodes pull from each other over mutual TLS with pinned certificates. Each
//! node also serves the members' calendar over HTTP (its gRPC port + 80 when free). The sample
//! data is published by each organisation through its own node, through the real gRPC
//! API, and the demo waits until every node holds the same ledger.
//!
//! The folder:
//!
//! ```text
//! DIR/charter.json                  the alliance (written last: marks a complete folder)
//! DIR/keys/NAME.pem                 each organisation's Ed25519 identity
//! DIR/nodes/NAME/node.toml          the node's config (rewritten on every start)
//! DIR/nodes/NAME/client.toml        a client config for it (rewritten on every start)
//! DIR/nodes/NAME/token              the node's operator token
//! DIR/nodes/NAME/tls/node.{crt,key} the node's TLS certificate and key
//! DIR/nodes/NAME/data/              the node's ledger
//! DIR/nodes/NAME/member-token       a sample member's calendar link token (secret)
//! DIR/demo.json                     written once every node holds the same ledger
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use accord_core::pb::publish_request::Body;
use accord_core::{Charter, Identity, PublicId, pb};
use anyhow::{Context, Result, anyhow, bail};
use chrono::{Days, NaiveDate, Utc};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{Client, rpc};
use crate::commands::{node, publish, setup};
use crate::files;
use crate::render::{println, table};

const ALLIANCE: &str = "Progressive Alliance of the Left";
const BREAKTHROUGH: &str = "Breakthrough Party";
const GREEN_LEFT: &str = "Northern Green Left";
const RADICAL: &str = "Radical Socialist Alliance";
const SECRETARIAT: &str = "PAL Secretariat";

/// The first node's port when neither --listen nor an earlier run says otherwise.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7400);
/// How long the nodes may take to hold the same ledger once the sample data is in.
const CONVERGENCE: Duration = Duration::from_secs(30);
/// How long the nodes may take to stop once asked.
const STOPPING: Duration = Duration::from_secs(15);

/// One organisation and its node.
pub(crate) struct OrgSpec {
    pub(crate) name: &'static str,
    /// The node's name, its folder under nodes/ and its key file under keys/.
    pub(crate) slug: &'static str,
    /// A sample Electoral Commission register id (members only).
    ec_id: Option<&'static str>,
}

/// The demo organisations, in node order (the first node takes the --listen port).
pub(crate) const ORGS: &[OrgSpec] = &[
    OrgSpec {
        name: BREAKTHROUGH,
        slug: "breakthrough-party",
        ec_id: Some("PP99901"),
    },
    OrgSpec {
        name: GREEN_LEFT,
        slug: "northern-green-left",
        ec_id: Some("PP99902"),
    },
    OrgSpec {
        name: RADICAL,
        slug: "radical-socialist-alliance",
        ec_id: Some("PP99903"),
    },
    OrgSpec {
        name: SECRETARIAT,
        slug: "pal-secretariat",
        ec_id: None,
    },
];

pub(crate) fn key_file(org: &OrgSpec) -> PathBuf {
    Path::new("keys").join(format!("{}.pem", org.slug))
}

/// One node's files, made or found by [`prepare`].
pub(crate) struct DemoNode {
    pub(crate) org: &'static OrgSpec,
    pub(crate) folder: PathBuf,
    pub(crate) token: String,
    /// SHA-256 of the node's TLS certificate, as peers and clients pin it.
    pub(crate) fingerprint: [u8; 32],
}

impl DemoNode {
    fn node_config(&self) -> PathBuf {
        self.folder.join("node.toml")
    }

    fn client_config(&self) -> PathBuf {
        self.folder.join("client.toml")
    }
}

pub(crate) struct Demo {
    pub(crate) dir: PathBuf,
    charter: Charter,
    identities: Vec<(String, Identity)>,
    pub(crate) nodes: Vec<DemoNode>,
}

impl Demo {
    fn key(&self, name: &str) -> PublicId {
        self.identities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i.public_id())
            .expect("a demo identity")
    }
}

/// What a node task returns: the node's name and how it ended.
type NodeEnd = (&'static str, Result<(), accord_node::NodeError>);

/// Creates `path` if missing and makes it its owner's only (0700), also when it
/// was there from an earlier run.
fn private_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions of {}", path.display()))?;
    }
    Ok(())
}

pub async fn run(dir: &Path, listen: Option<SocketAddr>, compose: bool) -> Result<()> {
    // The summary on stdout is what a demo user reads; the nodes' logs stay quiet.
    node::init_tracing("warn");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    private_dir(&dir.join("keys"))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let demo = prepare(&dir)?;
    if compose {
        return crate::compose::write(&demo, listen);
    }
    let shutdown = node::shutdown_signal()?;

    // Every listener is bound before any config is made, so that each node's config
    // can name every peer's address before any node starts.
    let listeners = bind(&demo, listen).await?;
    let addresses: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<_>>()?;
    let http_listeners = bind_http(&addresses).await?;
    let http: Vec<SocketAddr> = http_listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<_>>()?;
    let addresses = Addresses {
        grpc: addresses,
        http,
    };
    // The configs are validated as `accord node` would, but written to the folder only
    // once every node serves: a demo already running on DIR holds the ledgers, so this
    // one stops before it rewrites the configs that demo's users rely on.
    let mut configs = Vec::new();
    for (i, node) in demo.nodes.iter().enumerate() {
        let path = node.node_config();
        let raw: accord_node::config::RawNodeConfig =
            toml::from_str(&node_toml(&demo, i, &addresses))
                .with_context(|| format!("{}: invalid config", path.display()))?;
        let config = accord_node::NodeConfig::from_raw(raw, &node.folder)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        configs.push(config);
    }

    let (stop, stopping) = watch::channel(false);
    let mut running: JoinSet<NodeEnd> = JoinSet::new();
    for (((node, config), listener), http) in demo
        .nodes
        .iter()
        .zip(configs)
        .zip(listeners)
        .zip(http_listeners)
    {
        let mut stopping = stopping.clone();
        let name = node.org.slug;
        running.spawn(async move {
            let signal = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            (
                name,
                accord_node::run_with_http(config, listener, Some(http), signal).await,
            )
        });
    }

    tokio::pin!(shutdown);
    let started = tokio::select! {
        started = start(&demo, &addresses) => started,
        Some(ended) = running.join_next() => {
            let error = node_ended(ended);
            let _ = stop_all(&stop, &mut running).await;
            return Err(error);
        }
        () = &mut shutdown => return stop_all(&stop, &mut running).await,
    };
    if let Err(error) = started {
        let _ = stop_all(&stop, &mut running).await;
        return Err(error);
    }

    tokio::select! {
        Some(ended) = running.join_next() => {
            let error = node_ended(ended);
            let _ = stop_all(&stop, &mut running).await;
            Err(error)
        }
        () = &mut shutdown => stop_all(&stop, &mut running).await,
    }
}

/// Why a node task ended on its own: always an error, since nodes run until stopped.
fn node_ended(ended: Result<NodeEnd, tokio::task::JoinError>) -> anyhow::Error {
    match ended {
        Ok((name, Ok(()))) => anyhow!("node {name} stopped unexpectedly"),
        Ok((name, Err(error))) => {
            let text = error.to_string();
            if text.contains("the store is in use") {
                anyhow!(
                    "node {name} stopped: {text} (is another `accord demo` running on this folder?)"
                )
            } else {
                anyhow!("node {name} stopped: {text}")
            }
        }
        Err(error) => anyhow!("a node failed: {error}"),
    }
}

/// Asks every node to stop and waits (bounded) until they have.
async fn stop_all(stop: &watch::Sender<bool>, running: &mut JoinSet<NodeEnd>) -> Result<()> {
    let _ = stop.send(true);
    let mut errors = Vec::new();
    let waited = tokio::time::timeout(STOPPING, async {
        while let Some(ended) = running.join_next().await {
            match ended {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(error))) => errors.push(format!("node {name}: {error}")),
                Err(error) => errors.push(format!("a node failed: {error}")),
            }
        }
    })
    .await;
    if waited.is_err() {
        running.abort_all();
        bail!("the nodes did not stop within {}s", STOPPING.as_secs());
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// Once the nodes run: publishes the sample data if the ledger is empty, waits until
/// every node holds the same ledger, then writes demo.json and prints the summary.
async fn start(demo: &Demo, addresses: &Addresses) -> Result<()> {
    let mut clients = Vec::new();
    for (node, address) in demo.nodes.iter().zip(&addresses.grpc) {
        clients.push(ready(node, *address).await?);
    }
    // A demo.json from an earlier run names addresses that may be gone: it reappears
    // once the nodes hold the same ledger.
    let manifest = demo.dir.join("demo.json");
    if manifest.exists() {
        std::fs::remove_file(&manifest)
            .with_context(|| format!("cannot remove {}", manifest.display()))?;
    }
    write_configs(demo, addresses)?;
    let mut empty = true;
    for client in &mut clients {
        let status = client
            .ledger
            .get_status(pb::GetStatusRequest::default())
            .await
            .map_err(rpc)?
            .into_inner();
        empty &= status.entries == 0;
    }
    if empty {
        let mut seeder = Seeder {
            nodes: demo
                .nodes
                .iter()
                .map(|n| demo.key(n.org.name))
                .zip(clients)
                .collect(),
        };
        seed(demo, &mut seeder, Utc::now().date_naive()).await?;
        clients = seeder.nodes.into_iter().map(|(_, c)| c).collect();
    }
    let (entries, digest) = converge(demo, &mut clients).await?;
    let mut member_tokens = Vec::new();
    for (node, client) in demo.nodes.iter().zip(&mut clients) {
        member_tokens.push(member_token(node, client).await?);
    }
    write_demo_json(demo, addresses, &member_tokens)?;
    print_summary(demo, addresses, empty, entries, &digest, &member_tokens);
    Ok(())
}

/// The label of the sample member link each demo node hands out.
const DEMO_MEMBER: &str = "Demo member";

/// The node's sample member link token: the one saved in the node's folder if the
/// node still honours it, else a new link (replacing any live one with the label).
async fn member_token(node: &DemoNode, client: &mut Client) -> Result<String> {
    let path = node.folder.join("member-token");
    let links = client
        .ledger
        .list_feed_links(pb::ListFeedLinksRequest::default())
        .await
        .map_err(rpc)?
        .into_inner()
        .links;
    if let Ok(saved) = crate::client::read_token(&path) {
        let id = accord_node::feed_links::link_id(&saved);
        if links.iter().any(|l| l.id == id && l.revoked_ms == 0) {
            return Ok(saved);
        }
    }
    if links
        .iter()
        .any(|l| l.label == DEMO_MEMBER && l.revoked_ms == 0)
    {
        client
            .ledger
            .revoke_feed_link(pb::RevokeFeedLinkRequest {
                link: DEMO_MEMBER.into(),
            })
            .await
            .map_err(rpc)?;
    }
    let link = client
        .ledger
        .create_feed_link(pb::CreateFeedLinkRequest {
            label: DEMO_MEMBER.into(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    files::write_secret(&path, format!("{}\n", link.token).as_bytes(), true)?;
    Ok(link.token)
}

/// Connects to a node (TLS, its certificate pinned, its operator token), retrying
/// while it starts (at most ten seconds).
async fn ready(node: &DemoNode, address: SocketAddr) -> Result<Client> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut client = Client::connect_tls(&dial(address), node.fingerprint, &node.token, None)?;
    loop {
        let error = match client
            .ledger
            .get_status(pb::GetStatusRequest::default())
            .await
        {
            Ok(_) => return Ok(client),
            Err(e) => rpc(e),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(error.context(format!("node {} did not answer", node.org.slug)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most [`CONVERGENCE`]) until every node reports the same entries digest
/// (heads and fork proofs) and entry count; returns them.
async fn converge(demo: &Demo, clients: &mut [Client]) -> Result<(u64, String)> {
    let deadline = tokio::time::Instant::now() + CONVERGENCE;
    loop {
        let mut seen = Vec::new();
        for client in clients.iter_mut() {
            let status = client
                .ledger
                .get_status(pb::GetStatusRequest { omit_digest: true })
                .await
                .map_err(rpc)?
                .into_inner();
            seen.push(status);
        }
        let first = &seen[0];
        if seen
            .iter()
            .all(|s| s.entries_digest == first.entries_digest && s.entries == first.entries)
        {
            return Ok((first.entries, hex::encode(&first.entries_digest)));
        }
        if tokio::time::Instant::now() >= deadline {
            let report: Vec<String> = demo
                .nodes
                .iter()
                .zip(&seen)
                .map(|(node, s)| {
                    let errors: Vec<String> = s
                        .peers
                        .iter()
                        .filter(|p| !p.last_error.is_empty())
                        .map(|p| format!("{}: {}", p.name, p.last_error))
                        .collect();
                    format!(
                        "{} has {} entries, digest {}{}",
                        node.org.slug,
                        s.entries,
                        &hex::encode(&s.entries_digest)[..12],
                        if errors.is_empty() {
                            String::new()
                        } else {
                            format!(" (peer errors: {})", errors.join(", "))
                        }
                    )
                })
                .collect();
            bail!(
                "the nodes did not converge within {}s: {}",
                CONVERGENCE.as_secs(),
                report.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the keys, charter, tokens and TLS certificates, or reuses those that exist.
fn prepare(dir: &Path) -> Result<Demo> {
    let charter_path = dir.join("charter.json");
    let (charter, identities) = if charter_path.exists() {
        if !dir.join("nodes").exists() && dir.join("data").exists() {
            bail!(
                "{} holds a single-node demo from an earlier version of accord; remove it or choose another folder",
                dir.display()
            );
        }
        let bytes = std::fs::read(&charter_path)
            .with_context(|| format!("cannot read {}", charter_path.display()))?;
        let charter =
            Charter::from_bytes(bytes).with_context(|| charter_path.display().to_string())?;
        let mut identities = Vec::new();
        for org in ORGS {
            let file = key_file(org);
            let identity = setup::read_identity(&dir.join(&file))
                .context("the demo folder is incomplete; remove it or choose another")?;
            if charter.find(org.name) != Some(identity.public_id()) {
                bail!(
                    "{} does not hold the key of {} in {}; remove the folder or choose another",
                    file.display(),
                    org.name,
                    charter_path.display()
                );
            }
            identities.push((org.name.to_owned(), identity));
        }
        (charter, identities)
    } else {
        if dir.join("nodes").exists() || dir.join("data").exists() {
            bail!(
                "{} holds node data but no charter.json; remove it or choose another folder",
                dir.display()
            );
        }
        let mut identities = Vec::new();
        for org in ORGS {
            let identity = setup::write_new_identity(&dir.join(key_file(org)), true)?;
            identities.push((org.name.to_owned(), identity));
        }
        let key_of = |name: &str| {
            identities
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, i): &(String, Identity)| i.public_id())
                .expect("a demo identity")
        };
        let members: Vec<(String, PublicId, Option<String>)> = ORGS
            .iter()
            .filter_map(|o| {
                o.ec_id
                    .map(|ec| (o.name.to_owned(), key_of(o.name), Some(ec.to_owned())))
            })
            .collect();
        let secretaries = vec![(SECRETARIAT.to_owned(), key_of(SECRETARIAT))];
        let (bytes, charter) = setup::charter_file_bytes(ALLIANCE, &members, &secretaries)?;
        // The charter last: its presence marks a complete set of keys.
        files::write_new(&charter_path, &bytes, true)?;
        (charter, identities)
    };
    let mut nodes = Vec::new();
    for org in ORGS {
        nodes.push(prepare_node(dir, org)?);
    }
    Ok(Demo {
        dir: dir.to_owned(),
        charter,
        identities,
        nodes,
    })
}

/// A node's folder, token and TLS certificate: made if missing, else reused.
fn prepare_node(dir: &Path, org: &'static OrgSpec) -> Result<DemoNode> {
    let folder = dir.join("nodes").join(org.slug);
    std::fs::create_dir_all(folder.join("tls"))
        .with_context(|| format!("cannot create {}", folder.display()))?;
    // Tokens, TLS keys and the data (members' links among it) are the owner's only.
    for private in [dir.join("nodes"), folder.clone(), folder.join("data")] {
        private_dir(&private)?;
    }
    let token_path = folder.join("token");
    let token = if token_path.exists() {
        crate::client::read_token(&token_path)?
    } else {
        let token = setup::new_token()?;
        files::write_secret(&token_path, format!("{token}\n").as_bytes(), true)?;
        token
    };
    let cert = folder.join("tls/node.crt");
    let key = folder.join("tls/node.key");
    if !(cert.exists() && key.exists()) {
        let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (cert_pem, key_pem) = accord_node::tls::generate(&names)?;
        files::write_secret(&key, key_pem.as_bytes(), true)?;
        files::write_new(&cert, cert_pem.as_bytes(), true)?;
    }
    // Loaded as the node will load it, so a damaged pair fails here, by name.
    let identity = accord_node::tls::TlsIdentity::load(&cert, &key)?;
    Ok(DemoNode {
        org,
        folder,
        token,
        fingerprint: identity.fingerprint(),
    })
}

/// The addresses an earlier run wrote into the node configs, if every node has one.
fn previous_addresses(demo: &Demo) -> Option<Vec<SocketAddr>> {
    demo.nodes
        .iter()
        .map(|node| {
            let text = std::fs::read_to_string(node.node_config()).ok()?;
            let raw: accord_node::config::RawNodeConfig = toml::from_str(&text).ok()?;
            Some(raw.listen)
        })
        .collect()
}

/// Where the demo's nodes listen: gRPC and the calendar's HTTP, in node order.
struct Addresses {
    grpc: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
}

/// Binds each node's calendar listener on its gRPC port + 80 (7480 for 7400), or a
/// port the OS picks when that one is taken.
async fn bind_http(grpc: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in grpc {
        let preferred = address
            .port()
            .checked_add(80)
            .filter(|_| address.port() != 0)
            .map(|port| SocketAddr::new(address.ip(), port));
        let listener = match preferred {
            Some(p) => match TcpListener::bind(p).await {
                Ok(l) => l,
                Err(_) => TcpListener::bind(SocketAddr::new(address.ip(), 0)).await?,
            },
            None => TcpListener::bind(SocketAddr::new(address.ip(), 0)).await?,
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The calendar's address for browsers: `http://` and loopback when listening on
/// every interface.
fn http_url(address: SocketAddr) -> String {
    dial(address).replacen("https://", "http://", 1)
}

/// Binds every node's listener. An explicit --listen with a port gives the first node
/// that port and the others the next ones; port 0 lets the OS choose. Otherwise the
/// ports of the previous run are reused if they are all free, else 7400 to 7403 on
/// loopback, else ports the OS chooses.
async fn bind(demo: &Demo, listen: Option<SocketAddr>) -> Result<Vec<TcpListener>> {
    let count = demo.nodes.len();
    if let Some(listen) = listen.filter(|l| l.port() != 0) {
        return bind_all(&consecutive(listen, count)?).await;
    }
    let previous = previous_addresses(demo)
        .filter(|p| listen.is_none_or(|l| p.iter().all(|a| a.ip() == l.ip())));
    if let Some(listeners) = try_bind(previous).await {
        return Ok(listeners);
    }
    let default = match listen {
        None => Some(consecutive(DEFAULT_LISTEN, count)?),
        Some(_) => None,
    };
    if let Some(listeners) = try_bind(default).await {
        return Ok(listeners);
    }
    let ip = listen.map_or(DEFAULT_LISTEN.ip(), |l| l.ip());
    bind_all(&vec![SocketAddr::new(ip, 0); count]).await
}

/// `count` addresses from `first`, one port apart.
fn consecutive(first: SocketAddr, count: usize) -> Result<Vec<SocketAddr>> {
    (0..count)
        .map(|i| {
            u16::try_from(i)
                .ok()
                .and_then(|i| first.port().checked_add(i))
                .map(|port| SocketAddr::new(first.ip(), port))
                .ok_or_else(|| anyhow!("--listen {first}: the demo needs {count} ports from it"))
        })
        .collect()
}

/// Binds all of `addresses`, if given and free.
async fn try_bind(addresses: Option<Vec<SocketAddr>>) -> Option<Vec<TcpListener>> {
    bind_all(&addresses?).await.ok()
}

async fn bind_all(addresses: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in addresses {
        listeners.push(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?,
        );
    }
    Ok(listeners)
}

/// The address clients and peers dial: loopback when the node listens on every
/// interface.
fn dial(address: SocketAddr) -> String {
    format!("https://{}", crate::client::reachable(address))
}

/// `text` as a TOML basic string (JSON's escapes are TOML's).
pub(crate) fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

/// Node `i`'s node.toml for these addresses: home to its organisation's identity,
/// with TLS, and every other node as a pinned peer.
fn node_toml(demo: &Demo, i: usize, addresses: &Addresses) -> String {
    let http = addresses.http[i];
    let addresses = &addresses.grpc;
    let node = &demo.nodes[i];
    let org = node.org;
    let key = Path::new("../..").join(key_file(org));
    let mut text = format!(
        "# Written by `accord demo`; rewritten on every start.\n\
         data_dir = \"data\"\n\
         listen = \"{}\"\n\
         advertise = \"{}\"\n\
         charter = \"../../charter.json\"\n\
         identities = [{}]\n\
         cache_capacity_mb = 16\n\
         anti_entropy_secs = 5\n\n\
         [[operators]]\n\
         name = {}\n\
         token_sha256 = \"{}\"\n\
         identities = [{}]\n\n\
         [tls]\n\
         cert = \"tls/node.crt\"\n\
         key = \"tls/node.key\"\n\n\
         [http]\n\
         listen = \"{}\"\n\
         public_url = \"{}\"\n\
         refresh_minutes = 15\n",
        addresses[i],
        crate::client::reachable(addresses[i]),
        toml_string(&key.to_string_lossy()),
        toml_string(&format!("{}-operator", org.slug)),
        setup::token_sha256(&node.token),
        toml_string(org.name),
        http,
        http_url(http),
    );
    for (j, peer) in demo.nodes.iter().enumerate() {
        if i == j {
            continue;
        }
        text.push_str(&format!(
            "\n[[peers]]\n\
             name = {}\n\
             address = \"{}\"\n\
             cert_sha256 = \"{}\"\n",
            toml_string(peer.org.slug),
            dial(addresses[j]),
            hex::encode(peer.fingerprint),
        ));
    }
    text
}

/// Writes every node's node.toml and client.toml for these addresses.
fn write_configs(demo: &Demo, addresses: &Addresses) -> Result<()> {
    for (i, node) in demo.nodes.iter().enumerate() {
        files::write_new(
            &node.node_config(),
            node_toml(demo, i, addresses).as_bytes(),
            true,
        )?;
        let client_toml = format!(
            "# Written by `accord demo`; rewritten on every start.\n\
             node = \"{}\"\n\
             cert_sha256 = \"{}\"\n\
             token_file = \"token\"\n\
             as = {}\n",
            dial(addresses.grpc[i]),
            hex::encode(node.fingerprint),
            toml_string(node.org.name),
        );
        files::write_new(&node.client_config(), client_toml.as_bytes(), true)?;
    }
    Ok(())
}

/// Publishes each organisation's entries through its own node.
struct Seeder {
    nodes: Vec<(PublicId, Client)>,
}

impl Seeder {
    async fn publish(&mut self, author: PublicId, body: Body) -> Result<pb::PublishResponse> {
        let (_, client) = self
            .nodes
            .iter_mut()
            .find(|(key, _)| *key == author)
            .expect("every demo identity has a node");
        publish::publish(client, author, body).await
    }
}

fn intention(ballot: &str, status: pb::IntentionStatus) -> pb::Intention {
    pb::Intention {
        ballot: ballot.to_owned(),
        status: status as i32,
        visibility: pb::Visibility::Alliance as i32,
        ..Default::default()
    }
}

const HEADINGLEY: &str = "local.leeds.headingley-hyde-park.2027-05-06";
const LITTLE_LONDON: &str = "local.leeds.little-london-and-woodhouse.2027-05-06";
const HULME: &str = "local.manchester.hulme.2027-05-06";
const BROOMHILL: &str = "local.sheffield.broomhill-and-sharrow-vale.2027-05-06";
const ASHLEY: &str = "local.bristol.ashley.2027-05-06";
const BY_ELECTION: &str = "parl.leeds-central-and-headingley.by.2027-03-04";

struct SampleEvent {
    by: PublicId,
    uid: &'static str,
    title: &'static str,
    /// Days from today.
    day: u64,
    start: &'static str,
    end: &'static str,
    venue: &'static str,
    area: &'static str,
    /// Organisers besides the author.
    with: Vec<PublicId>,
    public: bool,
}

async fn seed(demo: &Demo, nodes: &mut Seeder, today: NaiveDate) -> Result<()> {
    use pb::IntentionStatus as S;
    let b = demo.key(BREAKTHROUGH);
    let g = demo.key(GREEN_LEFT);
    let r = demo.key(RADICAL);
    let s = demo.key(SECRETARIAT);

    let mut steps: Vec<(PublicId, Body)> = Vec::new();
    let mut declare = |who: PublicId, i: pb::Intention| steps.push((who, Body::Intention(i)));
    // An open clash: two members intend to stand in Headingley & Hyde Park.
    declare(
        b,
        pb::Intention {
            candidate: "Sam Example".into(),
            note: "Sample data: our strongest ward in Leeds".into(),
            visibility: pb::Visibility::Public as i32,
            ..intention(HEADINGLEY, S::Intends)
        },
    );
    declare(g, intention(HEADINGLEY, S::Intends));
    // Resolved: both intend in Hulme, the secretariat decides, the Radical Socialist
    // Alliance stands aside.
    declare(b, intention(HULME, S::Intends));
    declare(r, intention(HULME, S::Intends));
    // Pending: resolved on paper, Breakthrough has not yet stood aside.
    declare(b, intention(LITTLE_LONDON, S::Intends));
    declare(g, intention(LITTLE_LONDON, S::Intends));
    // Potential: one intends, another is considering, in a Westminster by-election.
    declare(b, intention(BY_ELECTION, S::Intends));
    declare(g, intention(BY_ELECTION, S::Considering));
    // No clash: one confirmed candidate, and a ballot only one member wants.
    declare(
        b,
        pb::Intention {
            candidate: "Alex Sample".into(),
            visibility: pb::Visibility::Public as i32,
            ..intention(BROOMHILL, S::Confirmed)
        },
    );
    declare(r, intention(ASHLEY, S::Considering));
    for (who, body) in steps.drain(..) {
        nodes.publish(who, body).await?;
    }

    nodes
        .publish(
            s,
            Body::Resolution(pb::Resolution {
                ballot: HULME.into(),
                stands: vec![b.to_vec()],
                stand_aside: vec![r.to_vec()],
                rationale: "Breakthrough came second here in 2024; RSA concentrates on Ashley"
                    .into(),
            }),
        )
        .await?;
    nodes
        .publish(
            r,
            Body::Intention(pb::Intention {
                note: "Standing aside for Breakthrough, as the secretariat resolved".into(),
                ..intention(HULME, S::StoodAside)
            }),
        )
        .await?;
    nodes
        .publish(
            s,
            Body::Resolution(pb::Resolution {
                ballot: LITTLE_LONDON.into(),
                stands: vec![g.to_vec()],
                stand_aside: vec![b.to_vec()],
                rationale: "Northern Green Left has the sitting councillor".into(),
            }),
        )
        .await?;

    // A joint statement: Breakthrough asks two partners to co-sign, both endorse.
    let statement = nodes
        .publish(
            b,
            Body::Statement(pb::Statement {
                title: "One progressive candidate per ward in May 2027".into(),
                text: "The parties of the Progressive Alliance of the Left will not split the \
                   vote: in every ward of the May 2027 local elections we back one \
                   progressive candidate. (Sample text.)"
                    .into(),
                cosigners: vec![g.to_vec(), r.to_vec()],
            }),
        )
        .await?;
    for who in [g, r] {
        nodes
            .publish(
                who,
                Body::Endorsement(pb::Endorsement {
                    statement: statement.id.clone(),
                }),
            )
            .await?;
    }
    nodes
        .publish(
            s,
            Body::Statement(pb::Statement {
                title: "Clash resolution timetable".into(),
                text: "Declare intentions for May 2027 by the end of January; the secretariat \
                   resolves clashes in order of close of nominations. (Sample text.)"
                    .into(),
                cosigners: Vec::new(),
            }),
        )
        .await?;

    // A week of events from tomorrow, two of them at the same venue at the same time.
    let day = |n: u64| {
        today
            .checked_add_days(Days::new(n))
            .expect("a date in range")
            .format("%Y-%m-%d")
            .to_string()
    };
    let events = [
        SampleEvent {
            by: b,
            uid: "canvass-briefing-headingley",
            title: "Canvass briefing: Headingley & Hyde Park",
            day: 1,
            start: "19:00",
            end: "21:00",
            venue: "Headingley Community Centre, Leeds",
            area: "",
            with: vec![g],
            public: true,
        },
        SampleEvent {
            by: g,
            uid: "members-meeting-hyde-park",
            title: "Hyde Park members' meeting",
            day: 1,
            start: "19:30",
            end: "21:00",
            venue: "Headingley Community Centre, Leeds",
            area: "",
            with: vec![],
            public: false,
        },
        SampleEvent {
            by: r,
            uid: "hulme-stand-aside-explained",
            title: "Hulme: why we stand aside",
            day: 2,
            start: "18:30",
            end: "20:00",
            venue: "Zion Arts Centre, Manchester",
            area: "E05011368",
            with: vec![b],
            public: true,
        },
        SampleEvent {
            by: g,
            uid: "leafleting-little-london",
            title: "Leafleting day, Little London",
            day: 3,
            start: "10:00",
            end: "13:00",
            venue: "Little London Community Centre, Leeds",
            area: "",
            with: vec![],
            public: true,
        },
        SampleEvent {
            by: b,
            uid: "hustings-prep-broomhill",
            title: "Hustings preparation, Broomhill",
            day: 4,
            start: "19:00",
            end: "21:00",
            venue: "Broomhill Community Hall, Sheffield",
            area: "E05010857",
            with: vec![],
            public: false,
        },
        SampleEvent {
            by: s,
            uid: "secretariat-open-meeting",
            title: "Secretariat open meeting",
            day: 5,
            start: "14:00",
            end: "16:00",
            venue: "Online (link sent to members)",
            area: "",
            with: vec![],
            public: false,
        },
        SampleEvent {
            by: b,
            uid: "street-stall-hulme",
            title: "Joint street stall, Hulme",
            day: 6,
            start: "11:00",
            end: "15:00",
            venue: "Hulme High Street, Manchester",
            area: "",
            with: vec![r],
            public: true,
        },
        SampleEvent {
            by: g,
            uid: "by-election-launch",
            title: "By-election campaign launch",
            day: 7,
            start: "18:00",
            end: "20:00",
            venue: "Leeds Civic Hall steps",
            area: "",
            with: vec![b],
            public: true,
        },
        SampleEvent {
            by: r,
            uid: "ashley-social",
            title: "Ashley social evening",
            day: 5,
            start: "19:00",
            end: "22:00",
            venue: "Easton Community Centre, Bristol",
            area: "",
            with: vec![],
            public: false,
        },
    ];
    for e in events {
        let SampleEvent {
            by: who,
            uid,
            title,
            day: n,
            start,
            end,
            venue,
            area,
            with,
            public,
        } = e;
        let mut organisers = vec![who.to_vec()];
        organisers.extend(with.iter().map(PublicId::to_vec));
        nodes
            .publish(
                who,
                Body::Event(pb::Event {
                    uid: uid.into(),
                    title: title.into(),
                    description: "Sample event".into(),
                    start: format!("{}T{start}", day(n)),
                    end: format!("{}T{end}", day(n)),
                    time_zone: "Europe/London".into(),
                    venue: venue.into(),
                    area: area.into(),
                    organisers,
                    visibility: if public {
                        pb::Visibility::Public
                    } else {
                        pb::Visibility::Alliance
                    } as i32,
                    cancelled: false,
                    all_day: false,
                }),
            )
            .await?;
    }
    // One cancelled event, kept for the record.
    let mut cancelled = pb::Event {
        uid: "ashley-quiz-night".into(),
        title: "Ashley quiz night".into(),
        description: "Sample event, later cancelled".into(),
        start: format!("{}T19:30", day(4)),
        end: format!("{}T22:00", day(4)),
        time_zone: "Europe/London".into(),
        venue: "The Plough, Bristol".into(),
        area: String::new(),
        organisers: vec![r.to_vec()],
        visibility: pb::Visibility::Alliance as i32,
        cancelled: false,
        all_day: false,
    };
    nodes.publish(r, Body::Event(cancelled.clone())).await?;
    cancelled.cancelled = true;
    nodes.publish(r, Body::Event(cancelled)).await?;
    // One event moved after it was first published (its SEQUENCE is 1), in Welsh and
    // English, with the punctuation calendar feeds must escape.
    let mut moved = pb::Event {
        uid: "ynys-mon-public-meeting".into(),
        title: "Public meeting, Ynys Môn: costau byw / cost of living".into(),
        description: "Croeso i bawb; everyone welcome.\nBSL interpreted, step-free access, tea and bara brith. (Sample event.)"
            .into(),
        start: format!("{}T18:00", day(9)),
        end: format!("{}T20:00", day(9)),
        time_zone: "Europe/London".into(),
        venue: "Neuadd y Dref, Llangefni, Ynys Môn".into(),
        area: "W06000001".into(),
        organisers: vec![g.to_vec(), b.to_vec()],
        visibility: pb::Visibility::Public as i32,
        cancelled: false,
        all_day: false,
    };
    nodes.publish(g, Body::Event(moved.clone())).await?;
    moved.start = format!("{}T18:30", day(10));
    moved.end = format!("{}T20:30", day(10));
    nodes.publish(g, Body::Event(moved)).await?;
    // One all-day event over a weekend: dates, not times.
    let weekend = pb::Event {
        uid: "weekend-of-action".into(),
        title: "Weekend of action".into(),
        description: "Sample all-day event: stalls and door-knocking across the city.".into(),
        start: day(12),
        end: day(13),
        time_zone: "Europe/London".into(),
        venue: String::new(),
        area: String::new(),
        organisers: vec![b.to_vec(), g.to_vec()],
        visibility: pb::Visibility::Public as i32,
        cancelled: false,
        all_day: true,
    };
    nodes.publish(b, Body::Event(weekend)).await?;
    Ok(())
}

fn write_demo_json(demo: &Demo, addresses: &Addresses, member_tokens: &[String]) -> Result<()> {
    let dir = &demo.dir;
    let value = json!({
        "alliance": {"id": demo.charter.id().to_string(), "name": demo.charter.name()},
        "nodes": demo.nodes.iter().enumerate().map(|(i, node)| json!({
            "name": node.org.slug,
            "grpc": dial(addresses.grpc[i]),
            "http": http_url(addresses.http[i]),
            "calendar": {
                "page": format!("{}/", http_url(addresses.http[i])),
                "feed": format!("{}/calendar.ics", http_url(addresses.http[i])),
                "member_page": format!("{}/m/{}/", http_url(addresses.http[i]), member_tokens[i]),
                "member_feed": format!("{}/m/{}/calendar.ics", http_url(addresses.http[i]), member_tokens[i]),
                "member_token_file": node.folder.join("member-token"),
            },
            "cert_sha256": hex::encode(node.fingerprint),
            "client_config": node.client_config(),
            "node_config": node.node_config(),
            "token_file": node.folder.join("token"),
            "data_dir": node.folder.join("data"),
            "organisation": node.org.name,
        })).collect::<Vec<_>>(),
        "organisations": ORGS.iter().map(|org| json!({
            "name": org.name,
            "id": demo.key(org.name).to_string(),
            "role": if org.ec_id.is_some() { "member" } else { "secretary" },
            "ec_id": org.ec_id,
            "node": org.slug,
            "key_file": dir.join(key_file(org)),
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&value)? + "\n";
    // Written whole, then renamed: a reader never sees half a file.
    // It holds members' links: readable by its owner only (0600).
    let temporary = dir.join("demo.json.tmp");
    files::write_secret(&temporary, text.as_bytes(), true)?;
    std::fs::rename(&temporary, dir.join("demo.json"))
        .with_context(|| format!("cannot write {}", dir.join("demo.json").display()))
}

fn print_summary(
    demo: &Demo,
    addresses: &Addresses,
    seeded: bool,
    entries: u64,
    digest: &str,
    member_tokens: &[String],
) {
    let dir = demo.dir.display();
    let rows: Vec<Vec<String>> = demo
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            vec![
                node.org.slug.to_owned(),
                dial(addresses.grpc[i]),
                http_url(addresses.http[i]),
                node.org.name.to_owned(),
                node.client_config().display().to_string(),
            ]
        })
        .collect();
    let nodes = table(
        &["NODE", "GRPC", "CALENDAR", "HOME TO", "CLIENT CONFIG"],
        &rows,
    );
    let calendar = http_url(addresses.http[0]);
    let member = format!("{calendar}/m/{}/", member_tokens[0]);
    let config = |slug: &str| {
        demo.dir
            .join("nodes")
            .join(slug)
            .join("client.toml")
            .display()
            .to_string()
    };
    let clashes: String = demo
        .nodes
        .iter()
        .map(|n| format!("  accord --config {} clashes\n", config(n.org.slug)))
        .collect();
    let green_left = config("northern-green-left");
    let radical = config("radical-socialist-alliance");
    let secretariat = config("pal-secretariat");
    println(&format!(
        "Demo alliance \"{ALLIANCE}\" ({id})\n\
         {count} nodes on loopback, each home to one organisation, a full mesh over TLS \
         with pinned self-signed certificates:\n\
         \n\
         {nodes}\n\
         {what}\n\
         every node holds the same {entries} entries (digest {digest})\n\
         files in {dir}: demo.json, charter.json, keys/, nodes/NODE/{{node.toml, client.toml, token, tls/, data/}}\n\
         \n\
         The members' calendar, served by every node from its own replica:\n  \
           public page:      {calendar}/\n  \
           public feed:      {calendar}/calendar.ics  (subscribe: webcal://{calendar_host}/calendar.ics)\n  \
           a member's page:  {member}  (members-only events and the clash board)\n  \
           accord --config {secretariat} feed link \"Jo Bloggs (Leeds)\"   (a new member link)\n\
         \n\
         Every node derives the same state, so every node shows the same clashes:\n\
         {clashes}\
         \n\
         Try, in another terminal:\n  \
           accord --config {secretariat} status        (peers, heads, digest)\n  \
           accord --config {radical} clashes watch\n  \
           accord --config {green_left} intention declare --ballot {ASHLEY} --status intends\n  \
           (Northern Green Left publishes through its own node; the watch above sees the new\n  \
           clash arrive through replication)\n  \
           export ACCORD_CONFIG={secretariat}\n  \
           accord resolutions; accord statements; accord events; accord event-clashes\n  \
           accord resolve --ballot {ASHLEY} --stands \"{RADICAL}\" --stand-aside \"{GREEN_LEFT}\" --rationale \"...\"\n\
         \n\
         Press Ctrl-C to stop all {count} nodes.",
        id = demo.charter.id(),
        count = demo.nodes.len(),
        calendar_host = calendar.trim_start_matches("http://"),
        what = if seeded {
            "each organisation published its sample intentions, resolutions, statements and events through its own node"
        } else {
            "reusing the existing ledgers"
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_take_consecutive_ports_from_listen() {
        let first: SocketAddr = "127.0.0.1:7400".parse().unwrap();
        let ports: Vec<u16> = consecutive(first, 4)
            .unwrap()
            .iter()
            .map(SocketAddr::port)
            .collect();
        assert_eq!(ports, [7400, 7401, 7402, 7403]);
        let last: SocketAddr = "127.0.0.1:65533".parse().unwrap();
        assert!(consecutive(last, 4).is_err());
    }

    #[test]
    fn peers_dial_loopback_when_a_node_listens_everywhere() {
        let any: SocketAddr = "0.0.0.0:7400".parse().unwrap();
        assert_eq!(dial(any), "https://127.0.0.1:7400");
        let any6: SocketAddr = "[::]:7400".parse().unwrap();
        assert_eq!(dial(any6), "https://[::1]:7400");
        let here: SocketAddr = "127.0.0.1:7401".parse().unwrap();
        assert_eq!(dial(here), "https://127.0.0.1:7401");
    }
}
