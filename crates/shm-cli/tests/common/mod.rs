//! Helpers shared by the tests of the real `shm` binary: running it, guards
//! that remove what a test made (also when it fails), and `ipcs -m` readers.

#![allow(dead_code)] // each test binary uses its own part

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use shm_sys::posix::PosixSegment;
use shm_sys::sysv::Segment;

/// The real binary.
pub fn shm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shm"))
}

/// Runs `shm` with `args`; (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let output = shm().args(args).output().expect("running shm");
    split(&output)
}

/// (success, stdout, stderr) of an output.
pub fn split(output: &Output) -> (bool, String, String) {
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `shm` and asserts success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(args);
    assert!(ok, "shm {args:?} failed:\n{stderr}\n{stdout}");
    assert!(!stderr.contains("panicked"), "shm {args:?}: {stderr}");
    stdout
}

/// Removes a System V segment (by id) when dropped, also on panic.
#[derive(Debug)]
pub struct RemoveSysv(pub i32);

impl Drop for RemoveSysv {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::from_id(self.0) {
            let _ = segment.remove();
        }
    }
}

/// Unlinks a POSIX object when dropped, also on panic.
#[derive(Debug)]
pub struct UnlinkPosix(pub String);

impl Drop for UnlinkPosix {
    fn drop(&mut self) {
        let _ = PosixSegment::unlink(&self.0);
    }
}

/// A name or number unique to this run and call: the pid and a counter.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A System V key unique to this run and call (never IPC_PRIVATE).
pub fn unique_key() -> i32 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let call = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
    // 0x5C.. prefix, 16 bits of pid, 8 bits of call: distinct per run.
    (0x5C00_0000u32 | (std::process::id() & 0xffff) << 8 | (call & 0xff)) as i32
}

/// `ipcs -m -p` rows: (shmid, cpid, lpid).
pub fn ipcs_pids() -> Vec<(i32, u32, u32)> {
    let output = Command::new("ipcs")
        .args(["-m", "-p"])
        .output()
        .expect("ipcs -m -p");
    assert!(output.status.success(), "ipcs -m -p failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [id, _owner, cpid, lpid, ..] => {
                    Some((id.parse().ok()?, cpid.parse().ok()?, lpid.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// `ipcs -m` rows: (key, shmid, perms, bytes, nattch).
pub fn ipcs_rows() -> Vec<(String, i32, String, usize, u64)> {
    let output = Command::new("ipcs").arg("-m").output().expect("ipcs -m");
    assert!(output.status.success(), "ipcs -m failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("0x"))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[3].to_owned(),
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
            )
        })
        .collect()
}
