//! Passwords and tokens never leave parallax: runs with known passwords,
//! successful and failed logins, and a literal secret in a request body,
//! then a search of stdout, stderr and every file under the report folder.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Every password these runs use or reject.
const PASSWORDS: &[&str] = &["demo-pass-", "Wrong-Secret-4711", "Body-Secret-0815"];
/// The base64 of `{"` that starts every JWT header and payload.
const JWT_PREFIX: &str = "eyJ";

fn run(dir: &Path, name: &str, scenario: &str, env: &[(&str, &str)]) -> Output {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, scenario).unwrap();
    Command::new(env!("CARGO_BIN_EXE_parallax"))
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(dir.join("reports").join(name))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the parallax binary runs")
}

fn assert_clean(label: &str, text: &str) {
    for secret in PASSWORDS.iter().chain([&JWT_PREFIX]) {
        assert!(!text.contains(secret), "{label} contains {secret:?}");
    }
}

fn assert_tree_clean(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_tree_clean(&path);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert_clean(
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
    }
}

#[test]
fn no_secret_reaches_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    let mut rows = String::from("username,password\n");
    for number in 1..=5 {
        rows.push_str(&format!("user{number}@demo.test,demo-pass-{number}\n"));
    }
    std::fs::write(&users, rows).unwrap();
    let wrong = dir.path().join("wrong.csv");
    std::fs::write(
        &wrong,
        "username,password\nuser1@demo.test,Wrong-Secret-4711\n",
    )
    .unwrap();

    let good = format!(
        r#"
[target]
base_url = "embedded"

[target.embedded]
token_lifetime_s = 2

[login]
credentials = {{ csv = "{}" }}

[[request]]
name = "create"
method = "POST"
path = "/api/items"
body = {{ name = "x", password = "Body-Secret-0815" }}

[[request]]
name = "list"
path = "/api/items"

[load]
model = "open"
users = 5
rate_per_s = 40
duration_s = 3
"#,
        users.display()
    );
    let rejected = good.replace(&users.display().to_string(), &wrong.display().to_string());
    let from_env = good.replace(
        &format!("credentials = {{ csv = \"{}\" }}", users.display()),
        "credentials = { username_env = \"SECRET_TEST_USER\", password_env = \"SECRET_TEST_PASSWORD\" }",
    );

    let outputs = [
        ("csv", run(dir.path(), "csv", &good, &[])),
        ("rejected", run(dir.path(), "rejected", &rejected, &[])),
        (
            "env",
            run(
                dir.path(),
                "env",
                &from_env,
                &[
                    ("SECRET_TEST_USER", "user2@demo.test"),
                    ("SECRET_TEST_PASSWORD", "demo-pass-2"),
                ],
            ),
        ),
    ];
    for (name, output) in &outputs {
        assert_clean(
            &format!("{name} stdout"),
            &String::from_utf8_lossy(&output.stdout),
        );
        assert_clean(
            &format!("{name} stderr"),
            &String::from_utf8_lossy(&output.stderr),
        );
    }
    // The runs did what they should: tokens expired and were renewed, and
    // the wrong password was rejected at the first login.
    assert_eq!(
        outputs[0].1.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&outputs[0].1.stderr)
    );
    assert_eq!(outputs[1].1.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&outputs[1].1.stderr).contains("HTTP 401"));
    assert_eq!(
        outputs[2].1.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&outputs[2].1.stderr)
    );
    assert!(String::from_utf8_lossy(&outputs[0].1.stderr)
        .contains("`request[0].body.password` holds a literal secret"));

    let reports = dir.path().join("reports");
    assert!(reports.join("csv/journal.jsonl").is_file());
    assert!(reports.join("env/summary.json").is_file());
    assert_tree_clean(&reports);
}
