//! Clashes: two allies standing in one ballot, and joint events that collide.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ballot::BallotId;
use crate::body::{IntentionStatus, Resolution};
use crate::deadline;
use crate::id::{EntryId, PublicId};
use crate::state::{EventView, Record, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClashState {
    /// Two or more members intend to stand, and no resolution covers it.
    Open,
    /// One member intends or considers standing and others are considering.
    Potential,
    /// A resolution is recorded; someone it names to stand aside has not yet.
    Pending,
    /// Everyone the resolution names to stand aside has withdrawn or stood aside.
    Resolved,
    /// Someone named to stand aside declared again after the resolution.
    Breached,
}

impl ClashState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Potential => "potential",
            Self::Pending => "pending",
            Self::Resolved => "resolved",
            Self::Breached => "breached",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClashParty {
    pub organisation: PublicId,
    /// None: named by the resolution but never declared on this ballot.
    pub status: Option<IntentionStatus>,
    pub candidate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clash {
    pub ballot: BallotId,
    pub state: ClashState,
    /// Every organisation with a position on the ballot or named by the resolution,
    /// in key order.
    pub parties: Vec<ClashParty>,
    /// Close of nominations; None when no rule covers the ballot's date or type.
    pub nominations_close: Option<DateTime<Utc>>,
    /// The rule behind the deadline, or why there is none. It says "nation unknown"
    /// when the nation is not known, and shows areas that disagree.
    pub deadline_rule: String,
    /// The nation whose rules gave the deadline; None when it is not known (the
    /// earliest possible deadline was taken) or there is no deadline.
    pub nation: Option<deadline::Nation>,
    pub resolution: Option<EntryId>,
}

/// The standing clashes of the state, soonest close of nominations first.
pub(crate) fn standing_clashes(state: &State) -> Vec<Clash> {
    let mut positions: BTreeMap<
        &BallotId,
        Vec<(PublicId, &crate::state::Record<crate::body::Intention>)>,
    > = BTreeMap::new();
    for ((ballot, organisation), (last, _)) in &state.intentions {
        positions
            .entry(ballot)
            .or_default()
            .push((*organisation, last));
    }
    let in_force = resolutions_in_force(state);
    let mut ballots: Vec<&BallotId> = positions.keys().chain(in_force.keys()).copied().collect();
    ballots.sort();
    ballots.dedup();

    let mut clashes: Vec<Clash> = ballots
        .into_iter()
        .filter_map(|ballot| {
            let here = positions.get(ballot).map(Vec::as_slice).unwrap_or_default();
            let standing = here
                .iter()
                .filter(|(_, r)| r.value.status.is_standing())
                .count();
            let considering = here
                .iter()
                .filter(|(_, r)| r.value.status == IntentionStatus::Considering)
                .count();
            let resolution = in_force.get(ballot);
            let clash_state = match resolution {
                Some(record) => match resolution_state(state, record) {
                    ClashState::Resolved if standing >= 2 => ClashState::Open,
                    other => other,
                },
                None if standing >= 2 => ClashState::Open,
                None if standing + considering >= 2 && considering >= 1 => ClashState::Potential,
                None => return None,
            };
            let mut parties: BTreeMap<PublicId, ClashParty> = here
                .iter()
                .map(|(organisation, record)| {
                    (
                        *organisation,
                        ClashParty {
                            organisation: *organisation,
                            status: Some(record.value.status),
                            candidate: record.value.candidate.clone(),
                        },
                    )
                })
                .collect();
            if let Some(record) = resolution {
                let r = &record.value;
                for key in r.stands.iter().chain(&r.stand_aside) {
                    parties.entry(*key).or_insert(ClashParty {
                        organisation: *key,
                        status: None,
                        candidate: None,
                    });
                }
            }
            // Every party's area, whatever its key: the council (or type) wins where
            // known, else the areas' nations, else the earliest possible deadline.
            let areas: Vec<&str> = here
                .iter()
                .filter_map(|(_, r)| r.value.area.as_deref())
                .collect();
            let (nominations_close, deadline_rule, nation) =
                match deadline::close_of_nominations(ballot, &areas) {
                    Ok(d) => (Some(d.nominations_close), d.rule, d.nation),
                    Err(e) => (None, e.to_string(), None),
                };
            Some(Clash {
                ballot: ballot.clone(),
                state: clash_state,
                parties: parties.into_values().collect(),
                nominations_close,
                deadline_rule,
                nation,
                resolution: resolution.map(|record| record.entry),
            })
        })
        .collect();
    clashes.sort_by(|a, b| {
        let key = |c: &Clash| {
            (
                c.nominations_close.is_none(),
                c.nominations_close,
                c.ballot.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    clashes
}

/// The resolution in force on each ballot: one that no other resolution of the
/// ballot came after in causal order ([`Record::is_after`]: a later entry of the
/// same secretary's log, or one whose signer had seen it); of several such (made
/// without seeing each other), the latest by (timestamp, id).
fn resolutions_in_force(state: &State) -> BTreeMap<&BallotId, &Record<Resolution>> {
    let mut by_ballot: BTreeMap<&BallotId, Vec<&Record<Resolution>>> = BTreeMap::new();
    for (_, record) in state.resolutions.values() {
        by_ballot
            .entry(&record.value.ballot)
            .or_default()
            .push(record);
    }
    by_ballot
        .into_iter()
        .filter_map(|(ballot, records)| {
            let superseded = |r: &Record<Resolution>| {
                records.iter().any(|other| {
                    other.entry != r.entry && other.is_after(&r.author, r.seq, r.timestamp_ms)
                })
            };
            let latest = records
                .iter()
                .copied()
                .filter(|r| !superseded(r))
                .max_by_key(|r| (r.timestamp_ms, r.entry))
                // Only if every resolution came after another (a cycle no honest
                // signer can make): the latest of them all.
                .or_else(|| {
                    records
                        .iter()
                        .copied()
                        .max_by_key(|r| (r.timestamp_ms, r.entry))
                })?;
            Some((ballot, latest))
        })
        .collect()
}

/// Whether a resolution is honoured: resolved once everyone it names to stand aside
/// has withdrawn or stood aside (or never declared); breached if one of them
/// declares intends or confirmed in an entry made after the resolution in causal
/// order (its signer had seen the resolution), whatever the entry's clock says.
pub(crate) fn resolution_state(state: &State, resolution: &Record<Resolution>) -> ClashState {
    let r = &resolution.value;
    let mut all_out = true;
    for organisation in &r.stand_aside {
        let current = state
            .intentions
            .get(&(r.ballot.clone(), *organisation))
            .map(|(i, _)| i);
        match current {
            None => {}
            Some(i) if i.value.status.is_out() => {}
            Some(i)
                if i.value.status.is_standing()
                    && i.is_after(&resolution.author, resolution.seq, resolution.timestamp_ms) =>
            {
                return ClashState::Breached;
            }
            Some(_) => all_out = false,
        }
    }
    if all_out {
        ClashState::Resolved
    } else {
        ClashState::Pending
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRef {
    pub author: PublicId,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventClash {
    pub first: EventRef,
    pub second: EventRef,
    /// "venue", "area" or "venue and area".
    pub reason: &'static str,
}

/// Venues compare case-insensitively with runs of white space collapsed.
fn venue_key(venue: &str) -> String {
    venue
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Pairs of live (not cancelled) events that overlap in time and share a venue or
/// an area. `events` is sorted by start time; the result is in that order too.
pub(crate) fn event_clashes(events: &[EventView]) -> Vec<EventClash> {
    let live: Vec<&EventView> = events.iter().filter(|e| !e.event.cancelled).collect();
    let mut out = Vec::new();
    for (i, a) in live.iter().enumerate() {
        for b in &live[i + 1..] {
            if b.event.start_utc >= a.event.end_utc {
                // Sorted by start: every later event starts after `a` ends too.
                break;
            }
            let venue = !a.event.venue.trim().is_empty()
                && venue_key(&a.event.venue) == venue_key(&b.event.venue);
            let area = a.event.area.is_some() && a.event.area == b.event.area;
            let reason = match (venue, area) {
                (true, true) => "venue and area",
                (true, false) => "venue",
                (false, true) => "area",
                (false, false) => continue,
            };
            out.push(EventClash {
                first: EventRef {
                    author: a.author,
                    uid: a.event.uid.clone(),
                },
                second: EventRef {
                    author: b.author,
                    uid: b.event.uid.clone(),
                },
                reason,
            });
        }
    }
    out
}
