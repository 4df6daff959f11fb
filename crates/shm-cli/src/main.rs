//! The `shm` command.
//!
//! `shm demo` is ready: two processes stream a `#[repr(C)]` struct through an
//! `SpscRing` and report throughput and latency percentiles. Listing,
//! inspecting, creating and removing segments are planned.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// See what lives in shared memory, and try it out.
#[derive(Debug, Parser)]
#[command(name = "shm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream a #[repr(C)] struct between a producer and a consumer process
    /// through a ring in a fresh segment; print throughput and latency.
    Demo(demo::Options),
    /// (Internal) the demo's producer process.
    #[command(hide = true)]
    DemoProducer(demo::Role),
    /// (Internal) the demo's consumer process.
    #[command(hide = true)]
    DemoConsumer(demo::Role),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(options) => demo::run(&options),
        Command::DemoProducer(role) => demo::producer(&role),
        Command::DemoConsumer(role) => demo::consumer(&role),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shm: {error}");
            ExitCode::FAILURE
        }
    }
}
