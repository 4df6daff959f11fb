//! The waiting strategy every blocking ring call shares: try, spin a little,
//! then sleep in short naps until the deadline.

use std::cell::Cell;
use std::hint::spin_loop;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// How long a blocking operation spins before it sleeps. Measured in time, not
/// iterations: a pause instruction costs from a few to over a hundred cycles
/// depending on the processor (and a hypervisor may stretch it), and a peer
/// that answers within this window is never put to sleep and woken.
pub(crate) const SPIN_TIME: Duration = Duration::from_micros(20);

/// After this long, the spin gives the processor away (`sched_yield`) on each
/// turn instead of pausing. The peer we wait for may be queued on our own CPU:
/// the scheduler places a woken task next to its waker, and on this 2-vCPU VM
/// a blocking ping-pong was seen to run ~1000 round trips in a row with both
/// processes on one CPU. Pausing then only delays the peer (each round trip
/// cost two full spin windows, 30-100 us, slower than a pipe); yielding lets it
/// run at once (5-10 us). A peer on another CPU answers well within this time
/// (a cross-CPU round trip is 0.1-0.5 us here), so the fast case never yields.
///
/// A thread whose last wait ended right after a yield that let another task
/// run (see [`PEER_RAN`]) yields at once on its next wait: pinned to one CPU, a
/// blocking ping-pong then takes 3.9 us a round trip instead of 8.7 us (a pipe
/// takes 7.8 us there).
pub(crate) const YIELD_AFTER: Duration = Duration::from_micros(2);

/// A `sched_yield` that takes this long let another task run on our CPU before
/// it returned; one that finds no other task returns in well under half of
/// this (0.8 us on the README's VM, where a switch to another process and back
/// takes 3-4 us). When the value we wait for arrives right after such a
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
