//! `jobfleet enqueue`: one job from flags, or many from a JSON-lines file (`--file`).
//!
//! A single job prints its id on stdout (`duplicate of <id>` when its unique key is held
//! by an unfinished job), so scripts can capture it.

pub mod jsonl;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use jobfleet_common::job::ConflictPolicy;
use jobfleet_common::{Config, Job, LockMode, LockSpec, Priority};
use jobfleet_producer::Producer;

use crate::error::{Error, Result};
use crate::global::connect_shared;
use crate::parse;
use crate::progress::Mode;

/// Flags of `jobfleet enqueue`.
#[derive(Clone, Debug, Args)]
pub struct EnqueueArgs {
    /// The queue to run on.
    #[arg(long, required_unless_present = "file")]
    pub queue: Option<String>,
    /// The handler that runs it.
    #[arg(long, required_unless_present = "file")]
    pub kind: Option<String>,
    /// The payload, as JSON.
    #[arg(long, value_parser = parse::json_payload, default_value = "{}")]
    pub payload: Bytes,
    /// low, normal, high, critical, or 0-9.
    #[arg(long, value_parser = parse::priority, default_value = "normal")]
    pub priority: Priority,
    /// Run no sooner than this from now, e.g. 30s.
    #[arg(long, value_parser = parse::duration)]
    pub delay: Option<Duration>,
    /// Attempts before the job is dead.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// How long one attempt may run, e.g. 5m.
    #[arg(long, value_parser = parse::duration, default_value = "5m")]
    pub timeout: Duration,
    /// A lock to hold while the job runs.
    #[arg(long, value_name = "KEY")]
    pub lock: Option<String>,
    /// How the lock is held.
    #[arg(long, value_enum, default_value = "exclusive", requires = "lock")]
    pub lock_mode: LockModeArg,
    /// What to do when the lock is taken.
    #[arg(long, value_enum, default_value = "requeue", requires = "lock")]
    pub on_conflict: ConflictArg,
    /// Deduplicate: no second job with this key while one is unfinished.
    #[arg(long, value_name = "KEY")]
    pub unique: Option<String>,
    /// The caller's W3C trace context: the job's spans join that trace (default: the
    /// TRACEPARENT environment variable, as OpenTelemetry's tools pass it to scripts).
    #[arg(long, value_name = "TRACEPARENT", env = "TRACEPARENT")]
    pub traceparent: Option<String>,
    /// The W3C `tracestate` that goes with `--traceparent`.
    #[arg(
        long,
        value_name = "TRACESTATE",
        env = "TRACESTATE",
        requires = "traceparent"
    )]
    pub tracestate: Option<String>,
    /// Enqueue the jobs in this file instead (JSON form, one per line).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["queue", "kind", "lock", "unique", "delay"])]
    pub file: Option<PathBuf>,
}

/// `--lock-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LockModeArg {
    /// One holder at a time.
    Exclusive,
    /// Many shared holders, never beside an exclusive one.
    Shared,
}

/// `--on-conflict` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConflictArg {
    /// Try again shortly; no attempt is counted.
    Requeue,
    /// Drop the job: it ends cancelled.
    Skip,
}

/// Runs the command.
pub async fn run(args: EnqueueArgs, config: Config) -> Result<()> {
    if args.file.is_none() {
        // Wrong flags are a usage error (exit 2) naming the flag, found before connecting.
        let now = jobfleet_common::clock::system().now_ms();
        if let Err(e) = config.limits.validate(&job_from_flags(&args, now), now) {
            return Err(Error::Usage(format!("{}: {}", flag_of(e.field), e.reason)));
        }
    }
    let backends = connect_shared(&config, "enqueue").await?;
    let producer = Producer::new(&backends, &config);
    if let Some(path) = &args.file {
        let report = jsonl::enqueue_file(path, &producer, &config.limits, Mode::detect()).await?;
        println!(
            "enqueued {} jobs from {} ({} duplicates, {} delayed)",
            report.enqueued,
            path.display(),
            report.duplicates,
            report.delayed
        );
        return Ok(());
    }
    let job = job_from_flags(&args, producer.now_ms());
    let enqueued = producer.enqueue(job).await?;
    if enqueued.duplicate {
        println!("duplicate of {}", enqueued.id);
    } else {
        println!("{}", enqueued.id);
    }
    if let (Some(delay), false) = (args.delay, enqueued.duplicate) {
        eprintln!("scheduled to run in {}", humantime::format_duration(delay));
    }
    Ok(())
}

