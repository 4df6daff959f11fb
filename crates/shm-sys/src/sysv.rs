//! System V shared memory: `shmget`, `shmat`, `shmdt`, `shmctl`.
//!
//! A [`Segment`] is a handle to a segment by its id; it owns nothing, so dropping
//! it changes nothing. [`Segment::attach`] maps the segment and returns a
//! [`Mapping`] that detaches on drop. Removal ([`Segment::remove`]) is always
//! explicit: System V segments outlive the processes that made them, which is
//! the point of them.
//!
//! ```
//! use shm_sys::{Key, Mode};
//! use shm_sys::sysv::Segment;
//!
//! // A key unlikely to be in use: this doc-test's process id.
//! let key = Key::new(0x7e57_0000 | (std::process::id() as i32 & 0xffff));
//! let segment = Segment::options(key).size(1 << 16).mode(Mode::new(0o640)).create()?;
//!
//! // Any process that knows the key finds the same segment.
//! let same = Segment::open(key)?;
//! let mapping = same.attach()?;
//!
//! // Removed while attached: the key is free again, the memory lives until the
//! // last detach.
//! segment.remove()?;
//! let info = segment.stat()?;
//! assert_eq!(same.id(), segment.id());
//! assert_eq!((info.size, info.nattch, info.mode), (1 << 16, 1, Mode::new(0o640)));
//! assert!(info.marked_for_removal);
//! drop(mapping);
//! # Ok::<(), shm_sys::Error>(())
//! ```

use std::ptr::NonNull;
use std::time::{Duration, SystemTime};

use crate::error::{Errno, Error, Result, Target};
use crate::key::Key;
use crate::libc_sysv;
use crate::mapping::{Mapping, Release};
use crate::mode::Mode;

/// Read-write or read-only access, for attaching and opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Read and write.
    #[default]
    ReadWrite,
    /// Read only (`SHM_RDONLY`; writes raise `SIGSEGV`).
    ReadOnly,
}

impl Access {
    /// The permission bits `shmget` checks against the segment's mode.
    fn requested_bits(self) -> i32 {
        match self {
            Access::ReadWrite => 0o600,
            Access::ReadOnly => 0o400,
        }
    }
}

/// How to create or open a System V segment: size, permissions, page options.
///
/// Made by [`Segment::options`]; finish with [`create`](SegmentOptions::create),
/// [`open`](SegmentOptions::open) or
/// [`open_or_create`](SegmentOptions::open_or_create).
///
/// ```
/// use shm_sys::{Key, Mode};
/// use shm_sys::sysv::Segment;
///
/// let segment = Segment::options(Key::PRIVATE)
///     .size(1 << 20)
///     .mode(Mode::GROUP_RW)
///     .no_reserve(true)
///     .create()?;
/// let info = segment.stat()?;
/// segment.remove()?;
/// assert_eq!(info.mode, Mode::GROUP_RW);
/// # Ok::<(), shm_sys::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    key: Key,
    size: usize,
    mode: Mode,
    access: Access,
    huge_pages: bool,
    no_reserve: bool,
}

impl SegmentOptions {
    /// Size in bytes. Required to create; when opening, a non-zero size is a
    /// minimum that the existing segment must meet ([`Error::InvalidSize`] if not).
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Permission bits for a new segment. Default [`Mode::OWNER_RW`] (`0o600`).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The access the caller means to use. When opening an existing segment,
    /// `shmget` checks it against the segment's mode, so a process without that
    /// access gets [`Error::PermissionDenied`] at open rather than at attach.
    /// Default [`Access::ReadWrite`].
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Back a new segment with huge pages (`SHM_HUGETLB`). The kernel needs huge
    /// pages reserved (`/proc/sys/vm/nr_hugepages`) and the caller needs
    /// `CAP_IPC_LOCK` or membership of `vm.hugetlb_shm_group`; otherwise creation
    /// fails with [`Error::OutOfResources`] or [`Error::PermissionDenied`].
    #[doc(alias = "SHM_HUGETLB")]
    pub fn huge_pages(mut self, huge_pages: bool) -> Self {
        self.huge_pages = huge_pages;
        self
    }

