//! An attached range of shared memory, from any backend.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::error::{Errno, Error, Result, Target};
use crate::libc_sysv;

/// How a mapping is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// A System V attachment: `shmdt`.
    Detach,
    /// An `mmap` of a POSIX or memfd object: `munmap`.
    Unmap,
}

/// Shared memory mapped into this process: a System V attachment (`shmat`) or an
/// `mmap` of a POSIX shm object or memfd. Every backend hands out this same type.
///
/// Dropping a `Mapping` detaches (or unmaps) it; [`Mapping::detach`] does the same
/// and reports errors. Neither removes the segment: removal is explicit.
///
/// ## Safety: why only raw pointers
///
/// Other processes can write this memory at any moment, so a `&[u8]` or `&T`
/// into it would promise Rust an immutability (or exclusivity) that nobody can
/// keep: that is undefined behaviour, even if the bytes are only read. A
/// `Mapping` therefore hands out raw pointers ([`as_ptr`](Mapping::as_ptr),
/// [`as_mut_ptr`](Mapping::as_mut_ptr)) and its length. Code that dereferences
/// them needs a protocol that excludes concurrent writers (a lock, a ring slot
/// between claim and publish), or must use atomic or volatile accesses.
/// [`read_at`](Mapping::read_at) and [`write_at`](Mapping::write_at) are safe,
/// bounds-checked copies made with relaxed atomic accesses: they can observe a
/// peer's half-finished write, but never cause undefined behaviour.
///
/// The pointers stay valid until the mapping is dropped or detached, even if the
/// segment is removed in the meantime: the kernel frees a removed segment only
/// when its last attachment goes away. A System V segment cannot be resized, and
/// a memfd from [`MemfdSegment::create`](crate::memfd::MemfdSegment::create) is
/// sealed against shrinking. A peer with write access to a POSIX `shm_open`
/// object, though, can shrink it, and then accesses past the new end raise
/// `SIGBUS` and kill this process; no kernel mechanism prevents that (see
/// [`PosixSegment`](crate::posix::PosixSegment)).
///
/// ```
/// use shm_sys::sysv::Segment;
///
/// let segment = Segment::create_private(4096)?;
/// let mapping = segment.attach()?;
/// segment.remove()?; // freed at the last detach
/// mapping.write_at(0, b"hello")?;
/// let mut back = [0u8; 5];
/// mapping.read_at(0, &mut back)?;
/// assert_eq!(&back, b"hello");
/// assert!(mapping.write_at(4095, b"xy").is_err()); // out of bounds
/// mapping.detach()?;
/// # Ok::<(), shm_sys::Error>(())
/// ```
pub struct Mapping {
    start: NonNull<u8>,
    len: usize,
    read_only: bool,
    release: Release,
    /// Set once the range has been detached or unmapped.
    released: bool,
    source: Target,
}

