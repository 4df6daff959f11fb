//! The real `shm` binary: ls agrees with ipcs and decodes our headers, inspect,
//! rm (refusing attached segments, --stale), create, and the demo, which leaves
//! nothing behind, also when interrupted with SIGINT.
//!
//! The tests look at every segment on the host, so they take turns (a lock),
//! and each removes what it made, also when it fails (guards).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use std::sync::Mutex;

use shm_sys::sysv::Segment;
use shm_typed::{Location, Shared, SpscRing};

mod common;

use common::ipcs_rows;

/// One test at a time: they compare host-wide listings.
static HOST: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    HOST.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a System V segment when dropped, also on panic.
struct RemoveOnDrop(i32);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::from_id(self.0) {
            let _ = segment.remove();
        }
    }
}

/// A child killed (and reaped) when dropped. Keeps the child's stdout open:
/// `shm` exits quietly when its stdout is closed, as a pipe reader would expect.
struct KillOnDrop {
    child: std::process::Child,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = shm().args(args).output().expect("running shm");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The value of `name` in one object of `shm ls --json`, or in its `ours`
/// object: strings as they are, anything else as JSON text (`null`, `3`).
fn json_field(object: &serde_json::Value, name: &str) -> Option<String> {
    let value = object
        .get(name)
        .or_else(|| object.get("ours").and_then(|ours| ours.get(name)))?;
    Some(match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    })
}

/// The objects of `shm ls --json`.
fn ls_json() -> Vec<serde_json::Value> {
    let (ok, stdout, stderr) = run(&["ls", "--json"]);
    assert!(ok, "{stderr}");
    match serde_json::from_str(&stdout) {
        Ok(serde_json::Value::Array(objects)) => objects,
        other => panic!("shm ls --json is not a JSON array: {other:?}\n{stdout}"),
    }
}

#[test]
fn ls_agrees_with_ipcs_and_decodes_ours() {
    let _turn = take_turn();
    let object = Shared::<u64>::create(Location::Private, 1).unwrap();
    let Location::Id(object_id) = *object.location() else {
        unreachable!()
    };
    let _object_guard = RemoveOnDrop(object_id);
    let ring = SpscRing::<u32>::create(Location::Private, 16).unwrap();
    let Location::Id(ring_id) = *ring.location() else {
        unreachable!()
    };
    let _ring_guard = RemoveOnDrop(ring_id);
    ring.producer().unwrap().push_slice(&[1, 2, 3]).unwrap();
    let raw = Segment::create_private(5000).unwrap();
    let _raw_guard = RemoveOnDrop(raw.id());

    let before = ipcs_rows();
    let listed = ls_json();
    let after = ipcs_rows();
    // Every segment ipcs shows (unchanged across our listing) is in ls, equal.
    for row in before.iter().filter(|row| after.contains(row)) {
        let (key, id, perms, bytes, nattch) = row;
        let entry = listed
            .iter()
            .find(|o| json_field(o, "id") == Some(id.to_string()))
            .unwrap_or_else(|| panic!("segment {id} missing from shm ls"));
        assert_eq!(
            json_field(entry, "key").as_deref(),
            Some(key.as_str()),
            "{entry}"
        );
        assert_eq!(
            json_field(entry, "perms").as_deref(),
            Some(perms.as_str()),
            "{entry}"
        );
        assert_eq!(
            json_field(entry, "bytes").as_deref(),
            Some(bytes.to_string().as_str()),
            "{entry}"
        );
        assert_eq!(
            json_field(entry, "nattch").as_deref(),
            Some(nattch.to_string().as_str()),
            "{entry}"
        );
    }
    let find = |id: i32| {
        listed
            .iter()
            .find(|o| json_field(o, "id") == Some(id.to_string()))
            .cloned()
            .unwrap()
    };
    let decoded = find(object_id);
    assert_eq!(
        json_field(&decoded, "kind").as_deref(),
        Some("object"),
        "{decoded}"
    );
    assert_eq!(
        json_field(&decoded, "type").as_deref(),
        Some("u64"),
        "{decoded}"
    );
    assert_eq!(
        json_field(&decoded, "state").as_deref(),
        Some("ready"),
        "{decoded}"
    );
    assert_eq!(
        json_field(&decoded, "lock_holder").as_deref(),
        Some("null"),
        "{decoded}"
    );
    let decoded = find(ring_id);
    assert_eq!(
        json_field(&decoded, "kind").as_deref(),
        Some("spsc ring"),
        "{decoded}"
    );
    assert_eq!(
        json_field(&decoded, "ring_len").as_deref(),
        Some("3"),
        "{decoded}"
    );
    assert_eq!(json_field(&find(raw.id()), "ours").as_deref(), Some("null"));

    // Our POSIX objects are listed too, decoded.
    let name = format!("/shm-cli-test-{}", std::process::id());
    let posix = Shared::<u64>::create(Location::posix(&name), 9).unwrap();
    let listed = {
        // Unlinked when this block ends, also if ls fails.
        struct Unlink<'a>(&'a Shared<u64>);
        impl Drop for Unlink<'_> {
            fn drop(&mut self) {
                let _ = self.0.remove();
            }
        }
        let _unlink = Unlink(&posix);
        ls_json()
    };
    let entry = listed
        .iter()
        .find(|o| json_field(o, "name").as_deref() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("{name} not in shm ls: {listed:?}"));
    assert_eq!(
        json_field(entry, "backend").as_deref(),
        Some("posix"),
        "{entry}"
    );
    assert_eq!(json_field(entry, "type").as_deref(), Some("u64"), "{entry}");

    // The table form lists the same ids.
    let (ok, table, _) = run(&["ls"]);
    assert!(ok);
    for id in [object_id, ring_id, raw.id()] {
        assert!(table
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string())));
    }
}

