//! What a flood of governance entries costs a node's state: N node announcements
//! by one member (no quorum, so nothing stops a member signing many), applied one
//! at a time as a node's writer applies entries arriving in order, then a proposal
//! and its approvals. Prints the time per entry over the first and the last tenth,
//! and their ratio: a fold of every governance entry on each one grows with N
//! (quadratic in all), one step each stays flat.
//!
//! `cargo run --release -p accord-core --example governance_flood` (N from
//! `ACCORD_FLOOD_ENTRIES`, default 5,000).

use std::time::Instant;

use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
use accord_core::entry::{self, LogHead, SignatureChecked};
use accord_core::{Charter, Identity, State, pb};
use prost::Message;

fn main() {
    let n: usize = std::env::var("ACCORD_FLOOD_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let members: Vec<Identity> = (1..=3u8).map(|a| Identity::from_seed([a; 32])).collect();
    let secretary = Identity::from_seed([9; 32]);
    let doc = CharterDoc {
        accord_charter: 1,
        name: "Flood Alliance".into(),
        members: members
            .iter()
            .enumerate()
            .map(|(i, id)| CharterMember {
                name: format!("Party {i}"),
                key: id.public_id(),
                ec_id: None,
            })
            .collect(),
        secretaries: vec![CharterSecretary {
            name: "Secretariat".into(),
            key: secretary.public_id(),
        }],
        rules: Rules::default(),
    };
    let charter = Charter::from_bytes(doc.to_file_bytes()).expect("charter");
    let mut state = State::new(charter.clone());
    let mut head: Option<LogHead> = None;
    let start_ms = 1_800_000_000_000i64;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let body = pb::NodeAnnouncement {
            address: format!("node{i}.example.org:7443"),
            cert_sha256: vec![(i % 251) as u8; 32],
        };
        let signed = entry::sign_seeing(
            &members[0],
            charter.id(),
            head.as_ref(),
            start_ms + i as i64,
            pb::EntryKind::NodeAnnouncement as i32,
            body.encode_to_vec(),
            &[],
        );
        let decoded = entry::decode(signed, 1 << 20).expect("decodes");
        let checked = SignatureChecked::verified_earlier_in_this_store();
        let verified = decoded
            .accept(&charter, &state, start_ms + n as i64, checked)
            .expect("accepted");
        head = Some(verified.head());
        let began = Instant::now();
        state.apply(&verified);
        times.push(began.elapsed().as_secs_f64());
    }
    let tenth = (n / 10).max(1);
    let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64 * 1e6;
    let (first, last) = (mean(&times[..tenth]), mean(&times[n - tenth..]));
    let total: f64 = times.iter().sum();
    println!(
        "{n} announcements applied in {total:.3} s: {first:.1} µs each over the first tenth, \
         {last:.1} µs over the last; ratio {:.2}",
        last / first
    );
}
