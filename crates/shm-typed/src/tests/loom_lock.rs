//! loom runs the shipping lock algorithm ([`crate::lock::Core`]) over loom's
//! atomics, with a liveness oracle the model changes between any two steps
//! (a holder that releases and re-acquires, a holder that dies, a thread id
//! reused by a later task). Run with
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p shm-typed --lib --release tests::loom
//! ```

use std::sync::atomic::Ordering;
use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom::sync::Arc;
use loom::thread;

use crate::lock::{Core, Env, LockFailure};
use crate::sys::StartTime;

crate::lock::impl_atomic!(AtomicU32, u32);
crate::lock::impl_atomic!(AtomicU64, u64);

/// Whether model holders yield inside the critical section and after
/// unlocking (`LOOM_LOCK_YIELDS` set): switches there then cost no
/// preemption, which multiplies the interleavings (the shipping lock's
/// bound-2 model takes about 15 minutes with them, under one without).
fn holders_yield() -> bool {
    std::env::var_os("LOOM_LOCK_YIELDS").is_some()
}

/// Thread ids 1..=3 exist in the model.
const TASKS: usize = 4;

/// The kernel-token registry of the namespace models.
const REGISTRY: u64 = 7;

/// The lock's words and the data it protects.
struct Locked {
    owner: AtomicU64,
    wakes: AtomicU32,
    flags: AtomicU32,
    record: AtomicU64,
    sequence: AtomicU64,
    namespace: AtomicU64,
    token: AtomicU64,
    registry: AtomicU64,
    registry_ctime: AtomicU64,
    /// Written under the lock without atomics: loom reports two holders
    /// as a data race on it.
    data: UnsafeCell<u64>,
    /// The oracle: `tasks[tid]` is the start time of the live task with
    /// that id, 0 if none. Threads change it (dying, a new task taking a
    /// dead one's id) at any point the model chooses.
    tasks: [AtomicU64; TASKS],
    /// Outside the model (loom runs one thread at a time): how many
    /// threads are between acquire and release, and what they did, so a
    /// failure names its interleaving.
    holders: std::sync::atomic::AtomicU32,
    trace: std::sync::Mutex<Vec<String>>,
    /// Outside the model too: each task id's liveness domain (0: the
    /// lock's own, as in the models without namespaces).
    domains: [std::sync::atomic::AtomicU64; TASKS],
}

