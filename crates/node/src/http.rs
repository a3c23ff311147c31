//! The members' calendar over HTTP (axum): iCalendar feeds, the web page, the
//! members' clash board and a health endpoint, all from the node's replicated state.
//!
//! Routes (every one also under `/m/<token>/…` for a member's link, which adds
//! alliance-only events; a token that is not live answers 404):
//! - `/` — the page; `?org=<slug>&area=<GSS code>` filter it.
//! - `/calendar.ics` (also with `?org=&area=`), `/org/<slug>/calendar.ics`,
//!   `/area/<code>/calendar.ics` — feeds.
//! - `/events/<author hex>/<uid>` — one event.
//! - `/m/<token>/clashes` — the members' clash board.
//! - `/healthz` — liveness, storage and the entry count, as JSON: 200 with
//!   `"status": "ok"`, or 503 with `"status": "storage failed"` (the node is then
//!   read-only) or `"store lost entries"` (a log is short of what the store should
//!   hold, until refilled and read back), and `"problem"` naming the log.
//! - `/metrics` — Prometheus metrics (OpenMetrics text), see [`crate::metrics`].
//!
//! Every request is counted by route pattern and status (`accord_calendar_requests_total`).
//!
//! Feeds are rendered once per state change and kept with their ETag, so a
//! conditional request costs a hash-map lookup; a feed holding a cancelled event is
//! rendered again once that event is past (it then drops out).

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use accord_calendar::ics::{self, FeedOptions};
use accord_calendar::page::{self, PageContext};
use accord_calendar::{Audience, Directory, Paths, Selection};
use accord_core::PublicId;
use accord_core::clash::ClashState;
use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::watch;

use crate::feed_links::FeedLinks;
use crate::ledger::Ledger;

/// Most rendered feeds kept; past it the least recently used goes. Only selections
/// that exist are kept (see [`Calendar::feed`]), so made-up addresses cannot push
/// members' feeds out.
const MAX_CACHED_FEEDS: NonZeroUsize = NonZeroUsize::new(4096).expect("not zero");

/// Content-Security-Policy of every page: nothing from other sites, no scripts.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What the calendar serves from.
pub struct Calendar {
    ledger: Ledger,
    links: FeedLinks,
    /// The organisations by name, and the roster version they were read at.
    directory: Mutex<(u64, Arc<Directory>)>,
    alliance_name: String,
    base: String,
    refresh: Duration,
    cache: Mutex<FeedCache>,
}

/// A feed's cache key: the member link's token (None: public) and the selection.
type FeedKey = (Option<String>, Selection);

/// Rendered feeds by selection, least recently used first out. An entry rendered
/// at an older state version stays until it is rendered again: its bytes and date
/// are what the next rendering's Last-Modified is decided against.
struct FeedCache {
    feeds: lru::LruCache<FeedKey, Slot>,
    /// The latest Last-Modified given to any feed of each audience (public,
    /// members), in seconds: the least date of a selection with no cached rendering
    /// (it may have been served and evicted).
    floor: [u64; 2],
    /// [`FeedLinks::revocations`] when the cache last dropped revoked links' feeds.
    revocations: u64,
    hits: u64,
    misses: u64,
}

struct Slot {
    version: u64,
    rendered: Arc<Rendered>,
}

/// What the feed cache holds and how it is used, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FeedCacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
}

/// A feed as served: its bytes and validators, plain and gzipped (each
/// representation has its own strong ETag, RFC 9110 §8.8.3).
struct Rendered {
    body: Bytes,
    etag: HeaderValue,
    gzip: Bytes,
    gzip_etag: HeaderValue,
    /// Whole seconds since the epoch, for If-Modified-Since. Later than the last
    /// rendering's whenever the bytes differ, so it may be up to a few seconds ahead
    /// when changes come fast; the header is capped at the time of the response.
    last_modified: Option<u64>,
    stale_at: Option<DateTime<Utc>>,
}

impl Rendered {
    /// The Last-Modified header at `now`: never in the future (RFC 9110 §8.8.2.1).
    fn last_modified_at(&self, now: SystemTime) -> Option<SystemTime> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_modified
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.min(now)))
    }
}

