//! `accord store check`: reads a stopped node's store end to end and reports what it
//! holds and every kind of damage it finds, instead of stopping at the first problem
//! as a node's start-up does. Every stored entry is decoded, its signature verified
//! (in batches), its envelope checked against the charter and its link to the
//! previous entry of its log followed; fork proofs are verified too, each side
//! against the key that signs its log at the fork's seq.
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

    use super::check_store;

    /// A fork proof whose two sides are signed by a key the log had retired before
    /// the fork's seq does not count (a leaked retired key cannot freeze the log):
    /// `accord store check` reports it as damage; one signed by the current key is
    /// sound.
    #[test]
    fn a_fork_proof_signed_by_a_retired_key_is_damage() {
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
            let report = check_store(dir.path(), &charter).unwrap();
            assert_eq!(report.fork_proofs, 1);
            if sound {
                assert!(report.is_sound(), "{:?}", report.damage);
            } else {
                assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
                assert!(
                    report.damage[0].starts_with("fork proof of")
                        && report.damage[0].contains("retired"),
                    "{:?}",
                    report.damage
                );
            }
        }
    }
}
