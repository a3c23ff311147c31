//! `accord node`: load the config, bind, announce the address, serve until a signal.

use std::io::Write;
use std::path::Path;

use accord_node::NodeConfig;
use anyhow::{Context, Result, bail};

pub async fn run(config_path: &Path, rebuild: bool) -> Result<()> {
    init_tracing("info");
    let config = NodeConfig::load(config_path)?;
    if rebuild {
        if config.peers.is_empty() {
            bail!(
                "--rebuild pulls the store again from the node's peers, and {} names none",
                config_path.display()
            );
        }
        rebuild_store(&config.data_dir)?;
    }
    // Install the signal handlers before announcing, so a signal sent as soon as the
    // address is printed still stops the node cleanly.
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {address}").and_then(|()| out.flush())?;
    }
    let reloads = reload_on_hangup(config_path)?;
    accord_node::run_with_reloads(config, listener, None, shutdown, Some(reloads)).await?;
    Ok(())
}

/// On each SIGHUP, reads the config file again and, if it is valid, hands it to the
/// node (which applies its peers and operators); an invalid file is logged and the
/// node goes on with what it has.
fn reload_on_hangup(config_path: &Path) -> Result<tokio::sync::mpsc::Receiver<NodeConfig>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let path = config_path.to_owned();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let loaded = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || NodeConfig::load(&path)).await
                };
                match loaded {
                    Ok(Ok(config)) => {
                        tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
                        if tx.send(config).await.is_err() {
                            return;
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(
                        config = %path.display(),
                        "SIGHUP: the config was not reloaded, the node goes on as it was: {e}"
                    ),
                    Err(e) => tracing::warn!("SIGHUP: reading the config failed: {e}"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (config_path, &tx);
    Ok(rx)
}

/// Logs to stderr, filtered by RUST_LOG (else `default`), coloured only on a terminal.
pub fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Moves the data directory aside and starts an empty one holding only the record of
/// what this node signed (`signed-heads.a` and `.b`), so the rebuilt node will not publish
/// as its organisations before its peers have given back their logs up to it.
fn rebuild_store(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let fresh = || {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))
    };
    if !data_dir.exists() {
        tracing::warn!(
            "rebuild: {} does not exist; starting empty, without a record of what this node signed",
            data_dir.display()
        );
        return fresh();
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let aside = data_dir.with_file_name(format!("{name}.damaged-{stamp}"));
    std::fs::rename(data_dir, &aside).with_context(|| {
        format!(
            "cannot move {} aside to {}",
            data_dir.display(),
            aside.display()
        )
    })?;
    fresh()?;
    let mut kept = false;
    for name in accord_node::signed::FILES {
        let from = aside.join(name);
        if from.exists() {
            std::fs::copy(&from, data_dir.join(name))
                .with_context(|| format!("cannot keep {}", from.display()))?;
            kept = true;
        }
    }
    if kept {
        tracing::warn!(
            "rebuild: moved the old store to {}; kept the record of signed heads: publishing \
             waits until the peers have supplied this node's own logs up to it",
            aside.display()
        );
    } else {
        tracing::warn!(
            "rebuild: moved the old store to {}; it held no record of signed heads, so make \
             sure a peer is reachable before officers publish",
            aside.display()
        );
    }
    Ok(())
}
