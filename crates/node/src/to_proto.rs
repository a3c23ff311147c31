//! Core views to wire messages. Bodies go back in the form their authors wrote them.

use accord_core::body::{self, IntentionStatus, Visibility};
use accord_core::clash::{self, ClashState};
use accord_core::roster::Roster;
use accord_core::state;
use accord_core::{PublicId, pb};
use chrono::{DateTime, SecondsFormat, Utc};

fn keys(list: &[PublicId]) -> Vec<Vec<u8>> {
    list.iter().map(PublicId::to_vec).collect()
}

fn visibility(v: Visibility) -> i32 {
    v.to_pb() as i32
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn intention(i: &body::Intention) -> pb::Intention {
    pb::Intention {
        ballot: i.ballot.as_str().to_string(),
        status: i.status.to_pb() as i32,
        candidate: i.candidate.clone().unwrap_or_default(),
        visibility: visibility(i.visibility),
        area: i.area.clone().unwrap_or_default(),
        note: i.note.clone().unwrap_or_default(),
    }
}

pub fn statement(s: &body::Statement) -> pb::Statement {
    pb::Statement {
        title: s.title.clone(),
        text: s.text.clone(),
        cosigners: keys(&s.cosigners),
    }
}

pub fn event(e: &body::Event) -> pb::Event {
    pb::Event {
        uid: e.uid.clone(),
        title: e.title.clone(),
        description: e.description.clone(),
        start: if e.all_day {
            e.first_day().format("%Y-%m-%d").to_string()
        } else {
            e.start.format("%Y-%m-%dT%H:%M:%S").to_string()
        },
        end: if e.all_day {
            e.last_day().format("%Y-%m-%d").to_string()
        } else {
            e.end.format("%Y-%m-%dT%H:%M:%S").to_string()
        },
        time_zone: e.time_zone.name().to_string(),
        venue: e.venue.clone(),
        area: e.area.clone().unwrap_or_default(),
        organisers: keys(&e.organisers),
        visibility: visibility(e.visibility),
        cancelled: e.cancelled,
        all_day: e.all_day,
    }
}

pub fn resolution(r: &body::Resolution) -> pb::Resolution {
    pb::Resolution {
        ballot: r.ballot.as_str().to_string(),
        stands: keys(&r.stands),
        stand_aside: keys(&r.stand_aside),
        rationale: r.rationale.clone(),
    }
}

pub fn clash_state(s: ClashState) -> pb::ClashState {
    match s {
        ClashState::Open => pb::ClashState::Open,
        ClashState::Potential => pb::ClashState::Potential,
        ClashState::Pending => pb::ClashState::Pending,
        ClashState::Resolved => pb::ClashState::Resolved,
        ClashState::Breached => pb::ClashState::Breached,
    }
}

fn name(charter: &Roster, key: &PublicId) -> String {
    charter.name_of(key).unwrap_or_default().to_string()
}

pub fn intention_view(v: &state::IntentionView, charter: &Roster) -> pb::IntentionView {
    pb::IntentionView {
        organisation: v.organisation.to_vec(),
        organisation_name: name(charter, &v.organisation),
        intention: Some(intention(&v.intention)),
        entry: v.entry.to_vec(),
        timestamp_ms: v.timestamp_ms,
    }
}

pub fn clash(c: &clash::Clash, charter: &Roster) -> pb::Clash {
    pb::Clash {
        ballot: c.ballot.as_str().to_string(),
        state: clash_state(c.state) as i32,
        parties: c
            .parties
            .iter()
            .map(|p| pb::ClashParty {
                organisation: p.organisation.to_vec(),
                organisation_name: name(charter, &p.organisation),
                status: p
                    .status
                    .map_or(pb::IntentionStatus::Unspecified, IntentionStatus::to_pb)
                    as i32,
                candidate: p.candidate.clone().unwrap_or_default(),
            })
            .collect(),
        nominations_close: c.nominations_close.map(rfc3339).unwrap_or_default(),
        deadline_rule: c.deadline_rule.clone(),
        resolution: c.resolution.map(|r| r.to_vec()).unwrap_or_default(),
    }
}

pub fn statement_view(v: &state::StatementView) -> pb::StatementView {
    pb::StatementView {
        id: v.id.to_vec(),
        author: v.author.to_vec(),
        statement: Some(statement(&v.statement)),
        timestamp_ms: v.timestamp_ms,
        endorsed_by: keys(&v.endorsed_by),
        supporters: keys(&v.supporters),
        joint: v.joint,
        withdrawn: v.withdrawn,
    }
}

pub fn event_view(v: &state::EventView) -> pb::EventView {
    pb::EventView {
        author: v.author.to_vec(),
        event: Some(event(&v.event)),
        start_utc: rfc3339(v.event.start_utc),
        end_utc: rfc3339(v.event.end_utc),
        sequence: v.sequence,
        last_modified_ms: v.last_modified_ms,
        entry: v.entry.to_vec(),
    }
}

pub fn resolution_view(v: &state::ResolutionView) -> pb::ResolutionView {
    pb::ResolutionView {
        id: v.id.to_vec(),
        author: v.author.to_vec(),
        resolution: Some(resolution(&v.resolution)),
        timestamp_ms: v.timestamp_ms,
        state: clash_state(v.state) as i32,
    }
}

pub fn roster(r: &accord_core::roster::Roster, home: &[PublicId]) -> pb::RosterView {
    use accord_core::roster::{OrgStatus, ProposalStatus};
    pb::RosterView {
        version: r.version,
        quorum: Some(body::quorum_to_pb(r.quorum)),
        organisations: r
            .organisations()
            .map(|o| {
                let (status, up_to_seq) = match o.status {
                    OrgStatus::Active => ("active", 0),
                    OrgStatus::Left { up_to_seq, .. } => ("left", up_to_seq),
                    OrgStatus::Removed { up_to_seq, .. } => ("removed", up_to_seq),
                };
                pb::RosterOrganisation {
                    key: o.key.to_vec(),
                    name: o.name.clone(),
                    ec_id: o.ec_id.clone().unwrap_or_default(),
                    role: body::role_to_pb(o.role) as i32,
                    roles_held: o
                        .roles_held
                        .roles()
                        .map(|r| body::role_to_pb(r) as i32)
                        .collect(),
                    status: status.into(),
                    up_to_seq,
                    admitted_at: o.admitted_at,
                    home: o.logs().any(|log| home.contains(&log)),
                    recoveries: o
                        .recoveries
                        .iter()
                        .map(|r| pb::Recovery {
                            log: r.log.to_vec(),
                            up_to_seq: r.up_to_seq,
                            next: r.next.to_vec(),
                            proposal: r.proposal.to_vec(),
                            at_ms: r.at_ms,
                        })
                        .collect(),
                    node_address: o
                        .node
                        .as_ref()
                        .map(|n| n.address.clone())
                        .unwrap_or_default(),
                    node_cert_sha256: o
                        .node
                        .as_ref()
                        .map(|n| n.cert_sha256.to_vec())
                        .unwrap_or_default(),
                    current_key: o.signing_key().to_vec(),
                    retired_keys: o
                        .retired_keys
                        .iter()
                        .map(|r| pb::RetiredKey {
                            key: r.key.to_vec(),
                            last_seq: r.last_seq,
                        })
                        .collect(),
                }
            })
            .collect(),
        open_proposals: r
            .proposals()
            .filter(|p| p.status == ProposalStatus::Open)
            .count() as u32,
    }
}

pub fn change(c: &accord_core::roster::Change) -> pb::proposal::Change {
    use accord_core::roster::Change as C;
    use pb::proposal::Change as P;
    match c {
        C::Admit {
            name,
            key,
            role,
            ec_id,
            node,
        } => P::Admit(pb::Admit {
            name: name.clone(),
            key: key.to_vec(),
            role: body::role_to_pb(*role) as i32,
            ec_id: ec_id.clone().unwrap_or_default(),
            node_address: node.as_ref().map(|n| n.address.clone()).unwrap_or_default(),
            node_cert_sha256: node
                .as_ref()
                .map(|n| n.cert_sha256.to_vec())
                .unwrap_or_default(),
        }),
        C::Recover {
            organisation,
            key,
            up_to_seq,
        } => P::Recover(pb::Recover {
            organisation: organisation.to_vec(),
            key: key.to_vec(),
            up_to_seq: *up_to_seq,
        }),
        C::Remove {
            organisation,
            up_to_seq,
        } => P::Remove(pb::Remove {
            organisation: organisation.to_vec(),
            up_to_seq: *up_to_seq,
        }),
        C::SetRole { organisation, role } => P::SetRole(pb::SetRole {
            organisation: organisation.to_vec(),
            role: body::role_to_pb(*role) as i32,
        }),
        C::Quorum { rule } => P::Quorum(body::quorum_to_pb(*rule)),
    }
}

pub fn proposal(
    p: &accord_core::roster::ProposalView,
    roster: &accord_core::roster::Roster,
) -> pb::RosterProposal {
    use accord_core::roster::ProposalStatus as S;
    let (detail, passed_version) = match &p.status {
        S::Void { reason } | S::Refused { reason } => (reason.to_string(), 0),
        S::Passed { version, .. } => (String::new(), *version),
        S::Open | S::Lapsed { .. } => (String::new(), 0),
    };
    pb::RosterProposal {
        id: p.id.to_vec(),
        author: p.author.to_vec(),
        timestamp_ms: p.timestamp_ms,
        proposal: Some(pb::Proposal {
            roster_version: p.proposal.roster_version,
            change: Some(change(&p.proposal.change)),
            rationale: p.proposal.rationale.clone(),
        }),
        description: p.proposal.change.describe(roster),
        rule: Some(body::quorum_to_pb(p.rule)),
        electorate: keys(&p.electorate),
        needed: p.needed as u32,
        approvals: keys(&p.approvals),
        objections: keys(&p.objections),
        lapses_ms: p.lapses_ms,
        passes_unopposed_ms: p.passes_unopposed_ms.unwrap_or(0),
        status: p.status.as_str().into(),
        status_detail: detail,
        passed_version,
    }
}
