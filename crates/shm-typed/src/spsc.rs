//! [`SpscRing`]: a single-producer single-consumer ring of `Pod` values in a
//! segment, shared by two processes without a syscall per item.

use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shm_sys::Mode;

use crate::backend::{create_segment, open_segment, remove_backend, Backend};
use crate::blocking::{self, retry};
use crate::error::{Error, Location, Result};
use crate::header::{self, Kind, Spec, PAYLOAD_OFFSET};
use crate::liveness::{self, generation, own_process_start};
use crate::protocol::{self, Cells, Impossible, Pop, Push};
use crate::region::Region;
use crate::sys;

/// Where the ring's control lines start (right after the header and lock).
const CONTROL: usize = PAYLOAD_OFFSET;
/// Producer line: `tail`, the next position to write (written by the producer only).
const TAIL: usize = CONTROL;
/// Consumer line: `head`, the next position to read (written by the consumer only).
const HEAD: usize = CONTROL + 128;
/// Sleep line: two futex words, "the producer sleeps" and "the consumer sleeps".
/// Kept off the index lines: putting each flag in the line its waker writes
/// anyway measured slower (round trip 1.4x the raw floor instead of 1.1x).
const PRODUCER_SLEEPING: usize = CONTROL + 256;
const CONSUMER_SLEEPING: usize = CONTROL + 260;
/// Sticky: a process whose handle could not register for `membarrier` used the
/// ring, so a wake-up can be missed and naps stay short (see
/// [`blocking::fence_wakers`]).
const UNFENCED: usize = CONTROL + 264;
/// Claim line: who holds the producer and the consumer handle.
const PRODUCER_CLAIM: usize = CONTROL + 384;
const CONSUMER_CLAIM: usize = CONTROL + 392;
const PRODUCER_CLAIM_RECORD: usize = CONTROL + 400;
const CONSUMER_CLAIM_RECORD: usize = CONTROL + 408;
/// The slots, `capacity * size_of::<T>()` bytes.
const SLOTS: usize = CONTROL + 512;

/// How far ahead of the slot it just filled a one-by-one `push` asks for the
/// next lines (PREFETCHW, once per cache line). With the consumer on a distant
/// core, each slot line the producer is about to write is still in the
/// consumer's cache from the previous lap, and fetching it back with write
/// intent costs a slow round trip that the push would otherwise wait for.
/// Asking four lines early overlaps those trips. Measured with two threads,
/// alternating per round against rtrb: far placement (raw round trip
/// ~450-500 ns, 298 rounds) 1.04x rtrb without, 1.24x one line ahead, 1.34x
/// two, 1.74x four; 36 other far rounds 0.64x without, 0.95x four lines, 0.93x
/// six; a read prefetch (PREFETCHT0) does not help (0.84x). Two processes, far
/// (24 rounds): 0.62x without, 0.85x with. Near placement: no difference
/// across processes (0.92x both, 29 rounds); eight lines ahead cost threads 30%.
///
/// Only a line whose slot is free by the cached `head` is asked for. When the
/// ring is (nearly) full, the slot four lines ahead of `tail` is the one four
/// lines ahead of `head`, which still holds a value the consumer is about to
/// read: taking that line away from it made the consumer slower and kept the
/// ring full. Measured across processes (`interleaved/one-by-one`, guarded
/// against unguarded alternating per round, four runs of 60 rounds): 1.29x,
/// 1.39x, 1.04x, 1.23x (far rounds 1.23-1.92x, near 1.03-1.35x).
const PREFETCH_AHEAD: usize = 256;

