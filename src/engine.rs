//! The engine: starts the target if embedded, logs users in, drives the load
//! model, collects interval snapshots and returns a [`RunResult`].
//!
//! The run ends in one of three ways:
//!
//! 1. The load finishes. Closed-model users stop at the end of their window
//!    after their current request. Open-model arrivals still queued when the
//!    schedule ends are counted as not sent (run stopped). Either way,
//!    in-flight requests get the request timeout plus one second to finish.
//! 2. A first interrupt (Ctrl-C, SIGTERM or [`RunOptions::interrupt`]): no
//!    new request starts, and in-flight ones get [`INTERRUPT_GRACE`].
//! 3. A second interrupt, or the end of either grace period: in-flight
//!    requests are abandoned and counted as cancelled.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock;
use crate::journal::Journal;
use crate::load::{ClosedModel, LoadModel, OpenModel, Phase};
use crate::metrics::{
    EndpointStats, LoginReason, NotSentReason, Percentiles, Recorder, Sample, StatsSet,
};
use crate::progress::Progress;
pub use crate::progress::ProgressMode;
use crate::scenario::{Plan, TargetPlan};
use crate::target::DemoTarget;
use crate::transport::{Client, ClientOptions};
use crate::user::{rate_limiter, Arrival, ClosedRun, LoginFailure, Pool, Shared, VirtualUser};

/// How long in-flight requests may finish after a first interrupt.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// Length of one interval snapshot.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Schedule lag p99 above which the generator warns that it fell behind.
pub const LAG_WARNING: Duration = Duration::from_millis(10);
/// Achieved rate below this share of the target rate triggers a warning.
const RATE_WARNING_SHARE: f64 = 0.99;
/// How many users log in at the same time before an open-model run starts.
const LOGIN_CONCURRENCY: usize = 64;
/// Recorder shards per runtime worker thread, and the maximum in all. Each
/// shard contains a full set of histograms, which widen to the highest
/// latency they have seen, so shards beyond what the workers contend for
/// only cost memory.
const RECORDER_SHARDS_PER_WORKER: usize = 2;
const RECORDER_SHARDS_MAX: usize = 16;

/// A failure that prevents the run from starting.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot start the embedded target on 127.0.0.1: {0}")]
    EmbeddedTarget(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot reach the target at {url}: {detail}. Check that the server is running and that target.base_url (or --target) is right.")]
    Unreachable { url: String, detail: String },
    #[error("cannot start the run journal: {0:#}")]
    Journal(anyhow::Error),
    #[error("the first login ({username} at {url}) failed: {detail}. Check the credentials and the [login] settings: path, username_field, password_field, token_pointer.")]
    LoginRejected {
        username: String,
        url: String,
        detail: String,
    },
}

/// Settings of one run that do not come from the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Replaces the scenario's target with this base URL.
    pub target_override: Option<String>,
    pub progress: ProgressMode,
    /// Cancelling it acts like a first Ctrl-C.
    pub interrupt: CancellationToken,
    /// Listen for Ctrl-C and SIGTERM.
    pub handle_signals: bool,
    /// Seed of the request mix; the same seed picks the same requests.
    pub seed: u64,
    /// Write the run journal into this folder as the run goes.
    pub journal_dir: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            target_override: None,
            progress: ProgressMode::Quiet,
            interrupt: CancellationToken::new(),
            handle_signals: false,
            seed: 1,
            journal_dir: None,
        }
    }
}

/// An endpoint as shown in reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub name: String,
    pub method: String,
    pub path: String,
}

/// A few figures of one endpoint over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IntervalRow {
    /// Requests sent whose outcome came in this interval.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub not_sent: u64,
    /// Raw client latency of successful requests.
    pub client: Median99,
    /// Corrected client latency of successful requests (empty without correction).
    pub corrected: Median99,
    pub server: Median99,
    pub overhead: Median99,
}

