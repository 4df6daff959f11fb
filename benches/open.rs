//! What the schema check costs: opening a segment whose type derives
//! `ShmType` (the stored schema is found, hashed, decoded and compared field by
//! field) against opening one of a type with the same layout that does not
//! (name, size and alignment only), and the hot operations on both.
//!
//! - `open`: `Shared::<T>::open` + drop of a System V segment (attach,
//!   validate, detach), with and without a schema.
//! - `load`: `Shared::load` of the 64-byte value, with and without.
//! - `push_pop`: one `SpscRing` push and one pop, with and without.
//!
//! The interleaved section (`cargo bench --bench open -- interleaved` runs it
//! alone) alternates subject and baseline round by round and prints the
//! median of the per-round ratios and the median time per open.
//! `OPEN_BENCH_VERBOSE=1` prints every round.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use shm_typed::schema::ShmType;
use shm_typed::{Location, Shared, SpscRing};

mod support;

use support::{interleaved_wanted, median, rounds, time_ratio, timed};

/// A typical message: 64 bytes, eight fields and a nested array.
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable, ShmType)]
#[repr(C)]
struct Tick {
    price: f64,
    qty: u64,
    seq: u64,
    venue: u32,
    side: u32,
    levels: [u32; 4],
    flags: u64,
    stamp: u64,
}

/// The same layout without `ShmType`: the weaker identity, no schema block.
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct PlainTick {
    price: f64,
    qty: u64,
    seq: u64,
    venue: u32,
    side: u32,
    levels: [u32; 4],
    flags: u64,
    stamp: u64,
}

const _: () = assert!(size_of::<Tick>() == 64 && size_of::<PlainTick>() == 64);

/// A segment made here, removed when dropped.
struct Made<T> {
    handle: T,
    id: i32,
}

fn make_object<T: bytemuck::Pod + Default>() -> Made<Shared<T>> {
    let handle = Shared::<T>::options()
        .create(Location::Private, T::default())
        .expect("create");
    let Location::Id(id) = *handle.location() else {
        unreachable!("a private segment has an id")
    };
    Made { handle, id }
}

impl<T> Drop for Made<T> {
    fn drop(&mut self) {
        let _ = shm_sys::sysv::Segment::from_id(self.id).and_then(|segment| segment.remove());
    }
}

fn open_once<T: bytemuck::Pod>(id: i32) {
    drop(black_box(
        Shared::<T>::open(Location::Id(id)).expect("open"),
    ));
}

fn criterion_groups(c: &mut Criterion) {
    let with = make_object::<Tick>();
    let without = make_object::<PlainTick>();
    assert_ne!(with.handle.region().len(), without.handle.region().len());
    let mut group = c.benchmark_group("open_64b_object");
    group.bench_function("with schema (ShmType)", |b| {
        b.iter(|| open_once::<Tick>(with.id))
    });
    group.bench_function("without schema", |b| {
        b.iter(|| open_once::<PlainTick>(without.id))
    });
    group.finish();
    let mut group = c.benchmark_group("load_64b");
    group.bench_function("with schema (ShmType)", |b| {
        b.iter(|| black_box(with.handle.load().expect("load")))
    });
    group.bench_function("without schema", |b| {
        b.iter(|| black_box(without.handle.load().expect("load")))
    });
    group.finish();
}

/// Push one, pop one, `ops` times, on a fresh ring of `T`.
fn push_pop<T: bytemuck::Pod + Default>(ring: &SpscRing<T>, ops: u64) -> Duration {
    let mut producer = ring.producer().expect("producer");
    let mut consumer = ring.consumer().expect("consumer");
    timed(ops, || {
        producer.push(black_box(T::default())).ok().expect("room");
        black_box(consumer.pop().expect("pop").expect("an item"));
    })
}

fn interleaved() {
    const OPENS: u64 = 2_000;
    const LOADS: u64 = 1_000_000;
    const PUSHES: u64 = 1_000_000;
    let verbose = "OPEN_BENCH_VERBOSE";
    let with = make_object::<Tick>();
    let without = make_object::<PlainTick>();
    let rounds = rounds();
    println!(
        "interleaved: {rounds} rounds each, subject (with schema) and baseline (without) \
         alternating; medians of the per-round time ratios"
    );
    let mut with_times = Vec::new();
    let mut without_times = Vec::new();
    let open = time_ratio(
        verbose,
        &mut || {
            let time = timed(OPENS, || open_once::<Tick>(with.id));
            with_times.push(time.as_secs_f64() * 1e6 / OPENS as f64);
            time
        },
        &mut || {
            let time = timed(OPENS, || open_once::<PlainTick>(without.id));
            without_times.push(time.as_secs_f64() * 1e6 / OPENS as f64);
            time
        },
    );
    let load = time_ratio(
        verbose,
        &mut || {
            timed(LOADS, || {
                black_box(with.handle.load().expect("load"));
            })
        },
        &mut || {
            timed(LOADS, || {
                black_box(without.handle.load().expect("load"));
            })
        },
    );
    let ring_with = SpscRing::<Tick>::create(Location::Private, 1024).expect("ring");
    let ring_without = SpscRing::<PlainTick>::create(Location::Private, 1024).expect("ring");
    let ring = time_ratio(verbose, &mut || push_pop(&ring_with, PUSHES), &mut || {
        push_pop(&ring_without, PUSHES)
    });
    for ring_location in [ring_with.location(), ring_without.location()] {
        if let Location::Id(id) = ring_location {
            let _ = shm_sys::sysv::Segment::from_id(*id).and_then(|segment| segment.remove());
        }
    }
    println!(
        "interleaved: open + drop of a 64-byte object, with schema / without = {open:.2}x \
         (median {:.2} us with, {:.2} us without); load with / without = {load:.2}x; \
         SpscRing push + pop with / without = {ring:.2}x",
        median(&mut with_times),
        median(&mut without_times),
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion);
    criterion.final_summary();
    if interleaved_wanted() {
        interleaved();
    }
}
