//! loom runs the shipping ring protocols ([`crate::ring::protocol`]): every
//! interleaving of producers and consumers up to `LOOM_MAX_PREEMPTIONS`, with
//! loom checking that the memory orderings make each cell access race-free
//! (its `UnsafeCell` tracks them) and the tests checking that each value
//! arrives exactly once, in order where the protocol promises order.
//!
//! The functions under test are the ones `SpscRing` and `MpmcRing` call; only
//! the memory differs (loom's atomics and cells instead of words in a segment).
//!
//! The MPMC models also run the repair (`mpmc_repair`) over a participants
//! table whose liveness oracle the model controls: a participant "dies" by
//! stopping between any two of its steps (every atomic operation and cell
//! access is a step; each model runs once per step at which the victim
//! stops), and the oracle says dead only for a participant that stopped, from
//! the moment it did. The models check that no value arrives twice, that
//! nothing but the dead participant's own value is lost, and that the ring
//! goes on. Each of these tests fails when the repair ignores liveness, when
//! a lost claim's intent is not withdrawn, when the skip is not freed, when a
//! repair is a store rather than a compare-and-swap, or when a candidate claim
//! is not looked at (each mutation tried once). What they do not catch: the
//! Release on the intent store and on the claim's compare-and-swap made
//! Relaxed. loom 0.7 never lets the repairer read the stale intent that
//! allows (a thread that loads a word before its compare-and-swap on it hides
//! the stale read from loom's exploration; reproduced outside this crate), and
//! its compare-and-swap always reads the latest value, so those two orderings
//! rest on the argument given on `claimer_is_dead`.
//! Run with
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p shm-typed --lib --release tests::loom
//! ```

use std::cell::Cell;
use std::sync::atomic::Ordering;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64};
use loom::sync::Arc;
use loom::thread;

