//! The real `shm` binary on crafted segments: store headers and directories,
//! ring indices and header fields holding values near the integer limits, in
//! System V segments (IPC_PRIVATE) and POSIX objects (names unique to the
//! run). `shm inspect` and `shm ls` must exit 0 or with a one-line error,
//! never with a panic (exit code 101). Every segment is removed by a guard,
//! also when the test fails.

use std::process::Command;

use shm_sys::posix::PosixSegment;
use shm_sys::sysv::Segment;
use shm_sys::Mapping;
use shm_typed::format::PAYLOAD_OFFSET;
use shm_typed::{Location, Region, SpscRing, Store};

/// Removes a System V segment when dropped, also on panic.
struct RemoveOnDrop(Segment);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

/// Unlinks a POSIX object when dropped, also on panic.
struct UnlinkOnDrop(String);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let _ = PosixSegment::unlink(&self.0);
    }
}

/// Header fields and store words (offsets from the segment start).
const KIND: usize = 12;
const STATE: usize = 16;
const BYTE_ORDER: usize = 20;
const SEGMENT_LEN: usize = 24;
const CAPACITY: usize = 56;
const TYPE_NAME_LEN: usize = 73;
const TYPE_NAME: usize = 80;
const LOCK_WORD: usize = 256;
const COUNT: usize = PAYLOAD_OFFSET;
const DIRECTORY: usize = PAYLOAD_OFFSET + 128;

fn id_of(location: &Location) -> i32 {
    match *location {
        Location::Id(id) => id,
        ref other => panic!("private segments are found by id, not {other}"),
    }
}

fn mapping_of(region: &Region) -> &Mapping {
    region.mapping().expect("a System V segment")
}

/// The first `len` bytes of a real store with two entries.
fn store_bytes(len: usize) -> Vec<u8> {
    let store = Store::create(Location::Private, 8, 1 << 15).unwrap();
    let _guard = RemoveOnDrop(Segment::from_id(id_of(store.location())).unwrap());
    store.object::<u64>("first", 1).unwrap();
    store.spsc::<u64>("second", 8).unwrap();
    let mut bytes = vec![0u8; len];
    mapping_of(store.region()).read_at(0, &mut bytes).unwrap();
    bytes
}

/// The first `len` bytes of a real SPSC ring of 8 `u64`.
fn ring_bytes(len: usize) -> Vec<u8> {
    let ring = SpscRing::<u64>::create(Location::Private, 8).unwrap();
    let _guard = RemoveOnDrop(Segment::from_id(id_of(ring.location())).unwrap());
    let mapping = mapping_of(ring.region());
    let mut bytes = vec![0u8; len];
    let whole = len.min(mapping.len());
    mapping.read_at(0, &mut bytes[..whole]).unwrap();
    bytes
}

fn put(bytes: &mut [u8], offset: usize, data: &[u8]) {
    bytes[offset..offset + data.len()].copy_from_slice(data);
}

/// A directory record.
fn record(name: &[u8], kind: u8, offset: u64, len: u64) -> Vec<u8> {
    let mut record = vec![0u8; 128];
    record[..name.len()].copy_from_slice(name);
    record[48] = name.len() as u8;
    record[49] = kind;
    put(&mut record, 56, &offset.to_ne_bytes());
    put(&mut record, 64, &len.to_ne_bytes());
    record
}

