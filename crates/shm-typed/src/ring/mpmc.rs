//! [`MpmcRing`]: a bounded multi-producer multi-consumer ring of `Pod` values
//! in a segment, for many processes at once, that goes on past a participant
//! killed in the middle of an operation.
//!
//! # Recovering from a participant that died holding a claim
//!
//! The ring is Dmitry Vyukov's bounded queue: a party claims a position with
//! a compare-and-swap on a shared counter and then finishes the slot (a
//! producer publishes it, a consumer frees it). A party killed between the
//! two leaves the slot unfinished, and everything behind it waits. To finish
//! such a slot safely a waiter must know that its claimer is dead, and the
//! claim itself (a bare counter) does not say who made it. So the segment
//! holds a **participants table**: [`RECORDS`] records, each naming a process
//! (pid, start time, liveness domain) and carrying an **intent word** that its
//! thread writes *before* every claim, naming the position and the operation.
//!
//! Choices, and why:
//!
//! - **A record per thread, not per process.** A handle is `Sync`; two threads
//!   sharing one intent word would overwrite each other's announcement, and a
//!   claim nobody announces can never be judged (nor may anyone else's claim
//!   of that position be repaired, since the hidden claimer could be alive).
//!   So each thread that uses a handle takes a record of its own, found on the
//!   fast path through a thread-local cache (a thread-local load, the cached
//!   process id, two compares: the process id tells a forked child, which
//!   inherits the cache, that the records are its parent's); the
//!   first such thread gets the record that opening the handle registered,
//!   later threads register more on their first operation. A thread that has
//!   exited leaves its record to the next thread of the handle.
//! - **Intent before the claim, withdrawn after a lost one.** The intent is
//!   stored with Release before the claim's compare-and-swap, which itself has
//!   Release, so anyone who sees the claim position past `p` (Acquire) sees
//!   the claimer's intent for `p`. A thread whose compare-and-swap fails
//!   announces the next position before its next attempt, or withdraws (stores
//!   idle) before returning: a live participant's stale intent only ever
//!   delays a repair by the few instructions it takes to move on.
//! - **Repair only when every announcer is dead.** Several records may name
//!   the same claim (those whose compare-and-swap lost); the claimer is among
//!   them. A waiter repairs only if at least one record names the claim and
//!   every record that does is judged dead: one live announcer might be the
//!   claimer, so it waits. A repair is one compare-and-swap on the slot's
//!   sequence word from the exact value seen, so of many waiters exactly one
//!   repairs, and none if the claimer finished after all.
//! - **What a repair writes.** A dead producer's slot gets a *skip mark*
//!   ([`protocol::skip_mark`]): the consumer that reaches it claims it as
//!   usual, takes no value and frees it, and its pop goes on with the next
//!   position. A dead consumer's slot is freed, as the consumer would have
//!   done; the value it was taking is lost with it.
//! - **When.** Only a party that waits looks: the blocking calls check the two
//!   slots at the claim positions each time they are about to sleep (after
//!   spinning), and [`MpmcRing::recover`] does it on request. The fast path
//!   pays one store of the intent word to a line of its own thread, no
//!   syscall, no `/proc`.
//! - **Who is dead** is decided by one function, [`participant_is_dead`],
//!   over a record's words: a record not yet complete is never dead; one of
//!   the judge's liveness domain (pid and time namespaces) is judged by its
//!   pid and start time ([`liveness::is_process_dead`]: gone, a zombie, or
//!   the pid reused by a process started at another time); one of another
//!   domain only by the kernel token it recorded (see
//!   [`token`](crate::lock::token)), and never if it has none.
//! - **A full table.** Records of dead processes are taken over once their
//!   last claim is settled (finished, or repaired then and there). When every
//!   record belongs to a live participant, opening a handle fails with
//!   [`Error::Unsupported`] naming the limit, and so does the first operation
//!   of a further thread (through [`PushError::Corrupted`] or the pop's
//!   [`Corrupted`]): working unannounced would make other participants'
//!   repairs unsafe, so no participant ever does.
//! - **Garbage in the table** (a hostile or broken peer) is never undefined
//!   behaviour or a panic: record indices are masked, words are only ever
//!   compared, and a repair needs a slot whose sequence really shows an
//!   unfinished claim. Garbage can delay a repair (a live-looking record
//!   naming the claim), or repair a claim that no live participant announced
//!   (its claimer dead, or never registered); it can never get a claim of a
//!   live participant repaired, since that participant's own record names it
//!   (short of overwriting that record, and a peer that writes the segment at
//!   will can as well write the slots).
//!
//! The layout of the table is in docs/notes/mpmc-recovery.md.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::lock::liveness::{self, ID_MASK};
use crate::ring::blocking::{self, retry};
use crate::ring::protocol::{self, Cells, Participants, Pop, Push, SequencedCells, IDLE};
use crate::ring::spsc::{Corrupted, PushError};
use crate::segment::format::{Kind, PAYLOAD_OFFSET};
use crate::segment::header::{self, Spec};
use crate::segment::region::Region;
use crate::segment::{Opening, Segment};
use crate::sys::{self, StartTime, TaskState};

