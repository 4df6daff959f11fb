//! System V segments across processes, errors, permissions, and agreement with
//! `ipcs`. Every segment is owned by a guard that removes it, also on panic.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::ptr::NonNull;

use shm_sys::sysv::{self, Access, Segment};
use shm_sys::{Error, Key, Mode, Target};
use support::{create_unique, ipcs_detail, ipcs_m, pattern_bytes, Peer, RemoveOnDrop};

fn stat(segment: &Segment) -> sysv::SegmentInfo {
    segment.stat().expect("IPC_STAT")
}

#[test]
fn two_processes_share_a_segment_found_by_ftok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rendezvous");
    std::fs::write(&path, b"").expect("creating the ftok file");

    // ftok keys can collide with segments other programs made: try project ids
    // until one is free.
    let (project, segment) = (1..=255)
        .find_map(|project| {
            let key = Key::ftok(&path, project).expect("ftok");
            match Segment::options(key).size(4096).create() {
                Ok(segment) => Some((project, RemoveOnDrop(segment))),
                Err(Error::AlreadyExists { .. }) => None,
                Err(other) => panic!("create: {other}"),
            }
        })
        .expect("a free ftok project id");
    let ours = segment.attach().expect("parent attach");
    let me = std::process::id();

    let mut peer = Peer::start(&[
        "sysv-writer",
        path.to_str().unwrap(),
        &project.to_string(),
        "4096",
        "7",
    ]);
    let line = peer.expect_line("attached");
    assert_eq!(line, format!("attached {}", peer.pid()));

    let info = stat(&segment);
    assert_eq!(info.nattch, 2, "both processes attached: {info:?}");
    assert_eq!(info.cpid, me, "the parent created it");
    assert_eq!(info.lpid, Some(peer.pid()), "the child attached last");
    assert_eq!(info.key, Key::ftok(&path, project).unwrap());
    assert!(info.atime.is_some());

    let mut seen = vec![0u8; 4096];
    ours.read_at(0, &mut seen).expect("read");
    assert_eq!(seen, pattern_bytes(7, 4096), "the child's pattern");

    peer.go();
    peer.expect_line("detached");
    peer.wait_success();
    let info = stat(&segment);
    assert_eq!(info.nattch, 1);
    assert_eq!(info.lpid, Some(peer.pid()), "the child detached last");
    assert!(info.dtime.is_some());

    ours.detach().expect("detach");
    let info = stat(&segment);
    assert_eq!(info.nattch, 0);
    assert_eq!(info.lpid, Some(me), "the parent detached last");
}

#[test]
fn exclusive_create_of_existing_key_is_already_exists_naming_the_key() {
    let (key, _segment) = create_unique(|key| Segment::options(key).size(4096));
    let err = Segment::create(key, 4096).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(err.target(), &Target::Key(key));
    let message = err.to_string();
    assert!(
        message.contains(&key.to_string()) && message.contains("EEXIST"),
        "{message}"
    );
}

#[test]
fn open_of_missing_key_is_not_found_naming_the_key() {
    // Make a key, then remove its segment: now it certainly names nothing.
    let (key, segment) = create_unique(|key| Segment::options(key).size(4096));
    drop(segment);
    let err = Segment::open(key).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&key.to_string()), "{err}");
    assert!(err.to_string().contains("ENOENT"), "{err}");
}

#[test]
fn opening_with_a_larger_size_than_the_segment_is_invalid_size() {
    let (key, segment) = create_unique(|key| Segment::options(key).size(4096));
    let err = Segment::options(key).size(8192).open().unwrap_err();
    assert!(
        matches!(err, Error::InvalidSize { size: 8192, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&key.to_string()), "{err}");
    // A size up to the segment's own is accepted as a minimum.
    let same = Segment::options(key)
        .size(4096)
        .open()
        .expect("open at its size");
    assert_eq!(same.id(), segment.id());
}

#[test]
fn creating_with_size_zero_or_above_shmmax_fails_clearly() {
    let err = Segment::create_private(0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let limits = sysv::limits().expect("limits");
    if let Ok(too_big) = usize::try_from(limits.shmmax.saturating_add(1)) {
        if too_big > 0 && limits.shmmax < usize::MAX as u64 {
            let err = Segment::create_private(too_big).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidSize { .. } | Error::OutOfResources { .. }
                ),
                "{err:?}"
            );
        }
    }
}

#[test]
fn unprivileged_child_is_denied_a_0600_segment() {
    let (key, segment) = create_unique(|key| Segment::options(key).size(4096).mode(Mode::OWNER_RW));
    let mut peer = Peer::start(&["sysv-open-as-nobody", &key.raw().to_string()]);
    let read_write = peer.expect_line("read-write");
    let read_only = peer.expect_line("read-only");
    peer.wait_success();
    assert!(
        read_write.starts_with("read-write PermissionDenied"),
        "{read_write}"
    );
    assert!(
        read_write.contains(&key.to_string()),
        "names the key: {read_write}"
    );
    assert!(
        read_only.starts_with("read-only PermissionDenied"),
        "{read_only}"
    );

    // Control: with read permission for others, the same child may open it
    // read-only but still not read-write.
    segment.set_mode(Mode::new(0o604)).expect("chmod");
    let mut peer = Peer::start(&["sysv-open-as-nobody", &key.raw().to_string()]);
    let read_write = peer.expect_line("read-write");
    let read_only = peer.expect_line("read-only");
    peer.wait_success();
    assert!(
        read_write.starts_with("read-write PermissionDenied"),
        "{read_write}"
    );
    assert_eq!(read_only, "read-only Ok");
}

