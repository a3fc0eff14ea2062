//! What `jobfleet dev` reports at the end (and what `--until-idle` carries in its error
//! when time runs out): the counts of its tally, for people and as one JSON line. Plain
//! data below both [`crate::error`] (whose `NotIdle` carries it) and the `dev` command
//! (which makes it from its tally: `Tally::summary`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What `jobfleet dev` did, printed at the end; the last line of the output is
/// `summary: ` followed by this as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevSummary {
    /// Jobs enqueued.
    pub total: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Jobs that finished (completed or dead) after more than one attempt.
    pub retried: u64,
    /// Jobs dead.
    pub dead: u64,
    /// Jobs cancelled or skipped.
    pub cancelled: u64,
    /// Jobs not in a terminal state when dev stopped.
    pub unfinished: u64,
    /// From start to the end of the run, in milliseconds.
    pub elapsed_ms: u64,
    /// Finished jobs per second of the run.
    pub jobs_per_sec: f64,
    /// Jobs the cron schedules fired during the run (the sample schedule's among them).
    #[serde(default)]
    pub schedule_fires: u64,
    /// The state of the sample pipeline (`completed`, `running`, `failed`).
    #[serde(default)]
    pub pipeline: String,
    /// The data demo (ingest → train → predict): its state, and the model's test
    /// metrics once it completed.
    #[serde(default)]
    pub data: String,
    /// The dashboard's URL (`off` when dev served none).
    #[serde(default)]
    pub dashboard: String,
}

impl DevSummary {
    /// The summary for people, then the `summary: {json}` line for machines.
    pub fn render(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        let elapsed = Duration::from_millis(self.elapsed_ms).as_secs_f64();
        format!(
            "total      {}\ncompleted  {}\nretried    {}\ndead       {}\ncancelled  {}\n\
             unfinished {}\nelapsed    {elapsed:.2}s\njobs/s     {:.1}\nschedules  {} fires\n\
             pipeline   {}\ndata       {}\ndashboard  {}\nsummary: {json}",
            self.total,
            self.completed,
            self.retried,
            self.dead,
            self.cancelled,
            self.unfinished,
            self.jobs_per_sec,
            self.schedule_fires,
            self.pipeline,
            self.data,
            self.dashboard,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_ends_with_parseable_json() {
        let s = DevSummary {
            total: 10,
            completed: 8,
            retried: 3,
            dead: 2,
            cancelled: 0,
            unfinished: 0,
            elapsed_ms: 4000,
            jobs_per_sec: 2.5,
            schedule_fires: 1,
            pipeline: "completed".into(),
            data: "off".into(),
            dashboard: "off".into(),
        };
        let text = s.render();
        let last = text.lines().last().expect("lines");
        let json = last.strip_prefix("summary: ").expect("summary line");
        assert_eq!(serde_json::from_str::<DevSummary>(json).expect("json"), s);
    }
}
