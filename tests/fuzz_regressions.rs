//! Replays the fuzzers' minimised crash inputs (fuzz/regressions/<target>/)
//! through the same drive functions the fuzz targets call (fuzz/drive.rs,
//! included, not copied), and checks that freshly made valid segments of each
//! kind open through them: a drive function that silently stopped opening
//! anything would make the fuzzers useless. Heap regions only.

#[path = "../fuzz/drive.rs"]
mod drive;

use std::path::Path;

use shm_typed::{MpmcRing, Region, Shared, SpinningSpscRing, SpscRing, Store};

/// Runs every file under fuzz/regressions/<target>/ through `drive`.
fn replay(target: &str, drive: fn(&[u8]) -> usize) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if !path.is_file() || path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("regression input");
        eprintln!("replaying {}", path.display());
        drive(&bytes);
        replayed += 1;
    }
    replayed
}

#[test]
fn fuzz_regressions_replay_without_panic() {
    let replayed = replay("header", drive::header)
        + replay("store", drive::store)
        + replay("rings", drive::rings)
        + replay("describe", drive::describe)
        + replay("schema", drive::schema);
    eprintln!("{replayed} regression inputs replayed");
}

#[test]
fn fuzz_drive_decodes_valid_schema_blocks() {
    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    struct Pair {
        a: u32,
        b: [f32; 2],
    }
    let block = shm_typed::schema::encode(&<Pair as shm_typed::schema::ShmType>::descriptor());
    assert_eq!(drive::schema(&block), 1, "a real block decodes");
    assert_eq!(
        drive::schema(&block[..block.len() - 1]),
        0,
        "a cut one does not"
    );
}

#[test]
fn fuzz_drive_opens_valid_objects() {
    let object = Shared::<u64>::options()
        .create_in(Region::heap(4096), 42)
        .unwrap();
    let bytes = drive::region_bytes(object.region());
    // Shared<u64> only: not [u8; 64], not a ring.
    assert_eq!(drive::header(&bytes), 1);
    assert_eq!(drive::describe(&bytes), 1, "described; not unready");

    let blob = Shared::<[u8; 64]>::options()
        .create_in(Region::heap(4096), [3; 64])
        .unwrap();
    assert_eq!(drive::header(&drive::region_bytes(blob.region())), 1);
}

#[test]
fn fuzz_drive_opens_valid_rings() {
    let spsc = SpscRing::<u64>::create_in(Region::heap(4096), 8).unwrap();
    spsc.producer().unwrap().push(1).unwrap();
    let spinning = SpinningSpscRing::<u64>::create_spinning_in(Region::heap(4096), 8).unwrap();
    spinning.producer().unwrap().push(1).unwrap();
    let mpmc = MpmcRing::<u64>::create_in(Region::heap(4096), 8).unwrap();
    mpmc.push(1).unwrap();
    for region in [spsc.region(), spinning.region(), mpmc.region()] {
        let bytes = drive::region_bytes(region);
        assert_eq!(drive::header(&bytes), 1, "exactly its own kind opens");
        assert_eq!(drive::describe(&bytes), 1);
        // No script: the open, and for SPSC both sides claimed.
        let opened = drive::rings(&drive::with_script(&[], &bytes));
        assert!(opened >= 1, "{opened}");
        // A script of len, pop, push, batches: operations succeed.
        let script = [0, 1, 2, 5, 0, 3, 4, 0];
        let ran = drive::rings(&drive::with_script(&script, &bytes));
        assert!(ran > opened + 4, "{ran} after {opened}");
    }
}

#[test]
fn fuzz_drive_opens_a_valid_store_and_its_entries() {
    let store = Store::create_in(Region::heap(8 * 4096), 4).unwrap();
    store.object::<u64>("counter", 5).unwrap();
    store.spsc::<u64>("ticks", 8).unwrap();
    store.mpmc::<u64>("jobs", 8).unwrap();
    let bytes = drive::region_bytes(store.region());
    // store_entries (+1 as it is non-empty), open, entries, and one open per
    // entry (u64 of its own kind; the u32 and [u8; 64] opens must fail).
    assert_eq!(drive::store(&bytes), 2 + 1 + 1 + 3);
    assert_eq!(drive::describe(&bytes), 1);
}
