//! `Shared<T>` and its lock across processes: exact counts under contention,
//! recovery from a holder killed with SIGKILL, TID reuse, every open error, and
//! racing open-or-create. Every segment is removed by a guard, also on panic.

mod support;

use std::ops::Deref;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shm_sys::posix::PosixSegment;
use shm_sys::sysv::Segment;
use shm_sys::Key;
use shm_typed::format::{State, FORMAT_VERSION, LOCK_OFFSET, PAYLOAD_OFFSET};
use shm_typed::{Error, Location, Shared};
use support::{start_time, unique_key, unique_name, Peer, RemoveOnDrop, UnlinkOnDrop};

/// A `Shared<T>` whose segment is removed when the test ends, also on panic.
struct Owned<T: Pod>(Shared<T>);

impl<T: Pod> Deref for Owned<T> {
    type Target = Shared<T>;
    fn deref(&self) -> &Shared<T> {
        &self.0
    }
}

impl<T: Pod> Drop for Owned<T> {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

fn private<T: Pod>(value: T) -> (Owned<T>, i32) {
    let shared = Owned(Shared::create(Location::Private, value).expect("create"));
    let Location::Id(id) = *shared.location() else {
        panic!("a private segment is found by id")
    };
    (shared, id)
}

/// Writes raw bytes into a segment through a separate mapping (a "peer" that
/// scribbles on the header).
fn poke(id: i32, offset: usize, bytes: &[u8]) {
    let mapping = Segment::from_id(id).unwrap().attach().unwrap();
    mapping.write_at(offset, bytes).unwrap();
}

#[test]
fn four_processes_add_one_100000_times_each_and_the_count_is_exact() {
    let (counter, id) = private(0u64);
    let rounds = 100_000u64;
    let mut peers: Vec<Peer> = (0..4)
        .map(|_| Peer::start(&["typed-counter", &id.to_string(), &rounds.to_string()]))
        .collect();
    for peer in &mut peers {
        peer.expect_line("ready");
    }
    for peer in &mut peers {
        peer.go();
    }
    for peer in &mut peers {
        peer.expect_line("done");
        peer.wait_success();
    }
    assert_eq!(counter.load().unwrap(), 4 * rounds);
}

#[test]
fn holder_killed_with_sigkill_is_recovered_within_a_second_200_times() {
    let (value, id) = private(0u64);
    let mut times = Vec::new();
    for round in 0..200 {
        let mut peer = Peer::start(&["typed-hold-lock", &id.to_string()]);
        peer.expect_line("locked");
        peer.kill();
        if round % 2 == 1 {
            // Half the rounds the holder is reaped (gone: ESRCH); the others it
            // stays a zombie (kill(pid, 0) still succeeds).
            peer.wait();
        }
        let started = Instant::now();
        let guard = value
            .lock_timeout(Some(Duration::from_secs(5)))
            .expect("lock after the holder died");
        let took = started.elapsed();
        times.push(took);
        assert!(guard.owner_died(), "round {round}: owner_died not reported");
        assert!(
            took < Duration::from_secs(1),
            "round {round}: took {took:?}"
        );
        assert_eq!(*guard, round + 1, "the dead holder's write is visible");
        drop(guard); // not marked consistent: poisons

        let err = value.lock().unwrap_err();
        assert!(
            matches!(err, Error::Poisoned { .. }),
            "round {round}: {err:?}"
        );
        assert!(matches!(value.load(), Err(Error::Poisoned { .. })));
        value.reset_poison().unwrap();
        let mut guard = value.lock().expect("lock after reset");
        assert!(!guard.owner_died());
        *guard = round + 1;
        drop(guard);
        peer.wait();
    }
    times.sort_unstable();
    // Reported, not asserted: the README and the issue notes quote it.
    eprintln!(
        "recovery after SIGKILL over {} rounds: median {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

#[test]
fn repaired_value_is_not_poisoned() {
    let (value, id) = private(0u64);
    let mut peer = Peer::start(&["typed-hold-lock", &id.to_string()]);
    peer.expect_line("locked");
    peer.kill();
    let mut guard = value.lock().unwrap();
    assert!(guard.owner_died());
    *guard = 42;
    guard.mark_consistent();
    assert!(!guard.owner_died());
    drop(guard);
    assert_eq!(value.load().unwrap(), 42);
    peer.wait();
}

#[test]
fn lock_word_naming_a_live_unrelated_task_with_another_start_time_is_a_dead_holder() {
    let (value, id) = private(7u64);
    let mut bystander = Peer::start(&["idle"]);
    let pid = bystander.pid();
    assert_eq!(bystander.expect_line("pid"), format!("pid {pid}"));
    let real_start = start_time(pid);

    // The owner word names the live bystander (generation 5), and the record
    // for generation 5 its real start time: a live holder.
    let owner = (5u64 << 32) | u64::from(pid);
    let record = |start: u64, generation: u64| (start << 24) | generation;
    poke(id, LOCK_OFFSET, &owner.to_ne_bytes());
    poke(id, LOCK_OFFSET + 16, &record(real_start, 5).to_ne_bytes());
    let err = value
        .lock_timeout(Some(Duration::from_millis(100)))
        .unwrap_err();
    assert!(
        matches!(err, Error::LockTimeout { holder, .. } if holder == pid),
        "{err:?}"
    );

    // Another start time in a record of another generation says nothing about
    // this acquisition: still a live holder.
    poke(
        id,
        LOCK_OFFSET + 16,
        &record(real_start + 12_345, 4).to_ne_bytes(),
    );
    let err = value
        .lock_timeout(Some(Duration::from_millis(100)))
        .unwrap_err();
    assert!(
        matches!(err, Error::LockTimeout { holder, .. } if holder == pid),
        "{err:?}"
    );

    // Same TID, another start time: the TID was reused, the real holder is dead.
    poke(
        id,
        LOCK_OFFSET + 16,
        &record(real_start + 12_345, 5).to_ne_bytes(),
    );
    let mut guard = value
        .lock_timeout(Some(Duration::from_secs(5)))
        .expect("taken over");
    assert!(guard.owner_died());
    guard.mark_consistent();
    drop(guard);
    assert_eq!(value.load().unwrap(), 7);
    bystander.wait_success();
}

#[test]
fn lock_in_a_forked_child_records_the_childs_thread_not_the_parents() {
    // Regression: thread ids are cached per thread; a fork copied the parent's
    // cache into the child, whose lock word then named the parent's thread.
    let (_value, id) = private(0u64);
    let mut peer = Peer::start(&["typed-fork", &id.to_string()]);
    let line = peer.expect_line("fork-child");
    peer.wait_success();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let tid = fields[1].strip_prefix("tid=").unwrap();
    let holder = fields[2].strip_prefix("holder=").unwrap();
    assert_eq!(tid, holder, "{line}");
    assert_ne!(
        tid,
        peer.pid().to_string(),
        "the child has its own id: {line}"
    );
}

#[test]
fn try_lock_names_a_live_holder() {
    let (value, _) = private(0u64);
    let guard = value.lock().unwrap();
    // Same thread: the word already names us, a live task.
    let err = value.try_lock().unwrap_err();
    assert!(matches!(err, Error::WouldBlock { .. }), "{err:?}");
    drop(guard);
    drop(value.try_lock().unwrap());
}

#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq)]
#[repr(C)]
struct Pair {
    a: u32,
    b: u32,
}

#[test]
fn wrong_type_size_alignment_or_name_is_a_type_mismatch_naming_both() {
    let (value, id) = private(5u64);

    let err = Shared::<u32>::open(Location::Id(id)).unwrap_err();
    let Error::TypeMismatch {
        expected, found, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((expected.name.as_str(), expected.size), ("u32", 4));
    assert_eq!((found.name.as_str(), found.size), ("u64", 8));
    let text = err.to_string();
    assert!(
        text.contains("u64") && text.contains("u32") && text.contains(&id.to_string()),
        "{text}"
    );

    // Same size and name, other alignment.
    let named = Owned(
        Shared::<Pair>::options()
            .type_name("Word")
            .create(Location::Private, Pair { a: 1, b: 2 })
            .unwrap(),
    );
    let err = Shared::<u64>::options()
        .type_name("Word")
        .open(named.location().clone())
        .unwrap_err();
    let Error::TypeMismatch {
        expected, found, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((expected.align, found.align), (8, 4));

    // Same layout, other name.
    let err = Shared::<u64>::options()
        .type_name("Counter")
        .open(value.location().clone())
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("Counter"), "{err}");

    // The names agree: opens.
    let same = Shared::<Pair>::options()
        .type_name("Word")
        .open(named.location().clone())
        .unwrap();
    assert_eq!(same.load().unwrap(), Pair { a: 1, b: 2 });
}

#[test]
fn wrong_magic_is_bad_magic() {
    let segment = RemoveOnDrop(Segment::create_private(4096).unwrap());
    poke(segment.id(), 0, b"NOTOURS!");
    let err = Shared::<u64>::open(Location::Id(segment.id())).unwrap_err();
    assert!(
        matches!(err, Error::BadMagic { found, .. } if &found == b"NOTOURS!"),
        "{err:?}"
    );
}

#[test]
fn newer_format_version_is_unsupported_version() {
    let (_value, id) = private(5u64);
    poke(id, 8, &(FORMAT_VERSION + 1).to_ne_bytes());
    let err = Shared::<u64>::open(Location::Id(id)).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found, supported, .. }
            if supported == FORMAT_VERSION && found == FORMAT_VERSION + 1),
        "{err:?}"
    );
}

/// Format 2 is format 3 without a schema block: such a segment (made here
/// from a format-3 one of a type without a schema, its version byte set to 2)
/// opens. Format 1 (the first release's lock) does not, and the error names
/// what this build reads.
#[test]
fn format_2_segments_open_and_format_1_is_unsupported_naming_both_versions() {
    let (_value, id) = private([5u64, 6]);
    poke(id, 8, &2u32.to_ne_bytes());
    let opened = Shared::<[u64; 2]>::open(Location::Id(id)).unwrap();
    assert_eq!(opened.load().unwrap(), [5, 6]);
    *opened.lock().unwrap() = [7, 8];
    assert_eq!(opened.load().unwrap(), [7, 8]);

    poke(id, 8, &1u32.to_ne_bytes());
    let err = Shared::<[u64; 2]>::open(Location::Id(id)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 1,
                oldest: 2,
                supported: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("version 1") && text.contains("versions 2 to 3"),
        "{text}"
    );
}

#[test]
fn segment_smaller_than_its_header_says_is_a_length_mismatch() {
    let (value, id) = private(5u64);
    let os_len = value.region().len() as u64;
    poke(id, 24, &(os_len + 4096).to_ne_bytes());
    let err = Shared::<u64>::open(Location::Id(id)).unwrap_err();
    assert!(
        matches!(err, Error::LengthMismatch { header_says, os_says, .. }
            if header_says == os_len + 4096 && os_says == os_len),
        "{err:?}"
    );

    // A segment too small for any header at all.
    let tiny = RemoveOnDrop(Segment::create_private(100).unwrap());
    let err = Shared::<u64>::open(Location::Id(tiny.id())).unwrap_err();
    assert!(matches!(err, Error::TooSmall { found: 100, .. }), "{err:?}");
}

#[test]
fn segment_stuck_initializing_whose_creator_died_is_reported_not_waited_on() {
    // A process that has exited and been reaped: its pid names nobody.
    let mut dead = Peer::start(&["idle"]);
    let dead_pid = dead.pid();
    dead.wait_success();

    let segment = RemoveOnDrop(Segment::create_private(4096).unwrap());
    poke(segment.id(), 16, &State::Initializing.code().to_ne_bytes());
    poke(segment.id(), 144, &dead_pid.to_ne_bytes());
    let started = Instant::now();
    let err = Shared::<u64>::open(Location::Id(segment.id())).unwrap_err();
    assert!(
        matches!(err, Error::CreatorDied { pid, .. } if pid == dead_pid),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));

