//! Receives the `Tick`s that `ring_producer` streams; see that example.

use std::time::{Duration, Instant};

use shm_typed::{Location, SpscRing};

/// The same `#[repr(C)]` struct as in `ring_producer`: the ring's header checks
/// that size, alignment and type name agree before anything is read.
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let id: i32 = std::env::args()
        .nth(1)
        .ok_or("usage: ring_consumer RING_ID (ring_producer prints it)")?
        .parse()?;
    let ring = SpscRing::<Tick>::open(Location::Id(id), 1 << 14)?;
    let mut consumer = ring.consumer()?;
    let started = Instant::now();
    let mut expected = 0u64;
    let mut buffer = [Tick {
        sequence: 0,
        price: 0,
        size: 0,
        venue: 0,
    }; 256];
    loop {
        let got = consumer.pop_into(&mut buffer)?;
        if got == 0 {
            // Nothing yet: wait for one tick (spins, then sleeps), at most 10 s.
            match consumer.pop_blocking(Duration::from_secs(10))? {
                Some(tick) => buffer[0] = tick,
                None => return Err("no tick for 10 s".into()),
            }
        }
        for tick in &buffer[..got.max(1)] {
            if tick.sequence == u64::MAX {
                let took = started.elapsed();
                println!(
                    "received {expected} ticks in order in {took:.2?} ({:.1} M ticks/s)",
                    expected as f64 / took.as_secs_f64() / 1e6
                );
                return Ok(());
            }
            if tick.sequence != expected {
                return Err(format!("expected tick {expected}, got {}", tick.sequence).into());
            }
            expected += 1;
        }
    }
}
