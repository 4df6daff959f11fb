//! A helper process for the multi-process tests.
//!
//! Integration tests start it through `env!("CARGO_BIN_EXE_shm-test-peer")` with a
//! role and its arguments. It reports on stdout, one line per event, and waits on
//! stdin where the test needs to hold it at a point; end-of-file on stdin (the test
//! went away) makes it finish. Exit status 0 means the role went as planned.
//!
//! This file only picks the role; each family of roles lives in its own module,
//! where every role function documents its arguments and output.

use std::process::ExitCode;

mod common;
mod creator;
mod echo;
#[path = "../../support/lines.rs"]
mod lines;
mod lock;
mod mpmc;
mod posix;
mod spsc;
mod store;
#[path = "../../support/stress.rs"]
mod stress;
mod sysv;

/// Runs the role named by `args[0]`; every role reads its own arguments from
/// `args[1..]`.
fn run(args: &[String]) -> Result<(), String> {
    let role = args.first().map(String::as_str).unwrap_or("");
    match role {
        "sysv-writer" => sysv::writer(args),
        "sysv-read-only-writer" => sysv::read_only_writer(args),
        "sysv-open-as-nobody" => sysv::open_as_nobody(args),
        "posix-writer" => posix::writer(args),
        "memfd-writer" => posix::memfd_writer(args),
        "typed-counter" => lock::counter(args),
        "lock-stagger" => lock::stagger(args),
        "typed-hold-lock" => lock::hold(args),
        "typed-open-or-create" => creator::open_or_create(args),
        "typed-contend" => lock::contend(args),
        "typed-turns" => lock::turns(args),
        "typed-fork" => lock::fork(args),
        "lock-as-reused-pid" => lock::as_reused_pid(args),
        "ring-fork-registrations" => spsc::fork_registrations(args),
        "spsc-produce" => spsc::produce(args),
        "spsc-consume" => spsc::consume(args),
        "spsc-hostile-produce" => spsc::hostile_produce(args),
        "spsc-produce-words" => spsc::produce_words(args),
        "raw-echo" => echo::raw(args),
        "lines-echo" => echo::lines(args),
        "spsc-echo" => echo::spsc(args),
        "spsc-sink" => echo::spsc_sink(args),
        "stream-echo" => echo::stream(args),
        "mpmc-produce" => mpmc::produce(args),
        "mpmc-consume" => mpmc::consume(args),
        "mpmc-crash-produce" => mpmc::crash_produce(args),
        "mpmc-crash-consume" => mpmc::crash_consume(args),
        "mpmc-sink" => echo::mpmc_sink(args),
        "store-check" => store::check(args),
        "idle" => creator::idle(args),
        other => Err(format!("unknown role {other:?}")),
    }
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
