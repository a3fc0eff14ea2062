//! `jobfleet run KIND --payload JSON`: one job, run in this process on the embedded
//! backend (a scheduler for its retries and one worker), then its result printed: the
//! quickest way to try a handler.
//!
//! What is wrong with the command line is a usage error (exit 2) before anything runs:
//! an unknown kind, or a payload its kind refuses on sight (a misspelt field, a fraction
//! out of range; [`crate::kinds::check_payload`]). A job that ran and failed is exit 1,
//! its error said once, on the `error:` line.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Backends, Config, Job};
use jobfleet_fleet::{Fleet, RoleError};
use jobfleet_producer::Producer;
use jobfleet_worker::Registry;
use tokio_util::sync::CancellationToken;

use crate::commands::dev::dev_config;
use crate::error::{Error, Result};
use crate::parse::{duration, json_payload, millis};

/// The queue `run` puts its job on.
const QUEUE: &str = "run";
/// How often the job's record is read while it runs.
const POLL: Duration = Duration::from_millis(20);

/// Flags of `jobfleet run`.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// The job kind: a built-in one (echo, sleep, flaky, fail) or, in a build with
    /// them, a data kind (ingest, train, predict).
    pub kind: String,
    /// The payload, as JSON. It is checked against the kind's fields first: a field
    /// the kind does not take, or a value out of range, is an error (exit 2) and
    /// nothing runs.
    #[arg(long, value_parser = json_payload)]
    pub payload: Option<Bytes>,
    /// Attempts before the job counts as failed.
    #[arg(long, default_value_t = 1)]
    pub max_attempts: u32,
    /// How long one attempt may run.
    #[arg(long, value_parser = duration, default_value = "5m")]
    pub timeout: Duration,
}

/// Runs the command: prints the job's result as JSON (`null` when the handler set none);
/// a payload the kind refuses is a usage error, before anything runs; a job that ends
/// dead or cancelled is an error (exit 1) with its last error.
pub async fn run(args: RunArgs, config: Config) -> Result<()> {
    crate::kinds::check_payload(&args.kind, args.payload.as_deref().unwrap_or_default())?;
    let registry = Arc::new(crate::kinds::registry(&config)?);
    let record = run_job(&registry, &args, config).await?;
    if record.state != JobState::Completed {
        let why = record
            .last_error
            .map(|e| format!("{}: {}", e.kind, e.message))
            .or(record.note)
            .unwrap_or_default();
        return Err(Error::Incomplete(format!(
            "job {} ended {} after {} attempt(s): {why}",
            record.id, record.state, record.attempt
        )));
    }
    let result = record.result.unwrap_or(serde_json::Value::Null);
    let text = serde_json::to_string_pretty(&result)
        .map_err(|e| Error::Task(format!("cannot write the result as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Runs one job of `args.kind` with `registry`'s handlers in a fleet of its own and
/// returns its final record.
pub async fn run_job(
    registry: &Arc<Registry>,
    args: &RunArgs,
    config: Config,
) -> Result<JobRecord> {
    if !registry.kinds().contains(&args.kind) {
        return Err(Error::Usage(format!(
            "no handler for kind {:?}; this build has: {}",
            args.kind,
            registry.kinds().join(", ")
        )));
    }
    let job = Job::new(QUEUE, &args.kind, args.payload.clone().unwrap_or_default())
        .with_max_attempts(args.max_attempts)
        .with_timeout_ms(millis(args.timeout));
    run_job_on(Backends::embedded(), registry, job, config).await
}

/// Runs `job` (on the queue `run`) with `registry`'s handlers in a fleet of its own on
/// `backends` (embedded ones) and returns its final record: [`run_job`] for a job made
/// elsewhere, e.g. with a fixed id, or on backends a test has prepared.
pub async fn run_job_on(
    backends: Backends,
    registry: &Arc<Registry>,
    mut job: Job,
    config: Config,
) -> Result<JobRecord> {
    let mut config = dev_config(config, 1)?;
    config.worker.queues = vec![QUEUE.into()];
    config.schedules.clear();
    let config = Arc::new(config);
    job.queue = QUEUE.into();
    let id = job.id;
    let mut fleet = Fleet::new(config.clone(), CancellationToken::new());
    fleet.start_scheduler(backends.clone());
    fleet.start_worker(backends.clone(), registry.clone());
    let outcome = async {
        Producer::new(&backends, &config).enqueue(job).await?;
        loop {
            if let Some(record) = backends.store.record(id).await? {
                if record.state.is_terminal() {
                    return Ok(record);
                }
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let record = tokio::select! {
        record = outcome => record,
        Some(ended) = fleet.ended() => Err(match ended.result {
            Err(RoleError::Worker(e)) => Error::Worker(e),
            Err(RoleError::Scheduler(e)) => Error::Scheduler(e),
            _ => Error::Task("a fleet role stopped before the job finished".into()),
        }),
    };
    // What the job ended as is the answer; how the roles stop after it is not.
    let _ = fleet.stop().await;
    record
}
