//! Kernel tokens: liveness that works across pid namespaces.
//!
//! A thread or process id, and a start time read from `/proc`, mean something
//! only inside one pid (and time) namespace. Containers that share an IPC
//! namespace but not a pid namespace (`--ipc=host`, pods) share our segments
//! all the same, so their holders need a sign of life that every namespace
//! can read. A System V semaphore raised with `SEM_UNDO` is one: the kernel
//! lowers it when the process that raised it exits, however it exits, and it
//! lives in the IPC namespace, beside the System V segments, readable from any
//! pid namespace.
//!
//! # The registry
//!
//! Each user has one *registry* per IPC namespace: a semaphore set under the
//! key `0x5348_0000 | (uid & 0xffff)` with [`SLOTS`] pairs of semaphores, mode
//! `0600`, made by the first process of that user that needs it and never
//! removed by this crate (it holds no data). Removing it (`ipcrm -S KEY`,
//! systemd-logind's `RemoveIPC=yes` at a user's last logout) while processes
//! of ours run costs what tokens give: their holdings are no longer judged
//! across pid namespaces (refused, as without tokens) until they exit; the
//! next process makes it afresh. Pair `k` is slot
//! `k`: semaphore `2k` is the *token* (1 while a process holds the slot) and
//! `2k + 1` the slot's *generation*, which every claim of the slot increments
//! (mod 32768).
//!
//! A process claims one slot, once (a forked child claims its own, and so
//! does a process after `exec`): one
//! `semop` that atomically requires the token to be 0, raises it with
//! `SEM_UNDO` and increments the generation. It never lowers the token itself:
//! it holds the slot until it exits, when the kernel lowers it. So while a
//! process lives, its slot's token is 1 and its generation is the one it read
//! after its claim.
//!
//! A holder records its *token* (slot and generation) beside what it holds.
//! A judge that can read the same registry decides: the token is 0 (the holder
//! exited), or the generation differs (it exited and another process claimed
//! the slot), means dead; anything else, or any error, means alive. Both
//! verdicts of death are sound on their own, whatever happened between the two
//! reads: the token is 0, and the generation changes, only after the holder's
//! exit.
//!
//! # Which registry
//!
//! A judge must read the holder's registry, not another set that happens to
//! have the same id: ids repeat across IPC namespaces. So a registry is named
//! by the pair (inode of `/proc/self/ns/ipc`, semaphore set id), and a segment
//! records its creator's registry in its lock (word `registry`), with the
//! set's creation time (`sem_ctime`, word `registry_ctime`): a set removed
//! and made again may get its id back, and its tokens, all 0, would declare
//! every holder recorded in the old one dead. A judge reads a token only from
//! a set of that id and time. A holder
//! writes a token only if its registry is the segment's; a judge reads one
//! only if its registry is, too. Everyone else falls back to ids, judged only
//! in the segment's own pid namespace, and otherwise refuses to judge (today's
//! `ForeignNamespace`).
//!
//! No token can be had when: System V semaphores are unavailable (kernel
//! without `CONFIG_SYSVIPC`, seccomp), the limits are too low (`SEMMSL` below
//! `2 * SLOTS`, `SEMMNI` or `SEMMNS` exhausted), all slots are taken, the key
//! is taken by a set that is not a registry of this user (wrong size, owner,
//! creator or mode: someone squatting on it could fake deaths, so it is never
//! used), the IPC namespace cannot be read, or the processes run as different
//! users (a registry is its user's; root judges any, others only their own).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots per registry (two semaphores each). Linux's default `SEMMSL` is
/// 32000 since 3.19 (250 before: no tokens there).
pub(crate) const SLOTS: u16 = 1024;
/// Generations count modulo this (a semaphore holds at most 32767).
const GENERATIONS: u32 = 32768;

/// A token as records keep it: `slot << 15 | generation`.
pub(crate) type Token = u32;

/// A registry as a segment records it: its name (IPC namespace inode << 32 |
/// semaphore set id) and the set's `sem_ctime` when the segment's creator
/// used it. A registry removed (`ipcrm`, systemd's `RemoveIPC`) and made
/// again can get the same id back, with every token 0: the time tells it
/// from the one the tokens were recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registry {
    pub name: u64,
    pub ctime: u64,
}

/// The registry key of user `uid`.
fn registry_key(uid: u32) -> i32 {
    (0x5348_0000_u32 | (uid & 0xffff)) as i32
}

