//! [`SpscRing`]: a single-producer single-consumer ring of `Pod` values in a
//! segment, shared by two processes without a syscall per item.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::lock::liveness::{self, generation, own_process_start};
use crate::ring::blocking::{self};
use crate::ring::protocol::{self, Impossible};
use crate::segment::format::{Kind, PAYLOAD_OFFSET};
use crate::segment::header::{self, Spec};
use crate::segment::region::Region;
use crate::segment::{Opening, Segment};
use crate::sys;

/// Where the ring's control lines start (right after the header and lock).
const CONTROL: usize = PAYLOAD_OFFSET;
/// Producer line: `tail`, the next position to write (written by the producer only).
const TAIL: usize = CONTROL;
/// The mailbox, in the producer's line beside `tail` (see
/// `protocol::Mailbox`): the stamp, then the value of the last one-by-one
/// push, for element types of at most 48 bytes. Bytes 8..64 of the line, so
/// that a consumer's poll of the stamp fetches the value with it.
const MAILBOX_STAMP: usize = CONTROL + 8;
const MAILBOX_VALUE: usize = CONTROL + 16;
const MAILBOX_WORDS: usize = 6;
// The mailbox stays inside the producer's 64-byte line with `tail`.
const _: () = assert!(MAILBOX_VALUE + 8 * MAILBOX_WORDS <= CONTROL + 64);
/// Consumer line: `head`, the next position to read (written by the consumer only).
const HEAD: usize = CONTROL + 128;
/// Sleep line: two futex words, "the producer sleeps" and "the consumer sleeps".
/// Kept off the index lines: in the line its waker writes anyway, a round trip
/// measured slower.
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
/// The claims' kernel-token records (see `lock::liveness::token_record`).
const PRODUCER_CLAIM_TOKEN: usize = CONTROL + 416;
const CONSUMER_CLAIM_TOKEN: usize = CONTROL + 424;
/// The slots, `capacity * size_of::<T>()` bytes.
const SLOTS: usize = CONTROL + 512;

/// Items in the SPSC ring (blocking or spinning) a region holds, as its
/// indices say now: `tail - head`, `None` if that is impossible (positions
/// only grow, and the difference is at most `capacity`) or the indices lie
/// outside the region. For tools ([`describe`](crate::describe)); trusts
/// nothing.
pub(crate) fn fill(region: &Region, capacity: u64) -> Option<u64> {
    fill_of(
        region.try_read_u64(TAIL)?,
        region.try_read_u64(HEAD)?,
        capacity,
    )
}

/// The fill level `tail` and `head` imply, if possible.
pub(crate) fn fill_of(tail: u64, head: u64, capacity: u64) -> Option<u64> {
    tail.checked_sub(head).filter(|&len| len <= capacity)
}

/// How long the public `open_in`s wait for a creator.
const OPEN_IN_TIMEOUT: Duration = Duration::from_secs(1);

/// How far ahead of the slot it just filled a one-by-one `push` asks for the
/// next lines (PREFETCHW, once per cache line). With the consumer on a distant
/// core, each slot line the producer is about to write is still in the
/// consumer's cache from the previous lap, and fetching it back with write
/// intent costs a slow round trip that the push would otherwise wait for.
/// Asking four lines early overlaps those trips; four was the best distance
/// measured (one line helps less, eight cost a nearby consumer).
///
/// Only a line whose slot is free by the cached `head` is asked for. When the
/// ring is (nearly) full, the slot four lines ahead of `tail` is the one four
/// lines ahead of `head`, which still holds a value the consumer is about to
/// read: taking that line away from it made the consumer slower and kept the
/// ring full (the guard measured faster across processes, same section).
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

mod chunks;
mod handles;
mod slots;

