//! The node end to end over real gRPC on loopback: publish, query, refuse, restart.

use std::time::Duration;

use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
use accord_core::pb::{self, ledger_client::LedgerClient, publish_request::Body};
use accord_core::{Charter, Identity};
use accord_node::NodeConfig;
use accord_node::config::Operator;
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
        charter,
        operators: vec![Operator {
            name: "op".into(),
            token_sha256: hash,
            identities: ids.iter().take(2).map(Identity::public_id).collect(),
        }],
        identities: ids,
        cache_capacity_bytes: 1 << 22,
    }
}

struct Node {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), accord_node::NodeError>>,
    client: LedgerClient<Channel>,
}

async fn start(config: NodeConfig) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(accord_node::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
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
        .get_status(authed(pb::GetStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.entries, 2);
    node.stop().await;
    let mut node = start(cfg).await;
    let after = node
        .client
        .get_status(authed(pb::GetStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.digest, before.digest);
    assert_eq!(after.heads, before.heads);
    node.stop().await;
}
