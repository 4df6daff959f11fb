//! `shm ls` counts the processes using each POSIX object of ours, and
//! `shm rm --stale` removes only those nobody uses whose creator is dead; an
//! object that is not ours is never touched. Real binary, real processes;
//! guards unlink every object and kill every child, also when a test fails.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use common::{run_ok, shm, unique, UnlinkPosix};
use shm_typed::{Location, Shared};

/// A `shm create ... --hold` child, killed and reaped when dropped.
struct Holder(Child);

impl Holder {
    /// Starts `shm create --u64 VALUE NAME --hold` and waits until it holds.
    fn start(name: &str, value: u64) -> Holder {
        let mut child = shm()
            .args(["create", "--u64", &value.to_string(), name, "--hold"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting shm create --hold");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let holder = Holder(child);
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("holding") => break,
                Some(Ok(_)) => continue,
                other => panic!("shm create --hold for {name} ended early: {other:?}"),
            }
        }
        holder
    }

    /// SIGKILLs it and reaps it.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `rm --stale` looks at every object on the host: the tests here take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{}", name.trim_start_matches('/'))).exists()
}

/// `users` of the object `name` in `shm ls --json`.
fn users_in_json(name: &str) -> u64 {
    let listing: serde_json::Value =
        serde_json::from_str(&run_ok(&["ls", "--json"])).expect("ls --json is JSON");
    listing
        .as_array()
        .expect("an array")
        .iter()
        .find(|item| item["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in shm ls --json"))["users"]
        .as_u64()
        .expect("users is a number")
}

/// The nattch column of `name`'s row in the `shm ls` table, without the `+`
/// that marks processes whose /proc entries could not be read.
fn users_in_table(name: &str) -> String {
    let table = run_ok(&["ls"]);
    let row = table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in shm ls:\n{table}"));
    let users = row.split_whitespace().nth(4).expect("a nattch column");
    users.trim_end_matches('+').to_owned()
}

#[test]
fn rm_stale_removes_only_the_posix_object_whose_creator_was_killed_and_nobody_uses() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dead_name = format!("/{}", unique("stale-dead"));
    let live_name = format!("/{}", unique("stale-live"));
    let foreign_name = format!("/{}", unique("stale-foreign"));
    let _guards = [
        UnlinkPosix(dead_name.clone()),
        UnlinkPosix(live_name.clone()),
        UnlinkPosix(foreign_name.clone()),
    ];

    let mut dead = Holder::start(&dead_name, 1);
    dead.kill(); // SIGKILL: its mapping goes, its object stays
                 // Its creator killed too, but this process maps it.
    Holder::start(&live_name, 2).kill();
    let value = Shared::<u64>::open(Location::Posix(live_name.clone())).unwrap();
    // Not ours: no header, and no live process behind it.
    std::fs::write(
        format!("/dev/shm/{}", foreign_name.trim_start_matches('/')),
        vec![0x5a; 4096],
    )
    .unwrap();

    assert_eq!(users_in_json(&dead_name), 0);
    assert_eq!(users_in_json(&live_name), 1, "this process maps it");
    assert_eq!(users_in_table(&dead_name), "0");
    assert_eq!(users_in_table(&live_name), "1");

    let said = run_ok(&["rm", "--stale"]);
    assert!(
        said.contains(&format!("removed stale POSIX object {dead_name}")),
        "{said}"
    );
    assert!(!exists(&dead_name), "{said}");
    assert!(exists(&live_name), "in use: kept\n{said}");
    assert!(exists(&foreign_name), "not ours: never touched\n{said}");
    // The one in use is intact.
    assert_eq!(value.load().unwrap(), 2);
    drop(value);

    // Unmapped, the second object is stale too; the foreign one stays.
    let said = run_ok(&["rm", "--stale"]);
    assert!(!exists(&live_name), "{said}");
    assert!(exists(&foreign_name), "{said}");
}

#[test]
fn an_object_held_open_by_a_live_process_is_not_stale() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = format!("/{}", unique("stale-open"));
    let _guard = UnlinkPosix(name.clone());
    let mut creator = Holder::start(&name, 3);
    creator.kill();
    // This process holds the object open (a descriptor, no mapping).
    let file = std::fs::File::open(format!("/dev/shm/{}", name.trim_start_matches('/'))).unwrap();
    assert_eq!(users_in_json(&name), 1);
    let said = run_ok(&["rm", "--stale"]);
    assert!(exists(&name), "held open: kept\n{said}");
    drop(file);
    let said = run_ok(&["rm", "--stale"]);
    assert!(!exists(&name), "{said}");
}

/// The `shm ls --json` object of the POSIX object `name`.
fn listed(name: &str) -> serde_json::Value {
    let listing: serde_json::Value =
        serde_json::from_str(&run_ok(&["ls", "--json"])).expect("ls --json is JSON");
    listing
        .as_array()
        .expect("an array")
        .iter()
        .find(|item| item["backend"] == "posix" && item["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in shm ls --json"))
}

