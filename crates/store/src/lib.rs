//! Accord's storage: one sled database per node, behind a small API.
//!
//! The store keeps bytes, not meaning: each accepted entry exactly as its author
//! signed it (the encoded `SignedEntry`), keyed by author and seq, and each fork proof
//! the node has seen. It never decides what is valid; the node does that before it
//! appends, and checks the signatures again when it loads.
//!
//! The data directory records its format in a small text file of its own,
//! [`FORMAT_FILE`] (`accord-data-format`, the number and a newline), read before sled
//! opens anything, so a release never lets its storage engine touch a directory
//! laid out by a newer one: a number above [`DATA_FORMAT`] is refused with one
//! line saying so. A directory without the file was written by a release before
//! it (format 1, the same layout) and gets the file at its first open. A release
//! that changes the layout raises both this number and the `format` byte in `meta`,
//! so releases from before the file refuse the directory too (by the byte).
//!
//! Layout (format 1):
//! - tree `meta`: `format` → one byte, the layout version; `alliance` → 32 bytes.
//! - tree `entries`: author (32 bytes) ‖ seq (u64, big-endian) → version byte ‖ bytes.
//! - tree `forks`: author (32 bytes) → version byte ‖ encoded fork proof.
//! - tree `feed_links`: SHA-256 of a member's calendar token (32 bytes) → version
//!   byte ‖ the node's record of it (opaque here). Node-local: never replicated.
//!
//! Every value starts with a version byte, so a later layout can read old values and
//! rewrite them lazily. Keys sort by author then seq, so one author's log is one
//! contiguous range and a full scan yields every log in order.
//!
//! Durability: [`Store::append`] writes a batch atomically but does not wait for the
//! disk; [`Store::flush`] does. The node acknowledges a publish only after the flush
//! that covers it, and many publishes share one flush (group commit).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use accord_core::{AllianceId, PublicId};

/// The layout version this code writes and reads.
pub const FORMAT: u8 = 1;
/// The data directory's format, recorded in [`FORMAT_FILE`].
pub const DATA_FORMAT: u32 = 1;
/// The file in the data directory that holds its format number.
pub const FORMAT_FILE: &str = "accord-data-format";
/// The version byte in front of each value.
const VALUE_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(
        "this data directory holds alliance {stored}, but the node is configured for {configured}"
    )]
    WrongAlliance {
        stored: AllianceId,
        configured: AllianceId,
    },
    #[error("this data directory uses storage format {found}; this version reads format {FORMAT}")]
    UnknownFormat { found: u8 },
    #[error(
        "this data directory has format {found}, written by a newer release of Accord; this \
         release reads format {DATA_FORMAT} and older: run the newer release, or restore a backup \
         into an empty directory (deploy/README.md, \"Upgrades and rollback\")"
    )]
    NewerFormat { found: u32 },
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

/// One stored entry: its author, seq and encoded `SignedEntry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub author: PublicId,
    pub seq: u64,
    pub bytes: Vec<u8>,
}

/// A stored feed link: its token's SHA-256 and the node's record of it.
pub type FeedLinkRecord = ([u8; 32], Vec<u8>);

/// A node's database.
#[derive(Debug, Clone)]
pub struct Store {
    path: Arc<PathBuf>,
    db: sled::Db,
    entries: sled::Tree,
    forks: sled::Tree,
    feed_links: sled::Tree,
}

