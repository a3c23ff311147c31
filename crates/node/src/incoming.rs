//! The gRPC listener's connections, capped: at most `max_connections` open at once
//! and at most `max_handshakes` TLS handshakes in progress. A connection past a cap
//! is closed at once, before any work is done for it, so a peer or a stranger that
//! opens sockets without end (or never finishes a handshake) costs the node a
//! bounded number of tasks and buffers, and the connections already open go on.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::transport::server::Connected;

/// A connection that holds its place under the cap until it is dropped.
#[derive(Debug)]
pub struct Capped<S> {
    inner: S,
    _place: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: Connected> Connected for Capped<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The caps of one listener.
#[derive(Debug, Clone)]
pub struct Caps {
    connections: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
}

impl Caps {
    pub fn new(max_connections: usize, max_handshakes: usize) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(max_connections)),
            handshakes: Arc::new(Semaphore::new(max_handshakes)),
        }
    }

    /// A place for a new connection from `remote`, or None (it is then closed).
    fn place(&self, remote: SocketAddr) -> Option<OwnedSemaphorePermit> {
        let place = self.connections.clone().try_acquire_owned().ok();
        if place.is_none() {
            tracing::warn!(%remote, "connection refused: the node has as many open as [limits] max_connections allows");
        }
        place
    }
}

/// Accepts connections from `listener` (TCP_NODELAY set) and hands each to `each`
/// with the sender of the returned stream, until the stream is dropped.
fn accepted<S: Send + 'static>(
    listener: tokio::net::TcpListener,
    mut each: impl FnMut(TcpStream, SocketAddr, &mpsc::Sender<Result<S, io::Error>>) + Send + 'static,
) -> impl Stream<Item = Result<S, io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            each(tcp, remote, &tx);
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Plain TCP connections (a node without TLS), capped.
pub fn tcp(
    listener: tokio::net::TcpListener,
    caps: Caps,
) -> impl Stream<Item = Result<Capped<TcpStream>, io::Error>> + Send + 'static {
    accepted(listener, move |tcp, remote, tx| {
        if let Some(place) = caps.place(remote) {
            let tx = tx.clone();
            tokio::spawn(async move {
                let capped = Capped {
                    inner: tcp,
                    _place: place,
                };
                let _ = tx.send(Ok(capped)).await;
            });
        }
    })
}

/// TLS connections, capped: a handshake waits for neither cap, it is refused.
pub fn tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    caps: Caps,
) -> impl Stream<Item = Result<Capped<tokio_rustls::server::TlsStream<TcpStream>>, io::Error>>
+ Send
+ 'static {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    accepted(listener, move |tcp, remote, tx| {
        let Some(place) = caps.place(remote) else {
            return;
        };
        let Ok(handshake) = caps.handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "connection refused: as many TLS handshakes in progress as [limits] max_handshakes allows");
            return;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let accepted =
                tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(handshake);
            match accepted {
                Ok(Ok(stream)) => {
                    let capped = Capped {
                        inner: stream,
                        _place: place,
                    };
                    let _ = tx.send(Ok(capped)).await;
                }
                Ok(Err(e)) => crate::tls::log_refused(remote, &e),
                Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
            }
        });
    })
}