use crate::ring::protocol::{
    intent, mpmc_pop, mpmc_push, mpmc_repair, skip_mark, Cells, Mailbox, Participants, Pop, Push,
    SequencedCells, SpscConsumer, SpscProducer, Word64, POPPING, PUSHING,
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

/// The SPSC mailbox (`protocol::Mailbox`) over loom's atomics, off when
/// `ON` is false (a ring whose type does not fit). The value is kept in two
/// words, `v` and `!v`, so that a torn read (one word old, one new) shows:
/// `take` returns [`TORN`] for it, which no model sends. The words carry the
/// value marked [`FROM_MAILBOX`], so that a model can count the pops the
/// mailbox served, and show that it checked that path at all.
struct LoomMailbox<const ON: bool> {
    stamp: AtomicU64,
    words: [AtomicU64; 2],
}

const TORN: u64 = u64::MAX;
/// Set in a value the mailbox hands out; no model sends a value with it.
const FROM_MAILBOX: u64 = 1 << 40;

impl<const ON: bool> Mailbox<u64> for LoomMailbox<ON> {
    const ENABLED: bool = ON;
    type Stamp = AtomicU64;

    fn stamp(&self) -> &AtomicU64 {
        &self.stamp
    }

    fn put(&self, value: &u64) {
        let marked = *value | FROM_MAILBOX;
        self.words[0].store(marked, Ordering::Relaxed);
        self.words[1].store(!marked, Ordering::Relaxed);
    }

    fn take(&self) -> u64 {
        let value = self.words[0].load(Ordering::Relaxed);
        if self.words[1].load(Ordering::Relaxed) == !value {
            value
        } else {
            TORN
        }
    }

    fn fence_release(&self) {
        loom::sync::atomic::fence(Ordering::Release);
    }

    fn fence_acquire(&self) {
        loom::sync::atomic::fence(Ordering::Acquire);
    }
}

/// The SPSC ring's shared state: `tail`, `head`, the cells and the mailbox
/// (on when `MAILBOX`); and, outside the model, a count of the pops the
/// mailbox served, over all of a model's executions.
struct Spsc<const MAILBOX: bool> {
    tail: AtomicU64,
    head: AtomicU64,
    cells: LoomCells,
    mailbox: LoomMailbox<MAILBOX>,
    capacity: u64,
    served: FastPops,
}

/// Pops the mailbox served, counted across a model's executions (a `std`
/// atomic: loom does not see it).
type FastPops = std::sync::Arc<std::sync::atomic::AtomicUsize>;

/// Checks, after `loom::model`, that the mailbox served pops in some
/// execution if it was on, and in none if it was off: a model whose mailbox
/// path were never taken would pass without checking it.
fn assert_served(mailbox: bool, served: &FastPops) {
    let served = served.load(Ordering::Relaxed);
    if mailbox {
        assert!(served > 0, "no execution took the mailbox path");
    } else {
        assert_eq!(served, 0, "the mailbox served pops while off");
    }
}

impl<const MAILBOX: bool> Spsc<MAILBOX> {
    fn new(capacity: u64, served: &FastPops) -> Arc<Spsc<MAILBOX>> {
        Arc::new(Spsc {
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            cells: LoomCells::new(capacity),
            mailbox: LoomMailbox {
                stamp: AtomicU64::new(0),
                words: [AtomicU64::new(0), AtomicU64::new(!0)],
            },
            capacity,
            served: served.clone(),
        })
    }

    fn push(&self, producer: &mut SpscProducer, value: u64) -> bool {
        match producer.push(
            &self.head,
            &self.tail,
            &self.cells,
            &self.mailbox,
            self.capacity,
            value,
        ) {
            Push::Done => true,
            Push::Full(_) => false,
            Push::Broken(_, what) => panic!("a correct consumer looked impossible: {what:?}"),
        }
    }

    fn pop(&self, consumer: &mut SpscConsumer) -> Option<u64> {
        match consumer.pop(
            &self.head,
            &self.tail,
            &self.cells,
            &self.mailbox,
            self.capacity,
        ) {
            Pop::Value(TORN) => Some(TORN),
            Pop::Value(value) if value & FROM_MAILBOX != 0 => {
                self.served.fetch_add(1, Ordering::Relaxed);
                Some(value & !FROM_MAILBOX)
            }
            Pop::Value(value) => Some(value),
            Pop::Empty => None,
            Pop::Broken(what) => panic!("a correct producer looked impossible: {what:?}"),
        }
    }

    /// The batch paths (`push_slice`/`write_chunk`): `free` for all of
    /// `values`, then one `publish`. Whether there was room.
    fn push_batch(&self, producer: &mut SpscProducer, values: &[u64]) -> bool {
        let count = values.len() as u64;
        if producer.free(&self.head, self.capacity, count).unwrap() < count {
            return false;
        }
        for (offset, value) in (0..).zip(values) {
            // SAFETY: `free` said these positions are free.
            unsafe { self.cells.write(producer.tail + offset, *value) };
        }
        producer.publish(&self.tail, count);
        true
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

/// One by one, `count` values through a ring of `capacity`: each arrives
/// once, in order, untorn.
fn one_by_one<const MAILBOX: bool>(capacity: u64, count: u64) {
    let served = FastPops::default();
    let counting = served.clone();
    loom::model(move || {
        let ring = Spsc::<MAILBOX>::new(capacity, &counting);
        let sending = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut producer = FRESH_PRODUCER;
                for value in 1..=count {
                    while !ring.push(&mut producer, value) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut consumer = FRESH_CONSUMER;
        let mut received = Vec::new();
        while received.len() < count as usize {
            match ring.pop(&mut consumer) {
                Some(value) => received.push(value),
                None => thread::yield_now(),
            }
        }
        sending.join().unwrap();
        assert_eq!(received, (1..=count).collect::<Vec<_>>());
    });
    assert_served(MAILBOX, &served);
}

#[test]
fn spsc_values_arrive_once_in_order_without_races() {
    one_by_one::<false>(2, 3);
}

/// The mailbox path: a consumer that has caught up takes the value from the
/// mailbox while the producer may be rewriting it for the next push.
#[test]
fn spsc_mailbox_values_arrive_once_in_order_untorn() {
    one_by_one::<true>(2, 3);
}

/// One-by-one pushes around a batch (which does not touch the mailbox): a
/// stale stamp must not hand the consumer an old value for a new position.
#[test]
fn spsc_mailbox_with_batches_between_arrives_in_order() {
    let served = FastPops::default();
    let counting = served.clone();
    loom::model(move || {
        let ring = Spsc::<true>::new(4, &counting);
        let sending = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut producer = FRESH_PRODUCER;
                while !ring.push(&mut producer, 1) {
                    thread::yield_now();
                }
                while !ring.push_batch(&mut producer, &[2, 3]) {
                    thread::yield_now();
                }
                while !ring.push(&mut producer, 4) {
                    thread::yield_now();
                }
            })
        };
        let mut consumer = FRESH_CONSUMER;
        let mut received = Vec::new();
        while received.len() < 4 {
            match ring.pop(&mut consumer) {
                Some(value) => received.push(value),
                None => thread::yield_now(),
            }
        }
        sending.join().unwrap();
        assert_eq!(received, [1, 2, 3, 4]);
    });
    assert_served(true, &served);
}

/// The batch paths (`push_slice`/`write_chunk` and `pop_into`/`read_chunk`):
/// `free` and `available` for two positions, then one `publish`/`release` of
/// both.
#[test]
fn spsc_batches_of_two_arrive_whole_without_races() {
    loom::model(|| {
        let ring = Spsc::<true>::new(2, &FastPops::default());
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

/// A producer that stops at any step of a one-by-one push (slot, emptied
/// stamp, fence, value words, `tail`, stamp), and a successor that starts
/// from the words as `SpscRing::producer` does (after the victim is gone: a
/// claim is taken over only from a dead claimer) and pushes on, while the
/// consumer pops throughout: the victim's value arrives at most once (surely
/// if its push returned), whole, and everything else in order.
#[test]
fn spsc_a_producer_dying_at_any_step_of_a_push_and_its_successor() {
    // A push takes at most 8 steps; 10 lets the victim finish too.
    for steps in 0..=10 {
        let served = FastPops::default();
        let counting = served.clone();
        loom::model(move || {
            let ring = Spsc::<true>::new(2, &counting);
            let producing = {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut producer = FRESH_PRODUCER;
                    while !ring.push(&mut producer, 1) {
                        thread::yield_now();
                    }
                    let dead = AtomicBool::new(false);
                    let fate = Fate {
                        left: Cell::new(steps),
                        stopped: Cell::new(false),
                        dead: &dead,
                    };
                    let pushed = ring.push_dying(&mut producer, 2, &fate);
                    let mut successor = SpscProducer {
                        tail: ring.tail.load(Ordering::Acquire),
                        cached_head: ring.head.load(Ordering::Acquire),
                    };
                    while !ring.push(&mut successor, 3) {
                        thread::yield_now();
                    }
                    pushed
                })
            };
            let mut consumer = FRESH_CONSUMER;
            let mut received = Vec::new();
            while received.last() != Some(&3) {
                match ring.pop(&mut consumer) {
                    Some(value) => received.push(value),
                    None => thread::yield_now(),
                }
            }
            let pushed = producing.join().unwrap();
            assert!(
                received == [1, 2, 3] || (!pushed && received == [1, 3]),
                "{steps} steps: received {received:?}, the victim's push returned: {pushed}"
            );
            assert_eq!(
                ring.pop(&mut consumer),
                None,
                "{steps} steps: a value after the last"
            );
        });
    }
}

/// One-by-one pops mixed with chunk reads (`available`, the cells, one
/// `release`), against one-by-one pushes: a pop after a chunk must not take
/// a mailbox value the chunk already took, nor a chunk one the mailbox gave.
#[test]
fn spsc_pops_mixed_with_chunk_reads_take_each_value_once() {
    let served = FastPops::default();
    let counting = served.clone();
    loom::model(move || {
        let ring = Spsc::<true>::new(2, &counting);
        let producing = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut producer = FRESH_PRODUCER;
                for value in 1..=4 {
                    while !ring.push(&mut producer, value) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut consumer = FRESH_CONSUMER;
        let mut received = Vec::new();
        let mut chunk = false;
        while received.len() < 4 {
            if chunk {
                let available = consumer.available(&ring.tail, ring.capacity, 2).unwrap();
                for offset in 0..available {
                    // SAFETY: `available` said these positions are published.
                    received.push(unsafe { ring.cells.read(consumer.head + offset) });
                }
                if available > 0 {
                    consumer.release(&ring.head, available);
                    chunk = false;
                } else {
                    thread::yield_now();
                }
            } else {
                match ring.pop(&mut consumer) {
                    Some(value) => {
                        received.push(value);
                        chunk = true;
                    }
                    None => thread::yield_now(),
                }
            }
        }
        producing.join().unwrap();
        assert_eq!(received, [1, 2, 3, 4]);
    });
    assert_served(true, &served);
}

/// A mailbox as a dying producer sees it (see [`Fate`]).
struct DyingMailbox<'a> {
    stamp: DyingWord<'a>,
    mailbox: &'a LoomMailbox<true>,
    fate: &'a Fate<'a>,
}

impl<'a> Mailbox<u64> for DyingMailbox<'a> {
    const ENABLED: bool = true;
    type Stamp = DyingWord<'a>;

    fn stamp(&self) -> &DyingWord<'a> {
        &self.stamp
    }

    fn put(&self, value: &u64) {
        let marked = *value | FROM_MAILBOX;
        for (word, value) in self.mailbox.words.iter().zip([marked, !marked]) {
            if self.fate.step() {
                word.store(value, Ordering::Relaxed);
            }
        }
    }

    fn take(&self) -> u64 {
        unreachable!("a producer does not take")
    }

    fn fence_release(&self) {
        if !self.fate.stopped.get() {
            loom::sync::atomic::fence(Ordering::Release);
        }
    }

    fn fence_acquire(&self) {
        unreachable!("a producer does not take")
    }
}

/// Cells as a dying producer sees them (see [`Fate`]).
struct DyingCells<'a> {
    cells: &'a LoomCells,
    fate: &'a Fate<'a>,
}

