//! The summary table printed at the end of a run.

use std::fmt::Write as _;
use std::path::Path;

use crate::metrics::Percentiles;

use super::{EndpointSummary, Summary};

fn pair(percentiles: &Percentiles) -> String {
    match (percentiles.p50_ms, percentiles.p99_ms) {
        (Some(p50), Some(p99)) => format!("{p50:.2} / {p99:.2}"),
        _ => "-".to_string(),
    }
}

fn row(endpoint: &EndpointSummary) -> [String; 8] {
    [
        endpoint.name.clone(),
        endpoint.requests_intended.to_string(),
        endpoint.ok.to_string(),
        (endpoint.requests_intended - endpoint.ok).to_string(),
        format!("{:.1}", endpoint.achieved_rps),
        pair(&endpoint.client_ms),
        pair(&endpoint.server_ms),
        pair(&endpoint.overhead_ms),
    ]
}

/// Formats the summary as text: header lines, the table, logins, checks.
pub fn format_summary(summary: &Summary, report_dir: Option<&Path>) -> String {
    let mut out = String::new();
    let scenario = &summary.scenario;
    let run = &summary.run;
    let _ = writeln!(
        out,
        "\nparallax {} · {} · {} model, {} users · {:.1} s · {}",
        summary.parallax_version,
        scenario.name,
        scenario.load_model,
        scenario.users,
        run.elapsed_s,
        scenario.target_base_url
    );
    let _ = writeln!(
        out,
        "client latency measured from the {}",
        scenario.latency_measured_from
    );
    if let Some(reason) = &run.partial_reason {
        let _ = writeln!(out, "PARTIAL RUN: {reason}");
    }
    let header = [
        "endpoint",
        "requests",
        "ok",
        "not ok",
        "req/s",
        "client p50/p99 ms",
        "server p50/p99 ms",
        "overhead p50/p99 ms",
    ];
    let mut rows: Vec<[String; 8]> = summary.endpoints.iter().map(row).collect();
    rows.push(row(&summary.all));
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].len())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (column, cell) in cells.iter().enumerate() {
            if column == 0 {
                let _ = write!(text, "{cell:<width$}", width = widths[column]);
            } else {
                let _ = write!(text, "  {cell:>width$}", width = widths[column]);
            }
        }
        text
    };
    out.push('\n');
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    for cells in &rows {
        let _ = writeln!(out, "{}", line(cells));
    }

    let all = &summary.all;
    let failures = [
        ("HTTP errors", all.http_errors),
        ("application errors (success: false)", all.app_errors),
        ("timeouts", all.timeouts),
        ("connect errors", all.connect_errors),
        ("transport errors", all.transport_errors),
        ("cancelled", all.cancelled),
        ("not sent (run stopped)", all.not_sent_run_stopped),
        ("not sent (login failed)", all.not_sent_login_failed),
    ];
    let listed: Vec<String> = failures
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(label, count)| format!("{count} {label}"))
        .collect();
    if !listed.is_empty() {
        let statuses: Vec<String> = all
            .http_errors_by_status
            .iter()
            .map(|(status, count)| format!("{status}×{count}"))
            .collect();
        let _ = write!(out, "\nnot ok: {}", listed.join(", "));
        if !statuses.is_empty() {
            let _ = write!(out, " (HTTP {})", statuses.join(", "));
        }
        out.push('\n');
    }
    if all.server_time_missing > 0 {
        let _ = writeln!(
            out,
            "responses without a usable apiCost.duration: {}",
            all.server_time_missing
        );
    }
    let logins = &summary.logins;
    let _ = writeln!(
        out,
        "\nlogins: {} initial, {} refreshed before expiry, {} after a 401, {} failed",
        logins.counts.initial,
        logins.counts.refresh_before_expiry,
        logins.counts.after_unauthorized,
        logins.counts.failed
    );
    for check in &summary.checks {
        let value = check
            .value
            .map_or("no value".to_string(), |value| format!("{value:.3}"));
        let verdict = if check.passed { "passed" } else { "FAILED" };
        let _ = writeln!(
            out,
            "check {}: {value} against limit {} — {verdict}",
            check.name, check.limit
        );
    }
    if let Some(dir) = report_dir {
        let _ = writeln!(out, "report: {}", dir.display());
    }
    out
}

/// Prints the summary to stdout.
pub fn print_summary(summary: &Summary, report_dir: Option<&Path>) {
    print!("{}", format_summary(summary, report_dir));
}
