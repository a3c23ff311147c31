//! Recovery by quorum (issue 11, item 5), on real processes over TLS: an
//! organisation whose leaked key forked its log is recovered by the other members
//! with `accord propose recover` and `accord approve`, and its node publishes again
//! at once under the new key, counted as the same organisation everywhere.

use std::ffi::OsStr;

use super::roster_nodes::accord_ok;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_organisation_is_recovered_by_quorum_and_publishes_again_at_once() {
    let mut fed = ProcFederation::start(false).await.unwrap();
    let home = fed.nodes[2].home.clone();
    let org = home.public_id();
    consider(&fed, 2, 0..2).await;
    fed.converge_when(CONVERGE, |s| s.entries == 2)
        .await
        .unwrap();

    // The key leaks, and whoever holds it signs two different entries at seq 3:
    // the organisation's log is frozen on every node.
    let log = full_log(&mut fed.nodes[0].client(), &org.to_vec())
        .await
        .unwrap();
    let mut leaked = fed.alliance.signer(&home);
    leaked.advance(&log[1]);
    let one = leaked.peek(&intention(&ballot(5), S::Intends, ""));
    let two = leaked.peek(&intention(&ballot(6), S::Intends, ""));
    submit_to(&fed, 0, one).await.unwrap();
    fed.wait_status(1, CONVERGE, |s| s.entries == 3)
        .await
        .unwrap();
    let refused = submit_to(&fed, 1, two).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    for i in 0..NODES {
        fed.wait_status(i, CONVERGE, |s| frozen(s) == vec![org])
            .await
            .unwrap();
    }
    let frozen_publish = publish(
        &mut fed.nodes[2].client(),
        &home,
        intention(&ballot(7), S::Considering, ""),
    )
    .await
    .unwrap_err();
    assert_eq!(frozen_publish.code(), tonic::Code::FailedPrecondition);

    // The organisation makes a new key; another member proposes the recovery (the
    // cut defaults to the seq before the fork); the node goes on under it.
    let (recovered, ack) = recover_node_2(&mut fed, 2).await;
    let new_key = recovered.public_id();
    let new_hex = new_key.to_string();
    let client0 = client_toml(&fed, 0);
    assert_eq!((ack.seq, ack.author.clone()), (1, new_key.to_vec()));
    // 2 of the old log, the proposal, the approval, 1 of the new log.
    let snap = fed
        .converge_when(CONVERGE, |s| s.entries == 5)
        .await
        .unwrap();
    let want: BTreeSet<String> = [ballot(0), ballot(1), ballot(8)].into();
    for i in 0..NODES {
        // Seq 3 (after the cut) counts nowhere; the new log counts as the
        // organisation.
        assert_eq!(
            ballots_of(&intentions_of(&fed, i).await, &home),
            want,
            "node {i}"
        );
        let roster = roster_of(&fed, i).await;
        let o = roster
            .organisations
            .iter()
            .find(|o| o.key == org.to_vec())
            .unwrap();
        assert_eq!(o.current_key, new_key.to_vec(), "node {i}");
        assert_eq!(o.home, i == 2, "node {i}");
    }
    // The old key signs nothing more: refused everywhere, nothing stored.
    let mut old = fed.alliance.signer(&home);
    old.advance(&log[1]);
    let late = old.peek(&intention(&ballot(9), S::Intends, ""));
    let refused = submit_to(&fed, 0, late).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("replaced by a recovery"),
        "{refused:?}"
    );
    assert_eq!(fed.status(0).await.unwrap().entries, 5);
    // Every node holds the same entries and derives the same state.
    for i in 0..NODES {
        let status = fed.status(i).await.unwrap();
        assert_eq!(status.digest, snap.digest, "node {i}");
        // The freeze is lifted: the fork is evidence of a log replaced.
        assert!(status.frozen.is_empty(), "node {i}");
    }
    // `accord roster` names the recovery.
    let shown = accord_ok(&[
        OsStr::new("roster"),
        OsStr::new("--config"),
        client0.as_os_str(),
    ]);
    assert!(
        shown.contains(&format!("counts up to seq 2; it goes on in log {new_hex}")),
        "{shown}"
    );
}