/// This process's token, filled once per process: the process it was filled
/// for (`sys::process_key`: a forked child, even one with its parent's pid,
/// has another key and claims its own), the registry (0: none could be had)
/// and the token.
struct Cache {
    key: AtomicU64,
    registry: AtomicU64,
    ctime: AtomicU64,
    token: AtomicU32,
}

static CACHE: Cache = Cache {
    key: AtomicU64::new(0),
    registry: AtomicU64::new(0),
    ctime: AtomicU64::new(0),
    token: AtomicU32::new(0),
};

/// Serialises the claims of one process's threads: the key of the process
/// one of whose threads claims, 0 when none does. Not a `Mutex`: a child
/// forked while another thread of its parent claims inherits it held, by a
/// thread it does not have; here it sees its parent's key and takes it over.
static CLAIMING: AtomicU64 = AtomicU64::new(0);

/// Holds [`CLAIMING`] for the calling process's thread while it lives.
struct Serial;

impl Serial {
    fn acquire(key: u64) -> Serial {
        let mut observed = CLAIMING.load(Ordering::Relaxed);
        loop {
            if observed == key {
                // Another thread of ours claims: wait for its answer.
                std::thread::yield_now();
                observed = CLAIMING.load(Ordering::Relaxed);
                continue;
            }
            // Free, or held by an ancestor's thread that this process lacks.
            match CLAIMING.compare_exchange(observed, key, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Serial,
                Err(now) => observed = now,
            }
        }
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        CLAIMING.store(0, Ordering::Release);
    }
}

/// This process's registry and token (registry 0: none), claiming a slot the
/// first time (one semaphore call; a process without a token asks once).
#[inline(always)]
pub(crate) fn mine() -> (u64, Token) {
    let key = crate::sys::process_key();
    if CACHE.key.load(Ordering::Acquire) == key {
        return (
            CACHE.registry.load(Ordering::Relaxed),
            CACHE.token.load(Ordering::Relaxed),
        );
    }
    claim(key)
}

#[cold]
#[inline(never)]
fn claim(key: u64) -> (u64, Token) {
    let _serial = Serial::acquire(key);
    if CACHE.key.load(Ordering::Acquire) == key {
        return (
            CACHE.registry.load(Ordering::Relaxed),
            CACHE.token.load(Ordering::Relaxed),
        );
    }
    let (registry, token) = imp::claim(key as u32).unwrap_or((Registry { name: 0, ctime: 0 }, 0));
    let registry_name = registry.name;
    CACHE.ctime.store(registry.ctime, Ordering::Relaxed);
    CACHE.registry.store(registry_name, Ordering::Relaxed);
    CACHE.token.store(token, Ordering::Relaxed);
    CACHE.key.store(key, Ordering::Release);
    (registry_name, token)
}

/// This process's registry as a segment it creates records it (name 0:
/// none).
pub(crate) fn my_registry() -> Registry {
    let (name, _) = mine();
    Registry {
        name,
        ctime: CACHE.ctime.load(Ordering::Relaxed),
    }
}

/// Whether the process that recorded `token` in `registry` is dead: `Some`
/// only for a definite answer (see the module documentation), `None` if this
/// process cannot read that registry, or it is not the one the segment
/// recorded (another set under the same id: see [`Registry`]).
pub(crate) fn is_dead(registry: Registry, token: Token) -> Option<bool> {
    if registry.name == 0 || registry.ctime == 0 {
        return None;
    }
    imp::is_dead(registry, token)
}

#[cfg(not(miri))]
mod imp {
    use super::*;
    use shm_sys::sem::{SemOp, SemaphoreSet};
    use shm_sys::Mode;

    /// The inode of `/proc/self/ns/ipc` as a registry keeps it (0: unknown).
    fn ipc_namespace() -> u32 {
        rustix::fs::stat("/proc/self/ns/ipc").map_or(0, |stat| stat.st_ino as u32)
    }

    /// `set`'s creation time if it is a registry: its key, size, and a mode
    /// that no other user may change; made and owned by `uid` if given.
    fn registry_ctime(set: SemaphoreSet, uid: Option<u32>) -> Option<u64> {
        let stat = set.stat().ok()?;
        let owner = uid.unwrap_or(stat.uid);
        (stat.count == u64::from(SLOTS) * 2
            && stat.key == registry_key(owner)
            && stat.uid == owner
            && stat.cuid == owner
            && stat.mode & 0o077 == 0)
            .then_some(u64::try_from(stat.ctime).ok()?)
            .filter(|&ctime| ctime != 0)
    }

