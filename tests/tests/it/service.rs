//! The standard services beside the ledger: gRPC health and server reflection.

use accord_core::pb;
use accord_tests::*;
use futures::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::home_to_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving() {
    let (_a, node, _c) = home_to_all(1, 0).await;
    let channel = channel(node.addr).await.unwrap();
    let mut health = HealthClient::with_interceptor(channel, Bearer::new(Some(ADMIN_TOKEN)));
    for service in ["", "accord.v1.Ledger"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::Serving as i32,
            "health of {service:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let (_a, node, _c) = home_to_all(1, 0).await;
    let channel = channel(node.addr).await.unwrap();
    let mut reflection =
        ServerReflectionClient::with_interceptor(channel, Bearer::new(Some(ADMIN_TOKEN)));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = tokio::time::timeout(RPC_TIMEOUT, responses.next())
        .await
        .expect("a reflection response in time")
        .expect("one response")
        .expect("reflection ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "accord.v1.Ledger"),
        "accord.v1.Ledger missing from {names:?}"
    );
}

/// GetStatus gives the digest of the current state (cached between changes, never
/// stale), or leaves it out when asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_digest_follows_the_state_and_can_be_omitted() {
    let (a, _node, mut c) = home_to_all(2, 0).await;
    let reader = c.clone();
    let status = |omit_digest: bool| {
        let mut c = reader.clone();
        async move {
            c.get_status(pb::GetStatusRequest { omit_digest })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let empty = status(false).await;
    assert_eq!(empty.digest.len(), 32);
    assert_eq!(status(false).await.digest, empty.digest, "same state");
    let ballot = "local.leeds.headingley-hyde-park.2027-05-06";
    publish(
        &mut c,
        a.member(0),
        intention(ballot, pb::IntentionStatus::Intends, ""),
    )
    .await
    .unwrap();
    let after = status(false).await;
    assert_eq!(after.entries, 1);
    assert_ne!(after.digest, empty.digest, "a change gives a new digest");
    let entries = all_entries(&mut c).await.unwrap();
    assert_eq!(
        after.digest,
        a.digest_of(&entries).unwrap().to_vec(),
        "the digest is that of the stored entries"
    );
    let light = status(true).await;
    assert!(light.digest.is_empty());
    assert_eq!(light.entries, 1);
    assert_eq!(light.heads.len(), 1);
}
