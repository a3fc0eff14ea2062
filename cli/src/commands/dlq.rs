//! `jobfleet dlq list|show|replay|purge`: dead letters for operators.
//!
//! Letters are picked by ids, or by the filter flags alone; a purge that names neither
//! ids nor a filter must say `--all`, since it removes every letter there is.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use jobfleet_common::codec;
use jobfleet_common::store::{DeadFilter, DeadLetter, DeadSummary, OperatorStore};
use jobfleet_common::{Config, JobId};
use jobfleet_scheduler::ops;

use crate::error::{Error, Result};
use crate::global::{connect_operator, connect_to_look};
use crate::parse::rfc3339_ms;

/// Flags of `jobfleet dlq`.
#[derive(Clone, Debug, Args)]
pub struct DlqArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// The `dlq` subcommands.
#[derive(Clone, Debug, Subcommand)]
pub enum DlqAction {
    /// List dead letters, newest first.
    List(FilterArgs),
    /// Show one dead letter in full.
    Show {
        /// The letter's id.
        id: JobId,
    },
    /// Publish dead jobs again as fresh first attempts.
    Replay {
        /// Which letters, when no ids are given.
        #[command(flatten)]
        filter: FilterArgs,
        /// Only these letters (each must match the filter too).
        ids: Vec<JobId>,
    },
    /// Remove dead letters for good.
    Purge {
        /// Which letters, when no ids are given.
        #[command(flatten)]
        filter: FilterArgs,
        /// Only these letters (each must match the filter too).
        ids: Vec<JobId>,
        /// Allow a purge with neither ids nor a filter: every letter goes.
        #[arg(long)]
        all: bool,
    },
}

