//! Connection handling against a hand-written HTTP/1.1 server on a loopback
//! port: keep-alive connections the server closes without warning, bodies
//! over the size limit, empty bodies that still name a content coding, and
//! the ways HTTP/1.1 lets a server frame a response.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{closed, endpoint, request, run_against, ScenarioBuilder};
use parallax::report::Summary;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const LOGIN_BODY: &str = r#"{"success":true,"statusCode":200,"message":"ok","data":{"token":"plain-token"},"apiCost":{"duration":0.001}}"#;
const LIST_BODY: &str =
    r#"{"success":true,"statusCode":200,"message":"ok","data":[],"apiCost":{"duration":0.002}}"#;

/// How the server responds to `GET /api/items`.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Closes the connection, with no `Connection: close`, after every Nth response.
    CloseAfter(u64),
    /// Sends a JSON body of this many bytes.
    LargeBody(usize),
    /// Sends a gzip body that decodes to this many bytes.
    GzipBomb(usize),
    /// Every Nth response is an empty body with `Content-Encoding: gzip`
    /// and this status.
    EmptyGzip(u64, u16),
    /// Frames every list response this way.
    Wire(Wire),
    /// Rejects every login with a 400 whose message echoes the request body.
    EchoLogin,
    /// Sends a header of this many bytes, the whole response in one write.
    LargeHead(usize),
}

/// A way to frame a response on the wire.
#[derive(Clone, Copy, Debug)]
enum Wire {
    /// `Transfer-Encoding: chunked`, in three chunks, one with an
    /// extension, and a trailer field.
    Chunked,
    /// No length: the body ends when the server closes the connection.
    UntilClose,
    /// `Connection: close` with a `Content-Length`; the server then closes.
    ConnectionClose,
    /// An HTTP/1.0 response without keep-alive; the server then closes.
    Http10,
    /// A `100 Continue` interim response before the real one.
    Continue,
    /// The response written a few bytes at a time, with pauses.
    Trickled,
}

impl Wire {
    fn closes(self) -> bool {
        matches!(
            self,
            Wire::UntilClose | Wire::ConnectionClose | Wire::Http10
        )
    }
}

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    logins: AtomicU64,
    lists: AtomicU64,
    /// Responses sent with an empty gzip body.
    empty_gzip: AtomicU64,
}

struct RawServer {
    base_url: String,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(behaviour: Behaviour) -> RawServer {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let counts = Arc::new(Counts::default());
    let serving = Arc::clone(&counts);
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            serving.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve(stream, behaviour, Arc::clone(&serving)));
        }
    });
    RawServer {
        base_url,
        counts,
        task,
    }
}

/// Serves one connection until the client closes it or the behaviour does.
async fn serve(stream: TcpStream, behaviour: Behaviour, counts: Arc<Counts>) {
    let mut stream = BufReader::new(stream);
    let mut served = 0_u64;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push(line),
            }
        }
        let length = head
            .iter()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, value)| value.trim().parse::<usize>().unwrap());
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let is_login = head[0].starts_with("POST /api/auth/login ");
        let response = if is_login && matches!(behaviour, Behaviour::EchoLogin) {
            let message = serde_json::json!({
                "success": false,
                "message": format!("bad credentials: {}", String::from_utf8_lossy(&body)),
            });
            plain(400, message.to_string().as_bytes(), None)
        } else if is_login {
            counts.logins.fetch_add(1, Ordering::Relaxed);
            plain(200, LOGIN_BODY.as_bytes(), None)
        } else {
            let number = counts.lists.fetch_add(1, Ordering::Relaxed) + 1;
            list_response(behaviour, number, &counts)
        };
        let written = match behaviour {
            Behaviour::Wire(Wire::Trickled) if !is_login => {
                trickle(stream.get_mut(), &response).await
            }
            _ => stream.get_mut().write_all(&response).await,
        };
        if written.is_err() {
            return;
        }
        if matches!(behaviour, Behaviour::Wire(wire) if wire.closes() && !is_login) {
            return;
        }
        served += 1;
        if let Behaviour::CloseAfter(every) = behaviour {
            if served % every == 0 {
                return;
            }
        }
    }
}

fn list_response(behaviour: Behaviour, number: u64, counts: &Counts) -> Vec<u8> {
    match behaviour {
        Behaviour::CloseAfter(_) => plain(200, LIST_BODY.as_bytes(), None),
        Behaviour::LargeBody(size) => plain(200, &padded(size), None),
        Behaviour::GzipBomb(size) => plain(200, &gzip(&padded(size)), Some("gzip")),
        Behaviour::EmptyGzip(every, status) if number % every == 0 => {
            counts.empty_gzip.fetch_add(1, Ordering::Relaxed);
            plain(status, b"", Some("gzip"))
        }
        Behaviour::EmptyGzip(..) => plain(200, LIST_BODY.as_bytes(), None),
        Behaviour::Wire(wire) => framed(wire, LIST_BODY.as_bytes()),
        Behaviour::EchoLogin => plain(200, LIST_BODY.as_bytes(), None),
        Behaviour::LargeHead(size) => {
            let response = plain(200, LIST_BODY.as_bytes(), None);
            let filler = format!("x-filler: {}\r\n", "a".repeat(size));
            let mut padded = b"HTTP/1.1 200 X\r\n".to_vec();
            padded.extend_from_slice(filler.as_bytes());
            padded.extend_from_slice(&response[b"HTTP/1.1 200 X\r\n".len()..]);
            padded
        }
    }
}

