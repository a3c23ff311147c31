//! A full disk, made real: the node's data directory lives on a small tmpfs that the
//! test mounts (tests run as root) and fills. The node must refuse to start below
//! its free-space floor (sled could leave a broken snapshot), and when a write fails
//! while running it must turn read-only: queries answer, `GetStatus`, `/healthz`,
//! `/metrics`, gRPC health and the CLI all say the storage failed, SIGINT stops it within 5 s,
//! and a restart after space is freed loses nothing acknowledged.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use accord_core::pb;
use accord_tests::*;

const ACCORD: &str = env!("CARGO_BIN_EXE_accord");

/// A tmpfs of `size` mounted at a fresh directory; unmounted on drop.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (the tests run as root): {status}",
            at.display()
        );
        Self { at: at.to_owned() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// A running `accord node`; killed on drop.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    fn start(config: &Path) -> Result<Self, String> {
        Self::start_or_exit(config).map_err(|(_, err)| err)
    }

    /// Starts the node, or returns how it exited (None: it never said it was
    /// listening within 60 s and was killed) and its stderr.
    fn start_or_exit(config: &Path) -> Result<Self, (Option<i32>, String)> {
        let mut child = Command::new(ACCORD)
            .args(["node", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning accord node");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => {
                // Keep stderr drained so the node never blocks on it.
                std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
                Ok(Self {
                    child,
                    addr: addr.parse().expect("a socket address"),
                })
            }
            Err(_) => {
                let _ = child.kill();
                let exit = child.wait().ok().and_then(|e| e.code());
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                Err((exit, text))
            }
        }
    }

    /// SIGINT, then waits (at most `limit`) for the process to end.
    fn interrupt(self, limit: Duration) -> Duration {
        self.signal("-INT", limit)
    }

    /// Sends `signal` (`-INT`, `-TERM`), then waits (at most `limit`) for the process
    /// to end.
    fn signal(mut self, signal: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill -INT");
        while started.elapsed() < limit {
            if self.child.try_wait().expect("try_wait").is_some() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the node did not stop within {limit:?} of {signal}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node config whose data directory is `mnt/data` beside it, with a free-space
/// floor of `floor_mb` (None: the default), and the calendar's port.
fn config_on_mount(a: &mut TestAlliance, floor_mb: Option<u64>) -> (PathBuf, PathBuf, u16) {
    let home = a.members[0].clone();
    let config = a.node_config_with_calendar(&[&home], &[]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("data_dir = \"data\"", "data_dir = \"mnt/data\"");
    if let Some(mb) = floor_mb {
        text = format!("min_free_disk_mb = {mb}\n{text}");
    }
    std::fs::write(&config, &text).unwrap();
    let port = text
        .split("[http]\nlisten = \"127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|p| p.parse().ok())
        .expect("the calendar's port in the config");
    let mnt = config.parent().unwrap().join("mnt");
    (config, mnt, port)
}

/// GET `path` from the calendar: status code and body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Writes zeros into `path` until the filesystem is full (bounded by `limit` bytes).
fn fill(path: &Path, limit: u64) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 16];
    let mut written = 0u64;
    while written < limit {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.sync_all();
}

/// Starts the node again once space is freed, and checks it holds every entry in
/// `acked`: the node and a client of it.
async fn restart_holding(config: &Path, acked: &[Vec<u8>]) -> (Node, Client) {
    let node = Node::start(config).expect("the node starts once space is freed");
    let mut c = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
    let stored = all_entries(&mut c).await.unwrap();
    let ids: std::collections::BTreeSet<Vec<u8>> = stored.iter().map(entry_id).collect();
    let lost = acked.iter().filter(|id| !ids.contains(*id)).count();
    assert_eq!(lost, 0, "acknowledged entries lost");
    (node, c)
}

/// Publishes statements of 19 kB as `author` until one is refused (at most
/// `attempts`), pushing each acknowledged id to `acked`: the refusal, if any.
async fn publish_until_refused(
    c: &mut Client,
    author: &accord_core::Identity,
    title: &str,
    attempts: usize,
    acked: &mut Vec<Vec<u8>>,
) -> Option<tonic::Status> {
    let big = "x".repeat(19_000);
    for i in 0..attempts {
        let body = pb::publish_request::Body::Statement(pb::Statement {
            title: format!("{title} after {i}"),
            text: big.clone(),
            cosigners: vec![],
        });
        match publish(c, author, body).await {
            Ok(ack) => acked.push(ack.id),
            Err(status) => return Some(status),
        }
    }
    None
}

/// Runs `accord node` expecting it to refuse to start: its stderr.
fn refused_start(config: &Path) -> String {
    let mut child = Command::new(ACCORD)
        .args(["node", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning accord node");
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node did not refuse to start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!exit.success(), "{err}");
    err
}

#[test]
fn a_node_refuses_to_start_below_its_free_space_floor() {
    let mut a = TestAlliance::new(2, 0);
    let (config, mnt, _) = config_on_mount(&mut a, None);
    let _fs = Tmpfs::mount(&mnt, "16m");
    let err = refused_start(&config);
    assert!(
        err.contains("below the floor of 64 MiB") && err.contains("min_free_disk_mb"),
        "{err}"
    );
    assert!(
        !mnt.join("data").join("db").exists(),
        "nothing was written to the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_node_read_only_and_a_restart_after_freeing_space_loses_nothing() {
    const ATTEMPTS: usize = 400;
    let mut a = TestAlliance::new(2, 0);
    let author = a.members[0].clone();
    let (config, mnt, port) = config_on_mount(&mut a, Some(1));
    let _fs = Tmpfs::mount(&mnt, "48m");
    let node = Node::start(&config).expect("the node starts");
    let mut c = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let ack = publish(&mut c, &author, statement(&format!("before {i}"), vec![]))
            .await
            .unwrap();
        acked.push(ack.id);
    }

    fill(&mnt.join("filler"), 64 << 20);
    let failure = publish_until_refused(&mut c, &author, "after", ATTEMPTS, &mut acked)
        .await
        .expect("a write fails on a full disk");
    assert_eq!(failure.code(), tonic::Code::Unavailable, "{failure:?}");
    assert!(
        failure.message().starts_with("the node's storage failed"),
        "{failure:?}"
    );

    // Read-only: queries answer, and every window on the node says why.
    let status = c
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!status.storage_failed.is_empty());
    assert_eq!(status.entries, acked.len() as u64);
    let again = publish(&mut c, &author, statement("once more", vec![]))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::Unavailable);
    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("storage failed"), "{body}");
    // Prometheus sees it too (the alert AccordStorageFailed fires on these).
    let (code, metrics) = http_get(port, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("\naccord_storage_failed 1\n"), "{metrics}");
    assert!(
        metrics.contains("\naccord_storage_failures_total 1\n"),
        "{metrics}"
    );
    let channel = channel(node.addr).await.unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    // The container HEALTHCHECK's command says so too, and exits non-zero.
    let probe = Command::new(ACCORD)
        .args(["healthcheck", "--config"])
        .arg(&config)
        .arg("--address")
        .arg(node.addr.to_string())
        .output()
        .unwrap();
    assert!(!probe.status.success());
    assert!(
        String::from_utf8_lossy(&probe.stderr).contains("NOT_SERVING"),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let client_toml = config.parent().unwrap().join("client.toml");
    std::fs::write(config.parent().unwrap().join("token"), ADMIN_TOKEN).unwrap();
    std::fs::write(
        &client_toml,
        format!("node = \"http://{}\"\ntoken_file = \"token\"\n", node.addr),
    )
    .unwrap();
    let shown = Command::new(ACCORD)
        .args(["status", "--config"])
        .arg(&client_toml)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("storage   FAILED: "), "{text}");

    drop(c);
    let stopped = node.interrupt(Duration::from_secs(5));
    eprintln!("stopped {stopped:?} after SIGINT");
    // A start while the disk is still full is refused before sled writes anything.
    let err = refused_start(&config);
    assert!(err.contains("below the floor of 1 MiB"), "{err}");

    std::fs::remove_file(mnt.join("filler")).unwrap();
    let (_node, mut c) = restart_holding(&config, &acked).await;
    publish(&mut c, &author, statement("after the restart", vec![]))
        .await
        .unwrap();
}

/// Issue 21: a node whose disk filled logged "stopping" and never exited in half of
/// the trials (sled's flush waiting for ever). SIGTERM and SIGINT, alternately, must
/// stop it within 10 s every time, and a restart once space is freed loses nothing
/// it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_a_node_whose_disk_filled_within_10_s_every_time() {
    const TRIALS: usize = 6;
    let mut a = TestAlliance::new(2, 0);
    let author = a.members[0].clone();
    let (config, mnt, _port) = config_on_mount(&mut a, Some(1));
    let _fs = Tmpfs::mount(&mnt, "48m");
    let mut acked = Vec::new();
    for trial in 0..TRIALS {
        let node = Node::start(&config).expect("the node starts");
        let mut c = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
        let ack = publish(
            &mut c,
            &author,
            statement(&format!("trial {trial}"), vec![]),
        )
        .await
        .unwrap();
        acked.push(ack.id);
        fill(&mnt.join("filler"), 64 << 20);
        let failed =
            publish_until_refused(&mut c, &author, &format!("trial {trial}"), 400, &mut acked)
                .await
                .is_some();
        assert!(failed, "trial {trial}: a write fails on a full disk");
        drop(c);
        let signal = if trial % 2 == 0 { "-TERM" } else { "-INT" };
        let took = node.signal(signal, Duration::from_secs(10));
        eprintln!("trial {trial}: stopped {took:?} after {signal}");
        std::fs::remove_file(mnt.join("filler")).unwrap();
    }
    let (node, _c) = restart_holding(&config, &acked).await;
    node.interrupt(Duration::from_secs(10));
}

