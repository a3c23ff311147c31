//! The node's configuration file (TOML). [`RawNodeConfig`] mirrors the file;
//! [`NodeConfig::load`] turns it into a validated [`NodeConfig`] (charter parsed, keys
//! read, operators checked) before anything starts. Relative paths in the file are
//! relative to the file's folder.
//!
//! ```toml
//! data_dir = "data"
//! listen = "127.0.0.1:7400"
//! charter = "charter.json"
//! identities = ["keys/breakthrough.pem"]
//! cache_capacity_mb = 64
//!
//! [[operators]]
//! name = "breakthrough-officer"
//! # SHA-256 (hex) of the operator's token; the token itself stays with the operator.
//! token_sha256 = "…64 hex digits…"
//! # Public keys (hex) or charter names of the home identities this token may publish as.
//! identities = ["Breakthrough Party"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use accord_core::{Charter, Identity, PublicId};
use serde::Deserialize;

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
    pub charter: PathBuf,
    #[serde(default)]
    pub identities: Vec<PathBuf>,
    #[serde(default = "default_cache_capacity_mb")]
    pub cache_capacity_mb: u64,
    #[serde(default)]
    pub operators: Vec<RawOperator>,
}

fn default_cache_capacity_mb() -> u64 {
    64
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
    pub charter: Charter,
    pub identities: Vec<Identity>,
    pub cache_capacity_bytes: u64,
    pub operators: Vec<Operator>,
}

impl NodeConfig {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let _ = path;
        todo!("implemented by the node work")
    }
}
