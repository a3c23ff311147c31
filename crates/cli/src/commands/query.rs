//! Commands that read the node's derived state: status, intentions, clashes,
//! resolutions, statements, events, event clashes and logs.

use accord_core::body::Body;
use accord_core::{Charter, pb};
use anyhow::Result;
use prost::Message;
use serde_json::{Value, json};

use crate::cli::{ClashFilter, ClashState, ListArgs};
use crate::client::{Client, find, rpc};
use crate::render::{
    Names, area_label, areas_disagree, ballot_name, deadline_cell, nation_unknown, print,
    print_json, println, short_time, table, time_ms,
};

/// Most pages a list command follows (the node sends up to 1,000 items a page).
const MAX_PAGES: usize = 100_000;

/// Every page of a list: `page(token)` asks for one page and returns its items and
/// the next page's token, which is empty after the last.
pub(crate) async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_PAGES {
        let (mut more, next) = page(token).await?;
        items.append(&mut more);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
    anyhow::bail!("the node sent more than {MAX_PAGES} pages")
}

async fn connect(list: &ListArgs) -> Result<(Client, Charter)> {
    let mut client = Client::connect(&list.client.config_path()?).await?;
    let charter = client.charter().await?;
    Ok((client, charter))
}

pub fn status_name(value: i32) -> &'static str {
    match pb::IntentionStatus::try_from(value) {
        Ok(pb::IntentionStatus::Considering) => "considering",
        Ok(pb::IntentionStatus::Intends) => "intends",
        Ok(pb::IntentionStatus::Confirmed) => "confirmed",
        Ok(pb::IntentionStatus::Withdrawn) => "withdrawn",
        Ok(pb::IntentionStatus::StoodAside) => "stood-aside",
        _ => "unknown",
    }
}

fn visibility_name(value: i32) -> &'static str {
    match pb::Visibility::try_from(value) {
        Ok(pb::Visibility::Public) => "public",
        _ => "alliance",
    }
}

pub fn clash_state_name(value: i32) -> &'static str {
    match pb::ClashState::try_from(value) {
        Ok(pb::ClashState::Open) => "open",
        Ok(pb::ClashState::Potential) => "potential",
        Ok(pb::ClashState::Pending) => "pending",
        Ok(pb::ClashState::Resolved) => "resolved",
        Ok(pb::ClashState::Breached) => "breached",
        _ => "unknown",
    }
}

fn clash_state_pb(state: ClashState) -> pb::ClashState {
    match state {
        ClashState::Open => pb::ClashState::Open,
        ClashState::Potential => pb::ClashState::Potential,
        ClashState::Pending => pb::ClashState::Pending,
        ClashState::Resolved => pb::ClashState::Resolved,
        ClashState::Breached => pb::ClashState::Breached,
    }
}

fn non_empty(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::String(text.to_owned())
    }
}