/// Limits of the calendar's HTTP server (`[http]` in node.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest time from a request's headers to its response; past it, 503.
    pub request_timeout: Duration,
    /// Longest time a connection may take to send a request's headers (also an idle
    /// kept-alive connection's limit); past it the connection is closed.
    pub header_timeout: Duration,
    /// Requests handled at once; more are refused at once with 503.
    pub max_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_requests: 256,
        }
    }
}

impl Calendar {
    pub fn new(ledger: Ledger, links: FeedLinks, base: String, refresh: Duration) -> Self {
        let (directory, alliance_name) = {
            let state = ledger.state();
            (
                Mutex::new((
                    state.roster().version,
                    Arc::new(Directory::from_roster(state.charter(), state.roster())),
                )),
                state.charter().name().to_owned(),
            )
        };
        Self {
            ledger,
            links,
            directory,
            alliance_name,
            base,
            refresh,
            cache: Mutex::new(FeedCache {
                feeds: lru::LruCache::new(MAX_CACHED_FEEDS),
                floor: [0; 2],
                revocations: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    /// After a link is revoked, drops the cached feeds of every link no longer live.
    fn drop_revoked(&self) {
        let revocations = self.links.revocations();
        let tokens: Vec<String> = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.revocations == revocations {
                return;
            }
            cache.revocations = revocations;
            let mut tokens: Vec<String> = cache
                .feeds
                .iter()
                .filter_map(|((t, _), _)| t.clone())
                .collect();
            tokens.sort();
            tokens.dedup();
            tokens
        };
        // Store reads outside the cache lock; an error keeps the feeds (the gate
        // refuses the link anyway).
        let revoked: Vec<String> = tokens
            .into_iter()
            .filter(|t| matches!(self.links.is_live(t), Ok(false)))
            .collect();
        if revoked.is_empty() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<FeedKey> = cache
            .feeds
            .iter()
            .filter(|((t, _), _)| t.as_ref().is_some_and(|t| revoked.contains(t)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            cache.feeds.pop(&key);
        }
    }

    /// The feed cache's size and use (revoked links' feeds dropped first).
    pub fn cache_stats(&self) -> FeedCacheStats {
        self.drop_revoked();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        FeedCacheStats {
            entries: cache.feeds.len(),
            hits: cache.hits,
            misses: cache.misses,
        }
    }

    fn paths(&self, token: Option<&str>) -> Paths {
        Paths {
            base: self.base.clone(),
            token: token.map(str::to_owned),
        }
    }

    /// The feed for `selection` read through `token`'s link (None: public), from
    /// the cache when the state has not changed since it was rendered.
    ///
    /// Only selections that exist enter the cache: the organisation was checked by
    /// [`Calendar::selection`] and the link by [`member_gate`]; an area must be named
    /// by some event. A feed for an area no event names is rendered each time.
    ///
    /// Last-Modified moves whenever the bytes do: the date computed from the events
    /// ([`ics::render`]) is raised to a second past the previous rendering's when the
    /// bytes changed (an old entry that arrives late changes a feed without a later
    /// date), and a selection with no cached rendering starts from its audience's
    /// latest date. The header is capped at the time of each response.
    fn feed(&self, token: Option<&str>, selection: Selection) -> Arc<Rendered> {
        let now = Utc::now();
        // The snapshot rendered and its version, read together: a rendering is
        // cached under the version of the state it was made from.
        let state = self.ledger.state();
        let version = state.version;
        self.drop_revoked();
        let key = (token.map(str::to_owned), selection);
        let audience = usize::from(key.1.audience == Audience::Members);
        let previous = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = cache.feeds.get(&key)
                && slot.version == version
                && slot.rendered.stale_at.is_none_or(|t| now < t)
            {
                let hit = slot.rendered.clone();
                cache.hits += 1;
                return hit;
            }
            cache.misses += 1;
            match cache.feeds.peek(&key) {
                Some(slot) => Previous::Rendered(slot.rendered.clone()),
                None => Previous::Unknown(cache.floor[audience]),
            }
        };
        // Render outside the cache lock; a concurrent miss renders the same bytes.
        let events = state.events();
        let exists = key
            .1
            .area
            .as_ref()
            .is_none_or(|area| events.iter().any(|e| e.event.area.as_ref() == Some(area)));
        let paths = self.paths(token);
        let directory = self.directory();
        let feed = ics::render(
            &events,
            &FeedOptions {
                alliance_name: &self.alliance_name,
                directory: &directory,
                paths: &paths,
                selection: &key.1,
                refresh: self.refresh,
            },
            now,
        );
        // An entry may be stamped up to the allowed clock skew ahead: never date a
        // modification later than now.
        let computed = feed
            .last_modified
            .map(|t| t.min(now).timestamp().max(0) as u64);
        let last_modified = match previous {
            Previous::Rendered(p) if p.etag == feed.etag.as_str() => computed.max(p.last_modified),
            Previous::Rendered(p) => match p.last_modified {
                Some(before) => Some(computed.unwrap_or(0).max(before + 1)),
                None => computed,
            },
            Previous::Unknown(floor) => computed.map(|c| c.max(floor)),
        };
        let gzip_etag = format!("{}-gz\"", feed.etag.trim_end_matches('"'));
        let rendered = Arc::new(Rendered {
            etag: HeaderValue::from_str(&feed.etag).expect("an etag is a header value"),
            gzip_etag: HeaderValue::from_str(&gzip_etag).expect("an etag is a header value"),
            gzip: Bytes::from(gzip(&feed.bytes)),
            last_modified,
            stale_at: feed.stale_at,
            body: Bytes::from(feed.bytes),
        });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = last_modified {
            cache.floor[audience] = cache.floor[audience].max(t);
        }
        // A concurrent miss may have cached a rendering of a newer state: keep it.
        let newer = cache.feeds.peek(&key).is_some_and(|s| s.version > version);
        if exists && !newer {
            cache.feeds.put(
                key,
                Slot {
                    version,
                    rendered: rendered.clone(),
                },
            );
        }
        rendered
    }
}

/// What a feed's new rendering is dated against.
enum Previous {
    /// The selection's last rendering.
    Rendered(Arc<Rendered>),
    /// None cached: the latest date its audience's feeds have had.
    Unknown(u64),
}

/// The calendar's views under `prefix` ("" or "/m/{token}").
fn views(prefix: &str) -> Router<Arc<Calendar>> {
    Router::new()
        .route(&format!("{prefix}/"), get(page_handler))
        .route(&format!("{prefix}/calendar.ics"), get(feed_query))
        .route(
            &format!("{prefix}/org/{{slug}}/calendar.ics"),
            get(feed_path),
        )
        .route(
            &format!("{prefix}/area/{{code}}/calendar.ics"),
            get(feed_path),
        )
        .route(
            &format!("{prefix}/events/{{author}}/{{uid}}"),
            get(event_handler),
        )
        .route(&format!("{prefix}/clashes"), get(clashes_handler))
}

/// `bytes` gzipped (level 6: feeds are repetitive text and shrink several-fold).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::new(6),
    );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .expect("gzip into memory does not fail")
}

/// Whether the request's Accept-Encoding admits gzip (a q of 0 refuses it).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The router over `calendar`.
pub fn router(calendar: Arc<Calendar>) -> Router {
    let members = views("/m/{token}")
        .route("/m/{token}", get(member_root))
        .route_layer(axum::middleware::from_fn_with_state(
            calendar.clone(),
            member_gate,
        ));
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .merge(views(""))
        .merge(members)
        .fallback(not_found_handler)
        .layer(axum::middleware::from_fn(gzip_pages))
        .layer(axum::middleware::from_fn_with_state(
            calendar.clone(),
            utf8_paths,
        ))
        .with_state(calendar)
}

/// "/m/<token>" without the slash: to the member's page.
async fn member_root(request: axum::extract::Request) -> Response {
    let to = format!("{}/", request.uri().path());
    axum::response::Redirect::permanent(&to).into_response()
}

/// A path whose percent-escapes are not UTF-8 names nothing here: the site's 404
/// page, rather than the framework's plain-text 400 from its path extractor.
async fn utf8_paths(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if std::str::from_utf8(&percent_decode(request.uri().path())).is_err() {
        return not_found(&calendar, None);
    }
    next.run(request).await
}

/// `path` with its %XX escapes decoded (a malformed escape is kept as it is).
fn percent_decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Pages (HTML) gzipped when the request accepts gzip, with `Vary: Accept-Encoding`
/// either way. Feeds carry their own gzipped form, made once per rendering.
async fn gzip_pages(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let wants_gzip = accepts_gzip(request.headers());
    let response = next.run(request).await;
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !is_page || response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if !wants_gzip {
        return Response::from_parts(parts, body);
    }
    // Pages are rendered whole in memory; this only takes the bytes back.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(zipped) = tokio::task::spawn_blocking(move || gzip(&bytes)).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(zipped))
}

/// Serves `calendar` on `listener` within `limits` until `shutdown` completes.
///
/// Each connection has `limits.header_timeout` to send a request's headers (so a
/// client that sends half a request, or idles on a kept-alive connection, is
/// closed); each request `limits.request_timeout` to be answered; and at most
/// `limits.max_requests` are handled at once, the rest refused at once with 503.
pub async fn serve(
    calendar: Arc<Calendar>,
    listener: tokio::net::TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt as _;
    // Counted outside the limits, so requests refused for load are counted too.
    let service = limited(router(calendar.clone()), limits)
        .layer(axum::middleware::from_fn_with_state(
            calendar,
            count_requests,
        ))
        .map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "calendar: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        // Responses go out as written, not held for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing.wait_for(|c| *c) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    let _ = closing_tx.send(true);
    // Requests in flight finish within their timeout; connections then close.
    let _ = tokio::time::timeout(limits.request_timeout + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// `router` within `limits`: a request that takes longer than
/// `limits.request_timeout`, or comes while `limits.max_requests` are in hand, is
/// answered 503 at once.
fn limited(router: Router, limits: Limits) -> Router {
    router.layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                limits.max_requests.max(1),
            ))
            .timeout(limits.request_timeout),
    )
}