/// Why a push did not happen; the value comes back.
#[derive(Debug)]
pub enum PushError<T> {
    /// The ring is full.
    Full(T),
    /// Still full when the timeout ran out.
    Timeout(T),
    /// The ring is corrupted (a peer wrote impossible indices).
    Corrupted(T, Corrupted),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(value) | PushError::Timeout(value) | PushError::Corrupted(value, _) => {
                value
            }
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("ring is full"),
            PushError::Timeout(_) => f.write_str("ring stayed full until the timeout"),
            PushError::Corrupted(_, error) => write!(f, "{error}"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for PushError<T> {}

/// A ring operation found impossible indices in the segment (a buggy or hostile
/// peer wrote them). The full [`Error::Corrupted`] is boxed inside, so that the
/// `Result` of every push and pop stays two words: a large error type on the
/// hot path costs more than the ring operation itself.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Corrupted(Box<Error>);

impl Corrupted {
    pub(crate) fn new(error: Error) -> Corrupted {
        Corrupted(Box::new(error))
    }

    /// The error, naming the segment and the values found.
    pub fn into_error(self) -> Error {
        *self.0
    }
}

impl From<Corrupted> for Error {
    fn from(corrupted: Corrupted) -> Error {
        corrupted.into_error()
    }
}

/// What the hot paths need of a ring, copied into each handle: the handles
/// then read nothing of the [`SpscRing`] value they borrow. (When both handles
/// lived in one process, reading `base` and `capacity` through the shared ring
/// value put that memory on a cache line next to the producer's own counters on
/// the stack: false sharing that halved one-by-one throughput between threads.)
struct Raw<T> {
    base: NonNull<u8>,
    capacity: u64,
    _type: PhantomData<T>,
}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Raw<T> {}

impl<T> Cells<T> for Raw<T> {
    #[inline(always)]
    unsafe fn write(&self, position: u64, value: T) {
        // SAFETY: slot() is in bounds and aligned; the caller has the slot to
        // itself (protocol::Cells::write).
        unsafe { self.slot(position).write(value) }
    }

    #[inline(always)]
    unsafe fn read(&self, position: u64) -> T {
        // SAFETY: slot() is in bounds and aligned; the slot is published to us.
        // A volatile read, because a buggy or hostile producer might write it
        // anyway: then we get wrong bytes (any bytes are a valid T: Pod), not
        // undefined behaviour from a compiler that assumed the memory stable.
        unsafe { self.slot(position).read_volatile() }
    }
}

// SAFETY: a pointer into the ring's mapping (which outlives every handle: they
// borrow the ring) and its capacity; what may be done through it is governed
// by the handle that holds it, as for a `&SpscRing<T>`.
unsafe impl<T: Send> Send for Raw<T> {}

impl<T> Raw<T> {
    #[inline]
    fn word32(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset + 4 <= SLOTS && offset % 4 == 0);
        // SAFETY: a control-line offset below SLOTS, inside the validated region
        // and 4-aligned (the region is page-aligned); accessed only atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    #[inline]
    fn word64(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= SLOTS && offset % 8 == 0);
        // SAFETY: as in word32, 8-aligned.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// The slot for `position`.
    #[inline]
    fn slot(&self, position: u64) -> *mut T {
        let index = (position & (self.capacity - 1)) as usize;
        // SAFETY: index < capacity, and the region holds `capacity` slots after
        // SLOTS (validated at open/create); SLOTS is 128-aligned, align_of::<T>()
        // <= 128, so the slot is aligned.
        unsafe { self.base.as_ptr().add(SLOTS).cast::<T>().add(index) }
    }

    /// Splits `count` positions from `position` into the run up to the end of the
    /// slot array and the run from its start: `(first, second)`, summing to `count`.
    #[inline]
    fn runs(&self, position: u64, count: u64) -> (usize, usize) {
        let index = position & (self.capacity - 1);
        let first = count.min(self.capacity - index);
        (first as usize, (count - first) as usize)
    }

    /// Asks for write ownership of the slot line [`PREFETCH_AHEAD`] bytes
    /// after the slot for `tail` (wrapping), if that slot is free by `head`
    /// (the producer's cached view of it): otherwise it holds a value the
    /// consumer has yet to read, and taking its line would slow the consumer.
    #[inline(always)]
    fn prefetch_ahead(&self, tail: u64, head: u64) {
        if let Some(ahead) = free_ahead::<T>(tail, head, self.capacity) {
            sys::prefetch_write(self.slot(ahead).cast());
        }
    }

    /// Wakes the other side if it announced that it sleeps on `offset`.
    #[inline]
    fn wake(&self, offset: usize) {
        let word = self.word32(offset);
        if word.load(Ordering::Relaxed) != 0 {
            wake_sleeper(word);
        }
    }
}

/// The rare half of [`Raw::wake`], out of line so that the push and pop loops
/// that inline `wake` carry no call.
#[cold]
#[inline(never)]
fn wake_sleeper(word: &AtomicU32) {
    word.store(0, Ordering::Release);
    sys::futex_wake(word, 1);
}

/// The position [`PREFETCH_AHEAD`] bytes after `tail`, if its slot is free
/// while the consumer stands at `head`. Wrapping on purpose: this only picks a
/// line to prefetch, and must not panic near `u64::MAX` (the push itself
/// reports impossible positions).
#[inline(always)]
fn free_ahead<T>(tail: u64, head: u64, capacity: u64) -> Option<u64> {
    let ahead = tail.wrapping_add((PREFETCH_AHEAD / std::mem::size_of::<T>()).max(1) as u64);
    (ahead.wrapping_sub(head) < capacity).then_some(ahead)
}

/// Whether the slot for `position` starts a cache line. The slot array starts
/// 128-aligned (the region is page-aligned), so position times size says
/// where a slot falls in its line; for a power-of-two size this folds to a
/// mask test on the position, with nothing loaded. (In a ring whose slots
/// take less than a line in all, or not a whole number of lines, the answer
/// drifts after a wrap: it only decides where a prefetch goes.)
#[inline(always)]
fn starts_line<T>(position: u64) -> bool {
    let size = std::mem::size_of::<T>();
    (position as usize).wrapping_mul(size) % 64 < size
}

/// A single-producer single-consumer ring of `T` in shared memory.
///
/// The segment holds the header (kind "spsc ring", element type and capacity,
/// checked on open), then the control lines and `capacity` slots:
///
/// | offset | contents |
/// |---:|---|
/// | 384 | `tail`: u64 position of the next write; written only by the producer |
/// | 512 | `head`: u64 position of the next read; written only by the consumer |
/// | 640 | futex words: producer sleeping (u32), consumer sleeping (u32); "a waker could not register for membarrier" (u32, sticky) |
/// | 768 | claims: producer, consumer (u64 each: generation << 32 \| pid, pid 0 when free); their records (u64 each: start time << 24 \| generation's low 24 bits) |
/// | 896 | the slots: position `p` lives in slot `p % capacity` |
///
/// Positions only grow; `tail - head` is the fill level. Each side keeps its own
/// position locally and a cached copy of the other's, reloaded (Acquire, pairing
/// with the other side's Release store) only when the ring looks full or empty.
/// Every index read from the segment is validated (`head <= tail`,
/// `tail - head <= capacity`, and `head` at least `capacity` below
/// `u64::MAX`, which no ring reaches in centuries of use); an impossible
/// value is [`Error::Corrupted`], never an out-of-bounds access, an
/// arithmetic overflow or a panic, in debug and release builds alike.
///
/// One producer and one consumer handle exist at a time, claimed in the segment
/// by process id and start time, with the generation scheme of the lock (see
/// [`ShmMutex`](crate::ShmMutex)): a claim is judged on its own record and taken
/// over with a CAS from the whole observed claim word, so only the claim that
/// was judged dead is ever taken. A claim whose process has died is taken over,
/// so a restarted consumer resumes at `head`: nothing that was not consumed is
/// lost (an item the dead consumer had read but not yet released is delivered
/// again).
///
/// ```
/// use shm_typed::{Location, SpscRing};
///
/// let ring = SpscRing::<u64>::create(Location::Private, 1024)?;
/// let mut producer = ring.producer()?;     // in one process ...
/// let mut consumer = ring.consumer()?;     // ... and in another
/// producer.push(7).unwrap();
/// assert_eq!(producer.push_slice(&[8, 9])?, 2);
/// assert_eq!(consumer.pop()?, Some(7));
/// let mut out = [0u64; 4];
/// assert_eq!(consumer.pop_into(&mut out)?, 2);
/// assert_eq!(&out[..2], &[8, 9]);
/// drop((producer, consumer));
/// ring.remove()?;
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub struct SpscRing<T, const WAKE: bool = true> {
    raw: Raw<T>,
    region: Region,
    backend: Backend,
    location: Location,
    _type: PhantomData<T>,
}

// SAFETY: the ring is an owned mapping plus plain data; the handles, which do the
// work, borrow it and are themselves only Send.
unsafe impl<T: Send, const WAKE: bool> Send for SpscRing<T, WAKE> {}
// SAFETY: shared use only claims handles (atomic CAS on the claim words) and reads
// atomics; slot access happens through the claimed, exclusive handles.
unsafe impl<T: Send, const WAKE: bool> Sync for SpscRing<T, WAKE> {}

impl<T: Pod, const WAKE: bool> SpscRing<T, WAKE> {
    fn spec(location: &Location, capacity: u64) -> Result<Spec> {
        let align = std::mem::align_of::<T>();
        let size = std::mem::size_of::<T>();
        let unsupported = |what: String| Error::Unsupported {
            location: location.clone(),
            what,
        };
        if !capacity.is_power_of_two() {
            return Err(unsupported(format!(
                "capacity {capacity} is not a power of two"
            )));
        }
        if align > 128 || size == 0 {
            return Err(unsupported(format!(
                "element size {size} / alignment {align}: need a non-zero size and alignment <= 128"
            )));
        }
        let slots = capacity
            .checked_mul(size as u64)
            .filter(|&bytes| bytes <= (1 << 46))
            .ok_or_else(|| unsupported(format!("capacity {capacity} is too large")))?;
        Ok(Spec {
            kind: if WAKE {
                Kind::SpscRing
            } else {
                Kind::SpinningSpscRing
            },
            payload_offset: PAYLOAD_OFFSET as u64,
            payload_size: (SLOTS - PAYLOAD_OFFSET) as u64 + slots,
            payload_align: align as u32,
            element_size: size as u32,
            capacity,
            type_name: header::default_type_name::<T>(),
        })
    }

    /// Bytes a ring of `capacity` slots takes (header included).
    pub(crate) fn segment_len(location: &Location, capacity: u64) -> Result<usize> {
        Self::spec(location, capacity).map(|spec| spec.segment_len())
    }

    fn create_at(location: impl Into<Location>, capacity: u64) -> Result<Self> {
        let location = location.into();
        let spec = Self::spec(&location, capacity)?;
        let (region, backend, location) = create_segment(&location, &spec, Mode::OWNER_RW, |_| {})?;
        Ok(Self::from_parts(region, backend, location, capacity))
    }

    fn open_at(location: impl Into<Location>, capacity: u64) -> Result<Self> {
        let location = location.into();
        let spec = Self::spec(&location, capacity)?;
        let (region, backend) = open_segment(&location, &spec, Duration::from_secs(1))?;
        Ok(Self::from_parts(region, backend, location, capacity))
    }

    /// Makes a ring of either kind in a blank heap region (the public
    /// constructors fix the kind; tests cover both through this).
    pub(crate) fn create_in_region(region: Region, capacity: u64) -> Result<Self> {
        let spec = Self::spec(&Location::Heap, capacity)?;
        header::initialize(&region, &Location::Heap, &spec, |_| {})?;
        Ok(Self::from_parts(
            region,
            Backend::Heap,
            Location::Heap,
            capacity,
        ))
    }

    /// Opens a ring of either kind in a region, waiting at most `init_timeout`
    /// for its creator (a store passes its own; the public `open_in`s 1 s).
    pub(crate) fn open_in_region(
        region: Region,
        capacity: u64,
        init_timeout: Duration,
    ) -> Result<Self> {
        let spec = Self::spec(&Location::Heap, capacity)?;
        header::open_region(&region, &spec, init_timeout)?;
        Ok(Self::from_parts(
            region,
            Backend::Heap,
            Location::Heap,
            capacity,
        ))
    }

    /// The region has been checked to hold the control lines and all slots.
    fn from_parts(region: Region, backend: Backend, location: Location, capacity: u64) -> Self {
        SpscRing {
            raw: Raw {
                base: NonNull::new(region.as_ptr()).expect("regions are non-null"),
                capacity,
                _type: PhantomData,
            },
            region,
            backend,
            location,
            _type: PhantomData,
        }
    }

    /// The ring's capacity in elements.
    pub fn capacity(&self) -> u64 {
        self.raw.capacity
    }

    /// Where the ring is ([`Location::Id`] for a ring created as private).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The fill level as the segment shows it now (validated).
    pub fn len(&self) -> Result<u64> {
        let (head, tail) = self.load_positions();
        Ok(self.check_indices(head, tail)?)
    }

    /// `(head, tail)` as the segment shows them now: the next position the
    /// consumer reads and the next the producer writes (validated).
    pub fn positions(&self) -> Result<(u64, u64)> {
        let (head, tail) = self.load_positions();
        self.check_indices(head, tail)?;
        Ok((head, tail))
    }

    /// `(head, tail)` as the segment shows them now, unchecked.
    fn load_positions(&self) -> (u64, u64) {
        let head = self.raw.word64(HEAD).load(Ordering::Acquire);
        let tail = self.raw.word64(TAIL).load(Ordering::Acquire);
        (head, tail)
    }

    /// Whether the ring holds nothing now.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|len| len == 0)
    }

    /// The fill level, if `head` and `tail` are possible: `head <= tail <=
    /// head + capacity`, and `head + capacity <= u64::MAX` (so that no
    /// position the producer may write next passes `u64::MAX`; see
    /// [`protocol::SpscProducer`]).
    fn check_indices(&self, head: u64, tail: u64) -> Result<u64, Corrupted> {
        let capacity = self.raw.capacity;
        match tail.checked_sub(head) {
            Some(len) if len <= capacity && head.checked_add(capacity).is_some() => Ok(len),
            _ => Err(self.corrupted(format!(
                "head {head} and tail {tail} are impossible for capacity {capacity}"
            ))),
        }
    }

    /// The error for an impossible index, naming the segment.
    #[cold]
    #[inline(never)]
    fn impossible(&self, index: &str, other: &str, what: Impossible) -> Corrupted {
        self.corrupted(format!(
            "{index} went from {} to {} with {other} {}",
            what.was, what.now, what.own
        ))
    }

    #[cold]
    #[inline(never)]
    fn corrupted(&self, what: String) -> Corrupted {
        Corrupted::new(Error::Corrupted {
            location: self.location.clone(),
            what,
        })
    }

    /// Claims a role: CAS `next generation << 32 | our pid` into its claim
    /// word, taking over a claim whose process is dead (gone, a zombie, or its
    /// pid reused by a process started at another time), judged on that
    /// claim's own record (see [`liveness`](crate::liveness)).
    fn claim(&self, role: &'static str, claim_offset: usize, record_offset: usize) -> Result<()> {
        let (pid, start) = (sys::current_pid(), own_process_start());
        let word = self.raw.word64(claim_offset);
        let record = self.raw.word64(record_offset);
        let mut observed = word.load(Ordering::Acquire);
        loop {
            let holder = (observed & liveness::ID_MASK) as u32;
            if observed & liveness::ID_MASK != 0 {
                let recorded =
                    liveness::recorded_start(record.load(Ordering::Acquire), generation(observed));
                // Claims are not namespace-aware yet (the lock is): a claim is
                // judged in the judge's pid and time namespace.
                if holder == pid || !liveness::is_process_dead(holder, recorded) {
                    return Err(Error::Unsupported {
                        location: self.location.clone(),
                        what: format!("the {role} is already claimed by live pid {holder}"),
                    });
                }
            }
            // Free, or dead: take it from exactly the observed claim.
            let won = liveness::next(observed, pid);
            match word.compare_exchange(observed, won, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    record.store(liveness::record(start, generation(won)), Ordering::Release);
                    return Ok(());
                }
                Err(now) => observed = now,
            }
        }
    }

