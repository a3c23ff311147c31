//! The Accord node: the `accord.v1.Ledger` gRPC service (publishing, submitting and
//! querying), group commit onto the store, gRPC health and reflection.
//!
//! - [`config`]: the node's TOML file, validated before anything starts.
//! - [`ledger`]: the single writer, group commit, and the derived state readers see.
//! - [`service`]: the gRPC methods; [`status`] maps every refusal to one status code.
//! - [`auth`]: operator tokens.

pub mod auth;
pub mod backup;
pub mod batch;
pub mod check;
pub mod claims;
pub mod config;
pub mod federation;
pub mod feed_links;
pub mod http;
pub mod incoming;
pub mod integrity;
pub mod keyfile;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod paging;
pub mod reload;
pub mod replication;
pub mod service;
pub mod signed;
pub mod status;
pub mod tls;
pub mod to_proto;

use std::future::Future;

use accord_core::PublicId;
use accord_core::pb;
pub use accord_store::quiet_engine_panics;
use accord_store::{Store, StoreError};
use tokio::sync::watch;

pub use config::{ConfigError, NodeConfig, token_sha256};
pub use ledger::{Ledger, LoadReport};

/// How long after start publishes wait for a first peer's heads (see
/// [`Ledger::expect_peers`]).
const FIRST_PEER_CONTACT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Store(String),
    #[error("transport: {0}")]
    Transport(String),
}

/// Refuses to start with less than `floor` bytes free on the data directory's
/// filesystem: sled writes snapshots and its log while opening, and one cut short by
/// a full disk can leave a store that no longer opens once space is freed.
fn check_free_space(data_dir: &std::path::Path, floor: u64) -> Result<(), NodeError> {
    const MIB: u64 = 1 << 20;
    let free = accord_store::free_space(data_dir).map_err(|e| {
        NodeError::Store(format!(
            "{}: cannot read the free space of its filesystem: {e}",
            data_dir.display()
        ))
    })?;
    if free < floor {
        return Err(NodeError::Store(format!(
            "{}: only {} MiB free on its filesystem, below the floor of {} MiB \
             (min_free_disk_mb in the node's config); starting now could damage the store. \
             Free some space, then start the node again",
            data_dir.display(),
            free / MIB,
            floor.div_ceil(MIB)
        )));
    }
    Ok(())
}

/// Serves the node on `listener` until `shutdown` completes, then stops cleanly
/// (in-flight publishes finish and are flushed). The calendar, if configured, listens
/// on its `[http] listen` address.
pub async fn run(
    config: NodeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    run_with_http(config, listener, None, shutdown).await
}

/// [`run`], with the calendar's listener bound by the caller (ignored if the config
/// has no `[http]` section).
pub async fn run_with_http(
    config: NodeConfig,
    listener: tokio::net::TcpListener,
    http_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    serve(config, listener, http_listener, |_| {}, shutdown, None).await
}

/// Where a node serves, given to the `ready` callback of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Serving {
    /// The gRPC listener (client API, federation, health, reflection).
    pub addr: std::net::SocketAddr,
    /// The HTTP listener (calendar, `/healthz`, `/metrics`), if configured.
    pub http_addr: Option<std::net::SocketAddr>,
}

