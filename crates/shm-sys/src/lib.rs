//! Safe, complete System V shared memory for Rust on Linux, plus POSIX `shm_open`
//! and `memfd` segments behind the same mapping type.
//!
//! ```
//! use shm_sys::{Key, Mode};
//! use shm_sys::sysv::Segment;
//!
//! // Any process that stats the same file with the same project id gets this key.
//! let key = Key::ftok(std::env::temp_dir(), 0x5e)?;
//! let segment = match Segment::options(key).size(4096).mode(Mode::OWNER_RW).create() {
//!     Ok(segment) => segment,
//!     Err(shm_sys::Error::AlreadyExists { .. }) => return Ok(()), // someone else's
//!     Err(other) => return Err(other),
//! };
//! let mapping = segment.attach()?;        // detached when dropped
//! segment.remove()?;                       // freed once the last process detaches
//! mapping.write_at(0, &42u64.to_ne_bytes())?;
//!
//! let info = segment.stat()?;              // every field of shmid_ds, typed
//! assert_eq!((info.size, info.nattch, info.cpid), (4096, 1, std::process::id()));
//! # Ok::<(), shm_sys::Error>(())
//! ```
//!
//! # What is here
//!
//! - [`Key`]: `IPC_PRIVATE`, raw keys, and [`Key::ftok`] computed as glibc does.
//! - [`sysv`]: create, open, open-or-create ([`sysv::Segment`]); attach read-write
//!   or read-only; `IPC_STAT` with every field ([`sysv::SegmentInfo`]); `IPC_SET`,
//!   `IPC_RMID`, `SHM_LOCK`; every segment on the host ([`sysv::list`]) and the
//!   system limits ([`sysv::limits`]).
//! - [`posix`]: named `shm_open` objects and `memfd`s, mapped with `mmap`. A memfd
//!   is sealed at its size when created; a `shm_open` object cannot be, so a peer
//!   that shrinks it can crash its openers with `SIGBUS` (see [`posix::PosixSegment`]).
//! - [`Mapping`]: what every backend hands out. It detaches on drop and exposes
//!   only raw pointers and bounds-checked atomic copies, because another process
//!   may write the memory at any moment (see its `Safety` section).
//! - [`Error`]: errno mapped to meaning (`NotFound`, `AlreadyExists`,
//!   `PermissionDenied`, `InvalidSize`, `OutOfResources`, ...), every message
//!   naming the call, the key, id or name, and the errno.
//!
//! Nothing here removes a segment implicitly: System V segments and POSIX objects
//! outlive their creators by design, so removal is always an explicit call.
//!
//! This crate knows nothing about what is stored in a segment; `shm-typed` builds
//! typed values, locks and rings on top of it.

#![cfg(target_os = "linux")]

pub mod error;
pub mod key;
mod libc_sysv;
pub mod mapping;
pub mod memfd;
pub mod mode;
pub mod posix;
pub mod sem;
pub mod sysv;

pub use error::{Errno, Error, Result, Target};
pub use key::Key;
pub use mapping::Mapping;
pub use mode::Mode;
