//! The HTTP client that carries the load: parallax's own HTTP/1.1 exchange
//! ([`http1`]), and hyper's connection API for HTTP/2.
//!
//! Connections are kept alive in a pool that all virtual users share. A
//! request takes the most recently used idle connection, or opens a new one,
//! and gives it back when its response is complete. The number of open
//! connections therefore follows the number of requests in flight, not the
//! number of users. A connection that fails is dropped. An HTTP/1.1
//! connection is driven inside the task of the user sending on it, so a
//! response reaches the code that measures it without a hop through another
//! task. TLS connections offer HTTP/2 and HTTP/1.1 by ALPN, and plain ones
//! speak HTTP/1.1.
//!
//! reqwest, with its own pool, per-request URL handling and redirect policy,
//! took 2.3 times the CPU per request of this client in
//! `benches/client_cost.rs`, which measures both clients on the same requests.

use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, USER_AGENT,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::metrics::Outcome;

mod http1;

use http1::Http1;

/// Redirects followed for one request before it fails as a transport error.
pub const MAX_REDIRECTS: u32 = 10;

/// Content codings the client decodes, and so advertises.
const ACCEPTED_ENCODINGS: &str = "gzip, deflate, br";

/// Settings shared by all connections to one target: its address, the TLS
/// setup and the time limits.
pub struct Client {
    origin: Origin,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_body_bytes: usize,
    user_agent: HeaderValue,
    /// Idle kept-alive connections, the most recently used last.
    idle: std::sync::Mutex<Vec<Link>>,
}

/// Settings of a [`Client`] that do not come from the base URL.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Accept any certificate; the caller warns about it.
    pub insecure_skip_tls_verify: bool,
    /// The largest response body, before and after decoding, that is read
    /// whole; a larger one fails the request.
    pub max_body_bytes: usize,
}

/// Scheme, host and port of the target: every request goes there.
#[derive(Clone)]
struct Origin {
    tls: bool,
    address: Address,
    port: u16,
    /// The `Host` header: the host and, when not the scheme's default, the port.
    host_header: HeaderValue,
    /// `scheme://authority`, the start of every absolute URI.
    scheme_and_authority: String,
    /// The name the server's certificate must carry.
    server_name: ServerName<'static>,
}

#[derive(Clone)]
enum Address {
    Name(String),
    Ip(std::net::IpAddr),
}

/// A URL of the target, prepared once so that a request only clones it.
#[derive(Clone, Debug)]
pub struct Resource {
    url: url::Url,
    /// `/path?query`, the HTTP/1.1 request target.
    origin_form: Uri,
    /// `scheme://authority/path?query`, which HTTP/2 needs.
    absolute_form: Uri,
}

impl Resource {
    pub fn url(&self) -> &url::Url {
        &self.url
    }
}

/// One request: the target's resource, the method, and the parts that vary.
pub struct Request<'a> {
    pub method: &'a Method,
    pub resource: &'a Resource,
    /// The `Authorization` header; marked sensitive by the caller.
    pub authorization: Option<&'a HeaderValue>,
    /// A JSON body, sent with `Content-Type: application/json`.
    pub json_body: Option<&'a Bytes>,
}

/// A response that arrived in full, its body decoded.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Reason a request got no complete response. The descriptions name hosts and
/// causes, never headers or bodies, so no token or password can appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No TCP or TLS connection within the connect timeout.
    Connect(String),
    /// No complete response within the request timeout.
    Timeout,
    /// A reset, a protocol error, a truncated or undecodable body, or too many redirects.
    Transport(String),
}

impl Error {
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Connect(_) => Outcome::ConnectError,
            Error::Timeout => Outcome::Timeout,
            Error::Transport(_) => Outcome::TransportError,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(detail) | Error::Transport(detail) => f.write_str(detail),
            Error::Timeout => {
                f.write_str("timed out waiting for the whole response (request timeout)")
            }
        }
    }
}

