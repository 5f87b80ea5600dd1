//! Helpers shared by the integration tests: a scenario builder with safe
//! defaults, an embedded target on a free loopback port, and an in-process run.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use parallax::engine::{self, RunOptions, RunResult};
use parallax::load::Distribution;
use parallax::report::{self, Summary};
use parallax::scenario::Plan;
use parallax::target::{self, DemoTarget};

/// The repository root, where `scenarios/` lives.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scenario under construction. Defaults: the embedded target's demo
/// users, one GET request, a closed model of 2 users for 2 seconds.
pub struct ScenarioBuilder {
    pub base_url: String,
    /// More keys of the `[target]` table.
    pub target_extra: String,
    pub login: String,
    pub requests: Vec<String>,
    pub load: String,
    pub extra: String,
}

impl ScenarioBuilder {
    pub fn new() -> Self {
        ScenarioBuilder {
            base_url: "embedded".into(),
            target_extra: String::new(),
            login: String::new(),
            requests: vec![request("list", "GET", "/api/items", 1)],
            load: closed(2, 2.0),
            extra: String::new(),
        }
    }

    pub fn requests(mut self, requests: Vec<String>) -> Self {
        self.requests = requests;
        self
    }

    pub fn load(mut self, load: String) -> Self {
        self.load = load;
        self
    }

    pub fn login(mut self, login: &str) -> Self {
        self.login = login.to_string();
        self
    }

    pub fn extra(mut self, extra: &str) -> Self {
        self.extra = extra.to_string();
        self
    }

    pub fn text(&self) -> String {
        let credentials = repo_root().join("scenarios/demo-users.csv");
        format!(
            "[target]\nbase_url = \"{}\"\n{}\n[login]\ncredentials = {{ csv = \"{}\" }}\n{}\n{}\n{}\n{}\n",
            self.base_url,
            self.target_extra,
            credentials.display(),
            self.login,
            self.requests.join("\n"),
            self.load,
            self.extra
        )
    }

    /// Writes the scenario into `dir` and loads it.
    pub fn plan_in(&self, dir: &Path) -> Plan {
        let path = dir.join("scenario.toml");
        std::fs::write(&path, self.text()).unwrap();
        Plan::load(&path)
            .unwrap_or_else(|error| panic!("test scenario is invalid: {error}\n{}", self.text()))
    }
}

pub fn request(name: &str, method: &str, path: &str, weight: u32) -> String {
    format!("[[request]]\nname = \"{name}\"\nmethod = \"{method}\"\npath = \"{path}\"\nweight = {weight}\n")
}

pub fn closed(users: usize, duration_s: f64) -> String {
    format!("[load]\nmodel = \"closed\"\nusers = {users}\nduration_s = {duration_s}\n")
}

pub fn open(users: usize, rate_per_s: f64, duration_s: f64) -> String {
    format!("[load]\nmodel = \"open\"\nusers = {users}\nrate_per_s = {rate_per_s}\nduration_s = {duration_s}\n")
}

/// Starts the embedded target on a free loopback port.
pub async fn start_target(config: target::Config) -> DemoTarget {
    DemoTarget::start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind a loopback port")
}

/// An embedded target configuration with the same constant service time everywhere.
pub fn constant_target(service_ms: f64, token_lifetime: Duration) -> target::Config {
    let mut config = target::Config {
        token_lifetime,
        ..target::Config::default()
    };
    config
        .service_times
        .set_all(Distribution::Constant { ms: service_ms });
    config
}

/// Runs `plan` in-process against `base_url`.
pub async fn run_against(plan: Plan, base_url: &str) -> RunResult {
    let options = RunOptions {
        target_override: Some(base_url.to_string()),
        ..RunOptions::default()
    };
    engine::run(plan, options).await.expect("the run starts")
}

/// Runs and writes the reports into `dir`; returns the summary.
pub fn write_reports(result: &RunResult, dir: &Path) -> Summary {
    let summary = Summary::new(result);
    report::write_all(result, &summary, dir).expect("reports are written");
    summary
}

/// The summary entry of the endpoint called `name`.
pub fn endpoint<'a>(summary: &'a Summary, name: &str) -> &'a report::EndpointSummary {
    summary
        .endpoints
        .iter()
        .find(|endpoint| endpoint.name == name)
        .unwrap_or_else(|| panic!("no endpoint {name}"))
}

/// Asserts the accounting invariant: every intended request has exactly one outcome.
pub fn assert_accounted(summary: &Summary) {
    for endpoint in summary.endpoints.iter().chain([&summary.all]) {
        let outcomes = endpoint.ok
            + endpoint.http_errors
            + endpoint.app_errors
            + endpoint.timeouts
            + endpoint.connect_errors
            + endpoint.transport_errors
            + endpoint.cancelled
            + endpoint.not_sent_run_stopped
            + endpoint.not_sent_login_failed
            + endpoint.not_sent_no_free_user;
        assert_eq!(
            outcomes, endpoint.requests_intended,
            "outcomes of {} do not add up",
            endpoint.name
        );
    }
}
