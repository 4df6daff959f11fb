//! The two sides of an [`SpscRing`]: [`Producer`] and [`Consumer`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytemuck::Pod;

use super::slots::{copy_streaming, starts_line};
use super::{
    Corrupted, PushError, Raw, ReadChunk, SpscRing, WriteChunk, CONSUMER_CLAIM, CONSUMER_SLEEPING,
    HEAD, PRODUCER_CLAIM, PRODUCER_SLEEPING, TAIL,
};
use crate::error::Result;
use crate::ring::blocking::retry;
use crate::ring::protocol::{self, Pop, Push};

/// The producer side of an [`SpscRing`] (one per ring at a time).
pub struct Producer<'a, T: Pod, const WAKE: bool = true> {
    pub(super) ring: &'a SpscRing<T, WAKE>,
    /// The ring's hot-path data, copied (see [`Raw`]).
    pub(super) raw: Raw<T>,
    /// Our `tail` (we are its only writer) and the consumer's `head` as last seen.
    pub(super) core: protocol::SpscProducer,
    /// Whether `push` asks for the slot lines ahead (the CPU has PREFETCHW).
    pub(super) prefetch: bool,
    pub(super) _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<'a, T: Pod, const WAKE: bool> Producer<'a, T, WAKE> {
    /// Free slots, reloading the consumer's position only when `needed` are not
    /// free by the cached one (validated: see [`protocol::SpscProducer::free`]).
    #[inline(always)]
    fn free(&mut self, needed: u64) -> Result<u64, Corrupted> {
        self.core
            .free(self.raw.word64(HEAD), self.raw.capacity, needed)
            .map_err(|what| self.ring.impossible("head", "tail", what))
    }

    #[inline(always)]
    pub(super) fn publish(&mut self, count: u64) {
        self.core.publish(self.raw.word64(TAIL), count);
        if WAKE {
            self.raw.wake(CONSUMER_SLEEPING);
        }
    }

    /// Pushes one value, or hands it back if the ring is full.
    #[inline(always)]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        let raw = &self.raw;
        match self.core.push(
            raw.word64(HEAD),
            raw.word64(TAIL),
            raw,
            raw,
            raw.capacity,
            value,
        ) {
            Push::Done => {
                if starts_line::<T>(self.core.tail) && self.prefetch {
                    raw.prefetch_ahead(self.core.tail, self.core.cached_head);
                }
                if WAKE {
                    raw.wake(CONSUMER_SLEEPING);
                }
                Ok(())
            }
            Push::Full(value) => Err(PushError::Full(value)),
            Push::Broken(value, what) => Err(PushError::Corrupted(
                value,
                self.ring.impossible("head", "tail", what),
            )),
        }
    }

    /// Pushes as many values from `values` as fit; returns how many.
    pub fn push_slice(&mut self, values: &[T]) -> Result<usize, Corrupted> {
        self.push_slice_with(values, std::ptr::copy_nonoverlapping::<T>)
    }

    /// Like [`push_slice`](Producer::push_slice), but writes the slots with
    /// non-temporal (streaming) stores, which go to memory without first
    /// fetching each cache line into this CPU's cache.
    ///
    /// Which one is faster depends on where the consumer runs. When it shares
    /// a cache with us, `push_slice` wins: the lines move straight from our
    /// cache to its. When it is far away (another CCX or socket), every line
    /// `push_slice` writes must first be fetched back from the consumer's
    /// cache, one round trip per line; streaming stores skip that, so this
    /// holds its rate in both placements (`docs/benchmarks.md`). Elsewhere
    /// than x86-64 (and under Miri) this is `push_slice`.
    pub fn push_slice_streaming(&mut self, values: &[T]) -> Result<usize, Corrupted> {
        self.push_slice_with(values, copy_streaming::<T>)
    }

    /// Copies as many of `values` as fit into the free slots with `copy` (a
    /// `copy_nonoverlapping` equivalent), then publishes them.
    #[inline(always)]
    fn push_slice_with(
        &mut self,
        values: &[T],
        copy: unsafe fn(*const T, *mut T, usize),
    ) -> Result<usize, Corrupted> {
        let free = self.free(values.len() as u64)?;
        let count = (values.len() as u64).min(free);
        // At most two contiguous runs: up to the end of the slots, then from the start.
        let (first, second) = self.raw.runs(self.core.tail, count);
        // SAFETY: positions tail..tail+count are free (count <= free), unread by
        // the consumer until published, and written only by us; each run lies
        // inside the slot array (runs() splits at its end). `values` holds
        // `first + second` values and cannot overlap those slots: no reference
        // to a free slot exists (read chunks end before their slots are
        // released, and write chunks borrow this producer).
        unsafe {
            copy(values.as_ptr(), self.raw.slot(self.core.tail), first);
            copy(values.as_ptr().add(first), self.raw.slot(0), second);
        }
        if count > 0 {
            self.publish(count);
        }
        Ok(count as usize)
    }

    /// Up to `len` free slots to fill in place, without copying through a
    /// buffer; [`WriteChunk::commit`] publishes them.
    ///
    /// ```
    /// use shm_typed::{Location, SpscRing};
    ///
    /// let ring = SpscRing::<u32>::create(Location::Private, 8)?;
    /// ring.remove()?;
    /// let mut producer = ring.producer()?;
    /// let mut chunk = producer.write_chunk(3)?;
    /// let (first, second) = chunk.as_mut_slices();
    /// for (slot, value) in first.iter_mut().chain(second).zip(10..) {
    ///     *slot = value;
    /// }
    /// chunk.commit_all();
    ///
    /// let mut consumer = ring.consumer()?;
    /// let chunk = consumer.read_chunk(8)?;
    /// assert_eq!(chunk.iter().collect::<Vec<_>>(), [10, 11, 12]);
    /// chunk.commit_all();
    /// assert_eq!(consumer.pop()?, None);
    /// # Ok::<(), shm_typed::Error>(())
    /// ```
    pub fn write_chunk(&mut self, len: usize) -> Result<WriteChunk<'_, 'a, T, WAKE>, Corrupted> {
        let free = self.free(len as u64)?;
        let count = (len as u64).min(free);
        let (first, second) = self.raw.runs(self.core.tail, count);
        Ok(WriteChunk {
            start: self.raw.slot(self.core.tail),
            wrapped: self.raw.slot(0),
            first,
            second,
            producer: self,
        })
    }

    /// Slots free now (reloading the consumer's position).
    pub fn free_slots(&mut self) -> Result<u64, Corrupted> {
        self.free(self.raw.capacity)
    }

    /// The ring.
    pub fn ring(&self) -> &SpscRing<T, WAKE> {
        self.ring
    }
}