impl Client {
    /// Builds a client for the target at `base_url`, an http:// or https:// URL.
    pub fn new(base_url: &str, options: &ClientOptions) -> Result<Self, String> {
        let url = url::Url::parse(base_url)
            .map_err(|error| format!("{base_url:?} is not a valid URL ({error})"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "{base_url:?} has the scheme {other:?}; use http:// or https://"
                ))
            }
        };
        let (address, server_name) = match url.host() {
            Some(url::Host::Domain(name)) => {
                let server_name = ServerName::try_from(name.to_string())
                    .map_err(|error| format!("{name:?} is not a valid host name ({error})"))?;
                (Address::Name(name.to_string()), server_name)
            }
            Some(url::Host::Ipv4(ip)) => (Address::Ip(ip.into()), ServerName::from(ip)),
            Some(url::Host::Ipv6(ip)) => (Address::Ip(ip.into()), ServerName::from(ip)),
            None => return Err(format!("{base_url:?} has no host")),
        };
        let port = url
            .port_or_known_default()
            .expect("http and https have default ports");
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let host_header = HeaderValue::from_str(&authority)
            .map_err(|_| format!("{authority:?} cannot be sent as a Host header"))?;
        let origin = Origin {
            tls,
            address,
            port,
            host_header,
            scheme_and_authority: format!("{}://{authority}", url.scheme()),
            server_name,
        };
        Ok(Client {
            origin,
            tls: tls.then(|| Arc::new(tls_config(options.insecure_skip_tls_verify))),
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            max_body_bytes: options.max_body_bytes,
            user_agent: HeaderValue::from_static(concat!("parallax/", env!("CARGO_PKG_VERSION"))),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Prepares the URL `text`, which must point at this client's origin.
    pub fn resource(&self, text: &str) -> Result<Resource, String> {
        let url = url::Url::parse(text)
            .map_err(|error| format!("{text:?} is not a valid URL ({error})"))?;
        self.resource_of(url)
            .ok_or_else(|| format!("{text:?} is not on {}", self.origin.scheme_and_authority))
    }

    fn resource_of(&self, url: url::Url) -> Option<Resource> {
        let same_origin = url.scheme() == (if self.origin.tls { "https" } else { "http" })
            && url.port_or_known_default() == Some(self.origin.port)
            && match (&self.origin.address, url.host()) {
                (Address::Name(name), Some(url::Host::Domain(host))) => name == host,
                (Address::Ip(ip), Some(url::Host::Ipv4(host))) => *ip == host,
                (Address::Ip(ip), Some(url::Host::Ipv6(host))) => *ip == host,
                _ => false,
            };
        if !same_origin {
            return None;
        }
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let origin_form = Uri::try_from(path_and_query.as_str()).ok()?;
        let absolute_form = Uri::try_from(format!(
            "{}{path_and_query}",
            self.origin.scheme_and_authority
        ))
        .ok()?;
        Some(Resource {
            url,
            origin_form,
            absolute_form,
        })
    }

    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<Link>> {
        // The vector stays consistent even if a holder panicked.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the number of idle connections in the pool.
    pub fn idle_count(&self) -> usize {
        self.idle_connections().len()
    }

    async fn connect(&self) -> Result<Link, Error> {
        let origin = &self.origin;
        let connecting = async {
            let stream = match &origin.address {
                Address::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, origin.port)).await,
                Address::Name(name) => TcpStream::connect((name.as_str(), origin.port)).await,
            }
            .map_err(|error| Error::Connect(format!("{}: {error}", origin.scheme_and_authority)))?;
            // Requests are small and written whole: waiting to coalesce them only adds latency.
            let _ = stream.set_nodelay(true);
            let Some(config) = &self.tls else {
                return Ok(Link::Http1(Http1::new(Stream::Plain(stream))));
            };
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            let stream = connector
                .connect(origin.server_name.clone(), stream)
                .await
                .map_err(|error| {
                    Error::Connect(format!(
                        "TLS handshake with {}: {error}",
                        origin.scheme_and_authority
                    ))
                })?;
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                handshake_http2(Stream::Tls(Box::new(stream))).await
            } else {
                Ok(Link::Http1(Http1::new(Stream::Tls(Box::new(stream)))))
            }
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(link) => link,
            Err(_) => Err(Error::Connect(format!(
                "connecting to {} timed out after {:?} (connect timeout)",
                origin.scheme_and_authority, self.connect_timeout
            ))),
        }
    }
}

/// One user's access to the target: the connection its request is using,
/// taken from the client's pool.
pub struct Connection {
    client: Arc<Client>,
    link: Option<Link>,
    /// Set while a request is under way: if its future is dropped (timeout,
    /// abort), the connection is left mid-exchange and must not be reused.
    busy: bool,
    /// The reason the last request was sent a second time, on a new connection.
    retried: Option<String>,
}

impl Connection {
    pub fn new(client: Arc<Client>) -> Self {
        Connection {
            client,
            link: None,
            busy: false,
            retried: None,
        }
    }

