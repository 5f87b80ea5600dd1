//! One virtual user: its session (credentials and token) and its request loop.
//!
//! A user logs in once and reuses its token as `Authorization: Bearer`. It
//! logs in again shortly before the token's `exp` (when the token decodes as
//! a JWT), and after a 401, in which case it retries that request once. A
//! user without a token never sends a request: it waits out a login backoff.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::api::{jwt_expiry, parse_response, Envelope, ServerTimeSource};
use crate::load::Distribution;
use crate::metrics::{
    duration_us, ClockSample, Correction, ErrorClass, ErrorLog, LoginReason, MissingReason,
    NotSentReason, Outcome, Recorder, ResponseDetails, Sample, ServerTime, LOGIN_ENDPOINT,
};
use crate::scenario::{Credential, LoginPlan, Plan, ResponseRules};
use crate::transport::{self, Client, Connection, Resource};

/// First wait after a failed login; it doubles per failure up to [`MAX_LOGIN_BACKOFF`].
const MIN_LOGIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(8);

/// What all users of a run share.
pub struct Shared {
    pub client: Arc<Client>,
    pub login: LoginPlan,
    login_url: Resource,
    requests: Vec<PreparedRequest>,
    /// Cumulative request weights, for weighted random choice.
    cumulative_weights: Vec<u64>,
    pub recorder: Arc<Recorder>,
    /// Cancelled when no new request may start (end of run, first Ctrl-C).
    pub stop: CancellationToken,
    /// Cancelled when in-flight requests must be abandoned.
    pub abort: CancellationToken,
    warned_missing_token: AtomicBool,
    /// Where the login response's server time is read.
    login_server_time: ServerTimeSource,
    response_rules: ResponseRules,
    /// Seconds east of UTC of the zone `apiCost.start` and `finish` are written in.
    server_clock_utc_offset_s: i64,
    login_limiter: Option<DirectLimiter>,
    /// Reasons requests got no response, for the reports.
    pub errors: ErrorLog,
    /// `METHOD path` of each endpoint, login first, for messages.
    labels: Vec<String>,
}

struct PreparedRequest {
    method: http::Method,
    /// Prepared once: cloning it costs less than parsing a URL per request.
    url: Resource,
    body: Option<Bytes>,
    server_time: ServerTimeSource,
}

impl Shared {
    pub fn new(
        plan: &Plan,
        base_url: &str,
        client: Arc<Client>,
        recorder: Arc<Recorder>,
    ) -> Result<Self, String> {
        let mut requests = Vec::with_capacity(plan.requests.len());
        for request in &plan.requests {
            let url = client
                .resource(&format!("{base_url}{}", request.path))
                .map_err(|error| {
                    format!(
                        "{error}; check the base URL and the path of request {:?}",
                        request.name
                    )
                })?;
            requests.push(url);
        }
        let login_url = client
            .resource(&format!("{base_url}{}", plan.login.path))
            .map_err(|error| format!("{error}; check the base URL and login.path"))?;
        let requests = plan
            .requests
            .iter()
            .zip(requests)
            .map(|(request, url)| PreparedRequest {
                method: request.method.clone(),
                url,
                body: request.body.clone().map(Bytes::from),
                server_time: request
                    .server_time
                    .clone()
                    .unwrap_or_else(|| plan.server_time.clone()),
            })
            .collect();
        // The local zone's offset is taken once, at the start of the run.
        let server_clock_utc_offset_s = match plan.server_clock_utc_offset {
            Some(offset) => i64::from(offset.local_minus_utc()),
            None => i64::from(chrono::Local::now().offset().local_minus_utc()),
        };
        let cumulative_weights = plan
            .requests
            .iter()
            .scan(0_u64, |total, request| {
                *total += u64::from(request.weight);
                Some(*total)
            })
            .collect();
        Ok(Shared {
            client,
            login: plan.login.clone(),
            login_url,
            requests,
            cumulative_weights,
            recorder,
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            warned_missing_token: AtomicBool::new(false),
            login_server_time: plan.server_time.clone(),
            response_rules: plan.response.clone(),
            server_clock_utc_offset_s,
            login_limiter: plan.login.max_logins_per_s.map(rate_limiter),
            errors: ErrorLog::default(),
            labels: std::iter::once(format!("POST {}", plan.login.path))
                .chain(
                    plan.requests
                        .iter()
                        .map(|request| format!("{} {}", request.method, request.path)),
                )
                .collect(),
        })
    }

