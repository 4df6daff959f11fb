//! `shm ls --json` and `shm inspect --json` on the real binary are valid JSON
//! (checked by `python3 -m json.tool` and by serde_json) whatever the names
//! and type names hold: quotes, backslashes, control characters, non-ASCII.
//! Every kind (object, SPSC ring, spinning SPSC ring, MPMC ring, store) on
//! both backends (System V, POSIX).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{run_ok, unique, RemoveSysv, UnlinkPosix};
use serde_json::Value;
use shm_typed::{Location, MpmcRing, Region, Shared, SpinningSpscRing, SpscRing, Store};

/// An element type whose Rust name is not ASCII.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Größe {
    value: u64,
}

/// What needs escaping in JSON (a quote, a backslash, a tab) and what must
/// come through unharmed (non-ASCII).
const AWKWARD: &str = "Q\"uote\\back ü\t";

/// Header field offsets (the crate docs' format table).
const TYPE_NAME_LEN: usize = 73;
const TYPE_NAME: usize = 80;

/// Rewrites the type name a segment's header records. A ring takes its type
/// name from its Rust element type, which cannot hold a quote or a
/// backslash, so the test writes one; `describe` reads the field as is.
fn set_type_name(region: &Region, name: &str) {
    assert!(name.len() <= 64, "{name:?} does not fit the header");
    let mapping = region.mapping().expect("a shared-memory region");
    let mut field = [0u8; 64];
    field[..name.len()].copy_from_slice(name.as_bytes());
    mapping.write_at(TYPE_NAME, &field).unwrap();
    mapping
        .write_at(TYPE_NAME_LEN, &[name.len() as u8])
        .unwrap();
}

/// One segment the test made, how `shm` names it, and what it must report.
struct Made {
    /// `0x...`/id for System V, the name for POSIX.
    target: String,
    backend: &'static str,
    kind: &'static str,
    type_name: String,
    ring_len: Option<u64>,
}

/// Keeps everything the test made alive, and removes it when dropped.
#[derive(Default)]
struct Kept {
    sysv: Vec<RemoveSysv>,
    posix: Vec<UnlinkPosix>,
    handles: Vec<Box<dyn std::any::Any>>,
}

fn location(backend: &'static str, made: &mut Kept) -> (Location, Option<String>) {
    if backend == "sysv" {
        (Location::Private, None)
    } else {
        let name = format!("/{}", unique("shm-cli-json-Q\"uote\\back ü"));
        made.posix.push(UnlinkPosix(name.clone()));
        (Location::posix(&name), Some(name))
    }
}

/// The target `shm` names a segment by: its id, or its POSIX name.
fn target_of(location: &Location, name: Option<String>, made: &mut Kept) -> String {
    match (location, name) {
        (Location::Id(id), _) => {
            made.sysv.push(RemoveSysv(*id));
            id.to_string()
        }
        (_, Some(name)) => name,
        (other, None) => panic!("unexpected location {other}"),
    }
}

/// Every kind on `backend`, with awkward type names (and for the store,
/// awkward entry names and types).
fn make_every_kind(backend: &'static str, made: &mut Kept) -> Vec<Made> {
    let mut out = Vec::new();

    let (at, name) = location(backend, made);
    let type_name = format!("{AWKWARD}object");
    let object = Shared::<u64>::options()
        .type_name(type_name.clone())
        .create(at, 7)
        .unwrap();
    let target = target_of(object.location(), name, made);
    out.push(Made {
        target,
        backend,
        kind: "object",
        type_name,
        ring_len: None,
    });
    made.handles.push(Box::new(object));

    let (at, name) = location(backend, made);
    let ring = SpscRing::<Größe>::create(at, 16).unwrap();
    let target = target_of(ring.location(), name, made);
    ring.producer()
        .unwrap()
        .push_slice(&[Größe { value: 1 }; 3])
        .unwrap();
    let type_name = format!("{AWKWARD}Größe spsc");
    set_type_name(ring.region(), &type_name);
    out.push(Made {
        target,
        backend,
        kind: "spsc ring",
        type_name,
        ring_len: Some(3),
    });
    made.handles.push(Box::new(ring));

    let (at, name) = location(backend, made);
    let ring = SpinningSpscRing::<Größe>::create_spinning(at, 32).unwrap();
    let target = target_of(ring.location(), name, made);
    ring.producer()
        .unwrap()
        .push_slice(&[Größe { value: 2 }; 5])
        .unwrap();
    let type_name = format!("{AWKWARD}Größe spinning");
    set_type_name(ring.region(), &type_name);
    out.push(Made {
        target,
        backend,
        kind: "spinning spsc ring",
        type_name,
        ring_len: Some(5),
    });
    made.handles.push(Box::new(ring));

    let (at, name) = location(backend, made);
    let ring = MpmcRing::<Größe>::create(at, 8).unwrap();
    let target = target_of(ring.location(), name, made);
    ring.push(Größe { value: 3 }).unwrap();
    ring.push(Größe { value: 4 }).unwrap();
    let type_name = format!("{AWKWARD}Größe mpmc");
    set_type_name(ring.region(), &type_name);
    out.push(Made {
        target,
        backend,
        kind: "mpmc ring",
        type_name,
        ring_len: Some(2),
    });
    made.handles.push(Box::new(ring));

    let (at, name) = location(backend, made);
    let store = Store::create(at, 8, 1 << 16).unwrap();
    let target = target_of(store.location(), name, made);
    store.object::<Größe>("first", Größe { value: 5 }).unwrap();
    store.spsc::<Größe>("second", 8).unwrap();
    // Entry names are ASCII letters, digits and -_./: only; a peer may still
    // write anything into a directory record, so the test does.
    set_entry_name(store.region(), 0, ENTRY_OBJECT);
    set_entry_name(store.region(), 1, ENTRY_RING);
    out.push(Made {
        target,
        backend,
        kind: "store",
        type_name: "shm-typed store v1".to_owned(),
        ring_len: None,
    });
    made.handles.push(Box::new(store));
    out
}

