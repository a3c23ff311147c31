//! `accord backup`, `backup verify`, `restore` and `export`: backups of a running
//! node through its API, checked offline, restored into an empty data directory,
//! and exported as JSON lines anyone can verify.

use std::io::Write;
use std::path::{Path, PathBuf};

use accord_core::pb;
use accord_node::NodeConfig;
use accord_node::backup::{self, Verified};
use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;

use crate::cli::{ClientArgs, ExportFormat};
use crate::client::{Client, rpc};

/// A `Read` over chunks arriving on a channel (the Backup stream, pumped by an async
/// task), for the blocking readers of the backup format.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Opens the node's Backup stream.
async fn open_stream(client: &ClientArgs) -> Result<tonic::Streaming<pb::BackupChunk>> {
    let mut client = Client::connect(&client.config_path()?).await?;
    Ok(client
        .ledger
        .backup(pb::BackupRequest {})
        .await
        .map_err(rpc)?
        .into_inner())
}

pub async fn backup(client: &ClientArgs, out: &Path) -> Result<()> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} is not a file name", out.display()))?;
    let partial = out.with_file_name(format!(".{name}.partial"));
    let mut stream = open_stream(client).await?;
    let mut file = {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
        options
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?
    };
    let written = async {
        while let Some(chunk) = stream.message().await.map_err(rpc)? {
            file.write_all(&chunk.data)
                .with_context(|| format!("cannot write {}", partial.display()))?;
        }
        file.sync_all()
            .with_context(|| format!("cannot write {}", partial.display()))?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let verified = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || backup::verify(&partial)).await?
    };
    let verified = match verified {
        Ok(verified) => verified,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bail!("the backup the node sent does not verify: {e}");
        }
    };
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup written to {} ({size} bytes), verified:",
        out.display()
    );
    print_summary(&verified);
    Ok(())
}

fn print_summary(verified: &Verified) {
    let m = &verified.manifest;
    let taken = chrono::DateTime::from_timestamp_millis(m.created_ms)
        .map_or_else(|| m.created_ms.to_string(), |t| t.to_rfc3339());
    println!(
        "alliance        {} ({})",
        verified.charter.name(),
        m.alliance
    );
    println!("taken           {taken} by release {}", m.release);
    println!(
        "entries         {} in {} logs, {} fork proofs",
        m.entries,
        m.heads.len(),
        m.fork_proofs
    );
    println!("entries digest  {}", m.entries_digest);
    let digest_note = match verified.digest_matches() {
        Some(true) => "matches",
        Some(false) => "DIFFERS from the rebuilt state",
        None => "not compared: other rules",
    };
    println!(
        "state digest    {} ({}, {digest_note})",
        m.digest, m.rules_version
    );
    println!("checksum        {}", hex::encode(verified.checksum));
}

pub async fn verify(file: &Path, json: bool) -> Result<()> {
    let path = file.to_path_buf();
    let verified = tokio::task::spawn_blocking(move || backup::verify(&path)).await?;
    let verified = verified.with_context(|| format!("{}", file.display()))?;
    if verified.digest_matches() == Some(false) {
        bail!(
            "{}: the state rebuilt from the backup does not have the manifest's state digest",
            file.display()
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": file.display().to_string(),
                "sound": true,
                "alliance_name": verified.charter.name(),
                "checksum": hex::encode(verified.checksum),
                "manifest": verified.manifest,
            }))?
        );
    } else {
        println!("{}: sound", file.display());
        print_summary(&verified);
    }
    Ok(())
}

pub async fn restore(file: &Path, config_path: &Path) -> Result<()> {
    let config = NodeConfig::load(config_path)?;
    let data_dir = config.data_dir.clone();
    let path = file.to_path_buf();
    let identities: Vec<_> = config.identities.iter().map(|i| i.public_id()).collect();
    let restored = tokio::task::spawn_blocking(move || backup::restore(&path, &config))
        .await?
        .with_context(|| format!("cannot restore {}", file.display()))?;
    let charter = &restored.verified.charter;
    let name = |key: &accord_core::PublicId| {
        charter
            .name_of(key)
            .map_or_else(|| key.to_string(), str::to_owned)
    };
    println!("restored {} into {}:", file.display(), data_dir.display());
    print_summary(&restored.verified);
    for (id, signed, in_backup) in &restored.record_ahead {
        println!(
            "note: this node had signed {} up to seq {signed}, the backup holds it to seq \
             {in_backup}: the node will refuse to publish as it until its peers supply seqs \
             {}..={signed}",
            name(id),
            in_backup + 1
        );
    }
    if !restored.record_kept && !identities.is_empty() {
        println!(
            "note: no record of what this node signed was kept (signed-heads.a/.b); if it \
             signed entries after this backup was taken, start it with its peers reachable: \
             publishes wait up to 10 s for a peer's heads and are refused while a peer holds \
             more of the node's own logs (deploy/README.md, \"Restore\")"
        );
    }
    println!(
        "start the node as usual: accord node --config {}",
        config_path.display()
    );
    Ok(())
}