impl<'a, T: Pod> Producer<'a, T> {
    /// Pushes, waiting up to `timeout` for space: spins, then sleeps on a futex
    /// the consumer wakes (it makes that syscall only when we announced a sleep).
    pub fn push_blocking(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        let ring = self.ring;
        // A failed push leaves our tail where it is.
        let tail = self.core.tail;
        retry(
            value,
            timeout,
            |value| match self.push(value) {
                Err(PushError::Full(back)) => ControlFlow::Continue(back),
                other => ControlFlow::Break(other),
            },
            |deadline| {
                ring.nap(PRODUCER_SLEEPING, deadline, || {
                    // Only decides whether to sleep: wrapping on purpose, as
                    // the head read here is not validated (the push is).
                    let head = ring.raw.word64(HEAD).load(Ordering::SeqCst);
                    tail.wrapping_sub(head) < ring.raw.capacity
                })
            },
        )
        .unwrap_or_else(|value| Err(PushError::Timeout(value)))
    }
}

impl<T: Pod, const WAKE: bool> Drop for Producer<'_, T, WAKE> {
    fn drop(&mut self) {
        self.ring.release_claim(PRODUCER_CLAIM);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for Producer<'_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.core.tail)
            .field("cached_head", &self.core.cached_head)
            .finish()
    }
}

