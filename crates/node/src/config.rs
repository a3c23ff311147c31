//! The node's configuration file (TOML). [`RawNodeConfig`] mirrors the file;
//! [`NodeConfig::load`] turns it into a validated [`NodeConfig`] (charter parsed, keys
//! read, operators checked) before anything starts. Relative paths in the file are
//! relative to the file's folder. deploy/node-toml.md is the operators' reference
//! to every key (a test keeps it complete).
//!
//! ```toml
//! data_dir = "data"
//! listen = "127.0.0.1:7400"
//! charter = "charter.json"
//! identities = ["keys/breakthrough.pem"]
//! cache_capacity_mb = 32
//! # The node refuses to start with less free space than this on the data
//! # directory's filesystem (a store started on a full disk can be left damaged).
//! min_free_disk_mb = 64
//!
//! [[operators]]
//! name = "breakthrough-officer"
//! # SHA-256 (hex) of the operator's token; the token itself stays with the operator.
//! token_sha256 = "…64 hex digits…"
//! # Public keys (hex) or charter names of the home identities this token may publish as.
//! identities = ["Breakthrough Party"]
//!
//! # TLS (required to federate): ECDSA P-256 key and self-signed certificate.
//! [tls]
//! cert = "tls/node.crt"
//! key = "tls/node.key"
//!
//! # Nodes to pull the alliance's entries from (see `replication`), pinned by the
//! # SHA-256 of their TLS certificate.
//! [[peers]]
//! name = "northern-green-left"
//! address = "https://127.0.0.1:7401"
//! cert_sha256 = "…64 hex digits…"
//!
//! # The members' calendar over HTTP (see `http`). Without this section the node
//! # serves no calendar. Put a reverse proxy with a public certificate in front and
//! # give its address as public_url, which every link the node prints is built on.
//! [http]
//! listen = "127.0.0.1:7480"
//! public_url = "https://calendar.example.org"
//! refresh_minutes = 60
//! # Limits: seconds to answer a request (503 past it), seconds a connection has
//! # to send a request's headers (closed past it), requests handled at once (more
//! # get 503 at once).
//! request_timeout_secs = 30
//! header_timeout_secs = 10
//! max_requests = 256
//! ```
//!
//! `anti_entropy_secs` (default 10) sets how often each peer's heads are checked.
//!
//! Without `[tls]`, operator tokens would cross the network in clear: such a node
//! listens only on a loopback address (127.0.0.0/8 or ::1), and the config is refused
//! otherwise.
//!
//! ```toml
//! # Bounds on the gRPC server (see `limits`); these are the defaults.
//! [limits]
//! request_timeout_secs = 30          # a call that takes longer gets DEADLINE_EXCEEDED
//! max_requests_per_connection = 64   # calls served at once per connection; more wait
//! max_streams_per_connection = 16    # open WatchClashes/Sync streams per connection
//! max_streams_per_token = 64         # open streams per operator token (or peer)
//! max_connections = 512              # connections open at once; more are closed
//! max_handshakes = 32                # TLS handshakes in progress; more are closed
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use accord_core::{Charter, Identity, PublicId};
use serde::Deserialize;

use crate::limits::Limits;
use crate::replication::Peer;
use crate::tls::{TlsIdentity, parse_fingerprint};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The config file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `host:port` where peers reach this node (what `accord announce` and
    /// `accord invite` name by default).
    #[serde(default)]
    pub advertise: Option<String>,
    pub charter: PathBuf,
    #[serde(default)]
    pub identities: Vec<PathBuf>,
    #[serde(default = "default_cache_capacity_mb")]
    pub cache_capacity_mb: u64,
    /// The least free space (MiB) on the data directory's filesystem for the node to
    /// start.
    #[serde(default = "default_min_free_disk_mb")]
    pub min_free_disk_mb: u64,
    #[serde(default)]
    pub operators: Vec<RawOperator>,
    /// TLS certificate and key; required to federate (peers need it).
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    /// Seconds between heads checks with each peer.
    #[serde(default = "default_anti_entropy_secs")]
    pub anti_entropy_secs: u64,
    /// The calendar's HTTP server; none without this section.
    #[serde(default)]
    pub http: Option<RawHttp>,
    /// Bounds on the gRPC server.
    #[serde(default)]
    pub limits: RawLimits,
}

/// The `[limits]` section; every key has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    #[serde(default = "default_max_requests_per_connection")]
    pub max_requests_per_connection: usize,
    #[serde(default = "default_max_streams_per_connection")]
    pub max_streams_per_connection: usize,
    #[serde(default = "default_max_streams_per_token")]
    pub max_streams_per_token: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        let d = Limits::default();
        Self {
            request_timeout_secs: d.request_timeout.as_secs(),
            max_requests_per_connection: d.max_requests_per_connection,
            max_streams_per_connection: d.max_streams_per_connection,
            max_streams_per_token: d.max_streams_per_token,
            max_connections: d.max_connections,
            max_handshakes: d.max_handshakes,
        }
    }
}

fn default_request_timeout_secs() -> u64 {
    Limits::default().request_timeout.as_secs()
}