impl IntervalRow {
    pub fn of(stats: &crate::metrics::EndpointStats) -> Self {
        IntervalRow {
            requests: stats.outcomes.sent(),
            ok: stats.outcomes.ok,
            errors: stats.outcomes.errors(),
            not_sent: stats.outcomes.not_sent(),
            client: Median99::of(&stats.client_ok),
            corrected: Median99::of(&stats.corrected_ok),
            server: Median99::of(&stats.server_ok),
            overhead: Median99::of_signed(&stats.overhead),
        }
    }
}

/// The two percentiles an interval keeps, in milliseconds. A run keeps every
/// interval in memory until the reports are written, so a row stays small:
/// the time series and the charts use no other percentile.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Median99 {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Median99 {
    fn of(histogram: &hdrhistogram::Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Median99::default();
        }
        let at = |q: f64| {
            Some(crate::metrics::us_to_ms(
                histogram.value_at_quantile(q) as f64
            ))
        };
        Median99 {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }

    fn of_signed(histogram: &crate::metrics::SignedHistogram) -> Self {
        let at = |q: f64| {
            histogram
                .value_at_quantile(q)
                .map(|us| crate::metrics::us_to_ms(us as f64))
        };
        Median99 {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }
}

/// One interval of the run: its span since the start, in seconds, and its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalSnapshot {
    pub start_s: f64,
    pub end_s: f64,
    pub phase: Phase,
    pub endpoints: Vec<IntervalRow>,
    pub all: IntervalRow,
    /// The tightest server clock estimate of the interval.
    pub clock: Option<crate::metrics::ClockSample>,
}

impl IntervalSnapshot {
    /// Builds the rows of one interval from its stats. `all` receives the
    /// request endpoints combined, and keeps its histograms for the next call.
    pub fn new(
        start_s: f64,
        end_s: f64,
        phase: Phase,
        stats: &StatsSet,
        all: &mut EndpointStats,
    ) -> Self {
        stats.combine_requests_into(all);
        IntervalSnapshot {
            start_s,
            end_s,
            phase,
            endpoints: stats.endpoints.iter().map(IntervalRow::of).collect(),
            all: IntervalRow::of(all),
            clock: stats.clock_best,
        }
    }
}

/// How well the load generator kept to the plan, so that a slow generator is
/// never mistaken for a slow server.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorReport {
    /// Mean planned request rate: open model, planned arrivals over the
    /// schedule; closed model with pacing and no ramps, users over the pacing
    /// interval within the rate caps; otherwise none.
    pub target_rate_per_s: Option<f64>,
    /// Requests sent (logins excluded) over the planned duration, or over
    /// the elapsed time of a run cut short.
    pub achieved_rate_per_s: f64,
    /// Open model: arrivals on the schedule.
    pub planned_requests: Option<u64>,
    /// Open model: arrivals that found no idle user when they were due.
    pub arrivals_without_free_user: u64,
    /// Users that took part, the open model's grown pool included.
    pub users_started: usize,
    /// Open model: actual send minus intended start, in milliseconds.
    pub schedule_lag: Percentiles,
    pub warnings: Vec<String>,
}

/// Everything a finished (or cut short) run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub plan: Plan,
    pub base_url: String,
    pub endpoints: Vec<EndpointInfo>,
    pub totals: StatsSet,
    pub intervals: Vec<IntervalSnapshot>,
    pub generator: GeneratorReport,
    /// When the run started (the logins before the load included).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// From the start of the run to the last outcome, logins included.
    pub elapsed: Duration,
    /// From the start of the load (after the logins) to the last outcome.
    pub load_elapsed: Duration,
    /// Why the run was cut short; `None` for a complete run.
    pub partial_reason: Option<String>,
    /// Kinds of requests that got no response, with their messages.
    pub errors: Vec<crate::metrics::ErrorKind>,
}

impl RunResult {
    pub fn is_partial(&self) -> bool {
        self.partial_reason.is_some()
    }
}

/// Runs a plan to the end and returns what was measured.
pub async fn run(plan: Plan, options: RunOptions) -> Result<RunResult, SetupError> {
    let (base_url, embedded) = start_target(&plan, &options).await?;
    let result = run_against(plan, &options, &base_url).await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    result
}

