//! Login behaviour over time: expiring tokens, renewals, rejected users.

mod common;

use std::time::Duration;

use common::*;
use parallax::report::Summary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_tokens_cost_one_login_each() {
    // 50 users log in together; their tokens expire every 10 s, so over 35 s
    // each meets three expiries: 50 + 3 × 50 = 200 logins, none in a loop.
    let target = start_target(constant_target(2.0, Duration::from_secs(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let load = "[load]\nmodel = \"closed\"\nusers = 50\nduration_s = 35\npacing_ms = 250\n";
    let plan = ScenarioBuilder::new()
        .login("refresh_before_expiry_s = 0")
        .load(load.to_string())
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    let logins = summary.logins.counts;
    assert_eq!(logins.initial, 50);
    assert_eq!(logins.failed, 0);
    let total = logins.initial + logins.after_unauthorized;
    assert!((185..=215).contains(&total), "{total} logins");
    assert_eq!(target.stats.responses("POST /api/auth/login", 200), total);
    // Every 401 led to one login and one retry, and no request failed.
    assert_eq!(
        target.stats.responses("GET /api/items", 401),
        logins.after_unauthorized
    );
    let list = endpoint(&summary, "list");
    assert_eq!(list.ok, list.requests_intended);
    assert_accounted(&summary);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_avoids_unauthorized() {
    let target = start_target(constant_target(2.0, Duration::from_secs(4))).await;
    let dir = tempfile::tempdir().unwrap();
    let load = "[load]\nmodel = \"closed\"\nusers = 20\nduration_s = 10\npacing_ms = 100\n";
    let plan = ScenarioBuilder::new()
        .load(load.to_string())
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    let logins = summary.logins.counts;
    assert_eq!(logins.after_unauthorized, 0);
    assert_eq!(target.stats.responses("GET /api/items", 401), 0);
    // Tokens keep 3 to 4 s of life; renewing at 80 to 90 % of it gives two
    // or three renewals per user in 10 s.
    assert!(
        (40..=70).contains(&logins.refresh_before_expiry),
        "{} renewals",
        logins.refresh_before_expiry
    );
    target.stop().await;
}