    /// Do not reserve swap space for a new segment (`SHM_NORESERVE`): writing
    /// pages may then fail with `SIGSEGV` when memory runs out.
    #[doc(alias = "SHM_NORESERVE")]
    pub fn no_reserve(mut self, no_reserve: bool) -> Self {
        self.no_reserve = no_reserve;
        self
    }

    fn creation_flags(&self) -> i32 {
        let mut flags = libc::IPC_CREAT | libc::IPC_EXCL | i32::from(self.mode.bits());
        if self.huge_pages {
            flags |= libc::SHM_HUGETLB;
        }
        if self.no_reserve {
            flags |= libc::SHM_NORESERVE;
        }
        flags
    }

    /// Creates a new segment (`IPC_CREAT | IPC_EXCL`); with [`Key::PRIVATE`], always
    /// a new segment that only its id finds.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if the key is taken, [`Error::InvalidSize`] for a
    /// size of 0 or above `shmmax`, [`Error::OutOfResources`] past `shmmni` or
    /// `shmall`; each names the key.
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    #[doc(alias = "shmget")]
    #[doc(alias = "IPC_CREAT")]
    #[doc(alias = "IPC_EXCL")]
    pub fn create(&self) -> Result<Segment> {
        if self.size == 0 {
            return Err(Error::InvalidArgument {
                op: "shmget",
                target: Target::Key(self.key),
                what: "a new segment needs a non-zero size".into(),
            });
        }
        let id = libc_sysv::shmget(self.key.raw(), self.size, self.creation_flags())
            .map_err(|errno| self.error(errno))?;
        Ok(Segment { id, key: self.key })
    }

    /// Opens the existing segment with this key, checking the requested
    /// [`access`](SegmentOptions::access) and, if non-zero, the minimum size.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has the key, [`Error::PermissionDenied`]
    /// if its mode does not grant the access, [`Error::InvalidSize`] if it is
    /// smaller than the size asked for, [`Error::InvalidArgument`] for
    /// [`Key::PRIVATE`] (which names no existing segment: use
    /// [`Segment::from_id`]).
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    #[doc(alias = "shmget")]
    pub fn open(&self) -> Result<Segment> {
        if self.key.is_private() {
            return Err(Error::InvalidArgument {
                op: "shmget",
                target: Target::Key(self.key),
                what: "IPC_PRIVATE names no existing segment; open it by id".into(),
            });
        }
        let id = libc_sysv::shmget(self.key.raw(), self.size, self.access.requested_bits())
            .map_err(|errno| self.error(errno))?;
        Ok(Segment { id, key: self.key })
    }

    /// Opens the segment with this key, creating it if there is none. Returns the
    /// segment and whether this call created it, so that exactly one of many racing
    /// processes knows to initialise it.
    ///
    /// # Errors
    ///
    /// As [`create`](SegmentOptions::create) and [`open`](SegmentOptions::open).
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    pub fn open_or_create(&self) -> Result<(Segment, bool)> {
        if self.key.is_private() {
            return self.create().map(|segment| (segment, true));
        }
        // Another process can remove the segment between our failed create and our
        // open, and create it again after; each turn of the loop needs such a race,
        // so a few turns are plenty.
        let mut last_error = None;
        for _ in 0..64 {
            match self.create() {
                Ok(segment) => return Ok((segment, true)),
                Err(Error::AlreadyExists { .. }) => {}
                Err(other) => return Err(other),
            }
            match self.open() {
                Ok(segment) => return Ok((segment, false)),
                Err(error @ Error::NotFound { .. }) => last_error = Some(error),
                Err(other) => return Err(other),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::InvalidArgument {
            op: "shmget",
            target: Target::Key(self.key),
            what: "the segment kept appearing and disappearing".into(),
        }))
    }

    fn error(&self, errno: Errno) -> Error {
        Error::from_errno("shmget", Target::Key(self.key), errno, Some(self.size))
    }
}

