//! Several federated nodes over TLS with pinned certificates: replication in a mesh
//! and a chain, a partition healed, a late joiner, an injected fork, hostile peers
//! (unpinned, certificate-less, garbage, forging), unknown entry kinds and per-peer
//! status. Nodes run in-process (see `accord_tests::federation`); every wait polls a
//! condition with a deadline.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use accord_core::pb;
use accord_core::pb::IntentionStatus as S;
use accord_core::pb::federation_server::{Federation, FederationServer};
use accord_node::replication::Peer;
use accord_tests::*;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::{LEEDS_HHP, LEEDS_KIRKSTALL};

/// Generous but bounded: replication retries back off up to ten seconds.
const CONVERGE: Duration = Duration::from_secs(30);

fn ids(entries: &[pb::SignedEntry]) -> BTreeSet<Vec<u8>> {
    entries.iter().map(entry_id).collect()
}

async fn all_of(node: &FedNode) -> Vec<pb::SignedEntry> {
    let mut client = node.client().unwrap();
    all_entries(&mut client).await.unwrap()
}

async fn status_of(node: &FedNode) -> pb::NodeStatus {
    node.client()
        .unwrap()
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
}

async fn clashes_of(node: &FedNode) -> Vec<pb::Clash> {
    node.client()
        .unwrap()
        .list_clashes(pb::ListClashesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clashes
}

async fn log_of(node: &FedNode, author: &[u8]) -> Vec<pb::SignedEntry> {
    let mut client = node.client().unwrap();
    full_log(&mut client, author).await.unwrap()
}

fn ballot(i: usize) -> String {
    format!("local.leeds.ward-{i}.2027-05-06")
}

/// Publishes an intention as the node's home identity and returns the entry id.
async fn publish_on(node: &FedNode, ballot: &str, status: S) -> Vec<u8> {
    let mut client = node.client().unwrap();
    publish(&mut client, &node.home, intention(ballot, status, ""))
        .await
        .unwrap_or_else(|e| panic!("publish on {}: {e}", node.name))
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_on_one_node_reaches_all_and_a_clash_is_the_same_everywhere() {
    let mut fed = TestFederation::start(FederationSpec::new(3, Topology::FullMesh).secretariat())
        .await
        .unwrap();
    let a = publish_on(&fed.nodes[0], LEEDS_HHP, S::Intends).await;
    let snap = fed.converge_to(1, CONVERGE).await.unwrap();
    assert_eq!(snap.entries, 1);
    for node in &fed.nodes {
        let log = log_of(node, &key_of(&fed.nodes[0].home)).await;
        assert_eq!(ids(&log), BTreeSet::from([a.clone()]), "{}", node.name);
    }

    // B declares on the same ballot: a clash, derived identically everywhere.
    publish_on(&fed.nodes[1], LEEDS_HHP, S::Intends).await;
    publish_on(&fed.nodes[2], LEEDS_KIRKSTALL, S::Considering).await;
    let mut secretariat = fed.client(3).unwrap();
    publish(
        &mut secretariat,
        &fed.nodes[3].home.clone(),
        statement("A joint platform", vec![]),
    )
    .await
    .unwrap();
    let snap = fed.converge_to(4, CONVERGE).await.unwrap();
    let reference = clashes_of(&fed.nodes[0]).await;
    assert_eq!(reference.len(), 1, "{reference:?}");
    assert_eq!(reference[0].ballot, LEEDS_HHP);
    assert_eq!(reference[0].state, pb::ClashState::Open as i32);
    let parties: BTreeSet<Vec<u8>> = reference[0]
        .parties
        .iter()
        .map(|p| p.organisation.clone())
        .collect();
    assert_eq!(
        parties,
        BTreeSet::from([key_of(&fed.nodes[0].home), key_of(&fed.nodes[1].home)])
    );
    let everything = ids(&all_of(&fed.nodes[0]).await);
    for node in &fed.nodes {
        let status = status_of(node).await;
        assert_eq!(status.digest, snap.digest, "{}", node.name);
        assert_eq!(clashes_of(node).await, reference, "{}", node.name);
        assert_eq!(ids(&all_of(node).await), everything, "{}", node.name);
    }
    // The digest is the one the entries themselves give, computed outside any node.
    let entries = all_of(&fed.nodes[2]).await;
    assert_eq!(
        fed.alliance.digest_of(&entries).unwrap().to_vec(),
        snap.digest
    );
    fed.stop_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_and_both_sides_converge() {
    let mut fed = TestFederation::start(FederationSpec::new(3, Topology::FullMesh).proxied())
        .await
        .unwrap();
    let mut published = BTreeSet::new();
    published.insert(publish_on(&fed.nodes[0], &ballot(0), S::Considering).await);
    fed.converge_to(1, CONVERGE).await.unwrap();

    // Cut C off; wait until every session across the cut has ended.
    fed.isolate_and_wait(2, CONVERGE).await.unwrap();

    for i in 1..=3 {
        published.insert(publish_on(&fed.nodes[0], &ballot(i), S::Considering).await);
        published.insert(publish_on(&fed.nodes[1], &ballot(10 + i), S::Intends).await);
        published.insert(publish_on(&fed.nodes[2], &ballot(20 + i), S::Intends).await);
    }
    // A and B agree with each other on their side; C only has its own.
    fed.wait_status(1, CONVERGE, |s| s.entries == 7)
        .await
        .unwrap();
    fed.wait_status(0, CONVERGE, |s| s.entries == 7)
        .await
        .unwrap();
    let a = status_of(&fed.nodes[0]).await;
    let b = status_of(&fed.nodes[1]).await;
    let c = status_of(&fed.nodes[2]).await;
    assert_eq!(a.digest, b.digest);
    assert_eq!(c.entries, 4, "C is cut off: {}", status_summary(&c));
    assert_ne!(c.digest, a.digest);

    fed.heal_all();
    let snap = fed.converge_to(10, CONVERGE).await.unwrap();
    for node in &fed.nodes {
        assert_eq!(
            ids(&all_of(node).await),
            published,
            "{} holds every entry of both sides",
            node.name
        );
    }
    let entries = all_of(&fed.nodes[2]).await;
    assert_eq!(
        fed.alliance.digest_of(&entries).unwrap().to_vec(),
        snap.digest
    );
    fed.stop_all().await.unwrap();
}

/// A partition by blackhole (packets lost, no reset): sessions must time out by
/// themselves, and still converge after healing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_heals_and_converges() {
    let mut fed = TestFederation::start(FederationSpec::new(2, Topology::Chain).proxied())
        .await
        .unwrap();
    publish_on(&fed.nodes[0], &ballot(0), S::Considering).await;
    fed.converge_to(1, CONVERGE).await.unwrap();
    fed.proxy(0, 1).blackhole();
    fed.proxy(1, 0).blackhole();
    publish_on(&fed.nodes[0], &ballot(1), S::Considering).await;
    publish_on(&fed.nodes[1], &ballot(2), S::Considering).await;
    fed.wait_status(0, CONVERGE, |s| s.entries == 2)
        .await
        .unwrap();
    fed.wait_status(1, CONVERGE, |s| s.entries == 2)
        .await
        .unwrap();
    fed.heal_all();
    fed.converge_to(3, CONVERGE).await.unwrap();
    fed.stop_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_relays_every_authors_entries_end_to_end() {
    // A - B - C; members 3 and 4 have no node: their entries are signed elsewhere and
    // submitted at the ends of the chain.
    let mut fed = TestFederation::start(FederationSpec::new(3, Topology::Chain).members(5))
        .await
        .unwrap();
    for (i, peers) in [
        (0, vec!["node-1"]),
        (1, vec!["node-0", "node-2"]),
        (2, vec!["node-1"]),
    ] {
        let names: Vec<String> = status_of(&fed.nodes[i])
            .await
            .peers
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, peers, "topology of node {i}");
    }
    let mut m3 = fed.alliance.signer(fed.alliance.member(3));
    let mut m4 = fed.alliance.signer(fed.alliance.member(4));
    let mut a = fed.client(0).unwrap();
    let mut c = fed.client(2).unwrap();
    for i in 0..10 {
        publish_on(&fed.nodes[0], &ballot(i), S::Considering).await;
        submit(
            &mut a,
            m3.next(&intention(&ballot(100 + i), S::Intends, "")),
        )
        .await
        .unwrap();
        if i % 2 == 0 {
            submit(
                &mut c,
                m4.next(&statement(&format!("Statement {i}"), vec![])),
            )
            .await
            .unwrap();
            publish_on(&fed.nodes[1], &ballot(200 + i), S::Considering).await;
        }
    }
    fed.converge_to(30, CONVERGE).await.unwrap();
    for author in [key_of(&fed.nodes[0].home), fed.alliance.key(3)] {
        assert_eq!(
            log_of(&fed.nodes[2], &author).await,
            log_of(&fed.nodes[0], &author).await,
            "C holds A's copy of the log, byte for byte"
        );
    }
    assert_eq!(
        log_of(&fed.nodes[0], &fed.alliance.key(4)).await.len(),
        5,
        "A has C's submissions through B"
    );
    fed.stop_all().await.unwrap();
}

/// In a chain A - B - C, C hears of A's entries only as B's notes, and pulls each
/// after the pull grace. Having pulled A from B a few times, C grafts: it asks B to
/// forward A's entries in full, and pulls no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_served_by_one_relay_grafts_the_author_it_keeps_pulling() {
    // Heads checks further apart than the pull grace (500 ms), as in a real node
    // (30 s): with the harness's 250 ms they would find each entry first.
    let mut spec = FederationSpec::new(3, Topology::Chain);
    spec.anti_entropy = Duration::from_secs(10);
    let mut fed = TestFederation::start(spec).await.unwrap();
    let a = key_of(&fed.nodes[0].home);
    let mut c = fed.client(2).unwrap();
    let head_on_c = |client: &mut Client| {
        let mut client = client.clone();
        let a = a.clone();
        async move {
            let status = client
                .get_status(pb::GetStatusRequest::default())
                .await
                .unwrap()
                .into_inner();
            status
                .heads
                .iter()
                .find(|h| h.author == a)
                .map_or(0, |h| h.seq)
        }
    };
    // B's own entries first, pushed to C: a graft must not bring them again.
    for i in 0..10 {
        publish_on(&fed.nodes[1], &ballot(100 + i), S::Considering).await;
    }
    let b_key = key_of(&fed.nodes[1].home);
    let deadline = Instant::now() + CONVERGE;
    while !status_of(&fed.nodes[2])
        .await
        .heads
        .iter()
        .any(|h| h.author == b_key && h.seq == 10)
    {
        assert!(Instant::now() < deadline, "B's entries never reached C");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..12u64 {
        publish_on(&fed.nodes[0], &ballot(i as usize), S::Considering).await;
        let deadline = Instant::now() + CONVERGE;
        while head_on_c(&mut c).await < i + 1 {
            assert!(Instant::now() < deadline, "entry {} never reached C", i + 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let status = status_of(&fed.nodes[2]).await;
    let b = status.peers.iter().find(|p| p.name == "node-1").unwrap();
    assert_eq!(b.grafted, vec![a.clone()], "C grafted A from B: {b:?}");
    // Without the graft C pulls once per entry (12); with it, only until it grafts
    // (a note racing the graft's start may add one).
    assert!(
        b.pulls <= 4,
        "C went on pulling A's entries after grafting: {} pulls",
        b.pulls
    );
    // Each entry came about once: a graft asks for its authors only, from C's
    // heads (one that named no author once asked for everything, again).
    assert!(
        b.received <= 10 + 12 + 2,
        "C received {} entries from B for 22 new",
        b.received
    );
    fed.stop_all().await.unwrap();
}

/// A node holding many entries and a fresh node joining: it catches up to the same
/// digest in bounded time, while new entries keep arriving. 100,000 entries by
/// default (about 17 s in a debug build on two cores: signing 3 s, storing 2 s, the
/// node's reload 4 s, the catch-up 8 s); ACCORD_LATE_JOINER_ENTRIES sets another count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_catches_up() {
    let n: usize = std::env::var("ACCORD_LATE_JOINER_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut fed = TestFederation::build(FederationSpec::new(2, Topology::Chain).members(4))
        .await
        .unwrap();
    let started = Instant::now();
    // Authors: node 0's home (member 0) and members 2 and 3, who have no node. Not
    // member 1: that is the joiner's own identity, whose log only the joiner writes.
    let mut signers: Vec<RawSigner> = [0, 2, 3]
        .into_iter()
        .map(|i| fed.alliance.signer(fed.alliance.member(i)))
        .collect();
    let base = now_ms() - 10_000_000;
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let signer = &mut signers[i % 3];
        let (kind, body) = accord_core::body::encode(&intention(
            &ballot(i % 500),
            if i % 3 == 0 {
                S::Intends
            } else {
                S::Considering
            },
            "",
        ));
        let signed = signer.peek_raw(base + i as i64, kind as i32, body);
        signer.advance(&signed);
        entries.push(signed);
    }
    let signed_in = started.elapsed();
    store_entries(fed.nodes[0].data_dir(), fed.alliance.charter.id(), &entries)
        .await
        .unwrap();
    let stored_in = started.elapsed();
    fed.nodes[0].start().await.unwrap();
    let loaded_in = started.elapsed();
    assert_eq!(status_of(&fed.nodes[0]).await.entries, n as u64);

    let joining = Instant::now();
    fed.nodes[1].start().await.unwrap();
    // New entries while the joiner catches up, on both sides.
    for i in 0..5 {
        publish_on(&fed.nodes[0], &ballot(1000 + i), S::Considering).await;
        publish_on(&fed.nodes[1], &ballot(2000 + i), S::Considering).await;
    }
    let bound = Duration::from_secs(60 + n as u64 / 1000);
    let snap = fed.converge_to(n as u64 + 10, bound).await.unwrap();
    let caught_up = joining.elapsed();
    println!(
        "late joiner: {n} entries signed in {:.1}s, stored by {:.1}s, loaded by {:.1}s; \
         caught up in {:.1}s ({:.0} entries/s)",
        signed_in.as_secs_f64(),
        stored_in.as_secs_f64(),
        loaded_in.as_secs_f64(),
        caught_up.as_secs_f64(),
        n as f64 / caught_up.as_secs_f64()
    );
    // Same heads (and so, with the digest, the same logs) on both.
    assert_eq!(fed.snapshots().await.unwrap()[1], snap);
    fed.stop_all().await.unwrap();
}

/// Checks that every node holds the fork proof of `forker` and nothing else frozen,
/// agrees on the digest, and refuses the next entry on either branch.
async fn assert_frozen_everywhere(
    fed: &TestFederation,
    forker: &accord_core::Identity,
    branches: [&pb::SignedEntry; 2],
) -> Snapshot {
    let forker_key = forker.public_id();
    let snap = fed
        .converge_when_all(CONVERGE, |s| frozen(s) == vec![forker_key])
        .await
        .unwrap();
    let signer = fed.alliance.signer(forker);
    for node in &fed.nodes {
        let status = status_of(node).await;
        assert_eq!(status.digest, snap.digest, "{}", node.name);
        for branch in branches {
            let mut next = signer.clone();
            next.advance(branch);
            let refused = submit(
                &mut node.client().unwrap(),
                next.next(&intention(&ballot(9), S::Withdrawn, "")),
            )
            .await
            .unwrap_err();
            assert_eq!(
                refused.code(),
                Code::FailedPrecondition,
                "{}: {refused:?}",
                node.name
            );
        }
    }
    snap
}

/// Member 3 has no node: the test signs two different entries with seq 1, gives one
/// to A, waits until every node has it, then gives the other to C, which refuses it
/// as a fork, keeps the proof and passes it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_freezes_the_author_on_every_node() {
    let mut fed = TestFederation::start(FederationSpec::new(3, Topology::FullMesh).members(4))
        .await
        .unwrap();
    publish_on(&fed.nodes[1], &ballot(0), S::Intends).await;
    fed.converge_to(1, CONVERGE).await.unwrap();
    let forker = fed.alliance.member(3).clone();
    let signer = fed.alliance.signer(&forker);
    let one = signer.peek(&intention(LEEDS_HHP, S::Intends, ""));
    let two = signer.peek(&intention(LEEDS_KIRKSTALL, S::Intends, ""));
    assert_ne!(one, two);
    submit(&mut fed.client(0).unwrap(), one.clone())
        .await
        .unwrap();
    fed.converge_to(2, CONVERGE).await.unwrap();
    let refused = submit(&mut fed.client(2).unwrap(), two.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let snap = assert_frozen_everywhere(&fed, &forker, [&one, &two]).await;
    // The rest of the alliance goes on.
    publish_on(&fed.nodes[0], &ballot(1), S::Intends).await;
    let after = fed.converge_to(snap.entries + 1, CONVERGE).await.unwrap();
    for node in &fed.nodes {
        assert_eq!(frozen(&status_of(node).await), vec![forker.public_id()]);
    }
    assert_ne!(after.digest, snap.digest);
    fed.stop_all().await.unwrap();
}

/// Both branches of a fork are accepted, each by one node, and the fork is found
/// through the live stream: C pulls from A, but A's pull from C is cut until the
/// end. C takes branch two, A then takes branch one and streams it to C, which finds
/// the fork; A gets the proof once its link heals. Both must then derive one state
/// (DESIGN.md: the same entries in any arrival order give the same digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_whose_branches_were_both_accepted_gives_one_digest() {
    let mut fed =
        TestFederation::start(FederationSpec::new(2, Topology::Chain).members(3).proxied())
            .await
            .unwrap();
    fed.proxy(0, 1).cut();
    fed.wait_status(0, CONVERGE, |s| s.peers.iter().all(|p| !p.connected))
        .await
        .unwrap();
    let forker = fed.alliance.member(2).clone();
    let signer = fed.alliance.signer(&forker);
    let one = signer.peek(&intention(LEEDS_HHP, S::Intends, ""));
    let two = signer.peek(&intention(LEEDS_KIRKSTALL, S::Intends, ""));
    submit(&mut fed.client(1).unwrap(), two.clone())
        .await
        .unwrap();
    submit(&mut fed.client(0).unwrap(), one.clone())
        .await
        .unwrap();
    fed.wait_status(1, CONVERGE, |s| !s.frozen.is_empty())
        .await
        .unwrap();
    fed.heal_all();
    assert_frozen_everywhere(&fed, &forker, [&one, &two]).await;
    fed.stop_all().await.unwrap();
}

/// The two branches of a fork land on the two sides of a partition (so each node
/// accepts its branch). After healing, every node must find the fork: DESIGN.md,
/// principle 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_across_a_partition_is_found_after_healing() {
    let mut fed = TestFederation::start(
        FederationSpec::new(3, Topology::FullMesh)
            .members(4)
            .proxied(),
    )
    .await
    .unwrap();
    publish_on(&fed.nodes[1], &ballot(0), S::Intends).await;
    fed.converge_to(1, CONVERGE).await.unwrap();
    fed.isolate_and_wait(2, CONVERGE).await.unwrap();
    let forker = fed.alliance.member(3).clone();
    let signer = fed.alliance.signer(&forker);
    let one = signer.peek(&intention(LEEDS_HHP, S::Intends, ""));
    let two = signer.peek(&intention(LEEDS_KIRKSTALL, S::Intends, ""));
    submit(&mut fed.client(0).unwrap(), one.clone())
        .await
        .unwrap();
    submit(&mut fed.client(2).unwrap(), two.clone())
        .await
        .unwrap();
    fed.wait_status(1, CONVERGE, |s| s.entries == 2)
        .await
        .unwrap();
    fed.heal_all();
    assert_frozen_everywhere(&fed, &forker, [&one, &two]).await;
    fed.stop_all().await.unwrap();
}

/// A partitioned fork of member 3 (one branch at A and B, the other at C), then
/// extended on A's side with seq 2, and the partition healed. Returns the two
/// branches' first entries.
async fn extended_fork_across_a_partition(
    fed: &TestFederation,
) -> (accord_core::Identity, pb::SignedEntry, pb::SignedEntry) {
    publish_on(&fed.nodes[1], &ballot(0), S::Intends).await;
    fed.converge_to(1, CONVERGE).await.unwrap();
    fed.isolate_and_wait(2, CONVERGE).await.unwrap();
    let forker = fed.alliance.member(3).clone();
    let mut signer = fed.alliance.signer(&forker);
    let one = signer.peek(&intention(LEEDS_HHP, S::Intends, ""));
    let two = signer.peek(&intention(LEEDS_KIRKSTALL, S::Intends, ""));
    signer.advance(&one);
    let one_next = signer.next(&intention(LEEDS_HHP, S::Confirmed, "Jo Bloggs"));
    let mut a = fed.client(0).unwrap();
    submit(&mut a, one.clone()).await.unwrap();
    submit(&mut a, one_next).await.unwrap();
    submit(&mut fed.client(2).unwrap(), two.clone())
        .await
        .unwrap();
    fed.wait_status(1, CONVERGE, |s| s.entries == 3)
        .await
        .unwrap();
    fed.heal_all();
    (forker, one, two)
}

fn proxied_mesh_of_3() -> FederationSpec {
    FederationSpec::new(3, Topology::FullMesh)
        .members(4)
        .proxied()
}

/// As above, and the forker then extends one branch on one side: the extension
/// reaches the other side, where it does not fit (its previous hash names the other
/// branch). That too must reveal the fork, not be blamed on the honest relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_across_a_partition_extended_on_one_side_is_found_after_healing() {
    let mut fed = TestFederation::start(proxied_mesh_of_3()).await.unwrap();
    let (forker, one, two) = extended_fork_across_a_partition(&fed).await;
    assert_frozen_everywhere(&fed, &forker, [&one, &two]).await;
    fed.stop_all().await.unwrap();
}

/// After the extended fork above, the other authors' entries must still reach C:
/// one author's log that does not fit must not stop replication of everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_does_not_fit_does_not_block_other_authors() {
    let mut fed = TestFederation::start(proxied_mesh_of_3()).await.unwrap();
    extended_fork_across_a_partition(&fed).await;
    let a = publish_on(&fed.nodes[0], &ballot(1), S::Intends).await;
    let b = publish_on(&fed.nodes[1], &ballot(2), S::Intends).await;
    let c = publish_on(&fed.nodes[2], &ballot(3), S::Intends).await;
    for (i, node) in fed.nodes.iter().enumerate() {
        let client = node.client().unwrap();
        let found = poll(600, POLL_EVERY, || {
            let mut client = client.clone();
            let wanted = [a.clone(), b.clone(), c.clone()];
            async move {
                let have = ids(&all_entries(&mut client).await?);
                Ok(wanted.iter().all(|id| have.contains(id)).then_some(()))
            }
        })
        .await;
        let status = status_of(node).await;
        assert!(
            found.is_ok(),
            "node {i} lacks the other authors' new entries: {}",
            status_summary(&status)
        );
    }
    fed.stop_all().await.unwrap();
}

