//! parallax: a load-testing and latency benchmarking harness for HTTP APIs
//! that log users in with a JWT and report their own processing time in the
//! response body.
//!
//! Every request is seen from two sides: the latency the client observed and
//! the latency the server reports in `apiCost.duration`. The pipeline is
//! `scenario` (TOML, validated into a [`scenario::Plan`]) → `engine` (virtual
//! users from `user`, driven by `load`) → `metrics` (HDR histograms merged per
//! interval) → `report` (console, JSON, CSV, PNG).

pub mod api;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod journal;
pub mod load;
pub mod metrics;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod secret;
pub mod target;
pub mod transport;
pub mod user;

/// Exit codes of the `parallax` binary, documented in the README.
pub mod exit_code {
    /// The run finished and every report was written.
    pub const OK: i32 = 0;
    /// The run finished but a `[checks]` limit (error rate or p99) failed.
    pub const CHECKS_FAILED: i32 = 1;
    /// The scenario, a credentials file, a command-line flag or the report
    /// folder is invalid, or `parallax report` found no usable journal.
    pub const BAD_INPUT: i32 = 2;
    /// The run could not start: the target is unreachable, the first login
    /// failed, or the run journal could not be created.
    pub const SETUP_FAILED: i32 = 3;
    /// The run finished but its reports could not be written.
    pub const REPORT_FAILED: i32 = 4;
    /// The run was interrupted (Ctrl-C or SIGTERM), or `parallax report`
    /// rebuilt a run that was killed; the reports are marked partial.
    pub const INTERRUPTED: i32 = 130;
}