pub use chunks::{ChunkIter, ReadChunk, WriteChunk};
pub use handles::{Consumer, Producer};
use slots::Raw;

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
    segment: Segment,
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

            schema: crate::schema::layout_of::<T>(),
            accepts_prefix: false,
        })
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

    fn create_at(location: impl Into<Location>, capacity: u64) -> Result<Self> {
        let location = location.into();
        let spec = Self::spec(&location, capacity)?;
        let segment = Segment::create(&location, &spec, Opening::default().mode, |_| {})?;
        Ok(Self::from_segment(segment, capacity))
    }

    fn open_at(location: impl Into<Location>, capacity: u64) -> Result<Self> {
        let location = location.into();
        let spec = Self::spec(&location, capacity)?;
        let segment = Segment::open(&location, &spec, Opening::default())?;
        Ok(Self::from_segment(segment, capacity))
    }

    /// Makes a ring of either kind in a blank region that errors name as
    /// `location` (the public constructors fix the kind; tests cover both
    /// through this, and a store passes its entry's location).
    pub(crate) fn create_in_at(region: Region, location: Location, capacity: u64) -> Result<Self> {
        let spec = Self::spec(&location, capacity)?;
        let segment = Segment::create_in(region, location, &spec, |_| {})?;
        Ok(Self::from_segment(segment, capacity))
    }

    /// Opens a ring of either kind in a region that errors name as
    /// `location`, waiting at most `init_timeout` for its creator (a store
    /// passes its own; the public `open_in`s 1 s).
    pub(crate) fn open_in_at(
        region: Region,
        location: Location,
        capacity: u64,
        init_timeout: Duration,
    ) -> Result<Self> {
        let spec = Self::spec(&location, capacity)?;
        let segment = Segment::open_in(region, location, &spec, init_timeout)?;
        Ok(Self::from_segment(segment, capacity))
    }

    /// The segment has been checked to hold the control lines and all slots.
    fn from_segment(segment: Segment, capacity: u64) -> Self {
        SpscRing {
            raw: Raw {
                base: NonNull::new(segment.region().as_ptr()).expect("regions are non-null"),
                capacity,
                _type: PhantomData,
            },
            segment,
            _type: PhantomData,
        }
    }

    /// The ring's capacity in elements.
    pub fn capacity(&self) -> u64 {
        self.raw.capacity
    }

    /// Where the ring is ([`Location::Id`] for a ring created as private).
    pub fn location(&self) -> &Location {
        self.segment.location()
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
        Corrupted::new(self.segment.corrupted(what))
    }

    /// Claims a role: CAS `next generation << 32 | our pid` into its claim
    /// word (the pid marked `FOREIGN` if we live in another pid or time
    /// namespace than the segment's creator), taking over a claim whose
    /// process is dead, judged on that claim's own records as the lock judges
    /// its holders: by kernel token in any namespace, else by pid and start
    /// time (gone, a zombie, or its pid reused) in the segment's own (see
    /// [`liveness`](crate::liveness)). Then records our start time and token.
    fn claim(
        &self,
        role: &'static str,
        claim_offset: usize,
        record_offset: usize,
        token_offset: usize,
    ) -> Result<()> {
        let pid = sys::current_pid();
        let start = own_process_start();
        let lock = self.segment.lock();
        let (domain, registry) = (lock.domain(), lock.registry());
        let id = liveness::claim_id(pid, domain);
        let token = liveness::own_token(registry.name, crate::lock::token::mine());
        let word = self.raw.word64(claim_offset);
        let record = self.raw.word64(record_offset);
        let token_record = self.raw.word64(token_offset);
        let mut observed = word.load(Ordering::Acquire);
        loop {
            let holder = (observed & liveness::ID_MASK) as u32;
            if observed & liveness::ID_MASK != 0 {
                // Loaded after the claim word (Acquire), each tagged with the
                // generation it was written for.
                let claim = liveness::Claim {
                    owner: observed,
                    start: record.load(Ordering::Acquire),
                    token: token_record.load(Ordering::Acquire),
                };
                // Not `holder == id`: ids of other pid namespaces repeat (two
                // containers' pid 1), so even our own id is judged, and we
                // find ourselves alive.
                if !liveness::is_claim_dead(claim, domain, registry) {
                    return Err(Error::SideClaimed {
                        location: self.segment.location().clone(),
                        side: role,
                        pid: holder & !(liveness::FOREIGN as u32),
                        foreign: u64::from(holder) & liveness::FOREIGN != 0,
                    });
                }
            }
            // Free, or dead: take it from exactly the observed claim.
            let won = liveness::next(observed, id);
            match word.compare_exchange(observed, won, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    record.store(liveness::record(start, generation(won)), Ordering::Release);
                    token_record.store(
                        liveness::token_record(token, generation(won)),
                        Ordering::Release,
                    );
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
        let id = liveness::claim_id(sys::current_pid(), self.segment.lock().domain());
        if claimed & liveness::ID_MASK == u64::from(id) {
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
    /// [`Error::SideClaimed`] if a live process holds it (this one included),
    /// [`Error::Corrupted`] if the indices are impossible.
    pub fn producer(&self) -> Result<Producer<'_, T, WAKE>> {
        self.claim(
            "producer",
            PRODUCER_CLAIM,
            PRODUCER_CLAIM_RECORD,
            PRODUCER_CLAIM_TOKEN,
        )?;
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
        self.claim(
            "consumer",
            CONSUMER_CLAIM,
            CONSUMER_CLAIM_RECORD,
            CONSUMER_CLAIM_TOKEN,
        )?;
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
        self.segment.remove()
    }

    /// The region holding the ring.
    pub fn region(&self) -> &Region {
        self.segment.region()
    }

    /// Gives up the ring and returns its region.
    pub fn into_region(self) -> Region {
        self.segment.into_region()
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
        Self::create_in_at(region, Location::Heap, capacity)
    }

    /// Opens a ring in a region (validating the header).
    pub fn open_in(region: Region, capacity: u64) -> Result<SpscRing<T>> {
        Self::open_in_at(region, Location::Heap, capacity, OPEN_IN_TIMEOUT)
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
        Self::create_in_at(region, Location::Heap, capacity)
    }

    /// Opens a spinning ring in a region (validating the header).
    pub fn open_spinning_in(region: Region, capacity: u64) -> Result<Self> {
        Self::open_in_at(region, Location::Heap, capacity, OPEN_IN_TIMEOUT)
    }
}

impl<T, const WAKE: bool> fmt::Debug for SpscRing<T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscRing")
            .field("type", &std::any::type_name::<T>())
            .field("spinning", &!WAKE)
            .field("capacity", &self.raw.capacity)
            .field("location", self.segment.location())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::slots::{free_ahead, starts_line};

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
