//! Crafted segments in heap regions: store headers and directories, ring
//! indices and sequence words, header fields, all with values near the
//! integer limits. Every open and every operation returns an error or valid
//! data, never a panic, in debug and release builds alike: CI runs every test
//! whose name contains `crafted` in both (`cargo test --workspace -- crafted`).

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;

use crate::format::PAYLOAD_OFFSET;
use crate::ring::spsc::{PushError, SpscRing};
use crate::{describe, store_entries, Error, Location, MpmcRing, Region, Store};

/// Header fields (offsets from the segment start; see the crate docs).
const SEGMENT_LEN: usize = 24;
const PAYLOAD_SIZE: usize = 40;
const CAPACITY: usize = 56;
const LOCK_WORD: usize = crate::format::LOCK_OFFSET;
/// Store words and directory.
const COUNT: usize = PAYLOAD_OFFSET;
const ARENA_NEXT: usize = PAYLOAD_OFFSET + 8;
const DIRECTORY: usize = PAYLOAD_OFFSET + 128;
/// SPSC: tail, head. MPMC: enqueue, dequeue, first slot.
const FIRST_INDEX: usize = PAYLOAD_OFFSET;
const SECOND_INDEX: usize = PAYLOAD_OFFSET + 128;
const MPMC_SLOTS: usize = PAYLOAD_OFFSET + 384;
/// An MPMC slot of a `u64`: sequence, 8 reserved bytes, the value.
const MPMC_STRIDE: usize = 32;

const CASES: u32 = 256;

fn near_limits() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..70).prop_map(|k| u64::MAX - k),
        (0u64..70).prop_map(|k| (1u64 << 57).wrapping_sub(k)),
        (0u64..70).prop_map(|k| (1u64 << 63).wrapping_sub(k)),
        0u64..70_000,
        (0u64..20).prop_map(|k| k * 4096),
    ]
}

/// Mostly what a real segment holds (`None`), sometimes a value near a limit.
fn mostly_real() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![2 => Just(None), 1 => near_limits().prop_map(Some)]
}

fn put(region: &Region, offset: usize, value: Option<u64>) {
    if let Some(value) = value {
        region.write_bytes(offset, &value.to_ne_bytes());
    }
}

/// A copy of `source`'s first `len` bytes (zeroes past its end) in a fresh
/// heap region.
fn copy_of(source: &Region, len: usize) -> Region {
    let mut bytes = vec![0u8; source.len()];
    source.read_bytes(0, &mut bytes);
    let region = Region::heap(len);
    region.write_bytes(0, &bytes[..len.min(bytes.len())]);
    region
}

/// A store of 8 records with an object "first" and a ring "second".
fn real_store() -> Region {
    let store = Store::create_in(Region::heap(1 << 16), 8).unwrap();
    store.object::<u64>("first", 1).unwrap();
    store.spsc::<u64>("second", 8).unwrap();
    store.mpmc::<u64>("third", 4).unwrap();
    let mut bytes = vec![0u8; 1 << 16];
    store.region().read_bytes(0, &mut bytes);
    let region = Region::heap(1 << 16);
    region.write_bytes(0, &bytes);
    region
}

/// A directory record.
fn record(name: &[u8], name_len: u8, kind: u8, offset: u64, len: u64) -> [u8; 128] {
    let mut record = [0u8; 128];
    record[..name.len().min(48)].copy_from_slice(&name[..name.len().min(48)]);
    record[48] = name_len;
    record[49] = kind;
    record[56..64].copy_from_slice(&offset.to_ne_bytes());
    record[64..72].copy_from_slice(&len.to_ne_bytes());
    record
}

