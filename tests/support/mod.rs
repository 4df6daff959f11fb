//! Shared helpers for the multi-process integration tests: a peer process with
//! deadlines, guards that remove what a test created (also when it panics), keys
//! and names unique to the run, and a parser for `ipcs -m`.

#![allow(dead_code)] // each test file uses a different subset

pub mod race;
pub mod stress;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use shm_sys::posix::PosixSegment;
use shm_sys::sysv::{Segment, SegmentOptions};
use shm_sys::{Error, Key};

/// How long a test waits for a peer's next step before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The pattern byte a peer writes at `index` (same formula as the peer binary).
pub fn pattern(seed: u8, index: usize) -> u8 {
    (index as u8).wrapping_mul(31).wrapping_add(seed)
}

/// `len` bytes of the pattern for `seed`.
pub fn pattern_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|index| pattern(seed, index)).collect()
}

/// A helper process running one role of `tests/bin/peer.rs`. Dropping it kills
/// the process if it is still running, so a failing test leaves no peer behind.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    role: String,
}

impl Peer {
    /// Starts the peer binary with a role and its arguments.
    pub fn start(args: &[&str]) -> Peer {
        Peer::start_command(Command::new(env!("CARGO_BIN_EXE_shm-test-peer")), args)
    }

    /// Starts a prepared command (for extra setup such as inherited descriptors).
    pub fn start_command(mut command: Command, args: &[&str]) -> Peer {
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting peer {args:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            stdin: child.stdin.take(),
            child,
            lines,
            role: args.first().copied().unwrap_or("").to_owned(),
        }
    }

    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the peer prints, which must start with `prefix`; fails the
    /// test if none arrives within [`DEADLINE`].
    pub fn expect_line(&mut self, prefix: &str) -> String {
        self.expect_line_within(prefix, DEADLINE)
    }

    /// [`expect_line`](Peer::expect_line) with its own deadline, for steps
    /// whose length scales with the work asked (a stress run in a debug build
    /// on a loaded machine).
    pub fn expect_line_within(&mut self, prefix: &str, deadline: Duration) -> String {
        match self.lines.recv_timeout(deadline) {
            Ok(line) if line.starts_with(prefix) => line,
            Ok(line) => panic!(
                "peer {}: expected a line starting with {prefix:?}, got {line:?}",
                self.role
            ),
            Err(RecvTimeoutError::Timeout) => {
                panic!("peer {}: no line {prefix:?} within {deadline:?}", self.role)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait();
                panic!(
                    "peer {}: exited ({status:?}) before printing {prefix:?}",
                    self.role
                )
            }
        }
    }

    /// The next line the peer prints within `deadline`; `None` if it prints
    /// none (it exited, or took longer).
    #[allow(dead_code)]
    pub fn next_line_within(&mut self, deadline: Duration) -> Option<String> {
        self.lines.recv_timeout(deadline).ok()
    }

    /// Lets a peer waiting on stdin go on.
    pub fn go(&mut self) {
        self.send("go");
    }

    /// Sends SIGKILL (without reaping: the peer stays a zombie until [`Peer::wait`]).
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
    }

    /// Sends a line to the peer.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("writing to peer");
        stdin.flush().expect("flushing peer stdin");
    }

    /// Waits for the peer to exit, failing the test after [`DEADLINE`].
    pub fn wait(&mut self) -> ExitStatus {
        self.stdin.take();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "peer {} did not exit within {DEADLINE:?}",
                self.role
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the peer and asserts it exited with status 0.
    pub fn wait_success(&mut self) {
        let status = self.wait();
        assert!(status.success(), "peer {} failed: {status:?}", self.role);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A System V segment that is removed when the guard drops, also on panic.
pub struct RemoveOnDrop(pub Segment);

impl std::ops::Deref for RemoveOnDrop {
    type Target = Segment;
    fn deref(&self) -> &Segment {
        &self.0
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // NotFound is fine: the test may have removed it itself.
        let _ = self.0.remove();
    }
}

/// A POSIX shm name that is unlinked when the guard drops, also on panic.
pub struct UnlinkOnDrop(pub String);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let _ = PosixSegment::unlink(&self.0);
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run_salt() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::process::id()
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(count.wrapping_mul(0x85eb_ca6b))
        ^ nanos
}

/// A key no one else is likely to use: derived from the process id, a counter and
/// the clock, never `IPC_PRIVATE`.
pub fn unique_key() -> Key {
    loop {
        let raw = run_salt() as i32;
        if raw != 0 {
            return Key::new(raw);
        }
    }
}

/// Creates a segment under a key unique to this run, trying again on the rare
/// collision with an existing key.
pub fn create_unique(options: impl Fn(Key) -> SegmentOptions) -> (Key, RemoveOnDrop) {
    for _ in 0..100 {
        let key = unique_key();
        match options(key).create() {
            Ok(segment) => return (key, RemoveOnDrop(segment)),
            Err(Error::AlreadyExists { .. }) => continue,
            Err(other) => panic!("creating a segment: {other}"),
        }
    }
    panic!("100 random keys were all taken");
}

/// A POSIX shm name unique to this run.
pub fn unique_name(label: &str) -> String {
    format!(
        "/shm-test-{label}-{}-{:08x}",
        std::process::id(),
        run_salt()
    )
}

/// Polls `condition` until it holds, failing the test with `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One row of `ipcs -m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcsRow {
    pub key: String,
    pub id: i32,
    pub owner: String,
    pub perms: String,
    pub bytes: usize,
    pub nattch: u64,
    pub status: String,
}

/// Runs `ipcs -m` and parses its table.
pub fn ipcs_m() -> Vec<IpcsRow> {
    let output = Command::new("ipcs")
        .arg("-m")
        .output()
        .expect("running ipcs -m");
    assert!(output.status.success(), "ipcs -m failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("0x"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            IpcsRow {
                key: fields[0].to_owned(),
                id: fields[1].parse().expect("ipcs shmid"),
                owner: fields[2].to_owned(),
                perms: fields[3].to_owned(),
                bytes: fields[4].parse().expect("ipcs bytes"),
                nattch: fields[5].parse().expect("ipcs nattch"),
                status: fields
                    .get(6..)
                    .map(|rest| rest.join(" "))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// `ipcs -m -i ID`, as `name=value` pairs (uid, gid, cuid, cgid, mode, bytes,
/// lpid, cpid, nattch, ...).
pub fn ipcs_details(id: i32) -> Vec<(String, String)> {
    let output = Command::new("ipcs")
        .args(["-m", "-i", &id.to_string()])
        .output()
        .expect("running ipcs -m -i");
    assert!(
        output.status.success(),
        "ipcs -m -i {id} failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// One value from [`ipcs_details`].
pub fn ipcs_detail(id: i32, name: &str) -> String {
    ipcs_details(id)
        .into_iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("ipcs -m -i {id} shows no {name}"))
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
pub fn start_time(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}
