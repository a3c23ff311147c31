//! Backups: one file holding a consistent copy of a node's ledger, read from one
//! snapshot of it, that can be checked offline and restored into an empty data
//! directory.
//!
//! The file (format 1) is a header line, then records, then a checksum:
//!
//! ```text
//! "ACCORD-BACKUP/1\n"                      16 bytes
//! record*: tag (1 byte) ‖ length (u32, big-endian) ‖ payload
//!   'C'  the charter file, exactly               (once, first)
//!   'M'  the manifest, JSON (see [`Manifest`])   (once, second)
//!   'F'  a fork proof, JSON: author, seq, first and second (hex SignedEntry bytes)
//!   'E'  an entry: the encoded SignedEntry exactly as signed, in (author, seq)
//!        order, every log whole from seq 1 to the manifest's head
//! 'S' ‖ 32 ‖ SHA-256 of every byte before this record
//! ```
//!
//! Nothing may follow the checksum. [`verify`] checks the checksum, decodes every
//! entry, verifies every signature (batched) and envelope against the charter,
//! follows every log's links from seq 1, verifies every fork proof, rebuilds the
//! derived state and compares its heads, entry count and entries digest with the
//! manifest: any damaged byte fails at least the checksum.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use accord_core::state::ForkProof;
use accord_core::{Charter, EntryId, PublicId, State};
use accord_store::{Store, StoreError, StoredEntry};
use sha2::{Digest, Sha256};

use crate::ledger::{self, Ledger, Signatures};

/// The first bytes of every backup file.
pub const HEADER: &[u8; 16] = b"ACCORD-BACKUP/1\n";
/// The backup format [`HEADER`] names.
pub const FORMAT: u32 = 1;

const CHARTER: u8 = b'C';
const MANIFEST: u8 = b'M';
const FORK: u8 = b'F';
const ENTRY: u8 = b'E';
const CHECKSUM: u8 = b'S';

/// Largest record a reader accepts (a charter or a fork proof of two entries).
const MAX_RECORD: u32 = 64 << 20;
/// Bytes per chunk of the Backup stream.
pub const CHUNK: usize = 1 << 20;
/// Entries read from the store at a time while writing a backup.
const READ_BATCH: usize = 1024;

/// What a backup holds, written second, so a reader knows what to expect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The backup format (1).
    pub format: u32,
    /// The alliance id (hex): SHA-256 of the charter.
    pub alliance: String,
    /// When the node took the snapshot, Unix milliseconds.
    pub created_ms: i64,
    /// The release of the node that wrote it.
    pub release: String,
    /// Entries in the backup.
    pub entries: u64,
    /// Every author's head in the snapshot, in key order.
    pub heads: Vec<ManifestHead>,
    /// Fork proofs in the backup.
    pub fork_proofs: u64,
    /// The snapshot's entries digest (hex): `NodeStatus.entries_digest`.
    pub entries_digest: String,
    /// The snapshot's state digest (hex) under `rules_version`: `NodeStatus.digest`.
    pub digest: String,
    pub rules_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestHead {
    /// Public key, hex.
    pub author: String,
    pub seq: u64,
    /// Entry id of the head entry, hex.
    pub id: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ForkRecord {
    author: String,
    seq: u64,
    first: String,
    second: String,
}

/// Writes a backup file's records and checksum to `out`.
pub struct Writer<W: Write> {
    out: W,
    hash: Sha256,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(HEADER)?;
        let mut hash = Sha256::new();
        hash.update(HEADER);
        Ok(Self { out, hash })
    }

    fn record(&mut self, tag: u8, payload: &[u8]) -> std::io::Result<()> {
        let len =
            u32::try_from(payload.len()).map_err(|_| std::io::Error::other("record over 4 GiB"))?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_be_bytes());
        self.hash.update(head);
        self.hash.update(payload);
        self.out.write_all(&head)?;
        self.out.write_all(payload)
    }

    /// Writes the checksum and returns the output.
    pub fn finish(mut self) -> std::io::Result<(W, [u8; 32])> {
        let sum: [u8; 32] = self.hash.clone().finalize().into();
        self.out.write_all(&[CHECKSUM, 0, 0, 0, 32])?;
        self.out.write_all(&sum)?;
        self.out.flush()?;
        Ok((self.out, sum))
    }
}

