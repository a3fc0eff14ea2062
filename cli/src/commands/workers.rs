//! `jobfleet workers`: the live workers (those whose heartbeat has not expired), what
//! they consume, how busy they are, what they have done since they started and which
//! jobs they run now.

use std::fmt::Write as _;

use clap::Args;
use jobfleet_common::store::WorkerInfo;
use jobfleet_common::Config;

use crate::error::{Error, Result};
use crate::global::connect_to_look;
use crate::parse::rfc3339_ms;

/// Flags of `jobfleet workers`.
#[derive(Clone, Debug, Args)]
pub struct WorkersArgs {
    /// Print as JSON (every field of every heartbeat, running job ids included).
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: WorkersArgs, config: Config) -> Result<()> {
    let look = connect_to_look(&config, "workers").await?;
    look.print_warnings();
    let workers = look.backends.store.workers().await?;
    if args.json {
        let json = serde_json::to_string_pretty(&workers)
            .map_err(|e| Error::Task(format!("cannot write the workers as JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", render(&workers));
    }
    Ok(())
}

/// One aligned row per worker, then the running jobs of each busy one.
pub fn render(workers: &[WorkerInfo]) -> String {
    let mut out = String::new();
    if workers.is_empty() {
        out.push_str("no live workers\n");
        return out;
    }
    let id_width = workers.iter().map(|w| w.id.len()).max().unwrap_or(0).max(6);
    let queues: Vec<String> = workers.iter().map(|w| w.queues.join(",")).collect();
    let q_width = queues.iter().map(String::len).max().unwrap_or(0).max(6);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:<id_width$}  {:<q_width$}  {:>9}  {:>9}  {:>7}  started",
        "worker", "queues", "running", "completed", "failed"
    );
    for (w, queues) in workers.iter().zip(&queues) {
        let _ = writeln!(
            out,
            "{:<id_width$}  {:<q_width$}  {:>9}  {:>9}  {:>7}  {}",
            w.id,
            queues,
            format!("{}/{}", w.running, w.concurrency),
            w.completed,
            w.failed,
            rfc3339_ms(w.started_at_ms)
        );
    }
    for w in workers.iter().filter(|w| !w.running_jobs.is_empty()) {
        let ids: Vec<String> = w.running_jobs.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "{} runs: {}", w.id, ids.join(" "));
    }
    let _ = writeln!(out, "live workers: {}", workers.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::JobId;
    use jobfleet_testkit::fixtures::worker;

    #[test]
    fn rows_align_and_busy_workers_list_their_jobs() {
        assert_eq!(render(&[]), "no live workers\n");
        let job = JobId::new();
        let busy = WorkerInfo {
            running: 1,
            running_jobs: vec![job],
            completed: 120,
            failed: 3,
            queues: vec!["default".into(), "ml".into()],
            ..worker("host-1-abcdef")
        };
        let text = render(&[busy, worker("w2")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "worker         queues        running  completed   failed  started"
        );
        assert!(
            lines[1].starts_with("host-1-abcdef  default,ml        1/4        120        3  "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("w2             q                 0/4          0        0  "),
            "{text}"
        );
        assert_eq!(lines[3], format!("host-1-abcdef runs: {job}"));
        assert_eq!(lines[4], "live workers: 2");
    }
}