    /// Counts a request that got no response, and prints the first of each kind.
    fn note_error(&self, endpoint: usize, error: &transport::Error) {
        let message = error.to_string();
        if self
            .errors
            .note(endpoint, ErrorClass::of(error.outcome()), &message)
        {
            eprintln!(
                "warning: {}: {message} (more errors like this are counted in the reports)",
                self.labels[endpoint]
            );
        }
    }

    /// Counts a request sent again because its connection closed under it.
    fn note_retry(&self, endpoint: usize, connection: &mut Connection) {
        if let Some(message) = connection.take_retried() {
            self.errors.note(endpoint, ErrorClass::Retried, &message);
        }
    }

    /// Picks a request index (into the scenario's requests) by weight.
    pub fn pick_request(&self, rng: &mut impl Rng) -> usize {
        let total = *self
            .cumulative_weights
            .last()
            .expect("a plan has at least one request");
        let ticket = rng.gen_range(0..total);
        self.cumulative_weights
            .partition_point(|&bound| bound <= ticket)
    }
}

/// An arrival of the open model: when it should start and which request it is.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub intended: Instant,
    pub request: usize,
}

struct Token {
    /// The prebuilt `Bearer …` header, marked sensitive so it never prints.
    header: HeaderValue,
    refresh_at: Option<Instant>,
}

/// Why a login did not yield a token, for the start-up check and the logs.
/// Holds no secret: the server's message and status only.
#[derive(Debug, Clone)]
pub struct LoginFailure {
    pub outcome: Outcome,
    pub detail: String,
}

enum Response {
    Received {
        status: StatusCode,
        envelope: Envelope,
    },
    Failed(Outcome),
}

pub struct VirtualUser {
    id: usize,
    shared: Arc<Shared>,
    connection: Connection,
    credential: Credential,
    token: Option<Token>,
    had_token: bool,
    next_login_at: Option<Instant>,
    failed_logins_in_row: u32,
    rng: SmallRng,
}

