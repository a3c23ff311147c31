//! Nodes in the roster and joining an alliance: `accord announce` (the node's
//! address and certificate, signed into the roster), `accord invite` (an invitation
//! file from a member's or secretary's node) and `accord join` (a new organisation's
//! folder made from an invitation). ARCHITECTURE.md, "Nodes in the roster".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use accord_core::{Charter, pb};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::{ClientArgs, PublishArgs};
use crate::client::{Client, rpc};
use crate::commands::governance::{connect, report};
use crate::commands::setup::{cert_fingerprint, new_token, token_sha256, write_new_identity};
use crate::demo::toml_string;
use crate::files;
use crate::render::{print_json, println};

/// `accord announce`: signs the node's address and certificate fingerprint.
pub async fn announce(
    args: &PublishArgs,
    address: Option<String>,
    cert_sha256: Option<String>,
) -> Result<()> {
    let cert = match cert_sha256 {
        Some(text) => accord_node::tls::parse_fingerprint(&text)
            .ok_or_else(|| anyhow!("--cert-sha256 {text:?}: 64 hex digits (`accord tls show`)"))?
            .to_vec(),
        None => Vec::new(),
    };
    if let Some(a) = &address {
        accord_core::roster::check_node_address(a).map_err(|e| anyhow!("--address: {e}"))?;
    }
    let (mut client, author) = connect(args).await?;
    let response = client
        .ledger
        .announce(pb::AnnounceRequest {
            author,
            address: address.unwrap_or_default(),
            cert_sha256: cert,
        })
        .await
        .map_err(rpc)?
        .into_inner();
    report(args, "node announcement", &response);
    Ok(())
}

/// The invitation file (JSON): what a new organisation needs to join.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// Always "accord-invitation-1".
    pub format: String,
    /// The alliance id (SHA-256 of the charter's bytes), hex.
    pub alliance: String,
    pub alliance_name: String,
    /// The organisation whose node made it.
    pub invited_by: String,
    /// The roster's version and the entries digest (hex) when it was made.
    pub roster_version: u64,
    pub entries_digest: String,
    /// The charter file's contents, exactly (its hash is the alliance id).
    pub charter: String,
    /// One node of the alliance to pull from first: `host:port` and the SHA-256 (hex)
    /// of its certificate.
    pub peer: InvitationPeer,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitationPeer {
    pub address: String,
    pub cert_sha256: String,
}

const FORMAT: &str = "accord-invitation-1";

/// `accord invite`: writes an invitation file from the node's `GetInvitation`.
pub async fn invite(client: &ClientArgs, out: &Path, force: bool, json: bool) -> Result<()> {
    let mut client = Client::connect(&client.config_path()?).await?;
    let i = client
        .ledger
        .get_invitation(pb::GetInvitationRequest {})
        .await
        .map_err(rpc)?
        .into_inner();
    let charter = Charter::from_bytes(i.charter.clone())
        .map_err(|e| anyhow!("the node sent a charter that does not parse: {e}"))?;
    let text = String::from_utf8(i.charter)
        .map_err(|_| anyhow!("the node's charter is not UTF-8 text"))?;
    let invitation = Invitation {
        format: FORMAT.into(),
        alliance: charter.id().to_string(),
        alliance_name: charter.name().to_owned(),
        invited_by: i.invited_by,
        roster_version: i.roster_version,
        entries_digest: hex::encode(&i.entries_digest),
        charter: text,
        peer: InvitationPeer {
            address: i.peer_address,
            cert_sha256: hex::encode(&i.peer_cert_sha256),
        },
    };
    let mut bytes = serde_json::to_vec_pretty(&invitation)?;
    bytes.push(b'\n');
    files::write_new(out, &bytes, force)?;
    if json {
        print_json(&json!({
            "file": out.display().to_string(),
            "alliance": invitation.alliance,
            "alliance_name": invitation.alliance_name,
            "invited_by": invitation.invited_by,
            "roster_version": invitation.roster_version,
            "peer_address": invitation.peer.address,
            "peer_cert_sha256": invitation.peer.cert_sha256,
        }));
    } else {
        println(&format!(
            "wrote the invitation {} to {} (roster version {}); send it to the new \
             organisation, which runs `accord join --invitation FILE --dir DIR`",
            out.display(),
            invitation.alliance_name,
            invitation.roster_version
        ));
    }
    Ok(())
}

/// Reads and checks an invitation file: the charter's hash is the alliance id.
pub fn read_invitation(path: &Path) -> Result<(Invitation, Charter)> {
    let text = files::read_to_string(path)?;
    let invitation: Invitation = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an invitation file", path.display()))?;
    if invitation.format != FORMAT {
        bail!(
            "{}: format {:?} is not {FORMAT:?}",
            path.display(),
            invitation.format
        );
    }
    let charter = Charter::from_bytes(invitation.charter.clone().into_bytes())
        .map_err(|e| anyhow!("{}: the charter does not parse: {e}", path.display()))?;
    if charter.id().to_string() != invitation.alliance {
        bail!(
            "{}: the charter's id is {}, not the alliance {} it names (the file was altered)",
            path.display(),
            charter.id(),
            invitation.alliance
        );
    }
    accord_core::roster::check_node_address(&invitation.peer.address)
        .map_err(|e| anyhow!("{}: peer: {e}", path.display()))?;
    if accord_node::tls::parse_fingerprint(&invitation.peer.cert_sha256).is_none() {
        bail!("{}: peer.cert_sha256 is not 64 hex digits", path.display());
    }
    Ok((invitation, charter))
}