const CONTROL: usize = PAYLOAD_OFFSET;
/// Next position a producer claims (its own 128-byte line).
const ENQUEUE: usize = CONTROL;
/// Next position a consumer claims (its own line).
const DEQUEUE: usize = CONTROL + 128;
/// Futex words: an epoch consumers sleep on and how many sleep; the same for
/// producers waiting for room.
const CONSUMER_EPOCH: usize = CONTROL + 256;
const CONSUMER_SLEEPERS: usize = CONTROL + 260;
const PRODUCER_EPOCH: usize = CONTROL + 264;
const PRODUCER_SLEEPERS: usize = CONTROL + 268;
/// Sticky: a process whose ring value could not register for `membarrier`
/// used the ring, so a wake-up can be missed and naps stay short (see
/// [`blocking::fence_wakers`]).
const UNFENCED: usize = CONTROL + 272;
/// The slots: each a u64 sequence number, then the value.
const SLOTS: usize = CONTROL + 384;
/// Offset of the value inside a slot, for values aligned to at most 16.
const VALUE_OFFSET: usize = 16;

/// Records in the participants table, which follows the slots at the next
/// multiple of 128. A power of two (record indices are masked with it).
pub(crate) const RECORDS: usize = 32;
/// Bytes per record: one cache line, written on the fast path only by the
/// thread that holds it.
const RECORD_LEN: usize = 64;
/// The words of a record (byte offsets within it); 48..64 are reserved, 0.
///
/// | word | written by | meaning |
/// |---|---|---|
/// | `OWNER` | registering (CAS), releasing (CAS) | pid in the low 32 bits (0: free), a generation in the high 32 that every registration bumps |
/// | `SEAL` | registering, last (Release) | the owner word once the record is complete; a judge ignores a record whose seal differs |
/// | `START` | registering | the process's start time as `liveness` keeps it (0: unknown) |
/// | `DOMAIN` | registering | the process's liveness domain (`sys::current_domain`; 0: unknown) |
/// | `INTENT` | its thread, before every claim (Release) | `position << 2 | operation` (1 push, 2 pop), 0 idle |
/// | `TOKEN` | registering | the process's kernel token as a token record of the owner word's generation (`liveness::token_record`; 0: none in the segment's registry) |
const OWNER: usize = 0;
const SEAL: usize = 8;
const START: usize = 16;
const DOMAIN: usize = 24;
const INTENT: usize = 32;
const TOKEN: usize = 40;

/// Failed claims in a row (other parties won each time) before a call gives up
/// and reports the ring as corrupted: real contention never gets near this, a
/// peer writing nonsense into the positions can.
const MAX_RETRIES: u32 = 1 << 20;

/// A bounded ring of `T` that any number of producers and consumers, in any
/// number of processes, use at once.
///
/// Positions and sequence numbers count modulo 2^64 on purpose (wrapping
/// arithmetic, comparisons by the sign of the difference): a ring keeps
/// working past `u64::MAX`, and no value in the segment makes an operation
/// panic; a peer writing nonsense gives [`Error::Corrupted`] after a bounded
/// number of retries, or wrong values.
///
/// Each slot carries a sequence number (Dmitry Vyukov's bounded MPMC queue):
/// slot `p % capacity` is free for position `p` when its sequence is `p`, and
/// holds the value for position `p` when it is `p + 1`. A producer claims
/// position `p` with a CAS on the enqueue position, writes the value, and
/// publishes `p + 1` (Release); a consumer claims with a CAS on the dequeue
/// position, copies the value out, and frees the slot for the next lap with
/// `p + capacity`. No lock, no syscall unless a blocking call sleeps.
///
/// | offset | contents |
/// |---:|---|
/// | 384 | enqueue position (u64) |
/// | 512 | dequeue position (u64) |
/// | 640 | futex words: consumer epoch, consumer sleepers, producer epoch, producer sleepers (u32 each); "a waker could not register for membarrier" (u32, sticky) |
/// | 768 | slots: sequence (u64), 8 reserved bytes, the value; each slot padded to a multiple of 16 |
/// | after the slots, at a multiple of 128 | the participants table: 32 records of 64 bytes |
///
/// # A process that dies mid-operation
///
/// Every thread that uses a handle announces each claim in a record of the
/// participants table before making it (the module documentation argues the
/// design). A party that waits (a blocking call about to sleep, or
/// [`recover`](MpmcRing::recover)) and finds a claimed slot unfinished asks
/// whether every participant that announced that claim is dead; if so it
/// repairs the slot, exactly once however many try:
///
/// - A producer killed between claiming a position and publishing it: its
///   slot is marked skipped; the consumer that reaches it takes nothing and
///   goes on. Its value was never in the ring.
/// - A consumer killed between claiming a position and freeing its slot: the
///   slot is freed; the value it was taking is lost with it.
///
/// So a crash costs **at most the one value the dead process was pushing or
/// popping**, and never stalls the ring for longer than the waiters take to
/// notice: after their spin, at their next nap (at most 100 ms, 1 ms where
/// `membarrier` is unavailable). Death is judged by pid and start time within
/// one pid and time namespace: a participant of another namespace is never
/// judged dead, so a crash there stalls the slot (bounded waits time out)
/// until the ring is recreated. A stopped process (`SIGSTOP`) is alive and is
/// waited for.
///
/// The table has 32 records, one per thread per handle; see
/// [`open`](MpmcRing::open) for what happens when it is full.
///
/// ```
/// use shm_typed::{Location, MpmcRing};
///
/// let ring = MpmcRing::<u64>::create(Location::Private, 64)?;
/// ring.remove()?;
/// ring.push(1).unwrap();
/// ring.push(2).unwrap();
/// assert_eq!(ring.pop()?, Some(1));
/// assert_eq!(ring.pop()?, Some(2));
/// assert_eq!(ring.pop()?, None);
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub struct MpmcRing<T> {
    base: NonNull<u8>,
    capacity: u64,
    stride: usize,
    /// Offset of the participants table.
    table: usize,
    lanes: Lanes,
    segment: Segment,
    _type: PhantomData<T>,
}