/// (label, segment length, bytes): the crafted contents.
fn crafted_contents() -> Vec<(&'static str, usize, Vec<u8>)> {
    let store = store_bytes(4096);
    let ring = ring_bytes(4096);
    let with = |base: &[u8], changes: &[(usize, &[u8])]| {
        let mut bytes = base.to_vec();
        for (offset, data) in changes {
            put(&mut bytes, *offset, data);
        }
        bytes
    };
    let huge_record = record(b"anywhere", 1, u64::MAX - 4095, u64::MAX);
    let wrapping_record = record(b"wraps", 2, 1 << 63, 1 << 63);
    vec![
        (
            "store of 2^57 - 5 entries (the arena start wraps)",
            4096,
            with(
                &store,
                &[
                    (CAPACITY, &((1u64 << 57) - 5).to_ne_bytes()),
                    (COUNT, &1000u64.to_ne_bytes()),
                ],
            ),
        ),
        (
            "store of u64::MAX entries",
            4096,
            with(
                &store,
                &[
                    (CAPACITY, &u64::MAX.to_ne_bytes()),
                    (COUNT, &u64::MAX.to_ne_bytes()),
                ],
            ),
        ),
        (
            "store count above its capacity",
            4096,
            with(&store, &[(COUNT, &1000u64.to_ne_bytes())]),
        ),
        (
            "store records pointing past the end",
            4096,
            with(
                &store,
                &[
                    (DIRECTORY, &huge_record),
                    (DIRECTORY + 128, &wrapping_record),
                ],
            ),
        ),
        ("store header in 300 bytes", 300, store[..300].to_vec()),
        (
            "store that claims u64::MAX bytes",
            4096,
            with(&store, &[(SEGMENT_LEN, &u64::MAX.to_ne_bytes())]),
        ),
        (
            "ring with indices near u64::MAX",
            4096,
            with(
                &ring,
                &[
                    (PAYLOAD_OFFSET, &(u64::MAX - 2).to_ne_bytes()),
                    (PAYLOAD_OFFSET + 128, &u64::MAX.to_ne_bytes()),
                ],
            ),
        ),
        (
            "ring with a wrapped fill level",
            4096,
            with(
                &ring,
                &[
                    (PAYLOAD_OFFSET, &1u64.to_ne_bytes()),
                    (PAYLOAD_OFFSET + 128, &u64::MAX.to_ne_bytes()),
                ],
            ),
        ),
        (
            "type name of 255 bytes, not UTF-8",
            4096,
            with(&ring, &[(TYPE_NAME_LEN, &[255]), (TYPE_NAME, &[0xff; 64])]),
        ),
        (
            "unknown kind, state and byte order; lock held by init",
            4096,
            with(
                &store,
                &[
                    (KIND, &u32::MAX.to_ne_bytes()),
                    (STATE, &u32::MAX.to_ne_bytes()),
                    (BYTE_ORDER, &0x0403_0201u32.to_ne_bytes()),
                    (LOCK_WORD, &(1u32 | 1 << 31).to_ne_bytes()),
                ],
            ),
        ),
    ]
}

/// Runs `shm` and checks that it did not panic: exit 0, or 1 with one
/// `shm: ...` line on stderr. Returns stdout.
fn run_cleanly(args: &[&str], label: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_shm"))
        .args(args)
        .output()
        .expect("running shm");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "shm {args:?} on {label}: panicked:\n{stderr}"
    );
    match output.status.code() {
        Some(0) => {}
        Some(1) => assert!(
            stderr.starts_with("shm: ") && stderr.lines().count() == 1,
            "shm {args:?} on {label}: unclear error {stderr:?}"
        ),
        other => panic!("shm {args:?} on {label}: exit {other:?}\n{stderr}"),
    }
    stdout
}

#[test]
fn crafted_segments_are_inspected_and_listed_without_a_panic() {
    let mut segments = Vec::new();
    let mut names = Vec::new();
    let mut mappings = Vec::new();
    for (index, (label, len, bytes)) in crafted_contents().into_iter().enumerate() {
        // System V: kept attached while shm looks at it.
        let segment = RemoveOnDrop(Segment::create_private(len).unwrap());
        let mapping = segment.0.attach().unwrap();
        mapping.write_at(0, &bytes[..len.min(bytes.len())]).unwrap();
        let stdout = run_cleanly(&["inspect", &segment.0.id().to_string()], label);
        assert!(stdout.contains("System V segment"), "{label}: {stdout}");
        segments.push(segment);
        mappings.push(mapping);

        // POSIX: the same bytes in an object of the same size.
        let name = format!("/shm-cli-crafted-{}-{index}", std::process::id());
        let object = PosixSegment::create(&name, len).unwrap();
        names.push((UnlinkOnDrop(name.clone()), len));
        let mapping = object.map().unwrap();
        mapping.write_at(0, &bytes[..len.min(bytes.len())]).unwrap();
        let stdout = run_cleanly(&["inspect", &name], label);
        assert!(stdout.contains("POSIX object"), "{label}: {stdout}");
        mappings.push(mapping);
    }
    let table = run_cleanly(&["ls"], "every crafted segment");
    for segment in &segments {
        let id = segment.0.id().to_string();
        assert!(
            table
                .lines()
                .any(|line| line.split_whitespace().nth(1) == Some(&id)),
            "segment {id} missing from shm ls:\n{table}"
        );
    }
    // POSIX objects are listed when they hold a header of ours.
    for (name, _) in names.iter().filter(|(_, len)| *len >= PAYLOAD_OFFSET) {
        assert!(
            table.contains(&name.0),
            "{} missing from shm ls:\n{table}",
            name.0
        );
    }
    run_cleanly(&["ls", "--json"], "every crafted segment");
}
