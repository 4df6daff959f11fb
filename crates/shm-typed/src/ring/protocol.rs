//! The two ring protocols, written once over the memory they run on.
//!
//! [`SpscRing`](crate::SpscRing) and [`MpmcRing`](crate::MpmcRing) run these
//! functions over atomics made with `AtomicU64::from_ptr` on the segment and
//! over raw slot pointers; the loom tests (`loom_tests.rs`, `--cfg loom`) run
//! the very same functions over loom's atomics and `UnsafeCell`s, so loom
//! checks the orderings and the slot accesses of the code that ships, not of a
//! restatement. Everything here is `#[inline(always)]` and monomorphized: the
//! abstraction costs nothing on the hot path.
//!
//! What the protocols do not cover stays in the ring types: claims, sleeping
//! and waking, error messages that name the segment.

use std::sync::atomic::Ordering;

/// A 64-bit atomic word: `std`'s, or loom's in the loom tests.
pub(crate) trait Word64 {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, value: u64, order: Ordering);
    fn compare_exchange_weak(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
}

/// Implements [`Word64`] for an atomic type with `std`'s method names (loom's
/// `AtomicU64` has them too; `loom_tests.rs` uses this).
macro_rules! impl_word64 {
    ($atomic:ty) => {
        impl $crate::ring::protocol::Word64 for $atomic {
            #[inline(always)]
            fn load(&self, order: std::sync::atomic::Ordering) -> u64 {
                // The inherent method (inherent methods win over trait ones).
                self.load(order)
            }

            #[inline(always)]
            fn store(&self, value: u64, order: std::sync::atomic::Ordering) {
                self.store(value, order)
            }

            #[inline(always)]
            fn compare_exchange_weak(
                &self,
                current: u64,
                new: u64,
                success: std::sync::atomic::Ordering,
                failure: std::sync::atomic::Ordering,
            ) -> Result<u64, u64> {
                self.compare_exchange_weak(current, new, success, failure)
            }
        }
    };
}
#[cfg(all(test, loom))]
pub(crate) use impl_word64;

impl_word64!(std::sync::atomic::AtomicU64);

/// The value cells of a ring: the cell for `position` is `position % capacity`.
pub(crate) trait Cells<T> {
    /// Writes the cell for `position`.
    ///
    /// # Safety
    ///
    /// The protocol must give the caller that cell alone: no one reads or writes
    /// it until the caller publishes it.
    unsafe fn write(&self, position: u64, value: T);

    /// Reads the cell for `position`.
    ///
    /// # Safety
    ///
    /// The cell must be published to the caller, and a peer that follows the
    /// protocol does not write it until the caller releases it. (A peer that does
    /// not follow it may: the shipping implementation reads volatile bytes, and
    /// any bytes are a valid `T: Pod`.)
    unsafe fn read(&self, position: u64) -> T;
}

/// Value cells that each carry a sequence word (the MPMC ring's slots).
pub(crate) trait SequencedCells<T>: Cells<T> {
    type Sequence: Word64;

    /// The sequence word of the cell for `position`.
    fn sequence(&self, position: u64) -> &Self::Sequence;
}

/// The outcome of pushing one value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push<T, E> {
    /// The value is in the ring and published.
    Done,
    /// No room; the value comes back.
    Full(T),
    /// The shared state is impossible (a peer broke the protocol); the value
    /// comes back.
    Broken(T, E),
}

/// The outcome of popping one value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pop<T, E> {
    Value(T),
    Empty,
    /// The shared state is impossible (a peer broke the protocol).
    Broken(E),
}

/// An index read from the segment that the SPSC protocol rules out: the other
/// side's position went from `was` to `now` while ours is `own`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Impossible {
    pub(crate) was: u64,
    pub(crate) now: u64,
    pub(crate) own: u64,
}

/// The producer's half of the SPSC protocol. `tail` (the next position to
/// write) lives in the shared word only we write; `cached_head` is the
/// consumer's `head` as we last read it. Positions only grow; `tail - head` is
/// the fill level.
///
/// The arithmetic below is plain (not wrapping), and cannot overflow in any
/// build, because of three invariants that start with validated positions
/// (the ring type checks `head <= tail <= head + capacity` and
/// `head + capacity <= u64::MAX` before it makes one of these) and that each
/// function keeps:
///
/// - `cached_head <= tail <= cached_head + capacity`;
/// - `cached_head + capacity <= u64::MAX`: a `head` that comes within
///   `capacity` of the top is refused as [`Impossible`] (a ring would need
///   centuries of pushes to get there; only a peer writing nonsense can);
/// - a publish of `count` follows a `free` that returned at least `count`, so
///   `tail + count <= cached_head + capacity`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpscProducer {
    pub(crate) tail: u64,
    pub(crate) cached_head: u64,
}

