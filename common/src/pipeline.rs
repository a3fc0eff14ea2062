//! Pipelines: jobs run one step after another, each step receiving the previous step's
//! result, and a step may fan out into parallel children whose results the next step
//! receives together (a chord).
//!
//! A pipeline's steps are declared up front ([`PipelineSpec`], from a TOML or JSON
//! file). Every job of a pipeline has a deterministic id ([`step_job_id`]) and the
//! uniqueness key `pipeline:{id}:{step}:{child}` ([`member_of`] reads it back), so the
//! follow-up of a step is the same job however many times it is enqueued: a worker that
//! completes the last child of a step enqueues the next step, and two workers that do so
//! at the same instant (or a redelivered child) enqueue one job id, which runs once.
//!
//! A step's job payload is the step's `payload` (a JSON object, `{}` if absent) with
//! `previous` set to the previous step's result (an array of its children's results if
//! it fanned out), and, for a child of a fan-out step, `item` set to its element of
//! `fan_out`.

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::job::{Job, JobId, Priority};
use crate::limits::{humantime_serde_compat as hs, Limits};

/// Most steps in a pipeline.
pub const MAX_STEPS: usize = 100;
/// Most children of one fan-out step.
pub const MAX_FAN_OUT: usize = 10_000;

/// A pipeline as declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// A name for people; need not be unique.
    #[serde(default)]
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The step's name, shown by `jobfleet pipeline status`.
    pub name: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The handler.
    pub kind: String,
    /// A JSON object: the job's payload, to which `previous` (and `item`) are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// 0–9.
    #[serde(default)]
    pub priority: Priority,
    /// Attempts per job.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one attempt may run.
    #[serde(default = "default_timeout", with = "hs")]
    pub timeout: Duration,
    /// Fan out: one child job per element, run in parallel; the next step gets their
    /// results as an array, in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<Vec<Value>>,
}

fn default_max_attempts() -> u32 {
    3
}
fn default_timeout() -> Duration {
    Duration::from_secs(300)
}

/// A pipeline that breaks a rule: where (e.g. `steps[1].payload`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidPipeline {
    /// Where.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidPipeline {
    InvalidPipeline {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Which pipeline, step and child a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The pipeline's id.
    pub pipeline: JobId,
    /// The step, from 0.
    pub step: usize,
    /// The child, from 0 (0 for a step that does not fan out).
    pub child: usize,
}

impl PipelineSpec {
    /// Reads a pipeline from TOML or JSON text (JSON if it starts with `{`).
    pub fn parse(text: &str) -> Result<Self, InvalidPipeline> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| invalid("<file>", e.to_string()))
        } else {
            toml::from_str(text).map_err(|e| invalid("<file>", e.to_string()))
        }
    }

    /// Checks the pipeline: at least one step, payloads that are objects, fan-outs that
    /// are not empty, and jobs the producer would accept under `limits`.
    pub fn check(&self, limits: &Limits) -> Result<(), InvalidPipeline> {
        if self.steps.is_empty() {
            return Err(invalid("steps", "name at least one step"));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(invalid("steps", format!("at most {MAX_STEPS}")));
        }
        let probe = JobId::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{i}].{field}");
            if step.name.trim().is_empty() {
                return Err(invalid(at("name"), "must not be empty"));
            }
            if step.payload.as_ref().is_some_and(|p| !p.is_object()) {
                return Err(invalid(at("payload"), "must be a JSON object (a table)"));
            }
            match &step.fan_out {
                Some(items) if items.is_empty() => {
                    return Err(invalid(at("fan_out"), "must not be empty"))
                }
                Some(items) if items.len() > MAX_FAN_OUT => {
                    return Err(invalid(at("fan_out"), format!("at most {MAX_FAN_OUT}")))
                }
                _ => {}
            }
            for job in self.jobs(probe, i, None, 0) {
                limits
                    .validate(&job, 0)
                    .map_err(|e| invalid(at(e.field), e.reason))?;
            }
        }
        Ok(())
    }

    /// How many jobs step `step` has.
    pub fn width(&self, step: usize) -> usize {
        self.steps
            .get(step)
            .map_or(0, |s| s.fan_out.as_ref().map_or(1, Vec::len))
    }

    /// The jobs of step `step` of pipeline `id`, given the previous step's result.
    pub fn jobs(&self, id: JobId, step: usize, previous: Option<Value>, now_ms: i64) -> Vec<Job> {
        let Some(spec) = self.steps.get(step) else {
            return Vec::new();
        };
        let mut base = match &spec.payload {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        if let Some(previous) = previous {
            base.insert("previous".into(), previous);
        }
        let items: Vec<Option<&Value>> = match &spec.fan_out {
            Some(items) => items.iter().map(Some).collect(),
            None => vec![None],
        };
        items
            .into_iter()
            .enumerate()
            .map(|(child, item)| {
                let mut payload = base.clone();
                if let Some(item) = item {
                    payload.insert("item".into(), item.clone());
                }
                let text = Value::Object(payload).to_string();
                let mut job = Job::new(&spec.queue, &spec.kind, Bytes::from(text))
                    .with_priority(spec.priority)
                    .with_max_attempts(spec.max_attempts)
                    .with_timeout_ms(u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX))
                    .with_unique_key(unique_key(id, step, child));
                job.id = step_job_id(id, step, child);
                job.enqueued_at_ms = now_ms;
                job
            })
            .collect()
    }

    /// What the step after `step` receives as `previous`: the one result, or the
    /// children's results in order if `step` fanned out.
    pub fn previous(&self, step: usize, results: Vec<Value>) -> Value {
        match self.steps.get(step).and_then(|s| s.fan_out.as_ref()) {
            Some(_) => Value::Array(results),
            None => results.into_iter().next().unwrap_or(Value::Null),
        }
    }
}

