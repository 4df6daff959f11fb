//! Structural type identity across two programs: this test (one crate)
//! makes segments of its `Tick`, and `shm-schema-peer` (another crate,
//! compiled separately, another process) opens them with its own
//! definitions of `Tick`: the same one, and versions with two fields swapped,
//! a field renamed, retyped (u32 to f32) or reordered at the same size, an
//! older prefix and a newer extension. The same name, size and alignment
//! would pass the name check; the schema stored in the segment catches each,
//! naming the field. Every segment is removed by a guard, also on panic.

use std::process::Command;

use bytemuck::{Pod, Zeroable};
use shm_sys::sysv::Segment;
use shm_typed::{Location, MpmcRing, Shared, SpinningSpscRing, SpscRing, Store};

/// The writer's type.
#[derive(Clone, Copy, Debug, Pod, Zeroable, shm_typed::ShmType)]
#[repr(C)]
#[shm(extensible)]
struct Tick {
    a: u32,
    b: u32,
    c: f32,
    d: u32,
}

const TICK: Tick = Tick {
    a: 1,
    b: 2,
    c: 3.5,
    d: 4,
};
const CAPACITY: u64 = 8;

/// Removes the segment when the test ends, also on panic.
struct Remove(i32);

impl Drop for Remove {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::from_id(self.0) {
            let _ = segment.remove();
        }
    }
}

fn id_of(location: &Location) -> i32 {
    match location {
        Location::Id(id) => *id,
        other => panic!("expected a System V id, not {other:?}"),
    }
}

/// A fresh private segment of `kind` holding one `TICK`.
fn make(kind: &str) -> Remove {
    let location = match kind {
        "shared" | "shared-read-only" => Shared::create(Location::Private, TICK)
            .unwrap()
            .location()
            .clone(),
        "spsc" => {
            let ring = SpscRing::<Tick>::create(Location::Private, CAPACITY).unwrap();
            ring.producer().unwrap().push(TICK).unwrap();
            ring.location().clone()
        }
        "spinning" => {
            let ring =
                SpinningSpscRing::<Tick>::create_spinning(Location::Private, CAPACITY).unwrap();
            ring.producer().unwrap().push(TICK).unwrap();
            ring.location().clone()
        }
        "mpmc" => {
            let ring = MpmcRing::<Tick>::create(Location::Private, CAPACITY).unwrap();
            ring.push(TICK).unwrap();
            ring.location().clone()
        }
        "store-object" | "store-spsc" | "store-mpmc" => {
            let store = Store::create(Location::Private, 1 << 16, 4).unwrap();
            match kind {
                "store-object" => drop(store.object("tick", TICK).unwrap()),
                "store-spsc" => {
                    let ring = store.spsc::<Tick>("tick", CAPACITY).unwrap();
                    ring.producer().unwrap().push(TICK).unwrap();
                }
                _ => store
                    .mpmc::<Tick>("tick", CAPACITY)
                    .unwrap()
                    .push(TICK)
                    .unwrap(),
            }
            store.location().clone()
        }
        other => panic!("unknown kind {other}"),
    };
    Remove(id_of(&location))
}

/// What the peer printed when opening `segment` as `kind` with its `variant`.
fn peer(kind: &str, variant: &str, segment: &Remove) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_shm-schema-peer"))
        .args([kind, variant, &segment.0.to_string()])
        .output()
        .expect("run shm-schema-peer");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

const KINDS: [&str; 7] = [
    "shared",
    "spsc",
    "spinning",
    "mpmc",
    "store-object",
    "store-spsc",
    "store-mpmc",
];

#[test]
fn the_same_type_from_another_crate_interoperates_for_every_kind() {
    for kind in KINDS {
        let segment = make(kind);
        assert_eq!(
            peer(kind, "same", &segment),
            "ok a=1 b=2 c=3.5 d=4",
            "{kind}"
        );
    }
}

/// Each changed version is refused with the field named, for every kind.
#[test]
fn a_changed_field_is_a_schema_mismatch_naming_it_for_every_kind() {
    let cases = [
        (
            "swapped",
            "field b: offset 0 u32 here, offset 4 u32 in segment",
        ),
        (
            "renamed",
            "field bee: offset 4 u32 here, missing in segment",
        ),
        (
            "retyped",
            "field b: offset 4 f32 here, offset 4 u32 in segment",
        ),
        (
            "reordered",
            "field c: offset 0 f32 here, offset 8 f32 in segment",
        ),
    ];
    for kind in KINDS {
        for (variant, field) in cases {
            let segment = make(kind);
            let line = peer(kind, variant, &segment);
            assert!(
                line.starts_with("err ")
                    && line.contains("another Tick than ours")
                    && line.contains(field),
                "{kind} / {variant}: {line}"
            );
        }
    }
}

#[test]
fn an_older_prefix_reads_only_and_a_newer_type_is_refused() {
    let segment = make("shared");
    // The peer's Tick is the first three fields of ours: it may read them.
    assert_eq!(
        peer("shared-read-only", "prefix", &segment),
        "ok a=1 b=2 c=3.5"
    );
    // But not open for writing: it would not keep `d`.
    let line = peer("shared", "prefix", &segment);
    assert!(
        line.starts_with("err ") && line.contains("(d)") && line.contains("read-only"),
        "{line}"
    );
    // A type with a field the segment lacks is refused, read-only or not.
    for kind in ["shared", "shared-read-only"] {
        let line = peer(kind, "extended", &segment);
        assert!(
            line.starts_with("err ")
                && line.contains("field e: offset 16 u32 here, missing in segment"),
            "{kind}: {line}"
        );
    }
    // Rings keep one element size: a prefix is a mismatch there.
    let ring = make("spsc");
    let line = peer("spsc", "prefix", &ring);
    assert!(line.starts_with("err "), "{line}");
}
