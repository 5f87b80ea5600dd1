//! The server-reported time equals the embedded target's configured service
//! time. Kept in its own test binary so that no other test competes for the
//! two cores while it measures.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_p50_matches_configured_service_time() {
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