    pub(super) fn claim(pid: u32) -> Option<(Registry, Token)> {
        let namespace = ipc_namespace();
        if namespace == 0 {
            return None;
        }
        let uid = crate::sys::current_uid();
        let key = registry_key(uid);
        let set = match SemaphoreSet::open(key, SLOTS * 2) {
            Ok(set) => set,
            Err(error) if error.raw() == libc_enoent() => {
                match SemaphoreSet::create(key, SLOTS * 2, Mode::OWNER_RW) {
                    Ok(set) => set,
                    // Another process made it first.
                    Err(_) => SemaphoreSet::open(key, SLOTS * 2).ok()?,
                }
            }
            Err(_) => return None,
        };
        let ctime = registry_ctime(set, Some(uid))?;
        let first = (pid % u32::from(SLOTS)) as u16;
        for offset in 0..SLOTS {
            let slot = (first + offset) % SLOTS;
            let (token, generation) = (slot * 2, slot * 2 + 1);
            let step = |generation_delta| {
                set.apply(&[
                    SemOp::wait_zero(token),
                    SemOp::add(token, 1).undo(),
                    SemOp::add(generation, generation_delta),
                ])
            };
            let claimed = match step(1) {
                // The generation is at its largest: wrap it to 0 instead.
                Err(error) if error.raw() == rustix::io::Errno::RANGE.raw_os_error() => {
                    step(-((GENERATIONS - 1) as i16))
                }
                other => other,
            };
            match claimed {
                Ok(()) => {
                    // Ours now: nobody else changes its generation.
                    let generation = set.value(generation).ok()? as u32 % GENERATIONS;
                    let name = u64::from(namespace) << 32 | u64::from(set.id() as u32);
                    let registry = Registry { name, ctime };
                    return Some((registry, u32::from(slot) << 15 | generation));
                }
                Err(error) if error.raw() == rustix::io::Errno::AGAIN.raw_os_error() => continue,
                Err(_) => return None,
            }
        }
        None
    }

    fn libc_enoent() -> i32 {
        rustix::io::Errno::NOENT.raw_os_error()
    }

    pub(super) fn is_dead(registry: Registry, token: Token) -> Option<bool> {
        if (registry.name >> 32) as u32 != ipc_namespace() {
            return None;
        }
        let set = SemaphoreSet::from_id(registry.name as u32 as i32);
        if registry_ctime(set, None)? != registry.ctime {
            return None;
        }
        let slot = (token >> 15) as u16;
        if slot >= SLOTS {
            return None;
        }
        if set.value(slot * 2).ok()? == 0 {
            return Some(true);
        }
        let generation = set.value(slot * 2 + 1).ok()? as u32;
        Some(generation != token & (GENERATIONS - 1))
    }
}

#[cfg(miri)]
mod imp {
    use super::*;

    pub(super) fn claim(_pid: u32) -> Option<(Registry, Token)> {
        None
    }

    pub(super) fn is_dead(_registry: Registry, _token: Token) -> Option<bool> {
        None
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_live_token() {
        let (name, token) = mine();
        assert_ne!(name, 0, "System V semaphores work here");
        assert_eq!(mine(), (name, token), "claimed once");
        let registry = my_registry();
        assert_eq!(registry.name, name);
        assert_eq!(is_dead(registry, token), Some(false));
        // Another generation of our slot: that process is gone.
        let other = (token & !(GENERATIONS - 1)) | ((token + 1) & (GENERATIONS - 1));
        assert_eq!(is_dead(registry, other), Some(true));
        // Another IPC namespace's registry, or none: no verdict.
        let elsewhere = Registry {
            name: name ^ (1 << 40),
            ..registry
        };
        assert_eq!(is_dead(elsewhere, token), None);
        assert_eq!(
            is_dead(
                Registry {
                    name: 0,
                    ..registry
                },
                token
            ),
            None
        );
        // The same id made at another time (removed and made again): the
        // tokens recorded in the first say nothing of the second.
        let again = Registry {
            ctime: registry.ctime + 1,
            ..registry
        };
        assert_eq!(is_dead(again, other), None);
        assert_eq!(
            is_dead(
                Registry {
                    ctime: 0,
                    ..registry
                },
                other
            ),
            None
        );
    }
}
