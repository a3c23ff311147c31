//! `accord store check`: a stopped node's store, read from a copy.

use std::path::Path;

use accord_node::NodeConfig;
use accord_node::check::{StoreReport, Verdict, check_store};
use anyhow::{Result, bail};

use crate::render::table;

pub async fn check(config_path: &Path, json: bool, scratch: Option<&Path>) -> Result<()> {
    let checked = match NodeConfig::load(config_path) {
        Ok(config) => check_store(&config, scratch)
            .await
            .map(|report| (config, report)),
        Err(e) => Err(e.to_string()),
    };
    let (config, report) = match checked {
        Ok(checked) => checked,
        Err(error) if json => {
            // One JSON object whatever happens, for scripts.
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "config": config_path.display().to_string(),
                    "sound": false,
                    "error": error,
                }))?
            );
            bail!("{error}");
        }
        Err(error) => bail!("{error}"),
    };
    let charter = &config.charter;
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
        let lost: Vec<serde_json::Value> = report
            .lost
            .iter()
            .map(|l| {
                serde_json::json!({
                    "author": name(&l.author),
                    "author_id": l.author.to_string(),
                    "whole_to": l.whole_to,
                    "expected": l.expected,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "config": config_path.display().to_string(),
                "data_dir": config.data_dir.display().to_string(),
                "node_would": report.node_would,
                "refusal": report.refusal,
                "entries": report.entries,
                "fork_proofs": report.fork_proofs,
                "logs": logs,
                "lost": lost,
                "read_around": report.read_around,
                "snapshots_set_aside": report.snapshots_set_aside,
                "damage": report.damage,
                "sound": report.is_sound(),
            }))?
        );
    } else {
        print_report(&config, &report, &name);
    }
    if !report.is_sound() {
        bail!("{}", advice(config_path, &config, &report));
    }
    Ok(())
}

fn print_report(
    config: &NodeConfig,
    report: &StoreReport,
    name: &dyn Fn(&accord_core::PublicId) -> String,
) {
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
    println!();
    match report.node_would {
        Verdict::Start => println!("a node would start on it, every log whole"),
        Verdict::StartAndRefill => {
            println!(
                "a node would start on it short of these logs, and refill them from its peers:"
            );
            for lost in &report.lost {
                println!(
                    "  {}: whole to seq {}, should hold seq {}",
                    name(&lost.author),
                    lost.whole_to,
                    lost.expected
                );
            }
        }
        Verdict::Refuse => println!("a node would refuse to start on it"),
    }
    for snapshot in &report.snapshots_set_aside {
        println!(
            "sled's snapshot {snapshot} failed its checksum: a node sets it aside and sled \
             rebuilds its index from its log"
        );
    }
    if report.damage.is_empty() {
        println!("no damage found");
    } else {
        println!("\nDAMAGE:");
        for line in &report.damage {
            println!("  {line}");
        }
    }
}

/// The one line `accord store check` ends with on an unsound store: what to run.
fn advice(config_path: &Path, config: &NodeConfig, report: &StoreReport) -> String {
    let dir = config.data_dir.display();
    let rebuild = format!(
        "`accord node --rebuild --config {}` (it keeps the record of what this node signed)",
        config_path.display()
    );
    match report.node_would {
        // The node's own line, naming the real config.
        Verdict::Refuse => {
            let placeholder = format!("--config {}", accord_node::check::CONFIG_PLACEHOLDER);
            let line = report
                .refusal
                .clone()
                .unwrap_or_default()
                .replace(&placeholder, &format!("--config {}", config_path.display()));
            format!("a node would refuse it: {line}")
        }
        Verdict::StartAndRefill => format!(
            "the store in {dir} lost entries of {} logs; a node started on it refuses to sign \
             where it lost its own and refills them all from its peers: start it with `accord \
             node --config {}`",
            report.lost.len(),
            config_path.display()
        ),
        Verdict::Start => format!(
            "the store in {dir} has damage a node reads around ({} problems); rebuild it at \
             a quiet moment with {rebuild}",
            report.damage.len()
        ),
    }
}
