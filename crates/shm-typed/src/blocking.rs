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

/// Runs `attempt` until it breaks, or until `timeout` has passed, when the
/// state it carries is handed back as `Err`. Between attempts it spins for
/// [`SPIN_TIME`], then calls `nap(deadline)`, which sleeps until woken, for a
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
        if started.elapsed() < SPIN_TIME {
            spin_loop();
        } else {
            nap(deadline);
        }
    }
}
