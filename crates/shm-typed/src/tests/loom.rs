//! loom runs the shipping ring protocols ([`crate::protocol`]): every
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
//!     cargo test -p shm-typed --lib --release loom_tests
//! ```

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

use crate::protocol::{
    mpmc_pop, mpmc_push, Cells, Pop, Push, SequencedCells, SpscConsumer, SpscProducer,
};

crate::protocol::impl_word64!(AtomicU64);

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

// ---------------------------------------------------------------------------
// The lock: the shipping algorithm (`lock::Core`) over loom's atomics, with a
// liveness oracle the model changes between any two steps.

mod lock {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicU32, AtomicU64};
    use loom::sync::Arc;
    use loom::thread;

    use crate::lock::{Core, Env, LockFailure};
    use crate::sys::StartTime;

    crate::lock::impl_atomic!(AtomicU32, u32);
    crate::lock::impl_atomic!(AtomicU64, u64);

    /// Thread ids 1..=3 exist in the model.
    const TASKS: usize = 4;

    /// The lock's words and the data it protects.
    struct Locked {
        owner: AtomicU64,
        wakes: AtomicU32,
        flags: AtomicU32,
        record: AtomicU64,
        sequence: AtomicU64,
        namespace: AtomicU64,
        /// Written under the lock without atomics: loom reports two holders
        /// as a data race on it.
        data: UnsafeCell<u64>,
        /// The oracle: `tasks[tid]` is the start time of the live task with
        /// that id, 0 if none. Threads change it (dying, a new task taking a
        /// dead one's id) at any point the model chooses.
        tasks: [AtomicU64; TASKS],
    }

    impl Locked {
        fn new() -> Arc<Locked> {
            Arc::new(Locked {
                owner: AtomicU64::new(0),
                wakes: AtomicU32::new(0),
                flags: AtomicU32::new(0),
                record: AtomicU64::new(0),
                sequence: AtomicU64::new(0),
                namespace: AtomicU64::new(0),
                data: UnsafeCell::new(0),
                tasks: std::array::from_fn(|_| AtomicU64::new(0)),
            })
        }

        fn core(&self) -> Core<'_, AtomicU32, AtomicU64> {
            Core {
                owner: &self.owner,
                wakes: &self.wakes,
                flags: &self.flags,
                record: &self.record,
                sequence: &self.sequence,
                namespace: &self.namespace,
            }
        }

        /// Starts task `tid` with start time `start` (no yield point: done
        /// before the thread that plays it is spawned, or by the thread that
        /// replaces a dead task).
        fn born(&self, tid: u32, start: StartTime) {
            self.tasks[tid as usize].store(start, Ordering::SeqCst);
        }

        /// One thread's view of the world.
        fn task(locked: &Arc<Locked>, tid: u32, start: StartTime) -> Task {
            Task {
                clock: std::cell::Cell::new(Duration::ZERO),
                locked: locked.clone(),
                tid,
                start,
            }
        }
    }

    struct Task {
        /// This thread's clock: the naps it slept.
        clock: std::cell::Cell<Duration>,
        locked: Arc<Locked>,
        tid: u32,
        start: StartTime,
    }

    impl Env<AtomicU32> for Task {
        // Straight to the sleep and the liveness check: that is where the
        // interleavings that matter are.
        const SPINS: u32 = 0;

        fn me(&self) -> (u32, StartTime, u64) {
            (self.tid, self.start, 0)
        }

        fn is_dead(&self, tid: u32, recorded: Option<StartTime>) -> bool {
            let Some(task) = self.locked.tasks.get(tid as usize) else {
                return true;
            };
            match task.load(Ordering::SeqCst) {
                0 => true,
                live => recorded.is_some_and(|recorded| recorded != live),
            }
        }

        fn namespace(&self) -> u64 {
            0
        }

        fn pause(&self) {
            thread::yield_now();
        }

        /// A futex wait that returns at once if the value changed, and
        /// otherwise lets the others run (a sleep whose timeout passed).
        /// A futex wait that returns at once if the value changed, and
        /// otherwise lets the others run; either way the model's clock moves
        /// on by the nap, so every wait ends (at the caller's timeout).
        fn sleep(&self, futex: &AtomicU32, expected: u32, nap: Duration) {
            self.clock.set(self.clock.get() + nap);
            if futex.load(Ordering::SeqCst) == expected {
                thread::yield_now();
            }
        }

        fn wake(&self, _futex: &AtomicU32) {}

        fn fence(&self, order: Ordering) {
            loom::sync::atomic::fence(order);
        }

        type Instant = Duration;

        fn now(&self) -> Duration {
            self.clock.get()
        }

        fn since(&self, then: Duration) -> Duration {
            self.clock.get() - then
        }
    }

    /// How long a model thread waits for the lock: a few naps, so every
    /// execution ends; a thread that gives up has taken nothing.
    const PATIENCE: Duration = Duration::from_millis(40);

    impl Task {
        /// Locks, adds one to the data without atomics, unlocks. `None` if it
        /// gave up waiting; else whether the lock said its previous holder died.
        fn increment(&self) -> Option<bool> {
            let locked = &self.locked;
            let acquired = match locked.core().acquire(self, Some(PATIENCE), true) {
                Ok(acquired) => acquired,
                Err(LockFailure::Timeout { .. }) => return None,
                Err(other) => panic!("{other:?}"),
            };
            // SAFETY: the lock under test grants exclusivity; loom reports a
            // race if it does not.
            locked.data.with_mut(|data| unsafe { *data += 1 });
            if acquired.owner_died {
                locked.core().mark_consistent();
            }
            locked.core().release(self);
            Some(acquired.owner_died)
        }

        /// Locks and dies holding the lock (the task with this id is gone
        /// then, whether it got the lock or gave up waiting). Whether it got it.
        fn lock_and_die(&self) -> bool {
            let locked = &self.locked;
            let got = locked.core().acquire(self, Some(PATIENCE), true).is_ok();
            if got {
                // SAFETY: as in increment.
                locked.data.with_mut(|data| unsafe { *data += 1 });
            }
            locked.tasks[self.tid as usize].store(0, Ordering::SeqCst);
            got
        }

        fn data(&self) -> u64 {
            // SAFETY: read after every other thread of the model was joined.
            self.locked.data.with(|data| unsafe { *data })
        }
    }

    /// Counts the `Some`s and the `Some(true)`s (takeovers).
    fn tally(results: &[Option<bool>]) -> (u64, u64) {
        let done = results.iter().flatten().count() as u64;
        let took_over = results.iter().flatten().filter(|died| **died).count() as u64;
        (done, took_over)
    }

    /// The preemption bound: `LOOM_MAX_PREEMPTIONS` if set, else 2.
    fn builder() -> loom::model::Builder {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(2));
        builder
    }

    /// Three live threads, one of them locking twice (release and re-acquire):
    /// nobody is ever judged dead, two holders never coexist (loom reports a
    /// race on the data), and every increment that got the lock counts. A
    /// waiter that judges the record of one acquisition against the owner word
    /// of another, or that takes over by thread id alone, fails here.
    #[test]
    fn live_holders_are_never_taken_over() {
        builder().check(|| {
            let locked = Locked::new();
            for (tid, start) in [(1, 10), (2, 20), (3, 30)] {
                locked.born(tid, start);
            }
            let twice = {
                let task = Locked::task(&locked, 1, 10);
                thread::spawn(move || [task.increment(), task.increment()])
            };
            let once = {
                let task = Locked::task(&locked, 2, 20);
                thread::spawn(move || task.increment())
            };
            let me = Locked::task(&locked, 3, 30);
            let mine = me.increment();
            let [first, second] = twice.join().unwrap();
            let results = [mine, first, second, once.join().unwrap()];
            let (done, took_over) = tally(&results);
            assert_eq!(took_over, 0, "a live holder was taken over: {results:?}");
            assert_eq!(me.data(), done);
        });
    }

    /// A holder that died holding the lock, its id then free or reused by a
    /// task started later: the next locker takes the lock over and learns
    /// `owner_died`; after it marked the data consistent, the one after that
    /// does not.
    #[test]
    fn a_dead_holder_is_taken_over_once() {
        for reuse in [false, true] {
            builder().check(move || {
                let locked = Locked::new();
                locked.born(1, 10);
                locked.born(2, 20);
                let dying = {
                    let task = Locked::task(&locked, 1, 10);
                    let locked = locked.clone();
                    thread::spawn(move || {
                        assert!(task.lock_and_die(), "nobody else holds it");
                        if reuse {
                            // A new task gets the dead one's id.
                            locked.born(1, 11);
                        }
                    })
                };
                let me = Locked::task(&locked, 2, 20);
                dying.join().unwrap();
                assert_eq!(
                    me.increment(),
                    Some(true),
                    "the dead holder's lock is taken over"
                );
                assert_eq!(
                    me.increment(),
                    Some(false),
                    "marked consistent: no owner_died"
                );
                assert_eq!(me.data(), 3);
            });
        }
    }

    /// A holder that dies holding the lock while two live threads want it,
    /// all three running at once: at most one takeover of the one dead
    /// acquisition, none if the dying thread locked last, and no two holders.
    #[test]
    fn a_holder_dying_under_two_waiters() {
        builder().check(|| {
            let locked = Locked::new();
            for (tid, start) in [(1, 10), (2, 20), (3, 30)] {
                locked.born(tid, start);
            }
            let dying = {
                let task = Locked::task(&locked, 1, 10);
                thread::spawn(move || task.lock_and_die())
            };
            let other = {
                let task = Locked::task(&locked, 2, 20);
                thread::spawn(move || task.increment())
            };
            let me = Locked::task(&locked, 3, 30);
            let mine = me.increment();
            let results = [mine, other.join().unwrap()];
            let died_holding = u64::from(dying.join().unwrap());
            let (done, took_over) = tally(&results);
            assert!(
                took_over <= died_holding,
                "{results:?}: more takeovers than dead holders"
            );
            assert_eq!(me.data(), done + died_holding);
        });
    }
}
