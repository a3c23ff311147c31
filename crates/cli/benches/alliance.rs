//! The alliance benchmark: `cargo bench -p accord-cli --bench alliance`.
//!
//! Issue 9 ("Scale"): a full mesh of real `accord node` processes, one per member
//! party. In one run, first with `ACCORD_BENCH_ALLIANCE_SMALL` nodes (default 3),
//! then with `ACCORD_BENCH_ALLIANCE_NODES` (default 20), it publishes
//! `ACCORD_BENCH_ALLIANCE_PUBLISHES` entries (default 950) spread over the nodes
//! (each node's share on its own client, every node at once) and measures
//! - convergence: from the last acknowledged publish until every node holds every
//!   entry (entry counts polled), then the entries digests compared;
//! - node CPU per new entry: user + system time of every node process (from
//!   `/proc/PID/stat`) from just before the first publish to convergence, summed
//!   over the nodes and divided by the entries published;
//! - entries received per new entry and node (the `received` counters of the
//!   peers' status), which shows whether entries are flooded.
//!
//! Targets: node CPU per new entry with the large mesh within 3× of the small one;
//! convergence after the publishes under 1 s.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use accord_core::charter::{CharterDoc, CharterMember, Rules};
use accord_core::pb::ledger_client::LedgerClient;
use accord_core::{Identity, pb};
use accord_node::tls;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const TOKEN: &str = "alliance-bench-token";
const CPU_RATIO_TARGET: f64 = 3.0;
const CONVERGENCE_TARGET_S: f64 = 1.0;

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a count"))
        })
        .unwrap_or(default)
}

type Client = LedgerClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
struct Bearer;

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        Ok(r)
    }
}

fn client(addr: SocketAddr, pin: tls::Fingerprint) -> Client {
    let config = tls::client_config(pin, None).unwrap();
    let channel = tls::channel(&format!("https://{addr}"), config, Duration::from_secs(5)).unwrap();
    LedgerClient::with_interceptor(channel, Bearer).max_decoding_message_size(64 << 20)
}

/// `n` member parties, each with its own node in a full mesh, under `dir`.
struct Mesh {
    nodes: Vec<NodeProcess>,
    clients: Vec<Client>,
    ids: Vec<Identity>,
}

