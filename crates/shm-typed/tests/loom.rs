//! loom models of the two ring protocols: every interleaving (up to
//! `LOOM_MAX_PREEMPTIONS`) of producers and consumers, with loom checking that
//! the memory orderings make each slot access race-free and each value arrive
//! exactly once, in order where the protocol promises order.
//!
//! The rings themselves live in shared memory and reach their atomics through
//! `AtomicU64::from_ptr`, which loom cannot instrument, so these models restate
//! each protocol step for step over loom's atomics, with the real code's
//! orderings; the comments name the function each step mirrors. Run with
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shm-typed --test loom --release
//! ```

#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

/// `SpscRing`: `tail` written by the producer only, `head` by the consumer only.
struct Spsc {
    tail: AtomicU64,
    head: AtomicU64,
    slots: Vec<UnsafeCell<u64>>,
}

impl Spsc {
    fn new(capacity: usize) -> Spsc {
        Spsc {
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            slots: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    fn capacity(&self) -> u64 {
        self.slots.len() as u64
    }
}

/// The producer's local state (`Producer { tail, cached_head }`).
struct SpscProducer {
    ring: Arc<Spsc>,
    tail: u64,
    cached_head: u64,
}

impl SpscProducer {
    /// `Producer::push` (`free` + slot write + `publish`).
    fn push(&mut self, value: u64) -> bool {
        let capacity = self.ring.capacity();
        if capacity - (self.tail - self.cached_head) == 0 {
            // `free`: reload the consumer's position only when the ring looks full.
            let head = self.ring.head.load(Ordering::Acquire);
            assert!(head >= self.cached_head && head <= self.tail, "validated");
            self.cached_head = head;
            if capacity - (self.tail - head) == 0 {
                return false;
            }
        }
        let index = (self.tail % capacity) as usize;
        // SAFETY (model): the slot is free; loom reports a race if the orderings
        // let the consumer touch it concurrently.
        self.ring.slots[index].with_mut(|slot| unsafe { *slot = value });
        self.tail += 1;
        // `publish`: Release pairs with the consumer's Acquire load of tail.
        self.ring.tail.store(self.tail, Ordering::Release);
        true
    }
}

/// The consumer's local state (`Consumer { head, cached_tail }`).
struct SpscConsumer {
    ring: Arc<Spsc>,
    head: u64,
    cached_tail: u64,
}

impl SpscConsumer {
    /// `Consumer::pop` (`available` + slot read + `release`).
    fn pop(&mut self) -> Option<u64> {
        if self.cached_tail == self.head {
            let tail = self.ring.tail.load(Ordering::Acquire);
            assert!(tail >= self.cached_tail && tail - self.head <= self.ring.capacity());
            self.cached_tail = tail;
            if tail == self.head {
                return None;
            }
        }
        let index = (self.head % self.ring.capacity()) as usize;
        // SAFETY (model): the slot is published; loom checks the orderings.
        let value = self.ring.slots[index].with(|slot| unsafe { *slot });
        self.head += 1;
        // `release`: Release pairs with the producer's Acquire load of head.
        self.ring.head.store(self.head, Ordering::Release);
        Some(value)
    }
}

#[test]
fn spsc_values_arrive_once_in_order_without_races() {
    loom::model(|| {
        let ring = Arc::new(Spsc::new(2));
        let mut producer = SpscProducer {
            ring: ring.clone(),
            tail: 0,
            cached_head: 0,
        };
        let sending = thread::spawn(move || {
            for value in 1..=3 {
                while !producer.push(value) {
                    thread::yield_now();
                }
            }
        });
        let mut consumer = SpscConsumer {
            ring,
            head: 0,
            cached_tail: 0,
        };
        let mut received = Vec::new();
        while received.len() < 3 {
            match consumer.pop() {
                Some(value) => received.push(value),
                None => thread::yield_now(),
            }
        }
        sending.join().unwrap();
        assert_eq!(received, [1, 2, 3]);
    });
}

/// `MpmcRing`: per-slot sequence numbers.
struct Mpmc {
    enqueue: AtomicU64,
    dequeue: AtomicU64,
    sequences: Vec<AtomicU64>,
    values: Vec<UnsafeCell<u64>>,
}

impl Mpmc {
    fn new(capacity: u64) -> Mpmc {
        Mpmc {
            enqueue: AtomicU64::new(0),
            dequeue: AtomicU64::new(0),
            // `initial_sequences`: slot i is free for position i.
            sequences: (0..capacity).map(AtomicU64::new).collect(),
            values: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    fn capacity(&self) -> u64 {
        self.sequences.len() as u64
    }

    /// `MpmcRing::push`.
    fn push(&self, value: u64) -> bool {
        let mut position = self.enqueue.load(Ordering::Relaxed);
        loop {
            let index = (position % self.capacity()) as usize;
            let seen = self.sequences[index].load(Ordering::Acquire);
            let lag = seen.wrapping_sub(position) as i64;
            if lag == 0 {
                match self.enqueue.compare_exchange(
                    position,
                    position + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY (model): the CAS gave us this slot.
                        self.values[index].with_mut(|slot| unsafe { *slot = value });
                        self.sequences[index].store(position + 1, Ordering::Release);
                        return true;
                    }
                    Err(current) => position = current,
                }
            } else if lag < 0 {
                return false;
            } else {
                position = self.enqueue.load(Ordering::Relaxed);
            }
        }
    }

    /// `MpmcRing::pop`.
    fn pop(&self) -> Option<u64> {
        let mut position = self.dequeue.load(Ordering::Relaxed);
        loop {
            let index = (position % self.capacity()) as usize;
            let seen = self.sequences[index].load(Ordering::Acquire);
            let lag = seen.wrapping_sub(position + 1) as i64;
            if lag == 0 {
                match self.dequeue.compare_exchange(
                    position,
                    position + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY (model): the CAS gave us this published slot.
                        let value = self.values[index].with(|slot| unsafe { *slot });
                        self.sequences[index].store(position + self.capacity(), Ordering::Release);
                        return Some(value);
                    }
                    Err(current) => position = current,
                }
            } else if lag < 0 {
                return None;
            } else {
                position = self.dequeue.load(Ordering::Relaxed);
            }
        }
    }
}

/// Pops one value, yielding to other threads while the ring is empty.
fn pop_one(ring: &Mpmc) -> u64 {
    loop {
        if let Some(value) = ring.pop() {
            return value;
        }
        thread::yield_now();
    }
}

#[test]
fn mpmc_two_producers_each_value_exactly_once() {
    loom::model(|| {
        let ring = Arc::new(Mpmc::new(2));
        let producers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|value| {
                let ring = ring.clone();
                thread::spawn(move || assert!(ring.push(value), "two slots, two values"))
            })
            .collect();
        let mut all = [pop_one(&ring), pop_one(&ring)];
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
        let ring = Arc::new(Mpmc::new(2));
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
        let ring = Arc::new(Mpmc::new(2));
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
        let received: Vec<u64> = (0..3).map(|_| pop_one(&ring)).collect();
        producer.join().unwrap();
        assert_eq!(received, [1, 2, 3]);
    });
}
