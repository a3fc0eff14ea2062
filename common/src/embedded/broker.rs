//! The embedded [`Broker`]: in-process routes for `jobfleet dev` and fast tests.
//!
//! It behaves like the real brokers where the roles can tell: ready routes deliver by
//! priority, competing consumers share a route, a consumer holds at most `prefetch`
//! unsettled deliveries, and a delivery dropped unsettled is redelivered. A consumer
//! takes a message off its route only when its stream is polled, so nothing waits in a
//! slow consumer's buffer while another could run it. Nothing survives the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;

use super::lock;
use super::queue::{Credit, EmbeddedAcker, RouteQueue};
use crate::broker::{Broker, BrokerError, Consumer, Delivery, Depth, Message, Route};

/// An in-process broker; clones of its [`Arc`] share the same routes.
#[derive(Debug, Default)]
pub struct EmbeddedBroker {
    routes: Mutex<HashMap<Route, Arc<RouteQueue>>>,
}

impl EmbeddedBroker {
    /// A broker with no routes yet; routes are created on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn route(&self, route: &Route) -> Arc<RouteQueue> {
        let mut routes = lock(&self.routes);
        routes
            .entry(route.clone())
            .or_insert_with(|| Arc::new(RouteQueue::new(route)))
            .clone()
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn declare(&self, queues: &[String]) -> Result<(), BrokerError> {
        let shared = [Route::Delayed, Route::Failed, Route::Dead];
        for route in queues.iter().map(|q| Route::Ready(q.clone())).chain(shared) {
            self.route(&route);
        }
        Ok(())
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        let mut by_route: HashMap<Route, Vec<Message>> = HashMap::new();
        for message in batch {
            by_route
                .entry(message.route.clone())
                .or_default()
                .push(message);
        }
        for (route, messages) in by_route {
            self.route(&route).push(messages);
        }
        Ok(())
    }

    async fn consume(&self, route: &Route, prefetch: u16) -> Result<Consumer, BrokerError> {
        // As in AMQP, a prefetch of 0 means no limit.
        let limit = if prefetch == 0 {
            usize::MAX
        } else {
            usize::from(prefetch)
        };
        let puller = Puller {
            queue: self.route(route),
            credit: Arc::default(),
            limit,
        };
        let stream = futures::stream::unfold(puller, |puller| async move {
            let delivery = puller.next().await;
            Some((Ok(delivery), puller))
        });
        Ok(stream.boxed())
    }

    async fn depth(&self, route: &Route) -> Result<Option<Depth>, BrokerError> {
        let queue = lock(&self.routes).get(route).cloned();
        let empty = Depth {
            ready: 0,
            unacked: Some(0),
        };
        Ok(Some(queue.map_or(empty, |q| q.depth())))
    }

    /// Forgets the routes: the next use of one starts it empty. A consumer of a deleted
    /// route keeps the queue it had, as on a server where it would be cancelled.
    async fn delete_routes(&self, queues: &[String]) -> Result<(), BrokerError> {
        let shared = [Route::Delayed, Route::Failed, Route::Dead];
        let mut routes = lock(&self.routes);
        for route in queues.iter().map(|q| Route::Ready(q.clone())).chain(shared) {
            routes.remove(&route);
        }
        Ok(())
    }

    /// Nothing to close: the routes live in this process and go with the last clone.
    async fn close(&self) {}
}

/// One consumer's side of a route: takes messages while it has credit.
struct Puller {
    queue: Arc<RouteQueue>,
    credit: Arc<Credit>,
    limit: usize,
}

