//! A standard gRPC client from another ecosystem connects to a node over TLS given
//! only the node's certificate: Python's grpcio, built on gRPC C-core, which refuses
//! Ed25519 certificates (hence the nodes' ECDSA P-256 TLS keys).
//!
//! grpcio comes from PyPI: if `python3` cannot import it, the test installs it into
//! the shared virtual environment under the target folder ([`accord_tests::python`]).

use std::path::Path;
use std::time::Duration;

use accord_core::pb;
use accord_tests::federation::{FederationSpec, TestFederation, Topology};
use accord_tests::{ADMIN_TOKEN, python};
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_connects_over_tls_with_the_node_certificate() {
    let python = tokio::task::spawn_blocking(|| {
        python::venv(Path::new(env!("CARGO_TARGET_TMPDIR")), &[python::GRPCIO])
    })
    .await
    .unwrap();
    let federation = TestFederation::start(FederationSpec::new(1, Topology::FullMesh))
        .await
        .unwrap();
    let node = federation.node(0);
    let cert = node.folder.join("tls/node.crt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/grpcio_client.py");
    // The node listens on a loopback address of its own; its certificate names
    // "localhost", which grpcio checks (the name given as the fourth argument).
    let target = node.addr.to_string();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&target)
            .arg(&cert)
            .arg(ADMIN_TOKEN)
            .arg("localhost")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("grpcio client within 60s")
    .expect("grpcio client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "grpcio client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // HealthCheckResponse { status: SERVING (1) } is the two bytes 08 01.
    assert!(stdout.contains("health 0801"), "{stdout}");
    let size: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("status "))
        .and_then(|n| n.trim().parse().ok())
        .expect("status size");
    // The same status, fetched by our own client, has the same encoded size.
    let mut client = node.client().unwrap();
    let status = client
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(size, status.encoded_len());
}
