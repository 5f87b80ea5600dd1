//! The `parallax` binary end to end: exit codes, error messages for bad
//! input, a shipped scenario against the embedded target, and the same
//! scenario against an independent server written in Python.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::repo_root;

fn parallax(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("the parallax binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_scenario(dir: &Path, text: &str) -> String {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const VALID: &str = r#"[target]
base_url = "embedded"

[[request]]
name = "list"
path = "/api/items"

[load]
model = "open"
users = 2
rate_per_s = 20
duration_s = 1
"#;

/// Runs a broken scenario and checks the exit code and the single message.
fn assert_rejected(text: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(dir.path(), text);
    let output = parallax(&[
        "run",
        &path,
        "--quiet",
        "--out",
        &dir.path().join("out").display().to_string(),
    ]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(
        message
            .lines()
            .filter(|line| line.starts_with("error:"))
            .count(),
        1,
        "{message}"
    );
    for fragment in expected {
        assert!(
            message.contains(fragment),
            "missing {fragment:?} in {message}"
        );
    }
    assert!(
        !dir.path().join("out").exists(),
        "no report for a rejected scenario"
    );
}

#[test]
fn typo_in_key_is_rejected() {
    assert_rejected(
        &VALID.replace("rate_per_s", "rate_pre_s"),
        &[
            "scenario.toml:11:1:",
            "unknown field `rate_pre_s`",
            "docs/scenarios.md",
        ],
    );
}

#[test]
fn negative_rate_is_rejected() {
    assert_rejected(
        &VALID.replace("rate_per_s = 20", "rate_per_s = -5"),
        &["scenario.toml:11:14:", "`load.rate_per_s`", "got -5"],
    );
}

#[test]
fn missing_credentials_file_is_rejected() {
    let text = VALID.replace(
        "base_url = \"embedded\"\n",
        "base_url = \"embedded\"\n\n[login]\ncredentials = { csv = \"absent.csv\" }\n",
    );
    assert_rejected(
        &text,
        &[
            "`login.credentials.csv` = \"absent.csv\"",
            "absent.csv",
            "username,password",
        ],
    );
}

#[test]
fn missing_scenario_file_is_rejected() {
    let output = parallax(&["run", "no/such/scenario.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot read scenario file no/such/scenario.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unreachable_target_exits_with_setup_code() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(dir.path(), VALID);
    let target = format!("http://127.0.0.1:{port}");
    let output = parallax(&["run", &path, "--quiet", "--target", &target]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{message}");
    assert!(
        message.contains(&format!(
            "cannot reach the target at {target}/api/auth/login"
        )),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn smoke_scenario_writes_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let output = parallax(&[
        "run",
        "scenarios/ci-smoke.toml",
        "--out",
        &out.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        stderr(&output)
    );
    assert!(stdout.contains("list items"), "{stdout}");
    assert!(stdout.contains("check max_error_percent"), "{stdout}");
    for file in [
        "summary.json",
        "summary.csv",
        "timeseries.csv",
        "latency_over_time.png",
        "latency_distribution.png",
        "throughput.png",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    // 50 req/s for 5 s; logins have their own row.
    assert_eq!(summary["all"]["requests_intended"], 250);
    assert_eq!(summary["logins"]["initial"], 8);
    // Progress goes to stderr as plain lines when it is not a terminal.
    assert!(stderr(&output).contains("req/s"), "{}", stderr(&output));
}

/// The independent server, stopped when dropped.
struct IndependentServer {
    child: Child,
    base_url: String,
}

impl IndependentServer {
    fn start() -> Self {
        let script = repo_root().join("tests/servers/independent_api.py");
        let users = repo_root().join("scenarios/demo-users.csv");
        let mut child = Command::new("python3")
            .args([
                script.as_os_str(),
                "--port".as_ref(),
                "0".as_ref(),
                "--users".as_ref(),
                users.as_os_str(),
            ])
            .args(["--max-lifetime-s", "120"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the independent test server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        IndependentServer {
            child,
            base_url: format!("http://{address}"),
        }
    }

    fn stats(&self) -> serde_json::Value {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(format!("{}/__stats", self.base_url))
                .send()
                .await
                .unwrap();
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
        })
    }
}

impl Drop for IndependentServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn same_scenario_runs_against_independent_server() {
    let server = IndependentServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let output = parallax(&[
        "run",
        "scenarios/ci-smoke.toml",
        "--quiet",
        "--target",
        &server.base_url,
        "--out",
        &out.display().to_string(),
    ]);
    assert!(
        output.status.code() == Some(0) || output.status.code() == Some(1),
        "{}",
        stderr(&output)
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let stats = server.stats();
    assert_eq!(
        summary["scenario"]["target_base_url"],
        server.base_url.as_str()
    );
    assert_eq!(summary["logins"]["initial"], 8);
    assert_eq!(stats["logins_ok"], 8);
    let endpoints = summary["endpoints"].as_array().unwrap();
    let by_name = |name: &str| {
        endpoints
            .iter()
            .find(|endpoint| endpoint["name"] == name)
            .unwrap()
    };
    assert_eq!(
        stats["requests"]["GET /api/items"]["200"],
        by_name("list items")["ok"]
    );
    assert_eq!(
        stats["requests"]["POST /api/items"]["201"],
        by_name("create item")["ok"]
    );
    assert_eq!(summary["all"]["requests_intended"], 250);
    assert_eq!(summary["all"]["ok"], 250);
    // The server sleeps 3 ms per request and reports its time in apiCost.duration.
    let server_p50 = by_name("list items")["server_ms"]["p50_ms"]
        .as_f64()
        .unwrap();
    assert!(server_p50 >= 3.0, "server p50 {server_p50} ms");
    assert_eq!(by_name("list items")["server_time_missing"], 0);
}
