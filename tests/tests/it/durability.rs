//! What a node acknowledged survives a restart on the same data folder, including
//! many concurrent publishers sharing group commits.

use std::collections::BTreeSet;

use accord_core::pb::IntentionStatus as S;
use accord_core::pb::publish_request::Body;
use accord_tests::*;

use crate::{HARTLEPOOL_BY, LEEDS_HHP, home_to_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_heads_logs_and_digest() {
    let (a, mut node, mut c) = home_to_all(3, 1).await;
    for who in [0, 1] {
        publish(&mut c, a.member(who), intention(LEEDS_HHP, S::Intends, ""))
            .await
            .unwrap();
    }
    let st = publish(&mut c, a.member(2), statement("Unity", vec![a.key(0)]))
        .await
        .unwrap();
    publish(&mut c, a.member(0), endorsement(&st.id))
        .await
        .unwrap();
    publish(
        &mut c,
        a.secretary(0),
        resolution(LEEDS_HHP, vec![a.key(0)], vec![a.key(1)]),
    )
    .await
    .unwrap();
    publish(
        &mut c,
        a.member(1),
        Body::Event(event("q", "2027-01-10T10:00", "2027-01-10T11:00", "Hall")),
    )
    .await
    .unwrap();
    let before = snapshot(&mut c).await.unwrap();
    let entries_before = all_entries(&mut c).await.unwrap();
    assert_eq!(before.entries, 6);
    assert_eq!(
        before.digest,
        a.digest_of(&entries_before).unwrap().to_vec()
    );

    node.restart().await.unwrap();
    let mut c = node.client().await.unwrap();
    assert_eq!(snapshot(&mut c).await.unwrap(), before);
    assert_eq!(all_entries(&mut c).await.unwrap(), entries_before);
    // Publishing goes on from the stored heads.
    let r = publish(
        &mut c,
        a.member(0),
        intention(HARTLEPOOL_BY, S::Considering, ""),
    )
    .await
    .unwrap();
    assert_eq!(r.seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_are_all_acknowledged_and_survive_restart() {
    const PUBLISHERS: usize = 64;
    const EACH: usize = 4;
    const MEMBERS: usize = 8;
    let (a, mut node, c) = home_to_all(MEMBERS, 0).await;
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let mut c = c.clone();
        let author = a.member(p % MEMBERS).clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..EACH {
                let body = statement(&format!("Publisher {p} statement {i}"), vec![]);
                acks.push(publish(&mut c, &author, body).await?);
            }
            Ok::<_, tonic::Status>(acks)
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.extend(
            task.await
                .expect("publisher task")
                .expect("every publish acknowledged"),
        );
    }
    assert_eq!(acks.len(), PUBLISHERS * EACH);
    let positions: BTreeSet<(Vec<u8>, u64)> =
        acks.iter().map(|r| (r.author.clone(), r.seq)).collect();
    assert_eq!(
        positions.len(),
        acks.len(),
        "no two acks share a log position"
    );

    let mut c = c.clone();
    let before = snapshot(&mut c).await.unwrap();
    node.restart().await.unwrap();
    let mut c = node.client().await.unwrap();
    let after = snapshot(&mut c).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after.entries, (PUBLISHERS * EACH) as u64);
    let stored = all_entries(&mut c).await.unwrap();
    let stored_ids: BTreeSet<Vec<u8>> = stored.iter().map(entry_id).collect();
    for ack in &acks {
        assert!(
            stored_ids.contains(&ack.id),
            "acknowledged entry {ack:?} lost"
        );
    }
    let titles: BTreeSet<String> = state_of(&a.charter, &stored)
        .unwrap()
        .statements()
        .into_iter()
        .map(|s| s.statement.title)
        .collect();
    assert_eq!(titles.len(), PUBLISHERS * EACH);
    assert_eq!(after.digest, a.digest_of(&stored).unwrap().to_vec());
}
