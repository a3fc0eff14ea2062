//! `jobfleet schedule add|list|show|pause|resume|remove|trigger`: cron schedules at run
//! time. Schedules live in the store; running schedulers pick changes up within a third
//! of `scheduler.leader_lease`. See docs/schedules.md.

use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use jobfleet_common::cron::{MissedPolicy, OverlapPolicy, ScheduleSpec};
use jobfleet_common::store::OperatorStore;
use jobfleet_common::{Config, Priority};
use jobfleet_scheduler::ops::{self, ScheduleView};

use crate::error::{Error, Result};
use crate::global::connect_operator;
use crate::parse::{duration, priority, rfc3339_ms};

/// Flags of `jobfleet schedule`.
#[derive(Clone, Debug, Args)]
pub struct ScheduleArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ScheduleAction,
}

/// The `schedule` subcommands.
#[derive(Clone, Debug, Subcommand)]
pub enum ScheduleAction {
    /// Add a schedule (or replace one with --replace).
    Add(AddArgs),
    /// List schedules: state, policies, last and next fire.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one schedule in full.
    Show {
        /// The schedule's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule firing until it is resumed.
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Resume a paused schedule; instants that passed while it was paused do not fire.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Remove a schedule (one from a config file comes back when a scheduler starts with it).
    Remove {
        /// The schedule's name.
        name: String,
    },
    /// Fire a schedule once now, outside its instants; prints the job's id.
    Trigger {
        /// The schedule's name.
        name: String,
    },
}

/// Flags of `jobfleet schedule add`.
#[derive(Clone, Debug, Args)]
pub struct AddArgs {
    /// The schedule's name: 1-100 of letters, digits, `-`, `_` and `.`
    pub name: String,
    /// Cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first.
    #[arg(long)]
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Queue its jobs go to.
    #[arg(long)]
    pub queue: String,
    /// Job kind (the handler).
    #[arg(long)]
    pub kind: String,
    /// Payload, as JSON.
    #[arg(long)]
    pub payload: Option<String>,
    /// Priority: low, normal, high, critical or 0-9.
    #[arg(long, value_parser = priority, default_value = "normal")]
    pub priority: Priority,
    /// Attempts per job.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Per-attempt timeout, e.g. 5m.
    #[arg(long, value_parser = duration, default_value = "5m")]
    pub timeout: Duration,
    /// Instants missed beyond --grace: skip them, fire the latest, or fire all.
    #[arg(long, value_enum, default_value = "latest")]
    pub missed: Missed,
    /// With --missed all: most missed instants fired.
    #[arg(long, default_value_t = jobfleet_common::cron::DEFAULT_MAX_CATCH_UP)]
    pub max_catch_up: u32,
    /// While the previous run is unfinished: fire anyway, skip, or fire when it finishes.
    #[arg(long, value_enum, default_value = "allow")]
    pub overlap: Overlap,
    /// How late an instant may fire and still be on time, e.g. 60s.
    #[arg(long, value_parser = duration, default_value = "60s")]
    pub grace: Duration,
    /// Add it paused.
    #[arg(long)]
    pub paused: bool,
    /// Replace a schedule of that name (its state is kept).
    #[arg(long)]
    pub replace: bool,
}

/// `--missed`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Missed {
    /// Fire none of them.
    Skip,
    /// Fire once, for the most recent.
    Latest,
    /// Fire each, at most --max-catch-up.
    All,
}

/// `--overlap`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Overlap {
    /// Fire anyway.
    Allow,
    /// Do not fire for that instant.
    Skip,
    /// Fire once the previous run finishes.
    Queue,
}

impl AddArgs {
    /// The schedule these flags declare.
    pub fn spec(&self) -> Result<ScheduleSpec> {
        let payload = match &self.payload {
            None => None,
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| Error::Usage(format!("--payload is not JSON: {e}")))?,
            ),
        };
        Ok(ScheduleSpec {
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            payload,
            priority: self.priority,
            max_attempts: self.max_attempts,
            timeout: self.timeout,
            missed: match self.missed {
                Missed::Skip => MissedPolicy::Skip,
                Missed::Latest => MissedPolicy::Latest,
                Missed::All => MissedPolicy::All,
            },
            max_catch_up: self.max_catch_up,
            overlap: match self.overlap {
                Overlap::Allow => OverlapPolicy::Allow,
                Overlap::Skip => OverlapPolicy::Skip,
                Overlap::Queue => OverlapPolicy::Queue,
            },
            grace: self.grace,
            enabled: true,
        })
    }
}