pub async fn status(list: &ListArgs) -> Result<()> {
    let (mut client, _) = connect(list).await?;
    let s = client
        .ledger
        .get_status(pb::GetStatusRequest::default())
        .await
        .map_err(rpc)?
        .into_inner();
    let names: std::collections::BTreeMap<Vec<u8>, String> = s
        .organisations
        .iter()
        .map(|o| (o.key.clone(), o.name.clone()))
        .collect();
    let name = |key: &Vec<u8>| names.get(key).cloned().unwrap_or_else(|| hex::encode(key));
    if list.json {
        let heads: serde_json::Map<String, Value> = s
            .heads
            .iter()
            .map(|h| (hex::encode(&h.author), json!(h.seq)))
            .collect();
        // Each peer apart: the whole status in one `json!` is past its recursion limit.
        let peer = |p: &pb::PeerStatus| {
            let grafted: Vec<Value> = p
                .grafted
                .iter()
                .map(|k| json!({ "name": name(k), "id": hex::encode(k) }))
                .collect();
            json!({
                "name": p.name,
                "address": p.address,
                "connected": p.connected,
                "last_contact": if p.last_contact_ms == 0 { Value::Null } else { json!(time_ms(p.last_contact_ms)) },
                "last_contact_ms": if p.last_contact_ms == 0 { Value::Null } else { json!(p.last_contact_ms) },
                "behind": p.behind,
                "received": p.received,
                "accepted": p.accepted,
                "refused": p.refused,
                "held": p.held,
                "notes": p.notes,
                "pulls": p.pulls,
                "grafted": grafted,
                "refusals": p.refusals.iter().map(|r| json!({
                    "author": name(&r.author),
                    "author_id": hex::encode(&r.author),
                    "seq": r.seq,
                    "reason": r.reason,
                    "held_until": (r.held_until_ms != 0).then(|| time_ms(r.held_until_ms)),
                })).collect::<Vec<_>>(),
                "last_error": non_empty(&p.last_error),
            })
        };
        let peers: Vec<Value> = s.peers.iter().map(peer).collect();
        let mut value = json!({
            "alliance": hex::encode(&s.alliance),
            "alliance_name": s.alliance_name,
            "digest": hex::encode(&s.digest),
            "entries_digest": hex::encode(&s.entries_digest),
            "rules_version": s.rules_version,
            "entries": s.entries,
            "storage_failed": (!s.storage_failed.is_empty()).then(|| s.storage_failed.clone()),
            "free_disk_bytes": s.free_disk_bytes,
            "clock_offset_ms": s.clock_offset_ms,
            "clock_peers": s.clock_peers,
            "clock_problem": (!s.clock_problem.is_empty()).then(|| s.clock_problem.clone()),
            "clock_warning": (!s.clock_warning.is_empty()).then(|| s.clock_warning.clone()),
            "lost_entries": s.lost_entries.iter().map(|l| json!({
                "author": name(&l.author),
                "author_id": hex::encode(&l.author),
                "stored_seq": l.stored_seq,
                "manifest_seq": l.signed_seq,
            })).collect::<Vec<_>>(),
            "lost_own_entries": s.lost_own_entries.iter().map(|l| json!({
                "author": name(&l.author),
                "author_id": hex::encode(&l.author),
                "stored_seq": l.stored_seq,
                "signed_seq": l.signed_seq,
                "peer_seq": l.peer_seq,
            })).collect::<Vec<_>>(),
            "set_aside_count": s.set_aside_count,
            "set_aside": s.set_aside.iter().map(|a| json!({
                "author": name(&a.author),
                "author_id": hex::encode(&a.author),
                "seq": a.seq,
                "id": hex::encode(&a.id),
                "kind": a.kind,
                "reason": a.reason,
            })).collect::<Vec<_>>(),
            "version": s.version,
            "heads": heads,
            "head_entries": s.heads.iter().map(|h| json!({
                "author": name(&h.author),
                "author_id": hex::encode(&h.author),
                "seq": h.seq,
                "id": hex::encode(&h.id),
            })).collect::<Vec<_>>(),
            "calendar_url": (!s.calendar_url.is_empty()).then(|| s.calendar_url.clone()),
            "frozen": s.frozen.iter().map(|k| json!({
                "name": name(k),
                "id": hex::encode(k),
            })).collect::<Vec<_>>(),
            "peers": peers,
            "organisations": s.organisations.iter().map(|o| json!({
                "name": o.name,
                "id": hex::encode(&o.key),
                "ec_id": non_empty(&o.ec_id),
                "role": role_of(o),
                "home": o.home,
            })).collect::<Vec<_>>(),
        });
        value["roster_version"] = json!(s.roster_version);
        value["open_proposals"] = json!(s.open_proposals);
        print_json(&value);
        return Ok(());
    }
    print(&status_table(&s, chrono::Utc::now().timestamp_millis()));
    Ok(())
}