/// [`run_with_http`], calling `ready` once the store is open and verified and the
/// node serves (not before: a locked or mismatched data directory fails first), and
/// applying each config received on `reloads` (the CLI sends one on SIGHUP): its
/// peers and operators take effect at once (see [`reload`]). `accord node` prints
/// "listening on …" and tells systemd READY=1 at `ready`.
pub async fn serve(
    config: NodeConfig,
    listener: tokio::net::TcpListener,
    http_listener: Option<tokio::net::TcpListener>,
    ready: impl FnOnce(&Serving) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: Option<tokio::sync::mpsc::Receiver<NodeConfig>>,
) -> Result<(), NodeError> {
    let charter = config.charter.clone();
    federation::check_transport(&charter).map_err(NodeError::Transport)?;
    check_free_space(&config.data_dir, config.min_free_disk_bytes)?;
    // sled panics on some damage rather than return an error: the store catches it
    // (`accord_store::Store::open`), and the operator gets one line naming the
    // directory, what was found and the one safe command to run next.
    let store = Store::open(&config.data_dir, charter.id(), config.cache_capacity_bytes)
        .map_err(|e| NodeError::Store(check::open_failure(&config.data_dir, &e)))?;
    let data_dir = config.data_dir.clone();
    let (state, report) = tokio::task::spawn_blocking({
        let store = store.clone();
        move || ledger::load_state(&store, &charter)
    })
    .await
    .map_err(|e| {
        NodeError::Store(check::open_failure(
            &data_dir,
            &StoreError::Engine(e.to_string()),
        ))
    })?
    .map_err(|e| NodeError::Store(check::open_failure(&data_dir, &e)))?;
    let rate = report.entries as f64 / report.seconds.max(1e-9);
    tracing::info!(
        entries = report.entries,
        forks = report.forks,
        seconds = format!("{:.3}", report.seconds),
        "loaded and verified the ledger ({rate:.0} entries/s)"
    );
    let signed = signed::SignedRecord::load(&config.data_dir).map_err(NodeError::Store)?;
    let manifest = signed::load_manifest(&config.data_dir).map_err(NodeError::Store)?;
    let manifest_floor = manifest.clone();
    // A key file may hold a key the log has since rotated away from, or a rotation
    // may have been cut short after its entry was durable: settle each first.
    let mut identities = config.identities.clone();
    for (identity, path) in identities.iter_mut().zip(&config.key_files) {
        match keyfile::settle(path, identity, &state) {
            Ok(None) => {}
            Ok(Some(note)) => tracing::warn!("{note}"),
            Err(e) => return Err(NodeError::Store(e)),
        }
    }
    let (ledger, writer) = Ledger::start(store, state, identities, signed);
    ledger
        .metrics()
        .verified(metrics::Source::Store, report.entries);
    // A log with a hole loaded up to it; what the store held past it is lost too.
    let damage = ledger.store().damage();
    let expected = integrity::expected_heads(manifest, &damage);
    for (author, hole) in &damage.holes {
        tracing::error!(
            author = %author,
            "the store lost entry {} of this log, though it holds entries up to seq {}: \
             the log counts up to seq {} until the peers refill it",
            hole.seq,
            hole.stored_to,
            hole.seq - 1
        );
    }
    if damage.read_around > 0 {
        tracing::warn!(
            read_around = damage.read_around,
            "the store's index is damaged: {} entries were found only by looking each up; \
             all are served, but run `accord node --rebuild` at a quiet moment",
            damage.read_around
        );
    }
    ledger.expect_heads(expected);
    {
        let state = ledger.state();
        let short: Vec<PublicId> = ledger.all_lost(&state).iter().map(|l| l.author).collect();
        ledger.prove_later(short);
        for lost in ledger.lost_own_entries(&state) {
            tracing::error!(
                author = %lost.author,
                stored = lost.stored,
                signed = lost.signed,
                "the store holds less of this home identity's log than this node signed: \
                 it lost entries; publishing as it waits until peers supply seqs {}..={}",
                lost.stored + 1,
                lost.signed
            );
        }
        for lost in ledger.lost_entries(&state) {
            tracing::warn!(
                author = %lost.author,
                stored = lost.stored,
                manifest = lost.signed,
                "the store holds less of this log than it did at the last stop: it lost \
                 entries (damage, or files restored from an old copy); the peers refill them"
            );
        }
    }

    let (stopping_tx, stopping_rx) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::ledger_server::LedgerServer<service::LedgerService>>()
        .await;
    // The manifest of heads, rewritten while the node runs, so a store that later
    // loses entries is noticed even after a crash.
    tokio::spawn({
        let snapshots = ledger.snapshots();
        let data_dir = config.data_dir.clone();
        let mut stopping = stopping_rx.clone();
        // Never below what the manifest said at start: a loss stays on record until
        // the peers have refilled it.
        let floor = manifest_floor.clone();
        async move {
            let mut written: Option<u64> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(signed::MANIFEST_EVERY) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
                let snapshot = snapshots.load();
                let count = snapshot.entry_count();
                if written == Some(count) {
                    continue;
                }
                let mut heads = floor.clone();
                for (author, head) in snapshot.heads() {
                    let seq = heads.entry(author).or_insert(0);
                    *seq = (*seq).max(head.seq);
                }
                let dir = data_dir.clone();
                match tokio::task::spawn_blocking(move || signed::save_manifest(&dir, heads)).await
                {
                    Ok(Ok(())) => written = Some(count),
                    Ok(Err(e)) => tracing::warn!("cannot write the manifest of heads: {e}"),
                    Err(e) => tracing::warn!("cannot write the manifest of heads: {e}"),
                }
            }
        }
    });
    // gRPC health goes NOT_SERVING while the node cannot publish safely: its storage
    // failed (it is read-only until restarted) or its store lost entries of a home
    // identity (until the peers refill them). At once on a storage failure; lost
    // entries are checked every second.
    tokio::spawn({
        let mut storage = ledger.storage_watch();
        let ledger = ledger.clone();
        let health = health_reporter.clone();
        let mut stopping = stopping_rx.clone();
        async move {
            let mut serving = true;
            loop {
                ledger.check_store().await;
                let healthy = ledger.store_problem(&ledger.state()).is_none();
                if healthy != serving {
                    let status = if healthy {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    };
                    health
                        .set_service_status(
                            <pb::ledger_server::LedgerServer<service::LedgerService> as tonic::server::NamedService>::NAME,
                            status,
                        )
                        .await;
                    health.set_service_status("", status).await;
                    serving = healthy;
                }
                tokio::select! {
                    changed = storage.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(accord_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Transport(e.to_string()))?;
    // grpcio-reflection, grpcurl and Postman still ask the v1alpha service.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(accord_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| NodeError::Transport(e.to_string()))?;
    let stream_limits = limits::StreamLimits::new(config.limits);
    let peer_states: replication::PeerStates = Default::default();
    ledger.metrics().watch_peers(peer_states.clone());
    let tuning = replication::Tuning {
        anti_entropy: config.anti_entropy,
        ..Default::default()
    };
    let mut roster_nodes = reload::roster_nodes(&config, ledger.state().roster());
    let first_peers = reload::effective(&config, &roster_nodes);
    if !first_peers.is_empty() {
        ledger.expect_peers(FIRST_PEER_CONTACT);
    }
    if config.tls.is_none() && !config.peers.is_empty() {
        return Err(NodeError::Transport("peers need TLS".into()));
    }
    let pins = tls::shared_pins(Vec::new());
    let mut peer_set = reload::PeerSet::new(
        config.tls.clone(),
        ledger.clone(),
        peer_states.clone(),
        tuning,
        stopping_rx.clone(),
        pins.clone(),
    );
    peer_set.set(&first_peers);
    let operators: auth::Operators =
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config.operators.clone()));
    // Reloads, and changes of the roster's nodes, apply until the node stops; then
    // the peer tasks are awaited.
    let peers_done = tokio::spawn({
        let mut stopping = stopping_rx.clone();
        let operators = operators.clone();
        let mut running = config.clone();
        let mut changes = ledger.changes();
        let snapshots = ledger.snapshots();
        async move {
            let mut reloads = reloads;
            loop {
                let reload = async {
                    match reloads.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    new = reload => match new {
                        Some(new) => {
                            reload::apply(&running, &new, &roster_nodes, &mut peer_set, &operators);
                            running = new;
                        }
                        None => reloads = None,
                    },
                    changed = changes.changed() => {
                        if changed.is_err() {
                            let _ = stopping.wait_for(|s| *s).await;
                            return peer_set;
                        }
                        let nodes = reload::roster_nodes(&running, snapshots.load().roster());
                        if nodes != roster_nodes {
                            roster_nodes = nodes;
                            reload::apply_roster(&running, &roster_nodes, &mut peer_set);
                        }
                    }
                    () = async { let _ = stopping.wait_for(|s| *s).await; } => return peer_set,
                }
            }
        }
    });
    let federation_service = pb::federation_server::FederationServer::new(
        federation::FederationService::new(ledger.clone(), Vec::new(), stopping_rx.clone())
            .with_pins(pins.clone())
            .with_stream_limits(stream_limits.clone()),
    )
    .max_decoding_message_size(federation::MAX_REQUEST)
    .max_encoding_message_size(federation::PEER_MAX_MESSAGE);
    let mut ledger_api =
        service::LedgerService::new(ledger.clone(), peer_states, stopping_rx.clone())
            .with_stream_limits(stream_limits)
            .with_this_node(service::ThisNode {
                advertise: config.advertise.clone(),
                cert_sha256: config.tls.as_ref().map(tls::TlsIdentity::fingerprint),
            })
            .with_key_files(config.key_files.clone());
    let mut http_task = None;
    let mut http_addr = None;
    if let Some(http_config) = &config.http {
        let http_listener = match http_listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(http_config.listen)
                .await
                .map_err(|e| NodeError::Transport(format!("http {}: {e}", http_config.listen)))?,
        };
        let links = feed_links::FeedLinks::new(ledger.store().clone());
        ledger_api = ledger_api.with_calendar(links.clone(), http_config.public_url.clone());
        let calendar = std::sync::Arc::new(http::Calendar::new(
            ledger.clone(),
            links,
            http_config.public_url.clone(),
            http_config.refresh,
        ));
        if let Ok(addr) = http_listener.local_addr() {
            tracing::info!(%addr, public_url = %http_config.public_url, "serving the calendar");
            http_addr = Some(addr);
        }
        let mut stopping = stopping_rx.clone();
        http_task = Some(tokio::spawn(http::serve(
            calendar,
            http_listener,
            http_config.limits,
            async move {
                let _ = stopping.wait_for(|s| *s).await;
            },
        )));
    }
    let ledger_service = pb::ledger_server::LedgerServer::with_interceptor(
        ledger_api,
        auth::TokenCheck::shared(operators),
    );

    let addr = listener
        .local_addr()
        .map_err(|e| NodeError::Transport(e.to_string()))?;
    tracing::info!(%addr, alliance = %config.charter.id(), "serving");
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(tls::KEEPALIVE))
        .http2_keepalive_timeout(Some(tls::KEEPALIVE_TIMEOUT))
        .concurrency_limit_per_connection(config.limits.max_requests_per_connection)
        .layer(limits::GuardLayer::new(config.limits.request_timeout))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(ledger_service);
    let server_config = match &config.tls {
        Some(identity) => Some(
            tls::server_config_pinning(identity, pins)
                .map_err(|e| NodeError::Transport(e.to_string()))?,
        ),
        None => None,
    };
    // The listeners are bound and accept from here on (connections wait in the
    // backlog until the server polls them).
    ready(&Serving { addr, http_addr });
    // Without TLS the node serves its own clients only: federation needs TLS.
    let caps = incoming::Caps::new(config.limits.max_connections, config.limits.max_handshakes);
    let served = match server_config {
        Some(server_config) => {
            router
                .add_service(federation_service)
                .serve_with_incoming_shutdown(incoming::tls(listener, server_config, caps), signal)
                .await
        }
        None => {
            drop(federation_service);
            router
                // TCP_NODELAY, as on the TLS path: without it a lone call waited
                // for the client's delayed ACK (40 ms) between the response's
                // frames.
                .serve_with_incoming_shutdown(incoming::tcp(listener, caps), signal)
                .await
        }
    };
    if let Ok(peer_set) = peers_done.await {
        peer_set.join().await;
    }
    if let Some(task) = http_task {
        match task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "calendar server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "calendar server panicked"),
            Ok(Ok(())) => {}
        }
    }
    // Requests still queued are answered (and flushed) before the writer ends.
    let snapshots = ledger.snapshots();
    let store = ledger.store().clone();
    let storage = ledger.storage_watch();
    drop(ledger);
    let _ = writer.await;
    if storage.borrow().is_some() || store.engine_failure().is_some() {
        // sled flushes when its last handle is dropped, and on a full or failing
        // disk that flush waits for ever. Everything acknowledged is already
        // durable, and nothing more can be written: never drop it.
        std::mem::forget(store);
    } else {
        drop(store);
    }
    let mut final_heads = manifest_floor;
    for (author, head) in snapshots.load().heads() {
        let seq = final_heads.entry(author).or_insert(0);
        *seq = (*seq).max(head.seq);
    }
    if let Err(e) = signed::save_manifest(&config.data_dir, final_heads) {
        tracing::warn!("cannot write the manifest of heads: {e}");
    }
    tracing::info!("stopped");
    served.map_err(|e| NodeError::Transport(e.to_string()))
}

/// What the crate's unit tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use accord_core::charter::{CharterDoc, CharterMember, Rules};
    use accord_core::{Charter, Identity};

    /// A charter with one member, `member`, called Alpha, and no secretary.
    pub fn one_member_charter(name: &str, member: &Identity) -> Charter {
        let doc = CharterDoc {
            accord_charter: 1,
            name: name.into(),
            members: vec![CharterMember {
                name: "Alpha".into(),
                key: member.public_id(),
                ec_id: None,
            }],
            secretaries: vec![],
            rules: Rules::default(),
        };
        Charter::from_bytes(doc.to_file_bytes()).expect("a valid charter")
    }
}
