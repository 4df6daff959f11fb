//! Holders in another pid namespace that share our IPC namespace (what
//! containers with `--ipc=host` or a pod are): a lock holder or ring side
//! claimed from a new pid namespace (`unshare --pid --fork`, as root) and
//! killed with SIGKILL is taken over from the parent namespace within a
//! second, judged by its kernel token (a System V semaphore the kernel lowers
//! at its exit) since its pid means nothing here; and the other way round. A
//! live holder there is never taken over. Every segment is removed by a guard,
//! also on panic; `--kill-child` takes the namespace's processes with the
//! `unshare` process the test kills.

mod support;

use std::ops::Deref;
use std::process::Command;
use std::time::{Duration, Instant};

use shm_sys::sysv::Segment;
use shm_typed::format::LOCK_OFFSET;
use shm_typed::{Error, Location, Shared, SpscRing};
use support::Peer;

/// Removes the segment when the test ends, also on panic.
struct RemoveOnDrop<T>(T, Location);

impl<T> Deref for RemoveOnDrop<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Drop for RemoveOnDrop<T> {
    fn drop(&mut self) {
        if let Location::Id(id) = self.1 {
            if let Ok(segment) = Segment::from_id(id) {
                let _ = segment.remove();
            }
        }
    }
}

fn id_of(location: &Location) -> i32 {
    match location {
        Location::Id(id) => *id,
        other => panic!("a private segment is found by id, not {other:?}"),
    }
}

/// Starts a peer role as pid 1 of a new pid namespace (same IPC namespace);
/// killing the returned peer (the `unshare` process) kills it with SIGKILL.
fn in_new_pid_namespace(args: &[&str]) -> Peer {
    let mut command = Command::new("unshare");
    command.args(["--pid", "--kill-child", "--"]);
    command.arg(env!("CARGO_BIN_EXE_shm-test-peer"));
    Peer::start_command(command, args)
}

/// The lock's owner word, as another mapping sees it.
fn owner_word(id: i32) -> u64 {
    let mapping = Segment::from_id(id).unwrap().attach().unwrap();
    let mut word = [0u8; 8];
    mapping.read_at(LOCK_OFFSET, &mut word).unwrap();
    u64::from_ne_bytes(word)
}

#[test]
fn a_lock_holder_killed_in_another_pid_namespace_is_taken_over_within_a_second() {
    for round in 0..5u64 {
        let shared = Shared::create(Location::Private, 0u64).unwrap();
        let location = shared.location().clone();
        let id = id_of(&location);
        let value = RemoveOnDrop(shared, location);
        let mut holder = in_new_pid_namespace(&["typed-hold-lock", &id.to_string()]);
        holder.expect_line("locked");
        let owner = owner_word(id);
        assert_ne!(
            owner & (1 << 30),
            0,
            "the holder marks itself foreign: {owner:#x}"
        );
        assert_eq!(owner & 0x3fff_ffff, 1, "pid 1 of its namespace");

        // Alive: never taken over, and the waiter knows it judged it.
        let err = value
            .lock_timeout(Some(Duration::from_millis(200)))
            .unwrap_err();
        assert!(
            matches!(err, Error::LockTimeout { .. }),
            "round {round}: a live holder judged by its token: {err:?}"
        );

        holder.kill();
        let started = Instant::now();
        let mut guard = value
            .lock_timeout(Some(Duration::from_secs(5)))
            .expect("lock after the holder died");
        let took = started.elapsed();
        assert!(guard.owner_died(), "round {round}: owner_died not reported");
        assert!(
            took < Duration::from_secs(1),
            "round {round}: took {took:?}"
        );
        assert_eq!(*guard, 1, "the dead holder's write is visible");
        guard.mark_consistent();
        drop(guard);
        holder.wait();
    }
}

#[test]
fn a_waiter_in_another_pid_namespace_takes_over_from_a_dead_holder_here() {
    let shared = Shared::create(Location::Private, 0u64).unwrap();
    let location = shared.location().clone();
    let id = id_of(&location);
    let value = RemoveOnDrop(shared, location);
    // The holder lives in our namespace (the segment's), the waiter in a new one.
    let mut holder = Peer::start(&["typed-hold-lock", &id.to_string()]);
    holder.expect_line("locked");
    let mut waiter = in_new_pid_namespace(&["typed-contend", &id.to_string()]);
    waiter.expect_line("ready");
    waiter.send("1");
    // It cannot get the lock while the holder lives.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        owner_word(id) & 0x3fff_ffff,
        u64::from(holder.pid()),
        "still the live holder's"
    );
    holder.kill();
    let started = Instant::now();
    waiter.expect_line_within("done", Duration::from_secs(5));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    holder.wait();
    waiter.wait_success();
    // The waiter took over from a dead holder (owner_died) and released
    // without marking the data consistent: poisoned.
    let err = value.lock().unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
    value.reset_poison().unwrap();
    let guard = value.lock().unwrap();
    assert_eq!(*guard, 2, "holder's increment, then the waiter's");
}