// SAFETY: a Mapping is an address range valid for the whole process; it holds no
// thread-local state, and all access goes through raw pointers or atomics, whose
// synchronisation is the user's protocol. Detaching from another thread is allowed
// by shmdt/munmap.
unsafe impl Send for Mapping {}
// SAFETY: the shared methods (`read_at`, `write_at`, pointer getters) use only
// atomic accesses or hand out raw pointers, so concurrent use from threads is as
// safe as concurrent use from processes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Wraps a fresh `shmat` (`release` = [`Release::Detach`]) or `mmap`
    /// ([`Release::Unmap`]) result.
    ///
    /// # Safety
    ///
    /// `start..start+len` must be a shared mapping made by the call `release`
    /// undoes, writable exactly when `read_only` is false, and owned by nobody else.
    pub(crate) unsafe fn new(
        start: NonNull<u8>,
        len: usize,
        read_only: bool,
        release: Release,
        source: Target,
    ) -> Mapping {
        Mapping {
            start,
            len,
            read_only,
            release,
            released: false,
            source,
        }
    }

    /// Sets the length once it is known (System V reports it only after `shmat`).
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// The first byte of the mapping.
    pub fn as_ptr(&self) -> *const u8 {
        self.start.as_ptr()
    }

    /// The first byte of the mapping, for writing; `None` if it is read-only
    /// (writing through a read-only mapping raises `SIGSEGV`).
    pub fn as_mut_ptr(&self) -> Option<*mut u8> {
        (!self.read_only).then_some(self.start.as_ptr())
    }

    /// The length in bytes: the segment's size for System V, the mapped length for
    /// POSIX and memfd.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is zero bytes long (never true for a real segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the mapping was made read-only (`SHM_RDONLY`, `PROT_READ`).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The segment or object this mapping shows.
    pub fn source(&self) -> &Target {
        &self.source
    }

    fn check_range(&self, op: &'static str, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                op,
                target: self.source.clone(),
                offset,
                len,
                mapping_len: self.len,
            }),
        }
    }

    /// Copies `buffer.len()` bytes starting at `offset` out of the mapping.
    ///
    /// The copy uses relaxed atomic loads (8 bytes at a time where aligned), so a
    /// concurrent writer in another process cannot cause undefined behaviour, but
    /// the copy may mix old and new bytes.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if the range does not fit in the mapping.
    pub fn read_at(&self, offset: usize, buffer: &mut [u8]) -> Result<()> {
        self.check_range("read_at", offset, buffer.len())?;
        // SAFETY: offset..offset+len is inside the live mapping (checked above).
        let source = unsafe { self.start.as_ptr().add(offset) };
        let (head, body_end) = split_for_words(source, buffer.len());
        for index in (0..head).chain(body_end..buffer.len()) {
            // SAFETY: index < len, so in bounds; AtomicU8 has alignment 1. All
            // shared accesses made through this type are atomic, and other
            // processes are outside this program's memory model.
            let byte = unsafe { AtomicU8::from_ptr(source.add(index)) };
            buffer[index] = byte.load(Ordering::Relaxed);
        }
        for (number, out) in buffer[head..body_end].chunks_exact_mut(8).enumerate() {
            // SAFETY: source + head is 8-aligned and the word ends by body_end <= len.
            let word = unsafe { AtomicU64::from_ptr(source.add(head + number * 8).cast()) };
            out.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        Ok(())
    }

    /// Copies `data` into the mapping at `offset`.
    ///
    /// The copy uses relaxed atomic stores (8 bytes at a time where aligned); a
    /// concurrent reader may see part of it.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only mapping, [`Error::OutOfBounds`] if the
    /// range does not fit.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                op: "write_at",
                target: self.source.clone(),
            });
        }
        self.check_range("write_at", offset, data.len())?;
        // SAFETY: offset..offset+len is inside the live, writable mapping.
        let destination = unsafe { self.start.as_ptr().add(offset) };
        let (head, body_end) = split_for_words(destination, data.len());
        for index in (0..head).chain(body_end..data.len()) {
            // SAFETY: in bounds; alignment 1; accesses through this type are atomic.
            let byte = unsafe { AtomicU8::from_ptr(destination.add(index)) };
            byte.store(data[index], Ordering::Relaxed);
        }
        for (number, bytes) in data[head..body_end].chunks_exact(8).enumerate() {
            let mut value = [0u8; 8];
            value.copy_from_slice(bytes);
            // SAFETY: destination + head is 8-aligned and the word ends by body_end.
            let word = unsafe { AtomicU64::from_ptr(destination.add(head + number * 8).cast()) };
            word.store(u64::from_ne_bytes(value), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Detaches (`shmdt`) or unmaps (`munmap`) the mapping, reporting failure.
    ///
    /// Dropping the mapping does the same and ignores errors.
    ///
    /// # References
    /// - [`shmdt(2)`](https://man7.org/linux/man-pages/man2/shmdt.2.html)
    /// - [`munmap(2)`](https://man7.org/linux/man-pages/man2/munmap.2.html)
    #[doc(alias = "shmdt")]
    #[doc(alias = "munmap")]
    pub fn detach(mut self) -> Result<()> {
        self.release()
    }

    /// Releases the mapping once; later calls (from `Drop` after `detach`) do nothing.
    fn release(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        let (op, result) = match self.release {
            // SAFETY: `start` came from shmat (constructor contract), it is released
            // only once (flag above), and the mapping is being consumed or dropped,
            // so nothing accesses it afterwards.
            Release::Detach => ("shmdt", unsafe { libc_sysv::shmdt(self.start.as_ptr()) }),
            Release::Unmap => (
                "munmap",
                // SAFETY: `start..start+len` came from mmap (constructor contract),
                // is released only once, and the mapping is being consumed or dropped.
                unsafe { rustix::mm::munmap(self.start.as_ptr().cast(), self.len) }
                    .map_err(Errno::from),
            ),
        };
        result.map_err(|errno| Error::from_errno(op, self.source.clone(), errno, None))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // A failure here means the address was not a mapping we made, which the
        // constructors rule out; there is nothing useful to do with it in drop.
        let _ = self.release();
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("source", &self.source)
            .field("start", &self.start)
            .field("len", &self.len)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// Splits a copy of `len` bytes at `address` into a byte-wise head up to the first
/// 8-aligned address, a body of whole aligned words ending at `body_end`, and a
/// byte-wise tail. Returns `(head, body_end)`.
fn split_for_words(address: *const u8, len: usize) -> (usize, usize) {
    let head = address.align_offset(8).min(len);
    let body_end = head + (len - head) / 8 * 8;
    (head, body_end)
}

#[cfg(test)]
mod tests {
    use crate::memfd::MemfdSegment;

    #[test]
    fn copies_round_trip_at_every_alignment_and_leave_neighbours_alone() {
        let memfd = MemfdSegment::create("mapping-unit", 256).unwrap();
        let mapping = memfd.map().unwrap();
        for offset in 0..17 {
            for len in 0..41 {
                mapping.write_at(0, &[0xee; 256]).unwrap();
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + offset + 1) as u8).collect();
                mapping.write_at(offset, &data).unwrap();
                let mut whole = [0u8; 256];
                mapping.read_at(0, &mut whole).unwrap();
                assert_eq!(&whole[offset..offset + len], &data[..], "{offset}+{len}");
                assert!(whole[..offset].iter().all(|&b| b == 0xee));
                assert!(whole[offset + len..].iter().all(|&b| b == 0xee));
                let mut back = vec![0u8; len];
                mapping.read_at(offset, &mut back).unwrap();
                assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn out_of_range_copies_are_errors_not_accesses() {
        let memfd = MemfdSegment::create("mapping-bounds", 64).unwrap();
        let mapping = memfd.map().unwrap();
        let mut buffer = [0u8; 8];
        for offset in [57, 64, usize::MAX - 3, usize::MAX] {
            let err = mapping.read_at(offset, &mut buffer).unwrap_err();
            assert!(matches!(err, crate::Error::OutOfBounds { .. }), "{err:?}");
            assert!(mapping.write_at(offset, &buffer).is_err());
        }
        mapping.read_at(56, &mut buffer).unwrap();
        mapping.read_at(64, &mut []).unwrap();
    }
}
