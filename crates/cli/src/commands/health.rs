//! `accord healthcheck`: asks a node on this machine whether it serves, through the
//! standard gRPC health service, for container HEALTHCHECKs and monitoring scripts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use accord_node::NodeConfig;
use anyhow::{Context, Result, anyhow, bail};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long the whole check may take.
const LIMIT: Duration = Duration::from_secs(5);

/// Succeeds when the node that `config` describes answers SERVING: its store is
/// writable and holds every log whole (`accord_node::integrity`), and it may sign.
/// `address` overrides the config's listen address. Any other answer, or none within
/// 5 s, is an error that says which.
pub async fn check(config_path: &Path, address: Option<SocketAddr>) -> Result<()> {
    let config = NodeConfig::load(config_path)?;
    let address = address.unwrap_or_else(|| crate::client::reachable(config.listen));
    let channel = match &config.tls {
        Some(tls) => {
            let client = accord_node::tls::client_config(tls.fingerprint(), None)?;
            accord_node::tls::channel(&format!("https://{address}"), client, LIMIT)
                .map_err(|e| anyhow!("bad node address {address}: {e}"))?
        }
        None => tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(LIMIT)
            .connect_lazy(),
    };
    let asked = tokio::time::timeout(
        LIMIT,
        HealthClient::new(channel).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .map_err(|_| anyhow!("the node at {address} did not answer within {LIMIT:?}"))?
    .with_context(|| format!("the node at {address} did not answer"))?;
    match ServingStatus::try_from(asked.into_inner().status) {
        Ok(ServingStatus::Serving) => {
            println!("serving");
            Ok(())
        }
        Ok(other) => bail!(
            "the node at {address} answers {}: see `accord status` for why (storage, lost entries)",
            other.as_str_name()
        ),
        Err(_) => bail!("the node at {address} gave an unknown health status"),
    }
}
