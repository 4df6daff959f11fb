//! The in-segment lock and `Shared<T>` against what Rust users pick today.
//!
//! - `uncontended`: one lock + increment + unlock, no other thread around:
//!   `Shared<u64>` and the raw `ShmMutex` against `parking_lot::Mutex`,
//!   `std::sync::Mutex`, and `raw_sync`'s process-shared pthread mutex placed in
//!   a `shared_memory` segment.
//! - `contended`: two parties each do N lock + increment + unlock on one
//!   counter; `Shared<u64>` with the other party in another process, against
//!   two threads on a `parking_lot::Mutex`. Reported per operation.
//! - (interleaved only) `hand-overs`: strict turns on one counter between
//!   two parties, so that each operation waits for the other's release.
//! - `value_64b`: `Shared<[u8; 64]>` load and store against a
//!   `parking_lot::Mutex<[u8; 64]>`.
//!
//! Everything runs in one `cargo bench --bench lock`, so read the ratios.
//! After the criterion groups, an interleaved section (`cargo bench --bench lock
//! -- interleaved` runs it alone) measures each subject and its baseline in
//! alternating order, round by round, and prints the median ratios; the
//! contended rounds are tagged by the vCPU placement a raw ping-pong probe
//! finds just before each (see `support`). `LOCK_BENCH_VERBOSE=1` prints each
//! uncontended and value round. Two parts there show where the time goes
//! rather than compare with a baseline: raw atomics in the shape of our
//! owner word's lock + unlock, with the compare-exchange fed by a load or not,
//! and `parking_lot` with its counter two cache lines from its lock (where
//! `Shared<T>` keeps its value) against the same lock and counter in one line.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use raw_sync::locks::{LockInit, Mutex as RawSyncMutex};
use shm_typed::{Location, Shared};

mod support;

use support::{
    alternate, interleaved_wanted, median, rounds, time_ratio, timed, Probe, Rounds, CLOSE_NS,
    NEAR_NS,
};

/// A `Shared<T>` in a private segment that is marked for removal at once: it
/// lives while mapped (Linux still lets the contending peer attach it by id),
/// so nothing is left behind even if the benchmark is killed.
struct Owned<T: bytemuck::Pod>(Shared<T>);

impl<T: bytemuck::Pod> Owned<T> {
    fn new(value: T) -> Owned<T> {
        let shared = Shared::<T>::create(Location::Private, value).expect("create");
        shared
            .remove()
            .expect("remove (freed when the last process detaches)");
        Owned(shared)
    }
}

fn uncontended(c: &mut Criterion) {
    let shared = Owned::new(0u64);
    let parking = parking_lot::Mutex::new(0u64);
    let std_mutex = std::sync::Mutex::new(0u64);
    let shmem = shared_memory::ShmemConf::new()
        .size(4096)
        .create()
        .expect("shared_memory segment");
    let base = shmem.as_ptr();
    // SAFETY: the segment is 4096 bytes, fresh, and outlives the lock; the data
    // pointer (a u64 after the lock) is inside it and 8-aligned.
    let (raw_sync_lock, _) = unsafe {
        let data = base.add(RawSyncMutex::size_of(Some(base)).next_multiple_of(8));
        RawSyncMutex::new(base, data).expect("raw_sync mutex")
    };

    let mut group = c.benchmark_group("uncontended_lock_unlock");
    group.bench_function("shm-typed Shared<u64>::lock", |b| {
        b.iter(|| *shared.0.lock().unwrap() += 1)
    });
    group.bench_function("shm-typed ShmMutex acquire+release", |b| {
        let mutex = shared.0.mutex().expect("a read-write handle");
        b.iter(|| {
            let acquired = mutex.acquire(None).unwrap();
            black_box(acquired.owner_died);
            mutex.release();
        })
    });
    group.bench_function("parking_lot::Mutex", |b| b.iter(|| *parking.lock() += 1));
    group.bench_function("std::sync::Mutex", |b| {
        b.iter(|| *std_mutex.lock().unwrap() += 1)
    });
    group.bench_function("raw_sync pthread mutex in shared_memory", |b| {
        b.iter(|| {
            let guard = raw_sync_lock.lock().unwrap();
            // SAFETY: the lock is held; the data pointer is the u64 it guards.
            unsafe { *(*guard).cast::<u64>() += 1 };
        })
    });
    group.finish();
}