/// `accord store check` on a node's real store: sound after a clean stop; refused
/// while the node runs; after an entry is tampered with on disk (as a failing disk
/// or a careless hand would), it names the damage and how far the log is whole,
/// exits non-zero, and the node refuses to start with one line saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_check_reports_a_sound_store_and_names_damage() {
    let mut a = TestAlliance::new(2, 0);
    let author = a.members[0].clone();
    let config = a.node_config(&[&author], &[]);
    let check = |json: bool| {
        let mut cmd = Command::new(ACCORD);
        cmd.args(["store", "check", "--config"]).arg(&config);
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("running accord store check")
    };
    let node = Node::start(&config).expect("the node starts");
    let mut c = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
    for i in 0..5 {
        publish(&mut c, &author, statement(&format!("s{i}"), vec![]))
            .await
            .unwrap();
    }
    let stored = all_entries(&mut c).await.unwrap();
    drop(c);
    let busy = check(false);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("the store is in use"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    node.interrupt(Duration::from_secs(5));

    let sound = check(true);
    assert!(
        sound.status.success(),
        "{}",
        String::from_utf8_lossy(&sound.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&sound.stdout).unwrap();
    assert_eq!(report["entries"], 5);
    assert_eq!(report["sound"], true);
    assert_eq!(report["logs"][0]["whole_to"], 5);

    // Entry 3's signature damaged in place.
    let mut bad = stored[2].clone();
    bad.signature[10] ^= 0x40;
    let data = config.parent().unwrap().join("data");
    store_entries(&data, a.charter.id(), &[bad]).await.unwrap();
    let damaged = check(false);
    assert!(!damaged.status.success());
    let out = String::from_utf8_lossy(&damaged.stdout);
    assert!(out.contains("signature does not verify"), "{out}");
    let err = String::from_utf8_lossy(&damaged.stderr);
    assert!(err.contains("a node would refuse it"), "{err}");
    assert!(
        err.contains(&format!(
            "accord node --rebuild --config {}",
            config.display()
        )),
        "{err}"
    );
    let json = check(true);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["logs"][0]["whole_to"], 2, "{report}");

    let refused = refused_start(&config);
    assert!(
        refused.contains(&format!(
            "accord node --rebuild --config {}",
            config.display()
        )),
        "{refused}"
    );
}

