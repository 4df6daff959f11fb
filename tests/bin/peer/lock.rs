//! Lock roles: counting, contending, staggered stress, holding the lock until
//! killed, and locking across a fork.

use std::io::BufRead;

use shm_typed::format::{LOCK_OFFSET, PAYLOAD_OFFSET};
use shm_typed::{Location, Shared, ShmMutex, Store};

use crate::common::{parse, say, wait_for_go};

/// xorshift64*: the random pauses of the lock stress roles.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Under the lock: up to 63 spins, and one time in 16 a yield, so that
    /// holders are descheduled while waiters sleep and judge them.
    fn pause_inside(&mut self) {
        let r = self.next();
        for _ in 0..(r & 63) {
            std::hint::spin_loop();
        }
        if (r >> 8) % 16 == 0 {
            std::thread::yield_now();
        }
    }

    /// Between locks: up to 31 spins, one time in 16 a yield.
    fn pause_outside(&mut self) {
        let r = self.next();
        for _ in 0..(r & 31) {
            std::hint::spin_loop();
        }
        if (r >> 8) % 16 == 0 {
            std::thread::yield_now();
        }
    }
}

/// typed-counter ID ROUNDS: add 1 under the lock ROUNDS times, after "go".
pub fn counter(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let rounds: u64 = parse(args, 2, "rounds")?;
    let counter = Shared::<u64>::open(Location::Id(id)).map_err(|e| e.to_string())?;
    say("ready");
    wait_for_go();
    for _ in 0..rounds {
        *counter.lock().map_err(|e| e.to_string())? += 1;
    }
    say("done");
    Ok(())
}

/// lock-stagger shared|store ID OPS SEED: OPS times, take the lock of
/// Shared<[u64; 4]> ID (shared), or the store lock of Store ID (store,
/// guarding the first word of its entry "counter"), and add one to the
/// counter with a plain read, a random pause (spins, sometimes a yield)
/// and a plain write; random pauses between too. Starts at once (the
/// test staggers the starts). Reports "done died=D" (owner_died count).
pub fn stagger(args: &[String]) -> Result<(), String> {
    let which: String = parse(args, 1, "shared|store")?;
    let id: i32 = parse(args, 2, "id")?;
    let ops: u64 = parse(args, 3, "ops")?;
    let seed: u64 = parse(args, 4, "seed")?;
    let mut random = Random::new(seed ^ u64::from(std::process::id()));
    let mut died = 0u64;
    match which.as_str() {
        "shared" => {
            let value = Shared::<[u64; 4]>::open(Location::Id(id)).map_err(|e| e.to_string())?;
            for _ in 0..ops {
                let mut guard = value.lock().map_err(|e| e.to_string())?;
                if guard.owner_died() {
                    died += 1;
                    guard.mark_consistent();
                }
                let seen = guard[0];
                random.pause_inside();
                guard[0] = seen + 1;
                drop(guard);
                random.pause_outside();
            }
        }
        "store" => {
            let store = Store::open(Location::Id(id)).map_err(|e| e.to_string())?;
            let entry = store
                .get_object::<[u64; 4]>("counter")
                .map_err(|e| e.to_string())?;
            let counter = entry
                .region()
                .as_ptr()
                .wrapping_add(PAYLOAD_OFFSET)
                .cast::<u64>();
            let lock = store
                .region()
                .as_ptr()
                .wrapping_add(LOCK_OFFSET)
                .cast::<ShmMutex>();
            // SAFETY: the store's header lock lives at LOCK_OFFSET of its
            // mapped, 128-aligned region (a ShmMutex is all atomics), and
            // the region outlives this loop.
            let lock = unsafe { &*lock };
            for _ in 0..ops {
                let acquired = lock.acquire(None).map_err(|e| format!("{e:?}"))?;
                if acquired.owner_died {
                    died += 1;
                    lock.mark_consistent();
                }
                // SAFETY: inside the entry's mapped payload, 8-aligned;
                // every process touches it only under the store's lock
                // (that exclusion is what this role tests).
                let seen = unsafe { counter.read_volatile() };
                random.pause_inside();
                // SAFETY: as for the read.
                unsafe { counter.write_volatile(seen + 1) };
                lock.release();
                random.pause_outside();
            }
        }
        other => return Err(format!("lock-stagger: unknown lock {other:?}")),
    }
    say(&format!("done died={died}"));
    Ok(())
}

/// typed-hold-lock ID: take the lock, say so, and hold it until killed.
pub fn hold(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let value = Shared::<u64>::open(Location::Id(id)).map_err(|e| e.to_string())?;
    let mut guard = value.lock().map_err(|e| e.to_string())?;
    *guard += 1; // a write in progress when we die
    say("locked");
    wait_for_go();
    drop(guard);
    Err("expected to be killed while holding the lock".into())
}

