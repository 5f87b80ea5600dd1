//! Samples, outcome kinds and the HDR histograms they are recorded into.
//!
//! Units: every histogram records **microseconds**, from 0 to one hour, with
//! three significant digits. A value above one hour is recorded as one hour
//! and counted in [`EndpointStats::clamped`]. Reports convert to milliseconds.
//!
//! Recording is sharded: each virtual user writes into one of a few
//! mutex-guarded [`Shard`]s, and the collector merges the shards once per
//! interval into the interval snapshot and the run totals. A lock per request
//! is uncontended in practice because users are spread over the shards.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Index of the login endpoint in every endpoint list; the scenario's requests follow it.
pub const LOGIN_ENDPOINT: usize = 0;

/// Largest value a histogram records, in microseconds (one hour).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// The outcome of one intended request. Every request the plan intended ends
/// in exactly one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response the scenario's `[response]` rules accept: by default any
    /// 2xx whose envelope does not say `success: false`. Logins always use the default.
    Ok,
    /// A response with a non-2xx HTTP status (after one retry on 401).
    HttpError(u16),
    /// A 2xx response whose envelope contains `success: false`.
    AppError,
    /// No complete response within the request timeout.
    Timeout,
    /// The TCP or TLS connection could not be established.
    ConnectError,
    /// Any other transport failure: reset connection, truncated body, protocol error.
    TransportError,
    /// The request was sent, but the run was aborted before its response came.
    Cancelled,
    /// The request was never sent.
    NotSent(NotSentReason),
}

impl Outcome {
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }
}

/// The reason an intended request was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSentReason {
    /// The run ended or was interrupted before the request could start.
    RunStopped,
    /// The virtual user had no valid token because its login failed.
    LoginFailed,
    /// Open model: no user was free to send it within the queue-wait bound.
    NoFreeUser,
}

/// The server-reported processing time of one response, as parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTime {
    /// Reported and valid, converted to microseconds.
    Reported(u64),
    /// Not usable, for this reason; never recorded as zero.
    Missing(MissingReason),
}

/// The reason a response carried no usable server time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingReason {
    /// The body is not JSON (and the time was expected in the body).
    NotJson,
    /// The field (or a step of the pointer to it) is absent.
    Absent,
    /// The field is `null`.
    Null,
    /// The field is a string without a number, a boolean, an object or an array.
    NotANumber,
    Negative,
    /// Above one hour, or not finite.
    TooLarge,
    /// The header (or the Server-Timing metric) is absent.
    NoHeader,
    /// The scenario sets no server-time source, so the time is not counted as missing.
    NotReported,
    /// No response arrived (transport failure, not sent); not counted as missing.
    NoResponse,
}

/// Responses without a usable server time, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingCounts {
    pub not_json: u64,
    pub absent: u64,
    pub null: u64,
    pub not_a_number: u64,
    pub negative: u64,
    pub too_large: u64,
    pub no_header: u64,
}

impl MissingCounts {
    fn count(&mut self, reason: MissingReason) {
        match reason {
            MissingReason::NotJson => self.not_json += 1,
            MissingReason::Absent => self.absent += 1,
            MissingReason::Null => self.null += 1,
            MissingReason::NotANumber => self.not_a_number += 1,
            MissingReason::Negative => self.negative += 1,
            MissingReason::TooLarge => self.too_large += 1,
            MissingReason::NoHeader => self.no_header += 1,
            MissingReason::NotReported | MissingReason::NoResponse => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.not_json
            + self.absent
            + self.null
            + self.not_a_number
            + self.negative
            + self.too_large
            + self.no_header
    }

    fn merge(&mut self, other: &MissingCounts) {
        self.not_json += other.not_json;
        self.absent += other.absent;
        self.null += other.null;
        self.not_a_number += other.not_a_number;
        self.negative += other.negative;
        self.too_large += other.too_large;
        self.no_header += other.no_header;
    }
}

/// One finished (or never sent) request, as the user loop hands it to the recorder.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub endpoint: usize,
    pub outcome: Outcome,
    /// Raw client latency in microseconds: from the first send to the end of
    /// the body, a retry after a 401 included. Zero for requests never sent.
    pub latency_us: u64,
    /// The last attempt alone, from its send to the end of its body: the
    /// time comparable with the server's own report.
    pub attempt_us: u64,
    pub correction: Correction,
    pub server_time: ServerTime,
    pub details: ResponseDetails,
}

impl Sample {
    /// A request that was never sent.
    pub fn not_sent(endpoint: usize, reason: NotSentReason) -> Self {
        Sample {
            endpoint,
            outcome: Outcome::NotSent(reason),
            latency_us: 0,
            attempt_us: 0,
            correction: Correction::None,
            server_time: ServerTime::Missing(MissingReason::NoResponse),
            details: ResponseDetails::default(),
        }
    }
}

