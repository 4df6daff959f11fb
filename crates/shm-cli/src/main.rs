//! The `shm` command.
//!
//! `shm ls` lists every System V segment (as `ipcs -m` does) and our POSIX
//! objects, decoding our headers, with the number of processes using each
//! POSIX object (found in `/proc`); `shm inspect` shows one segment; `shm rm`
//! removes one, or every stale one of ours (System V segments nobody is
//! attached to; POSIX objects nobody maps or holds open whose creator is
//! dead); `shm create` makes a segment for scripts; `shm demo` streams a
//! struct between two processes.

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
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `ls` and `inspect` do to the segments they look at.
const ATTACH_NOTE: &str = "Reading headers attaches each System V segment read-only for a moment \
(shmat, then shmdt), so this changes the lpid, atime and dtime of every segment it lists or \
inspects, as `ipcs -m -p` and `ipcs -m -t` then show; nattch and the other fields are read \
before that. POSIX objects are mapped read-only to read their headers (by ls: every object in \
/dev/shm it can open), which updates their access time (atime).";

/// Who `ls` counts as using a POSIX object, and what `--json` shows of it.
const USERS_NOTE: &str = "For each POSIX object the nattch column shows its users: the \
processes other than this shm that map the object (a line of /proc/<pid>/maps with the device \
and inode of its file; a mapping of an object unlinked since, which maps shows as \
\"/dev/shm/<name> (deleted)\", has another inode and is not counted) or hold it open (a \
/proc/<pid>/fd link into /dev/shm to its file), each process counted once, so a process that \
has opened the object but not mapped it yet counts too. The users need not cooperate. \"N+\" \
means that the /proc entries of some processes could not be read (not root, or hidepid), so \
there may be more users. --json gives \"users\" (the same count), \"mapped_by\" and \
\"open_by\" (the processes mapping it, and those holding it open), and \"users_complete\" \
(false for N+).";

/// What `rm --stale` removes.
const STALE_NOTE: &str = "With --stale, each System V segment that nobody is attached to \
(nattch 0) and that starts with our header is removed, and so is one that never became ready \
because its creator died while making it (shm ls shows it as unready, or as blank when the \
creator died before writing anything: a segment of all zero bytes, whoever made it, holds no \
data) when /proc confirms that creator dead in this pid namespace. A POSIX object in /dev/shm is removed \
(shm_unlink) only if it starts with our header, no process other than this shm maps it or \
holds it open (counted as by shm ls: /proc/<pid>/maps and /proc/<pid>/fd), and /proc confirms \
that the creator its header records (pid and start time, in this pid namespace) is dead; all \
this is checked again just before each unlink. Objects without our header are never touched. \
If /proc hides processes (hidepid), or when not run as root the /proc entries of some \
processes cannot be read, no POSIX object is removed. As root, processes whose entries even \
root cannot read (walled off by a security module or a sandbox) are taken not to use our \
objects, and a note on stderr says how many there were. Each removal prints a line naming the segment or object; a POSIX object that \
looked stale but was kept prints why. Reading headers attaches each unattached System V \
segment read-only for a moment, which changes its lpid, atime and dtime, and maps each POSIX \
object read-only, which updates its atime.";

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
    /// decoded (kind, type, state, lock holder, ring fill); for POSIX objects,
    /// how many other processes map them or hold them open.
    #[command(after_help = format!("{ATTACH_NOTE}\n\n{USERS_NOTE}"))]
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
        #[arg(long, conflicts_with = "c_header")]
        json: bool,
        /// Print a C header instead: the segment's header, lock and payload
        /// type (from its stored schema) as C structs with their offsets.
        #[arg(long)]
        c_header: bool,
    },
    /// Remove a segment (refused while attached, unless --force), or with
    /// --stale every stale one of ours: System V segments no process is
    /// attached to, and POSIX objects no other process maps or holds open
    /// whose creator is dead.
    #[command(after_help = STALE_NOTE)]
    Rm {
        /// The segment: 0xKEY, ID, path:proj or /posix-name.
        target: Option<String>,
        /// Remove even while attached (freed when the last process detaches).
        #[arg(long)]
        force: bool,
        /// Remove our System V segments that nobody is attached to, and our
        /// POSIX objects that no other process maps or holds open and whose
        /// creator is dead.
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
        Command::Inspect {
            target,
            json,
            c_header,
        } => segments::inspect(&target, json, c_header),
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
