//! [`ShmMutex`]: a robust mutex that lives inside a segment.
//!
//! The algorithm is written once, in [`Core`], over any atomics and any
//! [`Env`] (who the caller is, whether a task is alive, sleeping and waking).
//! `ShmMutex` runs it over its own words and the operating system; the loom
//! tests (`loom_tests.rs`) run the very same code over loom's atomics and a
//! liveness oracle that the model changes between any two steps.

use std::fmt;
use std::hint::spin_loop;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod core;
pub(crate) mod liveness;
pub(crate) mod token;

#[cfg(all(test, loom))]
pub(crate) use self::core::impl_atomic;
use self::core::tid_of;
#[cfg(all(test, loom))]
pub(crate) use self::core::Env;
#[cfg(test)]
use self::core::Os;
pub(crate) use self::core::{Atomic, Core, OS};
#[cfg(test)]
use crate::sys::StartTime;
use liveness::{generation, FOREIGN, ID_MASK};

/// Set in the owner word while a thread sleeps (or is about to sleep) on the lock.
const WAITERS: u64 = 1 << 31;
/// The holder's thread id in the owner word.
const TID_MASK: u64 = ID_MASK & !WAITERS & !FOREIGN;
/// Generation and thread id: what names one acquisition.
const ACQUISITION_MASK: u64 = !WAITERS;
/// The generation half of the owner word.
const GENERATION_MASK: u64 = !ID_MASK;

/// `flags`: a holder died; the current holder has not yet marked the data consistent.
const INCONSISTENT: u32 = 1 << 0;
/// `flags`: a holder that took over from a dead one released without marking the
/// data consistent. Lockers get an error until someone resets it.
const POISONED: u32 = 1 << 1;

/// Waits before sleeping ([`core`]'s `backoff`): a holder on another core
/// usually releases within these (about 1.5 µs of spin hints, then four yields).
const SPIN_LIMIT: u32 = 10;
/// Of those waits, the first ones spin, 2, 4, ... 64 hints (a hint is about
/// 12 ns on the x86 machines we measured); the rest yield. Fewer hints between
/// reads cost contended throughput (docs/benchmarks.md, "Contended lock").
const SPIN_DOUBLINGS: u32 = 6;
/// How long a waiter sleeps before it checks whether the holder is still alive.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(10);

