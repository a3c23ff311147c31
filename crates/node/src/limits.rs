//! Bounds on what one client can make the gRPC server do: a deadline per call, a
//! bound on concurrent calls per connection, and bounds on open server streams
//! (`WatchClashes`, `Sync`) per connection and per token.
//!
//! The node's `[limits]` section sets them (see `config`). [`Guard`] is a tower layer
//! around every gRPC service: it ends a call that overruns `request_timeout` with
//! DEADLINE_EXCEEDED, and turns tonic's OUT_OF_RANGE for an oversized request into
//! RESOURCE_EXHAUSTED, the code gRPC's status table gives for it. [`StreamLimits`]
//! counts the live streams; a stream over either bound is refused with
//! RESOURCE_EXHAUSTED naming the bound.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::{Code, Status};

/// The `[limits]` of a node, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a unary call (or a stream's opening) may take.
    pub request_timeout: Duration,
    /// Calls served at once on one connection; more wait their turn.
    pub max_requests_per_connection: usize,
    /// Server streams open at once on one connection.
    pub max_streams_per_connection: usize,
    /// Server streams open at once for one operator token (or one peer).
    pub max_streams_per_token: usize,
    /// Connections open at once on the gRPC listener; more are closed at once.
    pub max_connections: usize,
    /// TLS handshakes in progress at once; more connections are closed at once.
    pub max_handshakes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_requests_per_connection: 64,
            max_streams_per_connection: 16,
            max_streams_per_token: 64,
            max_connections: 512,
            max_handshakes: 32,
        }
    }
}

/// Live server streams per connection and per token.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    limits: Limits,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    per_connection: HashMap<SocketAddr, usize>,
    per_token: HashMap<String, usize>,
}

/// One open stream; dropping it (when the stream ends) frees its place.
#[derive(Debug)]
pub struct StreamPermit {
    open: Arc<Mutex<Open>>,
    connection: Option<SocketAddr>,
    token: String,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.connection {
            decrement(&mut open.per_connection, &c);
        }
        decrement(&mut open.per_token, &self.token);
    }
}

impl StreamLimits {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: Arc::default(),
        }
    }

    /// A place for one more stream on `connection` (the client's address, which
    /// names the connection) for `token` (an operator's name or a peer's
    /// fingerprint, as `who` describes it), or RESOURCE_EXHAUSTED.
    pub fn acquire(
        &self,
        connection: Option<SocketAddr>,
        token: &str,
        who: &str,
    ) -> Result<StreamPermit, Status> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = connection {
            let n = open.per_connection.get(&c).copied().unwrap_or(0);
            if n >= self.limits.max_streams_per_connection {
                return Err(Status::resource_exhausted(format!(
                    "this connection already has {n} open streams, the most this node allows \
                     per connection (max_streams_per_connection); close one or open another \
                     connection"
                )));
            }
        }
        let n = open.per_token.get(token).copied().unwrap_or(0);
        if n >= self.limits.max_streams_per_token {
            return Err(Status::resource_exhausted(format!(
                "{who} already has {n} open streams, the most this node allows per token \
                 (max_streams_per_token); close one first"
            )));
        }
        if let Some(c) = connection {
            *open.per_connection.entry(c).or_default() += 1;
        }
        *open.per_token.entry(token.to_owned()).or_default() += 1;
        Ok(StreamPermit {
            open: self.open.clone(),
            connection,
            token: token.to_owned(),
        })
    }
}

/// The tower layer of [`Guard`].
#[derive(Debug, Clone, Copy)]
pub struct GuardLayer {
    timeout: Duration,
}

impl GuardLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            timeout: self.timeout,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for Guard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = self.timeout;
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(response)) => Ok(oversized_is_resource_exhausted(response)),
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the node did not answer within its request timeout of {}s \
                     (request_timeout_secs)",
                    timeout.as_secs_f64()
                ))
                .into_http()),
            }
        })
    }
}

/// tonic answers a request over `max_decoding_message_size` with OUT_OF_RANGE in a
/// trailers-only response; gRPC's status table says RESOURCE_EXHAUSTED. No handler
/// of this node answers OUT_OF_RANGE, so every such header is that refusal.
fn oversized_is_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let out_of_range = (Code::OutOfRange as i32).to_string();
    if response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
    {
        // tonic's message ("decoded message length too large: found N bytes, the
        // limit is: L bytes") stays.
        response
            .headers_mut()
            .insert("grpc-status", (Code::ResourceExhausted as i32).into());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    type Response = http::Response<tonic::body::Body>;

    async fn call(layer: GuardLayer, answer_after: Duration, answer: fn() -> Response) -> Response {
        let inner = tower::service_fn(move |_request: http::Request<()>| async move {
            tokio::time::sleep(answer_after).await;
            Ok::<_, std::convert::Infallible>(answer())
        });
        let mut guarded = layer.layer(inner);
        let ready = guarded.ready().await.unwrap();
        ready.call(http::Request::new(())).await.unwrap()
    }

    fn code(response: &Response) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_call_over_the_request_timeout_gets_deadline_exceeded() {
        let layer = GuardLayer::new(Duration::from_millis(100));
        let slow = call(layer, Duration::from_secs(30), || {
            Status::ok("").into_http()
        })
        .await;
        assert_eq!(code(&slow), Some("4"), "DEADLINE_EXCEEDED");
        let message = slow
            .headers()
            .get("grpc-message")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(message.contains("request_timeout_secs"), "{message}");
        let quick = call(layer, Duration::ZERO, || Status::ok("").into_http()).await;
        assert_eq!(code(&quick), Some("0"));
    }

    #[tokio::test]
    async fn out_of_range_from_the_decoder_becomes_resource_exhausted() {
        let layer = GuardLayer::new(Duration::from_secs(2));
        let oversized = call(layer, Duration::ZERO, || {
            Status::out_of_range("Error, decoded message length too large").into_http()
        })
        .await;
        assert_eq!(code(&oversized), Some("8"), "RESOURCE_EXHAUSTED");
        let other = call(layer, Duration::ZERO, || {
            Status::invalid_argument("bad").into_http()
        })
        .await;
        assert_eq!(code(&other), Some("3"));
    }

    #[test]
    fn a_stream_permit_frees_its_place_when_dropped() {
        let limits = StreamLimits::new(Limits {
            max_streams_per_connection: 1,
            max_streams_per_token: 2,
            ..Limits::default()
        });
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let first = limits.acquire(Some(a), "t", "operator t").unwrap();
        let refused = limits.acquire(Some(a), "t", "operator t").unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(refused.message().contains("max_streams_per_connection"));
        let _second = limits.acquire(Some(b), "t", "operator t").unwrap();
        let refused = limits.acquire(None, "t", "operator t").unwrap_err();
        assert!(refused.message().contains("max_streams_per_token"));
        drop(first);
        limits.acquire(Some(a), "u", "operator u").unwrap();
    }
}
