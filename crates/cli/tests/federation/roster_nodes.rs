//! Nodes in the roster (issue 11, items 6 and 7), on real processes over TLS: a
//! certificate rotated by one signed announcement, and an organisation that joins
//! from an invitation and is dialled by every node once admitted.

use std::ffi::OsStr;

use accord_node::tls::TlsIdentity;

use super::*;

/// Runs `accord args…`, expecting success; returns stdout.
pub(super) fn accord_ok(args: &[&OsStr]) -> String {
    let out = accord_run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Node `i`'s view of organisation `name`'s node, as `accord roster --json` shows it.
async fn roster_node(fed: &ProcFederation, i: usize, key: &[u8]) -> Option<(String, Vec<u8>)> {
    let roster = fed.nodes[i]
        .client()
        .get_roster(pb::GetRosterRequest {})
        .await
        .ok()?
        .into_inner();
    let org = roster.organisations.into_iter().find(|o| o.key == key)?;
    (!org.node_address.is_empty()).then_some((org.node_address, org.node_cert_sha256))
}

/// Rewrites node `i`'s config with only `peers` in `[[peers]]`.
fn rewrite_peers(fed: &ProcFederation, i: usize, peers: &[usize]) {
    let node = &fed.nodes[i];
    let peers = fed.peer_entries(peers);
    std::fs::write(
        &node.config,
        config_toml(&fed.alliance, &node.home, node.addr, &peers, 1),
    )
    .unwrap();
}

/// A certificate rotation is one signed announcement: every node announces its node
/// (`accord announce`), nodes 0 and 1 then drop node 2 from their `[[peers]]` and
/// keep replicating with it through the roster alone. Node 2 makes a new certificate
/// (`accord tls new`), announces its fingerprint and restarts with it: nodes 0 and 1,
/// which never had it in their config, pin it, replicate with node 2 in both
/// directions, and refuse the old certificate. A bad announcement is refused with
/// INVALID_ARGUMENT and stores nothing; when node 2's organisation leaves, its node
/// is unpinned and dropped everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_by_announcement_is_pinned_everywhere_and_the_old_one_refused() {
    let mut fed = ProcFederation::start(false).await.unwrap();
    let clients: Vec<PathBuf> = (0..NODES).map(|i| client_toml(&fed, i)).collect();
    // Bad input (before any other entry exists): INVALID_ARGUMENT, nothing stored.
    let before = fed.status(0).await.unwrap().entries;
    for (address, cert) in [
        ("no-port.example.org", vec![1; 32]),
        ("https://n.example.org:7400", vec![1; 32]),
        ("n.example.org:7400", vec![1; 31]),
    ] {
        let refused = fed.nodes[0]
            .client()
            .announce(pb::AnnounceRequest {
                author: Vec::new(),
                address: address.into(),
                cert_sha256: cert,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    assert_eq!(fed.status(0).await.unwrap().entries, before);
    for (i, client) in clients.iter().enumerate() {
        let address = fed.nodes[i].addr.to_string();
        let out = accord_ok(&[
            OsStr::new("announce"),
            OsStr::new("--config"),
            client.as_os_str(),
            OsStr::new("--address"),
            OsStr::new(&address),
            OsStr::new("--json"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["seq"], 1, "{out}");
    }
    let key2 = fed.nodes[2].home.public_id().to_vec();
    let old_pin = fed.nodes[2].pin;
    for i in 0..NODES {
        let deadline = Instant::now() + CONVERGE;
        while roster_node(&fed, i, &key2).await
            != Some((fed.nodes[2].addr.to_string(), old_pin.to_vec()))
        {
            assert!(Instant::now() < deadline, "{}", fed.logs());
            tokio::time::sleep(POLL).await;
        }
    }
    // `accord roster` shows the node.
    let roster = accord_ok(&[
        OsStr::new("roster"),
        OsStr::new("--config"),
        clients[0].as_os_str(),
        OsStr::new("--json"),
    ]);
    assert!(roster.contains(&hex::encode(old_pin)), "{roster}");

    // Nodes 0 and 1 forget node 2 in their config: the roster keeps it pinned and
    // dialled, under its organisation's name.
    let name2 = member_name(2);
    rewrite_peers(&fed, 0, &[1]);
    rewrite_peers(&fed, 1, &[0]);
    hangup(&fed.nodes[0]);
    hangup(&fed.nodes[1]);
    for i in 0..2 {
        let status = fed
            .wait_status(i, CONVERGE, |s| {
                s.peers.iter().all(|p| p.name != "node-2")
                    && s.peers.iter().any(|p| p.name == name2 && p.connected)
            })
            .await
            .unwrap();
        assert_eq!(status.peers.len(), 2, "{}", status_summary(&status));
    }
    let home2 = fed.nodes[2].home.clone();
    publish(
        &mut fed.nodes[2].client(),
        &home2,
        intention(&ballot(0), S::Considering, ""),
    )
    .await
    .unwrap();
    fed.converge_when(CONVERGE, |s| s.entries == 4)
        .await
        .unwrap();

    // The rotation: a new certificate, announced before the switch.
    let folder = fed.nodes[2].folder.clone();
    let (new_cert, new_key) = (folder.join("new.crt"), folder.join("new.key"));
    let printed = accord_ok(&[
        OsStr::new("tls"),
        OsStr::new("new"),
        OsStr::new("--cert"),
        new_cert.as_os_str(),
        OsStr::new("--key"),
        new_key.as_os_str(),
        OsStr::new("--name"),
        OsStr::new("127.0.0.1"),
    ]);
    let new_hex = printed.trim().lines().last().unwrap().to_owned();
    let new_pin = accord_node::tls::parse_fingerprint(&new_hex).unwrap();
    assert_ne!(new_pin, old_pin);
    let address = fed.nodes[2].addr.to_string();
    accord_ok(&[
        OsStr::new("announce"),
        OsStr::new("--config"),
        clients[2].as_os_str(),
        OsStr::new("--address"),
        OsStr::new(&address),
        OsStr::new("--cert-sha256"),
        OsStr::new(&new_hex),
    ]);
    for i in 0..2 {
        let deadline = Instant::now() + CONVERGE;
        while roster_node(&fed, i, &key2).await != Some((address.clone(), new_pin.to_vec())) {
            assert!(Instant::now() < deadline, "{}", fed.logs());
            tokio::time::sleep(POLL).await;
        }
    }
    // Node 2 restarts with the new certificate, the old one kept aside.
    fed.nodes[2].terminate().await;
    let old_identity =
        TlsIdentity::load(&folder.join("tls/node.crt"), &folder.join("tls/node.key")).unwrap();
    std::fs::rename(&new_cert, folder.join("tls/node.crt")).unwrap();
    std::fs::rename(&new_key, folder.join("tls/node.key")).unwrap();
    fed.nodes[2].pin = new_pin;
    fed.nodes[2].start().await.unwrap();
    let home0 = fed.nodes[0].home.clone();
    publish(
        &mut fed.nodes[0].client(),
        &home0,
        intention(&ballot(1), S::Intends, ""),
    )
    .await
    .unwrap();
    publish(
        &mut fed.nodes[2].client(),
        &home2,
        intention(&ballot(2), S::Intends, ""),
    )
    .await
    .unwrap();
    fed.converge_when(CONVERGE, |s| s.entries == 7)
        .await
        .unwrap();
    for i in 0..2 {
        fed.wait_status(i, CONVERGE, |s| {
            s.peers.iter().any(|p| p.name == name2 && p.connected)
        })
        .await
        .unwrap();
    }
    // The old certificate is no longer a pinned peer anywhere; the new one is.
    let new_identity =
        TlsIdentity::load(&folder.join("tls/node.crt"), &folder.join("tls/node.key")).unwrap();
    for i in 0..2 {
        let mut new =
            federation_client(fed.nodes[i].addr, fed.nodes[i].pin, Some(&new_identity)).unwrap();
        new.get_heads(pb::GetHeadsRequest::default()).await.unwrap();
        let mut old =
            federation_client(fed.nodes[i].addr, fed.nodes[i].pin, Some(&old_identity)).unwrap();
        let refused = old
            .get_heads(pb::GetHeadsRequest::default())
            .await
            .unwrap_err();
        // The handshake fails: the server refuses the certificate and closes the
        // connection (the code the client sees depends on when it notices).
        assert_ne!(refused.code(), tonic::Code::Ok, "{refused:?}");
    }

    // Node 2's organisation leaves: its node is unpinned and dropped everywhere.
    let client2 = client_toml(&fed, 2);
    accord_ok(&[
        OsStr::new("leave"),
        OsStr::new("--config"),
        client2.as_os_str(),
    ]);
    for i in 0..2 {
        fed.wait_status(i, CONVERGE, |s| s.peers.iter().all(|p| p.name != name2))
            .await
            .unwrap();
        let mut gone =
            federation_client(fed.nodes[i].addr, fed.nodes[i].pin, Some(&new_identity)).unwrap();
        assert!(
            gone.get_heads(pb::GetHeadsRequest::default())
                .await
                .is_err()
        );
    }
}

/// A port from the OS, released for a node to bind (its address is written into its
/// config, and announced, before it starts).
fn free_port() -> SocketAddr {
    let listener = accord_tests::node_listener().unwrap();
    listener.local_addr().unwrap()
}

/// Joining (README, "Joining an alliance"): node 0 (a member) writes an invitation
/// (`accord invite`); a new organisation runs `accord join` on it, which makes its
/// folder and prints its key and node; a member proposes its admission with the
/// node (`accord propose admit … --node-address … --node-cert-sha256 …`) and
/// another approves; the new node starts, holds every entry, announces itself, and
/// every node lists it as a connected peer though none has it in its config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_joins_from_an_invitation_and_every_node_dials_it_once_admitted() {
    let fed = ProcFederation::start(false).await.unwrap();
    let mut ran = Ran::default();
    let clients: Vec<PathBuf> = (0..NODES).map(|i| client_toml(&fed, i)).collect();
    // Each node announces itself (its `advertise` and certificate), once: a newcomer
    // pins only what its invitation and the roster name.
    for client in &clients {
        ran.ok(&[
            OsStr::new("announce"),
            OsStr::new("--config"),
            client.as_os_str(),
        ]);
    }
    let home0 = fed.nodes[0].home.clone();
    publish(
        &mut fed.nodes[0].client(),
        &home0,
        intention(&ballot(0), S::Considering, ""),
    )
    .await
    .unwrap();
    let dir = fed.alliance.dir.path().to_owned();
    let invitation = dir.join("invitation.json");
    let out = ran.ok(&[
        OsStr::new("invite"),
        OsStr::new("--config"),
        clients[0].as_os_str(),
        OsStr::new("--out"),
        invitation.as_os_str(),
        OsStr::new("--json"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["peer_address"], fed.nodes[0].addr.to_string(), "{out}");
    assert_eq!(
        v["peer_cert_sha256"],
        hex::encode(fed.nodes[0].pin),
        "{out}"
    );

    // An altered invitation is refused before anything is written.
    let text = std::fs::read_to_string(&invitation).unwrap();
    let altered = dir.join("altered.json");
    std::fs::write(&altered, text.replacen("\\\"name\\\"", "\\\"name\\\" ", 1)).unwrap();
    let err = accord_fails(&[
        OsStr::new("join"),
        OsStr::new("--invitation"),
        altered.as_os_str(),
        OsStr::new("--dir"),
        dir.join("never").as_os_str(),
    ]);
    assert!(err.contains("the file was altered"), "{err}");
    assert!(!dir.join("never").exists());

    let folder = dir.join("fourth");
    let listen = free_port();
    let out = ran.ok(&[
        OsStr::new("join"),
        OsStr::new("--invitation"),
        invitation.as_os_str(),
        OsStr::new("--dir"),
        folder.as_os_str(),
        OsStr::new("--name"),
        OsStr::new("Fourth Party"),
        OsStr::new("--listen"),
        OsStr::new(&listen.to_string()),
        OsStr::new("--advertise"),
        OsStr::new(&listen.to_string()),
        OsStr::new("--json"),
    ]);
    let joined: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = joined["key"].as_str().unwrap().to_owned();
    let cert = joined["node_cert_sha256"].as_str().unwrap().to_owned();
    assert_eq!(joined["node_address"], listen.to_string());
    assert_eq!(
        joined["propose"],
        format!(
            "accord propose admit --name 'Fourth Party' --key {key} --node-address {listen} \
             --node-cert-sha256 {cert}"
        )
    );
    // The command it printed, run by a member of the alliance; another approves.
    let out = ran.ok(&[
        OsStr::new("propose"),
        OsStr::new("admit"),
        OsStr::new("--config"),
        clients[0].as_os_str(),
        OsStr::new("--name"),
        OsStr::new("Fourth Party"),
        OsStr::new("--key"),
        OsStr::new(&key),
        OsStr::new("--node-address"),
        OsStr::new(&listen.to_string()),
        OsStr::new("--node-cert-sha256"),
        OsStr::new(&cert),
        OsStr::new("--json"),
    ]);
    let proposal: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = proposal["id"].as_str().unwrap().to_owned();
    fed.wait_status(1, CONVERGE, |s| s.open_proposals == 1)
        .await
        .unwrap();
    ran.ok(&[
        OsStr::new("approve"),
        OsStr::new("--config"),
        clients[1].as_os_str(),
        OsStr::new(&id),
    ]);
    for i in 0..NODES {
        fed.wait_status(i, CONVERGE, |s| s.roster_version == 1)
            .await
            .unwrap();
    }

    // The new node starts on its folder as `accord join` wrote it.
    let pin = accord_node::tls::parse_fingerprint(&cert).unwrap();
    let mut fourth = ProcNode {
        name: "fourth".into(),
        folder: folder.clone(),
        config: folder.join("node.toml"),
        addr: listen,
        pin,
        home: fed.nodes[0].home.clone(),
        process: None,
        env: Vec::new(),
        args: Vec::new(),
    };
    std::fs::write(folder.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let token = std::fs::read_to_string(folder.join("token")).unwrap();
    let token = token.trim().to_owned();
    start_joined(&mut fourth, &token).await;
    ran.0
        .push(vec!["node".into(), "--config".into(), "node.toml".into()]);
    let mut client = tls_client(listen, pin, Some(&token)).unwrap();
    // Once it holds its admission, it announces itself (its `advertise` and certificate, by default).
    let deadline = Instant::now() + CONVERGE;
    loop {
        let status = client
            .get_status(pb::GetStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        if status.roster_version == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", fourth.log_tail(20));
        tokio::time::sleep(POLL).await;
    }
    let client_toml = folder.join("client.toml");
    ran.ok(&[
        OsStr::new("announce"),
        OsStr::new("--config"),
        client_toml.as_os_str(),
    ]);
    // Every node holds every entry, and lists the new node as a connected peer.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mine = client
            .get_status(pb::GetStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut theirs = Vec::new();
        for i in 0..NODES {
            theirs.push(fed.status(i).await.unwrap());
        }
        let same = theirs
            .iter()
            .all(|s| s.entries_digest == mine.entries_digest && s.entries == mine.entries);
        let dialled = theirs.iter().all(|s| {
            s.peers
                .iter()
                .any(|p| p.name == "Fourth Party" && p.connected)
        });
        // Three announcements, node 0's intention, the admission (a proposal and an
        // approval), and the newcomer's announcement.
        if same && dialled && mine.entries == 7 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "joined: {}\n{}\n{}",
            status_summary(&mine),
            theirs
                .iter()
                .map(status_summary)
                .collect::<Vec<_>>()
                .join("\n"),
            fourth.log_tail(30)
        );
        tokio::time::sleep(POLL).await;
    }
    let out = ran.ok(&[
        OsStr::new("status"),
        OsStr::new("--config"),
        client_toml.as_os_str(),
        OsStr::new("--json"),
    ]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["entries"], 7, "{out}");
    // Every `accord` command of README's "Joining an alliance" and of deploy/README's
    // walkthrough is one this test ran, with the same options.
    ran.covers("README.md", "## Joining an alliance");
    ran.covers(
        "deploy/README.md",
        "## From a fresh server to a node in the alliance",
    );
}

/// The `accord` commands a test ran, to check documentation against.
#[derive(Default)]
struct Ran(Vec<Vec<String>>);

impl Ran {
    fn ok(&mut self, args: &[&OsStr]) -> String {
        self.0.push(
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        );
        accord_ok(args)
    }

    /// Fails unless every line of section `heading` of `file` that starts with
    /// `accord ` (continuation lines joined) has the same subcommand and the same
    /// set of options as a command run (`--json` aside).
    fn covers(&self, file: &str, heading: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text
            .find(&format!("{heading}\n"))
            .unwrap_or_else(|| panic!("{file} has no {heading:?}"));
        let section = &text[start + heading.len()..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        let mut lines: Vec<String> = Vec::new();
        let mut joined = String::new();
        for line in section.lines() {
            let line = line.trim();
            if !joined.is_empty() {
                joined.push(' ');
                joined.push_str(line.trim_end_matches('\\'));
                if !line.ends_with('\\') {
                    lines.push(std::mem::take(&mut joined));
                }
            } else if line.starts_with("accord ") {
                if line.ends_with('\\') {
                    joined = line.trim_end_matches('\\').to_owned();
                } else {
                    lines.push(line.to_owned());
                }
            }
        }
        assert!(lines.len() >= 5, "{file} {heading}: {lines:?}");
        let shape = |words: &[String]| {
            let command: Vec<String> = words
                .iter()
                .take_while(|w| !w.starts_with("--"))
                .cloned()
                .collect();
            // `--json` changes only the output's form: documented with or without.
            let options: BTreeSet<String> = words
                .iter()
                .filter(|w| w.starts_with("--") && *w != "--json")
                .cloned()
                .collect();
            (command, options)
        };
        let ran: Vec<_> = self.0.iter().map(|r| shape(r)).collect();
        for line in lines {
            let words = shell_words(&line);
            assert_eq!(words[0], "accord", "{line}");
            let documented = shape(&words[1..]);
            assert!(
                ran.contains(&documented),
                "{file}: `{line}` is not a command the test ran: {ran:?}"
            );
        }
    }
}

/// Splits a shell line into words: double and single quotes group, `#` after a
/// space starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Starts a node process for a folder `accord join` made and waits until it answers
/// with `token`.
async fn start_joined(node: &mut ProcNode, token: &str) {
    let process = NodeProcess::spawn(&node.config, &node.log_path(), &[], &[])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail(20)));
    assert_eq!(process.addr, node.addr);
    node.process = Some(process);
    let mut client = tls_client(node.addr, node.pin, Some(token)).unwrap();
    let deadline = Instant::now() + START;
    while client
        .get_status(pb::GetStatusRequest::default())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{}", node.log_tail(20));
        tokio::time::sleep(POLL).await;
    }
}