/// Why a backup could not be read, verified or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("{0}")]
    Refused(String),
}

fn damaged(what: impl Into<String>) -> BackupError {
    BackupError::Damaged(what.into())
}

/// Reads a backup file's records, checking the checksum at the end.
pub struct Reader<R: Read> {
    input: R,
    hash: Sha256,
    /// Bytes read so far, for messages.
    offset: u64,
    checksum: Option<[u8; 32]>,
}

impl<R: Read> Reader<R> {
    pub fn new(mut input: R) -> Result<Self, BackupError> {
        let mut header = [0u8; 16];
        read_exact(&mut input, &mut header, "its header")?;
        if &header != HEADER {
            return Err(if header.starts_with(b"ACCORD-BACKUP/") {
                BackupError::Refused(format!(
                    "this backup has format {:?}; this release reads format {FORMAT}",
                    String::from_utf8_lossy(&header[14..15])
                ))
            } else {
                damaged("it does not start as an Accord backup file")
            });
        }
        let mut hash = Sha256::new();
        hash.update(header);
        Ok(Self {
            input,
            hash,
            offset: 16,
            checksum: None,
        })
    }

    /// The next record (tag, payload); None after the checksum, which has then
    /// been checked, and the end of the input.
    pub fn next_record(&mut self) -> Result<Option<(u8, Vec<u8>)>, BackupError> {
        if self.checksum.is_some() {
            return Ok(None);
        }
        let mut head = [0u8; 5];
        read_exact(&mut self.input, &mut head, "its checksum (it is cut short)")?;
        let tag = head[0];
        let len = u32::from_be_bytes(head[1..].try_into().expect("4 bytes"));
        if tag == CHECKSUM {
            let mut sum = [0u8; 32];
            if len != 32 {
                return Err(damaged(format!("checksum record of {len} bytes")));
            }
            read_exact(&mut self.input, &mut sum, "its checksum")?;
            let expected: [u8; 32] = self.hash.clone().finalize().into();
            if sum != expected {
                return Err(damaged(
                    "its SHA-256 checksum does not match its contents (bytes were changed)",
                ));
            }
            let mut rest = [0u8; 1];
            match self.input.read(&mut rest) {
                Ok(0) => {}
                Ok(_) => return Err(damaged("bytes follow its checksum")),
                Err(e) => return Err(BackupError::Io(e.to_string())),
            }
            self.checksum = Some(sum);
            return Ok(None);
        }
        if ![CHARTER, MANIFEST, FORK, ENTRY].contains(&tag) {
            return Err(damaged(format!(
                "unknown record tag 0x{tag:02x} at byte {}",
                self.offset
            )));
        }
        if len > MAX_RECORD {
            return Err(damaged(format!(
                "a record of {len} bytes at byte {}, over the limit",
                self.offset
            )));
        }
        let mut payload = vec![0u8; len as usize];
        read_exact(&mut self.input, &mut payload, "the end of a record")?;
        self.hash.update(head);
        self.hash.update(&payload);
        self.offset += 5 + u64::from(len);
        Ok(Some((tag, payload)))
    }

    /// The checksum, once the end was read.
    pub fn checksum(&self) -> Option<[u8; 32]> {
        self.checksum
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            damaged(format!("the file ends before {what}"))
        } else {
            BackupError::Io(e.to_string())
        }
    })
}

/// The charter, the manifest and the fork proofs at the start of a backup; the
/// reader is left at the first entry (`pending`).
struct Opening<R: Read> {
    reader: Reader<R>,
    charter: Charter,
    manifest: Manifest,
    forks: Vec<ForkProof>,
    pending: Option<(u8, Vec<u8>)>,
}

