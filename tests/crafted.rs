//! Crafted segments through the real open paths (System V and POSIX): headers,
//! store directories and ring indices holding values near the integer limits.
//! Every open and every operation must return an error or valid data, never
//! panic, in debug and release builds alike (CI runs `-- crafted` in both).
//! Every segment is removed by a guard, also on panic.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use shm_sys::posix::PosixSegment;
use shm_sys::sysv::Segment;
use shm_sys::Mapping;
use shm_typed::format::PAYLOAD_OFFSET;
use shm_typed::{
    store_entries, Error, Location, MpmcRing, PushError, Region, Shared, SpinningSpscRing,
    SpscRing, Store,
};
use support::{unique_name, RemoveOnDrop, UnlinkOnDrop};

/// Header fields (offsets from the segment start; see the crate docs).
const SEGMENT_LEN: usize = 24;
const PAYLOAD_SIZE: usize = 40;
const CAPACITY: usize = 56;
/// Store control words and directory (see `Store`).
const COUNT: usize = PAYLOAD_OFFSET;
const ARENA_NEXT: usize = PAYLOAD_OFFSET + 8;
const DIRECTORY: usize = PAYLOAD_OFFSET + 128;
/// SPSC: tail at 384, head at 512. MPMC: enqueue at 384, dequeue at 512.
const FIRST_INDEX: usize = PAYLOAD_OFFSET;
const SECOND_INDEX: usize = PAYLOAD_OFFSET + 128;

fn id_of(location: &Location) -> i32 {
    match *location {
        Location::Id(id) => id,
        ref other => panic!("private segments are found by id, not {other}"),
    }
}

fn mapping_of(region: &Region) -> &Mapping {
    region.mapping().expect("a System V segment")
}

fn write_u64(mapping: &Mapping, offset: usize, value: u64) {
    mapping.write_at(offset, &value.to_ne_bytes()).unwrap();
}

/// A real store in a private System V segment, with its guard.
fn private_store(entries: u64, arena: usize) -> (Store, RemoveOnDrop) {
    let store = Store::create(Location::Private, entries, arena).expect("store");
    let guard = RemoveOnDrop(Segment::from_id(id_of(store.location())).unwrap());
    (store, guard)
}

#[test]
fn crafted_store_capacity_near_2_pow_57_is_corrupted_not_a_wrapped_arena() {
    let (store, _guard) = private_store(4, 8192);
    store.object::<u64>("a", 1).unwrap();
    let mapping = mapping_of(store.region());
    // 2^57 - 5 records end 128 bytes below 2^64: rounding that up to a page
    // wraps past usize::MAX.
    write_u64(mapping, CAPACITY, (1 << 57) - 5);
    write_u64(mapping, COUNT, 1000);
    match Store::open(store.location().clone()) {
        Err(Error::Corrupted { what, .. }) => assert!(what.contains("entries"), "{what}"),
        Err(other) => panic!("expected Corrupted, got {other}"),
        Ok(opened) => panic!(
            "opened a store of 2^57 entries in 12 KiB: entries {:?}",
            opened.entries()
        ),
    }
}

#[test]
fn crafted_store_open_of_another_kind_is_wrong_kind() {
    let object = Shared::<u64>::create(Location::Private, 7).unwrap();
    let _object_guard = RemoveOnDrop(Segment::from_id(id_of(object.location())).unwrap());
    let ring = SpscRing::<u64>::create(Location::Private, 8).unwrap();
    let _ring_guard = RemoveOnDrop(Segment::from_id(id_of(ring.location())).unwrap());
    let mpmc = MpmcRing::<u64>::create(Location::Private, 1024).unwrap();
    let _mpmc_guard = RemoveOnDrop(Segment::from_id(id_of(mpmc.location())).unwrap());
    for (location, kind) in [
        (object.location(), "object"),
        (ring.location(), "spsc ring"),
        (mpmc.location(), "mpmc ring"),
    ] {
        match Store::open(location.clone()) {
            Err(Error::WrongKind {
                expected, found, ..
            }) => assert_eq!((expected.as_str(), found.as_str()), ("store", kind)),
            other => panic!("{kind}: expected WrongKind, got {other:?}"),
        }
    }
}

