//! The embedded demo target: a server implementing the documented API, so
//! that a scenario runs out of the box and tests know the truth.
//!
//! Routes: `POST /api/auth/login` (JSON `email` and `password`, returns an
//! HS256 JWT with `exp` at `data.token`), and, behind `Authorization: Bearer`,
//! `GET /api/items`, `GET /api/items/{id}` and `POST /api/items`. Every
//! response is the full envelope. `apiCost.duration` is the time the handler
//! really spent, in seconds, so it can be compared with the configured
//! service time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::api::format_api_timestamp;
use crate::load::Distribution;
use crate::scenario::Credential;
use crate::secret::Secret;

/// Names of the embedded endpoints, as used in `target.embedded.endpoints`.
pub const ENDPOINT_NAMES: [&str; 4] = ["login", "list", "detail", "create"];

/// Service time per embedded endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceTimes {
    pub login: Distribution,
    pub list: Distribution,
    pub detail: Distribution,
    pub create: Distribution,
}

impl ServiceTimes {
    pub fn set_all(&mut self, value: Distribution) {
        *self = ServiceTimes {
            login: value,
            list: value,
            detail: value,
            create: value,
        };
    }

    /// Sets one endpoint's distribution; returns false for an unknown name.
    pub fn set(&mut self, endpoint: &str, value: Distribution) -> bool {
        let slot = match endpoint {
            "login" => &mut self.login,
            "list" => &mut self.list,
            "detail" => &mut self.detail,
            "create" => &mut self.create,
            _ => return false,
        };
        *slot = value;
        true
    }
}

/// Settings of the embedded target.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub token_lifetime: Duration,
    pub service_times: ServiceTimes,
    /// Number of demo users accepted by login (see [`demo_credentials`]).
    pub users: usize,
    /// Periodic stalls of the protected endpoints, like a garbage-collection pause.
    pub stall: Option<Stall>,
}

/// A stall of `length` at the start of every `every`, counted from the
/// server's start: a protected request arriving during a stall waits until
/// it ends, then gets its usual service time. The reported duration includes the wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    pub every: Duration,
    pub length: Duration,
}

impl Stall {
    /// How long a request arriving `since_start` after the server started waits.
    pub fn wait_at(&self, since_start: Duration) -> Duration {
        let into_cycle =
            Duration::from_nanos((since_start.as_nanos() % self.every.as_nanos().max(1)) as u64);
        self.length.saturating_sub(into_cycle)
    }
}

impl Default for Config {
    fn default() -> Self {
        let login = Distribution::Constant { ms: 5.0 };
        let other = Distribution::Constant { ms: 2.0 };
        Config {
            token_lifetime: Duration::from_secs(300),
            service_times: ServiceTimes {
                login,
                list: other,
                detail: other,
                create: other,
            },
            users: 1000,
            stall: None,
        }
    }
}

/// The demo accounts the embedded target accepts: `user1@demo.test` with
/// password `demo-pass-1`, and so on. They are public and only for the demo.
pub fn demo_credentials(count: usize) -> Vec<Credential> {
    (1..=count)
        .map(|i| Credential {
            username: format!("user{i}@demo.test"),
            password: Secret::new(format!("demo-pass-{i}")),
        })
        .collect()
}

/// Requests the target answered, by route and HTTP status, for tests that
/// compare the target's count with parallax's.
#[derive(Debug, Default)]
pub struct TargetStats {
    by_route: Mutex<BTreeMap<(String, u16), u64>>,
    /// Arrival times of protected requests, for tests of request spacing.
    arrivals: Mutex<Vec<Instant>>,
}

/// The most arrival times kept; later arrivals are not logged.
const MAX_LOGGED_ARRIVALS: usize = 1_000_000;

impl TargetStats {
    fn log_arrival(&self, at: Instant) {
        let mut arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if arrivals.len() < MAX_LOGGED_ARRIVALS {
            arrivals.push(at);
        }
    }

