//! An API that default gRPC clients can use: refusals that quote a bounded part of a
//! bad value, lists paged under 4 MiB (the default receive limit of grpcio and of
//! tonic's clients), RESOURCE_EXHAUSTED for oversized requests, v1alpha reflection,
//! and bounded server streams.

use std::path::Path;
use std::time::Duration;

use accord_core::pb;
use accord_core::pb::ledger_client::LedgerClient;
use accord_core::pb::publish_request::Body;
use accord_tests::*;
use futures::StreamExt;
use prost::Message;
use tonic::Code;

use crate::{LEEDS_HHP, home_to_all};

/// The most a default gRPC client accepts in one message.
const DEFAULT_RECEIVE_LIMIT: usize = 4 << 20;

/// A client with tonic's default limits (4 MiB to receive), like grpcio's.
async fn default_client(node: &TestNode) -> Client {
    LedgerClient::with_interceptor(
        channel(node.addr).await.unwrap(),
        Bearer::new(Some(ADMIN_TOKEN)),
    )
}

/// A statement of about `bytes` bytes: "€" is 3 bytes, and a text may hold 20,000
/// characters.
fn long_statement(i: usize, bytes: usize) -> Body {
    Body::Statement(pb::Statement {
        title: format!("Statement {i:03}"),
        text: format!("{i:03} {}", "€".repeat((bytes / 3).saturating_sub(10))),
        cosigners: vec![],
    })
}

/// Publishes `n` statements of about `bytes` bytes as member 0, a few at a time.
async fn publish_long_statements(a: &TestAlliance, client: &Client, n: usize, bytes: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let calls = chunk.iter().map(|&i| {
            let mut c = client.clone();
            let member = a.member(0).clone();
            async move {
                publish(&mut c, &member, long_statement(i, bytes))
                    .await
                    .unwrap_or_else(|e| panic!("statement {i}: {e}"))
            }
        });
        futures::future::join_all(calls).await;
    }
}

/// Regression: 75 statements of 60 kB made ListStatements answer 4.5 MB in one
/// message, which a client with default limits cannot read. Now every page stays
/// under 4 MiB and the tokens lead through all of them, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_statements_no_longer_overflow_a_default_client() {
    let (a, node, c) = home_to_all(1, 0).await;
    publish_long_statements(&a, &c, 75, 60_000).await;
    let mut client = default_client(&node).await;
    let mut titles = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    for _ in 0..100 {
        let page = client
            .list_statements(pb::ListStatementsRequest {
                page_size: 0,
                page_token: token.clone(),
            })
            .await
            .expect("a page a default client can read")
            .into_inner();
        assert!(page.encoded_len() < DEFAULT_RECEIVE_LIMIT);
        pages += 1;
        titles.extend(
            page.statements
                .iter()
                .map(|s| s.statement.clone().unwrap_or_default().title),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages >= 2, "cut by bytes, not only by count: {pages} pages");
    titles.sort();
    let expected: Vec<String> = (0..75).map(|i| format!("Statement {i:03}")).collect();
    assert_eq!(titles, expected, "each once");
}

/// Regression: GetLog answered up to 1,000 entries in one message whatever their
/// size; 75 entries of 60 kB were unreadable by a default client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_logs_no_longer_overflow_a_default_client() {
    let (a, node, c) = home_to_all(1, 0).await;
    publish_long_statements(&a, &c, 75, 60_000).await;
    let mut client = default_client(&node).await;
    let mut seqs = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let page = client
            .get_log(pb::GetLogRequest {
                author: a.key(0),
                from_seq: 1,
                limit: 0,
                page_token: token.clone(),
            })
            .await
            .expect("a log page a default client can read")
            .into_inner();
        assert!(page.encoded_len() < DEFAULT_RECEIVE_LIMIT);
        for e in &page.entries {
            seqs.push(pb::Entry::decode(e.entry.as_slice()).unwrap().seq);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seqs, (1..=75).collect::<Vec<u64>>());
}

