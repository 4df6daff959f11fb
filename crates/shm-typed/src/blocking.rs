//! The waiting strategy every blocking ring call shares: try, spin a little,
//! then sleep in short naps until the deadline.

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
pub(crate) const YIELD_AFTER: Duration = Duration::from_micros(2);

/// Runs `attempt` until it breaks, or until `timeout` has passed, when the
/// state it carries is handed back as `Err`. Between attempts it spins for
/// [`SPIN_TIME`] (yielding after [`YIELD_AFTER`]), then calls `nap(deadline)`, which sleeps until woken, for a
/// short while, or until the deadline. The first attempt runs before the clock
/// is read: reading it costs more than a ring operation.
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
    loop {
        state = match attempt(state) {
            ControlFlow::Break(done) => return Ok(done),
            ControlFlow::Continue(state) => state,
        };
        if Instant::now() >= deadline {
            return Err(state);
        }
        let spun = started.elapsed();
        if spun < YIELD_AFTER {
            spin_loop();
        } else if spun < SPIN_TIME {
            std::thread::yield_now();
        } else {
            nap(deadline);
        }
    }
}
