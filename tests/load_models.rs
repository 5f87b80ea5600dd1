//! Load models against the embedded target on a free loopback port:
//! coordinated-omission correction, arrival counts and spacing, rate ramps,
//! rate caps and the generator's own warnings. Timing checks are bounds.

mod common;

use std::time::Duration;

use common::*;
use parallax::report::Summary;
use parallax::target::Stall;

fn stalling_target() -> parallax::target::Config {
    let mut config = constant_target(2.0, Duration::from_secs(300));
    config.faults.stall = Some(Stall {
        every: Duration::from_secs(5),
        length: Duration::from_secs(1),
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_show_in_corrected_latency_only() {
    // 100 req/s for 15 s; the target stalls 1 s in every 5 s.
    let target = start_target(stalling_target()).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(open(150, 100.0, 15.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    let list = endpoint(&summary, "list");
    let corrected = list
        .client_corrected_ms
        .expect("the open model has a corrected view");
    let corrected_p99 = corrected.p99_ms.unwrap();
    assert!(corrected_p99 >= 500.0, "corrected p99 {corrected_p99} ms");
    let raw_p50 = list.client_ms.p50_ms.unwrap();
    assert!(
        raw_p50 < 10.0,
        "raw p50 {raw_p50} ms should stay near the 2 ms service time"
    );
    assert_eq!(list.ok, 1500);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_without_pacing_reports_raw_only() {
    let target = start_target(stalling_target()).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(closed(4, 6.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    assert!(summary.all.client_corrected_ms.is_none());
    assert!(
        summary.scenario.correction.starts_with("none"),
        "{}",
        summary.scenario.correction
    );
    let text = parallax::report::format_summary(&summary, None);
    assert!(text.contains("correction: none"), "{text}");
    assert!(!text.contains("corrected p50/p99"), "{text}");
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_correction_exceeds_raw_under_stalls() {
    let target = start_target(stalling_target()).await;
    let dir = tempfile::tempdir().unwrap();
    let load = format!("{}pacing_ms = 100\n", closed(4, 11.0));
    let plan = ScenarioBuilder::new().load(load).plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    let list = endpoint(&summary, "list");
    let corrected = list.client_corrected_ms.unwrap();
    // Each stall hides about ten paced requests per user; the correction adds them back.
    assert!(
        corrected.count > list.client_ms.count,
        "{} vs {}",
        corrected.count,
        list.client_ms.count
    );
    assert!(corrected.p90_ms.unwrap() > list.client_ms.p90_ms.unwrap() * 2.0);
    assert!(corrected.p50_ms.unwrap() >= list.client_ms.p50_ms.unwrap());
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_users_is_reported_not_hidden() {
    // 10 req/s offered, but 2 users on a 500 ms endpoint serve 4 req/s.
    let target = start_target(constant_target(500.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = ScenarioBuilder::new()
        .load(open(2, 10.0, 10.0))
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    let list = endpoint(&summary, "list");
    assert!(
        (37..=43).contains(&list.requests_sent),
        "sent {}",
        list.requests_sent
    );
    assert_eq!(list.requests_intended, 100);
    assert_eq!(list.not_sent_run_stopped, 100 - list.requests_sent);
    let warning = summary
        .generator
        .warnings
        .iter()
        .find(|warning| warning.starts_with("target rate not reached"))
        .expect("a target-rate warning");
    assert!(warning.contains("of the planned 10.00 req/s"), "{warning}");
    let achieved = format!("achieved {:.2} req/s", summary.generator.achieved_rate_rps);
    assert!(warning.contains(&achieved), "{warning}");
    assert!((3.6..=4.4).contains(&summary.generator.achieved_rate_rps));

    // The queue grows, so corrected latency grows through the run and never
    // falls below raw latency.
    let rows: Vec<_> = result
        .intervals
        .iter()
        .filter(|interval| interval.endpoints[1].ok > 0)
        .collect();
    let first = rows.first().unwrap().endpoints[1].corrected.p50_ms.unwrap();
    let last = rows.last().unwrap().endpoints[1].corrected.p50_ms.unwrap();
    assert!(
        last > first + 3_000.0,
        "corrected p50 went from {first} to {last} ms"
    );
    for row in &rows {
        let interval = &row.endpoints[1];
        assert!(interval.corrected.p50_ms >= interval.client.p50_ms);
        assert!(interval.corrected.p99_ms >= interval.client.p99_ms);
    }
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_rates_give_exact_counts() {
    let target = start_target(constant_target(1.0, Duration::from_secs(300))).await;
    let seven = tempfile::tempdir().unwrap();
    let half = tempfile::tempdir().unwrap();
    let seven_plan = ScenarioBuilder::new()
        .load(open(3, 7.0, 20.0))
        .plan_in(seven.path());
    let half_plan = ScenarioBuilder::new()
        .load(open(1, 0.5, 20.0))
        .plan_in(half.path());
    let base_url = target.base_url();
    let (seven_result, half_result) = tokio::join!(
        run_against(seven_plan, &base_url),
        run_against(half_plan, &base_url)
    );

    let seven_list = Summary::new(&seven_result).endpoints[1].ok;
    assert!(
        (137..=143).contains(&seven_list),
        "7 req/s for 20 s sent {seven_list}"
    );
    let half_list = Summary::new(&half_result).endpoints[1].ok;
    assert!(
        (9..=11).contains(&half_list),
        "0.5 req/s for 20 s sent {half_list}"
    );
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_follows_planned_rate() {
    let target = start_target(constant_target(1.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let load = "[load]\nmodel = \"open\"\nusers = 20\nmax_users = 60\nrate_per_s = 10\nstages = [{ duration_s = 20, rate_per_s = 200, ramp = \"linear\" }]\n";
    let plan = ScenarioBuilder::new()
        .load(load.to_string())
        .plan_in(dir.path());
    let schedule = match &plan.load {
        parallax::load::LoadModel::Open(model) => model.schedule.clone(),
        parallax::load::LoadModel::Closed(_) => unreachable!(),
    };
    let result = run_against(plan, &target.base_url()).await;

    let planned: Vec<f64> = schedule
        .arrivals(parallax::load::ArrivalProcess::Uniform)
        .map(|offset| offset.as_secs_f64())
        .collect();
    let mut checked = 0;
    for interval in &result.intervals {
        if interval.end_s > 20.0 || interval.end_s - interval.start_s < 0.5 {
            continue;
        }
        let expected = planned
            .iter()
            .filter(|&&at| at >= interval.start_s && at < interval.end_s)
            .count() as f64;
        let achieved = interval.endpoints[1].requests as f64;
        // Responses land up to a few milliseconds after their arrival, so a
        // boundary can move one or two requests into the next interval.
        let tolerance = (expected * 0.05).max(2.0);
        assert!(
            (achieved - expected).abs() <= tolerance,
            "{:.1}-{:.1} s: {achieved} requests, planned {expected}",
            interval.start_s,
            interval.end_s
        );
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} full intervals");
    assert_eq!(result.intervals[2].phase, parallax::load::Phase::RampUp);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_grows_up_to_max_users() {
    // 40 req/s on a 100 ms endpoint needs about 4 busy users; the pool starts with 1.
    let target = start_target(constant_target(100.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let load =
        "[load]\nmodel = \"open\"\nusers = 1\nmax_users = 10\nrate_per_s = 40\nduration_s = 3\n";
    let plan = ScenarioBuilder::new()
        .load(load.to_string())
        .plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    assert!(
        (4..=10).contains(&summary.generator.users_started),
        "{}",
        summary.generator.users_started
    );
    assert_eq!(
        summary.logins.counts.initial as usize,
        summary.generator.users_started
    );
    let list = endpoint(&summary, "list");
    assert_eq!(list.requests_intended, 120);
    assert!(list.ok >= 115, "{} of 120 served", list.ok);
    assert_accounted(&summary);
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_wait_bound_counts_no_free_user() {
    let target = start_target(constant_target(400.0, Duration::from_secs(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let load = format!("{}max_queue_wait_s = 0.2\n", open(1, 20.0, 3.0));
    let plan = ScenarioBuilder::new().load(load).plan_in(dir.path());
    let result = run_against(plan, &target.base_url()).await;
    let summary = Summary::new(&result);

    let list = endpoint(&summary, "list");
    assert!(
        list.not_sent_no_free_user >= 40,
        "{}",
        list.not_sent_no_free_user
    );
    assert!(
        (6..=9).contains(&list.ok),
        "one user on a 400 ms endpoint for 3 s served {}",
        list.ok
    );
    assert_eq!(list.requests_intended, 60);
    assert_accounted(&summary);
    target.stop().await;
}