// SAFETY: an owned mapping plus plain data and a mutex.
unsafe impl<T: Send> Send for MpmcRing<T> {}
// SAFETY: every shared operation goes through atomics and the slot protocol,
// which gives each claimed slot to exactly one party at a time; the
// process-local lanes are behind a mutex.
unsafe impl<T: Send> Sync for MpmcRing<T> {}

/// The records this handle registered in this process, and which thread uses
/// each: process memory, never shared.
#[derive(Debug)]
struct Lanes {
    /// Unique among this process's handles (the thread-local cache's key).
    handle: u64,
    state: Mutex<LaneState>,
}

#[derive(Debug)]
struct LaneState {
    /// The process that registered `lanes`; a forked child starts over.
    pid: u32,
    lanes: Vec<Lane>,
}

#[derive(Debug, Clone, Copy)]
struct Lane {
    record: u32,
    /// The owner word we registered it with.
    owner: u64,
    /// The thread using it (0: none yet).
    thread: u32,
}

/// A thread's answer to "which record is mine on handle `handle`", valid in
/// process `pid` only (a forked child inherits its parent's thread-locals).
#[derive(Clone, Copy)]
struct CachedLane {
    handle: u64,
    pid: u32,
    record: u32,
}

impl CachedLane {
    const NONE: CachedLane = CachedLane {
        handle: 0,
        pid: 0,
        record: 0,
    };
}

thread_local! {
    /// The lane of the handle this thread used last: the fast path's lookup.
    static RECENT_LANE: Cell<CachedLane> = const { Cell::new(CachedLane::NONE) };
    /// The lanes of the handles it used before that (a thread alternating
    /// between a few rings stays off the slow path).
    static EARLIER_LANES: Cell<[CachedLane; 3]> = const { Cell::new([CachedLane::NONE; 3]) };
}

/// Source of [`Lanes::handle`]; 0 is never handed out.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// A participant record's words as a judge read them (see [`OWNER`] and the
/// table next to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParticipantRecord {
    pub(crate) owner: u64,
    pub(crate) seal: u64,
    pub(crate) start: StartTime,
    pub(crate) domain: u64,
    pub(crate) token: u64,
}

/// Whether the participant a record names is dead, for a judge of liveness
/// domain `judge_domain` in a segment whose kernel-token registry is
/// `registry`: every such decision of the ring is made here.
///
/// Dead only on a definite answer: the record is complete (sealed for this
/// very owner word) and names a pid; then, if it was written in the judge's
/// own domain (pid and time namespaces, both known), by that pid:
/// [`liveness::is_process_dead`] says it is gone, a zombie, or a process
/// started at another time than the record says (a reused pid; a start time
/// the registrant could not read, 0, leaves only "gone" and "zombie").
/// Across domains, where pids mean nothing, by the registrant's kernel token
/// (see [`token`](crate::lock::token)), if it wrote one for this
/// registration and the judge can read the registry; else never.
pub(crate) fn participant_is_dead(
    record: ParticipantRecord,
    judge_domain: u64,
    registry: crate::lock::token::Registry,
) -> bool {
    let pid = (record.owner & ID_MASK) as u32;
    if pid == 0 || record.seal != record.owner {
        return false;
    }
    if record.domain != 0 && record.domain == judge_domain {
        return liveness::is_process_dead(pid, (record.start != 0).then_some(record.start));
    }
    liveness::recorded_token(record.token, liveness::generation(record.owner))
        .is_some_and(|token| crate::lock::token::is_dead(registry, token) == Some(true))
}

impl<T: Pod> Cells<T> for MpmcRing<T> {
    #[inline(always)]
    unsafe fn write(&self, position: u64, value: T) {
        // SAFETY: slot() is in bounds and aligned; the caller claimed the slot.
        unsafe { self.slot(position).1.write(value) }
    }

    #[inline(always)]
    unsafe fn read(&self, position: u64) -> T {
        // SAFETY: slot() is in bounds and aligned; the slot is published to the
        // caller. Volatile: a hostile peer writing it yields wrong bytes, not
        // undefined behaviour.
        unsafe { self.slot(position).1.read_volatile() }
    }
}

impl<T: Pod> SequencedCells<T> for MpmcRing<T> {
    type Sequence = AtomicU64;

    #[inline(always)]
    fn sequence(&self, position: u64) -> &AtomicU64 {
        self.slot(position).0
    }
}

impl<T> Participants for MpmcRing<T> {
    type Word = AtomicU64;

    fn records(&self) -> usize {
        RECORDS
    }

    fn owner(&self, record: usize) -> &AtomicU64 {
        self.record_word(record, OWNER)
    }

