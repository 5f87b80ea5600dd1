//! Fault injection: parallax against an embedded target that misbehaves on
//! purpose, on a free loopback port. Each test compares parallax's outcome
//! counts with the faults the target counted, and checks that every intended
//! request has exactly one outcome. Per-request faults hit every Nth request
//! of a route, so the expected counts are exact; timing checks are bounds.

mod common;

use std::time::Duration;

use common::*;
use parallax::engine::{self, RunOptions, RunResult};
use parallax::report::Summary;
use parallax::scenario::TargetPlan;
use parallax::target::{
    self, AppErrorFault, Delay, DemoTarget, DropMidBody, DurationFormat, Every, Fault, Faults,
    HttpErrorFault, LargeBody, Redirect, RejectLogins, Stall, TokenEpoch, CREATE_ROUTE,
    DETAIL_ROUTE, LIST_ROUTE, LOGIN_ROUTE,
};

/// Builds a target configuration with a constant `service_ms` on every
/// endpoint and these faults.
fn faulty(service_ms: f64, faults: Faults) -> target::Config {
    let mut config = constant_target(service_ms, Duration::from_secs(300));
    config.faults = faults;
    config
}

/// Runs `scenario` against `target` and returns the result and its summary,
/// after checking that every intended request has exactly one outcome.
async fn run(target: &DemoTarget, scenario: ScenarioBuilder) -> (RunResult, Summary) {
    let dir = tempfile::tempdir().unwrap();
    let plan = scenario.plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);
    assert_accounted(&summary);
    (result, summary)
}

fn timeout_s(seconds: f64) -> String {
    format!("[timeouts]\nrequest_s = {seconds}\n")
}

