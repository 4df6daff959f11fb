//! `SpscRing` across processes: a 100-million-item sequence-checked stream,
//! 48-byte values through the mailbox with random pauses on both sides,
//! blocking round trips racing the peer's sleep, a consumer killed with SIGKILL
//! and replaced, and a peer scribbling on the indices and claims. Every segment is removed by a guard, also on panic.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shm_sys::sysv::Segment;
use shm_typed::format::PAYLOAD_OFFSET;
use shm_typed::{Error, Location, PushError, SpscRing};
use support::race::SleepRacer;
use support::stress::{stress_words, Pauses};
use support::{start_time, Peer, RemoveOnDrop};

fn private_ring(capacity: u64) -> (SpscRing<u64>, RemoveOnDrop, i32) {
    let ring = SpscRing::<u64>::create(Location::Private, capacity).expect("create");
    let Location::Id(id) = *ring.location() else {
        panic!("private rings are found by id")
    };
    let guard = RemoveOnDrop(Segment::from_id(id).unwrap());
    (ring, guard, id)
}

/// Calls `take` (which fills a prefix of the buffer it is given, of
/// `buffer_len` values, and returns how many; it also gets the count so far)
/// until `count` values have arrived, checking that they are 0, 1, 2, ...:
/// nothing lost, duplicated or reordered. Fails after 30 s without progress.
fn receive_in_order(count: u64, buffer_len: usize, mut take: impl FnMut(&mut [u64], u64) -> usize) {
    let mut expected = 0u64;
    let mut buffer = vec![0u64; buffer_len];
    let mut idle_since = Instant::now();
    while expected < count {
        let got = take(&mut buffer, expected);
        if got == 0 {
            assert!(
                idle_since.elapsed() < Duration::from_secs(30),
                "no progress for 30 s at {expected}"
            );
            std::hint::spin_loop();
            continue;
        }
        idle_since = Instant::now();
        for &value in &buffer[..got] {
            assert_eq!(value, expected, "lost, duplicated or reordered");
            expected += 1;
        }
    }
}

#[test]
fn one_hundred_million_u64_cross_processes_in_order_with_nothing_lost() {
    let count: u64 = 100_000_000;
    let (ring, _guard, id) = private_ring(1 << 16);
    let mut consumer = ring.consumer().unwrap();
    let mut producer = Peer::start(&[
        "spsc-produce",
        &id.to_string(),
        &(1u64 << 16).to_string(),
        &count.to_string(),
    ]);
    producer.expect_line("ready");

    let started = Instant::now();
    let mut size = 1usize;
    receive_in_order(count, 8192, |buffer, _| {
        // Vary the read size too, 1..=8192.
        size = (size * 5 + 11) % 8192 + 1;
        consumer.pop_into(&mut buffer[..size]).unwrap()
    });
    let took = started.elapsed();
    producer.expect_line("done");
    producer.wait_success();
    assert_eq!(consumer.pop().unwrap(), None, "nothing beyond the count");
    eprintln!(
        "100M u64 in {took:?}: {:.0} M items/s (debug build)",
        count as f64 / took.as_secs_f64() / 1e6
    );
}