async fn start_target(
    plan: &Plan,
    options: &RunOptions,
) -> Result<(String, Option<DemoTarget>), SetupError> {
    if let Some(url) = &options.target_override {
        return Ok((url.trim_end_matches('/').to_string(), None));
    }
    match &plan.target {
        TargetPlan::Url(url) => Ok((url.clone(), None)),
        TargetPlan::Embedded(config) => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let target = DemoTarget::start((**config).clone(), addr)
                .await
                .map_err(SetupError::EmbeddedTarget)?;
            Ok((target.base_url(), Some(target)))
        }
    }
}

pub fn endpoint_list(plan: &Plan) -> Vec<EndpointInfo> {
    let login = EndpointInfo {
        name: "login".into(),
        method: "POST".into(),
        path: plan.login.path.clone(),
    };
    let requests = plan.requests.iter().map(|request| EndpointInfo {
        name: request.name.clone(),
        method: request.method.to_string(),
        path: request.path.clone(),
    });
    std::iter::once(login).chain(requests).collect()
}

/// Builds the client every user connects through. It goes straight to the
/// target, because a load test measures the target and not a proxy named in
/// the environment.
fn build_client(plan: &Plan, base_url: &str) -> Result<Arc<Client>, SetupError> {
    if plan.insecure_skip_tls_verify {
        eprintln!("WARNING: TLS certificate verification is OFF (target.insecure_skip_tls_verify = true): any server can pose as the target and read the credentials");
    }
    let options = ClientOptions {
        connect_timeout: plan.connect_timeout,
        request_timeout: plan.request_timeout,
        insecure_skip_tls_verify: plan.insecure_skip_tls_verify,
        max_body_bytes: plan.response.max_body_bytes,
    };
    Client::new(base_url, &options)
        .map(Arc::new)
        .map_err(SetupError::Client)
}

/// What the open model's dispatcher thread counted.
#[derive(Debug, Default)]
struct DispatchCounts {
    without_free_user: AtomicU64,
    users_started: AtomicUsize,
}

