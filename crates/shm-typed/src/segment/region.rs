//! [`Region`]: the memory this crate builds on.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use shm_sys::Mapping;

/// Alignment of every region: a page, so the header's 128-byte lines are aligned.
pub const REGION_ALIGN: usize = 4096;

enum Backing {
    /// Shared memory from any `shm-sys` backend.
    Mapping(Mapping),
    /// A zeroed heap buffer, for tests (Miri, loom) and single-process use.
    Heap(Layout),
    /// A page-aligned part of another region, kept alive by this handle.
    Part(Arc<Region>),
}

/// A range of memory holding one of our segments: a [`Mapping`] from any
/// `shm-sys` backend (System V, POSIX, memfd), or a heap buffer.
///
/// The heap variant lets the header, lock and value logic run under Miri and in
/// plain unit tests; it behaves like a segment that only this process sees.
///
/// Like a `Mapping`, a `Region` hands out no references to its bytes: other
/// processes may write them at any moment.
///
/// ```
/// use shm_typed::Region;
///
/// let region = Region::heap(8192);
/// assert_eq!(region.len(), 8192);
/// assert_eq!(region.as_ptr() as usize % 4096, 0);
/// ```
pub struct Region {
    start: NonNull<u8>,
    len: usize,
    read_only: bool,
    backing: Backing,
}

// SAFETY: a Region is an address range valid process-wide; the mapping or heap
// buffer it owns may be released from any thread, and all access to the bytes is
// through atomics or protocols (locks) that synchronise across threads as they do
// across processes.
unsafe impl Send for Region {}
// SAFETY: shared access only reads the start and length, or goes through atomics.
unsafe impl Sync for Region {}

impl Region {
    /// A region over a mapping; read-only if the mapping is.
    pub fn from_mapping(mapping: Mapping) -> Region {
        let read_only = mapping.is_read_only();
        let start = NonNull::new(mapping.as_ptr().cast_mut()).expect("mappings are non-null");
        Region {
            start,
            len: mapping.len(),
            read_only,
            backing: Backing::Mapping(mapping),
        }
    }

    /// A zeroed heap buffer of `len` bytes, page-aligned, as a fresh System V
    /// segment would be.
    ///
    /// # Panics
    ///
    /// If `len` is 0 or allocation fails.
    pub fn heap(len: usize) -> Region {
        assert!(len > 0, "a region needs at least one byte");
        let layout = Layout::from_size_align(len, REGION_ALIGN).expect("region size overflows");
        // SAFETY: the layout has a non-zero size (asserted above).
        let start = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(start) = NonNull::new(start) else {
            std::alloc::handle_alloc_error(layout)
        };
        Region {
            start,
            len,
            read_only: false,
            backing: Backing::Heap(layout),
        }
    }

    /// A region over `len` bytes of `whole` from `offset`, which must be a
    /// multiple of [`REGION_ALIGN`] (so every region starts page-aligned). It
    /// keeps `whole` alive. `None` if the range does not fit or is misaligned.
    pub fn part(whole: &Arc<Region>, offset: usize, len: usize) -> Option<Region> {
        if len == 0 || offset % REGION_ALIGN != 0 {
            return None;
        }
        let start = whole.pointer(offset, len, REGION_ALIGN)?;
        Some(Region {
            start: NonNull::new(start)?,
            len,
            read_only: whole.read_only,
            backing: Backing::Part(Arc::clone(whole)),
        })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.start.as_ptr()
    }

    /// The length in bytes: for shared memory, the operating system's own size of
    /// the segment.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a region has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether writes are forbidden (a read-only attachment).
    #[inline]
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The mapping behind this region, if it is shared memory.
    pub fn mapping(&self) -> Option<&Mapping> {
        match &self.backing {
            Backing::Mapping(mapping) => Some(mapping),
            Backing::Heap(_) => None,
            Backing::Part(whole) => whole.mapping(),
        }
    }

    /// A pointer to `offset`, if `offset + size` fits and `offset` is a multiple
    /// of `align`.
    #[inline]
    pub(crate) fn pointer(&self, offset: usize, size: usize, align: usize) -> Option<*mut u8> {
        let end = offset.checked_add(size)?;
        if end > self.len || offset % align != 0 {
            return None;
        }
        // SAFETY: offset <= len, so the result is within or one past the region;
        // the region start is page-aligned, so `offset % align == 0` makes the
        // pointer `align`-aligned for any align up to a page.
        Some(unsafe { self.start.as_ptr().add(offset) })
    }

