//! The raw System V calls, the only place this crate calls libc.
//!
//! rustix offers no System V IPC, so `shmget`, `shmat`, `shmdt` and `shmctl` come
//! from libc. Each wrapper here returns the raw result or the errno; giving the
//! errno meaning and naming the key or id is the caller's job.

use std::ffi::c_void;
use std::mem::MaybeUninit;

use crate::error::Errno;

/// `shmctl` command: the segment at a kernel index, returning its id (`SHM_STAT`).
const SHM_STAT: i32 = 13;
/// `shmctl` command: usage totals, returning the highest index in use (`SHM_INFO`).
const SHM_INFO: i32 = 14;
/// `shmctl` command: like `SHM_STAT` without the read-permission check (Linux 4.17).
const SHM_STAT_ANY: i32 = 15;
/// `shmctl` command: lock the segment's pages in memory.
pub(crate) const SHM_LOCK: i32 = 11;
/// `shmctl` command: unlock the segment's pages.
pub(crate) const SHM_UNLOCK: i32 = 12;

/// `shm_perm.mode` flag: the segment is marked for removal (`IPC_RMID` done).
pub(crate) const SHM_DEST: u16 = 0o1000;
/// `shm_perm.mode` flag: the segment's pages are locked (`SHM_LOCK` done).
pub(crate) const SHM_LOCKED: u16 = 0o2000;

/// `struct shminfo`, filled by `shmctl(IPC_INFO)` (see `shmctl(2)`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawLimits {
    pub shmmax: libc::c_ulong,
    pub shmmin: libc::c_ulong,
    pub shmmni: libc::c_ulong,
    pub shmseg: libc::c_ulong,
    pub shmall: libc::c_ulong,
    unused: [libc::c_ulong; 4],
}

/// `struct shm_info`, filled by `shmctl(SHM_INFO)` (see `shmctl(2)`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawUsage {
    pub used_ids: libc::c_int,
    pub shm_tot: libc::c_ulong,
    pub shm_rss: libc::c_ulong,
    pub shm_swp: libc::c_ulong,
    swap_attempts: libc::c_ulong,
    swap_successes: libc::c_ulong,
}

// The kernel writes these through a `struct shmid_ds *`; the buffer we pass must be
// at least as large as what it writes. We always pass a `shmid_ds`-sized buffer.
const _: () = assert!(std::mem::size_of::<RawLimits>() <= std::mem::size_of::<libc::shmid_ds>());
const _: () = assert!(std::mem::size_of::<RawUsage>() <= std::mem::size_of::<libc::shmid_ds>());

fn last_errno() -> Errno {
    Errno::from_io(&std::io::Error::last_os_error())
}

/// `shmget(key, size, flags)`.
pub(crate) fn shmget(key: i32, size: usize, flags: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes no pointers; any argument values are safe to pass.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 {
        Err(last_errno())
    } else {
        Ok(id)
    }
}

/// `shmat(id, address, flags)`. Returns the start of the new mapping.
///
/// # Safety
///
/// `flags` must not contain `SHM_REMAP`: with it the kernel replaces whatever was
/// mapped at `address`, possibly memory Rust owns. Without it, a requested address
/// that overlaps an existing mapping fails with `EINVAL` and nothing is touched.
pub(crate) unsafe fn shmat(id: i32, address: *const c_void, flags: i32) -> Result<*mut u8, Errno> {
    debug_assert_eq!(flags & libc::SHM_REMAP, 0);
    // SAFETY: without SHM_REMAP (the caller's contract) the kernel only creates a
    // new mapping in free address space or fails; it never writes existing memory.
    let address = unsafe { libc::shmat(id, address, flags) };
    if address as isize == -1 {
        Err(last_errno())
    } else {
        Ok(address.cast())
    }
}

/// `shmdt(address)`.
///
/// # Safety
///
/// `address` must be the start of a mapping made by `shmat` that nothing will
/// access after this call.
pub(crate) unsafe fn shmdt(address: *const u8) -> Result<(), Errno> {
    // SAFETY: the caller guarantees the range is ours and no longer used.
    let result = unsafe { libc::shmdt(address.cast()) };
    if result < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `shmctl(id, IPC_STAT, ..)`.
pub(crate) fn stat(id: i32) -> Result<libc::shmid_ds, Errno> {
    stat_command(id, libc::IPC_STAT).map(|(_, ds)| ds)
}

/// `shmctl(index, SHM_STAT_ANY, ..)` (or `SHM_STAT` on kernels older than 4.17,
/// which then skips segments we may not read). Returns the segment's id and its
/// description.
pub(crate) fn stat_by_index(index: i32) -> Result<(i32, libc::shmid_ds), Errno> {
    let command = if stat_any_supported() {
        SHM_STAT_ANY
    } else {
        SHM_STAT
    };
    stat_command(index, command)
}

/// Whether the kernel knows `SHM_STAT_ANY` (added in Linux 4.17). An unknown
/// command and an unused index both answer `EINVAL`, so we cannot probe; we read
/// the kernel release once instead.
fn stat_any_supported() -> bool {
    use std::sync::OnceLock;
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (4, 17)
    })
}

