//! [`ShmMutex`]: a robust mutex that lives inside a segment.

use std::fmt;
use std::hint::spin_loop;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, StartTime, TaskState};

/// Set in the lock word while a thread sleeps (or is about to sleep) on it.
const WAITERS: u32 = 1 << 31;
/// The holder's thread id part of the lock word.
const TID_MASK: u32 = !WAITERS;

/// `flags`: a holder died; the current holder has not yet marked the data consistent.
const INCONSISTENT: u32 = 1 << 0;
/// `flags`: a holder that took over from a dead one released without marking the
/// data consistent. Lockers get an error until someone resets it.
const POISONED: u32 = 1 << 1;

/// Spins before sleeping: a holder on another core usually releases within this.
const SPIN_LIMIT: u32 = 100;
/// How long a waiter sleeps before it checks whether the holder is still alive.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(10);

/// A mutual-exclusion lock placed in shared memory that keeps working when its
/// holder dies.
///
/// It is 128 bytes of atomics (a cache line pair of its own) and all-zero bytes
/// are an unlocked, consistent lock, so a fresh segment holds a valid one.
///
/// # Protocol
///
/// `word` (a futex word):
///
/// | value | meaning |
/// |---|---|
/// | `0` | free |
/// | `tid` | held by thread `tid`, nobody sleeping |
/// | `tid \| 1 << 31` | held by `tid`, a waiter may be sleeping (unlock must wake) |
///
/// - Lock: CAS `0 -> tid` (Acquire + Release, pairs with the unlocking swap and
///   with waiters' loads), then record the holder's start time. Contended: spin,
///   then set the WAITERS bit and `futex_wait` (shared, never private) with a
///   timeout. After each sleep, if the same thread still holds it, check that it
///   is alive: `kill(tid, 0)`, not a zombie in `/proc/<tid>/stat`, and started at
///   the recorded time (TID reuse). A dead holder's lock is taken over with a CAS
///   from the observed word, and the new holder learns `owner_died`.
/// - Unlock: clear the start time, swap the word to 0 (Release); wake one waiter
///   if the WAITERS bit was set.
/// - Between winning the CAS and recording its start time a holder shows start
///   time 0; a waiter then relies on `kill` and `/proc` alone and never calls such
///   a holder dead because the record is missing.
///
/// `flags` records recovery: `INCONSISTENT` from a takeover until the new holder
/// marks the data consistent; `POISONED` if it releases without doing so. This is
/// POSIX's `EOWNERDEAD` / `ENOTRECOVERABLE`, with an explicit way back
/// ([`ShmMutex::reset_poison`]).
///
/// `sequence` is a seqlock counter, odd while a holder may be writing, so readers
/// that cannot take the lock (read-only attachments) still get consistent copies.
///
/// Liveness by thread id only means something inside one pid namespace; the
/// creator's namespace is recorded in `namespace`, and a waiter in another one
/// never takes the lock over.
///
/// `set_robust_list` is never called: glibc owns each thread's robust list.
///
/// The raw lock implements [`lock_api::RawMutex`] for its shape, but
/// `lock_api::Mutex` (not `repr(C)`) is never placed in a segment; the guards of
/// [`Shared`](crate::Shared) wrap a pointer to this struct instead.
#[repr(C, align(128))]
pub struct ShmMutex {
    word: AtomicU32,
    flags: AtomicU32,
    owner_start: AtomicU64,
    sequence: AtomicU64,
    namespace: AtomicU64,
    reserved: [AtomicU64; 12],
}

const _: () = assert!(std::mem::size_of::<ShmMutex>() == 128);
const _: () = assert!(std::mem::align_of::<ShmMutex>() == 128);
const _: () = assert!(std::mem::offset_of!(ShmMutex, word) == 0);
const _: () = assert!(std::mem::offset_of!(ShmMutex, flags) == 4);
const _: () = assert!(std::mem::offset_of!(ShmMutex, owner_start) == 8);
const _: () = assert!(std::mem::offset_of!(ShmMutex, sequence) == 16);
const _: () = assert!(std::mem::offset_of!(ShmMutex, namespace) == 24);

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
pub struct Holder {
    /// Thread id.
    pub tid: u32,
    /// Its start time (clock ticks since boot), or 0 if not recorded yet.
    pub start_time: u64,
}

