//! The waiting strategy every blocking ring call shares: try, spin a little
//! (or yield, when the peer shares our CPU), then sleep in naps until the
//! deadline; and the fence that keeps a sleeper from missing its wake-up.

use std::cell::Cell;
use std::hint::spin_loop;
use std::ops::ControlFlow;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// The longest nap when a missed wake-up is ruled out ([`fence_wakers`]): then
/// a nap only bounds what a peer that died mid-wake, or wrote nonsense into the
/// sleep words, can cost, and a short one would only burn CPU (an idle waiter
/// wakes 10 times a second instead of 1000).
pub(crate) const LONG_NAP: Duration = Duration::from_millis(100);

/// The longest nap when a wake-up can be missed: a waker's store of its index
/// and its load of our sleep flag are a store followed by a load, which x86
/// (and every weaker CPU) may reorder unless the waker pays a full fence on
/// every push or pop. [`fence_wakers`] closes that race; the ring bench's
/// `interleaved/wake-ups` counts the stalls it would cause.
pub(crate) const SHORT_NAP: Duration = Duration::from_millis(1);

/// Called by every handle that may wake a sleeper (it pushes or pops), before
/// its first operation. Registers the process for the barriers
/// [`fence_wakers`] sends; a process the kernel does not register sets the
/// segment's sticky `unfenced` word, and a full fence publishes that before
/// any push or pop of ours can matter to a sleeper. A child forked after
/// this inherits the registration (tests/ring.rs checks it), so handles it
/// inherits stay covered; exec clears it, and a new program makes its own
/// handles.
pub(crate) fn join_as_waker(unfenced: &AtomicU32) {
    if !sys::register_for_barriers() {
        unfenced.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }
}

/// Called by a waiter between announcing its sleep (a SeqCst store and fence)
/// and re-checking whether it must sleep; returns how long it may then sleep.
///
/// The handshake is Dekker's: the waker publishes (store) then reads the sleep
/// flag (load); the waiter sets the flag (store) then re-checks the index
/// (load). The waiter's fence orders its side; the waker's side has no fence,
/// so its load may pass its store, and then neither sees the other's store:
/// the waiter sleeps through a value that has arrived. `membarrier` closes
/// that: it runs a full barrier on every CPU running a registered waker before
/// it returns. A waker whose flag load came after that barrier sees our flag
/// and wakes us; one whose load came before it had its store (earlier in its
/// program order) drain before it too, so our re-check sees the value. So when
/// the barrier succeeds and no process in the segment went unregistered, a
/// wake-up cannot be missed, and the nap can be long.
///
/// The cost: one syscall here, and an interrupt to each CPU that is running a
/// thread of a registered process at that moment (one or two microseconds of
/// its time). Only a thread about to sleep pays it, after 20 us without
/// progress, so a waiter woken for every item of a slow stream sends one per
/// item; on a machine with many busy registered processes that is worth
/// knowing.
pub(crate) fn fence_wakers(unfenced: &AtomicU32) -> Duration {
    if sys::barrier_on_registered() && unfenced.load(Ordering::Relaxed) == 0 {
        LONG_NAP
    } else {
        SHORT_NAP
    }
}

/// How long a blocking operation spins before it sleeps. Measured in time, not
/// iterations: a pause instruction costs from a few to over a hundred cycles
/// depending on the processor (and a hypervisor may stretch it), and a peer
/// that answers within this window is never put to sleep and woken.
pub(crate) const SPIN_TIME: Duration = Duration::from_micros(20);

/// After this long, the spin gives the processor away (`sched_yield`) on each
/// turn instead of pausing. The peer we wait for may be queued on our own CPU:
/// the scheduler places a woken task next to its waker, and pausing then only
/// delays the peer, while yielding lets it run at once. A peer on another CPU
/// answers well within this time, so the fast case never yields.
///
/// A thread whose last wait ended right after a yield that let another task
/// run (see [`PEER_RAN`]) yields at once on its next wait: the peer is then
/// most likely on our CPU.
pub(crate) const YIELD_AFTER: Duration = Duration::from_micros(2);

/// A `sched_yield` that takes this long let another task run on our CPU before
/// it returned; one that finds no other task returns in well under half of
/// this (a switch to another process and back takes several times longer).
/// When the value we wait for arrives right after such a
/// yield, the task that ran was almost surely our peer.
const PEER_RAN: Duration = Duration::from_micros(2);

/// A yield that takes longer than this let something run for more than a
/// short turn: perhaps an unrelated busy task, which we should not hand our
/// CPU to first thing on every wait (it may keep it for a whole time slice,
/// milliseconds). And when the peer itself takes that long a turn, the 2 us
/// spin before yielding costs little next to it.
const PEER_TURN: Duration = Duration::from_micros(50);