/// Runs the command.
pub async fn run(args: ScheduleArgs, config: Config) -> Result<()> {
    // An invalid schedule is refused before anything connects.
    let add = match &args.action {
        ScheduleAction::Add(add) => {
            let spec = add.spec()?;
            ops::check_schedule(&add.name, &spec, &config.limits)?;
            Some(spec)
        }
        _ => None,
    };
    let backends = connect_operator(&config, "schedule").await?;
    let store: &dyn OperatorStore = &*backends.store;
    let missing = |name: &str| Error::NotFound(format!("no schedule {name:?}"));
    match args.action {
        ScheduleAction::Add(flags) => {
            let spec = add.unwrap_or_else(|| unreachable!("checked above"));
            let created =
                ops::schedule_add(store, &config.limits, &flags.name, &spec, flags.replace).await?;
            if flags.paused {
                ops::schedule_pause(store, &flags.name, true).await?;
            }
            let verb = if created { "added" } else { "replaced" };
            println!("{verb} schedule {}", flags.name);
        }
        ScheduleAction::List { json } => {
            let views = ops::schedule_list(store).await?;
            if json {
                println!("{}", to_json(&views)?);
            } else {
                print!("{}", render_table(&views));
            }
        }
        ScheduleAction::Show { name, json } => {
            let view = ops::schedule_show(store, &name)
                .await?
                .ok_or_else(|| missing(&name))?;
            if json {
                println!("{}", to_json(&view)?);
            } else {
                print!("{}", render_one(&view));
            }
        }
        ScheduleAction::Pause { name } => {
            if !ops::schedule_pause(store, &name, true).await? {
                return Err(missing(&name));
            }
            println!("paused schedule {name}");
        }
        ScheduleAction::Resume { name } => {
            if !ops::schedule_pause(store, &name, false).await? {
                return Err(missing(&name));
            }
            println!("resumed schedule {name}");
        }
        ScheduleAction::Remove { name } => {
            if !ops::schedule_remove(store, &name).await? {
                return Err(missing(&name));
            }
            println!("removed schedule {name}");
        }
        ScheduleAction::Trigger { name } => {
            let id = ops::schedule_trigger(store, &name)
                .await?
                .ok_or_else(|| missing(&name))?;
            println!("{id}");
        }
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| Error::Task(format!("cannot write JSON: {e}")))
}

fn time(ms: Option<i64>) -> String {
    ms.map(rfc3339_ms).unwrap_or_else(|| "-".into())
}

/// One row per schedule: name, state, cron and zone, queue/kind, policies, last and
/// next fire.
pub fn render_table(views: &[ScheduleView]) -> String {
    if views.is_empty() {
        return "no schedules\n".into();
    }
    let header = [
        "NAME",
        "STATE",
        "CRON",
        "TIMEZONE",
        "QUEUE",
        "KIND",
        "MISSED",
        "OVERLAP",
        "LAST FIRE",
        "NEXT FIRE",
        "FIRES",
        "SOURCE",
    ]
    .map(String::from);
    let rows: Vec<[String; 12]> = views
        .iter()
        .map(|v| {
            let (s, spec) = (&v.stored, &v.stored.spec);
            [
                s.name.clone(),
                v.status.to_string(),
                spec.cron.clone(),
                spec.timezone.clone(),
                spec.queue.clone(),
                spec.kind.clone(),
                spec.missed.as_str().to_string(),
                spec.overlap.as_str().to_string(),
                time(s.state.last_instant_ms),
                time(v.next_fire_ms),
                s.state.fires.to_string(),
                s.source.as_str().to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// One schedule as aligned `name  value` lines.
pub fn render_one(v: &ScheduleView) -> String {
    let (s, spec) = (&v.stored, &v.stored.spec);
    let payload = spec
        .payload
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "-".into());
    let owed = s.state.owed_ms.map(rfc3339_ms);
    let rows: Vec<(&str, String)> = vec![
        ("name", s.name.clone()),
        ("state", v.status.to_string()),
        ("cron", spec.cron.clone()),
        ("timezone", spec.timezone.clone()),
        ("queue", spec.queue.clone()),
        ("kind", spec.kind.clone()),
        ("payload", payload),
        ("priority", spec.priority.to_string()),
        ("max attempts", spec.max_attempts.to_string()),
        (
            "timeout",
            humantime::format_duration(spec.timeout).to_string(),
        ),
        ("missed", spec.missed.as_str().to_string()),
        ("max catch up", spec.max_catch_up.to_string()),
        ("overlap", spec.overlap.as_str().to_string()),
        ("grace", humantime::format_duration(spec.grace).to_string()),
        ("source", s.source.as_str().to_string()),
        ("last instant", time(s.state.last_instant_ms)),
        ("last fired at", time(s.state.last_fired_at_ms)),
        (
            "last job",
            s.state.last_job.map_or("-".into(), |id| id.to_string()),
        ),
        ("next fire", time(v.next_fire_ms)),
        ("owed", owed.unwrap_or_else(|| "-".into())),
        ("fires", s.state.fires.to_string()),
        ("created", rfc3339_ms(s.state.created_at_ms)),
        ("updated", rfc3339_ms(s.updated_at_ms)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, value) in rows {
        let _ = writeln!(out, "{k:<width$}  {value}");
    }
    out
}
