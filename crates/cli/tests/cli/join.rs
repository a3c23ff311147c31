//! Issue 11, item 7: the demo admits a fifth organisation that joins from an
//! invitation, with the commands of README's "Joining an alliance" against the
//! running demo (README, "A fifth organisation in the demo").

use super::*;

/// The demo's four nodes announce themselves; a member invites; a new organisation
/// joins (`accord join`), is proposed with its node and approved; its node starts
/// (`accord node`), holds every entry, and every demo node lists it as a connected
/// peer; its client config publishes as it without edits, by key or by name.
#[test]
fn the_demo_admits_a_fifth_organisation_that_joins_with_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("pal");
    let _running = start_demo(&demo, Duration::from_secs(120));
    let (manifest, configs) = demo_manifest(&demo);
    let members = configs_with_role(&manifest, &configs, "member");
    for config in &configs {
        let announced = json_at(config, &["announce"]);
        assert_eq!(announced["id"].as_str().unwrap().len(), 64, "{announced}");
    }
    let invitation = dir.path().join("invitation.json");
    let invited = json_at(members[0], &["invite", "--out", path(&invitation)]);
    assert_eq!(invited["invited_by"], manifest["organisations"][0]["name"]);

    let fifth = dir.path().join("fifth");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let joined = json(&[
        "join",
        "--invitation",
        path(&invitation),
        "--dir",
        path(&fifth),
        "--name",
        "Fifth Party",
        "--listen",
        &listen,
        "--json",
    ]);
    let key = joined["key"].as_str().unwrap();
    let cert = joined["node_cert_sha256"].as_str().unwrap();
    assert_eq!(joined["node_address"], listen.as_str());
    let proposal = json_at(
        members[0],
        &[
            "propose",
            "admit",
            "--name",
            "Fifth Party",
            "--key",
            key,
            "--node-address",
            &listen,
            "--node-cert-sha256",
            cert,
        ],
    );
    let id = proposal["id"].as_str().unwrap().to_owned();
    wait_for(
        "the proposal to reach the second member",
        Duration::from_secs(30),
        || {
            json_at(members[1], &["proposals"])
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    );
    json_at(members[1], &["approve", &id]);
    wait_for(
        "every roster to hold the fifth organisation and its node",
        Duration::from_secs(30),
        || {
            configs.iter().all(|c| {
                json_at(c, &["roster"])["organisations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["name"] == "Fifth Party" && o["node"]["cert_sha256"] == cert)
            })
        },
    );

    let node_toml = fifth.join("node.toml");
    let (_fifth_node, address) = start(
        &["node", "--config", path(&node_toml)],
        "listening on ",
        Duration::from_secs(60),
    );
    assert_eq!(address, listen);
    let fifth_client = fifth.join("client.toml").display().to_string();
    let mut all = configs.clone();
    all.push(fifth_client.clone());
    converged(&all, Duration::from_secs(30));
    wait_for(
        "every demo node to list the fifth as a connected peer",
        Duration::from_secs(30),
        || {
            configs.iter().all(|c| {
                json_at(c, &["status"])["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "Fifth Party" && p["connected"] == true)
            })
        },
    );
    // It publishes as an admitted member, and the demo nodes receive it.
    let before = json_at(&configs[0], &["status"])["entries"]
        .as_u64()
        .unwrap();
    json_at(&fifth_client, &["announce"]);
    wait_for(
        "the fifth's entry to reach the demo nodes",
        Duration::from_secs(30),
        || json_at(&configs[0], &["status"])["entries"].as_u64() == Some(before + 1),
    );
    // Issue 22, item 6: the client.toml `accord join` wrote publishes as the new
    // organisation without edits, and `--as` takes its name, admitted after the
    // charter; so does a member naming it as a co-signer.
    let published = json_at(
        &fifth_client,
        &[
            "statement",
            "publish",
            "--title",
            "Hello",
            "--text",
            "We joined",
        ],
    );
    assert_eq!(published["author_id"], key, "{published}");
    let by_name = json_at(
        &fifth_client,
        &[
            "statement",
            "publish",
            "--as",
            "fifth party",
            "--title",
            "Again",
            "--text",
            "By name",
        ],
    );
    assert_eq!(by_name["author_id"], key, "{by_name}");
    assert_eq!(
        by_name["seq"].as_u64(),
        published["seq"].as_u64().map(|s| s + 1)
    );
    let asked = json_at(
        members[0],
        &[
            "statement",
            "publish",
            "--title",
            "Joint",
            "--text",
            "With the fifth",
            "--cosigner",
            "Fifth Party",
        ],
    );
    assert!(asked["seq"].as_u64().is_some(), "{asked}");
}