/// The status as a person reads it: a summary, the organisations with their heads
/// (frozen logs marked), then one row per peer.
fn status_table(s: &pb::NodeStatus, now_ms: i64) -> String {
    let names: std::collections::BTreeMap<Vec<u8>, String> = s
        .organisations
        .iter()
        .map(|o| (o.key.clone(), o.name.clone()))
        .collect();
    let name = |key: &Vec<u8>| names.get(key).cloned().unwrap_or_else(|| hex::encode(key));
    let mut out = String::new();
    let connected = s.peers.iter().filter(|p| p.connected).count();
    let peers = match s.peers.len() {
        0 => "none (this node pulls from no other node)".to_owned(),
        n => format!("{n}, {connected} connected"),
    };
    let frozen = if s.frozen.is_empty() {
        "none".to_owned()
    } else {
        s.frozen.iter().map(&name).collect::<Vec<_>>().join(", ")
    };
    let calendar = if s.calendar_url.is_empty() {
        "not served (no [http] in the node's config)".to_owned()
    } else {
        format!("{}/", s.calendar_url)
    };
    let storage = if s.storage_failed.is_empty() {
        format!("ok, {} MiB free", s.free_disk_bytes >> 20)
    } else {
        format!(
            "FAILED: {} (read-only: every write is refused until the node is restarted; \
             if its disk is full, free space first)",
            s.storage_failed.replace('\n', " ")
        )
    };
    let clock = if !s.clock_problem.is_empty() {
        format!("OUT OF LINE: {}", s.clock_problem)
    } else if !s.clock_warning.is_empty() {
        format!("WARNING: {}", s.clock_warning)
    } else if s.clock_peers == 0 {
        "not compared yet (no peer has answered)".to_owned()
    } else {
        format!(
            "in line with {} peers (median difference {:+.1} s)",
            s.clock_peers,
            s.clock_offset_ms as f64 / 1000.0
        )
    };
    out.push_str(&format!(
        "alliance  {} ({})\nentries   {} (digest {})\nstate     {}\nversion   {}\nstorage   {storage}\nclock     {clock}\npeers     {peers}\nfrozen    {frozen}\ncalendar  {calendar}\n\n",
        s.alliance_name,
        hex::encode(&s.alliance),
        s.entries,
        hex::encode(&s.entries_digest),
        state_digest(s),
        s.version
    ));
    if s.roster_version > 0 || s.open_proposals > 0 {
        // Before the blank line that ends the block above.
        out.pop();
        out.push_str(&format!(
            "roster    version {}, {} open proposal{} (accord roster, accord proposals)\n\n",
            s.roster_version,
            s.open_proposals,
            if s.open_proposals == 1 { "" } else { "s" }
        ));
    }
    let heads: std::collections::BTreeMap<Vec<u8>, u64> =
        s.heads.iter().map(|h| (h.author.clone(), h.seq)).collect();
    let rows: Vec<Vec<String>> = s
        .organisations
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                role_of(o).into(),
                if o.home { "yes" } else { "" }.into(),
                heads.get(&o.key).map(u64::to_string).unwrap_or_default(),
                if s.frozen.contains(&o.key) {
                    "FROZEN"
                } else {
                    ""
                }
                .into(),
                hex::encode(&o.key),
            ]
        })
        .collect();
    out.push_str(&table(
        &["ORGANISATION", "ROLE", "HOME", "HEAD", "LOG", "PUBLIC KEY"],
        &rows,
    ));
    for key in &s.frozen {
        out.push_str(&format!(
            "\nFROZEN: {} signed two different entries with one seq (a fork proof); every node \
             refuses its entries past the fork\n",
            name(key)
        ));
    }
    for lost in &s.lost_entries {
        out.push_str(&format!(
            "\nLOST ENTRIES: the store holds {}'s log up to seq {}, less than the {} it held at \
             the last stop (damage, or files restored from an old copy); the peers refill it\n",
            name(&lost.author),
            lost.stored_seq,
            lost.signed_seq
        ));
    }
    for lost in &s.lost_own_entries {
        let peers = if lost.peer_seq >= lost.signed_seq {
            "a peer has them; they are on their way".to_owned()
        } else if lost.peer_seq > lost.stored_seq {
            format!("peers hold it up to seq {} so far", lost.peer_seq)
        } else {
            "no peer has supplied them yet; if none has them, the identity needs recovery by \
             the alliance: a new key, then `accord propose recover`"
                .to_owned()
        };
        out.push_str(&format!(
            "\nLOST ENTRIES: this node signed {}'s log up to seq {} but its store holds it only \
             up to seq {}; publishing as it waits until peers supply the rest ({peers})\n",
            name(&lost.author),
            lost.signed_seq,
            lost.stored_seq
        ));
    }
    if s.set_aside_count > 0 {
        out.push_str(&format!(
            "\nSET ASIDE: {} entries are stored and relayed but in no view: this release does \
             not know their kind or accept their body (another release signed them)\n",
            s.set_aside_count
        ));
        for a in &s.set_aside {
            out.push_str(&format!(
                "  {} entry {}: {}\n",
                name(&a.author),
                a.seq,
                a.reason.replace('\n', " ")
            ));
        }
        let shown = s.set_aside.len() as u64;
        if s.set_aside_count > shown {
            out.push_str(&format!("  … and {} more\n", s.set_aside_count - shown));
        }
    }
    if !s.peers.is_empty() {
        let rows: Vec<Vec<String>> = s
            .peers
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.address.clone(),
                    if p.connected {
                        "connected"
                    } else if p.last_contact_ms > 0 {
                        "not answering"
                    } else {
                        "down"
                    }
                    .into(),
                    contact_age(p.last_contact_ms, now_ms),
                    p.behind.to_string(),
                    p.received.to_string(),
                    p.accepted.to_string(),
                    p.refused.to_string(),
                    if p.last_error.is_empty() {
                        "-".into()
                    } else {
                        p.last_error.replace('\n', " ")
                    },
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "PEER",
                "ADDRESS",
                "STATE",
                "LAST CONTACT",
                "BEHIND",
                "RECEIVED",
                "NEW",
                "REFUSED",
                "LAST ERROR",
            ],
            &rows,
        ));
        for p in &s.peers {
            for r in &p.refusals {
                let what = if r.held_until_ms != 0 {
                    format!(
                        "held until {} (stamped ahead of this node's clock)",
                        time_ms(r.held_until_ms)
                    )
                } else {
                    format!("refused: {}", r.reason)
                };
                out.push_str(&format!(
                    "{}: entry {} of {} {what}; its later entries come from other peers or once this clears\n",
                    p.name,
                    r.seq,
                    name(&r.author)
                ));
            }
        }
    }
    out
}

/// The state digest with the rules it was computed under, or why there is none.
fn state_digest(s: &pb::NodeStatus) -> String {
    if s.digest.is_empty() {
        return "(digest not asked for)".into();
    }
    let rules = if s.rules_version.is_empty() {
        "rules not given"
    } else {
        s.rules_version.as_str()
    };
    format!(
        "{} (digest of the derived views, {rules})",
        hex::encode(&s.digest)
    )
}

