//! Issue 21: a seeded sweep of damage to a real node's store, as a failing disk, a
//! power cut or a careless restore leaves it: one-byte flips anywhere in sled's
//! `db` file, truncations, zeroed blocks, lost and damaged snapshots; half of the
//! cases with the node's peers stopped, half with them running. For every case:
//!
//! - `accord store check --json` prints one JSON object, never panics, leaves the
//!   store's files byte for byte as they were, and says what the node then does
//!   (start, start and refill, or refuse), with the same lost logs;
//! - the node never prints a panic; it either refuses the store with one `error:`
//!   line naming the data directory and `accord node --rebuild --config …`, or starts
//!   and reports every log it holds less of than before the damage (no silent loss),
//!   with health failing exactly while such a log exists;
//! - following the printed advice never forks a log: with peers, the node refills
//!   everything, its health turns good, it publishes at the next seq of its log, and
//!   no node ever holds a fork proof; that entry survives a restart (so does one
//!   acknowledged with no peer up, in two of the cases without peers).
//!
//! `ACCORD_DAMAGE_SEED=N` replays a run (a failure prints its seed and case);
//! `ACCORD_DAMAGE_CASES=N` runs more cases (default 50); `ACCORD_DAMAGE_KEEP=DIR`
//! keeps a copy of each damaged store there.

use super::*;

/// SplitMix64: a small, seeded, portable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One kind of damage to the data directory.
#[derive(Debug, Clone)]
enum Damage {
    /// One byte of `file` xored with a non-zero mask.
    Flip { file: String, at: u64, mask: u8 },
    /// `file` cut to `keep` bytes.
    Truncate { file: String, keep: u64 },
    /// `len` bytes of `file` zeroed from `at`.
    Zero { file: String, at: u64, len: u64 },
    /// Every `snap.*` file deleted.
    LoseSnapshots,
}

impl Damage {
    fn apply(&self, data: &Path) {
        match self {
            Damage::Flip { file, at, mask } => {
                let mut bytes = std::fs::read(data.join(file)).unwrap();
                let at = (*at as usize).min(bytes.len() - 1);
                bytes[at] ^= mask;
                std::fs::write(data.join(file), bytes).unwrap();
            }
            Damage::Truncate { file, keep } => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(data.join(file))
                    .unwrap();
                f.set_len(*keep).unwrap();
            }
            Damage::Zero { file, at, len } => {
                let mut bytes = std::fs::read(data.join(file)).unwrap();
                let at = (*at as usize).min(bytes.len());
                let end = (at + *len as usize).min(bytes.len());
                bytes[at..end].fill(0);
                std::fs::write(data.join(file), bytes).unwrap();
            }
            Damage::LoseSnapshots => {
                for name in snapshots(data) {
                    std::fs::remove_file(data.join(name)).unwrap();
                }
            }
        }
    }
}

/// The names of sled's snapshot files in `data`.
fn snapshots(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.starts_with("snap.").then_some(name)
        })
        .collect()
}

/// The damage of case `i` of `n`: flips across the whole `db` file, truncations at
/// points spread over it, zeroed blocks, and snapshots lost, flipped or cut.
fn damage_for(rng: &mut Rng, i: usize, n: usize, data: &Path) -> Damage {
    let db_len = std::fs::metadata(data.join("db")).unwrap().len();
    let snaps = snapshots(data);
    let mask = (rng.below(255) + 1) as u8;
    // The position within the file: each case its own stratum, jittered.
    let stratum = |rng: &mut Rng, len: u64| {
        let width = (len / n as u64).max(1);
        (width * i as u64 + rng.below(width)).min(len.saturating_sub(1))
    };
    match i % 10 {
        0..=5 => Damage::Flip {
            file: "db".into(),
            at: stratum(rng, db_len),
            mask,
        },
        6 => Damage::Truncate {
            file: "db".into(),
            keep: db_len * (10 + rng.below(85)) / 100,
        },
        7 => Damage::Zero {
            file: "db".into(),
            at: stratum(rng, db_len) & !4095,
            len: 4096,
        },
        _ if snaps.is_empty() => Damage::Flip {
            file: "db".into(),
            at: stratum(rng, db_len),
            mask,
        },
        8 if i % 20 == 8 => Damage::LoseSnapshots,
        8 => {
            let file = snaps[0].clone();
            let len = std::fs::metadata(data.join(&file)).unwrap().len();
            Damage::Truncate {
                file,
                keep: len * rng.below(100) / 100,
            }
        }
        _ => {
            let file = snaps[0].clone();
            let len = std::fs::metadata(data.join(&file)).unwrap().len();
            Damage::Flip {
                at: rng.below(len),
                file,
                mask,
            }
        }
    }
}

