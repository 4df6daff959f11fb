//! `SpscRing` against a `VecDeque` model, driven by proptest-state-machine over a
//! heap region, plus unit tests of its validation. No OS needed (Miri runs the
//! unit tests; the state machine is skipped under Miri for time).

use std::time::Duration;

use crate::ring::spsc::{PushError, SpscRing};
use crate::{Error, Location, Region};

fn ring_in_heap(capacity: u64) -> SpscRing<u64> {
    let bytes = SpscRing::<u64>::segment_len(&Location::Heap, capacity).unwrap();
    SpscRing::create_in(Region::heap(bytes), capacity).unwrap()
}

#[test]
fn fills_to_capacity_then_hands_the_value_back() {
    let ring = ring_in_heap(4);
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    for value in 0..4 {
        producer.push(value).unwrap();
    }
    match producer.push(99) {
        Err(PushError::Full(99)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(ring.len().unwrap(), 4);
    assert_eq!(consumer.pop().unwrap(), Some(0));
    producer.push(4).unwrap();
    let mut out = [0u64; 8];
    assert_eq!(consumer.pop_into(&mut out).unwrap(), 4);
    assert_eq!(&out[..4], &[1, 2, 3, 4]);
    assert_eq!(consumer.pop().unwrap(), None);
    assert!(ring.is_empty().unwrap());
}

/// Streaming stores copy 16 bytes at a time with ordinary stores at the
/// unaligned ends: values of odd sizes, starting at every offset and wrapping
/// around, must arrive intact.
#[test]
fn streaming_pushes_of_odd_sized_values_arrive_intact() {
    fn check<T: bytemuck::Pod + PartialEq + std::fmt::Debug>() {
        let size = std::mem::size_of::<T>();
        let capacity = 32u64;
        let len = crate::format::PAYLOAD_OFFSET + 1024 + size * capacity as usize;
        let ring = SpscRing::<T>::create_in(Region::heap(len), capacity).unwrap();
        let (mut producer, mut consumer) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let mut next = 0u8;
        for round in 0..40usize {
            let batch: Vec<T> = (0..round % 29)
                .map(|_| {
                    next = next.wrapping_add(1);
                    let mut value = T::zeroed();
                    bytemuck::bytes_of_mut(&mut value).fill(next);
                    value
                })
                .collect();
            assert_eq!(producer.push_slice_streaming(&batch).unwrap(), batch.len());
            let mut out = vec![T::zeroed(); batch.len()];
            assert_eq!(consumer.pop_into(&mut out).unwrap(), batch.len());
            assert_eq!(out, batch, "{size}-byte values, round {round}");
        }
    }
    check::<u8>();
    check::<[u8; 3]>();
    check::<u64>();
    check::<[u8; 17]>();
    check::<[u32; 12]>();
}

#[test]
fn one_producer_and_one_consumer_at_a_time() {
    let ring = ring_in_heap(4);
    let producer = ring.producer().unwrap();
    assert!(matches!(
        ring.producer(),
        Err(Error::SideClaimed {
            side: "producer",
            ..
        })
    ));
    drop(producer);
    let _again = ring.producer().unwrap();
    let _consumer = ring.consumer().unwrap();
    assert!(matches!(
        ring.consumer(),
        Err(Error::SideClaimed {
            side: "consumer",
            ..
        })
    ));
}

#[test]
fn impossible_indices_are_corrupted_errors() {
    let ring = ring_in_heap(8);
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    producer.push(1).unwrap();
    // A peer writes a tail far ahead of head: more than capacity.
    ring.region()
        .write_bytes(crate::format::PAYLOAD_OFFSET, &1000u64.to_ne_bytes());
    let err = consumer.pop().unwrap_err().into_error();
    assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");
    // A head beyond the producer's tail.
    ring.region()
        .write_bytes(crate::format::PAYLOAD_OFFSET + 128, &5000u64.to_ne_bytes());
    for _ in 0..8 {
        let _ = producer.push(2);
    }
    assert!(matches!(producer.push(3), Err(PushError::Corrupted(3, _))));
    drop((producer, consumer));
    assert!(matches!(ring.producer(), Err(Error::Corrupted { .. })));
}

#[test]
fn capacity_must_be_a_power_of_two_and_match_on_open() {
    let bytes = crate::format::PAYLOAD_OFFSET + 1024 + 6 * 8;
    let err = SpscRing::<u64>::create_in(Region::heap(bytes), 6).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let region = Region::heap(crate::format::PAYLOAD_OFFSET + 1024 + 8 * 8);
    let ring = SpscRing::<u64>::create_in(region, 8).unwrap();
    let region = ring_into_region(ring);
    let err = SpscRing::<u64>::open_in(region, 4).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
}

/// A process must not sleep on a ring whose peer would never wake it: a
/// spinning ring does not open as one with blocking calls, nor the other way
/// round, and the error names both kinds.
#[test]
fn spinning_and_blocking_rings_do_not_open_as_each_other() {
    let bytes = crate::format::PAYLOAD_OFFSET + 1024 + 8 * 8;
    let spinning = SpscRing::<u64, false>::create_spinning_in(Region::heap(bytes), 8).unwrap();
    let err = SpscRing::<u64>::open_in(spinning.into_region(), 8).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("spinning spsc ring") && text.contains("spsc ring"),
        "{text}"
    );
    let blocking = ring_in_heap(8);
    let err = SpscRing::<u64, false>::open_spinning_in(blocking.into_region(), 8).unwrap_err();
    assert!(err.to_string().contains("spinning spsc ring"), "{err}");
    let spinning = SpscRing::<u64, false>::create_spinning_in(Region::heap(bytes), 8).unwrap();
    let again = SpscRing::<u64, false>::open_spinning_in(spinning.into_region(), 8).unwrap();
    let (mut producer, mut consumer) = (again.producer().unwrap(), again.consumer().unwrap());
    producer.push(5).unwrap();
    assert_eq!(consumer.pop().unwrap(), Some(5));
}

/// `shm inspect` decodes a spinning ring: its kind by name, and its fill level.
#[test]
fn a_spinning_ring_describes_itself() {
    let bytes = crate::format::PAYLOAD_OFFSET + 1024 + 8 * 8;
    let ring = SpscRing::<u64, false>::create_spinning_in(Region::heap(bytes), 8).unwrap();
    ring.producer().unwrap().push_slice(&[1, 2, 3]).unwrap();
    let description = crate::describe(ring.region()).expect("ours");
    assert_eq!(
        description.kind,
        Some(crate::format::Kind::SpinningSpscRing)
    );
    assert_eq!(description.kind.unwrap().name(), "spinning spsc ring");
    assert_eq!(description.ring_len, Some(3));
}

fn ring_into_region(ring: SpscRing<u64>) -> Region {
    ring.into_region()
}

#[test]
fn blocking_pop_times_out_on_an_empty_ring_and_push_on_a_full_one() {
    let ring = ring_in_heap(2);
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    assert_eq!(
        consumer.pop_blocking(Duration::from_millis(5)).unwrap(),
        None
    );
    producer.push(1).unwrap();
    producer.push(2).unwrap();
    assert!(matches!(
        producer.push_blocking(3, Duration::from_millis(5)),
        Err(PushError::Timeout(3))
    ));
    assert_eq!(
        consumer.pop_blocking(Duration::from_millis(5)).unwrap(),
        Some(1)
    );
}

#[test]
fn blocking_threads_pass_every_value_in_order() {
    let ring = ring_in_heap(4);
    let count = if cfg!(miri) { 50 } else { 100_000 };
    std::thread::scope(|scope| {
        let mut producer = ring.producer().unwrap();
        scope.spawn(move || {
            for value in 0..count {
                producer
                    .push_blocking(value, Duration::from_secs(10))
                    .unwrap();
            }
        });
        let mut consumer = ring.consumer().unwrap();
        for expected in 0..count {
            let got = consumer.pop_blocking(Duration::from_secs(10)).unwrap();
            assert_eq!(got, Some(expected));
        }
    });
}

/// Both sides pinned to one CPU: every wait has to give the CPU to the other
/// side (the path where a wait yields at once because its peer ran on its CPU
/// during its last wait). Ping-pong, so each value waits for the other side.
#[test]
#[cfg(not(miri))]
fn blocking_ping_pong_on_one_cpu_passes_every_value() {
    use rustix::thread::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
    let before = sched_getaffinity(None).unwrap();
    let mut one_cpu = CpuSet::new();
    one_cpu.set(sched_getcpu());
    let pin = move || sched_setaffinity(None, &one_cpu).unwrap();
    let (there, back) = (ring_in_heap(2), ring_in_heap(2));
    let count = 20_000;
    std::thread::scope(|scope| {
        let (mut take, mut answer) = (there.consumer().unwrap(), back.producer().unwrap());
        scope.spawn(move || {
            pin();
            for _ in 0..count {
                let value = take.pop_blocking(Duration::from_secs(10)).unwrap().unwrap();
                answer
                    .push_blocking(value + 1, Duration::from_secs(10))
                    .unwrap();
            }
        });
        pin();
        let (mut send, mut receive) = (there.producer().unwrap(), back.consumer().unwrap());
        for value in 0..count {
            send.push_blocking(value, Duration::from_secs(10)).unwrap();
            let got = receive.pop_blocking(Duration::from_secs(10)).unwrap();
            assert_eq!(got, Some(value + 1));
        }
    });
    sched_setaffinity(None, &before).unwrap();
}

#[cfg(not(miri))]
mod state_machine {
    use super::*;
    use crate::ring::spsc::{Consumer, Producer};
    use proptest::prelude::*;
    use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
    use std::collections::VecDeque;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u64),
        /// Values, and whether to push them with streaming stores.
        PushSlice(Vec<u64>, bool),
        Pop,
        PopInto(usize),
        Len,
        ReclaimProducer,
        ReclaimConsumer,
        /// Fill a write chunk of up to this many values, commit this many.
        WriteChunk(Vec<u64>, usize),
        /// Read a chunk of up to this many values, commit this many.
        ReadChunk(usize, usize),
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
            (0u32..5)
                .prop_map(|shift| Model {
                    capacity: 1 << shift,
                    items: VecDeque::new(),
                })
                .boxed()
        }

        fn transitions(_: &Model) -> BoxedStrategy<Op> {
            prop_oneof![
                4 => any::<u64>().prop_map(Op::Push),
                2 => (prop::collection::vec(any::<u64>(), 0..20), any::<bool>())
                    .prop_map(|(values, streaming)| Op::PushSlice(values, streaming)),
                4 => Just(Op::Pop),
                2 => (0usize..20).prop_map(Op::PopInto),
                1 => Just(Op::Len),
                1 => Just(Op::ReclaimProducer),
                1 => Just(Op::ReclaimConsumer),
                2 => (prop::collection::vec(any::<u64>(), 0..20), 0usize..20)
                    .prop_map(|(values, commit)| Op::WriteChunk(values, commit)),
                2 => (0usize..20, 0usize..20).prop_map(|(len, commit)| Op::ReadChunk(len, commit)),
            ]
            .boxed()
        }

        fn apply(mut state: Model, op: &Op) -> Model {
            let free = (state.capacity as usize) - state.items.len();
            match op {
                Op::Push(value) => {
                    if free > 0 {
                        state.items.push_back(*value);
                    }
                }
                Op::PushSlice(values, _) => state.items.extend(values.iter().take(free)),
                Op::Pop => {
                    state.items.pop_front();
                }
                Op::PopInto(n) => {
                    let n = (*n).min(state.items.len());
                    state.items.drain(..n);
                }
                Op::WriteChunk(values, commit) => {
                    let len = values.len().min(free);
                    state.items.extend(values.iter().take((*commit).min(len)));
                }
                Op::ReadChunk(len, commit) => {
                    let len = (*len).min(state.items.len());
                    state.items.drain(..(*commit).min(len));
                }
                Op::Len | Op::ReclaimProducer | Op::ReclaimConsumer => {}
            }
            state
        }
    }

    /// The ring (leaked for 'static handles, freed in teardown) and its
    /// handles; `WAKE` false for a spinning ring.
    struct Subject<const WAKE: bool> {
        ring: *mut SpscRing<u64, WAKE>,
        producer: Option<Producer<'static, u64, WAKE>>,
        consumer: Option<Consumer<'static, u64, WAKE>>,
        before: Model,
    }

    impl<const WAKE: bool> StateMachineTest for Subject<WAKE> {
        type SystemUnderTest = Subject<WAKE>;
        type Reference = RingModel;

        fn init_test(model: &Model) -> Subject<WAKE> {
            let bytes = crate::format::PAYLOAD_OFFSET + 1024 + model.capacity as usize * 8;
            let ring = SpscRing::<u64, WAKE>::create_in_at(
                Region::heap(bytes),
                Location::Heap,
                model.capacity,
            );
            let ring: &'static SpscRing<u64, WAKE> = Box::leak(Box::new(ring.unwrap()));
            Subject {
                producer: Some(ring.producer().unwrap()),
                consumer: Some(ring.consumer().unwrap()),
                ring: ring as *const _ as *mut _,
                before: model.clone(),
            }
        }

        fn apply(mut subject: Subject<WAKE>, after: &Model, op: Op) -> Subject<WAKE> {
            let before = std::mem::replace(&mut subject.before, after.clone());
            let producer = subject.producer.as_mut().unwrap();
            let consumer = subject.consumer.as_mut().unwrap();
            match op {
                Op::Push(value) => match producer.push(value) {
                    Ok(()) => assert!(before.items.len() < before.capacity as usize),
                    Err(PushError::Full(back)) => {
                        assert_eq!(back, value);
                        assert_eq!(before.items.len(), before.capacity as usize);
                    }
                    Err(other) => panic!("{other}"),
                },
                Op::PushSlice(values, streaming) => {
                    let pushed = if streaming {
                        producer.push_slice_streaming(&values).unwrap()
                    } else {
                        producer.push_slice(&values).unwrap()
                    };
                    assert_eq!(pushed, after.items.len() - before.items.len());
                }
                Op::Pop => assert_eq!(consumer.pop().unwrap(), before.items.front().copied()),
                Op::PopInto(n) => {
                    let mut out = vec![0u64; n];
                    let got = consumer.pop_into(&mut out).unwrap();
                    let expected: Vec<u64> = before.items.iter().take(n).copied().collect();
                    assert_eq!(&out[..got], &expected[..]);
                }
                Op::Len => {
                    assert_eq!(consumer.len().unwrap(), before.items.len() as u64);
                    assert_eq!(
                        producer.free_slots().unwrap(),
                        before.capacity - before.items.len() as u64
                    );
                }
                Op::WriteChunk(values, commit) => {
                    let mut chunk = producer.write_chunk(values.len()).unwrap();
                    let free = (before.capacity as usize) - before.items.len();
                    assert_eq!(chunk.len(), values.len().min(free));
                    let len = chunk.len();
                    let (first, second) = chunk.as_mut_slices();
                    for (slot, value) in first.iter_mut().chain(second).zip(&values) {
                        *slot = *value;
                    }
                    chunk.commit(commit.min(len));
                }
                Op::ReadChunk(len, commit) => {
                    let chunk = consumer.read_chunk(len).unwrap();
                    let expected: Vec<u64> = before.items.iter().take(len).copied().collect();
                    assert_eq!(chunk.iter().collect::<Vec<_>>(), expected);
                    assert_eq!(chunk.get(expected.len()), None);
                    let chunk_len = chunk.len();
                    chunk.commit(commit.min(chunk_len));
                }
                Op::ReclaimProducer => {
                    // SAFETY: the ring outlives the handles (freed in teardown).
                    let ring = unsafe { &*subject.ring };
                    subject.producer = None;
                    subject.producer = Some(ring.producer().unwrap());
                }
                Op::ReclaimConsumer => {
                    // SAFETY: as above.
                    let ring = unsafe { &*subject.ring };
                    subject.consumer = None;
                    subject.consumer = Some(ring.consumer().unwrap());
                }
            }
            subject
        }

        fn check_invariants(subject: &Subject<WAKE>, model: &Model) {
            // SAFETY: the ring outlives the handles (freed in teardown).
            let ring = unsafe { &*subject.ring };
            assert_eq!(ring.len().unwrap(), model.items.len() as u64);
        }

        fn teardown(subject: Subject<WAKE>, _: Model) {
            let Subject {
                ring,
                producer,
                consumer,
                ..
            } = subject;
            drop((producer, consumer));
            // SAFETY: leaked from a Box in init_test; no handle borrows it now.
            drop(unsafe { Box::from_raw(ring) });
        }
    }

    prop_state_machine! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(500).max(500)
        ))]

        #[test]
        fn spsc_ring_agrees_with_a_vecdeque(sequential 1..60 => Subject<true>);

        #[test]
        fn spinning_spsc_ring_agrees_with_a_vecdeque(sequential 1..60 => Subject<false>);
    }
}

