//! The few OS facts this crate needs, all through rustix or `/proc`: the calling
//! thread's id and start time, whether another task is alive, the pid namespace,
//! and futex wait/wake on shared memory.
//!
//! Under Miri (which cannot make these calls) thread ids are made up per thread,
//! start times and namespaces are constants, and every task counts as alive;
//! tests that need a dead holder inject their own liveness check.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// A task's start time, in clock ticks since boot (field 22 of `/proc/<tid>/stat`).
/// 0 means unknown.
pub(crate) type StartTime = u64;

/// Who the calling thread is, as the lock records it: its id and start time,
/// its liveness domain (0: unknown), and its process's kernel-token registry
/// (0: none) and token record without a tag (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Me {
    pub tid: u32,
    pub start: StartTime,
    pub domain: u64,
    pub registry: u64,
    pub token: u64,
}

/// What `/proc` says about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Running or sleeping, started at this time.
    Alive(StartTime),
    /// Exited and not yet reaped, or gone altogether.
    Dead,
}

#[cfg(not(miri))]
mod imp {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// Who the calling thread is, cached: `gettid` is a syscall and the start time
    /// needs `/proc`, both far too slow for every lock.
    #[derive(Clone, Copy)]
    struct Identity {
        /// The process the cache was filled in (see [`process_key`]); a forked
        /// child has another.
        key: u64,
        tid: u32,
        start: StartTime,
        /// The process's kernel-token registry (0: none) and its token as a
        /// token record without a tag (see `lock::token`), cached here too so
        /// that a lock needs no second lookup.
        registry: u64,
        token: u64,
    }

    thread_local! {
        static IDENTITY: Cell<Identity> = const {
            Cell::new(Identity { key: 0, tid: 0, start: 0, registry: 0, token: 0 })
        };
    }

    /// A private page the kernel zeroes in a forked child (`MADV_WIPEONFORK`),
    /// holding this process's *key* once known (see [`process_key`]) in its
    /// first word and its domain in its second. A thread-local cache filled
    /// before a `fork` names the parent's thread; comparing its key with this
    /// page's tells the child to refill it, at the cost of one load per lock.
    /// Null until set up, and on kernels without `MADV_WIPEONFORK` (before
    /// 4.14), where the pid is asked for every time instead.
    static FORK_PAGE: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

    /// The stamps of process keys: each process takes the next one when its
    /// fork page is (re)filled. A forked child's copy of this counter is at
    /// least every stamp its ancestors took, so its own stamp is larger than
    /// any in a cache it inherited.
    static STAMPS: AtomicU32 = AtomicU32::new(0);

