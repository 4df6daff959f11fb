//! A helper process for the multi-process tests.
//!
//! Integration tests start it through `env!("CARGO_BIN_EXE_shm-test-peer")` with a
//! role and its arguments. It reports on stdout, one line per event, and waits on
//! stdin where the test needs to hold it at a point; end-of-file on stdin (the test
//! went away) makes it finish. Exit status 0 means the role went as planned.

use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shm_sys::memfd::MemfdSegment;
use shm_sys::posix::PosixSegment;
use shm_sys::sysv::Segment;
use shm_sys::{Error, Key};
use shm_typed::format::{Header, LOCK_OFFSET, PAYLOAD_OFFSET};
use shm_typed::{Location, MpmcRing, PushError, Shared, ShmMutex, SpscRing, Store};

/// The byte a writer puts at `index`: distinct per position and per seed.
fn pattern(seed: u8, index: usize) -> u8 {
    (index as u8).wrapping_mul(31).wrapping_add(seed)
}

fn pattern_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|index| pattern(seed, index)).collect()
}

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

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The test reads these lines; if it went away there is nobody to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Blocks until the test sends a line (or closes stdin).
fn wait_for_go() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::InvalidSize { .. } => "InvalidSize",
        Error::OutOfResources { .. } => "OutOfResources",
        Error::InvalidArgument { .. } => "InvalidArgument",
        Error::ReadOnly { .. } => "ReadOnly",
        Error::OutOfBounds { .. } => "OutOfBounds",
        _ => "Other",
    }
}

fn parse<T: std::str::FromStr>(args: &[String], index: usize, what: &str) -> Result<T, String> {
    args.get(index)
        .ok_or_else(|| format!("missing argument {index} ({what})"))?
        .parse()
        .map_err(|_| format!("argument {index} ({what}) is not valid: {:?}", args[index]))
}