fn open<R: Read>(input: R) -> Result<Opening<R>, BackupError> {
    let mut reader = Reader::new(input)?;
    let charter = match reader.next_record()? {
        Some((CHARTER, bytes)) => Charter::from_bytes(bytes)
            .map_err(|e| damaged(format!("its charter does not read: {e}")))?,
        _ => return Err(damaged("it does not start with a charter")),
    };
    let manifest: Manifest = match reader.next_record()? {
        Some((MANIFEST, bytes)) => serde_json::from_slice(&bytes)
            .map_err(|e| damaged(format!("its manifest does not read: {e}")))?,
        _ => return Err(damaged("no manifest after the charter")),
    };
    if manifest.alliance != charter.id().to_string() {
        return Err(damaged(format!(
            "the manifest names alliance {}, the charter is {}",
            manifest.alliance,
            charter.id()
        )));
    }
    let mut forks = Vec::new();
    let pending = loop {
        match reader.next_record()? {
            Some((FORK, bytes)) => {
                let record: ForkRecord = serde_json::from_slice(&bytes)
                    .map_err(|e| damaged(format!("a fork proof does not read: {e}")))?;
                let hex = |h: &str| hex::decode(h).map_err(|e| damaged(format!("fork proof: {e}")));
                let proof =
                    ForkProof::verify(&charter, &hex(&record.first)?, &hex(&record.second)?)
                        .map_err(|e| {
                            damaged(format!(
                                "the fork proof of {} does not verify: {e}",
                                record.author
                            ))
                        })?;
                if proof.author.to_string() != record.author || proof.seq != record.seq {
                    return Err(damaged(format!(
                        "the fork proof filed for {} at seq {} is about {} at seq {}",
                        record.author, record.seq, proof.author, proof.seq
                    )));
                }
                forks.push(proof);
            }
            Some((ENTRY, bytes)) => break Some((ENTRY, bytes)),
            Some((tag, _)) => {
                return Err(damaged(format!(
                    "a record '{}' where fork proofs or entries belong",
                    tag as char
                )));
            }
            None => break None,
        }
    };
    Ok(Opening {
        reader,
        charter,
        manifest,
        forks,
        pending,
    })
}

/// The entries of an opened backup, as stored entries (author and seq read from
/// each entry), then the checksum check at the end.
fn entries<R: Read>(
    reader: &mut Reader<R>,
    pending: Option<(u8, Vec<u8>)>,
    max_bytes: usize,
) -> impl Iterator<Item = Result<StoredEntry, StoreError>> + '_ {
    let mut pending = pending;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let record = match pending.take() {
            Some(record) => Ok(Some(record)),
            None => reader.next_record(),
        };
        let item = match record {
            Ok(Some((ENTRY, bytes))) => match accord_core::entry::decode_bytes(&bytes, max_bytes) {
                Ok(e) => Ok(StoredEntry {
                    author: e.author(),
                    seq: e.seq(),
                    bytes,
                }),
                Err(e) => Err(StoreError::Corrupt(format!(
                    "an entry does not decode: {e}"
                ))),
            },
            Ok(Some((tag, _))) => Err(StoreError::Corrupt(format!(
                "a record '{}' among the entries",
                tag as char
            ))),
            Ok(None) => {
                done = true;
                return None;
            }
            Err(BackupError::Damaged(what)) => Err(StoreError::Corrupt(what)),
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if item.is_err() {
            done = true;
        }
        Some(item)
    })
}

/// A backup that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub charter: Charter,
    pub manifest: Manifest,
    /// The derived state rebuilt from the backup.
    pub state: State,
    pub checksum: [u8; 32],
}

impl Verified {
    /// The state digest, if this release's rules are the ones the manifest's digest
    /// was computed under (None otherwise: digests of other rules may differ).
    /// Also None when governance entries changed what counts for entries read before
    /// them (the views then need a second read, which a stream cannot give).
    pub fn digest_matches(&self) -> Option<bool> {
        (self.manifest.rules_version == accord_core::state::RULES_VERSION
            && !self.state.views_stale())
        .then(|| hex::encode(self.state.digest()) == self.manifest.digest)
    }
}

