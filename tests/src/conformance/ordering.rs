//! Order: priority within a queue, and delayed jobs released at (never before) their time.

use jobfleet_common::{Job, Priority};
use jobfleet_worker::{JobContext, Registry};

use super::WITHIN;
use jobfleet_testkit::{wait_for, Ctx, Factory, Probe};

/// Jobs waiting in one queue run highest priority first.
pub async fn priority_order_within_a_queue(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| {
        c.worker.concurrency = 1;
        c.worker.prefetch = Some(1);
    })
    .await;
    let levels = [3u8, 9, 0, 6, 1, 8, 2, 7, 5, 4, 9, 0];
    let jobs = levels
        .iter()
        .map(|&l| {
            let p = Priority::new(l).expect("0-9");
            Job::new(&cx.queue, "record", l.to_string()).with_priority(p)
        })
        .collect();
    cx.producer.enqueue_many(jobs).await.expect("enqueued");

    let ran: Probe<u8> = Probe::default();
    let mut registry = Registry::new();
    let p = ran.clone();
    registry.register_fn("record", move |ctx: JobContext| {
        let p = p.clone();
        async move {
            p.push(ctx.job().priority.level());
            Ok(())
        }
    });
    cx.start_worker(registry);
    assert!(
        wait_for(WITHIN, || async { ran.len() == levels.len() }).await,
        "ran {:?}",
        ran.items()
    );
    // Highest first, compared at the broker's granularity (every level, or Kafka's bands).
    let band = |p: &u8| factory.priority_band(&cx.config, *p);
    let ran_bands: Vec<u8> = ran.items().iter().map(band).collect();
    let mut expected: Vec<u8> = levels.iter().map(band).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    let name = factory.name();
    assert_eq!(
        ran_bands,
        expected,
        "{name}: highest first, ran {:?}",
        ran.items()
    );
    cx.stop().await;
}

/// A delayed job never starts before its `run_at`, and delayed jobs start in due order.
pub async fn delayed_release_is_never_early(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let started: Probe<(String, i64)> = Probe::default();
    let mut registry = Registry::new();
    let p = started.clone();
    registry.register_fn("stamp", move |ctx: JobContext| {
        let p = p.clone();
        async move {
            let name = String::from_utf8_lossy(&ctx.job().payload).to_string();
            p.push((name, jobfleet_common::clock::system_now_ms()));
            Ok(())
        }
    });
    cx.start_scheduler();
    cx.start_worker(registry);
    // One job through the delayed route and the worker first, so the scheduler's and the
    // worker's consumers hold their partitions before the clock starts: a Kafka consumer
    // group's first assignment took 570 ms in a loaded run, and jobs that come due while
    // nobody consumes them start together, in any order.
    let warm_up = Job::new(&cx.queue, "stamp", "\"warm-up\"").with_run_at_ms(cx.now_ms() + 50);
    cx.producer.enqueue(warm_up).await.expect("enqueued");
    assert!(
        wait_for(WITHIN, || async { started.len() == 1 }).await,
        "the warm-up job did not run"
    );

    let now = cx.now_ms();
    let late = Job::new(&cx.queue, "stamp", "\"late\"").with_run_at_ms(now + 900);
    let soon = Job::new(&cx.queue, "stamp", "\"soon\"").with_run_at_ms(now + 400);
    let due_now = Job::new(&cx.queue, "stamp", "\"now\"");
    let (late_at, soon_at) = (late.run_at_ms, soon.run_at_ms);
    for job in [late, soon, due_now] {
        cx.producer.enqueue(job).await.expect("enqueued");
    }
    assert!(
        wait_for(WITHIN, || async { started.len() == 4 }).await,
        "ran {:?}",
        started.items()
    );
    let items = started.items().split_off(1);
    let names: Vec<&str> = items.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["\"now\"", "\"soon\"", "\"late\""],
        "due order; (job, started at) {items:?}, enqueued from {now}: soon due {soon_at:?}, \
         late due {late_at:?}"
    );
    assert!(
        items[1].1 >= soon_at.expect("set"),
        "soon ran early: {items:?}"
    );
    assert!(
        items[2].1 >= late_at.expect("set"),
        "late ran early: {items:?}"
    );
    cx.stop().await;
}
