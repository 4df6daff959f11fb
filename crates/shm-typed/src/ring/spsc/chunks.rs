//! In-place access to runs of slots: [`WriteChunk`], [`ReadChunk`] and
//! [`ChunkIter`].

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;

use super::{Consumer, Producer};

/// Free slots claimed by [`Producer::write_chunk`], written in place. Nothing is
/// visible to the consumer until [`commit`](WriteChunk::commit); dropping the
/// chunk publishes nothing.
pub struct WriteChunk<'p, 'a, T: Pod, const WAKE: bool = true> {
    pub(super) producer: &'p mut Producer<'a, T, WAKE>,
    pub(super) start: *mut T,
    pub(super) wrapped: *mut T,
    pub(super) first: usize,
    pub(super) second: usize,
}

impl<T: Pod, const WAKE: bool> WriteChunk<'_, '_, T, WAKE> {
    /// How many slots the chunk holds (fewer than asked for if the ring had
    /// less room).
    pub fn len(&self) -> usize {
        self.first + self.second
    }

    /// Whether the chunk holds no slot (the ring is full).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slots, as the part up to the end of the ring and the part from its
    /// start. They hold whatever was there before (any bytes are a valid `T`).
    pub fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        // SAFETY: both runs lie inside the slot array (runs() splits at its end),
        // are free (the consumer does not read them until we publish) and are
        // written by nobody else (we are the claimed producer): the protocol
        // grants this handle exclusive access until commit, which needs `self`.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.start, self.first),
                std::slice::from_raw_parts_mut(self.wrapped, self.second),
            )
        }
    }

    /// Publishes the first `count` slots (at most [`len`](WriteChunk::len)).
    ///
    /// # Panics
    ///
    /// If `count` exceeds the chunk's length.
    pub fn commit(self, count: usize) {
        assert!(
            count <= self.len(),
            "commit {count} of a {}-slot chunk",
            self.len()
        );
        if count > 0 {
            self.producer.publish(count as u64);
        }
    }

    /// Publishes every slot of the chunk.
    pub fn commit_all(self) {
        let count = self.len();
        self.commit(count);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for WriteChunk<'_, '_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("len", &self.len())
            .finish()
    }
}

/// Waiting values claimed by [`Consumer::read_chunk`], read in place. Nothing is
/// released to the producer until [`commit`](ReadChunk::commit); dropping the
/// chunk releases nothing, so the values are read again.
pub struct ReadChunk<'c, 'a, T: Pod, const WAKE: bool = true> {
    pub(super) consumer: &'c mut Consumer<'a, T, WAKE>,
    pub(super) start: *const T,
    pub(super) wrapped: *const T,
    pub(super) first: usize,
    pub(super) second: usize,
}

impl<T: Pod, const WAKE: bool> ReadChunk<'_, '_, T, WAKE> {
    /// How many values the chunk holds.
    pub fn len(&self) -> usize {
        self.first + self.second
    }

    /// Whether the chunk holds no value (the ring is empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the value at `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<T> {
        read_run_pair(self.start, self.wrapped, self.first, self.len(), index)
    }

    /// Copies of the values, in order.
    pub fn iter(&self) -> ChunkIter<'_, T> {
        ChunkIter {
            start: self.start,
            wrapped: self.wrapped,
            first: self.first,
            len: self.len(),
            index: 0,
            _chunk: PhantomData,
        }
    }

    /// The values in place, as the part up to the end of the ring and the part
    /// from its start.
    ///
    /// # Safety
    ///
    /// The producer must not write these slots while the slices live, which a
    /// correct producer never does (they are published and not yet released).
    /// A buggy or hostile producer that does makes these shared references
    /// undefined behaviour; [`get`](ReadChunk::get) and [`iter`](ReadChunk::iter)
    /// copy with volatile reads and need no such trust.
    pub unsafe fn as_slices(&self) -> (&[T], &[T]) {
        // SAFETY: both runs lie inside the slot array and are published; the
        // caller promises no concurrent writer.
        unsafe {
            (
                std::slice::from_raw_parts(self.start, self.first),
                std::slice::from_raw_parts(self.wrapped, self.second),
            )
        }
    }

    /// Releases the first `count` values (at most [`len`](ReadChunk::len)) to
    /// the producer.
    ///
    /// # Panics
    ///
    /// If `count` exceeds the chunk's length.
    pub fn commit(self, count: usize) {
        assert!(
            count <= self.len(),
            "commit {count} of a {}-value chunk",
            self.len()
        );
        if count > 0 {
            self.consumer.release(count as u64);
        }
    }

    /// Releases every value of the chunk.
    pub fn commit_all(self) {
        let count = self.len();
        self.commit(count);
    }
}

impl<T: Pod, const WAKE: bool> fmt::Debug for ReadChunk<'_, '_, T, WAKE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk")
            .field("len", &self.len())
            .finish()
    }
}

/// The value at `index` of two runs (`first` values at `start`, the rest at
/// `wrapped`), read with a volatile copy; `None` past `len`.
fn read_run_pair<T: Pod>(
    start: *const T,
    wrapped: *const T,
    first: usize,
    len: usize,
    index: usize,
) -> Option<T> {
    let slot = if index < first {
        // SAFETY: index < first: inside the first run (a ReadChunk's invariant).
        unsafe { start.add(index) }
    } else if index < len {
        // SAFETY: index - first < len - first: inside the second run.
        unsafe { wrapped.add(index - first) }
    } else {
        return None;
    };
    // SAFETY: a published slot that a well-behaved producer does not rewrite
    // until the chunk is released; volatile, so a misbehaving one yields wrong
    // bytes rather than undefined behaviour.
    Some(unsafe { slot.read_volatile() })
}

/// Copies of a [`ReadChunk`]'s values, in order.
pub struct ChunkIter<'c, T: Pod> {
    pub(super) start: *const T,
    pub(super) wrapped: *const T,
    pub(super) first: usize,
    pub(super) len: usize,
    pub(super) index: usize,
    pub(super) _chunk: PhantomData<&'c T>,
}

impl<T: Pod> Iterator for ChunkIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let value = read_run_pair(self.start, self.wrapped, self.first, self.len, self.index)?;
        self.index += 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.index;
        (left, Some(left))
    }
}

impl<T: Pod> ExactSizeIterator for ChunkIter<'_, T> {}

impl<T: Pod> fmt::Debug for ChunkIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkIter")
            .field("left", &(self.len - self.index))
            .finish()
    }
}
