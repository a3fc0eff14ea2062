//! `jobfleet dev`: a whole fleet in one process on the embedded backend, running a sample
//! workload while a progress display follows the jobs' state records.
//!
//! One scheduler and N workers start through the same entry points production uses
//! (`jobfleet_scheduler::run`, `jobfleet_worker::run`), on one embedded broker and store,
//! by the in-process launcher the bench and the tests use too ([`jobfleet_fleet::Fleet`]).
//! The sample cron schedule ([`workload::SCHEDULE`], every second) fires `echo` jobs
//! while it runs, unless the configuration declares schedules of its own, and a sample
//! pipeline ([`workload::pipeline`]: a step, a fan-out over three, a final step) runs
//! beside the workload.
//! With `--until-idle` the command returns once every job is in a terminal state; without
//! it the fleet keeps running after the workload until the shutdown token is cancelled.

#[cfg(feature = "data")]
pub mod data;
mod tally;
pub mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use jobfleet_common::{Backends, BrokerAddr, Config, JobId, StoreAddr};
use jobfleet_fleet::{Fleet, RoleError, RoleExit};
use jobfleet_producer::Producer;
use jobfleet_scheduler::ops;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use crate::dev_summary::DevSummary;
pub use tally::{Tally, Watcher};

use crate::error::{Error, Result};
use crate::parse;
use crate::progress::{Mode, Progress};

/// How often job records are read for the progress display.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Jobs per `enqueue_many` call.
const ENQUEUE_BATCH: usize = 500;
/// How long an idle run waits for the sample pipeline to finish.
const PIPELINE_WAIT: Duration = Duration::from_secs(10);

/// Flags of `jobfleet dev`.
#[derive(Clone, Debug, Args)]
pub struct DevArgs {
    /// Workers to run, each with its own consumers.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Sample jobs to enqueue.
    #[arg(long, default_value_t = 200)]
    pub jobs: usize,
    /// Exit once every job has finished, instead of running until Ctrl-C.
    #[arg(long)]
    pub until_idle: bool,
    /// With --until-idle: give up (exit 1) if the jobs have not finished by then.
    #[arg(long, value_parser = parse::duration, default_value = "120s")]
    pub timeout: Duration,
    /// Where to serve the dashboard, the JSON API, /metrics and the probes
    /// (`off` for nowhere; port 0 picks a free port). Overrides `scheduler.http`.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP)]
    pub http: String,
}

/// Where `jobfleet dev` serves its dashboard unless told otherwise.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9464";

/// Everything [`run`] needs.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// The loaded configuration; dev forces the embedded backend and quick timings.
    pub config: Config,
    /// Workers to run.
    pub workers: usize,
    /// Jobs each worker runs at once.
    pub concurrency: usize,
    /// Sample jobs to enqueue.
    pub jobs: usize,
    /// Return once every job is finished.
    pub until_idle: bool,
    /// With `until_idle`: how long to wait for that.
    pub timeout: Duration,
    /// How progress is shown.
    pub progress: Mode,
    /// Where to serve the HTTP endpoint; `None` for nowhere.
    pub http: Option<String>,
}

impl DevOptions {
    /// Options from the command line, showing progress as the terminal allows.
    pub fn from_args(args: DevArgs, config: Config) -> Self {
        Self {
            config,
            workers: args.workers,
            concurrency: args.concurrency,
            jobs: args.jobs,
            until_idle: args.until_idle,
            timeout: args.timeout,
            progress: Mode::detect(),
            http: Some(args.http).filter(|a| a != "off"),
        }
    }
}

/// The command: runs the fleet and prints the summary to stdout.
pub async fn main(args: DevArgs, config: Config, shutdown: CancellationToken) -> Result<()> {
    match run(DevOptions::from_args(args, config), shutdown).await {
        Ok(summary) => {
            println!("{}", summary.render());
            Ok(())
        }
        Err(Error::NotIdle { timeout, summary }) => {
            println!("{}", summary.render());
            Err(Error::NotIdle { timeout, summary })
        }
        Err(e) => Err(e),
    }
}