/// Facts about a response beyond its status and server time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseDetails {
    /// The body's `statusCode` differs from the HTTP status.
    pub status_code_mismatch: bool,
    /// `apiCost.finish - apiCost.start` differs from the reported server time
    /// by more than the 2 ms the millisecond timestamps can explain.
    pub api_cost_mismatch: bool,
    /// The server clock's offset, from `apiCost.start` and `finish` against
    /// the client's send and receive times.
    pub clock: Option<ClockSample>,
}

/// One estimate of the server clock's offset (server minus client wall
/// clock) by the midpoint method: the middle of `apiCost.start..finish`
/// against the middle of the client's send..receive. The true offset lies
/// within `bound_us` of `offset_us`: half the time the client waited beyond
/// the server's own span, plus the timestamps' millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSample {
    pub offset_us: i64,
    pub bound_us: u64,
}

impl ClockSample {
    /// Estimates the offset from client wall-clock send and receive times
    /// and server timestamps, all in microseconds since the Unix epoch.
    pub fn estimate(
        sent_us: i64,
        received_us: i64,
        server_start_us: i64,
        server_finish_us: i64,
    ) -> Self {
        let client_middle = (sent_us + received_us) / 2;
        let server_middle = (server_start_us + server_finish_us) / 2;
        let slack = (received_us - sent_us) - (server_finish_us - server_start_us);
        ClockSample {
            offset_us: server_middle - client_middle,
            bound_us: (slack.max(0) / 2) as u64 + 1_000,
        }
    }

    /// The tighter of two estimates.
    fn better(self, other: ClockSample) -> ClockSample {
        if other.bound_us < self.bound_us {
            other
        } else {
            self
        }
    }
}

/// The way the coordinated-omission-corrected latency of a sample is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// No correction: closed model without pacing. Only the raw view exists.
    None,
    /// Open model: the latency from the request's intended start on the
    /// schedule, and the schedule lag (actual send minus intended start).
    IntendedStart { latency_us: u64, lag_us: u64 },
    /// Closed model with pacing: HdrHistogram's `record_correct` with this
    /// expected interval, which adds the samples a stalled user could not send.
    ExpectedInterval(u64),
}

/// Counts of outcomes for one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub ok: u64,
    /// HTTP errors by status code.
    pub http_error: BTreeMap<u16, u64>,
    pub app_error: u64,
    pub timeout: u64,
    pub connect_error: u64,
    pub transport_error: u64,
    pub cancelled: u64,
    pub not_sent_run_stopped: u64,
    pub not_sent_login_failed: u64,
    pub not_sent_no_free_user: u64,
}

impl OutcomeCounts {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::HttpError(status) => *self.http_error.entry(status).or_default() += 1,
            Outcome::AppError => self.app_error += 1,
            Outcome::Timeout => self.timeout += 1,
            Outcome::ConnectError => self.connect_error += 1,
            Outcome::TransportError => self.transport_error += 1,
            Outcome::Cancelled => self.cancelled += 1,
            Outcome::NotSent(NotSentReason::RunStopped) => self.not_sent_run_stopped += 1,
            Outcome::NotSent(NotSentReason::LoginFailed) => self.not_sent_login_failed += 1,
            Outcome::NotSent(NotSentReason::NoFreeUser) => self.not_sent_no_free_user += 1,
        }
    }

    pub fn http_errors(&self) -> u64 {
        self.http_error.values().sum()
    }

    pub fn not_sent(&self) -> u64 {
        self.not_sent_run_stopped + self.not_sent_login_failed + self.not_sent_no_free_user
    }

    /// Requests that were sent and failed; cancelled requests are not counted here.
    pub fn errors(&self) -> u64 {
        self.http_errors()
            + self.app_error
            + self.timeout
            + self.connect_error
            + self.transport_error
    }

    /// Requests that were sent, whatever their outcome.
    pub fn sent(&self) -> u64 {
        self.ok + self.errors() + self.cancelled
    }

    /// Every intended request: sent plus never sent.
    pub fn total(&self) -> u64 {
        self.sent() + self.not_sent()
    }

    fn merge(&mut self, other: &OutcomeCounts) {
        self.ok += other.ok;
        for (status, count) in &other.http_error {
            *self.http_error.entry(*status).or_default() += count;
        }
        self.app_error += other.app_error;
        self.timeout += other.timeout;
        self.connect_error += other.connect_error;
        self.transport_error += other.transport_error;
        self.cancelled += other.cancelled;
        self.not_sent_run_stopped += other.not_sent_run_stopped;
        self.not_sent_login_failed += other.not_sent_login_failed;
        self.not_sent_no_free_user += other.not_sent_no_free_user;
    }
}