/// The mailbox across processes: 48-byte values (the largest it carries)
/// pushed one by one by a peer process and popped one by one here, each side
/// pausing at random (spins, yields, short sleeps; seeded, so a failure can
/// be replayed), the peer started and then let go at a random later time.
/// Every value must arrive whole (all six words, each a different function of
/// its index) and in order. A consumer that has caught up takes a value from
/// the mailbox, one that is behind from its slot; the pauses make both happen
/// many times, and the test checks that the consumer found the ring empty
/// (caught up) often. It failed with the producer's mailbox copy cut to five
/// words ("torn or out of order ... word 5").
#[test]
fn one_by_one_48_byte_values_with_random_pauses_arrive_whole_in_order() {
    let count: u64 = 100_000;
    let capacity = 8u64;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for run in 0..3u64 {
        let seed = seed.wrapping_add(run.wrapping_mul(0x2545_f491_4f6c_dd1d));
        eprintln!("mailbox stress run {run}: seed {seed}");
        let ring = SpscRing::<[u64; 6]>::create(Location::Private, capacity).unwrap();
        let Location::Id(id) = *ring.location() else {
            panic!("private rings are found by id")
        };
        let _guard = RemoveOnDrop(Segment::from_id(id).unwrap());
        let mut consumer = ring.consumer().unwrap();
        let mut producer = Peer::start(&[
            "spsc-produce-words",
            &id.to_string(),
            &capacity.to_string(),
            &count.to_string(),
            &seed.to_string(),
        ]);
        producer.expect_line("ready");
        // Let go at a random point after its start: not in the same tick.
        std::thread::sleep(Duration::from_micros(seed % 20_000));
        producer.go();
        let mut pauses = Pauses::new(!seed);
        let mut empty_polls = 0u64;
        let mut idle_since = Instant::now();
        for expected in 0..count {
            pauses.pause();
            let value = loop {
                match consumer.pop().unwrap() {
                    Some(value) => break value,
                    None => {
                        empty_polls += 1;
                        assert!(
                            idle_since.elapsed() < Duration::from_secs(30),
                            "no value for 30 s at {expected} (seed {seed})"
                        );
                        std::hint::spin_loop();
                    }
                }
            };
            idle_since = Instant::now();
            let wanted = stress_words(expected);
            if value != wanted {
                let word = (0..6).find(|&k| value[k] != wanted[k]).unwrap();
                panic!(
                    "torn or out of order at {expected} (seed {seed}): word {word} is {:#x}, \
                     wanted {:#x}",
                    value[word], wanted[word]
                );
            }
        }
        producer.expect_line("done");
        producer.wait_success();
        assert_eq!(consumer.pop().unwrap(), None, "nothing beyond the count");
        assert!(
            empty_polls > count / 100,
            "the consumer caught up only {empty_polls} times in {count} (seed {seed}): the \
             mailbox path was hardly taken"
        );
    }
}

/// A spinning ring (no wake-up checks) between processes: ten million u64,
/// part pushed one by one, arrive in order with nothing lost, and the header
/// tells it apart from a ring with blocking calls.
#[test]
fn a_spinning_ring_carries_ten_million_u64_between_processes_in_order() {
    let count: u64 = 10_000_000;
    let capacity = 1u64 << 12;
    let ring = SpscRing::<u64, false>::create_spinning(Location::Private, capacity).unwrap();
    let Location::Id(id) = *ring.location() else {
        panic!("private rings are found by id")
    };
    let _guard = RemoveOnDrop(Segment::from_id(id).unwrap());
    match SpscRing::<u64>::open(Location::Id(id), capacity) {
        Err(Error::WrongKind { .. }) => {}
        other => panic!("a spinning ring opened as a blocking one: {other:?}"),
    }
    let mut consumer = ring.consumer().unwrap();
    let mut producer = Peer::start(&[
        "spsc-produce",
        &id.to_string(),
        &capacity.to_string(),
        &count.to_string(),
        "spinning",
    ]);
    producer.expect_line("ready");
    receive_in_order(count, 512, |buffer, expected| {
        // Alternate one-by-one pops with batches.
        if expected % 3 == 0 {
            match consumer.pop().unwrap() {
                Some(value) => {
                    buffer[0] = value;
                    1
                }
                None => 0,
            }
        } else {
            consumer.pop_into(buffer).unwrap()
        }
    });
    producer.expect_line("done");
    producer.wait_success();
    assert_eq!(consumer.pop().unwrap(), None, "nothing beyond the count");
}

/// Blocking ping-pong with a peer process, each value pushed 17-25 us after the
/// last came back: about when the peer, waiting, stops spinning and announces
/// that it sleeps, so the push races the announcement (the sleep/wake
/// handshake, with its membarrier, in crates/shm-typed/src/blocking.rs). Every
/// value must come back, in order, with no error and no call timing out. (How
/// long the round trips take is the ring bench's `interleaved/wake-ups`: this
/// test asserts no time.)
#[test]
fn blocking_pushes_racing_the_peers_sleep_all_come_back_in_order() {
    let trips = 5_000u64;
    let (there, _there_guard, there_id) = private_ring(64);
    let (back, _back_guard, back_id) = private_ring(64);
    let mut peer = Peer::start(&[
        "spsc-echo",
        &there_id.to_string(),
        &back_id.to_string(),
        "64",
        "blocking",
    ]);
    peer.expect_line("ready");
    let (mut producer, mut consumer) = (there.producer().unwrap(), back.consumer().unwrap());
    let mut racer = SleepRacer::new();
    for value in (0..trips).chain([u64::MAX]) {
        racer.pause();
        producer
            .push_blocking(value, Duration::from_secs(30))
            .expect("push");
        let got = consumer.pop_blocking(Duration::from_secs(30)).expect("pop");
        assert_eq!(got, Some(value), "the echo of {value}");
    }
    peer.wait_success();
}

