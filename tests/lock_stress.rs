//! Mutual exclusion across processes that started at different times, as users
//! start them: four processes, each started at least two clock ticks after the
//! one before (so their start times differ, which is what the liveness check
//! compares), lock one lock in a loop and add one to a counter with a plain
//! read, a random pause and a plain write. A lost update means two holders at
//! once; an `owner_died` means a live holder was taken over. Both must be 0.
//!
//! `LOCK_STRESS_OPS` sets the lock operations per process (default 500,000:
//! 2 M in all); `.ci/long` runs far more. Every segment is removed by a guard,
//! also on panic.

mod support;

use std::time::{Duration, Instant};

use shm_typed::{Location, Shared, Store};
use support::{start_time, Peer};

const PROCESSES: u64 = 4;
/// Three clock ticks at `USER_HZ` = 100: start times (in ticks) differ.
const STAGGER: Duration = Duration::from_millis(30);

fn ops_per_process() -> u64 {
    std::env::var("LOCK_STRESS_OPS")
        .ok()
        .and_then(|ops| ops.parse().ok())
        .unwrap_or(500_000)
}

/// Starts the lockers one after another, checks that their start times all
/// differ, and returns the total of `owner_died` they saw.
fn run_staggered(which: &str, id: i32, ops: u64) -> u64 {
    let started = Instant::now();
    let mut peers = Vec::new();
    let mut starts = Vec::new();
    for seed in 0..PROCESSES {
        if seed > 0 {
            std::thread::sleep(STAGGER);
        }
        let peer = Peer::start(&[
            "lock-stagger",
            which,
            &id.to_string(),
            &ops.to_string(),
            &seed.to_string(),
        ]);
        starts.push(start_time(peer.pid()));
        peers.push(peer);
    }
    let mut distinct = starts.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        starts.len(),
        "start times {starts:?} must differ"
    );
    let mut died = 0;
    for peer in &mut peers {
        // Seconds in release, up to a minute in a debug build on a busy
        // machine: the deadline guards against a hang, not a slow run.
        let line = peer.expect_line_within("done", Duration::from_secs(300));
        died += line
            .strip_prefix("done died=")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("bad report {line:?}"));
        peer.wait_success();
    }
    eprintln!(
        "{which}: {} lock operations by {PROCESSES} processes started {STAGGER:?} apart in {:?}",
        PROCESSES * ops,
        started.elapsed()
    );
    died
}

/// No live holder taken over, no update lost.
fn assert_exact(died: u64, count: u64, ops: u64) {
    assert_eq!(died, 0, "live holders were taken over");
    let expected = PROCESSES * ops;
    assert_eq!(
        count,
        expected,
        "{} updates lost",
        expected.saturating_sub(count)
    );
}

#[test]
fn staggered_processes_never_share_the_lock_of_a_shared_value() {
    let ops = ops_per_process();
    let value = Shared::<[u64; 4]>::create(Location::Private, [0; 4]).unwrap();
    value.remove().unwrap(); // gone when the last process unmaps it
    let Location::Id(id) = *value.location() else {
        panic!("a private segment is found by id")
    };
    let died = run_staggered("shared", id, ops);
    assert_exact(died, value.load().unwrap()[0], ops);
}

#[test]
fn staggered_processes_never_share_the_lock_of_a_store() {
    let ops = ops_per_process();
    let store = Store::create(Location::Private, 4, 1 << 16).unwrap();
    store.remove().unwrap();
    let counter = store.object::<[u64; 4]>("counter", [0; 4]).unwrap();
    let Location::Id(id) = *store.location() else {
        panic!("a private segment is found by id")
    };
    let died = run_staggered("store", id, ops);
    assert_exact(died, counter.load().unwrap()[0], ops);
}