fn new_histogram() -> Histogram<u64> {
    // Auto-resizing keeps idle histograms small: a histogram covering the
    // full hour at 3 digits takes about 180 KiB. Callers clamp to one hour.
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is a valid histogram setting")
}

/// Records one value, growing the histogram when needed. `saturating_record`
/// would clamp to the current (auto-resizing) upper bound instead of growing.
fn record_value(histogram: &mut Histogram<u64>, value_us: u64) {
    if histogram.record(value_us).is_err() {
        histogram.saturating_record(value_us);
    }
}

/// A histogram of values that can be negative (the overhead, client minus
/// server). Negative values are kept as magnitudes in their own histogram, so
/// they are counted and take part in the percentiles instead of being dropped.
#[derive(Debug, Clone)]
pub struct SignedHistogram {
    positive: Histogram<u64>,
    negative: Histogram<u64>,
}

impl Default for SignedHistogram {
    fn default() -> Self {
        SignedHistogram {
            positive: new_histogram(),
            negative: new_histogram(),
        }
    }
}

impl SignedHistogram {
    pub fn record(&mut self, value_us: i64) {
        let magnitude = value_us.unsigned_abs().min(MAX_LATENCY_US);
        let histogram = if value_us < 0 {
            &mut self.negative
        } else {
            &mut self.positive
        };
        record_value(histogram, magnitude);
    }

    pub fn len(&self) -> u64 {
        self.positive.len() + self.negative.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn negative_count(&self) -> u64 {
        self.negative.len()
    }

    /// Returns the value at quantile `q` (0..=1) of all values, negative ones included.
    pub fn value_at_quantile(&self, q: f64) -> Option<i64> {
        let total = self.len();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let negatives = self.negative.len();
        if rank <= negatives {
            // The rank-th smallest signed value is the (negatives - rank + 1)-th
            // smallest magnitude among the negative values.
            let magnitude_rank = negatives - rank + 1;
            let magnitude = self
                .negative
                .value_at_quantile(magnitude_rank as f64 / negatives as f64);
            Some(-(magnitude as i64))
        } else {
            let positives = self.positive.len();
            let value = self
                .positive
                .value_at_quantile((rank - negatives) as f64 / positives as f64);
            Some(value as i64)
        }
    }

    pub fn min(&self) -> Option<i64> {
        self.value_at_quantile(0.0)
    }

    pub fn max(&self) -> Option<i64> {
        self.value_at_quantile(1.0)
    }

    pub fn mean(&self) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let sum = self.positive.mean() * self.positive.len() as f64
            - self.negative.mean() * self.negative.len() as f64;
        Some(sum / self.len() as f64)
    }

    fn merge(&mut self, other: &SignedHistogram) {
        add_histogram(&mut self.positive, &other.positive);
        add_histogram(&mut self.negative, &other.negative);
    }

    fn reset(&mut self) {
        self.positive.reset();
        self.negative.reset();
    }
}

fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from)
        .expect("auto-resizing histograms with equal precision always merge");
}

/// Everything recorded for one endpoint over some span of time. Mergeable:
/// shards, intervals and run totals are all built from it.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    pub outcomes: OutcomeCounts,
    /// Raw client latency of successful requests (see [`Sample::latency_us`]).
    pub client_ok: Histogram<u64>,
    /// Corrected client latency of successful requests (see [`Correction`]);
    /// empty when the run has no correction.
    pub corrected_ok: Histogram<u64>,
    /// Raw client latency of failed requests that were sent, kept apart from `client_ok`.
    pub client_error: Histogram<u64>,
    /// Server-reported time of successful requests.
    pub server_ok: Histogram<u64>,
    /// Server-reported time of failed requests that carried one.
    pub server_error: Histogram<u64>,
    /// Client service time minus server time, successful requests with a server time.
    pub overhead: SignedHistogram,
    /// Responses (ok, HTTP error, application error) that carried no usable server time.
    pub server_time_missing: MissingCounts,
    /// Responses whose body `statusCode` differs from the HTTP status.
    pub status_code_mismatch: u64,
    /// Responses whose `apiCost` span disagrees with its `duration` (see [`ResponseDetails`]).
    pub api_cost_mismatch: u64,
    /// Values above one hour, recorded as one hour.
    pub clamped: u64,
}

