//! The embedded demo target: a server implementing the documented API, so
//! that a scenario runs out of the box and tests know the truth.
//!
//! Routes: `POST /api/auth/login` (JSON `email` and `password`, returns an
//! HS256 JWT with `exp` at `data.token`), and, behind `Authorization: Bearer`,
//! `GET /api/items`, `GET /api/items/{id}` and `POST /api/items`. Every
//! response is the full envelope. `apiCost.duration` is the time the handler
//! really spent, in seconds, so it can be compared with the configured
//! service time.
//!
//! [`Faults`] turn on fault injection and test behaviours:
//! `[target.embedded.faults]` in a scenario, `--fault` on `parallax serve`.
//! `docs/reliability.md` lists each one with what parallax reports for it.
//!
//! Per-request faults hit the protected routes only. They choose requests
//! by count, so that a test can predict exactly which requests are hit.
//! Each protected route numbers the requests that pass authorisation 1, 2,
//! 3, … (redirect hops excluded), and a fault with `every = N` hits the
//! numbers N, 2N, 3N, … of each route. [`TargetStats`] counts what was
//! injected.

use std::collections::BTreeMap;
use std::future::Future as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::api::format_api_timestamp;
use crate::load::Distribution;
use crate::scenario::Credential;
use crate::secret::Secret;

/// Names of the embedded endpoints, as used in `target.embedded.endpoints`.
pub const ENDPOINT_NAMES: [&str; 4] = ["login", "list", "detail", "create"];

/// Route names used by [`TargetStats`].
pub const LOGIN_ROUTE: &str = "POST /api/auth/login";
pub const LIST_ROUTE: &str = "GET /api/items";
pub const DETAIL_ROUTE: &str = "GET /api/items/{id}";
pub const CREATE_ROUTE: &str = "POST /api/items";

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
    /// Fault injection and test behaviours; the default injects nothing.
    pub faults: Faults,
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
            faults: Faults::default(),
        }
    }
}

// ---------------------------------------------------------------------------
// Fault settings: what `[target.embedded.faults]` and `--fault` hold.

/// Fault injection and test behaviours of the embedded target. Every field
/// is off by default. Per-request faults (those with `every`) hit the
/// protected routes; the module documentation gives the selection rule.
///
/// When several body faults pick the same request, the first of this order
/// wins and only it is counted: `redirect`, `http_error`, `app_error`,
/// `drop_mid_body`, `truncated_json`, `malformed_json`, `large_body`.
/// `gzip` compresses whichever envelope is sent (not a redirect or a
/// dropped body); `slow_service` and `slow_headers` add to any of them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Time-window stalls of the protected routes.
    pub stall: Option<Stall>,
    /// Every Nth request spends this much longer, inside `apiCost.duration`.
    pub slow_service: Option<Delay>,
    /// Every Nth request waits this long after its work is measured, before
    /// the status line is sent: the wait is outside `apiCost.duration`.
    pub slow_headers: Option<Delay>,
    pub http_error: Option<HttpErrorFault>,
    pub app_error: Option<AppErrorFault>,
    pub drop_mid_body: Option<DropMidBody>,
    pub truncated_json: Option<Every>,
    pub malformed_json: Option<Every>,
    pub large_body: Option<LargeBody>,
    pub gzip: Option<Every>,
    pub redirect: Option<Redirect>,
    pub token_epoch: Option<TokenEpoch>,
    pub reject_logins: Option<RejectLogins>,
    /// Every response reports this many milliseconds less than it spent
    /// (never below zero), so client minus server overhead grows by it.
    pub under_report_ms: Option<f64>,
    /// Shifts `apiCost.start` and `finish` by this many seconds (may be
    /// negative or fractional), as a server clock that is off would.
    pub clock_offset_s: Option<f64>,
    /// Adds `Server-Timing: db;dur=<ms>, app;dur=<ms>` to every envelope
    /// response: `db` is the injected wait (`stall`, `slow_service`), `app`
    /// the rest of the reported time, so the two add up to `apiCost.duration`.
    #[serde(default)]
    pub server_timing: bool,
    /// The spelling of `apiCost.duration`; unset, serde_json's own.
    pub duration_format: Option<DurationFormat>,
}

/// A stall of `length` at the start of every `every`, counted from the
/// server's start: a protected request arriving during a stall waits until
/// it ends, then gets its usual service time. The reported duration includes
/// the wait. Written `{ every_s = 5, duration_ms = 500 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "StallTable")]
pub struct Stall {
    pub every: Duration,
    pub length: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StallTable {
    every_s: f64,
    duration_ms: f64,
}

impl TryFrom<StallTable> for Stall {
    type Error = String;

    fn try_from(table: StallTable) -> Result<Stall, String> {
        check_seconds("stall.every_s", table.every_s)?;
        check_delay_ms("stall.duration_ms", table.duration_ms)?;
        let stall = Stall {
            every: Duration::from_secs_f64(table.every_s),
            length: Duration::from_secs_f64(table.duration_ms / 1000.0),
        };
        stall.validate()?;
        Ok(stall)
    }
}

impl Stall {
    /// Returns the wait of a request arriving `since_start` after the server started.
    pub fn wait_at(&self, since_start: Duration) -> Duration {
        let into_cycle =
            Duration::from_nanos((since_start.as_nanos() % self.every.as_nanos().max(1)) as u64);
        self.length.saturating_sub(into_cycle)
    }

    fn validate(&self) -> Result<(), String> {
        if self.length.is_zero() || self.length >= self.every {
            return Err(format!(
                "`stall.duration_ms` ({} ms) must be above 0 and shorter than `stall.every_s` ({} s), or the target would never answer. Shorten the stall or lengthen the period.",
                self.length.as_secs_f64() * 1000.0,
                self.every.as_secs_f64()
            ));
        }
        Ok(())
    }
}

/// `{ every = N }`: hits the Nth, 2Nth, … request of each protected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Every {
    pub every: u64,
}