/// The answer when a request is refused for the server's sake: 503, with the reason.
async fn overloaded(error: tower::BoxError) -> Response {
    let text = if error.is::<tower::timeout::error::Elapsed>() {
        "the request took too long\n"
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        "the server is busy; try again shortly\n"
    } else {
        tracing::error!(%error, "calendar: request failed");
        "the request failed\n"
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// The member token of a request under `/m/<token>/`, checked by [`member_gate`].
#[derive(Clone)]
struct Member(String);

async fn member_gate(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    Path(params): Path<HashMap<String, String>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = params.get("token") else {
        return not_found(&calendar, None);
    };
    let token = token.to_ascii_lowercase();
    match calendar.links.is_live(&token) {
        Ok(true) => {
            request.extensions_mut().insert(Member(token));
            next.run(request).await
        }
        Ok(false) => not_found(&calendar, None),
        Err(e) => {
            tracing::error!(error = %e, "cannot read feed links");
            (StatusCode::SERVICE_UNAVAILABLE, "storage error\n").into_response()
        }
    }
}

fn member(request_extensions: &axum::http::Extensions) -> Option<String> {
    request_extensions.get::<Member>().map(|m| m.0.clone())
}

#[derive(Deserialize, Default)]
struct Filters {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    area: Option<String>,
}

/// A request for something that is not there, or not for this reader.
struct Refusal {
    status: StatusCode,
    title: &'static str,
    text: String,
}

impl Refusal {
    fn not_found(text: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            title: "Not found",
            text: text.into(),
        }
    }

    fn bad_request(text: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request",
            text: text.into(),
        }
    }
}

