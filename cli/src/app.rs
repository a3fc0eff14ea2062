//! The binary's body, in the library so that it compiles once: the command line (`Cli`)
//! and running one parsed command (`run`): loading the configuration, logging, the
//! runtime, signals, and the command in [`crate::commands`].
//!
//! Here and not in `src/main.rs` for the build's sake: the futures of every command (the
//! worker's, the scheduler's, the bench's, the data kinds') are generic code that rustc
//! compiles in the crate that awaits them. Awaited from the binary, they were compiled
//! twice, once in this library and once again in the binary, at the very end of a cold
//! `cargo build --release` where nothing else runs beside it.

use crate::commands::{
    bench, cancel, dev, dlq, enqueue, pipeline, queues, run as run_job, schedule, scheduler,
    status, worker, workers,
};
use crate::logging::{self, Profile};
use crate::{shutdown, Error, GlobalArgs};
use clap::{Parser, Subcommand};
use jobfleet_common::Config;
use tokio_util::sync::CancellationToken;

/// jobfleet: a distributed job queue. Run `jobfleet dev` to see a fleet at work.
#[derive(Parser)]
#[command(name = "jobfleet", version)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scheduler, workers and a sample workload in one process (embedded backend).
    Dev(dev::DevArgs),
    /// Run a worker until SIGTERM or Ctrl-C
    ///
    /// It consumes `worker.queues` with the built-in job kinds:
    ///
    ///   echo                        succeeds at once, its JSON payload as its result
    ///   sleep  {"ms": N}            sleeps N ms (stops early when cancelled)
    ///   flaky  {"fail_times": N}    fails its first N attempts, then succeeds
    ///   fail                        always fails: ends dead after its attempts
    ///
    /// and the data kinds ingest, train and predict on [data] url (docs/data-jobs.md).
    ///
    /// Your own kinds run in a worker binary of your own (jobfleet_worker::Worker; see
    /// the README, "Write your own job kinds").
    ///
    /// The first SIGTERM or Ctrl-C drains: no new jobs, running ones get
    /// worker.grace_period, then the rest are handed back. A second one forces the exit
    /// (code 130) within 2 s: running jobs are stopped, their leases released, their
    /// records written `pending` with a note and their deliveries requeued; a third
    /// exits at once.
    #[command(verbatim_doc_comment)]
    Worker,
    /// Run the scheduler until SIGTERM or Ctrl-C
    ///
    /// It releases delayed jobs and retries, files dead letters, and fires cron
    /// schedules. Run two or three for availability: they share the release work, and
    /// one of them (the leader, through a store lease) fires the schedules while the
    /// others stand by to take over within about 4/3 of scheduler.leader_lease.
    #[command(verbatim_doc_comment)]
    Scheduler,
    /// Run one job in this process (embedded backend) and print its result as JSON
    ///
    /// Any kind of this build; with the data kinds (docs/data-jobs.md):
    ///
    ///   ingest   {"dataset", "source", "schema" | "schema_ref", "mode"?}
    ///   train    {"model", "dataset", "target", "algorithm", "params"?, "test_fraction"?}
    ///   predict  {"model", "output", "id_column", "input"? | "input_path"?}
    ///
    /// Datasets, models and predictions live under [data] url (./jobfleet-data).
    #[command(verbatim_doc_comment)]
    Run(run_job::RunArgs),
    /// Enqueue one job from flags, or many from a JSON-lines file.
    Enqueue(enqueue::EnqueueArgs),
    /// Show a job's state.
    Status(status::StatusArgs),
    /// Show queue depths, fleet throughput and live workers (--watch to follow).
    Queues(queues::QueuesArgs),
    /// Show the live workers, how busy they are and the jobs they run.
    Workers(workers::WorkersArgs),
    /// List, show, replay or purge dead letters.
    Dlq(dlq::DlqArgs),
    /// Cancel a job.
    Cancel(cancel::CancelArgs),
    /// Submit a pipeline (steps run in turn, fan-out steps in parallel) or show one.
    Pipeline(pipeline::PipelineArgs),
    /// Add, list, show, pause, resume, remove or trigger cron schedules.
    Schedule(schedule::ScheduleArgs),
    /// Measure jobfleet's throughput against the bare broker's; one JSON line on stdout.
    Bench(bench::BenchArgs),
    /// Write synthetic basketball game logs (CSV + schema) for the data kinds.
    #[cfg(feature = "data")]
    SampleData(crate::commands::sample_data::SampleDataArgs),
    /// Measure ingest, train and predict beside pyarrow and scikit-learn; one JSON line.
    #[cfg(feature = "data")]
    BenchData(crate::commands::bench_data::BenchDataArgs),
}

/// Runs the command `cli` names to its end: the configuration, logging, an async runtime,
/// SIGTERM and Ctrl-C, then the command itself.
pub fn run(cli: Cli) -> Result<(), Error> {
    let config = cli.global.load_config()?;
    let profile = match cli.command {
        // Both are watched at a terminal; the bench must not log a line per job either.
        Command::Dev(_) | Command::Bench(_) => Profile::Dev,
        Command::Run(_) => Profile::Run,
        #[cfg(feature = "data")]
        Command::BenchData(_) => Profile::Dev,
        Command::Worker | Command::Scheduler => Profile::Service,
        _ => Profile::Operator,
    };
    let rust_log = std::env::var("RUST_LOG").ok();
    // Job spans are the worker's: only it exports (the scheduler opens none).
    let spans = matches!(cli.command, Command::Worker).then_some(&config.log);
    let _spans = logging::init(
        &logging::choose(
            &config,
            profile,
            cli.global.log_format,
            cli.global.verbose,
            rust_log,
        ),
        spans,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Task(format!("cannot start the async runtime: {e}")))?;
    let out = runtime.block_on(shutdown::run_until_signal(|token| {
        dispatch(cli.command, config, token)
    }));
    // The command has returned (or was abandoned on a second signal): do not wait for
    // stragglers.
    runtime.shutdown_background();
    if matches!(out, Err(Error::Interrupted)) {
        // A forced exit keeps its 2 s promise: the span exporter's flush could wait on an
        // unreachable collector for its whole timeout; the spans not sent yet are lost.
        std::mem::forget(_spans);
    }
    out
}

async fn dispatch(command: Command, config: Config, token: CancellationToken) -> Result<(), Error> {
    match command {
        Command::Dev(args) => dev::main(args, config, token).await,
        Command::Worker => worker::run(config, token).await,
        Command::Scheduler => scheduler::run(config, token).await,
        Command::Run(args) => run_job::run(args, config).await,
        Command::Enqueue(args) => enqueue::run(args, config).await,
        Command::Status(args) => status::run(args, config, token).await,
        Command::Queues(args) => queues::run(args, config, token).await,
        Command::Workers(args) => workers::run(args, config).await,
        Command::Dlq(args) => dlq::run(args, config).await,
        Command::Cancel(args) => cancel::run(args, config).await,
        Command::Schedule(args) => schedule::run(args, config).await,
        Command::Pipeline(args) => pipeline::run(args, config).await,
        Command::Bench(args) => bench::run(args, config).await,
        #[cfg(feature = "data")]
        Command::SampleData(args) => crate::commands::sample_data::run(args).await,
        #[cfg(feature = "data")]
        Command::BenchData(args) => crate::commands::bench_data::run(args, config).await,
    }
}
