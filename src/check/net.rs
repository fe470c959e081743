//! The I/O shell of `check`: one HTTP/1.1 request on a fresh connection (TCP with a connect
//! timeout, then TLS with rustls when https), with the CA / skip-verify settings containerd
//! would use, and how far it got ([`Progress`]) so a timeout can say where it stopped. A TLS
//! failure is classified ([`TlsFailure`]): unknown CA, hostname mismatch, expired, not TLS.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, DigitallySignedStruct};

/// Bodies are read up to this size (token answers, error documents).
const MAX_BODY: usize = 256 * 1024;

/// Why a TLS handshake failed, in the words an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The chain does not lead to a trusted CA (CA_CERT missing or another CA).
    UnknownCa,
    /// The certificate does not name the host the endpoint is written with.
    HostnameMismatch,
    Expired,
    /// The server did not answer TLS (a plain-http server on an https URL).
    NotTls,
    Other(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::UnknownCa => f.write_str(
                "unknown CA: the server's certificate is not signed by a trusted CA (CA_CERT, or the system roots)",
            ),
            TlsFailure::HostnameMismatch => {
                f.write_str("hostname mismatch: the certificate does not name this host")
            }
            TlsFailure::Expired => f.write_str("certificate expired (or not yet valid)"),
            TlsFailure::NotTls => {
                f.write_str("not a TLS server (it answers plain http on this port?)")
            }
            TlsFailure::Other(s) => write!(f, "{s}"),
        }
    }
}

/// Why a request failed before an HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    BadUrl(String),
    /// DNS or TCP connect failed.
    Connect(String),
    ConnectTimeout(Duration),
    Tls(TlsFailure),
    /// The connection broke before a full answer.
    Http(String),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::BadUrl(u) => write!(f, "not a URL: {u}"),
            NetError::Connect(e) => write!(f, "cannot connect: {e}"),
            NetError::ConnectTimeout(d) => write!(f, "connect timed out after {}", fmt_dur(*d)),
            NetError::Tls(t) => write!(f, "TLS: {t}"),
            NetError::Http(e) => write!(f, "HTTP: {e}"),
        }
    }
}

pub fn fmt_dur(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// How far a request got (read after a timeout).
#[derive(Debug, Default)]
pub struct Progress(AtomicU8);

/// Phases of [`Progress`].
pub const CONNECTED: u8 = 1;
pub const TLS_DONE: u8 = 2;
pub const SENT: u8 = 3;

impl Progress {
    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, p: u8) {
        self.0.fetch_max(p, Ordering::Relaxed);
    }
}

/// A parsed `scheme://host[:port]/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub https: bool,
    /// `host[:port]` as written (the Host header).
    pub authority: String,
    /// Host name or IP, brackets removed (for DNS and the TLS server name).
    pub host: String,
    pub port: u16,
    /// Path and query (`/` at least).
    pub target: String,
}

/// Split an http(s) URL. Pure.
pub fn parse_url(url: &str) -> Option<Parsed> {
    let (scheme, rest) = url.split_once("://")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (authority.to_string(), None),
        }
    };
    Some(Parsed {
        https,
        authority: authority.to_string(),
        host,
        port: port.unwrap_or(if https { 443 } else { 80 }),
        target,
    })
}

/// The TLS settings of one host: extra CA certificates (PEM, added to the system roots, as
/// containerd does) or verification off.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub skip_verify: bool,
    pub ca_pem: Vec<String>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system roots, loaded once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static R: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    R.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// Certificates of a PEM text (anything else in it is skipped).
fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body = &rest[start + 27..];
        let Some(end) = body.find("-----END CERTIFICATE-----") else {
            break;
        };
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(CertificateDer::from(der));
        }
        rest = &body[end..];
    }
    out
}

/// `skip_verify`: any certificate, but handshake signatures still checked.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls client configuration for `tls`.
pub fn client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let cfg = if tls.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(system_roots().iter().cloned());
        for pem in &tls.ca_pem {
            let certs = pem_certs(pem);
            if certs.is_empty() {
                return Err("the CA file holds no PEM certificate".into());
            }
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err("the CA file holds no usable certificate".into());
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(cfg))
}

