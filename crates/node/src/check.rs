//! `accord store check`: reads a stopped node's store end to end, and says what the
//! node would do with it and every kind of damage it finds.
//!
//! It writes nothing to the store: sled writes while it opens a database (it
//! recovers, zeroes torn segments and writes a snapshot), so the check copies the
//! store's files (holding a shared lock on them, so no node starts meanwhile) into a
//! scratch directory, works on the copy and deletes it. On the copy it runs the
//! node's own start-up load (`ledger::load_state`, with the store's checked reads)
//! and the node's own judgement of lost entries (the manifest of heads, the record of
//! signed seqs, holes), so its verdict is the node's; then, unlike the node, it reads
//! on past the first problem: every stored entry is decoded, its signature verified
//! (in batches), its envelope checked against the charter and its link to the
//! previous entry of its log followed; fork proofs are verified too, each side
//! against the key that signs its log at the fork's seq.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use accord_core::entry::{self, DecodedEntry};
use accord_core::{Charter, EntryId, PublicId};
use accord_store::{Store, StoreError};

use crate::NodeConfig;

/// What one author's log holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LogReport {
    /// Entries stored.
    pub entries: u64,
    /// The highest seq stored.
    pub last_seq: u64,
    /// The seq up to which the log is whole and verifies (1..=whole_to).
    pub whole_to: u64,
    /// Entries whose body this release does not accept (stored, in no view).
    pub set_aside: u64,
}

/// A log the node would find short of what it should hold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LostLog {
    pub author: PublicId,
    /// The seq the log would load whole to.
    pub whole_to: u64,
    /// The seq it should hold to (signed by this node, in the manifest of heads, or
    /// stored past a hole).
    pub expected: u64,
}

/// What the node would do with the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Start with every log whole.
    #[default]
    Start,
    /// Start with lost entries (health failing) and refill them from its peers.
    StartAndRefill,
    /// Refuse to start, with [`StoreReport::refusal`].
    Refuse,
}

/// The result of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreReport {
    pub entries: u64,
    pub logs: BTreeMap<PublicId, LogReport>,
    pub fork_proofs: usize,
    /// What a node started on this store would do.
    pub node_would: Verdict,
    /// The line the node would refuse to start with.
    pub refusal: Option<String>,
    /// Logs the node would start short of.
    pub lost: Vec<LostLog>,
    /// Entries found only by a lookup of their own (damaged links in sled's tree).
    pub read_around: u64,
    /// sled's snapshots that failed their checksum: a node sets them aside and
    /// sled rebuilds its index from its log (not damage to any entry).
    pub snapshots_set_aside: Vec<String>,
    /// One line per problem found; empty when the store is sound.
    pub damage: Vec<String>,
}

impl StoreReport {
    pub fn is_sound(&self) -> bool {
        self.damage.is_empty() && self.lost.is_empty() && self.refusal.is_none()
    }

    fn refuse(&mut self, line: String) {
        self.node_would = Verdict::Refuse;
        self.damage.push(line.clone());
        self.refusal = Some(line);
    }
}

/// Checks the store of the node `config` describes, on a copy made in `scratch`
/// (the system's temporary directory if None). An error is a check that could not
/// be made at all (no store, a node running on it, no room for the copy), said in
/// one line; a store the node would refuse is a report with a refusal.
pub async fn check_store(
    config: &NodeConfig,
    scratch: Option<&Path>,
) -> Result<StoreReport, String> {
    check_data_dir(
        &config.data_dir,
        &config.charter,
        &config.identities,
        scratch,
    )
    .await
}

