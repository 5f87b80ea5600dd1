//! Load models and the arrival schedule of the open model.
//!
//! Closed model: a fixed number of virtual users, each sending its next
//! request when the previous one finished (plus optional pacing). Open model:
//! requests arrive on a schedule of intended start times, whatever the server
//! does, and idle users from a pool serve them.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// A distribution of durations, in milliseconds: service times of the
/// embedded target and think times of the closed model.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum Distribution {
    Constant {
        ms: f64,
    },
    Uniform {
        min_ms: f64,
        max_ms: f64,
    },
    Exponential {
        mean_ms: f64,
    },
    /// Log-normal with the given median and 99th percentile.
    Lognormal {
        median_ms: f64,
        p99_ms: f64,
    },
}

/// The 99th percentile of the standard normal distribution.
const Z_99: f64 = 2.326_347_874;
const MAX_DELAY_MS: f64 = 3_600_000.0;

impl Distribution {
    /// Checks that the parameters describe a distribution on 0..=1 hour.
    pub fn validate(&self) -> Result<(), String> {
        let values: &[(&str, f64)] = match self {
            Distribution::Constant { ms } => &[("ms", *ms)],
            Distribution::Uniform { min_ms, max_ms } => &[("min_ms", *min_ms), ("max_ms", *max_ms)],
            Distribution::Exponential { mean_ms } => &[("mean_ms", *mean_ms)],
            Distribution::Lognormal { median_ms, p99_ms } => {
                &[("median_ms", *median_ms), ("p99_ms", *p99_ms)]
            }
        };
        for (name, value) in values {
            if !value.is_finite() || *value < 0.0 || *value > MAX_DELAY_MS {
                return Err(format!(
                    "`{name}` must be from 0 to {MAX_DELAY_MS} milliseconds, got {value}."
                ));
            }
        }
        match self {
            Distribution::Uniform { min_ms, max_ms } if min_ms > max_ms => {
                Err(format!("`min_ms` ({min_ms}) is larger than `max_ms` ({max_ms}). Swap them."))
            }
            Distribution::Lognormal { median_ms, p99_ms } if p99_ms < median_ms || *median_ms <= 0.0 => Err(format!(
                "`p99_ms` ({p99_ms}) must be at least `median_ms` ({median_ms}), and the median above 0."
            )),
            _ => Ok(()),
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let ms = match *self {
            Distribution::Constant { ms } => ms,
            Distribution::Uniform { min_ms, max_ms } => {
                min_ms + (max_ms - min_ms) * rng.gen::<f64>()
            }
            Distribution::Exponential { mean_ms } => -mean_ms * (1.0 - rng.gen::<f64>()).ln(),
            Distribution::Lognormal { median_ms, p99_ms } => {
                let sigma = (p99_ms / median_ms).ln() / Z_99;
                median_ms * (sigma * standard_normal(rng)).exp()
            }
        };
        Duration::from_secs_f64(ms.clamp(0.0, MAX_DELAY_MS) / 1000.0)
    }
}

/// One draw from N(0, 1) by the Box-Muller transform.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// How the rate moves from the previous stage's rate to this stage's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ramp {
    /// The stage's rate applies from its first instant.
    Step,
    /// The rate moves linearly from the previous rate to the stage's rate.
    Linear,
}

/// One stage of an open-model schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub rate_per_s: f64,
    pub ramp: Ramp,
}

/// A piecewise-linear arrival rate over time. Every rate is positive.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSchedule {
    start_rate_per_s: f64,
    stages: Vec<Stage>,
}

impl RateSchedule {
    /// Builds a schedule; the caller has checked that every rate is positive and finite.
    pub fn new(start_rate_per_s: f64, stages: Vec<Stage>) -> Self {
        RateSchedule {
            start_rate_per_s,
            stages,
        }
    }

