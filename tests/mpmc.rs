//! `MpmcRing` across processes: two producer and two consumer processes with
//! every item delivered exactly once; a producer or consumer killed between
//! its claim and its publish or free (held there by the fault-injection
//! pause hook) costs its own value and nothing else; and a claim that no
//! participant announced (a peer scribbling the positions) is never
//! repaired, while every wait stays bounded. `tests/mpmc_crash.rs` kills at
//! random over many rounds.

mod support;

use std::path::Path;
use std::process::Command;
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

/// Starts a crash-role peer (`mpmc-crash-produce` or `mpmc-crash-consume`)
/// that stops at its first claim of `point` and says so in `mark`.
fn paused_peer(point: &str, mark: &Path, args: &[&str]) -> Peer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"));
    command
        .env("SHM_TYPED_PAUSE", point)
        .env("SHM_TYPED_PAUSE_MARK", mark);
    let mut peer = Peer::start_command(command, args);
    peer.expect_line("ready");
    support::wait_until("the peer to pause", || mark.exists());
    peer
}

#[test]
fn a_producer_killed_between_claim_and_publish_costs_only_its_own_value() {
    let (ring, _guard, id) = private_ring(8);
    let dir = tempfile::tempdir().unwrap();
    ring.push(1).unwrap();
    let mut producer = paused_peer(
        "mpmc:push-claimed",
        &dir.path().join("paused"),
        &["mpmc-crash-produce", &id.to_string(), "8", "1", "1", "7"],
    );
    ring.push(3).unwrap();
    assert_eq!(ring.pop().unwrap(), Some(1));
    // The producer holds the next slot, alive: consumers wait, nobody repairs.
    assert_eq!(ring.pop_blocking(Duration::from_millis(300)).unwrap(), None);
    assert_eq!(ring.recover(), 0);
    producer.kill();
    producer.wait();
    // Dead: the first waiter repairs the slot and passes it.
    assert_eq!(ring.pop_blocking(Duration::from_secs(5)).unwrap(), Some(3));
    assert_eq!(
        ring.pop().unwrap(),
        None,
        "its value, 1 << 32, never arrives"
    );
    for value in 10..30 {
        ring.push(value).unwrap();
        assert_eq!(ring.pop().unwrap(), Some(value));
    }
}

#[test]
fn a_consumer_killed_between_claim_and_free_costs_only_the_value_it_took() {
    let (ring, _guard, id) = private_ring(4);
    let dir = tempfile::tempdir().unwrap();
    for value in 0..4 {
        ring.push(value).unwrap();
    }
    let log = dir.path().join("log");
    let mut consumer = paused_peer(
        "mpmc:pop-claimed",
        &dir.path().join("paused"),
        &[
            "mpmc-crash-consume",
            &id.to_string(),
            "4",
            &log.display().to_string(),
            "7",
        ],
    );
    // It claimed value 0 and holds its slot; the others are ours.
    let rest: Vec<u64> = std::iter::from_fn(|| ring.pop().unwrap()).collect();
    assert_eq!(rest, [1, 2, 3]);
    // A lap later producers reach the held slot: alive, so they wait.
    assert!(matches!(
        ring.push_blocking(4, Duration::from_millis(300)),
        Err(PushError::Timeout(4))
    ));
    assert_eq!(ring.recover(), 0);
    consumer.kill();
    consumer.wait();
    ring.push_blocking(4, Duration::from_secs(5)).unwrap();
    for value in 5..8 {
        ring.push(value).unwrap();
    }
    let rest: Vec<u64> = std::iter::from_fn(|| ring.pop().unwrap()).collect();
    assert_eq!(rest, [4, 5, 6, 7], "only 0 went with the dead consumer");
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");
}

/// A claim no participant announced (here a peer bumps the enqueue position
/// by hand, as a hostile or broken program could) is never repaired: its
/// claimer could be alive. Consumers find the ring "empty" from there on,
/// producers fill it; every wait is bounded.
#[test]
fn an_unannounced_producer_claim_is_never_repaired_and_waits_stay_bounded() {
    let (ring, guard, _) = private_ring(8);
    let scribbler = guard.attach().unwrap();
    ring.push(1).unwrap();
    ring.push(2).unwrap();
    // The enqueue position moved on, the slot never published, and no
    // participant announced the claim.
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
    // The unannounced slot: consumers see "empty" although 3, 4, 5 wait.
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

/// The same for a consumer's claim: the value is lost, and a lap later the
/// unfreed slot stops producers (bounded), as no announced claim explains it.
#[test]
fn an_unannounced_consumer_claim_is_never_repaired_and_waits_stay_bounded() {
    let (ring, guard, _) = private_ring(4);
    let scribbler = guard.attach().unwrap();
    for value in 0..3 {
        ring.push(value).unwrap();
    }
    // The dequeue position moved on, the slot not freed, nothing announced.
    let mut position = [0u8; 8];
    scribbler
        .read_at(PAYLOAD_OFFSET + 128, &mut position)
        .unwrap();
    let claimed = u64::from_ne_bytes(position);
    scribbler
        .write_at(PAYLOAD_OFFSET + 128, &(claimed + 1).to_ne_bytes())
        .unwrap();
    // Value 0 is skipped over; the others still arrive.
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