/// A mutual-exclusion lock placed in shared memory that keeps working when its
/// holder dies.
///
/// It is 128 bytes of atomics (a cache line pair of its own) and all-zero bytes
/// are an unlocked, consistent lock, so a fresh segment holds a valid one.
///
/// # Words
///
/// | offset | size | word | contents |
/// |---:|---:|---|---|
/// | 0 | 8 | `owner` | bits 0-29 holder tid (0: free), bit 30 `FOREIGN`, bit 31 `WAITERS`, bits 32-63 generation |
/// | 8 | 4 | `wakes` | futex word: a count that every waking unlock increments |
/// | 12 | 4 | `flags` | bit 0 `INCONSISTENT`, bit 1 `POISONED` |
/// | 16 | 8 | `record` | holder's start time (clock ticks since boot) << 24, generation's low 24 bits |
/// | 24 | 8 | `sequence` | seqlock count, odd while a holder may write |
/// | 32 | 8 | `namespace` | the users' domain: inodes of `/proc/self/ns/pid` and `/proc/self/ns/time` mixed (`pid ^ time.rotate_left(32)`), 0: unknown |
/// | 40 | 8 | `token` | holder's kernel token: bit 63 set, token (slot << 15 \| slot generation) in bits 24-54, generation's low 24 bits; 0: none |
/// | 48 | 8 | `registry` | the creator's token registry: IPC namespace inode << 32 \| semaphore set id; 0: none |
/// | 56 | 72 | reserved | 0 |
///
/// # Protocol
///
/// `owner`, with `g` the generation and `tid` a thread id:
///
/// | value | meaning |
/// |---|---|
/// | `g << 32` | free; the last acquisition was generation `g` |
/// | `g << 32 \| tid` | acquisition `g`, held by `tid`, nobody sleeping |
/// | `g << 32 \| 1 << 31 \| tid` | acquisition `g`, held by `tid`, a waiter may be sleeping |
///
/// - **Lock**: load `owner`; if free, CAS it from that value to
///   `(g + 1) << 32 | tid` (Acquire; the generation counts acquisitions and
///   wraps). Then write `record` for generation `g + 1`.
/// - **Contended**: spin; then read `wakes` (Acquire), set `WAITERS` with a CAS
///   from the observed owner word (or, if it is set already, check that the
///   word is unchanged), and `futex_wait` on `wakes` (shared, never private)
///   with the value read, for at most 10 ms. An unlock after that check
///   increments `wakes` before it wakes anyone, so the sleep cannot miss it.
/// - **Unlock**: swap `owner` to `g << 32` (Release); if `WAITERS` was set,
///   increment `wakes` (Release) and wake one sleeper. A waiter that slept
///   keeps `WAITERS` set when it acquires, since others may still sleep.
/// - **Takeover**: after each sleep, a waiter that finds the *same acquisition*
///   (generation and tid) it went to sleep on judges it: it loads `record` and
///   uses its start time only if the record's tag is that generation's (else
///   the start time is unknown: the holder won the CAS and has not written it
///   yet, and it counts as dead only if no task with its id exists). Dead means
///   no such task, a zombie, or a task with that id that started at another
///   time (reuse). A dead holder's lock is taken with a CAS from the *whole*
///   observed owner word, so it succeeds only on the judged acquisition: if
///   the holder released and anyone acquired again, even the same thread, the
///   generation differs and the CAS fails. The new holder learns `owner_died`.
///   The generation wraps after 2^32 acquisitions and the record's tag after
///   2^24; a judge is fooled only if that many happen between two of its
///   loads and the thread ids line up.
///
/// `flags` records recovery: `INCONSISTENT` from a takeover until the new holder
/// marks the data consistent; `POISONED` if it releases without doing so. This is
/// POSIX's `EOWNERDEAD` / `ENOTRECOVERABLE`, with an explicit way back
/// ([`ShmMutex::reset_poison`]).
///
/// `sequence` is a seqlock counter, odd while a holder may be writing, so readers
/// that cannot take the lock (read-only attachments) still get consistent copies.
///
/// Liveness by thread id only means something inside one pid namespace, and
/// start times only inside one time namespace: the creator's pair (its
/// *domain*) is recorded in `namespace`, and a holder of another domain sets
/// bit 30 (`FOREIGN`) in the owner word with its CAS, so nobody judges its id.
/// Across domains the judge is the kernel: every holder whose process has a
/// token in the segment's registry (`registry`, see the `token` module: a
/// System V semaphore the kernel lowers when the process exits) writes it into
/// `token` right after `record`, tagged the same way, and a waiter of any
/// domain that reads the same registry judges the holder by it (dead: the
/// token is down, or its slot was claimed again). Without a usable token, a
/// waiter of another domain never takes the lock over (a timeout says
/// `ForeignNamespace`), and a foreign holder is never judged. A token judges a
/// process, not a thread: a thread that exits holding the lock while its
/// process goes on is caught by its id alone, in its own domain.
/// Unlock swaps the owner word without checking who holds it (a CAS from the
/// caller's own acquisition costs a second compare on the fast path).
///
/// `set_robust_list` is never called: glibc owns each thread's robust list.
///
/// The raw lock implements [`lock_api::RawMutex`] for its shape, but
/// `lock_api::Mutex` (not `repr(C)`) is never placed in a segment; the guards of
/// [`Shared`](crate::Shared) wrap a pointer to this struct instead.
#[repr(C, align(128))]
pub struct ShmMutex {
    owner: AtomicU64,
    wakes: AtomicU32,
    flags: AtomicU32,
    record: AtomicU64,
    sequence: AtomicU64,
    namespace: AtomicU64,
    token: AtomicU64,
    registry: AtomicU64,
    registry_ctime: AtomicU64,
    reserved: [AtomicU64; 8],
}