/// How long ago a peer was last heard from, for the status table: "never", "4s ago",
/// "12m ago", "3h ago", "2d ago".
fn contact_age(last_contact_ms: i64, now_ms: i64) -> String {
    if last_contact_ms <= 0 {
        return "never".into();
    }
    let secs = (now_ms - last_contact_ms).max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

pub async fn intentions(
    list: &ListArgs,
    ballot: Option<String>,
    election: Option<String>,
    org: Option<String>,
) -> Result<()> {
    let (client, charter) = connect(list).await?;
    let organisation = match org {
        Some(org) => find(&charter, &org)?.to_vec(),
        None => Vec::new(),
    };
    let request = pb::ListIntentionsRequest {
        ballot: ballot.unwrap_or_default(),
        election: election.unwrap_or_default(),
        organisation,
        ..Default::default()
    };
    let views = all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        let request = pb::ListIntentionsRequest {
            page_token,
            ..request.clone()
        };
        async move {
            let r = ledger
                .list_intentions(request)
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.intentions, r.next_page_token))
        }
    })
    .await?;
    let names = Names(&charter);
    let name = |v: &pb::IntentionView| {
        if v.organisation_name.is_empty() {
            names.name(&v.organisation)
        } else {
            v.organisation_name.clone()
        }
    };
    if list.json {
        let items: Vec<Value> = views
            .iter()
            .map(|v| {
                let i = v.intention.clone().unwrap_or_default();
                json!({
                    "ballot": i.ballot,
                    "ballot_name": ballot_name(&i.ballot),
                    "organisation": name(v),
                    "organisation_id": hex::encode(&v.organisation),
                    "status": status_name(i.status),
                    "candidate": non_empty(&i.candidate),
                    "visibility": visibility_name(i.visibility),
                    "area": non_empty(&i.area),
                    "area_name": non_empty(&area_label(&i.area)),
                    "note": non_empty(&i.note),
                    "entry": hex::encode(&v.entry),
                    "time": time_ms(v.timestamp_ms),
                })
            })
            .collect();
        print_json(&Value::Array(items));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let i = v.intention.clone().unwrap_or_default();
            vec![
                ballot_name(&i.ballot),
                i.ballot,
                name(v),
                status_name(i.status).into(),
                i.candidate,
                area_label(&i.area),
                visibility_name(i.visibility).into(),
                short_time(&time_ms(v.timestamp_ms)),
            ]
        })
        .collect();
    print(&table(
        &[
            "BALLOT",
            "ID",
            "ORGANISATION",
            "STATUS",
            "CANDIDATE",
            "AREA",
            "VISIBILITY",
            "UPDATED",
        ],
        &rows,
    ));
    Ok(())
}

fn clash_request(charter: &Charter, filter: &ClashFilter) -> Result<pb::ListClashesRequest> {
    Ok(pb::ListClashesRequest {
        states: filter
            .state
            .iter()
            .map(|s| clash_state_pb(*s) as i32)
            .collect(),
        election: filter.election.clone().unwrap_or_default(),
        organisation: match &filter.org {
            Some(org) => find(charter, org)?.to_vec(),
            None => Vec::new(),
        },
        ..Default::default()
    })
}

fn clash_party_name(names: &Names, p: &pb::ClashParty) -> String {
    if p.organisation_name.is_empty() {
        names.name(&p.organisation)
    } else {
        p.organisation_name.clone()
    }
}