impl Cells<u64> for DyingCells<'_> {
    unsafe fn write(&self, position: u64, value: u64) {
        if self.fate.step() {
            // SAFETY: as the caller's.
            unsafe { self.cells.write(position, value) }
        }
    }

    unsafe fn read(&self, _position: u64) -> u64 {
        unreachable!("a producer does not read cells")
    }
}

impl Spsc<true> {
    /// A one-by-one push by a producer that stops after `fate`'s steps:
    /// whether it returned having pushed.
    fn push_dying(&self, producer: &mut SpscProducer, value: u64, fate: &Fate<'_>) -> bool {
        let head = DyingWord {
            word: &self.head,
            fate,
        };
        let tail = DyingWord {
            word: &self.tail,
            fate,
        };
        let cells = DyingCells {
            cells: &self.cells,
            fate,
        };
        let mailbox = DyingMailbox {
            stamp: DyingWord {
                word: &self.mailbox.stamp,
                fate,
            },
            mailbox: &self.mailbox,
            fate,
        };
        let done = loop {
            match producer.push(&head, &tail, &cells, &mailbox, self.capacity, value) {
                Push::Done => break true,
                Push::Full(_) if fate.stopped.get() => break false,
                Push::Full(_) => thread::yield_now(),
                Push::Broken(..) => break false,
            }
        };
        done && !fate.stopped.get()
    }
}

