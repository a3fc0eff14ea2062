//! `jobfleet pipeline submit FILE` and `jobfleet pipeline status ID`: jobs run step after
//! step, each given the previous step's result, with fan-out steps run in parallel. The
//! file format is in docs/pipelines.md.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use jobfleet_common::pipeline::PipelineSpec;
use jobfleet_common::store::OperatorStore;
use jobfleet_common::{Config, JobId};
use jobfleet_scheduler::ops::{self, PipelineView};

use crate::error::{Error, Result};
use crate::global::connect_operator;
use crate::parse::rfc3339_ms;

/// Flags of `jobfleet pipeline`.
#[derive(Clone, Debug, Args)]
pub struct PipelineArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: PipelineAction,
}

/// The `pipeline` subcommands.
#[derive(Clone, Debug, Subcommand)]
pub enum PipelineAction {
    /// Submit a pipeline from a TOML or JSON file; prints its id.
    Submit {
        /// The file.
        file: PathBuf,
    },
    /// Show each step of a pipeline: state, jobs completed, failure; the result once done.
    Status {
        /// The pipeline's id.
        id: JobId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command.
pub async fn run(args: PipelineArgs, config: Config) -> Result<()> {
    // A bad file is refused before anything connects.
    let spec = match &args.action {
        PipelineAction::Submit { file } => {
            let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            let spec = PipelineSpec::parse(&text)
                .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
            spec.check(&config.limits)
                .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
            Some(spec)
        }
        PipelineAction::Status { .. } => None,
    };
    let backends = connect_operator(&config, "pipeline").await?;
    let store: &dyn OperatorStore = &*backends.store;
    match args.action {
        PipelineAction::Submit { .. } => {
            let spec = spec.unwrap_or_else(|| unreachable!("read above"));
            let clock = &*backends.clock;
            let id = ops::pipeline_submit(store, clock, &config.limits, spec).await?;
            println!("{id}");
        }
        PipelineAction::Status { id, json } => {
            let view = ops::pipeline_status(store, id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no pipeline {id}")))?;
            if json {
                let text = serde_json::to_string_pretty(&view)
                    .map_err(|e| Error::Task(format!("cannot write JSON: {e}")))?;
                println!("{text}");
            } else {
                print!("{}", render(&view));
            }
        }
    }
    Ok(())
}

/// The pipeline's state, then one line per step.
pub fn render(v: &PipelineView) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "pipeline  {} {}", v.id, v.name);
    let _ = writeln!(out, "submitted {}", rfc3339_ms(v.created_at_ms));
    let _ = writeln!(out, "state     {}", v.state);
    if let Some(f) = &v.failure {
        let _ = writeln!(out, "failure   {f}");
    }
    if let Some(r) = &v.result {
        let _ = writeln!(out, "result    {r}");
    }
    for (i, s) in v.steps.iter().enumerate() {
        let _ = write!(
            out,
            "step {i}    {:<10} {:<10} {}/{} completed",
            s.name, s.state, s.completed, s.jobs
        );
        if let Some(f) = &s.failure {
            let _ = write!(out, "  {f}");
        }
        out.push('\n');
    }
    out
}
