//! Anonymous `memfd` segments: no name in any namespace. Other processes get
//! one by inheriting the file descriptor or receiving it over a Unix socket,
//! and it disappears with the last descriptor and mapping. Sealed against
//! resizing by default, so no holder of the descriptor can make a mapping's
//! pages vanish (`SIGBUS`).
//!
//! ```
//! use shm_sys::memfd::MemfdSegment;
//!
//! // Sealed at its size from birth: no holder of the descriptor can resize it.
//! let memfd = MemfdSegment::create("doc", 4096)?;
//! assert_eq!(memfd.seals()?, MemfdSegment::DEFAULT_SEALS);
//! assert!(memfd.set_size(0).is_err());
//! # Ok::<(), shm_sys::Error>(())
//! ```

use std::fmt;
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

use crate::error::{Error, Result, Target};
use crate::mapping::Mapping;
use crate::posix::{file_size, map_whole, set_file_size};
use crate::sysv::Access;

/// File seals for a memfd (`F_SEAL_*`): once added, a seal can never be removed.
///
/// ```
/// use shm_sys::memfd::Seals;
///
/// let seals = Seals::SHRINK | Seals::GROW;
/// assert!(seals.contains(Seals::GROW));
/// assert!(!seals.contains(Seals::WRITE));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seals(u32);

impl Seals {
    /// No seals.
    pub const NONE: Seals = Seals(0);
    /// No further seals may be added (`F_SEAL_SEAL`).
    pub const SEAL: Seals = Seals(SealFlags::SEAL.bits());
    /// The size may not shrink (`F_SEAL_SHRINK`).
    pub const SHRINK: Seals = Seals(SealFlags::SHRINK.bits());
    /// The size may not grow (`F_SEAL_GROW`).
    pub const GROW: Seals = Seals(SealFlags::GROW.bits());
    /// The contents may not change (`F_SEAL_WRITE`; needs no writable mapping).
    pub const WRITE: Seals = Seals(SealFlags::WRITE.bits());
    /// New writable mappings and writes are refused; existing ones keep working
    /// (`F_SEAL_FUTURE_WRITE`, Linux 5.1).
    pub const FUTURE_WRITE: Seals = Seals(SealFlags::FUTURE_WRITE.bits());