pub struct JoinArgs {
    pub invitation: PathBuf,
    pub dir: PathBuf,
    pub name: Option<String>,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub json: bool,
}

/// `accord join`: a new organisation's folder, from an invitation.
pub fn join(args: JoinArgs) -> Result<()> {
    let (invitation, charter) = read_invitation(&args.invitation)?;
    let dir = &args.dir;
    let name = match &args.name {
        Some(n) => n.trim().to_owned(),
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("give the organisation's --name"))?,
    };
    if name.is_empty() || name.chars().count() > accord_core::roster::MAX_NAME {
        bail!(
            "--name must be 1 to {} characters",
            accord_core::roster::MAX_NAME
        );
    }
    let advertise = match &args.advertise {
        Some(a) => a.clone(),
        None if !args.listen.ip().is_unspecified() && args.listen.port() != 0 => {
            args.listen.to_string()
        }
        None => bail!(
            "--listen {} names no address peers can dial: give --advertise HOST:PORT",
            args.listen
        ),
    };
    accord_core::roster::check_node_address(&advertise).map_err(|e| anyhow!("--advertise: {e}"))?;
    if dir.join("node.toml").exists() {
        bail!(
            "{} already holds a node.toml: join into an empty folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_path = dir.join("key.pem");
    let identity = write_new_identity(&key_path, false)?;
    let host = advertise
        .rsplit_once(':')
        .map_or(advertise.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let (cert_pem, key_pem) = accord_node::tls::generate(&[host])?;
    files::write_secret(&dir.join("tls/node.key"), key_pem.as_bytes(), false)?;
    files::write_new(&dir.join("tls/node.crt"), cert_pem.as_bytes(), false)?;
    let cert = hex::encode(cert_fingerprint(&dir.join("tls/node.crt"))?);
    let token = new_token()?;
    files::write_secret(&dir.join("token"), format!("{token}\n").as_bytes(), false)?;
    files::write_new(&dir.join("charter.json"), charter.bytes(), false)?;
    let key = identity.public_id().to_string();
    let node_toml = format!(
        "# Written by `accord join` from an invitation by {invited_by}\n\
         # (deploy/node-toml.md describes every key).\n\
         data_dir = \"data\"\n\
         listen = \"{listen}\"\n\
         advertise = {advertise}\n\
         charter = \"charter.json\"\n\
         identities = [\"key.pem\"]\n\n\
         [[operators]]\n\
         name = {operator}\n\
         token_sha256 = \"{token_sha}\"\n\
         identities = [\"{key}\"]\n\n\
         [tls]\n\
         cert = \"tls/node.crt\"\n\
         key = \"tls/node.key\"\n\n\
         # The inviting node. Once this organisation is admitted, every node of the\n\
         # roster is pinned and dialled too.\n\
         [[peers]]\n\
         name = {peer_name}\n\
         address = {peer_address}\n\
         cert_sha256 = \"{peer_cert}\"\n",
        invited_by = invitation.invited_by,
        listen = args.listen,
        advertise = toml_string(&advertise),
        operator = toml_string(&format!("{name} operator")),
        token_sha = token_sha256(&token),
        peer_name = toml_string(&invitation.invited_by),
        peer_address = toml_string(&format!("https://{}", invitation.peer.address)),
        peer_cert = invitation.peer.cert_sha256,
    );
    files::write_new(&dir.join("node.toml"), node_toml.as_bytes(), false)?;
    let client_toml = format!(
        "# Written by `accord join`: the client config of this organisation's node.\n\
         node = \"https://{}\"\n\
         cert_sha256 = \"{cert}\"\n\
         token_file = \"token\"\n\
         # Publish as this organisation (its key; once admitted its name works too,\n\
         # and after a recovery by the alliance the key still names it).\n\
         as = \"{key}\"\n",
        crate::client::reachable(args.listen),
    );
    files::write_new(&dir.join("client.toml"), client_toml.as_bytes(), false)?;
    let propose = format!(
        "accord propose admit --name {} --key {key} --node-address {advertise} \
         --node-cert-sha256 {cert}",
        shell_word(&name)
    );
    let start = format!(
        "accord node --config {}",
        shell_word(&dir.join("node.toml").display().to_string())
    );
    if args.json {
        print_json(&json!({
            "dir": dir.display().to_string(),
            "alliance": invitation.alliance,
            "name": name,
            "key": key,
            "node_address": advertise,
            "node_cert_sha256": cert,
            "node_config": dir.join("node.toml").display().to_string(),
            "client_config": dir.join("client.toml").display().to_string(),
            "propose": propose,
            "start": start,
        }));
    } else {
        println(&format!(
            "made {}: key.pem (the organisation's signing key: keep it secret and backed \
             up), tls/, token, charter.json, node.toml and client.toml",
            dir.display()
        ));
        println(&format!(
            "alliance:           {} ({})",
            invitation.alliance_name, invitation.alliance
        ));
        println(&format!("organisation:       {name}"));
        println(&format!("key to be admitted: {key}"));
        println(&format!("node address:       {advertise}"));
        println(&format!("node certificate:   {cert}"));
        println("ask a member or secretary of the alliance to propose the admission:");
        println(&format!("  {propose}"));
        println("and its members to approve it; then start the node:");
        println(&format!("  {start}"));
    }
    Ok(())
}

/// `text` quoted for a POSIX shell when it needs it.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+,".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