/// The participants table of the MPMC model: each record's owner word and
/// seal (written once, before the model's threads start: registration is not
/// modelled) and intent word, and the oracle.
struct Table {
    owners: Vec<AtomicU64>,
    seals: Vec<AtomicU64>,
    intents: Vec<AtomicU64>,
    /// The liveness oracle: set, with Release, by a participant at the moment
    /// it stops; read with Acquire, as the kernel's word that a process is
    /// gone comes after everything it did.
    dead: Vec<AtomicBool>,
}

impl Table {
    fn new(records: usize) -> Table {
        // Record i names pid i + 1, generation 1, sealed.
        let owner = |record: usize| (1u64 << 32) | (record as u64 + 1);
        Table {
            owners: (0..records).map(|r| AtomicU64::new(owner(r))).collect(),
            seals: (0..records).map(|r| AtomicU64::new(owner(r))).collect(),
            intents: (0..records).map(|_| AtomicU64::new(0)).collect(),
            dead: (0..records).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

/// The MPMC ring's shared state: the two claim positions, the sequenced
/// cells and the participants table.
struct Mpmc {
    enqueue: AtomicU64,
    dequeue: AtomicU64,
    sequences: Vec<AtomicU64>,
    cells: LoomCells,
    capacity: u64,
    table: Table,
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

impl Participants for Mpmc {
    type Word = AtomicU64;

    fn records(&self) -> usize {
        self.table.owners.len()
    }

    fn owner(&self, record: usize) -> &AtomicU64 {
        &self.table.owners[record]
    }

    fn seal(&self, record: usize) -> &AtomicU64 {
        &self.table.seals[record]
    }

    fn intent(&self, record: usize) -> &AtomicU64 {
        &self.table.intents[record]
    }

    fn is_dead(&self, record: usize, _owner: u64) -> bool {
        self.table.dead[record].load(Ordering::Acquire)
    }
}

impl Mpmc {
    fn new(capacity: u64, records: usize) -> Arc<Mpmc> {
        Arc::new(Mpmc {
            enqueue: AtomicU64::new(0),
            dequeue: AtomicU64::new(0),
            // As `MpmcRing::initial_sequences`: cell i is free for position i.
            sequences: (0..capacity).map(AtomicU64::new).collect(),
            cells: LoomCells::new(capacity),
            capacity,
            table: Table::new(records),
        })
    }

    /// Pushes as the participant of `record`.
    fn push(&self, record: usize, value: u64) -> bool {
        match mpmc_push(
            &self.enqueue,
            self,
            &self.table.intents[record],
            value,
            u32::MAX,
        ) {
            Push::Done => true,
            Push::Full(_) => false,
            Push::Broken(..) => panic!("gave up"),
        }
    }

    /// Pops as the participant of `record`.
    fn pop(&self, record: usize) -> Option<u64> {
        match mpmc_pop(
            &self.dequeue,
            self,
            &self.table.intents[record],
            self.capacity,
            u32::MAX,
        ) {
            Pop::Value(value) => Some(value),
            Pop::Empty => None,
            Pop::Broken(_) => panic!("gave up"),
        }
    }

    /// What a waiter does before it sleeps: repairs a dead participant's claim.
    fn repair(&self) -> u32 {
        mpmc_repair(&self.enqueue, &self.dequeue, self, self.capacity, self)
    }

    /// Pushes, repairing and yielding while the ring is full, as a blocking
    /// push does: after a repair it tries again at once.
    fn push_waiting(&self, record: usize, value: u64) {
        while !self.push(record, value) {
            if self.repair() == 0 {
                thread::yield_now();
            }
        }
    }

    /// Pops one value, repairing and yielding while the ring is empty (after
    /// a repair it tries again at once).
    fn pop_one(&self, record: usize) -> u64 {
        loop {
            if let Some(value) = self.pop(record) {
                return value;
            }
            if self.repair() == 0 {
                thread::yield_now();
            }
        }
    }

    /// Pops what is left, repairing until nothing is stuck.
    fn drain(&self, record: usize, into: &mut Vec<u64>) {
        loop {
            match self.pop(record) {
                Some(value) => into.push(value),
                None if self.repair() == 0 => return,
                None => {}
            }
        }
    }
}

/// How far a dying participant gets: `left` more steps, then it stops for
/// good. At the step it does not take it tells the oracle it is dead; from
/// then on its loads read 0 and its stores and compare-and-swaps do nothing,
/// without touching the model's memory, so the rest of its protocol call
/// (which it runs to the end, bounded by its retry limit) is invisible to
/// everyone else: exactly a process that stopped there.
struct Fate<'a> {
    left: Cell<u32>,
    stopped: Cell<bool>,
    dead: &'a AtomicBool,
}

impl<'a> Fate<'a> {
    fn new(ring: &'a Mpmc, record: usize, steps: u32) -> Fate<'a> {
        Fate {
            left: Cell::new(steps),
            stopped: Cell::new(false),
            dead: &ring.table.dead[record],
        }
    }

    /// Whether the next step happens.
    fn step(&self) -> bool {
        if self.stopped.get() {
            return false;
        }
        match self.left.get() {
            0 => {
                self.stopped.set(true);
                self.dead.store(true, Ordering::Release);
                false
            }
            left => {
                self.left.set(left - 1);
                true
            }
        }
    }
}

/// A word as a dying participant sees it.
struct DyingWord<'a> {
    word: &'a AtomicU64,
    fate: &'a Fate<'a>,
}

impl Word64 for DyingWord<'_> {
    fn load(&self, order: Ordering) -> u64 {
        if self.fate.step() {
            self.word.load(order)
        } else {
            0
        }
    }

    fn store(&self, value: u64, order: Ordering) {
        if self.fate.step() {
            self.word.store(value, order)
        }
    }

    fn compare_exchange_weak(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        if self.fate.step() {
            self.word
                .compare_exchange_weak(current, new, success, failure)
        } else {
            Err(0)
        }
    }

    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        if self.fate.step() {
            self.word.compare_exchange(current, new, success, failure)
        } else {
            Err(0)
        }
    }
}

/// The ring as a dying participant sees it.
struct Dying<'a> {
    ring: &'a Mpmc,
    fate: &'a Fate<'a>,
    sequences: Vec<DyingWord<'a>>,
}