/// Verifies the backup file at `path` offline (see the module documentation).
pub fn verify(path: &Path) -> Result<Verified, BackupError> {
    let file = std::fs::File::open(path)
        .map_err(|e| BackupError::Io(format!("{}: {e}", path.display())))?;
    verify_from(std::io::BufReader::with_capacity(1 << 20, file))
}

/// [`verify`], over any input.
pub fn verify_from(input: impl Read) -> Result<Verified, BackupError> {
    let Opening {
        mut reader,
        charter,
        manifest,
        forks,
        pending,
    } = open(input)?;
    if manifest.format != FORMAT {
        return Err(damaged(format!("manifest format {}", manifest.format)));
    }
    let mut state = State::new(charter.clone());
    for proof in &forks {
        state.record_fork(proof.clone());
    }
    let max = charter.rules().max_entry_bytes as usize;
    ledger::apply_stored(
        &mut state,
        entries(&mut reader, pending, max),
        &charter,
        Signatures::Verify,
    )
    .map_err(|e| match e {
        StoreError::Corrupt(what) => damaged(what),
        other => damaged(other.to_string()),
    })?;
    if let Some((author, e)) = state.misfiled_fork() {
        return Err(damaged(format!(
            "the fork proof of {author} does not verify: {e}"
        )));
    }
    let checksum = reader
        .checksum()
        .ok_or_else(|| damaged("the file ends before its checksum"))?;
    let heads: Vec<ManifestHead> = state
        .heads()
        .map(|(a, h)| head_of(a, h.seq, h.id))
        .collect();
    if heads != manifest.heads {
        return Err(damaged(format!(
            "its entries end at other heads than its manifest lists ({} logs against {})",
            heads.len(),
            manifest.heads.len()
        )));
    }
    if state.entry_count() != manifest.entries {
        return Err(damaged(format!(
            "it holds {} entries, its manifest says {}",
            state.entry_count(),
            manifest.entries
        )));
    }
    if forks.len() as u64 != manifest.fork_proofs {
        return Err(damaged(format!(
            "it holds {} fork proofs, its manifest says {}",
            forks.len(),
            manifest.fork_proofs
        )));
    }
    if hex::encode(state.entries_digest()) != manifest.entries_digest {
        return Err(damaged(
            "the entries digest of its entries is not the manifest's",
        ));
    }
    Ok(Verified {
        charter,
        manifest,
        state,
        checksum,
    })
}

/// Reads a backup's charter and manifest, hands each entry's bytes (an encoded
/// `SignedEntry`) to `each` in order, and checks the checksum at the end. Fork
/// proofs are verified; entries are not (see [`verify`]).
pub fn read_entries<R: Read>(
    input: R,
    mut each: impl FnMut(&Charter, Vec<u8>) -> Result<(), String>,
) -> Result<(Charter, Manifest), BackupError> {
    let Opening {
        mut reader,
        charter,
        manifest,
        pending,
        ..
    } = open(input)?;
    let mut next = pending;
    loop {
        let record = match next.take() {
            Some(record) => Some(record),
            None => reader.next_record()?,
        };
        match record {
            Some((ENTRY, bytes)) => each(&charter, bytes).map_err(BackupError::Io)?,
            Some((tag, _)) => {
                return Err(damaged(format!(
                    "a record '{}' among the entries",
                    tag as char
                )));
            }
            None => break,
        }
    }
    Ok((charter, manifest))
}

fn head_of(author: PublicId, seq: u64, id: EntryId) -> ManifestHead {
    ManifestHead {
        author: author.to_string(),
        seq,
        id: hex::encode(id.as_bytes()),
    }
}