#[test]
fn a_ring_side_claimed_in_another_pid_namespace_is_taken_over_when_it_dies() {
    let ring = SpscRing::<u64>::create(Location::Private, 64).unwrap();
    let location = ring.location().clone();
    let id = id_of(&location);
    let ring = RemoveOnDrop(ring, location);
    let mut consumer = in_new_pid_namespace(&["spsc-consume", &id.to_string(), "64", "1000000"]);
    consumer.expect_line("ready");
    let err = ring.consumer().unwrap_err();
    assert!(
        matches!(err, Error::SideClaimed { pid: 1, .. }),
        "claimed by pid 1 of the other namespace, alive: {err:?}"
    );
    consumer.kill();
    let started = Instant::now();
    let taken = loop {
        match ring.consumer() {
            Ok(taken) => break taken,
            Err(Error::SideClaimed { .. }) if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(other) => panic!("after {:?}: {other:?}", started.elapsed()),
        }
    };
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    drop(taken);
    consumer.wait();
}

#[test]
fn a_consumer_restarted_as_pid_1_of_a_new_namespace_takes_over_its_dead_predecessor() {
    // Two containers' init processes are both pid 1: the second must not
    // take the first's dead claim for its own live one.
    let ring = SpscRing::<u64>::create(Location::Private, 64).unwrap();
    let location = ring.location().clone();
    let id = id_of(&location);
    let ring = RemoveOnDrop(ring, location);
    let mut first = in_new_pid_namespace(&["spsc-consume", &id.to_string(), "64", "1000000"]);
    first.expect_line("ready");
    first.kill();
    first.wait();
    // The kernel drops the first's token as it exits, which may be a moment
    // after its `unshare` parent: a second that comes too early is refused
    // (alive) and exits, and the next one is tried.
    let started = Instant::now();
    let mut second = loop {
        let mut second = in_new_pid_namespace(&["spsc-consume", &id.to_string(), "64", "1000000"]);
        match second.next_line_within(Duration::from_secs(5)) {
            Some(line) if line.starts_with("ready") => break second,
            Some(line) => panic!("unexpected line {line:?}"),
            None if started.elapsed() < Duration::from_secs(2) => {
                second.wait();
                std::thread::sleep(Duration::from_millis(10));
            }
            None => panic!(
                "no second consumer could claim within {:?}",
                started.elapsed()
            ),
        }
    };
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // And it is the second's now: alive, refused to us, named as foreign.
    let err = ring.consumer().unwrap_err();
    assert!(
        matches!(
            err,
            Error::SideClaimed {
                pid: 1,
                foreign: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("process 1 of another pid namespace"),
        "{err}"
    );
    second.kill();
    second.wait();
}

#[test]
fn a_descendant_that_gets_an_ancestors_pid_is_judged_as_itself() {
    // A process's caches (thread identity, kernel token) are copied into its
    // forked descendants; one of them that is given a dead ancestor's pid
    // must not take the ancestor's start time or token for its own, or its
    // live lock would be taken over as the ancestor's dead one.
    for round in 0..3 {
        let shared = Shared::create(Location::Private, 0u64).unwrap();
        let location = shared.location().clone();
        let id = id_of(&location);
        let value = RemoveOnDrop(shared, location);
        let mut command = Command::new("unshare");
        command.args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"]);
        command.arg(env!("CARGO_BIN_EXE_shm-test-peer"));
        let mut peer = Peer::start_command(command, &["lock-as-reused-pid", &id.to_string()]);
        let line = peer.expect_line("locked");
        assert!(
            line.ends_with("reused=true"),
            "round {round}: the test needs the pid reused: {line}"
        );
        let err = value
            .lock_timeout(Some(Duration::from_millis(300)))
            .unwrap_err();
        assert!(
            matches!(err, Error::LockTimeout { .. }),
            "round {round}: the live descendant's lock was taken: {err:?}"
        );
        peer.kill();
        peer.wait();
    }
}

#[test]
fn an_mpmc_producer_killed_mid_push_in_another_pid_namespace_is_repaired() {
    let ring = shm_typed::MpmcRing::<u64>::create(Location::Private, 8).unwrap();
    let location = ring.location().clone();
    let id = id_of(&location);
    let ring = RemoveOnDrop(ring, location);
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("paused");
    ring.push(1).unwrap();
    // Pid 1 of a new pid namespace, stopped between its claim and its
    // publish.
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--kill-child", "--"])
        .arg(env!("CARGO_BIN_EXE_shm-test-peer"))
        .env("SHM_TYPED_PAUSE", "mpmc:push-claimed")
        .env("SHM_TYPED_PAUSE_MARK", &mark);
    let mut producer = Peer::start_command(
        command,
        &["mpmc-crash-produce", &id.to_string(), "8", "1", "1", "7"],
    );
    producer.expect_line("ready");
    support::wait_until("the peer to pause", || mark.exists());
    ring.push(3).unwrap();
    assert_eq!(ring.pop().unwrap(), Some(1));
    // Alive: its claim is never repaired.
    assert_eq!(ring.pop_blocking(Duration::from_millis(300)).unwrap(), None);
    assert_eq!(ring.recover(), 0);
    producer.kill();
    producer.wait();
    // Dead, judged by its kernel token: the next waiter repairs the slot.
    let started = Instant::now();
    assert_eq!(ring.pop_blocking(Duration::from_secs(5)).unwrap(), Some(3));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(ring.pop().unwrap(), None, "its own value never arrives");
}