/// Everything a store user can do, on a store that may be anything: each call
/// returns an error or valid data.
fn exercise_store(store: &Store, capacity: u64) -> Result<(), TestCaseError> {
    if let Ok(entries) = store.entries() {
        prop_assert!(entries.len() as u64 <= capacity);
    }
    if let Ok(first) = store.get_object::<u64>("first") {
        let _ = first.load();
    }
    if let Ok(made) = store.object::<u64>("made-here", 3) {
        prop_assert_eq!(made.load().ok(), Some(3));
    }
    if let Ok(ring) = store.get_spsc::<u64>("second", 8) {
        if let Ok(len) = ring.len() {
            prop_assert!(len <= 8);
        }
    }
    if let Ok(ring) = store.get_mpmc::<u64>("third", 4) {
        prop_assert!(ring.len() <= 4);
    }
    let _ = store.spsc::<u64>("made-ring", 16);
    let _ = store.mpmc::<[u8; 3]>("made-mpmc", 2);
    Ok(())
}

fn quick_store() -> crate::store::StoreOptions {
    Store::options()
        .init_timeout(Duration::from_millis(2))
        .lock_timeout(Some(Duration::from_millis(2)))
        .entry_lock_timeout(Some(Duration::from_millis(2)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Store headers, control words and directory records with extreme
    /// values, and regions of any size: `open_in` and `store_entries` give an
    /// error or a store whose every operation gives an error or valid data.
    #[test]
    fn crafted_store_headers_and_directories_never_panic(
        capacity in mostly_real(),
        segment_len in mostly_real(),
        count in prop_oneof![2 => (0u64..5).prop_map(Some), 1 => mostly_real()],
        arena_next in mostly_real(),
        lock_word in prop_oneof![3 => Just(None), 1 => any::<u64>().prop_map(Some)],
        slot in 0usize..4,
        name in prop::collection::vec(any::<u8>(), 0..48),
        name_len in prop_oneof![Just(None), any::<u8>().prop_map(Some)],
        kind in 0u8..8,
        offset in prop_oneof![2 => (0u64..16).prop_map(|k| k * 4096), 1 => near_limits()],
        len in prop_oneof![2 => (1u64..4).prop_map(|k| k * 4096), 1 => near_limits()],
        entry_field in prop_oneof![Just(SEGMENT_LEN), Just(PAYLOAD_SIZE), Just(CAPACITY)],
        entry_value in mostly_real(),
        region_len in prop_oneof![3 => Just(1usize << 16), 1 => 1usize..70_000],
    ) {
        let real = real_store();
        let build = || {
            let region = copy_of(&real, region_len);
            if region_len >= 4096 {
                put(&region, CAPACITY, capacity);
                put(&region, SEGMENT_LEN, segment_len);
                put(&region, PAYLOAD_SIZE, segment_len.map(|len| len.wrapping_sub(384)));
                put(&region, COUNT, count);
                put(&region, ARENA_NEXT, arena_next);
                put(&region, LOCK_WORD, lock_word);
                let name_len = name_len.unwrap_or(name.len() as u8);
                region.write_bytes(
                    DIRECTORY + slot * 128,
                    &record(&name, name_len, kind, offset, len),
                );
            }
            if region_len >= 4096 + 4096 {
                // The first entry's own header.
                put(&region, 4096 + entry_field, entry_value);
            }
            region
        };
        if let Ok(store) = quick_store().open_in(build()) {
            exercise_store(&store, capacity.unwrap_or(8))?;
        }
        if let Ok(entries) = store_entries(build()) {
            prop_assert!(entries.len() as u64 <= capacity.unwrap_or(8));
        }
        let region = build();
        if let Some(description) = describe(&region) {
            prop_assert_eq!(description.ring_len, None);
        }
    }

    /// Ring headers whose capacity, sizes and lengths are extreme: opening
    /// gives an error or a ring that works.
    #[test]
    fn crafted_ring_headers_never_panic(
        field in prop_oneof![
            Just(SEGMENT_LEN), Just(32), Just(PAYLOAD_SIZE), Just(48), Just(52), Just(CAPACITY)
        ],
        value in near_limits(),
        region_len in prop_oneof![3 => Just(None), 1 => (1usize..10_000).prop_map(Some)],
    ) {
        let spsc = SpscRing::<u64>::create_in(Region::heap(8192), 8).unwrap();
        let spinning = SpscRing::<u64, false>::create_in_at(Region::heap(8192), Location::Heap, 8).unwrap();
        let mpmc = MpmcRing::<u64>::create_in(Region::heap(8192), 8).unwrap();
        for (index, source) in [spsc.region(), spinning.region(), mpmc.region()]
            .into_iter()
            .enumerate()
        {
            let region = copy_of(source, region_len.unwrap_or(8192));
            if region.len() >= 64 {
                let width = if field == 48 || field == 52 { 4 } else { 8 };
                region.write_bytes(field, &value.to_ne_bytes()[..width]);
            }
            let timeout = Duration::from_millis(2);
            match index {
                0 => if let Ok(ring) = SpscRing::<u64>::open_in_at(region, Location::Heap, 8, timeout) {
                    exercise_spsc(&ring, &[(0, 1), (6, 0), (3, 0)])?;
                },
                1 => if let Ok(ring) = SpscRing::<u64, false>::open_in_at(region, Location::Heap, 8, timeout) {
                    exercise_spsc(&ring, &[(0, 1), (6, 0), (3, 0)])?;
                },
                _ => if let Ok(ring) = MpmcRing::<u64>::open_in_at(region, Location::Heap, 8, timeout) {
                    prop_assert!(ring.push(5).is_ok());
                    prop_assert_eq!(ring.pop().ok(), Some(Some(5)));
                },
            }
        }
    }

    /// SPSC rings (both kinds) whose head and tail start anywhere, near
    /// `u64::MAX` in particular, and which a peer rewrites between operations:
    /// every call gives an error (Corrupted) or valid data.
    #[test]
    fn crafted_spsc_indices_near_u64_max_never_panic(
        head in near_top(),
        tail in near_top(),
        ops in prop::collection::vec((0u8..12, near_top()), 1..48),
    ) {
        let ring = SpscRing::<u64>::create_in(Region::heap(8192), 8).unwrap();
        put(ring.region(), SECOND_INDEX, Some(head));
        put(ring.region(), FIRST_INDEX, Some(tail));
        exercise_spsc(&ring, &ops)?;
        blocking_near_top(&ring)?;
        let ring = SpscRing::<u64, false>::create_in_at(Region::heap(8192), Location::Heap, 8).unwrap();
        put(ring.region(), SECOND_INDEX, Some(head));
        put(ring.region(), FIRST_INDEX, Some(tail));
        exercise_spsc(&ring, &ops)?;
    }

    /// An SPSC ring that starts consistent just below `u64::MAX` behaves like
    /// a queue until it reports Corrupted (before any position passes
    /// `u64::MAX`), and never panics.
    #[test]
    fn crafted_spsc_near_u64_max_matches_a_queue_until_corrupted(
        below_top in 0u64..200,
        fill in 0u64..=8,
        ops in prop::collection::vec((any::<bool>(), 1usize..10), 1..64),
    ) {
        let ring = SpscRing::<u64>::create_in(Region::heap(8192), 8).unwrap();
        let head = u64::MAX - below_top;
        let tail = head.saturating_add(fill);
        put(ring.region(), SECOND_INDEX, Some(head));
        put(ring.region(), FIRST_INDEX, Some(tail));
        let (Ok(mut producer), Ok(mut consumer)) = (ring.producer(), ring.consumer()) else {
            // Refused at the claim: head too close to the top.
            prop_assert!(head.checked_add(8).is_none());
            return Ok(());
        };
        let mut model: VecDeque<u64> = vec![0; (tail - head) as usize].into();
        let mut next = 1u64;
        for (push, count) in ops {
            if push {
                let values: Vec<u64> = (next..next + count as u64).collect();
                match producer.push_slice(&values) {
                    Ok(pushed) => {
                        prop_assert_eq!(pushed, count.min(8 - model.len()));
                        model.extend(&values[..pushed]);
                        next += pushed as u64;
                    }
                    Err(corrupted) => {
                        prop_assert!(is_corrupted(corrupted));
                        break;
                    }
                }
            } else {
                let mut out = vec![0u64; count];
                match consumer.pop_into(&mut out) {
                    Ok(popped) => {
                        prop_assert_eq!(popped, count.min(model.len()));
                        let expected: Vec<u64> = model.drain(..popped).collect();
                        prop_assert_eq!(&out[..popped], &expected[..]);
                    }
                    Err(corrupted) => {
                        prop_assert!(is_corrupted(corrupted));
                        break;
                    }
                }
            }
            match ring.positions() {
                Ok((head, tail)) => prop_assert_eq!(tail - head, model.len() as u64),
                // The consumer came within a capacity of u64::MAX: from here
                // on the ring is refused, not wrapped.
                Err(error) => {
                    prop_assert!(is_corrupted(error));
                    break;
                }
            }
        }
    }

}

proptest! {
    // Fewer cases: a ring a peer wrote nonsense into costs each call up to
    // 2^20 retries before it reports Corrupted (a second in a debug build).
    #![proptest_config(ProptestConfig::with_cases(CASES / 8))]

    /// MPMC rings whose positions and sequence words start anywhere (near
    /// `u64::MAX` in particular) and which a peer rewrites between operations.
    #[test]
    fn crafted_mpmc_positions_and_sequences_never_panic(
        enqueue in near_top(),
        dequeue in near_top(),
        sequences in prop::collection::vec(near_top(), 8),
        ops in prop::collection::vec((0u8..8, near_top()), 1..32),
    ) {
        let ring = MpmcRing::<u64>::create_in(Region::heap(8192), 8).unwrap();
        let region = ring.region();
        put(region, FIRST_INDEX, Some(enqueue));
        put(region, SECOND_INDEX, Some(dequeue));
        for (slot, sequence) in sequences.iter().enumerate() {
            put(region, MPMC_SLOTS + slot * MPMC_STRIDE, Some(*sequence));
        }
        for (op, value) in ops {
            match op {
                0 | 1 => match ring.push(value) {
                    Ok(()) | Err(PushError::Full(_)) => {}
                    Err(PushError::Corrupted(_, corrupted)) => {
                        prop_assert!(is_corrupted(corrupted));
                    }
                    Err(PushError::Timeout(_)) => prop_assert!(false, "push never waits"),
                },
                2 | 3 => if let Err(corrupted) = ring.pop() {
                    prop_assert!(is_corrupted(corrupted));
                },
                4 => {
                    let _ = ring.push_blocking(value, Duration::ZERO);
                    let _ = ring.pop_blocking(Duration::ZERO);
                }
                5 => put(region, FIRST_INDEX + (value as usize % 2) * 128, Some(value)),
                6 => put(region, MPMC_SLOTS + (value as usize % 8) * MPMC_STRIDE, Some(value)),
                _ => {}
            }
            prop_assert!(ring.len() <= 8);
        }
    }

    /// A consistent MPMC ring whose positions start just below `u64::MAX`
    /// behaves exactly like a queue across the wrap.
    #[test]
    fn crafted_mpmc_near_u64_max_matches_a_queue(
        below_top in 0u64..40,
        ops in prop::collection::vec(any::<bool>(), 1..64),
    ) {
        let capacity = 8u64;
        let ring = MpmcRing::<u64>::create_in(Region::heap(8192), capacity).unwrap();
        let start = u64::MAX - below_top;
        put(ring.region(), FIRST_INDEX, Some(start));
        put(ring.region(), SECOND_INDEX, Some(start));
        for position in (0..capacity).map(|k| start.wrapping_add(k)) {
            let slot = (position % capacity) as usize;
            put(ring.region(), MPMC_SLOTS + slot * MPMC_STRIDE, Some(position));
        }
        let mut model = VecDeque::new();
        for (next, push) in (0u64..).zip(ops) {
            if push {
                match ring.push(next) {
                    Ok(()) => model.push_back(next),
                    Err(PushError::Full(_)) => prop_assert_eq!(model.len() as u64, capacity),
                    Err(other) => prop_assert!(false, "{}", other),
                }
            } else {
                let popped = ring.pop().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(popped, model.pop_front());
            }
            prop_assert_eq!(ring.len(), model.len() as u64);
        }
    }
}

fn is_corrupted(error: impl Into<Error>) -> bool {
    matches!(error.into(), Error::Corrupted { .. })
}

/// Positions near the top of `u64`, or anywhere.
fn near_top() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0u64..24).prop_map(|k| u64::MAX - k),
        1 => 0u64..24,
        1 => any::<u64>(),
    ]
}

