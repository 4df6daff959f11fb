//! The one error type of this crate.

use std::fmt;
use std::time::Duration;

use crate::location::Location;
use crate::lock::LockFailure;

/// A type as a segment header records it: stable name, size and alignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDescription {
    /// The stable type name (possibly cut to the 64 bytes the header stores).
    pub name: String,
    /// `size_of` the value (or of one element, for rings).
    pub size: u64,
    /// `align_of` the value.
    pub align: u64,
    /// Ring capacity in elements; 0 for single values.
    pub capacity: u64,
}

impl fmt::Display for TypeDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ({} bytes, align {}",
            self.name, self.size, self.align
        )?;
        if self.capacity != 0 {
            write!(f, ", capacity {}", self.capacity)?;
        }
        f.write_str(")")
    }
}

/// Everything that can go wrong in `shm-typed`. Every variant names the segment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused (see the inner error for errno and key).
    #[error(transparent)]
    Sys(#[from] shm_sys::Error),
    /// The segment is too small to hold even our header.
    #[error("{location}: segment is {found} bytes, too small for a {needed}-byte header")]
    TooSmall {
        /// The segment.
        location: Location,
        /// Bytes the header needs.
        needed: usize,
        /// Bytes the segment has.
        found: usize,
    },
    /// The first 8 bytes are not our magic: not one of our segments.
    #[error("{location}: not a shm-typed segment (magic {found:02x?}, expected {expected:02x?})")]
    BadMagic {
        /// The segment.
        location: Location,
        /// The magic we look for.
        expected: [u8; 8],
        /// What is there.
        found: [u8; 8],
    },
    /// A format version this build does not read (newer, or garbage).
    #[error(
        "{location}: segment format version {found}, this build reads versions {oldest} to {supported}"
    )]
    UnsupportedVersion {
        /// The segment.
        location: Location,
        /// The oldest version this build reads.
        oldest: u32,
        /// The newest version this build reads (and the one it writes).
        supported: u32,
        /// The version in the header.
        found: u32,
    },
    /// Written by a machine with another byte order or pointer width.
    #[error("{location}: written for {found}, this process is {expected}")]
    IncompatiblePlatform {
        /// The segment.
        location: Location,
        /// This process's platform.
        expected: String,
        /// The header's platform.
        found: String,
    },
    /// The segment holds another kind of object (a ring where a value was expected, ...).
    #[error("{location}: holds a {found}, expected a {expected}")]
    WrongKind {
        /// The segment.
        location: Location,
        /// The kind asked for.
        expected: String,
        /// The kind in the header.
        found: String,
    },
    /// The segment holds another type.
    #[error("{location}: holds {found}, expected {expected}")]
    TypeMismatch {
        /// The segment.
        location: Location,
        /// The type asked for.
        expected: Box<TypeDescription>,
        /// The type in the header.
        found: Box<TypeDescription>,
    },
    /// The segment's type has the same name, size and alignment as ours but
    /// another structure: its stored schema differs in the field named.
    #[error("{location}: holds another {name} than ours: {mismatch}")]
    SchemaMismatch {
        /// The segment.
        location: Location,
        /// The type's name.
        name: String,
        /// The first difference, as `field b: offset 4 u32 here, offset 0
        /// f32 in segment`.
        mismatch: Box<crate::schema::Mismatch>,
    },
    /// The segment's type extends ours (an `#[shm(extensible)]` struct with
    /// fields after all of ours): ours may only read it.
    #[error(
        "{location}: its {name} has fields after all of ours ({extra}): open it read-only          (Shared::open_read_only), or use the writer's type"
    )]
    SchemaExtended {
        /// The segment.
        location: Location,
        /// The type's name.
        name: String,
        /// The fields the segment's type has and ours lacks.
        extra: String,
    },
    /// The header claims more bytes than the operating system says the segment has.
    #[error("{location}: header says the segment is {header_says} bytes, the OS says {os_says}")]
    LengthMismatch {
        /// The segment.
        location: Location,
        /// The length in the header.
        header_says: u64,
        /// The length the OS reports.
        os_says: u64,
    },
    /// The process that was initialising the segment died before finishing.
    #[error("{location}: creator pid {pid} died while initialising the segment")]
    CreatorDied {
        /// The segment.
        location: Location,
        /// The creator's process id.
        pid: u32,
    },
    /// Initialisation did not finish within the configured time.
    #[error("{location}: not initialised after {waited:?} (creator pid {creator:?} still alive)")]
    InitTimeout {
        /// The segment.
        location: Location,
        /// How long we waited.
        waited: Duration,
        /// The initialising process, if known.
        creator: Option<u32>,
    },
    /// A header field holds a value no writer of this format produces.
    #[error("{location}: corrupted segment: {what}")]
    Corrupted {
        /// The segment.
        location: Location,
        /// What is wrong.
        what: String,
    },
    /// The lock is poisoned: a holder died and the next holder did not mark the
    /// data consistent. [`Shared::reset_poison`](crate::Shared::reset_poison) clears it.
    #[error("{location}: lock poisoned (a holder died and the data was not marked consistent)")]
    Poisoned {
        /// The segment.
        location: Location,
    },
    /// The lock was not acquired in time.
    #[error("{location}: lock not acquired within {waited:?} (held by tid {holder})")]
    LockTimeout {
        /// The segment.
        location: Location,
        /// How long we waited.
        waited: Duration,
        /// The thread holding it.
        holder: u32,
    },
    /// `try_lock` found the lock held by a live thread.
    #[error("{location}: lock is held by tid {holder}")]
    WouldBlock {
        /// The segment.
        location: Location,
        /// The thread holding it.
        holder: u32,
    },
    /// The lock's holder may have died, but it lives in another pid namespace, so
    /// its thread id means nothing here, and it left no kernel token we can
    /// read (System V semaphores unavailable, another user, another IPC
    /// namespace: see the crate's liveness guarantees), so recovery is refused.
    #[error("{location}: lock holder tid {holder} is in pid namespace {theirs}, we are in {ours}, and left no kernel token we can read; cannot check whether it is alive")]
    ForeignNamespace {
        /// The segment.
        location: Location,
        /// The thread holding it (in its namespace).
        holder: u32,
        /// Our pid namespace (inode of `/proc/self/ns/pid`).
        ours: u64,
        /// The segment's pid namespace.
        theirs: u64,
    },
    /// A write was attempted through a read-only handle.
    #[error("{location}: opened read-only")]
    ReadOnly {
        /// The segment.
        location: Location,
    },
    /// A store entry could not be opened or made; `source` says why (for a
    /// wrong type it names the expected and the found type).
    #[error("{location}: entry {name:?}: {source}")]
    Entry {
        /// The store.
        location: Location,
        /// The entry's name.
        name: String,
        /// What went wrong with it.
        source: Box<Error>,
    },
    /// No entry of that name.
    #[error("{location}: no entry named {name:?}")]
    EntryNotFound {
        /// The store.
        location: Location,
        /// The name looked up.
        name: String,
    },
    /// A name the store does not accept.
    #[error("{location}: bad entry name {name:?}: {why}")]
    InvalidName {
        /// The store.
        location: Location,
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The store has no room for another entry.
    #[error("{location}: no room for entry {name:?}: {what}")]
    StoreFull {
        /// The store.
        location: Location,
        /// The entry that did not fit.
        name: String,
        /// Which limit was reached.
        what: String,
    },
    /// A ring side (producer or consumer) is already claimed by a live process.
    #[error(
        "{location}: the {side} side is claimed by live process {pid}{}",
        if *.foreign { " of another pid namespace" } else { "" }
    )]
    SideClaimed {
        /// The ring.
        location: Location,
        /// `"producer"` or `"consumer"`.
        side: &'static str,
        /// The claiming process, as its own pid namespace numbers it.
        pid: u32,
        /// Whether that is another pid (or time) namespace than the
        /// segment's creator's.
        foreign: bool,
    },
    /// The request is not valid for this segment or type.
    #[error("{location}: {what}")]
    Unsupported {
        /// The segment.
        location: Location,
        /// What is not supported.
        what: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl LockFailure {
    /// The error for a lock not taken at `location`, after waiting `waited`
    /// (the timeout that ran out, if one did).
    #[cold]
    pub(crate) fn into_error(self, location: Location, waited: Option<Duration>) -> Error {
        match self {
            LockFailure::Poisoned => Error::Poisoned { location },
            LockFailure::Timeout { holder } => Error::LockTimeout {
                location,
                waited: waited.unwrap_or_default(),
                holder,
            },
            LockFailure::WouldBlock { holder } => Error::WouldBlock { location, holder },
            LockFailure::ForeignNamespace {
                holder,
                ours,
                theirs,
            } => Error::ForeignNamespace {
                location,
                holder,
                ours,
                theirs,
            },
        }
    }
}