async fn run_against(
    plan: Plan,
    options: &RunOptions,
    base_url: &str,
) -> Result<RunResult, SetupError> {
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(warning) = plain_http_warning(base_url) {
        eprintln!("warning: {warning}");
    }
    let max_users = match &plan.load {
        LoadModel::Open(model) => model.max_users,
        LoadModel::Closed(model) => model.users,
    };
    if let Some(warning) = ensure_file_limit(max_users) {
        eprintln!("warning: {warning}");
    }
    let endpoints = endpoint_list(&plan);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let shards = (workers * RECORDER_SHARDS_PER_WORKER).min(RECORDER_SHARDS_MAX);
    let recorder = Arc::new(Recorder::new(endpoints.len(), shards));
    let client = build_client(&plan, base_url)?;
    let shared = Shared::new(&plan, base_url, client, Arc::clone(&recorder)).map_err(|detail| {
        SetupError::Unreachable {
            url: base_url.to_string(),
            detail,
        }
    })?;
    let shared = Arc::new(shared);
    if options.handle_signals {
        spawn_signal_listener(options.interrupt.clone(), shared.abort.clone());
    }
    let mut users: Vec<VirtualUser> = (0..plan.load.users())
        .map(|id| VirtualUser::new(id, Arc::clone(&shared), options.seed))
        .collect();
    let run_start = Instant::now();
    let started_at = chrono::Utc::now();

    // The first user's login doubles as the check that the target is up and
    // the login settings work; its token is kept, so it counts as that user's login.
    let first = &mut users[0];
    let first_login = tokio::select! {
        result = first.login(LoginReason::Initial) => Some(result),
        _ = options.interrupt.cancelled() => None,
    };
    if let Some(Err(failure)) = first_login {
        return Err(setup_error(
            failure,
            first.username(),
            base_url,
            &plan.login.path,
        ));
    }

    let journal = match &options.journal_dir {
        Some(dir) => {
            Some(Journal::create(dir, &plan, base_url, started_at).map_err(SetupError::Journal)?)
        }
        None => None,
    };
    let load_start = Arc::new(OnceLock::new());
    let collector_done = CancellationToken::new();
    let collector = Collector {
        recorder: Arc::clone(&recorder),
        endpoint_count: endpoints.len(),
        start: run_start,
        load_start: Arc::clone(&load_start),
        load: plan.load.clone(),
        progress: options.progress,
        journal,
    };
    // Once a second the collector merges every histogram and writes the
    // journal. It runs on a thread of its own, so that this work does not
    // hold up the users' tasks and delay the requests they send.
    let (collected, collector_result) = tokio::sync::oneshot::channel();
    let done = collector_done.clone();
    std::thread::Builder::new()
        .name("parallax-collect".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime with a timer builds");
            let _ = collected.send(runtime.block_on(collect(collector, done)));
        })
        .expect("the operating system starts a thread");
    // Stops the collector thread even when this future is dropped mid-run.
    let _stop_collector = collector_done.clone().drop_guard();

    // Every user logs in before the load starts, so that a login storm does
    // not disturb the first seconds of the measured load.
    let rest = users.split_off(1);
    let logged_in = match first_login {
        None => None,
        Some(_) => tokio::select! {
            ready = log_in_all(rest) => Some(ready),
            _ = options.interrupt.cancelled() => None,
        },
    };
    let counts = Arc::new(DispatchCounts::default());
    let (partial_reason, load_elapsed) = match logged_in {
        // Interrupted while logging in: no load was sent, the logins are reported.
        None => (
            Some("interrupted before the load started".to_string()),
            Duration::ZERO,
        ),
        Some(ready) => {
            users.extend(ready);
            users.sort_by_key(VirtualUser::id);
            let start = Instant::now();
            let _ = load_start.set(start);
            let partial_reason = drive_load(&plan, users, start, &shared, &counts, options).await;
            (partial_reason, start.elapsed())
        }
    };

    let elapsed = run_start.elapsed();
    collector_done.cancel();
    let (totals, intervals, journal) = collector_result
        .await
        .expect("the collector thread does not panic");
    if let Some(mut journal) = journal {
        if let Err(error) = journal.end(elapsed, load_elapsed, partial_reason.as_deref()) {
            eprintln!("warning: {error:#}");
        }
    }
    let generator = generator_report(
        &plan.load,
        &totals,
        &counts,
        load_elapsed,
        partial_reason.is_some(),
    );

    Ok(RunResult {
        plan,
        base_url: base_url.to_string(),
        endpoints,
        totals,
        intervals,
        generator,
        started_at,
        elapsed,
        load_elapsed,
        partial_reason,
        errors: shared.errors.kinds(),
    })
}

/// Starts the users on the load model at `start` and waits until the run
/// ends. Returns why the run was cut short, if it was.
async fn drive_load(
    plan: &Plan,
    users: Vec<VirtualUser>,
    start: Instant,
    shared: &Arc<Shared>,
    counts: &Arc<DispatchCounts>,
    options: &RunOptions,
) -> Option<String> {
    let tracker = TaskTracker::new();
    counts.users_started.store(users.len(), Ordering::Relaxed);
    let mut queue = None;
    match &plan.load {
        LoadModel::Closed(model) => spawn_closed(model, users, start, &tracker),
        LoadModel::Open(model) => {
            queue = Some(spawn_open(
                model,
                users,
                start,
                shared,
                &tracker,
                counts,
                options.seed,
            ));
        }
    }
    tracker.close();

    let end_of_load = start + plan.load.duration();
    let partial_reason =
        wait_for_users(&tracker, shared, plan, end_of_load, &options.interrupt).await;

    if let Some((queue, dispatcher)) = queue {
        // A dispatcher running late may still be queueing arrivals that came
        // due before the end: wait for it, so that none of them is lost.
        let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
        // Arrivals still queued at the end were intended but never sent.
        while let Ok(arrival) = queue.try_recv() {
            let sample = Sample::not_sent(arrival.request + 1, NotSentReason::RunStopped);
            shared.recorder.record(0, &sample);
        }
    }
    partial_reason
}