    fn seal(&self, record: usize) -> &AtomicU64 {
        self.record_word(record, SEAL)
    }

    fn intent(&self, record: usize) -> &AtomicU64 {
        self.record_word(record, INTENT)
    }

    fn is_dead(&self, record: usize, owner: u64) -> bool {
        let words = ParticipantRecord {
            owner,
            seal: self.record_word(record, SEAL).load(Ordering::Acquire),
            start: self.record_word(record, START).load(Ordering::Acquire),
            domain: self.record_word(record, DOMAIN).load(Ordering::Acquire),
            token: self.record_word(record, TOKEN).load(Ordering::Acquire),
        };
        participant_is_dead(words, sys::current_domain(), self.segment.lock().registry())
    }
}

/// Items in the MPMC ring a region holds, as its positions say now: enqueue
/// minus dequeue, which count modulo 2^64 on purpose, so the difference
/// wraps; `None` if it exceeds `capacity` or the words lie outside the
/// region. For tools ([`describe`](crate::describe)); trusts nothing.
pub(crate) fn fill(region: &Region, capacity: u64) -> Option<u64> {
    fill_of(
        region.try_read_u64(ENQUEUE)?,
        region.try_read_u64(DEQUEUE)?,
        capacity,
    )
}

/// The fill level `enqueue` and `dequeue` imply, if possible.
pub(crate) fn fill_of(enqueue: u64, dequeue: u64, capacity: u64) -> Option<u64> {
    Some(enqueue.wrapping_sub(dequeue)).filter(|&len| len <= capacity)
}

/// Offset of the participants table of a ring whose slots take `slot_bytes`.
const fn table_offset(slot_bytes: usize) -> usize {
    (SLOTS + slot_bytes).next_multiple_of(128)
}

impl<T: Pod> MpmcRing<T> {
    fn stride() -> usize {
        (VALUE_OFFSET + std::mem::size_of::<T>()).next_multiple_of(16)
    }

    fn spec(location: &Location, capacity: u64) -> Result<Spec> {
        let size = std::mem::size_of::<T>();
        let align = std::mem::align_of::<T>();
        let unsupported = |what: String| Error::Unsupported {
            location: location.clone(),
            what,
        };
        if !capacity.is_power_of_two() || capacity < 2 {
            return Err(unsupported(format!(
                "capacity {capacity} is not a power of two of at least 2"
            )));
        }
        if align > 16 || size == 0 {
            return Err(unsupported(format!(
                "element size {size} / alignment {align}: need a non-zero size and alignment <= 16"
            )));
        }
        let slots = capacity
            .checked_mul(Self::stride() as u64)
            .filter(|&bytes| bytes <= (1 << 46))
            .ok_or_else(|| unsupported(format!("capacity {capacity} is too large")))?;
        // No overflow: slots <= 2^46.
        let end = table_offset(slots as usize) + RECORDS * RECORD_LEN;
        Ok(Spec {
            kind: Kind::MpmcRing,
            payload_offset: PAYLOAD_OFFSET as u64,
            payload_size: (end - PAYLOAD_OFFSET) as u64,
            payload_align: align as u32,
            element_size: size as u32,
            capacity,
            type_name: header::default_type_name::<T>(),

            schema: crate::schema::layout_of::<T>(),
            accepts_prefix: false,
        })
    }

    /// Writes each slot's initial sequence number (slot `i` is free for
    /// position `i`) and an empty participants table.
    fn initial_sequences(capacity: u64) -> impl Fn(&Region) {
        move |region: &Region| {
            let stride = Self::stride();
            for index in 0..capacity {
                let offset = SLOTS + index as usize * stride;
                region.write_bytes(offset, &index.to_ne_bytes());
            }
            let table = table_offset(capacity as usize * stride);
            region.write_bytes(table, &[0; RECORDS * RECORD_LEN]);
        }
    }

    /// Bytes a ring of `capacity` slots takes: header, lock, control words,
    /// slots and the schema block if `T` has one. For a caller that makes
    /// the region itself (`create_in`); `location` only names it in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a capacity or element type the ring cannot
    /// hold.
    pub fn segment_len(location: &Location, capacity: u64) -> Result<usize> {
        Self::spec(location, capacity).map(|spec| spec.segment_len())
    }

    /// Creates a ring of `capacity` slots (a power of two, at least 2), and
    /// registers this handle in its participants table.
    pub fn create(location: impl Into<Location>, capacity: u64) -> Result<MpmcRing<T>> {
        let location = location.into();
        let spec = Self::spec(&location, capacity)?;
        let opening = Opening::default();
        let segment = Segment::create(
            &location,
            &spec,
            opening.mode,
            Self::initial_sequences(capacity),
        )?;
        Self::from_segment(segment, capacity)
    }

    /// Opens the ring at `location`, checking kind, element type and
    /// capacity, and registers this handle in its participants table.
    ///
    /// # Errors
    ///
    /// Besides the checks of opening a segment: [`Error::Unsupported`] if all
    /// 32 participant records belong to live participants (records of dead
    /// ones are taken over). Each thread that uses a handle holds a record;
    /// a further thread whose first operation finds none gets the same error
    /// from that operation.
    pub fn open(location: impl Into<Location>, capacity: u64) -> Result<MpmcRing<T>> {
        let location = location.into();
        let spec = Self::spec(&location, capacity)?;
        let segment = Segment::open(&location, &spec, Opening::default())?;
        Self::from_segment(segment, capacity)
    }

