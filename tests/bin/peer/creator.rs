//! Creation and liveness roles: racing open_or_create, and an idle bystander
//! whose pid (live, or exited and reaped) the tests put in creator and owner
//! records.

use std::io::BufRead;

use shm_sys::Key;
use shm_typed::format::Header;
use shm_typed::Shared;

use crate::common::{say, wait_for_go};

/// typed-open-or-create: for each key read from stdin, open_or_create a
/// Shared<[u64; 4]> there and report who initialised it and the header's
/// creator record; stop at end of input.
pub fn open_or_create(_args: &[String]) -> Result<(), String> {
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
        let (shared, created) = Shared::<[u64; 4]>::open_or_create(Key::new(key), [me, 1, 2, 3])
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

/// idle: report our pid and wait for stdin to close.
pub fn idle(_args: &[String]) -> Result<(), String> {
    say(&format!("pid {}", std::process::id()));
    wait_for_go();
    Ok(())
}
