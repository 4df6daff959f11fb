//! `MpmcRing` across processes: two producer and two consumer processes with
//! every item delivered exactly once, and what a process that dies
//! mid-operation leaves behind (as documented on `MpmcRing`).

mod support;

use std::time::{Duration, Instant};

use shm_sys::sysv::Segment;
use shm_typed::format::PAYLOAD_OFFSET;
use shm_typed::{Location, MpmcRing, PushError};
use support::{Peer, RemoveOnDrop};

fn private_ring(capacity: u64) -> (MpmcRing<u64>, RemoveOnDrop, i32) {
    let ring = MpmcRing::<u64>::create(Location::Private, capacity).expect("create");
    let Location::Id(id) = *ring.location() else {
        panic!("private rings are found by id")
    };
    (ring, RemoveOnDrop(Segment::from_id(id).unwrap()), id)
}

#[test]
fn two_producer_and_two_consumer_processes_deliver_every_item_exactly_once() {
    let count: u64 = 300_000;
    let capacity = 256u64;
    let (ring, _guard, id) = private_ring(capacity);
    let (id, cap) = (id.to_string(), capacity.to_string());
    let mut consumers: Vec<Peer> = (0..2)
        .map(|_| Peer::start(&["mpmc-consume", &id, &cap]))
        .collect();
    let mut producers: Vec<Peer> = (0..2u64)
        .map(|who| {
            Peer::start(&[
                "mpmc-produce",
                &id,
                &cap,
                &who.to_string(),
                &count.to_string(),
            ])
        })
        .collect();
    for peer in consumers.iter_mut().chain(producers.iter_mut()) {
        peer.expect_line("ready");
    }
    for producer in &mut producers {
        producer.go();
    }
    for producer in &mut producers {
        producer.expect_line("done");
        producer.wait_success();
    }
    // One stop marker per consumer.
    for _ in 0..2 {
        ring.push_blocking(u64::MAX, Duration::from_secs(10))
            .unwrap();
    }
    let mut totals = [(0u64, 0u64, 0u64); 2];
    for consumer in &mut consumers {
        let line = consumer.expect_line("stats");
        consumer.wait_success();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[7], "ordered=true", "{line}");
        let numbers: Vec<u64> = fields[1..7].iter().map(|f| f.parse().unwrap()).collect();
        for who in 0..2 {
            totals[who].0 += numbers[who * 3];
            totals[who].1 = totals[who].1.wrapping_add(numbers[who * 3 + 1]);
            totals[who].2 = totals[who].2.wrapping_add(numbers[who * 3 + 2]);
        }
    }
    let expected_sum: u64 = (0..count).sum();
    let expected_squares = (0..count).fold(0u64, |acc, n| acc.wrapping_add(n.wrapping_mul(n)));
    for (who, total) in totals.iter().enumerate() {
        assert_eq!(
            *total,
            (count, expected_sum, expected_squares),
            "producer {who}: count, sum, sum of squares"
        );
    }
    assert!(ring.is_empty());
}

#[test]
fn a_producer_dying_between_claim_and_publish_stalls_consumers_without_hanging() {
    let (ring, guard, _) = private_ring(8);
    let scribbler = guard.attach().unwrap();
    ring.push(1).unwrap();
    ring.push(2).unwrap();
    // What a producer killed right after its CAS leaves: the enqueue position
    // moved on, the slot was never published.
    let mut position = [0u8; 8];
    scribbler.read_at(PAYLOAD_OFFSET, &mut position).unwrap();
    let claimed = u64::from_ne_bytes(position);
    scribbler
        .write_at(PAYLOAD_OFFSET, &(claimed + 1).to_ne_bytes())
        .unwrap();
    for value in 3..6 {
        ring.push(value).unwrap();
    }
    assert_eq!(ring.pop().unwrap(), Some(1));
    assert_eq!(ring.pop().unwrap(), Some(2));
    // The dead producer's slot: consumers see "empty" although 3, 4, 5 wait.
    assert_eq!(ring.pop().unwrap(), None);
    let started = Instant::now();
    assert_eq!(ring.pop_blocking(Duration::from_millis(50)).unwrap(), None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the wait is bounded"
    );
    // Producers fill what is left, then find it full, with the value handed back.
    let mut pushed = 0;
    loop {
        match ring.push(100 + pushed) {
            Ok(()) => pushed += 1,
            Err(PushError::Full(value)) => {
                assert_eq!(value, 100 + pushed);
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(
        pushed, 4,
        "8 slots: 1 stuck, 3 waiting, 4 free (2 never used, 2 consumed)"
    );
}

#[test]
fn a_consumer_dying_between_claim_and_free_loses_one_value_and_fills_a_lap_later() {
    let (ring, guard, _) = private_ring(4);
    let scribbler = guard.attach().unwrap();
    for value in 0..3 {
        ring.push(value).unwrap();
    }
    // A consumer killed right after its CAS: dequeue position moved, slot not freed.
    let mut position = [0u8; 8];
    scribbler
        .read_at(PAYLOAD_OFFSET + 128, &mut position)
        .unwrap();
    let claimed = u64::from_ne_bytes(position);
    scribbler
        .write_at(PAYLOAD_OFFSET + 128, &(claimed + 1).to_ne_bytes())
        .unwrap();
    // Value 0 is lost with the dead consumer; the others still arrive.
    assert_eq!(ring.pop().unwrap(), Some(1));
    assert_eq!(ring.pop().unwrap(), Some(2));
    // Producers: slot 3 is free, then the dead consumer's slot 0 is not.
    ring.push(3).unwrap();
    assert!(matches!(ring.push(4), Err(PushError::Full(4))));
    assert!(matches!(
        ring.push_blocking(4, Duration::from_millis(50)),
        Err(PushError::Timeout(4))
    ));
    assert_eq!(ring.pop().unwrap(), Some(3));
}
