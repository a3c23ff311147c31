//! Backups through the node's real `Backup` stream: every byte of a backup is
//! covered (one flipped anywhere is caught by `backup::verify_from`), and backups
//! taken while clients publish are each one consistent snapshot.

use accord_core::pb;
use accord_core::pb::IntentionStatus as S;
use accord_node::backup;
use accord_tests::*;

use crate::{LEEDS_HHP, home_to_all};

/// The bytes of one backup, as `accord backup` writes them.
async fn backup_bytes(client: &mut Client) -> Vec<u8> {
    let mut stream = client
        .backup(pb::BackupRequest {})
        .await
        .expect("backup starts")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.expect("backup chunk") {
        assert!(chunk.data.len() <= backup::CHUNK);
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_of_a_backup_is_caught() {
    let (a, _node, mut c) = home_to_all(2, 1).await;
    publish(&mut c, a.member(0), intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    publish(&mut c, a.member(1), intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    let st = publish(&mut c, a.member(1), statement("Unity", vec![a.key(0)]))
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
    let status = c
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let bytes = backup_bytes(&mut c).await;
    let verified = backup::verify_from(&bytes[..]).expect("the backup verifies");
    assert_eq!(verified.manifest.entries, 5);
    assert_eq!(verified.manifest.entries, status.entries);
    assert_eq!(
        verified.manifest.entries_digest,
        hex::encode(&status.entries_digest)
    );
    assert_eq!(verified.manifest.digest, hex::encode(&status.digest));
    assert_eq!(verified.digest_matches(), Some(true));
    assert_eq!(verified.manifest.heads.len(), 3);

    // Every byte, flipped: each damaged copy is refused (off the async threads: a
    // few thousand full verifications).
    let checked = tokio::task::spawn_blocking(move || {
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[i] ^= bit;
                assert!(
                    backup::verify_from(&damaged[..]).is_err(),
                    "flipping bit {bit:#04x} of byte {i} of {} went unnoticed",
                    bytes.len()
                );
            }
        }
        // Cut short anywhere, or with a byte more, it is refused too.
        for len in (0..bytes.len()).step_by(7) {
            assert!(backup::verify_from(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = backup::verify_from(&longer[..]).unwrap_err();
        assert!(err.to_string().contains("follow its checksum"), "{err}");
        bytes.len()
    })
    .await
    .unwrap();
    assert!(checked > 1000, "a backup of {checked} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_while_clients_publish_are_each_one_snapshot() {
    let (a, node, mut c) = home_to_all(2, 0).await;
    let member = a.member(0).clone();
    let mut publisher = node.client().await.unwrap();
    let publishing = tokio::spawn(async move {
        for i in 0..200 {
            publish(
                &mut publisher,
                &member,
                intention(
                    &format!("local.leeds.ward-{i}.2027-05-06"),
                    S::Considering,
                    "",
                ),
            )
            .await
            .unwrap();
        }
    });
    let mut seen = Vec::new();
    for _ in 0..6 {
        let bytes = backup_bytes(&mut c).await;
        let verified = tokio::task::spawn_blocking(move || backup::verify_from(&bytes[..]))
            .await
            .unwrap()
            .expect("a backup taken under load verifies");
        seen.push(verified.manifest.entries);
    }
    publishing.await.unwrap();
    let last = backup::verify_from(&backup_bytes(&mut c).await[..]).unwrap();
    assert_eq!(last.manifest.entries, 200);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    // No token, no backup.
    let mut anonymous = node.client_with(None).await.unwrap();
    let refused = anonymous.backup(pb::BackupRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