/// `{ every = N, duration_ms = D }`: a wait of D milliseconds on every Nth request.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    pub every: u64,
    pub duration_ms: f64,
}

/// Every Nth request gets a `status` (5xx) response with an error envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpErrorFault {
    pub every: u64,
    #[serde(default = "default_error_status")]
    pub status: u16,
}

fn default_error_status() -> u16 {
    500
}

/// Every Nth request gets an HTTP 200 response with `success: false` and
/// `statusCode: status_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppErrorFault {
    pub every: u64,
    #[serde(default = "default_app_status_code")]
    pub status_code: u16,
}

fn default_app_status_code() -> u16 {
    200
}

/// Every Nth request sends its headers (with the full `Content-Length`) and
/// the first `after_bytes` of the body, then the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropMidBody {
    pub every: u64,
    #[serde(default = "default_after_bytes")]
    pub after_bytes: u64,
}

fn default_after_bytes() -> u64 {
    64
}

/// Every Nth request gets a valid envelope whose `data` contains at least
/// `bytes` bytes of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LargeBody {
    pub every: u64,
    #[serde(default = "default_large_bytes")]
    pub bytes: u64,
}

fn default_large_bytes() -> u64 {
    5_000_000
}

/// Every Nth request is redirected `hops` times on the same route before
/// the final response: `302 Found` for GET, `307 Temporary Redirect`
/// otherwise, to `<path>?hop=1`, then `hop=2`, … up to `hop=<hops>`, which
/// gets the usual response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub every: u64,
    #[serde(default = "default_hops")]
    pub hops: u32,
}

fn default_hops() -> u32 {
    3
}

/// Every `every_s` seconds from the server's start, every token issued
/// before that moment stops being accepted (401 "Token expired."), whatever
/// its `exp`: all virtual users must log in again at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEpoch {
    pub every_s: f64,
}

/// Login returns 401 for these demo user numbers (`user<N>@demo.test`),
/// listed in `users`, or every `every`th number, or both, even with the
/// right password.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectLogins {
    #[serde(default)]
    pub users: Vec<u64>,
    pub every: Option<u64>,
}

impl RejectLogins {
    pub fn rejects(&self, user_number: u64) -> bool {
        self.users.contains(&user_number)
            || self.every.is_some_and(|every| user_number % every == 0)
    }
}

/// The spelling of `apiCost.duration` (seconds) in the JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationFormat {
    /// Fixed-point with six decimals: `0.002034`.
    Plain,
    /// Scientific notation: `2.034117e-3`.
    Exponent,
    /// A JSON string holding the number: `"0.002034117"`.
    String,
    /// `null`.
    Null,
    /// No `duration` key in `apiCost`.
    Missing,
}

/// The maximum `every`.
const MAX_EVERY: u64 = 1_000_000;
/// The maximum injected delay, in milliseconds (one hour).
const MAX_DELAY_MS: f64 = 3_600_000.0;
/// The maximum period or offset, in seconds (one week).
const MAX_SECONDS: f64 = 604_800.0;
/// The maximum body size of `large_body`, and the maximum `after_bytes`.
const MAX_BODY_BYTES: u64 = 100_000_000;
const MAX_HOPS: u32 = 50;

fn check_every(key: &str, every: u64) -> Result<(), String> {
    if (1..=MAX_EVERY).contains(&every) {
        return Ok(());
    }
    Err(format!(
        "`{key}` must be a whole number from 1 to {MAX_EVERY}, got {every}. every = 10 hits the 10th, 20th, … request of each route; every = 1 hits all."
    ))
}

fn check_delay_ms(key: &str, ms: f64) -> Result<(), String> {
    if ms.is_finite() && ms > 0.0 && ms <= MAX_DELAY_MS {
        return Ok(());
    }
    Err(format!(
        "`{key}` must be above 0 and at most {MAX_DELAY_MS} milliseconds (one hour), got {ms}."
    ))
}

fn check_seconds(key: &str, seconds: f64) -> Result<(), String> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SECONDS {
        return Ok(());
    }
    Err(format!(
        "`{key}` must be above 0 and at most {MAX_SECONDS} seconds (one week), got {seconds}."
    ))
}

fn check_bytes(key: &str, bytes: u64, min: u64) -> Result<(), String> {
    if (min..=MAX_BODY_BYTES).contains(&bytes) {
        return Ok(());
    }
    Err(format!(
        "`{key}` must be from {min} to {MAX_BODY_BYTES} bytes, got {bytes}."
    ))
}