/// Raises the soft open-file limit toward the hard limit when `users`
/// connections (at most one per user, plus a margin) would not fit, and
/// returns a warning when they still do not.
fn ensure_file_limit(users: usize) -> Option<String> {
    #[cfg(unix)]
    {
        let needed = (users + 64) as libc::rlim_t;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < needed && limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: needed.min(limit.rlim_max),
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = raised.rlim_cur;
                }
            }
        }
        (limit.rlim_cur < needed).then(|| {
            format!(
                "{users} users need about {needed} open files (one connection each), but the open-file limit is {}: connections will fail with \"Too many open files\". Raise it with `ulimit -n {needed}` or lower the user count.",
                limit.rlim_cur
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = users;
        None
    }
}

/// A warning for credentials about to cross a network unencrypted: plain
/// HTTP to a host that is not on loopback.
pub fn plain_http_warning(base_url: &str) -> Option<String> {
    let url = url::Url::parse(base_url).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    (!loopback).then(|| {
        format!("{base_url} is plain HTTP to a host that is not on loopback: passwords and tokens will cross the network unencrypted. Use https:// where you can.")
    })
}

fn setup_error(
    failure: LoginFailure,
    username: &str,
    base_url: &str,
    login_path: &str,
) -> SetupError {
    use crate::metrics::Outcome;

    let url = format!("{base_url}{login_path}");
    match failure.outcome {
        Outcome::ConnectError | Outcome::Timeout => SetupError::Unreachable {
            url,
            detail: failure.detail,
        },
        _ => SetupError::LoginRejected {
            username: username.to_string(),
            url,
            detail: failure.detail,
        },
    }
}

fn spawn_closed(
    model: &ClosedModel,
    users: Vec<VirtualUser>,
    start: Instant,
    tracker: &TaskTracker,
) {
    let global_cap = model
        .rate_cap_per_s
        .map(|rate| Arc::new(rate_limiter(rate)));
    for (index, user) in users.into_iter().enumerate() {
        let (start_offset, stop_offset) = model.user_window(index);
        let run = ClosedRun {
            start: start + start_offset,
            stop_at: start + stop_offset,
            pacing: model.pacing,
            think_time: model.think_time,
            global_cap: global_cap.clone(),
            user_cap: model
                .user_rate_cap_per_s
                .map(|rate| Arc::new(rate_limiter(rate))),
        };
        tracker.spawn(user.run_closed(run));
    }
}

/// Starts the open model: the users serving the queue, and the dispatcher
/// thread that puts each arrival on the queue at its intended start.
/// Returns the queue so that leftovers can be counted at the end.
fn spawn_open(
    model: &OpenModel,
    users: Vec<VirtualUser>,
    start: Instant,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    counts: &Arc<DispatchCounts>,
    seed: u64,
) -> (
    async_channel::Receiver<Arrival>,
    std::thread::JoinHandle<()>,
) {
    let (sender, receiver) = async_channel::unbounded();
    let pool = Arc::new(Pool::default());
    for user in users {
        tracker.spawn(user.run_open(receiver.clone(), Arc::clone(&pool), model.max_queue_wait));
    }
    let grow = PoolGrowth {
        shared: Arc::clone(shared),
        pool: Arc::clone(&pool),
        tracker: tracker.clone(),
        runtime: tokio::runtime::Handle::current(),
        queue: receiver.clone(),
        max_queue_wait: model.max_queue_wait,
        max_users: model.max_users,
        seed,
        counts: Arc::clone(counts),
        starting: Arc::new(AtomicUsize::new(0)),
    };
    let model = model.clone();
    let shared = Arc::clone(shared);
    let counts = Arc::clone(counts);
    let dispatcher = std::thread::Builder::new()
        .name("parallax-dispatch".into())
        .spawn(move || {
            clock::use_precise_timers();
            let mut waiter = clock::Waiter::default();
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut previous = Duration::ZERO;
            for offset in model.schedule.arrivals(model.process) {
                let intended = start + offset;
                // Yielding for at most a quarter of the gap since the last
                // arrival keeps the dispatcher off the core the users need
                // for three quarters of the time, whatever the rate.
                let max_yield = offset.saturating_sub(previous) / 4;
                previous = offset;
                if !waiter.wait_until(intended, max_yield, || shared.stop.is_cancelled()) {
                    break;
                }
                if pool.idle.load(Ordering::Relaxed) == 0 {
                    counts.without_free_user.fetch_add(1, Ordering::Relaxed);
                }
                let request = shared.pick_request(&mut rng);
                if sender.try_send(Arrival { intended, request }).is_err() {
                    break;
                }
                grow.grow_if_needed();
            }
            // Dropping the sender closes the queue once the schedule is over.
        })
        .expect("the operating system starts a thread");
    (receiver, dispatcher)
}

/// Adds users to the open model's pool while arrivals wait and the pool is
/// below its maximum. Each new user logs in before it serves the queue.
struct PoolGrowth {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
    queue: async_channel::Receiver<Arrival>,
    max_queue_wait: Option<Duration>,
    max_users: usize,
    seed: u64,
    counts: Arc<DispatchCounts>,
    /// Users spawned that are still logging in.
    starting: Arc<AtomicUsize>,
}

impl PoolGrowth {
    fn grow_if_needed(&self) {
        // After the end, queued arrivals are counted as not sent; a new user
        // would only log in for nothing.
        if self.shared.stop.is_cancelled() {
            return;
        }
        while self.queue.len() > self.starting.load(Ordering::Relaxed) {
            let id = self.counts.users_started.load(Ordering::Relaxed);
            if id >= self.max_users {
                return;
            }
            self.counts.users_started.store(id + 1, Ordering::Relaxed);
            self.starting.fetch_add(1, Ordering::Relaxed);
            let mut user = VirtualUser::new(id, Arc::clone(&self.shared), self.seed);
            let queue = self.queue.clone();
            let pool = Arc::clone(&self.pool);
            let starting = Arc::clone(&self.starting);
            let max_queue_wait = self.max_queue_wait;
            self.tracker.spawn_on(
                async move {
                    // A failed login is recorded; the user retries with backoff when it gets work.
                    let _ = user.login(LoginReason::Initial).await;
                    starting.fetch_sub(1, Ordering::Relaxed);
                    user.run_open(queue, pool, max_queue_wait).await;
                },
                &self.runtime,
            );
        }
    }
}

/// Logs users in before the load starts, at
/// most [`LOGIN_CONCURRENCY`] at a time so the start does not storm the login
/// endpoint. Failures are recorded; such users retry with backoff when they get work.
async fn log_in_all(users: Vec<VirtualUser>) -> Vec<VirtualUser> {
    let permits = Arc::new(tokio::sync::Semaphore::new(LOGIN_CONCURRENCY));
    let mut logins = JoinSet::new();
    for mut user in users {
        let permits = Arc::clone(&permits);
        logins.spawn(async move {
            let _permit = permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let _ = user.login(LoginReason::Initial).await;
            user
        });
    }
    let mut ready = Vec::new();
    while let Some(joined) = logins.join_next().await {
        ready.push(joined.expect("a login task does not panic"));
    }
    ready
}

/// Waits for every user task, applying the end-of-run rules listed in the
/// module documentation. Returns the reason the run was cut short, if any.
async fn wait_for_users(
    tracker: &TaskTracker,
    shared: &Shared,
    plan: &Plan,
    end_of_load: Instant,
    interrupt: &CancellationToken,
) -> Option<String> {
    let mut partial_reason = None;
    let mut drain_deadline = end_of_load + plan.request_timeout + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tracker.wait() => return partial_reason,
            // The load is over: no new request starts; sleeping users wake up.
            _ = tokio::time::sleep_until(end_of_load.into()), if !shared.stop.is_cancelled() => {
                shared.stop.cancel();
            }
            _ = interrupt.cancelled(), if partial_reason.is_none() => {
                partial_reason = Some("interrupted (Ctrl-C or SIGTERM)".to_string());
                shared.stop.cancel();
                drain_deadline = drain_deadline.min(Instant::now() + INTERRUPT_GRACE);
            }
            _ = tokio::time::sleep_until(drain_deadline.into()), if !shared.abort.is_cancelled() => {
                shared.stop.cancel();
                shared.abort.cancel();
            }
        }
    }
}