/// Runs `ops` (code, value) on an SPSC ring: each push, pop, chunk and query
/// returns an error (Corrupted) or data within the ring's bounds. Codes 9 and
/// 10 rewrite head or tail as a peer would; a handle that reported Corrupted is
/// claimed again.
fn exercise_spsc<const WAKE: bool>(
    ring: &SpscRing<u64, WAKE>,
    ops: &[(u8, u64)],
) -> Result<(), TestCaseError> {
    let capacity = ring.capacity();
    let corrupted = |error: Error| -> Result<(), TestCaseError> {
        prop_assert!(matches!(error, Error::Corrupted { .. }), "{:?}", error);
        Ok(())
    };
    let mut producer = ring.producer().ok();
    let mut consumer = ring.consumer().ok();
    for &(op, value) in ops {
        let count = (value % 12) as usize;
        match op {
            0 => {
                if let Some(handle) = producer.as_mut() {
                    match handle.push(value) {
                        Ok(()) | Err(PushError::Full(_)) => {}
                        Err(PushError::Corrupted(_, error)) => {
                            corrupted(error.into_error())?;
                            producer = None;
                        }
                        Err(PushError::Timeout(_)) => prop_assert!(false, "push never waits"),
                    }
                }
            }
            1 => {
                if let Some(handle) = producer.as_mut() {
                    let values = vec![value; count];
                    match handle.push_slice(&values) {
                        Ok(pushed) => prop_assert!(pushed <= count),
                        Err(error) => {
                            corrupted(error.into_error())?;
                            producer = None;
                        }
                    }
                }
            }
            2 => {
                if let Some(handle) = producer.as_mut() {
                    match handle.write_chunk(count) {
                        Ok(mut chunk) => {
                            prop_assert!(chunk.len() <= count);
                            let (first, second) = chunk.as_mut_slices();
                            first
                                .iter_mut()
                                .chain(second)
                                .for_each(|slot| *slot = value);
                            let commit = chunk.len() / 2;
                            chunk.commit(commit);
                        }
                        Err(error) => {
                            corrupted(error.into_error())?;
                            producer = None;
                        }
                    }
                }
            }
            3 => {
                if let Some(handle) = consumer.as_mut() {
                    if let Err(error) = handle.pop() {
                        corrupted(error.into_error())?;
                        consumer = None;
                    }
                }
            }
            4 => {
                if let Some(handle) = consumer.as_mut() {
                    let mut out = vec![0u64; count];
                    match handle.pop_into(&mut out) {
                        Ok(popped) => prop_assert!(popped <= count),
                        Err(error) => {
                            corrupted(error.into_error())?;
                            consumer = None;
                        }
                    }
                }
            }
            5 => {
                if let Some(handle) = consumer.as_mut() {
                    match handle.read_chunk(count) {
                        Ok(chunk) => {
                            prop_assert!(chunk.len() <= count);
                            prop_assert_eq!(chunk.iter().count(), chunk.len());
                            prop_assert!(chunk.get(chunk.len()).is_none());
                            chunk.commit_all();
                        }
                        Err(error) => {
                            corrupted(error.into_error())?;
                            consumer = None;
                        }
                    }
                }
            }
            6 => {
                match ring.positions() {
                    Ok((head, tail)) => {
                        prop_assert!(head <= tail && tail - head <= capacity);
                        prop_assert!(head.checked_add(capacity).is_some());
                    }
                    Err(error) => corrupted(error)?,
                }
                match ring.len() {
                    Ok(len) => prop_assert!(len <= capacity),
                    Err(error) => corrupted(error)?,
                }
            }
            7 => {
                if let Some(handle) = producer.as_mut() {
                    match handle.free_slots() {
                        Ok(free) => prop_assert!(free <= capacity),
                        Err(error) => {
                            corrupted(error.into_error())?;
                            producer = None;
                        }
                    }
                }
                if let Some(handle) = consumer.as_mut() {
                    match handle.len() {
                        Ok(len) => prop_assert!(len <= capacity),
                        Err(error) => {
                            corrupted(error.into_error())?;
                            consumer = None;
                        }
                    }
                }
            }
            8 => {
                // Claim again whatever was lost.
                if producer.is_none() {
                    producer = ring.producer().ok();
                }
                if consumer.is_none() {
                    consumer = ring.consumer().ok();
                }
            }
            9 => put(ring.region(), SECOND_INDEX, Some(value)),
            10 => put(ring.region(), FIRST_INDEX, Some(value)),
            _ => {}
        }
    }
    Ok(())
}