    /// Whether every seal in `other` is also in `self`.
    pub const fn contains(self, other: Seals) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw `F_SEAL_*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for Seals {
    type Output = Seals;
    fn bitor(self, other: Seals) -> Seals {
        Seals(self.0 | other.0)
    }
}

impl fmt::Debug for Seals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Seals::SEAL, "SEAL"),
            (Seals::SHRINK, "SHRINK"),
            (Seals::GROW, "GROW"),
            (Seals::WRITE, "WRITE"),
            (Seals::FUTURE_WRITE, "FUTURE_WRITE"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(seal, _)| self.contains(*seal))
            .map(|(_, name)| *name)
            .collect();
        if set.is_empty() {
            f.write_str("Seals(NONE)")
        } else {
            write!(f, "Seals({})", set.join(" | "))
        }
    }
}

/// An anonymous shared-memory file (`memfd_create`), sealed at its size.
///
/// It has no name other processes can look up: share it by letting a child
/// inherit the descriptor or by sending it over a Unix socket, then wrap it with
/// [`MemfdSegment::from_sealed_fd`]. The memory lives as long as any descriptor
/// or mapping of it.
///
/// ## Seals
///
/// [`create`](MemfdSegment::create) adds [`DEFAULT_SEALS`](MemfdSegment::DEFAULT_SEALS)
/// before the descriptor can reach anyone, so no holder of it, in any process,
/// can shrink the file under a mapping (which would make accesses raise
/// `SIGBUS`), and an opener that receives it can check so with
/// [`from_sealed_fd`](MemfdSegment::from_sealed_fd). Seals can never be removed.
/// [`create_with_seals`](MemfdSegment::create_with_seals) is the explicit way to
/// choose other seals, including none.
///
/// ```
/// use shm_sys::memfd::{MemfdSegment, Seals};
///
/// let memfd = MemfdSegment::create("seals", 4096)?;
/// let mapping = memfd.map()?;
/// assert!(memfd.set_size(100).is_err()); // F_SEAL_SHRINK: EPERM
/// mapping.write_at(4095, b"x")?; // the last page is still there
///
/// // A receiver that relies on the size checks the seals before mapping.
/// let received = MemfdSegment::from_sealed_fd(memfd.into_fd(), "received")?;
/// assert!(received.seals()?.contains(Seals::SHRINK));
/// # Ok::<(), shm_sys::Error>(())
/// ```
#[derive(Debug)]
pub struct MemfdSegment {
    fd: OwnedFd,
    name: String,
}

impl MemfdSegment {
    /// The seals [`create`](MemfdSegment::create) adds: `F_SEAL_SHRINK`,
    /// `F_SEAL_GROW` and `F_SEAL_SEAL`.
    ///
    /// - `SHRINK` is the one safety needs: a shrunk file takes pages away from
    ///   every mapping of it, and touching them raises `SIGBUS`.
    /// - `GROW` because the segment has a fixed size, like a System V segment: a
    ///   [`Mapping`] covers the size the file had when it was mapped and never
    ///   follows a change, so growing would only make processes disagree about
    ///   the length (and let a peer charge memory the creator never sized).
    /// - `SEAL` because the set is final: no peer can later add `FUTURE_WRITE`
    ///   or `WRITE` and make this process's next [`map`](MemfdSegment::map) fail.
    ///
    /// Contents stay writable: sharing them is the point.
    pub const DEFAULT_SEALS: Seals = Seals(Seals::SHRINK.0 | Seals::GROW.0 | Seals::SEAL.0);

    /// Creates a memfd of `size` bytes, closed on `exec`, and seals it with
    /// [`DEFAULT_SEALS`](MemfdSegment::DEFAULT_SEALS): its size is fixed for good.
    /// The name is only a label, shown in `/proc/<pid>/fd`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a name over 249 bytes or with a NUL, or a
    /// zero size (a memfd sealed empty could never hold a byte);
    /// [`Error::OutOfResources`] when memory or descriptors run out.
    ///
    /// # References
    /// - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) (`F_ADD_SEALS`)
    #[doc(alias = "memfd_create")]
    pub fn create(name: &str, size: usize) -> Result<MemfdSegment> {
        MemfdSegment::create_with_seals(name, size, MemfdSegment::DEFAULT_SEALS)
    }

    /// Creates a memfd of `size` bytes that allows sealing and is closed on
    /// `exec` (`MFD_ALLOW_SEALING | MFD_CLOEXEC`), and adds `seals` before
    /// returning it.
    ///
    /// This is the opt-out from [`create`](MemfdSegment::create)'s seals, for a
    /// creator that must resize the file before it shares it (then seal it with
    /// [`add_seals`](MemfdSegment::add_seals)) or that trusts every holder.
    /// Without [`Seals::SHRINK`], any process holding the descriptor can shrink
    /// the file and crash every process that mapped it with `SIGBUS`, and
    /// [`from_sealed_fd`](MemfdSegment::from_sealed_fd) refuses it.
    ///
    /// ```
    /// use shm_sys::memfd::{MemfdSegment, Seals};
    ///
    /// let memfd = MemfdSegment::create_with_seals("growing", 4096, Seals::NONE)?;
    /// memfd.set_size(8192)?;
    /// memfd.add_seals(MemfdSegment::DEFAULT_SEALS)?; // before sharing it
    /// # Ok::<(), shm_sys::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`create`](MemfdSegment::create); a zero size is refused only when
    /// `seals` contains [`Seals::GROW`]. The descriptor is closed on failure.
    ///
    /// # References
    /// - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) (`F_ADD_SEALS`)
    #[doc(alias = "memfd_create")]
    pub fn create_with_seals(name: &str, size: usize, seals: Seals) -> Result<MemfdSegment> {
        let target = Target::Memfd(name.to_owned());
        if name.contains('\0') || name.len() > 249 {
            return Err(Error::InvalidArgument {
                op: "memfd_create",
                target,
                what: "the name must be at most 249 bytes without NUL".into(),
            });
        }
        if size == 0 && seals.contains(Seals::GROW) {
            return Err(Error::InvalidArgument {
                op: "memfd_create",
                target,
                what: "a memfd sealed against growing needs a non-zero size".into(),
            });
        }
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(|errno| {
                Error::from_errno("memfd_create", target.clone(), errno.into(), None)
            })?;
        set_file_size(fd.as_fd(), size, &target)?;
        let segment = MemfdSegment {
            fd,
            name: name.to_owned(),
        };
        if seals != Seals::NONE {
            segment.add_seals(seals)?;
        }
        Ok(segment)
    }

