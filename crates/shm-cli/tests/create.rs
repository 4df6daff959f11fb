//! `shm create` on the real binary: every option takes effect (`--mode` on
//! rings, values and raw segments, System V and POSIX, as `ipcs -m` and
//! /dev/shm show it) or is refused with an error that names the target.
//! Everything created is removed by a guard, also when a test fails.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{ipcs_rows, run, run_ok, unique, unique_key, RemoveSysv, UnlinkPosix};
use shm_sys::sysv::Segment;
use shm_sys::Key;
use shm_typed::{Location, Shared, SpscRing};

/// The perms column `ipcs -m` shows for segment `id`.
fn ipcs_perms(id: i32) -> String {
    ipcs_rows()
        .into_iter()
        .find(|row| row.1 == id)
        .map(|row| row.2)
        .unwrap_or_else(|| panic!("segment {id} not in ipcs -m"))
}

/// The permission bits of a POSIX object, from its file under /dev/shm.
fn posix_mode(name: &str) -> u32 {
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    std::fs::metadata(&path)
        .unwrap_or_else(|error| panic!("{path}: {error}"))
        .permissions()
        .mode()
        & 0o7777
}

/// The id in `created System V segment ID`.
fn created_id(stdout: &str) -> i32 {
    stdout
        .trim()
        .strip_prefix("created System V segment ")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("unexpected: {stdout:?}"))
}

/// What to create: the arguments after the target, and how to check that
/// the result is usable as what was asked for.
const KINDS: [(&str, &[&str]); 3] = [
    ("ring", &["--ring", "8"]),
    ("u64", &["--u64", "5"]),
    ("raw", &["--size", "4096"]),
];

/// Opens what `kind` made at `location` as the typed thing it is.
fn check_usable(kind: &str, location: Location) {
    match kind {
        "ring" => {
            let ring = SpscRing::<u64>::open(location, 8).expect("an SpscRing<u64> of 8");
            ring.producer().unwrap().push(42).unwrap();
            assert_eq!(ring.consumer().unwrap().pop().unwrap(), Some(42));
        }
        "u64" => {
            let value = Shared::<u64>::open(location).expect("a Shared<u64>");
            assert_eq!(value.load().unwrap(), 5);
        }
        _ => {}
    }
}

#[test]
fn mode_takes_effect_for_every_kind_on_system_v() {
    for (kind, args) in KINDS {
        for mode in ["644", "0640", "600", "0o604"] {
            let expected = mode.trim_start_matches("0o").trim_start_matches('0');
            // IPC_PRIVATE: found by the id it prints.
            let mut command = vec!["create"];
            command.extend_from_slice(args);
            command.extend(["--mode", mode]);
            let stdout = run_ok(&command);
            let id = created_id(&stdout);
            let _guard = RemoveSysv(id);
            assert_eq!(ipcs_perms(id), expected, "{kind} --mode {mode}");
            check_usable(kind, Location::Id(id));

            // A key.
            let key = unique_key();
            let key_text = format!("{:#010x}", key as u32);
            let mut command = vec!["create", &key_text];
            command.extend_from_slice(args);
            command.extend(["--mode", mode]);
            let (ok, stdout, stderr) = run(&command);
            let segment = Segment::open(Key::new(key)).ok();
            let _guard = segment.as_ref().map(|segment| RemoveSysv(segment.id()));
            assert!(ok, "shm {command:?}: {stderr}");
            assert!(stdout.contains(&key_text[2..]), "{stdout}");
            let id = segment.expect("the key's segment").id();
            assert_eq!(
                ipcs_perms(id),
                expected,
                "{kind} at {key_text} --mode {mode}"
            );
            check_usable(kind, Location::Key(Key::new(key)));
        }
    }
}

#[test]
fn mode_takes_effect_for_every_kind_on_posix() {
    for (kind, args) in KINDS {
        for (mode, expected) in [("644", 0o644), ("0640", 0o640), ("600", 0o600)] {
            let name = format!("/{}", unique("shm-cli-create"));
            let _guard = UnlinkPosix(name.clone());
            let mut command = vec!["create", &name];
            command.extend_from_slice(args);
            command.extend(["--mode", mode]);
            let stdout = run_ok(&command);
            assert!(stdout.contains(&name), "{stdout}");
            assert_eq!(posix_mode(&name), expected, "{kind} --mode {mode}");
            check_usable(kind, Location::posix(&name));
        }
    }
}

#[test]
fn the_default_mode_is_owner_only() {
    let id = created_id(&run_ok(&["create", "--ring", "16"]));
    let _guard = RemoveSysv(id);
    assert_eq!(ipcs_perms(id), "600");
    let name = format!("/{}", unique("shm-cli-create-default"));
    let _unlink = UnlinkPosix(name.clone());
    run_ok(&["create", &name, "--ring", "16"]);
    assert_eq!(posix_mode(&name), 0o600);
}

/// Runs `shm create ...`, which must fail with one `shm: ` line containing
/// every one of `needles`; returns that line.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let mut command = vec!["create"];
    command.extend_from_slice(args);
    let (ok, stdout, stderr) = run(&command);
    assert!(!ok, "shm {command:?} succeeded: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.starts_with("shm: ") && stderr.lines().count() == 1,
        "one clear line: {stderr:?}"
    );
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    stderr
}

#[test]
fn what_cannot_take_effect_is_refused_naming_the_target() {
    let name = format!("/{}", unique("shm-cli-refused"));
    let _unlink = UnlinkPosix(name.clone());
    let key = unique_key();
    let key_text = format!("{:#010x}", key as u32);
    let _key_guard = KeyGuard(key);

    for mode in ["1777", "800", "abc", "", "+600", "7777", "0x1a4"] {
        refused(&[&name, "--ring", "8", "--mode", mode], &["bad mode"]);
    }
    refused(&[&name, "--ring", "3"], &[&name, "power of two"]);
    refused(
        &[&key_text, "--ring", "6"],
        &[&key_text[2..], "power of two"],
    );
    refused(&["--ring", "0"], &["power of two"]);
    refused(&["42", "--ring", "8"], &["42", "by id"]);
    refused(&[&name, "--size", "0"], &[&name]);
    refused(&[&name], &["say what to create"]);
    refused(&[&name, "--ring", "8", "--u64", "1"], &["--u64"]);
    refused(&[&name, "--size", "8", "--ring", "8"], &["--ring"]);
    // Nothing was made by any of these.
    assert!(
        !std::path::Path::new(&format!("/dev/shm/{}", &name[1..])).exists(),
        "{name} created by a refused command"
    );
    assert!(Segment::open(Key::new(key)).is_err(), "{key_text} created");

    // An existing key or name: refused, naming it, and left as it was.
    run_ok(
        &[&key_text, "--ring", "8", "--mode", "640"][..].iter().fold(
            vec!["create"],
            |mut all, arg| {
                all.push(arg);
                all
            },
        ),
    );
    refused(&[&key_text, "--ring", "8"], &[&key_text[2..], "exists"]);
    let id = Segment::open(Key::new(key)).unwrap().id();
    assert_eq!(ipcs_perms(id), "640");
    run_ok(&["create", &name, "--ring", "8", "--mode", "640"]);
    refused(&[&name, "--ring", "8"], &[&name, "exists"]);
    assert_eq!(posix_mode(&name), 0o640);
}

/// Removes the segment of a key when dropped, if there is one.
struct KeyGuard(i32);

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Ok(segment) = Segment::open(Key::new(self.0)) {
            let _ = segment.remove();
        }
    }
}