/// Drops to uid/gid 65534 ("nobody"), supplementary groups included.
fn become_nobody() -> Result<(), String> {
    // SAFETY: plain syscalls on this single-threaded process; the order (groups,
    // gid, then uid) keeps the privilege needed for each step until the last one.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(65534) != 0
            || libc::setuid(65534) != 0
    };
    if failed {
        return Err(format!(
            "dropping to uid 65534 failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let role = args.first().map(String::as_str).unwrap_or("");
    match role {
        // sysv-writer PATH PROJ LEN SEED: find the segment by ftok, write the
        // pattern, report, hold the attachment until told, detach, report.
        "sysv-writer" => {
            let path: String = parse(args, 1, "path")?;
            let project: i32 = parse(args, 2, "project id")?;
            let len: usize = parse(args, 3, "length")?;
            let seed: u8 = parse(args, 4, "seed")?;
            let key = Key::ftok(&path, project).map_err(|e| e.to_string())?;
            let segment = Segment::open(key).map_err(|e| e.to_string())?;
            let mapping = segment.attach().map_err(|e| e.to_string())?;
            mapping
                .write_at(0, &pattern_bytes(seed, len))
                .map_err(|e| e.to_string())?;
            say(&format!("attached {}", std::process::id()));
            wait_for_go();
            mapping.detach().map_err(|e| e.to_string())?;
            say("detached");
            Ok(())
        }
        // sysv-read-only-writer ID: attach read-only, check a read works, then
        // write through the pointer. The write must kill us with SIGSEGV.
        "sysv-read-only-writer" => {
            let id: i32 = parse(args, 1, "id")?;
            let segment = Segment::from_id(id).map_err(|e| e.to_string())?;
            let mapping = segment.attach_read_only().map_err(|e| e.to_string())?;
            let mut first = [0u8; 1];
            mapping.read_at(0, &mut first).map_err(|e| e.to_string())?;
            say(&format!("read {}", first[0]));
            let address = mapping.as_ptr().cast_mut();
            // SAFETY: deliberately writing through a read-only mapping: the kernel
            // refuses the store with SIGSEGV, which is what the test checks. The
            // address is inside the mapping, so nothing else can be hit.
            unsafe { address.write_volatile(first[0].wrapping_add(1)) };
            say("wrote");
            Err("a write through a read-only mapping succeeded".into())
        }
        // sysv-open-as-nobody KEY: drop privileges, open the key read-write and
        // read-only, and report each outcome.
        "sysv-open-as-nobody" => {
            let key: i32 = parse(args, 1, "key")?;
            become_nobody()?;
            for (label, result) in [
                ("read-write", Segment::open(Key::new(key))),
                ("read-only", Segment::open_read_only(Key::new(key))),
            ] {
                match result {
                    Ok(_) => say(&format!("{label} Ok")),
                    Err(error) => say(&format!("{label} {} {error}", error_kind(&error))),
                }
            }
            Ok(())
        }
        // posix-writer NAME LEN SEED: open by name, map, write the pattern.
        "posix-writer" => {
            let name: String = parse(args, 1, "name")?;
            let len: usize = parse(args, 2, "length")?;
            let seed: u8 = parse(args, 3, "seed")?;
            let segment = PosixSegment::open(&name).map_err(|e| e.to_string())?;
            let mapping = segment.map().map_err(|e| e.to_string())?;
            mapping
                .write_at(0, &pattern_bytes(seed, len))
                .map_err(|e| e.to_string())?;
            say(&format!("wrote {}", mapping.len()));
            Ok(())
        }
        // memfd-writer FD LEN SEED: take the inherited descriptor, check the
        // pattern the parent wrote (seed), write the next one (seed + 1), then try
        // to shrink the sealed file and report the outcome.
        "memfd-writer" => {
            let fd: i32 = parse(args, 1, "fd")?;
            let len: usize = parse(args, 2, "length")?;
            let seed: u8 = parse(args, 3, "seed")?;
            // SAFETY: the test passed us this descriptor number, inherited across
            // exec and not otherwise used in this process.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let memfd = MemfdSegment::from_fd(fd, "inherited");
            let mapping = memfd.map().map_err(|e| e.to_string())?;
            let mut seen = vec![0u8; len];
            mapping.read_at(0, &mut seen).map_err(|e| e.to_string())?;
            if seen != pattern_bytes(seed, len) {
                return Err("the parent's pattern is not in the memfd".into());
            }
            mapping
                .write_at(0, &pattern_bytes(seed.wrapping_add(1), len))
                .map_err(|e| e.to_string())?;
            match memfd.set_size(len / 2) {
                Ok(()) => say("shrink Ok"),
                Err(error) => say(&format!("shrink {}", error_kind(&error))),
            }
            Ok(())
        }
        // typed-counter ID ROUNDS: add 1 under the lock ROUNDS times, after "go".
        "typed-counter" => {
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
        // lock-stagger shared|store ID OPS SEED: OPS times, take the lock of
        // Shared<[u64; 4]> ID (shared), or the store lock of Store ID (store,
        // guarding the first word of its entry "counter"), and add one to the
        // counter with a plain read, a random pause (spins, sometimes a yield)
        // and a plain write; random pauses between too. Starts at once (the
        // test staggers the starts). Reports "done died=D" (owner_died count).
        "lock-stagger" => {
            let which: String = parse(args, 1, "shared|store")?;
            let id: i32 = parse(args, 2, "id")?;
            let ops: u64 = parse(args, 3, "ops")?;
            let seed: u64 = parse(args, 4, "seed")?;
            let mut random = Random::new(seed ^ u64::from(std::process::id()));
            let mut died = 0u64;
            match which.as_str() {
                "shared" => {
                    let value =
                        Shared::<[u64; 4]>::open(Location::Id(id)).map_err(|e| e.to_string())?;
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
        // typed-hold-lock ID: take the lock, say so, and hold it until killed.
        "typed-hold-lock" => {
            let id: i32 = parse(args, 1, "id")?;
            let value = Shared::<u64>::open(Location::Id(id)).map_err(|e| e.to_string())?;
            let mut guard = value.lock().map_err(|e| e.to_string())?;
            *guard += 1; // a write in progress when we die
            say("locked");
            wait_for_go();
            drop(guard);
            Err("expected to be killed while holding the lock".into())
        }
        // typed-open-or-create: for each key read from stdin, open_or_create a
        // Shared<[u64; 4]> there and report who initialised it and the header's
        // creator record; stop at end of input.
        "typed-open-or-create" => {
            let mut line = String::new();
            loop {
                line.clear();
                if std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    return Ok(());
                }
                let key: i32 = line
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad key {line:?}"))?;
                let me = std::process::id() as u64;
                let (shared, created) =
                    Shared::<[u64; 4]>::open_or_create(Key::new(key), [me, 1, 2, 3])
                        .map_err(|e| e.to_string())?;
                let header = Header::read_from(shared.region()).ok_or("no header")?;
                let value = shared.load().map_err(|e| e.to_string())?;
                say(&format!(
                    "{} creator={} start={} ns={} value0={} state={}",
                    if created { "created" } else { "opened" },
                    header.creator.pid,
                    header.creator.start_time,
                    header.creator.pid_namespace,
                    value[0],
                    header.state,
                ));
            }
        }
        // typed-contend ID: for each line N on stdin, lock/increment/unlock N
        // times, then say "done"; stop at end of input.
        "typed-contend" => {
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
        // typed-fork ID: lock once (filling the per-thread caches), fork, and in
        // the child lock again: the lock word must name the child's thread, not
        // the parent's. Reports "fork-child tid=<gettid> holder=<lock word tid>".
        "typed-fork" => {
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
        // ring-fork-registrations ID CAP: say the process's membarrier
        // registrations before and after claiming the consumer of SpscRing ID,
        // then fork and say the child's: "registrations before=B parent=P
        // child=C" (-1: the kernel cannot tell, before Linux 6.3).
        "ring-fork-registrations" => {
            let id: i32 = parse(args, 1, "id")?;
            let capacity: u64 = parse(args, 2, "capacity")?;
            let ring =
                SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
            let registrations = || {
                const MEMBARRIER_CMD_GET_REGISTRATIONS: libc::c_long = 1 << 9;
                // SAFETY: membarrier with this command only reads the calling
                // process's state; no pointers.
                unsafe {
                    libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0)
                }
            };
            let before = registrations();
            let _consumer = ring.consumer().map_err(|e| e.to_string())?;
            let parent = registrations();
            // SAFETY: this process is single-threaded, so the child may do
            // anything the parent could; it only makes a syscall, writes a line
            // and ends with _exit.
            let child = unsafe { libc::fork() };
            if child < 0 {
                return Err(format!("fork: {}", std::io::Error::last_os_error()));
            }
            if child == 0 {
                say(&format!(
                    "registrations before={before} parent={parent} child={}",
                    registrations()
                ));
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            let mut status = 0;
            // SAFETY: waiting for our own child; `status` is a valid out pointer.
            unsafe { libc::waitpid(child, &mut status, 0) };
            if status != 0 {
                return Err(format!("fork child exited with status {status}"));
            }
            Ok(())
        }
        // spsc-produce ID CAP COUNT [spinning]: push 0..COUNT in batches of
        // varying size (see `produce`), waiting whenever the ring is full, into
        // an SpscRing or (spinning) a spinning one; say "done".
        "spsc-produce" => {
            let id: i32 = parse(args, 1, "id")?;
            let capacity: u64 = parse(args, 2, "capacity")?;
            let count: u64 = parse(args, 3, "count")?;
            if args.get(4).map(String::as_str) == Some("spinning") {
                let ring = SpscRing::<u64, false>::open_spinning(Location::Id(id), capacity)
                    .map_err(|e| e.to_string())?;
                produce(&ring, count)
            } else {
                let ring =
                    SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
                produce(&ring, count)
            }
        }
        // spsc-consume ID CAP COUNT: pop until value COUNT-1 arrives, checking that
        // values follow each other from the first; report "first V", "at X" every
        // 100,000, and "done first=F last=L count=C".
        "spsc-consume" => {
            let id: i32 = parse(args, 1, "id")?;
            let capacity: u64 = parse(args, 2, "capacity")?;
            let count: u64 = parse(args, 3, "count")?;
            let ring =
                SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
            let mut consumer = ring.consumer().map_err(|e| e.to_string())?;
            say("ready");
            let first = loop {
                if let Some(value) = consumer
                    .pop_blocking(std::time::Duration::from_secs(10))
                    .map_err(|e| e.to_string())?
                {
                    break value;
                }
            };
            say(&format!("first {first}"));
            let mut last = first;
            let mut received = 1u64;
            let mut buffer = vec![0u64; 1000];
            while last + 1 < count {
                let got = consumer.pop_into(&mut buffer).map_err(|e| e.to_string())?;
                for &value in &buffer[..got] {
                    if value != last + 1 {
                        say(&format!("gap after {last}: got {value}"));
                        return Err("sequence broken".into());
                    }
                    last = value;
                    received += 1;
                    if value % 100_000 == 0 {
                        say(&format!("at {value}"));
                    }
                }
            }
            say(&format!("done first={first} last={last} count={received}"));
            Ok(())
        }
        // spsc-hostile-produce ID CAP MILLIS: push a counter for MILLIS ms while
        // someone scribbles on the ring; report how many pushes failed as corrupted.
        "spsc-hostile-produce" => {
            let id: i32 = parse(args, 1, "id")?;
            let capacity: u64 = parse(args, 2, "capacity")?;
            let millis: u64 = parse(args, 3, "millis")?;
            let ring =
                SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(millis);
            // The scribbler may make the indices impossible, or the claim name
            // another live process: keep trying until the deadline.
            let claim = || loop {
                match ring.producer() {
                    Ok(producer) => return Ok(Some(producer)),
                    Err(
                        shm_typed::Error::Corrupted { .. } | shm_typed::Error::SideClaimed { .. },
                    ) if std::time::Instant::now() < deadline => {}
                    Err(
                        shm_typed::Error::Corrupted { .. } | shm_typed::Error::SideClaimed { .. },
                    ) => return Ok(None),
                    Err(other) => return Err(other.to_string()),
                }
            };
            let mut producer = claim()?;
            say("ready");
            let (mut ok, mut corrupted, mut value) = (0u64, 0u64, 0u64);
            while std::time::Instant::now() < deadline {
                let Some(active) = producer.as_mut() else {
                    break;
                };
                match active.push(value) {
                    Ok(()) => ok += 1,
                    Err(PushError::Full(_)) => {}
                    Err(PushError::Corrupted(..)) => {
                        corrupted += 1;
                        // Release our claim before claiming again.
                        drop(producer.take());
                        producer = claim()?;
                    }
                    Err(other) => return Err(other.to_string()),
                }
                value += 1;
            }
            say(&format!("pushed {ok} corrupted {corrupted}"));
            Ok(())
        }
        // raw-echo ID [yield]: the baseline ping-pong. Spin until the u64 at
        // offset 0 ("ping") changes, copy it to offset 128 ("pong"); stop at
        // u64::MAX. With "yield", wait with sched_yield instead of a spin hint:
        // the floor for two processes that share one CPU.
        "raw-echo" => {
            let id: i32 = parse(args, 1, "id")?;
            let yielding = args.get(2).map(String::as_str) == Some("yield");
            let mapping = Segment::from_id(id)
                .and_then(|segment| segment.attach())
                .map_err(|e| e.to_string())?;
            // SAFETY: offsets 0 and 128 are inside the segment (the test makes it
            // at least 256 bytes), 8-aligned (page-aligned start); both sides
            // access these words only atomically.
            let (ping, pong) = unsafe {
                let base = mapping.as_mut_ptr().ok_or("read-only")?;
                (
                    AtomicU64::from_ptr(base.cast()),
                    AtomicU64::from_ptr(base.add(128).cast()),
                )
            };
            say("ready");
            let mut last = pong.load(Ordering::Acquire);
            loop {
                let value = ping.load(Ordering::Acquire);
                if value == last {
                    if yielding {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                if value == u64::MAX {
                    return Ok(());
                }
                pong.store(value, Ordering::Release);
                last = value;
            }
        }
        // spsc-echo IN OUT CAP MODE: pop each value from ring IN and push it to
        // ring OUT, spinning (MODE spin) or with the blocking calls (MODE
        // blocking); stop after echoing u64::MAX.
        "spsc-echo" => {
            let (input, output) = open_ring_pair(args)?;
            let blocking = args.get(4).map(String::as_str) == Some("blocking");
            let mut consumer = input.consumer().map_err(|e| e.to_string())?;
            let mut producer = output.producer().map_err(|e| e.to_string())?;
            say("ready");
            loop {
                let value = if blocking {
                    match consumer
                        .pop_blocking(Duration::from_secs(60))
                        .map_err(|e| e.to_string())?
                    {
                        Some(value) => value,
                        None => return Err("no ping for 60 s".into()),
                    }
                } else {
                    match consumer.pop().map_err(|e| e.to_string())? {
                        Some(value) => value,
                        None => {
                            std::hint::spin_loop();
                            continue;
                        }
                    }
                };
                let mut pending = value;
                loop {
                    let pushed = if blocking {
                        producer.push_blocking(pending, Duration::from_secs(60))
                    } else {
                        producer.push(pending)
                    };
                    match pushed {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => pending = back,
                        Err(other) => return Err(other.to_string()),
                    }
                }
                if value == u64::MAX {
                    return Ok(());
                }
            }
        }
        // spsc-sink IN OUT CAP MODE: consume ring IN one at a time (MODE single;
        // MODE spinning: IN is a spinning ring) or in batches of up to 4096
        // (MODE batch); at u64::MAX, push the count to ring OUT and start
        // counting again. In batch mode the values
        // before the marker are copied out but not looked at one by one, and
        // the producer must send nothing after a marker until it has the count.
        "spsc-sink" => {
            let mode = args.get(4).map(String::as_str);
            if mode == Some("spinning") {
                let input: i32 = parse(args, 1, "input ring id")?;
                let output: i32 = parse(args, 2, "output ring id")?;
                let capacity: u64 = parse(args, 3, "capacity")?;
                let input = SpscRing::<u64, false>::open_spinning(Location::Id(input), capacity)
                    .map_err(|e| e.to_string())?;
                let output = SpscRing::<u64>::open(Location::Id(output), capacity)
                    .map_err(|e| e.to_string())?;
                let mut consumer = input.consumer().map_err(|e| e.to_string())?;
                let mut producer = output.producer().map_err(|e| e.to_string())?;
                say("ready");
                return sink_one_by_one(&mut consumer, &mut producer);
            }
            let (input, output) = open_ring_pair(args)?;
            let mut consumer = input.consumer().map_err(|e| e.to_string())?;
            let mut producer = output.producer().map_err(|e| e.to_string())?;
            say("ready");
            if mode != Some("batch") {
                return sink_one_by_one(&mut consumer, &mut producer);
            }
            let mut count = 0u64;
            let mut buffer = vec![0u64; 4096];
            loop {
                let got = consumer.pop_into(&mut buffer).map_err(|e| e.to_string())?;
                if got == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                // The end marker is always the last value in the ring (the
                // producer waits for our count before it sends more), so it
                // ends the batch that holds it: count per batch, not per item.
                if buffer[got - 1] == u64::MAX {
                    count += got as u64 - 1;
                    producer
                        .push_blocking(count, Duration::from_secs(60))
                        .map_err(|e| e.to_string())?;
                    count = 0;
                } else {
                    count += got as u64;
                }
            }
        }
        // stream-echo [FD]: echo 8-byte messages on stdin/stdout, or on the
        // inherited socket FD; stop at end of input.
        "stream-echo" => {
            use std::io::Read;
            let (mut reader, mut writer): (Box<dyn Read>, Box<dyn Write>) = match args.get(1) {
                Some(fd) => {
                    let fd: i32 = fd.parse().map_err(|_| "bad fd")?;
                    // SAFETY: the test passed us this inherited descriptor, used
                    // nowhere else in this process.
                    let socket = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
                    let writer = socket.try_clone().map_err(|e| e.to_string())?;
                    (Box::new(socket), Box::new(writer))
                }
                None => (Box::new(std::io::stdin()), Box::new(std::io::stdout())),
            };
            let mut message = [0u8; 8];
            while reader.read_exact(&mut message).is_ok() {
                writer.write_all(&message).map_err(|e| e.to_string())?;
                writer.flush().map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        // mpmc-produce ID CAP WHO COUNT: after "go", push WHO<<32 | n for n in
        // 0..COUNT, blocking while full; say "done".
        "mpmc-produce" => {
            let id: i32 = parse(args, 1, "id")?;
            let capacity: u64 = parse(args, 2, "capacity")?;
            let who: u64 = parse(args, 3, "producer number")?;
            let count: u64 = parse(args, 4, "count")?;
            let ring =
                MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
            say("ready");
            wait_for_go();
            for n in 0..count {
                ring.push_blocking(who << 32 | n, Duration::from_secs(30))
                    .map_err(|e| e.to_string())?;
            }
            say("done");
            Ok(())
        }
        // mpmc-consume ID CAP: pop until u64::MAX; for producers 0 and 1 report
        // count, sum and sum of squares of n (wrapping), and whether each
        // producer's values arrived in increasing order.
        "mpmc-consume" => {
            let id: i32 = parse(args, 1, "id")?;
            let capacity: u64 = parse(args, 2, "capacity")?;
            let ring =
                MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
            say("ready");
            let mut stats = [(0u64, 0u64, 0u64); 2];
            let mut last: [Option<u64>; 2] = [None, None];
            let mut ordered = true;
            loop {
                let Some(value) = ring
                    .pop_blocking(Duration::from_secs(30))
                    .map_err(|e| e.to_string())?
                else {
                    return Err("nothing for 30 s".into());
                };
                if value == u64::MAX {
                    break;
                }
                let (who, n) = ((value >> 32) as usize, value & 0xffff_ffff);
                let entry = stats.get_mut(who).ok_or("unknown producer")?;
                entry.0 += 1;
                entry.1 = entry.1.wrapping_add(n);
                entry.2 = entry.2.wrapping_add(n.wrapping_mul(n));
                ordered &= last[who].map_or(true, |previous| n > previous);
                last[who] = Some(n);
            }
            say(&format!(
                "stats {} {} {} {} {} {} ordered={}",
                stats[0].0, stats[0].1, stats[0].2, stats[1].0, stats[1].1, stats[1].2, ordered
            ));
            Ok(())
        }
        // mpmc-sink IN OUT CAP: pop ring IN one at a time; at u64::MAX push the
        // count so far to ring OUT and start again.
        "mpmc-sink" => {
            let input: i32 = parse(args, 1, "input ring id")?;
            let output: i32 = parse(args, 2, "output ring id")?;
            let capacity: u64 = parse(args, 3, "capacity")?;
            let open =
                |id| MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string());
            let (input, output) = (open(input)?, open(output)?);
            say("ready");
            let mut count = 0u64;
            loop {
                match input.pop().map_err(|e| e.to_string())? {
                    Some(u64::MAX) => {
                        output
                            .push_blocking(count, Duration::from_secs(60))
                            .map_err(|e| e.to_string())?;
                        count = 0;
                    }
                    Some(_) => count += 1,
                    None => std::hint::spin_loop(),
                }
            }
        }
        // store-check ID COUNT: open the store by id and read back every entry
        // made by store_entry_name/kind (see tests/store.rs), with type checks;
        // report "checked N", then the error for opening entry 0 as the wrong type.
        "store-check" => {
            let id: i32 = parse(args, 1, "id")?;
            let count: u64 = parse(args, 2, "count")?;
            let store = Store::open(Location::Id(id)).map_err(|e| e.to_string())?;
            let mut checked = 0;
            for index in 0..count {
                let name = format!("entry-{index}");
                let ok = match index % 5 {
                    0 => {
                        store
                            .get_object::<u64>(&name)
                            .map_err(|e| e.to_string())?
                            .load()
                            .map_err(|e| e.to_string())?
                            == index
                    }
                    1 => {
                        store
                            .get_object::<[u32; 4]>(&name)
                            .map_err(|e| e.to_string())?
                            .load()
                            .map_err(|e| e.to_string())?
                            == [index as u32; 4]
                    }
                    2 => {
                        store
                            .get_object::<f64>(&name)
                            .map_err(|e| e.to_string())?
                            .load()
                            .map_err(|e| e.to_string())?
                            == index as f64 / 2.0
                    }
                    3 => {
                        let ring = store
                            .get_spsc::<u64>(&name, 16)
                            .map_err(|e| e.to_string())?;
                        let got = ring
                            .consumer()
                            .map_err(|e| e.to_string())?
                            .pop()
                            .map_err(|e| e.to_string())?;
                        got == Some(index)
                    }
                    _ => {
                        store
                            .mpmc::<u64>(&name, 16)
                            .map_err(|e| e.to_string())?
                            .pop()
                            .map_err(|e| e.to_string())?
                            == Some(index)
                    }
                };
                if !ok {
                    return Err(format!("{name} holds the wrong value"));
                }
                checked += 1;
            }
            say(&format!("checked {checked}"));
            match store.get_object::<[u64; 2]>("entry-0") {
                Ok(_) => say("wrong type accepted"),
                Err(error) => say(&format!("error {error}")),
            }
            Ok(())
        }
        // idle: report our pid and wait for stdin to close.
        "idle" => {
            say(&format!("pid {}", std::process::id()));
            wait_for_go();
            Ok(())
        }
        other => Err(format!("unknown role {other:?}")),
    }
}

/// Opens the rings with ids `args[1]` and `args[2]`, capacity `args[3]`.
/// Pushes `count` u64 (0, 1, 2, ...) into `ring` in batches of 1 to 4096:
/// with `push_slice`, and one `push` at a time for batch sizes divisible by
/// five. Says "ready" before and "done" after, then waits for "go".
fn produce<const WAKE: bool>(ring: &SpscRing<u64, WAKE>, count: u64) -> Result<(), String> {
    let mut producer = ring.producer().map_err(|e| e.to_string())?;
    say("ready");
    let mut batch = vec![0u64; 4096];
    let mut next = 0u64;
    let mut size = 1usize;
    while next < count {
        // Batch sizes cycle through 1..=4096 (a cheap deterministic mix).
        size = (size * 7 + 13) % 4096 + 1;
        let end = (next + size as u64).min(count);
        let len = (end - next) as usize;
        for (slot, value) in batch[..len].iter_mut().zip(next..end) {
            *slot = value;
        }
        if size % 5 == 0 {
            for &value in &batch[..len] {
                let mut pending = value;
                loop {
                    match producer.push(pending) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => pending = back,
                        Err(other) => return Err(other.to_string()),
                    }
                    std::hint::spin_loop();
                }
            }
        } else {
            let mut sent = 0;
            while sent < len {
                let pushed = producer
                    .push_slice(&batch[sent..len])
                    .map_err(|e| e.to_string())?;
                sent += pushed;
                if pushed == 0 {
                    std::hint::spin_loop();
                }
            }
        }
        next = end;
    }
    say("done");
    wait_for_go();
    Ok(())
}

/// The sink's one-at-a-time loop: the same work per item as the in-process
/// baselines' consumers (one pop, one compare, one count); at u64::MAX, the
/// count goes back on `counts`. Runs until the process is killed.
fn sink_one_by_one<const WAKE: bool>(
    consumer: &mut shm_typed::Consumer<'_, u64, WAKE>,
    counts: &mut shm_typed::Producer<'_, u64>,
) -> Result<(), String> {
    let mut count = 0u64;
    loop {
        match consumer.pop().map_err(|e| e.to_string())? {
            Some(u64::MAX) => {
                counts
                    .push_blocking(count, Duration::from_secs(60))
                    .map_err(|e| e.to_string())?;
                count = 0;
            }
            Some(_) => count += 1,
            None => std::hint::spin_loop(),
        }
    }
}

fn open_ring_pair(args: &[String]) -> Result<(SpscRing<u64>, SpscRing<u64>), String> {
    let input: i32 = parse(args, 1, "input ring id")?;
    let output: i32 = parse(args, 2, "output ring id")?;
    let capacity: u64 = parse(args, 3, "capacity")?;
    let open = |id| SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string());
    Ok((open(input)?, open(output)?))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("shm-test-peer: {message}");
            ExitCode::FAILURE
        }
    }
}
