//! The client side of a node's `accord.v1.Ledger` API: the client config file, the
//! channel with its bearer token, and how gRPC errors are shown.
//!
//! The client config file (TOML; relative paths are relative to the file's folder):
//!
//! ```toml
//! node = "http://127.0.0.1:7400"     # or "https://host:port" for a node with [tls]
//!                                    # (plain http:// only to loopback: the token
//!                                    # would cross the network in clear)
//! token_file = "token"               # the operator token, sent as "Bearer <token>"
//! as = "Breakthrough Party"          # optional: who to publish as (name or hex key)
//! # For an https:// node: SHA-256 of its certificate (`accord tls show node.crt`).
//! # cert_sha256 = "…64 hex digits…"
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use accord_core::pb;
use accord_core::{Charter, PublicId};
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The client config file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientConfig {
    node: String,
    token_file: PathBuf,
    #[serde(rename = "as")]
    as_: Option<String>,
    /// SHA-256 (hex) of the node's TLS certificate, for an https:// node.
    cert_sha256: Option<String>,
}

/// A validated client config: the node's address, the token, the default identity.
#[derive(Debug)]
pub struct ClientConfig {
    pub node: String,
    token: String,
    pub default_as: Option<String>,
    pin: Option<accord_node::tls::Fingerprint>,
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::files::read_to_string(path)?;
        let raw: RawClientConfig =
            toml::from_str(&text).with_context(|| format!("{}: invalid config", path.display()))?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let token_path = folder.join(&raw.token_file);
        let token = read_token(&token_path)?;
        let pin = match &raw.cert_sha256 {
            Some(text) => Some(accord_node::tls::parse_fingerprint(text).ok_or_else(|| {
                anyhow!(
                    "{}: cert_sha256 must be 64 hex digits (see `accord tls show`)",
                    path.display()
                )
            })?),
            None => None,
        };
        if raw.node.starts_with("https://") && pin.is_none() {
            bail!(
                "{}: an https:// node needs cert_sha256, the fingerprint of its certificate (see `accord tls show`)",
                path.display()
            );
        }
        Ok(Self {
            node: raw.node,
            token,
            default_as: raw.as_,
            pin,
        })
    }
}

/// Reads a token file: its trimmed text, as sent after "Bearer ".
pub fn read_token(path: &Path) -> Result<String> {
    let token = crate::files::read_to_string(path)?.trim().to_owned();
    if token.is_empty() {
        bail!("token file {} is empty", path.display());
    }
    Ok(token)
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Ledger = pb::ledger_client::LedgerClient<InterceptedService<Channel, Bearer>>;

/// A connected client.
pub struct Client {
    pub ledger: Ledger,
    pub default_as: Option<String>,
}

impl Client {
    pub async fn connect(config_path: &Path) -> Result<Self> {
        let config = ClientConfig::load(config_path)?;
        match config.pin {
            Some(pin) if config.node.starts_with("https://") => {
                Self::connect_tls(&config.node, pin, &config.token, config.default_as)
            }
            _ => Self::connect_with(&config.node, &config.token, config.default_as).await,
        }
    }

    /// A client of the node at `node` (`https://host:port`) whose certificate has the
    /// fingerprint `pin`. Connects lazily: the first call reports an unreachable node.
    pub fn connect_tls(
        node: &str,
        pin: accord_node::tls::Fingerprint,
        token: &str,
        default_as: Option<String>,
    ) -> Result<Self> {
        let tls = accord_node::tls::client_config(pin, None)?;
        let channel = accord_node::tls::channel(node, tls, Duration::from_secs(10))
            .map_err(|e| anyhow!("bad node address: {e}"))?;
        Self::over(channel, token, default_as)
    }

    fn over(channel: Channel, token: &str, default_as: Option<String>) -> Result<Self> {
        let bearer: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("the token holds characters that cannot be sent in a header"))?;
        let ledger = pb::ledger_client::LedgerClient::with_interceptor(channel, Bearer(bearer))
            .max_decoding_message_size(256 * 1024 * 1024);
        Ok(Self { ledger, default_as })
    }

    pub async fn connect_with(node: &str, token: &str, default_as: Option<String>) -> Result<Self> {
        // "127.0.0.1:7400" means plain-text gRPC, as "http://127.0.0.1:7400" does.
        let node = if node.contains("://") {
            node.to_owned()
        } else {
            format!("http://{node}")
        };
        let node = node.as_str();
        refuse_token_in_clear(node)?;
        let endpoint = Endpoint::from_shared(node.to_owned())
            .with_context(|| format!("bad node address {node:?}"))?
            .connect_timeout(Duration::from_secs(10));
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to node {node}"))?;
        Self::over(channel, token, default_as)
    }

    /// The alliance charter, parsed by the core.
    pub async fn charter(&mut self) -> Result<Charter> {
        let response = self
            .ledger
            .get_charter(pb::GetCharterRequest {})
            .await
            .map_err(rpc)?
            .into_inner();
        Charter::from_bytes(response.charter).context("the node's charter")
    }

    /// The log to publish in as `as_` (else the config's `as`): an organisation of
    /// the roster by name (any case) or key, admitted by the charter or later, and
    /// after a recovery by quorum the log it signs in now. A key the roster does not
    /// know is taken as given (the node says why it refuses it).
    pub async fn publishing_author(&mut self, as_: Option<&str>) -> Result<PublicId> {
        let wanted = as_
            .map(str::to_owned)
            .or_else(|| self.default_as.clone())
            .ok_or_else(|| {
                anyhow!("say who to publish as: --as NAME, or `as = \"NAME\"` in the client config")
            })?;
        let roster = self.roster().await?;
        match roster_organisation(&roster, &wanted) {
            Some(org) => PublicId::from_slice(current_log(org))
                .map_err(|e| anyhow!("the node's roster names a bad key: {e}")),
            None => wanted.trim().parse::<PublicId>().map_err(|_| {
                anyhow!(
                    "{wanted:?} is not an organisation of the roster (`accord roster` lists them)"
                )
            }),
        }
    }

    /// The roster (charter plus governance entries).
    pub async fn roster(&mut self) -> Result<pb::RosterView> {
        Ok(self
            .ledger
            .get_roster(pb::GetRosterRequest {})
            .await
            .map_err(rpc)?
            .into_inner())
    }
}