/// A status check over every node, for tests that need more than entries and digest.
trait ConvergeAll {
    async fn converge_when_all(
        &self,
        within: Duration,
        check: impl Fn(&pb::NodeStatus) -> bool,
    ) -> anyhow::Result<Snapshot>;
}

impl ConvergeAll for TestFederation {
    async fn converge_when_all(
        &self,
        within: Duration,
        check: impl Fn(&pb::NodeStatus) -> bool,
    ) -> anyhow::Result<Snapshot> {
        let deadline = tokio::time::Instant::now() + within;
        for i in 0..self.nodes.len() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(e) = self.wait_status(i, left, &check).await {
                let mut all = Vec::new();
                for node in &self.nodes {
                    all.push(format!(
                        "{}: {}",
                        node.name,
                        status_summary(&status_of(node).await)
                    ));
                }
                anyhow::bail!("{e}\nevery node: {all:#?}");
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.converge(left.max(Duration::from_secs(1))).await
    }
}

// ---------------------------------------------------------------------------------
// Hostile peers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_certificate_is_refused_in_the_handshake() {
    let mut fed = TestFederation::start(FederationSpec::new(2, Topology::Chain))
        .await
        .unwrap();
    publish_on(&fed.nodes[0], &ballot(0), S::Considering).await;
    fed.converge_to(1, CONVERGE).await.unwrap();
    let node = &fed.nodes[0];
    let stranger = fresh_tls_identity().unwrap();

