//! Echo and sink partners for round trips and throughput: a raw shared-word
//! ping-pong, a byte stream, SpscRing echo and sinks, and an MpmcRing sink.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shm_sys::sysv::Segment;
use shm_typed::{Location, MpmcRing, PushError, SpscRing};

use crate::common::{parse, say};

/// raw-echo ID [yield]: the baseline ping-pong. Spin until the u64 at
/// offset 0 ("ping") changes, copy it to offset 128 ("pong"); stop at
/// u64::MAX. With "yield", wait with sched_yield instead of a spin hint:
/// the floor for two processes that share one CPU.
pub fn raw(args: &[String]) -> Result<(), String> {
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

/// lines-echo ID MODE: the echo side of the ring benchmark's `lines` part
/// (tests/support/lines.rs): receive message 1, 2, ... on the forward lane
/// in MODE (`word`, `slot-then-index`, `stamped-slot`), send each value back
/// on the backward lane; stop at the STOP value.
pub fn lines(args: &[String]) -> Result<(), String> {
    use crate::lines::{Lane, Mode, SEGMENT_LEN, STOP};
    let id: i32 = parse(args, 1, "id")?;
    let mode = args
        .get(2)
        .and_then(|mode| Mode::parse(mode))
        .ok_or("mode: word, slot-then-index or stamped-slot")?;
    let mapping = Segment::from_id(id)
        .and_then(|segment| segment.attach())
        .map_err(|e| e.to_string())?;
    if mapping.len() < SEGMENT_LEN {
        return Err(format!("segment {id} is smaller than {SEGMENT_LEN} bytes"));
    }
    let base = mapping.as_mut_ptr().ok_or("read-only")?;
    // SAFETY: a live, page-aligned, writable mapping of at least SEGMENT_LEN
    // bytes (checked), kept until the lanes are dropped at return; the
    // benchmark accesses it only atomically too.
    let (forward, backward) = unsafe { (Lane::new(base, true), Lane::new(base, false)) };
    say("ready");
    let mut i = 1u64;
    loop {
        let value = loop {
            if let Some(value) = forward.try_receive(mode, i) {
                break value;
            }
            std::hint::spin_loop();
        };
        if value == STOP {
            return Ok(());
        }
        backward.send(mode, i, value);
        i += 1;
    }
}

/// stream-echo [FD]: echo 8-byte messages on stdin/stdout, or on the
/// inherited socket FD; stop at end of input.
pub fn stream(args: &[String]) -> Result<(), String> {
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

/// spsc-echo IN OUT CAP MODE: pop each value from ring IN and push it to
/// ring OUT, spinning (MODE spin) or with the blocking calls (MODE
/// blocking); stop after echoing u64::MAX.
pub fn spsc(args: &[String]) -> Result<(), String> {
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

/// spsc-sink IN OUT CAP MODE: consume ring IN one at a time (MODE single;
/// MODE spinning: IN is a spinning ring) or in batches of up to 4096
/// (MODE batch); at u64::MAX, push the count to ring OUT and start
/// counting again. In batch mode the values
/// before the marker are copied out but not looked at one by one, and
/// the producer must send nothing after a marker until it has the count.
pub fn spsc_sink(args: &[String]) -> Result<(), String> {
    let mode = args.get(4).map(String::as_str);
    if mode == Some("spinning") {
        let input: i32 = parse(args, 1, "input ring id")?;
        let output: i32 = parse(args, 2, "output ring id")?;
        let capacity: u64 = parse(args, 3, "capacity")?;
        let input = SpscRing::<u64, false>::open_spinning(Location::Id(input), capacity)
            .map_err(|e| e.to_string())?;
        let output =
            SpscRing::<u64>::open(Location::Id(output), capacity).map_err(|e| e.to_string())?;
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

/// mpmc-sink IN OUT CAP: pop ring IN one at a time; at u64::MAX push the
/// count so far to ring OUT and start again.
pub fn mpmc_sink(args: &[String]) -> Result<(), String> {
    let input: i32 = parse(args, 1, "input ring id")?;
    let output: i32 = parse(args, 2, "output ring id")?;
    let capacity: u64 = parse(args, 3, "capacity")?;
    let open = |id| MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string());
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

/// Opens the rings with ids `args[1]` and `args[2]`, capacity `args[3]`.
fn open_ring_pair(args: &[String]) -> Result<(SpscRing<u64>, SpscRing<u64>), String> {
    let input: i32 = parse(args, 1, "input ring id")?;
    let output: i32 = parse(args, 2, "output ring id")?;
    let capacity: u64 = parse(args, 3, "capacity")?;
    let open = |id| SpscRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string());
    Ok((open(input)?, open(output)?))
}