/// Which dead letters a subcommand is about.
#[derive(Clone, Debug, Default, Args)]
pub struct FilterArgs {
    /// Only this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this error kind (e.g. `timeout`), or reasons containing this text.
    #[arg(long)]
    pub error: Option<String>,
    /// At most this many letters (list and replay).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

impl FilterArgs {
    /// The store's filter.
    pub fn filter(&self) -> DeadFilter {
        DeadFilter {
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            error: self.error.clone(),
        }
    }
}

/// Runs the command.
pub async fn run(args: DlqArgs, config: Config) -> Result<()> {
    if let DlqAction::Purge {
        filter,
        ids,
        all: false,
    } = &args.action
    {
        if ids.is_empty() && filter.filter() == DeadFilter::default() {
            return Err(Error::Usage(
                "purge with no ids and no filter removes every dead letter; add --all".into(),
            ));
        }
    }
    let backends = if let DlqAction::List(_) | DlqAction::Show { .. } = &args.action {
        // Reading dead letters works on any store, leading with what is wrong with it.
        let look = connect_to_look(&config, "dlq").await?;
        look.print_warnings();
        look.backends
    } else {
        connect_operator(&config, "dlq").await?
    };
    let store: &dyn OperatorStore = &*backends.store;
    match args.action {
        DlqAction::List(f) => {
            let letters = ops::dlq_list(store, &f.filter(), f.limit).await?;
            print!("{}", render_list(&letters));
        }
        DlqAction::Show { id } => {
            let letter = store
                .dead_get(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no dead letter {id}")))?;
            print!("{}", render_letter(&letter));
        }
        DlqAction::Replay { filter, ids } => {
            let report = ops::dlq_replay(
                store,
                &*backends.broker,
                &*backends.clock,
                &config.limits,
                &filter.filter(),
                &ids,
                filter.limit,
            )
            .await?;
            println!("replayed {}", report.replayed.len());
            for (id, why) in &report.not_replayable {
                println!("not replayable {id}: {why}");
            }
            for id in &report.not_found {
                println!("not found {id}");
            }
            let missed = report.not_replayable.len() + report.not_found.len();
            if missed > 0 {
                return Err(Error::Incomplete(format!(
                    "{missed} of {} dead letters asked for were not replayed (listed above)",
                    missed + report.replayed.len()
                )));
            }
        }
        DlqAction::Purge { filter, ids, .. } => {
            let removed = ops::dlq_purge(store, &filter.filter(), &ids).await?;
            println!("purged {removed}");
        }
    }
    Ok(())
}

/// One line per letter: id, when, queue, kind, error kind, reason (shortened).
pub fn render_list(letters: &[DeadSummary]) -> String {
    let mut out = String::new();
    for l in letters {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{}  {}  {:<12} {:<12} {:<12} {}",
            l.id,
            rfc3339_ms(l.died_at_ms),
            l.queue.as_deref().unwrap_or("?"),
            l.kind.as_deref().unwrap_or("?"),
            l.error_kind,
            shorten(&l.reason, 60)
        );
    }
    let _ = writeln!(out, "{} dead letters", letters.len());
    out
}

/// A letter in full: identity, why, every failed attempt, and the payload when the body
/// decodes.
pub fn render_letter(l: &DeadLetter) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id         {}", l.id);
    let _ = writeln!(
        out,
        "queue      {}",
        l.queue.as_deref().unwrap_or("? (body did not decode)")
    );
    let _ = writeln!(out, "kind       {}", l.kind.as_deref().unwrap_or("?"));
    let _ = writeln!(out, "died       {}", rfc3339_ms(l.died_at_ms));
    let _ = writeln!(out, "error      {}: {}", l.error_kind, l.reason);
    let content_type = l.content_type.as_deref().unwrap_or("none");
    let _ = writeln!(
        out,
        "body       {} bytes, content type {content_type}",
        l.body.len()
    );
    for e in &l.errors {
        let _ = writeln!(
            out,
            "attempt {:<3}{} {}: {}",
            e.attempt,
            rfc3339_ms(e.at_ms),
            e.kind,
            e.message
        );
    }
    if let Ok(job) = codec::decode(&l.body, l.content_type.as_deref()) {
        let payload = match std::str::from_utf8(&job.payload) {
            Ok(text) => shorten(text, 500),
            Err(_) => format!("{} bytes of binary", job.payload.len()),
        };
        let _ = writeln!(out, "payload    {payload}");
    }
    out
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::{ErrorKind, ErrorRecord, Job};

    fn letter() -> DeadLetter {
        let job = Job::new("emails", "send", r#"{"to":"a"}"#);
        DeadLetter {
            id: job.id,
            queue: Some("emails".into()),
            kind: Some("send".into()),
            reason: "fail: smtp said no".into(),
            error_kind: ErrorKind::Failed,
            errors: vec![ErrorRecord {
                attempt: 1,
                at_ms: 0,
                kind: ErrorKind::Failed,
                message: "no".into(),
            }],
            died_at_ms: 0,
            body: codec::encode(&job, codec::Format::Binary),
            content_type: None,
        }
    }

    #[test]
    fn list_and_show_say_what_died_and_why() {
        let l = letter();
        let list = render_list(std::slice::from_ref(&l.summary()));
        assert!(
            list.contains("emails") && list.contains("failed") && list.contains("smtp said no")
        );
        assert!(list.ends_with("1 dead letters\n"), "{list}");
        let show = render_letter(&l);
        assert!(
            show.contains("attempt 1  1970-01-01T00:00:00.000Z failed: no"),
            "{show}"
        );
        assert!(show.contains(r#"payload    {"to":"a"}"#), "{show}");
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("héllo", 3), "hél…");
        assert_eq!(shorten("hi", 3), "hi");
    }

    #[test]
    fn an_empty_filter_is_the_default() {
        assert_eq!(FilterArgs::default().filter(), DeadFilter::default());
        let f = FilterArgs {
            error: Some("timeout".into()),
            ..FilterArgs::default()
        };
        assert_ne!(f.filter(), DeadFilter::default());
    }
}
