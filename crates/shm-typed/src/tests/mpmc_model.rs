//! `MpmcRing` against a `VecDeque` model (proptest-state-machine, heap region),
//! and threads checking exactly-once delivery.

use std::time::Duration;

use crate::ring::mpmc::MpmcRing;
use crate::ring::spsc::PushError;
use crate::Region;

fn ring_in_heap(capacity: u64) -> MpmcRing<u64> {
    let bytes = MpmcRing::<u64>::segment_len(&crate::Location::Heap, 16).unwrap();
    MpmcRing::create_in(Region::heap(bytes), capacity).unwrap()
}

#[test]
fn fills_then_hands_back_then_drains_in_order() {
    let ring = ring_in_heap(4);
    for value in 0..4 {
        ring.push(value).unwrap();
    }
    assert!(matches!(ring.push(9), Err(PushError::Full(9))));
    assert_eq!(ring.len(), 4);
    for value in 0..4 {
        assert_eq!(ring.pop().unwrap(), Some(value));
    }
    assert_eq!(ring.pop().unwrap(), None);
    assert_eq!(ring.pop_blocking(Duration::from_millis(2)).unwrap(), None);
    for value in 0..4 {
        ring.push(value).unwrap();
    }
    assert!(matches!(
        ring.push_blocking(9, Duration::from_millis(2)),
        Err(PushError::Timeout(9))
    ));
}

#[test]
fn a_slot_ahead_of_a_position_that_never_moves_is_corrupted_at_once() {
    // A sequence ahead of the position means someone claimed it; a position
    // that then does not move is a peer's nonsense, reported after a few
    // rounds instead of the retry limit (2^20 rounds, some 15 ms) on every
    // call.
    let ring = ring_in_heap(4);
    ring.sequence_word(0)
        .store(1 << 40, std::sync::atomic::Ordering::Relaxed);
    let rounds = |what: String| -> u32 {
        let after = what.split("after ").nth(1).expect("says after how many");
        after.split(' ').next().unwrap().parse().unwrap()
    };
    match ring.push(7) {
        Err(PushError::Corrupted(7, corrupted)) => {
            let what = corrupted.to_string();
            assert!(rounds(what.clone()) <= 65, "{what}");
            assert!(what.contains("enqueue position 0"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    let what = ring.pop().unwrap_err().to_string();
    assert!(rounds(what.clone()) <= 65, "{what}");
    assert!(what.contains("dequeue position 0"), "{what}");
}

#[test]
fn capacity_is_a_power_of_two_of_at_least_two() {
    for capacity in [0, 1, 3, 12] {
        let bytes = MpmcRing::<u64>::segment_len(&crate::Location::Heap, 16).unwrap();
        assert!(MpmcRing::<u64>::create_in(Region::heap(bytes), capacity).is_err());
    }
}

#[test]
fn three_producers_three_consumers_deliver_each_value_exactly_once() {
    let ring = ring_in_heap(8);
    let per_producer = if cfg!(miri) { 30 } else { 50_000 };
    let received = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for producer in 0..3u64 {
            let ring = &ring;
            scope.spawn(move || {
                for n in 0..per_producer {
                    ring.push_blocking(producer << 32 | n, Duration::from_secs(10))
                        .unwrap();
                }
            });
        }
        for _ in 0..3 {
            scope.spawn(|| {
                let mut mine = Vec::new();
                while let Some(value) = ring.pop_blocking(Duration::from_millis(200)).unwrap() {
                    mine.push(value);
                }
                received.lock().unwrap().extend(mine);
            });
        }
    });
    let mut received = received.into_inner().unwrap();
    received.sort_unstable();
    let mut expected: Vec<u64> = (0..3u64)
        .flat_map(|p| (0..per_producer).map(move |n| p << 32 | n))
        .collect();
    expected.sort_unstable();
    assert_eq!(received, expected);
}

#[cfg(not(miri))]
mod state_machine {
    use super::*;
    use proptest::prelude::*;
    use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
    use std::collections::VecDeque;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u64),
        Pop,
        Len,
    }

    #[derive(Clone, Debug)]
    struct Model {
        capacity: u64,
        items: VecDeque<u64>,
    }

    struct RingModel;

    impl ReferenceStateMachine for RingModel {
        type State = Model;
        type Transition = Op;

        fn init_state() -> BoxedStrategy<Model> {
            (1u32..5)
                .prop_map(|shift| Model {
                    capacity: 1 << shift,
                    items: VecDeque::new(),
                })
                .boxed()
        }

        fn transitions(_: &Model) -> BoxedStrategy<Op> {
            prop_oneof![
                4 => any::<u64>().prop_map(Op::Push),
                4 => Just(Op::Pop),
                1 => Just(Op::Len),
            ]
            .boxed()
        }

        fn apply(mut state: Model, op: &Op) -> Model {
            match op {
                Op::Push(value) if (state.items.len() as u64) < state.capacity => {
                    state.items.push_back(*value)
                }
                Op::Pop => {
                    state.items.pop_front();
                }
                _ => {}
            }
            state
        }
    }

    struct Subject {
        ring: MpmcRing<u64>,
        before: Model,
    }

    impl StateMachineTest for Subject {
        type SystemUnderTest = Subject;
        type Reference = RingModel;

        fn init_test(model: &Model) -> Subject {
            Subject {
                ring: ring_in_heap(model.capacity),
                before: model.clone(),
            }
        }

        fn apply(mut subject: Subject, after: &Model, op: Op) -> Subject {
            let before = std::mem::replace(&mut subject.before, after.clone());
            match op {
                Op::Push(value) => match subject.ring.push(value) {
                    Ok(()) => assert!((before.items.len() as u64) < before.capacity),
                    Err(PushError::Full(back)) => {
                        assert_eq!(back, value);
                        assert_eq!(before.items.len() as u64, before.capacity);
                    }
                    Err(other) => panic!("{other}"),
                },
                Op::Pop => assert_eq!(subject.ring.pop().unwrap(), before.items.front().copied()),
                Op::Len => assert_eq!(subject.ring.len(), before.items.len() as u64),
            }
            subject
        }

        fn check_invariants(subject: &Subject, model: &Model) {
            assert_eq!(subject.ring.len(), model.items.len() as u64);
        }
    }

    prop_state_machine! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(500).max(500)
        ))]

        #[test]
        fn mpmc_ring_agrees_with_a_vecdeque(sequential 1..80 => Subject);
    }
}

