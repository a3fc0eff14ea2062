//! `jobfleet status ID`: a job's state record, readable or as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use jobfleet_common::store::JobRecord;
use jobfleet_common::{Config, JobId};

use crate::error::{Error, Result};
use crate::global::connect_shared;
use crate::parse::{self, rfc3339_ms};
use tokio_util::sync::CancellationToken;

/// Flags of `jobfleet status`.
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// The job's id.
    pub id: JobId,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the record again each time it changes, until the job finishes (completed,
    /// dead, cancelled, skipped) or Ctrl-C; with --json, one object per line.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: how often to look.
    #[arg(long, value_parser = parse::duration, default_value = "500ms")]
    pub every: Duration,
}

/// Runs the command; with `--watch`, until the job finishes or `shutdown`.
pub async fn run(args: StatusArgs, config: Config, shutdown: CancellationToken) -> Result<()> {
    if args.every.is_zero() {
        return Err(Error::Usage("--every must be greater than 0".into()));
    }
    let backends = connect_shared(&config, "status").await?;
    let mut shown: Option<JobRecord> = None;
    loop {
        let record = backends
            .store
            .record(args.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no record of job {}", args.id)))?;
        if shown.as_ref() != Some(&record) {
            print_record(&record, args.json, args.watch)?;
        }
        if !args.watch || record.state.is_terminal() {
            return Ok(());
        }
        shown = Some(record);
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(args.every) => {}
        }
    }
}

fn print_record(record: &JobRecord, json: bool, watch: bool) -> Result<()> {
    if json {
        let text = if watch {
            serde_json::to_string(record)
        } else {
            serde_json::to_string_pretty(record)
        };
        let text =
            text.map_err(|e| Error::Task(format!("cannot write the record as JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(record));
        if watch {
            println!();
        }
    }
    Ok(())
}

/// The record as aligned `name  value` lines; absent fields are left out.
pub fn render(r: &JobRecord) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", r.id.to_string()),
        ("queue", r.queue.clone()),
        ("kind", r.kind.clone()),
        ("state", r.state.to_string()),
        ("attempt", format!("{}/{}", r.attempt, r.max_attempts)),
        ("enqueued", rfc3339_ms(r.enqueued_at_ms)),
        ("updated", rfc3339_ms(r.updated_at_ms)),
    ];
    let times = [
        ("started", r.started_at_ms),
        ("finished", r.finished_at_ms),
        ("run at", r.run_at_ms),
    ];
    rows.extend(
        times
            .into_iter()
            .filter_map(|(name, t)| Some((name, rfc3339_ms(t?)))),
    );
    if let Some(p) = r.progress {
        let percent = format!("{:.0}%", f64::from(p) * 100.0);
        rows.push(match &r.progress_note {
            Some(note) => ("progress", format!("{percent} ({note})")),
            None => ("progress", percent),
        });
    }
    if let Some(w) = &r.worker {
        rows.push(("worker", w.clone()));
    }
    if let Some(e) = &r.last_error {
        let text = format!(
            "attempt {} {} at {}: {}",
            e.attempt,
            e.kind,
            rfc3339_ms(e.at_ms),
            e.message
        );
        rows.push(("last error", text));
    }
    if let Some(n) = &r.note {
        rows.push(("note", n.clone()));
    }
    if let Some(result) = &r.result {
        rows.push(("result", result.to_string()));
    }
    let mut out = String::new();
    for (name, value) in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{name:<11}{value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::store::JobState;
    use jobfleet_common::{ErrorKind, ErrorRecord, Job};

    #[test]
    fn renders_what_is_known_and_skips_the_rest() {
        let job = Job::new("emails", "send", "{}").with_max_attempts(5);
        let mut r = JobRecord::of(&job, JobState::Retrying, 1_714_564_800_250);
        r.attempt = 2;
        r.progress = Some(0.4);
        r.last_error = Some(ErrorRecord {
            attempt: 1,
            at_ms: 1_714_564_800_000,
            kind: ErrorKind::Timeout,
            message: "ran past 5m".into(),
        });
        let text = render(&r);
        assert!(text.contains("state      retrying\n"), "{text}");
        assert!(text.contains("attempt    2/5\n"), "{text}");
        assert!(
            text.contains("updated    2024-05-01T12:00:00.250Z\n"),
            "{text}"
        );
        assert!(text.contains("progress   40%\n"), "{text}");
        assert!(
            text.contains("last error attempt 1 timeout at 2024-05-01T12:00:00.000Z: ran past 5m")
        );
        assert!(!text.contains("worker"), "{text}");
        assert!(!text.contains("finished"), "{text}");
        assert!(!text.contains("result"), "{text}");
        r.result = Some(serde_json::json!({"rows": 3}));
        assert!(
            render(&r).contains("result     {\"rows\":3}\n"),
            "{}",
            render(&r)
        );
    }
}