/// A System V shared-memory segment, by id.
///
/// The handle owns nothing: dropping it neither detaches nor removes. Attach
/// with [`attach`](Segment::attach); remove with [`remove`](Segment::remove).
///
/// ```
/// use shm_sys::sysv::Segment;
///
/// let segment = Segment::create_private(4096)?;
/// let info = segment.stat()?;
/// segment.remove()?;
/// assert_eq!(info.cpid, std::process::id());
/// assert_eq!(info.nattch, 0);
/// # Ok::<(), shm_sys::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    id: i32,
    key: Key,
}

impl Segment {
    /// Options for creating or opening the segment with `key`.
    pub fn options(key: Key) -> SegmentOptions {
        SegmentOptions {
            key,
            size: 0,
            mode: Mode::default(),
            access: Access::default(),
            huge_pages: false,
            no_reserve: false,
        }
    }

    /// Creates a new segment of `size` bytes with mode `0o600`, failing if the key
    /// is taken. See [`SegmentOptions::create`].
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    #[doc(alias = "shmget")]
    pub fn create(key: Key, size: usize) -> Result<Segment> {
        Segment::options(key).size(size).create()
    }

    /// Creates a new `IPC_PRIVATE` segment of `size` bytes with mode `0o600`.
    /// Other processes find it by its [`id`](Segment::id).
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    #[doc(alias = "IPC_PRIVATE")]
    pub fn create_private(size: usize) -> Result<Segment> {
        Segment::options(Key::PRIVATE).size(size).create()
    }

    /// Opens the existing segment with `key` for reading and writing. See
    /// [`SegmentOptions::open`].
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    pub fn open(key: Key) -> Result<Segment> {
        Segment::options(key).open()
    }

    /// Opens the existing segment with `key` for reading only.
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    pub fn open_read_only(key: Key) -> Result<Segment> {
        Segment::options(key).access(Access::ReadOnly).open()
    }

    /// Opens the segment with `key` or creates it with `size` bytes and mode
    /// `0o600`; the flag says whether this call created it. See
    /// [`SegmentOptions::open_or_create`].
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    pub fn open_or_create(key: Key, size: usize) -> Result<(Segment, bool)> {
        Segment::options(key).size(size).open_or_create()
    }

    /// The segment with this id, checked to exist (and to be readable by us) with
    /// `IPC_STAT`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this id, [`Error::PermissionDenied`]
    /// if we may not read it.
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    pub fn from_id(id: i32) -> Result<Segment> {
        let info = Segment {
            id,
            key: Key::PRIVATE,
        }
        .stat()?;
        Ok(Segment { id, key: info.key })
    }

    /// The segment identifier (`shmid`).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key this handle was opened with ([`Key::PRIVATE`] for private segments).
    pub fn key(&self) -> Key {
        self.key
    }

    fn target(&self) -> Target {
        Target::Id(self.id)
    }

    fn error(&self, op: &'static str, errno: Errno) -> Error {
        Error::from_errno(op, self.target(), errno, None)
    }

    /// Attaches the segment for reading and writing, at an address the kernel picks.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] without read and write permission,
    /// [`Error::NotFound`] if the segment is gone, [`Error::OutOfResources`] if
    /// the address space is full.
    ///
    /// # References
    /// - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    #[doc(alias = "shmat")]
    pub fn attach(&self) -> Result<Mapping> {
        self.attach_with(Access::ReadWrite, None)
    }

    /// Attaches the segment read-only (`SHM_RDONLY`): reads work, writes raise
    /// `SIGSEGV`, and [`Mapping::as_mut_ptr`] returns `None`.
    ///
    /// # References
    /// - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    #[doc(alias = "SHM_RDONLY")]
    pub fn attach_read_only(&self) -> Result<Mapping> {
        self.attach_with(Access::ReadOnly, None)
    }

