//! Commands that append entries: intentions, resolutions, statements, endorsements,
//! withdrawals, events, and entries signed elsewhere.

use std::path::Path;

use accord_core::pb::publish_request::Body;
use accord_core::{Charter, PublicId, pb};
use anyhow::{Context, Result, bail};
use prost::Message;
use serde_json::json;

use crate::cli::{ClientArgs, EventFields, PublishArgs, Status, Visibility};
use crate::client::{Client, find, rpc};
use crate::render::{Names, print_json, println};

pub struct IntentionArgs {
    pub ballot: String,
    pub status: Status,
    pub candidate: Option<String>,
    pub visibility: Option<Visibility>,
    pub area: Option<String>,
    pub note: Option<String>,
}

pub fn status_pb(status: Status) -> pb::IntentionStatus {
    match status {
        Status::Considering => pb::IntentionStatus::Considering,
        Status::Intends => pb::IntentionStatus::Intends,
        Status::Confirmed => pb::IntentionStatus::Confirmed,
        Status::Withdrawn => pb::IntentionStatus::Withdrawn,
        Status::StoodAside => pb::IntentionStatus::StoodAside,
    }
}

pub fn visibility_pb(visibility: Option<Visibility>) -> pb::Visibility {
    match visibility {
        None => pb::Visibility::Unspecified,
        Some(Visibility::Alliance) => pb::Visibility::Alliance,
        Some(Visibility::Public) => pb::Visibility::Public,
    }
}

/// A connected client, the charter, and the identity to publish as.
struct Publisher {
    client: Client,
    charter: Charter,
    roster: pb::RosterView,
    author: PublicId,
    json: bool,
}

impl Publisher {
    async fn new(args: &PublishArgs) -> Result<Self> {
        let mut client = Client::connect(&args.client.config_path()?).await?;
        let charter = client.charter().await?;
        let author = client.publishing_author(args.as_.as_deref()).await?;
        let roster = client.roster().await?;
        Ok(Self {
            client,
            charter,
            roster,
            author,
            json: args.json,
        })
    }

    /// Organisations by name or key: of the roster (so admitted after the charter
    /// too), else of the charter.
    fn keys(&self, names: &[String]) -> Result<Vec<Vec<u8>>> {
        names
            .iter()
            .map(
                |n| match crate::client::roster_organisation(&self.roster, n) {
                    Some(org) => Ok(org.key.clone()),
                    None => find(&self.charter, n).map(|k| k.to_vec()),
                },
            )
            .collect()
    }

    async fn publish(&mut self, body: Body) -> Result<()> {
        let kind = match &body {
            Body::Statement(_) => "statement",
            Body::Endorsement(_) => "endorsement",
            Body::StatementWithdrawal(_) => "statement withdrawal",
            Body::Intention(_) => "intention",
            Body::Event(_) => "event",
            Body::Resolution(_) => "resolution",
        };
        let response = publish(&mut self.client, self.author, body).await?;
        let names = Names(&self.charter);
        if self.json {
            print_json(&json!({
                "id": hex::encode(&response.id),
                "author": names.name(&response.author),
                "author_id": hex::encode(&response.author),
                "seq": response.seq,
            }));
        } else {
            println(&format!(
                "published {kind} {} as {} (seq {})",
                hex::encode(&response.id),
                names.name(&response.author),
                response.seq
            ));
        }
        Ok(())
    }
}

/// Publishes one body as `author`.
pub async fn publish(
    client: &mut Client,
    author: PublicId,
    body: Body,
) -> Result<pb::PublishResponse> {
    Ok(client
        .ledger
        .publish(pb::PublishRequest {
            author: author.to_vec(),
            body: Some(body),
        })
        .await
        .map_err(rpc)?
        .into_inner())
}

pub async fn intention(args: &PublishArgs, i: IntentionArgs) -> Result<()> {
    let mut p = Publisher::new(args).await?;
    p.publish(Body::Intention(pb::Intention {
        ballot: i.ballot,
        status: status_pb(i.status) as i32,
        candidate: i.candidate.unwrap_or_default(),
        visibility: visibility_pb(i.visibility) as i32,
        area: i.area.unwrap_or_default(),
        note: i.note.unwrap_or_default(),
    }))
    .await
}

pub async fn resolve(
    args: &PublishArgs,
    ballot: String,
    stands: &[String],
    stand_aside: &[String],
    rationale: String,
) -> Result<()> {
    let mut p = Publisher::new(args).await?;
    let body = Body::Resolution(pb::Resolution {
        ballot,
        stands: p.keys(stands)?,
        stand_aside: p.keys(stand_aside)?,
        rationale,
    });
    p.publish(body).await
}