/// Refuses to send the token over plain `http://` to anything but a loopback
/// address: it would cross the network in clear.
fn refuse_token_in_clear(node: &str) -> Result<()> {
    let uri: tonic::codegen::http::Uri = node
        .parse()
        .with_context(|| format!("bad node address {node:?}"))?;
    if uri.scheme_str() != Some("http") {
        return Ok(());
    }
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "refusing to send the token in clear to {node}: use https:// with cert_sha256 for a node that is not on this machine"
        );
    }
    Ok(())
}

/// An organisation of `roster` by name (any case; an active one first) or hex key:
/// its identity's, or the key of a log a recovery started for it.
pub fn roster_organisation<'a>(
    roster: &'a pb::RosterView,
    wanted: &str,
) -> Option<&'a pb::RosterOrganisation> {
    let wanted = wanted.trim();
    if let Ok(key) = wanted.parse::<PublicId>() {
        let key = key.to_vec();
        return roster
            .organisations
            .iter()
            .find(|o| o.key == key || o.recoveries.iter().any(|r| r.next == key));
    }
    let lower = wanted.to_lowercase();
    roster
        .organisations
        .iter()
        .filter(|o| o.name.to_lowercase() == lower)
        .min_by_key(|o| o.status != "active")
}

/// The log an organisation signs in now: the newest recovery's, else its identity's.
pub fn current_log(org: &pb::RosterOrganisation) -> &[u8] {
    org.recoveries.last().map_or(&org.key, |r| &r.next)
}

/// A charter name (any case) or hex key of a member or secretary.
pub fn find(charter: &Charter, name_or_key: &str) -> Result<PublicId> {
    charter.find(name_or_key).ok_or_else(|| {
        anyhow!(
            "{name_or_key:?} is not a member or secretary of {}",
            charter.name()
        )
    })
}

/// A gRPC error as one line: what kind of failure, the code, the node's message.
#[derive(Debug)]
pub struct RpcError(pub tonic::Status);

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use tonic::Code as C;
        let code = self.0.code();
        let what = match code {
            C::InvalidArgument
            | C::FailedPrecondition
            | C::AlreadyExists
            | C::OutOfRange
            | C::PermissionDenied
            | C::Unauthenticated
            | C::ResourceExhausted => "refused",
            C::NotFound => "not found",
            // The node answered: it is up, but cannot write.
            C::Unavailable if self.0.message().starts_with("the node's storage failed") => {
                "node read-only"
            }
            C::Unavailable | C::DeadlineExceeded | C::Cancelled => "node unreachable",
            _ => "node failed",
        };
        let name = code_name(code);
        if let Some(not_pinned) = accord_node::tls::not_pinned_in(&self.0) {
            return write!(
                f,
                "{what} ({name}): the node presented TLS certificate {}, which is not \
                 cert_sha256 in the client config; `accord tls show CERT` on the \
                 node's certificate prints the fingerprint to put there",
                hex::encode(not_pinned.presented)
            );
        }
        let message = self.0.message().replace('\n', " ");
        if message.is_empty() {
            write!(f, "{what} ({name})")
        } else {
            write!(f, "{what} ({name}): {message}")
        }
    }
}

impl std::error::Error for RpcError {}

pub fn rpc(status: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(RpcError(status))
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::Cancelled => "cancelled",
        C::Unknown => "unknown",
        C::InvalidArgument => "invalid argument",
        C::DeadlineExceeded => "deadline exceeded",
        C::NotFound => "not found",
        C::AlreadyExists => "already exists",
        C::PermissionDenied => "permission denied",
        C::ResourceExhausted => "resource exhausted",
        C::FailedPrecondition => "failed precondition",
        C::Aborted => "aborted",
        C::OutOfRange => "out of range",
        C::Unimplemented => "unimplemented",
        C::Internal => "internal",
        C::Unavailable => "unavailable",
        C::DataLoss => "data loss",
        C::Unauthenticated => "unauthenticated",
    }
}

/// Where to reach a node listening on `address` from this machine: loopback when it
/// listens on every interface, else the address itself.
pub fn reachable(address: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, address.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_errors_are_one_line_with_the_code_name() {
        let status = tonic::Status::invalid_argument("ballot id \"x\" is bad");
        assert_eq!(
            RpcError(status).to_string(),
            "refused (invalid argument): ballot id \"x\" is bad"
        );
        assert_eq!(
            RpcError(tonic::Status::unavailable("")).to_string(),
            "node unreachable (unavailable)"
        );
        assert_eq!(
            RpcError(tonic::Status::unavailable(
                "the node's storage failed: disk full"
            ))
            .to_string(),
            "node read-only (unavailable): the node's storage failed: disk full"
        );
    }
}
