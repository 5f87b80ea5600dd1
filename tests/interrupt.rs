//! Interruptions end to end through the binary: Ctrl-C (SIGINT) lets
//! in-flight requests finish and writes partial reports; SIGKILL leaves a
//! journal that `parallax report` turns into the same kind of report.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::repo_root;

/// Requests take 3 s; the run would last 30 s.
const SLOW_SCENARIO: &str = r#"
[target]
base_url = "embedded"

[target.embedded]
endpoints.list = { distribution = "constant", ms = 3000 }

[[request]]
name = "list"
path = "/api/items"

[load]
model = "closed"
users = 4
duration_s = 30
"#;

fn start_run(dir: &Path) -> Child {
    let scenario = dir.join("slow.toml");
    std::fs::write(&scenario, SLOW_SCENARIO).unwrap();
    Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args(["run", "--quiet"])
        .arg(&scenario)
        .arg("--out")
        .arg(dir.join("report"))
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the parallax binary starts")
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill only sends a signal to the child process we started.
    let status = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(status, 0, "sending signal {signal}");
}

fn read_summary(dir: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(dir.join("report/summary.json")).expect("summary.json exists");
    serde_json::from_str(&text).expect("summary.json parses")
}

fn assert_report_files(dir: &Path) {
    let report = dir.join("report");
    let mut reader =
        csv::Reader::from_path(report.join("summary.csv")).expect("summary.csv parses");
    let partial_column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|name| name == "run_partial")
        .unwrap();
    for row in reader.records() {
        assert_eq!(&row.unwrap()[partial_column], "true");
    }
    assert!(csv::Reader::from_path(report.join("timeseries.csv"))
        .unwrap()
        .records()
        .all(|row| row.is_ok()));
    for chart in parallax::report::CHART_FILES {
        let bytes = std::fs::read(report.join(chart)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{chart}");
    }
}

#[test]
fn ctrl_c_writes_partial_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_run(dir.path());
    std::thread::sleep(Duration::from_secs(1));
    let interrupted = Instant::now();
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    let waited = interrupted.elapsed();

    assert_eq!(status.code(), Some(130));
    assert!(
        waited < Duration::from_secs(5),
        "exited {waited:?} after Ctrl-C"
    );
    let summary = read_summary(dir.path());
    assert_eq!(summary["run"]["partial"], true);
    assert!(summary["run"]["partial_reason"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    // The four requests in flight at the interrupt finished and were counted.
    assert_eq!(summary["all"]["ok"], 4);
    assert_eq!(summary["all"]["requests_intended"], 4);
    assert_report_files(dir.path());
}

#[test]
fn second_ctrl_c_cancels_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_run(dir.path());
    std::thread::sleep(Duration::from_secs(1));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();

    assert_eq!(status.code(), Some(130));
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "exited {:?} after the second Ctrl-C",
        second.elapsed()
    );
    let summary = read_summary(dir.path());
    assert_eq!(summary["all"]["cancelled"], 4);
    assert_eq!(summary["all"]["ok"], 0);
    assert_eq!(summary["all"]["requests_intended"], 4);
    assert_report_files(dir.path());
}

#[test]
fn killed_run_is_rebuilt_by_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_run(dir.path());
    // Past the first 3 s requests, so that the journal holds finished ones.
    std::thread::sleep(Duration::from_millis(4_500));
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert!(!dir.path().join("report/summary.json").exists());

    let output = Command::new(env!("CARGO_BIN_EXE_parallax"))
        .arg("report")
        .arg(dir.path().join("report"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("PARTIAL RUN"), "{stdout}");
    let summary = read_summary(dir.path());
    assert_eq!(summary["run"]["partial"], true);
    assert!(summary["run"]["partial_reason"]
        .as_str()
        .unwrap()
        .contains("journal"));
    assert_eq!(
        summary["all"]["ok"], 4,
        "the first round of requests finished before the kill"
    );
    assert_eq!(summary["logins"]["initial"], 4);
    assert_report_files(dir.path());
}