impl VirtualUser {
    pub fn new(id: usize, shared: Arc<Shared>, seed: u64) -> Self {
        let credentials = &shared.login.credentials;
        let credential = credentials[id % credentials.len()].clone();
        VirtualUser {
            id,
            connection: Connection::new(Arc::clone(&shared.client)),
            shared,
            credential,
            token: None,
            had_token: false,
            next_login_at: None,
            failed_logins_in_row: 0,
            rng: SmallRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn username(&self) -> &str {
        &self.credential.username
    }

    /// Closed model: starts at `start`, loops until `stop_at` or the stop
    /// signal. With pacing, each iteration is due one pacing interval after
    /// the previous one was due, or at once when the previous one overran;
    /// the corrected view (`record_correct`) adds the iterations an overrun
    /// prevented.
    pub async fn run_closed(mut self, plan: ClosedRun) {
        if !self.sleep_until(plan.start).await {
            return;
        }
        let mut due = plan.start;
        while !self.shared.stop.is_cancelled() && Instant::now() < plan.stop_at {
            if !self.ensure_token().await {
                let retry_at = self
                    .next_login_at
                    .unwrap_or_else(|| Instant::now() + MIN_LOGIN_BACKOFF);
                self.sleep_until(retry_at.min(plan.stop_at)).await;
                continue;
            }
            if !self.wait_for_rate_caps(&plan).await {
                return;
            }
            let request = self.shared.pick_request(&mut self.rng);
            let expected = plan.pacing.map_or(ExpectedCorrection::None, |pacing| {
                ExpectedCorrection::Interval(duration_us(pacing))
            });
            let sample = self.execute(request, expected).await;
            self.shared.recorder.record(self.id, &sample);
            if let Some(think_time) = &plan.think_time {
                let pause = think_time.sample(&mut self.rng);
                self.sleep_until((Instant::now() + pause).min(plan.stop_at))
                    .await;
            }
            if let Some(pacing) = plan.pacing {
                // No catch-up: after an overrun the next iteration starts at
                // once and the schedule restarts from there. The iterations
                // that could not start are added by the correction instead.
                due = (due + pacing).max(Instant::now());
                self.sleep_until(due.min(plan.stop_at)).await;
            }
        }
    }

    /// Waits for the global and the per-user rate limiters; false on stop.
    async fn wait_for_rate_caps(&self, plan: &ClosedRun) -> bool {
        for limiter in [&plan.global_cap, &plan.user_cap].into_iter().flatten() {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = self.shared.stop.cancelled() => return false,
            }
        }
        true
    }

    /// Open model: serves arrivals from the queue until it is closed or the
    /// stop signal comes. An arrival that waited longer than `max_queue_wait`
    /// is counted as not sent (no free user) without being sent.
    pub async fn run_open(
        mut self,
        arrivals: async_channel::Receiver<Arrival>,
        pool: Arc<Pool>,
        max_queue_wait: Option<Duration>,
    ) {
        loop {
            // A user without a token takes no work: it would only drop the
            // arrival while other users are free. It retries its login after
            // the backoff instead.
            if self.token.is_none() && !self.ensure_token().await {
                let retry_at = self
                    .next_login_at
                    .unwrap_or_else(|| Instant::now() + MIN_LOGIN_BACKOFF);
                if !self.sleep_until(retry_at).await {
                    return;
                }
                continue;
            }
            pool.idle.fetch_add(1, Ordering::Relaxed);
            let arrival = tokio::select! {
                biased;
                _ = self.shared.stop.cancelled() => None,
                arrival = arrivals.recv() => arrival.ok(),
            };
            pool.idle.fetch_sub(1, Ordering::Relaxed);
            let Some(arrival) = arrival else {
                return;
            };
            let waited = arrival.intended.elapsed();
            let sample = if max_queue_wait.is_some_and(|bound| waited > bound) {
                Sample::not_sent(arrival.request + 1, NotSentReason::NoFreeUser)
            } else if self.ensure_token().await {
                self.execute(
                    arrival.request,
                    ExpectedCorrection::IntendedStart(arrival.intended),
                )
                .await
            } else {
                Sample::not_sent(arrival.request + 1, NotSentReason::LoginFailed)
            };
            self.shared.recorder.record(self.id, &sample);
        }
    }

    /// Sleeps until `at`; returns false if the stop signal came first.
    async fn sleep_until(&self, at: Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => true,
            _ = self.shared.stop.cancelled() => false,
        }
    }

    /// Makes sure the user holds a usable token, logging in when it has none
    /// or its refresh time has come. Returns false when it has no usable token.
    async fn ensure_token(&mut self) -> bool {
        let now = Instant::now();
        let reason = match &self.token {
            Some(token) if token.refresh_at.map_or(true, |at| now < at) => return true,
            Some(_) => LoginReason::RefreshBeforeExpiry,
            None if self.had_token => LoginReason::AfterUnauthorized,
            None => LoginReason::Initial,
        };
        if self.next_login_at.is_some_and(|at| now < at) {
            // Still backing off; an old token that has not expired is still usable.
            return self.token.is_some();
        }
        self.login(reason).await.is_ok() || self.token.is_some()
    }

