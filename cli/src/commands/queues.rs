//! `jobfleet queues`: how many jobs each queue holds and where (ready, unacked, delayed,
//! dead), how many workers are alive, and, above all, a warning when the store lost its
//! data (an open data-loss incident). `--ack-data-loss` clears that incident once the
//! operator has dealt with it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use clap::Args;
use jobfleet_common::store::{DataLossIncident, Durability, OperatorStore};
use jobfleet_common::{Config, OperatorBackends};
use jobfleet_scheduler::ops::{self, QueueDepth};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::global::{connect_on_any_store, data_loss_warning, describe_incident};
use crate::parse;

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
    /// Redraw every --every until Ctrl-C, with each queue's completions per second and
    /// the fleet's throughput and failures per second between draws (with --json: one
    /// JSON object per line).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: how often to redraw.
    #[arg(long, value_parser = parse::duration, default_value = "2s")]
    pub every: Duration,
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
    /// What the store's server keeps across its restart (absent for the embedded store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_durability: Option<Durability>,
    /// `redis.require_persistence`: whether a store that does not persist is an alarm.
    pub require_persistence: bool,
    /// Jobs completed, as the store counts them: every worker that ever ran counts.
    pub completed: u64,
    /// Attempts failed, summed over live workers since each started.
    pub failed: u64,
    /// With --watch, from the second draw on: attempts completed and failed per second
    /// since the previous draw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
}

/// Rates between two looks, fleet-wide and per queue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rates {
    /// Attempts completed per second.
    pub completed_per_sec: f64,
    /// Attempts failed per second.
    pub failed_per_sec: f64,
    /// Per queue: attempts completed and failed per second.
    pub queues: BTreeMap<String, QueueRate>,
}

/// One queue's rates between two looks.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QueueRate {
    /// Attempts completed per second.
    pub completed_per_sec: f64,
    /// Attempts failed per second.
    pub failed_per_sec: f64,
}

impl Rates {
    /// The rates from `before` to `after`, `seconds` apart; `None` if no time passed.
    /// A worker that left takes its counts along: a drop counts as nothing done.
    pub fn between(before: &QueuesReport, after: &QueuesReport, seconds: f64) -> Option<Self> {
        let per_sec = |after: u64, before: u64| after.saturating_sub(before) as f64 / seconds;
        let queues = after
            .queues
            .iter()
            .map(|q| {
                let was = before.queues.iter().find(|b| b.queue == q.queue);
                // A queue new since the last look starts from now, not from zero.
                let (completed, failed) =
                    was.map_or((q.completed, q.failed), |b| (b.completed, b.failed));
                let rate = QueueRate {
                    completed_per_sec: per_sec(q.completed, completed),
                    failed_per_sec: per_sec(q.failed, failed),
                };
                (q.queue.clone(), rate)
            })
            .collect();
        (seconds > 0.0).then(|| Self {
            completed_per_sec: per_sec(after.completed, before.completed),
            failed_per_sec: per_sec(after.failed, before.failed),
            queues,
        })
    }
}

/// Runs the command; with `--watch`, until `shutdown`.
pub async fn run(args: QueuesArgs, config: Config, shutdown: CancellationToken) -> Result<()> {
    if args.every.is_zero() {
        return Err(Error::Usage("--every must be greater than 0".into()));
    }
    // Any store answers, so operators can look (and clear) during an incident; each look
    // reports the incident and what the store keeps.
    let backends = connect_on_any_store(&config, "queues").await?;
    if args.ack_data_loss {
        match backends.store.clear_data_loss().await? {
            Some(incident) => println!(
                "cleared the data-loss incident: {}",
                describe_incident(&incident)
            ),
            None => println!("no data-loss incident was open"),
        }
        return Ok(());
    }
    let mut previous: Option<(QueuesReport, Instant)> = None;
    loop {
        let mut report = report(&backends, &config).await?;
        let now = Instant::now();
        if let Some((before, at)) = &previous {
            report.rates = Rates::between(before, &report, (now - *at).as_secs_f64());
        }
        if args.json {
            let json = if args.watch {
                serde_json::to_string(&report)
            } else {
                serde_json::to_string_pretty(&report)
            };
            let json =
                json.map_err(|e| Error::Task(format!("cannot write the report as JSON: {e}")))?;
            println!("{json}");
        } else {
            if args.watch && std::io::stdout().is_terminal() {
                // Clear the screen and go home, like watch(1).
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", render(&report));
            if args.watch {
                println!();
            }
        }
        if !args.watch {
            return Ok(());
        }
        previous = Some((report, now));
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(args.every) => {}
        }
    }
}

