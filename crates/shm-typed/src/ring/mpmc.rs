//! [`MpmcRing`]: a bounded multi-producer multi-consumer ring of `Pod` values
//! in a segment, for many processes at once.

use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::ring::blocking::{self, retry};
use crate::ring::protocol::{self, Cells, Pop, Push, SequencedCells};
use crate::ring::spsc::{Corrupted, PushError};
use crate::segment::format::{Kind, PAYLOAD_OFFSET};
use crate::segment::header::{self, Spec};
use crate::segment::region::Region;
use crate::segment::{Opening, Segment};
use crate::sys;

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
///
/// # A process that dies mid-operation
///
/// Lock-free does not mean crash-proof, and this ring chooses speed:
///
/// - A producer that dies between claiming a position and publishing it leaves
///   that slot claimed forever. Consumers reach it and find the ring "empty"
///   from there on; producers fill the remaining slots and then find it full.
///   Nothing is corrupted and nothing blocks without bound (the blocking calls
///   time out), but the ring is stuck until it is recreated.
/// - A consumer that dies between claiming a position and freeing its slot
///   loses that one value and leaves the slot taken: a lap later producers find
///   the ring full at that slot, with the same consequence.
///
/// The window is a few instructions long, so it takes a crash at exactly the
/// wrong moment; where a crash must never wedge the stream, use one
/// [`SpscRing`](crate::SpscRing) per producer, whose claims are taken over
/// when their holder dies. `tests/mpmc.rs` shows both behaviours.
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
    segment: Segment,
    _type: PhantomData<T>,
}

// SAFETY: an owned mapping plus plain data.
unsafe impl<T: Send> Send for MpmcRing<T> {}
// SAFETY: every shared operation goes through atomics and the slot protocol,
// which gives each claimed slot to exactly one party at a time.
unsafe impl<T: Send> Sync for MpmcRing<T> {}

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
        Ok(Spec {
            kind: Kind::MpmcRing,
            payload_offset: PAYLOAD_OFFSET as u64,
            payload_size: (SLOTS - PAYLOAD_OFFSET) as u64 + slots,
            payload_align: align as u32,
            element_size: size as u32,
            capacity,
            type_name: header::default_type_name::<T>(),
        })
    }

    /// Writes each slot's initial sequence number: slot `i` is free for position `i`.
    fn initial_sequences(capacity: u64) -> impl Fn(&Region) {
        move |region: &Region| {
            let stride = Self::stride();
            for index in 0..capacity {
                let offset = SLOTS + index as usize * stride;
                region.write_bytes(offset, &index.to_ne_bytes());
            }
        }
    }

    /// Bytes a ring of `capacity` slots takes (header included).
    pub(crate) fn segment_len(location: &Location, capacity: u64) -> Result<usize> {
        Self::spec(location, capacity).map(|spec| spec.segment_len())
    }

    /// Creates a ring of `capacity` slots (a power of two, at least 2).
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
        Ok(Self::from_segment(segment, capacity))
    }

    /// Opens the ring at `location`, checking kind, element type and capacity.
    pub fn open(location: impl Into<Location>, capacity: u64) -> Result<MpmcRing<T>> {
        let location = location.into();
        let spec = Self::spec(&location, capacity)?;
        let segment = Segment::open(&location, &spec, Opening::default())?;
        Ok(Self::from_segment(segment, capacity))
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
        Ok(Self::from_segment(segment, capacity))
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
        Ok(Self::from_segment(segment, capacity))
    }

    /// The segment has been checked to hold the control lines and all slots.
    fn from_segment(segment: Segment, capacity: u64) -> Self {
        let ring = MpmcRing {
            base: NonNull::new(segment.region().as_ptr()).expect("regions are non-null"),
            capacity,
            stride: Self::stride(),
            segment,
            _type: PhantomData,
        };
        blocking::join_as_waker(ring.word32(UNFENCED));
        ring
    }

    fn word32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: a control offset below SLOTS, inside the validated region,
        // 4-aligned; accessed only atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    fn word64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as word32, 8-aligned.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) }
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

    #[cold]
    #[inline(never)]
    fn corrupted(&self, what: String) -> Corrupted {
        Corrupted::new(self.segment.corrupted(what))
    }

    /// Pushes one value, or hands it back if the ring is full.
    #[inline]
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        // The protocol itself: protocol::mpmc_push (checked by loom).
        match protocol::mpmc_push(self.word64(ENQUEUE), self, value, MAX_RETRIES) {
            Push::Done => {
                self.wake(CONSUMER_EPOCH, CONSUMER_SLEEPERS);
                Ok(())
            }
            Push::Full(value) => Err(PushError::Full(value)),
            Push::Broken(value, ()) => Err(PushError::Corrupted(
                value,
                self.corrupted(format!("no free slot claimed after {MAX_RETRIES} tries")),
            )),
        }
    }

    /// Pops one value, or `None` if the ring is empty.
    #[inline]
    pub fn pop(&self) -> Result<Option<T>, Corrupted> {
        // The protocol itself: protocol::mpmc_pop (checked by loom).
        match protocol::mpmc_pop(self.word64(DEQUEUE), self, self.capacity, MAX_RETRIES) {
            Pop::Value(value) => {
                self.wake(PRODUCER_EPOCH, PRODUCER_SLEEPERS);
                Ok(Some(value))
            }
            Pop::Empty => Ok(None),
            Pop::Broken(()) => Err(self.corrupted(format!(
                "no published slot claimed after {MAX_RETRIES} tries"
            ))),
        }
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
    /// that consumers wake.
    pub fn push_blocking(&self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        retry(
            value,
            timeout,
            |value| match self.push(value) {
                Err(PushError::Full(back)) => ControlFlow::Continue(back),
                other => ControlFlow::Break(other),
            },
            |deadline| {
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
    /// that producers wake. `Ok(None)` if the timeout ran out.
    pub fn pop_blocking(&self, timeout: Duration) -> Result<Option<T>, Corrupted> {
        retry(
            (),
            timeout,
            |()| match self.pop() {
                Ok(None) => ControlFlow::Continue(()),
                other => ControlFlow::Break(other),
            },
            |deadline| {
                self.nap(CONSUMER_EPOCH, CONSUMER_SLEEPERS, deadline, || {
                    let position = self.word64(DEQUEUE).load(Ordering::SeqCst);
                    let (sequence, _) = self.slot(position);
                    sequence.load(Ordering::SeqCst) == position.wrapping_add(1)
                })
            },
        )
        .unwrap_or(Ok(None))
    }

    /// Items in the ring now, approximately (positions move while we read them),
    /// clamped to `0..=capacity`. Positions count modulo 2^64 (see the type's
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
