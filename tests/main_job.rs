//! The main job end to end, in-process against the embedded target on a free
//! loopback port: token reuse and refresh, values of the recorded latencies,
//! outcome counts against the target's own counts, and the report files.

mod common;

use std::time::Duration;

use common::*;
use parallax::report::tables::{SUMMARY_HEADER, TIMESERIES_HEADER};
use parallax::report::CHART_FILES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_equal_users_when_tokens_last() {
    let target = start_target(constant_target(1.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(closed(6, 2.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = write_reports(&result, dir.path());

    assert_eq!(summary.logins.counts.initial, 6);
    assert_eq!(summary.logins.relogins, 0);
    assert_eq!(summary.logins.counts.failed, 0);
    assert_eq!(target.stats.responses("POST /api/auth/login", 200), 6);
    assert!(
        endpoint(&summary, "list").ok > 100,
        "{}",
        endpoint(&summary, "list").ok
    );
    assert_accounted(&summary);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_tokens_refresh_before_expiry() {
    // Tokens last 3 s (2 to 3 s of it left, as `exp` is in whole seconds);
    // over 7 s each user logs in about three times, never eating a 401.
    let target = start_target(constant_target(1.0, Duration::from_secs(3))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(closed(4, 7.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = write_reports(&result, dir.path());

    let logins = summary.logins.counts;
    assert_eq!(logins.initial, 4);
    assert_eq!(logins.failed, 0);
    assert!(
        (8..=16).contains(&logins.refresh_before_expiry),
        "refreshes: {}",
        logins.refresh_before_expiry
    );
    assert_eq!(
        target.stats.responses("GET /api/items", 401),
        logins.after_unauthorized
    );
    let list = endpoint(&summary, "list");
    assert_eq!(list.ok, list.requests_intended, "every request succeeded");
    assert_eq!(target.stats.responses("GET /api/items", 200), list.ok);
    assert_accounted(&summary);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_relogs_and_retries_once() {
    // With no early refresh, each expiry costs one 401, one login and one
    // retry; the retried request is counted once, as ok.
    let target = start_target(constant_target(1.0, Duration::from_secs(2))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .login("refresh_before_expiry_s = 0")
        .load(closed(3, 5.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = write_reports(&result, dir.path());

    let logins = summary.logins.counts;
    let unauthorized = target.stats.responses("GET /api/items", 401);
    assert!(
        unauthorized >= 3,
        "each user met at least one expiry, saw {unauthorized}"
    );
    assert_eq!(logins.after_unauthorized, unauthorized);
    assert_eq!(logins.refresh_before_expiry, 0);
    let list = endpoint(&summary, "list");
    assert_eq!(list.ok, list.requests_intended);
    assert_eq!(list.http_errors, 0);
    assert_eq!(target.stats.responses("GET /api/items", 200), list.ok);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_p50_at_least_server_p50() {
    let target = start_target(constant_target(3.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .requests(vec![
            request("list", "GET", "/api/items", 2),
            request("detail", "GET", "/api/items/9", 1),
            "[[request]]\nname = \"create\"\nmethod = \"POST\"\npath = \"/api/items\"\nbody = { name = \"x\" }\n".into(),
        ])
        .load(closed(4, 2.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = write_reports(&result, dir.path());

    for endpoint in &summary.endpoints {
        let client = endpoint.client_ms.p50_ms.unwrap();
        let server = endpoint.server_ms.p50_ms.unwrap();
        assert!(
            client >= server,
            "{}: client p50 {client} < server p50 {server}",
            endpoint.name
        );
        // Logins open the connections, so their overhead includes TCP set-up;
        // requests reuse the connections.
        if endpoint.name == "login" {
            continue;
        }
        let overhead = endpoint.overhead_ms.p50_ms.unwrap();
        assert!(
            overhead > -0.01 && overhead < 5.0,
            "{}: overhead p50 {overhead}",
            endpoint.name
        );
    }
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_match_target_counts() {
    let target = start_target(constant_target(1.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .requests(vec![
            request("list", "GET", "/api/items", 3),
            request("detail", "GET", "/api/items/42", 2),
            request("missing", "GET", "/api/items/99999", 1),
            "[[request]]\nname = \"create\"\nmethod = \"POST\"\npath = \"/api/items\"\nbody = { name = \"x\", price = 2.5 }\n".into(),
            "[[request]]\nname = \"bad create\"\nmethod = \"POST\"\npath = \"/api/items\"\nbody = [1, 2]\n".into(),
        ])
        .load(open(4, 150.0, 2.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = write_reports(&result, dir.path());

    assert_eq!(
        summary.all.requests_intended, 300,
        "every planned arrival, logins left out"
    );
    assert_eq!(
        target.stats.responses("POST /api/auth/login", 200),
        summary.logins.counts.initial
    );
    assert_eq!(
        target.stats.responses("GET /api/items", 200),
        endpoint(&summary, "list").ok
    );
    assert_eq!(
        target.stats.responses("GET /api/items/{id}", 200),
        endpoint(&summary, "detail").ok
    );
    let missing = endpoint(&summary, "missing");
    assert_eq!(missing.ok, 0);
    assert_eq!(
        target.stats.responses("GET /api/items/{id}", 404),
        missing.http_errors_by_status["404"]
    );
    assert_eq!(missing.http_errors, missing.requests_intended);
    assert_eq!(
        target.stats.responses("POST /api/items", 201),
        endpoint(&summary, "create").ok
    );
    assert_eq!(
        target.stats.responses("POST /api/items", 400),
        endpoint(&summary, "bad create").http_errors_by_status["400"]
    );
    // Errors keep their latency apart from the successful requests.
    assert_eq!(missing.error_client_ms.count, missing.http_errors);
    assert_eq!(missing.client_ms.count, 0);
    assert_accounted(&summary);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_parse_with_documented_headers() {
    let target = start_target(constant_target(1.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(closed(2, 2.5))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = write_reports(&result, dir.path());

    let mut reader = csv::Reader::from_path(dir.path().join("summary.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        SUMMARY_HEADER
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), summary.endpoints.len() + 1);
    assert_eq!(&rows[1][0], "list");
    assert_eq!(
        rows[1][5].parse::<u64>().unwrap(),
        endpoint(&summary, "list").ok
    );
    assert_eq!(&rows[2][0], "all");
    let client_p50: f64 = rows[1][15].parse().unwrap();
    assert!((client_p50 - endpoint(&summary, "list").client_ms.p50_ms.unwrap()).abs() < 0.001);

    let mut reader = csv::Reader::from_path(dir.path().join("timeseries.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        TIMESERIES_HEADER
    );
    let list_requests: u64 = reader
        .records()
        .map(Result::unwrap)
        .filter(|row| &row[3] == "list")
        .map(|row| row[4].parse::<u64>().unwrap())
        .sum();
    assert_eq!(list_requests, endpoint(&summary, "list").requests_sent);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["run"]["partial"], false);
    assert_eq!(json["endpoints"][1]["name"], "list");
    assert_eq!(json["endpoints"][1]["ok"], endpoint(&summary, "list").ok);

    for name in CHART_FILES {
        let file = std::fs::File::open(dir.path().join(name)).unwrap();
        let decoder = png::Decoder::new(file);
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (1200, 700), "{name}");
        // Axes, labels and lines draw dark pixels on the white background.
        let dark = pixels
            .chunks(3)
            .filter(|pixel| pixel.iter().all(|&channel| channel < 100))
            .count();
        assert!(dark > 2_000, "{name} has only {dark} dark pixels");
    }
    target.stop().await;
}
