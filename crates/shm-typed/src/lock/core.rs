//! The lock's algorithm over its words, generic over the atomics (`std`'s in
//! a segment, loom's in the model) and over the environment (who we are,
//! whether a task is dead, sleeping, waking, time): [`Core`]. [`ShmMutex`]
//! documents the protocol it implements.

use std::hint::spin_loop;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::liveness::{self, generation, next, FOREIGN, ID_MASK};
use super::token::{self, Registry, Token};
use super::{
    Acquired, Holder, LockFailure, ACQUISITION_MASK, GENERATION_MASK, INCONSISTENT,
    LIVENESS_INTERVAL, POISONED, SPIN_DOUBLINGS, SPIN_LIMIT, TID_MASK, WAITERS,
};
use crate::sys::{self, Me, StartTime};

/// The atomic operations the lock uses, on `std`'s atomics or loom's.
pub(crate) trait Atomic<V> {
    fn load(&self, order: Ordering) -> V;
    fn store(&self, value: V, order: Ordering);
    fn swap(&self, value: V, order: Ordering) -> V;
    fn compare_exchange(
        &self,
        current: V,
        new: V,
        success: Ordering,
        failure: Ordering,
    ) -> Result<V, V>;
    fn fetch_or(&self, value: V, order: Ordering) -> V;
    fn fetch_and(&self, value: V, order: Ordering) -> V;
    fn fetch_add(&self, value: V, order: Ordering) -> V;
}

/// Implements [`Atomic`] for an atomic type with `std`'s method names (loom's
/// have them too; `tests/loom.rs` uses this). `fetch_add` wraps, as `std`'s does.
macro_rules! impl_atomic {
    ($atomic:ty, $value:ty) => {
        impl $crate::lock::Atomic<$value> for $atomic {
            #[inline(always)]
            fn load(&self, order: std::sync::atomic::Ordering) -> $value {
                // The inherent methods (inherent methods win over trait ones).
                self.load(order)
            }
            #[inline(always)]
            fn store(&self, value: $value, order: std::sync::atomic::Ordering) {
                self.store(value, order)
            }
            #[inline(always)]
            fn swap(&self, value: $value, order: std::sync::atomic::Ordering) -> $value {
                self.swap(value, order)
            }
            #[inline(always)]
            fn compare_exchange(
                &self,
                current: $value,
                new: $value,
                success: std::sync::atomic::Ordering,
                failure: std::sync::atomic::Ordering,
            ) -> Result<$value, $value> {
                self.compare_exchange(current, new, success, failure)
            }
            #[inline(always)]
            fn fetch_or(&self, value: $value, order: std::sync::atomic::Ordering) -> $value {
                self.fetch_or(value, order)
            }
            #[inline(always)]
            fn fetch_and(&self, value: $value, order: std::sync::atomic::Ordering) -> $value {
                self.fetch_and(value, order)
            }
            #[inline(always)]
            fn fetch_add(&self, value: $value, order: std::sync::atomic::Ordering) -> $value {
                self.fetch_add(value, order)
            }
        }
    };
}
#[cfg(all(test, loom))]
pub(crate) use impl_atomic;

impl_atomic!(AtomicU32, u32);
impl_atomic!(AtomicU64, u64);

/// What the lock needs from the world around it.
pub(crate) trait Env<W32> {
    /// Spins before a contended waiter sleeps.
    const SPINS: u32;
    /// The calling thread: id, start time (as [`liveness::record`] keeps
    /// it), liveness domain (pid and time namespace; 0: unknown), and its
    /// process's token registry and untagged token record (0: none).
    fn me(&self) -> Me;
    /// Whether thread `tid`, whose record says it started at `recorded`
    /// (`None`: unknown for this acquisition), is dead.
    fn is_dead(&self, tid: u32, recorded: Option<StartTime>) -> bool;
    /// The caller's liveness domain, pid and time namespace (0: unknown).
    fn namespace(&self) -> u64;
    /// Whether the process that recorded `token` in `registry` is dead
    /// (`None`: cannot tell).
    fn token_dead(&self, registry: Registry, token: Token) -> Option<bool>;
    /// A spin-wait hint.
    fn pause(&self);
    /// Gives the processor to another runnable thread, if there is one.
    fn yield_now(&self);
    /// Sleeps while `futex` holds `expected`, at most `nap`.
    fn sleep(&self, futex: &W32, expected: u32, nap: Duration);
    /// Wakes one sleeper on `futex`.
    fn wake(&self, futex: &W32);
    /// A memory fence.
    fn fence(&self, order: Ordering);
    /// A point in time (the model's clock counts its sleeps).
    type Instant: Copy;
    /// Now.
    fn now(&self) -> Self::Instant;
    /// Time passed since `then`.
    fn since(&self, then: Self::Instant) -> Duration;
}

