//! The `shm` command: see what lives in shared memory and clean it up.
//!
//! Not built yet; for now it prints its planned usage and exits with status 2.

use std::process::ExitCode;

const USAGE: &str = "\
usage: shm <command>

commands (planned):
  ls        every System V segment on the host and our POSIX objects
  inspect   everything known about one segment
  rm        remove a segment (refuses attached ones unless --force)
  create    make a typed or raw segment
  demo      processes exchanging typed data through a ring

none of these is implemented yet.";

fn main() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