    pub fn constant(rate_per_s: f64, duration: Duration) -> Self {
        RateSchedule::new(
            rate_per_s,
            vec![Stage {
                duration,
                rate_per_s,
                ramp: Ramp::Step,
            }],
        )
    }

    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|stage| stage.duration).sum()
    }

    /// The target rate at `elapsed` since the start, or `None` past the end.
    pub fn rate_at(&self, elapsed: Duration) -> Option<f64> {
        let mut stage_start = Duration::ZERO;
        let mut previous_rate = self.start_rate_per_s;
        for stage in &self.stages {
            let stage_end = stage_start + stage.duration;
            if elapsed < stage_end {
                return Some(match stage.ramp {
                    Ramp::Step => stage.rate_per_s,
                    Ramp::Linear => {
                        let progress =
                            (elapsed - stage_start).as_secs_f64() / stage.duration.as_secs_f64();
                        previous_rate + (stage.rate_per_s - previous_rate) * progress
                    }
                });
            }
            stage_start = stage_end;
            previous_rate = stage.rate_per_s;
        }
        None
    }

    /// The rate at the start and at the end of each stage, with the stage's
    /// start offset and length in seconds.
    fn segments(&self) -> impl Iterator<Item = (f64, f64, f64, f64)> + '_ {
        let mut start_s = 0.0;
        let mut previous_rate = self.start_rate_per_s;
        self.stages.iter().map(move |stage| {
            let from = match stage.ramp {
                Ramp::Step => stage.rate_per_s,
                Ramp::Linear => previous_rate,
            };
            let length_s = stage.duration.as_secs_f64();
            let segment = (start_s, length_s, from, stage.rate_per_s);
            start_s += length_s;
            previous_rate = stage.rate_per_s;
            segment
        })
    }

    /// Expected arrivals over the whole schedule: the integral of the rate.
    pub fn expected_arrivals(&self) -> f64 {
        self.segments()
            .map(|(_, length, from, to)| (from + to) / 2.0 * length)
            .sum()
    }

    /// The offset at which the integral of the rate reaches `count`, or
    /// `None` when the schedule ends first. Within a linear stage the
    /// integral is quadratic in time, so this solves a quadratic equation.
    fn time_of(&self, count: f64) -> Option<f64> {
        let mut remaining = count;
        for (start, length, from, to) in self.segments() {
            let area = (from + to) / 2.0 * length;
            if remaining < area {
                let slope = (to - from) / length;
                let offset = if slope.abs() < 1e-12 {
                    remaining / from
                } else {
                    // from * t + slope / 2 * t^2 = remaining, for the root in [0, length].
                    (-from + (from * from + 2.0 * slope * remaining).max(0.0).sqrt()) / slope
                };
                return Some(start + offset.clamp(0.0, length));
            }
            remaining -= area;
        }
        None
    }

    /// Returns every intended start offset, in order.
    ///
    /// Arrivals are placed by the integral of the rate, so that a low rate
    /// at the start of a ramp cannot skip the stages that follow:
    ///
    /// 1. Uniform: arrival `k` comes when the integral reaches `k + 0.5`, so
    ///    a schedule expecting `n` arrivals gives `n` rounded to the nearest
    ///    whole number (7 req/s for 20 s gives 140; 0.5 req/s for 20 s, 10).
    /// 2. Poisson: the integral advances by an exponential draw with mean 1
    ///    per arrival, from a seeded generator, so the same seed gives the
    ///    same schedule.
    pub fn arrivals(&self, process: ArrivalProcess) -> impl Iterator<Item = Duration> + '_ {
        let mut rng = match process {
            ArrivalProcess::Uniform => None,
            ArrivalProcess::Poisson { seed } => Some(rand::rngs::SmallRng::seed_from_u64(seed)),
        };
        let mut count = match rng {
            None => 0.5,
            Some(_) => 0.0,
        };
        std::iter::from_fn(move || {
            match &mut rng {
                None => {}
                Some(rng) => count += -(1.0 - rng.gen::<f64>()).ln(),
            }
            let at = self.time_of(count)?;
            if rng.is_none() {
                count += 1.0;
            }
            Some(Duration::from_secs_f64(at))
        })
    }

    /// Planned arrivals over the whole schedule.
    pub fn planned_arrivals(&self, process: ArrivalProcess) -> u64 {
        self.arrivals(process).count() as u64
    }

    /// The phase at `elapsed`: ramp up or down during a linear stage whose
    /// rate rises or falls, steady otherwise, draining past the end.
    pub fn phase_at(&self, elapsed: Duration) -> Phase {
        let mut stage_start = Duration::ZERO;
        let mut previous_rate = self.start_rate_per_s;
        for stage in &self.stages {
            if elapsed < stage_start + stage.duration {
                return match stage.ramp {
                    Ramp::Linear if stage.rate_per_s > previous_rate => Phase::RampUp,
                    Ramp::Linear if stage.rate_per_s < previous_rate => Phase::RampDown,
                    _ => Phase::Steady,
                };
            }
            stage_start += stage.duration;
            previous_rate = stage.rate_per_s;
        }
        Phase::Draining
    }
}