    /// Gives up our claim: only the very claim we made (a claim taken over
    /// from us, had we been judged dead, is left alone).
    fn release_claim(&self, claim_offset: usize) {
        let word = self.raw.word64(claim_offset);
        let claimed = word.load(Ordering::Relaxed);
        if claimed & liveness::ID_MASK == u64::from(sys::current_pid()) {
            let _ = word.compare_exchange(
                claimed,
                claimed & !liveness::ID_MASK,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Claims the producer side.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] if a live process holds it (this one included),
    /// [`Error::Corrupted`] if the indices are impossible.
    pub fn producer(&self) -> Result<Producer<'_, T, WAKE>> {
        self.claim("producer", PRODUCER_CLAIM, PRODUCER_CLAIM_RECORD)?;
        if WAKE {
            blocking::join_as_waker(self.raw.word32(UNFENCED));
        }
        let tail = self.raw.word64(TAIL).load(Ordering::Acquire);
        let head = self.raw.word64(HEAD).load(Ordering::Acquire);
        if let Err(corrupted) = self.check_indices(head, tail) {
            self.release_claim(PRODUCER_CLAIM);
            return Err(corrupted.into_error());
        }
        Ok(Producer {
            ring: self,
            raw: self.raw,
            core: protocol::SpscProducer {
                tail,
                cached_head: head,
            },
            prefetch: sys::has_prefetch_write(),
            _not_sync: PhantomData,
        })
    }

    /// Claims the consumer side; it resumes where the ring's `head` stands.
    ///
    /// # Errors
    ///
    /// As [`producer`](SpscRing::producer).
    pub fn consumer(&self) -> Result<Consumer<'_, T, WAKE>> {
        self.claim("consumer", CONSUMER_CLAIM, CONSUMER_CLAIM_RECORD)?;
        if WAKE {
            blocking::join_as_waker(self.raw.word32(UNFENCED));
        }
        let head = self.raw.word64(HEAD).load(Ordering::Acquire);
        let tail = self.raw.word64(TAIL).load(Ordering::Acquire);
        if let Err(corrupted) = self.check_indices(head, tail) {
            self.release_claim(CONSUMER_CLAIM);
            return Err(corrupted.into_error());
        }
        Ok(Consumer {
            ring: self,
            raw: self.raw,
            core: protocol::SpscConsumer {
                head,
                cached_tail: tail,
            },
            _not_sync: PhantomData,
        })
    }