/// Writes a backup of `snapshot` (entries read from `store`) to `out`. Blocking:
/// run it off the async threads.
pub fn write_snapshot<W: Write>(
    state: &State,
    store: &Store,
    created_ms: i64,
    out: W,
) -> std::io::Result<(W, [u8; 32])> {
    let heads: Vec<(PublicId, u64, EntryId)> =
        state.heads().map(|(a, h)| (a, h.seq, h.id)).collect();
    let forks: Vec<&ForkProof> = state.forks().collect();
    let manifest = Manifest {
        format: FORMAT,
        alliance: state.charter().id().to_string(),
        created_ms,
        release: env!("CARGO_PKG_VERSION").to_owned(),
        entries: state.entry_count(),
        heads: heads
            .iter()
            .map(|(a, seq, id)| head_of(*a, *seq, *id))
            .collect(),
        fork_proofs: forks.len() as u64,
        entries_digest: hex::encode(state.entries_digest()),
        digest: hex::encode(state.digest()),
        rules_version: accord_core::state::RULES_VERSION.to_owned(),
    };
    let mut writer = Writer::new(out)?;
    writer.record(CHARTER, state.charter().bytes())?;
    writer.record(
        MANIFEST,
        &serde_json::to_vec(&manifest).expect("serialises"),
    )?;
    for proof in forks {
        let record = ForkRecord {
            author: proof.author.to_string(),
            seq: proof.seq,
            first: hex::encode(&proof.first),
            second: hex::encode(&proof.second),
        };
        writer.record(FORK, &serde_json::to_vec(&record).expect("serialises"))?;
    }
    for (author, head, _) in heads {
        let mut from = 1;
        while from <= head {
            let want = usize::try_from(head - from + 1)
                .unwrap_or(usize::MAX)
                .min(READ_BATCH);
            let batch = store
                .log(&author, from, want)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if batch.is_empty() {
                return Err(std::io::Error::other(format!(
                    "the store holds {author}'s log only to seq {}, the snapshot to {head}",
                    from - 1
                )));
            }
            for stored in batch {
                if stored.seq != from {
                    return Err(std::io::Error::other(format!(
                        "the store lacks {author}'s entry {from}"
                    )));
                }
                writer.record(ENTRY, &stored.bytes)?;
                from += 1;
            }
        }
    }
    writer.finish()
}

/// A `Write` that cuts what is written into chunks and sends them on a bounded
/// channel (back-pressure: the writer waits while the client is slow). Fails once
/// the receiver is gone (the client went away).
struct ChunkSender {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, String>>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(bytes.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// Starts writing a backup of the ledger's current snapshot on the blocking pool;
/// its bytes arrive on the returned channel in chunks of at most [`CHUNK`], then an
/// error if it failed.
pub fn produce(ledger: &Ledger) -> tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let snapshot = ledger.state();
    let store = ledger.store().clone();
    let now_ms = chrono::Utc::now().timestamp_millis();
    tokio::task::spawn_blocking(move || {
        let sender = ChunkSender {
            buf: Vec::with_capacity(CHUNK),
            tx: tx.clone(),
        };
        match write_snapshot(&snapshot, &store, now_ms, sender) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                tracing::warn!("backup failed: {e}");
                let _ = tx.blocking_send(Err(e.to_string()));
            }
        }
    });
    rx
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    pub verified: Verified,
    /// Home identities whose record of signed seqs kept in the directory is ahead
    /// of the backup: (identity, signed seq, seq in the backup).
    pub record_ahead: Vec<(PublicId, u64, u64)>,
    /// Whether a record of signed seqs was found in the directory.
    pub record_kept: bool,
}

/// Files an otherwise empty data directory may hold for a restore: the record of
/// what the node signed, kept from the directory it replaces.
fn may_be_kept(name: &str) -> bool {
    crate::signed::FILES.contains(&name) || name == crate::signed::MANIFEST
}