    /// Returns, once, why the last request had to be sent again: its
    /// kept-alive connection closed before the response began.
    pub fn take_retried(&mut self) -> Option<String> {
        self.retried.take()
    }

    /// Sends `request`, follows redirects on the same origin, and reads the
    /// whole response, all within the request timeout.
    pub async fn send(&mut self, request: Request<'_>) -> Result<Response, Error> {
        if self.busy {
            self.link = None;
        }
        self.busy = true;
        if self.link.is_none() {
            self.link = self.client.idle_connections().pop();
        }
        let timeout = self.client.request_timeout;
        let result = match tokio::time::timeout(timeout, self.follow(request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout),
        };
        match self.link.take() {
            Some(link) if result.is_ok() && link.is_reusable() => {
                self.client.idle_connections().push(link)
            }
            _ => {}
        }
        self.busy = false;
        result
    }

    async fn follow(&mut self, request: Request<'_>) -> Result<Response, Error> {
        let mut method = request.method.clone();
        let mut body = request.json_body.cloned();
        let mut redirected: Option<Resource> = None;
        for hop in 0..=MAX_REDIRECTS {
            let resource = redirected.as_ref().unwrap_or(request.resource);
            let response = self
                .round_trip(&method, resource, request.authorization, body.as_ref())
                .await?;
            let Some(next) = self.redirect(&response, resource) else {
                return Ok(response);
            };
            if hop == MAX_REDIRECTS {
                break;
            }
            // 301, 302 and 303 turn the request into a GET without a body,
            // which RFC 9110 allows; 307 and 308 repeat it as it was.
            if matches!(response.status.as_u16(), 301..=303) && method != Method::HEAD {
                method = Method::GET;
                body = None;
            }
            redirected = Some(next);
        }
        Err(Error::Transport(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Returns the resource a redirect response points to, when the client
    /// follows it: a `Location` on the same origin. Any other 3xx is final.
    fn redirect(&self, response: &Response, from: &Resource) -> Option<Resource> {
        if !matches!(response.status.as_u16(), 301..=303 | 307 | 308) {
            return None;
        }
        let location = response.headers.get(LOCATION)?.to_str().ok()?;
        let url = from.url.join(location).ok()?;
        self.client.resource_of(url)
    }

    async fn round_trip(
        &mut self,
        method: &Method,
        resource: &Resource,
        authorization: Option<&HeaderValue>,
        body: Option<&Bytes>,
    ) -> Result<Response, Error> {
        let mut reused = self.link.is_some();
        let limit = self.client.max_body_bytes;
        loop {
            let link = match &mut self.link {
                Some(link) => link,
                // Boxed, like the HTTP/2 exchange below: their futures are
                // large, and would otherwise be copied with every request's.
                None => self.link.insert(Box::pin(self.client.connect()).await?),
            };
            let exchanged = match link {
                Link::Http1(connection) => {
                    let outgoing = http1::Outgoing {
                        method,
                        target: resource
                            .origin_form
                            .path_and_query()
                            .map_or("/", |target| target.as_str()),
                        host: &self.client.origin.host_header,
                        user_agent: &self.client.user_agent,
                        accept_encoding: ACCEPTED_ENCODINGS,
                        authorization,
                        body,
                    };
                    connection.exchange(&outgoing, limit).await
                }
                Link::Http2 { sender } => {
                    let request =
                        build_request(&self.client, method, resource, authorization, body);
                    Box::pin(exchange_http2(sender, request, limit)).await
                }
            };
            let failure = match exchanged {
                Ok(response) => return decode(response, limit),
                Err(failure) => failure,
            };
            // A kept-alive connection can close just as a request goes out.
            // The request is sent again, once, on a new connection when it
            // never left. It is also sent again when the connection closed
            // before a byte of the response and the request can be repeated
            // safely (GET, HEAD, PUT, DELETE, OPTIONS). The latency counts
            // from the first send.
            let retry = match &failure {
                Failure::NotSent(_) => true,
                Failure::Failed {
                    before_response, ..
                } => *before_response && method.is_idempotent(),
            };
            self.link = None;
            match failure {
                Failure::NotSent(_) if reused => {}
                Failure::Failed { detail, .. } if reused && retry => self.retried = Some(detail),
                Failure::NotSent(detail) | Failure::Failed { detail, .. } => {
                    return Err(Error::Transport(detail))
                }
            }
            reused = false;
        }
    }
}

/// An HTTP/2 request; hyper derives `:authority` from the absolute URI.
fn build_request(
    client: &Client,
    method: &Method,
    resource: &Resource,
    authorization: Option<&HeaderValue>,
    body: Option<&Bytes>,
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body.cloned().unwrap_or_default()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = resource.absolute_form.clone();
    *request.version_mut() = http::Version::HTTP_2;
    let headers = request.headers_mut();
    headers.reserve(4);
    headers.insert(USER_AGENT, client.user_agent.clone());
    headers.insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static(ACCEPTED_ENCODINGS),
    );
    if let Some(value) = authorization {
        headers.insert(AUTHORIZATION, value.clone());
    }
    if body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    request
}

/// An open connection and its protocol.
enum Link {
    Http1(Http1),
    /// HTTP/2 multiplexes and replies to pings, so a task of its own drives it.
    Http2 {
        sender: http2::SendRequest<Full<Bytes>>,
    },
}

/// Failure of an exchange on a connection, with its description.
enum Failure {
    /// The request never left: the connection was already closed.
    NotSent(String),
    Failed {
        detail: String,
        /// The connection closed, or was reset, after the request was written
        /// and before a response began.
        before_response: bool,
    },
}

impl Failure {
    fn of_send<T>(mut error: hyper::client::conn::TrySendError<T>) -> Self {
        let unsent = error.take_message().is_some();
        let error = error.into_error();
        if unsent {
            Failure::NotSent(describe(&error))
        } else {
            Failure::Failed {
                detail: describe(&error),
                before_response: closed_before_response(&error),
            }
        }
    }

    fn of_body(error: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> Self {
        let detail = if error.is::<http_body_util::LengthLimitError>() {
            body_too_large(limit)
        } else {
            describe(error.as_ref())
        };
        Failure::Failed {
            detail,
            before_response: false,
        }
    }
}

/// A response with its whole body, not yet decoded.
struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Link {
    fn is_reusable(&self) -> bool {
        match self {
            Link::Http1(connection) => connection.is_reusable(),
            Link::Http2 { .. } => true,
        }
    }
}

async fn exchange_http2(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
    limit: usize,
) -> Result<RawResponse, Failure> {
    sender
        .ready()
        .await
        .map_err(|error| Failure::NotSent(describe(&error)))?;
    let response = sender
        .try_send_request(request)
        .await
        .map_err(Failure::of_send)?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|error| Failure::of_body(error, limit))?;
    Ok(RawResponse {
        status: parts.status,
        headers: parts.headers,
        body: body.to_bytes(),
    })
}

async fn handshake_http2(stream: Stream) -> Result<Link, Error> {
    let (sender, driver) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| Error::Connect(describe(&error)))?;
    tokio::spawn(async move {
        // The error, if any, reaches the requests on this connection.
        let _ = driver.await;
    });
    Ok(Link::Http2 { sender })
}

/// Decodes a gzip, deflate or brotli body of up to `limit` decoded bytes.
/// A body in any other coding, and an empty body (a HEAD, a 204), is kept
/// as sent.
fn decode(response: RawResponse, limit: usize) -> Result<Response, Error> {
    let RawResponse {
        status,
        headers,
        body,
    } = response;
    let coding = headers
        .get(CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_lowercase());
    let as_sent = |headers: HeaderMap, body: Bytes| Response {
        status,
        headers,
        body,
    };
    if body.is_empty() {
        return Ok(as_sent(headers, body));
    }
    let mut decoder: Box<dyn Read + '_> = match coding.as_deref() {
        Some("gzip" | "x-gzip") => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        // Some servers send raw deflate data without the zlib wrapper that
        // RFC 9110 requires, and browsers and curl accept both.
        Some("deflate") if has_zlib_header(&body) => {
            Box::new(flate2::read::ZlibDecoder::new(&body[..]))
        }
        Some("deflate") => Box::new(flate2::read::DeflateDecoder::new(&body[..])),
        Some("br") => Box::new(brotli_decompressor::Decompressor::new(&body[..], 4096)),
        _ => return Ok(as_sent(headers, body)),
    };
    let coding = coding.unwrap_or_default();
    let mut decoded = Vec::new();
    // Reading one byte over the limit separates a body of exactly `limit` from a larger one.
    decoder
        .by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|error| {
            Error::Transport(format!("failed to decode the {coding} body: {error}"))
        })?;
    if decoded.len() > limit {
        return Err(Error::Transport(format!(
            "the {coding} response body decodes to more than {limit} bytes (response.max_body_mib)"
        )));
    }
    Ok(as_sent(headers, Bytes::from(decoded)))
}

