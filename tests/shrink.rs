//! What a peer that shrinks a segment under a mapping can do, per backend.
//!
//! A sealed memfd refuses the shrink (`EPERM`) and the mapping stays whole; an
//! opener refuses a memfd that is not sealed. A POSIX `shm_open` object cannot
//! be sealed: shrinking it kills the opener with `SIGBUS`, shown in a child
//! process (this test binary run again, with [`OPENER_ROLE`] set) so that the
//! test itself survives. Every name is unlinked by a guard, also on panic.

mod support;

use std::fs::OpenOptions;
use std::io::BufRead;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use shm_sys::memfd::{MemfdSegment, Seals};
use shm_sys::posix::PosixSegment;
use shm_sys::{Errno, Error, Target};
use support::{pattern_bytes, unique_name, Peer, UnlinkOnDrop};

const LEN: usize = 8192;

/// Set in the child of [`posix_object_shrunk_by_a_peer_kills_the_opener_with_sigbus`]
/// to the name of the object it opens.
const OPENER_ROLE: &str = "SHM_TEST_SHRUNK_OPENER";

#[test]
fn sealed_memfd_refuses_a_peer_shrink_with_eperm_and_stays_readable() {
    let memfd = MemfdSegment::create("shrink-target", LEN).expect("memfd");
    let mapping = memfd.map().expect("map");
    mapping.write_at(0, &pattern_bytes(5, LEN)).expect("write");

    // The peer's view: the same file opened again through /proc, as a process
    // that found it in /proc/<pid>/fd would, with its own open file description.
    let path = format!("/proc/self/fd/{}", memfd.as_fd().as_raw_fd());
    let peer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("reopen the memfd");
    for size in [0, 1, LEN as u64 - 1, LEN as u64 / 2] {
        let err = peer.set_len(size).expect_err("a sealed memfd was shrunk");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "to {size}: {err}");
    }
    let err = memfd.set_size(LEN / 2).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::from_raw(libc::EPERM)), "{err:?}");
    assert_eq!(memfd.size().unwrap(), LEN);

    // Every byte, the last page included, is still there.
    let mut seen = vec![0u8; LEN];
    mapping.read_at(0, &mut seen).expect("read");
    assert_eq!(seen, pattern_bytes(5, LEN));
    mapping
        .write_at(LEN - 1, b"z")
        .expect("write the last byte");
}

#[test]
fn memfd_opener_refuses_a_descriptor_that_can_be_shrunk() {
    let unsealed = MemfdSegment::create_with_seals("unsealed", LEN, Seals::GROW).expect("memfd");
    let fd: OwnedFd = unsealed.into_fd();
    let raw_fd = fd.as_raw_fd();
    let err = MemfdSegment::from_sealed_fd(fd, "from-peer").unwrap_err();
    match &err {
        Error::NotSealed {
            target,
            fd,
            missing,
            found,
            ..
        } => {
            assert_eq!(target, &Target::Memfd("from-peer".into()));
            assert_eq!(*fd, raw_fd);
            assert_eq!(*missing, Seals::SHRINK);
            assert_eq!(*found, Seals::GROW);
        }
        other => panic!("expected NotSealed, got {other:?}"),
    }
    let text = err.to_string();
    for part in ["memfd \"from-peer\"", &format!("fd {raw_fd}"), "SIGBUS"] {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }

    // Sealed (by default): accepted.
    let sealed = MemfdSegment::create("sealed", LEN).expect("memfd");
    let received = MemfdSegment::from_sealed_fd(sealed.into_fd(), "from-peer").expect("sealed");
    assert_eq!(received.map().expect("map").len(), LEN);

    // A shm_open object is born with F_SEAL_SEAL only: it can never qualify.
    let name = unique_name("not-memfd");
    let object = PosixSegment::create(&name, LEN).expect("create");
    let _guard = UnlinkOnDrop(name.clone());
    let fd = object.as_fd().try_clone_to_owned().expect("dup");
    let err = MemfdSegment::from_sealed_fd(fd, "posix").unwrap_err();
    assert!(
        matches!(err, Error::NotSealed { found, .. } if !found.contains(Seals::SHRINK)),
        "{err:?}"
    );

    // A regular file supports no seals at all.
    let file = tempfile::tempfile().expect("temp file");
    let err = MemfdSegment::from_sealed_fd(file.into(), "regular").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("not a memfd"), "{err}");
}

#[test]
fn posix_object_shrunk_by_a_peer_kills_the_opener_with_sigbus() {
    if let Ok(name) = std::env::var(OPENER_ROLE) {
        open_map_and_touch_after_go(&name);
        return;
    }
    let name = unique_name("shrunk");
    let object = PosixSegment::create(&name, LEN).expect("create");
    let _guard = UnlinkOnDrop(name.clone());
    object
        .map()
        .expect("map")
        .write_at(0, &pattern_bytes(9, LEN))
        .expect("write");

    // The opener: this test, run again in a child process.
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command.env(OPENER_ROLE, &name);
    let mut opener = Peer::start_command(
        command,
        &[
            "posix_object_shrunk_by_a_peer_kills_the_opener_with_sigbus",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ],
    );
    // Skip the test harness's own lines.
    let mut line = opener.expect_line("");
    for _ in 0..10 {
        if line.starts_with("mapped") {
            break;
        }
        line = opener.expect_line("");
    }
    assert_eq!(line, format!("mapped {LEN}"));

    // The peer with write access shrinks the object under the opener's mapping.
    object.set_size(LEN / 2).expect("shrink a shm_open object");
    opener.go();
    let status = opener.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGBUS),
        "the opener should die of SIGBUS: {status:?}"
    );
}

/// The child's part: open and map the object, check it, report, wait for the
/// parent to shrink it, then read the whole mapping again.
fn open_map_and_touch_after_go(name: &str) {
    // No core file for the expected crash, whatever the host's core_pattern.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .expect("PR_SET_DUMPABLE");
    let object = PosixSegment::open(name).expect("open");
    let mapping = object.map().expect("map");
    let mut seen = vec![0u8; mapping.len()];
    mapping
        .read_at(0, &mut seen)
        .expect("read before the shrink");
    assert_eq!(seen, pattern_bytes(9, LEN));
    println!("mapped {}", mapping.len());
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).expect("stdin");
    // The last page is gone: this read raises SIGBUS.
    let _ = mapping.read_at(0, &mut seen);
    panic!("reading a shrunk shm_open object did not raise SIGBUS");
}