    // A live creator that never finishes: a bounded wait, then InitTimeout.
    poke(segment.id(), 144, &std::process::id().to_ne_bytes());
    let err = Shared::<u64>::options()
        .init_timeout(Duration::from_millis(50))
        .open(Location::Id(segment.id()))
        .unwrap_err();
    assert!(matches!(err, Error::InitTimeout { .. }), "{err:?}");
}

#[test]
fn works_by_key_ftok_path_private_id_and_posix_name() {
    // SysV key.
    let key = unique_key();
    let by_key = Owned(Shared::<u64>::create(key, 1).unwrap());
    assert_eq!(Shared::<u64>::open(key).unwrap().load().unwrap(), 1);
    // Header and lock, the value, and u64's schema block (3 bytes).
    let schema = shm_typed::schema::encode(&<u64 as shm_typed::schema::ShmType>::descriptor());
    assert_eq!(
        by_key.stat().unwrap().size,
        PAYLOAD_OFFSET + 8 + schema.len()
    );

    // ftok path.
    let dir = tempfile::tempdir().unwrap();
    let location = (1..=255)
        .map(|project| Location::ftok(dir.path(), project))
        .find(|location| {
            let Location::Ftok(path, project) = location else {
                unreachable!()
            };
            Segment::open(Key::ftok(path, *project).unwrap()).is_err()
        })
        .expect("a free ftok key");
    let by_path = Owned(Shared::<u64>::create(location.clone(), 2).unwrap());
    Shared::<u64>::open(location).unwrap().store(20).unwrap();
    assert_eq!(by_path.load().unwrap(), 20);

    // IPC_PRIVATE, then by id.
    let (by_id, id) = private(3u64);
    Shared::<u64>::open(Location::Id(id))
        .unwrap()
        .store(30)
        .unwrap();
    assert_eq!(by_id.load().unwrap(), 30);

    // POSIX name.
    let name = unique_name("typed");
    let _unlink = UnlinkOnDrop(name.clone());
    let by_name = Owned(Shared::<u64>::create(Location::posix(&name), 4).unwrap());
    Shared::<u64>::open(Location::posix(&name))
        .unwrap()
        .update(|n| *n *= 10)
        .unwrap();
    assert_eq!(by_name.load().unwrap(), 40);
    assert!(matches!(by_name.stat(), Err(Error::Unsupported { .. })));
    by_name.remove().unwrap();
    assert!(PosixSegment::open(&name).is_err());
}