/// [`check_store`] for the store in `data_dir` of a node home to `identities`.
pub async fn check_data_dir(
    data_dir: &Path,
    charter: &Charter,
    identities: &[accord_core::Identity],
    scratch: Option<&Path>,
) -> Result<StoreReport, String> {
    if !data_dir.join("db").exists() {
        return Err(format!(
            "{}: no store here (no sled `db` file)",
            data_dir.display()
        ));
    }
    let copy = {
        let _lock = SharedLock::take(data_dir)?;
        copy_store(data_dir, scratch)?
    };
    let mut report = StoreReport::default();
    let store = match Store::open(copy.path(), charter.id(), 1 << 24) {
        Ok(store) => store,
        Err(e) => {
            report.refuse(open_failure(data_dir, &e));
            return Ok(report);
        }
    };
    let loaded = tokio::task::spawn_blocking({
        let (store, charter) = (store.clone(), charter.clone());
        move || crate::ledger::load_state(&store, &charter)
    })
    .await
    .map_err(|e| StoreError::Engine(e.to_string()));
    match loaded {
        Ok(Ok((state, _))) => {
            judge_lost(data_dir, identities, &store, state, &mut report).await?;
        }
        Ok(Err(e)) | Err(e) => report.refuse(open_failure(data_dir, &e)),
    }
    // Read on past the first problem, for the details.
    let scanned = tokio::task::spawn_blocking({
        let (store, charter) = (store.clone(), charter.clone());
        move || {
            let mut details = StoreReport::default();
            scan(&store, &charter, &mut details);
            details
        }
    })
    .await
    .map_err(|e| format!("reading the store: {e}"))?;
    report.entries = scanned.entries;
    report.logs = scanned.logs;
    report.fork_proofs = scanned.fork_proofs;
    for line in scanned.damage {
        if !report.damage.contains(&line) {
            report.damage.push(line);
        }
    }
    let damage = store.damage();
    report.read_around = damage.read_around;
    report.snapshots_set_aside = damage.snapshots_set_aside.clone();
    if damage.read_around > 0 {
        report.damage.push(format!(
            "sled's index is damaged: {} entries were found only by looking each up (a node \
             serves them all)",
            damage.read_around
        ));
    }
    for (author, hole) in &damage.holes {
        let line = format!(
            "log of {author}: entry {} is missing, though the store holds entries up to seq {}",
            hole.seq, hole.stored_to
        );
        if !report.damage.contains(&line) {
            report.damage.push(line);
        }
    }
    if let Some(reason) = store.engine_failure().filter(|_| report.refusal.is_none()) {
        report.refuse(open_failure(data_dir, &StoreError::Engine(reason)));
    }
    drop(store);
    drop(copy);
    Ok(report)
}

/// The node's own judgement of lost entries, on the loaded state.
async fn judge_lost(
    data_dir: &Path,
    identities: &[accord_core::Identity],
    store: &Store,
    state: accord_core::State,
    report: &mut StoreReport,
) -> Result<(), String> {
    let signed = crate::signed::SignedRecord::load(data_dir)?;
    let manifest = crate::signed::load_manifest(data_dir)?;
    let expected = crate::integrity::expected_heads(manifest, &store.damage());
    let (ledger, writer) =
        crate::ledger::Ledger::start(store.clone(), state, identities.to_vec(), signed);
    ledger.expect_heads(expected);
    let state = ledger.state();
    for lost in ledger.all_lost(&state) {
        report.lost.push(LostLog {
            author: lost.author,
            whole_to: lost.stored,
            expected: lost.signed,
        });
    }
    if !report.lost.is_empty() {
        report.node_would = Verdict::StartAndRefill;
    }
    drop(state);
    drop(ledger);
    let _ = writer.await;
    Ok(())
}

