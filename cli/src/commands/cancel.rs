//! `jobfleet cancel ID`: ask that a job not run, or stop running, and say what happened.

use clap::Args;
use jobfleet_common::{Config, JobId};
use jobfleet_scheduler::ops::{self, CancelOutcome};

use crate::error::Result;
use crate::global::connect_operator;

/// Flags of `jobfleet cancel`.
#[derive(Clone, Debug, Args)]
pub struct CancelArgs {
    /// The job's id.
    pub id: JobId,
}

/// Runs the command.
pub async fn run(args: CancelArgs, config: Config) -> Result<()> {
    let backends = connect_operator(&config, "cancel").await?;
    let outcome = ops::cancel(&*backends.store, &*backends.clock, args.id).await?;
    println!("{}", describe(args.id, outcome));
    Ok(())
}

/// What the outcome means, in a sentence.
pub fn describe(id: JobId, outcome: CancelOutcome) -> String {
    match outcome {
        CancelOutcome::WasWaiting => format!("{id}: cancelled (it was waiting for its run time)"),
        CancelOutcome::Requested => {
            format!("{id}: cancel requested; the worker that holds or receives it will stop it")
        }
        CancelOutcome::AlreadyFinished(state) => format!("{id}: already {state}; nothing to do"),
        CancelOutcome::Unknown => {
            format!("{id}: no record of this job; cancel requested in case it is on its way")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::store::JobState;

    #[test]
    fn each_outcome_reads_as_a_sentence() {
        let id = JobId::new();
        assert!(describe(id, CancelOutcome::WasWaiting)
            .ends_with("cancelled (it was waiting for its run time)"));
        assert!(
            describe(id, CancelOutcome::AlreadyFinished(JobState::Completed))
                .contains("already completed")
        );
        assert!(describe(id, CancelOutcome::Unknown).contains("no record"));
        assert!(describe(id, CancelOutcome::Requested).starts_with(&id.to_string()));
    }
}
