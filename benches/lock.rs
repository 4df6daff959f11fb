//! The in-segment lock and `Shared<T>` against what Rust users pick today.
//!
//! - `uncontended`: one lock + increment + unlock, no other thread around:
//!   `Shared<u64>` and the raw `ShmMutex` against `parking_lot::Mutex`,
//!   `std::sync::Mutex`, and `raw_sync`'s process-shared pthread mutex placed in
//!   a `shared_memory` segment.
//! - `contended`: two parties each do N lock + increment + unlock on one
//!   counter; `Shared<u64>` with the other party in another process, against
//!   two threads on a `parking_lot::Mutex`. Reported per operation.
//! - `value_64b`: `Shared<[u8; 64]>` load and store against a
//!   `parking_lot::Mutex<[u8; 64]>`.
//!
//! Everything runs in one `cargo bench --bench lock`, so read the ratios.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use raw_sync::locks::{LockInit, Mutex as RawSyncMutex};
use shm_typed::{Location, Shared};

/// Removes the segment when the benchmark ends.
struct Owned<T: bytemuck::Pod>(Shared<T>);

impl<T: bytemuck::Pod> Drop for Owned<T> {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

fn uncontended(c: &mut Criterion) {
    let shared = Owned(Shared::<u64>::create(Location::Private, 0).expect("create"));
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
    fn start(id: i32) -> Contender {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"))
            .args(["typed-contend", &id.to_string()])
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
    let shared = Owned(Shared::<u64>::create(Location::Private, 0).expect("create"));
    let Location::Id(id) = *shared.0.location() else {
        unreachable!()
    };
    let mut peer = Contender::start(id);
    let parking = Arc::new(parking_lot::Mutex::new(0u64));

    let mut group = c.benchmark_group("contended_two_parties_per_op");
    group.bench_function("shm-typed Shared<u64>, peer in another process", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            peer.start_rounds(iters);
            for _ in 0..iters {
                *shared.0.lock().unwrap() += 1;
            }
            peer.wait_done();
            // Two parties did `iters` each: time per operation.
            started.elapsed() / 2
        })
    });
    group.bench_function("parking_lot::Mutex, peer in another thread", |b| {
        b.iter_custom(|iters| {
            let other = Arc::clone(&parking);
            let started = Instant::now();
            let thread = std::thread::spawn(move || {
                for _ in 0..iters {
                    *other.lock() += 1;
                }
            });
            for _ in 0..iters {
                *parking.lock() += 1;
            }
            thread.join().unwrap();
            started.elapsed() / 2
        })
    });
    group.finish();
}

fn value_64b(c: &mut Criterion) {
    let shared = Owned(Shared::<[u8; 64]>::create(Location::Private, [0; 64]).expect("create"));
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

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended, contended, value_64b
}
criterion_main!(benches);
