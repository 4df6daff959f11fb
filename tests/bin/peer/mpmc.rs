//! MpmcRing roles: a producer of tagged sequences and a consumer that checks
//! them.

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