    fn fork_page() -> Option<&'static AtomicU64> {
        static PAGE: OnceLock<Option<usize>> = OnceLock::new();
        let address = (*PAGE.get_or_init(|| {
            // SAFETY: a fresh private anonymous mapping at a kernel-chosen
            // address replaces nothing; it is never unmapped.
            let page = unsafe {
                rustix::mm::mmap_anonymous(
                    std::ptr::null_mut(),
                    4096,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::PRIVATE,
                )
            }
            .ok()?;
            // SAFETY: advising our own fresh mapping.
            match unsafe { rustix::mm::madvise(page, 4096, rustix::mm::Advice::LinuxWipeOnFork) } {
                Ok(()) => Some(page as usize),
                Err(_) => {
                    // SAFETY: unmapping the page we just mapped, never shared.
                    let _ = unsafe { rustix::mm::munmap(page, 4096) };
                    None
                }
            }
        }))?;
        FORK_PAGE.store(address as *mut AtomicU64, Ordering::Release);
        // SAFETY: a live (never unmapped), page-aligned, zero-initialised mapping;
        // only ever accessed through this atomic.
        Some(unsafe { AtomicU64::from_ptr(address as *mut u64) })
    }

    fn getpid() -> u32 {
        rustix::process::getpid().as_raw_nonzero().get() as u32
    }

    /// This process's id: one load after the first call, and right after a fork.
    #[inline(always)]
    fn process_id() -> u32 {
        process_key() as u32
    }

    /// What names this process to the caches that outlive a `fork` in its
    /// memory (the thread-local identity, the kernel token, the `/proc`
    /// check): a stamp in the high half and the pid in the low. A pid alone
    /// is not enough: a descendant can get an ancestor's pid (pid 1 in a new
    /// pid namespace, or pid reuse after the ancestor exited) and would take
    /// the ancestor's start time and token for its own. Stamps grow down a
    /// line of descent (see [`STAMPS`]), so no descendant's key equals a key
    /// in a cache it inherited. Without `MADV_WIPEONFORK` the stamp is 0 and
    /// the key the pid alone (kernels before 4.14).
    #[inline(always)]
    pub(crate) fn process_key() -> u64 {
        let page = FORK_PAGE.load(Ordering::Acquire);
        if !page.is_null() {
            // SAFETY: FORK_PAGE only ever holds the never-unmapped page above.
            let key = unsafe { (*page).load(Ordering::Relaxed) };
            if key != 0 {
                return key;
            }
        }
        process_key_slow()
    }

    #[cold]
    fn process_key_slow() -> u64 {
        let pid = u64::from(getpid());
        match fork_page() {
            Some(page) => {
                // Only one thread runs in a fresh child; others race here only
                // before the first key is stored, and then agree on the first.
                let stamp = STAMPS
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_add(1)
                    .max(1);
                let key = u64::from(stamp) << 32 | pid;
                match page.compare_exchange(0, key, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => key,
                    Err(first) => first,
                }
            }
            None => pid,
        }
    }

    #[inline(always)]
    fn identity() -> Identity {
        let key = process_key();
        let cached = IDENTITY.get();
        if cached.key == key && cached.tid != 0 {
            cached
        } else {
            refresh_identity(key)
        }
    }

    #[cold]
    fn refresh_identity(key: u64) -> Identity {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let start = match task_state(tid) {
            TaskState::Alive(start) => start,
            TaskState::Dead => 0,
        };
        let (registry, token) = crate::lock::token::mine();
        let token = crate::lock::liveness::token_base((registry != 0).then_some(token));
        let identity = Identity {
            key,
            tid,
            start,
            registry,
            token,
        };
        IDENTITY.set(identity);
        identity
    }

    /// The calling thread's id.
    #[cfg(test)]
    pub(crate) fn current_tid() -> u32 {
        identity().tid
    }

    /// The calling thread's start time.
    #[cfg(test)]
    pub(crate) fn current_start_time() -> StartTime {
        identity().start
    }

    /// The calling thread's id, start time and domain, from one look at the
    /// cache.
    #[inline(always)]
    #[allow(dead_code)]
    pub(crate) fn current_identity() -> (u32, StartTime, u64) {
        let me = current_me();
        (me.tid, me.start, me.domain)
    }

    /// The calling thread's id, start time, domain, and its process's token
    /// registry and untagged token record, from one look at the cache.
    #[inline(always)]
    pub(crate) fn current_me() -> Me {
        // One look at the fork page for both the pid and the domain.
        let page = FORK_PAGE.load(Ordering::Acquire);
        if !page.is_null() {
            // SAFETY: as in process_id and current_domain.
            let (key, domain) = unsafe {
                (
                    (*page).load(Ordering::Relaxed),
                    AtomicU64::from_ptr(page.cast::<u8>().add(8).cast::<u64>())
                        .load(Ordering::Relaxed),
                )
            };
            let cached = IDENTITY.get();
            if key != 0 && domain != 0 && cached.key == key && cached.tid != 0 {
                return Me {
                    tid: cached.tid,
                    start: cached.start,
                    domain,
                    registry: cached.registry,
                    token: cached.token,
                };
            }
        }
        current_identity_slow()
    }

    #[cold]
    fn current_identity_slow() -> Me {
        let identity = identity();
        Me {
            tid: identity.tid,
            start: identity.start,
            domain: current_domain(),
            registry: identity.registry,
            token: identity.token,
        }
    }

    /// The calling process's liveness domain: who can judge whom. Thread ids
    /// mean the same task only inside one pid namespace, and start times read
    /// from `/proc` are shifted by the reader's time namespace (boot-time
    /// offset), so a domain is the pair of both namespaces' inodes, mixed into
    /// one word. Neither changes for a running process (`unshare` changes them
    /// for its children, which are other processes, with a fresh cache).
    /// Cached in the second word of the fork page (wiped in a forked child,
    /// which may live in other namespaces); 0 if `/proc/self/ns/pid` is
    /// unreadable.
    #[inline(always)]
    pub(crate) fn current_domain() -> u64 {
        let page = FORK_PAGE.load(Ordering::Acquire);
        if !page.is_null() {
            // SAFETY: FORK_PAGE only ever holds the never-unmapped, page-sized,
            // page-aligned mapping set up in fork_page; offset 8 is inside it
            // and 8-aligned, and is only ever accessed through this atomic.
            let domain = unsafe { AtomicU64::from_ptr(page.cast::<u8>().add(8).cast::<u64>()) }
                .load(Ordering::Relaxed);
            if domain != 0 {
                return domain;
            }
        }
        current_domain_slow()
    }

    #[cold]
    fn current_domain_slow() -> u64 {
        let domain = domain_now();
        // The page exists once the identity was filled (process_key sets it up).
        let _ = process_key();
        let page = FORK_PAGE.load(Ordering::Acquire);
        if !page.is_null() {
            // SAFETY: as in current_domain.
            unsafe { AtomicU64::from_ptr(page.cast::<u8>().add(8).cast::<u64>()) }
                .store(domain, Ordering::Relaxed);
        }
        domain
    }

    fn domain_now() -> u64 {
        let pid = pid_namespace();
        if pid == 0 {
            return 0;
        }
        // Kernels before 5.6 have no time namespaces: all share one.
        let time = rustix::fs::stat("/proc/self/ns/time").map_or(0, |stat| stat.st_ino);
        (pid ^ time.rotate_left(32)).max(1)
    }

    /// What reading `/proc/<tid>/stat` told.
    enum Stat {
        /// State letter and start time.
        Read(char, StartTime),
        /// No `/proc` entry: no such task any more, or one `/proc` does not
        /// show. Dead only if `kill` agrees.
        Gone,
        /// Not readable (out of descriptors, `hidepid`, a `/proc` of another
        /// pid namespace): says nothing about the task, which counts as alive.
        Unknown,
    }

    /// Whether the `/proc` we see is our own pid namespace's: `/proc/self`
    /// names our pid. A `/proc` of another pid namespace (a container that
    /// mounts the host's, or a process that `unshare`d its pid namespace and
    /// kept the old mount) describes other tasks under the same numbers, so
    /// nothing read there may decide that a task is dead. Asked once per
    /// process (a forked child asks again: its [`process_key`] differs).
    pub(super) fn proc_is_ours() -> bool {
        use std::sync::atomic::Ordering;
        // The process for which the answer below holds, and the answer.
        static CHECKED_FOR: AtomicU64 = AtomicU64::new(0);
        static OURS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let key = process_key();
        let pid = key as u32;
        if CHECKED_FOR.load(Ordering::Acquire) == key {
            return OURS.load(Ordering::Relaxed);
        }
        let ours = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|target| target.to_str()?.parse::<u32>().ok())
            == Some(pid);
        OURS.store(ours, Ordering::Relaxed);
        CHECKED_FOR.store(key, Ordering::Release);
        ours
    }

    /// Reads `/proc/<tid>/stat`: `pid (comm) state ... starttime(22) ...`. The
    /// command name may contain spaces and parentheses, so fields are counted
    /// from the last `)`.
    fn read_stat(tid: u32) -> Stat {
        if !proc_is_ours() {
            return Stat::Unknown;
        }
        let text = match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
            Ok(text) => text,
            Err(error) if error.raw_os_error() == Some(libc_enoent()) => return Stat::Gone,
            Err(error) if error.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {
                return Stat::Gone
            }
            Err(_) => return Stat::Unknown,
        };
        let parse = || {
            let after_name = &text[text.rfind(')')? + 1..];
            let mut fields = after_name.split_ascii_whitespace();
            let state = fields.next()?.chars().next()?;
            // After the name: state is field 3; starttime is field 22, 19 further on.
            let start = fields.nth(18)?.parse().ok()?;
            Some((state, start))
        };
        match parse() {
            Some((state, start)) => Stat::Read(state, start),
            None => Stat::Unknown,
        }
    }

    fn libc_enoent() -> i32 {
        rustix::io::Errno::NOENT.raw_os_error()
    }

    /// Whether a zombie thread-group leader still has live threads (its
    /// process goes on: `/proc/<pid>/task` lists more than the leader). A
    /// directory that cannot be read says nothing, so it counts as live
    /// threads (alive); only a directory that is gone (reaped) does not.
    fn has_live_threads(pid: u32) -> bool {
        match std::fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(entries) => entries.take(2).count() > 1,
            Err(error) => error.raw_os_error() != Some(libc_enoent()),
        }
    }

    /// [`task_state`] for a process: a process whose main thread exited but
    /// whose other threads run is alive (its leader shows as a zombie).
    pub(crate) fn process_state(pid: u32) -> TaskState {
        match task_state_of(pid) {
            (TaskState::Dead, Some(start)) if has_live_threads(pid) => TaskState::Alive(start),
            (state, _) => state,
        }
    }

    /// Whether the task `tid` exists and is not a zombie, and when it started.
    ///
    /// `kill(tid, 0)` tells whether the id names a task (`EPERM` means it does,
    /// owned by someone else); a killed child that its parent has not reaped yet
    /// still passes that test, so the state letter in `/proc` is checked too.
    ///
    /// Only a definite answer counts as dead: `ESRCH` from `kill` (also when
    /// `/proc` has no entry), or a zombie in a `/proc` that is our own pid
    /// namespace's. A `/proc` that cannot be read, or that belongs to another
    /// pid namespace, says alive with start time 0 (unknown), so a judge never
    /// takes a live holder's lock because it ran out of descriptors or looked
    /// at another namespace's tasks.
    pub(crate) fn task_state(tid: u32) -> TaskState {
        task_state_of(tid).0
    }

    /// The state, and for a zombie its start time (see [`process_state`]).
    fn task_state_of(tid: u32) -> (TaskState, Option<StartTime>) {
        let Some(pid) = i32::try_from(tid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return (TaskState::Dead, None);
        };
        match rustix::process::test_kill_process(pid) {
            Ok(()) => {}
            Err(rustix::io::Errno::SRCH) => return (TaskState::Dead, None),
            Err(_) => {} // EPERM: exists, belongs to another user.
        }
        match read_stat(tid) {
            Stat::Read('Z' | 'X' | 'x', start) => (TaskState::Dead, Some(start)),
            Stat::Read(_, start) => (TaskState::Alive(start), None),
            // No /proc entry: the task vanished between the two checks, or
            // `/proc` does not show it (not mounted, `hidepid=2`, a task
            // hidden from us). Only the kernel's own answer decides.
            Stat::Gone => match rustix::process::test_kill_process(pid) {
                Err(rustix::io::Errno::SRCH) => (TaskState::Dead, None),
                _ => (TaskState::Alive(0), None),
            },
            Stat::Unknown => (TaskState::Alive(0), None),
        }
    }

    /// The inode of `/proc/self/ns/pid`: equal for processes in the same pid
    /// namespace. 0 if it cannot be read.
    pub(crate) fn pid_namespace() -> u64 {
        rustix::fs::stat("/proc/self/ns/pid").map_or(0, |stat| stat.st_ino)
    }

    /// Whether the running kernel is at least `major.minor` (from `uname`;
    /// false if its release cannot be parsed). Asked once per process.
    pub(crate) fn kernel_at_least(major: u32, minor: u32) -> bool {
        static RELEASE: OnceLock<Option<(u32, u32)>> = OnceLock::new();
        let release = *RELEASE.get_or_init(|| {
            let name = rustix::system::uname();
            let text = name.release().to_str().ok()?;
            let mut parts = text.split(|c: char| !c.is_ascii_digit());
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        });
        release.is_some_and(|found| found >= (major, minor))
    }

    /// The effective user id.
    pub(crate) fn current_uid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    /// The calling process's id.
    pub(crate) fn current_pid() -> u32 {
        process_id()
    }
}