    /// Attaches with the given access, at `address` if one is given.
    ///
    /// A requested address must be aligned to `SHMLBA` (the page size on x86-64)
    /// and the range must be free: this never passes `SHM_REMAP`, which would let
    /// the kernel replace memory that Rust code owns. `SHM_RND` is not offered
    /// either: round the address down yourself if you need to.
    ///
    /// # Errors
    ///
    /// As [`attach`](Segment::attach), and [`Error::InvalidArgument`] if the
    /// address is misaligned or the range is already mapped.
    ///
    /// # References
    /// - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    #[doc(alias = "shmat")]
    pub fn attach_with(&self, access: Access, address: Option<NonNull<u8>>) -> Result<Mapping> {
        let read_only = access == Access::ReadOnly;
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        let requested = address.map_or(std::ptr::null(), |a| a.as_ptr().cast_const().cast());
        // SAFETY: the flags never include SHM_REMAP, so the kernel maps into free
        // address space or fails.
        let start = unsafe { libc_sysv::shmat(self.id, requested, flags) }.map_err(|errno| {
            if errno.raw() == libc::EINVAL && address.is_some() {
                Error::InvalidArgument {
                    op: "shmat",
                    target: self.target(),
                    what: format!(
                        "address {:p} is not SHMLBA-aligned or overlaps a mapping ({errno})",
                        requested
                    ),
                }
            } else {
                self.error("shmat", errno)
            }
        })?;
        let start = NonNull::new(start).ok_or_else(|| Error::InvalidArgument {
            op: "shmat",
            target: self.target(),
            what: "the kernel returned a null address".into(),
        })?;
        // SAFETY: `start` is a fresh shmat result with the access we asked for; the
        // length is filled in from IPC_STAT below, before any use.
        let mut mapping =
            unsafe { Mapping::new(start, 0, read_only, Release::Detach, self.target()) };
        // While we are attached the segment cannot be destroyed, so this stat
        // describes the very segment we mapped.
        let size =
            libc_sysv::stat(self.id).map_err(|errno| self.error("shmctl(IPC_STAT)", errno))?;
        mapping.set_len(size.shm_segsz);
        Ok(mapping)
    }

    /// Everything the kernel knows about the segment (`IPC_STAT`).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the segment is gone, [`Error::PermissionDenied`]
    /// without read permission.
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "shmctl")]
    #[doc(alias = "IPC_STAT")]
    pub fn stat(&self) -> Result<SegmentInfo> {
        let ds = libc_sysv::stat(self.id).map_err(|errno| self.error("shmctl(IPC_STAT)", errno))?;
        Ok(SegmentInfo::from_raw(self.id, &ds))
    }

    /// The segment's size in bytes (from `IPC_STAT`).
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    pub fn size(&self) -> Result<usize> {
        self.stat().map(|info| info.size)
    }

    /// Changes the permission bits (`IPC_SET`), keeping the owner.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] unless the caller is the owner, the creator, or
    /// privileged (`CAP_SYS_ADMIN`).
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "IPC_SET")]
    pub fn set_mode(&self, mode: Mode) -> Result<()> {
        let info = self.stat()?;
        self.set_permissions(info.uid, info.gid, mode)
    }

    /// Changes the owner (`IPC_SET`), keeping the mode.
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "IPC_SET")]
    pub fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        let info = self.stat()?;
        self.set_permissions(uid, gid, info.mode)
    }

    /// Sets owner and mode together (`IPC_SET`): one call, so no other setter can
    /// interleave between reading and writing.
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "IPC_SET")]
    pub fn set_permissions(&self, uid: u32, gid: u32, mode: Mode) -> Result<()> {
        libc_sysv::set(self.id, uid, gid, mode.bits())
            .map_err(|errno| self.error("shmctl(IPC_SET)", errno))
    }

    /// Marks the segment for removal (`IPC_RMID`). It disappears once the last
    /// process detaches; until then attached mappings keep working, its key
    /// becomes `IPC_PRIVATE` (so `open` no longer finds it) and
    /// [`SegmentInfo::marked_for_removal`] is set.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it is already gone, [`Error::PermissionDenied`]
    /// unless the caller is the owner, the creator, or privileged.
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "IPC_RMID")]
    pub fn remove(&self) -> Result<()> {
        libc_sysv::control(self.id, libc::IPC_RMID)
            .map_err(|errno| self.error("shmctl(IPC_RMID)", errno))
    }

    /// Locks the segment's pages in memory so they are never swapped out
    /// (`SHM_LOCK`; needs `CAP_IPC_LOCK` or a sufficient `RLIMIT_MEMLOCK`).
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "SHM_LOCK")]
    pub fn lock_pages(&self) -> Result<()> {
        libc_sysv::control(self.id, libc_sysv::SHM_LOCK)
            .map_err(|errno| self.error("shmctl(SHM_LOCK)", errno))
    }

    /// Undoes [`lock_pages`](Segment::lock_pages) (`SHM_UNLOCK`).
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "SHM_UNLOCK")]
    pub fn unlock_pages(&self) -> Result<()> {
        libc_sysv::control(self.id, libc_sysv::SHM_UNLOCK)
            .map_err(|errno| self.error("shmctl(SHM_UNLOCK)", errno))
    }
}

