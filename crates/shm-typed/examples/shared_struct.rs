//! Two processes share a `#[repr(C)]` struct under the in-segment lock.
//!
//! ```sh
//! cargo run -p shm-typed --example shared_struct
//! ```
//!
//! The parent creates the segment and starts a copy of itself as the child,
//! passing the segment's id. Both add to the struct under the lock; the parent
//! then checks the totals and removes the segment.

use std::process::Command;

use shm_typed::{Location, Shared};

#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Stats {
    updates: u64,
    sum: u64,
    last_writer: u32,
    _pad: u32,
}

const ROUNDS: u64 = 50_000;

fn work(stats: &Shared<Stats>) -> shm_typed::Result<()> {
    for i in 0..ROUNDS {
        let mut guard = stats.lock()?;
        guard.updates += 1;
        guard.sum += i;
        guard.last_writer = std::process::id();
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, id] = args.as_slice() {
        if role == "child" {
            let stats = Shared::<Stats>::open(Location::Id(id.parse()?))?;
            work(&stats)?;
            return Ok(());
        }
    }

    let empty = Stats {
        updates: 0,
        sum: 0,
        last_writer: 0,
        _pad: 0,
    };
    let stats = Shared::<Stats>::create(Location::Private, empty)?;
    let Location::Id(id) = *stats.location() else {
        unreachable!("private segments have ids")
    };
    // Mark it for removal at once: it lives while attached (Linux still lets the
    // child attach it by id) and is freed when both processes detach, so even a
    // crash leaks nothing.
    stats.remove()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child", &id.to_string()])
        .spawn()?;
    let worked = work(&stats);
    let status = child.wait()?;
    let result = stats.load();
    worked?;
    assert!(status.success(), "child failed: {status}");

    let result = result?;
    println!("segment {id}: {result:?}");
    assert_eq!(result.updates, 2 * ROUNDS);
    assert_eq!(result.sum, 2 * (ROUNDS * (ROUNDS - 1) / 2));
    println!("both processes' {ROUNDS} updates each arrived intact");
    Ok(())
}