#[test]
fn inspect_says_when_a_segment_is_not_ours() {
    let _turn = take_turn();
    let raw = Segment::create_private(4096).unwrap();
    let _guard = RemoveOnDrop(raw.id());
    let (ok, stdout, stderr) = run(&["inspect", &raw.id().to_string()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ours: no"), "{stdout}");
    assert!(stdout.contains("bytes: 4096"), "{stdout}");
    assert!(!stdout.contains("kind:"), "{stdout}");

    let shared = Shared::<u64>::create(Location::Private, 3).unwrap();
    let Location::Id(id) = *shared.location() else {
        unreachable!()
    };
    let _shared_guard = RemoveOnDrop(id);
    let (ok, stdout, _) = run(&["inspect", &id.to_string()]);
    assert!(ok);
    assert!(stdout.contains("ours: yes"), "{stdout}");
    assert!(stdout.contains("type: `u64`"), "{stdout}");
    assert!(stdout.contains("lock: free"), "{stdout}");
}

#[test]
fn inspect_lists_store_entries() {
    let _turn = take_turn();
    let store = shm_typed::Store::create(Location::Private, 8, 1 << 16).unwrap();
    let Location::Id(id) = *store.location() else {
        unreachable!()
    };
    let _guard = RemoveOnDrop(id);
    store.object::<[u32; 4]>("config", [1, 2, 3, 4]).unwrap();
    store.spsc::<u64>("ticks", 64).unwrap();
    let (ok, stdout, stderr) = run(&["inspect", &id.to_string()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("kind: store"), "{stdout}");
    assert!(stdout.contains("entries: 2"), "{stdout}");
    let config = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("config"))
        .unwrap();
    assert!(
        config.contains("object") && config.contains("`[u32; 4]` (16 bytes)"),
        "{config}"
    );
    let ticks = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ticks"))
        .unwrap();
    assert!(
        ticks.contains("spsc ring") && ticks.contains("capacity 64"),
        "{ticks}"
    );
}

#[test]
fn rm_refuses_an_attached_segment_unless_forced() {
    let _turn = take_turn();
    let segment = Segment::create_private(4096).unwrap();
    let _guard = RemoveOnDrop(segment.id());
    let mapping = segment.attach().unwrap();
    let (ok, _, stderr) = run(&["rm", &segment.id().to_string()]);
    assert!(!ok);
    assert!(
        stderr.contains("attached") && stderr.starts_with("shm: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!segment.stat().unwrap().marked_for_removal);
    let (ok, _, stderr) = run(&["rm", "--force", &segment.id().to_string()]);
    assert!(ok, "{stderr}");
    assert!(segment.stat().unwrap().marked_for_removal);
    drop(mapping);
    assert!(segment.stat().is_err(), "gone after the last detach");
}

/// Starts `shm create ... --hold` and returns it with the id it created.
fn holding_creator(args: &[&str]) -> (KillOnDrop, i32) {
    let mut child = shm()
        .arg("create")
        .args(args)
        .arg("--hold")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let id = line
        .trim()
        .strip_prefix("created System V segment ")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("unexpected: {line:?}"));
    (
        KillOnDrop {
            child,
            _stdout: stdout,
        },
        id,
    )
}

/// Note: `shm rm --stale` acts on the whole host, so this also removes stale
/// segments of ours that something else left behind (none on a clean machine).
#[test]
fn rm_stale_removes_exactly_the_segments_nobody_alive_holds() {
    let _turn = take_turn();
    let (mut killed, stale_id) = holding_creator(&["--u64", "7"]);
    let _stale_guard = RemoveOnDrop(stale_id);
    let (_live, live_id) = holding_creator(&["--ring", "8"]);
    let _live_guard = RemoveOnDrop(live_id);
    // Not ours and unattached: must survive too.
    let foreign = Segment::create_private(4096).unwrap();
    let _foreign_guard = RemoveOnDrop(foreign.id());

    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    assert_eq!(
        Segment::from_id(stale_id).unwrap().stat().unwrap().nattch,
        0
    );

    let (ok, stdout, stderr) = run(&["rm", "--stale"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("removed stale segment {stale_id}")),
        "{stdout}"
    );
    assert!(
        Segment::from_id(stale_id).is_err(),
        "the dead creator's segment is gone"
    );
    assert!(
        !Segment::from_id(live_id)
            .unwrap()
            .stat()
            .unwrap()
            .marked_for_removal
    );
    assert!(
        !foreign.stat().unwrap().marked_for_removal,
        "not ours: untouched"
    );
}

fn shm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shm"))
}

/// Whether `ipcs -m` lists a segment with this id.
fn segment_listed(id: i32) -> bool {
    let output = Command::new("ipcs").arg("-m").output().expect("ipcs -m");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("0x"))
        .any(|line| line.split_whitespace().nth(1) == Some(&id.to_string()))
}

/// The segment id from the demo's first line.
fn demo_segment_id(first_line: &str) -> i32 {
    first_line
        .split("System V segment ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or_else(|| panic!("no segment id in {first_line:?}"))
}

#[test]
fn demo_streams_reports_and_leaves_nothing_behind() {
    let _turn = take_turn();
    let output = shm()
        .args(["demo", "--count", "2000000", "--latency-samples", "20000"])
        .output()
        .expect("running shm demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("throughput: 2000000 samples in order"),
        "{stdout}"
    );
    for percentile in ["p50", "p99", "p99.9"] {
        assert!(stdout.contains(percentile), "{stdout}");
    }
    let id = demo_segment_id(stdout.lines().next().unwrap());
    assert!(!segment_listed(id), "segment {id} is still in ipcs -m");
}

#[test]
fn demo_interrupted_with_sigint_leaves_nothing_behind() {
    let _turn = take_turn();
    let mut command = shm();
    command
        .args(["demo", "--count", "4000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null()) // its progress lines
        .process_group(0); // its own group: the SIGINT below must not reach this test
                           // As at a terminal: a suite started in the background of a
                           // non-interactive shell has SIGINT ignored, and exec keeps that.
                           // SAFETY: signal() is async-signal-safe; the closure touches nothing
                           // else between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        })
    };
    let mut child = command.spawn().expect("starting shm demo");
    let stdout = child.stdout.take().unwrap();
    let (lines, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = receive
        .recv_timeout(Duration::from_secs(20))
        .expect("first line");
    let id = demo_segment_id(&first);
    // Let it run a moment, then interrupt the whole group, as Ctrl-C would.
    std::thread::sleep(Duration::from_millis(200));
    let group = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).expect("SIGINT");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "demo ignored SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success(), "interrupted, not finished: {status:?}");
    // The workers die with the group; the segment goes with the last of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while segment_listed(id) {
        assert!(
            std::time::Instant::now() < deadline,
            "segment {id} left in ipcs -m"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn help_and_errors() {
    let help = shm().arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("demo"));
    let demo_help = shm().args(["demo", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&demo_help.stdout).contains("--latency-samples"));
    let wrong = shm().arg("no-such-command").output().unwrap();
    assert!(!wrong.status.success());
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(message.lines().count(), 1, "one clear line: {message}");
    assert!(message.contains("no-such-command"), "{message}");
    for command in ["ls", "inspect", "rm", "create", "demo"] {
        let help = shm().args([command, "--help"]).output().unwrap();
        assert!(help.status.success(), "{command} --help");
        assert!(!help.stdout.is_empty(), "{command} --help");
    }
    // A worker pointed at a segment id that does not exist.
    let bad_worker = shm()
        .args(["demo-consumer", "2147483000", "1", "1"])
        .output()
        .unwrap();
    assert!(!bad_worker.status.success());
    let message = String::from_utf8_lossy(&bad_worker.stderr);
    assert_eq!(message.lines().count(), 1, "one clear line: {message}");
    assert!(message.starts_with("shm: "), "{message}");
    assert!(message.contains("2147483000"), "names the id: {message}");
}