/// The organisations' names: the charter's, and those admitted since.
type Names = std::collections::BTreeMap<accord_core::PublicId, String>;

/// The name an admission proposal in the encoded `SignedEntry` `bytes` gives a key.
fn admitted_name(
    charter: &accord_core::Charter,
    bytes: &[u8],
) -> Option<(accord_core::PublicId, String)> {
    let max = charter.rules().max_entry_bytes as usize;
    let decoded = accord_core::entry::decode_bytes(bytes, max).ok()?;
    match decoded.check_body().ok()?.governance()? {
        accord_core::roster::Action::Propose(accord_core::roster::Proposal {
            change: accord_core::roster::Change::Admit { name, key, .. },
            ..
        }) => Some((key, name)),
        _ => None,
    }
}

/// One exported line for the encoded `SignedEntry` `bytes`.
fn export_line(
    charter: &accord_core::Charter,
    names: &Names,
    bytes: &[u8],
) -> Result<String, String> {
    let max = charter.rules().max_entry_bytes as usize;
    let decoded = accord_core::entry::decode_bytes(bytes, max)
        .map_err(|e| format!("an entry does not decode: {e}"))?;
    let signed = pb::SignedEntry::decode(bytes).map_err(|e| e.to_string())?;
    let entry = pb::Entry::decode(signed.entry.as_slice()).map_err(|e| e.to_string())?;
    let kind = match pb::EntryKind::try_from(entry.kind) {
        Ok(k) => k
            .as_str_name()
            .trim_start_matches("ENTRY_KIND_")
            .to_lowercase(),
        Err(_) => format!("unknown-{}", entry.kind),
    };
    let author = decoded.author();
    let mut line = serde_json::json!({
        "id": hex::encode(decoded.id().as_bytes()),
        "author": charter
            .name_of(&author)
            .or_else(|| names.get(&author).map(String::as_str))
            .unwrap_or(""),
        // The key that verifies `signature`: the author's own until it rotated.
        "key": decoded.signer().to_string(),
        "seq": decoded.seq(),
        "prev": decoded.prev().map(|p| hex::encode(p.as_bytes())).unwrap_or_default(),
        "timestamp_ms": entry.timestamp_ms,
        "kind": kind,
        "body": serde_json::Value::Null,
        "entry": BASE64.encode(decoded.signed_message()),
        "signature": BASE64.encode(&signed.signature),
    });
    if decoded.signer() != author {
        line["author_key"] = serde_json::Value::String(author.to_string());
    }
    match decoded.check_body() {
        Ok(body) => {
            line["body"] = serde_json::to_value(&body).map_err(|e| e.to_string())?;
        }
        Err(e) => line["body_error"] = serde_json::Value::String(e.to_string()),
    }
    serde_json::to_string(&line).map_err(|e| e.to_string())
}

