//! `shm ls` and `shm inspect` on the real binary show the fill level of every
//! ring kind: SPSC, spinning SPSC and MPMC, System V and POSIX.

mod common;

use common::{run_ok, unique, RemoveSysv, UnlinkPosix};
use shm_typed::{Location, MpmcRing, SpinningSpscRing, SpscRing};

fn id_of(location: &Location) -> i32 {
    match *location {
        Location::Id(id) => id,
        ref other => panic!("private segments are found by id, not {other}"),
    }
}

/// The `fill` column (the last) of the `shm ls` row whose first or second
/// column is `name`.
fn listed_fill(table: &str, name: &str) -> String {
    let row = table
        .lines()
        .find(|line| {
            let mut fields = line.split_whitespace();
            let (first, second) = (fields.next(), fields.next());
            first == Some(name) || second == Some(name)
        })
        .unwrap_or_else(|| panic!("{name} missing from shm ls:\n{table}"));
    row.split_whitespace().last().unwrap().to_owned()
}

/// The value of `fill:` in `shm inspect` output.
fn inspected_fill(text: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix("fill: "))
        .unwrap_or_else(|| panic!("no fill line:\n{text}"))
        .to_owned()
}

#[test]
fn a_spinning_ring_shows_its_fill_in_ls_and_inspect() {
    let ring = SpinningSpscRing::<u64>::create_spinning(Location::Private, 32).unwrap();
    let id = id_of(ring.location());
    let _guard = RemoveSysv(id);
    ring.producer()
        .unwrap()
        .push_slice(&[1, 2, 3, 4, 5, 6, 7])
        .unwrap();

    let table = run_ok(&["ls"]);
    assert_eq!(listed_fill(&table, &id.to_string()), "7/32", "{table}");
    let inspected = run_ok(&["inspect", &id.to_string()]);
    assert!(
        inspected.contains("kind: spinning spsc ring"),
        "{inspected}"
    );
    assert_eq!(inspected_fill(&inspected), "7/32", "{inspected}");
}

#[test]
fn every_ring_kind_shows_its_fill_on_both_backends() {
    // System V.
    let spsc = SpscRing::<u32>::create(Location::Private, 16).unwrap();
    let _spsc_guard = RemoveSysv(id_of(spsc.location()));
    spsc.producer().unwrap().push_slice(&[1, 2, 3]).unwrap();
    let mpmc = MpmcRing::<u64>::create(Location::Private, 8).unwrap();
    let _mpmc_guard = RemoveSysv(id_of(mpmc.location()));
    for value in 0..5 {
        mpmc.push(value).unwrap();
    }
    assert_eq!(mpmc.pop().unwrap(), Some(0));
    // POSIX.
    let name = format!("/{}", unique("shm-cli-fill"));
    let _unlink = UnlinkPosix(name.clone());
    let posix = SpinningSpscRing::<u16>::create_spinning(Location::posix(&name), 64).unwrap();
    posix.producer().unwrap().push_slice(&[9; 10]).unwrap();

    let table = run_ok(&["ls"]);
    let expected = [
        (id_of(spsc.location()).to_string(), "3/16"),
        (id_of(mpmc.location()).to_string(), "4/8"),
        (name.clone(), "10/64"),
    ];
    for (target, fill) in &expected {
        assert_eq!(&listed_fill(&table, target), fill, "{target}:\n{table}");
        let inspected = run_ok(&["inspect", target]);
        assert_eq!(&inspected_fill(&inspected), fill, "{target}:\n{inspected}");
    }
}