    /// Removes the segment (`IPC_RMID` or `shm_unlink`); mappings stay usable.
    pub fn remove(&self) -> Result<()> {
        remove_backend(&self.backend)
    }

    /// The region holding the ring.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Gives up the ring and returns its region.
    pub fn into_region(self) -> Region {
        self.region
    }

    /// Announces that we sleep on `offset`, then sleeps unless `ready` says the
    /// wait is over; never past `deadline`, and at most a nap
    /// ([`blocking::fence_wakers`] says how long).
    fn nap(&self, offset: usize, deadline: Instant, ready: impl Fn() -> bool) {
        let word = self.raw.word32(offset);
        word.store(1, Ordering::SeqCst);
        // The full fence orders our announcement before the re-check; the
        // barrier orders the peer's side (see fence_wakers).
        fence(Ordering::SeqCst);
        let nap = blocking::fence_wakers(self.raw.word32(UNFENCED));
        if !ready() {
            let left = deadline.saturating_duration_since(Instant::now());
            sys::futex_wait(word, 1, left.min(nap));
        }
        word.store(0, Ordering::Relaxed);
    }
}

impl<T: Pod> SpscRing<T> {
    /// Creates a ring of `capacity` slots (a power of two) at `location`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a capacity that is not a power of two; OS errors
    /// (an existing key, ...) as [`Error::Sys`].
    pub fn create(location: impl Into<Location>, capacity: u64) -> Result<SpscRing<T>> {
        Self::create_at(location, capacity)
    }

    /// Opens the ring at `location`, checking kind, element type and capacity.
    pub fn open(location: impl Into<Location>, capacity: u64) -> Result<SpscRing<T>> {
        Self::open_at(location, capacity)
    }

    /// Makes a ring in a blank heap region (tests, single process).
    pub fn create_in(region: Region, capacity: u64) -> Result<SpscRing<T>> {
        Self::create_in_region(region, capacity)
    }

    /// Opens a ring in a region (validating the header).
    pub fn open_in(region: Region, capacity: u64) -> Result<SpscRing<T>> {
        Self::open_in_region(region, capacity, Duration::from_secs(1))
    }
}