thread_local! {
    /// Whether this thread's last wait ended right after a yield that let
    /// another task run for a short turn ([`PEER_RAN`]..[`PEER_TURN`]): the peer
    /// then shared our CPU, and probably still does. A hint: when it is wrong,
    /// the next wait's first yield returns quickly, and the wait spins as usual.
    static PEER_SHARES_CPU: Cell<bool> = const { Cell::new(false) };
}

/// Runs `attempt` until it breaks, or until `timeout` has passed, when the
/// state it carries is handed back as `Err`. Between attempts it spins for
/// [`SPIN_TIME`] (yielding after [`YIELD_AFTER`], or from the start when the
/// peer seems to share our CPU), then calls `nap(deadline)`, which sleeps until
/// woken, for a short while, or until the deadline. The first attempt runs
/// before the clock is read: reading it costs more than a ring operation.
pub(crate) fn retry<S, R>(
    state: S,
    timeout: Duration,
    mut attempt: impl FnMut(S) -> ControlFlow<R, S>,
    mut nap: impl FnMut(Instant),
) -> Result<R, S> {
    let mut state = match attempt(state) {
        ControlFlow::Break(done) => return Ok(done),
        ControlFlow::Continue(state) => state,
    };
    let started = Instant::now();
    let deadline = started + timeout;
    let mut yield_after = if PEER_SHARES_CPU.get() {
        Duration::ZERO
    } else {
        YIELD_AFTER
    };
    // Whether the last thing we did was a yield during which another task ran.
    let mut other_ran = false;
    loop {
        state = match attempt(state) {
            ControlFlow::Break(done) => {
                PEER_SHARES_CPU.set(other_ran);
                return Ok(done);
            }
            ControlFlow::Continue(state) => state,
        };
        let now = Instant::now();
        if now >= deadline {
            PEER_SHARES_CPU.set(false);
            return Err(state);
        }
        let spun = now - started;
        other_ran = false;
        if spun < yield_after {
            spin_loop();
        } else if spun < SPIN_TIME {
            std::thread::yield_now();
            let took = now.elapsed();
            other_ran = (PEER_RAN..PEER_TURN).contains(&took);
            if took < PEER_RAN {
                // No one else waits for our CPU, so the peer runs elsewhere:
                // spin as usual.
                yield_after = YIELD_AFTER;
            }
        } else {
            nap(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_with_the_hint_set_still_runs_to_its_deadline_and_clears_the_hint() {
        PEER_SHARES_CPU.set(true);
        let timeout = Duration::from_millis(30);
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut naps = 0u32;
        let result: Result<(), u32> = retry(
            7,
            timeout,
            |state| {
                attempts += 1;
                ControlFlow::Continue(state)
            },
            |deadline| {
                naps += 1;
                std::thread::sleep(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(1)),
                );
            },
        );
        assert_eq!(result, Err(7), "the state comes back on timeout");
        assert!(started.elapsed() >= timeout);
        assert!(attempts > 2 && naps > 0, "{attempts} attempts, {naps} naps");
        assert!(!PEER_SHARES_CPU.get());
    }

    /// Where the kernel registers us (Linux 4.16+, no seccomp filter in the
    /// way), naps are long; once any waker of the segment could not register,
    /// they are short for good.
    #[test]
    #[cfg(not(miri))]
    fn naps_are_long_only_while_every_waker_is_registered() {
        let unfenced = AtomicU32::new(0);
        join_as_waker(&unfenced);
        let registered = sys::register_for_barriers();
        assert_eq!(unfenced.load(Ordering::Relaxed), u32::from(!registered));
        let expected = if registered && sys::barrier_on_registered() {
            LONG_NAP
        } else {
            SHORT_NAP
        };
        assert_eq!(fence_wakers(&unfenced), expected);
        unfenced.store(1, Ordering::Relaxed);
        assert_eq!(fence_wakers(&unfenced), SHORT_NAP);
    }

    #[test]
    fn a_wait_ends_when_the_attempt_succeeds() {
        for hint in [false, true] {
            PEER_SHARES_CPU.set(hint);
            let mut left = 5;
            let result: Result<&str, ()> = retry(
                (),
                Duration::from_secs(10),
                |()| {
                    left -= 1;
                    if left == 0 {
                        ControlFlow::Break("done")
                    } else {
                        ControlFlow::Continue(())
                    }
                },
                |_| {},
            );
            assert_eq!(result, Ok("done"));
            assert_eq!(left, 0);
        }
    }
}