/// The operating system, with an injectable liveness check (tests simulate
/// dead and live holders with it).
#[derive(Clone, Copy)]
pub(crate) struct Os<F>(pub(crate) F);

/// The operating system's own liveness check.
pub(crate) const OS: Os<fn(u32, Option<StartTime>) -> bool> = Os(liveness::is_dead);

impl<F: Fn(u32, Option<StartTime>) -> bool> Env<AtomicU32> for Os<F> {
    const SPINS: u32 = SPIN_LIMIT;

    #[inline(always)]
    fn me(&self) -> Me {
        let me = sys::current_me();
        Me {
            start: liveness::own_start(me.start),
            ..me
        }
    }

    fn is_dead(&self, tid: u32, recorded: Option<StartTime>) -> bool {
        (self.0)(tid, recorded)
    }

    #[inline(always)]
    fn namespace(&self) -> u64 {
        sys::current_domain()
    }

    fn token_dead(&self, registry: Registry, token: Token) -> Option<bool> {
        token::is_dead(registry, token)
    }

    #[inline(always)]
    fn pause(&self) {
        spin_loop();
    }

    fn yield_now(&self) {
        std::thread::yield_now();
    }

    fn sleep(&self, futex: &AtomicU32, expected: u32, nap: Duration) {
        sys::futex_wait(futex, expected, nap);
    }

    fn wake(&self, futex: &AtomicU32) {
        sys::futex_wake(futex, 1);
    }

    #[inline(always)]
    fn fence(&self, order: Ordering) {
        fence(order);
    }

    type Instant = Instant;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn since(&self, then: Instant) -> Duration {
        then.elapsed()
    }
}

/// The `spin`th wait (from 1) of a contended waiter before it sleeps: a few
/// doubling runs of spin hints, then yields. A waiter that reads the lock
/// word on every hint takes its cache line away from the holder each time,
/// and a holder that releases and re-locks then pays a transfer for each;
/// backing off lets it run on with the line in its cache.
#[inline]
fn backoff<W32, E: Env<W32>>(env: &E, spin: u32) {
    if spin <= SPIN_DOUBLINGS {
        for _ in 0..1u32 << spin {
            env.pause();
        }
    } else {
        env.yield_now();
    }
}

/// The lock's words, in whatever memory they live: the algorithm.
pub(crate) struct Core<'a, W32, W64> {
    pub(crate) owner: &'a W64,
    pub(crate) wakes: &'a W32,
    pub(crate) flags: &'a W32,
    pub(crate) record: &'a W64,
    pub(crate) sequence: &'a W64,
    pub(crate) namespace: &'a W64,
    pub(crate) token: &'a W64,
    pub(crate) registry: &'a W64,
    pub(crate) registry_ctime: &'a W64,
}

/// The holder's tid in an owner word.
#[inline(always)]
pub(super) fn tid_of(owner: u64) -> u32 {
    (owner & TID_MASK) as u32
}