impl SpscProducer {
    /// Free slots, reloading the consumer's `head` (Acquire, pairing with its
    /// Release in [`SpscConsumer::release`]) only when fewer than `needed` are
    /// free by the cached value. The value read is validated: the consumer
    /// never goes back, never passes our tail, and never comes within
    /// `capacity` of `u64::MAX` (past that, our tail could not advance).
    #[inline(always)]
    pub(crate) fn free(
        &mut self,
        head: &impl Word64,
        capacity: u64,
        needed: u64,
    ) -> Result<u64, Impossible> {
        // No overflow: cached_head <= tail <= cached_head + capacity.
        let free = capacity - (self.tail - self.cached_head);
        if free >= needed {
            return Ok(free);
        }
        let now = head.load(Ordering::Acquire);
        if now < self.cached_head || now > self.tail || now.checked_add(capacity).is_none() {
            return Err(Impossible {
                was: self.cached_head,
                now,
                own: self.tail,
            });
        }
        self.cached_head = now;
        Ok(capacity - (self.tail - now))
    }

    /// Publishes the next `count` positions (written before this call): the
    /// Release store makes their cells visible to a consumer that loads `tail`
    /// with Acquire.
    #[inline(always)]
    pub(crate) fn publish(&mut self, tail: &impl Word64, count: u64) {
        // No overflow: tail + count <= cached_head + capacity <= u64::MAX.
        self.tail += count;
        tail.store(self.tail, Ordering::Release);
    }

    /// Pushes one value.
    #[inline(always)]
    pub(crate) fn push<T>(
        &mut self,
        head: &impl Word64,
        tail: &impl Word64,
        cells: &impl Cells<T>,
        capacity: u64,
        value: T,
    ) -> Push<T, Impossible> {
        match self.free(head, capacity, 1) {
            Ok(0) => Push::Full(value),
            Ok(_) => {
                // SAFETY: position `tail` is free (tail - head < capacity): the
                // consumer does not read it until we publish it, and we are the
                // only producer.
                unsafe { cells.write(self.tail, value) };
                self.publish(tail, 1);
                Push::Done
            }
            Err(impossible) => Push::Broken(value, impossible),
        }
    }
}

/// The consumer's half of the SPSC protocol: `head` (the next position to
/// read; we are the only writer of its shared word) and the producer's `tail`
/// as last read.
///
/// Its arithmetic cannot overflow in any build: `head <= cached_tail` holds
/// from the validated start and after every reload (a `tail` that goes back
/// is [`Impossible`]), and a release of `count` follows an `available` that
/// returned at least `count`, so `head + count <= cached_tail`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpscConsumer {
    pub(crate) head: u64,
    pub(crate) cached_tail: u64,
}

impl SpscConsumer {
    /// Values waiting, reloading the producer's `tail` (Acquire, pairing with
    /// its Release in [`SpscProducer::publish`]) only when fewer than `wanted`
    /// are known. The value read is validated: the producer never goes back
    /// and is never more than `capacity` ahead of us.
    #[inline(always)]
    pub(crate) fn available(
        &mut self,
        tail: &impl Word64,
        capacity: u64,
        wanted: u64,
    ) -> Result<u64, Impossible> {
        // No overflow: head <= cached_tail.
        let known = self.cached_tail - self.head;
        if known >= wanted {
            return Ok(known);
        }
        let now = tail.load(Ordering::Acquire);
        // No overflow: now >= cached_tail >= head once the first test passed.
        if now < self.cached_tail || now - self.head > capacity {
            return Err(Impossible {
                was: self.cached_tail,
                now,
                own: self.head,
            });
        }
        self.cached_tail = now;
        Ok(now - self.head)
    }

    /// Releases the next `count` positions (read before this call) to the
    /// producer: the Release store orders our reads of their cells before a
    /// producer that loads `head` with Acquire writes them again.
    #[inline(always)]
    pub(crate) fn release(&mut self, head: &impl Word64, count: u64) {
        // No overflow: head + count <= cached_tail.
        self.head += count;
        head.store(self.head, Ordering::Release);
    }