/// The flag that sets a job's `field`, for messages about its value.
fn flag_of(field: &str) -> &str {
    match field {
        "queue" => "--queue",
        "kind" => "--kind",
        "priority" => "--priority",
        "payload" => "--payload",
        "max_attempts" | "attempt" => "--max-attempts",
        "timeout_ms" => "--timeout",
        "run_at_ms" => "--delay",
        "lock.key" => "--lock",
        "unique_key" => "--unique",
        "trace.traceparent" => "--traceparent",
        "trace.tracestate" => "--tracestate",
        other => other,
    }
}

/// The job the flags describe, with its delay measured from `now_ms`.
pub fn job_from_flags(args: &EnqueueArgs, now_ms: i64) -> Job {
    let mut job = Job::new(
        args.queue.clone().unwrap_or_default(),
        args.kind.clone().unwrap_or_default(),
        args.payload.clone(),
    )
    .with_priority(args.priority)
    .with_max_attempts(args.max_attempts)
    .with_timeout_ms(parse::millis(args.timeout));
    if let Some(delay) = args.delay {
        let delay_ms = i64::try_from(parse::millis(delay)).unwrap_or(i64::MAX);
        job = job.with_run_at_ms(now_ms.saturating_add(delay_ms));
    }
    if let Some(key) = &args.lock {
        job = job.with_lock(LockSpec {
            key: key.clone(),
            mode: match args.lock_mode {
                LockModeArg::Exclusive => LockMode::Exclusive,
                LockModeArg::Shared => LockMode::Shared,
            },
            on_conflict: match args.on_conflict {
                ConflictArg::Requeue => ConflictPolicy::Requeue,
                ConflictArg::Skip => ConflictPolicy::Skip,
            },
        });
    }
    if let Some(key) = &args.unique {
        job = job.with_unique_key(key.clone());
    }
    if let Some(traceparent) = &args.traceparent {
        job = job.with_trace(
            traceparent.clone(),
            args.tracestate.clone().unwrap_or_default(),
        );
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: EnqueueArgs,
    }

    fn parse(argv: &[&str]) -> Result<EnqueueArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("enqueue").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn flags_become_the_job() {
        let args = parse(&[
            "--queue",
            "emails",
            "--kind",
            "send",
            "--payload",
            r#"{"to":"a"}"#,
            "--priority",
            "high",
            "--delay",
            "30s",
            "--max-attempts",
            "5",
            "--timeout",
            "1m",
            "--lock",
            "acct:1",
            "--lock-mode",
            "shared",
            "--on-conflict",
            "skip",
            "--unique",
            "welcome:1",
        ])
        .expect("parses");
        let job = job_from_flags(&args, 1_000);
        assert_eq!((job.queue.as_str(), job.kind.as_str()), ("emails", "send"));
        assert_eq!(&job.payload[..], br#"{"to":"a"}"#);
        assert_eq!(job.priority, Priority::HIGH);
        assert_eq!(job.run_at_ms, Some(31_000));
        assert_eq!((job.max_attempts, job.timeout_ms), (5, 60_000));
        let lock = job.lock.expect("lock");
        assert_eq!(
            (lock.mode, lock.on_conflict),
            (LockMode::Shared, ConflictPolicy::Skip)
        );
        assert_eq!(job.unique_key.as_deref(), Some("welcome:1"));
        assert_eq!(job.trace, None);

        let traced = parse(&[
            "--queue",
            "q",
            "--kind",
            "echo",
            "--traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "--tracestate",
            "v=1",
        ])
        .expect("parses");
        let trace = job_from_flags(&traced, 0).trace.expect("trace");
        assert_eq!(
            (trace.traceparent.as_str(), trace.tracestate.as_str()),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "v=1"
            )
        );
    }

    #[test]
    fn defaults_and_refusals() {
        let job = job_from_flags(&parse(&["--queue", "q", "--kind", "echo"]).expect("ok"), 0);
        assert_eq!(
            (job.priority, job.run_at_ms, job.lock),
            (Priority::NORMAL, None, None)
        );
        assert_eq!(&job.payload[..], b"{}");
        assert!(parse(&["--kind", "echo"]).is_err(), "queue is required");
        assert!(parse(&["--queue", "q", "--kind", "k", "--priority", "urgent"]).is_err());
        assert!(parse(&["--queue", "q", "--kind", "k", "--delay", "soon"]).is_err());
        assert!(parse(&["--queue", "q", "--kind", "k", "--lock-mode", "shared"]).is_err());
        assert!(parse(&["--file", "jobs.jsonl"]).is_ok());
        assert!(parse(&["--file", "jobs.jsonl", "--queue", "q"]).is_err());
    }
}