/// The contending peer process, driven over its stdin.
struct Contender {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Contender {
    /// `role`: `typed-contend` or `typed-turns`.
    fn start(role: &str, id: i32) -> Contender {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"))
            .args([role, &id.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start peer");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Contender {
            child,
            stdin,
            stdout,
        }
    }

    fn start_rounds(&mut self, rounds: u64) {
        writeln!(self.stdin, "{rounds}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn wait_done(&mut self) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contended(c: &mut Criterion) {
    let shared = Owned::new(0u64);
    let Location::Id(id) = *shared.0.location() else {
        unreachable!()
    };
    let mut peer = Contender::start("typed-contend", id);
    let parking = Arc::new(parking_lot::Mutex::new(0u64));

    let mut group = c.benchmark_group("contended_two_parties_per_op");
    // Two parties do `iters` each: time per operation is half the total.
    group.bench_function("shm-typed Shared<u64>, peer in another process", |b| {
        b.iter_custom(|iters| shared_contended(&shared.0, &mut peer, iters) / 2)
    });
    group.bench_function("parking_lot::Mutex, peer in another thread", |b| {
        b.iter_custom(|iters| parking_lot_contended(&parking, iters) / 2)
    });
    group.finish();
}

/// `ops` lock + increment + unlock here while the peer process does as many
/// on the same counter; the time until both are done.
fn shared_contended(shared: &Shared<u64>, peer: &mut Contender, ops: u64) -> Duration {
    let started = Instant::now();
    peer.start_rounds(ops);
    for _ in 0..ops {
        *shared.lock().unwrap() += 1;
    }
    peer.wait_done();
    started.elapsed()
}

/// The same with a `parking_lot::Mutex` and the peer a thread.
fn parking_lot_contended(parking: &Arc<parking_lot::Mutex<u64>>, ops: u64) -> Duration {
    let other = Arc::clone(parking);
    let started = Instant::now();
    let thread = std::thread::spawn(move || {
        for _ in 0..ops {
            *other.lock() += 1;
        }
    });
    for _ in 0..ops {
        *parking.lock() += 1;
    }
    thread.join().unwrap();
    started.elapsed()
}

/// A `parking_lot` lock with its counter two cache lines away, as a
/// `Shared<u64>` keeps its value apart from its lock.
#[repr(C, align(128))]
struct Apart {
    lock: parking_lot::Mutex<()>,
    _lines: [u8; 192],
    counter: AtomicU64,
}

impl Default for Apart {
    fn default() -> Apart {
        Apart {
            lock: parking_lot::Mutex::new(()),
            _lines: [0; 192],
            counter: AtomicU64::new(0),
        }
    }
}

/// [`parking_lot_contended`] on an [`Apart`]: the counter is only touched
/// under the lock (a plain read and write, done with relaxed atomics).
fn apart_contended(apart: &Arc<Apart>, ops: u64) -> Duration {
    fn increment(apart: &Apart) {
        let _held = apart.lock.lock();
        let counter = apart.counter.load(Ordering::Relaxed);
        apart.counter.store(counter + 1, Ordering::Relaxed);
    }
    let other = Arc::clone(apart);
    let started = Instant::now();
    let thread = std::thread::spawn(move || (0..ops).for_each(|_| increment(&other)));
    (0..ops).for_each(|_| increment(apart));
    thread.join().unwrap();
    started.elapsed()
}

/// The shape of one uncontended lock + unlock on a 64-bit owner word, with
/// raw atomics: the compare-exchange's expected value loaded from the word
/// first (as a lock whose free state carries a generation must), or known
/// in advance (as a lock whose free state is a constant can); both release
/// with a swap of a value known from the acquisition.
fn owner_word_loop(ops: u64, load_first: bool) -> Duration {
    const HELD: u64 = 7;
    let word = black_box(AtomicU64::new(0));
    let mut expected = 0;
    timed(ops, || {
        let free = if load_first {
            word.load(Ordering::Relaxed)
        } else {
            expected
        };
        let held = free.wrapping_add(1 << 32) | HELD;
        if word
            .compare_exchange(free, held, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            panic!("the word is ours alone");
        }
        black_box(&word);
        expected = held & !HELD;
        black_box(word.swap(expected, Ordering::Release));
    })
}

/// `turns` strict turns each with the peer process on the counter (ours when
/// even: lock, increment if ours, unlock): every turn is a hand-over of the
/// lock and the value to the other party, so this measures how soon a
/// waiter notices a release. The time until both are done.
fn shared_turns(shared: &Shared<u64>, peer: &mut Contender, turns: u64) -> Duration {
    let started = Instant::now();
    peer.start_rounds(turns);
    let mut taken = 0;
    while taken < turns {
        let mut value = shared.lock().unwrap();
        if *value % 2 == 0 {
            *value += 1;
            taken += 1;
        }
    }
    peer.wait_done();
    started.elapsed()
}

/// The same turns with a `parking_lot::Mutex` and the peer a thread.
fn parking_lot_turns(parking: &Arc<parking_lot::Mutex<u64>>, turns: u64) -> Duration {
    fn take(parking: &parking_lot::Mutex<u64>, parity: u64, turns: u64) {
        let mut taken = 0;
        while taken < turns {
            let mut value = parking.lock();
            if *value % 2 == parity {
                *value += 1;
                taken += 1;
            }
        }
    }
    let other = Arc::clone(parking);
    let started = Instant::now();
    let thread = std::thread::spawn(move || take(&other, 1, turns));
    take(parking, 0, turns);
    thread.join().unwrap();
    started.elapsed()
}

fn value_64b(c: &mut Criterion) {
    let shared = Owned::new([0u8; 64]);
    let parking = parking_lot::Mutex::new([0u8; 64]);
    let mut group = c.benchmark_group("value_64_bytes");
    group.bench_function("shm-typed Shared::load", |b| {
        b.iter(|| black_box(shared.0.load().unwrap()))
    });
    group.bench_function("parking_lot load (lock + copy)", |b| {
        b.iter(|| black_box(*parking.lock()))
    });
    group.bench_function("shm-typed Shared::store", |b| {
        b.iter(|| shared.0.store(black_box([7; 64])).unwrap())
    });
    group.bench_function("parking_lot store (lock + copy)", |b| {
        b.iter(|| *parking.lock() = black_box([7; 64]))
    });
    group.finish();
}

fn interleaved() {
    const OPS: u64 = 1_000_000;
    let rounds = rounds();
    println!(
        "interleaved: {rounds} rounds each, subject and baseline alternating; medians of the \
         per-round time ratios (subject / baseline)"
    );
    let shared = Owned::new(0u64);
    let parking = Arc::new(parking_lot::Mutex::new(0u64));
    let std_mutex = std::sync::Mutex::new(0u64);
    println!(
        "interleaved: uncontended lock + increment + unlock, Shared<u64> / parking_lot::Mutex = \
         {:.2}x, / std::sync::Mutex = {:.2}x",
        time_ratio(
            "LOCK_BENCH_VERBOSE",
            &mut || timed(OPS, || *shared.0.lock().unwrap() += 1),
            &mut || { timed(OPS, || *parking.lock() += 1) }
        ),
        time_ratio(
            "LOCK_BENCH_VERBOSE",
            &mut || timed(OPS, || *shared.0.lock().unwrap() += 1),
            &mut || { timed(OPS, || *std_mutex.lock().unwrap() += 1) }
        ),
    );

    println!(
        "interleaved: uncontended owner word, raw atomics: compare-exchange fed by a load of the \
         word / with the expected value known = {:.2}x",
        time_ratio(
            "LOCK_BENCH_VERBOSE",
            &mut || owner_word_loop(OPS, true),
            &mut || owner_word_loop(OPS, false),
        ),
    );

    let value = Owned::new([0u8; 64]);
    let parking_value = parking_lot::Mutex::new([0u8; 64]);
    println!(
        "interleaved: 64-byte value, Shared::load / parking_lot lock + copy = {:.2}x; \
         Shared::store / parking_lot lock + copy = {:.2}x",
        time_ratio(
            "LOCK_BENCH_VERBOSE",
            &mut || timed(OPS, || {
                black_box(value.0.load().unwrap());
            }),
            &mut || timed(OPS, || {
                black_box(*parking_value.lock());
            }),
        ),
        time_ratio(
            "LOCK_BENCH_VERBOSE",
            &mut || timed(OPS, || value.0.store(black_box([7; 64])).unwrap()),
            &mut || timed(OPS, || *parking_value.lock() = black_box([7; 64])),
        ),
    );

    // Contended: both parties do CONTENDED lock + increment + unlock on one
    // counter; per-operation time, peer process against peer thread.
    const CONTENDED: u64 = 200_000;
    let Location::Id(id) = *shared.0.location() else {
        unreachable!()
    };
    let mut peer = Contender::start("typed-contend", id);
    let mut probe = Probe::new();
    let mut ratios = Rounds::default();
    for round in 0..rounds {
        let raw_ns = probe.raw_ns();
        let (subject, base) = alternate(
            round,
            &mut || shared_contended(&shared.0, &mut peer, CONTENDED),
            &mut || parking_lot_contended(&parking, CONTENDED),
        );
        ratios.push(raw_ns, subject.as_secs_f64() / base.as_secs_f64());
    }
    let apart = Arc::new(Apart::default());
    let mut apart_ratios = Rounds::default();
    for round in 0..rounds {
        let raw_ns = probe.raw_ns();
        let (subject, base) = alternate(
            round,
            &mut || apart_contended(&apart, CONTENDED),
            &mut || parking_lot_contended(&parking, CONTENDED),
        );
        apart_ratios.push(raw_ns, subject.as_secs_f64() / base.as_secs_f64());
    }
    println!(
        "interleaved: contended, parking_lot with the counter two cache lines from the lock / \
         parking_lot::Mutex<u64> (lock and counter in one line) = {}",
        apart_ratios.summary("x", 2)
    );
    println!(
        "interleaved: contended, two parties lock + increment + unlock, Shared<u64> with the \
         peer in another process / parking_lot::Mutex with the peer in another thread = {} \
         (rounds tagged near < {NEAR_NS} ns raw round trip, close < {CLOSE_NS} ns)",
        ratios.summary("x", 2)
    );

    // Hand-overs: strict turns, so every operation waits for the other
    // party's release (how soon a waiter notices one).
    const TURNS: u64 = 20_000;
    let turns = Owned::new(0u64);
    let Location::Id(turns_id) = *turns.0.location() else {
        unreachable!()
    };
    let mut turner = Contender::start("typed-turns", turns_id);
    let parking_turns = Arc::new(parking_lot::Mutex::new(0u64));
    let mut turn_ratios = Rounds::default();
    let mut turn_ns = Vec::new();
    for round in 0..rounds {
        let raw_ns = probe.raw_ns();
        let (subject, base) = alternate(
            round,
            &mut || shared_turns(&turns.0, &mut turner, TURNS),
            &mut || parking_lot_turns(&parking_turns, TURNS),
        );
        turn_ns.push(subject.as_nanos() as f64 / (2 * TURNS) as f64);
        turn_ratios.push(raw_ns, subject.as_secs_f64() / base.as_secs_f64());
    }
    println!(
        "interleaved: hand-overs, strict turns on one counter, Shared<u64> with the peer in \
         another process / parking_lot::Mutex with the peer in another thread = {} ({:.0} ns \
         per turn, median)",
        turn_ratios.summary("x", 2),
        median(&mut turn_ns)
    );
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    uncontended(&mut criterion);
    contended(&mut criterion);
    value_64b(&mut criterion);
    criterion.final_summary();
    if interleaved_wanted() {
        interleaved();
    }
}
