//! `shm ls` and `shm inspect` attach every System V segment they look at
//! (read-only, for a moment), which changes its lpid, atime and dtime: their
//! `--help` says so, and it is true.

mod common;

use common::{run_ok, RemoveSysv};
use shm_sys::sysv::Segment;

#[test]
fn ls_and_inspect_help_say_they_change_lpid_atime_and_dtime() {
    for command in ["ls", "inspect"] {
        for flag in ["--help", "-h"] {
            let help = run_ok(&[command, flag]);
            for field in ["lpid", "atime", "dtime"] {
                assert!(
                    help.contains(field),
                    "shm {command} {flag} does not mention {field}:\n{help}"
                );
            }
            assert!(help.contains("read-only"), "{help}");
        }
    }
    let help = run_ok(&["rm", "--help"]);
    assert!(help.contains("--stale") && help.contains("lpid"), "{help}");
}

#[test]
fn ls_and_inspect_do_change_lpid_atime_and_dtime() {
    for command in [&["ls"][..], &["inspect", "ID"][..]] {
        // Never attached: no lpid, atime or dtime yet.
        let segment = Segment::create_private(4096).unwrap();
        let _guard = RemoveSysv(segment.id());
        let before = segment.stat().unwrap();
        assert_eq!(
            (before.lpid, before.atime, before.dtime),
            (None, None, None),
            "{before:?}"
        );
        let id = segment.id().to_string();
        let args: Vec<&str> = command
            .iter()
            .map(|arg| if *arg == "ID" { id.as_str() } else { arg })
            .collect();
        run_ok(&args);
        let after = segment.stat().unwrap();
        assert!(
            after.lpid.is_some_and(|pid| pid != std::process::id()),
            "shm {args:?} set lpid to its own pid: {after:?}"
        );
        assert!(after.atime.is_some(), "shm {args:?}: {after:?}");
        assert!(after.dtime.is_some(), "shm {args:?}: {after:?}");
        assert_eq!(after.nattch, 0, "detached again");
    }
}
