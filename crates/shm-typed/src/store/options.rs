//! [`StoreOptions`]: how a [`Store`] is made or opened, every wait with a
//! documented default.

use std::time::Duration;

use shm_sys::sysv::Access;
use shm_sys::Mode;

use super::directory::{arena_start, Layout};
use super::{Store, ARENA_NEXT};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::segment::format::Kind;
use crate::segment::region::{Region, REGION_ALIGN};
use crate::segment::{Opening, Segment};

/// How to create or open a [`Store`]: permissions, and how long the store and
/// the objects it hands out wait. Every wait has a documented default; none is
/// hidden.
///
/// ```
/// use std::time::Duration;
/// use shm_typed::{Location, Store};
///
/// let store = Store::options()
///     .lock_timeout(Some(Duration::from_millis(500)))   // the directory's lock
///     .entry_lock_timeout(Some(Duration::from_secs(2))) // each object's lock
///     .create(Location::Private, 16, 1 << 16)?;
/// store.remove()?;
/// let counter = store.object::<u64>("counter", 0)?;
/// counter.update(|n| *n += 1)?; // waits at most 2 s for a live holder
/// # Ok::<(), shm_typed::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub(super) mode: Mode,
    pub(super) init_timeout: Duration,
    pub(super) lock_timeout: Option<Duration>,
    pub(super) entry_lock_timeout: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            mode: Mode::OWNER_RW,
            init_timeout: Duration::from_secs(1),
            lock_timeout: Some(StoreOptions::DEFAULT_LOCK_TIMEOUT),
            entry_lock_timeout: None,
        }
    }
}

impl StoreOptions {
    /// The default of [`lock_timeout`](StoreOptions::lock_timeout): 10 s. The
    /// store's lock is held only while an entry is carved out and initialised,
    /// microseconds; a live holder that keeps it for seconds is stuck.
    pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

    /// Permission bits of a new store's segment. Default `0o600`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How long an opener waits for a creator that is still initialising: the
    /// store's own, and each entry's when the store opens it. Default 1 s.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// How long creating an entry waits for the store's lock, which a live
    /// task holds (a dead holder is detected and taken over at once). `None`:
    /// no limit. Default [`Self::DEFAULT_LOCK_TIMEOUT`] (10 s); running out is
    /// [`Error::Entry`] naming the store and the entry, around
    /// [`Error::LockTimeout`] naming the store and the holder's thread id.
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The lock timeout of the objects [`Store::object`] and
    /// [`Store::get_object`] hand out: how long their `lock`, `load`, `store`
    /// and `update` wait for a live holder ([`Error::LockTimeout`] with the
    /// holder's thread id). Default `None`, no limit, as for a
    /// [`Shared`](crate::Shared) made with default
    /// [`SharedOptions`](crate::SharedOptions). Rings take no lock.
    pub fn entry_lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.entry_lock_timeout = timeout;
        self
    }

    /// Creates a store with room for `entries` directory records and
    /// `arena_bytes` of entry space (each entry takes its size rounded up to a
    /// 4 KiB page).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] if the directory and arena do not fit an address
    /// space; OS errors as [`Error::Sys`].
    pub fn create(
        &self,
        location: impl Into<Location>,
        entries: u64,
        arena_bytes: usize,
    ) -> Result<Store> {
        let location = location.into();
        let too_large = || Error::Unsupported {
            location: location.clone(),
            what: format!("{entries} entries and {arena_bytes} arena bytes do not fit"),
        };
        let start = arena_start(entries).ok_or_else(too_large)?;
        let len = arena_bytes
            .checked_next_multiple_of(REGION_ALIGN)
            .and_then(|arena| arena.checked_add(start))
            .ok_or_else(too_large)?;
        let layout = Layout {
            entries,
            segment_len: len,
            arena_start: start,
        };
        let segment = Segment::create(&location, &layout.spec(), self.mode, |region| {
            region.write_bytes(ARENA_NEXT, &(start as u64).to_ne_bytes());
        })?;
        Ok(self.store(segment, layout))
    }

    /// Opens the store at `location`; its size and directory capacity come
    /// from its header, which is validated like any other (kind first, so
    /// another kind of segment is [`Error::WrongKind`]).
    ///
    /// # Errors
    ///
    /// As for opening any segment ([`Error::BadMagic`], [`Error::WrongKind`],
    /// [`Error::LengthMismatch`], [`Error::InitTimeout`], ...);
    /// [`Error::Corrupted`] for a capacity and length that cannot go together.
    pub fn open(&self, location: impl Into<Location>) -> Result<Store> {
        let location = location.into();
        let opening = Opening {
            mode: self.mode,
            access: Access::ReadWrite,
            init_timeout: self.init_timeout,
        };
        let (segment, layout) =
            Segment::open_derived(&location, Kind::Store, opening, Layout::derive(&location))?;
        Ok(self.store(segment, layout))
    }

    /// Makes a store in a blank region (tests, single process), with room for
    /// `entries` directory records; the rest of the region is the arena.
    ///
    /// # Errors
    ///
    /// [`Error::TooSmall`] if the directory does not fit the region.
    pub fn create_in(&self, region: Region, entries: u64) -> Result<Store> {
        let start = arena_start(entries)
            .filter(|&start| start < region.len())
            .ok_or_else(|| Error::TooSmall {
                location: Location::Heap,
                needed: arena_start(entries).unwrap_or(usize::MAX),
                found: region.len(),
            })?;
        let layout = Layout {
            entries,
            segment_len: region.len(),
            arena_start: start,
        };
        let segment = Segment::create_in(region, Location::Heap, &layout.spec(), |region| {
            region.write_bytes(ARENA_NEXT, &(start as u64).to_ne_bytes());
        })?;
        Ok(self.store(segment, layout))
    }

    /// Opens the store a region holds (validating its header as
    /// [`open`](StoreOptions::open) does).
    pub fn open_in(&self, region: Region) -> Result<Store> {
        let location = Location::Heap;
        let (segment, layout) = Segment::open_in_derived(
            region,
            location.clone(),
            Kind::Store,
            self.init_timeout,
            Layout::derive(&location),
        )?;
        Ok(self.store(segment, layout))
    }

    pub(super) fn store(&self, segment: Segment, layout: Layout) -> Store {
        Store {
            segment,
            layout,
            options: self.clone(),
        }
    }
}