/// A node lost entries it signed that no peer ever received (issue 10's "needs
/// recovery"): it refuses to publish, and says the alliance must recover it. Once
/// recovered from the last seq the alliance holds, it publishes again in a new log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_entries_no_peer_holds_is_recovered_into_a_new_log() {
    let mut fed = ProcFederation::start(false).await.unwrap();
    let home = fed.nodes[2].home.clone();
    consider(&fed, 2, 0..2).await;
    fed.converge_when(CONVERGE, |s| s.entries == 2)
        .await
        .unwrap();
    let data = fed.nodes[2].folder.join("data");
    let old = fed.nodes[2].folder.join("data.old");
    fed.nodes[2].terminate().await;
    copy_dir(&data, &old);
    // Seqs 3 and 4 are signed while no peer is up, so only node 2 ever held them.
    fed.nodes[0].kill9();
    fed.nodes[1].kill9();
    fed.nodes[2].start().await.unwrap();
    consider(&fed, 2, 2..4).await;
    fed.nodes[2].terminate().await;
    // Its store goes back to seq 2; the record of what it signed stays.
    let kept: Vec<(&str, Vec<u8>)> = ["signed-heads.a", "signed-heads.b", "heads-manifest.json"]
        .into_iter()
        .filter_map(|name| Some((name, std::fs::read(data.join(name)).ok()?)))
        .collect();
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&old, &data);
    for (name, bytes) in kept {
        std::fs::write(data.join(name), bytes).unwrap();
    }
    for i in 0..NODES {
        fed.nodes[i].start().await.unwrap();
    }
    fed.wait_status(2, CONVERGE, |s| {
        s.lost_own_entries
            .iter()
            .any(|l| (l.stored_seq, l.signed_seq, l.peer_seq) == (2, 4, 2))
    })
    .await
    .unwrap();
    let refused = publish(
        &mut fed.nodes[2].client(),
        &home,
        intention(&ballot(9), S::Intends, ""),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("needs recovery by the alliance")
            && refused.message().contains("accord propose recover"),
        "{refused:?}"
    );
    let client2 = client_toml(&fed, 2);
    let shown = accord_ok(&[
        OsStr::new("status"),
        OsStr::new("--config"),
        client2.as_os_str(),
    ]);
    assert!(shown.contains("accord propose recover"), "{shown}");

    // The alliance holds seq 2: the recovery cuts there by default.
    let (recovered, ack) = recover_node_2(&mut fed, 2).await;
    assert_eq!(
        (ack.seq, ack.author.clone()),
        (1, recovered.public_id().to_vec())
    );
    // 2 of the old log, the proposal, the approval, 1 of the new log.
    fed.converge_when(CONVERGE, |s| s.entries == 5)
        .await
        .unwrap();
    let status = fed.status(2).await.unwrap();
    assert!(
        status.lost_own_entries.is_empty(),
        "{}",
        status_summary(&status)
    );
    let want: BTreeSet<String> = [ballot(0), ballot(1), ballot(8)].into();
    for i in 0..NODES {
        assert_eq!(
            ballots_of(&intentions_of(&fed, i).await, &home),
            want,
            "node {i}"
        );
    }
    // Issue 22, item 6: the client's `as` follows the organisation to its new log,
    // whether it names the organisation or its old key.
    let name = roster_of(&fed, 2)
        .await
        .organisations
        .iter()
        .find(|o| o.key == home.public_id().to_vec())
        .map(|o| o.name.clone())
        .unwrap();
    for (n, as_) in [name, home.public_id().to_string()].iter().enumerate() {
        let published: serde_json::Value = serde_json::from_str(&accord_ok(&[
            OsStr::new("statement"),
            OsStr::new("publish"),
            OsStr::new("--config"),
            client2.as_os_str(),
            OsStr::new("--as"),
            OsStr::new(as_),
            OsStr::new("--title"),
            OsStr::new("after the recovery"),
            OsStr::new("--text"),
            OsStr::new(as_),
            OsStr::new("--json"),
        ]))
        .unwrap();
        assert_eq!(
            (published["author_id"].as_str(), published["seq"].as_u64()),
            (
                Some(recovered.public_id().to_string().as_str()),
                Some(2 + n as u64)
            ),
            "--as {as_}: {published}"
        );
    }
}