/// Classify a rustls error. Pure.
pub fn classify_tls(e: &rustls::Error) -> TlsFailure {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsFailure::UnknownCa
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::HostnameMismatch
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            other => TlsFailure::Other(format!("invalid certificate: {other:?}")),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => TlsFailure::NotTls,
        other => TlsFailure::Other(other.to_string()),
    }
}

fn io_tls_failure(e: &std::io::Error) -> TlsFailure {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => classify_tls(r),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            TlsFailure::Other("the server closed the connection during the handshake".into())
        }
        None => TlsFailure::Other(e.to_string()),
    }
}

/// An HTTP answer (body capped at 256 KiB; empty for HEAD).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// Every value of header `name`, as text.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
}

/// One request on a new connection. Header values may hold credentials: they are sent, never
/// shown. No overall timeout here: the caller bounds the whole probe.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    tls: &Arc<ClientConfig>,
    connect_timeout: Duration,
    progress: &Progress,
) -> Result<Response, NetError> {
    let u = parse_url(url).ok_or_else(|| NetError::BadUrl(url.to_string()))?;
    let addr = (u.host.as_str(), u.port);
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(NetError::ConnectTimeout(connect_timeout)),
        Ok(Err(e)) => return Err(NetError::Connect(e.to_string())),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    progress.set(CONNECTED);
    let method = hyper::Method::from_bytes(method.as_bytes())
        .map_err(|_| NetError::Http(format!("bad method {method}")))?;
    let mut req = hyper::Request::builder()
        .method(method.clone())
        .uri(&u.target)
        .header(hyper::header::HOST, &u.authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("regmirror/", env!("CARGO_PKG_VERSION"), " (check)"),
        );
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| NetError::Http(format!("cannot build the request: {e}")))?;
    if u.https {
        let name =
            ServerName::try_from(u.host.clone()).map_err(|_| NetError::BadUrl(url.to_string()))?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| NetError::Tls(io_tls_failure(&e)))?;
        progress.set(TLS_DONE);
        send(stream, req, method == hyper::Method::HEAD, progress).await
    } else {
        send(tcp, req, method == hyper::Method::HEAD, progress).await
    }
}

async fn send<S>(
    stream: S,
    req: hyper::Request<Empty<Bytes>>,
    head: bool,
    progress: &Progress,
) -> Result<Response, NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| NetError::Http(crate::errchain::chain(&e)))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    progress.set(SENT);
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| NetError::Http(crate::errchain::chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = if head {
            Vec::new()
        } else {
            Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default()
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = parse_url("https://harbor.example.org/v2/x?scope=a").unwrap();
        assert_eq!(
            (p.https, p.host.as_str(), p.port, p.target.as_str()),
            (true, "harbor.example.org", 443, "/v2/x?scope=a")
        );
        let p = parse_url("http://[::1]:5000").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.target.as_str()),
            ("::1", 5000, "/")
        );
        assert_eq!(
            parse_url("http://127.0.0.1:5/v2/").unwrap().authority,
            "127.0.0.1:5"
        );
        assert!(parse_url("ftp://x").is_none());
        assert!(parse_url("https://u:p@x/").is_none());
        assert!(parse_url("https://x:port/").is_none());
    }

    #[test]
    fn tls_errors_classified() {
        use rustls::Error as E;
        assert_eq!(
            classify_tls(&E::InvalidCertificate(CertificateError::UnknownIssuer)),
            TlsFailure::UnknownCa
        );
        assert_eq!(
            classify_tls(&E::InvalidCertificate(CertificateError::NotValidForName)),
            TlsFailure::HostnameMismatch
        );
        assert_eq!(
            classify_tls(&E::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            )),
            TlsFailure::NotTls
        );
        assert!(TlsFailure::UnknownCa.to_string().starts_with("unknown CA"));
    }

    #[test]
    fn pem_parsing() {
        assert!(pem_certs("no pem").is_empty());
        let bad = TlsSettings {
            skip_verify: false,
            ca_pem: vec!["garbage".into()],
        };
        assert!(client_config(&bad).is_err());
        let off = TlsSettings {
            skip_verify: true,
            ca_pem: vec![],
        };
        assert!(client_config(&off).is_ok());
    }
}