/// The blocking calls on a ring whose indices may be anything: they return
/// (at once, with a zero timeout) an error or a value.
fn blocking_near_top(ring: &SpscRing<u64>) -> Result<(), TestCaseError> {
    if let Ok(mut producer) = ring.producer() {
        match producer.push_blocking(1, Duration::ZERO) {
            Ok(()) | Err(PushError::Timeout(_) | PushError::Full(_)) => {}
            Err(PushError::Corrupted(_, error)) => {
                prop_assert!(is_corrupted(error));
            }
        }
    }
    if let Ok(mut consumer) = ring.consumer() {
        if let Err(error) = consumer.pop_blocking(Duration::ZERO) {
            prop_assert!(is_corrupted(error));
        }
    }
    Ok(())
}

#[test]
fn crafted_spsc_head_and_tail_at_u64_max_minus_2_are_corrupted_not_an_overflow() {
    fn check<const WAKE: bool>(ring: &SpscRing<u64, WAKE>) {
        put(ring.region(), SECOND_INDEX, Some(u64::MAX - 2));
        put(ring.region(), FIRST_INDEX, Some(u64::MAX - 2));
        assert!(matches!(ring.producer(), Err(Error::Corrupted { .. })));
        assert!(matches!(ring.consumer(), Err(Error::Corrupted { .. })));
        assert!(matches!(ring.positions(), Err(Error::Corrupted { .. })));
        assert!(matches!(ring.len(), Err(Error::Corrupted { .. })));
    }
    check(&SpscRing::<u64>::create_in(Region::heap(8192), 8).unwrap());
    check(&SpscRing::<u64, false>::create_in_at(Region::heap(8192), Location::Heap, 8).unwrap());
}

