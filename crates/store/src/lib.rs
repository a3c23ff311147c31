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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use accord_core::{AllianceId, PublicId};

mod engine;
pub use engine::{payload_text, quiet_engine_panics};

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
    /// The storage engine panicked (sled does on some damage rather than return an
    /// error); every later call on the store is refused with the same message.
    #[error("the storage engine failed: {0}")]
    Engine(String),
    /// A flush that did not complete in time.
    #[error("the disk did not complete a flush within {} s", .0.as_secs())]
    Stalled(std::time::Duration),
    /// A log with an entry missing in its middle: the store holds later entries of
    /// it, but neither a range read nor a lookup finds `seq`.
    #[error(
        "the store lost entry {seq} of the log of {author}, though it holds entry {next} of it"
    )]
    Hole {
        author: PublicId,
        seq: u64,
        next: u64,
    },
}

impl StoreError {
    /// The operating system's error, when that is what failed (not damage).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Sled(sled::Error::Io(e)) => Some(e),
            _ => None,
        }
    }

    /// Whether another process (a running node) holds the store's lock.
    pub fn is_in_use(&self) -> bool {
        self.io_error()
            .is_some_and(|e| e.to_string().contains("could not acquire lock"))
    }
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
    /// The engine's panic, once it panicked: every later call is refused with it.
    failed: Arc<Mutex<Option<String>>>,
    damage: Arc<Mutex<Damage>>,
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
fn open_db(
    path: &Path,
    cache_capacity_bytes: u64,
    alliance: AllianceId,
) -> Result<Opened, StoreError> {
    let started = std::time::Instant::now();
    let db = loop {
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
            result => break result?,
        }
    };
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
    Ok(Opened {
        entries: db.open_tree("entries")?,
        forks: db.open_tree("forks")?,
        feed_links: db.open_tree("feed_links")?,
        db,
    })
}

/// The trees of a database just opened.
struct Opened {
    db: sled::Db,
    entries: sled::Tree,
    forks: sled::Tree,
    feed_links: sled::Tree,
}

/// Renames sled's snapshot files in `data_dir` to `damaged-snap.…`, which sled does
/// not read: each one that fails its checksum (sled's layout: the snapshot, its
/// length as 8 bytes, then the CRC-32 of the snapshot as 4 little-endian bytes), or
/// all of them when every one passes. Returns the names set aside.
fn set_aside_snapshots(data_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut snapshots = Vec::new();
    for item in std::fs::read_dir(data_dir)? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && item.file_type()?.is_file() {
            let bytes = std::fs::read(item.path())?;
            let sound = bytes.len() > 12 && {
                let (body, tail) = bytes.split_at(bytes.len() - 12);
                let expected = u32::from_le_bytes(tail[8..].try_into().expect("4 bytes"));
                crc32fast::hash(body) == expected
            };
            snapshots.push((name, sound));
        }
    }
    let damaged = snapshots.iter().any(|(_, sound)| !sound);
    let mut set_aside = Vec::new();
    for (name, sound) in snapshots {
        if !sound || !damaged {
            std::fs::rename(
                data_dir.join(&name),
                data_dir.join(format!("damaged-{name}")),
            )?;
            set_aside.push(name);
        }
    }
    if !set_aside.is_empty() {
        std::fs::File::open(data_dir)?.sync_all()?;
    }
    Ok(set_aside)
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

/// What the store found wrong while reading, since it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Damage {
    /// Entries a range read passed by (sled's links between its tree's leaves are
    /// damaged) and a lookup then found: read around, served whole.
    pub read_around: u64,
    /// Logs with an entry missing in the middle, by author.
    pub holes: BTreeMap<PublicId, Hole>,
    /// sled's snapshot files set aside at open (renamed `damaged-snap.…`), because
    /// they failed their checksum or sled failed on what they point at; sled
    /// rebuilt its index from its log.
    pub snapshots_set_aside: Vec<String>,
}