    // Through gRPC: every federation call fails.
    let mut client = federation_client(node.addr, node.pin, Some(&stranger)).unwrap();
    let heads = client.get_heads(pb::GetHeadsRequest {}).await;
    assert!(heads.is_err(), "an unpinned peer got heads: {heads:?}");
    let sync = client
        .sync(pb::SyncRequest {
            alliance: fed.alliance.charter.id().to_vec(),
            follow: false,
            ..Default::default()
        })
        .await;
    assert!(sync.is_err(), "an unpinned peer got a sync stream");

    // By hand, to know our port: the node ends the connection and logs the refusal.
    let tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let config = accord_node::tls::client_config(node.pin, Some(&stranger)).unwrap();
    let server_name = rustls::pki_types::ServerName::IpAddress(node.addr.ip().into());
    let outcome = tokio::time::timeout(Duration::from_secs(15), async {
        // In TLS 1.3 the client finishes first; the refusal shows on the next read.
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await?;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await?;
        Ok::<usize, std::io::Error>(n)
    })
    .await
    .expect("the node answers within the handshake timeout");
    assert!(
        matches!(outcome, Err(_) | Ok(0)),
        "the connection went on: {outcome:?}"
    );
    let remote = format!("remote=127.0.0.1:{port}");
    let said = format!(
        "TLS handshake refused: the peer presented TLS certificate {}, which is not pinned in [[peers]]",
        hex::encode(stranger.fingerprint())
    );
    poll(200, Duration::from_millis(50), || async {
        Ok(logs_contain(&[&said, &remote]).then_some(()))
    })
    .await
    .expect("the node logs the refused handshake");

