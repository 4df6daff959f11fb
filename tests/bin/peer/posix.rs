//! POSIX shared memory and memfd roles.

use std::os::fd::{FromRawFd, OwnedFd};

use shm_sys::memfd::MemfdSegment;
use shm_sys::posix::PosixSegment;

use crate::common::{error_kind, parse, pattern_bytes, say};

/// posix-writer NAME LEN SEED: open by name, map, write the pattern.
pub fn writer(args: &[String]) -> Result<(), String> {
    let name: String = parse(args, 1, "name")?;
    let len: usize = parse(args, 2, "length")?;
    let seed: u8 = parse(args, 3, "seed")?;
    let segment = PosixSegment::open(&name).map_err(|e| e.to_string())?;
    let mapping = segment.map().map_err(|e| e.to_string())?;
    mapping
        .write_at(0, &pattern_bytes(seed, len))
        .map_err(|e| e.to_string())?;
    say(&format!("wrote {}", mapping.len()));
    Ok(())
}

/// memfd-writer FD LEN SEED: take the inherited descriptor, check the
/// pattern the parent wrote (seed), write the next one (seed + 1), then try
/// to shrink the sealed file and report the outcome.
pub fn memfd_writer(args: &[String]) -> Result<(), String> {
    let fd: i32 = parse(args, 1, "fd")?;
    let len: usize = parse(args, 2, "length")?;
    let seed: u8 = parse(args, 3, "seed")?;
    // SAFETY: the test passed us this descriptor number, inherited across
    // exec and not otherwise used in this process.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let memfd = MemfdSegment::from_fd(fd, "inherited");
    let mapping = memfd.map().map_err(|e| e.to_string())?;
    let mut seen = vec![0u8; len];
    mapping.read_at(0, &mut seen).map_err(|e| e.to_string())?;
    if seen != pattern_bytes(seed, len) {
        return Err("the parent's pattern is not in the memfd".into());
    }
    mapping
        .write_at(0, &pattern_bytes(seed.wrapping_add(1), len))
        .map_err(|e| e.to_string())?;
    match memfd.set_size(len / 2) {
        Ok(()) => say("shrink Ok"),
        Err(error) => say(&format!("shrink {}", error_kind(&error))),
    }
    Ok(())
}
