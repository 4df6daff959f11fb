//! POSIX shared memory (`shm_open`) and anonymous `memfd` segments, mapped with
//! `mmap` into the same [`Mapping`] type System V attachments use.
//!
//! A [`PosixSegment`] is a named object under `/dev/shm`: any process that knows
//! the name opens it. A [`MemfdSegment`] has no name in any namespace: other
//! processes get it by inheriting the file descriptor or receiving it over a Unix
//! socket, and it disappears with the last descriptor and mapping. Its size can
//! be sealed, so no peer can shrink it under a mapping (which would make accesses
//! raise `SIGBUS`).
//!
//! ```
//! use shm_sys::posix::{MemfdSegment, PosixSegment, Seals};
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
//!
//! let memfd = MemfdSegment::create("doc", 4096)?;
//! memfd.add_seals(Seals::SHRINK | Seals::GROW)?;
//! assert!(memfd.set_size(0).is_err());
//! # Ok::<(), shm_sys::Error>(())
//! ```

use std::fmt;
use std::ops::BitOr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
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
fn file_size(fd: BorrowedFd<'_>, target: &Target) -> Result<usize> {
    let stat = rustix::fs::fstat(fd)
        .map_err(|errno| Error::from_errno("fstat", target.clone(), errno.into(), None))?;
    usize::try_from(stat.st_size).map_err(|_| Error::InvalidArgument {
        op: "fstat",
        target: target.clone(),
        what: format!("size {} does not fit in usize", stat.st_size),
    })
}

/// Sets the size of the object behind `fd` with `ftruncate`.
fn set_file_size(fd: BorrowedFd<'_>, size: usize, target: &Target) -> Result<()> {
    rustix::fs::ftruncate(fd, size as u64)
        .map_err(|errno| Error::from_errno("ftruncate", target.clone(), errno.into(), Some(size)))
}

/// Maps the whole object behind `fd`, shared.
fn map_whole(fd: BorrowedFd<'_>, access: Access, target: &Target) -> Result<Mapping> {
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

/// File seals for a memfd (`F_SEAL_*`): once added, a seal can never be removed.
///
/// ```
/// use shm_sys::posix::Seals;
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
        write!(f, "Seals({})", set.join(" | "))
    }
}

/// An anonymous shared-memory file (`memfd_create`), sealable.
///
/// It has no name other processes can look up: share it by letting a child
/// inherit the descriptor or by sending it over a Unix socket, then wrap it with
/// [`MemfdSegment::from_fd`]. The memory lives as long as any descriptor or
/// mapping of it.
#[derive(Debug)]
pub struct MemfdSegment {
    fd: OwnedFd,
    name: String,
}

impl MemfdSegment {
    /// Creates a memfd of `size` bytes that allows sealing and is closed on
    /// `exec` (`MFD_ALLOW_SEALING | MFD_CLOEXEC`). The name is only a label,
    /// shown in `/proc/<pid>/fd`.
    ///
    /// # References
    /// - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
    #[doc(alias = "memfd_create")]
    pub fn create(name: &str, size: usize) -> Result<MemfdSegment> {
        let target = Target::Memfd(name.to_owned());
        if name.contains('\0') || name.len() > 249 {
            return Err(Error::InvalidArgument {
                op: "memfd_create",
                target,
                what: "the name must be at most 249 bytes without NUL".into(),
            });
        }
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(|errno| {
                Error::from_errno("memfd_create", target.clone(), errno.into(), None)
            })?;
        set_file_size(fd.as_fd(), size, &target)?;
        Ok(MemfdSegment {
            fd,
            name: name.to_owned(),
        })
    }

    /// Wraps a memfd descriptor received from another process; `name` labels it
    /// in errors.
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

    /// Changes the size (`ftruncate`).
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) if a seal forbids the change.
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
    /// [`Error::PermissionDenied`] if [`Seals::SEAL`] is already set, `EBUSY`
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

    #[test]
    fn memfd_seals_refuse_shrink_and_grow() {
        let memfd = MemfdSegment::create("unit", 8192).unwrap();
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
        let memfd = MemfdSegment::create("empty", 0).unwrap();
        let err = memfd.map().unwrap_err();
        assert!(matches!(err, Error::InvalidSize { size: 0, .. }), "{err:?}");
    }
}