    // Nothing changed, and the honest peers still replicate.
    publish_on(&fed.nodes[1], &ballot(1), S::Considering).await;
    fed.converge_to(2, CONVERGE).await.unwrap();
    fed.stop_all().await.unwrap();
}

/// A node configured to pull from an address whose server presents a certificate
/// other than the pinned one stores nothing from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_wrong_certificate_gives_nothing() {
    // Node 2 is not in the topology; node 0 is told to pull from it under a pin that
    // is not node 2's certificate. Node 2 pins node 0 so that only node 0's check
    // stands in the way.
    let mut fed = TestFederation::build(FederationSpec::new(3, Topology::Edges(vec![(0, 1)])))
        .await
        .unwrap();
    let impostor_pin = fresh_tls_identity().unwrap().fingerprint();
    let node2_addr = fed.nodes[2].addr;
    let node0 = (fed.nodes[0].addr, fed.nodes[0].pin);
    fed.nodes[0].config.peers.push(Peer {
        name: "impostor".into(),
        address: format!("https://{node2_addr}"),
        fingerprint: impostor_pin,
    });
    fed.nodes[2].config.peers.push(Peer {
        name: "node-0".into(),
        address: format!("https://{}", node0.0),
        fingerprint: node0.1,
    });
    // Node 1 pulls from node 2 under the right pin, but node 2 does not pin node 1.
    let node2_pin = fed.nodes[2].pin;
    fed.nodes[1].config.peers.push(Peer {
        name: "node-2".into(),
        address: format!("https://{node2_addr}"),
        fingerprint: node2_pin,
    });
    fed.start_all().await.unwrap();
    publish_on(&fed.nodes[2], &ballot(0), S::Intends).await;
    publish_on(&fed.nodes[1], &ballot(1), S::Intends).await;
    let status = fed
        .wait_status(0, CONVERGE, |s| {
            s.entries >= 1
                && s.peers
                    .iter()
                    .any(|p| p.name == "impostor" && !p.last_error.is_empty())
        })
        .await
        .unwrap();
    let impostor = status.peers.iter().find(|p| p.name == "impostor").unwrap();
    assert!(!impostor.connected);
    assert_eq!(impostor.received, 0);
    assert!(
        impostor.last_error.contains(&format!(
            "presented TLS certificate {}, which is not cert_sha256 of [[peers]] \"impostor\"",
            hex::encode(fed.nodes[2].pin)
        )),
        "{impostor:?}"
    );
    let refused = format!(
        "refused this node's TLS certificate {}: its operator must pin",
        hex::encode(fed.nodes[1].pin)
    );
    let refused_seen = fed
        .wait_status(1, CONVERGE, |s| {
            s.peers
                .iter()
                .any(|p| p.name == "node-2" && p.last_error.contains(&refused))
        })
        .await;
    assert!(
        refused_seen.is_ok(),
        "{:?}",
        status_of(&fed.nodes[1]).await.peers
    );
    let node2_key = key_of(&fed.nodes[2].home);
    assert!(
        !status.heads.iter().any(|h| h.author == node2_key),
        "node 0 stored entries of the impostor's node"
    );
    // The honest link works.
    fed.wait_status(0, CONVERGE, |s| s.entries == 1)
        .await
        .unwrap();
    let status = status_of(&fed.nodes[0]).await;
    assert_eq!(status.heads.len(), 1);
    assert_eq!(status.heads[0].author, key_of(&fed.nodes[1].home));
    fed.stop_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_without_a_client_certificate_is_unauthenticated() {
    let mut fed = TestFederation::start(FederationSpec::new(1, Topology::FullMesh))
        .await
        .unwrap();
    let node = &fed.nodes[0];
    let mut client = federation_client(node.addr, node.pin, None).unwrap();
    let heads = client.get_heads(pb::GetHeadsRequest {}).await.unwrap_err();
    assert_eq!(heads.code(), Code::Unauthenticated, "{heads:?}");
    let sync = client
        .sync(pb::SyncRequest {
            alliance: fed.alliance.charter.id().to_vec(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(sync.code(), Code::Unauthenticated, "{sync:?}");
    // The same connection is fine for the Ledger API with a token.
    let status = status_of(node).await;
    assert_eq!(status.entries, 0);
    fed.stop_all().await.unwrap();
}

/// Deterministic noise (xorshift), so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `bytes` and reads until the node closes the connection; returns how long
/// it took. Panics if the node keeps the connection open past `within`.
async fn until_closed<S>(mut stream: S, bytes: &[u8], within: Duration) -> Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let started = Instant::now();
    tokio::time::timeout(within, async {
        // The node may close while we are still writing.
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        let mut buf = vec![0u8; 4096];
        for _ in 0..10_000 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        panic!("the node kept answering garbage");
    })
    .await
    .expect("the node closes a connection that speaks garbage");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_is_dropped_and_replication_goes_on() {
    let mut fed = TestFederation::start(FederationSpec::new(2, Topology::Chain))
        .await
        .unwrap();
    publish_on(&fed.nodes[0], &ballot(0), S::Considering).await;
    fed.converge_to(1, CONVERGE).await.unwrap();
    let node = fed.nodes[0].addr;
    let within = accord_node::tls::HANDSHAKE_TIMEOUT + Duration::from_secs(5);

    // Raw bytes instead of a TLS handshake, several connections at once.
    let mut tasks = Vec::new();
    for seed in 1..=8u64 {
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(node).await.unwrap();
            until_closed(tcp, &noise(seed, 16 << 10), within).await
        }));
    }
    // A TLS handshake that starts right and then turns to garbage.
    let mut hello = noise(99, 4096);
    hello[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
    tasks.push(tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(node).await.unwrap();
        until_closed(tcp, &hello, within).await
    }));
    // A proper TLS session (no client certificate), then garbage instead of HTTP/2.
    let pin = fed.nodes[0].pin;
    tasks.push(tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(node).await.unwrap();
        let config = accord_node::tls::client_config(pin, None).unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(node.ip().into());
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        until_closed(tls, &noise(7, 16 << 10), within).await
    }));
    for task in tasks {
        task.await.unwrap();
    }

    // A connection that says nothing at all is dropped at the handshake timeout; the
    // node serves others meanwhile.
    let silent = tokio::net::TcpStream::connect(node).await.unwrap();
    let silent = tokio::spawn(async move { until_closed(silent, b"", within).await });

    publish_on(&fed.nodes[0], &ballot(1), S::Considering).await;
    publish_on(&fed.nodes[1], &ballot(2), S::Considering).await;
    fed.converge_to(3, CONVERGE).await.unwrap();
    let waited = silent.await.unwrap();
    assert!(waited <= within, "{waited:?}");
    fed.stop_all().await.unwrap();
}