#[test]
fn crafted_store_entries_of_a_300_byte_segment_is_an_error() {
    let (store, _guard) = private_store(4, 0);
    let mut header = [0u8; 300];
    mapping_of(store.region()).read_at(0, &mut header).unwrap();
    let small = Segment::create_private(300).unwrap();
    let _small_guard = RemoveOnDrop(Segment::from_id(small.id()).unwrap());
    let mapping = small.attach().unwrap();
    mapping.write_at(0, &header).unwrap();
    // A directory whose end, rounded up to a page, wraps to 0: "fits" anywhere.
    write_u64(&mapping, CAPACITY, (1 << 57) - 5);
    let error = store_entries(Region::from_mapping(mapping)).unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
}

/// Pushes until the ring reports Corrupted; fails if it never does within
/// `limit` pushes (or a push panics, which fails the test as well).
fn push_until_corrupted<const WAKE: bool>(ring: &SpscRing<u64, WAKE>, limit: u64) -> Error {
    let mut producer = match ring.producer() {
        Ok(producer) => producer,
        Err(error) => return error,
    };
    for value in 0..limit {
        match producer.push(value) {
            Ok(()) | Err(PushError::Full(_)) => {}
            Err(PushError::Corrupted(_, corrupted)) => return corrupted.into_error(),
            Err(PushError::Timeout(_)) => unreachable!("push never waits"),
        }
    }
    panic!("{limit} pushes without an error");
}

#[test]
fn crafted_spsc_head_and_tail_near_u64_max_report_corrupted_in_every_profile() {
    fn check<const WAKE: bool>(ring: SpscRing<u64, WAKE>, guard: RemoveOnDrop) {
        let mapping = guard.attach().unwrap();
        write_u64(&mapping, FIRST_INDEX, u64::MAX - 2);
        write_u64(&mapping, SECOND_INDEX, u64::MAX - 2);
        let error = push_until_corrupted(&ring, 3);
        assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
        assert!(matches!(ring.positions(), Err(Error::Corrupted { .. })));
        assert!(matches!(ring.len(), Err(Error::Corrupted { .. })));
        assert!(matches!(ring.consumer(), Err(Error::Corrupted { .. })));
    }
    let ring = SpscRing::<u64>::create(Location::Private, 8).unwrap();
    let guard = RemoveOnDrop(Segment::from_id(id_of(ring.location())).unwrap());
    check(ring, guard);
    let ring = SpinningSpscRing::<u64>::create_spinning(Location::Private, 8).unwrap();
    let guard = RemoveOnDrop(Segment::from_id(id_of(ring.location())).unwrap());
    check(ring, guard);
}

#[test]
fn crafted_spsc_positions_that_reach_u64_max_while_in_use_report_corrupted() {
    let ring = SpscRing::<u64>::create(Location::Private, 8).unwrap();
    let guard = RemoveOnDrop(Segment::from_id(id_of(ring.location())).unwrap());
    let mapping = guard.attach().unwrap();
    // Plausible at the claim, 20 positions below the top: the ring must stop
    // with Corrupted before a position passes u64::MAX.
    write_u64(&mapping, FIRST_INDEX, u64::MAX - 20);
    write_u64(&mapping, SECOND_INDEX, u64::MAX - 20);
    let mut producer = ring.producer().unwrap();
    let mut consumer = ring.consumer().unwrap();
    let mut out = [0u64; 8];
    let mut delivered = Vec::new();
    let error = 'stream: {
        for round in 0..10u64 {
            let batch: Vec<u64> = (round * 8..round * 8 + 8).collect();
            match producer.push_slice(&batch) {
                Ok(_) => {}
                Err(corrupted) => break 'stream corrupted.into_error(),
            }
            match consumer.pop_into(&mut out) {
                Ok(count) => delivered.extend_from_slice(&out[..count]),
                Err(corrupted) => break 'stream corrupted.into_error(),
            }
        }
        panic!("80 positions past u64::MAX - 20 without an error");
    };
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
    // Everything delivered before that came in order.
    assert!(delivered.iter().copied().eq(0..delivered.len() as u64));
    assert!(delivered.len() >= 8, "{delivered:?}");
}

