//! Command-line definitions (clap) and the commands they run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::engine::{self, ProgressMode, RunOptions};
use crate::exit_code;
use crate::load::Distribution;
use crate::report::{self, Summary};
use crate::scenario::Plan;
use crate::target::{self, DemoTarget};

const LATENCY_HELP: &str = "\
Latency columns:
  client raw  time from the actual send to the end of the response body,
              for successful requests.
  corrected   the same requests corrected for coordinated omission. Open
              model (arrival rate): from each request's intended start on the
              schedule, so a stalled server cannot hide its stall by slowing
              the generator. Closed model with pacing: raw values plus the
              iterations a stalled user could not start (HdrHistogram
              record_correct with the pacing interval). Closed model without
              pacing: none; the report says so.
  server      the time the server reports (apiCost.duration by default).
  overhead    client time of the last attempt minus server time: network,
              queueing, proxies, TLS and serialisation. It can be negative.
Errors are counted by kind and their latency is kept apart from the
successful requests.

Exit codes: 0 run complete and checks passed; 1 a [checks] limit failed;
2 invalid scenario, credentials or flags; 3 target unreachable or first
login failed; 4 reports could not be written; 130 interrupted (reports are
still written, marked partial).";

/// Load testing and latency benchmarking for JWT-authenticated JSON APIs,
/// with client and server latency side by side.
#[derive(Debug, Parser)]
#[command(name = "parallax", version, after_long_help = LATENCY_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and write its reports.
    #[command(after_long_help = LATENCY_HELP)]
    Run(RunArgs),
    /// Check a scenario file without sending any request.
    Validate {
        /// The scenario TOML file.
        scenario: PathBuf,
    },
    /// Rebuild the reports of a run from the journal in its report folder,
    /// for a run that was killed before it could write them.
    Report {
        /// The run's report folder, which contains journal.jsonl.
        dir: PathBuf,
    },
    /// Serve the embedded demo target until Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario TOML file (see docs/scenarios.md).
    pub scenario: PathBuf,
    /// Write the reports into this folder instead of <output.dir>/<scenario>-<UTC timestamp>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Send the load to this base URL instead of the scenario's target.base_url.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Show no progress while running; the summary is still printed.
    #[arg(long, short)]
    pub quiet: bool,
    /// Seed of the random request mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Loopback address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Service time of every endpoint, in milliseconds (constant).
    #[arg(long, value_name = "MS", default_value_t = 2.0)]
    pub service_time_ms: f64,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub token_lifetime_s: u64,
    /// Inject a fault or test behaviour, written as one line of the
    /// scenario's [target.embedded.faults] table, e.g.
    /// --fault 'http_error = { every = 10, status = 503 }'. Repeat the flag
    /// for several; docs/reliability.md lists them.
    #[arg(long = "fault", value_name = "KEY = VALUE")]
    pub faults: Vec<String>,
}

/// Runs the parsed command and returns the process exit code.
pub async fn execute(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Validate { scenario } => match Plan::load(&scenario) {
            Ok(plan) => {
                println!(
                    "{}: valid · {} model, {} users, {:.1} s, {} request kinds",
                    scenario.display(),
                    plan.load.name(),
                    plan.load.users(),
                    plan.load.duration().as_secs_f64(),
                    plan.requests.len()
                );
                exit_code::OK
            }
            Err(error) => {
                eprintln!("error: {error}");
                exit_code::BAD_INPUT
            }
        },
        Command::Report { dir } => match crate::journal::rebuild(&dir) {
            Ok(result) => finish_report(&result, &dir),
            Err(error) => {
                eprintln!("error: {error:#}");
                exit_code::BAD_INPUT
            }
        },
        Command::Serve(args) => serve(args).await,
    }
}