/// What a damaged `db` file did to a node started on it.
#[derive(Debug)]
enum Outcome {
    /// Refused to start, saying why in one line.
    Refused,
    /// Started with everything.
    Whole,
    /// Started short of what it signed, said so and refused to sign.
    ShortAndSaid,
}

/// Bytes of sled's `db` file flipped, zeroed or cut off, as a failing disk or a
/// crash of the filesystem would leave them. Whatever sled then recovers, a node
/// started on it never panics, names its data directory when it refuses to start,
/// and, if it starts holding less of its own log than it signed, says so (status,
/// `/healthz`) and refuses to publish: it never signs at a seq it already used. The
/// damage points cover the whole file; each outcome is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_file_never_panics_and_never_signs_a_used_seq() {
    const SIGNED: u64 = 150;
    let mut a = TestAlliance::new(2, 0);
    let author = a.members[0].clone();
    let config = a.node_config_with_calendar(&[&author], &[]);
    let port: u16 = std::fs::read_to_string(&config)
        .unwrap()
        .split("[http]\nlisten = \"127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|p| p.parse().ok())
        .expect("the calendar's port in the config");
    let folder = config.parent().unwrap().to_owned();
    let data = folder.join("data");
    let pristine = folder.join("pristine");

    let node = Node::start(&config).expect("the node starts");
    let mut c = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
    let text = "y".repeat(2_000);
    for i in 0..SIGNED {
        let body = pb::publish_request::Body::Statement(pb::Statement {
            title: format!("s{i}"),
            text: text.clone(),
            cosigners: vec![],
        });
        publish(&mut c, &author, body).await.unwrap();
    }
    drop(c);
    // Killed, not stopped: sled's files are as a crash leaves them.
    drop(node);
    copy_tree(&data, &pristine);
    let db_len = std::fs::metadata(data.join("db")).unwrap().len();
    assert!(
        db_len > 100_000,
        "sled's db file holds the entries: {db_len}"
    );

    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let mut damages: Vec<(String, Damage)> = Vec::new();
    for tenth in [1u64, 3, 5, 7, 9] {
        let at = (db_len * tenth / 10) as usize;
        damages.push((
            format!("byte {at} flipped"),
            Box::new(move |b: &mut Vec<u8>| b[at] ^= 0x5a),
        ));
    }
    for eighth in [1u64, 4, 7] {
        let at = (db_len * eighth / 8) as usize;
        damages.push((
            format!("4 KiB zeroed at {at}"),
            Box::new(move |b: &mut Vec<u8>| {
                let end = (at + 4096).min(b.len());
                b[at..end].fill(0);
            }),
        ));
    }
    for fraction in [2u64, 10] {
        let keep = (db_len / fraction) as usize;
        damages.push((
            format!("cut to {keep} bytes"),
            Box::new(move |b: &mut Vec<u8>| b.truncate(keep)),
        ));
    }
    damages.push(("emptied".to_owned(), Box::new(|b: &mut Vec<u8>| b.clear())));

    let mut outcomes = Vec::new();
    for (what, damage) in &damages {
        std::fs::remove_dir_all(&data).unwrap();
        copy_tree(&pristine, &data);
        let mut bytes = std::fs::read(data.join("db")).unwrap();
        damage(&mut bytes);
        std::fs::write(data.join("db"), &bytes).unwrap();

        let checked = Command::new(ACCORD)
            .args(["store", "check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let check_err = String::from_utf8_lossy(&checked.stderr).into_owned();
        assert_ne!(checked.status.code(), Some(101), "{what}: {check_err}");
        assert!(!check_err.contains("panicked"), "{what}: {check_err}");

        let outcome = match Node::start_or_exit(&config) {
            Err((exit, err)) => {
                assert!(
                    exit.is_some(),
                    "{what}: the node neither started nor exited"
                );
                assert_ne!(exit, Some(101), "{what}: the node panicked: {err}");
                assert!(!err.contains("panicked"), "{what}: {err}");
                let last = err.lines().last().unwrap_or_default();
                assert!(
                    last.contains(&data.display().to_string()),
                    "{what}: the refusal names the data directory: {err}"
                );
                Outcome::Refused
            }
            Ok(node) => {
                let mut c = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
                let status = c
                    .get_status(pb::GetStatusRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                let attempt = publish(&mut c, &author, statement("after the damage", vec![])).await;
                let outcome = if status.entries >= SIGNED {
                    let ack = attempt.unwrap_or_else(|e| panic!("{what}: {e:?}"));
                    assert_eq!(ack.seq, SIGNED + 1, "{what}");
                    Outcome::Whole
                } else {
                    let lost = status.lost_own_entries.first().unwrap_or_else(|| {
                        panic!(
                            "{what}: started with {} of {SIGNED} entries and said nothing",
                            status.entries
                        )
                    });
                    assert_eq!(lost.signed_seq, SIGNED, "{what}");
                    let refused = attempt.expect_err("a node short of its own log must not sign");
                    assert_eq!(
                        refused.code(),
                        tonic::Code::Unavailable,
                        "{what}: {refused:?}"
                    );
                    let (code, body) = http_get(port, "/healthz");
                    assert_eq!(code, 503, "{what}: {body}");
                    eprintln!(
                        "{what}: started with {} of {SIGNED} entries",
                        status.entries
                    );
                    Outcome::ShortAndSaid
                };
                node.interrupt(Duration::from_secs(5));
                outcome
            }
        };
        eprintln!("{what}: {outcome:?}");
        outcomes.push(outcome);
    }
    assert!(
        outcomes.iter().any(|o| !matches!(o, Outcome::Whole)),
        "some damage was noticed: {outcomes:?}"
    );
}

/// Copies a directory tree of plain files.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_tree(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}
