//! Local set-up: identity keys, charters and operator tokens. No node involved.

use std::path::Path;

use accord_core::charter::{CHARTER_FORMAT, CharterDoc, CharterMember, CharterSecretary, Rules};
use accord_core::{Charter, Identity, PublicId};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cli::CharterBuild;
use crate::files;
use crate::render::{self, println};

/// What the value printed next is, on stderr (stdout keeps the bare value for
/// scripts).
fn label(text: &str) {
    eprintln!("{text}");
}

pub fn keygen(out: &Path, force: bool) -> Result<()> {
    let identity = write_new_identity(out, force)?;
    // The label on stderr, the value alone on stdout: `$(accord keygen …)` is the key.
    label(&format!(
        "wrote the signing key {} (secret, mode 0600); its public key, which the \
         charter names (charter --member NAME=KEY):",
        out.display()
    ));
    println(&identity.public_id().to_string());
    Ok(())
}

/// Generates a key and writes it to `path` (mode 0600).
pub fn write_new_identity(path: &Path, force: bool) -> Result<Identity> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness available: {e}"))?;
    let identity = Identity::from_seed(seed);
    files::write_secret(path, identity.to_pem().as_bytes(), force)?;
    Ok(identity)
}

pub fn read_identity(path: &Path) -> Result<Identity> {
    let pem = files::read_to_string(path)?;
    Identity::from_pem(&pem).with_context(|| path.display().to_string())
}

pub fn key_show(file: &Path) -> Result<()> {
    println(&read_identity(file)?.public_id().to_string());
    Ok(())
}

/// A public key given as hex, or as a key file to read it from.
fn key_arg(text: &str) -> Result<PublicId> {
    if let Ok(key) = text.parse::<PublicId>() {
        return Ok(key);
    }
    let path = Path::new(text);
    if path.is_file() {
        return Ok(read_identity(path)?.public_id());
    }
    bail!("{text:?} is neither a public key (64 hex digits) nor a key file")
}

fn split_spec<'a>(flag: &str, spec: &'a str, max: usize) -> Result<Vec<&'a str>> {
    let parts: Vec<&str> = spec.split('=').collect();
    if parts.len() < 2 || parts.len() > max || parts.iter().any(|p| p.trim().is_empty()) {
        let form = if max == 3 {
            "NAME=KEY[=EC_ID]"
        } else {
            "NAME=KEY"
        };
        bail!("--{flag} {spec:?} is not of the form {form}");
    }
    Ok(parts.iter().map(|p| p.trim()).collect())
}

/// The charter file for a name, members and secretaries, validated by the core.
pub fn charter_file_bytes(
    name: &str,
    members: &[(String, PublicId, Option<String>)],
    secretaries: &[(String, PublicId)],
) -> Result<(Vec<u8>, Charter)> {
    let doc = CharterDoc {
        accord_charter: CHARTER_FORMAT,
        name: name.to_owned(),
        members: members
            .iter()
            .map(|(name, key, ec_id)| CharterMember {
                name: name.clone(),
                key: *key,
                ec_id: ec_id.clone(),
            })
            .collect(),
        secretaries: secretaries
            .iter()
            .map(|(name, key)| CharterSecretary {
                name: name.clone(),
                key: *key,
            })
            .collect(),
        rules: Rules::default(),
    };
    let bytes = doc.to_file_bytes();
    let charter = Charter::from_bytes(bytes.clone())?;
    Ok((bytes, charter))
}