/// Verifies the backup at `path`, then fills `config`'s data directory from it:
/// entries, fork proofs, and the record of what the node signed (see
/// ARCHITECTURE.md, "Backups"). The directory must be missing or empty but for
/// `signed-heads.a`/`.b` kept from the directory it replaces.
pub fn restore(path: &Path, config: &crate::NodeConfig) -> Result<Restored, BackupError> {
    let data_dir: PathBuf = config.data_dir.clone();
    check_empty(&data_dir)?;
    let verified = verify(path)?;
    if verified.charter.id() != config.charter.id() {
        return Err(BackupError::Refused(format!(
            "the backup is of alliance {} ({}), the node's charter is {}",
            verified.charter.id(),
            verified.charter.name(),
            config.charter.id()
        )));
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(|e| BackupError::Io(format!("cannot create {}: {e}", data_dir.display())))?;
    }
    if let Err(e) = fill(path, config, &verified) {
        // Leave the directory as it was found: empty but for a kept record.
        if let Ok(entries) = std::fs::read_dir(&data_dir) {
            for entry in entries.flatten() {
                if !may_be_kept(&entry.file_name().to_string_lossy()) {
                    let target = entry.path();
                    let _ =
                        std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
                }
            }
        }
        return Err(e);
    }
    // The record of what this node signed: what was kept, raised to the backup's
    // heads of the home identities (the backup's entries are signed, so they were).
    let mut record = crate::signed::SignedRecord::load(&data_dir).map_err(BackupError::Io)?;
    let record_kept = !record.heads().is_empty();
    let mut record_ahead = Vec::new();
    let mut raised = false;
    for identity in &config.identities {
        let id = identity.public_id();
        let in_backup = verified
            .state
            .heads()
            .find(|(a, _)| *a == id)
            .map(|(_, h)| (h.seq, h.id));
        if let Some((seq, entry)) = in_backup {
            raised |= record.raise(id, seq, entry);
        }
        let backup_seq = in_backup.map_or(0, |(s, _)| s);
        if let Some((signed, _)) = record.get(&id)
            && signed > backup_seq
        {
            record_ahead.push((id, signed, backup_seq));
        }
    }
    if raised {
        record
            .next_save()
            .save()
            .map_err(|e| BackupError::Io(format!("cannot write the record of signed seqs: {e}")))?;
    }
    Ok(Restored {
        verified,
        record_ahead,
        record_kept,
    })
}

/// Writes the verified backup at `path` into `config`'s data directory.
fn fill(path: &Path, config: &crate::NodeConfig, verified: &Verified) -> Result<(), BackupError> {
    let data_dir = &config.data_dir;
    let io = |e: StoreError| BackupError::Io(format!("{}: {e}", data_dir.display()));
    let store =
        Store::open(data_dir, config.charter.id(), config.cache_capacity_bytes).map_err(io)?;
    // A second pass over the file, now known sound; its checksum must be the one
    // verified (the file did not change in between).
    let file = std::fs::File::open(path)
        .map_err(|e| BackupError::Io(format!("{}: {e}", path.display())))?;
    let Opening {
        mut reader,
        forks,
        pending,
        ..
    } = open(std::io::BufReader::with_capacity(1 << 20, file))?;
    for proof in &forks {
        store
            .put_fork(&proof.author, &ledger::fork_proof_record(proof))
            .map_err(io)?;
    }
    let max = verified.charter.rules().max_entry_bytes as usize;
    let mut batch = Vec::with_capacity(READ_BATCH);
    for stored in entries(&mut reader, pending, max) {
        batch.push(stored.map_err(|e| damaged(e.to_string()))?);
        if batch.len() == READ_BATCH {
            store.append(&batch).map_err(io)?;
            batch.clear();
        }
    }
    store.append(&batch).map_err(io)?;
    if reader.checksum() != Some(verified.checksum) {
        return Err(BackupError::Refused(
            "the backup file changed while it was restored; nothing was restored, run restore again"
                .into(),
        ));
    }
    futures::executor::block_on(store.flush()).map_err(io)?;
    drop(store);
    Ok(())
}

fn check_empty(data_dir: &Path) -> Result<(), BackupError> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::Io(format!("{}: {e}", data_dir.display()))),
    };
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::Io(format!("{}: {e}", data_dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !may_be_kept(&name) {
            return Err(BackupError::Refused(format!(
                "{} is not empty (it holds {name}): restore fills an empty data directory only. \
                 Stop the node, move the directory aside (keep its signed-heads.a and \
                 signed-heads.b in the new, empty one), then restore",
                data_dir.display()
            )));
        }
    }
    Ok(())
}