    /// Makes a ring in a blank heap region (tests, single process).
    pub fn create_in(region: Region, capacity: u64) -> Result<MpmcRing<T>> {
        Self::create_in_at(region, Location::Heap, capacity)
    }

    /// [`create_in`](MpmcRing::create_in) for a region that errors name as
    /// `location` (a store's entry).
    pub(crate) fn create_in_at(
        region: Region,
        location: Location,
        capacity: u64,
    ) -> Result<MpmcRing<T>> {
        let spec = Self::spec(&location, capacity)?;
        let segment =
            Segment::create_in(region, location, &spec, Self::initial_sequences(capacity))?;
        Self::from_segment(segment, capacity)
    }

    /// Opens a ring in a region (validating the header).
    pub fn open_in(region: Region, capacity: u64) -> Result<MpmcRing<T>> {
        Self::open_in_at(
            region,
            Location::Heap,
            capacity,
            Opening::default().init_timeout,
        )
    }

    /// [`open_in`](MpmcRing::open_in) for a region that errors name as
    /// `location`, waiting at most `init_timeout` for the creator (a store
    /// passes its own).
    pub(crate) fn open_in_at(
        region: Region,
        location: Location,
        capacity: u64,
        init_timeout: Duration,
    ) -> Result<MpmcRing<T>> {
        let spec = Self::spec(&location, capacity)?;
        let segment = Segment::open_in(region, location, &spec, init_timeout)?;
        Self::from_segment(segment, capacity)
    }

    /// The segment has been checked to hold the control lines, all slots and
    /// the participants table. Registers the handle's first record.
    fn from_segment(segment: Segment, capacity: u64) -> Result<Self> {
        let stride = Self::stride();
        let pid = sys::current_pid();
        let ring = MpmcRing {
            base: NonNull::new(segment.region().as_ptr()).expect("regions are non-null"),
            capacity,
            stride,
            table: table_offset(capacity as usize * stride),
            lanes: Lanes {
                handle: NEXT_HANDLE.fetch_add(1, Ordering::Relaxed),
                state: Mutex::new(LaneState {
                    pid,
                    lanes: Vec::with_capacity(4),
                }),
            },
            segment,
            _type: PhantomData,
        };
        blocking::join_as_waker(ring.word32(UNFENCED));
        // Fills this thread's identity cache (its first fill reads /proc), so
        // that the first operation of the thread that opened the handle
        // neither reads /proc nor allocates.
        let _ = sys::current_identity();
        let (record, owner) = ring.register()?;
        ring.lanes
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lanes
            .push(Lane {
                record,
                owner,
                thread: 0,
            });
        Ok(ring)
    }

    /// The slot for `position`: its sequence word and its value.
    #[inline]
    fn slot(&self, position: u64) -> (&AtomicU64, *mut T) {
        let index = (position & (self.capacity - 1)) as usize;
        // SAFETY: index < capacity and the region holds `capacity` slots of
        // `stride` bytes after SLOTS (validated at open/create); SLOTS and the
        // stride are multiples of 16, so the sequence is 8-aligned and the value,
        // at offset 16, is aligned for T (align <= 16).
        unsafe {
            let slot = self.base.as_ptr().add(SLOTS + index * self.stride);
            (
                AtomicU64::from_ptr(slot.cast()),
                slot.add(VALUE_OFFSET).cast::<T>(),
            )
        }
    }