/// A log with an entry missing in its middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// The first seq missing: the log reads whole up to the seq before it.
    pub seq: u64,
    /// The highest seq of the log the store holds.
    pub stored_to: u64,
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

    /// Calls into sled. A panic there becomes [`StoreError::Engine`], and so does
    /// every later call: after a panic sled's structures may be half-changed.
    fn call<T>(&self, f: impl FnOnce() -> sled::Result<T>) -> Result<T, StoreError> {
        if let Some(reason) = lock(&self.failed).clone() {
            return Err(StoreError::Engine(reason));
        }
        match engine::guarded(f) {
            Ok(result) => Ok(result?),
            Err(panic) => {
                lock(&self.failed).get_or_insert_with(|| panic.clone());
                Err(StoreError::Engine(panic))
            }
        }
    }

    /// Opens (or creates) the database in `path` for `alliance`. A directory made for
    /// another alliance, or by a newer layout, is refused rather than mixed. A panic
    /// of sled's while opening is [`StoreError::Engine`].
    pub fn open(
        path: &Path,
        alliance: AllianceId,
        cache_capacity_bytes: u64,
    ) -> Result<Self, StoreError> {
        let recorded = recorded_format(path)?;
        let open = || {
            engine::guarded(|| open_db(path, cache_capacity_bytes, alliance))
                .map_err(StoreError::Engine)?
        };
        let mut snapshots_set_aside = Vec::new();
        let opened = match open() {
            Err(e) if e.is_in_use() || e.io_error().is_some() => return Err(e),
            Err(e) => {
                // sled's snapshot is an index of its log, rebuilt from the log when
                // missing: one that fails its own checksum, or else (sled failed on
                // what its snapshot points at) every snapshot, is set aside (kept,
                // under a name sled ignores) and the open tried once more. What the
                // log then yields is verified entry by entry as the node loads it,
                // and anything it lacks is lost entries, refilled by the peers.
                let set_aside = set_aside_snapshots(path).map_err(|io| {
                    StoreError::Corrupt(format!("{e}; checking sled's snapshots: {io}"))
                })?;
                if set_aside.is_empty() {
                    return Err(e);
                }
                tracing::warn!(
                    "the store did not open ({e}): sled's snapshot {} was set aside and sled \
                     rebuilt its index from its log",
                    set_aside.join(", ")
                );
                snapshots_set_aside = set_aside;
                open()?
            }
            Ok(opened) => opened,
        };
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
            failed: Arc::default(),
            damage: Arc::new(Mutex::new(Damage {
                snapshots_set_aside,
                ..Damage::default()
            })),
            entries: opened.entries,
            forks: opened.forks,
            feed_links: opened.feed_links,
            db: opened.db,
        })
    }

    /// The engine's failure, if it panicked (on a call of this store's or on one of
    /// its own threads): the store then refuses every call.
    pub fn engine_failure(&self) -> Option<String> {
        lock(&self.failed)
            .clone()
            .or_else(engine::background_failure)
    }

    /// What reads have found wrong since the store was opened.
    pub fn damage(&self) -> Damage {
        lock(&self.damage).clone()
    }

    /// Forgets the hole recorded in `author`'s log, once the log has been filled
    /// and read back whole.
    pub fn hole_filled(&self, author: &PublicId) {
        lock(&self.damage).holes.remove(author);
    }

    /// Writes entries atomically (all or none), without waiting for the disk.
    pub fn append(&self, entries: &[StoredEntry]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&entry_key(&e.author, e.seq)[..], versioned(&e.bytes));
        }
        self.call(|| self.entries.apply_batch(batch))
    }

    /// Reads back what [`Store::append`] wrote, through the range reads that serve
    /// peers and clients: each log's entries must come back whole, in order, and
    /// byte for byte. A write that does not read back must not be acknowledged.
    pub fn read_back(&self, entries: &[StoredEntry]) -> Result<(), StoreError> {
        let mut at = 0;
        while at < entries.len() {
            let author = entries[at].author;
            let run = entries[at..]
                .iter()
                .zip(entries[at].seq..)
                .take_while(|(e, seq)| e.author == author && e.seq == *seq)
                .count();
            let mut cursor = LogCursor::new(self, author, entries[at].seq);
            for expected in &entries[at..at + run] {
                let mismatch = match cursor.step()? {
                    Some((_, value)) => {
                        value.first() != Some(&VALUE_VERSION) || value[1..] != expected.bytes[..]
                    }
                    None => true,
                };
                if mismatch {
                    return Err(StoreError::Corrupt(format!(
                        "entry {}/{} did not read back as written",
                        expected.author, expected.seq
                    )));
                }
            }
            at += run;
        }
        Ok(())
    }

    /// Waits until everything written so far is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.engine_failure() {
            return Err(StoreError::Engine(reason));
        }
        self.db.flush_async().await?;
        Ok(())
    }

    /// Records a fork proof for `author` (without waiting for the disk).
    pub fn put_fork(&self, author: &PublicId, proof: &[u8]) -> Result<(), StoreError> {
        self.call(|| self.forks.insert(author.as_bytes(), versioned(proof)))?;
        Ok(())
    }

    /// Every fork proof, by author.
    pub fn forks(&self) -> Result<Vec<(PublicId, Vec<u8>)>, StoreError> {
        let items = self.call(|| self.forks.iter().collect::<sled::Result<Vec<_>>>())?;
        items
            .into_iter()
            .map(|(key, value)| {
                let author =
                    PublicId::from_slice(&key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((author, unversioned(&value)?))
            })
            .collect()
    }

    /// The stored entry `seq` of `author`.
    pub fn get(&self, author: &PublicId, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|| self.entries.get(entry_key(author, seq)))?
            .map(|v| unversioned(&v))
            .transpose()
    }

    /// Up to `limit` entries of `author`, from `from_seq` on, in seq order with no
    /// gap: fewer only at the log's end. An entry missing before the log's end is
    /// [`StoreError::Hole`] (after the entries before it, if any were read).
    pub fn log(
        &self,
        author: &PublicId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let mut cursor = LogCursor::new(self, *author, from_seq.max(1));
        let mut out = Vec::new();
        while out.len() < limit {
            match cursor.step() {
                Ok(Some((seq, value))) => out.push(StoredEntry {
                    author: *author,
                    seq,
                    bytes: unversioned(&value)?,
                }),
                Ok(None) => break,
                Err(e @ StoreError::Hole { .. }) if out.is_empty() => return Err(e),
                Err(StoreError::Hole { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every stored entry, in (author, seq) order, each log from seq 1 with no gap.
    /// A log with an entry missing in its middle is read up to the seq before it and
    /// its hole recorded ([`Store::damage`]); the read goes on with the next log.
    pub fn entries(&self) -> impl Iterator<Item = Result<StoredEntry, StoreError>> + '_ {
        AllEntries {
            store: self,
            cursor: None,
            after: None,
            done: false,
        }
    }

    /// The authors with entries in the store, each found by a lookup of its own (so
    /// a damaged link between two of sled's leaves hides none).
    fn next_author(&self, after: Option<&PublicId>) -> Result<Option<PublicId>, StoreError> {
        let found = match after {
            None => self.call(|| self.entries.first())?,
            Some(author) => self.call(|| self.entries.get_gt(entry_key(author, u64::MAX)))?,
        };
        found
            .map(|(key, _)| parse_entry_key(&key).map(|(author, _)| author))
            .transpose()
    }

    /// The highest seq of `author` stored.
    fn last_seq(&self, author: &PublicId) -> Result<Option<u64>, StoreError> {
        let last = self.call(|| {
            self.entries
                .range(entry_key(author, 0)..=entry_key(author, u64::MAX))
                .next_back()
                .transpose()
        })?;
        last.map(|(key, _)| parse_entry_key(&key).map(|(_, seq)| seq))
            .transpose()
    }

    /// Writes the record of a member's feed link, keyed by its token's hash, and waits
    /// for the disk: a link handed out or revoked stays so across a crash.
    pub async fn put_feed_link(
        &self,
        token_hash: &[u8; 32],
        record: &[u8],
    ) -> Result<(), StoreError> {
        self.call(|| self.feed_links.insert(token_hash, versioned(record)))?;
        self.flush().await
    }

    /// The record of the feed link whose token hashes to `token_hash`.
    pub fn feed_link(&self, token_hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|| self.feed_links.get(token_hash))?
            .map(|v| unversioned(&v))
            .transpose()
    }

    /// Every feed link record, by token hash.
    pub fn feed_links(&self) -> Result<Vec<FeedLinkRecord>, StoreError> {
        let items = self.call(|| self.feed_links.iter().collect::<sled::Result<Vec<_>>>())?;
        items
            .into_iter()
            .map(|(key, value)| {
                let hash: [u8; 32] = key.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("feed link key of {} bytes", key.len()))
                })?;
                Ok((hash, unversioned(&value)?))
            })
            .collect()
    }

    /// Number of stored entries (a full scan of the keys).
    pub fn len(&self) -> usize {
        self.call(|| Ok(self.entries.len())).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.call(|| Ok(self.entries.is_empty())).unwrap_or(true)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads one author's log in seq order, trusting no single read of sled's: a range
/// read that ends, or passes the next seq by, is checked by a lookup of that seq
/// (which descends sled's tree from its root), and a lookup that misses by a range
/// read from it. So damage to the links between sled's leaves is read around, and an
/// entry missing in the middle of the log is a [`StoreError::Hole`], never a log that
/// silently ends early.
struct LogCursor<'a> {
    store: &'a Store,
    author: PublicId,
    /// The seq the next step returns (0: past u64::MAX).
    next: u64,
    iter: Option<sled::Iter>,
}