/// One look at the fleet, through what an operator command may touch.
async fn report(backends: &OperatorBackends, config: &Config) -> Result<QueuesReport> {
    let store: &dyn OperatorStore = &*backends.store;
    let (broker, clock) = (&*backends.broker, &*backends.clock);
    let mut queues = ops::queue_depths(store, broker, clock, &config.worker.queues).await?;
    let workers = store.workers().await?;
    ops::count_failed(&mut queues, &workers);
    let (data_loss, durability) = tokio::join!(store.data_loss_incident(), store.durability());
    Ok(QueuesReport {
        completed: queues.iter().map(|q| q.completed).sum(),
        queues,
        live_workers: workers.len(),
        data_loss: data_loss?,
        store_durability: durability?,
        require_persistence: config.redis.require_persistence,
        failed: workers.iter().map(|w| w.failed).sum(),
        rates: None,
    })
}

/// An age in a few characters: `850ms`, `12.5s`, `4m05s`, `3h20m`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The open incident's warning line and a store that should persist but does not (first,
/// so nobody misses them), a table with `-` where the broker cannot tell, the worker
/// count, then what the store keeps across its restart.
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
        let _ = writeln!(out, "{}", data_loss_warning(incident));
    }
    let durability = report.store_durability.as_ref();
    if let Some(alarm) = durability.and_then(|d| d.alarm(report.require_persistence)) {
        let _ = writeln!(out, "WARNING: {alarm}");
    }
    // Watching: each queue's completions per second since the last draw.
    let rate_header = if report.rates.is_some() {
        "  done/s"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{:<width$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}{rate_header}",
        "queue", "ready", "unacked", "delayed", "dead", "oldest"
    );
    for q in &report.queues {
        let rate = report.rates.as_ref().map_or_else(String::new, |r| {
            let done = r.queues.get(&q.queue).map_or(0.0, |q| q.completed_per_sec);
            format!("  {done:>6.1}")
        });
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}{rate}",
            q.queue,
            known(q.ready),
            known(q.unacked),
            q.delayed,
            q.dead,
            q.oldest_waiting_ms.map_or_else(|| "-".to_string(), age)
        );
    }
    let _ = writeln!(out, "live workers: {}", report.live_workers);
    if let Some(d) = durability {
        let accepted = if d.persisting || report.require_persistence {
            ""
        } else {
            " (accepted by redis.require_persistence = false)"
        };
        let _ = writeln!(
            out,
            "store keeps: {}; a restart of it loses {}{accepted}",
            d.summary, d.loss_window
        );
    }
    if let Some(r) = &report.rates {
        let _ = writeln!(
            out,
            "throughput: {:.1} completed/s, {:.1} failed/s",
            r.completed_per_sec, r.failed_per_sec
        );
    }
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
                    oldest_waiting_ms: Some(12_500),
                    completed: 8,
                    failed: 1,
                },
                QueueDepth {
                    queue: "?".into(),
                    ready: None,
                    unacked: None,
                    delayed: 0,
                    dead: 2,
                    oldest_waiting_ms: None,
                    completed: 0,
                    failed: 0,
                },
            ],
            live_workers: 2,
            data_loss: None,
            store_durability: None,
            require_persistence: true,
            completed: 10,
            failed: 1,
            rates: None,
        };
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "queue       ready   unacked   delayed      dead    oldest"
        );
        assert_eq!(
            lines[1],
            "default        12         3         4         1     12.5s"
        );
        assert_eq!(
            lines[2],
            "?               -         -         0         2         -"
        );
        let ages: Vec<String> = [850, 12_500, 245_000, 12_000_000].map(age).into();
        assert_eq!(ages, ["850ms", "12.5s", "4m05s", "3h20m"]);
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

        // Watching: rates between two looks, a worker that left counting as nothing.
        let mut later = QueuesReport {
            completed: 30,
            failed: 0,
            ..report.clone()
        };
        later.queues[0].completed = 28;
        later.queues[0].failed = 0;
        let rates = Rates::between(&report, &later, 2.0).expect("time passed");
        assert_eq!(rates.completed_per_sec, 10.0);
        assert_eq!(rates.failed_per_sec, 0.0);
        assert_eq!(rates.queues["default"].completed_per_sec, 10.0);
        assert_eq!(rates.queues["default"].failed_per_sec, 0.0);
        assert!(Rates::between(&report, &later, 0.0).is_none());
        let text = render(&QueuesReport {
            rates: Some(rates),
            ..later
        });
        assert!(
            text.ends_with("throughput: 10.0 completed/s, 0.0 failed/s\n"),
            "{text}"
        );
        let table: Vec<&str> = text.lines().collect();
        assert!(table[1].ends_with("  done/s"), "{text}");
        assert!(table[2].ends_with("    10.0"), "{text}");
        assert!(table[3].ends_with("     0.0"), "{text}");
    }
}
