//! `accord node`: load the config, bind, serve until a signal; announce the address
//! (stdout, and systemd's READY=1) once the store is open and the node serves.

use std::io::Write;
use std::path::Path;

use accord_node::NodeConfig;
use anyhow::{Context, Result, bail};

use crate::cli::LogFormat;

pub async fn run(config_path: &Path, rebuild: bool, log_format: LogFormat) -> Result<()> {
    init_tracing_as("info", log_format);
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
    // The signal is watched from now on, also while the store loads: a stop is
    // bounded whatever the node is doing (a full disk can keep sled's flush
    // waiting for ever).
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        exit_after(STOP_LIMIT);
        let _ = stop_tx.send(true);
    });
    let stopping = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let ready = |serving: &accord_node::Serving| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", serving.addr).and_then(|()| out.flush());
        if let Some(http) = serving.http_addr {
            let _ = writeln!(out, "http on {http}").and_then(|()| out.flush());
        }
        let status = format!("serving on {}", serving.addr);
        notify_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    };
    let reloads = reload_on_hangup(config_path)?;
    accord_node::serve(config, listener, None, ready, stopping, Some(reloads))
        .await
        .map_err(|e| {
            // The node's advice names its config as NODE.toml: name the real one.
            let placeholder = format!("--config {}", accord_node::check::CONFIG_PLACEHOLDER);
            let real = format!("--config {}", config_path.display());
            anyhow::anyhow!(e.to_string().replace(&placeholder, &real))
        })?;
    Ok(())
}

/// How long a node may take to stop after SIGINT or SIGTERM.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(8);

/// Ends the process `limit` from now if it has not ended by then. Nothing
/// acknowledged is lost: a publish is answered only after the flush that makes it
/// durable, so what is cut short was never acknowledged.
fn exit_after(limit: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        tracing::error!(
            "the node did not stop within {} s (its storage may be failing or its disk \
             full): exiting now; everything acknowledged was already durable",
            limit.as_secs()
        );
        std::process::exit(1);
    });
}

/// Tells the service manager (systemd's `Type=notify`, through `NOTIFY_SOCKET`) a
/// change of state; nothing without `NOTIFY_SOCKET`. A failure is logged, never fatal.
fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {e}");
    }
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
    init_tracing_as(default, LogFormat::Human);
}

/// [`init_tracing`] in `format`: JSON is one object per line, the event's fields
/// at the top level beside `timestamp`, `level` and `target`, for log shippers.
pub fn init_tracing_as(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
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
/// as its organisations before its peers have given back their logs up to it, and the
/// manifest of heads (`heads-manifest.json`), so it reports every other log as lost
/// (health failing) until the peers have given it back too.
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
    for name in accord_node::signed::FILES
        .into_iter()
        .chain([accord_node::signed::MANIFEST])
    {
        let from = aside.join(name);
        if from.exists() {
            std::fs::copy(&from, data_dir.join(name))
                .with_context(|| format!("cannot keep {}", from.display()))?;
            kept |= name != accord_node::signed::MANIFEST;
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