/// A ring whose sides never sleep: [`SpscRing`] without the blocking calls,
/// and without what they cost every other call.
///
/// A ring with blocking calls must let a push wake a consumer that fell
/// asleep just before it, and only a load after the push's publishing store
/// can see that: one load and one branch after every push and every pop.
/// With the consumer on a nearby core, that check was what one-by-one
/// throughput lost to rtrb (which cannot block); a ring created as spinning
/// has no sleepers, so its handles skip it. Its header records the kind
/// ("spinning spsc ring"), and opening it as an [`SpscRing`] (or the other
/// way round) is an error, so no process can sleep on a ring whose peer
/// would never wake it. Waiting is the caller's: spin, yield or sleep
/// between attempts as suits.
///
/// ```
/// use shm_typed::{Location, SpinningSpscRing};
///
/// let ring = SpinningSpscRing::<u64>::create_spinning(Location::Private, 1024)?;
/// let (mut producer, mut consumer) = (ring.producer()?, ring.consumer()?);
/// producer.push(7).unwrap();
/// assert_eq!(consumer.pop()?, Some(7));
/// assert_eq!(consumer.pop()?, None);
/// drop((producer, consumer));
/// ring.remove()?;
/// # Ok::<(), shm_typed::Error>(())
/// ```
pub type SpinningSpscRing<T> = SpscRing<T, false>;

impl<T: Pod> SpscRing<T, false> {
    /// Creates a spinning ring of `capacity` slots (a power of two) at
    /// `location`. Errors as for [`SpscRing::create`].
    pub fn create_spinning(location: impl Into<Location>, capacity: u64) -> Result<Self> {
        Self::create_at(location, capacity)
    }

    /// Opens the spinning ring at `location`, checking kind, element type and
    /// capacity.
    pub fn open_spinning(location: impl Into<Location>, capacity: u64) -> Result<Self> {
        Self::open_at(location, capacity)
    }

    /// Makes a spinning ring in a blank heap region (tests, single process).
    pub fn create_spinning_in(region: Region, capacity: u64) -> Result<Self> {
        Self::create_in_region(region, capacity)
    }

    /// Opens a spinning ring in a region (validating the header).
    pub fn open_spinning_in(region: Region, capacity: u64) -> Result<Self> {
        Self::open_in_region(region, capacity, Duration::from_secs(1))
    }
}

impl<T, const WAKE: bool> fmt::Debug for SpscRing<T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscRing")
            .field("type", &std::any::type_name::<T>())
            .field("spinning", &!WAKE)
            .field("capacity", &self.raw.capacity)
            .field("location", &self.location)
            .finish()
    }
}

/// The producer side of an [`SpscRing`] (one per ring at a time).
pub struct Producer<'a, T: Pod, const WAKE: bool = true> {
    ring: &'a SpscRing<T, WAKE>,
    /// The ring's hot-path data, copied (see [`Raw`]).
    raw: Raw<T>,
    /// Our `tail` (we are its only writer) and the consumer's `head` as last seen.
    core: protocol::SpscProducer,
    /// Whether `push` asks for the slot lines ahead (the CPU has PREFETCHW).
    prefetch: bool,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<'a, T: Pod, const WAKE: bool> Producer<'a, T, WAKE> {
    /// Free slots, reloading the consumer's position only when `needed` are not
    /// free by the cached one (validated: see [`protocol::SpscProducer::free`]).
    #[inline(always)]
    fn free(&mut self, needed: u64) -> Result<u64, Corrupted> {
        self.core
            .free(self.raw.word64(HEAD), self.raw.capacity, needed)
            .map_err(|what| self.ring.impossible("head", "tail", what))
    }

    #[inline(always)]
    fn publish(&mut self, count: u64) {
        self.core.publish(self.raw.word64(TAIL), count);
        if WAKE {
            self.raw.wake(CONSUMER_SLEEPING);
        }
    }

    /// Pushes one value, or hands it back if the ring is full.
    #[inline(always)]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        let raw = &self.raw;
        match self
            .core
            .push(raw.word64(HEAD), raw.word64(TAIL), raw, raw.capacity, value)
        {
            Push::Done => {
                if starts_line::<T>(self.core.tail) && self.prefetch {
                    raw.prefetch_ahead(self.core.tail, self.core.cached_head);
                }
                if WAKE {
                    raw.wake(CONSUMER_SLEEPING);
                }
                Ok(())
            }
            Push::Full(value) => Err(PushError::Full(value)),
            Push::Broken(value, what) => Err(PushError::Corrupted(
                value,
                self.ring.impossible("head", "tail", what),
            )),
        }
    }

    /// Pushes as many values from `values` as fit; returns how many.
    pub fn push_slice(&mut self, values: &[T]) -> Result<usize, Corrupted> {
        self.push_slice_with(values, std::ptr::copy_nonoverlapping::<T>)
    }

    /// Like [`push_slice`](Producer::push_slice), but writes the slots with
    /// non-temporal (streaming) stores, which go to memory without first
    /// fetching each cache line into this CPU's cache.
    ///
    /// Which one is faster depends on where the consumer runs. When it shares
    /// a cache with us, `push_slice` wins: the lines move straight from our
    /// cache to its. When it is far away (another CCX or socket), every line
    /// `push_slice` writes must first be fetched back from the consumer's
    /// cache, one round trip per line; streaming stores skip that. On the
    /// 2-vCPU VM of the README, u64 in batches of 4096 across processes:
    /// `push_slice` 2.2-3.1 G items/s near and 0.5-0.6 G/s far, this 1.2-1.5 G/s
    /// in both. Elsewhere than x86-64 (and under Miri) this is `push_slice`.
    pub fn push_slice_streaming(&mut self, values: &[T]) -> Result<usize, Corrupted> {
        self.push_slice_with(values, copy_streaming::<T>)
    }

    /// Copies as many of `values` as fit into the free slots with `copy` (a
    /// `copy_nonoverlapping` equivalent), then publishes them.
    #[inline(always)]
    fn push_slice_with(
        &mut self,
        values: &[T],
        copy: unsafe fn(*const T, *mut T, usize),
    ) -> Result<usize, Corrupted> {
        let free = self.free(values.len() as u64)?;
        let count = (values.len() as u64).min(free);
        // At most two contiguous runs: up to the end of the slots, then from the start.
        let (first, second) = self.raw.runs(self.core.tail, count);
        // SAFETY: positions tail..tail+count are free (count <= free), unread by
        // the consumer until published, and written only by us; each run lies
        // inside the slot array (runs() splits at its end). `values` holds
        // `first + second` values and cannot overlap those slots: no reference
        // to a free slot exists (read chunks end before their slots are
        // released, and write chunks borrow this producer).
        unsafe {
            copy(values.as_ptr(), self.raw.slot(self.core.tail), first);
            copy(values.as_ptr().add(first), self.raw.slot(0), second);
        }
        if count > 0 {
            self.publish(count);
        }
        Ok(count as usize)
    }

    /// Up to `len` free slots to fill in place, without copying through a
    /// buffer; [`WriteChunk::commit`] publishes them.
    ///
    /// ```
    /// use shm_typed::{Location, SpscRing};
    ///
    /// let ring = SpscRing::<u32>::create(Location::Private, 8)?;
    /// ring.remove()?;
    /// let mut producer = ring.producer()?;
    /// let mut chunk = producer.write_chunk(3)?;
    /// let (first, second) = chunk.as_mut_slices();
    /// for (slot, value) in first.iter_mut().chain(second).zip(10..) {
    ///     *slot = value;
    /// }
    /// chunk.commit_all();
    ///
    /// let mut consumer = ring.consumer()?;
    /// let chunk = consumer.read_chunk(8)?;
    /// assert_eq!(chunk.iter().collect::<Vec<_>>(), [10, 11, 12]);
    /// chunk.commit_all();
    /// assert_eq!(consumer.pop()?, None);
    /// # Ok::<(), shm_typed::Error>(())
    /// ```
    pub fn write_chunk(&mut self, len: usize) -> Result<WriteChunk<'_, 'a, T, WAKE>, Corrupted> {
        let free = self.free(len as u64)?;
        let count = (len as u64).min(free);
        let (first, second) = self.raw.runs(self.core.tail, count);
        Ok(WriteChunk {
            start: self.raw.slot(self.core.tail),
            wrapped: self.raw.slot(0),
            first,
            second,
            producer: self,
        })
    }

    /// Slots free now (reloading the consumer's position).
    pub fn free_slots(&mut self) -> Result<u64, Corrupted> {
        self.free(self.raw.capacity)
    }

    /// The ring.
    pub fn ring(&self) -> &SpscRing<T, WAKE> {
        self.ring
    }
}

