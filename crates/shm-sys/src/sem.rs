//! System V semaphore sets, for one purpose: tokens the kernel hands back when
//! their holder dies.
//!
//! A semaphore raised with `SEM_UNDO` is lowered again by the kernel when the
//! process that raised it exits, however it exits (`SIGKILL` included), and a
//! semaphore set lives in the IPC namespace, like System V shared memory. So a
//! process in any pid namespace can tell whether a process of another pid
//! namespace that raised a semaphore still lives: it reads the value. That is
//! all this module offers: get or create a set, apply operations atomically,
//! read a value, read the set's owner and mode, remove the set.
//!
//! ```
//! use shm_sys::sem::{SemOp, SemaphoreSet};
//! use shm_sys::Mode;
//!
//! let set = SemaphoreSet::create_private(2, Mode::OWNER_RW)?;
//! // Raise semaphore 0 only if it is 0, undone when this process exits.
//! set.apply(&[SemOp::wait_zero(0), SemOp::add(0, 1).undo()])?;
//! assert_eq!(set.value(0)?, 1);
//! set.remove()?;
//! # Ok::<(), shm_sys::Errno>(())
//! ```

use crate::libc_sysv as raw;
use crate::{Errno, Mode};

/// A System V semaphore set, by id. Dropping it does nothing: a set lives until
/// [`remove`](SemaphoreSet::remove)d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemaphoreSet {
    id: i32,
}

/// One operation of a [`SemaphoreSet::apply`] call (`struct sembuf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemOp {
    index: u16,
    delta: i16,
    flags: i16,
}

impl SemOp {
    /// Adds `delta` (negative: subtracts) to semaphore `index`. Never waits:
    /// an operation that would block fails the call with `EAGAIN`.
    pub const fn add(index: u16, delta: i16) -> SemOp {
        SemOp {
            index,
            delta,
            flags: libc::IPC_NOWAIT as i16,
        }
    }

    /// Requires semaphore `index` to be 0; without waiting (`EAGAIN` if not).
    pub const fn wait_zero(index: u16) -> SemOp {
        SemOp::add(index, 0)
    }

    /// The same operation, undone by the kernel when this process exits
    /// (`SEM_UNDO`).
    pub const fn undo(self) -> SemOp {
        SemOp {
            flags: self.flags | libc::SEM_UNDO as i16,
            ..self
        }
    }
}

/// What `IPC_STAT` tells about a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemStat {
    /// The key it was made with (0: `IPC_PRIVATE`).
    pub key: i32,
    /// Owner user id.
    pub uid: u32,
    /// Creator user id.
    pub cuid: u32,
    /// Permission bits.
    pub mode: u16,
    /// Number of semaphores.
    pub count: u64,
    /// When the set was made, or last changed by `semctl` (`SETVAL`,
    /// `SETALL`, `IPC_SET`): seconds since the epoch (`sem_ctime`).
    pub ctime: i64,
}

impl SemaphoreSet {
    /// Creates a new set of `count` semaphores under `key`, all 0, with `mode`;
    /// `EEXIST` if the key is taken.
    pub fn create(key: i32, count: u16, mode: Mode) -> Result<SemaphoreSet, Errno> {
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | i32::from(mode.bits() & 0o777);
        raw::semget(key, i32::from(count), flags).map(|id| SemaphoreSet { id })
    }

    /// Creates a new set of `count` semaphores that no key names (`IPC_PRIVATE`).
    pub fn create_private(count: u16, mode: Mode) -> Result<SemaphoreSet, Errno> {
        SemaphoreSet::create(libc::IPC_PRIVATE, count, mode)
    }

    /// The set under `key`, which must have at least `count` semaphores
    /// (`EINVAL` if fewer; `ENOENT` if there is none).
    pub fn open(key: i32, count: u16) -> Result<SemaphoreSet, Errno> {
        raw::semget(key, i32::from(count), 0).map(|id| SemaphoreSet { id })
    }

    /// The set with this id (nothing is checked until it is used).
    pub const fn from_id(id: i32) -> SemaphoreSet {
        SemaphoreSet { id }
    }

