//! [`Producer`]: validate, stamp, deduplicate, record and publish jobs, a batch at a time.
//!
//! The order of the steps is what makes an enqueue safe to race with a fast worker and
//! safe to retry: the whole batch is validated before anything happens; uniqueness keys
//! are claimed next; state records are written before the publish, so a worker's
//! `running` record is never overwritten by a late `pending`; the publish is one
//! confirmed, pipelined broker call for the whole batch.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use jobfleet_common::codec::{self, Format};
use jobfleet_common::limits::Limits;
use jobfleet_common::store::{JobRecord, JobState, JobStates};
use jobfleet_common::SharedClock;
use jobfleet_common::{telemetry, Backends, Broker, Config, Job, JobId, Message, Route};
use jobfleet_connect::ConnectError;

use crate::error::ProduceError;
use crate::uniqueness;

/// What happened to one enqueued job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id; for a duplicate, the id of the job that holds its uniqueness key.
    pub id: JobId,
    /// True when another job holds the uniqueness key: nothing was published for this one.
    pub duplicate: bool,
    /// True when the job went to the delayed route because it is due later.
    pub delayed: bool,
}

/// Publishes jobs. Cheap to share behind an `Arc`; every method takes `&self`.
///
/// Of the store it needs only [`JobStates`] (state records and uniqueness keys): a test
/// double implements that one capability, not the whole store.
pub struct Producer {
    broker: Arc<dyn Broker>,
    store: Arc<dyn JobStates>,
    clock: SharedClock,
    limits: Limits,
    format: Format,
    /// Routes this producer has declared; declaring is idempotent but a round trip.
    declared: Mutex<HashSet<Route>>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("broker", &self.broker.name())
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects to the broker and store `config` names (the file `JOBFLEET_CONFIG` names
    /// and the `JOBFLEET_*` variables, for a service: [`Config::from_env`]) and returns a
    /// producer with its limits: how a service of yours enqueues jobs. The embedded
    /// backend is refused: another process would not see the jobs.
    pub async fn connect(config: &Config) -> Result<Self, ConnectError> {
        let backends = jobfleet_connect::connect_shared(config, "producer").await?;
        Ok(Self::new(&backends, config))
    }

    /// A producer on `backends` with `config`'s limits, writing the binary form.
    pub fn new(backends: &Backends, config: &Config) -> Self {
        Self::from_parts(
            backends.broker.clone(),
            backends.store.clone(),
            backends.clock.clone(),
            config.limits.clone(),
        )
    }

    /// A producer on a broker and the one store capability it uses; e.g. a test double
    /// of [`JobStates`] beside the embedded broker.
    pub fn from_parts(
        broker: Arc<dyn Broker>,
        states: Arc<dyn JobStates>,
        clock: SharedClock,
        limits: Limits,
    ) -> Self {
        Self {
            broker,
            store: states,
            clock,
            limits,
            format: Format::Binary,
            declared: Mutex::new(HashSet::new()),
        }
    }

    /// Closes the broker connection, flushing what its client still buffers. A producer
    /// made with [`Producer::new`] shares its backends' broker: closing it closes that
    /// broker for every holder.
    pub async fn close(&self) {
        self.broker.close().await;
    }

    /// Writes envelopes in `format` instead (JSON is easier to read on the broker).
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Now, by the backends' clock: what `run_at_ms` and `enqueued_at_ms` are measured on.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Enqueues one job; see [`Producer::enqueue_many`].
    pub async fn enqueue(&self, job: Job) -> Result<Enqueued, ProduceError> {
        let mut done = self.enqueue_many(vec![job]).await?;
        // enqueue_many answers once per job it is given.
        Ok(done.remove(0))
    }

    /// Enqueues a batch: one answer per job, in order.
    ///
    /// Every job is validated first and one invalid job refuses the whole batch. A job
    /// whose uniqueness key another job holds is answered with that job's id and
    /// `duplicate: true`, and not published. The rest get `enqueued_at_ms` (if 0), a
    /// `pending` or `scheduled` state record (one store call) and are published in one
    /// broker call, to their ready route or, when due later, to the delayed route.
    ///
    /// On a failed publish the uniqueness keys claimed here are released, the records
    /// written for the batch that still say `pending` (or `scheduled`) are removed (a
    /// worker's `running` or a final state stays), and the error is returned. Some of
    /// the batch may have been published anyway: they run, and record as they go. The
    /// caller enqueues the same jobs again (same ids: none runs twice) or gives up.
    pub async fn enqueue_many(&self, mut jobs: Vec<Job>) -> Result<Vec<Enqueued>, ProduceError> {
        let now = self.now_ms();
        for (index, job) in jobs.iter().enumerate() {
            self.limits
                .validate(job, now)
                .map_err(|source| ProduceError::Invalid { index, source })?;
        }
        for job in jobs.iter_mut().filter(|job| job.enqueued_at_ms == 0) {
            job.enqueued_at_ms = now;
        }

        let claims = uniqueness::claim(self.store.as_ref(), &jobs, self.unique_ttl_ms())
            .await
            .map_err(|e| backend_failed("unique_claim", e.into()))?;
        let fresh: Vec<&Job> = jobs
            .iter()
            .zip(&claims.holders)
            .filter(|(_, holder)| holder.is_none())
            .map(|(job, _)| job)
            .collect();
        if let Err(e) = self.record_and_publish(&fresh, now).await {
            uniqueness::release(self.store.as_ref(), &claims.claimed).await;
            self.forget_unpublished(&fresh).await;
            return Err(e);
        }

        Ok(jobs
            .iter()
            .zip(claims.holders)
            .map(|(job, holder)| match holder {
                Some(id) => Enqueued {
                    id,
                    duplicate: true,
                    delayed: false,
                },
                None => Enqueued {
                    id: job.id,
                    duplicate: false,
                    delayed: job.is_delayed(now),
                },
            })
            .collect())
    }

    /// After a failed publish, removes the `pending`/`scheduled` records written for
    /// `jobs` that no role has moved on since: some of the batch may not have been sent,
    /// and a record must not say forever that a job waits. Best effort: the caller gets
    /// the publish error either way.
    async fn forget_unpublished(&self, jobs: &[&Job]) {
        let ids: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
        if let Err(e) = self.store.forget_unpublished(&ids).await {
            tracing::warn!(error = %e, jobs = ids.len(), "could not remove the records of an unconfirmed batch");
        }
    }

    /// Declares, records and publishes the jobs that are not duplicates.
    async fn record_and_publish(&self, jobs: &[&Job], now: i64) -> Result<(), ProduceError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let routes: Vec<Route> = jobs.iter().map(|job| route_of(job, now)).collect();
        self.declare(&routes).await?;

        let records: Vec<JobRecord> = jobs
            .iter()
            .map(|job| {
                let state = if job.is_delayed(now) {
                    JobState::Scheduled
                } else {
                    JobState::Pending
                };
                JobRecord::of(job, state, now)
            })
            .collect();
        self.store
            .put_records(&records)
            .await
            .map_err(|e| backend_failed("put_records", e.into()))?;

        let messages = jobs
            .iter()
            .zip(routes)
            .map(|(job, route)| Message {
                key: job.ordering_key.clone(),
                ..Message::new(
                    route,
                    job.priority,
                    codec::encode(job, self.format),
                    self.format.content_type(),
                )
            })
            .collect();
        self.broker
            .publish(messages)
            .await
            .map_err(|e| backend_failed("publish", e.into()))?;

        count_enqueued(jobs);
        Ok(())
    }