/// The rate a paced closed model plans: users over the pacing interval,
/// within the rate caps. Ramps make it vary over the run, so it is left out then.
fn closed_target_rate(model: &ClosedModel) -> Option<f64> {
    let pacing = model.pacing?;
    if !model.ramp_up.is_zero() || !model.ramp_down.is_zero() {
        return None;
    }
    let mut rate = model.users as f64 / pacing.as_secs_f64();
    if let Some(cap) = model.rate_cap_per_s {
        rate = rate.min(cap);
    }
    if let Some(cap) = model.user_rate_cap_per_s {
        rate = rate.min(cap * model.users as f64);
    }
    Some(rate)
}

/// The generator report of a run rebuilt from its journal, which does not
/// keep the dispatcher's own counts.
pub fn generator_report_from_totals(
    load: &LoadModel,
    totals: &StatsSet,
    load_elapsed: Duration,
    partial: bool,
) -> GeneratorReport {
    let counts = DispatchCounts::default();
    counts.users_started.store(load.users(), Ordering::Relaxed);
    generator_report(load, totals, &counts, load_elapsed, partial)
}

fn generator_report(
    load: &LoadModel,
    totals: &StatsSet,
    counts: &DispatchCounts,
    elapsed: Duration,
    partial: bool,
) -> GeneratorReport {
    // A complete run is measured over its plan; one cut short over the time it ran.
    let window = if partial {
        load.duration().min(elapsed)
    } else {
        load.duration()
    };
    let window_s = window.as_secs_f64().max(1e-9);
    let sent: u64 = totals
        .endpoints
        .iter()
        .skip(1)
        .map(|endpoint| endpoint.outcomes.sent())
        .sum();
    let achieved_rate_per_s = sent as f64 / window_s;
    let (target_rate_per_s, planned_requests) = match load {
        LoadModel::Open(model) => {
            let planned = model.schedule.planned_arrivals(model.process);
            (
                Some(planned as f64 / model.schedule.duration().as_secs_f64()),
                Some(planned),
            )
        }
        LoadModel::Closed(model) => (closed_target_rate(model), None),
    };
    let schedule_lag = Percentiles::of(&totals.schedule_lag);
    let arrivals_without_free_user = counts.without_free_user.load(Ordering::Relaxed);
    let users_started = counts.users_started.load(Ordering::Relaxed);

    let mut warnings = Vec::new();
    if let Some(target) = target_rate_per_s {
        if achieved_rate_per_s < target * RATE_WARNING_SHARE {
            warnings.push(format!(
                "target rate not reached: achieved {achieved_rate_per_s:.2} req/s of the planned {target:.2} req/s ({:+.1} %)",
                (achieved_rate_per_s / target - 1.0) * 100.0
            ));
        }
    }
    if arrivals_without_free_user > 0 {
        let max_users = match load {
            LoadModel::Open(model) => model.max_users,
            LoadModel::Closed(model) => model.users,
        };
        warnings.push(format!(
            "no free user for {arrivals_without_free_user} arrivals (pool grew to {users_started} of at most {max_users}): they waited in the queue, and their wait counts in the corrected latency (or, past load.max_queue_wait_s, they were not sent); raise load.users or load.max_users"
        ));
    }
    if let Some(p99_ms) = schedule_lag.p99_ms {
        let limit_ms = LAG_WARNING.as_secs_f64() * 1000.0;
        if p99_ms > limit_ms {
            warnings.push(format!(
                "schedule lag p99 is {p99_ms:.2} ms (above {limit_ms:.0} ms): requests started late, so corrected latency includes the generator's delay or the wait for a free user"
            ));
        }
    }
    GeneratorReport {
        target_rate_per_s,
        achieved_rate_per_s,
        planned_requests,
        arrivals_without_free_user,
        users_started,
        schedule_lag,
        warnings,
    }
}

