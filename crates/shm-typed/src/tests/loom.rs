//! loom runs the shipping ring protocols ([`crate::ring::protocol`]): every
//! interleaving of producers and consumers up to `LOOM_MAX_PREEMPTIONS`, with
//! loom checking that the memory orderings make each cell access race-free
//! (its `UnsafeCell` tracks them) and the tests checking that each value
//! arrives exactly once, in order where the protocol promises order.
//!
//! The functions under test are the ones `SpscRing` and `MpmcRing` call; only
//! the memory differs (loom's atomics and cells instead of words in a segment).
//! Run with
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p shm-typed --lib --release tests::loom
//! ```

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

use crate::ring::protocol::{
    mpmc_pop, mpmc_push, Cells, Pop, Push, SequencedCells, SpscConsumer, SpscProducer,
};

crate::ring::protocol::impl_word64!(AtomicU64);

/// Value cells whose every access loom tracks.
struct LoomCells(Vec<UnsafeCell<u64>>);

impl LoomCells {
    fn new(capacity: u64) -> LoomCells {
        LoomCells((0..capacity).map(|_| UnsafeCell::new(0)).collect())
    }

    fn index(&self, position: u64) -> usize {
        (position % self.0.len() as u64) as usize
    }
}

impl Cells<u64> for LoomCells {
    unsafe fn write(&self, position: u64, value: u64) {
        // SAFETY: the protocol under test promises exclusive access; loom
        // reports a data race if the orderings do not deliver it.
        self.0[self.index(position)].with_mut(|cell| unsafe { *cell = value });
    }

    unsafe fn read(&self, position: u64) -> u64 {
        // SAFETY: as in write.
        self.0[self.index(position)].with(|cell| unsafe { *cell })
    }
}

/// The SPSC ring's shared state: `tail`, `head` and the cells.
struct Spsc {
    tail: AtomicU64,
    head: AtomicU64,
    cells: LoomCells,
    capacity: u64,
}

impl Spsc {
    fn new(capacity: u64) -> Arc<Spsc> {
        Arc::new(Spsc {
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            cells: LoomCells::new(capacity),
            capacity,
        })
    }

    fn push(&self, producer: &mut SpscProducer, value: u64) -> bool {
        match producer.push(&self.head, &self.tail, &self.cells, self.capacity, value) {
            Push::Done => true,
            Push::Full(_) => false,
            Push::Broken(_, what) => panic!("a correct consumer looked impossible: {what:?}"),
        }
    }

    fn pop(&self, consumer: &mut SpscConsumer) -> Option<u64> {
        match consumer.pop(&self.head, &self.tail, &self.cells, self.capacity) {
            Pop::Value(value) => Some(value),
            Pop::Empty => None,
            Pop::Broken(what) => panic!("a correct producer looked impossible: {what:?}"),
        }
    }
}

const FRESH_PRODUCER: SpscProducer = SpscProducer {
    tail: 0,
    cached_head: 0,
};
const FRESH_CONSUMER: SpscConsumer = SpscConsumer {
    head: 0,
    cached_tail: 0,
};

#[test]
fn spsc_values_arrive_once_in_order_without_races() {
    loom::model(|| {
        let ring = Spsc::new(2);
        let sending = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut producer = FRESH_PRODUCER;
                for value in 1..=3 {
                    while !ring.push(&mut producer, value) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut consumer = FRESH_CONSUMER;
        let mut received = Vec::new();
        while received.len() < 3 {
            match ring.pop(&mut consumer) {
                Some(value) => received.push(value),
                None => thread::yield_now(),
            }
        }
        sending.join().unwrap();
        assert_eq!(received, [1, 2, 3]);
    });
}

/// The batch paths (`push_slice`/`write_chunk` and `pop_into`/`read_chunk`):
/// `free` and `available` for two positions, then one `publish`/`release` of
/// both.
#[test]
fn spsc_batches_of_two_arrive_whole_without_races() {
    loom::model(|| {
        let ring = Spsc::new(2);
        let sending = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut producer = FRESH_PRODUCER;
                for batch in [[1, 2], [3, 4]] {
                    while producer.free(&ring.head, ring.capacity, 2).unwrap() < 2 {
                        thread::yield_now();
                    }
                    for (offset, value) in (0..).zip(batch) {
                        // SAFETY: `free` said both positions are free.
                        unsafe { ring.cells.write(producer.tail + offset, value) };
                    }
                    producer.publish(&ring.tail, 2);
                }
            })
        };
        let mut consumer = FRESH_CONSUMER;
        let mut received = Vec::new();
        while received.len() < 4 {
            let available = consumer.available(&ring.tail, ring.capacity, 2).unwrap();
            if available == 0 {
                thread::yield_now();
                continue;
            }
            for offset in 0..available {
                // SAFETY: `available` said these positions are published.
                received.push(unsafe { ring.cells.read(consumer.head + offset) });
            }
            consumer.release(&ring.head, available);
        }
        sending.join().unwrap();
        assert_eq!(received, [1, 2, 3, 4]);
    });
}