pub fn charter_build(build: &CharterBuild) -> Result<()> {
    let name = build.name.as_deref().unwrap_or_default();
    let out = build
        .out
        .as_deref()
        .ok_or_else(|| anyhow!("--out is required"))?;
    let mut members = Vec::new();
    for spec in &build.member {
        let parts = split_spec("member", spec, 3)?;
        let key = key_arg(parts[1]).with_context(|| format!("--member {spec:?}"))?;
        members.push((
            parts[0].to_owned(),
            key,
            parts.get(2).map(|s| (*s).to_owned()),
        ));
    }
    let mut secretaries = Vec::new();
    for spec in &build.secretary {
        let parts = split_spec("secretary", spec, 2)?;
        let key = key_arg(parts[1]).with_context(|| format!("--secretary {spec:?}"))?;
        secretaries.push((parts[0].to_owned(), key));
    }
    let (bytes, charter) = charter_file_bytes(name, &members, &secretaries)?;
    files::write_new(out, &bytes, build.force)?;
    println(&charter.id().to_string());
    Ok(())
}

pub fn charter_show(file: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let charter = Charter::from_bytes(bytes).with_context(|| file.display().to_string())?;
    if json {
        render::print_json(&json!({
            "id": charter.id().to_string(),
            "name": charter.name(),
            "members": charter.members().iter().map(|m| json!({
                "name": m.name, "id": m.key.to_string(), "ec_id": m.ec_id,
            })).collect::<Vec<_>>(),
            "secretaries": charter.secretaries().iter().map(|s| json!({
                "name": s.name, "id": s.key.to_string(),
            })).collect::<Vec<_>>(),
            "rules": {
                "max_entry_bytes": charter.rules().max_entry_bytes,
                "max_clock_skew_secs": charter.rules().max_clock_skew_secs,
            },
        }));
        return Ok(());
    }
    println(&format!(
        "alliance  {}\nid        {}\n",
        charter.name(),
        charter.id()
    ));
    let rows: Vec<Vec<String>> = charter
        .members()
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                "member".into(),
                m.ec_id.clone().unwrap_or_default(),
                m.key.to_string(),
            ]
        })
        .chain(charter.secretaries().iter().map(|s| {
            vec![
                s.name.clone(),
                "secretary".into(),
                String::new(),
                s.key.to_string(),
            ]
        }))
        .collect();
    render::print(&render::table(
        &["NAME", "ROLE", "EC ID", "PUBLIC KEY"],
        &rows,
    ));
    Ok(())
}

/// SHA-256 (hex) of a token as sent: the hex text, as UTF-8 bytes.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness available: {e}"))?;
    Ok(hex::encode(bytes))
}

pub fn token_new(out: &Path, force: bool) -> Result<()> {
    let token = new_token()?;
    files::write_secret(out, format!("{token}\n").as_bytes(), force)?;
    label(&format!(
        "wrote the operator token {} (secret, mode 0600: token_file in client.toml); its \
         SHA-256, token_sha256 of an [[operators]] entry in node.toml:",
        out.display()
    ));
    println(&token_sha256(&token));
    Ok(())
}

pub fn tls_new(cert: &Path, key: &Path, names: &[String], force: bool) -> Result<()> {
    for path in [cert, key] {
        if !force && path.exists() {
            bail!(
                "{} already exists (use --force to overwrite it)",
                path.display()
            );
        }
    }
    let (cert_pem, key_pem) = accord_node::tls::generate(names)?;
    files::write_secret(key, key_pem.as_bytes(), force)?;
    files::write_new(cert, cert_pem.as_bytes(), force)?;
    label(&format!(
        "wrote the certificate {} and its key {} (secret, mode 0600); its fingerprint, \
         cert_sha256 in the peers' [[peers]] and in client.toml:",
        cert.display(),
        key.display()
    ));
    println(&hex::encode(cert_fingerprint(cert)?));
    Ok(())
}

pub fn tls_show(cert: &Path) -> Result<()> {
    println(&hex::encode(cert_fingerprint(cert)?));
    Ok(())
}

/// SHA-256 of the certificate's DER bytes, as the node pins it.
pub fn cert_fingerprint(cert: &Path) -> Result<[u8; 32]> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(cert)
        .map_err(|e| anyhow!("{}: not a PEM certificate: {e}", cert.display()))?;
    Ok(accord_node::tls::fingerprint(&der))
}