impl<'a> Dying<'a> {
    fn new(ring: &'a Mpmc, fate: &'a Fate<'a>) -> Dying<'a> {
        Dying {
            ring,
            fate,
            sequences: ring
                .sequences
                .iter()
                .map(|word| DyingWord { word, fate })
                .collect(),
        }
    }

    fn word(&self, word: &'a AtomicU64) -> DyingWord<'a> {
        DyingWord {
            word,
            fate: self.fate,
        }
    }

    /// Pushes as the participant of `record`; `true` if the push returned
    /// `Done` (a participant that stopped never returns that).
    fn push(&self, record: usize, value: u64) -> bool {
        let enqueue = self.word(&self.ring.enqueue);
        let intent = self.word(&self.ring.table.intents[record]);
        matches!(mpmc_push(&enqueue, self, &intent, value, 4), Push::Done)
            && !self.fate.stopped.get()
    }

    /// Pops as the participant of `record`: the value if the pop returned one
    /// while the participant was alive.
    fn pop(&self, record: usize) -> Option<u64> {
        let dequeue = self.word(&self.ring.dequeue);
        let intent = self.word(&self.ring.table.intents[record]);
        match mpmc_pop(&dequeue, self, &intent, self.ring.capacity, 4) {
            Pop::Value(value) if !self.fate.stopped.get() => Some(value),
            _ => None,
        }
    }
}

impl Cells<u64> for Dying<'_> {
    unsafe fn write(&self, position: u64, value: u64) {
        if self.fate.step() {
            // SAFETY: forwarded; same contract.
            unsafe { self.ring.cells.write(position, value) }
        }
    }

    unsafe fn read(&self, position: u64) -> u64 {
        if self.fate.step() {
            // SAFETY: forwarded; same contract.
            unsafe { self.ring.cells.read(position) }
        } else {
            0
        }
    }
}

impl<'a> SequencedCells<u64> for Dying<'a> {
    type Sequence = DyingWord<'a>;