async fn run(args: RunArgs) -> i32 {
    let plan = match Plan::load(&args.scenario) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return exit_code::BAD_INPUT;
        }
    };
    if let Some(url) = &args.target {
        if let Err(message) = check_target_flag(url) {
            eprintln!("error: {message}");
            return exit_code::BAD_INPUT;
        }
    }
    // The folder is fixed before the run, because the journal is written into it as the run goes.
    let dir = args.out.clone().unwrap_or_else(|| {
        report::default_report_dir(&plan.output_dir, &plan.name, chrono::Utc::now())
    });
    if let Err(message) = check_report_folder(&dir, args.out.is_some()) {
        eprintln!("error: {message}");
        return exit_code::BAD_INPUT;
    }
    let options = RunOptions {
        target_override: args.target.clone(),
        progress: if args.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::detect()
        },
        handle_signals: true,
        seed: args.seed,
        journal_dir: Some(dir.clone()),
        ..RunOptions::default()
    };
    let result = match engine::run(plan, options).await {
        Ok(result) => result,
        Err(error) => {
            eprintln!("error: {error}");
            return exit_code::SETUP_FAILED;
        }
    };
    finish_report(&result, &dir)
}

/// Writes the reports of `result` into `dir`, prints the summary, and
/// returns the exit code.
fn finish_report(result: &engine::RunResult, dir: &std::path::Path) -> i32 {
    let summary = Summary::new(result);
    let written = report::write_all(result, &summary, dir)
        .with_context(|| format!("writing the reports to {}", dir.display()));
    report::print_summary(&summary, Some(dir));
    if let Err(error) = written {
        eprintln!("error: {error:#}");
        return exit_code::REPORT_FAILED;
    }
    if result.is_partial() {
        exit_code::INTERRUPTED
    } else if !summary.checks_passed() {
        exit_code::CHECKS_FAILED
    } else {
        exit_code::OK
    }
}

/// Checks before the run that the reports can be written where they will go:
/// `--out` must not hold an earlier report, and the folder must be writable.
fn check_report_folder(dir: &std::path::Path, explicit: bool) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "the report folder {} is a file. Pass another --out folder.",
            dir.display()
        ));
    }
    if explicit && dir.join("summary.json").exists() {
        return Err(format!(
            "{} already holds a report. Pass a new --out folder, or remove the old report first.",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|error| {
        format!(
            "cannot create the report folder {}: {error}. Pass a writable --out folder.",
            dir.display()
        )
    })?;
    let probe = dir.join(".parallax-write-check");
    std::fs::write(&probe, b"").map_err(|error| {
        format!(
            "cannot write into the report folder {}: {error}. Pass a writable --out folder.",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn check_target_flag(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|error| {
        format!(
            "--target {url:?} is not a valid URL ({error}); write it like http://127.0.0.1:8080"
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("--target {url:?} must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080"));
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> i32 {
    if !args.bind.is_loopback() {
        eprintln!("error: --bind {} is not a loopback address; the demo target only listens on 127.0.0.0/8 or ::1", args.bind);
        return exit_code::BAD_INPUT;
    }
    let service_time = Distribution::Constant {
        ms: args.service_time_ms,
    };
    if let Err(problem) = service_time.validate() {
        eprintln!("error: --service-time-ms: {problem}");
        return exit_code::BAD_INPUT;
    }
    if args.token_lifetime_s == 0 {
        eprintln!("error: --token-lifetime-s must be at least 1");
        return exit_code::BAD_INPUT;
    }
    let faults = match target::Faults::from_flag_lines(&args.faults) {
        Ok(faults) => faults,
        Err(message) => {
            eprintln!("error: {message}");
            return exit_code::BAD_INPUT;
        }
    };
    let active_faults = faults.active().join(", ");
    let mut config = target::Config {
        token_lifetime: Duration::from_secs(args.token_lifetime_s),
        faults,
        ..target::Config::default()
    };
    config.service_times.set_all(service_time);
    let users = config.users;
    let target = match DemoTarget::start(config, SocketAddr::new(args.bind, args.port)).await {
        Ok(target) => target,
        Err(error) => {
            eprintln!(
                "error: cannot listen on {}:{}: {error}. Pick another --port, or 0 for a free one.",
                args.bind, args.port
            );
            return exit_code::SETUP_FAILED;
        }
    };
    println!("listening on {}", target.base_url());
    println!(
        "demo users: user1@demo.test … user{users}@demo.test, password demo-pass-<N>; Ctrl-C stops"
    );
    if !active_faults.is_empty() {
        println!("faults on: {active_faults}");
    }
    let _ = tokio::signal::ctrl_c().await;
    target.stop().await;
    exit_code::OK
}