    /// The set's id.
    pub const fn id(self) -> i32 {
        self.id
    }

    /// Applies every operation at once, or none (`EAGAIN` if one would wait;
    /// `EINVAL` or `EIDRM` if the set is gone; `EFBIG` for an index past the
    /// end; `ERANGE` past the largest value, 32767).
    pub fn apply(self, ops: &[SemOp]) -> Result<(), Errno> {
        let mut raw_ops: Vec<libc::sembuf> = ops
            .iter()
            .map(|op| libc::sembuf {
                sem_num: op.index,
                sem_op: op.delta,
                sem_flg: op.flags,
            })
            .collect();
        raw::semop(self.id, &mut raw_ops)
    }

    /// The value of semaphore `index` (`GETVAL`).
    pub fn value(self, index: u16) -> Result<i32, Errno> {
        raw::semctl_value(self.id, i32::from(index))
    }

    /// Owner, creator, mode and size (`IPC_STAT`).
    pub fn stat(self) -> Result<SemStat, Errno> {
        let ds = raw::semctl_stat(self.id)?;
        // The field types differ between targets (`c_ushort` or `mode_t`,
        // `c_ulong` or `u64`): cast, as some of these casts are no-ops here.
        #[allow(clippy::unnecessary_cast)]
        Ok(SemStat {
            key: ds.sem_perm.__key,
            uid: ds.sem_perm.uid,
            cuid: ds.sem_perm.cuid,
            mode: ds.sem_perm.mode as u16,
            count: ds.sem_nsems as u64,
            ctime: ds.sem_ctime as i64,
        })
    }

    /// Removes the set at once (`IPC_RMID`); waiters get `EIDRM`.
    pub fn remove(self) -> Result<(), Errno> {
        raw::semctl_remove(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the set when the test ends, also when it fails.
    struct Cleanup(SemaphoreSet);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }

    #[test]
    fn a_token_is_taken_once_and_counted() {
        let set = SemaphoreSet::create_private(4, Mode::OWNER_RW).unwrap();
        let _cleanup = Cleanup(set);
        let take = [
            SemOp::wait_zero(1),
            SemOp::add(1, 1).undo(),
            SemOp::add(2, 1),
        ];
        set.apply(&take).unwrap();
        assert_eq!((set.value(1).unwrap(), set.value(2).unwrap()), (1, 1));
        // Taken: the whole call fails and changes nothing.
        assert_eq!(set.apply(&take).unwrap_err().raw(), libc::EAGAIN);
        assert_eq!(set.value(2).unwrap(), 1);
        let stat = set.stat().unwrap();
        assert_eq!((stat.key, stat.count, stat.mode & 0o777), (0, 4, 0o600));
        assert_eq!(set.value(9).unwrap_err().raw(), libc::EINVAL);
    }

    #[test]
    fn the_kernel_undoes_a_dead_process_token() {
        let set = SemaphoreSet::create_private(1, Mode::OWNER_RW).unwrap();
        let _cleanup = Cleanup(set);
        // A child raises the token with SEM_UNDO and exits without lowering it.
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sem::tests::raise_token_and_exit", "--nocapture"])
            .env("SHM_SYS_TEST_SEMID", set.id().to_string())
            .output()
            .unwrap();
        assert!(child.status.success(), "{child:?}");
        assert!(
            String::from_utf8_lossy(&child.stdout).contains("raised 1"),
            "the child ran and saw its token raised: {child:?}"
        );
        assert_eq!(set.value(0).unwrap(), 0, "undone at its exit");
        set.remove().unwrap();
        assert_eq!(set.value(0).unwrap_err().raw(), libc::EINVAL);
    }

    /// The child half of the test above; nothing without its variable.
    #[test]
    fn raise_token_and_exit() {
        if let Some(id) = std::env::var_os("SHM_SYS_TEST_SEMID") {
            let set = SemaphoreSet::from_id(id.to_str().unwrap().parse().unwrap());
            set.apply(&[SemOp::add(0, 1).undo()]).unwrap();
            println!("raised {}", set.value(0).unwrap());
        }
    }
}