impl Default for EndpointStats {
    fn default() -> Self {
        EndpointStats {
            outcomes: OutcomeCounts::default(),
            client_ok: new_histogram(),
            corrected_ok: new_histogram(),
            client_error: new_histogram(),
            server_ok: new_histogram(),
            server_error: new_histogram(),
            overhead: SignedHistogram::default(),
            server_time_missing: MissingCounts::default(),
            status_code_mismatch: 0,
            api_cost_mismatch: 0,
            clamped: 0,
        }
    }
}

impl EndpointStats {
    pub fn record(&mut self, sample: &Sample) {
        self.outcomes.count(sample.outcome);
        if matches!(sample.outcome, Outcome::NotSent(_) | Outcome::Cancelled) {
            // Nothing was measured: a cancelled request has no response to time.
            return;
        }
        let latency = self.clamp(sample.latency_us);
        let attempt = self.clamp(sample.attempt_us);
        let responded = matches!(
            sample.outcome,
            Outcome::Ok | Outcome::HttpError(_) | Outcome::AppError
        );
        let server = match sample.server_time {
            ServerTime::Reported(us) => Some(self.clamp(us)),
            // Only a response can lack a server time; a transport failure has none to lack.
            ServerTime::Missing(reason) => {
                if responded {
                    self.server_time_missing.count(reason);
                }
                None
            }
        };
        self.status_code_mismatch += u64::from(sample.details.status_code_mismatch);
        self.api_cost_mismatch += u64::from(sample.details.api_cost_mismatch);
        if !sample.outcome.is_ok() {
            record_value(&mut self.client_error, latency);
            if let Some(server) = server {
                record_value(&mut self.server_error, server);
            }
            return;
        }
        record_value(&mut self.client_ok, latency);
        match sample.correction {
            Correction::None => {}
            Correction::IntendedStart { latency_us, .. } => {
                let corrected = self.clamp(latency_us);
                record_value(&mut self.corrected_ok, corrected);
            }
            Correction::ExpectedInterval(interval_us) => {
                if self
                    .corrected_ok
                    .record_correct(latency, interval_us)
                    .is_err()
                {
                    record_value(&mut self.corrected_ok, latency);
                }
            }
        }
        if let Some(server) = server {
            record_value(&mut self.server_ok, server);
            self.overhead.record(attempt as i64 - server as i64);
        }
    }

    fn clamp(&mut self, value_us: u64) -> u64 {
        if value_us > MAX_LATENCY_US {
            self.clamped += 1;
            MAX_LATENCY_US
        } else {
            value_us
        }
    }

    pub fn merge(&mut self, other: &EndpointStats) {
        self.outcomes.merge(&other.outcomes);
        add_histogram(&mut self.client_ok, &other.client_ok);
        add_histogram(&mut self.corrected_ok, &other.corrected_ok);
        add_histogram(&mut self.client_error, &other.client_error);
        add_histogram(&mut self.server_ok, &other.server_ok);
        add_histogram(&mut self.server_error, &other.server_error);
        self.overhead.merge(&other.overhead);
        self.server_time_missing.merge(&other.server_time_missing);
        self.status_code_mismatch += other.status_code_mismatch;
        self.api_cost_mismatch += other.api_cost_mismatch;
        self.clamped += other.clamped;
    }

    /// Clears every count but keeps the histograms' memory for reuse.
    pub fn reset(&mut self) {
        self.outcomes = OutcomeCounts::default();
        self.client_ok.reset();
        self.corrected_ok.reset();
        self.client_error.reset();
        self.server_ok.reset();
        self.server_error.reset();
        self.overhead.reset();
        self.server_time_missing = MissingCounts::default();
        self.status_code_mismatch = 0;
        self.api_cost_mismatch = 0;
        self.clamped = 0;
    }
}

/// Login attempts, counted apart from the login endpoint's latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginCounts {
    /// First logins, one per virtual user that got a token.
    pub initial: u64,
    /// Logins because the token was about to expire (from its `exp` claim).
    pub refresh_before_expiry: u64,
    /// Logins because a request came back 401.
    pub after_unauthorized: u64,
    /// Attempts that did not yield a token.
    pub failed: u64,
}

impl LoginCounts {
    pub fn relogins(&self) -> u64 {
        self.refresh_before_expiry + self.after_unauthorized
    }

    pub fn attempts(&self) -> u64 {
        self.initial + self.relogins() + self.failed
    }

    fn merge(&mut self, other: &LoginCounts) {
        self.initial += other.initial;
        self.refresh_before_expiry += other.refresh_before_expiry;
        self.after_unauthorized += other.after_unauthorized;
        self.failed += other.failed;
    }
}

/// Why a virtual user logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReason {
    Initial,
    RefreshBeforeExpiry,
    AfterUnauthorized,
}