fn entry_key(author: &PublicId, seq: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(author.as_bytes());
    key[32..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn versioned(bytes: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(bytes.len() + 1);
    value.push(VALUE_VERSION);
    value.extend_from_slice(bytes);
    value
}

fn unversioned(value: &[u8]) -> Result<Vec<u8>, StoreError> {
    match value.split_first() {
        Some((&VALUE_VERSION, rest)) => Ok(rest.to_vec()),
        Some((other, _)) => Err(StoreError::Corrupt(format!(
            "value version {other} is not known"
        ))),
        None => Err(StoreError::Corrupt("empty value".into())),
    }
}

fn parse_entry_key(key: &[u8]) -> Result<(PublicId, u64), StoreError> {
    if key.len() != 40 {
        return Err(StoreError::Corrupt(format!(
            "entry key of {} bytes",
            key.len()
        )));
    }
    let author =
        PublicId::from_slice(&key[..32]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let seq = u64::from_be_bytes(key[32..].try_into().expect("8 bytes"));
    Ok((author, seq))
}

/// How long `open` waits for a lock that the same process is still releasing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the sled database. sled releases its file lock only when its background
/// flusher lets go of the database, a moment after the last handle is dropped, so a
/// reopen in the same process (a restart) may find it still held: wait a bounded
/// time. Another process holding it gets the lock error after that.
fn open_db(path: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return Ok(result?),
        }
    }
}

/// The format recorded in `data_dir`'s [`FORMAT_FILE`]: None when there is no
/// file (a new directory, or one written before the file existed: format 1).
pub fn recorded_format(data_dir: &Path) -> Result<Option<u32>, StoreError> {
    let path = data_dir.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Corrupt(format!("{}: {e}", path.display())));
        }
    };
    match text.trim().parse::<u32>() {
        Ok(found) if found > DATA_FORMAT => Err(StoreError::NewerFormat { found }),
        Ok(found) if found >= 1 => Ok(Some(found)),
        _ => Err(StoreError::Corrupt(format!(
            "{} does not hold a format number (it holds {:?})",
            path.display(),
            text.chars().take(40).collect::<String>()
        ))),
    }
}

