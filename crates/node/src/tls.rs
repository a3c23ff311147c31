//! TLS 1.3 with pinned, self-signed certificates (rustls, ring).
//!
//! Each node has an ECDSA P-256 key and a self-signed certificate (gRPC's C-core
//! clients refuse Ed25519 certificates; Ed25519 stays the signature of entries). A
//! certificate is named by its fingerprint, the SHA-256 of its DER bytes. There is no
//! certificate authority: a node trusts exactly the fingerprints in its config.
//!
//! - Server side: every connection is TLS. A client may present a certificate; if it
//!   does, it must be one of the pinned peers' or the handshake fails. Clients of the
//!   `Ledger` API present none and authenticate with tokens; the `Federation` service
//!   requires a pinned peer certificate ([`peer_fingerprint`]).
//! - Client side: the server's certificate must have the pinned fingerprint (names and
//!   dates are not checked: the pin is the identity), and a node presents its own
//!   certificate to its peers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate fingerprint: SHA-256 of the DER bytes.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(cert: &[u8]) -> Fingerprint {
    Sha256::digest(cert).into()
}

/// Parses a fingerprint written as 64 hex digits (colons allowed, as openssl prints).
pub fn parse_fingerprint(text: &str) -> Option<Fingerprint> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits.trim(), &mut out).ok()?;
    Some(out)
}

/// A node's TLS certificate and key.
#[derive(Debug)]
pub struct TlsIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate and a PEM (PKCS#8) private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let file_error = |path: &Path, e: &dyn std::fmt::Display| TlsError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let cert =
            CertificateDer::from_pem_file(cert_path).map_err(|e| file_error(cert_path, &e))?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, &e))?;
        Ok(Self { cert, key })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.cert)
    }
}

/// A new ECDSA P-256 key and self-signed certificate for `names` (DNS names or IP
/// addresses the node is reached by), as PEM: (certificate, private key).
pub fn generate(names: &[String]) -> Result<(String, String), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// A certificate whose fingerprint is not pinned: the handshake fails with this inside
/// the rustls error, so whoever reports the failure can say what was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPinned {
    /// The SHA-256 of the certificate presented.
    pub presented: Fingerprint,
    /// Whether the certificate was a server's (this side dialled) or a client's.
    pub by_server: bool,
}

impl std::fmt::Display for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.by_server {
            write!(
                f,
                "the node presented TLS certificate {}, which is not the pinned cert_sha256",
                hex::encode(self.presented)
            )
        } else {
            write!(
                f,
                "the peer presented TLS certificate {}, which is not pinned in [[peers]] of this node's config nor announced in the roster",
                hex::encode(self.presented)
            )
        }
    }
}

impl std::error::Error for NotPinned {}

fn not_pinned(presented: Fingerprint, by_server: bool) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(NotPinned {
            presented,
            by_server,
        }),
    )))
}

/// The unpinned certificate behind `error`, if that is what failed: looks through
/// the error's sources (a gRPC status, a transport error, an I/O error, rustls).
pub fn not_pinned_in(error: &(dyn std::error::Error + 'static)) -> Option<NotPinned> {
    let mut next = Some(error);
    while let Some(e) = next {
        let rustls_error = rustls_error_of(e);
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
            rustls_error
            && let Some(found) = other.0.downcast_ref::<NotPinned>()
        {
            return Some(*found);
        }
        next = e.source();
    }
    None
}

/// `e` as a rustls error, directly or inside an I/O error.
fn rustls_error_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    })
}

