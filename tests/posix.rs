//! POSIX `shm_open` objects and memfds across processes. Every name is unlinked
//! by a guard, also on panic.

mod support;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use shm_sys::memfd::{MemfdSegment, Seals};
use shm_sys::posix::PosixSegment;
use shm_sys::{Error, Mode};
use support::{pattern_bytes, unique_name, Peer, UnlinkOnDrop};

#[test]
fn posix_object_is_shared_by_name_between_two_processes() {
    let name = unique_name("posix");
    let segment = PosixSegment::create(&name, 8192).expect("create");
    let _guard = UnlinkOnDrop(name.clone());
    assert_eq!(segment.name(), name);
    assert_eq!(segment.size().unwrap(), 8192);
    let mapping = segment.map().expect("map");

    let mut peer = Peer::start(&["posix-writer", &name, "8192", "3"]);
    assert_eq!(peer.expect_line("wrote"), "wrote 8192");
    peer.wait_success();

    let mut seen = vec![0u8; 8192];
    mapping.read_at(0, &mut seen).expect("read");
    assert_eq!(seen, pattern_bytes(3, 8192));

    // Unlink: the name is gone, the mapping still works.
    PosixSegment::unlink(&name).expect("unlink");
    let err = PosixSegment::open(&name).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
    mapping.write_at(0, b"after").expect("write after unlink");
}

#[test]
fn posix_create_is_exclusive_and_mode_is_exact() {
    let name = unique_name("excl");
    let segment = PosixSegment::create_with_mode(&name, 4096, Mode::new(0o666)).expect("create");
    let _guard = UnlinkOnDrop(name.clone());
    let err = PosixSegment::create(&name, 4096).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
    // The umask (typically 022) does not filter the mode.
    let stat = rustix::fs::fstat(&segment).expect("fstat");
    assert_eq!(stat.st_mode & 0o777, 0o666);

    let read_only = PosixSegment::open_read_only(&name).expect("open read-only");
    assert!(matches!(read_only.map(), Err(Error::ReadOnly { .. })));
    let mapping = read_only.map_read_only().expect("map read-only");
    assert!(mapping.is_read_only());
    assert!(matches!(
        mapping.write_at(0, b"x"),
        Err(Error::ReadOnly { .. })
    ));
}

#[test]
fn posix_bad_names_are_rejected_before_any_syscall() {
    for bad in ["", "/", "/a/b", "..", "a\0b"] {
        let err = PosixSegment::create(bad, 4096).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn memfd_is_shared_with_a_child_and_its_seal_refuses_shrinking() {
    // Sealed by default: the child cannot shrink it under our mapping.
    let memfd = MemfdSegment::create("shared", 4096).expect("memfd");
    assert_eq!(memfd.seals().unwrap(), MemfdSegment::DEFAULT_SEALS);
    assert!(memfd.seals().unwrap().contains(Seals::SHRINK | Seals::GROW));
    let mapping = memfd.map().expect("map");
    mapping
        .write_at(0, &pattern_bytes(11, 4096))
        .expect("write");

    // Hand the descriptor to the child as fd 3 (memfds are close-on-exec).
    let source = memfd.as_fd().as_raw_fd();
    let mut command = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"));
    // SAFETY: dup2 and fcntl are async-signal-safe, and the closure touches
    // nothing else. dup2 onto itself keeps close-on-exec, so that case clears it.
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
    let mut peer = Peer::start_command(command, &["memfd-writer", "3", "4096", "11"]);
    assert_eq!(peer.expect_line("shrink"), "shrink PermissionDenied");
    peer.wait_success();

    let mut seen = vec![0u8; 4096];
    mapping.read_at(0, &mut seen).expect("read");
    assert_eq!(seen, pattern_bytes(12, 4096), "the child's write");
    assert_eq!(memfd.size().unwrap(), 4096, "still its sealed size");
    let err = memfd.set_size(100).unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
}