impl Mesh {
    fn start(dir: &Path, n: usize) -> Self {
        let ids: Vec<Identity> = (0..n)
            .map(|i| {
                let mut seed = [9u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Identity::from_seed(seed)
            })
            .collect();
        let doc = CharterDoc {
            accord_charter: 1,
            name: "Benchmark Alliance".into(),
            members: ids
                .iter()
                .enumerate()
                .map(|(i, id)| CharterMember {
                    name: format!("Party {i}"),
                    key: id.public_id(),
                    ec_id: None,
                })
                .collect(),
            secretaries: vec![],
            rules: Rules::default(),
        };
        std::fs::write(dir.join("charter.json"), doc.to_file_bytes()).unwrap();
        let addrs = free_addrs(n);
        let pins: Vec<tls::Fingerprint> = (0..n)
            .map(|i| {
                let node = dir.join(format!("node-{i}"));
                std::fs::create_dir_all(&node).unwrap();
                let (pem, key) = tls::generate(&["127.0.0.1".into()]).unwrap();
                std::fs::write(node.join("node.crt"), pem).unwrap();
                std::fs::write(node.join("node.key"), key).unwrap();
                std::fs::write(node.join("home.pem"), ids[i].to_pem()).unwrap();
                tls::TlsIdentity::load(&node.join("node.crt"), &node.join("node.key"))
                    .unwrap()
                    .fingerprint()
            })
            .collect();
        let configs: Vec<PathBuf> = (0..n)
            .map(|i| {
                let node = dir.join(format!("node-{i}"));
                let mut toml = format!(
                    "data_dir = \"data\"\nlisten = \"{}\"\ncharter = {:?}\n\
                     identities = [\"home.pem\"]\ncache_capacity_mb = 16\n\n\
                     [tls]\ncert = \"node.crt\"\nkey = \"node.key\"\n\n\
                     [[operators]]\nname = \"bench\"\ntoken_sha256 = \"{}\"\n\
                     identities = [\"Party {i}\"]\n",
                    addrs[i],
                    dir.join("charter.json"),
                    accord_node::token_sha256(TOKEN),
                );
                for j in (0..n).filter(|j| *j != i) {
                    toml.push_str(&format!(
                        "\n[[peers]]\nname = \"node-{j}\"\naddress = \"https://{}\"\n\
                         cert_sha256 = \"{}\"\n",
                        addrs[j],
                        hex::encode(pins[j])
                    ));
                }
                let path = node.join("node.toml");
                std::fs::write(&path, toml).unwrap();
                path
            })
            .collect();
        let nodes = configs.iter().map(|c| NodeProcess::start(c)).collect();
        let clients = (0..n).map(|i| client(addrs[i], pins[i])).collect();
        Self {
            nodes,
            clients,
            ids,
        }
    }

    /// Waits (bounded) until every node has every peer connected.
    async fn wait_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        for c in &self.clients {
            loop {
                let status = c
                    .clone()
                    .get_status(pb::GetStatusRequest { omit_digest: true })
                    .await;
                if let Ok(s) = status
                    && s.get_ref().peers.len() == self.nodes.len() - 1
                    && s.get_ref().peers.iter().all(|p| p.connected)
                {
                    break;
                }
                assert!(Instant::now() < deadline, "the mesh did not connect");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// User + system CPU seconds of every node process so far.
    fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().map(NodeProcess::cpu_seconds).sum()
    }

    /// Every node's entry count (bounded calls).
    async fn counts(&self) -> Vec<u64> {
        let calls = self.clients.iter().map(|c| {
            let mut c = c.clone();
            async move {
                c.get_status(pb::GetStatusRequest { omit_digest: true })
                    .await
                    .map_or(0, |s| s.into_inner().entries)
            }
        });
        futures::future::join_all(calls).await
    }

    /// Sums over the nodes and their peers of the entries received, the authors
    /// noted and the pulls made.
    async fn received(&self) -> (u64, u64, u64) {
        let mut total = (0, 0, 0);
        for c in &self.clients {
            let status = c
                .clone()
                .get_status(pb::GetStatusRequest { omit_digest: true })
                .await
                .unwrap()
                .into_inner();
            for p in &status.peers {
                total.0 += p.received;
                total.1 += p.notes;
                total.2 += p.pulls;
            }
        }
        total
    }

    async fn entries_digests(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in &self.clients {
            out.push(
                c.clone()
                    .get_status(pb::GetStatusRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .entries_digest,
            );
        }
        out
    }
}

/// What one mesh measured.
struct Run {
    nodes: usize,
    cpu_ms_per_entry: f64,
    convergence_s: f64,
}

async fn run(dir: &Path, n: usize, publishes: usize) -> Run {
    let mesh = Mesh::start(dir, n);
    mesh.wait_connected().await;
    // Let the start-up catch-ups and first heads checks settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // What the idle mesh spends (keepalives, anti-entropy rounds), to tell apart
    // from the cost of the entries.
    let idle_for = Duration::from_secs(3);
    let idle_before = mesh.cpu_seconds();
    tokio::time::sleep(idle_for).await;
    let idle_rate = (mesh.cpu_seconds() - idle_before) / idle_for.as_secs_f64();
    let cpu_before = mesh.cpu_seconds();
    let started = Instant::now();
    let publishing = (0..n).map(|i| {
        let mut c = mesh.clients[i].clone();
        let author = mesh.ids[i].public_id().to_vec();
        let share = publishes / n + usize::from(i < publishes % n);
        async move {
            for k in 0..share {
                c.publish(pb::PublishRequest {
                    author: author.clone(),
                    body: Some(pb::publish_request::Body::Intention(pb::Intention {
                        ballot: format!("local.leeds.ward-{}.2027-05-06", k % 300),
                        status: pb::IntentionStatus::Considering as i32,
                        ..Default::default()
                    })),
                })
                .await
                .unwrap();
            }
        }
    });
    futures::future::join_all(publishing).await;
    let published = Instant::now();
    let deadline = published + Duration::from_secs(120);
    loop {
        let counts = mesh.counts().await;
        if counts.iter().all(|c| *c == publishes as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} nodes did not converge: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let convergence = published.elapsed().as_secs_f64();
    let cpu = mesh.cpu_seconds() - cpu_before;
    let busy = started.elapsed();
    let digests = mesh.entries_digests().await;
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "{n} nodes hold different entries"
    );
    let (received, notes, pulls) = mesh.received().await;
    let received = received as f64;
    let cpu_ms_per_entry = cpu * 1000.0 / publishes as f64;
    println!(
        "{n:>3} nodes idle: {:.1} ms of node CPU a second (summed); over the {:.2}s of \
         publishing and convergence that is {:.2} ms per new entry",
        idle_rate * 1000.0,
        busy.as_secs_f64(),
        idle_rate * busy.as_secs_f64() * 1000.0 / publishes as f64,
    );
    println!(
        "{n:>3} nodes: {publishes} publishes in {:.2}s; converged {:.0} ms after the last; \
         node CPU {cpu:.2}s = {cpu_ms_per_entry:.2} ms per new entry ({:.3} ms per node); \
         received {:.2} copies per new entry and node; {notes} authors noted, {pulls} pulls",
        (published - started).as_secs_f64(),
        convergence * 1000.0,
        cpu_ms_per_entry / n as f64,
        // Each entry is new to every node but the one it was published on.
        received / (publishes as f64 * (n as f64 - 1.0)),
    );
    Run {
        nodes: n,
        cpu_ms_per_entry,
        convergence_s: convergence,
    }
}

/// Loopback addresses with free ports (bound, then released for the node to take).
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// An `accord node` process, killed when dropped.
struct NodeProcess(Child);

impl NodeProcess {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_accord"))
            .args(["node", "--config"])
            .arg(config)
            // `ACCORD_BENCH_LOG` (default "warn"): the nodes' log filter.
            .env(
                "RUST_LOG",
                std::env::var("ACCORD_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning accord node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("node did not start listening");
        Self(child)
    }

    /// User + system CPU seconds so far (fields 14 and 15 of `/proc/PID/stat`).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        // The command name (field 2) is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // `after` starts at field 3, so fields 14 and 15 are at 11 and 12.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / clock_ticks()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if it cannot say).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[tokio::main]
async fn main() {
    let small = env_size("ACCORD_BENCH_ALLIANCE_SMALL", 3);
    let large = env_size("ACCORD_BENCH_ALLIANCE_NODES", 20);
    let publishes = env_size("ACCORD_BENCH_ALLIANCE_PUBLISHES", 950);
    assert!(small >= 2 && large >= small, "sizes: 2 ≤ small ≤ large");
    println!(
        "accord alliance benchmark: full meshes of {small} and {large} node processes, \
         {publishes} publishes spread over the nodes; {} cores",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let mut runs = Vec::new();
    for n in [small, large] {
        let dir = tempfile::tempdir().unwrap();
        runs.push(run(dir.path(), n, publishes).await);
        // The stores' dirty pages, written back before the next mesh starts.
        let _ = Command::new("sync").status();
    }
    let (a, b) = (&runs[0], &runs[1]);
    let ratio = b.cpu_ms_per_entry / a.cpu_ms_per_entry;
    println!(
        "node CPU per new entry, {} nodes ÷ {} nodes: {ratio:.2} (target ≤ {CPU_RATIO_TARGET}: \
         {:.2} of the limit)",
        b.nodes,
        a.nodes,
        ratio / CPU_RATIO_TARGET
    );
    println!(
        "convergence after the publishes, {} nodes: {:.0} ms (target < {:.0} ms: {:.2} of the \
         limit); {} nodes: {:.0} ms",
        b.nodes,
        b.convergence_s * 1000.0,
        CONVERGENCE_TARGET_S * 1000.0,
        b.convergence_s / CONVERGENCE_TARGET_S,
        a.nodes,
        a.convergence_s * 1000.0
    );
}