pub async fn statement(
    args: &PublishArgs,
    title: String,
    text: String,
    cosigners: &[String],
) -> Result<()> {
    let mut p = Publisher::new(args).await?;
    let body = Body::Statement(pb::Statement {
        title,
        text,
        cosigners: p.keys(cosigners)?,
    });
    p.publish(body).await
}

/// A statement id from full hex or a unique prefix of a listed statement.
async fn statement_id(client: &mut Client, text: &str) -> Result<Vec<u8>> {
    let wanted = text.trim().to_lowercase();
    if wanted.len() == 64 {
        return hex::decode(&wanted).with_context(|| format!("{text:?} is not a statement id"));
    }
    if wanted.is_empty() || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{text:?} is not a statement id (hex)");
    }
    let statements = crate::commands::query::all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        async move {
            let r = ledger
                .list_statements(pb::ListStatementsRequest {
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.statements, r.next_page_token))
        }
    })
    .await?;
    let matches: Vec<&pb::StatementView> = statements
        .iter()
        .filter(|s| hex::encode(&s.id).starts_with(&wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!("no statement id starts with {wanted}"),
        _ => bail!("several statement ids start with {wanted}; give more digits"),
    }
}

pub async fn endorse(args: &PublishArgs, id: &str) -> Result<()> {
    let mut p = Publisher::new(args).await?;
    let statement = statement_id(&mut p.client, id).await?;
    p.publish(Body::Endorsement(pb::Endorsement { statement }))
        .await
}

pub async fn withdraw(args: &PublishArgs, id: &str, reason: String) -> Result<()> {
    let mut p = Publisher::new(args).await?;
    let statement = statement_id(&mut p.client, id).await?;
    p.publish(Body::StatementWithdrawal(pb::StatementWithdrawal {
        statement,
        reason,
    }))
    .await
}

pub async fn event(args: &PublishArgs, e: EventFields) -> Result<()> {
    let mut p = Publisher::new(args).await?;
    let mut organisers = vec![p.author.to_vec()];
    for key in p.keys(&e.organiser)? {
        if !organisers.contains(&key) {
            organisers.push(key);
        }
    }
    p.publish(Body::Event(pb::Event {
        uid: e.uid,
        title: e.title,
        description: e.description.unwrap_or_default(),
        start: e.start,
        end: e.end.unwrap_or_default(),
        time_zone: e.time_zone.unwrap_or_default(),
        venue: e.venue.unwrap_or_default(),
        area: e.area.unwrap_or_default(),
        organisers,
        visibility: visibility_pb(e.visibility) as i32,
        cancelled: false,
        all_day: e.all_day,
    }))
    .await
}

pub async fn cancel_event(args: &PublishArgs, uid: &str) -> Result<()> {
    let mut p = Publisher::new(args).await?;
    let events = crate::commands::query::all_pages(|page_token| {
        let mut ledger = p.client.ledger.clone();
        async move {
            let r = ledger
                .list_events(pb::ListEventsRequest {
                    include_cancelled: true,
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.events, r.next_page_token))
        }
    })
    .await?;
    let author = p.author.to_vec();
    let Some(mut event) = events
        .into_iter()
        .find(|v| v.author == author && v.event.as_ref().is_some_and(|e| e.uid == uid))
        .and_then(|v| v.event)
    else {
        bail!(
            "{} has no event with uid {uid:?}",
            Names(&p.charter).name(&author)
        );
    };
    if event.cancelled {
        bail!("event {uid:?} is already cancelled");
    }
    event.cancelled = true;
    p.publish(Body::Event(event)).await
}

pub async fn submit(args: &ClientArgs, file: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let entry = pb::SignedEntry::decode(bytes.as_slice())
        .with_context(|| format!("{} does not hold a SignedEntry", file.display()))?;
    let mut client = Client::connect(&args.config_path()?).await?;
    let response = client
        .ledger
        .submit(pb::SubmitRequest { entry: Some(entry) })
        .await
        .map_err(rpc)?
        .into_inner();
    if json {
        print_json(&json!({
            "id": hex::encode(&response.id),
            "author_id": hex::encode(&response.author),
            "seq": response.seq,
        }));
    } else {
        println(&format!(
            "submitted {} (author {} seq {})",
            hex::encode(&response.id),
            hex::encode(&response.author),
            response.seq
        ));
    }
    Ok(())
}