/// The stats of every endpoint plus login counts: what one shard, one
/// interval or the whole run holds.
#[derive(Debug, Clone)]
pub struct StatsSet {
    pub endpoints: Vec<EndpointStats>,
    pub logins: LoginCounts,
    /// Open model: actual send minus intended start of every sent request, in microseconds.
    pub schedule_lag: Histogram<u64>,
    /// The tightest server clock estimate seen.
    pub clock_best: Option<ClockSample>,
    pub clock_samples: u64,
}

impl StatsSet {
    pub fn new(endpoint_count: usize) -> Self {
        StatsSet {
            endpoints: (0..endpoint_count)
                .map(|_| EndpointStats::default())
                .collect(),
            logins: LoginCounts::default(),
            schedule_lag: new_histogram(),
            clock_best: None,
            clock_samples: 0,
        }
    }

    pub fn record(&mut self, sample: &Sample) {
        self.endpoints[sample.endpoint].record(sample);
        if let Correction::IntendedStart { lag_us, .. } = sample.correction {
            record_value(&mut self.schedule_lag, lag_us.min(MAX_LATENCY_US));
        }
        if let Some(clock) = sample.details.clock {
            self.clock_samples += 1;
            self.clock_best = Some(self.clock_best.map_or(clock, |best| best.better(clock)));
        }
    }

    pub fn record_login(&mut self, reason: LoginReason, succeeded: bool) {
        match (succeeded, reason) {
            (false, _) => self.logins.failed += 1,
            (true, LoginReason::Initial) => self.logins.initial += 1,
            (true, LoginReason::RefreshBeforeExpiry) => self.logins.refresh_before_expiry += 1,
            (true, LoginReason::AfterUnauthorized) => self.logins.after_unauthorized += 1,
        }
    }

    pub fn merge(&mut self, other: &StatsSet) {
        for (into, from) in self.endpoints.iter_mut().zip(&other.endpoints) {
            into.merge(from);
        }
        self.logins.merge(&other.logins);
        add_histogram(&mut self.schedule_lag, &other.schedule_lag);
        self.clock_samples += other.clock_samples;
        if let Some(clock) = other.clock_best {
            self.clock_best = Some(self.clock_best.map_or(clock, |best| best.better(clock)));
        }
    }

    pub fn reset(&mut self) {
        self.endpoints.iter_mut().for_each(EndpointStats::reset);
        self.logins = LoginCounts::default();
        self.schedule_lag.reset();
        self.clock_best = None;
        self.clock_samples = 0;
    }

    /// Merges every request endpoint into one, for the `all` rows. Logins
    /// are left out: they are counted and timed on their own endpoint.
    pub fn combined_requests(&self) -> EndpointStats {
        let mut all = EndpointStats::default();
        self.combine_requests_into(&mut all);
        all
    }

    /// Merges every request endpoint into `into`, emptied first. Its
    /// histograms keep their allocations, so a caller that repeats this
    /// every interval does not allocate them again.
    pub fn combine_requests_into(&self, into: &mut EndpointStats) {
        into.reset();
        for endpoint in self.endpoints.iter().skip(LOGIN_ENDPOINT + 1) {
            into.merge(endpoint);
        }
    }

    /// Sums the outcome counts of every request endpoint, logins left out.
    pub fn combined_outcomes(&self) -> OutcomeCounts {
        let mut all = OutcomeCounts::default();
        for endpoint in self.endpoints.iter().skip(LOGIN_ENDPOINT + 1) {
            all.merge(&endpoint.outcomes);
        }
        all
    }
}

/// A [`StatsSet`] as written to the run journal: counts as they are,
/// histograms in the HdrHistogram V2 compressed format, base64-encoded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsRecord {
    endpoints: Vec<EndpointRecord>,
    logins: LoginCounts,
    schedule_lag: String,
    clock_best: Option<ClockSample>,
    clock_samples: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EndpointRecord {
    outcomes: OutcomeCounts,
    /// client_ok, corrected_ok, client_error, server_ok, server_error,
    /// overhead (positive), overhead (negative magnitudes).
    histograms: [String; 7],
    server_time_missing: MissingCounts,
    status_code_mismatch: u64,
    api_cost_mismatch: u64,
    clamped: u64,
}

fn encode_histogram(histogram: &Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::Serializer as _;
    let mut bytes = Vec::new();
    hdrhistogram::serialization::V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .expect("serialising into memory does not fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| format!("invalid base64: {error}"))?;
    let mut histogram: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|error| format!("invalid histogram: {error:?}"))?;
    histogram.auto(true);
    Ok(histogram)
}