/// Participants that die holding a claim, simulated in one process: a record
/// written as a dead process's registration would be, and the claim position
/// moved on as its compare-and-swap would have left it.
#[cfg(not(miri))]
mod crashed_participants {
    use super::*;
    use crate::lock::liveness;
    use crate::ring::mpmc::{RecordWord, RECORDS};
    use crate::ring::protocol::{intent, POPPING, PUSHING};
    use crate::sys;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// The pid of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// The record a participant would write: pid, start time, domain, and
    /// an intent, sealed.
    fn write_record(
        ring: &MpmcRing<u64>,
        record: usize,
        pid: u32,
        start: u64,
        domain: u64,
        announced: u64,
    ) {
        let owner = (7u64 << 32) | u64::from(pid);
        let word = |w| ring.participant_word(record, w);
        word(RecordWord::Owner).store(owner, Ordering::Relaxed);
        word(RecordWord::Start).store(start, Ordering::Relaxed);
        word(RecordWord::Domain).store(domain, Ordering::Relaxed);
        word(RecordWord::Intent).store(announced, Ordering::Relaxed);
        word(RecordWord::Seal).store(owner, Ordering::Release);
    }

    /// A free record (the handle holds one, registered first).
    const SPARE: usize = RECORDS - 1;

    /// Pushes 1, then a producer of pid `pid` (start, domain) claims the
    /// next position and vanishes, then 3 is pushed behind it.
    fn ring_with_a_vanished_producer(pid: u32, start: u64, domain: u64) -> MpmcRing<u64> {
        let ring = ring_in_heap(4);
        ring.push(1).unwrap();
        let position = ring.claim_and_vanish(true);
        write_record(&ring, SPARE, pid, start, domain, intent(PUSHING, position));
        ring.push(3).unwrap();
        ring
    }