/// The consumer side of an [`SpscRing`] (one per ring at a time).
pub struct Consumer<'a, T: Pod, const WAKE: bool = true> {
    pub(super) ring: &'a SpscRing<T, WAKE>,
    /// The ring's hot-path data, copied (see [`Raw`]).
    pub(super) raw: Raw<T>,
    /// Our `head` (we are its only writer) and the producer's `tail` as last seen.
    pub(super) core: protocol::SpscConsumer,
    pub(super) _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<'a, T: Pod, const WAKE: bool> Consumer<'a, T, WAKE> {
    /// Items available, reloading the producer's position only when fewer than
    /// `wanted` are known (validated: see [`protocol::SpscConsumer::available`]).
    #[inline(always)]
    fn available(&mut self, wanted: u64) -> Result<u64, Corrupted> {
        self.core
            .available(self.raw.word64(TAIL), self.raw.capacity, wanted)
            .map_err(|what| self.ring.impossible("tail", "head", what))
    }

    #[inline(always)]
    pub(super) fn release(&mut self, count: u64) {
        self.core.release(self.raw.word64(HEAD), count);
        if WAKE {
            self.raw.wake(PRODUCER_SLEEPING);
        }
    }

    /// Pops one value, or `None` if the ring is empty.
    #[inline(always)]
    pub fn pop(&mut self) -> Result<Option<T>, Corrupted> {
        let raw = &self.raw;
        match self
            .core
            .pop(raw.word64(HEAD), raw.word64(TAIL), raw, raw, raw.capacity)
        {
            Pop::Value(value) => {
                if WAKE {
                    raw.wake(PRODUCER_SLEEPING);
                }
                Ok(Some(value))
            }
            Pop::Empty => Ok(None),
            Pop::Broken(what) => Err(self.ring.impossible("tail", "head", what)),
        }
    }

    /// Pops up to `out.len()` values into `out`; returns how many.
    pub fn pop_into(&mut self, out: &mut [T]) -> Result<usize, Corrupted> {
        let available = self.available(out.len() as u64)?;
        let count = (out.len() as u64).min(available) as usize;
        let (first, second) = self.raw.runs(self.core.head, count as u64);
        for (run, (start, len)) in [
            (self.raw.slot(self.core.head), first),
            (self.raw.slot(0), second),
        ]
        .into_iter()
        .enumerate()
        {
            let out = if run == 0 {
                &mut out[..first]
            } else {
                &mut out[first..first + len]
            };
            for (index, slot) in out.iter_mut().enumerate() {
                // SAFETY: positions head..head+count are published and not
                // rewritten by a well-behaved producer until we release them; each
                // run lies inside the slot array. Volatile as in pop.
                *slot = unsafe { start.add(index).read_volatile() };
            }
        }
        if count > 0 {
            self.release(count as u64);
        }
        Ok(count)
    }

    /// Up to `len` waiting values to read in place; [`ReadChunk::commit`]
    /// releases them. See [`Producer::write_chunk`] for an example.
    pub fn read_chunk(&mut self, len: usize) -> Result<ReadChunk<'_, 'a, T, WAKE>, Corrupted> {
        let available = self.available(len as u64)?;
        let count = (len as u64).min(available);
        let (first, second) = self.raw.runs(self.core.head, count);
        Ok(ReadChunk {
            start: self.raw.slot(self.core.head),
            wrapped: self.raw.slot(0),
            first,
            second,
            consumer: self,
        })
    }

    /// Items waiting now (reloading the producer's position).
    pub fn len(&mut self) -> Result<u64, Corrupted> {
        self.available(self.raw.capacity + 1)
    }

    /// Whether nothing is waiting now.
    pub fn is_empty(&mut self) -> Result<bool, Corrupted> {
        self.len().map(|len| len == 0)
    }

    /// The ring.
    pub fn ring(&self) -> &SpscRing<T, WAKE> {
        self.ring
    }
}

impl<'a, T: Pod> Consumer<'a, T> {
    /// Pops, waiting up to `timeout` for a value: spins, then sleeps on a futex
    /// the producer wakes. `Ok(None)` if the timeout ran out.
    pub fn pop_blocking(&mut self, timeout: Duration) -> Result<Option<T>, Corrupted> {
        let ring = self.ring;
        // A failed pop leaves our head where it is.
        let head = self.core.head;
        retry(
            (),
            timeout,
            |()| match self.pop() {
                Ok(None) => ControlFlow::Continue(()),
                other => ControlFlow::Break(other),
            },
            |deadline| {
                ring.nap(CONSUMER_SLEEPING, deadline, || {
                    ring.raw.word64(TAIL).load(Ordering::SeqCst) != head
                })
            },
        )
        .unwrap_or(Ok(None))
    }
}

impl<T: Pod, const WAKE: bool> Drop for Consumer<'_, T, WAKE> {
    fn drop(&mut self) {
        self.ring.release_claim(CONSUMER_CLAIM);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for Consumer<'_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.core.head)
            .field("cached_tail", &self.core.cached_tail)
            .finish()
    }
}
