//! CPU time per request of the HTTP client that carries the load, against
//! reqwest doing the same work: one keep-alive connection, a GET with a
//! Bearer token, the whole 245-byte envelope read.
//!
//! The server runs on a thread of its own. The clients run one after the
//! other on the bench's main thread, and that thread's CPU time (user and
//! system, from `CLOCK_THREAD_CPUTIME_ID`) is what is reported. Run it with
//! `cargo bench --bench client_cost`; `REQUESTS=N` sets the requests per round.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parallax::transport::{Client, ClientOptions, Connection, Request};

const ENVELOPE: &str = r#"{"success":true,"statusCode":200,"message":"Items fetched","data":[{"id":1,"name":"widget"},{"id":2,"name":"gadget"}],"apiCost":{"start":"2026-03-31 15:56:56'255","finish":"2026-03-31 15:56:56'257","duration":0.002}}"#;
const TOKEN: &str = "Bearer bench-token";
const ROUNDS: usize = 3;

fn main() {
    let requests: usize = std::env::var("REQUESTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20_000);
    let address = start_server();
    let base_url = format!("http://{address}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut transport_costs = Vec::new();
    let mut reqwest_costs = Vec::new();
    for _ in 0..ROUNDS {
        transport_costs.push(runtime.block_on(transport_round(&base_url, requests)));
        reqwest_costs.push(runtime.block_on(reqwest_round(&base_url, requests)));
    }
    let transport = median(&mut transport_costs);
    let reqwest = median(&mut reqwest_costs);
    println!("client CPU per request, median of {ROUNDS} rounds of {requests} requests:");
    println!("  parallax transport (own HTTP/1.1): {transport:.2} µs");
    println!("  reqwest 0.12:                       {reqwest:.2} µs");
    println!(
        "  reqwest / transport:                {:.2}",
        reqwest / transport
    );
}

/// Microseconds of this thread's CPU time per request, for `requests` requests.
async fn transport_round(base_url: &str, requests: usize) -> f64 {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        insecure_skip_tls_verify: false,
        max_body_bytes: 1 << 20,
    };
    let client = Arc::new(Client::new(base_url, &options).unwrap());
    let resource = client.resource(&format!("{base_url}/api/items")).unwrap();
    let mut connection = Connection::new(client);
    let authorization = http::HeaderValue::from_static(TOKEN);
    let request = || Request {
        method: &http::Method::GET,
        resource: &resource,
        authorization: Some(&authorization),
        json_body: None,
    };
    // The first request opens the connection; it is not measured.
    assert_eq!(
        connection.send(request()).await.unwrap().body.len(),
        ENVELOPE.len()
    );
    let meter = Meter::start();
    for _ in 0..requests {
        let response = connection.send(request()).await.unwrap();
        assert_eq!(response.body.len(), ENVELOPE.len());
    }
    meter.per_request(requests)
}

async fn reqwest_round(base_url: &str, requests: usize) -> f64 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let url = reqwest::Url::parse(&format!("{base_url}/api/items")).unwrap();
    let authorization = reqwest::header::HeaderValue::from_static(TOKEN);
    let send = || async {
        let response = client
            .get(url.clone())
            .header(reqwest::header::AUTHORIZATION, authorization.clone())
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap().len()
    };
    assert_eq!(send().await, ENVELOPE.len());
    let meter = Meter::start();
    for _ in 0..requests {
        assert_eq!(send().await, ENVELOPE.len());
    }
    meter.per_request(requests)
}

/// This thread's CPU time and the wall time since a start.
struct Meter {
    cpu: Duration,
    wall: Instant,
}

impl Meter {
    fn start() -> Self {
        Meter {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    /// Prints the round's figures and returns the CPU microseconds per request.
    fn per_request(self, requests: usize) -> f64 {
        let cpu = (thread_cpu_time() - self.cpu).as_secs_f64() * 1e6 / requests as f64;
        let wall = self.wall.elapsed().as_secs_f64() * 1e6 / requests as f64;
        eprintln!("  round: {cpu:.2} µs CPU and {wall:.2} µs wall per request");
        cpu
    }
}

fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid timespec for the call to fill in.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Starts an HTTP/1.1 server with the envelope on a free loopback port, on a
/// thread of its own; it lives as long as the bench.
fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_request| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            ENVELOPE.as_bytes(),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    address
}
