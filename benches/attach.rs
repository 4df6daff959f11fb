//! Costs of the `shm-sys` layer against the raw calls a user would otherwise make.
//!
//! - `attach_detach`: `Segment::attach` + drop against raw `libc::shmat` +
//!   `shmdt` on the same segment, and against `mmap` + `munmap` of a memfd.
//! - `copy_4k`: `Mapping::read_at` (atomic, race-tolerant copies) against a plain
//!   `ptr::copy_nonoverlapping` out of the same mapping.
//!
//! Subject and baseline run in the same process, one after the other, so compare
//! their ratio, not their absolute times.
//!
//! After the criterion groups, an interleaved section (`cargo bench --bench
//! attach -- interleaved` runs it alone) times subject and baseline round by
//! round in alternating order and prints the median of the per-round ratios,
//! which drift in the host's load between the two criterion measurements
//! cannot skew. `ATTACH_BENCH_VERBOSE=1` prints every round.

use std::hint::black_box;
use std::os::fd::AsFd;

use criterion::Criterion;
use shm_sys::memfd::MemfdSegment;
use shm_sys::sysv::Segment;

mod support;

use support::{interleaved_wanted, rounds, time_ratio, timed};

struct RemoveOnDrop(Segment);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

fn attach_detach(c: &mut Criterion) {
    let segment = RemoveOnDrop(Segment::create_private(1 << 16).expect("create"));
    let memfd = MemfdSegment::create("bench", 1 << 16).expect("memfd");
    let mut group = c.benchmark_group("attach_detach_64k");
    group.bench_function("shm-sys Segment::attach + drop", |b| {
        b.iter(|| drop(black_box(segment.0.attach().expect("attach"))))
    });
    group.bench_function("raw libc shmat + shmdt", |b| {
        b.iter(|| {
            // SAFETY: attaching a live segment at a kernel-chosen address, then
            // detaching the address it returned; nothing else uses it.
            unsafe {
                let address = libc::shmat(segment.0.id(), std::ptr::null(), 0);
                assert_ne!(address as isize, -1);
                libc::shmdt(black_box(address));
            }
        })
    });
    group.bench_function("shm-sys MemfdSegment::map + drop", |b| {
        b.iter(|| drop(black_box(memfd.map().expect("map"))))
    });
    group.finish();
}

fn copy_4k(c: &mut Criterion) {
    let segment = RemoveOnDrop(Segment::create_private(1 << 16).expect("create"));
    let mapping = segment.0.attach().expect("attach");
    let mut buffer = vec![0u8; 4096];
    let mut group = c.benchmark_group("copy_out_4k");
    group.throughput(criterion::Throughput::Bytes(4096));
    group.bench_function("shm-sys Mapping::read_at", |b| {
        b.iter(|| mapping.read_at(black_box(64), &mut buffer).expect("read"))
    });
    group.bench_function("ptr::copy_nonoverlapping", |b| {
        b.iter(|| {
            // SAFETY: 64..64+4096 is inside the 64 KiB mapping; nothing writes it
            // concurrently in this benchmark.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    mapping.as_ptr().add(black_box(64)),
                    buffer.as_mut_ptr(),
                    4096,
                )
            }
        })
    });
    group.finish();
}

/// Raw `shmat` + `shmdt` of segment `id`: the baseline a user of libc writes.
fn raw_attach_detach(id: i32) {
    // SAFETY: attaching a live segment at a kernel-chosen address, then
    // detaching the address it returned; nothing else uses it.
    unsafe {
        let address = libc::shmat(id, std::ptr::null(), 0);
        assert_ne!(address as isize, -1);
        libc::shmdt(black_box(address));
    }
}

fn interleaved() {
    const ATTACHES: u64 = 2_000;
    const COPIES: u64 = 200_000;
    let verbose = "ATTACH_BENCH_VERBOSE";
    let segment = RemoveOnDrop(Segment::create_private(1 << 16).expect("create"));
    let memfd = MemfdSegment::create("bench", 1 << 16).expect("memfd");
    let rounds = rounds();
    println!(
        "interleaved: {rounds} rounds each, subject and baseline alternating; medians of the \
         per-round time ratios (subject / baseline)"
    );
    let id = segment.0.id();
    let attach = time_ratio(
        verbose,
        &mut || {
            timed(ATTACHES, || {
                drop(black_box(segment.0.attach().expect("attach")))
            })
        },
        &mut || timed(ATTACHES, || raw_attach_detach(id)),
    );
    let map = time_ratio(
        verbose,
        &mut || timed(ATTACHES, || drop(black_box(memfd.map().expect("map")))),
        &mut || {
            timed(ATTACHES, || {
                // SAFETY: a fresh shared mapping of the memfd's 64 KiB at a
                // kernel-chosen address, unmapped right away; nothing else uses it.
                unsafe {
                    let address = rustix::mm::mmap(
                        std::ptr::null_mut(),
                        1 << 16,
                        rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                        rustix::mm::MapFlags::SHARED,
                        memfd.as_fd(),
                        0,
                    )
                    .expect("mmap");
                    rustix::mm::munmap(black_box(address), 1 << 16).expect("munmap");
                }
            })
        },
    );
    let mapping = segment.0.attach().expect("attach");
    let mut buffer = vec![0u8; 4096];
    let mut read_at = || {
        timed(COPIES, || {
            mapping.read_at(black_box(64), &mut buffer).expect("read")
        })
    };
    let mut plain = vec![0u8; 4096];
    let copy = time_ratio(verbose, &mut read_at, &mut || {
        timed(COPIES, || {
            // SAFETY: 64..64+4096 is inside the 64 KiB mapping; nothing writes it
            // concurrently in this benchmark.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    mapping.as_ptr().add(black_box(64)),
                    plain.as_mut_ptr(),
                    4096,
                )
            }
            black_box(&plain);
        })
    });
    println!(
        "interleaved: attach + detach 64 KiB, Segment::attach + drop / raw shmat + shmdt = \
         {attach:.2}x; MemfdSegment::map + drop / raw mmap + munmap of the memfd = {map:.2}x; \
         copy 4 KiB out, Mapping::read_at / ptr::copy_nonoverlapping = {copy:.2}x"
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    attach_detach(&mut criterion);
    copy_4k(&mut criterion);
    criterion.final_summary();
    if interleaved_wanted() {
        interleaved();
    }
}
