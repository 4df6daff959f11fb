//! What the benchmarks share: the peer process, the raw cross-process
//! ping-pong (the hardware floor), and the interleaving machinery: a probe that
//! tells the vCPU placement before each round, rounds tagged by it, and
//! alternating order. This VM's two vCPUs move between placements within a
//! run (raw round trip about 55, 110 or 370-490 ns), so only ratios measured
//! round by round, subject and baseline alternating, mean anything.

#![allow(dead_code)] // each benchmark uses a different subset

use std::hint::spin_loop;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shm_sys::sysv::Segment;
use shm_sys::Mapping;

/// A peer process from the test helper binary, killed on drop.
pub struct Peer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<BufReader<ChildStdout>>,
}

impl Peer {
    pub fn start(args: &[&str], pass_fd: Option<&OwnedFd>) -> Peer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"));
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(fd) = pass_fd {
            let source = fd.as_raw_fd();
            // SAFETY: dup2/fcntl are async-signal-safe and touch nothing else.
            unsafe {
                command.pre_exec(move || {
                    let result = if source == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(source, 3)
                    };
                    if result < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start peer");
        let stdin = child.stdin.take();
        let stdout = Some(BufReader::new(child.stdout.take().unwrap()));
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the peer: a spinning peer that is
    /// not being measured would otherwise take a vCPU from the one that is (this
    /// machine has two).
    pub fn set_running(&self, running: bool) {
        let signal = if running {
            libc::SIGCONT
        } else {
            libc::SIGSTOP
        };
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn expect_ready(&mut self) {
        let mut line = String::new();
        self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The raw floor: two atomics on separate lines of a shared segment.
pub struct RawPingPong {
    mapping: Mapping,
    pub peer: Peer,
    counter: u64,
    /// Both sides wait with `sched_yield` instead of a spin hint.
    yielding: bool,
}

impl RawPingPong {
    pub fn new() -> RawPingPong {
        RawPingPong::start(false)
    }

    /// The floor for two processes on one CPU: each side waits with
    /// `sched_yield`, so a round trip is two context switches and nothing
    /// more (no system call wakes anybody; the yield hands the CPU over).
    pub fn yielding() -> RawPingPong {
        RawPingPong::start(true)
    }

    fn start(yielding: bool) -> RawPingPong {
        let segment = Segment::create_private(4096).expect("segment");
        let mapping = segment.attach().expect("attach");
        segment.remove().expect("remove (freed when both detach)");
        let id = segment.id().to_string();
        let mode = if yielding { "yield" } else { "spin" };
        let mut peer = Peer::start(&["raw-echo", &id, mode], None);
        peer.expect_ready();
        RawPingPong {
            mapping,
            peer,
            counter: 0,
            yielding,
        }
    }

    pub fn round_trips(&mut self, iters: u64) -> Duration {
        let base = self.mapping.as_mut_ptr().unwrap();
        // SAFETY: offsets 0 and 128 of a live 4096-byte mapping, 8-aligned,
        // accessed only atomically by both processes.
        let (ping, pong) = unsafe {
            (
                AtomicU64::from_ptr(base.cast()),
                AtomicU64::from_ptr(base.add(128).cast()),
            )
        };
        let started = Instant::now();
        for _ in 0..iters {
            self.counter += 1;
            ping.store(self.counter, Ordering::Release);
            while pong.load(Ordering::Acquire) != self.counter {
                if self.yielding {
                    std::thread::yield_now();
                } else {
                    spin_loop();
                }
            }
        }
        started.elapsed()
    }
}

impl Drop for RawPingPong {
    fn drop(&mut self) {
        if let Some(base) = self.mapping.as_mut_ptr() {
            // SAFETY: as in round_trips.
            unsafe { AtomicU64::from_ptr(base.cast()) }.store(u64::MAX, Ordering::Release);
        }
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Rounds of raw RTT below this count as "near" vCPU placement: the two halves
/// of the bimodal raw round trip this VM shows (about 110 ns and about 490 ns).
pub const NEAR_NS: f64 = 250.0;

/// Near rounds with a raw RTT below this are "close": a third placement seen
/// on this VM (about 55 ns; the two vCPUs probably share a core, so the
/// sides compete for its execution units rather than wait for cache lines).
pub const CLOSE_NS: f64 = 80.0;

/// Results of interleaved rounds, each tagged with the raw round trip measured
/// just before it, so that rounds under near and far vCPU placement can be
/// told apart.
#[derive(Default)]
pub struct Rounds {
    values: Vec<(f64, f64)>,
}

impl Rounds {
    pub fn push(&mut self, raw_ns: f64, value: f64) {
        self.values.push((raw_ns, value));
    }

    /// Every round's value, in the order pushed.
    pub fn values(&self) -> Vec<f64> {
        self.values.iter().map(|&(_, value)| value).collect()
    }

    pub fn summary(&self, unit: &str, precision: usize) -> String {
        let pick = |from: f64, below: f64| {
            let mut values: Vec<f64> = self
                .values
                .iter()
                .filter(|(raw, _)| (from..below).contains(raw))
                .map(|&(_, value)| value)
                .collect();
            match values.len() {
                0 => "no rounds".to_string(),
                count => format!("{:.precision$}{unit} ({count})", median(&mut values)),
            }
        };
        let near = pick(0.0, NEAR_NS);
        format!(
            "{} [near: {near}, of which close: {}; far: {}]",
            pick(0.0, f64::INFINITY),
            pick(0.0, CLOSE_NS),
            pick(NEAR_NS, f64::INFINITY)
        )
    }
}

/// The raw floor, kept stopped between probes: one short probe before each
/// round tells the vCPU placement the round ran under.
pub struct Probe(RawPingPong);

impl Probe {
    pub fn new() -> Probe {
        let probe = RawPingPong::new();
        probe.peer.set_running(false);
        Probe(probe)
    }

    /// Raw cross-process round trip now, in ns (median of five short runs).
    pub fn raw_ns(&mut self) -> f64 {
        self.0.peer.set_running(true);
        let mut runs: Vec<f64> = (0..5)
            .map(|_| self.0.round_trips(400).as_nanos() as f64 / 400.0)
            .collect();
        self.0.peer.set_running(false);
        median(&mut runs)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.peer.set_running(true);
    }
}

/// Runs `subject` and `baseline` in alternating order (so neither always goes
/// first), returning their durations in that order.
pub fn alternate(
    round: usize,
    subject: &mut dyn FnMut() -> Duration,
    baseline: &mut dyn FnMut() -> Duration,
) -> (Duration, Duration) {
    if round % 2 == 0 {
        let s = subject();
        (s, baseline())
    } else {
        let b = baseline();
        (subject(), b)
    }
}

/// Rounds of each interleaved comparison: 20, or 2 under
/// `SHM_BENCH_SMOKE=1`, which CI sets to check that every part runs to its
/// end (figures from such a run mean nothing).
pub fn rounds() -> usize {
    scaled(20)
}

/// `full`, or a tenth of it (rounded up, at least 2) when
/// `SHM_BENCH_SMOKE` is set.
pub fn scaled(full: usize) -> usize {
    if smoke() {
        full.div_ceil(10).max(2)
    } else {
        full
    }
}

/// Whether this is a smoke run (`SHM_BENCH_SMOKE` set): every part runs, a
/// few rounds each, to show it runs at all.
pub fn smoke() -> bool {
    std::env::var_os("SHM_BENCH_SMOKE").is_some()
}

/// The median over [`rounds`] rounds of `subject` time / `baseline` time, the
/// two run in alternating order; each round's times go to stderr when the
/// environment variable `verbose` is set.
pub fn time_ratio(
    verbose: &str,
    subject: &mut dyn FnMut() -> Duration,
    baseline: &mut dyn FnMut() -> Duration,
) -> f64 {
    let verbose = std::env::var_os(verbose).is_some();
    let mut ratios: Vec<f64> = (0..rounds())
        .map(|round| {
            let (subject, base) = alternate(round, subject, baseline);
            if verbose {
                eprintln!("round: subject {subject:?} baseline {base:?}");
            }
            subject.as_secs_f64() / base.as_secs_f64()
        })
        .collect();
    median(&mut ratios)
}

/// Times `ops` calls of `op`.
pub fn timed(ops: u64, mut op: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..ops {
        op();
    }
    started.elapsed()
}

/// Whether the benchmark's interleaved section should run: when no filter is
/// given (`cargo bench --bench NAME`), or when the filter is `interleaved`.
pub fn interleaved_wanted() -> bool {
    !std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with('-') && arg != "interleaved")
}
