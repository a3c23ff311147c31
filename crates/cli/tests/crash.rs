//! kill -9 of the real `accord` binary: every acknowledged entry is there after the
//! restart, and the derived state is exactly that of the acknowledged entries.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use accord_core::pb::IntentionStatus as S;
use accord_tests::*;

const LEEDS_HHP: &str = "local.leeds.headingley-hyde-park.2027-05-06";

/// The `accord` binary, built by cargo for this package's tests.
fn accord_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_accord"))
}

/// A running `accord node` process.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    /// Starts `accord node --config CONFIG` and waits (bounded) for its
    /// `listening on ADDR` line.
    fn start(config: &Path) -> Self {
        let mut child = Command::new(accord_binary())
            .args(["node", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning accord node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "no `listening on` line within 60s: {e}; status {:?}",
                    child.try_wait()
                );
            }
        };
        Self { child, addr }
    }

    /// SIGKILL, no clean shutdown.
    fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_entry() {
    const CLIENTS: usize = 8;
    const EACH: usize = 25;
    let mut a = TestAlliance::new(4, 0);
    let home: Vec<_> = a.members.clone();
    let config = a.node_config(&home.iter().collect::<Vec<_>>(), &[]);
    let binary = tokio::task::spawn_blocking(accord_binary).await.unwrap();
    assert!(binary.exists());

    let node = tokio::task::spawn_blocking({
        let config = config.clone();
        move || NodeProcess::start(&config)
    })
    .await
    .unwrap();
    let client = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let mut c = client.clone();
        let author = home[n % home.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..EACH {
                let body = if i % 2 == 0 {
                    statement(&format!("client {n} entry {i}"), vec![])
                } else {
                    intention(LEEDS_HHP, S::Intends, &format!("candidate {n}-{i}"))
                };
                acks.push(publish(&mut c, &author, body).await?);
            }
            Ok::<_, tonic::Status>(acks)
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.extend(task.await.unwrap().expect("acknowledged"));
    }
    assert_eq!(acks.len(), CLIENTS * EACH);
    let mut c = client.clone();
    let before = snapshot(&mut c).await.unwrap();
    drop(c);
    drop(client);

    node.kill();
    let node = tokio::task::spawn_blocking(move || NodeProcess::start(&config))
        .await
        .unwrap();
    let mut c = connect(node.addr, Some(ADMIN_TOKEN)).await.unwrap();
    let after = snapshot(&mut c).await.unwrap();
    let stored = all_entries(&mut c).await.unwrap();
    let stored_ids: BTreeSet<Vec<u8>> = stored.iter().map(entry_id).collect();
    let lost: Vec<_> = acks
        .iter()
        .filter(|r| !stored_ids.contains(&r.id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged entries lost: {lost:?}",
        lost.len()
    );
    // Nothing was in flight at the kill, so the store holds exactly the acknowledged
    // entries, and the node derives the same state as before and as computed here.
    assert_eq!(stored.len(), acks.len());
    assert_eq!(after, before);
    assert_eq!(after.digest, a.digest_of(&stored).unwrap().to_vec());
    node.kill();
}