    #[test]
    fn a_dead_producers_slot_is_skipped_and_only_its_value_is_missing() {
        let ring = ring_with_a_vanished_producer(dead_pid(), 0, sys::current_domain());
        assert_eq!(ring.pop().unwrap(), Some(1));
        assert_eq!(ring.pop().unwrap(), None, "stuck before the repair");
        assert_eq!(ring.recover(), 1);
        assert_eq!(ring.recover(), 0, "repaired once");
        assert_eq!(ring.pop().unwrap(), Some(3), "the skipped slot is passed");
        // Laps later the ring is whole.
        for value in 10..30 {
            ring.push(value).unwrap();
            assert_eq!(ring.pop().unwrap(), Some(value));
        }
        assert!(ring.is_empty());
    }

    #[test]
    fn a_blocking_pop_repairs_a_dead_producers_slot_by_itself() {
        let ring = ring_with_a_vanished_producer(dead_pid(), 0, sys::current_domain());
        assert_eq!(ring.pop().unwrap(), Some(1));
        let got = ring.pop_blocking(Duration::from_secs(5)).unwrap();
        assert_eq!(got, Some(3));
    }

    #[test]
    fn a_dead_consumers_slot_is_freed_and_only_its_value_is_lost() {
        let ring = ring_in_heap(4);
        for value in 0..4 {
            ring.push(value).unwrap();
        }
        let position = ring.claim_and_vanish(false);
        write_record(
            &ring,
            SPARE,
            dead_pid(),
            0,
            sys::current_domain(),
            intent(POPPING, position),
        );
        assert_eq!(ring.pop().unwrap(), Some(1));
        assert!(
            matches!(ring.push(4), Err(PushError::Full(4))),
            "the dead one's slot"
        );
        // A blocking push repairs it and gets in.
        ring.push_blocking(4, Duration::from_secs(5)).unwrap();
        ring.push(5).unwrap();
        let rest: Vec<u64> = std::iter::from_fn(|| ring.pop().unwrap()).collect();
        assert_eq!(rest, [2, 3, 4, 5], "0 went with the dead consumer");
    }

    #[test]
    fn a_live_participants_claim_is_never_repaired() {
        let start = liveness::own_process_start();
        let ring = ring_with_a_vanished_producer(sys::current_pid(), start, sys::current_domain());
        assert_eq!(ring.pop().unwrap(), Some(1));
        assert_eq!(ring.recover(), 0);
        assert_eq!(ring.pop_blocking(Duration::from_millis(20)).unwrap(), None);
    }

    #[test]
    fn a_reused_pid_is_told_by_its_start_time() {
        // Our own pid, but a start time that is not ours: the process that
        // registered was another one, now gone.
        let start = liveness::own_process_start();
        assert_ne!(start, 0, "/proc tells our start time");
        let ring =
            ring_with_a_vanished_producer(sys::current_pid(), start + 1, sys::current_domain());
        assert_eq!(ring.pop().unwrap(), Some(1));
        assert_eq!(ring.recover(), 1);
        assert_eq!(ring.pop().unwrap(), Some(3));
    }

    #[test]
    fn a_participant_of_another_domain_or_an_unknown_one_is_never_judged_dead() {
        for domain in [sys::current_domain() ^ 1, 0] {
            let ring = ring_with_a_vanished_producer(dead_pid(), 0, domain);
            assert_eq!(ring.pop().unwrap(), Some(1));
            assert_eq!(ring.recover(), 0, "domain {domain:#x}");
        }
    }