/// typed-contend ID: for each line N on stdin, lock/increment/unlock N
/// times, then say "done"; stop at end of input.
pub fn contend(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let counter = Shared::<u64>::open(Location::Id(id)).map_err(|e| e.to_string())?;
    let mut line = String::new();
    say("ready");
    while std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?
        > 0
    {
        let rounds: u64 = line
            .trim()
            .parse()
            .map_err(|_| format!("bad count {line:?}"))?;
        line.clear();
        for _ in 0..rounds {
            *counter.lock().map_err(|e| e.to_string())? += 1;
        }
        say("done");
    }
    Ok(())
}

/// typed-turns ID: say "ready"; then for each line N on stdin take N turns
/// on the Shared<u64> counter ID with the other party: lock, and if the
/// counter is odd (our parity) increment it; unlock; until N increments are
/// ours. Say "done" after each N.
pub fn turns(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let counter = Shared::<u64>::open(Location::Id(id)).map_err(|e| e.to_string())?;
    let mut line = String::new();
    say("ready");
    while std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?
        > 0
    {
        let turns: u64 = line
            .trim()
            .parse()
            .map_err(|_| format!("bad count {line:?}"))?;
        line.clear();
        let mut taken = 0;
        while taken < turns {
            let mut value = counter.lock().map_err(|e| e.to_string())?;
            if *value % 2 == 1 {
                *value += 1;
                taken += 1;
            }
        }
        say("done");
    }
    Ok(())
}

/// typed-fork ID: lock once (filling the per-thread caches), fork, and in
/// the child lock again: the lock word must name the child's thread, not
/// the parent's. Reports "fork-child tid=<gettid> holder=<lock word tid>".
pub fn fork(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let value = Shared::<u64>::open(Location::Id(id)).map_err(|e| e.to_string())?;
    drop(value.lock().map_err(|e| e.to_string())?);
    // SAFETY: this process is single-threaded, so the child may do
    // anything the parent could; it ends with _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if child == 0 {
        let code = match value.lock() {
            Ok(guard) => {
                let holder = value.lock_holder().map_or(0, |h| h.tid);
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                drop(guard);
                say(&format!("fork-child tid={tid} holder={holder}"));
                0
            }
            Err(error) => {
                say(&format!("fork-child error {error}"));
                1
            }
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child; `status` is a valid out pointer.
    unsafe { libc::waitpid(child, &mut status, 0) };
    if status != 0 {
        return Err(format!("fork child exited with status {status}"));
    }
    Ok(())
}

/// lock-as-reused-pid ID: run as pid 1 of a new pid namespace with its own
/// `/proc` (`unshare --pid --fork --mount-proc`). Forks A, which locks and
/// unlocks the lock of Shared<u64> ID (filling every per-process cache) and
/// forks B; A exits and is reaped; B sets `ns_last_pid` so that its next
/// child C gets A's pid, forks C, which locks the lock again and holds it,
/// reporting "locked pid=P reused=R" (R: whether P is A's pid). C inherited
/// A's caches through B: it must not take A's identity or token for its own.
pub fn as_reused_pid(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    // Every fork below: this process and its descendants are single-threaded
    // here, so a child may do anything its parent could; children end with
    // _exit.
    // SAFETY: as just said.
    let a = unsafe { libc::fork() };
    if a < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if a == 0 {
        let value = match Shared::<u64>::open(Location::Id(id)) {
            Ok(value) => value,
            Err(error) => {
                say(&format!("error {error}"));
                // SAFETY: ends the child without running destructors.
                unsafe { libc::_exit(1) };
            }
        };
        drop(value.lock());
        // SAFETY: getpid has no preconditions.
        let pid_a = unsafe { libc::getpid() };
        // SAFETY: as above.
        let b = unsafe { libc::fork() };
        if b == 0 {
            // B: wait until A is gone and reaped (B is then init's child).
            // SAFETY: getppid has no preconditions.
            while unsafe { libc::getppid() } == pid_a {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            let _ = std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid_a - 1));
            // SAFETY: as above.
            let c = unsafe { libc::fork() };
            if c == 0 {
                // SAFETY: getpid has no preconditions.
                let pid_c = unsafe { libc::getpid() };
                match value.lock() {
                    Ok(_guard) => {
                        say(&format!("locked pid={pid_c} reused={}", pid_c == pid_a));
                        loop {
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                    }
                    Err(error) => say(&format!("error {error}")),
                }
                // SAFETY: as above.
                unsafe { libc::_exit(1) };
            }
            let mut status = 0;
            // SAFETY: waiting for our own child; `status` is a valid pointer.
            unsafe { libc::waitpid(c, &mut status, 0) };
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    // Init: reap whatever exits, until killed.
    loop {
        let mut status = 0;
        // SAFETY: waiting for any child; `status` is a valid out pointer.
        if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
