//! Governance commands: the roster, proposals, and the entries that change the
//! roster (propose, approve, object, leave).

use accord_core::charter::Role;
use accord_core::roster::QuorumRule;
use accord_core::{PublicId, pb};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::cli::{ListArgs, ProposeCommand, PublishArgs, SecretaryAction};
use crate::client::{Client, rpc};
use crate::commands::query::all_pages;
use crate::render::{print_json, println, table, time_ms};

fn role_name(value: i32) -> &'static str {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Member) => "member",
        Ok(pb::Role::Secretary) => "secretary",
        Ok(pb::Role::Observer) => "observer",
        _ => "unknown",
    }
}

fn quorum_name(rule: Option<&pb::QuorumRule>) -> String {
    let Some(rule) = rule else {
        return "majority".into();
    };
    accord_core::body::quorum_from_pb(rule)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("kind {}", rule.kind))
}

/// Names keys by the roster, falling back to the short key.
struct RosterNames(Vec<(Vec<u8>, String)>);

impl RosterNames {
    fn of(roster: &pb::RosterView) -> Self {
        Self(
            roster
                .organisations
                .iter()
                .flat_map(|o| {
                    // Its identity, and the logs recoveries started for it.
                    std::iter::once(&o.key)
                        .chain(o.recoveries.iter().map(|r| &r.next))
                        .map(|k| (k.clone(), o.name.clone()))
                })
                .collect(),
        )
    }

    fn name(&self, key: &[u8]) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| {
                PublicId::from_slice(key).map_or_else(|_| hex::encode(key), |k| k.short())
            })
    }

    fn list(&self, keys: &[Vec<u8>]) -> Vec<String> {
        keys.iter().map(|k| self.name(k)).collect()
    }

    /// An organisation of the roster by name (any case) or hex key.
    fn find(&self, roster: &pb::RosterView, wanted: &str) -> Result<Vec<u8>> {
        if let Ok(key) = wanted.trim().parse::<PublicId>() {
            return Ok(key.to_vec());
        }
        let lower = wanted.trim().to_lowercase();
        roster
            .organisations
            .iter()
            .filter(|o| o.name.to_lowercase() == lower)
            .min_by_key(|o| o.status != "active")
            .map(|o| o.key.clone())
            .ok_or_else(|| anyhow!("{wanted:?} is not an organisation of the roster"))
    }
}