fn clashes_json(names: &Names, clashes: &[pb::Clash]) -> Value {
    Value::Array(
        clashes
            .iter()
            .map(|c| {
                json!({
                    "ballot": c.ballot,
                    "ballot_name": ballot_name(&c.ballot),
                    "state": clash_state_name(c.state),
                    "nominations_close": non_empty(&c.nominations_close),
                    "deadline_rule": non_empty(&c.deadline_rule),
                    "nation_unknown": !c.nominations_close.is_empty() && nation_unknown(&c.deadline_rule),
                    "areas_disagree": areas_disagree(&c.deadline_rule),
                    "resolution": if c.resolution.is_empty() { Value::Null } else { json!(hex::encode(&c.resolution)) },
                    "parties": c.parties.iter().map(|p| json!({
                        "organisation": clash_party_name(names, p),
                        "organisation_id": hex::encode(&p.organisation),
                        "status": status_name(p.status),
                        "candidate": non_empty(&p.candidate),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn clashes_table(names: &Names, clashes: &[pb::Clash]) -> String {
    let rows: Vec<Vec<String>> = clashes
        .iter()
        .map(|c| {
            let parties = c
                .parties
                .iter()
                .map(|p| format!("{} ({})", clash_party_name(names, p), status_name(p.status)))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                deadline_cell(&c.nominations_close, &c.deadline_rule),
                ballot_name(&c.ballot),
                c.ballot.clone(),
                clash_state_name(c.state).into(),
                parties,
            ]
        })
        .collect();
    table(
        &["NOMINATIONS CLOSE", "BALLOT", "ID", "STATE", "PARTIES"],
        &rows,
    )
}

pub async fn clashes(list: &ListArgs, filter: &ClashFilter) -> Result<()> {
    let (client, charter) = connect(list).await?;
    let request = clash_request(&charter, filter)?;
    let clashes = all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        let request = pb::ListClashesRequest {
            page_token,
            ..request.clone()
        };
        async move {
            let r = ledger
                .list_clashes(request)
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.clashes, r.next_page_token))
        }
    })
    .await?;
    let names = Names(&charter);
    if list.json {
        print_json(&clashes_json(&names, &clashes));
    } else {
        print(&clashes_table(&names, &clashes));
    }
    Ok(())
}

pub async fn watch_clashes(list: &ListArgs, filter: &ClashFilter) -> Result<()> {
    let (mut client, charter) = connect(list).await?;
    let request = clash_request(&charter, filter)?;
    let mut stream = client
        .ledger
        .watch_clashes(request.clone())
        .await
        .map_err(rpc)?
        .into_inner();
    let names = Names(&charter);
    loop {
        let update = tokio::select! {
            update = stream.message() => update.map_err(rpc)?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(mut update) = update else {
            anyhow::bail!("the node ended the watch");
        };
        // Each update is the first page; the rest comes through ListClashes.
        if !update.next_page_token.is_empty() {
            let first = std::mem::take(&mut update.next_page_token);
            let rest = all_pages(|page_token| {
                let mut ledger = client.ledger.clone();
                let request = pb::ListClashesRequest {
                    page_token: if page_token.is_empty() {
                        first.clone()
                    } else {
                        page_token
                    },
                    ..request.clone()
                };
                async move {
                    let r = ledger
                        .list_clashes(request)
                        .await
                        .map_err(rpc)?
                        .into_inner();
                    Ok((r.clashes, r.next_page_token))
                }
            })
            .await?;
            update.clashes.extend(rest);
        }
        if list.json {
            // One JSON document per line, one line per update.
            println(&clashes_json(&names, &update.clashes).to_string());
        } else {
            let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ");
            println(&format!("== {now}: {} clashes", update.clashes.len()));
            print(&clashes_table(&names, &update.clashes));
        }
    }
}

pub async fn resolutions(list: &ListArgs) -> Result<()> {
    let (client, charter) = connect(list).await?;
    let views = all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        let request = pb::ListResolutionsRequest {
            page_token,
            ..Default::default()
        };
        async move {
            let r = ledger
                .list_resolutions(request)
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.resolutions, r.next_page_token))
        }
    })
    .await?;
    let names = Names(&charter);
    if list.json {
        let items: Vec<Value> = views
            .iter()
            .map(|v| {
                let r = v.resolution.clone().unwrap_or_default();
                json!({
                    "id": hex::encode(&v.id),
                    "author": names.name(&v.author),
                    "author_id": hex::encode(&v.author),
                    "ballot": r.ballot,
                    "ballot_name": ballot_name(&r.ballot),
                    "stands": names.parties(&r.stands),
                    "stand_aside": names.parties(&r.stand_aside),
                    "rationale": r.rationale,
                    "state": clash_state_name(v.state),
                    "time": time_ms(v.timestamp_ms),
                })
            })
            .collect();
        print_json(&Value::Array(items));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let r = v.resolution.clone().unwrap_or_default();
            vec![
                short_time(&time_ms(v.timestamp_ms)),
                ballot_name(&r.ballot),
                r.ballot,
                clash_state_name(v.state).into(),
                names.list(&r.stands),
                names.list(&r.stand_aside),
                names.name(&v.author),
                r.rationale,
            ]
        })
        .collect();
    print(&table(
        &[
            "TIME",
            "BALLOT",
            "ID",
            "STATE",
            "STANDS",
            "STANDS ASIDE",
            "BY",
            "RATIONALE",
        ],
        &rows,
    ));
    Ok(())
}

pub async fn statements(list: &ListArgs) -> Result<()> {
    let (client, charter) = connect(list).await?;
    let views = all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        let request = pb::ListStatementsRequest {
            page_token,
            ..Default::default()
        };
        async move {
            let r = ledger
                .list_statements(request)
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.statements, r.next_page_token))
        }
    })
    .await?;
    let names = Names(&charter);
    if list.json {
        let items: Vec<Value> = views
            .iter()
            .map(|v| {
                let s = v.statement.clone().unwrap_or_default();
                json!({
                    "id": hex::encode(&v.id),
                    "author": names.name(&v.author),
                    "author_id": hex::encode(&v.author),
                    "title": s.title,
                    "text": s.text,
                    "cosigners": names.parties(&s.cosigners),
                    "endorsed_by": names.parties(&v.endorsed_by),
                    "supporters": names.parties(&v.supporters),
                    "joint": v.joint,
                    "withdrawn": v.withdrawn,
                    "time": time_ms(v.timestamp_ms),
                })
            })
            .collect();
        print_json(&Value::Array(items));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let s = v.statement.clone().unwrap_or_default();
            let state = if v.withdrawn {
                "withdrawn".to_owned()
            } else if v.joint {
                "joint".to_owned()
            } else if s.cosigners.is_empty() {
                "published".to_owned()
            } else {
                format!("{}/{} co-signed", v.endorsed_by.len(), s.cosigners.len())
            };
            vec![
                hex::encode(&v.id).chars().take(12).collect(),
                short_time(&time_ms(v.timestamp_ms)),
                names.name(&v.author),
                state,
                names.list(&s.cosigners),
                s.title,
            ]
        })
        .collect();
    print(&table(
        &["ID", "TIME", "AUTHOR", "STATE", "CO-SIGNERS", "TITLE"],
        &rows,
    ));
    Ok(())
}

