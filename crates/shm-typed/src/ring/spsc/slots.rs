//! The raw slot arithmetic under both handles: where position `p` lives, the
//! control words, wake-ups, prefetch picks and the streaming copy.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytemuck::Pod;

use super::{MAILBOX_STAMP, MAILBOX_VALUE, MAILBOX_WORDS, PREFETCH_AHEAD, SLOTS};
use crate::ring::protocol::{Cells, Mailbox};
use crate::sys;

/// What the hot paths need of a ring, copied into each handle: the handles
/// then read nothing of the [`SpscRing`] value they borrow (reading it through
/// the shared ring value caused false sharing between two threads' handles).
pub(super) struct Raw<T> {
    pub(super) base: NonNull<u8>,
    pub(super) capacity: u64,
    pub(super) _type: PhantomData<T>,
}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Raw<T> {}

impl<T> Cells<T> for Raw<T> {
    #[inline(always)]
    unsafe fn write(&self, position: u64, value: T) {
        // SAFETY: slot() is in bounds and aligned; the caller has the slot to
        // itself (protocol::Cells::write).
        unsafe { self.slot(position).write(value) }
    }

    #[inline(always)]
    unsafe fn read(&self, position: u64) -> T {
        // SAFETY: slot() is in bounds and aligned; the slot is published to us.
        // A volatile read, because a buggy or hostile producer might write it
        // anyway: then we get wrong bytes (any bytes are a valid T: Pod), not
        // undefined behaviour from a compiler that assumed the memory stable.
        unsafe { self.slot(position).read_volatile() }
    }
}

/// Whether a `T` fits the mailbox (the rest of the `tail` line after the
/// `tail` and stamp words).
pub(super) const fn fits_mailbox<T>() -> bool {
    std::mem::size_of::<T>() <= MAILBOX_WORDS * 8
}

impl<T: Pod> Mailbox<T> for Raw<T> {
    const ENABLED: bool = fits_mailbox::<T>();
    type Stamp = AtomicU64;

    #[inline(always)]
    fn stamp(&self) -> &AtomicU64 {
        self.word64(MAILBOX_STAMP)
    }

