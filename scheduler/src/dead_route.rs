//! The dead route's consumer: messages that will not run are filed as dead letters.
//!
//! Workers send here what they could not or must not run (undecodable, oversized,
//! invalid, unknown kind, permanent error), with the reason in a header. Whatever decodes
//! keeps its id, so its state record says `dead` and its uniqueness key is freed; what
//! does not decode is filed under a fresh id, to be inspected and purged. A body over the
//! message limit (`limits.max_payload_bytes` + the envelope allowance) is filed as its
//! first 64 KiB with a note in the reason, so junk cannot fill the store.

use async_trait::async_trait;
use jobfleet_common::limits::ENVELOPE_ALLOWANCE;
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{codec, dead};

use crate::consumer::{Incoming, RouteHandler};
use crate::context::Context;
use crate::error::SchedulerError;

/// Files dead messages in the dead-letter store.
#[derive(Debug)]
pub(crate) struct DeadIntake;

#[async_trait]
impl RouteHandler for DeadIntake {
    fn op(&self) -> &'static str {
        "dead_intake"
    }

    async fn handle(&self, ctx: &Context, batch: &[Incoming]) -> Result<(), SchedulerError> {
        let now = ctx.now_ms();
        let store = &ctx.store;
        let mut records = Vec::new();
        let mut unique_keys = Vec::new();
        let limits = &ctx.config.limits;
        let max_body = limits.max_payload_bytes.saturating_add(ENVELOPE_ALLOWANCE);
        for delivery in batch {
            // Whoever published it, a body over the message limit is kept as its head.
            let (body, cut) = dead::bounded(delivery.body.clone(), max_body);
            let mut letter = dead::letter_from_message(
                body,
                delivery.content_type.clone(),
                delivery.reason.as_deref(),
                now,
            );
            if let Some(note) = cut {
                letter.reason = format!("{}; {note}", letter.reason);
            }
            if let Ok(job) = codec::decode(&delivery.body, delivery.content_type.as_deref()) {
                let mut record = JobRecord::of(&job, JobState::Dead, now);
                record.last_error = letter.errors.last().cloned();
                record.note = Some(format!("{}: {}", letter.error_kind, letter.reason));
                records.push(record);
                if let Some(key) = job.unique_key {
                    unique_keys.push((key, job.id));
                }
            }
            store.dead_put(letter).await?;
        }
        // Keys first: a `dead` record promises a free uniqueness key.
        for (key, id) in &unique_keys {
            store.unique_release(key, *id).await?;
        }
        if !records.is_empty() {
            store.put_records(&records).await?;
        }
        Ok(())
    }
}