/// Recovers node 2's organisation as its operators would: a new key by `accord
/// keygen`, `accord propose recover` on node 0 (default cut), `accord approve` on
/// node 1, then node 2 restarted on the new key file (node.toml names it and the
/// operator's identity, as deploy/README.md says). Waits until every node shows
/// the recovery with `cut` and node 2 has published an intention on ballot 8 in the
/// new log, and returns the new identity and that publish's acknowledgement.
async fn recover_node_2(fed: &mut ProcFederation, cut: u64) -> (Identity, pb::PublishResponse) {
    let org = fed.nodes[2].home.public_id();
    let folder = fed.nodes[2].folder.clone();
    let new_pem = folder.join("keys/recovered.pem");
    accord_ok(&[
        OsStr::new("keygen"),
        OsStr::new("--out"),
        new_pem.as_os_str(),
    ]);
    let recovered = Identity::from_pem(&std::fs::read_to_string(&new_pem).unwrap()).unwrap();
    let new_key = recovered.public_id();
    let client0 = client_toml(fed, 0);
    let (org_hex, new_hex) = (org.to_string(), new_key.to_string());
    let before = fed.status(1).await.unwrap().entries;
    let proposed: serde_json::Value = serde_json::from_str(&accord_ok(&[
        OsStr::new("propose"),
        OsStr::new("recover"),
        OsStr::new("--config"),
        client0.as_os_str(),
        OsStr::new("--member"),
        OsStr::new(&org_hex),
        OsStr::new("--key"),
        OsStr::new(&new_hex),
        OsStr::new("--rationale"),
        OsStr::new("our signing key is gone"),
        OsStr::new("--json"),
    ]))
    .unwrap();
    let proposal = proposed["id"].as_str().unwrap().to_owned();
    // The organisation recovered has no vote on it: the other two members decide.
    fed.wait_status(1, CONVERGE, |s| s.entries == before + 1)
        .await
        .unwrap();
    let client1 = client_toml(fed, 1);
    accord_ok(&[
        OsStr::new("approve"),
        OsStr::new("--config"),
        client1.as_os_str(),
        OsStr::new(&proposal),
    ]);
    for i in 0..NODES {
        let mut passed = false;
        for _ in 0..100 {
            let roster = roster_of(fed, i).await;
            let o = roster.organisations.iter().find(|o| o.key == org.to_vec());
            if let Some(r) = o.and_then(|o| o.recoveries.first()) {
                assert_eq!(
                    (r.log.clone(), r.up_to_seq, r.next.clone()),
                    (org.to_vec(), cut, new_key.to_vec()),
                    "node {i}"
                );
                passed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(passed, "node {i} never saw the recovery pass");
    }
    fed.nodes[2].terminate().await;
    let config = std::fs::read_to_string(&fed.nodes[2].config).unwrap();
    let config = config
        .replace("keys/home.pem", "keys/recovered.pem")
        .replace(&org_hex, &new_hex);
    std::fs::write(&fed.nodes[2].config, config).unwrap();
    fed.nodes[2].start().await.unwrap();
    // It publishes at once, in a new log.
    let ack = until_accepted("publish after the recovery", || {
        let mut client = fed.nodes[2].client();
        let recovered = recovered.clone();
        async move {
            publish(
                &mut client,
                &recovered,
                intention(&ballot(8), S::Intends, ""),
            )
            .await
        }
    })
    .await;
    (recovered, ack)
}
