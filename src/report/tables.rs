//! `summary.csv` and `timeseries.csv`.

use crate::engine::{IntervalRow, IntervalSnapshot, RunResult};
use crate::metrics::Percentiles;

use super::{EndpointSummary, Summary};

/// Header of `summary.csv`, one row per endpoint and a last row `all`.
pub const SUMMARY_HEADER: &[&str] = &[
    "endpoint",
    "method",
    "path",
    "requests_intended",
    "requests_sent",
    "ok",
    "http_errors",
    "app_errors",
    "timeouts",
    "connect_errors",
    "transport_errors",
    "cancelled",
    "not_sent",
    "error_percent",
    "achieved_rps",
    "client_p50_ms",
    "client_p90_ms",
    "client_p99_ms",
    "client_p99_9_ms",
    "client_max_ms",
    "corrected_p50_ms",
    "corrected_p90_ms",
    "corrected_p99_ms",
    "corrected_p99_9_ms",
    "corrected_max_ms",
    "server_p50_ms",
    "server_p90_ms",
    "server_p99_ms",
    "server_p99_9_ms",
    "server_max_ms",
    "overhead_p50_ms",
    "overhead_p90_ms",
    "overhead_p99_ms",
    "overhead_p99_9_ms",
    "overhead_max_ms",
    "overhead_negative_count",
    "server_time_missing",
    "http_error_statuses",
    "run_partial",
];

/// Header of `timeseries.csv`, one row per interval and endpoint, plus `all`.
pub const TIMESERIES_HEADER: &[&str] = &[
    "start_s",
    "end_s",
    "phase",
    "endpoint",
    "requests",
    "ok",
    "errors",
    "not_sent",
    "requests_per_s",
    "client_p50_ms",
    "client_p99_ms",
    "corrected_p50_ms",
    "corrected_p99_ms",
    "server_p50_ms",
    "server_p99_ms",
    "overhead_p50_ms",
    "overhead_p99_ms",
];

/// Formats an optional value in milliseconds; empty when there is no sample.
fn ms(value: Option<f64>) -> String {
    value.map_or_else(String::new, |ms| format!("{ms:.3}"))
}

fn percentile_fields(percentiles: &Percentiles) -> [String; 5] {
    [
        ms(percentiles.p50_ms),
        ms(percentiles.p90_ms),
        ms(percentiles.p99_ms),
        ms(percentiles.p99_9_ms),
        ms(percentiles.max_ms),
    ]
}

fn summary_row(endpoint: &EndpointSummary, partial: bool) -> Vec<String> {
    let mut row = vec![
        endpoint.name.clone(),
        endpoint.method.clone(),
        endpoint.path.clone(),
        endpoint.requests_intended.to_string(),
        endpoint.requests_sent.to_string(),
        endpoint.ok.to_string(),
        endpoint.http_errors.to_string(),
        endpoint.app_errors.to_string(),
        endpoint.timeouts.to_string(),
        endpoint.connect_errors.to_string(),
        endpoint.transport_errors.to_string(),
        endpoint.cancelled.to_string(),
        (endpoint.not_sent_run_stopped
            + endpoint.not_sent_login_failed
            + endpoint.not_sent_no_free_user)
            .to_string(),
        format!("{:.3}", endpoint.error_percent),
        format!("{:.3}", endpoint.achieved_rps),
    ];
    row.extend(percentile_fields(&endpoint.client_ms));
    row.extend(percentile_fields(
        &endpoint.client_corrected_ms.unwrap_or_default(),
    ));
    row.extend(percentile_fields(&endpoint.server_ms));
    row.extend(percentile_fields(&endpoint.overhead_ms));
    row.push(endpoint.overhead_negative_count.to_string());
    row.push(endpoint.server_time_missing.to_string());
    let statuses: Vec<String> = endpoint
        .http_errors_by_status
        .iter()
        .map(|(status, count)| format!("{status}:{count}"))
        .collect();
    row.push(statuses.join(" "));
    row.push(partial.to_string());
    row
}

pub fn summary_csv(summary: &Summary) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(SUMMARY_HEADER)?;
    for endpoint in summary
        .endpoints
        .iter()
        .chain(std::iter::once(&summary.all))
    {
        writer.write_record(summary_row(endpoint, summary.run.partial))?;
    }
    Ok(writer.into_inner()?)
}

fn timeseries_row(snapshot: &IntervalSnapshot, endpoint: &str, row: &IntervalRow) -> Vec<String> {
    let length_s = snapshot.end_s - snapshot.start_s;
    let rate = if length_s > 0.0 {
        row.requests as f64 / length_s
    } else {
        0.0
    };
    vec![
        format!("{:.3}", snapshot.start_s),
        format!("{:.3}", snapshot.end_s),
        snapshot.phase.name().to_string(),
        endpoint.to_string(),
        row.requests.to_string(),
        row.ok.to_string(),
        row.errors.to_string(),
        row.not_sent.to_string(),
        format!("{rate:.3}"),
        ms(row.client.p50_ms),
        ms(row.client.p99_ms),
        ms(row.corrected.p50_ms),
        ms(row.corrected.p99_ms),
        ms(row.server.p50_ms),
        ms(row.server.p99_ms),
        ms(row.overhead.p50_ms),
        ms(row.overhead.p99_ms),
    ]
}

pub fn timeseries_csv(result: &RunResult) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(TIMESERIES_HEADER)?;
    for snapshot in &result.intervals {
        for (info, row) in result.endpoints.iter().zip(&snapshot.endpoints) {
            writer.write_record(timeseries_row(snapshot, &info.name, row))?;
        }
        writer.write_record(timeseries_row(snapshot, "all", &snapshot.all))?;
    }
    Ok(writer.into_inner()?)
}
