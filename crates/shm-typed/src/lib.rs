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
//! not waited on forever.
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
//! All integers are in the creator's native byte order (checked with the byte
//! order mark). All-zero bytes are a valid uninitialised segment.
//!
//! | offset | size | field | contents |
//! |---:|---:|---|---|
//! | 0 | 8 | magic | ASCII `SHMTYPED` |
//! | 8 | 4 | format_version | `2` (version 1 had the lock of the first release, without generations) |
//! | 12 | 4 | kind | 1 object, 2 spsc ring, 3 mpmc ring, 4 store, 5 spinning spsc ring |
//! | 16 | 4 | state | atomic: 0 uninitialised, 1 initialising, 2 ready (stored with Release), 3 failed |
//! | 20 | 4 | byte_order | `0x01020304` |
//! | 24 | 8 | segment_len | bytes the creator asked for; must be ≤ the OS's size |
//! | 32 | 8 | payload_offset | 384 for objects |
//! | 40 | 8 | payload_size | bytes |
//! | 48 | 4 | payload_align | `align_of::<T>()`, at most 128 |
//! | 52 | 4 | element_size | `size_of::<T>()` |
//! | 56 | 8 | capacity | ring capacity in elements; 0 for objects |
//! | 64 | 8 | type_name_hash | FNV-1a 64 of the full type name |
//! | 72 | 1 | pointer_width | `size_of::<usize>()` |
//! | 73 | 1 | type_name_len | bytes used in type_name |
//! | 74 | 6 | reserved | 0 |
//! | 80 | 64 | type_name | UTF-8, cut to 64 bytes |
//! | 144 | 4 | creator pid | claimed with a CAS from 0 before anything else is written |
//! | 148 | 4 | creator uid | effective uid |
//! | 152 | 8 | creator start time | clock ticks since boot (`/proc/<pid>/stat` field 22) |
//! | 160 | 8 | creator pid namespace | inode of `/proc/<pid>/ns/pid` |
//! | 168 | 88 | reserved | 0 |
//! | 256 | 8 | lock owner | atomic: bits 0-30 holder tid (0 free), bit 31 waiters, bits 32-63 generation |
//! | 264 | 4 | lock wakes | atomic futex word: incremented by every unlock that wakes |
//! | 268 | 4 | lock flags | bit 0 inconsistent (holder died), bit 1 poisoned |
//! | 272 | 8 | lock record | holder's start time << 24 \| generation's low 24 bits |
//! | 280 | 8 | lock sequence | seqlock count, odd while a holder may write |
//! | 288 | 8 | lock pid namespace | creator's pid namespace |
//! | 296 | 88 | reserved | 0 |
//! | 384 | payload_size | payload | the value |
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
mod location;
mod lock;
mod ring;
mod segment;
mod shared;
mod store;
mod sys;
#[cfg(test)]
mod tests;

pub use describe::{describe, Description};
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
pub use shm_sys;
pub use store::{store_entries, EntryInfo, Store, StoreOptions, MAX_NAME};

/// The README's examples, compiled and run as doc-tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
