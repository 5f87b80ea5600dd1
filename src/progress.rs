//! The live display while a run goes on: an indicatif bar on a terminal,
//! plain periodic lines otherwise (CI logs), or nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::engine::{IntervalSnapshot, INTERVAL};
use crate::metrics::StatsSet;

/// How progress is shown while the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on stderr: for terminals.
    Bar,
    /// A plain line on stderr every few seconds: for CI logs.
    Lines,
    /// Nothing: for tests and `--quiet`.
    Quiet,
}

impl ProgressMode {
    /// A bar on a terminal, lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// The live display: an indicatif bar on a terminal, periodic lines otherwise.
pub struct Progress {
    mode: ProgressMode,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    line_every: Duration,
}

impl Progress {
    pub fn new(mode: ProgressMode, planned: Duration) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(planned.as_secs().max(1));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} s  {msg}",
                )
                .expect("the progress template is valid")
                .progress_chars("=> "),
            );
            bar
        });
        // Non-TTY logs get about twenty lines per run, at most one per second.
        let line_every = Duration::from_secs((planned.as_secs() / 20).clamp(1, 30));
        Progress {
            mode,
            bar,
            last_line: Instant::now(),
            line_every,
        }
    }

    pub fn update(&mut self, snapshot: &IntervalSnapshot, totals: &StatsSet, elapsed: Duration) {
        let length_s = (snapshot.end_s - snapshot.start_s).max(1e-3);
        let rate = snapshot.all.requests as f64 / length_s;
        let p99 = snapshot
            .all
            .client
            .p99_ms
            .map_or("-".to_string(), |ms| format!("{ms:.1} ms"));
        let all = totals.combined_outcomes();
        let errors = all.errors();
        let sent = all.sent().max(1);
        let message = format!(
            "{}  {rate:.0} req/s  p99 {p99}  errors {errors} ({:.1}%)  logins {}",
            snapshot.phase.name(),
            errors as f64 * 100.0 / sent as f64,
            totals.logins.attempts()
        );
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position(elapsed.as_secs());
                    bar.set_message(message);
                }
            }
            ProgressMode::Lines => {
                if self.last_line.elapsed() + INTERVAL / 2 >= self.line_every {
                    eprintln!("[{:>5.0} s] {message}", elapsed.as_secs_f64());
                    self.last_line = Instant::now();
                }
            }
            ProgressMode::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