#[test]
fn crafted_store_capacity_near_2_pow_57_is_corrupted_in_a_heap_region() {
    let region = copy_of(&real_store(), 1 << 16);
    put(&region, CAPACITY, Some((1 << 57) - 5));
    put(&region, COUNT, Some(1000));
    let error = Store::open_in(region).unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
}

#[test]
fn crafted_store_open_in_of_another_kind_is_wrong_kind() {
    let object = crate::Shared::<u64>::options()
        .create_in(Region::heap(4096), 1)
        .unwrap()
        .into_region();
    let error = Store::open_in(object).unwrap_err();
    assert!(
        matches!(&error, Error::WrongKind { expected, found, .. } if expected == "store" && found == "object"),
        "{error:?}"
    );
}

/// The schema record (header 192..216) and the block it points at.
const SCHEMA_FINGERPRINT: usize = crate::format::SCHEMA_RECORD_OFFSET;
const SCHEMA_BLOCK_OFFSET: usize = SCHEMA_FINGERPRINT + 8;
const SCHEMA_BLOCK_LEN: usize = SCHEMA_FINGERPRINT + 16;

/// A `Shared<u64>` in a heap region: `u64` has a schema (not under Miri,
/// where the registry is empty).
#[cfg(not(miri))]
fn object_with_schema() -> Region {
    let region = crate::Shared::<u64>::options()
        .create_in(Region::heap(4096), 7)
        .unwrap()
        .into_region();
    assert_ne!(region.try_read_u64(SCHEMA_FINGERPRINT), Some(0));
    region
}

