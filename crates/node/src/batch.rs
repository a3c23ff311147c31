//! The writer's decisions, without I/O: what a batch of requests accepts, refuses
//! and proves, and the state once the batch is durable.
//!
//! The writer (`ledger.rs`) drives these over sled and tokio; the deterministic
//! simulation (`crates/sim`) drives the same functions over an in-memory store and a
//! simulated clock, so each rule has one implementation. Nothing here reads a clock,
//! spawns a task or touches a disk: the time comes in as `now`, and the one read of
//! the store (the stored side of a fork) is a function the caller passes.

use std::collections::HashMap;

use accord_core::entry::{self, DecodedEntry, Logs, SignatureChecked};
use accord_core::state::ForkProof;
use accord_core::{EntryError, EntryId, Identity, LogHead, PublicId, State, VerifiedEntry};

/// What an acknowledged append returns.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub id: EntryId,
    pub author: PublicId,
    pub seq: u64,
}

/// One request to the writer.
#[derive(Debug)]
pub enum Request {
    /// Sign as a home identity (by index) and append.
    Publish {
        identity: usize,
        kind: i32,
        body: Vec<u8>,
    },
    /// Append an entry signed elsewhere whose signature the caller checked.
    Submit {
        entry: Box<DecodedEntry>,
        checked: SignatureChecked,
    },
    /// Append entries from a peer, each on its own merits, in the order given.
    Ingest {
        entries: Vec<DecodedEntry>,
        checked: SignatureChecked,
    },
    /// Record fork proofs (already verified).
    Forks(Vec<ForkProof>),
    /// Sign a key rotation as a home identity (by index) with its current key, and
    /// sign as `key` from then on. The caller has made `key` durable.
    Rotate { identity: usize, key: Box<Identity> },
}

/// What became of a batch of entries from a peer.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub accepted: usize,
    /// Entries already held (replays are normal between peers).
    pub known: usize,
    /// Entries refused, with why, in the order given.
    pub refused: Vec<(PublicId, u64, EntryError)>,
    pub forks: usize,
}

/// The answer to one request, in request order.
#[derive(Debug)]
pub enum Outcome {
    One(Result<Ack, EntryError>),
    Many(IngestReport),
}

/// What one batch of requests comes to, before anything is written.
#[derive(Debug, Default)]
pub struct Plan {
    /// The entries to append, in the order accepted.
    pub accepted: Vec<VerifiedEntry>,
    /// Parallel to `accepted`: from a client (true) or a peer (false).
    pub first_here: Vec<bool>,
    /// Fork proofs found or received, at most one per author.
    pub forks: Vec<ForkProof>,
    /// One per request, in order.
    pub outcomes: Vec<Outcome>,
}

impl Plan {
    /// Whether anything is to be written.
    pub fn writes(&self) -> bool {
        !self.accepted.is_empty() || !self.forks.is_empty()
    }
}

