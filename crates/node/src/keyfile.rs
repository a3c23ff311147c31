//! Home identities' key files across key rotations.
//!
//! The path a node's config names (`identities = ["keys/org.pem"]`) always holds the
//! key that signs now. A rotation of that identity at seq N goes:
//!
//! 1. the new key is written to `org.pem.next` (mode 0600, synced, directory synced),
//!    so it is on disk before anything signed names it;
//! 2. the rotation entry (seq N) is signed by the old key and made durable;
//! 3. the old key is copied to `org.pem.retired-N` (synced), then `org.pem.next` is
//!    renamed over `org.pem` and the directory synced.
//!
//! The organisation keeps its identity, its first key: when `org.pem.retired-*`
//! files exist, the one with the lowest N holds it, and the key in `org.pem` signs
//! for it ([`load`]). A crash between 2 and 3 leaves the log naming the key in
//! `org.pem.next`: [`settle`] finishes step 3 when the node starts. A crash before 2
//! leaves an `org.pem.next` that no entry names; it is moved aside (never deleted)
//! by the next rotation.

use std::io::Write;
use std::path::{Path, PathBuf};

use accord_core::Identity;
use accord_core::entry::Logs;

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where a rotation writes the new key before signing.
pub fn next_path(path: &Path) -> PathBuf {
    with_suffix(path, ".next")
}

/// Where the key that signed up to seq `seq` is kept once retired.
pub fn retired_path(path: &Path, seq: u64) -> PathBuf {
    with_suffix(path, &format!(".retired-{seq}"))
}

fn read_key(path: &Path) -> Result<Identity, String> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    Identity::from_pem(&pem).map_err(|e| format!("key {}: {e}", path.display()))
}

/// The retired keys beside `path`, by the last seq each signed, lowest first.
pub fn retired(path: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.retired-");
    let mut found = Vec::new();
    let listing =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for item in listing.flatten() {
        let file = item.file_name();
        let Some(seq) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((seq, item.path()));
    }
    found.sort();
    Ok(found)
}

/// Reads a home identity's key file: the key in it, signing for the organisation
/// whose first key is the oldest retired key beside it (if any).
pub fn load(path: &Path) -> Result<Identity, String> {
    let key = read_key(path)?;
    match retired(path)?.first() {
        Some((_, first)) => {
            let author = read_key(first)?.public_id();
            Ok(key.signing_for(author))
        }
        None => Ok(key),
    }
}

/// Writes `contents` to `path` (mode 0600) and syncs it and its directory.
fn write_synced(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => std::fs::File::open(d)?.sync_all(),
        _ => std::fs::File::open(".")?.sync_all(),
    }
}

/// Step 1: writes the new key to `path.next`, durably. A `.next` left by a rotation
/// that never signed is moved aside first, not overwritten.
pub fn write_next(path: &Path, key: &Identity) -> std::io::Result<()> {
    let next = next_path(path);
    if next.exists() {
        let ms = chrono::Utc::now().timestamp_millis();
        std::fs::rename(&next, with_suffix(path, &format!(".unused-{ms}")))?;
    }
    write_synced(&next, key.to_pem().as_bytes())
}

/// Step 3: keeps the old key as `path.retired-SEQ` and puts the new one in its place.
pub fn retire(path: &Path, seq: u64) -> std::io::Result<()> {
    let old = std::fs::read(path)?;
    write_synced(&retired_path(path, seq), &old)?;
    std::fs::rename(next_path(path), path)?;
    sync_dir(path)
}

/// At start: makes `identity` (read from `path`) the key that signs its log now by
/// the entries held. Finishes a rotation cut short after its entry was durable
/// (step 3 above). Returns a warning when the key file holds a key the log does not
/// sign with (publishing as it is then refused with the reason).
pub fn settle(
    path: &Path,
    identity: &mut Identity,
    logs: &impl Logs,
) -> Result<Option<String>, String> {
    let author = identity.public_id();
    let next_seq = logs.head(&author).map_or(1, |h| h.seq + 1);
    let current = logs.signing_key(&author, next_seq);
    if identity.key_id() == current {
        return Ok(None);
    }
    let next = next_path(path);
    if next.exists() {
        let candidate = read_key(&next)?;
        if candidate.key_id() == current {
            let history = logs.key_history(&author);
            let from = history
                .iter()
                .find(|(_, k)| *k == current)
                .map_or(1, |(from, _)| *from);
            retire(path, from.saturating_sub(1)).map_err(|e| {
                format!(
                    "cannot finish the key rotation of {author} ({}): {e}",
                    path.display()
                )
            })?;
            *identity = candidate.signing_for(author);
            return Ok(Some(format!(
                "finished the key rotation of {author} cut short at seq {}: {} now holds key \
                 {current}",
                from.saturating_sub(1),
                path.display()
            )));
        }
    }
    Ok(Some(format!(
        "key file {} holds {}, but {author}'s log is signed by {current} from seq {next_seq}: \
         publishing as it will be refused until the config names the current key",
        path.display(),
        identity.key_id()
    )))
}

#[cfg(test)]
mod tests {
    use accord_core::entry::{self, SignatureChecked};
    use accord_core::{Charter, State, pb};

    use super::*;

    fn charter(member: &Identity) -> Charter {
        crate::test_support::one_member_charter("Key Alliance", member)
    }

    /// The node stopped after the rotation entry was durable (step 2) and before
    /// the key files moved (step 3): at start the log names the key in `.next`, and
    /// `settle` finishes the move, so the node signs as the new key.
    #[test]
    fn a_rotation_cut_short_after_its_entry_is_finished_at_start() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("org.pem");
        let old = Identity::from_seed([1; 32]);
        let org = old.public_id();
        let new = Identity::from_seed([2; 32]).signing_for(org);
        std::fs::write(&path, old.to_pem()).expect("key written");
        let charter = charter(&old);
        let mut state = State::new(charter.clone());
        let body = prost::Message::encode_to_vec(&pb::KeyRotation {
            key: new.key_id().to_vec(),
        });
        let kind = pb::EntryKind::KeyRotation as i32;
        let signed = entry::sign(&old, charter.id(), None, 1_000, kind, body);
        let decoded = entry::decode(signed, 1 << 16).expect("decodes");
        let checked = SignatureChecked::single(&decoded).expect("signed");
        let rotation = decoded
            .accept(&charter, &state, 1_000, checked)
            .expect("accepted");
        state.apply(&rotation);

        write_next(&path, &new).expect("step 1");
        let mut identity = load(&path).expect("loads");
        assert_eq!(identity.key_id(), org, "step 3 not done: the old key");
        let note = settle(&path, &mut identity, &state).expect("settles");
        assert!(note.is_some_and(|n| n.contains("finished")));
        assert_eq!(
            (identity.public_id(), identity.key_id()),
            (org, new.key_id())
        );
        let reloaded = load(&path).expect("loads");
        assert_eq!(
            (reloaded.public_id(), reloaded.key_id()),
            (org, new.key_id())
        );
        assert!(!next_path(&path).exists());
        let kept = read_key(&retired_path(&path, 1)).expect("old key kept");
        assert_eq!(kept.key_id(), org);
        assert_eq!(settle(&path, &mut identity, &state).expect("settled"), None);

        // A `.next` that no entry names is moved aside by the next rotation, never
        // overwritten.
        write_next(&path, &Identity::from_seed([3; 32])).expect("written");
        write_next(&path, &Identity::from_seed([4; 32])).expect("written");
        let unused = std::fs::read_dir(dir.path())
            .expect("lists")
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().contains(".unused-"))
            .count();
        assert_eq!(unused, 1);
    }
}
