//! The summary table printed at the end of a run.

use std::fmt::Write as _;
use std::path::Path;

use crate::metrics::{ErrorClass, Percentiles};

use super::{EndpointSummary, Summary};

fn pair(percentiles: &Percentiles) -> String {
    match (percentiles.p50_ms, percentiles.p99_ms) {
        (Some(p50), Some(p99)) => format!("{p50:.2} / {p99:.2}"),
        _ => "-".to_string(),
    }
}

/// One table row; the corrected column is present only when the run has one.
fn row(endpoint: &EndpointSummary) -> Vec<String> {
    let mut cells = vec![
        endpoint.name.clone(),
        endpoint.requests_intended.to_string(),
        endpoint.ok.to_string(),
        (endpoint.requests_intended - endpoint.ok).to_string(),
        format!("{:.1}", endpoint.achieved_rps),
        pair(&endpoint.client_ms),
    ];
    if let Some(corrected) = &endpoint.client_corrected_ms {
        cells.push(pair(corrected));
    }
    cells.push(pair(&endpoint.server_ms));
    cells.push(pair(&endpoint.overhead_ms));
    cells
}

fn table(summary: &Summary) -> String {
    let mut header = vec![
        "endpoint",
        "requests",
        "ok",
        "not ok",
        "req/s",
        "client raw p50/p99 ms",
    ];
    if summary.all.client_corrected_ms.is_some() {
        header.push("corrected p50/p99 ms");
    }
    header.extend(["server p50/p99 ms", "overhead p50/p99 ms"]);
    let header: Vec<String> = header.into_iter().map(String::from).collect();
    let mut rows: Vec<Vec<String>> = summary.endpoints.iter().map(row).collect();
    rows.push(row(&summary.all));
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .chain([&header])
                .map(|row| row[column].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for cells in std::iter::once(&header).chain(&rows) {
        for (column, cell) in cells.iter().enumerate() {
            let width = widths[column];
            if column == 0 {
                let _ = write!(out, "{cell:<width$}");
            } else {
                let _ = write!(out, "  {cell:>width$}");
            }
        }
        out.push('\n');
    }
    out
}

/// The "not ok" line: every outcome other than ok, by kind.
fn failures(all: &EndpointSummary) -> Option<String> {
    let kinds = [
        ("HTTP errors", all.http_errors),
        ("application errors (success: false)", all.app_errors),
        ("timeouts", all.timeouts),
        ("connect errors", all.connect_errors),
        ("transport errors", all.transport_errors),
        ("cancelled", all.cancelled),
        ("not sent (run stopped)", all.not_sent_run_stopped),
        ("not sent (login failed)", all.not_sent_login_failed),
        ("not sent (no free user)", all.not_sent_no_free_user),
    ];
    let listed: Vec<String> = kinds
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(label, count)| format!("{count} {label}"))
        .collect();
    if listed.is_empty() {
        return None;
    }
    let mut line = format!("not ok: {}", listed.join(", "));
    let statuses: Vec<String> = all
        .http_errors_by_status
        .iter()
        .map(|(status, count)| format!("{status}×{count}"))
        .collect();
    if !statuses.is_empty() {
        let _ = write!(line, " (HTTP {})", statuses.join(", "));
    }
    Some(line)
}

/// The line listing responses without a usable server time, by reason.
fn missing_server_time(all: &EndpointSummary) -> Option<String> {
    let reasons = &all.server_time_missing_by_reason;
    let kinds = [
        ("body not JSON", reasons.not_json),
        ("field absent", reasons.absent),
        ("null", reasons.null),
        ("not a number", reasons.not_a_number),
        ("negative", reasons.negative),
        ("above one hour", reasons.too_large),
        ("header absent", reasons.no_header),
    ];
    let listed: Vec<String> = kinds
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(label, count)| format!("{count} {label}"))
        .collect();
    (!listed.is_empty()).then(|| {
        format!(
            "responses without a usable server time: {} ({})",
            all.server_time_missing,
            listed.join(", ")
        )
    })
}

/// Formats the summary as text: header lines, the table, logins, generator, checks.
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
    let _ = writeln!(out, "correction: {}", scenario.correction);
    if let Some(reason) = &run.partial_reason {
        let _ = writeln!(out, "PARTIAL RUN: {reason}");
    }
    out.push('\n');
    out.push_str(&table(summary));

    if let Some(line) = failures(&summary.all) {
        let _ = writeln!(out, "\n{line}");
    }
    let (retried, failed): (Vec<_>, Vec<_>) = summary
        .errors
        .iter()
        .partition(|error| error.outcome == ErrorClass::Retried.name());
    for error in failed.iter().take(5) {
        let _ = writeln!(
            out,
            "  {} × {} {}: {}",
            error.count, error.endpoint, error.outcome, error.message
        );
    }
    if failed.len() > 5 {
        let _ = writeln!(
            out,
            "  … {} more kinds of error in summary.json",
            failed.len() - 5
        );
    }
    let retried_count: u64 = retried.iter().map(|error| error.count).sum();
    if retried_count > 0 {
        let _ = writeln!(
            out,
            "requests sent again after their kept-alive connection closed (not failures): {retried_count}"
        );
    }
    if let Some(line) = missing_server_time(&summary.all) {
        let _ = writeln!(out, "{line}");
    }
    if summary.all.status_code_mismatch > 0 {
        let _ = writeln!(
            out,
            "responses whose body statusCode differs from the HTTP status: {}",
            summary.all.status_code_mismatch
        );
    }
    if summary.all.api_cost_mismatch > 0 {
        let _ = writeln!(
            out,
            "responses whose apiCost finish - start differs from duration by more than 2 ms: {}",
            summary.all.api_cost_mismatch
        );
    }
    let clock = &summary.server_clock;
    if let (Some(offset), Some(bound)) = (clock.offset_ms, clock.error_bound_ms) {
        let _ = write!(
            out,
            "server clock: {offset:+.1} ms from the client's (± {bound:.1} ms, {})",
            clock.assumed_zone
        );
        if let Some(drift) = clock.drift_ms_per_minute {
            let _ = write!(out, ", drift {drift:+.2} ms/min");
        }
        out.push('\n');
    }
    let logins = &summary.logins.counts;
    let _ = writeln!(
        out,
        "\nlogins: {} initial, {} refreshed before expiry, {} after a 401, {} failed",
        logins.initial, logins.refresh_before_expiry, logins.after_unauthorized, logins.failed
    );
    let generator = &summary.generator;
    if let Some(target) = generator.target_rate_rps {
        let _ = write!(
            out,
            "generator: {:.2} req/s achieved of {target:.2} planned",
            generator.achieved_rate_rps
        );
        if let (Some(p50), Some(p99)) = (
            generator.schedule_lag_ms.p50_ms,
            generator.schedule_lag_ms.p99_ms,
        ) {
            let _ = write!(out, ", schedule lag p50 {p50:.3} ms, p99 {p99:.3} ms");
        }
        out.push('\n');
    }
    for warning in &generator.warnings {
        let _ = writeln!(out, "WARNING: {warning}");
    }
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