/// Checks every request of a batch against `state` plus the entries accepted
/// earlier in the batch. `identities` are the home identities' current keys (a
/// rotation in the batch replaces one). `stored(author, seq)` reads the entry the
/// store holds there, for fork proofs.
pub fn plan<E: std::fmt::Display>(
    state: &State,
    identities: &mut [Identity],
    requests: impl IntoIterator<Item = Request>,
    now: i64,
    stored: impl Fn(&PublicId, u64) -> Result<Option<Vec<u8>>, E>,
) -> Plan {
    let charter = state.charter();
    let max = charter.rules().max_entry_bytes as usize;
    let mut plan = Plan::default();
    let mut overlay = Overlay {
        state,
        heads: HashMap::new(),
        keys: HashMap::new(),
        frozen: HashMap::new(),
        known: None,
    };
    for request in requests {
        let outcome = match request {
            Request::Publish {
                identity,
                kind,
                body,
            } => {
                let identity = &identities[identity];
                let head = overlay.head(&identity.public_id());
                // What this node holds is what the author has seen.
                let seen = state.seen_since(&identity.public_id());
                let signed = entry::sign_seeing(
                    identity,
                    charter.id(),
                    head.as_ref(),
                    now,
                    kind,
                    body,
                    &seen,
                );
                let result = entry::sign_decoded(signed, max).and_then(|(decoded, checked)| {
                    decoded.accept_new(charter, &overlay, now, checked)
                });
                let taken = take(result, &mut overlay, &mut plan.accepted);
                plan.first_here.resize(plan.accepted.len(), true);
                Outcome::One(taken)
            }
            Request::Submit { entry, checked } => {
                // A new entry: its body must meet this release's rules.
                let result = entry
                    .check_standing(overlay.roster())
                    .and_then(|()| entry.check_new_rules(overlay.roster()))
                    .and_then(|_| offer(*entry, checked, now, &mut overlay, &mut plan, &stored));
                let taken = take(result, &mut overlay, &mut plan.accepted);
                plan.first_here.resize(plan.accepted.len(), true);
                Outcome::One(taken)
            }
            Request::Ingest { entries, checked } => {
                let mut report = IngestReport::default();
                for entry in entries {
                    let (author, seq) = (entry.author(), entry.seq());
                    let result = offer(entry, checked, now, &mut overlay, &mut plan, &stored);
                    match take(result, &mut overlay, &mut plan.accepted) {
                        Ok(_) => report.accepted += 1,
                        Err(EntryError::Duplicate { .. }) => report.known += 1,
                        Err(e) => report.refused.push((author, seq, e)),
                    }
                }
                plan.first_here.resize(plan.accepted.len(), false);
                Outcome::Many(report)
            }
            Request::Rotate { identity, key } => {
                let signing = &identities[identity];
                let head = overlay.head(&signing.public_id());
                let body = accord_core::pb::KeyRotation {
                    key: key.key_id().to_vec(),
                };
                let signed = entry::sign_seeing(
                    signing,
                    charter.id(),
                    head.as_ref(),
                    now,
                    accord_core::pb::EntryKind::KeyRotation as i32,
                    prost::Message::encode_to_vec(&body),
                    &state.seen_since(&signing.public_id()),
                );
                let result = entry::sign_decoded(signed, max).and_then(|(decoded, checked)| {
                    decoded.accept_new(charter, &overlay, now, checked)
                });
                let taken = take(result, &mut overlay, &mut plan.accepted);
                plan.first_here.resize(plan.accepted.len(), true);
                if taken.is_ok() {
                    // Later entries of this batch already sign with it.
                    identities[identity] = *key;
                }
                Outcome::One(taken)
            }
            Request::Forks(proofs) => {
                let mut report = IngestReport::default();
                for proof in proofs {
                    // A proof about a key neither the charter nor any proposal names
                    // is not this alliance's business (yet): peers offer proofs in
                    // every Sync, so it is taken once the proposal naming its author
                    // has arrived.
                    if overlay.known_roles(&proof.author).is_none() {
                        continue;
                    }
                    // Only the key of the log at the fork's seq can fork it.
                    if let Err(e) = proof.check_signers(&overlay, max) {
                        tracing::warn!("refused a fork proof: {e}");
                        continue;
                    }
                    if overlay.add_fork(&mut plan.forks, proof) {
                        report.forks += 1;
                    }
                }
                Outcome::Many(report)
            }
        };
        plan.outcomes.push(outcome);
    }
    plan
}

/// The state once `plan` is durable: `state` (a clone shares every node with the
/// published one) with the accepted entries and fork proofs applied. The flag is set
/// when entries already applied stopped counting (a fork proof, or a governance
/// entry that changed what counts): the caller must rebuild the state from the
/// store ([`rebuild`]).
pub fn apply(mut state: State, plan: &Plan) -> (State, bool) {
    let mut rebuild = false;
    for entry in &plan.accepted {
        state.apply(entry);
    }
    for proof in &plan.forks {
        tracing::warn!(author = %proof.author, seq = proof.seq, "fork proof recorded; the author's log is frozen");
        rebuild |= state.record_fork(proof.clone());
    }
    // A governance entry that changed what counts for entries already applied (a
    // removal, an admission of an author whose entries were held) needs the views
    // rebuilt too.
    rebuild |= state.views_stale();
    (state, rebuild)
}

/// Why a rebuilt state cannot stand: it holds entries of an author whom neither
/// the charter nor any proposal names.
pub fn check_known(state: &State) -> Result<(), String> {
    match state.unknown_authors().first() {
        Some(author) => Err(format!(
            "the store holds entries of {author}, whom neither the charter nor any proposal names"
        )),
        None => Ok(()),
    }
}

/// The state of a store's entries and fork proofs, as the node rebuilds it after a
/// fork proof (and loads it at start): see [`check_known`].
pub fn rebuild<'a>(
    charter: accord_core::Charter,
    forks: impl IntoIterator<Item = ForkProof>,
    entries: impl IntoIterator<Item = &'a VerifiedEntry>,
) -> Result<State, String> {
    let state = State::from_entries_and_forks(charter, forks, entries);
    check_known(&state)?;
    Ok(state)
}