    /// Logs in, records the attempt as a sample of the login endpoint, and
    /// keeps the token. On failure the user backs off with jitter.
    pub async fn login(&mut self, reason: LoginReason) -> Result<(), LoginFailure> {
        if let Some(limiter) = &self.shared.login_limiter {
            limiter.until_ready().await;
        }
        let result = self.try_login().await;
        match &result {
            Ok(()) => {
                self.had_token = true;
                self.failed_logins_in_row = 0;
                self.next_login_at = None;
            }
            Err(_) => {
                if reason == LoginReason::AfterUnauthorized {
                    self.token = None;
                }
                let backoff = MIN_LOGIN_BACKOFF
                    .saturating_mul(1 << self.failed_logins_in_row.min(3))
                    .min(MAX_LOGIN_BACKOFF);
                let jitter = self.rng.gen_range(0.75..1.25);
                self.next_login_at = Some(Instant::now() + backoff.mul_f64(jitter));
                self.failed_logins_in_row += 1;
            }
        }
        self.shared
            .recorder
            .record_login(self.id, reason, result.is_ok());
        result
    }

    async fn try_login(&mut self) -> Result<(), LoginFailure> {
        let login = &self.shared.login;
        let mut body = serde_json::Map::new();
        body.insert(
            login.username_field.clone(),
            self.credential.username.clone().into(),
        );
        body.insert(
            login.password_field.clone(),
            self.credential.password.expose().into(),
        );
        let body = Bytes::from(serde_json::to_vec(&body).expect("a map of strings serialises"));

        let sent = Instant::now();
        let request = transport::Request {
            method: &http::Method::POST,
            resource: &self.shared.login_url,
            authorization: None,
            json_body: Some(&body),
        };
        let result = tokio::select! {
            result = self.connection.send(request) => {
                self.shared.note_retry(LOGIN_ENDPOINT, &mut self.connection);
                result.map_err(|error| {
                    self.shared.note_error(LOGIN_ENDPOINT, &error);
                    (error.outcome(), error.to_string())
                })
            }
            _ = self.shared.abort.cancelled() => Err((Outcome::Cancelled, "run aborted".to_string())),
        };
        let elapsed_us = duration_us(sent.elapsed());
        let mut sample = Sample {
            endpoint: LOGIN_ENDPOINT,
            outcome: Outcome::Ok,
            latency_us: elapsed_us,
            attempt_us: elapsed_us,
            correction: Correction::None,
            server_time: ServerTime::Missing(MissingReason::NoResponse),
            details: ResponseDetails::default(),
        };
        let outcome = match result {
            Err((outcome, detail)) => Err(LoginFailure { outcome, detail }),
            Ok(received) => {
                let envelope = parse_response(
                    &received.body,
                    &received.headers,
                    &self.shared.login_server_time,
                );
                sample.server_time = envelope.server_time;
                self.accept_login_response(received.status, &received.body)
            }
        };
        if let Err(failure) = &outcome {
            sample.outcome = failure.outcome;
        }
        self.shared.recorder.record(self.id, &sample);
        outcome
    }