/// The MPMC ring's shared state: the two claim positions and the sequenced cells.
struct Mpmc {
    enqueue: AtomicU64,
    dequeue: AtomicU64,
    sequences: Vec<AtomicU64>,
    cells: LoomCells,
    capacity: u64,
}

impl Cells<u64> for Mpmc {
    unsafe fn write(&self, position: u64, value: u64) {
        // SAFETY: forwarded; same contract.
        unsafe { self.cells.write(position, value) }
    }

    unsafe fn read(&self, position: u64) -> u64 {
        // SAFETY: forwarded; same contract.
        unsafe { self.cells.read(position) }
    }
}

impl SequencedCells<u64> for Mpmc {
    type Sequence = AtomicU64;

    fn sequence(&self, position: u64) -> &AtomicU64 {
        &self.sequences[(position % self.capacity) as usize]
    }
}

impl Mpmc {
    fn new(capacity: u64) -> Arc<Mpmc> {
        Arc::new(Mpmc {
            enqueue: AtomicU64::new(0),
            dequeue: AtomicU64::new(0),
            // As `MpmcRing::initial_sequences`: cell i is free for position i.
            sequences: (0..capacity).map(AtomicU64::new).collect(),
            cells: LoomCells::new(capacity),
            capacity,
        })
    }

    fn push(&self, value: u64) -> bool {
        match mpmc_push(&self.enqueue, self, value, u32::MAX) {
            Push::Done => true,
            Push::Full(_) => false,
            Push::Broken(..) => panic!("gave up"),
        }
    }

    fn pop(&self) -> Option<u64> {
        match mpmc_pop(&self.dequeue, self, self.capacity, u32::MAX) {
            Pop::Value(value) => Some(value),
            Pop::Empty => None,
            Pop::Broken(()) => panic!("gave up"),
        }
    }

    /// Pops one value, yielding to other threads while the ring is empty.
    fn pop_one(&self) -> u64 {
        loop {
            if let Some(value) = self.pop() {
                return value;
            }
            thread::yield_now();
        }
    }
}

#[test]
fn mpmc_two_producers_each_value_exactly_once() {
    loom::model(|| {
        let ring = Mpmc::new(2);
        let producers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|value| {
                let ring = ring.clone();
                thread::spawn(move || assert!(ring.push(value), "two cells, two values"))
            })
            .collect();
        let mut all = [ring.pop_one(), ring.pop_one()];
        for producer in producers {
            producer.join().unwrap();
        }
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
        assert_eq!(ring.pop(), None);
    });
}

#[test]
fn mpmc_two_consumers_each_value_exactly_once() {
    loom::model(|| {
        let ring = Mpmc::new(2);
        assert!(ring.push(1) && ring.push(2));
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || ring.pop())
        };
        let mine = ring.pop();
        let theirs = consumer.join().unwrap();
        // Both values are there before either pop starts: each gets one.
        let mut all = [
            mine.expect("a value for us"),
            theirs.expect("a value for them"),
        ];
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
    });
}

#[test]
fn mpmc_wraps_around_a_lap_in_order() {
    loom::model(|| {
        let ring = Mpmc::new(2);
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for value in 1..=3 {
                    while !ring.push(value) {
                        thread::yield_now();
                    }
                }
            })
        };
        let received: Vec<u64> = (0..3).map(|_| ring.pop_one()).collect();
        producer.join().unwrap();
        assert_eq!(received, [1, 2, 3]);
    });
}
