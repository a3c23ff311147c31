//! The derived state's cost for a large alliance: time to apply N entries, the
//! process's memory once they are applied, the digest's time, and what one
//! publish-sized batch costs on a clone (as the node's writer does it).
//!
//! `cargo run --release -p accord-core --example state_memory` (N from
//! `ACCORD_STATE_ENTRIES`, default 1,000,000). The entry mix is the federation
//! benchmark's: 70% intentions on 3,000 ballots, 25% event updates (100 events per
//! author), 5% statements, over 20 authors.

use std::time::Instant;

use accord_core::charter::{CharterDoc, CharterMember, Rules};
use accord_core::entry::{self, LogHead, SignatureChecked};
use accord_core::{Charter, Identity, State, VerifiedEntry, pb};
use prost::Message;

fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let n: usize = std::env::var("ACCORD_STATE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let authors: Vec<Identity> = (0..20u8)
        .map(|a| Identity::from_seed([a + 1; 32]))
        .collect();
    let doc = CharterDoc {
        accord_charter: 1,
        name: "Memory Alliance".into(),
        members: authors
            .iter()
            .enumerate()
            .map(|(i, id)| CharterMember {
                name: format!("Party {i}"),
                key: id.public_id(),
                ec_id: None,
            })
            .collect(),
        secretaries: vec![],
        rules: Rules::default(),
    };
    let charter = Charter::from_bytes(doc.to_file_bytes()).expect("charter");
    let councils = ["leeds", "manchester", "bristol", "sheffield", "liverpool"];
    // A fixed clock: the same N gives the same entries and so the same digest.
    let base = 1_790_000_000_000_i64;
    let signed_at = Instant::now();
    // Entries are signed and held as encoded bytes, as a store holds them; each is
    // decoded just before it is applied, so the process's memory is the state's.
    let logs: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = authors
            .iter()
            .enumerate()
            .map(|(a, id)| {
                let alliance = charter.id();
                let count = n / authors.len() + usize::from(a < n % authors.len());
                scope.spawn(move || {
                    let mut head: Option<LogHead> = None;
                    let mut out = Vec::with_capacity(count);
                    for i in 0..count {
                        let (kind, body) = match i % 20 {
                            0..=13 => {
                                let intention = pb::Intention {
                                    ballot: format!(
                                        "local.{}.ward-{}.2027-05-06",
                                        councils[(i * 7 + a) % councils.len()],
                                        (i * 31 + a * 7) % 600
                                    ),
                                    status: [
                                        pb::IntentionStatus::Considering,
                                        pb::IntentionStatus::Intends,
                                        pb::IntentionStatus::Withdrawn,
                                    ][i % 3] as i32,
                                    ..Default::default()
                                };
                                (pb::EntryKind::Intention, intention.encode_to_vec())
                            }
                            14..=18 => {
                                let day = i % 28 + 1;
                                let event = pb::Event {
                                    uid: format!("event-{}", i % 100),
                                    title: format!("Canvass {i}"),
                                    start: format!("2027-03-{day:02}T19:00"),
                                    end: format!("2027-03-{day:02}T21:00"),
                                    venue: format!("Hall {}", i % 50),
                                    visibility: pb::Visibility::Public as i32,
                                    ..Default::default()
                                };
                                (pb::EntryKind::Event, event.encode_to_vec())
                            }
                            _ => {
                                let statement = pb::Statement {
                                    title: format!("Statement {i}"),
                                    text: "We stand together for one progressive candidate \
                                           in every ward."
                                        .into(),
                                    cosigners: vec![],
                                };
                                (pb::EntryKind::Statement, statement.encode_to_vec())
                            }
                        };
                        let ts = base + i as i64;
                        let signed =
                            entry::sign(id, alliance, head.as_ref(), ts, kind as i32, body);
                        let decoded = entry::decode(signed.clone(), 1 << 16).expect("decodes");
                        head = Some(LogHead {
                            seq: decoded.seq(),
                            id: decoded.id(),
                            timestamp_ms: ts,
                        });
                        out.push(signed.encode_to_vec());
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signer"))
            .collect()
    });
    let held = logs.iter().flatten().map(Vec::len).sum::<usize>() as f64 / 1e6;
    println!(
        "signed {n} entries in {:.1}s ({held:.0} MB of encoded entries held)",
        signed_at.elapsed().as_secs_f64()
    );
    let reload = |bytes: &[u8]| -> VerifiedEntry {
        let signed = pb::SignedEntry::decode(bytes).expect("decodes");
        let decoded = entry::decode(signed, 1 << 16).expect("decodes");
        VerifiedEntry::reload(
            decoded,
            &charter,
            SignatureChecked::verified_earlier_in_this_store(),
        )
        .expect("valid")
    };
    let before = rss_mb("VmRSS:");
    let start = Instant::now();
    let mut state = State::new(charter.clone());
    let mut apply_time = std::time::Duration::ZERO;
    for log in &logs {
        for bytes in log {
            let e = reload(bytes);
            let t = Instant::now();
            state.apply(&e);
            apply_time += t.elapsed();
        }
    }
    let total = start.elapsed();
    let after = rss_mb("VmRSS:");
    println!(
        "applied {} entries: {:.2}s in State::apply ({:.2}s with decoding), state memory (RSS growth) {:.0} MB, VmHWM {:.0} MB",
        state.entry_count(),
        apply_time.as_secs_f64(),
        total.as_secs_f64(),
        after - before,
        rss_mb("VmHWM:"),
    );
    let t = Instant::now();
    let digest = state.digest();
    println!(
        "digest {} in {:.0} ms",
        hex::encode(&digest[..6]),
        t.elapsed().as_secs_f64() * 1e3
    );
    // One writer step: a clone, a batch of 64 entries applied to it, the clone kept
    // while the old state is still held (a reader's snapshot).
    let extra: Vec<Vec<u8>> = {
        let id = &authors[0];
        let mut head = state_head(&state, id);
        (0..64 * 100)
            .map(|i| {
                let body = pb::Statement {
                    title: format!("Later {i}"),
                    text: "More.".into(),
                    cosigners: vec![],
                }
                .encode_to_vec();
                let signed = entry::sign(
                    id,
                    charter.id(),
                    head.as_ref(),
                    base + n as i64 + i,
                    pb::EntryKind::Statement as i32,
                    body,
                );
                let d = entry::decode(signed.clone(), 1 << 16).expect("decodes");
                head = Some(LogHead {
                    seq: d.seq(),
                    id: d.id(),
                    timestamp_ms: base + n as i64 + i,
                });
                signed.encode_to_vec()
            })
            .collect()
    };
    let entries: Vec<VerifiedEntry> = extra.iter().map(|b| reload(b)).collect();
    let t = Instant::now();
    let mut snapshots = 0;
    for batch in entries.chunks(64) {
        let held = state.clone();
        for e in batch {
            state.apply(e);
        }
        snapshots += 1;
        drop(held);
    }
    let per_batch = t.elapsed().as_secs_f64() * 1e6 / snapshots as f64;
    println!(
        "{snapshots} batches of 64 publishes, each on a clone while the previous state is held: {per_batch:.0} µs per batch"
    );
}

fn state_head(state: &State, id: &Identity) -> Option<LogHead> {
    use accord_core::entry::Logs;
    state.head(&id.public_id())
}