/// "2027-04-12T19:00:00" as "2027-04-12 19:00" (seconds shown only when not zero).
fn local_time(text: &str) -> String {
    let text = text.replacen('T', " ", 1);
    match text.strip_suffix(":00") {
        Some(short) if short.len() == "2027-04-12 19:00".len() => short.to_owned(),
        _ => text,
    }
}

/// The END column: the end time, or for an all-day event "all day" (one day) or the
/// last day.
fn end_column(e: &pb::Event) -> String {
    if e.all_day {
        if e.end == e.start {
            "all day".to_owned()
        } else {
            format!("{} (all day)", e.end)
        }
    } else {
        local_time(&e.end)
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }
}

fn event_json(names: &Names, v: &pb::EventView) -> Value {
    let e = v.event.clone().unwrap_or_default();
    json!({
        "uid": e.uid,
        "author": names.name(&v.author),
        "author_id": hex::encode(&v.author),
        "title": e.title,
        "description": non_empty(&e.description),
        "start": e.start,
        "end": e.end,
        "time_zone": if e.time_zone.is_empty() { "Europe/London".to_owned() } else { e.time_zone },
        "start_utc": v.start_utc,
        "end_utc": v.end_utc,
        "venue": non_empty(&e.venue),
        "area": non_empty(&e.area),
        "organisers": names.parties(&e.organisers),
        "visibility": visibility_name(e.visibility),
        "cancelled": e.cancelled,
        "all_day": e.all_day,
        "sequence": v.sequence,
        "last_modified": time_ms(v.last_modified_ms),
        "entry": hex::encode(&v.entry),
    })
}

pub async fn events(
    list: &ListArgs,
    from: Option<String>,
    to: Option<String>,
    include_cancelled: bool,
) -> Result<()> {
    let (client, charter) = connect(list).await?;
    let request = pb::ListEventsRequest {
        from: from.unwrap_or_default(),
        to: to.unwrap_or_default(),
        include_cancelled,
        ..Default::default()
    };
    let views = all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        let request = pb::ListEventsRequest {
            page_token,
            ..request.clone()
        };
        async move {
            let r = ledger.list_events(request).await.map_err(rpc)?.into_inner();
            Ok((r.events, r.next_page_token))
        }
    })
    .await?;
    let names = Names(&charter);
    if list.json {
        print_json(&Value::Array(
            views.iter().map(|v| event_json(&names, v)).collect(),
        ));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let e = v.event.clone().unwrap_or_default();
            vec![
                local_time(&e.start),
                end_column(&e),
                e.title,
                e.venue,
                area_label(&e.area),
                names.list(&e.organisers),
                if e.cancelled { "cancelled" } else { "" }.into(),
                e.uid,
            ]
        })
        .collect();
    print(&table(
        &[
            "START",
            "END",
            "TITLE",
            "VENUE",
            "AREA",
            "ORGANISERS",
            "STATUS",
            "UID",
        ],
        &rows,
    ));
    Ok(())
}

pub async fn event_clashes(list: &ListArgs) -> Result<()> {
    let (client, charter) = connect(list).await?;
    let clashes = all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        let request = pb::ListEventClashesRequest {
            page_token,
            ..Default::default()
        };
        async move {
            let r = ledger
                .list_event_clashes(request)
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.clashes, r.next_page_token))
        }
    })
    .await?;
    let names = Names(&charter);
    if list.json {
        let items: Vec<Value> = clashes
            .iter()
            .map(|c| {
                json!({
                    "reason": c.reason,
                    "first": c.first.as_ref().map(|v| event_json(&names, v)),
                    "second": c.second.as_ref().map(|v| event_json(&names, v)),
                })
            })
            .collect();
        print_json(&Value::Array(items));
        return Ok(());
    }
    let describe = |v: &Option<pb::EventView>| {
        let Some(v) = v else { return String::new() };
        let e = v.event.clone().unwrap_or_default();
        format!(
            "{} ({}, {}-{})",
            e.title,
            names.name(&v.author),
            local_time(&e.start),
            end_column(&e),
        )
    };
    let rows: Vec<Vec<String>> = clashes
        .iter()
        .map(|c| {
            let venue = c
                .first
                .as_ref()
                .and_then(|v| v.event.as_ref())
                .map(|e| e.venue.clone())
                .unwrap_or_default();
            vec![
                c.reason.clone(),
                venue,
                describe(&c.first),
                describe(&c.second),
            ]
        })
        .collect();
    print(&table(&["SHARED", "VENUE", "FIRST", "SECOND"], &rows));
    Ok(())
}

