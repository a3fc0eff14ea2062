//! Metric names, and events that write the log line and the metric together so the two
//! never drift apart.
//!
//! Every metric jobfleet records is named here. Labels: `queue`, `kind`, `outcome`,
//! `reason`, `route`, `schedule`, `change`.

/// Counter: jobs accepted by the broker from a producer. Labels: queue.
pub const JOBS_ENQUEUED: &str = "jobfleet_jobs_enqueued_total";
/// Counter: attempts finished. Labels: queue, kind, outcome (completed, failed, timeout,
/// panic, lock_lost, permanent, cancelled, skipped, requeued, duplicate).
pub const ATTEMPTS: &str = "jobfleet_attempts_total";
/// Histogram (seconds): handler run time. Labels: queue, kind.
pub const RUN_SECONDS: &str = "jobfleet_job_run_seconds";
/// Histogram (seconds): enqueue (or due time) to handler start. Labels: queue.
pub const WAIT_SECONDS: &str = "jobfleet_job_wait_seconds";
/// Gauge: jobs running in this worker.
pub const RUNNING: &str = "jobfleet_worker_running";
/// Counter: messages sent to the dead route. Labels: queue, reason.
pub const DEAD: &str = "jobfleet_jobs_dead_total";
/// Counter: retries scheduled. Labels: queue.
pub const RETRIES: &str = "jobfleet_retries_scheduled_total";
/// Counter: jobs released from the delayed set to their ready route. Labels: queue.
pub const RELEASED: &str = "jobfleet_delayed_released_total";
/// Histogram (seconds): how late a delayed job was released after its due time.
pub const RELEASE_LATENESS: &str = "jobfleet_delayed_release_lateness_seconds";
/// Gauge: queue depth. Labels: queue, state (ready, unacked, delayed, dead).
pub const QUEUE_DEPTH: &str = "jobfleet_queue_depth";
/// Gauge (seconds): how long the oldest job waiting to start on a queue has been ready;
/// 0 when none waits. What autoscalers scale on (deploy/kubernetes). Labels: queue.
pub const QUEUE_OLDEST_WAITING: &str = "jobfleet_queue_oldest_waiting_seconds";
/// Gauge: live workers seen through heartbeats.
pub const LIVE_WORKERS: &str = "jobfleet_live_workers";
/// Counter: errors talking to the broker or store. Labels: role, op.
pub const BACKEND_ERRORS: &str = "jobfleet_backend_errors_total";
/// Counter: times this process found the store had lost its data (a Redis restarted
/// without persistence, or flushed). Any increase needs an operator.
pub const STORE_DATA_LOST: &str = "jobfleet_store_data_lost_total";
/// Gauge: 1 while the store's server keeps an append-only file, 0 while it does not
/// (set as a role starts, by the scheduler's integrity watch and by each `/readyz`;
/// absent for the embedded store). A 0 where the fleet requires persistence needs an
/// operator before anything is lost.
pub const STORE_PERSISTING: &str = "jobfleet_store_persisting";

/// Counter: jobs fired by cron schedules. Labels: schedule.
pub const CRON_FIRES: &str = "jobfleet_cron_fires_total";
/// Counter: schedule instants not fired on time. Labels: schedule, outcome (`skipped`,
/// `coalesced`, `caught_up` = fired late, `dropped` = beyond `max_catch_up`,
/// `overlap_skipped`).
pub const CRON_MISSED: &str = "jobfleet_cron_missed_total";
/// Histogram (seconds): how long after its instant a schedule fired (the store's clock).
/// Labels: schedule.
pub const CRON_FIRE_LATENESS: &str = "jobfleet_cron_fire_lateness_seconds";
/// Counter: this scheduler became (`acquired`) or stopped being (`lost`, `released` at
/// shutdown) the leader that fires schedules. Labels: change.
pub const LEADER_CHANGES: &str = "jobfleet_scheduler_leader_changes_total";
/// Gauge: 1 while this scheduler leads, else 0.
pub const IS_LEADER: &str = "jobfleet_scheduler_is_leader";