/// The offsets of [`ShmMutex`]'s words, in declaration order, for the
/// layout mirror `format::LockRecord` to be checked against.
pub(crate) const OFFSETS: [usize; 10] = {
    use std::mem::offset_of;
    [
        offset_of!(ShmMutex, owner),
        offset_of!(ShmMutex, wakes),
        offset_of!(ShmMutex, flags),
        offset_of!(ShmMutex, record),
        offset_of!(ShmMutex, sequence),
        offset_of!(ShmMutex, namespace),
        offset_of!(ShmMutex, token),
        offset_of!(ShmMutex, registry),
        offset_of!(ShmMutex, registry_ctime),
        offset_of!(ShmMutex, reserved),
    ]
};

const _: () = assert!(std::mem::size_of::<ShmMutex>() == 128);
const _: () = assert!(std::mem::align_of::<ShmMutex>() == 128);
const _: () = assert!(std::mem::offset_of!(ShmMutex, owner) == 0);
const _: () = assert!(std::mem::offset_of!(ShmMutex, wakes) == 8);
const _: () = assert!(std::mem::offset_of!(ShmMutex, flags) == 12);
const _: () = assert!(std::mem::offset_of!(ShmMutex, record) == 16);
const _: () = assert!(std::mem::offset_of!(ShmMutex, sequence) == 24);
const _: () = assert!(std::mem::offset_of!(ShmMutex, namespace) == 32);
const _: () = assert!(std::mem::offset_of!(ShmMutex, token) == 40);
const _: () = assert!(std::mem::offset_of!(ShmMutex, registry) == 48);
const _: () = assert!(std::mem::offset_of!(ShmMutex, registry_ctime) == 56);

/// What a successful lock reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Acquired {
    /// The previous holder died holding the lock (or its successor has not yet
    /// marked the data consistent): the protected data may be half-written.
    pub owner_died: bool,
}

/// Why a lock attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFailure {
    /// Poisoned; see [`ShmMutex::reset_poison`].
    Poisoned,
    /// Not acquired in time; `holder` is the thread that held it.
    Timeout {
        /// The holder's thread id.
        holder: u32,
    },
    /// `try_acquire` found a live holder.
    WouldBlock {
        /// The holder's thread id.
        holder: u32,
    },
    /// The holder looked stuck but lives in another pid namespace.
    ForeignNamespace {
        /// The holder's thread id (in its namespace).
        holder: u32,
        /// Our namespace.
        ours: u64,
        /// The lock's namespace.
        theirs: u64,
    },
}

/// The thread holding a lock, as far as the lock records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Thread id.
    pub tid: u32,
    /// Its start time (clock ticks since boot), or 0 if not recorded yet for
    /// this acquisition.
    pub start_time: u64,
    /// The acquisition's generation (changes with every acquisition).
    pub generation: u32,
}

impl ShmMutex {
    /// An unlocked, consistent lock (all zeroes).
    #[allow(clippy::declare_interior_mutable_const)] // a constructor value, as in lock_api
    pub const INIT: ShmMutex = ShmMutex {
        owner: AtomicU64::new(0),
        wakes: AtomicU32::new(0),
        flags: AtomicU32::new(0),
        record: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
        namespace: AtomicU64::new(0),
        token: AtomicU64::new(0),
        registry: AtomicU64::new(0),
        registry_ctime: AtomicU64::new(0),
        reserved: [const { AtomicU64::new(0) }; 8],
    };