#[test]
fn crafted_mpmc_positions_wrap_past_u64_max_in_order() {
    let capacity = 8u64;
    let ring = MpmcRing::<u64>::create(Location::Private, capacity).unwrap();
    let guard = RemoveOnDrop(Segment::from_id(id_of(ring.location())).unwrap());
    let mapping = guard.attach().unwrap();
    // Positions are compared modulo 2^64 on purpose (the sequence protocol):
    // a consistent ring just below the top keeps working across the wrap.
    let start = u64::MAX - 2;
    write_u64(&mapping, FIRST_INDEX, start);
    write_u64(&mapping, SECOND_INDEX, start);
    let stride = 32; // 16 bytes of sequence and padding, a u64, rounded to 16
    for position in (0..capacity).map(|k| start.wrapping_add(k)) {
        let slot = (position % capacity) as usize;
        write_u64(&mapping, PAYLOAD_OFFSET + 384 + slot * stride, position);
    }
    for value in 0..5 {
        ring.push(value).unwrap();
    }
    assert_eq!(ring.len(), 5);
    for value in 0..5 {
        assert_eq!(ring.pop().unwrap(), Some(value));
    }
    assert_eq!(ring.pop().unwrap(), None);
    assert_eq!(ring.len(), 0);
}

/// A raw System V segment of `len` bytes holding `bytes` at its start.
fn raw_segment(len: usize, bytes: &[u8]) -> (RemoveOnDrop, Mapping) {
    let segment = Segment::create_private(len).unwrap();
    let guard = RemoveOnDrop(segment);
    let mapping = guard.attach().unwrap();
    mapping.write_at(0, &bytes[..bytes.len().min(len)]).unwrap();
    (guard, mapping)
}

/// The first `len` bytes (at most the whole segment) of a fresh store of
/// `entries` records with an object "first" and a ring "second".
fn store_bytes(entries: u64, len: usize) -> Vec<u8> {
    let (store, _guard) = private_store(entries, 1 << 15);
    store.object::<u64>("first", 1).unwrap();
    store.spsc::<u64>("second", 8).unwrap();
    let mapping = mapping_of(store.region());
    let mut bytes = vec![0u8; len.min(mapping.len())];
    mapping.read_at(0, &mut bytes).unwrap();
    bytes
}

/// Directory record fields.
fn record(name: &[u8], name_len: u8, kind: u8, offset: u64, len: u64) -> [u8; 128] {
    let mut record = [0u8; 128];
    let cut = name.len().min(48);
    record[..cut].copy_from_slice(&name[..cut]);
    record[48] = name_len;
    record[49] = kind;
    record[56..64].copy_from_slice(&offset.to_ne_bytes());
    record[64..72].copy_from_slice(&len.to_ne_bytes());
    record
}

fn near_limits() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..64).prop_map(|k| u64::MAX - k),
        (0u64..64).prop_map(|k| (1u64 << 57).wrapping_sub(k)),
        (0u64..64).prop_map(|k| (1u64 << 63).wrapping_sub(k)),
        0u64..70_000,
        (0u64..16).prop_map(|k| k * 4096),
    ]
}

/// Mostly what a real store holds (`None`), sometimes a value near a limit.
fn mostly_real() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![2 => Just(None), 1 => near_limits().prop_map(Some)]
}