#[cfg(miri)]
mod imp {
    use super::*;
    use std::sync::atomic::Ordering;

    static NEXT_TID: AtomicU32 = AtomicU32::new(1000);
    thread_local! {
        static TID: u32 = NEXT_TID.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn current_tid() -> u32 {
        TID.with(|tid| *tid)
    }
    pub(crate) fn current_start_time() -> StartTime {
        1
    }
    #[allow(dead_code)]
    pub(crate) fn current_identity() -> (u32, StartTime, u64) {
        (current_tid(), current_start_time(), 1)
    }
    pub(crate) fn current_me() -> Me {
        Me {
            tid: current_tid(),
            start: current_start_time(),
            domain: 1,
            registry: 0,
            token: 0,
        }
    }
    pub(crate) fn task_state(_tid: u32) -> TaskState {
        TaskState::Alive(1)
    }
    pub(crate) fn pid_namespace() -> u64 {
        1
    }
    pub(crate) fn current_domain() -> u64 {
        1
    }
    pub(crate) fn process_state(_pid: u32) -> TaskState {
        TaskState::Alive(1)
    }
    pub(crate) fn current_uid() -> u32 {
        0
    }
    pub(crate) fn current_pid() -> u32 {
        999
    }
    pub(crate) fn process_key() -> u64 {
        999
    }
    pub(crate) fn kernel_at_least(_major: u32, _minor: u32) -> bool {
        true
    }
}

// For callers that need no token (id, start time and domain only).
#[allow(unused_imports)]
pub(crate) use imp::current_identity;
pub(crate) use imp::{
    current_domain, current_me, current_pid, current_uid, kernel_at_least, pid_namespace,
    process_key, process_state, task_state,
};
#[cfg(test)]
pub(crate) use imp::{current_start_time, current_tid};

/// Whether the CPU has PREFETCHW (CPUID leaf 0x8000_0001, ECX bit 8), asked
/// once per handle.
#[cfg(all(target_arch = "x86_64", not(miri)))]
pub(crate) fn has_prefetch_write() -> bool {
    use std::arch::x86_64::__cpuid;
    // `__cpuid` is an unsafe fn in older Rust and a safe one in newer.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 processor and has no side effects.
    let (max, features) = unsafe {
        let max = __cpuid(0x8000_0000).eax;
        (max, __cpuid(0x8000_0001).ecx)
    };
    max >= 0x8000_0001 && features & (1 << 8) != 0
}

/// Elsewhere, and under Miri: no.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
pub(crate) fn has_prefetch_write() -> bool {
    false
}

/// Asks for the cache line holding `address` with intent to write. A hint: it
/// never faults, whatever the address, and changes nothing a program can see.
#[inline(always)]
pub(crate) fn prefetch_write(address: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: PREFETCHW reads no memory architecturally, writes none, never
    // faults, and is only reached when has_prefetch_write() said the CPU has it.
    unsafe {
        std::arch::asm!(
            "prefetchw [{address}]",
            address = in(reg) address,
            options(nostack, readonly, preserves_flags)
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = address;
}

/// Sleeps while `word` holds `expected`, for at most `timeout`; returns early on a
/// wake, a spurious wake-up or a changed value. The futex is shared (never
/// `FUTEX_PRIVATE_FLAG`), so wakes from other processes reach us.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timeout = rustix::thread::futex::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // EAGAIN (value changed), EINTR and ETIMEDOUT all mean: look again.
    let _ = rustix::thread::futex::wait(
        word,
        rustix::thread::futex::Flags::empty(),
        expected,
        Some(&timeout),
    );
}

/// Registers this process to receive `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`
/// barriers (Linux 4.16+), once per process: again in a forked child, whose pid
/// differs (exec starts over anyway). False if the kernel refuses (too old, or
/// a seccomp filter): then [`barrier_on_registered`] does not reach this
/// process.
pub(crate) fn register_for_barriers() -> bool {
    #[cfg(not(miri))]
    {
        use std::sync::atomic::Ordering;
        static REGISTERED: AtomicU32 = AtomicU32::new(0);
        let pid = current_pid();
        if REGISTERED.load(Ordering::Relaxed) == pid {
            return true;
        }
        let done =
            rustix::thread::membarrier(rustix::thread::MembarrierCommand::RegisterGlobalExpedited)
                .is_ok();
        if done {
            REGISTERED.store(pid, Ordering::Relaxed);
        }
        done
    }
    #[cfg(miri)]
    false
}

/// Makes every thread of every registered process that is running right now
/// execute a full memory barrier before this returns (one IPI per CPU running
/// such a thread; threads not running have passed one in their context
/// switch). False if the kernel refuses.
pub(crate) fn barrier_on_registered() -> bool {
    #[cfg(not(miri))]
    {
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_ok()
    }
    #[cfg(miri)]
    false
}

/// Wakes up to `count` waiters sleeping on `word`, in any process.
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) {
    let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), count);
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn own_thread_is_alive_with_a_stable_start_time() {
        let tid = current_tid();
        assert_eq!(tid, rustix::thread::gettid().as_raw_nonzero().get() as u32);
        let start = current_start_time();
        assert!(start > 0);
        assert_eq!(task_state(tid), TaskState::Alive(start));
        let other = std::thread::spawn(current_tid).join().unwrap();
        assert_ne!(other, tid);
        // That thread has exited: its id names nothing now (or, rarely, a new task
        // with a later start time).
        match task_state(other) {
            TaskState::Dead => {}
            TaskState::Alive(later) => assert!(later >= start),
        }
    }

    #[test]
    fn this_kernel_is_known() {
        assert!(kernel_at_least(3, 0));
        assert!(!kernel_at_least(999, 0));
        assert!(proc_is_ours_here());
    }

    fn proc_is_ours_here() -> bool {
        super::imp::proc_is_ours()
    }

    #[test]
    fn impossible_ids_are_dead() {
        assert_eq!(task_state(0), TaskState::Dead);
        assert_eq!(task_state(u32::MAX), TaskState::Dead);
        assert_eq!(task_state(0x3fff_ffff), TaskState::Dead);
    }
}