/// A store entry name that needs escaping (written into the record).
const ENTRY_OBJECT: &str = "o\"bject\\ ü\t1";
/// A non-ASCII entry name (written into the record).
const ENTRY_RING: &str = "ring:ß/ü";

/// Where a store's directory starts, and the bytes per record.
const DIRECTORY: usize = shm_typed::format::PAYLOAD_OFFSET + 128;
const RECORD: usize = 128;

/// Rewrites the name of store entry `index` in its directory record.
fn set_entry_name(region: &Region, index: usize, name: &str) {
    assert!(name.len() <= 48, "{name:?} does not fit a record");
    let mapping = region.mapping().expect("a shared-memory region");
    let record = DIRECTORY + index * RECORD;
    let mut field = [0u8; 48];
    field[..name.len()].copy_from_slice(name.as_bytes());
    mapping.write_at(record, &field).unwrap();
    mapping.write_at(record + 48, &[name.len() as u8]).unwrap();
}

/// Runs `python3 -m json.tool` on `text`; panics with its complaint if the
/// text is not JSON.
fn python_accepts(text: &str, what: &str) {
    let mut child = Command::new("python3")
        .args(["-m", "json.tool"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (needed to check the JSON)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python3 -m json.tool rejects {what}: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.stdout.is_empty(), "{what}");
}

fn check_ours(ours: &Value, made: &Made, context: &str) {
    assert_eq!(ours["kind"], made.kind, "{context}");
    assert_eq!(ours["type"], made.type_name.as_str(), "{context}");
    assert_eq!(ours["state"], "ready", "{context}");
    match made.ring_len {
        Some(len) => {
            assert_eq!(ours["ring_len"], len, "{context}");
            let capacity = ours["capacity"].as_u64().unwrap();
            assert_eq!(ours["fill"], format!("{len}/{capacity}"), "{context}");
        }
        None => {
            assert!(ours["ring_len"].is_null(), "{context}");
            assert!(ours["fill"].is_null(), "{context}");
        }
    }
}

#[test]
fn ls_and_inspect_json_escape_every_name_and_type_name() {
    let mut keep = Kept::default();
    let mut made = make_every_kind("sysv", &mut keep);
    made.extend(make_every_kind("posix", &mut keep));

    let listed = run_ok(&["ls", "--json"]);
    python_accepts(&listed, "shm ls --json");
    let listed: Value = serde_json::from_str(&listed).expect("shm ls --json is JSON");
    let rows = listed.as_array().expect("an array");
    for made in &made {
        let row = rows
            .iter()
            .find(|row| match made.backend {
                "sysv" => row["id"].as_i64() == made.target.parse().ok(),
                _ => row["name"] == made.target.as_str(),
            })
            .unwrap_or_else(|| panic!("{:?} missing from shm ls --json", made.target));
        let context = format!("{} {:?} in shm ls --json: {row}", made.backend, made.target);
        assert_eq!(row["backend"], made.backend, "{context}");
        check_ours(&row["ours"], made, &context);
    }

    for made in &made {
        let text = run_ok(&["inspect", "--json", &made.target]);
        python_accepts(&text, &format!("shm inspect --json {:?}", made.target));
        let inspected: Value = serde_json::from_str(&text).expect("shm inspect --json is JSON");
        let context = format!("shm inspect --json {:?}: {inspected}", made.target);
        assert_eq!(inspected["backend"], made.backend, "{context}");
        match made.backend {
            "sysv" => assert_eq!(
                inspected["id"].as_i64(),
                made.target.parse().ok(),
                "{context}"
            ),
            _ => assert_eq!(inspected["name"], made.target.as_str(), "{context}"),
        }
        check_ours(&inspected["ours"], made, &context);
        if made.kind == "store" {
            let entries = inspected["entries"].as_array().expect("entries");
            assert_eq!(entries.len(), 2, "{context}");
            assert_eq!(entries[0]["name"], ENTRY_OBJECT, "{context}");
            assert_eq!(entries[0]["kind"], "object", "{context}");
            assert_eq!(entries[0]["type"], "Größe", "{context}");
            assert_eq!(entries[1]["name"], ENTRY_RING, "{context}");
            assert_eq!(entries[1]["kind"], "spsc ring", "{context}");
            assert_eq!(entries[1]["capacity"], 8, "{context}");
        } else {
            assert!(inspected.get("entries").is_none(), "{context}");
        }
    }
}

#[test]
fn the_table_shows_control_characters_escaped() {
    let type_name = "two\nlines";
    let object = Shared::<u64>::options()
        .type_name(type_name)
        .create(Location::Private, 1)
        .unwrap();
    let Location::Id(id) = *object.location() else {
        unreachable!("a private segment has an id")
    };
    let _guard = RemoveSysv(id);
    let table = run_ok(&["ls"]);
    let row = table
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("{id} missing:\n{table}"));
    assert!(row.contains("two\\nlines"), "{row}");
    assert!(
        !table.lines().any(|line| line.starts_with("lines")),
        "{table}"
    );
    let inspected = run_ok(&["inspect", &id.to_string()]);
    assert!(inspected.contains("type: `two\\nlines`"), "{inspected}");
}
