//! Typed values in shared memory, checked on open, under a lock that survives a
//! crashed holder.
//!
//! ```
//! use shm_typed::{Location, Shared};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Tick { price: f64, size: u32, venue: u32 }
//!
//! // Process A creates the segment (here IPC_PRIVATE; a Key, ftok path or POSIX
//! // name works the same way) ...
//! let ticks = Shared::<Tick>::create(Location::Private, Tick { price: 0.0, size: 0, venue: 0 })?;
//! // ... process B opens it; the header is checked against `Tick` first.
//! let peer = Shared::<Tick>::open(ticks.location().clone())?;
//!
//! ticks.store(Tick { price: 101.5, size: 300, venue: 7 })?;
//! let mut guard = peer.lock()?;            // the in-segment lock
//! guard.size += 100;
//! drop(guard);
//! assert_eq!(ticks.load()?.size, 400);
//! ticks.remove()?;
//! # Ok::<(), shm_typed::Error>(())
//! ```
//!
//! For streams, [`SpscRing`] moves values from one process to another without a
//! syscall per item, and [`MpmcRing`] among any number of producer and consumer
//! processes; their layouts, protocols and crash behaviour are documented on
//! the types. A [`SpinningSpscRing`] is an `SpscRing` without blocking calls,
//! whose pushes and pops skip the check for a sleeping peer: the faster choice
//! when both sides spin anyway. A [`Store`] holds many named, type-checked objects and rings in
//! one segment.
//!
//! # What an opener checks
//!
//! Before a byte of payload is trusted, the opener waits (bounded) for the
//! creator to publish `ready`, copies the header out by value, and checks, in
//! this order, each failure its own [`Error`] variant: magic
//! ([`Error::BadMagic`]), format version ([`Error::UnsupportedVersion`]), byte
//! order and pointer width ([`Error::IncompatiblePlatform`]), kind
//! ([`Error::WrongKind`]), type identity: name hash, size, alignment, capacity
//! ([`Error::TypeMismatch`], naming both types), and the length against the
//! operating system's own size of the segment ([`Error::LengthMismatch`]). A
//! creator that died while initialising is reported ([`Error::CreatorDied`]),
//! not waited on forever; [`SharedOptions::open_or_create`] on a System V key
//! replaces such a segment with a fresh one.
//!
//! Type identity uses a stable name, by default the Rust type name without module
//! paths (`Tick`), so two binaries that each define the same struct agree; set
//! your own with [`SharedOptions::type_name`].
//!
//! # The lock
//!
//! [`ShmMutex`] is an owner word holding the holder's thread id and a
//! generation that every acquisition changes. A waiter that finds the holder of
//! one acquisition dead (gone, a zombie, or its thread id reused by a task with
//! another start time, judged on that acquisition's own record) takes over that
//! very acquisition, never a later one, and its guard reports
//! [`owner_died`](SharedGuard::owner_died): the value may be half-written. Mark
//! it consistent, or the lock is poisoned until [`Shared::reset_poison`]. See
//! [`ShmMutex`] for the protocol.
//!
//! # Segment format, version 2
//!
//! A 256-byte header (magic `SHMTYPED`, version, kind, init state, byte
//! order mark, length, payload layout and type identity, creator record),
//! the 128-byte lock at offset 256, the payload from offset 384. All integers
//! are in the creator's native byte order (checked with the byte order
//! mark); all-zero bytes are a valid uninitialised segment. The [`format`](mod@format)
//! module owns every constant and structure; `docs/FORMAT.md` in the
//! repository describes every byte, the init protocol and each kind's payload,
//! enough to write a reader in another language.
//!
//! # Memory model
//!
//! No `&T` or `&mut T` into shared memory exists except through a
//! [`SharedGuard`], while the lock grants exclusivity. Everything else (the
//! header copy, read-only loads) goes through atomic accesses, so a buggy or
//! hostile peer can make an open fail or a value wrong, but cannot cause
//! undefined behaviour in this process.

#![cfg(target_os = "linux")]

mod describe;
mod error;
/// Test-only crash points (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
mod fault;
mod location;
mod lock;
mod ring;
pub mod schema;
mod segment;
mod shared;
mod store;
mod sys;
#[cfg(test)]
mod tests;

pub use describe::{
    c_header, creator_token_verdict, describe, describe_unready, object_value, Description,
    ObjectValue, Unready,
};
pub use error::{Error, Result, TypeDescription};
pub use location::Location;
pub use lock::{Acquired, Holder, LockFailure, ShmMutex};
pub use ring::mpmc::MpmcRing;
pub use ring::spsc::{
    ChunkIter, Consumer, Corrupted, Producer, PushError, ReadChunk, SpinningSpscRing, SpscRing,
    WriteChunk,
};
pub use segment::format;
pub use segment::header::default_type_name;
pub use segment::region::{Region, REGION_ALIGN};
pub use shared::{Shared, SharedGuard, SharedOptions};
/// `#[derive(ShmType)]`: records a type's layout; see [`schema`].
pub use shm_derive::ShmType;
pub use shm_sys;
pub use store::{store_entries, EntryInfo, Store, StoreOptions, MAX_NAME};

/// The README's examples, compiled and run as doc-tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
