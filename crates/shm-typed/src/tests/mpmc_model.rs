//! `MpmcRing` against a `VecDeque` model (proptest-state-machine, heap region),
//! and threads checking exactly-once delivery.

use std::time::Duration;

use crate::ring::mpmc::MpmcRing;
use crate::ring::spsc::PushError;
use crate::Region;

fn ring_in_heap(capacity: u64) -> MpmcRing<u64> {
    let bytes = crate::format::PAYLOAD_OFFSET + 384 + capacity as usize * 32;
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
fn capacity_is_a_power_of_two_of_at_least_two() {
    for capacity in [0, 1, 3, 12] {
        let bytes = crate::format::PAYLOAD_OFFSET + 384 + 16 * 32;
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