    /// When each protected request arrived, in arrival order (the first million).
    pub fn arrival_times(&self) -> Vec<Instant> {
        self.arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn count(&self, route: &str, status: StatusCode) {
        let mut counts = self
            .by_route
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts
            .entry((route.to_string(), status.as_u16()))
            .or_default() += 1;
    }

    /// Responses sent on `route` (for example `GET /api/items`) with `status`.
    pub fn responses(&self, route: &str, status: u16) -> u64 {
        let counts = self
            .by_route
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counts
            .get(&(route.to_string(), status))
            .copied()
            .unwrap_or(0)
    }

    /// Every count, keyed by route and status.
    pub fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        self.by_route
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

struct AppState {
    config: Config,
    secret: [u8; 32],
    next_token_id: AtomicU64,
    stats: Arc<TargetStats>,
    started: Instant,
}

/// A running embedded target; dropping it does not stop it, call [`DemoTarget::stop`].
pub struct DemoTarget {
    pub addr: SocketAddr,
    pub stats: Arc<TargetStats>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DemoTarget {
    /// Binds `addr` (port 0 picks a free port) and serves until stopped.
    pub async fn start(config: Config, addr: SocketAddr) -> std::io::Result<DemoTarget> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(TargetStats::default());
        let state = Arc::new(AppState {
            config,
            secret: rand::thread_rng().gen(),
            next_token_id: AtomicU64::new(1),
            stats: Arc::clone(&stats),
            started: Instant::now(),
        });
        let router = Router::new()
            .route("/api/auth/login", post(login))
            .route("/api/items", get(list_items).post(create_item))
            .route("/api/items/:id", get(item_detail))
            .fallback(not_found)
            .with_state(state);
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { signal.cancelled().await });
            if let Err(error) = serve.await {
                eprintln!("embedded target stopped with an error: {error}");
            }
        });
        Ok(DemoTarget {
            addr,
            stats,
            shutdown,
            task,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        // Open keep-alive connections can hold graceful shutdown; do not wait for them long.
        if tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            eprintln!("embedded target: connections still open after 2 s; leaving them to close with the process");
        }
    }
}

/// Measures one handler call: wall-clock start for `apiCost.start`, monotonic
/// for `duration`. The duration is taken when the work is done, before the
/// response body is built, as servers that report their own time usually do.
struct Timing {
    wall: chrono::DateTime<chrono::Local>,
    started: Instant,
    elapsed: Option<Duration>,
}

impl Timing {
    fn start() -> Self {
        Timing {
            wall: chrono::Local::now(),
            started: Instant::now(),
            elapsed: None,
        }
    }

    fn finish(&mut self) {
        self.elapsed = Some(self.started.elapsed());
    }
}

