//! What every role shares: the write pattern, reporting, waiting for the test,
//! and argument parsing.

use std::io::{BufRead, Write};

use shm_sys::Error;

/// The byte a writer puts at `index`: distinct per position and per seed.
fn pattern(seed: u8, index: usize) -> u8 {
    (index as u8).wrapping_mul(31).wrapping_add(seed)
}

/// The first `len` bytes of the pattern for `seed`.
pub fn pattern_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|index| pattern(seed, index)).collect()
}

/// Prints one report line for the test and flushes it.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The test reads these lines; if it went away there is nobody to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Blocks until the test sends a line (or closes stdin).
pub fn wait_for_go() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// The name of an error's variant, as the tests compare it.
pub fn error_kind(error: &Error) -> &'static str {
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

/// Parses argument `index` (`what` names it in the error message).
pub fn parse<T: std::str::FromStr>(args: &[String], index: usize, what: &str) -> Result<T, String> {
    args.get(index)
        .ok_or_else(|| format!("missing argument {index} ({what})"))?
        .parse()
        .map_err(|_| format!("argument {index} ({what}) is not valid: {:?}", args[index]))
}
