//! `MpmcRing` across processes when one of them is SIGKILLed at a random
//! moment: 2 producer and 2 consumer processes, started one after another
//! with random delays and pausing at random, in 50 rounds of a fresh ring
//! each. In each round one of the four is killed: in most rounds exactly
//! between its claim of a slot and its publish (producer) or free
//! (consumer), where the fault-injection hook (`SHM_TYPED_PAUSE`) holds it,
//! in the others at a random time. Every round the ring must keep moving
//! (nothing waits longer than 10 s), and every value must arrive exactly
//! once, except at most the one the killed process was handling, which the
//! test accounts for: values carry their producer and sequence number, so the
//! values of a killed producer must be exactly a prefix of its sequence (when
//! paused at its `N`th claim: the first `N - 1`), and a killed consumer may
//! take at most one value with it (when paused at a claim: exactly one).
//!
//! `MPMC_CRASH_SEED=<n>` replays a run (the seed is printed).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use shm_sys::sysv::Segment;
use shm_typed::{Location, MpmcRing};
use support::{ipcs_m, Peer, RemoveOnDrop};

const ROUNDS: u32 = 50;
/// Values each producer pushes per round.
const PER_PRODUCER: u64 = 3000;
/// Small, so that producers lap the ring and meet a dead consumer's slot.
const CAPACITY: u64 = 8;
/// How long the ring may take to move on after the kill.
const MOVE_ON: Duration = Duration::from_secs(10);
/// Peers 0 and 1 produce, 2 and 3 consume.
const PEERS: usize = 4;

/// xorshift64*: the test's randomness, replayable from its seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// How the victim of a round dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// Held by the pause hook right after its `n`th claim, then killed.
    PausedAtClaim(u64),
    /// Killed this long after the last peer started.
    After(Duration),
}

/// What the consumers' logs say: how often each value arrived, and whether
/// a log ends in a line its consumer did not finish writing.
struct Delivered {
    counts: HashMap<u64, u32>,
    unfinished: Vec<usize>,
}

fn read_logs(logs: &[PathBuf; 2]) -> Delivered {
    let mut counts = HashMap::new();
    let mut unfinished = Vec::new();
    for (consumer, log) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().collect();
        if !text.is_empty() && !text.ends_with('\n') {
            lines.pop();
            unfinished.push(consumer + 2);
        }
        for line in lines {
            let value: u64 = line
                .parse()
                .unwrap_or_else(|_| panic!("{}: not a value: {line:?}", log.display()));
            *counts.entry(value).or_default() += 1;
        }
    }
    Delivered { counts, unfinished }
}