fn framed(wire: Wire, body: &[u8]) -> Vec<u8> {
    let head = |text: &str| text.as_bytes().to_vec();
    let mut response = match wire {
        Wire::Chunked => {
            let (first, rest) = body.split_at(10);
            let (second, third) = rest.split_at(rest.len() / 2);
            let mut response = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            for (index, chunk) in [first, second, third].into_iter().enumerate() {
                let extension = if index == 1 { ";note=\"x\"" } else { "" };
                response.extend_from_slice(format!("{:X}{extension}\r\n", chunk.len()).as_bytes());
                response.extend_from_slice(chunk);
                response.extend_from_slice(b"\r\n");
            }
            response.extend_from_slice(b"0\r\nx-checksum: none\r\n\r\n");
            return response;
        }
        Wire::UntilClose => head("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n"),
        Wire::ConnectionClose => head(&format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )),
        Wire::Http10 => head(&format!(
            "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )),
        Wire::Continue => {
            let mut response = head("HTTP/1.1 100 Continue\r\n\r\n");
            response.extend_from_slice(&plain(200, body, None));
            return response;
        }
        Wire::Trickled => return plain(200, body, None),
    };
    response.extend_from_slice(body);
    response
}

/// Writes `response` 7 bytes at a time, pausing after every fifth piece.
async fn trickle(stream: &mut TcpStream, response: &[u8]) -> std::io::Result<()> {
    for (index, piece) in response.chunks(7).enumerate() {
        stream.write_all(piece).await?;
        stream.flush().await?;
        if index % 5 == 4 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

/// Builds a list envelope of exactly `size` bytes, padded inside `message`.
fn padded(size: usize) -> Vec<u8> {
    let padding = size - LIST_BODY.len();
    LIST_BODY
        .replacen("\"ok\"", &format!("\"ok{}\"", " ".repeat(padding)), 1)
        .into_bytes()
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

fn plain(status: u16, body: &[u8], coding: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(coding) = coding {
        head.push_str(&format!("content-encoding: {coding}\r\n"));
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    response
}

async fn run(server: &RawServer, extra: &str) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let scenario = ScenarioBuilder::new()
        .requests(vec![request("list", "GET", "/api/items", 1)])
        .load(closed(2, 1.5))
        .extra(extra);
    let plan = scenario.plan_in(dir.path());
    let result = run_against(plan, &server.base_url).await;
    let summary = Summary::new(&result);
    common::assert_accounted(&summary);
    summary
}

/// Asserts that every list request failed as a transport error, and that
/// the message of the first error listed contains `message`.
fn assert_list_failed_with(summary: &Summary, message: &str) {
    let list = endpoint(summary, "list");
    assert!(list.requests_sent >= 10, "{list:?}");
    assert_eq!(list.transport_errors, list.requests_sent);
    assert_eq!(list.ok, 0);
    assert!(
        summary.errors[0].message.contains(message),
        "{:?}",
        summary.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_keep_alive_connections_are_reopened() {
    let server = start(Behaviour::CloseAfter(3)).await;
    let summary = run(&server, "").await;

    let list = endpoint(&summary, "list");
    let received = server.counts.lists.load(Ordering::Relaxed);
    assert!(list.ok >= 100, "{list:?}");
    assert_eq!(list.transport_errors, 0, "{:?}", summary.errors);
    assert_eq!(list.ok, received);
    // A request that met a closing connection was sent again, and is listed as retried.
    for error in &summary.errors {
        assert_eq!(error.outcome, "retried", "{error:?}");
    }
    // Each connection carried at most three responses, logins included.
    let connections = server.counts.connections.load(Ordering::Relaxed);
    assert!(
        connections * 3 >= received + 2,
        "{connections} for {received}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_limit_fails() {
    let server = start(Behaviour::LargeBody(20_000)).await;
    let summary = run(&server, "[response]\nmax_body_mib = 0.01\n").await;

    assert_list_failed_with(&summary, "larger than 10485 bytes");
    let error = &summary.errors[0];
    assert_eq!(error.endpoint, "list");
    assert_eq!(error.outcome, "transport_error");
    assert_eq!(error.count, endpoint(&summary, "list").transport_errors);
    // The small login bodies fit.
    assert_eq!(endpoint(&summary, "login").ok, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_body_over_limit_fails() {
    let server = start(Behaviour::GzipBomb(200_000)).await;
    let summary = run(&server, "[response]\nmax_body_mib = 0.1\n").await;

    assert_list_failed_with(
        &summary,
        "gzip response body decodes to more than 104857 bytes",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_gzip_401_triggers_login() {
    let server = start(Behaviour::EmptyGzip(5, 401)).await;
    let summary = run(&server, "").await;

    let list = endpoint(&summary, "list");
    let unauthorized = server.counts.empty_gzip.load(Ordering::Relaxed);
    assert!(unauthorized >= 10, "{unauthorized}");
    assert_eq!(list.transport_errors, 0);
    // A 401 leads to a login and one retry. When the retry gets a 401 too
    // (the two users share the server's count), that 401 is the outcome.
    let retried_into_401 = list.http_errors_by_status.get("401").copied().unwrap_or(0);
    assert_eq!(list.http_errors, retried_into_401);
    assert_eq!(
        summary.logins.counts.after_unauthorized + retried_into_401,
        unauthorized
    );
    assert_eq!(
        list.ok + unauthorized,
        server.counts.lists.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_gzip_204_is_ok() {
    let server = start(Behaviour::EmptyGzip(4, 204)).await;
    let summary = run(&server, "").await;

    let list = endpoint(&summary, "list");
    let empty = server.counts.empty_gzip.load(Ordering::Relaxed);
    assert!(empty >= 10, "{empty}");
    assert_eq!(list.ok, list.requests_intended);
    assert_eq!(list.ok, server.counts.lists.load(Ordering::Relaxed));
    assert_eq!(
        list.server_time_missing_by_reason.not_json, empty,
        "{:?}",
        list.server_time_missing_by_reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_users_share_connections() {
    let server = start(Behaviour::CloseAfter(u64::MAX)).await;
    let dir = tempfile::tempdir().unwrap();
    // 100 users, each sending once a second, starts spread over a second:
    // about one request in flight at a time.
    let scenario = ScenarioBuilder::new()
        .requests(vec![request("list", "GET", "/api/items", 1)])
        .load("[load]\nmodel = \"closed\"\nusers = 100\nduration_s = 2\nramp_up_s = 1\npacing_ms = 1000\n".into());
    let plan = scenario.plan_in(dir.path());
    let result = run_against(plan, &server.base_url).await;
    let summary = Summary::new(&result);
    common::assert_accounted(&summary);

    let list = endpoint(&summary, "list");
    assert!(list.ok >= 100, "{list:?}");
    assert_eq!(list.ok, list.requests_intended);
    // The logins run 64 at a time, and the load then reuses those connections.
    let connections = server.counts.connections.load(Ordering::Relaxed);
    assert!(connections <= 70, "{connections} connections for 100 users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_is_read_whole() {
    for wire in [
        Wire::Chunked,
        Wire::UntilClose,
        Wire::ConnectionClose,
        Wire::Http10,
        Wire::Continue,
        Wire::Trickled,
    ] {
        let server = start(Behaviour::Wire(wire)).await;
        let summary = run(&server, "").await;

        let list = endpoint(&summary, "list");
        let received = server.counts.lists.load(Ordering::Relaxed);
        assert!(list.ok >= 20, "{wire:?}: {list:?}");
        assert_eq!(
            list.ok, list.requests_sent,
            "{wire:?}: {:?}",
            summary.errors
        );
        assert_eq!(list.ok, received, "{wire:?}");
        // The body arrived whole: its apiCost.duration of 2 ms was read.
        assert_eq!(list.server_time_missing, 0, "{wire:?}");
        assert_eq!(list.server_ms.count, list.ok, "{wire:?}");
        let p50 = list.server_ms.p50_ms.unwrap();
        assert!((p50 - 2.0).abs() < 0.01, "{wire:?}: {p50}");
        let connections = server.counts.connections.load(Ordering::Relaxed);
        if wire.closes() {
            // One connection per list response. The two logins share theirs
            // with the first requests, so at most two more open.
            assert!(
                connections >= received,
                "{wire:?}: {connections} for {received}"
            );
            assert!(
                connections <= received + 2,
                "{wire:?}: {connections} for {received}"
            );
        } else {
            assert!(connections <= 4, "{wire:?}: {connections} for {received}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_password_is_redacted() {
    let server = start(Behaviour::EchoLogin).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .requests(vec![request("list", "GET", "/api/items", 1)])
        .load(closed(1, 0.5))
        .plan_in(dir.path());
    let password = plan.login.credentials[0].password.expose().to_string();
    let options = parallax::engine::RunOptions {
        target_override: Some(server.base_url.clone()),
        ..Default::default()
    };
    let Err(error) = parallax::engine::run(plan, options).await else {
        panic!("the first login should fail");
    };
    let error = error.to_string();

    assert!(error.contains("bad credentials"), "{error}");
    assert!(error.contains("<redacted>"), "{error}");
    assert!(!error.contains(&password), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_over_64_kib_fails() {
    let server = start(Behaviour::LargeHead(70 * 1024)).await;
    let summary = run(&server, "").await;

    assert_list_failed_with(&summary, "the response headers are larger than 64 KiB");
}
