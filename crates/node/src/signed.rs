//! The record of what this node has signed: for each home identity, the highest seq
//! (and its entry id) the node has made durable and so may have passed on.
//!
//! It lives in its own small file, `signed-heads.json` in the data directory,
//! written atomically (a temporary file, fsync, rename, fsync of the directory)
//! after sled's flush and before the entries are acknowledged or sent to a peer. It
//! does not depend on sled's files: if sled recovers to an earlier point after
//! damage, or the sled files are restored from an old backup, the store holds less
//! of a home identity's log than the record says was signed, and the node knows
//! that publishing now would sign a seq it has already used (a fork that freezes
//! the organisation on every node). It then refuses to publish as that identity
//! until its peers have supplied the missing entries, and says so.
//!
//! Only batches that hold a home identity's entries rewrite the file: one extra
//! small fsync per group commit of the node's own publishes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use accord_core::{EntryId, PublicId};

/// The file's name in the data directory.
pub const FILE: &str = "signed-heads.json";

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct OnDisk {
    format: u32,
    /// Hex public key → highest seq and entry id (hex) made durable.
    identities: BTreeMap<String, Head>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Head {
    seq: u64,
    id: String,
}

/// The record, in memory.
#[derive(Debug, Clone, Default)]
pub struct SignedRecord {
    path: PathBuf,
    heads: BTreeMap<PublicId, (u64, EntryId)>,
}

impl SignedRecord {
    /// Reads the record in `data_dir`; none yet is an empty record.
    pub fn load(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path,
                    heads: BTreeMap::new(),
                });
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let on_disk: OnDisk = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a record of signed heads: {e}", path.display()))?;
        let mut heads = BTreeMap::new();
        for (key, head) in on_disk.identities {
            let author: PublicId = key
                .parse()
                .map_err(|e| format!("{}: key {key}: {e}", path.display()))?;
            let id = hex::decode(&head.id)
                .ok()
                .and_then(|b| EntryId::from_slice(&b).ok())
                .ok_or_else(|| format!("{}: bad entry id for {key}", path.display()))?;
            heads.insert(author, (head.seq, id));
        }
        Ok(Self { path, heads })
    }

    /// The highest seq (and id) of `author` this node has made durable.
    pub fn get(&self, author: &PublicId) -> Option<(u64, EntryId)> {
        self.heads.get(author).copied()
    }

    pub fn heads(&self) -> &BTreeMap<PublicId, (u64, EntryId)> {
        &self.heads
    }

    /// Raises the record to `(author, seq, id)` where higher; true if it changed.
    pub fn raise(&mut self, author: PublicId, seq: u64, id: EntryId) -> bool {
        match self.heads.get(&author) {
            Some((known, _)) if *known >= seq => false,
            _ => {
                self.heads.insert(author, (seq, id));
                true
            }
        }
    }

    /// Writes the record atomically and durably.
    pub fn save(&self) -> std::io::Result<()> {
        let on_disk = OnDisk {
            format: 1,
            identities: self
                .heads
                .iter()
                .map(|(author, (seq, id))| {
                    (
                        author.to_string(),
                        Head {
                            seq: *seq,
                            id: hex::encode(id.as_bytes()),
                        },
                    )
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&on_disk).expect("serialises");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The manifest of every author's head, `heads-manifest.json` in the data
/// directory: written at each clean stop and every [`MANIFEST_EVERY`] while the node
/// runs. A store that starts holding less of some log than the manifest says lost
/// entries (sled recovered to an earlier point, or its files were restored from an
/// old copy): the node says so, and its peers refill it.
pub const MANIFEST: &str = "heads-manifest.json";

/// How often a running node rewrites the manifest.
pub const MANIFEST_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct ManifestOnDisk {
    format: u32,
    /// Hex public key → seq.
    heads: BTreeMap<String, u64>,
}

/// Reads the manifest in `data_dir`; none yet is an empty one.
pub fn load_manifest(data_dir: &Path) -> Result<BTreeMap<PublicId, u64>, String> {
    let path = data_dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let on_disk: ManifestOnDisk = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a manifest of heads: {e}", path.display()))?;
    on_disk
        .heads
        .into_iter()
        .map(|(key, seq)| {
            key.parse()
                .map(|author| (author, seq))
                .map_err(|e| format!("{}: key {key}: {e}", path.display()))
        })
        .collect()
}

/// Writes the manifest of `heads` atomically and durably.
pub fn save_manifest(
    data_dir: &Path,
    heads: impl IntoIterator<Item = (PublicId, u64)>,
) -> std::io::Result<()> {
    let on_disk = ManifestOnDisk {
        format: 1,
        heads: heads
            .into_iter()
            .map(|(author, seq)| (author.to_string(), seq))
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&on_disk).expect("serialises");
    let path = data_dir.join(MANIFEST);
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}