    fn accept_login_response(
        &mut self,
        status: StatusCode,
        bytes: &[u8],
    ) -> Result<(), LoginFailure> {
        let body: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
        // Built only for a failure. A server may echo the request body,
        // password included, so the message is redacted.
        let message = || {
            body.as_ref()
                .and_then(|body| body.get("message"))
                .and_then(|message| message.as_str())
                .map(|message| self.credential.password.redact_in(message))
                .map(|message| message.chars().take(200).collect::<String>())
                .unwrap_or_default()
        };
        if !status.is_success() {
            return Err(LoginFailure {
                outcome: Outcome::HttpError(status.as_u16()),
                detail: format!("HTTP {status}: {}", message()),
            });
        }
        if body.as_ref().and_then(|body| body.get("success"))
            == Some(&serde_json::Value::Bool(false))
        {
            return Err(LoginFailure {
                outcome: Outcome::AppError,
                detail: format!("success: false: {}", message()),
            });
        }
        let pointer = &self.shared.login.token_pointer;
        let token = body
            .as_ref()
            .and_then(|body| body.pointer(pointer))
            .and_then(|token| token.as_str())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            if !self
                .shared
                .warned_missing_token
                .swap(true, Ordering::Relaxed)
            {
                eprintln!(
                    "warning: the login response has no non-empty string at {pointer}; set login.token_pointer to where the token is"
                );
            }
            return Err(LoginFailure {
                outcome: Outcome::AppError,
                detail: format!("no token at {pointer} in the login response"),
            });
        };
        let Ok(mut header) = HeaderValue::from_str(&format!("Bearer {token}")) else {
            return Err(LoginFailure {
                outcome: Outcome::AppError,
                detail: "the token contains characters not allowed in an HTTP header".into(),
            });
        };
        header.set_sensitive(true);
        let refresh_at = jwt_expiry(token).and_then(|exp| self.refresh_time(exp));
        self.token = Some(Token { header, refresh_at });
        Ok(())
    }

    /// When to log in again for a token expiring at `exp` (Unix seconds): the
    /// configured margin before it, at most a tenth of the remaining lifetime,
    /// and up to another tenth earlier at random, so that users who logged in
    /// together do not all renew at the same moment. A zero margin turns
    /// early refresh off: the user waits for a 401.
    fn refresh_time(&mut self, exp: u64) -> Option<Instant> {
        let configured = self.shared.login.refresh_before_expiry;
        if configured.is_zero() {
            return None;
        }
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let remaining = Duration::from_secs(exp).saturating_sub(now_unix);
        let margin = configured.min(remaining / 10);
        let jitter = (remaining / 10).mul_f64(self.rng.gen::<f64>());
        Some(Instant::now() + remaining.saturating_sub(margin + jitter))
    }

    /// Sends request `index` and classifies the result. Raw latency runs from
    /// the first send; a 401 triggers one login and one retry, and the
    /// retry's result counts. See [`Correction`] for the corrected view.
    async fn execute(&mut self, index: usize, expected: ExpectedCorrection) -> Sample {
        let mut first_send = None;
        let mut retried = false;
        loop {
            let Some(token) = &self.token else {
                return Sample::not_sent(index + 1, NotSentReason::LoginFailed);
            };
            let sent = Instant::now();
            let sent_wall = SystemTime::now();
            let first = *first_send.get_or_insert(sent);
            let request = &self.shared.requests[index];
            let sending = self.connection.send(transport::Request {
                method: &request.method,
                resource: &request.url,
                authorization: Some(&token.header),
                json_body: request.body.as_ref(),
            });
            let response = tokio::select! {
                result = sending => match result {
                    Ok(received) => Response::Received {
                        status: received.status,
                        envelope: parse_response(&received.body, &received.headers, &request.server_time),
                    },
                    Err(error) => {
                        self.shared.note_error(index + 1, &error);
                        Response::Failed(error.outcome())
                    }
                },
                _ = self.shared.abort.cancelled() => Response::Failed(Outcome::Cancelled),
            };
            self.shared.note_retry(index + 1, &mut self.connection);
            let done = Instant::now();
            let done_wall = SystemTime::now();
            let mut details = ResponseDetails::default();
            let (outcome, server_time) = match response {
                Response::Received { status, .. }
                    if status == StatusCode::UNAUTHORIZED && !retried =>
                {
                    retried = true;
                    self.token = None;
                    if self.login(LoginReason::AfterUnauthorized).await.is_ok() {
                        continue;
                    }
                    let missing = ServerTime::Missing(MissingReason::Absent);
                    (Outcome::HttpError(status.as_u16()), missing)
                }
                Response::Received { status, envelope } => {
                    details = self.shared.details(status, &envelope, sent_wall, done_wall);
                    (
                        self.shared.classify(status, &envelope),
                        envelope.server_time,
                    )
                }
                Response::Failed(outcome) => {
                    (outcome, ServerTime::Missing(MissingReason::NoResponse))
                }
            };
            let correction = match expected {
                ExpectedCorrection::None => Correction::None,
                ExpectedCorrection::Interval(interval_us) => {
                    Correction::ExpectedInterval(interval_us)
                }
                ExpectedCorrection::IntendedStart(intended) => Correction::IntendedStart {
                    latency_us: duration_us(done.saturating_duration_since(intended)),
                    lag_us: duration_us(first.saturating_duration_since(intended)),
                },
            };
            return Sample {
                endpoint: index + 1,
                outcome,
                latency_us: duration_us(done - first),
                attempt_us: duration_us(done - sent),
                correction,
                server_time,
                details,
            };
        }
    }
}

