//! `jobfleet queues`: how many jobs each queue holds and where (ready, unacked, delayed,
//! dead), how many workers are alive, and, above all, a warning when the store lost its
//! data (an open data-loss incident). `--ack-data-loss` clears that incident once the
//! operator has dealt with it.

use std::fmt::Write as _;

use clap::Args;
use jobfleet_common::store::DataLossIncident;
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
    /// Clear the open data-loss incident (after re-enqueuing what must run) and print it;
    /// prints nothing else.
    #[arg(long)]
    pub ack_data_loss: bool,
}

/// What the command reports.
#[derive(Clone, Debug, Serialize)]
pub struct QueuesReport {
    /// Per queue: the configured ones plus any with delayed jobs or dead letters.
    pub queues: Vec<QueueDepth>,
    /// Workers whose heartbeat has not expired.
    pub live_workers: usize,
    /// The store lost data and no operator has cleared the incident yet.
    pub data_loss: Option<DataLossIncident>,
}

/// Runs the command.
pub async fn run(args: QueuesArgs, config: Config) -> Result<()> {
    let backends = connect_shared(&config, "queues").await?;
    if args.ack_data_loss {
        match backends.store.clear_data_loss().await? {
            Some(incident) => println!("cleared the data-loss incident: {}", describe(&incident)),
            None => println!("no data-loss incident was open"),
        }
        return Ok(());
    }
    let queues = ops::queue_depths(&backends, &config.worker.queues).await?;
    let live_workers = backends.store.workers().await?.len();
    let data_loss = backends.store.data_loss_incident().await?;
    let report = QueuesReport {
        queues,
        live_workers,
        data_loss,
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

/// An incident in one line.
fn describe(incident: &DataLossIncident) -> String {
    format!(
        "detected at Unix ms {} by {}: {}",
        incident.detected_at_ms, incident.detected_by, incident.lost
    )
}

/// The open incident's warning line (first, so nobody misses it), a table with `-` where
/// the broker cannot tell, then the worker count.
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
    if let Some(incident) = &report.data_loss {
        let _ = writeln!(
            out,
            "WARNING: THE STORE LOST DATA ({}). Once dealt with, clear this with \
             `jobfleet queues --ack-data-loss`.",
            describe(incident)
        );
    }
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
            data_loss: None,
        };
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "queue       ready   unacked   delayed      dead");
        assert_eq!(lines[1], "default        12         3         4         1");
        assert_eq!(lines[2], "?               -         -         0         2");
        assert_eq!(lines[3], "live workers: 2");
        let report = QueuesReport {
            data_loss: Some(DataLossIncident {
                detected_at_ms: 1_700_000_000_000,
                detected_by: "scheduler on h (pid 7)".into(),
                lost: "the sentinel key ns:sentinel vanished".into(),
                since_ms: None,
            }),
            ..report
        };
        let text = render(&report);
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with("WARNING: THE STORE LOST DATA"), "{first}");
        assert!(first.contains("ns:sentinel vanished"), "{first}");
        assert!(first.contains("jobfleet queues --ack-data-loss"), "{first}");
        assert_eq!(text.lines().nth(1), Some(lines[0]));
    }
}