/// Everything `IPC_STAT` reports about a segment: every field of `shmid_ds`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Segment identifier (`shmid`).
    pub id: i32,
    /// Key (`shm_perm.__key`); [`Key::PRIVATE`] once removed.
    pub key: Key,
    /// Size in bytes (`shm_segsz`).
    pub size: usize,
    /// Permission bits (`shm_perm.mode & 0o777`).
    pub mode: Mode,
    /// `SHM_DEST`: removed, and freed when the last process detaches.
    pub marked_for_removal: bool,
    /// `SHM_LOCKED`: pages locked in memory.
    pub locked: bool,
    /// Owner's user id (`shm_perm.uid`).
    pub uid: u32,
    /// Owner's group id (`shm_perm.gid`).
    pub gid: u32,
    /// Creator's user id (`shm_perm.cuid`).
    pub cuid: u32,
    /// Creator's group id (`shm_perm.cgid`).
    pub cgid: u32,
    /// Slot usage sequence number (`shm_perm.__seq`).
    pub sequence: u16,
    /// Process id of the creator (`shm_cpid`).
    pub cpid: u32,
    /// Process id of the last `shmat` or `shmdt` (`shm_lpid`); `None` before the first.
    pub lpid: Option<u32>,
    /// Number of current attachments (`shm_nattch`).
    pub nattch: u64,
    /// Time of the last `shmat` (`shm_atime`).
    pub atime: Option<SystemTime>,
    /// Time of the last `shmdt` (`shm_dtime`).
    pub dtime: Option<SystemTime>,
    /// Time of creation or the last `IPC_SET` (`shm_ctime`).
    pub ctime: Option<SystemTime>,
}