    fn sequence(&self, position: u64) -> &DyingWord<'a> {
        &self.sequences[(position % self.ring.capacity) as usize]
    }
}

/// Steps of an uncontended push or pop: load the position, load the
/// sequence, announce, claim, the cell, the sequence. A victim given more
/// steps than that may still stop, on a retry after a lost claim.
const STEPS: u32 = 6;

#[test]
fn mpmc_two_producers_each_value_exactly_once() {
    loom::model(|| {
        let ring = Mpmc::new(2, 3);
        let producers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|value| {
                let ring = ring.clone();
                thread::spawn(move || {
                    assert!(ring.push(value as usize, value), "two cells, two values")
                })
            })
            .collect();
        let mut all = [ring.pop_one(0), ring.pop_one(0)];
        for producer in producers {
            producer.join().unwrap();
        }
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
        assert_eq!(ring.pop(0), None);
    });
}

#[test]
fn mpmc_two_consumers_each_value_exactly_once() {
    loom::model(|| {
        let ring = Mpmc::new(2, 2);
        assert!(ring.push(0, 1) && ring.push(0, 2));
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || ring.pop(1))
        };
        let mine = ring.pop(0);
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
        let ring = Mpmc::new(2, 2);
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for value in 1..=3 {
                    while !ring.push(1, value) {
                        thread::yield_now();
                    }
                }
            })
        };
        let received: Vec<u64> = (0..3).map(|_| ring.pop_one(0)).collect();
        producer.join().unwrap();
        assert_eq!(received, [1, 2, 3]);
    });
}

