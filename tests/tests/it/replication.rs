//! Two nodes pulling from each other derive the same state, and a node that was down
//! catches up when it comes back.

use std::time::Duration;

use accord_core::pb::IntentionStatus as S;
use accord_tests::*;

use crate::LEEDS_HHP;

/// Waits (bounded: 200 rounds of 50 ms) until `node` holds `entries` entries with
/// the digest `digest` (when given).
async fn converged(node: &TestNode, entries: u64, digest: Option<&[u8]>) -> Snapshot {
    let mut c = node.client().await.unwrap();
    poll(200, Duration::from_millis(50), || {
        let mut c = c.clone();
        async move {
            let s = snapshot(&mut c).await?;
            Ok((s.entries == entries && digest.is_none_or(|d| s.digest == d)).then_some(s))
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!("node {} did not converge: {e}", node.addr);
    });
    snapshot(&mut c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_converge_and_a_restarted_node_catches_up() {
    let mut a = TestAlliance::new(2, 0);
    let (m0, m1) = (a.member(0).clone(), a.member(1).clone());
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr_a, addr_b) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let config_a = a.federated_config(&[&m0], &[], &[("b".into(), addr_b)]);
    let config_b = a.federated_config(&[&m1], &[], &[("a".into(), addr_a)]);
    let node_a = TestNode::start_on(&config_a, la).await.unwrap();
    let mut node_b = TestNode::start_on(&config_b, lb).await.unwrap();
    let mut ca = node_a.client().await.unwrap();
    let mut cb = node_b.client().await.unwrap();

    publish(&mut ca, &m0, intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    publish(&mut cb, &m1, intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    let sa = converged(&node_a, 2, None).await;
    let sb = converged(&node_b, 2, Some(&sa.digest)).await;
    assert_eq!(sa, sb);
    let entries = all_entries(&mut ca).await.unwrap();
    assert_eq!(sa.digest, a.digest_of(&entries).unwrap().to_vec());

    // B goes down; A publishes; B comes back (on a new port) and pulls what it missed.
    node_b.stop().await.unwrap();
    publish(&mut ca, &m0, intention(LEEDS_HHP, S::Withdrawn, ""))
        .await
        .unwrap();
    let sa = converged(&node_a, 3, None).await;
    node_b.restart().await.unwrap();
    let sb = converged(&node_b, 3, Some(&sa.digest)).await;
    assert_eq!(sa, sb);
}