    #[test]
    fn a_claim_no_record_announces_or_an_unsealed_record_is_never_repaired() {
        let ring = ring_in_heap(4);
        ring.push(1).unwrap();
        let position = ring.claim_and_vanish(true);
        ring.push(3).unwrap();
        assert_eq!(ring.pop().unwrap(), Some(1));
        assert_eq!(ring.recover(), 0, "nobody announced it");
        write_record(
            &ring,
            SPARE,
            dead_pid(),
            0,
            sys::current_domain(),
            intent(PUSHING, position),
        );
        ring.participant_word(SPARE, RecordWord::Seal)
            .store(0, Ordering::Relaxed);
        assert_eq!(ring.recover(), 0, "an unsealed record");
        ring.participant_word(SPARE, RecordWord::Seal).store(
            ring.participant_word(SPARE, RecordWord::Owner)
                .load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        assert_eq!(ring.recover(), 1, "sealed, dead: repaired");
        assert_eq!(ring.pop().unwrap(), Some(3));
    }

    #[test]
    fn a_dead_announcer_and_a_live_one_of_the_same_claim_wait_for_the_live_one() {
        let ring = ring_with_a_vanished_producer(dead_pid(), 0, sys::current_domain());
        let announced = ring
            .participant_word(SPARE, RecordWord::Intent)
            .load(Ordering::Relaxed);
        let start = liveness::own_process_start();
        write_record(
            &ring,
            SPARE - 1,
            sys::current_pid(),
            start,
            sys::current_domain(),
            announced,
        );
        assert_eq!(ring.pop().unwrap(), Some(1));
        assert_eq!(ring.recover(), 0, "the live one may be the claimer");
        ring.participant_word(SPARE - 1, RecordWord::Intent)
            .store(0, Ordering::Relaxed);
        assert_eq!(ring.recover(), 1, "withdrawn: the dead one was the claimer");
    }

    /// Every record belongs to a live participant: opening is refused with
    /// an error that names the limit; records of dead participants are taken
    /// over, once their claims are settled.
    #[test]
    fn a_full_table_refuses_a_handle_and_dead_records_are_taken_over() {
        let bytes = MpmcRing::<u64>::segment_len(&crate::Location::Heap, 4).unwrap();
        let region = Arc::new(Region::heap(bytes));
        let ring = MpmcRing::<u64>::create_in(Region::part(&region, 0, bytes).unwrap(), 4).unwrap();
        let (pid, start, domain) = (
            sys::current_pid(),
            liveness::own_process_start(),
            sys::current_domain(),
        );
        for record in 1..RECORDS {
            write_record(&ring, record, pid, start, domain, 0);
        }
        let open = || MpmcRing::<u64>::open_in(Region::part(&region, 0, bytes).unwrap(), 4);
        let error = open().unwrap_err();
        assert!(
            matches!(&error, crate::Error::Unsupported { what, .. } if what.contains("participant record")),
            "{error}"
        );
        // A dead participant's record that names a stuck claim: settled
        // (repaired) on the way to taking it over.
        ring.push(1).unwrap();
        let position = ring.claim_and_vanish(true);
        ring.push(3).unwrap();
        write_record(&ring, 5, dead_pid(), 0, domain, intent(PUSHING, position));
        let second = open().expect("the dead one's record");
        assert_eq!(ring.records_of(pid), RECORDS);
        assert_eq!(second.pop().unwrap(), Some(1));
        assert_eq!(
            second.pop().unwrap(),
            Some(3),
            "settled before it was taken"
        );
        // A thread of the full table's handles that needs a record of its
        // own gets the error from its first operation.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert!(matches!(second.push(9), Err(PushError::Corrupted(9, _))));
                assert!(second.pop().is_err());
            });
        });
        drop(second);
        assert_eq!(ring.records_of(pid), RECORDS - 1, "released on drop");
        open().expect("room again");
    }

    #[test]
    fn each_thread_holds_its_own_record_and_leaves_it_when_it_exits() {
        let ring = ring_in_heap(8);
        let pid = sys::current_pid();
        assert_eq!(ring.records_of(pid), 1, "the handle's first record");
        ring.push(0).unwrap();
        assert_eq!(
            ring.records_of(pid),
            1,
            "the first thread to use it takes it"
        );
        std::thread::scope(|scope| {
            for value in 1..=3 {
                let ring = &ring;
                scope.spawn(move || ring.push(value).unwrap());
            }
        });
        let after_threads = ring.records_of(pid);
        assert!((2..=4).contains(&after_threads), "{after_threads}");
        // Threads that exited left their records to later threads (once the
        // kernel is done with them: a joined thread's task can linger for a
        // moment, and until it is gone its record counts as in use).
        for round in 0..20 {
            let tid = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        ring.pop().unwrap();
                        sys::current_tid()
                    })
                    .join()
                    .unwrap()
            });
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while sys::task_state(tid) != sys::TaskState::Dead {
                assert!(std::time::Instant::now() < deadline, "thread {tid} lingers");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(ring.records_of(pid) <= after_threads, "round {round}");
        }
        drop(ring);
    }

    #[test]
    fn a_dropped_handle_releases_every_record_it_held() {
        let bytes = MpmcRing::<u64>::segment_len(&crate::Location::Heap, 4).unwrap();
        let region = Arc::new(Region::heap(bytes));
        let first =
            MpmcRing::<u64>::create_in(Region::part(&region, 0, bytes).unwrap(), 4).unwrap();
        let pid = sys::current_pid();
        let second = MpmcRing::<u64>::open_in(Region::part(&region, 0, bytes).unwrap(), 4).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| second.push(1).unwrap());
            scope.spawn(|| second.push(2).unwrap());
        });
        // The second handle's own, and one more if the two threads overlapped.
        assert!((2..=3).contains(&first.records_of(pid)));
        drop(second);
        assert_eq!(first.records_of(pid), 1);
    }

    mod garbage {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            /// Whatever a peer writes into the table, positions and slots,
            /// operations and repairs return (an error at worst), never panic.
            #[test]
            fn garbage_in_the_participants_table_never_panics(
                words in prop::collection::vec(any::<u64>(), RECORDS * 5),
                own_pid in any::<bool>(),
                sequences in prop::collection::vec(any::<u64>(), 4),
                claims in (0u64..3, 0u64..3),
            ) {
                let ring = ring_in_heap(4);
                let pid = if own_pid { sys::current_pid() } else { dead_pid() };
                for (index, chunk) in words.chunks(5).enumerate() {
                    let record = (index + 1) % RECORDS;
                    let domain = if chunk[3] % 2 == 0 { sys::current_domain() } else { chunk[3] };
                    let owner = if chunk[0] % 3 == 0 { chunk[0] } else { (chunk[0] & !0xffff_ffff) | u64::from(pid) };
                    write_record(&ring, record, (owner & 0xffff_ffff) as u32, chunk[2], domain, chunk[4] % 16);
                    let seal = if chunk[1] % 4 == 0 { chunk[1] } else { owner | (7 << 32) };
                    ring.participant_word(record, RecordWord::Seal).store(seal, Ordering::Relaxed);
                }
                for _ in 0..claims.0 { ring.claim_and_vanish(true); }
                for _ in 0..claims.1 { ring.claim_and_vanish(false); }
                // Some slots as the ring left them, others scribbled: near
                // their positions, skip marks, anything.
                for (slot, sequence) in sequences.iter().enumerate() {
                    let value = match sequence % 4 {
                        0 => continue,
                        1 => (slot as u64).wrapping_add(sequence % 9).wrapping_sub(4),
                        2 => crate::ring::protocol::skip_mark(slot as u64 + 4 * (sequence % 3)),
                        _ => *sequence,
                    };
                    let offset = crate::format::PAYLOAD_OFFSET + 384 + slot * 32;
                    ring.region().write_bytes(offset, &value.to_ne_bytes());
                }
                for value in 0..6u64 {
                    let _ = ring.recover();
                    let _ = ring.push(value);
                    let _ = ring.pop();
                }
                let _ = ring.push_blocking(7, Duration::ZERO);
                let _ = ring.pop_blocking(Duration::ZERO);
                prop_assert!(ring.len() <= 4);
            }
        }
    }
}