    /// The algorithm over this lock's words.
    #[inline(always)]
    fn core(&self) -> Core<'_, AtomicU32, AtomicU64> {
        Core {
            owner: &self.owner,
            wakes: &self.wakes,
            flags: &self.flags,
            record: &self.record,
            sequence: &self.sequence,
            namespace: &self.namespace,
            token: &self.token,
            registry: &self.registry,
            registry_ctime: &self.registry_ctime,
        }
    }

    /// Records the domain its users live in (pid and time namespace; 0 means
    /// unknown and disables the check) and the kernel-token registry of its
    /// creator (name 0: none), once, when the segment is initialised.
    pub(crate) fn set_namespace(&self, namespace: u64, registry: token::Registry) {
        self.namespace.store(namespace, Ordering::Relaxed);
        self.registry.store(registry.name, Ordering::Relaxed);
        self.registry_ctime.store(registry.ctime, Ordering::Relaxed);
    }

    /// The kernel-token registry its holders' tokens refer to (name 0: none).
    pub(crate) fn registry(&self) -> token::Registry {
        token::Registry {
            name: self.registry.load(Ordering::Relaxed),
            ctime: self.registry_ctime.load(Ordering::Relaxed),
        }
    }

    /// The domain its users live in (0: unknown).
    pub(crate) fn domain(&self) -> u64 {
        self.namespace.load(Ordering::Relaxed)
    }

    /// Takes the lock, waiting at most `timeout` (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// [`LockFailure::Poisoned`], [`LockFailure::Timeout`], or
    /// [`LockFailure::ForeignNamespace`] when the holder cannot be checked.
    #[inline]
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<Acquired, LockFailure> {
        self.core().acquire(&OS, timeout, true)
    }

    /// Takes the lock if that needs no waiting. A lock whose holder is dead is
    /// taken over (reporting `owner_died`).
    ///
    /// # Errors
    ///
    /// [`LockFailure::WouldBlock`] if a live thread holds it,
    /// [`LockFailure::Poisoned`] if it is poisoned.
    #[inline]
    pub fn try_acquire(&self) -> Result<Acquired, LockFailure> {
        self.core().try_acquire(&OS, true)
    }

    /// The uncontended path alone, small enough to inline into callers. `None`
    /// means "take the full path" (contended, or poisoned: the full path
    /// reports that).
    #[inline(always)]
    pub(crate) fn acquire_uncontended(&self) -> Option<Acquired> {
        self.core().acquire_uncontended(&OS, true)?.ok()
    }

    /// [`acquire`](ShmMutex::acquire) with an injected liveness check.
    #[cfg(test)]
    pub(crate) fn acquire_with(
        &self,
        timeout: Option<Duration>,
        honor_poison: bool,
        is_dead: impl Fn(u32, Option<StartTime>) -> bool,
    ) -> Result<Acquired, LockFailure> {
        self.core().acquire(&Os(is_dead), timeout, honor_poison)
    }

    /// [`try_acquire`](ShmMutex::try_acquire) with an injected liveness check.
    #[cfg(test)]
    pub(crate) fn try_acquire_with(
        &self,
        honor_poison: bool,
        is_dead: impl Fn(u32, Option<StartTime>) -> bool,
    ) -> Result<Acquired, LockFailure> {
        self.core().try_acquire(&Os(is_dead), honor_poison)
    }

    /// Releases the lock.
    ///
    /// The caller must hold it (this is what the guards of this crate call on
    /// drop); releasing a lock held by another thread breaks mutual exclusion but
    /// not memory safety of this struct, which is all atomics.
    #[inline(always)]
    pub fn release(&self) {
        self.core().release(&OS);
    }

    /// Declares the protected data consistent after an `owner_died` acquisition.
    pub fn mark_consistent(&self) {
        self.core().mark_consistent();
    }

    /// Poisons the lock (what a guard does when it is dropped after an
    /// `owner_died` acquisition without [`mark_consistent`](ShmMutex::mark_consistent)).
    pub fn poison(&self) {
        self.flags.fetch_or(POISONED, Ordering::AcqRel);
        self.flags.fetch_and(!INCONSISTENT, Ordering::AcqRel);
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.flags.load(Ordering::Acquire) & POISONED != 0
    }

    /// Clears poisoning: the caller asserts the data is usable again.
    pub fn reset_poison(&self) {
        self.flags
            .fetch_and(!(POISONED | INCONSISTENT), Ordering::AcqRel);
    }

    /// The current holder, if the lock is held.
    pub fn holder(&self) -> Option<Holder> {
        self.core().holder()
    }

    /// Whether the recorded holder, if any, is dead (as a waiter would judge it).
    pub fn holder_is_dead(&self) -> Option<bool> {
        self.core().holder_is_dead(&OS)
    }

    /// Copies protected data without taking the lock, seqlock style: `copy` runs
    /// until it ran while no holder was writing. `copy` must only read (atomic or
    /// volatile accesses): it can run concurrently with a writer, and its result
    /// is discarded then. Gives up after `timeout` with the holder's id (a
    /// holder that died mid-write leaves the count odd until someone takes over).
    pub(crate) fn read_consistent<R>(
        &self,
        timeout: Duration,
        mut copy: impl FnMut() -> R,
    ) -> Result<R, LockFailure> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before % 2 == 0 {
                let value = copy();
                // Orders the data reads before the second count read.
                fence(Ordering::Acquire);
                if self.sequence.load(Ordering::Relaxed) == before {
                    return Ok(value);
                }
            }
            attempts = attempts.wrapping_add(1);
            if attempts % 64 == 0 {
                if started.elapsed() >= timeout {
                    return Err(LockFailure::Timeout {
                        holder: tid_of(self.owner.load(Ordering::Relaxed)),
                    });
                }
                std::thread::yield_now();
            } else {
                spin_loop();
            }
        }
    }
}

