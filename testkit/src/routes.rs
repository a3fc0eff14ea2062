//! Putting a job on a route and taking one off, as a role would, for checks that play one
//! side of a route themselves.

use std::time::Duration;

use futures::StreamExt;
use jobfleet_common::broker::{Broker, Consumer, Message, Route};
use jobfleet_common::codec::{self, Format};
use jobfleet_common::Job;

/// Publishes `job` in the binary form to `route`, at its priority.
pub async fn publish_job(broker: &dyn Broker, route: Route, job: &Job) {
    let body = codec::encode(job, Format::Binary);
    let message = Message::new(route, job.priority, body, Format::Binary.content_type());
    broker.publish(vec![message]).await.expect("publish");
}

/// The next job on `consumer` within `within`, decoded and acked; `None` if none came.
pub async fn recv_job(consumer: &mut Consumer, within: Duration) -> Option<Job> {
    let delivery = tokio::time::timeout(within, consumer.next()).await.ok()?;
    let delivery = delivery.expect("stream open").expect("a delivery");
    let job = codec::decode(&delivery.body, delivery.content_type.as_deref()).expect("a job");
    delivery.ack().await.expect("ack");
    Some(job)
}