impl<'a, T: Pod> Producer<'a, T> {
    /// Pushes, waiting up to `timeout` for space: spins, then sleeps on a futex
    /// the consumer wakes (it makes that syscall only when we announced a sleep).
    pub fn push_blocking(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        let ring = self.ring;
        // A failed push leaves our tail where it is.
        let tail = self.core.tail;
        retry(
            value,
            timeout,
            |value| match self.push(value) {
                Err(PushError::Full(back)) => ControlFlow::Continue(back),
                other => ControlFlow::Break(other),
            },
            |deadline| {
                ring.nap(PRODUCER_SLEEPING, deadline, || {
                    // Only decides whether to sleep: wrapping on purpose, as
                    // the head read here is not validated (the push is).
                    let head = ring.raw.word64(HEAD).load(Ordering::SeqCst);
                    tail.wrapping_sub(head) < ring.raw.capacity
                })
            },
        )
        .unwrap_or_else(|value| Err(PushError::Timeout(value)))
    }
}

impl<T: Pod, const WAKE: bool> Drop for Producer<'_, T, WAKE> {
    fn drop(&mut self) {
        self.ring.release_claim(PRODUCER_CLAIM);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for Producer<'_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.core.tail)
            .field("cached_head", &self.core.cached_head)
            .finish()
    }
}

/// The consumer side of an [`SpscRing`] (one per ring at a time).
pub struct Consumer<'a, T: Pod, const WAKE: bool = true> {
    ring: &'a SpscRing<T, WAKE>,
    /// The ring's hot-path data, copied (see [`Raw`]).
    raw: Raw<T>,
    /// Our `head` (we are its only writer) and the producer's `tail` as last seen.
    core: protocol::SpscConsumer,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<'a, T: Pod, const WAKE: bool> Consumer<'a, T, WAKE> {
    /// Items available, reloading the producer's position only when fewer than
    /// `wanted` are known (validated: see [`protocol::SpscConsumer::available`]).
    #[inline(always)]
    fn available(&mut self, wanted: u64) -> Result<u64, Corrupted> {
        self.core
            .available(self.raw.word64(TAIL), self.raw.capacity, wanted)
            .map_err(|what| self.ring.impossible("tail", "head", what))
    }

    #[inline(always)]
    fn release(&mut self, count: u64) {
        self.core.release(self.raw.word64(HEAD), count);
        if WAKE {
            self.raw.wake(PRODUCER_SLEEPING);
        }
    }

    /// Pops one value, or `None` if the ring is empty.
    #[inline(always)]
    pub fn pop(&mut self) -> Result<Option<T>, Corrupted> {
        let raw = &self.raw;
        match self
            .core
            .pop(raw.word64(HEAD), raw.word64(TAIL), raw, raw.capacity)
        {
            Pop::Value(value) => {
                if WAKE {
                    raw.wake(PRODUCER_SLEEPING);
                }
                Ok(Some(value))
            }
            Pop::Empty => Ok(None),
            Pop::Broken(what) => Err(self.ring.impossible("tail", "head", what)),
        }
    }

    /// Pops up to `out.len()` values into `out`; returns how many.
    pub fn pop_into(&mut self, out: &mut [T]) -> Result<usize, Corrupted> {
        let available = self.available(out.len() as u64)?;
        let count = (out.len() as u64).min(available) as usize;
        let (first, second) = self.raw.runs(self.core.head, count as u64);
        for (run, (start, len)) in [
            (self.raw.slot(self.core.head), first),
            (self.raw.slot(0), second),
        ]
        .into_iter()
        .enumerate()
        {
            let out = if run == 0 {
                &mut out[..first]
            } else {
                &mut out[first..first + len]
            };
            for (index, slot) in out.iter_mut().enumerate() {
                // SAFETY: positions head..head+count are published and not
                // rewritten by a well-behaved producer until we release them; each
                // run lies inside the slot array. Volatile as in pop.
                *slot = unsafe { start.add(index).read_volatile() };
            }
        }
        if count > 0 {
            self.release(count as u64);
        }
        Ok(count)
    }

    /// Up to `len` waiting values to read in place; [`ReadChunk::commit`]
    /// releases them. See [`Producer::write_chunk`] for an example.
    pub fn read_chunk(&mut self, len: usize) -> Result<ReadChunk<'_, 'a, T, WAKE>, Corrupted> {
        let available = self.available(len as u64)?;
        let count = (len as u64).min(available);
        let (first, second) = self.raw.runs(self.core.head, count);
        Ok(ReadChunk {
            start: self.raw.slot(self.core.head),
            wrapped: self.raw.slot(0),
            first,
            second,
            consumer: self,
        })
    }

    /// Items waiting now (reloading the producer's position).
    pub fn len(&mut self) -> Result<u64, Corrupted> {
        self.available(self.raw.capacity + 1)
    }

    /// Whether nothing is waiting now.
    pub fn is_empty(&mut self) -> Result<bool, Corrupted> {
        self.len().map(|len| len == 0)
    }

    /// The ring.
    pub fn ring(&self) -> &SpscRing<T, WAKE> {
        self.ring
    }
}