    /// Copies `out.len()` bytes from `offset` with relaxed atomic loads (a racing
    /// writer yields a mix of old and new bytes, never undefined behaviour).
    ///
    /// # Panics
    ///
    /// If the range is outside the region (callers check sizes first).
    pub(crate) fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        assert!(self.try_read_bytes(offset, out), "read inside the region");
    }

    /// The native-endian u64 at `offset` (any alignment), `None` if it does
    /// not lie inside the region.
    pub(crate) fn try_read_u64(&self, offset: usize) -> Option<u64> {
        let mut word = [0u8; 8];
        self.try_read_bytes(offset, &mut word)
            .then(|| u64::from_ne_bytes(word))
    }

    /// [`read_bytes`](Region::read_bytes) for an offset that came from shared
    /// memory: `false`, with nothing copied, if the range is outside the region.
    #[must_use]
    pub(crate) fn try_read_bytes(&self, offset: usize, out: &mut [u8]) -> bool {
        let Some(source) = self.pointer(offset, out.len(), 1) else {
            return false;
        };
        let mut index = 0;
        while index < out.len() {
            // SAFETY: source + index is inside the checked range; all accesses this
            // crate makes to shared bytes outside a lock are atomic.
            let address = unsafe { source.add(index) };
            if address as usize % 8 == 0 && out.len() - index >= 8 {
                // SAFETY: 8-aligned and 8 bytes in range.
                let word = unsafe { AtomicU64::from_ptr(address.cast()) }.load(Ordering::Relaxed);
                out[index..index + 8].copy_from_slice(&word.to_ne_bytes());
                index += 8;
            } else {
                // SAFETY: in range, alignment 1.
                out[index] = unsafe { AtomicU8::from_ptr(address) }.load(Ordering::Relaxed);
                index += 1;
            }
        }
        true
    }

    /// Copies `data` to `offset` with relaxed atomic stores.
    ///
    /// # Panics
    ///
    /// If the range is outside the region or the region is read-only.
    pub(crate) fn write_bytes(&self, offset: usize, data: &[u8]) {
        assert!(!self.read_only, "write to a read-only region");
        let destination = self
            .pointer(offset, data.len(), 1)
            .expect("write inside the region");
        let mut index = 0;
        while index < data.len() {
            // SAFETY: inside the checked range of a writable region.
            let address = unsafe { destination.add(index) };
            if address as usize % 8 == 0 && data.len() - index >= 8 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&data[index..index + 8]);
                // SAFETY: 8-aligned and 8 bytes in range.
                unsafe { AtomicU64::from_ptr(address.cast()) }
                    .store(u64::from_ne_bytes(word), Ordering::Relaxed);
                index += 8;
            } else {
                // SAFETY: in range, alignment 1.
                unsafe { AtomicU8::from_ptr(address) }.store(data[index], Ordering::Relaxed);
                index += 1;
            }
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Backing::Heap(layout) = self.backing {
            // SAFETY: allocated in `heap` with exactly this layout, freed once.
            unsafe { std::alloc::dealloc(self.start.as_ptr(), layout) };
        }
        // A mapping detaches in its own Drop; a part releases its whole.
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backing = match &self.backing {
            Backing::Mapping(mapping) => format!("{:?}", mapping.source()),
            Backing::Heap(_) => "heap".to_owned(),
            Backing::Part(whole) => format!("part of {whole:?}"),
        };
        f.debug_struct("Region")
            .field("backing", &backing)
            .field("start", &self.start)
            .field("len", &self.len)
            .field("read_only", &self.read_only)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_region_is_zeroed_aligned_and_copies_round_trip() {
        let region = Region::heap(300);
        let mut all = [1u8; 300];
        region.read_bytes(0, &mut all);
        assert!(all.iter().all(|&b| b == 0));
        for offset in 0..9 {
            let data: Vec<u8> = (0..37).map(|i| i as u8 ^ offset as u8).collect();
            region.write_bytes(offset, &data);
            let mut back = vec![0u8; 37];
            region.read_bytes(offset, &mut back);
            assert_eq!(back, data);
        }
        assert!(region.pointer(296, 4, 4).is_some());
        assert!(region.pointer(297, 4, 1).is_none());
        assert!(region.pointer(2, 4, 4).is_none());
        assert!(region.pointer(usize::MAX, 4, 1).is_none());
        let mut word = [7u8; 8];
        assert!(!region.try_read_bytes(296, &mut word));
        assert!(!region.try_read_bytes(usize::MAX - 3, &mut word));
        assert_eq!(word, [7; 8], "nothing copied");
        assert!(region.try_read_bytes(292, &mut word));
    }
}