impl Faults {
    /// Checks every setting. An error message names the key (relative to
    /// the faults table), quotes the value and gives the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(stall) = &self.stall {
            stall.validate()?;
        }

        for (key, delay) in [
            ("slow_service", &self.slow_service),
            ("slow_headers", &self.slow_headers),
        ] {
            if let Some(delay) = delay {
                check_every(&format!("{key}.every"), delay.every)?;
                check_delay_ms(&format!("{key}.duration_ms"), delay.duration_ms)?;
            }
        }

        if let Some(fault) = &self.http_error {
            check_every("http_error.every", fault.every)?;
            if !(500..=599).contains(&fault.status) {
                return Err(format!(
                    "`http_error.status` must be a server error from 500 to 599, got {}. Use 500 or 503; to reject tokens use `token_epoch`.",
                    fault.status
                ));
            }
        }

        if let Some(fault) = &self.app_error {
            check_every("app_error.every", fault.every)?;
            if fault.status_code > 999 {
                return Err(format!(
                    "`app_error.status_code` must be from 0 to 999, got {}. It is the envelope's statusCode; the HTTP status stays 200.",
                    fault.status_code
                ));
            }
        }

        if let Some(fault) = &self.drop_mid_body {
            check_every("drop_mid_body.every", fault.every)?;
            check_bytes("drop_mid_body.after_bytes", fault.after_bytes, 0)?;
        }

        for (key, every) in [
            ("truncated_json", &self.truncated_json),
            ("malformed_json", &self.malformed_json),
            ("gzip", &self.gzip),
        ] {
            if let Some(every) = every {
                check_every(&format!("{key}.every"), every.every)?;
            }
        }

        if let Some(fault) = &self.large_body {
            check_every("large_body.every", fault.every)?;
            check_bytes("large_body.bytes", fault.bytes, 1)?;
        }

        if let Some(fault) = &self.redirect {
            check_every("redirect.every", fault.every)?;
            if !(1..=MAX_HOPS).contains(&fault.hops) {
                return Err(format!(
                    "`redirect.hops` must be from 1 to {MAX_HOPS}, got {}.",
                    fault.hops
                ));
            }
        }

        if let Some(epoch) = &self.token_epoch {
            check_seconds("token_epoch.every_s", epoch.every_s)?;
        }

        if let Some(reject) = &self.reject_logins {
            if reject.users.is_empty() && reject.every.is_none() {
                return Err("`reject_logins` selects no user. Set users = [2, 5] (user numbers), every = 3 (every third user), or both.".into());
            }
            if reject.users.contains(&0) {
                return Err("`reject_logins.users` holds 0, but demo users are numbered from 1 (user1@demo.test). Remove the 0.".into());
            }
            if let Some(every) = reject.every {
                check_every("reject_logins.every", every)?;
            }
        }

        if let Some(ms) = self.under_report_ms {
            if !ms.is_finite() || !(0.0..=MAX_DELAY_MS).contains(&ms) {
                return Err(format!(
                    "`under_report_ms` must be from 0 to {MAX_DELAY_MS} milliseconds, got {ms}."
                ));
            }
        }

        if let Some(seconds) = self.clock_offset_s {
            if !seconds.is_finite() || seconds.abs() > MAX_SECONDS {
                return Err(format!(
                    "`clock_offset_s` must be from -{MAX_SECONDS} to {MAX_SECONDS} seconds, got {seconds}."
                ));
            }
        }

        Ok(())
    }

    /// Reads `parallax serve --fault` values, each one line of the faults
    /// table (`http_error = { every = 10 }`), and validates them.
    pub fn from_flag_lines(lines: &[String]) -> Result<Faults, String> {
        let faults: Faults = toml::from_str(&lines.join("\n")).map_err(|error| {
            let message = error.message().lines().map(str::trim).collect::<Vec<_>>();
            let message = message.join(" ");
            // Messages from the checks start with the key and already give the fix.
            if message.starts_with('`') {
                return format!("--fault: {message}");
            }
            format!(
                "--fault: {}. Write each as KEY = VALUE, e.g. --fault 'http_error = {{ every = 10, status = 503 }}'; docs/reliability.md lists the keys.",
                message.trim_end_matches('.')
            )
        })?;
        faults
            .validate()
            .map_err(|problem| format!("--fault: {problem}"))?;
        Ok(faults)
    }

    /// Returns the keys that are set, in table order, for the start-up message.
    pub fn active(&self) -> Vec<&'static str> {
        let set = [
            ("stall", self.stall.is_some()),
            ("slow_service", self.slow_service.is_some()),
            ("slow_headers", self.slow_headers.is_some()),
            ("http_error", self.http_error.is_some()),
            ("app_error", self.app_error.is_some()),
            ("drop_mid_body", self.drop_mid_body.is_some()),
            ("truncated_json", self.truncated_json.is_some()),
            ("malformed_json", self.malformed_json.is_some()),
            ("large_body", self.large_body.is_some()),
            ("gzip", self.gzip.is_some()),
            ("redirect", self.redirect.is_some()),
            ("token_epoch", self.token_epoch.is_some()),
            ("reject_logins", self.reject_logins.is_some()),
            ("under_report_ms", self.under_report_ms.is_some()),
            ("clock_offset_s", self.clock_offset_s.is_some()),
            ("server_timing", self.server_timing),
            ("duration_format", self.duration_format.is_some()),
        ];
        set.into_iter()
            .filter(|(_, on)| *on)
            .map(|(key, _)| key)
            .collect()
    }

    /// Decides what the per-request faults do to request number `n` (from 1) of a route.
    fn injection(&self, n: u64) -> Injection {
        let hits = |every: u64| n % every == 0;
        let delay = |delay: &Option<Delay>| {
            delay
                .filter(|delay| hits(delay.every))
                .map_or(Duration::ZERO, |delay| {
                    Duration::from_secs_f64(delay.duration_ms / 1000.0)
                })
        };
        let every = |fault: &Option<Every>| fault.is_some_and(|fault| hits(fault.every));
        let body = if self.redirect.is_some_and(|fault| hits(fault.every)) {
            Some(BodyFault::Redirect)
        } else if let Some(fault) = self.http_error.filter(|fault| hits(fault.every)) {
            Some(BodyFault::HttpError(fault.status))
        } else if let Some(fault) = self.app_error.filter(|fault| hits(fault.every)) {
            Some(BodyFault::AppError(fault.status_code))
        } else if let Some(fault) = self.drop_mid_body.filter(|fault| hits(fault.every)) {
            Some(BodyFault::DropMidBody(fault.after_bytes))
        } else if every(&self.truncated_json) {
            Some(BodyFault::TruncatedJson)
        } else if every(&self.malformed_json) {
            Some(BodyFault::MalformedJson)
        } else if self.large_body.is_some_and(|fault| hits(fault.every)) {
            Some(BodyFault::LargeBody)
        } else {
            None
        };
        let encodable = !matches!(body, Some(BodyFault::Redirect | BodyFault::DropMidBody(_)));
        Injection {
            extra_service: delay(&self.slow_service),
            header_delay: delay(&self.slow_headers),
            body,
            gzip: encodable && every(&self.gzip),
        }
    }
}