#[test]
fn read_only_handle_loads_consistent_values_and_refuses_writes() {
    let (value, id) = private([1u64; 8]);
    let reader = Shared::<[u64; 8]>::open_read_only(Location::Id(id)).unwrap();
    assert_eq!(reader.load().unwrap(), [1; 8]);
    assert!(matches!(reader.lock(), Err(Error::ReadOnly { .. })));
    assert!(matches!(reader.store([0; 8]), Err(Error::ReadOnly { .. })));

    // A writer thread keeps all eight words equal; every read-only load must see
    // them equal (the seqlock retries torn copies).
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 1u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                value.store([n; 8]).unwrap();
            }
        });
        for _ in 0..20_000 {
            let seen = reader.load().unwrap();
            assert!(seen.iter().all(|&w| w == seen[0]), "torn read {seen:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

#[test]
fn eight_processes_open_or_create_one_key_200_rounds_exactly_one_initializes() {
    let mut peers: Vec<Peer> = (0..8)
        .map(|_| Peer::start(&["typed-open-or-create"]))
        .collect();
    for round in 0..200 {
        let key = loop {
            let key = unique_key();
            if Segment::open(key).is_err() {
                break key;
            }
        };
        for peer in &mut peers {
            peer.send(&key.raw().to_string());
        }
        let lines: Vec<String> = peers.iter_mut().map(|peer| peer.expect_line("")).collect();
        // Remove before asserting, so a failure leaves nothing behind.
        let segment = Segment::open(key).map(RemoveOnDrop);
        let created: Vec<&String> = lines.iter().filter(|l| l.starts_with("created")).collect();
        assert_eq!(created.len(), 1, "round {round}: {lines:#?}");
        // Everyone saw the same header and the creator's value.
        let tail = |line: &String| line.split_once(' ').unwrap().1.to_owned();
        assert!(
            lines.iter().all(|line| tail(line) == tail(created[0])),
            "round {round}: {lines:#?}"
        );
        assert!(created[0].contains(" state=2"), "{}", created[0]);
        let creator: u32 = created[0]
            .split_whitespace()
            .find_map(|field| field.strip_prefix("creator="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(peers.iter().any(|peer| peer.pid() == creator));
        assert!(created[0].contains(&format!("value0={creator}")));
        let segment = segment.expect("the segment exists");
        let header = {
            let mapping = segment.attach().unwrap();
            let mut bytes = [0u8; 256];
            mapping.read_at(0, &mut bytes).unwrap();
            bytes
        };
        assert_eq!(&header[..8], b"SHMTYPED");
    }
    for peer in &mut peers {
        peer.wait_success();
    }
}
