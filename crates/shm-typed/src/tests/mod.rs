//! Header, init protocol and `Shared<T>` over heap regions: no OS needed, so
//! these run under Miri too.

use std::time::Duration;

use crate::format::{Header, State, PAYLOAD_OFFSET};
use crate::{Error, Region, Shared, SharedOptions};

/// Crafted segments: property tests with values near the integer limits.
#[cfg(not(miri))]
mod crafted;
#[cfg(loom)]
mod loom;
#[cfg(loom)]
mod loom_lock;
mod mpmc_model;
mod spsc_model;

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Sample {
    a: u64,
    b: [u32; 6],
}

const SAMPLE: Sample = Sample {
    a: 7,
    b: [1, 2, 3, 4, 5, 6],
};

fn options() -> SharedOptions<Sample> {
    Shared::<Sample>::options().init_timeout(Duration::from_millis(20))
}

fn fresh() -> Region {
    let shared = options()
        .create_in(Region::heap(PAYLOAD_OFFSET + 32), SAMPLE)
        .unwrap();
    shared.into_region()
}

#[test]
fn create_then_open_round_trips_value_and_header() {
    let region = fresh();
    let header = Header::read_from(&region).unwrap();
    assert_eq!(header.state(), Some(State::Ready));
    assert_eq!(header.type_description().name, "Sample");
    assert_eq!(header.layout.element_size, 32);
    let shared = options().open_in(region).unwrap();
    assert_eq!(shared.load().unwrap(), SAMPLE);
    shared.update(|s| s.a += 1).unwrap();
    assert_eq!(shared.load().unwrap().a, 8);
    let mut guard = shared.lock().unwrap();
    assert!(!guard.owner_died());
    guard.b[0] = 100;
    drop(guard);
    assert_eq!(shared.load().unwrap().b[0], 100);
}

#[test]
fn blank_region_is_uninitialised_and_times_out() {
    let err = options()
        .open_in(Region::heap(PAYLOAD_OFFSET + 32))
        .unwrap_err();
    assert!(
        matches!(err, Error::InitTimeout { creator: None, .. }),
        "{err:?}"
    );
}

#[test]
fn creating_in_a_region_twice_is_refused() {
    let region = fresh();
    let err = options().create_in(region, SAMPLE).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");
}

#[test]
fn region_too_small_for_the_payload_is_refused() {
    let err = options()
        .create_in(Region::heap(PAYLOAD_OFFSET + 8), SAMPLE)
        .unwrap_err();
    assert!(matches!(err, Error::TooSmall { .. }), "{err:?}");
    let err = options().open_in(Region::heap(100)).unwrap_err();
    assert!(matches!(err, Error::TooSmall { found: 100, .. }), "{err:?}");
}

/// A header field to overwrite, its new bytes, and the error that must follow.
type Corruption<'a> = (usize, &'a [u8], fn(&Error) -> bool);

#[test]
fn each_header_check_has_its_own_error() {
    let cases: [Corruption<'_>; 7] = [
        (0, b"XXXXXXXX", |e| matches!(e, Error::BadMagic { .. })),
        (8, &99u32.to_ne_bytes(), |e| {
            matches!(e, Error::UnsupportedVersion { found: 99, .. })
        }),
        (20, &0x0403_0201u32.to_ne_bytes(), |e| {
            matches!(e, Error::IncompatiblePlatform { .. })
        }),
        (12, &2u32.to_ne_bytes(), |e| {
            matches!(e, Error::WrongKind { .. })
        }),
        (64, &1u64.to_ne_bytes(), |e| {
            matches!(e, Error::TypeMismatch { .. })
        }),
        (24, &(1u64 << 40).to_ne_bytes(), |e| {
            matches!(e, Error::LengthMismatch { .. })
        }),
        (40, &9u64.to_ne_bytes(), |e| {
            matches!(e, Error::Corrupted { .. })
        }),
    ];
    for (offset, bytes, expected) in cases {
        let region = fresh();
        region.write_bytes(offset, bytes);
        let err = options().open_in(region).unwrap_err();
        assert!(expected(&err), "offset {offset}: {err:?}");
    }
}

#[test]
fn unknown_state_is_corrupted_and_initializing_waits() {
    let region = fresh();
    region.write_bytes(16, &9u32.to_ne_bytes());
    let err = options().open_in(region).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");

    let region = fresh();
    region.write_bytes(16, &State::Initializing.code().to_ne_bytes());
    let err = options().open_in(region).unwrap_err();
    // Miri calls every task alive; the real liveness check finds this process.
    assert!(matches!(err, Error::InitTimeout { .. }), "{err:?}");
}