fn time_from_raw(seconds: libc::time_t) -> Option<SystemTime> {
    let seconds = u64::try_from(seconds).ok().filter(|&s| s != 0)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

impl SegmentInfo {
    fn from_raw(id: i32, ds: &libc::shmid_ds) -> SegmentInfo {
        let perm = &ds.shm_perm;
        SegmentInfo {
            id,
            key: Key::new(perm.__key),
            size: ds.shm_segsz,
            mode: Mode::from_mode_word(u32::from(perm.mode)),
            marked_for_removal: perm.mode & libc_sysv::SHM_DEST != 0,
            locked: perm.mode & libc_sysv::SHM_LOCKED != 0,
            uid: perm.uid,
            gid: perm.gid,
            cuid: perm.cuid,
            cgid: perm.cgid,
            sequence: perm.__seq,
            cpid: ds.shm_cpid as u32,
            lpid: (ds.shm_lpid > 0).then_some(ds.shm_lpid as u32),
            nattch: ds.shm_nattch,
            atime: time_from_raw(ds.shm_atime),
            dtime: time_from_raw(ds.shm_dtime),
            ctime: time_from_raw(ds.shm_ctime),
        }
    }
}

/// Every System V segment on the host (in this IPC namespace), as `ipcs -m` shows
/// them, including segments we may not attach and segments marked for removal.
///
/// On kernels before 4.17 segments we may not read are left out.
///
/// ```
/// use shm_sys::sysv::{self, Segment};
///
/// let segment = Segment::create_private(4096)?;
/// let listed = sysv::list();
/// segment.remove()?;
/// assert!(listed?.iter().any(|info| info.id == segment.id()));
/// # Ok::<(), shm_sys::Error>(())
/// ```
///
/// # References
/// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html) (`SHM_INFO`, `SHM_STAT_ANY`)
#[doc(alias = "SHM_STAT")]
#[doc(alias = "SHM_STAT_ANY")]
#[doc(alias = "ipcs")]
pub fn list() -> Result<Vec<SegmentInfo>> {
    let (highest_index, _) = libc_sysv::usage()
        .map_err(|errno| Error::from_errno("shmctl(SHM_INFO)", Target::Host, errno, None))?;
    let mut segments = Vec::new();
    for index in 0..=highest_index {
        match libc_sysv::stat_by_index(index) {
            Ok((id, ds)) => segments.push(SegmentInfo::from_raw(id, &ds)),
            // An unused slot, a segment removed meanwhile, or (before 4.17) one we
            // may not read.
            Err(errno) if matches!(errno.raw(), libc::EINVAL | libc::EIDRM | libc::EACCES) => {}
            Err(errno) => {
                return Err(Error::from_errno(
                    "shmctl(SHM_STAT)",
                    Target::Host,
                    errno,
                    None,
                ))
            }
        }
    }
    Ok(segments)
}

/// The system's System V shared-memory limits (`IPC_INFO`), as
/// `/proc/sys/kernel/shm{max,all,mni}` and `ipcs -lm` show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest segment, in bytes (`shmmax`).
    pub shmmax: u64,
    /// Smallest segment, in bytes (`shmmin`, always 1 on Linux).
    pub shmmin: u64,
    /// Most segments on the host (`shmmni`).
    pub shmmni: u64,
    /// Most segments one process may attach (`shmseg`).
    pub shmseg: u64,
    /// Most shared memory in all, in pages (`shmall`).
    pub shmall: u64,
}

/// Reads the system limits.
///
/// ```
/// let limits = shm_sys::sysv::limits()?;
/// assert!(limits.shmmni > 0 && limits.shmmax > 0);
/// # Ok::<(), shm_sys::Error>(())
/// ```
///
/// # References
/// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html) (`IPC_INFO`)
#[doc(alias = "IPC_INFO")]
#[doc(alias = "shmmax")]
#[doc(alias = "shmall")]
#[doc(alias = "shmmni")]
pub fn limits() -> Result<Limits> {
    let (_, raw) = libc_sysv::limits()
        .map_err(|errno| Error::from_errno("shmctl(IPC_INFO)", Target::Host, errno, None))?;
    Ok(Limits {
        shmmax: raw.shmmax,
        shmmin: raw.shmmin,
        shmmni: raw.shmmni,
        shmseg: raw.shmseg,
        shmall: raw.shmall,
    })
}

/// The host's current System V shared-memory use (`SHM_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Segments that exist now.
    pub segments: u64,
    /// Pages allocated to segments in all.
    pub total_pages: u64,
    /// Pages resident in memory.
    pub resident_pages: u64,
    /// Pages swapped out.
    pub swapped_pages: u64,
}

/// Reads the host's current use.
///
/// ```
/// let usage = shm_sys::sysv::usage()?;
/// assert!(usage.segments <= shm_sys::sysv::limits()?.shmmni);
/// # Ok::<(), shm_sys::Error>(())
/// ```
///
/// # References
/// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
#[doc(alias = "SHM_INFO")]
pub fn usage() -> Result<Usage> {
    let (_, raw) = libc_sysv::usage()
        .map_err(|errno| Error::from_errno("shmctl(SHM_INFO)", Target::Host, errno, None))?;
    Ok(Usage {
        segments: raw.used_ids.max(0) as u64,
        total_pages: raw.shm_tot,
        resident_pages: raw.shm_rss,
        swapped_pages: raw.shm_swp,
    })
}