impl Shared {
    /// The outcome of a response that arrived in full, by the scenario's rules.
    fn classify(&self, status: StatusCode, envelope: &Envelope) -> Outcome {
        let rules = &self.response_rules;
        let status_ok = match &rules.success_statuses {
            Some(statuses) => statuses.contains(&status.as_u16()),
            None => status.is_success(),
        };
        if !status_ok {
            Outcome::HttpError(status.as_u16())
        } else if rules.success_field && envelope.success == Some(false) {
            Outcome::AppError
        } else {
            Outcome::Ok
        }
    }

    /// Checks a response's envelope against its HTTP status and the clocks.
    fn details(
        &self,
        status: StatusCode,
        envelope: &Envelope,
        sent: SystemTime,
        received: SystemTime,
    ) -> ResponseDetails {
        let status_code_mismatch = envelope
            .status_code
            .is_some_and(|code| code != i64::from(status.as_u16()));
        let Some((start, finish)) = envelope.api_cost_span else {
            return ResponseDetails {
                status_code_mismatch,
                ..ResponseDetails::default()
            };
        };
        let api_cost_mismatch = match envelope.server_time {
            ServerTime::Reported(duration_us) => {
                ((finish - start) - duration_us as i64).abs() > 2_000
            }
            ServerTime::Missing(_) => false,
        };
        // `apiCost` times carry no zone: shift them from the configured zone to UTC.
        let shift = self.server_clock_utc_offset_s * 1_000_000;
        let unix_us = |time: SystemTime| {
            time.duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_micros() as i64)
        };
        let clock = ClockSample::estimate(
            unix_us(sent),
            unix_us(received),
            start - shift,
            finish - shift,
        );
        ResponseDetails {
            status_code_mismatch,
            api_cost_mismatch,
            clock: Some(clock),
        }
    }
}

/// What the corrected view of a request is measured against.
#[derive(Debug, Clone, Copy)]
enum ExpectedCorrection {
    None,
    /// Closed model with pacing: the pacing interval in microseconds.
    Interval(u64),
    /// Open model: the intended start on the schedule.
    IntendedStart(Instant),
}

/// How a closed-model user runs: its window, pacing, think time and rate caps.
#[derive(Clone)]
pub struct ClosedRun {
    pub start: Instant,
    pub stop_at: Instant,
    pub pacing: Option<Duration>,
    pub think_time: Option<Distribution>,
    pub global_cap: Option<Arc<DirectLimiter>>,
    pub user_cap: Option<Arc<DirectLimiter>>,
}

/// A rate limiter with no key, shared by the users it applies to.
pub type DirectLimiter = governor::DefaultDirectRateLimiter;

/// Builds a limiter for `rate_per_s` with a burst of one request, so that a
/// cap spaces requests evenly instead of letting them through in clumps.
pub fn rate_limiter(rate_per_s: f64) -> DirectLimiter {
    let period = Duration::from_secs_f64(1.0 / rate_per_s);
    let quota = governor::Quota::with_period(period)
        .expect("a positive finite rate gives a non-zero period")
        .allow_burst(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(quota)
}

/// Shared state of the open model's user pool.
#[derive(Debug, Default)]
pub struct Pool {
    /// Users waiting for an arrival.
    pub idle: AtomicUsize,
}