/// Runs the fleet and the sample workload; returns the summary once idle (with
/// `until_idle`) or once `shutdown` is cancelled.
pub async fn run(options: DevOptions, shutdown: CancellationToken) -> Result<DevSummary> {
    if options.workers == 0 {
        return Err(Error::Usage("--workers must be at least 1".into()));
    }
    #[allow(unused_mut)]
    let mut config = dev_config(options.config.clone(), options.concurrency)?;
    #[cfg(feature = "data")]
    let data_dir = data::directory();
    #[cfg(feature = "data")]
    {
        config.data.url = data_dir.display().to_string();
    }
    let config = Arc::new(config);
    let started = Instant::now();
    let backends = Backends::embedded();
    let registry = Arc::new(crate::kinds::registry(&config)?);
    let listener = match &options.http {
        Some(addr) => Some(jobfleet_http::bind("--http", addr).await.map_err(|e| {
            Error::Usage(format!(
                "--http {addr}: cannot listen there ({}); pick another address \
                 (port 0 for any free one) or pass --http off",
                e.source
            ))
        })?),
        None => None,
    };
    let dashboard = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|addr| format!("http://{addr}/"));
    if let Some(url) = &dashboard {
        eprintln!("jobfleet dev: dashboard, API and /metrics at {url}");
    }
    // The roles' results matter: one ending early (an error, a panic) stops the run.
    let mut fleet = Fleet::new(config.clone(), shutdown.child_token());
    fleet.start_scheduler_serving(backends.clone(), listener);
    for _ in 0..options.workers {
        fleet.start_worker(backends.clone(), registry.clone());
    }

    let mut progress = Progress::new(options.progress, "jobs", options.jobs as u64);
    let mut watcher = Watcher::new(backends.store.clone());
    let mut idle_after = None;
    let (store, clock) = (&*backends.store, &*backends.clock);
    let pipeline = ops::pipeline_submit(store, clock, &config.limits, workload::pipeline()).await?;
    #[cfg(feature = "data")]
    let data_pipeline =
        ops::pipeline_submit(store, clock, &config.limits, data::prepare(&data_dir)?).await?;
    let stop = match enqueue_workload(&backends, &config, options.jobs).await {
        Ok(ids) => {
            watcher.watch(ids);
            let mut view = View {
                watcher: &mut watcher,
                progress: &mut progress,
                started,
                idle_after: &mut idle_after,
            };
            follow(&options, &mut fleet, &mut view, &shutdown).await
        }
        Err(e) => Err(e),
    };
    // The rate is of the workload, not of the idle time spent waiting for Ctrl-C after it.
    let elapsed = idle_after.unwrap_or_else(|| started.elapsed());
    let idle = matches!(stop, Ok(Stop::Idle));
    let pipeline = pipeline_state(&backends, pipeline, idle).await;
    #[cfg(feature = "data")]
    let data = data::report(
        &data_dir,
        &pipeline_state(&backends, data_pipeline, idle).await,
    )
    .await;
    #[cfg(not(feature = "data"))]
    let data = "not built (the `data` feature)".to_string();
    let drained = fleet.stop().await.map_err(|f| role_error(f.error));
    let tally = watcher.poll().await.unwrap_or_else(|_| watcher.tally());
    progress.finish();
    let mut summary = tally.summary(elapsed);
    summary.pipeline = pipeline;
    summary.data = data;
    summary.dashboard = dashboard.unwrap_or_else(|| "off".into());
    summary.schedule_fires = match backends.store.schedule_list().await {
        Ok(schedules) => schedules.iter().map(|s| s.state.fires).sum(),
        Err(_) => 0,
    };
    match stop? {
        Stop::Idle | Stop::Shutdown => drained.map(|()| summary),
        Stop::TimedOut => Err(Error::NotIdle {
            timeout: options.timeout,
            summary: Box::new(summary),
        }),
    }
}

