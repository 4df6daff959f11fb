//! `Store` across processes: 100 entries of mixed kinds made by one process are
//! read back, type-checked, by another; a wrong type is an error that names the
//! entry, the expected type and the found type.

mod support;

use shm_sys::sysv::Segment;
use shm_typed::{Error, Location, Store};
use support::{Peer, RemoveOnDrop};

#[test]
fn another_process_reads_100_mixed_entries_with_type_checks() {
    let store = Store::create(Location::Private, 128, 4 << 20).expect("store");
    let Location::Id(id) = *store.location() else {
        panic!("private stores are found by id")
    };
    let _guard = RemoveOnDrop(Segment::from_id(id).unwrap());
    for index in 0..100u64 {
        let name = format!("entry-{index}");
        match index % 5 {
            0 => drop(store.object::<u64>(&name, index).unwrap()),
            1 => drop(store.object::<[u32; 4]>(&name, [index as u32; 4]).unwrap()),
            2 => drop(store.object::<f64>(&name, index as f64 / 2.0).unwrap()),
            3 => {
                let ring = store.spsc::<u64>(&name, 16).unwrap();
                ring.producer().unwrap().push(index).unwrap();
            }
            _ => store.mpmc::<u64>(&name, 16).unwrap().push(index).unwrap(),
        }
    }
    let entries = store.entries().unwrap();
    assert_eq!(entries.len(), 100);
    assert_eq!(entries[1].type_name, "[u32; 4]");
    assert_eq!(
        (entries[3].kind.name(), entries[3].capacity),
        ("spsc ring", 16)
    );

    let mut peer = Peer::start(&["store-check", &id.to_string(), "100"]);
    assert_eq!(peer.expect_line("checked"), "checked 100");
    let error = peer.expect_line("error");
    peer.wait_success();
    assert!(
        error.contains("entry \"entry-0\""),
        "names the entry: {error}"
    );
    assert!(
        error.contains("`[u64; 2]` (16 bytes"),
        "names the expected type: {error}"
    );
    assert!(
        error.contains("`u64` (8 bytes"),
        "names the found type: {error}"
    );
}

#[test]
fn names_and_room_are_checked() {
    let store = Store::create(Location::Private, 2, 8192).expect("store");
    store.remove().unwrap(); // lives while mapped
    for bad in ["", "has space", "é", &"x".repeat(49)] {
        let err = store.object::<u64>(bad, 0).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err:?}");
    }
    store.object::<u64>("a", 1).unwrap();
    // The arena (8 KiB) holds two 4 KiB entries; a large ring does not fit.
    let err = store.spsc::<u64>("big", 4096).unwrap_err();
    assert!(matches!(err, Error::StoreFull { .. }), "{err:?}");
    assert!(err.to_string().contains("\"big\""), "{err}");
    store.object::<u64>("b", 2).unwrap();
    let err = store.object::<u64>("c", 3).unwrap_err();
    assert!(matches!(err, Error::StoreFull { .. }), "{err:?}");
    assert!(matches!(
        store.get_object::<u64>("nope"),
        Err(Error::EntryNotFound { .. })
    ));
    // Kind mismatch: an object opened as a ring.
    let err = store.spsc::<u64>("a", 16).unwrap_err();
    assert!(matches!(err, Error::Entry { .. }), "{err:?}");
    assert_eq!(store.object::<u64>("a", 0).unwrap().load().unwrap(), 1);
}