    /// Pushes one value, or hands it back if the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] with the value; [`PushError::Corrupted`] if a peer
    /// wrote impossible positions, or if this is the first operation of a
    /// thread on this handle and no participant record is free (the inner
    /// error is then [`Error::Unsupported`], see [`open`](MpmcRing::open)).
    #[inline]
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        let intent = match self.lane() {
            Ok(intent) => intent,
            Err(no_record) => return Err(PushError::Corrupted(value, no_record)),
        };
        // The protocol itself: protocol::mpmc_push (checked by loom).
        match protocol::mpmc_push(self.word64(ENQUEUE), self, intent, value, MAX_RETRIES) {
            Push::Done => {
                self.wake(CONSUMER_EPOCH, CONSUMER_SLEEPERS);
                Ok(())
            }
            Push::Full(value) => Err(PushError::Full(value)),
            Push::Broken(value, stuck) => Err(PushError::Corrupted(
                value,
                self.corrupted(format!(
                    "no free slot claimed after {} tries (at enqueue position {})",
                    stuck.retries, stuck.position
                )),
            )),
        }
    }

    /// Pops one value, or `None` if the ring is empty. A slot whose producer
    /// died and that a repair marked skipped is passed over on the way.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] if a peer wrote impossible positions, or if no
    /// participant record is free for this thread (as for
    /// [`push`](MpmcRing::push)).
    #[inline]
    pub fn pop(&self) -> Result<Option<T>, Corrupted> {
        let intent = self.lane()?;
        // The protocol itself: protocol::mpmc_pop (checked by loom).
        match protocol::mpmc_pop(
            self.word64(DEQUEUE),
            self,
            intent,
            self.capacity,
            MAX_RETRIES,
        ) {
            Pop::Value(value) => {
                self.wake(PRODUCER_EPOCH, PRODUCER_SLEEPERS);
                Ok(Some(value))
            }
            Pop::Empty => Ok(None),
            Pop::Broken(stuck) => Err(self.corrupted(format!(
                "no published slot claimed after {} tries (at dequeue position {})",
                stuck.retries, stuck.position
            ))),
        }
    }

    /// Repairs what a participant that died holding a claim left where
    /// producers or consumers wait (see the type's documentation): a dead
    /// producer's unpublished slot is marked skipped, a dead consumer's
    /// unfreed slot is freed, and sleepers are woken. Returns how many slots
    /// this call repaired. The blocking calls do this each time they are about
    /// to sleep; a program that only uses [`push`](MpmcRing::push) and
    /// [`pop`](MpmcRing::pop) can call it when the ring has stayed empty or
    /// full for a while. Reads `/proc` only when a claim is unfinished.
    ///
    /// ```
    /// use shm_typed::{Location, MpmcRing};
    ///
    /// let ring = MpmcRing::<u64>::create(Location::Private, 8)?;
    /// ring.remove()?;
    /// assert_eq!(ring.recover(), 0, "nothing to repair");
    /// # Ok::<(), shm_typed::Error>(())
    /// ```
    pub fn recover(&self) -> usize {
        let repaired = protocol::mpmc_repair(
            self.word64(ENQUEUE),
            self.word64(DEQUEUE),
            self,
            self.capacity,
            self,
        );
        if repaired > 0 {
            wake_sleeper(self.word32(CONSUMER_EPOCH));
            wake_sleeper(self.word32(PRODUCER_EPOCH));
        }
        repaired as usize
    }

    /// Whether the claim a dead participant last announced (`announced`) is
    /// settled, repairing it if need be (see [`protocol::mpmc_settle`]).
    fn settle(&self, announced: u64) -> bool {
        protocol::mpmc_settle(
            self.word64(ENQUEUE),
            self.word64(DEQUEUE),
            self,
            self.capacity,
            self,
            announced,
        )
    }

    /// Takes a record of the participants table for this process: a free
    /// one, or else one whose participant is dead and whose last claim is
    /// settled. Returns the record and the owner word we wrote.
    fn register(&self) -> Result<(u32, u64)> {
        let pid = sys::current_pid();
        let start = liveness::own_process_start();
        let domain = sys::current_domain();
        for record in 0..RECORDS {
            let owner = self.record_word(record, OWNER).load(Ordering::Acquire);
            if owner & ID_MASK == 0 {
                if let Some(won) = self.take_record(record, owner, pid, start, domain) {
                    return Ok((record as u32, won));
                }
            }
        }
        for record in 0..RECORDS {
            let owner = self.record_word(record, OWNER).load(Ordering::Acquire);
            let takeable = owner & ID_MASK == 0
                || (self.record_word(record, SEAL).load(Ordering::Acquire) == owner
                    && self.is_dead(record, owner)
                    && self.settle(self.record_word(record, INTENT).load(Ordering::Acquire))
                    && self.record_word(record, OWNER).load(Ordering::Acquire) == owner);
            if takeable {
                if let Some(won) = self.take_record(record, owner, pid, start, domain) {
                    return Ok((record as u32, won));
                }
            }
        }
        Err(Error::Unsupported {
            location: self.segment.location().clone(),
            what: format!(
                "no free participant record: all {RECORDS} belong to live participants \
                 (each thread that uses a handle of the ring holds one)"
            ),
        })
    }

    #[cold]
    #[inline(never)]
    fn corrupted(&self, what: String) -> Corrupted {
        Corrupted::new(self.segment.corrupted(what))
    }

    /// The intent word of this thread's record on this handle: two
    /// thread-local loads and two compares once the thread has one.
    #[inline(always)]
    fn lane(&self) -> Result<&AtomicU64, Corrupted> {
        let cached = RECENT_LANE.get();
        if cached.handle == self.lanes.handle && cached.pid == sys::current_pid() {
            Ok(self.record_word(cached.record as usize, INTENT))
        } else {
            self.lane_slow()
        }
    }

    /// [`lane`](MpmcRing::lane) for a thread that used another handle since,
    /// or never used this one (in this process).
    #[cold]
    #[inline(never)]
    fn lane_slow(&self) -> Result<&AtomicU64, Corrupted> {
        let pid = sys::current_pid();
        let handle = self.lanes.handle;
        let recent = RECENT_LANE.get();
        let mut earlier = EARLIER_LANES.get();
        let record = match earlier
            .iter()
            .position(|lane| lane.handle == handle && lane.pid == pid)
        {
            Some(index) => std::mem::replace(&mut earlier[index], recent).record,
            None => {
                let record = self.take_lane(pid).map_err(Corrupted::new)?;
                earlier.rotate_right(1);
                earlier[0] = recent;
                record
            }
        };
        EARLIER_LANES.set(earlier);
        RECENT_LANE.set(CachedLane {
            handle,
            pid,
            record,
        });
        Ok(self.record_word(record as usize, INTENT))
    }

    /// The record of the calling thread on this handle: the one it had, an
    /// unused one of the handle's, one a thread of ours that exited left, or
    /// a new registration. Allocates nothing for the first thread.
    fn take_lane(&self, pid: u32) -> Result<u32> {
        let (thread, _, _) = sys::current_identity();
        let mut state = self
            .lanes
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.pid != pid {
            // A forked child: its parent's records are its parent's.
            state.pid = pid;
            state.lanes.clear();
        }
        if let Some(lane) = state.lanes.iter().find(|lane| lane.thread == thread) {
            return Ok(lane.record);
        }
        let reusable = state
            .lanes
            .iter()
            .position(|lane| lane.thread == 0)
            .or_else(|| {
                state
                    .lanes
                    .iter()
                    .position(|lane| sys::task_state(lane.thread) == TaskState::Dead)
            });
        if let Some(index) = reusable {
            // An exited thread had no claim under way: its record is idle.
            state.lanes[index].thread = thread;
            return Ok(state.lanes[index].record);
        }
        let (record, owner) = self.register()?;
        state.lanes.push(Lane {
            record,
            owner,
            thread,
        });
        Ok(record)
    }

    /// Wakes one sleeper on `epoch` if any announced itself.
    #[inline]
    fn wake(&self, epoch: usize, sleepers: usize) {
        if self.word32(sleepers).load(Ordering::Relaxed) != 0 {
            wake_sleeper(self.word32(epoch));
        }
    }

    /// Sleeps on `epoch` unless `ready()`, not past `deadline` and at most a nap
    /// ([`blocking::fence_wakers`] says how long).
    fn nap(&self, epoch: usize, sleepers: usize, deadline: Instant, ready: impl Fn() -> bool) {
        let word = self.word32(epoch);
        let seen = word.load(Ordering::Acquire);
        // A locked read-modify-write: a full fence on our side of the handshake.
        self.word32(sleepers).fetch_add(1, Ordering::SeqCst);
        let nap = blocking::fence_wakers(self.word32(UNFENCED));
        if !ready() {
            let left = deadline.saturating_duration_since(Instant::now());
            sys::futex_wait(word, seen, left.min(nap));
        }
        self.word32(sleepers).fetch_sub(1, Ordering::SeqCst);
    }

    /// Pushes, waiting up to `timeout` for room: spins, then sleeps on a futex
    /// that consumers wake. Before each sleep it repairs what a dead
    /// participant left in the way ([`recover`](MpmcRing::recover)).
    pub fn push_blocking(&self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        retry(
            value,
            timeout,
            |value| match self.push(value) {
                Err(PushError::Full(back)) => ControlFlow::Continue(back),
                other => ControlFlow::Break(other),
            },
            |deadline| {
                if self.recover() > 0 {
                    return;
                }
                self.nap(PRODUCER_EPOCH, PRODUCER_SLEEPERS, deadline, || {
                    let position = self.word64(ENQUEUE).load(Ordering::SeqCst);
                    let (sequence, _) = self.slot(position);
                    sequence.load(Ordering::SeqCst) == position
                })
            },
        )
        .unwrap_or_else(|value| Err(PushError::Timeout(value)))
    }

    /// Pops, waiting up to `timeout` for a value: spins, then sleeps on a futex
    /// that producers wake. `Ok(None)` if the timeout ran out. Before each
    /// sleep it repairs what a dead participant left in the way
    /// ([`recover`](MpmcRing::recover)).
    pub fn pop_blocking(&self, timeout: Duration) -> Result<Option<T>, Corrupted> {
        retry(
            (),
            timeout,
            |()| match self.pop() {
                Ok(None) => ControlFlow::Continue(()),
                other => ControlFlow::Break(other),
            },
            |deadline| {
                if self.recover() > 0 {
                    return;
                }
                self.nap(CONSUMER_EPOCH, CONSUMER_SLEEPERS, deadline, || {
                    let position = self.word64(DEQUEUE).load(Ordering::SeqCst);
                    let (sequence, _) = self.slot(position);
                    let seen = sequence.load(Ordering::SeqCst);
                    seen == position.wrapping_add(1) || seen == protocol::skip_mark(position)
                })
            },
        )
        .unwrap_or(Ok(None))
    }

    /// Items in the ring now, approximately (positions move while we read them),
    /// clamped to `0..=capacity`; a slot marked skipped counts until a consumer
    /// passes it. Positions count modulo 2^64 (see the type's
    /// documentation), so the difference wraps on purpose: a ring
    /// whose enqueue position has passed `u64::MAX` and whose dequeue position
    /// has not is not empty. A difference above `capacity` (a peer wrote
    /// nonsense, or a dequeue moved between our two loads) shows as full or,
    /// when it is a negative one, empty.
    pub fn len(&self) -> u64 {
        let dequeue = self.word64(DEQUEUE).load(Ordering::Acquire);
        let enqueue = self.word64(ENQUEUE).load(Ordering::Acquire);
        let len = enqueue.wrapping_sub(dequeue);
        if (len as i64) < 0 {
            0
        } else {
            len.min(self.capacity)
        }
    }

    /// Whether the ring looks empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity in elements.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Where the ring is ([`Location::Id`] for a ring created as private).
    pub fn location(&self) -> &Location {
        self.segment.location()
    }

    /// The region holding the ring.
    pub fn region(&self) -> &Region {
        self.segment.region()
    }

    /// Removes the segment (`IPC_RMID` or `shm_unlink`); mappings stay usable.
    pub fn remove(&self) -> Result<()> {
        self.segment.remove()
    }
}