/// How arrivals are spaced in the open model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalProcess {
    /// Evenly spaced at the current rate.
    Uniform,
    /// Exponentially distributed gaps (a Poisson process), reproducible from the seed.
    Poisson { seed: u64 },
}

/// The phase of a run, shown in the progress display and tagged in the time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Users log in before the load starts.
    LoggingIn,
    RampUp,
    Steady,
    RampDown,
    /// The load has ended; in-flight requests are finishing.
    Draining,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::LoggingIn => "logging_in",
            Phase::RampUp => "ramp_up",
            Phase::Steady => "steady",
            Phase::RampDown => "ramp_down",
            Phase::Draining => "draining",
        }
    }
}

/// The closed model: a fixed number of users, each sending its next request
/// when the previous one finished.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedModel {
    pub users: usize,
    /// Total run time, ramps included.
    pub duration: Duration,
    /// Users start evenly spread over this time.
    pub ramp_up: Duration,
    /// Users stop evenly spread over this time, at the end of `duration`.
    pub ramp_down: Duration,
    /// Each user starts an iteration at most once per pacing interval. The
    /// corrected view uses it as the expected interval.
    pub pacing: Option<Duration>,
    /// A pause after each request, drawn per iteration.
    pub think_time: Option<Distribution>,
    /// Rate limit over all users, in requests per second.
    pub rate_cap_per_s: Option<f64>,
    /// Rate limit of each user, in requests per second.
    pub user_rate_cap_per_s: Option<f64>,
}

impl ClosedModel {
    /// When user `index` (of `users`) starts and stops, relative to the run start.
    pub fn user_window(&self, index: usize) -> (Duration, Duration) {
        let share = index as f64 / self.users as f64;
        let start = self.ramp_up.mul_f64(share);
        // Users stop in the order they started: user 0 first, the last one at the end.
        let stop = self.duration
            - self
                .ramp_down
                .mul_f64((1.0 - share - 1.0 / self.users as f64).max(0.0));
        (start, stop)
    }

    pub fn phase_at(&self, elapsed: Duration) -> Phase {
        if elapsed >= self.duration {
            Phase::Draining
        } else if elapsed < self.ramp_up {
            Phase::RampUp
        } else if elapsed >= self.duration - self.ramp_down {
            Phase::RampDown
        } else {
            Phase::Steady
        }
    }
}

/// The open model: arrivals follow a schedule, whatever the server does.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenModel {
    /// Users logged in before the start.
    pub users: usize,
    /// The pool grows up to this many users (each new one logging in) when
    /// no user is free at an arrival.
    pub max_users: usize,
    pub schedule: RateSchedule,
    pub process: ArrivalProcess,
    /// An arrival that waits longer than this for a free user is counted as
    /// not sent (no free user); `None` waits until the end of the run.
    pub max_queue_wait: Option<Duration>,
}

/// The resolved load model of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadModel {
    Closed(ClosedModel),
    Open(OpenModel),
}

impl LoadModel {
    /// Users at the start (the open model's pool may grow).
    pub fn users(&self) -> usize {
        match self {
            LoadModel::Closed(model) => model.users,
            LoadModel::Open(model) => model.users,
        }
    }

    pub fn duration(&self) -> Duration {
        match self {
            LoadModel::Closed(model) => model.duration,
            LoadModel::Open(model) => model.schedule.duration(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            LoadModel::Closed(_) => "closed",
            LoadModel::Open(_) => "open",
        }
    }

    pub fn phase_at(&self, elapsed: Duration) -> Phase {
        match self {
            LoadModel::Closed(model) => model.phase_at(elapsed),
            LoadModel::Open(model) => model.schedule.phase_at(elapsed),
        }
    }

    /// How the corrected latency is obtained, as written in reports.
    pub fn correction(&self) -> &'static str {
        match self {
            LoadModel::Open(_) => "open model: corrected latency runs from each request's intended start on the arrival schedule; raw latency from the actual send",
            LoadModel::Closed(ClosedModel { pacing: Some(_), .. }) => "closed model with pacing: corrected latency adds the requests a stalled user could not send, at the pacing interval (HdrHistogram record_correct); raw latency from the actual send",
            LoadModel::Closed(_) => "none: closed model without pacing, so only raw latency from the actual send is reported; it understates latency when the server stalls (coordinated omission)",
        }
    }