/// Whether the task `tid`, recorded as started at `recorded` (0: unknown), is dead.
pub(crate) fn holder_is_dead(tid: u32, recorded: StartTime) -> bool {
    if tid == 0 {
        return true;
    }
    match sys::task_state(tid) {
        TaskState::Dead => true,
        TaskState::Alive(start) => recorded != 0 && start != recorded,
    }
}

impl ShmMutex {
    /// An unlocked, consistent lock (all zeroes).
    #[allow(clippy::declare_interior_mutable_const)] // a constructor value, as in lock_api
    pub const INIT: ShmMutex = ShmMutex {
        word: AtomicU32::new(0),
        flags: AtomicU32::new(0),
        owner_start: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
        namespace: AtomicU64::new(0),
        reserved: [const { AtomicU64::new(0) }; 12],
    };

    /// Records the pid namespace its users live in (done once, when the segment
    /// is initialised; 0 means unknown and disables the check).
    pub(crate) fn set_namespace(&self, namespace: u64) {
        self.namespace.store(namespace, Ordering::Relaxed);
    }

    /// Takes the lock, waiting at most `timeout` (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// [`LockFailure::Poisoned`], [`LockFailure::Timeout`], or
    /// [`LockFailure::ForeignNamespace`] when the holder cannot be checked.
    #[inline]
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<Acquired, LockFailure> {
        self.acquire_with(timeout, true, &holder_is_dead)
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
        self.try_acquire_with(true, &holder_is_dead)
    }

    /// The uncontended path alone: one CAS and the bookkeeping, small enough to
    /// inline into callers. `None` means "take the full path" (contended, or
    /// poisoned: the full path reports that).
    #[inline(always)]
    pub(crate) fn acquire_uncontended(&self) -> Option<Acquired> {
        let tid = sys::current_tid();
        self.word
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.acquired(true).ok()
    }

