//! Timing that makes a blocking push race the waiting peer's sleep
//! announcement. Shared by `tests/ring.rs` and `benches/ring.rs`.

use std::time::{Duration, Instant};

/// Spins, before each push, for a pseudo-random 17-25 us after the last
/// round trip came back: about when the peer, waiting for the next value,
/// stops spinning (shm-typed's `SPIN_TIME`, 20 us) and announces that it
/// sleeps. That is where a wake-up can be missed.
pub struct SleepRacer(u64);

impl SleepRacer {
    pub fn new() -> SleepRacer {
        SleepRacer(0x9e37_79b9_7f4a_7c15)
    }

    /// Spins for the next pause (xorshift, so every run is the same).
    pub fn pause(&mut self) {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let pause = Duration::from_nanos(17_000 + self.0 % 8_000);
        let paused = Instant::now();
        while paused.elapsed() < pause {
            std::hint::spin_loop();
        }
    }
}
