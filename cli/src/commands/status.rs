//! `jobfleet status ID`: a job's state record, readable or as JSON.
//!
//! A `running` record says which worker runs the job, and stays `running` if that worker
//! dies (`kill -9`, a lost machine) until another worker takes the job once its
//! execution lease runs out. So for a `running` record the command also asks which
//! workers are alive (their heartbeat has not expired, as `jobfleet workers` lists them)
//! and says when the record's worker is gone.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use jobfleet_common::store::{Heartbeats, JobRecord, JobState, OperatorStore};
use jobfleet_common::{Config, JobId};

use crate::error::{Error, Result};
use crate::global::connect_to_look;
use crate::parse::{self, rfc3339_ms};
use tokio_util::sync::CancellationToken;

/// Flags of `jobfleet status`.
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// The job's id.
    pub id: JobId,
    /// Print the record as JSON; a running job's also carries `worker_alive`, false once
    /// its worker's heartbeat has expired.
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
    let look = connect_to_look(&config, "status").await?;
    look.print_warnings();
    let store: &dyn OperatorStore = &*look.backends.store;
    let mut shown: Option<(JobRecord, Option<Liveness>)> = None;
    loop {
        let record = store
            .record(args.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no record of job {}", args.id)))?;
        let worker = liveness(store, &record).await;
        let seen = (record, worker);
        if shown.as_ref() != Some(&seen) {
            print_record(&seen.0, seen.1.as_ref(), args.json, args.watch)?;
        }
        if !args.watch || seen.0.state.is_terminal() {
            return Ok(());
        }
        shown = Some(seen);
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(args.every) => {}
        }
    }
}

/// Whether the worker a `running` record names is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Its heartbeat has not expired.
    Live,
    /// It has no live heartbeat: it died, or stopped without settling the job.
    Gone,
    /// The store did not say (the error).
    Unknown(String),
}

/// What is known of the worker of `record` if it is `running` and names one; `None`
/// otherwise.
async fn liveness(store: &dyn Heartbeats, record: &JobRecord) -> Option<Liveness> {
    if record.state != JobState::Running {
        return None;
    }
    let id = record.worker.as_deref()?;
    Some(match store.workers().await {
        Ok(live) if live.iter().any(|w| w.id == id) => Liveness::Live,
        Ok(_) => Liveness::Gone,
        Err(e) => Liveness::Unknown(e.to_string()),
    })
}

fn print_record(
    record: &JobRecord,
    worker: Option<&Liveness>,
    json: bool,
    watch: bool,
) -> Result<()> {
    if json {
        let text = to_json(record, worker, watch)
            .map_err(|e| Error::Task(format!("cannot write the record as JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(record, worker));
        if watch {
            println!();
        }
    }
    Ok(())
}

/// The record as JSON, with `worker_alive` (true or false) beside the fields of a
/// `running` record whose worker's liveness is known.
fn to_json(
    record: &JobRecord,
    worker: Option<&Liveness>,
    compact: bool,
) -> serde_json::Result<String> {
    let mut value = serde_json::to_value(record)?;
    let alive = match worker {
        Some(Liveness::Live) => Some(true),
        Some(Liveness::Gone) => Some(false),
        Some(Liveness::Unknown(_)) | None => None,
    };
    if let (Some(alive), Some(fields)) = (alive, value.as_object_mut()) {
        fields.insert("worker_alive".into(), alive.into());
    }
    if compact {
        serde_json::to_string(&value)
    } else {
        serde_json::to_string_pretty(&value)
    }
}

/// The record as aligned `name  value` lines; absent fields are left out. `worker` is
/// what is known of a `running` record's worker: a gone one is said so beside its id.
pub fn render(r: &JobRecord, worker: Option<&Liveness>) -> String {
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
        let text = match worker {
            Some(Liveness::Gone) => format!(
                "{w} (gone: its heartbeat expired; the job runs again once its execution \
                 lease, worker.lease_ttl, runs out)"
            ),
            Some(Liveness::Unknown(e)) => format!("{w} (alive or not: unknown, {e})"),
            Some(Liveness::Live) | None => w.clone(),
        };
        rows.push(("worker", text));
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
        let text = render(&r, None);
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
            render(&r, None).contains("result     {\"rows\":3}\n"),
            "{}",
            render(&r, None)
        );
    }

    #[test]
    fn a_running_record_whose_worker_is_gone_says_so() {
        let job = Job::new("emails", "send", "{}");
        let mut r = JobRecord::of(&job, JobState::Running, 1_714_564_800_250);
        r.worker = Some("host-7-abcdef".into());
        let live = render(&r, Some(&Liveness::Live));
        assert!(live.contains("worker     host-7-abcdef\n"), "{live}");
        let gone = render(&r, Some(&Liveness::Gone));
        assert!(
            gone.contains("worker     host-7-abcdef (gone: its heartbeat expired;"),
            "{gone}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&r, Some(&Liveness::Gone), true).expect("JSON"))
                .expect("parses");
        assert_eq!(json["worker_alive"], false);
        assert_eq!(json["state"], "running");
        let unknown = to_json(&r, Some(&Liveness::Unknown("down".into())), false).expect("JSON");
        assert!(!unknown.contains("worker_alive"), "{unknown}");
    }
}