impl Locked {
    fn new() -> Arc<Locked> {
        Arc::new(Locked {
            owner: AtomicU64::new(0),
            wakes: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            record: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            namespace: AtomicU64::new(0),
            token: AtomicU64::new(0),
            registry: AtomicU64::new(0),
            registry_ctime: AtomicU64::new(0),
            data: UnsafeCell::new(0),
            tasks: std::array::from_fn(|_| AtomicU64::new(0)),
            holders: std::sync::atomic::AtomicU32::new(0),
            trace: std::sync::Mutex::new(Vec::new()),
            domains: std::array::from_fn(|_| std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// A lock made in domain 1 whose segment has kernel-token registry 7
    /// (the models of holders in other pid namespaces).
    fn with_namespaces() -> Arc<Locked> {
        let locked = Locked::new();
        locked.namespace.store(1, Ordering::Relaxed);
        locked.registry.store(REGISTRY, Ordering::Relaxed);
        locked.registry_ctime.store(1, Ordering::Relaxed);
        locked
    }

    /// Puts task id `tid` in liveness domain `domain` (before it runs).
    fn place(&self, tid: u32, domain: u64) {
        self.domains[tid as usize].store(domain, std::sync::atomic::Ordering::Relaxed);
    }

    fn domain_of(&self, tid: u32) -> u64 {
        self.domains.get(tid as usize).map_or(0, |domain| {
            domain.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

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

    /// Starts task `tid` with start time `start` (no yield point: done
    /// before the thread that plays it is spawned, or by the thread that
    /// replaces a dead task).
    fn note(&self, event: String) {
        self.trace.lock().unwrap().push(event);
    }

    /// Entering the critical section: panics, naming what happened, if
    /// another thread is in it.
    fn enter(&self, tid: u32, owner_died: bool) {
        self.note(format!("task {tid} locked (owner_died: {owner_died})"));
        let inside = self
            .holders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(
            inside == 0,
            "two holders at once; the interleaving:\n  {}",
            self.trace.lock().unwrap().join("\n  ")
        );
        // A holder is often descheduled inside its critical section: with
        // LOOM_LOCK_YIELDS, the model switches here without spending a
        // preemption (many more interleavings: .ci/long only).
        if holders_yield() {
            thread::yield_now();
        }
    }

    fn leave(&self, tid: u32) {
        self.holders
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.note(format!("task {tid} unlocks"));
    }

    /// Right after an unlock: the unlocker may be descheduled before it
    /// locks again (a switch here costs no preemption either).
    fn unlocked(&self) {
        if holders_yield() {
            thread::yield_now();
        }
    }

    fn born(&self, tid: u32, start: StartTime) {
        self.tasks[tid as usize].store(start, Ordering::SeqCst);
    }

    /// One thread's view of the world.
    fn task(locked: &Arc<Locked>, tid: u32, start: StartTime) -> Task {
        Task {
            clock: std::cell::Cell::new(Duration::ZERO),
            locked: locked.clone(),
            tid,
            start,
        }
    }
}

struct Task {
    /// This thread's clock: the naps it slept.
    clock: std::cell::Cell<Duration>,
    locked: Arc<Locked>,
    tid: u32,
    start: StartTime,
}

impl Env<AtomicU32> for Task {
    // Straight to the sleep and the liveness check: that is where the
    // interleavings that matter are.
    const SPINS: u32 = 0;

    fn me(&self) -> crate::sys::Me {
        let token = self.tid << 15 | (self.start as u32 & 0x7fff);
        crate::sys::Me {
            tid: self.tid,
            start: self.start,
            domain: self.locked.domain_of(self.tid),
            registry: REGISTRY,
            token: crate::lock::liveness::token_base(Some(token)),
        }
    }

    fn is_dead(&self, tid: u32, recorded: Option<StartTime>) -> bool {
        // An id means something only in its own domain: the lock must never
        // ask about one across domains.
        let (mine, theirs) = (self.locked.domain_of(self.tid), self.locked.domain_of(tid));
        assert!(
            tid as usize >= TASKS || mine == theirs,
            "task {} (domain {mine}) judged task {tid} (domain {theirs}) by its id",
            self.tid
        );
        let Some(task) = self.locked.tasks.get(tid as usize) else {
            return true;
        };
        match task.load(Ordering::SeqCst) {
            0 => true,
            live => recorded.is_some_and(|recorded| recorded != live),
        }
    }

    fn namespace(&self) -> u64 {
        self.locked.domain_of(self.tid)
    }

    /// A kernel token per task (see `me`): slot = its id, slot generation =
    /// its start time. The kernel's semaphore is the oracle: down once the
    /// task died, another generation once a later task took the slot. (Locks
    /// made by `Locked::new` have registry 0, so there no token is written:
    /// ids decide, as before tokens.)
    fn token_dead(
        &self,
        registry: crate::lock::token::Registry,
        token: crate::lock::token::Token,
    ) -> Option<bool> {
        if registry.name != REGISTRY {
            return None;
        }
        let task = self.locked.tasks.get((token >> 15) as usize)?;
        let live = task.load(Ordering::SeqCst);
        Some(live == 0 || live as u32 & 0x7fff != token & 0x7fff)
    }

    fn pause(&self) {
        thread::yield_now();
    }

    fn yield_now(&self) {
        thread::yield_now();
    }

    /// A futex wait that returns at once if the value changed, and
    /// otherwise lets the others run (a sleep whose timeout passed).
    /// A futex wait that returns at once if the value changed, and
    /// otherwise lets the others run; either way the model's clock moves
    /// on by the nap, so every wait ends (at the caller's timeout).
    fn sleep(&self, futex: &AtomicU32, expected: u32, nap: Duration) {
        self.clock.set(self.clock.get() + nap);
        if futex.load(Ordering::SeqCst) == expected {
            thread::yield_now();
        }
    }

    fn wake(&self, _futex: &AtomicU32) {}

    fn fence(&self, order: Ordering) {
        loom::sync::atomic::fence(order);
    }

    type Instant = Duration;

    fn now(&self) -> Duration {
        self.clock.get()
    }

    fn since(&self, then: Duration) -> Duration {
        self.clock.get() - then
    }
}

/// The lock as it was before lock generations (commit 4f8a5b6), ported
/// line for line onto the model: a 32-bit word (holder tid | WAITERS), the
/// holder's start time beside it (0: not recorded), and a waiter that
/// judges "the same tid after my sleep" by the start time it reads then.
/// The model's tests must fail on it: that is how we know they can.
mod before_generations {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::{Locked, Task};
    use crate::lock::Env;

    const WAITERS: u32 = 1 << 31;
    const TID_MASK: u32 = !WAITERS;
    const INCONSISTENT: u32 = 1;
    const LIVENESS_INTERVAL: Duration = Duration::from_millis(10);
    /// Two naps: the double holder needs each thread to sleep once, and a
    /// shorter wait keeps the model small enough for loom to reach it.
    const PATIENCE_BEFORE: Duration = Duration::from_millis(20);

    /// The old `holder_is_dead`: recorded 0 means "not recorded yet".
    fn is_dead(task: &Task, tid: u32, recorded: u64) -> bool {
        task.is_dead(tid, (recorded != 0).then_some(recorded))
    }

    fn acquired(locked: &Locked, task: &Task) -> bool {
        locked.record.store(task.start, Ordering::Relaxed);
        locked.flags.load(Ordering::Acquire) & INCONSISTENT != 0
    }

    fn holder_dead(locked: &Locked, task: &Task, word: u32) -> bool {
        let recorded = locked.record.load(Ordering::Relaxed);
        let dead = is_dead(task, word & TID_MASK, recorded);
        locked.note(format!(
            "task {} reads recorded start {recorded}: task {} {}",
            task.tid,
            word & TID_MASK,
            if dead { "judged dead" } else { "alive" }
        ));
        dead
    }

    fn take_over(locked: &Locked, task: &Task, observed: u32) -> Option<bool> {
        locked
            .wakes
            .compare_exchange(
                observed,
                task.tid | WAITERS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()?;
        locked.note(format!("task {} took the lock over", task.tid));
        locked.flags.fetch_or(INCONSISTENT, Ordering::AcqRel);
        Some(acquired(locked, task))
    }

    /// `Some(owner_died)` once locked, `None` on timeout.
    pub(super) fn acquire(locked: &Locked, task: &Task) -> Option<bool> {
        let word = &locked.wakes;
        let tid = task.tid;
        if word
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Some(acquired(locked, task));
        }
        let started = task.now();
        let mut slept = false;
        loop {
            let current = word.load(Ordering::Relaxed);
            if current == 0 {
                let desired = if slept { tid | WAITERS } else { tid };
                if word
                    .compare_exchange(0, desired, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(acquired(locked, task));
                }
                continue;
            }
            let waited = task.since(started);
            if waited >= PATIENCE_BEFORE {
                return None;
            }
            if current & WAITERS == 0
                && word
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
            let nap = PATIENCE_BEFORE
                .saturating_sub(waited)
                .min(LIVENESS_INTERVAL);
            task.sleep(word, current | WAITERS, nap);
            slept = true;
            let now = word.load(Ordering::Acquire);
            locked.note(format!(
                "task {tid} woke, owner word names task {}",
                now & TID_MASK
            ));
            if now != 0 && now & TID_MASK == current & TID_MASK && holder_dead(locked, task, now) {
                if let Some(owner_died) = take_over(locked, task, now) {
                    return Some(owner_died);
                }
            }
        }
    }

    pub(super) fn release(locked: &Locked) {
        locked.record.store(0, Ordering::Relaxed);
        locked.wakes.swap(0, Ordering::Release);
    }

    pub(super) fn mark_consistent(locked: &Locked) {
        locked.flags.fetch_and(!INCONSISTENT, Ordering::AcqRel);
    }
}

/// How long a model thread waits for the lock: a few naps, so every
/// execution ends; a thread that gives up has taken nothing.
const PATIENCE: Duration = Duration::from_millis(40);

impl Task {
    /// Locks, adds one to the data without atomics, unlocks. `None` if it
    /// gave up waiting; else whether the lock said its previous holder died.
    fn increment(&self) -> Option<bool> {
        let locked = &self.locked;
        let acquired = match locked.core().acquire(self, Some(PATIENCE), true) {
            Ok(acquired) => acquired,
            Err(LockFailure::Timeout { .. } | LockFailure::ForeignNamespace { .. }) => return None,
            Err(other) => panic!("{other:?}"),
        };
        locked.enter(self.tid, acquired.owner_died);
        // SAFETY: the lock under test grants exclusivity; loom reports a
        // race if it does not (and `enter` checks it first).
        locked.data.with_mut(|data| unsafe { *data += 1 });
        if acquired.owner_died {
            locked.core().mark_consistent();
        }
        locked.leave(self.tid);
        locked.core().release(self);
        locked.unlocked();
        Some(acquired.owner_died)
    }

    /// [`increment`](Task::increment) over the lock before generations.
    fn increment_before_generations(&self) -> Option<bool> {
        let locked = &self.locked;
        let owner_died = before_generations::acquire(locked, self)?;
        locked.enter(self.tid, owner_died);
        // SAFETY: as in increment.
        locked.data.with_mut(|data| unsafe { *data += 1 });
        if owner_died {
            before_generations::mark_consistent(locked);
        }
        locked.leave(self.tid);
        before_generations::release(locked);
        locked.unlocked();
        Some(owner_died)
    }

    /// Locks and dies holding the lock (the task with this id is gone
    /// then, whether it got the lock or gave up waiting). Whether it got it.
    fn lock_and_die(&self) -> bool {
        let locked = &self.locked;
        let got = locked.core().acquire(self, Some(PATIENCE), true).is_ok();
        if got {
            // SAFETY: as in increment.
            locked.data.with_mut(|data| unsafe { *data += 1 });
        }
        locked.tasks[self.tid as usize].store(0, Ordering::SeqCst);
        got
    }

    fn data(&self) -> u64 {
        // SAFETY: read after every other thread of the model was joined.
        self.locked.data.with(|data| unsafe { *data })
    }
}

/// Counts the `Some`s and the `Some(true)`s (takeovers).
fn tally(results: &[Option<bool>]) -> (u64, u64) {
    let done = results.iter().flatten().count() as u64;
    let took_over = results.iter().flatten().filter(|died| **died).count() as u64;
    (done, took_over)
}

/// The preemption bound: `LOOM_MAX_PREEMPTIONS` if set, else 2.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(2));
    builder
}

/// Three live threads, one of them locking twice (release and re-acquire):
/// nobody is ever judged dead, two holders never coexist (loom reports a
/// race on the data), and every increment that got the lock counts. A
/// waiter that judges the record of one acquisition against the owner word
/// of another, or that takes over by thread id alone, fails here.
#[test]
fn live_holders_are_never_taken_over() {
    builder().check(|| live_holders(Task::increment));
}

/// The model above, over `increment`.
fn live_holders(increment: fn(&Task) -> Option<bool>) {
    let locked = Locked::new();
    for (tid, start) in [(1, 10), (2, 20), (3, 30)] {
        locked.born(tid, start);
    }
    let twice = {
        let task = Locked::task(&locked, 1, 10);
        thread::spawn(move || [increment(&task), increment(&task)])
    };
    let once = {
        let task = Locked::task(&locked, 2, 20);
        thread::spawn(move || increment(&task))
    };
    let me = Locked::task(&locked, 3, 30);
    let mine = increment(&me);
    let [first, second] = twice.join().unwrap();
    let results = [mine, first, second, once.join().unwrap()];
    let (done, took_over) = tally(&results);
    assert_eq!(took_over, 0, "a live holder was taken over: {results:?}");
    assert_eq!(me.data(), done);
}

/// [`live_holders`] with every locker on a spawned thread.
fn live_holders_spawned(increment: fn(&Task) -> Option<bool>) {
    let locked = Locked::new();
    for (tid, start) in [(1, 10), (2, 20), (3, 30)] {
        locked.born(tid, start);
    }
    let twice = {
        let task = Locked::task(&locked, 1, 10);
        thread::spawn(move || [increment(&task), increment(&task)])
    };
    let once = [2, 3].map(|tid| {
        let task = Locked::task(&locked, tid, u64::from(tid) * 10);
        thread::spawn(move || increment(&task))
    });
    let [first, second] = twice.join().unwrap();
    let [a, b] = once.map(|thread| thread.join().unwrap());
    let results = [first, second, a, b];
    let (done, took_over) = tally(&results);
    assert_eq!(took_over, 0, "a live holder was taken over: {results:?}");
    let me = Locked::task(&locked, 3, 30);
    assert_eq!(me.data(), done);
}

/// The same model, with all three lockers spawned (so which starts first
/// costs no preemption), finds the bug of the lock before generations: a
/// waiter that read one acquisition's holder and another's start time took
/// the lock from a live holder. The model can fail. The interleaving loom
/// finds (bound 2, holders yielding, about 100 s; printed on failure):
///
/// ```text
/// task 1 locked; tasks 2 and 3 wait and judge it alive (its record not yet seen)
/// task 1 unlocks; task 3 locks, records start 30, unlocks (its clearing store not yet seen)
/// task 2 reads recorded start 30: "task 1's id was reused", judged dead
/// task 1 locks again (WAITERS set: the same word task 2 observed)
/// task 2's CAS from that word succeeds: it and task 1 both hold the lock
/// ```
///
/// Runs only with `LOOM_BEFORE_GENERATIONS=1` and `LOOM_LOCK_YIELDS=1`
/// (`.ci/run` sets both for this test alone).
#[test]
fn the_lock_before_generations_fails_the_model() {
    if std::env::var_os("LOOM_BEFORE_GENERATIONS").is_none() {
        eprintln!("skipped: set LOOM_BEFORE_GENERATIONS=1 (and LOOM_LOCK_YIELDS=1) to run");
        return;
    }
    let failed = std::panic::catch_unwind(|| {
        builder().check(|| live_holders_spawned(Task::increment_before_generations));
    });
    assert!(
        failed.is_err(),
        "loom found no double holder in the old lock"
    );
}

/// A holder that died holding the lock, its id then free or reused by a
/// task started later: the next locker takes the lock over and learns
/// `owner_died`; after it marked the data consistent, the one after that
/// does not.
#[test]
fn a_dead_holder_is_taken_over_once() {
    for reuse in [false, true] {
        builder().check(move || {
            let locked = Locked::new();
            locked.born(1, 10);
            locked.born(2, 20);
            let dying = {
                let task = Locked::task(&locked, 1, 10);
                let locked = locked.clone();
                thread::spawn(move || {
                    assert!(task.lock_and_die(), "nobody else holds it");
                    if reuse {
                        // A new task gets the dead one's id.
                        locked.born(1, 11);
                    }
                })
            };
            let me = Locked::task(&locked, 2, 20);
            dying.join().unwrap();
            assert_eq!(
                me.increment(),
                Some(true),
                "the dead holder's lock is taken over"
            );
            assert_eq!(
                me.increment(),
                Some(false),
                "marked consistent: no owner_died"
            );
            assert_eq!(me.data(), 3);
        });
    }
}

/// A holder that dies holding the lock while two live threads want it,
/// all three running at once: at most one takeover of the one dead
/// acquisition, none if the dying thread locked last, and no two holders.
#[test]
fn a_holder_dying_under_two_waiters() {
    builder().check(|| {
        let locked = Locked::new();
        for (tid, start) in [(1, 10), (2, 20), (3, 30)] {
            locked.born(tid, start);
        }
        let dying = {
            let task = Locked::task(&locked, 1, 10);
            thread::spawn(move || task.lock_and_die())
        };
        let other = {
            let task = Locked::task(&locked, 2, 20);
            thread::spawn(move || task.increment())
        };
        let me = Locked::task(&locked, 3, 30);
        let mine = me.increment();
        let results = [mine, other.join().unwrap()];
        let died_holding = u64::from(dying.join().unwrap());
        let (done, took_over) = tally(&results);
        assert!(
            took_over <= died_holding,
            "{results:?}: more takeovers than dead holders"
        );
        assert_eq!(me.data(), done + died_holding);
    });
}

/// Holders and waiters in other pid namespaces (domain 2, the lock's is 1)
/// that share the IPC namespace: ids cannot be judged across domains (the
/// model's `is_dead` fails the test if the lock asks), so a dead holder is
/// found by its kernel token, whether its slot was left free or claimed again
/// by a later task; either side may be the foreign one.
#[test]
fn a_holder_of_another_namespace_is_judged_by_its_token() {
    for (holder_domain, waiter_domain, reuse) in
        [(2, 1, false), (2, 1, true), (1, 2, false), (2, 2, true)]
    {
        builder().check(move || {
            let locked = Locked::with_namespaces();
            locked.place(1, holder_domain);
            locked.place(2, waiter_domain);
            locked.born(1, 10);
            locked.born(2, 20);
            let dying = {
                let task = Locked::task(&locked, 1, 10);
                let locked = locked.clone();
                thread::spawn(move || {
                    assert!(task.lock_and_die(), "nobody else holds it");
                    if reuse {
                        // A later task claims the dead one's slot.
                        locked.born(1, 11);
                    }
                })
            };
            let me = Locked::task(&locked, 2, 20);
            dying.join().unwrap();
            assert_eq!(me.increment(), Some(true), "taken over by its token");
            assert_eq!(me.data(), 2);
        });
    }
}

/// Live holders of two domains and a waiter of either, releasing and
/// re-acquiring: nobody is taken over (tokens of live tasks are up and keep
/// their generation), no two holders, every increment counts.
#[test]
fn live_holders_of_other_namespaces_are_never_taken_over() {
    builder().check(|| {
        let locked = Locked::with_namespaces();
        for (tid, start, domain) in [(1, 10, 2), (2, 20, 1), (3, 30, 2)] {
            locked.place(tid, domain);
            locked.born(tid, start);
        }
        let twice = {
            let task = Locked::task(&locked, 1, 10);
            thread::spawn(move || [task.increment(), task.increment()])
        };
        let once = {
            let task = Locked::task(&locked, 2, 20);
            thread::spawn(move || task.increment())
        };
        let me = Locked::task(&locked, 3, 30);
        let mine = me.increment();
        let [first, second] = twice.join().unwrap();
        let results = [mine, first, second, once.join().unwrap()];
        let (done, took_over) = tally(&results);
        assert_eq!(took_over, 0, "a live holder was taken over: {results:?}");
        assert_eq!(me.data(), done);
    });
}
