//! The SPSC mailbox stress's values and random pauses, shared by the test
//! (tests/ring.rs) and its producer peer (`spsc-produce-words`).

/// The six words of value `index` in the mailbox stress: each word a
/// different function of the index, so that a value made of two pushes' words
/// (torn) or of garbage never checks out.
pub fn stress_words(index: u64) -> [u64; 6] {
    let mut words = [0u64; 6];
    for (k, word) in (0u64..).zip(words.iter_mut()) {
        *word = index
            .wrapping_mul(0x9e37_79b9_7f4a_7c15 ^ k)
            .rotate_left(k as u32 * 7 + 1)
            ^ k;
    }
    words
}

/// A small xorshift generator for the stress's random pauses.
pub struct Pauses(u64);

impl Pauses {
    pub fn new(seed: u64) -> Pauses {
        Pauses(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Usually nothing; sometimes a spin of up to 4096 hints, a yield, or a
    /// sleep of 50-550 us, so that the other side catches up (and finds the
    /// ring empty or full) at ever different points of its own loop.
    pub fn pause(&mut self) {
        let roll = self.next();
        match roll % 64 {
            0..=11 => (0..roll >> 52).for_each(|_| std::hint::spin_loop()),
            12 => std::thread::yield_now(),
            13 if roll >> 40 & 7 == 0 => {
                std::thread::sleep(std::time::Duration::from_micros(50 + (roll >> 32) % 500))
            }
            _ => {}
        }
    }
}