impl Calendar {
    /// The selection for `filters`, refusing unknown organisations and malformed areas.
    fn selection(
        &self,
        token: &Option<String>,
        org: Option<&str>,
        area: Option<&str>,
    ) -> Result<Selection, Refusal> {
        let organisation = match org.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(slug) => Some(
                self.directory()
                    .by_slug(slug)
                    .ok_or_else(|| {
                        Refusal::not_found(format!(
                            "No organisation of the alliance is called {slug:?}."
                        ))
                    })?
                    .key,
            ),
        };
        let area = match area.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(code) => {
                let code = code.to_ascii_uppercase();
                accord_core::body::check_gss("area", &code).map_err(|_| {
                    Refusal::bad_request(format!(
                        "{code:?} is not a GSS area code (a letter E, W, S, N or K and 8 digits, \
                         e.g. E14001234)."
                    ))
                })?;
                Some(code)
            }
        };
        Ok(Selection {
            audience: if token.is_some() {
                Audience::Members
            } else {
                Audience::Public
            },
            organisation,
            area,
        })
    }

    /// The organisations as the current roster names them (read again whenever the
    /// roster has changed, so an organisation admitted later is named at once).
    fn directory(&self) -> Arc<Directory> {
        let state = self.ledger.state();
        let version = state.roster().version;
        let mut slot = self.directory.lock().expect("directory lock");
        if slot.0 != version {
            *slot = (
                version,
                Arc::new(Directory::from_roster(state.charter(), state.roster())),
            );
        }
        slot.1.clone()
    }

    fn context<'a>(&'a self, paths: &'a Paths, directory: &'a Directory) -> PageContext<'a> {
        PageContext {
            alliance_name: &self.alliance_name,
            directory,
            paths,
            now: Utc::now(),
        }
    }
}