/// The sample pipeline's state; with `wait`, waits up to [`PIPELINE_WAIT`] for it to
/// finish (it is short, but may still be running when the workload is idle).
async fn pipeline_state(backends: &Backends, id: JobId, wait: bool) -> String {
    let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
    loop {
        let state = match ops::pipeline_status(&*backends.store, id).await {
            Ok(Some(view)) => view.state.to_string(),
            Ok(None) => "unknown".into(),
            Err(e) => format!("unknown ({e})"),
        };
        if !wait || state != "running" || tokio::time::Instant::now() >= deadline {
            return state;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Why following the jobs stopped.
enum Stop {
    /// Every job finished (`until_idle`).
    Idle,
    /// The shutdown token was cancelled.
    Shutdown,
    /// `until_idle` and the timeout passed first.
    TimedOut,
}

/// The configuration dev runs with: the embedded backend, `concurrency`, and quick timings
/// wherever the user left the built-in default.
pub fn dev_config(mut config: Config, concurrency: usize) -> Result<Config> {
    let defaults = Config::default();
    config.broker = BrokerAddr::Embedded;
    config.store = StoreAddr::Embedded;
    config.worker.concurrency = concurrency;
    // The workers share the process (and its metrics) with the scheduler, whose endpoint
    // serves everything; several workers could not listen on one address anyway.
    config.worker.http = None;
    config.scheduler.http = None;
    if !config.worker.queues.iter().any(|q| q == workload::QUEUE) {
        config.worker.queues.push(workload::QUEUE.into());
    }
    let quick = |value: &mut Duration, default: Duration, dev: u64| {
        if *value == default {
            *value = Duration::from_millis(dev);
        }
    };
    let (w, d) = (&mut config.worker, &defaults.worker);
    quick(&mut w.cancel_poll, d.cancel_poll, 100);
    quick(&mut w.heartbeat, d.heartbeat, 1_000);
    quick(&mut w.lock_conflict_delay, d.lock_conflict_delay, 200);
    quick(&mut w.grace_period, d.grace_period, 5_000);
    quick(&mut config.scheduler.tick, defaults.scheduler.tick, 50);
    if config.schedules.is_empty() {
        config
            .schedules
            .insert(workload::SCHEDULE.into(), workload::schedule());
    }
    config.validate()?;
    Ok(config)
}

/// Publishes the sample workload in batches; returns the ids to follow.
async fn enqueue_workload(backends: &Backends, config: &Config, n: usize) -> Result<Vec<JobId>> {
    let producer = Producer::new(backends, config);
    let jobs = workload::jobs(n, producer.now_ms());
    let mut ids = Vec::with_capacity(n);
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let batch: Vec<_> = jobs.by_ref().take(ENQUEUE_BATCH).collect();
        let enqueued = producer.enqueue_many(batch).await?;
        ids.extend(enqueued.into_iter().map(|e| e.id));
    }
    Ok(ids)
}

/// What following the jobs reads and updates.
struct View<'a> {
    watcher: &'a mut Watcher,
    progress: &'a mut Progress,
    started: Instant,
    /// Set when every job first reaches a terminal state.
    idle_after: &'a mut Option<Duration>,
}

/// Polls the jobs' records and shows progress until idle, shutdown or the timeout; a role
/// that ends on its own ends the run with its error.
async fn follow(
    options: &DevOptions,
    fleet: &mut Fleet,
    view: &mut View<'_>,
    shutdown: &CancellationToken,
) -> Result<Stop> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Shutdown first: the roles stop on its child token, so once it is cancelled a
            // role ending is the shutdown itself, not a failure.
            biased;
            () = shutdown.cancelled() => return Ok(Stop::Shutdown),
            Some(ended) = fleet.ended() => return Err(stopped_early(ended)),
            _ = ticks.tick() => {}
        }
        let tally = match view.watcher.poll().await {
            Ok(tally) => tally,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read job records for progress");
                view.watcher.tally()
            }
        };
        view.progress.update(tally.finished(), &tally.describe());
        if tally.is_idle() && view.idle_after.is_none() {
            *view.idle_after = Some(view.started.elapsed());
            if options.until_idle {
                return Ok(Stop::Idle);
            }
            view.progress.note(&format!(
                "all {} jobs finished; the fleet keeps running until Ctrl-C",
                tally.total
            ));
        }
        if options.until_idle && tokio::time::Instant::now() >= deadline {
            return Ok(Stop::TimedOut);
        }
    }
}

/// The error of a role that ended before it was asked to, even without one of its own.
fn stopped_early(ended: RoleExit) -> Error {
    match ended.result {
        Ok(()) => Error::Task("a fleet role stopped before it was asked to".into()),
        Err(e) => role_error(e),
    }
}

/// A role's error as the command's: the worker's and the scheduler's keep their kind (and
/// so their exit code), a panic is a failed task.
fn role_error(error: RoleError) -> Error {
    match error {
        RoleError::Worker(e) => Error::Worker(e),
        RoleError::Scheduler(e) => Error::Scheduler(e),
        e @ (RoleError::Panicked(_) | RoleError::Aborted) => Error::Task(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_config_is_quick_but_respects_what_was_set() {
        let config = dev_config(Config::default(), 4).expect("valid");
        assert_eq!(config.worker.concurrency, 4);
        assert_eq!(config.scheduler.tick, Duration::from_millis(50));
        assert_eq!(config.worker.cancel_poll, Duration::from_millis(100));
        assert_eq!(config.broker, BrokerAddr::Embedded);

        let mut mine = Config::default();
        mine.scheduler.tick = Duration::from_millis(75);
        mine.worker.queues = vec!["other".into()];
        let config = dev_config(mine, 2).expect("valid");
        assert_eq!(config.scheduler.tick, Duration::from_millis(75));
        assert_eq!(config.worker.queues, ["other", "default"]);
    }

    #[test]
    fn zero_concurrency_is_refused_by_key() {
        let e = dev_config(Config::default(), 0).expect_err("invalid");
        assert!(
            matches!(&e, Error::Config(c) if c.key == "worker.concurrency"),
            "{e}"
        );
    }
}