/// What `shm ls` shows of a lock, decoded from its bytes as copied out of a
/// segment (at least the first 40 of the 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockView {
    pub holder: Option<Holder>,
    pub holder_dead: Option<bool>,
    pub poisoned: bool,
}

impl LockView {
    /// Decodes `bytes`; `None` if there are fewer than 40.
    pub(crate) fn decode(bytes: &[u8]) -> Option<LockView> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(
                bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
            ))
        };
        let owner = word(0)?;
        let flags = u32::from_ne_bytes(bytes.get(12..16)?.try_into().ok()?);
        let record = word(16)?;
        let _ = word(32)?;
        let held = owner & ID_MASK != 0;
        let recorded = liveness::recorded_start(record, generation(owner));
        Some(LockView {
            holder: held.then(|| Holder {
                tid: tid_of(owner),
                start_time: recorded.unwrap_or(0),
                generation: generation(owner),
            }),
            holder_dead: held.then(|| liveness::is_dead(tid_of(owner), recorded)),
            poisoned: flags & POISONED != 0,
        })
    }
}

impl fmt::Debug for ShmMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmMutex")
            .field("holder", &self.holder())
            .field("flags", &self.flags.load(Ordering::Relaxed))
            .field("sequence", &self.sequence.load(Ordering::Relaxed))
            .finish()
    }
}