fn spawn_signal_listener(interrupt: CancellationToken, abort: CancellationToken) {
    tokio::spawn(async move {
        let mut signals = 0;
        loop {
            if !wait_for_signal().await {
                return;
            }
            signals += 1;
            if signals == 1 {
                eprintln!(
                    "\ninterrupted: stopping new requests, letting in-flight ones finish for up to {} s (interrupt again to stop at once)",
                    INTERRUPT_GRACE.as_secs()
                );
                interrupt.cancel();
            } else {
                eprintln!(
                    "interrupted again: abandoning in-flight requests and writing the reports"
                );
                interrupt.cancel();
                abort.cancel();
                return;
            }
        }
    });
}

/// Waits for Ctrl-C or SIGTERM; returns false if signals cannot be watched.
async fn wait_for_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            return tokio::signal::ctrl_c().await.is_ok();
        };
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.is_ok(),
            received = terminate.recv() => received.is_some(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

/// Drains the recorder once per interval into snapshots and totals, and
/// shows progress. Returns the totals and the snapshots when `done` fires.
/// What the collector task needs.
struct Collector {
    recorder: Arc<Recorder>,
    endpoint_count: usize,
    /// The start of the run; interval spans are measured from it.
    start: Instant,
    /// Set when the load starts, after the logins.
    load_start: Arc<OnceLock<Instant>>,
    load: LoadModel,
    progress: ProgressMode,
    journal: Option<Journal>,
}

async fn collect(
    collector: Collector,
    done: CancellationToken,
) -> (StatsSet, Vec<IntervalSnapshot>, Option<Journal>) {
    let Collector {
        recorder,
        endpoint_count,
        start,
        load_start,
        load,
        progress,
        mut journal,
    } = collector;
    let mut totals = StatsSet::new(endpoint_count);
    let mut interval = StatsSet::new(endpoint_count);
    // Reused every interval, so that its histograms are not allocated
    // again each second.
    let mut interval_all = EndpointStats::default();
    let mut snapshots = Vec::new();
    let mut display = Progress::new(progress, load.duration());
    let mut ticker = tokio::time::interval_at((start + INTERVAL).into(), INTERVAL);
    let mut interval_start = start;
    loop {
        let finished = tokio::select! {
            _ = ticker.tick() => false,
            _ = done.cancelled() => true,
        };
        let now = Instant::now();
        recorder.drain_into(&mut interval);
        // The last interval is usually shorter than the others; its real length is kept.
        let middle = interval_start + (now - interval_start) / 2;
        let phase = match load_start.get() {
            Some(load_start) if middle >= *load_start => load.phase_at(middle - *load_start),
            _ => Phase::LoggingIn,
        };
        let snapshot = IntervalSnapshot::new(
            (interval_start - start).as_secs_f64(),
            (now - start).as_secs_f64(),
            phase,
            &interval,
            &mut interval_all,
        );
        let kept =
            snapshot.end_s > snapshot.start_s || snapshot.all.requests + snapshot.all.not_sent > 0;
        let load_start_s = load_start
            .get()
            .map(|load_start| (*load_start - start).as_secs_f64());
        if let (true, Some(writer)) = (kept, &mut journal) {
            let phase = snapshot.phase;
            if let Err(error) = writer.interval(
                snapshot.start_s,
                snapshot.end_s,
                phase,
                load_start_s,
                &interval,
            ) {
                // The run goes on; only a killed process would miss the journal.
                eprintln!("warning: {error:#}; the journal stops here");
                journal = None;
            }
        }
        totals.merge(&interval);
        interval.reset();
        interval_start = now;
        display.update(&snapshot, &totals, now - start);
        if kept {
            snapshots.push(snapshot);
        }
        if finished {
            display.finish();
            return (totals, snapshots, journal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_warns_off_loopback_only() {
        for quiet in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:80",
            "https://example.test",
        ] {
            assert_eq!(plain_http_warning(quiet), None, "{quiet}");
        }
        assert!(plain_http_warning("http://api.example.test").is_some());
        assert!(plain_http_warning("http://10.1.2.3:8080").is_some());
    }
}