fn unique_key(id: JobId, step: usize, child: usize) -> String {
    format!("pipeline:{id}:{step}:{child}")
}

/// The id of child `child` of step `step` of pipeline `id`: a UUID v7 with the
/// pipeline's time, other bits hashed from the three.
pub fn step_job_id(id: JobId, step: usize, child: usize) -> JobId {
    let digest = Sha256::new()
        .chain_update(b"jobfleet pipeline\0")
        .chain_update(id.0.as_bytes())
        .chain_update((step as u64).to_be_bytes())
        .chain_update((child as u64).to_be_bytes())
        .finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    let millis = id.0.get_timestamp().map_or(0, |t| {
        let (s, n) = t.to_unix();
        s * 1000 + u64::from(n / 1_000_000)
    });
    JobId(uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid())
}

/// Which pipeline, step and child `job` is, from its uniqueness key; `None` for a job of
/// no pipeline.
pub fn member_of(job: &Job) -> Option<Member> {
    let rest = job.unique_key.as_deref()?.strip_prefix("pipeline:")?;
    let mut parts = rest.split(':');
    let pipeline = JobId::from_str(parts.next()?).ok()?;
    let step = parts.next()?.parse().ok()?;
    let child = parts.next()?.parse().ok()?;
    let member = Member {
        pipeline,
        step,
        child,
    };
    (parts.next().is_none() && job.id == step_job_id(pipeline, step, child)).then_some(member)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name = "basketball"

[[steps]]
name = "numbers"
queue = "data"
kind = "numbers"
payload = { n = 3 }

[[steps]]
name = "square"
queue = "data"
kind = "square"
fan_out = [1, 2, 3]

[[steps]]
name = "sum"
queue = "data"
kind = "sum"
"#;

    #[test]
    fn a_file_reads_and_builds_each_steps_jobs() {
        let spec = PipelineSpec::parse(FILE).expect("parses");
        spec.check(&Limits::default()).expect("valid");
        assert_eq!((spec.width(0), spec.width(1), spec.width(2)), (1, 3, 1));
        let id = JobId::new();
        let first = spec.jobs(id, 0, None, 5);
        assert_eq!(first.len(), 1);
        assert_eq!(&first[0].payload[..], br#"{"n":3}"#);
        let children = spec.jobs(id, 1, Some(serde_json::json!([1, 2, 3])), 5);
        assert_eq!(
            &children[2].payload[..],
            br#"{"item":3,"previous":[1,2,3]}"#
        );
        for (child, job) in children.iter().enumerate() {
            assert_eq!(
                member_of(job),
                Some(Member {
                    pipeline: id,
                    step: 1,
                    child
                })
            );
        }
        // The same step always gives the same ids.
        assert_eq!(spec.jobs(id, 1, None, 9)[1].id, children[1].id);
        assert_ne!(children[0].id, children[1].id);
        let results = vec![serde_json::json!(1), serde_json::json!(4)];
        assert_eq!(spec.previous(1, results.clone()), serde_json::json!([1, 4]));
        assert_eq!(spec.previous(0, results), serde_json::json!(1));
        assert_eq!(member_of(&Job::new("q", "k", "")), None);
        let json = serde_json::to_string(&spec).expect("writes");
        assert_eq!(PipelineSpec::parse(&json).expect("reads JSON"), spec);
    }

    #[test]
    fn bad_pipelines_name_the_field() {
        let limits = Limits::default();
        let e = PipelineSpec::parse("steps = []")
            .expect("parses")
            .check(&limits);
        assert_eq!(e.expect_err("empty").field, "steps");
        let mut spec = PipelineSpec::parse(FILE).expect("parses");
        spec.steps[1].fan_out = Some(Vec::new());
        assert_eq!(spec.check(&limits).expect_err("").field, "steps[1].fan_out");
        spec.steps[1].fan_out = None;
        spec.steps[2].payload = Some(serde_json::json!([1]));
        assert_eq!(spec.check(&limits).expect_err("").field, "steps[2].payload");
        spec.steps[2].payload = None;
        spec.steps[0].max_attempts = 0;
        let e = spec.check(&limits).expect_err("no attempts");
        assert!(e.field.starts_with("steps[0]."), "{e}");
        let e =
            PipelineSpec::parse("[[steps]]\nname = \"a\"\nkind = \"k\"\n").expect_err("no queue");
        assert!(e.reason.contains("queue"), "{e}");
    }
}