/// A pinned peer that relays forged and altered entries, and claims whatever
/// heads and clock it is given.
struct Mallory {
    alliance: Vec<u8>,
    batch: pb::SyncBatch,
    syncs: Arc<AtomicU64>,
    heads: Vec<pb::AuthorHead>,
    /// Its clock's offset from the true time, ms (None: an older release's 0).
    clock_offset_ms: Option<i64>,
}

type BatchStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::SyncBatch, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Federation for Mallory {
    async fn get_heads(
        &self,
        _request: tonic::Request<pb::GetHeadsRequest>,
    ) -> Result<tonic::Response<pb::Heads>, tonic::Status> {
        Ok(tonic::Response::new(pb::Heads {
            alliance: self.alliance.clone(),
            heads: self.heads.clone(),
            frozen: vec![],
            now_ms: self.clock_offset_ms.map_or(0, |off| now_ms() + off),
        }))
    }

    type SyncStream = BatchStream;

    async fn sync(
        &self,
        _request: tonic::Request<pb::SyncRequest>,
    ) -> Result<tonic::Response<BatchStream>, tonic::Status> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        // The batch, then a stream that stays open (as a follower's would).
        let stream = futures::StreamExt::chain(
            tokio_stream::iter(vec![Ok(self.batch.clone())]),
            futures::stream::pending(),
        );
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

/// A [`Mallory`] serving over TLS with its own certificate, pinned by node 0 as
/// peer `name` (before the federation starts).
struct RunningMallory {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Mallory {
    async fn serve_to(self, fed: &mut TestFederation, name: &str) -> RunningMallory {
        let tls = fresh_tls_identity().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_config = accord_node::tls::server_config(&tls, vec![fed.nodes[0].pin]).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(FederationServer::new(self))
                .serve_with_incoming_shutdown(
                    accord_node::incoming::tls(
                        listener,
                        server_config,
                        accord_node::incoming::Caps::new(64, 16),
                    ),
                    async move {
                        let _ = stopped.await;
                    },
                ),
        );
        fed.nodes[0].config.peers.push(Peer {
            name: name.into(),
            address: format!("https://{addr}"),
            fingerprint: tls.fingerprint(),
        });
        RunningMallory { stop, task }
    }
}

impl RunningMallory {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the peer stops")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_peer_relaying_forgeries_is_refused_and_honest_replication_goes_on() {
    let mut fed = TestFederation::build(FederationSpec::new(2, Topology::Chain).members(3))
        .await
        .unwrap();
    let alliance = fed.alliance.charter.id();
    // Member 2 has no node; only Mallory claims to have its entries.
    let victim = fed.alliance.signer(fed.alliance.member(2));
    let genuine = victim.peek(&intention(LEEDS_HHP, S::Intends, ""));

    let mut bad_signature = genuine.clone();
    bad_signature.signature[7] ^= 0x40;

    let mut altered = genuine.clone();
    let position = altered
        .entry
        .windows(b"headingley".len())
        .position(|w| w == b"headingley")
        .expect("ballot in the entry bytes");
    altered.entry[position] = b'H';

    let mut truncated_signature = genuine.clone();
    truncated_signature.signature.truncate(40);

    let undecodable = pb::SignedEntry {
        entry: noise(5, 200),
        signature: genuine.signature.clone(),
    };

    // Validly signed, but by a key the charter does not name.
    let outsider = fed
        .alliance
        .signer(&fed.alliance.outsider.clone())
        .peek(&intention(LEEDS_HHP, S::Intends, ""));

    // A "fork proof" whose second entry is forged.
    let mut other = victim.peek(&intention(LEEDS_KIRKSTALL, S::Intends, ""));
    other.signature[0] ^= 1;
    let forged_proof = pb::ForkProof {
        author: fed.alliance.key(2),
        seq: 1,
        first: Some(genuine.clone()),
        second: Some(other),
    };

    let forged = vec![
        bad_signature,
        altered,
        truncated_signature,
        undecodable,
        outsider,
    ];
    let forged_count = forged.len() as u64;
    let batch = pb::SyncBatch {
        entries: forged.clone(),
        forks: vec![forged_proof],
        ..Default::default()
    };

    // Mallory: a Federation server over TLS with its own certificate, pinning node 0.
    let syncs = Arc::new(AtomicU64::new(0));
    let mallory = Mallory {
        alliance: alliance.to_vec(),
        batch,
        syncs: syncs.clone(),
        heads: vec![],
        clock_offset_ms: None,
    }
    .serve_to(&mut fed, "mallory")
    .await;
    fed.start_all().await.unwrap();

    publish_on(&fed.nodes[1], &ballot(0), S::Considering).await;
    let status = fed
        .wait_status(0, CONVERGE, |s| {
            s.peers
                .iter()
                .any(|p| p.name == "mallory" && p.refused >= forged_count)
        })
        .await
        .unwrap();
    assert!(syncs.load(Ordering::Relaxed) >= 1);
    let mallory_status = status.peers.iter().find(|p| p.name == "mallory").unwrap();
    assert!(
        !mallory_status.last_error.is_empty(),
        "{}",
        status_summary(&status)
    );

    // Honest replication goes on, both ways, after the forgeries.
    publish_on(&fed.nodes[0], &ballot(1), S::Considering).await;
    publish_on(&fed.nodes[1], &ballot(2), S::Considering).await;
    fed.converge_to(3, CONVERGE).await.unwrap();
    let honest = ids(&all_of(&fed.nodes[1]).await);
    let stored = all_of(&fed.nodes[0]).await;
    assert_eq!(ids(&stored), honest, "node 0 stored only honest entries");
    let forged_ids: BTreeSet<Vec<u8>> = forged
        .iter()
        .filter_map(|e| accord_core::entry::decode(e.clone(), usize::MAX).ok())
        .map(|d| d.id().to_vec())
        .collect();
    assert!(ids(&stored).is_disjoint(&forged_ids));
    let status = status_of(&fed.nodes[0]).await;
    assert!(status.frozen.is_empty(), "a forged proof froze a log");
    assert!(
        !status.heads.iter().any(|h| h.author == fed.alliance.key(2)),
        "node 0 stored an entry of member 2"
    );
    // The honest peer's counters show no refusals.
    let honest_peer = status.peers.iter().find(|p| p.name == "node-1").unwrap();
    assert_eq!(honest_peer.refused, 0, "{honest_peer:?}");

    fed.stop_all().await.unwrap();
    mallory.stop().await;
}

/// Issue 22, defect 5: a pinned peer claims (an unsigned number) the home
/// organisation's log at seq 1,000,000 and a clock ten minutes fast, and never
/// backs the claim with an entry. The claim holds node 0's publishing for at most
/// `CLAIM_PATIENCE_MS` (30 s), then node 0 publishes while the peer goes on claiming;
/// the fast clock of one peer of two is a warning, never a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_claiming_a_longer_home_log_holds_publishing_only_while_it_backs_the_claim() {
    let mut fed = TestFederation::build(FederationSpec::new(2, Topology::Chain))
        .await
        .unwrap();
    let alliance = fed.alliance.charter.id();
    let home = fed.nodes[0].home.public_id();
    let claimant = Mallory {
        alliance: alliance.to_vec(),
        batch: pb::SyncBatch::default(),
        syncs: Arc::new(AtomicU64::new(0)),
        heads: vec![pb::AuthorHead {
            author: home.to_vec(),
            seq: 1_000_000,
            id: vec![7; 32],
        }],
        clock_offset_ms: Some(600_000),
    }
    .serve_to(&mut fed, "claimant")
    .await;
    fed.start_all().await.unwrap();

    // The claim is heard, and holds publishing for a while.
    let mut client = fed.nodes[0].client().unwrap();
    let author = fed.nodes[0].home.clone();
    let started = Instant::now();
    let first_refusal = loop {
        match publish(
            &mut client,
            &author,
            intention(&ballot(0), S::Considering, ""),
        )
        .await
        {
            Err(status) if status.message().contains("claimant") => break Instant::now(),
            Err(status) => panic!("refused for another reason: {status}"),
            Ok(_) => {
                assert!(started.elapsed() < CONVERGE, "the claim was never heard");
                // Published before the claimant was heard: try the next seq.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // Unbacked, it decays: node 0 publishes again while the claimant goes on
    // claiming (and reading a fast clock), well within twice the patience.
    let limit = Duration::from_millis(2 * accord_node::claims::CLAIM_PATIENCE_MS as u64);
    loop {
        match publish(
            &mut client,
            &author,
            intention(&ballot(1), S::Considering, ""),
        )
        .await
        {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status}");
                assert!(status.message().contains("claimant"), "{status}");
                assert!(first_refusal.elapsed() < limit, "still refused: {status}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let status = status_of(&fed.nodes[0]).await;
    assert!(status.clock_problem.is_empty(), "{}", status.clock_problem);
    // And stays free: the claimant's next claims count no more.
    publish(
        &mut client,
        &author,
        intention(&ballot(2), S::Considering, ""),
    )
    .await
    .unwrap();

    fed.stop_all().await.unwrap();
    claimant.stop().await;
}

/// Issue 22, defect 3: both sides of a fork reach node 0 in one Sync batch from a
/// pinned peer (so in one writer batch). Node 0 takes the first, refuses the
/// second as a fork and keeps the proof, and every node freezes the author.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_a_fork_in_one_batch_freeze_the_author_everywhere() {
    let mut fed = TestFederation::build(FederationSpec::new(2, Topology::FullMesh).members(3))
        .await
        .unwrap();
    let alliance = fed.alliance.charter.id();
    // Member 2 has no node; the peer relays two entries it signed at seq 1.
    let forker = fed.alliance.member(2).clone();
    let signer = fed.alliance.signer(&forker);
    let one = signer.peek(&intention(LEEDS_HHP, S::Intends, ""));
    let two = signer.peek(&intention(LEEDS_KIRKSTALL, S::Intends, ""));
    let relay = Mallory {
        alliance: alliance.to_vec(),
        batch: pb::SyncBatch {
            entries: vec![one.clone(), two.clone()],
            ..Default::default()
        },
        syncs: Arc::new(AtomicU64::new(0)),
        heads: vec![],
        clock_offset_ms: None,
    }
    .serve_to(&mut fed, "relay")
    .await;
    fed.start_all().await.unwrap();
    assert_frozen_everywhere(&fed, &forker, [&one, &two]).await;
    fed.stop_all().await.unwrap();
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_is_relayed_byte_exact_along_a_chain() {
    let mut fed = TestFederation::start(FederationSpec::new(3, Topology::Chain))
        .await
        .unwrap();
    let author = fed.nodes[0].home.clone();
    let mut signer = fed.alliance.signer(&author);
    let future = signer.peek_raw(now_ms(), 99, b"\x0a\x05hello\x12\x03new".to_vec());
    signer.advance(&future);
    submit(&mut fed.client(0).unwrap(), future.clone())
        .await
        .unwrap();
    // The author's log goes on after it, from its home node.
    publish_on(&fed.nodes[0], LEEDS_HHP, S::Intends).await;
    fed.converge_to(2, CONVERGE).await.unwrap();
    let at_a = log_of(&fed.nodes[0], &key_of(&author)).await;
    assert_eq!(at_a[0], future);
    for node in &fed.nodes[1..] {
        let log = log_of(node, &key_of(&author)).await;
        assert_eq!(log, at_a, "{}", node.name);
        assert_eq!(
            log[0].encode_to_vec(),
            future.encode_to_vec(),
            "{}: byte-exact",
            node.name
        );
    }
    fed.stop_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_status_shows_connected_and_not_behind_after_convergence() {
    let mut fed = TestFederation::start(FederationSpec::new(3, Topology::FullMesh))
        .await
        .unwrap();
    for round in 0..3 {
        for node in &fed.nodes {
            publish_on(
                node,
                &ballot(round * 10 + node_index(&node.name)),
                S::Considering,
            )
            .await;
        }
    }
    fed.converge_to(9, CONVERGE).await.unwrap();
    for i in 0..3 {
        let status = fed
            .wait_status(i, CONVERGE, |s| {
                s.peers.len() == 2
                    && s.peers
                        .iter()
                        .all(|p| p.connected && p.behind == 0 && p.last_contact_ms > 0)
            })
            .await
            .unwrap();
        let mut names: Vec<&str> = status.peers.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        let expected: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("node-{j}"))
            .collect();
        assert_eq!(names, expected);
        for peer in &status.peers {
            assert!(peer.address.starts_with("https://127."), "{peer:?}");
            assert_eq!(peer.refused, 0, "{peer:?}");
        }
        // Six entries were authored elsewhere, and came from the peers.
        let received: u64 = status.peers.iter().map(|p| p.received).sum();
        assert!(received >= 6, "{}", status_summary(&status));
        let now = now_ms();
        assert!(
            status
                .peers
                .iter()
                .all(|p| p.last_contact_ms <= now && p.last_contact_ms > now - 60_000),
            "{}",
            status_summary(&status)
        );
    }
    fed.stop_all().await.unwrap();
}

fn node_index(name: &str) -> usize {
    name.trim_start_matches("node-").parse().unwrap_or(9)
}

/// A node restored onto an empty disk does not fork its own identity's log: its
/// first publish waits for a peer's heads, is refused while the node is behind its
/// own log, and once caught up extends the log where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_onto_an_empty_disk_does_not_fork_its_own_log() {
    let mut fed = TestFederation::start(FederationSpec::new(2, Topology::FullMesh))
        .await
        .unwrap();
    for i in 0..5 {
        publish_on(&fed.nodes[0], &ballot(i), S::Considering).await;
    }
    fed.converge_to(5, CONVERGE).await.unwrap();

    // The disk is lost; the node comes back with its keys and config only.
    fed.nodes[0].stop().await.unwrap();
    std::fs::remove_dir_all(fed.nodes[0].data_dir()).unwrap();
    fed.nodes[0].start().await.unwrap();

    // Publish at once, as an officer would, retrying while the node says it is
    // catching up (bounded).
    let deadline = Instant::now() + CONVERGE;
    let mut client = fed.nodes[0].client().unwrap();
    let home = fed.nodes[0].home.clone();
    let mut refused = 0;
    let ack = loop {
        match publish(&mut client, &home, intention(&ballot(5), S::Intends, "")).await {
            Ok(ack) => break ack,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status}");
                assert!(status.message().contains("fork"), "{status}");
                refused += 1;
                assert!(Instant::now() < deadline, "still refused: {status}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(
        ack.seq, 6,
        "extends the log where it was ({refused} refusals first)"
    );
    let snap = fed.converge_to(6, CONVERGE).await.unwrap();
    assert_eq!(snap.entries, 6);
    for node in &fed.nodes {
        let status = status_of(node).await;
        assert!(status.frozen.is_empty(), "{}", status_summary(&status));
    }
}

/// What a follower's live stream brought, by the author of each entry or note.
#[derive(Debug, Default)]
struct Live {
    entries: Vec<(Vec<u8>, u64)>,
    notes: Vec<(Vec<u8>, u64)>,
}

/// Reads `stream` until `done` accepts what came, or fails after `within`.
async fn read_live(
    stream: &mut tonic::Streaming<pb::SyncBatch>,
    within: Duration,
    done: impl Fn(&Live) -> bool,
) -> Live {
    let deadline = tokio::time::Instant::now() + within;
    let mut live = Live::default();
    while !done(&live) {
        let batch = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| panic!("not within {within:?}: {live:?}"))
            .expect("the stream goes on")
            .expect("the stream stays open");
        for signed in batch.entries {
            let e = accord_core::entry::decode(signed, usize::MAX).unwrap();
            live.entries.push((e.author().to_vec(), e.seq()));
        }
        live.notes
            .extend(batch.notes.into_iter().map(|n| (n.author, n.seq)));
    }
    live
}

/// Issue 9 (flooding): to a `lazy` follower a node sends in full, live, only the
/// entries it was first to hold, and notes of those it relays; a follower that asks
/// for neither (an older release) still gets every entry in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_follower_gets_what_the_node_relays_as_notes() {
    let mut fed = TestFederation::build(FederationSpec::new(2, Topology::Chain))
        .await
        .unwrap();
    // A follower node 1 pins (its own pulls from it fail: nothing listens there).
    let watcher = fresh_tls_identity().unwrap();
    fed.nodes[1].config.peers.push(Peer {
        name: "watcher".into(),
        address: "https://127.0.0.1:9".into(),
        fingerprint: watcher.fingerprint(),
    });
    fed.start_all().await.unwrap();
    let open = |lazy: bool| {
        let node = &fed.nodes[1];
        let mut client = federation_client(node.addr, node.pin, Some(&watcher)).unwrap();
        let request = pb::SyncRequest {
            alliance: fed.alliance.charter.id().to_vec(),
            follow: true,
            lazy,
            ..Default::default()
        };
        async move { client.sync(request).await.unwrap().into_inner() }
    };
    let mut lazy = open(true).await;
    let mut eager = open(false).await;

    // Relayed by node 1, then first held by node 1.
    publish_on(&fed.nodes[0], &ballot(0), S::Considering).await;
    fed.converge_to(1, CONVERGE).await.unwrap();
    publish_on(&fed.nodes[1], &ballot(1), S::Considering).await;
    let (relayed, own) = (key_of(&fed.nodes[0].home), key_of(&fed.nodes[1].home));

    let got = read_live(&mut lazy, Duration::from_secs(10), |l| {
        l.notes.contains(&(relayed.clone(), 1)) && l.entries.contains(&(own.clone(), 1))
    })
    .await;
    assert!(
        !got.entries.iter().any(|(a, _)| *a == relayed),
        "a relayed entry was sent in full to a lazy follower: {got:?}"
    );
    let got = read_live(&mut eager, Duration::from_secs(10), |l| {
        l.entries.contains(&(relayed.clone(), 1)) && l.entries.contains(&(own.clone(), 1))
    })
    .await;
    assert!(got.notes.is_empty(), "{got:?}");
    fed.stop_all().await.unwrap();
}
