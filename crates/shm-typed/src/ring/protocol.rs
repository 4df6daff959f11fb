//! The two ring protocols, written once over the memory they run on.
//!
//! [`SpscRing`](crate::SpscRing) and [`MpmcRing`](crate::MpmcRing) run these
//! functions over atomics made with `AtomicU64::from_ptr` on the segment and
//! over raw slot pointers; the loom tests (`tests/loom.rs`, `--cfg loom`) run
//! the very same functions over loom's atomics and `UnsafeCell`s, so loom
//! checks the orderings and the slot accesses of the code that ships, not of a
//! restatement. Everything here is `#[inline(always)]` and monomorphized: the
//! abstraction costs nothing on the hot path.
//!
//! The MPMC part includes what lets that ring go on past a participant that
//! died holding a claim: the intent words each participant writes before a
//! claim, and the repair ([`mpmc_repair`], [`mpmc_settle`]) that a waiter runs
//! over the participants table ([`Participants`]), whose judgement of death
//! the ring type supplies (the loom tests supply an oracle).
//!
//! What the protocols do not cover stays in the ring types: side claims and
//! participant registration, sleeping and waking, error messages that name
//! the segment.

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
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
}

/// Implements [`Word64`] for an atomic type with `std`'s method names (loom's
/// `AtomicU64` has them too; `tests/loom.rs` uses this).
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

            #[inline(always)]
            fn compare_exchange(
                &self,
                current: u64,
                new: u64,
                success: std::sync::atomic::Ordering,
                failure: std::sync::atomic::Ordering,
            ) -> Result<u64, u64> {
                self.compare_exchange(current, new, success, failure)
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

/// The SPSC ring's mailbox, in the producer's `tail` line: the value of the
/// last one-by-one push and its stamp (`position + 1`; [`EMPTY_STAMP`] while
/// being rewritten). A consumer that has caught up polls the stamp and reads
/// the value from that same line, so a message costs one cache-line transfer
/// instead of two (the index line, then the slot line). The value is in its
/// slot too: the mailbox only spares reading it there. It is a seqlock whose
/// version is the stamp: the producer rewrites it at every one-by-one push
/// whatever the consumer does, and a reader keeps what it read only if the
/// stamp read before and after is the one it wanted.
pub(crate) trait Mailbox<T> {
    /// Whether this ring has a mailbox (a type too large for the line has none).
    const ENABLED: bool;
    type Stamp: Word64;

    /// The stamp word.
    fn stamp(&self) -> &Self::Stamp;
    /// Writes the value, with relaxed atomic stores.
    fn put(&self, value: &T);
    /// Reads the value, with relaxed atomic loads: possibly torn while the
    /// producer rewrites it (the stamp tells).
    fn take(&self) -> T;
    /// A Release fence (`std`'s, or loom's).
    fn fence_release(&self);
    /// An Acquire fence.
    fn fence_acquire(&self);
}

/// The stamp of a mailbox whose value is being written (or was never).
/// Positions start at 0, so every real stamp (`position + 1`) differs from it.
pub(crate) const EMPTY_STAMP: u64 = 0;

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

    /// Pushes one value: into its slot and, with a mailbox, into the mailbox
    /// (stamp emptied, value, `tail` published, then the stamp of the new
    /// position with Release, so that a consumer that sees the stamp also
    /// sees `tail` and the slot).
    #[inline(always)]
    pub(crate) fn push<T: Copy, M: Mailbox<T>>(
        &mut self,
        head: &impl Word64,
        tail: &impl Word64,
        cells: &impl Cells<T>,
        mailbox: &M,
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
                if M::ENABLED {
                    // The seqlock's writer: empty the stamp, then (ordered
                    // after it by the fence) rewrite the value.
                    mailbox.stamp().store(EMPTY_STAMP, Ordering::Relaxed);
                    mailbox.fence_release();
                    mailbox.put(&value);
                }
                self.publish(tail, 1);
                if M::ENABLED {
                    // self.tail is now position + 1, never EMPTY_STAMP.
                    mailbox.stamp().store(self.tail, Ordering::Release);
                }
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

    /// Pops one value. With a mailbox, a consumer that knows of nothing
    /// waiting first looks there: a stamp of `head + 1`, read (Acquire)
    /// before and (after an Acquire fence) after the value, means the value
    /// is position `head`'s, and `tail` has passed it (the producer stored
    /// `tail` before the stamp); `tail` is then loaded from the same line and
    /// validated as always. Otherwise, the slots as without a mailbox.
    #[inline(always)]
    pub(crate) fn pop<T, M: Mailbox<T>>(
        &mut self,
        head: &impl Word64,
        tail: &impl Word64,
        cells: &impl Cells<T>,
        mailbox: &M,
        capacity: u64,
    ) -> Pop<T, Impossible> {
        if M::ENABLED && self.cached_tail == self.head {
            // Wraps only for a head of u64::MAX (which a correct producer never
            // lets us reach), giving EMPTY_STAMP, which matches nothing.
            let wanted = self.head.wrapping_add(1);
            if wanted != EMPTY_STAMP && mailbox.stamp().load(Ordering::Acquire) == wanted {
                let value = mailbox.take();
                mailbox.fence_acquire();
                if mailbox.stamp().load(Ordering::Relaxed) == wanted {
                    // `tail` shares the stamp's line, so reading it costs
                    // nothing more, and validates as without a mailbox: it
                    // is at least `wanted` (stored before the stamp), unless
                    // a peer forged the stamp.
                    return match self.available(tail, capacity, 1) {
                        // The stamp said `wanted` was published; `tail`
                        // says not: reported as a `tail` gone back from it.
                        Ok(0) => Pop::Broken(Impossible {
                            was: wanted,
                            now: self.cached_tail,
                            own: self.head,
                        }),
                        Ok(_) => {
                            self.release(head, 1);
                            Pop::Value(value)
                        }
                        Err(impossible) => Pop::Broken(impossible),
                    };
                }
            }
        }
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

// The MPMC protocol: Dmitry Vyukov's bounded queue, plus the intent words and
// the repair that let the ring go on past a participant that died holding a
// claim (the design is argued on `MpmcRing`, the layout in
// docs/notes/mpmc-recovery.md).

/// An intent word that names no claim.
pub(crate) const IDLE: u64 = 0;
/// The operation bits (the low two) of an intent to claim a position to push.
pub(crate) const PUSHING: u64 = 1;
/// The operation bits of an intent to claim a position to pop.
pub(crate) const POPPING: u64 = 2;

/// The intent word of a claim of `position` for `operation` ([`PUSHING`] or
/// [`POPPING`]): `position << 2 | operation`. The position is kept modulo
/// 2^62: two claims 2^62 positions apart (a century at a billion operations
/// a second) read the same, which nothing here tells apart.
#[inline(always)]
pub(crate) const fn intent(operation: u64, position: u64) -> u64 {
    position << 2 | operation
}

/// The position an intent word names: of the positions it may stand for
/// (every 2^62nd), the one nearest to `near`.
#[inline(always)]
pub(crate) const fn intended_position(intent: u64, near: u64) -> u64 {
    let behind = ((near << 2).wrapping_sub(intent & !3) as i64) >> 2;
    near.wrapping_sub(behind as u64)
}

/// The sequence word of the slot of `position` once a repair has marked the
/// claim of a dead producer as skipped: `position + 1` (what a publish would
/// have stored) with the top bit flipped. Live sequence words of a slot stay
/// within a few laps of the positions in use, so this value, 2^63 away, is
/// never one of them. Both sides read a sequence that far from their position
/// as a mark ([`unmarked`]) and then as the publish it stands for: a producer
/// sees the slot as still full (or its own position as stale), a consumer at
/// the position claims it as usual, takes no value and frees the slot.
#[inline(always)]
pub(crate) const fn skip_mark(position: u64) -> u64 {
    position.wrapping_add(1) ^ (1 << 63)
}

/// A sequence `seen` in the slot of `position`, with a [`skip_mark`] turned
/// back into the publish it stands for: `(sequence, whether it was a mark)`.
/// A mark is any value more than 2^62 away from the position.
#[inline(always)]
const fn unmarked(seen: u64, position: u64) -> (u64, bool) {
    if seen.wrapping_sub(position).wrapping_add(1 << 62) >= 1 << 63 {
        (seen ^ (1 << 63), true)
    } else {
        (seen, false)
    }
}

/// Whether the claim position `next` (the enqueue or dequeue position, read
/// now) has passed `position`: modulo 2^64, by the sign of the difference.
#[inline(always)]
const fn claimed(next: u64, position: u64) -> bool {
    (next.wrapping_sub(position) as i64) > 0
}

/// The participants table of an MPMC ring, as the repair reads it: for each
/// record an owner word (pid in the low half, 0: free; a generation in the
/// high half), a seal (the owner word again, written once the record is
/// complete) and an intent word, and the one judgement of death.
pub(crate) trait Participants {
    type Word: Word64;

    /// How many records the table has.
    fn records(&self) -> usize;
    /// The owner word of `record` (`record < records()`).
    fn owner(&self, record: usize) -> &Self::Word;
    /// The seal of `record`.
    fn seal(&self, record: usize) -> &Self::Word;
    /// The intent word of `record`.
    fn intent(&self, record: usize) -> &Self::Word;
    /// Whether the participant that `owner` (just read from `record`, sealed)
    /// names is dead: definitely, never on a guess. May read the record's
    /// other words; must not be wrong in the "dead" direction.
    fn is_dead(&self, record: usize, owner: u64) -> bool;
}

/// Whether the claim that `wanted` (an intent word) describes was made by a
/// dead participant: at least one complete record announces exactly that
/// claim, and every one that does belongs to a participant judged dead.
///
/// Why that suffices, given that every participant announces each claim in its
/// own record before the claim's compare-and-swap (with Release), and that the
/// caller has seen the claim with an Acquire load of the claim position: the
/// claimer's announcement is then visible, so the claimer is among the
/// records that name `wanted`, unless it has since announced something else,
/// which it does only once it has published or freed the slot (and then the
/// Acquire load of its intent word makes that store visible to the repair's
/// compare-and-swap, which fails). Others may name the same claim because
/// their own compare-and-swap for it failed; were any of them alive, it could
/// be the claimer, so one live namer is enough to wait. A free record names
/// nothing (its last holder released it idle, or it was taken over settled),
/// nor does an unsealed one (its new holder has claimed nothing yet). A
/// record that changes hands while we read it makes the answer "not now".
#[inline]
pub(crate) fn claimer_is_dead(participants: &impl Participants, wanted: u64) -> bool {
    let mut named = false;
    for record in 0..participants.records() {
        let owner = participants.owner(record).load(Ordering::Acquire);
        if owner & crate::lock::liveness::ID_MASK == 0
            || participants.seal(record).load(Ordering::Acquire) != owner
            || participants.intent(record).load(Ordering::Acquire) != wanted
        {
            continue;
        }
        let dead = participants.is_dead(record, owner);
        if !dead || participants.owner(record).load(Ordering::Acquire) != owner {
            return false;
        }
        named = true;
    }
    named
}

/// If the slot of `position`, whose sequence word reads `seen`, holds a claim
/// for `operation` that was made (`dequeued` and `enqueued` are the claim
/// positions, read with Acquire) and not finished, the sequence its repair
/// stores: a dead producer's slot gets the [`skip_mark`]; a dead consumer's is
/// freed for the next lap, as the consumer would have done.
#[inline]
const fn stuck(
    operation: u64,
    position: u64,
    seen: u64,
    dequeued: u64,
    enqueued: u64,
    capacity: u64,
) -> Option<u64> {
    if operation == PUSHING {
        if seen == position && claimed(enqueued, position) {
            return Some(skip_mark(position));
        }
    } else if operation == POPPING
        && (seen == position.wrapping_add(1) || seen == skip_mark(position))
        && claimed(dequeued, position)
    {
        return Some(position.wrapping_add(capacity));
    }
    None
}

/// Repairs the claim of `position` for `operation` if it is stuck and its
/// claimer dead: one compare-and-swap from the very sequence seen, so that of
/// any number of repairers exactly one succeeds, and none if the claimer
/// finished after all. Whether this call repaired it.
#[inline]
fn repair_claim<T>(
    operation: u64,
    position: u64,
    (dequeued, enqueued): (u64, u64),
    cells: &impl SequencedCells<T>,
    capacity: u64,
    participants: &impl Participants,
) -> bool {
    let sequence = cells.sequence(position);
    let seen = sequence.load(Ordering::Acquire);
    match stuck(operation, position, seen, dequeued, enqueued, capacity) {
        Some(repaired) => {
            claimer_is_dead(participants, intent(operation, position))
                && sequence
                    .compare_exchange(seen, repaired, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        }
        None => false,
    }
}

/// Looks for a claim that stops the ring and repairs it if its claimer is
/// dead; returns how many claims this call repaired (0 to 2). Called by a
/// party that found the ring empty or full for a while, never on the fast
/// path.
///
/// A dead claimer stops the ring only where a party waits: consumers at the
/// dequeue position (a producer's unfinished claim of it, or the previous
/// lap's consumer that never freed its slot), producers at the enqueue
/// position (a consumer of the previous lap that never freed the slot, or a
/// producer that never published one: then consumers wait at it too). So the
/// two slots at the claim positions are all there is to look at.
pub(crate) fn mpmc_repair<T>(
    enqueue: &impl Word64,
    dequeue: &impl Word64,
    cells: &impl SequencedCells<T>,
    capacity: u64,
    participants: &impl Participants,
) -> u32 {
    // Acquire: synchronises with the claims' compare-and-swaps (Release), and
    // so with the intents announced before them.
    let dequeued = dequeue.load(Ordering::Acquire);
    let enqueued = enqueue.load(Ordering::Acquire);
    let positions = (dequeued, enqueued);
    let mut repaired = 0;
    // A producer's claim of the enqueue position minus a lap, if stuck, is
    // the dequeue position's (no consumer can have passed it), so three
    // candidates cover both waits.
    let candidates = [
        (PUSHING, dequeued),
        (POPPING, dequeued.wrapping_sub(capacity)),
        (POPPING, enqueued.wrapping_sub(capacity)),
    ];
    let count = if enqueued == dequeued { 2 } else { 3 };
    for &(operation, position) in &candidates[..count] {
        if repair_claim(
            operation,
            position,
            positions,
            cells,
            capacity,
            participants,
        ) {
            repaired += 1;
        }
    }
    repaired
}

/// Whether the claim that a dead participant's intent word `announced` names
/// is finished, repaired now, or never made: then its record may be taken
/// over without losing the evidence a later repair would need. `false` while
/// a live participant names the same claim (it may be the claimer).
pub(crate) fn mpmc_settle<T>(
    enqueue: &impl Word64,
    dequeue: &impl Word64,
    cells: &impl SequencedCells<T>,
    capacity: u64,
    participants: &impl Participants,
    announced: u64,
) -> bool {
    let operation = announced & 3;
    if operation != PUSHING && operation != POPPING {
        return true;
    }
    let dequeued = dequeue.load(Ordering::Acquire);
    let enqueued = enqueue.load(Ordering::Acquire);
    let near = if operation == PUSHING {
        enqueued
    } else {
        dequeued
    };
    let position = intended_position(announced, near);
    let seen = cells.sequence(position).load(Ordering::Acquire);
    if stuck(operation, position, seen, dequeued, enqueued, capacity).is_none() {
        return true;
    }
    repair_claim(
        operation,
        position,
        (dequeued, enqueued),
        cells,
        capacity,
        participants,
    ) || stuck(
        operation,
        position,
        cells.sequence(position).load(Ordering::Acquire),
        dequeued,
        enqueued,
        capacity,
    )
    .is_none()
}

/// Withdraws an intent this call announced for a claim it did not win, so
/// that a live participant never stands in the way of repairing a claim it
/// does not hold (see [`claimer_is_dead`]).
#[inline(always)]
fn withdraw(intent_word: &impl Word64, announced: bool) {
    if announced {
        intent_word.store(IDLE, Ordering::Release);
    }
}

/// Pushes one value into an MPMC ring (Dmitry Vyukov's bounded queue): the
/// cell for position `p` is free when its sequence is `p` and holds the value
/// for `p` when it is `p + 1`. Positions and sequences count modulo 2^64 on
/// purpose: every sum is `wrapping_add` and every comparison the sign of a
/// `wrapping_sub`, so a ring passes `u64::MAX` like any other position, the
/// same in debug and release builds, and no value a peer writes can make this
/// arithmetic panic.
///
/// A producer announces `p` in its own intent word (`intent_word`, Release:
/// after whatever it published before), claims `p` with a CAS on `enqueue`
/// (Release on success, so that whoever sees the claim sees the intent),
/// writes the value, and publishes with a Release store of `p + 1`. An intent
/// whose claim failed is withdrawn before returning. A [`skip_mark`] reads as
/// the publish it stands for: the slot of a previous lap still full, or our
/// own position stale (claimed and repaired meanwhile). Gives up (`Broken`) after `max_retries` lost or confused
/// rounds, which real contention never reaches and a peer writing nonsense
/// can.
/// Where an MPMC call gave up: the position it last tried, after how many
/// rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stuck {
    pub position: u64,
    pub retries: u32,
}

/// Rounds in a row in which a stale position did not move before an MPMC call
/// gives up: by the argument in [`mpmc_push`] one would do; the margin covers
/// weak compare-and-swap failures in between, and costs microseconds.
// Under loom, none: the model checks that a correct ring never stalls.
const MAX_STALLED: u32 = if cfg!(loom) { 0 } else { 64 };

#[inline(always)]
pub(crate) fn mpmc_push<T>(
    enqueue: &impl Word64,
    cells: &impl SequencedCells<T>,
    intent_word: &impl Word64,
    value: T,
    max_retries: u32,
) -> Push<T, Stuck> {
    let mut position = enqueue.load(Ordering::Relaxed);
    let mut retries = 0u32;
    let mut stalled = 0u32;
    let mut announced = false;
    loop {
        let sequence = cells.sequence(position);
        let mut seen = sequence.load(Ordering::Acquire);
        let mut lag = seen.wrapping_sub(position) as i64;
        if lag != 0 {
            // A skip mark reads as the publish it stands for (never as free).
            seen = unmarked(seen, position).0;
            lag = seen.wrapping_sub(position) as i64;
        }
        if lag == 0 {
            intent_word.store(intent(PUSHING, position), Ordering::Release);
            announced = true;
            match enqueue.compare_exchange_weak(
                position,
                position.wrapping_add(1),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    crate::fault::pause(crate::fault::Pause::PushUnpublished);
                    // SAFETY: the CAS gave us position `position`, whose cell is
                    // free (its sequence is `position`, read with Acquire after
                    // the consumer of the previous lap released it); no one else
                    // touches the value until we publish, and no repair takes
                    // the slot from us while we live.
                    unsafe { cells.write(position, value) };
                    sequence.store(position.wrapping_add(1), Ordering::Release);
                    return Push::Done;
                }
                Err(current) => position = current,
            }
        } else if lag < 0 {
            // The cell still holds the value from the previous lap (or a skip
            // mark no consumer has passed yet): full.
            withdraw(intent_word, announced);
            return Push::Full(value);
        } else {
            // Our position is stale: the cell moved on, which it does only
            // after a claim advanced `enqueue`, and our Acquire load of the
            // sequence makes that advance visible to this load. No advance
            // means nonsense in the segment: give up soon (a hostile peer
            // must not make every call spin `max_retries` rounds).
            let reloaded = enqueue.load(Ordering::Relaxed);
            stalled = if reloaded == position { stalled + 1 } else { 0 };
            position = reloaded;
        }
        retries += 1;
        if retries > max_retries || stalled > MAX_STALLED {
            withdraw(intent_word, announced);
            return Push::Broken(value, Stuck { position, retries });
        }
    }
}

/// Pops one value from an MPMC ring: announces `p` in `intent_word`, claims
/// position `p` with a CAS on `dequeue` once its cell's sequence is `p + 1`
/// (Acquire, pairing with the producer's Release), copies the value out, and
/// frees the cell for the next lap with a Release store of `p + capacity`. A
/// cell that carries the [`skip_mark`] of `p` (its producer died and a repair
/// marked it) is claimed and freed the same way, without a value, and the pop
/// goes on with the next position.
#[inline(always)]
pub(crate) fn mpmc_pop<T>(
    dequeue: &impl Word64,
    cells: &impl SequencedCells<T>,
    intent_word: &impl Word64,
    capacity: u64,
    max_retries: u32,
) -> Pop<T, Stuck> {
    let mut position = dequeue.load(Ordering::Relaxed);
    let mut retries = 0u32;
    let mut stalled = 0u32;
    let mut announced = false;
    loop {
        let sequence = cells.sequence(position);
        let seen = sequence.load(Ordering::Acquire);
        let mut lag = seen.wrapping_sub(position.wrapping_add(1)) as i64;
        let mut skipped = false;
        if lag != 0 {
            let (unmarked, mark) = unmarked(seen, position);
            lag = unmarked.wrapping_sub(position.wrapping_add(1)) as i64;
            skipped = mark;
        }
        if lag == 0 {
            intent_word.store(intent(POPPING, position), Ordering::Release);
            announced = true;
            match dequeue.compare_exchange_weak(
                position,
                position.wrapping_add(1),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) if skipped => {
                    crate::fault::pause(crate::fault::Pause::SkipUnfreed);
                    // Nothing to read: free the slot and go on.
                    sequence.store(position.wrapping_add(capacity), Ordering::Release);
                    position = position.wrapping_add(1);
                }
                Ok(_) => {
                    crate::fault::pause(crate::fault::Pause::PopUnfreed);
                    // SAFETY: the CAS gave us position `position`, published (its
                    // sequence is `position + 1`, read with Acquire); producers do
                    // not write it again until we free it, and no repair frees it
                    // while we live.
                    let value = unsafe { cells.read(position) };
                    sequence.store(position.wrapping_add(capacity), Ordering::Release);
                    return Pop::Value(value);
                }
                Err(current) => position = current,
            }
        } else if lag < 0 {
            withdraw(intent_word, announced);
            return Pop::Empty;
        } else {
            // Stale, as in `mpmc_push`: no advance of `dequeue` means nonsense.
            let reloaded = dequeue.load(Ordering::Relaxed);
            stalled = if reloaded == position { stalled + 1 } else { 0 };
            position = reloaded;
        }
        retries += 1;
        if retries > max_retries || stalled > MAX_STALLED {
            withdraw(intent_word, announced);
            return Pop::Broken(Stuck { position, retries });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_name_their_position_near_any_reference() {
        for position in [0, 1, 7, u64::MAX, u64::MAX - 3, 1 << 62, (1 << 62) - 1] {
            for operation in [PUSHING, POPPING] {
                let word = intent(operation, position);
                assert_eq!(word & 3, operation);
                for near in [0u64, 1, 1000, u64::MAX - 1000] {
                    let near = position.wrapping_add(near % 4096).wrapping_sub(2048);
                    assert_eq!(
                        intended_position(word, near),
                        position,
                        "{position} near {near}"
                    );
                }
            }
        }
        assert_ne!(intent(PUSHING, 5), intent(POPPING, 5));
        assert_ne!(intent(PUSHING, 5), IDLE);
    }

    #[test]
    fn a_skip_mark_is_far_from_every_live_sequence_of_its_slot() {
        let capacity = 2u64;
        for position in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
            let mark = skip_mark(position);
            for lap in -2i64..=2 {
                let base = position.wrapping_add((lap * capacity as i64) as u64);
                assert_ne!(mark, base);
                assert_ne!(mark, base.wrapping_add(1));
            }
            // Both sides read it as the publish it stands for: a producer one
            // lap on as full, a stale one as moved on.
            for near in [
                position,
                position.wrapping_add(capacity),
                position.wrapping_sub(capacity),
            ] {
                assert_eq!(unmarked(mark, near), (position.wrapping_add(1), true));
            }
            for lap in -2i64..=2 {
                let live = position.wrapping_add((lap * capacity as i64) as u64);
                assert_eq!(unmarked(live, position), (live, false));
                assert!(!unmarked(live.wrapping_add(1), position).1);
            }
            // A consumer at the position knows it for what it is.
            assert_eq!(
                stuck(
                    POPPING,
                    position,
                    mark,
                    position.wrapping_add(1),
                    0,
                    capacity
                ),
                Some(position.wrapping_add(capacity))
            );
        }
    }

    #[test]
    fn only_claimed_unfinished_slots_are_stuck() {
        let capacity = 4;
        // A producer's claim of 10: stuck once enqueue passed it, not before.
        assert_eq!(
            stuck(PUSHING, 10, 10, 10, 11, capacity),
            Some(skip_mark(10))
        );
        assert_eq!(stuck(PUSHING, 10, 10, 10, 10, capacity), None);
        assert_eq!(stuck(PUSHING, 10, 11, 10, 11, capacity), None, "published");
        // A consumer's claim of 10: stuck once dequeue passed it.
        assert_eq!(stuck(POPPING, 10, 11, 11, 12, capacity), Some(14));
        assert_eq!(stuck(POPPING, 10, 11, 10, 12, capacity), None);
        assert_eq!(stuck(POPPING, 10, 14, 11, 12, capacity), None, "freed");
        // Across u64::MAX.
        let top = u64::MAX;
        assert_eq!(
            stuck(PUSHING, top, top, top, 0, capacity),
            Some(skip_mark(top))
        );
        assert_eq!(stuck(POPPING, top, 0, 0, 1, capacity), Some(3));
        assert_eq!(stuck(IDLE, 10, 10, 10, 11, capacity), None);
    }
}
