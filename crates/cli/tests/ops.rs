//! Running a node as infrastructure, with real `accord node` processes: Prometheus
//! metrics read by Prometheus's own parsers, JSON logs, systemd's readiness protocol
//! (`Type=notify`) over a socket the test listens on, the systemd unit checked by
//! `systemd-analyze verify`, and the alert rules and dashboard in deploy/ checked
//! against the metrics a node really serves.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use accord_core::pb;
use accord_tests::process::http_get;
use accord_tests::*;
use anyhow::{Context, bail};

const ACCORD: &str = env!("CARGO_BIN_EXE_accord");
const START: Duration = Duration::from_secs(60);

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A running `accord node`, its stdout read line by line; killed when dropped.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    http: Option<SocketAddr>,
    lines: mpsc::Receiver<String>,
}

impl NodeProcess {
    /// Starts `accord node --config CONFIG ARGS…` with `env`, stderr to `log`, and
    /// waits (bounded) for "listening on ADDR" (and "http on ADDR" if `http`).
    fn start(
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
        http: bool,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(ACCORD)
            .args(["node", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("spawning accord node")?;
        let lines = read_lines(child.stdout.take().expect("piped"));
        let mut process = Self {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            http: None,
            lines,
        };
        let deadline = Instant::now() + START;
        while process.addr.port() == 0 || (http && process.http.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match process.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        process.addr = addr.trim().parse()?;
                    } else if let Some(addr) = line.strip_prefix("http on ") {
                        process.http = Some(addr.trim().parse()?);
                    }
                }
                Err(_) => bail!(
                    "no `listening on` line within {START:?}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ),
            }
        }
        Ok(process)
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        wait_exit(&mut self.child, Duration::from_secs(20)).expect("the node stops on SIGTERM")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line of `stdout`, as it comes (the thread ends at EOF, when the process
/// exits).
fn read_lines(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A free loopback address (bound by the OS, then released for a node to bind).
fn free_addr() -> SocketAddr {
    accord_tests::node_listener()
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

// ---------------------------------------------------------------------------------
// Metrics

/// The samples of a scrape, as Prometheus's Python parsers read them.
struct Scrape {
    content_type: String,
    families: BTreeMap<String, (String, String)>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Reads `url` with `tests/interop/metrics_check.py` (prometheus_client's
    /// text-format and OpenMetrics parsers).
    fn read(url: &str) -> Self {
        let python = python::venv(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            &[python::PROMETHEUS_CLIENT],
        );
        let out = Command::new(python)
            .arg(repo_file("tests/interop/metrics_check.py"))
            .arg(url)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "the Prometheus parsers refused /metrics: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let families = json["families"]
            .as_object()
            .expect("families")
            .iter()
            .map(|(name, f)| {
                (
                    name.clone(),
                    (
                        f["type"].as_str().unwrap_or_default().to_owned(),
                        f["help"].as_str().unwrap_or_default().to_owned(),
                    ),
                )
            })
            .collect();
        let samples = json["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                (
                    s[0].as_str().expect("name").to_owned(),
                    labels,
                    s[2].as_f64().expect("value"),
                )
            })
            .collect();
        Self {
            content_type: json["content_type"].as_str().unwrap_or_default().to_owned(),
            families,
            samples,
        }
    }

    /// The value of the sample `name` whose labels include `labels`; panics unless
    /// exactly one matches.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name}{labels:?}: {} samples match; samples named so: {:?}",
            found.len(),
            self.samples
                .iter()
                .filter(|(n, _, _)| n == name)
                .collect::<Vec<_>>()
        );
        found[0]
    }
}

/// The `accord_…` names in `text` (alert expressions, dashboard queries).
fn metric_names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("accord_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}

type Pin = accord_node::tls::Fingerprint;

/// Writes a federated node's folder `name`: its home key (member `home`) and TLS
/// identity. Returns the folder and the TLS pin.
fn node_folder(alliance: &TestAlliance, name: &str, home: usize) -> anyhow::Result<(PathBuf, Pin)> {
    let folder = alliance.dir.path().join(name);
    std::fs::create_dir_all(folder.join("keys"))?;
    std::fs::write(folder.join("keys/home.pem"), alliance.member(home).to_pem())?;
    let pin = tls_identity(&folder.join("tls"))?.fingerprint();
    Ok((folder, pin))
}

/// Writes `folder/node.toml`: home to member `home`, listening on `listen`, pulling
/// from `peers`, with an HTTP listener on a port from the OS if `http`.
fn write_config(
    alliance: &TestAlliance,
    folder: &Path,
    home: usize,
    listen: SocketAddr,
    peers: &[(&str, SocketAddr, Pin)],
    http: bool,
) -> anyhow::Result<PathBuf> {
    let mut toml = format!(
        "data_dir = \"data\"\n\
         listen = \"{listen}\"\n\
         charter = {:?}\n\
         identities = [\"keys/home.pem\"]\n\
         cache_capacity_mb = 16\n\
         anti_entropy_secs = 1\n\
         \n\
         [tls]\n\
         cert = \"tls/node.crt\"\n\
         key = \"tls/node.key\"\n\
         \n\
         [[operators]]\n\
         name = \"admin\"\n\
         token_sha256 = \"{}\"\n\
         identities = [\"{}\"]\n",
        alliance.charter_path.display().to_string(),
        token_sha256(ADMIN_TOKEN),
        alliance.member(home).public_id(),
    );
    for (peer, addr, pin) in peers {
        toml += &format!(
            "\n[[peers]]\nname = \"{peer}\"\naddress = \"https://{addr}\"\ncert_sha256 = \"{}\"\n",
            hex::encode(pin)
        );
    }
    if http {
        toml +=
            "\n[http]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://calendar.example.org\"\n";
    }
    let config = folder.join("node.toml");
    std::fs::write(&config, toml)?;
    Ok(config)
}

fn ballot(i: usize) -> String {
    format!("local.leeds.ward-{i}.2027-05-06")
}

/// Node A (with the calendar's HTTP listener) peers with node B and with a node
/// that never answers. Officers publish on both, a clash forms, a member's feed link
/// is fetched; then A's /metrics, read by Prometheus's own parsers, show it all, and
/// hold neither an operator token nor a member's link anywhere. A's log warns about
/// the peer that never answers once, however often it retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_federated_node_parse_and_hold_no_secret() -> anyhow::Result<()> {
    let alliance = TestAlliance::new(2, 0);
    let (addr_a, addr_b, gone) = (free_addr(), free_addr(), free_addr());
    let (folder_a, pin_a) = node_folder(&alliance, "a", 0)?;
    let (folder_b, pin_b) = node_folder(&alliance, "b", 1)?;
    let peers_a = [("node-b", addr_b, pin_b), ("node-gone", gone, pin_b)];
    let config_a = write_config(&alliance, &folder_a, 0, addr_a, &peers_a, true)?;
    let peers_b = [("node-a", addr_a, pin_a)];
    let config_b = write_config(&alliance, &folder_b, 1, addr_b, &peers_b, false)?;
    let logs = alliance.dir.path();
    // Replication's debug lines too: the retries not logged as warnings show there.
    let debug = [("RUST_LOG", "info,accord_node::replication=debug")];
    let node_a = NodeProcess::start(&config_a, &[], &debug, &logs.join("a.log"), true)?;
    let node_b = NodeProcess::start(&config_b, &[], &[], &logs.join("b.log"), false)?;
    let http = node_a.http.expect("A serves HTTP");

    let mut a = tls_client(node_a.addr, pin_a, Some(ADMIN_TOKEN))?;
    let mut b = tls_client(node_b.addr, pin_b, Some(ADMIN_TOKEN))?;
    for i in 0..5 {
        let body = intention(&ballot(i), pb::IntentionStatus::Intends, "A. Candidate");
        publish(&mut a, alliance.member(0), body).await?;
    }
    // Party 1 intends to stand on ward 0 too: a standing clash.
    let body = intention(&ballot(0), pb::IntentionStatus::Intends, "B. Candidate");
    publish(&mut b, alliance.member(1), body).await?;
    let link = a
        .create_feed_link(pb::CreateFeedLinkRequest {
            label: "Jo Bloggs".into(),
        })
        .await?
        .into_inner();
    assert!(!link.token.is_empty());
    let (code, _) = http_get(&format!("http://{http}/m/{}/calendar.ics", link.token))?;
    assert_eq!(code, 200);
    let (code, _) = http_get(&format!("http://{http}/healthz"))?;
    assert_eq!(code, 200);
    let (code, _) = http_get(&format!("http://{http}/no-such-page"))?;
    assert_eq!(code, 404);

    // Wait (bounded) until A holds B's entry and its session with B is open.
    let url = format!("http://{http}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (code, text) = http_get(&url)?;
        assert_eq!(code, 200);
        if text.contains("\naccord_entries 6\n")
            && text.contains("accord_peer_connected{peer=\"node-b\"} 1\n")
            && text.contains("accord_clashes{state=\"open\"} 1\n")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "A's metrics did not show B's entry, the session and the clash within 30 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // No secret in any label or anywhere else.
    for secret in [
        link.token.as_str(),
        ADMIN_TOKEN,
        &token_sha256(ADMIN_TOKEN),
        &token_sha256(&link.token),
    ] {
        assert!(!text.contains(secret), "/metrics holds a secret: {secret}");
    }

    let scrape = Scrape::read(&url);
    assert!(
        scrape
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        scrape.content_type
    );
    for (name, (kind, help)) in &scrape.families {
        assert!(
            name.starts_with("accord_"),
            "{name} lacks the accord_ prefix"
        );
        assert!(!help.is_empty(), "{name} ({kind}) has no help");
    }
    let v = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels);
    // Entries and heads.
    assert_eq!(v("accord_entries", &[]), 6.0);
    assert_eq!(v("accord_log_head_seq", &[("name", "Party 0")]), 5.0);
    assert_eq!(v("accord_log_head_seq", &[("name", "Party 1")]), 1.0);
    // Publishes, their latency, group commits.
    assert_eq!(
        v(
            "accord_publishes_total",
            &[("call", "publish"), ("result", "ok")]
        ),
        5.0
    );
    assert_eq!(
        v(
            "accord_publish_duration_seconds_count",
            &[("call", "publish")]
        ),
        5.0
    );
    assert!(
        v(
            "accord_publish_duration_seconds_sum",
            &[("call", "publish")]
        ) > 0.0
    );
    assert_eq!(
        v(
            "accord_publish_duration_seconds_bucket",
            &[("call", "publish"), ("le", "+Inf")]
        ),
        5.0
    );
    let commits = v("accord_commit_batch_entries_count", &[]);
    assert!((1.0..=6.0).contains(&commits), "{commits} group commits");
    assert_eq!(v("accord_commit_batch_entries_sum", &[]), 6.0);
    assert_eq!(
        v("accord_commit_flush_duration_seconds_count", &[]),
        commits
    );
    // Verification, peers, replication.
    assert!(v("accord_signatures_verified_total", &[("source", "peer")]) >= 1.0);
    assert!(v("accord_peer_received_bytes_total", &[("peer", "node-b")]) > 0.0);
    assert!(v("accord_peer_entries_accepted_total", &[("peer", "node-b")]) >= 1.0);
    assert_eq!(
        v("accord_peer_entries_refused_total", &[("peer", "node-b")]),
        0.0
    );
    assert_eq!(v("accord_peer_connected", &[("peer", "node-b")]), 1.0);
    assert_eq!(v("accord_peer_connected", &[("peer", "node-gone")]), 0.0);
    assert_eq!(v("accord_peers_connected", &[]), 1.0);
    assert_eq!(v("accord_peer_behind_entries", &[("peer", "node-b")]), 0.0);
    let contact = v(
        "accord_peer_last_contact_timestamp_seconds",
        &[("peer", "node-b")],
    );
    assert!(
        (contact - now_ms() as f64 / 1000.0).abs() < 120.0,
        "{contact}"
    );
    assert!(
        !scrape.samples.iter().any(
            |(n, l, _)| n == "accord_peer_last_contact_timestamp_seconds"
                && l.get("peer").is_some_and(|p| p == "node-gone")
        ),
        "a peer never reached has no last contact"
    );
    assert!(v("accord_replication_lag_seconds_count", &[]) >= 1.0);
    // Clashes by state, calendar requests by status, storage.
    assert_eq!(v("accord_clashes", &[("state", "open")]), 1.0);
    assert_eq!(v("accord_clashes", &[("state", "resolved")]), 0.0);
    assert_eq!(
        v(
            "accord_calendar_requests_total",
            &[("route", "/m/{token}/calendar.ics"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "accord_calendar_requests_total",
            &[("route", "/healthz"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "accord_calendar_requests_total",
            &[("route", "other"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(v("accord_storage_failed", &[]), 0.0);
    assert_eq!(v("accord_storage_failures_total", &[]), 0.0);
    assert_eq!(v("accord_frozen_logs", &[]), 0.0);
    assert_eq!(v("accord_lost_own_entries", &[]), 0.0);

    // Every metric the alert rules and the dashboard use is one a node serves.
    let served: Vec<&str> = scrape.samples.iter().map(|(n, _, _)| n.as_str()).collect();
    for file in [
        "deploy/prometheus-alerts.yml",
        "deploy/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(repo_file(file))?;
        let names = metric_names_in(&text);
        assert!(names.len() >= 5, "{file} uses {names:?}");
        for name in names {
            assert!(
                served.contains(&name.as_str()),
                "{file} uses {name}, not served"
            );
        }
    }
    // The peer that never answers: retried again and again (backoff from 100 ms),
    // warned about once (then every 5 minutes).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(logs.join("a.log"))?;
        let tries = |level: &str| {
            log.lines()
                .filter(|l| l.contains(level) && l.contains("peer=node-gone"))
                .filter(|l| l.contains("replication:"))
                .count()
        };
        assert_eq!(tries("WARN"), 1, "{log}");
        if tries("DEBUG") >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fewer retries than expected: {log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(node_b);
    drop(node_a);
    Ok(())
}

/// The alert rules load in Prometheus (`promtool check rules`) and fire when they
/// should: `promtool test rules` runs deploy/prometheus-alerts.test.yml (a stalled
/// peer, a peer never reached, a node behind, a storage failure, a frozen log, each
/// also not firing before its time). Without promtool those are skipped, saying so,
/// and the YAML is still checked: rule groups whose every rule has an expression, a
/// severity and a summary. The dashboard is JSON whose every panel has queries.
#[test]
fn alert_rules_and_dashboard_are_well_formed() {
    let rules = repo_file("deploy/prometheus-alerts.yml");
    let promtool = |args: &[&str]| {
        Command::new("promtool")
            .args(args)
            .current_dir(repo_file("deploy"))
            .output()
    };
    match promtool(&["check", "rules", "prometheus-alerts.yml"]) {
        Ok(out) => {
            assert!(
                out.status.success(),
                "promtool check rules: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let out = promtool(&["test", "rules", "prometheus-alerts.test.yml"]).unwrap();
            assert!(
                out.status.success(),
                "promtool test rules: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => eprintln!(
            "skipped: promtool check rules and test rules (no promtool: `apt-get install \
             prometheus`, as tests/setup does); checking the YAML only"
        ),
    }
    let python = python::venv(Path::new(env!("CARGO_TARGET_TMPDIR")), &[python::PYYAML]);
    let check = r#"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
rules = [r for g in doc["groups"] for r in g["rules"]]
assert rules, "no rules"
for r in rules:
    assert r.get("alert") and r.get("expr"), r
    assert r["labels"]["severity"] in ("warning", "critical"), r
    assert r["annotations"]["summary"], r
print(" ".join(sorted(r["alert"] for r in rules)))
"#;
    let out = Command::new(python)
        .args(["-c", check])
        .arg(&rules)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = String::from_utf8_lossy(&out.stdout);
    for alert in [
        "AccordPeerStalled",
        "AccordNodeBehind",
        "AccordStorageFailed",
        "AccordLogFrozen",
    ] {
        assert!(alerts.contains(alert), "{alert} missing: {alerts}");
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            assert!(t["expr"].as_str().is_some_and(|e| e.contains("accord_")));
        }
    }
}

// ---------------------------------------------------------------------------------
// Logs

/// `--log-format json` writes one JSON object per line (timestamp, level, target,
/// message and the event's fields at the top level); the default stays human lines.
#[test]
fn json_logs_are_one_object_per_line_and_human_stays_the_default() {
    let mut alliance = TestAlliance::new(1, 0);
    let home = alliance.member(0).clone();
    let config = alliance.node_config(&[&home], &[]);
    let dir = alliance.dir.path().to_owned();

    let json_log = dir.join("json.log");
    let mut node =
        NodeProcess::start(&config, &["--log-format", "json"], &[], &json_log, false).unwrap();
    let addr = node.addr;
    assert!(node.terminate().success());
    let text = std::fs::read_to_string(&json_log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
    }
    let serving = lines
        .iter()
        .find(|l| l["message"] == "serving")
        .unwrap_or_else(|| panic!("no `serving` event: {text}"));
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["addr"], addr.to_string());
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{text}");

    let human_log = dir.join("human.log");
    let mut node = NodeProcess::start(&config, &[], &[], &human_log, false).unwrap();
    assert!(node.terminate().success());
    let text = std::fs::read_to_string(&human_log).unwrap();
    let serving = text
        .lines()
        .find(|l| l.contains(" serving"))
        .unwrap_or_else(|| panic!("no serving line: {text}"));
    assert!(
        !serving.starts_with('{') && serving.contains("INFO"),
        "{serving}"
    );
}

// ---------------------------------------------------------------------------------
// systemd

/// Datagrams on `socket` until `until` is in one, or `within` passes.
fn datagrams_until(socket: &UnixDatagram, until: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !got.iter().any(|g: &String| g.lines().any(|l| l == until)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

/// systemd's `Type=notify`: the node sends READY=1 on `NOTIFY_SOCKET` once its store
/// is open and it serves (it answers at once), STOPPING=1 on SIGTERM. A second node
/// on the same data directory (locked) sends no READY=1 and never prints "listening
/// on" (before, that line came before the store was opened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_once_serving_and_stopping_on_sigterm() {
    let mut alliance = TestAlliance::new(1, 0);
    let home = alliance.member(0).clone();
    let config = alliance.node_config(&[&home], &[]);
    let dir = alliance.dir.path().to_owned();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap())];

    let mut node = NodeProcess::start(&config, &[], &env, &dir.join("a.log"), false).unwrap();
    let ready = datagrams_until(&socket, "READY=1", Duration::from_secs(30));
    let message = ready
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1: {ready:?}"));
    assert!(
        message.contains(&format!("STATUS=serving on {}", node.addr)),
        "{message:?}"
    );
    // Serving means serving: the API answers.
    let mut client = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
    client
        .get_status(pb::GetStatusRequest::default())
        .await
        .expect("the node answers once it said READY=1");

    // The same data directory again: locked, so it fails, silently to systemd.
    let socket_path_2 = dir.join("notify-2.sock");
    let socket_2 = UnixDatagram::bind(&socket_path_2).unwrap();
    let log_2 = dir.join("b.log");
    let mut second = Command::new(ACCORD)
        .args(["node", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path_2)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_2).unwrap())
        .spawn()
        .unwrap();
    let lines = read_lines(second.stdout.take().unwrap());
    let status = wait_exit(&mut second, Duration::from_secs(30));
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second node on a locked data directory must fail: {status:?}"
    );
    let printed: Vec<String> = lines.try_iter().collect();
    assert!(
        !printed.iter().any(|l| l.starts_with("listening on")),
        "printed {printed:?} though it never served"
    );
    socket_2.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        socket_2.recv(&mut buf).is_err(),
        "a node that never served told systemd something"
    );
    let error = std::fs::read_to_string(&log_2).unwrap();
    assert!(error.contains("data"), "{error}");

    assert!(node.terminate().success());
    let stopping = datagrams_until(&socket, "STOPPING=1", Duration::from_secs(5));
    assert!(
        stopping
            .iter()
            .any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1: {stopping:?}"
    );
}

/// deploy/accord-node.service passes `systemd-analyze verify` with no warning (the
/// binary's path pointed at the one built here, since verify checks it exists), and
/// asks for `Type=notify`. A broken copy draws warnings, so the check can fail.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo_file("deploy/accord-node.service")).unwrap();
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped: systemd-analyze verify (no systemd-analyze; `apt-get install systemd`)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        let path = dir.path().join("accord-node.service");
        std::fs::write(&path, text.replace("/usr/local/bin/accord", ACCORD)).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let (ok, said) = verify(&unit);
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    let (_, said) = verify(&unit.replace("Type=notify", "Type=notiffy"));
    assert!(said.contains("notiffy"), "a broken unit passed: {said:?}");
}

// ---------------------------------------------------------------------------------
// Set-up on a fresh server

/// `accord ARGS`: stdout and stderr of a run that must succeed.
fn accord_ok(args: &[&str]) -> (String, String) {
    let out = Command::new(ACCORD)
        .args(args)
        .output()
        .expect("accord runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "accord {args:?}: {stderr}");
    (stdout, stderr)
}

/// On a fresh server the set-up commands create the folders they write into (a
/// secret's with mode 0700), and say on stderr what they wrote and where the value
/// goes: a token's hash and a certificate's fingerprint, both 64 hex digits, are no
/// longer told apart by guesswork. Stdout keeps the bare value for scripts.
#[test]
fn set_up_commands_make_missing_folders_and_say_what_they_print() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/accord");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let is_hex64 =
        |s: &str| s.trim().len() == 64 && s.trim().bytes().all(|b| b.is_ascii_hexdigit());

    let key = etc.join("keys/org.pem");
    let (out, err) = accord_ok(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(is_hex64(&out), "{out}");
    assert_eq!(mode(&etc.join("keys")), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert!(
        err.contains(key.to_str().unwrap())
            && err.contains("public key")
            && err.contains("charter"),
        "{err}"
    );

    let token = etc.join("tokens/officer.token");
    let (hash, err) = accord_ok(&["token", "new", "--out", token.to_str().unwrap()]);
    let secret = std::fs::read_to_string(&token).unwrap();
    assert_eq!(hash.trim(), token_sha256(secret.trim()));
    assert_eq!(mode(&etc.join("tokens")), 0o700);
    assert!(
        err.contains("token_sha256") && err.contains("[[operators]]") && err.contains("node.toml"),
        "{err}"
    );

    let (cert, tls_key) = (etc.join("tls/node.crt"), etc.join("tls/node.key"));
    let (fingerprint, err) = accord_ok(&[
        "tls",
        "new",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        tls_key.to_str().unwrap(),
        "--name",
        "node.example.org",
    ]);
    assert!(is_hex64(&fingerprint), "{fingerprint}");
    let (shown, _) = accord_ok(&["tls", "show", cert.to_str().unwrap()]);
    assert_eq!(shown.trim(), fingerprint.trim());
    assert!(
        err.contains("cert_sha256") && err.contains("[[peers]]") && !err.contains("token_sha256"),
        "{err}"
    );
}

/// The keys the config parser allows in one place of a file: it refuses an unknown
/// key with the list of them ("unknown field `zzz`, expected one of `a`, `b`").
fn allowed_keys(dir: &Path, text: &str, command: &[&str]) -> Vec<String> {
    let file = dir.join("probe.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(ACCORD)
        .args(command)
        .arg("--config")
        .arg(&file)
        .output()
        .expect("accord runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text} was accepted");
    // "expected one of `a`, `b`, `c`", "expected `a` or `b`" or "expected `a`".
    let list = stderr
        .split("`zzz_unknown`, expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of keys in: {stderr}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The part of a reference page under the `## ` heading that contains `heading`.
fn section<'a>(page: &'a str, heading: &str) -> &'a str {
    page.split("\n## ")
        .find(|s| s.lines().next().is_some_and(|h| h.contains(heading)))
        .unwrap_or_else(|| panic!("no section {heading}"))
}

/// deploy/node-toml.md and deploy/client-toml.md list every key the node and the
/// CLI accept, each in its section: the parsers' own lists of allowed keys are the
/// reference, so a key added without its line fails here.
#[test]
fn every_config_key_has_a_line_on_its_reference_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = std::fs::read_to_string(repo_file("deploy/node-toml.md")).unwrap();
    let base = "data_dir = \"d\"\nlisten = \"127.0.0.1:0\"\ncharter = \"c.json\"\n";
    for (heading, probe) in [
        ("Top level", format!("zzz_unknown = 1\n{base}")),
        (
            "`[[operators]]`",
            format!("{base}[[operators]]\nzzz_unknown = 1\n"),
        ),
        ("`[tls]`", format!("{base}[tls]\nzzz_unknown = 1\n")),
        ("`[[peers]]`", format!("{base}[[peers]]\nzzz_unknown = 1\n")),
        ("`[http]`", format!("{base}[http]\nzzz_unknown = 1\n")),
        ("`[limits]`", format!("{base}[limits]\nzzz_unknown = 1\n")),
    ] {
        let keys = allowed_keys(dir.path(), &probe, &["node"]);
        assert!(keys.len() >= 2, "{heading}: {keys:?}");
        let text = section(&page, heading);
        for key in keys {
            assert!(
                text.contains(&format!("| `{key}` |")),
                "node.toml key {key} ({heading}) has no line in deploy/node-toml.md"
            );
        }
    }
    let page = std::fs::read_to_string(repo_file("deploy/client-toml.md")).unwrap();
    let keys = allowed_keys(
        dir.path(),
        "zzz_unknown = 1\nnode = \"http://127.0.0.1:1\"\ntoken_file = \"t\"\n",
        &["status"],
    );
    assert!(keys.len() >= 3, "{keys:?}");
    for key in keys {
        assert!(
            page.contains(&format!("| `{key}` |")),
            "client.toml key {key} has no line in deploy/client-toml.md"
        );
    }
}