/// A producer that stops at any step of its push, racing a live producer
/// for the same positions, with a consumer that repairs whenever the ring
/// looks empty: the live value arrives exactly once, the victim's value at
/// most once (and surely if its push returned), and the ring takes a value
/// afterwards. Covers the dead claimer, the dead loser of a claim whose
/// intent still names the position the live one holds, and the live one
/// slow between claim and publish (never repaired).
#[test]
fn mpmc_a_producer_dying_at_any_step_costs_at_most_its_own_value() {
    for steps in 0..=STEPS + 2 {
        loom::model(move || {
            let ring = Mpmc::new(2, 3);
            let victim = {
                let ring = ring.clone();
                thread::spawn(move || {
                    let fate = Fate::new(&ring, 0, steps);
                    Dying::new(&ring, &fate).push(0, 10)
                })
            };
            let live = {
                let ring = ring.clone();
                thread::spawn(move || ring.push_waiting(1, 20))
            };
            let mut received = vec![ring.pop_one(2)];
            if received[0] != 20 {
                received.push(ring.pop_one(2));
            }
            live.join().unwrap();
            let pushed = victim.join().unwrap();
            ring.drain(2, &mut received);
            received.sort_unstable();
            let expected: &[u64] = if pushed { &[10, 20] } else { &[20] };
            assert!(
                received == expected || (!pushed && received == [10, 20]),
                "{steps} steps: received {received:?}, victim's push returned: {pushed}"
            );
            // The ring goes on: a lap later every slot takes a value again
            // (for a waiting producer, which repairs what is in its way).
            for value in [30, 31] {
                ring.push_waiting(2, value);
            }
            assert_eq!((ring.pop(2), ring.pop(2)), (Some(30), Some(31)));
        });
    }
}

/// A consumer that stops at any step of its pop, racing a live consumer for
/// the one value there is, while a live producer needs the victim's slot a
/// lap later and repairs whenever the ring looks full: every value but the
/// one the victim was taking arrives exactly once, and the producer gets
/// through. The live consumer pops once and is done: had it, after losing
/// the race, left its intent for the victim's claim standing, it would stand
/// in the way of that claim's repair for good.
#[test]
fn mpmc_a_consumer_dying_at_any_step_costs_at_most_the_value_it_took() {
    for steps in 0..=STEPS + 2 {
        loom::model(move || {
            let ring = Mpmc::new(2, 3);
            assert!(ring.push(1, 10));
            let victim = {
                let ring = ring.clone();
                thread::spawn(move || {
                    let fate = Fate::new(&ring, 0, steps);
                    Dying::new(&ring, &fate).pop(0)
                })
            };
            let consumer = {
                let ring = ring.clone();
                thread::spawn(move || ring.pop(2))
            };
            for value in [20, 30] {
                ring.push_waiting(1, value);
            }
            let mut received: Vec<u64> = consumer.join().unwrap().into_iter().collect();
            let taken = victim.join().unwrap();
            ring.drain(1, &mut received);
            received.extend(taken);
            received.sort_unstable();
            let mut unique = received.clone();
            unique.dedup();
            assert_eq!(unique, received, "{steps} steps: a value arrived twice");
            let lost = [10, 20, 30]
                .iter()
                .filter(|v| !received.contains(v))
                .count();
            assert!(
                received.iter().all(|v| [10, 20, 30].contains(v))
                    && (lost == 0 || (lost == 1 && taken.is_none())),
                "{steps} steps: received {received:?}, the victim took {taken:?}"
            );
            // The ring goes on, for a waiting producer: the victim's slot, if
            // it still holds it, is where the second value goes.
            for value in [40, 41] {
                ring.push_waiting(1, value);
            }
            assert_eq!((ring.pop(1), ring.pop(1)), (Some(40), Some(41)));
        });
    }
}