impl StatsSet {
    pub fn to_record(&self) -> StatsRecord {
        StatsRecord {
            endpoints: self
                .endpoints
                .iter()
                .map(|stats| EndpointRecord {
                    outcomes: stats.outcomes.clone(),
                    histograms: [
                        encode_histogram(&stats.client_ok),
                        encode_histogram(&stats.corrected_ok),
                        encode_histogram(&stats.client_error),
                        encode_histogram(&stats.server_ok),
                        encode_histogram(&stats.server_error),
                        encode_histogram(&stats.overhead.positive),
                        encode_histogram(&stats.overhead.negative),
                    ],
                    server_time_missing: stats.server_time_missing,
                    status_code_mismatch: stats.status_code_mismatch,
                    api_cost_mismatch: stats.api_cost_mismatch,
                    clamped: stats.clamped,
                })
                .collect(),
            logins: self.logins,
            schedule_lag: encode_histogram(&self.schedule_lag),
            clock_best: self.clock_best,
            clock_samples: self.clock_samples,
        }
    }

    /// Rebuilds a set from its journal record; fails on a damaged record.
    pub fn from_record(record: &StatsRecord) -> Result<StatsSet, String> {
        let mut endpoints = Vec::with_capacity(record.endpoints.len());
        for endpoint in &record.endpoints {
            let [client_ok, corrected_ok, client_error, server_ok, server_error, positive, negative] =
                &endpoint.histograms;
            endpoints.push(EndpointStats {
                outcomes: endpoint.outcomes.clone(),
                client_ok: decode_histogram(client_ok)?,
                corrected_ok: decode_histogram(corrected_ok)?,
                client_error: decode_histogram(client_error)?,
                server_ok: decode_histogram(server_ok)?,
                server_error: decode_histogram(server_error)?,
                overhead: SignedHistogram {
                    positive: decode_histogram(positive)?,
                    negative: decode_histogram(negative)?,
                },
                server_time_missing: endpoint.server_time_missing,
                status_code_mismatch: endpoint.status_code_mismatch,
                api_cost_mismatch: endpoint.api_cost_mismatch,
                clamped: endpoint.clamped,
            });
        }
        Ok(StatsSet {
            endpoints,
            logins: record.logins,
            schedule_lag: decode_histogram(&record.schedule_lag)?,
            clock_best: record.clock_best,
            clock_samples: record.clock_samples,
        })
    }
}

/// The sharded recorder that virtual users write into.
pub struct Recorder {
    shards: Vec<Mutex<StatsSet>>,
}

impl Recorder {
    pub fn new(endpoint_count: usize, shard_count: usize) -> Self {
        let shards = (0..shard_count.max(1))
            .map(|_| Mutex::new(StatsSet::new(endpoint_count)))
            .collect();
        Recorder { shards }
    }

    fn shard(&self, user: usize) -> std::sync::MutexGuard<'_, StatsSet> {
        let shard = &self.shards[user % self.shards.len()];
        // A poisoned shard only means a panic elsewhere; its counts are still valid.
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record(&self, user: usize, sample: &Sample) {
        self.shard(user).record(sample);
    }

    pub fn record_login(&self, user: usize, reason: LoginReason, succeeded: bool) {
        self.shard(user).record_login(reason, succeeded);
    }

    /// Moves everything recorded since the last drain into `into` and clears the shards.
    pub fn drain_into(&self, into: &mut StatsSet) {
        for index in 0..self.shards.len() {
            let mut shard = self.shard(index);
            into.merge(&shard);
            shard.reset();
        }
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p99_9_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

pub fn us_to_ms(us: f64) -> f64 {
    us / 1000.0
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let at = |q: f64| Some(us_to_ms(histogram.value_at_quantile(q) as f64));
        Percentiles {
            count: histogram.len(),
            min_ms: Some(us_to_ms(histogram.min() as f64)),
            mean_ms: Some(us_to_ms(histogram.mean())),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p99_9_ms: at(0.999),
            max_ms: Some(us_to_ms(histogram.max() as f64)),
        }
    }

    pub fn of_signed(histogram: &SignedHistogram) -> Self {
        let at = |q: f64| histogram.value_at_quantile(q).map(|us| us_to_ms(us as f64));
        Percentiles {
            count: histogram.len(),
            min_ms: histogram.min().map(|us| us_to_ms(us as f64)),
            mean_ms: histogram.mean().map(us_to_ms),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p99_9_ms: at(0.999),
            max_ms: histogram.max().map(|us| us_to_ms(us as f64)),
        }
    }
}

/// The maximum number of error kinds an [`ErrorLog`] keeps.
pub const MAX_ERROR_KINDS: usize = 20;

/// Requests that got no response (timeouts, connection and transport
/// errors) by endpoint, class and message, so that the reports show why
/// they failed and not only how often. It also counts the requests sent a
/// second time because a kept-alive connection closed under them. Messages
/// come from the HTTP client and name causes, never request or response
/// content.
#[derive(Debug, Default)]
pub struct ErrorLog {
    kinds: Mutex<Vec<ErrorKind>>,
}

/// One kind of error and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorKind {
    pub endpoint: usize,
    pub class: ErrorClass,
    pub message: String,
    pub count: u64,
}