/// The state's logs plus the heads of entries accepted earlier in this batch.
struct Overlay<'a> {
    state: &'a State,
    heads: HashMap<PublicId, (LogHead, Vec<EntryId>)>,
    /// Key rotations accepted in this batch: (first seq the key signs, key).
    keys: HashMap<PublicId, Vec<(u64, PublicId)>>,
    /// Authors frozen by fork proofs found in this batch, with the fork's seq.
    frozen: HashMap<PublicId, u64>,
    /// The known keys with what proposals earlier in this batch name (None: none
    /// did), so an entry of an organisation admitted in the same batch is taken.
    known: Option<accord_core::roster::Known>,
}

impl Logs for Overlay<'_> {
    fn head(&self, author: &PublicId) -> Option<LogHead> {
        match self.heads.get(author) {
            Some((head, _)) => Some(*head),
            None => self.state.head(author),
        }
    }

    fn id_at(&self, author: &PublicId, seq: u64) -> Option<EntryId> {
        if let Some(id) = self.state.id_at(author, seq) {
            return Some(id);
        }
        let (head, ids) = self.heads.get(author)?;
        let first = head.seq + 1 - ids.len() as u64;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        ids.get(index).copied()
    }

    fn frozen_from(&self, author: &PublicId) -> Option<u64> {
        let here = self.frozen.get(author).copied();
        match (self.state.frozen_from(author), here) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // The roster is the state's before this batch (new entries must fit the roster
    // as it was); the known keys include what proposals earlier in the batch name.
    fn roster(&self) -> &accord_core::roster::Roster {
        self.state.roster()
    }

    fn known_roles(&self, key: &PublicId) -> Option<accord_core::roster::RoleSet> {
        match &self.known {
            Some(known) => known.roles(key),
            None => self.state.known_roles(key),
        }
    }

    fn signing_key(&self, author: &PublicId, seq: u64) -> PublicId {
        self.keys
            .get(author)
            .and_then(|keys| entry::key_at(keys, seq))
            .unwrap_or_else(|| self.state.signing_key(author, seq))
    }

    fn key_history(&self, author: &PublicId) -> Vec<(u64, PublicId)> {
        let mut keys = self.state.key_history(author);
        keys.extend(self.keys.get(author).into_iter().flatten().copied());
        keys
    }
}

impl Overlay<'_> {
    /// Adds a fork proof found or received in this batch, unless the state or the
    /// batch already holds one that ranks as low: of several proofs about one author
    /// the lowest is kept, within a batch as across batches.
    fn add_fork(&mut self, forks: &mut Vec<ForkProof>, proof: ForkProof) -> bool {
        if !self.state.fork_is_news(&proof) {
            return false;
        }
        match forks.iter_mut().find(|f| f.author == proof.author) {
            Some(old) if !proof.outranks(old) => return false,
            Some(old) => *old = proof.clone(),
            None => forks.push(proof.clone()),
        }
        let seq = self.frozen.entry(proof.author).or_insert(proof.seq);
        *seq = (*seq).min(proof.seq);
        true
    }

    fn push(&mut self, entry: &VerifiedEntry) {
        let slot = self
            .heads
            .entry(entry.author())
            .or_insert_with(|| (entry.head(), Vec::new()));
        slot.0 = entry.head();
        slot.1.push(entry.id());
        if let Ok(body) = entry.body()
            && let Some(accord_core::roster::Action::Propose(proposal)) = body.governance()
        {
            let state = self.state;
            self.known
                .get_or_insert_with(|| state.known().clone())
                .learn(&entry.author(), &proposal);
        }
        if let Some(key) = entry.rotates_to() {
            self.keys
                .entry(entry.author())
                .or_default()
                .push((entry.seq() + 1, key));
        }
    }
}

/// Records an accepted entry in the overlay and the batch.
fn take(
    result: Result<VerifiedEntry, EntryError>,
    overlay: &mut Overlay<'_>,
    accepted: &mut Vec<VerifiedEntry>,
) -> Result<Ack, EntryError> {
    let entry = result?;
    overlay.push(&entry);
    let ack = Ack {
        id: entry.id(),
        author: entry.author(),
        seq: entry.seq(),
    };
    accepted.push(entry);
    Ok(ack)
}

