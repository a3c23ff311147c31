//! `accord demo --dir DIR --compose`: the demo alliance's four organisations as files
//! for `deploy/compose.yaml`, one container each. Uses the demo's keys, charter,
//! tokens and certificates (made if missing), and writes under DIR/compose/:
//!
//! - `SLUG/` for each organisation, mounted read-only at /etc/accord in its container:
//!   `node.toml` (listening on every address of the container; data in the volume at
//!   /var/lib/accord; every other organisation a pinned peer, dialled by its service
//!   name), the charter, the organisation's key, its TLS certificate and key;
//! - `SLUG/client.toml` and `SLUG/token`, for `accord` on the host, which reaches the
//!   container through the port compose publishes on the host's loopback;
//! - `.env`: the host ports and the folder, for `docker-compose --env-file`.
//!
//! The container runs as uid 10001, which must be able to read the key files: run as
//! root, this chowns each organisation's folder to it; otherwise it says what to run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::commands::setup;
use crate::demo::{Demo, ORGS, toml_string};
use crate::files;

/// The user and group the image runs as (deploy/Dockerfile).
pub const IMAGE_UID: u32 = 10001;
/// The gRPC port inside each container.
const GRPC_PORT: u16 = 7400;
/// The calendar's port inside each container.
const HTTP_PORT: u16 = 8080;

/// Writes DIR/compose for `demo`; `listen` gives the host address and first port
/// (the others take the next three); port 0 or none: ports the OS has free now.
pub fn write(demo: &Demo, listen: Option<SocketAddr>) -> Result<()> {
    let host = listen.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |l| l.ip());
    let ports = host_ports(host, listen.map_or(0, |l| l.port()))?;
    let out = demo.dir.join("compose");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", out.display()))?;
    let charter = std::fs::read(demo.dir.join("charter.json")).context("reading charter.json")?;
    let mut env = format!(
        "# Written by `accord demo --compose`; read by docker-compose --env-file.\n\
         ACCORD_ALLIANCE={}\nACCORD_BIND={host}\n",
        out.display()
    );
    for (i, node) in demo.nodes.iter().enumerate() {
        let folder = out.join(node.org.slug);
        std::fs::create_dir_all(folder.join("tls"))
            .with_context(|| format!("cannot create {}", folder.display()))?;
        files::write_new(&folder.join("charter.json"), &charter, true)?;
        let key = std::fs::read(demo.dir.join(crate::demo::key_file(node.org)))?;
        files::write_secret(&folder.join("key.pem"), &key, true)?;
        for name in ["node.crt", "node.key"] {
            let bytes = std::fs::read(node.folder.join("tls").join(name))?;
            files::write_secret(&folder.join("tls").join(name), &bytes, true)?;
        }
        files::write_secret(
            &folder.join("token"),
            format!("{}\n", node.token).as_bytes(),
            true,
        )?;
        files::write_new(
            &folder.join("node.toml"),
            node_toml(demo, i).as_bytes(),
            true,
        )?;
        let client = format!(
            "# Written by `accord demo --compose`: `accord` on the host, through the port\n\
             # compose publishes for this organisation's container.\n\
             node = \"https://{}\"\n\
             cert_sha256 = \"{}\"\n\
             token_file = \"token\"\n\
             as = {}\n",
            crate::client::reachable(SocketAddr::new(host, ports[i])),
            hex::encode(node.fingerprint),
            toml_string(node.org.name),
        );
        files::write_new(&folder.join("client.toml"), client.as_bytes(), true)?;
        env.push_str(&format!("ACCORD_PORT_{}={}\n", i + 1, ports[i]));
    }
    files::write_new(&out.join(".env"), env.as_bytes(), true)?;
    let owned = give_to_image_user(&out)?;
    print_summary(demo, &out, &ports, owned);
    Ok(())
}

/// Node `i`'s node.toml inside its container.
fn node_toml(demo: &Demo, i: usize) -> String {
    let node = &demo.nodes[i];
    let mut text = format!(
        "# Written by `accord demo --compose`; paths are inside the container.\n\
         data_dir = \"/var/lib/accord/data\"\n\
         listen = \"0.0.0.0:{GRPC_PORT}\"\n\
         charter = \"charter.json\"\n\
         identities = [\"key.pem\"]\n\
         cache_capacity_mb = 16\n\
         anti_entropy_secs = 5\n\n\
         [[operators]]\n\
         name = {}\n\
         token_sha256 = \"{}\"\n\
         identities = [{}]\n\n\
         [tls]\n\
         cert = \"tls/node.crt\"\n\
         key = \"tls/node.key\"\n\n\
         [http]\n\
         listen = \"0.0.0.0:{HTTP_PORT}\"\n\
         public_url = \"http://{}:{HTTP_PORT}\"\n",
        toml_string(&format!("{}-operator", node.org.slug)),
        setup::token_sha256(&node.token),
        toml_string(node.org.name),
        node.org.slug,
    );
    for (j, peer) in demo.nodes.iter().enumerate() {
        if i != j {
            text.push_str(&format!(
                "\n[[peers]]\nname = {}\naddress = \"https://{}:{GRPC_PORT}\"\ncert_sha256 = \"{}\"\n",
                toml_string(peer.org.slug),
                peer.org.slug,
                hex::encode(peer.fingerprint),
            ));
        }
    }
    text
}

/// Four host ports from `first` on, or four the OS has free now when `first` is 0.
fn host_ports(host: IpAddr, first: u16) -> Result<Vec<u16>> {
    if first != 0 {
        if first > u16::MAX - 3 {
            bail!("--listen port {first} leaves no room for four nodes");
        }
        return Ok((first..first + 4).collect());
    }
    // Held together so the four differ, then let go for compose to take.
    let held: Vec<std::net::TcpListener> = (0..ORGS.len())
        .map(|_| std::net::TcpListener::bind(SocketAddr::new(host, 0)))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot find free ports on {host}"))?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Makes every organisation's folder under `out` the image user's, when this
/// process may (as root): whether it did.
fn give_to_image_user(out: &Path) -> Result<bool> {
    fn walk(path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(IMAGE_UID), Some(IMAGE_UID))?;
        if path.is_dir() {
            for item in std::fs::read_dir(path)? {
                walk(&item?.path())?;
            }
        }
        Ok(())
    }
    for item in std::fs::read_dir(out)? {
        let path = item?.path();
        if !path.is_dir() {
            continue;
        }
        match walk(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot chown {}", path.display())),
        }
    }
    Ok(true)
}

fn print_summary(demo: &Demo, out: &Path, ports: &[u16], owned: bool) {
    let env = out.join(".env");
    println!("compose files for the demo alliance in {}", out.display());
    if !owned {
        println!(
            "the containers run as uid {IMAGE_UID}; let them read their keys first:\n  \
             sudo chown -R {IMAGE_UID}:{IMAGE_UID} {}/*/",
            out.display()
        );
    }
    println!(
        "build the image and start the alliance:\n  \
         deploy/image.sh\n  \
         docker-compose --env-file {} -f deploy/compose.yaml up -d",
        env.display()
    );
    for (node, port) in demo.nodes.iter().zip(ports) {
        println!(
            "{:<28} port {port}: accord status --config {}",
            node.org.slug,
            out.join(node.org.slug).join("client.toml").display()
        );
    }
}