/// Waits for the pause hook's mark file, failing the round after [`MOVE_ON`].
fn wait_for_mark(mark: &Path, round: u32) -> String {
    let deadline = Instant::now() + MOVE_ON;
    loop {
        if let Ok(text) = std::fs::read_to_string(mark) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: the victim never reached its pause point"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One round; returns a line saying what happened.
fn round(round: u32, random: &mut Random, dir: &Path) -> String {
    let ring = MpmcRing::<u64>::create(Location::Private, CAPACITY).expect("create the ring");
    let Location::Id(id) = *ring.location() else {
        panic!("private rings are found by id")
    };
    let guard = RemoveOnDrop(Segment::from_id(id).unwrap());
    let victim = random.below(PEERS as u64) as usize;
    let death = if random.below(10) < 6 {
        // Producers claim PER_PRODUCER times; each consumer surely more than
        // 500 times of the 2 * PER_PRODUCER values.
        let limit = if victim < 2 { PER_PRODUCER } else { 500 };
        Death::PausedAtClaim(1 + random.below(limit))
    } else {
        Death::After(Duration::from_micros(random.below(12_000)))
    };
    let mark = dir.join(format!("round-{round}.paused"));
    let logs = [
        dir.join(format!("round-{round}-consumer-2.log")),
        dir.join(format!("round-{round}-consumer-3.log")),
    ];

    // Start the four in a random order, at random intervals; each begins
    // its work as soon as it has opened the ring.
    let mut order: Vec<usize> = (0..PEERS).collect();
    for index in (1..PEERS).rev() {
        order.swap(index, random.below(index as u64 + 1) as usize);
    }
    let (id_arg, capacity_arg, count_arg) = (
        id.to_string(),
        CAPACITY.to_string(),
        PER_PRODUCER.to_string(),
    );
    let mut peers: Vec<Option<Peer>> = (0..PEERS).map(|_| None).collect();
    for &who in &order {
        std::thread::sleep(Duration::from_micros(random.below(3000)));
        let mut command = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"));
        command
            .env_remove("SHM_TYPED_PAUSE")
            .env_remove("SHM_TYPED_PAUSE_MARK");
        if let (Death::PausedAtClaim(n), true) = (death, who == victim) {
            let point = if who < 2 {
                "mpmc:push-claimed"
            } else {
                "mpmc:pop-claimed"
            };
            command
                .env("SHM_TYPED_PAUSE", format!("{point}@{n}"))
                .env("SHM_TYPED_PAUSE_MARK", &mark);
        }
        let seed = random.next().to_string();
        let who_arg = who.to_string();
        let log_arg = logs[who.saturating_sub(2) % 2].display().to_string();
        let args: Vec<&str> = if who < 2 {
            vec![
                "mpmc-crash-produce",
                &id_arg,
                &capacity_arg,
                &who_arg,
                &count_arg,
                &seed,
            ]
        } else {
            vec![
                "mpmc-crash-consume",
                &id_arg,
                &capacity_arg,
                &log_arg,
                &seed,
            ]
        };
        let mut peer = Peer::start_command(command, &args);
        peer.expect_line("ready");
        peers[who] = Some(peer);
    }

    // The kill.
    let mut killed = peers[victim].take().expect("the victim runs");
    let paused_at = match death {
        Death::PausedAtClaim(_) => Some(wait_for_mark(&mark, round)),
        Death::After(delay) => {
            std::thread::sleep(delay);
            None
        }
    };
    killed.kill();
    let status = killed.wait();
    let killed_at = Instant::now();

    // The ring moves on: the live producers finish, then one stop marker per
    // live consumer follows everything they pushed, and the consumers drain
    // the ring up to it.
    for producer in peers[..2].iter_mut().flatten() {
        producer.expect_line_within("done", MOVE_ON);
    }
    for _ in (2..PEERS).filter(|&who| who != victim) {
        ring.push_blocking(u64::MAX, MOVE_ON)
            .unwrap_or_else(|e| panic!("round {round}: the stop marker: {e}"));
    }
    for consumer in peers[2..].iter_mut().flatten() {
        consumer.expect_line_within("done", MOVE_ON);
    }
    for peer in peers.iter_mut().flatten() {
        peer.wait_success();
    }
    let moved_on = killed_at.elapsed();
    assert!(
        moved_on < MOVE_ON,
        "round {round}: took {moved_on:?} after the kill"
    );
    assert!(ring.is_empty(), "round {round}: values left over");

    // Exactly once, but for the victim's one value.
    let delivered = read_logs(&logs);
    let duplicates: Vec<_> = delivered.counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "round {round}: delivered more than once: {duplicates:?}"
    );
    assert!(
        delivered.unfinished.iter().all(|&who| who == victim),
        "round {round}: a live consumer's log is cut short"
    );
    let mut missing = Vec::new();
    let mut victims_values = 0;
    for producer in 0..2u64 {
        let mut got: Vec<u64> = delivered
            .counts
            .keys()
            .filter(|&&value| value >> 32 == producer)
            .map(|&value| value & 0xffff_ffff)
            .collect();
        got.sort_unstable();
        assert!(
            got.iter().all(|&n| n < PER_PRODUCER),
            "round {round}: a value producer {producer} never pushed"
        );
        if producer as usize == victim {
            // What it pushed before it died, each exactly once: a prefix.
            assert!(
                got.iter().enumerate().all(|(index, &n)| n == index as u64),
                "round {round}: producer {producer} was killed, but its values have a hole"
            );
            if let Death::PausedAtClaim(n) = death {
                assert_eq!(
                    got.len() as u64,
                    n - 1,
                    "round {round}: paused at its claim {n}, it had published {} values",
                    n - 1
                );
            }
            victims_values = got.len();
        } else {
            let mut next = 0;
            for &n in &got {
                missing.extend((next..n).map(|lost| (producer, lost)));
                next = n + 1;
            }
            missing.extend((next..PER_PRODUCER).map(|lost| (producer, lost)));
        }
    }
    assert!(
        delivered.counts.keys().all(|&value| value >> 32 < 2),
        "round {round}: a value no producer pushed"
    );
    let role = if victim < 2 { "producer" } else { "consumer" };
    if victim < 2 {
        assert!(
            missing.is_empty(),
            "round {round}: a producer was killed, yet the live producers lost {missing:?}"
        );
    } else {
        assert!(
            missing.len() <= 1,
            "round {round}: consumer {victim} was killed, and {} values are missing: {missing:?}",
            missing.len()
        );
        if matches!(death, Death::PausedAtClaim(_)) {
            assert_eq!(
                missing.len(),
                1,
                "round {round}: killed holding a claimed value, which must be the one lost"
            );
        }
    }

    drop(ring);
    drop(guard);
    assert!(
        !ipcs_m().iter().any(|row| row.id == id),
        "round {round}: segment {id} left behind"
    );
    let how = match (death, paused_at) {
        (Death::PausedAtClaim(n), Some(mark)) => format!("paused at claim {n} ({})", mark.trim()),
        (Death::After(delay), _) => format!("killed {delay:?} after the start ({status})"),
        _ => unreachable!(),
    };
    let cost = if victim < 2 {
        format!("{victims_values} of its values delivered")
    } else {
        format!("{} value lost {missing:?}", missing.len())
    };
    format!("round {round}: {role} {victim} {how}; {cost}; moved on in {moved_on:?}")
}

#[test]
fn every_value_arrives_once_but_the_killed_participants_in_each_of_50_rounds() {
    let seed = std::env::var("MPMC_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("MPMC_CRASH_SEED={seed}");
    let mut random = Random(seed | 1);
    let dir = tempfile::tempdir().expect("a directory for the logs");
    let mut paused = 0;
    for index in 0..ROUNDS {
        let line = round(index, &mut random, dir.path());
        paused += usize::from(line.contains("paused at claim"));
        println!("{line}");
    }
    assert!(
        paused >= ROUNDS as usize / 3,
        "only {paused} of {ROUNDS} rounds killed a participant between claim and publish or free"
    );
}