/// A sleeper's barrier (`membarrier` GLOBAL_EXPEDITED, see
/// `blocking::fence_wakers`) reaches only registered processes. Handles
/// register their process when they are made; a child forked afterwards that
/// pushes through the parent's handle makes none, so it must inherit the
/// registration, or its pushes could slip past a sleeper's last look. (Checked
/// here because the kernel's documentation does not say it; exec clears it,
/// and a new program makes its own handles.)
#[test]
fn a_forked_child_inherits_the_registration_for_wake_up_barriers() {
    let (_ring, _guard, id) = private_ring(64);
    let mut peer = Peer::start(&["ring-fork-registrations", &id.to_string(), "64"]);
    let line = peer.expect_line("registrations");
    peer.wait_success();
    let field = |name: &str| -> i64 {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(name))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    if field("before=") < 0 {
        eprintln!("skipped: this kernel cannot report registrations (Linux 6.3+): {line}");
        return;
    }
    const REGISTER_GLOBAL_EXPEDITED: i64 = 1 << 2;
    assert_eq!(field("before=") & REGISTER_GLOBAL_EXPEDITED, 0, "{line}");
    assert_ne!(field("parent=") & REGISTER_GLOBAL_EXPEDITED, 0, "{line}");
    assert_ne!(field("child=") & REGISTER_GLOBAL_EXPEDITED, 0, "{line}");
}

#[test]
fn consumer_killed_mid_stream_is_replaced_and_resumes_where_the_ring_stands() {
    let count: u64 = 2_000_000;
    let capacity = 1024u64;
    let (ring, _guard, id) = private_ring(capacity);
    let args = [
        "spsc-consume".to_string(),
        id.to_string(),
        capacity.to_string(),
        count.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        let producing = scope.spawn(|| {
            let mut producer = ring.producer().unwrap();
            let mut value = 0;
            while value < count {
                match producer.push_blocking(value, Duration::from_millis(50)) {
                    Ok(()) => value += 1,
                    // Nobody consuming for a while (between the two consumers).
                    Err(PushError::Timeout(_)) if !stop.load(Ordering::Relaxed) => {}
                    Err(other) => panic!("push {value}: {other}"),
                }
            }
        });

        let mut first = Peer::start(&args);
        first.expect_line("ready");
        assert_eq!(first.expect_line("first"), "first 0");
        first.expect_line("at 100000");
        first.expect_line("at 200000");
        first.kill();
        first.wait();
        let (head, _tail) = ring.positions().unwrap();
        assert!(head >= 200_000, "the first consumer got at least this far");

        let mut second = Peer::start(&args);
        second.expect_line("ready");
        // Resumes exactly at the head the dead consumer left: nothing skipped.
        assert_eq!(second.expect_line("first"), format!("first {head}"));
        let done = loop {
            let line = second.expect_line("");
            if line.starts_with("done") {
                break line;
            }
        };
        assert_eq!(
            done,
            format!(
                "done first={head} last={} count={}",
                count - 1,
                count - head
            )
        );
        second.wait_success();
        stop.store(true, Ordering::Relaxed);
        producing.join().unwrap();
    });
    assert!(ring.is_empty().unwrap());
}