    /// Wraps a memfd descriptor received from another process after checking
    /// that it is sealed against shrinking (`F_GET_SEALS` shows
    /// `F_SEAL_SHRINK`); `name` labels it in errors.
    ///
    /// This is how to open a memfd whose sender is not trusted with its size:
    /// once the check passes, no process can shrink the file, because seals are
    /// never removed. Growing is harmless to a mapping, so it is not required.
    ///
    /// # Errors
    ///
    /// [`Error::NotSealed`], naming the memfd and the descriptor number, if the
    /// file could still be shrunk; [`Error::InvalidArgument`] if the descriptor
    /// is not a memfd (or other shmem file) at all. The descriptor is closed.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) (`F_GET_SEALS`)
    /// - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
    #[doc(alias = "F_GET_SEALS")]
    pub fn from_sealed_fd(fd: OwnedFd, name: &str) -> Result<MemfdSegment> {
        let segment = MemfdSegment::from_fd(fd, name);
        let raw_fd = segment.fd.as_raw_fd();
        let found = rustix::fs::fcntl_get_seals(&segment.fd)
            .map(|flags| Seals(flags.bits()))
            .map_err(|errno| match errno {
                rustix::io::Errno::INVAL => Error::InvalidArgument {
                    op: "fcntl(F_GET_SEALS)",
                    target: segment.target(),
                    what: format!("fd {raw_fd} is not a memfd (it supports no seals)"),
                },
                other => {
                    Error::from_errno("fcntl(F_GET_SEALS)", segment.target(), other.into(), None)
                }
            })?;
        if !found.contains(Seals::SHRINK) {
            return Err(Error::NotSealed {
                op: "fcntl(F_GET_SEALS)",
                target: segment.target(),
                fd: raw_fd,
                missing: Seals::SHRINK,
                found,
            });
        }
        Ok(segment)
    }

    /// Wraps a memfd descriptor without looking at its seals; `name` labels it
    /// in errors.
    ///
    /// Use it for a descriptor this process created, or whose sender is trusted
    /// with the size: if the file is not sealed against shrinking, any holder of
    /// it can make accesses to a [`Mapping`] of it raise `SIGBUS`. For a
    /// descriptor received from a peer, prefer
    /// [`from_sealed_fd`](MemfdSegment::from_sealed_fd).
    pub fn from_fd(fd: OwnedFd, name: &str) -> MemfdSegment {
        MemfdSegment {
            fd,
            name: name.to_owned(),
        }
    }

    /// Gives up the descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    fn target(&self) -> Target {
        Target::Memfd(self.name.clone())
    }

    /// The current size in bytes.
    ///
    /// # References
    /// - [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
    pub fn size(&self) -> Result<usize> {
        file_size(self.fd.as_fd(), &self.target())
    }