    /// Declares the routes among `routes` this producer has not declared yet, in one call.
    async fn declare(&self, routes: &[Route]) -> Result<(), ProduceError> {
        let missing: HashSet<Route> = {
            let declared = self.declared.lock().unwrap_or_else(PoisonError::into_inner);
            routes
                .iter()
                .filter(|r| !declared.contains(r))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let queues: Vec<String> = missing
            .iter()
            .filter_map(|route| match route {
                Route::Ready(queue) => Some(queue.clone()),
                _ => None,
            })
            .collect();
        // Every declare also declares the shared delayed, failed and dead routes.
        self.broker
            .declare(&queues)
            .await
            .map_err(|e| backend_failed("declare", e.into()))?;
        // Operators' views list the queue from now on, workers or not.
        self.store
            .queues_add(&queues)
            .await
            .map_err(|e| backend_failed("queues_add", e.into()))?;
        let mut declared = self.declared.lock().unwrap_or_else(PoisonError::into_inner);
        declared.extend(missing);
        declared.insert(Route::Delayed);
        Ok(())
    }

    fn unique_ttl_ms(&self) -> u64 {
        self.limits.unique_key_ttl_ms()
    }
}

/// Where a job goes at `now`: its ready route, or the delayed route when due later.
fn route_of(job: &Job, now: i64) -> Route {
    if job.is_delayed(now) {
        Route::Delayed
    } else {
        Route::Ready(job.queue.clone())
    }
}

/// Logs and counts a failed backend call, and hands the error on.
fn backend_failed(op: &'static str, error: ProduceError) -> ProduceError {
    telemetry::backend_error("producer", op, &error);
    error
}

/// Counts published jobs per queue: one metric update per queue, not per job.
fn count_enqueued(jobs: &[&Job]) {
    let mut per_queue: BTreeMap<&str, u64> = BTreeMap::new();
    for job in jobs {
        *per_queue.entry(job.queue.as_str()).or_default() += 1;
    }
    for (queue, n) in per_queue {
        metrics::counter!(telemetry::JOBS_ENQUEUED, "queue" => queue.to_string()).increment(n);
    }
    tracing::debug!(jobs = jobs.len(), "enqueued");
}