    /// Pops one value.
    #[inline(always)]
    pub(crate) fn pop<T>(
        &mut self,
        head: &impl Word64,
        tail: &impl Word64,
        cells: &impl Cells<T>,
        capacity: u64,
    ) -> Pop<T, Impossible> {
        match self.available(tail, capacity, 1) {
            Ok(0) => Pop::Empty,
            Ok(_) => {
                // SAFETY: position `head` is published (head < tail, read with
                // Acquire), and the producer does not write it again until we
                // release it.
                let value = unsafe { cells.read(self.head) };
                self.release(head, 1);
                Pop::Value(value)
            }
            Err(impossible) => Pop::Broken(impossible),
        }
    }
}

/// Pushes one value into an MPMC ring (Dmitry Vyukov's bounded queue): the
/// cell for position `p` is free when its sequence is `p` and holds the value
/// for `p` when it is `p + 1`. Positions and sequences count modulo 2^64 on
/// purpose: every sum is `wrapping_add` and every comparison the sign of a
/// `wrapping_sub`, so a ring passes `u64::MAX` like any other position, the
/// same in debug and release builds, and no value a peer writes can make this
/// arithmetic panic. A producer claims `p` with a CAS on `enqueue`,
/// writes the value, and publishes with a Release store of `p + 1`. Gives up
/// (`Broken`) after `max_retries` lost or confused rounds, which real
/// contention never reaches and a peer writing nonsense can.
#[inline(always)]
pub(crate) fn mpmc_push<T>(
    enqueue: &impl Word64,
    cells: &impl SequencedCells<T>,
    value: T,
    max_retries: u32,
) -> Push<T, ()> {
    let mut position = enqueue.load(Ordering::Relaxed);
    let mut retries = 0u32;
    loop {
        let sequence = cells.sequence(position);
        let seen = sequence.load(Ordering::Acquire);
        let lag = seen.wrapping_sub(position) as i64;
        if lag == 0 {
            match enqueue.compare_exchange_weak(
                position,
                position.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // SAFETY: the CAS gave us position `position`, whose cell is
                    // free (its sequence is `position`, read with Acquire after
                    // the consumer of the previous lap released it); no one else
                    // touches the value until we publish.
                    unsafe { cells.write(position, value) };
                    sequence.store(position.wrapping_add(1), Ordering::Release);
                    return Push::Done;
                }
                Err(current) => position = current,
            }
        } else if lag < 0 {
            // The cell still holds the value from the previous lap: full.
            return Push::Full(value);
        } else {
            position = enqueue.load(Ordering::Relaxed);
        }
        retries += 1;
        if retries > max_retries {
            return Push::Broken(value, ());
        }
    }
}

/// Pops one value from an MPMC ring: claims position `p` with a CAS on
/// `dequeue` once its cell's sequence is `p + 1` (Acquire, pairing with the
/// producer's Release), copies the value out, and frees the cell for the next
/// lap with a Release store of `p + capacity`.
#[inline(always)]
pub(crate) fn mpmc_pop<T>(
    dequeue: &impl Word64,
    cells: &impl SequencedCells<T>,
    capacity: u64,
    max_retries: u32,
) -> Pop<T, ()> {
    let mut position = dequeue.load(Ordering::Relaxed);
    let mut retries = 0u32;
    loop {
        let sequence = cells.sequence(position);
        let seen = sequence.load(Ordering::Acquire);
        let lag = seen.wrapping_sub(position.wrapping_add(1)) as i64;
        if lag == 0 {
            match dequeue.compare_exchange_weak(
                position,
                position.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // SAFETY: the CAS gave us position `position`, published (its
                    // sequence is `position + 1`, read with Acquire); producers do
                    // not write it again until we free it.
                    let value = unsafe { cells.read(position) };
                    sequence.store(position.wrapping_add(capacity), Ordering::Release);
                    return Pop::Value(value);
                }
                Err(current) => position = current,
            }
        } else if lag < 0 {
            return Pop::Empty;
        } else {
            position = dequeue.load(Ordering::Relaxed);
        }
        retries += 1;
        if retries > max_retries {
            return Pop::Broken(());
        }
    }
}