/// A fault the target injected, as counted by [`TargetStats::injected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A request that arrived during a `stall` window and waited.
    Stall,
    SlowService,
    SlowHeaders,
    HttpError,
    AppError,
    DropMidBody,
    TruncatedJson,
    MalformedJson,
    LargeBody,
    Gzip,
    /// A request redirected; its hops are not counted again.
    Redirect,
    /// A 401 for a token issued before the current epoch.
    TokenEpoch,
    /// A login rejected by `reject_logins`.
    RejectedLogin,
}

/// The per-request faults chosen for one protected request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Injection {
    extra_service: Duration,
    header_delay: Duration,
    body: Option<BodyFault>,
    gzip: bool,
}

impl Injection {
    fn faults(&self) -> impl Iterator<Item = Fault> {
        let body = self.body.map(|body| match body {
            BodyFault::Redirect => Fault::Redirect,
            BodyFault::HttpError(_) => Fault::HttpError,
            BodyFault::AppError(_) => Fault::AppError,
            BodyFault::DropMidBody(_) => Fault::DropMidBody,
            BodyFault::TruncatedJson => Fault::TruncatedJson,
            BodyFault::MalformedJson => Fault::MalformedJson,
            BodyFault::LargeBody => Fault::LargeBody,
        });
        [
            (!self.extra_service.is_zero()).then_some(Fault::SlowService),
            (!self.header_delay.is_zero()).then_some(Fault::SlowHeaders),
            body,
            self.gzip.then_some(Fault::Gzip),
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFault {
    Redirect,
    HttpError(u16),
    AppError(u16),
    DropMidBody(u64),
    TruncatedJson,
    MalformedJson,
    LargeBody,
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

/// Requests the target answered, by route and HTTP status, and the faults it
/// injected, for tests that compare the target's counts with parallax's.
#[derive(Debug, Default)]
pub struct TargetStats {
    by_route: Mutex<BTreeMap<(String, u16), u64>>,
    faults: Mutex<BTreeMap<(&'static str, Fault), u64>>,
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

    /// When each protected request arrived, in arrival order (the first
    /// million). Each redirect hop is an arrival of its own.
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

    fn count_fault(&self, route: &'static str, fault: Fault) {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *faults.entry((route, fault)).or_default() += 1;
    }

    /// Responses sent on `route` (for example `GET /api/items`) with `status`.
    /// A response is counted when its handler finishes, before it is sent.
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

    /// Returns how many times `fault` was injected, over all routes. A fault is
    /// counted when the target decides to inject it, so a request the client
    /// gave up on is counted too.
    pub fn injected(&self, fault: Fault) -> u64 {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|((_, counted), _)| *counted == fault)
            .map(|(_, count)| count)
            .sum()
    }

    /// Returns how many times `fault` was injected on `route`.
    pub fn injected_on(&self, route: &str, fault: Fault) -> u64 {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|((counted_route, counted), _)| *counted_route == route && *counted == fault)
            .map(|(_, count)| count)
            .sum()
    }
}

// ---------------------------------------------------------------------------
// The server.

/// The protected routes, each with its own request numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    List,
    Detail,
    Create,
}

impl Route {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Route::List => LIST_ROUTE,
            Route::Detail => DETAIL_ROUTE,
            Route::Create => CREATE_ROUTE,
        }
    }

    /// 302 keeps a GET a GET; a POST redirected with 302 may turn into a
    /// GET, so it gets 307, which keeps the method and the body.
    fn redirect_status(self) -> StatusCode {
        match self {
            Route::List | Route::Detail => StatusCode::FOUND,
            Route::Create => StatusCode::TEMPORARY_REDIRECT,
        }
    }
}

/// The settings of how responses report the server's time, from the latency faults.
#[derive(Debug, Clone, Copy)]
struct Reporting {
    under_report: Duration,
    clock_offset: chrono::Duration,
    duration_format: Option<DurationFormat>,
    server_timing: bool,
}

impl Reporting {
    fn of(faults: &Faults) -> Self {
        let offset_ms = (faults.clock_offset_s.unwrap_or(0.0) * 1000.0).round() as i64;
        Reporting {
            under_report: Duration::from_secs_f64(faults.under_report_ms.unwrap_or(0.0) / 1000.0),
            clock_offset: chrono::Duration::try_milliseconds(offset_ms).unwrap_or_default(),
            duration_format: faults.duration_format,
            server_timing: faults.server_timing,
        }
    }
}

/// The `data` of a `large_body` response, built once: its JSON text and
/// its number of items.
struct LargeData {
    items: Box<RawValue>,
    count: u64,
}

impl LargeData {
    fn build(bytes: u64) -> Self {
        let mut text = String::with_capacity(bytes as usize + 256);
        text.push('[');
        let mut count = 0_u64;
        while (text.len() as u64) < bytes {
            if count > 0 {
                text.push(',');
            }
            text.push_str(&item(count % 1000 + 1).to_string());
            count += 1;
        }
        text.push(']');
        LargeData {
            items: RawValue::from_string(text).expect("an array of items is valid JSON"),
            count,
        }
    }
}

