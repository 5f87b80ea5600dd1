//! The run journal, `journal.jsonl` in the report folder: one JSON line when
//! the run starts, one per interval with that interval's counts and
//! histograms, and one at the end. Each line is flushed as it is written,
//! so a process that is killed (SIGKILL, out of memory) leaves what
//! `parallax report DIR` needs to finish the report, marked partial.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::engine::{self, IntervalSnapshot, RunResult};
use crate::load::Phase;
use crate::metrics::{EndpointStats, StatsRecord, StatsSet};
use crate::scenario::Plan;

/// File name of the journal inside a report folder.
pub const JOURNAL_FILE: &str = "journal.jsonl";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Start {
        parallax_version: String,
        scenario_file: String,
        /// The scenario text; it holds no credentials, which come from a CSV file or the environment.
        scenario_text: String,
        base_url: String,
        started_at_utc: String,
    },
    Interval {
        start_s: f64,
        end_s: f64,
        phase: Phase,
        /// When the load started, once it has.
        #[serde(default)]
        load_start_s: Option<f64>,
        stats: StatsRecord,
    },
    End {
        elapsed_s: f64,
        load_elapsed_s: f64,
        partial_reason: Option<String>,
    },
}

/// Appends records to a run's journal.
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Creates the journal in `dir` and writes the start record.
    pub fn create(
        dir: &Path,
        plan: &Plan,
        base_url: &str,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Journal> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report folder {}", dir.display()))?;
        let path = dir.join(JOURNAL_FILE);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut journal = Journal { file, path };
        journal.append(&Record::Start {
            parallax_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario_file: plan.source.display().to_string(),
            scenario_text: plan.source_text.clone(),
            base_url: base_url.to_string(),
            started_at_utc: started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })?;
        Ok(journal)
    }

    /// Writes one interval: its span since the run start, phase and counts.
    pub fn interval(
        &mut self,
        start_s: f64,
        end_s: f64,
        phase: Phase,
        load_start_s: Option<f64>,
        stats: &StatsSet,
    ) -> anyhow::Result<()> {
        self.append(&Record::Interval {
            start_s,
            end_s,
            phase,
            load_start_s,
            stats: stats.to_record(),
        })
    }

    /// Writes the end record once the run is over.
    pub fn end(
        &mut self,
        elapsed: Duration,
        load_elapsed: Duration,
        partial_reason: Option<&str>,
    ) -> anyhow::Result<()> {
        self.append(&Record::End {
            elapsed_s: elapsed.as_secs_f64(),
            load_elapsed_s: load_elapsed.as_secs_f64(),
            partial_reason: partial_reason.map(str::to_string),
        })
    }

    fn append(&mut self, record: &Record) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record).expect("journal records serialise");
        line.push(b'\n');
        // One write per line: a kill can cut at most the last line short.
        self.file
            .write_all(&line)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.file
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Rebuilds a run's result from the journal in `dir`. A run whose journal
/// has no end record is marked partial; a last line cut short is skipped.
/// Each interval is folded into its row and the run totals as it is read,
/// so memory follows the number of intervals only through their small rows.
pub fn rebuild(dir: &Path) -> anyhow::Result<RunResult> {
    let path = dir.join(JOURNAL_FILE);
    let file = File::open(&path).with_context(|| {
        format!(
            "cannot open {}: the folder holds no run journal (was it written by `parallax run`?)",
            path.display()
        )
    })?;
    let mut start = None;
    let mut load_start = None;
    let mut snapshots = Vec::new();
    let mut all = EndpointStats::default();
    let mut end = None;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let record = match serde_json::from_str::<Record>(&line) {
            Ok(record) => record,
            // A kill during a write leaves a partial last line; earlier lines are complete.
            Err(_) => {
                eprintln!(
                    "warning: {} line {} is incomplete or damaged; it is skipped",
                    path.display(),
                    index + 1
                );
                continue;
            }
        };
        match record {
            Record::Start {
                scenario_file,
                scenario_text,
                base_url,
                started_at_utc,
                ..
            } => {
                start = Some(RunStart::parse(
                    &path,
                    &scenario_file,
                    &scenario_text,
                    base_url,
                    &started_at_utc,
                )?);
            }
            Record::Interval {
                start_s,
                end_s,
                phase,
                load_start_s,
                stats,
            } => {
                let Some(start) = start.as_mut() else {
                    anyhow::bail!(
                        "{} line {}: an interval comes before the start record; the journal's first line is missing or damaged, so its report cannot be rebuilt",
                        path.display(),
                        index + 1
                    );
                };
                load_start = load_start.or(load_start_s);
                let stats = StatsSet::from_record(&stats).map_err(|problem| {
                    anyhow::anyhow!("{} line {}: {problem}", path.display(), index + 1)
                })?;
                if stats.endpoints.len() != start.endpoints.len() {
                    anyhow::bail!(
                        "{} line {}: the interval has {} endpoints but the stored scenario has {}",
                        path.display(),
                        index + 1,
                        stats.endpoints.len(),
                        start.endpoints.len()
                    );
                }
                snapshots.push(IntervalSnapshot::new(
                    start_s, end_s, phase, &stats, &mut all,
                ));
                start.totals.merge(&stats);
            }
            Record::End {
                elapsed_s,
                load_elapsed_s,
                partial_reason,
            } => end = Some((elapsed_s, load_elapsed_s, partial_reason)),
        }
    }
    let RunStart {
        plan,
        base_url,
        started_at,
        endpoints,
        totals,
    } = start.ok_or_else(|| anyhow::anyhow!("{} has no start record", path.display()))?;
    let last_end_s = snapshots.last().map_or(0.0, |snapshot| snapshot.end_s);
    let (elapsed, load_elapsed, partial_reason) = match end {
        Some((elapsed_s, load_elapsed_s, partial_reason)) => (
            Duration::from_secs_f64(elapsed_s),
            Duration::from_secs_f64(load_elapsed_s),
            partial_reason,
        ),
        None => {
            let load_start_s = load_start.unwrap_or(last_end_s);
            (
                Duration::from_secs_f64(last_end_s),
                Duration::from_secs_f64((last_end_s - load_start_s).max(0.0)),
                Some("the run ended without writing its reports (process killed?); rebuilt from its journal".to_string()),
            )
        }
    };
    let generator = engine::generator_report_from_totals(
        &plan.load,
        &totals,
        load_elapsed,
        partial_reason.is_some(),
    );
    Ok(RunResult {
        plan,
        base_url,
        endpoints,
        totals,
        intervals: snapshots,
        generator,
        started_at,
        elapsed,
        load_elapsed,
        partial_reason,
        // The journal keeps counts, not messages.
        errors: Vec::new(),
    })
}