/// A producer that died between claim and publish, found by two waiters at
/// once while a later value waits behind it: exactly one repair, the later
/// value delivered once, the skipped slot passed once.
#[test]
fn mpmc_two_waiters_repair_a_dead_producers_slot_exactly_once() {
    loom::model(|| {
        let ring = Mpmc::new(2, 3);
        // Record 0 announced position 0, claimed it and died.
        ring.table.intents[0].store(intent(PUSHING, 0), Ordering::Relaxed);
        ring.enqueue.store(1, Ordering::Relaxed);
        ring.table.dead[0].store(true, Ordering::Relaxed);
        assert!(ring.push(1, 7));
        let waiters: Vec<_> = [1usize, 2]
            .into_iter()
            .map(|record| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let repaired = ring.repair();
                    (repaired, ring.pop(record))
                })
            })
            .collect();
        let outcomes: Vec<(u32, Option<u64>)> = waiters
            .into_iter()
            .map(|waiter| waiter.join().unwrap())
            .collect();
        assert_eq!(outcomes.iter().map(|o| o.0).sum::<u32>(), 1, "{outcomes:?}");
        let mut received: Vec<u64> = outcomes.iter().filter_map(|o| o.1).collect();
        ring.drain(1, &mut received);
        assert_eq!(received, [7], "{outcomes:?}");
        assert_eq!(ring.dequeue.load(Ordering::Relaxed), 2);
    });
}

/// A consumer that died after claiming a skipped slot (before freeing it),
/// with no consumer waiting: the producers that need the slot a lap later
/// (two at once) free it exactly once and both get their values in.
#[test]
fn mpmc_a_consumer_dead_on_a_skipped_slot_is_repaired_by_the_next_producer() {
    loom::model(|| {
        let ring = Mpmc::new(2, 3);
        // Position 0 was skipped (its producer died), then claimed by record
        // 0, which died before freeing it.
        ring.sequences[0].store(skip_mark(0), Ordering::Relaxed);
        ring.enqueue.store(1, Ordering::Relaxed);
        ring.dequeue.store(1, Ordering::Relaxed);
        ring.table.intents[0].store(intent(POPPING, 0), Ordering::Relaxed);
        ring.table.dead[0].store(true, Ordering::Relaxed);
        let other = {
            let ring = ring.clone();
            thread::spawn(move || ring.push_waiting(1, 5))
        };
        ring.push_waiting(2, 6);
        other.join().unwrap();
        let mut received = [ring.pop(2).unwrap(), ring.pop(2).unwrap()];
        received.sort_unstable();
        assert_eq!(received, [5, 6]);
        assert_eq!(ring.pop(2), None);
    });
}

/// A producer that announced position 0, lost the claim to a live producer
/// and died before withdrawing: its stale intent names the live producer's
/// claim. A waiter that looks at any moment must never repair that claim
/// (the live producer's intent, published with its claim, is there to see),
/// and the value arrives.
#[test]
fn mpmc_a_dead_losers_intent_never_gets_a_live_claim_repaired() {
    loom::model(|| {
        let ring = Mpmc::new(2, 3);
        ring.table.intents[0].store(intent(PUSHING, 0), Ordering::Relaxed);
        ring.table.dead[0].store(true, Ordering::Relaxed);
        let live = {
            let ring = ring.clone();
            thread::spawn(move || ring.push_waiting(1, 20))
        };
        assert_eq!(ring.repair(), 0, "a live producer's claim was repaired");
        assert_eq!(ring.pop_one(2), 20);
        live.join().unwrap();
        assert_eq!(ring.pop(2), None);
    });
}
