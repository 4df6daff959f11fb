//! POSIX shared memory (`shm_open`): a named object under `/dev/shm`, mapped
//! with `mmap` into the same [`Mapping`] type System V attachments use. Any
//! process that knows the name opens it.
//!
//! A peer that shrinks an object under a mapping makes every access past the
//! new end raise `SIGBUS`, which kills the process, and Linux has no seal for
//! `shm_open` objects (see [`PosixSegment`]); a sealed
//! [`MemfdSegment`](crate::memfd::MemfdSegment) cannot shrink.
//!
//! ```
//! use shm_sys::posix::PosixSegment;
//!
//! let name = format!("/shm-sys-doc-{}", std::process::id());
//! let segment = PosixSegment::create(&name, 4096)?;
//! let opened = PosixSegment::open(&name)?;
//! // Unlinking removes the name; open handles and mappings keep working.
//! PosixSegment::unlink(&name)?;
//! let mapping = opened.map()?;
//! mapping.write_at(0, b"hi")?;
//! let mut back = [0; 2];
//! segment.map()?.read_at(0, &mut back)?;
//! assert_eq!(&back, b"hi");
//! # Ok::<(), shm_sys::Error>(())
//! ```

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

use crate::error::{Errno, Error, Result, Target};
use crate::mapping::{Mapping, Release};
use crate::mode::Mode;
use crate::sysv::Access;

/// Longest POSIX shm name without its leading slash (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Checks a POSIX shm name and returns it in the canonical `/name` form.
/// A missing leading slash is added; no other slash, `.`/`..` or NUL is allowed.
fn canonical_name(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let problem = if bare.is_empty() {
        Some("the name is empty")
    } else if bare.len() > NAME_MAX {
        Some("the name is longer than 255 bytes")
    } else if bare.contains('/') {
        Some("the name contains '/' after its first character")
    } else if bare.contains('\0') {
        Some("the name contains a NUL byte")
    } else if bare == "." || bare == ".." {
        Some("the name is '.' or '..'")
    } else {
        None
    };
    match problem {
        Some(what) => Err(Error::InvalidArgument {
            op: "shm_open",
            target: Target::PosixName(name.to_owned()),
            what: what.into(),
        }),
        None => Ok(format!("/{bare}")),
    }
}

/// Size of the object behind `fd`, from `fstat`.
pub(crate) fn file_size(fd: BorrowedFd<'_>, target: &Target) -> Result<usize> {
    let stat = rustix::fs::fstat(fd)
        .map_err(|errno| Error::from_errno("fstat", target.clone(), errno.into(), None))?;
    usize::try_from(stat.st_size).map_err(|_| Error::InvalidArgument {
        op: "fstat",
        target: target.clone(),
        what: format!("size {} does not fit in usize", stat.st_size),
    })
}

/// Sets the size of the object behind `fd` with `ftruncate`.
pub(crate) fn set_file_size(fd: BorrowedFd<'_>, size: usize, target: &Target) -> Result<()> {
    rustix::fs::ftruncate(fd, size as u64)
        .map_err(|errno| Error::from_errno("ftruncate", target.clone(), errno.into(), Some(size)))
}

/// Maps the whole object behind `fd`, shared.
pub(crate) fn map_whole(fd: BorrowedFd<'_>, access: Access, target: &Target) -> Result<Mapping> {
    let len = file_size(fd, target)?;
    if len == 0 {
        return Err(Error::InvalidSize {
            op: "mmap",
            target: target.clone(),
            size: 0,
            errno: Errno::from_raw(libc::EINVAL),
        });
    }
    let read_only = access == Access::ReadOnly;
    let protection = if read_only {
        ProtFlags::READ
    } else {
        ProtFlags::READ | ProtFlags::WRITE
    };
    // SAFETY: a null hint lets the kernel choose free address space, so no
    // existing memory is replaced; MAP_SHARED of a shm/memfd file has no other
    // preconditions.
    let start = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            protection,
            MapFlags::SHARED,
            fd,
            0,
        )
    }
    .map_err(|errno| Error::from_errno("mmap", target.clone(), errno.into(), None))?;
    let start = NonNull::new(start.cast::<u8>()).ok_or_else(|| Error::InvalidArgument {
        op: "mmap",
        target: target.clone(),
        what: "the kernel returned a null address".into(),
    })?;
    // SAFETY: a fresh MAP_SHARED mapping of `len` bytes, writable exactly when not
    // read-only, owned by nobody else.
    Ok(unsafe { Mapping::new(start, len, read_only, Release::Unmap, target.clone()) })
}