struct AppState {
    config: Config,
    secret: [u8; 32],
    next_token_id: AtomicU64,
    stats: Arc<TargetStats>,
    started: Instant,
    /// The last request number given out per [`Route`].
    sequence: [AtomicU64; 3],
    large_data: Option<LargeData>,
    reporting: Reporting,
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
    /// Invalid fault settings are an `InvalidInput` error.
    pub async fn start(config: Config, addr: SocketAddr) -> std::io::Result<DemoTarget> {
        config
            .faults
            .validate()
            .map_err(|problem| std::io::Error::new(std::io::ErrorKind::InvalidInput, problem))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(TargetStats::default());
        let state = Arc::new(AppState::new(config, Arc::clone(&stats)));
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
    /// Wall-clock start, shifted by `clock_offset_s`.
    wall: chrono::DateTime<chrono::Local>,
    started: Instant,
    elapsed: Option<Duration>,
    /// The injected part of the time spent (`stall`, `slow_service`),
    /// reported as `Server-Timing: db`.
    injected_wait: Duration,
    reporting: Reporting,
}

impl Timing {
    fn start(reporting: Reporting) -> Self {
        Timing {
            wall: chrono::Local::now() + reporting.clock_offset,
            started: Instant::now(),
            elapsed: None,
            injected_wait: Duration::ZERO,
            reporting,
        }
    }

    fn finish(&mut self) {
        self.elapsed = Some(self.started.elapsed());
    }

    /// Returns the time written to `apiCost.duration`: the time spent, less
    /// `under_report_ms`, never below zero.
    fn reported(&self) -> Duration {
        let elapsed = self.elapsed.unwrap_or_else(|| self.started.elapsed());
        elapsed.saturating_sub(self.reporting.under_report)
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

/// The envelope as written on the wire, in the documented key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeBody<'a, D: Serialize + ?Sized> {
    success: bool,
    status_code: u16,
    message: &'a str,
    data: &'a D,
    rows: &'a Value,
    api_cost: ApiCost,
}

#[derive(Serialize)]
struct ApiCost {
    start: String,
    finish: String,
    /// Raw JSON text, so that `duration_format` controls its spelling.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<Box<RawValue>>,
}

/// Writes `seconds` as the JSON text of `apiCost.duration` in `format`.
/// Returns `None` when the key is left out.
fn duration_text(seconds: f64, format: Option<DurationFormat>) -> Option<Box<RawValue>> {
    let text = match format {
        None => serde_json::Number::from_f64(seconds)
            .map_or_else(|| "null".to_string(), |number| number.to_string()),
        Some(DurationFormat::Plain) => format!("{seconds:.6}"),
        Some(DurationFormat::Exponent) => format!("{seconds:e}"),
        Some(DurationFormat::String) => format!("\"{seconds}\""),
        Some(DurationFormat::Null) => "null".to_string(),
        Some(DurationFormat::Missing) => return None,
    };
    Some(RawValue::from_string(text).expect("each duration spelling is valid JSON"))
}

fn envelope_text<D: Serialize + ?Sized>(
    timing: &Timing,
    success: bool,
    status_code: u16,
    message: &str,
    data: &D,
    rows: &Value,
) -> String {
    let reported = timing.reported();
    let finish = timing.wall + chrono::Duration::from_std(reported).unwrap_or_default();
    let body = EnvelopeBody {
        success,
        status_code,
        message,
        data,
        rows,
        api_cost: ApiCost {
            start: format_api_timestamp(timing.wall),
            finish: format_api_timestamp(finish),
            duration: duration_text(reported.as_secs_f64(), timing.reporting.duration_format),
        },
    };
    serde_json::to_string(&body).expect("an envelope serialises")
}

/// Builds a JSON response, with `Server-Timing` when that behaviour is on.
fn json_response(timing: &Timing, status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response();
    if timing.reporting.server_timing {
        let reported = timing.reported();
        let db = timing.injected_wait.min(reported);
        let value = format!(
            "db;dur={:.3}, app;dur={:.3}",
            db.as_secs_f64() * 1000.0,
            (reported - db).as_secs_f64() * 1000.0
        );
        response.headers_mut().insert(
            "server-timing",
            HeaderValue::from_str(&value).expect("digits and separators are a valid header"),
        );
    }
    response
}

fn envelope(
    timing: &Timing,
    status: StatusCode,
    message: &str,
    data: Value,
    rows: Value,
) -> Response {
    let text = envelope_text(
        timing,
        status.is_success(),
        status.as_u16(),
        message,
        &data,
        &rows,
    );
    json_response(timing, status, text)
}

/// The response of a protected handler, before faults and serialisation.
struct Reply {
    status: StatusCode,
    message: &'static str,
    data: Value,
    rows: Value,
}

impl Reply {
    fn ok(status: StatusCode, message: &'static str, data: Value, rows: u64) -> Self {
        Reply {
            status,
            message,
            data,
            rows: json!(rows),
        }
    }

    fn error(status: StatusCode, message: &'static str) -> Self {
        Reply {
            status,
            message,
            data: Value::Null,
            rows: json!(0),
        }
    }
}

/// The end of a `drop_mid_body` body: after a pause, a read error, on
/// which hyper closes the connection. The pause lets hyper flush the
/// headers and the first part of the body. Without it, hyper drops them
/// unsent and the client sees no response at all.
struct CutOff {
    /// Started at the first read, so that time spent before hyper sends
    /// the response (`slow_headers`) does not use it up.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a dropped body pauses before the connection is closed.
const CUT_OFF_PAUSE: Duration = Duration::from_millis(20);

impl tokio::io::AsyncRead for CutOff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_OFF_PAUSE)));
        if pause.as_mut().poll(context).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "drop_mid_body: connection dropped on purpose",
        )))
    }
}