impl<W32: Atomic<u32>, W64: Atomic<u64>> Core<'_, W32, W64> {
    /// What we write into the owner word's id part: our tid, marked
    /// [`FOREIGN`] if we live in another domain than the lock's users.
    #[inline(always)]
    fn id(&self, tid: u32, domain: u64) -> u32 {
        let foreign = liveness::foreign(domain, self.namespace.load(Ordering::Relaxed));
        tid | if foreign { FOREIGN as u32 } else { 0 }
    }

    /// The uncontended path alone: one load, one CAS and the bookkeeping, small
    /// enough to inline. `None`: take the full path.
    #[inline(always)]
    pub(crate) fn acquire_uncontended<E: Env<W32>>(
        &self,
        env: &E,
        honor_poison: bool,
    ) -> Option<Result<Acquired, LockFailure>> {
        let me = env.me();
        let observed = self.owner.load(Ordering::Relaxed);
        if observed & ID_MASK != 0 {
            return None;
        }
        let won = next(observed, self.id(me.tid, me.domain));
        self.owner
            .compare_exchange(observed, won, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(self.acquired(env, won, &me, honor_poison))
    }

    /// Takes the lock, waiting at most `timeout` (`None`: as long as it takes).
    #[inline]
    pub(crate) fn acquire<E: Env<W32>>(
        &self,
        env: &E,
        timeout: Option<Duration>,
        honor_poison: bool,
    ) -> Result<Acquired, LockFailure> {
        if let Some(result) = self.acquire_uncontended(env, honor_poison) {
            return result;
        }
        self.acquire_contended(env, timeout, honor_poison)
    }

    #[cold]
    fn acquire_contended<E: Env<W32>>(
        &self,
        env: &E,
        timeout: Option<Duration>,
        honor_poison: bool,
    ) -> Result<Acquired, LockFailure> {
        let me = env.me();
        let id = self.id(me.tid, me.domain);
        let started = env.now();
        let mut spins = 0;
        let mut slept = false;
        loop {
            let observed = self.owner.load(Ordering::Acquire);
            if observed & ID_MASK == 0 {
                // Once we have slept, other sleepers may remain: keep the bit so
                // our unlock wakes them.
                let won = next(observed, id) | if slept { WAITERS } else { 0 };
                if self
                    .owner
                    .compare_exchange(observed, won, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return self.acquired(env, won, &me, honor_poison);
                }
                continue;
            }
            if spins < E::SPINS {
                spins += 1;
                backoff(env, spins);
                continue;
            }
            let waited = env.since(started);
            if let Some(timeout) = timeout {
                if waited >= timeout {
                    return Err(self.timed_out(env, observed));
                }
            }
            // Read the wake count before checking the word again: an unlock
            // after the check increments it, and the sleep then returns at once.
            let wakes = self.wakes.load(Ordering::Acquire);
            if observed & WAITERS == 0 {
                if self
                    .owner
                    .compare_exchange(
                        observed,
                        observed | WAITERS,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    continue;
                }
            } else if self.owner.load(Ordering::Relaxed) != observed {
                continue;
            }
            let nap = timeout.map_or(LIVENESS_INTERVAL, |t| {
                t.saturating_sub(waited).min(LIVENESS_INTERVAL)
            });
            env.sleep(self.wakes, wakes, nap);
            slept = true;

            // The same acquisition all through our sleep: is its holder alive?
            let now = self.owner.load(Ordering::Acquire);
            if now & ACQUISITION_MASK == observed & ACQUISITION_MASK && self.holder_dead(env, now) {
                if let Some(result) = self.take_over(env, now, id, &me, honor_poison) {
                    return result;
                }
            }
        }
    }

    /// Takes the lock if that needs no waiting; a dead holder's lock is taken over.
    pub(crate) fn try_acquire<E: Env<W32>>(
        &self,
        env: &E,
        honor_poison: bool,
    ) -> Result<Acquired, LockFailure> {
        let me = env.me();
        let id = self.id(me.tid, me.domain);
        let mut observed = self.owner.load(Ordering::Acquire);
        if observed & ID_MASK == 0 {
            let won = next(observed, id);
            match self
                .owner
                .compare_exchange(observed, won, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return self.acquired(env, won, &me, honor_poison),
                Err(now) => observed = now,
            }
        }
        let would_block = LockFailure::WouldBlock {
            holder: tid_of(observed),
        };
        if observed & ID_MASK != 0 && self.holder_dead(env, observed) {
            return self
                .take_over(env, observed, id, &me, honor_poison)
                .unwrap_or(Err(would_block));
        }
        Err(would_block)
    }

    #[cold]
    fn timed_out<E: Env<W32>>(&self, env: &E, observed: u64) -> LockFailure {
        // A holder we could judge by its token was judged, and is alive.
        let judged =
            liveness::recorded_token(self.token.load(Ordering::Relaxed), generation(observed))
                .is_some_and(|token| env.token_dead(self.token_registry(), token).is_some());
        match self.foreign_namespace(env).filter(|_| !judged) {
            Some((ours, theirs)) => LockFailure::ForeignNamespace {
                holder: tid_of(observed),
                ours,
                theirs,
            },
            None => LockFailure::Timeout {
                holder: tid_of(observed),
            },
        }
    }

    /// `Some((ours, theirs))` if the lock's users live in another pid namespace.
    fn foreign_namespace<E: Env<W32>>(&self, env: &E) -> Option<(u64, u64)> {
        let theirs = self.namespace.load(Ordering::Relaxed);
        if theirs == 0 {
            return None;
        }
        let ours = env.namespace();
        (ours != 0 && ours != theirs).then_some((ours, theirs))
    }

    /// The registry the holders' tokens are in, as the creator recorded it.
    fn token_registry(&self) -> Registry {
        Registry {
            name: self.registry.load(Ordering::Relaxed),
            ctime: self.registry_ctime.load(Ordering::Relaxed),
        }
    }

    /// The start time recorded for the acquisition `owner` names, if recorded.
    fn recorded_start(&self, owner: u64) -> Option<StartTime> {
        // Loaded after the owner word (Acquire): a record of this generation is
        // this acquisition's; any other tag (older, or a later holder's) is not.
        liveness::recorded_start(self.record.load(Ordering::Relaxed), generation(owner))
    }

    /// Whether the holder of the acquisition `owner` is dead: by its kernel
    /// token if it wrote one that we can read (any domain), else by its id,
    /// which only a judge of the lock's own domain may read, and only for a
    /// holder of that domain.
    fn holder_dead<E: Env<W32>>(&self, env: &E, owner: u64) -> bool {
        if liveness::impossible_id(tid_of(owner)) {
            return true;
        }
        // By id wherever ids can be read: a token can drop while its process
        // lives (`unshare(CLONE_NEWIPC)`, `CLONE_SYSVSEM`), so it never
        // overrides an id the judge can check.
        if owner & FOREIGN == 0 && self.foreign_namespace(env).is_none() {
            return env.is_dead(tid_of(owner), self.recorded_start(owner));
        }
        // Loaded after the owner word (Acquire), as the record is.
        liveness::recorded_token(self.token.load(Ordering::Relaxed), generation(owner))
            .is_some_and(|token| env.token_dead(self.token_registry(), token) == Some(true))
    }

    /// Takes the lock from the dead holder of the acquisition `observed`. `None`
    /// if the owner word changed meanwhile (released, re-acquired, taken over).
    fn take_over<E: Env<W32>>(
        &self,
        env: &E,
        observed: u64,
        id: u32,
        me: &Me,
        honor_poison: bool,
    ) -> Option<Result<Acquired, LockFailure>> {
        // Keep WAITERS: other threads may be asleep.
        let won = next(observed, id) | WAITERS;
        self.owner
            .compare_exchange(observed, won, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.flags.fetch_or(INCONSISTENT, Ordering::AcqRel);
        Some(self.acquired(env, won, me, honor_poison))
    }

    /// Bookkeeping right after winning the owner word as `won`.
    #[inline(always)]
    fn acquired<E: Env<W32>>(
        &self,
        env: &E,
        won: u64,
        me: &Me,
        honor_poison: bool,
    ) -> Result<Acquired, LockFailure> {
        self.record.store(
            liveness::record(me.start, generation(won)),
            Ordering::Relaxed,
        );
        // Our token only if it is in the segment's registry (a process
        // without a token has `me.token` 0 whatever its registry word says).
        let ours = if self.registry.load(Ordering::Relaxed) == me.registry {
            me.token
        } else {
            0
        };
        self.token
            .store(liveness::tagged(ours, generation(won)), Ordering::Relaxed);
        let flags = self.flags.load(Ordering::Acquire);
        if honor_poison && flags & POISONED != 0 {
            self.release(env);
            return Err(LockFailure::Poisoned);
        }
        // Seqlock: odd while we may write. A dead holder may have left it odd.
        let sequence = self.sequence.load(Ordering::Relaxed);
        if sequence % 2 == 0 {
            self.sequence
                .store(sequence.wrapping_add(1), Ordering::Relaxed);
            // Orders the odd count before our writes to the protected data.
            env.fence(Ordering::Release);
        }
        Ok(Acquired {
            owner_died: flags & INCONSISTENT != 0,
        })
    }

    /// Releases the lock; the caller holds it.
    #[inline(always)]
    pub(crate) fn release<E: Env<W32>>(&self, env: &E) {
        let held = self.owner.load(Ordering::Relaxed);
        let sequence = self.sequence.load(Ordering::Relaxed);
        if sequence % 2 == 1 {
            // Release: readers that see the even count see our writes.
            self.sequence
                .store(sequence.wrapping_add(1), Ordering::Release);
        }
        // Only we change the generation while we hold the lock; waiters only
        // add WAITERS, which the swap returns.
        let previous = self.owner.swap(held & GENERATION_MASK, Ordering::Release);
        if previous & WAITERS != 0 {
            self.wakes.fetch_add(1, Ordering::Release);
            env.wake(self.wakes);
        }
    }

    pub(crate) fn mark_consistent(&self) {
        self.flags.fetch_and(!INCONSISTENT, Ordering::AcqRel);
    }

    /// The current holder, if the lock is held.
    pub(crate) fn holder(&self) -> Option<Holder> {
        let owner = self.owner.load(Ordering::Acquire);
        (owner & ID_MASK != 0).then(|| Holder {
            tid: tid_of(owner),
            start_time: self.recorded_start(owner).unwrap_or(0),
            generation: generation(owner),
        })
    }

    /// Whether the current holder, if any, is dead (as a waiter would judge it).
    pub(crate) fn holder_is_dead<E: Env<W32>>(&self, env: &E) -> Option<bool> {
        let owner = self.owner.load(Ordering::Acquire);
        (owner & ID_MASK != 0).then(|| self.holder_dead(env, owner))
    }
}