/// A named POSIX shared-memory object (`shm_open`), living under `/dev/shm`.
///
/// The handle owns an open file descriptor, closed on drop; the object stays
/// until [`PosixSegment::unlink`] and the last descriptor and mapping are gone.
///
/// ## A peer that shrinks the object can crash this process
///
/// Any process that opens the object read-write may `ftruncate` it. Pages past
/// the new end then vanish from every mapping, and the next access to them,
/// through [`Mapping::read_at`], [`Mapping::write_at`] or a lock or ring built
/// on the mapping, raises `SIGBUS` and kills this process. Linux has no
/// mechanism to prevent that for `shm_open` objects: seals exist only for memfds
/// (a tmpfs file from `shm_open` is born with `F_SEAL_SEAL`, so no seal can ever
/// be added to it), and checking the size before each access would still race
/// with the peer. Only permissions help: a peer that can open the object only
/// read-only cannot resize it. Use a [`MemfdSegment`](crate::memfd::MemfdSegment), sealed by default, or a
/// System V segment, whose size is fixed at creation, when peers are not trusted
/// with the size.
#[derive(Debug)]
pub struct PosixSegment {
    fd: OwnedFd,
    name: String,
    access: Access,
}

impl PosixSegment {
    /// Creates a new object of `size` bytes with mode `0o600`, failing if the name
    /// exists (`O_CREAT | O_EXCL`). The name may be given with or without its
    /// leading `/`.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`], [`Error::InvalidArgument`] for a bad name or a
    /// zero size, [`Error::OutOfResources`] if `/dev/shm` is full; each names the
    /// object.
    ///
    /// # References
    /// - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html)
    #[doc(alias = "shm_open")]
    pub fn create(name: &str, size: usize) -> Result<PosixSegment> {
        PosixSegment::create_with_mode(name, size, Mode::default())
    }

    /// Like [`create`](PosixSegment::create) with explicit permission bits. The
    /// mode is applied exactly (with `fchmod`), not filtered by the umask.
    ///
    /// # References
    /// - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html)
    /// - [`fchmod(2)`](https://man7.org/linux/man-pages/man2/fchmod.2.html)
    #[doc(alias = "shm_open")]
    pub fn create_with_mode(name: &str, size: usize, mode: Mode) -> Result<PosixSegment> {
        let name = canonical_name(name)?;
        let target = Target::PosixName(name.clone());
        if size == 0 {
            return Err(Error::InvalidArgument {
                op: "shm_open",
                target,
                what: "a new object needs a non-zero size".into(),
            });
        }
        let raw_mode = rustix::fs::Mode::from_bits_truncate(u32::from(mode.bits()));
        let fd = shm::open(
            name.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            raw_mode,
        )
        .map_err(|errno| Error::from_errno("shm_open", target.clone(), errno.into(), None))?;
        let segment = PosixSegment {
            fd,
            name,
            access: Access::ReadWrite,
        };
        let sized = rustix::fs::fchmod(&segment.fd, raw_mode)
            .map_err(|errno| Error::from_errno("fchmod", target.clone(), errno.into(), None))
            .and_then(|()| set_file_size(segment.fd.as_fd(), size, &target));
        if let Err(error) = sized {
            // Do not leave a half-made object behind.
            let _ = shm::unlink(segment.name.as_str());
            return Err(error);
        }
        Ok(segment)
    }