    #[inline(always)]
    fn put(&self, value: &T) {
        let size = std::mem::size_of::<T>();
        let mut words = [0u64; MAILBOX_WORDS];
        bytemuck::bytes_of_mut(&mut words)[..size].copy_from_slice(bytemuck::bytes_of(value));
        for (index, word) in words.iter().enumerate().take(size.div_ceil(8)) {
            self.word64(MAILBOX_VALUE + 8 * index)
                .store(*word, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn take(&self) -> T {
        let size = std::mem::size_of::<T>();
        let mut words = [0u64; MAILBOX_WORDS];
        for (index, word) in words.iter_mut().enumerate().take(size.div_ceil(8)) {
            *word = self
                .word64(MAILBOX_VALUE + 8 * index)
                .load(Ordering::Relaxed);
        }
        bytemuck::pod_read_unaligned(&bytemuck::bytes_of(&words)[..size])
    }

    #[inline(always)]
    fn fence_release(&self) {
        std::sync::atomic::fence(Ordering::Release);
    }

    #[inline(always)]
    fn fence_acquire(&self) {
        std::sync::atomic::fence(Ordering::Acquire);
    }
}

// SAFETY: a pointer into the ring's mapping (which outlives every handle: they
// borrow the ring) and its capacity; what may be done through it is governed
// by the handle that holds it, as for a `&SpscRing<T>`.
unsafe impl<T: Send> Send for Raw<T> {}

impl<T> Raw<T> {
    #[inline]
    pub(super) fn word32(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset + 4 <= SLOTS && offset % 4 == 0);
        // SAFETY: a control-line offset below SLOTS, inside the validated region
        // and 4-aligned (the region is page-aligned); accessed only atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    #[inline]
    pub(super) fn word64(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= SLOTS && offset % 8 == 0);
        // SAFETY: as in word32, 8-aligned.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) }
    }

    /// The slot for `position`.
    #[inline]
    pub(super) fn slot(&self, position: u64) -> *mut T {
        let index = (position & (self.capacity - 1)) as usize;
        // SAFETY: index < capacity, and the region holds `capacity` slots after
        // SLOTS (validated at open/create); SLOTS is 128-aligned, align_of::<T>()
        // <= 128, so the slot is aligned.
        unsafe { self.base.as_ptr().add(SLOTS).cast::<T>().add(index) }
    }

    /// Splits `count` positions from `position` into the run up to the end of the
    /// slot array and the run from its start: `(first, second)`, summing to `count`.
    #[inline]
    pub(super) fn runs(&self, position: u64, count: u64) -> (usize, usize) {
        let index = position & (self.capacity - 1);
        let first = count.min(self.capacity - index);
        (first as usize, (count - first) as usize)
    }

    /// Asks for write ownership of the slot line [`PREFETCH_AHEAD`] bytes
    /// after the slot for `tail` (wrapping), if that slot is free by `head`
    /// (the producer's cached view of it): otherwise it holds a value the
    /// consumer has yet to read, and taking its line would slow the consumer.
    #[inline(always)]
    pub(super) fn prefetch_ahead(&self, tail: u64, head: u64) {
        if let Some(ahead) = free_ahead::<T>(tail, head, self.capacity) {
            sys::prefetch_write(self.slot(ahead).cast());
        }
    }

    /// Wakes the other side if it announced that it sleeps on `offset`.
    #[inline]
    pub(super) fn wake(&self, offset: usize) {
        let word = self.word32(offset);
        if word.load(Ordering::Relaxed) != 0 {
            wake_sleeper(word);
        }
    }
}

/// The rare half of [`Raw::wake`], out of line so that the push and pop loops
/// that inline `wake` carry no call.
#[cold]
#[inline(never)]
pub(super) fn wake_sleeper(word: &AtomicU32) {
    word.store(0, Ordering::Release);
    sys::futex_wake(word, 1);
}

/// The position [`PREFETCH_AHEAD`] bytes after `tail`, if its slot is free
/// while the consumer stands at `head`. Wrapping on purpose: this only picks a
/// line to prefetch, and must not panic near `u64::MAX` (the push itself
/// reports impossible positions).
#[inline(always)]
pub(super) fn free_ahead<T>(tail: u64, head: u64, capacity: u64) -> Option<u64> {
    let ahead = tail.wrapping_add((PREFETCH_AHEAD / std::mem::size_of::<T>()).max(1) as u64);
    (ahead.wrapping_sub(head) < capacity).then_some(ahead)
}

/// Whether the slot for `position` starts a cache line. The slot array starts
/// 128-aligned (the region is page-aligned), so position times size says
/// where a slot falls in its line; for a power-of-two size this folds to a
/// mask test on the position, with nothing loaded. (In a ring whose slots
/// take less than a line in all, or not a whole number of lines, the answer
/// drifts after a wrap: it only decides where a prefetch goes.)
#[inline(always)]
pub(super) fn starts_line<T>(position: u64) -> bool {
    let size = std::mem::size_of::<T>();
    (position as usize).wrapping_mul(size) % 64 < size
}

/// Copies `count` values from `source` to `destination` with non-temporal
/// stores (16 bytes at a time; the unaligned ends with ordinary stores), then
/// fences (`sfence`): streaming stores are not ordered by x86's usual rules,
/// and the Release store that publishes them must not pass them.
///
/// # Safety
///
/// As `ptr::copy_nonoverlapping`: both runs valid for `count` values,
/// `destination` writable, the two not overlapping.
#[cfg(all(target_arch = "x86_64", not(miri)))]
pub(super) unsafe fn copy_streaming<T>(source: *const T, destination: *mut T, count: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

    let bytes = count * std::mem::size_of::<T>();
    let (source, destination) = (source.cast::<u8>(), destination.cast::<u8>());
    let head = destination.align_offset(16).min(bytes);
    // SAFETY: the caller's contract covers all `bytes` bytes of both runs; each
    // piece below stays inside them; SSE2, which these intrinsics need, is part
    // of x86-64; the streamed stores go to 16-aligned addresses (after `head`).
    unsafe {
        std::ptr::copy_nonoverlapping(source, destination, head);
        let mut offset = head;
        while offset + 16 <= bytes {
            let chunk = _mm_loadu_si128(source.add(offset).cast::<__m128i>());
            _mm_stream_si128(destination.add(offset).cast::<__m128i>(), chunk);
            offset += 16;
        }
        std::ptr::copy_nonoverlapping(source.add(offset), destination.add(offset), bytes - offset);
        _mm_sfence();
    }
}

/// Elsewhere (and under Miri), an ordinary copy.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
pub(super) unsafe fn copy_streaming<T>(source: *const T, destination: *mut T, count: usize) {
    // SAFETY: the caller's contract is copy_nonoverlapping's.
    unsafe { std::ptr::copy_nonoverlapping(source, destination, count) }
}