impl<'a> LogCursor<'a> {
    fn new(store: &'a Store, author: PublicId, from: u64) -> Self {
        Self {
            store,
            author,
            next: from,
            iter: None,
        }
    }

    /// The entry at the next seq (its seq and stored value), None at the log's end.
    fn step(&mut self) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        if self.next == 0 {
            return Ok(None);
        }
        let (author, next) = (self.author, self.next);
        let store = self.store;
        let iter = self.iter.get_or_insert_with(|| {
            store
                .entries
                .range(entry_key(&author, next)..=entry_key(&author, u64::MAX))
        });
        if let Some((key, value)) = store.call(|| iter.next().transpose())? {
            let (at, seq) = parse_entry_key(&key)?;
            if at == author && seq == next {
                self.next = next.wrapping_add(1);
                return Ok(Some((seq, value)));
            }
            if at != author || seq < next {
                return Err(StoreError::Corrupt(format!(
                    "a read of the log of {author} from seq {next} returned {at}/{seq}"
                )));
            }
        }
        // The range read ended, or passed `next` by: ask again from the tree's root.
        self.iter = None;
        if let Some(value) = store.call(|| store.entries.get(entry_key(&author, next)))? {
            lock(&store.damage).read_around += 1;
            self.next = next.wrapping_add(1);
            return Ok(Some((next, value)));
        }
        let later = store.call(|| {
            store
                .entries
                .range(entry_key(&author, next)..=entry_key(&author, u64::MAX))
                .next()
                .transpose()
        })?;
        // A range read from `next` may end early on the same damage: the log's last
        // entry, read from the other end, says whether anything follows.
        let last = store.last_seq(&author)?;
        let after = match (later, last) {
            (Some((key, _)), _) => parse_entry_key(&key)?.1,
            (None, Some(last)) if last > next => last,
            (None, _) => return Ok(None),
        };
        let stored_to = last.unwrap_or(after).max(after);
        lock(&store.damage).holes.insert(
            author,
            Hole {
                seq: next,
                stored_to,
            },
        );
        Err(StoreError::Hole {
            author,
            seq: next,
            next: after,
        })
    }
}

