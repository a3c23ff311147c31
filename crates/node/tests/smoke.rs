//! The node end to end over real gRPC on loopback: publish, query, refuse, restart.

use std::time::Duration;

use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
use accord_core::pb::{self, ledger_client::LedgerClient, publish_request::Body};
use accord_core::{Charter, Identity};
use accord_node::NodeConfig;
use accord_node::config::Operator;
use accord_node::tls::{self, TlsIdentity};
use tonic::transport::Channel;

const TOKEN: &str = "smoke-token";

fn config(dir: &std::path::Path) -> NodeConfig {
    let ids: Vec<Identity> = (1..=3u8).map(|n| Identity::from_seed([n; 32])).collect();
    let doc = CharterDoc {
        accord_charter: 1,
        name: "Smoke Alliance".into(),
        members: vec![
            CharterMember {
                name: "Alpha".into(),
                key: ids[0].public_id(),
                ec_id: None,
            },
            CharterMember {
                name: "Beta".into(),
                key: ids[1].public_id(),
                ec_id: None,
            },
        ],
        secretaries: vec![CharterSecretary {
            name: "Sec".into(),
            key: ids[2].public_id(),
        }],
        rules: Rules::default(),
    };
    let charter = Charter::from_bytes(doc.to_file_bytes()).unwrap();
    let mut hash = [0u8; 32];
    hex::decode_to_slice(accord_node::token_sha256(TOKEN), &mut hash).unwrap();
    NodeConfig {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        charter,
        operators: vec![Operator {
            name: "op".into(),
            token_sha256: hash,
            identities: ids.iter().take(2).map(Identity::public_id).collect(),
        }],
        identities: ids,
        key_files: Vec::new(),
        cache_capacity_bytes: 1 << 22,
        min_free_disk_bytes: 0,
        peers: vec![],
        anti_entropy: Duration::from_secs(1),
        tls: None,
        http: None,
        limits: Default::default(),
    }
}

/// A TLS identity written to `dir` and loaded back as a node would.
fn tls_identity(dir: &std::path::Path) -> TlsIdentity {
    let (cert, key) = tls::generate(&["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join("node.crt"), cert).unwrap();
    std::fs::write(dir.join("node.key"), key).unwrap();
    TlsIdentity::load(&dir.join("node.crt"), &dir.join("node.key")).unwrap()
}

/// A node of a federation: home to identity `home` only, pulling from `peers`.
fn federated(
    dir: &std::path::Path,
    home: usize,
    tls: TlsIdentity,
    peers: &[(String, std::net::SocketAddr, tls::Fingerprint)],
) -> NodeConfig {
    let mut cfg = config(dir);
    cfg.tls = Some(tls);
    let identity = cfg.identities[home].clone();
    cfg.identities = vec![identity.clone()];
    cfg.operators[0].identities = vec![identity.public_id()];
    cfg.peers = peers
        .iter()
        .map(|(name, addr, fingerprint)| accord_node::replication::Peer {
            name: name.clone(),
            address: format!("https://{addr}"),
            fingerprint: *fingerprint,
        })
        .collect();
    cfg
}

struct Node {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), accord_node::NodeError>>,
    client: LedgerClient<Channel>,
}

async fn start(config: NodeConfig) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(config, listener).await
}