impl<'a, T: Pod> Consumer<'a, T> {
    /// Pops, waiting up to `timeout` for a value: spins, then sleeps on a futex
    /// the producer wakes. `Ok(None)` if the timeout ran out.
    pub fn pop_blocking(&mut self, timeout: Duration) -> Result<Option<T>, Corrupted> {
        let ring = self.ring;
        // A failed pop leaves our head where it is.
        let head = self.core.head;
        retry(
            (),
            timeout,
            |()| match self.pop() {
                Ok(None) => ControlFlow::Continue(()),
                other => ControlFlow::Break(other),
            },
            |deadline| {
                ring.nap(CONSUMER_SLEEPING, deadline, || {
                    ring.raw.word64(TAIL).load(Ordering::SeqCst) != head
                })
            },
        )
        .unwrap_or(Ok(None))
    }
}

impl<T: Pod, const WAKE: bool> Drop for Consumer<'_, T, WAKE> {
    fn drop(&mut self) {
        self.ring.release_claim(CONSUMER_CLAIM);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for Consumer<'_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.core.head)
            .field("cached_tail", &self.core.cached_tail)
            .finish()
    }
}

/// Free slots claimed by [`Producer::write_chunk`], written in place. Nothing is
/// visible to the consumer until [`commit`](WriteChunk::commit); dropping the
/// chunk publishes nothing.
pub struct WriteChunk<'p, 'a, T: Pod, const WAKE: bool = true> {
    producer: &'p mut Producer<'a, T, WAKE>,
    start: *mut T,
    wrapped: *mut T,
    first: usize,
    second: usize,
}

impl<T: Pod, const WAKE: bool> WriteChunk<'_, '_, T, WAKE> {
    /// How many slots the chunk holds (fewer than asked for if the ring had
    /// less room).
    pub fn len(&self) -> usize {
        self.first + self.second
    }

    /// Whether the chunk holds no slot (the ring is full).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slots, as the part up to the end of the ring and the part from its
    /// start. They hold whatever was there before (any bytes are a valid `T`).
    pub fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        // SAFETY: both runs lie inside the slot array (runs() splits at its end),
        // are free (the consumer does not read them until we publish) and are
        // written by nobody else (we are the claimed producer): the protocol
        // grants this handle exclusive access until commit, which needs `self`.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.start, self.first),
                std::slice::from_raw_parts_mut(self.wrapped, self.second),
            )
        }
    }

    /// Publishes the first `count` slots (at most [`len`](WriteChunk::len)).
    ///
    /// # Panics
    ///
    /// If `count` exceeds the chunk's length.
    pub fn commit(self, count: usize) {
        assert!(
            count <= self.len(),
            "commit {count} of a {}-slot chunk",
            self.len()
        );
        if count > 0 {
            self.producer.publish(count as u64);
        }
    }

    /// Publishes every slot of the chunk.
    pub fn commit_all(self) {
        let count = self.len();
        self.commit(count);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for WriteChunk<'_, '_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("len", &self.len())
            .finish()
    }
}

/// Waiting values claimed by [`Consumer::read_chunk`], read in place. Nothing is
/// released to the producer until [`commit`](ReadChunk::commit); dropping the
/// chunk releases nothing, so the values are read again.
pub struct ReadChunk<'c, 'a, T: Pod, const WAKE: bool = true> {
    consumer: &'c mut Consumer<'a, T, WAKE>,
    start: *const T,
    wrapped: *const T,
    first: usize,
    second: usize,
}

impl<T: Pod, const WAKE: bool> ReadChunk<'_, '_, T, WAKE> {
    /// How many values the chunk holds.
    pub fn len(&self) -> usize {
        self.first + self.second
    }

