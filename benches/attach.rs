//! Costs of the `shm-sys` layer against the raw calls a user would otherwise make.
//!
//! - `attach_detach`: `Segment::attach` + drop against raw `libc::shmat` +
//!   `shmdt` on the same segment, and against `mmap` + `munmap` of a memfd.
//! - `copy_4k`: `Mapping::read_at` (atomic, race-tolerant copies) against a plain
//!   `ptr::copy_nonoverlapping` out of the same mapping.
//!
//! Subject and baseline run in the same process, one after the other, so compare
//! their ratio, not their absolute times.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use shm_sys::posix::MemfdSegment;
use shm_sys::sysv::Segment;

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

criterion_group!(benches, attach_detach, copy_4k);
criterion_main!(benches);
