//! HTTPS targets: HTTP/2 and HTTP/1.1 chosen by ALPN, certificates checked
//! unless the scenario turns that off. The server here is a minimal API on a
//! loopback port with a self-signed certificate made for the test.

mod common;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::{closed, endpoint, run_against, ScenarioBuilder};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parallax::engine::{self, RunOptions, SetupError};
use parallax::report::Summary;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tls-test-token";
const LOGIN_BODY: &str = r#"{"success":true,"statusCode":200,"message":"ok","data":{"token":"tls-test-token"},"apiCost":{"duration":0.001}}"#;
const LIST_BODY: &str = r#"{"success":true,"statusCode":200,"message":"ok","data":[{"id":1}],"apiCost":{"duration":0.002}}"#;

/// Requests the server received, by HTTP version.
#[derive(Default)]
struct Versions {
    http1: AtomicU64,
    http2: AtomicU64,
    unauthorized: AtomicU64,
}

struct TlsServer {
    base_url: String,
    versions: Arc<Versions>,
    stop: CancellationToken,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the API over TLS on a free loopback port, offering `alpn`.
async fn start(alpn: &[&[u8]]) -> TlsServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let versions = Arc::new(Versions::default());
    let stop = CancellationToken::new();
    let (serving, stopped) = (Arc::clone(&versions), stop.clone());
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted.unwrap().0,
                _ = stopped.cancelled() => return,
            };
            let (acceptor, versions) = (acceptor.clone(), Arc::clone(&serving));
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake here.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request| {
                    let versions = Arc::clone(&versions);
                    async move { Ok::<_, Infallible>(answer(&request, &versions)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TlsServer {
        base_url: format!("https://localhost:{port}"),
        versions,
        stop,
    }
}

fn answer(
    request: &hyper::Request<hyper::body::Incoming>,
    versions: &Versions,
) -> hyper::Response<Full<Bytes>> {
    let counter = match request.version() {
        hyper::Version::HTTP_2 => &versions.http2,
        _ => &versions.http1,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|value| value == format!("Bearer {TOKEN}").as_str());
    let (status, body) = match (request.method().as_str(), request.uri().path()) {
        ("POST", "/api/auth/login") => (200, LOGIN_BODY),
        ("GET", "/api/items") if authorized => (200, LIST_BODY),
        ("GET", "/api/items") => {
            versions.unauthorized.fetch_add(1, Ordering::Relaxed);
            (
                401,
                r#"{"success":false,"statusCode":401,"message":"no token"}"#,
            )
        }
        _ => (
            404,
            r#"{"success":false,"statusCode":404,"message":"no route"}"#,
        ),
    };
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn scenario(base_url: &str, skip_verify: bool) -> ScenarioBuilder {
    let mut scenario = ScenarioBuilder::new().load(closed(2, 1.5));
    scenario.base_url = base_url.to_string();
    scenario.target_extra = format!("insecure_skip_tls_verify = {skip_verify}\n");
    scenario
}

async fn run_ok(server: &TlsServer) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let plan = scenario(&server.base_url, true).plan_in(dir.path());
    let result = run_against(plan, &server.base_url).await;
    let summary = Summary::new(&result);
    common::assert_accounted(&summary);
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_alpn_h2_speaks_http2() {
    let server = start(&[b"h2", b"http/1.1"]).await;
    let summary = run_ok(&server).await;

    let list = endpoint(&summary, "list");
    assert!(list.ok >= 100, "{list:?}");
    assert_eq!(list.ok, list.requests_intended);
    // Every request, the two logins included, went over HTTP/2.
    assert_eq!(server.versions.http2.load(Ordering::Relaxed), list.ok + 2);
    assert_eq!(server.versions.http1.load(Ordering::Relaxed), 0);
    assert_eq!(server.versions.unauthorized.load(Ordering::Relaxed), 0);
    // The envelope's 0.002 s came through the TLS and HTTP/2 layers.
    let server_p50 = list.server_ms.p50_ms.unwrap();
    assert!(
        (server_p50 - 2.0).abs() < 0.01,
        "server p50 {server_p50} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_h2_falls_back_to_http1() {
    let server = start(&[b"http/1.1"]).await;
    let summary = run_ok(&server).await;

    let list = endpoint(&summary, "list");
    assert!(list.ok >= 100, "{list:?}");
    assert_eq!(list.ok, list.requests_intended);
    assert_eq!(server.versions.http1.load(Ordering::Relaxed), list.ok + 2);
    assert_eq!(server.versions.http2.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_stops_run() {
    let server = start(&[b"h2", b"http/1.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = scenario(&server.base_url, false).plan_in(dir.path());
    let options = RunOptions {
        target_override: Some(server.base_url.clone()),
        ..RunOptions::default()
    };
    let Err(error) = engine::run(plan, options).await else {
        panic!("the run started despite the untrusted certificate");
    };

    let SetupError::Unreachable { detail, .. } = &error else {
        panic!("expected an unreachable target, got {error}");
    };
    assert!(detail.contains("certificate"), "{detail}");
    assert!(error.to_string().contains(&server.base_url), "{error}");
    // Nothing reached the API: the handshake failed first.
    assert_eq!(server.versions.http1.load(Ordering::Relaxed), 0);
    assert_eq!(server.versions.http2.load(Ordering::Relaxed), 0);
}