/// Whether `error` says the other side refused this side's certificate (a fatal
/// `certificate_unknown` or `bad_certificate` alert): the peer does not pin this node.
pub fn refused_by_peer(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let rustls_error = rustls_error_of(e);
        if let Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate | rustls::AlertDescription::CertificateUnknown,
        )) = rustls_error
        {
            return true;
        }
        // After the handshake, the alert reaches this side as an I/O error that holds
        // only the alert's text.
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            if text.contains("received fatal alert: CertificateUnknown")
                || text.contains("received fatal alert: BadCertificate")
            {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// The pinned peers' fingerprints, shared by the TLS verifier and the federation
/// service and replaced whole when the config is reloaded (SIGHUP).
pub type Pins = Arc<arc_swap::ArcSwap<Vec<Fingerprint>>>;

/// What a serving node says when it ends a live `Sync` stream because it no longer
/// pins the follower's certificate (its organisation left or was removed, or its
/// operator dropped it from `[[peers]]`); the follower reads it as a refusal of
/// its certificate ([`unpinned_by_peer`]).
pub const NO_LONGER_PINNED: &str = "this node no longer pins your TLS certificate";

/// Whether `status` is a serving node's [`NO_LONGER_PINNED`].
pub fn unpinned_by_peer(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.message().contains(NO_LONGER_PINNED)
}

/// A [`Pins`] holding `pins`.
pub fn shared_pins(pins: Vec<Fingerprint>) -> Pins {
    Arc::new(arc_swap::ArcSwap::from_pointee(pins))
}

/// Accepts a client certificate only if it is pinned; lets clients present none.
#[derive(Debug)]
struct PinnedClients {
    pins: Pins,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if self.pins.load().contains(&presented) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(not_pinned(presented, false))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Accepts exactly the server certificate with the pinned fingerprint.
#[derive(Debug)]
struct PinnedServer {
    pin: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(not_pinned(presented, true))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server side: TLS 1.3, HTTP/2, client certificates optional but pinned.
pub fn server_config(
    identity: &TlsIdentity,
    peer_pins: Vec<Fingerprint>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_pinning(identity, shared_pins(peer_pins))
}

/// [`server_config`], pinning whatever `pins` holds at each handshake.
pub fn server_config_pinning(
    identity: &TlsIdentity,
    pins: Pins,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier = PinnedClients {
        pins,
        algorithms: algorithms(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: TLS 1.3, HTTP/2, the server pinned; presents `identity` if given.
pub fn client_config(
    server_pin: Fingerprint,
    identity: Option<&TlsIdentity>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let verifier = PinnedServer {
        pin: server_pin,
        algorithms: algorithms(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A gRPC channel to `address` (`https://host:port`) over TLS with `config`.
/// Connects lazily and reconnects by itself.
/// How often both ends of a connection ping an idle HTTP/2 connection.
pub const KEEPALIVE: Duration = Duration::from_secs(4);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(4);

pub fn channel(
    address: &str,
    config: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> Result<Channel, String> {
    let uri: http::Uri = address
        .parse()
        .map_err(|e| format!("address {address:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("address {address:?} must start with https://"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("address {address:?} has no host:port"))?
        .clone();
    let host = authority.host().trim_matches(['[', ']']).to_string();
    let port = authority.port_u16().unwrap_or(443);
    // The TLS layer is ours; tonic sees a plain connection to this URI.
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // A peer that stops answering (stopped, cut off without a reset) is found by
        // HTTP/2 pings within KEEPALIVE + KEEPALIVE_TIMEOUT, not when TCP gives up.
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let server_name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let connector = tower::service_fn(move |_: http::Uri| {
        let config = config.clone();
        let host = host.clone();
        let server_name = server_name.clone();
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

pub(crate) fn log_refused(remote: SocketAddr, error: &std::io::Error) {
    if let Some(not_pinned) = not_pinned_in(error) {
        tracing::warn!(%remote, "TLS handshake refused: {not_pinned}");
        return;
    }
    tracing::warn!(%remote, "TLS handshake refused: {error}");
}

/// The fingerprint of the certificate a request's client presented, if any.
pub fn peer_fingerprint<T>(request: &tonic::Request<T>) -> Option<Fingerprint> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    certs.first().map(|c| fingerprint(c))
}
