//! `jobfleet queues`: how many jobs each queue holds and where (ready, unacked, delayed,
//! dead), and how many workers are alive.

use std::fmt::Write as _;

use clap::Args;
use jobfleet_common::Config;
use jobfleet_scheduler::ops::{self, QueueDepth};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::global::connect_shared;

/// Flags of `jobfleet queues`.
#[derive(Clone, Debug, Args)]
pub struct QueuesArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What the command reports.
#[derive(Clone, Debug, Serialize)]
pub struct QueuesReport {
    /// Per queue: the configured ones plus any with delayed jobs or dead letters.
    pub queues: Vec<QueueDepth>,
    /// Workers whose heartbeat has not expired.
    pub live_workers: usize,
}

/// Runs the command.
pub async fn run(args: QueuesArgs, config: Config) -> Result<()> {
    let backends = connect_shared(&config, "queues").await?;
    let queues = ops::queue_depths(&backends, &config.worker.queues).await?;
    let live_workers = backends.store.workers().await?.len();
    let report = QueuesReport {
        queues,
        live_workers,
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Task(format!("cannot write the report as JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// A table, `-` where the broker cannot tell, then the worker count.
pub fn render(report: &QueuesReport) -> String {
    let width = report
        .queues
        .iter()
        .map(|q| q.queue.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let known = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:<width$}  {:>8}  {:>8}  {:>8}  {:>8}",
        "queue", "ready", "unacked", "delayed", "dead"
    );
    for q in &report.queues {
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>8}  {:>8}  {:>8}",
            q.queue,
            known(q.ready),
            known(q.unacked),
            q.delayed,
            q.dead
        );
    }
    let _ = writeln!(out, "live workers: {}", report.live_workers);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_marks_unknown_depths() {
        let report = QueuesReport {
            queues: vec![
                QueueDepth {
                    queue: "default".into(),
                    ready: Some(12),
                    unacked: Some(3),
                    delayed: 4,
                    dead: 1,
                },
                QueueDepth {
                    queue: "?".into(),
                    ready: None,
                    unacked: None,
                    delayed: 0,
                    dead: 2,
                },
            ],
            live_workers: 2,
        };
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "queue       ready   unacked   delayed      dead");
        assert_eq!(lines[1], "default        12         3         4         1");
        assert_eq!(lines[2], "?               -         -         0         2");
        assert_eq!(lines[3], "live workers: 2");
    }
}