/// A count (`users`, `mapped_by`, `open_by`) of a listed object.
fn count(entry: &serde_json::Value, field: &str) -> u64 {
    entry[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {field:?} in {entry}"))
}

/// The bytes of the object `name`, read through its file (no mapping).
fn bytes_of(name: &str) -> Vec<u8> {
    std::fs::read(format!("/dev/shm/{}", name.trim_start_matches('/'))).expect("reading it")
}

/// Which objects `shm rm --stale` said it removed (on the whole host: a
/// stale object of ours that something else left may be among them).
fn removed_by(said: &str) -> Vec<&str> {
    said.lines()
        .filter_map(|line| line.strip_prefix("removed stale POSIX object "))
        .collect()
}

/// An object of ours whose creator was SIGKILLed and reaped: nobody uses it.
fn orphan(name: &str) {
    Holder::start(name, 7).kill();
    assert!(exists(name), "{name} went with its creator");
}

#[test]
fn an_object_only_a_live_process_maps_is_kept_intact_until_unmapped() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = format!("/{}", unique("stale-mapped"));
    let _guard = UnlinkPosix(name.clone());
    orphan(&name);
    // This process maps it; the descriptor is closed again at once, so the
    // mapping alone keeps it (its creator is dead).
    let mapping = shm_sys::posix::PosixSegment::open_read_only(&name)
        .and_then(|object| object.map_read_only())
        .expect("mapping it");
    let before = bytes_of(&name);

    let entry = listed(&name);
    assert!(count(&entry, "mapped_by") >= 1, "{entry}");
    assert_eq!(count(&entry, "open_by"), 0, "{entry}");
    assert!(count(&entry, "users") >= 1, "{entry}");
    assert_eq!(entry["ours"]["creator_alive"], false, "{entry}");
    assert_ne!(users_in_table(&name), "0");
    let said = run_ok(&["rm", "--stale"]);
    assert!(!removed_by(&said).contains(&name.as_str()), "{said}");
    assert!(exists(&name), "mapped: kept\n{said}");
    assert_eq!(bytes_of(&name), before, "intact");

    drop(mapping);
    assert_eq!(users_in_json(&name), 0);
    let said = run_ok(&["rm", "--stale"]);
    assert!(removed_by(&said).contains(&name.as_str()), "{said}");
    assert!(!exists(&name), "{said}");
}

#[test]
fn a_mapping_of_an_unlinked_object_does_not_count_for_its_successor() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = format!("/{}", unique("stale-successor"));
    let _guard = UnlinkPosix(name.clone());
    orphan(&name);
    // Mapped here, then unlinked: /proc/self/maps shows
    // "/dev/shm/<name> (deleted)". A new orphan of ours under the same name.
    let old = shm_sys::posix::PosixSegment::open_read_only(&name)
        .and_then(|object| object.map_read_only())
        .expect("mapping the first object");
    shm_sys::posix::PosixSegment::unlink(&name).unwrap();
    orphan(&name);

    let entry = listed(&name);
    assert_eq!(count(&entry, "users"), 0, "{entry}");
    assert_eq!(users_in_table(&name), "0");
    let said = run_ok(&["rm", "--stale"]);
    assert!(removed_by(&said).contains(&name.as_str()), "{said}");
    assert!(!exists(&name), "{said}");
    drop(old);
}

#[test]
fn objects_that_are_not_ours_are_never_touched_whatever_their_bytes() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let names: Vec<String> = ["garbage", "zeros", "misspelt"]
        .iter()
        .map(|tag| format!("/{}", unique(&format!("stale-foreign-{tag}"))))
        .collect();
    let _guards: Vec<UnlinkPosix> = names.iter().cloned().map(UnlinkPosix).collect();
    let path = |name: &str| format!("/dev/shm/{}", name.trim_start_matches('/'));
    // Arbitrary bytes; all zeros (where a creator of ours starts from); and
    // one of ours, its creator killed, whose magic is then misspelt.
    std::fs::write(
        path(&names[0]),
        (0..8192u32).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(path(&names[1]), vec![0u8; 8192]).unwrap();
    orphan(&names[2]);
    let mut misspelt = bytes_of(&names[2]);
    misspelt[0] ^= 0x20;
    std::fs::write(path(&names[2]), misspelt).unwrap();
    let before: Vec<Vec<u8>> = names.iter().map(|name| bytes_of(name)).collect();

    let listing = run_ok(&["ls", "--json"]);
    let said = run_ok(&["rm", "--stale"]);
    for (name, before) in names.iter().zip(&before) {
        assert!(
            !listing.contains(name.as_str()),
            "listed as ours: {listing}"
        );
        assert!(!said.contains(name.as_str()), "{said}");
        assert_eq!(&bytes_of(name), before, "{name} changed");
    }
}

#[test]
fn help_says_what_ls_counts_and_rm_stale_removes() {
    let ls = run_ok(&["ls", "--help"]);
    for words in [
        "/proc/<pid>/maps",
        "/proc/<pid>/fd",
        "(deleted)",
        "other than this shm",
        "opened the object but not mapped",
        "\"users\"",
        "\"mapped_by\"",
        "\"open_by\"",
        "N+",
    ] {
        assert!(ls.contains(words), "shm ls --help lacks {words:?}:\n{ls}");
    }
    let rm = run_ok(&["rm", "--help"]);
    for words in [
        "POSIX",
        "our header",
        "maps it or holds it open",
        "creator",
        "is dead",
        "checked again",
        "never touched",
    ] {
        assert!(rm.contains(words), "shm rm --help lacks {words:?}:\n{rm}");
    }
}

#[test]
fn an_unused_object_whose_creator_lives_is_kept() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = format!("/{}", unique("stale-creator-alive"));
    let _guard = UnlinkPosix(name.clone());
    // Made by this process, which then lets go of it: nobody uses it, but
    // its creator lives.
    drop(Shared::<u64>::create(Location::Posix(name.clone()), 5).unwrap());
    let entry = listed(&name);
    assert_eq!(count(&entry, "users"), 0, "{entry}");
    assert_eq!(entry["ours"]["creator_alive"], true, "{entry}");
    let said = run_ok(&["rm", "--stale"]);
    assert!(!said.contains(name.as_str()), "{said}");
    assert!(exists(&name), "its creator lives: kept\n{said}");
}