    /// Changes the size (`ftruncate`). Only a memfd made with
    /// [`create_with_seals`](MemfdSegment::create_with_seals) without the size
    /// seals can be resized.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) if a seal forbids the change, as
    /// [`DEFAULT_SEALS`](MemfdSegment::DEFAULT_SEALS) do.
    ///
    /// # References
    /// - [`ftruncate(2)`](https://man7.org/linux/man-pages/man2/ftruncate.2.html)
    pub fn set_size(&self, size: usize) -> Result<()> {
        set_file_size(self.fd.as_fd(), size, &self.target())
    }

    /// Adds seals (`F_ADD_SEALS`).
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if [`Seals::SEAL`] is already set (as after
    /// [`create`](MemfdSegment::create)), `EBUSY`
    /// (as [`Error::Os`]) for [`Seals::WRITE`] while a writable mapping exists.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) (`F_ADD_SEALS`)
    #[doc(alias = "F_ADD_SEALS")]
    pub fn add_seals(&self, seals: Seals) -> Result<()> {
        rustix::fs::fcntl_add_seals(&self.fd, SealFlags::from_bits_retain(seals.0)).map_err(
            |errno| Error::from_errno("fcntl(F_ADD_SEALS)", self.target(), errno.into(), None),
        )
    }

    /// The seals in force (`F_GET_SEALS`).
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) (`F_GET_SEALS`)
    #[doc(alias = "F_GET_SEALS")]
    pub fn seals(&self) -> Result<Seals> {
        rustix::fs::fcntl_get_seals(&self.fd)
            .map(|flags| Seals(flags.bits()))
            .map_err(|errno| {
                Error::from_errno("fcntl(F_GET_SEALS)", self.target(), errno.into(), None)
            })
    }

    /// Maps the whole memfd for reading and writing.
    ///
    /// # References
    /// - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn map(&self) -> Result<Mapping> {
        map_whole(self.fd.as_fd(), Access::ReadWrite, &self.target())
    }

    /// Maps the whole memfd read-only.
    ///
    /// # References
    /// - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn map_read_only(&self) -> Result<Mapping> {
        map_whole(self.fd.as_fd(), Access::ReadOnly, &self.target())
    }
}

impl AsFd for MemfdSegment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_is_created_sealed_at_its_size() {
        let memfd = MemfdSegment::create("unit-default", 8192).unwrap();
        assert_eq!(memfd.seals().unwrap(), MemfdSegment::DEFAULT_SEALS);
        for size in [0, 4096, 16384] {
            let err = memfd.set_size(size).unwrap_err();
            assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        }
        assert_eq!(memfd.size().unwrap(), 8192);
        // F_SEAL_SEAL: the set is final.
        let err = memfd.add_seals(Seals::FUTURE_WRITE).unwrap_err();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        let err = MemfdSegment::create("unit-empty", 0).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }

    #[test]
    fn seals_debug_names_each_seal() {
        assert_eq!(format!("{:?}", Seals::NONE), "Seals(NONE)");
        assert_eq!(
            format!("{:?}", MemfdSegment::DEFAULT_SEALS),
            "Seals(SEAL | SHRINK | GROW)"
        );
    }

    #[test]
    fn memfd_seals_refuse_shrink_and_grow() {
        let memfd = MemfdSegment::create_with_seals("unit", 8192, Seals::NONE).unwrap();
        assert_eq!(memfd.seals().unwrap(), Seals::NONE);
        memfd.add_seals(Seals::SHRINK).unwrap();
        let err = memfd.set_size(4096).unwrap_err();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        memfd.set_size(16384).unwrap();
        memfd.add_seals(Seals::GROW).unwrap();
        assert!(memfd.set_size(32768).is_err());
        assert_eq!(memfd.size().unwrap(), 16384);
        assert!(memfd.seals().unwrap().contains(Seals::SHRINK | Seals::GROW));
    }

    #[test]
    fn empty_memfd_cannot_be_mapped() {
        let memfd = MemfdSegment::create_with_seals("empty", 0, Seals::NONE).unwrap();
        let err = memfd.map().unwrap_err();
        assert!(matches!(err, Error::InvalidSize { size: 0, .. }), "{err:?}");
    }
}
