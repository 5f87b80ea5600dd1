//! Reports of a run: `summary.json`, `summary.csv`, `timeseries.csv`, PNG
//! charts and the console summary. Field names carry their unit (`_ms`,
//! `_s`, `_rps`); `docs/reports.md` documents every field.

mod charts;
mod console;
pub mod tables;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::GeneratorReport;
use crate::engine::{EndpointInfo, RunResult};
use crate::load::{ArrivalProcess, LoadModel};
use crate::metrics::{EndpointStats, LoginCounts, MissingCounts, Percentiles, LOGIN_ENDPOINT};
use crate::scenario::Checks;

pub use charts::CHART_FILES;
pub use console::{format_summary, print_summary};

/// Version of the `summary.json` layout; raised on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The content of `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub parallax_version: &'static str,
    pub scenario: ScenarioInfo,
    pub run: RunInfo,
    pub logins: LoginSummary,
    pub generator: GeneratorSummary,
    pub server_clock: ServerClockSummary,
    pub checks: Vec<CheckResult>,
    /// Requests that got no response, and requests sent again after their
    /// connection closed, by endpoint, outcome and message, most frequent
    /// first. Empty in reports rebuilt from a journal.
    pub errors: Vec<ErrorSummary>,
    /// Every request endpoint merged; logins are left out.
    pub all: EndpointSummary,
    /// Login first, then the scenario's requests in their order.
    pub endpoints: Vec<EndpointSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    pub target_base_url: String,
    pub load_model: &'static str,
    pub users: usize,
    pub planned_duration_s: f64,
    pub pacing_ms: Option<f64>,
    /// Open model: the most users the pool may grow to.
    pub max_users: Option<usize>,
    /// Open model: "uniform" or "poisson".
    pub arrivals: Option<&'static str>,
    /// How the corrected latency is obtained, or why there is none.
    pub correction: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub started_at_utc: String,
    pub finished_at_utc: String,
    /// From the start of the run to the last outcome, logins included.
    pub elapsed_s: f64,
    /// From the start of the load (after every user logged in) to the last outcome.
    pub load_elapsed_s: f64,
    pub partial: bool,
    pub partial_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginSummary {
    #[serde(flatten)]
    pub counts: LoginCounts,
    pub relogins: u64,
}

/// How well the load generator kept to the plan.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorSummary {
    pub target_rate_rps: Option<f64>,
    pub achieved_rate_rps: f64,
    /// Achieved minus target, as a share of the target.
    pub rate_error_percent: Option<f64>,
    pub planned_requests: Option<u64>,
    pub arrivals_without_free_user: u64,
    pub users_started: usize,
    /// Open model: actual send minus intended start.
    pub schedule_lag_ms: Percentiles,
    pub warnings: Vec<String>,
}

impl GeneratorSummary {
    fn new(report: &GeneratorReport) -> Self {
        GeneratorSummary {
            target_rate_rps: report.target_rate_per_s,
            achieved_rate_rps: report.achieved_rate_per_s,
            rate_error_percent: report
                .target_rate_per_s
                .map(|target| (report.achieved_rate_per_s / target - 1.0) * 100.0),
            planned_requests: report.planned_requests,
            arrivals_without_free_user: report.arrivals_without_free_user,
            users_started: report.users_started,
            schedule_lag_ms: report.schedule_lag,
            warnings: report.warnings.clone(),
        }
    }
}

/// The server clock against the client's wall clock, estimated from
/// `apiCost.start` and `finish` by the midpoint method.
#[derive(Debug, Clone, Serialize)]
pub struct ServerClockSummary {
    /// Responses that carried both timestamps.
    pub samples: u64,
    /// Server minus client clock, from the estimate with the smallest error bound.
    pub offset_ms: Option<f64>,
    /// The true offset lies within this distance of `offset_ms`.
    pub error_bound_ms: Option<f64>,
    /// The best estimates of the first and last interval that had one.
    pub first_offset_ms: Option<f64>,
    pub last_offset_ms: Option<f64>,
    /// Least-squares slope of the per-interval best estimates.
    pub drift_ms_per_minute: Option<f64>,
    /// The zone `apiCost` timestamps were read in: a configured offset or the client's local zone.
    pub assumed_zone: String,
}

impl ServerClockSummary {
    fn new(result: &RunResult) -> Self {
        let ms = |us: i64| us as f64 / 1000.0;
        let best = result.totals.clock_best;
        let points: Vec<(f64, f64)> = result
            .intervals
            .iter()
            .filter_map(|interval| {
                interval.clock.map(|clock| {
                    (
                        (interval.start_s + interval.end_s) / 2.0,
                        ms(clock.offset_us),
                    )
                })
            })
            .collect();
        let assumed_zone = match result.plan.server_clock_utc_offset {
            Some(offset) => format!("UTC{offset}"),
            None => format!("client local zone (UTC{})", chrono::Local::now().offset()),
        };
        ServerClockSummary {
            samples: result.totals.clock_samples,
            offset_ms: best.map(|clock| ms(clock.offset_us)),
            error_bound_ms: best.map(|clock| clock.bound_us as f64 / 1000.0),
            first_offset_ms: points.first().map(|point| point.1),
            last_offset_ms: points.last().map(|point| point.1),
            drift_ms_per_minute: slope(&points).map(|per_second| per_second * 60.0),
            assumed_zone,
        }
    }
}