/// Pages name the last item sent, so entries published between two pages neither
/// repeat an item nor skip one that was there before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_stable_under_concurrent_appends() {
    let (a, _node, mut c) = home_to_all(1, 0).await;
    publish_long_statements(&a, &c, 12, 10).await;
    let first = c
        .list_statements(pb::ListStatementsRequest {
            page_size: 5,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.statements.len(), 5);
    assert!(!first.next_page_token.is_empty());
    for i in 12..15 {
        publish(&mut c, a.member(0), long_statement(i, 10))
            .await
            .unwrap();
    }
    let mut titles: Vec<String> = first
        .statements
        .iter()
        .map(|s| s.statement.clone().unwrap_or_default().title)
        .collect();
    let mut token = first.next_page_token;
    for _ in 0..20 {
        let page = c
            .list_statements(pb::ListStatementsRequest {
                page_size: 5,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        titles.extend(
            page.statements
                .iter()
                .map(|s| s.statement.clone().unwrap_or_default().title),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    // The first page, then the rest of what was there, then what came meanwhile:
    // each once.
    assert_eq!(titles.len(), 15, "{titles:?}");
    let mut sorted = titles.clone();
    sorted.sort();
    let expected: Vec<String> = (0..15).map(|i| format!("Statement {i:03}")).collect();
    assert_eq!(sorted, expected);
    assert!(
        titles[..12].iter().all(|t| *t < expected[12]),
        "the old ones first: {titles:?}"
    );
}

/// Every list takes a page size and answers a token for the rest; a token that is
/// not one the list made is INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_pages_and_refuses_foreign_tokens() {
    let (a, _node, mut c) = home_to_all(2, 1).await;
    let ballots = [
        "local.leeds.headingley-hyde-park.2027-05-06",
        "local.leeds.kirkstall.2027-05-06",
        "local.leeds.armley.2027-05-06",
    ];
    for ballot in ballots {
        for m in 0..2 {
            publish(
                &mut c,
                a.member(m),
                intention(ballot, pb::IntentionStatus::Intends, ""),
            )
            .await
            .unwrap();
        }
    }
    for ballot in &ballots[..2] {
        publish(
            &mut c,
            a.secretary(0),
            resolution(ballot, vec![a.key(0)], vec![a.key(1)]),
        )
        .await
        .unwrap();
    }
    for i in 0..3 {
        let mut e = event(
            &format!("rally-{i}"),
            "2027-04-10T19:00",
            "2027-04-10T21:00",
            "Leeds Civic Hall",
        );
        e.title = format!("Rally {i}");
        publish(&mut c, a.member(i % 2), Body::Event(e))
            .await
            .unwrap();
    }

    // Intentions: 6 in pages of 4.
    let page = c
        .list_intentions(pb::ListIntentionsRequest {
            page_size: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.intentions.len(), 4);
    let rest = c
        .list_intentions(pb::ListIntentionsRequest {
            page_size: 4,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.intentions.len(), 2);
    assert!(rest.next_page_token.is_empty());
    let intentions_token = page.next_page_token;

    // Clashes: 3 ballots in pages of 2.
    let page = c
        .list_clashes(pb::ListClashesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.clashes.len(), 2);
    let rest = c
        .list_clashes(pb::ListClashesRequest {
            page_size: 2,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.clashes.len(), 1);
    assert!(rest.next_page_token.is_empty());

    // Resolutions: 2 in pages of 1.
    let page = c
        .list_resolutions(pb::ListResolutionsRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.resolutions.len(), 1);
    let rest = c
        .list_resolutions(pb::ListResolutionsRequest {
            page_size: 1,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.resolutions.len(), 1);
    assert!(rest.next_page_token.is_empty());

    // Events: 3 in pages of 2; event clashes: 3 pairs in pages of 2.
    let page = c
        .list_events(pb::ListEventsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 2);
    let rest = c
        .list_events(pb::ListEventsRequest {
            page_size: 2,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.events.len(), 1);
    let page = c
        .list_event_clashes(pb::ListEventClashesRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.clashes.len(), 2);
    let rest = c
        .list_event_clashes(pb::ListEventClashesRequest {
            page_size: 2,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.clashes.len(), 1);
    assert!(rest.next_page_token.is_empty());

    // A token of another list, or garbage, is refused with a short message.
    let foreign = c
        .list_statements(pb::ListStatementsRequest {
            page_size: 1,
            page_token: intentions_token,
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::InvalidArgument, "{foreign:?}");
    assert!(foreign.message().contains("page_token"), "{foreign:?}");
    let garbage = c
        .list_events(pb::ListEventsRequest {
            page_token: "not a token".repeat(10_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);
    assert!(garbage.message().len() < 600, "{}", garbage.message().len());
}

/// Regression: a 100 kB ballot id came back whole in the refusal, and a default
/// client reported RESOURCE_EXHAUSTED on the metadata instead of the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_ballot_id_is_refused_with_a_short_message() {
    let (a, node, mut c) = home_to_all(1, 0).await;
    let mut client = default_client(&node).await;
    let cases = [
        format!("local.{}.2027-05-06", "A".repeat(100_000)),
        format!("local.leeds.{}.2027-05-06", "Ä".repeat(50_000)),
        "x".repeat(100_000),
    ];
    for ballot in cases {
        let refused = publish(
            &mut client,
            a.member(0),
            intention(&ballot, pb::IntentionStatus::Intends, ""),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().len() < 1000,
            "{} bytes: {}",
            refused.message().len(),
            &refused.message()[..200]
        );
        assert!(
            refused.message().contains("… ("),
            "says the value was cut: {}",
            refused.message()
        );
    }
    let status = c
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.entries, 0, "nothing stored");
}

/// Regression: a request over the node's 4 MiB limit got OUT_OF_RANGE; gRPC's status
/// code table gives RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_resource_exhausted() {
    let (a, _node, mut c) = home_to_all(1, 0).await;
    let mut signer = a.signer(a.member(0));
    let mut entry = signer.next(&intention(LEEDS_HHP, pb::IntentionStatus::Intends, ""));
    entry.signature = vec![0; 5 << 20];
    let refused = submit(&mut c, entry).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("too large"), "{refused:?}");
    // The node still answers.
    c.get_status(pb::GetStatusRequest::default()).await.unwrap();
}

/// grpcio-reflection, grpcurl and Postman ask `grpc.reflection.v1alpha`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_the_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let (_a, node, _c) = home_to_all(1, 0).await;
    let channel = channel(node.addr).await.unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection answers")
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
    for wanted in ["accord.v1.Ledger", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
}

/// A node whose config ends with `limits` (a `[limits]` section).
async fn node_with_limits(limits: &str) -> (TestAlliance, TestNode) {
    let mut alliance = TestAlliance::new(1, 0);
    let member = alliance.member(0).clone();
    let config = alliance.node_config(
        &[&member],
        &[OperatorSpec::new("other", "other-token", &[])],
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!("\n[limits]\n{limits}\n");
    std::fs::write(&config, text).unwrap();
    let node = TestNode::start(&config).await.expect("node starts");
    (alliance, node)
}

async fn watch(
    client: &mut Client,
) -> Result<tonic::Streaming<pb::ListClashesResponse>, tonic::Status> {
    let mut stream = client
        .watch_clashes(pb::ListClashesRequest::default())
        .await?
        .into_inner();
    // The first message is the current list: the stream is open.
    stream.message().await?.expect("first message");
    Ok(stream)
}

/// Open WatchClashes streams are bounded per connection and per token; one more is
/// RESOURCE_EXHAUSTED naming the bound, and a closed stream frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_are_bounded_per_connection_and_per_token() {
    let (_a, node) =
        node_with_limits("max_streams_per_connection = 2\nmax_streams_per_token = 3").await;
    let mut one = node.client().await.unwrap();
    let first = watch(&mut one).await.unwrap();
    let _second = watch(&mut one).await.unwrap();
    let refused = watch(&mut one).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_streams_per_connection"),
        "{refused:?}"
    );
    // Another connection with the same token: one more, then the token's bound.
    let mut two = node.client().await.unwrap();
    let _third = watch(&mut two).await.unwrap();
    let refused = watch(&mut two).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_streams_per_token"),
        "{refused:?}"
    );
    // Another token is counted apart.
    let mut other = node.client_with(Some("other-token")).await.unwrap();
    let _fourth = watch(&mut other).await.unwrap();
    // Closing a stream frees its place (the node sees the close shortly).
    drop(first);
    let reopened = poll(200, Duration::from_millis(25), || {
        let mut two = two.clone();
        async move { Ok(watch(&mut two).await.ok()) }
    })
    .await;
    assert!(reopened.is_ok(), "a place was freed");
}

/// The config's [limits] are applied: a zero is refused, and the keys are read.
#[test]
fn limits_in_the_config_are_validated() {
    let mut alliance = TestAlliance::new(1, 0);
    let member = alliance.member(0).clone();
    let config = alliance.node_config(&[&member], &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[limits]\nmax_streams_per_token = 0\n"),
    )
    .unwrap();
    let error = accord_node::NodeConfig::load(&config)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("[limits] max_streams_per_token must be at least 1"),
        "{error}"
    );
    std::fs::write(
        &config,
        format!("{text}\n[limits]\nrequest_timeout_secs = 5\nmax_requests_per_connection = 8\n"),
    )
    .unwrap();
    let loaded = accord_node::NodeConfig::load(&config).unwrap();
    assert_eq!(loaded.limits.request_timeout, Duration::from_secs(5));
    assert_eq!(loaded.limits.max_requests_per_connection, 8);
}

/// Python's grpcio with its default settings (4 MiB to receive) through reflection
/// v1alpha only (no generated code): it finds the services, pages through 75
/// statements of 60 kB and a log of them, and gets a short INVALID_ARGUMENT for a
/// 100 kB ballot id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_with_default_settings_reads_every_page() {
    let python = tokio::task::spawn_blocking(|| {
        python::venv(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            &[python::GRPCIO, python::GRPCIO_REFLECTION],
        )
    })
    .await
    .unwrap();
    let (a, node, c) = home_to_all(1, 0).await;
    publish_long_statements(&a, &c, 75, 60_000).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/grpcio_limits.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(node.addr.to_string())
            .arg(ADMIN_TOKEN)
            .arg(a.member(0).public_id().to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("grpcio client within 120s")
    .expect("grpcio client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "grpcio client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let services = stdout
        .lines()
        .find(|l| l.starts_with("services "))
        .unwrap_or_default();
    assert!(services.contains(" accord.v1.Ledger"), "{stdout}");
    assert!(stdout.contains("statements 75 in "), "{stdout}");
    assert!(stdout.contains("log 75 in "), "{stdout}");
    assert!(stdout.contains("huge ballot INVALID_ARGUMENT"), "{stdout}");
}

/// A charter may allow entries of up to 16 MiB, but requests to a node are limited
/// to 16 MiB and batches to peers by bytes (issue 9): a node on such a charter would
/// accept entries it could never pass on, so it refuses to start, saying which rule
/// to lower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charter_whose_entries_outgrow_the_transport_is_refused_at_start() {
    let rules = accord_core::charter::Rules {
        max_entry_bytes: 16 << 20,
        ..Default::default()
    };
    let mut a = TestAlliance::with_rules(1, 0, rules);
    let home = a.member(0).clone();
    let config = a.node_config(&[&home], &[]);
    let config = accord_node::NodeConfig::load(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = accord_node::run(config, listener, std::future::pending());
    let refused = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("refused at once, not served")
        .expect_err("refused at start");
    let message = refused.to_string();
    assert!(message.contains("lower rules.max_entry_bytes"), "{message}");
}

/// Whether the node closed `socket` (end of stream or a reset) within 5 s.
fn closed_by_node(socket: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(socket.read(&mut byte), Ok(0) | Err(_)) && {
        // A timeout is not a close.
        socket.set_nonblocking(true).unwrap();
        !matches!(socket.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Issue 22, defect 8: connections are capped. Past `max_connections` a new one is
/// closed at once, while those open are served; a closed one frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_once() {
    let (_a, node) = node_with_limits("max_connections = 3").await;
    let mut served = node.client().await.unwrap();
    served
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap();
    // Two more clients that are served take the other places (retried while a
    // connection the node has not yet seen closed, such as the start-up check's,
    // still holds one).
    let mut idle = Vec::new();
    for _ in 0..2 {
        let addr = node.addr;
        let client = poll(200, Duration::from_millis(25), || async move {
            let Ok(mut client) = connect(addr, Some(ADMIN_TOKEN)).await else {
                return Ok(None);
            };
            let served = client.get_status(pb::GetStatusRequest::default()).await;
            Ok(served.is_ok().then_some(client))
        })
        .await
        .expect("a client takes a place");
        idle.push(client);
    }
    let mut fourth = std::net::TcpStream::connect(node.addr).unwrap();
    assert!(
        tokio::task::block_in_place(|| closed_by_node(&mut fourth)),
        "a fourth connection is closed"
    );
    // The open connection is still served.
    served
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap();
    drop(idle);
    let again = poll(200, Duration::from_millis(25), || {
        let addr = node.addr;
        async move { Ok(connect(addr, Some(ADMIN_TOKEN)).await.ok().map(|_| ())) }
    })
    .await;
    assert!(again.is_ok(), "a closed connection frees its place");
}

/// Issue 22, defect 8: TLS handshakes in progress are capped. Sockets that never
/// send a ClientHello hold the places; one more is closed at once; a node that is
/// already connected keeps working, and once the stalled sockets go a new client
/// connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_past_the_cap_are_closed_at_once() {
    let mut fed = TestFederation::build(FederationSpec::new(1, Topology::FullMesh))
        .await
        .unwrap();
    fed.nodes[0].config.limits.max_handshakes = 2;
    fed.start_all().await.unwrap();
    let node = &fed.nodes[0];
    let mut served = node.client().unwrap();
    served
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap();
    let stalled: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(node.addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = std::net::TcpStream::connect(node.addr).unwrap();
    assert!(
        tokio::task::block_in_place(|| closed_by_node(&mut third)),
        "a third handshake is refused"
    );
    served
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap();
    drop(stalled);
    let again = poll(200, Duration::from_millis(25), || {
        let client = node.client();
        async move {
            let Ok(mut client) = client else {
                return Ok(None);
            };
            Ok(client
                .get_status(pb::GetStatusRequest::default())
                .await
                .ok()
                .map(|_| ()))
        }
    })
    .await;
    assert!(again.is_ok(), "stalled handshakes free their places");
    fed.stop_all().await.unwrap();
}