fn default_max_requests_per_connection() -> usize {
    Limits::default().max_requests_per_connection
}

fn default_max_streams_per_connection() -> usize {
    Limits::default().max_streams_per_connection
}

fn default_max_streams_per_token() -> usize {
    Limits::default().max_streams_per_token
}

fn default_max_connections() -> usize {
    Limits::default().max_connections
}

fn default_max_handshakes() -> usize {
    Limits::default().max_handshakes
}

impl RawLimits {
    fn validate(&self) -> Result<Limits, String> {
        for (key, value) in [
            ("request_timeout_secs", self.request_timeout_secs as usize),
            (
                "max_requests_per_connection",
                self.max_requests_per_connection,
            ),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection,
            ),
            ("max_streams_per_token", self.max_streams_per_token),
            ("max_connections", self.max_connections),
            ("max_handshakes", self.max_handshakes),
        ] {
            if value == 0 {
                return Err(format!("[limits] {key} must be at least 1"));
            }
        }
        Ok(Limits {
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_requests_per_connection: self.max_requests_per_connection,
            max_streams_per_connection: self.max_streams_per_connection,
            max_streams_per_token: self.max_streams_per_token,
            max_connections: self.max_connections,
            max_handshakes: self.max_handshakes,
        })
    }
}

/// The `[http]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: SocketAddr,
    /// The address members reach the calendar at; default `http://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How often calendar apps are asked to refresh (REFRESH-INTERVAL).
    #[serde(default = "default_refresh_minutes")]
    pub refresh_minutes: u64,
    #[serde(default)]
    pub request_timeout_secs: Option<u64>,
    #[serde(default)]
    pub header_timeout_secs: Option<u64>,
    #[serde(default)]
    pub max_requests: Option<usize>,
}

fn default_refresh_minutes() -> u64 {
    60
}

/// The calendar's HTTP server, validated.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// "http(s)://host[:port][/prefix]" without a trailing slash.
    pub public_url: String,
    pub refresh: Duration,
    pub limits: crate::http::Limits,
}

impl HttpConfig {
    fn from_raw(raw: RawHttp) -> Result<Self, String> {
        let public_url = match raw.public_url {
            Some(url) => url.trim().trim_end_matches('/').to_owned(),
            None => format!("http://{}", raw.listen),
        };
        let uri: http::Uri = public_url
            .parse()
            .map_err(|e| format!("[http] public_url {public_url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https"))
            || uri.authority().is_none()
            || uri.query().is_some()
        {
            return Err(format!(
                "[http] public_url {public_url:?} must look like https://host[:port][/path]"
            ));
        }
        if !(1..=7 * 24 * 60).contains(&raw.refresh_minutes) {
            return Err("[http] refresh_minutes must be between 1 and 10080 (a week)".into());
        }
        let defaults = crate::http::Limits::default();
        let secs = |key: &str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(n @ 1..=3600) => Ok(Duration::from_secs(n)),
            Some(_) => Err(format!("[http] {key} must be between 1 and 3600")),
        };
        let limits = crate::http::Limits {
            request_timeout: secs(
                "request_timeout_secs",
                raw.request_timeout_secs,
                defaults.request_timeout,
            )?,
            header_timeout: secs(
                "header_timeout_secs",
                raw.header_timeout_secs,
                defaults.header_timeout,
            )?,
            max_requests: match raw.max_requests {
                None => defaults.max_requests,
                Some(n @ 1..=100_000) => n,
                Some(_) => return Err("[http] max_requests must be between 1 and 100000".into()),
            },
        };
        Ok(Self {
            listen: raw.listen,
            public_url,
            refresh: Duration::from_secs(raw.refresh_minutes * 60),
            limits,
        })
    }
}

fn default_anti_entropy_secs() -> u64 {
    10
}

/// The node's TLS certificate and key (PEM), as `accord tls new` writes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A node this one pulls from (and lets pull from it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: String,
    /// `https://host:port`.
    pub address: String,
    /// SHA-256 (hex) of the peer's TLS certificate.
    pub cert_sha256: String,
}

fn default_min_free_disk_mb() -> u64 {
    64
}

fn default_cache_capacity_mb() -> u64 {
    32
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    pub name: String,
    pub token_sha256: String,
    pub identities: Vec<String>,
}

/// An operator: a token (kept only as its SHA-256) and the identities it may use.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub token_sha256: [u8; 32],
    pub identities: Vec<PublicId>,
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `host:port` where peers reach this node, if the config names it.
    pub advertise: Option<String>,
    pub charter: Charter,
    pub identities: Vec<Identity>,
    /// The key file of each identity, in the same order (empty for identities not
    /// read from files): a key rotation writes beside it (`crate::keyfile`).
    pub key_files: Vec<PathBuf>,
    pub cache_capacity_bytes: u64,
    /// The node refuses to start with less free space on the data directory's
    /// filesystem.
    pub min_free_disk_bytes: u64,
    pub operators: Vec<Operator>,
    pub tls: Option<TlsIdentity>,
    pub peers: Vec<Peer>,
    pub anti_entropy: Duration,
    pub http: Option<HttpConfig>,
    pub limits: Limits,
}