impl Puller {
    /// Waits for credit and a message, then takes the message.
    async fn next(&self) -> Delivery {
        loop {
            // Register for both wake-ups before looking, so a publish or a settle that
            // lands between the look and the wait still wakes us.
            let ready = self.queue.ready().notified();
            let settled = self.credit.settled().notified();
            tokio::pin!(ready, settled);
            ready.as_mut().enable();
            settled.as_mut().enable();

            if self.credit.in_flight() < self.limit {
                if let Some(message) = self.queue.take() {
                    self.credit.taken();
                    let (body, content_type, reason, redelivered) = (
                        message.body.clone(),
                        message.content_type.clone(),
                        message.reason.clone(),
                        message.redelivered,
                    );
                    let acker =
                        EmbeddedAcker::new(self.queue.clone(), self.credit.clone(), message);
                    return Delivery::new(body, content_type, reason, redelivered, Box::new(acker));
                }
                tokio::select! {
                    _ = ready => {}
                    _ = settled => {}
                }
            } else {
                settled.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::job::Priority;

    type TestResult = Result<(), BrokerError>;

    const EMPTY: Option<Depth> = Some(Depth {
        ready: 0,
        unacked: Some(0),
    });

    fn msg(queue: &str, level: u8, body: &str) -> Message {
        let route = Route::Ready(queue.into());
        let priority = Priority::new(level).expect("a valid level");
        Message::new(
            route,
            priority,
            Bytes::copy_from_slice(body.as_bytes()),
            "text/plain",
        )
    }

    /// The next delivery, or `None` if none arrives within a (paused-time) second.
    async fn next(c: &mut Consumer) -> Option<Delivery> {
        let item = tokio::time::timeout(Duration::from_secs(1), c.next())
            .await
            .ok()
            .flatten();
        item.map(|d| d.expect("embedded consumers never fail"))
    }

    async fn must_next(c: &mut Consumer) -> Delivery {
        next(c).await.expect("a delivery")
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_by_priority_then_fifo_with_headers() -> TestResult {
        let broker = EmbeddedBroker::new();
        broker.declare(&["q".into()]).await?;
        let mut dead = msg("q", 0, "d");
        dead.reason = Some("why".into());
        let batch = vec![msg("q", 3, "a"), msg("q", 9, "b"), msg("q", 3, "c"), dead];
        broker.publish(batch).await?;
        let mut c = broker.consume(&Route::Ready("q".into()), 10).await?;
        let mut got = Vec::new();
        while let Some(d) = next(&mut c).await {
            got.push((d.body.clone(), d.reason.clone(), d.content_type.clone()));
            d.ack().await?;
        }
        let bodies: Vec<_> = got.iter().map(|g| g.0.clone()).collect();
        assert_eq!(bodies, ["b", "a", "c", "d"]);
        assert_eq!(got[3].1.as_deref(), Some("why"));
        assert_eq!(got[0].2.as_deref(), Some("text/plain"));
        assert_eq!(broker.depth(&Route::Ready("q".into())).await?, EMPTY);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn prefetch_limits_unsettled_deliveries_and_depth_counts_them() -> TestResult {
        let broker = EmbeddedBroker::new();
        let route = Route::Ready("q".into());
        broker
            .publish((0..5).map(|i| msg("q", 3, &i.to_string())).collect())
            .await?;
        let mut c = broker.consume(&route, 2).await?;
        let first = must_next(&mut c).await;
        let _second = must_next(&mut c).await;
        assert!(
            next(&mut c).await.is_none(),
            "a third delivery exceeds prefetch 2"
        );
        let full = Some(Depth {
            ready: 3,
            unacked: Some(2),
        });
        assert_eq!(broker.depth(&route).await?, full);

        // Published while the consumer is full, a higher priority must still come next:
        // nothing was taken ahead of it.
        broker.publish(vec![msg("q", 9, "urgent")]).await?;
        first.ack().await?;
        let urgent = must_next(&mut c).await;
        assert_eq!(urgent.body, "urgent");
        assert_eq!(broker.depth(&route).await?, full);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn competing_consumers_each_get_different_messages() -> TestResult {
        let broker = Arc::new(EmbeddedBroker::new());
        let route = Route::Ready("q".into());
        let mut a = broker.consume(&route, 1).await?;
        let mut b = broker.consume(&route, 1).await?;
        let waiter = tokio::spawn(async move { must_next(&mut b).await.body.clone() });
        tokio::task::yield_now().await;
        broker
            .publish(vec![msg("q", 3, "x"), msg("q", 3, "y")])
            .await?;
        let got_a = must_next(&mut a).await;
        let got_b = waiter.await.expect("waiter finished");
        assert_ne!(got_a.body, got_b);
        assert!(next(&mut a).await.is_none(), "nothing left for a");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_message_is_delivered_once_across_threads() -> TestResult {
        let broker = Arc::new(EmbeddedBroker::new());
        let route = Route::Ready("q".into());
        let mut consumers = Vec::new();
        for _ in 0..4 {
            let mut c = broker.consume(&route, 3).await?;
            consumers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let wait = Duration::from_millis(300);
                while let Ok(Some(d)) = tokio::time::timeout(wait, c.next()).await {
                    let d = d.expect("embedded consumers never fail");
                    got.push(d.body.clone());
                    d.ack().await.expect("in-process ack");
                }
                got
            }));
        }
        for chunk in (0..1_000).collect::<Vec<_>>().chunks(100) {
            broker
                .publish(chunk.iter().map(|i| msg("q", 3, &i.to_string())).collect())
                .await?;
        }
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.await.expect("consumer finished"));
        }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!((total, all.len()), (1_000, 1_000));
        assert_eq!(broker.depth(&route).await?, EMPTY);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_and_dropped_acker_redeliver() -> TestResult {
        let broker = EmbeddedBroker::new();
        let route = Route::Delayed;
        broker
            .publish(vec![Message::new(
                route.clone(),
                Priority::LOW,
                "m".into(),
                "t",
            )])
            .await?;
        let mut c = broker.consume(&route, 1).await?;
        let d = must_next(&mut c).await;
        assert!(!d.redelivered);
        d.requeue().await?;
        let d = must_next(&mut c).await;
        assert!(d.redelivered);
        drop(d);
        let d = must_next(&mut c).await;
        assert!(d.redelivered);
        d.ack().await?;
        assert!(next(&mut c).await.is_none());
        assert_eq!(broker.depth(&route).await?, EMPTY);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_stream_keeps_held_deliveries_settleable() -> TestResult {
        let broker = EmbeddedBroker::new();
        let route = Route::Ready("q".into());
        broker
            .publish(vec![msg("q", 3, "a"), msg("q", 3, "b")])
            .await?;
        let mut c = broker.consume(&route, 1).await?;
        let held = must_next(&mut c).await;
        drop(c);
        assert_eq!(
            broker.depth(&route).await?,
            Some(Depth {
                ready: 1,
                unacked: Some(1)
            })
        );
        held.ack().await?;
        let mut c = broker.consume(&route, 1).await?;
        assert_eq!(must_next(&mut c).await.body, "b");
        assert_eq!(
            broker.depth(&Route::Ready("never-used".into())).await?,
            EMPTY
        );
        Ok(())
    }
}
