//! `accord store check`: reads a stopped node's store end to end and reports what it
//! holds and every kind of damage it finds, instead of stopping at the first problem
//! as a node's start-up does. Every stored entry is decoded, its signature verified
//! (in batches), its envelope checked against the charter and its link to the
//! previous entry of its log followed; fork proofs are verified too.
//!
//! sled can panic on some damage (a page it cannot deserialise) rather than return
//! an error: the whole read runs under `catch_unwind`, and a panic becomes one line
//! of damage.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use accord_core::entry::{self, DecodedEntry};
use accord_core::{Charter, EntryId, PublicId};
use accord_store::Store;

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

/// The result of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreReport {
    pub entries: u64,
    pub logs: BTreeMap<PublicId, LogReport>,
    pub fork_proofs: usize,
    /// One line per problem found; empty when the store is sound.
    pub damage: Vec<String>,
}

impl StoreReport {
    pub fn is_sound(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Opens the store in `data_dir` for `charter`'s alliance and checks it. An error is
/// a store that cannot be opened at all (damaged beyond reading, in use by a running
/// node, for another alliance), said in one line.
pub fn check_store(data_dir: &Path, charter: &Charter) -> Result<StoreReport, String> {
    if !data_dir.join("db").exists() {
        return Err(format!(
            "{}: no store here (no sled `db` file)",
            data_dir.display()
        ));
    }
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Store::open(data_dir, charter.id(), 1 << 24)
    }));
    let store = match opened {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => return Err(open_failure(data_dir, &e.to_string())),
        Err(panic) => {
            return Err(open_failure(
                data_dir,
                &format!("the storage engine panicked: {}", panic_text(&panic)),
            ));
        }
    };
    let mut report = StoreReport::default();
    let scanned = catch_unwind(AssertUnwindSafe(|| scan(&store, charter, &mut report)));
    if let Err(panic) = scanned {
        report.damage.push(format!(
            "reading stopped: the storage engine panicked: {}",
            panic_text(&panic)
        ));
    }
    Ok(report)
}

/// One line for a store that does not open, with what to do.
pub fn open_failure(data_dir: &Path, what: &str) -> String {
    if what.contains("could not acquire lock") {
        return format!(
            "{}: the store is in use (a node is running on it); stop the node first",
            data_dir.display()
        );
    }
    if what.contains("written by a newer release") {
        return format!("{}: {what}", data_dir.display());
    }
    format!(
        "{}: the store does not open: {what}. If the disk or the files are damaged, run \
         `accord store check --config NODE.toml`; to rebuild the store from the peers, move \
         the data directory aside and start the node (deploy/README.md, \"Damaged stores\")",
        data_dir.display()
    )
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "no message".into())
}

/// Entries verified at a time.
const CHUNK: usize = 256;

fn scan(store: &Store, charter: &Charter, report: &mut StoreReport) {
    let max = charter.rules().max_entry_bytes as usize;
    match store.forks() {
        Ok(forks) => {
            report.fork_proofs = forks.len();
            for (author, bytes) in forks {
                if let Err(e) = crate::ledger::fork_proof_from_record(charter, author, &bytes) {
                    report
                        .damage
                        .push(format!("fork proof of {author} does not verify: {e}"));
                }
            }
        }
        Err(e) => report.damage.push(format!("fork proofs unreadable: {e}")),
    }
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