/// Sends the headers with the full `Content-Length` and `after_bytes` of
/// `body` (at most all but its last byte), then fails the body stream, on
/// which hyper closes the connection: the client sees the body end early.
fn cut_off_response(status: StatusCode, body: Vec<u8>, after_bytes: u64) -> Response {
    use tokio::io::AsyncReadExt as _;

    let full_length = body.len();
    let kept = (after_bytes as usize).min(full_length.saturating_sub(1));
    let mut head = body;
    head.truncate(kept);
    let reader = std::io::Cursor::new(head).chain(CutOff { pause: None });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(tokio_util::io::ReaderStream::new(reader)),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full_length));
    response
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .expect("compressing into memory does not fail")
}

/// Reads the request's redirect hop from a `hop=<n>` query parameter.
fn redirect_hop(uri: &Uri) -> Option<u32> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("hop="))
        .and_then(|hop| hop.parse().ok())
}

/// Returns `uri` with its `hop` parameter set to `hop`, other parameters kept.
fn with_hop(uri: &Uri, hop: u32) -> String {
    let hop = format!("hop={hop}");
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("hop="))
        .chain([hop.as_str()])
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The reason a bearer token was rejected; each gets a 401 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    MissingHeader,
    NotBearer,
    Invalid,
    Expired,
    /// Issued before the current `token_epoch`.
    OldEpoch,
}

impl Rejection {
    fn message(self) -> &'static str {
        match self {
            Rejection::MissingHeader => "Missing Authorization header.",
            Rejection::NotBearer => "Authorization must be a Bearer token.",
            Rejection::Invalid => "Invalid token.",
            Rejection::Expired | Rejection::OldEpoch => "Token expired.",
        }
    }
}

/// The claims the target reads back from its own tokens.
#[derive(Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    epoch: Option<u64>,
}

impl AppState {
    fn new(config: Config, stats: Arc<TargetStats>) -> Self {
        let large_data = config
            .faults
            .large_body
            .map(|fault| LargeData::build(fault.bytes));
        let reporting = Reporting::of(&config.faults);
        AppState {
            config,
            secret: rand::thread_rng().gen(),
            next_token_id: AtomicU64::new(1),
            stats,
            started: Instant::now(),
            sequence: Default::default(),
            large_data,
            reporting,
        }
    }

    fn sign(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(signing_input.as_bytes());
        mac
    }

    /// Returns the token epoch at `at`: how many `token_epoch.every_s`
    /// periods have passed since the server started. `None` when the fault is off.
    fn epoch_at(&self, at: Instant) -> Option<u64> {
        let epoch = self.config.faults.token_epoch?;
        Some((at.saturating_duration_since(self.started).as_secs_f64() / epoch.every_s) as u64)
    }

    fn issue_token(&self, subject: &str) -> String {
        let now = unix_now();
        let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let mut claims = json!({
            "sub": subject,
            "iat": now,
            "exp": now + self.config.token_lifetime.as_secs().max(1),
            "jti": self.next_token_id.fetch_add(1, Ordering::Relaxed),
        });
        if let Some(epoch) = self.epoch_at(Instant::now()) {
            claims["epoch"] = json!(epoch);
        }
        let payload = base64url(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{payload}");
        let signature = base64url(&self.sign(&signing_input).finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks the bearer token's signature, expiry and epoch at `at`.
    fn authorize(&self, headers: &HeaderMap, at: Instant) -> Result<(), Rejection> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(Rejection::MissingHeader)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .filter(|token| !token.is_empty())
            .ok_or(Rejection::NotBearer)?;
        let (signing_input, signature) = token.rsplit_once('.').ok_or(Rejection::Invalid)?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Rejection::Invalid)?;
        self.sign(signing_input)
            .verify_slice(&signature)
            .map_err(|_| Rejection::Invalid)?;
        let claims = signing_input
            .split_once('.')
            .and_then(|(_, payload)| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .ok()
            })
            .and_then(|payload| serde_json::from_slice::<Claims>(&payload).ok())
            .ok_or(Rejection::Invalid)?;
        if claims.exp <= unix_now() {
            return Err(Rejection::Expired);
        }
        if let Some(current) = self.epoch_at(at) {
            if claims.epoch != Some(current) {
                return Err(Rejection::OldEpoch);
            }
        }
        Ok(())
    }

    /// Numbers the request on `route` and decides its faults; counts them.
    fn inject(&self, route: Route) -> Injection {
        let number = self.sequence[route.index()].fetch_add(1, Ordering::Relaxed) + 1;
        let injection = self.config.faults.injection(number);
        for fault in injection.faults() {
            self.stats.count_fault(route.name(), fault);
        }
        injection
    }

    fn respond(&self, route: &str, response: Response) -> Response {
        self.stats.count(route, response.status());
        response
    }