/// Records [`DATA_FORMAT`] in `data_dir` (a temporary file, renamed, then the
/// directory synced).
fn record_format(data_dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join(FORMAT_FILE);
    let tmp = data_dir.join(format!("{FORMAT_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(format!("{DATA_FORMAT}\n").as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Bytes free for an unprivileged writer on the filesystem holding `path` (or its
/// nearest existing ancestor, for a data directory not made yet).
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let mut at = path;
    while !at.exists() {
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    let stats = rustix::fs::statvfs(at).map_err(std::io::Error::from)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

impl Store {
    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes free on the data directory's filesystem.
    pub fn free_space(&self) -> std::io::Result<u64> {
        free_space(&self.path)
    }

    /// Opens (or creates) the database in `path` for `alliance`. A directory made for
    /// another alliance, or by a newer layout, is refused rather than mixed.
    pub fn open(
        path: &Path,
        alliance: AllianceId,
        cache_capacity_bytes: u64,
    ) -> Result<Self, StoreError> {
        let recorded = recorded_format(path)?;
        let db = open_db(path, cache_capacity_bytes)?;
        let meta = db.open_tree("meta")?;
        match meta.get("format")? {
            Some(v) if v.as_ref() == [FORMAT] => {}
            Some(v) => {
                return Err(StoreError::UnknownFormat {
                    found: v.first().copied().unwrap_or(0),
                });
            }
            None => {
                meta.insert("format", &[FORMAT])?;
            }
        }
        match meta.get("alliance")? {
            Some(v) => {
                let stored =
                    AllianceId::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if stored != alliance {
                    return Err(StoreError::WrongAlliance {
                        stored,
                        configured: alliance,
                    });
                }
            }
            None => {
                meta.insert("alliance", alliance.as_bytes())?;
                db.flush()?;
            }
        }
        if recorded.is_none() {
            record_format(path).map_err(|e| {
                StoreError::Corrupt(format!(
                    "cannot record the format in {}: {e}",
                    path.join(FORMAT_FILE).display()
                ))
            })?;
        }
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            entries: db.open_tree("entries")?,
            forks: db.open_tree("forks")?,
            feed_links: db.open_tree("feed_links")?,
            db,
        })
    }

    /// Writes entries atomically (all or none), without waiting for the disk.
    pub fn append(&self, entries: &[StoredEntry]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&entry_key(&e.author, e.seq)[..], versioned(&e.bytes));
        }
        self.entries.apply_batch(batch)?;
        Ok(())
    }

    /// Waits until everything written so far is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Records a fork proof for `author` (without waiting for the disk).
    pub fn put_fork(&self, author: &PublicId, proof: &[u8]) -> Result<(), StoreError> {
        self.forks.insert(author.as_bytes(), versioned(proof))?;
        Ok(())
    }

    /// Every fork proof, by author.
    pub fn forks(&self) -> Result<Vec<(PublicId, Vec<u8>)>, StoreError> {
        self.forks
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let author =
                    PublicId::from_slice(&key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((author, unversioned(&value)?))
            })
            .collect()
    }

    /// The stored entry `seq` of `author`.
    pub fn get(&self, author: &PublicId, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.entries
            .get(entry_key(author, seq))?
            .map(|v| unversioned(&v))
            .transpose()
    }

    /// Up to `limit` entries of `author`, from `from_seq` on, in seq order.
    pub fn log(
        &self,
        author: &PublicId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.entries
            .range(entry_key(author, from_seq)..=entry_key(author, u64::MAX))
            .take(limit)
            .map(|item| decode_item(item?))
            .collect()
    }

    /// Every stored entry, in (author, seq) order.
    pub fn entries(&self) -> impl Iterator<Item = Result<StoredEntry, StoreError>> + '_ {
        self.entries.iter().map(|item| decode_item(item?))
    }

    /// Writes the record of a member's feed link, keyed by its token's hash, and waits
    /// for the disk: a link handed out or revoked stays so across a crash.
    pub async fn put_feed_link(
        &self,
        token_hash: &[u8; 32],
        record: &[u8],
    ) -> Result<(), StoreError> {
        self.feed_links.insert(token_hash, versioned(record))?;
        self.flush().await
    }

    /// The record of the feed link whose token hashes to `token_hash`.
    pub fn feed_link(&self, token_hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.feed_links
            .get(token_hash)?
            .map(|v| unversioned(&v))
            .transpose()
    }

    /// Every feed link record, by token hash.
    pub fn feed_links(&self) -> Result<Vec<FeedLinkRecord>, StoreError> {
        self.feed_links
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let hash: [u8; 32] = key.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("feed link key of {} bytes", key.len()))
                })?;
                Ok((hash, unversioned(&value)?))
            })
            .collect()
    }

    /// Number of stored entries (a full scan of the keys).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn decode_item((key, value): (sled::IVec, sled::IVec)) -> Result<StoredEntry, StoreError> {
    let (author, seq) = parse_entry_key(&key)?;
    Ok(StoredEntry {
        author,
        seq,
        bytes: unversioned(&value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alliance(n: u8) -> AllianceId {
        AllianceId::from_bytes([n; 32])
    }

    fn entry(author: u8, seq: u64) -> StoredEntry {
        StoredEntry {
            author: PublicId::from_bytes([author; 32]),
            seq,
            bytes: format!("entry {author}/{seq}").into_bytes(),
        }
    }

    #[tokio::test]
    async fn entries_come_back_in_author_then_seq_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), alliance(1), 1 << 20).unwrap();
            store
                .append(&[entry(2, 1), entry(1, 2), entry(1, 1)])
                .unwrap();
            store.append(&[entry(1, 300)]).unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path(), alliance(1), 1 << 20).unwrap();
        let all: Vec<_> = store.entries().map(Result::unwrap).collect();
        assert_eq!(all, [entry(1, 1), entry(1, 2), entry(1, 300), entry(2, 1)]);
        let author = PublicId::from_bytes([1; 32]);
        assert_eq!(
            store.log(&author, 2, 10).unwrap(),
            [entry(1, 2), entry(1, 300)]
        );
        assert_eq!(store.log(&author, 1, 1).unwrap(), [entry(1, 1)]);
        assert_eq!(store.get(&author, 300).unwrap(), Some(entry(1, 300).bytes));
        assert_eq!(store.get(&author, 3).unwrap(), None);
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn a_directory_of_another_alliance_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), alliance(1), 1 << 20).unwrap());
        let err = Store::open(dir.path(), alliance(2), 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::WrongAlliance { .. }), "{err}");
    }

    #[test]
    fn the_format_is_recorded_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), alliance(1), 1 << 20).unwrap());
        let recorded = std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap();
        assert_eq!(recorded, format!("{DATA_FORMAT}\n"));
        std::fs::write(
            dir.path().join(FORMAT_FILE),
            format!("{}\n", DATA_FORMAT + 1),
        )
        .unwrap();
        let err = Store::open(dir.path(), alliance(1), 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::NewerFormat { .. }), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        std::fs::write(dir.path().join(FORMAT_FILE), "banana").unwrap();
        let err = Store::open(dir.path(), alliance(1), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("format number"), "{err}");
    }

    #[tokio::test]
    async fn fork_proofs_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), alliance(1), 1 << 20).unwrap();
        let author = PublicId::from_bytes([7; 32]);
        store.put_fork(&author, b"proof").unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.forks().unwrap(), [(author, b"proof".to_vec())]);
    }
}
