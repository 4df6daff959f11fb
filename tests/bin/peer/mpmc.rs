//! MpmcRing roles: a producer of tagged sequences and a consumer that checks
//! them; and, for the crash tests, a producer and a consumer with random
//! pauses whose consumer logs every value it gets to a file.

use std::time::Duration;

use shm_typed::{Location, MpmcRing};

use crate::common::{parse, say, wait_for_go};

/// mpmc-produce ID CAP WHO COUNT: after "go", push WHO<<32 | n for n in
/// 0..COUNT, blocking while full; say "done".
pub fn produce(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let who: u64 = parse(args, 3, "producer number")?;
    let count: u64 = parse(args, 4, "count")?;
    let ring = MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
    say("ready");
    wait_for_go();
    for n in 0..count {
        ring.push_blocking(who << 32 | n, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
    }
    say("done");
    Ok(())
}

/// mpmc-consume ID CAP: pop until u64::MAX; for producers 0 and 1 report
/// count, sum and sum of squares of n (wrapping), and whether each
/// producer's values arrived in increasing order.
pub fn consume(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let ring = MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
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

/// A small deterministic generator for the random pauses of the crash roles
/// (xorshift64*; the seed comes from the test, which prints it).
struct Pauses(u64);

impl Pauses {
    fn new(seed: u64) -> Pauses {
        Pauses(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Now and then, sleeps a little: a few microseconds to a few
    /// milliseconds, so that the processes interleave differently each round.
    fn maybe_pause(&mut self) {
        let roll = self.next();
        if roll % 64 == 0 {
            std::thread::sleep(Duration::from_micros(roll % 300));
        } else if roll % 1024 == 1 {
            std::thread::sleep(Duration::from_micros(1000 + roll % 3000));
        }
    }
}

/// mpmc-crash-produce ID CAP WHO COUNT SEED: opens the ring, says "ready",
/// pushes WHO<<32 | n for n in 0..COUNT (blocking, at most 10 s each, which
/// includes repairing what a dead participant left in the way) with random
/// pauses, says "done".
pub fn crash_produce(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let who: u64 = parse(args, 3, "producer number")?;
    let count: u64 = parse(args, 4, "count")?;
    let mut pauses = Pauses::new(parse(args, 5, "seed")?);
    let ring = MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
    say("ready");
    for n in 0..count {
        pauses.maybe_pause();
        ring.push_blocking(who << 32 | n, Duration::from_secs(10))
            .map_err(|e| format!("pushing {n}: {e}"))?;
    }
    say("done");
    Ok(())
}

/// mpmc-crash-consume ID CAP LOG SEED: opens the ring, says "ready", pops
/// (blocking, at most 10 s each) until it gets u64::MAX, appending each
/// value to the file LOG as a decimal line with one write(2) per value (so
/// that a kill leaves every value it had popped but at most the last one on
/// record), with random pauses; says "done".
pub fn crash_consume(args: &[String]) -> Result<(), String> {
    let id: i32 = parse(args, 1, "id")?;
    let capacity: u64 = parse(args, 2, "capacity")?;
    let log: String = parse(args, 3, "log file")?;
    let mut pauses = Pauses::new(parse(args, 4, "seed")?);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("{log}: {e}"))?;
    let ring = MpmcRing::<u64>::open(Location::Id(id), capacity).map_err(|e| e.to_string())?;
    say("ready");
    loop {
        pauses.maybe_pause();
        let value = ring
            .pop_blocking(Duration::from_secs(10))
            .map_err(|e| e.to_string())?
            .ok_or("nothing arrived for 10 s: the ring is stuck")?;
        if value == u64::MAX {
            break;
        }
        std::io::Write::write_all(&mut log, format!("{value}\n").as_bytes())
            .map_err(|e| e.to_string())?;
    }
    say("done");
    Ok(())
}
