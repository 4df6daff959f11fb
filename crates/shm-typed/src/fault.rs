//! Fault injection for tests of crash recovery (cargo feature
//! `fault-injection`, off by default): at each named point of creating and
//! initialising a segment, a process whose `SHM_TYPED_FAULT` environment
//! variable names that point kills itself with `SIGKILL`, exactly as a crash
//! there would leave things. Without the feature every point is nothing.
//!
//! The points, in the order a creator passes them:
//!
//! | point | what exists when it dies |
//! |---|---|
//! | `create:after-shmget` | the System V segment, all zero, not attached |
//! | `create:after-attach` | the same, attached |
//! | `init:after-record` | the creator record's start time and pid namespace, no claim |
//! | `init:after-claim` | the claim (creator pid) as well |
//! | `init:after-state` | the state word `initialising` as well |
//! | `init:after-header` | the whole header, the lock not set up |
//! | `init:after-lock` | the lock set up, the payload not written |
//! | `init:after-payload` | everything but `ready` |

/// Every point, in order (see the module documentation).
#[cfg(feature = "fault-injection")]
pub const POINTS: [&str; 8] = [
    "create:after-shmget",
    "create:after-attach",
    "init:after-record",
    "init:after-claim",
    "init:after-state",
    "init:after-header",
    "init:after-lock",
    "init:after-payload",
];

/// Dies here if `SHM_TYPED_FAULT` names this point.
#[cfg(feature = "fault-injection")]
pub(crate) fn point(name: &str) {
    if std::env::var_os("SHM_TYPED_FAULT").is_some_and(|wanted| wanted == name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL to ourselves is delivered before kill returns; should it
        // not be, never go on past the point.
        loop {
            std::thread::park();
        }
    }
}

/// Nothing: fault injection is compiled out.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}
