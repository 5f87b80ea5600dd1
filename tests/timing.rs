//! Timing-sensitive checks: the server-reported time against the embedded
//! target's configured service time, and the spacing of requests at the
//! target. They live in their own test binary and hold a lock while they
//! measure, so that no other test competes for the two cores.

mod common;

use std::time::{Duration, Instant};

use common::*;
use parallax::report::Summary;

/// Held by each test while it measures.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The largest number of arrivals inside any window of `width`.
fn max_in_window(mut times: Vec<Instant>, width: Duration) -> usize {
    times.sort();
    let mut max = 0;
    let mut first = 0;
    for last in 0..times.len() {
        while times[last] - times[first] >= width {
            first += 1;
        }
        max = max.max(last - first + 1);
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_p50_matches_configured_service_time() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let target = start_target(constant_target(5.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .requests(vec![
            request("list", "GET", "/api/items", 1),
            request("detail", "GET", "/api/items/5", 1),
        ])
        .load(closed(3, 2.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = write_reports(&result, dir.path());

    for name in ["list", "detail"] {
        let server_p50 = endpoint(&summary, name).server_ms.p50_ms.unwrap();
        // The target reports the time it really spent: the 5 ms wait plus
        // the delay before its task runs again, tens of microseconds on an
        // idle machine. The bound leaves 2 % for a busy one.
        assert!(
            (5.0..=5.1).contains(&server_p50),
            "{name}: server p50 {server_p50} ms"
        );
    }
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_are_evenly_spaced() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let target = start_target(constant_target(1.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(open(50, 100.0, 10.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;

    let arrivals = target.stats.arrival_times();
    assert_eq!(arrivals.len(), 1000);
    let max = max_in_window(arrivals, Duration::from_millis(100));
    assert!(
        max <= 13,
        "{max} arrivals in one 100 ms window at 100 req/s"
    );
    assert_eq!(Summary::new(&result).endpoints[1].ok, 1000);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_spaces_closed_users() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let target = start_target(constant_target(1.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let load = format!("{}rate_cap_per_s = 100\n", closed(100, 5.0));
    let plan = ScenarioBuilder::new().load(load).plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;

    let arrivals = target.stats.arrival_times();
    assert!(
        (480..=505).contains(&arrivals.len()),
        "{} requests in 5 s at 100 req/s",
        arrivals.len()
    );
    let max = max_in_window(arrivals, Duration::from_millis(100));
    assert!(
        max <= 13,
        "{max} requests in one 100 ms window under a 100 req/s cap"
    );
    assert_eq!(Summary::new(&result).logins.counts.initial, 100);
    target.stop().await;
}