/// Least-squares slope of `(x, y)` points; `None` below two distinct x values.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|point| point.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|point| point.1).sum::<f64>() / n;
    let spread: f64 = points.iter().map(|point| (point.0 - mean_x).powi(2)).sum();
    if spread == 0.0 {
        return None;
    }
    let covariance: f64 = points
        .iter()
        .map(|point| (point.0 - mean_x) * (point.1 - mean_y))
        .sum();
    Some(covariance / spread)
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub limit: f64,
    pub value: Option<f64>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointSummary {
    pub name: String,
    pub method: String,
    pub path: String,
    /// Every intended request: the sum of all outcome counts below.
    pub requests_intended: u64,
    pub requests_sent: u64,
    pub ok: u64,
    pub http_errors: u64,
    pub http_errors_by_status: BTreeMap<String, u64>,
    pub app_errors: u64,
    pub timeouts: u64,
    pub connect_errors: u64,
    pub transport_errors: u64,
    pub cancelled: u64,
    pub not_sent_run_stopped: u64,
    pub not_sent_login_failed: u64,
    pub not_sent_no_free_user: u64,
    /// Failed requests as a share of sent requests.
    pub error_percent: f64,
    /// Sent requests per second: over the load for requests, over the whole run for logins.
    pub achieved_rps: f64,
    /// Raw client latency of successful requests, from the actual send.
    pub client_ms: Percentiles,
    /// Corrected client latency of successful requests (see
    /// `scenario.correction`); null when the run has no correction.
    pub client_corrected_ms: Option<Percentiles>,
    /// Server-reported time of successful requests, from the configured source.
    pub server_ms: Percentiles,
    /// Client service time minus server time, per successful request; can be negative.
    pub overhead_ms: Percentiles,
    pub overhead_negative_count: u64,
    /// Client latency of failed requests, never mixed into `client_ms`.
    pub error_client_ms: Percentiles,
    /// Server-reported time of failed requests that carried one.
    pub error_server_ms: Percentiles,
    /// Responses without a usable server time, in all.
    pub server_time_missing: u64,
    /// The same, by reason.
    pub server_time_missing_by_reason: MissingCounts,
    /// Responses whose body `statusCode` differs from the HTTP status.
    pub status_code_mismatch: u64,
    /// Responses whose `apiCost.finish - start` differs from `duration` by more than 2 ms.
    pub api_cost_mismatch: u64,
    /// Latency values above one hour, recorded as one hour.
    pub clamped_values: u64,
}

impl EndpointSummary {
    fn new(info: &EndpointInfo, stats: &EndpointStats, elapsed_s: f64, corrected: bool) -> Self {
        let outcomes = &stats.outcomes;
        let sent = outcomes.sent();
        EndpointSummary {
            name: info.name.clone(),
            method: info.method.clone(),
            path: info.path.clone(),
            requests_intended: outcomes.total(),
            requests_sent: sent,
            ok: outcomes.ok,
            http_errors: outcomes.http_errors(),
            http_errors_by_status: outcomes
                .http_error
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            app_errors: outcomes.app_error,
            timeouts: outcomes.timeout,
            connect_errors: outcomes.connect_error,
            transport_errors: outcomes.transport_error,
            cancelled: outcomes.cancelled,
            not_sent_run_stopped: outcomes.not_sent_run_stopped,
            not_sent_login_failed: outcomes.not_sent_login_failed,
            not_sent_no_free_user: outcomes.not_sent_no_free_user,
            error_percent: if sent == 0 {
                0.0
            } else {
                outcomes.errors() as f64 * 100.0 / sent as f64
            },
            achieved_rps: if elapsed_s > 0.0 {
                sent as f64 / elapsed_s
            } else {
                0.0
            },
            client_ms: Percentiles::of(&stats.client_ok),
            client_corrected_ms: corrected.then(|| Percentiles::of(&stats.corrected_ok)),
            server_ms: Percentiles::of(&stats.server_ok),
            overhead_ms: Percentiles::of_signed(&stats.overhead),
            overhead_negative_count: stats.overhead.negative_count(),
            error_client_ms: Percentiles::of(&stats.client_error),
            error_server_ms: Percentiles::of(&stats.server_error),
            server_time_missing: stats.server_time_missing.total(),
            server_time_missing_by_reason: stats.server_time_missing,
            status_code_mismatch: stats.status_code_mismatch,
            api_cost_mismatch: stats.api_cost_mismatch,
            clamped_values: stats.clamped,
        }
    }
}