/// Every file under `dir`, by path, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_dir() {
            out.extend(files(&item.path()));
        } else {
            out.insert(item.path(), std::fs::read(item.path()).unwrap());
        }
    }
    out
}

/// Text that only a panic prints (sled's own message may be quoted inside the one
/// `error:` line, as what was found).
fn assert_no_panic(what: &str, text: &str) {
    for sign in ["panicked", "RUST_BACKTRACE", "thread '", "stack backtrace"] {
        assert!(!text.contains(sign), "{what}: panic text {sign:?}:\n{text}");
    }
}

/// Each log's head as `GetStatus` reports it.
fn heads(status: &pb::NodeStatus) -> BTreeMap<Vec<u8>, u64> {
    status
        .heads
        .iter()
        .map(|h| (h.author.clone(), h.seq))
        .collect()
}

/// Every log the node reports short: author → (whole to, should hold).
fn lost(status: &pb::NodeStatus) -> BTreeMap<Vec<u8>, (u64, u64)> {
    status
        .lost_entries
        .iter()
        .chain(&status.lost_own_entries)
        .map(|l| (l.author.clone(), (l.stored_seq, l.signed_seq)))
        .collect()
}

/// Whether `accord healthcheck` says the node serves, once it agrees with
/// `expected` (health is re-judged every second) or after 3 s.
async fn healthcheck(config: &Path, expected: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let out = accord_run(&["healthcheck".as_ref(), "--config".as_ref(), config.as_ref()]);
        let serving = out.status.success();
        if serving == expected || Instant::now() >= deadline {
            return serving;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts node `i` once: Ok if it serves, Err with its last log line if it exits.
async fn start_once(node: &mut ProcNode) -> Result<(), String> {
    match NodeProcess::spawn(&node.config, &node.log_path(), &node.env, &node.args).await {
        Ok(process) => {
            node.process = Some(process);
            node.args.clear();
            let mut client = node.client();
            let deadline = Instant::now() + START;
            while client
                .get_status(pb::GetStatusRequest::default())
                .await
                .is_err()
            {
                assert!(Instant::now() < deadline, "{} never answered", node.name);
                tokio::time::sleep(POLL).await;
            }
            Ok(())
        }
        Err(_) => {
            node.args.clear();
            let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
            Err(log.lines().last().unwrap_or_default().to_owned())
        }
    }
}

/// Node 0 publishes a statement titled `title` as its home organisation.
async fn publish_as_home(fed: &ProcFederation, title: &str, what: &str) -> pb::PublishResponse {
    let home = fed.nodes[0].home.clone();
    publish(&mut fed.nodes[0].client(), &home, statement(title, vec![]))
        .await
        .unwrap_or_else(|e| panic!("{what}: publish as the home organisation: {e:?}"))
}

/// Node 0 stopped (SIGTERM) and started again: its status.
async fn restarted(fed: &mut ProcFederation) -> pb::NodeStatus {
    fed.nodes[0].terminate().await;
    fed.nodes[0].start().await.unwrap();
    fed.status(0).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_never_panics_never_claims_what_it_cannot_serve_and_never_forks() {
    let seed: u64 = std::env::var("ACCORD_DAMAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cases: usize = std::env::var("ACCORD_DAMAGE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let replay =
        format!("ACCORD_DAMAGE_SEED={seed} cargo test -p accord-cli --test federation -- damage::");
    eprintln!("damage sweep: seed {seed}, {cases} cases (replay: {replay})");
    let mut rng = Rng(seed);

    let mut fed = ProcFederation::start(false).await.unwrap();
    // A store of many pages: the organisations take turns publishing statements of
    // 1.5 kB, so each node writes the three logs interleaved, as a live alliance does.
    let text = "y".repeat(1_500);
    let mut clients: Vec<Client> = fed.nodes.iter().map(ProcNode::client).collect();
    for n in 0..120 {
        for (i, client) in clients.iter_mut().enumerate() {
            let body = pb::publish_request::Body::Statement(pb::Statement {
                title: format!("{} statement {n}", fed.nodes[i].name),
                text: text.clone(),
                cosigners: vec![],
            });
            publish(client, &fed.nodes[i].home, body).await.unwrap();
        }
    }
    drop(clients);
    fed.converge_when(CONVERGE, |s| s.entries == 360)
        .await
        .unwrap();
    let mut expected = heads(&fed.status(0).await.unwrap());
    let own = key_of(&fed.nodes[0].home);
    for i in 0..NODES {
        fed.nodes[i].terminate().await;
    }
    let folder = fed.nodes[0].folder.clone();
    let config = fed.nodes[0].config.clone();
    let data = folder.join("data");
    let pristine = folder.join("pristine");
    copy_dir(&data, &pristine);
    eprintln!("the pristine store holds {:?}", snapshots(&pristine));

    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for case in 0..cases {
        let with_peers = case >= cases / 2;
        if with_peers && fed.nodes[1].process.is_none() {
            fed.nodes[1].start().await.unwrap();
            fed.nodes[2].start().await.unwrap();
        }
        std::fs::remove_dir_all(&data).unwrap();
        for aside in std::fs::read_dir(&folder).unwrap().flatten() {
            if aside
                .file_name()
                .to_string_lossy()
                .starts_with("data.damaged-")
            {
                std::fs::remove_dir_all(aside.path()).unwrap();
            }
        }
        copy_dir(&pristine, &data);
        let damage = damage_for(&mut rng, case, cases, &data);
        damage.apply(&data);
        let what = format!(
            "case {case} ({}peers, {damage:?}; replay: {replay})",
            if with_peers { "" } else { "no " }
        );

        if let Ok(keep) = std::env::var("ACCORD_DAMAGE_KEEP") {
            // For a closer look at one case: its damaged store, before anything ran.
            let keep = Path::new(&keep).join(format!("case-{case}"));
            let _ = std::fs::remove_dir_all(&keep);
            copy_dir(&data, &keep);
        }
        // The check: one JSON object, no panic, nothing written.
        let before = files(&data);
        let checked = accord_run(&[
            "store".as_ref(),
            "check".as_ref(),
            "--json".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        let check_err = String::from_utf8_lossy(&checked.stderr).into_owned();
        assert_no_panic(&what, &check_err);
        assert!(
            matches!(checked.status.code(), Some(0 | 1)),
            "{what}: {checked:?}"
        );
        let report: serde_json::Value = serde_json::from_slice(&checked.stdout)
            .unwrap_or_else(|e| panic!("{what}: not one JSON object ({e}): {checked:?}"));
        assert!(
            files(&data) == before,
            "{what}: store check changed the store"
        );
        let verdict = report["node_would"].as_str().unwrap_or("").to_owned();
        *verdicts.entry(verdict.clone()).or_default() += 1;

        let log_start = std::fs::read_to_string(fed.nodes[0].log_path())
            .unwrap_or_default()
            .len();
        let started = start_once(&mut fed.nodes[0]).await;
        match &started {
            Err(line) => {
                assert_eq!(
                    verdict, "refuse",
                    "{what}: the node refused: {line}\n{report}"
                );
                assert!(line.starts_with("error: "), "{what}: {line}");
                assert!(line.contains(&data.display().to_string()), "{what}: {line}");
                let advice = format!("accord node --rebuild --config {}", config.display());
                assert!(line.contains(&advice), "{what}: {line}");
                // Follow the advice.
                fed.nodes[0].args = vec!["--rebuild".into()];
                start_once(&mut fed.nodes[0])
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the rebuilt node did not start: {e}"));
            }
            Ok(()) => {
                assert_ne!(verdict, "refuse", "{what}: the node started\n{report}");
            }
        }
        let status = fed.status(0).await.unwrap();
        let short = lost(&status);
        if started.is_ok() {
            // The check named the same logs as lost, as far as the node reads them.
            let checked_lost: BTreeMap<Vec<u8>, (u64, u64)> = report["lost"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let author = hex::decode(l["author_id"].as_str().unwrap()).unwrap();
                    let whole = l["whole_to"].as_u64().unwrap();
                    let should = l["expected"].as_u64().unwrap();
                    (author, (whole, should))
                })
                .collect();
            if with_peers {
                // The peers may already have refilled some of it: what the node
                // still lacks is what the check named, or less.
                for (author, (whole, should)) in &short {
                    let (checked_whole, checked_should) =
                        checked_lost.get(author).copied().unwrap_or_else(|| {
                            panic!("{what}: the node lacks a log the check did not name\n{report}")
                        });
                    assert!(
                        *whole >= checked_whole && *should == checked_should,
                        "{what}: store check and the node disagree\n{report}"
                    );
                }
                let held = heads(&status);
                for (author, (_, should)) in &checked_lost {
                    assert!(
                        short.contains_key(author)
                            || held.get(author).copied().unwrap_or(0) >= *should,
                        "{what}: the check named a loss the node neither has nor reports\n{report}"
                    );
                }
            } else {
                assert_eq!(
                    checked_lost, short,
                    "{what}: store check and the node disagree\n{report}"
                );
            }
        }
        // No silent loss: each log holds what the store held before the damage, or
        // is reported short.
        let held = heads(&status);
        for (author, seq) in &expected {
            let have = held.get(author).copied().unwrap_or(0);
            if have < *seq {
                let (whole, should) = short.get(author).copied().unwrap_or_else(|| {
                    panic!(
                        "{what}: silent loss: the log of {} is at {have} of {seq}, reported by \
                         nothing: {}\n{}",
                        hex::encode(&author[..4]),
                        status_summary(&status),
                        fed.nodes[0].log_tail(30)
                    )
                });
                assert_eq!(whole, have, "{what}");
                assert!(should >= *seq, "{what}: {should} < {seq}");
            }
        }
        // Health fails exactly while a log is short (with peers up, one may be
        // refilled and read back meanwhile: checked once refilled, below).
        if !with_peers || short.is_empty() {
            let serving = healthcheck(&config, short.is_empty()).await;
            assert_eq!(
                serving,
                short.is_empty(),
                "{what}: health {serving} with {short:?}"
            );
        }

        if with_peers {
            // Refilled and read back: health turns good, every log whole.
            let wanted = expected.clone();
            let status = fed
                .wait_status(0, CONVERGE, |s| {
                    lost(s).is_empty()
                        && wanted
                            .iter()
                            .all(|(a, seq)| heads(s).get(a).copied().unwrap_or(0) >= *seq)
                })
                .await
                .unwrap_or_else(|e| panic!("{what}: not refilled: {e}"));
            assert!(
                healthcheck(&config, true).await,
                "{what}: health after refill"
            );
            // Publishing goes on at the next seq: nothing signed twice.
            let next = heads(&status)[&own] + 1;
            let ack = publish_as_home(&fed, &format!("after case {case}"), &what).await;
            assert_eq!(ack.seq, next, "{what}");
            let total = status.entries + 1;
            fed.converge_when(CONVERGE, |s| s.entries == total)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            for i in 0..NODES {
                assert!(
                    frozen_on(&fed, i).await.is_empty(),
                    "{what}: a fork on node {i}"
                );
            }
            // What was acknowledged survives a restart.
            let after = restarted(&mut fed).await;
            assert!(
                heads(&after).get(&own).copied().unwrap_or(0) >= ack.seq && lost(&after).is_empty(),
                "{what}: after a restart: {}",
                status_summary(&after)
            );
            expected = heads(&after);
            fed.nodes[0].terminate().await;
            // The next case damages this store.
            std::fs::remove_dir_all(&pristine).unwrap();
            copy_dir(&data, &pristine);
        } else if case % 12 == 5 && started.is_ok() && !short.contains_key(&own) {
            // With no peer to ask (the publish waits 10 s for one first), what the
            // node acknowledges on a store it read around survives a restart.
            let ack = publish_as_home(&fed, &format!("alone after case {case}"), &what).await;
            assert_eq!(ack.seq, expected[&own] + 1, "{what}");
            let after = restarted(&mut fed).await;
            assert!(
                heads(&after).get(&own).copied().unwrap_or(0) >= ack.seq,
                "{what}: the acknowledged entry is gone after a restart: {}",
                status_summary(&after)
            );
            fed.nodes[0].terminate().await;
        } else {
            fed.nodes[0].terminate().await;
        }
        let log = std::fs::read_to_string(fed.nodes[0].log_path()).unwrap_or_default();
        assert_no_panic(&what, &log[log_start.min(log.len())..]);
        eprintln!(
            "{what}: {verdict}, {} logs short, {} read around",
            short.len(),
            report["read_around"]
        );
    }
    eprintln!("damage sweep: seed {seed}: {verdicts:?}");
    for i in 1..NODES {
        if fed.nodes[i].process.is_some() {
            fed.nodes[i].terminate().await;
        }
    }
}