#[test]
fn read_only_mapping_reads_and_a_write_dies_by_sigsegv() {
    let segment = RemoveOnDrop(Segment::create_private(4096).expect("create"));
    let writer = segment.attach().expect("attach");
    writer.write_at(0, &[42]).expect("write");

    let reader = segment.attach_read_only().expect("attach read-only");
    assert!(reader.is_read_only());
    assert!(reader.as_mut_ptr().is_none());
    let err = reader.write_at(0, &[1]).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    let mut byte = [0u8];
    reader.read_at(0, &mut byte).expect("read");
    assert_eq!(byte[0], 42);

    let mut peer = Peer::start(&["sysv-read-only-writer", &segment.id().to_string()]);
    assert_eq!(peer.expect_line("read"), "read 42");
    let status = peer.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGSEGV),
        "child status: {status:?}"
    );
    // The write did not land.
    reader.read_at(0, &mut byte).expect("read");
    assert_eq!(byte[0], 42);
}

#[test]
fn removed_segment_stays_usable_until_detached_then_disappears() {
    let (key, segment) = create_unique(|key| Segment::options(key).size(8192));
    let id = segment.id();
    let mapping = segment.attach().expect("attach");
    segment.remove().expect("IPC_RMID");

    // The key is free at once ...
    let err = Segment::open(key).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    // ... but the memory works while attached.
    mapping
        .write_at(100, b"still here")
        .expect("write after remove");
    let mut back = [0u8; 10];
    mapping.read_at(100, &mut back).expect("read after remove");
    assert_eq!(&back, b"still here");

    let info = stat(&segment);
    assert!(info.marked_for_removal, "{info:?}");
    assert_eq!(info.key, Key::PRIVATE);
    let listed = sysv::list().expect("list");
    assert!(listed.iter().any(|s| s.id == id && s.marked_for_removal));
    let row = ipcs_m()
        .into_iter()
        .find(|row| row.id == id)
        .expect("in ipcs -m");
    assert_eq!(row.status, "dest");

    mapping.detach().expect("detach");
    assert!(!sysv::list().expect("list").iter().any(|s| s.id == id));
    assert!(
        !ipcs_m().iter().any(|row| row.id == id),
        "gone from ipcs -m"
    );
    let err = segment.stat().unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(matches!(Segment::from_id(id), Err(Error::NotFound { .. })));
}

#[test]
fn ipc_set_changes_mode_and_owner_as_stat_and_ipcs_show() {
    let (_, segment) = create_unique(|key| Segment::options(key).size(4096));
    let id = segment.id();
    segment.set_mode(Mode::new(0o640)).expect("set mode");
    segment.set_owner(65534, 65534).expect("set owner");

    let info = stat(&segment);
    assert_eq!(info.mode, Mode::new(0o640));
    assert_eq!((info.uid, info.gid), (65534, 65534));
    // The creator does not change.
    // SAFETY: geteuid/getegid have no preconditions.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert_eq!((info.cuid, info.cgid), (euid, egid));

    assert_eq!(ipcs_detail(id, "uid"), "65534");
    assert_eq!(ipcs_detail(id, "gid"), "65534");
    assert_eq!(ipcs_detail(id, "mode"), "0640");
    let row = ipcs_m()
        .into_iter()
        .find(|row| row.id == id)
        .expect("in ipcs -m");
    assert_eq!(row.perms, "640");

    // Both at once.
    segment
        .set_permissions(euid, egid, Mode::new(0o600))
        .expect("set both");
    let info = stat(&segment);
    assert_eq!(
        (info.uid, info.gid, info.mode),
        (euid, egid, Mode::OWNER_RW)
    );
}

#[test]
fn list_agrees_with_ipcs_on_our_segments() {
    let (key_a, a) = create_unique(|key| Segment::options(key).size(4096));
    let (_, b) = create_unique(|key| Segment::options(key).size(12345).mode(Mode::new(0o644)));
    let private = RemoveOnDrop(Segment::create_private(777).expect("private"));
    let _mapping = b.attach().expect("attach");

    let listed = sysv::list().expect("list");
    let rows = ipcs_m();
    for segment in [&a.0, &b.0, &private.0] {
        let info = listed
            .iter()
            .find(|info| info.id == segment.id())
            .unwrap_or_else(|| panic!("segment {} not listed", segment.id()));
        assert_eq!(info, &stat(segment), "list and IPC_STAT agree");
        let row = rows
            .iter()
            .find(|row| row.id == segment.id())
            .unwrap_or_else(|| panic!("segment {} not in ipcs -m", segment.id()));
        assert_eq!(row.key, info.key.to_string());
        assert_eq!(row.bytes, info.size);
        assert_eq!(row.nattch, info.nattch);
        assert_eq!(row.perms, format!("{:o}", info.mode.bits()));
    }
    assert_eq!(listed.iter().find(|s| s.id == a.id()).unwrap().key, key_a);
    assert_eq!(listed.iter().find(|s| s.id == b.id()).unwrap().nattch, 1);
    assert_eq!(
        listed.iter().find(|s| s.id == private.id()).unwrap().size,
        777
    );
}