// SAFETY: `lock` returns only once this thread holds the word (acquire ignores
// poisoning here, since lock_api has none, and waits without a deadline, so it
// cannot fail); `try_lock` returns true only then; `unlock`'s contract (the lock
// is held by this thread) is the trait's own. Guards are not Send: the word
// records the locking thread's id.
unsafe impl lock_api::RawMutex for ShmMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: ShmMutex = ShmMutex::INIT;
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        loop {
            // With no timeout and poisoning ignored, only a foreign namespace at a
            // deadline could fail, and there is no deadline.
            if self.core().acquire(&OS, None, false).is_ok() {
                return;
            }
        }
    }

    fn try_lock(&self) -> bool {
        self.core().try_acquire(&OS, false).is_ok()
    }

    unsafe fn unlock(&self) {
        self.release();
    }

    fn is_locked(&self) -> bool {
        self.owner.load(Ordering::Relaxed) & ID_MASK != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    fn never_dead(_: u32, _: Option<StartTime>) -> bool {
        false
    }
    fn always_dead(_: u32, _: Option<StartTime>) -> bool {
        true
    }

    #[test]
    fn zero_bytes_are_an_unlocked_lock() {
        let lock = ShmMutex::INIT;
        assert!(lock.holder().is_none());
        let acquired = lock.acquire(None).unwrap();
        assert!(!acquired.owner_died);
        assert_eq!(lock.holder().unwrap().tid, sys::current_tid());
        lock.release();
        assert!(lock.holder().is_none());
        assert_eq!(lock.sequence.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn try_acquire_reports_a_live_holder() {
        let lock = ShmMutex::INIT;
        lock.owner.store(4242, Ordering::Relaxed);
        assert_eq!(
            lock.try_acquire_with(true, never_dead),
            Err(LockFailure::WouldBlock { holder: 4242 })
        );
        let result = lock.acquire_with(Some(Duration::from_millis(30)), true, never_dead);
        assert_eq!(result, Err(LockFailure::Timeout { holder: 4242 }));
    }

    #[test]
    fn dead_holder_is_taken_over_then_poisoned_then_reset() {
        let lock = ShmMutex::INIT;
        // A holder that died mid-write: word held, sequence odd.
        lock.owner.store(4242 | WAITERS, Ordering::Relaxed);
        lock.sequence.store(7, Ordering::Relaxed);
        let acquired = lock
            .acquire_with(Some(Duration::from_secs(5)), true, always_dead)
            .unwrap();
        assert!(acquired.owner_died);
        assert_eq!(lock.holder().unwrap().tid, sys::current_tid());
        // Released without marking consistent: poisoned.
        lock.poison();
        lock.release();
        assert_eq!(lock.sequence.load(Ordering::Relaxed), 8);
        assert_eq!(
            lock.acquire_with(None, true, never_dead),
            Err(LockFailure::Poisoned)
        );
        assert!(lock.holder().is_none(), "a refused lock is released again");
        lock.reset_poison();
        let acquired = lock.acquire_with(None, true, never_dead).unwrap();
        assert!(!acquired.owner_died);
        lock.release();
    }

    #[test]
    fn marking_consistent_after_takeover_clears_owner_died() {
        let lock = ShmMutex::INIT;
        lock.owner.store(77, Ordering::Relaxed);
        assert!(lock.try_acquire_with(true, always_dead).unwrap().owner_died);
        lock.mark_consistent();
        lock.release();
        let again = lock.acquire_with(None, true, never_dead).unwrap();
        assert!(!again.owner_died);
        lock.release();
        assert!(!lock.is_poisoned());
    }

    #[test]
    fn foreign_namespace_is_never_taken_over() {
        let lock = ShmMutex::INIT;
        lock.set_namespace(
            sys::pid_namespace().wrapping_add(1),
            token::Registry { name: 0, ctime: 0 },
        );
        lock.owner.store(4242, Ordering::Relaxed);
        let result = lock.acquire_with(Some(Duration::from_millis(30)), true, always_dead);
        assert!(
            matches!(
                result,
                Err(LockFailure::ForeignNamespace { holder: 4242, .. })
            ),
            "{result:?}"
        );
        assert_eq!(lock.holder().unwrap().tid, 4242);
    }

    #[test]
    fn a_foreign_holder_is_never_judged() {
        let lock = ShmMutex::INIT;
        // Acquisition 3 by tid 4242 of another domain (pid or time namespace).
        lock.owner
            .store((3 << 32) | FOREIGN | 4242, Ordering::Relaxed);
        let result = lock.acquire_with(Some(Duration::from_millis(30)), true, always_dead);
        assert_eq!(result, Err(LockFailure::Timeout { holder: 4242 }));
        assert_eq!(
            lock.holder().map(|h| (h.tid, h.generation)),
            Some((4242, 3))
        );
        // The same word without the mark is judged (and here found dead).
        lock.owner.store((3 << 32) | 4242, Ordering::Relaxed);
        assert!(lock.try_acquire_with(true, always_dead).unwrap().owner_died);
        lock.mark_consistent();
        lock.release();
        assert!(lock.holder().is_none());
    }

    #[test]
    fn seqlock_read_waits_for_an_even_count() {
        let lock = ShmMutex::INIT;
        assert_eq!(lock.read_consistent(Duration::from_secs(1), || 5), Ok(5));
        assert!(!lock.acquire(None).unwrap().owner_died);
        let result = lock.read_consistent(Duration::from_millis(20), || 5);
        assert!(matches!(result, Err(LockFailure::Timeout { .. })));
        lock.release();
        assert_eq!(lock.read_consistent(Duration::from_secs(1), || 6), Ok(6));
    }

    #[test]
    fn threads_count_exactly_through_lock_api() {
        let mutex = std::sync::Arc::new(lock_api::Mutex::<ShmMutex, u64>::new(0));
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mutex = mutex.clone();
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        *mutex.lock() += 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*mutex.lock(), 4 * rounds);
    }
}