pub async fn roster(list: &ListArgs) -> Result<()> {
    let mut client = Client::connect(&list.client.config_path()?).await?;
    let roster = client.roster().await?;
    let quorum = quorum_name(roster.quorum.as_ref());
    if list.json {
        let orgs: Vec<Value> = roster
            .organisations
            .iter()
            .map(|o| {
                json!({
                    "name": o.name,
                    "id": hex::encode(&o.key),
                    "ec_id": o.ec_id,
                    "role": role_name(o.role),
                    "roles_held": o.roles_held.iter().map(|r| role_name(*r)).collect::<Vec<_>>(),
                    "status": o.status,
                    "up_to_seq": (o.status != "active").then_some(o.up_to_seq),
                    "admitted_at": o.admitted_at,
                    "home": o.home,
                    "node": (!o.node_address.is_empty()).then(|| json!({
                        "address": o.node_address,
                        "cert_sha256": hex::encode(&o.node_cert_sha256),
                    })),
                    "current_key": hex::encode(if o.current_key.is_empty() { &o.key } else { &o.current_key }),
                    "retired_keys": o.retired_keys.iter().map(|r| json!({
                        "key": hex::encode(&r.key),
                        "last_seq": r.last_seq,
                    })).collect::<Vec<_>>(),
                    "recoveries": o.recoveries.iter().map(|r| json!({
                        "log": hex::encode(&r.log),
                        "up_to_seq": r.up_to_seq,
                        "next": hex::encode(&r.next),
                        "proposal": hex::encode(&r.proposal),
                        "at_ms": r.at_ms,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!({
            "version": roster.version,
            "quorum": quorum,
            "open_proposals": roster.open_proposals,
            "organisations": orgs,
        }));
        return Ok(());
    }
    println(&format!(
        "roster version {}, quorum {quorum}, {} open proposal{}",
        roster.version,
        roster.open_proposals,
        if roster.open_proposals == 1 { "" } else { "s" }
    ));
    let rows: Vec<Vec<String>> = roster
        .organisations
        .iter()
        .map(|o| {
            let status = if o.status == "active" {
                o.status.clone()
            } else {
                format!("{} (counts to seq {})", o.status, o.up_to_seq)
            };
            vec![
                format!("{}{}", o.name, if o.home { " *" } else { "" }),
                role_name(o.role).into(),
                status,
                o.ec_id.clone(),
                PublicId::from_slice(&o.key)
                    .map_or_else(|_| hex::encode(&o.key), |k| k.to_string()),
                if o.node_address.is_empty() {
                    "-".into()
                } else {
                    format!(
                        "{} ({}…)",
                        o.node_address,
                        &hex::encode(&o.node_cert_sha256)[..12]
                    )
                },
            ]
        })
        .collect();
    crate::render::print(&table(
        &["NAME", "ROLE", "STATUS", "EC ID", "KEY", "NODE"],
        &rows,
    ));
    // Organisations that rotated their key: KEY above is their identity for good.
    for o in roster
        .organisations
        .iter()
        .filter(|o| !o.retired_keys.is_empty())
    {
        let retired: Vec<String> = o
            .retired_keys
            .iter()
            .map(|r| format!("{} to seq {}", hex::encode(&r.key), r.last_seq))
            .collect();
        println(&format!(
            "{} signs with key {}; retired: {}",
            o.name,
            hex::encode(&o.current_key),
            retired.join(", ")
        ));
    }
    // Organisations recovered by quorum: each recovery's old log counts up to its
    // cut, and the organisation goes on in the new log.
    for o in &roster.organisations {
        for r in &o.recoveries {
            println(&format!(
                "{} recovered: log {} counts up to seq {}; it goes on in log {}",
                o.name,
                hex::encode(&r.log),
                r.up_to_seq,
                hex::encode(&r.next)
            ));
        }
    }
    Ok(())
}

async fn list_proposals(client: &mut Client, open_only: bool) -> Result<Vec<pb::RosterProposal>> {
    all_pages(|token| {
        let mut ledger = client.ledger.clone();
        async move {
            let r = ledger
                .list_proposals(pb::ListProposalsRequest {
                    open_only,
                    page_size: 1000,
                    page_token: token,
                })
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.proposals, r.next_page_token))
        }
    })
    .await
}

pub async fn proposals(list: &ListArgs, open_only: bool) -> Result<()> {
    let mut client = Client::connect(&list.client.config_path()?).await?;
    let roster = client.roster().await?;
    let names = RosterNames::of(&roster);
    let proposals = list_proposals(&mut client, open_only).await?;
    if list.json {
        let items: Vec<Value> = proposals
            .iter()
            .map(|p| {
                json!({
                    "id": hex::encode(&p.id),
                    "author": names.name(&p.author),
                    "author_id": hex::encode(&p.author),
                    "time": time_ms(p.timestamp_ms),
                    "change": p.description,
                    "roster_version": p.proposal.as_ref().map_or(0, |x| x.roster_version),
                    "rationale": p.proposal.as_ref().map(|x| x.rationale.clone()).unwrap_or_default(),
                    "rule": quorum_name(p.rule.as_ref()),
                    "needed": p.needed,
                    "electorate": names.list(&p.electorate),
                    "approvals": names.list(&p.approvals),
                    "objections": names.list(&p.objections),
                    "lapses": time_ms(p.lapses_ms),
                    "passes_unopposed": (p.passes_unopposed_ms != 0).then(|| time_ms(p.passes_unopposed_ms)),
                    "status": p.status,
                    "detail": p.status_detail,
                    "passed_version": (p.passed_version != 0).then_some(p.passed_version),
                })
            })
            .collect();
        print_json(&Value::Array(items));
        return Ok(());
    }
    if proposals.is_empty() {
        println("no proposals");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = proposals
        .iter()
        .map(|p| {
            let status = if p.status_detail.is_empty() {
                p.status.clone()
            } else {
                format!("{}: {}", p.status, p.status_detail)
            };
            vec![
                hex::encode(&p.id)[..16].to_owned(),
                names.name(&p.author),
                p.description.clone(),
                format!("{}/{}", p.approvals.len(), p.needed),
                time_ms(p.lapses_ms),
                status,
            ]
        })
        .collect();
    crate::render::print(&table(
        &["ID", "BY", "CHANGE", "APPROVALS", "LAPSES", "STATUS"],
        &rows,
    ));
    Ok(())
}

/// Connects, and names the author by the roster: `--as` or the config's `as`, else
/// the token's only identity (an empty author).
pub(crate) async fn connect(args: &PublishArgs) -> Result<(Client, Vec<u8>)> {
    let mut client = Client::connect(&args.client.config_path()?).await?;
    let wanted = args.as_.clone().or_else(|| client.default_as.clone());
    let author = match wanted.as_deref() {
        Some(wanted) => {
            let roster = client.roster().await?;
            RosterNames::of(&roster).find(&roster, wanted)?
        }
        None => Vec::new(),
    };
    Ok((client, author))
}

pub(crate) fn report(args: &PublishArgs, what: &str, r: &pb::PublishResponse) {
    if args.json {
        print_json(&json!({
            "id": hex::encode(&r.id),
            "author_id": hex::encode(&r.author),
            "seq": r.seq,
        }));
    } else {
        println(&format!(
            "published {what} {} (seq {})",
            hex::encode(&r.id),
            r.seq
        ));
    }
}

pub async fn propose(command: ProposeCommand) -> Result<()> {
    use pb::propose_request::Change as C;
    let args = match &command {
        ProposeCommand::Admit { publish, .. }
        | ProposeCommand::Remove { publish, .. }
        | ProposeCommand::Recover { publish, .. }
        | ProposeCommand::Secretary { publish, .. }
        | ProposeCommand::Quorum { publish, .. } => publish,
    };
    // Arguments first, so a bad one is refused before connecting.
    let organisation = |client_roster: &pb::RosterView, member: &str| {
        RosterNames::of(client_roster).find(client_roster, member)
    };
    let (change, rationale): (C, String) = match &command {
        ProposeCommand::Admit {
            name,
            key,
            role,
            ec_id,
            node_address,
            node_cert_sha256,
            rationale,
            ..
        } => {
            let key: PublicId = key
                .trim()
                .parse()
                .map_err(|e| anyhow!("--key {key:?}: {e}"))?;
            let role: Role = role.parse().map_err(|e: String| anyhow!(e))?;
            let (node_address, node_cert_sha256) = match (node_address, node_cert_sha256) {
                (Some(address), Some(cert)) => {
                    let cert = accord_node::tls::parse_fingerprint(cert).ok_or_else(|| {
                        anyhow!("--node-cert-sha256 {cert:?}: 64 hex digits (`accord tls show`)")
                    })?;
                    accord_core::roster::check_node_address(address)
                        .map_err(|e| anyhow!("--node-address: {e}"))?;
                    (address.clone(), cert.to_vec())
                }
                _ => (String::new(), Vec::new()),
            };
            let change = C::Admit(pb::Admit {
                name: name.clone(),
                key: key.to_vec(),
                role: accord_core::body::role_to_pb(role) as i32,
                ec_id: ec_id.clone().unwrap_or_default(),
                node_address,
                node_cert_sha256,
            });
            (change, rationale.clone())
        }
        ProposeCommand::Remove {
            up_to, rationale, ..
        } => (
            C::Remove(pb::ProposeRemove {
                organisation: Vec::new(),
                up_to_seq: up_to.unwrap_or(0),
            }),
            rationale.clone(),
        ),
        ProposeCommand::Recover {
            key,
            up_to,
            rationale,
            ..
        } => {
            let key: PublicId = key
                .trim()
                .parse()
                .map_err(|e| anyhow!("--key {key:?}: {e}"))?;
            let change = C::Recover(pb::ProposeRecover {
                organisation: Vec::new(),
                key: key.to_vec(),
                up_to_seq: up_to.unwrap_or(0),
            });
            (change, rationale.clone())
        }
        ProposeCommand::Secretary {
            action,
            to,
            rationale,
            ..
        } => {
            let role = match action {
                SecretaryAction::Appoint => Role::Secretary,
                SecretaryAction::Remove => {
                    let role: Role = to.parse().map_err(|e: String| anyhow!(e))?;
                    if role == Role::Secretary {
                        bail!("--to must be member or observer");
                    }
                    role
                }
            };
            let change = C::SetRole(pb::SetRole {
                organisation: Vec::new(),
                role: accord_core::body::role_to_pb(role) as i32,
            });
            (change, rationale.clone())
        }
        ProposeCommand::Quorum {
            rule, rationale, ..
        } => {
            let rule: QuorumRule = rule.parse().map_err(|e: String| anyhow!(e))?;
            (
                C::Quorum(accord_core::body::quorum_to_pb(rule)),
                rationale.clone(),
            )
        }
    };
    let (mut client, author) = connect(args).await?;
    // Remove, recover and secretary name an organisation of the roster.
    let change = match (change, &command) {
        (C::Remove(mut r), ProposeCommand::Remove { member, .. }) => {
            r.organisation = organisation(&client.roster().await?, member)?;
            C::Remove(r)
        }
        (C::Recover(mut r), ProposeCommand::Recover { member, .. }) => {
            r.organisation = organisation(&client.roster().await?, member)?;
            C::Recover(r)
        }
        (C::SetRole(mut r), ProposeCommand::Secretary { member, .. }) => {
            r.organisation = organisation(&client.roster().await?, member)?;
            C::SetRole(r)
        }
        (other, _) => other,
    };
    let response = client
        .ledger
        .propose(pb::ProposeRequest {
            author,
            change: Some(change),
            rationale,
        })
        .await
        .map_err(rpc)?
        .into_inner();
    report(args, "proposal", &response);
    Ok(())
}

/// A proposal id from a full id or a unique prefix of at least 8 hex digits.
async fn proposal_id(client: &mut Client, id: &str) -> Result<Vec<u8>> {
    let id = id.trim().to_lowercase();
    if id.len() == 64 {
        return hex::decode(&id).context("the proposal id is not hex");
    }
    if id.len() < 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{id:?} is not a proposal id (64 hex digits, or a prefix of at least 8)");
    }
    let matching: Vec<Vec<u8>> = list_proposals(client, false)
        .await?
        .into_iter()
        .map(|p| p.id)
        .filter(|p| hex::encode(p).starts_with(&id))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no proposal id starts with {id}"),
        _ => bail!("more than one proposal id starts with {id}: give more digits"),
    }
}

pub async fn vote(args: &PublishArgs, id: &str, objection: Option<String>) -> Result<()> {
    let (mut client, author) = connect(args).await?;
    let proposal = proposal_id(&mut client, id).await?;
    let object = objection.is_some();
    let request = pb::VoteRequest {
        author,
        proposal,
        reason: objection.unwrap_or_default(),
    };
    let response = if object {
        client.ledger.object(request).await
    } else {
        client.ledger.approve(request).await
    }
    .map_err(rpc)?
    .into_inner();
    report(
        args,
        if object { "objection" } else { "approval" },
        &response,
    );
    Ok(())
}

pub async fn rotate_key(args: &PublishArgs) -> Result<()> {
    let (mut client, author) = connect(args).await?;
    let r = client
        .ledger
        .rotate_key(pb::RotateKeyRequest { author })
        .await
        .map_err(rpc)?
        .into_inner();
    if args.json {
        print_json(&json!({
            "id": hex::encode(&r.id),
            "author_id": hex::encode(&r.author),
            "seq": r.seq,
            "key": hex::encode(&r.key),
            "retired_key": hex::encode(&r.retired_key),
        }));
    } else {
        println(&format!(
            "rotated the key at seq {} (entry {}): {} signs from seq {} on; {} is retired",
            r.seq,
            hex::encode(&r.id),
            hex::encode(&r.key),
            r.seq + 1,
            hex::encode(&r.retired_key),
        ));
    }
    Ok(())
}

pub async fn leave(args: &PublishArgs, reason: String) -> Result<()> {
    let (mut client, author) = connect(args).await?;
    let response = client
        .ledger
        .leave(pb::LeaveRequest { author, reason })
        .await
        .map_err(rpc)?
        .into_inner();
    report(args, "departure", &response);
    Ok(())
}