/// Offsets and lengths: whole pages near the start, or anything.
fn page_or_anything() -> impl Strategy<Value = u64> {
    prop_oneof![2 => (0u64..12).prop_map(|k| k * 4096), 1 => near_limits()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Store headers and directories with extreme values, opened through a real
    /// System V segment (the open path that maps by id and checks the OS's
    /// size) and through `store_entries` on a read-only attachment.
    #[test]
    fn crafted_store_segments_open_to_an_error_or_valid_entries(
        capacity in mostly_real(),
        segment_len in mostly_real(),
        count in prop_oneof![2 => (0u64..4).prop_map(Some), 1 => mostly_real()],
        arena_next in mostly_real(),
        slot in 0usize..3,
        name in prop::collection::vec(any::<u8>(), 0..48),
        name_len in prop_oneof![Just(None), any::<u8>().prop_map(Some)],
        kind in 0u8..8,
        offset in page_or_anything(),
        len in page_or_anything(),
        os_len in prop_oneof![3 => Just(None), 1 => (300usize..70_000).prop_map(Some)],
    ) {
        let mut bytes = store_bytes(8, usize::MAX);
        let os_len = os_len.unwrap_or(bytes.len());
        let mut put = |offset: usize, value: Option<u64>| {
            if let Some(value) = value {
                bytes[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
            }
        };
        put(CAPACITY, capacity);
        put(SEGMENT_LEN, segment_len);
        put(PAYLOAD_SIZE, segment_len.map(|len| len.wrapping_sub(384)));
        put(COUNT, count);
        put(ARENA_NEXT, arena_next);
        let name_len = name_len.unwrap_or(name.len() as u8);
        let at = DIRECTORY + slot * 128;
        bytes[at..at + 128].copy_from_slice(&record(&name, name_len, kind, offset, len));
        let (guard, _mapping) = raw_segment(os_len, &bytes);
        let opened = Store::options()
            .init_timeout(Duration::from_millis(5))
            .lock_timeout(Some(Duration::from_millis(5)))
            .entry_lock_timeout(Some(Duration::from_millis(5)))
            .open(Location::Id(guard.id()));
        if let Ok(store) = opened {
            if let Ok(entries) = store.entries() {
                prop_assert!(entries.len() as u64 <= capacity.unwrap_or(8));
            }
            if let Ok(first) = store.get_object::<u64>("first") {
                let _ = first.load();
            }
            if let Ok(made) = store.object::<u64>("made-here", 3) {
                prop_assert_eq!(made.load().ok(), Some(3));
            }
            if let Ok(ring) = store.get_spsc::<u64>("second", 8) {
                let _ = ring.len();
            }
            let _ = store.mpmc::<u64>("another", 16);
        }
        let read_only = guard.attach_read_only().unwrap();
        if let Ok(entries) = store_entries(Region::from_mapping(read_only)) {
            prop_assert!(entries.len() as u64 <= capacity.unwrap_or(8));
        }
    }
}

#[test]
fn crafted_store_in_a_posix_object_opens_to_an_error() {
    let name = unique_name("crafted-store");
    let object = PosixSegment::create(&name, 4096).unwrap();
    let _unlink = UnlinkOnDrop(name.clone());
    let mapping = object.map().unwrap();
    let mut bytes = store_bytes(4, 4096);
    bytes[CAPACITY..CAPACITY + 8].copy_from_slice(&((1u64 << 57) - 5).to_ne_bytes());
    bytes[COUNT..COUNT + 8].copy_from_slice(&1000u64.to_ne_bytes());
    mapping.write_at(0, &bytes).unwrap();
    let error = Store::open(Location::posix(&name)).unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
    let read_only = PosixSegment::open_read_only(&name).unwrap();
    let error =
        store_entries(Region::from_mapping(read_only.map_read_only().unwrap())).unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
}
