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
