//! `shm create` killed at each step of making a segment (shm-typed's
//! `fault-injection` crash points): `shm ls` shows the segment as unready (or
//! blank) with a dead creator, and `shm rm --stale` removes it. Real binary;
//! a guard removes the segment also when a test fails.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{run_ok, shm, unique_key, RemoveSysv};
use shm_sys::sysv::Segment;
use shm_sys::Key;
use shm_typed::fault::POINTS;

#[test]
fn a_segment_whose_creator_died_making_it_is_listed_as_unready_and_removed_as_stale() {
    for point in POINTS {
        let key = unique_key();
        let status = shm()
            .args(["create", "--u64", "9", &format!("{key:#x}")])
            .env("SHM_TYPED_FAULT", point)
            .status()
            .expect("running shm create");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: {status:?}");
        let segment = Segment::open(Key::new(key))
            .unwrap_or_else(|e| panic!("{point}: the dead creator's segment: {e}"));
        let _guard = RemoveSysv(segment.id());

        let listing: serde_json::Value =
            serde_json::from_str(&run_ok(&["ls", "--json"])).expect("ls --json is JSON");
        let row = listing
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["id"] == segment.id())
            .unwrap_or_else(|| panic!("{point}: segment not listed"));
        // Before the magic is written, an unready segment; after, ours, not
        // ready, with a dead creator.
        let ours = &row["ours"];
        if ours.is_null() {
            let unready = &row["unready"];
            assert_eq!(unready["creator_dead"], true, "{point}: {row}");
            assert_eq!(
                unready["blank"],
                point.starts_with("create:"),
                "{point}: {row}"
            );
        } else {
            assert!(
                ["init:after-header", "init:after-lock", "init:after-payload"].contains(&point),
                "{point}: {row}"
            );
            assert_eq!(ours["state"], "initialising", "{point}: {row}");
            assert_eq!(ours["creator_alive"], false, "{point}: {row}");
        }
        let table = run_ok(&["ls"]);
        let line = table
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(&segment.id().to_string()))
            .unwrap_or_else(|| panic!("{point}: not in the table:\n{table}"));
        assert!(line.contains("dead"), "{point}: {line}");

        let said = run_ok(&["rm", "--stale"]);
        assert!(
            said.contains(&format!("removed stale segment {}", segment.id())),
            "{point}: {said}"
        );
        assert!(
            Segment::from_id(segment.id()).is_err(),
            "{point}: still there"
        );
    }
}