/// A shared lock on sled's `db` file, held while it is copied: a running node holds
/// it exclusively, and a node cannot start meanwhile.
struct SharedLock(#[allow(dead_code)] std::fs::File);

impl SharedLock {
    fn take(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join("db");
        let file = std::fs::File::open(&path)
            .map_err(|e| format!("{}: cannot read the store: {e}", data_dir.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).map_err(
            |_| {
                format!(
                    "{}: the store is in use (a node is running on it); stop the node first",
                    data_dir.display()
                )
            },
        )?;
        Ok(Self(file))
    }
}

/// Copies the data directory's files into a new directory under `scratch`, deleted
/// when the result is dropped.
fn copy_store(data_dir: &Path, scratch: Option<&Path>) -> Result<tempfile::TempDir, String> {
    let scratch: PathBuf = scratch.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let needed = tree_size(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let free = accord_store::free_space(&scratch).unwrap_or(u64::MAX);
    if free < needed + (16 << 20) {
        return Err(format!(
            "no room for a copy of the store in {} ({} MiB needed, {} MiB free): the check \
             never writes to the store itself; give --scratch DIR on a filesystem with room",
            scratch.display(),
            needed.div_ceil(1 << 20) + 16,
            free >> 20
        ));
    }
    let copy = tempfile::Builder::new()
        .prefix("accord-store-check-")
        .tempdir_in(&scratch)
        .map_err(|e| {
            format!(
                "cannot make a scratch directory in {}: {e}",
                scratch.display()
            )
        })?;
    copy_tree(data_dir, copy.path())
        .map_err(|e| format!("copying the store into {}: {e}", copy.path().display()))?;
    Ok(copy)
}

fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut size = 0;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let meta = item.metadata()?;
        size += if meta.is_dir() {
            tree_size(&item.path())?
        } else {
            meta.len()
        };
    }
    Ok(size)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for item in std::fs::read_dir(from)? {
        let item = item?;
        let target = to.join(item.file_name());
        if item.file_type()?.is_dir() {
            copy_tree(&item.path(), &target)?;
        } else {
            std::fs::copy(item.path(), &target)?;
        }
    }
    Ok(())
}

/// Stands for the node's config file in the advice [`open_failure`] gives; `accord
/// node` replaces it with the path it was given.
pub const CONFIG_PLACEHOLDER: &str = "NODE.toml";

/// One line for a store that does not open or load, naming what was found and the
/// one command to run next. That command is always safe: `accord node --rebuild`
/// keeps the record of what this node signed, so the rebuilt node never signs a
/// seq it used (moving the directory aside by hand would lose that record).
pub fn open_failure(data_dir: &Path, error: &StoreError) -> String {
    let dir = data_dir.display();
    let what = error.to_string();
    if error.is_in_use() {
        return format!(
            "{dir}: the store is in use (a node is running on it); stop the node first"
        );
    }
    if let Some(e) = error.io_error() {
        return format!(
            "{dir}: the store cannot be opened: {e}. Fix the directory's disk or permissions, \
             then start the node again"
        );
    }
    if matches!(
        error,
        StoreError::NewerFormat { .. } | StoreError::WrongAlliance { .. }
    ) {
        return format!("{dir}: {what}");
    }
    format!(
        "{dir}: the store is damaged and cannot be read whole ({what}). Rebuild it from the \
         peers with `accord node --rebuild --config {CONFIG_PLACEHOLDER}`, which keeps the \
         record of what this node signed; with no peer left, restore a backup \
         (deploy/README.md, \"Damaged stores\")"
    )
}

/// Entries verified at a time.
const CHUNK: usize = 256;

fn scan(store: &Store, charter: &Charter, report: &mut StoreReport) {
    let max = charter.rules().max_entry_bytes as usize;
    let mut proofs = Vec::new();
    match store.forks() {
        Ok(forks) => {
            report.fork_proofs = forks.len();
            for (author, bytes) in forks {
                match crate::ledger::fork_proof_from_record(charter, author, &bytes) {
                    Ok(proof) => proofs.push(proof),
                    Err(e) => report
                        .damage
                        .push(format!("fork proof of {author} does not verify: {e}")),
                }
            }
        }
        Err(e) => report.damage.push(format!("fork proofs unreadable: {e}")),
    }
    // The key history of every log that rotated its key, to check the proofs by.
    let mut histories: BTreeMap<PublicId, Vec<(u64, PublicId)>> = BTreeMap::new();
    scan_entries(store, charter, max, report, &mut histories);
    for proof in proofs {
        check_fork_signers(&proof, &histories, max, report);
    }
}

/// A fork proof counts only if both its entries are signed by the key that signs
/// the author's log at the fork's seq (else a retired key could freeze the log):
/// checked once the log is read up to the seq before the fork.
fn check_fork_signers(
    proof: &accord_core::state::ForkProof,
    histories: &BTreeMap<PublicId, Vec<(u64, PublicId)>>,
    max: usize,
    report: &mut StoreReport,
) {
    let (author, seq) = (proof.author, proof.seq);
    let whole_to = report.logs.get(&author).map_or(0, |l| l.whole_to);
    if whole_to + 1 < seq {
        // The log before the fork is not all here: which key signs at the fork's seq
        // cannot be known (the missing entries are reported with the log).
        return;
    }
    let own = [(1, author)];
    let history = histories.get(&author).map_or(&own[..], Vec::as_slice);
    for bytes in [&proof.first, &proof.second] {
        let Ok(side) = entry::decode_bytes(bytes, max) else {
            continue;
        };
        let expected = entry::key_at(history, seq).unwrap_or(author);
        if side.signer() != expected {
            let why = entry::signer_error(author, seq, side.signer(), history);
            report.damage.push(format!(
                "fork proof of {author} at seq {seq} does not count: {why}"
            ));
            return;
        }
    }
}

fn scan_entries(
    store: &Store,
    charter: &Charter,
    max: usize,
    report: &mut StoreReport,
    histories: &mut BTreeMap<PublicId, Vec<(u64, PublicId)>>,
) {
    // The previous entry of the log being read: (author, seq, id, whole so far).
    let mut previous: Option<(PublicId, u64, EntryId, bool)> = None;
    // The keys of the log being read, oldest first, with the first seq each signs.
    let mut keys: Vec<(u64, PublicId)> = Vec::new();
    let mut chunk: Vec<DecodedEntry> = Vec::with_capacity(CHUNK);
    let mut entries = store.entries();
    loop {
        chunk.clear();
        let mut stop = false;
        for stored in entries.by_ref() {
            let stored = match stored {
                Ok(stored) => stored,
                Err(e) => {
                    report
                        .damage
                        .push(format!("reading stopped: an entry is unreadable: {e}"));
                    stop = true;
                    break;
                }
            };
            report.entries += 1;
            let log = report.logs.entry(stored.author).or_default();
            log.entries += 1;
            log.last_seq = log.last_seq.max(stored.seq);
            match entry::decode_bytes(&stored.bytes, max) {
                Ok(e) if e.author() == stored.author && e.seq() == stored.seq => chunk.push(e),
                Ok(e) => report.damage.push(format!(
                    "entry stored as {}/{} is {}/{}",
                    stored.author,
                    stored.seq,
                    e.author(),
                    e.seq()
                )),
                Err(e) => report
                    .damage
                    .push(format!("entry {}/{}: {e}", stored.author, stored.seq)),
            }
            if chunk.len() == CHUNK {
                break;
            }
        }
        let bad: Vec<usize> = match entry::verify_batch(&chunk) {
            Ok(_) => Vec::new(),
            Err(bad) => bad,
        };
        for (i, e) in chunk.iter().enumerate() {
            let (author, seq) = (e.author(), e.seq());
            let mut sound = true;
            if bad.contains(&i) {
                report
                    .damage
                    .push(format!("entry {author}/{seq}: signature does not verify"));
                sound = false;
            } else if let Err(err) = e.check_stored(charter) {
                report.damage.push(format!("entry {author}/{seq}: {err}"));
                sound = false;
            }
            let same = previous.filter(|(a, _, _, _)| *a == author);
            if same.is_none() {
                keys = vec![(1, author)];
            }
            let expected_key = entry::key_at(&keys, seq).unwrap_or(author);
            if sound && e.signer() != expected_key {
                let why = entry::signer_error(author, seq, e.signer(), &keys);
                report.damage.push(format!("entry {author}/{seq}: {why}"));
                sound = false;
            }
            if let Some(key) = e.rotates_to() {
                keys.push((seq + 1, key));
                histories.insert(author, keys.clone());
            }
            let expected_seq = same.map_or(1, |(_, s, _, _)| s + 1);
            let expected_prev = same.map(|(_, _, id, _)| id);
            if seq != expected_seq {
                report.damage.push(format!(
                    "log of {author}: seq {seq} follows seq {} (entries missing)",
                    expected_seq - 1
                ));
                sound = false;
            } else if e.prev() != expected_prev {
                report.damage.push(format!(
                    "log of {author}: entry {seq} does not link to entry {}",
                    seq - 1
                ));
                sound = false;
            }
            let whole = sound && same.is_none_or(|(_, _, _, w)| w);
            let log = report.logs.entry(author).or_default();
            if whole {
                log.whole_to = seq;
            }
            if e.check_body().is_err() {
                log.set_aside += 1;
            }
            previous = Some((author, seq, e.id(), whole));
        }
        if stop || chunk.len() < CHUNK {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use accord_core::Identity;
    use accord_core::entry::{self, LogHead};
    use accord_core::pb::{self, EntryKind};
    use accord_core::state::ForkProof;
    use accord_store::{Store, StoredEntry};
    use prost::Message;

    use super::check_data_dir;

    /// A fork proof whose two sides are signed by a key the log had retired before
    /// the fork's seq does not count (a leaked retired key cannot freeze the log):
    /// `accord store check` reports it as damage; one signed by the current key is
    /// sound.
    #[tokio::test]
    async fn a_fork_proof_signed_by_a_retired_key_is_damage() {
        let old = Identity::from_seed([1; 32]);
        let new = Identity::from_seed([2; 32]).signing_for(old.public_id());
        let charter = crate::test_support::one_member_charter("Check Alliance", &old);
        let sign = |who: &Identity, head: Option<&LogHead>, kind: EntryKind, body: Vec<u8>| {
            let signed = entry::sign_seeing(who, charter.id(), head, 1_000, kind as i32, body, &[]);
            entry::decode(signed, 1 << 20).unwrap()
        };
        let head = |e: &entry::DecodedEntry| LogHead {
            seq: e.seq(),
            id: e.id(),
            timestamp_ms: 1_000,
        };
        let statement = |text: &str| {
            pb::Statement {
                title: text.into(),
                text: text.into(),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let one = sign(&old, None, EntryKind::Statement, statement("one"));
        let rotation = pb::KeyRotation {
            key: new.key_id().to_vec(),
        };
        let two = sign(
            &old,
            Some(&head(&one)),
            EntryKind::KeyRotation,
            rotation.encode_to_vec(),
        );
        for (signer, sound) in [(&old, false), (&new, true)] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), charter.id(), 1 << 24).unwrap();
            let stored = |e: &entry::DecodedEntry| StoredEntry {
                author: e.author(),
                seq: e.seq(),
                bytes: e.to_bytes(),
            };
            store.append(&[stored(&one), stored(&two)]).unwrap();
            let a = sign(
                signer,
                Some(&head(&two)),
                EntryKind::Statement,
                statement("a"),
            );
            let b = sign(
                signer,
                Some(&head(&two)),
                EntryKind::Statement,
                statement("b"),
            );
            let proof = ForkProof::verify(&charter, &a.to_bytes(), &b.to_bytes()).unwrap();
            store
                .put_fork(&proof.author, &crate::ledger::fork_proof_record(&proof))
                .unwrap();
            drop(store);
            let report = check_data_dir(dir.path(), &charter, &[], None)
                .await
                .unwrap();
            assert_eq!(report.fork_proofs, 1);
            if sound {
                assert!(report.is_sound(), "{:?}", report.damage);
            } else {
                // The node refuses the store, and the scan names the proof.
                assert_eq!(report.node_would, super::Verdict::Refuse);
                assert_eq!(report.damage.len(), 2, "{:?}", report.damage);
                assert!(
                    report.damage[1].starts_with("fork proof of")
                        && report.damage[1].contains("retired"),
                    "{:?}",
                    report.damage
                );
            }
        }
    }
}