#[cfg(not(miri))]
fn open_error(region: Region) -> String {
    match crate::Shared::<u64>::options().open_in(region) {
        Ok(_) => panic!("opened"),
        Err(error @ Error::Corrupted { .. }) => error.to_string(),
        Err(other) => panic!("not Corrupted: {other:?}"),
    }
}

#[cfg(not(miri))]
#[test]
fn crafted_schema_records_that_do_not_check_out_are_corrupted() {
    // The block moved outside the segment, or into the payload.
    for offset in [4096u64, 4094, u64::MAX - 2, 0, PAYLOAD_OFFSET as u64] {
        let region = object_with_schema();
        put(&region, SCHEMA_BLOCK_OFFSET, Some(offset));
        let error = open_error(region);
        assert!(error.contains("outside the segment"), "{offset}: {error}");
    }
    // A block byte changed: it no longer hashes to the fingerprint, which
    // still equals the opener's own (the fast path must not skip the hash).
    let region = object_with_schema();
    let at = region.try_read_u64(SCHEMA_BLOCK_OFFSET).unwrap() as usize;
    region.write_bytes(at + 1, &[0xee]);
    assert!(open_error(region).contains("does not hash to its fingerprint"));
    // Its length changed.
    let region = object_with_schema();
    region.write_bytes(SCHEMA_BLOCK_LEN, &1u32.to_ne_bytes());
    assert!(open_error(region).contains("does not hash"));
    // Another type's block, hashing right: a schema mismatch, not corruption.
    let region = object_with_schema();
    let other = crate::schema::encode(&<u32 as crate::schema::ShmType>::descriptor());
    region.write_bytes(at, &other);
    region.write_bytes(SCHEMA_BLOCK_LEN, &(other.len() as u32).to_ne_bytes());
    put(
        &region,
        SCHEMA_FINGERPRINT,
        Some(<u32 as crate::schema::ShmType>::fingerprint()),
    );
    let error = crate::Shared::<u64>::options().open_in(region).unwrap_err();
    assert!(matches!(error, Error::SchemaMismatch { .. }), "{error:?}");
}

#[cfg(not(miri))]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any schema record and any block bytes: opening, describing, the C
    /// header and the value rendering give errors or output, never a panic,
    /// and an open that succeeds saw the record untouched.
    #[test]
    fn crafted_schema_records_and_blocks_never_panic(
        fingerprint in mostly_real(),
        offset in mostly_real(),
        len in prop_oneof![2 => Just(None), 1 => (0u32..80).prop_map(Some)],
        block in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let region = object_with_schema();
        let at = region.try_read_u64(SCHEMA_BLOCK_OFFSET).unwrap() as usize;
        put(&region, SCHEMA_FINGERPRINT, fingerprint);
        put(&region, SCHEMA_BLOCK_OFFSET, offset);
        if let Some(len) = len {
            region.write_bytes(SCHEMA_BLOCK_LEN, &len.to_ne_bytes());
        }
        region.write_bytes(at, &block);
        if let Some(description) = describe(&region) {
            let _ = crate::c_header(&description);
            if let (Some(Ok(schema)), Some(value)) =
                (&description.schema, crate::object_value(&region, Duration::ZERO))
            {
                let _ = crate::schema::render_value(schema, &value.bytes);
            }
        }
        let _ = crate::Shared::<u64>::options().open_in(region);
    }
}
