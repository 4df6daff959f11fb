//! Writes seed corpora from real segments made by the library in heap
//! regions: `fuzz/corpus/<target>/seed-*` (or under the directory given as the
//! first argument). Run by `.ci/fuzz`.

#[path = "../../drive.rs"]
mod drive;

use std::path::PathBuf;

use drive::{region_bytes, with_script};
use shm_typed::{MpmcRing, Region, Shared, SpinningSpscRing, SpscRing, Store};

/// Segments of every kind, with some items pushed: (name, bytes).
fn segments() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let object = Shared::<u64>::options()
        .create_in(Region::heap(4096), 42)
        .expect("object");
    out.push(("object-u64".into(), region_bytes(object.region())));
    let blob = Shared::<[u8; 64]>::options()
        .create_in(Region::heap(4096), [7; 64])
        .expect("blob");
    out.push(("object-u8x64".into(), region_bytes(blob.region())));

    for pushed in [0u64, 3, 8] {
        let spsc = SpscRing::<u64>::create_in(Region::heap(4096), 8).expect("spsc");
        {
            let mut producer = spsc.producer().expect("producer");
            for value in 0..pushed {
                producer.push(value).expect("room");
            }
        }
        out.push((format!("spsc-{pushed}"), region_bytes(spsc.region())));

        let spinning =
            SpinningSpscRing::<u64>::create_spinning_in(Region::heap(4096), 8).expect("spinning");
        {
            let mut producer = spinning.producer().expect("producer");
            for value in 0..pushed {
                producer.push(value).expect("room");
            }
        }
        out.push((format!("spinning-{pushed}"), region_bytes(spinning.region())));

        let mpmc = MpmcRing::<u64>::create_in(Region::heap(4096), 8).expect("mpmc");
        for value in 0..pushed {
            mpmc.push(value).expect("room");
        }
        out.push((format!("mpmc-{pushed}"), region_bytes(mpmc.region())));
    }
    out
}

/// A store with one entry of each kind.
fn store_segment() -> Vec<u8> {
    let store = Store::create_in(Region::heap(8 * 4096), 4).expect("store");
    store.object::<u64>("counter", 5).expect("object");
    store.object::<[u8; 64]>("blob", [1; 64]).expect("blob");
    let ticks = store.spsc::<u64>("ticks", 8).expect("spsc");
    ticks.producer().expect("producer").push(11).expect("room");
    drop(ticks);
    let jobs = store.mpmc::<u64>("jobs", 8).expect("mpmc");
    jobs.push(12).expect("room");
    drop(jobs);
    region_bytes(store.region())
}

/// Schema blocks of derived types: nested structs, arrays, enums.
fn schema_blocks() -> Vec<(&'static str, Vec<u8>)> {
    use shm_typed::schema::{encode, ShmType};

    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(u8)]
    enum Side {
        Buy = 1,
        Sell,
    }

    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    struct Point {
        x: f32,
        y: f32,
    }

    #[derive(Clone, Copy, shm_typed::ShmType)]
    #[repr(C)]
    #[shm(extensible)]
    struct Tick {
        price: f64,
        qty: u32,
        side: Side,
        flags: [u8; 3],
        path: [Point; 4],
    }

    vec![
        ("u64", encode(&u64::descriptor())),
        ("tick", encode(&Tick::descriptor())),
        ("matrix", encode(&<[[i16; 3]; 2]>::descriptor())),
    ]
}

/// Scripts for the `rings` target (see `drive::rings`).
fn scripts() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("none", vec![]),
        ("ops", vec![0, 1, 2, 9, 0, 3, 4, 1, 0, 6, 7, 0, 11, 12]),
        // Pokes at the tail/head lines (offsets 384 and 512, in words 48, 64).
        ("poke", vec![2, 1, 0, 5, 48, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 1, 0, 5, 64, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 3, 4]),
    ]
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed");
    };
    let store = store_segment();
    write("store", "store", &store);
    write("describe", "store", &store);
    write("header", "store", &store);
    let mut count = 3;
    for (name, bytes) in schema_blocks() {
        write("schema", name, &bytes);
        count += 1;
    }
    for (name, bytes) in segments() {
        write("header", &name, &bytes);
        write("describe", &name, &bytes);
        count += 2;
        if !name.starts_with("object") {
            for (script_name, script) in scripts() {
                write("rings", &format!("{name}-{script_name}"), &with_script(&script, &bytes));
                count += 1;
            }
        }
    }
    println!("wrote {count} seeds under {}", root.display());
}