    /// Serialises `reply`, with the body faults of `injection` applied.
    fn render(&self, timing: &Timing, reply: Reply, injection: &Injection) -> Response {
        let reply = match injection.body {
            Some(BodyFault::HttpError(status)) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Reply::error(status, "Injected server error.")
            }
            _ => reply,
        };
        let (success, status_code, message) = match injection.body {
            Some(BodyFault::AppError(code)) => (false, code, "Injected application error."),
            _ => (
                reply.status.is_success(),
                reply.status.as_u16(),
                reply.message,
            ),
        };
        let status = match injection.body {
            Some(BodyFault::AppError(_)) => StatusCode::OK,
            _ => reply.status,
        };
        let mut body = match (injection.body, &self.large_data) {
            (Some(BodyFault::LargeBody), Some(large)) => envelope_text(
                timing,
                success,
                status_code,
                message,
                &*large.items,
                &json!(large.count),
            ),
            _ => envelope_text(
                timing,
                success,
                status_code,
                message,
                &reply.data,
                &reply.rows,
            ),
        }
        .into_bytes();
        match injection.body {
            Some(BodyFault::DropMidBody(after_bytes)) => {
                return cut_off_response(status, body, after_bytes)
            }
            Some(BodyFault::TruncatedJson) => body.truncate(body.len() / 2),
            // A trailing comma before the closing brace, as a hand-written template might leave.
            Some(BodyFault::MalformedJson) => body.insert(body.len() - 1, b','),
            _ => {}
        }
        if !injection.gzip {
            return json_response(timing, status, body);
        }
        let mut response = json_response(timing, status, gzip(&body));
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    }
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let mut timing = Timing::start(state.reporting);
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
        return state.respond(LOGIN_ROUTE, response);
    };
    let user_number = body
        .email
        .strip_prefix("user")
        .and_then(|rest| rest.strip_suffix("@demo.test"))
        .and_then(|number| number.parse::<usize>().ok())
        .filter(|number| (1..=state.config.users).contains(number));
    let accepted = user_number.filter(|number| body.password == format!("demo-pass-{number}"));
    let rejected = accepted.is_some_and(|number| {
        let rejects = state.config.faults.reject_logins.as_ref();
        rejects.is_some_and(|reject| reject.rejects(number as u64))
    });
    if rejected {
        state.stats.count_fault(LOGIN_ROUTE, Fault::RejectedLogin);
    }
    let Some(number) = accepted.filter(|_| !rejected) else {
        let response = envelope(
            &timing,
            StatusCode::UNAUTHORIZED,
            "Invalid email or password.",
            Value::Null,
            json!(0),
        );
        return state.respond(LOGIN_ROUTE, response);
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
        LOGIN_ROUTE,
        envelope(&timing, StatusCode::OK, "Login Success.", data, json!(2)),
    )
}

fn item(id: u64) -> Value {
    json!({ "id": id, "code": format!("ITEM-{id:05}"), "name": format!("Item {id}"), "price": (id % 97) as f64 + 0.99, "status": "active" })
}

/// Runs a protected handler: authorises, numbers the request and picks its
/// faults, waits the service time (plus any stall), then responds.
async fn protected(
    state: &AppState,
    route: Route,
    headers: &HeaderMap,
    uri: &Uri,
    service_time: Distribution,
    handle: impl FnOnce() -> Reply,
) -> Response {
    let mut timing = Timing::start(state.reporting);
    state.stats.log_arrival(timing.started);
    if let Err(rejection) = state.authorize(headers, timing.started) {
        if rejection == Rejection::OldEpoch {
            state.stats.count_fault(route.name(), Fault::TokenEpoch);
        }
        let response = envelope(
            &timing,
            StatusCode::UNAUTHORIZED,
            rejection.message(),
            Value::Null,
            json!(0),
        );
        return state.respond(route.name(), response);
    }

    // A redirect hop continues a request that was already numbered.
    let hop = redirect_hop(uri);
    let injection = match hop {
        Some(_) => Injection::default(),
        None => state.inject(route),
    };
    let stalled = state.config.faults.stall.map_or(Duration::ZERO, |stall| {
        stall.wait_at(timing.started - state.started)
    });
    if !stalled.is_zero() {
        state.stats.count_fault(route.name(), Fault::Stall);
    }

    timing.injected_wait = stalled + injection.extra_service;
    let wait = timing.injected_wait + service_time.sample(&mut rand::thread_rng());
    serve_for(wait, timing.started).await;
    timing.finish();

    let hops = state.config.faults.redirect.map_or(0, |fault| fault.hops);
    let next_hop = match (injection.body, hop) {
        (Some(BodyFault::Redirect), _) => Some(1),
        (None, Some(hop)) if hop < hops => Some(hop + 1),
        _ => None,
    };
    let response = match next_hop {
        Some(next) => (
            route.redirect_status(),
            [(header::LOCATION, with_hop(uri, next))],
        )
            .into_response(),
        None => state.render(&timing, handle(), &injection),
    };
    if !injection.header_delay.is_zero() {
        tokio::time::sleep(injection.header_delay).await;
    }
    state.respond(route.name(), response)
}

async fn list_items(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Response {
    let service_time = state.config.service_times.list;
    protected(&state, Route::List, &headers, &uri, service_time, || {
        let items: Vec<Value> = (1..=10).map(item).collect();
        Reply::ok(StatusCode::OK, "Success.", Value::Array(items), 10)
    })
    .await
}

async fn item_detail(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let service_time = state.config.service_times.detail;
    protected(
        &state,
        Route::Detail,
        &headers,
        &uri,
        service_time,
        || match id.parse::<u64>() {
            Ok(id @ 1..=1000) => Reply::ok(StatusCode::OK, "Success.", item(id), 1),
            _ => Reply::error(StatusCode::NOT_FOUND, "Item not found."),
        },
    )
    .await
}

async fn create_item(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let service_time = state.config.service_times.create;
    protected(
        &state,
        Route::Create,
        &headers,
        &uri,
        service_time,
        || match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(mut fields)) => {
                fields.insert("id".into(), json!(1001 + (unix_now() % 1000)));
                Reply::ok(StatusCode::CREATED, "Created.", Value::Object(fields), 1)
            }
            _ => Reply::error(StatusCode::BAD_REQUEST, "Body must be a JSON object."),
        },
    )
    .await
}

