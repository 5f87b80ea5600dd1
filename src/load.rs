//! Load models and the arrival schedule of the open model.
//!
//! Closed model: a fixed number of virtual users, each sending its next
//! request when the previous one finished (plus optional pacing). Open model:
//! requests arrive on a schedule of intended start times, whatever the server
//! does, and idle users from a pool serve them.

use std::time::Duration;

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

    /// Returns every intended start offset as an iterator, with uniform spacing
    /// at the current rate: each gap is the inverse of the rate at the previous
    /// arrival. A constant 7 req/s over 20 s gives exactly 140 arrivals.
    pub fn arrivals(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut next = Some(0.0_f64);
        std::iter::from_fn(move || {
            let at_s = next?;
            let at = Duration::from_secs_f64(at_s);
            let Some(rate) = self.rate_at(at) else {
                next = None;
                return None;
            };
            // Accumulate in f64 seconds so that fractional gaps do not drift.
            next = Some(at_s + 1.0 / rate);
            Some(at)
        })
    }
}

/// The resolved load model of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadModel {
    /// `users` virtual users loop until `duration` has passed. With `pacing`,
    /// each user starts an iteration at most once per pacing interval.
    Closed {
        users: usize,
        duration: Duration,
        pacing: Option<Duration>,
        ramp_up: Duration,
    },
    /// Arrivals follow `schedule`; a pool of `users` logged-in users serves them.
    Open {
        users: usize,
        schedule: RateSchedule,
    },
}

impl LoadModel {
    pub fn users(&self) -> usize {
        match self {
            LoadModel::Closed { users, .. } | LoadModel::Open { users, .. } => *users,
        }
    }

    pub fn duration(&self) -> Duration {
        match self {
            LoadModel::Closed { duration, .. } => *duration,
            LoadModel::Open { schedule, .. } => schedule.duration(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            LoadModel::Closed { .. } => "closed",
            LoadModel::Open { .. } => "open",
        }
    }

    /// What client latency is measured from, as written in reports.
    pub fn latency_origin(&self) -> &'static str {
        match self {
            LoadModel::Closed { .. } => {
                "actual send (closed model, no coordinated-omission correction)"
            }
            LoadModel::Open { .. } => {
                "intended start on the arrival schedule (coordinated-omission safe)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_rate_counts() {
        let seven = RateSchedule::constant(7.0, Duration::from_secs(20));
        assert_eq!(seven.arrivals().count(), 140);
        let half = RateSchedule::constant(0.5, Duration::from_secs(20));
        assert_eq!(half.arrivals().count(), 10);
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
        let count = ramp.arrivals().count();
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
        assert_eq!(steps.arrivals().count(), 10 + 100);
    }
}