#[test]
fn limits_agree_with_proc() {
    let limits = sysv::limits().expect("limits");
    let read = |name: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .expect("reading /proc/sys/kernel")
            .trim()
            .parse()
            .expect("a number")
    };
    assert_eq!(limits.shmmax, read("shmmax"));
    assert_eq!(limits.shmall, read("shmall"));
    assert_eq!(limits.shmmni, read("shmmni"));
    assert_eq!(limits.shmmin, 1);
    let usage = sysv::usage().expect("usage");
    assert!(usage.segments <= limits.shmmni);
}

#[test]
fn lock_pages_sets_and_clears_the_locked_flag() {
    let segment = RemoveOnDrop(Segment::create_private(4096).expect("create"));
    assert!(!stat(&segment).locked);
    segment.lock_pages().expect("SHM_LOCK (tests run as root)");
    assert!(stat(&segment).locked);
    segment.unlock_pages().expect("SHM_UNLOCK");
    assert!(!stat(&segment).locked);
}

#[test]
fn huge_pages_and_no_reserve_where_the_kernel_allows() {
    let segment = RemoveOnDrop(
        Segment::options(Key::PRIVATE)
            .size(1 << 20)
            .no_reserve(true)
            .create()
            .expect("SHM_NORESERVE is always allowed"),
    );
    let mapping = segment.attach().expect("attach");
    mapping
        .write_at((1 << 20) - 1, &[9])
        .expect("touch the last byte");

    let huge_page = 2 << 20;
    match Segment::options(Key::PRIVATE)
        .size(huge_page)
        .huge_pages(true)
        .create()
    {
        Ok(segment) => {
            let segment = RemoveOnDrop(segment);
            assert_eq!(stat(&segment).size, huge_page);
        }
        // No huge pages reserved (vm.nr_hugepages = 0), or not allowed.
        Err(err) => assert!(
            matches!(
                err,
                Error::OutOfResources { .. } | Error::PermissionDenied { .. }
            ),
            "{err:?}"
        ),
    }
}

#[test]
fn attach_at_a_requested_address() {
    let segment = RemoveOnDrop(Segment::create_private(4096).expect("create"));
    // Find a free, page-aligned address: where the kernel put a first attach.
    // Other test threads map memory too and may take the address between our
    // detach and re-attach, so try a few times.
    let mut attempts = 0;
    let (address, again) = loop {
        let first = segment.attach().expect("attach");
        let address = NonNull::new(first.as_ptr().cast_mut()).unwrap();
        // While it is mapped, the range is taken and must be refused, not replaced.
        let err = segment
            .attach_with(Access::ReadWrite, Some(address))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        first.detach().expect("detach");
        match segment.attach_with(Access::ReadOnly, Some(address)) {
            Ok(again) => break (address, again),
            Err(Error::InvalidArgument { .. }) if attempts < 50 => attempts += 1,
            Err(other) => panic!("attach at the freed address: {other:?}"),
        }
    };
    assert_eq!(again.as_ptr(), address.as_ptr().cast_const());
    assert!(again.is_read_only());

    let misaligned = NonNull::new(address.as_ptr().wrapping_add(1)).unwrap();
    drop(again);
    let err = segment
        .attach_with(Access::ReadWrite, Some(misaligned))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn open_or_create_says_who_created() {
    let (key, first) = {
        let mut found = None;
        for _ in 0..100 {
            let key = support::unique_key();
            let (segment, created) = Segment::open_or_create(key, 4096).expect("open_or_create");
            let guard = RemoveOnDrop(segment);
            if created {
                found = Some((key, guard));
                break;
            }
            // Someone else's segment under this key: leave it alone.
            std::mem::forget(guard);
        }
        found.expect("a fresh key")
    };
    let (second, created) = Segment::open_or_create(key, 4096).expect("open_or_create");
    assert!(!created);
    assert_eq!(second.id(), first.id());

    let (private, created) = Segment::open_or_create(Key::PRIVATE, 4096).expect("private");
    let private = RemoveOnDrop(private);
    assert!(created);
    assert_ne!(private.id(), first.id());

    let err = Segment::open(Key::PRIVATE).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn from_id_finds_the_segment_and_its_key() {
    let (key, segment) = create_unique(|key| Segment::options(key).size(4096));
    let found = Segment::from_id(segment.id()).expect("from_id");
    assert_eq!(found.key(), key);
    assert_eq!(found.size().expect("size"), 4096);
}