#[test]
fn guard_dropped_after_owner_died_poisons_until_reset() {
    let region = fresh();
    // A holder that will never come back: tid 0 is never a live task.
    region.write_bytes(crate::format::LOCK_OFFSET, &(1u32 << 31).to_ne_bytes());
    let shared = options().open_in(region).unwrap();
    let guard = shared.lock().unwrap();
    assert!(guard.owner_died());
    drop(guard);
    assert!(matches!(shared.lock(), Err(Error::Poisoned { .. })));
    shared.reset_poison().unwrap();
    let mut guard = shared.lock().unwrap();
    assert!(!guard.owner_died());
    guard.a = 1;
}

#[test]
fn threads_sharing_one_value_count_exactly() {
    let shared = options()
        .create_in(Region::heap(PAYLOAD_OFFSET + 32), SAMPLE)
        .unwrap();
    let rounds = if cfg!(miri) { 20 } else { 10_000 };
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..rounds {
                    shared.update(|s| s.a += 1).unwrap();
                }
            });
        }
    });
    assert_eq!(shared.load().unwrap().a, SAMPLE.a + 3 * rounds);
}

/// Random bytes over each header field in turn: opening gives an error or a valid
/// handle, never a panic, a hang or an out-of-bounds access.
#[cfg(not(miri))]
mod fuzz {
    use super::*;
    use crate::format::HEADER_SIZE;
    use proptest::prelude::*;

    /// (offset, length) of every header field, lock and payload included.
    const FIELDS: &[(usize, usize)] = &[
        (0, 8),
        (8, 4),
        (12, 4),
        (16, 4),
        (20, 4),
        (24, 8),
        (32, 8),
        (40, 8),
        (48, 4),
        (52, 4),
        (56, 8),
        (64, 8),
        (72, 1),
        (73, 1),
        (74, 6),
        (80, 64),
        (144, 4),
        (148, 4),
        (152, 8),
        (160, 8),
        (168, 88),
        (256, 4),
        (260, 4),
        (264, 8),
        (272, 8),
        (280, 8),
    ];

    proptest! {
        // 2000 cases, or more through PROPTEST_CASES (.ci/long).
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000).max(2000)
        ))]

        #[test]
        fn random_bytes_in_any_header_field_never_panic(
            field in prop::sample::select(FIELDS),
            noise in prop::collection::vec(any::<u8>(), 88),
        ) {
            let (offset, len) = field;
            let region = fresh();
            region.write_bytes(offset, &noise[..len]);
            let opened = Shared::<Sample>::options()
                .init_timeout(Duration::from_millis(5))
                .lock_timeout(Some(Duration::from_millis(50)))
                .open_in(region);
            if let Ok(shared) = opened {
                // A valid open: the value and the lock must work or fail cleanly
                // (the lock word may name a random task).
                match shared.lock() {
                    Ok(guard) => prop_assert_eq!(guard.b, SAMPLE.b),
                    Err(error) => prop_assert!(matches!(
                        error,
                        Error::LockTimeout { .. } | Error::Poisoned { .. }
                            | Error::ForeignNamespace { .. }
                    ), "{:?}", error),
                }
                let header = Header::read_from(shared.region()).unwrap();
                prop_assert_eq!(header.layout.element_size, 32);
            }
        }
    }

    #[test]
    fn header_size_is_what_the_docs_say() {
        assert_eq!(HEADER_SIZE, 256);
        assert_eq!(PAYLOAD_OFFSET, 384);
    }
}

/// The first `len` bytes of a fresh store (header, lock, control words and
/// directory) copied into a heap region of exactly `len` bytes.
fn store_prefix(len: usize) -> Region {
    let store = crate::Store::create_in(Region::heap(1 << 16), 4).unwrap();
    store.object::<u64>("first", 1).unwrap();
    let mut bytes = vec![0u8; len];
    store.region().read_bytes(0, &mut bytes);
    let region = Region::heap(len);
    region.write_bytes(0, &bytes);
    region
}

#[test]
fn crafted_store_entries_of_a_300_byte_region_is_an_error() {
    let region = store_prefix(300);
    // A directory whose end, rounded up to a page, wraps to 0: "fits" anywhere.
    region.write_bytes(56, &((1u64 << 57) - 5).to_ne_bytes());
    let error = crate::store_entries(region).unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
}