pub async fn log(list: &ListArgs, author: &str, from_seq: u64, limit: u32) -> Result<()> {
    let (mut client, charter) = connect(list).await?;
    let names = Names(&charter);
    let author = find(&charter, author)?;
    // Pages until `limit` entries or the head; the node cuts pages at 1,000 entries
    // or 3 MiB.
    let limit = limit as usize;
    let mut entries = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let page = client
            .ledger
            .get_log(pb::GetLogRequest {
                author: author.to_vec(),
                from_seq,
                limit: u32::try_from(limit - entries.len()).unwrap_or(u32::MAX),
                page_token,
            })
            .await
            .map_err(rpc)?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() || entries.len() >= limit {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut items = Vec::new();
    for signed in entries {
        let decoded = accord_core::entry::decode(signed.clone(), usize::MAX)?;
        let entry = pb::Entry::decode(signed.entry.as_slice())?;
        let body = Body::decode(entry.kind, &entry.body);
        items.push(json!({
            "seq": decoded.seq(),
            "id": decoded.id().to_string(),
            "prev": if entry.prev.is_empty() { Value::Null } else { json!(hex::encode(&entry.prev)) },
            "time": time_ms(entry.timestamp_ms),
            "kind": body.as_ref().map(Body::kind_name).unwrap_or("invalid"),
            "signature_ok": decoded.verify_signature().is_ok(),
            "summary": match &body {
                Ok(body) => summary(&names, body),
                Err(e) => e.to_string(),
            },
            "body": match &body {
                Ok(body) => serde_json::to_value(body)?,
                Err(e) => json!({"error": e.to_string()}),
            },
        }));
    }
    if list.json {
        print_json(&Value::Array(items));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i["seq"].to_string(),
                short_time(i["time"].as_str().unwrap_or_default()),
                i["kind"].as_str().unwrap_or_default().to_owned(),
                if i["signature_ok"] == Value::Bool(true) {
                    "ok"
                } else {
                    "BAD"
                }
                .to_owned(),
                i["id"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(16)
                    .collect(),
                i["summary"].as_str().unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    print(&table(
        &["SEQ", "TIME", "KIND", "SIGNATURE", "ID", "SUMMARY"],
        &rows,
    ));
    Ok(())
}

/// One line about an entry body, for the log table.
fn summary(names: &Names, body: &Body) -> String {
    let keys = |keys: &[accord_core::PublicId]| {
        keys.iter()
            .map(|k| names.name(k.as_bytes()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match body {
        Body::Statement(s) => s.title.clone(),
        Body::Endorsement { statement } => format!("of statement {}", statement.short()),
        Body::StatementWithdrawal { statement, .. } => {
            format!("of statement {}", statement.short())
        }
        Body::Intention(i) => format!("{} {}", i.ballot, i.status.as_str()),
        Body::Event(e) => format!(
            "{} \"{}\"{}",
            e.uid,
            e.title,
            if e.cancelled { " (cancelled)" } else { "" }
        ),
        Body::Resolution(r) => format!(
            "{}: stands {}; stands aside {}",
            r.ballot,
            keys(&r.stands),
            keys(&r.stand_aside)
        ),
        Body::Proposal(p) => match &p.change {
            accord_core::roster::Change::Admit { name, role, .. } => {
                format!("admit {name} as {}", role.as_str())
            }
            accord_core::roster::Change::Remove {
                organisation,
                up_to_seq,
            } => format!(
                "remove {} (counts to seq {up_to_seq})",
                names.name(organisation.as_bytes())
            ),
            accord_core::roster::Change::SetRole { organisation, role } => format!(
                "make {} a {}",
                names.name(organisation.as_bytes()),
                role.as_str()
            ),
            accord_core::roster::Change::Quorum { rule } => format!("quorum rule {rule}"),
            accord_core::roster::Change::Recover {
                organisation,
                key,
                up_to_seq,
            } => format!(
                "recover {} (counts to seq {up_to_seq}; new log {})",
                names.name(organisation.as_bytes()),
                key
            ),
        },
        Body::Approval { proposal } => format!("of proposal {}", proposal.short()),
        Body::Objection { proposal, .. } => format!("to proposal {}", proposal.short()),
        Body::Leave { .. } => "leaves the alliance".into(),
        Body::NodeAnnouncement(n) => format!(
            "node at {} (certificate {})",
            n.address,
            &hex::encode(n.cert_sha256)[..16]
        ),
        Body::KeyRotation { key } => format!("signs with key {} from the next entry", key.short()),
        Body::Unknown { kind } => format!("kind {kind}"),
    }
}

/// An organisation's standing as the node's roster has it (older nodes: from the
/// `secretary` flag).
fn role_of(o: &pb::Organisation) -> &str {
    match (o.role.as_str(), o.secretary) {
        ("", true) => "secretary",
        ("", false) => "member",
        (role, _) => role,
    }
}

#[cfg(test)]
mod tests {
    use super::{contact_age, status_table};
    use accord_core::pb;

    #[test]
    fn status_table_shows_peers_and_frozen_logs() {
        let now = 1_800_000_000_000;
        let org = |key: u8, name: &str, home: bool| pb::Organisation {
            key: vec![key; 32],
            name: name.into(),
            ec_id: String::new(),
            secretary: false,
            home,
            role: "member".into(),
        };
        let status = pb::NodeStatus {
            alliance: vec![7; 32],
            alliance_name: "Test Alliance".into(),
            heads: vec![
                pb::Head {
                    author: vec![1; 32],
                    seq: 3,
                    id: vec![0; 32],
                },
                pb::Head {
                    author: vec![2; 32],
                    seq: 5,
                    id: vec![0; 32],
                },
            ],
            digest: vec![9; 32],
            entries_digest: vec![8; 32],
            rules_version: "accord-rules/3".into(),
            entries: 8,
            organisations: vec![org(1, "Alpha", true), org(2, "Beta", false)],
            version: "0.1.0".into(),
            calendar_url: "https://calendar.example.org".into(),
            peers: vec![
                pb::PeerStatus {
                    name: "beta".into(),
                    address: "https://127.0.0.1:7401".into(),
                    connected: true,
                    last_contact_ms: now - 2_000,
                    behind: 0,
                    received: 5,
                    accepted: 3,
                    refused: 0,
                    last_error: String::new(),
                    held: 0,
                    refusals: vec![],
                    ..Default::default()
                },
                pb::PeerStatus {
                    name: "gamma".into(),
                    address: "https://127.0.0.1:7402".into(),
                    connected: false,
                    last_contact_ms: 0,
                    behind: 0,
                    received: 0,
                    accepted: 0,
                    refused: 2,
                    last_error: "unavailable: connection refused".into(),
                    held: 0,
                    refusals: vec![pb::PeerRefusal {
                        author: vec![2; 32],
                        seq: 4,
                        reason: "entry body is invalid: x".into(),
                        held_until_ms: 0,
                    }],
                    ..Default::default()
                },
            ],
            frozen: vec![vec![2; 32]],
            storage_failed: String::new(),
            free_disk_bytes: 3 << 30,
            lost_own_entries: vec![],
            lost_entries: vec![],
            clock_offset_ms: 200,
            clock_peers: 2,
            clock_problem: String::new(),
            clock_warning: String::new(),
            set_aside_count: 2,
            set_aside: vec![pb::SetAsideEntry {
                author: vec![1; 32],
                seq: 2,
                id: vec![0; 32],
                kind: 4,
                reason: "entry body is invalid: y".into(),
            }],
            ..Default::default()
        };
        let text = status_table(&status, now);
        let expected = format!(
            "alliance  Test Alliance ({alliance})\n\
             entries   8 (digest {entries_digest})\n\
             state     {digest} (digest of the derived views, accord-rules/3)\n\
             version   0.1.0\n\
             storage   ok, 3072 MiB free\n\
             clock     in line with 2 peers (median difference +0.2 s)\n\
             peers     2, 1 connected\n\
             frozen    Beta\n\
             calendar  https://calendar.example.org/\n\
             \n\
             ORGANISATION  ROLE    HOME  HEAD  LOG     PUBLIC KEY\n\
             Alpha         member  yes   3             {alpha}\n\
             Beta          member        5     FROZEN  {beta}\n\
             \n\
             FROZEN: Beta signed two different entries with one seq (a fork proof); every node \
             refuses its entries past the fork\n\
             \n\
             SET ASIDE: 2 entries are stored and relayed but in no view: this release does not \
             know their kind or accept their body (another release signed them)\n\
             \x20 Alpha entry 2: entry body is invalid: y\n\
             \x20 … and 1 more\n\
             \n\
             PEER   ADDRESS                 STATE      LAST CONTACT  BEHIND  RECEIVED  NEW  REFUSED  LAST ERROR\n\
             beta   https://127.0.0.1:7401  connected  2s ago        0       5         3    0        -\n\
             gamma  https://127.0.0.1:7402  down       never         0       0         0    2        unavailable: connection refused\n\
             gamma: entry 4 of Beta refused: entry body is invalid: x; its later entries come from other peers or once this clears\n",
            alliance = hex::encode([7; 32]),
            digest = hex::encode([9; 32]),
            entries_digest = hex::encode([8; 32]),
            alpha = hex::encode([1; 32]),
            beta = hex::encode([2; 32]),
        );
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn contact_age_is_short_and_rounds_down() {
        let now = 1_800_000_000_000;
        assert_eq!(contact_age(0, now), "never");
        assert_eq!(contact_age(now - 4_999, now), "4s ago");
        assert_eq!(contact_age(now + 500, now), "0s ago");
        assert_eq!(contact_age(now - 12 * 60_000 - 1, now), "12m ago");
        assert_eq!(contact_age(now - 3 * 3_600_000, now), "3h ago");
        assert_eq!(contact_age(now - 2 * 86_400_000, now), "2d ago");
    }
}
