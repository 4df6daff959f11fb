//! Bare two-process ping-pongs that differ only in how many cache lines a
//! message moves, for the ring benchmark's `lines` part (the benchmark
//! drives one side, `shm-test-peer lines-echo` the other). A message is a
//! counter value `i` = 1, 2, ...; the echo sends back the same value.
//!
//! - [`Mode::Word`]: the value is the index word itself, one line each way
//!   (the raw atomic ping-pong).
//! - [`Mode::SlotThenIndex`]: the value goes into a slot line, then the
//!   count into an index line; the reader waits on the index, then reads the
//!   slot: two dependent lines each way, as the rings' tail/head protocol.
//! - [`Mode::StampedSlot`]: value and stamp in one slot line; the reader
//!   polls the slot's stamp: one line each way, but a new line per message
//!   (slots rotate), as a per-slot-sequence ring (crossbeam `ArrayQueue`,
//!   the Disruptor) would move.
//!
//! Layout in a 16 KiB segment: forward index at 0, backward index at 128,
//! forward slots at 4096 + k * 128, backward slots at 8192 + k * 128
//! (k < 16; 128-byte spacing keeps the adjacent-line prefetcher out).
//! In a slot, the value is at +0 and the stamp at +8.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

pub const SEGMENT_LEN: usize = 16 * 1024;
pub const SLOTS: u64 = 16;
const FORWARD_INDEX: usize = 0;
const BACKWARD_INDEX: usize = 128;
const FORWARD_SLOTS: usize = 4096;
const BACKWARD_SLOTS: usize = 8192;
const SLOT_SPACING: usize = 128;
/// The value that tells the echo to stop.
pub const STOP: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Word,
    SlotThenIndex,
    StampedSlot,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Word => "word",
            Mode::SlotThenIndex => "slot-then-index",
            Mode::StampedSlot => "stamped-slot",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        [Mode::Word, Mode::SlotThenIndex, Mode::StampedSlot]
            .into_iter()
            .find(|mode| mode.name() == text)
    }
}

/// One direction of a [`Mode`] over a mapped segment.
pub struct Lane {
    index: *const AtomicU64,
    slots: *const u8,
}

// SAFETY: the pointers are into a shared mapping that outlives the lane, and
// every access through them is atomic.
unsafe impl Send for Lane {}

impl Lane {
    /// The forward (`true`) or backward lane of a segment mapped at `base`.
    ///
    /// # Safety
    ///
    /// `base` is the start of a live, page-aligned, writable mapping of at
    /// least [`SEGMENT_LEN`] bytes that outlives the lane, accessed only
    /// atomically by every process.
    pub unsafe fn new(base: *mut u8, forward: bool) -> Lane {
        let (index, slots) = if forward {
            (FORWARD_INDEX, FORWARD_SLOTS)
        } else {
            (BACKWARD_INDEX, BACKWARD_SLOTS)
        };
        // SAFETY: the offsets are inside SEGMENT_LEN (caller's contract).
        unsafe {
            Lane {
                index: base.add(index).cast(),
                slots: base.add(slots),
            }
        }
    }

    fn index(&self) -> &AtomicU64 {
        // SAFETY: 8-aligned (page-aligned base + 0 or 128), inside the live
        // mapping, only accessed atomically.
        unsafe { &*self.index }
    }

    /// The value (+0) and stamp (+8) words of the slot for message `i`.
    fn slot(&self, i: u64) -> (&AtomicU64, &AtomicU64) {
        let offset = (i % SLOTS) as usize * SLOT_SPACING;
        // SAFETY: offset + 16 <= 16 * 128 fits in the 4096-byte slot area,
        // 8-aligned; live mapping; atomic accesses only.
        unsafe {
            let slot = self.slots.add(offset);
            (
                &*slot.cast::<AtomicU64>(),
                &*slot.add(8).cast::<AtomicU64>(),
            )
        }
    }

    /// Sends message `i` carrying `value`.
    #[inline]
    pub fn send(&self, mode: Mode, i: u64, value: u64) {
        match mode {
            Mode::Word => self.index().store(value, Ordering::Release),
            Mode::SlotThenIndex => {
                self.slot(i).0.store(value, Ordering::Relaxed);
                self.index().store(i, Ordering::Release);
            }
            Mode::StampedSlot => {
                let (word, stamp) = self.slot(i);
                word.store(value, Ordering::Relaxed);
                stamp.store(i, Ordering::Release);
            }
        }
    }

    /// Message `i`'s value if it has arrived.
    #[inline]
    pub fn try_receive(&self, mode: Mode, i: u64) -> Option<u64> {
        match mode {
            Mode::Word => {
                let value = self.index().load(Ordering::Acquire);
                // The word carries i itself, or STOP.
                (value == i || value == STOP).then_some(value)
            }
            Mode::SlotThenIndex => {
                let index = self.index().load(Ordering::Acquire);
                (index == i || index == STOP).then(|| {
                    if index == STOP {
                        STOP
                    } else {
                        self.slot(i).0.load(Ordering::Relaxed)
                    }
                })
            }
            Mode::StampedSlot => {
                let (word, stamp) = self.slot(i);
                let seen = stamp.load(Ordering::Acquire);
                if seen == i {
                    Some(word.load(Ordering::Relaxed))
                } else if self.index().load(Ordering::Relaxed) == STOP {
                    Some(STOP)
                } else {
                    None
                }
            }
        }
    }

    /// Tells the echo reading this lane to stop.
    pub fn stop(&self) {
        self.index().store(STOP, Ordering::Release);
    }
}
