//! The ledger's rules: bands, the anti-starvation policy, per-key hold-back, prefetch,
//! catching up after an assignment, revocation.

use super::*;

/// Entries buffered per partition before a pause, in these tests.
const BUFFER: usize = 256;

fn part(topic: &str, partition: i32) -> Partition {
    Partition {
        topic: topic.into(),
        partition,
    }
}

fn entry(p: &Partition, offset: i64, key: Option<&str>) -> Entry<String> {
    Entry {
        partition: p.clone(),
        offset,
        key: key.map(|k| k.as_bytes().to_vec()),
        item: format!("{}:{}@{offset}", p.topic, p.partition),
    }
}

/// A ledger with `bands` bands, one partition per band (topic `b{band}`), caught up.
fn ledger(bands: u8) -> (Ledger<String>, Vec<Partition>) {
    let mut l = Ledger::new(bands, BUFFER);
    let parts: Vec<Partition> = (0..bands).map(|b| part(&format!("b{b}"), 0)).collect();
    l.assign(parts.clone());
    for p in &parts {
        l.caught_up_to(p, None);
    }
    (l, parts)
}

/// Picks and settles (finished) until nothing is left; returns the bands served.
fn drain_bands(l: &mut Ledger<String>) -> Vec<u8> {
    let mut served = Vec::new();
    while let Some(picked) = l.pick(1) {
        let band = picked.entry.partition.topic[1..].parse().expect("b<n>");
        served.push(band);
        l.settle(&picked.ticket, true);
    }
    served
}

#[test]
fn highest_band_first_then_fetch_order() {
    let (mut l, parts) = ledger(3);
    l.push(0, entry(&parts[0], 0, None));
    l.push(2, entry(&parts[2], 0, None));
    l.push(1, entry(&parts[1], 0, None));
    l.push(2, entry(&parts[2], 1, None));
    assert_eq!(drain_bands(&mut l), [2, 2, 1, 0]);
}

#[test]
fn a_waiting_low_band_is_served_after_the_starvation_limit() {
    let (mut l, parts) = ledger(2);
    for o in 0..20 {
        l.push(1, entry(&parts[1], o, None));
    }
    l.push(0, entry(&parts[0], 0, None));
    let served = drain_bands(&mut l);
    let low_at = served.iter().position(|&b| b == 0).expect("served");
    assert_eq!(low_at, STARVATION_LIMIT as usize, "{served:?}");
}

#[test]
fn every_low_band_gets_its_turn_under_a_busy_top_band() {
    let (mut l, parts) = ledger(3);
    for o in 0..40 {
        l.push(2, entry(&parts[2], o, None));
    }
    for o in 0..3 {
        l.push(1, entry(&parts[1], o, None));
        l.push(0, entry(&parts[0], o, None));
    }
    let served = drain_bands(&mut l);
    let first_low = served.iter().position(|&b| b == 0).expect("band 0 served");
    assert!(
        first_low <= 2 * (STARVATION_LIMIT as usize + 1),
        "band 0 waited {first_low} deliveries: {served:?}"
    );
    assert_eq!(served.len(), 46);
}

#[test]
fn the_conformance_mix_is_served_in_band_order() {
    // The priority check's twelve levels, three bands: no band waits long enough for
    // the starvation rule to reorder them.
    let (mut l, parts) = ledger(3);
    let levels = [3u8, 9, 0, 6, 1, 8, 2, 7, 5, 4, 9, 0];
    for (o, level) in levels.iter().enumerate() {
        let band = *level * 3 / 10;
        l.push(band, entry(&parts[usize::from(band)], o as i64, None));
    }
    assert_eq!(drain_bands(&mut l), [2, 2, 2, 2, 1, 1, 1, 0, 0, 0, 0, 0]);
}

#[test]
fn a_key_waits_for_its_running_delivery_and_others_overtake() {
    let mut l = Ledger::new(1, BUFFER);
    let p = part("t", 0);
    l.assign([p.clone()]);
    l.caught_up_to(&p, None);
    l.push(0, entry(&p, 0, Some("a")));
    l.push(0, entry(&p, 1, Some("a")));
    l.push(0, entry(&p, 2, Some("b")));
    l.push(0, entry(&p, 3, None));
    let first = l.pick(10).expect("a@0");
    assert_eq!(first.entry.offset, 0);
    let second = l.pick(10).expect("b@2 overtakes the held a@1");
    assert_eq!(second.entry.offset, 2);
    assert_eq!(l.pick(10).expect("unkeyed").entry.offset, 3);
    assert!(l.pick(10).is_none(), "a@1 is held while a@0 runs");
    assert_eq!(
        l.settle(&second.ticket, true),
        None,
        "offset 0 is unfinished"
    );
    assert_eq!(l.settle(&first.ticket, true), Some(1));
    let third = l.pick(10).expect("a@1 after a@0 settled");
    assert_eq!(third.entry.offset, 1);
}