fn stat_command(id: i32, command: i32) -> Result<(i32, libc::shmid_ds), Errno> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a valid, writable shmid_ds; the stat commands write at most
    // one shmid_ds into it.
    let result = unsafe { libc::shmctl(id, command, ds.as_mut_ptr()) };
    if result < 0 {
        return Err(last_errno());
    }
    // SAFETY: zeroed is a valid shmid_ds (plain integers), and the kernel filled it.
    Ok((result, unsafe { ds.assume_init() }))
}

/// `shmctl(id, IPC_SET, ..)` with the given owner and mode.
pub(crate) fn set(id: i32, uid: u32, gid: u32, mode: u16) -> Result<(), Errno> {
    let mut ds = stat(id)?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = mode;
    // SAFETY: `ds` is a valid shmid_ds; IPC_SET only reads from it.
    let result = unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) };
    if result < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `shmctl(id, command, NULL)` for the commands that take no buffer:
/// `IPC_RMID`, `SHM_LOCK`, `SHM_UNLOCK`.
pub(crate) fn control(id: i32, command: i32) -> Result<(), Errno> {
    debug_assert!(matches!(command, libc::IPC_RMID | SHM_LOCK | SHM_UNLOCK));
    // SAFETY: these commands ignore the buffer argument, so NULL is fine.
    let result = unsafe { libc::shmctl(id, command, std::ptr::null_mut()) };
    if result < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `shmctl(0, IPC_INFO, ..)`: the system limits, and the highest index in use.
pub(crate) fn limits() -> Result<(i32, RawLimits), Errno> {
    info_command::<RawLimits>(libc::IPC_INFO)
}

/// `shmctl(0, SHM_INFO, ..)`: usage totals, and the highest index in use.
pub(crate) fn usage() -> Result<(i32, RawUsage), Errno> {
    info_command::<RawUsage>(SHM_INFO)
}

fn info_command<T: Copy>(command: i32) -> Result<(i32, T), Errno> {
    debug_assert!(std::mem::size_of::<T>() <= std::mem::size_of::<libc::shmid_ds>());
    let mut buffer = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: the buffer is a writable shmid_ds, larger than the shminfo/shm_info
    // the kernel writes for IPC_INFO/SHM_INFO (checked at compile time above).
    let result = unsafe { libc::shmctl(0, command, buffer.as_mut_ptr()) };
    if result < 0 {
        return Err(last_errno());
    }
    // SAFETY: the buffer is initialised (zeroed, then written by the kernel), at
    // least size_of::<T>() bytes long and aligned for T (shmid_ds has the same 8-byte
    // alignment as these all-`c_ulong` structs); T is plain integers.
    let value = unsafe { buffer.as_ptr().cast::<T>().read() };
    Ok((result, value))
}

/// `semget(key, count, flags)`.
pub(crate) fn semget(key: i32, count: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: semget takes no pointers; any argument values are safe to pass.
    let id = unsafe { libc::semget(key, count, flags) };
    if id < 0 {
        Err(last_errno())
    } else {
        Ok(id)
    }
}

/// `semop(id, ops, len)`: all of `ops` at once, or none.
pub(crate) fn semop(id: i32, ops: &mut [libc::sembuf]) -> Result<(), Errno> {
    // SAFETY: `ops` is a valid, writable array of `ops.len()` sembufs for the
    // duration of the call; the kernel only reads it.
    let result = unsafe { libc::semop(id, ops.as_mut_ptr(), ops.len()) };
    if result < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

/// `semctl(id, index, GETVAL)`.
pub(crate) fn semctl_value(id: i32, index: i32) -> Result<i32, Errno> {
    // SAFETY: GETVAL takes no fourth argument and writes no memory.
    let value = unsafe { libc::semctl(id, index, libc::GETVAL) };
    if value < 0 {
        Err(last_errno())
    } else {
        Ok(value)
    }
}

/// `semctl(id, 0, IPC_STAT, ..)`.
pub(crate) fn semctl_stat(id: i32) -> Result<libc::semid_ds, Errno> {
    let mut ds = MaybeUninit::<libc::semid_ds>::zeroed();
    // SAFETY: IPC_STAT's fourth argument (a `union semun`) is a pointer to a
    // semid_ds, which `ds` is, writable; the kernel writes at most one.
    let result = unsafe { libc::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr()) };
    if result < 0 {
        return Err(last_errno());
    }
    // SAFETY: zeroed is a valid semid_ds (plain integers), and the kernel filled it.
    Ok(unsafe { ds.assume_init() })
}

/// `semctl(id, 0, IPC_RMID)`.
pub(crate) fn semctl_remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID takes no fourth argument and writes no memory.
    let result = unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
    if result < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}