/// The run's setup from the journal's start record, and the totals of the
/// intervals read so far.
struct RunStart {
    plan: Plan,
    base_url: String,
    started_at: chrono::DateTime<chrono::Utc>,
    endpoints: Vec<engine::EndpointInfo>,
    totals: StatsSet,
}

impl RunStart {
    fn parse(
        path: &Path,
        scenario_file: &str,
        scenario_text: &str,
        base_url: String,
        started_at_utc: &str,
    ) -> anyhow::Result<Self> {
        let plan =
            Plan::parse_for_report(scenario_text, Path::new(scenario_file)).map_err(|error| {
                anyhow::anyhow!(
                    "the scenario stored in {} is invalid: {error}",
                    path.display()
                )
            })?;
        let started_at = chrono::DateTime::parse_from_rfc3339(started_at_utc)
            .with_context(|| format!("{}: invalid start time {started_at_utc:?}", path.display()))?
            .with_timezone(&chrono::Utc);
        let endpoints = engine::endpoint_list(&plan);
        let totals = StatsSet::new(endpoints.len());
        Ok(RunStart {
            plan,
            base_url,
            started_at,
            endpoints,
            totals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{NotSentReason, Sample};
    use crate::scenario::tests::MINIMAL;

    /// Writes a journal with a start record and one interval per entry of
    /// `not_sent`, each with that many requests of `list` not sent.
    fn write_journal(dir: &Path, not_sent: &[u64]) {
        let plan = Plan::parse_for_report(MINIMAL, Path::new("journal.toml")).unwrap();
        let mut journal =
            Journal::create(dir, &plan, "http://127.0.0.1:1", chrono::Utc::now()).unwrap();
        for (index, count) in not_sent.iter().enumerate() {
            let mut stats = StatsSet::new(2);
            for _ in 0..*count {
                stats.record(&Sample::not_sent(1, NotSentReason::RunStopped));
            }
            let start_s = index as f64;
            journal
                .interval(start_s, start_s + 1.0, Phase::Steady, Some(0.0), &stats)
                .unwrap();
        }
    }

    #[test]
    fn rebuild_folds_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        write_journal(dir.path(), &[3, 5]);

        let result = rebuild(dir.path()).unwrap();

        assert_eq!(result.intervals.len(), 2);
        assert_eq!(result.intervals[0].endpoints[1].not_sent, 3);
        assert_eq!(result.intervals[1].endpoints[1].not_sent, 5);
        assert_eq!(result.intervals[1].all.not_sent, 5);
        assert_eq!(result.totals.endpoints[1].outcomes.not_sent(), 8);
        assert_eq!(result.load_elapsed, Duration::from_secs(2));
        assert!(result.is_partial(), "a journal without an end record");
    }

    #[test]
    fn rebuild_rejects_damaged_start() {
        let dir = tempfile::tempdir().unwrap();
        write_journal(dir.path(), &[1]);
        let path = dir.path().join(JOURNAL_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let damaged = text.replacen("{\"kind\":\"start\"", "{\"kind\":\"sta", 1);
        std::fs::write(&path, damaged).unwrap();

        let error = rebuild(dir.path()).unwrap_err().to_string();

        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("before the start record"), "{error}");
    }
}
