//! Fault injection for tests of crash recovery (cargo feature
//! `fault-injection`, off by default). Without the feature every point below
//! is nothing at all.
//!
//! **Crash points.** At each named point of creating and initialising a
//! segment, a process whose `SHM_TYPED_FAULT` environment variable names that
//! point kills itself with `SIGKILL`, exactly as a crash there would leave
//! things. The points, in the order a creator passes them:
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
//!
//! **Pause points.** On the MPMC ring's claim paths, a process whose
//! `SHM_TYPED_PAUSE` variable is `POINT` or `POINT@N` stops the `N`th time
//! (default: the first) any of its threads passes `POINT`: it writes
//! `POINT N PID` and a newline to the file `SHM_TYPED_PAUSE_MARK` names (if
//! set), says the same on stderr, and sleeps for good, so that a test can
//! kill it right there. The points (`PAUSE_POINTS`):
//!
//! | point | where |
//! |---|---|
//! | `mpmc:push-claimed` | a producer won the enqueue position; the value is not written, the slot not published |
//! | `mpmc:pop-claimed` | a consumer won the dequeue position; the value is not read, the slot not freed |
//! | `mpmc:skip-claimed` | a consumer won the position of a skipped slot; the slot not freed |
//!
//! The environment is read once, the first time a pause point is passed; from
//! then on a point that is not the one named costs one relaxed load of a
//! static and a compare (benchmarks are built with the feature).

/// Every crash point, in order (see the module documentation).
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

/// Every pause point, in the order of their codes (see the module
/// documentation).
#[cfg(feature = "fault-injection")]
pub const PAUSE_POINTS: [&str; 3] = ["mpmc:push-claimed", "mpmc:pop-claimed", "mpmc:skip-claimed"];

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

/// A pause point (see the module documentation); its code is its place in
/// `PAUSE_POINTS` plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Pause {
    /// `mpmc:push-claimed`.
    PushUnpublished = 1,
    /// `mpmc:pop-claimed`.
    PopUnfreed = 2,
    /// `mpmc:skip-claimed`.
    SkipUnfreed = 3,
}

/// Stops here for good if `SHM_TYPED_PAUSE` names this point and this pass.
#[cfg(feature = "fault-injection")]
#[inline(always)]
pub(crate) fn pause(point: Pause) {
    let armed = pausing::ARMED.load(std::sync::atomic::Ordering::Relaxed);
    if armed == point as u32 || armed == pausing::UNREAD {
        pausing::arrive(point);
    }
}

/// Nothing: fault injection is compiled out.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn pause(_point: Pause) {}

#[cfg(feature = "fault-injection")]
mod pausing {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    use super::{Pause, PAUSE_POINTS};

    /// [`ARMED`] before the environment was read.
    pub(super) const UNREAD: u32 = u32::MAX;

    /// The code of the point `SHM_TYPED_PAUSE` names, 0 if none, [`UNREAD`]
    /// until the first pass of any point.
    pub(super) static ARMED: AtomicU32 = AtomicU32::new(UNREAD);

    /// Passes of the armed point so far.
    static PASSES: AtomicU64 = AtomicU64::new(0);

    /// What the environment asks for.
    struct Plan {
        point: u32,
        pass: u64,
        mark: Option<PathBuf>,
    }

    fn plan() -> Option<&'static Plan> {
        static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
        PLAN.get_or_init(|| {
            let wanted = std::env::var("SHM_TYPED_PAUSE").ok()?;
            let (name, pass) = match wanted.split_once('@') {
                Some((name, pass)) => (name, pass.parse().ok()?),
                None => (wanted.as_str(), 1),
            };
            let index = PAUSE_POINTS.iter().position(|known| *known == name)?;
            Some(Plan {
                point: index as u32 + 1,
                pass,
                mark: std::env::var_os("SHM_TYPED_PAUSE_MARK").map(PathBuf::from),
            })
        })
        .as_ref()
    }

    /// The slow half of [`super::pause`]: reads the environment once, counts
    /// passes of the armed point, and stops at the one asked for.
    #[cold]
    #[inline(never)]
    pub(super) fn arrive(point: Pause) {
        let plan = plan();
        ARMED.store(plan.map_or(0, |plan| plan.point), Ordering::Relaxed);
        let Some(plan) = plan.filter(|plan| plan.point == point as u32) else {
            return;
        };
        let pass = PASSES.fetch_add(1, Ordering::Relaxed) + 1;
        if pass != plan.pass {
            return;
        }
        let line = format!(
            "{} {pass} {}\n",
            PAUSE_POINTS[point as usize - 1],
            std::process::id()
        );
        if let Some(mark) = &plan.mark {
            // Written whole, then renamed into place: a test that sees the
            // file sees all of it.
            let partial = mark.with_extension("partial");
            if std::fs::write(&partial, &line).is_ok() {
                let _ = std::fs::rename(&partial, mark);
            }
        }
        let _ = std::io::stderr().write_all(format!("shm-typed: paused at {line}").as_bytes());
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