/// The lowercase hex SHA-256 of a token, as the config file's `token_sha256` holds it.
/// The token is the text sent after `Bearer `, surrounding whitespace removed.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

impl NodeConfig {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawNodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_raw(raw, base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Validates a parsed config; relative paths are taken from `base`.
    pub fn from_raw(raw: RawNodeConfig, base: &Path) -> Result<Self, String> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let charter_path = resolve(&raw.charter);
        let charter_bytes = std::fs::read(&charter_path)
            .map_err(|e| format!("cannot read charter {}: {e}", charter_path.display()))?;
        let charter = Charter::from_bytes(charter_bytes)
            .map_err(|e| format!("charter {}: {e}", charter_path.display()))?;
        let mut identities: Vec<Identity> = Vec::new();
        let mut key_files = Vec::new();
        for key_path in &raw.identities {
            let key_path = resolve(key_path);
            // After a key rotation the file holds the new key, signing for the
            // organisation's first key (kept beside it as the oldest retired key).
            let identity = crate::keyfile::load(&key_path)?;
            let id = identity.public_id();
            // A key the charter does not name may be admitted later by the alliance's
            // governance entries: the node starts, replicates, and publishes as it
            // once the roster admits it.
            if charter.role(&id).is_none() {
                tracing::info!(
                    "key {} is {id}, which the charter does not name: it can publish once the \
                     roster admits it",
                    key_path.display()
                );
            }
            if identities.iter().any(|i| i.public_id() == id) {
                return Err(format!("key {} is listed twice", key_path.display()));
            }
            identities.push(identity);
            key_files.push(key_path);
        }
        let mut operators = Vec::new();
        for op in raw.operators {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(op.token_sha256.trim(), &mut hash).map_err(|_| {
                format!(
                    "operator {:?}: token_sha256 must be 64 hex digits (see `accord token new`)",
                    op.name
                )
            })?;
            let mut keys = Vec::new();
            for name in &op.identities {
                let own = name
                    .trim()
                    .parse::<PublicId>()
                    .ok()
                    .filter(|k| identities.iter().any(|i| i.public_id() == *k));
                let key = own.or_else(|| charter.find(name)).ok_or_else(|| {
                    format!(
                        "operator {:?}: {name:?} is not a name or key in the charter",
                        op.name
                    )
                })?;
                if !identities.iter().any(|i| i.public_id() == key) {
                    return Err(format!(
                        "operator {:?}: {name:?} is not one of this node's identities",
                        op.name
                    ));
                }
                keys.push(key);
            }
            operators.push(Operator {
                name: op.name,
                token_sha256: hash,
                identities: keys,
            });
        }
        let tls = match &raw.tls {
            Some(t) => Some(
                TlsIdentity::load(&resolve(&t.cert), &resolve(&t.key))
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        if tls.is_none() && !raw.listen.ip().is_loopback() {
            return Err(format!(
                "listen = \"{}\" is not a loopback address, and without a [tls] section \
                 operator tokens would cross the network in clear: add [tls] (see `accord \
                 tls new`) or listen on 127.0.0.1",
                raw.listen
            ));
        }
        let mut peers: Vec<Peer> = Vec::new();
        for peer in raw.peers {
            if tls.is_none() {
                return Err("peers need a [tls] section: nodes only federate over TLS".into());
            }
            if peers.iter().any(|p| p.name == peer.name) {
                return Err(format!("peer {:?} is listed twice", peer.name));
            }
            let uri: http::Uri = peer
                .address
                .parse()
                .map_err(|e| format!("peer {:?}: address {:?}: {e}", peer.name, peer.address))?;
            if uri.scheme_str() != Some("https") || uri.authority().is_none() {
                return Err(format!(
                    "peer {:?}: address must look like https://host:port",
                    peer.name
                ));
            }
            let fingerprint = parse_fingerprint(&peer.cert_sha256).ok_or_else(|| {
                format!(
                    "peer {:?}: cert_sha256 must be 64 hex digits (see `accord tls show`)",
                    peer.name
                )
            })?;
            peers.push(Peer {
                name: peer.name,
                address: peer.address,
                fingerprint,
            });
        }
        if let Some(a) = &raw.advertise {
            accord_core::roster::check_node_address(a).map_err(|e| format!("advertise: {e}"))?;
        }
        if raw.anti_entropy_secs == 0 {
            return Err("anti_entropy_secs must be at least 1".into());
        }
        let http = raw.http.map(HttpConfig::from_raw).transpose()?;
        let limits = raw.limits.validate()?;
        Ok(Self {
            limits,
            http,
            tls,
            peers,
            anti_entropy: Duration::from_secs(raw.anti_entropy_secs),
            data_dir: resolve(&raw.data_dir),
            listen: raw.listen,
            advertise: raw.advertise,
            charter,
            identities,
            key_files,
            cache_capacity_bytes: raw.cache_capacity_mb.saturating_mul(1 << 20),
            min_free_disk_bytes: raw.min_free_disk_mb.saturating_mul(1 << 20),
            operators,
        })
    }
}