fn html(status: StatusCode, body: String, member: bool) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(if member {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        }),
    );
    if member {
        headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    }
    response
}

fn refused(calendar: &Calendar, token: Option<&str>, refusal: Refusal) -> Response {
    let paths = calendar.paths(token);
    let directory = calendar.directory();
    let body = page::message(
        &calendar.context(&paths, &directory),
        refusal.title,
        &refusal.text,
    );
    html(refusal.status, body, token.is_some())
}

fn not_found(calendar: &Calendar, token: Option<&str>) -> Response {
    refused(
        calendar,
        token,
        Refusal::not_found("There is nothing at this address."),
    )
}

async fn not_found_handler(AxumState(calendar): AxumState<Arc<Calendar>>) -> Response {
    not_found(&calendar, None)
}

/// Counts each request by its route's pattern (`/m/{token}/calendar.ics`, never the
/// path itself: a member's link holds a secret) and status code.
async fn count_requests(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("other", |m| m.as_str())
        .to_owned();
    let response = next.run(request).await;
    calendar
        .ledger
        .metrics()
        .calendar_request(&route, response.status().as_u16());
    response
}

/// `/metrics`: Prometheus text (OpenMetrics 1.0), see [`crate::metrics`].
async fn metrics(AxumState(calendar): AxumState<Arc<Calendar>>) -> Response {
    let ledger = calendar.ledger.clone();
    // Clash views are computed from the state: off the async threads.
    let Ok(text) =
        tokio::task::spawn_blocking(move || ledger.metrics().clone().render(&ledger)).await
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn health(AxumState(calendar): AxumState<Arc<Calendar>>) -> Response {
    // Cheap on purpose (monitors poll it): no digest, which hashes the whole state.
    let state = calendar.ledger.state();
    let entries = state.entry_count();
    let failure = calendar.ledger.storage_failure();
    let lost: Vec<serde_json::Value> = calendar
        .ledger
        .lost_own_entries(&state)
        .iter()
        .map(|l| {
            serde_json::json!({
                "author": l.author.to_string(),
                "stored_seq": l.stored,
                "signed_seq": l.signed,
                "peer_seq": l.on_peers,
            })
        })
        .collect();
    // Failing exactly while the store is not whole and writable (`integrity.rs`).
    let problem = calendar.ledger.store_problem(&state);
    let (code, status) = match &problem {
        None => (StatusCode::OK, "ok"),
        Some(_) if failure.is_some() => (StatusCode::SERVICE_UNAVAILABLE, "storage failed"),
        Some(p) if p.starts_with("the storage engine") => {
            (StatusCode::SERVICE_UNAVAILABLE, "storage failed")
        }
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "store lost entries"),
    };
    let mut response = (
        code,
        axum::Json(serde_json::json!({
            "status": status,
            "problem": problem,
            "storage_error": failure,
            "lost_own_entries": lost,
            "alliance": calendar.alliance_name,
            "entries": entries,
            "free_disk_bytes": calendar.ledger.store().free_space().ok(),
            "feed_cache": calendar.cache_stats(),
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn page_handler(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    Query(filters): Query<Filters>,
    request: axum::extract::Request,
) -> Response {
    let token = member(request.extensions());
    let selection =
        match calendar.selection(&token, filters.org.as_deref(), filters.area.as_deref()) {
            Ok(s) => s,
            Err(r) => return refused(&calendar, token.as_deref(), r),
        };
    // Every event is read and the page rendered: on the blocking pool.
    blocking(move || {
        let paths = calendar.paths(token.as_deref());
        let directory = calendar.directory();
        let ctx = calendar.context(&paths, &directory);
        let events = calendar.ledger.state().events();
        let audience = Selection {
            audience: selection.audience,
            organisation: None,
            area: None,
        };
        let mut areas: Vec<String> = events
            .iter()
            .filter(|e| audience.includes(e, ctx.now) && e.event.end_utc > ctx.now)
            .filter_map(|e| e.event.area.clone())
            .collect();
        areas.sort();
        areas.dedup();
        let body = page::calendar(&ctx, &selection, &events, &areas);
        html(StatusCode::OK, body, token.is_some())
    })
    .await
}

async fn event_handler(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    Path(params): Path<HashMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let token = member(request.extensions());
    let missing = || Refusal::not_found("There is no such event, or it is not public.");
    let (Some(author), Some(uid)) = (params.get("author"), params.get("uid")) else {
        return refused(&calendar, token.as_deref(), missing());
    };
    let Ok(author) = author.parse::<PublicId>() else {
        return refused(&calendar, token.as_deref(), missing());
    };
    let paths = calendar.paths(token.as_deref());
    let directory = calendar.directory();
    let ctx = calendar.context(&paths, &directory);
    let member = token.is_some();
    // Past and cancelled events are shown too: their address may be bookmarked. One
    // lookup in the events index.
    let found = calendar
        .ledger
        .state()
        .event(&author, uid)
        .filter(|e| member || e.event.visibility == accord_core::body::Visibility::Public);
    match found {
        Some(event) => html(StatusCode::OK, page::event(&ctx, &event), token.is_some()),
        None => refused(&calendar, token.as_deref(), missing()),
    }
}

async fn clashes_handler(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    request: axum::extract::Request,
) -> Response {
    let Some(token) = member(request.extensions()) else {
        // The board is for members: publicly it does not exist.
        return not_found(&calendar, None);
    };
    // Clashes are derived from every position: on the blocking pool.
    blocking(move || {
        let paths = calendar.paths(Some(&token));
        let directory = calendar.directory();
        let ctx = calendar.context(&paths, &directory);
        let clashes: Vec<_> = calendar
            .ledger
            .state()
            .clashes()
            .into_iter()
            .filter(|c| c.state != ClashState::Resolved)
            .collect();
        html(StatusCode::OK, page::clash_board(&ctx, &clashes), true)
    })
    .await
}

async fn feed_query(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    Query(filters): Query<Filters>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let token = member(request.extensions());
    feed_response(
        &calendar,
        token,
        filters.org.as_deref(),
        filters.area.as_deref(),
        &headers,
    )
    .await
}

/// `/org/<slug>/calendar.ics` and `/area/<code>/calendar.ics`.
async fn feed_path(
    AxumState(calendar): AxumState<Arc<Calendar>>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let token = member(request.extensions());
    let org = params.get("slug").map(String::as_str);
    let area = params.get("code").map(String::as_str);
    if org.or(area).is_none_or(|v| v.trim().is_empty()) {
        return not_found(&calendar, token.as_deref());
    }
    feed_response(&calendar, token, org, area, &headers).await
}

/// Runs `work` (reading a state snapshot, rendering, compressing) on the blocking
/// pool, off the async threads that also serve publishes; 500 if it panicked.
async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn feed_response(
    calendar: &Arc<Calendar>,
    token: Option<String>,
    org: Option<&str>,
    area: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    if org.is_some_and(|o| o.trim().is_empty()) {
        return not_found(calendar, token.as_deref());
    }
    let selection = match calendar.selection(&token, org, area) {
        Ok(s) => s,
        Err(r) => return refused(calendar, token.as_deref(), r),
    };
    let member = token.is_some();
    // Rendering and compressing a feed reads every event: on the blocking pool.
    let feed = {
        let calendar = calendar.clone();
        let token = token.clone();
        match tokio::task::spawn_blocking(move || calendar.feed(token.as_deref(), selection)).await
        {
            Ok(feed) => feed,
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    };
    let gzip = accepts_gzip(headers);
    let (body, etag) = if gzip {
        (&feed.gzip, &feed.gzip_etag)
    } else {
        (&feed.body, &feed.etag)
    };
    let not_modified = match headers.get(header::IF_NONE_MATCH) {
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
        Some(value) => etag_matches(value, etag),
        None => match (
            headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok()),
            feed.last_modified,
        ) {
            // Against the rendering's own date, which may be ahead of the header
            // sent: a client that got a capped date asks again and gets the bytes.
            (Some(since), Some(modified)) => {
                SystemTime::UNIX_EPOCH + Duration::from_secs(modified) <= since
            }
            _ => false,
        },
    };
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, body.clone()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/calendar; charset=utf-8"),
        );
        if gzip {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        r
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, etag.clone());
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(modified) = feed.last_modified_at(SystemTime::now())
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        out.insert(header::LAST_MODIFIED, value);
    }
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if member {
            "private, max-age=60"
        } else {
            "public, max-age=60"
        }),
    );
    if member {
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        out.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    }
    response
}

/// Whether an If-None-Match value matches `etag` (weak comparison, RFC 9110 §13.1.2).
fn etag_matches(value: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let ours = etag.as_bytes();
    value
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding() {
        let accepts = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(accepts("gzip"));
        assert!(accepts("deflate, gzip;q=0.8"));
        assert!(accepts("GZIP"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    /// A router whose `/slow` answers only when `release` is notified.
    fn slow_router(release: Arc<tokio::sync::Notify>) -> Router {
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }))
    }

    async fn call(service: &Router, path: &str) -> StatusCode {
        use tower::ServiceExt as _;
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("a request");
        service
            .clone()
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    }

    #[tokio::test]
    async fn requests_past_the_limit_get_503_at_once() {
        let release = Arc::new(tokio::sync::Notify::new());
        let limits = Limits {
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_requests: 1,
        };
        let service = limited(slow_router(release.clone()), limits);
        let held = tokio::spawn({
            let service = service.clone();
            async move { call(&service, "/slow").await }
        });
        // While /slow holds the one slot, anything else is shed (bounded wait for the
        // slot to be taken).
        let mut shed = false;
        for _ in 0..200 {
            if call(&service, "/fast").await == StatusCode::SERVICE_UNAVAILABLE {
                shed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            shed,
            "a second request was not refused while the slot was held"
        );
        release.notify_one();
        assert_eq!(held.await.expect("joined"), StatusCode::OK);
        assert_eq!(call(&service, "/fast").await, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_past_its_timeout_gets_503() {
        let limits = Limits {
            request_timeout: Duration::from_millis(200),
            header_timeout: Duration::from_secs(10),
            max_requests: 4,
        };
        let service = limited(slow_router(Arc::new(tokio::sync::Notify::new())), limits);
        let answered = tokio::time::timeout(Duration::from_secs(10), call(&service, "/slow"))
            .await
            .expect("answered within the deadline");
        assert_eq!(answered, StatusCode::SERVICE_UNAVAILABLE);
        // The timed-out request gave its slot back.
        assert_eq!(call(&service, "/fast").await, StatusCode::OK);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/org/%FF/x"), b"/org/\xff/x");
        assert_eq!(percent_decode("/a%20b%zz%4"), b"/a b%zz%4");
        assert!(std::str::from_utf8(&percent_decode("/events/%C3%28/x")).is_err());
        assert!(std::str::from_utf8(&percent_decode("/org/plaid-ynys-m%C3%B4n/")).is_ok());
    }

    #[test]
    fn if_none_match_lists() {
        let ours = HeaderValue::from_static("\"abc\"");
        let check = |v: &'static str| etag_matches(&HeaderValue::from_static(v), &ours);
        assert!(check("\"abc\""));
        assert!(check("W/\"abc\""));
        assert!(check("\"x\", \"abc\""));
        assert!(check("*"));
        assert!(!check("\"abcd\""));
        assert!(!check("abc"));
    }
}
