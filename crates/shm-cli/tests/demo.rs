//! `shm demo` on the real binary: its report (hdrhistogram percentiles and a
//! text histogram), its progress output when stderr is not a terminal, and
//! that it leaves no System V segment behind when a SIGINT lands between its
//! shmget and its IPC_RMID (injected with strace).

mod common;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{ipcs_pids, shm, split, RemoveSysv};

const STRACE: &str = "/usr/bin/strace";
/// util-linux's `script`: runs a command on a pseudo-terminal.
const SCRIPT: &str = "/usr/bin/script";

#[test]
fn demo_reports_percentiles_a_histogram_and_plain_progress() {
    let output = shm()
        .args(["demo", "--count", "200000", "--latency-samples", "5000"])
        .stderr(Stdio::piped())
        .output()
        .expect("running shm demo");
    let (ok, stdout, stderr) = split(&output);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("throughput: 200000 samples in order"),
        "{stdout}"
    );
    let latency = stdout
        .lines()
        .find(|line| line.contains("one-way latency over 5000 samples"))
        .unwrap_or_else(|| panic!("no latency line:\n{stdout}"));
    for field in ["p50 ", "p90 ", "p99 ", "p99.9 ", "max "] {
        assert!(latency.contains(field), "{field:?} missing: {latency}");
    }
    // The histogram: one row per power-of-two range, counts adding up.
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.contains("histogram"))
        .skip(1)
        .take_while(|line| line.contains(" ns ") && line.contains('|'))
        .collect();
    assert!(!rows.is_empty(), "no histogram rows:\n{stdout}");
    let total: u64 = rows
        .iter()
        .map(|row| {
            let after_bar = row.rsplit('|').next().unwrap();
            after_bar
                .split_whitespace()
                .next()
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in histogram row {row:?}"))
        })
        .sum();
    assert_eq!(total, 5000, "histogram counts:\n{stdout}");
    assert!(rows.iter().any(|row| row.contains('#')), "{stdout}");
    // Not a terminal: a few plain progress lines on stderr, no carriage return.
    assert!(
        !stdout.contains('\r') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("progress"))
        .collect();
    assert!(
        (2..=6).contains(&progress.len()),
        "a few progress lines: {stderr}"
    );
    assert!(progress.last().unwrap().contains("100%"), "{stderr}");
    assert!(
        !stdout.contains("progress"),
        "progress is on stderr: {stdout}"
    );
}

#[test]
fn demo_draws_a_progress_bar_when_stderr_is_a_terminal() {
    assert!(
        Path::new(SCRIPT).exists(),
        "this test needs {SCRIPT} (apt-get install util-linux)"
    );
    let command = format!(
        "{} demo --count 3000000 --latency-samples 1000",
        env!("CARGO_BIN_EXE_shm")
    );
    let output = Command::new(SCRIPT)
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("running script");
    let (ok, screen, stderr) = split(&output);
    assert!(ok, "{screen}\n{stderr}");
    assert!(screen.contains("throughput: 3000000 samples"), "{screen}");
    assert!(screen.contains("histogram"), "{screen}");
    // indicatif's bar (its block characters, redrawn in place), not the
    // plain lines meant for logs.
    assert!(screen.contains('\u{2588}'), "no bar drawn: {screen:?}");
    assert!(
        screen.contains("\x1b[2K"),
        "not redrawn in place: {screen:?}"
    );
    assert!(!screen.contains("progress 25%"), "{screen}");
}

/// Removes, when dropped, every segment created by `pid` that was not there
/// before the test: what the demo would have left behind.
struct RemoveLeftovers {
    pid: u32,
    before: HashSet<i32>,
}

impl RemoveLeftovers {
    fn leftovers(&self) -> Vec<(i32, u32, u32)> {
        ipcs_pids()
            .into_iter()
            .filter(|(id, cpid, _)| *cpid == self.pid && !self.before.contains(id))
            .collect()
    }
}

impl Drop for RemoveLeftovers {
    fn drop(&mut self) {
        for (id, _, _) in self.leftovers() {
            drop(RemoveSysv(id));
        }
    }
}

/// Runs the demo under strace with `inject` (a syscall between the demo's
/// shmget and its IPC_RMID gets a SIGINT) and checks that no segment of the
/// demo's is left in `ipcs -m`.
fn interrupt_demo_at(inject: &str) {
    assert!(
        Path::new(STRACE).exists(),
        "this test needs {STRACE} (apt-get install strace)"
    );
    let before: HashSet<i32> = ipcs_pids().into_iter().map(|(id, _, _)| id).collect();
    // `sh` prints its pid, then becomes the demo (exec keeps the pid), so we
    // know the creator pid ipcs will show for the demo's segment.
    let mut command = Command::new(STRACE);
    command
        .args(["-f", "-e", inject, "-o", "/dev/null", "/bin/sh", "-c"])
        .arg(r#"echo $$; exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_shm"))
        .args(["demo", "--count", "100000", "--latency-samples", "100"])
        .stdin(Stdio::null());
    // As at a terminal: a suite started in the background of a
    // non-interactive shell has SIGINT ignored, and exec keeps that.
    // SAFETY: signal() is async-signal-safe; the closure touches nothing
    // else between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        })
    };
    let output = command.output().expect("running strace");
    let (_, stdout, stderr) = split(&output);
    let pid: u32 = stdout
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid from sh: {stdout:?} {stderr}"));
    let guard = RemoveLeftovers { pid, before };
    // The signal came in the window: the demo died of it before its first line.
    assert_eq!(
        output
            .status
            .signal()
            .or(output.status.code().map(|c| c - 128)),
        Some(libc::SIGINT),
        "the demo ended by SIGINT ({inject}): {:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("shm demo:"),
        "SIGINT came only after the demo had started ({inject}):\n{stdout}"
    );
    let left = guard.leftovers();
    assert!(
        left.is_empty(),
        "SIGINT at {inject} left the demo's segment(s) behind (shmid, cpid, lpid): {left:?}"
    );
}

#[test]
fn demo_interrupted_between_shmget_and_ipc_rmid_leaves_nothing_behind() {
    // shmat: the first syscall after shmget; shmctl (IPC_STAT) the next.
    interrupt_demo_at("inject=shmat:signal=SIGINT:when=1");
    interrupt_demo_at("inject=shmctl:signal=SIGINT:when=1");
}