/// The kind of event an [`ErrorLog`] counts for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Timeout,
    ConnectError,
    TransportError,
    /// Not a failure: the connection closed before the response began, and
    /// the request was sent again on a new one. Its outcome is counted as usual.
    Retried,
}

impl ErrorClass {
    /// Returns the class of a request's outcome. Any failure other than a
    /// timeout or a connection error is a transport error.
    pub fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Timeout => ErrorClass::Timeout,
            Outcome::ConnectError => ErrorClass::ConnectError,
            _ => ErrorClass::TransportError,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::ConnectError => "connect_error",
            ErrorClass::TransportError => "transport_error",
            ErrorClass::Retried => "retried",
        }
    }
}

impl ErrorLog {
    /// Counts one error. Returns true when it is the first of its kind and
    /// was kept; after [`MAX_ERROR_KINDS`] kinds, new kinds are not kept.
    pub fn note(&self, endpoint: usize, class: ErrorClass, message: &str) -> bool {
        let mut kinds = self
            .kinds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = kinds.iter_mut().find(|kind| {
            kind.endpoint == endpoint && kind.class == class && kind.message == message
        });
        if let Some(kind) = known {
            kind.count += 1;
            return false;
        }
        if kinds.len() >= MAX_ERROR_KINDS {
            return false;
        }
        kinds.push(ErrorKind {
            endpoint,
            class,
            message: message.to_string(),
            count: 1,
        });
        true
    }

    /// Returns the kinds kept, most frequent first.
    pub fn kinds(&self) -> Vec<ErrorKind> {
        let mut kinds = self
            .kinds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        kinds.sort_by_key(|kind| std::cmp::Reverse(kind.count));
        kinds
    }
}