    /// Opens an existing object for reading and writing.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::PermissionDenied`], or
    /// [`Error::InvalidArgument`] for a bad name.
    ///
    /// # References
    /// - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html)
    #[doc(alias = "shm_open")]
    pub fn open(name: &str) -> Result<PosixSegment> {
        PosixSegment::open_with(name, Access::ReadWrite)
    }

    /// Opens an existing object for reading only.
    ///
    /// # References
    /// - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html)
    #[doc(alias = "shm_open")]
    pub fn open_read_only(name: &str) -> Result<PosixSegment> {
        PosixSegment::open_with(name, Access::ReadOnly)
    }

    fn open_with(name: &str, access: Access) -> Result<PosixSegment> {
        let name = canonical_name(name)?;
        let flags = match access {
            Access::ReadWrite => shm::OFlags::RDWR,
            Access::ReadOnly => shm::OFlags::RDONLY,
        };
        let fd = shm::open(name.as_str(), flags, rustix::fs::Mode::empty()).map_err(|errno| {
            Error::from_errno(
                "shm_open",
                Target::PosixName(name.clone()),
                errno.into(),
                None,
            )
        })?;
        Ok(PosixSegment { fd, name, access })
    }

    /// Removes the name (`shm_unlink`). Open descriptors and mappings keep working;
    /// the memory is freed when the last of them goes.
    ///
    /// # References
    /// - [`shm_unlink(3)`](https://man7.org/linux/man-pages/man3/shm_unlink.3.html)
    #[doc(alias = "shm_unlink")]
    pub fn unlink(name: &str) -> Result<()> {
        let name = canonical_name(name)?;
        shm::unlink(name.as_str()).map_err(|errno| {
            Error::from_errno("shm_unlink", Target::PosixName(name), errno.into(), None)
        })
    }

    /// The name, with its leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn target(&self) -> Target {
        Target::PosixName(self.name.clone())
    }

    /// The current size in bytes (`fstat`).
    ///
    /// # References
    /// - [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
    pub fn size(&self) -> Result<usize> {
        file_size(self.fd.as_fd(), &self.target())
    }

    /// Changes the size (`ftruncate`). Peers that mapped past the new end get
    /// `SIGBUS` when they touch it.
    ///
    /// # References
    /// - [`ftruncate(2)`](https://man7.org/linux/man-pages/man2/ftruncate.2.html)
    pub fn set_size(&self, size: usize) -> Result<()> {
        set_file_size(self.fd.as_fd(), size, &self.target())
    }

    /// Maps the whole object for reading and writing (`mmap`, `MAP_SHARED`).
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if the object was opened read-only,
    /// [`Error::InvalidSize`] if it is empty.
    ///
    /// # References
    /// - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn map(&self) -> Result<Mapping> {
        if self.access == Access::ReadOnly {
            return Err(Error::ReadOnly {
                op: "mmap",
                target: self.target(),
            });
        }
        map_whole(self.fd.as_fd(), Access::ReadWrite, &self.target())
    }

    /// Maps the whole object read-only (`PROT_READ`).
    ///
    /// # References
    /// - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn map_read_only(&self) -> Result<Mapping> {
        map_whole(self.fd.as_fd(), Access::ReadOnly, &self.target())
    }
}

impl AsFd for PosixSegment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_made_canonical() {
        assert_eq!(canonical_name("abc").unwrap(), "/abc");
        assert_eq!(canonical_name("/abc").unwrap(), "/abc");
        for bad in ["", "/", "/a/b", "..", "/.", "a\0b"] {
            let err = canonical_name(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{bad:?}: {err:?}"
            );
        }
        assert!(canonical_name(&"x".repeat(255)).is_ok());
        assert!(canonical_name(&"x".repeat(256)).is_err());
    }
}