/// [`Store::entries`]: each author found by a lookup of its own, each log read by a
/// [`LogCursor`] from seq 1.
struct AllEntries<'a> {
    store: &'a Store,
    cursor: Option<LogCursor<'a>>,
    /// The author whose log was read last.
    after: Option<PublicId>,
    done: bool,
}

impl Iterator for AllEntries<'_> {
    type Item = Result<StoredEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(cursor) = self.cursor.as_mut() else {
                match self.store.next_author(self.after.as_ref()) {
                    Ok(Some(author)) => {
                        self.after = Some(author);
                        self.cursor = Some(LogCursor::new(self.store, author, 1));
                        continue;
                    }
                    Ok(None) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            };
            match cursor.step() {
                Ok(Some((seq, value))) => {
                    let author = cursor.author;
                    return Some(unversioned(&value).map(|bytes| StoredEntry {
                        author,
                        seq,
                        bytes,
                    }));
                }
                // The log ends here, or has a hole (recorded): on to the next.
                Ok(None) | Err(StoreError::Hole { .. }) => self.cursor = None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
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
            store.append(&[entry(1, 3)]).unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path(), alliance(1), 1 << 20).unwrap();
        let all: Vec<_> = store.entries().map(Result::unwrap).collect();
        assert_eq!(all, [entry(1, 1), entry(1, 2), entry(1, 3), entry(2, 1)]);
        let author = PublicId::from_bytes([1; 32]);
        assert_eq!(
            store.log(&author, 2, 10).unwrap(),
            [entry(1, 2), entry(1, 3)]
        );
        assert_eq!(store.log(&author, 1, 1).unwrap(), [entry(1, 1)]);
        assert_eq!(store.get(&author, 3).unwrap(), Some(entry(1, 3).bytes));
        assert_eq!(store.get(&author, 4).unwrap(), None);
        assert_eq!(store.len(), 4);
        assert_eq!(store.damage(), Damage::default());
        store.read_back(&[entry(1, 2), entry(1, 3)]).unwrap();
        let mut changed = entry(1, 3);
        changed.bytes.push(b'!');
        assert!(store.read_back(&[changed]).is_err());
    }

    /// An entry missing in the middle of a log is a hole: the full read stops that
    /// log before it (and goes on with the next), a read from it is an error, and
    /// the hole is recorded with how far the log is stored.
    #[tokio::test]
    async fn an_entry_missing_in_a_log_is_a_hole_not_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), alliance(1), 1 << 20).unwrap();
        store
            .append(&[entry(1, 1), entry(1, 2), entry(1, 300), entry(2, 1)])
            .unwrap();
        let all: Vec<_> = store.entries().map(Result::unwrap).collect();
        assert_eq!(all, [entry(1, 1), entry(1, 2), entry(2, 1)]);
        let author = PublicId::from_bytes([1; 32]);
        let hole = Hole {
            seq: 3,
            stored_to: 300,
        };
        assert_eq!(store.damage().holes.get(&author), Some(&hole));
        assert_eq!(store.log(&author, 2, 10).unwrap(), [entry(1, 2)]);
        let err = store.log(&author, 3, 10).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Hole {
                    seq: 3,
                    next: 300,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.log(&author, 300, 10).unwrap(), [entry(1, 300)]);
        store.append(&[entry(1, 3)]).unwrap();
        store.hole_filled(&author);
        assert_eq!(store.damage(), Damage::default());
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

    /// Copies a directory tree of plain files.
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for item in std::fs::read_dir(from).unwrap() {
            let item = item.unwrap();
            let target = to.join(item.file_name());
            if item.file_type().unwrap().is_dir() {
                copy_tree(&item.path(), &target);
            } else {
                std::fs::copy(item.path(), &target).unwrap();
            }
        }
    }

    /// One byte flipped at 60 points spread over sled's `db` file, holding four
    /// interleaved logs of 300 entries. Whatever sled recovers, opening never
    /// panics, and each log's checked read returns exactly the entries a lookup of
    /// each seq finds, up to the first one missing: damaged links between sled's
    /// leaves are read around (here, in one case, a plain range read from seq 1
    /// stopped at 225 of 300 while every lookup found its entry), and an entry
    /// missing in the middle is a recorded hole, not the log's end.
    #[tokio::test]
    async fn checked_reads_agree_with_lookups_whatever_one_flipped_byte_does() {
        engine::quiet_engine_panics();
        let base = tempfile::tempdir().unwrap();
        let pristine = base.path().join("pristine");
        let authors: Vec<PublicId> = (1..=4u8).map(|a| PublicId::from_bytes([a; 32])).collect();
        const PER: u64 = 300;
        {
            let store = Store::open(&pristine, alliance(1), 1 << 24).unwrap();
            for seq in 1..=PER {
                for author in &authors {
                    let bytes = vec![seq as u8; 400];
                    store
                        .append(&[StoredEntry {
                            author: *author,
                            seq,
                            bytes,
                        }])
                        .unwrap();
                }
                if seq % 10 == 0 {
                    store.flush().await.unwrap();
                }
            }
            store.flush().await.unwrap();
        }
        let len = std::fs::metadata(pristine.join("db")).unwrap().len();
        let cases = 60u64;
        let (mut refused, mut read_around, mut holes) = (0, 0, 0);
        for case in 0..cases {
            let dir = base.path().join(format!("case-{case}"));
            copy_tree(&pristine, &dir);
            let mut bytes = std::fs::read(dir.join("db")).unwrap();
            let at = (len * (2 * case + 1) / (2 * cases)) as usize;
            bytes[at] ^= 0x5a;
            std::fs::write(dir.join("db"), &bytes).unwrap();
            let store = match Store::open(&dir, alliance(1), 1 << 24) {
                Ok(store) => store,
                Err(e) => {
                    assert!(!e.to_string().contains('\n'), "case {case}: {e}");
                    refused += 1;
                    continue;
                }
            };
            for author in &authors {
                let found = (1..=PER)
                    .take_while(|seq| matches!(store.get(author, *seq), Ok(Some(_))))
                    .count();
                let read = store.log(author, 1, usize::MAX).map_or(0, |l| l.len());
                assert_eq!(read, found, "case {case} (byte {at}), log {author}");
            }
            let all = store.entries().filter(Result::is_ok).count();
            let damage = store.damage();
            read_around += u64::from(damage.read_around > 0);
            holes += damage.holes.len();
            assert!(all <= 4 * PER as usize);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        eprintln!(
            "{cases} flips: {refused} refused at open, {read_around} read around, {holes} holes"
        );
    }

    /// A snapshot of sled's that fails its own checksum (a flipped byte, a cut file)
    /// is set aside and the store opened from sled's log: every entry is there.
    #[tokio::test]
    async fn a_damaged_snapshot_is_set_aside_and_the_store_opens_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let author = PublicId::from_bytes([1; 32]);
        {
            let store = Store::open(dir.path(), alliance(1), 1 << 20).unwrap();
            for seq in 1..=50 {
                store.append(&[entry(1, seq)]).unwrap();
            }
            store.flush().await.unwrap();
        }
        // sled writes its snapshot when it opens a log that has grown.
        drop(Store::open(dir.path(), alliance(1), 1 << 20).unwrap());
        let snapshot = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("snap."))
            .expect("sled wrote a snapshot")
            .path();
        let mut bytes = std::fs::read(&snapshot).unwrap();
        bytes[3] ^= 0x40;
        std::fs::write(&snapshot, bytes).unwrap();
        let store = Store::open(dir.path(), alliance(1), 1 << 20).unwrap();
        let name = snapshot.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            store.damage().snapshots_set_aside,
            std::slice::from_ref(&name)
        );
        assert!(dir.path().join(format!("damaged-{name}")).exists());
        assert_eq!(store.log(&author, 1, 100).unwrap().len(), 50);
    }
}