    /// True when the run records a corrected view next to the raw one.
    pub fn has_correction(&self) -> bool {
        !matches!(self, LoadModel::Closed(ClosedModel { pacing: None, .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_median_matches() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let distribution = Distribution::Lognormal {
            median_ms: 10.0,
            p99_ms: 40.0,
        };
        let mut samples: Vec<f64> = (0..20_000)
            .map(|_| distribution.sample(&mut rng).as_secs_f64() * 1000.0)
            .collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        let p99 = samples[samples.len() * 99 / 100];
        assert!((9.5..10.5).contains(&median), "{median}");
        assert!((36.0..44.0).contains(&p99), "{p99}");
    }

    #[test]
    fn invalid_distributions_are_rejected() {
        assert!(Distribution::Uniform {
            min_ms: 5.0,
            max_ms: 1.0
        }
        .validate()
        .is_err());
        assert!(Distribution::Constant { ms: -1.0 }.validate().is_err());
        assert!(Distribution::Constant { ms: f64::NAN }.validate().is_err());
        assert!(Distribution::Lognormal {
            median_ms: 10.0,
            p99_ms: 5.0
        }
        .validate()
        .is_err());
        assert!(Distribution::Exponential { mean_ms: 3.0 }
            .validate()
            .is_ok());
    }

    #[test]
    fn fractional_rate_counts() {
        let seven = RateSchedule::constant(7.0, Duration::from_secs(20));
        assert_eq!(seven.arrivals(ArrivalProcess::Uniform).count(), 140);
        let half = RateSchedule::constant(0.5, Duration::from_secs(20));
        assert_eq!(half.arrivals(ArrivalProcess::Uniform).count(), 10);
    }

    #[test]
    fn linear_ramp_interpolates() {
        let ramp = RateSchedule::new(
            10.0,
            vec![Stage {
                duration: Duration::from_secs(20),
                rate_per_s: 200.0,
                ramp: Ramp::Linear,
            }],
        );
        assert_eq!(ramp.rate_at(Duration::ZERO), Some(10.0));
        assert_eq!(ramp.rate_at(Duration::from_secs(10)), Some(105.0));
        assert_eq!(ramp.rate_at(Duration::from_secs(20)), None);
        // The mean rate is 105 req/s, so about 2100 arrivals in 20 s.
        let count = ramp.arrivals(ArrivalProcess::Uniform).count();
        assert!((2080..=2120).contains(&count), "{count}");
    }

    #[test]
    fn step_stages_follow_each_other() {
        let steps = RateSchedule::new(
            5.0,
            vec![
                Stage {
                    duration: Duration::from_secs(2),
                    rate_per_s: 5.0,
                    ramp: Ramp::Step,
                },
                Stage {
                    duration: Duration::from_secs(2),
                    rate_per_s: 50.0,
                    ramp: Ramp::Step,
                },
            ],
        );
        assert_eq!(steps.duration(), Duration::from_secs(4));
        assert_eq!(steps.arrivals(ArrivalProcess::Uniform).count(), 10 + 100);
    }

    #[test]
    fn low_start_rate_keeps_later_stages() {
        // A 0.1 req/s start must not make the first gap jump over the ramp.
        let ramp = RateSchedule::new(
            0.1,
            vec![Stage {
                duration: Duration::from_secs(10),
                rate_per_s: 100.0,
                ramp: Ramp::Linear,
            }],
        );
        // The integral is 500.5; arrival k comes at k + 0.5, so 500 arrivals.
        assert_eq!(ramp.arrivals(ArrivalProcess::Uniform).count(), 500);
        let steps = RateSchedule::new(
            0.2,
            vec![
                Stage {
                    duration: Duration::from_secs(3),
                    rate_per_s: 0.2,
                    ramp: Ramp::Step,
                },
                Stage {
                    duration: Duration::from_secs(3),
                    rate_per_s: 100.0,
                    ramp: Ramp::Step,
                },
            ],
        );
        let arrivals: Vec<Duration> = steps.arrivals(ArrivalProcess::Uniform).collect();
        assert_eq!(arrivals.len(), 301);
        assert_eq!(arrivals[0], Duration::from_millis(2500));
        assert!(arrivals[1] >= Duration::from_secs(3));
    }

    #[test]
    fn uniform_counts_round_to_nearest() {
        let count = |rate: f64, seconds: f64| {
            RateSchedule::constant(rate, Duration::from_secs_f64(seconds))
                .arrivals(ArrivalProcess::Uniform)
                .count()
        };
        assert_eq!(count(0.7, 3.0), 2);
        assert_eq!(count(33.3, 2.5), 83);
        assert_eq!(count(0.01, 2.0), 0);
        assert_eq!(count(100.0, 10.0), 1000);
    }

    #[test]
    fn vanishing_ramp_does_not_panic() {
        // Rounding once made the quadratic's discriminant negative here.
        let schedule = RateSchedule::new(
            1.0,
            vec![
                Stage {
                    duration: Duration::from_secs(1),
                    rate_per_s: 0.030801751210771795,
                    ramp: Ramp::Step,
                },
                Stage {
                    duration: Duration::from_secs_f64(30.46568655),
                    rate_per_s: 1e-300,
                    ramp: Ramp::Linear,
                },
            ],
        );
        assert!(schedule.arrivals(ArrivalProcess::Uniform).count() <= 2);
    }

    #[test]
    fn poisson_arrivals_are_seeded() {
        let schedule = RateSchedule::constant(100.0, Duration::from_secs(100));
        let first: Vec<Duration> = schedule
            .arrivals(ArrivalProcess::Poisson { seed: 3 })
            .take(50)
            .collect();
        let again: Vec<Duration> = schedule
            .arrivals(ArrivalProcess::Poisson { seed: 3 })
            .take(50)
            .collect();
        assert_eq!(first, again);
        let count = schedule.planned_arrivals(ArrivalProcess::Poisson { seed: 3 });
        // 10,000 expected; a Poisson count has a standard deviation of 100.
        assert!((9_600..=10_400).contains(&count), "{count}");
    }

    #[test]
    fn phases_follow_stages() {
        let schedule = RateSchedule::new(
            10.0,
            vec![
                Stage {
                    duration: Duration::from_secs(10),
                    rate_per_s: 100.0,
                    ramp: Ramp::Linear,
                },
                Stage {
                    duration: Duration::from_secs(10),
                    rate_per_s: 100.0,
                    ramp: Ramp::Step,
                },
                Stage {
                    duration: Duration::from_secs(10),
                    rate_per_s: 5.0,
                    ramp: Ramp::Linear,
                },
            ],
        );
        assert_eq!(schedule.phase_at(Duration::from_secs(5)), Phase::RampUp);
        assert_eq!(schedule.phase_at(Duration::from_secs(15)), Phase::Steady);
        assert_eq!(schedule.phase_at(Duration::from_secs(25)), Phase::RampDown);
        assert_eq!(schedule.phase_at(Duration::from_secs(30)), Phase::Draining);
    }

    #[test]
    fn closed_ramps_spread_users() {
        let model = ClosedModel {
            users: 4,
            duration: Duration::from_secs(20),
            ramp_up: Duration::from_secs(4),
            ramp_down: Duration::from_secs(4),
            pacing: None,
            think_time: None,
            rate_cap_per_s: None,
            user_rate_cap_per_s: None,
        };
        assert_eq!(
            model.user_window(0),
            (Duration::ZERO, Duration::from_secs(17))
        );
        assert_eq!(
            model.user_window(3),
            (Duration::from_secs(3), Duration::from_secs(20))
        );
        assert_eq!(model.phase_at(Duration::from_secs(1)), Phase::RampUp);
        assert_eq!(model.phase_at(Duration::from_secs(10)), Phase::Steady);
        assert_eq!(model.phase_at(Duration::from_secs(17)), Phase::RampDown);
    }
}