    pub(crate) fn try_acquire_with(
        &self,
        honor_poison: bool,
        is_dead: &dyn Fn(u32, StartTime) -> bool,
    ) -> Result<Acquired, LockFailure> {
        let tid = sys::current_tid();
        match self
            .word
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => self.acquired(honor_poison),
            Err(current) => {
                if self.foreign_namespace().is_none() && self.holder_dead(current, is_dead) {
                    self.take_over(current, tid, honor_poison).unwrap_or(Err(
                        LockFailure::WouldBlock {
                            holder: current & TID_MASK,
                        },
                    ))
                } else {
                    Err(LockFailure::WouldBlock {
                        holder: current & TID_MASK,
                    })
                }
            }
        }
    }

    /// The lock with an injectable liveness check (tests simulate dead holders).
    #[inline]
    pub(crate) fn acquire_with(
        &self,
        timeout: Option<Duration>,
        honor_poison: bool,
        is_dead: &dyn Fn(u32, StartTime) -> bool,
    ) -> Result<Acquired, LockFailure> {
        let tid = sys::current_tid();
        if self
            .word
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return self.acquired(honor_poison);
        }
        self.acquire_contended(tid, timeout, honor_poison, is_dead)
    }

    #[cold]
    fn acquire_contended(
        &self,
        tid: u32,
        timeout: Option<Duration>,
        honor_poison: bool,
        is_dead: &dyn Fn(u32, StartTime) -> bool,
    ) -> Result<Acquired, LockFailure> {
        let started = Instant::now();
        let mut spins = 0;
        let mut slept = false;
        loop {
            let current = self.word.load(Ordering::Relaxed);
            if current == 0 {
                // Once we have slept, other sleepers may remain: keep the bit so
                // our unlock wakes them.
                let desired = if slept { tid | WAITERS } else { tid };
                if self
                    .word
                    .compare_exchange(0, desired, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return self.acquired(honor_poison);
                }
                continue;
            }
            if spins < SPIN_LIMIT {
                spins += 1;
                spin_loop();
                continue;
            }
            let waited = started.elapsed();
            if let Some(timeout) = timeout {
                if waited >= timeout {
                    return Err(match self.foreign_namespace() {
                        Some((ours, theirs)) => LockFailure::ForeignNamespace {
                            holder: current & TID_MASK,
                            ours,
                            theirs,
                        },
                        None => LockFailure::Timeout {
                            holder: current & TID_MASK,
                        },
                    });
                }
            }
            // Announce that we sleep, so the holder's unlock wakes us.
            if current & WAITERS == 0
                && self
                    .word
                    .compare_exchange(
                        current,
                        current | WAITERS,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            let nap = timeout.map_or(LIVENESS_INTERVAL, |t| {
                t.saturating_sub(waited).min(LIVENESS_INTERVAL)
            });
            sys::futex_wait(&self.word, current | WAITERS, nap);
            slept = true;

            // Still the same holder after a sleep: is it alive?
            let now = self.word.load(Ordering::Acquire);
            if now != 0
                && now & TID_MASK == current & TID_MASK
                && self.foreign_namespace().is_none()
                && self.holder_dead(now, is_dead)
            {
                if let Some(result) = self.take_over(now, tid, honor_poison) {
                    return result;
                }
            }
        }
    }

    /// `Some((ours, theirs))` if the lock's users live in another pid namespace.
    fn foreign_namespace(&self) -> Option<(u64, u64)> {
        let theirs = self.namespace.load(Ordering::Relaxed);
        if theirs == 0 {
            return None;
        }
        let ours = sys::pid_namespace();
        (ours != 0 && ours != theirs).then_some((ours, theirs))
    }

    fn holder_dead(&self, word: u32, is_dead: &dyn Fn(u32, StartTime) -> bool) -> bool {
        // Read after the word (Acquire): never older than the current holder's
        // record; 0 while the holder has not written it yet.
        let recorded = self.owner_start.load(Ordering::Relaxed);
        is_dead(word & TID_MASK, recorded)
    }

    /// Takes the lock from a dead holder whose word is `observed`. `None` if the
    /// word changed meanwhile (someone else took over or it was released).
    fn take_over(
        &self,
        observed: u32,
        tid: u32,
        honor_poison: bool,
    ) -> Option<Result<Acquired, LockFailure>> {
        // Keep WAITERS: other threads may be asleep on the word.
        self.word
            .compare_exchange(observed, tid | WAITERS, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.flags.fetch_or(INCONSISTENT, Ordering::AcqRel);
        Some(self.acquired(honor_poison))
    }

    /// Bookkeeping right after winning the lock word.
    #[inline(always)]
    fn acquired(&self, honor_poison: bool) -> Result<Acquired, LockFailure> {
        self.owner_start
            .store(sys::current_start_time(), Ordering::Relaxed);
        let flags = self.flags.load(Ordering::Acquire);
        if honor_poison && flags & POISONED != 0 {
            self.release();
            return Err(LockFailure::Poisoned);
        }
        // Seqlock: odd while we may write. A dead holder may have left it odd.
        let sequence = self.sequence.load(Ordering::Relaxed);
        if sequence % 2 == 0 {
            self.sequence
                .store(sequence.wrapping_add(1), Ordering::Relaxed);
            // Orders the odd count before our writes to the protected data.
            fence(Ordering::Release);
        }
        Ok(Acquired {
            owner_died: flags & INCONSISTENT != 0,
        })
    }

    /// Releases the lock.
    ///
    /// The caller must hold it (this is what the guards of this crate call on
    /// drop); releasing a lock held by another thread breaks mutual exclusion but
    /// not memory safety of this struct, which is all atomics.
    #[inline(always)]
    pub fn release(&self) {
        let sequence = self.sequence.load(Ordering::Relaxed);
        if sequence % 2 == 1 {
            // Release: readers that see the even count see our writes.
            self.sequence
                .store(sequence.wrapping_add(1), Ordering::Release);
        }
        self.owner_start.store(0, Ordering::Relaxed);
        let previous = self.word.swap(0, Ordering::Release);
        if previous & WAITERS != 0 {
            sys::futex_wake(&self.word, 1);
        }
    }

    /// Declares the protected data consistent after an `owner_died` acquisition.
    pub fn mark_consistent(&self) {
        self.flags.fetch_and(!INCONSISTENT, Ordering::AcqRel);
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
        let word = self.word.load(Ordering::Acquire);
        (word != 0).then(|| Holder {
            tid: word & TID_MASK,
            start_time: self.owner_start.load(Ordering::Relaxed),
        })
    }

    /// Whether the recorded holder, if any, is dead (as a waiter would judge it).
    pub fn holder_is_dead(&self) -> Option<bool> {
        let word = self.word.load(Ordering::Acquire);
        (word != 0).then(|| self.holder_dead(word, &holder_is_dead))
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
            attempts += 1;
            if attempts % 64 == 0 {
                if started.elapsed() >= timeout {
                    return Err(LockFailure::Timeout {
                        holder: self.word.load(Ordering::Relaxed) & TID_MASK,
                    });
                }
                std::thread::yield_now();
            } else {
                spin_loop();
            }
        }
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
            if self.acquire_with(None, false, &holder_is_dead).is_ok() {
                return;
            }
        }
    }

    fn try_lock(&self) -> bool {
        self.try_acquire_with(false, &holder_is_dead).is_ok()
    }

    unsafe fn unlock(&self) {
        self.release();
    }

    fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never_dead(_: u32, _: StartTime) -> bool {
        false
    }
    fn always_dead(_: u32, _: StartTime) -> bool {
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
        lock.word.store(4242, Ordering::Relaxed);
        assert_eq!(
            lock.try_acquire_with(true, &never_dead),
            Err(LockFailure::WouldBlock { holder: 4242 })
        );
        let result = lock.acquire_with(Some(Duration::from_millis(30)), true, &never_dead);
        assert_eq!(result, Err(LockFailure::Timeout { holder: 4242 }));
    }

    #[test]
    fn dead_holder_is_taken_over_then_poisoned_then_reset() {
        let lock = ShmMutex::INIT;
        // A holder that died mid-write: word held, sequence odd.
        lock.word.store(4242 | WAITERS, Ordering::Relaxed);
        lock.sequence.store(7, Ordering::Relaxed);
        let acquired = lock
            .acquire_with(Some(Duration::from_secs(5)), true, &always_dead)
            .unwrap();
        assert!(acquired.owner_died);
        assert_eq!(lock.holder().unwrap().tid, sys::current_tid());
        // Released without marking consistent: poisoned.
        lock.poison();
        lock.release();
        assert_eq!(lock.sequence.load(Ordering::Relaxed), 8);
        assert_eq!(
            lock.acquire_with(None, true, &never_dead),
            Err(LockFailure::Poisoned)
        );
        assert!(lock.holder().is_none(), "a refused lock is released again");
        lock.reset_poison();
        let acquired = lock.acquire_with(None, true, &never_dead).unwrap();
        assert!(!acquired.owner_died);
        lock.release();
    }

    #[test]
    fn marking_consistent_after_takeover_clears_owner_died() {
        let lock = ShmMutex::INIT;
        lock.word.store(77, Ordering::Relaxed);
        assert!(
            lock.try_acquire_with(true, &always_dead)
                .unwrap()
                .owner_died
        );
        lock.mark_consistent();
        lock.release();
        let again = lock.acquire_with(None, true, &never_dead).unwrap();
        assert!(!again.owner_died);
        lock.release();
        assert!(!lock.is_poisoned());
    }

    #[test]
    fn foreign_namespace_is_never_taken_over() {
        let lock = ShmMutex::INIT;
        lock.set_namespace(sys::pid_namespace().wrapping_add(1));
        lock.word.store(4242, Ordering::Relaxed);
        let result = lock.acquire_with(Some(Duration::from_millis(30)), true, &always_dead);
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