#[test]
fn scribbling_on_indices_and_claims_gives_only_corrupted_errors_or_data() {
    let capacity = 256u64;
    let (ring, guard, id) = private_ring(capacity);
    let mut producer = Peer::start(&[
        "spsc-hostile-produce",
        &id.to_string(),
        &capacity.to_string(),
        "400",
    ]);
    producer.expect_line("ready");
    let scribbler = guard.attach().unwrap();
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut values, mut corrupted, mut reclaims) = (0u64, 0u64, 0u64);
    let mut consumer = ring.consumer().unwrap();
    while Instant::now() < deadline {
        // Every few operations, write a random value over head, tail or a claim
        // (offsets 384, 512, 768..784 of the segment).
        if next_random() % 8 == 0 {
            let offsets = [0, 128, 384, 388, 392, 400];
            let offset = PAYLOAD_OFFSET + offsets[(next_random() % 6) as usize];
            let width = if offset % 8 == 0 { 8 } else { 4 };
            scribbler
                .write_at(offset, &next_random().to_ne_bytes()[..width])
                .unwrap();
        }
        match consumer.pop().map_err(|corrupted| corrupted.into_error()) {
            Ok(Some(_)) => values += 1,
            Ok(None) => {}
            Err(Error::Corrupted { .. }) => {
                corrupted += 1;
                // Start over from whatever the segment says now.
                drop(consumer);
                consumer = loop {
                    match ring.consumer() {
                        Ok(consumer) => break consumer,
                        Err(Error::Corrupted { .. } | Error::SideClaimed { .. }) => {
                            // Impossible indices, or a scribbled claim naming a live
                            // pid: put sane values back, as an operator would.
                            scribbler
                                .write_at(PAYLOAD_OFFSET, &0u64.to_ne_bytes())
                                .unwrap();
                            scribbler
                                .write_at(PAYLOAD_OFFSET + 128, &0u64.to_ne_bytes())
                                .unwrap();
                            scribbler
                                .write_at(PAYLOAD_OFFSET + 388, &0u32.to_ne_bytes())
                                .unwrap();
                            // The consumer claim: a scribble may name a live
                            // process, or one of another pid namespace.
                            scribbler
                                .write_at(PAYLOAD_OFFSET + 392, &0u64.to_ne_bytes())
                                .unwrap();
                        }
                        Err(other) => panic!("reclaim: {other}"),
                    }
                };
                reclaims += 1;
            }
            Err(other) => panic!("only Corrupted is acceptable, got {other}"),
        }
    }
    let report = producer.expect_line("pushed");
    producer.wait_success();
    assert!(corrupted > 0, "the scribbling was noticed");
    eprintln!("consumer: {values} values, {corrupted} corrupted ({reclaims} reclaims); producer: {report}");
}

#[test]
fn a_claim_is_judged_on_its_own_record_only() {
    // The producer claim word (generation << 32 | pid) at control + 384, its
    // record (start time << 24 | generation's low 24 bits) at control + 400.
    const CLAIM: usize = PAYLOAD_OFFSET + 384;
    const RECORD: usize = PAYLOAD_OFFSET + 400;
    let (ring, segment, _id) = private_ring(16);
    let mut bystander = Peer::start(&["idle"]);
    let pid = bystander.pid();
    assert_eq!(bystander.expect_line("pid"), format!("pid {pid}"));
    let start = start_time(pid);
    let poke = |offset: usize, value: u64| {
        let mapping = segment.attach().unwrap();
        mapping.write_at(offset, &value.to_ne_bytes()).unwrap();
    };
    let claimed_by_live = |ring: &SpscRing<u64>| matches!(ring.producer(), Err(Error::SideClaimed { pid: holder, side: "producer", .. }) if holder == pid);

    // Claim 7 by the live bystander, recorded with its real start time.
    poke(CLAIM, (7 << 32) | u64::from(pid));
    poke(RECORD, (start << 24) | 7);
    assert!(claimed_by_live(&ring), "a live claim is respected");
    // Another start time, but in the record of another claim (6): it says
    // nothing about claim 7, whose holder is alive.
    poke(RECORD, ((start + 999) << 24) | 6);
    assert!(
        claimed_by_live(&ring),
        "a foreign record is not this claim's"
    );
    // Claim 7's own record with another start time: the pid was reused, the
    // claimer is dead, and the claim is taken over as generation 8.
    poke(RECORD, ((start + 999) << 24) | 7);
    let producer = ring.producer().expect("a dead claim is taken over");
    let mapping = segment.attach().unwrap();
    let mut word = [0u8; 8];
    mapping.read_at(CLAIM, &mut word).unwrap();
    assert_eq!(
        u64::from_ne_bytes(word),
        (8 << 32) | u64::from(std::process::id())
    );
    drop(producer);
    mapping.read_at(CLAIM, &mut word).unwrap();
    assert_eq!(
        u64::from_ne_bytes(word),
        8 << 32,
        "released: free, generation kept"
    );
    drop(bystander);
}
