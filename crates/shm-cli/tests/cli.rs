//! The real `shm` binary: the demo runs, reports, and leaves nothing behind,
//! also when interrupted with SIGINT.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn shm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shm"))
}

/// Whether `ipcs -m` lists a segment with this id.
fn segment_listed(id: i32) -> bool {
    let output = Command::new("ipcs").arg("-m").output().expect("ipcs -m");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("0x"))
        .any(|line| line.split_whitespace().nth(1) == Some(&id.to_string()))
}

/// The segment id from the demo's first line.
fn demo_segment_id(first_line: &str) -> i32 {
    first_line
        .split("System V segment ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or_else(|| panic!("no segment id in {first_line:?}"))
}

#[test]
fn demo_streams_reports_and_leaves_nothing_behind() {
    let output = shm()
        .args(["demo", "--count", "2000000", "--latency-samples", "20000"])
        .output()
        .expect("running shm demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("throughput: 2000000 samples in order"),
        "{stdout}"
    );
    for percentile in ["p50", "p99", "p99.9"] {
        assert!(stdout.contains(percentile), "{stdout}");
    }
    let id = demo_segment_id(stdout.lines().next().unwrap());
    assert!(!segment_listed(id), "segment {id} is still in ipcs -m");
}

#[test]
fn demo_interrupted_with_sigint_leaves_nothing_behind() {
    let mut child = shm()
        .args(["demo", "--count", "4000000000"])
        .stdout(Stdio::piped())
        .process_group(0) // its own group: the SIGINT below must not reach this test
        .spawn()
        .expect("starting shm demo");
    let stdout = child.stdout.take().unwrap();
    let (lines, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = receive
        .recv_timeout(Duration::from_secs(20))
        .expect("first line");
    let id = demo_segment_id(&first);
    // Let it run a moment, then interrupt the whole group, as Ctrl-C would.
    std::thread::sleep(Duration::from_millis(200));
    let group = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).expect("SIGINT");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "demo ignored SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success(), "interrupted, not finished: {status:?}");
    // The workers die with the group; the segment goes with the last of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while segment_listed(id) {
        assert!(
            std::time::Instant::now() < deadline,
            "segment {id} left in ipcs -m"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn help_and_errors() {
    let help = shm().arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("demo"));
    let demo_help = shm().args(["demo", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&demo_help.stdout).contains("--latency-samples"));
    let wrong = shm().arg("no-such-command").output().unwrap();
    assert!(!wrong.status.success());
    // A worker pointed at a segment id that does not exist.
    let bad_worker = shm()
        .args(["demo-consumer", "2147483000", "1", "1"])
        .output()
        .unwrap();
    assert!(!bad_worker.status.success());
    let message = String::from_utf8_lossy(&bad_worker.stderr);
    assert_eq!(message.lines().count(), 1, "one clear line: {message}");
    assert!(message.starts_with("shm: "), "{message}");
    assert!(message.contains("2147483000"), "names the id: {message}");
}
