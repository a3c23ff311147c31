//! `accord feed`: members' calendar links (a secret token in the URL) — make one,
//! list them, revoke one.

use accord_core::pb;
use anyhow::Result;
use serde_json::json;

use crate::cli::ListArgs;
use crate::client::{Client, rpc};
use crate::render::{print_json, println, short_time, table, time_ms};

fn view(link: &pb::FeedLink) -> serde_json::Value {
    let mut v = json!({
        "id": link.id,
        "label": link.label,
        "created": time_ms(link.created_ms),
        "revoked": (link.revoked_ms != 0).then(|| time_ms(link.revoked_ms)),
    });
    if !link.token.is_empty() {
        v["page_url"] = json!(link.page_url);
        v["feed_url"] = json!(link.feed_url);
        v["webcal_url"] = json!(link.webcal_url);
    }
    v
}

pub async fn link(list: &ListArgs, label: &str) -> Result<()> {
    let mut client = Client::connect(&list.client.config_path()?).await?;
    let link = client
        .ledger
        .create_feed_link(pb::CreateFeedLinkRequest {
            label: label.to_owned(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    if list.json {
        print_json(&view(&link));
        return Ok(());
    }
    println(&format!(
        "Feed link {} for {:?}. Send these to the member only; anyone with them sees \
         the alliance's members-only events and clash board.\n\n\
         subscribe (calendar apps): {}\n\
         feed address (Google Calendar: Other calendars > From URL): {}\n\
         web page: {}\n\n\
         Revoke with: accord feed revoke {}",
        link.id, link.label, link.webcal_url, link.feed_url, link.page_url, link.id
    ));
    Ok(())
}

pub async fn revoke(list: &ListArgs, link: &str) -> Result<()> {
    let mut client = Client::connect(&list.client.config_path()?).await?;
    let revoked = client
        .ledger
        .revoke_feed_link(pb::RevokeFeedLinkRequest {
            link: link.to_owned(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    if list.json {
        print_json(&view(&revoked));
    } else {
        println(&format!(
            "revoked feed link {} ({}): its addresses now answer 404",
            revoked.id, revoked.label
        ));
    }
    Ok(())
}

pub async fn list(list: &ListArgs) -> Result<()> {
    let client = Client::connect(&list.client.config_path()?).await?;
    let links = crate::commands::query::all_pages(|page_token| {
        let mut ledger = client.ledger.clone();
        async move {
            let r = ledger
                .list_feed_links(pb::ListFeedLinksRequest {
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(rpc)?
                .into_inner();
            Ok((r.links, r.next_page_token))
        }
    })
    .await?;
    if list.json {
        print_json(&serde_json::Value::Array(links.iter().map(view).collect()));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = links
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                short_time(&time_ms(l.created_ms)),
                if l.revoked_ms == 0 {
                    "live".to_owned()
                } else {
                    format!("revoked {}", short_time(&time_ms(l.revoked_ms)))
                },
                l.label.clone(),
            ]
        })
        .collect();
    crate::render::print(&table(&["ID", "CREATED", "STATE", "LABEL"], &rows));
    Ok(())
}