async fn start_on(config: NodeConfig, listener: tokio::net::TcpListener) -> Node {
    let addr = listener.local_addr().unwrap();
    let pin = config.tls.as_ref().map(TlsIdentity::fingerprint);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(accord_node::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let channel = match &pin {
        Some(pin) => tls::channel(
            &format!("https://{addr}"),
            tls::client_config(*pin, None).unwrap(),
            Duration::from_secs(5),
        )
        .unwrap(),
        None => Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap(),
    };
    Node {
        stop: Some(stop),
        task,
        client: LedgerClient::new(channel),
    }
}

impl Node {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn authed<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

fn intends(author: &Identity, ballot: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        author: author.public_id().to_vec(),
        body: Some(Body::Intention(pb::Intention {
            ballot: ballot.into(),
            status: pb::IntentionStatus::Intends as i32,
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn publish_query_refuse_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ids = cfg.identities.clone();
    let mut node = start(cfg.clone()).await;
    let ballot = "local.leeds.headingley-hyde-park.2027-05-06";
    node.client
        .publish(authed(intends(&ids[0], ballot)))
        .await
        .unwrap();
    node.client
        .publish(authed(intends(&ids[1], ballot)))
        .await
        .unwrap();
    let clashes = node
        .client
        .list_clashes(authed(pb::ListClashesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(clashes.clashes.len(), 1);
    assert_eq!(clashes.clashes[0].state, pb::ClashState::Open as i32);
    assert_eq!(clashes.clashes[0].nominations_close, "2027-04-08T15:00:00Z");

    let bad = node
        .client
        .publish(authed(intends(&ids[0], "local.leeds.x.2027-02-30")))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let no_token = node
        .client
        .publish(tonic::Request::new(intends(&ids[0], ballot)))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), tonic::Code::Unauthenticated);
    let not_covered = node
        .client
        .publish(authed(intends(&ids[2], ballot)))
        .await
        .unwrap_err();
    assert_eq!(
        not_covered.code(),
        tonic::Code::PermissionDenied,
        "{not_covered:?}"
    );

    let before = node
        .client
        .get_status(authed(pb::GetStatusRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.entries, 2);
    node.stop().await;
    let mut node = start(cfg).await;
    let after = node
        .client
        .get_status(authed(pb::GetStatusRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.digest, before.digest);
    assert_eq!(after.heads, before.heads);
    node.stop().await;
}

async fn digest(node: &mut Node) -> (u64, Vec<u8>) {
    let s = node
        .client
        .get_status(authed(pb::GetStatusRequest::default()))
        .await
        .unwrap()
        .into_inner();
    (s.entries, s.digest)
}

/// Polls until every node reports `entries` entries, for at most ten seconds.
async fn converge(nodes: &mut [Node], entries: u64) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut digests = Vec::new();
        for node in nodes.iter_mut() {
            digests.push(digest(node).await);
        }
        if digests.iter().all(|(n, _)| *n == entries) {
            return digests.into_iter().map(|(_, d)| d).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no convergence: {digests:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A chain A - B - C: C has no link to A, yet gets A's entries through B, live.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_relays_every_authors_entries() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let listeners: Vec<tokio::net::TcpListener> = futures_join(3).await;
    let addrs: Vec<std::net::SocketAddr> =
        listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let ids: Vec<TlsIdentity> = dirs.iter().map(|d| tls_identity(d.path())).collect();
    let pin = |i: usize| ids[i].fingerprint();
    let peers = |i: usize| -> Vec<(String, std::net::SocketAddr, tls::Fingerprint)> {
        match i {
            0 | 2 => vec![("b".into(), addrs[1], pin(1))],
            _ => vec![
                ("a".into(), addrs[0], pin(0)),
                ("c".into(), addrs[2], pin(2)),
            ],
        }
    };
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let cfg = federated(dirs[i].path(), i.min(1), ids[i].clone(), &peers(i));
        nodes.push(start_on(cfg, listener).await);
    }
    let ids = config(dirs[0].path()).identities;
    let ballot = "local.leeds.headingley-hyde-park.2027-05-06";
    nodes[0]
        .client
        .publish(authed(intends(&ids[0], ballot)))
        .await
        .unwrap();
    nodes[1]
        .client
        .publish(authed(intends(&ids[1], ballot)))
        .await
        .unwrap();
    let digests = converge(&mut nodes, 2).await;
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    let clashes = nodes[2]
        .client
        .list_clashes(authed(pb::ListClashesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(clashes.clashes.len(), 1, "C sees the clash between A and B");
    let status = nodes[1]
        .client
        .get_status(authed(pb::GetStatusRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.peers.len(), 2);
    for node in nodes {
        node.stop().await;
    }
}

async fn futures_join(n: usize) -> Vec<tokio::net::TcpListener> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    out
}

async fn pair() -> (Vec<tempfile::TempDir>, Vec<Node>) {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = pair_in(&dirs).await;
    (dirs, nodes)
}

/// Two nodes peered with each other, on the data in `dirs`.
async fn pair_in(dirs: &[tempfile::TempDir]) -> Vec<Node> {
    let listeners = futures_join(2).await;
    let addrs: Vec<std::net::SocketAddr> =
        listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let ids: Vec<TlsIdentity> = dirs.iter().map(|d| tls_identity(d.path())).collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let other = 1 - i;
        let peers = vec![(format!("n{other}"), addrs[other], ids[other].fingerprint())];
        nodes.push(
            start_on(
                federated(dirs[i].path(), i, ids[i].clone(), &peers),
                listener,
            )
            .await,
        );
    }
    nodes
}

fn raw(
    author: &Identity,
    charter: &Charter,
    seq_head: Option<&accord_core::LogHead>,
    kind: i32,
    body: Vec<u8>,
) -> pb::SignedEntry {
    let now = chrono_now_ms();
    accord_core::entry::sign(author, charter.id(), seq_head, now, kind, body)
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Two valid entries with one author and seq, one given to each node: both nodes end
/// with the proof and the author's log frozen, and agree on the digest.
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_is_found_passed_on_and_freezes_the_log() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let cfg = config(dirs[0].path());
    let alpha = &cfg.identities[0];
    let body = |ballot: &str| {
        use prost::Message;
        pb::Intention {
            ballot: ballot.into(),
            status: pb::IntentionStatus::Considering as i32,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let one = raw(
        alpha,
        &cfg.charter,
        None,
        pb::EntryKind::Intention as i32,
        body("local.leeds.headingley-hyde-park.2027-05-06"),
    );
    let two = raw(
        alpha,
        &cfg.charter,
        None,
        pb::EntryKind::Intention as i32,
        body("local.leeds.adel-wharfedale.2027-05-06"),
    );
    // Each node takes one side while they are apart; then they are peered.
    for (i, side) in [one.clone(), two].into_iter().enumerate() {
        let tls = tls_identity(dirs[i].path());
        let mut node = start(federated(dirs[i].path(), i, tls, &[])).await;
        node.client
            .submit(authed(pb::SubmitRequest { entry: Some(side) }))
            .await
            .unwrap();
        node.stop().await;
    }
    let mut nodes = pair_in(&dirs).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut frozen = Vec::new();
        let mut digests = Vec::new();
        for node in nodes.iter_mut() {
            let s = node
                .client
                .get_status(authed(pb::GetStatusRequest::default()))
                .await
                .unwrap()
                .into_inner();
            frozen.push(s.frozen.clone());
            digests.push(s.digest);
        }
        if frozen
            .iter()
            .all(|f| *f == vec![alpha.public_id().to_vec()])
            && digests[0] == digests[1]
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fork agreement: {frozen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more is accepted from the forked author, not even an entry that
    // extends one side correctly. (Regression: this entry once had an all-zero
    // previous hash, so it was refused as not fitting the log whether or not the log
    // was frozen, and the check could not fail.)
    let side = accord_core::entry::decode(one, usize::MAX).unwrap();
    let head = accord_core::LogHead {
        seq: 1,
        id: side.id(),
        timestamp_ms: 0,
    };
    let next = raw(
        alpha,
        &cfg.charter,
        Some(&head),
        pb::EntryKind::Intention as i32,
        body("local.leeds.adel-wharfedale.2027-05-06"),
    );
    let refused = nodes[0]
        .client
        .submit(authed(pb::SubmitRequest { entry: Some(next) }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("forked their log at seq 1"),
        "{refused:?}"
    );
    for node in nodes {
        node.stop().await;
    }
}

/// An entry of a kind this version does not know is stored and relayed untouched.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_kind_replicates_untouched() {
    let (dirs, mut nodes) = pair().await;
    let cfg = config(dirs[0].path());
    let beta = &cfg.identities[1];
    let entry = raw(
        beta,
        &cfg.charter,
        None,
        99,
        b"from a newer version".to_vec(),
    );
    nodes[0]
        .client
        .submit(authed(pb::SubmitRequest {
            entry: Some(entry.clone()),
        }))
        .await
        .unwrap();
    converge(&mut nodes, 1).await;
    let log = nodes[1]
        .client
        .get_log(authed(pb::GetLogRequest {
            author: beta.public_id().to_vec(),
            from_seq: 1,
            limit: 10,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log.entries, vec![entry]);
    for node in nodes {
        node.stop().await;
    }
}

/// Nodes in the roster through the API: `Announce` and `GetInvitation` refuse with
/// precise codes what they cannot do (a node without `advertise` or TLS, a token
/// that speaks for no member, a bad address) and store nothing; a good announcement
/// puts the node in the roster.
#[tokio::test]
async fn announce_and_invitation_refuse_precisely() {
    const OTHER: &str = "a-token-for-nobody";
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let mut hash = [0u8; 32];
    hex::decode_to_slice(accord_node::token_sha256(OTHER), &mut hash).unwrap();
    cfg.operators.push(Operator {
        name: "nobody".into(),
        token_sha256: hash,
        identities: vec![],
    });
    let alpha = cfg.identities[0].public_id().to_vec();
    let mut node = start(cfg).await;
    let announce = |address: &str, cert: Vec<u8>| pb::AnnounceRequest {
        author: alpha.clone(),
        address: address.into(),
        cert_sha256: cert,
    };
    let code = |r: Result<tonic::Response<pb::PublishResponse>, tonic::Status>| {
        r.map(|_| ()).unwrap_err().code()
    };
    // No `advertise`, no TLS: the defaults are missing.
    let r = node
        .client
        .announce(authed(announce("", vec![7; 32])))
        .await;
    assert_eq!(code(r), tonic::Code::FailedPrecondition);
    let r = node
        .client
        .announce(authed(announce("a.example.org:7400", vec![])))
        .await;
    assert_eq!(code(r), tonic::Code::FailedPrecondition);
    // A bad address or fingerprint.
    let r = node
        .client
        .announce(authed(announce("a.example.org", vec![7; 32])))
        .await;
    assert_eq!(code(r), tonic::Code::InvalidArgument);
    let r = node
        .client
        .announce(authed(announce("a.example.org:7400", vec![7; 33])))
        .await;
    assert_eq!(code(r), tonic::Code::InvalidArgument);
    // A token that does not cover the identity.
    let mut other = tonic::Request::new(announce("a.example.org:7400", vec![7; 32]));
    other
        .metadata_mut()
        .insert("authorization", format!("Bearer {OTHER}").parse().unwrap());
    let r = node.client.announce(other).await;
    assert_eq!(code(r), tonic::Code::PermissionDenied);
    let status = node
        .client
        .get_status(authed(pb::GetStatusRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.entries, 0);

    // Invitations: only for a member's or secretary's operator, from a node that
    // advertises an address and runs TLS.
    let mut other = tonic::Request::new(pb::GetInvitationRequest {});
    other
        .metadata_mut()
        .insert("authorization", format!("Bearer {OTHER}").parse().unwrap());
    let refused = node.client.get_invitation(other).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let refused = node
        .client
        .get_invitation(authed(pb::GetInvitationRequest {}))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );

    // A good announcement: the roster shows the node.
    node.client
        .announce(authed(announce("a.example.org:7400", vec![7; 32])))
        .await
        .unwrap();
    let roster = node
        .client
        .get_roster(authed(pb::GetRosterRequest {}))
        .await
        .unwrap()
        .into_inner();
    let org = roster
        .organisations
        .iter()
        .find(|o| o.key == alpha)
        .unwrap();
    assert_eq!(org.node_address, "a.example.org:7400");
    assert_eq!(org.node_cert_sha256, vec![7; 32]);
    node.stop().await;
}