pub async fn export(
    client: &ClientArgs,
    format: ExportFormat,
    out: Option<&Path>,
    from_backup: Option<&Path>,
) -> Result<()> {
    let ExportFormat::Jsonl = format;
    let sink: Box<dyn Write + Send> = match out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut sink = std::io::BufWriter::new(sink);
    let out_path: Option<PathBuf> = out.map(Path::to_path_buf);
    // Organisations admitted after the charter are named by the roster (from a
    // node) or by the admissions in the backup (read once before writing).
    let mut names = Names::new();
    match from_backup {
        Some(file) => {
            let input = std::fs::File::open(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            backup::read_entries(
                std::io::BufReader::with_capacity(1 << 20, input),
                |charter, bytes| {
                    names.extend(admitted_name(charter, &bytes));
                    Ok(())
                },
            )
            .with_context(|| format!("{}", file.display()))?;
        }
        None => {
            let roster = Client::connect(&client.config_path()?)
                .await?
                .roster()
                .await?;
            for o in roster.organisations {
                if let Ok(key) = accord_core::PublicId::from_slice(&o.key) {
                    names.insert(key, o.name);
                }
            }
        }
    }
    let mut write_all = move |input: Box<dyn std::io::Read + Send>| -> Result<u64> {
        let mut count = 0u64;
        backup::read_entries(input, |charter, bytes| {
            let line = export_line(charter, &names, &bytes)?;
            writeln!(sink, "{line}").map_err(|e| e.to_string())?;
            count += 1;
            Ok(())
        })?;
        sink.flush()?;
        Ok(count)
    };
    let count = match from_backup {
        Some(file) => {
            let input = std::fs::File::open(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let input: Box<dyn std::io::Read + Send> =
                Box::new(std::io::BufReader::with_capacity(1 << 20, input));
            tokio::task::spawn_blocking(move || write_all(input))
                .await?
                .with_context(|| format!("{}", file.display()))?
        }
        None => {
            let mut stream = open_stream(client).await?;
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let reader = ChunkReader {
                rx,
                chunk: Vec::new(),
                at: 0,
            };
            let writing = tokio::task::spawn_blocking(move || write_all(Box::new(reader)));
            loop {
                let next = match stream.message().await {
                    Ok(Some(chunk)) => Ok(chunk.data),
                    Ok(None) => break,
                    Err(status) => Err(rpc(status).to_string()),
                };
                let failed = next.is_err();
                // The writer stops (and drops the receiver) on an error of its own.
                if tx.send(next).await.is_err() || failed {
                    break;
                }
            }
            drop(tx);
            writing.await??
        }
    };
    if let Some(path) = out_path {
        eprintln!("exported {count} entries to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
    use accord_core::{Charter, Identity, pb};
    use prost::Message;

    use super::*;

    /// An organisation admitted after the charter is named in the export by its
    /// admission, not left blank.
    #[test]
    fn admitted_organisations_are_named_in_the_export() {
        let ids: Vec<Identity> = (1..=4u8).map(|n| Identity::from_seed([n; 32])).collect();
        let member = |i: usize, name: &str| CharterMember {
            name: name.into(),
            key: ids[i].public_id(),
            ec_id: None,
        };
        let charter = Charter::from_bytes(
            CharterDoc {
                accord_charter: 1,
                name: "Test".into(),
                members: vec![member(0, "Alpha"), member(1, "Beta")],
                secretaries: vec![CharterSecretary {
                    name: "Sec".into(),
                    key: ids[2].public_id(),
                }],
                rules: Rules::default(),
            }
            .to_file_bytes(),
        )
        .unwrap();
        let proposal = pb::Proposal {
            roster_version: 0,
            change: Some(pb::proposal::Change::Admit(pb::Admit {
                name: "Delta".into(),
                key: ids[3].public_id().to_vec(),
                role: pb::Role::Member as i32,
                ..Default::default()
            })),
            rationale: String::new(),
        };
        let sign = |who: usize, kind: pb::EntryKind, body: Vec<u8>| {
            accord_core::entry::sign(&ids[who], charter.id(), None, 1_000, kind as i32, body)
                .encode_to_vec()
        };
        let admission = sign(0, pb::EntryKind::Proposal, proposal.encode_to_vec());
        let names: Names = admitted_name(&charter, &admission).into_iter().collect();
        assert_eq!(
            names.get(&ids[3].public_id()).map(String::as_str),
            Some("Delta")
        );
        let (kind, body) =
            accord_core::body::encode(&pb::publish_request::Body::Intention(pb::Intention {
                ballot: "local.leeds.kirkstall.2027-05-06".into(),
                status: pb::IntentionStatus::Considering as i32,
                ..Default::default()
            }));
        let by_delta = sign(3, kind, body);
        let line: serde_json::Value =
            serde_json::from_str(&export_line(&charter, &names, &by_delta).unwrap()).unwrap();
        assert_eq!(line["author"], "Delta", "{line}");
        let by_alpha = export_line(&charter, &Names::new(), &admission).unwrap();
        assert!(by_alpha.contains("\"author\":\"Alpha\""), "{by_alpha}");
    }
}