/// Tells whether `body` starts with a zlib header (RFC 1950): the deflate
/// method, and a check value that makes the first two bytes a multiple of 31.
fn has_zlib_header(body: &[u8]) -> bool {
    match body {
        [method, flags, ..] => {
            method & 0x0F == 8 && (u16::from(*method) << 8 | u16::from(*flags)) % 31 == 0
        }
        _ => false,
    }
}

/// Tells whether the connection closed or was reset before a response
/// began: the mark of a kept-alive connection the server closed just as the
/// request went out. A malformed response is not such a case.
fn closed_before_response(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return is_reset(io);
        }
        source = cause.source();
    }
    false
}

/// Tells whether `error` is the peer closing or resetting the connection.
fn is_reset(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// Describes the failure of a response body over `limit` bytes.
fn body_too_large(limit: usize) -> String {
    format!("the response body is larger than {limit} bytes (response.max_body_mib)")
}

/// Describes an error with its causes, on one line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tls_config(insecure_skip_tls_verify: bool) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions");
    let mut config = if insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Accepts any certificate, for `target.insecure_skip_tls_verify`. The
/// handshake signatures are still checked, so the server must hold the key
/// of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TCP stream, with or without TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base_url: &str) -> Client {
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            insecure_skip_tls_verify: false,
            max_body_bytes: 1 << 20,
        };
        Client::new(base_url, &options).unwrap()
    }

    #[test]
    fn resources_keep_the_base_path_and_query() {
        let client = client("http://127.0.0.1:8080/v1");
        let resource = client
            .resource("http://127.0.0.1:8080/v1/api/items?page=2")
            .unwrap();
        assert_eq!(resource.origin_form, "/v1/api/items?page=2");
        assert_eq!(
            resource.absolute_form,
            "http://127.0.0.1:8080/v1/api/items?page=2"
        );
        assert_eq!(client.origin.host_header, "127.0.0.1:8080");
    }

    #[test]
    fn default_ports_stay_out_of_the_host_header() {
        let client = client("https://localhost/");
        assert_eq!(client.origin.host_header, "localhost");
        assert_eq!(client.origin.port, 443);
        let resource = client.resource("https://localhost:443/a").unwrap();
        assert_eq!(resource.absolute_form, "https://localhost/a");
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        let client = client("http://[::1]:9000");
        assert_eq!(client.origin.host_header, "[::1]:9000");
        assert!(client.resource("http://[::1]:9000/x").is_ok());
    }

    #[test]
    fn other_origins_are_rejected() {
        let client = client("http://127.0.0.1:8080");
        for other in [
            "http://127.0.0.1:8081/a",
            "https://127.0.0.1:8080/a",
            "http://localhost:8080/a",
        ] {
            let error = client.resource(other).unwrap_err();
            assert!(error.contains("is not on http://127.0.0.1:8080"), "{error}");
        }
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            insecure_skip_tls_verify: false,
            max_body_bytes: 1 << 20,
        };
        let error = Client::new("ftp://127.0.0.1/", &options).err().unwrap();
        assert!(error.contains("\"ftp\""), "{error}");
    }

    fn raw(coding: &str, body: Vec<u8>) -> RawResponse {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap());
        RawResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body),
        }
    }

    #[test]
    fn compressed_bodies_are_decoded() {
        use std::io::Write;
        let text = br#"{"success":true,"apiCost":{"duration":0.01}}"#;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(text).unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(text).unwrap();
        let mut bare = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        bare.write_all(text).unwrap();
        for (coding, body) in [
            ("gzip", gzip.finish().unwrap()),
            ("deflate", zlib.finish().unwrap()),
            ("deflate", bare.finish().unwrap()),
        ] {
            let response = decode(raw(coding, body), 1 << 20).unwrap();
            assert_eq!(&response.body[..], &text[..], "{coding}");
        }
    }

    #[test]
    fn undecodable_body_is_transport_error() {
        let error = decode(raw("gzip", b"not gzip".to_vec()), 1 << 20).unwrap_err();
        assert_eq!(error.outcome(), Outcome::TransportError);
        assert!(
            error.to_string().contains("failed to decode the gzip body"),
            "{error}"
        );
    }

    #[test]
    fn unknown_codings_pass_through() {
        let response = decode(raw("zstd", b"abc".to_vec()), 1 << 20).unwrap();
        assert_eq!(&response.body[..], b"abc");
    }
}
