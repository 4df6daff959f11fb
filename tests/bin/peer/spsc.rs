//! SpscRing roles: producing and checking long sequences, producing while the
//! ring is scribbled on, and membarrier registrations across a fork.

use shm_typed::{Location, PushError, SpscRing};

use crate::common::{parse, say, wait_for_go};
use crate::stress::{stress_words, Pauses};

/// ring-fork-registrations ID CAP: say the process's membarrier
/// registrations before and after claiming the consumer of SpscRing ID,
/// then fork and say the child's: "registrations before=B parent=P
/// child=C" (-1: the kernel cannot tell, before Linux 6.3).
pub fn fork_registrations(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let ring = SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
    let registrations = || {
        const MEMBARRIER_CMD_GET_REGISTRATIONS: libc::c_long = 1 << 9;
        // SAFETY: membarrier with this command only reads the calling
        // process's state; no pointers.
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0) }
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

/// spsc-produce ID CAP COUNT [spinning]: push 0..COUNT in batches of
/// varying size (see `push_batches`), waiting whenever the ring is full, into
/// an SpscRing or (spinning) a spinning one; say "done".
pub fn produce(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let count: u64 = parse(args, 3, "count")?;
    if args.get(4).map(String::as_str) == Some("spinning") {
        let ring = SpscRing::<u64, false>::open_spinning(Location::Id(id), capacity)
            .map_err(|e| e.to_string())?;
        push_batches(&ring, count)
    } else {
        let ring = SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
        push_batches(&ring, count)
    }
}

/// spsc-consume ID CAP COUNT: pop until value COUNT-1 arrives, checking that
/// values follow each other from the first; report "first V", "at X" every
/// 100,000, and "done first=F last=L count=C".
pub fn consume(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let count: u64 = parse(args, 3, "count")?;
    let ring = SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
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

/// spsc-hostile-produce ID CAP MILLIS: push a counter for MILLIS ms while
/// someone scribbles on the ring; report how many pushes failed as corrupted.
pub fn hostile_produce(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let millis: u64 = parse(args, 3, "millis")?;
    let ring = SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    // The scribbler may make the indices impossible, or the claim name
    // another live process: keep trying until the deadline.
    let claim = || loop {
        match ring.producer() {
            Ok(producer) => return Ok(Some(producer)),
            Err(shm_typed::Error::Corrupted { .. } | shm_typed::Error::SideClaimed { .. })
                if std::time::Instant::now() < deadline => {}
            Err(shm_typed::Error::Corrupted { .. } | shm_typed::Error::SideClaimed { .. }) => {
                return Ok(None)
            }
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

/// Pushes `count` u64 (0, 1, 2, ...) into `ring` in batches of 1 to 4096:
/// with `push_slice`, and one `push` at a time for batch sizes divisible by
/// five. Says "ready" before and "done" after, then waits for "go".
fn push_batches<const WAKE: bool>(ring: &SpscRing<u64, WAKE>, count: u64) -> Result<(), String> {
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

/// spsc-produce-words ID CAP COUNT SEED: wait for "go", then push
/// `stress_words(0..COUNT)` one by one into an SpscRing<[u64; 6]> (48 bytes:
/// the largest type the mailbox carries), with random pauses seeded by SEED
/// between pushes; say "done".
pub fn produce_words(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let count: u64 = parse(args, 3, "count")?;
    let seed: u64 = parse(args, 4, "seed")?;
    let ring = SpscRing::<[u64; 6]>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
    let mut producer = ring.producer().map_err(|e| e.to_string())?;
    let mut pauses = Pauses::new(seed);
    say("ready");
    wait_for_go();
    for index in 0..count {
        pauses.pause();
        producer
            .push_blocking(stress_words(index), std::time::Duration::from_secs(30))
            .map_err(|e| format!("push {index}: {e:?}"))?;
    }
    say("done");
    Ok(())
}