/// A schedule fired for `instant_ms` at `now_ms` (the store's clock): logs it, counts it
/// and records its lateness.
pub fn cron_fired(schedule: &str, instant_ms: i64, now_ms: i64, job: &crate::JobId) {
    let late_ms = (now_ms - instant_ms).max(0);
    tracing::info!(
        schedule,
        instant = %crate::cron::rfc3339(instant_ms),
        instant_ms,
        late_ms,
        %job,
        "schedule fired"
    );
    metrics::counter!(CRON_FIRES, "schedule" => schedule.to_string()).increment(1);
    metrics::histogram!(CRON_FIRE_LATENESS, "schedule" => schedule.to_string())
        .record(late_ms as f64 / 1000.0);
}

/// `count` instants of a schedule were not fired on time; `policy` is the rule that
/// decided (`skip`, `latest`, `all`, or `overlap`).
pub fn cron_missed(schedule: &str, outcome: &'static str, count: u64, policy: &str) {
    tracing::warn!(schedule, outcome, count, policy, "schedule instants missed");
    metrics::counter!(CRON_MISSED, "schedule" => schedule.to_string(), "outcome" => outcome)
        .increment(count);
}

/// How this scheduler's leadership changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// It took the leader lock.
    Acquired,
    /// It found another holds the lock, or could not renew it for a whole lease.
    Lost,
    /// It let go of the lock as it stopped.
    Released,
}

/// This scheduler (`holder`) became or stopped being the leader, with fencing `token`.
pub fn leadership(holder: &str, change: Leadership, token: u64) {
    let label = match change {
        Leadership::Acquired => {
            tracing::info!(holder, token, "leading: this scheduler fires the schedules");
            "acquired"
        }
        Leadership::Lost => {
            tracing::warn!(
                holder,
                token,
                "no longer leading: another scheduler fires the schedules"
            );
            "lost"
        }
        Leadership::Released => {
            tracing::info!(
                holder,
                token,
                "stopped leading: stopping, the lock is released"
            );
            "released"
        }
    };
    metrics::counter!(LEADER_CHANGES, "change" => label).increment(1);
    let leading = change == Leadership::Acquired;
    metrics::gauge!(IS_LEADER).set(if leading { 1.0 } else { 0.0 });
}

/// A message went to the dead route: logs a warning and counts it.
pub fn dead_lettered(queue: &str, reason_kind: &str, reason: &str) {
    tracing::warn!(queue, reason_kind, reason, "dead-lettered");
    metrics::counter!(DEAD, "queue" => queue.to_string(), "reason" => reason_kind.to_string())
        .increment(1);
}

/// A backend call failed: logs it and counts it.
pub fn backend_error(role: &'static str, op: &'static str, error: &dyn std::fmt::Display) {
    tracing::warn!(role, op, %error, "backend call failed");
    metrics::counter!(BACKEND_ERRORS, "role" => role, "op" => op).increment(1);
}

/// The store lost its data: logs it at error level and counts it, once per detection.
pub fn store_data_lost(namespace: &str, detected_by: &str, lost: &str) {
    tracing::error!(
        namespace,
        detected_by,
        lost,
        "STORE DATA LOST: the store no longer holds what it held; see `jobfleet queues`, \
         then clear the incident with `jobfleet queues --ack-data-loss`"
    );
    metrics::counter!(STORE_DATA_LOST).increment(1);
}

/// Sets the persistence gauge: whether the store's server persists its writes now
/// (`Durability::persisting`).
pub fn store_persisting(persisting: bool) {
    let persisting = if persisting { 1.0 } else { 0.0 };
    metrics::gauge!(STORE_PERSISTING).set(persisting);
}

/// Sets the oldest-waiting gauge of `queue` (0 when no job waits).
pub fn queue_oldest_waiting(queue: &str, waiting_ms: Option<u64>) {
    let seconds = waiting_ms.unwrap_or(0) as f64 / 1000.0;
    metrics::gauge!(QUEUE_OLDEST_WAITING, "queue" => queue.to_string()).set(seconds);
}

/// Sets the depth gauge of `queue` in `state` (`ready`, `unacked`, `delayed`, `dead`);
/// nothing where the broker cannot tell (`None`).
pub fn queue_depth(queue: &str, state: &'static str, depth: Option<u64>) {
    if let Some(depth) = depth {
        metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_string(), "state" => state)
            .set(depth as f64);
    }
}
