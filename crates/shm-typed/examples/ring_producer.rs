//! Streams `Tick`s to another process through an `SpscRing`.
//!
//! ```sh
//! cargo run --release -p shm-typed --example ring_producer        # prints the ring's id
//! cargo run --release -p shm-typed --example ring_consumer -- ID  # in another terminal
//! ```
//!
//! The ring is an `IPC_PRIVATE` System V segment marked for removal at once: it
//! lives while either process has it mapped (Linux lets the consumer attach it
//! by id all the same) and disappears with the last one, whatever happens to
//! the two processes.

use std::time::{Duration, Instant};

use shm_typed::{Location, SpscRing};

/// One market-data tick, as both programs define it (`#[repr(C)]`, `Pod`).
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Tick {
    /// Sequence number; `u64::MAX` ends the stream.
    pub sequence: u64,
    /// Price in ticks.
    pub price: i64,
    /// Size.
    pub size: u32,
    /// Venue code.
    pub venue: u32,
}

const COUNT: u64 = 10_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ring = SpscRing::<Tick>::create(Location::Private, 1 << 14)?;
    ring.remove()?;
    let Location::Id(id) = *ring.location() else {
        unreachable!("private rings have ids")
    };
    println!("ring id {id}; start the consumer with:");
    println!("  cargo run --release -p shm-typed --example ring_consumer -- {id}");

    let mut producer = ring.producer()?;
    let mut started = None;
    for sequence in 0..=COUNT {
        let tick = Tick {
            sequence: if sequence == COUNT {
                u64::MAX
            } else {
                sequence
            },
            price: 10_000 + (sequence % 100) as i64,
            size: 100,
            venue: (sequence % 7) as u32,
        };
        // Waits (spinning, then sleeping) while the ring is full, e.g. until the
        // consumer starts; gives up after a minute.
        producer
            .push_blocking(tick, Duration::from_secs(60))
            .map_err(|error| format!("push {sequence}: {error}"))?;
        started.get_or_insert_with(Instant::now);
    }
    let took = started.map(|s| s.elapsed()).unwrap_or_default();
    println!(
        "sent {COUNT} ticks in {took:.2?} ({:.1} M ticks/s)",
        COUNT as f64 / took.as_secs_f64() / 1e6
    );
    Ok(())
}