/// The mailbox (beside `tail`, bytes 8..64 of its line): a consumer that has
/// caught up takes the last one-by-one push from it, not from the slot; a
/// stamp that `tail` contradicts is a `Corrupted` error.
#[test]
fn a_caught_up_consumer_reads_the_mailbox_and_checks_it_against_tail() {
    const STAMP: usize = crate::format::PAYLOAD_OFFSET + 8;
    const VALUE: usize = crate::format::PAYLOAD_OFFSET + 16;
    const SLOTS: usize = crate::format::PAYLOAD_OFFSET + 512;
    let ring = ring_in_heap(8);
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    producer.push(7).unwrap();
    // The slot says 99, the mailbox 7: the mailbox is read.
    ring.region().write_bytes(SLOTS, &99u64.to_ne_bytes());
    assert_eq!(consumer.pop().unwrap(), Some(7));
    // Two waiting: the consumer reads the slots (the mailbox holds the last).
    producer.push(8).unwrap();
    producer.push(9).unwrap();
    ring.region().write_bytes(SLOTS + 8, &88u64.to_ne_bytes());
    assert_eq!(consumer.pop().unwrap(), Some(88));
    assert_eq!(consumer.pop().unwrap(), Some(9));
    // A forged stamp for position 3 while tail is 3: refused.
    ring.region().write_bytes(STAMP, &4u64.to_ne_bytes());
    ring.region().write_bytes(VALUE, &5u64.to_ne_bytes());
    let error = consumer.pop().unwrap_err().into_error();
    assert!(
        matches!(&error, Error::Corrupted { what, .. } if what.contains("tail went from 4 to 3")),
        "{error:?}"
    );
}