/// Applies the acceptance rules to an entry signed elsewhere; a fork becomes a fork
/// proof.
fn offer<E: std::fmt::Display>(
    entry: DecodedEntry,
    checked: SignatureChecked,
    now: i64,
    overlay: &mut Overlay<'_>,
    plan: &mut Plan,
    stored: &impl Fn(&PublicId, u64) -> Result<Option<Vec<u8>>, E>,
) -> Result<VerifiedEntry, EntryError> {
    let candidate = entry.clone();
    let charter = overlay.state.charter();
    let result = entry.accept(charter, &*overlay, now, checked);
    if let Err(EntryError::Fork { seq, .. }) = &result {
        match fork_proof(overlay, &candidate, *seq, &plan.accepted, stored) {
            Ok(Some(proof)) => {
                overlay.add_fork(&mut plan.forks, proof);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot build fork proof: {e}"),
        }
    }
    result
}

/// The proof that `candidate` forks the author's log at `seq`: the first entry is
/// stored, or was accepted earlier in this batch (both sides of a fork can arrive
/// together: a peer's one message, or two sessions within the writer's wait).
/// None when a proof as low already freezes the log there.
fn fork_proof<E>(
    overlay: &Overlay<'_>,
    candidate: &DecodedEntry,
    seq: u64,
    accepted: &[VerifiedEntry],
    stored: &impl Fn(&PublicId, u64) -> Result<Option<Vec<u8>>, E>,
) -> Result<Option<ForkProof>, E> {
    let author = candidate.author();
    if overlay.frozen_from(&author).is_some_and(|from| from <= seq) {
        return Ok(None);
    }
    let in_batch = accepted
        .iter()
        .rev()
        .find(|e| e.author() == author && e.seq() == seq)
        .map(|e| (e.id(), e.to_bytes()));
    let (first_id, first) = match in_batch {
        Some(found) => found,
        None => {
            let Some(bytes) = stored(&author, seq)? else {
                return Ok(None);
            };
            let Some(id) = overlay.id_at(&author, seq) else {
                return Ok(None);
            };
            (id, bytes)
        }
    };
    if first_id == candidate.id() {
        return Ok(None);
    }
    let mut pair = [(first_id, first), (candidate.id(), candidate.to_bytes())];
    pair.sort_by_key(|(id, _)| *id);
    let [(_, first), (_, second)] = pair;
    Ok(Some(ForkProof {
        author,
        seq,
        first,
        second,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
    use accord_core::{Charter, pb};
    use prost::Message;

    use super::*;

    /// A charter of one member (`ids[0]`) and one secretary (`ids[1]`).
    pub(crate) fn charter(ids: &[Identity]) -> Charter {
        let doc = CharterDoc {
            accord_charter: 1,
            name: "Batch".into(),
            members: vec![CharterMember {
                name: "Member".into(),
                key: ids[0].public_id(),
                ec_id: None,
            }],
            secretaries: vec![CharterSecretary {
                name: "Sec".into(),
                key: ids[1].public_id(),
            }],
            rules: Rules::default(),
        };
        Charter::from_bytes(doc.to_file_bytes()).unwrap()
    }

    fn statement(signer: &Identity, charter: &Charter, title: &str) -> DecodedEntry {
        let body = pb::Statement {
            title: title.into(),
            text: "t".into(),
            cosigners: vec![],
        };
        let signed = entry::sign_seeing(
            signer,
            charter.id(),
            None,
            1_800_000_000_000,
            pb::EntryKind::Statement as i32,
            body.encode_to_vec(),
            &[],
        );
        entry::decode(signed, 1 << 20).unwrap()
    }

    /// Issue 22, defect 3: both sides of a fork in one batch (one peer message)
    /// keep their proof; the first side is taken, the second refused as a fork.
    #[test]
    fn both_sides_of_a_fork_in_one_batch_keep_their_proof() {
        let ids: Vec<Identity> = (1..=2u8).map(|n| Identity::from_seed([n; 32])).collect();
        let charter = charter(&ids);
        let state = State::new(charter.clone());
        let a = statement(&ids[0], &charter, "side A");
        let b = statement(&ids[0], &charter, "side B");
        let entries = vec![a.clone(), b.clone()];
        let checked = entry::verify_batch(&entries).unwrap();
        let plan = plan(
            &state,
            &mut [],
            [Request::Ingest { entries, checked }],
            1_800_000_000_000,
            |_, _| Ok::<_, String>(None),
        );
        assert_eq!(plan.accepted.len(), 1);
        assert_eq!(plan.forks.len(), 1, "the proof is kept");
        let proof = &plan.forks[0];
        assert_eq!((proof.author, proof.seq), (ids[0].public_id(), 1));
        assert!(
            accord_core::state::ForkProof::verify(&charter, &proof.first, &proof.second).is_ok()
        );
        let (_, stale) = apply(state, &plan);
        assert!(
            stale,
            "the accepted side stops counting: the writer rebuilds"
        );
        let rebuilt = rebuild(charter.clone(), plan.forks.clone(), plan.accepted.iter()).unwrap();
        assert!(rebuilt.frozen().any(|f| f.author == ids[0].public_id()));
        assert!(
            rebuilt.head(&ids[0].public_id()).is_none(),
            "nothing from the fork on"
        );
        let Outcome::Many(report) = &plan.outcomes[0] else {
            panic!("an ingest report");
        };
        assert_eq!((report.accepted, report.refused.len()), (1, 1));
    }
}