/// Waits `duration` with sub-millisecond precision. Tokio's timer has 1 ms
/// granularity, so it sleeps until two milliseconds before the deadline,
/// yields to other tasks until 50 µs before it, and spins for the rest. A
/// busy machine can still delay the task past the deadline.
async fn serve_for(duration: Duration, started: Instant) {
    const SPIN: Duration = Duration::from_micros(50);
    let deadline = started + duration;
    let coarse = duration.saturating_sub(Duration::from_millis(2));
    if !coarse.is_zero() {
        tokio::time::sleep_until((started + coarse).into()).await;
    }
    while Instant::now() + SPIN < deadline {
        tokio::task::yield_now().await;
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

fn envelope(
    timing: &Timing,
    status: StatusCode,
    message: &str,
    data: Value,
    rows: Value,
) -> Response {
    let elapsed = timing.elapsed.unwrap_or_else(|| timing.started.elapsed());
    let finish = timing.wall + chrono::Duration::from_std(elapsed).unwrap_or_default();
    let body = json!({
        "success": status.is_success(),
        "statusCode": status.as_u16(),
        "message": message,
        "data": data,
        "rows": rows,
        "apiCost": {
            "start": format_api_timestamp(timing.wall),
            "finish": format_api_timestamp(finish),
            "duration": elapsed.as_secs_f64(),
        }
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl AppState {
    fn sign(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(signing_input.as_bytes());
        mac
    }

    fn issue_token(&self, subject: &str) -> String {
        let now = unix_now();
        let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "sub": subject,
            "iat": now,
            "exp": now + self.config.token_lifetime.as_secs().max(1),
            "jti": self.next_token_id.fetch_add(1, Ordering::Relaxed),
        });
        let payload = base64url(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{payload}");
        let signature = base64url(&self.sign(&signing_input).finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks the bearer token's signature and expiry.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or("Missing Authorization header.")?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .filter(|token| !token.is_empty())
            .ok_or("Authorization must be a Bearer token.")?;
        let (signing_input, signature) = token.rsplit_once('.').ok_or("Invalid token.")?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "Invalid token.")?;
        self.sign(signing_input)
            .verify_slice(&signature)
            .map_err(|_| "Invalid token.")?;
        let expiry = crate::api::jwt_expiry(token).ok_or("Invalid token.")?;
        if expiry <= unix_now() {
            return Err("Token expired.");
        }
        Ok(())
    }

    fn respond(&self, route: &str, response: Response) -> Response {
        self.stats.count(route, response.status());
        response
    }
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    const ROUTE: &str = "POST /api/auth/login";
    let mut timing = Timing::start();
    let service_time = state
        .config
        .service_times
        .login
        .sample(&mut rand::thread_rng());
    serve_for(service_time, timing.started).await;
    timing.finish();

    let Ok(body) = serde_json::from_slice::<LoginBody>(&body) else {
        let response = envelope(
            &timing,
            StatusCode::BAD_REQUEST,
            "Body must be JSON with email and password.",
            Value::Null,
            json!(0),
        );
        return state.respond(ROUTE, response);
    };
    let user_number = body
        .email
        .strip_prefix("user")
        .and_then(|rest| rest.strip_suffix("@demo.test"))
        .and_then(|number| number.parse::<usize>().ok())
        .filter(|number| (1..=state.config.users).contains(number));
    let accepted = user_number.filter(|number| body.password == format!("demo-pass-{number}"));
    let Some(number) = accepted else {
        let response = envelope(
            &timing,
            StatusCode::UNAUTHORIZED,
            "Invalid email or password.",
            Value::Null,
            json!(0),
        );
        return state.respond(ROUTE, response);
    };
    let data = json!({
        "token": state.issue_token(&body.email),
        "member": {
            "id": number,
            "code": format!("DEMO-{number:06}"),
            "name": format!("Demo user {number}"),
            "email": body.email,
            "member": 1,
            "status": "active"
        }
    });
    state.respond(
        ROUTE,
        envelope(&timing, StatusCode::OK, "Login Success.", data, json!(2)),
    )
}

fn item(id: u64) -> Value {
    json!({ "id": id, "code": format!("ITEM-{id:05}"), "name": format!("Item {id}"), "price": (id % 97) as f64 + 0.99, "status": "active" })
}

/// Runs a protected handler: authorises, waits the service time, answers.
async fn protected(
    state: &AppState,
    route: &str,
    headers: &HeaderMap,
    service_time: Distribution,
    handle: impl FnOnce(&Timing) -> Response,
) -> Response {
    let mut timing = Timing::start();
    state.stats.log_arrival(timing.started);
    if let Err(message) = state.authorize(headers) {
        let response = envelope(
            &timing,
            StatusCode::UNAUTHORIZED,
            message,
            Value::Null,
            json!(0),
        );
        return state.respond(route, response);
    }
    let stalled = state.config.stall.map_or(Duration::ZERO, |stall| {
        stall.wait_at(timing.started - state.started)
    });
    let wait = stalled + service_time.sample(&mut rand::thread_rng());
    serve_for(wait, timing.started).await;
    timing.finish();
    state.respond(route, handle(&timing))
}

async fn list_items(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    protected(
        &state,
        "GET /api/items",
        &headers,
        state.config.service_times.list,
        |timing| {
            let items: Vec<Value> = (1..=10).map(item).collect();
            envelope(
                timing,
                StatusCode::OK,
                "Success.",
                Value::Array(items),
                json!(10),
            )
        },
    )
    .await
}

async fn item_detail(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    protected(
        &state,
        "GET /api/items/{id}",
        &headers,
        state.config.service_times.detail,
        |timing| match id.parse::<u64>() {
            Ok(id @ 1..=1000) => envelope(timing, StatusCode::OK, "Success.", item(id), json!(1)),
            _ => envelope(
                timing,
                StatusCode::NOT_FOUND,
                "Item not found.",
                Value::Null,
                json!(0),
            ),
        },
    )
    .await
}

async fn create_item(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    protected(
        &state,
        "POST /api/items",
        &headers,
        state.config.service_times.create,
        |timing| match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(mut fields)) => {
                fields.insert("id".into(), json!(1001 + (unix_now() % 1000)));
                envelope(
                    timing,
                    StatusCode::CREATED,
                    "Created.",
                    Value::Object(fields),
                    json!(1),
                )
            }
            _ => envelope(
                timing,
                StatusCode::BAD_REQUEST,
                "Body must be a JSON object.",
                Value::Null,
                json!(0),
            ),
        },
    )
    .await
}

async fn not_found(State(state): State<Arc<AppState>>) -> Response {
    let timing = Timing::start();
    state.respond(
        "other",
        envelope(
            &timing,
            StatusCode::NOT_FOUND,
            "No such route.",
            Value::Null,
            json!(0),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_waits_until_window_ends() {
        let stall = Stall {
            every: Duration::from_secs(5),
            length: Duration::from_secs(1),
        };
        assert_eq!(
            stall.wait_at(Duration::from_millis(250)),
            Duration::from_millis(750)
        );
        assert_eq!(
            stall.wait_at(Duration::from_millis(5_900)),
            Duration::from_millis(100)
        );
        assert_eq!(stall.wait_at(Duration::from_millis(1_000)), Duration::ZERO);
        assert_eq!(stall.wait_at(Duration::from_millis(4_999)), Duration::ZERO);
    }

    #[test]
    fn issued_token_verifies_and_carries_exp() {
        let state = AppState {
            config: Config::default(),
            secret: [7; 32],
            next_token_id: AtomicU64::new(1),
            stats: Arc::default(),
            started: Instant::now(),
        };
        let token = state.issue_token("user1@demo.test");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        assert_eq!(state.authorize(&headers), Ok(()));
        let exp = crate::api::jwt_expiry(&token).unwrap();
        assert!(exp >= unix_now() + 299);
        let mut tampered = token.clone();
        tampered.push('x');
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {tampered}").parse().unwrap(),
        );
        assert_eq!(state.authorize(&headers), Err("Invalid token."));
    }
}