impl<T> MpmcRing<T> {
    fn word32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: a control offset below SLOTS, inside the validated region,
        // 4-aligned; accessed only atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    fn word64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as word32, 8-aligned.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// Word `word` (one of [`OWNER`] .. [`INTENT`]) of participant record
    /// `record`, taken modulo [`RECORDS`].
    #[inline(always)]
    fn record_word(&self, record: usize, word: usize) -> &AtomicU64 {
        debug_assert!(word < RECORD_LEN && word % 8 == 0);
        let offset = self.table + (record & (RECORDS - 1)) * RECORD_LEN + (word & (RECORD_LEN - 8));
        // SAFETY: the table (RECORDS records of RECORD_LEN bytes at `table`, a
        // multiple of 128) lies inside the validated region; the masks keep the
        // record below RECORDS and the word an 8-aligned offset inside it. Its
        // words are only ever accessed atomically.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// Writes our identity into `record` if its owner word is still
    /// `observed`: the owner word first (a compare-and-swap that bumps the
    /// generation), then an idle intent, the start time and the domain, and
    /// last the seal (Release), from which on judges read the record.
    fn take_record(
        &self,
        record: usize,
        observed: u64,
        pid: u32,
        start: StartTime,
        domain: u64,
    ) -> Option<u64> {
        let won = liveness::next(observed, pid);
        self.record_word(record, OWNER)
            .compare_exchange(observed, won, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.record_word(record, INTENT)
            .store(IDLE, Ordering::Relaxed);
        self.record_word(record, START)
            .store(start, Ordering::Relaxed);
        self.record_word(record, DOMAIN)
            .store(domain, Ordering::Relaxed);
        let registry = self.segment.lock().registry();
        let token = liveness::own_token(registry.name, crate::lock::token::mine());
        self.record_word(record, TOKEN).store(
            liveness::token_record(token, liveness::generation(won)),
            Ordering::Relaxed,
        );
        self.record_word(record, SEAL).store(won, Ordering::Release);
        Some(won)
    }

    /// Gives a record back: idle intent, then the owner word's pid cleared
    /// (generation kept), only if it is still the very registration we made.
    fn release(&self, lane: &Lane) {
        let owner = self.record_word(lane.record as usize, OWNER);
        if owner.load(Ordering::Relaxed) != lane.owner {
            return;
        }
        self.record_word(lane.record as usize, INTENT)
            .store(IDLE, Ordering::Release);
        let _ = owner.compare_exchange(
            lane.owner,
            lane.owner & !ID_MASK,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// What the crash tests beside the model (`tests/mpmc_model.rs`) need: the
/// table's words, and the leftovers of a participant that died right after
/// a claim.
#[cfg(test)]
impl<T> MpmcRing<T> {
    /// Word `word` ([`RecordWord`]) of participant record `record`.
    pub(crate) fn participant_word(&self, record: usize, word: RecordWord) -> &AtomicU64 {
        self.record_word(record, word as usize)
    }

    /// The sequence word of the slot of `position`.
    pub(crate) fn sequence_word(&self, position: u64) -> &AtomicU64
    where
        T: Pod,
    {
        self.slot(position).0
    }

    /// Moves the enqueue (`pushing`) or dequeue position on by one without
    /// touching the slot, as a participant killed right after its claim
    /// leaves it; returns the position claimed.
    pub(crate) fn claim_and_vanish(&self, pushing: bool) -> u64 {
        self.word64(if pushing { ENQUEUE } else { DEQUEUE })
            .fetch_add(1, Ordering::AcqRel)
    }

    /// The records whose owner word names process `pid`.
    pub(crate) fn records_of(&self, pid: u32) -> usize {
        (0..RECORDS)
            .filter(|&record| {
                self.record_word(record, OWNER).load(Ordering::Relaxed) & ID_MASK == u64::from(pid)
            })
            .count()
    }
}

/// The words of a participant record, for tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum RecordWord {
    Owner = OWNER as isize,
    Seal = SEAL as isize,
    Start = START as isize,
    Domain = DOMAIN as isize,
    Intent = INTENT as isize,
}

/// Releases the records this handle registered, in the process that
/// registered them (a forked child's copy of a handle it never used releases
/// nothing: the records are its parent's). No thread can be inside an
/// operation on the handle now.
impl<T> Drop for MpmcRing<T> {
    fn drop(&mut self) {
        let state = self
            .lanes
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if state.pid != sys::current_pid() {
            return;
        }
        let lanes = std::mem::take(&mut state.lanes);
        for lane in &lanes {
            self.release(lane);
        }
    }
}

impl<T> fmt::Debug for MpmcRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcRing")
            .field("type", &std::any::type_name::<T>())
            .field("capacity", &self.capacity)
            .field("location", self.segment.location())
            .finish()
    }
}

/// The rare half of [`MpmcRing::wake`], out of line so that the push and pop
/// paths that inline `wake` carry no call.
#[cold]
#[inline(never)]
fn wake_sleeper(epoch: &AtomicU32) {
    epoch.fetch_add(1, Ordering::Release);
    sys::futex_wake(epoch, 1);
}