impl Summary {
    pub fn new(result: &RunResult) -> Self {
        let plan = &result.plan;
        let elapsed_s = result.elapsed.as_secs_f64();
        let load_elapsed_s = result.load_elapsed.as_secs_f64();
        let corrected = plan.load.has_correction();
        let all_info = EndpointInfo {
            name: "all".into(),
            method: "*".into(),
            path: "*".into(),
        };
        let endpoints = result
            .endpoints
            .iter()
            .zip(&result.totals.endpoints)
            .enumerate()
            .map(|(index, (info, stats))| {
                // Logins run before the load too; requests only during it.
                let window_s = if index == LOGIN_ENDPOINT {
                    elapsed_s
                } else {
                    load_elapsed_s
                };
                EndpointSummary::new(info, stats, window_s, corrected)
            })
            .collect();
        let all = EndpointSummary::new(
            &all_info,
            &result.totals.combined_requests(),
            load_elapsed_s,
            corrected,
        );
        let finished_at =
            result.started_at + chrono::Duration::from_std(result.elapsed).unwrap_or_default();
        let (pacing_ms, max_users, arrivals) = match &plan.load {
            LoadModel::Closed(model) => (
                model.pacing.map(|pacing| pacing.as_secs_f64() * 1000.0),
                None,
                None,
            ),
            LoadModel::Open(model) => {
                let arrivals = match model.process {
                    ArrivalProcess::Uniform => "uniform",
                    ArrivalProcess::Poisson { .. } => "poisson",
                };
                (None, Some(model.max_users), Some(arrivals))
            }
        };
        Summary {
            schema_version: SCHEMA_VERSION,
            parallax_version: env!("CARGO_PKG_VERSION"),
            scenario: ScenarioInfo {
                name: plan.name.clone(),
                file: plan.source.display().to_string(),
                target_base_url: result.base_url.clone(),
                load_model: plan.load.name(),
                users: plan.load.users(),
                planned_duration_s: plan.load.duration().as_secs_f64(),
                pacing_ms,
                max_users,
                arrivals,
                correction: plan.load.correction(),
            },
            run: RunInfo {
                started_at_utc: result
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                finished_at_utc: finished_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                elapsed_s,
                load_elapsed_s,
                partial: result.is_partial(),
                partial_reason: result.partial_reason.clone(),
            },
            logins: LoginSummary {
                counts: result.totals.logins,
                relogins: result.totals.logins.relogins(),
            },
            generator: GeneratorSummary::new(&result.generator),
            server_clock: ServerClockSummary::new(result),
            checks: evaluate_checks(&plan.checks, &all),
            errors: result
                .errors
                .iter()
                .map(|kind| ErrorSummary {
                    endpoint: result.endpoints[kind.endpoint].name.clone(),
                    outcome: kind.class.name(),
                    message: kind.message.clone(),
                    count: kind.count,
                })
                .collect(),
            all,
            endpoints,
        }
    }

    /// True when every configured check passed.
    pub fn checks_passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }
}

/// One kind of request that got no response.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorSummary {
    pub endpoint: String,
    /// `timeout`, `connect_error` or `transport_error`; or `retried` for
    /// requests sent again after their connection closed, whose outcome is
    /// counted as usual.
    pub outcome: &'static str,
    pub message: String,
    pub count: u64,
}

fn evaluate_checks(checks: &Checks, all: &EndpointSummary) -> Vec<CheckResult> {
    let mut results = Vec::new();
    if let Some(limit) = checks.max_error_percent {
        let value = all.error_percent;
        results.push(CheckResult {
            name: "max_error_percent",
            limit,
            value: Some(value),
            passed: value <= limit,
        });
    }
    if let Some(limit) = checks.max_client_p99_ms {
        let value = all.client_ms.p99_ms;
        // No successful request means no latency to vouch for: the check fails.
        let passed = value.is_some_and(|p99| p99 <= limit);
        results.push(CheckResult {
            name: "max_client_p99_ms",
            limit,
            value,
            passed,
        });
    }
    results
}

/// The report folder for a run: `DIR/<scenario>-<UTC timestamp>`.
pub fn default_report_dir(
    base: &Path,
    scenario: &str,
    started_at: chrono::DateTime<chrono::Utc>,
) -> PathBuf {
    base.join(format!(
        "{scenario}-{}",
        started_at.format("%Y%m%dT%H%M%SZ")
    ))
}

/// Writes every report file into `dir`, creating it. Each file is written
/// to a temporary name and renamed, so no half-written file is left behind.
pub fn write_all(
    result: &RunResult,
    summary: &Summary,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context as _;

    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report folder {}", dir.display()))?;
    let mut written = Vec::new();

    let json = serde_json::to_vec_pretty(summary).expect("the summary serialises");
    written.push(write_atomic(&dir.join("summary.json"), &json)?);
    written.push(write_atomic(
        &dir.join("summary.csv"),
        &tables::summary_csv(summary)?,
    )?);
    written.push(write_atomic(
        &dir.join("timeseries.csv"),
        &tables::timeseries_csv(result)?,
    )?);
    for (name, png) in charts::render_all(result, summary)? {
        written.push(write_atomic(&dir.join(name), &png)?);
    }
    Ok(written)
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;

    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("report");
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot flush {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| {
        format!(
            "cannot rename {} to {}",
            temporary.display(),
            path.display()
        )
    })?;
    Ok(path.to_path_buf())
}
