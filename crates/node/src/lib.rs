//! The Accord node: the `accord.v1.Ledger` gRPC service (publishing, submitting and
//! querying), group commit onto the store, gRPC health and reflection.

pub mod config;

pub use config::{ConfigError, NodeConfig};

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Store(String),
    #[error("transport: {0}")]
    Transport(String),
}

/// Serves the node on `listener` until `shutdown` completes, then stops cleanly
/// (in-flight publishes finish and are flushed).
pub async fn run(
    config: NodeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let _ = (config, listener, shutdown);
    todo!("implemented by the node work")
}
