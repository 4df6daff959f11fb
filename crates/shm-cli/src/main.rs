//! The `shm` command.
//!
//! `shm ls` lists every System V segment (as `ipcs -m` does) and our POSIX
//! objects, decoding our headers; `shm inspect` shows one segment; `shm rm`
//! removes one, or every stale one of ours; `shm create` makes a segment for
//! scripts; `shm demo` streams a struct between two processes.

/// `println!` that ends the process quietly when stdout is closed early
/// (`shm ls | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("shm: writing output: {error}");
            std::process::exit(1);
        }
    }};
}

mod create;
mod demo;
mod segments;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `ls` and `inspect` do to the segments they look at.
const ATTACH_NOTE: &str = "Reading headers attaches each System V segment read-only for a moment \
(shmat, then shmdt), so this changes the lpid, atime and dtime of every segment it lists or \
inspects, as `ipcs -m -p` and `ipcs -m -t` then show; nattch and the other fields are read \
before that. POSIX objects are mapped read-only to read their headers (by ls: every object in \
/dev/shm it can open), which updates their access time (atime).";

/// See what lives in shared memory, and try it out.
#[derive(Debug, Parser)]
#[command(name = "shm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every System V segment on the host and our POSIX objects; our headers
    /// decoded (kind, type, state, lock holder, ring fill).
    #[command(after_help = ATTACH_NOTE)]
    Ls {
        /// Print JSON (one array, one object per segment) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything known about one segment: 0xKEY, ID, path:proj or /posix-name.
    #[command(after_help = ATTACH_NOTE)]
    Inspect {
        /// The segment.
        target: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a segment (refused while attached, unless --force), or with
    /// --stale every segment of ours that no process is attached to.
    #[command(
        after_help = "With --stale, each System V segment that nobody is attached to is \
                      attached read-only for a moment to read its header, which changes its \
                      lpid, atime and dtime."
    )]
    Rm {
        /// The segment: 0xKEY, ID, path:proj or /posix-name.
        target: Option<String>,
        /// Remove even while attached (freed when the last process detaches).
        #[arg(long)]
        force: bool,
        /// Remove our segments that nobody is attached to.
        #[arg(long)]
        stale: bool,
    },
    /// Make a raw or typed segment, for scripting.
    Create(create::CreateOptions),
    /// Stream a #[repr(C)] struct between a producer and a consumer process
    /// through a ring in a fresh segment; print throughput, latency
    /// percentiles and a latency histogram (progress goes to stderr).
    Demo(demo::Options),
    /// (Internal) the demo's producer process.
    #[command(hide = true)]
    DemoProducer(demo::Role),
    /// (Internal) the demo's consumer process.
    #[command(hide = true)]
    DemoConsumer(demo::Role),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                error.exit();
            }
            // One line, like every other error of this command.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("shm: {first} (see shm --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Ls { json } => segments::list(json),
        Command::Inspect { target, json } => segments::inspect(&target, json),
        Command::Rm {
            target,
            force,
            stale,
        } => segments::remove(target.as_deref(), force, stale),
        Command::Create(options) => create::create(&options),
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
