//! No heap allocation on lock, unlock, load, store, push or pop: a counting global
//! allocator counts the allocations of the thread doing the work.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use shm_typed::{Location, Shared};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Counting is per thread: the test harness's own threads may allocate at
    /// any time (its main thread wakes to check for slow tests), and that is not
    /// what we measure.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    // try_with: the allocator may run while this thread's locals are torn down.
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds GlobalAlloc's contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(work: impl FnOnce()) -> usize {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.set(true);
    work();
    COUNTING.set(false);
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// One value pushed and popped, then a batch of 16 pushed and popped, on
/// either ring kind.
fn push_and_pop<const WAKE: bool>(
    producer: &mut shm_typed::Producer<'_, u64, WAKE>,
    consumer: &mut shm_typed::Consumer<'_, u64, WAKE>,
    round: u64,
) {
    let batch = [7u64; 16];
    let mut out = [0u64; 16];
    producer.push(round).unwrap();
    assert_eq!(consumer.pop().unwrap(), Some(round));
    assert_eq!(producer.push_slice(&batch).unwrap(), 16);
    assert_eq!(consumer.pop_into(&mut out).unwrap(), 16);
}

#[test]
fn lock_load_store_push_and_pop_do_not_allocate() {
    let shared = Shared::<[u8; 64]>::create(Location::Private, [0; 64]).expect("create");
    let _remove = support::RemoveOnDrop(
        shm_sys::sysv::Segment::from_id(match shared.location() {
            Location::Id(id) => *id,
            other => panic!("{other:?}"),
        })
        .unwrap(),
    );
    let reader = Shared::<[u8; 64]>::open_read_only(shared.location().clone()).expect("open");
    // Warm up: the first lock in a thread caches its id and start time.
    drop(shared.lock().unwrap());

    // The check itself must be able to fail: a Vec does allocate.
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);

    let count = allocations_during(|| {
        for round in 0..1000u32 {
            let mut guard = shared.lock().unwrap();
            guard[0] = round as u8;
            drop(guard);
            shared.store([round as u8; 64]).unwrap();
            let value = shared.load().unwrap();
            std::hint::black_box(value);
            let seen = reader.load().unwrap();
            std::hint::black_box(seen);
            shared.update(|v| v[1] = 1).unwrap();
        }
    });
    assert_eq!(count, 0, "allocations on the lock/load/store paths");

    // Ring push and pop, single and batched, non-blocking and blocking.
    let ring = shm_typed::SpscRing::<u64>::create(Location::Private, 64).expect("ring");
    let _remove_ring = support::RemoveOnDrop(
        shm_sys::sysv::Segment::from_id(match ring.location() {
            Location::Id(id) => *id,
            other => panic!("{other:?}"),
        })
        .unwrap(),
    );
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    let count = allocations_during(|| {
        for round in 0..1000u64 {
            push_and_pop(&mut producer, &mut consumer, round);
            producer
                .push_blocking(round, std::time::Duration::from_secs(1))
                .unwrap();
            let got = consumer.pop_blocking(std::time::Duration::from_secs(1));
            assert_eq!(got.unwrap(), Some(round));
        }
    });
    assert_eq!(count, 0, "allocations on the ring's push/pop paths");

    let spinning =
        shm_typed::SpscRing::<u64, false>::create_spinning(Location::Private, 64).expect("ring");
    spinning.remove().unwrap(); // lives while mapped
    let (mut producer, mut consumer) = (spinning.producer().unwrap(), spinning.consumer().unwrap());
    let count = allocations_during(|| {
        for round in 0..1000u64 {
            push_and_pop(&mut producer, &mut consumer, round);
        }
    });
    assert_eq!(
        count, 0,
        "allocations on the spinning ring's push/pop paths"
    );

    let mpmc = shm_typed::MpmcRing::<u64>::create(Location::Private, 64).expect("mpmc ring");
    mpmc.remove().unwrap(); // lives while mapped
    let count = allocations_during(|| {
        for round in 0..1000u64 {
            mpmc.push(round).unwrap();
            assert_eq!(mpmc.pop().unwrap(), Some(round));
            mpmc.push_blocking(round, std::time::Duration::from_secs(1))
                .unwrap();
            let got = mpmc.pop_blocking(std::time::Duration::from_secs(1));
            assert_eq!(got.unwrap(), Some(round));
        }
    });
    assert_eq!(count, 0, "allocations on the MPMC ring's push/pop paths");
}