/// One-by-one pushes and pops of types of every mailbox size (not multiples
/// of 8 included) and past it (56 bytes: no mailbox): each value comes
/// back whole, whether the consumer takes it from the mailbox (caught up) or
/// from the slots (behind).
#[test]
fn one_by_one_values_of_every_mailbox_size_arrive_whole() {
    fn check<T: bytemuck::Pod + PartialEq + std::fmt::Debug>(make: fn(u8) -> T) {
        let bytes = SpscRing::<T>::segment_len(&Location::Heap, 4).unwrap();
        let ring = SpscRing::<T>::create_in(Region::heap(bytes), 4).unwrap();
        let mut producer = ring.producer().unwrap();
        let mut consumer = ring.consumer().unwrap();
        for round in 0..20u8 {
            // Caught up: one in, one out.
            producer.push(make(round)).unwrap();
            assert_eq!(consumer.pop().unwrap(), Some(make(round)));
            // Behind: three in, three out.
            for k in 1..=3 {
                producer.push(make(round.wrapping_add(k * 50))).unwrap();
            }
            for k in 1..=3 {
                assert_eq!(
                    consumer.pop().unwrap(),
                    Some(make(round.wrapping_add(k * 50)))
                );
            }
            assert_eq!(consumer.pop().unwrap(), None);
        }
    }
    check::<u8>(|v| v);
    check::<[u8; 3]>(|v| [v, !v, v ^ 0x55]);
    check::<[u8; 17]>(|v| std::array::from_fn(|i| v.wrapping_add(i as u8)));
    check::<[u32; 12]>(|v| std::array::from_fn(|i| u32::from(v) << (i % 24)));
    check::<[u64; 7]>(|v| std::array::from_fn(|i| u64::from(v ^ i as u8)));
    check::<u128>(|v| u128::from(v) << 100 | u128::from(v));
}