    /// Whether the chunk holds no value (the ring is empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the value at `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<T> {
        read_run_pair(self.start, self.wrapped, self.first, self.len(), index)
    }

    /// Copies of the values, in order.
    pub fn iter(&self) -> ChunkIter<'_, T> {
        ChunkIter {
            start: self.start,
            wrapped: self.wrapped,
            first: self.first,
            len: self.len(),
            index: 0,
            _chunk: PhantomData,
        }
    }

    /// The values in place, as the part up to the end of the ring and the part
    /// from its start.
    ///
    /// # Safety
    ///
    /// The producer must not write these slots while the slices live, which a
    /// correct producer never does (they are published and not yet released).
    /// A buggy or hostile producer that does makes these shared references
    /// undefined behaviour; [`get`](ReadChunk::get) and [`iter`](ReadChunk::iter)
    /// copy with volatile reads and need no such trust.
    pub unsafe fn as_slices(&self) -> (&[T], &[T]) {
        // SAFETY: both runs lie inside the slot array and are published; the
        // caller promises no concurrent writer.
        unsafe {
            (
                std::slice::from_raw_parts(self.start, self.first),
                std::slice::from_raw_parts(self.wrapped, self.second),
            )
        }
    }

    /// Releases the first `count` values (at most [`len`](ReadChunk::len)) to
    /// the producer.
    ///
    /// # Panics
    ///
    /// If `count` exceeds the chunk's length.
    pub fn commit(self, count: usize) {
        assert!(
            count <= self.len(),
            "commit {count} of a {}-value chunk",
            self.len()
        );
        if count > 0 {
            self.consumer.release(count as u64);
        }
    }

    /// Releases every value of the chunk.
    pub fn commit_all(self) {
        let count = self.len();
        self.commit(count);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for ReadChunk<'_, '_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk")
            .field("len", &self.len())
            .finish()
    }
}

/// The value at `index` of two runs (`first` values at `start`, the rest at
/// `wrapped`), read with a volatile copy; `None` past `len`.
fn read_run_pair<T: Pod>(
    start: *const T,
    wrapped: *const T,
    first: usize,
    len: usize,
    index: usize,
) -> Option<T> {
    let slot = if index < first {
        // SAFETY: index < first: inside the first run (a ReadChunk's invariant).
        unsafe { start.add(index) }
    } else if index < len {
        // SAFETY: index - first < len - first: inside the second run.
        unsafe { wrapped.add(index - first) }
    } else {
        return None;
    };
    // SAFETY: a published slot that a well-behaved producer does not rewrite
    // until the chunk is released; volatile, so a misbehaving one yields wrong
    // bytes rather than undefined behaviour.
    Some(unsafe { slot.read_volatile() })
}

/// Copies of a [`ReadChunk`]'s values, in order.
pub struct ChunkIter<'c, T: Pod> {
    start: *const T,
    wrapped: *const T,
    first: usize,
    len: usize,
    index: usize,
    _chunk: PhantomData<&'c T>,
}

impl<T: Pod> Iterator for ChunkIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let value = read_run_pair(self.start, self.wrapped, self.first, self.len, self.index)?;
        self.index += 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.index;
        (left, Some(left))
    }
}

impl<T: Pod> ExactSizeIterator for ChunkIter<'_, T> {}

impl<T: Pod> fmt::Debug for ChunkIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkIter")
            .field("left", &(self.len - self.index))
            .finish()
    }
}

/// Copies `count` values from `source` to `destination` with non-temporal
/// stores (16 bytes at a time; the unaligned ends with ordinary stores), then
/// fences (`sfence`): streaming stores are not ordered by x86's usual rules,
/// and the Release store that publishes them must not pass them.
///
/// # Safety
///
/// As `ptr::copy_nonoverlapping`: both runs valid for `count` values,
/// `destination` writable, the two not overlapping.
#[cfg(all(target_arch = "x86_64", not(miri)))]
unsafe fn copy_streaming<T>(source: *const T, destination: *mut T, count: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

    let bytes = count * std::mem::size_of::<T>();
    let (source, destination) = (source.cast::<u8>(), destination.cast::<u8>());
    let head = destination.align_offset(16).min(bytes);
    // SAFETY: the caller's contract covers all `bytes` bytes of both runs; each
    // piece below stays inside them; SSE2, which these intrinsics need, is part
    // of x86-64; the streamed stores go to 16-aligned addresses (after `head`).
    unsafe {
        std::ptr::copy_nonoverlapping(source, destination, head);
        let mut offset = head;
        while offset + 16 <= bytes {
            let chunk = _mm_loadu_si128(source.add(offset).cast::<__m128i>());
            _mm_stream_si128(destination.add(offset).cast::<__m128i>(), chunk);
            offset += 16;
        }
        std::ptr::copy_nonoverlapping(source.add(offset), destination.add(offset), bytes - offset);
        _mm_sfence();
    }
}

/// Elsewhere (and under Miri), an ordinary copy.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
unsafe fn copy_streaming<T>(source: *const T, destination: *mut T, count: usize) {
    // SAFETY: the caller's contract is copy_nonoverlapping's.
    unsafe { std::ptr::copy_nonoverlapping(source, destination, count) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_prefetches_only_free_slots() {
        // u64: the prefetch goes 32 positions (four lines) ahead of the tail.
        let capacity = 64;
        assert_eq!(free_ahead::<u64>(0, 0, capacity), Some(32));
        assert_eq!(free_ahead::<u64>(96, 80, capacity), Some(128));
        assert_eq!(free_ahead::<u64>(96, 64, capacity), None);
        // 32 ahead of tail 100 is position 132: its slot still holds position
        // 68, unread while the consumer stands at 64 or 68 ...
        assert_eq!(free_ahead::<u64>(100, 64, capacity), None);
        assert_eq!(free_ahead::<u64>(100, 68, capacity), None);
        // ... and free once the consumer has read it.
        assert_eq!(free_ahead::<u64>(100, 69, capacity), Some(132));
        // A full ring asks for nothing, a 16-slot one never (32 > 16).
        assert_eq!(free_ahead::<u64>(128, 64, capacity), None);
        assert_eq!(free_ahead::<u64>(5, 5, 16), None);
        // Large values: one slot ahead at least.
        assert_eq!(free_ahead::<[u8; 4096]>(7, 7, 2), Some(8));
        // Positions near the top of u64 wrap like the ring's own arithmetic.
        assert_eq!(
            free_ahead::<u64>(u64::MAX - 9, u64::MAX - 9, capacity),
            Some(22)
        );
    }

    #[test]
    fn line_starts_follow_the_slot_size() {
        assert!((0..64)
            .filter(|&p| starts_line::<u64>(p))
            .eq((0..64).step_by(8)));
        assert!((0..8).all(starts_line::<[u8; 64]>));
        assert!((0..16)
            .filter(|&p| starts_line::<[u8; 32]>(p))
            .eq((0..16).step_by(2)));
    }
}