#[test]
fn the_same_key_on_another_partition_is_independent() {
    let mut l = Ledger::new(1, BUFFER);
    let (p0, p1) = (part("t", 0), part("t", 1));
    l.assign([p0.clone(), p1.clone()]);
    l.caught_up_to(&p0, None);
    l.caught_up_to(&p1, None);
    l.push(0, entry(&p0, 0, Some("k")));
    l.push(0, entry(&p1, 0, Some("k")));
    assert!(l.pick(10).is_some());
    assert!(l.pick(10).is_some());
}

#[test]
fn prefetch_limits_unsettled_deliveries() {
    let (mut l, parts) = ledger(1);
    for o in 0..3 {
        l.push(0, entry(&parts[0], o, None));
    }
    let a = l.pick(2).expect("first");
    let _b = l.pick(2).expect("second");
    assert!(l.pick(2).is_none());
    assert_eq!(l.unsettled(), 2);
    l.settle(&a.ticket, true);
    assert!(l.pick(2).is_some());
}

#[test]
fn picks_wait_until_every_backlog_is_fetched() {
    let mut l = Ledger::new(2, BUFFER);
    let (low, high) = (part("b0", 0), part("b1", 0));
    l.assign([low.clone(), high.clone()]);
    l.push(0, entry(&low, 0, None));
    assert!(l.pick(1).is_none(), "backlog ends unknown");
    l.caught_up_to(&low, Some(0));
    l.caught_up_to(&high, Some(4));
    assert!(
        l.pick(1).is_none(),
        "the high band's backlog is not fetched yet"
    );
    for o in 0..5 {
        l.push(1, entry(&high, o, None));
    }
    assert_eq!(l.pick(1).expect("caught up").entry.partition, high);

    let mut slow = Ledger::<String>::new(1, BUFFER);
    slow.assign([low.clone()]);
    assert!(slow.is_catching_up());
    slow.stop_catching_up();
    assert!(!slow.is_catching_up(), "a deadline ends the wait");
}

#[test]
fn a_full_buffer_pauses_and_draining_resumes() {
    let (mut l, parts) = ledger(1);
    let mut paused = 0;
    for o in 0..BUFFER as i64 {
        paused += usize::from(l.push(0, entry(&parts[0], o, None)));
    }
    assert_eq!(paused, 1, "paused once, at the high mark");
    let mut resumed = Vec::new();
    while let Some(picked) = l.pick(usize::MAX) {
        resumed.extend(picked.resume);
    }
    assert_eq!(resumed, [parts[0].clone()], "resumed once, at the low mark");
}

#[test]
fn revocation_drops_buffered_entries_and_orphans_running_ones() {
    let (mut l, parts) = ledger(1);
    l.push(0, entry(&parts[0], 0, Some("k")));
    l.push(0, entry(&parts[0], 1, None));
    let running = l.pick(10).expect("offset 0");
    l.revoke(&parts);
    assert_eq!(l.buffered(), 0);
    assert!(l.assigned().is_empty());
    // Assigned again (a new epoch): the old delivery's settle touches nothing.
    l.assign(parts.clone());
    l.caught_up_to(&parts[0], None);
    l.push(0, entry(&parts[0], 0, Some("k")));
    assert_eq!(l.settle(&running.ticket, true), None);
    assert_eq!(l.unsettled(), 0);
    let again = l.pick(10).expect("fetched again");
    assert_eq!(l.settle(&again.ticket, true), Some(1));
}

#[test]
fn an_unfinished_settle_releases_the_key_but_pins_the_offset() {
    let (mut l, parts) = ledger(1);
    l.push(0, entry(&parts[0], 0, Some("k")));
    l.push(0, entry(&parts[0], 1, Some("k")));
    let first = l.pick(10).expect("k@0");
    assert_eq!(l.settle(&first.ticket, false), None);
    let second = l.pick(10).expect("k@1 no longer held");
    assert_eq!(l.settle(&second.ticket, true), None, "offset 0 still pins");
}
