//! A creator killed at each step of making and initialising a segment (the
//! `fault-injection` crash points of shm-typed): openers hear `CreatorDied`,
//! and of eight processes that then race `open_or_create` on the key, started
//! at different times, exactly one re-initialises and all see its value.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use shm_sys::sysv::Segment;
use shm_sys::Key;
use shm_typed::fault::POINTS;
use shm_typed::{describe_unready, Error, Region, Shared};
use support::{unique_key, Peer, RemoveOnDrop};

/// A key with no segment under it.
fn free_key() -> Key {
    loop {
        let key = unique_key();
        if Segment::open(key).is_err() {
            return key;
        }
    }
}

/// Removes whatever segment is under the key when dropped, also on a panic:
/// a racer may have made a fresh one before an assertion failed.
struct RemoveKeyOnDrop(Key);

impl Drop for RemoveKeyOnDrop {
    fn drop(&mut self) {
        while let Ok(segment) = Segment::open(self.0) {
            if segment.remove().is_err() {
                break;
            }
        }
    }
}

/// The field `name=` of a peer's report line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|field| {
            field
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
        })
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// Starts `typed-open-or-create` with `SHM_TYPED_FAULT=point`, sends it `key`
/// and waits for it to die there. Returns its pid.
fn kill_creator_at(point: &str, key: Key) -> u32 {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"));
    command.env("SHM_TYPED_FAULT", point);
    let mut creator = Peer::start_command(command, &["typed-open-or-create"]);
    let pid = creator.pid();
    creator.send(&key.raw().to_string());
    let status = creator.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the creator should have died at {point}: {status:?}"
    );
    pid
}

#[test]
fn a_creator_killed_at_each_step_is_replaced_by_exactly_one_of_eight_racers() {
    // Pauses between racer starts, in microseconds: a fixed spread, so the
    // racers reach the key at different times, some while others are still
    // removing the dead segment or initialising the new one; each of the ten
    // rounds per point rotates it.
    const STAGGER_US: [u64; 8] = [0, 300, 50, 1500, 0, 700, 120, 3000];
    for (round, point) in (0..10).flat_map(|round| POINTS.map(|point| (round, point))) {
        let key = free_key();
        let _cleanup = RemoveKeyOnDrop(key);
        let dead = kill_creator_at(point, key);
        let old = RemoveOnDrop(Segment::open(key).unwrap_or_else(|e| {
            panic!("{point}: the dead creator's segment should be there: {e}")
        }));
        let old_id = old.id();

        // A tool sees a segment of ours that will never be ready.
        let unready = {
            let mapping = old.attach_read_only().unwrap();
            let cpid = old.stat().unwrap().cpid;
            describe_unready(&Region::from_mapping(mapping), Some(cpid))
        };
        let unready = unready.unwrap_or_else(|| panic!("{point}: not taken for ours"));
        assert!(unready.creator_dead, "{point}: {unready:?}");
        assert_eq!(unready.creator, Some(dead), "{point}: {unready:?}");
        assert_eq!(
            unready.blank,
            point.starts_with("create:"),
            "{point}: {unready:?}"
        );

        // A plain opener is told who died.
        match Shared::<[u64; 4]>::open(key) {
            Err(Error::CreatorDied { pid, .. }) => assert_eq!(pid, dead, "{point}"),
            other => panic!("{point}: expected CreatorDied, got {other:?}"),
        }

        let mut racers = Vec::new();
        for index in 0..STAGGER_US.len() {
            let pause = STAGGER_US[(index + round) % STAGGER_US.len()];
            let mut racer = Peer::start(&["typed-open-or-create"]);
            std::thread::sleep(Duration::from_micros(pause));
            racer.send(&key.raw().to_string());
            racers.push(racer);
        }
        let lines: Vec<String> = racers
            .iter_mut()
            .map(|racer| racer.expect_line(""))
            .collect();
        // Remove before asserting, so a failure leaves nothing behind.
        let fresh = Segment::open(key).map(RemoveOnDrop);
        drop(racers);

        let created: Vec<&String> = lines.iter().filter(|l| l.starts_with("created")).collect();
        assert_eq!(created.len(), 1, "{point}: {lines:#?}");
        let creator: u32 = field(created[0], "creator").parse().unwrap();
        for line in &lines {
            assert_eq!(
                field(line, "creator"),
                creator.to_string(),
                "{point}: {lines:#?}"
            );
            assert_eq!(
                field(line, "value0"),
                creator.to_string(),
                "{point}: {lines:#?}"
            );
            assert_eq!(field(line, "state"), "2", "{point}: {lines:#?}");
        }
        assert_ne!(creator, dead, "{point}");
        let fresh = fresh.expect("the re-initialised segment is under the key");
        assert_ne!(
            fresh.id(),
            old_id,
            "{point}: a fresh segment, not the dead one"
        );
        // The dead creator's segment is gone (removed, and nobody maps it).
        assert!(
            Segment::from_id(old_id).is_err(),
            "{point}: the dead creator's segment is still there"
        );
    }
}

/// A claim whose pid cannot be judged here is never acted on: without the
/// creator record's pid namespace (a claim written by hand) the death is
/// reported but the segment is left alone; with another namespace's record the
/// pid means nothing here, and the opener waits and times out.
#[test]
fn a_dead_claim_that_cannot_be_verified_is_reported_and_left_alone() {
    let mut idle = Peer::start(&["idle"]);
    let dead = idle.pid();
    idle.wait_success(); // exited and reaped: its pid names nobody
    let key = free_key();
    let _cleanup = RemoveKeyOnDrop(key);
    let segment = Segment::options(key).size(4096).create().unwrap();
    let id = segment.id();
    let poke = |offset: usize, bytes: &[u8]| {
        let mapping = segment.attach().unwrap();
        mapping.write_at(offset, bytes).unwrap();
    };
    poke(16, &1u32.to_ne_bytes()); // state: initialising
    poke(144, &dead.to_ne_bytes()); // the claim, no record

    let options = || Shared::<u64>::options().init_timeout(Duration::from_millis(50));
    match options().open_or_create(key, 7) {
        Err(Error::CreatorDied { pid, .. }) => assert_eq!(pid, dead),
        other => panic!("expected CreatorDied, got {other:?}"),
    }
    assert_eq!(
        Segment::open(key).map(|s| s.id()).ok(),
        Some(id),
        "left alone"
    );
    let unready = |segment: &Segment| {
        let region = Region::from_mapping(segment.attach_read_only().unwrap());
        describe_unready(&region, None).expect("ours, not ready")
    };
    assert!(!unready(&segment).creator_dead, "unverified");

    // A record naming a pid namespace that is not ours (no inode is 1).
    poke(160, &1u64.to_ne_bytes());
    match options().open_or_create(key, 7) {
        Err(Error::InitTimeout { .. }) => {}
        other => panic!("expected InitTimeout, got {other:?}"),
    }
    assert_eq!(
        Segment::open(key).map(|s| s.id()).ok(),
        Some(id),
        "left alone"
    );
    assert!(!unready(&segment).creator_dead, "another namespace's pid");
}
