//! System V roles: a writer found by ftok, a writer through a read-only
//! attachment, and an opener without privileges.

use shm_sys::sysv::Segment;
use shm_sys::Key;

use crate::common::{error_kind, parse, pattern_bytes, say, wait_for_go};

/// sysv-writer PATH PROJ LEN SEED: find the segment by ftok, write the
/// pattern, report, hold the attachment until told, detach, report.
pub fn writer(args: &[String]) -> Result<(), String> {
    let path: String = parse(args, 1, "path")?;
    let project: i32 = parse(args, 2, "project id")?;
    let len: usize = parse(args, 3, "length")?;
    let seed: u8 = parse(args, 4, "seed")?;
    let key = Key::ftok(&path, project).map_err(|e| e.to_string())?;
    let segment = Segment::open(key).map_err(|e| e.to_string())?;
    let mapping = segment.attach().map_err(|e| e.to_string())?;
    mapping
        .write_at(0, &pattern_bytes(seed, len))
        .map_err(|e| e.to_string())?;
    say(&format!("attached {}", std::process::id()));
    wait_for_go();
    mapping.detach().map_err(|e| e.to_string())?;
    say("detached");
    Ok(())
}

/// sysv-read-only-writer ID: attach read-only, check a read works, then
/// write through the pointer. The write must kill us with SIGSEGV.
pub fn read_only_writer(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let segment = Segment::from_id(id).map_err(|e| e.to_string())?;
    let mapping = segment.attach_read_only().map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    mapping.read_at(0, &mut first).map_err(|e| e.to_string())?;
    say(&format!("read {}", first[0]));
    let address = mapping.as_ptr().cast_mut();
    // SAFETY: deliberately writing through a read-only mapping: the kernel
    // refuses the store with SIGSEGV, which is what the test checks. The
    // address is inside the mapping, so nothing else can be hit.
    unsafe { address.write_volatile(first[0].wrapping_add(1)) };
    say("wrote");
    Err("a write through a read-only mapping succeeded".into())
}

/// sysv-open-as-nobody KEY: drop privileges, open the key read-write and
/// read-only, and report each outcome.
pub fn open_as_nobody(args: &[String]) -> Result<(), String> {
    let key: i32 = parse(args, 1, "key")?;
    become_nobody()?;
    for (label, result) in [
        ("read-write", Segment::open(Key::new(key))),
        ("read-only", Segment::open_read_only(Key::new(key))),
    ] {
        match result {
            Ok(_) => say(&format!("{label} Ok")),
            Err(error) => say(&format!("{label} {} {error}", error_kind(&error))),
        }
    }
    Ok(())
}

/// Drops to uid/gid 65534 ("nobody"), supplementary groups included.
fn become_nobody() -> Result<(), String> {
    // SAFETY: plain syscalls on this single-threaded process; the order (groups,
    // gid, then uid) keeps the privilege needed for each step until the last one.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(65534) != 0
            || libc::setuid(65534) != 0
    };
    if failed {
        return Err(format!(
            "dropping to uid 65534 failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