/// Converts a duration to whole microseconds, saturating.
pub fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(outcome: Outcome, client_us: u64, server: ServerTime) -> Sample {
        Sample {
            endpoint: 0,
            outcome,
            latency_us: client_us,
            attempt_us: client_us,
            correction: Correction::None,
            server_time: server,
            details: ResponseDetails::default(),
        }
    }

    #[test]
    fn error_log_counts_kinds_up_to_its_limit() {
        let log = ErrorLog::default();
        assert!(log.note(1, ErrorClass::TransportError, "reset"));
        assert!(!log.note(1, ErrorClass::TransportError, "reset"));
        assert!(log.note(2, ErrorClass::TransportError, "reset"));
        assert!(log.note(1, ErrorClass::Retried, "reset"));
        assert!(!log.note(1, ErrorClass::TransportError, "reset"));
        let kinds = log.kinds();
        assert_eq!(kinds.len(), 3);
        assert_eq!((kinds[0].endpoint, kinds[0].count), (1, 3));
        assert_eq!((kinds[1].endpoint, kinds[1].count), (2, 1));
        assert_eq!(kinds[2].class, ErrorClass::Retried);
        for index in 3..MAX_ERROR_KINDS {
            assert!(log.note(1, ErrorClass::Timeout, &index.to_string()));
        }
        assert!(!log.note(1, ErrorClass::Timeout, "one kind too many"));
        assert_eq!(log.kinds().len(), MAX_ERROR_KINDS);
    }

    #[test]
    fn errors_stay_out_of_success_histogram() {
        let mut stats = EndpointStats::default();
        stats.record(&sample(Outcome::Ok, 10_000, ServerTime::Reported(8_000)));
        stats.record(&sample(
            Outcome::HttpError(500),
            900_000,
            ServerTime::Reported(850_000),
        ));
        stats.record(&sample(
            Outcome::Timeout,
            1_000_000,
            ServerTime::Missing(MissingReason::Absent),
        ));
        assert_eq!(stats.client_ok.len(), 1);
        assert_eq!(stats.client_ok.max(), 10_007);
        assert_eq!(stats.client_error.len(), 2);
        assert_eq!(stats.server_error.len(), 1);
        assert_eq!(stats.outcomes.total(), 3);
        assert_eq!(stats.outcomes.http_error.get(&500), Some(&1));
    }

    #[test]
    fn not_sent_counts_without_latency() {
        let mut stats = EndpointStats::default();
        stats.record(&sample(
            Outcome::NotSent(NotSentReason::RunStopped),
            0,
            ServerTime::Missing(MissingReason::NoResponse),
        ));
        assert_eq!(stats.outcomes.total(), 1);
        assert_eq!(stats.outcomes.sent(), 0);
        assert!(stats.client_error.is_empty());
        assert_eq!(stats.server_time_missing.total(), 0);
    }

    #[test]
    fn signed_histogram_keeps_negatives() {
        let mut histogram = SignedHistogram::default();
        for value in [-300, -100, 100, 200, 400] {
            histogram.record(value);
        }
        assert_eq!(histogram.negative_count(), 2);
        assert_eq!(histogram.min(), Some(-300));
        assert_eq!(histogram.value_at_quantile(0.4), Some(-100));
        assert_eq!(histogram.value_at_quantile(0.5), Some(100));
        assert_eq!(histogram.max(), Some(400));
        assert_eq!(histogram.mean(), Some(60.0));
    }

    #[test]
    fn recorder_drain_merges_and_clears() {
        let recorder = Recorder::new(2, 3);
        for user in 0..6 {
            let mut s = sample(Outcome::Ok, 1_000, ServerTime::Reported(500));
            s.endpoint = user % 2;
            recorder.record(user, &s);
        }
        recorder.record_login(4, LoginReason::Initial, true);
        let mut into = StatsSet::new(2);
        recorder.drain_into(&mut into);
        assert_eq!(into.endpoints[0].outcomes.ok, 3);
        assert_eq!(into.endpoints[1].outcomes.ok, 3);
        assert_eq!(into.logins.initial, 1);
        let mut again = StatsSet::new(2);
        recorder.drain_into(&mut again);
        assert_eq!(again.endpoints[0].outcomes.total(), 0);
    }

    #[test]
    fn pacing_correction_adds_missed_samples() {
        let mut stats = EndpointStats::default();
        let mut stalled = sample(
            Outcome::Ok,
            1_000_000,
            ServerTime::Missing(MissingReason::Absent),
        );
        stalled.correction = Correction::ExpectedInterval(100_000);
        stats.record(&stalled);
        // One raw sample; the corrected view adds 900, 800, ..., 100 ms.
        assert_eq!(stats.client_ok.len(), 1);
        assert_eq!(stats.corrected_ok.len(), 10);
        assert!(stats.corrected_ok.min() >= 99_000 && stats.corrected_ok.min() <= 100_100);
    }

    #[test]
    fn intended_start_feeds_corrected_view_and_lag() {
        let mut set = StatsSet::new(1);
        let mut late = sample(Outcome::Ok, 2_000, ServerTime::Reported(1_500));
        late.correction = Correction::IntendedStart {
            latency_us: 502_000,
            lag_us: 500_000,
        };
        set.record(&late);
        assert_eq!(set.endpoints[0].client_ok.max(), 2_000);
        assert!(set.endpoints[0].corrected_ok.max() >= 502_000);
        assert_eq!(set.schedule_lag.len(), 1);
        assert!(set.schedule_lag.max() >= 500_000);
    }

    #[test]
    fn journal_record_round_trips() {
        let mut set = StatsSet::new(2);
        let mut ok = sample(Outcome::Ok, 12_345, ServerTime::Reported(10_000));
        ok.endpoint = 1;
        set.record(&ok);
        let mut fast = sample(Outcome::Ok, 900, ServerTime::Reported(1_000));
        fast.endpoint = 1;
        set.record(&fast);
        set.record(&sample(
            Outcome::HttpError(503),
            50_000,
            ServerTime::Missing(MissingReason::Null),
        ));
        set.record_login(LoginReason::Initial, true);
        let json = serde_json::to_string(&set.to_record()).unwrap();
        let back = StatsSet::from_record(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.endpoints[1].outcomes, set.endpoints[1].outcomes);
        assert_eq!(back.endpoints[1].client_ok, set.endpoints[1].client_ok);
        assert_eq!(back.endpoints[1].overhead.negative_count(), 1);
        assert_eq!(back.endpoints[0].client_error.len(), 1);
        assert_eq!(back.endpoints[0].server_time_missing.null, 1);
        assert_eq!(back.logins.initial, 1);
    }

    #[test]
    fn values_above_one_hour_are_clamped() {
        let mut stats = EndpointStats::default();
        stats.record(&sample(
            Outcome::Ok,
            MAX_LATENCY_US * 2,
            ServerTime::Missing(MissingReason::NoResponse),
        ));
        // Both the response time and the service time were above one hour.
        assert_eq!(stats.clamped, 2);
        assert!(stats.client_ok.max() >= MAX_LATENCY_US);
    }
}