async fn not_found(State(state): State<Arc<AppState>>) -> Response {
    let timing = Timing::start(state.reporting);
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

    fn state_with(faults: Faults) -> AppState {
        let config = Config {
            faults,
            ..Config::default()
        };
        AppState::new(config, Arc::default())
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    fn faults(toml_text: &str) -> Result<Faults, String> {
        let lines: Vec<String> = toml_text.lines().map(str::to_string).collect();
        Faults::from_flag_lines(&lines)
    }

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
        let state = state_with(Faults::default());
        let token = state.issue_token("user1@demo.test");
        let now = Instant::now();
        assert_eq!(state.authorize(&bearer(&token), now), Ok(()));
        let exp = crate::api::jwt_expiry(&token).unwrap();
        assert!(exp >= unix_now() + 299);
        let tampered = format!("{token}x");
        assert_eq!(
            state.authorize(&bearer(&tampered), now),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn token_epoch_refuses_tokens_of_an_earlier_epoch() {
        let state = state_with(Faults {
            token_epoch: Some(TokenEpoch { every_s: 10.0 }),
            ..Faults::default()
        });
        let token = state.issue_token("user1@demo.test");
        let now = state.started;
        assert_eq!(state.authorize(&bearer(&token), now), Ok(()));
        let next_epoch = now + Duration::from_secs(10);
        assert_eq!(
            state.authorize(&bearer(&token), next_epoch),
            Err(Rejection::OldEpoch)
        );
    }

    #[test]
    fn first_body_fault_wins_a_shared_number() {
        let faults = faults(
            "http_error = { every = 2, status = 503 }\napp_error = { every = 3 }\nslow_headers = { every = 3, duration_ms = 5 }\ngzip = { every = 6 }",
        )
        .unwrap();
        assert_eq!(faults.injection(1), Injection::default());
        assert_eq!(faults.injection(2).body, Some(BodyFault::HttpError(503)));
        let third = faults.injection(3);
        assert_eq!(third.body, Some(BodyFault::AppError(200)));
        assert_eq!(third.header_delay, Duration::from_millis(5));
        // 6 is picked by both body faults: the earlier in the order wins, and gzip adds to it.
        let sixth = faults.injection(6);
        assert_eq!(sixth.body, Some(BodyFault::HttpError(503)));
        assert!(sixth.gzip);
        assert_eq!(
            sixth.faults().collect::<Vec<_>>(),
            [Fault::SlowHeaders, Fault::HttpError, Fault::Gzip]
        );
    }

    #[test]
    fn redirects_and_dropped_bodies_are_not_compressed() {
        let faults = faults("redirect = { every = 1 }\ngzip = { every = 1 }").unwrap();
        assert_eq!(faults.injection(1).body, Some(BodyFault::Redirect));
        assert!(!faults.injection(1).gzip);
    }

    #[test]
    fn invalid_faults_name_the_key_and_the_fix() {
        let cases = [
            ("http_error = { every = 0 }", "`http_error.every` must be a whole number from 1"),
            ("http_error = { every = 5, status = 404 }", "`http_error.status` must be a server error from 500 to 599, got 404"),
            ("slow_headers = { every = 5, duration_ms = -1 }", "`slow_headers.duration_ms` must be above 0"),
            ("stall = { every_s = 1, duration_ms = 1000 }", "`stall.duration_ms` (1000 ms) must be above 0 and shorter than `stall.every_s` (1 s)"),
            ("redirect = { every = 5, hops = 0 }", "`redirect.hops` must be from 1 to 50, got 0"),
            ("reject_logins = {}", "`reject_logins` selects no user"),
            ("reject_logins = { users = [0] }", "demo users are numbered from 1"),
            ("under_report_ms = -5", "`under_report_ms` must be from 0"),
            ("clock_offset_s = 1e9", "`clock_offset_s` must be from -604800"),
            ("token_epoch = { every_s = 0 }", "`token_epoch.every_s` must be above 0"),
            ("duration_format = \"hex\"", "unknown variant `hex`"),
            ("gzip = { every = 5, level = 9 }", "unknown field `level`"),
        ];
        for (text, expected) in cases {
            let message = faults(text).unwrap_err();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(message.starts_with("--fault: "), "{message}");
        }
    }

    #[test]
    fn duration_spellings() {
        let text = |format| duration_text(0.002_034_117, format).map(|raw| raw.get().to_string());
        assert_eq!(text(None).unwrap(), "0.002034117");
        assert_eq!(text(Some(DurationFormat::Plain)).unwrap(), "0.002034");
        assert_eq!(text(Some(DurationFormat::Exponent)).unwrap(), "2.034117e-3");
        assert_eq!(
            text(Some(DurationFormat::String)).unwrap(),
            "\"0.002034117\""
        );
        assert_eq!(text(Some(DurationFormat::Null)).unwrap(), "null");
        assert_eq!(text(Some(DurationFormat::Missing)), None);
    }

    #[test]
    fn redirect_hops_keep_other_query_parameters() {
        let uri: Uri = "/api/items?page=2&hop=1".parse().unwrap();
        assert_eq!(redirect_hop(&uri), Some(1));
        assert_eq!(with_hop(&uri, 2), "/api/items?page=2&hop=2");
        let plain: Uri = "/api/items".parse().unwrap();
        assert_eq!(redirect_hop(&plain), None);
        assert_eq!(with_hop(&plain, 1), "/api/items?hop=1");
    }

    #[test]
    fn large_data_reaches_its_size_and_parses() {
        let large = LargeData::build(10_000);
        assert!(large.items.get().len() >= 10_000);
        let items: Vec<Value> = serde_json::from_str(large.items.get()).unwrap();
        assert_eq!(items.len() as u64, large.count);
    }

    #[test]
    fn rejected_users_by_list_and_by_step() {
        let reject = RejectLogins {
            users: vec![2],
            every: Some(5),
        };
        let rejected: Vec<u64> = (1..=10).filter(|&n| reject.rejects(n)).collect();
        assert_eq!(rejected, [2, 5, 10]);
    }
}