fn status_count(endpoint: &parallax::report::EndpointSummary, status: &str) -> u64 {
    endpoint
        .http_errors_by_status
        .get(status)
        .copied()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Stalls and slow responses.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_stalls_past_timeout_are_timeouts() {
    // 50 req/s for 3 s is 150 arrivals; requests 10, 20, …, 150 stall for 5 s
    // against a 1 s timeout.
    let faults = Faults {
        slow_service: Some(Delay {
            every: 10,
            duration_ms: 5_000.0,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let scenario = ScenarioBuilder::new()
        .load(open(20, 50.0, 3.0))
        .extra(&timeout_s(1.0));
    let (_, summary) = run(&target, scenario).await;

    let list = endpoint(&summary, "list");
    assert_eq!(list.requests_intended, 150);
    // An arrival still queued when the schedule ends is not sent (run
    // stopped). On a busy machine the last one, due 10 ms before the end,
    // can miss it, so the expected counts follow the requests sent.
    assert!(list.requests_sent >= 148, "{list:?}");
    let stalled = target.stats.injected(Fault::SlowService);
    assert_eq!(stalled, list.requests_sent / 10, "{list:?}");
    assert_eq!(list.timeouts, stalled, "{list:?}");
    assert_eq!(list.ok, list.requests_sent - stalled, "{list:?}");
    // A timeout's latency is the time waited: the 1 s timeout, not the 5 s stall.
    let waited = &list.error_client_ms;
    assert_eq!(waited.count, stalled);
    // Histograms keep three significant digits: 1000 ms reads as 999.x ms.
    assert!(waited.min_ms.unwrap() >= 999.0, "{waited:?}");
    assert!(waited.max_ms.unwrap() < 1_250.0, "{waited:?}");
    // None of them is in the success histograms.
    assert_eq!(list.client_ms.count, list.ok);
    assert!(list.client_ms.max_ms.unwrap() < 1_000.0);
    let corrected = list.client_corrected_ms.as_ref().unwrap();
    assert_eq!(corrected.count, list.ok);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_stalls_past_timeout_are_timeouts() {
    let faults = Faults {
        slow_service: Some(Delay {
            every: 10,
            duration_ms: 5_000.0,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let scenario = ScenarioBuilder::new()
        .load(closed(4, 3.0))
        .extra(&timeout_s(1.0));
    let (_, summary) = run(&target, scenario).await;

    let list = endpoint(&summary, "list");
    let stalled = target.stats.injected(Fault::SlowService);
    assert!(stalled >= 4, "only {stalled} stalled requests");
    assert_eq!(list.timeouts, stalled);
    assert_eq!(list.ok + list.timeouts, list.requests_sent);
    assert_eq!(list.error_client_ms.count, stalled);
    assert!(
        list.error_client_ms.min_ms.unwrap() >= 999.0,
        "{:?}",
        list.error_client_ms
    );
    assert!(list.error_client_ms.max_ms.unwrap() < 1_250.0);
    assert_eq!(list.client_ms.count, list.ok);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_window_times_out_only_stalled_requests() {
    // The target stalls 1.5 s at the start of every 2 s; the timeout is 0.5 s.
    let faults = Faults {
        stall: Some(Stall {
            every: Duration::from_secs(2),
            length: Duration::from_millis(1_500),
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let scenario = ScenarioBuilder::new()
        .load(closed(2, 4.5))
        .extra(&timeout_s(0.5));
    let (_, summary) = run(&target, scenario).await;

    let list = endpoint(&summary, "list");
    let stalled = target.stats.injected(Fault::Stall);
    assert!(list.timeouts >= 2, "{} timeouts", list.timeouts);
    assert!(
        list.timeouts <= stalled,
        "{} timeouts but {stalled} stalled requests",
        list.timeouts
    );
    assert!(
        list.error_client_ms.min_ms.unwrap() >= 499.0,
        "{:?}",
        list.error_client_ms
    );
    assert!(list.error_client_ms.max_ms.unwrap() < 750.0);
    // Requests that waited less than the timeout succeed. A busy runtime
    // can run the timeout's timer late, so one may succeed a little after it.
    assert!(
        list.client_ms.max_ms.unwrap() < 600.0,
        "{:?}",
        list.client_ms
    );
    assert_eq!(list.client_ms.count, list.ok);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_service_counts_in_server_time() {
    // Every 4th request spends 100 ms more, and the target reports it.
    let faults = Faults {
        slow_service: Some(Delay {
            every: 4,
            duration_ms: 100.0,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    assert_eq!(list.ok, list.requests_intended);
    assert!(target.stats.injected(Fault::SlowService) >= 4);
    // A quarter of the requests are slow: p50 is fast, p90 slow, on both sides.
    assert!(list.server_ms.p50_ms.unwrap() < 50.0);
    assert!(list.server_ms.p90_ms.unwrap() >= 100.0);
    assert!(list.client_ms.p90_ms.unwrap() >= 100.0);
    assert!(
        list.overhead_ms.p50_ms.unwrap() < 50.0,
        "{:?}",
        list.overhead_ms
    );
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_show_in_overhead_not_server_time() {
    // Every 4th response waits 100 ms before its status line, after the
    // target measured its own time.
    let faults = Faults {
        slow_headers: Some(Delay {
            every: 4,
            duration_ms: 100.0,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    assert_eq!(list.ok, list.requests_intended);
    assert!(target.stats.injected(Fault::SlowHeaders) >= 4);
    // A quarter of the requests wait: their wait is in client time and
    // overhead, and server time has none of it.
    assert!(
        list.server_ms.p90_ms.unwrap() < 50.0,
        "{:?}",
        list.server_ms
    );
    assert!(list.client_ms.p90_ms.unwrap() >= 100.0);
    assert!(list.overhead_ms.p90_ms.unwrap() >= 99.0);
    assert!(list.overhead_ms.p50_ms.unwrap() < 50.0);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_past_the_timeout_are_timeouts() {
    let faults = Faults {
        slow_headers: Some(Delay {
            every: 5,
            duration_ms: 1_500.0,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let scenario = ScenarioBuilder::new()
        .load(closed(3, 3.0))
        .extra(&timeout_s(1.0));
    let (_, summary) = run(&target, scenario).await;

    let list = endpoint(&summary, "list");
    let delayed = target.stats.injected(Fault::SlowHeaders);
    assert!(delayed >= 3);
    assert_eq!(list.timeouts, delayed);
    assert_eq!(list.ok + list.timeouts, list.requests_sent);
    assert!(list.error_client_ms.min_ms.unwrap() >= 999.0);
    target.stop().await;
}

// ---------------------------------------------------------------------------
// Error responses.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_match_what_the_target_sent() {
    let faults = Faults {
        http_error: Some(HttpErrorFault {
            every: 7,
            status: 503,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let scenario = ScenarioBuilder::new()
        .requests(vec![
            request("list", "GET", "/api/items", 1),
            request("detail", "GET", "/api/items/5", 1),
        ])
        .load(closed(3, 2.0));
    let (_, summary) = run(&target, scenario).await;

    for (name, route) in [("list", LIST_ROUTE), ("detail", DETAIL_ROUTE)] {
        let stats = endpoint(&summary, name);
        let injected = target.stats.injected_on(route, Fault::HttpError);
        assert!(injected >= 3, "{name}: {injected}");
        assert_eq!(status_count(stats, "503"), injected, "{name}");
        assert_eq!(target.stats.responses(route, 503), injected, "{name}");
        assert_eq!(stats.http_errors, injected, "{name}");
        assert_eq!(stats.ok, target.stats.responses(route, 200), "{name}");
        // Each route numbers its own requests: the 7th, 14th, … of each.
        assert_eq!(injected, stats.requests_sent / 7, "{name}");
        assert_eq!(stats.error_client_ms.count, injected, "{name}");
        assert_eq!(stats.client_ms.count, stats.ok, "{name}");
    }
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_false_in_200_is_app_error() {
    let faults = Faults {
        app_error: Some(AppErrorFault {
            every: 5,
            status_code: 500,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    let injected = target.stats.injected(Fault::AppError);
    assert!(injected >= 5);
    assert_eq!(list.app_errors, injected);
    assert_eq!(list.http_errors, 0);
    assert_eq!(
        target.stats.responses(LIST_ROUTE, 200),
        list.ok + list.app_errors
    );
    // The envelope's statusCode is 500 in an HTTP 200.
    assert_eq!(list.status_code_mismatch, injected);
    assert_eq!(list.client_ms.count, list.ok);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_dropped_mid_way_is_a_transport_error() {
    let faults = Faults {
        drop_mid_body: Some(DropMidBody {
            every: 5,
            after_bytes: 40,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    let injected = target.stats.injected(Fault::DropMidBody);
    assert!(injected >= 5);
    assert_eq!(list.transport_errors, injected);
    assert_eq!(list.timeouts, 0);
    assert_eq!(list.ok + list.transport_errors, list.requests_sent);
    assert_eq!(list.client_ms.count, list.ok);
    target.stop().await;

    // On the wire: a 200 with the full Content-Length, then the body ends early.
    let faults = Faults {
        drop_mid_body: Some(DropMidBody {
            every: 1,
            after_bytes: 40,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = login_token(&client, &target.base_url()).await;
    let response = client
        .get(format!("{}/api/items", target.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("the status line and headers arrive");
    assert_eq!(response.status().as_u16(), 200);
    let length = response.content_length().expect("a Content-Length");
    assert!(length > 40, "{length}");
    let error = response.bytes().await.expect_err("the body is cut off");
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    target.stop().await;
}

// ---------------------------------------------------------------------------
// Bodies that are not what they claim.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_json_have_no_server_time() {
    // Truncated on every 5th request, malformed on every 3rd (the 15th, 30th,
    // … are truncated: the earlier fault in the order wins).
    let faults = Faults {
        truncated_json: Some(Every { every: 5 }),
        malformed_json: Some(Every { every: 3 }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    let truncated = target.stats.injected(Fault::TruncatedJson);
    let malformed = target.stats.injected(Fault::MalformedJson);
    assert!(truncated >= 3);
    assert!(malformed >= 3);
    assert_eq!(truncated, list.requests_sent / 5);
    assert_eq!(malformed, list.requests_sent / 3 - list.requests_sent / 15);
    // The HTTP exchange succeeded and no `success: false` could be read, so
    // parallax counts them ok, without a server time.
    assert_eq!(list.ok, list.requests_intended);
    assert_eq!(
        list.server_time_missing_by_reason.not_json,
        truncated + malformed
    );
    assert_eq!(list.server_ms.count, list.ok - truncated - malformed);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_read_whole() {
    let faults = Faults {
        large_body: Some(LargeBody {
            every: 5,
            bytes: 5_000_000,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    let injected = target.stats.injected(Fault::LargeBody);
    assert!(injected >= 2);
    assert_eq!(list.ok, list.requests_intended);
    assert_eq!(list.server_time_missing, 0);
    assert_eq!(list.server_ms.count, list.ok);
    // Reading 5 MB costs the client time the server does not report.
    assert!(list.overhead_ms.max_ms.unwrap() > list.overhead_ms.p50_ms.unwrap());
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_keep_every_request_counted() {
    let faults = Faults {
        gzip: Some(Every { every: 3 }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    let injected = target.stats.injected(Fault::Gzip);
    assert!(injected >= 3);
    assert_eq!(injected, list.requests_sent / 3);
    assert_eq!(list.ok, list.requests_intended);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_decoded_for_server_time() {
    let faults = Faults {
        gzip: Some(Every { every: 3 }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    assert!(target.stats.injected(Fault::Gzip) >= 3);
    assert_eq!(list.server_time_missing, 0, "{list:?}");
    assert_eq!(list.server_ms.count, list.ok);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_does_not_hide_success_false() {
    // Every body is compressed, and every other one has success: false.
    let faults = Faults {
        gzip: Some(Every { every: 1 }),
        app_error: Some(AppErrorFault {
            every: 2,
            status_code: 200,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    let injected = target.stats.injected(Fault::AppError);
    assert!(injected >= 5);
    assert_eq!(list.app_errors, injected, "{list:?}");
    target.stop().await;
}

// ---------------------------------------------------------------------------
// Redirects.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_chain_is_one_request() {
    // Every 4th request of each route takes 3 hops: 302 for GET, 307 for POST.
    let faults = Faults {
        redirect: Some(Redirect { every: 4, hops: 3 }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let create = format!(
        "{}body = {{ name = \"widget\" }}\n",
        request("create", "POST", "/api/items", 1)
    );
    let scenario = ScenarioBuilder::new()
        .requests(vec![request("list", "GET", "/api/items", 1), create])
        .load(closed(2, 2.0));
    let (_, summary) = run(&target, scenario).await;

    for (name, route, redirect_status, final_status) in [
        ("list", LIST_ROUTE, 302, 200),
        ("create", CREATE_ROUTE, 307, 201),
    ] {
        let stats = endpoint(&summary, name);
        let redirected = target.stats.injected_on(route, Fault::Redirect);
        assert!(redirected >= 2, "{name}: {redirected}");
        assert_eq!(stats.ok, stats.requests_intended, "{name}");
        assert_eq!(stats.ok, stats.requests_sent, "{name}");
        assert_eq!(
            target.stats.responses(route, redirect_status),
            3 * redirected,
            "{name}"
        );
        assert_eq!(
            target.stats.responses(route, final_status),
            stats.ok,
            "{name}"
        );
    }
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_redirects_is_transport_error() {
    // The HTTP client follows at most 10 redirects; this chain has 11.
    let faults = Faults {
        redirect: Some(Redirect { every: 5, hops: 11 }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let list = endpoint(&summary, "list");
    let redirected = target.stats.injected(Fault::Redirect);
    assert!(redirected >= 3);
    assert_eq!(list.transport_errors, redirected);
    assert_eq!(target.stats.responses(LIST_ROUTE, 302), 11 * redirected);
    assert_eq!(list.ok + list.transport_errors, list.requests_sent);
    target.stop().await;
}

// ---------------------------------------------------------------------------
// Tokens and logins.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_epoch_makes_every_user_log_in_again() {
    // Every second, every token issued so far stops working.
    let faults = Faults {
        token_epoch: Some(TokenEpoch { every_s: 1.0 }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(3, 3.5))).await;

    let list = endpoint(&summary, "list");
    let rejected = target.stats.injected(Fault::TokenEpoch);
    assert!(rejected >= 6, "{rejected} tokens rejected");
    // Each rejected token costs one login and one retry, which succeeds.
    assert_eq!(summary.logins.counts.after_unauthorized, rejected);
    assert_eq!(list.http_errors, 0);
    assert_eq!(list.ok, list.requests_intended);
    assert_eq!(target.stats.responses(LIST_ROUTE, 401), rejected);
    let login = endpoint(&summary, "login");
    assert_eq!(login.ok, summary.logins.counts.initial + rejected);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_user_arrivals_are_not_sent() {
    // The second of four users can never log in.
    let faults = Faults {
        reject_logins: Some(RejectLogins {
            users: vec![2],
            every: None,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(open(4, 20.0, 3.0))).await;

    let rejected = target.stats.injected(Fault::RejectedLogin);
    assert!(rejected >= 1);
    let login = endpoint(&summary, "login");
    assert_eq!(status_count(login, "401"), rejected);
    assert_eq!(target.stats.responses(LOGIN_ROUTE, 401), rejected);
    assert_eq!(summary.logins.counts.failed, rejected);
    assert_eq!(summary.logins.counts.initial, 3);
    // The rejected user takes no arrivals: the other three serve them all.
    let list = endpoint(&summary, "list");
    assert_eq!(list.requests_intended, 60);
    assert_eq!(list.not_sent_login_failed, 0);
    assert_eq!(list.ok, 60);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_users_of_a_closed_model_send_nothing() {
    // Users 2 and 4 of four are rejected; users 1 and 3 carry the load.
    let faults = Faults {
        reject_logins: Some(RejectLogins {
            users: Vec::new(),
            every: Some(2),
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(4, 2.0))).await;

    let rejected = target.stats.injected(Fault::RejectedLogin);
    assert!(rejected >= 2);
    assert_eq!(status_count(endpoint(&summary, "login"), "401"), rejected);
    assert_eq!(summary.logins.counts.initial, 2);
    let list = endpoint(&summary, "list");
    assert!(list.ok > 0);
    assert_eq!(list.ok, list.requests_intended);
    assert_eq!(list.ok, target.stats.responses(LIST_ROUTE, 200));
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_first_user_stops_the_run() {
    // The first user's login is the start-up check of the target and the
    // login settings.
    let faults = Faults {
        reject_logins: Some(RejectLogins {
            users: vec![1],
            every: None,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(closed(2, 2.0))
        .plan_in(dir.path());
    let options = RunOptions {
        target_override: Some(target.base_url()),
        ..RunOptions::default()
    };
    let error = engine::run(plan, options).await.unwrap_err();
    assert!(
        matches!(error, engine::SetupError::LoginRejected { .. }),
        "{error}"
    );
    assert_eq!(target.stats.injected(Fault::RejectedLogin), 1);
    assert_eq!(target.stats.arrival_times().len(), 0);
    target.stop().await;
}

// ---------------------------------------------------------------------------
// How the server reports its time.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_reported_server_time_shows_as_overhead() {
    // 10 ms of service, reported as 5 ms.
    let faults = Faults {
        under_report_ms: Some(5.0),
        ..Faults::default()
    };
    let target = start_target(faulty(10.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(1, 2.0))).await;

    let list = endpoint(&summary, "list");
    assert_eq!(list.ok, list.requests_intended);
    // The target spends at least 10 ms and reports 5 ms less. A busy
    // machine lengthens the time spent, never shortens it, so the lower
    // bounds are exact and the upper ones loose.
    let server_p50 = list.server_ms.p50_ms.unwrap();
    assert!((5.0..50.0).contains(&server_p50), "server p50 {server_p50}");
    let overhead = &list.overhead_ms;
    assert!(overhead.min_ms.unwrap() >= 4.99, "{overhead:?}");
    assert!(overhead.p50_ms.unwrap() < 50.0, "{overhead:?}");
    assert_eq!(list.overhead_negative_count, 0);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_clock_offset_is_estimated() {
    let faults = Faults {
        clock_offset_s: Some(3.0),
        ..Faults::default()
    };
    let target = start_target(faulty(2.0, faults)).await;
    let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(2, 2.0))).await;

    let clock = &summary.server_clock;
    let offset = clock.offset_ms.expect("an offset estimate");
    let bound = clock.error_bound_ms.expect("an error bound");
    // apiCost timestamps have millisecond resolution.
    assert!(
        (offset - 3_000.0).abs() <= bound + 1.0,
        "offset {offset} ms ± {bound} ms"
    );
    assert_eq!(endpoint(&summary, "list").api_cost_mismatch, 0);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timing_header_is_read_as_server_time() {
    // Every 4th request waits 50 ms more: Server-Timing puts it in `db`,
    // the rest of the 5 ms service in `app`.
    let faults = Faults {
        server_timing: true,
        slow_service: Some(Delay {
            every: 4,
            duration_ms: 50.0,
        }),
        ..Faults::default()
    };
    let target = start_target(faulty(5.0, faults)).await;
    let all_metrics = ScenarioBuilder::new()
        .load(closed(1, 2.0))
        .extra("[server_time]\nsource = \"server_timing\"\n");
    let app_only = ScenarioBuilder::new()
        .load(closed(1, 2.0))
        .extra("[server_time]\nsource = \"server_timing\"\nmetric = \"app\"\n");
    let (_, summed) = run(&target, all_metrics).await;
    let (_, app) = run(&target, app_only).await;

    // The sum of the metrics is the whole reported time.
    let list = endpoint(&summed, "list");
    assert_eq!(list.server_ms.count, list.ok);
    let summed = &list.server_ms;
    assert!((5.0..50.0).contains(&summed.p50_ms.unwrap()), "{summed:?}");
    assert!(summed.max_ms.unwrap() >= 55.0, "{summed:?}");
    // `app` leaves the injected wait out.
    let list = endpoint(&app, "list");
    assert_eq!(list.server_ms.count, list.ok);
    assert!(
        list.server_ms.p50_ms.unwrap() < 50.0,
        "{:?}",
        list.server_ms
    );

    // On the wire, four requests in a row: one has the 50 ms in `db`, and
    // in each the two metrics add up to apiCost.duration.
    let mut injected_waits = Vec::new();
    for _ in 0..4 {
        let response = direct_get(&target, "/api/items").await;
        let header = response.server_timing.expect("a Server-Timing header");
        let (db, app) = server_timing_durations(&header);
        let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        let duration_ms = body["apiCost"]["duration"].as_f64().unwrap() * 1000.0;
        assert!(
            (db + app - duration_ms).abs() < 0.01,
            "{header} vs {duration_ms} ms"
        );
        injected_waits.push(db);
    }
    injected_waits.sort_by(f64::total_cmp);
    assert_eq!(injected_waits, [0.0, 0.0, 0.0, 50.0]);
    target.stop().await;
}

/// Reads the `dur` of `db` and `app` from `db;dur=<ms>, app;dur=<ms>`.
fn server_timing_durations(header: &str) -> (f64, f64) {
    let dur = |metric: &str| {
        header
            .split(", ")
            .find_map(|entry| entry.strip_prefix(metric))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {metric} in {header}"))
    };
    (dur("db;dur="), dur("app;dur="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_spellings_give_the_same_server_time() {
    let formats = [
        DurationFormat::Plain,
        DurationFormat::Exponent,
        DurationFormat::String,
    ];
    let mut runs = Vec::new();
    for format in formats {
        runs.push(tokio::spawn(async move {
            let faults = Faults {
                duration_format: Some(format),
                ..Faults::default()
            };
            let target = start_target(faulty(5.0, faults)).await;
            let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(1, 2.0))).await;
            let body = direct_get(&target, "/api/items").await.body;
            target.stop().await;
            (format, summary, body)
        }));
    }
    for handle in runs {
        let (format, summary, body) = handle.await.unwrap();
        let duration = body
            .split_once("\"duration\":")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(raw, _)| raw)
            .unwrap_or_else(|| panic!("{format:?}: no duration in {body}"));
        let spelled = match format {
            DurationFormat::Plain => {
                duration.starts_with("0.") && duration.len() == 8 && !duration.contains('e')
            }
            DurationFormat::Exponent => duration.contains("e-"),
            _ => duration.starts_with("\"0.") && duration.ends_with('"'),
        };
        assert!(spelled, "{format:?}: {duration}");
        let list = endpoint(&summary, "list");
        assert_eq!(list.server_time_missing, 0, "{format:?}");
        // 5 ms of service, lengthened only by a busy machine; a misread
        // unit would be off by a factor of 1000.
        let p50 = list.server_ms.p50_ms.unwrap();
        assert!((5.0..50.0).contains(&p50), "{format:?}: server p50 {p50}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_and_missing_durations_are_counted_missing() {
    for format in [DurationFormat::Null, DurationFormat::Missing] {
        let faults = Faults {
            duration_format: Some(format),
            ..Faults::default()
        };
        let target = start_target(faulty(2.0, faults)).await;
        let (_, summary) = run(&target, ScenarioBuilder::new().load(closed(1, 2.0))).await;

        let list = endpoint(&summary, "list");
        assert_eq!(list.ok, list.requests_intended, "{format:?}");
        assert_eq!(list.server_ms.count, 0, "{format:?}");
        let missing = &list.server_time_missing_by_reason;
        let expected = match format {
            DurationFormat::Null => missing.null,
            _ => missing.absent,
        };
        assert_eq!(expected, list.requests_sent, "{format:?}: {missing:?}");
        target.stop().await;
    }
}

// ---------------------------------------------------------------------------
// Configuration: the scenario table and the serve flag.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_faults_reach_embedded_target() {
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(closed(2, 2.0))
        .extra(
            "[target.embedded]\nfaults.http_error = { every = 5 }\nfaults.server_timing = true\n",
        )
        .plan_in(dir.path());
    let TargetPlan::Embedded(config) = &plan.target else {
        panic!("an embedded target");
    };
    assert_eq!(
        config.faults.http_error,
        Some(HttpErrorFault {
            every: 5,
            status: 500
        })
    );
    assert!(config.faults.server_timing);

    let result = engine::run(plan, RunOptions::default()).await.unwrap();
    let summary = Summary::new(&result);
    assert_accounted(&summary);
    let list = endpoint(&summary, "list");
    assert!(list.requests_sent >= 10);
    assert_eq!(status_count(list, "500"), list.requests_sent / 5);
}

#[test]
fn fault_settings_in_a_scenario_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = |extra: &str| {
        let text = ScenarioBuilder::new().extra(extra).text();
        parallax::scenario::Plan::parse(&text, &dir.path().join("faults.toml"))
    };
    let message = scenario(
        "[target.embedded]\n[target.embedded.faults]\nredirect = { every = 3, hops = 0 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("`target.embedded.faults`: `redirect.hops` must be from 1 to 50, got 0"),
        "{message}"
    );
    let message = scenario("[target.embedded]\nfaults = { retries = 3 }\n")
        .unwrap_err()
        .to_string();
    assert!(message.contains("unknown field `retries`"), "{message}");
    let both = "[target.embedded]\nstall = { every_s = 5, duration_ms = 100 }\n[target.embedded.faults]\nstall = { every_s = 5, duration_ms = 100 }\n";
    let message = scenario(both).unwrap_err().to_string();
    assert!(message.contains("are both set"), "{message}");
}

#[test]
fn faults_table_needs_no_embedded_header() {
    let dir = tempfile::tempdir().unwrap();
    let text = ScenarioBuilder::new()
        .extra("[target.embedded.faults]\nhttp_error = { every = 5 }\n")
        .text();
    let plan = parallax::scenario::Plan::parse(&text, &dir.path().join("faults.toml"));
    let plan = plan.unwrap_or_else(|error| panic!("{error}"));
    let TargetPlan::Embedded(config) = &plan.target else {
        panic!("an embedded target");
    };
    assert!(config.faults.http_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flag_injects_faults() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args([
            "serve",
            "--port",
            "0",
            "--fault",
            "http_error = { every = 1, status = 503 }",
            "--fault",
            "server_timing = true",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the parallax binary starts");
    let stdout = child.stdout.take().unwrap();
    // serve prints its address, the demo users, then the faults that are on.
    let read = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout)
            .lines()
            .take(3)
            .map(|line| line.unwrap())
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(10), read).await;
    let lines = match lines {
        Ok(lines) => lines.unwrap(),
        Err(_) => {
            child.kill().unwrap();
            panic!("serve printed nothing for 10 s");
        }
    };
    let base_url = lines[0].strip_prefix("listening on ").unwrap_or_default();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{lines:?}");
    assert_eq!(lines[2], "faults on: http_error, server_timing");

    let response = get_with_login(base_url, "/api/items").await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(response.status, 503);
    assert!(response.server_timing.is_some());
    assert!(
        response.body.contains("\"success\":false"),
        "{}",
        response.body
    );
}

#[test]
fn serve_flag_rejects_bad_faults_with_the_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args(["serve", "--port", "0", "--fault", "gzip = { every = 0 }"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--fault: `gzip.every` must be a whole number from 1"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Direct requests, for what a run does not show.

struct DirectResponse {
    status: u16,
    server_timing: Option<String>,
    body: String,
}

async fn direct_get(target: &DemoTarget, path: &str) -> DirectResponse {
    get_with_login(&target.base_url(), path).await
}

/// Logs in as the first demo user at `base_url` (a loopback address).
async fn login_token(client: &reqwest::Client, base_url: &str) -> String {
    let login = client
        .post(format!("{base_url}/api/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email":"user1@demo.test","password":"demo-pass-1"}"#)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let login: serde_json::Value = serde_json::from_slice(&login).unwrap();
    login["data"]["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// Logs in as the first demo user and sends one GET to `base_url` (a loopback address).
async fn get_with_login(base_url: &str, path: &str) -> DirectResponse {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = login_token(&client, base_url).await;
    let response = client
        .get(format!("{base_url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let server_timing = response
        .headers()
        .get("server-timing")
        .map(|value| value.to_str().unwrap().to_string());
    let body = response.text().await.unwrap();
    DirectResponse {
        status,
        server_timing,
        body,
    }
}
