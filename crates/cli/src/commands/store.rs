//! `accord store check`: a stopped node's store, read directly.

use std::path::Path;

use accord_node::NodeConfig;
use accord_node::check::check_store;
use anyhow::{Result, bail};

use crate::render::table;

pub fn check(config_path: &Path, json: bool) -> Result<()> {
    let config = NodeConfig::load(config_path)?;
    let charter = &config.charter;
    let report = check_store(&config.data_dir, charter).map_err(anyhow::Error::msg)?;
    let name = |key: &accord_core::PublicId| {
        charter
            .members()
            .iter()
            .map(|m| (&m.key, &m.name))
            .chain(charter.secretaries().iter().map(|s| (&s.key, &s.name)))
            .find(|(k, _)| *k == key)
            .map_or_else(|| key.to_string(), |(_, n)| n.clone())
    };
    if json {
        let logs: Vec<serde_json::Value> = report
            .logs
            .iter()
            .map(|(author, log)| {
                serde_json::json!({
                    "author": name(author),
                    "author_id": author.to_string(),
                    "entries": log.entries,
                    "last_seq": log.last_seq,
                    "whole_to": log.whole_to,
                    "set_aside": log.set_aside,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "data_dir": config.data_dir.display().to_string(),
                "entries": report.entries,
                "fork_proofs": report.fork_proofs,
                "logs": logs,
                "damage": report.damage,
                "sound": report.is_sound(),
            }))?
        );
    } else {
        println!(
            "store     {}\nentries   {} in {} logs, {} fork proofs\n",
            config.data_dir.display(),
            report.entries,
            report.logs.len(),
            report.fork_proofs
        );
        let rows: Vec<Vec<String>> = report
            .logs
            .iter()
            .map(|(author, log)| {
                vec![
                    name(author),
                    log.entries.to_string(),
                    log.last_seq.to_string(),
                    log.whole_to.to_string(),
                    log.set_aside.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "ORGANISATION",
                    "ENTRIES",
                    "LAST SEQ",
                    "WHOLE TO",
                    "SET ASIDE"
                ],
                &rows
            )
        );
        if report.is_sound() {
            println!("\nno damage found");
        } else {
            println!("\nDAMAGE:");
            for line in &report.damage {
                println!("  {line}");
            }
        }
    }
    if !report.is_sound() {
        bail!(
            "the store in {} is damaged ({} problem{}). Each log is sound up to WHOLE TO; to \
             rebuild the store from the peers, move the data directory aside and start the \
             node (deploy/README.md, \"Damaged stores\")",
            config.data_dir.display(),
            report.damage.len(),
            if report.damage.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
